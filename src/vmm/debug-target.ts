// The debugger's side of the vCPU worker: registers, memory by linear
// address, instruction breakpoints and single-step for one vCPU, on the
// thread that owns it (vm-worker.ts calls in only while the vCPU is out of
// KVM_RUN). The main thread reaches it through machine-debugger.ts.
//
// Breakpoints are hardware ones (KVM_SET_GUEST_DEBUG, KVM_GUESTDBG_USE_HW_BP,
// DR0-DR3; shared with the SYSCALL fix-up through debug-registers.ts), never
// an int3 patched into guest memory: on our nested KVM, CPL0 code runs in
// KVM's instruction emulator, and an int3 there ends KVM_RUN with an
// emulation failure (DESIGN.md). Single-step is KVM_GUESTDBG_SINGLESTEP.
//
// Two things measured on that KVM shape the code below:
// - Setting RFLAGS.RF does not get the emulator past an instruction
//   breakpoint (the breakpoint fires again at the same RIP). So resuming
//   from an address with a breakpoint lifts that one breakpoint for a single
//   instruction ("stepping off"), then puts it back.
// - A single-step over an instruction that exits to user space *after* it is
//   complete — OUT, and MMIO writes — loses its trap: the emulator finishes
//   the instruction before the exit and does not take the step on re-entry
//   (Linux arch/x86/kvm/x86.c, x86_emulate_instruction: "FIXME: return into
//   emulator if single-stepping"), so the guest would run one more
//   instruction. While stepping, the worker calls afterExitWhileStepping()
//   after each exit, which ends the step as soon as RIP has moved.
import type { Vcpu } from '../kvm/vcpu';
import type { GuestMemory } from '../memory/guest-memory';
import type { DebugExit } from '../kvm/structs/run';
import type { Regs } from '../kvm/structs/regs';
import type { Sregs } from '../kvm/structs/sregs';
import { DR6_BS, GuestDebugRegisters } from '../arch/x86/debug-registers';
import { readLinear, writeLinear } from '../arch/x86/code-fetch';
import {
  DEBUG_MAX_MEMORY_ACCESS,
  type CpuState,
  type CpuStateChange,
  type DebugRequest,
  type DebugResults,
  type DebugStopReason,
} from './debug-protocol';

/** This debugger's name with the shared debug registers. */
const DEBUG_OWNER = 'debugger';

/** A request the target cannot carry out; `code` says why (ENOSPC: no free debug register). */
export class DebugTargetError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
  }
}

/** Linear address of the next instruction. In 64-bit mode the CS base counts as 0 (SDM Vol. 3A, 3.4.4). */
export function linearPc(regs: Regs, sregs: Sregs): bigint {
  return sregs.cs.l ? regs.rip : BigInt.asUintN(64, sregs.cs.base + regs.rip);
}

export class DebugTarget {
  /** Breakpoint addresses, each with how many times it was inserted (gdb may put Z0 and Z1 on one address). */
  private readonly breakpoints = new Map<bigint, number>();
  /** Set while the vCPU runs after resume(): what to do when the current instruction is done. */
  private running?: { mode: 'continue' | 'step'; fromRip: bigint; steppingOff: boolean };

  constructor(
    private readonly vcpu: Vcpu,
    private readonly memory: GuestMemory,
    private readonly registers: GuestDebugRegisters,
  ) {}

  /** True while one instruction is being stepped (a step, or stepping off a breakpoint). */
  get stepping(): boolean {
    return this.running !== undefined && (this.running.mode === 'step' || this.running.steppingOff);
  }

  /** Carries out one request from the main thread (debug-protocol.ts); throws DebugTargetError or a KVM error. */
  serve(request: DebugRequest): DebugResults[DebugRequest['op']] {
    switch (request.op) {
      case 'read-state':
        return this.readState();
      case 'write-state':
        this.writeState(request.change);
        return undefined;
      case 'read-memory':
        return this.readMemory(request.address, request.length);
      case 'write-memory':
        return this.writeMemory(request.address, request.data);
      case 'insert-breakpoint':
        this.insertBreakpoint(request.address);
        return undefined;
      case 'remove-breakpoint':
        this.removeBreakpoint(request.address);
        return undefined;
      case 'resume':
        this.resume(request.mode);
        return undefined;
      case 'detach':
        this.detach();
        return undefined;
    }
  }

  /** Where the vCPU is (linear address of the next instruction). */
  pc(): bigint {
    return linearPc(this.vcpu.getRegs(), this.vcpu.getSregs());
  }

  readState(): CpuState {
    const fpu = this.vcpu.getFpu();
    try {
      fpu.mxcsr = this.vcpu.getMxcsr();
    } catch {
      /* no XSAVE on this KVM: keep what KVM_GET_FPU said */
    }
    return { regs: this.vcpu.getRegs(), sregs: this.vcpu.getSregs(), fpu };
  }

