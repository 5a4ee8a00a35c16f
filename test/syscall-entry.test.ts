// SYSCALL from CPL 3 on the real /dev/kvm, with tskvm's fix-up for KVMs whose
// SYSCALL leaves the vCPU at CPL 3 (src/arch/x86/syscall-entry.ts).
import { SyncMachine } from '../src';
import { Kvm } from '../src/kvm/kvm';
import { noOpLength, probeSyscallEntry, setupUserModeTestbed, TESTBED } from '../src/arch/x86/syscall-entry';

// as(1) output. Syscall entry (CPL 0): swapgs; mov %edi,%eax; out %al,$0xe9;
// cmp $7,%edi; je 1f; lea 100(%rdi),%eax; swapgs; sysretq; 1: hlt
const SYSCALL_ENTRY = Uint8Array.of(0x0f, 0x01, 0xf8, 0x89, 0xf8, 0xe6, 0xe9, 0x83, 0xff, 0x07, 0x74, 0x09, 0x8d, 0x47, 0x64, 0x0f, 0x01, 0xf8, 0x48, 0x0f, 0x07, 0xf4);
// User code (CPL 3): mov $42,%edi; syscall; mov %eax,%edi; syscall; mov $7,%edi; syscall
const USER = Uint8Array.of(0xbf, 0x2a, 0x00, 0x00, 0x00, 0x0f, 0x05, 0x89, 0xc7, 0x0f, 0x05, 0xbf, 0x07, 0x00, 0x00, 0x00, 0x0f, 0x05);
// Page-fault handler: nopl (%rax) (Linux starts its handler with a no-op too); out %al,$0x80; hlt
const PAGE_FAULT_HANDLER = Uint8Array.of(0x0f, 0x1f, 0x00, 0xe6, 0x80, 0xf4);

function run(fixup: boolean, user: Uint8Array = USER, pageFaultHandler: Uint8Array = PAGE_FAULT_HANDLER) {
  const machine = SyncMachine.create({ memory: '2M' });
  try {
    const console_: number[] = [];
    machine.setConsoleSink((b) => console_.push(b));
    setupUserModeTestbed(machine.vcpu, machine.memory, { syscallEntry: SYSCALL_ENTRY, pageFaultHandler, user });
    if (fixup) machine.enableSyscallEntryFixup();
    const stop = machine.runSync();
    return { stop, console_, rip: machine.vcpu.getRegs().rip, workarounds: machine.statistics().workarounds };
  } finally {
    machine.close();
  }
}

test('the probe tells whether SYSCALL reaches CPL 0, and the testbed agrees', () => {
  const kvm = Kvm.open();
  let behaviour;
  try {
    behaviour = probeSyscallEntry(kvm);
  } finally {
    kvm.close();
  }
  const plain = run(false);
  if (behaviour === 'architectural') {
    expect(plain.console_).toEqual([42, 142, 7]);
  } else {
    // The first SYSCALL faults at CPL 3 on the supervisor page: the page-fault handler halts.
    expect(plain.console_).toEqual([]);
    expect(plain.rip).toBe(BigInt(TESTBED.pageFaultHandler + PAGE_FAULT_HANDLER.length));
  }
});

test('with the fix-up, three syscalls run their CPL 0 entry and SYSRET back', () => {
  const r = run(true);
  expect(r.stop.kind).toBe('halt');
  // 42, then the first call's return value 42 + 100, then 7 which halts in the entry.
  expect(r.console_).toEqual([42, 142, 7]);
  expect(r.rip).toBe(BigInt(TESTBED.syscallEntry + SYSCALL_ENTRY.length));
  const kvm = Kvm.open();
  try {
    if (probeSyscallEntry(kvm) === 'stays-in-user-mode') expect(r.workarounds['syscall entry']).toBe(3);
  } finally {
    kvm.close();
  }
});

// mov 0x4000,%eax: a CPL 3 read of the supervisor-only page.
const READ_SUPERVISOR_PAGE = Uint8Array.of(0x8b, 0x04, 0x25, 0x00, 0x40, 0x00, 0x00);

test.each([
  ['a no-op first instruction (skipped)', PAGE_FAULT_HANDLER],
  // mov $1,%eax; out %al,$0x80; hlt — not a no-op: the breakpoint is single-stepped over.
  ['another first instruction (single-stepped)', Uint8Array.of(0xb8, 0x01, 0x00, 0x00, 0x00, 0xe6, 0x80, 0xf4)],
])('with the fix-up, a genuine page fault from user mode reaches the guest handler: %s', (_name, handler) => {
  const r = run(true, READ_SUPERVISOR_PAGE, handler);
  expect(r.stop.kind).toBe('halt');
  expect(r.rip).toBe(BigInt(TESTBED.pageFaultHandler + handler.length));
  expect(r.workarounds['syscall entry'] ?? 0).toBe(0);
});

test('noOpLength knows nop, endbr64 and nopl forms, and nothing else', () => {
  expect(noOpLength(Uint8Array.of(0x90))).toBe(1);
  expect(noOpLength(Uint8Array.of(0x66, 0x90))).toBe(2);
  expect(noOpLength(Uint8Array.of(0xf3, 0x0f, 0x1e, 0xfa))).toBe(4);
  expect(noOpLength(Uint8Array.of(0x0f, 0x1f, 0x00))).toBe(3);
  expect(noOpLength(Uint8Array.of(0x0f, 0x1f, 0x44, 0x00, 0x00))).toBe(5);
  expect(noOpLength(Uint8Array.of(0x66, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00))).toBe(9);
  expect(noOpLength(Uint8Array.of(0x0f, 0x01, 0xca))).toBe(0); // clac
  expect(noOpLength(Uint8Array.of(0x0f, 0x1f))).toBe(0); // truncated
  expect(noOpLength(new Uint8Array(0))).toBe(0);
});
