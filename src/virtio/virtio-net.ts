// Virtio network device (virtio 1.2 §5.1), a VirtioDeviceModel for the PCI
// transport (src/virtio/virtio-pci.ts):
//
//   const net = new VirtioNet({ mac: randomMac(), onTransmit: (frame) => tap.write(frame) });
//   const dev = new VirtioPciDevice({ memory, device: net, irq, name: 'virtio-net' });
//   tap.on('frame', (frame) => { if (!net.receive(frame)) backlog.push(frame); });
//   // with onRxSpace: () => { while (backlog.length && net.receive(backlog[0])) backlog.shift(); }
//
// What is offered
// ---------------
// §5.1.1 device id 1. §5.1.2 one queue pair and no control queue: queue 0 is
// receiveq1, queue 1 is transmitq1 (256 entries each by default). §5.1.3
// features: VIRTIO_NET_F_MAC (5), VIRTIO_NET_F_STATUS (16) and
// VIRTIO_NET_F_MTU (3); no offloads (no CSUM, GUEST_CSUM, TSO/UFO/GSO), no
// MRG_RXBUF, no CTRL_VQ, no MQ. The transport adds VERSION_1 and refuses
// drivers that do not accept it, so the packet header is always the 12-byte
// struct virtio_net_hdr including num_buffers (§5.1.6).
//
// Device configuration (§5.1.4), 12 bytes, read-only (writes are ignored):
//   0  u8    mac[6]                 the address the host chose
//   6  le16  status                 VIRTIO_NET_S_LINK_UP (1) when the link is up
//   8  le16  max_virtqueue_pairs    1 (the field only matters with MQ, not offered)
//   10 le16  mtu                    `mtu` (default 1500; §5.1.4.1: 68..65535)
// setLinkUp() changes status and sends a configuration change notification
// (§4.1.5.4) once the driver is running.
//
// Frame sizes
// -----------
// A frame is an Ethernet frame without preamble or FCS: destination, source,
// EtherType (14 bytes, ETH_HLEN), payload. Frames shorter than 14 bytes are
// dropped in both directions (they cannot be Ethernet; shorter-than-60 frames
// are fine, virtio does not pad). The longest frame is `maxFrame`, by default
// mtu + 18 = 1518: the 14-byte Ethernet header, one 802.1Q tag (4 bytes), and
// an MTU of payload, which is what Linux's virtio_net sizes its receive
// buffers for without offloads (Ethernet header + VLAN header + 1500).
// `maxFrame` may be raised (up to 65550 = the 65562-byte buffers of
// §5.1.6.3.1 less the header) for drivers that do not negotiate VIRTIO_NET_F_MTU
// and raise their MTU. It must be at least mtu + 14, since a device that
// offers VIRTIO_NET_F_MTU "MUST forward transmitted packets of up to mtu (plus
// low level ethernet header length)" (§5.1.4.1). In the other direction, once
// VIRTIO_NET_F_MTU is negotiated the device "MUST NOT pass received packets
// that exceed mtu (plus low level ethernet header length)" (§5.1.4.1): we read
// the link-level header as 18 bytes (with one 802.1Q tag, as Linux does), so
// received frames are bounded by min(maxFrame, mtu + 18) then.
//
// Transmit (§5.1.6.2)
// -------------------
// On a transmitq notification each available chain is one packet: 12 bytes of
// header then the frame, all device-readable, in any split over descriptors.
// The header is not interpreted: it only describes offloads (checksum, GSO)
// that were not offered, so a conforming driver sends zeros, and §5.1.6.2.2
// has the device ignore flag bits it does not recognise. The frame is copied
// out of guest memory (the guest may change its buffers after we read them)
// and handed to `onTransmit`, which owns the copy; the chain goes back with 0
// bytes written. Not transmitted, counted in stats.txDropped and returned the
// same way: a chain with device-writable buffers (a transmit buffer is
// read-only for the device; also counted in badChains), a chain whose frame is
// shorter than 14 bytes or longer than maxFrame (bounded before anything is
// copied), and any frame while the link is down. `onTransmit` must not throw;
// if it does the transport treats it as a model bug (DEVICE_NEEDS_RESET).
//
// Receive (§5.1.6.3, §5.1.6.4)
// ----------------------------
// receive(frame) takes one chain from receiveq1 through transport.withQueue
// (so it works outside a notification and interrupts the guest as the queue
// asks) and writes a zero header with num_buffers = 1 ("the device MUST set
// num_buffers to 1" without MRG_RXBUF, §5.1.6.4.1; flags 0 and gso_type
// GSO_NONE since nothing was offloaded) followed by the frame; the used length
// is 12 + frame length. One frame uses exactly one chain. receive() returns
// false, and counts the frame in stats.rxDropped and stats.rxDroppedBy under
// its reason (also kept in `lastRxDrop`), when:
//   notLive        the device is not attached, the driver has not set
//                  DRIVER_OK, a reset is pending, or receiveq1 is not enabled;
//   linkDown       setLinkUp(false);
//   badSize        the frame is shorter than 14 bytes or longer than the limit above;
//   noBuffer       the driver has no receive buffer available (also stats.rxNoBuffer);
//   badChain       the chain has device-readable buffers, which a receive buffer
//                  must not have: returned with 0 bytes (also stats.badChains);
//   bufferTooSmall the chain's writable space is smaller than 12 + frame
//                  length. Without MRG_RXBUF the driver "SHOULD populate the
//                  receive queue(s) with buffers of at least 1526 bytes"
//                  (§5.1.6.3.1) and there is no way to spread a frame over
//                  chains, so a hostile or sloppy driver gets its chain back
//                  with 0 bytes written (Linux counts such a used buffer as a
//                  short packet, rx_length_errors, and reposts it) and the
//                  frame is dropped, never truncated. Only one chain is used
//                  per frame, so a ring of tiny buffers costs one buffer per
//                  dropped frame, not the whole ring;
//   queueError     the guest broke receiveq1 (SplitQueue threw a
//                  VirtqueueError); the transport sets DEVICE_NEEDS_RESET.
//
// Flow control: after a receive() failed with noBuffer or notLive, the next
// receiveq1 notification (the driver adding buffers, or DRIVER_OK, where the
// transport polls every enabled queue) calls `onRxSpace` once, so the host
// can retry the frames it kept. Popping an empty ring with EVENT_IDX
// negotiated publishes avail_event (split-queue.ts), so the driver does
// notify when it adds the next buffer; without EVENT_IDX we never set
// VIRTQ_USED_F_NO_NOTIFY, so it notifies anyway. onRxSpace runs inside the
// notification (the vCPU's MMIO exit) and may call receive() directly.

