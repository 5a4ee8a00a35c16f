// Fuzz target: the split virtqueue (src/virtio/split-queue.ts) over hostile
// descriptor tables, indirect tables and avail/used rings.
//
// The test plays a hostile driver (fuzz-support.ts lays out chains, then
// overwrites fields at random: loops, next out of range, huge lengths,
// wrapping addresses, indirect tables with bad sizes, avail.idx jumps) and a
// well-behaved device (pop, copy a bounded amount in and out, push used).
// A reference walker written from virtio 1.2 §2.7.5-§2.7.6 decides, for each
// pop, whether the chain at the ring slot is well formed and what buffers it
// describes; SplitQueue must agree exactly.
import * as fc from 'fast-check';
import { SplitQueue, VirtqueueError, type Chain, type Segment } from '../../src/virtio/split-queue';
import {
  FUZZ_TIMEOUT_MS,
  RawReader,
  RecordingMemory,
  RingDriver,
  VIRTIO_RAM,
  arbRingScenario,
  checkProperty,
  layOut,
  referenceWalk,
  within,
  type RingLayout,
  type Walk,
} from './fuzz-support';

const TARGET = 'split-queue';
const LAYOUT: RingLayout = { desc: 0x1000, avail: 0x9000, used: 0xa000 };
/** The most bytes the device copies out of / into one chain (a device always bounds its copies). */
const COPY_CAP = 4096;

let ram: RecordingMemory;
beforeAll(() => {
  ram = new RecordingMemory([...VIRTIO_RAM]);
});
afterAll(() => ram.close());

// ---- properties ------------------------------------------------------------------

