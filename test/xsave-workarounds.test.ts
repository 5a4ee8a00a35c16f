// The XSAVE family at CPL0 (xsave-workarounds.ts) and the page walk it uses
// (page-walk.ts). The walk is pure logic over guest memory and is tested with
// hand-built page tables, hostile ones included; the instructions run in a
// real long-mode guest on /dev/kvm. The guest ends by pulsing the reset line
// through the i8042 (out 0xfe, 0x64).
import { SyncMachine } from '../src';
import { GuestMemory } from '../src/memory/guest-memory';
import { decodeSregs, KVM_SREGS_SIZE, type Sregs } from '../src/kvm/structs/sregs';
import { walkLinear, readGuestLinear, writeGuestLinear, PF_PRESENT, PF_WRITE } from '../src/arch/x86/page-walk';
import { guestOffsets, xsaveLayout } from '../src/arch/x86/xsave-workarounds';
import { buildGuestCpuid, CPUID_1_ECX_XSAVE, GUEST_XCR0_MASK } from '../src/arch/x86/cpuid';
import type { CpuidEntry } from '../src/kvm/structs/cpuid';

const entry = (fn: number, index: number, regs: Partial<CpuidEntry> = {}): CpuidEntry => ({
  function: fn, index, flags: 1, eax: 0, ebx: 0, ecx: 0, edx: 0, ...regs,
});

describe('xsaveLayout', () => {
  test('takes the standard-format offsets of leaf 0xD and drops what KVM_GET_XSAVE cannot hold', () => {
    const layout = xsaveLayout([
      entry(0xd, 0, { eax: 0x60207 }),
      entry(0xd, 1, { eax: 0xf }),
      entry(0xd, 2, { eax: 256, ebx: 576 }),
      entry(0xd, 9, { eax: 8, ebx: 2688, ecx: 2 }),
      entry(0xd, 18, { eax: 8192, ebx: 2752 }), // AMX tile data: past 4 KiB
      entry(0xd, 5, { eax: 64, ebx: 100 }), // overlaps the legacy region: a lie
      entry(0xd, 6, { eax: 0, ebx: 1000 }), // empty
    ]);
    expect([...layout.values()]).toEqual([
      { feature: 2, offset: 576, size: 256, align64: false },
      { feature: 9, offset: 2688, size: 8, align64: true },
    ]);
  });

  test('compacted format: components packed in order from byte 576, aligned where CPUID says', () => {
    const layout = xsaveLayout([
      entry(0xd, 2, { eax: 256, ebx: 576 }),
      entry(0xd, 5, { eax: 64, ebx: 1088, ecx: 2 }),
      entry(0xd, 9, { eax: 8, ebx: 2688 }),
      entry(0xd, 10, { eax: 8, ebx: 2696, ecx: 2 }),
    ]);
    expect(guestOffsets(layout)).toEqual(new Map([[2, 576], [5, 1088], [9, 2688], [10, 2696]]));
    expect(guestOffsets(layout, 0x607n)).toEqual(new Map([[2, 576], [9, 832], [10, 896]]));
    expect(guestOffsets(layout, 0x23n)).toEqual(new Map([[5, 576]]));
    expect(guestOffsets(layout, 0x7n | (1n << 7n))).toBeUndefined(); // component 7 is not described
  });
});

describe('CPUID policy for XSAVE', () => {
  test('advertises XSAVE with only the x87/SSE/AVX components and no compacted format', () => {
    const supported = [
      entry(0x1, 0, { ecx: CPUID_1_ECX_XSAVE | (1 << 27) }),
      entry(0xd, 0, { eax: 0x2e7, ebx: 2696, ecx: 2696, edx: 0 }),
      entry(0xd, 1, { eax: 0x1f, ebx: 123, ecx: 0x100 }),
      entry(0xd, 2, { eax: 256, ebx: 576 }),
      entry(0xd, 5, { eax: 64, ebx: 1088 }),
    ];
    const out = buildGuestCpuid(supported, { vcpuId: 0, cpuCount: 1 });
    const leaf = (fn: number, index = 0) => out.find((e) => e.function === fn && e.index === index)!;
    expect(leaf(1).ecx & CPUID_1_ECX_XSAVE).toBe(CPUID_1_ECX_XSAVE);
    expect(leaf(1).ecx & (1 << 27)).toBe(0); // OSXSAVE is KVM's to report
    expect(leaf(0xd)).toMatchObject({ eax: GUEST_XCR0_MASK, ecx: 832, edx: 0 });
    expect(leaf(0xd).ebx).toBeLessThanOrEqual(832);
    expect(leaf(0xd, 1)).toMatchObject({ eax: 0x5, ebx: 0, ecx: 0, edx: 0 });
    expect(leaf(0xd, 2)).toMatchObject({ eax: 256, ebx: 576 });
    expect(leaf(0xd, 5)).toMatchObject({ eax: 0, ebx: 0 });
  });
});

