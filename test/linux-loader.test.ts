// Tests for the Linux loader (src/arch/x86/linux-loader.ts), the boot_params
// codec and the e820 map. Synthetic images are built here with raw offsets
// from bootparam.h / the ELF spec, independently of the codec under test.
import * as fs from 'fs';
import * as path from 'path';
import { GuestMemory } from '../src/memory/guest-memory';
import {
  BOOT_PARAMS_SIZE,
  BP_E820_TABLE,
  BP_E820_TABLE_END,
  E820_ENTRY_SIZE,
  E820_MAX_ENTRIES_ZEROPAGE,
  SETUP_HEADER_END,
  SETUP_HEADER_FIELDS,
  SETUP_HEADER_OFFSET,
  XLF_KERNEL_64,
  createBootParams,
  parseSetupHeader,
  readBootLoaderFields,
  readE820Table,
  writeBootLoaderFields,
  writeE820Table,
  writeSetupHeader,
} from '../src/arch/x86/boot-params';
import { buildE820Map } from '../src/arch/x86/e820';
import { CMDLINE_GPA, ZERO_PAGE_GPA, loadLinux } from '../src/arch/x86/linux-loader';

const MiB = 1024 * 1024;

interface BzOptions {
  setupSects?: number;
  version?: number;
  loadflags?: number;
  xloadflags?: number;
  pmSize?: number;
  initSize?: number;
  cmdlineSize?: number;
  initrdAddrMax?: number;
  relocatable?: number;
  prefAddress?: number;
  kernelAlignment?: number;
}

/** A synthetic bzImage: boot sector + setup sectors with a 2.15-style header, then a patterned "kernel". */
function makeBzImage(o: BzOptions = {}): Uint8Array {
  const setupSects = o.setupSects ?? 4;
  const pmOffset = ((setupSects === 0 ? 4 : setupSects) + 1) * 512;
  const pmSize = o.pmSize ?? 64 * 1024;
  const img = new Uint8Array(pmOffset + pmSize);
  const dv = new DataView(img.buffer);
  for (let i = 0; i < pmSize; i++) img[pmOffset + i] = (i * 7 + 3) & 0xff;
  img[0x1ef] = 0xff; // sentinel as in a real bzImage: must not reach the zero page
  dv.setUint8(0x1f1, setupSects); // setup_sects
  dv.setUint32(0x1f4, Math.ceil(pmSize / 16), true); // syssize
  dv.setUint16(0x1fe, 0xaa55, true); // boot_flag
  dv.setUint8(0x200, 0xeb); // jump: short jmp ...
  dv.setUint8(0x201, 0x6a); // ... to 0x26c, the end of a 2.15 header
  dv.setUint32(0x202, 0x53726448, true); // header "HdrS"
  dv.setUint16(0x206, o.version ?? 0x020f, true); // version
  dv.setUint8(0x211, o.loadflags ?? 0x01); // loadflags: LOADED_HIGH
  dv.setUint32(0x22c, o.initrdAddrMax ?? 0x7fffffff, true); // initrd_addr_max
  dv.setUint32(0x230, o.kernelAlignment ?? 0x200000, true); // kernel_alignment
  dv.setUint8(0x234, o.relocatable ?? 1); // relocatable_kernel
  dv.setUint16(0x236, o.xloadflags ?? 0x7f, true); // xloadflags
  dv.setUint32(0x238, o.cmdlineSize ?? 2047, true); // cmdline_size
  dv.setBigUint64(0x258, BigInt(o.prefAddress ?? 0x1000000), true); // pref_address
  dv.setUint32(0x260, o.initSize ?? 4 * MiB, true); // init_size
  return img;
}

interface ElfSegment {
  vaddr: bigint;
  paddr: bigint;
  data: Uint8Array;
  memsz: number;
}

