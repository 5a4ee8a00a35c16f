// Minimal ACPI tables (ACPI Specification 6.4, chapter 5) so that a Linux guest
// booted without firmware can power the VM off: `poweroff` ends in the kernel's
// acpi_power_off(), which writes SLP_TYP(S5) | SLP_EN to the PM1a control
// register (ACPI 6.4 §16.1.7 "Transitioning from the Working to the Soft Off
// State"); the AcpiPowerManagement device (src/devices/acpi-pm.ts) sees that
// write and tells the VMM. Without ACPI, Linux's power-off just halts the CPU
// with interrupts disabled and the VMM never learns.
//
// The tables also describe the CPUs and the I/O APIC (MADT); with them Linux
// prefers ACPI over the MP table, so the MADT describes exactly the wiring the
// MP table (mptable.ts) does.
//
// Layout written at `base` (default 0xE0000), each table 16-byte aligned
// (the FACS 64-byte aligned):
//
//   RSDP  (§5.2.5)    36 bytes, revision 2: RsdtAddress and XsdtAddress
//   XSDT  (§5.2.8)    → FADT, MADT (64-bit entries)
//   RSDT  (§5.2.7)    → FADT, MADT (32-bit entries, for ACPI 1.0 parsers)
//   FACS  (§5.2.10)   64 bytes, no checksum
//   FADT  (§5.2.9)    revision 6, 276 bytes: → FACS, DSDT; PM1a event/control ports; SCI 9
//   DSDT  (§5.2.11.1) AML: Name (_S5, Package () { S5_SLEEP_TYPE, S5_SLEEP_TYPE, 0, 0 }),
//                     and with the `pci` option Scope (\_SB) { Device (PCI0) { … } } (see pciHostBridgeAml)
//   MADT  (§5.2.12)   local APIC per CPU, the I/O APIC, the SCI's interrupt source override
//
// Where a guest finds the RSDP (§5.2.5.1): on a 16-byte boundary in the BIOS
// read-only area 0xE0000–0xFFFFF (or the first KiB of the EBDA); Linux scans
// both, unless the loader passes boot_params.acpi_rsdp_addr (boot-params.ts).
// The e820 map (e820.ts) reports 0x9fc00–0x100000 reserved, so the tables are
// not handed out as RAM.
import type { GuestMemory } from '../../memory/guest-memory';
import { device, dwordMemory, eisaId, io, name, pkg, qwordMemory, resourceTemplate, scope, wordBusNumber, wordIo } from './aml';
import { DEFAULT_IOAPIC_ADDRESS, DEFAULT_LAPIC_ADDRESS, MPTABLE_MAX_CPUS, isaInterruptPin } from './mptable';

// --- Platform constants the tables describe (and the PM device implements) --

/** PM1a_EVT_BLK (§4.8.4.1): PM1 status (2 bytes) + PM1 enable (2 bytes) at this I/O port. */
export const PM1A_EVT_PORT = 0x600;
/** PM1_EVT_LEN: bytes of the PM1a event block (status + enable, 16 bits each). */
export const PM1_EVT_LEN = 4;
/** PM1a_CNT_BLK (§4.8.4.2): PM1 control register (2 bytes) at this I/O port. */
export const PM1A_CNT_PORT = PM1A_EVT_PORT + PM1_EVT_LEN;
/** PM1_CNT_LEN: bytes of the PM1a control block. */
export const PM1_CNT_LEN = 2;
/**
 * The PM1a event and control blocks are adjacent: one device can claim
 * [PM1A_EVT_PORT, PM1A_EVT_PORT + ACPI_PM_IO_LENGTH).
 */
export const ACPI_PM_IO_LENGTH = PM1_EVT_LEN + PM1_CNT_LEN;
/** SCI_INT: the System Control Interrupt is ISA IRQ 9 / GSI 9 (as on PIIX4/ICH PCs). */
export const SCI_IRQ = 9;
/**
 * SLP_TYP value for the soft-off state S5: the \_S5 object in the DSDT hands
 * it to OSPM (§7.4.2 "\_Sx (System States)"), which writes it to PM1_CNT.SLP_TYP
 * (3 bits, §4.8.4.2.1) together with SLP_EN. The value is platform-chosen.
 */
export const S5_SLEEP_TYPE = 5;
/** CMOS RAM index of the RTC century byte (cmos-rtc.ts, register 0x32), for FADT.CENTURY. */
export const RTC_CENTURY_INDEX = 0x32;

/** Default location: the start of the BIOS area that §5.2.5.1 says OSPM searches for the RSDP. */
export const DEFAULT_ACPI_BASE = 0xe0000;
/** The tables must end at or below 1 MiB (the end of the BIOS area). */
export const ACPI_TABLES_LIMIT = 0x100000;

/** OEMID (6 bytes, space padded) of the RSDP and every table header. */
export const ACPI_OEM_ID = 'TSKVM ';
/** OEM Table ID (8 bytes) of every table header. */
export const ACPI_OEM_TABLE_ID = 'TSKVM   ';
/** Creator ID (4 bytes): vendor id of the tool that made the tables. */
export const ACPI_CREATOR_ID = 'TSKV';

// --- Common structures -------------------------------------------------------

// Root System Description Pointer (§5.2.5.3, Table 5.3).
export const RSDP_SIGNATURE = 'RSD PTR ';
export const RSDP_SIZE = 36; // Length field value for revision 2
const RSDP_V1_SIZE = 20; // the ACPI 1.0 part covered by Checksum
const RSDP_CHECKSUM_OFF = 8; // Checksum: bytes 0..19 sum to 0
const RSDP_OEMID_OFF = 9; // OEMID, 6 bytes
const RSDP_REVISION_OFF = 15; // Revision: 2 for ACPI 2.0 and later
const RSDP_RSDT_OFF = 16; // RsdtAddress, 4 bytes
const RSDP_LENGTH_OFF = 20; // Length, 4 bytes: 36
const RSDP_XSDT_OFF = 24; // XsdtAddress, 8 bytes
const RSDP_EXT_CHECKSUM_OFF = 32; // Extended Checksum: all 36 bytes sum to 0
// 33..35 reserved

