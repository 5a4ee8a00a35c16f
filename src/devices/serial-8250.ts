// 16550A-compatible UART (the PC's COM ports, 8250 family).
//
// Register it on the PIO bus with length 8, e.g. COM1: `pio.register(0x3f8, 8, uart)`
// (COM2 0x2f8, COM3 0x3e8, COM4 0x2e8) and wire `irq` to ISA IRQ 4 (COM1/COM3) or 3.
//
// Register map (offset from base; DLAB = LCR bit 7):
//   0 R  RBR receiver buffer        W THR transmit holding    (DLAB=1: DLL divisor low)
//   1 RW IER interrupt enable (bits 0-3)                      (DLAB=1: DLM divisor high)
//   2 R  IIR interrupt identification  W FCR FIFO control
//   3 RW LCR line control   4 RW MCR modem control (bits 0-4)
//   5 R  LSR line status    6 R  MSR modem status    7 RW SCR scratch
//
// Model choices (all from the 16550A datasheet unless noted):
// - Transmission is instantaneous: a THR write hands the byte to `onTransmit` (or, in
//   loopback mode, to the receiver) and THR/transmitter are empty again at once, so
//   LSR THRE and TEMT always read 1 and the THRE interrupt re-arms after every write.
// - Receive FIFO of 16 bytes when FCR bit 0 is set, a single holding register otherwise.
//   IIR reports "received data available" (0x04) when the FIFO holds at least the trigger
//   level and "character timeout" (0x0C) when it holds fewer: there is no clock here, so
//   the four character times of the real timeout are taken to have elapsed already.
// - Interrupt priority: receiver line status > received data > THR empty > modem status.
//   Reading IIR while it reports THR empty clears that interrupt; writing THR or
//   enabling IER bit 1 while THR is empty sets it again (Linux's THRE/TXEN tests rely on this).
// - The interrupt output is gated by MCR OUT2, as the PC's IRQ buffer is:
//   line level = (an enabled interrupt is pending) && (MCR & OUT2). The line is driven
//   only when that level changes.
// - Loopback (MCR bit 4): TX goes to RX, RTS→CTS, DTR→DSR, OUT1→RI, OUT2→DCD; host input
//   is refused while looping (the serial input pin is disconnected on the real chip).
// - Host input: `receive()` accepts at most `rxSpace` bytes and says how many it took; the
//   host keeps the rest and is told through `onRxSpace` when the guest has made room.
//   Bytes arriving at a full receiver from the line itself (loopback, or
//   `receive(bytes, { overrun: true })`) are lost, set LSR OE and count in `droppedBytes`.
// - Accesses wider than a byte are split into byte accesses at consecutive offsets (as an
//   ISA bus does for an 8-bit device), low byte first; offsets outside 0-7 read 0xff.
// - Nothing a guest writes can throw. Exceptions thrown by the host's own callbacks
//   (onTransmit, irq, onRxSpace) propagate to the caller.

import { type AccessSize, type BusDevice, readBytewise, writeBytewise } from '../bus/bus';
import { IrqLevel, type IrqLine } from './irq';

// Register offsets.
export const UART_RBR = 0;
export const UART_THR = 0;
export const UART_DLL = 0;
export const UART_IER = 1;
export const UART_DLM = 1;
export const UART_IIR = 2;
export const UART_FCR = 2;
export const UART_LCR = 3;
export const UART_MCR = 4;
export const UART_LSR = 5;
export const UART_MSR = 6;
export const UART_SCR = 7;

// IER bits.
export const IER_RDI = 0x01; // received data available
export const IER_THRI = 0x02; // transmitter holding register empty
export const IER_RLSI = 0x04; // receiver line status
export const IER_MSI = 0x08; // modem status

// IIR values.
export const IIR_NO_INT = 0x01;
export const IIR_MSI = 0x00;
export const IIR_THRI = 0x02;
export const IIR_RDI = 0x04;
export const IIR_RLSI = 0x06;
export const IIR_RX_TIMEOUT = 0x0c;
export const IIR_FIFO_ENABLED = 0xc0;

