// struct kvm_guest_debug (<linux/kvm.h>) with the x86 struct kvm_guest_debug_arch, 72 bytes:
//   control u32 @0, pad u32 @4, arch.debugreg u64[8] @8 (DR0-DR7).

export const KVM_GUEST_DEBUG_SIZE = 72;

export interface GuestDebug {
  /** KVM_GUESTDBG_* bits (constants.ts: GuestDebug). */
  control: number;
  /** DR0-DR3 breakpoint addresses, DR6 (unused on set), DR7 control. */
  debugreg: bigint[];
}

export function encodeGuestDebug(d: GuestDebug): Uint8Array {
  const buf = new Uint8Array(KVM_GUEST_DEBUG_SIZE);
  const view = new DataView(buf.buffer);
  view.setUint32(0, d.control >>> 0, true);
  for (let i = 0; i < 8; i++) view.setBigUint64(8 + i * 8, BigInt.asUintN(64, d.debugreg[i] ?? 0n), true);
  return buf;
}
