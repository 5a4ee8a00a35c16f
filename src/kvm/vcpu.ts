// A virtual CPU (KVM API doc, section 4: "vcpu ioctls"): registers, special
// registers, FPU, MSRs, CPUID, events, guest debug, and KVM_RUN.
//
// run() is synchronous: it blocks the calling thread inside KVM_RUN until the
// guest exits. Call it from a vCPU thread (src/vmm) or from a script that owns
// no event loop work; DESIGN.md: threading.
import { KVM_XSAVE_SIZE, setXsaveMxcsr, xsaveMxcsr } from './structs/xsave';
import { decodeXcrs, encodeXcrs, KVM_XCRS_SIZE, type Xcr } from './structs/xcrs';
import { native } from '../native';
import { GuestDebug as GuestDebugBits, KVM } from './constants';
import { CpuidEntry, encodeCpuid } from './structs/cpuid';
import { decodeFpu, encodeFpu, Fpu, KVM_FPU_SIZE } from './structs/fpu';
import { encodeGuestDebug, GuestDebug } from './structs/guest-debug';
import { decodeMsrs, encodeMsrs, MsrEntry } from './structs/msrs';
import { decodeRegs, encodeRegs, KVM_REGS_SIZE, Regs } from './structs/regs';
import { decodeExit, IoExit, RUN, VcpuExit } from './structs/run';
import { decodeSregs, encodeSregs, KVM_SREGS_SIZE, Sregs } from './structs/sregs';
import { decodeVcpuEvents, encodeVcpuEvents, KVM_VCPU_EVENTS_SIZE, VcpuEvents } from './structs/vcpu-events';

/** struct kvm_lapic_state: regs[KVM_APIC_REG_SIZE = 0x400]. */
export const KVM_LAPIC_STATE_SIZE = 1024;

/** Result of KVM_TRANSLATE (struct kvm_translation, 24 bytes). */
export interface Translation {
  physicalAddress: number;
  valid: boolean;
  writeable: boolean;
  usermode: boolean;
}

export class Vcpu {
  /** The kvm_run page as bytes and as a DataView. */
  readonly runBytes: Uint8Array;
  readonly runView: DataView;
  private closed = false;
  private readonly regsBuffer = new Uint8Array(KVM_REGS_SIZE);
  private readonly sregsBuffer = new Uint8Array(KVM_SREGS_SIZE);

  private constructor(
    readonly fd: number,
    readonly id: number,
    readonly runMappingId: number,
    readonly runSize: number,
  ) {
    const buffer = native.mappingBuffer(runMappingId);
    this.runBytes = new Uint8Array(buffer);
    this.runView = new DataView(buffer);
  }

  /** KVM_CREATE_VCPU on `vmFd` and map its kvm_run area. Usable from any thread. */
  static create(vmFd: number, id: number, mmapSize: number): Vcpu {
    const fd = native.ioctl(vmFd, KVM.CREATE_VCPU, id);
    let mapping: number;
    try {
      mapping = native.mapFd(fd, mmapSize, 0);
    } catch (err) {
      native.close(fd);
      throw err;
    }
    return new Vcpu(fd, id, mapping, mmapSize);
  }

  // ------------------------------------------------------------ running

  /**
   * KVM_RUN, returning the raw exit reason number (no allocation): the fast
   * path for exit loops that read the kvm_run fields themselves. Returns -1
   * when KVM_RUN was interrupted (a kick or a signal) before an exit.
   */
  runRaw(): number {
    const r = native.run(this.fd);
    if (r < 0) return -1;
    return this.runView.getUint32(RUN.EXIT_REASON, true);
  }

  /** KVM_RUN, returning the decoded exit. An interrupted run reads as { reason: 'intr' }. */
  run(): VcpuExit {
    const r = native.run(this.fd);
    if (r < 0) return { reason: 'intr' };
    return decodeExit(this.runView);
  }

  /** Like run(), but KVM_RUN returns ({ reason: 'intr' }) after at most `microseconds` (time-slicing vCPUs on one thread). */
  runFor(microseconds: number): VcpuExit {
    const r = native.runFor(this.fd, microseconds);
    if (r < 0) return { reason: 'intr' };
    return decodeExit(this.runView);
  }

  /**
   * KVM_GET_MP_STATE (KVM API doc 4.38): 0 RUNNABLE, 1 UNINITIALIZED (an AP
   * waiting for INIT/SIPI), 2 INIT_RECEIVED, 3 HALTED, 4 SIPI_RECEIVED.
   */
  getMpState(): number {
    const buf = new Uint32Array(1);
    native.ioctl(this.fd, KVM.GET_MP_STATE, buf);
    return buf[0]!;
  }

