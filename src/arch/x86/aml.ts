// A small encoder for ACPI Machine Language (ACPI Specification 6.4, chapter 20
// "ACPI Machine Language (AML) Specification") and for the resource descriptors
// that _CRS returns (§6.4 "Resource Data Types for ACPI"): just enough to write
// a DSDT that describes a PCI root bridge (acpi.ts). It builds byte arrays; it
// does not parse or interpret AML.
//
// Every encoder returns a fresh Uint8Array holding one complete AML term (or one
// resource descriptor), so terms nest by passing arrays:
//
//   aml.scope('\\_SB_', [
//     aml.device('PCI0', [
//       aml.name('_HID', aml.eisaId('PNP0A03')),
//       aml.name('_UID', 0),
//       aml.name('_CRS', resourceTemplate([io({ min: 0xcf8, max: 0xcf8, alignment: 1, length: 8 })])),
//     ]),
//   ])
//
// Plain numbers and bigints given where a data object is expected (a Name's
// value, a Package element, a Return value) are encoded with `integer`. Names are
// validated: a bad NameSeg, a string with a non-ASCII character or a value out of
// range throws RangeError rather than producing AML an interpreter would reject.

// --- Opcodes and prefixes (§20.2) -----------------------------------------------

/** §20.2.3 ZeroOp: the Integer 0. */
export const ZERO_OP = 0x00;
/** §20.2.3 OneOp: the Integer 1. */
export const ONE_OP = 0x01;
/** §20.2.5.1 NameOp: DefName := NameOp NameString DataRefObject. */
export const NAME_OP = 0x08;
/** §20.2.3 BytePrefix: ByteConst := BytePrefix ByteData. */
export const BYTE_PREFIX = 0x0a;
/** §20.2.3 WordPrefix: WordConst := WordPrefix WordData (little endian). */
export const WORD_PREFIX = 0x0b;
/** §20.2.3 DWordPrefix: DWordConst := DWordPrefix DWordData. */
export const DWORD_PREFIX = 0x0c;
/** §20.2.3 StringPrefix: String := StringPrefix AsciiCharList NullChar. */
export const STRING_PREFIX = 0x0d;
/** §20.2.3 QWordPrefix: QWordConst := QWordPrefix QWordData. */
export const QWORD_PREFIX = 0x0e;
/** §20.2.5.1 ScopeOp: DefScope := ScopeOp PkgLength NameString TermList. */
export const SCOPE_OP = 0x10;
/** §20.2.5.4 BufferOp: DefBuffer := BufferOp PkgLength BufferSize ByteList. */
export const BUFFER_OP = 0x11;
/** §20.2.5.4 PackageOp: DefPackage := PackageOp PkgLength NumElements PackageElementList. */
export const PACKAGE_OP = 0x12;
/** §20.2.5.2 MethodOp: DefMethod := MethodOp PkgLength NameString MethodFlags TermList. */
export const METHOD_OP = 0x14;
/** §20.2.2 DualNamePrefix: DualNamePath := DualNamePrefix NameSeg NameSeg. */
export const DUAL_NAME_PREFIX = 0x2e;
/** §20.2.2 MultiNamePrefix: MultiNamePath := MultiNamePrefix SegCount NameSeg(SegCount). */
export const MULTI_NAME_PREFIX = 0x2f;
/** §20.2.3 ExtOpPrefix: the first byte of the two-byte opcodes. */
export const EXT_OP_PREFIX = 0x5b;
/** §20.2.5.2 DeviceOp := ExtOpPrefix 0x82; DefDevice := DeviceOp PkgLength NameString TermList. */
export const DEVICE_OP = 0x82;
/** §20.2.2 RootChar '\'. */
export const ROOT_CHAR = 0x5c;
/** §20.2.2 ParentPrefixChar '^'. */
export const PARENT_PREFIX_CHAR = 0x5e;
/** §20.2.2 NullName: a NamePath with no segments. */
export const NULL_NAME = 0x00;
/** §20.2.5.3 ReturnOp: DefReturn := ReturnOp ArgObject. */
export const RETURN_OP = 0xa4;

/** An encoded AML term or resource descriptor. */
export type AmlBytes = Uint8Array;
/** What may stand where a data object is expected: an encoded term, or an integer to encode with `integer`. */
export type AmlData = AmlBytes | number | bigint;

