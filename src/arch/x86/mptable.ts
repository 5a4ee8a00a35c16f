// Intel MultiProcessor Specification 1.4 tables (chapter 4, "MP Configuration
// Table"): how a guest OS without ACPI learns how many CPUs there are, where
// the local APICs and the I/O APIC live, and how ISA interrupts reach the
// I/O APIC pins. Linux reads these when there is no ACPI MADT (or with
// `acpi=off`); without them it boots a single CPU with the 8259 PIC only.
//
// Layout written at `base` (default 0x9fc00, the last KiB of base memory, which
// the e820 map reserves and which Linux scans for the floating pointer):
//
//   base + 0    MP Floating Pointer Structure (16 bytes)
//   base + 16   MP Configuration Table header (44 bytes)
//   base + 60   entries, in the order spec 4.3 requires (by entry type):
//                 Processor (type 0) × cpus          20 bytes each
//                 Bus (type 1) "ISA"                   8 bytes
//                 I/O APIC (type 2)                    8 bytes
//                 I/O Interrupt Assignment (type 3) × 16 (ISA IRQ 0–15), 8 bytes each
//                 Local Interrupt Assignment (type 4) × 2 (ExtINT→LINT0, NMI→LINT1)
//
// Where a guest looks for the floating pointer (spec 4, "MP Floating Pointer
// Structure"; Linux scans the same places): the first KiB of the EBDA (segment
// in the BIOS data area at 0x40e), the last KiB of base memory (0x9fc00 with
// 640 KiB of base memory), or the BIOS ROM area 0xf0000–0xfffff; on a 16-byte
// boundary. A table for many CPUs does not fit in the last KiB below 0xa0000
// (1 KiB holds the fixed part plus 40 processor entries): pass a lower `base`,
// point the BDA's EBDA segment at it and keep that range out of the usable
// e820 RAM — or use ACPI.
import type { GuestMemory } from '../../memory/guest-memory';

// --- MP Floating Pointer Structure (spec 4.1, table 4-1) --------------------
/** "_MP_" */
export const MPF_SIGNATURE = '_MP_';
export const MPF_SIZE = 16;
const MPF_SIGNATURE_OFF = 0; // SIGNATURE, 4 bytes: "_MP_"
const MPF_PHYSADDR_OFF = 4; // PHYSICAL ADDRESS POINTER, 4 bytes: GPA of the config table (0 = none)
const MPF_LENGTH_OFF = 8; // LENGTH, 1 byte: size of this structure in 16-byte units (1)
const MPF_SPEC_REV_OFF = 9; // SPEC_REV, 1 byte: 1 = MP 1.1, 4 = MP 1.4
const MPF_CHECKSUM_OFF = 10; // CHECKSUM, 1 byte: all 16 bytes sum to 0
const MPF_FEATURE1_OFF = 11; // MP FEATURE INFORMATION BYTE 1: 0 = config table present, else a default configuration number
const MPF_FEATURE2_OFF = 12; // MP FEATURE INFORMATION BYTE 2: bit 7 IMCRP (IMCR present → PIC mode); bits 0-6 reserved
// 13..15: MP FEATURE INFORMATION BYTES 3-5, reserved (0)