/** A synthetic x86-64 ELF64 executable with the given PT_LOAD segments. */
function makeElf(entry: bigint, segments: ElfSegment[], machine = 62): Uint8Array {
  const phoff = 64;
  let dataOff = phoff + 56 * segments.length;
  const total = dataOff + segments.reduce((n, s) => n + s.data.length, 0);
  const img = new Uint8Array(total);
  const dv = new DataView(img.buffer);
  img.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]); // magic, ELFCLASS64, ELFDATA2LSB, EV_CURRENT
  dv.setUint16(16, 2, true); // e_type ET_EXEC
  dv.setUint16(18, machine, true); // e_machine
  dv.setUint32(20, 1, true); // e_version
  dv.setBigUint64(24, entry, true); // e_entry
  dv.setBigUint64(32, BigInt(phoff), true); // e_phoff
  dv.setUint16(52, 64, true); // e_ehsize
  dv.setUint16(54, 56, true); // e_phentsize
  dv.setUint16(56, segments.length, true); // e_phnum
  segments.forEach((s, i) => {
    const at = phoff + 56 * i;
    dv.setUint32(at, 1, true); // p_type PT_LOAD
    dv.setUint32(at + 4, 7, true); // p_flags RWX
    dv.setBigUint64(at + 8, BigInt(dataOff), true); // p_offset
    dv.setBigUint64(at + 16, s.vaddr, true); // p_vaddr
    dv.setBigUint64(at + 24, s.paddr, true); // p_paddr
    dv.setBigUint64(at + 32, BigInt(s.data.length), true); // p_filesz
    dv.setBigUint64(at + 40, BigInt(s.memsz), true); // p_memsz
    dv.setBigUint64(at + 48, 0x200000n, true); // p_align
    img.set(s.data, dataOff);
    dataOff += s.data.length;
  });
  return img;
}

function pattern(n: number, seed: number): Uint8Array {
  const a = new Uint8Array(n);
  for (let i = 0; i < n; i++) a[i] = (i * 13 + seed) & 0xff;
  return a;
}

function expectLoaderError(fn: () => unknown, message: RegExp): void {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeDefined();
  // jest runs tests in a vm realm: assert on .code, not instanceof (DESIGN.md).
  expect((caught as { code?: string }).code).toBe('EBADKERNEL');
  expect((caught as Error).message).toMatch(message);
}

function zeroPage(memory: GuestMemory): Uint8Array {
  return new Uint8Array(memory.read(ZERO_PAGE_GPA, BOOT_PARAMS_SIZE));
}

describe('boot_params codec', () => {
  it('has the bootparam.h sizes and contiguous setup_header fields', () => {
    expect(BOOT_PARAMS_SIZE).toBe(4096);
    expect(SETUP_HEADER_FIELDS[0].offset).toBe(SETUP_HEADER_OFFSET);
    for (let i = 1; i < SETUP_HEADER_FIELDS.length; i++) {
      const prev = SETUP_HEADER_FIELDS[i - 1];
      expect(SETUP_HEADER_FIELDS[i].offset).toBe(prev.offset + prev.size);
    }
    const last = SETUP_HEADER_FIELDS[SETUP_HEADER_FIELDS.length - 1];
    expect(last.offset + last.size).toBe(SETUP_HEADER_END);
    expect(SETUP_HEADER_END).toBe(0x26c);
    expect(BP_E820_TABLE + E820_MAX_ENTRIES_ZEROPAGE * E820_ENTRY_SIZE).toBe(BP_E820_TABLE_END);
    expect(BP_E820_TABLE_END).toBe(0xcd0);
  });

  it('round-trips the setup header through a zero page', () => {
    const hdr = parseSetupHeader(makeBzImage({ initSize: 0x3378000 }));
    expect(hdr.header).toBe(0x53726448);
    expect(hdr.initSize).toBe(0x3378000);
    expect(hdr.prefAddress).toBe(0x1000000n);
    const bp = createBootParams();
    writeSetupHeader(bp, hdr);
    expect(parseSetupHeader(bp)).toEqual(hdr);
  });

  it('splits 64-bit loader fields into the ext_* fields', () => {
    const bp = createBootParams();
    const f = { cmdLinePtr: 0x1_2345_6000, ramdiskImage: 0x2_0000_1000, ramdiskSize: 0x1_0000_0000 };
    writeBootLoaderFields(bp, { ...f, loadflags: 0x81, heapEndPtr: 0xfc00 });
    expect(readBootLoaderFields(bp)).toEqual(f);
    const dv = new DataView(bp.buffer);
    expect(dv.getUint32(0x228, true)).toBe(0x2345_6000); // cmd_line_ptr
    expect(dv.getUint32(0x0c8, true)).toBe(1); // ext_cmd_line_ptr
    expect(dv.getUint32(0x0c0, true)).toBe(2); // ext_ramdisk_image
    expect(dv.getUint32(0x0c4, true)).toBe(1); // ext_ramdisk_size
    expect(dv.getUint8(0x210)).toBe(0xff); // type_of_loader
    expect(dv.getUint16(0x1fa, true)).toBe(0xffff); // vid_mode
  });

  it('encodes e820 entries and rejects more than 128', () => {
    const bp = createBootParams();
    const entries = [
      { addr: 0, size: 0x9fc00, type: 1 },
      { addr: 0x1_0000_0000, size: 0x4000_0000, type: 1 },
    ];
    writeE820Table(bp, entries);
    expect(bp[0x1e8]).toBe(2);
    expect(new DataView(bp.buffer).getBigUint64(0x2d0 + 20, true)).toBe(0x1_0000_0000n);
    expect(readE820Table(bp)).toEqual(entries);
    const tooMany = Array.from({ length: 129 }, (_, i) => ({ addr: i * 0x2000, size: 0x1000, type: 1 }));
    expect(() => writeE820Table(bp, tooMany)).toThrow(/at most 128/);
  });
});

