// SyncMachine: a VM that runs on the calling thread. A typed config becomes a
// VM with RAM, a vCPU, the PIO and MMIO buses and the default devices; the
// exit loop runs it.
//
//   const machine = SyncMachine.create({ memory: '2M' });
//   machine.loadBinary(code, 0x8000);
//   machine.setMode('long', { entry: 0x8000 });
//   const stop = machine.runSync();
//
// runSync() runs the vCPU on the calling thread: the teaching/test path
// (DESIGN.md: "the low-level API stays available"), and what the vCPU worker
// behind the asynchronous `Machine` (machine.ts) runs.
import { EventEmitter } from 'events';
import { Kvm } from '../kvm/kvm';
import { Cap } from '../kvm/constants';
import type { Vm } from '../kvm/vm';
import type { Vcpu } from '../kvm/vcpu';
import { GuestMemory } from '../memory/guest-memory';
import { MmioBus, PioBus, type BusDevice, type UnclaimedAccess } from '../bus/bus';
import { setupMode, type CpuMode, type ModeOptions } from '../arch/x86/modes';
import { DebugConsole } from '../devices/debug-console';
import { Serial8250 } from '../devices/serial-8250';
import { I8042 } from '../devices/i8042';
import { CmosRtc } from '../devices/cmos-rtc';
import { DebugPort } from '../devices/debug-port';
import { buildGuestCpuid } from '../arch/x86/cpuid';
import { bootMsrs } from '../arch/x86/msrs';
import { lapicHasRequestedInterrupt, setupLapicVirtualWire } from '../arch/x86/lapic';
import { loadLinux, LinuxLoaderError, type LinuxBootInfo } from '../arch/x86/linux-loader';
import { extractVmlinux } from '../arch/x86/bzimage-payload';
import { unpackInitrdOnHost } from '../arch/x86/initrd';
import { BP_ACPI_RSDP_ADDR, HEADER_MAGIC } from '../arch/x86/boot-params';
import { writeAcpiTables, pciIntxGsi, PM1A_EVT_PORT, ACPI_PM_IO_LENGTH, SCI_IRQ } from '../arch/x86/acpi';
import { AcpiPowerManagement } from '../devices/acpi-pm';
import { PciHostBridge, PCI_CONFIG_ADDRESS_PORT, PCI_CONFIG_PORT_COUNT } from '../pci/host-bridge';
import { pciBarBusDevice, type PciDevice } from '../pci/pci-device';
import type { PciBarRange } from '../pci/config-space';
import { IntxRouter } from '../pci/intx-router';
import { VirtioPciDevice, type VirtioDeviceModel } from '../virtio/virtio-pci';
import { VirtioRng } from '../virtio/virtio-rng';
import { VirtioBlk } from '../virtio/virtio-blk';
import { VirtioConsole } from '../virtio/virtio-console';
import { VirtioNet, formatMac, parseMac, randomMac } from '../virtio/virtio-net';
import { VirtioSharedState } from '../virtio/shared-state';
import { VIRTIO_PCI_BAR } from '../virtio/virtio-pci';
import { IoThread, ioThreadSupported } from './io-thread';
import type { OffloadedModelSpec } from './io-protocol';
import { Tap } from '../net/tap';
import { writeMpTable } from '../arch/x86/mptable';
import { EMULATOR_CMDLINE_SUMMARY, linuxEmulatorCmdline, probeCpuidEnforcement } from '../arch/x86/cpuid-probe';
import { probeSyscallEntry, SyscallEntryFixup } from '../arch/x86/syscall-entry';
import { GuestDebugRegisters } from '../arch/x86/debug-registers';
import type { DebugExit } from '../kvm/structs/run';
import { DEFAULT_WORKAROUNDS, emulationFailureHandler } from '../arch/x86/emulation-workarounds';
import { xsaveLayout, xsaveWorkarounds, type XsaveComponent } from '../arch/x86/xsave-workarounds';
import { ExitStats } from './exit-stats';
import { runExitLoop, type ExitLoopContext, type VcpuStop } from './exit-loop';
import { parseSize } from './size';

/** Which guest device wrote console bytes. */
export type ConsoleSource = 'debugcon' | 'serial' | 'virtio';

/** A virtio-blk disk backed by a raw image file (`--disk path[,ro]`). */
export interface DiskConfig {
  path: string;
  readOnly?: boolean;
  /** What the guest reads as the disk's id (VIRTIO_BLK_T_GET_ID); default from the file name. */
  serial?: string;
}

/** A virtio-net NIC whose host end is a TAP interface (`--net tap=NAME`). */
export interface NetConfig {
  tap: string;
  /** "52:54:00:12:34:56"; default a random locally administered address. */
  mac?: string;
  /** An fd already bound to the tap (the async Machine opens taps on its own thread); default: open it. */
  fd?: number;
}

