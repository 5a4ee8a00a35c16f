// Address-range buses for port I/O and MMIO.
//
// A device claims [base, base+length) and sees offsets relative to base.
// Overlapping claims are rejected at registration. An access that no device
// claims is counted, optionally logged, and reads as all ones (what an ISA/PCI
// bus returns when nobody drives the data lines).
//
// Accesses are 1, 2 or 4 bytes wide; an 8-byte MMIO access is delivered as two
// 4-byte accesses (low half first), so device values always fit a JS number.

export type AccessSize = 1 | 2 | 4;

export interface BusDevice {
  readonly name: string;
  /** Returns the value read at `offset` (relative to the claimed base), `size` bytes wide. */
  read(offset: number, size: AccessSize): number;
  write(offset: number, size: AccessSize, value: number): void;
}

/**
 * For devices whose registers are bytes: an access of 1, 2 or 4 bytes is that
 * many byte accesses at consecutive offsets, least significant byte first
 * (x86 is little-endian). Any other size is treated as 1; a non-number value as 0.
 */
export function readBytewise(offset: number, size: AccessSize, readByte: (offset: number) => number): number {
  const n = size === 2 ? 2 : size === 4 ? 4 : 1;
  let value = 0;
  for (let i = 0; i < n; i++) value |= (readByte(offset + i) & 0xff) << (8 * i);
  return value >>> 0;
}

export function writeBytewise(offset: number, size: AccessSize, value: number, writeByte: (offset: number, byte: number) => void): void {
  const n = size === 2 ? 2 : size === 4 ? 4 : 1;
  const v = typeof value === 'number' && Number.isFinite(value) ? value >>> 0 : 0;
  for (let i = 0; i < n; i++) writeByte(offset + i, (v >>> (8 * i)) & 0xff);
}

export interface BusRange {
  readonly base: number;
  readonly length: number;
  readonly device: BusDevice;
}

export interface UnclaimedAccess {
  address: number;
  size: number;
  isWrite: boolean;
  value?: number;
}

export interface BusOptions {
  /** Called for each access nobody claims (e.g. to log it). */
  onUnclaimed?: (access: UnclaimedAccess) => void;
}

const ALL_ONES: Record<AccessSize, number> = { 1: 0xff, 2: 0xffff, 4: 0xffffffff };

export class BusError extends Error {
  readonly code = 'EBUS';
}

export class Bus {
  /** Sorted by base; lookups scan it (device counts are small). */
  private readonly ranges: BusRange[] = [];
  private lastHit: BusRange | undefined;
  unclaimedReads = 0;
  unclaimedWrites = 0;
  /** Accesses per device name, for statistics. */
  readonly accessCounts = new Map<string, number>();

  constructor(
    readonly name: string,
    readonly addressLimit: number,
    private readonly options: BusOptions = {},
  ) {}

  register(base: number, length: number, device: BusDevice): void {
    if (!Number.isSafeInteger(base) || !Number.isSafeInteger(length) || base < 0 || length <= 0 || base + length > this.addressLimit)
      throw new BusError(`${this.name}: invalid range for ${device.name}: base=0x${base.toString(16)} length=${length}`);
    for (const r of this.ranges) {
      if (base < r.base + r.length && r.base < base + length)
        throw new BusError(
          `${this.name}: ${device.name} at 0x${base.toString(16)}-0x${(base + length - 1).toString(16)} overlaps ${r.device.name} at 0x${r.base.toString(16)}-0x${(r.base + r.length - 1).toString(16)}`,
        );
    }
    this.ranges.push({ base, length, device });
    this.ranges.sort((a, b) => a.base - b.base);
  }

  unregister(device: BusDevice): void {
    for (let i = this.ranges.length - 1; i >= 0; i--) if (this.ranges[i].device === device) this.ranges.splice(i, 1);
    this.lastHit = undefined;
  }

  get registered(): readonly BusRange[] {
    return this.ranges;
  }

  /** The range containing [address, address+size), if one device claims all of it. */
  lookup(address: number, size = 1): BusRange | undefined {
    const hit = this.lastHit;
    if (hit && address >= hit.base && address + size <= hit.base + hit.length) return hit;
    for (const r of this.ranges) {
      if (address >= r.base && address + size <= r.base + r.length) {
        this.lastHit = r;
        return r;
      }
    }
    return undefined;
  }

  read(address: number, size: AccessSize): number {
    const r = this.lookup(address, size);
    if (!r) {
      this.unclaimedReads++;
      this.options.onUnclaimed?.({ address, size, isWrite: false });
      return ALL_ONES[size];
    }
    this.count(r.device.name);
    return (r.device.read(address - r.base, size) & ALL_ONES[size]) >>> 0;
  }

  write(address: number, size: AccessSize, value: number): void {
    const r = this.lookup(address, size);
    if (!r) {
      this.unclaimedWrites++;
      this.options.onUnclaimed?.({ address, size, isWrite: true, value });
      return;
    }
    this.count(r.device.name);
    r.device.write(address - r.base, size, (value & ALL_ONES[size]) >>> 0);
  }

  private count(name: string): void {
    this.accessCounts.set(name, (this.accessCounts.get(name) ?? 0) + 1);
  }
}

/** Port I/O: 16-bit port space. */
export class PioBus extends Bus {
  constructor(options: BusOptions = {}) {
    super('pio', 0x10000, options);
  }
}

/** Memory-mapped I/O: the physical address space outside RAM. */
export class MmioBus extends Bus {
  constructor(options: BusOptions = {}) {
    super('mmio', 2 ** 52, options);
  }
}