describe('e820 map', () => {
  it('splits low RAM around the EBDA/VGA/BIOS hole', () => {
    expect(buildE820Map([{ gpa: 0, size: 64 * MiB }])).toEqual([
      { addr: 0, size: 0x9fc00, type: 1 },
      { addr: 0x9fc00, size: 0x100000 - 0x9fc00, type: 2 },
      { addr: 0x100000, size: 63 * MiB, type: 1 },
    ]);
  });

  it('lists RAM above the PCI hole and merges adjacent regions', () => {
    const map = buildE820Map([
      { gpa: 0x1_0000_0000, size: 1024 * MiB },
      { gpa: 0, size: 2048 * MiB },
      { gpa: 2048 * MiB, size: 1024 * MiB },
    ]);
    expect(map).toEqual([
      { addr: 0, size: 0x9fc00, type: 1 },
      { addr: 0x9fc00, size: 0x60400, type: 2 },
      { addr: 0x100000, size: 3072 * MiB - 0x100000, type: 1 },
      { addr: 0x1_0000_0000, size: 1024 * MiB, type: 1 },
    ]);
  });
});

describe('loadLinux: bzImage', () => {
  let memory: GuestMemory;
  beforeEach(() => {
    memory = GuestMemory.allocate([{ gpa: 0, size: 64 * MiB }]);
  });
  afterEach(() => memory.close());

  it('loads kernel, zero page, command line, e820 and initrd', () => {
    const kernel = makeBzImage();
    const initrd = pattern(3 * MiB + 123, 5);
    const info = loadLinux(memory, { kernel, initrd, cmdline: 'console=ttyS0 root=/dev/vda' });

    expect(info.format).toBe('bzImage');
    expect(info.protocolVersion).toBe(0x020f);
    expect(info.entry).toBe(0x100200);
    expect(info.bootParams).toBe(0x7000);
    expect(info.cmdlineGpa).toBe(0x20000);
    // relocatable: runtime start = align_up(max(1 MiB, pref 16 MiB), 2 MiB) = 16 MiB, + init_size 4 MiB
    expect(info.kernelEnd).toBe(20 * MiB);

    expect(memory.read(0x100000, 64 * 1024).equals(Buffer.from(kernel.subarray(5 * 512)))).toBe(true);
    expect(memory.readCString(CMDLINE_GPA, 4096)).toBe('console=ttyS0 root=/dev/vda');

    const zp = zeroPage(memory);
    const dv = new DataView(zp.buffer);
    expect(dv.getUint16(0x1fe, true)).toBe(0xaa55); // boot_flag
    expect(dv.getUint32(0x202, true)).toBe(0x53726448); // header
    expect(dv.getUint16(0x206, true)).toBe(0x020f); // version
    expect(zp[0x1ef]).toBe(0); // sentinel not copied
    expect(zp[0x210]).toBe(0xff); // type_of_loader
    expect(zp[0x211]).toBe(0x81); // loadflags: LOADED_HIGH | CAN_USE_HEAP
    expect(dv.getUint16(0x224, true)).toBe(0xfe00 - 0x200); // heap_end_ptr
    expect(dv.getUint16(0x1fa, true)).toBe(0xffff); // vid_mode
    expect(dv.getUint32(0x228, true)).toBe(0x20000); // cmd_line_ptr
    expect(dv.getBigUint64(0x250, true)).toBe(0n); // setup_data
    expect(dv.getUint32(0x260, true)).toBe(4 * MiB); // init_size kept from the image

    // initrd: highest page-aligned spot below the end of RAM, above the kernel
    expect(info.initrd).toBeDefined();
    const rd = info.initrd!;
    expect(rd.size).toBe(initrd.length);
    expect(rd.gpa % 4096).toBe(0);
    expect(rd.gpa + rd.size).toBeLessThanOrEqual(64 * MiB);
    expect(rd.gpa + rd.size + 4096).toBeGreaterThan(64 * MiB);
    expect(rd.gpa).toBeGreaterThanOrEqual(info.kernelEnd);
    expect(dv.getUint32(0x218, true)).toBe(rd.gpa); // ramdisk_image
    expect(dv.getUint32(0x21c, true)).toBe(rd.size); // ramdisk_size
    expect(memory.read(rd.gpa, rd.size).equals(Buffer.from(initrd))).toBe(true);

    expect(readE820Table(zp)).toEqual(buildE820Map(memory.regions));
    expect(readE820Table(zp)).toHaveLength(3);
  });

  it('keeps the initrd below initrd_addr_max', () => {
    const info = loadLinux(memory, {
      kernel: makeBzImage({ initrdAddrMax: 32 * MiB - 1 }),
      initrd: pattern(MiB, 1),
      cmdline: '',
    });
    expect(info.initrd).toEqual({ gpa: 31 * MiB, size: MiB });
  });

  it('treats setup_sects 0 as 4 and a non-relocatable kernel as running at pref_address', () => {
    const kernel = makeBzImage({ setupSects: 0, relocatable: 0, prefAddress: 8 * MiB, initSize: 2 * MiB });
    const info = loadLinux(memory, { kernel, cmdline: 'x' });
    expect(memory.read(0x100000, 16).equals(Buffer.from(kernel.subarray(5 * 512, 5 * 512 + 16)))).toBe(true);
    expect(info.kernelEnd).toBe(10 * MiB);
    expect(info.initrd).toBeUndefined();
    expect(new DataView(zeroPage(memory).buffer).getUint32(0x218, true)).toBe(0);
  });

  it('rejects a file without the boot flag or HdrS magic', () => {
    const bad = makeBzImage();
    bad[0x202] = 0x41;
    expectLoaderError(() => loadLinux(memory, { kernel: bad, cmdline: '' }), /not a bzImage or ELF vmlinux \(no 0xAA55 boot flag \/ HdrS magic\)/);
    expectLoaderError(() => loadLinux(memory, { kernel: new Uint8Array(100), cmdline: '' }), /not a bzImage/);
    const noFlag = makeBzImage();
    noFlag[0x1fe] = 0;
    expectLoaderError(() => loadLinux(memory, { kernel: noFlag, cmdline: '', kernelPath: '/tmp/k' }), /kernel \/tmp\/k is not a bzImage/);
  });

  it('rejects truncated files', () => {
    const full = makeBzImage();
    expectLoaderError(() => loadLinux(memory, { kernel: full.subarray(0, full.length - 1000), cmdline: '' }), /truncated/);
    expectLoaderError(() => loadLinux(memory, { kernel: full.subarray(0, 0x230), cmdline: '' }), /truncated: its setup header/);
    expectLoaderError(() => loadLinux(memory, { kernel: full.subarray(0, 5 * 512), cmdline: '' }), /truncated/);
  });

  it('rejects an old boot protocol', () => {
    expectLoaderError(
      () => loadLinux(memory, { kernel: makeBzImage({ version: 0x0205 }), cmdline: '' }),
      /boot protocol 2\.05 is too old \(tskvm needs ≥ 2\.06 for the 64-bit entry\)/,
    );
  });

  it('rejects a kernel without the 64-bit entry point', () => {
    expectLoaderError(
      () => loadLinux(memory, { kernel: makeBzImage({ xloadflags: 0x7f & ~XLF_KERNEL_64 }), cmdline: '' }),
      /kernel does not support the 64-bit entry point \(xloadflags/,
    );
    // before 2.12 there is no xloadflags field to check
    expect(loadLinux(memory, { kernel: makeBzImage({ version: 0x020a, xloadflags: 0 }), cmdline: '' }).entry).toBe(0x100200);
  });

  it('rejects a zImage', () => {
    expectLoaderError(() => loadLinux(memory, { kernel: makeBzImage({ loadflags: 0 }), cmdline: '' }), /zImage/);
  });

  it('rejects a command line longer than cmdline_size', () => {
    const kernel = makeBzImage({ cmdlineSize: 255 });
    expect(() => loadLinux(memory, { kernel, cmdline: 'a'.repeat(255) })).not.toThrow();
    expectLoaderError(
      () => loadLinux(memory, { kernel, cmdline: 'a'.repeat(300) }),
      /^command line is 300 bytes; the kernel accepts at most 255$/,
    );
  });

  it('rejects an initrd that does not fit', () => {
    expectLoaderError(
      () => loadLinux(memory, { kernel: makeBzImage(), initrd: new Uint8Array(45 * MiB), cmdline: '' }),
      /initrd \(45 MiB\) does not fit below initrd_addr_max 0x7fffffff/,
    );
    expectLoaderError(
      () =>
        loadLinux(memory, {
          kernel: makeBzImage({ initrdAddrMax: 24 * MiB - 1 }),
          initrd: new Uint8Array(5 * MiB),
          cmdline: '',
          initrdPath: 'rd.cpio',
        }),
      /initrd rd\.cpio \(5 MiB\) does not fit/,
    );
  });

  it('rejects a kernel that does not fit in RAM', () => {
    expectLoaderError(
      () => loadLinux(memory, { kernel: makeBzImage({ initSize: 100 * MiB }), cmdline: '' }),
      /kernel \(115 MiB\) does not fit in guest RAM \(64 MiB\)/,
    );
  });
});

describe('loadLinux: ELF vmlinux', () => {
  let memory: GuestMemory;
  beforeEach(() => {
    memory = GuestMemory.allocate([{ gpa: 0, size: 64 * MiB }]);
  });
  afterEach(() => memory.close());

  const text = pattern(0x2000, 9);
  const data = pattern(0x100, 77);
  const segments: ElfSegment[] = [
    { vaddr: 0xffffffff81000000n, paddr: 0x1000000n, data: text, memsz: 0x2000 },
    { vaddr: 0xffffffff81200000n, paddr: 0x1200000n, data, memsz: 0x3000 },
  ];

  it('loads PT_LOAD segments at p_paddr, zeroes .bss and builds a zero page', () => {
    memory.fill(0x1200000, 0x3000, 0xee); // bss must be cleared
    const initrd = pattern(MiB, 3);
    const info = loadLinux(memory, { kernel: makeElf(0x1000000n, segments), initrd, cmdline: 'console=ttyS0' });
    expect(info.format).toBe('elf');
    expect(info.protocolVersion).toBeUndefined();
    expect(info.entry).toBe(0x1000000);
    expect(info.kernelEnd).toBe(0x1203000);
    expect(memory.read(0x1000000, 0x2000).equals(Buffer.from(text))).toBe(true);
    expect(memory.read(0x1200000, 0x100).equals(Buffer.from(data))).toBe(true);
    expect(memory.read(0x1200100, 0x2f00).every((b) => b === 0)).toBe(true);
    expect(memory.readCString(info.cmdlineGpa, 100)).toBe('console=ttyS0');

    const zp = zeroPage(memory);
    const hdr = parseSetupHeader(zp);
    expect(hdr.bootFlag).toBe(0xaa55);
    expect(hdr.header).toBe(0x53726448);
    expect(hdr.version).toBe(0x020f);
    expect(hdr.typeOfLoader).toBe(0xff);
    expect(hdr.cmdLinePtr).toBe(0x20000);
    expect(hdr.cmdlineSize).toBe(2047);
    expect(hdr.ramdiskImage).toBe(info.initrd!.gpa);
    expect(hdr.ramdiskSize).toBe(MiB);
    expect(info.initrd!.gpa).toBe(63 * MiB);
    expect(readE820Table(zp)).toHaveLength(3);
  });

  it('converts a kernel-map virtual entry point to physical', () => {
    const info = loadLinux(memory, { kernel: makeElf(0xffffffff81000100n, segments), cmdline: '' });
    expect(info.entry).toBe(0x1000100);
  });

  it('rejects non-x86-64 ELF files, segments outside RAM and bad entry points', () => {
    expectLoaderError(() => loadLinux(memory, { kernel: makeElf(0x1000000n, segments, 183), cmdline: '' }), /not an x86-64/);
    const high = [{ ...segments[0], paddr: 0x8000000n }];
    expectLoaderError(() => loadLinux(memory, { kernel: makeElf(0x8000000n, high), cmdline: '' }), /does not fit in guest RAM \(64 MiB\)/);
    expectLoaderError(() => loadLinux(memory, { kernel: makeElf(0x5000000n, segments), cmdline: '' }), /entry point/);
    const elf = makeElf(0x1000000n, segments);
    expectLoaderError(() => loadLinux(memory, { kernel: elf.subarray(0, elf.length - 10), cmdline: '' }), /truncated/);
    expectLoaderError(() => loadLinux(memory, { kernel: makeElf(0x1000000n, segments), cmdline: 'x'.repeat(2048) }), /at most 2047/);
  });
});

// A real Debian cloud kernel, fetched by scripts/get-linux-guest.sh. Skipped
// only outside CI: in CI a missing kernel fails the test.
const realKernelPath = path.join(__dirname, '..', 'guest-cache', 'vmlinuz');
const haveRealKernel = fs.existsSync(realKernelPath);
const itRealKernel = haveRealKernel || process.env.CI ? it : it.skip;

describe('loadLinux: real bzImage (guest-cache/vmlinuz)', () => {
  itRealKernel('parses the header and loads it', () => {
    if (!haveRealKernel) throw new Error(`${realKernelPath} is missing: run scripts/get-linux-guest.sh first`);
    const kernel = new Uint8Array(fs.readFileSync(realKernelPath));
    const hdr = parseSetupHeader(kernel);
    expect(hdr.bootFlag).toBe(0xaa55);
    expect(hdr.header).toBe(0x53726448);
    expect(hdr.version).toBeGreaterThanOrEqual(0x020f);
    expect(hdr.loadflags & 0x01).toBe(1); // LOADED_HIGH
    expect(hdr.xloadflags & XLF_KERNEL_64).toBe(XLF_KERNEL_64);
    expect(hdr.relocatableKernel).toBe(1);
    expect(hdr.cmdlineSize).toBeGreaterThanOrEqual(255);
    expect(hdr.kernelAlignment & (hdr.kernelAlignment - 1)).toBe(0);
    expect(hdr.initSize).toBeGreaterThan(0);

    const memory = GuestMemory.allocate([{ gpa: 0, size: 256 * MiB }]);
    try {
      const initrd = pattern(2 * MiB, 11);
      const info = loadLinux(memory, { kernel, initrd, cmdline: 'console=ttyS0 panic=-1' });
      const setupSects = hdr.setupSects || 4;
      const pmOffset = (setupSects + 1) * 512;
      expect(info.entry).toBe(0x100200);
      expect(info.protocolVersion).toBe(hdr.version);
      const runtimeStart = Math.ceil(Math.max(0x100000, Number(hdr.prefAddress)) / hdr.kernelAlignment) * hdr.kernelAlignment;
      expect(info.kernelEnd).toBe(Math.max(0x100000 + kernel.length - pmOffset, runtimeStart + hdr.initSize));
      expect(memory.read(0x100000, kernel.length - pmOffset).equals(Buffer.from(kernel.subarray(pmOffset)))).toBe(true);
      expect(info.initrd!.gpa).toBeGreaterThanOrEqual(info.kernelEnd);
      const zp = zeroPage(memory);
      // the copied header matches the image except for the fields the loader writes
      const zh = parseSetupHeader(zp);
      expect({ ...zh, typeOfLoader: 0, loadflags: 0, heapEndPtr: 0, cmdLinePtr: 0, ramdiskImage: 0, ramdiskSize: 0, vidMode: 0 }).toEqual({
        ...hdr,
        typeOfLoader: 0,
        loadflags: 0,
        heapEndPtr: 0,
        cmdLinePtr: 0,
        ramdiskImage: 0,
        ramdiskSize: 0,
        vidMode: 0,
      });
      expect(zh.loadflags & 0x80).toBe(0x80);
      expect(zp[0x1ef]).toBe(0);
    } finally {
      memory.close();
    }
  });
});
