// The virtio I/O thread (issue 4: "ioeventfd for queue notifications and
// irqfd for interrupts ... so the I/O path does not go through the exit
// loop"): the state the vCPU thread and the I/O thread share
// (shared-state.ts), the I/O thread's queue server (queue-server.ts) with a
// driver written here, and on the real /dev/kvm a guest whose notifications
// reach the I/O thread without exits.
//
// Split-queue layouts (virtio 1.2 §2.7): descriptor 16 bytes (addr u64, len
// u32, flags u16, next u16), available ring (flags u16, idx u16, ring u16[]),
// used ring (flags u16, idx u16, elements {id u32, len u32}).
import * as fs from 'fs';
import * as path from 'path';
import { GuestMemory } from '../src/memory/guest-memory';
import { VirtioSharedState } from '../src/virtio/shared-state';
import { QueueServer } from '../src/virtio/queue-server';
import { VirtioRng } from '../src/virtio/virtio-rng';
import { patternImage, runHostileGuest, tempDir } from './hostile/virtio-harness';

const VERSION_1 = 1n << 32n;
const DESC = 0x1000;
const AVAIL = 0x2000;
const USED = 0x3000;
const BUF = 0x8000;
const QUEUE_SIZE = 8;
const F_WRITE = 2;

describe('VirtioSharedState', () => {
  test('the first ISR bits assert the line; more bits do not; the read clears them', () => {
    const s = new VirtioSharedState();
    expect(s.raiseIsr(1)).toBe(true);
    expect(s.raiseIsr(2)).toBe(false);
    expect(s.raiseIsr(1)).toBe(false);
    expect(s.isr).toBe(3);
    expect(s.takeIsr()).toBe(3);
    expect(s.isr).toBe(0);
    expect(s.raiseIsr(2)).toBe(true);
    expect(s.counts).toMatchObject({ usedInterrupts: 2, configInterrupts: 2 });
  });

  test('DEVICE_NEEDS_RESET: one episode per reset, every error counted; a reset clears ISR, NEEDS_RESET and FAILED but not the counters', () => {
    const s = new VirtioSharedState();
    expect(s.setNeedsReset()).toBe(true);
    expect(s.setNeedsReset()).toBe(false);
    s.setDriverFailed();
    s.raiseIsr(2);
    expect([s.needsReset, s.driverFailed]).toEqual([true, true]);
    s.reset();
    expect([s.needsReset, s.driverFailed, s.isr]).toEqual([false, false, 0]);
    expect(s.setNeedsReset()).toBe(true);
    expect(s.counts).toMatchObject({ errors: 3, needsReset: 2 });
  });

  test('two views of one buffer (two threads) see each other; a short buffer is refused', () => {
    const a = new VirtioSharedState();
    const b = new VirtioSharedState(a.buffer);
    a.raiseIsr(1);
    b.intxDisabled = true;
    expect(b.takeIsr()).toBe(1);
    expect(a.isr).toBe(0);
    expect(a.intxDisabled).toBe(true);
    expect(() => new VirtioSharedState(new SharedArrayBuffer(8))).toThrow(RangeError);
  });
});