const MAX_U64 = (1n << 64n) - 1n;

/** Concatenates byte runs into one array. */
function concat(parts: readonly (Uint8Array | readonly number[])[]): Uint8Array {
  let length = 0;
  for (const p of parts) length += p.length;
  const out = new Uint8Array(length);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** `value` as `size` little-endian bytes (AML and resource descriptors are little endian, §20.2.3, §6.4). */
function le(value: number | bigint, size: 1 | 2 | 4 | 8): number[] {
  let v = BigInt(value);
  const out: number[] = [];
  for (let i = 0; i < size; i++) {
    out.push(Number(v & 0xffn));
    v >>= 8n;
  }
  return out;
}

function toBigUint(what: string, value: number | bigint, max: bigint): bigint {
  if (typeof value === 'number' && !Number.isSafeInteger(value))
    throw new RangeError(`AML: ${what} must be an integer, got ${value}`);
  const v = BigInt(value);
  if (v < 0n || v > max) throw new RangeError(`AML: ${what} must be in 0..0x${max.toString(16)}, got ${value}`);
  return v;
}

// --- Package length (§20.2.4) ---------------------------------------------------

/** The largest value a PkgLength can hold: 4 bits in the lead byte plus three ByteData (§20.2.4). */
export const MAX_PKG_LENGTH = 0x0fff_ffff;

/**
 * Encodes the PkgLength value `value` (§20.2.4 "Package Length Encoding").
 *
 *   PkgLeadByte bits 7:6  number of ByteData that follow (0–3)
 *               bits 5:4  with no ByteData: bits 5:4 of the length; otherwise reserved, 0
 *               bits 3:0  with no ByteData: bits 3:0 of the length; otherwise the
 *                         least significant nibble of the length
 *   each following ByteData: the next 8 bits of the length
 *
 * So one byte holds 0–0x3F, two 0–0xFFF, three 0–0xFFFFF and four 0–0xFFFFFFF.
 * The shortest form is chosen. `value` is the whole PkgLength value, which
 * counts the PkgLength bytes themselves: use `pkgLength` to wrap content.
 */
export function encodePkgLength(value: number): Uint8Array {
  if (!Number.isInteger(value) || value < 0 || value > MAX_PKG_LENGTH)
    throw new RangeError(`AML: PkgLength must be an integer in 0..0x${MAX_PKG_LENGTH.toString(16)}, got ${value}`);
  if (value <= 0x3f) return Uint8Array.of(value);
  const follow = value <= 0xfff ? 1 : value <= 0xfffff ? 2 : 3;
  const out = [(follow << 6) | (value & 0x0f)];
  for (let i = 0; i < follow; i++) out.push((value >>> (4 + 8 * i)) & 0xff);
  return Uint8Array.from(out);
}

/**
 * The PkgLength that precedes `contentLength` bytes of content (§20.2.4): its
 * value is the length of the content plus the PkgLength's own 1–4 bytes
 * ("PkgLength is the length of the inclusive length of the data for the
 * operation", §5.4 "Definition Block Encoding"). Content of 62 bytes takes a
 * one-byte PkgLength (63); content of 63 bytes needs two (65).
 */
export function pkgLength(contentLength: number): Uint8Array {
  if (!Number.isInteger(contentLength) || contentLength < 0)
    throw new RangeError(`AML: content length must be a non-negative integer, got ${contentLength}`);
  for (let size = 1; size <= 4; size++) {
    const limit = size === 1 ? 0x3f : size === 2 ? 0xfff : size === 3 ? 0xfffff : MAX_PKG_LENGTH;
    if (contentLength + size <= limit) return encodePkgLength(contentLength + size);
  }
  throw new RangeError(`AML: ${contentLength} bytes do not fit a PkgLength (at most 0x${MAX_PKG_LENGTH.toString(16)})`);
}

/** Opcode bytes, a PkgLength covering what follows it, and the content (the shape of every explicit-length term, §5.4). */
function withPkgLength(opcode: readonly number[], content: readonly (Uint8Array | readonly number[])[]): Uint8Array {
  const body = concat(content);
  return concat([opcode, pkgLength(body.length), body]);
}

// --- Names (§20.2.2) -------------------------------------------------------------

const LEAD_NAME_CHAR = /^[A-Z_]$/; // §20.2.2 LeadNameChar := 'A'-'Z' | '_'
const NAME_CHAR = /^[A-Z0-9_]$/; // §20.2.2 NameChar := DigitChar | LeadNameChar

/**
 * A NameSeg (§20.2.2): NameSeg := <LeadNameChar NameChar NameChar NameChar>,
 * four bytes. A shorter name is padded with trailing '_' ("NameSegs shorter
 * than 4 characters are filled with trailing underscores"), so "_S5" and
 * "_S5_" are the same segment.
 */
export function nameSeg(segment: string): Uint8Array {
  if (segment.length < 1 || segment.length > 4) throw new RangeError(`AML: a NameSeg has 1 to 4 characters, got "${segment}"`);
  const padded = segment.padEnd(4, '_');
  if (!LEAD_NAME_CHAR.test(padded[0]) || ![...padded.slice(1)].every((c) => NAME_CHAR.test(c)))
    throw new RangeError(`AML: "${segment}" is not a NameSeg (A-Z or _, then A-Z, 0-9 or _)`);
  return Uint8Array.from([...padded].map((c) => c.charCodeAt(0)));
}

/**
 * A NameString (§20.2.2): NameString := <RootChar NamePath> | <PrefixPath NamePath>.
 * `path` is written as in ASL: an optional leading '\' (RootChar 0x5C) or any
 * number of '^' (ParentPrefixChar 0x5E each), then NameSegs separated by '.'.
 * The NamePath is a single NameSeg, a DualNamePath (0x2E and two segments), a
 * MultiNamePath (0x2F, SegCount 3–255 and the segments) or, for no segments
 * (a bare '\' or '^'), NullName 0x00.
 */
export function nameString(path: string): Uint8Array {
  let rest = path;
  const prefix: number[] = [];
  if (rest.startsWith('\\')) {
    prefix.push(ROOT_CHAR);
    rest = rest.slice(1);
  } else {
    while (rest.startsWith('^')) {
      prefix.push(PARENT_PREFIX_CHAR);
      rest = rest.slice(1);
    }
  }
  const segments = rest === '' ? [] : rest.split('.');
  if (segments.length === 0 && prefix.length === 0) throw new RangeError('AML: empty name');
  if (segments.length > 255) throw new RangeError(`AML: a name path has at most 255 segments, got ${segments.length}`);
  const segs = segments.map(nameSeg);
  let namePath: (Uint8Array | number[])[];
  if (segs.length === 0) namePath = [[NULL_NAME]];
  else if (segs.length === 1) namePath = segs;
  else if (segs.length === 2) namePath = [[DUAL_NAME_PREFIX], ...segs];
  else namePath = [[MULTI_NAME_PREFIX, segs.length], ...segs];
  return concat([prefix, ...namePath]);
}

// --- Data objects (§20.2.3) ------------------------------------------------------

/**
 * An Integer constant in its shortest encoding (§20.2.3): 0 → ZeroOp, 1 → OneOp,
 * up to 0xFF → BytePrefix ByteData, up to 0xFFFF → WordPrefix WordData, up to
 * 0xFFFFFFFF → DWordPrefix DWordData, else QWordPrefix QWordData (little endian).
 * OnesOp (0xFF) is not used for all-ones: its value depends on the table's
 * revision (32 or 64 bits, §5.2.11.1), a QWordConst does not. QWord values need
 * a definition block of revision 2 or later (64-bit integers).
 */
export function integer(value: number | bigint): Uint8Array {
  const v = toBigUint('integer', value, MAX_U64);
  if (v === 0n) return Uint8Array.of(ZERO_OP);
  if (v === 1n) return Uint8Array.of(ONE_OP);
  if (v <= 0xffn) return Uint8Array.from([BYTE_PREFIX, ...le(v, 1)]);
  if (v <= 0xffffn) return Uint8Array.from([WORD_PREFIX, ...le(v, 2)]);
  if (v <= 0xffff_ffffn) return Uint8Array.from([DWORD_PREFIX, ...le(v, 4)]);
  return Uint8Array.from([QWORD_PREFIX, ...le(v, 8)]);
}

/** A String (§20.2.3): StringPrefix 0x0D, the characters (AsciiChar 0x01–0x7F), NullChar 0x00. */
export function string(text: string): Uint8Array {
  const chars = [...text].map((c) => c.charCodeAt(0));
  if (chars.some((c) => c < 0x01 || c > 0x7f)) throw new RangeError(`AML: a String holds ASCII 0x01-0x7F only, got ${JSON.stringify(text)}`);
  return Uint8Array.from([STRING_PREFIX, ...chars, 0x00]);
}

/**
 * A Buffer (§20.2.5.4): BufferOp 0x11, PkgLength, BufferSize (an Integer term,
 * here the byte count) and the bytes.
 */
export function buffer(bytes: Uint8Array | readonly number[]): Uint8Array {
  for (const b of bytes) if (!Number.isInteger(b) || b < 0 || b > 0xff) throw new RangeError(`AML: buffer byte ${b} is not 0..255`);
  return withPkgLength([BUFFER_OP], [integer(bytes.length), bytes]);
}

function dataObject(value: AmlData): Uint8Array {
  return value instanceof Uint8Array ? value : integer(value);
}

/**
 * A Package (§20.2.5.4): PackageOp 0x12, PkgLength, NumElements (one ByteData,
 * so at most 255 elements; larger ones need DefVarPackage, not provided) and the
 * elements, each a data object (numbers become Integers) or an encoded name.
 */
export function pkg(elements: readonly AmlData[]): Uint8Array {
  if (elements.length > 255) throw new RangeError(`AML: a Package has at most 255 elements here, got ${elements.length}`);
  return withPkgLength([PACKAGE_OP], [[elements.length], ...elements.map(dataObject)]);
}

// --- Named objects and namespace modifiers (§20.2.5.1, §20.2.5.2) -----------------

/** DefName (§20.2.5.1): NameOp 0x08, NameString, DataRefObject — ASL `Name (path, value)`. */
export function name(path: string, value: AmlData): Uint8Array {
  return concat([[NAME_OP], nameString(path), dataObject(value)]);
}

/** DefScope (§20.2.5.1): ScopeOp 0x10, PkgLength, NameString, TermList — ASL `Scope (path) { terms }`. */
export function scope(path: string, terms: readonly Uint8Array[]): Uint8Array {
  return withPkgLength([SCOPE_OP], [nameString(path), ...terms]);
}

/** DefDevice (§20.2.5.2): ExtOpPrefix 0x5B, 0x82, PkgLength, NameString, TermList — ASL `Device (path) { terms }`. */
export function device(path: string, terms: readonly Uint8Array[]): Uint8Array {
  return withPkgLength([EXT_OP_PREFIX, DEVICE_OP], [nameString(path), ...terms]);
}

export interface MethodOptions {
  /** ArgCount, 0–7 (MethodFlags bits 2:0). Default 0. */
  args?: number;
  /** SerializeFlag (MethodFlags bit 3). Default false (NotSerialized). */
  serialized?: boolean;
  /** SyncLevel, 0–15 (MethodFlags bits 7:4). Default 0. */
  syncLevel?: number;
}

/**
 * DefMethod (§20.2.5.2): MethodOp 0x14, PkgLength, NameString, MethodFlags,
 * TermList. MethodFlags: bits 2:0 ArgCount, bit 3 SerializeFlag, bits 7:4 SyncLevel.
 */
export function method(path: string, terms: readonly Uint8Array[], options: MethodOptions = {}): Uint8Array {
  const args = options.args ?? 0;
  const syncLevel = options.syncLevel ?? 0;
  if (!Number.isInteger(args) || args < 0 || args > 7) throw new RangeError(`AML: a method takes 0 to 7 arguments, got ${args}`);
  if (!Number.isInteger(syncLevel) || syncLevel < 0 || syncLevel > 15) throw new RangeError(`AML: SyncLevel is 0 to 15, got ${syncLevel}`);
  const flags = args | ((options.serialized ? 1 : 0) << 3) | (syncLevel << 4);
  return withPkgLength([METHOD_OP], [nameString(path), [flags], ...terms]);
}

/** DefReturn (§20.2.5.3): ReturnOp 0xA4, ArgObject (a TermArg: here a data object) — ASL `Return (value)`. */
export function ret(value: AmlData): Uint8Array {
  return concat([[RETURN_OP], dataObject(value)]);
}

// --- EISA IDs (§19.3.4 "ASL Macros": EISAID; §6.1.5 _HID) --------------------------

/**
 * The 32-bit compressed EISA ID of a "UUUNNNN" string (three uppercase letters,
 * four hex digits), as the ASL EISAID macro produces it (§19.3.4 "ASL
 * Macros"; the EISAID entry of §19.6: "EISAID (EisaIdString) => DWordConst"); _HID and _CID take
 * it (§6.1.5, §6.1.2). The manufacturer code packs the letters as 5-bit values
 * ('A' = 1 … 'Z' = 26) into bits 14:10, 9:5 and 4:0 of a 16-bit word, bit 15
 * clear; the product number is the 16-bit value of the hex digits. The two
 * words make a big-endian 32-bit value, stored byte for byte in that order — so
 * read as the little-endian AML integer it is byte-swapped:
 * "PNP0A03" → 0x41D0, 0x0A03 → bytes 41 D0 0A 03 → 0x030AD041.
 */
export function eisaIdValue(id: string): number {
  if (!/^[A-Z]{3}[0-9A-F]{4}$/.test(id)) throw new RangeError(`AML: an EISA ID is three letters A-Z and four hex digits, got "${id}"`);
  const letter = (i: number) => id.charCodeAt(i) - 0x40; // 'A' → 1
  const vendor = (letter(0) << 10) | (letter(1) << 5) | letter(2);
  const product = parseInt(id.slice(3), 16);
  const bytes = [vendor >> 8, vendor & 0xff, product >> 8, product & 0xff];
  return (bytes[0] | (bytes[1] << 8) | (bytes[2] << 16) | (bytes[3] << 24)) >>> 0;
}

/** `eisaIdValue(id)` as a DWordConst (§20.2.3), the form EISAID always yields (§19.6, EISAID), even where a WordConst would do. */
export function eisaId(id: string): Uint8Array {
  return Uint8Array.from([DWORD_PREFIX, ...le(eisaIdValue(id), 4)]);
}

// --- Resource descriptors (§6.4) ---------------------------------------------------

/** §6.4.2.5 I/O Port Descriptor tag: type 0 (small), item name 0x8, length 7 → 0x47. */
export const IO_PORT_DESCRIPTOR = 0x47;
/** §6.4.2.9 End Tag: type 0, item name 0xF, length 1 → 0x79. */
export const END_TAG = 0x79;
/** §6.4.3.5.1 QWord Address Space Descriptor tag: type 1 (large), item name 0x0A → 0x8A. */
export const QWORD_ADDRESS_SPACE_DESCRIPTOR = 0x8a;
/** §6.4.3.5.2 DWord Address Space Descriptor tag: type 1, item name 0x07 → 0x87. */
export const DWORD_ADDRESS_SPACE_DESCRIPTOR = 0x87;
/** §6.4.3.5.3 Word Address Space Descriptor tag: type 1, item name 0x08 → 0x88. */
export const WORD_ADDRESS_SPACE_DESCRIPTOR = 0x88;

/** Address space descriptor Resource Type (byte 3, §6.4.3.5.1–3). */
export const RESOURCE_TYPE_MEMORY = 0;
export const RESOURCE_TYPE_IO = 1;
export const RESOURCE_TYPE_BUS_NUMBER = 2;

// General Flags (byte 4, §6.4.3.5.1–3).
/** Bit 3 _MAF: the maximum address is fixed. */
export const GENERAL_FLAG_MAX_FIXED = 1 << 3;
/** Bit 2 _MIF: the minimum address is fixed. */
export const GENERAL_FLAG_MIN_FIXED = 1 << 2;
/** Bit 1 _DEC: 1 = this bridge subtractively decodes the range, 0 = positive decode. */
export const GENERAL_FLAG_SUBTRACTIVE_DECODE = 1 << 1;
/**
 * Bit 0: 1 = the device consumes the resource, 0 = it produces it (a bridge
 * window). ASL's ResourceConsumer/ResourceProducer keyword sets it (§19.6 Word/
 * DWord/QWord… macros); Linux marks producer ranges of a root bridge as its
 * windows (IORESOURCE_WINDOW).
 */
export const GENERAL_FLAG_CONSUMER = 1 << 0;

// Type Specific Flags (byte 5), §6.4.3.5.5 "Resource Type Specific Flags".
/** Memory: bit 0 _RW, 1 = read/write, 0 = read-only. */
export const MEMORY_FLAG_READ_WRITE = 1 << 0;
/** Memory: bits 2:1 _MEM. */
export const MEMORY_CACHEABILITY = { nonCacheable: 0, cacheable: 1, writeCombining: 2, prefetchable: 3 } as const;
export type MemoryCacheability = keyof typeof MEMORY_CACHEABILITY;
/** I/O: bits 1:0 _RNG: 1 = non-ISA ranges only, 2 = ISA ranges only, 3 = the entire range. */
export const IO_RANGE = { nonIsaOnly: 1, isaOnly: 2, entire: 3 } as const;
export type IoRange = keyof typeof IO_RANGE;

/** A fixed range [min, max] of an address space descriptor. */
export interface AddressRange {
  min: number | bigint;
  /** Inclusive. */
  max: number | bigint;
  /** Default true: a bridge window (producer); false: consumed by the device itself. */
  producer?: boolean;
  /** _TRA, the offset added on the secondary side. Default 0. */
  translation?: number | bigint;
}

export interface MemoryRange extends AddressRange {
  /** _MEM. Default 'nonCacheable' (device memory). */
  cacheability?: MemoryCacheability;
  /** _RW. Default true. */
  readWrite?: boolean;
}

export interface IoWindowRange extends AddressRange {
  /** _RNG. Default 'entire'. */
  range?: IoRange;
}

/**
 * The body shared by the Word, DWord and QWord Address Space Descriptors
 * (§6.4.3.5.1–3), all with the same layout but `size`-byte address fields:
 *   byte 0 tag; bytes 1–2 Length (of the rest); byte 3 Resource Type;
 *   byte 4 General Flags; byte 5 Type Specific Flags; then _GRA, _MIN, _MAX,
 *   _TRA, _LEN, `size` bytes each, little endian; no Resource Source.
 * The range is fixed: _MIF and _MAF set, positive decode, _GRA 0 and
 * _LEN = _MAX − _MIN + 1: the table of valid combinations of address space
 * descriptor fields in §6.4.3.5 requires exactly that of a fixed-size,
 * fixed-location descriptor (_LEN > 0, _MIF = 1, _MAF = 1).
 */
function addressSpace(tag: number, size: 2 | 4 | 8, resourceType: number, typeFlags: number, r: AddressRange): Uint8Array {
  const limit = (1n << BigInt(8 * size)) - 1n;
  const min = toBigUint('address range minimum', r.min, limit);
  const max = toBigUint('address range maximum', r.max, limit);
  const translation = toBigUint('translation offset', r.translation ?? 0, limit);
  if (max < min) throw new RangeError(`AML: address range maximum 0x${max.toString(16)} is below the minimum 0x${min.toString(16)}`);
  const length = max - min + 1n;
  if (length > limit) throw new RangeError(`AML: the range [0x${min.toString(16)}, 0x${max.toString(16)}] is too long for a ${size}-byte length`);
  const general = GENERAL_FLAG_MIN_FIXED | GENERAL_FLAG_MAX_FIXED | (r.producer === false ? GENERAL_FLAG_CONSUMER : 0);
  const body = [resourceType, general, typeFlags, ...le(0, size), ...le(min, size), ...le(max, size), ...le(translation, size), ...le(length, size)];
  return Uint8Array.from([tag, ...le(body.length, 2), ...body]);
}

/** WordBusNumber (§6.4.3.5.3, Resource Type 2): a range of bus numbers; Type Specific Flags 0. 16 bytes. */
export function wordBusNumber(r: AddressRange): Uint8Array {
  return addressSpace(WORD_ADDRESS_SPACE_DESCRIPTOR, 2, RESOURCE_TYPE_BUS_NUMBER, 0, r);
}

/** WordIO (§6.4.3.5.3, Resource Type 1): an I/O port range; Type Specific Flags _RNG (§6.4.3.5.5). 16 bytes. */
export function wordIo(r: IoWindowRange): Uint8Array {
  return addressSpace(WORD_ADDRESS_SPACE_DESCRIPTOR, 2, RESOURCE_TYPE_IO, IO_RANGE[r.range ?? 'entire'], r);
}

function memoryFlags(r: MemoryRange): number {
  return (MEMORY_CACHEABILITY[r.cacheability ?? 'nonCacheable'] << 1) | (r.readWrite === false ? 0 : MEMORY_FLAG_READ_WRITE);
}

/** DWordMemory (§6.4.3.5.2, Resource Type 0): a 32-bit memory range; Type Specific Flags _MEM and _RW (§6.4.3.5.5). 26 bytes. */
export function dwordMemory(r: MemoryRange): Uint8Array {
  return addressSpace(DWORD_ADDRESS_SPACE_DESCRIPTOR, 4, RESOURCE_TYPE_MEMORY, memoryFlags(r), r);
}

/** QWordMemory (§6.4.3.5.1, Resource Type 0): a 64-bit memory range; flags as for DWordMemory. 46 bytes. */
export function qwordMemory(r: MemoryRange): Uint8Array {
  return addressSpace(QWORD_ADDRESS_SPACE_DESCRIPTOR, 8, RESOURCE_TYPE_MEMORY, memoryFlags(r), r);
}

export interface IoPortRange {
  /** _MIN: lowest base address. */
  min: number;
  /** _MAX: highest base address (equal to `min` for a fixed port). */
  max: number;
  /** _ALN: base alignment, 0–255. Default 1. */
  alignment?: number;
  /** _LEN: number of ports, 0–255. */
  length: number;
  /** _DEC: true (default) = decodes 16 address bits, false = 10 bits. */
  decode16?: boolean;
}

/**
 * IO, the I/O Port Descriptor (§6.4.2.5), 8 bytes: byte 0 0x47; byte 1
 * Information (bit 0 _DEC: 1 = 16-bit decode); bytes 2–3 _MIN; bytes 4–5 _MAX;
 * byte 6 _ALN; byte 7 _LEN. A small descriptor is always consumed by its device.
 */
export function io(r: IoPortRange): Uint8Array {
  const u16 = (what: string, v: number) => Number(toBigUint(what, v, 0xffffn));
  const u8 = (what: string, v: number) => Number(toBigUint(what, v, 0xffn));
  const min = u16('I/O minimum base', r.min);
  const max = u16('I/O maximum base', r.max);
  if (max < min) throw new RangeError(`AML: I/O maximum base 0x${max.toString(16)} is below the minimum 0x${min.toString(16)}`);
  return Uint8Array.from([
    IO_PORT_DESCRIPTOR,
    r.decode16 === false ? 0 : 1,
    ...le(min, 2),
    ...le(max, 2),
    u8('I/O alignment', r.alignment ?? 1),
    u8('I/O length', r.length),
  ]);
}

export interface ResourceTemplateOptions {
  /**
   * Default true: the End Tag's checksum byte makes all the descriptor bytes,
   * End Tag included, sum to 0 mod 256. False writes 0, which §6.4.2.9 says
   * OSPM treats "as if the checksum operation succeeded" (what ASL compilers emit).
   */
  checksum?: boolean;
}

/**
 * ResourceTemplate (§19.3.4; §6.4): a Buffer (§20.2.5.4) holding the
 * descriptors followed by the End Tag (§6.4.2.9): 0x79 and a checksum byte.
 */
export function resourceTemplate(descriptors: readonly Uint8Array[], options: ResourceTemplateOptions = {}): Uint8Array {
  const data = concat([...descriptors, [END_TAG, 0]]);
  if (options.checksum !== false) {
    let sum = 0;
    for (const b of data) sum += b;
    data[data.length - 1] = (0x100 - (sum & 0xff)) & 0xff;
  }
  return buffer(data);
}

/** The encoders under one name, for `aml.device(...)`-style use. */
export const aml = {
  encodePkgLength,
  pkgLength,
  nameSeg,
  nameString,
  integer,
  string,
  buffer,
  package: pkg,
  name,
  scope,
  device,
  method,
  return: ret,
  eisaId,
  eisaIdValue,
} as const;
