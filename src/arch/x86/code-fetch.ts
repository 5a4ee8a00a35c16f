// Reaching guest memory through the guest's own page tables (linear address →
// KVM_TRANSLATE → guest physical), for reports and emulation workarounds.
// Each 4 KiB page is translated separately: a buffer may straddle pages that
// map to unrelated physical frames.
import type { GuestMemory } from '../../memory/guest-memory';
import type { Vcpu } from '../../kvm/vcpu';
import type { Regs } from '../../kvm/structs/regs';
import type { Sregs } from '../../kvm/structs/sregs';

const PAGE_SIZE = 4096n;

/** Guest physical address of a linear address, or undefined if unmapped or outside RAM. */
function physicalAddress(vcpu: Vcpu, memory: GuestMemory, linear: bigint): number | undefined {
  try {
    const t = vcpu.translate(BigInt.asUintN(64, linear));
    return t.valid && t.physicalAddress >= 0 && memory.contains(t.physicalAddress) ? t.physicalAddress : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Reads up to `length` bytes at a guest linear address; stops early at the
 * first byte that is not mapped to guest RAM (so the result may be shorter).
 */
export function readLinear(vcpu: Vcpu, memory: GuestMemory, linear: bigint, length: number): Uint8Array {
  const out: number[] = [];
  let gpa: number | undefined;
  for (let i = 0; i < length; i++) {
    const address = linear + BigInt(i);
    if (i === 0 || address % PAGE_SIZE === 0n) gpa = physicalAddress(vcpu, memory, address);
    else if (gpa !== undefined) gpa++;
    if (gpa === undefined || !memory.contains(gpa)) break;
    out.push(memory.readU8(gpa));
  }
  return Uint8Array.from(out);
}

/** Writes bytes at a guest linear address; returns false (having written nothing) if any byte is unmapped. */
export function writeLinear(vcpu: Vcpu, memory: GuestMemory, linear: bigint, data: Uint8Array): boolean {
  const targets: number[] = [];
  let gpa: number | undefined;
  for (let i = 0; i < data.length; i++) {
    const address = linear + BigInt(i);
    if (i === 0 || address % PAGE_SIZE === 0n) gpa = physicalAddress(vcpu, memory, address);
    else if (gpa !== undefined) gpa++;
    if (gpa === undefined || !memory.contains(gpa)) return false;
    targets.push(gpa);
  }
  targets.forEach((target, i) => memory.writeU8(target, data[i]!));
  return true;
}

/** Reads up to 15 bytes (the longest x86 instruction) at CS:RIP from guest RAM. */
export function instructionBytesAt(vcpu: Vcpu, memory: GuestMemory, regs: Regs, sregs: Sregs): Uint8Array | undefined {
  const bytes = readLinear(vcpu, memory, sregs.cs.base + regs.rip, 15);
  return bytes.length ? bytes : undefined;
}
