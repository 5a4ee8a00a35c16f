// The vCPU thread's handle on the virtio I/O thread (io-worker.ts): it
// creates the eventfds, registers them with KVM (KVM_IOEVENTFD for each
// queue's notify address, KVM_IRQFD in resample mode for each device's INTx
// GSI), starts the worker and implements QueueOffload for the transports.
//
// KVM API doc 4.59 (KVM_IOEVENTFD): "a guest write in the registered address
// will signal the provided event instead of triggering an exit"; 4.75
// (KVM_IRQFD) with KVM_IRQFD_FLAG_RESAMPLE: the GSI is asserted when the
// eventfd is written and de-asserted by KVM at the guest's EOI, when
// resamplefd is signalled — the level-triggered INTx of a PCI device.
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'worker_threads';
import { native } from '../native';
import type { Vm } from '../kvm/vm';
import { Cap } from '../kvm/constants';
import type { Kvm } from '../kvm/kvm';
import { KVM_IOEVENTFD_FLAG_DEASSIGN, KVM_IRQFD_FLAG_RESAMPLE } from '../kvm/structs/irq';
import type { GuestMemory } from '../memory/guest-memory';
import type { QueueGeometry, QueueOffload } from '../virtio/virtio-pci';
import { VIRTIO_PCI_NOTIFY_MULTIPLIER, VIRTIO_PCI_NOTIFY_OFFSET } from '../virtio/virtio-pci';
import type { VirtioSharedState } from '../virtio/shared-state';
import { findWorkerScript } from './worker-script';
import { IO_CONTROL_CELLS, IO_DONE, IO_ENDED, IO_LOGS, type IoCommand, type OffloadedDeviceSpec, type OffloadedModelSpec } from './io-protocol';

/** How long a device reset or the end waits for the I/O thread before giving up on it. */
const STOP_TIMEOUT_MS = 10_000;
/** virtio-pci notifications are 16-bit writes (§4.1.5.2: "writing the 16-bit virtqueue index"). */
const NOTIFY_WRITE_SIZE = 2;

/** Whether this KVM can take the I/O path off the exit loop (it needs the in-kernel irqchip too). */
export function ioThreadSupported(kvm: Kvm): boolean {
  return kvm.checkExtension(Cap.IOEVENTFD) > 0 && kvm.checkExtension(Cap.IRQFD) > 0 && kvm.checkExtension(Cap.IRQFD_RESAMPLE) > 0;
}

/** The compiled I/O worker script (worker-script.ts). */
function workerScript(): string {
  const found = findWorkerScript('io-worker');
  if (found.path) return found.path;
  throw Object.assign(new Error(`the virtio I/O worker script is not built (looked for ${found.looked.join(' and ')}); run npm run build`), {
    code: 'ENOWORKER',
  });
}

interface Device {
  spec: OffloadedDeviceSpec;
  /** GSI the irqfd is assigned to, once wired. */
  gsi?: number;
  /** The notify addresses registered now, by queue fd. */
  registered: Map<number, number>;
}

export class IoThread {
  private readonly devices: Device[] = [];
  private readonly doorbellFd: number;
  private readonly control = new Int32Array(new SharedArrayBuffer(IO_CONTROL_CELLS * 4));
  private readonly commands: MessagePort;
  private readonly commandsRemote: MessagePort;
  private readonly logs: MessagePort;
  private readonly logsRemote: MessagePort;
  private worker?: Worker;
  private seq = 0;
  private logsSeen = 0;
  private closed = false;
  /** Set when the I/O thread could not be waited for: nothing more is asked of it. */
  private lost = false;

  constructor(
    private readonly vm: Vm,
    private readonly memory: GuestMemory,
    private readonly log: (message: string) => void,
  ) {
    this.doorbellFd = native.eventfd(0, native.EFD_NONBLOCK);
    const commands = new MessageChannel();
    const logs = new MessageChannel();
    this.commands = commands.port1;
    this.commandsRemote = commands.port2;
    this.logs = logs.port2;
    this.logsRemote = logs.port1;
  }

  /** True if the I/O thread did not answer in time: it may still use guest RAM. */
  get abandoned(): boolean {
    return this.lost;
  }

  /** Asserts device `index`'s interrupt line (its irqfd); KVM lowers it at the guest's EOI. */
  assertLine(index: number): void {
    if (!this.closed) native.eventfdWrite(this.devices[index]!.spec.irqFd, 1);
  }

  /**
   * Adds a device whose queues the I/O thread will serve; returns what its
   * transport calls. Call wireInterrupt once the device has a GSI, and
   * mapNotify whenever its BAR moves.
   */
  addDevice(name: string, model: OffloadedModelSpec, queueCount: number, shared: VirtioSharedState): { index: number; offload: QueueOffload } {
    if (this.worker) throw new Error('the I/O thread is running: add devices before start()');
    const fds: number[] = [];
    const eventfd = (): number => {
      const fd = native.eventfd(0, native.EFD_NONBLOCK);
      fds.push(fd);
      return fd;
    };
    try {
      const queueFds = Array.from({ length: queueCount }, eventfd);
      const spec: OffloadedDeviceSpec = { name, model, shared: shared.buffer, queueFds, irqFd: eventfd(), resampleFd: eventfd() };
      const index = this.devices.push({ spec, registered: new Map() }) - 1;
      const offload: QueueOffload = {
        start: (features: bigint, queues: QueueGeometry[]) => this.send({ type: 'start', device: index, features, queues }),
        stop: () => this.stopDevice(index),
        notify: (queue: number) => {
          const fd = queueFds[queue];
          if (fd !== undefined && !this.closed) native.eventfdWrite(fd, 1);
        },
      };
      return { index, offload };
    } catch (err) {
      for (const fd of fds) native.close(fd);
      throw err;
    }
  }

