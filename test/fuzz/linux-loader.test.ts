// Fuzz target: the Linux loader (src/arch/x86/linux-loader.ts) with mutated
// bzImage headers, truncated files, hostile ELF program headers, command lines
// around cmdline_size and initrds of any size.
//
// The loader may reject an image only with LinuxLoaderError (never a
// TypeError/RangeError from a field it did not check), must not write guest
// memory before it has accepted the image, and never outside guest RAM. What
// it accepts must lie in RAM: the kernel up to kernelEnd, the initrd above it,
// the command line (NUL-terminated, as given) at cmdlineGpa.
// Offsets: Documentation/arch/x86/boot.rst and bootparam.h (setup_header at
// 0x1f1); ELF64 header/program header layout from the ELF spec.
import * as fc from 'fast-check';
import { LinuxLoaderError, loadLinux, type LinuxBootInfo } from '../../src/arch/x86/linux-loader';
import { FUZZ_TIMEOUT_MS, RecordingMemory, checkProperty } from './fuzz-support';

const TARGET = 'linux-loader';
const MiB = 1024 * 1024;
const RAM_SIZE = 8 * MiB;

/** A valid small bzImage with a 2.15 header (setup_sects 4, 4 KiB kernel). */
function baseBzImage(pmSize: number): Uint8Array {
  const pmOffset = 5 * 512;
  const img = new Uint8Array(pmOffset + pmSize);
  const dv = new DataView(img.buffer);
  dv.setUint8(0x1f1, 4); // setup_sects
  dv.setUint32(0x1f4, Math.ceil(pmSize / 16), true); // syssize
  dv.setUint16(0x1fe, 0xaa55, true); // boot_flag
  dv.setUint8(0x200, 0xeb); // jump
  dv.setUint8(0x201, 0x6a); // to 0x26c
  dv.setUint32(0x202, 0x53726448, true); // "HdrS"
  dv.setUint16(0x206, 0x020f, true); // version
  dv.setUint8(0x211, 0x01); // loadflags LOADED_HIGH
  dv.setUint32(0x22c, 0x7fffffff, true); // initrd_addr_max
  dv.setUint32(0x230, 0x200000, true); // kernel_alignment
  dv.setUint8(0x234, 1); // relocatable_kernel
  dv.setUint16(0x236, 0x1, true); // xloadflags XLF_KERNEL_64
  dv.setUint32(0x238, 2047, true); // cmdline_size
  dv.setBigUint64(0x258, 0x100000n, true); // pref_address
  dv.setUint32(0x260, 2 * MiB, true); // init_size
  return img;
}

/** A valid ELF64 x86-64 executable: one PT_LOAD at 2 MiB holding the entry. */
function baseElf(): Uint8Array {
  const img = new Uint8Array(64 + 56 * 2 + 256);
  const dv = new DataView(img.buffer);
  img.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]);
  dv.setUint16(16, 2, true); // e_type ET_EXEC
  dv.setUint16(18, 62, true); // e_machine EM_X86_64
  dv.setBigUint64(24, 0x200000n, true); // e_entry
  dv.setBigUint64(32, 64n, true); // e_phoff
  dv.setUint16(54, 56, true); // e_phentsize
  dv.setUint16(56, 2, true); // e_phnum
  for (let i = 0; i < 2; i++) {
    const at = 64 + 56 * i;
    dv.setUint32(at, 1, true); // PT_LOAD
    dv.setBigUint64(at + 8, BigInt(64 + 112), true); // p_offset
    dv.setBigUint64(at + 24, BigInt(0x200000 + i * 0x1000), true); // p_paddr
    dv.setBigUint64(at + 32, 128n, true); // p_filesz
    dv.setBigUint64(at + 40, 0x2000n, true); // p_memsz
  }
  return img;
}

/** Interesting header offsets: every setup_header field start and a few bytes around. */
const BZ_FIELDS = [
  0x1f1, 0x1f4, 0x1fe, 0x1ff, 0x200, 0x201, 0x202, 0x206, 0x207, 0x211, 0x22c, 0x230, 0x231, 0x233, 0x234, 0x236, 0x238, 0x23b, 0x258, 0x25f, 0x260,
  0x263,
];
const ELF_FIELDS = [4, 5, 16, 18, 24, 31, 32, 39, 54, 56, 57, 64, 72, 88, 95, 96, 103, 104, 111, 120, 128, 144, 152, 160];

type Mutation = { at: number; value: number; width: 1 | 2 | 4 | 8 };

function arbMutations(fields: number[], span: number): fc.Arbitrary<Mutation[]> {
  const value = fc.oneof(
    fc.constantFrom(0, 1, 0xff, 0xffff, 0x7fffffff, 0x80000000, 0xffffffff, 0x0205, 0x0206, 0x020a, 0x020c, 0x1000, 0x200000),
    fc.integer({ min: 0, max: 0xffffffff }),
  );
  const at = fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...fields) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: span }) });
  return fc.array(fc.record({ at, value, width: fc.constantFrom(1 as const, 2 as const, 4 as const, 8 as const) }), { maxLength: 5 });
}

