import { GuestMemory } from '../src/memory/guest-memory';
import {
  VirtioNet,
  formatMac,
  parseMac,
  randomMac,
  type VirtioNetOptions,
} from '../src/virtio/virtio-net';
import { VirtioPciDevice } from '../src/virtio/virtio-pci';

// The test plays a virtio-pci driver against VirtioPciDevice + VirtioNet through
// the device's BAR (barRead/barWrite on BAR 4, the layout documented in
// virtio-pci.ts: common configuration at 0x0000, ISR at 0x1000, device
// configuration at 0x2000, notifications at 0x3000 + 4 * queue). It uses raw
// numbers from the spec, not the module's constants:
//   §4.1.4.3 common cfg: 0x00 dfselect, 0x04 df, 0x08 gfselect, 0x0c gf,
//     0x14 status, 0x15 generation, 0x16 q_select, 0x18 q_size, 0x1c q_enable,
//     0x20 q_desc, 0x28 q_driver, 0x30 q_device.
//   §2.1 status: ACK 1, DRIVER 2, DRIVER_OK 4, FEATURES_OK 8, NEEDS_RESET 64.
//   §6 / §5.1.3 features: MTU 3, MAC 5, STATUS 16, EVENT_IDX 29, VERSION_1 32.
//   §5.1.4 config: mac[6] at 0, status le16 at 6 (LINK_UP 1),
//     max_virtqueue_pairs le16 at 8, mtu le16 at 10.
//   §5.1.6 struct virtio_net_hdr: 12 bytes, num_buffers le16 at 10.
//   §2.7.5-2.7.8 split rings: desc {le64 addr, le32 len, le16 flags, le16 next},
//     NEXT 1, WRITE 2; avail {flags, idx, ring[], used_event};
//     used {flags, idx, {id, len}[], avail_event}.

const RAM = 1 << 20;
const BAR = 4;
const ISR = 0x1000;
const DEVCFG = 0x2000;
const NOTIFY = 0x3000;

const ACK = 1;
const DRIVER = 2;
const DRIVER_OK = 4;
const FEATURES_OK = 8;
const NEEDS_RESET = 64;
const F_NEXT = 1;
const F_WRITE = 2;
const F_MTU = 1n << 3n;
const F_MAC = 1n << 5n;
const F_STATUS = 1n << 16n;
const EVENT_IDX = 1n << 29n;
const VERSION_1 = 1n << 32n;
const NET_FEATURES = VERSION_1 | F_MAC | F_STATUS | F_MTU;
const HDR = 12;
const QSIZE = 16;

const RXQ = 0;
const TXQ = 1;
const BUF = 0x10000;

/** Driver-side view of one split ring. */
class Ring {
  availIdx = 0;
  constructor(
    private readonly m: GuestMemory,
    readonly desc: number,
    readonly avail: number,
    readonly used: number,
    readonly size: number,
  ) {}

  clear(): void {
    this.m.fill(this.desc, 16 * this.size);
    this.m.fill(this.avail, 6 + 2 * this.size);
    this.m.fill(this.used, 6 + 8 * this.size);
    this.availIdx = 0;
  }

  setDesc(i: number, addr: number, len: number, flags: number, next = 0): void {
    this.m.writeU64(this.desc + 16 * i, BigInt(addr));
    this.m.writeU32(this.desc + 16 * i + 8, len);
    this.m.writeU16(this.desc + 16 * i + 12, flags);
    this.m.writeU16(this.desc + 16 * i + 14, next);
  }

  offer(head: number): void {
    this.m.writeU16(this.avail + 4 + 2 * (this.availIdx % this.size), head);
    this.availIdx = (this.availIdx + 1) & 0xffff;
    this.m.writeU16(this.avail + 2, this.availIdx);
  }

  usedIdx(): number {
    return this.m.readU16(this.used + 2);
  }

  usedElem(slot: number): { id: number; len: number } {
    const at = this.used + 4 + 8 * slot;
    return { id: this.m.readU32(at), len: this.m.readU32(at + 4) };
  }

  /** avail_event, after used.ring[size] (§2.7.8). */
  availEvent(): number {
    return this.m.readU16(this.used + 4 + 8 * this.size);
  }
}