  /** Decodes the exit currently described by the kvm_run page. */
  currentExit(): VcpuExit {
    return decodeExit(this.runView);
  }

  /**
   * The data bytes of an I/O exit (size * count bytes inside the kvm_run page).
   * For OUT they hold what the guest wrote; for IN the VMM fills them before
   * the next run. The offset comes from the kernel but is still bounds-checked.
   */
  ioData(exit: IoExit): Uint8Array {
    const length = exit.size * exit.count;
    if (exit.dataOffset < RUN.UNION || exit.dataOffset + length > this.runSize)
      throw new RangeError(`I/O exit data (offset ${exit.dataOffset}, ${length} bytes) is outside the kvm_run area`);
    return this.runBytes.subarray(exit.dataOffset, exit.dataOffset + length);
  }

  /** Fills the data of an MMIO read exit (visible to the guest on the next run). */
  completeMmioRead(data: Uint8Array): void {
    this.runBytes.set(data.subarray(0, 8), RUN.MMIO_DATA);
  }

  /** Ask KVM to exit with IRQ_WINDOW_OPEN when the guest can take an interrupt. */
  set requestInterruptWindow(on: boolean) {
    this.runBytes[RUN.REQUEST_INTERRUPT_WINDOW] = on ? 1 : 0;
  }

  /** Records the calling thread as this vCPU's runner so kick() can reach it. */
  bindThread(): void {
    native.bindVcpuThread(this.fd, this.runMappingId);
  }

  /** Forgets the runner thread (call on that thread before it ends). */
  unbindThread(): void {
    native.unbindVcpuThread(this.fd);
  }

  /** Makes a running (or about to run) KVM_RUN on the bound thread return promptly. */
  kick(): boolean {
    return native.kick(this.fd);
  }

  // ------------------------------------------------------------ state

  getRegs(): Regs {
    native.ioctl(this.fd, KVM.GET_REGS, this.regsBuffer);
    return decodeRegs(this.regsBuffer);
  }

  setRegs(regs: Regs): void {
    native.ioctl(this.fd, KVM.SET_REGS, encodeRegs(regs, this.regsBuffer));
  }

  getSregs(): Sregs {
    native.ioctl(this.fd, KVM.GET_SREGS, this.sregsBuffer);
    return decodeSregs(this.sregsBuffer);
  }

  setSregs(sregs: Sregs): void {
    native.ioctl(this.fd, KVM.SET_SREGS, encodeSregs(sregs, this.sregsBuffer));
  }

  getFpu(): Fpu {
    const buf = new Uint8Array(KVM_FPU_SIZE);
    native.ioctl(this.fd, KVM.GET_FPU, buf);
    return decodeFpu(buf);
  }

  setFpu(fpu: Fpu): void {
    native.ioctl(this.fd, KVM.SET_FPU, encodeFpu(fpu));
  }

  /** Reads MSRs; an MSR KVM does not know is omitted from the result. */
  getMsrs(indices: readonly number[]): MsrEntry[] {
    const buf = encodeMsrs(indices.map((index) => ({ index, data: 0n })));
    const n = native.ioctl(this.fd, KVM.GET_MSRS, buf);
    return decodeMsrs(buf, n);
  }

  /** Writes MSRs; throws if KVM refuses one (it stops at the first failure). */
  setMsrs(entries: readonly MsrEntry[]): void {
    const n = native.ioctl(this.fd, KVM.SET_MSRS, encodeMsrs(entries));
    if (n !== entries.length) {
      const bad = entries[n];
      throw new RangeError(`KVM_SET_MSRS refused MSR 0x${bad.index.toString(16)} (value 0x${bad.data.toString(16)})`);
    }
  }

  setCpuid(entries: readonly CpuidEntry[]): void {
    native.ioctl(this.fd, KVM.SET_CPUID2, encodeCpuid(entries));
  }

  getVcpuEvents(): VcpuEvents {
    const buf = new Uint8Array(KVM_VCPU_EVENTS_SIZE);
    native.ioctl(this.fd, KVM.GET_VCPU_EVENTS, buf);
    return decodeVcpuEvents(buf);
  }

  setVcpuEvents(events: VcpuEvents): void {
    native.ioctl(this.fd, KVM.SET_VCPU_EVENTS, encodeVcpuEvents(events));
  }

