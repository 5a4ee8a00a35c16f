// The gdb stub's register file and target description (src/gdb/amd64-registers.ts): pure, no KVM.
import { abridgedTagWord, AMD64_REGISTERS, fullTagWord, targetDescriptionXml } from '../src/gdb/amd64-registers';
import type { CpuState } from '../src/vmm/debug-protocol';
import { emptyRegs } from '../src/kvm/structs/regs';
import { resetFpu } from '../src/kvm/structs/fpu';
import { decodeSregs, KVM_SREGS_SIZE } from '../src/kvm/structs/sregs';

function state(): CpuState {
  return { regs: emptyRegs(), sregs: decodeSregs(new Uint8Array(KVM_SREGS_SIZE)), fpu: resetFpu() };
}

test("the description has every register gdb's i386:x86-64 requires, numbered in 'g' packet order", () => {
  const xml = targetDescriptionXml();
  const names = [...xml.matchAll(/<reg name="([^"]+)" bitsize="(\d+)" type="[^"]+" regnum="(\d+)"/g)];
  expect(names.map((m) => m[1])).toEqual(AMD64_REGISTERS.map((r) => r.name));
  names.forEach((m, i) => expect(Number(m[3])).toBe(i));
  // G.5.1 "i386 Features": the core and SSE registers gdb checks for by name.
  const core = ['rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rbp', 'rsp', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15', 'rip', 'eflags',
    'cs', 'ss', 'ds', 'es', 'fs', 'gs', 'st0', 'st1', 'st2', 'st3', 'st4', 'st5', 'st6', 'st7',
    'fctrl', 'fstat', 'ftag', 'fiseg', 'fioff', 'foseg', 'fooff', 'fop'];
  expect(AMD64_REGISTERS.slice(0, core.length).map((r) => r.name)).toEqual(core);
  expect(AMD64_REGISTERS.slice(core.length, core.length + 17).map((r) => r.name)).toEqual([...Array.from({ length: 16 }, (_, i) => `xmm${i}`), 'mxcsr']);
  expect(xml).toContain('<feature name="org.gnu.gdb.i386.core">');
  expect(xml).toContain('<feature name="org.gnu.gdb.i386.sse">');
  expect(xml).toContain('<feature name="org.gnu.gdb.i386.segments">');
  expect(xml).toContain('<flags id="i386_eflags" size="4">');
  // No character that would need escaping in a reply's payload other than by the codec.
  expect(xml).not.toMatch(/[$#}*]/);
});

test('registers read and write little-endian at their size; selectors and control registers are read-only', () => {
  const s = state();
  const reg = (name: string) => AMD64_REGISTERS.find((r) => r.name === name)!;
  s.regs.rip = 0x8011n;
  s.regs.rflags = 0x246n;
  expect([...reg('rip').read(s)]).toEqual([0x11, 0x80, 0, 0, 0, 0, 0, 0]);
  expect([...reg('eflags').read(s)]).toEqual([0x46, 0x02, 0, 0]);
  expect(reg('rax').write!(s, Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8))).toBe('regs');
  expect(s.regs.rax).toBe(0x0807060504030201n);
  expect(reg('mxcsr').read(s)).toEqual(Uint8Array.of(0x80, 0x1f, 0, 0));
  expect(reg('xmm3').write!(s, new Uint8Array(16).fill(0xab))).toBe('fpu');
  expect(s.fpu.xmm[3]![15]).toBe(0xab);
  expect(reg('gs_base').write!(s, Uint8Array.of(0, 0x10, 0, 0, 0, 0, 0, 0))).toBe('gsBase');
  expect(s.sregs.gs.base).toBe(0x1000n);
  expect(reg('cs').write).toBeUndefined();
  expect(reg('cr3').write).toBeUndefined();
});

test('the x87 tag word: full form from the abridged one, by value class (SDM Vol. 1, 8.1.7, 10.5.1.1)', () => {
  const fpr = Array.from({ length: 8 }, () => new Uint8Array(16));
  // ST0 = 1.0 (exponent 0x3fff, integer bit set): valid; ST1 = +0: zero; ST2 = infinity: special.
  fpr[0]!.set([0, 0, 0, 0, 0, 0, 0, 0x80, 0xff, 0x3f]);
  fpr[2]!.set([0, 0, 0, 0, 0, 0, 0, 0x80, 0xff, 0x7f]);
  // TOP = 5: ST0 is physical register 5, ST1 is 6, ST2 is 7.
  const fsw = 5 << 11;
  const ftwx = (1 << 5) | (1 << 6) | (1 << 7);
  const full = fullTagWord(ftwx, fsw, fpr);
  expect(full).toBe(0b10_01_00_11_11_11_11_11);
  expect(abridgedTagWord(full)).toBe(ftwx);
  expect(fullTagWord(0, 0, fpr)).toBe(0xffff); // all empty
});
