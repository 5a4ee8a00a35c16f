// Motorola MC146818 real-time clock and 128 bytes of CMOS RAM, as on the PC.
//
// Register it on the PIO bus as one device of length 2:
//   const rtc = new CmosRtc({ memoryBytes, irq: irq8 });
//   pio.register(0x70, 2, rtc);
// Offset 0 (port 0x70, write-only: reads 0xff) selects a register: bits 6:0 the index,
// bit 7 set = NMI disabled (kept in `nmiDisabled`; the VMM may act on it). Offset 1
// (port 0x71) reads/writes the selected register. A 16-bit write to 0x70 is split into
// index (low byte) then data (high byte), as the ISA bus does.
//
// Registers:
//   0x00 seconds  0x01 seconds alarm  0x02 minutes  0x03 minutes alarm  0x04 hours
//   0x05 hours alarm  0x06 day of week (1 = Sunday)  0x07 day of month  0x08 month
//   0x09 year (00-99)  0x32 century
//   0x0A A: bit 7 UIP (read-only), bits 6:4 divider (010 = running), bits 3:0 periodic rate
//   0x0B B: bit 7 SET, 6 PIE, 5 AIE, 4 UIE, 3 SQWE, 2 DM (1 = binary), 1 24/12 (1 = 24h), 0 DSE
//   0x0C C: bit 7 IRQF, 6 PF, 5 AF, 4 UF (read-only; reading clears)
//   0x0D D: bit 7 VRT (read-only, always 1: the battery is fine)
//   everything else: CMOS RAM (0x0E-0x7F), including the BIOS memory-size bytes.
//
// Time model: the clock is the host's clock (`now`, injectable) plus an offset. The time
// registers are computed at each read in the format register B selects (BCD or binary,
// 12h with bit 7 = PM or 24h), and are taken as UTC. A guest sets the time the
// MC146818 way: set B.SET (updates stop; the registers then hold what the guest writes,
// unchecked), write the fields, clear B.SET: the fields are decoded in the format B then
// selects and become the new offset. A field written while SET is clear takes effect at
// once (the other fields as they read now). Values out of range roll over as JavaScript
// dates do (month 13 = January next year); writes to the day-of-week register outside SET
// mode are ignored (it is derived from the date). Changing DM or 24/12 changes how the
// same time reads (the real chip would leave stale-format bytes).
//
// UIP (A bit 7) is set during the last millisecond of each second (the real window is
// 244 µs before the update), never while SET is set or the divider is stopped; after 256
// consecutive reads that saw it set it reads clear, so a stopped or coarse test clock
// cannot hang a guest waiting for it to fall.
//
// Interrupt flags (register C) are computed lazily from the clock when C is read or when
// the VMM calls `poll()`: PF when a periodic-rate tick passed, UF when a second boundary
// passed, AF when the time matched the alarm (alarm bytes 0xC0-0xFF match anything).
// IRQF and the `irq` line (ISA IRQ 8) follow the enabled flags; a VMM that wants RTC
// interrupts calls `poll()` from a timer while `interruptsEnabled` is true.
//
// Nothing a guest writes can throw; accesses wider than a byte are split into byte accesses.

import { type AccessSize, type BusDevice, readBytewise, writeBytewise } from '../bus/bus';
import { IrqLevel, type IrqLine } from './irq';

export const RTC_SECONDS = 0x00;
export const RTC_SECONDS_ALARM = 0x01;
export const RTC_MINUTES = 0x02;
export const RTC_MINUTES_ALARM = 0x03;
export const RTC_HOURS = 0x04;
export const RTC_HOURS_ALARM = 0x05;
export const RTC_DAY_OF_WEEK = 0x06;
export const RTC_DAY_OF_MONTH = 0x07;
export const RTC_MONTH = 0x08;
export const RTC_YEAR = 0x09;
export const RTC_REG_A = 0x0a;
export const RTC_REG_B = 0x0b;
export const RTC_REG_C = 0x0c;
export const RTC_REG_D = 0x0d;
export const RTC_CENTURY = 0x32;

export const RTC_A_UIP = 0x80;
export const RTC_A_DV_MASK = 0x70;
export const RTC_A_DV_32KHZ = 0x20;
export const RTC_A_RS_MASK = 0x0f;

