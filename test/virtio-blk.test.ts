import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { GuestMemory } from '../src/memory/guest-memory';
import { SplitQueue } from '../src/virtio/split-queue';
import { VirtioBlk, type VirtioBlkFs, type VirtioBlkOptions } from '../src/virtio/virtio-blk';
import { VirtioPciDevice } from '../src/virtio/virtio-pci';

// The test plays the driver with raw numbers from the spec, not the module's
// constants:
//   virtio 1.2 §5.2.1 device id 2; §5.2.3 features SEG_MAX 2, RO 5, BLK_SIZE 6,
//     FLUSH 9; §5.2.4 config: le64 capacity @0, le32 size_max @8, le32 seg_max
//     @12, geometry @16, le32 blk_size @20.
//   §5.2.6 request: {le32 type, le32 reserved, le64 sector} then data then u8
//     status (last writable byte); types IN 0, OUT 1, FLUSH 4, GET_ID 8,
//     DISCARD 11; status OK 0, IOERR 1, UNSUPP 2; GET_ID string 20 bytes.
//   §2.7.5-2.7.8 split rings: desc {le64 addr, le32 len, le16 flags, le16
//     next}, NEXT 1, WRITE 2; avail {flags, idx, ring[]}; used {flags, idx,
//     {le32 id, le32 len}[]}.

const F_NEXT = 1;
const F_WRITE = 2;
const T_IN = 0;
const T_OUT = 1;
const T_FLUSH = 4;
const T_GET_ID = 8;
const S_OK = 0;
const S_IOERR = 1;
const S_UNSUPP = 2;
const FEATURE_FLUSH = 1n << 9n;

const RAM = 80 << 20;
const QSIZE = 256;
const DESC = 0x1000;
const AVAIL = 0x2000; // 6 + 2 * 256 bytes
const USED = 0x3000; // 6 + 8 * 256 bytes
const HDR = 0x5000;
const STATUS = 0x5100;
const DATA = 0x10_0000;
const UNTOUCHED = 0xee;

let tmp: string;
let memory: GuestMemory;
const opened: VirtioBlk[] = [];

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tskvm-blk-'));
  memory = GuestMemory.allocate([{ gpa: 0, size: RAM }]);
});
afterAll(() => {
  memory.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});
afterEach(() => {
  for (const d of opened.splice(0)) d.close();
});

/** Byte j of sector s of a test image. */
function pattern(sector: number, j: number): number {
  return (sector * 31 + j * 7 + (j >> 8)) & 0xff;
}

let imageCount = 0;
/** A raw image of `sectors` patterned sectors (plus `extra` trailing bytes). */
function makeImage(sectors: number, extra = 0, name?: string): string {
  const file = path.join(tmp, name ?? `disk${imageCount++}.img`);
  const bytes = Buffer.alloc(sectors * 512 + extra);
  for (let s = 0; s < sectors; s++) for (let j = 0; j < 512; j++) bytes[s * 512 + j] = pattern(s, j);
  fs.writeFileSync(file, bytes);
  return file;
}

function expected(sector: number, count: number): Buffer {
  const out = Buffer.alloc(count * 512);
  for (let s = 0; s < count; s++) for (let j = 0; j < 512; j++) out[s * 512 + j] = pattern(sector + s, j);
  return out;
}

function open(options: VirtioBlkOptions): VirtioBlk {
  const d = VirtioBlk.open(options);
  opened.push(d);
  return d;
}

