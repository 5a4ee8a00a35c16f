// Codec for the Linux x86 `struct boot_params` (the 4096-byte "zero page") and
// the `struct setup_header` embedded in it at offset 0x1f1.
//
// Every offset below is the one in the kernel's
// arch/x86/include/uapi/asm/bootparam.h; the meaning of each field is in
// Documentation/arch/x86/boot.rst ("THE REAL-MODE KERNEL HEADER", "DETAILS OF
// HEADER FIELDS") and Documentation/arch/x86/zero-page.rst.
//
// The setup header sits at the same offset (0x1f1) in a bzImage file and in
// boot_params, so `parseSetupHeader` reads either one. This is the only place
// in tskvm that knows these offsets (DESIGN.md: one codec per struct).

/** sizeof(struct boot_params): one 4 KiB page. */
export const BOOT_PARAMS_SIZE = 0x1000;

/** offsetof(struct boot_params, hdr). */
export const SETUP_HEADER_OFFSET = 0x1f1;

/** End of the setup header as of protocol 2.15 (kernel_info_offset is its last field). */
export const SETUP_HEADER_END = 0x26c;

/** boot_flag value (offset 0x1fe): the 0xAA55 boot-sector signature. */
export const BOOT_FLAG_MAGIC = 0xaa55;

/** header value (offset 0x202): "HdrS" read as a little-endian u32. */
export const HEADER_MAGIC = 0x53726448;

// --- loadflags (offset 0x211), boot.rst "loadflags" -------------------------
/** LOADED_HIGH: the protected-mode code is loaded at 0x100000. */
export const LOADFLAG_LOADED_HIGH = 0x01;
/** KASLR_FLAG: set by the kernel itself (internal use). */
export const LOADFLAG_KASLR = 0x02;
/** QUIET_FLAG: suppress early messages. */
export const LOADFLAG_QUIET = 0x20;
/** KEEP_SEGMENTS (obsolete, protocol 2.07+): do not reload segment registers in the 32-bit entry. */
export const LOADFLAG_KEEP_SEGMENTS = 0x40;
/** CAN_USE_HEAP: heap_end_ptr is valid. */
export const LOADFLAG_CAN_USE_HEAP = 0x80;

// --- xloadflags (offset 0x236, protocol 2.12+), boot.rst "xloadflags" -------
/** XLF_KERNEL_64: the kernel has the legacy 64-bit entry point at load address + 0x200. */
export const XLF_KERNEL_64 = 1 << 0;
/** XLF_CAN_BE_LOADED_ABOVE_4G: kernel/boot_params/cmdline/ramdisk may be above 4 GiB. */
export const XLF_CAN_BE_LOADED_ABOVE_4G = 1 << 1;
/** XLF_EFI_HANDOVER_32. */
export const XLF_EFI_HANDOVER_32 = 1 << 2;
/** XLF_EFI_HANDOVER_64. */
export const XLF_EFI_HANDOVER_64 = 1 << 3;
/** XLF_EFI_KEXEC. */
export const XLF_EFI_KEXEC = 1 << 4;

/** type_of_loader value for a boot loader without an assigned id (boot.rst "type_of_loader"). */
export const LOADER_TYPE_UNDEFINED = 0xff;

/** vid_mode value 0xffff: "normal" VGA mode (boot.rst "vid_mode"). */
export const VID_MODE_NORMAL = 0xffff;

