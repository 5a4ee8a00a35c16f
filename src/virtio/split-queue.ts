// Split virtqueue (virtio 1.2, 2.7), device side, as pure logic over guest
// memory. Every virtio device (block, net, console, rng) drives its queues
// through this class; it knows nothing about transports (MMIO/PCI registers)
// or interrupts.
//
// How a device uses it
// --------------------
//   const q = new SplitQueue({ memory, size, descTable, availRing, usedRing,
//                              eventIdx: negotiated(VIRTIO_F_EVENT_IDX),
//                              indirect: negotiated(VIRTIO_F_INDIRECT_DESC) });
//   // On an available buffer notification (the transport's queue-notify write):
//   try {
//     for (let chain = q.popAvailable(); chain; chain = q.popAvailable()) {
//       const request = q.readChain(chain, MAX_REQUEST_BYTES); // a copy: validate the copy
//       const written = q.writeChain(chain, reply);             // never past the writable space
//       q.pushUsed(chain.head, written);
//     }
//     if (q.needsNotification()) transport.raiseUsedBufferInterrupt();
//   } catch (err) {
//     if (!(err instanceof VirtqueueError)) throw err;
//     // The guest broke the queue: report it on the VMM side, set
//     // DEVICE_NEEDS_RESET in the device status (virtio 1.2, 2.1.2) and send a
//     // configuration change notification. That is the device's job, not ours.
//   }
// A device that completes requests later (asynchronously) calls pushUsed() and
// needsNotification() when each completes. To batch notifications a device may
// call setNotificationSuppression(true) while it drains the ring and
// setNotificationSuppression(false) afterwards, then pop once more (a buffer
// added in between would otherwise be missed, virtio 1.2, 2.7.10).
//
// The guest is hostile
// --------------------
// Everything read from guest memory (indices, descriptors, lengths, flags) is
// untrusted and may change under our feet (the vCPUs run concurrently). DESIGN:
// "a bad guest gets an error visible to the guest or a clear VMM-side report,
// never a crash of the host process or an access outside guest RAM". So:
//  - every descriptor field is read exactly once (no double fetch) and checked
//    before use; every index is checked against its table before it is used;
//  - every chain walk is bounded (queue size, indirect table entries) and the
//    total bytes of a chain are bounded (maxChainBytes), so host work per pop
//    is bounded whatever the guest writes;
//  - every buffer handed to the device lies entirely inside guest RAM;
//  - every guest error throws a VirtqueueError with a distinct `code`, never a
//    plain exception, and leaves the queue "broken": later pops and pushes
//    throw QUEUE_BROKEN until reset(), like a real device that stops
//    processing a queue once the driver has made a mess of it.
// Geometry (queue size and ring addresses, written by the driver through the
// transport) is validated in the constructor.
//
// Memory ordering: the rings are shared with vCPU threads. Where the spec asks
// for a barrier (virtio 1.2, 2.7.8.2: used element before used idx; 2.7.7.2 /
// 2.7.10: publish our index before reading the driver's event field) we issue
// a full barrier with an Atomics operation on a private SharedArrayBuffer cell
// (V8 emits a locked instruction on x86-64, which orders all earlier stores
// before all later loads, and the call is also a compiler barrier).
import { GuestMemory, GuestMemoryError, MemoryRegion } from '../memory/guest-memory';

// Descriptor flags (virtio 1.2, 2.7.5, struct virtq_desc).
/** Buffer continues via the `next` field. */
export const VIRTQ_DESC_F_NEXT = 1;
/** Buffer is device write-only (otherwise device read-only). */
export const VIRTQ_DESC_F_WRITE = 2;
/** Buffer holds a table of indirect descriptors (virtio 1.2, 2.7.5.3). */
export const VIRTQ_DESC_F_INDIRECT = 4;

/** avail.flags: the driver does not want used buffer notifications (virtio 1.2, 2.7.6, 2.7.7). */
export const VIRTQ_AVAIL_F_NO_INTERRUPT = 1;
/** used.flags: the device does not want available buffer notifications (virtio 1.2, 2.7.8, 2.7.10). */
export const VIRTQ_USED_F_NO_NOTIFY = 1;

