// The register file the gdb stub shows, and the target description that
// tells gdb its layout (GDB manual, Appendix G "Target Descriptions"; sent
// in reply to qXfer:features:read:target.xml). With a description, the
// 'g' packet is the registers in the order below, each little-endian at its
// `bitsize`, and 'p'/'P' number them from 0 in the same order.
//
// gdb's i386:x86-64 architecture requires these features and names
// (G.5.1 "i386 Features"): org.gnu.gdb.i386.core (general registers, rip,
// eflags, the segment selectors, the x87 registers) and
// org.gnu.gdb.i386.sse (xmm0-15, mxcsr); org.gnu.gdb.i386.segments adds
// fs_base/gs_base. A last feature of our own shows the control registers
// (read-only), handy when debugging a kernel.
import type { CpuState } from '../vmm/debug-protocol';
import type { Regs } from '../kvm/structs/regs';
import { fromLittleEndian, littleEndian } from './hex';

/** Which part of CpuState a register write changed (what the stub sends back to the vCPU). */
export type StatePart = 'regs' | 'fpu' | 'fsBase' | 'gsBase';

export interface RegisterDef {
  name: string;
  bitsize: number;
  /** A target-description type: a built-in ("int64", "code_ptr", "i387_ext", ...) or one defined in TYPES below. */
  type: string;
  group?: string;
  feature: string;
  read(state: CpuState): Uint8Array;
  /** Undefined for a register the stub cannot change (segment selectors, control registers). */
  write?(state: CpuState, bytes: Uint8Array): StatePart;
}

const CORE = 'org.gnu.gdb.i386.core';
const SSE = 'org.gnu.gdb.i386.sse';
const SEGMENTS = 'org.gnu.gdb.i386.segments';
const CONTROL = 'org.tskvm.x86.control';

const u = (value: bigint | number, bits: number): Uint8Array => littleEndian(BigInt(value), bits / 8);

function general(name: keyof Regs, type = 'int64'): RegisterDef {
  return {
    name,
    bitsize: 64,
    type,
    feature: CORE,
    read: (s) => u(s.regs[name], 64),
    write: (s, b) => ((s.regs[name] = fromLittleEndian(b)), 'regs'),
  };
}

function selector(name: 'cs' | 'ss' | 'ds' | 'es' | 'fs' | 'gs'): RegisterDef {
  return { name, bitsize: 32, type: 'int32', feature: CORE, read: (s) => u(s.sregs[name].selector, 32) };
}

/**
 * The full x87 tag word from FXSAVE's abridged one (SDM Vol. 1, 10.5.1.1
 * and 8.1.7): two bits per physical register, 11 empty, else classified by
 * the value — 01 zero, 10 special (NaN, infinity, denormal, unnormal), 00
 * valid. Physical register p holds ST((p - TOP) mod 8); TOP is FSW bits 11-13.
 */
export function fullTagWord(ftwx: number, fsw: number, fpr: Uint8Array[]): number {
  const top = (fsw >> 11) & 7;
  let tags = 0;
  for (let p = 0; p < 8; p++) {
    let tag = 3;
    if (ftwx & (1 << p)) {
      const value = fpr[(p - top + 8) & 7]!;
      const exponent = (value[8]! | (value[9]! << 8)) & 0x7fff;
      const mantissa = fromLittleEndian(value.subarray(0, 8));
      const integerBit = (value[7]! & 0x80) !== 0;
      if (exponent === 0x7fff) tag = 2;
      else if (exponent === 0) tag = mantissa === 0n ? 1 : 2;
      else tag = integerBit ? 0 : 2;
    }
    tags |= tag << (2 * p);
  }
  return tags;
}

/** FXSAVE's abridged tag (one bit per physical register: 1 = not empty) from a full tag word. */
export function abridgedTagWord(full: number): number {
  let ftwx = 0;
  for (let p = 0; p < 8; p++) if (((full >> (2 * p)) & 3) !== 3) ftwx |= 1 << p;
  return ftwx;
}

/** A 32-bit x87 control field of kvm_fpu. */
function x87(name: string, read: (s: CpuState) => number | bigint, write: (s: CpuState, v: bigint) => void): RegisterDef {
  return {
    name,
    bitsize: 32,
    type: 'int',
    group: 'float',
    feature: CORE,
    read: (s) => u(BigInt.asUintN(32, BigInt(read(s))), 32),
    write: (s, b) => (write(s, fromLittleEndian(b)), 'fpu'),
  };
}

