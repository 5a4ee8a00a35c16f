// Putting a vCPU into one of the three x86 operating modes.
//
// A lesson in three functions. After KVM_CREATE_VCPU the vCPU is in the state
// of a processor after RESET (SDM Vol. 3A, 9.1.1): real mode, CS.base
// 0xffff0000, IP 0xfff0. A VMM with no firmware puts the vCPU directly in the
// mode its guest expects:
//
//   real mode       CS:IP = 0:entry, all segment bases 0, 64 KiB limits.
//   protected mode  a GDT with flat 4 GiB code/data segments, CR0.PE = 1.
//   long mode       additionally: page tables (CR3), CR4.PAE, EFER.LME/LMA,
//                   CR0.PG, and a code segment with L = 1.
//
// Guest memory layout these helpers use (below the usual 0x8000 load address):
//   0x0500  GDT (null, null, code 0x10, data 0x18, TSS 0x20)
//   0x1000  PML4, 0x2000 PDPT, 0x3000.. page directories (long mode)
import type { GuestMemory } from '../../memory/guest-memory';
import type { Vcpu } from '../../kvm/vcpu';
import type { Segment, Sregs } from '../../kvm/structs/sregs';
import { emptyRegs, Regs } from '../../kvm/structs/regs';
import { encodeDescriptor, flatSegment, GDT_CODE_SELECTOR, GDT_DATA_SELECTOR, GDT_TSS_SELECTOR, tssSegment, unusableLdt } from './gdt';
import { writeIdentityPageTables } from './paging';

export type CpuMode = 'real' | 'protected' | 'long';

export const GDT_ADDRESS = 0x500;
export const PAGE_TABLES_ADDRESS = 0x1000;

/** Control register and EFER bits (SDM Vol. 3A, 2.5 and 2.2.1). */
export const CR0_PE = 1n << 0n; // protection enable
export const CR0_ET = 1n << 4n; // extension type (always 1 on modern CPUs)
export const CR0_PG = 1n << 31n; // paging
export const CR4_PAE = 1n << 5n; // physical address extension, required for long mode
export const EFER_LME = 1n << 8n; // long mode enable
export const EFER_LMA = 1n << 10n; // long mode active

export interface ModeOptions {
  /** Entry point (guest physical; identity-mapped in long mode). */
  entry: number;
  /** Initial stack pointer. */
  stack?: number;
  /** Long mode: GiB of identity-mapped address space (default 4, includes the 3-4 GiB MMIO hole). */
  identityMapGiB?: number;
  /** Extra register values to set (e.g. RSI for a boot protocol). */
  regs?: Partial<Regs>;
}

function realModeSegment(selector: number, code = false): Segment {
  return {
    base: BigInt(selector) << 4n,
    limit: 0xffff,
    selector,
    type: code ? 0xb : 0x3,
    present: 1,
    dpl: 0,
    db: 0,
    s: 1,
    l: 0,
    g: 0,
    avl: 0,
    unusable: 0,
  };
}

function applyRegs(vcpu: Vcpu, options: ModeOptions, rip: number): void {
  const regs = emptyRegs();
  regs.rip = BigInt(rip);
  regs.rsp = BigInt(options.stack ?? 0x8000);
  Object.assign(regs, options.regs);
  vcpu.setRegs(regs);
}

/** 16-bit real mode with CS = 0, so IP = entry (entry must be below 64 KiB). */
export function setupRealMode(vcpu: Vcpu, options: ModeOptions): void {
  if (options.entry < 0 || options.entry > 0xffff)
    throw new RangeError(`real-mode entry 0x${options.entry.toString(16)} is beyond 64 KiB (CS is 0)`);
  const sregs = vcpu.getSregs();
  sregs.cs = realModeSegment(0, true);
  for (const name of ['ds', 'es', 'fs', 'gs', 'ss'] as const) sregs[name] = realModeSegment(0);
  sregs.cr0 = (sregs.cr0 & ~(CR0_PE | CR0_PG)) | CR0_ET;
  vcpu.setSregs(sregs);
  applyRegs(vcpu, options, options.entry);
}

/** Writes the boot GDT and returns the segments it describes. */
function writeGdt(memory: GuestMemory, code: Segment, data: Segment, tss: Segment): void {
  const entries = [0n, 0n, encodeDescriptor(code), encodeDescriptor(data), encodeDescriptor(tss)];
  entries.forEach((d, i) => memory.writeU64(GDT_ADDRESS + i * 8, d));
}

function protectedSregs(sregs: Sregs, memory: GuestMemory, code: Segment): void {
  const data = flatSegment(GDT_DATA_SELECTOR, 'data');
  const tss = tssSegment(GDT_TSS_SELECTOR);
  writeGdt(memory, code, data, tss);
  sregs.gdt = { base: BigInt(GDT_ADDRESS), limit: 5 * 8 - 1 };
  sregs.idt = { base: 0n, limit: 0 };
  sregs.cs = code;
  for (const name of ['ds', 'es', 'fs', 'gs', 'ss'] as const) sregs[name] = { ...data };
  sregs.tr = tss;
  sregs.ldt = unusableLdt();
}

/** 32-bit protected mode, paging off, flat segments (CS 0x10, data 0x18). */
export function setupProtectedMode(vcpu: Vcpu, memory: GuestMemory, options: ModeOptions): void {
  const sregs = vcpu.getSregs();
  protectedSregs(sregs, memory, flatSegment(GDT_CODE_SELECTOR, 'code32'));
  sregs.cr0 = (sregs.cr0 | CR0_PE | CR0_ET) & ~CR0_PG;
  vcpu.setSregs(sregs);
  applyRegs(vcpu, options, options.entry);
}

/** 64-bit long mode with identity-mapped paging (CS 0x10 with L=1, data 0x18). */
export function setupLongMode(vcpu: Vcpu, memory: GuestMemory, options: ModeOptions): void {
  const map = writeIdentityPageTables(memory, PAGE_TABLES_ADDRESS, options.identityMapGiB ?? 4);
  const sregs = vcpu.getSregs();
  protectedSregs(sregs, memory, flatSegment(GDT_CODE_SELECTOR, 'code64'));
  sregs.cr3 = BigInt(map.pml4);
  sregs.cr4 |= CR4_PAE;
  sregs.cr0 |= CR0_PE | CR0_ET | CR0_PG;
  // KVM_SET_SREGS takes LMA as given: set both LME and LMA (SDM Vol. 3A, 9.8.5).
  sregs.efer |= EFER_LME | EFER_LMA;
  vcpu.setSregs(sregs);
  applyRegs(vcpu, options, options.entry);
}

export function setupMode(mode: CpuMode, vcpu: Vcpu, memory: GuestMemory, options: ModeOptions): void {
  switch (mode) {
    case 'real':
      return setupRealMode(vcpu, options);
    case 'protected':
      return setupProtectedMode(vcpu, memory, options);
    case 'long':
      return setupLongMode(vcpu, memory, options);
  }
}

/** Human-readable mode from special registers, for reports. */
export function describeMode(sregs: Sregs): string {
  if ((sregs.cr0 & CR0_PE) === 0n) return 'real mode';
  if (sregs.efer & EFER_LMA) return sregs.cs.l ? '64-bit long mode' : 'compatibility mode';
  return sregs.cs.db ? '32-bit protected mode' : '16-bit protected mode';
}
