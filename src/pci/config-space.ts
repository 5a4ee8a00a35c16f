// Configuration space of one PCI function: the 64-byte type-0 header followed by
// the device-specific area that holds the capability list, 256 bytes in all
// (PCI Local Bus Specification 3.0 §6.1, Figure 6-1).
//
// The guest reaches it through the host bridge (src/pci/host-bridge.ts); the
// device that owns it fills it with the raw setters (`setU8`/`setU16`/`setU32`,
// the id setters, `defineBar`, `addCapability`) which ignore write masks.
//
// Guest writes go through per-byte masks:
//   writeMask  bits the guest may change; all others keep their value (read-only)
//   w1cMask    bits the guest clears by writing 1 (write-1-to-clear); writing 0
//              leaves them alone (§6.2.3: "writing a 1 to it clears the bit")
// Bytes with no mask are read-only; unimplemented and reserved registers read 0
// (§6.1: "Read accesses to reserved or unimplemented registers must be completed
// normally and a data value of 0 returned").
//
// Header (offsets §6.1 Figure 6-1; fields §6.2):
//   0x00 vendor id, 0x02 device id              read-only (§6.2.1)
//   0x04 command                                 (§6.2.2, Figure 6-2) writable:
//        bit 0 I/O space, 1 memory space, 2 bus master, 6 parity error response,
//        8 SERR# enable, 10 interrupt disable. Bits 3 (special cycles), 4 (memory
//        write and invalidate), 5 (VGA palette snoop) and 9 (fast back-to-back) are
//        optional and hardwired to 0; bits 7 and 15:11 are reserved.
//   0x06 status                                  (§6.2.3, Figure 6-3) read-only:
//        bit 3 interrupt status (the device sets it: `setInterruptStatus`), 4
//        capabilities list (set by `addCapability`); write-1-to-clear: 8 master
//        data parity error, 11 signaled target abort, 12 received target abort,
//        13 received master abort, 14 signaled system error, 15 detected parity
//        error (the device or VMM raises them with `raiseStatus`)
//   0x08 revision id, 0x09-0x0b class code      read-only (§6.2.1)
//   0x0c cache line size                         writable (§6.2.4)
//   0x0d latency timer                           writable (§6.2.4); no effect
//   0x0e header type                             read-only, 0x00: type 0, single function
//   0x0f BIST                                    read-only 0: not BIST capable (§6.2.4)
//   0x10-0x24 base address registers 0-5        (§6.2.5.1), see BARs below
//   0x28 CardBus CIS pointer                     read-only 0
//   0x2c subsystem vendor id, 0x2e subsystem id  read-only (§6.2.4)
//   0x30 expansion ROM BAR                       read-only 0: no ROM (§6.2.5.2)
//   0x34 capabilities pointer                    read-only (§6.7)
//   0x3c interrupt line                          writable (§6.2.4), firmware/OS scratch
//   0x3d interrupt pin                           read-only: 0 none, 1-4 INTA#-INTD#
//   0x3e min_gnt, 0x3f max_lat                   read-only 0
//   0x40-0xff capabilities, each dword aligned (§6.7), read-only unless the
//        device marks fields writable with `setWritable`/`setWriteOneToClear`
//
// BARs (§6.2.5.1): memory BARs have bit 0 = 0, bits 2:1 the type (00 32-bit, 10
// 64-bit: the BAR and the next one form one 64-bit address) and bit 3
// prefetchable; I/O BARs have bit 0 = 1 and bit 1 reserved. Those bits are
// read-only, as are the address bits below the (power-of-two) size, so the
// sizing protocol is just the write mask at work: the guest writes all ones and
// reads back ~(size - 1) with the type bits, then restores the address. Sizes:
// memory at least 16 bytes (bits 3:0 are the encoding), I/O 4 to 256 bytes
// ("must not consume more than 256 bytes per I/O Base Address register"). The
// upper 16 bits of I/O BARs are hardwired to 0 as §6.2.5.1 allows for PC
// compatibles, so an I/O BAR always lies in the x86 64 KiB port space; a 32-bit
// memory BAR in the 4 GiB space; a 64-bit one anywhere below 2^64.
//
// A BAR decodes while the command register enables its space (bit 0 I/O, bit 1
// memory). After every write (guest or device side) the decoded range of each
// BAR is compared with the last one reported and `onBarChange(index, old, new)`
// is called for each that changed: `old` undefined when it was not decoding,
// `new` undefined when it stopped. A guest may program any address (including
// half-written 64-bit addresses while it writes the two dwords one at a time);
// the ranges reported are always exactly what the registers decode.
//
// Accesses: `read`/`write` take any offset and a size of 1 to 4 bytes. A PCI
// configuration transaction addresses one dword with byte enables (§3.2.2.3.2),
// so an access that crosses a dword boundary is split into one transaction per
// dword, low part first, as the CPU splits an unaligned I/O access. Bytes past
// 0xff read 0xff and ignore writes (there is nothing there: no transaction); an
// invalid offset or size reads all ones and ignores writes. Nothing a guest
// writes can throw.
//
// Hooks for devices that need more than stored bytes (e.g. the virtio-pci
// VIRTIO_PCI_CAP_PCI_CFG window, virtio 1.2 §4.1.4.9, or an MSI-X enable bit):
// `beforeRead(offset, length)` runs before each dword piece is read, so the
// device can refresh the bytes; `afterWrite(offset, length)` runs after each
// piece was applied through the masks.

