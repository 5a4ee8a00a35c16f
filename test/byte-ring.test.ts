// ByteRing: the shared console ring between the vCPU worker and the main thread.
import * as path from 'path';
import { Worker } from 'worker_threads';
import { ByteRing } from '../src/vmm/byte-ring';

describe('ByteRing', () => {
  test('bytes come out in order across the wrap-around', () => {
    const ring = new ByteRing(16);
    let next = 0;
    let expected = 0;
    for (let round = 0; round < 100; round++) {
      const chunk = Uint8Array.from({ length: (round % 7) + 1 }, () => next++ & 0xff);
      expect(ring.write(chunk)).toBe(chunk.length);
      for (const b of ring.read()) expect(b).toBe(expected++ & 0xff);
    }
    expect(ring.available).toBe(0);
  });

  test('a full ring stores what fits; writeByte and dropExcess count the rest', () => {
    const ring = new ByteRing(16);
    expect(ring.write(new Uint8Array(20).fill(1))).toBe(16);
    expect(ring.dropped).toBe(0);
    ring.writeByte(2);
    expect(ring.write(Uint8Array.of(3, 4), { dropExcess: true })).toBe(0);
    expect(ring.dropped).toBe(3);
    expect(ring.read(4)).toEqual(Uint8Array.of(1, 1, 1, 1));
    expect(ring.space).toBe(4);
  });

  test('rejects capacities that are not powers of two and buffers that are not rings', () => {
    expect(() => new ByteRing(100)).toThrow(RangeError);
    expect(() => new ByteRing(8)).toThrow(RangeError);
    expect(() => new ByteRing(new SharedArrayBuffer(32 + 100))).toThrow(RangeError);
  });

  test('waitForData wakes on a write and on close', async () => {
    const ring = new ByteRing(64);
    const woke = ring.waitForData();
    setTimeout(() => ring.write(Uint8Array.of(42)), 5);
    await woke;
    expect(ring.read()).toEqual(Uint8Array.of(42));
    const closed = ring.waitForData();
    setTimeout(() => ring.close(), 5);
    await closed;
    expect(ring.closed).toBe(true);
  });

  test('waitForSpace wakes when the reader makes room', async () => {
    const ring = new ByteRing(16);
    ring.write(new Uint8Array(16));
    const room = ring.waitForSpace();
    setTimeout(() => ring.read(1), 5);
    await room;
    expect(ring.space).toBe(1);
  });

  test('another thread writing 1 MiB through a 4 KiB ring: every byte arrives in order', async () => {
    const ring = new ByteRing(4096);
    const total = 1 << 20;
    // The writer is the compiled ByteRing (npm test builds dist/ first), run on a worker thread.
    const compiled = path.resolve(__dirname, '../dist/src/vmm/byte-ring.js');
    const source = `
      const { workerData } = require('worker_threads');
      const { ByteRing } = require(${JSON.stringify(compiled)});
      const ring = new ByteRing(workerData.buffer);
      const nap = new Int32Array(new SharedArrayBuffer(4));
      let written = 0;
      while (written < ${total}) {
        if (ring.space === 0) { Atomics.wait(nap, 0, 0, 1); continue; }
        const n = ring.write(Uint8Array.from({ length: Math.min(ring.space, 1000, ${total} - written) }, (_, i) => (written + i) & 0xff));
        written += n;
        if (written % 3 === 0 && written < ${total} && ring.space > 0) { ring.writeByte(written & 0xff); written++; }
      }
      ring.close();
    `;
    const worker = new Worker(source, { eval: true, workerData: { buffer: ring.buffer } });
    let received = 0;
    let ok = true;
    for (;;) {
      await ring.waitForData();
      const chunk = ring.read();
      for (const b of chunk) if (b !== (received++ & 0xff)) ok = false;
      if (chunk.length === 0 && ring.closed) break;
    }
    await worker.terminate();
    expect(ok).toBe(true);
    expect(received).toBe(total);
    expect(ring.dropped).toBe(0);
  });
});

describe('ByteRing records', () => {
  test('records come out whole and in order; a record that does not fit is refused whole', () => {
    const ring = new ByteRing(64);
    expect(ring.writeRecord(new Uint8Array([1, 2, 3]))).toBe(true);
    expect(ring.writeRecord(new Uint8Array(0))).toBe(true);
    expect(ring.writeRecord(new Uint8Array(60))).toBe(false); // 4 + 60 > 64 - 11 used
    expect(ring.available).toBe(11);
    expect(Array.from(ring.readRecord()!)).toEqual([1, 2, 3]);
    expect(ring.readRecord()!.length).toBe(0);
    expect(ring.readRecord()).toBeUndefined();
    // Wrapping around the end of the buffer.
    for (let i = 0; i < 20; i++) {
      expect(ring.writeRecord(new Uint8Array([i, i + 1, i + 2, i + 3, i + 4]))).toBe(true);
      expect(Array.from(ring.readRecord()!)).toEqual([i, i + 1, i + 2, i + 3, i + 4]);
    }
    expect(() => ring.writeRecord(new Uint8Array(61))).toThrow(RangeError);
  });
});