// --- struct boot_params fields outside the setup header ---------------------
/** offsetof(struct boot_params, acpi_rsdp_addr): u64, physical address of the ACPI RSDP (protocol 2.14+). */
export const BP_ACPI_RSDP_ADDR = 0x070;
/** offsetof(struct boot_params, ext_ramdisk_image): u32, high 32 bits of ramdisk_image. */
export const BP_EXT_RAMDISK_IMAGE = 0x0c0;
/** offsetof(struct boot_params, ext_ramdisk_size): u32, high 32 bits of ramdisk_size. */
export const BP_EXT_RAMDISK_SIZE = 0x0c4;
/** offsetof(struct boot_params, ext_cmd_line_ptr): u32, high 32 bits of cmd_line_ptr. */
export const BP_EXT_CMD_LINE_PTR = 0x0c8;
/** offsetof(struct boot_params, e820_entries): u8, number of entries in e820_table. */
export const BP_E820_ENTRIES = 0x1e8;
/** offsetof(struct boot_params, sentinel): u8; a loader that zeroes boot_params leaves it 0. */
export const BP_SENTINEL = 0x1ef;
/** offsetof(struct boot_params, e820_table): struct boot_e820_entry[E820_MAX_ENTRIES_ZEROPAGE]. */
export const BP_E820_TABLE = 0x2d0;
/** E820_MAX_ENTRIES_ZEROPAGE. */
export const E820_MAX_ENTRIES_ZEROPAGE = 128;
/** sizeof(struct boot_e820_entry): addr u64, size u64, type u32 (packed). */
export const E820_ENTRY_SIZE = 20;
/** offsetof(struct boot_params, _pad8): first byte after e820_table. */
export const BP_E820_TABLE_END = 0xcd0;

/** E820 entry types (arch/x86/include/asm/e820/types.h). */
export const E820_TYPE_RAM = 1;
export const E820_TYPE_RESERVED = 2;
export const E820_TYPE_ACPI = 3;
export const E820_TYPE_NVS = 4;
export const E820_TYPE_UNUSABLE = 5;

/** One `struct boot_e820_entry`. addr/size are safe integers (guest RAM < 2^53). */
export interface E820Entry {
  addr: number;
  size: number;
  type: number;
}

/**
 * `struct setup_header`. 32-bit and narrower fields are numbers; the three u64
 * fields are bigints. Fields that a header of an older protocol version does
 * not contain read as 0.
 */
export interface SetupHeader {
  setupSects: number;
  rootFlags: number;
  syssize: number;
  ramSize: number;
  vidMode: number;
  rootDev: number;
  bootFlag: number;
  jump: number;
  header: number;
  version: number;
  realmodeSwtch: number;
  startSysSeg: number;
  kernelVersion: number;
  typeOfLoader: number;
  loadflags: number;
  setupMoveSize: number;
  code32Start: number;
  ramdiskImage: number;
  ramdiskSize: number;
  bootsectKludge: number;
  heapEndPtr: number;
  extLoaderVer: number;
  extLoaderType: number;
  cmdLinePtr: number;
  initrdAddrMax: number;
  kernelAlignment: number;
  relocatableKernel: number;
  minAlignment: number;
  xloadflags: number;
  cmdlineSize: number;
  hardwareSubarch: number;
  hardwareSubarchData: bigint;
  payloadOffset: number;
  payloadLength: number;
  setupData: bigint;
  prefAddress: bigint;
  initSize: number;
  handoverOffset: number;
  kernelInfoOffset: number;
}

type NumberKey = { [K in keyof SetupHeader]: SetupHeader[K] extends number ? K : never }[keyof SetupHeader];
type BigKey = { [K in keyof SetupHeader]: SetupHeader[K] extends bigint ? K : never }[keyof SetupHeader];

type FieldSpec = { key: NumberKey; offset: number; size: 1 | 2 | 4 } | { key: BigKey; offset: number; size: 8 };

/**
 * The setup header layout: offsets are absolute (from the start of
 * boot_params / of the bzImage file). Comments: the field name in bootparam.h.
 */
