// struct kvm_regs (<asm/kvm.h>, x86): 18 general registers, 8 bytes each.
//   rax 0, rbx 8, rcx 16, rdx 24, rsi 32, rdi 40, rsp 48, rbp 56,
//   r8 64 ... r15 120, rip 128, rflags 136; sizeof = 144.

export const KVM_REGS_SIZE = 144;

export interface Regs {
  rax: bigint; rbx: bigint; rcx: bigint; rdx: bigint;
  rsi: bigint; rdi: bigint; rsp: bigint; rbp: bigint;
  r8: bigint; r9: bigint; r10: bigint; r11: bigint;
  r12: bigint; r13: bigint; r14: bigint; r15: bigint;
  rip: bigint; rflags: bigint;
}

/** Field order is the struct order: offset = index * 8. */
export const REG_NAMES = [
  'rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rsp', 'rbp',
  'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15',
  'rip', 'rflags',
] as const satisfies readonly (keyof Regs)[];

export function decodeRegs(buf: Uint8Array): Regs {
  if (buf.byteLength < KVM_REGS_SIZE) throw new RangeError('kvm_regs buffer too small');
  const view = new DataView(buf.buffer, buf.byteOffset, KVM_REGS_SIZE);
  const regs = {} as Regs;
  REG_NAMES.forEach((name, i) => (regs[name] = view.getBigUint64(i * 8, true)));
  return regs;
}

export function encodeRegs(regs: Regs, buf: Uint8Array = new Uint8Array(KVM_REGS_SIZE)): Uint8Array {
  if (buf.byteLength < KVM_REGS_SIZE) throw new RangeError('kvm_regs buffer too small');
  const view = new DataView(buf.buffer, buf.byteOffset, KVM_REGS_SIZE);
  REG_NAMES.forEach((name, i) => view.setBigUint64(i * 8, BigInt.asUintN(64, regs[name]), true));
  return buf;
}

export function emptyRegs(): Regs {
  const regs = {} as Regs;
  for (const name of REG_NAMES) regs[name] = 0n;
  regs.rflags = 2n; // bit 1 of RFLAGS is reserved and always 1 (SDM Vol. 1, 3.4.3)
  return regs;
}
