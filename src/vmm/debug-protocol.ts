// What a debugger on the main thread (machine-debugger.ts) asks the vCPU
// worker (debug-target.ts), and what it hears back. Plain data: it crosses
// the thread boundary by structured clone (bigint and Uint8Array included).
//
// Addresses are guest *linear* addresses (what RIP plus the CS base points
// at): memory is read through the guest's page tables when paging is on, and
// breakpoints are compared with linear instruction addresses by the CPU.
import type { Regs } from '../kvm/structs/regs';
import type { Sregs } from '../kvm/structs/sregs';
import type { Fpu } from '../kvm/structs/fpu';

/** Why the vCPU is stopped for the debugger. */
export type DebugStopReason =
  /** Stopped before its first instruction, waiting for a debugger (`debug.waitForDebugger`). */
  | 'attach'
  /** On a breakpoint, before the instruction there runs. */
  | 'breakpoint'
  /** After one instruction asked for with step(). */
  | 'step'
  /** The debugger asked it to stop (interrupt(), gdb's Ctrl-C). */
  | 'interrupt';

export interface DebugStop {
  reason: DebugStopReason;
  /** Linear address of the next instruction (CS base + RIP). */
  pc: bigint;
}

/** The vCPU's registers as KVM gives them; `fpu.mxcsr` is filled in (KVM_GET_FPU leaves it out). */
export interface CpuState {
  regs: Regs;
  sregs: Sregs;
  fpu: Fpu;
}

/** Registers to change; what is left out stays as it is. */
export interface CpuStateChange {
  regs?: Regs;
  fpu?: Fpu;
  fsBase?: bigint;
  gsBase?: bigint;
}

export type DebugRequest =
  | { op: 'read-state' }
  | { op: 'write-state'; change: CpuStateChange }
  | { op: 'read-memory'; address: bigint; length: number }
  | { op: 'write-memory'; address: bigint; data: Uint8Array }
  | { op: 'insert-breakpoint'; address: bigint }
  | { op: 'remove-breakpoint'; address: bigint }
  /** Leave the stop: run on ('continue') or run one instruction and stop ('step'). */
  | { op: 'resume'; mode: 'continue' | 'step' }
  /** Remove every breakpoint, stop stepping, and let the guest run. */
  | { op: 'detach' };

/** The value each request answers with. */
export interface DebugResults {
  'read-state': CpuState;
  'write-state': undefined;
  /** The bytes read: fewer than asked for where the range reaches unmapped memory. */
  'read-memory': Uint8Array;
  /** False (and nothing written) if part of the range is not mapped to guest RAM. */
  'write-memory': boolean;
  'insert-breakpoint': undefined;
  'remove-breakpoint': undefined;
  resume: undefined;
  detach: undefined;
}

export type DebugReply = { ok: true; value: DebugResults[DebugRequest['op']] } | { ok: false; error: string; code: string };

/** Most bytes one read-memory request returns (the gdb stub asks for at most a packet's worth). */
export const DEBUG_MAX_MEMORY_ACCESS = 64 * 1024;
