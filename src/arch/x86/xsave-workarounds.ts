// XSAVE, XSAVEOPT, XRSTOR and XGETBV for guest kernel code that KVM's
// instruction emulator runs (DESIGN.md): the emulator fails on them, so the
// VMM performs them on the guest's behalf at the emulation-failure exit.
//
// Why the guest kernel needs XSAVE at all: on this KVM the guest's user code
// runs natively with AVX enabled whatever the guest kernel did (CPUID is not
// trapped, XCR0 includes YMM). A kernel that manages only the FXSAVE state
// (`noxsave`) then never saves the upper halves of the YMM registers on a
// context switch, and one process's AVX registers leak into another's: seen
// as 16-byte holes of garbage in busybox output (glibc's AVX memcpy). With
// these instructions emulated the kernel enables XCR0 = x87|SSE|AVX and saves
// and restores the full state like on real hardware.
//
// Semantics follow the Intel SDM: Vol. 1, 13.7 (XSAVE), 13.8 (XRSTOR), 13.9
// (XSAVEOPT), 13.4 (XSAVE area layout, standard format); Vol. 2B "XGETBV".
// The guest's FPU state comes from KVM_GET_XSAVE, whose 4 KiB buffer is the
// standard format with the same component offsets as the CPU's CPUID leaf 0xD
// (the guest sees host CPUID here), so components are copied byte for byte.
// The standard format (XSAVE, XSAVEOPT) and the compacted format (XSAVEC,
// which Linux prefers since 5.19 when XSAVES is absent) are implemented.
// XSAVES/XRSTORS (supervisor state) are not: the Linux command line turns
// them off (`noxsaves`). A component the 4 KiB buffer cannot hold (AMX) or
// that CPUID does not describe is left unhandled and reported as an
// emulation failure rather than guessed.
import type { Vcpu } from '../../kvm/vcpu';
import type { Regs } from '../../kvm/structs/regs';
import type { Sregs } from '../../kvm/structs/sregs';
import type { CpuidEntry } from '../../kvm/structs/cpuid';
import type { GuestMemory } from '../../memory/guest-memory';
import { KVM_XSAVE_SIZE } from '../../kvm/structs/xsave';
import { MXCSR_WRITABLE, type Workaround } from './emulation-workarounds';
import { decodeMemoryOperand, effectiveAddress } from './memory-operand';
import { injectAccessFault, readGuestLinear, VECTOR_GENERAL_PROTECTION, writeGuestLinear, type LinearAccessResult } from './page-walk';

const VECTOR_INVALID_OPCODE = 6;
const VECTOR_DEVICE_NOT_AVAILABLE = 7;

const CR0_TS = 1n << 3n;
const CR4_OSXSAVE = 1n << 18n;

/** Legacy region (FXSAVE layout, SDM Vol. 1, Table 10-2). */
const LEGACY = {
  /** FCW, FSW, FTW, FOP, FIP, FDP: the x87 control part (bytes 0–23). */
  x87Control: [0, 24] as const,
  mxcsr: 24,
  /** MXCSR and MXCSR_MASK (bytes 24–31): saved when SSE or AVX is requested. */
  mxcsrPair: [24, 32] as const,
  /** ST0–ST7 / MM0–MM7, 16 bytes each (bytes 32–159). */
  x87Registers: [32, 160] as const,
  /** XMM0–XMM15, 16 bytes each (bytes 160–415; XMM8–15 only in 64-bit mode). */
  xmm: [160, 416] as const,
};
const HEADER_OFFSET = 512;
const HEADER_SIZE = 64;
const XSAVE_ALIGNMENT = 64n;
/** FCW after FINIT/XRSTOR initialization (SDM Vol. 1, 8.1.5). */
const FCW_INIT = 0x037f;
/** MXCSR after initialization (SDM Vol. 1, 10.2.3.1). */
const MXCSR_INIT = 0x1f80;

const FEATURE_X87 = 0;
const FEATURE_SSE = 1;
const FEATURE_AVX = 2;

/** Where one extended state component lives in the standard format. */
export interface XsaveComponent {
  feature: number;
  offset: number;
  size: number;
  /** CPUID.(0xD, i).ECX bit 1: in the compacted format it starts on a 64-byte boundary. */
  align64: boolean;
}

