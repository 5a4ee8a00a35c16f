// Guest physical memory: a set of RAM regions, each backed by an anonymous
// host mapping. Every access by guest physical address (GPA) is bounds-checked
// against the regions: guest-supplied addresses and lengths are untrusted, and
// an access that is not entirely inside one region throws GuestMemoryError
// instead of touching host memory (DESIGN.md: conventions).
import { native } from '../native';

export class GuestMemoryError extends Error {
  readonly code = 'EGUESTMEM';
  constructor(
    message: string,
    readonly gpa: number,
    readonly length: number,
  ) {
    super(message);
    this.name = 'GuestMemoryError';
  }
}

export interface MemoryRegion {
  /** KVM memory slot number. */
  readonly slot: number;
  /** First guest physical address. */
  readonly gpa: number;
  readonly size: number;
  /** Native mapping id: lets a worker re-wrap the same pages (see native.mappingBuffer). */
  readonly mappingId: number;
  /** Host virtual address of the first byte, for KVM_SET_USER_MEMORY_REGION. */
  readonly hostAddress: bigint;
  /** Bytes of the region; does not own the pages. */
  readonly bytes: Uint8Array;
  readonly view: DataView;
}

/** Serializable description of the RAM layout, to rebuild GuestMemory in a worker. */
export interface GuestMemoryLayout {
  regions: { slot: number; gpa: number; size: number; mappingId: number }[];
}

const MAX_SAFE_GPA = Number.MAX_SAFE_INTEGER;

export class GuestMemory {
  private readonly regionList: MemoryRegion[] = [];
  private readonly owner: boolean;
  private closed = false;

  private constructor(owner: boolean) {
    this.owner = owner;
  }

  /** Allocates fresh RAM regions. `regions` must not overlap. */
  static allocate(regions: { gpa: number; size: number }[]): GuestMemory {
    const memory = new GuestMemory(true);
    try {
      regions.forEach((r, slot) => {
        const mappingId = native.mapAnonymous(r.size);
        memory.addRegion(slot, r.gpa, r.size, mappingId);
      });
    } catch (err) {
      memory.close();
      throw err;
    }
    return memory;
  }

  /** Wraps the pages of an existing layout (e.g. in a vCPU worker). Does not own them. */
  static attach(layout: GuestMemoryLayout): GuestMemory {
    const memory = new GuestMemory(false);
    for (const r of layout.regions) memory.addRegion(r.slot, r.gpa, r.size, r.mappingId);
    return memory;
  }

  private addRegion(slot: number, gpa: number, size: number, mappingId: number): void {
    if (!Number.isSafeInteger(gpa) || gpa < 0 || !Number.isSafeInteger(size) || size <= 0 || gpa + size > MAX_SAFE_GPA)
      throw new RangeError(`invalid memory region gpa=${gpa} size=${size}`);
    if (gpa % 4096 !== 0 || size % 4096 !== 0)
      throw new RangeError(`memory region at 0x${gpa.toString(16)} (size 0x${size.toString(16)}) is not page aligned`);
    for (const other of this.regionList) {
      if (gpa < other.gpa + other.size && other.gpa < gpa + size)
        throw new RangeError(`memory region at 0x${gpa.toString(16)} overlaps the one at 0x${other.gpa.toString(16)}`);
    }
    const buffer = native.mappingBuffer(mappingId);
    this.regionList.push({
      slot,
      gpa,
      size,
      mappingId,
      hostAddress: native.mappingAddress(mappingId),
      bytes: new Uint8Array(buffer),
      view: new DataView(buffer),
    });
    this.regionList.sort((a, b) => a.gpa - b.gpa);
  }

  get regions(): readonly MemoryRegion[] {
    return this.regionList;
  }

  /** Total RAM bytes. */
  get size(): number {
    return this.regionList.reduce((sum, r) => sum + r.size, 0);
  }

  layout(): GuestMemoryLayout {
    return { regions: this.regionList.map(({ slot, gpa, size, mappingId }) => ({ slot, gpa, size, mappingId })) };
  }

  /** True if [gpa, gpa+length) lies inside one RAM region. */
  contains(gpa: number, length = 1): boolean {
    return this.find(gpa, length) !== undefined;
  }

  private find(gpa: number, length: number): MemoryRegion | undefined {
    if (!Number.isSafeInteger(gpa) || !Number.isSafeInteger(length) || gpa < 0 || length < 0) return undefined;
    for (const r of this.regionList) {
      if (gpa >= r.gpa && gpa - r.gpa + length <= r.size) return r;
    }
    return undefined;
  }

  private region(gpa: number, length: number): MemoryRegion {
    if (this.closed) throw new GuestMemoryError('guest memory is closed', gpa, length);
    const r = this.find(gpa, length);
    if (!r) {
      const where = Number.isFinite(gpa) ? `0x${Math.trunc(gpa).toString(16)}` : String(gpa);
      throw new GuestMemoryError(`guest access of ${length} bytes at ${where} is outside guest RAM`, gpa, length);
    }
    return r;
  }

  /**
   * A live view of [gpa, gpa+length) (no copy). Throws if the range is not
   * inside one region. The view is invalid after close().
   */
  slice(gpa: number, length: number): Uint8Array {
    const r = this.region(gpa, length);
    const offset = gpa - r.gpa;
    return r.bytes.subarray(offset, offset + length);
  }

  read(gpa: number, length: number): Buffer {
    return Buffer.from(this.slice(gpa, length));
  }

  write(gpa: number, data: Uint8Array): void {
    this.slice(gpa, data.length).set(data);
  }

  fill(gpa: number, length: number, value = 0): void {
    this.slice(gpa, length).fill(value);
  }

  readU8(gpa: number): number {
    const r = this.region(gpa, 1);
    return r.bytes[gpa - r.gpa];
  }
  readU16(gpa: number): number {
    const r = this.region(gpa, 2);
    return r.view.getUint16(gpa - r.gpa, true);
  }
  readU32(gpa: number): number {
    const r = this.region(gpa, 4);
    return r.view.getUint32(gpa - r.gpa, true);
  }
  readU64(gpa: number): bigint {
    const r = this.region(gpa, 8);
    return r.view.getBigUint64(gpa - r.gpa, true);
  }
  writeU8(gpa: number, value: number): void {
    const r = this.region(gpa, 1);
    r.bytes[gpa - r.gpa] = value;
  }
  writeU16(gpa: number, value: number): void {
    const r = this.region(gpa, 2);
    r.view.setUint16(gpa - r.gpa, value, true);
  }
  writeU32(gpa: number, value: number): void {
    const r = this.region(gpa, 4);
    r.view.setUint32(gpa - r.gpa, value >>> 0, true);
  }
  writeU64(gpa: number, value: bigint | number): void {
    const r = this.region(gpa, 8);
    r.view.setBigUint64(gpa - r.gpa, BigInt(value), true);
  }

  /** Reads a NUL-terminated string of at most `maxLength` bytes. */
  readCString(gpa: number, maxLength: number): string {
    const bytes: number[] = [];
    for (let i = 0; i < maxLength; i++) {
      const b = this.readU8(gpa + i);
      if (b === 0) break;
      bytes.push(b);
    }
    return Buffer.from(bytes).toString('latin1');
  }

  /** Unmaps owned regions. Views handed out before are invalid afterwards. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.owner) for (const r of this.regionList) native.unmap(r.mappingId);
  }
}
