import type { AccessSize } from '../src/bus/bus';
import { PioBus } from '../src/bus/bus';
import {
  CmosRtc,
  RTC_A_UIP,
  RTC_B_24H,
  RTC_B_AIE,
  RTC_B_DM_BINARY,
  RTC_B_PIE,
  RTC_B_SET,
  RTC_B_UIE,
  RTC_C_AF,
  RTC_C_IRQF,
  RTC_C_PF,
  RTC_C_UF,
  RTC_UIP_READ_LIMIT,
} from '../src/devices/cmos-rtc';

function setup(start = Date.UTC(2024, 1, 29, 13, 45, 30, 0), opts: { memoryBytes?: number; lowMemoryBytes?: number } = {}) {
  const clock = { t: start };
  const irq: boolean[] = [];
  const rtc = new CmosRtc({ now: () => new Date(clock.t), irq: (l) => irq.push(l), ...opts });
  const bus = new PioBus();
  bus.register(0x70, 2, rtc);
  const rd = (index: number): number => {
    bus.write(0x70, 1, index);
    return bus.read(0x71, 1);
  };
  const wr = (index: number, v: number): void => {
    bus.write(0x70, 1, index);
    bus.write(0x71, 1, v);
  };
  return { rtc, bus, clock, irq, rd, wr };
}

describe('CmosRtc time registers', () => {
  it('reads the host clock in BCD, 24h by default', () => {
    const { rd } = setup();
    expect(rd(0x00)).toBe(0x30);
    expect(rd(0x02)).toBe(0x45);
    expect(rd(0x04)).toBe(0x13);
    expect(rd(0x06)).toBe(5); // Thursday (Sunday = 1)
    expect(rd(0x07)).toBe(0x29);
    expect(rd(0x08)).toBe(0x02);
    expect(rd(0x09)).toBe(0x24);
    expect(rd(0x32)).toBe(0x20);
    expect(rd(0x0b)).toBe(RTC_B_24H);
    expect(rd(0x0d)).toBe(0x80);
  });

  it('reads binary when B.DM is set', () => {
    const { rd, wr } = setup();
    wr(0x0b, RTC_B_24H | RTC_B_DM_BINARY);
    expect(rd(0x00)).toBe(30);
    expect(rd(0x02)).toBe(45);
    expect(rd(0x04)).toBe(13);
    expect(rd(0x07)).toBe(29);
    expect(rd(0x09)).toBe(24);
    expect(rd(0x32)).toBe(20);
  });

  it('reads 12-hour time with bit 7 = PM', () => {
    const { rd, wr, clock } = setup();
    wr(0x0b, 0);
    expect(rd(0x04)).toBe(0x81); // 13h = 1 PM
    wr(0x0b, RTC_B_DM_BINARY);
    expect(rd(0x04)).toBe(0x81);
    clock.t = Date.UTC(2024, 0, 1, 0, 5, 0);
    wr(0x0b, 0);
    expect(rd(0x04)).toBe(0x12); // midnight = 12 AM
    clock.t = Date.UTC(2024, 0, 1, 12, 5, 0);
    expect(rd(0x04)).toBe(0x92); // noon = 12 PM
    clock.t = Date.UTC(2024, 0, 1, 23, 5, 0);
    expect(rd(0x04)).toBe(0x91);
  });

  it('follows the host clock as it advances', () => {
    const { rd, clock } = setup();
    clock.t += 31_000;
    expect(rd(0x00)).toBe(0x01);
    expect(rd(0x02)).toBe(0x46);
  });

  it('sets the time the MC146818 way (SET, write fields, clear SET)', () => {
    const { rtc, rd, wr, clock } = setup();
    wr(0x0b, RTC_B_24H | RTC_B_SET);
    const frozen = rd(0x00);
    clock.t += 5000;
    expect(rd(0x00)).toBe(frozen); // updates stopped
    // Write Feb 31 first: raw fields are not checked until SET clears.
    wr(0x07, 0x31);
    wr(0x08, 0x12);
    wr(0x09, 0x30);
    wr(0x32, 0x20);
    wr(0x04, 0x23);
    wr(0x02, 0x59);
    wr(0x00, 0x58);
    expect(rd(0x07)).toBe(0x31);
    wr(0x0b, RTC_B_24H);
    expect(rtc.guestTime.toISOString()).toBe('2030-12-31T23:59:58.000Z');
    clock.t += 3000;
    expect([rd(0x32), rd(0x09), rd(0x08), rd(0x07), rd(0x04), rd(0x02), rd(0x00)]).toEqual([0x20, 0x31, 0x01, 0x01, 0x00, 0x00, 0x01]);
  });

  it('decodes fields written during SET in the format selected when SET clears', () => {
    const { rtc, wr } = setup();
    wr(0x0b, RTC_B_SET | RTC_B_DM_BINARY); // binary, 12h
    wr(0x32, 20);
    wr(0x09, 25);
    wr(0x08, 6);
    wr(0x07, 15);
    wr(0x04, 0x80 | 3); // 3 PM
    wr(0x02, 7);
    wr(0x00, 9);
    wr(0x0b, RTC_B_DM_BINARY);
    expect(rtc.guestTime.toISOString()).toBe('2025-06-15T15:07:09.000Z');
  });

  it('applies a single field written outside SET at once', () => {
    const { rd, wr } = setup();
    wr(0x02, 0x10);
    expect(rd(0x02)).toBe(0x10);
    expect(rd(0x04)).toBe(0x13);
    expect(rd(0x00)).toBe(0x30);
    wr(0x06, 0x01); // day of week is derived: ignored
    expect(rd(0x06)).toBe(5);
  });

  it('accepts a 16-bit write to 0x70 as index then data', () => {
    const { bus, rd } = setup();
    bus.write(0x70, 2, (0x77 << 8) | 0x40);
    expect(rd(0x40)).toBe(0x77);
  });
});

