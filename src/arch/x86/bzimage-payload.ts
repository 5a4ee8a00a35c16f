// Host-side extraction of the compressed kernel inside a bzImage.
//
// A bzImage's protected-mode part is a small decompressor plus the real
// kernel (an ELF64 vmlinux, followed by its relocation table on relocatable
// kernels) compressed with the algorithm chosen at build time. Boot protocol
// 2.08+ says where it is (Documentation/arch/x86/boot.rst, "payload_offset"
// and "payload_length"): an offset and length relative to the start of the
// protected-mode code, which begins at (setup_sects + 1) * 512 in the file.
//
// Under KVM's instruction emulator the guest's own decompressor runs ~100×
// slower than on the host, so the VMM can unpack the payload here and boot
// the ELF vmlinux directly (linux-loader.ts loads both). Compressions this
// file cannot unpack come back as { unsupported }; the VMM then loads the
// bzImage as it is.
//
// The build appends the uncompressed size as a u32 LE after the compressed
// stream (gzip's ISIZE field is that word; for the other compressors
// arch/x86/boot/compressed/Makefile appends it: "size_append"). We check the
// result against it.
import * as zlib from 'node:zlib';
import { BOOT_FLAG_MAGIC, HEADER_MAGIC, parseSetupHeader } from './boot-params';
import { lz4DecompressLegacy } from './lz4';

/** Compressions a bzImage payload may use (CONFIG_KERNEL_*). */
export type PayloadCompression = 'gzip' | 'lz4' | 'none' | 'xz' | 'zstd' | 'bzip2' | 'lzma' | 'lzo';

/** The ones extractVmlinux unpacks. */
export type SupportedPayloadCompression = 'gzip' | 'lz4' | 'none';

export type ExtractedVmlinux =
  | { format: SupportedPayloadCompression; vmlinux: Uint8Array }
  | {
      /** Short name: a compression ('xz', 'zstd', …), or 'header' when the image has no usable payload fields. */
      unsupported: string;
      /** One sentence saying why. */
      reason: string;
    };

/** Largest vmlinux we unpack (the Debian kernel is ~53 MB). */
export const MAX_VMLINUX_SIZE = 512 * 1024 * 1024;

const SECTOR_SIZE = 512;
/** boot.rst "setup_sects": "If this field is 0, the real value is 4." */
const DEFAULT_SETUP_SECTS = 4;
/** Protocol 2.08: payload_offset / payload_length. */
const PROTOCOL_2_08 = 0x0208;

/** Leading bytes of each compressed format (as lib/decompress.c matches them). */
const MAGICS: readonly { format: PayloadCompression; bytes: readonly number[] }[] = [
  { format: 'gzip', bytes: [0x1f, 0x8b] },
  { format: 'lz4', bytes: [0x02, 0x21, 0x4c, 0x18] }, // legacy frame magic 0x184C2102 LE
  { format: 'zstd', bytes: [0x28, 0xb5, 0x2f, 0xfd] },
  { format: 'xz', bytes: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00] },
  { format: 'bzip2', bytes: [0x42, 0x5a, 0x68] }, // "BZh"
  { format: 'lzma', bytes: [0x5d, 0x00, 0x00] }, // properties byte 0x5d, then dictionary size
  { format: 'lzo', bytes: [0x89, 0x4c, 0x5a, 0x4f] }, // "\x89LZO"
  { format: 'none', bytes: [0x7f, 0x45, 0x4c, 0x46] }, // CONFIG_KERNEL_UNCOMPRESSED: the ELF itself
];

/** The compression of a payload, judged by its first bytes; undefined if unknown. */
export function detectPayloadCompression(payload: Uint8Array): PayloadCompression | undefined {
  for (const m of MAGICS) if (m.bytes.length <= payload.length && m.bytes.every((b, i) => payload[i] === b)) return m.format;
  return undefined;
}

export class BzImagePayloadError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BzImagePayloadError';
  }
}

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

/**
 * The payload bytes of a bzImage (a view into it), or { unsupported } when
 * the image has no bzImage header or predates protocol 2.08. Throws
 * BzImagePayloadError when the header points outside the file.
 */
