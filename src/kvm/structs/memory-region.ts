// struct kvm_userspace_memory_region (<linux/kvm.h>), 32 bytes:
//   slot u32 @0, flags u32 @4, guest_phys_addr u64 @8, memory_size u64 @16,
//   userspace_addr u64 @24.

export const KVM_USERSPACE_MEMORY_REGION_SIZE = 32;
/** flags: log dirty pages (KVM_MEM_LOG_DIRTY_PAGES), read-only slot (KVM_MEM_READONLY). */
export const KVM_MEM_LOG_DIRTY_PAGES = 1;
export const KVM_MEM_READONLY = 2;

export interface UserspaceMemoryRegion {
  slot: number;
  flags: number;
  guestPhysAddr: number;
  memorySize: number;
  userspaceAddr: bigint;
}

export function encodeMemoryRegion(r: UserspaceMemoryRegion): Uint8Array {
  const buf = new Uint8Array(KVM_USERSPACE_MEMORY_REGION_SIZE);
  const view = new DataView(buf.buffer);
  view.setUint32(0, r.slot, true);
  view.setUint32(4, r.flags, true);
  view.setBigUint64(8, BigInt(r.guestPhysAddr), true);
  view.setBigUint64(16, BigInt(r.memorySize), true);
  view.setBigUint64(24, r.userspaceAddr, true);
  return buf;
}
