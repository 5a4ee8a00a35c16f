// ACPI fixed-hardware power management registers (ACPI 6.4 §4.8.4): the PM1a
// event block (PM1 status + PM1 enable) and the PM1a control block, which the
// FADT written by src/arch/x86/acpi.ts points the guest at. Their job here is
// power-off: Linux's `poweroff` ends by writing SLP_TYP = S5_SLEEP_TYPE (from the
// DSDT's \_S5 package) with SLP_EN to PM1_CNT, and the device calls `onPowerOff`.
//
// Registering: acpi.ts places the two blocks back to back, so one device claims
// both (one bus range, and an access that straddles them needs no special case):
//   const pm = new AcpiPowerManagement({ onPowerOff: () => machine.requestStop(...), sci });
//   pio.register(PM1A_EVT_PORT, ACPI_PM_IO_LENGTH, pm);
//
// Offsets (all registers 16 bits, little endian):
//   0-1  PM1_STS  (§4.8.4.1.1, Table 4.11) status bits, write 1 to clear
//          bit 0 TMR_STS, 4 BM_STS, 5 GBL_STS, 8 PWRBTN_STS, 9 SLPBTN_STS,
//          10 RTC_STS, 14 PCIEXP_WAKE_STS, 15 WAK_STS; others reserved (read 0)
//   2-3  PM1_EN   (§4.8.4.1.2, Table 4.12) enable bits, read/write
//          bit 0 TMR_EN, 5 GBL_EN, 8 PWRBTN_EN, 9 SLPBTN_EN, 10 RTC_EN,
//          14 PCIEXP_WAKE_DIS; others reserved (read 0)
//   4-5  PM1_CNT  (§4.8.4.2.1, Table 4.13)
//          bit 0 SCI_EN: always 1 (an ACPI-only machine, no SMI_CMD; §4.8.3.4)
//          bit 1 BM_RLD: read/write, no effect
//          bit 2 GBL_RLS: write-only, reads 0 (no firmware shares the global lock)
//          bits 12:10 SLP_TYP: read/write
//          bit 13 SLP_EN: write-only, reads 0; writing 1 starts the sleep
//          transition to the state SLP_TYP names (§4.8.3.2, §16.1.7)
//
// Sleep requests: SLP_TYP = S5_SLEEP_TYPE calls `onPowerOff` (soft off). Any
// other type calls `onSleepRequest` (the DSDT offers no other \_Sx state, so a
// well-behaved guest never asks) and is otherwise ignored: the device sets
// WAK_STS at once, as if the machine had slept and woken immediately, so that an
// OSPM spinning on WAK_STS after SLP_EN (Linux does) carries on.
//
// Events and the SCI: the only event source is the fixed-feature power button
// (the FADT leaves PWR_BUTTON clear). `pressPowerButton()` sets PWRBTN_STS; the
// `sci` line (ISA IRQ 9, level-triggered, see acpi.ts) is high while any status
// bit with an enable bit is set together with that enable bit, and drops when the
// guest clears the status or the enable. A guest whose ACPI driver enabled
// PWRBTN_EN then shuts down in an orderly way (Linux: acpid/logind "power key").
//
// Accesses of any width (1, 2 or 4 bytes) at any offset are split into byte
// accesses, low byte first; bytes outside the six registers read 0xff and ignore
// writes. SLP_TYP and SLP_EN share the high byte of PM1_CNT, so a byte write to
// offset 5 carries a whole sleep request. Nothing a guest writes can throw.

import { type AccessSize, type BusDevice, readBytewise, writeBytewise } from '../bus/bus';
import { PM1_EVT_LEN, S5_SLEEP_TYPE } from '../arch/x86/acpi';
import { IrqLevel, type IrqLine } from './irq';

/** Register offsets inside the device's range. */
export const PM1_STS_OFFSET = 0;
export const PM1_EN_OFFSET = PM1_EVT_LEN / 2; // §4.8.4.1.2: the enable register is the second half of PM1_EVT_BLK
export const PM1_CNT_OFFSET = PM1_EVT_LEN;

