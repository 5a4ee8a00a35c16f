// Real guests on the real /dev/kvm in all three CPU modes: output and final
// register state.
import * as fs from 'fs';
import { SyncMachine, type CpuMode } from '../src';
import { exampleGuest } from './helpers/paths';
import { runMmioExample } from '../examples/04-mmio-device/run';

function runExample(name: string, mode: CpuMode) {
  const machine = SyncMachine.create({ memory: '2M' });
  const output: Buffer[] = [];
  machine.on('output', (data) => output.push(data));
  try {
    machine.loadBinary(fs.readFileSync(exampleGuest(name)), 0x8000);
    machine.setMode(mode, { entry: 0x8000 });
    const stop = machine.runSync();
    return { stop, text: Buffer.concat(output).toString('latin1'), regs: machine.vcpu.getRegs(), sregs: machine.vcpu.getSregs(), stats: machine.statistics() };
  } finally {
    machine.close();
  }
}

describe('example guests', () => {
  it('01: real mode prints through the debug console port', () => {
    const r = runExample('01-real-mode-hello', 'real');
    expect(r.stop).toEqual({ kind: 'halt', reason: 'hlt' });
    expect(r.text).toBe('Hello from real mode!\n');
    expect(r.regs.rax & 0xffffn).toBe(22n);
    expect(r.regs.rbx & 0xffffn).toBe(0xbeefn);
    expect(r.sregs.cr0 & 1n).toBe(0n); // still real mode
    expect(r.stats.exits['io-out']).toBe(22);
    expect(r.stats.devices.debugcon).toBe(22);
  });

  it('02: 32-bit protected mode computes and prints', () => {
    const r = runExample('02-protected-mode', 'protected');
    expect(r.stop.kind).toBe('halt');
    expect(r.text).toBe('Hello from 32-bit protected mode!\n');
    expect(r.regs.rax & 0xffffffffn).toBe(5050n);
    expect(r.regs.rbx & 0xffffffffn).toBe(0xcafebaben);
    expect(r.regs.rcx & 1n).toBe(1n); // the guest read CR0: PE set
    expect(r.regs.rcx & 0x80000000n).toBe(0n); // paging off
    expect(r.sregs.cs.selector).toBe(0x10);
  });

  it('03: 64-bit long mode prints through the UART and does 64-bit arithmetic', () => {
    const r = runExample('03-long-mode-serial', 'long');
    expect(r.stop.kind).toBe('halt');
    expect(r.text).toBe('Hello from 64-bit long mode!\n');
    expect(r.regs.rax).toBe(0x1122334455667788n);
    expect(r.regs.rbx).toBe(6765n);
    expect(r.regs.rsp).toBe(0x8000n); // calls and returns balanced
    expect(r.sregs.efer & 0x400n).toBe(0x400n); // LMA
    expect(r.sregs.cs.l).toBe(1);
    expect(r.stats.devices.serial8250).toBe(58);
  });

  it('04: a guest drives an MMIO device written in TypeScript', () => {
    const lines: string[] = [];
    const r = runMmioExample({ onOutput: (line) => lines.push(line) });
    expect(r.stop.kind).toBe('halt');
    expect(lines).toHaveLength(10);
    expect(lines[4]).toBe('5! = 120\n');
    expect(lines[9]).toBe('10! = 3628800\n');
    expect(r.regs.rax).toBe(3628800n);
    expect(r.stats.exits['mmio-read']).toBeGreaterThan(0);
    expect(r.stats.exits['mmio-write']).toBeGreaterThan(0);
  });
});

describe('machine resources', () => {
  it('closing a machine releases its mappings', () => {
    const { native } = require('../src/native');
    const before = native.mappingCount();
    for (let i = 0; i < 20; i++) SyncMachine.create({ memory: '1M' }).close();
    expect(native.mappingCount()).toBe(before);
  });

  it('rejects an MMIO device over guest RAM and overlapping devices', () => {
    const machine = SyncMachine.create({ memory: '1M' });
    try {
      const dev = { name: 'dev', read: () => 0, write: () => undefined };
      expect(() => machine.addMmioDevice(0x1000, 0x1000, dev)).toThrow(/overlaps guest RAM/);
      expect(() => machine.addPioDevice(0x3f8, 1, dev)).toThrow(/overlaps serial8250/);
    } finally {
      machine.close();
    }
  });
});