export const SETUP_HEADER_FIELDS: readonly FieldSpec[] = [
  { key: 'setupSects', offset: 0x1f1, size: 1 }, // setup_sects
  { key: 'rootFlags', offset: 0x1f2, size: 2 }, // root_flags
  { key: 'syssize', offset: 0x1f4, size: 4 }, // syssize (16-byte paragraphs)
  { key: 'ramSize', offset: 0x1f8, size: 2 }, // ram_size (obsolete)
  { key: 'vidMode', offset: 0x1fa, size: 2 }, // vid_mode
  { key: 'rootDev', offset: 0x1fc, size: 2 }, // root_dev
  { key: 'bootFlag', offset: 0x1fe, size: 2 }, // boot_flag
  { key: 'jump', offset: 0x200, size: 2 }, // jump
  { key: 'header', offset: 0x202, size: 4 }, // header ("HdrS")
  { key: 'version', offset: 0x206, size: 2 }, // version
  { key: 'realmodeSwtch', offset: 0x208, size: 4 }, // realmode_swtch
  { key: 'startSysSeg', offset: 0x20c, size: 2 }, // start_sys_seg
  { key: 'kernelVersion', offset: 0x20e, size: 2 }, // kernel_version
  { key: 'typeOfLoader', offset: 0x210, size: 1 }, // type_of_loader
  { key: 'loadflags', offset: 0x211, size: 1 }, // loadflags
  { key: 'setupMoveSize', offset: 0x212, size: 2 }, // setup_move_size
  { key: 'code32Start', offset: 0x214, size: 4 }, // code32_start
  { key: 'ramdiskImage', offset: 0x218, size: 4 }, // ramdisk_image
  { key: 'ramdiskSize', offset: 0x21c, size: 4 }, // ramdisk_size
  { key: 'bootsectKludge', offset: 0x220, size: 4 }, // bootsect_kludge
  { key: 'heapEndPtr', offset: 0x224, size: 2 }, // heap_end_ptr
  { key: 'extLoaderVer', offset: 0x226, size: 1 }, // ext_loader_ver
  { key: 'extLoaderType', offset: 0x227, size: 1 }, // ext_loader_type
  { key: 'cmdLinePtr', offset: 0x228, size: 4 }, // cmd_line_ptr
  { key: 'initrdAddrMax', offset: 0x22c, size: 4 }, // initrd_addr_max
  { key: 'kernelAlignment', offset: 0x230, size: 4 }, // kernel_alignment
  { key: 'relocatableKernel', offset: 0x234, size: 1 }, // relocatable_kernel
  { key: 'minAlignment', offset: 0x235, size: 1 }, // min_alignment
  { key: 'xloadflags', offset: 0x236, size: 2 }, // xloadflags
  { key: 'cmdlineSize', offset: 0x238, size: 4 }, // cmdline_size
  { key: 'hardwareSubarch', offset: 0x23c, size: 4 }, // hardware_subarch
  { key: 'hardwareSubarchData', offset: 0x240, size: 8 }, // hardware_subarch_data
  { key: 'payloadOffset', offset: 0x248, size: 4 }, // payload_offset
  { key: 'payloadLength', offset: 0x24c, size: 4 }, // payload_length
  { key: 'setupData', offset: 0x250, size: 8 }, // setup_data
  { key: 'prefAddress', offset: 0x258, size: 8 }, // pref_address
  { key: 'initSize', offset: 0x260, size: 4 }, // init_size
  { key: 'handoverOffset', offset: 0x264, size: 4 }, // handover_offset
  { key: 'kernelInfoOffset', offset: 0x268, size: 4 }, // kernel_info_offset
];

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * End offset of the setup header present in `bytes`: boot.rst (64-bit boot
 * protocol) says it is 0x0202 + the byte at 0x0201 (the operand of the short
 * `jmp` at 0x200). Clamped to the bytes available and to the largest header
 * this codec knows.
 */
export function setupHeaderEnd(bytes: Uint8Array): number {
  if (bytes.length <= 0x201) return Math.min(bytes.length, SETUP_HEADER_OFFSET);
  return Math.min(0x202 + bytes[0x201], bytes.length, SETUP_HEADER_END);
}

/**
 * Decodes the setup header from a bzImage file or a boot_params page. Fields
 * that lie beyond the end of the header present (older protocol versions, or
 * a truncated buffer) read as 0. Does not validate magic values: see the loader.
 */
export function parseSetupHeader(bytes: Uint8Array): SetupHeader {
  const dv = view(bytes);
  const end = setupHeaderEnd(bytes);
  // The fields up to and including `header` (0x206) are read whenever present,
  // so a caller can check the magic even when the jump byte is garbage.
  const limit = Math.max(end, Math.min(bytes.length, 0x206));
  const out: Record<string, number | bigint> = {};
  for (const f of SETUP_HEADER_FIELDS) {
    const present = f.offset + f.size <= limit;
    switch (f.size) {
      case 1:
        out[f.key] = present ? dv.getUint8(f.offset) : 0;
        break;
      case 2:
        out[f.key] = present ? dv.getUint16(f.offset, true) : 0;
        break;
      case 4:
        out[f.key] = present ? dv.getUint32(f.offset, true) : 0;
        break;
      case 8:
        out[f.key] = present ? dv.getBigUint64(f.offset, true) : 0n;
        break;
    }
  }
  return out as unknown as SetupHeader;
}