/**
 * Standard-format offsets and sizes of the extended components (2 and up) from
 * CPUID leaf 0xD sub-leaf i: EAX = size, EBX = offset, ECX bit 1 = alignment
 * (SDM Vol. 1, 13.2). Components that do not fit KVM's 4 KiB buffer (AMX tile
 * data) are left out.
 */
export function xsaveLayout(cpuid: readonly CpuidEntry[]): Map<number, XsaveComponent> {
  const layout = new Map<number, XsaveComponent>();
  for (const e of cpuid) {
    if (e.function !== 0xd || e.index < 2 || e.index > 62) continue;
    const size = e.eax >>> 0;
    const offset = e.ebx >>> 0;
    if (size === 0 || offset < HEADER_OFFSET + HEADER_SIZE || offset + size > KVM_XSAVE_SIZE) continue;
    layout.set(e.index, { feature: e.index, offset, size, align64: (e.ecx & 2) !== 0 });
  }
  return layout;
}

function bit(mask: bigint, feature: number): boolean {
  return ((mask >> BigInt(feature)) & 1n) === 1n;
}

/** The features set in `mask` (bits 0–62). */
function features(mask: bigint): number[] {
  const out: number[] = [];
  for (let i = 0; i < 63; i++) if (bit(mask, i)) out.push(i);
  return out;
}

/**
 * Where the guest's area keeps each extended component: the standard format
 * uses the CPUID offsets; the compacted format (XCOMP_BV bit 63) packs the
 * components named in XCOMP_BV in order from byte 576, each aligned to 64
 * bytes if its CPUID says so (SDM Vol. 1, 13.4.3). Undefined if a component
 * is unknown to the layout.
 */
export function guestOffsets(layout: Map<number, XsaveComponent>, compactedComponents?: bigint): Map<number, number> | undefined {
  const out = new Map<number, number>();
  if (compactedComponents === undefined) {
    for (const c of layout.values()) out.set(c.feature, c.offset);
    return out;
  }
  let offset = HEADER_OFFSET + HEADER_SIZE;
  for (const f of features(compactedComponents)) {
    if (f < 2) continue;
    const c = layout.get(f);
    if (!c) return undefined;
    if (c.align64) offset = Math.ceil(offset / 64) * 64;
    out.set(f, offset);
    offset += c.size;
  }
  return out;
}

/** One copy between KVM's standard-format buffer (`state`) and the guest's area (`guest`). */
interface Piece {
  state: number;
  guest: number;
  length: number;
}

/** The byte ranges that hold `feature`'s state, in KVM's buffer and in the guest's area. */
function componentPieces(feature: number, layout: Map<number, XsaveComponent>, offsets: Map<number, number>): Piece[] | undefined {
  const same = ([s, e]: readonly [number, number]): Piece => ({ state: s, guest: s, length: e - s });
  if (feature === FEATURE_X87) return [same(LEGACY.x87Control), same(LEGACY.x87Registers)];
  if (feature === FEATURE_SSE) return [same(LEGACY.xmm)];
  const c = layout.get(feature);
  const at = offsets.get(feature);
  return c && at !== undefined ? [{ state: c.offset, guest: at, length: c.size }] : undefined;
}

/** Every piece of the requested components, or undefined if one cannot be placed. */
function requestedPieces(rfbm: bigint, layout: Map<number, XsaveComponent>, offsets: Map<number, number>): Map<number, Piece[]> | undefined {
  const out = new Map<number, Piece[]>();
  for (const f of features(rfbm)) {
    const pieces = componentPieces(f, layout, offsets);
    if (!pieces) return undefined;
    out.set(f, pieces);
  }
  return out;
}

/** Bytes [0, end) of the guest's area that the instruction touches: the header and every requested piece. */
function imageEnd(pieces: Map<number, Piece[]>): number {
  let end = HEADER_OFFSET + HEADER_SIZE;
  for (const list of pieces.values()) for (const p of list) end = Math.max(end, p.guest + p.length);
  return end;
}

type Outcome = 'done' | 'unhandled';

