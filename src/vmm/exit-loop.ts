// The exit loop: run → read exit → dispatch to a bus → complete → run.
//
// This file is the heart of tskvm. Every exit reason KVM can return is either
// handled here (the loop continues) or turned into a VcpuStop with a report
// (the loop returns). Nothing else in tskvm calls KVM_RUN for a machine.
//
// Completing an exit: for port I/O and MMIO *reads*, the value the device
// returns is written into the kvm_run page; KVM delivers it to the guest's
// register when the next KVM_RUN resumes the instruction (KVM API doc, 5.
// "The kvm_run structure": KVM_EXIT_IO / KVM_EXIT_MMIO).
import type { GuestMemory } from '../memory/guest-memory';
import type { Vcpu } from '../kvm/vcpu';
import type { IoExit, MmioExit, VcpuExit } from '../kvm/structs/run';
import type { AccessSize, Bus } from '../bus/bus';
import { ExitStats } from './exit-stats';
import { buildExitReport, buildRunFailureReport, ExitReport } from './exit-report';

export type VcpuStopKind =
  /** HLT with no interrupt controller to wake the vCPU: the program is done. */
  | 'halt'
  /** The guest asked for power off (ACPI/system event or a power-off device). */
  | 'poweroff'
  /** The guest asked for a reset (i8042 0xFE, triple fault policy, system event). */
  | 'reset'
  /** The host asked the loop to stop (stop flag + kick). */
  | 'stopped'
  /** Something the loop cannot continue from; see `report`. */
  | 'error';

export interface VcpuStop {
  kind: VcpuStopKind;
  /** Short reason, e.g. "hlt", "triple fault", "emulation failure". */
  reason: string;
  report?: ExitReport;
}

/**
 * A handler for emulation failures (KVM_EXIT_INTERNAL_ERROR, suberror 1):
 * returns true if it fixed things up (e.g. injected an exception and moved
 * RIP) so the loop should run the vCPU again.
 */
export type EmulationFailureHandler = (vcpu: Vcpu, exit: VcpuExit & { reason: 'internal_error' }) => boolean;

export interface ExitLoopContext {
  vcpu: Vcpu;
  memory: GuestMemory;
  pio: Bus;
  mmio: Bus;
  stats?: ExitStats;
  /** Called once per exit with a one-line decoded description (`--trace`). */
  trace?: (line: string) => void;
  /** Called after every exit is handled, and after a kick (host work that must run on this thread). */
  afterExit?: () => void;
  /** True when the host wants the loop to stop (checked after every exit). */
  shouldStop?: () => boolean;
  /**
   * What HLT means. 'stop': no interrupt can wake the vCPU (no irqchip), so
   * HLT ends the run. 'continue': run again (an interrupt will arrive).
   */
  onHalt?: 'stop' | 'continue';
  onEmulationFailure?: EmulationFailureHandler;
  /** KVM_EXIT_DEBUG from a breakpoint the VMM set for itself: true if handled (run again). */
  onDebug?: (vcpu: Vcpu, exit: VcpuExit & { reason: 'debug' }) => boolean;
  /**
   * Several vCPUs on this one thread (SMP): how to run the current one (a
   * bounded KVM_RUN, Vcpu.runFor), and which vCPU runs after an interrupted
   * run (the slice ended, or a kick). The loop sets ctx.vcpu to it, so every
   * handler sees the vCPU whose exit it handles.
   */
  schedule?: { run: (vcpu: Vcpu) => VcpuExit; next: (vcpu: Vcpu) => Vcpu };
  /** A device or handler error: report and stop, or log and go on (default: stop). */
  onDeviceError?: (error: unknown, exit: VcpuExit) => 'stop' | 'continue';
  /** Set by devices (i8042 reset, power-off port) to end the loop cleanly. */
  pendingStop?: { kind: VcpuStopKind; reason: string };
}

const hex = (v: number | bigint): string => '0x' + v.toString(16);

