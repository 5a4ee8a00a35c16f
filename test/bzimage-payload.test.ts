// Tests for host-side bzImage payload extraction (src/arch/x86/bzimage-payload.ts):
// synthetic bzImages built here with raw boot.rst offsets, and the real Debian
// kernel from guest-cache (LZ4-compressed), cross-checked against `lz4 -d`.
import { describe, it, expect } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { bzImagePayload, detectPayloadCompression, extractVmlinux } from '../src/arch/x86/bzimage-payload';
import { loadLinux } from '../src/arch/x86/linux-loader';
import { GuestMemory } from '../src/memory/guest-memory';

const MiB = 1024 * 1024;

function u32(n: number): number[] {
  return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];
}

/** A fake ELF64 x86-64 "vmlinux": a 64-byte header with e_ident/e_machine, then a pattern. */
function fakeElf(size = 200 * 1024, elfClass = 2): Uint8Array {
  const e = new Uint8Array(size);
  for (let i = 64; i < size; i++) e[i] = (i * 31 + (i >> 10)) & 0xff;
  e.set([0x7f, 0x45, 0x4c, 0x46, elfClass, 1, 1]); // e_ident: magic, EI_CLASS, EI_DATA LSB, EI_VERSION
  e[18] = 62; // e_machine EM_X86_64
  return e;
}

/** LZ4 legacy frame with literals-only blocks (valid LZ4, no compression) + the kernel's u32 size trailer. */
function lz4LiteralsOnly(data: Uint8Array): Uint8Array {
  const parts: number[] = [0x02, 0x21, 0x4c, 0x18];
  const blockSize = 64 * 1024;
  for (let at = 0; at < data.length; at += blockSize) {
    const chunk = data.subarray(at, at + blockSize);
    const block: number[] = [0xf0];
    let r = chunk.length - 15;
    while (r >= 255) {
      block.push(255);
      r -= 255;
    }
    block.push(r, ...chunk);
    parts.push(...u32(block.length), ...block);
  }
  parts.push(...u32(data.length));
  return Uint8Array.from(parts);
}

interface BzOptions {
  setupSects?: number;
  version?: number;
  /** Bytes of decompressor code before the payload (payload_offset). */
  payloadOffset?: number;
  /** Override payload_length. */
  payloadLength?: number;
}

/** A synthetic bzImage: boot sector + setup sectors with a 2.15 header, "decompressor" bytes, the payload, a tail. */
function makeBzImage(payload: Uint8Array, o: BzOptions = {}): Uint8Array {
  const setupSects = o.setupSects ?? 6;
  const pmOffset = ((setupSects === 0 ? 4 : setupSects) + 1) * 512;
  const payloadOffset = o.payloadOffset ?? 0x3a0;
  const tail = 64;
  const img = new Uint8Array(pmOffset + payloadOffset + payload.length + tail).fill(0xcc);
  const dv = new DataView(img.buffer);
  dv.setUint8(0x1f1, setupSects); // setup_sects
  dv.setUint16(0x1fe, 0xaa55, true); // boot_flag
  dv.setUint8(0x200, 0xeb); // jump ...
  dv.setUint8(0x201, 0x6a); // ... to 0x26c
  dv.setUint32(0x202, 0x53726448, true); // "HdrS"
  dv.setUint16(0x206, o.version ?? 0x020f, true); // version
  dv.setUint8(0x211, 0x01); // loadflags LOADED_HIGH
  dv.setUint32(0x248, payloadOffset, true); // payload_offset
  dv.setUint32(0x24c, o.payloadLength ?? payload.length, true); // payload_length
  img.set(payload, pmOffset + payloadOffset);
  return img;
}

function expectExtracted(r: ReturnType<typeof extractVmlinux>): { format: string; vmlinux: Uint8Array } {
  if ('unsupported' in r) throw new Error(`unexpectedly unsupported: ${r.unsupported}: ${r.reason}`);
  return r;
}

