// Where the daemon listens, and getting that path ready.
//
// Default socket (first that applies):
//   $TSKVM_SOCKET                      if set (tests, several daemons)
//   /run/tskvm/tskvm.sock              for root (the system daemon, like /run/libvirt)
//   $XDG_RUNTIME_DIR/tskvm.sock        for other users (a per-user daemon, private dir)
//   $TMPDIR/tskvm-<uid>/tskvm.sock     when there is no XDG runtime dir
// The daemon and every client verb take `--socket PATH` too.
//
// Only the owner may use the socket: the daemon creates it with mode 0600
// (and a missing parent directory with 0700). Whoever can connect can start
// VMs that read any file the daemon can read, so do not loosen this.
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';

/** sun_path is 108 bytes on Linux including the NUL (unix(7)). */
export const MAX_SOCKET_PATH_BYTES = 107;

export class SocketPathError extends Error {
  constructor(
    message: string,
    readonly code: 'EINUSE' | 'ENOTSOCK' | 'ETOOLONG' | 'EPATH',
  ) {
    super(message);
    this.name = 'SocketPathError';
  }
}

export function defaultSocketPath(env: NodeJS.ProcessEnv = process.env, uid: number = process.getuid?.() ?? -1): string {
  if (env.TSKVM_SOCKET) return env.TSKVM_SOCKET;
  if (uid === 0) return '/run/tskvm/tskvm.sock';
  if (env.XDG_RUNTIME_DIR) return path.join(env.XDG_RUNTIME_DIR, 'tskvm.sock');
  return path.join(os.tmpdir(), `tskvm-${uid}`, 'tskvm.sock');
}

export function checkSocketPathLength(socketPath: string): void {
  const bytes = Buffer.byteLength(socketPath);
  if (bytes > MAX_SOCKET_PATH_BYTES)
    throw new SocketPathError(`the socket path ${socketPath} is too long (${bytes} bytes; Unix sockets allow ${MAX_SOCKET_PATH_BYTES}): choose a shorter --socket`, 'ETOOLONG');
}

/** Resolves whether something accepts connections on the socket. */
function isListening(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(socketPath);
    const done = (listening: boolean) => {
      socket.destroy();
      resolve(listening);
    };
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
    socket.setTimeout(2000, () => done(true)); // connected-but-silent counts as taken
  });
}

/**
 * Makes `socketPath` free to bind: creates the parent directory (0700) if
 * missing; refuses if another daemon listens there or the path is not a
 * socket; removes a stale socket left by a daemon that died.
 */
export async function prepareSocketPath(socketPath: string): Promise<void> {
  checkSocketPathLength(socketPath);
  const dir = path.dirname(socketPath);
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new SocketPathError(`cannot create the socket directory ${dir}: ${(err as Error).message}`, 'EPATH');
  }
  let stat: fs.Stats;
  try {
    stat = fs.lstatSync(socketPath);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new SocketPathError(`cannot check ${socketPath}: ${(err as Error).message}`, 'EPATH');
  }
  if (!stat.isSocket()) throw new SocketPathError(`${socketPath} exists and is not a socket: remove it or choose another --socket`, 'ENOTSOCK');
  if (await isListening(socketPath)) throw new SocketPathError(`a tskvm daemon is already listening on ${socketPath}`, 'EINUSE');
  try {
    fs.unlinkSync(socketPath); // stale: nobody listens
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new SocketPathError(`cannot remove the stale socket ${socketPath}: ${(err as Error).message}`, 'EPATH');
  }
}
