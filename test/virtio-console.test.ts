import { MmioBus, PioBus, type AccessSize, type BusDevice } from '../src/bus/bus';
import { GuestMemory } from '../src/memory/guest-memory';
import { PCI_CONFIG_ADDRESS_PORT, PCI_CONFIG_PORT_COUNT, PciHostBridge, pciConfigAddress } from '../src/pci/host-bridge';
import { type PciDevice, pciBarBusDevice } from '../src/pci/pci-device';
import { VirtioConsole, type VirtioConsoleOptions } from '../src/virtio/virtio-console';
import { VirtioPciDevice } from '../src/virtio/virtio-pci';

// The test plays a Linux-like virtio-pci driver (as test/virtio-pci.test.ts
// does) against the console model, through configuration cycles on ports
// 0xcf8/0xcfc and MMIO accesses to the BAR. Raw numbers come from the specs:
//   virtio 1.2 §4.1.4: capabilities (+3 cfg_type, +4 bar, +8 offset, +12 length,
//     notify cap +16 notify_off_multiplier); cfg_type COMMON 1, NOTIFY 2, ISR 3, DEVICE 4.
//   §4.1.4.3 common cfg: 0x00 dfselect, 0x04 df, 0x08 gfselect, 0x0c gf,
//     0x12 num_queues, 0x14 status, 0x15 generation, 0x16 q_select, 0x18 q_size,
//     0x1c q_enable, 0x1e q_notify_off, 0x20 q_desc, 0x28 q_driver, 0x30 q_device.
//   §2.1 status: ACK 1, DRIVER 2, DRIVER_OK 4, FEATURES_OK 8, NEEDS_RESET 64.
//   §2.7.5-2.7.8 split rings: desc {le64 addr, le32 len, le16 flags, le16 next},
//     NEXT 1, WRITE 2; avail {flags, idx, ring[]}; used {flags, idx, {id, len}[]}.
//   §5.3: device id 3; queue 0 receiveq, 1 transmitq; F_SIZE 0, F_MULTIPORT 1,
//     F_EMERG_WRITE 2; config le16 cols @0, le16 rows @2, le32 max_nr_ports @4,
//     le32 emerg_wr @8.

const RAM = 1 << 22;
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
const F_SIZE = 1n << 0n;
const F_MULTIPORT = 1n << 1n;
const F_EMERG_WRITE = 1n << 2n;

const RX = 0;
const TX = 1;