// Feature bits (virtio 1.2, 6 "Reserved Feature Bits").
export const VIRTIO_F_INDIRECT_DESC = 28;
export const VIRTIO_F_EVENT_IDX = 29;

/** Largest queue size; queue sizes are powers of two (virtio 1.2, 2.7). */
export const MAX_QUEUE_SIZE = 32768;
/**
 * Most descriptors accepted in one indirect table. The spec forbids chains
 * longer than the queue size (virtio 1.2, 2.7.5.3.1), whose maximum is 32768
 * (2.7); Linux may exceed a small queue's size inside an indirect table, so we
 * bound by the largest queue size instead, which bounds host work per pop.
 */
export const MAX_INDIRECT_ENTRIES = MAX_QUEUE_SIZE;
/** Default bound on the total bytes of one chain (the spec's own bound is 2^32, virtio 1.2, 2.7.5.2). */
export const DEFAULT_MAX_CHAIN_BYTES = 256 * 1024 * 1024;

// Layout facts (virtio 1.2, 2.7: the size/alignment table; 2.7.5, 2.7.6, 2.7.8: the structs).
const DESC_SIZE = 16; // struct virtq_desc: le64 addr, le32 len, le16 flags, le16 next
const DESC_ADDR = 0;
const DESC_LEN = 8;
const DESC_FLAGS = 12;
const DESC_NEXT = 14;
const DESC_TABLE_ALIGN = 16;
const AVAIL_ALIGN = 2;
const USED_ALIGN = 4;
const RING_FLAGS = 0; // avail.flags / used.flags
const RING_IDX = 2; // avail.idx / used.idx
const RING_ENTRIES = 4; // avail.ring[] / used.ring[]
const AVAIL_ENTRY_SIZE = 2; // le16 head index
const USED_ELEM_SIZE = 8; // struct virtq_used_elem: le32 id, le32 len
const USED_ELEM_LEN = 4;
const MAX_CHAIN_BYTES_LIMIT = 2 ** 32; // drivers MUST NOT add chains longer than 2^32 bytes (2.7.5.2)
const U64_LIMIT = 1n << 64n;

/** Bytes of each area for a queue of `size` entries, event fields included (virtio 1.2, 2.7). */
export function descTableBytes(size: number): number {
  return DESC_SIZE * size;
}
export function availRingBytes(size: number): number {
  return 6 + AVAIL_ENTRY_SIZE * size; // flags, idx, ring[size], used_event
}
export function usedRingBytes(size: number): number {
  return 6 + USED_ELEM_SIZE * size; // flags, idx, ring[size], avail_event
}

export type VirtqueueErrorCode =
  // Geometry and options (constructor).
  | 'BAD_QUEUE_SIZE'
  | 'MISALIGNED_AREA'
  | 'AREA_OUTSIDE_RAM'
  | 'AREAS_OVERLAP'
  | 'BAD_OPTION'
  // Guest errors found by popAvailable.
  | 'AVAIL_IDX_JUMP'
  | 'HEAD_OUT_OF_RANGE'
  | 'NEXT_OUT_OF_RANGE'
  | 'CHAIN_TOO_LONG'
  | 'BUFFER_WRAPS'
  | 'BUFFER_OUTSIDE_RAM'
  | 'READABLE_AFTER_WRITABLE'
  | 'CHAIN_TOO_LARGE'
  | 'INDIRECT_NOT_NEGOTIATED'
  | 'INDIRECT_WITH_NEXT'
  | 'INDIRECT_EMPTY'
  | 'INDIRECT_BAD_LENGTH'
  | 'INDIRECT_TOO_LARGE'
  | 'INDIRECT_OUTSIDE_RAM'
  | 'NESTED_INDIRECT'
  | 'INDIRECT_NEXT_OUT_OF_RANGE'
  | 'INDIRECT_CHAIN_TOO_LONG'
  // State.
  | 'QUEUE_BROKEN'
  | 'MEMORY_ACCESS'
  // Device (caller) bugs.
  | 'USED_OVERFLOW'
  | 'INVALID_ARGUMENT';

