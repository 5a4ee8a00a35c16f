// Every struct codec agrees with <linux/kvm.h>: sizes and field offsets come
// from the addon, which was compiled against the header.
import { native } from '../src/native';
import { KVM, STRUCT_SIZES } from '../src/kvm/constants';
import { decodeRegs, emptyRegs, encodeRegs, KVM_REGS_SIZE, REG_NAMES } from '../src/kvm/structs/regs';
import { decodeSregs, encodeSregs, KVM_DTABLE_SIZE, KVM_SEGMENT_SIZE, KVM_SREGS_SIZE } from '../src/kvm/structs/sregs';
import { decodeFpu, encodeFpu, KVM_FPU_SIZE, resetFpu } from '../src/kvm/structs/fpu';
import { KVM_XSAVE_SIZE, setXsaveMxcsr, xsaveMxcsr } from '../src/kvm/structs/xsave';
import { decodeXcrs, encodeXcrs, KVM_XCRS_SIZE } from '../src/kvm/structs/xcrs';
import { decodeMsrs, encodeMsrs, KVM_MSR_ENTRY_SIZE, KVM_MSRS_HEADER_SIZE, MAX_MSR_ENTRIES } from '../src/kvm/structs/msrs';
import { decodeCpuid, encodeCpuid, KVM_CPUID2_HEADER_SIZE, KVM_CPUID_ENTRY2_SIZE } from '../src/kvm/structs/cpuid';
import { KVM_USERSPACE_MEMORY_REGION_SIZE, encodeMemoryRegion } from '../src/kvm/structs/memory-region';
import { decodeVcpuEvents, encodeVcpuEvents, KVM_VCPU_EVENTS_SIZE } from '../src/kvm/structs/vcpu-events';
import { KVM_GUEST_DEBUG_SIZE } from '../src/kvm/structs/guest-debug';
import { KVM_IOEVENTFD_SIZE, KVM_IRQFD_SIZE, KVM_IRQ_LEVEL_SIZE, KVM_PIT_CONFIG_SIZE } from '../src/kvm/structs/irq';
import { decodeExit, RUN } from '../src/kvm/structs/run';

const L = native.layout;

describe('struct sizes match <linux/kvm.h>', () => {
  it.each([
    ['kvm_regs', KVM_REGS_SIZE],
    ['kvm_segment', KVM_SEGMENT_SIZE],
    ['kvm_dtable', KVM_DTABLE_SIZE],
    ['kvm_sregs', KVM_SREGS_SIZE],
    ['kvm_fpu', KVM_FPU_SIZE],
    ['kvm_xsave', KVM_XSAVE_SIZE],
    ['kvm_xcrs', KVM_XCRS_SIZE],
    ['kvm_msrs', KVM_MSRS_HEADER_SIZE],
    ['kvm_msr_entry', KVM_MSR_ENTRY_SIZE],
    ['kvm_cpuid2', KVM_CPUID2_HEADER_SIZE],
    ['kvm_cpuid_entry2', KVM_CPUID_ENTRY2_SIZE],
    ['kvm_userspace_memory_region', KVM_USERSPACE_MEMORY_REGION_SIZE],
    ['kvm_vcpu_events', KVM_VCPU_EVENTS_SIZE],
    ['kvm_guest_debug', KVM_GUEST_DEBUG_SIZE],
    ['kvm_irq_level', KVM_IRQ_LEVEL_SIZE],
    ['kvm_pit_config', KVM_PIT_CONFIG_SIZE],
    ['kvm_irqfd', KVM_IRQFD_SIZE],
    ['kvm_ioeventfd', KVM_IOEVENTFD_SIZE],
  ])('%s is %i bytes', (name, size) => {
    expect(L[`sizeof ${name}`]).toBe(size);
  });

  it('the ioctl encoding table uses the header sizes', () => {
    for (const name of ['kvm_regs', 'kvm_sregs', 'kvm_fpu', 'kvm_vcpu_events', 'kvm_guest_debug', 'kvm_ioeventfd', 'kvm_irqfd', 'kvm_xcrs'] as const) {
      expect(STRUCT_SIZES[name]).toBe(L[`sizeof ${name}`]);
    }
  });
});

