// Virtio console device (virtio 1.2 §5.3), a VirtioDeviceModel for the PCI
// transport (src/virtio/virtio-pci.ts):
//
//   const console = new VirtioConsole({ onOutput: (bytes) => process.stdout.write(bytes) });
//   const dev = new VirtioPciDevice({ memory, device: console, irq, name: 'virtio-console' });
//   bridge.addDevice(dev);
//   console.sendInput(keys);        // host → guest; returns how many bytes were accepted
//
// What is implemented
// -------------------
// §5.3.1 device id 3. One port, no VIRTIO_CONSOLE_F_MULTIPORT, so §5.3.2 gives
// exactly two queues: 0 receiveq(port0) (device → driver: host input) and
// 1 transmitq(port0) (driver → device: guest output). Linux binds this as
// hvc0 (`console=hvc0`).
//
// Features (§5.3.3) offered: VIRTIO_CONSOLE_F_SIZE (0, cols and rows are
// valid) and VIRTIO_CONSOLE_F_EMERG_WRITE (2, emerg_wr is valid).
//
// Device configuration (§5.3.4), 12 bytes, little-endian:
//   0  le16 cols           setSize() / the `cols` option (default 80)
//   2  le16 rows           setSize() / the `rows` option (default 24)
//   4  le32 max_nr_ports   reads 1 (only meaningful with MULTIPORT, which is
//                          not offered; 1 is what this device has)
//   8  le32 emerg_wr       write-only: reads 0
// This is the order of virtio 1.2 §5.3.4 and of Linux's
// include/uapi/linux/virtio_console.h (struct virtio_console_config), which
// virtcons_apply_config reads. Driver writes to cols, rows and max_nr_ports
// are ignored (they are the device's). Accesses of any width at any offset
// are served byte by byte from this image (the transport already splits
// accesses at the end of the configuration).
//
// Emergency write (§5.3.5, §5.3.5.1): "The device MUST allow a write to
// emerg_wr, even on an unconfigured device" and "SHOULD transmit the lower
// byte written to emerg_wr". Any driver write whose bytes cover offset 8 (the
// low byte of emerg_wr) hands that one byte to `onOutput`, whatever the device
// status (before FEATURES_OK, after DEVICE_NEEDS_RESET: §5.3.5 item 1 says it
// can be written at any time, for early boot output and for OS failures such
// as a corrupted virtio ring). Writes touching only bytes 9-11 output nothing.
//
// Console size: setSize(cols, rows) updates the configuration and, if the
// driver is live (DRIVER_OK seen since the last reset) and negotiated
// VIRTIO_CONSOLE_F_SIZE, sends a configuration change notification, which
// §5.3.6 item 3 says "indicates that the updated size can be read". Before
// that, the driver reads the new size when it probes.
//
// Output (§5.3.6 item 1): on a transmitq notification every available chain
// is popped; its device-readable bytes go to `onOutput` in order, copied out
// of guest memory in pieces of at most 64 KiB (OUTPUT_PIECE), so a guest that
// claims a huge buffer costs the host one piece of memory at a time, and no
// byte is dropped. Each chain is returned with used length 0: the device
// writes nothing into it (§2.7.8: len is the bytes written).
//
// Input (§5.3.6 item 2): `sendInput(bytes)` takes bytes from the host into a
// bounded pending buffer (`maxPendingInput`, default 64 KiB) and fills the
// receiveq buffers the driver has made available, through the transport's
// withQueue (so the used buffer notification follows the queue's rules). The
// return value is the number of bytes accepted: accepted bytes are delivered
// in order, eventually; the rest is refused (counted in stats.refusedInput)
// and the caller keeps it, applying backpressure upstream. After a refusal,
// `onInputSpace` is called once, as soon as there is room again (the driver
// added receive buffers and some pending bytes went into them), like the
// UART's onRxSpace (src/devices/serial-8250.ts). Input sent before the driver
// is up waits in the pending buffer and is delivered once the driver posts
// receive buffers (the transport polls every queue at DRIVER_OK, so buffers
// posted before DRIVER_OK are filled then).
//
// Malformed chains: §5.3.6.1 "The driver MUST NOT put a device-readable
// buffer in a receiveq. The driver MUST NOT put a device-writable buffer in a
// transmitq." Such a chain (and a receiveq chain with no writable byte, which
// can hold no input) is a bad request, not a broken queue: it is returned
// with used length 0, counted in stats.badChains, and nothing is read from or
// written to it. Errors in the queue itself (SplitQueue throws
// VirtqueueError: a descriptor loop, a buffer outside RAM...) propagate to the
// transport, which sets DEVICE_NEEDS_RESET; nothing reaches the VMM.
//
// Reset: a driver reset (status 0) forgets the negotiated features and the
// driver's liveness but KEEPS the pending input. Bytes that sendInput
// accepted were promised to the guest, and dropping them would break the
// accept/refuse contract the host relies on; the buffer stays bounded by
// maxPendingInput either way. A host that wants them gone (a machine reset,
// say) calls discardPendingInput().
//
// Callbacks: exceptions thrown by `onOutput` or `onInputSpace` propagate to
// whoever triggered them. Through the transport (a notification, an
// emerg_wr write) that means the device enters DEVICE_NEEDS_RESET and the
// transport logs the error; from sendInput they reach the host caller.
// Callbacks may call sendInput (an echo, say): it runs the receiveq work as
// a separate, complete withQueue step.

