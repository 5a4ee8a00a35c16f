// Reading the guest's code at CS:RIP, for reports and emulation workarounds.
import type { GuestMemory } from '../../memory/guest-memory';
import type { Vcpu } from '../../kvm/vcpu';
import type { Regs } from '../../kvm/structs/regs';
import type { Sregs } from '../../kvm/structs/sregs';

/** Guest physical address of the code at CS:RIP, or undefined if it cannot be translated. */
function codeAddress(vcpu: Vcpu, regs: Regs, sregs: Sregs): number | undefined {
  const linear = BigInt.asUintN(64, sregs.cs.base + regs.rip);
  try {
    const t = vcpu.translate(linear);
    return t.valid && t.physicalAddress >= 0 ? t.physicalAddress : undefined;
  } catch {
    return undefined;
  }
}

/** Reads up to 15 bytes (the longest x86 instruction) at CS:RIP from guest RAM. */
export function instructionBytesAt(vcpu: Vcpu, memory: GuestMemory, regs: Regs, sregs: Sregs): Uint8Array | undefined {
  const gpa = codeAddress(vcpu, regs, sregs);
  if (gpa === undefined) return undefined;
  const out: number[] = [];
  for (let i = 0; i < 15 && memory.contains(gpa + i); i++) out.push(memory.readU8(gpa + i));
  return out.length ? Uint8Array.from(out) : undefined;
}

