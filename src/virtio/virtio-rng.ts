// Virtio entropy device (virtio 1.2 §5.4), a VirtioDeviceModel for the PCI
// transport (src/virtio/virtio-pci.ts):
//
//   const rng = new VirtioPciDevice({ memory, device: new VirtioRng(), irq, name: 'virtio-rng' });
//   bridge.addDevice(rng);
//
// §5.4.1 device id 4; §5.4.2 one virtqueue, 0 "requestq"; §5.4.3 no feature
// bits; §5.4.4 no device configuration.
//
// Operation (§5.4.6): the driver makes device-writable buffers available;
// the device fills them with random bytes from the host's CSPRNG
// (crypto.randomFillSync) and returns each chain with the number of bytes
// written. §5.4.6.2 lets the device "use less than the entire buffer length",
// so each request gets at most `maxRequestBytes` (64 KiB by default), which
// bounds the host work per chain whatever length the guest writes.
//
// A chain with device-readable bytes breaks §5.4.6.1 ("The driver MUST NOT
// place device-readable buffers into the queue"). It is a malformed request,
// not a broken queue: the device returns it with 0 bytes written, counts it in
// `stats.badRequests`, and goes on with the next chain. So is a chain with no
// writable byte (there is nowhere to put the "one or more random bytes"
// §5.4.6.2 asks for). Errors in the queue itself (SplitQueue throws
// VirtqueueError) propagate to the transport, which sets DEVICE_NEEDS_RESET.

import { randomFillSync } from 'crypto';
import type { SplitQueue } from './split-queue';
import type { VirtioDeviceModel } from './virtio-pci';

/** Virtio device id of the entropy device (§5.4.1). */
export const VIRTIO_ID_ENTROPY = 4;
/** The request queue (§5.4.2). */
export const VIRTIO_RNG_REQUESTQ = 0;
export const VIRTIO_RNG_QUEUE_SIZE = 256;
export const VIRTIO_RNG_DEFAULT_MAX_REQUEST = 64 * 1024;

export interface VirtioRngOptions {
  /** Most random bytes written per request (default 64 KiB). */
  maxRequestBytes?: number;
  /** Maximum size of the request queue (default 256). */
  queueSize?: number;
}

export interface VirtioRngStats {
  /** Requests served with random bytes. */
  requests: number;
  /** Random bytes handed to the guest. */
  bytes: number;
  /** Requests returned with 0 bytes: readable buffers, or no writable space. */
  badRequests: number;
}

export class VirtioRng implements VirtioDeviceModel {
  readonly deviceId = VIRTIO_ID_ENTROPY;
  readonly features = 0n;
  readonly queueSizes: readonly number[];
  readonly configSize = 0;
  /**
   * Base class 0xFF "device does not fit any defined class" (PCI Code and ID
   * Assignment spec). Virtio defines no class codes and Linux's virtio_pci
   * matches on vendor and device id only.
   */
  readonly classCode = 0xff0000;
  readonly maxRequestBytes: number;
  readonly stats: VirtioRngStats = { requests: 0, bytes: 0, badRequests: 0 };
  private readonly scratch: Buffer;

  constructor(options: VirtioRngOptions = {}) {
    const max = options.maxRequestBytes ?? VIRTIO_RNG_DEFAULT_MAX_REQUEST;
    if (!Number.isSafeInteger(max) || max < 1 || max > 16 * 1024 * 1024) throw new RangeError(`invalid maxRequestBytes ${max}`);
    this.maxRequestBytes = max;
    this.queueSizes = [options.queueSize ?? VIRTIO_RNG_QUEUE_SIZE];
    this.scratch = Buffer.alloc(max);
  }

  readConfig(): number {
    return 0; // no device configuration (§5.4.4)
  }

  writeConfig(): void {}

  queueNotify(queueIndex: number, queue: SplitQueue): void {
    if (queueIndex !== VIRTIO_RNG_REQUESTQ) return;
    for (let chain = queue.popAvailable(); chain; chain = queue.popAvailable()) {
      if (chain.readableBytes > 0 || chain.writableBytes === 0) {
        this.stats.badRequests++;
        queue.pushUsed(chain.head, 0);
        continue;
      }
      const n = Math.min(chain.writableBytes, this.maxRequestBytes);
      const bytes = this.scratch.subarray(0, n);
      randomFillSync(bytes);
      const written = queue.writeChain(chain, bytes);
      bytes.fill(0); // no copy of what the guest got stays behind
      queue.pushUsed(chain.head, written);
      this.stats.requests++;
      this.stats.bytes += written;
    }
  }

  reset(): void {}
}
