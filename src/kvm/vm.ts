// A virtual machine (KVM API doc, section 4: "vm ioctls"): memory slots, the
// in-kernel interrupt controllers and PIT, IRQ lines, ioeventfd/irqfd, and
// vCPU creation.
import { native } from '../native';
import type { GuestMemory } from '../memory/guest-memory';
import { KVM } from './constants';
import { encodeIoEventFd, encodeIrqFd, encodeIrqLevel, encodePitConfig, IoEventFd, IrqFd, KVM_IRQFD_FLAG_DEASSIGN, KVM_PIT_SPEAKER_DUMMY } from './structs/irq';
import { encodeMemoryRegion, UserspaceMemoryRegion } from './structs/memory-region';
import { Vcpu } from './vcpu';

export class Vm {
  private closed = false;
  private readonly vcpuList: Vcpu[] = [];

  constructor(
    readonly fd: number,
    /** Size of each vCPU's kvm_run mapping (KVM_GET_VCPU_MMAP_SIZE). */
    readonly vcpuMmapSize: number,
  ) {}

  setUserMemoryRegion(region: UserspaceMemoryRegion): void {
    native.ioctl(this.fd, KVM.SET_USER_MEMORY_REGION, encodeMemoryRegion(region));
  }

  /** Registers every RAM region of `memory` as a memory slot. */
  mapMemory(memory: GuestMemory): void {
    for (const r of memory.regions) {
      this.setUserMemoryRegion({ slot: r.slot, flags: 0, guestPhysAddr: r.gpa, memorySize: r.size, userspaceAddr: r.hostAddress });
    }
  }

  /**
   * KVM_SET_TSS_ADDR: three pages of guest physical space that Intel VMX needs
   * for real-mode emulation; must not overlap RAM or MMIO the guest uses.
   */
  setTssAddress(gpa: number): void {
    native.ioctl(this.fd, KVM.SET_TSS_ADDR, gpa);
  }

  /** KVM_SET_IDENTITY_MAP_ADDR: one page for the EPT identity map (VMX real mode). */
  setIdentityMapAddress(gpa: number): void {
    const arg = new BigUint64Array([BigInt(gpa)]);
    native.ioctl(this.fd, KVM.SET_IDENTITY_MAP_ADDR, arg);
  }

  /** In-kernel PIC, IOAPIC and local APICs. Must come before vCPU creation. */
  createIrqchip(): void {
    native.ioctl(this.fd, KVM.CREATE_IRQCHIP, 0);
  }

  /** In-kernel i8254 PIT; the speaker port 0x61 is left to userspace. */
  createPit2(flags = KVM_PIT_SPEAKER_DUMMY): void {
    native.ioctl(this.fd, KVM.CREATE_PIT2, encodePitConfig(flags));
  }

  /** Drives an interrupt line of the in-kernel irqchip (GSI numbering). */
  setIrqLine(irq: number, level: boolean): void {
    native.ioctl(this.fd, KVM.IRQ_LINE, encodeIrqLevel(irq, level ? 1 : 0));
  }

  /** KVM_IRQFD: writes to `fd` (an eventfd) raise GSI `gsi` without an exit to userspace. */
  assignIrqFd(irqfd: IrqFd): void {
    native.ioctl(this.fd, KVM.IRQFD, encodeIrqFd(irqfd));
  }

  deassignIrqFd(fd: number, gsi: number): void {
    native.ioctl(this.fd, KVM.IRQFD, encodeIrqFd({ fd, gsi, flags: KVM_IRQFD_FLAG_DEASSIGN }));
  }

  /** KVM_IOEVENTFD: a guest write to `addr` signals `fd` instead of exiting. */
  assignIoEventFd(ioeventfd: IoEventFd): void {
    native.ioctl(this.fd, KVM.IOEVENTFD, encodeIoEventFd(ioeventfd));
  }

  createVcpu(id: number): Vcpu {
    const vcpu = Vcpu.create(this.fd, id, this.vcpuMmapSize);
    this.vcpuList.push(vcpu);
    return vcpu;
  }

  get vcpus(): readonly Vcpu[] {
    return this.vcpuList;
  }

  /** Closes the vCPUs created through this object, then the VM. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const vcpu of this.vcpuList) vcpu.close();
    native.close(this.fd);
  }
}
