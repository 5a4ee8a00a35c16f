// Port 0x80: the POST-code port. Firmware and boot code write progress codes here (a
// "POST card" shows them); Linux also writes to it as an I/O delay (`io_delay=0x80`).
// The device records the last value and counts writes; reads return the last byte
// written, as the latch on a POST card does (0 before any write).
//
// Register: `pio.register(0x80, 1, new DebugPort())`.

import type { AccessSize, BusDevice } from '../bus/bus';

export interface DebugPortOptions {
  /** Device name on the bus (default "post-code"). */
  name?: string;
  /** Called with each value written (masked to the access size). */
  onWrite?: (value: number, size: AccessSize) => void;
}

export class DebugPort implements BusDevice {
  readonly name: string;
  /** Last value written (masked to its access size). */
  lastValue = 0;
  /** Number of writes. */
  writes = 0;
  private readonly onWrite: ((value: number, size: AccessSize) => void) | undefined;

  constructor(options: DebugPortOptions = {}) {
    this.name = options.name ?? 'post-code';
    this.onWrite = options.onWrite;
  }

  read(offset: number, size: AccessSize): number {
    if (offset !== 0) return size === 4 ? 0xffffffff : size === 2 ? 0xffff : 0xff;
    return this.lastValue & 0xff;
  }

  write(offset: number, size: AccessSize, value: number): void {
    if (offset !== 0) return;
    const mask = size === 4 ? 0xffffffff : size === 2 ? 0xffff : 0xff;
    const v = typeof value === 'number' ? ((value >>> 0) & mask) >>> 0 : 0;
    this.lastValue = v;
    this.writes++;
    this.onWrite?.(v, size === 4 || size === 2 ? size : 1);
  }
}