// FCR bits.
export const FCR_ENABLE_FIFO = 0x01;
export const FCR_CLEAR_RCVR = 0x02;
export const FCR_CLEAR_XMIT = 0x04;
export const FCR_DMA_SELECT = 0x08;
export const FCR_TRIGGER_MASK = 0xc0;

// LCR bits.
export const LCR_DLAB = 0x80;

// MCR bits.
export const MCR_DTR = 0x01;
export const MCR_RTS = 0x02;
export const MCR_OUT1 = 0x04;
export const MCR_OUT2 = 0x08;
export const MCR_LOOP = 0x10;

// LSR bits.
export const LSR_DR = 0x01;
export const LSR_OE = 0x02;
export const LSR_PE = 0x04;
export const LSR_FE = 0x08;
export const LSR_BI = 0x10;
export const LSR_THRE = 0x20;
export const LSR_TEMT = 0x40;
export const LSR_FIFOE = 0x80;

// MSR bits.
export const MSR_DCTS = 0x01;
export const MSR_DDSR = 0x02;
export const MSR_TERI = 0x04;
export const MSR_DDCD = 0x08;
export const MSR_CTS = 0x10;
export const MSR_DSR = 0x20;
export const MSR_RI = 0x40;
export const MSR_DCD = 0x80;

export const UART_FIFO_SIZE = 16;
/** Input clock / 16 on a PC UART (1.8432 MHz crystal): baud = 115200 / divisor. */
export const UART_BASE_BAUD = 115200;

const TRIGGER_LEVELS = [1, 4, 8, 14] as const;
const LSR_ERROR_BITS = LSR_OE | LSR_PE | LSR_FE | LSR_BI;

export interface Serial8250Options {
  /** Device name on the bus (default "serial8250"). */
  name?: string;
  /** The interrupt output (ISA IRQ 4 for COM1). Called only when the level changes. */
  irq?: IrqLine;
  /** Each byte the guest transmits (not called in loopback mode). */
  onTransmit?: (byte: number) => void;
  /** The guest made room in the receiver after `receive()` had refused bytes. */
  onRxSpace?: () => void;
  /**
   * Levels of the modem status inputs when not in loopback (default: CTS, DSR and DCD
   * asserted, RI not: a null-modem cable to a host that is always ready).
   */
  modemInputs?: { cts?: boolean; dsr?: boolean; ri?: boolean; dcd?: boolean };
}

export interface ReceiveOptions {
  /**
   * Behave like a line without flow control: bytes that find the receiver full are
   * lost with an overrun error instead of being left to the caller.
   */
  overrun?: boolean;
}

export class Serial8250 implements BusDevice {
  readonly name: string;

  // Registers.
  private ier = 0;
  private lcr = 0;
  private mcr = 0;
  private scr = 0;
  private dll = 0x0c;
  private dlm = 0;
  private fifoEnabled = false;
  private fcrTrigger = 0; // FCR bits 7:6
  /** LSR error bits (OE/PE/FE/BI), sticky until LSR is read. */
  private lsrErrors = 0;
  /** MSR delta bits 3:0, cleared by reading MSR. */
  private msrDelta = 0;
  /** Modem input levels from the host (MSR bits 7:4 layout) used outside loopback. */
  private modemInputs: number;
  /** Current MSR bits 7:4 (host inputs, or MCR outputs in loopback). */
  private msrStatus = 0;
  /** THR-empty interrupt condition (reported only while IER bit 1 is set). */
  private thrInterrupt = false;

  // Receiver: ring buffer; holds 16 bytes with FIFOs enabled, 1 without.
  private readonly rx = new Uint8Array(UART_FIFO_SIZE);
  private rxHead = 0;
  private rxCount = 0;
  /** The value RBR reads when empty: the last byte received (stale holding register). */
  private lastRbr = 0;
  /** receive() refused bytes: tell the host through onRxSpace when room appears. */
  private rxBlocked = false;

  private readonly irqOut: IrqLevel;
  private readonly onTransmit: (byte: number) => void;
  private readonly onRxSpace: (() => void) | undefined;

