import type { AccessSize } from '../src/bus/bus';
import { PioBus } from '../src/bus/bus';
import { DebugConsole, DEBUGCON_READBACK } from '../src/devices/debug-console';
import { DebugPort } from '../src/devices/debug-port';
import { IrqLevel } from '../src/devices/irq';

describe('DebugPort (0x80)', () => {
  it('records the last POST code and counts writes', () => {
    const seen: number[] = [];
    const port = new DebugPort({ onWrite: (v) => seen.push(v) });
    const bus = new PioBus();
    bus.register(0x80, 1, port);
    expect(bus.read(0x80, 1)).toBe(0);
    bus.write(0x80, 1, 0x12);
    bus.write(0x80, 1, 0xab);
    expect(port.lastValue).toBe(0xab);
    expect(port.writes).toBe(2);
    expect(seen).toEqual([0x12, 0xab]);
    expect(bus.read(0x80, 1)).toBe(0xab);
    // A 16-bit access at 0x80 also covers 0x81, which is not ours: the bus does not deliver it.
    bus.write(0x80, 2, 0x1234);
    expect(port.writes).toBe(2);
  });

  it('masks wide direct writes to their size', () => {
    const port = new DebugPort();
    port.write(0, 2, 0x123456);
    expect(port.lastValue).toBe(0x3456);
    port.write(0, 4, -1);
    expect(port.lastValue).toBe(0xffffffff);
    port.write(1, 1, 0x55); // not our offset
    expect(port.writes).toBe(2);
  });
});

describe('DebugConsole (0xE9)', () => {
  it('passes bytes to onOutput and reads back 0xE9', () => {
    const out: number[] = [];
    const con = new DebugConsole({ onOutput: (b) => out.push(b) });
    const bus = new PioBus();
    bus.register(0xe9, 1, con);
    for (const c of 'ok\n') bus.write(0xe9, 1, c.charCodeAt(0));
    expect(String.fromCharCode(...out)).toBe('ok\n');
    expect(bus.read(0xe9, 1)).toBe(DEBUGCON_READBACK);
    expect(con.bytesWritten).toBe(3);
  });

  it('uses the low byte of wider writes and a configurable readback', () => {
    const out: number[] = [];
    const con = new DebugConsole({ onOutput: (b) => out.push(b), readback: 0x1e9 });
    con.write(0, 4, 0x41424344);
    expect(out).toEqual([0x44]);
    expect(con.read(0, 1)).toBe(0xe9);
  });
});

describe('IrqLevel', () => {
  it('calls the line only on level changes and counts rising edges', () => {
    const calls: boolean[] = [];
    const l = new IrqLevel((v) => calls.push(v));
    l.set(false);
    l.set(true);
    l.set(true);
    l.lower();
    l.set(true);
    expect(calls).toEqual([true, false, true]);
    expect(l.raised).toBe(2);
    expect(l.level).toBe(true);
  });
});

describe('debug ports, hostile guest', () => {
  it('never throws and keeps reads within the access size', () => {
    let seed = 7;
    const rand = (): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed;
    };
    const devs = [new DebugPort(), new DebugConsole()];
    const sizes: AccessSize[] = [1, 2, 4];
    const weird = [NaN, -1, Infinity, 1.5, 2 ** 60];
    for (let i = 0; i < 3000; i++) {
      const dev = devs[rand() & 1];
      const size = sizes[rand() % 3];
      const offset = rand() % 5 === 0 ? weird[rand() % weird.length] : rand() % 3;
      if (rand() & 1) {
        expect(() => dev.write(offset, size, rand() % 7 === 0 ? weird[rand() % weird.length] : rand())).not.toThrow();
      } else {
        const v = dev.read(offset, size);
        expect(Number.isInteger(v)).toBe(true);
        expect(v).toBeGreaterThanOrEqual(0);
        expect(v).toBeLessThan(2 ** (8 * size));
      }
    }
  });
});