// Page tables for the walk tests: PML4 @0x1000, PDPT @0x2000, PD @0x3000, PT @0x4000.
const P = 1n, RW = 2n, PS = 0x80n, A = 0x20n, D = 0x40n;
function pagedMemory(): { memory: GuestMemory; sregs: Sregs } {
  const memory = GuestMemory.allocate([{ gpa: 0, size: 4 * 1024 * 1024 }]);
  memory.writeU64(0x1000, 0x2000n | P | RW);
  memory.writeU64(0x2000, 0x3000n | P | RW);
  memory.writeU64(0x3000, 0x4000n | P | RW); // 0-2 MiB through a page table
  memory.writeU64(0x3008, 0x200000n | P | PS); // 2-4 MiB: one read-only 2 MiB page
  memory.writeU64(0x4000 + 0x10 * 8, 0x10000n | P | RW); // 0x10000 → 0x10000, writable
  memory.writeU64(0x4000 + 0x11 * 8, 0x30000n | P); // 0x11000 → 0x30000, read-only
  const sregs = decodeSregs(new Uint8Array(KVM_SREGS_SIZE));
  sregs.cr0 = (1n << 31n) | (1n << 16n) | 1n; // PG, WP, PE
  sregs.cr3 = 0x1000n;
  sregs.cr4 = 1n << 5n; // PAE
  sregs.efer = (1n << 10n) | (1n << 8n); // LMA, LME
  return { memory, sregs };
}

describe('walkLinear (4-level paging, CPL0 data access)', () => {
  test('translates through 4 KiB and 2 MiB pages and sets Accessed / Dirty like the CPU', () => {
    const { memory, sregs } = pagedMemory();
    try {
      expect(walkLinear(memory, sregs, 0x10123n, 'read')).toEqual({ kind: 'ok', physical: 0x10123 });
      expect(memory.readU64(0x4000 + 0x10 * 8) & (A | D)).toBe(A);
      expect(walkLinear(memory, sregs, 0x10123n, 'write')).toEqual({ kind: 'ok', physical: 0x10123 });
      expect(memory.readU64(0x4000 + 0x10 * 8) & (A | D)).toBe(A | D);
      expect(memory.readU64(0x1000) & A).toBe(A);
      expect(walkLinear(memory, sregs, 0x212345n, 'read')).toEqual({ kind: 'ok', physical: 0x212345 });
    } finally {
      memory.close();
    }
  });

  test('faults where the CPU would: not present, read-only with CR0.WP, non-canonical', () => {
    const { memory, sregs } = pagedMemory();
    try {
      expect(walkLinear(memory, sregs, 0x12000n, 'read')).toEqual({ kind: 'page-fault', address: 0x12000n, errorCode: 0 });
      expect(walkLinear(memory, sregs, 0x12000n, 'write')).toEqual({ kind: 'page-fault', address: 0x12000n, errorCode: PF_WRITE });
      expect(walkLinear(memory, sregs, 0x11000n, 'read')).toEqual({ kind: 'ok', physical: 0x30000 });
      expect(walkLinear(memory, sregs, 0x11008n, 'write')).toEqual({ kind: 'page-fault', address: 0x11008n, errorCode: PF_PRESENT | PF_WRITE });
      expect(walkLinear(memory, sregs, 0x200000n, 'write')).toMatchObject({ kind: 'page-fault', errorCode: PF_PRESENT | PF_WRITE });
      // CR0.WP = 0: supervisor writes ignore R/W (SDM Vol. 3A, 4.6.1).
      expect(walkLinear(memory, sregs, 0x11008n, 'write')).toMatchObject({ kind: 'page-fault' });
      sregs.cr0 &= ~(1n << 16n);
      expect(walkLinear(memory, sregs, 0x11008n, 'write')).toEqual({ kind: 'ok', physical: 0x30008 });
      expect(walkLinear(memory, sregs, 0x0000800000000000n, 'read')).toEqual({ kind: 'general-protection' });
      sregs.cr4 |= 1n << 12n; // LA57: not implemented, so not guessed
      expect(walkLinear(memory, sregs, 0x10000n, 'read')).toEqual({ kind: 'unsupported' });
    } finally {
      memory.close();
    }
  });

  test('hostile tables: an entry pointing outside RAM reads as not present', () => {
    const { memory, sregs } = pagedMemory();
    try {
      memory.writeU64(0x2000 + 8, 0xf_ffff_f000n | P | RW); // PDPT[1] → a table far past RAM
      expect(walkLinear(memory, sregs, 0x40000000n, 'read')).toEqual({ kind: 'page-fault', address: 0x40000000n, errorCode: 0 });
      memory.writeU64(0x4000 + 0x13 * 8, 0x000f_ffff_ffff_f000n | P | RW); // a leaf frame far past RAM
      expect(readGuestLinear(memory, sregs, 0x13000n, 4)).toMatchObject({ kind: 'page-fault', errorCode: PF_PRESENT });
      sregs.cr3 = 0x7fff_ffff_f000n;
      expect(walkLinear(memory, sregs, 0x10000n, 'read')).toMatchObject({ kind: 'page-fault' });
    } finally {
      memory.close();
    }
  });

  test('a write across a page boundary is all or nothing', () => {
    const { memory, sregs } = pagedMemory();
    try {
      memory.fill(0x10ff0, 16, 0xaa);
      const r = writeGuestLinear(memory, sregs, 0x10ffcn, Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8));
      expect(r).toEqual({ kind: 'page-fault', address: 0x11000n, errorCode: PF_PRESENT | PF_WRITE });
      expect([...memory.slice(0x10ffc, 4)]).toEqual([0xaa, 0xaa, 0xaa, 0xaa]);
      expect(writeGuestLinear(memory, sregs, 0x10ff8n, Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8))).toEqual({ kind: 'ok', value: true });
      expect(readGuestLinear(memory, sregs, 0x10ffcn, 8)).toMatchObject({ kind: 'ok' });
      expect([...(readGuestLinear(memory, sregs, 0x10ff8n, 4) as { value: Uint8Array }).value]).toEqual([1, 2, 3, 4]);
    } finally {
      memory.close();
    }
  });
});

