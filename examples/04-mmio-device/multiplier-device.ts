// A memory-mapped device in a few lines of TypeScript: a 32-bit multiplier.
//
//   +0x0 OPERAND_A (read/write)   +0x4 OPERAND_B (read/write)
//   +0x8 PRODUCT   (read-only: A * B, low 32 bits)
//   +0xC CHAR_OUT  (write-only: prints the low byte)
//
// The guest's loads and stores to these addresses are not RAM: KVM exits with
// KVM_EXIT_MMIO, the exit loop hands the access to the MMIO bus, and the bus
// calls read()/write() here with the offset inside the device's window.
import type { AccessSize, BusDevice } from '../../src';

export class MultiplierDevice implements BusDevice {
  readonly name = 'multiplier';
  private a = 0;
  private b = 0;

  constructor(private readonly print: (byte: number) => void) {}

  read(offset: number, _size: AccessSize): number {
    switch (offset) {
      case 0x0:
        return this.a;
      case 0x4:
        return this.b;
      case 0x8:
        // Math.imul keeps the low 32 bits exactly, like the hardware would.
        return Math.imul(this.a, this.b) >>> 0;
      default:
        return 0;
    }
  }

  write(offset: number, _size: AccessSize, value: number): void {
    if (offset === 0x0) this.a = value;
    else if (offset === 0x4) this.b = value;
    else if (offset === 0xc) this.print(value & 0xff);
  }
}
