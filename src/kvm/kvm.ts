// The KVM system handle (/dev/kvm): API version, capabilities, CPUID/MSR
// facts and VM creation (KVM API doc, section 4: "system ioctls").
import { native } from '../native';
import { Cap, KVM } from './constants';
import { kvmOpenError, KvmError } from './errors';
import { CpuidEntry, cpuidBuffer, decodeCpuid } from './structs/cpuid';
import { decodeMsrList, encodeMsrList } from './structs/msrs';
import { Vm } from './vm';

/** The only stable KVM API version (KVM API doc, 4.1). */
export const KVM_API_VERSION = 12;

export class Kvm {
  private closed = false;

  private constructor(
    readonly fd: number,
    readonly path: string,
  ) {}

  static open(path = '/dev/kvm'): Kvm {
    let fd: number;
    try {
      fd = native.open(path, native.O_RDWR);
    } catch (err) {
      throw kvmOpenError(path, err);
    }
    const kvm = new Kvm(fd, path);
    const version = kvm.apiVersion;
    if (version !== KVM_API_VERSION) {
      kvm.close();
      throw new KvmError(`${path} speaks KVM API version ${version}; tskvm needs version ${KVM_API_VERSION}.`, 'EVERSION');
    }
    return kvm;
  }

  get apiVersion(): number {
    return native.ioctl(this.fd, KVM.GET_API_VERSION);
  }

  /** KVM_CHECK_EXTENSION: 0 when absent, otherwise a capability-specific value. */
  checkExtension(cap: number): number {
    return native.ioctl(this.fd, KVM.CHECK_EXTENSION, cap);
  }

  /** Named capabilities and their values, for diagnostics (`tskvm info`). */
  capabilities(): Record<string, number> {
    return Object.fromEntries(Object.entries(Cap).map(([name, cap]) => [name, this.checkExtension(cap)]));
  }

  /** Size of the per-vCPU kvm_run mapping. */
  get vcpuMmapSize(): number {
    return native.ioctl(this.fd, KVM.GET_VCPU_MMAP_SIZE);
  }

  /** KVM_GET_SUPPORTED_CPUID: what KVM can expose to a guest on this host. */
  supportedCpuid(): CpuidEntry[] {
    const buf = cpuidBuffer();
    native.ioctl(this.fd, KVM.GET_SUPPORTED_CPUID, buf);
    return decodeCpuid(buf);
  }

  /** KVM_GET_MSR_INDEX_LIST: MSRs that KVM saves/restores for a vCPU. */
  msrIndexList(): number[] {
    let capacity = 256;
    for (;;) {
      const buf = encodeMsrList(capacity);
      try {
        native.ioctl(this.fd, KVM.GET_MSR_INDEX_LIST, buf);
        return decodeMsrList(buf);
      } catch (err) {
        // E2BIG: the kernel wrote the needed count into nmsrs; retry with it.
        if ((err as { code?: string }).code !== 'E2BIG' || capacity > 65536) throw err;
        capacity = new DataView(buf.buffer).getUint32(0, true);
      }
    }
  }

  createVm(): Vm {
    const vmFd = native.ioctl(this.fd, KVM.CREATE_VM, 0);
    return new Vm(vmFd, this.vcpuMmapSize);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    native.close(this.fd);
  }
}
