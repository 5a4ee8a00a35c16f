// The client end of the daemon protocol (protocol.ts), used by the CLI verbs
// and the tests:
//
//   const client = await DaemonClient.connect(socketPath);
//   const { vms } = await client.request({ op: 'list' });
//   const consoleSocket = await client.openConsole('a');   // now a raw byte stream
//   client.close();
import * as net from 'net';
import { LineSplitter } from './line-splitter';
import {
  encodeLine,
  parseResponseOrEvent,
  type ClientRequest,
  type DaemonEvent,
  type ErrorCode,
  type Op,
  type Response,
  type Results,
} from './protocol';

/** Nobody answers on the socket: the daemon is not running (or the path is wrong). */
export class DaemonUnavailableError extends Error {
  readonly code = 'ENODAEMON';
}

/** The daemon refused a request; `code` is the protocol's error code. */
export class DaemonRequestError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'DaemonRequestError';
  }
}

type RequestOf<K extends Op> = Extract<ClientRequest, { op: K }>;
type Pending = { resolve: (result: unknown) => void; reject: (error: Error) => void };

/** Longest line accepted from the daemon (an info answer is a few KiB). */
const MAX_RESPONSE_BYTES = 16 << 20;

export class DaemonClient {
  private readonly splitter = new LineSplitter(MAX_RESPONSE_BYTES);
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private closedError?: Error;
  private eventListener?: (event: DaemonEvent) => void;
  /** The console request whose answer turns the connection into a byte stream. */
  private consoleId?: number;

  private constructor(
    readonly socket: net.Socket,
    readonly socketPath: string,
  ) {
    socket.on('data', this.onData);
    socket.on('error', (err) => this.fail(err));
    socket.on('close', () => this.fail(new DaemonUnavailableError(`the tskvm daemon on ${socketPath} closed the connection`)));
  }

  /** Connects; rejects with DaemonUnavailableError (one sentence) if no daemon listens there. */
  static connect(socketPath: string): Promise<DaemonClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(socketPath);
      socket.once('connect', () => {
        socket.off('error', onError);
        resolve(new DaemonClient(socket, socketPath));
      });
      const onError = (err: NodeJS.ErrnoException): void => {
        if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED')
          reject(new DaemonUnavailableError(`no tskvm daemon is listening on ${socketPath} (start one with \`tskvm daemon\`, or pass --socket)`));
        else if (err.code === 'EACCES') reject(new DaemonUnavailableError(`no permission to connect to ${socketPath}: the daemon's socket belongs to another user`));
        else reject(new DaemonUnavailableError(`cannot connect to the tskvm daemon on ${socketPath}: ${err.message}`));
      };
      socket.once('error', onError);
    });
  }

  /** Sends one request; resolves with its result or rejects with DaemonRequestError. */
  request<K extends Exclude<Op, 'console' | 'watch'>>(request: Omit<RequestOf<K>, 'id'> & { op: K }): Promise<Results[K]> {
    if (this.closedError) return Promise.reject(this.closedError);
    const id = this.nextId++;
    return new Promise<Results[K]>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (result: unknown) => void, reject });
      this.socket.write(encodeLine({ ...request, id } as ClientRequest));
    });
  }

  /**
   * Attaches to a VM's console. Resolves, once the daemon agreed, with the
   * socket: from then on it carries the console's raw bytes (history first)
   * and takes keystrokes. The socket is paused: attach a 'data' listener and
   * resume() it. This client can send no more requests.
   */
  async openConsole(name: string, options: { replay?: boolean } = {}): Promise<{ socket: net.Socket; replayed: number }> {
    if (this.closedError) throw this.closedError;
    const id = this.nextId++;
    const answer = new Promise<Results['console']>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (result: unknown) => void, reject });
    });
    this.consoleId = id; // whatever follows its answer is console output
    this.socket.write(encodeLine({ id, op: 'console', name, ...(options.replay === undefined ? {} : { replay: options.replay }) }));
    const result = await answer;
    return { socket: this.socket, replayed: result.replayed };
  }

  /** Subscribes to the daemon's events (state changes, stops); the connection carries nothing else afterwards. */
  async watch(onEvent: (event: DaemonEvent) => void): Promise<void> {
    const id = this.nextId++;
    const answer = new Promise<unknown>((resolve, reject) => this.pending.set(id, { resolve, reject }));
    this.eventListener = onEvent;
    this.socket.write(encodeLine({ id, op: 'watch' }));
    await answer;
  }

  close(): void {
    this.socket.destroy();
  }

  private readonly onData = (chunk: Buffer): void => {
    this.splitter.push(chunk);
    for (let item = this.splitter.next(); item; item = this.splitter.next()) {
      if ('tooLong' in item) return this.fail(new Error('the daemon sent a line that is too long'));
      let message: Response | DaemonEvent;
      try {
        message = parseResponseOrEvent(item.line);
      } catch (err) {
        return this.fail(err as Error);
      }
      if ('event' in message) {
        this.eventListener?.(message);
        continue;
      }
      const pending = typeof message.id === 'number' ? this.pending.get(message.id) : undefined;
      if (!pending) continue;
      this.pending.delete(message.id as number);
      if (message.ok) pending.resolve(message.result);
      else pending.reject(new DaemonRequestError(message.error.code, message.error.message));
      if (message.id === this.consoleId) return this.switchToRaw(message.ok);
    }
  };

  /** After the console answer: hand the rest of the stream to whoever reads the socket. */
  private switchToRaw(ok: boolean): void {
    this.consoleId = undefined;
    if (!ok) return;
    this.socket.off('data', this.onData);
    this.socket.pause();
    const rest = this.splitter.takeRest();
    if (rest.length > 0) this.socket.unshift(rest);
  }

  private fail(error: Error): void {
    if (this.closedError) return;
    this.closedError = error;
    for (const pending of this.pending.values()) pending.reject(error);
    this.pending.clear();
    this.socket.destroy();
  }
}
