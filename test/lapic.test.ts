// The local APIC register page helpers (struct kvm_lapic_state: the 1 KiB
// APIC page, each register at its MMIO offset; SDM Vol. 3A, Table 11-1).
import { APIC_IRR, lapicHasRequestedInterrupt } from '../src/arch/x86/lapic';
import { KVM_LAPIC_STATE_SIZE } from '../src/kvm/vcpu';

describe('lapicHasRequestedInterrupt', () => {
  test('an empty IRR has nothing requested', () => {
    expect(lapicHasRequestedInterrupt(new Uint8Array(KVM_LAPIC_STATE_SIZE))).toBe(false);
  });

  test('any of the 256 IRR bits counts, in any of the eight registers', () => {
    for (const vector of [0, 31, 32, 0xef, 0xfd, 255]) {
      const page = new Uint8Array(KVM_LAPIC_STATE_SIZE);
      const view = new DataView(page.buffer);
      view.setUint32(APIC_IRR + 0x10 * (vector >> 5), (1 << (vector & 31)) >>> 0, true);
      expect(lapicHasRequestedInterrupt(page)).toBe(true);
    }
  });

  test('bits in the 12 padding bytes after each IRR register, or in the ISR next to it, do not count', () => {
    const page = new Uint8Array(KVM_LAPIC_STATE_SIZE);
    for (let i = 0; i < 8; i++) page.fill(0xff, APIC_IRR + 0x10 * i + 4, APIC_IRR + 0x10 * i + 16);
    page.fill(0xff, 0x100, 0x180); // ISR
    expect(lapicHasRequestedInterrupt(page)).toBe(false);
  });

  test('a view into a larger buffer is read at its own offset', () => {
    const backing = new Uint8Array(KVM_LAPIC_STATE_SIZE + 64);
    const page = backing.subarray(64);
    expect(lapicHasRequestedInterrupt(page)).toBe(false);
    page[APIC_IRR + 0x70] = 1;
    expect(lapicHasRequestedInterrupt(page)).toBe(true);
  });

  test('a buffer too short to hold the IRR is refused', () => {
    expect(() => lapicHasRequestedInterrupt(new Uint8Array(APIC_IRR + 0x7f))).toThrow(RangeError);
  });
});