import type { Chain, Segment, SplitQueue } from './split-queue';
import { readConfigBytes } from './virtio-pci';
import type { VirtioDeviceModel, VirtioTransport } from './virtio-pci';

/** Virtio device id of the console device (§5.3.1). */
export const VIRTIO_ID_CONSOLE = 3;

/** Queue indices for port 0 (§5.3.2). */
export const VIRTIO_CONSOLE_RECEIVEQ = 0;
export const VIRTIO_CONSOLE_TRANSMITQ = 1;

/** Feature bits (§5.3.3). */
export const VIRTIO_CONSOLE_F_SIZE = 0;
export const VIRTIO_CONSOLE_F_MULTIPORT = 1;
export const VIRTIO_CONSOLE_F_EMERG_WRITE = 2;

/** struct virtio_console_config field offsets (§5.3.4). */
export const VIRTIO_CONSOLE_CONFIG_COLS = 0; // le16
export const VIRTIO_CONSOLE_CONFIG_ROWS = 2; // le16
export const VIRTIO_CONSOLE_CONFIG_MAX_NR_PORTS = 4; // le32
export const VIRTIO_CONSOLE_CONFIG_EMERG_WR = 8; // le32, write-only
/** sizeof(struct virtio_console_config) (§5.3.4). */
export const VIRTIO_CONSOLE_CONFIG_SIZE = 12;

export const VIRTIO_CONSOLE_QUEUE_SIZE = 64;
export const VIRTIO_CONSOLE_DEFAULT_MAX_PENDING_INPUT = 64 * 1024;
/** Largest piece of guest output copied (and handed to onOutput) at once. */
export const VIRTIO_CONSOLE_OUTPUT_PIECE = 64 * 1024;
/** Upper bound for maxPendingInput: the pending buffer is allocated up front. */
const MAX_PENDING_INPUT_LIMIT = 16 * 1024 * 1024;
/** Largest queue size a virtqueue may have (§2.7). */
const MAX_QUEUE_SIZE = 32768;
/** The console size the configuration shows until setSize (a classic terminal). */
const DEFAULT_COLS = 80;
const DEFAULT_ROWS = 24;

export interface VirtioConsoleOptions {
  /** Guest output, transmitq and emerg_wr alike. Each call gets its own copy (at most 64 KiB). */
  onOutput: (data: Uint8Array) => void;
  /** Bound on input accepted but not yet delivered to the guest (default 64 KiB, 1..16 MiB). */
  maxPendingInput?: number;
  /** Called once when room appears in the pending input after sendInput refused bytes. */
  onInputSpace?: () => void;
  /** Initial console size (default 80 x 24). */
  cols?: number;
  rows?: number;
  /** Maximum size of each of the two queues (a power of two; default 64). */
  queueSize?: number;
}

