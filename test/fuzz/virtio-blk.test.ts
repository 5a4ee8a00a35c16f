// Fuzz target: virtio-blk request parsing (src/virtio/virtio-blk.ts) behind a
// hostile driver, over an in-memory disk image.
//
// Requests are built from virtio 1.2 §5.2.6 (header le32 type, le32 reserved,
// le64 sector; data; u8 status as the last writable byte) with hostile types,
// sectors, data lengths, header/status shapes, then laid into the ring with
// the split-queue mutations of fuzz-support.ts. Checked: guest memory accesses
// inside RAM and device writes only into the used ring and writable buffers;
// the image touched only inside its bounds; host allocation per request at
// most VIRTIO_BLK_CHUNK_BYTES whatever the guest describes; only
// VirtqueueError from queueNotify and DEVICE_NEEDS_RESET through the
// transport; each used element matches what §5.2.6 says for its request.
import * as fc from 'fast-check';
import { SplitQueue, VirtqueueError, type Segment } from '../../src/virtio/split-queue';
import { VIRTIO_BLK_CHUNK_BYTES, VirtioBlk, type VirtioBlkFs } from '../../src/virtio/virtio-blk';
import { VirtioPciDevice } from '../../src/virtio/virtio-pci';
import {
  BUFFER_AREAS,
  F_INDIRECT,
  F_WRITE,
  FUZZ_TIMEOUT_MS,
  INDIRECT_AREA,
  RawReader,
  RecordingMemory,
  RingDriver,
  STATUS_DRIVER_OK,
  STATUS_NEEDS_RESET,
  VIRTIO_RAM,
  arbMutation,
  bringUp,
  checkProperty,
  deviceStatus,
  gather,
  totalLength,
  trackLargestReadChain,
  isModelBug,
  layOut,
  notifyQueue,
  referenceWalk,
  within,
  type BufferSpec,
  type ChainSpec,
  type Mutation,
  type RingLayout,
  type Walk,
} from './fuzz-support';

const TARGET = 'virtio-blk';
const LAYOUT: RingLayout = { desc: 0x1000, avail: 0x9000, used: 0xa000 };
const QSIZE = 64;
const SECTORS = 64; // a 32 KiB image
const DEFAULT_MAX_CHAIN = 256 * 1024 * 1024;
// §5.2.6 numbers.
const T_IN = 0;
const T_OUT = 1;
const T_FLUSH = 4;
const T_GET_ID = 8;
const S_OK = 0;
const S_IOERR = 1;
const S_UNSUPP = 2;
const SERIAL = 'fuzz-disk';
// Features: FLUSH (§5.2.3 bit 9), VERSION_1 (32), INDIRECT_DESC (28), EVENT_IDX (29).
const F_FLUSH = 1n << 9n;
const VERSION_1 = 1n << 32n;
const INDIRECT_DESC = 1n << 28n;
const EVENT_IDX = 1n << 29n;

/** An in-memory image that fails the test on any access outside it. */
class MemoryDisk implements VirtioBlkFs {
  readonly bytes = new Uint8Array(SECTORS * 512);
  largestIo = 0;
  ioBytes = 0;
  readonly violations: string[] = [];
  openSync(): number {
    return 3;
  }
  fstatSync(): { size: number; isFile(): boolean } {
    return { size: this.bytes.length, isFile: () => true };
  }
  private check(op: string, buffer: Uint8Array, offset: number, length: number, position: number): void {
    this.largestIo = Math.max(this.largestIo, length);
    this.ioBytes += length;
    if (!(Number.isSafeInteger(position) && position >= 0 && position + length <= this.bytes.length))
      this.violations.push(`${op} of ${length} bytes at ${position} outside the image`);
    if (!(offset >= 0 && offset + length <= buffer.length)) this.violations.push(`${op} past its buffer`);
  }
  readSync(_fd: number, buffer: Uint8Array, offset: number, length: number, position: number): number {
    this.check('read', buffer, offset, length, position);
    buffer.set(this.bytes.subarray(position, position + length), offset);
    return length;
  }
  writeSync(_fd: number, buffer: Uint8Array, offset: number, length: number, position: number): number {
    this.check('write', buffer, offset, length, position);
    this.bytes.set(buffer.subarray(offset, offset + length), position);
    return length;
  }
  fsyncSync(): void {}
  closeSync(): void {}
}

// ---- request generator -----------------------------------------------------------

interface Request {
  type: number;
  sector: bigint;
  dataLen: number;
  /** 0: the 16-byte header in one descriptor; n: split after n bytes; 17..: shorter or longer header buffer. */
  headerShape: number;
  dataPieces: number;
  statusLen: number;
  indirect: boolean;
}