// PM1 status bits (§4.8.4.1.1, Table 4.11).
export const PM1_STS_TMR = 1 << 0;
export const PM1_STS_BM = 1 << 4;
export const PM1_STS_GBL = 1 << 5;
export const PM1_STS_PWRBTN = 1 << 8;
export const PM1_STS_SLPBTN = 1 << 9;
export const PM1_STS_RTC = 1 << 10;
export const PM1_STS_PCIEXP_WAKE = 1 << 14;
export const PM1_STS_WAK = 1 << 15;
const PM1_STS_MASK =
  PM1_STS_TMR | PM1_STS_BM | PM1_STS_GBL | PM1_STS_PWRBTN | PM1_STS_SLPBTN | PM1_STS_RTC | PM1_STS_PCIEXP_WAKE | PM1_STS_WAK;

// PM1 enable bits (§4.8.4.1.2, Table 4.12): same positions as their status bits.
export const PM1_EN_TMR = 1 << 0;
export const PM1_EN_GBL = 1 << 5;
export const PM1_EN_PWRBTN = 1 << 8;
export const PM1_EN_SLPBTN = 1 << 9;
export const PM1_EN_RTC = 1 << 10;
export const PM1_EN_PCIEXP_WAKE_DIS = 1 << 14;
const PM1_EN_MASK = PM1_EN_TMR | PM1_EN_GBL | PM1_EN_PWRBTN | PM1_EN_SLPBTN | PM1_EN_RTC | PM1_EN_PCIEXP_WAKE_DIS;
/** Status bits that raise the SCI when their enable bit is set (PCIEXP_WAKE is a wake event only). */
const SCI_EVENTS = PM1_EN_TMR | PM1_EN_GBL | PM1_EN_PWRBTN | PM1_EN_SLPBTN | PM1_EN_RTC;

// PM1 control bits (§4.8.4.2.1, Table 4.13).
export const PM1_CNT_SCI_EN = 1 << 0;
export const PM1_CNT_BM_RLD = 1 << 1;
export const PM1_CNT_GBL_RLS = 1 << 2;
export const PM1_CNT_SLP_TYP_SHIFT = 10;
export const PM1_CNT_SLP_TYP_MASK = 0b111 << PM1_CNT_SLP_TYP_SHIFT;
export const PM1_CNT_SLP_EN = 1 << 13;

export interface AcpiPowerManagementOptions {
  /** Device name on the bus (default "acpi-pm"). */
  name?: string;
  /** The guest asked for soft off (S5): SLP_EN with SLP_TYP = S5_SLEEP_TYPE. */
  onPowerOff: () => void;
  /** The guest asked for another sleep type (unsupported; the request is otherwise ignored). */
  onSleepRequest?: (sleepType: number) => void;
  /** The SCI (ISA IRQ 9 / GSI 9, level-triggered, active high). Unwired by default. */
  sci?: IrqLine;
}

export class AcpiPowerManagement implements BusDevice {
  readonly name: string;
  /** Times the guest requested S5. */
  powerOffRequests = 0;
  /** Times the guest requested another sleep state. */
  sleepRequests = 0;

  private sts = 0;
  private en = 0;
  /** PM1_CNT bits that read back: BM_RLD and SLP_TYP. */
  private cnt = 0;
  private readonly sci: IrqLevel;
  private readonly onPowerOff: () => void;
  private readonly onSleepRequest: ((sleepType: number) => void) | undefined;

  constructor(options: AcpiPowerManagementOptions) {
    this.name = options.name ?? 'acpi-pm';
    this.onPowerOff = options.onPowerOff;
    this.onSleepRequest = options.onSleepRequest;
    this.sci = new IrqLevel(options.sci);
  }

  /** PM1_STS as the guest reads it. */
  get status(): number {
    return this.sts;
  }

  /** PM1_EN as the guest reads it. */
  get enable(): number {
    return this.en;
  }