  // Statistics.
  /** Bytes the guest transmitted (including looped-back ones). */
  txBytes = 0;
  /** Bytes the guest read out of RBR. */
  rxBytes = 0;
  /** Bytes lost to receiver overruns. */
  droppedBytes = 0;

  constructor(options: Serial8250Options = {}) {
    this.name = options.name ?? 'serial8250';
    this.irqOut = new IrqLevel(options.irq);
    this.onTransmit = options.onTransmit ?? (() => {});
    this.onRxSpace = options.onRxSpace;
    const m = options.modemInputs ?? {};
    this.modemInputs =
      ((m.cts ?? true) ? MSR_CTS : 0) | ((m.dsr ?? true) ? MSR_DSR : 0) | ((m.ri ?? false) ? MSR_RI : 0) | ((m.dcd ?? true) ? MSR_DCD : 0);
    this.reset();
  }

  /** Master reset (power-on state). The scratch register and divisor are not touched by MR on the chip; here they are reset too. */
  reset(): void {
    this.ier = 0;
    this.lcr = 0;
    this.mcr = 0;
    this.scr = 0;
    this.dll = 0x0c; // 9600 baud
    this.dlm = 0;
    this.fifoEnabled = false;
    this.fcrTrigger = 0;
    this.lsrErrors = 0;
    this.msrDelta = 0;
    this.msrStatus = this.modemInputs;
    this.thrInterrupt = false;
    this.rxHead = 0;
    this.rxCount = 0;
    this.lastRbr = 0;
    this.updateIrq();
  }

  // ---------------------------------------------------------------- host side

  /** Bytes the receiver can take from the host right now. */
  get rxSpace(): number {
    if (this.mcr & MCR_LOOP) return 0;
    return this.rxCapacity - this.rxCount;
  }

  /** Bytes waiting in the receiver for the guest. */
  get rxPending(): number {
    return this.rxCount;
  }

  /** Current level of the interrupt output. */
  get irqLevel(): boolean {
    return this.irqOut.level;
  }

  /** Divisor latch value (DLM:DLL); 0 is treated by real UARTs as 65536. */
  get divisor(): number {
    return (this.dlm << 8) | this.dll;
  }

  get baudRate(): number {
    const d = this.divisor;
    return UART_BASE_BAUD / (d === 0 ? 0x10000 : d);
  }

  get fifoEnabledState(): boolean {
    return this.fifoEnabled;
  }

  /**
   * Bytes arriving on the serial line. Returns how many were taken into the receiver;
   * without `overrun` the caller keeps the rest and pushes them after `onRxSpace`.
   * Refuses everything in loopback mode.
   */
  receive(bytes: Uint8Array, options: ReceiveOptions = {}): number {
    if (bytes.length === 0) return 0;
    if (this.mcr & MCR_LOOP) {
      if (!options.overrun) this.rxBlocked = true;
      return 0;
    }
    let taken = 0;
    if (options.overrun) {
      for (let i = 0; i < bytes.length; i++) if (this.lineReceive(bytes[i])) taken++;
    } else {
      const n = Math.min(bytes.length, this.rxCapacity - this.rxCount);
      for (let i = 0; i < n; i++) this.rxPush(bytes[i]);
      taken = n;
      if (n < bytes.length) this.rxBlocked = true;
    }
    this.updateIrq();
    return taken;
  }

  /** Sets the modem status inputs (outside loopback they show in MSR, with delta bits). */
  setModemInputs(inputs: { cts?: boolean; dsr?: boolean; ri?: boolean; dcd?: boolean }): void {
    const bit = (v: boolean | undefined, mask: number): number => (v === undefined ? this.modemInputs & mask : v ? mask : 0);
    this.modemInputs = bit(inputs.cts, MSR_CTS) | bit(inputs.dsr, MSR_DSR) | bit(inputs.ri, MSR_RI) | bit(inputs.dcd, MSR_DCD);
    this.refreshModemStatus();
    this.updateIrq();
  }

