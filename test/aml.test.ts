// Tests for the AML encoder (src/arch/x86/aml.ts). Every expected byte string
// here is derived by hand from the ACPI 6.4 specification: §20.2.2 (names),
// §20.2.3 (data objects), §20.2.4 (PkgLength), §20.2.5 (term objects), §6.4
// (resource descriptors), §19.3.4 (EISAID).
import {
  aml,
  buffer,
  device,
  dwordMemory,
  eisaId,
  eisaIdValue,
  encodePkgLength,
  integer,
  io,
  method,
  name,
  nameSeg,
  nameString,
  pkg,
  pkgLength,
  qwordMemory,
  resourceTemplate,
  ret,
  scope,
  string,
  wordBusNumber,
  wordIo,
} from '../src/arch/x86/aml';

const bytes = (a: Uint8Array) => [...a];
const ascii = (s: string) => [...s].map((c) => c.charCodeAt(0));

describe('PkgLength (§20.2.4)', () => {
  test.each([
    [0, [0x00]],
    [1, [0x01]],
    [63, [0x3f]], // largest one-byte value: bits 5:0
    [64, [0x40, 0x04]], // lead: 1 follow byte, nibble 0; then 64 >> 4
    [0x123, [0x43, 0x12]],
    [4095, [0x4f, 0xff]], // largest two-byte value: 12 bits
    [4096, [0x80, 0x00, 0x01]], // two follow bytes
    [0xfffff, [0x8f, 0xff, 0xff]], // largest three-byte value: 20 bits
    [0x100000, [0xc0, 0x00, 0x00, 0x01]], // 1 MiB: three follow bytes
    [0x100005, [0xc5, 0x00, 0x00, 0x01]],
    [0x0fffffff, [0xcf, 0xff, 0xff, 0xff]], // the maximum, 28 bits
  ])('value %i encodes as %j', (value, expected) => {
    expect(bytes(encodePkgLength(value))).toEqual(expected);
  });

  test('rejects values that do not fit in 28 bits, negatives and fractions', () => {
    expect(() => encodePkgLength(0x10000000)).toThrow(RangeError);
    expect(() => encodePkgLength(-1)).toThrow(RangeError);
    expect(() => encodePkgLength(1.5)).toThrow(RangeError);
  });

  test('pkgLength(content) counts its own bytes and grows at the boundaries', () => {
    expect(bytes(pkgLength(0))).toEqual([0x01]);
    expect(bytes(pkgLength(62))).toEqual([0x3f]); // 62 + 1 = 63: still one byte
    expect(bytes(pkgLength(63))).toEqual([0x41, 0x04]); // 63 + 2 = 65
    expect(bytes(pkgLength(4093))).toEqual([0x4f, 0xff]); // 4093 + 2 = 4095
    expect(bytes(pkgLength(4094))).toEqual([0x81, 0x00, 0x01]); // 4094 + 3 = 4097
    expect(bytes(pkgLength(0xffffc))).toEqual([0x8f, 0xff, 0xff]); // + 3 = 0xfffff
    expect(bytes(pkgLength(0xffffd))).toEqual([0xc1, 0x00, 0x00, 0x01]); // + 4 = 0x100001
    expect(() => pkgLength(0x0ffffffc)).toThrow(RangeError);
    expect(bytes(pkgLength(0x0ffffffb))).toEqual([0xcf, 0xff, 0xff, 0xff]);
  });

  test('a Buffer just past the one-byte limit takes a two-byte PkgLength', () => {
    // BufferOp, PkgLength, BufferSize = BytePrefix 61, then 61 bytes: content 63 → PkgLength 65.
    const b = buffer(new Array<number>(61).fill(0xaa));
    expect(bytes(b.subarray(0, 5))).toEqual([0x11, 0x41, 0x04, 0x0a, 0x3d]);
    expect(b.length).toBe(1 + 2 + 2 + 61);
  });

  test('a 1 MiB Buffer takes a four-byte PkgLength', () => {
    // BufferSize = DWordPrefix 0x00100000 (5 bytes); content 0x100005 → PkgLength 0x100009.
    const b = buffer(new Uint8Array(0x100000));
    expect(bytes(b.subarray(0, 10))).toEqual([0x11, 0xc9, 0x00, 0x00, 0x01, 0x0c, 0x00, 0x00, 0x10, 0x00]);
    expect(b.length).toBe(1 + 4 + 5 + 0x100000);
  });
});

