// The debugger's side of the vCPU (src/vmm/debug-target.ts) and the shared
// debug registers (src/arch/x86/debug-registers.ts): the register merging
// without KVM, then breakpoints and single-step on the real /dev/kvm,
// together with the SYSCALL fix-up that uses the same registers.
import { SyncMachine } from '../src';
import { GuestDebugRegisters, DR6_BS } from '../src/arch/x86/debug-registers';
import { GuestDebug } from '../src/kvm/constants';
import type { Vcpu } from '../src/kvm/vcpu';
import type { GuestDebug as GuestDebugState } from '../src/kvm/structs/guest-debug';
import { DebugTarget } from '../src/vmm/debug-target';
import { setupUserModeTestbed, TESTBED } from '../src/arch/x86/syscall-entry';
import * as fs from 'fs';
import { exampleGuest } from './helpers/paths';

function fakeVcpu(): { vcpu: Vcpu; last: () => GuestDebugState } {
  const calls: GuestDebugState[] = [];
  const vcpu = { setGuestDebug: (d: GuestDebugState) => calls.push(d) } as unknown as Vcpu;
  return { vcpu, last: () => calls[calls.length - 1]! };
}

describe('GuestDebugRegisters', () => {
  it('merges owners into DR0-DR3 and DR7 enable bits (SDM 17.2.4), with single-step', () => {
    const { vcpu, last } = fakeVcpu();
    const regs = new GuestDebugRegisters(vcpu);
    expect(regs.update('a', { breakpoints: [0x1000n, 0x2000n] })).toBe(true);
    expect(last().control).toBe(GuestDebug.ENABLE | GuestDebug.USE_HW_BP);
    expect(last().debugreg).toEqual([0x1000n, 0x2000n, 0n, 0n, 0n, 0n, 0n, 0b0101n]);
    expect(regs.update('b', { breakpoints: [0x3000n], singleStep: true })).toBe(true);
    expect(last().control).toBe(GuestDebug.ENABLE | GuestDebug.USE_HW_BP | GuestDebug.SINGLESTEP);
    expect(last().debugreg.slice(0, 4)).toEqual([0x1000n, 0x2000n, 0x3000n, 0n]);
    expect(last().debugreg[7]).toBe(0b010101n);
    // DR6 B2 is b's breakpoint; B0|B1 are a's.
    expect(regs.ownersHit(0xffff0ff4n)).toEqual(['b']);
    expect(regs.ownersHit(0xffff0ff3n)).toEqual(['a']);
    expect(regs.ownersHit(0xffff0ff0n | DR6_BS)).toEqual([]);
    // a drops 0x1000 and keeps 0x2000 where it was (no DR moves).
    regs.update('a', { breakpoints: [0x2000n] });
    expect(last().debugreg.slice(0, 4)).toEqual([0n, 0x2000n, 0x3000n, 0n]);
    regs.update('a', { breakpoints: [] });
    regs.update('b', { breakpoints: [], singleStep: false });
    expect(last()).toEqual({ control: 0, debugreg: [0n, 0n, 0n, 0n, 0n, 0n, 0n, 0n] });
  });

  it('refuses what does not fit, keeping reserved registers for their owner', () => {
    const { vcpu, last } = fakeVcpu();
    const regs = new GuestDebugRegisters(vcpu);
    regs.reserve('fixup', 1);
    expect(regs.available('debugger')).toBe(3);
    expect(regs.update('debugger', { breakpoints: [1n, 2n, 3n, 4n] })).toBe(false);
    expect(regs.update('debugger', { breakpoints: [1n, 2n, 3n] })).toBe(true);
    const before = last();
    expect(regs.update('debugger', { breakpoints: [1n, 2n, 3n, 4n] })).toBe(false);
    expect(last()).toBe(before); // nothing changed, nothing loaded
    expect(regs.update('fixup', { breakpoints: [0xffffffff81c00be0n] })).toBe(true);
    expect(regs.breakpointsOf('fixup')).toEqual([0xffffffff81c00be0n]);
    expect(regs.available('debugger')).toBe(0);
  });
});