export interface MachineConfig {
  /** Guest RAM: bytes, or a size string like "64M", "2G". Default 2 MiB. */
  memory?: number | string;
  /**
   * 'bare' (default): RAM, a vCPU and the buses; HLT ends the run. For the
   * bare-metal examples. 'pc': a PC platform for operating systems: in-kernel
   * PIC/IOAPIC/LAPIC and PIT, the 8250 on IRQ 4, i8042 (reset), CMOS RTC,
   * port 0x80, and the emulation-failure workarounds.
   */
  platform?: 'bare' | 'pc';
  /** Path of the KVM device (default /dev/kvm). */
  kvmPath?: string;
  /** Port 0xE9 debug console (default on). */
  debugConsole?: boolean;
  /** A COM1 8250 UART at 0x3F8 (default on). */
  serial?: boolean;
  /** Log accesses that no device claims (they are always counted). */
  logUnclaimed?: boolean;
  /** Print each exit, decoded (`--trace`). */
  trace?: boolean | ((line: string) => void);
  /** A virtio entropy device on PCI ('pc' platform; `--rng`): the guest's /dev/hwrng. */
  rng?: boolean;
  /**
   * Number of vCPUs (default 1; more needs the 'pc' platform). They share the
   * one vCPU thread, time-sliced (see runSync), and are described to the
   * guest by the MP table and the ACPI MADT.
   */
  cpus?: number;
  /** virtio-blk disks on PCI, in order: the guest sees /dev/vda, /dev/vdb, ... */
  disks?: DiskConfig[];
  /** virtio-net NICs on PCI (eth0, eth1, ...). */
  net?: NetConfig[];
  /**
   * Where console input goes: the COM1 UART (default), or a virtio console
   * (hvc0; boot Linux with console=hvc0). Output is taken from both.
   */
  console?: 'serial' | 'virtio';
  /**
   * Serve the queues of the virtio disks, NICs and entropy device on a
   * separate I/O thread: KVM signals it through an ioeventfd per queue and it
   * raises the interrupt through an irqfd, so the guest's I/O does not pass
   * through the vCPU's exit loop (io-thread.ts). Needs the 'pc' platform and
   * KVM's ioeventfd, irqfd and irqfd-resample capabilities; without them the
   * devices are served on the vCPU thread. Default false here (runSync is the
   * single-threaded teaching path); the asynchronous Machine turns it on.
   * The virtio console stays on the vCPU thread, beside the UART that shares
   * its console channels.
   */
  ioThread?: boolean;
}

export interface MachineEvents {
  /** Bytes the guest wrote to its console devices (batched per line unless a console sink is set). */
  output: [data: Buffer, source: ConsoleSource];
  /** The guest made room in the UART receiver after sendInput() was refused bytes. */
  'input-space': [];
  /** A line for the user about something unusual (unclaimed access, workaround). */
  log: [message: string];
  stop: [stop: VcpuStop];
}

export interface LoadLinuxOptions {
  kernel: Uint8Array;
  initrd?: Uint8Array;
  cmdline: string;
  /** File names, only used in messages. */
  kernelPath?: string;
  initrdPath?: string;
  /** Unpack a bzImage on the host and boot the vmlinux inside, and gunzip a gzip initrd (default true). */
  decompressOnHost?: boolean;
  /**
   * Kernel command-line switches that keep Linux off instructions KVM's
   * emulator lacks: 'auto' adds them when the CPUID policy is not honored
   * (default). (The SYSCALL fix-up does not depend on this: it is on
   * whenever its probe finds the problem.)
   */
  emulatorWorkarounds?: 'auto' | 'on' | 'off';
}

/**
 * Where PCI BARs go: a 256 MiB memory window below the I/O APIC (0xFEC00000)
 * and above the largest RAM we allow (3 GiB), and the top quarter of the port
 * space, far from the ISA devices.
 */
const PCI_WINDOWS = { mmioBase: 0xe0000000, mmioSize: 0x10000000, ioBase: 0xc000, ioSize: 0x4000 } as const;

/** "HdrS" at 0x202: the boot-protocol signature of a bzImage (Linux x86 boot protocol). */
function isBzImage(image: Uint8Array): boolean {
  return image.length >= 0x206 && new DataView(image.buffer, image.byteOffset + 0x202, 4).getUint32(0, true) === HEADER_MAGIC;
}

export class MachineConfigError extends Error {
  readonly code = 'ECONFIG';
}

/** Guest RAM sizes we accept: at least 64 KiB (real-mode programs), below the 3 GiB MMIO hole. */
const MIN_MEMORY = 64 * 1024;
const MAX_MEMORY = 3 * 1024 * 1024 * 1024;
/** vCPUs per machine: they share one thread, so more would only slow each other down. */
export const MAX_CPUS = 8;
/**
 * Time slice of a running vCPU when several share the thread. A guest that
 * waits for another CPU (an IPI answered, a TLB shootdown, text_poke's sync)
 * spins for the rest of its slice before that CPU gets to run, which argues
 * for short slices; but here the guest kernel runs in KVM's instruction
 * emulator, where one timer interrupt with its softirq work can take
 * milliseconds ("hrtimer: interrupt took 25155769 ns"), and with 1 ms slices
 * Linux's boot with 2 vCPUs spun for minutes (ksoftirqd soft lockups while
 * stop_machine waited) where 4 ms slices go through. A rotation costs a few
 * microseconds (an ioctl for the MP state, two timer_settime calls).
 */
const SLICE_RUNNING_US = 4000;
/**
 * A vCPU in HLT, or an AP still waiting for its INIT/SIPI, is not run at all
 * while another vCPU has work, unless its local APIC holds a requested
 * interrupt (an IPI, a device interrupt): then it gets this slice, enough to
 * take the interrupt. Once it halts again it sleeps in KVM_RUN until the
 * slice ends, so the slice is short.
 */
const SLICE_HALTED_US = 200;
/**
 * ...but at least this often, so that what KVM keeps outside the IRR
 * reaches it: its LAPIC timer (KVM injects an expired timer only when the
 * vCPU runs), INIT and SIPI. Linux's tick is 4 ms (Debian: CONFIG_HZ=250).
 */
const HALTED_POLL_MS = 4;
/** How often, at most, runSync re-checks where the guest's #PF handler is (SYSCALL fix-up). */
const ARM_CHECK_INTERVAL_MS = 1;
/** KVM_MP_STATE_UNINITIALIZED and KVM_MP_STATE_HALTED (KVM API doc 4.38). */
const MP_STATE_UNINITIALIZED = 1;
const MP_STATE_HALTED = 3;

