// `tskvm daemon`: a long-running process that holds named VMs and answers
// the JSON-lines protocol (protocol.ts) on a Unix socket (socket-path.ts).
//
// VMs outlive the connections that started them; a console client that
// detaches leaves its VM running. A VM that stops by itself (halt, power
// off, error) stays listed as stopped, with the reason, until `destroy`
// removes it or a `start` reuses its name; `destroy` and `shutdown` remove
// the VM. On SIGTERM (or SIGINT/SIGHUP) the daemon destroys its VMs, closes
// its connections, removes its socket and exits 0.
//
// Every request is validated (parseRequest) before anything acts on it; a bad
// one gets an error response and the connection carries on. Handler errors
// become error responses too: one client cannot stop the daemon.
import * as fs from 'fs';
import * as net from 'net';
import type { MachineOptions } from '../vmm/machine';
import { MachineConfigError } from '../vmm/sync-machine';
import { LineSplitter } from './line-splitter';
import { ManagedVm, VmStateError } from './managed-vm';
import { DEFAULT_HISTORY_BYTES } from './output-history';
import {
  MAX_REQUEST_BYTES,
  PROTOCOL_VERSION,
  ProtocolError,
  encodeLine,
  errorResponse,
  parseRequest,
  type DaemonEvent,
  type ErrorCode,
  type Request,
  type RequestId,
  type Response,
  type Results,
} from './protocol';
import { prepareSocketPath } from './socket-path';

/** Grace time `shutdown` gives the guest when the request names none (virsh-like: long enough for an OS). */
export const DEFAULT_SHUTDOWN_TIMEOUT_SECONDS = 30;

export interface DaemonServerOptions {
  socketPath: string;
  /** Console output kept per VM for replay on attach (default 64 KiB). */
  historyBytes?: number;
  /** Where the daemon's log lines go (default: stderr). */
  log?: (line: string) => void;
}

/** A refused request: becomes an error response with this code. */
class RequestError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
  }
}

type Mode = 'lines' | 'console' | 'watch';

export class DaemonServer {
  readonly socketPath: string;
  private readonly historyBytes: number;
  private readonly log: (line: string) => void;
  private readonly server = net.createServer((socket) => this.onConnection(socket));
  private readonly vms = new Map<string, ManagedVm>();
  private readonly sockets = new Set<net.Socket>();
  private readonly watchers = new Set<net.Socket>();
  private closing?: Promise<void>;
  private listening = false;

  constructor(options: DaemonServerOptions) {
    this.socketPath = options.socketPath;
    this.historyBytes = options.historyBytes ?? DEFAULT_HISTORY_BYTES;
    this.log = options.log ?? ((line) => process.stderr.write(`tskvm daemon: ${line}\n`));
  }