// System Description Table Header (§5.2.6, Table 5.4), 36 bytes.
export const ACPI_HEADER_SIZE = 36;
const HDR_LENGTH_OFF = 4; // Length, 4 bytes: whole table, header included
const HDR_REVISION_OFF = 8; // Revision, 1 byte
const HDR_CHECKSUM_OFF = 9; // Checksum: the whole table sums to 0
const HDR_OEMID_OFF = 10; // OEMID, 6 bytes
const HDR_OEM_TABLE_ID_OFF = 16; // OEM Table ID, 8 bytes
const HDR_OEM_REVISION_OFF = 24; // OEM Revision, 4 bytes
const HDR_CREATOR_ID_OFF = 28; // Creator ID, 4 bytes
const HDR_CREATOR_REVISION_OFF = 32; // Creator Revision, 4 bytes

// Generic Address Structure (§5.2.3.2, Table 5.1), 12 bytes: Address Space ID,
// Register Bit Width, Register Bit Offset, Access Size, Address (8).
const GAS_SPACE_SYSTEM_IO = 1; // Address Space ID 1: System I/O
const GAS_ACCESS_WORD = 2; // Access Size 2: 16-bit (word) access

// --- Table revisions ---------------------------------------------------------
const RSDT_REVISION = 1; // §5.2.7, Table 5.5
const XSDT_REVISION = 1; // §5.2.8, Table 5.6
const FADT_REVISION = 6; // §5.2.9, Table 5.9: "Major Version Number", 6 for ACPI 6.x
const FADT_MINOR_REVISION = 4; // FADT Minor Version (offset 131): ACPI 6.4
const DSDT_REVISION = 2; // §5.2.11.1: revision ≥ 2 means 64-bit AML integers
const MADT_REVISION = 5; // §5.2.12, Table 5.43: 5 for ACPI 6.4
const FACS_VERSION = 2; // §5.2.10, Table 5.14: "Version" of this FACS layout

// --- FADT (§5.2.9, Table 5.9) -----------------------------------------------
export const FADT_SIGNATURE = 'FACP';
export const FADT_SIZE = 276;
const FADT_FIRMWARE_CTRL_OFF = 36; // FIRMWARE_CTRL, 4 bytes: FACS address
const FADT_DSDT_OFF = 40; // DSDT, 4 bytes
// 44: reserved (ACPI 1.0 INT_MODEL), 0
const FADT_PM_PROFILE_OFF = 45; // Preferred_PM_Profile: 0 = Unspecified
const FADT_SCI_INT_OFF = 46; // SCI_INT, 2 bytes
const FADT_SMI_CMD_OFF = 48; // SMI_CMD, 4 bytes
// 52 ACPI_ENABLE, 53 ACPI_DISABLE, 54 S4BIOS_REQ, 55 PSTATE_CNT: 0 (no SMI_CMD port)
const FADT_PM1A_EVT_BLK_OFF = 56; // PM1a_EVT_BLK, 4 bytes
// 60 PM1b_EVT_BLK: 0 (no PM1b block)
const FADT_PM1A_CNT_BLK_OFF = 64; // PM1a_CNT_BLK, 4 bytes
// 68 PM1b_CNT_BLK, 72 PM2_CNT_BLK: 0
const FADT_PM_TMR_BLK_OFF = 76; // PM_TMR_BLK, 4 bytes: 0 = no PM timer
// 80 GPE0_BLK, 84 GPE1_BLK: 0 (no GPE blocks)
const FADT_PM1_EVT_LEN_OFF = 88; // PM1_EVT_LEN, 1 byte
const FADT_PM1_CNT_LEN_OFF = 89; // PM1_CNT_LEN, 1 byte
// 90 PM2_CNT_LEN: 0
const FADT_PM_TMR_LEN_OFF = 91; // PM_TMR_LEN: 0 (no PM timer)
// 92 GPE0_BLK_LEN, 93 GPE1_BLK_LEN, 94 GPE1_BASE, 95 CST_CNT: 0
const FADT_P_LVL2_LAT_OFF = 96; // P_LVL2_LAT, 2 bytes: > 100 = C2 not supported
const FADT_P_LVL3_LAT_OFF = 98; // P_LVL3_LAT, 2 bytes: > 1000 = C3 not supported
// 100 FLUSH_SIZE, 102 FLUSH_STRIDE (ignored with WBINVD), 104 DUTY_OFFSET, 105 DUTY_WIDTH,
// 106 DAY_ALRM, 107 MON_ALRM: 0 (no day/month alarm)
const FADT_CENTURY_OFF = 108; // CENTURY: CMOS RAM index of the century byte (0 = none)
const FADT_IAPC_BOOT_ARCH_OFF = 109; // IAPC_BOOT_ARCH, 2 bytes (§5.2.9.3, Table 5.11)
// 111: reserved
const FADT_FLAGS_OFF = 112; // Flags, 4 bytes (Table 5.10)
// 116 RESET_REG (GAS), 128 RESET_VALUE: 0 (RESET_REG_SUP is clear)
// 129 ARM_BOOT_ARCH, 2 bytes: 0
const FADT_MINOR_VERSION_OFF = 131; // FADT Minor Version
const FADT_X_FIRMWARE_CTRL_OFF = 132; // X_FIRMWARE_CTRL, 8 bytes
const FADT_X_DSDT_OFF = 140; // X_DSDT, 8 bytes
const FADT_X_PM1A_EVT_BLK_OFF = 148; // X_PM1a_EVT_BLK, GAS
// 160 X_PM1b_EVT_BLK
const FADT_X_PM1A_CNT_BLK_OFF = 172; // X_PM1a_CNT_BLK, GAS
// 184 X_PM1b_CNT_BLK, 196 X_PM2_CNT_BLK, 208 X_PM_TMR_BLK, 220 X_GPE0_BLK, 232 X_GPE1_BLK,
// 244 SLEEP_CONTROL_REG, 256 SLEEP_STATUS_REG (HW-reduced only), 268 Hypervisor Vendor Identity (8): 0