interface Harness {
  memory: GuestMemory;
  net: VirtioNet;
  dev: VirtioPciDevice;
  rx: Ring;
  tx: Ring;
  sent: Uint8Array[];
  irq: boolean[];
  logs: string[];
  rxSpace: { calls: number };
}

const MAC = Uint8Array.from([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
let h: Harness;

function setup(options: Partial<VirtioNetOptions> = {}): Harness {
  const memory = GuestMemory.allocate([{ gpa: 0, size: RAM }]);
  const sent: Uint8Array[] = [];
  const rxSpace = { calls: 0 };
  const net = new VirtioNet({
    mac: MAC,
    onTransmit: (frame) => sent.push(frame),
    onRxSpace: () => rxSpace.calls++,
    ...options,
  });
  const irq: boolean[] = [];
  const logs: string[] = [];
  const dev = new VirtioPciDevice({ memory, device: net, irq: (l) => irq.push(l), name: 'virtio-net-test', log: (m) => logs.push(m) });
  const rx = new Ring(memory, 0x1000, 0x2000, 0x3000, QSIZE);
  const tx = new Ring(memory, 0x4000, 0x5000, 0x6000, QSIZE);
  h = { memory, net, dev, rx, tx, sent, irq, logs, rxSpace };
  return h;
}

function rd(offset: number, size: 1 | 2 | 4): number {
  return h.dev.barRead(BAR, offset, size);
}
function wr(offset: number, size: 1 | 2 | 4, value: number): void {
  h.dev.barWrite(BAR, offset, size, value);
}
function status(): number {
  return rd(0x14, 1);
}
function addStatus(bits: number): void {
  wr(0x14, 1, status() | bits);
}
function deviceFeatures(): bigint {
  wr(0x00, 4, 0);
  const lo = BigInt(rd(0x04, 4));
  wr(0x00, 4, 1);
  return (BigInt(rd(0x04, 4)) << 32n) | lo;
}
function setupQueue(index: number, ring: Ring): void {
  ring.clear();
  wr(0x16, 2, index);
  expect(rd(0x18, 2)).toBe(256);
  wr(0x18, 2, ring.size);
  wr(0x20, 4, ring.desc);
  wr(0x24, 4, 0);
  wr(0x28, 4, ring.avail);
  wr(0x2c, 4, 0);
  wr(0x30, 4, ring.used);
  wr(0x34, 4, 0);
  wr(0x1c, 2, 1);
  expect(rd(0x1c, 2)).toBe(1);
}
/** §3.1.1: reset, ACK, DRIVER, features, FEATURES_OK, queues, optionally DRIVER_OK. */
function bringUp(features: bigint = NET_FEATURES, driverOk = true): void {
  wr(0x14, 1, 0);
  addStatus(ACK | DRIVER);
  deviceFeatures();
  wr(0x08, 4, 0);
  wr(0x0c, 4, Number(features & 0xffffffffn));
  wr(0x08, 4, 1);
  wr(0x0c, 4, Number(features >> 32n));
  addStatus(FEATURES_OK);
  expect(status() & FEATURES_OK).toBe(FEATURES_OK);
  setupQueue(RXQ, h.rx);
  setupQueue(TXQ, h.tx);
  if (driverOk) addStatus(DRIVER_OK);
}
function notify(queue: number): void {
  wr(NOTIFY + 4 * queue, 2, queue);
}
function readIsr(): number {
  return rd(ISR, 1);
}

/** An Ethernet frame of `length` bytes: our MAC as destination, a pattern after. */
function frame(length: number, seed = 1): Uint8Array {
  const f = new Uint8Array(length);
  for (let i = 0; i < length; i++) f[i] = (i * 7 + seed) & 0xff;
  if (length >= 14) {
    f.set(MAC, 0);
    f.set([0x02, 0, 0, 0, 0, 0x99], 6);
    f[12] = 0x08; // IPv4
    f[13] = 0x00;
  }
  return f;
}

/** Puts a header (12 bytes) + `payload` into guest memory at `gpa`. */
function putPacket(gpa: number, payload: Uint8Array): void {
  h.memory.fill(gpa, HDR, 0);
  h.memory.write(gpa + HDR, payload);
}

afterEach(() => h?.memory.close());

describe('virtio-net identity and configuration', () => {
  beforeEach(() => setup());

  it('is device id 1 with two queues, a network class code and the net features, no offloads', () => {
    expect(h.dev.config.getU16(0x00)).toBe(0x1af4);
    expect(h.dev.config.getU16(0x02)).toBe(0x1041); // 0x1040 + 1
    expect(h.dev.config.getU32(0x08) >>> 8).toBe(0x020000); // network controller, Ethernet
    expect(rd(0x12, 2)).toBe(2); // num_queues: receiveq1, transmitq1, no controlq
    for (const q of [0, 1]) {
      wr(0x16, 2, q);
      expect(rd(0x18, 2)).toBe(256);
    }
    const f = deviceFeatures();
    expect(f & NET_FEATURES).toBe(NET_FEATURES);
    // No CSUM (0), GUEST_CSUM (1), CTRL_GUEST_OFFLOADS (2), GSO/TSO/UFO (6-14),
    // MRG_RXBUF (15), CTRL_VQ (17), MQ (22).
    for (const bit of [0, 1, 2, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 17, 22]) expect((f >> BigInt(bit)) & 1n).toBe(0n);
  });

  it('presents mac, status, max_virtqueue_pairs and mtu in the device configuration', () => {
    expect([0, 1, 2, 3, 4, 5].map((i) => rd(DEVCFG + i, 1))).toEqual([...MAC]);
    expect(rd(DEVCFG, 4)).toBe(0x12005452);
    expect(rd(DEVCFG + 4, 2)).toBe(0x5634);
    expect(rd(DEVCFG + 6, 2)).toBe(1); // LINK_UP
    expect(rd(DEVCFG + 8, 2)).toBe(1);
    expect(rd(DEVCFG + 10, 2)).toBe(1500);
    expect(rd(DEVCFG + 8, 4)).toBe(1 | (1500 << 16));
    // Past the 12 bytes: 0. An access straddling the end reads the bytes inside.
    expect(rd(DEVCFG + 12, 4)).toBe(0);
    expect(rd(DEVCFG + 10, 4)).toBe(1500);
    // Read-only: a driver write changes nothing.
    wr(DEVCFG, 4, 0xffffffff);
    wr(DEVCFG + 6, 2, 0);
    expect(rd(DEVCFG, 4)).toBe(0x12005452);
    expect(rd(DEVCFG + 6, 2)).toBe(1);
    expect(h.dev.capabilities.device).toBeDefined();
    expect(h.dev.config.getU32(h.dev.capabilities.device! + 12)).toBe(12); // cap length = configSize
  });

  it('presents a configured mtu', () => {
    h.memory.close();
    setup({ mtu: 9000 });
    expect(rd(DEVCFG + 10, 2)).toBe(9000);
    expect(h.net.maxFrame).toBe(9018);
  });

  it('validates its options', () => {
    const ok = { mac: MAC, onTransmit: () => {} };
    expect(() => new VirtioNet({ ...ok, mac: new Uint8Array(5) })).toThrow(RangeError);
    expect(() => new VirtioNet({ ...ok, mac: Uint8Array.from([0x01, 0, 0x5e, 0, 0, 1]) })).toThrow(/multicast/);
    expect(() => new VirtioNet({ ...ok, mac: new Uint8Array(6) })).toThrow(RangeError);
    expect(() => new VirtioNet({ ...ok, mtu: 67 })).toThrow(RangeError);
    expect(() => new VirtioNet({ ...ok, mtu: 65536 })).toThrow(RangeError);
    expect(() => new VirtioNet({ ...ok, maxFrame: 1513 })).toThrow(RangeError); // below mtu + 14
    expect(() => new VirtioNet({ ...ok, maxFrame: 65551 })).toThrow(RangeError);
    expect(new VirtioNet({ ...ok }).maxFrame).toBe(1518);
    expect(new VirtioNet({ ...ok, maxFrame: 1514 }).maxFrame).toBe(1514);
    expect(new VirtioNet({ ...ok, mtu: 65535 }).maxFrame).toBe(65550);
    // The device keeps its own copy of the MAC.
    const mac = Uint8Array.from(MAC);
    const net = new VirtioNet({ ...ok, mac });
    mac[5] = 0;
    expect(net.readConfig(5, 1)).toBe(0x56);
  });
});

describe('MAC helpers', () => {
  it('randomMac makes locally administered unicast addresses', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const mac = randomMac();
      expect(mac).toBeInstanceOf(Uint8Array);
      expect(mac.length).toBe(6);
      expect(mac[0] & 0x01).toBe(0); // I/G: individual
      expect(mac[0] & 0x02).toBe(0x02); // U/L: locally administered
      seen.add(formatMac(mac));
      expect(() => new VirtioNet({ mac, onTransmit: () => {} })).not.toThrow();
    }
    expect(seen.size).toBeGreaterThan(190);
  });

  it('formats and parses addresses', () => {
    expect(formatMac(MAC)).toBe('52:54:00:12:34:56');
    expect([...parseMac('52:54:00:12:34:56')]).toEqual([...MAC]);
    expect([...parseMac('0A-0b-FF-00-01-02')]).toEqual([0x0a, 0x0b, 0xff, 0, 1, 2]);
    for (const bad of ['', '52:54:00:12:34', '52:54:00:12:34:56:78', '52:54:00:12:34:5', 'zz:54:00:12:34:56', '52:54:00:12:34:567'])
      expect(() => parseMac(bad)).toThrow(RangeError);
  });
});

