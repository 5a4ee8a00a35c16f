// Interrupt lines between device models and whatever delivers interrupts
// (KVM's in-kernel irqchip via KVM_IRQ_LINE / irqfd, or a test recorder).
//
// A device drives its line with a level: true = asserted. ISA devices on a PC
// are edge-triggered at the 8259 but the VMM hands levels to KVM, which turns
// a low→high transition into the edge; a device that wants a fresh edge for a
// new event while the line is already high must drop it first (see IrqLevel.pulse).

/** An interrupt line: called with the new level of the device's output. */
export type IrqLine = (level: boolean) => void;

/** A line that goes nowhere (device not wired to an interrupt). */
export const noIrq: IrqLine = () => {};

/**
 * Remembers the level last driven on a line and calls the line only when the
 * level changes, so a device can recompute its output after every register
 * access without flooding the interrupt controller.
 */
export class IrqLevel {
  private current = false;
  /** Number of low→high transitions driven (for statistics and tests). */
  raised = 0;

  constructor(private readonly line: IrqLine = noIrq) {}

  get level(): boolean {
    return this.current;
  }

  set(level: boolean): void {
    if (level === this.current) return;
    this.current = level;
    if (level) this.raised++;
    this.line(level);
  }

  /** Drops the line if it is high, so that a following set(true) is a new edge. */
  lower(): void {
    this.set(false);
  }
}