  /** A break condition on the line: a zero byte with LSR BI (lost with OE if full). */
  receiveBreak(): void {
    if (this.mcr & MCR_LOOP) return;
    this.lineReceive(0);
    this.lsrErrors |= LSR_BI;
    this.updateIrq();
  }

  // ---------------------------------------------------------------- bus side

  read(offset: number, size: AccessSize): number {
    return readBytewise(offset, size, (o) => this.readByte(o));
  }

  write(offset: number, size: AccessSize, value: number): void {
    writeBytewise(offset, size, value, (o, b) => this.writeByte(o, b));
  }

  private readByte(offset: number): number {
    if (!Number.isInteger(offset) || offset < 0 || offset > 7) return 0xff;
    const dlab = (this.lcr & LCR_DLAB) !== 0;
    switch (offset) {
      case UART_RBR:
        return dlab ? this.dll : this.readRbr();
      case UART_IER:
        return dlab ? this.dlm : this.ier;
      case UART_IIR:
        return this.readIir();
      case UART_LCR:
        return this.lcr;
      case UART_MCR:
        return this.mcr;
      case UART_LSR:
        return this.readLsr();
      case UART_MSR:
        return this.readMsr();
      default: // UART_SCR
        return this.scr;
    }
  }

  private writeByte(offset: number, v: number): void {
    if (!Number.isInteger(offset) || offset < 0 || offset > 7) return;
    const dlab = (this.lcr & LCR_DLAB) !== 0;
    switch (offset) {
      case UART_THR:
        if (dlab) this.dll = v;
        else this.writeThr(v);
        return;
      case UART_IER:
        if (dlab) this.dlm = v;
        else this.writeIer(v);
        return;
      case UART_FCR:
        this.writeFcr(v);
        return;
      case UART_LCR:
        this.lcr = v;
        return;
      case UART_MCR:
        this.writeMcr(v);
        return;
      case UART_LSR:
      case UART_MSR:
        return; // factory test registers on the real chip: writes ignored
      default: // UART_SCR
        this.scr = v;
        return;
    }
  }

  private readRbr(): number {
    if (this.rxCount === 0) return this.lastRbr;
    const wasFull = this.rxCount >= this.rxCapacity;
    const byte = this.rx[this.rxHead];
    this.rxHead = (this.rxHead + 1) % UART_FIFO_SIZE;
    this.rxCount--;
    this.lastRbr = byte;
    this.rxBytes++;
    this.updateIrq();
    if (wasFull || this.rxCount === 0) this.notifyRxSpace();
    return byte;
  }

  private readIir(): number {
    const id = this.pendingInterrupt();
    if (id === IIR_THRI) {
      // Reading IIR while it reports THR empty clears that interrupt.
      this.thrInterrupt = false;
      this.updateIrq();
    }
    return id | (this.fifoEnabled ? IIR_FIFO_ENABLED : 0);
  }

  private readLsr(): number {
    let lsr = LSR_THRE | LSR_TEMT | this.lsrErrors;
    if (this.rxCount > 0) lsr |= LSR_DR;
    if (this.lsrErrors) {
      this.lsrErrors = 0;
      this.updateIrq();
    }
    return lsr;
  }

  private readMsr(): number {
    const msr = this.msrStatus | this.msrDelta;
    if (this.msrDelta) {
      this.msrDelta = 0;
      this.updateIrq();
    }
    return msr;
  }

  private writeThr(v: number): void {
    this.txBytes++;
    if (this.mcr & MCR_LOOP) this.lineReceive(v);
    else this.onTransmit(v);
    // Sent at once: THR is empty again, which (re)arms the THRE interrupt.
    this.thrInterrupt = true;
    this.updateIrq();
  }

  private writeIer(v: number): void {
    const old = this.ier;
    this.ier = v & 0x0f;
    // Enabling the THRE interrupt while THR is empty (always, here) raises it.
    if (this.ier & IER_THRI && !(old & IER_THRI)) this.thrInterrupt = true;
    this.updateIrq();
  }

