// KVM API constants (Documentation/virt/kvm/api.rst, <linux/kvm.h>).
//
// Ioctl request numbers are computed here with the same _IO/_IOR/_IOW/_IOWR
// encoding the kernel header uses (include/uapi/asm-generic/ioctl.h):
//   bits 0-7 nr, 8-15 type (KVMIO = 0xAE), 16-29 argument size, 30-31 direction.
// test/kvm-constants.test.ts checks every number against the header via the addon.

const IOC_NONE = 0;
const IOC_WRITE = 1;
const IOC_READ = 2;
const KVMIO = 0xae;

function ioc(dir: number, nr: number, size: number): number {
  // dir << 30 would overflow int32: use multiplication to stay unsigned.
  return dir * 2 ** 30 + ((size & 0x3fff) << 16) + (KVMIO << 8) + nr;
}
const io = (nr: number): number => ioc(IOC_NONE, nr, 0);
const ior = (nr: number, size: number): number => ioc(IOC_READ, nr, size);
const iow = (nr: number, size: number): number => ioc(IOC_WRITE, nr, size);
const iowr = (nr: number, size: number): number => ioc(IOC_READ | IOC_WRITE, nr, size);

// Sizes of the argument structs, needed for the encoding (checked in tests).
const SIZEOF = {
  kvm_regs: 144,
  kvm_sregs: 312,
  kvm_fpu: 416,
  kvm_xsave: 4096,
  kvm_xcrs: 392,
  kvm_msrs: 8,
  kvm_msr_list: 4,
  kvm_cpuid2: 8,
  kvm_userspace_memory_region: 32,
  kvm_irq_level: 8,
  kvm_irqchip: 520,
  kvm_pit_config: 64,
  kvm_vcpu_events: 64,
  kvm_guest_debug: 72,
  kvm_ioeventfd: 64,
  kvm_irqfd: 32,
  kvm_msi: 32,
  kvm_enable_cap: 104,
  kvm_translation: 24,
  kvm_lapic_state: 1024,
  kvm_mp_state: 4,
  kvm_irq_routing: 8,
} as const;

export const KVM = {
  GET_API_VERSION: io(0x00),
  CREATE_VM: io(0x01),
  GET_MSR_INDEX_LIST: iowr(0x02, SIZEOF.kvm_msr_list),
  CHECK_EXTENSION: io(0x03),
  GET_VCPU_MMAP_SIZE: io(0x04),
  GET_SUPPORTED_CPUID: iowr(0x05, SIZEOF.kvm_cpuid2),
  CREATE_VCPU: io(0x41),
  SET_USER_MEMORY_REGION: iow(0x46, SIZEOF.kvm_userspace_memory_region),
  SET_TSS_ADDR: io(0x47),
  SET_IDENTITY_MAP_ADDR: iow(0x48, 8),
  CREATE_IRQCHIP: io(0x60),
  IRQ_LINE: iow(0x61, SIZEOF.kvm_irq_level),
  IRQ_LINE_STATUS: iowr(0x67, SIZEOF.kvm_irq_level),
  SET_GSI_ROUTING: iow(0x6a, SIZEOF.kvm_irq_routing),
  CREATE_PIT2: iow(0x77, SIZEOF.kvm_pit_config),
  IOEVENTFD: iow(0x79, SIZEOF.kvm_ioeventfd),
  IRQFD: iow(0x76, SIZEOF.kvm_irqfd),
  SIGNAL_MSI: iow(0xa5, SIZEOF.kvm_msi),
  ENABLE_CAP: iow(0xa3, SIZEOF.kvm_enable_cap),
  GET_TSC_KHZ: io(0xa3),
  RUN: io(0x80),
  GET_REGS: ior(0x81, SIZEOF.kvm_regs),
  SET_REGS: iow(0x82, SIZEOF.kvm_regs),
  GET_SREGS: ior(0x83, SIZEOF.kvm_sregs),
  SET_SREGS: iow(0x84, SIZEOF.kvm_sregs),
  TRANSLATE: iowr(0x85, SIZEOF.kvm_translation),
  GET_MSRS: iowr(0x88, SIZEOF.kvm_msrs),
  SET_MSRS: iow(0x89, SIZEOF.kvm_msrs),
  GET_FPU: ior(0x8c, SIZEOF.kvm_fpu),
  SET_FPU: iow(0x8d, SIZEOF.kvm_fpu),
  GET_XSAVE: ior(0xa4, SIZEOF.kvm_xsave),
  SET_XSAVE: iow(0xa5, SIZEOF.kvm_xsave),
  GET_XCRS: ior(0xa6, SIZEOF.kvm_xcrs),
  SET_XCRS: iow(0xa7, SIZEOF.kvm_xcrs),
  GET_LAPIC: ior(0x8e, SIZEOF.kvm_lapic_state),
  SET_LAPIC: iow(0x8f, SIZEOF.kvm_lapic_state),
  SET_CPUID2: iow(0x90, SIZEOF.kvm_cpuid2),
  GET_CPUID2: iowr(0x91, SIZEOF.kvm_cpuid2),
  GET_MP_STATE: ior(0x98, SIZEOF.kvm_mp_state),
  SET_MP_STATE: iow(0x99, SIZEOF.kvm_mp_state),
  SET_GUEST_DEBUG: iow(0x9b, SIZEOF.kvm_guest_debug),
  GET_VCPU_EVENTS: ior(0x9f, SIZEOF.kvm_vcpu_events),
  SET_VCPU_EVENTS: iow(0xa0, SIZEOF.kvm_vcpu_events),
} as const;