// --- MP Configuration Table header (spec 4.2, table 4-2) --------------------
/** "PCMP" */
export const MPC_SIGNATURE = 'PCMP';
export const MPC_HEADER_SIZE = 44;
const MPC_SIGNATURE_OFF = 0; // SIGNATURE, 4 bytes: "PCMP"
const MPC_BASE_LENGTH_OFF = 4; // BASE TABLE LENGTH, 2 bytes: header + base entries, in bytes
const MPC_SPEC_REV_OFF = 6; // SPEC_REV, 1 byte: 4 = MP 1.4
const MPC_CHECKSUM_OFF = 7; // CHECKSUM, 1 byte: the base table (BASE TABLE LENGTH bytes) sums to 0
const MPC_OEM_ID_OFF = 8; // OEM ID, 8 bytes, space padded
const MPC_PRODUCT_ID_OFF = 16; // PRODUCT ID, 12 bytes, space padded
const MPC_OEM_TABLE_PTR_OFF = 28; // OEM TABLE POINTER, 4 bytes (0 = none)
const MPC_OEM_TABLE_SIZE_OFF = 32; // OEM TABLE SIZE, 2 bytes
const MPC_ENTRY_COUNT_OFF = 34; // ENTRY COUNT, 2 bytes: number of base table entries
const MPC_LAPIC_ADDR_OFF = 36; // ADDRESS OF LOCAL APIC, 4 bytes
const MPC_EXT_LENGTH_OFF = 40; // EXTENDED TABLE LENGTH, 2 bytes (0: no extended entries)
const MPC_EXT_CHECKSUM_OFF = 42; // EXTENDED TABLE CHECKSUM, 1 byte
// 43: reserved

export const MPC_OEM_ID = 'TSKVM   ';
export const MPC_PRODUCT_ID = 'TSKVM VM    ';

// --- Base table entry types (spec 4.3, table 4-3) ---------------------------
export const MP_ENTRY_PROCESSOR = 0;
export const MP_ENTRY_BUS = 1;
export const MP_ENTRY_IOAPIC = 2;
export const MP_ENTRY_IO_INTERRUPT = 3;
export const MP_ENTRY_LOCAL_INTERRUPT = 4;

// Processor entry (spec 4.3.1, table 4-4), 20 bytes.
export const MP_PROCESSOR_SIZE = 20;
const CPU_TYPE_OFF = 0; // ENTRY TYPE = 0
const CPU_LAPIC_ID_OFF = 1; // LOCAL APIC ID
const CPU_LAPIC_VERSION_OFF = 2; // LOCAL APIC VERSION
const CPU_FLAGS_OFF = 3; // CPU FLAGS: bit 0 EN (usable), bit 1 BP (bootstrap processor)
const CPU_SIGNATURE_OFF = 4; // CPU SIGNATURE, 4 bytes: stepping [3:0], model [7:4], family [11:8]
const CPU_FEATURE_FLAGS_OFF = 8; // FEATURE FLAGS, 4 bytes: CPUID.1:EDX
// 12..19: reserved
export const CPU_FLAG_EN = 1 << 0;
export const CPU_FLAG_BP = 1 << 1;

// Bus entry (spec 4.3.2, table 4-6), 8 bytes.
export const MP_BUS_SIZE = 8;
const BUS_TYPE_OFF = 0; // ENTRY TYPE = 1
const BUS_ID_OFF = 1; // BUS ID
const BUS_TYPE_STRING_OFF = 2; // BUS TYPE STRING, 6 bytes, space padded (table 4-8)

// I/O APIC entry (spec 4.3.3, table 4-9), 8 bytes.
export const MP_IOAPIC_SIZE = 8;
const IOAPIC_TYPE_OFF = 0; // ENTRY TYPE = 2
const IOAPIC_ID_OFF = 1; // I/O APIC ID
const IOAPIC_VERSION_OFF = 2; // I/O APIC VERSION
const IOAPIC_FLAGS_OFF = 3; // I/O APIC FLAGS: bit 0 EN (usable)
const IOAPIC_ADDR_OFF = 4; // I/O APIC ADDRESS, 4 bytes
export const IOAPIC_FLAG_EN = 1 << 0;