import { randomBytes } from 'crypto';
import type { Chain, SplitQueue } from './split-queue';
import { readConfigBytes } from './virtio-pci';
import type { VirtioDeviceModel, VirtioTransport } from './virtio-pci';

/** Virtio device id of the network device (§5.1.1). */
export const VIRTIO_ID_NET = 1;
/** receiveq1 and transmitq1 (§5.1.2). */
export const VIRTIO_NET_RECEIVEQ = 0;
export const VIRTIO_NET_TRANSMITQ = 1;
export const VIRTIO_NET_QUEUE_SIZE = 256;

// Feature bits (§5.1.3).
/** Device maximum MTU reporting is supported (config field mtu). */
export const VIRTIO_NET_F_MTU = 3;
/** Device has given MAC address (config field mac). */
export const VIRTIO_NET_F_MAC = 5;
/** Configuration status field is available. */
export const VIRTIO_NET_F_STATUS = 16;

/** status bit: the link is up (§5.1.4). */
export const VIRTIO_NET_S_LINK_UP = 1;

// Device configuration layout (§5.1.4, struct virtio_net_config).
export const VIRTIO_NET_CFG_MAC = 0;
export const VIRTIO_NET_CFG_STATUS = 6;
export const VIRTIO_NET_CFG_MAX_VIRTQUEUE_PAIRS = 8;
export const VIRTIO_NET_CFG_MTU = 10;
/** Bytes of configuration presented: up to and including mtu (speed/duplex need SPEED_DUPLEX, not offered). */
export const VIRTIO_NET_CONFIG_SIZE = 12;

/**
 * sizeof(struct virtio_net_hdr) with VIRTIO_F_VERSION_1 (§5.1.6): flags u8,
 * gso_type u8, hdr_len le16, gso_size le16, csum_start le16, csum_offset
 * le16, num_buffers le16.
 */
export const VIRTIO_NET_HDR_SIZE = 12;
/** Offset of num_buffers in the header (§5.1.6). */
const HDR_NUM_BUFFERS = 10;

