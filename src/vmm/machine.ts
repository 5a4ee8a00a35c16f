// Machine: the library's front door. A typed (or JSON) config describes the
// VM and what to boot; `await machine.start()` runs it on a vCPU worker
// thread while the caller's event loop keeps going.
//
//   const machine = new Machine({ memory: '256M', boot: { kind: 'linux', kernel, initrd } });
//   machine.on('output', (data) => process.stdout.write(data));
//   await machine.start();
//   machine.sendInput(Buffer.from('uname -r\n'));
//   const stop = await machine.wait();
//
// Why a worker_thread per VM (DESIGN.md, threading): KVM_RUN blocks its
// thread for as long as the guest runs without exiting, so it cannot run on
// the main thread. The worker owns the VM's file descriptors, RAM and device
// models (one owner thread), so a device access costs no cross-thread hop —
// bench/exits measures what the worker adds per exit (nothing on the exit
// path itself; the console ring costs a store and a notify per byte).
// The main thread talks to it through shared rings and a command port, and
// kicks the vCPU out of KVM_RUN (a signal to its thread, KVM immediate_exit)
// when it has something for it.
import { EventEmitter } from 'events';
import * as fs from 'fs';
import * as path from 'path';
import { MessageChannel, Worker } from 'worker_threads';
import { native } from '../native';
import { Tap, TAP_MAX_FRAME, type TapError } from '../net/tap';
import { findWorkerScript } from './worker-script';
import { ByteRing } from './byte-ring';
import type { VcpuStop } from './exit-loop';
import { MachineConfigError } from './sync-machine';
import { MachineDebugger } from './machine-debugger';
import {
  CONTROL_MAIL,
  CONTROL_SLOTS,
  type BootSpec,
  type MachineStatistics,
  type WorkerCommand,
  type WorkerData,
  type WorkerEvent,
  type WorkerMachineConfig,
} from './worker-protocol';

export type { BootSpec, MachineStatistics } from './worker-protocol';
/** What pressing the ACPI power button did (Machine.pressPowerButton). */
export type PowerButtonResult = 'sci' | 'not-enabled' | 'no-acpi';

export interface MachineOptions extends WorkerMachineConfig {
  boot: BootSpec;
  /**
   * Console output ring size in bytes (power of two, default 64 KiB: over
   * half a second of the fastest UART output while the main thread is busy).
   * Kept small on purpose: each machine's rings are allocated with malloc,
   * and with 1 MiB rings a process that created and destroyed 20 machines
   * at a time grew by about 5 MiB of RSS per round (bench/soak): glibc raises
   * its mmap threshold after the first large free, so later rings came from
   * its heap, were zeroed there, and the freed memory stayed resident.
   */
  outputBufferSize?: number;
  /**
   * Lets a debugger drive the vCPU (`machine.debug`, machine-debugger.ts).
   * `waitForDebugger`: the vCPU stays stopped before its first instruction
   * until the debugger resumes it (like QEMU's -S).
   */
  debug?: { waitForDebugger?: boolean };
}

/**
 * Console input queued on the main thread beyond the 64 KiB input ring. A
 * sender that awaits sendInput() never reaches it; past it bytes are dropped.
 */
export const MAX_PENDING_INPUT = 1 << 20;

export type MachineState = 'created' | 'starting' | 'running' | 'paused' | 'stopped';

export interface AsyncMachineEvents {
  /** Console bytes from the guest (serial and debug console), as they come. */
  output: [data: Buffer];
  log: [message: string];
  state: [state: MachineState];
  /** The guest stopped (halt, power off, reset, error, or stop()). */
  exit: [stop: VcpuStop];
  /** reset() rebooted the machine: a fresh VM runs from the same config. */
  reset: [];
}

/** An error from starting the VM: its message is one sentence for the user; `code` says what kind. */
export class MachineStartError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
    this.name = 'MachineStartError';
  }
}

/** The compiled vCPU worker script (worker-script.ts). */
function workerScript(): string {
  const found = findWorkerScript('vm-worker');
  if (found.path) return found.path;
  throw new MachineStartError(`the vCPU worker script is not built (looked for ${found.looked.join(' and ')}); run npm run build`, 'ENOWORKER');
}