function raise(vcpu: Vcpu, vector: number, errorCode?: number): Outcome {
  vcpu.injectException(vector, errorCode);
  return 'done';
}

/** Turns a failed guest-memory access into the exception the CPU would raise. */
function raiseAccessFault(vcpu: Vcpu, fault: Exclude<LinearAccessResult<unknown>, { kind: 'ok' }>): Outcome {
  return injectAccessFault(vcpu, fault) ? 'done' : 'unhandled';
}

/** The checks every XSAVE-family instruction makes first (SDM Vol. 2B, "Protected Mode Exceptions"). */
function checkUsable(vcpu: Vcpu, sregs: Sregs): Outcome | undefined {
  if (!(sregs.cr4 & CR4_OSXSAVE)) return raise(vcpu, VECTOR_INVALID_OPCODE);
  if (sregs.cr0 & CR0_TS) return raise(vcpu, VECTOR_DEVICE_NOT_AVAILABLE);
  return undefined;
}

/** RFBM: EDX:EAX masked by XCR0. */
function requestedFeatures(regs: Regs, xcr0: bigint): bigint {
  const mask = ((regs.rdx & 0xffffffffn) << 32n) | (regs.rax & 0xffffffffn);
  return mask & xcr0;
}

function advance(vcpu: Vcpu, regs: Regs, length: number): Outcome {
  regs.rip += BigInt(length);
  vcpu.setRegs(regs);
  return 'done';
}

const COMPACTED = 1n << 63n;

/**
 * XSAVE / XSAVEOPT m (0F AE /4, /6) in the standard format and XSAVEC m
 * (0F C7 /4) in the compacted format; with REX.W the 64-bit forms. Writes the
 * requested components from KVM's copy of the FPU state into the guest's
 * area. The CPU may skip components in their initial state (the init and
 * modified optimizations, SDM Vol. 1, 13.6); tskvm always writes them and
 * marks them present in XSTATE_BV, which a later XRSTOR loads to the same
 * values. XSAVE leaves the header's other fields alone; XSAVEC also writes
 * XCOMP_BV = bit 63 | RFBM (SDM Vol. 1, 13.7, 13.10).
 * The 32-bit forms' x87 pointer layout (FCS/FDS selectors) is not produced:
 * the 64-bit layout is written for both, as a 64-bit kernel uses the REX.W forms.
 */
/** What the instruction's emulation needs, read once at the exit. */
interface Instruction {
  vcpu: Vcpu;
  memory: GuestMemory;
  regs: Regs;
  sregs: Sregs;
  /** Linear address of the XSAVE area. */
  address: bigint;
  length: number;
}

function emulateXsave({ vcpu, memory, regs, sregs, address, length }: Instruction, layout: Map<number, XsaveComponent>, compacted: boolean): Outcome {
  const rfbm = requestedFeatures(regs, vcpu.getXcr0());
  const offsets = guestOffsets(layout, compacted ? rfbm : undefined);
  const pieces = offsets && requestedPieces(rfbm, layout, offsets);
  if (!pieces) return 'unhandled';
  const current = readGuestLinear(memory, sregs, address, imageEnd(pieces), 'write');
  if (current.kind !== 'ok') return raiseAccessFault(vcpu, current);
  const image = current.value;
  const state = vcpu.getXsave();
  for (const list of pieces.values()) for (const p of list) image.set(state.subarray(p.state, p.state + p.length), p.guest);
  if (bit(rfbm, FEATURE_SSE) || bit(rfbm, FEATURE_AVX)) image.set(state.subarray(...LEGACY.mxcsrPair), LEGACY.mxcsrPair[0]);
  const imageView = new DataView(image.buffer, image.byteOffset, image.byteLength);
  if (compacted) {
    imageView.setBigUint64(HEADER_OFFSET, rfbm, true);
    imageView.setBigUint64(HEADER_OFFSET + 8, COMPACTED | rfbm, true);
  } else {
    imageView.setBigUint64(HEADER_OFFSET, imageView.getBigUint64(HEADER_OFFSET, true) | rfbm, true);
  }
  const written = writeGuestLinear(memory, sregs, address, image);
  if (written.kind !== 'ok') return raiseAccessFault(vcpu, written);
  return advance(vcpu, regs, length);
}

