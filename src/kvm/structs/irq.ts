// Interrupt-related argument structs (<linux/kvm.h>).
//
// kvm_irq_level (8 bytes): irq u32 @0 (union with status), level u32 @4.
// kvm_pit_config (64 bytes): flags u32 @0, pad u32[15].
// kvm_irqfd (32 bytes): fd u32 @0, gsi u32 @4, flags u32 @8, resamplefd u32 @12, pad u8[16].
// kvm_ioeventfd (64 bytes): datamatch u64 @0, addr u64 @8, len u32 @16, fd s32 @20,
//   flags u32 @24, pad u8[36].

export const KVM_IRQ_LEVEL_SIZE = 8;
export const KVM_PIT_CONFIG_SIZE = 64;
export const KVM_IRQFD_SIZE = 32;
export const KVM_IOEVENTFD_SIZE = 64;

export const KVM_PIT_SPEAKER_DUMMY = 1;
export const KVM_IRQFD_FLAG_DEASSIGN = 1;
/** The irqfd drives a level-triggered line: KVM lowers it at the guest's EOI and signals resamplefd (KVM API doc 4.75). */
export const KVM_IRQFD_FLAG_RESAMPLE = 2;
export const KVM_IOEVENTFD_FLAG_DATAMATCH = 1;
export const KVM_IOEVENTFD_FLAG_PIO = 2;
export const KVM_IOEVENTFD_FLAG_DEASSIGN = 4;

export function encodeIrqLevel(irq: number, level: number): Uint8Array {
  const buf = new Uint8Array(KVM_IRQ_LEVEL_SIZE);
  const view = new DataView(buf.buffer);
  view.setUint32(0, irq >>> 0, true);
  view.setUint32(4, level >>> 0, true);
  return buf;
}

export function encodePitConfig(flags: number): Uint8Array {
  const buf = new Uint8Array(KVM_PIT_CONFIG_SIZE);
  new DataView(buf.buffer).setUint32(0, flags >>> 0, true);
  return buf;
}

export interface IrqFd {
  fd: number;
  gsi: number;
  flags: number;
  resampleFd?: number;
}

export function encodeIrqFd(i: IrqFd): Uint8Array {
  const buf = new Uint8Array(KVM_IRQFD_SIZE);
  const view = new DataView(buf.buffer);
  view.setUint32(0, i.fd >>> 0, true);
  view.setUint32(4, i.gsi >>> 0, true);
  view.setUint32(8, i.flags >>> 0, true);
  view.setUint32(12, (i.resampleFd ?? 0) >>> 0, true);
  return buf;
}

export interface IoEventFd {
  datamatch?: bigint;
  addr: number;
  len: number;
  fd: number;
  flags: number;
}

export function encodeIoEventFd(i: IoEventFd): Uint8Array {
  const buf = new Uint8Array(KVM_IOEVENTFD_SIZE);
  const view = new DataView(buf.buffer);
  view.setBigUint64(0, i.datamatch ?? 0n, true);
  view.setBigUint64(8, BigInt(i.addr), true);
  view.setUint32(16, i.len >>> 0, true);
  view.setInt32(20, i.fd, true);
  view.setUint32(24, i.flags >>> 0, true);
  return buf;
}