export class SyncMachine extends EventEmitter<MachineEvents> {
  readonly kvm: Kvm;
  readonly vm: Vm;
  readonly memory: GuestMemory;
  /** vCPU 0, the bootstrap processor. */
  readonly vcpu: Vcpu;
  /** All vCPUs; index = vCPU id = local APIC id. */
  readonly vcpus: Vcpu[] = [];
  readonly pio: PioBus;
  readonly mmio: MmioBus;
  readonly stats = new ExitStats();
  readonly serial?: Serial8250;
  readonly platform: 'bare' | 'pc';
  private readonly trace?: (line: string) => void;
  private closed = false;
  private readonly workarounds: ReturnType<typeof emulationFailureHandler>;
  /** Where each XSAVE component lives (KVM's CPUID leaf 0xD), for the xsave/xrstor workarounds. */
  private readonly xsaveLayout: Map<number, XsaveComponent>;
  private pendingStop: ExitLoopContext['pendingStop'];
  /** The PCI bus ('pc' platform): mechanism #1 at 0xCF8, the host bridge at 00:00.0. */
  readonly pci?: PciHostBridge;
  /** Where each PCI BAR is mapped on our buses, to unmap it when the guest moves it. */
  private readonly pciWindows = new Map<PciDevice, Map<number, BusDevice>>();
  /** PCI INTx lines are shared (wired-OR) before they reach KVM's I/O APIC. */
  private readonly intx = new IntxRouter((gsi, level) => this.vm.setIrqLine(gsi, level));
  /** The virtio devices, by name (statistics, tests). */
  readonly virtio = new Map<string, VirtioPciDevice>();
  readonly disks: VirtioBlk[] = [];
  /** The virtio console when `console: 'virtio'`. */
  readonly virtioConsole?: VirtioConsole;
  /** virtio-net NICs and their taps, in config order. */
  readonly nics: { model: VirtioNet; tap: Tap; ownsTap: boolean }[] = [];
  /** The virtio I/O thread, when `ioThread` is on and KVM can do it. */
  readonly io?: IoThread;
  /** Offloaded virtio devices and their index at the I/O thread. */
  private readonly offloaded = new Map<PciDevice, number>();
  /** The ACPI PM1 registers ('pc' platform): the power button. */
  private acpiPm?: AcpiPowerManagement;
  /** Set by loadLinux on a KVM whose SYSCALL does not reach CPL 0 (syscall-entry.ts): one per vCPU. */
  private readonly syscallFixups = new Map<Vcpu, SyscallEntryFixup>();
  /** vCPU 0's hardware breakpoints and single-step, shared by the SYSCALL fix-up and a debugger. */
  private debugRegistersValue?: GuestDebugRegisters;

  private constructor(config: MachineConfig, kvm: Kvm) {
    super();
    this.kvm = kvm;
    const memoryBytes = parseSize(config.memory ?? '2M');
    if (memoryBytes < MIN_MEMORY || memoryBytes > MAX_MEMORY || memoryBytes % 4096 !== 0)
      throw new MachineConfigError(`guest memory must be a multiple of 4 KiB between 64K and 3G (got ${config.memory})`);
    const onUnclaimed = config.logUnclaimed
      ? (bus: string) => (a: UnclaimedAccess) =>
          this.emit('log', `unclaimed ${bus} ${a.isWrite ? 'write' : 'read'} at 0x${a.address.toString(16)} size ${a.size}${a.isWrite ? ` value 0x${(a.value ?? 0).toString(16)}` : ''}`)
      : undefined;
    this.pio = new PioBus({ onUnclaimed: onUnclaimed?.('port') });
    this.mmio = new MmioBus({ onUnclaimed: onUnclaimed?.('mmio') });
    if (typeof config.trace === 'function') this.trace = config.trace;
    else if (config.trace) this.trace = (line) => process.stderr.write(line + '\n');

    this.platform = config.platform ?? 'bare';
    const cpus = config.cpus ?? 1;
    if (!Number.isInteger(cpus) || cpus < 1 || cpus > MAX_CPUS)
      throw new MachineConfigError(`cpus must be an integer from 1 to ${MAX_CPUS} (got ${config.cpus})`);
    if (cpus > 1 && this.platform !== 'pc') throw new MachineConfigError("more than one vCPU needs the 'pc' platform (APIC, MP table)");
    this.vm = kvm.createVm();
    let memory: GuestMemory | undefined;
    try {
      memory = GuestMemory.allocate([{ gpa: 0, size: memoryBytes }]);
      this.memory = memory;
      this.vm.mapMemory(memory);
      // Intel VMX needs three pages for real-mode support and one for the EPT
      // identity map; put them just below 4 GiB, the conventional spot outside
      // RAM and below the BIOS area (KVM API doc, KVM_SET_TSS_ADDR).
      this.vm.setIdentityMapAddress(0xfffbc000);
      this.vm.setTssAddress(0xfffbd000);
      // The in-kernel irqchip must exist before the vCPUs (KVM API doc, KVM_CREATE_IRQCHIP).
      if (this.platform === 'pc') {
        this.vm.createIrqchip();
        this.vm.createPit2();
      }
      // vCPU 0 is the bootstrap processor; with the in-kernel irqchip KVM
      // keeps the others in UNINITIALIZED until the guest sends INIT/SIPI
      // (KVM API doc, KVM_SET_MP_STATE; SDM Vol. 3A 9.4 MP initialization).
      const supported = kvm.supportedCpuid();
      this.xsaveLayout = xsaveLayout(supported);
      for (let id = 0; id < cpus; id++) {
        const vcpu = this.vm.createVcpu(id);
        vcpu.setCpuid(buildGuestCpuid(supported, { vcpuId: id, cpuCount: cpus }));
        if (this.platform === 'pc') {
          vcpu.setMsrs(bootMsrs());
          setupLapicVirtualWire(vcpu);
        }
        this.vcpus.push(vcpu);
      }
      this.vcpu = this.vcpus[0]!;
    } catch (err) {
      memory?.close();
      this.vm.close();
      throw err;
    }
    if (config.debugConsole ?? true) {
      this.pio.register(0xe9, 1, new DebugConsole({ onOutput: (byte) => this.output(byte, 'debugcon') }));
    }
    if (config.serial ?? true) {
      // COM1 on ISA IRQ 4; on the bare platform there is no interrupt controller.
      const irq = this.platform === 'pc' ? (level: boolean) => this.vm.setIrqLine(4, level) : undefined;
      this.serial = new Serial8250({ onTransmit: (byte) => this.output(byte, 'serial'), irq, onRxSpace: () => this.emit('input-space') });
      this.pio.register(0x3f8, 8, this.serial);
    }
    if (this.platform === 'pc') {
      this.addLegacyDevices(memoryBytes);
      this.pci = new PciHostBridge({
        onBarChange: (device, bar, _old, range) => this.mapPciBar(device, bar, range),
        onCallbackError: (error) => this.emit('log', `PCI: ${(error as Error).message}`),
      });
      this.pio.register(PCI_CONFIG_ADDRESS_PORT, PCI_CONFIG_PORT_COUNT, this.pci);
    }
    try {
      this.addConfiguredVirtioDevices(config);
    } catch (err) {
      // The caller (create) closes the KVM handle.
      this.io?.close();
      this.closeBackends();
      this.vm.close();
      this.memory.close();
      throw err;
    }
    this.workarounds = emulationFailureHandler(this.memory, (message) => this.emit('log', message), [
      ...DEFAULT_WORKAROUNDS,
      ...xsaveWorkarounds(this.xsaveLayout),
    ]);
  }

