/*
 * Facts about the KVM ABI, taken from <linux/kvm.h> by a C compiler: ioctl
 * request numbers (for error messages that name the ioctl) and struct sizes
 * and field offsets (for the tests that check the TypeScript codecs).
 *
 * This file is C on purpose: the uapi headers declare flexible arrays with
 * __DECLARE_FLEX_ARRAY, an empty-struct trick whose size is 0 in C but 1 in
 * C++, so a C++ compiler gets sizeof(struct kvm_cpuid2) and every ioctl number
 * derived from it wrong.
 */
#include <stddef.h>
#include <linux/kvm.h>

struct tskvm_fact {
  const char* name;
  unsigned long value;
};

#define IOCTL(x) {#x, (unsigned long)(x)}
const struct tskvm_fact tskvm_ioctls[] = {
    IOCTL(KVM_GET_API_VERSION), IOCTL(KVM_CREATE_VM), IOCTL(KVM_CHECK_EXTENSION),
    IOCTL(KVM_GET_VCPU_MMAP_SIZE), IOCTL(KVM_GET_SUPPORTED_CPUID),
    IOCTL(KVM_GET_MSR_INDEX_LIST), IOCTL(KVM_GET_MSR_FEATURE_INDEX_LIST),
    IOCTL(KVM_CREATE_VCPU), IOCTL(KVM_SET_USER_MEMORY_REGION), IOCTL(KVM_SET_TSS_ADDR),
    IOCTL(KVM_SET_IDENTITY_MAP_ADDR), IOCTL(KVM_CREATE_IRQCHIP), IOCTL(KVM_CREATE_PIT2),
    IOCTL(KVM_IRQ_LINE), IOCTL(KVM_IRQ_LINE_STATUS), IOCTL(KVM_GET_IRQCHIP),
    IOCTL(KVM_SET_IRQCHIP), IOCTL(KVM_SET_GSI_ROUTING), IOCTL(KVM_IRQFD), IOCTL(KVM_IOEVENTFD),
    IOCTL(KVM_SIGNAL_MSI), IOCTL(KVM_GET_CLOCK), IOCTL(KVM_SET_CLOCK), IOCTL(KVM_ENABLE_CAP),
    IOCTL(KVM_GET_DIRTY_LOG), IOCTL(KVM_RUN), IOCTL(KVM_GET_REGS), IOCTL(KVM_SET_REGS),
    IOCTL(KVM_GET_SREGS), IOCTL(KVM_SET_SREGS), IOCTL(KVM_GET_FPU), IOCTL(KVM_SET_FPU),
    IOCTL(KVM_GET_MSRS), IOCTL(KVM_SET_MSRS), IOCTL(KVM_SET_CPUID2), IOCTL(KVM_GET_CPUID2),
    IOCTL(KVM_GET_VCPU_EVENTS), IOCTL(KVM_SET_VCPU_EVENTS), IOCTL(KVM_SET_GUEST_DEBUG),
    IOCTL(KVM_GET_LAPIC), IOCTL(KVM_SET_LAPIC), IOCTL(KVM_GET_MP_STATE), IOCTL(KVM_SET_MP_STATE),
    IOCTL(KVM_TRANSLATE), IOCTL(KVM_INTERRUPT), IOCTL(KVM_NMI), IOCTL(KVM_GET_XSAVE),
    IOCTL(KVM_SET_XSAVE), IOCTL(KVM_GET_XCRS), IOCTL(KVM_SET_XCRS), IOCTL(KVM_SET_TSC_KHZ),
    IOCTL(KVM_GET_TSC_KHZ), IOCTL(KVM_GET_DEBUGREGS), IOCTL(KVM_SET_DEBUGREGS),
    IOCTL(KVM_SET_BOOT_CPU_ID), IOCTL(KVM_GET_PIT2), IOCTL(KVM_SET_PIT2),
};
const unsigned long tskvm_ioctl_count = sizeof tskvm_ioctls / sizeof tskvm_ioctls[0];

