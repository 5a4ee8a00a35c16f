// Emulation-failure workarounds, on the real /dev/kvm: a long-mode guest runs
// instructions that KVM's instruction emulator on our nested machines cannot
// execute at CPL0 (DESIGN.md); tskvm's 'pc' platform produces their effect.
// The guest ends by pulsing the reset line through the i8042 (out 0xfe, 0x64).
import { SyncMachine } from '../src';
import { EMULATOR_CLEARCPUID, CLEARCPUID_MAX_LENGTH, emulatorClockSwitches, linuxEmulatorCmdline, probeCpuidEnforcement } from '../src/arch/x86/cpuid-probe';
import { Kvm } from '../src/kvm/kvm';

// as(1) output for:
//   mov $0x9000,%rsp ; movl $0x7f80,(%rsp) ; ldmxcsr (%rsp) ; stmxcsr 8(%rsp) ; mov 8(%rsp),%ebx
//   fwait ; stac ; pushf ; pop %rcx ; clac ; pushf ; pop %rdx ; mov $0xfe,%al ; out %al,$0x64 ; hlt
const GUEST = [
  0x48, 0xc7, 0xc4, 0x00, 0x90, 0x00, 0x00,
  0xc7, 0x04, 0x24, 0x80, 0x7f, 0x00, 0x00,
  0x0f, 0xae, 0x14, 0x24,
  0x0f, 0xae, 0x5c, 0x24, 0x08,
  0x8b, 0x5c, 0x24, 0x08,
  0x9b,
  0x0f, 0x01, 0xcb,
  0x9c, 0x59,
  0x0f, 0x01, 0xca,
  0x9c, 0x5a,
  0xb0, 0xfe, 0xe6, 0x64, 0xf4,
];
const RFLAGS_AC = 1n << 18n;

test('ldmxcsr/stmxcsr, fwait, stac/clac run to completion with the right effects', () => {
  const machine = SyncMachine.create({ memory: '2M', platform: 'pc' });
  try {
    const logs: string[] = [];
    machine.on('log', (l) => logs.push(l));
    machine.loadBinary(Uint8Array.from(GUEST), 0x8000);
    machine.setMode('long', { entry: 0x8000 });
    const stop = machine.runSync();
    expect(stop).toMatchObject({ kind: 'reset' });
    const regs = machine.vcpu.getRegs();
    expect(machine.vcpu.getMxcsr()).toBe(0x7f80);
    expect(regs.rbx & 0xffffffffn).toBe(0x7f80n);
    expect(regs.rcx & RFLAGS_AC).toBe(RFLAGS_AC);
    expect(regs.rdx & RFLAGS_AC).toBe(0n);
    // Each workaround that was needed is logged once and counted. Which ones
    // fire depends on the host's emulator; whatever fired must be named.
    const counts = machine.statistics().workarounds;
    for (const name of Object.keys(counts)) expect(logs.some((l) => l.includes(name))).toBe(true);
  } finally {
    machine.close();
  }
});

test('stmxcsr to an address the page tables do not map raises #PF with CR2 (no IDT here: triple fault)', () => {
  const machine = SyncMachine.create({ memory: '2M', platform: 'pc' });
  try {
    // movabs $0x100000000,%rax ; stmxcsr (%rax) ; mov $0xfe,%al ; out %al,$0x64 ; hlt
    // The long-mode set-up identity-maps the first 4 GiB only.
    machine.loadBinary(Uint8Array.of(0x48, 0xb8, 0, 0, 0, 0, 1, 0, 0, 0, 0x0f, 0xae, 0x18, 0xb0, 0xfe, 0xe6, 0x64, 0xf4), 0x8000);
    machine.setMode('long', { entry: 0x8000 });
    const stop = machine.runSync();
    expect(stop).toMatchObject({ kind: 'error', reason: 'triple fault' });
    expect(machine.vcpu.getSregs().cr2).toBe(0x100000000n);
  } finally {
    machine.close();
  }
});