describe('integers (§20.2.3)', () => {
  test.each<[number | bigint, number[]]>([
    [0, [0x00]], // ZeroOp
    [1, [0x01]], // OneOp
    [2, [0x0a, 0x02]], // BytePrefix
    [0xff, [0x0a, 0xff]],
    [0x100, [0x0b, 0x00, 0x01]], // WordPrefix, little endian
    [0xffff, [0x0b, 0xff, 0xff]],
    [0x10000, [0x0c, 0x00, 0x00, 0x01, 0x00]], // DWordPrefix
    [0xffffffff, [0x0c, 0xff, 0xff, 0xff, 0xff]],
    [0x100000000, [0x0e, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00]], // QWordPrefix
    [0x0123456789abcdefn, [0x0e, 0xef, 0xcd, 0xab, 0x89, 0x67, 0x45, 0x23, 0x01]],
    [0xffffffffffffffffn, [0x0e, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]], // not OnesOp
  ])('%s', (value, expected) => {
    expect(bytes(integer(value))).toEqual(expected);
  });

  test('rejects negative, fractional, unsafe and > 64-bit values', () => {
    expect(() => integer(-1)).toThrow(RangeError);
    expect(() => integer(0.5)).toThrow(RangeError);
    expect(() => integer(2 ** 53)).toThrow(RangeError);
    expect(() => integer(1n << 64n)).toThrow(RangeError);
  });
});

describe('names (§20.2.2)', () => {
  test('NameSeg pads with underscores to four characters', () => {
    expect(bytes(nameSeg('_S5'))).toEqual(ascii('_S5_'));
    expect(bytes(nameSeg('A'))).toEqual(ascii('A___'));
    expect(bytes(nameSeg('PCI0'))).toEqual(ascii('PCI0'));
    expect(bytes(nameSeg('_SB_'))).toEqual(ascii('_SB_'));
  });

  test('NameSeg rejects bad names', () => {
    for (const bad of ['', 'ABCDE', '0ABC', 'a', 'PC-0', 'PCİ']) expect(() => nameSeg(bad)).toThrow(RangeError);
  });

  test('NameString: root, parent prefixes, dual and multi name paths, NullName', () => {
    expect(bytes(nameString('PCI0'))).toEqual(ascii('PCI0'));
    expect(bytes(nameString('\\_SB'))).toEqual([0x5c, ...ascii('_SB_')]);
    expect(bytes(nameString('\\'))).toEqual([0x5c, 0x00]); // RootChar NullName
    expect(bytes(nameString('\\_SB.PCI0'))).toEqual([0x5c, 0x2e, ...ascii('_SB_PCI0')]); // DualNamePrefix
    expect(bytes(nameString('^PCI0'))).toEqual([0x5e, ...ascii('PCI0')]);
    expect(bytes(nameString('^^A.B.C'))).toEqual([0x5e, 0x5e, 0x2f, 0x03, ...ascii('A___B___C___')]); // MultiNamePrefix SegCount
    expect(bytes(nameString('_SB.PCI0.LNKA'))).toEqual([0x2f, 0x03, ...ascii('_SB_PCI0LNKA')]);
    expect(() => nameString('')).toThrow(RangeError);
    expect(() => nameString('\\_SB..PCI0')).toThrow(RangeError);
    expect(() => nameString('^\\_SB')).toThrow(RangeError);
  });
});