// I/O Interrupt Assignment (spec 4.3.4, table 4-11) and Local Interrupt
// Assignment (spec 4.3.5, table 4-13) entries share one layout, 8 bytes.
export const MP_INTERRUPT_SIZE = 8;
const INT_TYPE_OFF = 0; // ENTRY TYPE = 3 or 4
const INT_INTERRUPT_TYPE_OFF = 1; // INTERRUPT TYPE (table 4-12): 0 INT, 1 NMI, 2 SMI, 3 ExtINT
const INT_FLAGS_OFF = 2; // I/O (or local) INTERRUPT FLAG, 2 bytes: PO bits 0-1, EL bits 2-3 (0 = conforms to bus)
const INT_SOURCE_BUS_OFF = 4; // SOURCE BUS ID
const INT_SOURCE_IRQ_OFF = 5; // SOURCE BUS IRQ
const INT_DEST_ID_OFF = 6; // DESTINATION I/O APIC ID (type 3) / DESTINATION LOCAL APIC ID (type 4; 0xff = all)
const INT_DEST_PIN_OFF = 7; // DESTINATION I/O APIC INTIN# (type 3) / DESTINATION LOCAL APIC LINTIN# (type 4)
export const MP_INT_TYPE_INT = 0;
export const MP_INT_TYPE_NMI = 1;
export const MP_INT_TYPE_SMI = 2;
export const MP_INT_TYPE_EXTINT = 3;
/** Polarity and trigger mode "conform to the specifications of the bus" (ISA: active high, edge). */
export const MP_INT_FLAGS_CONFORMS = 0;
/** Destination local APIC id meaning "all local APICs". */
export const MP_ALL_LOCAL_APICS = 0xff;

/** Default local APIC base (IA32_APIC_BASE after reset). */
export const DEFAULT_LAPIC_ADDRESS = 0xfee00000;
/** Default I/O APIC base: where KVM's in-kernel IOAPIC decodes. */
export const DEFAULT_IOAPIC_ADDRESS = 0xfec00000;
/** Default location: the last KiB of base memory, reserved by the e820 map (e820.ts EBDA_START). */
export const DEFAULT_MPTABLE_BASE = 0x9fc00;
/** Everything must end at or below here: the VGA window starts at 0xa0000. */
export const MPTABLE_LIMIT = 0xa0000;

/** Local APIC version KVM's in-kernel LAPIC reports (integrated APIC, LVR 0x14). */
export const LAPIC_VERSION = 0x14;
/** I/O APIC version KVM's in-kernel IOAPIC reports (82093AA-style, 0x11). */
export const IOAPIC_VERSION = 0x11;
/** CPU signature for processor entries: family 6, model 0, stepping 0. */
export const DEFAULT_CPU_SIGNATURE = 0x600;
/** Feature flags for processor entries: CPUID.1:EDX FPU (bit 0) | APIC (bit 9). */
export const DEFAULT_CPU_FEATURES = (1 << 0) | (1 << 9);
/** Number of ISA IRQs described by I/O interrupt assignment entries. */
export const ISA_IRQS = 16;
/** Most CPUs: APIC ids 0..253 leave 254 for the I/O APIC; 0xff is the broadcast id. */
export const MPTABLE_MAX_CPUS = 254;

export interface MpTableOptions {
  /** Number of vCPUs; their local APIC ids are 0..cpus-1, CPU 0 is the bootstrap processor. */
  cpus: number;
  /** Default 0xfec00000. */
  ioapicAddress?: number;
  /** Default `cpus` (the first id after the local APICs). */
  ioapicId?: number;
  /** Default 0xfee00000. */
  lapicAddress?: number;
  /** GPA of the floating pointer (16-byte aligned); the config table follows it. Default 0x9fc00. */
  base?: number;
  /** CPU SIGNATURE of every processor entry. Default 0x600 (family 6). */
  cpuSignature?: number;
  /** FEATURE FLAGS of every processor entry. Default FPU | APIC. */
  cpuFeatures?: number;
  /**
   * I/O APIC pin of ISA IRQ 0 (the PIT). Default 0, which matches KVM's default
   * GSI routing; 2 only for a VMM that installs QEMU-style routing (GSI 0 →
   * IOAPIC pin 2). With 2, ISA IRQ 2 (the 8259 cascade) gets no entry. See
   * `isaInterruptPin`.
   */
  timerPin?: 0 | 2;
}

export interface MpTableLocation {
  /** GPA of the MP Floating Pointer Structure. */
  floatingPointer: number;
  /** GPA of the MP Configuration Table header. */
  configTable: number;
  /** Bytes written from `floatingPointer` (floating pointer + base table). */
  size: number;
}