const arbRequest: fc.Arbitrary<Request> = fc.record({
  type: fc.oneof({ weight: 6, arbitrary: fc.constantFrom(T_IN, T_OUT, T_FLUSH, T_GET_ID) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffffffff }) }),
  sector: fc.oneof(
    { weight: 5, arbitrary: fc.bigInt({ min: 0n, max: 70n }) },
    { weight: 1, arbitrary: fc.constantFrom(63n, 64n, 65n, 1n << 32n, 1n << 54n, (1n << 63n) - 1n, (1n << 64n) - 1n) },
    { weight: 1, arbitrary: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }) },
  ),
  dataLen: fc.oneof(
    { weight: 5, arbitrary: fc.integer({ min: 0, max: 16 }).map((n) => 512 * n) },
    { weight: 2, arbitrary: fc.integer({ min: 0, max: 9000 }) },
    { weight: 1, arbitrary: fc.constantFrom(19, 20, 21, 32768, 33280, 65536) },
  ),
  headerShape: fc.oneof({ weight: 5, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 20 }) }),
  dataPieces: fc.integer({ min: 1, max: 3 }),
  statusLen: fc.oneof({ weight: 6, arbitrary: fc.constant(1) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 4 }) }),
  indirect: fc.oneof({ weight: 3, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
});

/** Hands out non-overlapping buffers from BUFFER_AREAS (the sane driver's allocator). */
class Bump {
  private area = 0;
  private next = BUFFER_AREAS[0].gpa;
  take(len: number): bigint | undefined {
    while (this.area < BUFFER_AREAS.length) {
      const a = BUFFER_AREAS[this.area];
      if (this.next + len <= a.gpa + a.size) {
        const at = this.next;
        this.next += len;
        return BigInt(at);
      }
      this.area++;
      if (this.area < BUFFER_AREAS.length) this.next = BUFFER_AREAS[this.area].gpa;
    }
    return undefined;
  }
}

/** The request's chain and the header bytes to write at its header buffer. */
function buildChain(r: Request, bump: Bump): { chain: ChainSpec; header?: { gpa: bigint; bytes: Uint8Array } } | undefined {
  const header = new Uint8Array(16);
  const dv = new DataView(header.buffer);
  dv.setUint32(0, r.type >>> 0, true);
  dv.setBigUint64(8, r.sector, true);
  const buffers: BufferSpec[] = [];
  const hdrLen = r.headerShape > 16 ? r.headerShape - 8 : 16; // 9..12 bytes: a short header
  const hdrAt = bump.take(Math.max(hdrLen, 16));
  if (hdrAt === undefined) return undefined;
  if (r.headerShape >= 1 && r.headerShape < 16) {
    buffers.push({ writable: false, addr: hdrAt, len: r.headerShape });
    buffers.push({ writable: false, addr: hdrAt + BigInt(r.headerShape), len: 16 - r.headerShape });
  } else {
    buffers.push({ writable: false, addr: hdrAt, len: hdrLen });
  }
  const dataWritable = r.type !== T_OUT;
  let left = r.dataLen;
  for (let i = 0; i < r.dataPieces && left > 0; i++) {
    const len = i + 1 === r.dataPieces ? left : Math.ceil(left / 2);
    const at = bump.take(len);
    if (at === undefined) return undefined;
    buffers.push({ writable: dataWritable, addr: at, len });
    left -= len;
  }
  if (r.statusLen > 0) {
    const at = bump.take(r.statusLen);
    if (at === undefined) return undefined;
    buffers.push({ writable: true, addr: at, len: r.statusLen });
  }
  // A readable data buffer after a writable one breaks §2.7.4.2 (OUT with the status first would): keep order.
  const ordered = [...buffers.filter((b) => !b.writable), ...buffers.filter((b) => b.writable)];
  return { chain: { indirect: r.indirect, buffers: ordered }, header: { gpa: hdrAt, bytes: header } };
}

interface BlkScenario {
  requests: Request[];
  mutations: Mutation[];
  startIdx: number;
  flush: boolean;
  eventIdx: boolean;
  indirect: boolean;
  imageSeed: number;
}

const arbScenario: fc.Arbitrary<BlkScenario> = fc.record({
  requests: fc.array(arbRequest, { minLength: 0, maxLength: 10 }),
  mutations: fc.oneof({ weight: 2, arbitrary: fc.constant([] as Mutation[]) }, { weight: 1, arbitrary: fc.array(arbMutation(), { minLength: 1, maxLength: 4 }) }),
  startIdx: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 0xffff })),
  flush: fc.boolean(),
  eventIdx: fc.boolean(),
  indirect: fc.oneof({ weight: 3, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
  imageSeed: fc.nat(255),
});

