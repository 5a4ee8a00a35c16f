// struct kvm_fpu (<asm/kvm.h>, x86), 416 bytes:
//   fpr u8[8][16] @0, fcw u16 @128, fsw u16 @130, ftwx u8 @132, pad1 u8 @133,
//   last_opcode u16 @134, last_ip u64 @136, last_dp u64 @144,
//   xmm u8[16][16] @152, mxcsr u32 @408, pad2 u32 @412.
// KVM does not copy mxcsr in KVM_GET_FPU/KVM_SET_FPU: use Vcpu.getMxcsr() (xsave.ts).

export const KVM_FPU_SIZE = 416;

export interface Fpu {
  /** x87 registers ST0-ST7, 16 bytes each (80-bit value + padding). */
  fpr: Uint8Array[];
  fcw: number;
  fsw: number;
  /** Abridged tag word (one bit per register, as in FXSAVE). */
  ftwx: number;
  lastOpcode: number;
  lastIp: bigint;
  lastDp: bigint;
  xmm: Uint8Array[];
  mxcsr: number;
}

export function decodeFpu(buf: Uint8Array): Fpu {
  if (buf.byteLength < KVM_FPU_SIZE) throw new RangeError('kvm_fpu buffer too small');
  const view = new DataView(buf.buffer, buf.byteOffset, KVM_FPU_SIZE);
  const bytes = (at: number) => buf.slice(at, at + 16);
  return {
    fpr: Array.from({ length: 8 }, (_, i) => bytes(i * 16)),
    fcw: view.getUint16(128, true),
    fsw: view.getUint16(130, true),
    ftwx: view.getUint8(132),
    lastOpcode: view.getUint16(134, true),
    lastIp: view.getBigUint64(136, true),
    lastDp: view.getBigUint64(144, true),
    xmm: Array.from({ length: 16 }, (_, i) => bytes(152 + i * 16)),
    mxcsr: view.getUint32(408, true),
  };
}

export function encodeFpu(fpu: Fpu, buf: Uint8Array = new Uint8Array(KVM_FPU_SIZE)): Uint8Array {
  if (buf.byteLength < KVM_FPU_SIZE) throw new RangeError('kvm_fpu buffer too small');
  const view = new DataView(buf.buffer, buf.byteOffset, KVM_FPU_SIZE);
  buf.fill(0, 0, KVM_FPU_SIZE);
  fpu.fpr.slice(0, 8).forEach((r, i) => buf.set(r.subarray(0, 16), i * 16));
  view.setUint16(128, fpu.fcw, true);
  view.setUint16(130, fpu.fsw, true);
  view.setUint8(132, fpu.ftwx);
  view.setUint16(134, fpu.lastOpcode, true);
  view.setBigUint64(136, fpu.lastIp, true);
  view.setBigUint64(144, fpu.lastDp, true);
  fpu.xmm.slice(0, 16).forEach((r, i) => buf.set(r.subarray(0, 16), 152 + i * 16));
  view.setUint32(408, fpu.mxcsr, true);
  return buf;
}

/** The reset state of the FPU: FCW 0x37f (SDM Vol. 1, 8.1.5), MXCSR 0x1f80 (SDM Vol. 1, 10.2.3.1). */
export function resetFpu(): Fpu {
  return {
    fpr: Array.from({ length: 8 }, () => new Uint8Array(16)),
    fcw: 0x37f,
    fsw: 0,
    ftwx: 0,
    lastOpcode: 0,
    lastIp: 0n,
    lastDp: 0n,
    xmm: Array.from({ length: 16 }, () => new Uint8Array(16)),
    mxcsr: 0x1f80,
  };
}
