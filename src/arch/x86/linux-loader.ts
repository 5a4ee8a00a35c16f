// Linux kernel loader for x86-64 guests: a bzImage (boot protocol 2.06+) or an
// uncompressed ELF64 vmlinux, an optional initrd and a command line, entered
// through the 64-bit boot protocol (Documentation/arch/x86/boot.rst,
// "64-bit BOOT PROTOCOL").
//
// Guest physical layout (all GPAs):
//   0x7000    boot_params ("zero page", 4 KiB)           ZERO_PAGE_GPA
//   0x20000   kernel command line, NUL-terminated         CMDLINE_GPA
//   0x9fc00 - 0x100000 reserved in e820 (EBDA/VGA/BIOS; free for MP/ACPI tables)
//   0x100000  protected-mode kernel (bzImage) — or ELF segments at their p_paddr
//   ...       initrd at the highest page-aligned address that fits
//
// The loader only fills guest memory; the vCPU state the entry needs (long
// mode, identity paging, GDT with __BOOT_CS/__BOOT_DS, RSI = boot_params) is
// set up by the caller — see LinuxBootInfo.
import type { GuestMemory } from '../../memory/guest-memory';
import {
  BOOT_FLAG_MAGIC,
  BOOT_PARAMS_SIZE,
  HEADER_MAGIC,
  LOADFLAG_CAN_USE_HEAP,
  LOADFLAG_KEEP_SEGMENTS,
  LOADFLAG_LOADED_HIGH,
  SETUP_HEADER_END,
  type SetupHeader,
  XLF_KERNEL_64,
  bootParamsFromImage,
  createBootParams,
  parseSetupHeader,
  setupHeaderEnd,
  writeBootLoaderFields,
  writeE820Table,
  writeSetupHeader,
} from './boot-params';
import { EBDA_START, buildE820Map } from './e820';

export class LinuxLoaderError extends Error {
  constructor(
    message: string,
    readonly code: string = 'EBADKERNEL',
  ) {
    super(message);
    this.name = 'LinuxLoaderError';
  }
}

export interface LinuxLoadOptions {
  kernel: Uint8Array;
  initrd?: Uint8Array;
  cmdline: string;
  /** File names, only used in error messages. */
  kernelPath?: string;
  initrdPath?: string;
}

export interface LinuxBootInfo {
  /** 64-bit entry RIP (a physical address; paging must identity-map it). */
  entry: number;
  /** GPA of boot_params: goes in RSI at entry. */
  bootParams: number;
  format: 'bzImage' | 'elf';
  /** setup_header.version of a bzImage (e.g. 0x020f for 2.15); absent for ELF. */
  protocolVersion?: number;
  /**
   * First GPA after everything the kernel occupies before it reads the e820
   * map: for a bzImage, max(end of the loaded image, runtime start + init_size);
   * for ELF, the end of the highest PT_LOAD segment (memsz).
   */
  kernelEnd: number;
  initrd?: { gpa: number; size: number };
  cmdlineGpa: number;
}

/** Where boot_params goes. Below 1 MiB, out of the way of the kernel and of real-mode areas. */
export const ZERO_PAGE_GPA = 0x7000;
/** Where the command line goes (boot.rst: anywhere between the end of the setup heap and 0xa0000). */
export const CMDLINE_GPA = 0x20000;
/**
 * bzImage protected-mode kernel load address: boot.rst "LOADING THE REST OF THE
 * KERNEL" — a bzImage (loadflags LOADED_HIGH) is loaded at 0x100000.
 */
export const KERNEL_LOAD_ADDR = 0x100000;
/**
 * boot.rst "64-bit BOOT PROTOCOL": the 64-bit entry point is at the load
 * address of the protected-mode kernel + 0x200 (startup_64 in
 * arch/x86/boot/compressed/head_64.S).
 */
export const ENTRY_64_OFFSET = 0x200;
/**
 * heap_end_ptr value: boot.rst "SAMPLE BOOT CONFIGURATION" uses heap_end =
 * 0xfe00 (end of the real-mode area minus the stack) and heap_end_ptr =
 * heap_end - 0x200 (heap_end_ptr is relative to the start of the setup code,
 * which begins 0x200 into the real-mode segment). The 64-bit entry skips the
 * real-mode setup code, so this is formal.
 */
