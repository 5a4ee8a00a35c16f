// Virtio over PCI, the "modern" (non-transitional) interface of virtio 1.2
// §4.1, as a PciDevice (src/pci/pci-device.ts) that the host bridge puts on
// bus 0 and the VMM maps onto its MMIO bus where the guest puts the BAR.
// The device itself (what the queues carry) is a VirtioDeviceModel; this file
// is only the transport: identity, capabilities, the register window,
// feature negotiation, the device status state machine, queue set-up and
// INTx interrupts.
//
// Identity (§4.1.2, "PCI Device Discovery")
// -----------------------------------------
//   vendor 0x1AF4, device 0x1040 + virtio device id ("The PCI Device ID is
//   calculated by adding 0x1040 to the Virtio Device ID"); revision 1 and a
//   subsystem device id of 0x40 or more, as §4.1.2.1 asks of non-transitional
//   devices so that legacy drivers leave them alone. The subsystem ids are
//   informational (§4.1.2: they "MAY reflect the PCI Vendor and Device ID of
//   the environment"); we present vendor 0x1AF4 and the device id again
//   (0x1040 + id, always ≥ 0x40). The class code is not defined by virtio;
//   drivers match on vendor and device id only (Linux's virtio_pci binds to
//   vendor 0x1AF4, any device, then checks the range). The model may name one
//   (`classCode`); the default is 0xFF0000, base class 0xFF "device does not
//   fit any defined class" of the PCI Code and ID Assignment specification.
//   Interrupt pin INTA# (there is no MSI-X capability, see Interrupts).
//
// BAR layout
// ----------
// One 64-bit, non-prefetchable memory BAR, BAR 4 (with BAR 5 as its upper
// half), 16 KiB. BAR 4 leaves BARs 0-3 free (where a transitional device would
// need its legacy I/O BAR 0, §4.1.4.10, and where an MSI-X table BAR could go
// later). It is not prefetchable because reading the ISR byte has a side
// effect (PCI 3.0 §6.2.5.1: prefetchable only if reads have none). Each
// structure sits in its own 4 KiB page so a driver can map them separately:
//
//   0x0000  common configuration   struct virtio_pci_common_cfg, 0x3c bytes
//           (§4.1.4.3); cap length 0x3c; the rest of the page reads 0
//   0x1000  ISR status             1 byte (§4.1.4.5); cap length 1
//   0x2000  device configuration   configSize bytes (§4.1.4.6); cap present
//           only when configSize > 0 (§4.1.4.6: "for any device type which
//           has a device-specific configuration")
//   0x3000  notifications          queue q at 0x3000 + 4 q (§4.1.4.4:
//           queue_notify_off = q, notify_off_multiplier = 4, an even power of
//           2 as required); cap length 4 * num_queues, which satisfies
//           "cap.length >= queue_notify_off * notify_off_multiplier + 2"
//
// Capabilities (§4.1.4, vendor-specific capability id 0x09), in list order:
// COMMON_CFG (1), NOTIFY_CFG (2, with notify_off_multiplier), ISR_CFG (3),
// DEVICE_CFG (4, if any), PCI_CFG (5). struct virtio_pci_cap is
//   +0 cap_vndr  +1 cap_next  +2 cap_len  +3 cfg_type  +4 bar  +5 id
//   +6 padding[2]  +8 le32 offset  +12 le32 length
// (16 bytes); the notify capability appends le32 notify_off_multiplier at +16
// and the PCI_CFG capability u8 pci_cfg_data[4] at +16 (both 20 bytes).
//
// PCI_CFG (§4.1.4.9): cap.bar, cap.offset, cap.length and pci_cfg_data are
// writable. A read of any byte of pci_cfg_data performs a BAR read of
// cap.length bytes at cap.offset and stores the result in pci_cfg_data; a
// write to pci_cfg_data performs a BAR write of its first cap.length bytes.
// Supported: cap.bar = 4, cap.length 1, 2 or 4, cap.offset a multiple of
// cap.length inside the BAR (what §4.1.4.9.2 requires of drivers). Anything
// else accesses nothing: pci_cfg_data keeps its bytes and writes go nowhere.
//
// Registers (§4.1.3: little-endian; 64-bit fields are two 32-bit halves)
// ----------------------------------------------------------------------
// §4.1.3.1 asks drivers for natural, aligned accesses. A device cannot rely on
// that, so every access of 1, 2 or 4 bytes at any offset is accepted: a read
// returns the bytes of the fields it covers, a write replaces the bytes it
// covers and then writes each field it touched, whole, in address order
// (read-only fields ignore the write). 8-byte MMIO accesses reach us as two
// 4-byte ones (src/bus/bus.ts). Reads of undefined bytes return 0; nothing a
// guest writes throws.
//
// Common configuration fields (offsets from the struct in §4.1.4.3):
//   device_feature_select / driver_feature_select: any u32. device_feature
//   shows offered bits 32*select.. (0 for select ≥ 2, "no feature defined
//   here exceeds 63"); driver_feature shows the accepted bits the same way.
//   Writes to driver_feature with select ≥ 2, or after FEATURES_OK, are ignored
//   (§4.1.4.3.1 lets a device present 0 for bits it never offers).
//   config_msix_vector / queue_msix_vector: read VIRTIO_MSI_NO_VECTOR whatever
//   is written — there is no MSI-X capability, and NO_VECTOR is how a device
//   reports a mapping it cannot make (§4.1.5.1.2.1).
//   queue_select: any u16; for a queue that does not exist queue_size reads 0
//   ("the virtqueue is unavailable") and the other queue fields read 0 and
//   ignore writes.
//   queue_size: reset to the maximum; the driver may write a smaller value,
//   checked when the queue is enabled.
//   queue_desc / queue_driver / queue_device: the three area addresses.
//   queue_notify_off: the queue index. queue_notify_data: the queue index (it
//   only matters with VIRTIO_F_NOTIF_CONFIG_DATA, which is not offered).
//   queue_reset: reads 0 and ignores writes. The field exists "only if
//   VIRTIO_F_RING_RESET has been negotiated" and that feature is not offered:
//   virtio 1.2 and the later spec/Linux disagree on what queue_reset reads
//   after a reset, so we stay out of it.
//
// Features (§2.2, §6): the device's own bits, plus VIRTIO_F_VERSION_1 (a
// device "MUST offer VIRTIO_F_VERSION_1", §6.2), VIRTIO_F_INDIRECT_DESC and
// VIRTIO_F_EVENT_IDX (both supported by SplitQueue; either can be turned off
// with an option). FEATURES_OK is refused — the bit stays clear when the
// driver reads the status back, as §2.2.2 demands of a device that does not
// accept the subset — if the driver accepted a bit that was not offered or did
// not accept VIRTIO_F_VERSION_1 (a legacy driver, which this non-transitional
// device cannot serve).
//
// Device status (§2.1) and initialization (§3.1.1)
// ------------------------------------------------
// Writing 0 resets the device (§4.1.4.3.1: "The device MUST reset when 0 is
// written to device_status, and present a 0 in device_status once that is
// done"): the model's reset(), every queue back to its defaults (disabled,
// maximum size, addresses 0), features cleared, ISR cleared and the line
// lowered. The reset is synchronous. Otherwise the driver's bits accumulate
// (§2.1.1: "The driver MUST NOT clear a device status bit", so a write that
// omits a bit does not clear it); DEVICE_NEEDS_RESET is the device's own bit,
// set only by the device and cleared only by a reset. DRIVER_OK is accepted
// only after FEATURES_OK. When DRIVER_OK is set the model's activate() runs
// and every enabled queue is polled once, so buffers the driver made
// available (and notified, which we ignored) before DRIVER_OK are served:
// §2.1.2 only forbids consuming buffers *before* DRIVER_OK.
//
// Queue enable (§4.1.5.1.3): the driver writes queue_enable = 1 after
// FEATURES_OK. The queue is built then (a SplitQueue with the negotiated
// EVENT_IDX / INDIRECT_DESC) if its size is a power of two no larger than the
// maximum and its areas pass SplitQueue.validateGeometry; otherwise the device
// sets DEVICE_NEEDS_RESET (below) instead. Writing 0 to queue_enable is
// ignored (§4.1.4.3.2: "The driver MUST NOT write a 0"), as are writes to the
// queue's size and addresses once it is enabled (the driver "MUST configure
// the other virtqueue fields before enabling").
//
// Notifications (§4.1.5.2): a write of any width anywhere in the 4 bytes of
// queue q's notify address notifies queue q (the queue is taken from the
// address, not from the value written). It is served — the model's
// queueNotify(), then a used buffer notification if the queue asks for one
// (SplitQueue.needsNotification, §2.7.7/§2.7.10) — only when DRIVER_OK is set,
// DEVICE_NEEDS_RESET and FAILED are not, and queue q exists and is enabled.
// Other notifications are ignored and counted in `stats.ignoredNotifications`.
//
// Errors: a guest that breaks a queue (the model's queueNotify throws a
// VirtqueueError) or programs a bad one makes the device set
// DEVICE_NEEDS_RESET and send a configuration change notification (§2.1.2:
// "The device SHOULD set DEVICE_NEEDS_RESET when it enters an error state
// that a reset is needed. If DRIVER_OK is set, after it sets
// DEVICE_NEEDS_RESET, the device MUST send a device configuration change
// notification"; we send it in every state, as the driver learns of the error
// earlier). The first error of each such episode goes to the optional `log`
// callback; nothing propagates to the VMM. Any other exception from the model
// is a model bug and is handled the same way, so the vCPU's MMIO exit never
// unwinds. Until the driver resets the device, all notifications are ignored.
//
// Interrupts (§4.1.4.5, §4.1.5.3, §4.1.5.4): INTx only. A used buffer
// notification sets ISR bit 0, a configuration change ISR bit 1. The device
// keeps the PCI status Interrupt Status bit equal to (ISR != 0) and drives
// `irq` with (ISR != 0) and not Command.Interrupt-Disable (§4.1.4.5.1: "The
// device then asserts/deasserts INT#x interrupts unless masked according to
// standard PCI rules"). `irq` is called only when the level changes. Reading
// the ISR byte returns it, clears it and lowers the line.
//
// Queues served on another thread (`offload`, QueueOffload): with the virtio
// I/O thread (src/vmm/io-thread.ts) KVM delivers the notify writes to that
// thread through ioeventfds, and the device model instance there serves the
// queues (queue-server.ts). This transport then keeps only the registers: at
// DRIVER_OK it hands over the enabled queues' geometry and the negotiated
// features (offload.start), at a reset it waits until the other thread has let
// go of the queues (offload.stop) before it presents status 0, and a notify
// that still reaches it (a write of another width than the ioeventfd's) is
// passed on (offload.notify). ISR, DEVICE_NEEDS_RESET, the driver's FAILED
// bit and the counters live in VirtioSharedState so both threads can raise
// interrupts and report errors; `irq` is then an irqfd that KVM lowers at the
// guest's EOI (resample mode), so only the raising edge is signalled. The
// PCI Status.Interrupt bit is refreshed from the shared ISR when the guest
// reads the status register.