  /** The virtio devices the config asks for, in a fixed order: console, disks, NICs, rng. */
  private addConfiguredVirtioDevices(config: MachineConfig): void {
    const wantsVirtio = config.rng || config.disks?.length || config.net?.length || config.console === 'virtio';
    if (!wantsVirtio) return;
    if (this.platform !== 'pc') throw new MachineConfigError("virtio devices need the 'pc' platform");
    const log = (message: string): void => void this.emit('log', message);
    if (config.ioThread && ioThreadSupported(this.kvm))
      (this as { io?: IoThread }).io = new IoThread(this.vm, this.memory, log);
    else if (config.ioThread) log('this KVM lacks ioeventfd/irqfd resampling: virtio devices are served on the vCPU thread');
    if (config.console === 'virtio') {
      const console = new VirtioConsole({
        onOutput: (data) => {
          for (const byte of data) this.output(byte, 'virtio');
        },
        onInputSpace: () => this.emit('input-space'),
      });
      (this as { virtioConsole?: VirtioConsole }).virtioConsole = console;
      this.addVirtioDevice(console, 'virtio-console');
    }
    (config.disks ?? []).forEach((disk, i) => {
      const model = VirtioBlk.open({ path: disk.path, readOnly: disk.readOnly, serial: disk.serial, log });
      this.disks.push(model);
      this.addVirtioDevice(model, `virtio-blk${i}`, { kind: 'blk', path: disk.path, readOnly: disk.readOnly, serial: disk.serial });
    });
    (config.net ?? []).forEach((nic, i) => {
      const mac = nic.mac === undefined ? randomMac() : parseMac(nic.mac);
      const tap = nic.fd === undefined ? Tap.open(nic.tap) : Tap.fromFd(nic.tap, nic.fd);
      tap.log = log;
      const entry = { tap, ownsTap: nic.fd === undefined, model: undefined as unknown as VirtioNet };
      this.nics.push(entry);
      entry.model = new VirtioNet({ mac, onTransmit: (frame) => tap.write(frame) });
      this.addVirtioDevice(entry.model, `virtio-net${i}`, { kind: 'net', mac: formatMac(mac), tapName: nic.tap, tapFd: tap.fd });
    });
    if (config.rng) this.addVirtioDevice(new VirtioRng(), 'virtio-rng', { kind: 'rng' });
    this.io?.start();
  }

  /** The ISA devices a PC operating system probes for. */
  private addLegacyDevices(memoryBytes: number): void {
    const i8042 = new I8042({
      // Pulsing the CPU reset line (command 0xFE) resets the machine; tskvm ends the run.
      onReset: () => this.requestStop('reset', 'i8042 reset (guest reboot)'),
      irq1: (level) => this.vm.setIrqLine(1, level),
      irq12: (level) => this.vm.setIrqLine(12, level),
    });
    this.pio.register(0x60, 1, i8042.dataPort);
    this.pio.register(0x64, 1, i8042.commandPort);
    this.pio.register(0x70, 2, new CmosRtc({ memoryBytes, irq: (level) => this.vm.setIrqLine(8, level) }));
    this.pio.register(0x80, 1, new DebugPort());
    // ACPI PM1 event + control blocks (the FADT written by loadLinux points here).
    const pm = new AcpiPowerManagement({
      onPowerOff: () => this.requestStop('poweroff', 'ACPI S5 (the guest powered off)'),
      sci: (level) => this.vm.setIrqLine(SCI_IRQ, level),
    });
    this.pio.register(PM1A_EVT_PORT, ACPI_PM_IO_LENGTH, pm);
    this.acpiPm = pm;
  }

