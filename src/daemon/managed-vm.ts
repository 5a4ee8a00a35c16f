// One VM held by the daemon: a Machine (its vCPU worker does the running),
// the output history replayed to consoles that attach, the attached console
// connections, and the lifecycle verbs with the daemon's policies:
//
// - suspend/resume: Machine.pause()/resume() (the vCPU stops between two
//   instructions; devices keep their state).
// - shutdown: press the ACPI power button (acpi-pm.ts, ACPI 6.4 §4.8.3.1.1
//   fixed-feature power button), wait for the guest to power off, and destroy
//   it when the grace time runs out. A guest without ACPI (the bare platform)
//   or one that ignores the button is thereby destroyed after the timeout. A
//   suspended VM is resumed first: a stopped vCPU cannot act on the button.
// - destroy: Machine.stop() — pulling the plug.
import { EventEmitter } from 'events';
import type * as net from 'net';
import { Machine, type MachineOptions, type MachineState, type PowerButtonResult } from '../vmm/machine';
import type { VcpuStop } from '../vmm/exit-loop';
import { formatExitReport } from '../vmm/exit-report';
import { OutputHistory } from './output-history';
import type { StopInfo, VmInfo, VmSummary } from './protocol';

/** A console client that has this much output unsent is not reading: further output to it is dropped (and counted). */
export const MAX_CONSOLE_BACKLOG = 1 << 20;

export class VmStateError extends Error {}

export interface ShutdownResult {
  button: PowerButtonResult;
  /** The guest did not power off within the grace time. */
  destroyed: boolean;
  stop: StopInfo;
}

export interface ManagedVmEvents {
  state: [state: MachineState];
  stopped: [stop: StopInfo];
  log: [message: string];
}

export function toStopInfo(stop: VcpuStop): StopInfo {
  const info: StopInfo = { kind: stop.kind, reason: stop.reason };
  if (stop.report) info.report = formatExitReport(stop.report);
  return info;
}

export class ManagedVm extends EventEmitter<ManagedVmEvents> {
  readonly machine: Machine;
  readonly history: OutputHistory;
  private readonly consoles = new Set<net.Socket>();
  private startedAt?: number;
  private stoppedAt?: number;
  private shutdownInFlight?: Promise<ShutdownResult>;
  /** Set once the guest has stopped, whatever the reason. */
  stopInfo?: StopInfo;
  /** Console output not sent to a client that did not keep up. */
  consoleDropped = 0;

  constructor(
    readonly name: string,
    readonly options: MachineOptions,
    historyBytes?: number,
  ) {
    super();
    this.history = new OutputHistory(historyBytes);
    this.machine = new Machine(options);
    this.machine.on('output', (data) => this.onOutput(data));
    this.machine.on('state', (state) => this.emit('state', state));
    this.machine.on('log', (message) => this.emit('log', message));
    this.machine.on('exit', (stop) => {
      this.stoppedAt = Date.now();
      this.stopInfo = toStopInfo(stop);
      for (const socket of this.consoles) socket.end();
      this.consoles.clear();
      this.emit('stopped', this.stopInfo);
    });
  }

  /** Starts the guest; rejects with the Machine's one-sentence MachineStartError. */
  async start(): Promise<void> {
    await this.machine.start();
    this.startedAt = Date.now();
  }

  get state(): MachineState {
    return this.machine.state;
  }

  summary(): VmSummary {
    const until = this.stoppedAt ?? Date.now();
    const summary: VmSummary = {
      name: this.name,
      state: this.state,
      uptimeSeconds: this.startedAt === undefined ? null : Math.round((until - this.startedAt) / 100) / 10,
      platform: this.options.platform ?? (this.options.boot.kind === 'linux' ? 'pc' : 'bare'),
      memory: String(this.options.memory ?? '2M'),
    };
    if (this.stopInfo) summary.stop = this.stopInfo;
    return summary;
  }