import type { AccessSize } from '../bus/bus';
import { IrqLevel } from '../devices/irq';
import type { GuestMemory } from '../memory/guest-memory';
import { PCI_CAP_ID_VNDR, PCI_COMMAND, PCI_STATUS, PCI_STATUS_INTERRUPT, PciConfigSpace } from '../pci/config-space';
import type { PciDevice } from '../pci/pci-device';
import { VirtioSharedState } from './shared-state';
import { MAX_QUEUE_SIZE, SplitQueue, VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VirtqueueError } from './split-queue';

// ---- identity (§4.1.2) ------------------------------------------------------

export const VIRTIO_PCI_VENDOR_ID = 0x1af4;
/** PCI device id = 0x1040 + virtio device id (§4.1.2). */
export const VIRTIO_PCI_DEVICE_ID_BASE = 0x1040;
/** "Non-transitional devices SHOULD have a PCI Revision ID of 1 or higher" (§4.1.2.1). */
export const VIRTIO_PCI_REVISION = 1;
/** Class code when the model names none: base class 0xFF, "device does not fit any defined class". */
export const VIRTIO_PCI_DEFAULT_CLASS = 0xff0000;
/** Interrupt pin register value for INTA# (PCI 3.0 §6.2.4). */
const INTERRUPT_PIN_INTA = 1;

// ---- feature bits (§6 "Reserved Feature Bits") -----------------------------

export { VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC };
/** Bit 32: the device complies with virtio 1.x (§6). */
export const VIRTIO_F_VERSION_1 = 32;
/** Bit 40: per-queue reset (§6); not offered, see the header. */
export const VIRTIO_F_RING_RESET = 40;

// ---- device status bits (§2.1) ---------------------------------------------

export const VIRTIO_STATUS_ACKNOWLEDGE = 1;
export const VIRTIO_STATUS_DRIVER = 2;
export const VIRTIO_STATUS_DRIVER_OK = 4;
export const VIRTIO_STATUS_FEATURES_OK = 8;
export const VIRTIO_STATUS_DEVICE_NEEDS_RESET = 64;
export const VIRTIO_STATUS_FAILED = 128;
/** The bits a driver may set; bits 4-5 are reserved and DEVICE_NEEDS_RESET is the device's. */
const DRIVER_STATUS_BITS =
  VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_DRIVER_OK | VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_FAILED;

