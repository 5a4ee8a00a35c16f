// The last N bytes of a VM's console output, replayed to a client that
// attaches (`tskvm console`), so that it sees the prompt the guest printed
// before anyone was looking — as a terminal multiplexer's scrollback does.
//
// A ring of `capacity` bytes: pushing more than that keeps only the newest.

export const DEFAULT_HISTORY_BYTES = 64 * 1024;

export class OutputHistory {
  private readonly ring: Buffer;
  /** Next write position. */
  private head = 0;
  /** Bytes held (≤ capacity). */
  private length = 0;
  /** Bytes pushed since the start. */
  total = 0;

  constructor(readonly capacity: number = DEFAULT_HISTORY_BYTES) {
    if (!Number.isSafeInteger(capacity) || capacity < 1) throw new RangeError(`history capacity must be a positive integer (got ${capacity})`);
    this.ring = Buffer.alloc(capacity);
  }

  push(data: Uint8Array): void {
    this.total += data.length;
    // Only the newest `capacity` bytes can survive.
    const bytes = data.length > this.capacity ? data.subarray(data.length - this.capacity) : data;
    const first = Math.min(bytes.length, this.capacity - this.head);
    this.ring.set(bytes.subarray(0, first), this.head);
    this.ring.set(bytes.subarray(first), 0);
    this.head = (this.head + bytes.length) % this.capacity;
    this.length = Math.min(this.capacity, this.length + bytes.length);
  }

  /** The held bytes, oldest first (a copy). */
  snapshot(): Buffer {
    const start = (this.head - this.length + this.capacity) % this.capacity;
    if (start + this.length <= this.capacity) return Buffer.from(this.ring.subarray(start, start + this.length));
    return Buffer.concat([this.ring.subarray(start), this.ring.subarray(0, this.head)]);
  }
}
