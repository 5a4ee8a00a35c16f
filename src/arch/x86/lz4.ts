// LZ4 decompression for the "legacy frame" format, the one the Linux kernel
// uses for CONFIG_KERNEL_LZ4 (`lz4 -l`), written from the format descriptions
// in the lz4 project's doc/lz4_Block_format.md and doc/lz4_Frame_format.md
// ("Legacy frame").
//
// Legacy frame:
//   magic     u32 LE 0x184C2102
//   blocks    each: u32 LE compressed size, then that many bytes of one LZ4
//             block. Every block is independent (no references into earlier
//             blocks) and decompresses to at most 8 MiB.
//   end       the end of the input, or a size word that is another frame's
//             magic (a new legacy frame follows), or a size word that cannot
//             be a block (trailing data). The kernel's build appends the
//             uncompressed size as a u32 LE after the frame: four bytes with
//             nothing after them are taken as that trailer.
//
// LZ4 block: a series of sequences, each
//   token     u8: high nibble = literal length, low nibble = match length - 4
//   lit ext   if the literal nibble is 15: bytes added until one is not 255
//   literals  that many bytes, copied to the output
//   -- the last sequence of a block ends here (the block's end) --
//   offset    u16 LE, 1..65535: how far back the match starts
//   match ext if the match nibble is 15: bytes added until one is not 255
//   the match: (nibble + ext + 4) bytes copied from output[op - offset]; it
//   may overlap the bytes it produces (offset < length repeats a pattern).
//
// Input is untrusted (it comes from a kernel image a user names): every read
// and write is bounds-checked, each loop consumes input, and the output buffer
// is allocated once, never larger than maxOutput.

/** u32 LE magic number at the start of a legacy frame. */
export const LZ4_LEGACY_MAGIC = 0x184c2102;

/** Largest uncompressed size of one legacy-frame block (8 MiB). */
export const LZ4_LEGACY_BLOCK_SIZE = 8 * 1024 * 1024;

/**
 * LZ4_COMPRESSBOUND(8 MiB): the largest compressed size of one legacy block
 * (isize + isize/255 + 16). A size word above it cannot start a block.
 */
export const LZ4_LEGACY_MAX_COMPRESSED = LZ4_LEGACY_BLOCK_SIZE + Math.floor(LZ4_LEGACY_BLOCK_SIZE / 255) + 16;

const MIN_MATCH = 4;

export class Lz4Error extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'Lz4Error';
  }
}

function u32le(b: Uint8Array, at: number): number {
  return (b[at] | (b[at + 1] << 8) | (b[at + 2] << 16) | (b[at + 3] << 24)) >>> 0;
}

interface Block {
  start: number;
  end: number;
}

/** Walks the frame's block headers (no decoding) and returns the blocks' input ranges. */
function scanLegacyFrame(input: Uint8Array): Block[] {
  const n = input.length;
  if (n < 4 || u32le(input, 0) !== LZ4_LEGACY_MAGIC)
    throw new Lz4Error('not an LZ4 legacy frame: missing magic 0x184C2102');
  const blocks: Block[] = [];
  let ip = 4;
  for (;;) {
    const left = n - ip;
    if (left === 0) break; // end of input
    if (left < 4) throw new Lz4Error(`LZ4 input truncated: ${left} stray byte(s) at offset ${ip} where a block size is expected`);
    const size = u32le(input, ip);
    if (size === LZ4_LEGACY_MAGIC) {
      ip += 4; // a new legacy frame starts here; its blocks continue the output
      continue;
    }
    if (left === 4) break; // the trailer the kernel appends: uncompressed size
    if (size > LZ4_LEGACY_MAX_COMPRESSED) break; // not a block size: trailing data ends the stream
    if (size === 0) throw new Lz4Error(`LZ4 block at offset ${ip} has compressed size 0`);
    if (size > left - 4)
      throw new Lz4Error(`LZ4 input truncated: block at offset ${ip} declares ${size} bytes, only ${left - 4} remain`);
    blocks.push({ start: ip + 4, end: ip + 4 + size });
    ip += 4 + size;
  }
  return blocks;
}

/**
 * Decodes one LZ4 block input[ip, ipEnd) into out starting at op, writing at
 * most up to `limit` (exclusive). Returns the new op. Matches may only reach
 * back to `base` (the start of this block's output).
 */