// ---- ISR bits (§4.1.4.5) ----------------------------------------------------

/** Bit 0: queue interrupt (used buffer notification). */
export const VIRTIO_ISR_QUEUE = 0x1;
/** Bit 1: device configuration interrupt. */
export const VIRTIO_ISR_CONFIG = 0x2;

/** "Vector value used to disable MSI for queue" (§4.1.5.1.2). */
export const VIRTIO_MSI_NO_VECTOR = 0xffff;

// ---- capabilities (§4.1.4) --------------------------------------------------

/** cfg_type values (§4.1.4). */
export const VIRTIO_PCI_CAP_COMMON_CFG = 1;
export const VIRTIO_PCI_CAP_NOTIFY_CFG = 2;
export const VIRTIO_PCI_CAP_ISR_CFG = 3;
export const VIRTIO_PCI_CAP_DEVICE_CFG = 4;
export const VIRTIO_PCI_CAP_PCI_CFG = 5;

/** struct virtio_pci_cap field offsets (§4.1.4). */
export const VIRTIO_PCI_CAP_VNDR = 0;
export const VIRTIO_PCI_CAP_NEXT = 1;
export const VIRTIO_PCI_CAP_LEN = 2;
export const VIRTIO_PCI_CAP_CFG_TYPE = 3;
export const VIRTIO_PCI_CAP_BAR = 4;
export const VIRTIO_PCI_CAP_ID = 5;
export const VIRTIO_PCI_CAP_OFFSET = 8;
export const VIRTIO_PCI_CAP_LENGTH = 12;
/** struct virtio_pci_notify_cap: le32 notify_off_multiplier after the cap (§4.1.4.4). */
export const VIRTIO_PCI_NOTIFY_CAP_MULT = 16;
/** struct virtio_pci_cfg_cap: u8 pci_cfg_data[4] after the cap (§4.1.4.9). */
export const VIRTIO_PCI_CFG_CAP_DATA = 16;
const CAP_SIZE = 16;
const NOTIFY_CAP_SIZE = 20;
const PCI_CFG_CAP_SIZE = 20;

// ---- the BAR ---------------------------------------------------------------

export const VIRTIO_PCI_BAR = 4;
export const VIRTIO_PCI_BAR_SIZE = 0x4000;
export const VIRTIO_PCI_COMMON_OFFSET = 0x0000;
export const VIRTIO_PCI_ISR_OFFSET = 0x1000;
export const VIRTIO_PCI_DEVICE_OFFSET = 0x2000;
export const VIRTIO_PCI_NOTIFY_OFFSET = 0x3000;
/** Each structure's page. */
const REGION_SIZE = 0x1000;
/** Bytes between queue notify addresses (§4.1.4.4: an even power of 2). */
export const VIRTIO_PCI_NOTIFY_MULTIPLIER = 4;
/** Queues whose notify addresses fit the notification page. */
export const VIRTIO_PCI_MAX_QUEUES = REGION_SIZE / VIRTIO_PCI_NOTIFY_MULTIPLIER;

// struct virtio_pci_common_cfg field offsets (§4.1.4.3, virtio 1.2 layout).
export const COMMON_DEVICE_FEATURE_SELECT = 0x00; // le32 RW
export const COMMON_DEVICE_FEATURE = 0x04; // le32 RO
export const COMMON_DRIVER_FEATURE_SELECT = 0x08; // le32 RW
export const COMMON_DRIVER_FEATURE = 0x0c; // le32 RW
export const COMMON_CONFIG_MSIX_VECTOR = 0x10; // le16 RW
export const COMMON_NUM_QUEUES = 0x12; // le16 RO
export const COMMON_DEVICE_STATUS = 0x14; // u8 RW
export const COMMON_CONFIG_GENERATION = 0x15; // u8 RO
export const COMMON_QUEUE_SELECT = 0x16; // le16 RW
export const COMMON_QUEUE_SIZE = 0x18; // le16 RW
export const COMMON_QUEUE_MSIX_VECTOR = 0x1a; // le16 RW
export const COMMON_QUEUE_ENABLE = 0x1c; // le16 RW
export const COMMON_QUEUE_NOTIFY_OFF = 0x1e; // le16 RO
export const COMMON_QUEUE_DESC = 0x20; // le64 RW (lo at +0, hi at +4)
export const COMMON_QUEUE_DRIVER = 0x28; // le64 RW
export const COMMON_QUEUE_DEVICE = 0x30; // le64 RW
export const COMMON_QUEUE_NOTIFY_DATA = 0x38; // le16 RO
export const COMMON_QUEUE_RESET = 0x3a; // le16 RW
/** sizeof(struct virtio_pci_common_cfg) in virtio 1.2. */
export const COMMON_CFG_SIZE = 0x3c;

// ---- the device model --------------------------------------------------------

/** What a virtio device type (entropy, block, net...) provides to the transport. */
export interface VirtioDeviceModel {
  /** Virtio device id (§5), e.g. 4 = entropy. */
  readonly deviceId: number;
  /** Device-specific feature bits offered (the transport adds its own, see the header). */
  readonly features: bigint;
  /** Maximum size of each queue (powers of two, 1..32768); the length is num_queues. */
  readonly queueSizes: readonly number[];
  /** Bytes of device-specific configuration (0..4096). */
  readonly configSize: number;
  /** PCI class code (24 bits); default VIRTIO_PCI_DEFAULT_CLASS. */
  readonly classCode?: number;
  /** Reads `size` (1, 2 or 4) bytes at `offset` (inside configSize) of the device configuration, little-endian. */
  readConfig(offset: number, size: number): number;
  writeConfig(offset: number, size: number, value: number): void;
  /**
   * The driver notified queue `queueIndex` (only called after DRIVER_OK, for an
   * enabled queue). The model pops chains, serves them and calls pushUsed; the
   * transport then decides on the interrupt. A VirtqueueError thrown here puts
   * the device in DEVICE_NEEDS_RESET.
   */
  queueNotify(queueIndex: number, queue: SplitQueue): void;
  /** The driver set DRIVER_OK with these negotiated features. */
  activate?(features: bigint): void;
  /**
   * Called once by the transport's constructor. Models with input that arrives
   * from the host (console bytes, network frames) keep the transport and call
   * `withQueue` to fill the guest's buffers outside a notification.
   */
  attach?(transport: VirtioTransport): void;
  /** The driver reset the device: drop all state (queues are the transport's). */
  reset(): void;
}

/**
 * Reads `size` bytes at `offset` of a device configuration kept as a byte
 * array, little-endian (virtio 1.2 §2.5: the device configuration is
 * little-endian); bytes outside the array read 0. For models' readConfig.
 */