// as(1) output for (long mode, CPL0, guest at 0x8000):
//   mov %cr4,%rax ; or $0x40000,%rax ; mov %rax,%cr4          CR4.OSXSAVE
//   xor %ecx,%ecx ; mov $7,%eax ; xor %edx,%edx ; xsetbv      XCR0 = x87|SSE|AVX
//   xor %ecx,%ecx ; xgetbv ; mov %eax,%r8d                    R8 = XCR0
//   mov $0xa000,%edi ; mov $-1,%eax ; mov $-1,%edx ; xsave64 (%rdi) ; mov 0x200(%rdi),%r9
//   movl $0x1f00,0x18(%rdi)                                   MXCSR in the image
//   movabs $0x1234567890abcdef,%rax ; mov %rax,0xa0(%rdi)     XMM0 low half in the image
//   orq $0x2,0x200(%rdi)                                      XSTATE_BV.SSE
//   mov $-1,%eax ; mov $-1,%edx ; xrstor64 (%rdi)
//   stmxcsr 0xb000 ; mov 0xb000,%r10d                         R10 = MXCSR
//   mov $0xc000,%edi ; mov $-1,%eax ; mov $-1,%edx ; xsaveopt64 (%rdi) ; mov 0xa0(%rdi),%r11
//   mov $0xfe,%al ; out %al,$0x64 ; hlt
const GUEST = [
  0x0f, 0x20, 0xe0, 0x48, 0x0d, 0x00, 0x00, 0x04, 0x00, 0x0f, 0x22, 0xe0,
  0x31, 0xc9, 0xb8, 0x07, 0x00, 0x00, 0x00, 0x31, 0xd2, 0x0f, 0x01, 0xd1,
  0x31, 0xc9, 0x0f, 0x01, 0xd0, 0x41, 0x89, 0xc0,
  0xbf, 0x00, 0xa0, 0x00, 0x00, 0xb8, 0xff, 0xff, 0xff, 0xff, 0xba, 0xff, 0xff, 0xff, 0xff,
  0x48, 0x0f, 0xae, 0x27, 0x4c, 0x8b, 0x8f, 0x00, 0x02, 0x00, 0x00,
  0xc7, 0x47, 0x18, 0x00, 0x1f, 0x00, 0x00,
  0x48, 0xb8, 0xef, 0xcd, 0xab, 0x90, 0x78, 0x56, 0x34, 0x12, 0x48, 0x89, 0x87, 0xa0, 0x00, 0x00, 0x00,
  0x48, 0x83, 0x8f, 0x00, 0x02, 0x00, 0x00, 0x02,
  0xb8, 0xff, 0xff, 0xff, 0xff, 0xba, 0xff, 0xff, 0xff, 0xff, 0x48, 0x0f, 0xae, 0x2f,
  0x0f, 0xae, 0x1c, 0x25, 0x00, 0xb0, 0x00, 0x00, 0x44, 0x8b, 0x14, 0x25, 0x00, 0xb0, 0x00, 0x00,
  0xbf, 0x00, 0xc0, 0x00, 0x00, 0xb8, 0xff, 0xff, 0xff, 0xff, 0xba, 0xff, 0xff, 0xff, 0xff,
  0x48, 0x0f, 0xae, 0x37, 0x4c, 0x8b, 0x9f, 0xa0, 0x00, 0x00, 0x00,
  0xb0, 0xfe, 0xe6, 0x64, 0xf4,
];
/** Offsets in GUEST: `xsave64 (%rdi)`, `orq $0x2,0x200(%rdi)` (8 bytes), `xsaveopt64 (%rdi)`. */
const XSAVE_AT = 0x2f;
const SET_SSE_AT = 0x52;
const XSAVEOPT_AT = 0x87;
const XSAVEC64_RDI = [0x48, 0x0f, 0xc7, 0x27];