export function bzImagePayload(bzImage: Uint8Array): Uint8Array | { unsupported: string; reason: string } {
  if (bzImage.length < 0x250)
    return { unsupported: 'header', reason: `image is ${bzImage.length} bytes, too short for a bzImage setup header` };
  const hdr = parseSetupHeader(bzImage);
  if (hdr.bootFlag !== BOOT_FLAG_MAGIC || hdr.header !== HEADER_MAGIC)
    return { unsupported: 'header', reason: 'not a bzImage (no 0xAA55 boot flag / HdrS magic)' };
  if (hdr.version < PROTOCOL_2_08)
    return {
      unsupported: 'header',
      reason: `boot protocol ${hex(hdr.version)} predates 2.08 and does not locate its payload`,
    };
  const pmOffset = ((hdr.setupSects || DEFAULT_SETUP_SECTS) + 1) * SECTOR_SIZE;
  const start = pmOffset + hdr.payloadOffset;
  const end = start + hdr.payloadLength;
  if (hdr.payloadLength === 0) return { unsupported: 'header', reason: 'payload_length is 0' };
  if (end > bzImage.length)
    throw new BzImagePayloadError(
      `bzImage is truncated or corrupt: its payload (offset ${hex(start)}, ${hdr.payloadLength} bytes) ends past the end of the ${bzImage.length}-byte file`,
    );
  return bzImage.subarray(start, end);
}

/** The u32 LE size word at the end of a payload. */
function trailingSize(payload: Uint8Array): number {
  const n = payload.length;
  if (n < 4) return -1;
  return (payload[n - 4] | (payload[n - 3] << 8) | (payload[n - 2] << 16) | (payload[n - 1] << 24)) >>> 0;
}

/**
 * Unpacks the kernel inside a bzImage on the host. Returns the ELF64 vmlinux
 * (followed, on relocatable kernels, by the relocation table the in-guest
 * decompressor would apply for KASLR) with the compression it used, or
 * { unsupported, reason } for an image whose payload this VMM cannot unpack
 * (xz, zstd, bzip2, lzma, lzo, an unknown format, or an image without
 * protocol 2.08 payload fields) — boot that one as a bzImage.
 *
 * Throws BzImagePayloadError (an Error) when the payload is corrupt: it points
 * outside the file, does not decompress, disagrees with its size trailer,
 * exceeds `maxOutput` (default 512 MiB), or is not an ELF64 file.
 */
export function extractVmlinux(bzImage: Uint8Array, maxOutput: number = MAX_VMLINUX_SIZE): ExtractedVmlinux {
  const payload = bzImagePayload(bzImage);
  if (!(payload instanceof Uint8Array)) return payload;
  const format = detectPayloadCompression(payload);
  if (format === undefined) {
    const head = Array.from(payload.subarray(0, 6), (b) => b.toString(16).padStart(2, '0')).join(' ');
    return { unsupported: 'unknown', reason: `payload starts with ${head}, which is no known kernel compression` };
  }

  let vmlinux: Uint8Array;
  if (format === 'none') {
    vmlinux = payload;
  } else if (format === 'gzip' || format === 'lz4') {
    // The size trailer, when plausible, bounds the output exactly.
    const declared = trailingSize(payload);
    const limit = declared > 0 && declared <= maxOutput ? declared : maxOutput;
    try {
      if (format === 'gzip') {
        const buf = zlib.gunzipSync(payload, { maxOutputLength: Math.max(limit, 1) });
        vmlinux = new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
      } else {
        vmlinux = lz4DecompressLegacy(payload, limit);
      }
    } catch (err) {
      const msg = err instanceof Error ? err.message : String(err);
      const over = declared > maxOutput ? ` (its trailer declares ${declared} bytes, the limit is ${maxOutput})` : '';
      throw new BzImagePayloadError(`cannot decompress the bzImage's ${format} payload${over}: ${msg}`);
    }
    if (vmlinux.length !== declared)
      throw new BzImagePayloadError(
        `the bzImage's ${format} payload decompressed to ${vmlinux.length} bytes but its trailer declares ${declared}`,
      );
  } else {
    return { unsupported: format, reason: `the kernel payload is ${format}-compressed; tskvm unpacks only gzip and lz4` };
  }

  // e_ident: "\x7fELF", EI_CLASS = ELFCLASS64 (2).
  if (vmlinux.length < 64 || vmlinux[0] !== 0x7f || vmlinux[1] !== 0x45 || vmlinux[2] !== 0x4c || vmlinux[3] !== 0x46)
    throw new BzImagePayloadError(`the bzImage's ${format} payload is not an ELF file`);
  if (vmlinux[4] !== 2) throw new BzImagePayloadError(`the bzImage's ${format} payload is not an ELF64 file (EI_CLASS ${vmlinux[4]})`);
  return { format, vmlinux };
}