export class Machine extends EventEmitter<AsyncMachineEvents> {
  readonly options: MachineOptions;
  private stateValue: MachineState = 'created';
  private worker?: Worker;
  private commandPort?: MessageChannel['port1'];
  private control?: Int32Array;
  private output?: ByteRing;
  private input?: ByteRing;
  private vcpuFds: number[] = [];
  private lastStatistics?: MachineStatistics;
  private exited: Promise<VcpuStop>;
  private resolveExit!: (stop: VcpuStop) => void;
  private pendingInput: Uint8Array[] = [];
  private inputPump?: Promise<void>;
  /**
   * True while pumpInput's loop runs. Kept apart from `inputPump` because a
   * pump that finds room for everything finishes synchronously, before any
   * `.finally` on its promise could clear it: a second sendInput in the same
   * tick (a websocket delivering several keystroke frames from one read)
   * must start a new pump, not join the finished one and strand its bytes.
   */
  private inputPumping = false;
  private statisticsRequests = new Map<number, (s: MachineStatistics) => void>();
  private powerButtonRequests = new Map<number, (result: PowerButtonResult) => void>();
  private nextRequestId = 1;
  private resetWaiters: (() => void)[] = [];
  private stateWaiters: { state: MachineState; resolve: () => void }[] = [];
  private outputDone?: Promise<void>;
  private finishing?: Promise<void>;
  /** Frames from the taps for the worker's NICs: records of [NIC index, frame...]. */
  private netInput?: ByteRing;
  private taps: Tap[] = [];
  private tapReaders: Promise<void>[] = [];
  private workerGone?: Promise<void>;
  private pendingInputBytes = 0;
  /** Console input bytes dropped because sendInput() was called faster than the guest reads, without awaiting. */
  inputDropped = 0;
  /** Host frames dropped because the worker had not taken the previous ones yet. */
  netInputDropped = 0;
  /** Breakpoints, single-step, registers and memory for a debugger (needs the `debug` option). */
  readonly debug: MachineDebugger;

  constructor(options: MachineOptions) {
    super();
    if (!options || typeof options !== 'object' || !options.boot) throw new MachineConfigError('a machine needs a boot: { kind: "linux" | "binary", ... } entry');
    this.options = options;
    this.exited = new Promise((resolve) => (this.resolveExit = resolve));
    this.debug = new MachineDebugger({ enabled: options.debug !== undefined, command: (c) => this.command(c), exited: this.exited });
  }

  /** Reads a machine from a JSON file (the same shape as MachineOptions; paths relative to the file). */
  static fromJsonFile(file: string): Machine {
    const options = JSON.parse(fs.readFileSync(file, 'utf8')) as MachineOptions;
    const base = path.dirname(path.resolve(file));
    const resolve = (p: unknown): unknown => (typeof p === 'string' ? path.resolve(base, p) : p);
    const boot = { ...options.boot } as BootSpec;
    if (boot.kind === 'linux') {
      boot.kernel = resolve(boot.kernel) as string;
      if (boot.initrd !== undefined) boot.initrd = resolve(boot.initrd) as string;
    } else if (boot.kind === 'binary') {
      boot.file = resolve(boot.file) as string;
    }
    return new Machine({ ...options, boot });
  }

  get state(): MachineState {
    return this.stateValue;
  }

  /** Statistics posted when the guest stopped (or the last ones asked for). */
  get statistics(): MachineStatistics | undefined {
    return this.lastStatistics;
  }