export const RTC_B_SET = 0x80;
export const RTC_B_PIE = 0x40;
export const RTC_B_AIE = 0x20;
export const RTC_B_UIE = 0x10;
export const RTC_B_SQWE = 0x08;
export const RTC_B_DM_BINARY = 0x04;
export const RTC_B_24H = 0x02;
export const RTC_B_DSE = 0x01;

export const RTC_C_IRQF = 0x80;
export const RTC_C_PF = 0x40;
export const RTC_C_AF = 0x20;
export const RTC_C_UF = 0x10;

export const RTC_D_VRT = 0x80;

/** Consecutive register A reads that may see UIP before it is forced clear. */
export const RTC_UIP_READ_LIMIT = 256;

const TIME_REGS = [RTC_SECONDS, RTC_MINUTES, RTC_HOURS, RTC_DAY_OF_WEEK, RTC_DAY_OF_MONTH, RTC_MONTH, RTC_YEAR, RTC_CENTURY] as const;
const MAX_DATE_MS = 8.64e15;
const KiB = 1024;
const MiB = 1024 * KiB;

export interface CmosRtcOptions {
  /** Device name on the bus (default "cmos-rtc"). */
  name?: string;
  /** The host clock (default `() => new Date()`). */
  now?: () => Date;
  /** ISA IRQ 8. */
  irq?: IrqLine;
  /**
   * Guest RAM size: fills the BIOS memory-size bytes (0x15/0x16 base memory, 0x17/0x18 and
   * 0x30/0x31 KiB above 1 MiB, 0x34/0x35 64 KiB units above 16 MiB, 0x5B-0x5D 64 KiB
   * units above 4 GiB) and the checksum 0x2E/0x2F over 0x10-0x2D.
   */
  memoryBytes?: number;
  /** RAM below 4 GiB (default: min(memoryBytes, 3 GiB)); the rest is above 4 GiB. */
  lowMemoryBytes?: number;
}

interface Fields {
  year: number;
  month: number; // 1-12
  day: number;
  hours: number;
  minutes: number;
  seconds: number;
}

export class CmosRtc implements BusDevice {
  readonly name: string;

  private readonly ram = new Uint8Array(128);
  private index = 0;
  /** NMI disable bit of the last index write (port 0x70 bit 7). */
  nmiDisabled = false;
  /** Guest time minus host time, ms. */
  private offsetMs = 0;
  /** While B.SET is set: the raw time register bytes, indexed by register number. */
  private frozen: Uint8Array | undefined;
  private frozenSubSecondMs = 0;
  private uipReads = 0;
  /** Guest time at the last interrupt-flag refresh. */
  private lastFlagMs: number;

  private readonly now: () => Date;
  private readonly irqOut: IrqLevel;

  constructor(options: CmosRtcOptions = {}) {
    this.name = options.name ?? 'cmos-rtc';
    this.now = options.now ?? (() => new Date());
    this.irqOut = new IrqLevel(options.irq);
    this.ram[RTC_REG_A] = RTC_A_DV_32KHZ | 0x06; // 32.768 kHz, 1024 Hz periodic rate
    this.ram[RTC_REG_B] = RTC_B_24H;
    this.ram[RTC_REG_C] = 0;
    this.ram[RTC_REG_D] = RTC_D_VRT;
    if (options.memoryBytes !== undefined) this.setMemorySize(options.memoryBytes, options.lowMemoryBytes);
    this.lastFlagMs = this.guestMs();
  }

  /** True when register B enables any interrupt: the VMM should then call poll() often. */
  get interruptsEnabled(): boolean {
    return (this.ram[RTC_REG_B] & (RTC_B_PIE | RTC_B_AIE | RTC_B_UIE)) !== 0;
  }

  get irqLevel(): boolean {
    return this.irqOut.level;
  }

  /** The guest's current time (host clock + offset, or the frozen time while SET). */
  get guestTime(): Date {
    return new Date(this.guestMs());
  }

  /** Sets the guest's clock (e.g. to start a guest at a fixed date). */
  setGuestTime(date: Date): void {
    const ms = date.getTime();
    if (!Number.isFinite(ms)) return;
    this.offsetMs = ms - this.hostMs();
    this.lastFlagMs = this.guestMs();
  }