// IAPC_BOOT_ARCH bits (§5.2.9.3, Table 5.11).
/** LEGACY_DEVICES: user-visible ISA/LPC devices exist (COM1, the RTC, the 8042). */
export const IAPC_LEGACY_DEVICES = 1 << 0;
/** 8042: an 8042-compatible keyboard controller is present (i8042.ts at 0x60/0x64). */
export const IAPC_8042 = 1 << 1;
/** VGA Not Present: do not probe VGA hardware (tskvm has none). */
export const IAPC_VGA_NOT_PRESENT = 1 << 2;
/** MSI Not Supported: left clear. */
export const IAPC_MSI_NOT_SUPPORTED = 1 << 3;

// FADT Flags (§5.2.9, Table 5.10).
/** WBINVD: the processor implements WBINVD correctly (always true for x86-64). */
export const FADT_F_WBINVD = 1 << 0;
/** PROC_C1: C1 (HLT) works on all processors. */
export const FADT_F_PROC_C1 = 1 << 2;
/** PWR_BUTTON: set = power button is a control method device or absent; clear = fixed feature. */
export const FADT_F_PWR_BUTTON = 1 << 4;
/** SLP_BUTTON: set = sleep button is a control method device or absent; clear = fixed feature. */
export const FADT_F_SLP_BUTTON = 1 << 5;
/** RESET_REG_SUP: the RESET_REG field describes a reset register. Left clear. */
export const FADT_F_RESET_REG_SUP = 1 << 10;

// --- FACS (§5.2.10, Table 5.14) ---------------------------------------------
export const FACS_SIGNATURE = 'FACS';
export const FACS_SIZE = 64;
/** The FACS must be 64-byte aligned (§5.2.10). */
export const FACS_ALIGNMENT = 64;
const FACS_LENGTH_OFF = 4; // Length, 4 bytes: 64
// 8 Hardware Signature, 12 Firmware Waking Vector, 16 Global Lock, 20 Flags,
// 24 X_Firmware_Waking_Vector: 0 (no S4BIOS, no 64-bit wake; OSPM owns the rest)
const FACS_VERSION_OFF = 32; // Version, 1 byte
// 36 OSPM Flags, 40..63 reserved: 0

// --- DSDT (§5.2.11.1); its AML is built with aml.ts (chapter 20) ------------
export const DSDT_SIGNATURE = 'DSDT';

// --- MADT (§5.2.12, Table 5.43) ---------------------------------------------
export const MADT_SIGNATURE = 'APIC';
const MADT_LAPIC_ADDRESS_OFF = 36; // Local Interrupt Controller Address, 4 bytes
const MADT_FLAGS_OFF = 40; // Flags, 4 bytes (Table 5.44)
export const MADT_HEADER_SIZE = 44; // entries start here
/** MADT flag PCAT_COMPAT: the system also has dual 8259s (which KVM's irqchip provides). */
export const MADT_PCAT_COMPAT = 1 << 0;

// Interrupt Controller Structure types (Table 5.45) and sizes.
export const MADT_TYPE_LOCAL_APIC = 0; // §5.2.12.2, Table 5.46
export const MADT_TYPE_IO_APIC = 1; // §5.2.12.3, Table 5.48
export const MADT_TYPE_INTERRUPT_OVERRIDE = 2; // §5.2.12.5, Table 5.49
export const MADT_TYPE_LOCAL_APIC_NMI = 4; // §5.2.12.7, Table 5.52
export const MADT_LOCAL_APIC_SIZE = 8;
export const MADT_IO_APIC_SIZE = 12;
export const MADT_INTERRUPT_OVERRIDE_SIZE = 10;
export const MADT_LOCAL_APIC_NMI_SIZE = 6;
/** Processor Local APIC flag Enabled (Table 5.47). */
export const MADT_LAPIC_ENABLED = 1 << 0;
/** MPS INTI flags (Table 5.50): polarity bits 1:0 (01 active high, 11 active low), trigger bits 3:2 (01 edge, 11 level). */
export const MPS_INTI_CONFORMS = 0;
export const MPS_INTI_ACTIVE_HIGH = 0b01;
export const MPS_INTI_ACTIVE_LOW = 0b11;
export const MPS_INTI_EDGE = 0b01 << 2;
export const MPS_INTI_LEVEL = 0b11 << 2;
/** ACPI Processor UID 0xFF in a Local APIC NMI structure: all processors (§5.2.12.7). */
const MADT_ALL_PROCESSORS = 0xff;

export const XSDT_SIGNATURE = 'XSDT';
export const RSDT_SIGNATURE = 'RSDT';

export interface AcpiTablesOptions {
  /** Number of vCPUs (1..254); their local APIC ids and ACPI processor UIDs are 0..cpus-1. */
  cpus: number;
  /** GPA of the RSDP (16-byte aligned); the other tables follow it. Default 0xE0000. */
  base?: number;
  /** Default 0xfec00000. */
  ioapicAddress?: number;
  /** Default 0xfee00000. */
  lapicAddress?: number;
  /** I/O APIC id. Default `cpus` (the first id after the local APICs), as in the MP table. */
  ioapicId?: number;
  /**
   * I/O APIC pin of ISA IRQ 0, as for the MP table (mptable.ts, isaInterruptPin):
   * 0 (default) for KVM's default GSI routing; 2 adds the QEMU-style override
   * IRQ 0 → GSI 2 for a VMM that installs that routing.
   */
  timerPin?: 0 | 2;
  /**
   * Describe the PCI host bridge (src/pci/host-bridge.ts) to the guest: the
   * DSDT then holds Device (\_SB.PCI0) with its resource windows and the INTx
   * routing (see pciHostBridgeAml). Without it Linux with ACPI enabled never
   * scans the PCI bus.
   */
  pci?: AcpiPciOptions;
}

/**
 * The PCI root bridge as the DSDT describes it: the windows handed to
 * PciHostBridge.assignResources and the slots in use on bus 0.
 */
export interface AcpiPciOptions {
  /** The 32-bit memory window [mmioBase, mmioBase + mmioSize): the root bridge's DWordMemory window (below 4 GiB). */
  mmioBase: number | bigint;
  mmioSize: number | bigint;
  /**
   * The I/O window assignResources uses. It must lie inside the I/O windows the
   * DSDT describes, which cover all ports but 0xCF8–0xCFF (see pciHostBridgeAml);
   * it is only checked, not described separately.
   */
  ioBase: number;
  ioSize: number;
  /** Optional 64-bit memory window (at or above 4 GiB): a QWordMemory window. */
  mmio64Base?: number | bigint;
  mmio64Size?: number | bigint;
  /** Devices on bus 0, slot 0 (the host bridge function) included: 1..32. _PRT covers slots 1..slots-1. */
  slots: number;
  /** First of the four GSIs the INTx lines are routed to: 16 (default) to 20, so that all four are I/O APIC pins 16–23. */
  irqBase?: number;
}