export const HEAP_END_PTR = 0xfe00 - 0x200;
/**
 * __START_KERNEL_map (arch/x86/include/asm/page_64_types.h): the virtual base
 * of the kernel text mapping; physical address = virtual - this base.
 */
export const START_KERNEL_MAP = 0xffffffff80000000n;

const PAGE_SIZE = 0x1000;
const SECTOR_SIZE = 512;
/** boot.rst "setup_sects": "If this field is 0, the real value is 4." */
const DEFAULT_SETUP_SECTS = 4;
/** Protocol 2.06: cmdline_size field (and the 64-bit entry we rely on being documented). */
const PROTOCOL_2_06 = 0x0206;
/** Protocol 2.10: pref_address and init_size. */
const PROTOCOL_2_10 = 0x020a;
/** Protocol 2.12: xloadflags. */
const PROTOCOL_2_12 = 0x020c;
/** Version we write into the zero page built for an ELF vmlinux (2.15, the current one). */
const ELF_PROTOCOL_VERSION = 0x020f;
/** x86 COMMAND_LINE_SIZE is 2048; cmdline_size excludes the NUL, as a bzImage declares it (2047). */
const ELF_CMDLINE_SIZE = 2047;
/** initrd_addr_max of x86-64 kernels (arch/x86/boot/header.S: 0x7fffffff). */
const ELF_INITRD_ADDR_MAX = 0x7fffffff;
/** CONFIG_PHYSICAL_ALIGN default on x86-64 (2 MiB): kernel_alignment of the zero page we build. */
const ELF_KERNEL_ALIGNMENT = 0x200000;

function hex(n: number | bigint): string {
  return `0x${n.toString(16)}`;
}

function mib(n: number): string {
  const v = n / (1024 * 1024);
  return Number.isInteger(v) ? String(v) : v.toFixed(v < 1 ? 2 : 1);
}