export function readConfigBytes(config: Uint8Array, offset: number, size: number): number {
  let value = 0;
  for (let i = 0; i < size; i++) {
    const at = offset + i;
    const byte = Number.isInteger(at) && at >= 0 && at < config.length ? config[at]! : 0;
    value |= byte << (8 * i);
  }
  return value >>> 0;
}

/** What a device model may call on its transport for work the host starts. */
export interface VirtioTransport {
  /** Features the driver accepted. */
  readonly negotiatedFeatures: bigint;
  /**
   * Runs `work` on queue `index` if the device is live (DRIVER_OK, no reset
   * pending) and the driver enabled the queue, then sends a used buffer
   * notification if the queue asks for one. A VirtqueueError thrown by `work`
   * puts the device in DEVICE_NEEDS_RESET. Returns false when the queue is not
   * live (the work did not run).
   */
  withQueue(index: number, work: (queue: SplitQueue) => void): boolean;
  /** The device configuration changed (§4.1.5.4). */
  signalConfigChange(): void;
}

/** Where an enabled queue's three areas are, as the driver programmed them (§4.1.4.3). */
export interface QueueGeometry {
  index: number;
  size: number;
  descTable: number;
  availRing: number;
  usedRing: number;
}

/**
 * A transport whose queues are served on another thread (the I/O thread,
 * src/vmm/io-thread.ts): KVM delivers the guest's notifications there through
 * ioeventfds and the interrupts go to KVM through an irqfd, so neither passes
 * through the vCPU's exit loop. The transport keeps the registers and tells
 * the other side when the queues start and stop.
 */
export interface QueueOffload {
  /** DRIVER_OK: serve these enabled queues with these features from now on. */
  start(features: bigint, queues: QueueGeometry[]): void;
  /** Device reset: returns once the other thread no longer touches the queues. */
  stop(): void;
  /** A notification that reached the exit loop (a write the ioeventfd does not match): pass it on. */
  notify(index: number): void;
}

export interface VirtioPciOptions {
  memory: GuestMemory;
  device: VirtioDeviceModel;
  /** The INTx line: called with the new level when it changes. */
  irq: (level: boolean) => void;
  name?: string;
  /** Reports the first guest (or model) error of each DEVICE_NEEDS_RESET episode. */
  log?: (message: string) => void;
  /** Offer VIRTIO_F_EVENT_IDX (default true). */
  eventIdx?: boolean;
  /** Offer VIRTIO_F_INDIRECT_DESC (default true). */
  indirect?: boolean;
  /**
   * Serve the queues on another thread (see QueueOffload); `device` then only
   * answers configuration reads and writes, activate() and reset().
   */
  offload?: QueueOffload;
  /** The state shared with that thread (ISR, DEVICE_NEEDS_RESET, counters); default a new one. */
  shared?: VirtioSharedState;
}

export interface VirtioPciStats {
  /** Notifications served. */
  notifications: number;
  /** Notifications ignored: before DRIVER_OK, after FAILED or DEVICE_NEEDS_RESET, or for a missing or disabled queue. */
  ignoredNotifications: number;
  /** Used buffer notifications sent (ISR bit 0 set). */
  usedInterrupts: number;
  /** Configuration change notifications sent (ISR bit 1 set). */
  configInterrupts: number;
  /** Times the device entered DEVICE_NEEDS_RESET. */
  needsReset: number;
  /** Errors seen (including those while already in DEVICE_NEEDS_RESET). */
  errors: number;
  /** Device resets by the driver (status 0 written). */
  resets: number;
  /** Driver writes ignored: read-only fields, queue geometry of an enabled queue, queue_enable 0. */
  ignoredWrites: number;
}

/** A programming error by the VMM or the model's static description (never raised by guest accesses). */
export class VirtioPciError extends Error {
  readonly code = 'EVIRTIOPCI';
}

interface QueueConfig {
  readonly maxSize: number;
  size: number;
  enabled: boolean;
  descLo: number;
  descHi: number;
  driverLo: number;
  driverHi: number;
  deviceLo: number;
  deviceHi: number;
  queue: SplitQueue | undefined;
}

interface Field {
  readonly offset: number;
  readonly size: 1 | 2 | 4;
  read(): number;
  /** Absent: read-only for the driver. */
  write?(value: number): void;
}

const MASK: Record<number, number> = { 1: 0xff, 2: 0xffff, 4: 0xffffffff };
const U32 = 0x1_0000_0000;

function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
}

/**
 * The split virtqueue a driver set up: its areas, and the ring features it
 * negotiated (EVENT_IDX, INDIRECT_DESC). Throws VirtqueueError for bad areas.
 */
export function openSplitQueue(memory: GuestMemory, areas: Omit<QueueGeometry, 'index'>, features: bigint): SplitQueue {
  return new SplitQueue({
    memory,
    ...areas,
    eventIdx: (features & (1n << BigInt(VIRTIO_F_EVENT_IDX))) !== 0n,
    indirect: (features & (1n << BigInt(VIRTIO_F_INDIRECT_DESC))) !== 0n,
  });
}

/** An error from a device model, for the log: the virtqueue error code, else the error's name. */
export function describeModelError(err: unknown): string {
  if (err instanceof VirtqueueError) return `${err.code}: ${err.message}`;
  if (err instanceof Error) return `${err.name}: ${err.message}`;
  return String(err);
}

/** Why a device needs a reset: a guest that broke a queue (VirtqueueError), or a bug in the model. */
export function needsResetReason(where: string, err: unknown): string {
  const kind = err instanceof VirtqueueError ? 'guest error' : 'device model error';
  return `${where}: ${kind}: ${describeModelError(err)}`;
}

export class VirtioPciDevice implements PciDevice, VirtioTransport {
  readonly name: string;
  readonly config = new PciConfigSpace();
  readonly device: VirtioDeviceModel;
  /** ISR, DEVICE_NEEDS_RESET and the counters of the work that may happen on the I/O thread. */
  readonly shared: VirtioSharedState;
  /** Set when the queues are served on another thread. */
  readonly offload?: QueueOffload;
  private readonly localStats = { ignoredNotifications: 0, resets: 0, ignoredWrites: 0 };
  /** The feature bits offered to the driver. */
  readonly offeredFeatures: bigint;
  /** Capability offsets in configuration space, by cfg_type. */
  readonly capabilities: Readonly<Record<'common' | 'notify' | 'isr' | 'pciCfg', number>> & { readonly device?: number };

  private readonly memory: GuestMemory;
  private readonly line: IrqLevel;
  private readonly log?: (message: string) => void;
  private readonly queues: QueueConfig[];
  private readonly fields: Field[];
  /** For each byte of the common configuration, the index of its field. */
  private readonly fieldAt: Uint8Array;
  private readonly pciCfgCap: number;

