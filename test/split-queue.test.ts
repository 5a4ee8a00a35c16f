import { GuestMemory } from '../src/memory/guest-memory';
import { Chain, SplitQueue, SplitQueueOptions, VirtqueueError, needEvent } from '../src/virtio/split-queue';

// The test plays the driver with raw numbers from the spec, not the module's
// constants: virtio 1.2, 2.7.5 (descriptor: le64 addr, le32 len, le16 flags,
// le16 next; NEXT=1, WRITE=2, INDIRECT=4), 2.7.6 (avail: flags, idx,
// ring[size], used_event), 2.7.8 (used: flags, idx, {le32 id, le32 len}[size],
// avail_event).
const F_NEXT = 1;
const F_WRITE = 2;
const F_INDIRECT = 4;

const RAM = 1 << 20;
const DESC = 0x1000;
const AVAIL = 0x2000;
const USED = 0x3000;

class Driver {
  private idx: number;
  constructor(
    readonly memory: GuestMemory,
    readonly size: number,
    startIdx = 0,
    readonly desc = DESC,
    readonly avail = AVAIL,
    readonly used = USED,
  ) {
    this.idx = startIdx;
    memory.writeU16(avail + 2, startIdx);
    memory.writeU16(used + 2, startIdx);
  }

  /** Writes descriptor `i` of a table at `table` (the queue's table by default). */
  setDesc(i: number, addr: number | bigint, len: number, flags: number, next = 0, table = this.desc): void {
    const at = table + 16 * i;
    this.memory.writeU64(at, BigInt(addr));
    this.memory.writeU32(at + 8, len);
    this.memory.writeU16(at + 12, flags);
    this.memory.writeU16(at + 14, next);
  }

  /** Puts `heads` in the available ring, then publishes the new idx. */
  offer(...heads: number[]): void {
    for (const h of heads) {
      this.memory.writeU16(this.avail + 4 + 2 * (this.idx % this.size), h);
      this.idx = (this.idx + 1) & 0xffff;
    }
    this.memory.writeU16(this.avail + 2, this.idx);
  }

  setAvailIdx(v: number): void {
    this.idx = v;
    this.memory.writeU16(this.avail + 2, v);
  }
  setAvailFlags(v: number): void {
    this.memory.writeU16(this.avail, v);
  }
  setUsedEvent(v: number): void {
    this.memory.writeU16(this.avail + 4 + 2 * this.size, v);
  }
  usedFlags(): number {
    return this.memory.readU16(this.used);
  }
  usedIdx(): number {
    return this.memory.readU16(this.used + 2);
  }
  usedElem(slot: number): { id: number; len: number } {
    const at = this.used + 4 + 8 * slot;
    return { id: this.memory.readU32(at), len: this.memory.readU32(at + 4) };
  }
  availEvent(): number {
    return this.memory.readU16(this.used + 4 + 8 * this.size);
  }
}

/** Records every guest memory access that is not entirely inside RAM (GuestMemory funnels all of them through region()). */
function guardAccesses(memory: GuestMemory): string[] {
  const violations: string[] = [];
  const target = memory as unknown as { region(gpa: number, length: number): unknown };
  const original = target.region;
  target.region = function (this: unknown, gpa: number, length: number) {
    if (!memory.contains(gpa, length)) violations.push(`access of ${length} bytes at ${gpa}`);
    return original.call(this, gpa, length);
  };
  return violations;
}

function expectCode(fn: () => unknown, code: string): VirtqueueError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(VirtqueueError);
  expect((caught as VirtqueueError).code).toBe(code);
  return caught as VirtqueueError;
}

