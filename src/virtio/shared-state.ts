// The part of a virtio device's state that two threads touch when its queues
// are served on the I/O thread (src/vmm/io-worker.ts) while the vCPU thread
// keeps the transport's registers (virtio-pci.ts): the ISR status byte, the
// device's DEVICE_NEEDS_RESET bit, the driver's FAILED bit, the PCI
// Interrupt-Disable bit and a few
// counters. One small SharedArrayBuffer of Int32 cells, changed only with
// Atomics, so either thread may raise an interrupt or report an error.
//
// Interrupt rule (both threads): whoever sets ISR bits while the ISR was 0
// asserts the line (raiseIsr returns true); the guest's ISR read clears it
// (§4.1.4.5 "reading this register resets it to 0"). With an irqfd in
// resample mode KVM lowers the line at the guest's EOI and the I/O thread
// asserts it again if the ISR is not 0 by then (see io-worker.ts).

/** Cell indices. */
const ISR = 0;
const NEEDS_RESET = 1;
const INTX_DISABLED = 2;
const NOTIFICATIONS = 3;
const USED_INTERRUPTS = 4;
const CONFIG_INTERRUPTS = 5;
const ERRORS = 6;
const NEEDS_RESET_EPISODES = 7;
const DRIVER_FAILED = 8;
const CELLS = 9;

export class VirtioSharedState {
  readonly buffer: SharedArrayBuffer;
  private readonly cells: Int32Array;

  /** A fresh state, or a view of one another thread created (pass its `buffer`). */
  constructor(buffer?: SharedArrayBuffer) {
    this.buffer = buffer ?? new SharedArrayBuffer(CELLS * 4);
    if (this.buffer.byteLength < CELLS * 4) throw new RangeError('virtio shared state buffer is too small');
    this.cells = new Int32Array(this.buffer, 0, CELLS);
  }

  /** The ISR status byte (§4.1.4.5), without the read side effect. */
  get isr(): number {
    return Atomics.load(this.cells, ISR);
  }

  /** Sets ISR bits; true when the ISR was 0 before, i.e. the caller must assert the line. */
  raiseIsr(bits: number): boolean {
    if (bits & 1) Atomics.add(this.cells, USED_INTERRUPTS, 1);
    if (bits & 2) Atomics.add(this.cells, CONFIG_INTERRUPTS, 1);
    return Atomics.or(this.cells, ISR, bits & 0xff) === 0;
  }

  /** The guest's ISR read: returns the bits and clears them. */
  takeIsr(): number {
    return Atomics.exchange(this.cells, ISR, 0);
  }

  get needsReset(): boolean {
    return Atomics.load(this.cells, NEEDS_RESET) !== 0;
  }

  /** Counts an error; true when this starts a DEVICE_NEEDS_RESET episode (the bit was clear). */
  setNeedsReset(): boolean {
    Atomics.add(this.cells, ERRORS, 1);
    const first = Atomics.exchange(this.cells, NEEDS_RESET, 1) === 0;
    if (first) Atomics.add(this.cells, NEEDS_RESET_EPISODES, 1);
    return first;
  }

  /** The driver set FAILED (§2.1: it "has given up on the device"): no more requests are served until a reset. */
  get driverFailed(): boolean {
    return Atomics.load(this.cells, DRIVER_FAILED) !== 0;
  }

  setDriverFailed(): void {
    Atomics.store(this.cells, DRIVER_FAILED, 1);
  }

  get intxDisabled(): boolean {
    return Atomics.load(this.cells, INTX_DISABLED) !== 0;
  }

  set intxDisabled(disabled: boolean) {
    Atomics.store(this.cells, INTX_DISABLED, disabled ? 1 : 0);
  }

  countNotification(): void {
    Atomics.add(this.cells, NOTIFICATIONS, 1);
  }

  /** Device reset (status 0 written): ISR, DEVICE_NEEDS_RESET and FAILED clear; counters stay. */
  reset(): void {
    Atomics.store(this.cells, ISR, 0);
    Atomics.store(this.cells, NEEDS_RESET, 0);
    Atomics.store(this.cells, DRIVER_FAILED, 0);
  }

  get counts(): { notifications: number; usedInterrupts: number; configInterrupts: number; errors: number; needsReset: number } {
    return {
      notifications: Atomics.load(this.cells, NOTIFICATIONS),
      usedInterrupts: Atomics.load(this.cells, USED_INTERRUPTS),
      configInterrupts: Atomics.load(this.cells, CONFIG_INTERRUPTS),
      errors: Atomics.load(this.cells, ERRORS),
      needsReset: Atomics.load(this.cells, NEEDS_RESET_EPISODES),
    };
  }
}