export type KvmIoctlName = keyof typeof KVM;

/** Exit reasons (kvm_run.exit_reason). */
export const ExitReason = {
  UNKNOWN: 0,
  EXCEPTION: 1,
  IO: 2,
  HYPERCALL: 3,
  DEBUG: 4,
  HLT: 5,
  MMIO: 6,
  IRQ_WINDOW_OPEN: 7,
  SHUTDOWN: 8,
  FAIL_ENTRY: 9,
  INTR: 10,
  SET_TPR: 11,
  TPR_ACCESS: 12,
  NMI: 16,
  INTERNAL_ERROR: 17,
  SYSTEM_EVENT: 24,
  IOAPIC_EOI: 26,
  HYPERV: 27,
  X86_RDMSR: 29,
  X86_WRMSR: 30,
  DIRTY_RING_FULL: 31,
  X86_BUS_LOCK: 33,
  NOTIFY: 37,
} as const;

export const exitReasonName: Record<number, string> = Object.fromEntries(
  Object.entries(ExitReason).map(([k, v]) => [v, k]),
);

/** kvm_run.internal.suberror values. */
export const InternalErrorSuberror = {
  EMULATION: 1,
  SIMUL_EX: 2,
  DELIVERY_EV: 3,
  UNEXPECTED_EXIT_REASON: 4,
} as const;

/** emulation_failure.flags: the instruction bytes are valid. */
export const EMULATION_FLAG_INSTRUCTION_BYTES = 1;

/** kvm_run.system_event.type values. */
export const SystemEventType = { SHUTDOWN: 1, RESET: 2, CRASH: 3, WAKEUP: 4, SUSPEND: 5 } as const;

/** Capabilities queried with KVM_CHECK_EXTENSION (numbers from <linux/kvm.h>). */
export const Cap = {
  IRQCHIP: 0,
  HLT: 1,
  USER_MEMORY: 3,
  SET_TSS_ADDR: 4,
  EXT_CPUID: 7,
  NR_VCPUS: 9,
  NR_MEMSLOTS: 10,
  PIT: 11,
  PIT2: 33,
  SET_IDENTITY_MAP_ADDR: 37,
  IRQFD: 32,
  IOEVENTFD: 36,
  IRQFD_RESAMPLE: 82,
  SET_GUEST_DEBUG: 23,
  VCPU_EVENTS: 41,
  MAX_VCPUS: 66,
  SIGNAL_MSI: 77,
  IMMEDIATE_EXIT: 136,
  SPLIT_IRQCHIP: 121,
  X86_DISABLE_EXITS: 143,
  EXIT_ON_EMULATION_FAILURE: 204,
  GET_TSC_KHZ: 61,
} as const;

/** KVM_SET_GUEST_DEBUG control bits (x86: <asm/kvm.h>). */
export const GuestDebug = {
  ENABLE: 0x1,
  SINGLESTEP: 0x2,
  USE_SW_BP: 0x10000,
  USE_HW_BP: 0x20000,
  INJECT_DB: 0x40000,
  INJECT_BP: 0x80000,
} as const;

/** ioctl argument sizes, exported for the size tests. */
export const STRUCT_SIZES = SIZEOF;