describe('extractVmlinux: synthetic bzImages', () => {
  it('unpacks a gzip payload', () => {
    const elf = fakeElf();
    const gz = zlib.gzipSync(elf, { level: 9 });
    expect(detectPayloadCompression(gz)).toBe('gzip');
    const r = expectExtracted(extractVmlinux(makeBzImage(gz)));
    expect(r.format).toBe('gzip');
    expect(Buffer.from(r.vmlinux).equals(Buffer.from(elf))).toBe(true);
  });

  it('unpacks an LZ4 legacy payload with the size trailer', () => {
    const elf = fakeElf(300 * 1024);
    const r = expectExtracted(extractVmlinux(makeBzImage(lz4LiteralsOnly(elf))));
    expect(r.format).toBe('lz4');
    expect(Buffer.from(r.vmlinux).equals(Buffer.from(elf))).toBe(true);
  });

  it('returns an uncompressed payload (CONFIG_KERNEL_UNCOMPRESSED) as it is', () => {
    const elf = fakeElf(4096);
    const r = expectExtracted(extractVmlinux(makeBzImage(elf)));
    expect(r.format).toBe('none');
    expect(Buffer.from(r.vmlinux).equals(Buffer.from(elf))).toBe(true);
  });

  it('locates the payload from setup_sects (0 means 4) and payload_offset', () => {
    const elf = fakeElf(10000);
    const gz = zlib.gzipSync(elf);
    for (const setupSects of [0, 1, 4, 39]) {
      for (const payloadOffset of [0, 0x2cc, 0x10000]) {
        const img = makeBzImage(gz, { setupSects, payloadOffset });
        const payload = bzImagePayload(img) as Uint8Array;
        expect(Buffer.from(payload).equals(gz)).toBe(true);
        expect(Buffer.from(expectExtracted(extractVmlinux(img)).vmlinux).equals(Buffer.from(elf))).toBe(true);
      }
    }
  });

  it('reports other compressions as unsupported', () => {
    const cases: [string, number[]][] = [
      ['xz', [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0, 4]],
      ['zstd', [0x28, 0xb5, 0x2f, 0xfd, 0x64, 0]],
      ['bzip2', [0x42, 0x5a, 0x68, 0x39, 0x31, 0x41]],
      ['lzma', [0x5d, 0x00, 0x00, 0x80, 0x00, 0xff]],
      ['lzo', [0x89, 0x4c, 0x5a, 0x4f, 0x00, 0x0d]],
      ['unknown', [0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc]],
    ];
    for (const [name, head] of cases) {
      const r = extractVmlinux(makeBzImage(Uint8Array.from([...head, ...new Array(100).fill(7)])));
      expect(r).toEqual({ unsupported: name, reason: expect.any(String) });
    }
  });

  it('reports images without usable payload fields as unsupported', () => {
    const gz = zlib.gzipSync(fakeElf(1000));
    const old = extractVmlinux(makeBzImage(gz, { version: 0x0207 }));
    expect(old).toEqual({ unsupported: 'header', reason: expect.stringMatching(/2\.08/) });
    expect(extractVmlinux(makeBzImage(gz, { payloadLength: 0 }))).toEqual({ unsupported: 'header', reason: expect.any(String) });
    const noMagic = makeBzImage(gz);
    noMagic[0x202] = 0;
    expect(extractVmlinux(noMagic)).toEqual({ unsupported: 'header', reason: expect.stringMatching(/not a bzImage/) });
    expect(extractVmlinux(fakeElf(4096))).toEqual({ unsupported: 'header', reason: expect.stringMatching(/not a bzImage/) });
    expect(extractVmlinux(new Uint8Array(100))).toEqual({ unsupported: 'header', reason: expect.stringMatching(/too short/) });
  });

  it('throws on corrupt payloads', () => {
    const elf = fakeElf(50000);
    const gz = zlib.gzipSync(elf);
    // payload past the end of the file
    expect(() => extractVmlinux(makeBzImage(gz, { payloadLength: gz.length + 1000 }))).toThrow(/ends past the end/);
    // corrupt deflate data
    const bad = Uint8Array.from(gz);
    bad.fill(0xff, 20, 60);
    expect(() => extractVmlinux(makeBzImage(bad))).toThrow(/cannot decompress the bzImage's gzip payload/);
    // truncated LZ4 stream
    const lz = lz4LiteralsOnly(elf);
    expect(() => extractVmlinux(makeBzImage(lz.subarray(0, 30000)))).toThrow(/cannot decompress.*lz4.*truncated/);
    // trailer disagrees with the data
    const lying = Uint8Array.from(lz);
    lying.set(u32(elf.length + 1), lying.length - 4);
    expect(() => extractVmlinux(makeBzImage(lying))).toThrow(/trailer declares 50001/);
    // not ELF / not ELF64
    expect(() => extractVmlinux(makeBzImage(zlib.gzipSync(new Uint8Array(5000).fill(1))))).toThrow(/not an ELF file/);
    expect(() => extractVmlinux(makeBzImage(zlib.gzipSync(fakeElf(5000, 1))))).toThrow(/not an ELF64/);
  });

  it('bounds the output by maxOutput', () => {
    const elf = fakeElf(100000);
    for (const payload of [zlib.gzipSync(elf), lz4LiteralsOnly(elf)]) {
      const img = makeBzImage(payload);
      expect(() => extractVmlinux(img, 99999)).toThrow(/cannot decompress.*trailer declares 100000 bytes, the limit is 99999/);
      expect(expectExtracted(extractVmlinux(img, 100000)).vmlinux.length).toBe(100000);
    }
    // A lying trailer (small) cannot make a bomb allocate beyond it: gzip of 64 MiB of zeros, trailer forged to 1 KiB.
    const bomb = Uint8Array.from(zlib.gzipSync(new Uint8Array(64 * MiB)));
    bomb.set(u32(1024), bomb.length - 4);
    expect(() => extractVmlinux(makeBzImage(bomb))).toThrow(/cannot decompress/);
  });
});

// The real Debian cloud kernel (LZ4-compressed), fetched by
// scripts/get-linux-guest.sh. Skipped only outside CI: in CI a missing kernel
// (or lz4 tool) fails the test.
const realKernelPath = path.join(__dirname, '..', 'guest-cache', 'vmlinuz');
const haveRealKernel = fs.existsSync(realKernelPath);
const itRealKernel = haveRealKernel || process.env.CI ? it : it.skip;
const hasLz4 = spawnSync('lz4', ['--version']).status === 0;

describe('extractVmlinux: real Debian bzImage (guest-cache/vmlinuz)', () => {
  itRealKernel('unpacks it to an ELF64 x86-64 vmlinux quickly, identical to `lz4 -d`, and the ELF loader accepts it', () => {
    if (!haveRealKernel) throw new Error(`${realKernelPath} is missing: run scripts/get-linux-guest.sh first`);
    const kernel = new Uint8Array(fs.readFileSync(realKernelPath));
    const payload = bzImagePayload(kernel);
    if (!(payload instanceof Uint8Array)) throw new Error(`no payload: ${payload.reason}`);

    const t0 = process.hrtime.bigint();
    const r = extractVmlinux(kernel);
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    const { format, vmlinux } = expectExtracted(r);
    console.log(
      `extractVmlinux(${path.basename(realKernelPath)}): ${format}, ${payload.length} → ${vmlinux.length} bytes in ${ms.toFixed(0)} ms`,
    );
    expect(ms).toBeLessThan(5000); // ~0.1 s on the development machine; generous for loaded CI hosts

    // ELF64, little-endian, ET_EXEC, EM_X86_64
    const dv = new DataView(vmlinux.buffer, vmlinux.byteOffset, vmlinux.byteLength);
    expect(Array.from(vmlinux.subarray(0, 6))).toEqual([0x7f, 0x45, 0x4c, 0x46, 2, 1]);
    expect(dv.getUint16(16, true)).toBe(2);
    expect(dv.getUint16(18, true)).toBe(62);
    // the size trailer the build appends
    expect(vmlinux.length).toBe(Buffer.from(payload).readUInt32LE(payload.length - 4));

    // Cross-check with the reference tool (the trailer stripped: lz4 exits 1 on it).
    if (format === 'lz4') {
      if (!hasLz4 && !process.env.CI) {
        console.log('lz4 tool not installed: cross-check skipped');
      } else {
        const ref = spawnSync('lz4', ['-d', '-c'], { input: payload.subarray(0, payload.length - 4), maxBuffer: 1024 * MiB });
        if (ref.status !== 0) throw new Error(`lz4 -d failed (status ${ref.status}): ${ref.stderr}`);
        expect(Buffer.from(vmlinux).equals(ref.stdout)).toBe(true);
      }
    }

    // The result boots through the ELF path of the loader.
    const memory = GuestMemory.allocate([{ gpa: 0, size: 256 * MiB }]);
    try {
      const info = loadLinux(memory, { kernel: vmlinux, cmdline: 'console=ttyS0' });
      expect(info.format).toBe('elf');
      expect(info.entry).toBeGreaterThanOrEqual(0x100000);
    } finally {
      memory.close();
    }
  });
});