  /**
   * Creates the VM on a vCPU worker and starts the guest. Resolves once it is
   * running; rejects with a MachineStartError (one sentence) if the VM cannot
   * be created or the boot files are bad.
   */
  async start(): Promise<void> {
    if (this.stateValue !== 'created') throw new MachineConfigError(`start() on a machine that is ${this.stateValue}`);
    this.setState('starting');
    const { boot, outputBufferSize, debug, ...config } = this.options;
    // Taps are opened here, on the thread that reads them; the worker writes
    // the guest's frames to the same fds (see pumpTap).
    try {
      for (const nic of config.net ?? []) this.taps.push(Tap.open(nic.tap));
    } catch (err) {
      this.closeTaps();
      await this.finish({ kind: 'error', reason: (err as Error).message });
      throw new MachineStartError((err as Error).message, (err as TapError).code ?? 'ENET');
    }
    if (config.net) config.net = config.net.map((nic, i) => ({ ...nic, fd: this.taps[i]!.fd }));
    // Disks, NICs and rng are served on the virtio I/O thread unless the options say otherwise.
    config.ioThread ??= true;
    const output = new ByteRing(outputBufferSize ?? 1 << 16);
    const input = new ByteRing(1 << 16);
    const netInput = this.taps.length > 0 ? new ByteRing(1 << 20) : undefined;
    this.netInput = netInput;
    const control = new SharedArrayBuffer(CONTROL_SLOTS * 4);
    const channel = new MessageChannel();
    const workerData: WorkerData = {
      config,
      boot,
      output: output.buffer,
      input: input.buffer,
      netInput: netInput?.buffer,
      control,
      commands: channel.port2,
      debug,
    };
    this.output = output;
    this.input = input;
    this.control = new Int32Array(control);
    this.commandPort = channel.port1;
    const worker = new Worker(workerScript(), { workerData, transferList: [channel.port2] });
    this.worker = worker;
    this.workerGone = new Promise((resolve) => worker.once('exit', () => resolve()));
    this.outputDone = this.pumpOutput(output);

    return new Promise<void>((resolve, reject) => {
      let started = false;
      worker.on('message', (event: WorkerEvent) => {
        switch (event.type) {
          case 'started':
            started = true;
            this.vcpuFds = event.vcpuFds;
            this.setState('running');
            // After 'running': the readers loop while the machine runs. With
            // the I/O thread the taps are polled there instead (a reset keeps
            // the same choice: same config, same KVM).
            if (!event.tapsOnIoThread) this.tapReaders = this.taps.map((tap, i) => this.pumpTap(tap, i));
            resolve();
            break;
          case 'reset':
            this.vcpuFds = event.vcpuFds;
            this.emit('reset');
            this.resetWaiters.splice(0).forEach((resolve) => resolve());
            break;
          case 'log':
            this.emit('log', event.message);
            break;
          case 'paused':
            this.setState('paused');
            break;
          case 'resumed':
            this.debug.onWorkerEvent(event);
            this.setState('running');
            break;
          case 'debug-stopped':
            this.debug.onWorkerEvent(event);
            this.setState('paused');
            break;
          case 'debug-reply':
            this.debug.onWorkerEvent(event);
            break;
          case 'statistics':
            this.lastStatistics = event.statistics;
            this.statisticsRequests.get(event.id)?.(event.statistics);
            this.statisticsRequests.delete(event.id);
            break;
          case 'power-button':
            this.powerButtonRequests.get(event.id)?.(event.result);
            this.powerButtonRequests.delete(event.id);
            break;
          case 'stopped':
            this.lastStatistics = event.statistics;
            void this.finish(event.stop);
            break;
          case 'error': {
            const error = new MachineStartError(event.message, event.code ?? 'EVM');
            // Settle start() once the machine is fully stopped.
            void this.finish({ kind: 'error', reason: event.message }).then(() => !started && reject(error));
            break;
          }
        }
      });
      worker.on('error', (error) => {
        const failure = new MachineStartError(`the vCPU worker failed: ${error.message}`, 'EWORKER');
        void this.finish({ kind: 'error', reason: `vCPU worker failed: ${error.message}` }).then(() => !started && reject(failure));
      });
      worker.on('exit', () => {
        const failure = new MachineStartError('the vCPU worker exited before the VM started', 'EWORKER');
        void this.finish({ kind: 'error', reason: 'vCPU worker exited' }).then(() => !started && reject(failure));
      });
    });
  }

  /** Resolves with why the guest stopped. */
  wait(): Promise<VcpuStop> {
    return this.exited;
  }

