// Intel 8042 PS/2 keyboard controller, with no keyboard or mouse plugged in.
//
// It answers the controller commands Linux's i8042 driver (and BIOS-style code) issues at
// boot, so probing finishes quickly and finds the controller but no devices, and it
// implements the reset line: command 0xFE (or any 0xF0-0xFF pulse with bit 0 clear, or an
// output-port write with bit 0 clear) calls `onReset`, which Linux uses for `reboot=k`.
//
// Registering: the controller answers at 0x60 (data) and 0x64 (status/command); 0x61 is
// the PC's system control port B (speaker, NMI status) and is not part of the 8042, so the
// controller exposes two one-byte devices:
//
//   const kbc = new I8042({ onReset: () => machine.reset(), irq1, irq12 });
//   pio.register(0x60, 1, kbc.dataPort);
//   pio.register(0x64, 1, kbc.commandPort);
//
// Status register (read 0x64):
//   bit 0 OBF output buffer full      bit 1 IBF input buffer full (always 0: commands complete at once)
//   bit 2 SYS system flag (= CCB bit 2)  bit 3 CMD last write was to 0x64
//   bit 4 keyboard not inhibited (1)   bit 5 AUXDATA output buffer byte is from the aux port
//   bit 6 timeout (device did not answer)  bit 7 parity error (always 0)
// Controller command byte (CCB, command 0x20/0x60):
//   bit 0 keyboard interrupt enable   bit 1 aux interrupt enable   bit 2 system flag
//   bit 4 keyboard disabled   bit 5 aux disabled   bit 6 scancode translation
//
// Interrupts: IRQ1 is high while the output buffer holds a keyboard byte and CCB bit 0 is
// set; IRQ12 likewise for an aux byte and CCB bit 1. Reading the data port drops the line
// before the next queued byte raises it again, so each byte is a new edge.
//
// Bytes written to the keyboard (data port, no command pending) or to the aux device
// (command 0xD4) find nothing attached: the controller answers 0xFE with the timeout bit,
// which Linux's libps2 treats as a failed command at once.
//
// Nothing a guest writes can throw; accesses wider than a byte act on the low byte.

import type { AccessSize, BusDevice } from '../bus/bus';
import { IrqLevel, type IrqLine } from './irq';

// Status register bits.
export const I8042_STR_OBF = 0x01;
export const I8042_STR_IBF = 0x02;
export const I8042_STR_SYS = 0x04;
export const I8042_STR_CMD = 0x08;
export const I8042_STR_KEYLOCK = 0x10; // 1 = keyboard not inhibited
export const I8042_STR_AUXDATA = 0x20;
export const I8042_STR_TIMEOUT = 0x40;
export const I8042_STR_PARITY = 0x80;

// Command byte bits.
export const I8042_CTR_KBDINT = 0x01;
export const I8042_CTR_AUXINT = 0x02;
export const I8042_CTR_SYS = 0x04;
export const I8042_CTR_IGNKEYLOCK = 0x08;
export const I8042_CTR_KBDDIS = 0x10;
export const I8042_CTR_AUXDIS = 0x20;
export const I8042_CTR_XLATE = 0x40;

// Controller commands (written to 0x64).
export const I8042_CMD_READ_CTR = 0x20;
export const I8042_CMD_WRITE_CTR = 0x60;
export const I8042_CMD_PASSWORD_TEST = 0xa4;
export const I8042_CMD_AUX_DISABLE = 0xa7;
export const I8042_CMD_AUX_ENABLE = 0xa8;
export const I8042_CMD_AUX_TEST = 0xa9;
export const I8042_CMD_SELF_TEST = 0xaa;
export const I8042_CMD_KBD_TEST = 0xab;
export const I8042_CMD_KBD_DISABLE = 0xad;
export const I8042_CMD_KBD_ENABLE = 0xae;
export const I8042_CMD_READ_INPUT = 0xc0;
export const I8042_CMD_READ_OUTPUT = 0xd0;
export const I8042_CMD_WRITE_OUTPUT = 0xd1;
export const I8042_CMD_KBD_LOOP = 0xd2;
export const I8042_CMD_AUX_LOOP = 0xd3;
export const I8042_CMD_AUX_SEND = 0xd4;
export const I8042_CMD_A20_DISABLE = 0xdd;
export const I8042_CMD_A20_ENABLE = 0xdf;
export const I8042_CMD_READ_TEST_INPUTS = 0xe0;
export const I8042_CMD_PULSE_RESET = 0xfe;

/** Output port bits. */
export const I8042_OUT_RESET_N = 0x01; // 0 = CPU held in reset
export const I8042_OUT_A20 = 0x02;

/** Self-test and interface-test answers. */
export const I8042_SELF_TEST_OK = 0x55;
export const I8042_PORT_TEST_OK = 0x00;
/** What an absent PS/2 device "answers" (with the timeout status bit). */
export const PS2_NO_DEVICE = 0xfe;

/** The output queue is bounded; a guest that never reads cannot grow it. */
const OUTPUT_QUEUE_LIMIT = 16;
const DEFAULT_CTR = I8042_CTR_KBDINT | I8042_CTR_AUXINT | I8042_CTR_SYS | I8042_CTR_XLATE;