describe('data and term objects (§20.2.3, §20.2.5)', () => {
  test('String: StringPrefix, ASCII, NullChar', () => {
    expect(bytes(string('ab'))).toEqual([0x0d, 0x61, 0x62, 0x00]);
    expect(bytes(string(''))).toEqual([0x0d, 0x00]);
    expect(() => string('é')).toThrow(RangeError);
    expect(() => string('a\0b')).toThrow(RangeError);
  });

  test('Buffer: BufferOp, PkgLength, BufferSize, bytes', () => {
    expect(bytes(buffer([1, 2, 3]))).toEqual([0x11, 0x06, 0x0a, 0x03, 0x01, 0x02, 0x03]);
    expect(bytes(buffer([]))).toEqual([0x11, 0x02, 0x00]); // BufferSize ZeroOp
    expect(() => buffer([256])).toThrow(RangeError);
  });

  test('Package: PackageOp, PkgLength, NumElements, elements', () => {
    expect(bytes(pkg([]))).toEqual([0x12, 0x02, 0x00]);
    expect(bytes(pkg([1, 2]))).toEqual([0x12, 0x05, 0x02, 0x01, 0x0a, 0x02]);
    expect(bytes(aml.package([string('x'), pkg([0])]))).toEqual([0x12, 0x09, 0x02, 0x0d, 0x78, 0x00, 0x12, 0x03, 0x01, 0x00]);
    expect(() => pkg(new Array<number>(256).fill(0))).toThrow(RangeError);
  });

  test('Name(_S5, Package(){5, 5, 0, 0})', () => {
    expect(bytes(name('_S5', pkg([5, 5, 0, 0])))).toEqual([
      0x08, ...ascii('_S5_'), 0x12, 0x08, 0x04, 0x0a, 0x05, 0x0a, 0x05, 0x00, 0x00,
    ]);
  });

  test('Device(PCI0) { Name(_HID, EisaId("PNP0A03")); Name(_UID, 0) }', () => {
    // NameString 4 + Name _HID (1 + 4 + 5) + Name _UID (1 + 4 + 1) = 20 bytes → PkgLength 21.
    expect(bytes(device('PCI0', [name('_HID', eisaId('PNP0A03')), name('_UID', 0)]))).toEqual([
      0x5b, 0x82, // ExtOpPrefix DeviceOp
      0x15, // PkgLength 21
      ...ascii('PCI0'),
      0x08, ...ascii('_HID'), 0x0c, 0x41, 0xd0, 0x0a, 0x03, // NameOp _HID DWordConst 0x030AD041
      0x08, ...ascii('_UID'), 0x00, // NameOp _UID ZeroOp
    ]);
  });

  test('Scope(\\_SB) { Device(PCI0) {} }', () => {
    // Device: 5B 82, PkgLength 5, "PCI0" (7 bytes). Scope content: 5C "_SB_" (5) + 7 = 12 → PkgLength 13.
    expect(bytes(scope('\\_SB', [device('PCI0', [])]))).toEqual([
      0x10, 0x0d, 0x5c, ...ascii('_SB_'), 0x5b, 0x82, 0x05, ...ascii('PCI0'),
    ]);
  });

  test('Method with flags and Return', () => {
    // MethodOp, PkgLength, "_STA", MethodFlags, ReturnOp BytePrefix 0x0F: content 8 → PkgLength 9.
    expect(bytes(method('_STA', [ret(0x0f)]))).toEqual([0x14, 0x09, ...ascii('_STA'), 0x00, 0xa4, 0x0a, 0x0f]);
    // ArgCount 2 (bits 2:0), Serialized (bit 3), SyncLevel 3 (bits 7:4) → 0x3A.
    expect(bytes(aml.method('FOO', [aml.return(string('ok'))], { args: 2, serialized: true, syncLevel: 3 }))).toEqual([
      0x14, 0x0b, ...ascii('FOO_'), 0x3a, 0xa4, 0x0d, 0x6f, 0x6b, 0x00,
    ]);
    expect(() => method('FOO', [], { args: 8 })).toThrow(RangeError);
    expect(() => method('FOO', [], { syncLevel: 16 })).toThrow(RangeError);
  });
});

