import type { AccessSize } from '../src/bus/bus';
import { PioBus } from '../src/bus/bus';
import {
  I8042,
  I8042_CTR_AUXDIS,
  I8042_CTR_AUXINT,
  I8042_CTR_KBDDIS,
  I8042_CTR_KBDINT,
  I8042_STR_AUXDATA,
  I8042_STR_CMD,
  I8042_STR_IBF,
  I8042_STR_OBF,
  I8042_STR_SYS,
  I8042_STR_TIMEOUT,
} from '../src/devices/i8042';

function setup() {
  let resets = 0;
  const irq1: boolean[] = [];
  const irq12: boolean[] = [];
  const a20: boolean[] = [];
  const kbc = new I8042({ onReset: () => resets++, irq1: (l) => irq1.push(l), irq12: (l) => irq12.push(l), onA20: (e) => a20.push(e) });
  const bus = new PioBus();
  bus.register(0x60, 1, kbc.dataPort);
  bus.register(0x64, 1, kbc.commandPort);
  const inb = (port: number): number => bus.read(port, 1);
  const outb = (port: number, v: number): void => bus.write(port, 1, v);
  /** Command with an optional parameter; returns the answer if OBF comes up. */
  const command = (cmd: number, param?: number): number | undefined => {
    outb(0x64, cmd);
    if (param !== undefined) outb(0x60, param);
    return inb(0x64) & I8042_STR_OBF ? inb(0x60) : undefined;
  };
  return { kbc, bus, inb, outb, command, irq1, irq12, a20, resets: () => resets };
}