/** fs that records calls and can be told to fail. */
class HookedFs implements VirtioBlkFs {
  readonly calls: { op: string; length?: number }[] = [];
  fail: Partial<Record<'read' | 'write' | 'fsync' | 'open', string>> = {};
  openSync(p: string, flags: string): number {
    this.calls.push({ op: 'open' });
    if (this.fail.open) throw Object.assign(new Error(`${this.fail.open}: injected, open '${p}'`), { code: this.fail.open });
    return fs.openSync(p, flags);
  }
  fstatSync(fd: number): fs.Stats {
    return fs.fstatSync(fd);
  }
  readSync(fd: number, buffer: Uint8Array, offset: number, length: number, position: number): number {
    this.calls.push({ op: 'read', length });
    if (this.fail.read) throw Object.assign(new Error(`${this.fail.read}: injected`), { code: this.fail.read });
    return fs.readSync(fd, buffer, offset, length, position);
  }
  writeSync(fd: number, buffer: Uint8Array, offset: number, length: number, position: number): number {
    this.calls.push({ op: 'write', length });
    if (this.fail.write) throw Object.assign(new Error(`${this.fail.write}: injected`), { code: this.fail.write });
    return fs.writeSync(fd, buffer, offset, length, position);
  }
  fsyncSync(fd: number): void {
    this.calls.push({ op: 'fsync' });
    if (this.fail.fsync) throw Object.assign(new Error(`${this.fail.fsync}: injected`), { code: this.fail.fsync });
    fs.fsyncSync(fd);
  }
  closeSync(fd: number): void {
    this.calls.push({ op: 'close' });
    fs.closeSync(fd);
  }
  count(op: string): number {
    return this.calls.filter((c) => c.op === op).length;
  }
}

type Buf = [gpa: number, len: number, writable: boolean];

/** Driver side of one request queue, served synchronously by the model. */
class Guest {
  readonly queue: SplitQueue;
  private availIdx = 0;
  private usedSeen = 0;

  constructor(readonly blk: VirtioBlk) {
    memory.fill(DESC, 16 * QSIZE);
    memory.fill(AVAIL, 6 + 2 * QSIZE);
    memory.fill(USED, 6 + 8 * QSIZE);
    this.queue = new SplitQueue({ memory, size: QSIZE, descTable: DESC, availRing: AVAIL, usedRing: USED, eventIdx: false, indirect: false });
  }

  /** Writes a chain at descriptors first.. and puts it in the avail ring; returns the head. */
  offer(bufs: Buf[], first = 0): number {
    bufs.forEach(([gpa, len, writable], i) => {
      const at = DESC + 16 * (first + i);
      memory.writeU64(at, BigInt(gpa));
      memory.writeU32(at + 8, len);
      memory.writeU16(at + 12, (writable ? F_WRITE : 0) | (i < bufs.length - 1 ? F_NEXT : 0));
      memory.writeU16(at + 14, first + i + 1);
    });
    memory.writeU16(AVAIL + 4 + 2 * (this.availIdx % QSIZE), first);
    this.availIdx = (this.availIdx + 1) & 0xffff;
    memory.writeU16(AVAIL + 2, this.availIdx);
    return first;
  }

  /** Notifies and returns the used elements the device added. */
  kick(): { id: number; len: number }[] {
    this.blk.queueNotify(0, this.queue);
    const out = [];
    const idx = memory.readU16(USED + 2);
    for (; this.usedSeen !== idx; this.usedSeen = (this.usedSeen + 1) & 0xffff) {
      const at = USED + 4 + 8 * (this.usedSeen % QSIZE);
      out.push({ id: memory.readU32(at), len: memory.readU32(at + 4) });
    }
    return out;
  }

  /** One chain, served: its used length. */
  run(bufs: Buf[]): number {
    const head = this.offer(bufs);
    const used = this.kick();
    expect(used).toHaveLength(1);
    expect(used[0].id).toBe(head);
    return used[0].len;
  }

  header(type: number, sector: bigint | number): void {
    memory.writeU32(HDR, type);
    memory.writeU32(HDR + 4, 0);
    memory.writeU64(HDR + 8, BigInt(sector));
  }

  /** A request in the Linux layout: header, data descriptors, status descriptor. */
  request(type: number, sector: bigint | number, data: Buf[] = []): { status: number; used: number } {
    this.header(type, sector);
    memory.writeU8(STATUS, UNTOUCHED);
    const used = this.run([[HDR, 16, false], ...data, [STATUS, 1, true]]);
    return { status: memory.readU8(STATUS), used };
  }

  read(sector: bigint | number, bytes: number, at = DATA): { status: number; used: number } {
    return this.request(T_IN, sector, bytes > 0 ? [[at, bytes, true]] : []);
  }

  write(sector: bigint | number, data: Uint8Array, at = DATA): { status: number; used: number } {
    memory.write(at, data);
    return this.request(T_OUT, sector, data.length > 0 ? [[at, data.length, false]] : []);
  }
}

