// Several vCPUs on the real /dev/kvm: the machine config, the APs' start
// state, and example 06, whose BSP wakes CPU 1 with INIT/SIPI through the
// in-kernel local APIC (the CLI's --cpus/--platform).
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import { MachineConfigError, SyncMachine } from '../src';
import { CLI, exampleGuest } from './helpers/paths';

/** KVM_MP_STATE_* (KVM API doc, KVM_GET_MP_STATE). */
const MP_STATE_RUNNABLE = 0;
const MP_STATE_UNINITIALIZED = 1;
const MP_STATE_HALTED = 3;

const BSP_LINE = /^CPU 0 \(bootstrap processor, 32-bit protected mode\): sending INIT, SIPI, SIPI to APIC id 1$/m;
const AP_LINE = /^hello from CPU 1 \(application processor, started by SIPI in real mode at CS:IP 0900:0000\)$/m;

function tskvm(args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 30000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('SyncMachine with several vCPUs', () => {
  it('creates one vCPU per cpu; the APs wait in UNINITIALIZED for INIT/SIPI', () => {
    const machine = SyncMachine.create({ platform: 'pc', cpus: 2 });
    try {
      expect(machine.vcpus).toHaveLength(2);
      expect(machine.vcpus.map((v) => v.id)).toEqual([0, 1]);
      expect(machine.vcpu).toBe(machine.vcpus[0]);
      expect(machine.vcpus[0]!.getMpState()).toBe(MP_STATE_RUNNABLE);
      expect(machine.vcpus[1]!.getMpState()).toBe(MP_STATE_UNINITIALIZED);
    } finally {
      machine.close();
    }
  });

  it.each([
    ['0 cpus', { platform: 'pc' as const, cpus: 0 }],
    ['9 cpus', { platform: 'pc' as const, cpus: 9 }],
    ['1.5 cpus', { platform: 'pc' as const, cpus: 1.5 }],
    ["2 cpus on 'bare'", { platform: 'bare' as const, cpus: 2 }],
    ['2 cpus with the default platform', { cpus: 2 }],
  ])('refuses %s with a MachineConfigError', (_name, config) => {
    expect(() => SyncMachine.create(config)).toThrow(MachineConfigError);
  });

  it('example 06 in the library: the AP runs, says hello and halts; the BSP powers off', () => {
    const machine = SyncMachine.create({ platform: 'pc', cpus: 2 });
    const output: Buffer[] = [];
    machine.on('output', (data) => output.push(data));
    try {
      machine.loadBinary(fs.readFileSync(exampleGuest('06-smp-wakeup')), 0x8000);
      machine.setMode('protected', { entry: 0x8000 });
      const stop = machine.runSync();
      expect(stop.kind).toBe('poweroff');
      const text = Buffer.concat(output).toString('latin1');
      expect(text).toMatch(BSP_LINE);
      expect(text).toMatch(AP_LINE);
      expect(text.indexOf('hello from CPU 1')).toBeLessThan(text.indexOf('CPU 1 is up'));
      // The AP: real mode (CR0.PE clear), CS = vector << 8 = 0x0900, halted in its `cli; hlt` loop.
      const ap = machine.vcpus[1]!;
      expect(ap.getMpState()).toBe(MP_STATE_HALTED);
      const sregs = ap.getSregs();
      expect(sregs.cr0 & 1n).toBe(0n);
      expect(sregs.cs.selector).toBe(0x0900);
      expect(sregs.cs.base).toBe(0x9000n);
      // The BSP's one write to PM1a_CNT (SLP_TYP S5 | SLP_EN) ended the run.
      expect(machine.statistics().devices['acpi-pm']).toBe(1);
    } finally {
      machine.close();
    }
  });
});

describe('tskvm run-binary --cpus (example 06)', () => {
  it('--cpus 2 wakes CPU 1 and powers off with exit code 0', () => {
    const r = tskvm(['run-binary', exampleGuest('06-smp-wakeup'), '--mode', 'protected', '--cpus', '2']);
    expect(r.stdout).toMatch(BSP_LINE);
    expect(r.stdout).toMatch(AP_LINE);
    expect(r.stdout).toMatch(/^CPU 1 is up$/m);
    expect(r.stdout).not.toMatch(/did not start/);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  // One vCPU: nobody answers the IPIs; the BSP's wait is bounded (2^31 TSC
  // ticks, about a second) and it still ends the run cleanly.
  it.each([
    ['--cpus 1 (bare platform: no APIC; the final HLT ends the run)', ['--cpus', '1']],
    ['--cpus 1 --platform pc (the IPIs go to an APIC id nobody has; ACPI S5 ends the run)', ['--cpus', '1', '--platform', 'pc']],
  ])('%s: reports that CPU 1 did not start, exit code 0', (_name, flags) => {
    const r = tskvm(['run-binary', exampleGuest('06-smp-wakeup'), '--mode', 'protected', ...flags]);
    expect(r.stdout).toMatch(BSP_LINE);
    expect(r.stdout).not.toMatch(/hello from CPU 1/);
    expect(r.stdout).toMatch(/^CPU 1 did not start/m);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  it.each([
    [['--cpus', '0'], /--cpus.*must be an integer from 1 to 8/],
    [['--cpus', '9'], /--cpus.*must be an integer from 1 to 8/],
    [['--cpus', '1.5'], /--cpus.*must be an integer from 1 to 8/],
    [['--cpus', '2', '--platform', 'bare'], /more than one vCPU needs the 'pc' platform/],
    [['--platform', 'smp'], /--platform.*Allowed choices are bare, pc/],
  ])('refuses %j in one sentence with exit code 1', (flags, message) => {
    const r = tskvm(['run-binary', exampleGuest('06-smp-wakeup'), '--mode', 'protected', ...flags]);
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('');
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^tskvm: /);
    expect(lines[0]).toMatch(message);
  });
});