  static create(config: MachineConfig = {}): SyncMachine {
    const kvm = Kvm.open(config.kvmPath);
    try {
      return new SyncMachine(config, kvm);
    } catch (err) {
      kvm.close();
      throw err;
    }
  }

  // ------------------------------------------------------------ output

  private outputBuffer: number[] = [];
  private outputSource: ConsoleSource = 'debugcon';
  private consoleSink?: (byte: number, source: ConsoleSource) => void;

  /**
   * Sends every console byte straight to `sink` instead of batching lines into
   * 'output' events (an interactive console must see a prompt that has no newline).
   */
  setConsoleSink(sink: ((byte: number, source: ConsoleSource) => void) | undefined): void {
    this.flushOutput();
    this.consoleSink = sink;
  }

  /** Console bytes are batched per line (or 4 KiB) to keep the exit path cheap. */
  private output(byte: number, source: ConsoleSource): void {
    if (this.consoleSink) return this.consoleSink(byte, source);
    if (source !== this.outputSource) this.flushOutput();
    this.outputSource = source;
    this.outputBuffer.push(byte);
    if (byte === 0x0a || this.outputBuffer.length >= 4096) this.flushOutput();
  }

  flushOutput(): void {
    if (this.outputBuffer.length === 0) return;
    const data = Buffer.from(this.outputBuffer);
    this.outputBuffer = [];
    this.emit('output', data, this.outputSource);
  }

  // ------------------------------------------------------------ setup

  /** Adds a device on the port I/O bus. */
  addPioDevice(base: number, length: number, device: BusDevice): void {
    this.pio.register(base, length, device);
  }

  /** Adds a device on the MMIO bus (outside guest RAM). */
  addMmioDevice(base: number, length: number, device: BusDevice): void {
    if (this.memory.regions.some((r) => base < r.gpa + r.size && r.gpa < base + length))
      throw new MachineConfigError(`MMIO device ${device.name} at 0x${base.toString(16)} overlaps guest RAM`);
    this.mmio.register(base, length, device);
  }

  /** Puts a device on PCI bus 0 ('pc' platform); returns its slot. Add devices before loadLinux. */
  addPciDevice(device: PciDevice, slot?: number): number {
    if (!this.pci) throw new MachineConfigError("PCI devices need the 'pc' platform");
    return this.pci.addDevice(device, slot);
  }

  /**
   * Puts a virtio device model on PCI behind the modern virtio-pci transport,
   * its INTA routed through the _PRT swizzle (acpi.ts pciIntxGsi) to the
   * in-kernel I/O APIC. Returns the transport.
   */
  addVirtioDevice(model: VirtioDeviceModel, name: string, offloadAs?: OffloadedModelSpec): VirtioPciDevice {
    if (!this.pci) throw new MachineConfigError("virtio devices need the 'pc' platform");
    if (this.virtio.has(name)) throw new MachineConfigError(`there is already a device named ${name}`);
    let line: ((level: boolean) => void) | undefined;
    // With the I/O thread, this `model` only answers the configuration; the
    // I/O thread builds its own from `offloadAs` to serve the queues.
    const shared = new VirtioSharedState();
    const io = offloadAs && this.io ? this.io.addDevice(name, offloadAs, model.queueSizes.length, shared) : undefined;
    const device = new VirtioPciDevice({
      memory: this.memory,
      device: model,
      name,
      // The slot (hence the GSI) is known only once the bridge has placed the
      // device; the line cannot be raised before the driver sets DRIVER_OK.
      irq: (level) => line?.(level),
      log: (message) => this.emit('log', message),
      offload: io?.offload,
      shared,
    });
    const slot = this.pci.addDevice(device);
    const gsi = pciIntxGsi(slot, 0);
    if (io) {
      // Both threads assert the line through the irqfd; KVM lowers it at the EOI.
      this.io!.wireInterrupt(io.index, gsi);
      line = (level) => {
        if (level) this.io!.assertLine(io.index);
      };
      this.offloaded.set(device, io.index);
    } else {
      line = this.intx.line(gsi);
    }
    this.virtio.set(name, device);
    return device;
  }

  /**
   * Follows the guest (or our own resource assignment) moving a BAR: the old
   * window leaves its bus, the new one is registered. A BAR the guest puts on
   * top of RAM or another device is not mapped (the bus refuses overlaps; the
   * error is logged through the bridge's onCallbackError).
   */
  private mapPciBar(device: PciDevice, bar: number, range: PciBarRange | undefined): void {
    const windows = this.pciWindows.get(device) ?? new Map<number, BusDevice>();
    this.pciWindows.set(device, windows);
    const old = windows.get(bar);
    // The notify addresses move with the BAR: the ioeventfds leave the old
    // place now and are registered at the new one once it is mapped.
    const offloaded = bar === VIRTIO_PCI_BAR ? this.offloaded.get(device) : undefined;
    if (offloaded !== undefined) this.io!.mapNotify(offloaded, undefined);
    if (old) {
      this.mmio.unregister(old);
      this.pio.unregister(old);
      windows.delete(bar);
    }
    if (!range || range.size === 0n) return;
    const base = range.base;
    const end = range.base + range.size;
    if (end > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`${device.name} BAR ${bar} at 0x${base.toString(16)} is beyond what tskvm maps`);
    if (range.space === 'memory' && this.memory.regions.some((r) => base < BigInt(r.gpa + r.size) && BigInt(r.gpa) < end))
      throw new Error(`${device.name} BAR ${bar} at 0x${base.toString(16)} overlaps guest RAM; not mapped`);
    const window = pciBarBusDevice(device, bar);
    (range.space === 'io' ? this.pio : this.mmio).register(Number(base), Number(range.size), window);
    windows.set(bar, window);
    if (offloaded !== undefined && range.space === 'memory') this.io!.mapNotify(offloaded, Number(base));
  }