  /** The driver's status bits; DEVICE_NEEDS_RESET lives in `shared`. */
  private status = 0;
  private generation = 0;
  private deviceFeatureSelect = 0;
  private driverFeatureSelect = 0;
  private driverFeatures = 0n;
  private queueSelect = 0;

  constructor(options: VirtioPciOptions) {
    const { device } = options;
    if (!Number.isInteger(device.deviceId) || device.deviceId < 1 || device.deviceId > 0xffff - VIRTIO_PCI_DEVICE_ID_BASE)
      throw new VirtioPciError(`invalid virtio device id ${device.deviceId}`);
    if (device.queueSizes.length > VIRTIO_PCI_MAX_QUEUES)
      throw new VirtioPciError(`${device.queueSizes.length} queues (at most ${VIRTIO_PCI_MAX_QUEUES})`);
    for (const size of device.queueSizes)
      if (!isPowerOfTwo(size) || size > MAX_QUEUE_SIZE) throw new VirtioPciError(`queue size ${size} is not a power of two in 1..${MAX_QUEUE_SIZE}`);
    if (!Number.isInteger(device.configSize) || device.configSize < 0 || device.configSize > REGION_SIZE)
      throw new VirtioPciError(`device configuration size ${device.configSize} is not in 0..${REGION_SIZE}`);
    if (typeof device.features !== 'bigint' || device.features < 0n || device.features >= 1n << 64n)
      throw new VirtioPciError('device features must be a 64-bit bigint');

    this.name = options.name ?? `virtio-pci-${device.deviceId}`;
    this.device = device;
    this.memory = options.memory;
    this.shared = options.shared ?? new VirtioSharedState();
    this.offload = options.offload;
    this.line = new IrqLevel(options.irq);
    this.log = options.log;
    let transport = 1n << BigInt(VIRTIO_F_VERSION_1);
    if (options.eventIdx !== false) transport |= 1n << BigInt(VIRTIO_F_EVENT_IDX);
    if (options.indirect !== false) transport |= 1n << BigInt(VIRTIO_F_INDIRECT_DESC);
    this.offeredFeatures = device.features | transport;
    this.queues = device.queueSizes.map((maxSize) => ({
      maxSize,
      size: maxSize,
      enabled: false,
      descLo: 0,
      descHi: 0,
      driverLo: 0,
      driverHi: 0,
      deviceLo: 0,
      deviceHi: 0,
      queue: undefined,
    }));

    // Identity (§4.1.2) and the interrupt pin.
    const c = this.config;
    const pciDeviceId = VIRTIO_PCI_DEVICE_ID_BASE + device.deviceId;
    c.setVendorId(VIRTIO_PCI_VENDOR_ID);
    c.setDeviceId(pciDeviceId);
    c.setRevisionId(VIRTIO_PCI_REVISION);
    c.setClassCode(device.classCode ?? VIRTIO_PCI_DEFAULT_CLASS);
    c.setSubsystem(VIRTIO_PCI_VENDOR_ID, pciDeviceId);
    c.setInterruptPin(INTERRUPT_PIN_INTA);
    c.defineBar(VIRTIO_PCI_BAR, { kind: 'memory64', size: VIRTIO_PCI_BAR_SIZE });

    // Capabilities (§4.1.4), in order of preference.
    const common = this.addVirtioCap(VIRTIO_PCI_CAP_COMMON_CFG, CAP_SIZE, VIRTIO_PCI_COMMON_OFFSET, COMMON_CFG_SIZE);
    const notify = this.addVirtioCap(
      VIRTIO_PCI_CAP_NOTIFY_CFG,
      NOTIFY_CAP_SIZE,
      VIRTIO_PCI_NOTIFY_OFFSET,
      // At least 2 bytes even with no queues (§4.1.4.4.1).
      Math.max(2, this.queues.length * VIRTIO_PCI_NOTIFY_MULTIPLIER),
    );
    c.setU32(notify + VIRTIO_PCI_NOTIFY_CAP_MULT, VIRTIO_PCI_NOTIFY_MULTIPLIER);
    const isr = this.addVirtioCap(VIRTIO_PCI_CAP_ISR_CFG, CAP_SIZE, VIRTIO_PCI_ISR_OFFSET, 1);
    const deviceCap =
      device.configSize > 0 ? this.addVirtioCap(VIRTIO_PCI_CAP_DEVICE_CFG, CAP_SIZE, VIRTIO_PCI_DEVICE_OFFSET, device.configSize) : undefined;
    // PCI_CFG starts as an empty window (BAR 4, offset 0, length 0): the
    // driver writes bar, offset and length before each access (§4.1.4.9).
    const pciCfg = this.addVirtioCap(VIRTIO_PCI_CAP_PCI_CFG, PCI_CFG_CAP_SIZE, 0, 0);
    c.setWritable(pciCfg + VIRTIO_PCI_CAP_BAR, 1, 0xff);
    c.setWritable(pciCfg + VIRTIO_PCI_CAP_OFFSET, 4, 0xffffffff);
    c.setWritable(pciCfg + VIRTIO_PCI_CAP_LENGTH, 4, 0xffffffff);
    c.setWritable(pciCfg + VIRTIO_PCI_CFG_CAP_DATA, 4, 0xffffffff);
    this.pciCfgCap = pciCfg;
    this.capabilities = { common, notify, isr, pciCfg, ...(deviceCap === undefined ? {} : { device: deviceCap }) };

    c.beforeRead = (offset, length) => this.configBeforeRead(offset, length);
    c.afterWrite = (offset, length) => this.configAfterWrite(offset, length);

    this.fields = this.commonFields();
    this.fieldAt = new Uint8Array(COMMON_CFG_SIZE);
    this.fields.forEach((f, i) => this.fieldAt.fill(i, f.offset, f.offset + f.size));
    device.attach?.(this);
  }

  private addVirtioCap(cfgType: number, capLength: number, offset: number, length: number): number {
    const c = this.config;
    const at = c.addCapability(PCI_CAP_ID_VNDR, capLength);
    c.setU8(at + VIRTIO_PCI_CAP_LEN, capLength);
    c.setU8(at + VIRTIO_PCI_CAP_CFG_TYPE, cfgType);
    c.setU8(at + VIRTIO_PCI_CAP_BAR, VIRTIO_PCI_BAR);
    c.setU8(at + VIRTIO_PCI_CAP_ID, 0);
    c.setU32(at + VIRTIO_PCI_CAP_OFFSET, offset);
    c.setU32(at + VIRTIO_PCI_CAP_LENGTH, length);
    return at;
  }

  // ---- state, for the VMM and tests ------------------------------------------

  get stats(): VirtioPciStats {
    return { ...this.shared.counts, ...this.localStats };
  }

