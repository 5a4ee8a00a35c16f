// Tests for the ACPI PM1 register device (src/devices/acpi-pm.ts), through a
// PIO bus at the ports the FADT names, with the register layout of ACPI 6.4
// §4.8.4.1 (PM1 status/enable) and §4.8.4.2.1 (PM1 control).
import { PioBus, type AccessSize } from '../src/bus/bus';
import { ACPI_PM_IO_LENGTH, PM1A_CNT_PORT, PM1A_EVT_PORT, S5_SLEEP_TYPE } from '../src/arch/x86/acpi';
import { AcpiPowerManagement } from '../src/devices/acpi-pm';

const STS = PM1A_EVT_PORT;
const EN = PM1A_EVT_PORT + 2;
const CNT = PM1A_CNT_PORT;
const SCI_EN = 1 << 0;
const SLP_EN = 1 << 13;
const slpTyp = (t: number) => (t & 7) << 10;
const PWRBTN = 1 << 8;
const WAK_STS = 1 << 15;

function setup() {
  const events: string[] = [];
  const sciLevels: boolean[] = [];
  const pm = new AcpiPowerManagement({
    onPowerOff: () => events.push('off'),
    onSleepRequest: (t) => events.push(`sleep ${t}`),
    sci: (level) => sciLevels.push(level),
  });
  const pio = new PioBus();
  pio.register(PM1A_EVT_PORT, ACPI_PM_IO_LENGTH, pm);
  return { pm, pio, events, sciLevels };
}