/** Ethernet header: destination, source, EtherType (IEEE 802.3). */
export const ETH_HLEN = 14;
/** One IEEE 802.1Q tag. */
export const VLAN_HLEN = 4;
/** §5.1.4.1: "The device MUST set mtu to between 68 and 65535 inclusive". */
export const VIRTIO_NET_MIN_MTU = 68;
export const VIRTIO_NET_MAX_MTU = 65535;
export const VIRTIO_NET_DEFAULT_MTU = 1500;
/** The largest maxFrame: the 65562-byte receive buffers of §5.1.6.3.1 less the 12-byte header. */
export const VIRTIO_NET_MAX_FRAME_LIMIT = 65562 - VIRTIO_NET_HDR_SIZE;

/** PCI class code 0x020000: network controller, Ethernet (PCI Code and ID Assignment spec). */
const PCI_CLASS_NETWORK_ETHERNET = 0x020000;

/** The header of every received packet: all zero but num_buffers = 1 (§5.1.6.4.1). */
const RX_HEADER: Uint8Array = (() => {
  const h = new Uint8Array(VIRTIO_NET_HDR_SIZE);
  new DataView(h.buffer).setUint16(HDR_NUM_BUFFERS, 1, true);
  return h;
})();

export type RxDropReason = 'notLive' | 'linkDown' | 'badSize' | 'noBuffer' | 'badChain' | 'bufferTooSmall' | 'queueError';
export type TxDropReason = 'linkDown' | 'badSize' | 'badChain';

export interface VirtioNetOptions {
  /** The station address (6 bytes, unicast, not all zero), e.g. randomMac(). */
  mac: Uint8Array;
  /** Called with each frame the guest transmits (Ethernet header first, no virtio header); the array is the callee's. */
  onTransmit: (frame: Uint8Array) => void;
  /** Called on the next receiveq1 notification after receive() failed for lack of buffers (or a device not live). */
  onRxSpace?: () => void;
  /** MTU presented in the configuration (default 1500, 68..65535). */
  mtu?: number;
  /** Longest frame in either direction (default mtu + 18; at least mtu + 14, at most 65550). */
  maxFrame?: number;
  /** Link state at start (default up). */
  linkUp?: boolean;
  /** Maximum size of each queue (default 256). */
  queueSize?: number;
}

export interface VirtioNetStats {
  /** Frames handed to onTransmit, and their bytes (without the virtio header). */
  txFrames: number;
  txBytes: number;
  /** Transmit chains not handed on (all reasons, bad chains included). */
  txDropped: number;
  txDroppedBy: Record<TxDropReason, number>;
  /** Frames written into guest receive buffers, and their bytes (without the virtio header). */
  rxFrames: number;
  rxBytes: number;
  /** Frames receive() refused (all reasons). */
  rxDropped: number;
  rxDroppedBy: Record<RxDropReason, number>;
  /** receive() found no receive buffer (same as rxDroppedBy.noBuffer). */
  rxNoBuffer: number;
  /** Chains of the wrong shape on either queue: readable buffers on receiveq1, writable ones on transmitq1. */
  badChains: number;
}

export class VirtioNet implements VirtioDeviceModel {
  readonly deviceId = VIRTIO_ID_NET;
  readonly features = (1n << BigInt(VIRTIO_NET_F_MAC)) | (1n << BigInt(VIRTIO_NET_F_STATUS)) | (1n << BigInt(VIRTIO_NET_F_MTU));
  readonly queueSizes: readonly number[];
  readonly configSize = VIRTIO_NET_CONFIG_SIZE;
  readonly classCode = PCI_CLASS_NETWORK_ETHERNET;
  readonly mac: Uint8Array;
  readonly mtu: number;
  readonly maxFrame: number;
  readonly stats: VirtioNetStats = {
    txFrames: 0,
    txBytes: 0,
    txDropped: 0,
    txDroppedBy: { linkDown: 0, badSize: 0, badChain: 0 },
    rxFrames: 0,
    rxBytes: 0,
    rxDropped: 0,
    rxDroppedBy: { notLive: 0, linkDown: 0, badSize: 0, noBuffer: 0, badChain: 0, bufferTooSmall: 0, queueError: 0 },
    rxNoBuffer: 0,
    badChains: 0,
  };
  /** Why the last refused receive() was refused. */
  lastRxDrop: RxDropReason | undefined;

  private readonly onTransmit: (frame: Uint8Array) => void;
  private readonly onRxSpace?: () => void;
  private readonly configBytes = new Uint8Array(VIRTIO_NET_CONFIG_SIZE);
  private readonly configView = new DataView(this.configBytes.buffer);
  private transport: VirtioTransport | undefined;
  private link: boolean;
  /** DRIVER_OK seen since the last reset. */
  private active = false;
  private negotiated = 0n;
  /** A receive() failed for want of buffers (or of a live device): tell the host on the next receiveq1 notification. */
  private rxWaiting = false;