  /**
   * Console input for the guest (COM1). Bytes are queued and fed to the UART
   * as the guest reads them; the promise resolves when all of them are in the
   * (bounded, 64 KiB) input ring — await it to apply back-pressure. Bytes
   * sent without awaiting beyond MAX_PENDING_INPUT are dropped and counted
   * in `inputDropped`.
   */
  sendInput(data: Uint8Array | string): Promise<void> {
    const bytes = typeof data === 'string' ? Buffer.from(data) : data;
    if (this.stateValue === 'stopped' || !this.input) return Promise.resolve();
    // A sender that does not await (issue 6: 100 MB pushed at the console)
    // would otherwise make this queue hold everything it sent: beyond
    // MAX_PENDING_INPUT the bytes are dropped and counted, like a UART
    // overrun, and said once in a 'log' line.
    const room = MAX_PENDING_INPUT - this.pendingInputBytes;
    if (bytes.length > room) {
      if (this.inputDropped === 0) this.emit('log', `console input is arriving faster than the guest reads it; dropping what exceeds ${MAX_PENDING_INPUT} queued bytes (counted in inputDropped)`);
      this.inputDropped += bytes.length - Math.max(room, 0);
      if (room <= 0) return this.inputPump ?? Promise.resolve();
    }
    const kept = bytes.length > room ? bytes.subarray(0, room) : bytes;
    this.pendingInput.push(kept);
    this.pendingInputBytes += kept.length;
    if (!this.inputPumping) this.inputPump = this.pumpInput();
    return this.inputPump!;
  }

  /** Stops the vCPU between two instructions; devices keep their state. */
  async pause(): Promise<void> {
    if (this.stateValue === 'paused') return;
    this.requireRunning('pause');
    const paused = this.waitForState('paused');
    this.command({ type: 'pause' });
    await paused;
  }

  async resume(): Promise<void> {
    if (this.stateValue === 'running') return;
    if (this.stateValue !== 'paused') throw new MachineConfigError(`resume() on a machine that is ${this.stateValue}`);
    const running = this.waitForState('running');
    this.command({ type: 'resume' });
    await running;
  }

  /**
   * A cold reset, like pressing the reset button of a PC without firmware:
   * the VM (RAM, vCPUs, device state, statistics) is freed and a new one
   * boots from the same config — same kernel, initrd and disks; the console,
   * taps and listeners stay. Resolves when the new VM runs. A guest's own
   * reboot (i8042 reset, ACPI reset) still ends the run, like QEMU -no-reboot.
   */
  async reset(): Promise<void> {
    if (this.stateValue === 'paused') await this.resume();
    this.requireRunning('reset');
    if (this.options.debug) throw new MachineConfigError('reset() is not available while the machine is set up for a debugger');
    const done = new Promise<void>((resolve) => this.resetWaiters.push(resolve));
    this.command({ type: 'reset' });
    await Promise.race([done, this.exited.then(() => Promise.reject(new MachineConfigError('the machine stopped during reset()')))]);
  }

  /** Stops the guest (like pulling the plug) and frees the VM. Resolves with the stop. */
  async stop(): Promise<VcpuStop> {
    if (this.stateValue === 'created') {
      await this.finish({ kind: 'stopped', reason: 'never started' });
    } else if (this.stateValue !== 'stopped') {
      this.command({ type: 'stop' });
    }
    return this.exited;
  }

  /** Exit counts, device accesses and workarounds, read from the running vCPU. */
  async readStatistics(): Promise<MachineStatistics | undefined> {
    if (this.stateValue !== 'running' && this.stateValue !== 'paused') return this.lastStatistics;
    const id = this.nextRequestId++;
    const answer = new Promise<MachineStatistics>((resolve) => this.statisticsRequests.set(id, resolve));
    this.command({ type: 'statistics', id });
    return Promise.race([answer, this.exited.then(() => this.lastStatistics)]);
  }

  /**
   * Presses the ACPI power button (the guest's cue for an orderly shutdown;
   * it then powers off through ACPI S5, ending with a 'poweroff' stop).
   * Resolves with what the button did: 'sci' the guest's ACPI driver was
   * listening, 'not-enabled' the press is latched but nothing listens (yet),
   * 'no-acpi' the machine has no ACPI ('bare' platform) or has stopped.
   */
  async pressPowerButton(): Promise<PowerButtonResult> {
    if (this.stateValue !== 'running' && this.stateValue !== 'paused') return 'no-acpi';
    const id = this.nextRequestId++;
    const answer = new Promise<PowerButtonResult>((resolve) => this.powerButtonRequests.set(id, resolve));
    this.command({ type: 'power-button', id });
    return Promise.race([answer, this.exited.then((): PowerButtonResult => 'no-acpi')]);
  }

  // ---------------------------------------------------------------- internals

  private requireRunning(what: string): void {
    if (this.stateValue !== 'running') throw new MachineConfigError(`${what}() on a machine that is ${this.stateValue}`);
  }