describe('virtio-net transmit', () => {
  beforeEach(() => {
    setup();
    bringUp();
  });

  it('hands the frame, without the header, to onTransmit and returns the chain with 0 bytes', () => {
    const f = frame(60);
    // Header in its own descriptor, the frame in the next (as Linux does with any_header_sg off).
    h.memory.fill(BUF, HDR, 0);
    h.memory.write(BUF + 0x100, f);
    h.tx.setDesc(0, BUF, HDR, F_NEXT, 1);
    h.tx.setDesc(1, BUF + 0x100, f.length, 0);
    h.tx.offer(0);
    notify(TXQ);
    expect(h.sent).toHaveLength(1);
    expect([...h.sent[0]]).toEqual([...f]);
    expect(h.tx.usedIdx()).toBe(1);
    expect(h.tx.usedElem(0)).toEqual({ id: 0, len: 0 });
    expect(h.irq).toEqual([true]);
    expect(readIsr()).toBe(1);

    // Header and frame in one descriptor, two packets in one notification.
    const g = frame(1514, 3);
    putPacket(BUF + 0x1000, g);
    h.tx.setDesc(2, BUF + 0x1000, HDR + g.length, 0);
    putPacket(BUF + 0x2000, f);
    h.tx.setDesc(3, BUF + 0x2000, HDR + f.length, 0);
    h.tx.offer(2);
    h.tx.offer(3);
    notify(TXQ);
    expect(h.sent.map((s) => s.length)).toEqual([60, 1514, 60]);
    expect([...h.sent[1]]).toEqual([...g]);
    expect(h.tx.usedElem(1)).toEqual({ id: 2, len: 0 });
    expect(h.tx.usedElem(2)).toEqual({ id: 3, len: 0 });
    expect(h.net.stats).toMatchObject({ txFrames: 3, txBytes: 60 + 1514 + 60, txDropped: 0, badChains: 0 });
    // The frame is a copy: the guest rewriting its buffer later changes nothing.
    h.memory.fill(BUF + 0x1000 + HDR, 100, 0xee);
    expect(h.sent[1][0]).toBe(MAC[0]);
  });

  it('drops frames shorter than an Ethernet header or longer than maxFrame', () => {
    const cases: { len: number; sent: boolean }[] = [
      { len: 0, sent: false }, // header only
      { len: 13, sent: false },
      { len: 14, sent: true },
      { len: 1518, sent: true },
      { len: 1519, sent: false },
      { len: 9000, sent: false },
    ];
    cases.forEach((c, i) => {
      putPacket(BUF + 0x4000 * i, frame(c.len, i));
      h.tx.setDesc(i, BUF + 0x4000 * i, HDR + c.len, 0);
      h.tx.offer(i);
    });
    // A chain shorter than the header itself.
    h.tx.setDesc(8, BUF, 5, 0);
    h.tx.offer(8);
    notify(TXQ);
    expect(h.sent.map((s) => s.length)).toEqual([14, 1518]);
    expect(h.tx.usedIdx()).toBe(cases.length + 1);
    for (let i = 0; i < cases.length + 1; i++) expect(h.tx.usedElem(i).len).toBe(0);
    expect(h.net.stats.txDropped).toBe(5);
    expect(h.net.stats.txDroppedBy.badSize).toBe(5);
    expect(h.net.stats.txFrames).toBe(2);
    expect(status() & NEEDS_RESET).toBe(0);
  });

  it('drops a transmit chain with device-writable buffers and goes on', () => {
    const f = frame(64);
    putPacket(BUF, f);
    h.tx.setDesc(0, BUF, HDR + f.length, F_NEXT, 1);
    h.tx.setDesc(1, BUF + 0x1000, 64, F_WRITE);
    h.memory.fill(BUF + 0x1000, 64, 0xaa);
    putPacket(BUF + 0x2000, f);
    h.tx.setDesc(2, BUF + 0x2000, HDR + f.length, 0);
    h.tx.offer(0);
    h.tx.offer(2);
    notify(TXQ);
    expect(h.sent).toHaveLength(1);
    expect(h.tx.usedElem(0)).toEqual({ id: 0, len: 0 });
    expect(h.tx.usedElem(1)).toEqual({ id: 2, len: 0 });
    expect(h.memory.read(BUF + 0x1000, 64).every((b) => b === 0xaa)).toBe(true);
    expect(h.net.stats).toMatchObject({ badChains: 1, txDropped: 1, txFrames: 1 });
    expect(h.net.stats.txDroppedBy.badChain).toBe(1);
    expect(status() & NEEDS_RESET).toBe(0);
  });

  it('sets NEEDS_RESET when the guest breaks the transmit queue, and works after a reset', () => {
    h.tx.setDesc(0, BUF, 16, F_NEXT, 1);
    h.tx.setDesc(1, BUF + 16, 16, F_NEXT, 0); // a loop
    h.tx.offer(0);
    expect(() => notify(TXQ)).not.toThrow();
    expect(status() & NEEDS_RESET).toBe(NEEDS_RESET);
    expect(h.dev.isr & 2).toBe(2);
    expect(h.logs[0]).toMatch(/CHAIN_TOO_LONG/);
    expect(h.sent).toHaveLength(0);

    bringUp();
    expect(status() & NEEDS_RESET).toBe(0);
    const f = frame(100);
    putPacket(BUF, f);
    h.tx.setDesc(0, BUF, HDR + f.length, 0);
    h.tx.offer(0);
    notify(TXQ);
    expect(h.sent).toHaveLength(1);
  });

  it('loops frames back through receive() from inside onTransmit', () => {
    h.memory.close();
    const received: boolean[] = [];
    setup({ onTransmit: (f) => received.push(h.net.receive(f)) });
    bringUp();
    h.rx.setDesc(0, BUF + 0x8000, 2048, F_WRITE);
    h.rx.offer(0);
    const f = frame(200);
    putPacket(BUF, f);
    h.tx.setDesc(0, BUF, HDR + f.length, 0);
    h.tx.offer(0);
    notify(TXQ);
    expect(received).toEqual([true]);
    expect(h.rx.usedElem(0)).toEqual({ id: 0, len: HDR + 200 });
    expect([...h.memory.read(BUF + 0x8000 + HDR, 200)]).toEqual([...f]);
    expect(h.tx.usedElem(0)).toEqual({ id: 0, len: 0 });
  });
});