function readLittleEndian(bytes: Uint8Array, at: number, size: number): number {
  let value = 0;
  for (let i = size - 1; i >= 0; i--) value = value * 256 + bytes[at + i];
  return value;
}

function writeLittleEndian(bytes: Uint8Array, at: number, size: number, value: number): void {
  for (let i = 0; i < size; i++) {
    bytes[at + i] = value & 0xff;
    value = Math.floor(value / 256);
  }
}

/** Port I/O: each of `count` accesses (rep ins/outs) goes to the bus in order. */
function handleIo(ctx: ExitLoopContext, exit: IoExit): void {
  const data = ctx.vcpu.ioData(exit);
  for (let i = 0; i < exit.count; i++) {
    const at = i * exit.size;
    if (exit.direction === 'out') ctx.pio.write(exit.port, exit.size, readLittleEndian(data, at, exit.size));
    else writeLittleEndian(data, at, exit.size, ctx.pio.read(exit.port, exit.size));
  }
}

/**
 * The bus accesses one MMIO exit of `length` bytes becomes: 1/2/4-byte
 * accesses go to the bus as they are, an 8-byte one as two 4-byte halves.
 * Other lengths (1-7) happen when KVM splits an access that crosses a page
 * boundary (e.g. 8 bytes at 0x...ffe arrive as 2 + 6); they are cut into
 * 4-, 2- and 1-byte pieces from the low address up, so every byte reaches
 * the device that claims it and an unclaimed piece is counted like any other.
 * (Before issue 6, odd lengths were dropped: writes lost, reads all ones, not
 * counted.)
 */
export function mmioPieces(length: number): { offset: number; width: AccessSize }[] {
  const pieces: { offset: number; width: AccessSize }[] = [];
  for (let offset = 0; offset < length; ) {
    const left = length - offset;
    const width: AccessSize = left >= 4 ? 4 : left >= 2 ? 2 : 1;
    pieces.push({ offset, width });
    offset += width;
  }
  return pieces;
}

/** MMIO: see mmioPieces. The kvm_run data field holds at most 8 bytes (KVM API doc, KVM_EXIT_MMIO). */
function handleMmio(ctx: ExitLoopContext, exit: MmioExit): void {
  const length = Math.min(exit.length, 8);
  if (exit.isWrite) {
    for (const { offset, width } of mmioPieces(length)) ctx.mmio.write(exit.address + offset, width, readLittleEndian(exit.data, offset, width));
  } else {
    const out = new Uint8Array(8);
    for (const { offset, width } of mmioPieces(length)) writeLittleEndian(out, offset, width, ctx.mmio.read(exit.address + offset, width));
    ctx.vcpu.completeMmioRead(out);
  }
}

/** One line per exit for --trace: reason, port/address, size, value, RIP. */
export function describeExitForTrace(vcpu: Vcpu, exit: VcpuExit): string {
  let rip = '?';
  try {
    rip = hex(vcpu.getRegs().rip);
  } catch {
    /* state unreadable: keep '?' */
  }
  switch (exit.reason) {
    case 'io': {
      const data = vcpu.ioData(exit);
      const value = exit.direction === 'out' ? ` value=${hex(readLittleEndian(data, 0, exit.size))}` : '';
      return `vcpu${vcpu.id} io-${exit.direction} port=${hex(exit.port)} size=${exit.size}${exit.count > 1 ? ` count=${exit.count}` : ''}${value} rip=${rip}`;
    }
    case 'mmio': {
      const value = exit.isWrite ? ` value=0x${Buffer.from(exit.data).reverse().toString('hex')}` : '';
      return `vcpu${vcpu.id} mmio-${exit.isWrite ? 'write' : 'read'} addr=${hex(exit.address)} size=${exit.length}${value} rip=${rip}`;
    }
    default:
      return `vcpu${vcpu.id} ${exit.reason} rip=${rip}`;
  }
}

