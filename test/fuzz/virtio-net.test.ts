// Fuzz target: virtio-net header and frame handling (src/virtio/virtio-net.ts)
// behind the PCI transport, with hostile transmit and receive rings and
// host frames of any length.
//
// virtio 1.2 §5.1.6: every packet starts with the 12-byte struct
// virtio_net_hdr (VERSION_1 layout, num_buffers at +10). Transmit: the header
// is ignored (no offloads were offered, §5.1.6.2.2), the frame after it is
// sent if 14..maxFrame bytes and the chain is device-readable only. Receive:
// a zero header with num_buffers = 1 (§5.1.6.4.1) then the frame, one chain
// per frame, never truncated.
import * as fc from 'fast-check';
import type { Segment } from '../../src/virtio/split-queue';
import { VirtioNet } from '../../src/virtio/virtio-net';
import { VirtioPciDevice } from '../../src/virtio/virtio-pci';
import {
  FUZZ_TIMEOUT_MS,
  RawReader,
  RecordingMemory,
  RingDriver,
  STATUS_NEEDS_RESET,
  VIRTIO_RAM,
  arbRingScenario,
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
  type RingLayout,
  type Walk,
} from './fuzz-support';

const TARGET = 'virtio-net';
const RX: RingLayout = { desc: 0x1000, avail: 0x9000, used: 0xa000 };
const TX: RingLayout = { desc: 0x3000, avail: 0xb000, used: 0xc000 };
const RX_INDIRECT = 0x10000;
const TX_INDIRECT = 0x28000;
const QSIZE = 16;
const HDR = 12;
const ETH_HLEN = 14;
const MAX_FRAME = 1518; // the default: mtu 1500 + Ethernet header + one VLAN tag
// Features (§5.1.3, §6): MTU 3, MAC 5, STATUS 16, INDIRECT_DESC 28, EVENT_IDX 29, VERSION_1 32.
const NET_FEATURES = (1n << 3n) | (1n << 5n) | (1n << 16n) | (1n << 32n);
const INDIRECT_DESC = 1n << 28n;
const EVENT_IDX = 1n << 29n;
const MAC = Uint8Array.from([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);

let ram: RecordingMemory;
beforeAll(() => {
  ram = new RecordingMemory([...VIRTIO_RAM]);
});
afterAll(() => ram.close());

type Ok = Extract<Walk, { ok: true }>;

function walkAll(raw: RawReader, layout: RingLayout, availIdx: number, indirect: boolean): { walks: Walk[]; pending: number } {
  const pending = availIdx & 0xffff;
  const walks: Walk[] = [];
  if (pending <= QSIZE)
    for (let k = 0; k < pending; k++) {
      const w = referenceWalk(raw, layout.desc, QSIZE, indirect, 256 * 1024 * 1024, raw.u16(layout.avail + 4 + 2 * (k % QSIZE)));
      walks.push(w);
      if (!w.ok) break;
    }
  return { walks, pending };
}

function overlaps(a: Segment, b: Segment): boolean {
  return a.gpa < b.gpa + b.length && b.gpa < a.gpa + a.length;
}

const arbFrame = fc
  .tuple(
    fc.oneof(
      { weight: 6, arbitrary: fc.integer({ min: 0, max: 1600 }) },
      { weight: 1, arbitrary: fc.constantFrom(13, 14, 1514, 1518, 1519, 65550, 65551, 70000) },
    ),
    fc.nat(255),
  )
  .map(([len, seed]) => Uint8Array.from({ length: len }, (_, i) => (i * 7 + seed) & 0xff));

describe('virtio-net under a hostile driver', () => {
  it(
    'transmit and receive: accesses inside RAM, bounded copies, §5.1.6 headers, DEVICE_NEEDS_RESET on a broken ring',
    () => {
      checkProperty(
        TARGET,
        'tx/rx through the transport',
        fc.property(
          arbRingScenario(8, 4),
          arbRingScenario(8, 4),
          fc.array(arbFrame, { maxLength: 6 }),
          fc.boolean(),
          fc.boolean(),
          (rxScenario, txScenario, frames, indirect, eventIdx) => {
            const memory = ram.memory;
            const raw = new RawReader(memory);
            const sent: Uint8Array[] = [];
            const logs: string[] = [];
            const net = new VirtioNet({ mac: MAC, onTransmit: (f) => sent.push(f) });
            const dev = new VirtioPciDevice({ memory, device: net, irq: () => {}, log: (m) => logs.push(m), indirect, eventIdx });
            const rxDriver = new RingDriver(memory, RX, QSIZE);
            const txDriver = new RingDriver(memory, TX, QSIZE);
            // A device fresh from reset starts at index 0.
            const rxLaid = layOut(rxDriver, { ...rxScenario, startIdx: 0 }, RX_INDIRECT);
            const txLaid = layOut(txDriver, { ...txScenario, startIdx: 0 }, TX_INDIRECT);
            const rx = walkAll(raw, RX, rxLaid.availIdx, indirect);
            const tx = walkAll(raw, TX, txLaid.availIdx, indirect);
            const txOk = tx.walks.filter((w): w is Ok => w.ok);
            const rxOk = rx.walks.filter((w): w is Ok => w.ok);
            const txBroken = tx.pending > QSIZE || txOk.length < tx.walks.length;
            // What §5.1.6.2 says goes out: device-readable chains with a 14..maxFrame-byte frame after the header.
            const expectedFrames = txOk
              .filter((w) => totalLength(w.writable) === 0 && totalLength(w.readable) - HDR >= ETH_HLEN && totalLength(w.readable) - HDR <= MAX_FRAME)
              .map((w) => gather(raw, w.readable, totalLength(w.readable)).subarray(HDR));
            // Hide the transmit ring until the hook below is in place.
            memory.writeU16(TX.avail + 2, 0);
            const features = NET_FEATURES | (indirect ? INDIRECT_DESC : 0n) | (eventIdx ? EVENT_IDX : 0n);
            let largestAlloc = (): number => 0;
            const results: boolean[] = [];
            ram.record(() => {
              bringUp(dev, features, [
                { index: 0, size: QSIZE, layout: RX },
                { index: 1, size: QSIZE, layout: TX },
              ]);
              const txQueue = dev.queue(1);
              if (txQueue) largestAlloc = trackLargestReadChain(txQueue);
              ram.unrecorded(() => memory.writeU16(TX.avail + 2, txLaid.availIdx));
              notifyQueue(dev, 1);
              for (const f of frames) results.push(net.receive(f));
              notifyQueue(dev, 0);
            });

            expect(ram.violations).toEqual([]);
            expect(logs.filter(isModelBug)).toEqual([]);
            const allowed = [rxDriver.usedArea(), txDriver.usedArea(), ...rxOk.flatMap((w) => w.writable)];
            for (const w of ram.writes())
              if (!within(w.gpa, w.length, allowed)) throw new Error(`device wrote ${w.length} bytes at 0x${w.gpa.toString(16)}`);
            // (c) one frame at most per copy, whatever the chain describes.
            expect(largestAlloc()).toBeLessThanOrEqual(MAX_FRAME);
            expect(ram.largestRead).toBeLessThanOrEqual(MAX_FRAME);

            // Transmit: exactly the well-formed frames, header stripped; every chain consumed or the device broken.
            const needsReset = (deviceStatus(dev) & STATUS_NEEDS_RESET) !== 0;
            if (txBroken) expect(needsReset).toBe(true);
            expect(sent.map((f) => Buffer.from(f).toString('hex'))).toEqual(expectedFrames.map((f) => Buffer.from(f).toString('hex')));
            expect(txDriver.usedIdx()).toBe(txOk.length);
            for (let i = 0; i < txOk.length; i++) expect(txDriver.usedElem(i).len).toBe(0);

            // Receive: each accepted frame used one chain with a zero header, num_buffers 1, and the whole frame.
            const accepted = results.filter(Boolean).length;
            const rxUsed = rxDriver.usedIdx();
            expect(accepted).toBeLessThanOrEqual(rxUsed);
            if (needsReset) expect(results.every((r) => !r) || !txBroken).toBe(true);
            let chain = 0;
            results.forEach((acceptedFrame, i) => {
              const f = frames[i];
              if (!acceptedFrame) return;
              // Find the used element that carried it: the next one with length 12 + frame length.
              while (chain < rxUsed && rxDriver.usedElem(chain).len !== HDR + f.length) chain++;
              expect(chain).toBeLessThan(rxUsed);
              expect(f.length).toBeGreaterThanOrEqual(ETH_HLEN);
              expect(f.length).toBeLessThanOrEqual(MAX_FRAME);
              chain++;
            });
            // Every used element is 0 (dropped, never truncated) or a whole frame with its header.
            for (let i = 0; i < rxUsed; i++) {
              const len = rxDriver.usedElem(i).len;
              expect(len === 0 || (len >= HDR + ETH_HLEN && len <= HDR + MAX_FRAME && len <= totalLength(rxOk[i].writable))).toBe(true);
              const mine = rxOk[i].writable;
              const isolated = !rxOk.some((w, j) => j !== i && [...w.readable, ...w.writable].some((o) => mine.some((m) => overlaps(m, o))));
              if (len > 0 && isolated) {
                // §5.1.6.4.1: no offload, so flags/gso fields 0, and num_buffers = 1.
                expect(Array.from(gather(raw, mine, HDR))).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
              }
            }
          },
        ),
        150,
      );
    },
    FUZZ_TIMEOUT_MS,
  );
});