let ram: RecordingMemory;
beforeAll(() => {
  ram = new RecordingMemory([...VIRTIO_RAM]);
});
afterAll(() => ram.close());

/** Lays the scenario into guest memory; returns what the reference expects of each pending chain. */
function prepare(s: BlkScenario, disk: MemoryDisk) {
  const memory = ram.memory;
  for (let i = 0; i < disk.bytes.length; i++) disk.bytes[i] = (i * 13 + s.imageSeed) & 0xff;
  const driver = new RingDriver(memory, LAYOUT, QSIZE);
  const bump = new Bump();
  const chains: ChainSpec[] = [];
  for (const r of s.requests) {
    const built = buildChain(r, bump);
    if (!built) break;
    chains.push(built.chain);
    if (built.header) memory.write(Number(built.header.gpa), built.header.bytes);
  }
  const laid = layOut(driver, { chains, mutations: s.mutations, startIdx: s.startIdx, availFlags: 0, usedEvent: 0 });
  const pending = (laid.availIdx - s.startIdx) & 0xffff;
  // The reference's view of each chain, taken before the device runs.
  const raw = new RawReader(memory);
  const walks: Walk[] = [];
  if (pending <= QSIZE)
    for (let k = 0; k < pending; k++) {
      const head = raw.u16(LAYOUT.avail + 4 + 2 * ((s.startIdx + k) % QSIZE));
      const w = referenceWalk(raw, LAYOUT.desc, QSIZE, s.indirect, DEFAULT_MAX_CHAIN, head);
      walks.push(w);
      if (!w.ok) break;
    }
  const outcomes = walks.filter((w): w is Extract<Walk, { ok: true }> => w.ok).map((w) => expectedOutcome(w, raw));
  return { driver, pending, walks, raw, outcomes };
}

interface Outcome {
  usedLen: number;
  /** Absent for a malformed request (no header or no status byte). */
  status?: number;
  type: number;
  /** Byte offset in the image of the request's sector. */
  offset: number;
  /** For OUT: the data, copied before the device runs. */
  outData?: Uint8Array;
}

/** What §5.2.6 says the device answers: the used length and status, or 0 and no status for a malformed request. */
function expectedOutcome(w: { readable: Segment[]; writable: Segment[] }, raw: RawReader): Outcome {
  const readable = totalLength(w.readable);
  const writable = totalLength(w.writable);
  if (readable < 16 || writable < 1) return { usedLen: 0, type: -1, offset: 0 };
  const header = gather(raw, w.readable, 16);
  const dv = new DataView(header.buffer);
  const type = dv.getUint32(0, true);
  const sector = dv.getBigUint64(8, true);
  const offset = sector < BigInt(SECTORS) ? Number(sector) * 512 : 0;
  const inRange = (len: number): boolean => len % 512 === 0 && sector + BigInt(len / 512) <= BigInt(SECTORS);
  switch (type) {
    case T_IN:
      return inRange(writable - 1) ? { usedLen: writable, status: S_OK, type, offset } : { usedLen: 1, status: S_IOERR, type, offset };
    case T_OUT:
      return inRange(readable - 16)
        ? { usedLen: 1, status: S_OK, type, offset, outData: gather(raw, w.readable, readable).subarray(16) }
        : { usedLen: 1, status: S_IOERR, type, offset };
    case T_FLUSH:
      return { usedLen: 1, status: S_OK, type, offset };
    case T_GET_ID:
      return { usedLen: Math.min(writable - 1, 20) + 1, status: S_OK, type, offset };
    default:
      return { usedLen: 1, status: S_UNSUPP, type, offset };
  }
}

function overlaps(a: Segment, b: Segment): boolean {
  return a.gpa < b.gpa + b.length && b.gpa < a.gpa + a.length;
}