/** Size of a conventional PCI function's configuration space (§6.1). */
export const PCI_CONFIG_SPACE_SIZE = 256;

// Type 0 header register offsets (§6.1, Figure 6-1).
export const PCI_VENDOR_ID = 0x00;
export const PCI_DEVICE_ID = 0x02;
export const PCI_COMMAND = 0x04;
export const PCI_STATUS = 0x06;
export const PCI_REVISION_ID = 0x08;
/** Class code: programming interface at 0x09, sub-class 0x0a, base class 0x0b. */
export const PCI_CLASS_PROG = 0x09;
export const PCI_CLASS_DEVICE = 0x0a;
export const PCI_CACHE_LINE_SIZE = 0x0c;
export const PCI_LATENCY_TIMER = 0x0d;
export const PCI_HEADER_TYPE = 0x0e;
export const PCI_BIST = 0x0f;
export const PCI_BASE_ADDRESS_0 = 0x10;
export const PCI_CARDBUS_CIS = 0x28;
export const PCI_SUBSYSTEM_VENDOR_ID = 0x2c;
export const PCI_SUBSYSTEM_ID = 0x2e;
export const PCI_ROM_ADDRESS = 0x30;
export const PCI_CAPABILITY_LIST = 0x34;
export const PCI_INTERRUPT_LINE = 0x3c;
export const PCI_INTERRUPT_PIN = 0x3d;
export const PCI_MIN_GNT = 0x3e;
export const PCI_MAX_LAT = 0x3f;
/** First byte after the predefined header: capabilities live in 0x40-0xff (§6.7). */
export const PCI_HEADER_SIZE = 0x40;
/** Number of BAR slots in a type 0 header (§6.2.5.1). */
export const PCI_BAR_COUNT = 6;

// Command register bits (§6.2.2, Figure 6-2).
export const PCI_COMMAND_IO = 1 << 0;
export const PCI_COMMAND_MEMORY = 1 << 1;
export const PCI_COMMAND_MASTER = 1 << 2;
export const PCI_COMMAND_SPECIAL = 1 << 3;
export const PCI_COMMAND_INVALIDATE = 1 << 4;
export const PCI_COMMAND_VGA_PALETTE = 1 << 5;
export const PCI_COMMAND_PARITY = 1 << 6;
export const PCI_COMMAND_SERR = 1 << 8;
export const PCI_COMMAND_FAST_BACK = 1 << 9;
export const PCI_COMMAND_INTX_DISABLE = 1 << 10;
const COMMAND_WRITABLE =
  PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_PARITY | PCI_COMMAND_SERR | PCI_COMMAND_INTX_DISABLE;

