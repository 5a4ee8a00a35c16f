// Identity-mapped page tables for long mode (Intel SDM Vol. 3A, 4.5 "4-Level Paging").
//
// One PML4 entry → one PDPT whose first N entries each point to a page
// directory of 512 2 MiB pages: virtual address == physical address for the
// first N GiB. Flags: P (bit 0), R/W (bit 1), PS (bit 7, in the PD entries: 2 MiB page).
import type { GuestMemory } from '../../memory/guest-memory';

export const PAGE_PRESENT = 1n;
export const PAGE_WRITABLE = 2n;
export const PAGE_SIZE_2M = 0x80n;
const ENTRIES = 512;
const TWO_MIB = 0x200000;

export interface IdentityMap {
  /** Physical address of the PML4: the value for CR3. */
  pml4: number;
  /** Bytes of guest memory the tables use, starting at pml4. */
  size: number;
}

/**
 * Writes identity-mapping page tables at `base` (4 KiB aligned) covering `gib`
 * GiB (1..512): PML4 at base, PDPT at base+4K, page directories after it.
 */
export function writeIdentityPageTables(memory: GuestMemory, base: number, gib = 4): IdentityMap {
  if (base % 4096 !== 0) throw new RangeError('page tables must be 4 KiB aligned');
  if (!Number.isInteger(gib) || gib < 1 || gib > ENTRIES) throw new RangeError('identity map covers 1..512 GiB');
  const pml4 = base;
  const pdpt = base + 0x1000;
  const firstPd = base + 0x2000;
  const size = 0x2000 + gib * 0x1000;
  memory.fill(base, size, 0);
  memory.writeU64(pml4, BigInt(pdpt) | PAGE_PRESENT | PAGE_WRITABLE);
  for (let g = 0; g < gib; g++) {
    const pd = firstPd + g * 0x1000;
    memory.writeU64(pdpt + g * 8, BigInt(pd) | PAGE_PRESENT | PAGE_WRITABLE);
    for (let i = 0; i < ENTRIES; i++) {
      const physical = BigInt(g * ENTRIES + i) * BigInt(TWO_MIB);
      memory.writeU64(pd + i * 8, physical | PAGE_PRESENT | PAGE_WRITABLE | PAGE_SIZE_2M);
    }
  }
  return { pml4, size };
}
