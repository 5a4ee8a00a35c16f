// What to do when KVM's instruction emulator gives up on an instruction.
//
// On nested KVM without hardware virtualization for the guest (DESIGN.md),
// guest kernel code runs in KVM's emulator, which fails on some instructions
// with KVM_EXIT_INTERNAL_ERROR / KVM_INTERNAL_ERROR_EMULATION. A real CPU
// would execute them; for the ones whose effect is simple we produce that
// effect here and resume the guest.
//
//   int3 (0xCC) in protected/long mode: a trap that raises #BP (vector 3) with
//   the saved RIP pointing after the instruction (SDM Vol. 3A, 6.15, "Interrupt
//   3 — Breakpoint Exception"). We advance RIP by one and inject vector 3
//   with KVM_SET_VCPU_EVENTS; the guest's #BP handler runs and its iret returns
//   after the int3. Linux hits this in its int3 self-test and whenever it
//   patches code with text_poke_bp().
//
//   fwait (9b): waits for pending unmasked x87 exceptions (SDM Vol. 2A,
//   "WAIT/FWAIT"). If FSW.ES (bit 7, error summary) is set, it raises #MF
//   (vector 16) without advancing; otherwise it is a no-op and RIP moves on.
//
//   ldmxcsr / stmxcsr m32 (0f ae /2, 0f ae /3): load / store MXCSR (SDM Vol. 2A,
//   "LDMXCSR", "STMXCSR"). Linux runs ldmxcsr in kernel_fpu_begin(). We decode
//   the memory operand, move the 32 bits between guest memory (through the
//   guest's page tables: a not-present or read-only page raises #PF as on the
//   CPU, page-walk.ts) and the MXCSR in KVM_GET/SET_XSAVE (KVM_GET/SET_FPU
//   ignore MXCSR), and advance RIP. Reserved MXCSR bits set → #GP(0).
//
//   clac / stac (0f 01 ca / 0f 01 cb): clear / set RFLAGS.AC (SDM Vol. 2A).
//   The CPUID policy hides SMAP so Linux does not use them; this covers a
//   guest that uses them anyway.
import type { Vcpu } from '../../kvm/vcpu';
import type { InternalErrorExit } from '../../kvm/structs/run';
import type { GuestMemory } from '../../memory/guest-memory';
import { instructionBytesAt } from './code-fetch';
import { injectAccessFault, readGuestLinear, VECTOR_GENERAL_PROTECTION, writeGuestLinear } from './page-walk';
import { decodeMemoryOperand, effectiveAddress } from './memory-operand';

export const VECTOR_BREAKPOINT = 3;

export interface Workaround {
  /** Short name, e.g. "int3". */
  name: string;
  description: string;
  /** Returns true if it handled the instruction at RIP. */
  apply(vcpu: Vcpu, bytes: Uint8Array, memory: GuestMemory): boolean;
}

export const int3Workaround: Workaround = {
  name: 'int3',
  description: 'int3 at CPL0 is not emulated by KVM here: advanced RIP and injected #BP (vector 3)',
  apply(vcpu, bytes) {
    if (bytes[0] !== 0xcc) return false;
    const regs = vcpu.getRegs();
    regs.rip += 1n;
    vcpu.setRegs(regs);
    vcpu.injectException(VECTOR_BREAKPOINT);
    return true;
  },
};

export const VECTOR_X87_FPU_ERROR = 16;
/** FSW bit 7: exception summary status (SDM Vol. 1, 8.1.3). */
const FSW_ES = 0x80;

export const fwaitWorkaround: Workaround = {
  name: 'fwait',
  description: 'fwait is not emulated by KVM here: checked FSW.ES and advanced RIP (or raised #MF)',
  apply(vcpu, bytes) {
    if (bytes[0] !== 0x9b) return false;
    if (vcpu.getFpu().fsw & FSW_ES) {
      vcpu.injectException(VECTOR_X87_FPU_ERROR);
      return true;
    }
    const regs = vcpu.getRegs();
    regs.rip += 1n;
    vcpu.setRegs(regs);
    return true;
  },
};