export class VirtqueueError extends Error {
  constructor(
    readonly code: VirtqueueErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'VirtqueueError';
  }
}

/** A guest buffer, entirely inside one RAM region. */
export interface Segment {
  readonly gpa: number;
  readonly length: number;
}

/** One descriptor chain taken from the available ring. */
export interface Chain {
  /** Head descriptor index: what pushUsed() reports back. */
  readonly head: number;
  /** Device-readable buffers, in chain order (zero-length buffers are left out). */
  readonly readable: readonly Segment[];
  /** Device-writable buffers, in chain order, all after the readable ones. */
  readonly writable: readonly Segment[];
  readonly readableBytes: number;
  readonly writableBytes: number;
}

export interface SplitQueueOptions {
  memory: GuestMemory;
  /** Queue size (number of descriptors): a power of two, 1..32768. */
  size: number;
  /** Guest physical addresses of the three areas (Descriptor, Driver, Device Area). */
  descTable: number;
  availRing: number;
  usedRing: number;
  /** VIRTIO_F_EVENT_IDX was negotiated. */
  eventIdx: boolean;
  /** VIRTIO_F_INDIRECT_DESC was negotiated. */
  indirect: boolean;
  /** Bound on readable + writable bytes of one chain; default 256 MiB, at most 2^32. */
  maxChainBytes?: number;
  /** Initial last_avail_idx / used idx (restoring a saved queue); default 0. */
  initialLastAvailIdx?: number;
  initialUsedIdx?: number;
}

export interface QueueGeometry {
  size: number;
  descTable: number;
  availRing: number;
  usedRing: number;
}

// A full memory barrier: a locked read-modify-write on a private shared cell.
const fenceCell = new Int32Array(new SharedArrayBuffer(4));
function fullBarrier(): void {
  Atomics.add(fenceCell, 0, 0);
}

function hex(n: number | bigint): string {
  return `0x${n.toString(16)}`;
}

interface Descriptor {
  addr: bigint;
  len: number;
  flags: number;
  next: number;
}

/** Mutable state of one chain walk. */
interface Walk {
  head: number;
  readable: Segment[];
  writable: Segment[];
  readableBytes: number;
  writableBytes: number;
  sawWritable: boolean;
}

export class SplitQueue {
  readonly memory: GuestMemory;
  readonly size: number;
  readonly descTable: number;
  readonly availRing: number;
  readonly usedRing: number;
  readonly eventIdx: boolean;
  readonly indirect: boolean;
  readonly maxChainBytes: number;

  private readonly initialLastAvailIdx: number;
  private readonly initialUsedIdx: number;
  private lastAvail = 0;
  private used = 0;
  /** used.idx when needsNotification() last ran. */
  private usedAtLastCheck = 0;
  private suppressed = false;
  /** The avail_event value we last wrote, or -1 if unknown (EVENT_IDX only). */
  private publishedAvailEvent = -1;
  private brokenBy: VirtqueueError | undefined;

  constructor(options: SplitQueueOptions) {
    SplitQueue.validateGeometry(options.memory, options);
    const maxChainBytes = options.maxChainBytes ?? DEFAULT_MAX_CHAIN_BYTES;
    if (!Number.isSafeInteger(maxChainBytes) || maxChainBytes < 1 || maxChainBytes > MAX_CHAIN_BYTES_LIMIT)
      throw new VirtqueueError('BAD_OPTION', `maxChainBytes ${maxChainBytes} is not in 1..2^32`);
    const lastAvail = options.initialLastAvailIdx ?? 0;
    const used = options.initialUsedIdx ?? 0;
    for (const [name, v] of [
      ['initialLastAvailIdx', lastAvail],
      ['initialUsedIdx', used],
    ] as const) {
      if (!Number.isInteger(v) || v < 0 || v > 0xffff) throw new VirtqueueError('BAD_OPTION', `${name} ${v} is not a u16`);
    }
    if (((lastAvail - used) & 0xffff) > options.size)
      throw new VirtqueueError('BAD_OPTION', `initial indices avail=${lastAvail} used=${used} leave more than ${options.size} chains in flight`);

    this.memory = options.memory;
    this.size = options.size;
    this.descTable = options.descTable;
    this.availRing = options.availRing;
    this.usedRing = options.usedRing;
    this.eventIdx = options.eventIdx;
    this.indirect = options.indirect;
    this.maxChainBytes = maxChainBytes;
    this.initialLastAvailIdx = lastAvail;
    this.initialUsedIdx = used;
    this.reset();
  }

