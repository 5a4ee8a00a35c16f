// The typed KVM layer against the real /dev/kvm.
import { Kvm, KVM_API_VERSION } from '../src';
import { Cap } from '../src/kvm/constants';
import { resetFpu } from '../src/kvm/structs/fpu';
import { GuestMemory } from '../src/memory/guest-memory';
import { native } from '../src/native';

const MSR_IA32_SYSENTER_CS = 0x174;

describe('Kvm', () => {
  let kvm: Kvm;
  beforeAll(() => (kvm = Kvm.open()));
  afterAll(() => kvm.close());

  it('reports API version 12 and the capabilities tskvm relies on', () => {
    expect(kvm.apiVersion).toBe(KVM_API_VERSION);
    expect(kvm.checkExtension(Cap.USER_MEMORY)).toBeGreaterThan(0);
    expect(kvm.checkExtension(Cap.IRQCHIP)).toBeGreaterThan(0);
    expect(kvm.checkExtension(Cap.IMMEDIATE_EXIT)).toBeGreaterThan(0);
    expect(kvm.vcpuMmapSize).toBeGreaterThanOrEqual(4096);
  });

  it('returns the supported CPUID with the vendor leaf and feature leaf', () => {
    const cpuid = kvm.supportedCpuid();
    const leaf0 = cpuid.find((e) => e.function === 0);
    expect(leaf0).toBeDefined();
    const vendor = Buffer.alloc(12);
    vendor.writeUInt32LE(leaf0!.ebx, 0);
    vendor.writeUInt32LE(leaf0!.edx, 4);
    vendor.writeUInt32LE(leaf0!.ecx, 8);
    expect(['GenuineIntel', 'AuthenticAMD']).toContain(vendor.toString('latin1'));
    expect(cpuid.some((e) => e.function === 1)).toBe(true);
  });

  it('lists the MSRs KVM saves (SYSENTER_CS among them; EFER travels in sregs)', () => {
    expect(kvm.msrIndexList()).toContain(MSR_IA32_SYSENTER_CS);
  });

  it('a bad ioctl argument becomes an Error whose code is the errno name and whose message names the ioctl', () => {
    const vm = kvm.createVm();
    try {
      // A memory slot whose size is not page aligned: EINVAL.
      vm.setUserMemoryRegion({ slot: 0, flags: 0, guestPhysAddr: 0, memorySize: 100, userspaceAddr: 0n });
      throw new Error('expected KVM_SET_USER_MEMORY_REGION to fail');
    } catch (err) {
      expect((err as { code?: string }).code).toBe('EINVAL');
      expect((err as Error).message).toBe('KVM_SET_USER_MEMORY_REGION failed: Invalid argument (EINVAL)');
    } finally {
      vm.close();
    }
  });
});

describe('Vm and Vcpu state', () => {
  let kvm: Kvm;
  beforeAll(() => (kvm = Kvm.open()));
  afterAll(() => kvm.close());

  it('creates the in-kernel irqchip and PIT and drives an IRQ line', () => {
    const vm = kvm.createVm();
    try {
      vm.setTssAddress(0xfffbd000);
      vm.createIrqchip();
      vm.createPit2();
      vm.setIrqLine(4, true);
      vm.setIrqLine(4, false);
      const vcpu = vm.createVcpu(0);
      expect(vcpu.getMsrs([MSR_IA32_SYSENTER_CS])).toHaveLength(1);
    } finally {
      vm.close();
    }
  });

  it('reports the guest TSC frequency (KVM_GET_TSC_KHZ)', () => {
    const vm = kvm.createVm();
    try {
      expect(kvm.checkExtension(Cap.GET_TSC_KHZ)).toBeGreaterThan(0);
      const khz = vm.createVcpu(0).getTscKhz();
      // Any x86 CPU KVM runs on counts between 100 MHz and 10 GHz.
      expect(khz).toBeGreaterThan(100_000);
      expect(khz).toBeLessThan(10_000_000);
    } finally {
      vm.close();
    }
  });

  it('round-trips registers, MSRs, FPU, CPUID and events through KVM', () => {
    const vm = kvm.createVm();
    try {
      const vcpu = vm.createVcpu(0);
      vcpu.setCpuid(kvm.supportedCpuid());
      const regs = vcpu.getRegs();
      regs.r12 = 0xfedcba9876543210n;
      vcpu.setRegs(regs);
      expect(vcpu.getRegs().r12).toBe(0xfedcba9876543210n);

      vcpu.setMsrs([{ index: MSR_IA32_SYSENTER_CS, data: 0x10n }]);
      expect(vcpu.getMsrs([MSR_IA32_SYSENTER_CS])).toEqual([{ index: MSR_IA32_SYSENTER_CS, data: 0x10n }]);
      // An MSR KVM does not know is refused with a clear error.
      expect(() => vcpu.setMsrs([{ index: 0xdeadbeef, data: 1n }])).toThrow(/refused MSR 0xdeadbeef/);

      const fpu = resetFpu();
      fpu.xmm[1][0] = 0x5a;
      fpu.fcw = 0x27f; // 53-bit precision instead of the reset 64-bit
      vcpu.setFpu(fpu);
      expect(vcpu.getFpu().xmm[1][0]).toBe(0x5a);
      expect(vcpu.getFpu().fcw).toBe(0x27f);

      const events = vcpu.getVcpuEvents();
      expect(events.exception.injected).toBe(0);
      vcpu.setVcpuEvents(events);
    } finally {
      vm.close();
    }
  });

  it('a kick before KVM_RUN makes the run return at once as interrupted', () => {
    const vm = kvm.createVm();
    const memory = GuestMemory.allocate([{ gpa: 0, size: 0x10000 }]);
    try {
      vm.mapMemory(memory);
      const vcpu = vm.createVcpu(0);
      vcpu.bindThread();
      expect(vcpu.kick()).toBe(true);
      expect(vcpu.run()).toEqual({ reason: 'intr' });
      // immediate_exit was cleared: the next run executes guest code (zeros → RAM writes,
      // then eventually something else); we only check it is not 'intr' again.
      expect(vcpu.runBytes[1]).toBe(0);
    } finally {
      vm.close();
      memory.close();
    }
  });

  it('closing the VM releases the kvm_run mappings', () => {
    const before = native.mappingCount();
    const vm = kvm.createVm();
    vm.createVcpu(0);
    vm.createVcpu(1);
    expect(native.mappingCount()).toBe(before + 2);
    vm.close();
    expect(native.mappingCount()).toBe(before);
  });
});
