// Translating a guest linear address the way the CPU does for a supervisor
// data access in 4-level paging (Intel SDM Vol. 3A, 4.5 "4-Level Paging and
// 5-Level Paging", 4.6 "Access Rights", 4.7 "Page-Fault Exceptions", 4.8
// "Accessed and Dirty Flags"), for emulation workarounds that read or write
// guest memory on the guest's behalf and must fault where the CPU would.
//
// KVM_TRANSLATE is not enough for that: it reports `writeable = 1` for every
// mapping, so a write through it could land on a read-only (e.g. copy-on-write)
// page. Here each level's P and R/W bits are checked, CR0.WP is honored, the
// Accessed flags are set on the way down and the Dirty flag on a written
// leaf, as the CPU does. The tables are guest memory and so hostile: every
// entry read is bounds-checked and a table outside RAM reads as not present.
import type { GuestMemory } from '../../memory/guest-memory';
import type { Sregs } from '../../kvm/structs/sregs';
import type { Vcpu } from '../../kvm/vcpu';

const P = 1n;
const RW = 2n;
const ACCESSED = 1n << 5n;
const DIRTY = 1n << 6n;
const PAGE_SIZE_BIT = 1n << 7n;
/** Bits 51:12 of an entry: the next table or the page frame (MAXPHYADDR ≤ 52). */
const ADDRESS_MASK = 0x000f_ffff_ffff_f000n;

const CR0_PG = 1n << 31n;
const CR0_WP = 1n << 16n;
const CR4_PAE = 1n << 5n;
const CR4_LA57 = 1n << 12n;
const EFER_LMA = 1n << 10n;

/** Page-fault error code bits (SDM Vol. 3A, 4.7): P (protection violation), W/R (write). */
export const PF_PRESENT = 1;
export const PF_WRITE = 2;

export const VECTOR_PAGE_FAULT = 14;

export type Access = 'read' | 'write';

export type WalkResult =
  | { kind: 'ok'; physical: number }
  /** The CPU would raise #PF with this CR2 and error code. */
  | { kind: 'page-fault'; address: bigint; errorCode: number }
  /** Non-canonical address: #GP(0) (SDM Vol. 3A, 3.3.7.1). */
  | { kind: 'general-protection' }
  /** A paging mode this walker does not implement (only 4-level long-mode paging is). */
  | { kind: 'unsupported' };

function isCanonical(linear: bigint): boolean {
  const top = linear >> 47n;
  return top === 0n || top === 0x1ffffn;
}

/** Translates one linear address for a CPL0 data access; sets A (and D for a write) like the CPU. */
export function walkLinear(memory: GuestMemory, sregs: Sregs, linear: bigint, access: Access): WalkResult {
  if (!(sregs.cr0 & CR0_PG) || !(sregs.cr4 & CR4_PAE) || !(sregs.efer & EFER_LMA) || sregs.cr4 & CR4_LA57) {
    return { kind: 'unsupported' };
  }
  linear = BigInt.asUintN(64, linear);
  if (!isCanonical(linear)) return { kind: 'general-protection' };
  const write = access === 'write';
  const fault = (present: boolean): WalkResult => ({
    kind: 'page-fault',
    address: linear,
    errorCode: (present ? PF_PRESENT : 0) | (write ? PF_WRITE : 0),
  });
  let table = sregs.cr3 & ADDRESS_MASK;
  let writable = true;
  const visited: number[] = [];
  // Levels: PML4 (bits 47:39), PDPT (38:30), PD (29:21), PT (20:12).
  for (let level = 3; level >= 0; level--) {
    const shift = 12n + 9n * BigInt(level);
    const entryAddress = table + ((linear >> shift) & 0x1ffn) * 8n;
    if (entryAddress + 8n > BigInt(Number.MAX_SAFE_INTEGER) || !memory.contains(Number(entryAddress), 8)) return fault(false);
    const at = Number(entryAddress);
    const entry = memory.readU64(at);
    if (!(entry & P)) return fault(false);
    writable &&= (entry & RW) !== 0n;
    visited.push(at);
    const large = level > 0 && level < 3 && (entry & PAGE_SIZE_BIT) !== 0n;
    if (level === 0 || large) {
      if (write && !writable && sregs.cr0 & CR0_WP) return fault(true);
      const offsetMask = (1n << shift) - 1n;
      const physical = (entry & ADDRESS_MASK & ~offsetMask) | (linear & offsetMask);
      if (physical > BigInt(Number.MAX_SAFE_INTEGER)) return fault(true);
      for (const v of visited) memory.writeU64(v, memory.readU64(v) | ACCESSED);
      if (write) memory.writeU64(at, memory.readU64(at) | DIRTY);
      return { kind: 'ok', physical: Number(physical) };
    }
    table = entry & ADDRESS_MASK;
  }
  return fault(false); // not reached: level 0 always returns
}