// Status register bits (§6.2.3, Figure 6-3).
export const PCI_STATUS_INTERRUPT = 1 << 3;
export const PCI_STATUS_CAP_LIST = 1 << 4;
export const PCI_STATUS_66MHZ = 1 << 5;
export const PCI_STATUS_FAST_BACK = 1 << 7;
export const PCI_STATUS_PARITY = 1 << 8;
export const PCI_STATUS_DEVSEL_MASK = 3 << 9;
export const PCI_STATUS_SIG_TARGET_ABORT = 1 << 11;
export const PCI_STATUS_REC_TARGET_ABORT = 1 << 12;
export const PCI_STATUS_REC_MASTER_ABORT = 1 << 13;
export const PCI_STATUS_SIG_SYSTEM_ERROR = 1 << 14;
export const PCI_STATUS_DETECTED_PARITY = 1 << 15;
/** The error bits, all write-1-to-clear (§6.2.3). */
export const PCI_STATUS_W1C =
  PCI_STATUS_PARITY |
  PCI_STATUS_SIG_TARGET_ABORT |
  PCI_STATUS_REC_TARGET_ABORT |
  PCI_STATUS_REC_MASTER_ABORT |
  PCI_STATUS_SIG_SYSTEM_ERROR |
  PCI_STATUS_DETECTED_PARITY;

// BAR low bits (§6.2.5.1, Figures 6-5 and 6-6).
export const PCI_BAR_SPACE_IO = 0x1;
export const PCI_BAR_MEM_TYPE_64 = 0x4;
export const PCI_BAR_MEM_PREFETCH = 0x8;
const BAR_MEM_ADDRESS_MASK = 0xfffffff0; // bits 3:0 encode the type
const BAR_IO_ADDRESS_MASK = 0xfffffffc; // bits 1:0 encode the type
/** §6.2.5.1 lets PC-compatible devices hardwire I/O BAR bits 31:16 to 0. */
const BAR_IO_WRITABLE_LIMIT = 0xffff;

/** Smallest and largest BAR sizes (§6.2.5.1). */
export const PCI_BAR_MIN_MEMORY_SIZE = 16;
export const PCI_BAR_MIN_IO_SIZE = 4;
export const PCI_BAR_MAX_IO_SIZE = 256;
/** A 32-bit memory BAR needs at least one writable address bit (bit 31). */
export const PCI_BAR_MAX_MEMORY32_SIZE = 2 ** 31;
export const PCI_BAR_MAX_MEMORY64_SIZE = 1n << 63n;

// Capability ids (PCI 3.0 Appendix H; PCI Code and ID Assignment spec §2).
export const PCI_CAP_ID_PM = 0x01;
export const PCI_CAP_ID_MSI = 0x05;
export const PCI_CAP_ID_VNDR = 0x09;
export const PCI_CAP_ID_EXP = 0x10;
export const PCI_CAP_ID_MSIX = 0x11;

export type PciBarKind = 'memory32' | 'memory64' | 'io';

export interface PciBarDefinition {
  readonly kind: PciBarKind;
  /** Power of two; memory ≥ 16 (32-bit ≤ 2 GiB), I/O 4..256. */
  readonly size: number | bigint;
  /** Memory BARs only (§6.2.5.1 bit 3). */
  readonly prefetchable?: boolean;
}

/** An address range a BAR decodes. */
export interface PciBarRange {
  readonly kind: PciBarKind;
  /** Which bus the range belongs on. */
  readonly space: 'memory' | 'io';
  readonly base: bigint;
  readonly size: bigint;
}