  private setState(state: MachineState): void {
    if (this.stateValue === state) return;
    this.stateValue = state;
    this.emit('state', state);
    const ready = this.stateWaiters.filter((w) => w.state === state || state === 'stopped');
    this.stateWaiters = this.stateWaiters.filter((w) => !ready.includes(w));
    for (const w of ready) w.resolve();
  }

  private waitForState(state: MachineState): Promise<void> {
    return new Promise((resolve) => this.stateWaiters.push({ state, resolve }));
  }

  /** Posts a command and gets the vCPU out of KVM_RUN to read it. */
  private command(command: WorkerCommand): void {
    if (!this.commandPort || !this.control) return;
    this.commandPort.postMessage(command);
    Atomics.add(this.control, CONTROL_MAIL, 1);
    Atomics.notify(this.control, CONTROL_MAIL); // a paused worker sleeps on it
    this.kick();
  }

  private kick(): void {
    for (const fd of this.vcpuFds) native.kick(fd);
  }

  private async pumpOutput(ring: ByteRing): Promise<void> {
    for (;;) {
      await ring.waitForData();
      if (ring.available > 0) this.emit('output', Buffer.from(ring.read()));
      else if (ring.closed) return;
    }
  }

  private async pumpInput(): Promise<void> {
    const ring = this.input!;
    this.inputPumping = true;
    try {
      while (this.pendingInput.length > 0 && this.stateValue !== 'stopped') {
        const chunk = this.pendingInput[0]!;
        const n = ring.write(chunk);
        this.pendingInputBytes -= n;
        if (n > 0) this.kick();
        if (n === chunk.length) this.pendingInput.shift();
        else {
          this.pendingInput[0] = chunk.subarray(n);
          await Promise.race([ring.waitForSpace(), this.exited]);
        }
      }
      if (this.stateValue === 'stopped') {
        this.pendingInput = [];
        this.pendingInputBytes = 0;
      }
    } finally {
      this.inputPumping = false;
    }
  }

  /**
   * Moves frames from a tap to the worker: wait (on a thread-pool thread)
   * until the tap is readable, read every waiting frame, put each in the
   * net ring and kick the vCPU so the NIC fills the guest's receive buffers
   * even while the guest sits in HLT. A full ring drops the frame, as a NIC
   * with no free buffers would.
   */
  private async pumpTap(tap: Tap, index: number): Promise<void> {
    const ring = this.netInput!;
    const buffer = new Uint8Array(TAP_MAX_FRAME + 1);
    const record = new Uint8Array(TAP_MAX_FRAME + 1);
    while (this.stateValue === 'running' || this.stateValue === 'paused') {
      let readable: boolean;
      try {
        readable = await native.waitReadable(tap.fd, 200);
      } catch {
        return;
      }
      if (this.stateValue !== 'running' && this.stateValue !== 'paused') return;
      if (!readable) continue;
      let delivered = false;
      for (let frame = tap.read(buffer); frame; frame = tap.read(buffer)) {
        record[0] = index;
        record.set(frame, 1);
        if (ring.writeRecord(record.subarray(0, frame.length + 1))) delivered = true;
        else this.netInputDropped++;
      }
      if (delivered) this.kick();
    }
  }

  private closeTaps(): void {
    for (const tap of this.taps) tap.close();
    this.taps = [];
  }

  /** Ends the machine once; later calls get the same promise. */
  private finish(stop: VcpuStop): Promise<void> {
    this.finishing ??= this.finishOnce(stop);
    return this.finishing;
  }

  private async finishOnce(stop: VcpuStop): Promise<void> {
    this.input?.close();
    // Let the output that came before the stop reach listeners first.
    this.output?.close();
    await this.outputDone;
    this.commandPort?.close();
    this.setState('stopped');
    this.emit('exit', stop);
    this.resolveExit(stop);
    // The worker frees the VM before it reports and then ends by itself;
    // terminate it only if it does not (it cannot be stuck in KVM_RUN here).
    const worker = this.worker;
    if (worker) {
      const timer = setTimeout(() => void worker.terminate(), 2000);
      timer.unref();
      worker.once('exit', () => clearTimeout(timer));
    }
    // The tap fds are shared with the worker: close them only when it is gone
    // and our readers have noticed the stop (no fd number reuse under them).
    if (this.taps.length > 0) {
      await this.workerGone;
      await Promise.all(this.tapReaders);
      this.closeTaps();
    }
  }
}