describe('DebugTarget on /dev/kvm', () => {
  /** Runs `machine` with a debugger that records each stop and then does what `next` says. */
  function runDebugged(machine: SyncMachine, target: DebugTarget, next: (stops: string[]) => 'step' | 'continue') {
    const stops: string[] = [];
    const onStop = (reason: string): void => {
      stops.push(`${reason}@0x${target.pc().toString(16)}`);
      target.resume(next(stops));
    };
    const stop = machine.runSync({
      afterExit: () => {
        const outcome = target.stepping ? target.afterExitWhileStepping() : undefined;
        if (outcome && outcome !== 'handled') onStop(outcome);
      },
      onDebug: (exit) => {
        const outcome = target.onDebugExit(exit);
        if (outcome === undefined) return false;
        if (outcome !== 'handled') onStop(outcome);
        return true;
      },
    });
    return { stop, stops };
  }

  it('stops on a breakpoint, steps off it, and steps over OUT to the very next instruction', () => {
    const machine = SyncMachine.create({ memory: '2M' });
    try {
      let output = '';
      machine.setConsoleSink((b) => (output += String.fromCharCode(b)));
      machine.loadBinary(fs.readFileSync(exampleGuest('03-long-mode-serial')), 0x8000);
      machine.setMode('long', { entry: 0x8000 });
      const target = new DebugTarget(machine.vcpu, machine.memory, machine.debugRegisters);
      // putc's `out %al,(%dx)` at 0x8076 (see examples/03-long-mode-serial/guest.S).
      target.insertBreakpoint(0x8076n);
      target.resume('continue');
      const { stop, stops } = runDebugged(machine, target, (s) => (s.length === 1 ? 'step' : s.length === 2 ? 'continue' : (target.removeBreakpoint(0x8076n), 'continue')));
      expect(stop.kind).toBe('halt');
      // The step over the OUT (whose trap KVM's emulator drops) ends on the `ret` right after it.
      expect(stops.slice(0, 3)).toEqual(['breakpoint@0x8076', 'step@0x8077', 'breakpoint@0x8076']);
      expect(output).toBe('Hello from 64-bit long mode!\n');
      expect(machine.vcpu.getRegs().rbx).toBe(6765n);
    } finally {
      machine.close();
    }
  });

  it('shares the debug registers with the SYSCALL fix-up: both get their own exits', () => {
    // The testbed and programs of test/syscall-entry.test.ts: three syscalls from CPL 3.
    const SYSCALL_ENTRY = Uint8Array.of(0x0f, 0x01, 0xf8, 0x89, 0xf8, 0xe6, 0xe9, 0x83, 0xff, 0x07, 0x74, 0x09, 0x8d, 0x47, 0x64, 0x0f, 0x01, 0xf8, 0x48, 0x0f, 0x07, 0xf4);
    const USER = Uint8Array.of(0xbf, 0x2a, 0x00, 0x00, 0x00, 0x0f, 0x05, 0x89, 0xc7, 0x0f, 0x05, 0xbf, 0x07, 0x00, 0x00, 0x00, 0x0f, 0x05);
    const PAGE_FAULT_HANDLER = Uint8Array.of(0x0f, 0x1f, 0x00, 0xe6, 0x80, 0xf4);
    const machine = SyncMachine.create({ memory: '2M' });
    try {
      const output: number[] = [];
      machine.setConsoleSink((b) => output.push(b));
      setupUserModeTestbed(machine.vcpu, machine.memory, { syscallEntry: SYSCALL_ENTRY, pageFaultHandler: PAGE_FAULT_HANDLER, user: USER });
      machine.enableSyscallEntryFixup();
      const target = new DebugTarget(machine.vcpu, machine.memory, machine.debugRegisters);
      // `mov %edi,%eax` in the CPL 0 entry, reached by every syscall.
      target.insertBreakpoint(BigInt(TESTBED.syscallEntry + 3));
      target.insertBreakpoint(0x100000n);
      target.insertBreakpoint(0x100001n);
      // The fix-up keeps one of the four registers.
      expect(() => target.insertBreakpoint(0x100002n)).toThrow(expect.objectContaining({ code: 'ENOSPC' }));
      target.resume('continue');
      const { stop, stops } = runDebugged(machine, target, (s) => (s.length < 3 ? 'step' : 'continue'));
      expect(stop.kind).toBe('halt');
      expect(output).toEqual([42, 142, 7]);
      expect(stops).toEqual([
        `breakpoint@0x${(TESTBED.syscallEntry + 3).toString(16)}`,
        `step@0x${(TESTBED.syscallEntry + 5).toString(16)}`,
        `step@0x${(TESTBED.syscallEntry + 7).toString(16)}`, // over `out %al,$0xe9`
        `breakpoint@0x${(TESTBED.syscallEntry + 3).toString(16)}`,
        `breakpoint@0x${(TESTBED.syscallEntry + 3).toString(16)}`,
      ]);
      const fixed = machine.statistics().workarounds['syscall entry'];
      // On a KVM whose SYSCALL works there is nothing to fix; here the fix-up finished all three.
      if (fixed !== undefined && fixed > 0) expect(fixed).toBe(3);
    } finally {
      machine.close();
    }
  });
});