  /** The config summary and the statistics, read from the running vCPU (or the last ones). */
  async info(): Promise<VmInfo> {
    const statistics = await this.machine.readStatistics();
    const boot = this.options.boot;
    const name = (file: string | Uint8Array): string => (typeof file === 'string' ? file : `<${file.length} bytes>`);
    const info: VmInfo = {
      ...this.summary(),
      boot:
        boot.kind === 'linux'
          ? {
              kind: 'linux',
              kernel: name(boot.kernel),
              ...(boot.initrd === undefined ? {} : { initrd: name(boot.initrd) }),
              ...(boot.cmdline === undefined ? {} : { cmdline: boot.cmdline }),
            }
          : { kind: 'binary', file: name(boot.file), mode: boot.mode, load: boot.load ?? 0x8000, entry: boot.entry ?? boot.load ?? 0x8000 },
      consoles: this.consoles.size,
      outputBytes: this.history.total,
    };
    if (statistics) info.statistics = statistics;
    return info;
  }

  async suspend(): Promise<void> {
    if (this.state === 'paused') return;
    if (this.state !== 'running') throw new VmStateError(`VM "${this.name}" is ${this.state}: only a running VM can be suspended`);
    await this.machine.pause();
  }

  async resume(): Promise<void> {
    if (this.state === 'running') return;
    if (this.state !== 'paused') throw new VmStateError(`VM "${this.name}" is ${this.state}: only a suspended VM can be resumed`);
    await this.machine.resume();
  }

  /** Pulls the plug. Resolves with why the guest stopped (its own stop if it had stopped already). */
  async destroy(): Promise<StopInfo> {
    const stop = await this.machine.stop();
    return this.stopInfo ?? toStopInfo(stop);
  }

  /**
   * Presses the power button and waits up to `timeoutSeconds` for the guest
   * to stop; then destroys it. Concurrent calls share the first one's wait.
   */
  shutdown(timeoutSeconds: number): Promise<ShutdownResult> {
    this.shutdownInFlight ??= this.shutdownOnce(timeoutSeconds);
    return this.shutdownInFlight;
  }

  private async shutdownOnce(timeoutSeconds: number): Promise<ShutdownResult> {
    if (this.state === 'stopped') return { button: 'no-acpi', destroyed: false, stop: this.stopInfo ?? (await this.destroy()) };
    if (this.state === 'starting') await new Promise<void>((resolve) => this.machine.once('state', () => resolve()));
    if (this.state === 'paused') await this.machine.resume();
    const button = await this.machine.pressPowerButton();
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<true>((resolve) => (timer = setTimeout(() => resolve(true), timeoutSeconds * 1000)));
    const outcome = await Promise.race([this.machine.wait().then(() => false as const), timedOut]);
    clearTimeout(timer);
    if (outcome) await this.machine.stop();
    return { button, destroyed: outcome, stop: this.stopInfo ?? toStopInfo(await this.machine.wait()) };
  }

  /** Console input for the guest; resolves when it is queued (back-pressure for the client). */
  sendInput(bytes: Uint8Array): Promise<void> {
    return this.machine.sendInput(bytes);
  }

  /**
   * Adds a console client: replays the history (unless `replay` is false),
   * then sends it live output until it goes away or the VM stops (the socket
   * is ended then). Returns the number of history bytes replayed.
   */
  attachConsole(socket: net.Socket, replay: boolean): number {
    const history = replay ? this.history.snapshot() : Buffer.alloc(0);
    if (history.length > 0) socket.write(history);
    this.consoles.add(socket);
    socket.once('close', () => this.consoles.delete(socket));
    return history.length;
  }

  get consoleCount(): number {
    return this.consoles.size;
  }

  private onOutput(data: Buffer): void {
    this.history.push(data);
    for (const socket of this.consoles) {
      if (socket.destroyed) continue;
      if (socket.writableLength > MAX_CONSOLE_BACKLOG) this.consoleDropped += data.length;
      else socket.write(data);
    }
  }
}
