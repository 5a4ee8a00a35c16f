import { MmioBus, PioBus, type AccessSize, type BusDevice } from '../src/bus/bus';
import { GuestMemory } from '../src/memory/guest-memory';
import { PCI_CONFIG_ADDRESS_PORT, PCI_CONFIG_PORT_COUNT, PciHostBridge, pciConfigAddress } from '../src/pci/host-bridge';
import { type PciDevice, pciBarBusDevice } from '../src/pci/pci-device';
import type { SplitQueue } from '../src/virtio/split-queue';
import { VirtioPciDevice, type VirtioDeviceModel } from '../src/virtio/virtio-pci';
import { VirtioRng } from '../src/virtio/virtio-rng';

// The test plays a Linux-like virtio-pci driver against the device through the
// interfaces a guest has: configuration cycles through ports 0xcf8/0xcfc of the
// host bridge, and MMIO accesses at the address the BAR was given. It uses raw
// numbers from the specs, not the module's constants:
//   PCI 3.0 §6.1/§6.2: 0x00 vendor, 0x02 device, 0x04 command (bit 2 bus master,
//     bit 10 interrupt disable), 0x06 status (bit 3 interrupt, bit 4 cap list),
//     0x08 revision, 0x09 class code, 0x2c/0x2e subsystem ids, 0x34 cap pointer,
//     0x3d interrupt pin, 0x10 + 4n BAR n.
//   virtio 1.2 §4.1.4: struct virtio_pci_cap (+3 cfg_type, +4 bar, +8 offset,
//     +12 length, notify cap +16 notify_off_multiplier, PCI_CFG +16 data);
//     cfg_type COMMON 1, NOTIFY 2, ISR 3, DEVICE 4, PCI_CFG 5.
//   §4.1.4.3 common cfg: 0x00 dfselect, 0x04 df, 0x08 gfselect, 0x0c gf,
//     0x10 msix_config, 0x12 num_queues, 0x14 status, 0x15 generation,
//     0x16 q_select, 0x18 q_size, 0x1a q_msix, 0x1c q_enable, 0x1e q_notify_off,
//     0x20 q_desc, 0x28 q_driver, 0x30 q_device, 0x38 q_notify_data, 0x3a q_reset.
//   §2.1 status: ACK 1, DRIVER 2, DRIVER_OK 4, FEATURES_OK 8, NEEDS_RESET 64, FAILED 128.
//   §6 features: INDIRECT_DESC 28, EVENT_IDX 29, VERSION_1 32.
//   §2.7.5-2.7.8 split rings: desc {le64 addr, le32 len, le16 flags, le16 next},
//     NEXT 1, WRITE 2; avail {flags, idx, ring[]}; used {flags, idx, {id, len}[]}.

const RAM = 1 << 20;
const DESC = 0x1000;
const AVAIL = 0x2000;
const USED = 0x3000;
const BUF = 0x10000;
const MMIO_BASE = 0xe000_0000;

const ACK = 1;
const DRIVER = 2;
const DRIVER_OK = 4;
const FEATURES_OK = 8;
const NEEDS_RESET = 64;
const F_NEXT = 1;
const F_WRITE = 2;
const VERSION_1 = 1n << 32n;
const EVENT_IDX = 1n << 29n;

interface Cap {
  at: number;
  type: number;
  bar: number;
  offset: number;
  length: number;
}

class Platform {
  readonly memory = GuestMemory.allocate([{ gpa: 0, size: RAM }]);
  readonly pio = new PioBus();
  readonly mmio = new MmioBus();
  readonly irqEvents: boolean[] = [];
  readonly logs: string[] = [];
  readonly bridge: PciHostBridge;
  readonly device: VirtioPciDevice;
  readonly slot: number;
  private readonly windows = new Map<string, BusDevice>();