const arbQueue = fc.record({
  size: fc.constantFrom(1, 2, 4, 8, 16, 64, 256),
  eventIdx: fc.boolean(),
  indirect: fc.oneof({ weight: 3, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
  maxChainBytes: fc.constantFrom(undefined, 4096, 0x10000, 2 ** 32),
  suppressEvery: fc.integer({ min: 0, max: 4 }),
});

describe('split virtqueue under a hostile driver', () => {
  it(
    'pops exactly the well-formed chains, stays inside guest RAM and the used ring, and breaks cleanly',
    () => {
      checkProperty(
        TARGET,
        'pop/push vs reference walker',
        fc.property(arbQueue, arbRingScenario(12, 6), (q, scenario) => {
          const memory = ram.memory;
          const raw = new RawReader(memory);
          const driver = new RingDriver(memory, LAYOUT, q.size);
          const laid = layOut(driver, scenario);
          const queue = new SplitQueue({
            memory,
            size: q.size,
            descTable: LAYOUT.desc,
            availRing: LAYOUT.avail,
            usedRing: LAYOUT.used,
            eventIdx: q.eventIdx,
            indirect: q.indirect,
            maxChainBytes: q.maxChainBytes,
            initialLastAvailIdx: scenario.startIdx,
            initialUsedIdx: scenario.startIdx,
          });
          const pending = (laid.availIdx - scenario.startIdx) & 0xffff;
          const popped: { head: number; written: number; chain: Chain }[] = [];
          const allowedWrites = [driver.usedArea()];
          let thrown: unknown;
          ram.record(() => {
            try {
              for (let k = 0; k <= q.size + 1; k++) {
                // What the reference expects of this pop, from memory as it is now.
                let expected: Walk | 'none' | 'jump';
                if (pending > q.size) expected = 'jump';
                else if (k >= pending) expected = 'none';
                else {
                  const head = raw.u16(LAYOUT.avail + 4 + 2 * ((scenario.startIdx + k) % q.size));
                  expected = referenceWalk(raw, LAYOUT.desc, q.size, q.indirect, q.maxChainBytes ?? 256 * 1024 * 1024, head);
                }
                let chain: Chain | undefined;
                try {
                  chain = queue.popAvailable();
                } catch (err) {
                  if (expected === 'none' || (typeof expected === 'object' && expected.ok))
                    throw new Error(`pop ${k} threw ${String(err)} but the reference accepts it`);
                  throw err;
                }
                if (expected === 'jump') throw new Error(`avail.idx jumped by ${pending} > ${q.size} but pop did not throw`);
                if (expected === 'none') {
                  expect(chain).toBeUndefined();
                  break;
                }
                if (!expected.ok) throw new Error(`pop ${k} accepted a chain the reference rejects (${expected.why})`);
                expect(chain).toBeDefined();
                const c = chain!;
                expect(c.readable).toEqual(expected.readable);
                expect(c.writable).toEqual(expected.writable);
                expect(c.readableBytes).toBe(sum(c.readable));
                expect(c.writableBytes).toBe(sum(c.writable));
                allowedWrites.push(...c.writable);
                // The device copies a bounded amount each way, then returns the chain.
                const copy = queue.readChain(c, Math.min(c.readableBytes, COPY_CAP));
                expect(copy.length).toBe(Math.min(c.readableBytes, COPY_CAP));
                const reply = new Uint8Array(Math.min(c.writableBytes, COPY_CAP)).fill(0xa5);
                const written = queue.writeChain(c, reply);
                expect(written).toBe(reply.length);
                queue.pushUsed(c.head, written);
                popped.push({ head: c.head, written, chain: c });
                queue.needsNotification();
                if (q.suppressEvery && k % q.suppressEvery === 0) {
                  queue.setNotificationSuppression(true);
                  queue.setNotificationSuppression(false);
                }
              }
            } catch (err) {
              thrown = err;
            }
          });

          // (a) nothing outside RAM; the device wrote only the used ring and writable buffers.
          expect(ram.violations).toEqual([]);
          for (const w of ram.writes())
            if (!within(w.gpa, w.length, allowedWrites)) throw new Error(`device wrote ${w.length} bytes at 0x${w.gpa.toString(16)}`);
          // (c) per request the host copied at most COPY_CAP each way plus ring metadata.
          expect(ram.largestRead).toBeLessThanOrEqual(COPY_CAP);

          // (b) only VirtqueueError, and it breaks the queue for good (until reset).
          if (thrown !== undefined) {
            if (!(thrown instanceof VirtqueueError)) throw thrown;
            expect(queue.broken).toBe(thrown);
            expect(() => queue.popAvailable()).toThrow(VirtqueueError);
            expect(() => queue.pushUsed(0, 0)).toThrow(/needs a reset/);
          }
          // Semantic: used.idx moved by exactly the chains consumed, each element names its head.
          expect(driver.usedIdx()).toBe((scenario.startIdx + popped.length) & 0xffff);
          expect(popped.length).toBeLessThanOrEqual(Math.min(pending, q.size));
          popped.forEach((p, i) => expect(driver.usedElem(scenario.startIdx + i)).toEqual({ id: p.head, len: p.written }));
          expect(queue.inFlight).toBe(0);
          // After a reset the queue works again on a clean ring.
          queue.reset();
          driver.clear();
          driver.memory.writeU16(LAYOUT.avail + 2, scenario.startIdx);
          driver.memory.writeU16(LAYOUT.used + 2, scenario.startIdx);
          expect(queue.popAvailable()).toBeUndefined();
        }),
        200,
      );
    },
    FUZZ_TIMEOUT_MS,
  );

  it(
    'accepts only valid geometry, and only with VirtqueueError',
    () => {
      const addr = fc.oneof(
        fc.integer({ min: 0, max: 0x260000 }),
        fc.constantFrom(-1, -16, 0.5, NaN, Infinity, 2 ** 53, 2 ** 64, 0x7fff0, 0xfff00, 0x23ff00),
      );
      checkProperty(
        TARGET,
        'geometry',
        fc.property(
          fc.oneof(fc.constantFrom(0, 1, 3, 256, 32768, 65536, -2, 1.5), fc.integer({ min: 0, max: 70000 })),
          addr,
          addr,
          addr,
          (size, descTable, availRing, usedRing) => {
            let queue: SplitQueue | undefined;
            ram.record(() => {
              try {
                queue = new SplitQueue({ memory: ram.memory, size, descTable, availRing, usedRing, eventIdx: true, indirect: true });
              } catch (err) {
                if (!(err instanceof VirtqueueError)) throw err;
              }
            });
            expect(ram.violations).toEqual([]);
            if (!queue) return;
            // Accepted: a power of two, each area aligned, inside one region, no overlap (§2.7, §2.7.1).
            expect(size & (size - 1)).toBe(0);
            const areas = [
              { gpa: descTable, length: 16 * size, align: 16 },
              { gpa: availRing, length: 6 + 2 * size, align: 2 },
              { gpa: usedRing, length: 6 + 8 * size, align: 4 },
            ];
            for (const a of areas) {
              expect(a.gpa % a.align).toBe(0);
              expect(ram.memory.contains(a.gpa, a.length)).toBe(true);
            }
            for (let i = 0; i < 3; i++)
              for (let j = i + 1; j < 3; j++)
                expect(areas[i].gpa < areas[j].gpa + areas[j].length && areas[j].gpa < areas[i].gpa + areas[i].length).toBe(false);
            // Whatever the rings hold, popping stays in RAM and throws only VirtqueueError.
            ram.record(() => {
              try {
                for (let k = 0; k < 4 && queue!.popAvailable(); k++);
              } catch (err) {
                if (!(err instanceof VirtqueueError)) throw err;
              }
            });
            expect(ram.violations).toEqual([]);
          },
        ),
        500,
      );
    },
    FUZZ_TIMEOUT_MS,
  );
});

function sum(segments: readonly Segment[]): number {
  return segments.reduce((n, s) => n + s.length, 0);
}
