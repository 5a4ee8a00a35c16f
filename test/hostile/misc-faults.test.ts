// Guest faults the VMM cannot continue from (issue 6): each ends the run
// with a structured report (reason, detail, RIP, mode, instruction bytes,
// registers) and, from the CLI, a defined exit code per class
// (src/cli/exit-codes.ts): 2 emulation failure, 3 triple fault, 4 failed VM
// entry, 5 unknown exit reason. Nothing hangs.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { SyncMachine, formatExitReport } from '../../src';
import { runExitLoop, type ExitLoopContext } from '../../src/vmm/exit-loop';
import { decodeExit, RUN } from '../../src/kvm/structs/run';
import { PioBus, MmioBus } from '../../src/bus/bus';
import { exitCodeFor, EXIT_ENTRY_FAILED, EXIT_GUEST_ERROR, EXIT_TRIPLE_FAULT, EXIT_UNKNOWN_EXIT } from '../../src/cli/exit-codes';
import type { Vcpu } from '../../src/kvm/vcpu';
import type { GuestMemory } from '../../src/memory/guest-memory';
import { CLI } from '../helpers/paths';

let tmp: string;
beforeAll(() => (tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tskvm-faults-'))));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function cli(code: number[], args: string[]) {
  const file = path.join(tmp, `guest-${code.map((b) => b.toString(16)).join('')}.bin`);
  fs.writeFileSync(file, Uint8Array.from(code));
  const r = spawnSync(process.execPath, [CLI, 'run-binary', file, ...args], { encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, stderr: r.stderr, signal: r.signal };
}

describe('guest faults from the CLI: a report and a defined exit code', () => {
  it('triple fault (ud2 with no IDT, long mode) exits 3', () => {
    const r = cli([0x0f, 0x0b], ['--mode', 'long']);
    expect(r.status).toBe(EXIT_TRIPLE_FAULT);
    expect(r.stderr).toMatch(/guest stopped: triple fault/);
    expect(r.stderr).toMatch(/vCPU 0 stopped: shutdown \(triple fault/);
    expect(r.stderr).toMatch(/RIP 0x0000000000008000 in 64-bit long mode/);
    expect(r.stderr).toMatch(/instruction bytes: 0f 0b/);
    expect(r.stderr).toMatch(/RAX 0x/);
  });

  it('an instruction the emulator lacks and no workaround covers (lock cmpxchg16b on the pc platform) exits 2', () => {
    // lock cmpxchg16b (%rdi): not in emulation-workarounds.ts (int3, fwait,
    // ldmxcsr/stmxcsr, clac/stac are). RDI = 0: a 16-byte aligned RAM address.
    const r = cli([0x31, 0xff, 0xf0, 0x48, 0x0f, 0xc7, 0x0f, 0xf4], ['--mode', 'long', '--platform', 'pc']);
    expect(r.status).toBe(EXIT_GUEST_ERROR);
    expect(r.stderr).toMatch(/guest stopped: emulation failure/);
    expect(r.stderr).toMatch(/KVM internal error: emulation/);
    expect(r.stderr).toMatch(/RIP 0x0000000000008002 in 64-bit long mode/);
    expect(r.stderr).toMatch(/instruction bytes: f0 48 0f c7 0f/);
  });
});

describe('failed VM entry: KVM_EXIT_FAIL_ENTRY, or KVM_RUN refusing with an errno', () => {
  // This KVM runs guest CPL 0 in its instruction emulator and emulates
  // "invalid" guest state instead of failing the entry (measured: a data
  // segment in CS, TR type 0, CS.L with CS.D, a not-present CS all run;
  // CR0.PG without PE, LMA without PG, a reserved CR4 bit are refused by
  // KVM_SET_SREGS itself). KVM_RUN does fail with EINVAL when kvm_run's
  // kvm_valid_regs asks for sync-register sets KVM does not have (KVM API
  // doc 5, "kvm_valid_regs"): the same path as a refused entry.
  it('KVM_RUN failing with EINVAL becomes a stop with a report, not an exception', () => {
    const machine = SyncMachine.create({ memory: '1M' });
    try {
      machine.loadBinary(Uint8Array.of(0xf4), 0x8000);
      machine.setMode('long', { entry: 0x8000 });
      // kvm_run.kvm_valid_regs (u64 after the 256-byte exit union, offset 288): a bit no KVM defines.
      new DataView(machine.vcpu.runBytes.buffer, machine.vcpu.runBytes.byteOffset).setUint32(288 + 4, 0x80000000, true);
      const stop = machine.runSync();
      expect(stop.kind).toBe('error');
      expect(stop.reason).toBe('VM entry failed');
      expect(stop.report?.reason).toBe('run_failed');
      expect(stop.report?.detail).toMatch(/^KVM_RUN failed: EINVAL/);
      expect(stop.report?.rip).toBe(0x8000n);
      expect(stop.report?.regs).toBeDefined();
      expect(formatExitReport(stop.report!)).toMatch(/RIP 0x0000000000008000 in 64-bit long mode/);
      expect(exitCodeFor(stop)).toBe(EXIT_ENTRY_FAILED);
    } finally {
      machine.close();
    }
  });

  it('a KVM_EXIT_FAIL_ENTRY exit (synthetic kvm_run) is decoded and reported, exit code 4', () => {
    const stop = runSyntheticExit((view) => {
      view.setUint32(RUN.EXIT_REASON, 9, true); // KVM_EXIT_FAIL_ENTRY
      view.setBigUint64(RUN.FAIL_ENTRY_REASON, 0x80000021n, true); // VMX basic exit reason 33 | entry-failure bit: invalid guest state
      view.setUint32(RUN.FAIL_ENTRY_CPU, 1, true);
    });
    expect(stop.kind).toBe('error');
    expect(stop.reason).toBe('VM entry failed');
    expect(stop.report?.detail).toBe('VM entry failed: hardware reason 0x80000021 on CPU 1');
    expect(exitCodeFor(stop)).toBe(EXIT_ENTRY_FAILED);
  });
});

/** Runs the real exit loop over a fake vCPU whose one KVM_RUN leaves `fill`'s exit in a kvm_run page. */
function runSyntheticExit(fill: (view: DataView) => void) {
  const page = new DataView(new ArrayBuffer(4096));
  fill(page);
  const vcpu = {
    id: 0,
    run: () => decodeExit(page),
    getRegs: () => ({ rip: 0x8000n }),
    getSregs: () => {
      throw new Error('no sregs in this fake');
    },
  } as unknown as Vcpu;
  const ctx: ExitLoopContext = { vcpu, memory: {} as GuestMemory, pio: new PioBus(), mmio: new MmioBus() };
  return runExitLoop(ctx);
}

describe('an exit reason tskvm does not know', () => {
  it('is decoded as unknown and stops with a report; exit code 5', () => {
    const stop = runSyntheticExit((view) => {
      view.setUint32(RUN.EXIT_REASON, 0xabcd, true);
      view.setBigUint64(RUN.HW_EXIT_REASON, 0x1234n, true);
    });
    expect(stop.kind).toBe('error');
    expect(stop.reason).toBe('unhandled exit exit reason 43981');
    expect(stop.report?.reason).toBe('unknown');
    expect(stop.report?.detail).toBe('unhandled exit exit reason 43981 (43981), hardware exit reason 0x1234');
    expect(formatExitReport(stop.report!)).toMatch(/^vCPU 0 stopped: unhandled exit/);
    expect(exitCodeFor(stop)).toBe(EXIT_UNKNOWN_EXIT);
  });

  it('a known exit tskvm does not handle (KVM_EXIT_HYPERCALL) is reported the same way', () => {
    const stop = runSyntheticExit((view) => view.setUint32(RUN.EXIT_REASON, 3, true));
    expect(stop.kind).toBe('error');
    expect(stop.report?.reason).toBe('unknown');
    expect(exitCodeFor(stop)).toBe(EXIT_UNKNOWN_EXIT);
  });
});