describe('field offsets match <linux/kvm.h>', () => {
  it('kvm_regs fields are 8 bytes apart in struct order', () => {
    expect(L['kvm_regs.rax']).toBe(REG_NAMES.indexOf('rax') * 8);
    expect(L['kvm_regs.rsp']).toBe(REG_NAMES.indexOf('rsp') * 8);
    expect(L['kvm_regs.r15']).toBe(REG_NAMES.indexOf('r15') * 8);
    expect(L['kvm_regs.rip']).toBe(REG_NAMES.indexOf('rip') * 8);
    expect(L['kvm_regs.rflags']).toBe(REG_NAMES.indexOf('rflags') * 8);
  });

  it('kvm_segment and kvm_sregs', () => {
    expect([L['kvm_segment.base'], L['kvm_segment.limit'], L['kvm_segment.selector'], L['kvm_segment.type']]).toEqual([0, 8, 12, 14]);
    expect([L['kvm_segment.present'], L['kvm_segment.l'], L['kvm_segment.g'], L['kvm_segment.unusable']]).toEqual([15, 19, 20, 22]);
    expect([L['kvm_sregs.cs'], L['kvm_sregs.ss'], L['kvm_sregs.tr'], L['kvm_sregs.ldt']]).toEqual([0, 120, 144, 168]);
    expect([L['kvm_sregs.gdt'], L['kvm_sregs.idt'], L['kvm_sregs.cr0'], L['kvm_sregs.cr3']]).toEqual([192, 208, 224, 240]);
    expect([L['kvm_sregs.efer'], L['kvm_sregs.apic_base'], L['kvm_sregs.interrupt_bitmap']]).toEqual([264, 272, 280]);
  });

  it('kvm_fpu, kvm_cpuid_entry2, kvm_vcpu_events', () => {
    expect([L['kvm_fpu.fcw'], L['kvm_fpu.last_ip'], L['kvm_fpu.xmm'], L['kvm_fpu.mxcsr']]).toEqual([128, 136, 152, 408]);
    expect([L['kvm_cpuid_entry2.eax'], L['kvm_cpuid_entry2.edx'], L['kvm_cpuid2.entries']]).toEqual([12, 24, 8]);
    expect([L['kvm_vcpu_events.interrupt'], L['kvm_vcpu_events.nmi'], L['kvm_vcpu_events.sipi_vector']]).toEqual([8, 12, 16]);
    expect([L['kvm_vcpu_events.flags'], L['kvm_vcpu_events.smi'], L['kvm_vcpu_events.exception_has_payload'], L['kvm_vcpu_events.exception_payload']]).toEqual([20, 24, 55, 56]);
  });

  it('kvm_run header and exit unions', () => {
    expect(L['kvm_run.immediate_exit']).toBe(RUN.IMMEDIATE_EXIT);
    expect(L['kvm_run.exit_reason']).toBe(RUN.EXIT_REASON);
    expect(L['kvm_run.io.direction']).toBe(RUN.IO_DIRECTION);
    expect(L['kvm_run.io.size']).toBe(RUN.IO_SIZE);
    expect(L['kvm_run.io.port']).toBe(RUN.IO_PORT);
    expect(L['kvm_run.io.count']).toBe(RUN.IO_COUNT);
    expect(L['kvm_run.io.data_offset']).toBe(RUN.IO_DATA_OFFSET);
    expect(L['kvm_run.mmio.phys_addr']).toBe(RUN.MMIO_PHYS_ADDR);
    expect(L['kvm_run.mmio.data']).toBe(RUN.MMIO_DATA);
    expect(L['kvm_run.mmio.len']).toBe(RUN.MMIO_LEN);
    expect(L['kvm_run.mmio.is_write']).toBe(RUN.MMIO_IS_WRITE);
    expect(L['kvm_run.internal.suberror']).toBe(RUN.INTERNAL_SUBERROR);
    expect(L['kvm_run.internal.ndata']).toBe(RUN.INTERNAL_NDATA);
    expect(L['kvm_run.internal.data']).toBe(RUN.INTERNAL_DATA);
    expect(L['kvm_run.emulation_failure.flags']).toBe(RUN.EMULATION_FLAGS);
    expect(L['kvm_run.emulation_failure.insn_size']).toBe(RUN.EMULATION_INSN_SIZE);
    expect(L['kvm_run.emulation_failure.insn_bytes']).toBe(RUN.EMULATION_INSN_BYTES);
    expect(L['kvm_run.fail_entry.cpu']).toBe(RUN.FAIL_ENTRY_CPU);
    expect(L['kvm_run.system_event.type']).toBe(RUN.SYSTEM_EVENT_TYPE);
    expect(L['kvm_run.system_event.data']).toBe(RUN.SYSTEM_EVENT_DATA);
    expect(L['kvm_run.debug.arch.pc']).toBe(RUN.DEBUG_PC);
    expect(L['kvm_run.debug.arch.dr7']).toBe(RUN.DEBUG_DR7);
  });
});