  /** Reads a CMOS byte as the guest would (with the same side effects). */
  readRegister(index: number): number {
    const i = index & 0x7f;
    switch (i) {
      case RTC_REG_A:
        return this.readRegA();
      case RTC_REG_C: {
        this.refreshFlags();
        const c = this.ram[RTC_REG_C];
        this.ram[RTC_REG_C] = 0;
        this.irqOut.set(false);
        return c;
      }
      case RTC_REG_D:
        return RTC_D_VRT;
      default:
        if (isTimeReg(i)) return this.frozen ? this.frozen[i] : this.timeRegisters()[i];
        return this.ram[i];
    }
  }

  /** Writes a CMOS byte as the guest would. */
  writeRegister(index: number, value: number): void {
    const i = index & 0x7f;
    const v = value & 0xff;
    switch (i) {
      case RTC_REG_A:
        this.ram[RTC_REG_A] = v & 0x7f;
        return;
      case RTC_REG_B:
        this.writeRegB(v);
        return;
      case RTC_REG_C:
      case RTC_REG_D:
        return; // read-only
      default:
        if (isTimeReg(i)) this.writeTimeReg(i, v);
        else this.ram[i] = v;
    }
  }

  /** Brings register C and the IRQ line up to date with the clock. */
  poll(): void {
    this.refreshFlags();
  }

  // ---------------------------------------------------------------- bus side

  read(offset: number, size: AccessSize): number {
    return readBytewise(offset, size, (o) => this.readByte(o));
  }

  write(offset: number, size: AccessSize, value: number): void {
    writeBytewise(offset, size, value, (o, b) => this.writeByte(o, b));
  }

  private readByte(offset: number): number {
    if (offset === 1) return this.readRegister(this.index);
    return 0xff; // the index port is write-only; anything else is not ours
  }

  private writeByte(offset: number, v: number): void {
    if (offset === 0) {
      this.index = v & 0x7f;
      this.nmiDisabled = (v & 0x80) !== 0;
    } else if (offset === 1) {
      this.writeRegister(this.index, v);
    }
  }

  // ---------------------------------------------------------------- registers

  private readRegA(): number {
    let a = this.ram[RTC_REG_A] & 0x7f;
    const running = (a & RTC_A_DV_MASK) === RTC_A_DV_32KHZ && !this.frozen;
    const ms = this.guestMs();
    const inWindow = running && Number.isFinite(ms) && mod(ms, 1000) >= 999;
    if (inWindow && this.uipReads < RTC_UIP_READ_LIMIT) {
      this.uipReads++;
      a |= RTC_A_UIP;
    } else if (!inWindow) {
      this.uipReads = 0;
    }
    return a;
  }

  private writeRegB(v: number): void {
    const old = this.ram[RTC_REG_B];
    let b = v;
    if (b & RTC_B_SET) b &= ~RTC_B_UIE; // setting SET clears UIE
    if (b & RTC_B_SET && !(old & RTC_B_SET)) {
      // Updates stop: freeze the time registers as they read now (in the old format).
      const ms = this.guestMs();
      this.frozen = this.timeRegisters(ms);
      this.frozenSubSecondMs = Number.isFinite(ms) ? mod(ms, 1000) : 0;
    }
    this.ram[RTC_REG_B] = b;
    if (!(b & RTC_B_SET) && old & RTC_B_SET && this.frozen) {
      // Updates resume from the time the guest wrote, read in the format now selected.
      const frozen = this.frozen;
      this.frozen = undefined;
      const ms = this.decodeTime(frozen);
      if (ms !== undefined) this.setGuestMs(ms + this.frozenSubSecondMs);
    }
    this.updateIrq();
  }

  private writeTimeReg(i: number, v: number): void {
    if (this.frozen) {
      this.frozen[i] = v;
      return;
    }
    if (i === RTC_DAY_OF_WEEK) return; // derived from the date
    const ms = this.guestMs();
    if (!Number.isFinite(ms)) return;
    const regs = this.timeRegisters(ms);
    regs[i] = v;
    const t = this.decodeTime(regs);
    if (t !== undefined) this.setGuestMs(t + mod(ms, 1000));
  }