  /** Copies a flat binary into guest RAM at `gpa`. */
  loadBinary(data: Uint8Array, gpa: number): void {
    if (!this.memory.contains(gpa, Math.max(data.length, 1)))
      throw new MachineConfigError(
        `the binary (${data.length} bytes) does not fit in guest RAM at 0x${gpa.toString(16)}: guest RAM is ${this.memory.size} bytes; use a larger --mem`,
      );
    this.memory.write(gpa, data);
  }

  /** Puts vCPU 0 in real, protected or long mode, starting at `options.entry`. */
  setMode(mode: CpuMode, options: ModeOptions): void {
    if (!this.memory.contains(options.entry))
      throw new MachineConfigError(
        `entry point 0x${options.entry.toString(16)} is outside guest RAM (0x0-0x${(this.memory.size - 1).toString(16)})`,
      );
    setupMode(mode, this.vcpu, this.memory, options);
  }

  /** The guest TSC's frequency in kHz, or undefined where KVM cannot tell (KVM_CAP_GET_TSC_KHZ). */
  private guestTscKhz(): number | undefined {
    if (this.kvm.checkExtension(Cap.GET_TSC_KHZ) <= 0) return undefined;
    try {
      const khz = this.vcpu.getTscKhz();
      return khz > 0 ? khz : undefined;
    } catch {
      return undefined;
    }
  }

  /**
   * Loads a Linux kernel (bzImage or ELF vmlinux), initrd and command line
   * (Linux x86 boot protocol) and points vCPU 0 at the 64-bit entry with
   * RSI = the zero page. Needs the 'pc' platform. Also:
   * - a bzImage whose payload we can unpack (gzip, LZ4, none) is decompressed
   *   here and booted as vmlinux: in KVM's instruction emulator the kernel's
   *   own decompressor takes about a minute (DESIGN.md); on the host, 0.1 s;
   * - an MP table describes the CPUs and the I/O APIC (no ACPI tables);
   * - if the guest's CPUID does not follow KVM_SET_CPUID2 (cpuid-probe.ts),
   *   `emulatorWorkarounds` 'auto' (default) appends kernel switches with the
   *   CPUID policy's effect.
   */
  loadLinux(options: LoadLinuxOptions): LinuxBootInfo & { cmdline: string } {
    if (this.platform !== 'pc') throw new MachineConfigError("booting Linux needs the 'pc' platform (in-kernel interrupt controllers)");
    let kernel = options.kernel;
    // Said only once the kernel has loaded: for a bad image the loader's error is the one sentence.
    const notes: string[] = [];
    if (options.decompressOnHost ?? true) {
      const started = Date.now();
      let extracted: ReturnType<typeof extractVmlinux> | undefined;
      try {
        extracted = isBzImage(kernel) ? extractVmlinux(kernel) : undefined;
      } catch (err) {
        // "bzImage is truncated or corrupt: ..." → name the file the user gave.
        const what = options.kernelPath ? `kernel ${options.kernelPath}` : 'the kernel';
        throw new LinuxLoaderError(`${what}: ${(err as Error).message}`);
      }
      if (extracted && 'vmlinux' in extracted) {
        kernel = extracted.vmlinux;
        notes.push(`decompressed the kernel (${extracted.format}) on the host in ${Date.now() - started} ms; booting it as vmlinux`);
      } else if (extracted) {
        notes.push(`booting the bzImage as is: ${extracted.reason}`);
      }
    }
    let initrd = options.initrd;
    if (initrd && (options.decompressOnHost ?? true)) {
      const started = Date.now();
      const host = unpackInitrdOnHost(initrd);
      if (host.unpacked) {
        notes.push(`decompressed the initrd on the host in ${Date.now() - started} ms (${initrd.length} → ${host.data.length} bytes)`);
        initrd = host.data;
      }
    }
    let cmdline = options.cmdline;
    const mode = options.emulatorWorkarounds ?? 'auto';
    const addSwitches = mode === 'on' || (mode === 'auto' && !probeCpuidEnforcement(this.kvm).honored);
    if (addSwitches) cmdline = `${cmdline} ${linuxEmulatorCmdline(cmdline, { tscKhz: this.guestTscKhz() })}`.trim();
    if (probeSyscallEntry(this.kvm) === 'stays-in-user-mode') this.enableSyscallEntryFixup();
    const info = loadLinux(this.memory, { ...options, kernel, initrd, cmdline });
    if (addSwitches && mode === 'auto') notes.push(`this KVM ignores the CPUID policy; added '${EMULATOR_CMDLINE_SUMMARY}' to the kernel command line`);
    for (const note of notes) this.emit('log', note);
    writeMpTable(this.memory, { cpus: this.vcpus.length });
    // PCI resources: without firmware, tskvm places the BARs itself (like a BIOS would).
    this.pci?.assignResources(PCI_WINDOWS);
    // ACPI tables: the FADT's PM1 control block is how Linux powers off (S5);
    // the DSDT describes the PCI root bridge, its windows and INTx routing (_PRT).
    const acpi = writeAcpiTables(this.memory, { cpus: this.vcpus.length, pci: this.pci ? { ...PCI_WINDOWS, slots: 32 } : undefined });
    this.memory.writeU64(info.bootParams + BP_ACPI_RSDP_ADDR, BigInt(acpi.rsdp));
    setupMode('long', this.vcpu, this.memory, { entry: info.entry, regs: { rsi: BigInt(info.bootParams) } });
    return { ...info, cmdline };
  }