export interface AcpiTablesLocation {
  /** GPA of the RSDP (what boot_params.acpi_rsdp_addr should hold). */
  rsdp: number;
  /** Bytes written from `rsdp` to the end of the last table. */
  size: number;
}

/** Where each table lands, relative to `base`. */
interface Layout {
  xsdt: number;
  rsdt: number;
  facs: number;
  fadt: number;
  dsdt: number;
  madt: number;
  size: number;
}

const alignUp = (n: number, a: number) => Math.ceil(n / a) * a;

/** The DSDT's AML: Name (_S5, Package () { S5, S5, 0, 0 }) (§7.4.2: SLP_TYPa, SLP_TYPb, reserved, reserved). */
export function s5Aml(sleepType = S5_SLEEP_TYPE): Uint8Array {
  // §20.2.5.1 DefName, §20.2.5.4 DefPackage; "_S5" is the NameSeg "_S5_" (§20.2.2).
  return name('_S5_', pkg([sleepType, sleepType, 0, 0]));
}

// --- PCI root bridge (§6.1, §6.2, §6.5; PCI Firmware Specification 3.x) -----
//
// The host bridge (host-bridge.ts) is a conventional PCI root bridge reached
// through configuration mechanism #1, so its _HID is PNP0A03 ("PCI Bus").
// PNP0A08 (PCI Express root bridge, with _CID PNP0A03) would tell the OS to
// look for ECAM through an MCFG table, which tskvm does not provide.
//
//   Scope (\_SB) {
//     Device (PCI0) {
//       Name (_HID, EisaId ("PNP0A03"))  // §6.1.5
//       Name (_UID, 0)                   // §6.1.12
//       Name (_SEG, 0)                   // §6.5.6: PCI segment group 0
//       Name (_BBN, 0)                   // §6.5.5: base bus number 0
//       Name (_CRS, ResourceTemplate () { … })  // §6.2.2
//       Name (_PRT, Package () { … })    // §6.2.13
//     }
//   }
//
// No _ADR: §6.1 ("Device Identification Objects") has a device object carry
// either _HID or _ADR, not both; a root bridge is found by its _HID, and _ADR
// only addresses devices on a parent bus (§6.1.1). (iasl warns about both.)
//
// _CRS (the windows a root bridge decodes; producers, fixed ranges):
//   WordBusNumber 0–0          only bus 0 exists (no PCI-to-PCI bridges), and
//                              configuration cycles to other buses master-abort
//   IO 0xCF8, length 8         the bridge's own CONFIG_ADDRESS/CONFIG_DATA
//                              ports, consumed (not a window)
//   WordIO 0x0000–0x0CF7       the rest of the 16-bit port space, so legacy
//   WordIO 0x0D00–0xFFFF       devices (COM1, the PM block at 0x600, …) sit in
//                              a root window as on a PC, and the I/O BARs
//                              assignResources gave out stay where they are
//   DWordMemory [mmioBase, mmioBase + mmioSize)   non-cacheable, read/write
//   QWordMemory [mmio64Base, …)                   only with mmio64Base/mmio64Size
// Linux's pcibios_resource_survey() keeps the BARs assignResources programmed
// when they lie in these windows, and assigns the others from them.
//
// _PRT (INTx routing, §6.2.13): for every slot 1..slots-1 (slot 0 is the host
// bridge function, which has no interrupt) and pin INTA..INTD (Pin 0..3) one
// entry Package () { (slot << 16) | 0xFFFF, pin, 0, gsi }: Address is the
// device in the high word with function 0xFFFF meaning "any function"; Source 0
// (not a link device) means Source Index is the GSI the pin is hard-wired to.
// The four INTx lines of the bus go to GSIs irqBase..irqBase+3 with the usual
// rotation gsi = irqBase + ((slot + pin) mod 4) (pciIntxGsi): single-function
// devices use only INTA, so without the rotation all of them would share one
// GSI, while with it consecutive slots get different ones — the same swizzle
// the PCI-to-PCI Bridge Architecture Specification prescribes for a bridge's
// secondary bus, and the way boards commonly wire their slots. The default
// irqBase 16 puts them on I/O APIC pins 16–19: KVM's in-kernel I/O APIC has 24
// pins (KVM_IOAPIC_NUM_PINS) and pins 0–15 carry the ISA IRQs (see the MADT),
// so 16–23 are free. The MADT needs no entry for them: its I/O APIC structure
// (GSI base 0) already covers GSIs 0–23, and Interrupt Source Overrides only
// describe ISA IRQs (bus 0 = ISA, §5.2.12.5).
//
// Trigger and polarity — for whoever wires the INTx of a PCI device (virtio):
// a _PRT entry with Source 0 carries no flags, and OSPM treats the GSI as a
// PCI interrupt: level triggered, active low, shareable (PCI INTx# are
// open-drain, active-low, level signals; Linux's acpi_pci_irq_enable programs
// the I/O APIC entry ACPI_LEVEL_SENSITIVE / ACPI_ACTIVE_LOW in this case). The
// VMM nevertheless drives the line as *active high*: KVM_IRQ_LINE (or an
// irqfd with a resample fd) with level 1 means "asserted", level 0 "deasserted".
// KVM's I/O APIC does not look at the polarity bit of the redirection entry
// (ioapic_set_irq treats a non-zero line level as asserted), so the guest's
// "active low" programming and the VMM's "1 = asserted" agree in effect. Do NOT
// invert the level to follow the ACPI polarity: a line held at 1 while idle
// would be a permanently pending level interrupt (an interrupt storm). Being
// level triggered, the line must stay at 1 until the guest has acknowledged
// the cause (virtio: read the ISR status register), then go to 0; KVM
// re-delivers after EOI while it stays at 1.

