// struct kvm_xcrs (KVM_GET_XCRS / KVM_SET_XCRS, <asm/kvm.h>), 392 bytes:
//   nr_xcrs u32 @0, flags u32 @4, xcrs struct kvm_xcr[16] @8, padding u64[16] @264;
//   struct kvm_xcr: xcr u32 @0, reserved u32 @4, value u64 @8 (16 bytes).
// x86 has one extended control register today: XCR0, the XSAVE feature
// enable mask (SDM Vol. 1, 13.3).
export const KVM_XCRS_SIZE = 392;
export const KVM_MAX_XCRS = 16;
const XCRS_OFFSET = 8;
const XCR_SIZE = 16;

export interface Xcr {
  index: number;
  value: bigint;
}

export function decodeXcrs(buf: Uint8Array): Xcr[] {
  if (buf.byteLength < KVM_XCRS_SIZE) throw new RangeError('kvm_xcrs buffer too small');
  const view = new DataView(buf.buffer, buf.byteOffset, KVM_XCRS_SIZE);
  // KVM fills nr_xcrs; a larger value than the array holds is clamped rather than trusted.
  const count = Math.min(view.getUint32(0, true), KVM_MAX_XCRS);
  return Array.from({ length: count }, (_, i) => ({
    index: view.getUint32(XCRS_OFFSET + i * XCR_SIZE, true),
    value: view.getBigUint64(XCRS_OFFSET + i * XCR_SIZE + 8, true),
  }));
}

export function encodeXcrs(xcrs: readonly Xcr[], buf: Uint8Array = new Uint8Array(KVM_XCRS_SIZE)): Uint8Array {
  if (buf.byteLength < KVM_XCRS_SIZE) throw new RangeError('kvm_xcrs buffer too small');
  if (xcrs.length > KVM_MAX_XCRS) throw new RangeError(`kvm_xcrs holds at most ${KVM_MAX_XCRS} registers`);
  const view = new DataView(buf.buffer, buf.byteOffset, KVM_XCRS_SIZE);
  buf.fill(0, 0, KVM_XCRS_SIZE);
  view.setUint32(0, xcrs.length, true);
  xcrs.forEach((xcr, i) => {
    view.setUint32(XCRS_OFFSET + i * XCR_SIZE, xcr.index, true);
    view.setBigUint64(XCRS_OFFSET + i * XCR_SIZE + 8, BigInt.asUintN(64, xcr.value), true);
  });
  return buf;
}
