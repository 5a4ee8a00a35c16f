// The I/O thread's side of a virtio device whose queues are offloaded
// (QueueOffload in virtio-pci.ts; the thread is src/vmm/io-worker.ts).
//
// The vCPU thread keeps the transport's registers and its own instance of
// the device model for the device configuration. This side holds a second
// instance of the model that does the device's actual work: it pops the
// chains, reads and writes guest RAM through SplitQueue (which validates
// every descriptor, as in the vCPU-thread case), and completes them. What it
// shares with the transport is in VirtioSharedState: it raises ISR bits and
// asserts the interrupt through `assertLine` (an irqfd write), and a guest
// error here sets DEVICE_NEEDS_RESET with a configuration change
// notification (§2.1.2), exactly as the transport does on its own thread.
//
// Lifecycle, driven by the transport through the I/O worker's messages:
// start() at DRIVER_OK with the negotiated features and the enabled queues'
// geometry (every queue is served once then: buffers made available before
// DRIVER_OK, §2.1.2), notify() for each ioeventfd signal, stop() at a device
// reset (the model's reset(), the queues dropped).
import type { GuestMemory } from '../memory/guest-memory';
import type { SplitQueue } from './split-queue';
import {
  describeModelError,
  needsResetReason,
  openSplitQueue,
  VIRTIO_ISR_CONFIG,
  VIRTIO_ISR_QUEUE,
  type QueueGeometry,
  type VirtioDeviceModel,
  type VirtioTransport,
} from './virtio-pci';
import type { VirtioSharedState } from './shared-state';

export interface QueueServerOptions {
  name: string;
  memory: GuestMemory;
  model: VirtioDeviceModel;
  shared: VirtioSharedState;
  /** Asserts the device's interrupt line (the irqfd). */
  assertLine: () => void;
  log?: (message: string) => void;
}

export class QueueServer implements VirtioTransport {
  readonly name: string;
  readonly model: VirtioDeviceModel;
  private readonly memory: GuestMemory;
  private readonly shared: VirtioSharedState;
  private readonly assertLine: () => void;
  private readonly log?: (message: string) => void;
  private queues: (SplitQueue | undefined)[] = [];
  private features = 0n;
  private live = false;

  constructor(options: QueueServerOptions) {
    this.name = options.name;
    this.model = options.model;
    this.memory = options.memory;
    this.shared = options.shared;
    this.assertLine = options.assertLine;
    this.log = options.log;
    this.model.attach?.(this);
  }

  get negotiatedFeatures(): bigint {
    return this.features;
  }

  /** True between start() and stop(), unless the device went to DEVICE_NEEDS_RESET or the driver to FAILED. */
  get serving(): boolean {
    return this.live && !this.shared.needsReset && !this.shared.driverFailed;
  }

  start(features: bigint, geometry: readonly QueueGeometry[]): void {
    this.features = features;
    this.queues = [];
    this.live = true;
    for (const { index, ...areas } of geometry) {
      try {
        this.queues[index] = openSplitQueue(this.memory, areas, features);
      } catch (err) {
        // The transport validated the same geometry; this is a bug, not the guest.
        this.fail(`queue ${index}`, err);
        return;
      }
    }
    try {
      this.model.activate?.(features);
    } catch (err) {
      this.fail('activate', err);
      return;
    }
    this.queues.forEach((_, index) => this.notify(index));
  }

  stop(): void {
    this.live = false;
    this.queues = [];
    this.features = 0n;
    try {
      this.model.reset();
    } catch (err) {
      this.log?.(`${this.name}: device model reset failed: ${describeModelError(err)}`);
    }
  }

  /** The guest notified queue `index` (its ioeventfd fired). Returns false if it was ignored. */
  notify(index: number): boolean {
    return this.withQueue(index, (queue) => {
      this.shared.countNotification();
      this.model.queueNotify(index, queue);
    });
  }

  withQueue(index: number, work: (queue: SplitQueue) => void): boolean {
    const queue = this.queues[index];
    if (!queue || !this.serving) return false;
    try {
      work(queue);
      if (queue.needsNotification()) this.raise(VIRTIO_ISR_QUEUE);
    } catch (err) {
      this.fail(`queue ${index}`, err);
    }
    return true;
  }

  /** The generation counter is the transport's; a change of configuration made here only notifies. */
  signalConfigChange(): void {
    this.raise(VIRTIO_ISR_CONFIG);
  }

  /** KVM lowered the line at the guest's EOI: assert it again while the ISR still has bits. */
  resample(): void {
    if (this.shared.isr !== 0 && !this.shared.intxDisabled) this.assertLine();
  }

  private raise(bits: number): void {
    if (this.shared.raiseIsr(bits) && !this.shared.intxDisabled) this.assertLine();
  }

  /** As VirtioPciDevice.setNeedsReset: the first error of an episode is logged, with a configuration interrupt (§2.1.2). */
  private fail(where: string, err: unknown): void {
    if (!this.shared.setNeedsReset()) return;
    this.log?.(`${this.name}: ${needsResetReason(where, err)}; device needs reset`);
    this.raise(VIRTIO_ISR_CONFIG);
  }
}