  constructor(model: VirtioDeviceModel = new VirtioRng(), options: { eventIdx?: boolean } = {}) {
    this.bridge = new PciHostBridge({
      onBarChange: (device: PciDevice, bar, oldRange, newRange) => {
        const key = `${device.name}/${bar}`;
        const window = this.windows.get(key) ?? pciBarBusDevice(device, bar);
        this.windows.set(key, window);
        if (oldRange) this.mmio.unregister(window);
        if (newRange) this.mmio.register(Number(newRange.base), Number(newRange.size), window);
      },
    });
    this.pio.register(PCI_CONFIG_ADDRESS_PORT, PCI_CONFIG_PORT_COUNT, this.bridge);
    this.device = new VirtioPciDevice({
      memory: this.memory,
      device: model,
      irq: (level) => this.irqEvents.push(level),
      name: 'virtio-test',
      log: (m) => this.logs.push(m),
      ...options,
    });
    this.slot = this.bridge.addDevice(this.device);
    this.bridge.assignResources({ mmioBase: MMIO_BASE, mmioSize: 0x1000_0000, ioBase: 0xc000, ioSize: 0x1000 });
  }

  cfgRead(offset: number, size: AccessSize): number {
    this.pio.write(PCI_CONFIG_ADDRESS_PORT, 4, pciConfigAddress(0, this.slot, 0, offset));
    return this.pio.read(0xcfc + (offset & 3), size);
  }

  cfgWrite(offset: number, size: AccessSize, value: number): void {
    this.pio.write(PCI_CONFIG_ADDRESS_PORT, 4, pciConfigAddress(0, this.slot, 0, offset));
    this.pio.write(0xcfc + (offset & 3), size, value);
  }

  close(): void {
    this.memory.close();
  }
}

/** A virtio-pci driver in the manner of Linux's virtio_pci_modern. */
class Driver {
  readonly caps = new Map<number, Cap>();
  barBase = 0;
  notifyMultiplier = 0;
  /** Driver-side ring state. */
  private availIdx = 0;
  queueSize = 0;

  constructor(readonly p: Platform) {}

  /** Walks the capability list (PCI 3.0 §6.7) and records the first virtio cap of each type (§4.1.4.1). */
  probe(): void {
    const p = this.p;
    expect(p.cfgRead(0x06, 2) & 0x10).toBe(0x10);
    const seen = new Set<number>();
    for (let at = p.cfgRead(0x34, 1) & 0xfc; at !== 0 && !seen.has(at); at = p.cfgRead(at + 1, 1) & 0xfc) {
      seen.add(at);
      if (p.cfgRead(at, 1) !== 0x09) continue;
      const cap: Cap = {
        at,
        type: p.cfgRead(at + 3, 1),
        bar: p.cfgRead(at + 4, 1),
        offset: p.cfgRead(at + 8, 4),
        length: p.cfgRead(at + 12, 4),
      };
      if (!this.caps.has(cap.type)) this.caps.set(cap.type, cap);
    }
    const common = this.cap(1);
    const lo = p.cfgRead(0x10 + 4 * common.bar, 4);
    expect(lo & 0x7).toBe(0x4); // 64-bit memory BAR
    const hi = p.cfgRead(0x10 + 4 * common.bar + 4, 4);
    this.barBase = hi * 2 ** 32 + ((lo & 0xfffffff0) >>> 0);
    this.notifyMultiplier = p.cfgRead(this.cap(2).at + 16, 4);
    // Bus mastering for DMA (Linux: pci_set_master).
    p.cfgWrite(0x04, 2, p.cfgRead(0x04, 2) | 0x4);
  }

  cap(type: number): Cap {
    const c = this.caps.get(type);
    if (!c) throw new Error(`no virtio capability of type ${type}`);
    return c;
  }

  read(type: number, offset: number, size: AccessSize): number {
    return this.p.mmio.read(this.barBase + this.cap(type).offset + offset, size);
  }
  write(type: number, offset: number, size: AccessSize, value: number): void {
    this.p.mmio.write(this.barBase + this.cap(type).offset + offset, size, value);
  }

  status(): number {
    return this.read(1, 0x14, 1);
  }
  setStatus(v: number): void {
    this.write(1, 0x14, 1, v);
  }
  addStatus(bits: number): void {
    this.setStatus(this.status() | bits);
  }
  readIsr(): number {
    return this.read(3, 0, 1);
  }

  deviceFeatures(): bigint {
    this.write(1, 0x00, 4, 0);
    const lo = BigInt(this.read(1, 0x04, 4));
    this.write(1, 0x00, 4, 1);
    const hi = BigInt(this.read(1, 0x04, 4));
    return (hi << 32n) | lo;
  }

  setDriverFeatures(f: bigint): void {
    this.write(1, 0x08, 4, 0);
    this.write(1, 0x0c, 4, Number(f & 0xffffffffn));
    this.write(1, 0x08, 4, 1);
    this.write(1, 0x0c, 4, Number(f >> 32n));
  }