describe('virtio-blk', () => {
  describe('identity and configuration', () => {
    it('offers SEG_MAX, BLK_SIZE and FLUSH, and RO only when read-only', () => {
      const file = makeImage(4);
      const rw = open({ path: file });
      expect(rw.deviceId).toBe(2);
      expect(rw.queueSizes).toEqual([256]);
      expect(rw.features).toBe((1n << 2n) | (1n << 6n) | (1n << 9n));
      const ro = open({ path: file, readOnly: true });
      expect(ro.features).toBe((1n << 2n) | (1n << 5n) | (1n << 6n) | (1n << 9n));
      expect(rw.configSize).toBeGreaterThanOrEqual(24);
    });

    it('reads every field at every width, capacity above 2^32 sectors included', () => {
      // A sparse image of 0x1_2345_6789 sectors and 100 bytes: capacity rounds down.
      const file = path.join(tmp, 'big.img');
      const capacity = 0x1_2345_6789;
      fs.closeSync(fs.openSync(file, 'w'));
      fs.truncateSync(file, capacity * 512 + 100);
      const blk = open({ path: file });
      expect(blk.capacity).toBe(capacity);
      const bytes = [0x89, 0x67, 0x45, 0x23, 0x01, 0, 0, 0];
      for (let i = 0; i < 8; i++) expect(blk.readConfig(i, 1)).toBe(bytes[i]);
      for (let i = 0; i < 7; i++) expect(blk.readConfig(i, 2)).toBe(bytes[i] | (bytes[i + 1] << 8));
      expect(blk.readConfig(0, 4)).toBe(0x2345_6789);
      expect(blk.readConfig(4, 4)).toBe(1);
      expect(blk.readConfig(2, 4)).toBe(0x0001_2345);
      expect(blk.readConfig(8, 4)).toBe(0); // size_max: not offered
      expect(blk.readConfig(12, 4)).toBe(254); // seg_max = queue size - 2
      expect(blk.readConfig(12, 2)).toBe(254);
      expect(blk.readConfig(13, 1)).toBe(0);
      expect(blk.readConfig(16, 4)).toBe(0); // geometry: not offered
      expect(blk.readConfig(20, 4)).toBe(512); // blk_size
      expect(blk.readConfig(21, 1)).toBe(2);
      expect(blk.readConfig(20, 2)).toBe(512);
      for (let off = 24; off < blk.configSize; off++) expect(blk.readConfig(off, 1)).toBe(0);
      expect(blk.readConfig(blk.configSize - 4, 4)).toBe(0);
      // Writes change nothing.
      blk.writeConfig(0, 4, 0);
      expect(blk.readConfig(0, 4)).toBe(0x2345_6789);

      // Sectors past 2^32 are addressed exactly: the last one reads (zeros), the next fails.
      const g = new Guest(blk);
      memory.fill(DATA, 512, 0x5a);
      expect(g.read(capacity - 1, 512)).toEqual({ status: S_OK, used: 513 });
      expect(memory.read(DATA, 512).every((b) => b === 0)).toBe(true);
      expect(g.read(capacity, 512)).toEqual({ status: S_IOERR, used: 1 });
      expect(g.read(capacity - 1, 1024)).toEqual({ status: S_IOERR, used: 1 });
    });

    it('rounds a partial last sector down', () => {
      const blk = open({ path: makeImage(3, 100) });
      expect(blk.capacity).toBe(3);
      expect(blk.readConfig(0, 4)).toBe(3);
      const g = new Guest(blk);
      expect(g.read(2, 512).status).toBe(S_OK);
      expect(g.read(3, 512).status).toBe(S_IOERR);
    });

    it('works behind the PCI transport: identity, config through the BAR, a request end to end', () => {
      const blk = open({ path: makeImage(8) });
      const irqs: boolean[] = [];
      const dev = new VirtioPciDevice({ memory, device: blk, irq: (l) => irqs.push(l), name: 'virtio-blk' });
      expect(dev.config.getU16(0x00)).toBe(0x1af4);
      expect(dev.config.getU16(0x02)).toBe(0x1042); // 0x1040 + 2
      expect(dev.capabilities.device).toBeDefined();
      // BAR 4: common cfg at 0, device cfg at 0x2000, notify at 0x3000 (see virtio-pci.ts).
      expect(dev.barRead(4, 0x2000, 4)).toBe(8);
      expect(dev.barRead(4, 0x2000 + 12, 4)).toBe(254);
      expect(dev.barRead(4, 0x2000 + 20, 2)).toBe(512);
      dev.barWrite(4, 0x14, 1, 0); // reset
      dev.barWrite(4, 0x14, 1, 1 | 2); // ACK | DRIVER
      dev.barWrite(4, 0x00, 4, 0);
      expect(dev.barRead(4, 0x04, 4) & 0x264).toBe(0x244); // SEG_MAX | BLK_SIZE | FLUSH, not RO
      dev.barWrite(4, 0x08, 4, 0);
      dev.barWrite(4, 0x0c, 4, Number(FEATURE_FLUSH));
      dev.barWrite(4, 0x08, 4, 1);
      dev.barWrite(4, 0x0c, 4, 1); // VERSION_1
      dev.barWrite(4, 0x14, 1, 1 | 2 | 8);
      expect(dev.barRead(4, 0x14, 1) & 8).toBe(8);
      memory.fill(DESC, 16 * 16);
      memory.fill(AVAIL, 6 + 2 * 16);
      memory.fill(USED, 6 + 8 * 16);
      dev.barWrite(4, 0x16, 2, 0);
      dev.barWrite(4, 0x18, 2, 16);
      dev.barWrite(4, 0x20, 4, DESC);
      dev.barWrite(4, 0x28, 4, AVAIL);
      dev.barWrite(4, 0x30, 4, USED);
      dev.barWrite(4, 0x1c, 2, 1);
      dev.barWrite(4, 0x14, 1, 1 | 2 | 8 | 4); // DRIVER_OK: activate(features)
      // One IN request of 2 sectors from sector 3.
      memory.writeU32(HDR, T_IN);
      memory.writeU64(HDR + 8, 3n);
      const desc = (i: number, addr: number, len: number, flags: number): void => {
        memory.writeU64(DESC + 16 * i, BigInt(addr));
        memory.writeU32(DESC + 16 * i + 8, len);
        memory.writeU16(DESC + 16 * i + 12, flags);
        memory.writeU16(DESC + 16 * i + 14, i + 1);
      };
      desc(0, HDR, 16, F_NEXT);
      desc(1, DATA, 1024, F_WRITE | F_NEXT);
      desc(2, STATUS, 1, F_WRITE);
      memory.writeU8(STATUS, UNTOUCHED);
      memory.writeU16(AVAIL + 4, 0);
      memory.writeU16(AVAIL + 2, 1);
      dev.barWrite(4, 0x3000, 2, 0); // notify queue 0
      expect(memory.readU16(USED + 2)).toBe(1);
      expect(memory.readU32(USED + 8)).toBe(1025);
      expect(memory.readU8(STATUS)).toBe(S_OK);
      expect(Buffer.from(memory.read(DATA, 1024))).toEqual(expected(3, 2));
      expect(irqs).toEqual([true]);
      expect(dev.deviceStatus & 64).toBe(0); // no NEEDS_RESET
    });
  });

  describe('requests', () => {
    it('reads sectors into scattered buffers, status in the last writable byte', () => {
      const blk = open({ path: makeImage(16) });
      const g = new Guest(blk);
      memory.fill(DATA, 0x3000, 0);
      // 3 sectors from sector 5 over three writable buffers of odd sizes.
      const r = g.request(T_IN, 5, [
        [DATA, 700, true],
        [DATA + 0x1000, 300, true],
        [DATA + 0x2000, 536, true],
      ]);
      expect(r).toEqual({ status: S_OK, used: 1537 });
      const got = Buffer.concat([memory.read(DATA, 700), memory.read(DATA + 0x1000, 300), memory.read(DATA + 0x2000, 536)]);
      expect(got).toEqual(expected(5, 3));
      expect(memory.read(DATA + 700, 4).every((b) => b === 0)).toBe(true); // nothing past a buffer
      // Data and status sharing one writable descriptor: the status is its last byte.
      memory.fill(DATA, 1025, UNTOUCHED);
      g.header(T_IN, 0);
      expect(g.run([[HDR, 16, false], [DATA, 1025, true]])).toBe(1025);
      expect(Buffer.from(memory.read(DATA, 1024))).toEqual(expected(0, 2));
      expect(memory.readU8(DATA + 1024)).toBe(S_OK);
      expect(blk.stats).toMatchObject({ reads: 2, bytesRead: 1536 + 1024, ioErrors: 0, badRequests: 0 });
    });

    it('writes sectors from scattered buffers, header and data sharing a descriptor', () => {
      const file = makeImage(16);
      const blk = open({ path: file });
      const g = new Guest(blk);
      const data = Buffer.alloc(1024);
      for (let i = 0; i < data.length; i++) data[i] = (i * 13 + 1) & 0xff;
      memory.write(DATA, data.subarray(0, 100));
      memory.write(DATA + 0x1000, data.subarray(100));
      expect(
        g.request(T_OUT, 7, [
          [DATA, 100, false],
          [DATA + 0x1000, 924, false],
        ]),
      ).toEqual({ status: S_OK, used: 1 });
      const image = fs.readFileSync(file);
      expect(image.subarray(7 * 512, 9 * 512)).toEqual(data);
      expect(image.subarray(6 * 512, 7 * 512)).toEqual(expected(6, 1));
      expect(image.subarray(9 * 512, 10 * 512)).toEqual(expected(9, 1));

      // Header followed by the data in one readable descriptor (split 10 + 6 + ... for good measure).
      const buf = Buffer.alloc(16 + 512, 0x77);
      buf.writeUInt32LE(T_OUT, 0);
      buf.writeUInt32LE(0, 4);
      buf.writeBigUInt64LE(15n, 8);
      memory.write(DATA, buf);
      memory.writeU8(STATUS, UNTOUCHED);
      expect(
        g.run([
          [DATA, 10, false],
          [DATA + 10, 518, false],
          [STATUS, 1, true],
        ]),
      ).toBe(1);
      expect(memory.readU8(STATUS)).toBe(S_OK);
      expect(fs.readFileSync(file).subarray(15 * 512)).toEqual(Buffer.alloc(512, 0x77));
      // And the guest reads back what it wrote.
      expect(g.read(7, 1024).status).toBe(S_OK);
      expect(Buffer.from(memory.read(DATA, 1024))).toEqual(data);
      expect(blk.stats).toMatchObject({ writes: 2, bytesWritten: 1536, reads: 1 });
    });

    it('flushes with fsync; write-through when FLUSH was not negotiated', () => {
      const hooks = new HookedFs();
      const blk = open({ path: makeImage(4), fs: hooks });
      const g = new Guest(blk);
      blk.activate(FEATURE_FLUSH | (1n << 32n));
      expect(g.write(0, Buffer.alloc(512, 1)).status).toBe(S_OK);
      expect(hooks.count('fsync')).toBe(0); // write-back: the guest flushes
      expect(g.request(T_FLUSH, 0)).toEqual({ status: S_OK, used: 1 });
      expect(hooks.count('fsync')).toBe(1);
      expect(blk.stats.flushes).toBe(1);
      blk.activate(1n << 32n); // the driver did not accept FLUSH
      expect(g.write(1, Buffer.alloc(512, 2)).status).toBe(S_OK);
      expect(hooks.count('fsync')).toBe(2);
    });

    it('answers GET_ID with the NUL-padded serial', () => {
      const blk = open({ path: makeImage(1, 0, 'a-rather-long-image-file-name.img') });
      expect(blk.serial).toBe('a-rather-long-image-');
      const g = new Guest(blk);
      memory.fill(DATA, 32, UNTOUCHED);
      expect(g.request(T_GET_ID, 0, [[DATA, 20, true]])).toEqual({ status: S_OK, used: 21 });
      expect(Buffer.from(memory.read(DATA, 20)).toString('latin1')).toBe('a-rather-long-image-');

      const named = open({ path: makeImage(1), serial: 'disk-7' });
      const g2 = new Guest(named);
      memory.fill(DATA, 32, UNTOUCHED);
      expect(g2.request(T_GET_ID, 0, [[DATA, 20, true]])).toEqual({ status: S_OK, used: 21 });
      expect(Buffer.from(memory.read(DATA, 21))).toEqual(Buffer.concat([Buffer.from('disk-7'), Buffer.alloc(14), Buffer.of(UNTOUCHED)]));
      // A short buffer gets what fits.
      memory.fill(DATA, 32, UNTOUCHED);
      expect(g2.request(T_GET_ID, 0, [[DATA, 4, true]])).toEqual({ status: S_OK, used: 5 });
      expect(Buffer.from(memory.read(DATA, 5))).toEqual(Buffer.from([...Buffer.from('disk'), UNTOUCHED]));
      expect(named.stats.getIds).toBe(2);

      const file = makeImage(1);
      expect(() => new VirtioBlk({ path: file, serial: 'x'.repeat(21) })).toThrow(RangeError);
      expect(() => new VirtioBlk({ path: file, serial: 'caf\u00e9' })).toThrow(RangeError);
      // Non-ASCII file names become '_'.
      const odd = open({ path: makeImage(1, 0, 'd\u00efsk.img') });
      expect(odd.serial).toBe('d_sk.img');
    });

    it('refuses writes on a read-only disk and leaves the image alone', () => {
      const file = makeImage(4);
      fs.chmodSync(file, 0o444);
      const hooks = new HookedFs();
      const blk = open({ path: file, readOnly: true, fs: hooks });
      const g = new Guest(blk);
      expect(g.write(1, Buffer.alloc(512, 0xab))).toEqual({ status: S_IOERR, used: 1 });
      expect(hooks.count('write')).toBe(0);
      expect(fs.readFileSync(file)).toEqual(expected(0, 4));
      expect(g.read(1, 512).status).toBe(S_OK);
      expect(Buffer.from(memory.read(DATA, 512))).toEqual(expected(1, 1));
      expect(g.request(T_FLUSH, 0).status).toBe(S_OK);
      expect(blk.stats).toMatchObject({ writes: 0, ioErrors: 1, reads: 1, flushes: 1 });
    });

    it('rejects sectors at or past the capacity without overflow', () => {
      const hooks = new HookedFs();
      const file = makeImage(8);
      const blk = open({ path: file, fs: hooks });
      const g = new Guest(blk);
      memory.fill(DATA, 1024, UNTOUCHED);
      expect(g.read(7, 512).status).toBe(S_OK);
      expect(g.read(0, 8 * 512).status).toBe(S_OK);
      expect(g.read(8, 0).status).toBe(S_OK); // empty, at the end
      const reads = hooks.count('read');
      memory.fill(DATA, 1024, UNTOUCHED);
      for (const sector of [8n, 9n, 7n, 2n ** 53n / 512n, 2n ** 53n, 2n ** 63n, 2n ** 64n - 1n, 2n ** 64n - 2n]) {
        const len = sector === 7n ? 1024 : 512;
        expect({ sector, ...g.read(sector, len) }).toEqual({ sector, status: S_IOERR, used: 1 });
        expect({ sector, ...g.write(sector, Buffer.alloc(len, 1), DATA + 0x10000) }).toEqual({ sector, status: S_IOERR, used: 1 });
      }
      expect(memory.read(DATA, 1024).every((b) => b === UNTOUCHED)).toBe(true);
      expect(hooks.count('read')).toBe(reads);
      expect(hooks.count('write')).toBe(0);
      expect(fs.readFileSync(file)).toEqual(expected(0, 8));
      expect(blk.stats.ioErrors).toBe(16);
      expect(blk.stats.hostErrors).toBe(0);
    });

    it('rejects data lengths that are not a multiple of 512', () => {
      const file = makeImage(8);
      const blk = open({ path: file });
      const g = new Guest(blk);
      memory.fill(DATA, 1024, UNTOUCHED);
      for (const len of [1, 511, 513, 1000]) {
        expect(g.read(0, len)).toEqual({ status: S_IOERR, used: 1 });
        expect(g.write(0, Buffer.alloc(len, 9), DATA + 0x10000)).toEqual({ status: S_IOERR, used: 1 });
      }
      expect(memory.read(DATA, 1024).every((b) => b === UNTOUCHED)).toBe(true);
      expect(fs.readFileSync(file)).toEqual(expected(0, 8));
    });

    it('moves large requests in pieces of at most 128 KiB and rejects huge ones without host work', () => {
      const sectors = (8 << 20) / 512;
      const file = path.join(tmp, 'eight.img');
      const image = Buffer.alloc(8 << 20);
      for (let i = 0; i < image.length; i += 4) image.writeUInt32LE(i, i);
      fs.writeFileSync(file, image);
      const hooks = new HookedFs();
      const blk = open({ path: file, fs: hooks });
      const g = new Guest(blk);

      // 4 MiB read from sector 1 into two buffers.
      const len = 4 << 20;
      expect(
        g.request(T_IN, 1, [
          [DATA, 1 << 20, true],
          [DATA + (2 << 20), len - (1 << 20), true],
        ]),
      ).toEqual({ status: S_OK, used: len + 1 });
      const got = Buffer.concat([memory.read(DATA, 1 << 20), memory.read(DATA + (2 << 20), len - (1 << 20))]);
      expect(got.equals(image.subarray(512, 512 + len))).toBe(true);
      const readLengths = hooks.calls.filter((c) => c.op === 'read').map((c) => c.length ?? 0);
      expect(Math.max(...readLengths)).toBeLessThanOrEqual(128 * 1024);
      expect(readLengths.reduce((a, b) => a + b, 0)).toBe(len);

      // 4 MiB write back at sector 0.
      expect(g.request(T_OUT, 0, [[DATA + (2 << 20), len - (1 << 20), false], [DATA, 1 << 20, false]]).status).toBe(S_OK);
      const writeLengths = hooks.calls.filter((c) => c.op === 'write').map((c) => c.length ?? 0);
      expect(Math.max(...writeLengths)).toBeLessThanOrEqual(128 * 1024);
      const after = fs.readFileSync(file);
      expect(after.subarray(0, 3 << 20).equals(image.subarray(512 + (1 << 20), 512 + len))).toBe(true);
      expect(after.subarray(3 << 20, 4 << 20).equals(image.subarray(512, 512 + (1 << 20)))).toBe(true);

      // 64 MiB: more than the disk holds. Answered without touching the image.
      const calls = hooks.calls.length;
      expect(g.read(0, 64 << 20)).toEqual({ status: S_IOERR, used: 1 });
      expect(g.request(T_OUT, 0, [[DATA, 64 << 20, false]])).toEqual({ status: S_IOERR, used: 1 });
      expect(hooks.calls.length).toBe(calls);
      expect(g.read(sectors - 1, 1024).status).toBe(S_IOERR);
    });

    it('returns a chain with a short header or no status byte unanswered, and serves the next one', () => {
      const blk = open({ path: makeImage(4) });
      const g = new Guest(blk);
      g.header(T_IN, 0);
      memory.fill(DATA, 512, UNTOUCHED);
      memory.writeU8(STATUS, UNTOUCHED);
      // No writable byte at all.
      expect(g.run([[HDR, 16, false]])).toBe(0);
      // A header of 8 bytes.
      expect(
        g.run([
          [HDR, 8, false],
          [DATA, 512, true],
          [STATUS, 1, true],
        ]),
      ).toBe(0);
      expect(memory.read(DATA, 512).every((b) => b === UNTOUCHED)).toBe(true);
      expect(memory.readU8(STATUS)).toBe(UNTOUCHED);
      // Only writable buffers.
      expect(g.run([[STATUS, 1, true]])).toBe(0);
      expect(blk.stats.badRequests).toBe(3);

      // A bad chain and a good one in the same notification: both used, the good one served.
      g.offer([[HDR, 4, false], [STATUS, 1, true]], 0);
      g.header(T_IN, 2);
      g.offer([[HDR, 16, false], [DATA, 512, true], [STATUS, 1, true]], 4);
      const used = g.kick();
      expect(used).toEqual([
        { id: 0, len: 0 },
        { id: 4, len: 513 },
      ]);
      expect(memory.readU8(STATUS)).toBe(S_OK);
      expect(Buffer.from(memory.read(DATA, 512))).toEqual(expected(2, 1));
      expect(blk.stats.badRequests).toBe(4);
    });

    it('answers unknown request types with UNSUPP', () => {
      const blk = open({ path: makeImage(4) });
      const g = new Guest(blk);
      for (const type of [2, 3, 10, 11, 13, 14, 0xffffffff]) expect(g.request(type, 0)).toEqual({ status: S_UNSUPP, used: 1 });
      // DISCARD with a segment descriptor: still UNSUPP, nothing written but the status.
      memory.fill(DATA, 16, UNTOUCHED);
      expect(g.request(11, 0, [[DATA, 16, false]])).toEqual({ status: S_UNSUPP, used: 1 });
      expect(blk.stats.unsupported).toBe(8);
      expect(g.read(0, 512).status).toBe(S_OK);
    });
  });

  describe('host errors', () => {
    it('answers IOERR for ENOSPC and EIO and logs each code once', () => {
      const hooks = new HookedFs();
      const logs: string[] = [];
      const file = makeImage(4);
      const blk = open({ path: file, fs: hooks, log: (m) => logs.push(m) });
      const g = new Guest(blk);
      blk.activate(FEATURE_FLUSH);
      hooks.fail.write = 'ENOSPC';
      expect(g.write(0, Buffer.alloc(512, 3))).toEqual({ status: S_IOERR, used: 1 });
      expect(g.write(1, Buffer.alloc(512, 3))).toEqual({ status: S_IOERR, used: 1 });
      expect(logs).toHaveLength(1);
      expect(logs[0]).toMatch(/ENOSPC/);
      expect(logs[0]).toContain(file);
      hooks.fail.fsync = 'EIO';
      expect(g.request(T_FLUSH, 0)).toEqual({ status: S_IOERR, used: 1 });
      hooks.fail.read = 'EIO';
      expect(g.read(0, 512)).toEqual({ status: S_IOERR, used: 1 });
      expect(logs).toHaveLength(2);
      expect(logs[1]).toMatch(/fsync.*EIO/);
      expect(blk.stats).toMatchObject({ ioErrors: 4, hostErrors: 4, writes: 0, flushes: 0, reads: 0 });
      // The host recovers; so does the device.
      hooks.fail = {};
      expect(g.write(0, Buffer.alloc(512, 3)).status).toBe(S_OK);
      expect(g.request(T_FLUSH, 0).status).toBe(S_OK);
      expect(fs.readFileSync(file).subarray(0, 512)).toEqual(Buffer.alloc(512, 3));
    });

    it('reports an image that shrank under it', () => {
      const file = makeImage(8);
      const logs: string[] = [];
      const blk = open({ path: file, log: (m) => logs.push(m) });
      fs.truncateSync(file, 4 * 512 + 100);
      const g = new Guest(blk);
      memory.fill(DATA, 4096, UNTOUCHED);
      expect(g.read(0, 4 * 512).status).toBe(S_OK);
      // Sectors 3..5: the chunk read hits end of file; no data reported.
      expect(g.read(3, 3 * 512)).toEqual({ status: S_IOERR, used: 1 });
      expect(logs).toHaveLength(1);
      expect(logs[0]).toMatch(/shrank/);
    });

    it('opens with clear errors that keep the errno code', () => {
      const missing = path.join(tmp, 'nope.img');
      const err = (f: () => unknown): { code?: string; message?: string } => {
        try {
          f();
        } catch (e) {
          return e as { code?: string; message?: string };
        }
        throw new Error('no error thrown');
      };
      const e1 = err(() => VirtioBlk.open({ path: missing }));
      expect(e1.code).toBe('ENOENT');
      expect(e1.message).toContain(missing);
      expect(e1.message).toMatch(/does not exist/);
      expect((e1.message ?? '').split('. ')).toHaveLength(1); // one sentence

      const hooks = new HookedFs();
      hooks.fail.open = 'EACCES';
      const e2 = err(() => VirtioBlk.open({ path: makeImage(1), fs: hooks }));
      expect(e2.code).toBe('EACCES');
      expect(e2.message).toMatch(/read-only/);

      const e3 = err(() => VirtioBlk.open({ path: tmp }));
      expect(e3.code).toBe('EISDIR');
      const e4 = err(() => VirtioBlk.open({ path: tmp, readOnly: true }));
      expect(e4.code).toBe('EINVAL');
      expect(e4.message).toMatch(/not a regular file/);
      expect(() => VirtioBlk.open({ path: '' })).toThrow(RangeError);
    });

    it('closes its file once; requests after close get IOERR', () => {
      const hooks = new HookedFs();
      const logs: string[] = [];
      const blk = VirtioBlk.open({ path: makeImage(2), fs: hooks, log: (m) => logs.push(m) });
      const g = new Guest(blk);
      expect(blk.closed).toBe(false);
      blk.close();
      blk.close();
      expect(blk.closed).toBe(true);
      expect(hooks.count('close')).toBe(1);
      expect(g.read(0, 512)).toEqual({ status: S_IOERR, used: 1 });
      expect(logs[0]).toMatch(/closed/);
    });
  });
});