  writeState(change: CpuStateChange): void {
    if (change.regs) this.vcpu.setRegs(change.regs);
    if (change.fpu) {
      this.vcpu.setFpu(change.fpu);
      try {
        this.vcpu.setMxcsr(change.fpu.mxcsr);
      } catch {
        /* no XSAVE on this KVM: MXCSR stays */
      }
    }
    if (change.fsBase !== undefined || change.gsBase !== undefined) {
      const sregs = this.vcpu.getSregs();
      if (change.fsBase !== undefined) sregs.fs.base = BigInt.asUintN(64, change.fsBase);
      if (change.gsBase !== undefined) sregs.gs.base = BigInt.asUintN(64, change.gsBase);
      this.vcpu.setSregs(sregs);
    }
  }

  /** Reads guest memory by linear address; stops at the first byte not mapped to RAM. */
  readMemory(address: bigint, length: number): Uint8Array {
    const n = Math.max(0, Math.min(Math.floor(length), DEBUG_MAX_MEMORY_ACCESS));
    return readLinear(this.vcpu, this.memory, BigInt.asUintN(64, address), n);
  }

  /** Writes guest memory by linear address; false (nothing written) if any byte is not mapped to RAM. */
  writeMemory(address: bigint, data: Uint8Array): boolean {
    if (data.length > DEBUG_MAX_MEMORY_ACCESS) return false;
    return writeLinear(this.vcpu, this.memory, BigInt.asUintN(64, address), data);
  }

  insertBreakpoint(address: bigint): void {
    const key = BigInt.asUintN(64, address);
    const count = this.breakpoints.get(key) ?? 0;
    if (count === 0 && !this.registers.update(DEBUG_OWNER, { breakpoints: [...this.breakpoints.keys(), key] }))
      throw new DebugTargetError(`no free debug register for a breakpoint at 0x${key.toString(16)} (the CPU has four, DR0-DR3)`, 'ENOSPC');
    this.breakpoints.set(key, count + 1);
  }

  removeBreakpoint(address: bigint): void {
    const key = BigInt.asUintN(64, address);
    const count = this.breakpoints.get(key) ?? 0;
    if (count > 1) return void this.breakpoints.set(key, count - 1);
    if (count === 0) return;
    this.breakpoints.delete(key);
    this.registers.update(DEBUG_OWNER, { breakpoints: [...this.breakpoints.keys()] });
  }

  /** Arms the vCPU for running on after a stop; the worker then leaves the stop and runs it. */
  resume(mode: 'continue' | 'step'): void {
    const regs = this.vcpu.getRegs();
    const pc = linearPc(regs, this.vcpu.getSregs());
    const steppingOff = this.breakpoints.has(pc);
    this.running = { mode, fromRip: regs.rip, steppingOff };
    this.registers.update(DEBUG_OWNER, {
      breakpoints: [...this.breakpoints.keys()].filter((a) => !(steppingOff && a === pc)),
      singleStep: mode === 'step' || steppingOff,
    });
  }

  /** Removes every breakpoint and stops stepping; the guest runs on undisturbed. */
  detach(): void {
    this.breakpoints.clear();
    this.running = undefined;
    this.registers.update(DEBUG_OWNER, { breakpoints: [], singleStep: false });
  }

  /**
   * A KVM_EXIT_DEBUG: the stop to report to the debugger, 'handled' (ours,
   * but the guest should run on: a breakpoint was stepped off during a
   * continue), or undefined when it is not ours (the SYSCALL fix-up's).
   * DR6 says what happened (debug-registers.ts): BS for a single-step trap,
   * Bn for the breakpoint in DRn.
   */
  onDebugExit(exit: DebugExit): DebugStopReason | 'handled' | undefined {
    if (this.stepping && (exit.dr6 & DR6_BS) !== 0n) return this.instructionDone();
    if (this.registers.ownersHit(exit.dr6).includes(DEBUG_OWNER)) {
      this.running = undefined;
      return 'breakpoint';
    }
    return undefined;
  }

  /** See the top of the file: ends a step whose trap KVM dropped (RIP moved on without a debug exit). */
  afterExitWhileStepping(): DebugStopReason | 'handled' | undefined {
    if (!this.stepping || this.vcpu.getRegs().rip === this.running!.fromRip) return undefined;
    return this.instructionDone();
  }

  /** The stepped instruction is done: put breakpoints back, stop stepping, and stop or run on. */
  private instructionDone(): DebugStopReason | 'handled' {
    const mode = this.running!.mode;
    this.registers.update(DEBUG_OWNER, { breakpoints: [...this.breakpoints.keys()], singleStep: false });
    if (mode === 'step') {
      this.running = undefined;
      return 'step';
    }
    this.running = { ...this.running!, steppingOff: false };
    return 'handled';
  }
}