  /** Reset, ACK, DRIVER, features, FEATURES_OK (§3.1.1 steps 1-6). Returns whether FEATURES_OK stuck. */
  negotiate(features: bigint = VERSION_1): boolean {
    this.setStatus(0);
    expect(this.status()).toBe(0);
    this.addStatus(ACK);
    this.addStatus(DRIVER);
    this.deviceFeatures();
    this.setDriverFeatures(features);
    this.addStatus(FEATURES_OK);
    return (this.status() & FEATURES_OK) !== 0;
  }

  /** Queue set-up (§4.1.5.1.3) at the test's ring addresses; returns the notify offset. */
  setupQueue(index: number, size: number, areas = { desc: DESC, avail: AVAIL, used: USED }): number {
    if (this.p.memory.contains(areas.desc, 16 * size)) this.p.memory.fill(areas.desc, 16 * size);
    if (this.p.memory.contains(areas.avail, 6 + 2 * size)) this.p.memory.fill(areas.avail, 6 + 2 * size);
    if (this.p.memory.contains(areas.used, 6 + 8 * size)) this.p.memory.fill(areas.used, 6 + 8 * size);
    this.write(1, 0x16, 2, index);
    const max = this.read(1, 0x18, 2);
    expect(max).toBeGreaterThan(0);
    this.write(1, 0x18, 2, size);
    this.write64(0x20, areas.desc);
    this.write64(0x28, areas.avail);
    this.write64(0x30, areas.used);
    const notifyOff = this.read(1, 0x1e, 2);
    this.write(1, 0x1c, 2, 1);
    this.queueSize = size;
    this.availIdx = 0;
    return notifyOff;
  }

  write64(offset: number, value: number): void {
    this.write(1, offset, 4, value % 2 ** 32);
    this.write(1, offset + 4, 4, Math.floor(value / 2 ** 32));
  }

  /** Full bring-up of queue 0 with DRIVER_OK. */
  init(size = 16, features: bigint = VERSION_1): void {
    expect(this.negotiate(features)).toBe(true);
    this.setupQueue(0, size);
    this.addStatus(DRIVER_OK);
  }

  setDesc(i: number, addr: number, len: number, flags: number, next = 0): void {
    const m = this.p.memory;
    m.writeU64(DESC + 16 * i, BigInt(addr));
    m.writeU32(DESC + 16 * i + 8, len);
    m.writeU16(DESC + 16 * i + 12, flags);
    m.writeU16(DESC + 16 * i + 14, next);
  }

  offer(head: number): void {
    const m = this.p.memory;
    m.writeU16(AVAIL + 4 + 2 * (this.availIdx % this.queueSize), head);
    this.availIdx = (this.availIdx + 1) & 0xffff;
    m.writeU16(AVAIL + 2, this.availIdx);
  }

  notify(queue: number): void {
    this.write(2, queue * this.notifyMultiplier, 2, queue);
  }

  usedIdx(): number {
    return this.p.memory.readU16(USED + 2);
  }
  usedElem(slot: number): { id: number; len: number } {
    const at = USED + 4 + 8 * slot;
    return { id: this.p.memory.readU32(at), len: this.p.memory.readU32(at + 4) };
  }
}

