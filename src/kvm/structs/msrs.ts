// struct kvm_msrs + struct kvm_msr_entry (<asm/kvm.h>, x86):
//   kvm_msrs: nmsrs u32 @0, pad u32 @4, entries[] @8
//   kvm_msr_entry (16 bytes): index u32 @0, reserved u32 @4, data u64 @8.
// Also struct kvm_msr_list: nmsrs u32 @0, indices u32[] @4.

export const KVM_MSRS_HEADER_SIZE = 8;
export const KVM_MSR_ENTRY_SIZE = 16;
/** KVM limits one KVM_GET/SET_MSRS call (KVM_MAX_MSR_ENTRIES in arch/x86/kvm/x86.c). */
export const MAX_MSR_ENTRIES = 256;

export interface MsrEntry {
  index: number;
  data: bigint;
}

export function encodeMsrs(entries: readonly MsrEntry[]): Uint8Array {
  if (entries.length > MAX_MSR_ENTRIES) throw new RangeError(`too many MSRs (${entries.length} > ${MAX_MSR_ENTRIES})`);
  const buf = new Uint8Array(KVM_MSRS_HEADER_SIZE + entries.length * KVM_MSR_ENTRY_SIZE);
  const view = new DataView(buf.buffer);
  view.setUint32(0, entries.length, true);
  entries.forEach((e, i) => {
    const at = KVM_MSRS_HEADER_SIZE + i * KVM_MSR_ENTRY_SIZE;
    view.setUint32(at, e.index >>> 0, true);
    view.setBigUint64(at + 8, BigInt.asUintN(64, e.data), true);
  });
  return buf;
}

/** Decodes the first `count` entries (KVM_GET_MSRS returns how many it filled). */
export function decodeMsrs(buf: Uint8Array, count?: number): MsrEntry[] {
  if (buf.byteLength < KVM_MSRS_HEADER_SIZE) throw new RangeError('kvm_msrs buffer too small');
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const n = Math.min(count ?? view.getUint32(0, true), (buf.byteLength - KVM_MSRS_HEADER_SIZE) / KVM_MSR_ENTRY_SIZE);
  const out: MsrEntry[] = [];
  for (let i = 0; i < n; i++) {
    const at = KVM_MSRS_HEADER_SIZE + i * KVM_MSR_ENTRY_SIZE;
    out.push({ index: view.getUint32(at, true), data: view.getBigUint64(at + 8, true) });
  }
  return out;
}

export function encodeMsrList(capacity: number): Uint8Array {
  const buf = new Uint8Array(4 + capacity * 4);
  new DataView(buf.buffer).setUint32(0, capacity, true);
  return buf;
}

export function decodeMsrList(buf: Uint8Array): number[] {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const n = Math.min(view.getUint32(0, true), (buf.byteLength - 4) / 4);
  return Array.from({ length: n }, (_, i) => view.getUint32(4 + i * 4, true));
}