interface Areas {
  desc: number;
  avail: number;
  used: number;
}
/** Ring areas of each queue. */
const AREAS: readonly Areas[] = [
  { desc: 0x1000, avail: 0x2000, used: 0x3000 },
  { desc: 0x4000, avail: 0x5000, used: 0x6000 },
];

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
  readonly output: Uint8Array[] = [];
  readonly bridge: PciHostBridge;
  readonly console: VirtioConsole;
  readonly device: VirtioPciDevice;
  readonly slot: number;
  private readonly windows = new Map<string, BusDevice>();

  constructor(options: Partial<VirtioConsoleOptions> = {}) {
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
    this.console = new VirtioConsole({ onOutput: (data) => this.output.push(data), ...options });
    this.device = new VirtioPciDevice({
      memory: this.memory,
      device: this.console,
      irq: (level) => this.irqEvents.push(level),
      name: 'virtio-console-test',
      log: (m) => this.logs.push(m),
    });
    this.slot = this.bridge.addDevice(this.device);
    this.bridge.assignResources({ mmioBase: MMIO_BASE, mmioSize: 0x1000_0000, ioBase: 0xc000, ioSize: 0x1000 });
  }

  /** Everything onOutput received, as text. */
  text(): string {
    return Buffer.concat(this.output).toString('latin1');
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

/** A virtio-pci driver in the manner of Linux's virtio_pci_modern, with one ring state per queue. */
class Driver {
  readonly caps = new Map<number, Cap>();
  barBase = 0;
  notifyMultiplier = 0;
  private readonly availIdx = [0, 0];
  private readonly sizes = [0, 0];

  constructor(readonly p: Platform) {}

  probe(): void {
    const p = this.p;
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
    const hi = p.cfgRead(0x10 + 4 * common.bar + 4, 4);
    this.barBase = hi * 2 ** 32 + ((lo & 0xfffffff0) >>> 0);
    this.notifyMultiplier = p.cfgRead(this.cap(2).at + 16, 4);
    p.cfgWrite(0x04, 2, p.cfgRead(0x04, 2) | 0x4); // bus master
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
  generation(): number {
    return this.read(1, 0x15, 1);
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

  negotiate(features: bigint): boolean {
    this.setStatus(0);
    this.addStatus(ACK);
    this.addStatus(DRIVER);
    this.deviceFeatures();
    this.setDriverFeatures(features);
    this.addStatus(FEATURES_OK);
    return (this.status() & FEATURES_OK) !== 0;
  }

  setupQueue(index: number, size: number): void {
    const a = AREAS[index];
    this.p.memory.fill(a.desc, 16 * size);
    this.p.memory.fill(a.avail, 6 + 2 * size);
    this.p.memory.fill(a.used, 6 + 8 * size);
    this.write(1, 0x16, 2, index);
    this.write(1, 0x18, 2, size);
    this.write64(0x20, a.desc);
    this.write64(0x28, a.avail);
    this.write64(0x30, a.used);
    this.write(1, 0x1c, 2, 1);
    this.sizes[index] = size;
    this.availIdx[index] = 0;
  }

  write64(offset: number, value: number): void {
    this.write(1, offset, 4, value % 2 ** 32);
    this.write(1, offset + 4, 4, Math.floor(value / 2 ** 32));
  }

  /** Negotiation and both queues; DRIVER_OK unless `driverOk` is false. */
  init(features: bigint = VERSION_1 | F_SIZE | F_EMERG_WRITE, size = 16, driverOk = true): void {
    expect(this.negotiate(features)).toBe(true);
    this.setupQueue(RX, size);
    this.setupQueue(TX, size);
    if (driverOk) this.addStatus(DRIVER_OK);
  }

  setDesc(q: number, i: number, addr: number, len: number, flags: number, next = 0): void {
    const m = this.p.memory;
    const at = AREAS[q].desc + 16 * i;
    m.writeU64(at, BigInt(addr));
    m.writeU32(at + 8, len);
    m.writeU16(at + 12, flags);
    m.writeU16(at + 14, next);
  }

  offer(q: number, head: number): void {
    const m = this.p.memory;
    const a = AREAS[q];
    m.writeU16(a.avail + 4 + 2 * (this.availIdx[q] % this.sizes[q]), head);
    this.availIdx[q] = (this.availIdx[q] + 1) & 0xffff;
    m.writeU16(a.avail + 2, this.availIdx[q]);
  }

  notify(q: number): void {
    this.write(2, q * this.notifyMultiplier, 2, q);
  }

  usedIdx(q: number): number {
    return this.p.memory.readU16(AREAS[q].used + 2);
  }
  usedElem(q: number, slot: number): { id: number; len: number } {
    const at = AREAS[q].used + 4 + 8 * slot;
    return { id: this.p.memory.readU32(at), len: this.p.memory.readU32(at + 4) };
  }

  /** Writes `text` to a buffer and sends it on the transmitq as one descriptor. */
  transmit(text: string, desc = 0, addr = BUF + 0x8000): void {
    const bytes = Buffer.from(text, 'latin1');
    this.p.memory.write(addr, bytes);
    this.setDesc(TX, desc, addr, bytes.length, 0);
    this.offer(TX, desc);
    this.notify(TX);
  }

  /** Posts a device-writable receive buffer of `len` bytes as descriptor `desc`. */
  postReceive(desc: number, addr: number, len: number): void {
    this.setDesc(RX, desc, addr, len, F_WRITE);
    this.offer(RX, desc);
  }
}

function bytes(text: string): Uint8Array {
  return Buffer.from(text, 'latin1');
}

describe('virtio console', () => {
  let p: Platform;
  let d: Driver;
  const open: Platform[] = [];
  const setup = (options: Partial<VirtioConsoleOptions> = {}): void => {
    p = new Platform(options);
    open.push(p);
    d = new Driver(p);
    d.probe();
  };
  beforeEach(() => setup());
  afterEach(() => {
    for (const x of open.splice(0)) x.close();
  });

  it('presents a console device with two queues and a 12-byte configuration', () => {
    expect(p.cfgRead(0x00, 2)).toBe(0x1af4);
    expect(p.cfgRead(0x02, 2)).toBe(0x1043); // 0x1040 + 3 (console)
    expect(d.cap(4).length).toBe(12);
    d.setStatus(0);
    const offered = d.deviceFeatures();
    expect(offered & (F_SIZE | F_EMERG_WRITE)).toBe(F_SIZE | F_EMERG_WRITE);
    expect(offered & F_MULTIPORT).toBe(0n);
    expect(d.read(1, 0x12, 2)).toBe(2);
    for (const q of [0, 1]) {
      d.write(1, 0x16, 2, q);
      expect(d.read(1, 0x18, 2)).toBe(64);
    }
    // MULTIPORT is not offered: the driver cannot accept it.
    expect(d.negotiate(VERSION_1 | F_MULTIPORT)).toBe(false);
    expect(d.negotiate(VERSION_1 | F_SIZE | F_EMERG_WRITE)).toBe(true);
  });

  it('reads cols and rows from the configuration', () => {
    setup({ cols: 132, rows: 43 });
    expect(d.read(4, 0, 2)).toBe(132);
    expect(d.read(4, 2, 2)).toBe(43);
    expect(d.read(4, 0, 4)).toBe(132 | (43 << 16));
    expect(d.read(4, 1, 1)).toBe(0);
    expect(d.read(4, 4, 4)).toBe(1); // max_nr_ports
    expect(d.read(4, 8, 4)).toBe(0); // emerg_wr is write-only
    expect(d.read(4, 12, 4)).toBe(0); // past the configuration
    // The driver cannot change the size.
    d.write(4, 0, 4, 0xffffffff);
    expect(d.read(4, 0, 4)).toBe(132 | (43 << 16));
    expect(p.output).toEqual([]);

    p.console.setSize(100, 30);
    expect(d.read(4, 0, 2)).toBe(100);
    expect(d.read(4, 2, 2)).toBe(30);
    expect(p.console.cols).toBe(100);
    expect(p.console.rows).toBe(30);
    expect(() => p.console.setSize(70000, 1)).toThrow(RangeError);
    expect(() => p.console.setSize(80, -1)).toThrow(RangeError);
  });

  it('signals a size change only to a live driver that negotiated F_SIZE', () => {
    d.init(VERSION_1 | F_SIZE, 16, false);
    p.console.setSize(90, 40); // not live yet: no notification
    expect(p.device.isr).toBe(0);
    d.addStatus(DRIVER_OK);
    const gen = d.generation();
    p.console.setSize(91, 41);
    expect(p.device.isr & 2).toBe(2);
    expect(p.irqEvents).toEqual([true]);
    expect(d.generation()).not.toBe(gen);
    expect(d.readIsr()).toBe(2);
    p.console.setSize(91, 41); // unchanged: nothing
    expect(p.device.isr).toBe(0);

    // A driver without F_SIZE gets no notification.
    d.init(VERSION_1);
    p.console.setSize(92, 42);
    expect(p.device.isr).toBe(0);
    expect(d.read(4, 0, 2)).toBe(92);
  });

  it('hands transmitq bytes to onOutput and returns the chain with 0 bytes', () => {
    d.init();
    d.transmit('hello, world\n');
    expect(p.text()).toBe('hello, world\n');
    expect(d.usedIdx(TX)).toBe(1);
    expect(d.usedElem(TX, 0)).toEqual({ id: 0, len: 0 });
    expect(p.irqEvents).toEqual([true]);
    expect(d.readIsr()).toBe(1);

    // A chain of two readable descriptors, in order.
    p.memory.write(BUF, bytes('abc'));
    p.memory.write(BUF + 0x100, bytes('defg'));
    d.setDesc(TX, 1, BUF, 3, F_NEXT, 2);
    d.setDesc(TX, 2, BUF + 0x100, 4, 0);
    d.offer(TX, 1);
    d.notify(TX);
    expect(p.text()).toBe('hello, world\nabcdefg');
    expect(d.usedElem(TX, 1)).toEqual({ id: 1, len: 0 });
    expect(p.console.stats.bytesOut).toBe(20);
    expect(p.console.stats.badChains).toBe(0);
  });

  it('copies a large transmit chain in bounded pieces without losing bytes', () => {
    d.init();
    const n = 200 * 1024 + 17;
    const data = new Uint8Array(n);
    for (let i = 0; i < n; i++) data[i] = (i * 7 + (i >> 8)) & 0xff;
    p.memory.write(0x100000, data.subarray(0, 100_000));
    p.memory.write(0x200000, data.subarray(100_000));
    d.setDesc(TX, 0, 0x100000, 100_000, F_NEXT, 1);
    d.setDesc(TX, 1, 0x200000, n - 100_000, 0);
    d.offer(TX, 0);
    d.notify(TX);
    expect(p.output.length).toBe(4);
    for (const piece of p.output) expect(piece.length).toBeLessThanOrEqual(64 * 1024);
    expect(Buffer.concat(p.output).equals(Buffer.from(data))).toBe(true);
    expect(d.usedElem(TX, 0)).toEqual({ id: 0, len: 0 });
    expect(p.console.stats.bytesOut).toBe(n);
  });

  it('delivers input into receive buffers the driver has posted', () => {
    d.init();
    d.postReceive(0, BUF, 64);
    d.notify(RX); // nothing to deliver yet: the buffer stays with the device
    expect(d.usedIdx(RX)).toBe(0);
    expect(p.irqEvents).toEqual([]);

    expect(p.console.sendInput(bytes('ls -l\n'))).toBe(6);
    expect(d.usedIdx(RX)).toBe(1);
    expect(d.usedElem(RX, 0)).toEqual({ id: 0, len: 6 });
    expect(p.memory.read(BUF, 6).toString('latin1')).toBe('ls -l\n');
    expect(p.irqEvents).toEqual([true]);
    expect(d.readIsr()).toBe(1);
    expect(p.console.pendingInput).toBe(0);
    expect(p.console.stats.bytesIn).toBe(6);

    // Input larger than one buffer spreads over several, in order.
    d.postReceive(1, BUF + 0x100, 4);
    d.postReceive(2, BUF + 0x200, 4);
    d.notify(RX);
    expect(p.console.sendInput(bytes('0123456789'))).toBe(10);
    expect(d.usedIdx(RX)).toBe(3);
    expect(d.usedElem(RX, 1)).toEqual({ id: 1, len: 4 });
    expect(d.usedElem(RX, 2)).toEqual({ id: 2, len: 4 });
    expect(p.memory.read(BUF + 0x100, 4).toString('latin1')).toBe('0123');
    expect(p.memory.read(BUF + 0x200, 4).toString('latin1')).toBe('4567');
    expect(p.console.pendingInput).toBe(2);
    d.postReceive(3, BUF + 0x300, 16);
    d.notify(RX);
    expect(d.usedElem(RX, 3)).toEqual({ id: 3, len: 2 });
    expect(p.memory.read(BUF + 0x300, 2).toString('latin1')).toBe('89');
    expect(p.console.pendingInput).toBe(0);
  });

  it('keeps input until the driver adds receive buffers', () => {
    // Before the driver exists at all.
    expect(p.console.sendInput(bytes('early'))).toBe(5);
    expect(p.console.pendingInput).toBe(5);
    d.init(undefined, 16, false);
    d.postReceive(0, BUF, 3);
    expect(p.console.pendingInput).toBe(5); // not before DRIVER_OK
    expect(d.usedIdx(RX)).toBe(0);
    d.addStatus(DRIVER_OK); // the transport serves the queues: 3 bytes go in
    expect(d.usedElem(RX, 0)).toEqual({ id: 0, len: 3 });
    expect(p.memory.read(BUF, 3).toString('latin1')).toBe('ear');
    expect(p.console.pendingInput).toBe(2);

    // Live driver, no buffers: input waits.
    expect(p.console.sendInput(bytes('+more'))).toBe(5);
    expect(p.console.pendingInput).toBe(7);
    expect(d.usedIdx(RX)).toBe(1);
    d.postReceive(1, BUF + 0x100, 64);
    d.notify(RX);
    expect(d.usedElem(RX, 1)).toEqual({ id: 1, len: 7 });
    expect(p.memory.read(BUF + 0x100, 7).toString('latin1')).toBe('ly+more');
    expect(p.console.pendingInput).toBe(0);
  });

  it('bounds pending input, refuses the rest and calls onInputSpace when room appears', () => {
    const spaceCalls: number[] = [];
    setup({ maxPendingInput: 16, onInputSpace: () => spaceCalls.push(p.console.pendingInput) });
    d.init();
    expect(p.console.sendInput(bytes('abcdefghijklmnopqrstuvwxyz0123456789ABCD'))).toBe(16);
    expect(p.console.pendingInput).toBe(16);
    expect(p.console.inputSpace).toBe(0);
    expect(p.console.stats.refusedInput).toBe(24);
    expect(p.console.sendInput(bytes('XY'))).toBe(0);
    expect(p.console.stats.refusedInput).toBe(26);
    expect(spaceCalls).toEqual([]);

    d.postReceive(0, BUF, 10);
    d.notify(RX);
    expect(d.usedElem(RX, 0)).toEqual({ id: 0, len: 10 });
    expect(p.memory.read(BUF, 10).toString('latin1')).toBe('abcdefghij');
    expect(spaceCalls).toEqual([6]); // once, with room for 10
    // The pending buffer wraps around correctly.
    expect(p.console.sendInput(bytes('qrstuvwxyz0'))).toBe(10);
    d.postReceive(1, BUF + 0x100, 64);
    d.notify(RX);
    expect(p.memory.read(BUF + 0x100, 16).toString('latin1')).toBe('klmnopqrstuvwxyz');
    expect(spaceCalls).toEqual([6, 0]);
    expect(p.console.pendingInput).toBe(0);
    d.postReceive(2, BUF + 0x200, 64);
    d.notify(RX);
    expect(spaceCalls).toEqual([6, 0]); // no refusal since: no call

    // With buffers available, input beyond the bound goes straight through.
    for (let i = 0; i < 4; i++) d.postReceive(3 + i, BUF + 0x1000 * (i + 1), 16);
    d.notify(RX);
    const big = bytes('0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ!?');
    expect(big.length).toBe(64);
    expect(p.console.sendInput(big.subarray(0, 60))).toBe(60);
    // 16 bytes at a time pass through the pending buffer: buffer 2 gets 16, 3 and 4
    // get 16 each, 5 gets the last 12.
    expect(d.usedIdx(RX)).toBe(6);
    expect([2, 3, 4, 5].map((slot) => d.usedElem(RX, slot).len)).toEqual([16, 16, 16, 12]);
    expect(p.console.pendingInput).toBe(0);
    expect(p.console.stats.bytesIn).toBe(26 + 60);
  });

  it('keeps input in order when the pending buffer wraps around', () => {
    setup({ maxPendingInput: 16 });
    d.init();
    expect(p.console.sendInput(bytes('ABCDEFGHIJKL'))).toBe(12);
    d.postReceive(0, BUF, 5);
    d.notify(RX);
    expect(p.memory.read(BUF, 5).toString('latin1')).toBe('ABCDE');
    // 7 pending from offset 5; 9 more fit, 4 of them past the end of the buffer.
    expect(p.console.sendInput(bytes('mnopqrstuvw'))).toBe(9);
    expect(p.console.pendingInput).toBe(16);
    d.postReceive(1, BUF + 0x100, 64);
    d.notify(RX);
    expect(d.usedElem(RX, 1)).toEqual({ id: 1, len: 16 });
    expect(p.memory.read(BUF + 0x100, 16).toString('latin1')).toBe('FGHIJKLmnopqrstu');
  });

  it('outputs the low byte written to emerg_wr, at any time', () => {
    // Unconfigured device (status 0).
    d.write(4, 8, 1, 0x41);
    // Any width; only the byte at offset 8 counts.
    d.write(4, 8, 4, 0x12345642);
    d.write(4, 9, 1, 0x43);
    d.write(4, 10, 2, 0x4444);
    d.write(4, 6, 4, 0x00430000); // covers offsets 6..9: byte 8 is 0x43
    expect(p.text()).toBe('ABC');
    expect(p.console.stats.emergencyWrites).toBe(3);
    expect(d.read(4, 8, 4)).toBe(0);

    // After the queues are broken too.
    d.init();
    d.setDesc(TX, 0, BUF, 16, F_NEXT, 0); // a descriptor that chains to itself
    d.offer(TX, 0);
    d.notify(TX);
    expect(d.status() & NEEDS_RESET).toBe(NEEDS_RESET);
    d.write(4, 8, 1, 0x21);
    expect(p.text()).toBe('ABC!');
  });

  it('returns malformed chains with 0 bytes and goes on', () => {
    d.init();
    // Transmitq: a device-writable buffer (§5.3.6.1).
    p.memory.write(BUF, bytes('secret'));
    d.setDesc(TX, 0, BUF, 6, F_NEXT, 1);
    d.setDesc(TX, 1, BUF + 0x100, 16, F_WRITE);
    d.offer(TX, 0);
    d.notify(TX);
    expect(d.usedElem(TX, 0)).toEqual({ id: 0, len: 0 });
    expect(p.output).toEqual([]);
    expect(p.console.stats.badChains).toBe(1);
    d.transmit('ok', 2);
    expect(p.text()).toBe('ok');

    // Receiveq: a device-readable buffer, then one with no space, then a good one.
    p.memory.fill(BUF + 0x400, 0x100, 0);
    d.setDesc(RX, 0, BUF + 0x400, 16, F_NEXT, 1);
    d.setDesc(RX, 1, BUF + 0x500, 16, F_WRITE);
    d.offer(RX, 0);
    d.setDesc(RX, 2, BUF + 0x600, 0, F_WRITE);
    d.offer(RX, 2);
    d.postReceive(3, BUF + 0x700, 16);
    expect(p.console.sendInput(bytes('key'))).toBe(3);
    expect(d.usedIdx(RX)).toBe(3);
    expect(d.usedElem(RX, 0)).toEqual({ id: 0, len: 0 });
    expect(d.usedElem(RX, 1)).toEqual({ id: 2, len: 0 });
    expect(d.usedElem(RX, 2)).toEqual({ id: 3, len: 3 });
    expect(p.memory.read(BUF + 0x500, 16).every((b) => b === 0)).toBe(true);
    expect(p.memory.read(BUF + 0x700, 3).toString('latin1')).toBe('key');
    expect(p.console.stats.badChains).toBe(3);
    expect(d.status() & NEEDS_RESET).toBe(0);
  });

  it('puts the device in NEEDS_RESET for a descriptor loop without throwing, then recovers', () => {
    d.init();
    d.setDesc(TX, 0, BUF, 16, F_NEXT, 1);
    d.setDesc(TX, 1, BUF + 16, 16, F_NEXT, 0);
    d.offer(TX, 0);
    expect(() => d.notify(TX)).not.toThrow();
    expect(d.status() & NEEDS_RESET).toBe(NEEDS_RESET);
    expect(d.usedIdx(TX)).toBe(0);
    expect(p.output).toEqual([]);
    expect(p.logs).toHaveLength(1);
    expect(p.logs[0]).toMatch(/CHAIN_TOO_LONG/);
    // Input while the device needs a reset is kept, not delivered.
    expect(p.console.sendInput(bytes('kept'))).toBe(4);
    expect(p.console.pendingInput).toBe(4);

    // A loop in the receiveq, found while delivering host input.
    d.setStatus(0);
    expect(p.console.pendingInput).toBe(4); // a reset keeps accepted input
    d.init();
    d.setDesc(RX, 0, BUF, 16, F_WRITE | F_NEXT, 0);
    d.offer(RX, 0);
    expect(() => p.console.sendInput(bytes('!'))).not.toThrow();
    expect(d.status() & NEEDS_RESET).toBe(NEEDS_RESET);
    expect(p.logs).toHaveLength(2);
    expect(p.console.pendingInput).toBe(5);

    // After a reset the pending input reaches the guest.
    d.setStatus(0);
    d.init();
    d.postReceive(0, BUF + 0x800, 32);
    d.notify(RX);
    expect(d.usedElem(RX, 0)).toEqual({ id: 0, len: 5 });
    expect(p.memory.read(BUF + 0x800, 5).toString('latin1')).toBe('kept!');
    d.transmit('alive');
    expect(p.text()).toBe('alive');
  });

  it('drops pending input on request', () => {
    const spaceCalls: number[] = [];
    setup({ maxPendingInput: 4, onInputSpace: () => spaceCalls.push(1) });
    expect(p.console.sendInput(bytes('abcdef'))).toBe(4);
    expect(p.console.discardPendingInput()).toBe(4);
    expect(p.console.pendingInput).toBe(0);
    expect(spaceCalls).toEqual([1]);
  });

  it('lets onOutput echo through sendInput', () => {
    let echo: VirtioConsole | undefined;
    setup({ onOutput: (data) => echo?.sendInput(data) });
    echo = p.console;
    d.init();
    d.postReceive(0, BUF, 32);
    d.transmit('ping');
    expect(d.usedElem(RX, 0)).toEqual({ id: 0, len: 4 });
    expect(p.memory.read(BUF, 4).toString('latin1')).toBe('ping');
    expect(d.status() & NEEDS_RESET).toBe(0);
  });

  it('rejects bad options', () => {
    expect(() => new VirtioConsole({ onOutput: () => {}, maxPendingInput: 0 })).toThrow(RangeError);
    expect(() => new VirtioConsole({ onOutput: () => {}, queueSize: 48 })).toThrow(RangeError);
    expect(() => new VirtioConsole({ onOutput: () => {}, cols: 1.5 })).toThrow(RangeError);
  });
});