/** Encodes every field of `header` into `bp` (a boot_params page) at its bootparam.h offset. */
export function writeSetupHeader(bp: Uint8Array, header: SetupHeader): void {
  checkBootParams(bp);
  const dv = view(bp);
  for (const f of SETUP_HEADER_FIELDS) {
    if (f.size === 8) {
      dv.setBigUint64(f.offset, BigInt.asUintN(64, header[f.key]), true);
      continue;
    }
    const v = header[f.key];
    if (!Number.isInteger(v) || v < 0 || v >= 2 ** (8 * f.size))
      throw new RangeError(`setup_header field ${f.key}=${v} does not fit in ${f.size} bytes`);
    if (f.size === 1) dv.setUint8(f.offset, v);
    else if (f.size === 2) dv.setUint16(f.offset, v, true);
    else dv.setUint32(f.offset, v, true);
  }
}

/** A zeroed boot_params page. */
export function createBootParams(): Uint8Array {
  return new Uint8Array(BOOT_PARAMS_SIZE);
}

/**
 * A boot_params page holding a copy of the image's setup header, as boot.rst
 * "64-bit boot protocol" prescribes: start from all zeroes, copy the bytes from
 * 0x1f1 to the header end (0x202 + byte at 0x201). Everything else — in
 * particular `sentinel` at 0x1ef — stays zero, so the kernel's
 * sanitize_boot_params() keeps our fields.
 */
export function bootParamsFromImage(image: Uint8Array): Uint8Array {
  const bp = createBootParams();
  const end = setupHeaderEnd(image);
  if (end > SETUP_HEADER_OFFSET) bp.set(image.subarray(SETUP_HEADER_OFFSET, end), SETUP_HEADER_OFFSET);
  return bp;
}

function checkBootParams(bp: Uint8Array): void {
  if (bp.length !== BOOT_PARAMS_SIZE)
    throw new RangeError(`boot_params buffer is ${bp.length} bytes, expected ${BOOT_PARAMS_SIZE}`);
}

function u64Parts(name: string, value: number): { lo: number; hi: number } {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`${name}=${value} is not a valid address/size`);
  return { lo: value % 2 ** 32, hi: Math.floor(value / 2 ** 32) };
}

/** The fields a boot loader fills in (boot.rst "DETAILS OF HEADER FIELDS", entries marked "write"). */
export interface BootLoaderFields {
  /** GPA of the NUL-terminated command line; the high half goes to ext_cmd_line_ptr. */
  cmdLinePtr: number;
  /** GPA of the initrd (0 if none); the high half goes to ext_ramdisk_image. */
  ramdiskImage: number;
  /** Initrd size in bytes (0 if none); the high half goes to ext_ramdisk_size. */
  ramdiskSize: number;
  /** New loadflags value (the caller decides which bits to keep). */
  loadflags: number;
  /** heap_end_ptr: offset from the start of the real-mode code; only meaningful with CAN_USE_HEAP. */
  heapEndPtr: number;
  /** type_of_loader; default 0xff (undefined loader). */
  typeOfLoader?: number;
  /** vid_mode; default 0xffff ("normal"). */
  vidMode?: number;
}

/**
 * Writes the loader-owned fields into a boot_params page: type_of_loader,
 * loadflags, vid_mode, heap_end_ptr, cmd_line_ptr/ext_cmd_line_ptr,
 * ramdisk_image/ext_ramdisk_image, ramdisk_size/ext_ramdisk_size, and
 * setup_data = 0 (no linked list of setup_data nodes).
 */