describe('ioctl request numbers', () => {
  it.each(Object.keys(KVM))('KVM_%s matches the header', (name) => {
    const fromHeader = native.ioctlNumbers[`KVM_${name}`];
    expect(fromHeader).toBeDefined();
    expect(KVM[name as keyof typeof KVM]).toBe(fromHeader);
  });
});

describe('codecs round-trip and reject short buffers', () => {
  it('kvm_regs', () => {
    const regs = emptyRegs();
    regs.rax = 0x1122334455667788n;
    regs.r15 = 0xffffffffffffffffn;
    regs.rip = 0x8000n;
    expect(decodeRegs(encodeRegs(regs))).toEqual(regs);
    expect(() => decodeRegs(new Uint8Array(10))).toThrow(RangeError);
    // Negative values wrap to 64 bits instead of throwing inside DataView.
    regs.rbx = -1n;
    expect(decodeRegs(encodeRegs(regs)).rbx).toBe(0xffffffffffffffffn);
  });

  it('kvm_sregs', () => {
    const buf = new Uint8Array(KVM_SREGS_SIZE);
    for (let i = 0; i < buf.length; i++) buf[i] = (i * 7) & 0xff;
    // padding bytes are not round-tripped; compare decoded values instead
    const decoded = decodeSregs(buf);
    expect(decodeSregs(encodeSregs(decoded))).toEqual(decoded);
    expect(() => decodeSregs(new Uint8Array(100))).toThrow(RangeError);
  });

  it('kvm_fpu', () => {
    const fpu = resetFpu();
    fpu.xmm[3][0] = 0xab;
    expect(decodeFpu(encodeFpu(fpu))).toEqual(fpu);
  });

  it('kvm_msrs', () => {
    const entries = [{ index: 0xc0000080, data: 0x500n }, { index: 0x10, data: 2n ** 63n }];
    expect(decodeMsrs(encodeMsrs(entries))).toEqual(entries);
    expect(() => encodeMsrs(new Array(MAX_MSR_ENTRIES + 1).fill({ index: 0, data: 0n }))).toThrow(RangeError);
    // A count larger than the buffer is clamped, never read past the end.
    const buf = encodeMsrs(entries);
    new DataView(buf.buffer).setUint32(0, 1000, true);
    expect(decodeMsrs(buf)).toHaveLength(2);
  });

  it('kvm_cpuid2', () => {
    const entries = [{ function: 1, index: 0, flags: 0, eax: 0x806f8, ebx: 0x800, ecx: 0xfffa3203, edx: 0x178bfbff }];
    expect(decodeCpuid(encodeCpuid(entries))).toEqual(entries);
  });

  it('kvm_userspace_memory_region', () => {
    const buf = encodeMemoryRegion({ slot: 3, flags: 2, guestPhysAddr: 0x100000, memorySize: 0x200000, userspaceAddr: 0x7f0000000000n });
    const v = new DataView(buf.buffer);
    expect(v.getUint32(L['kvm_userspace_memory_region.slot'], true)).toBe(3);
    expect(v.getUint32(L['kvm_userspace_memory_region.flags'], true)).toBe(2);
    expect(v.getBigUint64(L['kvm_userspace_memory_region.guest_phys_addr'], true)).toBe(0x100000n);
    expect(v.getBigUint64(L['kvm_userspace_memory_region.memory_size'], true)).toBe(0x200000n);
    expect(v.getBigUint64(L['kvm_userspace_memory_region.userspace_addr'], true)).toBe(0x7f0000000000n);
  });

  it('kvm_vcpu_events', () => {
    const buf = new Uint8Array(KVM_VCPU_EVENTS_SIZE).map((_, i) => i);
    const e = decodeVcpuEvents(buf);
    expect(e.exception.nr).toBe(1);
    expect(e.exceptionHasPayload).toBe(55);
    expect(decodeVcpuEvents(encodeVcpuEvents(e))).toEqual(e);
  });
});