/**
 * XRSTOR m (0F AE /5), both forms (SDM Vol. 1, 13.8): for each requested
 * component, loads it from memory if its XSTATE_BV bit is set, else
 * initializes it. MXCSR: the standard form loads it whenever SSE or AVX is
 * requested; the compacted form loads it with SSE state and otherwise
 * initializes it to 1F80H. #GP for a header naming components outside XCR0
 * (or outside XCOMP_BV), non-zero reserved header bytes, or reserved MXCSR bits.
 */
function emulateXrstor({ vcpu, memory, regs, sregs, address, length }: Instruction, layout: Map<number, XsaveComponent>): Outcome {
  const xcr0 = vcpu.getXcr0();
  const rfbm = requestedFeatures(regs, xcr0);
  const header = readGuestLinear(memory, sregs, address + BigInt(HEADER_OFFSET), HEADER_SIZE);
  if (header.kind !== 'ok') return raiseAccessFault(vcpu, header);
  const headerView = new DataView(header.value.buffer, header.value.byteOffset, HEADER_SIZE);
  const xstateBv = headerView.getBigUint64(0, true);
  const xcompBv = headerView.getBigUint64(8, true);
  const compacted = (xcompBv & COMPACTED) !== 0n;
  const components = xcompBv & ~COMPACTED;
  // Must be zero: standard form, bytes 23:8 (XCOMP_BV included); compacted form, bytes 63:16.
  const [reservedFrom, reservedTo] = compacted ? [16, HEADER_SIZE] : [8, 24];
  let reservedClear = true;
  for (let i = reservedFrom; i < reservedTo; i += 8) if (headerView.getBigUint64(i, true) !== 0n) reservedClear = false;
  const badComponents = compacted ? components & ~xcr0 || xstateBv & ~components : xstateBv & ~xcr0;
  if (!reservedClear || badComponents) return raise(vcpu, VECTOR_GENERAL_PROTECTION, 0);

  const offsets = guestOffsets(layout, compacted ? components : undefined);
  const pieces = offsets && requestedPieces(rfbm & (compacted ? components | 3n : ~0n), layout, offsets);
  if (!pieces) return 'unhandled';
  const read = readGuestLinear(memory, sregs, address, imageEnd(pieces));
  if (read.kind !== 'ok') return raiseAccessFault(vcpu, read);
  const image = read.value;
  const imageView = new DataView(image.buffer, image.byteOffset, image.byteLength);
  let mxcsr: number | undefined;
  if (compacted) {
    if (bit(rfbm, FEATURE_SSE)) mxcsr = bit(xstateBv, FEATURE_SSE) ? imageView.getUint32(LEGACY.mxcsr, true) : MXCSR_INIT;
  } else if (bit(rfbm, FEATURE_SSE) || bit(rfbm, FEATURE_AVX)) {
    mxcsr = imageView.getUint32(LEGACY.mxcsr, true);
  }
  if (mxcsr !== undefined && mxcsr & ~MXCSR_WRITABLE) return raise(vcpu, VECTOR_GENERAL_PROTECTION, 0);

  // A requested component absent from a compacted area has XSTATE_BV clear
  // (checked above) and is initialized: it needs only its place in KVM's buffer.
  for (const f of features(rfbm)) {
    const placed = pieces.get(f) ?? componentPieces(f, layout, new Map([[f, 0]]));
    if (!placed) return 'unhandled';
    pieces.set(f, placed);
  }
  const state = vcpu.getXsave();
  const stateView = new DataView(state.buffer, state.byteOffset, state.byteLength);
  let stateBv = stateView.getBigUint64(HEADER_OFFSET, true);
  for (const f of features(rfbm)) {
    for (const p of pieces.get(f)!) {
      if (bit(xstateBv, f)) state.set(image.subarray(p.guest, p.guest + p.length), p.state);
      else state.fill(0, p.state, p.state + p.length);
    }
    if (f === FEATURE_X87 && !bit(xstateBv, f)) stateView.setUint16(0, FCW_INIT, true);
    // Loaded or initialized, the component now holds defined values: mark it
    // present so KVM_SET_XSAVE takes them (it ignores components whose bit is clear).
    stateBv |= 1n << BigInt(f);
  }
  if (mxcsr !== undefined) {
    stateView.setUint32(LEGACY.mxcsr, mxcsr, true);
    stateBv |= 1n << BigInt(FEATURE_SSE); // KVM takes MXCSR only with the SSE bit set
  }
  stateView.setBigUint64(HEADER_OFFSET, stateBv, true);
  vcpu.setXsave(state);
  return advance(vcpu, regs, length);
}