export interface I8042Options {
  /** The guest pulsed the CPU reset line (command 0xFE, or output port bit 0 cleared). */
  onReset?: () => void;
  /** Keyboard interrupt (ISA IRQ 1). */
  irq1?: IrqLine;
  /** Aux (mouse) interrupt (ISA IRQ 12). */
  irq12?: IrqLine;
  /** The guest changed the A20 gate (output port bit 1). */
  onA20?: (enabled: boolean) => void;
}

interface OutputByte {
  value: number;
  aux: boolean;
  timeout: boolean;
}

/** What a data-port write means, set by the last command that takes a parameter. */
type PendingWrite =
  | { kind: 'none' }
  | { kind: 'ram'; index: number } // 0x60-0x7F: controller RAM (index 0 = CCB)
  | { kind: 'output-port' }
  | { kind: 'kbd-loop' }
  | { kind: 'aux-loop' }
  | { kind: 'aux-send' };

export class I8042 {
  /** Port 0x60: register with length 1. */
  readonly dataPort: BusDevice;
  /** Port 0x64: register with length 1. */
  readonly commandPort: BusDevice;

  /** Controller RAM; byte 0 is the command byte. */
  private readonly ram = new Uint8Array(32);
  private outputPort = I8042_OUT_RESET_N | I8042_OUT_A20;
  private lastWriteWasCommand = false;
  private pending: PendingWrite = { kind: 'none' };
  private readonly queue: OutputByte[] = [];
  /** The output buffer reads its last value again when empty. */
  private lastOutput = 0;

  private readonly irq1: IrqLevel;
  private readonly irq12: IrqLevel;
  private readonly onReset: () => void;
  private readonly onA20: ((enabled: boolean) => void) | undefined;

  /** Times the guest pulsed the reset line. */
  resetCount = 0;
  /** Bytes the guest sent toward the (absent) keyboard / aux device. */
  deviceWrites = 0;

  constructor(options: I8042Options = {}) {
    this.onReset = options.onReset ?? (() => {});
    this.onA20 = options.onA20;
    this.irq1 = new IrqLevel(options.irq1);
    this.irq12 = new IrqLevel(options.irq12);
    this.ram[0] = DEFAULT_CTR;
    const self = this;
    this.dataPort = {
      name: 'i8042-data',
      read(offset: number, size: AccessSize): number {
        return offset === 0 ? self.readData() & sizeMask(size) : onesFor(size);
      },
      write(offset: number, _size: AccessSize, value: number): void {
        if (offset === 0) self.writeData(lowByte(value));
      },
    };
    this.commandPort = {
      name: 'i8042-command',
      read(offset: number, size: AccessSize): number {
        return offset === 0 ? self.status() & sizeMask(size) : onesFor(size);
      },
      write(offset: number, _size: AccessSize, value: number): void {
        if (offset === 0) self.writeCommand(lowByte(value));
      },
    };
  }

  /** Controller command byte. */
  get commandByte(): number {
    return this.ram[0];
  }

  /** A20 gate state (output port bit 1). */
  get a20Enabled(): boolean {
    return (this.outputPort & I8042_OUT_A20) !== 0;
  }

  get irq1Level(): boolean {
    return this.irq1.level;
  }

  get irq12Level(): boolean {
    return this.irq12.level;
  }

  /** Back to the state after a (BIOS-completed) power-on. */
  reset(): void {
    this.ram.fill(0);
    this.ram[0] = DEFAULT_CTR;
    this.outputPort = I8042_OUT_RESET_N | I8042_OUT_A20;
    this.lastWriteWasCommand = false;
    this.pending = { kind: 'none' };
    this.queue.length = 0;
    this.lastOutput = 0;
    this.updateIrq();
  }

  /** Status register (port 0x64 read). */
  status(): number {
    let s = I8042_STR_KEYLOCK;
    if (this.ram[0] & I8042_CTR_SYS) s |= I8042_STR_SYS;
    if (this.lastWriteWasCommand) s |= I8042_STR_CMD;
    const head = this.queue[0];
    if (head) {
      s |= I8042_STR_OBF;
      if (head.aux) s |= I8042_STR_AUXDATA;
      if (head.timeout) s |= I8042_STR_TIMEOUT;
    }
    return s;
  }

  /** Data port (0x60) read: takes the output buffer. */
  readData(): number {
    const head = this.queue.shift();
    if (!head) return this.lastOutput;
    this.lastOutput = head.value;
    // Drop the lines first so that a next queued byte is a fresh edge.
    this.irq1.lower();
    this.irq12.lower();
    this.updateIrq();
    return head.value;
  }