describe('exit decoding from a kvm_run page', () => {
  const page = () => new DataView(new ArrayBuffer(L['sizeof kvm_run']));

  it('decodes an I/O exit', () => {
    const v = page();
    v.setUint32(RUN.EXIT_REASON, 2, true);
    v.setUint8(RUN.IO_DIRECTION, 1);
    v.setUint8(RUN.IO_SIZE, 2);
    v.setUint16(RUN.IO_PORT, 0x3f8, true);
    v.setUint32(RUN.IO_COUNT, 1, true);
    v.setBigUint64(RUN.IO_DATA_OFFSET, 4096n, true);
    expect(decodeExit(v)).toEqual({ reason: 'io', direction: 'out', port: 0x3f8, size: 2, count: 1, dataOffset: 4096 });
  });

  it('clamps hostile lengths and counts from the page', () => {
    const v = page();
    v.setUint32(RUN.EXIT_REASON, 6, true);
    v.setUint32(RUN.MMIO_LEN, 0xffffffff, true);
    const mmio = decodeExit(v);
    expect(mmio.reason === 'mmio' && mmio.data.length).toBe(8);
    v.setUint32(RUN.EXIT_REASON, 17, true);
    v.setUint32(RUN.INTERNAL_SUBERROR, 1, true);
    v.setUint32(RUN.INTERNAL_NDATA, 0xffffffff, true);
    v.setBigUint64(RUN.EMULATION_FLAGS, 1n, true);
    v.setUint8(RUN.EMULATION_INSN_SIZE, 200);
    const internal = decodeExit(v);
    expect(internal.reason).toBe('internal_error');
    if (internal.reason === 'internal_error') {
      expect(internal.data.length).toBe(16);
      expect(internal.instructionBytes?.length).toBe(15);
    }
  });

  it('reports unknown exit reasons by number', () => {
    const v = page();
    v.setUint32(RUN.EXIT_REASON, 9999, true);
    expect(decodeExit(v)).toMatchObject({ reason: 'unknown', exitReason: 9999 });
  });
});

describe('kvm_xcrs', () => {
  it('puts the registers at the header offsets and round-trips them', () => {
    expect(L['kvm_xcrs.xcrs']).toBe(8);
    expect(L['kvm_xcrs.padding']).toBe(264);
    const buf = encodeXcrs([{ index: 0, value: 0x207n }]);
    const view = new DataView(buf.buffer);
    expect([view.getUint32(0, true), view.getUint32(8, true), view.getBigUint64(16, true)]).toEqual([1, 0, 0x207n]);
    expect(decodeXcrs(buf)).toEqual([{ index: 0, value: 0x207n }]);
  });
  it('clamps a count larger than the array and refuses too many registers', () => {
    const buf = new Uint8Array(KVM_XCRS_SIZE);
    new DataView(buf.buffer).setUint32(0, 0xffffffff, true);
    expect(decodeXcrs(buf)).toHaveLength(16);
    expect(() => encodeXcrs(Array.from({ length: 17 }, (_, i) => ({ index: i, value: 0n })))).toThrow(RangeError);
    expect(() => decodeXcrs(new Uint8Array(8))).toThrow(RangeError);
  });
});

describe('kvm_xsave legacy region', () => {
  it('MXCSR sits at byte 24 and setting it marks SSE state in XSTATE_BV', () => {
    const area = new Uint8Array(KVM_XSAVE_SIZE);
    setXsaveMxcsr(area, 0x7f80);
    expect(xsaveMxcsr(area)).toBe(0x7f80);
    expect(new DataView(area.buffer).getUint32(24, true)).toBe(0x7f80);
    expect(new DataView(area.buffer).getBigUint64(512, true) & 2n).toBe(2n);
  });
  it('rejects a short buffer', () => {
    expect(() => xsaveMxcsr(new Uint8Array(100))).toThrow(RangeError);
    expect(() => setXsaveMxcsr(new Uint8Array(100), 0)).toThrow(RangeError);
  });
});