/** What `barAddress` reports: the programmed address whether or not it decodes. */
export interface PciBarState {
  readonly kind: PciBarKind;
  readonly address: bigint;
  readonly size: bigint;
  readonly prefetchable: boolean;
  /** The command register enables the BAR's space. */
  readonly decoding: boolean;
}

export type PciBarChangeListener = (barIndex: number, oldRange: PciBarRange | undefined, newRange: PciBarRange | undefined) => void;

/** A programming error by the device model or VMM (never raised by guest accesses). */
export class PciConfigError extends Error {
  readonly code = 'EPCICONFIG';
}

interface BarSlot {
  readonly kind: PciBarKind;
  readonly size: bigint;
  readonly prefetchable: boolean;
}

function sameRange(a: PciBarRange | undefined, b: PciBarRange | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a.kind === b.kind && a.base === b.base && a.size === b.size;
}

function isPowerOfTwo(n: bigint): boolean {
  return n > 0n && (n & (n - 1n)) === 0n;
}

export class PciConfigSpace {
  private readonly bytes = new Uint8Array(PCI_CONFIG_SPACE_SIZE);
  private readonly writeMask = new Uint8Array(PCI_CONFIG_SPACE_SIZE);
  private readonly w1cMask = new Uint8Array(PCI_CONFIG_SPACE_SIZE);
  /** BAR definitions by index; the upper half of a 64-bit BAR is `'upper'`. */
  private readonly bars: (BarSlot | 'upper' | undefined)[] = new Array<BarSlot | 'upper' | undefined>(PCI_BAR_COUNT).fill(undefined);
  /** The range last reported to `onBarChange` for each BAR. */
  private readonly reported: (PciBarRange | undefined)[] = new Array<PciBarRange | undefined>(PCI_BAR_COUNT).fill(undefined);
  private lastCapability = 0;
  private nextCapabilityOffset = PCI_HEADER_SIZE;

  /** Called when a BAR's decoded range changes (see the header comment). The host bridge installs its handler here. */
  onBarChange?: PciBarChangeListener;
  /** Called before each dword piece of a guest read, so the device can refresh the bytes. */
  beforeRead?: (offset: number, length: number) => void;
  /** Called after each dword piece of a guest write has been applied. */
  afterWrite?: (offset: number, length: number) => void;

  constructor() {
    this.setWritable(PCI_COMMAND, 2, COMMAND_WRITABLE);
    this.setWriteOneToClear(PCI_STATUS, 2, PCI_STATUS_W1C);
    this.setWritable(PCI_CACHE_LINE_SIZE, 1, 0xff);
    this.setWritable(PCI_LATENCY_TIMER, 1, 0xff);
    this.setWritable(PCI_INTERRUPT_LINE, 1, 0xff);
  }

  // ---- guest-side access -------------------------------------------------

  /** A guest read of `size` (1-4) bytes at `offset`, little-endian. Never throws on bad arguments. */
  read(offset: number, size: number): number {
    if (!Number.isInteger(size) || size < 1 || size > 4) return 0xffffffff;
    if (!Number.isInteger(offset) || offset < 0 || offset >= PCI_CONFIG_SPACE_SIZE) return size === 4 ? 0xffffffff : 2 ** (8 * size) - 1;
    const end = offset + size;
    let value = 0;
    for (let pos = offset; pos < end; ) {
      const pieceEnd = Math.min(end, (pos & ~3) + 4);
      if (pos >= PCI_CONFIG_SPACE_SIZE) {
        for (let a = pos; a < pieceEnd; a++) value |= 0xff << (8 * (a - offset));
      } else {
        this.beforeRead?.(pos, pieceEnd - pos);
        for (let a = pos; a < pieceEnd; a++) value |= this.bytes[a] << (8 * (a - offset));
      }
      pos = pieceEnd;
    }
    return value >>> 0;
  }