describe('EisaId (§19.3.4, §6.1.5)', () => {
  test('PNP0A03 → 0x030AD041, PNP0C0F → 0x0F0CD041', () => {
    // "PNP": P = 16, N = 14, P = 16 → (16 << 10) | (14 << 5) | 16 = 0x41D0; bytes 41 D0, then 0A 03.
    expect(eisaIdValue('PNP0A03')).toBe(0x030ad041);
    expect(eisaIdValue('PNP0C0F')).toBe(0x0f0cd041);
    expect(eisaIdValue('PNP0A08')).toBe(0x080ad041);
    // "ABC": (1 << 10) | (2 << 5) | 3 = 0x0443; product 0xFFFF.
    expect(eisaIdValue('ABCFFFF')).toBe(0xffff4304);
  });

  test('always a DWordConst, even for a small value', () => {
    expect(bytes(eisaId('PNP0A03'))).toEqual([0x0c, 0x41, 0xd0, 0x0a, 0x03]);
    expect(bytes(eisaId('PNP0000'))).toEqual([0x0c, 0x41, 0xd0, 0x00, 0x00]);
  });

  test('rejects malformed ids', () => {
    for (const bad of ['pnp0a03', 'PNP0A0', 'PNP0A033', 'PNP0A0G', 'PN10A03']) expect(() => eisaIdValue(bad)).toThrow(RangeError);
  });
});