  /**
   * Finishes SYSCALLs that this KVM leaves at CPL 3 (syscall-entry.ts). Linux
   * boots turn it on by themselves where the probe finds the problem.
   */
  enableSyscallEntryFixup(): void {
    if (this.syscallFixups.size > 0) return;
    const log = (message: string): void => void this.emit('log', message);
    // One per vCPU: each has its own debug registers (vCPU 0's are shared with a debugger).
    for (const vcpu of this.vcpus)
      this.syscallFixups.set(vcpu, new SyscallEntryFixup(vcpu, this.memory, vcpu === this.vcpu ? log : () => {}, vcpu === this.vcpu ? this.debugRegisters : undefined));
  }

  /** vCPU 0's debug registers (KVM_SET_GUEST_DEBUG), for everyone who sets breakpoints or single-steps. */
  get debugRegisters(): GuestDebugRegisters {
    this.debugRegistersValue ??= new GuestDebugRegisters(this.vcpu);
    return this.debugRegistersValue;
  }

  /** Host input for the guest's console (COM1, or hvc0 with `console: 'virtio'`). Returns how many bytes were accepted. */
  sendInput(bytes: Uint8Array): number {
    if (this.virtioConsole) return this.virtioConsole.sendInput(bytes);
    return this.serial?.receive(bytes) ?? 0;
  }

  /** How many console input bytes sendInput would take now. */
  get consoleInputSpace(): number {
    if (this.virtioConsole) return this.virtioConsole.inputSpace;
    return this.serial?.rxSpace ?? 0;
  }

  /**
   * A frame from the host network for NIC `index`; false if the guest had no
   * buffer for it (dropped and counted). With the I/O thread that thread reads
   * the taps and serves the receive queue: this returns false.
   */
  netReceive(index: number, frame: Uint8Array): boolean {
    return this.nics[index]?.model.receive(frame) ?? false;
  }

  /**
   * Presses the ACPI fixed-feature power button (acpi-pm.ts): 'sci' if the
   * guest enabled PWRBTN_EN and got its SCI, 'not-enabled' if the status is
   * latched but nothing listens yet, 'no-acpi' on the bare platform.
   */
  pressPowerButton(): 'sci' | 'not-enabled' | 'no-acpi' {
    if (!this.acpiPm) return 'no-acpi';
    return this.acpiPm.pressPowerButton() ? 'sci' : 'not-enabled';
  }

  /** Ends the run at the next exit with the given outcome (used by reset/power-off devices). */
  requestStop(kind: VcpuStop['kind'], reason: string): void {
    this.pendingStop = { kind, reason };
  }

  // ------------------------------------------------------------ running

  /**
   * Runs vCPU 0 on this thread until it stops. Blocks the event loop while the
   * guest runs. `afterExit` runs after every exit (and after a kick) on this
   * thread; `shouldStop` is checked there too. `onDebug` sees each
   * KVM_EXIT_DEBUG after the SYSCALL fix-up has (dispatchDebugExit): a
   * debugger's breakpoints and steps (debug-target.ts); true if it was its.
   */
  runSync(hooks: { afterExit?: () => void; shouldStop?: () => boolean; onDebug?: (exit: DebugExit) => boolean } = {}): VcpuStop {
    const machine = this;
    const fixups = [...this.syscallFixups.values()];
    let lastArmCheck = -Infinity;
    const io = this.io;
    const afterFixups =
      fixups.length > 0
        ? () => {
            // Keep the breakpoint on the guest's current #PF handler: look at
            // the IDT at an exit once a millisecond or more has passed (a
            // KVM_GET_SREGS and a 16-byte read). The handler moves when Linux
            // replaces its early IDT, and a kernel booted with `quiet` makes so
            // few exits that a check every N exits came after init's first
            // syscall: init segfaulted at LSTAR (seen in bench/blk).
            const now = performance.now();
            if (now - lastArmCheck >= ARM_CHECK_INTERVAL_MS) {
              lastArmCheck = now;
              for (const fixup of fixups) fixup.arm();
            }
            hooks.afterExit?.();
          }
        : hooks.afterExit;
    // Log lines from the I/O thread (an Atomics.load when there are none).
    const afterExit = io
      ? () => {
          io.drainLogs();
          afterFixups?.();
        }
      : afterFixups;
    const ctx: ExitLoopContext = {
      vcpu: this.vcpu,
      memory: this.memory,
      pio: this.pio,
      mmio: this.mmio,
      stats: this.stats,
      trace: this.trace,
      // With the in-kernel irqchip KVM handles HLT itself; on the bare platform
      // nothing can wake a halted vCPU, so HLT ends the run.
      onHalt: this.platform === 'pc' ? 'continue' : 'stop',
      onEmulationFailure: this.platform === 'pc' ? this.workarounds : undefined,
      afterExit,
      onDebug: fixups.length > 0 || hooks.onDebug ? (vcpu, exit) => this.dispatchDebugExit(vcpu, exit, hooks.onDebug) : undefined,
      schedule: this.vcpus.length > 1 ? this.roundRobin() : undefined,
      shouldStop: hooks.shouldStop,
      get pendingStop() {
        return machine.pendingStop;
      },
    };
    const stop = runExitLoop(ctx);
    this.pendingStop = undefined;
    this.flushOutput();
    this.emit('stop', stop);
    return stop;
  }