describe('virtio-net receive', () => {
  beforeEach(() => setup());

  it('writes a zero header with num_buffers = 1 and the frame into one receive buffer', () => {
    bringUp();
    h.memory.fill(BUF, 0x1000, 0xcc);
    h.rx.setDesc(0, BUF, 1526, F_WRITE); // §5.1.6.3.1's minimum buffer
    h.rx.offer(0);
    notify(RXQ); // nothing to do yet
    expect(h.rx.usedIdx()).toBe(0);
    const f = frame(98);
    expect(h.net.receive(f)).toBe(true);
    expect(h.rx.usedIdx()).toBe(1);
    expect(h.rx.usedElem(0)).toEqual({ id: 0, len: HDR + 98 });
    const header = h.memory.read(BUF, HDR);
    expect([...header]).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
    expect([...h.memory.read(BUF + HDR, 98)]).toEqual([...f]);
    expect(h.memory.readU8(BUF + HDR + 98)).toBe(0xcc); // nothing past the frame
    expect(h.irq).toEqual([true]);
    expect(readIsr()).toBe(1);
    expect(h.net.stats).toMatchObject({ rxFrames: 1, rxBytes: 98, rxDropped: 0 });
    expect(h.rxSpace.calls).toBe(0);
  });

  it('spreads a packet over several writable descriptors of one chain', () => {
    bringUp();
    h.rx.setDesc(3, BUF, HDR, F_WRITE | F_NEXT, 4);
    h.rx.setDesc(4, BUF + 0x100, 1000, F_WRITE | F_NEXT, 5);
    h.rx.setDesc(5, BUF + 0x1000, 1000, F_WRITE);
    h.rx.offer(3);
    const f = frame(1518, 5);
    expect(h.net.receive(f)).toBe(true);
    expect(h.rx.usedElem(0)).toEqual({ id: 3, len: HDR + 1518 });
    expect(h.memory.readU16(BUF + 10)).toBe(1);
    const got = new Uint8Array(1518);
    got.set(h.memory.read(BUF + 0x100, 1000), 0);
    got.set(h.memory.read(BUF + 0x1000, 518), 1000);
    expect([...got]).toEqual([...f]);
  });

  it('returns false without buffers, then calls onRxSpace once the driver adds some', () => {
    bringUp();
    const backlog = [frame(60, 1), frame(70, 2)];
    expect(h.net.receive(backlog[0])).toBe(false);
    expect(h.net.lastRxDrop).toBe('noBuffer');
    expect(h.net.stats).toMatchObject({ rxNoBuffer: 1, rxDropped: 1 });
    expect(h.net.stats.rxDroppedBy.noBuffer).toBe(1);
    expect(h.irq).toEqual([]);

    // The host retries from onRxSpace (re-entrantly, inside the notification).
    let retried: boolean[] = [];
    h.rxSpace.calls = 0;
    const retry = (): void => {
      h.rxSpace.calls++;
      while (backlog.length > 0 && h.net.receive(backlog[0])) {
        retried.push(true);
        backlog.shift();
      }
    };
    h.memory.close();
    setup({ onRxSpace: retry });
    bringUp();
    expect(h.net.receive(backlog[0])).toBe(false);
    expect(h.rxSpace.calls).toBe(0);
    h.rx.setDesc(0, BUF, 2048, F_WRITE);
    h.rx.offer(0);
    notify(RXQ);
    expect(h.rxSpace.calls).toBe(1);
    expect(retried).toEqual([true]);
    expect(backlog).toHaveLength(1); // the second one failed again: one buffer only
    expect(h.net.stats.rxNoBuffer).toBe(2);
    expect(h.rx.usedElem(0)).toEqual({ id: 0, len: HDR + 60 });
    expect(h.irq).toEqual([true]);

    h.rx.setDesc(1, BUF + 0x1000, 2048, F_WRITE);
    h.rx.offer(1);
    notify(RXQ);
    expect(h.rxSpace.calls).toBe(2);
    expect(backlog).toHaveLength(0);
    expect(h.rx.usedElem(1)).toEqual({ id: 1, len: HDR + 70 });

    // No failure since: a notification does not call onRxSpace.
    retried = [];
    h.rx.setDesc(2, BUF + 0x2000, 2048, F_WRITE);
    h.rx.offer(2);
    notify(RXQ);
    expect(h.rxSpace.calls).toBe(2);
    expect(h.net.stats.rxFrames).toBe(2);
  });

  it('asks for a notification (avail_event) when it finds the receive ring empty with EVENT_IDX', () => {
    bringUp(NET_FEATURES | EVENT_IDX);
    h.rx.setDesc(0, BUF, 2048, F_WRITE);
    h.rx.offer(0);
    expect(h.net.receive(frame(60))).toBe(true);
    h.memory.writeU16(h.rx.used + 4 + 8 * QSIZE, 0xffff);
    expect(h.net.receive(frame(60))).toBe(false);
    expect(h.rx.availEvent()).toBe(1); // notify me when avail.idx passes 1
    h.rx.offer(0);
    notify(RXQ);
    expect(h.rxSpace.calls).toBe(1);
  });

  it('drops frames while the device is not live and tells the host at DRIVER_OK', () => {
    expect(h.net.receive(frame(60))).toBe(false); // before any driver
    expect(h.net.lastRxDrop).toBe('notLive');
    bringUp(NET_FEATURES, false);
    h.rx.setDesc(0, BUF, 2048, F_WRITE);
    h.rx.offer(0);
    expect(h.net.receive(frame(60))).toBe(false); // queues enabled, no DRIVER_OK yet
    expect(h.net.stats.rxDroppedBy.notLive).toBe(2);
    expect(h.rx.usedIdx()).toBe(0);
    expect(h.rxSpace.calls).toBe(0);
    addStatus(DRIVER_OK);
    expect(h.rxSpace.calls).toBe(1);
    expect(h.net.receive(frame(60))).toBe(true);
  });

  it('drops frames that are too short or too long for the link', () => {
    bringUp();
    for (let i = 0; i < 4; i++) {
      h.rx.setDesc(i, BUF + 0x4000 * i, 0x4000, F_WRITE);
      h.rx.offer(i);
    }
    expect(h.net.receive(frame(13))).toBe(false);
    expect(h.net.receive(new Uint8Array(0))).toBe(false);
    expect(h.net.receive(frame(1519))).toBe(false);
    expect(h.net.stats.rxDroppedBy.badSize).toBe(3);
    expect(h.rx.usedIdx()).toBe(0); // no buffer consumed
    expect(h.net.receive(frame(14))).toBe(true);
    expect(h.net.receive(frame(1518))).toBe(true);
    expect(h.rx.usedElem(1)).toEqual({ id: 1, len: HDR + 1518 });
  });

  it('bounds received frames by the mtu only when VIRTIO_NET_F_MTU is negotiated', () => {
    h.memory.close();
    setup({ maxFrame: 9018 });
    bringUp(NET_FEATURES);
    h.rx.setDesc(0, BUF, 0x4000, F_WRITE);
    h.rx.offer(0);
    expect(h.net.receive(frame(1519))).toBe(false); // mtu 1500 + 18
    expect(h.net.lastRxDrop).toBe('badSize');
    bringUp(VERSION_1 | F_MAC | F_STATUS); // a driver that sets its own MTU
    h.rx.setDesc(0, BUF, 0x4000, F_WRITE);
    h.rx.offer(0);
    expect(h.net.receive(frame(9018))).toBe(true);
    expect(h.rx.usedElem(0)).toEqual({ id: 0, len: HDR + 9018 });
    expect(h.net.receive(frame(9019))).toBe(false);
    // Transmit is bounded by maxFrame either way.
    const f = frame(9018);
    putPacket(BUF + 0x8000, f);
    h.tx.setDesc(0, BUF + 0x8000, HDR + f.length, 0);
    h.tx.offer(0);
    notify(TXQ);
    expect(h.sent.map((s) => s.length)).toEqual([9018]);
  });

  it('returns a receive buffer too small for the frame with 0 bytes and drops the frame', () => {
    bringUp();
    h.memory.fill(BUF, 0x200, 0xcc);
    h.rx.setDesc(0, BUF, 100, F_WRITE);
    h.rx.setDesc(1, BUF + 0x1000, 2048, F_WRITE);
    h.rx.offer(0);
    h.rx.offer(1);
    const big = frame(200);
    expect(h.net.receive(big)).toBe(false);
    expect(h.net.lastRxDrop).toBe('bufferTooSmall');
    expect(h.rx.usedIdx()).toBe(1);
    expect(h.rx.usedElem(0)).toEqual({ id: 0, len: 0 });
    expect(h.memory.read(BUF, 0x200).every((b) => b === 0xcc)).toBe(true); // nothing written
    expect(h.net.stats.rxDroppedBy.bufferTooSmall).toBe(1);
    expect(status() & NEEDS_RESET).toBe(0);
    // The next frame goes into the next (big enough) buffer.
    expect(h.net.receive(big)).toBe(true);
    expect(h.rx.usedElem(1)).toEqual({ id: 1, len: HDR + 200 });
    // Exactly header + frame fits.
    h.rx.setDesc(2, BUF + 0x2000, HDR + 200, F_WRITE);
    h.rx.offer(2);
    expect(h.net.receive(big)).toBe(true);
    expect(h.rx.usedElem(2)).toEqual({ id: 2, len: HDR + 200 });
  });

  it('returns a receive chain with device-readable buffers with 0 bytes', () => {
    bringUp();
    h.memory.fill(BUF, 0x2000, 0xcc);
    h.rx.setDesc(0, BUF, 64, F_NEXT, 1); // device-readable
    h.rx.setDesc(1, BUF + 0x1000, 2048, F_WRITE);
    h.rx.offer(0);
    expect(h.net.receive(frame(60))).toBe(false);
    expect(h.net.lastRxDrop).toBe('badChain');
    expect(h.rx.usedElem(0)).toEqual({ id: 0, len: 0 });
    expect(h.memory.read(BUF, 0x2000).every((b) => b === 0xcc)).toBe(true);
    expect(h.net.stats).toMatchObject({ badChains: 1, rxDropped: 1 });
    expect(status() & NEEDS_RESET).toBe(0);
    h.rx.setDesc(2, BUF + 0x3000, 2048, F_WRITE);
    h.rx.offer(2);
    expect(h.net.receive(frame(60))).toBe(true);
  });

  it('sets NEEDS_RESET when the guest breaks the receive queue', () => {
    bringUp();
    h.memory.writeU16(h.rx.avail + 4, QSIZE + 3); // head out of range
    h.memory.writeU16(h.rx.avail + 2, 1);
    expect(() => h.net.receive(frame(60))).not.toThrow();
    expect(h.net.lastRxDrop).toBe('queueError');
    expect(status() & NEEDS_RESET).toBe(NEEDS_RESET);
    expect(h.logs[0]).toMatch(/HEAD_OUT_OF_RANGE/);
    // Until the driver resets, the device is not live.
    expect(h.net.receive(frame(60))).toBe(false);
    expect(h.net.lastRxDrop).toBe('notLive');
    expect(h.net.stats.rxDroppedBy).toMatchObject({ queueError: 1, notLive: 1 });

    bringUp();
    h.rx.setDesc(0, BUF, 2048, F_WRITE);
    h.rx.offer(0);
    expect(h.net.receive(frame(60))).toBe(true);
  });
});

