// The last N bytes of guest console output, replayed to a browser that
// connects late so that it sees the prompt (and what led to it) rather than
// an empty terminal waiting for the guest's next byte.
//
// Bounded so that a chatty guest cannot grow the VMM's memory: old bytes are
// dropped from the front. The cut may land inside a UTF-8 sequence or an
// escape sequence; a terminal shows at worst one odd character there, which
// is the price of a byte-exact bound.

export const DEFAULT_HISTORY_BYTES = 64 * 1024;

export class OutputHistory {
  private chunks: Buffer[] = [];
  private size = 0;

  constructor(readonly limit: number = DEFAULT_HISTORY_BYTES) {
    if (!Number.isSafeInteger(limit) || limit < 0) throw new RangeError(`history limit must be a non-negative integer, got ${limit}`);
  }

  /** Bytes held now (at most `limit`). */
  get length(): number {
    return this.size;
  }

  append(data: Uint8Array): void {
    if (data.length === 0 || this.limit === 0) return;
    // Copy: the caller may reuse its buffer, and a large chunk is trimmed to the bound at once.
    const tail = data.length > this.limit ? data.subarray(data.length - this.limit) : data;
    this.chunks.push(Buffer.from(tail));
    this.size += tail.length;
    while (this.size > this.limit) {
      const first = this.chunks[0]!;
      const excess = this.size - this.limit;
      if (first.length <= excess) {
        this.chunks.shift();
        this.size -= first.length;
      } else {
        this.chunks[0] = first.subarray(excess);
        this.size -= excess;
      }
    }
  }

  /** Everything held, oldest first, as one buffer (a copy). */
  snapshot(): Buffer {
    // Keep one chunk: a long-running guest would otherwise leave many small ones.
    if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks, this.size)];
    return Buffer.from(this.chunks[0] ?? Buffer.alloc(0));
  }
}
