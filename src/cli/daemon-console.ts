// `tskvm console <name>`: this terminal on a VM's serial console, through the
// daemon. The daemon replays the VM's recent output, then streams it live;
// what the user types goes to the guest's COM1.
//
// Detaching leaves the VM running: Ctrl-] (virsh's escape) or Ctrl-A x (the
// escape `tskvm run` uses, with Ctrl-A h for help and Ctrl-A c for the exit
// statistics). The terminal is raw while attached and restored on detach
// (terminal.ts). When stdin is not a terminal (a pipe), its end detaches once
// the guest has been quiet for half a second, so `printf 'ls\r' | tskvm
// console vm` shows the answer and returns.
import { DaemonClient, DaemonRequestError, DaemonUnavailableError } from '../daemon/client';
import { attachTerminal } from './terminal';
import { formatStop, formatVmInfo } from './manage-format';

/** Ctrl-]: the byte a terminal sends for it (0x1d, GS), virsh console's escape. */
export const DETACH_BYTE = 0x1d;
/** After stdin ends (pipe), detach when the console has been quiet this long. */
const QUIET_AFTER_EOF_MS = 500;

export interface ConsoleOptions {
  socketPath: string;
  name: string;
  replay: boolean;
  input: NodeJS.ReadStream;
  output: NodeJS.WriteStream;
  /** One line for the user (stderr). */
  log: (line: string) => void;
}

/** Why the console ended: the user detached, or the stream closed (VM stopped, daemon gone). */
async function describeEnd(socketPath: string, name: string): Promise<string> {
  let client: DaemonClient | undefined;
  try {
    client = await DaemonClient.connect(socketPath);
    const info = await client.request({ op: 'info', name });
    return info.stop ? `VM ${name} stopped: ${formatStop(info.stop)}` : `the console of VM ${name} closed (${info.state})`;
  } catch (err) {
    if (err instanceof DaemonRequestError && err.code === 'ENOVM') return `VM ${name} is gone (destroyed or shut down)`;
    if (err instanceof DaemonUnavailableError) return 'the tskvm daemon went away';
    return `the console of VM ${name} closed`;
  } finally {
    client?.close();
  }
}

/** Attaches; resolves with the exit code when the user detaches or the VM's console closes. */
export async function runConsole(options: ConsoleOptions): Promise<number> {
  const { input, output, name } = options;
  const client = await DaemonClient.connect(options.socketPath);
  let socket;
  try {
    ({ socket } = await client.openConsole(name, { replay: options.replay }));
  } catch (err) {
    client.close();
    throw err;
  }
  const tty = input.isTTY === true;
  const nl = tty ? '\r\n' : '\n';
  options.log(`connected to VM ${name}; Ctrl-] or Ctrl-A x detaches${tty ? '' : ' (and the end of input)'}`);

  return new Promise<number>((resolve) => {
    let finished = false;
    let quietTimer: NodeJS.Timeout | undefined;
    let inputEnded = false;
    const finish = (how: 'detached' | 'closed'): void => {
      if (finished) return;
      finished = true;
      clearTimeout(quietTimer);
      terminal.detach();
      socket.removeAllListeners('data');
      if (how === 'detached') {
        socket.end();
        output.write(nl);
        options.log(`detached from VM ${name} (it keeps running)`);
        socket.destroy();
        resolve(0);
        return;
      }
      socket.destroy();
      void describeEnd(options.socketPath, name).then((why) => {
        output.write(nl);
        options.log(why);
        resolve(0);
      });
    };
    const armQuietTimer = (): void => {
      clearTimeout(quietTimer);
      quietTimer = setTimeout(() => finish('detached'), QUIET_AFTER_EOF_MS);
    };

    const terminal = attachTerminal({
      input,
      output,
      onGuestInput: (bytes) => {
        const detach = bytes.indexOf(DETACH_BYTE);
        if (detach < 0) {
          socket.write(bytes);
          return;
        }
        if (detach > 0) socket.write(bytes.subarray(0, detach));
        finish('detached');
      },
      onQuit: () => finish('detached'),
      onStats: () => {
        void (async () => {
          const stats = await DaemonClient.connect(options.socketPath);
          try {
            const info = await stats.request({ op: 'info', name });
            output.write(nl + formatVmInfo(info).replace(/\n/g, nl) + nl);
          } catch (err) {
            options.log((err as Error).message);
          } finally {
            stats.close();
          }
        })().catch((err: Error) => options.log(err.message));
      },
      log: (line) => options.log(line),
    });
    socket.on('data', (data: Buffer) => {
      output.write(data);
      if (inputEnded) armQuietTimer();
    });
    socket.on('close', () => finish('closed'));
    socket.on('error', () => finish('closed'));
    socket.resume();
    if (!tty) {
      input.once('end', () => {
        inputEnded = true;
        armQuietTimer();
      });
    }
  });
}