describe('CmosRtc control registers', () => {
  it('sets UIP in the last millisecond of a second, never stuck', () => {
    const { rd, wr, clock } = setup(Date.UTC(2024, 0, 1, 0, 0, 0, 500));
    expect(rd(0x0a) & RTC_A_UIP).toBe(0);
    expect(rd(0x0a) & 0x7f).toBe(0x26);
    clock.t += 499; // .999
    expect(rd(0x0a) & RTC_A_UIP).toBe(RTC_A_UIP);
    let reads = 1;
    while (rd(0x0a) & RTC_A_UIP && reads < 10_000) reads++;
    expect(reads).toBe(RTC_UIP_READ_LIMIT);
    clock.t += 1; // next second
    expect(rd(0x0a) & RTC_A_UIP).toBe(0);
    clock.t += 999;
    expect(rd(0x0a) & RTC_A_UIP).toBe(RTC_A_UIP); // the limit re-arms after a clear window
    wr(0x0b, RTC_B_24H | RTC_B_SET);
    expect(rd(0x0a) & RTC_A_UIP).toBe(0); // no updates while SET
    wr(0x0b, RTC_B_24H);
    wr(0x0a, 0x76); // divider held in reset
    expect(rd(0x0a) & RTC_A_UIP).toBe(0);
    expect(rd(0x0a)).toBe(0x76);
    wr(0x0a, 0xff); // UIP is read-only
    expect(rd(0x0a) & 0x7f).toBe(0x7f);
  });

  it('sets update-ended, periodic and alarm flags; reading C clears them', () => {
    const { rd, wr, clock, irq } = setup();
    expect(rd(0x0c)).toBe(0);
    clock.t += 1000;
    expect(rd(0x0c)).toBe(RTC_C_UF | RTC_C_PF); // flags set even with interrupts disabled
    expect(rd(0x0c)).toBe(0);
    expect(irq).toEqual([]);
    wr(0x0b, RTC_B_24H | RTC_B_UIE);
    clock.t += 1000;
    expect(rd(0x0c) & (RTC_C_IRQF | RTC_C_UF)).toBe(RTC_C_IRQF | RTC_C_UF);
    expect(irq).toEqual([true, false]);
    // Alarm at 13:45:35 (the clock reads 13:45:32 now).
    wr(0x01, 0x35);
    wr(0x03, 0x45);
    wr(0x05, 0xc0); // any hour
    wr(0x0b, RTC_B_24H | RTC_B_AIE);
    clock.t += 2000;
    expect(rd(0x0c) & RTC_C_AF).toBe(0);
    clock.t += 1000;
    expect(rd(0x0c) & (RTC_C_AF | RTC_C_IRQF)).toBe(RTC_C_AF | RTC_C_IRQF);
  });

  it('raises the IRQ line from poll() when an enabled flag is set', () => {
    const { rtc, rd, wr, clock, irq } = setup();
    wr(0x0a, 0x2f); // 2 Hz
    wr(0x0b, RTC_B_24H | RTC_B_PIE);
    expect(rtc.interruptsEnabled).toBe(true);
    clock.t += 400;
    rtc.poll();
    expect(irq).toEqual([]);
    clock.t += 200; // crossed the 500 ms tick
    rtc.poll();
    expect(irq).toEqual([true]);
    expect(rtc.irqLevel).toBe(true);
    expect(rd(0x0c) & (RTC_C_PF | RTC_C_IRQF)).toBe(RTC_C_PF | RTC_C_IRQF);
    expect(irq).toEqual([true, false]);
  });

  it('clears UIE when SET is written; C and D are read-only', () => {
    const { rd, wr } = setup();
    wr(0x0b, RTC_B_SET | RTC_B_UIE | RTC_B_24H);
    expect(rd(0x0b)).toBe(RTC_B_SET | RTC_B_24H);
    wr(0x0c, 0xff);
    wr(0x0d, 0x00);
    expect(rd(0x0d)).toBe(0x80);
    expect(rd(0x0c) & 0x8f).toBe(0);
  });

  it('keeps NVRAM bytes, ignores the NMI bit in the index and reads 0xff from 0x70', () => {
    const { rtc, bus, rd, wr } = setup();
    wr(0x40, 0xab);
    wr(0x80 | 0x41, 0xcd);
    expect(rtc.nmiDisabled).toBe(true);
    expect(rd(0x40)).toBe(0xab);
    expect(rd(0x41)).toBe(0xcd);
    expect(rtc.nmiDisabled).toBe(false);
    expect(bus.read(0x70, 1)).toBe(0xff);
    wr(0x7f, 0x11);
    expect(rd(0xff)).toBe(0x11); // index 0xff = NMI off + 0x7f
  });
});