  // ---------------------------------------------------------------- time

  private hostMs(): number {
    let ms: number;
    try {
      ms = this.now().getTime();
    } catch {
      return NaN;
    }
    return ms;
  }

  private guestMs(): number {
    return this.hostMs() + this.offsetMs;
  }

  private setGuestMs(ms: number): void {
    if (!Number.isFinite(ms) || Math.abs(ms) > MAX_DATE_MS) return;
    const host = this.hostMs();
    if (!Number.isFinite(host)) return;
    this.offsetMs = ms - host;
    this.lastFlagMs = ms;
  }

  private get binary(): boolean {
    return (this.ram[RTC_REG_B] & RTC_B_DM_BINARY) !== 0;
  }

  private get hours24(): boolean {
    return (this.ram[RTC_REG_B] & RTC_B_24H) !== 0;
  }

  private encode(v: number): number {
    if (this.binary) return v & 0xff;
    const x = mod(Math.trunc(v), 100);
    return ((Math.floor(x / 10) << 4) | x % 10) & 0xff;
  }

  private decode(v: number): number {
    return this.binary ? v : (v >> 4) * 10 + (v & 0x0f);
  }

  private encodeHours(h: number): number {
    if (this.hours24) return this.encode(h);
    const h12 = h % 12 === 0 ? 12 : h % 12;
    return this.encode(h12) | (h >= 12 ? 0x80 : 0);
  }

  private decodeHours(v: number): number {
    if (this.hours24) return this.decode(v);
    const h = this.decode(v & 0x7f) % 12;
    return v & 0x80 ? h + 12 : h;
  }

  /** The time registers (indexed by register number) for guest time `ms`. */
  private timeRegisters(ms: number = this.guestMs()): Uint8Array {
    const regs = new Uint8Array(128);
    const d = new Date(Number.isFinite(ms) ? ms : 0);
    const year = d.getUTCFullYear();
    regs[RTC_SECONDS] = this.encode(d.getUTCSeconds());
    regs[RTC_MINUTES] = this.encode(d.getUTCMinutes());
    regs[RTC_HOURS] = this.encodeHours(d.getUTCHours());
    regs[RTC_DAY_OF_WEEK] = this.encode(d.getUTCDay() + 1);
    regs[RTC_DAY_OF_MONTH] = this.encode(d.getUTCDate());
    regs[RTC_MONTH] = this.encode(d.getUTCMonth() + 1);
    regs[RTC_YEAR] = this.encode(mod(year, 100));
    regs[RTC_CENTURY] = this.encode(Math.floor(year / 100));
    return regs;
  }

  /** The guest time the registers describe, or undefined if not a representable date. */
  private decodeTime(regs: Uint8Array): number | undefined {
    const f: Fields = {
      year: this.decode(regs[RTC_CENTURY]) * 100 + this.decode(regs[RTC_YEAR]),
      month: this.decode(regs[RTC_MONTH]),
      day: this.decode(regs[RTC_DAY_OF_MONTH]),
      hours: this.decodeHours(regs[RTC_HOURS]),
      minutes: this.decode(regs[RTC_MINUTES]),
      seconds: this.decode(regs[RTC_SECONDS]),
    };
    const d = new Date(0);
    d.setUTCFullYear(f.year, f.month - 1, f.day);
    d.setUTCHours(f.hours, f.minutes, f.seconds, 0);
    const ms = d.getTime();
    return Number.isFinite(ms) ? ms : undefined;
  }

  // ---------------------------------------------------------------- interrupts

