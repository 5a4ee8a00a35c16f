// struct kvm_vcpu_events (<asm/kvm.h>, x86), 64 bytes:
//   exception { injected u8 @0, nr u8 @1, has_error_code u8 @2, pending u8 @3, error_code u32 @4 }
//   interrupt { injected u8 @8, nr u8 @9, soft u8 @10, shadow u8 @11 }
//   nmi { injected u8 @12, pending u8 @13, masked u8 @14, pad u8 @15 }
//   sipi_vector u32 @16, flags u32 @20,
//   smi { smm u8 @24, pending u8 @25, smm_inside_nmi u8 @26, latched_init u8 @27 }
//   triple_fault.pending u8 @28 (union with reserved[27]),
//   exception_has_payload u8 @55, exception_payload u64 @56.

export const KVM_VCPU_EVENTS_SIZE = 64;
/** flags: which optional fields are valid (KVM_VCPUEVENT_VALID_*). */
export const VCPU_EVENT_VALID_NMI_PENDING = 0x1;
export const VCPU_EVENT_VALID_SIPI_VECTOR = 0x2;
export const VCPU_EVENT_VALID_SHADOW = 0x4;
export const VCPU_EVENT_VALID_SMM = 0x8;
export const VCPU_EVENT_VALID_PAYLOAD = 0x10;

export interface VcpuEvents {
  exception: { injected: number; nr: number; hasErrorCode: number; pending: number; errorCode: number };
  interrupt: { injected: number; nr: number; soft: number; shadow: number };
  nmi: { injected: number; pending: number; masked: number };
  sipiVector: number;
  flags: number;
  smi: { smm: number; pending: number; smmInsideNmi: number; latchedInit: number };
  tripleFaultPending: number;
  exceptionHasPayload: number;
  exceptionPayload: bigint;
}

export function decodeVcpuEvents(buf: Uint8Array): VcpuEvents {
  if (buf.byteLength < KVM_VCPU_EVENTS_SIZE) throw new RangeError('kvm_vcpu_events buffer too small');
  const v = new DataView(buf.buffer, buf.byteOffset, KVM_VCPU_EVENTS_SIZE);
  return {
    exception: { injected: v.getUint8(0), nr: v.getUint8(1), hasErrorCode: v.getUint8(2), pending: v.getUint8(3), errorCode: v.getUint32(4, true) },
    interrupt: { injected: v.getUint8(8), nr: v.getUint8(9), soft: v.getUint8(10), shadow: v.getUint8(11) },
    nmi: { injected: v.getUint8(12), pending: v.getUint8(13), masked: v.getUint8(14) },
    sipiVector: v.getUint32(16, true),
    flags: v.getUint32(20, true),
    smi: { smm: v.getUint8(24), pending: v.getUint8(25), smmInsideNmi: v.getUint8(26), latchedInit: v.getUint8(27) },
    tripleFaultPending: v.getUint8(28),
    exceptionHasPayload: v.getUint8(55),
    exceptionPayload: v.getBigUint64(56, true),
  };
}

export function encodeVcpuEvents(e: VcpuEvents, buf: Uint8Array = new Uint8Array(KVM_VCPU_EVENTS_SIZE)): Uint8Array {
  if (buf.byteLength < KVM_VCPU_EVENTS_SIZE) throw new RangeError('kvm_vcpu_events buffer too small');
  buf.fill(0, 0, KVM_VCPU_EVENTS_SIZE);
  const v = new DataView(buf.buffer, buf.byteOffset, KVM_VCPU_EVENTS_SIZE);
  v.setUint8(0, e.exception.injected);
  v.setUint8(1, e.exception.nr);
  v.setUint8(2, e.exception.hasErrorCode);
  v.setUint8(3, e.exception.pending);
  v.setUint32(4, e.exception.errorCode >>> 0, true);
  v.setUint8(8, e.interrupt.injected);
  v.setUint8(9, e.interrupt.nr);
  v.setUint8(10, e.interrupt.soft);
  v.setUint8(11, e.interrupt.shadow);
  v.setUint8(12, e.nmi.injected);
  v.setUint8(13, e.nmi.pending);
  v.setUint8(14, e.nmi.masked);
  v.setUint32(16, e.sipiVector >>> 0, true);
  v.setUint32(20, e.flags >>> 0, true);
  v.setUint8(24, e.smi.smm);
  v.setUint8(25, e.smi.pending);
  v.setUint8(26, e.smi.smmInsideNmi);
  v.setUint8(27, e.smi.latchedInit);
  v.setUint8(28, e.tripleFaultPending);
  v.setUint8(55, e.exceptionHasPayload);
  v.setBigUint64(56, e.exceptionPayload, true);
  return buf;
}