test('an instruction no workaround knows still stops with a report (movd %ecx,%xmm15)', () => {
  const machine = SyncMachine.create({ memory: '2M', platform: 'pc' });
  try {
    machine.loadBinary(Uint8Array.of(0x66, 0x44, 0x0f, 0x6e, 0xf9, 0xb0, 0xfe, 0xe6, 0x64), 0x8000);
    machine.setMode('long', { entry: 0x8000 });
    const stop = machine.runSync();
    if (stop.kind === 'error') {
      expect(stop.reason).toBe('emulation failure');
      expect(Array.from(stop.report?.instructionBytes?.slice(0, 5) ?? [])).toEqual([0x66, 0x44, 0x0f, 0x6e, 0xf9]);
    } else {
      // A KVM whose emulator (or hardware) runs movd: the guest reaches its reset.
      expect(stop.kind).toBe('reset');
    }
  } finally {
    machine.close();
  }
});

describe('CPUID probe and the kernel switches', () => {
  test('the probe runs a guest and answers consistently', () => {
    const kvm = Kvm.open();
    try {
      const r = probeCpuidEnforcement(kvm);
      expect(typeof r.honored).toBe('boolean');
      // Not honored means the guest saw a masked bit set.
      if (!r.honored) expect(r.guestEcx & ~r.setEcx).not.toBe(0);
    } finally {
      kvm.close();
    }
  });

  test('the clearcpuid list fits the kernel buffer and names no feature twice', () => {
    const value = EMULATOR_CLEARCPUID.join(',');
    expect(value.length).toBeLessThanOrEqual(CLEARCPUID_MAX_LENGTH);
    expect(new Set(EMULATOR_CLEARCPUID).size).toBe(EMULATOR_CLEARCPUID.length);
    expect(linuxEmulatorCmdline()).toBe(
      `noxsaves clearcpuid=${value} cryptomgr.notests initcall_blacklist=ftrace_check_for_weak_functions,tracer_init_tracefs,trace_eval_init init_on_alloc=0 nowatchdog`,
    );
  });

  test("a switch the user set is not added again, so the user's value counts", () => {
    const added = linuxEmulatorCmdline('console=ttyS0  init_on_alloc=1 nowatchdog clearcpuid=pku initcall_blacklist=foo');
    expect(added.split(' ')).not.toContain('init_on_alloc=0');
    expect(added.split(' ')).not.toContain('nowatchdog');
    expect(added).not.toContain('clearcpuid=');
    // initcall_blacklist= adds to a list: ours is added as well.
    expect(added).toContain('initcall_blacklist=ftrace_check_for_weak_functions');
    expect(added).toContain('noxsaves');
    // A switch whose name only starts like one of ours does not count.
    expect(linuxEmulatorCmdline('init_on_alloc_x=1 nowatchdogs')).toContain('init_on_alloc=0 nowatchdog');
    expect(linuxEmulatorCmdline('')).toBe(linuxEmulatorCmdline());
  });

  test('with the TSC frequency the guest keeps time on the TSC instead of kvm-clock', () => {
    expect(emulatorClockSwitches(2445406)).toEqual(['no-kvmclock', 'tsc=reliable', 'tsc_early_khz=2445406']);
    expect(linuxEmulatorCmdline('console=ttyS0', { tscKhz: 2445406 })).toBe(`${linuxEmulatorCmdline('console=ttyS0')} no-kvmclock tsc=reliable tsc_early_khz=2445406`);
    // Unknown frequency: no clock switches (Linux would calibrate the TSC in emulated loops).
    expect(linuxEmulatorCmdline('', { tscKhz: 0 })).not.toContain('kvmclock');
    expect(linuxEmulatorCmdline('', {})).not.toContain('tsc=');
    // A user who picks the clock keeps it, all three switches stay out.
    for (const choice of ['clocksource=kvm-clock', 'no-kvmclock', 'tsc=unstable']) {
      const added = linuxEmulatorCmdline(`console=ttyS0 ${choice}`, { tscKhz: 2445406 });
      expect(added).not.toContain('tsc_early_khz');
      expect(added).not.toContain('tsc=reliable');
    }
  });
});