describe('resource descriptors (§6.4)', () => {
  test('IO: I/O Port Descriptor 0x47 (§6.4.2.5)', () => {
    expect(bytes(io({ min: 0xcf8, max: 0xcf8, alignment: 1, length: 8 }))).toEqual([0x47, 0x01, 0xf8, 0x0c, 0xf8, 0x0c, 0x01, 0x08]);
    expect(bytes(io({ min: 0x60, max: 0x60, length: 1, decode16: false }))).toEqual([0x47, 0x00, 0x60, 0x00, 0x60, 0x00, 0x01, 0x01]);
    expect(() => io({ min: 0x10000, max: 0x10000, length: 1 })).toThrow(RangeError);
    expect(() => io({ min: 2, max: 1, length: 1 })).toThrow(RangeError);
    expect(() => io({ min: 0, max: 0, length: 256 })).toThrow(RangeError);
  });

  test('WordBusNumber: Word Address Space Descriptor 0x88, type 2 (§6.4.3.5.3)', () => {
    expect(bytes(wordBusNumber({ min: 0, max: 0xff }))).toEqual([
      0x88, 0x0d, 0x00, // tag, Length 13
      0x02, // Resource Type: bus number range
      0x0c, // General Flags: _MAF | _MIF, positive decode, producer
      0x00, // Type Specific Flags
      0x00, 0x00, // _GRA
      0x00, 0x00, // _MIN
      0xff, 0x00, // _MAX
      0x00, 0x00, // _TRA
      0x00, 0x01, // _LEN = 0x100
    ]);
    expect(() => wordBusNumber({ min: 0, max: 0xffff })).toThrow(RangeError); // _LEN 0x10000 does not fit
  });

  test('WordIO: type 1 with _RNG flags (§6.4.3.5.3, §6.4.3.5.5)', () => {
    expect(bytes(wordIo({ min: 0x0d00, max: 0xffff }))).toEqual([
      0x88, 0x0d, 0x00, 0x01, 0x0c, 0x03, // I/O, fixed, producer, EntireRange
      0x00, 0x00, 0x00, 0x0d, 0xff, 0xff, 0x00, 0x00, 0x00, 0xf3,
    ]);
    // Consumer (General Flags bit 0), ISA-only ranges (_RNG 2), translation offset.
    expect(bytes(wordIo({ min: 0x100, max: 0x1ff, producer: false, range: 'isaOnly', translation: 0x1000 }))).toEqual([
      0x88, 0x0d, 0x00, 0x01, 0x0d, 0x02, 0x00, 0x00, 0x00, 0x01, 0xff, 0x01, 0x00, 0x10, 0x00, 0x01,
    ]);
    expect(() => wordIo({ min: 0, max: 0x10000 })).toThrow(RangeError);
    expect(() => wordIo({ min: 0x200, max: 0x1ff })).toThrow(RangeError);
  });

  test('DWordMemory: DWord Address Space Descriptor 0x87, type 0 (§6.4.3.5.2, §6.4.3.5.5)', () => {
    expect(bytes(dwordMemory({ min: 0xc0000000, max: 0xfebfffff }))).toEqual([
      0x87, 0x17, 0x00, // tag, Length 23
      0x00, // memory range
      0x0c, // _MAF | _MIF, producer
      0x01, // NonCacheable (_MEM 0), ReadWrite (_RW 1)
      0x00, 0x00, 0x00, 0x00, // _GRA
      0x00, 0x00, 0x00, 0xc0, // _MIN
      0xff, 0xff, 0xbf, 0xfe, // _MAX
      0x00, 0x00, 0x00, 0x00, // _TRA
      0x00, 0x00, 0xc0, 0x3e, // _LEN
    ]);
    const flags = (r: Parameters<typeof dwordMemory>[0]) => dwordMemory(r)[5];
    expect(flags({ min: 0, max: 0xfff, cacheability: 'cacheable' })).toBe(0x03);
    expect(flags({ min: 0, max: 0xfff, cacheability: 'writeCombining' })).toBe(0x05);
    expect(flags({ min: 0, max: 0xfff, cacheability: 'prefetchable', readWrite: false })).toBe(0x06);
    expect(() => dwordMemory({ min: 0, max: 0xffffffff })).toThrow(RangeError); // _LEN 2^32 does not fit
    expect(() => dwordMemory({ min: 0, max: 0x100000000 })).toThrow(RangeError);
  });

  test('QWordMemory: QWord Address Space Descriptor 0x8A (§6.4.3.5.1)', () => {
    expect(bytes(qwordMemory({ min: 0x100000000n, max: 0x1ffffffffn }))).toEqual([
      0x8a, 0x2b, 0x00, // tag, Length 43
      0x00, 0x0c, 0x01,
      0, 0, 0, 0, 0, 0, 0, 0, // _GRA
      0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, // _MIN
      0xff, 0xff, 0xff, 0xff, 0x01, 0x00, 0x00, 0x00, // _MAX
      0, 0, 0, 0, 0, 0, 0, 0, // _TRA
      0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, // _LEN
    ]);
  });

  test('ResourceTemplate: a Buffer ending in the End Tag with its checksum (§6.4.2.9)', () => {
    // Buffer of 10 bytes: the IO descriptor (8) and the End Tag (2). The bytes
    // 47 01 F8 0C F8 0C 01 08 79 sum to 0x2D2, so the checksum is 0x2E.
    const ioDesc = io({ min: 0xcf8, max: 0xcf8, alignment: 1, length: 8 });
    expect(bytes(resourceTemplate([ioDesc]))).toEqual([
      0x11, 0x0d, 0x0a, 0x0a, 0x47, 0x01, 0xf8, 0x0c, 0xf8, 0x0c, 0x01, 0x08, 0x79, 0x2e,
    ]);
    // A zero checksum is allowed ("treated as if the checksum operation succeeded").
    expect(bytes(resourceTemplate([ioDesc], { checksum: false })).slice(-2)).toEqual([0x79, 0x00]);
    // Only the End Tag: 0x79 + 0x87 = 0x100.
    expect(bytes(resourceTemplate([]))).toEqual([0x11, 0x05, 0x0a, 0x02, 0x79, 0x87]);
  });

  test('the checksum makes every template sum to 0', () => {
    const template = resourceTemplate([
      wordBusNumber({ min: 0, max: 0 }),
      io({ min: 0xcf8, max: 0xcf8, length: 8 }),
      wordIo({ min: 0, max: 0xcf7 }),
      dwordMemory({ min: 0xe0000000, max: 0xefffffff }),
      qwordMemory({ min: 1n << 40n, max: (1n << 41n) - 1n }),
    ]);
    // Data 16 + 8 + 16 + 26 + 46 + 2 = 114 (0x72) bytes; with BufferSize 0A 72 the content is 116,
    // so a two-byte PkgLength of 118 = 0x76: lead 0x40 | 0x6, then 0x07.
    expect(bytes(template.subarray(0, 5))).toEqual([0x11, 0x46, 0x07, 0x0a, 0x72]);
    const data = template.subarray(5);
    expect(data.length).toBe(0x72);
    expect(data.reduce((s, b) => s + b, 0) & 0xff).toBe(0);
  });
});