  /**
   * Throws VirtqueueError unless the geometry is usable: size a power of two in
   * 1..32768, each area aligned and entirely inside one RAM region (event
   * fields included), no two areas overlapping (virtio 1.2, 2.7 and 2.7.1).
   */
  static validateGeometry(memory: GuestMemory, geometry: QueueGeometry): void {
    const { size } = geometry;
    if (!Number.isInteger(size) || size < 1 || size > MAX_QUEUE_SIZE || (size & (size - 1)) !== 0)
      throw new VirtqueueError('BAD_QUEUE_SIZE', `queue size ${size} is not a power of two in 1..${MAX_QUEUE_SIZE}`);
    const areas = [
      { name: 'descriptor table', gpa: geometry.descTable, length: descTableBytes(size), align: DESC_TABLE_ALIGN },
      { name: 'available ring', gpa: geometry.availRing, length: availRingBytes(size), align: AVAIL_ALIGN },
      { name: 'used ring', gpa: geometry.usedRing, length: usedRingBytes(size), align: USED_ALIGN },
    ];
    for (const a of areas) {
      if (!Number.isSafeInteger(a.gpa) || a.gpa < 0 || !memory.contains(a.gpa, a.length))
        throw new VirtqueueError(
          'AREA_OUTSIDE_RAM',
          `${a.name} at ${Number.isSafeInteger(a.gpa) ? hex(a.gpa) : String(a.gpa)} (${a.length} bytes) is not inside guest RAM`,
        );
      if (a.gpa % a.align !== 0)
        throw new VirtqueueError('MISALIGNED_AREA', `${a.name} at ${hex(a.gpa)} is not ${a.align}-byte aligned`);
    }
    for (let i = 0; i < areas.length; i++) {
      for (let j = i + 1; j < areas.length; j++) {
        const a = areas[i];
        const b = areas[j];
        if (a.gpa < b.gpa + b.length && b.gpa < a.gpa + a.length)
          throw new VirtqueueError('AREAS_OVERLAP', `${a.name} at ${hex(a.gpa)} overlaps ${b.name} at ${hex(b.gpa)}`);
      }
    }
  }

  /** The device's next index into the available ring (free-running u16). */
  get lastAvailIdx(): number {
    return this.lastAvail;
  }

  /** The used ring's idx as the device last wrote it (free-running u16). */
  get usedIdx(): number {
    return this.used;
  }

  /** The error that broke the queue, if the guest broke it; cleared by reset(). */
  get broken(): VirtqueueError | undefined {
    return this.brokenBy;
  }

  /** Chains popped and not yet pushed back. */
  get inFlight(): number {
    return (this.lastAvail - this.used) & 0xffff;
  }

  /** Back to the initial indices, notifications enabled, not broken. Guest memory is not touched. */
  reset(): void {
    this.lastAvail = this.initialLastAvailIdx;
    this.used = this.initialUsedIdx;
    this.usedAtLastCheck = this.used;
    this.suppressed = false;
    this.publishedAvailEvent = -1;
    this.brokenBy = undefined;
  }