/** Default first GSI of the PCI INTx lines (I/O APIC pin 16, the first above the ISA IRQs). */
export const PCI_INTX_DEFAULT_GSI_BASE = 16;
/** INTA..INTD. */
export const PCI_INTX_PINS = 4;
/** Pins of KVM's in-kernel I/O APIC (KVM_IOAPIC_NUM_PINS): GSIs 0–23 with the MADT's GSI base 0. */
export const KVM_IOAPIC_PINS = 24;
/** ISA IRQs 0–15 occupy I/O APIC pins 0–15. */
const ISA_IRQS = 16;
/** PCI configuration mechanism #1 ports (host-bridge.ts: PCI_CONFIG_ADDRESS_PORT, PCI_CONFIG_PORT_COUNT). */
const PCI_CONFIG_PORT = 0xcf8;
const PCI_CONFIG_PORT_COUNT = 8;
/** PCI slots on a bus (host-bridge.ts: PCI_SLOT_COUNT). */
const PCI_SLOTS = 32;
/** _PRT Address "all functions" (§6.2.13: function number 0xFFFF). */
const PRT_ALL_FUNCTIONS = 0xffff;

/**
 * The GSI the DSDT's _PRT routes INTx pin `pin` (0 = INTA … 3 = INTD) of the
 * device in `slot` on bus 0 to: irqBase + ((slot + pin) mod 4). A VMM raises
 * this GSI (level 1 = asserted, see above) for the device's interrupt.
 */
export function pciIntxGsi(slot: number, pin: number, irqBase = PCI_INTX_DEFAULT_GSI_BASE): number {
  return irqBase + ((slot + pin) % PCI_INTX_PINS);
}

function toBig(what: string, value: number | bigint): bigint {
  if (typeof value === 'number' && !Number.isSafeInteger(value))
    throw new RangeError(`ACPI tables: pci.${what} must be an integer, got ${value}`);
  return BigInt(value);
}

/** Checks the pci option; returns irqBase. */
function checkPci(pci: AcpiPciOptions): number {
  const mmioBase = toBig('mmioBase', pci.mmioBase);
  const mmioSize = toBig('mmioSize', pci.mmioSize);
  if (mmioBase < 0n || mmioSize < 1n || mmioBase + mmioSize > 1n << 32n)
    throw new RangeError(
      `ACPI tables: pci.mmioBase/mmioSize must describe a non-empty window below 4 GiB, got base 0x${mmioBase.toString(16)} size 0x${mmioSize.toString(16)}`,
    );
  if ((pci.mmio64Base === undefined) !== (pci.mmio64Size === undefined))
    throw new RangeError('ACPI tables: pci.mmio64Base and pci.mmio64Size go together');
  if (pci.mmio64Base !== undefined && pci.mmio64Size !== undefined) {
    const base = toBig('mmio64Base', pci.mmio64Base);
    const size = toBig('mmio64Size', pci.mmio64Size);
    if (base < 1n << 32n || size < 1n || base + size > 1n << 64n)
      throw new RangeError(
        `ACPI tables: pci.mmio64Base/mmio64Size must describe a non-empty window at or above 4 GiB, got base 0x${base.toString(16)} size 0x${size.toString(16)}`,
      );
  }
  const { ioBase, ioSize } = pci;
  if (!Number.isInteger(ioBase) || !Number.isInteger(ioSize) || ioBase < 0 || ioSize < 0 || ioBase + ioSize > 0x10000)
    throw new RangeError(`ACPI tables: pci.ioBase/ioSize must lie in the 16-bit port space, got base ${ioBase} size ${ioSize}`);
  if (ioSize > 0 && ioBase < PCI_CONFIG_PORT + PCI_CONFIG_PORT_COUNT && PCI_CONFIG_PORT < ioBase + ioSize)
    throw new RangeError(`ACPI tables: pci I/O window [${hex(ioBase)}, ${hex(ioBase + ioSize)}) overlaps the configuration ports 0xcf8-0xcff`);
  if (!Number.isInteger(pci.slots) || pci.slots < 1 || pci.slots > PCI_SLOTS)
    throw new RangeError(`ACPI tables: pci.slots must be an integer from 1 to ${PCI_SLOTS}, got ${pci.slots}`);
  const irqBase = pci.irqBase ?? PCI_INTX_DEFAULT_GSI_BASE;
  if (!Number.isInteger(irqBase) || irqBase < ISA_IRQS || irqBase + PCI_INTX_PINS > KVM_IOAPIC_PINS)
    throw new RangeError(
      `ACPI tables: pci.irqBase must be an integer from ${ISA_IRQS} to ${KVM_IOAPIC_PINS - PCI_INTX_PINS} (GSIs above the ISA IRQs, on the I/O APIC's ${KVM_IOAPIC_PINS} pins), got ${irqBase}`,
    );
  return irqBase;
}

/** Scope (\_SB) { Device (PCI0) { … } } for `pci` (see the comment above). Throws RangeError for bad options. */
export function pciHostBridgeAml(pci: AcpiPciOptions): Uint8Array {
  const irqBase = checkPci(pci);
  const mmioBase = BigInt(pci.mmioBase);
  const windows = [
    wordBusNumber({ min: 0, max: 0 }),
    io({ min: PCI_CONFIG_PORT, max: PCI_CONFIG_PORT, alignment: 1, length: PCI_CONFIG_PORT_COUNT }),
    wordIo({ min: 0x0000, max: PCI_CONFIG_PORT - 1 }),
    wordIo({ min: PCI_CONFIG_PORT + PCI_CONFIG_PORT_COUNT, max: 0xffff }),
    dwordMemory({ min: mmioBase, max: mmioBase + BigInt(pci.mmioSize) - 1n, cacheability: 'nonCacheable', readWrite: true }),
  ];
  if (pci.mmio64Base !== undefined && pci.mmio64Size !== undefined) {
    const base = BigInt(pci.mmio64Base);
    windows.push(qwordMemory({ min: base, max: base + BigInt(pci.mmio64Size) - 1n, cacheability: 'nonCacheable', readWrite: true }));
  }
  const routes: Uint8Array[] = [];
  for (let slot = 1; slot < pci.slots; slot++)
    for (let pin = 0; pin < PCI_INTX_PINS; pin++)
      routes.push(pkg([(slot << 16) | PRT_ALL_FUNCTIONS, pin, 0, pciIntxGsi(slot, pin, irqBase)]));
  return scope('\\_SB_', [
    device('PCI0', [
      name('_HID', eisaId('PNP0A03')),
      name('_UID', 0),
      name('_SEG', 0),
      name('_BBN', 0),
      name('_CRS', resourceTemplate(windows)),
      name('_PRT', pkg(routes)),
    ]),
  ]);
}