describe('SplitQueue', () => {
  let memory: GuestMemory;
  let violations: string[];
  beforeEach(() => {
    memory = GuestMemory.allocate([{ gpa: 0, size: RAM }]);
    violations = guardAccesses(memory);
  });
  afterEach(() => {
    expect(violations).toEqual([]);
    memory.close();
  });

  function makeQueue(opts: Partial<SplitQueueOptions> = {}): SplitQueue {
    return new SplitQueue({
      memory,
      size: 8,
      descTable: DESC,
      availRing: AVAIL,
      usedRing: USED,
      eventIdx: false,
      indirect: true,
      ...opts,
    });
  }

  /** Offers and pops `n` one-descriptor chains (writable 16 bytes each), leaving them in flight. */
  function popMany(q: SplitQueue, driver: Driver, n: number): Chain[] {
    const chains: Chain[] = [];
    for (let i = 0; i < n; i++) {
      const head = i % q.size;
      driver.setDesc(head, 0x40000 + 0x100 * head, 16, F_WRITE);
      driver.offer(head);
      const c = q.popAvailable();
      expect(c).toBeDefined();
      chains.push(c!);
    }
    return chains;
  }

  describe('normal operation', () => {
    it('round-trips a readable + writable chain', () => {
      const q = makeQueue();
      const d = new Driver(memory, 8);
      memory.write(0x10000, Buffer.from('hello'));
      memory.write(0x10100, Buffer.from(' yo'));
      memory.fill(0x20000, 32, 0xee);
      d.setDesc(0, 0x10000, 5, F_NEXT, 5);
      d.setDesc(5, 0x10100, 3, F_NEXT, 2);
      d.setDesc(2, 0x20000, 16, F_WRITE);
      expect(q.popAvailable()).toBeUndefined();
      d.offer(0);

      const chain = q.popAvailable()!;
      expect(chain).toEqual({
        head: 0,
        readable: [
          { gpa: 0x10000, length: 5 },
          { gpa: 0x10100, length: 3 },
        ],
        writable: [{ gpa: 0x20000, length: 16 }],
        readableBytes: 8,
        writableBytes: 16,
      });
      expect(Buffer.from(q.readChain(chain)).toString()).toBe('hello yo');
      expect(Buffer.from(q.readChain(chain, 4, 3)).toString()).toBe('lo y');
      expect(q.readChain(chain, 100, 50).length).toBe(0);

      const reply = Buffer.from('a response longer than sixteen bytes');
      expect(q.writeChain(chain, reply)).toBe(16);
      expect(memory.read(0x20000, 16).toString()).toBe('a response longe');
      expect(memory.readU8(0x20010)).toBe(0xee); // nothing past the writable space
      expect(q.writeChain(chain, Buffer.from('XYZ'), 14)).toBe(2);
      expect([...memory.read(0x2000e, 3)]).toEqual([0x58, 0x59, 0xee]); // 'X', 'Y', untouched

      q.pushUsed(chain.head, 16);
      expect(d.usedIdx()).toBe(1);
      expect(d.usedElem(0)).toEqual({ id: 0, len: 16 });
      expect(q.popAvailable()).toBeUndefined();
      expect(q.lastAvailIdx).toBe(1);
      expect(q.usedIdx).toBe(1);
      expect(q.inFlight).toBe(0);
    });

    it('handles u16 wraparound of both indices', () => {
      const q = makeQueue({ initialLastAvailIdx: 65534, initialUsedIdx: 65534 });
      const d = new Driver(memory, 8, 65534);
      for (let i = 0; i < 4; i++) d.setDesc(i, 0x10000 + 0x1000 * i, 0x100, i % 2 ? F_WRITE : 0);
      d.offer(3, 1, 0, 2);
      const heads: number[] = [];
      for (let c = q.popAvailable(); c; c = q.popAvailable()) {
        heads.push(c.head);
        q.pushUsed(c.head, c.writableBytes);
      }
      expect(heads).toEqual([3, 1, 0, 2]);
      expect(q.lastAvailIdx).toBe(2);
      expect(q.usedIdx).toBe(2);
      expect(d.usedIdx()).toBe(2);
      // Ring slots 65534 % 8 = 6, 7, then 0, 1.
      expect([6, 7, 0, 1].map((s) => d.usedElem(s))).toEqual([
        { id: 3, len: 0x100 },
        { id: 1, len: 0x100 },
        { id: 0, len: 0 },
        { id: 2, len: 0 },
      ]);
    });

    it('takes several chains in one go and records out-of-order completions', () => {
      const q = makeQueue();
      const d = new Driver(memory, 8);
      d.setDesc(0, 0x10000, 10, F_NEXT, 1);
      d.setDesc(1, 0x11000, 20, F_WRITE);
      d.setDesc(2, 0x12000, 30, 0);
      d.setDesc(3, 0x13000, 40, F_WRITE | F_NEXT, 4);
      d.setDesc(4, 0x14000, 50, F_WRITE);
      d.offer(0, 2, 3);
      const chains = [q.popAvailable()!, q.popAvailable()!, q.popAvailable()!];
      expect(q.popAvailable()).toBeUndefined();
      expect(chains.map((c) => [c.head, c.readableBytes, c.writableBytes])).toEqual([
        [0, 10, 20],
        [2, 30, 0],
        [3, 0, 90],
      ]);
      expect(q.inFlight).toBe(3);
      q.pushUsed(3, 90);
      q.pushUsed(0, 20);
      q.pushUsed(2, 0);
      expect(d.usedIdx()).toBe(3);
      expect([0, 1, 2].map((s) => d.usedElem(s).id)).toEqual([3, 0, 2]);
    });

    it('walks direct descriptors followed by an indirect table, ignoring WRITE on the table descriptor', () => {
      const q = makeQueue();
      const d = new Driver(memory, 8);
      const TABLE = 0x5000;
      d.setDesc(3, 0x10000, 8, F_NEXT, 4);
      d.setDesc(4, TABLE, 48, F_INDIRECT | F_WRITE);
      d.setDesc(0, 0x11000, 4, F_NEXT, 2, TABLE);
      d.setDesc(1, 0xdeadbeef000, 0xffffffff, 0xffff, 0xffff, TABLE); // garbage, never reached
      d.setDesc(2, 0x12000, 64, F_WRITE, 0, TABLE);
      d.offer(3);
      expect(q.popAvailable()).toEqual({
        head: 3,
        readable: [
          { gpa: 0x10000, length: 8 },
          { gpa: 0x11000, length: 4 },
        ],
        writable: [{ gpa: 0x12000, length: 64 }],
        readableBytes: 12,
        writableBytes: 64,
      });
    });

    it('accepts zero-length buffers but gives them no segment', () => {
      const q = makeQueue();
      const d = new Driver(memory, 8);
      d.setDesc(0, 0xffff_ffff_0000n, 0, F_NEXT, 1); // address is irrelevant: no bytes
      d.setDesc(1, 0x10000, 4, F_WRITE | F_NEXT, 2);
      d.setDesc(2, 0, 0, F_WRITE);
      d.offer(0);
      const c = q.popAvailable()!;
      expect(c.readable).toEqual([]);
      expect(c.writable).toEqual([{ gpa: 0x10000, length: 4 }]);
    });

    it('splits a buffer that straddles two adjacent RAM regions', () => {
      const two = GuestMemory.allocate([
        { gpa: 0, size: 0x10000 },
        { gpa: 0x10000, size: 0x10000 },
      ]);
      try {
        const q = new SplitQueue({ memory: two, size: 4, descTable: 0x1000, availRing: 0x2000, usedRing: 0x3000, eventIdx: false, indirect: false });
        const d = new Driver(two, 4);
        two.write(0xfffe, Buffer.from('ab')); // one write cannot cross regions
        two.write(0x10000, Buffer.from('cd'));
        d.setDesc(0, 0xfffe, 4, 0);
        d.offer(0);
        const c = q.popAvailable()!;
        expect(c.readable).toEqual([
          { gpa: 0xfffe, length: 2 },
          { gpa: 0x10000, length: 2 },
        ]);
        expect(Buffer.from(q.readChain(c)).toString()).toBe('abcd');
      } finally {
        two.close();
      }
    });
  });

  describe('notifications', () => {
    it('honours VIRTQ_AVAIL_F_NO_INTERRUPT without EVENT_IDX', () => {
      const q = makeQueue();
      const d = new Driver(memory, 8);
      const chains = popMany(q, d, 4);
      expect(q.needsNotification()).toBe(false); // nothing pushed yet
      q.pushUsed(chains[0].head, 0);
      expect(q.needsNotification()).toBe(true);
      expect(q.needsNotification()).toBe(false); // nothing new since
      d.setAvailFlags(1);
      q.pushUsed(chains[1].head, 0);
      expect(q.needsNotification()).toBe(false);
      d.setAvailFlags(0);
      q.pushUsed(chains[2].head, 0);
      q.pushUsed(chains[3].head, 0);
      expect(q.needsNotification()).toBe(true);
    });

    it('honours used_event with EVENT_IDX', () => {
      const q = makeQueue({ eventIdx: true });
      const d = new Driver(memory, 8);
      d.setAvailFlags(1); // must be ignored with EVENT_IDX (2.7.7.2)
      const chains = popMany(q, d, 8);
      d.setUsedEvent(0);
      q.pushUsed(chains[0].head, 0); // used idx 0 -> 1 passes used_event 0
      expect(q.needsNotification()).toBe(true);
      q.pushUsed(chains[1].head, 0); // 1 -> 2: 0 already passed
      expect(q.needsNotification()).toBe(false);
      d.setUsedEvent(4);
      q.pushUsed(chains[2].head, 0);
      q.pushUsed(chains[3].head, 0); // 2 -> 4: entry 4 not written yet
      expect(q.needsNotification()).toBe(false);
      q.pushUsed(chains[4].head, 0); // 4 -> 5: entry 4 written
      expect(q.needsNotification()).toBe(true);
      d.setUsedEvent(6);
      q.pushUsed(chains[5].head, 0);
      q.pushUsed(chains[6].head, 0);
      q.pushUsed(chains[7].head, 0); // 5 -> 8 crosses 6 in one batch
      expect(q.needsNotification()).toBe(true);
    });

    it('computes the EVENT_IDX decision across the u16 wrap', () => {
      const q = makeQueue({ eventIdx: true, initialLastAvailIdx: 65534, initialUsedIdx: 65534 });
      const d = new Driver(memory, 8, 65534);
      const chains = popMany(q, d, 4);
      d.setUsedEvent(65535);
      for (const c of chains.slice(0, 3)) q.pushUsed(c.head, 0); // 65534 -> 1 crosses 65535
      expect(q.usedIdx).toBe(1);
      expect(q.needsNotification()).toBe(true);
      d.setUsedEvent(3);
      q.pushUsed(chains[3].head, 0); // 1 -> 2
      expect(q.needsNotification()).toBe(false);

      expect(needEvent(0, 1, 0)).toBe(true);
      expect(needEvent(65535, 0, 65535)).toBe(true);
      expect(needEvent(65535, 0, 65534)).toBe(true);
      expect(needEvent(1, 0, 65535)).toBe(false);
      expect(needEvent(5, 5, 0)).toBe(false);
      expect(needEvent(5, 6, 0)).toBe(true);
    });

    it('writes used.flags NO_NOTIFY without EVENT_IDX', () => {
      const q = makeQueue();
      const d = new Driver(memory, 8);
      q.setNotificationSuppression(true);
      expect(d.usedFlags()).toBe(1);
      q.setNotificationSuppression(false);
      expect(d.usedFlags()).toBe(0);
    });

    it('writes avail_event with EVENT_IDX and keeps used.flags 0', () => {
      const q = makeQueue({ eventIdx: true });
      const d = new Driver(memory, 8);
      memory.writeU16(USED + 4 + 8 * 8, 0x1234);
      expect(q.popAvailable()).toBeUndefined(); // idle: asks for a notification on the next buffer
      expect(d.availEvent()).toBe(0);
      popMany(q, d, 3);
      expect(q.popAvailable()).toBeUndefined();
      expect(d.availEvent()).toBe(3);
      q.setNotificationSuppression(true);
      expect(d.availEvent()).toBe(2); // the farthest index: no notification wanted
      d.setDesc(0, 0x10000, 1, 0);
      d.offer(0);
      q.popAvailable();
      expect(q.popAvailable()).toBeUndefined();
      expect(d.availEvent()).toBe(2); // idle pops leave it alone while suppressed
      q.setNotificationSuppression(false);
      expect(d.availEvent()).toBe(4);
      expect(d.usedFlags()).toBe(0);
    });

    it('suppresses with avail_event = 65535 when last_avail_idx is 0', () => {
      const q = makeQueue({ eventIdx: true });
      const d = new Driver(memory, 8);
      q.setNotificationSuppression(true);
      expect(d.availEvent()).toBe(65535);
    });
  });

  describe('hostile guest', () => {
    let q: SplitQueue;
    let d: Driver;
    beforeEach(() => {
      q = makeQueue();
      d = new Driver(memory, 8);
    });

    it('rejects a descriptor loop', () => {
      d.setDesc(0, 0x10000, 1, F_NEXT, 1);
      d.setDesc(1, 0x10000, 1, F_NEXT, 2);
      d.setDesc(2, 0x10000, 1, F_NEXT, 1);
      d.offer(0);
      expectCode(() => q.popAvailable(), 'CHAIN_TOO_LONG');
    });

    it('rejects a descriptor that chains to itself', () => {
      d.setDesc(0, 0, 0, F_NEXT, 0);
      d.offer(0);
      expectCode(() => q.popAvailable(), 'CHAIN_TOO_LONG');
    });

    it('rejects a chain longer than the queue (every descriptor chained in a ring)', () => {
      for (let i = 0; i < 8; i++) d.setDesc(i, 0x10000 + i, 1, F_NEXT, (i + 1) % 8);
      d.offer(5);
      expectCode(() => q.popAvailable(), 'CHAIN_TOO_LONG');
    });

    it('rejects a loop inside an indirect table', () => {
      const TABLE = 0x5000;
      d.setDesc(0, TABLE, 64, F_INDIRECT);
      d.setDesc(0, 0x10000, 1, F_NEXT, 1, TABLE);
      d.setDesc(1, 0x10000, 1, F_NEXT, 0, TABLE);
      d.offer(0);
      expectCode(() => q.popAvailable(), 'INDIRECT_CHAIN_TOO_LONG');
    });

    it('rejects avail.idx moving by more than the queue size, or backwards', () => {
      d.setDesc(0, 0x10000, 1, 0);
      d.setAvailIdx(9);
      expectCode(() => q.popAvailable(), 'AVAIL_IDX_JUMP');
      q.reset();
      d.setAvailIdx(8); // exactly size: fine
      expect(q.popAvailable()).toBeDefined();
      q.reset();
      d.setAvailIdx(65535); // "decremented" from 0
      expectCode(() => q.popAvailable(), 'AVAIL_IDX_JUMP');
    });

    it.each([8, 9, 65535])('rejects head index %d >= size', (head) => {
      d.offer(head);
      expectCode(() => q.popAvailable(), 'HEAD_OUT_OF_RANGE');
    });

    it.each([8, 65535])('rejects next index %d >= size', (next) => {
      d.setDesc(0, 0x10000, 1, F_NEXT, next);
      d.offer(0);
      expectCode(() => q.popAvailable(), 'NEXT_OUT_OF_RANGE');
    });

    it.each([
      ['that runs past the end of RAM', 0xffff0, 0x20],
      ['that starts at the end of RAM', RAM, 1],
      ['at 2^63', 1n << 63n, 1],
      ['at 2^53', 2 ** 53, 1],
      ['of 2^32-1 bytes', 0x10000, 0xffffffff],
      ['ending exactly at 2^64', 0xffff_ffff_ffff_ffffn, 1],
    ])('rejects a buffer %s', (_what, addr, len) => {
      d.setDesc(0, addr, len, F_WRITE);
      d.offer(0);
      expectCode(() => q.popAvailable(), 'BUFFER_OUTSIDE_RAM');
    });

    it.each([
      ['2^64 - 16 + 32 bytes', 0xffff_ffff_ffff_fff0n, 0x20],
      ['2^64 - 1 + 2^32-1 bytes', 0xffff_ffff_ffff_ffffn, 0xffffffff],
    ])('rejects a buffer whose end wraps 2^64: %s', (_what, addr, len) => {
      d.setDesc(0, addr, len, 0);
      d.offer(0);
      expectCode(() => q.popAvailable(), 'BUFFER_WRAPS');
    });

    it('rejects a chain holding more than maxChainBytes', () => {
      q = makeQueue({ maxChainBytes: 0x2000 });
      d.setDesc(0, 0x10000, 0x1000, F_NEXT, 1);
      d.setDesc(1, 0x20000, 0x1001, F_WRITE);
      d.offer(0);
      expectCode(() => q.popAvailable(), 'CHAIN_TOO_LARGE');
    });

    it.each([
      ['zero length', 0x5000, 0, 'INDIRECT_EMPTY'],
      ['length not a multiple of 16', 0x5000, 24, 'INDIRECT_BAD_LENGTH'],
      ['past the end of RAM', RAM - 16, 32, 'INDIRECT_OUTSIDE_RAM'],
      ['wrapping 2^64', 0xffff_ffff_ffff_fff0n, 32, 'INDIRECT_OUTSIDE_RAM'],
      ['more than 32768 entries', 0, 16 * 32769, 'INDIRECT_TOO_LARGE'],
    ])('rejects an indirect table with %s', (_what, addr, len, code) => {
      d.setDesc(0, addr, len, F_INDIRECT);
      d.offer(0);
      expectCode(() => q.popAvailable(), code);
    });

    it('rejects a nested indirect descriptor', () => {
      d.setDesc(0, 0x5000, 32, F_INDIRECT);
      d.setDesc(0, 0x10000, 1, F_NEXT, 1, 0x5000);
      d.setDesc(1, 0x6000, 16, F_INDIRECT, 0, 0x5000);
      d.offer(0);
      expectCode(() => q.popAvailable(), 'NESTED_INDIRECT');
    });

    it('rejects INDIRECT together with NEXT', () => {
      d.setDesc(0, 0x5000, 16, F_INDIRECT | F_NEXT, 1);
      d.setDesc(1, 0x10000, 1, 0);
      d.setDesc(0, 0x10000, 1, 0, 0, 0x5000);
      d.offer(0);
      expectCode(() => q.popAvailable(), 'INDIRECT_WITH_NEXT');
    });

    it('rejects an indirect descriptor when VIRTIO_F_INDIRECT_DESC was not negotiated', () => {
      q = makeQueue({ indirect: false });
      d.setDesc(0, 0x5000, 16, F_INDIRECT);
      d.setDesc(0, 0x10000, 1, 0, 0, 0x5000);
      d.offer(0);
      expectCode(() => q.popAvailable(), 'INDIRECT_NOT_NEGOTIATED');
    });

    it('rejects a next index outside the indirect table', () => {
      d.setDesc(0, 0x5000, 32, F_INDIRECT);
      d.setDesc(0, 0x10000, 1, F_NEXT, 2, 0x5000);
      d.offer(0);
      expectCode(() => q.popAvailable(), 'INDIRECT_NEXT_OUT_OF_RANGE');
    });

    it('rejects a readable descriptor after a writable one (direct, indirect, and across the two)', () => {
      d.setDesc(0, 0x10000, 1, F_WRITE | F_NEXT, 1);
      d.setDesc(1, 0x11000, 1, 0);
      d.offer(0);
      expectCode(() => q.popAvailable(), 'READABLE_AFTER_WRITABLE');

      q.reset();
      d.setAvailIdx(0);
      d.setDesc(0, 0x5000, 32, F_INDIRECT);
      d.setDesc(0, 0x10000, 1, F_WRITE | F_NEXT, 1, 0x5000);
      d.setDesc(1, 0x11000, 1, 0, 0, 0x5000);
      d.offer(0);
      expectCode(() => q.popAvailable(), 'READABLE_AFTER_WRITABLE');

      q.reset();
      d.setAvailIdx(0);
      d.setDesc(2, 0x10000, 1, F_WRITE | F_NEXT, 3);
      d.setDesc(3, 0x5000, 16, F_INDIRECT);
      d.setDesc(0, 0x11000, 1, 0, 0, 0x5000);
      d.offer(2);
      expectCode(() => q.popAvailable(), 'READABLE_AFTER_WRITABLE');
    });

    it('stays broken after a guest error until reset', () => {
      d.setDesc(0, 0x10000, 1, F_NEXT, 9);
      d.offer(0);
      expectCode(() => q.popAvailable(), 'NEXT_OUT_OF_RANGE');
      expect(q.broken?.code).toBe('NEXT_OUT_OF_RANGE');
      expectCode(() => q.popAvailable(), 'QUEUE_BROKEN');
      expectCode(() => q.pushUsed(0, 0), 'QUEUE_BROKEN');
      expect(q.lastAvailIdx).toBe(0);
      q.reset();
      d.setDesc(0, 0x10000, 1, 0);
      expect(q.popAvailable()?.head).toBe(0);
      expect(q.broken).toBeUndefined();
    });

    it('reports a closed guest memory as a VirtqueueError', () => {
      memory.close();
      expectCode(() => q.popAvailable(), 'MEMORY_ACCESS');
    });
  });

  describe('device errors', () => {
    it('rejects bad pushUsed arguments and more used entries than popped chains', () => {
      const q = makeQueue();
      const d = new Driver(memory, 8);
      expectCode(() => q.pushUsed(0, 0), 'USED_OVERFLOW');
      popMany(q, d, 1);
      expectCode(() => q.pushUsed(8, 0), 'INVALID_ARGUMENT');
      expectCode(() => q.pushUsed(0, -1), 'INVALID_ARGUMENT');
      expectCode(() => q.pushUsed(0, 2 ** 32), 'INVALID_ARGUMENT');
      q.pushUsed(0, 0xffffffff);
      expect(d.usedElem(0)).toEqual({ id: 0, len: 0xffffffff });
      expectCode(() => q.pushUsed(0, 0), 'USED_OVERFLOW');
      expect(q.broken).toBeUndefined(); // device bugs do not blame the guest
    });
  });

  describe('geometry', () => {
    it.each([0, 3, 6, 32769, 65536, 0.5, NaN, -8])('rejects queue size %p', (size) => {
      expectCode(() => makeQueue({ size }), 'BAD_QUEUE_SIZE');
    });

    it.each([
      ['a descriptor table not 16-aligned', { descTable: DESC + 8 }],
      ['an available ring not 2-aligned', { availRing: AVAIL + 1 }],
      ['a used ring not 4-aligned', { usedRing: USED + 2 }],
    ])('rejects %s', (_what, opts) => {
      expectCode(() => makeQueue(opts), 'MISALIGNED_AREA');
    });

    it.each([
      ['a descriptor table past RAM', { descTable: RAM - 64 }],
      ['an available ring whose used_event is past RAM', { availRing: RAM - 20 }],
      ['a used ring whose avail_event is past RAM', { usedRing: RAM - 68 }],
      ['a negative address', { usedRing: -4 }],
      ['an address beyond 2^53', { descTable: 2 ** 60 }],
      ['a fractional address', { availRing: 0.5 }],
    ])('rejects %s', (_what, opts) => {
      expectCode(() => makeQueue(opts), 'AREA_OUTSIDE_RAM');
    });

    it.each([
      ['the available ring inside the descriptor table', { availRing: DESC + 0x40 }],
      ['the used ring over used_event', { usedRing: AVAIL + 20 }],
      ['the descriptor table over avail_event', { descTable: USED + 0x40 }],
      ['identical areas', { availRing: USED }],
    ])('rejects %s', (_what, opts) => {
      expectCode(() => makeQueue(opts), 'AREAS_OVERLAP');
    });

    it('accepts the largest queue and adjacent areas', () => {
      // 32768: desc 512 KiB at 0, avail 65542 bytes, used 262150 bytes.
      expect(() => makeQueue({ size: 32768, descTable: 0, availRing: 0x80000, usedRing: 0x90008 })).not.toThrow();
      expect(() => makeQueue({ size: 8, descTable: 0x1000, availRing: 0x1080, usedRing: 0x1098 })).not.toThrow();
      expect(() => SplitQueue.validateGeometry(memory, { size: 1, descTable: 0, availRing: 16, usedRing: 24 })).not.toThrow();
    });

    it.each([
      [{ maxChainBytes: 0 }],
      [{ maxChainBytes: 2 ** 32 + 1 }],
      [{ initialLastAvailIdx: 65536 }],
      [{ initialUsedIdx: -1 }],
      [{ initialLastAvailIdx: 9, initialUsedIdx: 0 }],
    ])('rejects bad options %p', (opts) => {
      expectCode(() => makeQueue(opts), 'BAD_OPTION');
    });
  });

  it('survives 2000 rounds of random rings: only VirtqueueErrors, every segment inside RAM', () => {
    // mulberry32: small seeded PRNG, so failures reproduce.
    let seed = 0x5eed1234;
    const rand = (): number => {
      seed = (seed + 0x6d2b79f5) | 0;
      let t = seed;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
    };
    const randInt = (n: number): number => Math.floor(rand() * n);
    const randU64 = (): bigint => (BigInt(randInt(2 ** 32)) << 32n) | BigInt(randInt(2 ** 32));
    const randomBytes = (gpa: number, len: number): void => {
      for (let i = 0; i < len; i++) memory.writeU8(gpa + i, randInt(256));
    };
    const TABLES = 0x8000; // where plausible indirect tables live
    const randomDesc = (table: number, i: number, entries: number): void => {
      const at = table + 16 * i;
      const a = randInt(10);
      const addr =
        a < 5 ? BigInt(randInt(RAM + 0x2000)) : a < 7 ? BigInt(TABLES + 16 * randInt(64)) : a < 8 ? randU64() : (1n << 64n) - BigInt(randInt(0x100));
      const l = randInt(8);
      const len = l < 2 ? 0 : l < 5 ? randInt(0x3000) : l < 7 ? 16 * randInt(40) : randInt(2 ** 32);
      memory.writeU64(at, addr);
      memory.writeU32(at + 8, len);
      const flags = (rand() < 0.5 ? F_NEXT : 0) | (rand() < 0.5 ? F_WRITE : 0) | (rand() < 0.15 ? F_INDIRECT : 0);
      memory.writeU16(at + 12, rand() < 0.95 ? flags : randInt(0x10000));
      memory.writeU16(at + 14, rand() < 0.9 ? randInt(entries + 2) : randInt(0x10000));
    };

    const codes = new Map<string, number>();
    let chainsSeen = 0;
    for (let iter = 0; iter < 2000; iter++) {
      const size = 1 << randInt(9); // 1..256: fits the 4 KiB gap at DESC
      const q = makeQueue({
        size,
        eventIdx: rand() < 0.5,
        indirect: rand() < 0.7,
        maxChainBytes: rand() < 0.5 ? 1 << 20 : 1 + randInt(0x4000),
      });
      if (rand() < 0.3) {
        randomBytes(DESC, 16 * size);
        randomBytes(AVAIL, 6 + 2 * size);
        randomBytes(TABLES, 0x400);
      } else {
        for (let i = 0; i < size; i++) randomDesc(DESC, i, size);
        for (let i = 0; i < 64; i++) randomDesc(TABLES, i, 64);
        memory.writeU16(AVAIL, randInt(4));
        memory.writeU16(AVAIL + 2, rand() < 0.95 ? randInt(size + 1) : randInt(0x10000));
        for (let i = 0; i < size; i++) memory.writeU16(AVAIL + 4 + 2 * i, rand() < 0.9 ? randInt(size + 1) : randInt(0x10000));
        memory.writeU16(AVAIL + 4 + 2 * size, randInt(0x10000));
      }
      try {
        for (let n = 0; n < size + 2; n++) {
          const chain = q.popAvailable();
          if (!chain) break;
          chainsSeen++;
          let r = 0;
          let w = 0;
          for (const s of chain.readable) {
            expect(s.length).toBeGreaterThan(0);
            expect(memory.contains(s.gpa, s.length)).toBe(true);
            r += s.length;
          }
          for (const s of chain.writable) {
            expect(s.length).toBeGreaterThan(0);
            expect(memory.contains(s.gpa, s.length)).toBe(true);
            w += s.length;
          }
          expect([r, w]).toEqual([chain.readableBytes, chain.writableBytes]);
          expect(r + w).toBeLessThanOrEqual(q.maxChainBytes);
          expect(chain.head).toBeLessThan(size);
          expect(q.readChain(chain, 256).length).toBe(Math.min(256, r));
          // Writing may scribble over the rings themselves: the guest's problem, not ours.
          const written = q.writeChain(chain, new Uint8Array(Math.min(w, 64)).fill(0xa5));
          q.pushUsed(chain.head, written);
        }
        q.needsNotification();
        q.setNotificationSuppression(rand() < 0.5);
      } catch (err) {
        if (!(err instanceof VirtqueueError)) throw err;
        codes.set(err.code, (codes.get(err.code) ?? 0) + 1);
      }
    }
    expect(chainsSeen).toBeGreaterThan(100);
    expect(codes.size).toBeGreaterThanOrEqual(10);
  });
});