/** CPUID.(EAX=0xD, ECX=1):EAX bit 2: XGETBV with ECX = 1 reads XINUSE & XCR0. */
function xgetbv(vcpu: Vcpu): Outcome {
  const sregs = vcpu.getSregs();
  if (!(sregs.cr4 & CR4_OSXSAVE)) return raise(vcpu, VECTOR_INVALID_OPCODE);
  const regs = vcpu.getRegs();
  const index = regs.rcx & 0xffffffffn;
  const xcr0 = vcpu.getXcr0();
  let value: bigint;
  if (index === 0n) value = xcr0;
  else if (index === 1n) value = xcr0 & new DataView(vcpu.getXsave().buffer).getBigUint64(HEADER_OFFSET, true);
  else return raise(vcpu, VECTOR_GENERAL_PROTECTION, 0);
  regs.rax = value & 0xffffffffn;
  regs.rdx = value >> 32n;
  regs.rip += 3n;
  vcpu.setRegs(regs);
  return 'done';
}

export const xgetbvWorkaround: Workaround = {
  name: 'xgetbv',
  description: 'xgetbv is not emulated by KVM here: read XCR0 (KVM_GET_XCRS) into EDX:EAX and advanced RIP',
  apply(vcpu, bytes) {
    if (bytes[0] !== 0x0f || bytes[1] !== 0x01 || bytes[2] !== 0xd0) return false;
    return xgetbv(vcpu) === 'done';
  },
};

/** The XSAVE-family workarounds; `layout` comes from xsaveLayout(KVM's supported CPUID). */
export function xsaveWorkarounds(layout: Map<number, XsaveComponent>): Workaround[] {
  const memoryForm = (
    name: string,
    description: string,
    opcode: readonly number[],
    reg: number,
    run: (instruction: Instruction) => Outcome,
  ): Workaround => ({
    name,
    description,
    apply(vcpu, bytes, memory) {
      const op = decodeMemoryOperand(bytes, opcode);
      if (!op || op.mandatoryPrefix !== undefined || (op.reg & 7) !== reg) return false;
      const sregs = vcpu.getSregs();
      if (!sregs.cs.l) return false; // the decoder speaks 64-bit mode only
      if (checkUsable(vcpu, sregs)) return true;
      const regs = vcpu.getRegs();
      const address = effectiveAddress(op, regs, sregs);
      if (address % XSAVE_ALIGNMENT !== 0n) {
        vcpu.injectException(VECTOR_GENERAL_PROTECTION, 0);
        return true;
      }
      return run({ vcpu, memory, regs, sregs, address, length: op.length }) === 'done';
    },
  });
  const saved = 'wrote the requested FPU state (KVM_GET_XSAVE) to guest memory and advanced RIP';
  return [
    memoryForm('xsave', `xsave is not emulated by KVM here: ${saved}`, [0x0f, 0xae], 4, (i) => emulateXsave(i, layout, false)),
    memoryForm('xrstor', 'xrstor is not emulated by KVM here: loaded the requested FPU state from guest memory (KVM_SET_XSAVE) and advanced RIP', [0x0f, 0xae], 5, (i) => emulateXrstor(i, layout)),
    memoryForm('xsaveopt', `xsaveopt is not emulated by KVM here: ${saved}`, [0x0f, 0xae], 6, (i) => emulateXsave(i, layout, false)),
    memoryForm('xsavec', `xsavec is not emulated by KVM here: ${saved} in the compacted format`, [0x0f, 0xc7], 4, (i) => emulateXsave(i, layout, true)),
    xgetbvWorkaround,
  ];
}