describe('I8042', () => {
  it('registers as two one-byte devices leaving 0x61-0x63 free', () => {
    const { bus, inb } = setup();
    expect(bus.lookup(0x61)).toBeUndefined();
    expect(inb(0x61)).toBe(0xff);
    const s = inb(0x64);
    expect(s & (I8042_STR_OBF | I8042_STR_IBF)).toBe(0);
    expect(s & I8042_STR_SYS).toBe(I8042_STR_SYS);
  });

  it('answers self test and interface tests', () => {
    const { command } = setup();
    expect(command(0xaa)).toBe(0x55);
    expect(command(0xab)).toBe(0x00);
    expect(command(0xa9)).toBe(0x00);
  });

  it('reads and writes the command byte and sets CMD/SYS status bits', () => {
    const { command, inb, outb } = setup();
    outb(0x64, 0x20);
    expect(inb(0x64) & I8042_STR_CMD).toBe(I8042_STR_CMD);
    expect(inb(0x64) & I8042_STR_OBF).toBe(I8042_STR_OBF);
    const ctr = inb(0x60);
    expect(inb(0x64) & I8042_STR_OBF).toBe(0);
    command(0x60, 0x30);
    expect(inb(0x64) & I8042_STR_CMD).toBe(0); // last write was data
    expect(command(0x20)).toBe(0x30);
    expect(inb(0x64) & I8042_STR_SYS).toBe(0);
    command(0x60, ctr);
    expect(command(0x20)).toBe(ctr);
  });

  it('disables and enables the keyboard and aux ports', () => {
    const { command, kbc } = setup();
    command(0x60, 0);
    command(0xad);
    command(0xa7);
    expect(kbc.commandByte & (I8042_CTR_KBDDIS | I8042_CTR_AUXDIS)).toBe(I8042_CTR_KBDDIS | I8042_CTR_AUXDIS);
    command(0xae);
    expect(command(0x20)).toBe(I8042_CTR_AUXDIS);
    command(0xa8);
    expect(command(0x20)).toBe(0);
  });

  it('pulses reset on 0xFE and on an output-port write with bit 0 clear', () => {
    const { command, outb, resets, kbc } = setup();
    outb(0x64, 0xfe);
    expect(resets()).toBe(1);
    outb(0x64, 0xff); // pulses nothing
    expect(resets()).toBe(1);
    command(0xd1, 0xdf); // bit 0 set: no reset, A20 on
    expect(resets()).toBe(1);
    command(0xd1, 0xdc); // bit 0 clear: reset, A20 off
    expect(resets()).toBe(2);
    expect(kbc.a20Enabled).toBe(false);
    expect(command(0xd0)! & 0x01).toBe(0x01); // the reset line came back up
    expect(kbc.resetCount).toBe(2);
  });

  it('tracks the A20 gate', () => {
    const { command, outb, a20, kbc } = setup();
    outb(0x64, 0xdd);
    expect(kbc.a20Enabled).toBe(false);
    outb(0x64, 0xdf);
    expect(kbc.a20Enabled).toBe(true);
    command(0xd1, 0x01);
    expect(a20).toEqual([false, true, false]);
  });

  it('echoes 0xD2/0xD3 writes from the keyboard/aux side and raises IRQ1/IRQ12', () => {
    const { command, inb, outb, irq1, irq12 } = setup();
    command(0x60, I8042_CTR_KBDINT | I8042_CTR_AUXINT);
    outb(0x64, 0xd3);
    outb(0x60, 0x5a);
    expect(inb(0x64) & (I8042_STR_OBF | I8042_STR_AUXDATA)).toBe(I8042_STR_OBF | I8042_STR_AUXDATA);
    expect(irq12).toEqual([true]);
    expect(inb(0x60)).toBe(0x5a);
    expect(irq12).toEqual([true, false]);
    outb(0x64, 0xd2);
    outb(0x60, 0x1c);
    expect(inb(0x64) & (I8042_STR_OBF | I8042_STR_AUXDATA)).toBe(I8042_STR_OBF);
    expect(irq1).toEqual([true]);
    expect(inb(0x60)).toBe(0x1c);
    expect(irq1).toEqual([true, false]);
    expect(inb(0x60)).toBe(0x1c); // empty buffer reads its last value
  });

  it('gives each queued byte a fresh interrupt edge', () => {
    const { command, inb, outb, irq1 } = setup();
    command(0x60, I8042_CTR_KBDINT);
    outb(0x64, 0xd2);
    outb(0x60, 1);
    outb(0x64, 0xd2);
    outb(0x60, 2);
    expect(irq1).toEqual([true]);
    inb(0x60);
    expect(irq1).toEqual([true, false, true]);
    inb(0x60);
    expect(irq1).toEqual([true, false, true, false]);
  });

  it('reports no keyboard or mouse: 0xFE with the timeout bit', () => {
    const { inb, outb, kbc } = setup();
    outb(0x60, 0xff); // keyboard reset
    expect(inb(0x64) & (I8042_STR_OBF | I8042_STR_TIMEOUT | I8042_STR_AUXDATA)).toBe(I8042_STR_OBF | I8042_STR_TIMEOUT);
    expect(inb(0x60)).toBe(0xfe);
    expect(inb(0x64) & I8042_STR_TIMEOUT).toBe(0);
    outb(0x64, 0xd4);
    outb(0x60, 0xf2); // mouse get ID
    expect(inb(0x64) & (I8042_STR_OBF | I8042_STR_TIMEOUT | I8042_STR_AUXDATA)).toBe(I8042_STR_OBF | I8042_STR_TIMEOUT | I8042_STR_AUXDATA);
    expect(inb(0x60)).toBe(0xfe);
    expect(kbc.deviceWrites).toBe(2);
  });

  it('runs the Linux i8042 probe sequence to completion', () => {
    const { command, inb, irq12 } = setup();
    const flush = (): number => {
      let n = 0;
      while (inb(0x64) & I8042_STR_OBF && n < 20) {
        inb(0x60);
        n++;
      }
      return n;
    };
    expect(flush()).toBeLessThan(20);
    expect(command(0xaa)).toBe(0x55);
    let ctr = command(0x20)!;
    expect(command(0x20)).toBe(ctr);
    ctr = (ctr | I8042_CTR_KBDDIS) & ~I8042_CTR_KBDINT;
    command(0x60, ctr);
    // Aux check: loop a byte through the aux output buffer.
    flush();
    expect(command(0xd3, 0x5a)).toBe(0x5a);
    // Aux disable/enable reflected in the command byte.
    command(0xa7);
    expect(command(0x20)! & I8042_CTR_AUXDIS).toBe(I8042_CTR_AUXDIS);
    command(0xa8);
    expect(command(0x20)! & I8042_CTR_AUXDIS).toBe(0);
    // Aux IRQ delivery test.
    ctr = (ctr & ~I8042_CTR_AUXDIS) | I8042_CTR_AUXINT;
    command(0x60, ctr);
    const before = irq12.filter((l) => l).length;
    expect(command(0xd3, 0xa5)).toBe(0xa5);
    expect(irq12.filter((l) => l).length).toBe(before + 1);
    // Not an active multiplexing controller: the third loop byte is echoed.
    expect(command(0xd3, 0xf0)).toBe(0xf0);
    expect(command(0xd3, 0x56)).toBe(0x56);
    expect(command(0xd3, 0xa4)).toBe(0xa4);
  });

  it('survives a hostile guest', () => {
    let seed = 987654321;
    const rand = (): number => {
      seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
      return seed;
    };
    const kbc = new I8042();
    const sizes: AccessSize[] = [1, 2, 4];
    const devs = [kbc.dataPort, kbc.commandPort];
    const weird = [NaN, -1, Infinity, 1.5, 2 ** 40];
    for (let i = 0; i < 5000; i++) {
      const dev = devs[rand() & 1];
      const size = sizes[rand() % 3];
      const offset = rand() % 6 === 0 ? weird[rand() % weird.length] : rand() % 3;
      let value = rand();
      // Avoid 0xF0-0xFF pulses most of the time so the run is not all resets.
      if (rand() % 4 !== 0 && (value & 0xff) >= 0xf0) value &= 0x7f;
      if (rand() & 1) {
        expect(() => dev.write(offset, size, rand() % 9 === 0 ? weird[rand() % weird.length] : value)).not.toThrow();
      } else {
        const v = dev.read(offset, size);
        expect(Number.isInteger(v)).toBe(true);
        expect(v).toBeGreaterThanOrEqual(0);
        expect(v).toBeLessThan(2 ** (8 * size));
      }
    }
    // The output queue stays bounded however much the guest asks.
    for (let i = 0; i < 1000; i++) kbc.commandPort.write(0, 1, 0xaa);
    let n = 0;
    while (kbc.commandPort.read(0, 1) & I8042_STR_OBF && n < 2000) {
      kbc.dataPort.read(0, 1);
      n++;
    }
    expect(n).toBeLessThanOrEqual(16);
  });
});