describe('virtio-blk under a hostile driver', () => {
  it(
    'queueNotify: bounded host work, accesses inside RAM and the image, §5.2.6 answers',
    () => {
      checkProperty(
        TARGET,
        'queueNotify vs §5.2.6',
        fc.property(arbScenario, (s) => {
          const disk = new MemoryDisk();
          const blk = new VirtioBlk({ path: '/fuzz/disk.img', fs: disk, serial: SERIAL });
          blk.activate((s.flush ? F_FLUSH : 0n) | VERSION_1);
          const { driver, pending, walks, raw, outcomes } = prepare(s, disk);
          const before = Uint8Array.from(disk.bytes);
          const queue = new SplitQueue({
            memory: ram.memory,
            size: QSIZE,
            descTable: LAYOUT.desc,
            availRing: LAYOUT.avail,
            usedRing: LAYOUT.used,
            eventIdx: s.eventIdx,
            indirect: s.indirect,
            initialLastAvailIdx: s.startIdx,
            initialUsedIdx: s.startIdx,
          });
          // Every allocation the model makes in proportion to guest lengths goes through readChain.
          const largestAlloc = trackLargestReadChain(queue);
          let thrown: unknown;
          ram.record(() => {
            try {
              blk.queueNotify(0, queue);
            } catch (err) {
              thrown = err;
            }
          });
          if (thrown !== undefined && !(thrown instanceof VirtqueueError)) throw thrown;

          const ok = walks.filter((w): w is Extract<Walk, { ok: true }> => w.ok);
          const brokenExpected = pending > QSIZE || ok.length < walks.length;
          expect(thrown !== undefined).toBe(brokenExpected);
          // (a)
          expect(ram.violations).toEqual([]);
          const allowed = [driver.usedArea(), ...ok.flatMap((w) => w.writable)];
          for (const w of ram.writes())
            if (!within(w.gpa, w.length, allowed)) throw new Error(`device wrote ${w.length} bytes at 0x${w.gpa.toString(16)}`);
          expect(disk.violations).toEqual([]);
          // (c) whatever the chains describe, the model moves at most one chunk per step.
          expect(largestAlloc()).toBeLessThanOrEqual(VIRTIO_BLK_CHUNK_BYTES);
          expect(disk.largestIo).toBeLessThanOrEqual(VIRTIO_BLK_CHUNK_BYTES);
          // Data moved is bounded by the image, not by the lengths described.
          expect(disk.ioBytes).toBeLessThanOrEqual(ok.length * SECTORS * 512);

          // Semantics: one used element per well-formed chain, in order, with §5.2.6's length and status.
          expect(driver.usedIdx()).toBe((s.startIdx + ok.length) & 0xffff);
          const hazard = (i: number): boolean => {
            // Where a request's buffers overlap another's (or the rings), a later
            // request may overwrite an earlier answer: check lengths only.
            const mine = [...ok[i].readable, ...ok[i].writable];
            const others = ok.flatMap((w, j) => (j === i ? [] : [...w.readable, ...w.writable]));
            return mine.some((m) => others.some((o) => overlaps(m, o)) || m.gpa < INDIRECT_AREA.gpa + INDIRECT_AREA.size);
          };
          let image: Uint8Array | undefined = Uint8Array.from(before);
          ok.forEach((w, i) => {
            const want = outcomes[i];
            expect(driver.usedElem(s.startIdx + i).len).toBe(want.usedLen);
            if (want.status === undefined) return;
            if (hazard(i)) {
              if (want.type === T_OUT) image = undefined;
              return;
            }
            const wr = totalLength(w.writable);
            const answer = gather(raw, w.writable, wr);
            expect(answer[wr - 1]).toBe(want.status);
            if (want.type === T_IN && want.status === S_OK && image)
              expect(Buffer.from(answer.subarray(0, wr - 1)).equals(Buffer.from(image.subarray(want.offset, want.offset + wr - 1)))).toBe(true);
            if (want.type === T_GET_ID) {
              const id = Buffer.alloc(20);
              id.write(SERIAL, 'latin1');
              expect(Buffer.from(answer.subarray(0, want.usedLen - 1))).toEqual(id.subarray(0, want.usedLen - 1));
            }
            if (want.type === T_OUT && want.status === S_OK && image && want.outData) image.set(want.outData, want.offset);
          });
          if (image) expect(Buffer.from(disk.bytes).equals(Buffer.from(image))).toBe(true);
        }),
        120,
      );
    },
    FUZZ_TIMEOUT_MS,
  );

  it(
    'through the PCI transport: no exception, DEVICE_NEEDS_RESET exactly when the ring is broken',
    () => {
      checkProperty(
        TARGET,
        'transport notify',
        fc.property(arbScenario, fc.boolean(), (scenario, notifyTwice) => {
          // A device fresh from reset starts its indices at 0 (§2.7.13.4.1 / §2.7.8).
          const s = { ...scenario, startIdx: 0 };
          const disk = new MemoryDisk();
          const blk = new VirtioBlk({ path: '/fuzz/disk.img', fs: disk, serial: SERIAL });
          const logs: string[] = [];
          const dev = new VirtioPciDevice({ memory: ram.memory, device: blk, irq: () => {}, log: (m) => logs.push(m), eventIdx: s.eventIdx, indirect: s.indirect });
          const { driver, pending, walks } = prepare(s, disk);
          // The ring is laid out before DRIVER_OK: the transport serves it on DRIVER_OK (§2.1.2).
          const features = VERSION_1 | (s.flush ? F_FLUSH : 0n) | (s.indirect ? INDIRECT_DESC : 0n) | (s.eventIdx ? EVENT_IDX : 0n);
          ram.record(() => {
            const status = bringUp(dev, features, [{ index: 0, size: QSIZE, layout: LAYOUT }]);
            expect(status & STATUS_DRIVER_OK).toBe(STATUS_DRIVER_OK);
            notifyQueue(dev, 0);
            if (notifyTwice) notifyQueue(dev, 0);
          });
          const ok = walks.filter((w) => w.ok).length;
          const broken = pending > QSIZE || ok < walks.length;
          expect(ram.violations).toEqual([]);
          expect(disk.violations).toEqual([]);
          expect(logs.filter(isModelBug)).toEqual([]);
          expect((deviceStatus(dev) & STATUS_NEEDS_RESET) !== 0).toBe(broken);
          expect(driver.usedIdx()).toBe((s.startIdx + ok) & 0xffff);
        }),
        100,
      );
    },
    FUZZ_TIMEOUT_MS,
  );

  it(
    'a chain describing up to 4 GiB of in-RAM buffers costs at most one chunk of host memory',
    () => {
      // The same 512 KiB of guest RAM listed again and again in one indirect
      // table: a legal-looking description of gigabytes that needs no more RAM.
      checkProperty(
        TARGET,
        'huge described buffers',
        fc.property(
          fc.constantFrom(T_IN, T_OUT, T_GET_ID),
          fc.integer({ min: 1, max: 8192 }),
          fc.constantFrom(0x80000, 0x7fe00, 0x1000),
          (type, entries, pieceLen) => {
            const memory = ram.memory;
            const disk = new MemoryDisk();
            const blk = new VirtioBlk({ path: '/fuzz/disk.img', fs: disk });
            const driver = new RingDriver(memory, LAYOUT, QSIZE);
            driver.clear();
            const table = INDIRECT_AREA.gpa;
            const header = 0x40000;
            const status = 0x40010;
            memory.writeU32(header, type);
            memory.writeU64(header + 8, 0n);
            const n = entries + 2;
            driver.writeDesc(table, 0, { addr: BigInt(header), len: 16, flags: 1, next: 1 });
            for (let i = 0; i < entries; i++)
              driver.writeDesc(table, 1 + i, { addr: 0x80000n, len: pieceLen, flags: 1 | (type === T_OUT ? 0 : F_WRITE), next: 2 + i });
            driver.writeDesc(table, n - 1, { addr: BigInt(status), len: 1, flags: F_WRITE, next: 0 });
            driver.writeDesc(LAYOUT.desc, 0, { addr: BigInt(table), len: 16 * n, flags: F_INDIRECT, next: 0 });
            driver.setAvail([0], 1);
            const queue = new SplitQueue({ memory, size: QSIZE, descTable: LAYOUT.desc, availRing: LAYOUT.avail, usedRing: LAYOUT.used, eventIdx: false, indirect: true });
            const largestAlloc = trackLargestReadChain(queue);
            let thrown: unknown;
            ram.record(() => {
              try {
                blk.queueNotify(0, queue);
              } catch (err) {
                thrown = err;
              }
            });
            const described = entries * pieceLen;
            expect(ram.violations).toEqual([]);
            expect(largestAlloc()).toBeLessThanOrEqual(VIRTIO_BLK_CHUNK_BYTES);
            expect(disk.ioBytes).toBeLessThanOrEqual(SECTORS * 512);
            if (described > DEFAULT_MAX_CHAIN) {
              // Past SplitQueue's bound: a broken queue (the transport then sets DEVICE_NEEDS_RESET).
              expect(thrown).toBeInstanceOf(VirtqueueError);
              expect((thrown as VirtqueueError).code).toBe('CHAIN_TOO_LARGE');
            } else {
              expect(thrown).toBeUndefined();
              expect(driver.usedIdx()).toBe(1);
              // Larger than the 32 KiB image: an I/O error for IN/OUT, never a copy of the whole description.
              if (type !== T_GET_ID && described > SECTORS * 512) expect(memory.readU8(status)).toBe(S_IOERR);
            }
          },
        ),
        15,
      );
    },
    FUZZ_TIMEOUT_MS,
  );
});