function runGuest(code: number[]) {
  const machine = SyncMachine.create({ memory: '2M', platform: 'pc' });
  machine.loadBinary(Uint8Array.from(code), 0x8000);
  machine.setMode('long', { entry: 0x8000 });
  return { machine, stop: machine.runSync() };
}

describe('xsave / xrstor / xsaveopt / xgetbv in a real guest at CPL0', () => {
  test('state moves between the guest area and the vCPU as on hardware', () => {
    const { machine, stop } = runGuest(GUEST);
    try {
      expect(stop).toMatchObject({ kind: 'reset' });
      const regs = machine.vcpu.getRegs();
      expect(regs.r8).toBe(7n); // XCR0 as set by xsetbv
      expect(machine.vcpu.getXcr0()).toBe(7n);
      expect(regs.r9 & ~7n).toBe(0n); // XSTATE_BV only names enabled components
      expect(regs.r10).toBe(0x1f00n); // MXCSR loaded by xrstor
      expect(regs.r11).toBe(0x1234567890abcdefn); // XMM0 loaded by xrstor, saved by xsaveopt
      const area = machine.vcpu.getXsave();
      expect(new DataView(area.buffer).getBigUint64(160, true)).toBe(0x1234567890abcdefn);
      expect(machine.memory.readU64(0xc000 + 512) & 2n).toBe(2n);
    } finally {
      machine.close();
    }
  });

  test('xrstor of a header with a component outside XCR0 raises #GP (no IDT here: triple fault)', () => {
    const code = [...GUEST];
    code[SET_SSE_AT + 7] = 0x08; // orq $0x8: XSTATE_BV bit 3, not in XCR0
    const { machine, stop } = runGuest(code);
    try {
      expect(stop).toMatchObject({ kind: 'error', reason: 'triple fault' });
      expect(machine.vcpu.getRegs().r10).toBe(0n); // never got past the xrstor
    } finally {
      machine.close();
    }
  });

  test('xsavec writes the compacted format and xrstor reads it back', () => {
    const code = [...GUEST];
    code.splice(XSAVE_AT, 4, ...XSAVEC64_RDI); // the first save is compacted: xrstor takes the compacted form
    code.splice(XSAVEOPT_AT, 4, ...XSAVEC64_RDI); // and so is the last
    const { machine, stop } = runGuest(code);
    try {
      expect(stop).toMatchObject({ kind: 'reset' });
      const regs = machine.vcpu.getRegs();
      expect(machine.memory.readU64(0xa000 + 520)).toBe((1n << 63n) | 7n); // XCOMP_BV = compacted | RFBM
      expect(regs.r10).toBe(0x1f00n);
      expect(regs.r11).toBe(0x1234567890abcdefn);
      expect(machine.memory.readU64(0xc000 + 520)).toBe((1n << 63n) | 7n);
      expect(machine.memory.readU64(0xc000 + 512)).toBe(7n);
    } finally {
      machine.close();
    }
  });

  test('a compacted xrstor whose XSTATE_BV names components outside XCOMP_BV raises #GP', () => {
    const code = [...GUEST];
    // orb $0x80,0x20f(%rdi) ; nop: XCOMP_BV = bit 63 only, while xsave set XSTATE_BV = 7.
    code.splice(SET_SSE_AT, 8, 0x80, 0x8f, 0x0f, 0x02, 0x00, 0x00, 0x80, 0x90);
    const { machine, stop } = runGuest(code);
    try {
      expect(stop).toMatchObject({ kind: 'error', reason: 'triple fault' });
      expect(machine.vcpu.getRegs().r10).toBe(0n);
    } finally {
      machine.close();
    }
  });
});