export interface VirtioConsoleStats {
  /** Bytes handed to onOutput (transmitq and emerg_wr). */
  bytesOut: number;
  /** Bytes written into receiveq buffers. */
  bytesIn: number;
  /** Bytes sendInput refused because the pending buffer was full. */
  refusedInput: number;
  /** Chains returned with 0 bytes: writable buffers in the transmitq, readable (or no writable) buffers in the receiveq. */
  badChains: number;
  /** Bytes output through emerg_wr (also counted in bytesOut). */
  emergencyWrites: number;
}

function checkU16(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > 0xffff) throw new RangeError(`${name} ${v} is not a u16`);
}

export class VirtioConsole implements VirtioDeviceModel {
  readonly deviceId = VIRTIO_ID_CONSOLE;
  readonly features = (1n << BigInt(VIRTIO_CONSOLE_F_SIZE)) | (1n << BigInt(VIRTIO_CONSOLE_F_EMERG_WRITE));
  readonly queueSizes: readonly number[];
  readonly configSize = VIRTIO_CONSOLE_CONFIG_SIZE;
  /**
   * Base class 0x07 "simple communication controller", subclass 0x80 "other"
   * (PCI Code and ID Assignment spec). Virtio defines no class codes; Linux's
   * virtio_pci matches on vendor and device id only.
   */
  readonly classCode = 0x078000;
  readonly maxPendingInput: number;
  readonly stats: VirtioConsoleStats = { bytesOut: 0, bytesIn: 0, refusedInput: 0, badChains: 0, emergencyWrites: 0 };

  private readonly onOutput: (data: Uint8Array) => void;
  private readonly onInputSpace: (() => void) | undefined;
  private transport: VirtioTransport | undefined;

  /** struct virtio_console_config as the driver reads it (emerg_wr stays 0). */
  private readonly config = new Uint8Array(VIRTIO_CONSOLE_CONFIG_SIZE);
  private readonly configView = new DataView(this.config.buffer);

  /** DRIVER_OK seen since the last reset, and the features negotiated then. */
  private live = false;
  private negotiated = 0n;

  // Pending input: a circular buffer of maxPendingInput bytes.
  private readonly pending: Uint8Array;
  private pendingHead = 0;
  private pendingCount = 0;
  /** sendInput refused bytes: call onInputSpace when room appears. */
  private inputBlocked = false;

  constructor(options: VirtioConsoleOptions) {
    if (typeof options?.onOutput !== 'function') throw new TypeError('VirtioConsole needs an onOutput callback');
    const max = options.maxPendingInput ?? VIRTIO_CONSOLE_DEFAULT_MAX_PENDING_INPUT;
    if (!Number.isSafeInteger(max) || max < 1 || max > MAX_PENDING_INPUT_LIMIT)
      throw new RangeError(`maxPendingInput ${max} is not in 1..${MAX_PENDING_INPUT_LIMIT}`);
    const queueSize = options.queueSize ?? VIRTIO_CONSOLE_QUEUE_SIZE;
    if (!Number.isInteger(queueSize) || queueSize < 1 || queueSize > MAX_QUEUE_SIZE || (queueSize & (queueSize - 1)) !== 0)
      throw new RangeError(`queueSize ${queueSize} is not a power of two in 1..${MAX_QUEUE_SIZE}`);
    const cols = options.cols ?? DEFAULT_COLS;
    const rows = options.rows ?? DEFAULT_ROWS;
    checkU16('cols', cols);
    checkU16('rows', rows);

    this.onOutput = options.onOutput;
    this.onInputSpace = options.onInputSpace;
    this.maxPendingInput = max;
    this.pending = new Uint8Array(max);
    this.queueSizes = [queueSize, queueSize];
    this.configView.setUint16(VIRTIO_CONSOLE_CONFIG_COLS, cols, true);
    this.configView.setUint16(VIRTIO_CONSOLE_CONFIG_ROWS, rows, true);
    this.configView.setUint32(VIRTIO_CONSOLE_CONFIG_MAX_NR_PORTS, 1, true);
  }