  /** device_status as the driver reads it. */
  get deviceStatus(): number {
    return this.shared.needsReset ? this.status | VIRTIO_STATUS_DEVICE_NEEDS_RESET : this.status;
  }

  /** The ISR status byte, without the read side effect. */
  get isr(): number {
    return this.shared.isr;
  }

  /** The INTx level driven now. */
  get interruptLevel(): boolean {
    return this.line.level;
  }

  get configGeneration(): number {
    return this.generation;
  }

  /** Features the driver accepted (meaningful once FEATURES_OK is set). */
  get negotiatedFeatures(): bigint {
    return this.driverFeatures;
  }

  /** The live queue `index`, if the driver has enabled it. */
  queue(index: number): SplitQueue | undefined {
    return this.queues[index]?.queue;
  }

  // ---- device side -------------------------------------------------------------

  /**
   * For models that complete requests later: after pushUsed on queue `index`,
   * sends a used buffer notification if the driver wants one.
   */
  signalUsed(index: number): void {
    const q = this.queues[index]?.queue;
    if (!q || this.offload || !this.operational()) return;
    try {
      if (q.needsNotification()) this.raiseIsr(VIRTIO_ISR_QUEUE);
    } catch (err) {
      this.fail(`queue ${index}`, err);
    }
  }

  /** The device configuration changed: new generation and a configuration change notification (§2.5, §4.1.5.4). */
  signalConfigChange(): void {
    this.generation = (this.generation + 1) & 0xff;
    this.raiseIsr(VIRTIO_ISR_CONFIG);
  }

  /** Puts the device in DEVICE_NEEDS_RESET (§2.1.2) with a configuration change notification. */
  setNeedsReset(reason: string): void {
    if (!this.shared.setNeedsReset()) return;
    this.log?.(`${this.name}: ${reason}; device needs reset`);
    this.raiseIsr(VIRTIO_ISR_CONFIG);
  }

  private fail(where: string, err: unknown): void {
    this.setNeedsReset(needsResetReason(where, err));
  }

  private raiseIsr(bits: number): void {
    this.shared.raiseIsr(bits);
    this.updateLine();
  }

  private updateLine(): void {
    const pending = this.shared.isr !== 0;
    this.refreshInterruptStatus();
    const disabled = this.config.interruptDisabled;
    this.shared.intxDisabled = disabled;
    this.line.set(pending && !disabled);
  }

  /** Status.Interrupt mirrors the request whatever Command.Interrupt-Disable says (§4.1.4.5.1, PCI 3.0 §6.2.3). */
  private refreshInterruptStatus(): void {
    const pending = this.shared.isr !== 0;
    if (((this.config.status & PCI_STATUS_INTERRUPT) !== 0) !== pending) this.config.setInterruptStatus(pending);
  }

  private operational(): boolean {
    return (
      (this.status & VIRTIO_STATUS_DRIVER_OK) !== 0 &&
      (this.status & VIRTIO_STATUS_FAILED) === 0 &&
      !this.shared.needsReset
    );
  }

  // ---- BAR access ----------------------------------------------------------------

  barRead(bar: number, offset: number, size: AccessSize): number {
    if (bar !== VIRTIO_PCI_BAR || !this.validAccess(offset, size)) return 0;
    const region = offset & ~(REGION_SIZE - 1);
    const within = offset - region;
    // Bytes past the end of the region read 0.
    const inRegion = Math.min(size, REGION_SIZE - within);
    let value: number;
    switch (region) {
      case VIRTIO_PCI_COMMON_OFFSET:
        value = this.commonRead(within, inRegion);
        break;
      case VIRTIO_PCI_ISR_OFFSET:
        value = within === 0 ? this.readIsr() : 0;
        break;
      case VIRTIO_PCI_DEVICE_OFFSET:
        value = this.deviceConfigRead(within, inRegion);
        break;
      default:
        value = 0; // notifications are write-only
    }
    return (value & MASK[size]) >>> 0;
  }

  barWrite(bar: number, offset: number, size: AccessSize, value: number): void {
    if (bar !== VIRTIO_PCI_BAR || !this.validAccess(offset, size)) return;
    const v = ((typeof value === 'number' && Number.isFinite(value) ? value >>> 0 : 0) & MASK[size]) >>> 0;
    const region = offset & ~(REGION_SIZE - 1);
    const within = offset - region;
    const inRegion = Math.min(size, REGION_SIZE - within);
    switch (region) {
      case VIRTIO_PCI_COMMON_OFFSET:
        this.commonWrite(within, inRegion, v);
        break;
      case VIRTIO_PCI_ISR_OFFSET:
        this.localStats.ignoredWrites++; // read-only
        break;
      case VIRTIO_PCI_DEVICE_OFFSET:
        this.deviceConfigWrite(within, inRegion, v);
        break;
      default:
        this.notify(Math.floor(within / VIRTIO_PCI_NOTIFY_MULTIPLIER));
    }
  }

  private validAccess(offset: number, size: number): boolean {
    return (size === 1 || size === 2 || size === 4) && Number.isInteger(offset) && offset >= 0 && offset + size <= VIRTIO_PCI_BAR_SIZE;
  }

  private readIsr(): number {
    // "simply reading this register resets it to 0 and causes the device to de-assert the interrupt" (§4.1.4.5)
    const value = this.shared.takeIsr();
    this.updateLine();
    return value;
  }

  // ---- common configuration (§4.1.4.3) -----------------------------------------

  private commonRead(offset: number, size: number): number {
    let value = 0;
    let cachedField = -1;
    let cached = 0;
    for (let i = 0; i < size; i++) {
      const b = offset + i;
      if (b >= COMMON_CFG_SIZE) continue;
      const index = this.fieldAt[b];
      if (index !== cachedField) {
        cachedField = index;
        cached = this.fields[index].read() >>> 0;
      }
      const f = this.fields[index];
      value |= ((cached >>> (8 * (b - f.offset))) & 0xff) << (8 * i);
    }
    return value >>> 0;
  }

  private commonWrite(offset: number, size: number, value: number): void {
    // Group the bytes by field, then write each touched field whole, low address first.
    let i = 0;
    while (i < size) {
      const b = offset + i;
      if (b >= COMMON_CFG_SIZE) break;
      const f = this.fields[this.fieldAt[b]];
      let merged = f.read() >>> 0;
      while (i < size && offset + i < f.offset + f.size) {
        const shift = 8 * (offset + i - f.offset);
        const byte = (value >>> (8 * i)) & 0xff;
        merged = ((merged & ~(0xff << shift)) | (byte << shift)) >>> 0;
        i++;
      }
      if (f.write) f.write((merged & MASK[f.size]) >>> 0);
      else this.localStats.ignoredWrites++;
    }
  }

  private selected(): QueueConfig | undefined {
    return this.queues[this.queueSelect];
  }