export function writeBootLoaderFields(bp: Uint8Array, f: BootLoaderFields): void {
  checkBootParams(bp);
  const dv = view(bp);
  const cmd = u64Parts('cmd_line_ptr', f.cmdLinePtr);
  const img = u64Parts('ramdisk_image', f.ramdiskImage);
  const size = u64Parts('ramdisk_size', f.ramdiskSize);
  dv.setUint16(0x1fa, f.vidMode ?? VID_MODE_NORMAL, true); // hdr.vid_mode
  dv.setUint8(0x210, f.typeOfLoader ?? LOADER_TYPE_UNDEFINED); // hdr.type_of_loader
  dv.setUint8(0x211, f.loadflags & 0xff); // hdr.loadflags
  dv.setUint32(0x218, img.lo, true); // hdr.ramdisk_image
  dv.setUint32(0x21c, size.lo, true); // hdr.ramdisk_size
  dv.setUint16(0x224, f.heapEndPtr & 0xffff, true); // hdr.heap_end_ptr
  dv.setUint32(0x228, cmd.lo, true); // hdr.cmd_line_ptr
  dv.setBigUint64(0x250, 0n, true); // hdr.setup_data
  dv.setUint32(BP_EXT_RAMDISK_IMAGE, img.hi, true); // ext_ramdisk_image
  dv.setUint32(BP_EXT_RAMDISK_SIZE, size.hi, true); // ext_ramdisk_size
  dv.setUint32(BP_EXT_CMD_LINE_PTR, cmd.hi, true); // ext_cmd_line_ptr
}

/** Sets acpi_rsdp_addr (protocol 2.14+): lets the kernel find the RSDP without scanning. */
export function writeAcpiRsdpAddr(bp: Uint8Array, gpa: number): void {
  checkBootParams(bp);
  u64Parts('acpi_rsdp_addr', gpa);
  view(bp).setBigUint64(BP_ACPI_RSDP_ADDR, BigInt(gpa), true); // acpi_rsdp_addr
}

/** Writes e820_entries (0x1e8) and e820_table (0x2d0); at most 128 entries. */
export function writeE820Table(bp: Uint8Array, entries: readonly E820Entry[]): void {
  checkBootParams(bp);
  if (entries.length > E820_MAX_ENTRIES_ZEROPAGE)
    throw new RangeError(`${entries.length} e820 entries; the zero page holds at most ${E820_MAX_ENTRIES_ZEROPAGE}`);
  const dv = view(bp);
  bp.fill(0, BP_E820_TABLE, BP_E820_TABLE_END);
  entries.forEach((e, i) => {
    const at = BP_E820_TABLE + i * E820_ENTRY_SIZE;
    u64Parts('e820 addr', e.addr);
    u64Parts('e820 size', e.size);
    dv.setBigUint64(at + 0, BigInt(e.addr), true); // boot_e820_entry.addr
    dv.setBigUint64(at + 8, BigInt(e.size), true); // boot_e820_entry.size
    dv.setUint32(at + 16, e.type >>> 0, true); // boot_e820_entry.type
  });
  dv.setUint8(BP_E820_ENTRIES, entries.length); // e820_entries
}

/** Reads the e820 table back (for tests and debugging). */
export function readE820Table(bp: Uint8Array): E820Entry[] {
  checkBootParams(bp);
  const dv = view(bp);
  const n = Math.min(dv.getUint8(BP_E820_ENTRIES), E820_MAX_ENTRIES_ZEROPAGE);
  const out: E820Entry[] = [];
  for (let i = 0; i < n; i++) {
    const at = BP_E820_TABLE + i * E820_ENTRY_SIZE;
    out.push({
      addr: Number(dv.getBigUint64(at, true)),
      size: Number(dv.getBigUint64(at + 8, true)),
      type: dv.getUint32(at + 16, true),
    });
  }
  return out;
}

/** Reads the 64-bit values split between the setup header and the ext_* fields. */
export function readBootLoaderFields(bp: Uint8Array): { cmdLinePtr: number; ramdiskImage: number; ramdiskSize: number } {
  checkBootParams(bp);
  const dv = view(bp);
  const join = (lo: number, hi: number) => hi * 2 ** 32 + lo;
  return {
    cmdLinePtr: join(dv.getUint32(0x228, true), dv.getUint32(BP_EXT_CMD_LINE_PTR, true)),
    ramdiskImage: join(dv.getUint32(0x218, true), dv.getUint32(BP_EXT_RAMDISK_IMAGE, true)),
    ramdiskSize: join(dv.getUint32(0x21c, true), dv.getUint32(BP_EXT_RAMDISK_SIZE, true)),
  };
}
