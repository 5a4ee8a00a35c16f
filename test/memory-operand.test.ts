// Tests for the ModRM/SIB memory-operand decoder used by emulation workarounds.
// Expected encodings were produced with GNU as (x86-64) and are written out here.
import { decodeMemoryOperand, effectiveAddress } from '../src/arch/x86/memory-operand';
import type { Regs } from '../src/kvm/structs/regs';
import type { Sregs } from '../src/kvm/structs/sregs';

const LDMXCSR = [0x0f, 0xae];

function regs(overrides: Partial<Regs> = {}): Regs {
  const r = {} as Regs;
  for (const n of ['rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rsp', 'rbp', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15', 'rip', 'rflags'] as const) r[n] = 0n;
  return Object.assign(r, overrides);
}
function sregs(fsBase = 0n, gsBase = 0n): Sregs {
  return { fs: { base: fsBase }, gs: { base: gsBase } } as unknown as Sregs;
}

describe('decodeMemoryOperand', () => {
  test('ldmxcsr 0x4(%rsp): SIB with base rsp and disp8 (the instruction Linux runs)', () => {
    const op = decodeMemoryOperand(Uint8Array.of(0x0f, 0xae, 0x54, 0x24, 0x04, 0x83, 0xe3), LDMXCSR)!;
    expect(op).toMatchObject({ reg: 2, base: 'rsp', index: undefined, displacement: 4n, length: 5, ripRelative: false });
    expect(effectiveAddress(op, regs({ rsp: 0xffffc9000000bd80n }), sregs())).toBe(0xffffc9000000bd84n);
  });

  test('stmxcsr (%rdi): plain register base, no displacement', () => {
    const op = decodeMemoryOperand(Uint8Array.of(0x0f, 0xae, 0x1f), LDMXCSR)!;
    expect(op).toMatchObject({ reg: 3, base: 'rdi', length: 3 });
  });

  test('REX.B and REX.X extend base and index: ldmxcsr -0x10(%r12,%r9,8)', () => {
    // 43 0f ae 54 cc f0
    const op = decodeMemoryOperand(Uint8Array.of(0x43, 0x0f, 0xae, 0x54, 0xcc, 0xf0), LDMXCSR)!;
    expect(op).toMatchObject({ reg: 2, base: 'r12', index: 'r9', scale: 8, displacement: -16n, length: 6 });
    expect(effectiveAddress(op, regs({ r12: 0x1000n, r9: 2n }), sregs())).toBe(0x1000n + 16n - 16n);
  });

  test('RIP-relative: address is relative to the next instruction', () => {
    // ldmxcsr 0x100(%rip): 0f ae 15 00 01 00 00
    const op = decodeMemoryOperand(Uint8Array.of(0x0f, 0xae, 0x15, 0x00, 0x01, 0x00, 0x00), LDMXCSR)!;
    expect(op.ripRelative).toBe(true);
    expect(op.length).toBe(7);
    expect(effectiveAddress(op, regs({ rip: 0x5000n }), sregs())).toBe(0x5000n + 7n + 0x100n);
  });

  test('SIB without base (mod 00, base 101) takes a disp32; index 100 means none', () => {
    // ldmxcsr 0x2000(,%rax,4): 0f ae 14 85 00 20 00 00
    const op = decodeMemoryOperand(Uint8Array.of(0x0f, 0xae, 0x14, 0x85, 0x00, 0x20, 0x00, 0x00), LDMXCSR)!;
    expect(op).toMatchObject({ base: undefined, index: 'rax', scale: 4, displacement: 0x2000n, length: 8 });
    const noIndex = decodeMemoryOperand(Uint8Array.of(0x0f, 0xae, 0x14, 0x24), LDMXCSR)!;
    expect(noIndex).toMatchObject({ base: 'rsp', index: undefined });
  });

  test('segment override adds the GS base; 0x67 truncates to 32 bits', () => {
    const gs = decodeMemoryOperand(Uint8Array.of(0x65, 0x0f, 0xae, 0x10), LDMXCSR)!;
    expect(effectiveAddress(gs, regs({ rax: 0x10n }), sregs(0n, 0xffff888000000000n))).toBe(0xffff888000000010n);
    const a32 = decodeMemoryOperand(Uint8Array.of(0x67, 0x0f, 0xae, 0x50, 0x10), LDMXCSR)!;
    expect(effectiveAddress(a32, regs({ rax: 0xfffffffffffffff8n }), sregs())).toBe(0x8n);
  });

  test('negative disp32 wraps around the 64-bit address space', () => {
    const op = decodeMemoryOperand(Uint8Array.of(0x0f, 0xae, 0x90, 0x00, 0x00, 0x00, 0x80), LDMXCSR)!;
    expect(effectiveAddress(op, regs({ rax: 0n }), sregs())).toBe(0xffffffff80000000n);
  });

  test('hostile or foreign encodings decode to undefined, never throw', () => {
    expect(decodeMemoryOperand(Uint8Array.of(0x0f, 0xae, 0xd0), LDMXCSR)).toBeUndefined(); // mod 3: register
    expect(decodeMemoryOperand(Uint8Array.of(0x0f, 0xaf, 0x10), LDMXCSR)).toBeUndefined(); // other opcode
    expect(decodeMemoryOperand(Uint8Array.of(0x0f, 0xae), LDMXCSR)).toBeUndefined(); // no ModRM
    expect(decodeMemoryOperand(Uint8Array.of(0x0f, 0xae, 0x54), LDMXCSR)).toBeUndefined(); // no SIB
    expect(decodeMemoryOperand(Uint8Array.of(0x0f, 0xae, 0x90, 0x00, 0x00), LDMXCSR)).toBeUndefined(); // short disp32
    expect(decodeMemoryOperand(new Uint8Array(0), LDMXCSR)).toBeUndefined();
    expect(decodeMemoryOperand(new Uint8Array(64).fill(0x66), LDMXCSR)).toBeUndefined(); // prefixes past 15 bytes
    for (let seed = 0; seed < 2000; seed++) {
      const bytes = Uint8Array.from({ length: (seed % 16) + 1 }, (_, i) => (seed * 131 + i * 7919) & 0xff);
      const op = decodeMemoryOperand(bytes, LDMXCSR);
      if (op) expect(op.length).toBeLessThanOrEqual(Math.min(bytes.length, 15));
    }
  });
});
