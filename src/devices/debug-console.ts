// Port 0xE9: the Bochs/QEMU "debugcon" console. Each byte a guest writes goes to
// `onOutput`; a read returns 0xE9 so a guest can check the console is there before
// using it (what Bochs's port_e9_hack and QEMU's isa-debugcon do).
//
// Register: `pio.register(0xe9, 1, new DebugConsole({ onOutput: (b) => ... }))`.

import type { AccessSize, BusDevice } from '../bus/bus';

export const DEBUGCON_READBACK = 0xe9;

export interface DebugConsoleOptions {
  /** Device name on the bus (default "debugcon"). */
  name?: string;
  /** Each byte written. */
  onOutput?: (byte: number) => void;
  /** What reads return (default 0xE9). */
  readback?: number;
}

export class DebugConsole implements BusDevice {
  readonly name: string;
  /** Bytes written. */
  bytesWritten = 0;
  private readonly onOutput: (byte: number) => void;
  private readonly readback: number;

  constructor(options: DebugConsoleOptions = {}) {
    this.name = options.name ?? 'debugcon';
    this.onOutput = options.onOutput ?? (() => {});
    this.readback = (options.readback ?? DEBUGCON_READBACK) & 0xff;
  }

  read(offset: number, _size: AccessSize): number {
    return offset === 0 ? this.readback : 0xff;
  }

  /** The low byte of the access is the character (wider writes are not split). */
  write(offset: number, _size: AccessSize, value: number): void {
    if (offset !== 0) return;
    const byte = typeof value === 'number' ? (value >>> 0) & 0xff : 0;
    this.bytesWritten++;
    this.onOutput(byte);
  }
}
