// SYSCALL from user mode on the nested KVM of our machines, and how tskvm
// makes it work.
//
// What SYSCALL must do (SDM Vol. 2B, "SYSCALL"): RCX ← RIP of the next
// instruction, R11 ← RFLAGS, RFLAGS &= ~IA32_FMASK, CS ← IA32_STAR[47:32]
// (a flat 64-bit code segment, CPL 0), SS ← IA32_STAR[47:32] + 8, RIP ←
// IA32_LSTAR.
//
// What it does here (measured with probeSyscallEntry below): RCX, R11 and RIP
// are right, but CS and SS keep their user-mode values, so the vCPU is still at
// CPL 3 when it fetches the kernel's entry code. That page is supervisor-only,
// so the fetch raises a page fault (error code U=1, CR2 = LSTAR) and Linux
// kills the process ("modprobe: segfault at ffffffff81c00080"): no user space.
//
// The fix, done at the VMM: a hardware breakpoint (KVM_SET_GUEST_DEBUG,
// KVM_GUESTDBG_USE_HW_BP; one of DR0-DR3, shared with a debugger through
// debug-registers.ts) on the first instruction of the guest's page
// fault handler, found through the IDT (vector 14). Guest kernel code runs in
// KVM's instruction emulator, which checks such breakpoints before each
// instruction and exits with KVM_EXIT_DEBUG. At that exit the exception frame
// on the stack says why the fault happened:
//   saved CS has RPL 3, saved RIP = LSTAR, error code has U (bit 2) set:
//     the broken SYSCALL. Drop the fault and finish the SYSCALL as the SDM
//     says: RIP = LSTAR, RSP = the user RSP from the frame, RFLAGS = saved
//     RFLAGS & ~FMASK, CS/SS from STAR. The guest's syscall entry then runs at
//     CPL 0, and its SYSRET (emulated correctly) returns to user mode.
//   anything else: a genuine page fault. Get past the breakpoint: if the
//     handler's first instruction is a no-op (endbr64, a nop, the 3-byte nop
//     Linux patches over clac), move RIP past it; otherwise turn the
//     breakpoint off, single-step one instruction, and turn it back on.
import type { Vcpu } from '../../kvm/vcpu';
import type { Kvm } from '../../kvm/kvm';
import type { Regs } from '../../kvm/structs/regs';
import type { DebugExit } from '../../kvm/structs/run';
import { GuestDebugRegisters } from './debug-registers';
import { GuestMemory } from '../../memory/guest-memory';
import { encodeDescriptor, flatSegment, tssSegment } from './gdt';
import { readLinear } from './code-fetch';
import { decodeMemoryOperand } from './memory-operand';
import { CR0_ET, CR0_PE, CR0_PG, CR4_PAE, EFER_LMA, EFER_LME } from './modes';

export const MSR_EFER = 0xc0000080;
export const MSR_STAR = 0xc0000081;
export const MSR_LSTAR = 0xc0000082;
export const MSR_SYSCALL_MASK = 0xc0000084;
const EFER_SCE = 1n; // SYSCALL enable (SDM Vol. 3A, 2.2.1)
const RFLAGS_RF = 1n << 16n;
const RFLAGS_FIXED = 2n; // bit 1 always reads 1
const PF_ERROR_USER = 4; // SDM Vol. 3A, 4.7: U/S bit of the #PF error code
const VECTOR_PAGE_FAULT = 14;
/** This fix-up's name with the vCPU's debug registers (debug-registers.ts), which a debugger may share. */
const DEBUG_OWNER = 'syscall-entry';

// ------------------------------------------------------------------ probe

export type SyscallEntryBehaviour = 'architectural' | 'stays-in-user-mode';

let probed: SyscallEntryBehaviour | undefined;

/** Where the user-mode testbed puts things (guest physical = linear, 4 KiB pages). */
export const TESTBED = {
  gdt: 0x1000,
  idt: 0x2000,
  tss: 0x3000,
  /** IA32_LSTAR: the "kernel" syscall entry, on the one supervisor-only page. */
  syscallEntry: 0x4000,
  pageFaultHandler: 0x5000,
  userCode: 0x6000,
  userStack: 0x7ff0,
  kernelStack: 0x8000,
  pageTables: 0x10000,
} as const;