  /** A guest write of `size` (1-4) bytes at `offset`, through the write masks. Never throws on bad arguments. */
  write(offset: number, size: number, value: number): void {
    if (!Number.isInteger(size) || size < 1 || size > 4) return;
    if (!Number.isInteger(offset) || offset < 0 || offset >= PCI_CONFIG_SPACE_SIZE) return;
    const v = typeof value === 'number' && Number.isFinite(value) ? value >>> 0 : 0;
    const end = Math.min(offset + size, PCI_CONFIG_SPACE_SIZE);
    for (let pos = offset; pos < end; ) {
      const pieceEnd = Math.min(end, (pos & ~3) + 4);
      for (let a = pos; a < pieceEnd; a++) this.writeByte(a, (v >>> (8 * (a - offset))) & 0xff);
      this.afterWrite?.(pos, pieceEnd - pos);
      pos = pieceEnd;
    }
    this.syncBars();
  }

  private writeByte(offset: number, byte: number): void {
    const wm = this.writeMask[offset];
    const w1c = this.w1cMask[offset];
    let next = (this.bytes[offset] & ~wm) | (byte & wm);
    next &= ~(byte & w1c);
    this.bytes[offset] = next;
  }

  // ---- device-side raw access (no masks, no hooks) -----------------------

  getU8(offset: number): number {
    return this.bytes[this.checkOffset(offset, 1)];
  }

  getU16(offset: number): number {
    const o = this.checkOffset(offset, 2);
    return this.bytes[o] | (this.bytes[o + 1] << 8);
  }

  getU32(offset: number): number {
    const o = this.checkOffset(offset, 4);
    return (this.bytes[o] | (this.bytes[o + 1] << 8) | (this.bytes[o + 2] << 16) | (this.bytes[o + 3] << 24)) >>> 0;
  }

  setU8(offset: number, value: number): void {
    this.setRaw(offset, 1, value);
  }

  setU16(offset: number, value: number): void {
    this.setRaw(offset, 2, value);
  }

  setU32(offset: number, value: number): void {
    this.setRaw(offset, 4, value);
  }

  /** Copies `data` into the configuration space at `offset`, ignoring masks. */
  setBytes(offset: number, data: ArrayLike<number>): void {
    const o = this.checkOffset(offset, data.length);
    for (let i = 0; i < data.length; i++) this.bytes[o + i] = data[i] & 0xff;
    this.syncBars();
  }

  /** Makes the bits of `mask` in the `size`-byte field at `offset` guest-writable (and the others read-only). */
  setWritable(offset: number, size: number, mask: number): void {
    const o = this.checkOffset(offset, size);
    for (let i = 0; i < size; i++) this.writeMask[o + i] = Math.floor(mask / 2 ** (8 * i)) & 0xff;
  }

  /** Makes the bits of `mask` write-1-to-clear (and no other bits of the field). */
  setWriteOneToClear(offset: number, size: number, mask: number): void {
    const o = this.checkOffset(offset, size);
    for (let i = 0; i < size; i++) {
      const m = Math.floor(mask / 2 ** (8 * i)) & 0xff;
      this.w1cMask[o + i] = m;
      this.writeMask[o + i] &= ~m;
    }
  }

  private setRaw(offset: number, size: number, value: number): void {
    const o = this.checkOffset(offset, size);
    const v = value >>> 0;
    for (let i = 0; i < size; i++) this.bytes[o + i] = (v >>> (8 * i)) & 0xff;
    this.syncBars();
  }

  private checkOffset(offset: number, size: number): number {
    if (!Number.isInteger(offset) || !Number.isInteger(size) || offset < 0 || size < 0 || offset + size > PCI_CONFIG_SPACE_SIZE)
      throw new PciConfigError(`configuration space access out of range: offset=${offset} size=${size}`);
    return offset;
  }

  // ---- identification and interrupts -------------------------------------

  setVendorId(id: number): void {
    this.setU16(PCI_VENDOR_ID, id);
  }

  setDeviceId(id: number): void {
    this.setU16(PCI_DEVICE_ID, id);
  }