  constructor(options: VirtioNetOptions) {
    const { mac } = options;
    if (!(mac instanceof Uint8Array) || mac.length !== 6) throw new RangeError('mac must be a Uint8Array of 6 bytes');
    if (mac[0] & 1) throw new RangeError(`mac ${formatMac(mac)} is a multicast address`);
    if (mac.every((b) => b === 0)) throw new RangeError('mac 00:00:00:00:00:00 is not a station address');
    if (typeof options.onTransmit !== 'function') throw new TypeError('onTransmit must be a function');
    const mtu = options.mtu ?? VIRTIO_NET_DEFAULT_MTU;
    if (!Number.isInteger(mtu) || mtu < VIRTIO_NET_MIN_MTU || mtu > VIRTIO_NET_MAX_MTU)
      throw new RangeError(`mtu ${mtu} is not in ${VIRTIO_NET_MIN_MTU}..${VIRTIO_NET_MAX_MTU}`);
    const maxFrame = options.maxFrame ?? Math.min(mtu + ETH_HLEN + VLAN_HLEN, VIRTIO_NET_MAX_FRAME_LIMIT);
    if (!Number.isInteger(maxFrame) || maxFrame < mtu + ETH_HLEN || maxFrame > VIRTIO_NET_MAX_FRAME_LIMIT)
      throw new RangeError(`maxFrame ${maxFrame} is not in ${mtu + ETH_HLEN}..${VIRTIO_NET_MAX_FRAME_LIMIT} (mtu ${mtu} + Ethernet header)`);
    const queueSize = options.queueSize ?? VIRTIO_NET_QUEUE_SIZE;

    this.mac = Uint8Array.from(mac);
    this.mtu = mtu;
    this.maxFrame = maxFrame;
    this.queueSizes = [queueSize, queueSize];
    this.onTransmit = options.onTransmit;
    this.onRxSpace = options.onRxSpace;
    this.link = options.linkUp ?? true;

    this.configBytes.set(this.mac, VIRTIO_NET_CFG_MAC);
    this.configView.setUint16(VIRTIO_NET_CFG_STATUS, this.link ? VIRTIO_NET_S_LINK_UP : 0, true);
    this.configView.setUint16(VIRTIO_NET_CFG_MAX_VIRTQUEUE_PAIRS, 1, true);
    this.configView.setUint16(VIRTIO_NET_CFG_MTU, mtu, true);
  }

  // ---- host side ---------------------------------------------------------------

  get linkUp(): boolean {
    return this.link;
  }

  /** Sets the link state (config status, §5.1.4) and notifies the driver of the change. */
  setLinkUp(up: boolean): void {
    if (up === this.link) return;
    this.link = up;
    this.configView.setUint16(VIRTIO_NET_CFG_STATUS, up ? VIRTIO_NET_S_LINK_UP : 0, true);
    if (this.active) this.transport?.signalConfigChange();
  }

  /**
   * Delivers `frame` (Ethernet header first) to the guest. Returns false if it
   * was dropped; `lastRxDrop` and stats.rxDroppedBy say why (see the header).
   * The frame is copied: the caller keeps its array.
   */
  receive(frame: Uint8Array): boolean {
    if (frame.length < ETH_HLEN || frame.length > this.rxLimit()) return this.rxDrop('badSize');
    if (!this.link) return this.rxDrop('linkDown');
    const transport = this.transport;
    if (!transport) return this.rxDrop('notLive');
    // A VirtqueueError inside the work leaves `outcome` as it is; the transport catches it.
    let outcome = 'queueError' as RxDropReason | 'ok';
    const ran = transport.withQueue(VIRTIO_NET_RECEIVEQ, (queue) => {
      outcome = this.fill(queue, frame);
    });
    if (!ran) outcome = 'notLive';
    if (outcome !== 'ok') return this.rxDrop(outcome);
    this.stats.rxFrames++;
    this.stats.rxBytes += frame.length;
    return true;
  }

  /** The longest frame receive() accepts now (see "Frame sizes"). */
  private rxLimit(): number {
    const mtuNegotiated = (this.negotiated & (1n << BigInt(VIRTIO_NET_F_MTU))) !== 0n;
    return mtuNegotiated ? Math.min(this.maxFrame, this.mtu + ETH_HLEN + VLAN_HLEN) : this.maxFrame;
  }