/** Bytes of the base configuration table (header + entries) for `cpus` CPUs. */
export function mpConfigTableSize(cpus: number, timerPin: 0 | 2 = 0): number {
  const ioEntries = timerPin === 2 ? ISA_IRQS - 1 : ISA_IRQS;
  return MPC_HEADER_SIZE + cpus * MP_PROCESSOR_SIZE + MP_BUS_SIZE + MP_IOAPIC_SIZE + (ioEntries + 2) * MP_INTERRUPT_SIZE;
}

/** Bytes `writeMpTable` writes for `cpus` CPUs (floating pointer included). */
export function mpTableSize(cpus: number, timerPin: 0 | 2 = 0): number {
  return MPF_SIZE + mpConfigTableSize(cpus, timerPin);
}

/**
 * I/O APIC pin for an ISA IRQ.
 *
 * The classic PC/ACPI convention wires the PIT (ISA IRQ 0) to IOAPIC INTIN2
 * (QEMU's MADT says so with an interrupt source override, and the MP
 * table SeaBIOS builds for QEMU lists IRQ 0 → INTIN2). That convention is only true in
 * a VM if the VMM makes it true: QEMU installs its own GSI routing with
 * KVM_SET_GSI_ROUTING in which GSI 0 goes to IOAPIC pin 2.
 *
 * tskvm keeps KVM's *default* GSI routing (it never calls KVM_SET_GSI_ROUTING):
 * in the kernel's default table (arch/x86/kvm, kvm_setup_default_irq_routing)
 * GSI n goes to 8259 pin n and IOAPIC pin n for n < 16, and the in-kernel
 * PIT (KVM_CREATE_PIT2) raises GSI 0 — so the timer arrives on IOAPIC pin 0.
 * The MP table must describe the wiring that exists, hence the identity
 * mapping IRQ n → INTIN n, as Firecracker does for the same reason. Linux
 * takes the timer's IOAPIC pin from the IRQ 0 entry (check_timer), so a wrong
 * entry sends it through its fallbacks (8259 through LINT0, virtual wire) or to
 * the "IO-APIC + timer doesn't work" panic. Should tskvm ever install
 * QEMU-style routing, pass `timerPin: 2`.
 *
 * Returns undefined for an IRQ that gets no entry (IRQ 2 when timerPin is 2).
 */
export function isaInterruptPin(irq: number, timerPin: 0 | 2 = 0): number | undefined {
  if (timerPin === 2) {
    if (irq === 0) return 2;
    if (irq === 2) return undefined;
  }
  return irq;
}

function checkU32(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff)
    throw new RangeError(`MP table: ${name} must be a 32-bit unsigned integer, got ${value}`);
}

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

/** Sets the byte at `checksumOffset` so that bytes[start, end) sum to 0 mod 256. */
function fillChecksum(bytes: Uint8Array, start: number, end: number, checksumOffset: number): void {
  bytes[checksumOffset] = 0;
  let sum = 0;
  for (let i = start; i < end; i++) sum += bytes[i];
  bytes[checksumOffset] = (256 - (sum & 0xff)) & 0xff;
}

/**
 * Writes the MP floating pointer and configuration table into guest memory.
 * Throws RangeError for a CPU count outside 1..254, colliding APIC ids, bad
 * addresses, or a table that does not fit in guest RAM below 0xa0000.
 */