const LOW32 = 0xffffffffn;

export const AMD64_REGISTERS: readonly RegisterDef[] = [
  ...(['rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi'] as const).map((n) => general(n)),
  general('rbp', 'data_ptr'),
  general('rsp', 'data_ptr'),
  ...(['r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15'] as const).map((n) => general(n)),
  general('rip', 'code_ptr'),
  {
    name: 'eflags',
    bitsize: 32,
    type: 'i386_eflags',
    feature: CORE,
    read: (s) => u(s.regs.rflags & LOW32, 32),
    // RFLAGS bits 63:32 are reserved and zero (SDM Vol. 1, 3.4.3.4).
    write: (s, b) => ((s.regs.rflags = fromLittleEndian(b)), 'regs'),
  },
  ...(['cs', 'ss', 'ds', 'es', 'fs', 'gs'] as const).map(selector),
  ...Array.from({ length: 8 }, (_, i): RegisterDef => ({
    name: `st${i}`,
    bitsize: 80,
    type: 'i387_ext',
    feature: CORE,
    read: (s) => s.fpu.fpr[i]!.slice(0, 10),
    write: (s, b) => (s.fpu.fpr[i]!.set(b.subarray(0, 10)), 'fpu'),
  })),
  x87('fctrl', (s) => s.fpu.fcw, (s, v) => (s.fpu.fcw = Number(v & 0xffffn))),
  x87('fstat', (s) => s.fpu.fsw, (s, v) => (s.fpu.fsw = Number(v & 0xffffn))),
  x87('ftag', (s) => fullTagWord(s.fpu.ftwx, s.fpu.fsw, s.fpu.fpr), (s, v) => (s.fpu.ftwx = abridgedTagWord(Number(v & 0xffffn)))),
  // In the 64-bit FXSAVE layout the last instruction and operand pointers are
  // 64-bit (SDM Vol. 1, 10.5.1.1); gdb shows their halves as "seg" and "off".
  x87('fiseg', (s) => s.fpu.lastIp >> 32n, (s, v) => (s.fpu.lastIp = ((v & LOW32) << 32n) | (s.fpu.lastIp & LOW32))),
  x87('fioff', (s) => s.fpu.lastIp & LOW32, (s, v) => (s.fpu.lastIp = (s.fpu.lastIp & ~LOW32) | (v & LOW32))),
  x87('foseg', (s) => s.fpu.lastDp >> 32n, (s, v) => (s.fpu.lastDp = ((v & LOW32) << 32n) | (s.fpu.lastDp & LOW32))),
  x87('fooff', (s) => s.fpu.lastDp & LOW32, (s, v) => (s.fpu.lastDp = (s.fpu.lastDp & ~LOW32) | (v & LOW32))),
  x87('fop', (s) => s.fpu.lastOpcode & 0x7ff, (s, v) => (s.fpu.lastOpcode = Number(v & 0x7ffn))),
  ...Array.from({ length: 16 }, (_, i): RegisterDef => ({
    name: `xmm${i}`,
    bitsize: 128,
    type: 'vec128',
    feature: SSE,
    read: (s) => s.fpu.xmm[i]!.slice(0, 16),
    write: (s, b) => (s.fpu.xmm[i]!.set(b.subarray(0, 16)), 'fpu'),
  })),
  {
    name: 'mxcsr',
    bitsize: 32,
    type: 'i386_mxcsr',
    group: 'vector',
    feature: SSE,
    read: (s) => u(s.fpu.mxcsr, 32),
    write: (s, b) => ((s.fpu.mxcsr = Number(fromLittleEndian(b))), 'fpu'),
  },
  {
    name: 'fs_base',
    bitsize: 64,
    type: 'int',
    feature: SEGMENTS,
    read: (s) => u(s.sregs.fs.base, 64),
    write: (s, b) => ((s.sregs.fs.base = fromLittleEndian(b)), 'fsBase'),
  },
  {
    name: 'gs_base',
    bitsize: 64,
    type: 'int',
    feature: SEGMENTS,
    read: (s) => u(s.sregs.gs.base, 64),
    write: (s, b) => ((s.sregs.gs.base = fromLittleEndian(b)), 'gsBase'),
  },
  ...(['cr0', 'cr2', 'cr3', 'cr4', 'efer'] as const).map(
    (name): RegisterDef => ({ name, bitsize: 64, type: 'int64', group: 'system', feature: CONTROL, read: (s) => u(s.sregs[name], 64) }),
  ),
];

