// struct kvm_xsave (KVM_GET_XSAVE / KVM_SET_XSAVE): u32 region[1024], the
// guest's XSAVE area in standard format (SDM Vol. 1, 13.4). tskvm reads and
// writes only the parts it needs:
//   legacy region (FXSAVE layout, SDM Vol. 1, 10.5.1, Table 10-2):
//     FCW u16 @0, FSW u16 @2, MXCSR u32 @24, MXCSR_MASK u32 @28;
//   XSAVE header @512: XSTATE_BV u64 @512 (SDM Vol. 1, 13.4.2).
// Why not KVM_GET/SET_FPU for MXCSR: struct kvm_fpu has an mxcsr field, but
// KVM does not copy it in either direction (it reads back 0 and writes are
// dropped; measured here), so MXCSR has to go through the XSAVE area. And on
// KVM_SET_XSAVE, MXCSR is only taken when XSTATE_BV has the SSE bit (1) set.
export const KVM_XSAVE_SIZE = 4096;

const MXCSR_OFFSET = 24;
const XSTATE_BV_OFFSET = 512;
/** XSTATE_BV bits for x87 (0) and SSE (1) state. */
export const XFEATURE_MASK_FP = 1n;
export const XFEATURE_MASK_SSE = 2n;

export function xsaveMxcsr(area: Uint8Array): number {
  if (area.byteLength < KVM_XSAVE_SIZE) throw new RangeError('kvm_xsave buffer too small');
  return new DataView(area.buffer, area.byteOffset, KVM_XSAVE_SIZE).getUint32(MXCSR_OFFSET, true);
}

/** Sets MXCSR and marks SSE state present so KVM_SET_XSAVE takes it. */
export function setXsaveMxcsr(area: Uint8Array, mxcsr: number): void {
  if (area.byteLength < KVM_XSAVE_SIZE) throw new RangeError('kvm_xsave buffer too small');
  const view = new DataView(area.buffer, area.byteOffset, KVM_XSAVE_SIZE);
  view.setUint32(MXCSR_OFFSET, mxcsr >>> 0, true);
  view.setBigUint64(XSTATE_BV_OFFSET, view.getBigUint64(XSTATE_BV_OFFSET, true) | XFEATURE_MASK_SSE, true);
}