describe('virtio-pci transport with the entropy device', () => {
  let p: Platform;
  let d: Driver;
  beforeEach(() => {
    p = new Platform();
    d = new Driver(p);
    d.probe();
  });
  afterEach(() => p.close());

  it('presents the virtio 1.x PCI identity', () => {
    expect(p.cfgRead(0x00, 2)).toBe(0x1af4);
    expect(p.cfgRead(0x02, 2)).toBe(0x1044); // 0x1040 + 4 (entropy)
    expect(p.cfgRead(0x08, 1)).toBeGreaterThanOrEqual(1);
    expect(p.cfgRead(0x2c, 2)).toBe(0x1af4);
    expect(p.cfgRead(0x2e, 2)).toBeGreaterThanOrEqual(0x40);
    expect(p.cfgRead(0x08, 4) >>> 8).toBe(0xff0000);
    expect(p.cfgRead(0x3d, 1)).toBe(1); // INTA#
    // No MSI-X capability (id 0x11): only vendor-specific ones.
    expect(p.device.config.capabilities().map((c) => c.id)).toEqual([0x09, 0x09, 0x09, 0x09]);
  });

  it('describes its structures with capabilities inside one BAR', () => {
    expect([...d.caps.keys()].sort()).toEqual([1, 2, 3, 5]); // rng has no device configuration
    const common = d.cap(1);
    expect(common.length).toBeGreaterThanOrEqual(0x38);
    expect(common.offset % 4).toBe(0);
    for (const type of [2, 3]) expect(d.cap(type).bar).toBe(common.bar);
    expect(d.notifyMultiplier).toBe(4);
    expect(d.cap(2).length).toBeGreaterThanOrEqual(0 * d.notifyMultiplier + 2);
    expect(d.barBase).toBeGreaterThanOrEqual(MMIO_BASE);
    // num_queues 1, queue 0 size 256.
    expect(d.read(1, 0x12, 2)).toBe(1);
    d.write(1, 0x16, 2, 0);
    expect(d.read(1, 0x18, 2)).toBe(256);
    expect(d.read(1, 0x1e, 2)).toBe(0);
  });

  it('serves an entropy request and interrupts through INTx', () => {
    const offered = (() => {
      d.setStatus(0);
      return d.deviceFeatures();
    })();
    expect(offered & VERSION_1).toBe(VERSION_1);
    expect(offered & 0xffffffn).toBe(0n); // no device-specific features (§5.4.3)
    d.init(16);
    expect(d.status()).toBe(ACK | DRIVER | FEATURES_OK | DRIVER_OK);
    expect(d.read(1, 0x1c, 2)).toBe(1);

    d.setDesc(0, BUF, 64, F_WRITE);
    p.memory.fill(BUF, 128, 0);
    d.offer(0);
    expect(p.irqEvents).toEqual([]);
    d.notify(0);

    expect(d.usedIdx()).toBe(1);
    expect(d.usedElem(0)).toEqual({ id: 0, len: 64 });
    const bytes = p.memory.read(BUF, 128);
    expect(bytes.subarray(0, 64).some((b) => b !== 0)).toBe(true);
    expect(bytes.subarray(64).every((b) => b === 0)).toBe(true); // nothing past the buffer
    expect(new Set(bytes.subarray(0, 64)).size).toBeGreaterThan(8);

    expect(p.irqEvents).toEqual([true]);
    expect(p.cfgRead(0x06, 2) & 0x8).toBe(0x8); // PCI status: interrupt pending
    expect(d.readIsr()).toBe(1);
    expect(p.irqEvents).toEqual([true, false]);
    expect(p.cfgRead(0x06, 2) & 0x8).toBe(0);
    expect(d.readIsr()).toBe(0);

    // A second request, split over two writable descriptors, gets fresh bytes.
    d.setDesc(1, BUF + 0x100, 8, F_WRITE | F_NEXT, 2);
    d.setDesc(2, BUF + 0x200, 8, F_WRITE);
    d.offer(1);
    d.notify(0);
    expect(d.usedIdx()).toBe(2);
    expect(d.usedElem(1)).toEqual({ id: 1, len: 16 });
    expect(p.irqEvents).toEqual([true, false, true]);
  });

  it('bounds each request to 64 KiB', () => {
    d.init(16);
    d.setDesc(0, BUF, 0x20000, F_WRITE);
    d.offer(0);
    d.notify(0);
    expect(d.usedElem(0)).toEqual({ id: 0, len: 64 * 1024 });
  });

  it('honours VIRTQ_AVAIL_F_NO_INTERRUPT and Command.Interrupt-Disable', () => {
    d.init(16);
    p.memory.writeU16(AVAIL, 1); // avail.flags NO_INTERRUPT
    d.setDesc(0, BUF, 16, F_WRITE);
    d.offer(0);
    d.notify(0);
    expect(d.usedIdx()).toBe(1);
    expect(p.irqEvents).toEqual([]);
    expect(p.device.isr).toBe(0);

    p.memory.writeU16(AVAIL, 0);
    p.cfgWrite(0x04, 2, p.cfgRead(0x04, 2) | 0x400); // interrupt disable
    d.offer(0);
    d.notify(0);
    expect(p.device.isr).toBe(1);
    expect(p.cfgRead(0x06, 2) & 0x8).toBe(0x8);
    expect(p.irqEvents).toEqual([]);
    p.cfgWrite(0x04, 2, p.cfgRead(0x04, 2) & ~0x400);
    expect(p.irqEvents).toEqual([true]);
    d.readIsr();
    expect(p.irqEvents).toEqual([true, false]);
  });

  it('negotiates EVENT_IDX and uses used_event', () => {
    expect(d.negotiate(VERSION_1 | EVENT_IDX)).toBe(true);
    d.setupQueue(0, 16);
    d.addStatus(DRIVER_OK);
    p.memory.writeU16(AVAIL + 4 + 2 * 16, 1); // used_event = 1: interrupt once used idx passes 1
    d.setDesc(0, BUF, 16, F_WRITE);
    d.offer(0);
    d.notify(0);
    expect(d.usedIdx()).toBe(1);
    expect(p.irqEvents).toEqual([]);
    d.offer(0);
    d.notify(0);
    expect(d.usedIdx()).toBe(2);
    expect(p.irqEvents).toEqual([true]);
  });

  it('reads back the registers it was given, NO_VECTOR for MSI-X, 0 for undefined bytes', () => {
    expect(d.negotiate()).toBe(true);
    d.write(1, 0x10, 2, 0);
    expect(d.read(1, 0x10, 2)).toBe(0xffff);
    d.write(1, 0x16, 2, 0);
    d.write(1, 0x1a, 2, 0);
    expect(d.read(1, 0x1a, 2)).toBe(0xffff);
    // 64-bit fields as two 32-bit halves (§4.1.3).
    d.write(1, 0x20, 4, 0x1234_5000);
    d.write(1, 0x24, 4, 0x9);
    expect(d.read(1, 0x20, 4)).toBe(0x1234_5000);
    expect(d.read(1, 0x24, 4)).toBe(9);
    // Driver features read back; select ≥ 2 presents 0.
    d.write(1, 0x08, 4, 1);
    expect(d.read(1, 0x0c, 4)).toBe(1);
    d.write(1, 0x00, 4, 2);
    expect(d.read(1, 0x04, 4)).toBe(0);
    // A queue that does not exist: size 0, nothing sticks.
    d.write(1, 0x16, 2, 3);
    expect(d.read(1, 0x18, 2)).toBe(0);
    d.write(1, 0x20, 4, 0x5000);
    expect(d.read(1, 0x20, 4)).toBe(0);
    // queue_reset: RING_RESET not offered.
    d.write(1, 0x16, 2, 0);
    d.write(1, 0x3a, 2, 1);
    expect(d.read(1, 0x3a, 2)).toBe(0);
    // Undefined bytes.
    for (const off of [0x3c, 0x40, 0x100, 0xffc]) expect(p.mmio.read(d.barBase + off, 4)).toBe(0);
    expect(p.mmio.read(d.barBase + 0x1001, 1)).toBe(0);
    expect(p.mmio.read(d.barBase + 0x2000, 4)).toBe(0); // no device configuration
    expect(p.mmio.read(d.barBase + d.cap(2).offset, 4)).toBe(0); // notify area reads 0
    // Unaligned wide read across fields: num_queues high byte, status, generation, queue_select low byte.
    expect(p.mmio.read(d.barBase + 0x13, 4)).toBe((ACK | DRIVER | FEATURES_OK) << 8);
  });

  it('ignores changes to an enabled queue geometry', () => {
    d.init(16);
    d.write(1, 0x16, 2, 0);
    d.write(1, 0x20, 4, 0x8000);
    d.write(1, 0x18, 2, 4);
    expect(d.read(1, 0x20, 4)).toBe(DESC);
    expect(d.read(1, 0x18, 2)).toBe(16);
    d.write(1, 0x1c, 2, 0); // drivers must not write 0
    expect(d.read(1, 0x1c, 2)).toBe(1);
    d.setDesc(0, BUF, 16, F_WRITE);
    d.offer(0);
    d.notify(0);
    expect(d.usedElem(0)).toEqual({ id: 0, len: 16 });
  });

  it('gives BAR access through the PCI_CFG capability', () => {
    const cfg = d.cap(5).at;
    const window = (offset: number, length: number): void => {
      p.cfgWrite(cfg + 4, 1, 4); // cap.bar: the BAR the other capabilities name
      p.cfgWrite(cfg + 8, 4, offset);
      p.cfgWrite(cfg + 12, 4, length);
    };
    expect(d.cap(1).bar).toBe(4);
    window(d.cap(1).offset + 0x12, 2);
    expect(p.cfgRead(cfg + 16, 2)).toBe(1); // num_queues
    window(d.cap(1).offset + 0x14, 1);
    p.cfgWrite(cfg + 16, 1, ACK);
    expect(d.status()).toBe(ACK);
    // ISR through the window: read clears.
    d.init(16);
    d.setDesc(0, BUF, 16, F_WRITE);
    d.offer(0);
    d.notify(0);
    expect(p.device.isr).toBe(1);
    window(d.cap(3).offset, 1);
    expect(p.cfgRead(cfg + 16, 1)).toBe(1);
    expect(p.device.isr).toBe(0);
    expect(p.irqEvents).toEqual([true, false]);
    // An invalid window (misaligned, wrong BAR) accesses nothing.
    window(d.cap(1).offset + 0x13, 2);
    p.cfgWrite(cfg + 16, 4, 0);
    expect(d.status() & DRIVER_OK).toBe(DRIVER_OK);
    p.cfgWrite(cfg + 4, 1, 0);
    p.cfgWrite(cfg + 8, 4, 0x14);
    p.cfgWrite(cfg + 12, 4, 1);
    p.cfgWrite(cfg + 16, 1, 0);
    expect(d.status() & DRIVER_OK).toBe(DRIVER_OK);
  });

  describe('hostile driver', () => {
    it('refuses FEATURES_OK without VERSION_1 or with features not offered', () => {
      expect(d.negotiate(0n)).toBe(false);
      expect(d.status()).toBe(ACK | DRIVER);
      expect(d.negotiate(VERSION_1 | 1n)).toBe(false); // bit 0: not offered by rng
      expect(d.negotiate(VERSION_1 | (1n << 40n))).toBe(false); // RING_RESET: not offered
      // DRIVER_OK without FEATURES_OK does not stick either; queues cannot be enabled.
      d.addStatus(DRIVER_OK);
      expect(d.status() & DRIVER_OK).toBe(0);
      expect(d.negotiate(VERSION_1)).toBe(true);
      expect(p.device.negotiatedFeatures).toBe(VERSION_1);
      // Feature writes after FEATURES_OK are ignored.
      d.setDriverFeatures(VERSION_1 | EVENT_IDX);
      expect(p.device.negotiatedFeatures).toBe(VERSION_1);
    });

    it('sets NEEDS_RESET for a queue size that is not a power of two, without throwing', () => {
      expect(d.negotiate()).toBe(true);
      d.write(1, 0x16, 2, 0);
      d.write(1, 0x18, 2, 3);
      expect(() => d.write(1, 0x1c, 2, 1)).not.toThrow();
      expect(d.read(1, 0x1c, 2)).toBe(0);
      expect(d.status() & NEEDS_RESET).toBe(NEEDS_RESET);
      expect(p.device.isr & 2).toBe(2); // configuration change interrupt
      expect(p.irqEvents).toEqual([true]);
      expect(d.readIsr()).toBe(2);
      expect(p.logs).toHaveLength(1);
      expect(p.logs[0]).toMatch(/size 3/);
    });

    it('sets NEEDS_RESET for a queue size above the maximum or 0', () => {
      for (const size of [512, 0]) {
        expect(d.negotiate()).toBe(true);
        d.write(1, 0x16, 2, 0);
        d.write(1, 0x18, 2, size);
        d.write(1, 0x1c, 2, 1);
        expect(d.status() & NEEDS_RESET).toBe(NEEDS_RESET);
        expect(d.read(1, 0x1c, 2)).toBe(0);
      }
    });

    it('sets NEEDS_RESET for ring areas outside RAM or misaligned', () => {
      const cases = [
        { desc: 0x2000_0000, avail: AVAIL, used: USED },
        { desc: DESC, avail: RAM - 4, used: USED },
        { desc: DESC, avail: AVAIL, used: 2 ** 40 },
        { desc: DESC + 8, avail: AVAIL, used: USED },
        { desc: DESC, avail: DESC, used: USED }, // overlapping
      ];
      for (const areas of cases) {
        expect(d.negotiate()).toBe(true);
        expect(() => d.setupQueue(0, 16, areas)).not.toThrow();
        expect(d.read(1, 0x1c, 2)).toBe(0);
        expect(d.status() & NEEDS_RESET).toBe(NEEDS_RESET);
      }
      expect(p.logs).toHaveLength(cases.length); // once per episode
    });

    it('sets NEEDS_RESET when a queue is enabled before FEATURES_OK', () => {
      d.setStatus(0);
      d.addStatus(ACK | DRIVER);
      d.write(1, 0x16, 2, 0);
      d.write(1, 0x1c, 2, 1);
      expect(d.status() & NEEDS_RESET).toBe(NEEDS_RESET);
    });

    it('ignores notifications before DRIVER_OK and serves the buffer at DRIVER_OK', () => {
      expect(d.negotiate()).toBe(true);
      d.setupQueue(0, 16);
      d.setDesc(0, BUF, 32, F_WRITE);
      d.offer(0);
      d.notify(0);
      expect(d.usedIdx()).toBe(0);
      expect(p.device.stats.ignoredNotifications).toBe(1);
      expect(p.irqEvents).toEqual([]);
      d.addStatus(DRIVER_OK);
      expect(d.usedIdx()).toBe(1);
      expect(d.usedElem(0)).toEqual({ id: 0, len: 32 });
      expect(p.irqEvents).toEqual([true]);
    });

    it('ignores notifications for queues that do not exist', () => {
      d.init(16);
      d.setDesc(0, BUF, 32, F_WRITE);
      d.offer(0);
      d.write(2, 7 * d.notifyMultiplier, 2, 7);
      d.write(2, 0xffe, 2, 0x3ff);
      expect(d.usedIdx()).toBe(0);
      expect(p.device.stats.ignoredNotifications).toBe(2);
      expect(d.status() & NEEDS_RESET).toBe(0);
      d.notify(0);
      expect(d.usedIdx()).toBe(1);
    });

    it('sets NEEDS_RESET for a descriptor loop, keeps running, and recovers after a reset', () => {
      d.init(16);
      d.setDesc(0, BUF, 16, F_WRITE | F_NEXT, 1);
      d.setDesc(1, BUF + 16, 16, F_WRITE | F_NEXT, 0);
      d.offer(0);
      expect(() => d.notify(0)).not.toThrow();
      expect(d.usedIdx()).toBe(0);
      expect(d.status() & NEEDS_RESET).toBe(NEEDS_RESET);
      expect(p.device.isr).toBe(2);
      expect(p.irqEvents).toEqual([true]);
      expect(p.logs).toHaveLength(1);
      expect(p.logs[0]).toMatch(/CHAIN_TOO_LONG/);
      // Further notifications are ignored and not logged again.
      d.notify(0);
      d.notify(0);
      expect(p.logs).toHaveLength(1);
      expect(p.device.stats.ignoredNotifications).toBe(2);

      // Reset: status, ISR and the line go back to 0.
      d.setStatus(0);
      expect(d.status()).toBe(0);
      expect(p.device.isr).toBe(0);
      expect(p.irqEvents).toEqual([true, false]);
      d.write(1, 0x16, 2, 0);
      expect(d.read(1, 0x1c, 2)).toBe(0);
      expect(d.read(1, 0x18, 2)).toBe(256);
      expect(d.read(1, 0x20, 4)).toBe(0);

      d.init(16);
      d.setDesc(0, BUF, 48, F_WRITE);
      d.offer(0);
      d.notify(0);
      expect(d.usedIdx()).toBe(1);
      expect(d.usedElem(0)).toEqual({ id: 0, len: 48 });
      expect(p.irqEvents).toEqual([true, false, true]);
    });

    it('fails an entropy request with a readable descriptor cleanly', () => {
      d.init(16);
      const rng = p.device.device as VirtioRng;
      d.setDesc(0, BUF, 16, F_NEXT, 1); // device-readable: forbidden for rng (§5.4.6.1)
      d.setDesc(1, BUF + 0x100, 16, F_WRITE);
      p.memory.fill(BUF, 0x200, 0);
      d.offer(0);
      d.notify(0);
      expect(d.usedIdx()).toBe(1);
      expect(d.usedElem(0)).toEqual({ id: 0, len: 0 });
      expect(p.memory.read(BUF + 0x100, 16).every((b) => b === 0)).toBe(true);
      expect(rng.stats.badRequests).toBe(1);
      expect(d.status() & NEEDS_RESET).toBe(0);
      d.setDesc(2, BUF + 0x300, 16, F_WRITE);
      d.offer(2);
      d.notify(0);
      expect(d.usedElem(1)).toEqual({ id: 2, len: 16 });
      expect(rng.stats.requests).toBe(1);
    });

    it('contains errors thrown by a buggy device model', () => {
      class Buggy extends VirtioRng {
        override queueNotify(_index: number, _queue: SplitQueue): void {
          throw new Error('model bug');
        }
      }
      p.close();
      p = new Platform(new Buggy());
      d = new Driver(p);
      d.probe();
      d.init(16);
      d.offer(0);
      expect(() => d.notify(0)).not.toThrow();
      expect(d.status() & NEEDS_RESET).toBe(NEEDS_RESET);
      expect(p.logs[0]).toMatch(/model bug/);
    });

    it('survives 20,000 random BAR accesses', () => {
      let seed = 0x2545f491;
      const rand = (): number => {
        seed ^= seed << 13;
        seed ^= seed >>> 17;
        seed ^= seed << 5;
        return (seed >>> 0) / 2 ** 32;
      };
      const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];
      d.init(16);
      const widths = [1, 2, 4, 8] as const;
      const hot = [0x00, 0x04, 0x08, 0x0c, 0x10, 0x12, 0x14, 0x15, 0x16, 0x18, 0x1a, 0x1c, 0x1e, 0x20, 0x24, 0x28, 0x2c, 0x30, 0x34, 0x38, 0x3a];
      const values = [0, 1, 2, 3, 4, 8, 16, 0xff, 0xffff, 0xffffffff, 0x80000000, DESC, AVAIL, USED];
      expect(() => {
        for (let i = 0; i < 20_000; i++) {
          const width = pick(widths);
          let offset: number;
          const r = rand();
          if (r < 0.4) offset = pick(hot);
          else if (r < 0.5) offset = 0x1000 + Math.floor(rand() * 8);
          else if (r < 0.7) offset = 0x3000 + Math.floor(rand() * 64);
          else offset = Math.floor(rand() * 0x4000);
          const value = rand() < 0.5 ? pick(values) : Math.floor(rand() * 2 ** 32);
          const address = d.barBase + offset;
          const isWrite = rand() < 0.6;
          // Now and then scribble on the rings and descriptors.
          if (i % 97 === 0) p.memory.writeU32(DESC + 4 * Math.floor(rand() * 0xc00), Math.floor(rand() * 2 ** 32));
          if (i % 211 === 0) d.setStatus(0);
          if (i % 500 === 250) {
            // Back to a working queue with a request pending, for the random notifies to chew on.
            d.init(16);
            d.setDesc(0, BUF, 16, F_WRITE);
            d.offer(Math.floor(rand() * 20));
          }
          if (width === 8) {
            // An 8-byte access reaches the device as two 4-byte ones (bus.ts).
            if (isWrite) {
              p.mmio.write(address, 4, value);
              p.mmio.write(address + 4, 4, Math.floor(rand() * 2 ** 32));
            } else {
              p.mmio.read(address, 4);
              p.mmio.read(address + 4, 4);
            }
          } else if (isWrite) p.mmio.write(address, width, value);
          else p.mmio.read(address, width);
        }
        // Arguments no bus would send.
        const dev = p.device;
        for (const [bar, off, size] of [
          [4, -1, 4],
          [4, 0x4000, 1],
          [4, 0x3fff, 4],
          [4, 1.5, 2],
          [0, 0, 4],
          [4, 0, 3],
          [4, 0, 8],
          [4, NaN, 4],
        ] as const) {
          dev.barRead(bar, off, size as AccessSize);
          dev.barWrite(bar, off, size as AccessSize, 0xffffffff);
          dev.barWrite(bar, off, 4, NaN);
        }
      }).not.toThrow();
      // The run reached the interesting states.
      expect(p.device.stats.notifications).toBeGreaterThan(0);
      expect(p.device.stats.needsReset).toBeGreaterThan(0);
      expect(p.device.stats.ignoredNotifications).toBeGreaterThan(0);
      // The device still works after a reset.
      d.init(16);
      d.setDesc(0, BUF, 16, F_WRITE);
      d.offer(0);
      d.notify(0);
      expect(d.usedElem(0)).toEqual({ id: 0, len: 16 });
    });
  });
});