  /** PM1_CNT as the guest reads it (SCI_EN always set). */
  get control(): number {
    return PM1_CNT_SCI_EN | this.cnt;
  }

  get sciLevel(): boolean {
    return this.sci.level;
  }

  /**
   * Presses the fixed-feature power button: sets PWRBTN_STS, raising the SCI if
   * the guest enabled PWRBTN_EN. Returns whether it had (false: the guest's ACPI
   * driver is not listening, e.g. still booting or ACPI disabled).
   */
  pressPowerButton(): boolean {
    this.sts |= PM1_STS_PWRBTN;
    this.updateSci();
    return (this.en & PM1_EN_PWRBTN) !== 0;
  }

  /** Back to the power-on state: no status, nothing enabled, SCI low. */
  reset(): void {
    this.sts = 0;
    this.en = 0;
    this.cnt = 0;
    this.updateSci();
  }

  read(offset: number, size: AccessSize): number {
    return readBytewise(offset, size, (o) => this.readByte(o));
  }

  write(offset: number, size: AccessSize, value: number): void {
    writeBytewise(offset, size, value, (o, b) => this.writeByte(o, b));
  }

  private readByte(offset: number): number {
    switch (offset) {
      case PM1_STS_OFFSET:
        return this.sts & 0xff;
      case PM1_STS_OFFSET + 1:
        return this.sts >>> 8;
      case PM1_EN_OFFSET:
        return this.en & 0xff;
      case PM1_EN_OFFSET + 1:
        return this.en >>> 8;
      case PM1_CNT_OFFSET:
        return this.control & 0xff;
      case PM1_CNT_OFFSET + 1:
        return this.control >>> 8;
      default:
        return 0xff; // outside the registers (only if registered wider than ACPI_PM_IO_LENGTH)
    }
  }

  private writeByte(offset: number, byte: number): void {
    switch (offset) {
      case PM1_STS_OFFSET:
      case PM1_STS_OFFSET + 1: {
        // Write 1 to clear; 0 bits leave the status alone (§4.8.4.1.1).
        const shift = 8 * (offset - PM1_STS_OFFSET);
        this.sts &= ~((byte << shift) & PM1_STS_MASK);
        break;
      }
      case PM1_EN_OFFSET:
      case PM1_EN_OFFSET + 1: {
        const shift = 8 * (offset - PM1_EN_OFFSET);
        const keep = 0xff00 >>> shift; // the other byte
        this.en = (this.en & keep) | ((byte << shift) & PM1_EN_MASK);
        break;
      }
      case PM1_CNT_OFFSET:
        // SCI_EN is fixed at 1; GBL_RLS (write-only) would hand the global
        // lock to firmware, and there is none. BM_RLD is kept.
        this.cnt = (this.cnt & ~PM1_CNT_BM_RLD) | (byte & PM1_CNT_BM_RLD);
        break;
      case PM1_CNT_OFFSET + 1: {
        const bits = byte << 8;
        this.cnt = (this.cnt & ~PM1_CNT_SLP_TYP_MASK) | (bits & PM1_CNT_SLP_TYP_MASK);
        if (bits & PM1_CNT_SLP_EN) this.sleep((bits & PM1_CNT_SLP_TYP_MASK) >>> PM1_CNT_SLP_TYP_SHIFT);
        break;
      }
      default:
        return;
    }
    this.updateSci();
  }

  private sleep(sleepType: number): void {
    if (sleepType === S5_SLEEP_TYPE) {
      this.powerOffRequests++;
      this.onPowerOff();
      return;
    }
    this.sleepRequests++;
    // "Woke up" at once: WAK_STS is set when the system returns to the working
    // state (§4.8.4.1.1), which is what OSPM waits for after SLP_EN.
    this.sts |= PM1_STS_WAK;
    this.onSleepRequest?.(sleepType);
  }

  private updateSci(): void {
    // SCI_EN is always set, so the SCI follows the enabled event status bits (§4.8.3.4).
    this.sci.set((this.sts & this.en & SCI_EVENTS) !== 0);
  }
}