  /**
   * The next available chain, or undefined if the driver has made none
   * available. Throws VirtqueueError (and breaks the queue) if the guest has
   * written anything invalid.
   */
  popAvailable(): Chain | undefined {
    this.checkNotBroken();
    try {
      let availIdx = this.memory.readU16(this.availRing + RING_IDX);
      if (availIdx === this.lastAvail) {
        if (!this.eventIdx || this.suppressed || this.publishedAvailEvent === this.lastAvail) return undefined;
        // Idle with notifications wanted: publish avail_event = last_avail_idx
        // so the driver notifies on its next buffer (2.7.10), then look again
        // in case it added one before seeing our write.
        this.writeAvailEvent(this.lastAvail);
        availIdx = this.memory.readU16(this.availRing + RING_IDX);
        if (availIdx === this.lastAvail) return undefined;
      }
      // The driver never decrements idx and the ring holds at most `size`
      // entries (2.7.6.1, 2.7.13), so more than `size` new entries is garbage.
      const pending = (availIdx - this.lastAvail) & 0xffff;
      if (pending > this.size)
        throw new VirtqueueError(
          'AVAIL_IDX_JUMP',
          `avail.idx moved from ${this.lastAvail} to ${availIdx}: ${pending} new entries in a queue of ${this.size}`,
        );
      // The driver fills the ring entry and descriptors before it bumps idx
      // (barrier on its side, 2.7.13.3.1); x86 keeps our loads in order, so
      // what we read below is at least as new as the idx we just read.
      const slot = this.lastAvail % this.size;
      const head = this.memory.readU16(this.availRing + RING_ENTRIES + AVAIL_ENTRY_SIZE * slot);
      if (head >= this.size)
        throw new VirtqueueError('HEAD_OUT_OF_RANGE', `avail.ring[${slot}] = ${head} is not below the queue size ${this.size}`);
      const chain = this.walkChain(head);
      this.lastAvail = (this.lastAvail + 1) & 0xffff;
      return chain;
    } catch (err) {
      throw this.fail(err);
    }
  }

  /** Copies up to `maxBytes` of the chain's readable bytes, starting `offset` bytes in. */
  readChain(chain: Chain, maxBytes = chain.readableBytes, offset = 0): Uint8Array {
    checkCount('maxBytes', maxBytes);
    checkCount('offset', offset);
    const total = Math.min(maxBytes, Math.max(0, chain.readableBytes - offset));
    const out = new Uint8Array(total);
    try {
      let skip = offset;
      let pos = 0;
      for (const s of chain.readable) {
        if (pos >= total) break;
        if (skip >= s.length) {
          skip -= s.length;
          continue;
        }
        const n = Math.min(s.length - skip, total - pos);
        out.set(this.memory.slice(s.gpa + skip, n), pos);
        pos += n;
        skip = 0;
      }
    } catch (err) {
      throw wrapMemoryError(err);
    }
    return out;
  }

  /**
   * Copies `data` into the chain's writable buffers in order, starting
   * `offset` bytes into the writable space. Returns the bytes written: never
   * more than the writable space left.
   */
  writeChain(chain: Chain, data: Uint8Array, offset = 0): number {
    checkCount('offset', offset);
    const total = Math.min(data.length, Math.max(0, chain.writableBytes - offset));
    try {
      let skip = offset;
      let pos = 0;
      for (const s of chain.writable) {
        if (pos >= total) break;
        if (skip >= s.length) {
          skip -= s.length;
          continue;
        }
        const n = Math.min(s.length - skip, total - pos);
        this.memory.write(s.gpa + skip, data.subarray(pos, pos + n));
        pos += n;
        skip = 0;
      }
    } catch (err) {
      throw wrapMemoryError(err);
    }
    return total;
  }