  setRevisionId(id: number): void {
    this.setU8(PCI_REVISION_ID, id);
  }

  /** The 24-bit class code: base class << 16 | sub-class << 8 | programming interface (§6.2.1). */
  setClassCode(classCode: number): void {
    const c = classCode >>> 0;
    this.setU8(PCI_CLASS_PROG, c & 0xff);
    this.setU16(PCI_CLASS_DEVICE, (c >>> 8) & 0xffff);
  }

  setSubsystem(subsystemVendorId: number, subsystemId: number): void {
    this.setU16(PCI_SUBSYSTEM_VENDOR_ID, subsystemVendorId);
    this.setU16(PCI_SUBSYSTEM_ID, subsystemId);
  }

  setHeaderType(headerType: number): void {
    this.setU8(PCI_HEADER_TYPE, headerType);
  }

  /** 0 = no interrupt pin, 1-4 = INTA#-INTD# (§6.2.4). */
  setInterruptPin(pin: number): void {
    if (!Number.isInteger(pin) || pin < 0 || pin > 4) throw new PciConfigError(`invalid interrupt pin ${pin}`);
    this.setU8(PCI_INTERRUPT_PIN, pin);
  }

  /** The interrupt line register: written by firmware (or `assignResources`), read by the OS. */
  setInterruptLine(line: number): void {
    this.setU8(PCI_INTERRUPT_LINE, line);
  }

  get interruptLine(): number {
    return this.bytes[PCI_INTERRUPT_LINE];
  }

  get interruptPin(): number {
    return this.bytes[PCI_INTERRUPT_PIN];
  }

  get vendorId(): number {
    return this.getU16(PCI_VENDOR_ID);
  }

  get deviceId(): number {
    return this.getU16(PCI_DEVICE_ID);
  }

  get command(): number {
    return this.getU16(PCI_COMMAND);
  }

  get status(): number {
    return this.getU16(PCI_STATUS);
  }

  get busMasterEnabled(): boolean {
    return (this.command & PCI_COMMAND_MASTER) !== 0;
  }

  /** Command bit 10: the function must not assert INTx# (§6.2.2). */
  get interruptDisabled(): boolean {
    return (this.command & PCI_COMMAND_INTX_DISABLE) !== 0;
  }

  /** Status bit 3 mirrors the function's INTx# request, whatever command bit 10 says (§6.2.3). */
  setInterruptStatus(pending: boolean): void {
    const s = this.status;
    this.setU16(PCI_STATUS, pending ? s | PCI_STATUS_INTERRUPT : s & ~PCI_STATUS_INTERRUPT);
  }

  /** Sets status bits (e.g. the write-1-to-clear error bits) from the device side. */
  raiseStatus(bits: number): void {
    this.setU16(PCI_STATUS, this.status | (bits & 0xffff));
  }

  // ---- capabilities (§6.7) -----------------------------------------------

  /**
   * Appends a capability of `length` bytes (including the id and next-pointer
   * bytes) to the list, dword aligned in 0x40-0xff, and sets status bit 4.
   * Returns its offset; the body is zero and read-only until the device fills
   * it and marks fields writable.
   */
  addCapability(id: number, length: number): number {
    if (!Number.isInteger(id) || id < 0 || id > 0xff) throw new PciConfigError(`invalid capability id ${id}`);
    if (!Number.isInteger(length) || length < 2) throw new PciConfigError(`invalid capability length ${length}`);
    const offset = (this.nextCapabilityOffset + 3) & ~3;
    if (offset + length > PCI_CONFIG_SPACE_SIZE)
      throw new PciConfigError(`no room for a ${length}-byte capability at 0x${offset.toString(16)}`);
    this.bytes[offset] = id;
    this.bytes[offset + 1] = 0; // end of list (§6.7: next pointer 0x00)
    if (this.lastCapability === 0) this.bytes[PCI_CAPABILITY_LIST] = offset;
    else this.bytes[this.lastCapability + 1] = offset;
    this.lastCapability = offset;
    this.nextCapabilityOffset = offset + length;
    this.raiseStatus(PCI_STATUS_CAP_LIST);
    return offset;
  }