/**
 * A minimal 64-bit "kernel" for a 2 MiB VM whose vCPU starts at CPL 3 in
 * `userCode`, with Linux's selector layout (kernel CS 0x08, SS 0x10; user
 * CS32 0x18, SS 0x20, CS64 0x28; TSS 0x30), SYSCALL enabled with LSTAR =
 * `syscallEntry`, and an IDT with only vector 14 (page fault). Used by the
 * probe below and by tests.
 */
export function setupUserModeTestbed(
  vcpu: Vcpu,
  memory: GuestMemory,
  code: { syscallEntry: Uint8Array; pageFaultHandler: Uint8Array; user: Uint8Array },
): void {
  const T = TESTBED;
  const kcode = flatSegment(0x08, 'code64');
  const kdata = flatSegment(0x10, 'data');
  const ucode = { ...flatSegment(0x28 | 3, 'code64'), dpl: 3 };
  const udata = { ...flatSegment(0x20 | 3, 'data'), dpl: 3 };
  const ucode32 = { ...flatSegment(0x18 | 3, 'code32'), dpl: 3 };
  [0n, encodeDescriptor(kcode), encodeDescriptor(kdata), encodeDescriptor(ucode32), encodeDescriptor(udata), encodeDescriptor(ucode)].forEach((d, i) =>
    memory.writeU64(T.gdt + i * 8, d),
  );
  // 64-bit TSS descriptor (16 bytes, SDM Vol. 3A, 8.2.3): limit 0x67, base T.tss, type 0xB (busy), present.
  memory.writeU64(T.gdt + 6 * 8, 0x0000_8b00_0000_0067n | (BigInt(T.tss) << 16n));
  memory.writeU64(T.gdt + 7 * 8, 0n);
  memory.writeU64(T.tss + 4, BigInt(T.kernelStack)); // TSS.RSP0
  // IDT gate 14: 64-bit interrupt gate (type 0xE, present), selector 0x08 (SDM Vol. 3A, 6.14.1).
  memory.writeU64(T.idt + VECTOR_PAGE_FAULT * 16, 0x0000_8e00_0008_0000n | BigInt(T.pageFaultHandler & 0xffff) | (BigInt(T.pageFaultHandler >>> 16) << 48n));
  memory.writeU64(T.idt + VECTOR_PAGE_FAULT * 16 + 8, 0n);
  memory.write(T.syscallEntry, code.syscallEntry);
  memory.write(T.pageFaultHandler, code.pageFaultHandler);
  memory.write(T.userCode, code.user);
  // Page tables: identity 0-2 MiB in 4 KiB pages; P|W|U except the syscall entry page (P|W).
  memory.writeU64(T.pageTables, BigInt(T.pageTables + 0x1000) | 7n);
  memory.writeU64(T.pageTables + 0x1000, BigInt(T.pageTables + 0x2000) | 7n);
  memory.writeU64(T.pageTables + 0x2000, BigInt(T.pageTables + 0x3000) | 7n);
  for (let page = 0; page < 512; page++)
    memory.writeU64(T.pageTables + 0x3000 + page * 8, BigInt(page * 4096) | (page * 4096 === T.syscallEntry ? 3n : 7n));

  const sregs = vcpu.getSregs();
  Object.assign(sregs, {
    cs: ucode, ss: udata, ds: udata, es: udata, fs: udata, gs: udata,
    tr: { ...tssSegment(0x30, BigInt(T.tss)), type: 0xb },
    gdt: { base: BigInt(T.gdt), limit: 8 * 8 - 1 },
    idt: { base: BigInt(T.idt), limit: 256 * 16 - 1 },
    cr0: sregs.cr0 | CR0_PE | CR0_ET | CR0_PG,
    cr3: BigInt(T.pageTables),
    cr4: sregs.cr4 | CR4_PAE,
    efer: sregs.efer | EFER_LME | EFER_LMA | EFER_SCE,
  });
  vcpu.setSregs(sregs);
  vcpu.setMsrs([
    { index: MSR_STAR, data: (0x18n << 48n) | (0x08n << 32n) },
    { index: MSR_LSTAR, data: BigInt(T.syscallEntry) },
    { index: MSR_SYSCALL_MASK, data: 0x47700n }, // TF, IF, DF, AC, NT, IOPL cleared on entry (as Linux)
  ]);
  vcpu.setRegs({ ...vcpu.getRegs(), rip: BigInt(T.userCode), rsp: BigInt(T.userStack), rflags: RFLAGS_FIXED });
}