  /**
   * Returns chain `head` to the driver with `bytesWritten` bytes written into
   * its writable buffers (virtio 1.2, 2.7.8).
   */
  pushUsed(head: number, bytesWritten: number): void {
    this.checkNotBroken();
    if (!Number.isInteger(head) || head < 0 || head >= this.size)
      throw new VirtqueueError('INVALID_ARGUMENT', `used head ${head} is not a descriptor index below ${this.size}`);
    if (!Number.isInteger(bytesWritten) || bytesWritten < 0 || bytesWritten > 0xffffffff)
      throw new VirtqueueError('INVALID_ARGUMENT', `used length ${bytesWritten} is not a u32`);
    if (this.inFlight === 0)
      throw new VirtqueueError('USED_OVERFLOW', `pushUsed(${head}) with no chain in flight (more used entries than chains popped)`);
    try {
      const elem = this.usedRing + RING_ENTRIES + USED_ELEM_SIZE * (this.used % this.size);
      this.memory.writeU32(elem, head);
      this.memory.writeU32(elem + USED_ELEM_LEN, bytesWritten);
      // The element (len included) must be visible before the new idx: the
      // driver reads entries up to idx as soon as it sees it (2.7.8.2).
      fullBarrier();
      this.used = (this.used + 1) & 0xffff;
      this.memory.writeU16(this.usedRing + RING_IDX, this.used);
    } catch (err) {
      throw wrapMemoryError(err);
    }
  }

  /**
   * Whether the driver wants a used buffer notification for the entries
   * pushed since the last call (virtio 1.2, 2.7.7.2): avail.flags
   * NO_INTERRUPT without EVENT_IDX, used_event with it. False if nothing was
   * pushed since the last call.
   */
  needsNotification(): boolean {
    const oldIdx = this.usedAtLastCheck;
    const newIdx = this.used;
    this.usedAtLastCheck = newIdx;
    if (oldIdx === newIdx) return false;
    try {
      // Our used.idx store must be visible before we read the driver's
      // suppression field, or we can miss the notification it asks for.
      fullBarrier();
      if (!this.eventIdx) {
        const flags = this.memory.readU16(this.availRing + RING_FLAGS);
        return (flags & VIRTQ_AVAIL_F_NO_INTERRUPT) === 0;
      }
      // used_event follows avail.ring[size] (2.7.6).
      const usedEvent = this.memory.readU16(this.availRing + RING_ENTRIES + AVAIL_ENTRY_SIZE * this.size);
      return needEvent(usedEvent, newIdx, oldIdx);
    } catch (err) {
      throw wrapMemoryError(err);
    }
  }

  /**
   * Advises the driver whether to send available buffer notifications
   * (virtio 1.2, 2.7.10): used.flags NO_NOTIFY without EVENT_IDX; with it,
   * avail_event = last_avail_idx to ask for a notification on the next buffer,
   * or last_avail_idx - 1 (the farthest index) to ask for none. After
   * re-enabling, the device must pop again: a buffer may have been added
   * while notifications were off.
   */
  setNotificationSuppression(suppress: boolean): void {
    this.checkNotBroken();
    this.suppressed = suppress;
    try {
      if (this.eventIdx) {
        // flags stay 0 with EVENT_IDX (2.7.10); only avail_event speaks.
        this.writeAvailEvent(suppress ? (this.lastAvail - 1) & 0xffff : this.lastAvail);
      } else {
        this.memory.writeU16(this.usedRing + RING_FLAGS, suppress ? VIRTQ_USED_F_NO_NOTIFY : 0);
        fullBarrier();
      }
    } catch (err) {
      throw wrapMemoryError(err);
    }
  }

  // --- internals ---

  private writeAvailEvent(value: number): void {
    // avail_event follows used.ring[size] (2.7.8).
    this.memory.writeU16(this.usedRing + RING_ENTRIES + USED_ELEM_SIZE * this.size, value);
    this.publishedAvailEvent = value;
    // Visible before we next read avail.idx (the driver reads avail_event after
    // writing avail.idx, 2.7.13.4): otherwise both sides can miss each other.
    fullBarrier();
  }

  private checkNotBroken(): void {
    if (this.brokenBy)
      throw new VirtqueueError('QUEUE_BROKEN', `virtqueue needs a reset after a guest error: ${this.brokenBy.message}`);
  }

  /** Records a guest error and returns it (as a VirtqueueError) to throw. */
  private fail(err: unknown): unknown {
    const e = wrapMemoryError(err);
    if (e instanceof VirtqueueError) this.brokenBy = e;
    return e;
  }