function stopWithReport(ctx: ExitLoopContext, exit: VcpuExit, kind: VcpuStopKind, reason: string): VcpuStop {
  return { kind, reason, report: buildExitReport(ctx.vcpu, ctx.memory, exit) };
}

/** Runs the vCPU until it stops; returns why. */
export function runExitLoop(ctx: ExitLoopContext): VcpuStop {
  const stats = ctx.stats;
  const schedule = ctx.schedule;
  for (;;) {
    ctx.afterExit?.();
    if (ctx.pendingStop) return { ...ctx.pendingStop };
    if (ctx.shouldStop?.()) return { kind: 'stopped', reason: 'stopped by the host' };

    const vcpu = ctx.vcpu;
    let exit: VcpuExit;
    try {
      exit = schedule ? schedule.run(vcpu) : vcpu.run();
    } catch (error) {
      // KVM_RUN itself failed (EINVAL for a vCPU state KVM refuses to enter,
      // EFAULT, ENOEXEC, ...; KVM API doc 4.10): on hardware that checks guest
      // state at VM entry this is the other face of KVM_EXIT_FAIL_ENTRY. It
      // is a stop with a report like any other, not an exception that takes
      // the VMM (or its CLI, as a "host error") down.
      return { kind: 'error', reason: 'VM entry failed', report: buildRunFailureReport(vcpu, ctx.memory, error) };
    }
    stats?.count(exit);
    if (ctx.trace && exit.reason !== 'intr') ctx.trace(describeExitForTrace(vcpu, exit));

    try {
      switch (exit.reason) {
        case 'io':
          handleIo(ctx, exit);
          continue;
        case 'mmio':
          handleMmio(ctx, exit);
          continue;
        case 'intr':
        case 'irq_window_open':
          // Interrupted by a kick/signal, or an interrupt window we asked for:
          // loop around to check the stop flag and run again (with SMP, the
          // next vCPU's turn).
          if (schedule && exit.reason === 'intr') ctx.vcpu = schedule.next(vcpu);
          continue;
        case 'hlt':
          if ((ctx.onHalt ?? 'stop') === 'continue') continue;
          return { kind: 'halt', reason: 'hlt' };
        case 'shutdown':
          // A triple fault puts the processor in shutdown (SDM Vol. 3A, 6.15,
          // "Double Fault Exception"). A PC would reset; we report it.
          return stopWithReport(ctx, exit, 'error', 'triple fault');
        case 'system_event':
          if (exit.typeName === 'shutdown') return { kind: 'poweroff', reason: 'system event: shutdown' };
          if (exit.typeName === 'reset') return { kind: 'reset', reason: 'system event: reset' };
          return stopWithReport(ctx, exit, 'error', `system event: ${exit.typeName}`);
        case 'internal_error':
          if (exit.suberrorName === 'emulation' && ctx.onEmulationFailure?.(vcpu, exit)) continue;
          return stopWithReport(ctx, exit, 'error', exit.suberrorName === 'emulation' ? 'emulation failure' : `internal error (${exit.suberrorName})`);
        case 'fail_entry':
          return stopWithReport(ctx, exit, 'error', 'VM entry failed');
        case 'debug':
          if (ctx.onDebug?.(vcpu, exit)) continue;
          return stopWithReport(ctx, exit, 'stopped', 'debug exit');
        case 'exception':
          return stopWithReport(ctx, exit, 'error', `guest exception ${exit.exception}`);
        case 'unknown':
          return stopWithReport(ctx, exit, 'error', `unhandled exit ${exit.name}`);
      }
    } catch (error) {
      // A device that throws must not take the VMM down (DESIGN.md): stop this
      // vCPU with a report unless the owner says to go on.
      if ((ctx.onDeviceError?.(error, exit) ?? 'stop') === 'continue') continue;
      const stop = stopWithReport(ctx, exit, 'error', `device error: ${(error as Error).message ?? String(error)}`);
      return stop;
    }
  }
}