  /** Injects exception `vector` (with an optional error code) before the next run. */
  injectException(vector: number, errorCode?: number): void {
    const events = this.getVcpuEvents();
    events.exception = {
      injected: 1,
      nr: vector,
      hasErrorCode: errorCode === undefined ? 0 : 1,
      pending: 0,
      errorCode: errorCode ?? 0,
    };
    events.flags = 0;
    this.setVcpuEvents(events);
  }

  /** KVM_GET_XSAVE: the guest's XSAVE area (4 KiB, standard format). */
  getXsave(): Uint8Array {
    const area = new Uint8Array(KVM_XSAVE_SIZE);
    native.ioctl(this.fd, KVM.GET_XSAVE, area);
    return area;
  }

  setXsave(area: Uint8Array): void {
    if (area.byteLength !== KVM_XSAVE_SIZE) throw new RangeError(`kvm_xsave is ${KVM_XSAVE_SIZE} bytes`);
    native.ioctl(this.fd, KVM.SET_XSAVE, area);
  }

  /** KVM_GET_XCRS: the extended control registers (XCR0 is the only one on x86 today). */
  getXcrs(): Xcr[] {
    const buf = new Uint8Array(KVM_XCRS_SIZE);
    native.ioctl(this.fd, KVM.GET_XCRS, buf);
    return decodeXcrs(buf);
  }

  setXcrs(xcrs: readonly Xcr[]): void {
    native.ioctl(this.fd, KVM.SET_XCRS, encodeXcrs(xcrs));
  }

  /**
   * The guest's TSC frequency in kHz (KVM_GET_TSC_KHZ, KVM API doc 4.56;
   * needs KVM_CAP_GET_TSC_KHZ): the rate at which RDTSC counts in the guest.
   */
  getTscKhz(): number {
    return native.ioctl(this.fd, KVM.GET_TSC_KHZ, 0);
  }

  /** XCR0, the XSAVE feature enable mask (SDM Vol. 1, 13.3); 1 (x87 only) when KVM reports none. */
  getXcr0(): bigint {
    return this.getXcrs().find((x) => x.index === 0)?.value ?? 1n;
  }

  /** MXCSR, the SSE control/status register (through XSAVE: KVM_GET_FPU leaves it out). */
  getMxcsr(): number {
    return xsaveMxcsr(this.getXsave());
  }

  setMxcsr(value: number): void {
    const area = this.getXsave();
    setXsaveMxcsr(area, value);
    this.setXsave(area);
  }

  /** KVM_GET_LAPIC: the local APIC register page (struct kvm_lapic_state, 1 KiB). */
  getLapic(): Uint8Array {
    const state = new Uint8Array(KVM_LAPIC_STATE_SIZE);
    native.ioctl(this.fd, KVM.GET_LAPIC, state);
    return state;
  }

  setLapic(state: Uint8Array): void {
    if (state.byteLength !== KVM_LAPIC_STATE_SIZE) throw new RangeError(`kvm_lapic_state is ${KVM_LAPIC_STATE_SIZE} bytes`);
    native.ioctl(this.fd, KVM.SET_LAPIC, state);
  }

  setGuestDebug(debug: GuestDebug): void {
    native.ioctl(this.fd, KVM.SET_GUEST_DEBUG, encodeGuestDebug(debug));
  }

  /** Single-step or hardware breakpoints on; pass control 0 to turn off. */
  setSingleStep(on: boolean): void {
    this.setGuestDebug({ control: on ? GuestDebugBits.ENABLE | GuestDebugBits.SINGLESTEP : 0, debugreg: [] });
  }

  /** KVM_TRANSLATE: guest virtual → guest physical with the vCPU's current paging. */
  translate(linearAddress: bigint): Translation {
    const buf = new Uint8Array(24); // linear_address u64 @0, physical_address u64 @8, valid u8 @16, writeable @17, usermode @18
    const view = new DataView(buf.buffer);
    view.setBigUint64(0, BigInt.asUintN(64, linearAddress), true);
    native.ioctl(this.fd, KVM.TRANSLATE, buf);
    const physical = view.getBigUint64(8, true);
    return {
      physicalAddress: physical <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(physical) : -1,
      valid: buf[16] !== 0,
      writeable: buf[17] !== 0,
      usermode: buf[18] !== 0,
    };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    native.unbindVcpuThread(this.fd);
    native.unmap(this.runMappingId);
    native.close(this.fd);
  }
}