  /** Walks the capability list as a driver would (bounded: at most 48 entries fit in 0x40-0xff). */
  capabilities(): { id: number; offset: number }[] {
    const result: { id: number; offset: number }[] = [];
    if ((this.status & PCI_STATUS_CAP_LIST) === 0) return result;
    const seen = new Set<number>();
    let offset = this.bytes[PCI_CAPABILITY_LIST] & 0xfc; // §6.7: the bottom two bits are reserved
    while (offset >= PCI_HEADER_SIZE && !seen.has(offset)) {
      seen.add(offset);
      result.push({ id: this.bytes[offset], offset });
      offset = this.bytes[offset + 1] & 0xfc;
    }
    return result;
  }

  // ---- BARs (§6.2.5.1) ---------------------------------------------------

  /** Declares BAR `index` (a 64-bit BAR also takes `index + 1`); its address starts at 0. */
  defineBar(index: number, definition: PciBarDefinition): void {
    const { kind } = definition;
    const slots = kind === 'memory64' ? 2 : 1;
    if (!Number.isInteger(index) || index < 0 || index + slots > PCI_BAR_COUNT)
      throw new PciConfigError(`invalid BAR index ${index} for ${kind}`);
    for (let i = index; i < index + slots; i++)
      if (this.bars[i] !== undefined) throw new PciConfigError(`BAR ${i} is already defined`);
    let size: bigint;
    try {
      size = BigInt(definition.size);
    } catch {
      throw new PciConfigError(`invalid BAR size ${String(definition.size)}`);
    }
    if (!isPowerOfTwo(size)) throw new PciConfigError(`BAR size ${size} is not a power of two`);
    const prefetchable = definition.prefetchable === true;
    const offset = PCI_BASE_ADDRESS_0 + 4 * index;
    if (kind === 'io') {
      if (size < BigInt(PCI_BAR_MIN_IO_SIZE) || size > BigInt(PCI_BAR_MAX_IO_SIZE))
        throw new PciConfigError(`I/O BAR size ${size} outside ${PCI_BAR_MIN_IO_SIZE}..${PCI_BAR_MAX_IO_SIZE}`);
      if (prefetchable) throw new PciConfigError('I/O BARs cannot be prefetchable');
      this.bytes.fill(0, offset, offset + 4);
      this.bytes[offset] = PCI_BAR_SPACE_IO;
      this.setWritable(offset, 4, BAR_IO_ADDRESS_MASK & BAR_IO_WRITABLE_LIMIT & ~Number(size - 1n));
    } else if (kind === 'memory32') {
      if (size < BigInt(PCI_BAR_MIN_MEMORY_SIZE) || size > BigInt(PCI_BAR_MAX_MEMORY32_SIZE))
        throw new PciConfigError(`32-bit memory BAR size ${size} outside ${PCI_BAR_MIN_MEMORY_SIZE}..2^31`);
      this.bytes.fill(0, offset, offset + 4);
      this.bytes[offset] = prefetchable ? PCI_BAR_MEM_PREFETCH : 0;
      this.setWritable(offset, 4, (BAR_MEM_ADDRESS_MASK & ~Number(size - 1n)) >>> 0);
    } else if (kind === 'memory64') {
      if (size < BigInt(PCI_BAR_MIN_MEMORY_SIZE) || size > PCI_BAR_MAX_MEMORY64_SIZE)
        throw new PciConfigError(`64-bit memory BAR size ${size} outside ${PCI_BAR_MIN_MEMORY_SIZE}..2^63`);
      this.bytes.fill(0, offset, offset + 8);
      this.bytes[offset] = PCI_BAR_MEM_TYPE_64 | (prefetchable ? PCI_BAR_MEM_PREFETCH : 0);
      const mask = ~(size - 1n) & 0xffff_ffff_ffff_fff0n;
      this.setWritable(offset, 4, Number(mask & 0xffff_ffffn));
      this.setWritable(offset + 4, 4, Number(mask >> 32n));
    } else {
      throw new PciConfigError(`invalid BAR kind ${String(kind)}`);
    }
    this.bars[index] = { kind, size, prefetchable };
    if (kind === 'memory64') this.bars[index + 1] = 'upper';
    this.syncBars();
  }