/**
 * Runs `syscall` at CPL 3 in a throw-away VM and reports where it lands:
 * architectural → HLT in the syscall entry (CPL 0); broken → the CPL 3 fetch
 * of the supervisor page faults and the HLT is the page-fault handler's.
 */
export function probeSyscallEntry(kvm: Kvm): SyscallEntryBehaviour {
  if (probed) return probed;
  const vm = kvm.createVm();
  const memory = GuestMemory.allocate([{ gpa: 0, size: 2 * 1024 * 1024 }]);
  try {
    vm.mapMemory(memory);
    vm.setTssAddress(0xfffbd000);
    const vcpu = vm.createVcpu(0);
    vcpu.setCpuid(kvm.supportedCpuid());
    const hlt = Uint8Array.of(0xf4);
    setupUserModeTestbed(vcpu, memory, { syscallEntry: hlt, pageFaultHandler: hlt, user: Uint8Array.of(0x0f, 0x05) /* syscall */ });
    let exit = vcpu.run();
    for (let i = 0; exit.reason === 'intr' && i < 10; i++) exit = vcpu.run();
    const rip = vcpu.getRegs().rip;
    if (exit.reason === 'hlt' && rip === BigInt(TESTBED.syscallEntry + 1)) probed = 'architectural';
    else if (exit.reason === 'hlt' && rip === BigInt(TESTBED.pageFaultHandler + 1)) probed = 'stays-in-user-mode';
    else throw new Error(`SYSCALL probe ended with ${exit.reason} at RIP 0x${rip.toString(16)}`);
    return probed;
  } finally {
    vm.close();
    memory.close();
  }
}

// ------------------------------------------------------------------ fix-up

/**
 * Length of the instruction at the start of `bytes` if it does nothing
 * (so RIP may simply skip it), else 0: nop (90, 66 90), endbr64
 * (f3 0f 1e fa), and the multi-byte nop 0f 1f /0 with any memory operand
 * (SDM Vol. 2B, "NOP").
 */
export function noOpLength(bytes: Uint8Array): number {
  if (bytes[0] === 0x90) return 1;
  if (bytes[0] === 0x66 && bytes[1] === 0x90) return 2;
  if (bytes[0] === 0xf3 && bytes[1] === 0x0f && bytes[2] === 0x1e && bytes[3] === 0xfa) return 4;
  const nop = decodeMemoryOperand(bytes, [0x0f, 0x1f]);
  return nop && nop.reg === 0 && !nop.segment ? nop.length : 0;
}

interface ExceptionFrame {
  errorCode: bigint;
  rip: bigint;
  cs: bigint;
  rflags: bigint;
  rsp: bigint;
  ss: bigint;
}

export class SyscallEntryFixup {
  /** Linear address of the guest's page-fault handler the breakpoint sits on. */
  private handler?: bigint;
  private steppingOver = false;
  readonly counts = { syscalls: 0, pageFaults: 0 };

  constructor(
    private readonly vcpu: Vcpu,
    private readonly memory: GuestMemory,
    private readonly log: (message: string) => void = () => {},
    private readonly debugRegisters: GuestDebugRegisters = new GuestDebugRegisters(vcpu),
  ) {
    // One debug register stays ours even while a debugger holds the others.
    debugRegisters.reserve(DEBUG_OWNER, 1);
  }

  get armed(): boolean {
    return this.handler !== undefined;
  }