#define SIZE(s) {"sizeof " #s, sizeof(struct s)}
#define OFF(s, f) {#s "." #f, offsetof(struct s, f)}
const struct tskvm_fact tskvm_layout[] = {
    SIZE(kvm_regs), OFF(kvm_regs, rax), OFF(kvm_regs, rsp), OFF(kvm_regs, r15), OFF(kvm_regs, rip), OFF(kvm_regs, rflags),
    SIZE(kvm_segment), OFF(kvm_segment, base), OFF(kvm_segment, limit), OFF(kvm_segment, selector),
    OFF(kvm_segment, type), OFF(kvm_segment, present), OFF(kvm_segment, dpl), OFF(kvm_segment, db),
    OFF(kvm_segment, s), OFF(kvm_segment, l), OFF(kvm_segment, g), OFF(kvm_segment, avl), OFF(kvm_segment, unusable),
    SIZE(kvm_dtable), OFF(kvm_dtable, base), OFF(kvm_dtable, limit),
    SIZE(kvm_sregs), OFF(kvm_sregs, cs), OFF(kvm_sregs, ss), OFF(kvm_sregs, tr), OFF(kvm_sregs, ldt),
    OFF(kvm_sregs, gdt), OFF(kvm_sregs, idt), OFF(kvm_sregs, cr0), OFF(kvm_sregs, cr2), OFF(kvm_sregs, cr3),
    OFF(kvm_sregs, cr4), OFF(kvm_sregs, cr8), OFF(kvm_sregs, efer), OFF(kvm_sregs, apic_base), OFF(kvm_sregs, interrupt_bitmap),
    SIZE(kvm_fpu), SIZE(kvm_xsave), SIZE(kvm_xcrs), OFF(kvm_xcrs, xcrs), OFF(kvm_xcrs, padding), OFF(kvm_fpu, fpr), OFF(kvm_fpu, fcw), OFF(kvm_fpu, last_ip), OFF(kvm_fpu, xmm), OFF(kvm_fpu, mxcsr),
    SIZE(kvm_msr_entry), OFF(kvm_msr_entry, index), OFF(kvm_msr_entry, data),
    SIZE(kvm_msrs), OFF(kvm_msrs, entries),
    SIZE(kvm_cpuid_entry2), OFF(kvm_cpuid_entry2, function), OFF(kvm_cpuid_entry2, index), OFF(kvm_cpuid_entry2, flags),
    OFF(kvm_cpuid_entry2, eax), OFF(kvm_cpuid_entry2, ebx), OFF(kvm_cpuid_entry2, ecx), OFF(kvm_cpuid_entry2, edx),
    SIZE(kvm_cpuid2), OFF(kvm_cpuid2, entries),
    SIZE(kvm_userspace_memory_region), OFF(kvm_userspace_memory_region, slot), OFF(kvm_userspace_memory_region, flags),
    OFF(kvm_userspace_memory_region, guest_phys_addr), OFF(kvm_userspace_memory_region, memory_size),
    OFF(kvm_userspace_memory_region, userspace_addr),
    SIZE(kvm_pit_config), SIZE(kvm_irq_level), OFF(kvm_irq_level, level),
    SIZE(kvm_vcpu_events), OFF(kvm_vcpu_events, exception), OFF(kvm_vcpu_events, interrupt),
    OFF(kvm_vcpu_events, nmi), OFF(kvm_vcpu_events, sipi_vector), OFF(kvm_vcpu_events, flags),
    OFF(kvm_vcpu_events, smi), OFF(kvm_vcpu_events, exception_has_payload), OFF(kvm_vcpu_events, exception_payload),
    SIZE(kvm_guest_debug), OFF(kvm_guest_debug, control), OFF(kvm_guest_debug, arch),
    SIZE(kvm_ioeventfd), OFF(kvm_ioeventfd, datamatch), OFF(kvm_ioeventfd, addr), OFF(kvm_ioeventfd, len),
    OFF(kvm_ioeventfd, fd), OFF(kvm_ioeventfd, flags),
    SIZE(kvm_irqfd), OFF(kvm_irqfd, fd), OFF(kvm_irqfd, gsi), OFF(kvm_irqfd, flags), OFF(kvm_irqfd, resamplefd),
    SIZE(kvm_run), OFF(kvm_run, request_interrupt_window), OFF(kvm_run, immediate_exit), OFF(kvm_run, exit_reason),
    OFF(kvm_run, ready_for_interrupt_injection), OFF(kvm_run, if_flag), OFF(kvm_run, flags), OFF(kvm_run, cr8),
    OFF(kvm_run, apic_base), OFF(kvm_run, hw), OFF(kvm_run, io), OFF(kvm_run, mmio), OFF(kvm_run, internal),
    OFF(kvm_run, fail_entry), OFF(kvm_run, system_event), OFF(kvm_run, debug), OFF(kvm_run, ex),
    OFF(kvm_run, io.direction), OFF(kvm_run, io.size), OFF(kvm_run, io.port), OFF(kvm_run, io.count),
    OFF(kvm_run, io.data_offset), OFF(kvm_run, mmio.phys_addr), OFF(kvm_run, mmio.data), OFF(kvm_run, mmio.len),
    OFF(kvm_run, mmio.is_write), OFF(kvm_run, internal.suberror), OFF(kvm_run, internal.ndata), OFF(kvm_run, internal.data),
    OFF(kvm_run, emulation_failure.flags), OFF(kvm_run, emulation_failure.insn_size), OFF(kvm_run, emulation_failure.insn_bytes),
    OFF(kvm_run, fail_entry.hardware_entry_failure_reason), OFF(kvm_run, fail_entry.cpu),
    OFF(kvm_run, system_event.type), OFF(kvm_run, system_event.ndata), OFF(kvm_run, system_event.data),
    OFF(kvm_run, debug.arch.exception), OFF(kvm_run, debug.arch.pc), OFF(kvm_run, debug.arch.dr6), OFF(kvm_run, debug.arch.dr7),
};
const unsigned long tskvm_layout_count = sizeof tskvm_layout / sizeof tskvm_layout[0];