function mutate(img: Uint8Array, mutations: Mutation[], truncateTo: number | undefined): Uint8Array {
  const out = Uint8Array.from(img);
  const dv = new DataView(out.buffer);
  for (const m of mutations) {
    if (m.at + m.width > out.length) continue;
    if (m.width === 1) dv.setUint8(m.at, m.value & 0xff);
    else if (m.width === 2) dv.setUint16(m.at, m.value & 0xffff, true);
    else if (m.width === 4) dv.setUint32(m.at, m.value >>> 0, true);
    else dv.setBigUint64(m.at, (BigInt(m.value >>> 0) << 32n) | BigInt(m.value >>> 0), true);
  }
  return truncateTo === undefined ? out : out.subarray(0, Math.min(truncateTo, out.length));
}

const arbCmdline = fc.oneof(
  { weight: 4, arbitrary: fc.string({ maxLength: 80 }) },
  { weight: 2, arbitrary: fc.integer({ min: 2000, max: 2100 }).map((n) => 'x'.repeat(n)) },
  { weight: 1, arbitrary: fc.constantFrom('a\0b', 'é'.repeat(1024), '\u{1f600}'.repeat(600), 'x'.repeat(0x7fc00)) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 64 }) },
);
const arbInitrd = fc.oneof(
  fc.constant(undefined),
  fc.integer({ min: 0, max: 64 * 1024 }).map((n) => new Uint8Array(n).fill(0x5a)),
  fc.constantFrom(5 * MiB, 6 * MiB, 7 * MiB, 9 * MiB).map((n) => new Uint8Array(n)),
);

let ram: RecordingMemory;
beforeAll(() => {
  ram = new RecordingMemory([{ gpa: 0, size: RAM_SIZE }]);
});
afterAll(() => ram.close());

function loadChecked(kernel: Uint8Array, cmdline: string, initrd: Uint8Array | undefined): void {
  let info: LinuxBootInfo | undefined;
  let thrown: unknown;
  ram.record(() => {
    try {
      info = loadLinux(ram.memory, { kernel, cmdline, initrd });
    } catch (err) {
      thrown = err;
    }
  });
  expect(ram.violations).toEqual([]);
  if (thrown !== undefined) {
    // Only the documented error class, and nothing written before it was thrown.
    if (!(thrown instanceof LinuxLoaderError)) throw thrown;
    expect(ram.bytesWritten).toBe(0);
    return;
  }
  const i = info!;
  expect(i.kernelEnd).toBeLessThanOrEqual(RAM_SIZE);
  expect(i.entry).toBeGreaterThanOrEqual(0x100000);
  expect(i.entry).toBeLessThan(i.kernelEnd);
  // The command line as given, NUL-terminated, below the EBDA.
  const text = Buffer.from(cmdline, 'utf8');
  expect(i.cmdlineGpa + text.length + 1).toBeLessThanOrEqual(0x9fc00);
  expect(Buffer.from(ram.memory.read(i.cmdlineGpa, text.length + 1)).equals(Buffer.concat([text, Buffer.of(0)]))).toBe(true);
  expect(ram.memory.readU32(i.bootParams + 0x228)).toBe(i.cmdlineGpa); // cmd_line_ptr
  if (initrd && initrd.length > 0) {
    expect(i.initrd).toBeDefined();
    expect(i.initrd!.gpa % 4096).toBe(0);
    expect(i.initrd!.gpa).toBeGreaterThanOrEqual(i.kernelEnd);
    expect(i.initrd!.gpa + i.initrd!.size).toBeLessThanOrEqual(RAM_SIZE);
    expect(ram.memory.readU32(i.bootParams + 0x218)).toBe(i.initrd!.gpa); // ramdisk_image
    expect(ram.memory.readU32(i.bootParams + 0x21c)).toBe(initrd.length); // ramdisk_size
  }
}

describe('Linux loader with hostile images', () => {
  it(
    'bzImage: mutated headers, truncation, cmdline lengths, initrd sizes',
    () => {
      checkProperty(
        TARGET,
        'bzImage',
        fc.property(
          fc.integer({ min: 16, max: 8192 }),
          arbMutations(BZ_FIELDS, 0x300),
          fc.option(fc.integer({ min: 0, max: 0x1400 }), { freq: 6 }),
          arbCmdline,
          arbInitrd,
          (pmSize, mutations, truncateTo, cmdline, initrd) => {
            loadChecked(mutate(baseBzImage(pmSize), mutations, truncateTo ?? undefined), cmdline, initrd);
          },
        ),
        300,
      );
    },
    FUZZ_TIMEOUT_MS,
  );

  it(
    'ELF vmlinux: mutated program headers and entry',
    () => {
      checkProperty(
        TARGET,
        'ELF',
        fc.property(arbMutations(ELF_FIELDS, 0x1b0), fc.option(fc.integer({ min: 0, max: 0x1b0 }), { freq: 6 }), arbCmdline, arbInitrd, (mutations, truncateTo, cmdline, initrd) => {
          loadChecked(mutate(baseElf(), mutations, truncateTo ?? undefined), cmdline, initrd);
        }),
        200,
      );
    },
    FUZZ_TIMEOUT_MS,
  );
});