  private writeFcr(v: number): void {
    const enable = (v & FCR_ENABLE_FIFO) !== 0;
    let cleared = false;
    if (enable !== this.fifoEnabled) {
      // Changing FCR bit 0 empties both FIFOs.
      this.fifoEnabled = enable;
      this.rxClear();
      cleared = true;
    }
    // The other bits are only programmed while bit 0 is (being) set.
    if (enable) {
      if (v & FCR_CLEAR_RCVR) {
        this.rxClear();
        cleared = true;
      }
      // FCR_CLEAR_XMIT: the transmitter is always empty here.
      this.fcrTrigger = (v & FCR_TRIGGER_MASK) >> 6;
      // FCR_DMA_SELECT (bit 3): no DMA here, nothing to select.
    }
    this.updateIrq();
    if (cleared) this.notifyRxSpace();
  }

  private writeMcr(v: number): void {
    const wasLoop = (this.mcr & MCR_LOOP) !== 0;
    this.mcr = v & 0x1f;
    this.refreshModemStatus();
    this.updateIrq();
    if (wasLoop && !(this.mcr & MCR_LOOP)) this.notifyRxSpace();
  }

  // ---------------------------------------------------------------- internals

  private get rxCapacity(): number {
    return this.fifoEnabled ? UART_FIFO_SIZE : 1;
  }

  private rxPush(byte: number): void {
    this.rx[(this.rxHead + this.rxCount) % UART_FIFO_SIZE] = byte;
    this.rxCount++;
  }

  private rxClear(): void {
    this.rxHead = 0;
    this.rxCount = 0;
  }

  /** A byte arriving from the line; returns false if it was lost to an overrun. */
  private lineReceive(byte: number): boolean {
    if (this.rxCount < this.rxCapacity) {
      this.rxPush(byte & 0xff);
      return true;
    }
    this.lsrErrors |= LSR_OE;
    this.droppedBytes++;
    if (!this.fifoEnabled) {
      // 16450 mode: the new character overwrites the holding register.
      this.rx[this.rxHead] = byte & 0xff;
    }
    // FIFO mode: the character in the shift register is overwritten; the FIFO keeps its bytes.
    return false;
  }

  private notifyRxSpace(): void {
    if (!this.rxBlocked || this.rxSpace === 0) return;
    this.rxBlocked = false;
    this.onRxSpace?.();
  }

  private refreshModemStatus(): void {
    let status: number;
    if (this.mcr & MCR_LOOP) {
      const m = this.mcr;
      status = (m & MCR_RTS ? MSR_CTS : 0) | (m & MCR_DTR ? MSR_DSR : 0) | (m & MCR_OUT1 ? MSR_RI : 0) | (m & MCR_OUT2 ? MSR_DCD : 0);
    } else {
      status = this.modemInputs;
    }
    const changed = status ^ this.msrStatus;
    if (changed & MSR_CTS) this.msrDelta |= MSR_DCTS;
    if (changed & MSR_DSR) this.msrDelta |= MSR_DDSR;
    if (changed & MSR_DCD) this.msrDelta |= MSR_DDCD;
    if (changed & MSR_RI && !(status & MSR_RI)) this.msrDelta |= MSR_TERI; // trailing edge of RI
    this.msrStatus = status;
  }

  /** The IIR bits 3:0 for the highest-priority enabled pending interrupt. */
  private pendingInterrupt(): number {
    const ier = this.ier;
    if (ier & IER_RLSI && this.lsrErrors & LSR_ERROR_BITS) return IIR_RLSI;
    if (ier & IER_RDI && this.rxCount > 0) {
      if (!this.fifoEnabled || this.rxCount >= TRIGGER_LEVELS[this.fcrTrigger]) return IIR_RDI;
      return IIR_RX_TIMEOUT;
    }
    if (ier & IER_THRI && this.thrInterrupt) return IIR_THRI;
    if (ier & IER_MSI && this.msrDelta) return IIR_MSI;
    return IIR_NO_INT;
  }

  private updateIrq(): void {
    this.irqOut.set(this.pendingInterrupt() !== IIR_NO_INT && (this.mcr & MCR_OUT2) !== 0);
  }
}