function alignUp(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

function alignDown(n: number, a: number): number {
  return Math.floor(n / a) * a;
}

function version(v: number): string {
  return `${v >> 8}.${(v & 0xff).toString().padStart(2, '0')}`;
}

/** The RAM region containing `gpa`, as [start, end). */
function regionAt(memory: GuestMemory, gpa: number): { start: number; end: number } | undefined {
  for (const r of memory.regions) if (gpa >= r.gpa && gpa < r.gpa + r.size) return { start: r.gpa, end: r.gpa + r.size };
  return undefined;
}

/**
 * Loads a Linux kernel into guest memory and builds its boot_params. The
 * returned entry is the 64-bit entry point; see LinuxBootInfo for the vCPU
 * state it needs. Throws LinuxLoaderError (code 'EBADKERNEL') on a bad image or
 * one that does not fit.
 */
export function loadLinux(memory: GuestMemory, options: LinuxLoadOptions): LinuxBootInfo {
  const k = options.kernel;
  const isElf = k.length >= 4 && k[0] === 0x7f && k[1] === 0x45 && k[2] === 0x4c && k[3] === 0x46; // "\x7fELF"
  return isElf ? loadElf(memory, options) : loadBzImage(memory, options);
}

function kernelName(o: LinuxLoadOptions): string {
  return o.kernelPath ? `kernel ${o.kernelPath}` : 'kernel';
}

function checkLowMemory(memory: GuestMemory): void {
  if (!memory.contains(ZERO_PAGE_GPA, BOOT_PARAMS_SIZE) || !memory.contains(CMDLINE_GPA, PAGE_SIZE))
    throw new LinuxLoaderError(
      `guest RAM must start at 0 and cover the zero page (${hex(ZERO_PAGE_GPA)}) and command line (${hex(CMDLINE_GPA)}) to boot Linux`,
      'ENOLOWMEM',
    );
}

/** Validates and encodes the command line; returns its bytes including the NUL. */
function encodeCmdline(cmdline: string, maxLength: number): Uint8Array {
  const text = Buffer.from(cmdline, 'utf8');
  if (text.includes(0)) throw new LinuxLoaderError('command line contains a NUL byte');
  if (text.length > maxLength)
    throw new LinuxLoaderError(`command line is ${text.length} bytes; the kernel accepts at most ${maxLength}`);
  if (CMDLINE_GPA + text.length + 1 > EBDA_START)
    throw new LinuxLoaderError(`command line is ${text.length} bytes; tskvm has room for at most ${EBDA_START - CMDLINE_GPA - 1}`);
  const out = new Uint8Array(text.length + 1);
  out.set(text);
  return out;
}

/**
 * Places the initrd at the highest page-aligned GPA such that it ends at or
 * below min(initrd_addr_max + 1, end of the RAM region holding the kernel) and
 * starts at or above the kernel's end (boot.rst "initrd_addr_max": the initrd
 * should be as high as possible, its last byte at most initrd_addr_max).
 */
function placeInitrd(
  memory: GuestMemory,
  options: LinuxLoadOptions,
  kernelStart: number,
  kernelEnd: number,
  initrdAddrMax: number,
): { gpa: number; size: number } | undefined {
  const initrd = options.initrd;
  if (!initrd || initrd.length === 0) return undefined;
  const region = regionAt(memory, kernelStart);
  const name = options.initrdPath ? `initrd ${options.initrdPath}` : 'initrd';
  const top = Math.min(initrdAddrMax + 1, region ? region.end : 0);
  const lowest = alignUp(kernelEnd, PAGE_SIZE);
  const gpa = alignDown(top - initrd.length, PAGE_SIZE);
  if (!region || gpa < lowest)
    throw new LinuxLoaderError(
      `${name} (${mib(initrd.length)} MiB) does not fit below initrd_addr_max ${hex(initrdAddrMax)} ` +
        `and the end of guest RAM (${mib(memory.size)} MiB) above the kernel, which ends at ${mib(kernelEnd)} MiB; ` +
        `give the guest more memory or use a smaller initrd`,
    );
  return { gpa, size: initrd.length };
}

// ---------------------------------------------------------------------------
// bzImage

function loadBzImage(memory: GuestMemory, options: LinuxLoadOptions): LinuxBootInfo {
  const k = options.kernel;
  const name = kernelName(options);
  // boot.rst: boot_flag (0x1fe) = 0xAA55 and header (0x202) = "HdrS" identify
  // a kernel with a real-mode header (protocol 2.00+).
  const dv = new DataView(k.buffer, k.byteOffset, k.byteLength);
  if (k.length < 0x206 || dv.getUint16(0x1fe, true) !== BOOT_FLAG_MAGIC || dv.getUint32(0x202, true) !== HEADER_MAGIC)
    throw new LinuxLoaderError(`${name} is not a bzImage or ELF vmlinux (no 0xAA55 boot flag / HdrS magic)`);
  const headerEnd = 0x202 + k[0x201];
  if (setupHeaderEnd(k) < Math.min(headerEnd, SETUP_HEADER_END))
    throw new LinuxLoaderError(`${name} is truncated: its setup header ends at ${hex(headerEnd)} but the file has ${k.length} bytes`);
  const hdr = parseSetupHeader(k);
  // The 64-bit entry at +0x200 exists in every x86-64 bzImage of the 2.6.2x
  // era onwards; 2.06 is the first protocol with cmdline_size, which we need to
  // bound the command line. Older headers belong to kernels tskvm cannot enter.
  if (hdr.version < PROTOCOL_2_06)
    throw new LinuxLoaderError(
      `${name}: boot protocol ${version(hdr.version)} is too old (tskvm needs ≥ 2.06 for the 64-bit entry)`,
    );
  // xloadflags exists from 2.12 on; XLF_KERNEL_64 (bit 0) says the 64-bit
  // entry at +0x200 is present. A 32-bit kernel has it clear. Before 2.12 we
  // cannot tell and assume an x86-64 kernel.
  if (hdr.version >= PROTOCOL_2_12 && (hdr.xloadflags & XLF_KERNEL_64) === 0)
    throw new LinuxLoaderError(`${name}: kernel does not support the 64-bit entry point (xloadflags XLF_KERNEL_64 is clear)`);
  // boot.rst "loadflags" LOADED_HIGH: clear means a zImage loaded at 0x10000.
  if ((hdr.loadflags & LOADFLAG_LOADED_HIGH) === 0)
    throw new LinuxLoaderError(`${name} is a zImage (loadflags LOADED_HIGH clear); only bzImage kernels are supported`);

  // boot.rst "LOADING THE REST OF THE KERNEL": the protected-mode kernel
  // starts at (setup_sects + 1) * 512 in the file (the +1 is the boot sector).
  const setupSects = hdr.setupSects === 0 ? DEFAULT_SETUP_SECTS : hdr.setupSects;
  const pmOffset = (setupSects + 1) * SECTOR_SIZE;
  // syssize (2.04+): size of the protected-mode code in 16-byte paragraphs.
  const declared = hdr.syssize * 16;
  if (k.length <= pmOffset || k.length - pmOffset < declared)
    throw new LinuxLoaderError(
      `${name} is truncated: the header declares ${pmOffset} bytes of setup code and ${declared} bytes of kernel, the file has ${k.length}`,
    );
  const pmSize = k.length - pmOffset;

  const kernelAlignment = hdr.kernelAlignment === 0 ? 1 : hdr.kernelAlignment;
  if ((kernelAlignment & (kernelAlignment - 1)) !== 0)
    throw new LinuxLoaderError(`${name}: kernel_alignment ${hex(hdr.kernelAlignment)} is not a power of two`);

  const { runtimeStart, kernelEnd } = bzImageFootprint(hdr, pmSize, kernelAlignment);
  const region = regionAt(memory, KERNEL_LOAD_ADDR);
  if (!region || kernelEnd > region.end || !Number.isSafeInteger(kernelEnd))
    throw new LinuxLoaderError(
      `${name} (${mib(kernelEnd - KERNEL_LOAD_ADDR)} MiB) does not fit in guest RAM (${mib(memory.size)} MiB): ` +
        `it needs memory up to ${hex(kernelEnd)} (image ${mib(pmSize)} MiB at ${hex(KERNEL_LOAD_ADDR)}, ` +
        `init_size ${mib(hdr.initSize)} MiB at ${hex(runtimeStart)}); give the guest more memory`,
    );

  checkLowMemory(memory);
  const cmdline = encodeCmdline(options.cmdline, hdr.cmdlineSize);
  const initrd = placeInitrd(memory, options, KERNEL_LOAD_ADDR, kernelEnd, hdr.initrdAddrMax);

  // Zero page: zeroes + the image's setup header, then the loader's fields.
  const bp = bootParamsFromImage(k);
  writeBootLoaderFields(bp, {
    cmdLinePtr: CMDLINE_GPA,
    ramdiskImage: initrd?.gpa ?? 0,
    ramdiskSize: initrd?.size ?? 0,
    // CAN_USE_HEAP: heap_end_ptr is valid; KEEP_SEGMENTS cleared: the kernel
    // loads its own segments (boot.rst "loadflags").
    loadflags: (hdr.loadflags | LOADFLAG_CAN_USE_HEAP) & ~LOADFLAG_KEEP_SEGMENTS,
    heapEndPtr: HEAP_END_PTR,
  });
  writeE820Table(bp, buildE820Map(memory.regions));

  memory.write(KERNEL_LOAD_ADDR, k.subarray(pmOffset));
  memory.write(CMDLINE_GPA, cmdline);
  if (initrd && options.initrd) memory.write(initrd.gpa, options.initrd);
  memory.write(ZERO_PAGE_GPA, bp);

  return {
    entry: KERNEL_LOAD_ADDR + ENTRY_64_OFFSET,
    bootParams: ZERO_PAGE_GPA,
    format: 'bzImage',
    protocolVersion: hdr.version,
    kernelEnd,
    initrd,
    cmdlineGpa: CMDLINE_GPA,
  };
}

/**
 * Memory the kernel uses before it reads the e820 map. boot.rst "init_size"
 * (2.10+) gives the runtime start address:
 *   relocatable_kernel: align_up(max(load address, pref_address), kernel_alignment)
 *   otherwise:          pref_address
 * and the kernel needs [runtime start, runtime start + init_size). The loaded
 * image itself occupies [0x100000, 0x100000 + pmSize). Before 2.10 the header
 * does not say; we count only the image.
 */
function bzImageFootprint(
  hdr: SetupHeader,
  pmSize: number,
  kernelAlignment: number,
): { runtimeStart: number; kernelEnd: number } {
  const imageEnd = KERNEL_LOAD_ADDR + pmSize;
  if (hdr.version < PROTOCOL_2_10) return { runtimeStart: KERNEL_LOAD_ADDR, kernelEnd: imageEnd };
  const pref = hdr.prefAddress > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(hdr.prefAddress);
  const runtimeStart = hdr.relocatableKernel
    ? alignUp(Math.max(KERNEL_LOAD_ADDR, pref), kernelAlignment)
    : pref || KERNEL_LOAD_ADDR;
  return { runtimeStart, kernelEnd: Math.max(imageEnd, runtimeStart + hdr.initSize) };
}

// ---------------------------------------------------------------------------
// ELF vmlinux

const ELFCLASS64 = 2; // e_ident[EI_CLASS]
const ELFDATA2LSB = 1; // e_ident[EI_DATA]
const ET_EXEC = 2; // e_type
const EM_X86_64 = 62; // e_machine
const PT_LOAD = 1; // p_type
const ELF64_EHDR_SIZE = 64; // sizeof(Elf64_Ehdr)
const ELF64_PHDR_SIZE = 56; // sizeof(Elf64_Phdr)

/**
 * A kernel virtual or physical address → physical. x86-64 vmlinux links its
 * entry as phys_startup_64 and gives PT_LOAD segments physical p_paddr, so
 * these are normally physical already; an address in the kernel text mapping
 * (≥ __START_KERNEL_map) is converted by subtracting that base. We do not
 * relocate: the kernel runs where it was linked (CONFIG_PHYSICAL_START).
 */
function toPhysical(addr: bigint): number {
  const p = addr >= START_KERNEL_MAP ? addr - START_KERNEL_MAP : addr;
  return p > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(p);
}

interface Segment {
  paddr: number;
  offset: number;
  filesz: number;
  memsz: number;
}

function loadElf(memory: GuestMemory, options: LinuxLoadOptions): LinuxBootInfo {
  const k = options.kernel;
  const name = kernelName(options);
  const dv = new DataView(k.buffer, k.byteOffset, k.byteLength);
  if (k.length < ELF64_EHDR_SIZE || k[4] !== ELFCLASS64 || k[5] !== ELFDATA2LSB)
    throw new LinuxLoaderError(`${name} is an ELF file but not a little-endian ELF64 vmlinux`);
  const eType = dv.getUint16(16, true); // e_type
  const eMachine = dv.getUint16(18, true); // e_machine
  if (eMachine !== EM_X86_64 || eType !== ET_EXEC)
    throw new LinuxLoaderError(`${name} is not an x86-64 executable (e_machine ${eMachine}, e_type ${eType})`);
  const eEntry = dv.getBigUint64(24, true); // e_entry
  const ePhoff = dv.getBigUint64(32, true); // e_phoff
  const ePhentsize = dv.getUint16(54, true); // e_phentsize
  const ePhnum = dv.getUint16(56, true); // e_phnum
  if (ePhentsize !== ELF64_PHDR_SIZE || ePhnum === 0 || ePhoff + BigInt(ePhnum * ELF64_PHDR_SIZE) > BigInt(k.length))
    throw new LinuxLoaderError(`${name} is truncated or malformed: bad ELF program header table`);

  const segments: Segment[] = [];
  for (let i = 0; i < ePhnum; i++) {
    const at = Number(ePhoff) + i * ELF64_PHDR_SIZE;
    if (dv.getUint32(at, true) !== PT_LOAD) continue; // p_type
    const offset = dv.getBigUint64(at + 8, true); // p_offset
    const paddr = dv.getBigUint64(at + 24, true); // p_paddr
    const filesz = dv.getBigUint64(at + 32, true); // p_filesz
    const memsz = dv.getBigUint64(at + 40, true); // p_memsz
    if (memsz === 0n) continue;
    if (filesz > memsz) throw new LinuxLoaderError(`${name}: ELF segment ${i} has p_filesz > p_memsz`);
    if (offset + filesz > BigInt(k.length))
      throw new LinuxLoaderError(`${name} is truncated: ELF segment ${i} ends past the end of the file`);
    segments.push({ paddr: toPhysical(paddr), offset: Number(offset), filesz: Number(filesz), memsz: Number(memsz) });
  }
  if (segments.length === 0) throw new LinuxLoaderError(`${name} has no loadable (PT_LOAD) segments`);

  const kernelStart = Math.min(...segments.map((s) => s.paddr));
  const kernelEnd = Math.max(...segments.map((s) => s.paddr + s.memsz));
  // Below 1 MiB live the zero page, the command line and the BIOS areas.
  if (kernelStart < KERNEL_LOAD_ADDR)
    throw new LinuxLoaderError(`${name} has a segment at ${hex(kernelStart)}, below 1 MiB where tskvm keeps boot data`);
  for (const s of segments)
    if (!memory.contains(s.paddr, s.memsz))
      throw new LinuxLoaderError(
        `${name} (${mib(kernelEnd - kernelStart)} MiB at ${hex(kernelStart)}) does not fit in guest RAM (${mib(memory.size)} MiB): ` +
          `segment ${hex(s.paddr)}-${hex(s.paddr + s.memsz)} is outside it; give the guest more memory`,
      );
  const entry = toPhysical(eEntry);
  if (!segments.some((s) => entry >= s.paddr && entry < s.paddr + s.memsz))
    throw new LinuxLoaderError(`${name}: entry point ${hex(eEntry)} is not inside a loaded segment`);

  checkLowMemory(memory);
  const cmdline = encodeCmdline(options.cmdline, ELF_CMDLINE_SIZE);
  const initrd = placeInitrd(memory, options, kernelStart, kernelEnd, ELF_INITRD_ADDR_MAX);

  // No setup header in a vmlinux: build the fields the kernel reads
  // (arch/x86/kernel/head64.c, setup.c) from scratch.
  const bp = createBootParams();
  const hdr = parseSetupHeader(bp); // all zero
  hdr.bootFlag = BOOT_FLAG_MAGIC;
  // jump: `jmp short` (0xEB) over the header to SETUP_HEADER_END; its operand
  // is how a reader finds the header's end (0x202 + byte at 0x201).
  hdr.jump = 0xeb | ((SETUP_HEADER_END - 0x202) << 8);
  hdr.header = HEADER_MAGIC;
  hdr.version = ELF_PROTOCOL_VERSION;
  hdr.loadflags = LOADFLAG_LOADED_HIGH;
  hdr.kernelAlignment = ELF_KERNEL_ALIGNMENT;
  hdr.cmdlineSize = ELF_CMDLINE_SIZE;
  hdr.initrdAddrMax = ELF_INITRD_ADDR_MAX;
  hdr.initSize = kernelEnd - kernelStart;
  writeSetupHeader(bp, hdr);
  writeBootLoaderFields(bp, {
    cmdLinePtr: CMDLINE_GPA,
    ramdiskImage: initrd?.gpa ?? 0,
    ramdiskSize: initrd?.size ?? 0,
    loadflags: LOADFLAG_LOADED_HIGH | LOADFLAG_CAN_USE_HEAP,
    heapEndPtr: HEAP_END_PTR,
  });
  writeE820Table(bp, buildE820Map(memory.regions));

  for (const s of segments) {
    memory.write(s.paddr, k.subarray(s.offset, s.offset + s.filesz));
    memory.fill(s.paddr + s.filesz, s.memsz - s.filesz, 0); // .bss
  }
  memory.write(CMDLINE_GPA, cmdline);
  if (initrd && options.initrd) memory.write(initrd.gpa, options.initrd);
  memory.write(ZERO_PAGE_GPA, bp);

  return { entry, bootParams: ZERO_PAGE_GPA, format: 'elf', kernelEnd, initrd, cmdlineGpa: CMDLINE_GPA };
}
