// Splits a byte stream into "\n"-terminated lines (the daemon protocol's
// framing) with a bound on line length, and hands back the bytes after the
// last line taken when a connection switches to a raw stream (console).
//
// Pull-based: push() the chunks as they come, then call next() until it
// returns undefined. A line longer than `maxBytes` is reported once as
// { tooLong: true } and its bytes are dropped up to the next "\n", so the
// stream stays in step; the splitter never holds more than `maxBytes`.

export type SplitResult = { line: string } | { tooLong: true };

export class LineSplitter {
  private chunks: Buffer[] = [];
  private buffered = 0;
  /** Dropping the rest of an over-long line. */
  private discarding = false;

  constructor(readonly maxBytes: number) {}

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
  }

  next(): SplitResult | undefined {
    for (;;) {
      if (this.buffered === 0) return undefined;
      const data = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
      const newline = data.indexOf(0x0a);
      if (this.discarding) {
        if (newline < 0) {
          this.set(Buffer.alloc(0));
          return undefined;
        }
        this.discarding = false;
        this.set(data.subarray(newline + 1));
        continue;
      }
      if (newline < 0) {
        if (data.length > this.maxBytes) {
          this.discarding = true;
          this.set(Buffer.alloc(0));
          return { tooLong: true };
        }
        this.set(data);
        return undefined;
      }
      this.set(data.subarray(newline + 1));
      if (newline > this.maxBytes) return { tooLong: true };
      return { line: data.subarray(0, newline).toString('utf8') };
    }
  }

  /** Takes the unread bytes (after the last line returned) and empties the splitter. */
  takeRest(): Buffer {
    const rest = this.discarding ? Buffer.alloc(0) : Buffer.concat(this.chunks);
    this.set(Buffer.alloc(0));
    this.discarding = false;
    return rest;
  }

  private set(data: Buffer): void {
    this.chunks = data.length > 0 ? [data] : [];
    this.buffered = data.length;
  }
}