  /**
   * A KVM_EXIT_DEBUG goes to the SYSCALL fix-up and to the runner's hook
   * (a debugger); each takes what its own breakpoints or steps caused. Both
   * see a single-step trap, since both may be stepping the same instruction.
   * Handled by neither: the loop stops with a report.
   */
  private dispatchDebugExit(vcpu: Vcpu, exit: DebugExit, debuggerHook?: (exit: DebugExit) => boolean): boolean {
    const byFixup = this.syscallFixups.get(vcpu)?.handleDebugExit(exit) ?? false;
    // The debugger drives vCPU 0 only.
    const byDebugger = vcpu === this.vcpu ? (debuggerHook?.(exit) ?? false) : false;
    return byFixup || byDebugger;
  }

  /**
   * SMP on one thread: each vCPU runs for a time slice (a bounded KVM_RUN),
   * then the next one gets the thread, like a uniprocessor host scheduling
   * vCPU threads. A vCPU sitting in HLT, or an AP still waiting for its
   * INIT/SIPI, is skipped unless its local APIC has an interrupt requested
   * or it has not run for HALTED_POLL_MS, and then gets a short slice: in
   * KVM_RUN a halted vCPU sleeps until its slice ends, time a busy vCPU
   * could have used. When every vCPU is idle, the next one in turn sleeps
   * in KVM_RUN for a running slice (nothing else is waiting). Spin-waits
   * across vCPUs (IPIs, stop_machine) cost up to a slice each.
   */
  private roundRobin(): NonNullable<ExitLoopContext['schedule']> {
    const vcpus = this.vcpus;
    const sliceOf = new Map<Vcpu, number>(vcpus.map((v) => [v, SLICE_RUNNING_US]));
    const lastRun = new Map<Vcpu, number>(vcpus.map((v) => [v, 0]));
    const isIdle = (state: number): boolean => state === MP_STATE_HALTED || state === MP_STATE_UNINITIALIZED;
    return {
      run: (vcpu) => {
        lastRun.set(vcpu, performance.now());
        // An AP that Linux brings online late (CPU hotplug) runs user code
        // soon after it loads its IDT, possibly before the periodic check in
        // runSync looks again: arm its SYSCALL fix-up before each of its
        // slices until it is armed (a KVM_GET_SREGS while it is not).
        const fixup = this.syscallFixups.get(vcpu);
        if (fixup && !fixup.armed) fixup.arm();
        return vcpu.runFor(sliceOf.get(vcpu)!);
      },
      next: (vcpu) => {
        const now = performance.now();
        const start = vcpus.indexOf(vcpu);
        for (let step = 1; step <= vcpus.length; step++) {
          const candidate = vcpus[(start + step) % vcpus.length]!;
          if (!isIdle(candidate.getMpState())) {
            sliceOf.set(candidate, SLICE_RUNNING_US);
            return candidate;
          }
          if (now - lastRun.get(candidate)! >= HALTED_POLL_MS || lapicHasRequestedInterrupt(candidate.getLapic())) {
            sliceOf.set(candidate, SLICE_HALTED_US);
            return candidate;
          }
        }
        // Every vCPU is idle and none is due: the next in turn waits in KVM_RUN.
        const next = vcpus[(start + 1) % vcpus.length]!;
        sliceOf.set(next, SLICE_RUNNING_US);
        return next;
      },
    };
  }

  /** Exit counts by reason and accesses by device. */
  statistics(): {
    exits: Record<string, number>;
    total: number;
    devices: Record<string, number>;
    unclaimed: Record<string, number>;
    workarounds: Record<string, number>;
    ioThread?: Record<string, number>;
  } {
    const devices: Record<string, number> = {};
    // What the virtio I/O thread did without an exit: notifications (ioeventfd) and interrupts (irqfd).
    let ioThread: Record<string, number> | undefined;
    if (this.io) {
      ioThread = {};
      for (const [name, device] of this.virtio) {
        if (!device.offload) continue;
        const counts = device.shared.counts;
        ioThread[`${name} notifications`] = counts.notifications;
        ioThread[`${name} interrupts`] = counts.usedInterrupts + counts.configInterrupts;
      }
    }
    for (const bus of [this.pio, this.mmio]) for (const [name, n] of bus.accessCounts) devices[name] = (devices[name] ?? 0) + n;
    return {
      exits: Object.fromEntries(this.stats.byReason),
      total: this.stats.total,
      devices,
      unclaimed: {
        'port reads': this.pio.unclaimedReads,
        'port writes': this.pio.unclaimedWrites,
        'mmio reads': this.mmio.unclaimedReads,
        'mmio writes': this.mmio.unclaimedWrites,
      },
      workarounds: {
        ...Object.fromEntries(this.workarounds.counts),
        ...(this.syscallFixups.size > 0
          ? {
              'syscall entry': [...this.syscallFixups.values()].reduce((n, f) => n + f.counts.syscalls, 0),
              'page faults stepped over': [...this.syscallFixups.values()].reduce((n, f) => n + f.counts.pageFaults, 0),
            }
          : {}),
      },
      ...(ioThread ? { ioThread } : {}),
    };
  }

  /** Disk images and the taps this machine opened. */
  private closeBackends(): void {
    for (const disk of this.disks) disk.close();
    for (const nic of this.nics) if (nic.ownsTap) nic.tap.close();
  }

  /** Frees the vCPU, VM, guest RAM and the KVM handle. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.flushOutput();
    // The I/O thread first: it uses guest RAM, the disk images and the taps.
    this.io?.close();
    this.closeBackends();
    this.vm.close();
    // An I/O thread that did not answer may still touch guest RAM: leave it mapped.
    if (!this.io?.abandoned) this.memory.close();
    this.kvm.close();
  }
}