export type LinearAccessResult<T> = { kind: 'ok'; value: T } | Exclude<WalkResult, { kind: 'ok' }>;

/**
 * The guest-physical address of every byte of [linear, linear + length), page
 * by page, or the fault the first inaccessible byte raises. Nothing is written.
 */
function translateRange(memory: GuestMemory, sregs: Sregs, linear: bigint, length: number, access: Access): LinearAccessResult<number[]> {
  const pieces: number[] = [];
  let offset = 0;
  while (offset < length) {
    const address = BigInt.asUintN(64, linear + BigInt(offset));
    const r = walkLinear(memory, sregs, address, access);
    if (r.kind !== 'ok') return r;
    const inPage = Math.min(length - offset, 4096 - Number(address & 0xfffn));
    if (!memory.contains(r.physical, inPage)) return { kind: 'page-fault', address, errorCode: PF_PRESENT | (access === 'write' ? PF_WRITE : 0) };
    for (let i = 0; i < inPage; i++) pieces.push(r.physical + i);
    offset += inPage;
  }
  return { kind: 'ok', value: pieces };
}

/**
 * Reads `length` bytes at a linear address as a CPL0 access, or returns the
 * fault. `access` 'write' checks write permission too, for the read half of a
 * read-modify-write (the CPU reports such a fault as a write).
 */
export function readGuestLinear(memory: GuestMemory, sregs: Sregs, linear: bigint, length: number, access: Access = 'read'): LinearAccessResult<Uint8Array> {
  const r = translateRange(memory, sregs, linear, length, access);
  if (r.kind !== 'ok') return r;
  return { kind: 'ok', value: Uint8Array.from(r.value, (gpa) => memory.readU8(gpa)) };
}

/** Writes bytes at a linear address as a CPL0 access (all or nothing), or returns the fault. */
export function writeGuestLinear(memory: GuestMemory, sregs: Sregs, linear: bigint, data: Uint8Array): LinearAccessResult<true> {
  const r = translateRange(memory, sregs, linear, data.length, 'write');
  if (r.kind !== 'ok') return r;
  r.value.forEach((gpa, i) => memory.writeU8(gpa, data[i]!));
  return { kind: 'ok', value: true };
}

export const VECTOR_GENERAL_PROTECTION = 13;

/**
 * Raises, in the guest, the exception a failed access stands for: #PF with
 * CR2 = the faulting address and the CPU's error code, or #GP(0) for a
 * non-canonical address. Returns false for 'unsupported' (nothing raised: the
 * caller reports the instruction instead of guessing).
 */
export function injectAccessFault(vcpu: Vcpu, fault: Exclude<WalkResult, { kind: 'ok' }>): boolean {
  if (fault.kind === 'unsupported') return false;
  if (fault.kind === 'general-protection') {
    vcpu.injectException(VECTOR_GENERAL_PROTECTION, 0);
    return true;
  }
  const sregs = vcpu.getSregs();
  sregs.cr2 = fault.address;
  vcpu.setSregs(sregs);
  vcpu.injectException(VECTOR_PAGE_FAULT, fault.errorCode);
  return true;
}