  private fill(queue: SplitQueue, frame: Uint8Array): RxDropReason | 'ok' {
    const chain = queue.popAvailable();
    if (!chain) return 'noBuffer';
    if (chain.readableBytes > 0) {
      this.stats.badChains++;
      queue.pushUsed(chain.head, 0);
      return 'badChain';
    }
    const length = VIRTIO_NET_HDR_SIZE + frame.length;
    if (chain.writableBytes < length) {
      queue.pushUsed(chain.head, 0);
      return 'bufferTooSmall';
    }
    queue.writeChain(chain, RX_HEADER);
    queue.writeChain(chain, frame, VIRTIO_NET_HDR_SIZE);
    queue.pushUsed(chain.head, length);
    return 'ok';
  }

  private rxDrop(reason: RxDropReason): false {
    this.stats.rxDropped++;
    this.stats.rxDroppedBy[reason]++;
    if (reason === 'noBuffer') this.stats.rxNoBuffer++;
    if (reason === 'noBuffer' || reason === 'notLive') this.rxWaiting = true;
    this.lastRxDrop = reason;
    return false;
  }

  // ---- VirtioDeviceModel ----------------------------------------------------------

  attach(transport: VirtioTransport): void {
    this.transport = transport;
  }

  readConfig(offset: number, size: number): number {
    return readConfigBytes(this.configBytes, offset, size);
  }

  writeConfig(): void {
    // The configuration is read-only for a VERSION_1 driver (§5.1.4; only
    // legacy drivers wrote mac): ignore.
  }

  activate(features: bigint): void {
    this.negotiated = features;
    this.active = true;
  }

  queueNotify(queueIndex: number, queue: SplitQueue): void {
    if (queueIndex === VIRTIO_NET_TRANSMITQ) this.transmit(queue);
    else if (queueIndex === VIRTIO_NET_RECEIVEQ && this.rxWaiting) {
      // The driver added receive buffers (or just set DRIVER_OK).
      this.rxWaiting = false;
      this.onRxSpace?.();
    }
  }

  reset(): void {
    this.active = false;
    this.negotiated = 0n;
  }

  // ---- transmit -------------------------------------------------------------------

  private transmit(queue: SplitQueue): void {
    for (let chain = queue.popAvailable(); chain; chain = queue.popAvailable()) {
      const frame = this.txFrame(queue, chain);
      queue.pushUsed(chain.head, 0); // nothing written into a transmit buffer
      if (!frame) continue;
      this.stats.txFrames++;
      this.stats.txBytes += frame.length;
      this.onTransmit(frame);
    }
  }

  /** The frame of a transmit chain, or undefined (counted) if it is not sent. */
  private txFrame(queue: SplitQueue, chain: Chain): Uint8Array | undefined {
    if (chain.writableBytes > 0) {
      this.stats.badChains++;
      return this.txDrop('badChain');
    }
    const frameLength = chain.readableBytes - VIRTIO_NET_HDR_SIZE;
    if (frameLength < ETH_HLEN || frameLength > this.maxFrame) return this.txDrop('badSize');
    if (!this.link) return this.txDrop('linkDown');
    return queue.readChain(chain, frameLength, VIRTIO_NET_HDR_SIZE);
  }

  private txDrop(reason: TxDropReason): undefined {
    this.stats.txDropped++;
    this.stats.txDroppedBy[reason]++;
    return undefined;
  }
}

// ---- MAC addresses ------------------------------------------------------------------

/**
 * A random locally administered unicast MAC address (IEEE 802 addressing:
 * bit 0 of the first octet, I/G, clear = individual; bit 1, U/L, set =
 * locally administered, so it cannot collide with a vendor-assigned address).
 */
export function randomMac(): Uint8Array {
  const mac = new Uint8Array(randomBytes(6));
  mac[0] = (mac[0] & ~0x01 & 0xff) | 0x02;
  return mac;
}

/** "52:54:00:12:34:56". */
export function formatMac(mac: Uint8Array): string {
  return Array.from(mac, (b) => b.toString(16).padStart(2, '0')).join(':');
}

/** Parses six hex octets separated by ':' or '-'; throws RangeError otherwise. */
export function parseMac(text: string): Uint8Array {
  const parts = text.split(/[:-]/);
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-fA-F]{2}$/.test(p))) throw new RangeError(`invalid MAC address ${JSON.stringify(text)}`);
  return Uint8Array.from(parts, (p) => parseInt(p, 16));
}