describe('CmosRtc memory size bytes', () => {
  it('describes 512 MiB the way a PC BIOS does', () => {
    const { rd } = setup(undefined, { memoryBytes: 512 * 2 ** 20 });
    expect(rd(0x15) | (rd(0x16) << 8)).toBe(640);
    expect(rd(0x17) | (rd(0x18) << 8)).toBe(0xffff); // capped
    expect(rd(0x30) | (rd(0x31) << 8)).toBe(0xffff);
    expect(rd(0x34) | (rd(0x35) << 8)).toBe((512 - 16) * 16);
    expect(rd(0x5b) | (rd(0x5c) << 8) | (rd(0x5d) << 16)).toBe(0);
    let sum = 0;
    for (let i = 0x10; i <= 0x2d; i++) sum += rd(i);
    expect((rd(0x2e) << 8) | rd(0x2f)).toBe(sum);
  });

  it('puts RAM above the low-memory limit above 4 GiB', () => {
    const { rd } = setup(undefined, { memoryBytes: 8 * 2 ** 30, lowMemoryBytes: 2 ** 31 });
    expect(rd(0x34) | (rd(0x35) << 8)).toBe((2 ** 31 - 16 * 2 ** 20) / 65536);
    expect(rd(0x5b) | (rd(0x5c) << 8) | (rd(0x5d) << 16)).toBe((6 * 2 ** 30) / 65536);
  });

  it('handles a small guest', () => {
    const { rd } = setup(undefined, { memoryBytes: 8 * 2 ** 20 });
    expect(rd(0x17) | (rd(0x18) << 8)).toBe(7 * 1024);
    expect(rd(0x34) | (rd(0x35) << 8)).toBe(0);
  });
});

describe('CmosRtc hostile guest', () => {
  it('never throws and keeps reads within the access size', () => {
    let seed = 42;
    const rand = (): number => {
      seed = (Math.imul(seed, 22695477) + 1) >>> 0;
      return seed;
    };
    const clock = { t: Date.UTC(2024, 5, 1) };
    const rtc = new CmosRtc({ now: () => new Date(clock.t), irq: () => {}, memoryBytes: 2 ** 30 });
    const sizes: AccessSize[] = [1, 2, 4];
    const weird = [NaN, -1, Infinity, 1.5, 2 ** 40, -0];
    for (let i = 0; i < 5000; i++) {
      clock.t += rand() % 3000;
      const size = sizes[rand() % 3];
      const offset = rand() % 6 === 0 ? weird[rand() % weird.length] : rand() % 4;
      if (rand() & 1) {
        const value = rand() % 9 === 0 ? weird[rand() % weird.length] : rand();
        expect(() => rtc.write(offset, size, value)).not.toThrow();
      } else {
        const v = rtc.read(offset, size);
        expect(Number.isInteger(v)).toBe(true);
        expect(v).toBeGreaterThanOrEqual(0);
        expect(v).toBeLessThan(2 ** (8 * size));
      }
      if (i % 100 === 0) rtc.poll();
    }
    // Hostile time bytes in every format still leave a usable clock.
    for (const b of [0x00, 0x06, 0x02, 0x04]) {
      rtc.write(0, 1, 0x0b);
      rtc.write(1, 1, 0x80 | b);
      for (const reg of [0x00, 0x02, 0x04, 0x07, 0x08, 0x09, 0x32]) {
        rtc.write(0, 1, reg);
        rtc.write(1, 1, 0xff);
      }
      rtc.write(0, 1, 0x0b);
      rtc.write(1, 1, b);
      expect(Number.isFinite(rtc.guestTime.getTime())).toBe(true);
    }
    // A host clock that breaks does not break the device.
    const broken = new CmosRtc({ now: () => new Date(NaN) });
    for (let r = 0; r < 0x80; r++) {
      broken.write(0, 1, r);
      expect(broken.read(1, 1)).toBeLessThan(0x100);
      broken.write(1, 1, 0x99);
    }
  });
});
