// Exits the loop cannot continue from become reports, never hangs or crashes;
// devices that throw stop the vCPU with a report; unclaimed accesses are counted.
import { SyncMachine, formatExitReport, type CpuMode } from '../src';

function runCode(code: number[], mode: CpuMode, setup?: (m: SyncMachine) => void) {
  const machine = SyncMachine.create({ memory: '2M' });
  try {
    setup?.(machine);
    machine.loadBinary(Uint8Array.from(code), 0x8000);
    machine.setMode(mode, { entry: 0x8000 });
    const stop = machine.runSync();
    return { stop, stats: machine.statistics(), machine };
  } finally {
    machine.close();
  }
}

describe('exit loop: failures become reports', () => {
  it('an instruction KVM cannot emulate (int3 at CPL0 in long mode) gives an emulation-failure report', () => {
    const { stop } = runCode([0xcc, 0xf4], 'long');
    expect(stop.kind).toBe('error');
    expect(stop.reason).toBe('emulation failure');
    expect(stop.report?.rip).toBe(0x8000n);
    expect(stop.report?.mode).toBe('64-bit long mode');
    expect(stop.report?.instructionBytes?.[0]).toBe(0xcc);
    const text = formatExitReport(stop.report!);
    expect(text).toMatch(/emulation/);
    expect(text).toMatch(/RIP 0x0000000000008000 in 64-bit long mode/);
    expect(text).toMatch(/instruction bytes: cc/);
  });

  it('an exception with no IDT triple-faults into a shutdown report', () => {
    const { stop } = runCode([0x0f, 0x0b], 'long'); // ud2
    expect(stop.kind).toBe('error');
    expect(stop.reason).toBe('triple fault');
    expect(stop.report?.instructionBytes?.slice(0, 2)).toEqual(Uint8Array.from([0x0f, 0x0b]));
  });

  it('a device that throws stops the vCPU with a report instead of killing the VMM', () => {
    // out %al, $0x42 ; hlt
    const { stop } = runCode([0xe6, 0x42, 0xf4], 'real', (m) =>
      m.addPioDevice(0x42, 1, {
        name: 'broken',
        read: () => 0,
        write: () => {
          throw new Error('device exploded');
        },
      }),
    );
    expect(stop.kind).toBe('error');
    expect(stop.reason).toMatch(/device error: device exploded/);
    // KVM has completed the OUT before exiting, so RIP is past the 2-byte instruction.
    expect(stop.report?.rip).toBe(0x8002n);
  });

  it('unclaimed port reads return all ones and are counted', () => {
    // in $0x99, %al ; mov %al, %bl ; in $0x99, %ax ; out %al, $0x98 ; hlt
    const machine = SyncMachine.create({ memory: '1M' });
    try {
      machine.loadBinary(Uint8Array.from([0xe4, 0x99, 0x88, 0xc3, 0xe5, 0x99, 0xe6, 0x98, 0xf4]), 0x8000);
      machine.setMode('real', { entry: 0x8000 });
      expect(machine.runSync().kind).toBe('halt');
      const regs = machine.vcpu.getRegs();
      expect(regs.rbx & 0xffn).toBe(0xffn);
      expect(regs.rax & 0xffffn).toBe(0xffffn);
      expect(machine.statistics().unclaimed).toMatchObject({ 'port reads': 2, 'port writes': 1 });
    } finally {
      machine.close();
    }
  });

  it('unclaimed MMIO reads return all ones (8-byte access split in two)', () => {
    // mov $0xd0000000, %ebx ; mov (%rbx), %rax ; hlt
    const machine = SyncMachine.create({ memory: '1M' });
    try {
      machine.loadBinary(Uint8Array.from([0xbb, 0x00, 0x00, 0x00, 0xd0, 0x48, 0x8b, 0x03, 0xf4]), 0x8000);
      machine.setMode('long', { entry: 0x8000 });
      expect(machine.runSync().kind).toBe('halt');
      expect(machine.vcpu.getRegs().rax).toBe(0xffffffffffffffffn);
      expect(machine.statistics().unclaimed['mmio reads']).toBe(2);
    } finally {
      machine.close();
    }
  });

  it('rep outsb delivers every byte of a multi-count I/O exit in order', () => {
    // real mode: mov $0x8100, %si ; mov $5, %cx ; mov $0xe9, %dx ; rep outsb ; hlt
    const code = [0xbe, 0x00, 0x81, 0xb9, 0x05, 0x00, 0xba, 0xe9, 0x00, 0xf3, 0x6e, 0xf4];
    const machine = SyncMachine.create({ memory: '1M' });
    const out: Buffer[] = [];
    machine.on('output', (d) => out.push(d));
    try {
      machine.loadBinary(Uint8Array.from(code), 0x8000);
      machine.loadBinary(Buffer.from('tskvm'), 0x8100);
      machine.setMode('real', { entry: 0x8000 });
      expect(machine.runSync().kind).toBe('halt');
      expect(Buffer.concat(out).toString()).toBe('tskvm');
    } finally {
      machine.close();
    }
  });

  it('a device can end the run cleanly (requestStop)', () => {
    // 1: out %al, $0x50 ; jmp 1b   — loops forever unless the device stops it
    let machineRef: SyncMachine | undefined;
    const { stop } = runCode([0xe6, 0x50, 0xeb, 0xfc], 'real', (m) => {
      machineRef = m;
      let writes = 0;
      m.addPioDevice(0x50, 1, { name: 'off-switch', read: () => 0, write: () => void (++writes === 100 && machineRef!.requestStop('poweroff', 'off switch')) });
    });
    expect(stop).toEqual({ kind: 'poweroff', reason: 'off switch' });
  });

  it('--trace lines decode port, size, value and RIP', () => {
    const lines: string[] = [];
    const machine = SyncMachine.create({ memory: '1M', trace: (l) => lines.push(l) });
    try {
      machine.loadBinary(Uint8Array.from([0xb0, 0x41, 0xe6, 0xe9, 0xf4]), 0x8000); // mov $'A',%al; out %al,$0xe9; hlt
      machine.setMode('real', { entry: 0x8000 });
      machine.runSync();
    } finally {
      machine.close();
    }
    expect(lines[0]).toBe('vcpu0 io-out port=0xe9 size=1 value=0x41 rip=0x8004');
    expect(lines[1]).toMatch(/^vcpu0 hlt rip=0x8005$/);
  });
});