/** Bytes of register `index` in the 'g' packet. */
export function registerSize(index: number): number {
  return AMD64_REGISTERS[index]!.bitsize / 8;
}

// ------------------------------------------------------------ target.xml

/** EFLAGS bits by name (SDM Vol. 1, 3.4.3, Figure 3-8). */
const EFLAGS_FIELDS: [string, number, number][] = [
  ['CF', 0, 0], ['PF', 2, 2], ['AF', 4, 4], ['ZF', 6, 6], ['SF', 7, 7], ['TF', 8, 8], ['IF', 9, 9], ['DF', 10, 10],
  ['OF', 11, 11], ['IOPL', 12, 13], ['NT', 14, 14], ['RF', 16, 16], ['VM', 17, 17], ['AC', 18, 18], ['VIF', 19, 19],
  ['VIP', 20, 20], ['ID', 21, 21],
];

/** MXCSR bits by name (SDM Vol. 1, 10.2.3, Figure 10-3). */
const MXCSR_FIELDS: [string, number, number][] = [
  ['IE', 0, 0], ['DE', 1, 1], ['ZE', 2, 2], ['OE', 3, 3], ['UE', 4, 4], ['PE', 5, 5], ['DAZ', 6, 6], ['IM', 7, 7],
  ['DM', 8, 8], ['ZM', 9, 9], ['OM', 10, 10], ['UM', 11, 11], ['PM', 12, 12], ['RC', 13, 14], ['FZ', 15, 15],
];

function flagsType(id: string, fields: [string, number, number][]): string {
  const lines = fields.map(([name, start, end]) => `    <field name="${name}" start="${start}" end="${end}"/>`);
  return `  <flags id="${id}" size="4">\n${lines.join('\n')}\n  </flags>`;
}

/** The 128-bit SSE register seen as vectors of each element type (G.4 "Types": <vector>, <union>). */
const VEC128_TYPE = `  <vector id="v4f" type="ieee_single" count="4"/>
  <vector id="v2d" type="ieee_double" count="2"/>
  <vector id="v16i8" type="int8" count="16"/>
  <vector id="v8i16" type="int16" count="8"/>
  <vector id="v4i32" type="int32" count="4"/>
  <vector id="v2i64" type="int64" count="2"/>
  <union id="vec128">
    <field name="v4_float" type="v4f"/>
    <field name="v2_double" type="v2d"/>
    <field name="v16_int8" type="v16i8"/>
    <field name="v8_int16" type="v8i16"/>
    <field name="v4_int32" type="v4i32"/>
    <field name="v2_int64" type="v2i64"/>
    <field name="uint128" type="uint128"/>
  </union>`;

/** The types each feature defines before its registers. */
const FEATURE_TYPES: Record<string, string> = {
  [CORE]: flagsType('i386_eflags', EFLAGS_FIELDS),
  [SSE]: `${VEC128_TYPE}\n${flagsType('i386_mxcsr', MXCSR_FIELDS)}`,
};

/** target.xml: the architecture and every register above, feature by feature, in 'g' packet order. */
export function targetDescriptionXml(): string {
  const features: string[] = [];
  let current: string | undefined;
  let lines: string[] = [];
  const flush = (): void => {
    if (current === undefined) return;
    const types = FEATURE_TYPES[current];
    features.push(`<feature name="${current}">\n${types ? types + '\n' : ''}${lines.join('\n')}\n</feature>`);
  };
  AMD64_REGISTERS.forEach((r, regnum) => {
    if (r.feature !== current) {
      flush();
      current = r.feature;
      lines = [];
    }
    const group = r.group ? ` group="${r.group}"` : '';
    lines.push(`  <reg name="${r.name}" bitsize="${r.bitsize}" type="${r.type}" regnum="${regnum}"${group}/>`);
  });
  flush();
  return [
    '<?xml version="1.0"?>',
    '<!DOCTYPE target SYSTEM "gdb-target.dtd">',
    '<target version="1.0">',
    '<architecture>i386:x86-64</architecture>',
    ...features,
    '</target>',
    '',
  ].join('\n');
}