  /** Data port (0x60) write: a command parameter, or a byte for the keyboard. */
  writeData(v: number): void {
    this.lastWriteWasCommand = false;
    const p = this.pending;
    this.pending = { kind: 'none' };
    switch (p.kind) {
      case 'ram':
        this.ram[p.index] = v;
        if (p.index === 0) this.updateIrq();
        return;
      case 'output-port':
        this.writeOutputPort(v);
        return;
      case 'kbd-loop':
        this.enqueue(v, false, false);
        return;
      case 'aux-loop':
        this.enqueue(v, true, false);
        return;
      case 'aux-send':
        this.deviceWrites++;
        this.enqueue(PS2_NO_DEVICE, true, true);
        return;
      case 'none':
        this.deviceWrites++;
        this.enqueue(PS2_NO_DEVICE, false, true);
        return;
    }
  }

  /** Command port (0x64) write. */
  writeCommand(cmd: number): void {
    this.lastWriteWasCommand = true;
    this.pending = { kind: 'none' };
    if (cmd >= 0x20 && cmd <= 0x3f) {
      this.enqueue(this.ram[cmd - 0x20], false, false);
      return;
    }
    if (cmd >= 0x60 && cmd <= 0x7f) {
      this.pending = { kind: 'ram', index: cmd - 0x60 };
      return;
    }
    if (cmd >= 0xf0) {
      // Pulse output port lines 0-3 for those bits that are 0; line 0 is CPU reset.
      if (!(cmd & 0x01)) this.pulseReset();
      return;
    }
    switch (cmd) {
      case I8042_CMD_PASSWORD_TEST:
        this.enqueue(0xf1, false, false); // no password installed
        return;
      case I8042_CMD_AUX_DISABLE:
        this.setCtr(this.ram[0] | I8042_CTR_AUXDIS);
        return;
      case I8042_CMD_AUX_ENABLE:
        this.setCtr(this.ram[0] & ~I8042_CTR_AUXDIS);
        return;
      case I8042_CMD_AUX_TEST:
      case I8042_CMD_KBD_TEST:
        this.enqueue(I8042_PORT_TEST_OK, false, false);
        return;
      case I8042_CMD_SELF_TEST:
        this.setCtr(this.ram[0] | I8042_CTR_SYS);
        this.enqueue(I8042_SELF_TEST_OK, false, false);
        return;
      case I8042_CMD_KBD_DISABLE:
        this.setCtr(this.ram[0] | I8042_CTR_KBDDIS);
        return;
      case I8042_CMD_KBD_ENABLE:
        this.setCtr(this.ram[0] & ~I8042_CTR_KBDDIS);
        return;
      case I8042_CMD_READ_INPUT:
        this.enqueue(0x80, false, false); // bit 7: keyboard not inhibited
        return;
      case I8042_CMD_READ_OUTPUT:
        this.enqueue(this.outputPort, false, false);
        return;
      case I8042_CMD_WRITE_OUTPUT:
        this.pending = { kind: 'output-port' };
        return;
      case I8042_CMD_KBD_LOOP:
        this.pending = { kind: 'kbd-loop' };
        return;
      case I8042_CMD_AUX_LOOP:
        this.pending = { kind: 'aux-loop' };
        return;
      case I8042_CMD_AUX_SEND:
        this.pending = { kind: 'aux-send' };
        return;
      case I8042_CMD_A20_DISABLE:
        this.writeOutputPort(this.outputPort & ~I8042_OUT_A20);
        return;
      case I8042_CMD_A20_ENABLE:
        this.writeOutputPort(this.outputPort | I8042_OUT_A20);
        return;
      case I8042_CMD_READ_TEST_INPUTS:
        this.enqueue(0x00, false, false);
        return;
      default:
        return; // unknown or unimplemented command: ignored
    }
  }

  private setCtr(v: number): void {
    this.ram[0] = v & 0xff;
    this.updateIrq();
  }

  private writeOutputPort(v: number): void {
    const oldA20 = this.outputPort & I8042_OUT_A20;
    this.outputPort = v & 0xff;
    if ((this.outputPort & I8042_OUT_A20) !== oldA20) this.onA20?.((this.outputPort & I8042_OUT_A20) !== 0);
    if (!(this.outputPort & I8042_OUT_RESET_N)) {
      this.outputPort |= I8042_OUT_RESET_N; // the reset is a pulse; the machine comes back up
      this.pulseReset();
    }
  }

  private pulseReset(): void {
    this.resetCount++;
    this.onReset();
  }

  private enqueue(value: number, aux: boolean, timeout: boolean): void {
    if (this.queue.length >= OUTPUT_QUEUE_LIMIT) return;
    this.queue.push({ value: value & 0xff, aux, timeout });
    this.updateIrq();
  }

  private updateIrq(): void {
    const head = this.queue[0];
    const ctr = this.ram[0];
    this.irq1.set(head !== undefined && !head.aux && (ctr & I8042_CTR_KBDINT) !== 0);
    this.irq12.set(head !== undefined && head.aux && (ctr & I8042_CTR_AUXINT) !== 0);
  }
}

function lowByte(value: number): number {
  return typeof value === 'number' ? (value >>> 0) & 0xff : 0;
}

function sizeMask(size: AccessSize): number {
  return size === 4 ? 0xffffffff : size === 2 ? 0xffff : 0xff;
}

function onesFor(size: AccessSize): number {
  return sizeMask(size) >>> 0;
}