  // ---- host side ---------------------------------------------------------------

  /** Console width in the configuration. */
  get cols(): number {
    return this.configView.getUint16(VIRTIO_CONSOLE_CONFIG_COLS, true);
  }

  /** Console height in the configuration. */
  get rows(): number {
    return this.configView.getUint16(VIRTIO_CONSOLE_CONFIG_ROWS, true);
  }

  /** Bytes accepted by sendInput and not yet delivered to the guest. */
  get pendingInput(): number {
    return this.pendingCount;
  }

  /** How many more bytes sendInput would accept now without any delivery. */
  get inputSpace(): number {
    return this.maxPendingInput - this.pendingCount;
  }

  /**
   * New console size (each a u16). If it changed and the driver is live and
   * negotiated VIRTIO_CONSOLE_F_SIZE, sends a configuration change
   * notification (§5.3.6 item 3).
   */
  setSize(cols: number, rows: number): void {
    checkU16('cols', cols);
    checkU16('rows', rows);
    if (cols === this.cols && rows === this.rows) return;
    this.configView.setUint16(VIRTIO_CONSOLE_CONFIG_COLS, cols, true);
    this.configView.setUint16(VIRTIO_CONSOLE_CONFIG_ROWS, rows, true);
    if (this.live && (this.negotiated & (1n << BigInt(VIRTIO_CONSOLE_F_SIZE))) !== 0n) this.transport?.signalConfigChange();
  }

  /**
   * Host input for the guest. Accepts as many bytes as fit in the pending
   * buffer (after delivering what the guest's receive buffers can take) and
   * returns that count; the caller keeps the rest and tries again after
   * onInputSpace.
   */
  sendInput(bytes: Uint8Array): number {
    if (!(bytes instanceof Uint8Array)) throw new TypeError('sendInput takes a Uint8Array');
    let accepted = 0;
    for (;;) {
      accepted += this.appendPending(bytes.subarray(accepted));
      if (accepted === bytes.length) {
        this.flushInput();
        break;
      }
      // The buffer is full: deliver, and take more only if that made room.
      if (this.flushInput() === 0) break;
    }
    const refused = bytes.length - accepted;
    if (refused > 0) {
      this.stats.refusedInput += refused;
      this.inputBlocked = true;
    }
    return accepted;
  }

  /** Drops the input accepted but not delivered; returns how many bytes. */
  discardPendingInput(): number {
    const dropped = this.pendingCount;
    this.pendingHead = 0;
    this.pendingCount = 0;
    this.signalInputSpace();
    return dropped;
  }

  // ---- VirtioDeviceModel -------------------------------------------------------

  attach(transport: VirtioTransport): void {
    this.transport = transport;
  }

  readConfig(offset: number, size: number): number {
    return readConfigBytes(this.config, offset, size);
  }

  writeConfig(offset: number, size: number, value: number): void {
    // Only emerg_wr is writable (§5.3.4); its low byte is the character (§5.3.5.1).
    for (let i = 0; i < size; i++) {
      if (offset + i !== VIRTIO_CONSOLE_CONFIG_EMERG_WR) continue;
      this.stats.emergencyWrites++;
      this.stats.bytesOut++;
      this.onOutput(Uint8Array.of((value >>> (8 * i)) & 0xff));
    }
  }

  activate(features: bigint): void {
    this.negotiated = features;
    this.live = true;
    // The transport serves every enabled queue next, which delivers pending input.
  }

  queueNotify(queueIndex: number, queue: SplitQueue): void {
    if (queueIndex === VIRTIO_CONSOLE_TRANSMITQ) this.transmit(queue);
    else if (queueIndex === VIRTIO_CONSOLE_RECEIVEQ) {
      this.deliver(queue);
      this.signalInputSpace();
    }
  }

  reset(): void {
    // Pending input is kept (see the header); the queues are the transport's.
    this.live = false;
    this.negotiated = 0n;
  }

  // ---- transmitq (§5.3.6 item 1) ----------------------------------------------