  private refreshFlags(): void {
    const now = this.guestMs();
    const last = this.lastFlagMs;
    if (!Number.isFinite(now)) return;
    this.lastFlagMs = now;
    if (!Number.isFinite(last) || now <= last) return;
    let c = this.ram[RTC_REG_C];
    const a = this.ram[RTC_REG_A];
    const running = (a & RTC_A_DV_MASK) === RTC_A_DV_32KHZ;
    if (running) {
      const hz = periodicHz(a & RTC_A_RS_MASK);
      // Count ticks from a 1000 s boundary (a whole number of ticks at every rate) so the
      // products stay well inside double precision.
      const base = Math.floor(last / 1e6) * 1e6;
      if (hz > 0 && Math.floor(((now - base) * hz) / 1000) > Math.floor(((last - base) * hz) / 1000)) c |= RTC_C_PF;
      if (!this.frozen) {
        const s0 = Math.floor(last / 1000);
        const s1 = Math.floor(now / 1000);
        if (s1 > s0) {
          c |= RTC_C_UF;
          if (this.alarmMatchesBetween(s0, s1)) c |= RTC_C_AF;
        }
      }
    }
    this.ram[RTC_REG_C] = c & 0x70;
    this.updateIrq();
  }

  /** Did any second in (s0, s1] (seconds since the epoch) match the alarm registers? */
  private alarmMatchesBetween(s0: number, s1: number): boolean {
    const sa = this.ram[RTC_SECONDS_ALARM];
    const ma = this.ram[RTC_MINUTES_ALARM];
    const ha = this.ram[RTC_HOURS_ALARM];
    const span = Math.min(s1 - s0, 86400); // the alarm repeats at most daily
    for (let k = 1; k <= span; k++) {
      const sod = mod(s1 - span + k, 86400);
      const h = Math.floor(sod / 3600);
      const m = Math.floor(sod / 60) % 60;
      const s = sod % 60;
      if ((sa >= 0xc0 || sa === this.encode(s)) && (ma >= 0xc0 || ma === this.encode(m)) && (ha >= 0xc0 || ha === this.encodeHours(h)))
        return true;
    }
    return false;
  }

  private updateIrq(): void {
    const b = this.ram[RTC_REG_B];
    let c = this.ram[RTC_REG_C] & 0x70;
    const enabled = c & b & (RTC_C_PF | RTC_C_AF | RTC_C_UF); // PIE/AIE/UIE share bit positions with PF/AF/UF
    if (enabled) c |= RTC_C_IRQF;
    this.ram[RTC_REG_C] = c;
    this.irqOut.set(enabled !== 0);
  }

  // ---------------------------------------------------------------- BIOS data

  private setMemorySize(memoryBytes: number, lowMemoryBytes?: number): void {
    if (!Number.isFinite(memoryBytes) || memoryBytes < 0) return;
    const low = Math.min(memoryBytes, lowMemoryBytes ?? 3 * 1024 * MiB);
    const high = Math.max(memoryBytes - low, 0);
    const base = Math.min(640, Math.floor(low / KiB));
    const ext1 = Math.min(0xffff, Math.floor(Math.max(low - MiB, 0) / KiB));
    const ext16 = Math.min(0xffff, Math.floor(Math.max(low - 16 * MiB, 0) / (64 * KiB)));
    const above4g = Math.min(0xffffff, Math.floor(high / (64 * KiB)));
    this.ram[0x15] = base & 0xff;
    this.ram[0x16] = base >> 8;
    this.ram[0x17] = this.ram[0x30] = ext1 & 0xff;
    this.ram[0x18] = this.ram[0x31] = ext1 >> 8;
    this.ram[0x34] = ext16 & 0xff;
    this.ram[0x35] = ext16 >> 8;
    this.ram[0x5b] = above4g & 0xff;
    this.ram[0x5c] = (above4g >> 8) & 0xff;
    this.ram[0x5d] = above4g >> 16;
    let sum = 0;
    for (let i = 0x10; i <= 0x2d; i++) sum += this.ram[i];
    this.ram[0x2e] = (sum >> 8) & 0xff;
    this.ram[0x2f] = sum & 0xff;
  }
}

function isTimeReg(i: number): boolean {
  return (TIME_REGS as readonly number[]).includes(i);
}

function mod(a: number, n: number): number {
  return ((a % n) + n) % n;
}

/** Periodic interrupt rate for register A bits 3:0 with the 32.768 kHz time base. */
function periodicHz(rs: number): number {
  if (rs === 0) return 0;
  if (rs <= 2) return 32768 >> (rs + 6); // 1 → 256 Hz, 2 → 128 Hz
  return 32768 >> (rs - 1); // 3 → 8192 Hz ... 15 → 2 Hz
}