function decodeBlock(
  input: Uint8Array,
  ip: number,
  ipEnd: number,
  out: Uint8Array,
  op: number,
  limit: number,
  limitWhy: string,
): number {
  const base = op;
  const blockAt = ip - 4;
  for (;;) {
    // ip < ipEnd holds here: the block is non-empty and every sequence but the
    // last is followed by at least one more token.
    const token = input[ip++];

    // --- literals
    let lit = token >>> 4;
    if (lit === 15) {
      let b: number;
      do {
        if (ip >= ipEnd) throw new Lz4Error(`LZ4 block at offset ${blockAt}: truncated literal length`);
        b = input[ip++];
        lit += b;
      } while (b === 255);
    }
    if (lit > ipEnd - ip)
      throw new Lz4Error(`LZ4 block at offset ${blockAt}: literal run of ${lit} bytes goes past the end of the block`);
    if (lit > limit - op) throw new Lz4Error(`LZ4 output ${limitWhy}`);
    if (lit < 32) {
      for (let i = 0; i < lit; i++) out[op + i] = input[ip + i];
    } else {
      out.set(input.subarray(ip, ip + lit), op);
    }
    ip += lit;
    op += lit;
    if (ip === ipEnd) return op; // the last sequence has no match part

    // --- match
    if (ipEnd - ip < 2) throw new Lz4Error(`LZ4 block at offset ${blockAt}: truncated match offset`);
    const offset = input[ip] | (input[ip + 1] << 8);
    ip += 2;
    if (offset === 0) throw new Lz4Error(`LZ4 block at offset ${blockAt}: match offset 0 is invalid`);
    if (offset > op - base)
      throw new Lz4Error(
        `LZ4 block at offset ${blockAt}: match offset ${offset} reaches before the start of the block's output (${op - base} bytes written)`,
      );
    let len = token & 15;
    if (len === 15) {
      let b: number;
      do {
        if (ip >= ipEnd) throw new Lz4Error(`LZ4 block at offset ${blockAt}: truncated match length`);
        b = input[ip++];
        len += b;
      } while (b === 255);
    }
    len += MIN_MATCH;
    if (len > limit - op) throw new Lz4Error(`LZ4 output ${limitWhy}`);
    const from = op - offset;
    if (len <= 32) {
      // Short: a byte loop is cheaper than a call, and handles overlap for free.
      for (let i = 0; i < len; i++) out[op + i] = out[from + i];
      op += len;
    } else if (offset >= len) {
      out.copyWithin(op, from, from + len);
      op += len;
    } else {
      // Overlapping long match: the output repeats the `offset` bytes before
      // op. [from, op) is always a whole number of periods, so copying it to op
      // continues the pattern; each copy doubles it (copyWithin is memmove, so
      // it must only read bytes already final).
      const end = op + len;
      while (op < end) {
        const chunk = Math.min(op - from, end - op);
        out.copyWithin(op, from, from + chunk);
        op += chunk;
      }
    }
    if (ip >= ipEnd)
      throw new Lz4Error(`LZ4 block at offset ${blockAt}: ends after a match (the last sequence must be literals only)`);
  }
}

/**
 * Decompresses an LZ4 legacy frame (`lz4 -l`, the Linux kernel's LZ4
 * payload format), including concatenated legacy frames and the kernel's
 * trailing 4-byte size word. Throws Lz4Error (an Error) on malformed or
 * truncated input, or when the output would exceed `maxOutput` bytes; never
 * allocates more than maxOutput bytes of output.
 *
 * The result may be a view on a larger buffer (the allocation is bounded from
 * the block sizes before decoding): use byteOffset/byteLength.
 */
export function lz4DecompressLegacy(input: Uint8Array, maxOutput: number): Uint8Array {
  if (!Number.isSafeInteger(maxOutput) || maxOutput < 0) throw new RangeError(`maxOutput ${maxOutput} is not a valid size`);
  const blocks = scanLegacyFrame(input);
  // Upper bound of the output: each block yields at most 8 MiB, and at most
  // ~255 bytes per input byte (a run of 255-extension bytes adds 255 each).
  let bound = 0;
  for (const b of blocks) {
    bound += Math.min(LZ4_LEGACY_BLOCK_SIZE, (b.end - b.start) * 256 + 64);
    if (bound >= maxOutput) break;
  }
  const out = new Uint8Array(Math.min(bound, maxOutput));
  let op = 0;
  for (const b of blocks) {
    const blockLimit = op + LZ4_LEGACY_BLOCK_SIZE;
    const limit = Math.min(blockLimit, out.length);
    const why =
      blockLimit <= out.length
        ? `of the block at offset ${b.start - 4} exceeds the legacy frame's 8 MiB block size`
        : `exceeds the limit of ${maxOutput} bytes`;
    op = decodeBlock(input, b.start, b.end, out, op, limit, why);
  }
  return out.subarray(0, op);
}
