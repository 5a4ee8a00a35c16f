// The BIOS-style e820 memory map that tskvm hands a Linux guest in the zero
// page (boot_params.e820_table, see boot-params.ts for the encoding).
//
// Layout for RAM that starts at 0 (the usual PC picture):
//   [0, 0x9fc00)         usable RAM (conventional memory, 639 KiB)
//   [0x9fc00, 0x100000)  reserved: EBDA (top 1 KiB of conventional memory),
//                        VGA window 0xa0000-0xbffff, option ROMs and the BIOS
//                        area 0xc0000-0xfffff (where MP/ACPI tables may live)
//   [0x100000, end)      usable RAM, for each region
// Regions that start at or above 1 MiB are usable in full.
import type { E820Entry } from './boot-params';
import { E820_MAX_ENTRIES_ZEROPAGE, E820_TYPE_RAM, E820_TYPE_RESERVED } from './boot-params';

export type { E820Entry } from './boot-params';
export { E820_TYPE_RAM, E820_TYPE_RESERVED } from './boot-params';

/** Start of the Extended BIOS Data Area: conventional memory ends here (640 KiB - 1 KiB). */
export const EBDA_START = 0x9fc00;
/** 1 MiB: end of the real-mode address space; "high memory" starts here. */
export const HIGH_MEMORY_START = 0x100000;

/**
 * Builds the e820 map for the given RAM regions (sorted or not). Adjacent
 * entries of the same type are merged. Throws if the map needs more entries
 * than the zero page holds.
 */
export function buildE820Map(regions: readonly { gpa: number; size: number }[]): E820Entry[] {
  const raw: E820Entry[] = [];
  let hasLowMemory = false;
  for (const r of [...regions].sort((a, b) => a.gpa - b.gpa)) {
    const start = r.gpa;
    const end = r.gpa + r.size;
    if (start < EBDA_START) raw.push({ addr: start, size: Math.min(end, EBDA_START) - start, type: E820_TYPE_RAM });
    if (start < HIGH_MEMORY_START) hasLowMemory = true;
    const high = Math.max(start, HIGH_MEMORY_START);
    if (end > high) raw.push({ addr: high, size: end - high, type: E820_TYPE_RAM });
  }
  // The hole between conventional memory and 1 MiB is reported reserved
  // whenever the guest has RAM below 1 MiB, like a PC BIOS does.
  if (hasLowMemory) raw.push({ addr: EBDA_START, size: HIGH_MEMORY_START - EBDA_START, type: E820_TYPE_RESERVED });
  raw.sort((a, b) => a.addr - b.addr);

  const merged: E820Entry[] = [];
  for (const e of raw) {
    const last = merged[merged.length - 1];
    if (last && last.type === e.type && last.addr + last.size === e.addr) last.size += e.size;
    else merged.push({ ...e });
  }
  if (merged.length > E820_MAX_ENTRIES_ZEROPAGE)
    throw new RangeError(`guest RAM layout needs ${merged.length} e820 entries; the zero page holds ${E820_MAX_ENTRIES_ZEROPAGE}`);
  return merged;
}