describe('QueueServer (the I/O thread side of a device)', () => {
  let memory: GuestMemory;
  let shared: VirtioSharedState;
  let asserted: number;
  let logs: string[];
  let server: QueueServer;
  let availIdx: number;
  const geometry = [{ index: 0, size: QUEUE_SIZE, descTable: DESC, availRing: AVAIL, usedRing: USED }];

  beforeEach(() => {
    memory = GuestMemory.allocate([{ gpa: 0, size: 1 << 16 }]);
    shared = new VirtioSharedState();
    asserted = 0;
    logs = [];
    availIdx = 0;
    server = new QueueServer({ name: 'rng', memory, model: new VirtioRng(), shared, assertLine: () => asserted++, log: (m) => logs.push(m) });
  });
  afterEach(() => memory.close());

  /** Makes descriptor `head` (one writable buffer at `addr`, `len` bytes) available. */
  function post(head: number, addr: number, len: number): void {
    const d = DESC + 16 * head;
    memory.writeU64(d, BigInt(addr));
    memory.writeU32(d + 8, len);
    memory.writeU16(d + 12, F_WRITE);
    memory.writeU16(d + 14, 0);
    memory.writeU16(AVAIL + 4 + 2 * (availIdx % QUEUE_SIZE), head);
    availIdx = (availIdx + 1) & 0xffff;
    memory.writeU16(AVAIL + 2, availIdx);
  }
  const usedIdx = (): number => memory.readU16(USED + 2);

  test('serves what was made available before DRIVER_OK at start(), and each notification after; ISR and the irqfd follow', () => {
    post(0, BUF, 16);
    expect(server.notify(0)).toBe(false); // not started: ignored
    server.start(VERSION_1, geometry);
    expect(usedIdx()).toBe(1);
    expect(memory.readU32(USED + 4 + 4)).toBe(16); // used.len: 16 random bytes
    expect([shared.isr, asserted]).toEqual([1, 1]);
    post(1, BUF + 16, 8);
    expect(server.notify(0)).toBe(true);
    expect(usedIdx()).toBe(2);
    expect(asserted).toBe(1); // the ISR was not read: the line is still up
    // The EOI: KVM lowered the line and signals the resample fd; the ISR still has a bit.
    server.resample();
    expect(asserted).toBe(2);
    shared.takeIsr(); // the guest's ISR read
    server.resample();
    expect(asserted).toBe(2);
    expect(shared.counts.notifications).toBe(2);
  });

  test('a hostile chain puts the device in DEVICE_NEEDS_RESET once, with a configuration interrupt; later notifications are ignored until stop()', () => {
    server.start(VERSION_1, geometry);
    post(0, 0xfff8, 64); // runs past the end of RAM
    expect(server.notify(0)).toBe(true);
    expect(shared.needsReset).toBe(true);
    expect(shared.isr & 2).toBe(2);
    expect(asserted).toBe(1);
    expect(logs).toEqual([expect.stringMatching(/^rng: queue 0: guest error: BUFFER_OUTSIDE_RAM: .*device needs reset$/)]);
    post(1, BUF, 8);
    expect(server.notify(0)).toBe(false);
    expect(usedIdx()).toBe(0);
    expect(shared.counts.errors).toBe(1);
    // The driver resets (the transport clears the shared state, then the server stops) and starts again.
    shared.reset();
    server.stop();
    expect(server.notify(0)).toBe(false);
    for (let i = 0; i < 4; i++) memory.writeU16(USED + 2 * i, 0);
    availIdx = 0;
    memory.writeU16(AVAIL + 2, 0);
    server.start(VERSION_1, geometry);
    post(0, BUF, 8);
    expect(server.notify(0)).toBe(true);
    expect(usedIdx()).toBe(1);
  });

  test('FAILED stops service; Interrupt-Disable keeps the line down', () => {
    server.start(VERSION_1, geometry);
    shared.intxDisabled = true;
    post(0, BUF, 8);
    server.notify(0);
    expect([usedIdx(), shared.isr, asserted]).toEqual([1, 1, 0]);
    server.resample();
    expect(asserted).toBe(0);
    shared.setDriverFailed();
    post(1, BUF, 8);
    expect(server.notify(0)).toBe(false);
    expect(usedIdx()).toBe(1);
  });

  test('queues the transport did not enable do not exist here', () => {
    server.start(VERSION_1, []);
    expect(server.notify(0)).toBe(false);
    expect(server.notify(7)).toBe(false);
  });
});

describe('on /dev/kvm: the guest notifies without exits', () => {
  let dir: string;
  beforeAll(() => (dir = tempDir('tskvm-io-thread-')));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  // The hostile-driver guest (test/hostile/guests) makes the same accesses in
  // both runs; with the I/O thread its 16-bit notify writes go to ioeventfds.
  function run(ioThread: boolean): { mmioExits: number; blkAccesses: number; io?: Record<string, number>; disk: Buffer } {
    const image = path.join(dir, `disk-${ioThread}.img`);
    patternImage(image, 64);
    let result: { mmioExits: number; blkAccesses: number; io?: Record<string, number> } | undefined;
    const guest = runHostileGuest(
      'virtio-attacks',
      { disks: [{ path: image }, { path: image, readOnly: true }], rng: true, console: 'virtio', ioThread },
      {
        inspect: (machine) => {
          const s = machine.statistics();
          result = { mmioExits: s.exits['mmio-write'] ?? 0, blkAccesses: s.devices['virtio-blk0.bar4'] ?? 0, io: s.ioThread };
        },
      },
    );
    expect(guest.done).toBe(true);
    return { ...result!, disk: fs.readFileSync(image) };
  }

  test('with the I/O thread the notifications are served without MMIO exits, with the same result on the disk', () => {
    const inline = run(false);
    const offloaded = run(true);
    const served = offloaded.io!['virtio-blk0 notifications']!;
    expect(inline.io).toBeUndefined();
    // Served there: one per notify (kick) plus one per DRIVER_OK (buffers made available before it).
    expect(served).toBeGreaterThan(100);
    // The guest's 16-bit blk notify writes (well over 100 kicks) never reached the exit loop.
    const kicksWithoutExit = inline.blkAccesses - offloaded.blkAccesses;
    expect(kicksWithoutExit).toBeGreaterThan(100);
    expect(inline.mmioExits - offloaded.mmioExits).toBeGreaterThanOrEqual(kicksWithoutExit);
    expect(offloaded.io!['virtio-rng notifications']).toBeGreaterThan(0);
    expect(offloaded.disk.equals(inline.disk)).toBe(true);
  });
});
