// Shared PCI INTx lines.
//
// PCI interrupts are level-triggered and shareable (PCI 3.0 §2.2.6): several
// functions may drive the same interrupt line, which is asserted while ANY of
// them asserts it (wired-OR). With the _PRT swizzle in acpi.ts slots 1 and 5
// both land on GSI 17, so the VMM cannot hand each device's level straight to
// KVM_IRQ_LINE — the second device dropping its line would hide the first
// one's pending interrupt. IntxRouter keeps, per GSI, the set of devices that
// assert it and tells the interrupt controller only about changes of the OR.

/** Sets the level of a GSI at the interrupt controller (e.g. Vm.setIrqLine). */
export type GsiSetter = (gsi: number, level: boolean) => void;

export class IntxRouter {
  private readonly asserted = new Map<number, Set<object>>();

  constructor(private readonly setGsi: GsiSetter) {}

  /** A line for one device on `gsi`: call it with the device's own level. */
  line(gsi: number): (level: boolean) => void {
    const owner = {};
    return (level: boolean) => this.drive(gsi, owner, level);
  }

  /** Whether any device asserts `gsi` now. */
  level(gsi: number): boolean {
    return (this.asserted.get(gsi)?.size ?? 0) > 0;
  }

  private drive(gsi: number, owner: object, level: boolean): void {
    let set = this.asserted.get(gsi);
    if (!set) {
      set = new Set();
      this.asserted.set(gsi, set);
    }
    const before = set.size > 0;
    if (level) set.add(owner);
    else set.delete(owner);
    const after = set.size > 0;
    if (before !== after) this.setGsi(gsi, after);
  }
}