  /**
   * Puts (or moves) the breakpoint on the guest's current #PF handler. Cheap
   * enough to call every few thousand exits; does nothing until the guest
   * has an IDT with a present gate 14 and syscalls enabled.
   */
  arm(): void {
    if (this.steppingOver) return;
    const sregs = this.vcpu.getSregs();
    if (!(sregs.efer & EFER_SCE) || sregs.idt.limit < VECTOR_PAGE_FAULT * 16 + 15) return;
    const gate = readLinear(this.vcpu, this.memory, sregs.idt.base + BigInt(VECTOR_PAGE_FAULT * 16), 16);
    if (gate.length !== 16 || !(gate[5]! & 0x80)) return; // not present
    // 64-bit gate: offset 15:0 @0, 31:16 @6, 63:32 @8 (SDM Vol. 3A, 6.14.1).
    const view = new DataView(gate.buffer);
    const handler = BigInt(view.getUint16(0, true)) | (BigInt(view.getUint16(6, true)) << 16n) | (BigInt(view.getUint32(8, true)) << 32n);
    if (handler === this.handler) return;
    this.handler = handler;
    this.setBreakpoint(true);
    this.log(`SYSCALL from user mode does not switch to CPL 0 on this KVM; finishing it at the guest's page-fault handler (0x${handler.toString(16)}) with a hardware breakpoint`);
  }

  /** On: an instruction breakpoint on the handler. Off: no breakpoint, single-step one instruction instead. */
  private setBreakpoint(on: boolean): void {
    this.debugRegisters.update(DEBUG_OWNER, on ? { breakpoints: [this.handler!], singleStep: false } : { breakpoints: [], singleStep: true });
  }

  /** Handles a KVM_EXIT_DEBUG caused by this fix-up; false if it is someone else's. */
  handleDebugExit(exit: DebugExit): boolean {
    if (this.handler === undefined) return false;
    if (this.steppingOver) {
      // The single step over the handler's first instruction is done.
      this.steppingOver = false;
      this.setBreakpoint(true);
      return true;
    }
    const regs = this.vcpu.getRegs();
    if (regs.rip !== this.handler && exit.pc !== this.handler) return false;
    const frame = this.readFrame(regs);
    const [star, lstar, fmask] = this.vcpu.getMsrs([MSR_STAR, MSR_LSTAR, MSR_SYSCALL_MASK]).map((m) => m.data);
    if (frame && (frame.cs & 3n) === 3n && frame.rip === lstar && (Number(frame.errorCode) & PF_ERROR_USER) !== 0) {
      this.finishSyscall(regs, frame, star!, lstar!, fmask!);
      this.counts.syscalls++;
      return true;
    }
    // A genuine page fault: let the guest's handler run.
    this.counts.pageFaults++;
    const length = noOpLength(readLinear(this.vcpu, this.memory, regs.rip, 15));
    if (length > 0) {
      regs.rip += BigInt(length);
      this.vcpu.setRegs(regs);
    } else {
      this.steppingOver = true;
      this.setBreakpoint(false);
    }
    return true;
  }

  private readFrame(regs: Regs): ExceptionFrame | undefined {
    const bytes = readLinear(this.vcpu, this.memory, regs.rsp, 48);
    if (bytes.length !== 48) return undefined;
    const view = new DataView(bytes.buffer);
    const q = (i: number): bigint => view.getBigUint64(i * 8, true);
    return { errorCode: q(0), rip: q(1), cs: q(2), rflags: q(3), rsp: q(4), ss: q(5) };
  }

  private finishSyscall(regs: Regs, frame: ExceptionFrame, star: bigint, lstar: bigint, fmask: bigint): void {
    const kernelCs = Number((star >> 32n) & 0xfffcn);
    const sregs = this.vcpu.getSregs();
    sregs.cs = flatSegment(kernelCs, 'code64');
    sregs.ss = flatSegment(kernelCs + 8, 'data');
    this.vcpu.setSregs(sregs);
    regs.rip = lstar;
    regs.rsp = frame.rsp;
    regs.rflags = (frame.rflags & ~fmask & ~RFLAGS_RF) | RFLAGS_FIXED;
    this.vcpu.setRegs(regs);
  }
}