  /** The BAR's definition, or undefined for an unused slot or the upper half of a 64-bit BAR. */
  barDefinition(index: number): { kind: PciBarKind; size: bigint; prefetchable: boolean } | undefined {
    const slot = this.bars[index];
    return slot === undefined || slot === 'upper' ? undefined : { ...slot };
  }

  /** The address BAR `index` holds and whether its space is enabled; undefined if it is not a BAR. */
  barAddress(index: number): PciBarState | undefined {
    if (!Number.isInteger(index) || index < 0 || index >= PCI_BAR_COUNT) return undefined;
    const slot = this.bars[index];
    if (slot === undefined || slot === 'upper') return undefined;
    const offset = PCI_BASE_ADDRESS_0 + 4 * index;
    const low = this.getU32(offset);
    let address: bigint;
    if (slot.kind === 'io') address = BigInt((low & BAR_IO_ADDRESS_MASK) >>> 0);
    else if (slot.kind === 'memory32') address = BigInt((low & BAR_MEM_ADDRESS_MASK) >>> 0);
    else address = (BigInt(this.getU32(offset + 4)) << 32n) | BigInt((low & BAR_MEM_ADDRESS_MASK) >>> 0);
    const enable = slot.kind === 'io' ? PCI_COMMAND_IO : PCI_COMMAND_MEMORY;
    return { kind: slot.kind, address, size: slot.size, prefetchable: slot.prefetchable, decoding: (this.command & enable) !== 0 };
  }

  /** The range BAR `index` decodes now, or undefined when it does not decode. */
  barRange(index: number): PciBarRange | undefined {
    const state = this.barAddress(index);
    if (!state || !state.decoding) return undefined;
    return { kind: state.kind, space: state.kind === 'io' ? 'io' : 'memory', base: state.address, size: state.size };
  }

  /**
   * Firmware-side: programs BAR `index` with `address` (must be aligned to the
   * BAR's size and fit its address space). Decoding is left as it is.
   */
  programBar(index: number, address: bigint | number): void {
    const state = this.barAddress(index);
    if (!state) throw new PciConfigError(`BAR ${index} is not defined`);
    const a = BigInt(address);
    const limit = state.kind === 'io' ? 0x1_0000n : state.kind === 'memory32' ? 1n << 32n : 1n << 64n;
    if (a < 0n || a % state.size !== 0n || a + state.size > limit)
      throw new PciConfigError(`BAR ${index} cannot be placed at 0x${a.toString(16)} (size 0x${state.size.toString(16)})`);
    const offset = PCI_BASE_ADDRESS_0 + 4 * index;
    this.write(offset, 4, Number(a & 0xffff_ffffn));
    if (state.kind === 'memory64') this.write(offset + 4, 4, Number(a >> 32n));
  }

  /** Compares every BAR's decoded range with the last reported one and reports changes. */
  private syncBars(): void {
    let changes: [number, PciBarRange | undefined, PciBarRange | undefined][] | undefined;
    for (let i = 0; i < PCI_BAR_COUNT; i++) {
      const now = this.barRange(i);
      const before = this.reported[i];
      if (sameRange(before, now)) continue;
      this.reported[i] = now;
      (changes ??= []).push([i, before, now]);
    }
    if (!changes) return;
    for (const [i, before, now] of changes) this.onBarChange?.(i, before, now);
  }
}