describe('virtio-net link status', () => {
  beforeEach(() => setup());

  it('updates status and sends a configuration change notification', () => {
    bringUp();
    const gen = rd(0x15, 1);
    h.net.setLinkUp(false);
    expect(h.net.linkUp).toBe(false);
    expect(rd(DEVCFG + 6, 2)).toBe(0);
    expect(rd(0x15, 1)).toBe((gen + 1) & 0xff);
    expect(h.irq).toEqual([true]);
    expect(readIsr()).toBe(2);
    h.net.setLinkUp(false); // no change, no notification
    expect(h.dev.isr).toBe(0);

    // Link down: nothing in either direction.
    h.rx.setDesc(0, BUF, 2048, F_WRITE);
    h.rx.offer(0);
    expect(h.net.receive(frame(60))).toBe(false);
    expect(h.net.lastRxDrop).toBe('linkDown');
    expect(h.rx.usedIdx()).toBe(0);
    const f = frame(60);
    putPacket(BUF + 0x1000, f);
    h.tx.setDesc(0, BUF + 0x1000, HDR + f.length, 0);
    h.tx.offer(0);
    notify(TXQ);
    expect(h.sent).toHaveLength(0);
    expect(h.tx.usedElem(0)).toEqual({ id: 0, len: 0 });
    expect(h.net.stats.txDroppedBy.linkDown).toBe(1);

    h.net.setLinkUp(true);
    expect(rd(DEVCFG + 6, 2)).toBe(1);
    expect(readIsr() & 2).toBe(2);
    expect(h.net.receive(frame(60))).toBe(true);
  });

  it('does not interrupt a driver that has not set DRIVER_OK', () => {
    h.net.setLinkUp(false);
    bringUp(NET_FEATURES, false);
    h.net.setLinkUp(true);
    expect(h.dev.isr).toBe(0);
    expect(h.irq).toEqual([]);
    expect(rd(DEVCFG + 6, 2)).toBe(1);
  });

  it('can start with the link down', () => {
    h.memory.close();
    setup({ linkUp: false });
    expect(rd(DEVCFG + 6, 2)).toBe(0);
  });
});
