// Local APIC set-up through KVM_GET_LAPIC / KVM_SET_LAPIC (struct
// kvm_lapic_state: the 1 KiB APIC register page, register at its MMIO offset).
//
// A PC's firmware leaves the BSP's LINT0 as ExtINT (the 8259 PIC's output
// passes through: "virtual wire" mode) and LINT1 as NMI (Intel MP spec 1.4,
// 3.6.2.2; SDM Vol. 3A, 11.5.1 "Local Vector Table").
import type { Vcpu } from '../../kvm/vcpu';

export const APIC_LVT_LINT0 = 0x350;
export const APIC_LVT_LINT1 = 0x360;
/** LVT delivery mode field, bits 10:8. */
const DELIVERY_MODE_MASK = 0x700;
export const APIC_MODE_NMI = 0x4 << 8;
export const APIC_MODE_EXTINT = 0x7 << 8;

export function setupLapicVirtualWire(vcpu: Vcpu): void {
  const state = vcpu.getLapic();
  const view = new DataView(state.buffer);
  const lint0 = view.getUint32(APIC_LVT_LINT0, true);
  const lint1 = view.getUint32(APIC_LVT_LINT1, true);
  view.setUint32(APIC_LVT_LINT0, ((lint0 & ~DELIVERY_MODE_MASK) | APIC_MODE_EXTINT) >>> 0, true);
  view.setUint32(APIC_LVT_LINT1, ((lint1 & ~DELIVERY_MODE_MASK) | APIC_MODE_NMI) >>> 0, true);
  vcpu.setLapic(state);
}

/**
 * The Interrupt Request Register: 256 bits in eight 32-bit registers at
 * 0x200, 0x210, ... 0x270 (SDM Vol. 3A, 11.8.4 "Interrupt Acceptance for
 * Fixed Interrupts", Table 11-1). A set bit is an interrupt the local APIC
 * accepted and has not yet delivered to the CPU.
 */
export const APIC_IRR = 0x200;

/** Whether a register page from KVM_GET_LAPIC has any IRR bit set. */
export function lapicHasRequestedInterrupt(state: Uint8Array): boolean {
  if (state.byteLength < APIC_IRR + 0x80) throw new RangeError('not a local APIC register page');
  const view = new DataView(state.buffer, state.byteOffset, state.byteLength);
  for (let i = 0; i < 8; i++) if (view.getUint32(APIC_IRR + 0x10 * i, true) !== 0) return true;
  return false;
}