export function writeMpTable(memory: GuestMemory, options: MpTableOptions): MpTableLocation {
  const { cpus } = options;
  const ioapicAddress = options.ioapicAddress ?? DEFAULT_IOAPIC_ADDRESS;
  const lapicAddress = options.lapicAddress ?? DEFAULT_LAPIC_ADDRESS;
  const base = options.base ?? DEFAULT_MPTABLE_BASE;
  const cpuSignature = options.cpuSignature ?? DEFAULT_CPU_SIGNATURE;
  const cpuFeatures = options.cpuFeatures ?? DEFAULT_CPU_FEATURES;
  const timerPin = options.timerPin ?? 0;

  if (!Number.isInteger(cpus) || cpus < 1 || cpus > MPTABLE_MAX_CPUS)
    throw new RangeError(`MP table: cpus must be an integer from 1 to ${MPTABLE_MAX_CPUS}, got ${cpus}`);
  const ioapicId = options.ioapicId ?? cpus;
  if (!Number.isInteger(ioapicId) || ioapicId < 0 || ioapicId > 0xfe)
    throw new RangeError(`MP table: ioapicId must be an integer from 0 to 254, got ${ioapicId}`);
  if (ioapicId < cpus)
    throw new RangeError(
      `MP table: ioapicId ${ioapicId} collides with the local APIC ids 0..${cpus - 1}; use an id of at least ${cpus}`,
    );
  checkU32('ioapicAddress', ioapicAddress);
  checkU32('lapicAddress', lapicAddress);
  checkU32('cpuSignature', cpuSignature);
  checkU32('cpuFeatures', cpuFeatures);
  if (timerPin !== 0 && timerPin !== 2) throw new RangeError(`MP table: timerPin must be 0 or 2, got ${timerPin}`);
  if (!Number.isInteger(base) || base < 0 || base % 16 !== 0)
    throw new RangeError(`MP table: base must be a 16-byte aligned address, got ${base}`);

  const tableLength = mpConfigTableSize(cpus, timerPin);
  const size = MPF_SIZE + tableLength;
  if (base + size > MPTABLE_LIMIT)
    throw new RangeError(
      `MP table for ${cpus} CPUs needs ${size} bytes at ${hex(base)}, which would end at ${hex(base + size)}, ` +
        `past ${hex(MPTABLE_LIMIT)} (the VGA window); use a lower base`,
    );
  if (!memory.contains(base, size))
    throw new RangeError(`MP table: [${hex(base)}, ${hex(base + size)}) is not inside guest RAM`);

  const configTable = base + MPF_SIZE;
  const bytes = new Uint8Array(size);
  const view = new DataView(bytes.buffer);
  const ascii = (offset: number, text: string) => {
    for (let i = 0; i < text.length; i++) bytes[offset + i] = text.charCodeAt(i);
  };

  // MP Floating Pointer Structure.
  ascii(MPF_SIGNATURE_OFF, MPF_SIGNATURE);
  view.setUint32(MPF_PHYSADDR_OFF, configTable, true);
  bytes[MPF_LENGTH_OFF] = MPF_SIZE / 16;
  bytes[MPF_SPEC_REV_OFF] = 4;
  bytes[MPF_FEATURE1_OFF] = 0; // a configuration table is present (no default configuration)
  // IMCRP = 0: virtual wire mode. There is no IMCR (port 0x22/0x23) in a KVM
  // guest; the 8259's output reaches the BSP through LINT0 (ExtINT entry below).
  bytes[MPF_FEATURE2_OFF] = 0;
  fillChecksum(bytes, 0, MPF_SIZE, MPF_CHECKSUM_OFF);

  // Base table entries, after the header.
  const t = MPF_SIZE; // offset of the config table in `bytes`
  let p = t + MPC_HEADER_SIZE;
  let entries = 0;

  for (let cpu = 0; cpu < cpus; cpu++) {
    bytes[p + CPU_TYPE_OFF] = MP_ENTRY_PROCESSOR;
    bytes[p + CPU_LAPIC_ID_OFF] = cpu;
    bytes[p + CPU_LAPIC_VERSION_OFF] = LAPIC_VERSION;
    bytes[p + CPU_FLAGS_OFF] = CPU_FLAG_EN | (cpu === 0 ? CPU_FLAG_BP : 0);
    view.setUint32(p + CPU_SIGNATURE_OFF, cpuSignature, true);
    view.setUint32(p + CPU_FEATURE_FLAGS_OFF, cpuFeatures, true);
    p += MP_PROCESSOR_SIZE;
    entries++;
  }

  const isaBusId = 0;
  bytes[p + BUS_TYPE_OFF] = MP_ENTRY_BUS;
  bytes[p + BUS_ID_OFF] = isaBusId;
  ascii(p + BUS_TYPE_STRING_OFF, 'ISA   ');
  p += MP_BUS_SIZE;
  entries++;

  bytes[p + IOAPIC_TYPE_OFF] = MP_ENTRY_IOAPIC;
  bytes[p + IOAPIC_ID_OFF] = ioapicId;
  bytes[p + IOAPIC_VERSION_OFF] = IOAPIC_VERSION;
  bytes[p + IOAPIC_FLAGS_OFF] = IOAPIC_FLAG_EN;
  view.setUint32(p + IOAPIC_ADDR_OFF, ioapicAddress, true);
  p += MP_IOAPIC_SIZE;
  entries++;

  const interrupt = (entryType: number, intType: number, srcIrq: number, destId: number, destPin: number) => {
    bytes[p + INT_TYPE_OFF] = entryType;
    bytes[p + INT_INTERRUPT_TYPE_OFF] = intType;
    view.setUint16(p + INT_FLAGS_OFF, MP_INT_FLAGS_CONFORMS, true);
    bytes[p + INT_SOURCE_BUS_OFF] = isaBusId;
    bytes[p + INT_SOURCE_IRQ_OFF] = srcIrq;
    bytes[p + INT_DEST_ID_OFF] = destId;
    bytes[p + INT_DEST_PIN_OFF] = destPin;
    p += MP_INTERRUPT_SIZE;
    entries++;
  };

  // ISA IRQ n → I/O APIC pin (see isaInterruptPin for why IRQ 0 → INTIN0).
  for (let irq = 0; irq < ISA_IRQS; irq++) {
    const pin = isaInterruptPin(irq, timerPin);
    if (pin !== undefined) interrupt(MP_ENTRY_IO_INTERRUPT, MP_INT_TYPE_INT, irq, ioapicId, pin);
  }

  // Virtual wire mode: the 8259 INTR goes to LINT0 as ExtINT and NMI to LINT1,
  // on every local APIC (spec 3.6.2.2, virtual wire mode; KVM hands 8259
  // interrupts to a local APIC whose LVT LINT0 is unmasked in ExtINT mode).
  interrupt(MP_ENTRY_LOCAL_INTERRUPT, MP_INT_TYPE_EXTINT, 0, MP_ALL_LOCAL_APICS, 0);
  interrupt(MP_ENTRY_LOCAL_INTERRUPT, MP_INT_TYPE_NMI, 0, MP_ALL_LOCAL_APICS, 1);

  if (p !== size) throw new Error(`MP table: internal size mismatch (${p} != ${size})`);

  // MP Configuration Table header, last: it needs the entry count and checksum.
  ascii(t + MPC_SIGNATURE_OFF, MPC_SIGNATURE);
  view.setUint16(t + MPC_BASE_LENGTH_OFF, tableLength, true);
  bytes[t + MPC_SPEC_REV_OFF] = 4;
  ascii(t + MPC_OEM_ID_OFF, MPC_OEM_ID);
  ascii(t + MPC_PRODUCT_ID_OFF, MPC_PRODUCT_ID);
  view.setUint32(t + MPC_OEM_TABLE_PTR_OFF, 0, true);
  view.setUint16(t + MPC_OEM_TABLE_SIZE_OFF, 0, true);
  view.setUint16(t + MPC_ENTRY_COUNT_OFF, entries, true);
  view.setUint32(t + MPC_LAPIC_ADDR_OFF, lapicAddress, true);
  view.setUint16(t + MPC_EXT_LENGTH_OFF, 0, true);
  bytes[t + MPC_EXT_CHECKSUM_OFF] = 0;
  fillChecksum(bytes, t, t + tableLength, t + MPC_CHECKSUM_OFF);

  memory.write(base, bytes);
  return { floatingPointer: base, configTable, size };
}