  /** Connects device `index`'s irqfd to `gsi` (its PCI INTx line) in resample mode. */
  wireInterrupt(index: number, gsi: number): void {
    const device = this.devices[index]!;
    this.vm.assignIrqFd({ fd: device.spec.irqFd, gsi, flags: KVM_IRQFD_FLAG_RESAMPLE, resampleFd: device.spec.resampleFd });
    device.gsi = gsi;
  }

  /**
   * The device's BAR moved: its queues' notify addresses are
   * `barBase + 0x3000 + 4q` now (undefined: unmapped). A queue whose
   * ioeventfd KVM refuses (a guest that put two BARs on one address) keeps
   * working through the exit path (QueueOffload.notify).
   */
  mapNotify(index: number, barBase: number | undefined): void {
    const device = this.devices[index]!;
    const register = (fd: number, addr: number, deassign: boolean): void =>
      this.vm.assignIoEventFd({ addr, len: NOTIFY_WRITE_SIZE, fd, flags: deassign ? KVM_IOEVENTFD_FLAG_DEASSIGN : 0 });
    for (const [fd, addr] of device.registered) register(fd, addr, true);
    device.registered.clear();
    if (barBase === undefined) return;
    device.spec.queueFds.forEach((fd, queue) => {
      const addr = barBase + VIRTIO_PCI_NOTIFY_OFFSET + queue * VIRTIO_PCI_NOTIFY_MULTIPLIER;
      try {
        register(fd, addr, false);
        device.registered.set(fd, addr);
      } catch (err) {
        this.log(`${device.spec.name}: no ioeventfd for queue ${queue} at 0x${addr.toString(16)} (${(err as { code?: string }).code ?? (err as Error).message}); its notifications exit`);
      }
    });
  }

  /** Starts the worker (once all devices are added). */
  start(): void {
    if (this.worker || this.devices.length === 0) return;
    this.worker = new Worker(workerScript(), {
      workerData: {
        memory: this.memory.layout(),
        devices: this.devices.map((d) => d.spec),
        doorbellFd: this.doorbellFd,
        commands: this.commandsRemote,
        logs: this.logsRemote,
        control: this.control.buffer,
      },
      transferList: [this.commandsRemote, this.logsRemote],
    });
    // Its errors reach us as log lines; the event loop of this thread may never run.
    this.worker.unref();
  }

  /** Forwards the I/O thread's log lines (cheap when there are none). */
  drainLogs(): void {
    if (Atomics.load(this.control, IO_LOGS) === this.logsSeen) return;
    this.logsSeen = Atomics.load(this.control, IO_LOGS);
    for (let m = receiveMessageOnPort(this.logs); m; m = receiveMessageOnPort(this.logs)) this.log(String(m.message));
  }

  private send(command: IoCommand): void {
    if (this.closed || !this.worker) return;
    this.commands.postMessage(command);
    native.eventfdWrite(this.doorbellFd, 1);
  }

  /** Sends a command that the I/O thread acknowledges with `seq` in IO_DONE, and waits for that. */
  private sendAndWait(make: (seq: number) => IoCommand, what: string): void {
    if (!this.worker || this.lost) return;
    const seq = ++this.seq;
    this.send(make(seq));
    const deadline = Date.now() + STOP_TIMEOUT_MS;
    for (;;) {
      const done = Atomics.load(this.control, IO_DONE);
      if (done >= seq) return;
      if (Atomics.load(this.control, IO_ENDED) !== 0) return;
      const left = deadline - Date.now();
      if (left <= 0) {
        this.lost = true;
        this.log(`virtio I/O thread did not answer (${what}) within ${STOP_TIMEOUT_MS / 1000} s`);
        return;
      }
      Atomics.wait(this.control, IO_DONE, done, Math.min(left, 100));
    }
  }

  /**
   * Waits until the I/O thread has served every notification the guest
   * signalled before this call (tests that check the used ring at a known
   * point; the guest itself must not rely on the timing).
   */
  sync(): void {
    this.sendAndWait((seq) => ({ type: 'sync', seq }), 'sync');
  }

  private stopDevice(index: number): void {
    this.sendAndWait((seq) => ({ type: 'stop', device: index, seq }), `reset of ${this.devices[index]?.spec.name}`);
  }

  /** Ends the I/O thread (waiting until it no longer touches guest RAM), unregisters and closes the fds. */
  close(): void {
    if (this.closed) return;
    this.sendAndWait((seq) => ({ type: 'quit', seq }), 'end');
    this.drainLogs();
    this.closed = true;
    if (this.worker && !this.lost) void this.worker.terminate();
    this.devices.forEach((device, index) => {
      try {
        this.mapNotify(index, undefined);
        if (device.gsi !== undefined) this.vm.deassignIrqFd(device.spec.irqFd, device.gsi);
      } catch {
        // The VM is going away anyway; closing it drops the registrations.
      }
      for (const fd of [...device.spec.queueFds, device.spec.irqFd, device.spec.resampleFd]) native.close(fd);
    });
    native.close(this.doorbellFd);
    this.commands.close();
    this.logs.close();
  }
}