export { VECTOR_GENERAL_PROTECTION } from './page-walk';
/**
 * MXCSR bits that may be set: 0–15 on every SSE CPU (SDM Vol. 1, 11.6.6,
 * "Guidelines for Writing to the MXCSR Register"); bit 6 (DAZ) exists on all
 * CPUs KVM runs on today.
 */
export const MXCSR_WRITABLE = 0xffff;

export const mxcsrWorkaround: Workaround = {
  name: 'ldmxcsr/stmxcsr',
  description: 'ldmxcsr/stmxcsr is not emulated by KVM here: moved MXCSR between guest memory and the FPU state and advanced RIP',
  apply(vcpu, bytes, memory) {
    const op = decodeMemoryOperand(bytes, [0x0f, 0xae]);
    if (!op || (op.reg !== 2 && op.reg !== 3)) return false;
    const sregs = vcpu.getSregs();
    if (!sregs.cs.l) return false; // the decoder speaks 64-bit mode only
    const regs = vcpu.getRegs();
    const address = effectiveAddress(op, regs, sregs);
    if (op.reg === 2) {
      const read = readGuestLinear(memory, sregs, address, 4);
      if (read.kind !== 'ok') return injectAccessFault(vcpu, read);
      const data = read.value;
      const value = (data[0]! | (data[1]! << 8) | (data[2]! << 16) | (data[3]! << 24)) >>> 0;
      if (value & ~MXCSR_WRITABLE) {
        vcpu.injectException(VECTOR_GENERAL_PROTECTION, 0);
        return true;
      }
      vcpu.setMxcsr(value);
    } else {
      const value = vcpu.getMxcsr() >>> 0;
      const data = Uint8Array.of(value & 0xff, (value >> 8) & 0xff, (value >> 16) & 0xff, value >>> 24);
      const written = writeGuestLinear(memory, sregs, address, data);
      if (written.kind !== 'ok') return injectAccessFault(vcpu, written);
    }
    regs.rip += BigInt(op.length);
    vcpu.setRegs(regs);
    return true;
  },
};

/** RFLAGS.AC, bit 18 (SDM Vol. 1, 3.4.3.3). */
const RFLAGS_AC = 1n << 18n;

export const clacStacWorkaround: Workaround = {
  name: 'clac/stac',
  description: 'clac/stac is not emulated by KVM here: updated RFLAGS.AC and advanced RIP',
  apply(vcpu, bytes) {
    if (bytes[0] !== 0x0f || bytes[1] !== 0x01 || (bytes[2] !== 0xca && bytes[2] !== 0xcb)) return false;
    const regs = vcpu.getRegs();
    regs.rflags = bytes[2] === 0xca ? regs.rflags & ~RFLAGS_AC : regs.rflags | RFLAGS_AC;
    regs.rip += 3n;
    vcpu.setRegs(regs);
    return true;
  },
};

export const DEFAULT_WORKAROUNDS: readonly Workaround[] = [int3Workaround, fwaitWorkaround, mxcsrWorkaround, clacStacWorkaround];

/**
 * Builds the exit loop's emulation-failure handler: finds the instruction
 * bytes (from the exit, else from guest memory at CS:RIP), applies the first
 * workaround that matches, and reports each kind once through `log`.
 */
export function emulationFailureHandler(
  memory: GuestMemory,
  log: (message: string) => void,
  workarounds: readonly Workaround[] = DEFAULT_WORKAROUNDS,
): ((vcpu: Vcpu, exit: InternalErrorExit) => boolean) & { counts: Map<string, number> } {
  const counts = new Map<string, number>();
  const handler = (vcpu: Vcpu, exit: InternalErrorExit): boolean => {
    let bytes = exit.instructionBytes;
    if (!bytes?.length) {
      const regs = vcpu.getRegs();
      bytes = instructionBytesAt(vcpu, memory, regs, vcpu.getSregs());
    }
    if (!bytes?.length) return false;
    for (const w of workarounds) {
      if (!w.apply(vcpu, bytes, memory)) continue;
      const n = (counts.get(w.name) ?? 0) + 1;
      counts.set(w.name, n);
      if (n === 1) log(`workaround: ${w.description} (logged once; counted in statistics)`);
      return true;
    }
    return false;
  };
  return Object.assign(handler, { counts });
}