  private readDescriptor(gpa: number): Descriptor {
    // Each field is read once; only these copies are used afterwards.
    return {
      addr: this.memory.readU64(gpa + DESC_ADDR),
      len: this.memory.readU32(gpa + DESC_LEN),
      flags: this.memory.readU16(gpa + DESC_FLAGS),
      next: this.memory.readU16(gpa + DESC_NEXT),
    };
  }

  private walkChain(head: number): Chain {
    const walk: Walk = { head, readable: [], writable: [], readableBytes: 0, writableBytes: 0, sawWritable: false };
    let index = head;
    // `next` is checked against the table size, so a chain of more than
    // `size` descriptors must visit one twice: this bound is the loop check
    // (2.7.5.2: loops are forbidden; 2.7.5.3.1: no chain longer than the queue).
    for (let count = 1; ; count++) {
      if (count > this.size)
        throw new VirtqueueError(
          'CHAIN_TOO_LONG',
          `chain from head ${head} has more than ${this.size} descriptors (a loop in the descriptor table)`,
        );
      const desc = this.readDescriptor(this.descTable + DESC_SIZE * index);
      if (desc.flags & VIRTQ_DESC_F_INDIRECT) {
        // Zero or more direct descriptors, then one indirect one (2.7.5.3.2).
        if (!this.indirect)
          throw new VirtqueueError('INDIRECT_NOT_NEGOTIATED', `descriptor ${index} is indirect but VIRTIO_F_INDIRECT_DESC was not negotiated`);
        if (desc.flags & VIRTQ_DESC_F_NEXT)
          throw new VirtqueueError('INDIRECT_WITH_NEXT', `descriptor ${index} sets both INDIRECT and NEXT`);
        this.walkIndirect(walk, index, desc);
        break;
      }
      this.addBuffer(walk, desc, `descriptor ${index}`);
      if (!(desc.flags & VIRTQ_DESC_F_NEXT)) break;
      if (desc.next >= this.size)
        throw new VirtqueueError('NEXT_OUT_OF_RANGE', `descriptor ${index} chains to ${desc.next}, not below the queue size ${this.size}`);
      index = desc.next;
    }
    return {
      head,
      readable: walk.readable,
      writable: walk.writable,
      readableBytes: walk.readableBytes,
      writableBytes: walk.writableBytes,
    };
  }

  /** Walks the indirect table that descriptor `index` (`desc`) points at (virtio 1.2, 2.7.5.3). */
  private walkIndirect(walk: Walk, index: number, desc: Descriptor): void {
    // The WRITE flag of the descriptor pointing at the table is ignored (2.7.5.3.2).
    const where = `indirect table of descriptor ${index}`;
    if (desc.len === 0) throw new VirtqueueError('INDIRECT_EMPTY', `${where} has length 0`);
    if (desc.len % DESC_SIZE !== 0)
      throw new VirtqueueError('INDIRECT_BAD_LENGTH', `${where} has length ${desc.len}, not a multiple of ${DESC_SIZE}`);
    const entries = desc.len / DESC_SIZE;
    if (entries > MAX_INDIRECT_ENTRIES)
      throw new VirtqueueError('INDIRECT_TOO_LARGE', `${where} has ${entries} entries (at most ${MAX_INDIRECT_ENTRIES})`);
    if (desc.addr + BigInt(desc.len) > U64_LIMIT || desc.addr > BigInt(Number.MAX_SAFE_INTEGER) || !this.memory.contains(Number(desc.addr), desc.len))
      throw new VirtqueueError('INDIRECT_OUTSIDE_RAM', `${where} at ${hex(desc.addr)} (${desc.len} bytes) is not inside one guest RAM region`);
    const table = Number(desc.addr);
    let i = 0;
    // As for the main table, `entries` bounds the walk and catches loops.
    for (let count = 1; ; count++) {
      if (count > entries)
        throw new VirtqueueError('INDIRECT_CHAIN_TOO_LONG', `${where} chains more than its ${entries} entries (a loop)`);
      const d = this.readDescriptor(table + DESC_SIZE * i);
      if (d.flags & VIRTQ_DESC_F_INDIRECT)
        throw new VirtqueueError('NESTED_INDIRECT', `entry ${i} of the ${where} is itself indirect (2.7.5.3.1)`);
      this.addBuffer(walk, d, `entry ${i} of the ${where}`);
      if (!(d.flags & VIRTQ_DESC_F_NEXT)) break;
      if (d.next >= entries)
        throw new VirtqueueError('INDIRECT_NEXT_OUT_OF_RANGE', `entry ${i} of the ${where} chains to ${d.next}, not below ${entries}`);
      i = d.next;
    }
  }

