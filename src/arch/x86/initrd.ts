// Decompressing a gzip initramfs on the host before the guest sees it.
//
// Linux accepts an initrd that is a plain newc cpio archive as well as a
// compressed one (Documentation/driver-api/early-userspace/buffer-format.rst).
// Unpacking gzip in the guest costs ~35 s for a 1 MiB busybox initramfs when
// guest kernel code runs in KVM's instruction emulator (DESIGN.md); zlib on
// the host does it in milliseconds. Anything that is not one clean gzip
// stream of a cpio archive is passed through unchanged.
import * as zlib from 'zlib';

/** Never inflate past this (a gzip bomb must not exhaust host memory). */
export const MAX_UNPACKED_INITRD = 1024 * 1024 * 1024;

export type HostInitrd =
  | { data: Uint8Array; unpacked: true }
  | { data: Uint8Array; unpacked: false; reason: string };

const CPIO_NEWC = '070701';
const CPIO_NEWC_CRC = '070702';

export function unpackInitrdOnHost(initrd: Uint8Array, maxOutput = MAX_UNPACKED_INITRD): HostInitrd {
  if (initrd.length < 2 || initrd[0] !== 0x1f || initrd[1] !== 0x8b) return { data: initrd, unpacked: false, reason: 'not gzip' };
  let data: Buffer;
  try {
    data = zlib.gunzipSync(initrd, { maxOutputLength: maxOutput });
  } catch (err) {
    return { data: initrd, unpacked: false, reason: `gzip does not decompress (${(err as Error).message})` };
  }
  const magic = data.subarray(0, 6).toString('latin1');
  if (magic !== CPIO_NEWC && magic !== CPIO_NEWC_CRC) return { data: initrd, unpacked: false, reason: 'the gzip stream does not hold a newc cpio archive' };
  return { data, unpacked: true };
}
