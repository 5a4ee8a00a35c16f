// Decoding the memory operand of a 64-bit-mode instruction (prefixes, REX,
// ModRM, SIB, displacement), for the emulation workarounds that must read or
// write the operand themselves (ldmxcsr, stmxcsr).
//
// Encoding facts are from the Intel SDM Vol. 2A, chapter 2:
//   2.1.1  legacy prefixes (groups 1–4), 2.2.1 REX (0x40–0x4F, last before the opcode),
//   2.1.5  ModRM and SIB tables, 2.2.1.6 RIP-relative addressing (mod=00 rm=101),
//   2.2.1.2 REX.X/REX.B extend SIB.index/SIB.base and ModRM.rm.
// Input is guest memory and therefore hostile: every read is bounds-checked and
// an encoding we do not understand yields `undefined`, never a guess.
import type { Regs } from '../../kvm/structs/regs';
import type { Sregs } from '../../kvm/structs/sregs';

/** General-purpose registers in encoding order (SDM Vol. 2A, Table 2-2 with REX.B/X/R). */
export const GPR_BY_NUMBER = [
  'rax', 'rcx', 'rdx', 'rbx', 'rsp', 'rbp', 'rsi', 'rdi',
  'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15',
] as const;
export type GprName = (typeof GPR_BY_NUMBER)[number];

export interface MemoryOperandInstruction {
  /** ModRM.reg (with REX.R): the /digit opcode extension or a register operand. */
  reg: number;
  base?: GprName;
  index?: GprName;
  scale: 1 | 2 | 4 | 8;
  /** Sign-extended displacement. */
  displacement: bigint;
  ripRelative: boolean;
  /** 0x67 prefix: 32-bit address size. */
  addressSize32: boolean;
  /** FS/GS override (the only segment overrides with a base in 64-bit mode). */
  segment?: 'fs' | 'gs';
  /** REX.W: 64-bit operand size (e.g. xsave64 rather than xsave). */
  rexW: boolean;
  /** The last 66/F2/F3 prefix: with 0F opcodes it selects a different instruction (e.g. 66 0F AE /6 is clwb, not xsaveopt). */
  mandatoryPrefix?: 0x66 | 0xf2 | 0xf3;
  /** Total instruction length in bytes. */
  length: number;
}

const MAX_INSTRUCTION_LENGTH = 15;

/**
 * Decodes `bytes` as prefixes + `opcode` + ModRM with a memory operand.
 * Returns undefined if the opcode does not match, the ModRM names a register
 * (mod = 3), or the bytes run out.
 */
export function decodeMemoryOperand(bytes: Uint8Array, opcode: readonly number[]): MemoryOperandInstruction | undefined {
  const limit = Math.min(bytes.length, MAX_INSTRUCTION_LENGTH);
  let i = 0;
  let segment: 'fs' | 'gs' | undefined;
  let addressSize32 = false;
  let mandatoryPrefix: 0x66 | 0xf2 | 0xf3 | undefined;
  // Legacy prefixes, any order (SDM Vol. 2A, 2.1.1).
  for (; i < limit; i++) {
    const b = bytes[i]!;
    if (b === 0x64) segment = 'fs';
    else if (b === 0x65) segment = 'gs';
    else if (b === 0x67) addressSize32 = true;
    else if (b === 0x66 || b === 0xf2 || b === 0xf3) mandatoryPrefix = b;
    else if (b === 0xf0 || b === 0x2e || b === 0x36 || b === 0x3e || b === 0x26) continue;
    else break;
  }
  let rex = 0;
  if (i < limit && (bytes[i]! & 0xf0) === 0x40) rex = bytes[i++]!;
  for (const op of opcode) {
    if (i >= limit || bytes[i] !== op) return undefined;
    i++;
  }
  if (i >= limit) return undefined;
  const modrm = bytes[i++]!;
  const mod = modrm >> 6;
  const reg = ((modrm >> 3) & 7) | (rex & 4 ? 8 : 0);
  const rm = modrm & 7;
  if (mod === 3) return undefined;

  let base: GprName | undefined;
  let index: GprName | undefined;
  let scale: 1 | 2 | 4 | 8 = 1;
  let ripRelative = false;
  let dispSize = mod === 1 ? 1 : mod === 2 ? 4 : 0;
  if (rm === 4) {
    if (i >= limit) return undefined;
    const sib = bytes[i++]!;
    scale = (1 << (sib >> 6)) as 1 | 2 | 4 | 8;
    const indexNumber = ((sib >> 3) & 7) | (rex & 2 ? 8 : 0);
    if (indexNumber !== 4) index = GPR_BY_NUMBER[indexNumber]; // index 100b without REX.X: none
    const baseLow = sib & 7;
    if (baseLow === 5 && mod === 0) dispSize = 4; // no base, disp32
    else base = GPR_BY_NUMBER[baseLow | (rex & 1 ? 8 : 0)];
  } else if (rm === 5 && mod === 0) {
    ripRelative = true;
    dispSize = 4;
  } else {
    base = GPR_BY_NUMBER[rm | (rex & 1 ? 8 : 0)];
  }
  if (i + dispSize > limit) return undefined;
  let displacement = 0n;
  if (dispSize === 1) displacement = BigInt((bytes[i]! << 24) >> 24);
  else if (dispSize === 4) displacement = BigInt(bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24));
  i += dispSize;
  return { reg, base, index, scale, displacement, ripRelative, addressSize32, segment, rexW: (rex & 8) !== 0, mandatoryPrefix, length: i };
}

/** The linear address the operand names, given the registers at the instruction. */
export function effectiveAddress(op: MemoryOperandInstruction, regs: Regs, sregs: Sregs): bigint {
  let address = op.displacement;
  if (op.ripRelative) address += regs.rip + BigInt(op.length);
  if (op.base) address += regs[op.base];
  if (op.index) address += regs[op.index] * BigInt(op.scale);
  address = op.addressSize32 ? BigInt.asUintN(32, address) : BigInt.asUintN(64, address);
  if (op.segment) address += sregs[op.segment].base;
  return BigInt.asUintN(64, address);
}