  private addBuffer(walk: Walk, desc: Descriptor, where: string): void {
    const writable = (desc.flags & VIRTQ_DESC_F_WRITE) !== 0;
    // Device-writable buffers come after all device-readable ones (2.7.4.2).
    if (!writable && walk.sawWritable)
      throw new VirtqueueError('READABLE_AFTER_WRITABLE', `${where} is device-readable but follows a device-writable one`);
    if (writable) walk.sawWritable = true;
    if (desc.addr + BigInt(desc.len) > U64_LIMIT)
      throw new VirtqueueError('BUFFER_WRAPS', `${where}: buffer at ${hex(desc.addr)} + ${desc.len} bytes wraps past 2^64`);
    if (desc.len === 0) return; // allowed, but carries no bytes: no segment
    const pieces = this.inRam(desc.addr, desc.len);
    if (!pieces)
      throw new VirtqueueError('BUFFER_OUTSIDE_RAM', `${where}: buffer at ${hex(desc.addr)} (${desc.len} bytes) is not inside guest RAM`);
    const total = walk.readableBytes + walk.writableBytes + desc.len;
    if (total > this.maxChainBytes)
      throw new VirtqueueError('CHAIN_TOO_LARGE', `chain from head ${walk.head} holds more than ${this.maxChainBytes} bytes`);
    if (writable) {
      walk.writable.push(...pieces);
      walk.writableBytes += desc.len;
    } else {
      walk.readable.push(...pieces);
      walk.readableBytes += desc.len;
    }
  }

  /**
   * [addr, addr+len) as segments each inside one RAM region (a buffer may
   * straddle adjacent regions), or undefined if any byte is not RAM.
   */
  private inRam(addr: bigint, len: number): Segment[] | undefined {
    if (addr > BigInt(Number.MAX_SAFE_INTEGER - len)) return undefined;
    let gpa = Number(addr);
    if (this.memory.contains(gpa, len)) return [{ gpa, length: len }];
    const pieces: Segment[] = [];
    let left = len;
    while (left > 0) {
      const r: MemoryRegion | undefined = this.memory.regions.find((x) => gpa >= x.gpa && gpa < x.gpa + x.size);
      if (!r) return undefined;
      const n = Math.min(left, r.gpa + r.size - gpa);
      pieces.push({ gpa, length: n });
      gpa += n;
      left -= n;
    }
    return pieces;
  }
}

/**
 * vring_need_event (virtio 1.2, 2.7.7.2 and 2.7.10; the helper in Appendix A,
 * virtio_queue.h): the other side asked to be notified once the index passes
 * `eventIdx`, i.e. when eventIdx lies in [oldIdx, newIdx) in u16 arithmetic.
 */
export function needEvent(eventIdx: number, newIdx: number, oldIdx: number): boolean {
  return ((newIdx - eventIdx - 1) & 0xffff) < ((newIdx - oldIdx) & 0xffff);
}

function checkCount(name: string, v: number): void {
  if (!Number.isSafeInteger(v) || v < 0) throw new VirtqueueError('INVALID_ARGUMENT', `${name} ${v} is not a byte count`);
}

function wrapMemoryError(err: unknown): unknown {
  if (err instanceof GuestMemoryError) return new VirtqueueError('MEMORY_ACCESS', err.message);
  return err;
}
