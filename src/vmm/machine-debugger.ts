// `machine.debug`: a debugger's handle on a running Machine — what the gdb
// stub (src/gdb/gdb-stub.ts) drives, usable from any TypeScript too:
//
//   const machine = new Machine({ boot, debug: { waitForDebugger: true } });
//   await machine.start();                         // stopped before the first instruction
//   await machine.debug.interrupt();               // { kind: 'stopped', reason: 'attach', pc: 0x8000n }
//   await machine.debug.insertBreakpoint(0x8011n); // a hardware breakpoint (at most 4)
//   const stop = await machine.debug.continue();   // { kind: 'stopped', reason: 'breakpoint', pc: 0x8011n }
//   const { regs } = await machine.debug.readState();
//   await machine.debug.step();                    // one instruction
//   const bytes = await machine.debug.readMemory(0x8078n, 16);
//   await machine.debug.detach();                  // breakpoints off, the guest runs on
//
// Addresses are guest linear addresses (debug-protocol.ts). Requests travel
// to the vCPU worker as 'debug' commands (worker-protocol.ts) and are served
// by debug-target.ts between two exits or while the vCPU is stopped; the
// worker answers each with a 'debug-reply' and announces stops with
// 'debug-stopped'. The debugger needs the Machine option `debug`: without it
// the worker's exit loop carries no debugger hooks at all.
import { EventEmitter } from 'events';
import type { VcpuStop } from './exit-loop';
import type { WorkerCommand, WorkerEvent } from './worker-protocol';
import type { CpuState, CpuStateChange, DebugRequest, DebugResults, DebugStop } from './debug-protocol';

export type { CpuState, CpuStateChange, DebugStop, DebugStopReason } from './debug-protocol';

/** How a run under the debugger ended: a stop for the debugger, or the end of the machine. */
export type DebugOutcome = ({ kind: 'stopped' } & DebugStop) | { kind: 'exited'; stop: VcpuStop };

/** A debugger request that failed; `code`: ENODEBUG (no `debug` option), ESTOPPED (machine ended), ENOSPC (no free debug register), ERUNNING. */
export class DebuggerError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
    this.name = 'DebuggerError';
  }
}

/** What the Machine gives its debugger. */
export interface DebuggerLink {
  enabled: boolean;
  command(command: WorkerCommand): void;
  exited: Promise<VcpuStop>;
}

export interface MachineDebuggerEvents {
  /** The vCPU stopped for the debugger. */
  stop: [stop: DebugStop];
}

export class MachineDebugger extends EventEmitter<MachineDebuggerEvents> {
  private current?: DebugStop;
  private exit?: VcpuStop;
  private waiters: ((outcome: DebugOutcome) => void)[] = [];
  private readonly requests = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  private nextId = 1;

  constructor(private readonly link: DebuggerLink) {
    super();
    void link.exited.then((stop) => this.machineExited(stop));
  }

  /** True when the machine was created with the `debug` option. */
  get enabled(): boolean {
    return this.link.enabled;
  }

  /** The stop the vCPU is in, or undefined while it runs (or before it started). */
  get stopped(): DebugStop | undefined {
    return this.current;
  }

  /** Resolves at the vCPU's next stop for the debugger, or when the machine ends. */
  nextStop(): Promise<DebugOutcome> {
    if (this.exit) return Promise.resolve({ kind: 'exited', stop: this.exit });
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Stops the vCPU (gdb's Ctrl-C); resolves with the stop, at once if it is stopped already. */
  interrupt(): Promise<DebugOutcome> {
    if (!this.enabled) return Promise.reject(this.notEnabled());
    if (this.current) return Promise.resolve({ kind: 'stopped', ...this.current });
    const next = this.nextStop();
    if (!this.exit) this.link.command({ type: 'debug-interrupt' });
    return next;
  }

  /** Lets the guest run; resolves at its next stop (a breakpoint, interrupt()) or when the machine ends. */
  continue(): Promise<DebugOutcome> {
    return this.resume('continue');
  }

  /** Runs one instruction; resolves when the vCPU stops after it (or the machine ends, e.g. on HLT). */
  step(): Promise<DebugOutcome> {
    return this.resume('step');
  }

  readState(): Promise<CpuState> {
    return this.request({ op: 'read-state' });
  }

  async writeState(change: CpuStateChange): Promise<void> {
    await this.request({ op: 'write-state', change });
  }

  /** Reads guest memory by linear address; the result is shorter where the range runs into unmapped memory. */
  readMemory(address: bigint, length: number): Promise<Uint8Array> {
    return this.request({ op: 'read-memory', address, length });
  }

  /** Writes guest memory by linear address; false (nothing written) if part of it is not mapped to RAM. */
  writeMemory(address: bigint, data: Uint8Array): Promise<boolean> {
    return this.request({ op: 'write-memory', address, data });
  }

  /** A hardware instruction breakpoint (DR0-DR3) at a linear address; rejects with ENOSPC when all are in use. */
  async insertBreakpoint(address: bigint): Promise<void> {
    await this.request({ op: 'insert-breakpoint', address });
  }

  async removeBreakpoint(address: bigint): Promise<void> {
    await this.request({ op: 'remove-breakpoint', address });
  }

  /** Removes every breakpoint, stops stepping and lets the guest run on. */
  async detach(): Promise<void> {
    if (this.exit) return;
    this.current = undefined;
    await this.request({ op: 'detach' });
  }

  /** Called by the Machine with the worker's debugger events. */
  onWorkerEvent(event: WorkerEvent): void {
    switch (event.type) {
      case 'debug-reply': {
        const pending = this.requests.get(event.id);
        this.requests.delete(event.id);
        if (event.reply.ok) pending?.resolve(event.reply.value);
        else pending?.reject(new DebuggerError(event.reply.error, event.reply.code));
        break;
      }
      case 'debug-stopped': {
        this.current = event.stop;
        const waiters = this.waiters;
        this.waiters = [];
        for (const resolve of waiters) resolve({ kind: 'stopped', ...event.stop });
        this.emit('stop', event.stop);
        break;
      }
      case 'resumed':
        this.current = undefined;
        break;
    }
  }

  // ---------------------------------------------------------------- internals

  private async resume(mode: 'continue' | 'step'): Promise<DebugOutcome> {
    if (this.exit) return { kind: 'exited', stop: this.exit };
    if (!this.current) throw new DebuggerError(`${mode}() needs the vCPU stopped for the debugger`, 'ERUNNING');
    // Listen before asking, so a stop right after the resume is not missed.
    const next = this.nextStop();
    this.current = undefined;
    await this.request({ op: 'resume', mode });
    return next;
  }

  private request<R extends DebugRequest>(request: R): Promise<DebugResults[R['op']]> {
    if (!this.enabled) return Promise.reject(this.notEnabled());
    if (this.exit) return Promise.reject(new DebuggerError('the machine has stopped', 'ESTOPPED'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.requests.set(id, { resolve: resolve as (value: unknown) => void, reject });
      this.link.command({ type: 'debug', id, request });
    });
  }

  private notEnabled(): DebuggerError {
    return new DebuggerError('the debugger needs the machine created with the `debug` option', 'ENODEBUG');
  }

  private machineExited(stop: VcpuStop): void {
    this.exit = stop;
    this.current = undefined;
    const waiters = this.waiters;
    this.waiters = [];
    for (const resolve of waiters) resolve({ kind: 'exited', stop });
    for (const { reject } of this.requests.values()) reject(new DebuggerError('the machine has stopped', 'ESTOPPED'));
    this.requests.clear();
  }
}