  /** Binds the socket (mode 0600). Rejects if another daemon listens there. */
  async listen(): Promise<void> {
    await prepareSocketPath(this.socketPath);
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      // The socket file is created by bind() inside listen(): with this umask
      // it is never accessible to others, not even for an instant.
      const umask = process.umask(0o177);
      try {
        this.server.listen(this.socketPath, () => {
          this.server.off('error', reject);
          resolve();
        });
      } finally {
        process.umask(umask);
      }
    });
    fs.chmodSync(this.socketPath, 0o600);
    this.listening = true;
    this.server.on('error', (err) => this.log(`socket error: ${err.message}`));
  }

  /** Destroys every VM, closes every connection and removes the socket. */
  close(): Promise<void> {
    this.closing ??= this.closeOnce();
    return this.closing;
  }

  private async closeOnce(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    const vms = [...this.vms.values()];
    await Promise.all(vms.map((vm) => vm.destroy().catch(() => undefined)));
    this.vms.clear();
    for (const socket of this.sockets) socket.destroy();
    if (this.listening) await closed;
    this.listening = false;
    try {
      fs.unlinkSync(this.socketPath);
    } catch {
      // gone already (the server's close removes it on some Node versions)
    }
    if (vms.length > 0) this.log(`stopped ${vms.length} VM${vms.length === 1 ? '' : 's'}`);
  }

  /** The VMs held now (tests, embedding). */
  get vmNames(): string[] {
    return [...this.vms.keys()];
  }

  // ------------------------------------------------------------ connections

  private onConnection(socket: net.Socket): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    this.sockets.add(socket);
    const splitter = new LineSplitter(MAX_REQUEST_BYTES);
    let mode: Mode = 'lines';
    const send = (message: Response | DaemonEvent): void => {
      // Once a connection carries console bytes, late answers to earlier requests would corrupt it.
      if (mode !== 'console' && !socket.destroyed && socket.writable) socket.write(encodeLine(message));
    };
    socket.on('error', () => socket.destroy()); // ECONNRESET, EPIPE: the client went away
    socket.on('close', () => {
      this.sockets.delete(socket);
      this.watchers.delete(socket);
    });
    socket.on('data', (chunk: Buffer) => {
      if (mode !== 'lines') return; // console input has its own listener; watchers only listen
      splitter.push(chunk);
      for (let item = splitter.next(); item; item = mode === 'lines' ? splitter.next() : undefined) {
        if ('tooLong' in item) {
          send(errorResponse('ETOOLONG', `a request line is longer than ${MAX_REQUEST_BYTES} bytes`));
          continue;
        }
        const text = item.line.trim();
        if (text === '') continue;
        let request: Request;
        try {
          request = parseRequest(text);
        } catch (err) {
          const e = err as ProtocolError;
          send(errorResponse(e.code ?? 'EBADREQUEST', e.message, e.id));
          continue;
        }
        if (this.closing) {
          send(errorResponse('ESHUTDOWN', 'the daemon is shutting down', request.id));
          continue;
        }
        if (request.op === 'console') {
          const result = this.attachConsole(socket, request.name, request.replay ?? true, request.id, send, splitter);
          if (result) mode = 'console';
          continue;
        }
        if (request.op === 'watch') {
          send(this.ok(request.id, { watching: true }));
          mode = 'watch';
          this.watchers.add(socket);
          continue;
        }
        void this.dispatch(request).then(
          (result) => send(this.ok(request.id, result)),
          (err: unknown) => send(this.failure(request.id, err)),
        );
      }
    });
  }

  private ok(id: RequestId | undefined, result: unknown): Response {
    return id === undefined ? { ok: true, result } : { id, ok: true, result };
  }

  private failure(id: RequestId | undefined, err: unknown): Response {
    if (err instanceof RequestError) return errorResponse(err.code, err.message, id);
    if (err instanceof VmStateError) return errorResponse('ESTATE', err.message, id);
    const message = err instanceof Error ? err.message : String(err);
    this.log(`internal error: ${message}`);
    return errorResponse('EINTERNAL', message, id);
  }

  /** Switches the connection to the VM's console; false (and an error response) if it cannot. */
  private attachConsole(
    socket: net.Socket,
    name: string,
    replay: boolean,
    id: RequestId | undefined,
    send: (message: Response) => void,
    splitter: LineSplitter,
  ): boolean {
    const vm = this.vms.get(name);
    if (!vm) {
      send(errorResponse('ENOVM', `no VM named "${name}"`, id));
      return false;
    }
    if (vm.state !== 'running' && vm.state !== 'paused') {
      send(errorResponse('ESTATE', `VM "${name}" is ${vm.state}: there is no console to attach to`, id));
      return false;
    }
    // The answer first, then the history and live bytes (attachConsole writes them).
    const history = vm.history.snapshot().length;
    send(this.ok(id, { name, replayed: replay ? history : 0 }));
    vm.attachConsole(socket, replay);
    const input = (chunk: Buffer): void => {
      if (chunk.length === 0) return;
      // Back-pressure: read no more from the client until the guest's input ring took this.
      socket.pause();
      void vm.sendInput(chunk).finally(() => socket.resume());
    };
    socket.on('data', input);
    const rest = splitter.takeRest();
    if (rest.length > 0) input(rest);
    return true;
  }

  private broadcast(event: DaemonEvent): void {
    const line = encodeLine(event);
    for (const socket of this.watchers) if (!socket.destroyed) socket.write(line);
  }

  // ------------------------------------------------------------ requests

  private vm(name: string): ManagedVm {
    const vm = this.vms.get(name);
    if (!vm) throw new RequestError('ENOVM', `no VM named "${name}"`);
    return vm;
  }

  private remove(vm: ManagedVm): void {
    if (this.vms.get(vm.name) !== vm) return;
    this.vms.delete(vm.name);
    this.broadcast({ event: 'removed', name: vm.name });
  }

  private async dispatch(request: Exclude<Request, { op: 'console' | 'watch' }>): Promise<Results[keyof Results]> {
    switch (request.op) {
      case 'ping':
        return { daemon: 'tskvm', protocol: PROTOCOL_VERSION, pid: process.pid, vms: this.vms.size } satisfies Results['ping'];
      case 'list':
        return { vms: [...this.vms.values()].map((vm) => vm.summary()).sort((x, y) => (x.name < y.name ? -1 : 1)) } satisfies Results['list'];
      case 'start':
        return this.start(request.name, request.options);
      case 'info':
        return this.vm(request.name).info();
      case 'suspend': {
        const vm = this.vm(request.name);
        await vm.suspend();
        return vm.summary();
      }
      case 'resume': {
        const vm = this.vm(request.name);
        await vm.resume();
        return vm.summary();
      }
      case 'destroy': {
        const vm = this.vm(request.name);
        const stop = await vm.destroy();
        this.remove(vm);
        this.log(`VM ${vm.name} destroyed`);
        return { name: vm.name, stop } satisfies Results['destroy'];
      }
      case 'shutdown': {
        const vm = this.vm(request.name);
        const timeout = request.timeoutSeconds ?? DEFAULT_SHUTDOWN_TIMEOUT_SECONDS;
        this.log(`VM ${vm.name}: power button pressed (destroyed if still running in ${timeout} s)`);
        const result = await vm.shutdown(timeout);
        this.remove(vm);
        this.log(`VM ${vm.name} ${result.destroyed ? 'did not power off in time: destroyed' : `shut down (${result.stop.kind}: ${result.stop.reason})`}`);
        return { name: vm.name, ...result } satisfies Results['shutdown'];
      }
    }
  }

  private async start(name: string, options: MachineOptions): Promise<Results['start']> {
    const existing = this.vms.get(name);
    if (existing && existing.state !== 'stopped') throw new RequestError('EEXIST', `a VM named "${name}" already exists (${existing.state})`);
    if (existing) this.remove(existing); // stopped: the name is free again
    let vm: ManagedVm;
    try {
      vm = new ManagedVm(name, options, this.historyBytes);
    } catch (err) {
      throw new RequestError(err instanceof MachineConfigError ? 'EBADREQUEST' : 'ESTART', (err as Error).message);
    }
    this.vms.set(name, vm);
    vm.on('state', (state) => this.broadcast({ event: 'state', name, state }));
    vm.on('log', (message) => this.log(`VM ${name}: ${message}`));
    vm.on('stopped', (stop) => {
      this.broadcast({ event: 'stopped', name, stop });
      this.log(`VM ${name} stopped (${stop.kind}: ${stop.reason})`);
    });
    try {
      await vm.start();
    } catch (err) {
      this.remove(vm);
      throw new RequestError('ESTART', (err as Error).message);
    }
    if (this.closing) {
      // The daemon began to stop while this VM was starting: it goes too.
      await vm.destroy();
      this.remove(vm);
      throw new RequestError('ESHUTDOWN', 'the daemon is shutting down');
    }
    this.log(`VM ${name} started (${vm.summary().platform}, ${vm.summary().memory})`);
    return vm.summary();
  }
}

/**
 * Runs the daemon until SIGTERM, SIGINT or SIGHUP; resolves to the exit code.
 * `onListening` is told once the socket accepts connections.
 */
export async function runDaemon(options: DaemonServerOptions & { onListening?: (socketPath: string) => void }): Promise<number> {
  const daemon = new DaemonServer(options);
  await daemon.listen();
  const log = options.log ?? ((line: string) => process.stderr.write(`tskvm daemon: ${line}\n`));
  log(`listening on ${daemon.socketPath} (pid ${process.pid})`);
  options.onListening?.(daemon.socketPath);
  const signals: NodeJS.Signals[] = ['SIGTERM', 'SIGINT', 'SIGHUP'];
  await new Promise<void>((resolve) => {
    const onSignal = (signal: NodeJS.Signals): void => {
      for (const s of signals) process.off(s, onSignal);
      log(`${signal}: stopping`);
      void daemon.close().then(resolve);
    };
    for (const s of signals) process.on(s, onSignal);
  });
  log('stopped');
  return 0;
}