describe('AcpiPowerManagement', () => {
  test('the control block follows the event block', () => {
    expect(PM1A_CNT_PORT).toBe(PM1A_EVT_PORT + 4);
    expect(ACPI_PM_IO_LENGTH).toBe(6);
  });

  test('PM1_CNT reads with SCI_EN set, and SCI_EN cannot be cleared', () => {
    const { pio } = setup();
    expect(pio.read(CNT, 2)).toBe(SCI_EN);
    expect(pio.read(CNT, 1)).toBe(SCI_EN);
    pio.write(CNT, 2, 0);
    expect(pio.read(CNT, 2) & SCI_EN).toBe(SCI_EN);
  });

  test('SLP_TYP = S5 with SLP_EN powers off (16-bit write, as Linux does it)', () => {
    const { pm, pio, events } = setup();
    // Linux: write #1 SLP_TYP alone, write #2 SLP_TYP | SLP_EN (acpi_hw_legacy_sleep).
    pio.write(CNT, 2, SCI_EN | slpTyp(S5_SLEEP_TYPE));
    expect(events).toEqual([]);
    expect(pio.read(CNT, 2)).toBe(SCI_EN | slpTyp(S5_SLEEP_TYPE)); // SLP_TYP reads back
    pio.write(CNT, 2, SCI_EN | slpTyp(S5_SLEEP_TYPE) | SLP_EN);
    expect(events).toEqual(['off']);
    expect(pm.powerOffRequests).toBe(1);
    expect(pio.read(CNT, 2) & SLP_EN).toBe(0); // SLP_EN is write-only
  });

  test('a byte write to the high byte of PM1_CNT is a whole request; 32-bit writes spanning the enable register too', () => {
    const { pio, events } = setup();
    pio.write(CNT + 1, 1, (slpTyp(S5_SLEEP_TYPE) | SLP_EN) >> 8);
    expect(events).toEqual(['off']);
    // 4 bytes at PM1_EN: enable (low half) + control (high half).
    pio.write(EN, 4, ((slpTyp(S5_SLEEP_TYPE) | SLP_EN) << 16) >>> 0);
    expect(events).toEqual(['off', 'off']);
  });

  test('no power-off without SLP_EN, or with another sleep type', () => {
    const { pm, pio, events } = setup();
    for (let t = 0; t < 8; t++) if (t !== S5_SLEEP_TYPE) pio.write(CNT, 2, slpTyp(t));
    pio.write(CNT, 2, slpTyp(S5_SLEEP_TYPE)); // no SLP_EN
    pio.write(CNT, 2, SLP_EN | slpTyp(S5_SLEEP_TYPE ^ 1));
    pio.write(CNT, 2, SLP_EN | slpTyp(3));
    expect(events).toEqual([`sleep ${S5_SLEEP_TYPE ^ 1}`, 'sleep 3']);
    expect(pm.powerOffRequests).toBe(0);
    expect(pm.sleepRequests).toBe(2);
  });

  test('an ignored sleep request sets WAK_STS so the guest does not wait forever; WAK_STS clears on write 1', () => {
    const { pio } = setup();
    expect(pio.read(STS, 2)).toBe(0);
    pio.write(CNT, 2, SLP_EN | slpTyp(1));
    expect(pio.read(STS, 2) & WAK_STS).toBe(WAK_STS);
    pio.write(STS, 2, WAK_STS);
    expect(pio.read(STS, 2)).toBe(0);
  });

  test('PM1 status is write-1-to-clear; 0 bits are left alone', () => {
    const { pm, pio } = setup();
    pm.pressPowerButton();
    pio.write(CNT, 2, SLP_EN | slpTyp(1)); // sets WAK_STS
    expect(pio.read(STS, 2)).toBe(PWRBTN | WAK_STS);
    pio.write(STS, 2, 0);
    expect(pio.read(STS, 2)).toBe(PWRBTN | WAK_STS);
    pio.write(STS, 2, PWRBTN);
    expect(pio.read(STS, 2)).toBe(WAK_STS);
    // Byte access to the high half.
    expect(pio.read(STS + 1, 1)).toBe(WAK_STS >> 8);
    pio.write(STS + 1, 1, WAK_STS >> 8);
    expect(pio.read(STS, 2)).toBe(0);
    // Writing ones to bits that are not set does not set them.
    pio.write(STS, 2, 0xffff);
    expect(pio.read(STS, 2)).toBe(0);
  });

  test('PM1 enable keeps the defined bits, per byte', () => {
    const { pio } = setup();
    pio.write(EN, 2, 0xffff);
    const defined = (1 << 0) | (1 << 5) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 14);
    expect(pio.read(EN, 2)).toBe(defined);
    pio.write(EN, 1, 0);
    expect(pio.read(EN, 2)).toBe(defined & 0xff00);
    pio.write(EN + 1, 1, 0);
    expect(pio.read(EN, 2)).toBe(0);
    pio.write(EN, 2, PWRBTN);
    expect(pio.read(EN + 1, 1)).toBe(PWRBTN >> 8);
    expect(pio.read(STS, 4)).toBe((PWRBTN << 16) >>> 0); // status low half, enable high half
  });

  test('power button raises the SCI only while enabled and pending', () => {
    const { pm, pio, sciLevels } = setup();
    expect(pm.pressPowerButton()).toBe(false); // not enabled: no SCI
    expect(pm.sciLevel).toBe(false);
    pio.write(EN, 2, PWRBTN); // enabling with the status pending raises it
    expect(pm.sciLevel).toBe(true);
    pio.write(STS, 2, PWRBTN); // the guest's handler clears the status
    expect(pm.sciLevel).toBe(false);
    expect(pm.pressPowerButton()).toBe(true);
    expect(pm.sciLevel).toBe(true);
    pio.write(EN, 2, 0); // disabling drops it too
    expect(pm.sciLevel).toBe(false);
    expect(sciLevels).toEqual([true, false, true, false]);
    pm.reset();
    expect(pio.read(STS, 2)).toBe(0);
    expect(pio.read(EN, 2)).toBe(0);
    expect(pio.read(CNT, 2)).toBe(SCI_EN);
  });

  test('WAK_STS alone never raises the SCI', () => {
    const { pm, pio } = setup();
    pio.write(EN, 2, 0xffff);
    pio.write(CNT, 2, SLP_EN | slpTyp(2));
    expect(pm.sciLevel).toBe(false);
  });

  test('accesses outside the registers read all ones and ignore writes', () => {
    const pm = new AcpiPowerManagement({ onPowerOff: () => {} });
    expect(pm.read(6, 1)).toBe(0xff);
    expect(pm.read(5, 2)).toBe(0xff00); // high byte of PM1_CNT (0), then one past the end
    expect(pm.read(100, 4)).toBe(0xffffffff);
    expect(() => pm.write(7, 4, 0xffffffff)).not.toThrow();
  });

  test('random widths, offsets and values never throw (hostile guest)', () => {
    let seed = 0x12345678;
    const rand = () => {
      // xorshift32
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return seed >>> 0;
    };
    let offs = 0;
    const pm = new AcpiPowerManagement({ onPowerOff: () => offs++, onSleepRequest: () => {} });
    const sizes: AccessSize[] = [1, 2, 4];
    for (let i = 0; i < 20000; i++) {
      const size = sizes[rand() % 3];
      const offset = rand() % 8;
      if (rand() & 1) {
        const v = pm.read(offset, size);
        expect(Number.isInteger(v)).toBe(true);
        expect(v).toBeGreaterThanOrEqual(0);
        expect(v).toBeLessThan(2 ** (8 * size));
      } else {
        pm.write(offset, size, rand());
      }
      expect(pm.read(4, 2) & SCI_EN).toBe(SCI_EN);
    }
    // Odd values a buggy caller might pass.
    for (const v of [NaN, Infinity, -1, 2 ** 40, 0.5]) expect(() => pm.write(4, 2, v)).not.toThrow();
    for (const o of [-1, 1.5, NaN, 2 ** 53]) {
      expect(() => pm.read(o, 2)).not.toThrow();
      expect(() => pm.write(o, 2, 0xffff)).not.toThrow();
    }
    expect(offs).toBeGreaterThan(0); // S5 requests happen among random writes
  });
});