/** The DSDT's AML (its TermList, §5.2.11.1): \_S5, then the PCI root bridge when `pci` is given. */
export function dsdtAml(pci?: AcpiPciOptions): Uint8Array {
  const s5 = s5Aml();
  if (!pci) return s5;
  const bridge = pciHostBridgeAml(pci);
  const out = new Uint8Array(s5.length + bridge.length);
  out.set(s5);
  out.set(bridge, s5.length);
  return out;
}

function madtSize(cpus: number, timerPin: 0 | 2): number {
  const overrides = 1 + (timerPin === 2 ? 1 : 0);
  return (
    MADT_HEADER_SIZE +
    cpus * MADT_LOCAL_APIC_SIZE +
    MADT_IO_APIC_SIZE +
    overrides * MADT_INTERRUPT_OVERRIDE_SIZE +
    MADT_LOCAL_APIC_NMI_SIZE
  );
}

function layout(base: number, cpus: number, timerPin: 0 | 2, dsdtAmlLength: number): Layout {
  // Offsets are chosen on absolute addresses so that the FACS alignment holds for any base.
  let p = base + RSDP_SIZE;
  const place = (size: number, align = 16): number => {
    const at = alignUp(p, align);
    p = at + size;
    return at - base;
  };
  const xsdt = place(ACPI_HEADER_SIZE + 2 * 8);
  const rsdt = place(ACPI_HEADER_SIZE + 2 * 4);
  const facs = place(FACS_SIZE, FACS_ALIGNMENT);
  const fadt = place(FADT_SIZE);
  const dsdt = place(ACPI_HEADER_SIZE + dsdtAmlLength);
  const madt = place(madtSize(cpus, timerPin));
  return { xsdt, rsdt, facs, fadt, dsdt, madt, size: p - base };
}

/** Bytes `writeAcpiTables` writes for `cpus` CPUs at `base` (with the same `timerPin` and `pci` options). */
export function acpiTablesSize(cpus: number, base = DEFAULT_ACPI_BASE, timerPin: 0 | 2 = 0, pci?: AcpiPciOptions): number {
  return layout(base, cpus, timerPin, dsdtAml(pci).length).size;
}

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

function checkU32(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff)
    throw new RangeError(`ACPI tables: ${name} must be a 32-bit unsigned integer, got ${value}`);
}

/** Sets the byte at `checksumOffset` so that bytes[start, end) sum to 0 mod 256. */
function fillChecksum(bytes: Uint8Array, start: number, end: number, checksumOffset: number): void {
  bytes[checksumOffset] = 0;
  let sum = 0;
  for (let i = start; i < end; i++) sum += bytes[i];
  bytes[checksumOffset] = (256 - (sum & 0xff)) & 0xff;
}

/**
 * Writes the RSDP, XSDT, RSDT, FADT, FACS, DSDT and MADT into guest memory.
 * Throws RangeError for a CPU count outside 1..254, colliding APIC ids, bad
 * addresses, bad `pci` windows, or tables that do not fit in guest RAM below 1 MiB.
 */