  /** Applies a write to a queue geometry field, unless the queue is missing or already enabled. */
  private writeQueueField(set: (q: QueueConfig) => void): void {
    const q = this.selected();
    if (!q || q.enabled) {
      this.localStats.ignoredWrites++;
      return;
    }
    set(q);
  }

  private commonFields(): Field[] {
    const featureWord = (features: bigint, select: number): number =>
      select === 0 || select === 1 ? Number((features >> BigInt(32 * select)) & 0xffffffffn) : 0;
    const q = (): QueueConfig | undefined => this.selected();
    return [
      {
        offset: COMMON_DEVICE_FEATURE_SELECT,
        size: 4,
        read: () => this.deviceFeatureSelect,
        write: (v) => (this.deviceFeatureSelect = v),
      },
      { offset: COMMON_DEVICE_FEATURE, size: 4, read: () => featureWord(this.offeredFeatures, this.deviceFeatureSelect) },
      {
        offset: COMMON_DRIVER_FEATURE_SELECT,
        size: 4,
        read: () => this.driverFeatureSelect,
        write: (v) => (this.driverFeatureSelect = v),
      },
      {
        offset: COMMON_DRIVER_FEATURE,
        size: 4,
        read: () => featureWord(this.driverFeatures, this.driverFeatureSelect),
        write: (v) => this.writeDriverFeatures(v),
      },
      { offset: COMMON_CONFIG_MSIX_VECTOR, size: 2, read: () => VIRTIO_MSI_NO_VECTOR, write: () => {} },
      { offset: COMMON_NUM_QUEUES, size: 2, read: () => this.queues.length },
      { offset: COMMON_DEVICE_STATUS, size: 1, read: () => this.deviceStatus, write: (v) => this.writeStatus(v) },
      { offset: COMMON_CONFIG_GENERATION, size: 1, read: () => this.generation },
      { offset: COMMON_QUEUE_SELECT, size: 2, read: () => this.queueSelect, write: (v) => (this.queueSelect = v) },
      {
        offset: COMMON_QUEUE_SIZE,
        size: 2,
        read: () => q()?.size ?? 0,
        write: (v) => this.writeQueueField((x) => (x.size = v)),
      },
      // No MSI-X: every mapping fails, which NO_VECTOR reports (§4.1.5.1.2.1).
      { offset: COMMON_QUEUE_MSIX_VECTOR, size: 2, read: () => (q() ? VIRTIO_MSI_NO_VECTOR : 0), write: () => {} },
      { offset: COMMON_QUEUE_ENABLE, size: 2, read: () => (q()?.enabled ? 1 : 0), write: (v) => this.writeQueueEnable(v) },
      { offset: COMMON_QUEUE_NOTIFY_OFF, size: 2, read: () => (q() ? this.queueSelect : 0) },
      { offset: COMMON_QUEUE_DESC, size: 4, read: () => q()?.descLo ?? 0, write: (v) => this.writeQueueField((x) => (x.descLo = v)) },
      { offset: COMMON_QUEUE_DESC + 4, size: 4, read: () => q()?.descHi ?? 0, write: (v) => this.writeQueueField((x) => (x.descHi = v)) },
      { offset: COMMON_QUEUE_DRIVER, size: 4, read: () => q()?.driverLo ?? 0, write: (v) => this.writeQueueField((x) => (x.driverLo = v)) },
      {
        offset: COMMON_QUEUE_DRIVER + 4,
        size: 4,
        read: () => q()?.driverHi ?? 0,
        write: (v) => this.writeQueueField((x) => (x.driverHi = v)),
      },
      { offset: COMMON_QUEUE_DEVICE, size: 4, read: () => q()?.deviceLo ?? 0, write: (v) => this.writeQueueField((x) => (x.deviceLo = v)) },
      {
        offset: COMMON_QUEUE_DEVICE + 4,
        size: 4,
        read: () => q()?.deviceHi ?? 0,
        write: (v) => this.writeQueueField((x) => (x.deviceHi = v)),
      },
      { offset: COMMON_QUEUE_NOTIFY_DATA, size: 2, read: () => (q() ? this.queueSelect : 0) },
      // VIRTIO_F_RING_RESET is not offered: the field reads 0 and ignores writes.
      { offset: COMMON_QUEUE_RESET, size: 2, read: () => 0, write: () => this.localStats.ignoredWrites++ },
    ];
  }

  private writeDriverFeatures(word: number): void {
    // Feature negotiation is over once FEATURES_OK is set (§3.1.1 steps 4-5);
    // no feature is defined past bit 63 (§4.1.4.3.1).
    if (this.status & VIRTIO_STATUS_FEATURES_OK || (this.driverFeatureSelect !== 0 && this.driverFeatureSelect !== 1)) {
      this.localStats.ignoredWrites++;
      return;
    }
    const shift = BigInt(32 * this.driverFeatureSelect);
    this.driverFeatures = (this.driverFeatures & ~(0xffffffffn << shift)) | (BigInt(word >>> 0) << shift);
  }

  private writeStatus(value: number): void {
    if (value === 0) {
      this.resetDevice();
      return;
    }
    const old = this.status;
    let next = old | (value & DRIVER_STATUS_BITS);
    if (next & VIRTIO_STATUS_FEATURES_OK && !(old & VIRTIO_STATUS_FEATURES_OK) && !this.featuresAcceptable())
      next &= ~VIRTIO_STATUS_FEATURES_OK; // refused (§2.2.2)
    if (next & VIRTIO_STATUS_DRIVER_OK && !(next & VIRTIO_STATUS_FEATURES_OK)) next &= ~VIRTIO_STATUS_DRIVER_OK;
    this.status = next;
    if (next & VIRTIO_STATUS_FAILED) this.shared.setDriverFailed();
    if (next & VIRTIO_STATUS_DRIVER_OK && !(old & VIRTIO_STATUS_DRIVER_OK)) this.driverOk();
  }

  private featuresAcceptable(): boolean {
    const f = this.driverFeatures;
    return (f & ~this.offeredFeatures) === 0n && (f & (1n << BigInt(VIRTIO_F_VERSION_1))) !== 0n;
  }

  private driverOk(): void {
    try {
      this.device.activate?.(this.driverFeatures);
    } catch (err) {
      this.fail('activate', err);
      return;
    }
    if (this.offload) {
      const geometry: QueueGeometry[] = [];
      this.queues.forEach((q, index) => {
        if (q.enabled) geometry.push({ index, ...this.areas(q) });
      });
      // The other side serves what the driver made available before DRIVER_OK.
      this.offload.start(this.driverFeatures, geometry);
      return;
    }
    // Serve what the driver made available before DRIVER_OK.
    this.queues.forEach((q, index) => {
      if (q.enabled) this.serve(index);
    });
  }

