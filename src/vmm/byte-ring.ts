// A single-producer single-consumer byte ring in a SharedArrayBuffer: how
// console bytes cross between the vCPU worker and the main thread.
//
// Why not postMessage per byte: the guest's console output arrives one byte
// per exit, and the worker's event loop is blocked in KVM_RUN, so it cannot
// batch on a timer. A shared ring costs one store and one Atomics.notify per
// byte, is bounded (a stalled reader makes the writer drop and count bytes
// instead of growing memory — the vCPU never blocks on console output), and
// the reader wakes with Atomics.waitAsync without polling.
//
// Layout: Int32 header [write counter, read counter, dropped bytes, closed,
// data signal, space signal], then `capacity` data bytes. Counters grow without bound (mod 2^32) and are
// reduced modulo capacity to index; capacity is a power of two so the
// wrap-around of the counters stays consistent.

const WRITE = 0;
const READ = 1;
const DROPPED = 2;
const CLOSED = 3;
/** Bumped on every write and on close; the reader sleeps on it (no lost wake-ups). */
const DATA_SIGNAL = 4;
/** Bumped on every read and on close; a blocked writer sleeps on it. */
const SPACE_SIGNAL = 5;
const HEADER_BYTES = 32;

export class ByteRing {
  readonly buffer: SharedArrayBuffer;
  readonly capacity: number;
  private readonly header: Int32Array;
  private readonly data: Uint8Array;

  /** Creates a ring, or attaches to one made on another thread (pass its buffer). */
  constructor(bufferOrCapacity: SharedArrayBuffer | number) {
    if (typeof bufferOrCapacity === 'number') {
      const capacity = bufferOrCapacity;
      if (!Number.isInteger(capacity) || capacity < 16 || capacity > 1 << 30 || (capacity & (capacity - 1)) !== 0)
        throw new RangeError(`ByteRing capacity must be a power of two between 16 and 2^30 (got ${capacity})`);
      this.buffer = new SharedArrayBuffer(HEADER_BYTES + capacity);
    } else {
      this.buffer = bufferOrCapacity;
    }
    this.capacity = this.buffer.byteLength - HEADER_BYTES;
    if (this.capacity < 16 || (this.capacity & (this.capacity - 1)) !== 0) throw new RangeError('not a ByteRing buffer');
    this.header = new Int32Array(this.buffer, 0, HEADER_BYTES / 4);
    this.data = new Uint8Array(this.buffer, HEADER_BYTES, this.capacity);
  }

  /** Bytes waiting to be read. */
  get available(): number {
    return (Atomics.load(this.header, WRITE) - Atomics.load(this.header, READ)) >>> 0;
  }

  /** Room for the writer. */
  get space(): number {
    return this.capacity - this.available;
  }

  /** Bytes the writer could not store because the ring was full. */
  get dropped(): number {
    return Atomics.load(this.header, DROPPED) >>> 0;
  }

  get closed(): boolean {
    return Atomics.load(this.header, CLOSED) !== 0;
  }

  /**
   * Writer: stores as many bytes as fit, wakes the reader, and returns the
   * count stored. With `dropExcess`, the rest is counted as dropped.
   */
  write(bytes: Uint8Array, options: { dropExcess?: boolean } = {}): number {
    const write = Atomics.load(this.header, WRITE) >>> 0;
    const n = Math.min(bytes.length, this.space);
    for (let i = 0; i < n; i++) this.data[(write + i) & (this.capacity - 1)] = bytes[i]!;
    if (n > 0) {
      Atomics.store(this.header, WRITE, (write + n) | 0);
      this.signal(DATA_SIGNAL);
    }
    if (options.dropExcess && n < bytes.length) Atomics.add(this.header, DROPPED, bytes.length - n);
    return n;
  }

  /** Writer: one byte; dropped and counted if the ring is full. */
  writeByte(byte: number): void {
    const write = Atomics.load(this.header, WRITE) >>> 0;
    if (((write - (Atomics.load(this.header, READ) >>> 0)) >>> 0) >= this.capacity) {
      Atomics.add(this.header, DROPPED, 1);
      return;
    }
    this.data[write & (this.capacity - 1)] = byte;
    Atomics.store(this.header, WRITE, (write + 1) | 0);
    this.signal(DATA_SIGNAL);
  }

  /** Reader: takes up to `max` bytes (all that are waiting by default). */
  read(max = this.capacity): Uint8Array {
    const read = Atomics.load(this.header, READ) >>> 0;
    const n = Math.min(max, this.available);
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.data[(read + i) & (this.capacity - 1)]!;
    if (n > 0) {
      Atomics.store(this.header, READ, (read + n) | 0);
      this.signal(SPACE_SIGNAL);
    }
    return out;
  }

  /**
   * Writer: stores `record` whole, behind a 4-byte little-endian length, or
   * nothing (false) if it does not fit now. The reader never sees half a
   * record because write() publishes the write counter once, after copying.
   */
  writeRecord(record: Uint8Array): boolean {
    if (record.length > this.capacity - 4) throw new RangeError(`record of ${record.length} bytes is larger than the ring`);
    if (this.space < 4 + record.length) return false;
    const framed = new Uint8Array(4 + record.length);
    new DataView(framed.buffer).setUint32(0, record.length, true);
    framed.set(record, 4);
    this.write(framed);
    return true;
  }

  /** Reader: the next whole record written by writeRecord, or undefined. */
  readRecord(): Uint8Array | undefined {
    if (this.available < 4) return undefined;
    const head = this.read(4);
    const length = new DataView(head.buffer).getUint32(0, true);
    if (length > this.available) throw new RangeError('ByteRing: record ring out of step (mixed record and byte use?)');
    return this.read(length);
  }

  /** Reader: resolves when bytes are waiting or the ring is closed. */
  async waitForData(): Promise<void> {
    for (;;) {
      const signal = Atomics.load(this.header, DATA_SIGNAL);
      if (this.available > 0 || this.closed) return;
      const wait = Atomics.waitAsync(this.header, DATA_SIGNAL, signal);
      if (wait.async) await wait.value;
    }
  }

  /** Writer: resolves when there is room or the ring is closed. */
  async waitForSpace(): Promise<void> {
    for (;;) {
      const signal = Atomics.load(this.header, SPACE_SIGNAL);
      if (this.space > 0 || this.closed) return;
      const wait = Atomics.waitAsync(this.header, SPACE_SIGNAL, signal);
      if (wait.async) await wait.value;
    }
  }

  /** Either side: no more data will come; wakes anyone waiting. */
  close(): void {
    Atomics.store(this.header, CLOSED, 1);
    this.signal(DATA_SIGNAL);
    this.signal(SPACE_SIGNAL);
  }

  private signal(slot: number): void {
    Atomics.add(this.header, slot, 1);
    Atomics.notify(this.header, slot);
  }
}