export function writeAcpiTables(memory: GuestMemory, options: AcpiTablesOptions): AcpiTablesLocation {
  const { cpus } = options;
  const base = options.base ?? DEFAULT_ACPI_BASE;
  const ioapicAddress = options.ioapicAddress ?? DEFAULT_IOAPIC_ADDRESS;
  const lapicAddress = options.lapicAddress ?? DEFAULT_LAPIC_ADDRESS;
  const timerPin = options.timerPin ?? 0;

  if (!Number.isInteger(cpus) || cpus < 1 || cpus > MPTABLE_MAX_CPUS)
    throw new RangeError(`ACPI tables: cpus must be an integer from 1 to ${MPTABLE_MAX_CPUS}, got ${cpus}`);
  const ioapicId = options.ioapicId ?? cpus;
  if (!Number.isInteger(ioapicId) || ioapicId < cpus || ioapicId > 0xfe)
    throw new RangeError(`ACPI tables: ioapicId must be an integer from ${cpus} (after the local APIC ids) to 254, got ${ioapicId}`);
  checkU32('ioapicAddress', ioapicAddress);
  checkU32('lapicAddress', lapicAddress);
  if (timerPin !== 0 && timerPin !== 2) throw new RangeError(`ACPI tables: timerPin must be 0 or 2, got ${timerPin}`);
  // §5.2.5.1: the RSDP is found on a 16-byte boundary.
  if (!Number.isSafeInteger(base) || base < 0 || base % 16 !== 0)
    throw new RangeError(`ACPI tables: base must be a 16-byte aligned address, got ${base}`);

  const aml = dsdtAml(options.pci); // validates options.pci
  const at = layout(base, cpus, timerPin, aml.length);
  const { size } = at;
  if (base + size > ACPI_TABLES_LIMIT)
    throw new RangeError(
      `ACPI tables for ${cpus} CPUs need ${size} bytes at ${hex(base)}, which would end at ${hex(base + size)}, ` +
        `past ${hex(ACPI_TABLES_LIMIT)}; use a lower base`,
    );
  if (!memory.contains(base, size))
    throw new RangeError(`ACPI tables: [${hex(base)}, ${hex(base + size)}) is not inside guest RAM`);

  const bytes = new Uint8Array(size);
  const view = new DataView(bytes.buffer);
  const ascii = (offset: number, text: string) => {
    for (let i = 0; i < text.length; i++) bytes[offset + i] = text.charCodeAt(i);
  };
  const gpa = (offset: number) => base + offset;
  const u64 = (offset: number, value: number) => view.setBigUint64(offset, BigInt(value), true);
  const gas = (offset: number, port: number, bitWidth: number) => {
    bytes[offset] = GAS_SPACE_SYSTEM_IO;
    bytes[offset + 1] = bitWidth; // Register Bit Width
    bytes[offset + 2] = 0; // Register Bit Offset
    bytes[offset + 3] = GAS_ACCESS_WORD; // the PM1 registers are 16 bits wide (§4.8.4.1, §4.8.4.2)
    u64(offset + 4, port);
  };
  /** Fills a System Description Table Header; the checksum is computed at the end. */
  const header = (offset: number, signature: string, length: number, revision: number) => {
    ascii(offset, signature);
    view.setUint32(offset + HDR_LENGTH_OFF, length, true);
    bytes[offset + HDR_REVISION_OFF] = revision;
    ascii(offset + HDR_OEMID_OFF, ACPI_OEM_ID);
    ascii(offset + HDR_OEM_TABLE_ID_OFF, ACPI_OEM_TABLE_ID);
    view.setUint32(offset + HDR_OEM_REVISION_OFF, 1, true);
    ascii(offset + HDR_CREATOR_ID_OFF, ACPI_CREATOR_ID);
    view.setUint32(offset + HDR_CREATOR_REVISION_OFF, 1, true);
  };
  const sealed: { offset: number; length: number }[] = [];
  const table = (offset: number, signature: string, length: number, revision: number) => {
    header(offset, signature, length, revision);
    sealed.push({ offset, length });
  };

  // FACS: no checksum, no header other than signature and length.
  ascii(at.facs, FACS_SIGNATURE);
  view.setUint32(at.facs + FACS_LENGTH_OFF, FACS_SIZE, true);
  bytes[at.facs + FACS_VERSION_OFF] = FACS_VERSION;

  // DSDT.
  table(at.dsdt, DSDT_SIGNATURE, ACPI_HEADER_SIZE + aml.length, DSDT_REVISION);
  bytes.set(aml, at.dsdt + ACPI_HEADER_SIZE);

  // FADT.
  const f = at.fadt;
  table(f, FADT_SIGNATURE, FADT_SIZE, FADT_REVISION);
  // Both the 32-bit and the 64-bit pointers name the same FACS and DSDT: OSPM
  // uses the X_ field when it is non-zero (§5.2.9, FIRMWARE_CTRL and DSDT
  // field descriptions), ACPI 1.0 parsers the other; equal values keep both happy.
  view.setUint32(f + FADT_FIRMWARE_CTRL_OFF, gpa(at.facs), true);
  view.setUint32(f + FADT_DSDT_OFF, gpa(at.dsdt), true);
  bytes[f + FADT_PM_PROFILE_OFF] = 0; // Unspecified
  view.setUint16(f + FADT_SCI_INT_OFF, SCI_IRQ, true);
  // SMI_CMD = 0: there is no SMI command port and no ACPI_ENABLE/ACPI_DISABLE
  // handshake, so OSPM treats the machine as always in ACPI mode. §5.2.9
  // (SMI_CMD "is reserved and must be zero on system that does not support
  // System Management mode") and §4.8.3.4 (Legacy/ACPI Select: an ACPI-only
  // platform keeps PM1_CNT.SCI_EN set, §4.8.4.2.1), which the PM device does.
  // Linux: acpi_hw_get_mode() reports ACPI mode when SMI_CMD is 0, and
  // acpi_enable() then attempts no mode transition.
  view.setUint32(f + FADT_SMI_CMD_OFF, 0, true);
  view.setUint32(f + FADT_PM1A_EVT_BLK_OFF, PM1A_EVT_PORT, true);
  view.setUint32(f + FADT_PM1A_CNT_BLK_OFF, PM1A_CNT_PORT, true);
  view.setUint32(f + FADT_PM_TMR_BLK_OFF, 0, true); // no ACPI PM timer: Linux uses the TSC / kvm-clock
  bytes[f + FADT_PM1_EVT_LEN_OFF] = PM1_EVT_LEN; // §5.2.9: must be ≥ 4
  bytes[f + FADT_PM1_CNT_LEN_OFF] = PM1_CNT_LEN; // §5.2.9: must be ≥ 2
  bytes[f + FADT_PM_TMR_LEN_OFF] = 0;
  view.setUint16(f + FADT_P_LVL2_LAT_OFF, 101, true); // > 100 µs: C2 not supported (§5.2.9)
  view.setUint16(f + FADT_P_LVL3_LAT_OFF, 1001, true); // > 1000 µs: C3 not supported (§5.2.9)
  bytes[f + FADT_CENTURY_OFF] = RTC_CENTURY_INDEX;
  // 8042 present (without it Linux marks the i8042 absent and skips it), no VGA; MSI is
  // allowed (bit 3 clear). LEGACY_DEVICES: COM1, the RTC and the 8042 are ISA devices.
  view.setUint16(f + FADT_IAPC_BOOT_ARCH_OFF, IAPC_LEGACY_DEVICES | IAPC_8042 | IAPC_VGA_NOT_PRESENT, true);
  // Flags. PWR_BUTTON is clear: the power button is the fixed-feature one
  // (PWRBTN_STS/PWRBTN_EN in PM1, §4.8.3.1.1.1), which the PM device implements;
  // a VMM that wires the SCI can "press" it (AcpiPowerManagement.pressPowerButton)
  // to ask the guest for an orderly shutdown. There is no sleep button
  // (SLP_BUTTON set) and no reset register (RESET_REG_SUP clear: Linux then
  // resets through the 8042, which tskvm implements).
  view.setUint32(f + FADT_FLAGS_OFF, FADT_F_WBINVD | FADT_F_PROC_C1 | FADT_F_SLP_BUTTON, true);
  bytes[f + FADT_MINOR_VERSION_OFF] = FADT_MINOR_REVISION;
  u64(f + FADT_X_FIRMWARE_CTRL_OFF, gpa(at.facs));
  u64(f + FADT_X_DSDT_OFF, gpa(at.dsdt));
  gas(f + FADT_X_PM1A_EVT_BLK_OFF, PM1A_EVT_PORT, PM1_EVT_LEN * 8);
  gas(f + FADT_X_PM1A_CNT_BLK_OFF, PM1A_CNT_PORT, PM1_CNT_LEN * 8);

  // MADT.
  const m = at.madt;
  const madtLength = madtSize(cpus, timerPin);
  table(m, MADT_SIGNATURE, madtLength, MADT_REVISION);
  view.setUint32(m + MADT_LAPIC_ADDRESS_OFF, lapicAddress, true);
  view.setUint32(m + MADT_FLAGS_OFF, MADT_PCAT_COMPAT, true);
  let p = m + MADT_HEADER_SIZE;
  for (let cpu = 0; cpu < cpus; cpu++) {
    // Processor Local APIC (Table 5.46): Type, Length, ACPI Processor UID, APIC ID, Flags (4).
    bytes[p] = MADT_TYPE_LOCAL_APIC;
    bytes[p + 1] = MADT_LOCAL_APIC_SIZE;
    bytes[p + 2] = cpu;
    bytes[p + 3] = cpu;
    view.setUint32(p + 4, MADT_LAPIC_ENABLED, true); // Online Capable (bit 1) must be 0 when Enabled
    p += MADT_LOCAL_APIC_SIZE;
  }
  // I/O APIC (Table 5.48): Type, Length, I/O APIC ID, Reserved, Address (4), GSI Base (4).
  bytes[p] = MADT_TYPE_IO_APIC;
  bytes[p + 1] = MADT_IO_APIC_SIZE;
  bytes[p + 2] = ioapicId;
  bytes[p + 3] = 0;
  view.setUint32(p + 4, ioapicAddress, true);
  // GSI 0 is INTIN0 of this I/O APIC. With KVM's 24 pins it covers GSIs 0–23,
  // the PCI INTx GSIs of the DSDT's _PRT (16–19 by default) included: they need
  // no further MADT entry (see pciHostBridgeAml).
  view.setUint32(p + 8, 0, true);
  p += MADT_IO_APIC_SIZE;

  // Interrupt Source Overrides (Table 5.49): Type, Length, Bus (0 = ISA), Source (IRQ), GSI (4), Flags (2).
  //
  // Without an override OSPM assumes ISA IRQ n is GSI n, edge/active high
  // (§5.2.12.5), and Linux builds exactly that identity map for IRQs 0–15
  // (arch/x86/kernel/acpi/boot.c, mp_config_acpi_legacy_irqs) — the wiring
  // KVM's default GSI routing has (GSI n → 8259 pin n and IOAPIC pin n, the
  // in-kernel PIT on GSI 0) and the MP table describes (mptable.ts,
  // isaInterruptPin). So: no override for IRQ 0. The IRQ 0 → GSI 2 override
  // real PCs and QEMU carry would be wrong here (nothing drives INTIN2), which
  // is why it is only written for timerPin 2, like the MP table's entry.
  const override = (irq: number, gsi: number, flags: number) => {
    bytes[p] = MADT_TYPE_INTERRUPT_OVERRIDE;
    bytes[p + 1] = MADT_INTERRUPT_OVERRIDE_SIZE;
    bytes[p + 2] = 0; // ISA
    bytes[p + 3] = irq;
    view.setUint32(p + 4, gsi, true);
    view.setUint16(p + 8, flags, true);
    p += MADT_INTERRUPT_OVERRIDE_SIZE;
  };
  const timerGsi = isaInterruptPin(0, timerPin);
  if (timerGsi !== undefined && timerGsi !== 0) override(0, timerGsi, MPS_INTI_CONFORMS);
  // The SCI is a shareable, level-triggered interrupt that OSPM takes as active
  // low unless told otherwise (§5.2.9 SCI_INT); without an override Linux
  // programs it level, active low
  // (acpi_sci_ioapic_setup). The override keeps it on GSI 9 and declares it
  // level, active high: that is how a VMM drives it (KVM_IRQ_LINE level 1 =
  // asserted; KVM's IOAPIC does not invert by polarity), and what QEMU's MADT
  // says for its SCI. An emulated IOAPIC that honoured polarity would
  // otherwise see an idle (low) line as asserted and storm.
  override(SCI_IRQ, SCI_IRQ, MPS_INTI_ACTIVE_HIGH | MPS_INTI_LEVEL);
  // Local APIC NMI (Table 5.52): Type, Length, ACPI Processor UID (0xFF = all), Flags (2), LINT#.
  // NMI arrives on LINT1 of every local APIC, as in the MP table.
  bytes[p] = MADT_TYPE_LOCAL_APIC_NMI;
  bytes[p + 1] = MADT_LOCAL_APIC_NMI_SIZE;
  bytes[p + 2] = MADT_ALL_PROCESSORS;
  view.setUint16(p + 3, MPS_INTI_CONFORMS, true);
  bytes[p + 5] = 1;
  p += MADT_LOCAL_APIC_NMI_SIZE;
  if (p !== m + madtLength) throw new Error(`ACPI tables: internal MADT size mismatch (${p - m} != ${madtLength})`);

  // XSDT and RSDT: FADT first (OSPM looks for "FACP"; order is free, §5.2.8), then MADT.
  const entries = [gpa(at.fadt), gpa(at.madt)];
  table(at.xsdt, XSDT_SIGNATURE, ACPI_HEADER_SIZE + 8 * entries.length, XSDT_REVISION);
  entries.forEach((e, i) => u64(at.xsdt + ACPI_HEADER_SIZE + 8 * i, e));
  table(at.rsdt, RSDT_SIGNATURE, ACPI_HEADER_SIZE + 4 * entries.length, RSDT_REVISION);
  entries.forEach((e, i) => view.setUint32(at.rsdt + ACPI_HEADER_SIZE + 4 * i, e, true));

  for (const t of sealed) fillChecksum(bytes, t.offset, t.offset + t.length, t.offset + HDR_CHECKSUM_OFF);

  // RSDP, at base.
  ascii(0, RSDP_SIGNATURE);
  ascii(RSDP_OEMID_OFF, ACPI_OEM_ID);
  bytes[RSDP_REVISION_OFF] = 2;
  view.setUint32(RSDP_RSDT_OFF, gpa(at.rsdt), true);
  view.setUint32(RSDP_LENGTH_OFF, RSDP_SIZE, true);
  u64(RSDP_XSDT_OFF, gpa(at.xsdt));
  fillChecksum(bytes, 0, RSDP_V1_SIZE, RSDP_CHECKSUM_OFF);
  fillChecksum(bytes, 0, RSDP_SIZE, RSDP_EXT_CHECKSUM_OFF);

  memory.write(base, bytes);
  return { rsdp: base, size };
}