  private transmit(queue: SplitQueue): void {
    for (let chain = queue.popAvailable(); chain; chain = queue.popAvailable()) {
      if (chain.writableBytes > 0 || chain.writable.length > 0) {
        // §5.3.6.1: no device-writable buffers in a transmitq.
        this.stats.badChains++;
      } else {
        this.output(queue, chain);
      }
      queue.pushUsed(chain.head, 0);
    }
  }

  /** Hands the chain's readable bytes to onOutput in pieces of at most OUTPUT_PIECE bytes. */
  private output(queue: SplitQueue, chain: Chain): void {
    let parts: Segment[] = [];
    let partBytes = 0;
    for (const segment of chain.readable) {
      let offset = 0;
      while (offset < segment.length) {
        const n = Math.min(segment.length - offset, VIRTIO_CONSOLE_OUTPUT_PIECE - partBytes);
        parts.push({ gpa: segment.gpa + offset, length: n });
        partBytes += n;
        offset += n;
        if (partBytes === VIRTIO_CONSOLE_OUTPUT_PIECE) {
          this.emit(queue, chain.head, parts, partBytes);
          parts = [];
          partBytes = 0;
        }
      }
    }
    if (partBytes > 0) this.emit(queue, chain.head, parts, partBytes);
  }

  private emit(queue: SplitQueue, head: number, parts: Segment[], bytes: number): void {
    // A chain made of just this piece's segments, so readChain copies exactly
    // the piece (and wraps memory errors as VirtqueueError).
    const data = queue.readChain({ head, readable: parts, writable: [], readableBytes: bytes, writableBytes: 0 });
    this.stats.bytesOut += data.length;
    this.onOutput(data);
  }

  // ---- receiveq (§5.3.6 item 2) -------------------------------------------------

  /** Delivers pending input if the receiveq is live; returns the bytes delivered. */
  private flushInput(): number {
    if (this.pendingCount === 0 || !this.transport) return 0;
    let delivered = 0;
    this.transport.withQueue(VIRTIO_CONSOLE_RECEIVEQ, (queue) => {
      delivered = this.deliver(queue);
    });
    return delivered;
  }

  /** Fills available receive buffers from the pending input; returns the bytes written. */
  private deliver(queue: SplitQueue): number {
    let total = 0;
    while (this.pendingCount > 0) {
      const chain = queue.popAvailable();
      if (!chain) break;
      if (chain.readableBytes > 0 || chain.readable.length > 0 || chain.writableBytes === 0) {
        // §5.3.6.1: no device-readable buffers in a receiveq; and no room for input.
        this.stats.badChains++;
        queue.pushUsed(chain.head, 0);
        continue;
      }
      // The pending bytes are at most two runs of the circular buffer.
      const cap = this.maxPendingInput;
      const first = Math.min(this.pendingCount, cap - this.pendingHead);
      let written = queue.writeChain(chain, this.pending.subarray(this.pendingHead, this.pendingHead + first));
      if (written === first && this.pendingCount > first)
        written += queue.writeChain(chain, this.pending.subarray(0, this.pendingCount - first), written);
      this.consumePending(written);
      queue.pushUsed(chain.head, written);
      this.stats.bytesIn += written;
      total += written;
    }
    return total;
  }

  private appendPending(bytes: Uint8Array): number {
    const cap = this.maxPendingInput;
    const n = Math.min(bytes.length, cap - this.pendingCount);
    if (n === 0) return 0;
    const tail = (this.pendingHead + this.pendingCount) % cap;
    const first = Math.min(n, cap - tail);
    this.pending.set(bytes.subarray(0, first), tail);
    if (n > first) this.pending.set(bytes.subarray(first, n), 0);
    this.pendingCount += n;
    return n;
  }

  private consumePending(n: number): void {
    this.pendingHead = (this.pendingHead + n) % this.maxPendingInput;
    this.pendingCount -= n;
    if (this.pendingCount === 0) this.pendingHead = 0;
  }

  private signalInputSpace(): void {
    if (!this.inputBlocked || this.pendingCount >= this.maxPendingInput) return;
    this.inputBlocked = false;
    this.onInputSpace?.();
  }
}