  private resetDevice(): void {
    this.localStats.resets++;
    // First make the other thread let go of the queues (§4.1.4.3.1: the reset is done when we present 0).
    this.offload?.stop();
    try {
      this.device.reset();
    } catch (err) {
      // The device is reset on our side whatever the model says.
      this.log?.(`${this.name}: device model reset failed: ${describeModelError(err)}`);
    }
    for (const q of this.queues) {
      q.size = q.maxSize;
      q.enabled = false;
      q.descLo = q.descHi = q.driverLo = q.driverHi = q.deviceLo = q.deviceHi = 0;
      q.queue = undefined;
    }
    this.status = 0;
    this.deviceFeatureSelect = 0;
    this.driverFeatureSelect = 0;
    this.driverFeatures = 0n;
    this.queueSelect = 0;
    this.shared.reset();
    this.updateLine();
  }

  private writeQueueEnable(value: number): void {
    const q = this.selected();
    if (!q || q.enabled || value !== 1) {
      // 0 is forbidden (§4.1.4.3.2); enabling twice changes nothing.
      this.localStats.ignoredWrites++;
      return;
    }
    const index = this.queueSelect;
    if (!(this.status & VIRTIO_STATUS_FEATURES_OK)) {
      this.setNeedsReset(`queue ${index} enabled before FEATURES_OK`);
      return;
    }
    if (!isPowerOfTwo(q.size) || q.size > q.maxSize) {
      this.setNeedsReset(`queue ${index}: size ${q.size} is not a power of two in 1..${q.maxSize}`);
      return;
    }
    try {
      // Built (and so validated) here even when another thread serves the queue.
      q.queue = openSplitQueue(this.memory, this.areas(q), this.driverFeatures);
    } catch (err) {
      this.fail(`queue ${index}`, err);
      return;
    }
    q.enabled = true;
  }

  private areas(q: QueueConfig): Omit<QueueGeometry, 'index'> {
    return {
      size: q.size,
      descTable: q.descHi * U32 + q.descLo,
      availRing: q.driverHi * U32 + q.driverLo,
      usedRing: q.deviceHi * U32 + q.deviceLo,
    };
  }

  // ---- notifications (§4.1.4.4, §4.1.5.2) -----------------------------------------

  private notify(index: number): void {
    const q = this.queues[index];
    if (!q || !q.enabled || !this.operational()) {
      this.localStats.ignoredNotifications++;
      return;
    }
    if (this.offload) this.offload.notify(index);
    else this.serve(index);
  }

  withQueue(index: number, work: (queue: SplitQueue) => void): boolean {
    const q = this.queues[index];
    const queue = q?.queue;
    if (!q || !q.enabled || !queue || this.offload || !this.operational()) return false;
    try {
      work(queue);
      if (queue.needsNotification()) this.raiseIsr(VIRTIO_ISR_QUEUE);
    } catch (err) {
      this.fail(`queue ${index}`, err);
    }
    return true;
  }

  private serve(index: number): void {
    const queue = this.queues[index].queue;
    if (!queue || !this.operational()) return;
    this.shared.countNotification();
    try {
      this.device.queueNotify(index, queue);
      if (queue.needsNotification()) this.raiseIsr(VIRTIO_ISR_QUEUE);
    } catch (err) {
      this.fail(`queue ${index}`, err);
    }
  }

  // ---- device-specific configuration (§4.1.4.6) -----------------------------------

  private deviceConfigRead(offset: number, size: number): number {
    const n = this.device.configSize;
    if (offset >= n) return 0;
    try {
      if (offset + size <= n) return (this.device.readConfig(offset, size) & MASK[size]) >>> 0;
      let value = 0;
      for (let i = 0; offset + i < n; i++) value |= (this.device.readConfig(offset + i, 1) & 0xff) << (8 * i);
      return value >>> 0;
    } catch (err) {
      this.fail('device configuration read', err);
      return 0;
    }
  }

  private deviceConfigWrite(offset: number, size: number, value: number): void {
    const n = this.device.configSize;
    if (offset >= n) {
      this.localStats.ignoredWrites++;
      return;
    }
    try {
      if (offset + size <= n) this.device.writeConfig(offset, size, value);
      else for (let i = 0; offset + i < n; i++) this.device.writeConfig(offset + i, 1, (value >>> (8 * i)) & 0xff);
    } catch (err) {
      this.fail('device configuration write', err);
    }
  }

  // ---- configuration space hooks -------------------------------------------------

  /** The BAR access the PCI_CFG window describes now, if valid (§4.1.4.9). */
  private pciCfgWindow(): { offset: number; length: AccessSize } | undefined {
    const c = this.config;
    const cap = this.pciCfgCap;
    const bar = c.getU8(cap + VIRTIO_PCI_CAP_BAR);
    const offset = c.getU32(cap + VIRTIO_PCI_CAP_OFFSET);
    const length = c.getU32(cap + VIRTIO_PCI_CAP_LENGTH);
    if (bar !== VIRTIO_PCI_BAR || (length !== 1 && length !== 2 && length !== 4)) return undefined;
    if (offset % length !== 0 || offset + length > VIRTIO_PCI_BAR_SIZE) return undefined;
    return { offset, length };
  }

  private touchesPciCfgData(offset: number, length: number): boolean {
    const data = this.pciCfgCap + VIRTIO_PCI_CFG_CAP_DATA;
    return offset < data + 4 && data < offset + length;
  }

  private configBeforeRead(offset: number, length: number): void {
    // The I/O thread may have raised the ISR since we last looked.
    if (this.offload && offset < PCI_STATUS + 2 && PCI_STATUS < offset + length) this.refreshInterruptStatus();
    if (!this.touchesPciCfgData(offset, length)) return;
    const w = this.pciCfgWindow();
    if (!w) return;
    const value = this.barRead(VIRTIO_PCI_BAR, w.offset, w.length);
    const data = this.pciCfgCap + VIRTIO_PCI_CFG_CAP_DATA;
    for (let i = 0; i < w.length; i++) this.config.setU8(data + i, (value >>> (8 * i)) & 0xff);
  }

  private configAfterWrite(offset: number, length: number): void {
    // Command.Interrupt-Disable gates the INTx line (PCI 3.0 §6.2.2).
    if (offset < PCI_COMMAND + 2 && PCI_COMMAND < offset + length) this.updateLine();
    if (!this.touchesPciCfgData(offset, length)) return;
    const w = this.pciCfgWindow();
    if (!w) return;
    const data = this.config.getU32(this.pciCfgCap + VIRTIO_PCI_CFG_CAP_DATA);
    this.barWrite(VIRTIO_PCI_BAR, w.offset, w.length, data & MASK[w.length]);
  }
}
