// Host faults on the console (issue 6): a reader that stops reading never
// holds up the vCPU and every lost byte is counted and reported; a flood of
// console input keeps the VMM's memory bounded.
import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { Machine } from '../../src';
import { CLI, ROOT } from '../helpers/paths';
import { hostileGuest } from './misc-helpers';

/** What misc-flood.bin prints as built (32 chunks; see the guest). */
const FLOOD_CHUNKS = 32;
const FLOOD_BYTES =
  FLOOD_CHUNKS * (16384 + '\nchunk '.length + 16 + 1) + 'flood done\n'.length + 'still alive (debugcon)\n'.length + 'still alive (serial)\n'.length;

it('CLI: stdout that nobody reads does not stop the guest; dropped bytes are counted and reported', async () => {
  const child = spawn(process.execPath, [CLI, 'run-binary', hostileGuest('misc-flood'), '--mode', 'long', '--mem', '4M'], { stdio: ['ignore', 'pipe', 'pipe'] });
  // stdout is never read while the guest runs (no 'data' listener: the stream stays paused).
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  let received = 0;
  const code = await new Promise<number | null>((resolve, reject) => {
    const timer = setTimeout(() => (child.kill('SIGKILL'), reject(new Error('tskvm hung on a full stdout'))), 90_000);
    child.on('exit', (c) => {
      clearTimeout(timer);
      // Only now read what the pipe kept.
      child.stdout.on('data', (d: Buffer) => (received += d.length));
      child.stdout.on('end', () => resolve(c));
    });
  });
  expect(code).toBe(0);
  const m = /tskvm: (\d+) bytes of console output were dropped: stdout was not being read/.exec(stderr);
  expect(m).not.toBeNull();
  const dropped = Number(m![1]);
  expect(dropped).toBeGreaterThan(0);
  // Nothing lost silently: every byte the guest wrote was either delivered or counted.
  expect(received + dropped).toBe(FLOOD_BYTES);
}, 120_000);

it('async Machine: a main thread that stops draining the console does not stop the vCPU; drops are counted', async () => {
  const image = Buffer.from(fs.readFileSync(hostileGuest('misc-flood')));
  image.writeBigUInt64LE(0n, 2); // CHUNKS = 0: forever
  const machine = new Machine({ memory: '4M', outputBufferSize: 1 << 14, boot: { kind: 'binary', file: image, mode: 'long' } });
  let text = '';
  machine.on('output', (d) => (text = (text + d.toString('latin1')).slice(-4096)));
  const lastChunk = (): number => {
    const all = [...text.matchAll(/chunk ([0-9a-f]{16})\n/g)];
    return all.length ? parseInt(all[all.length - 1]![1]!, 16) : 0;
  };
  const until = async (condition: () => boolean, ms: number): Promise<void> => {
    const deadline = Date.now() + ms;
    while (!condition()) {
      if (Date.now() > deadline) throw new Error(`timed out; console tail: ${text.slice(-200)}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  try {
    await machine.start();
    await until(() => lastChunk() >= 1, 30_000);
    const before = lastChunk();
    const statsBefore = await machine.readStatistics();
    // The consumer stalls: this thread does nothing for 1.5 s (the ring holds 16 KiB, about 0.15 s of this guest).
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1500);
    await until(() => lastChunk() > before + 1, 30_000);
    const stats = await machine.readStatistics();
    expect(stats!.consoleDropped).toBeGreaterThan(statsBefore!.consoleDropped);
    // The vCPU kept going: more than a chunk's worth of exits happened while we were not reading.
    expect(stats!.exits['io-out']).toBeGreaterThan(statsBefore!.exits['io-out']! + 16384);
  } finally {
    await machine.stop();
  }
  expect(machine.statistics!.consoleDropped).toBeGreaterThan(0);
}, 90_000);

it('100 MB pushed at the serial console without waiting: memory stays bounded, the excess is counted', () => {
  // In a child process, so its RSS is the VMM's alone (main thread + vCPU worker).
  const script = `
    const { Machine } = require(${JSON.stringify(path.join(ROOT, 'dist', 'src'))});
    // 16-bit: 1: mov $0x3fd,%dx; 2: in (%dx),%al; test $1,%al; jz 2b; mov $0x3f8,%dx; in (%dx),%al; jmp 1b
    // (reads COM1 as fast as it can and throws the bytes away)
    const SINK = Uint8Array.of(0xba, 0xfd, 0x03, 0xec, 0xa8, 0x01, 0x74, 0xfb, 0xba, 0xf8, 0x03, 0xec, 0xeb, 0xf2);
    const rss = () => process.memoryUsage().rss / 1048576;
    // Live ArrayBuffer memory (the input chunks): what this process still holds, without the allocator's slack.
    const buffers = () => process.memoryUsage().arrayBuffers / 1048576;
    (async () => {
      const m = new Machine({ memory: '1M', boot: { kind: 'binary', file: SINK, mode: 'real' } });
      await m.start();
      global.gc(); const before = rss(); const buffersBefore = buffers();
      let sent = 0;
      for (let i = 0; i < 100; i++) { void m.sendInput(Buffer.alloc(1 << 20, 0x41 + (i % 26))); sent += 1 << 20; }
      await new Promise((r) => setTimeout(r, 500));
      global.gc(); const after = rss(); const buffersAfter = buffers();
      const stats = await m.readStatistics();
      await m.stop();
      console.log(JSON.stringify({ sent, before, after, buffersBefore, buffersAfter, inputDropped: m.inputDropped, uartBytes: stats.devices.serial8250 }));
    })();`;
  const r = spawnSync(process.execPath, ['--expose-gc', '-e', script], { encoding: 'utf8', timeout: 60_000 });
  expect(r.status).toBe(0);
  const result = JSON.parse(r.stdout.trim().split('\n').pop()!) as {
    sent: number;
    before: number;
    after: number;
    buffersBefore: number;
    buffersAfter: number;
    inputDropped: number;
    uartBytes: number;
  };
  process.stdout.write(
    `100 MB console input: RSS ${result.before.toFixed(1)} -> ${result.after.toFixed(1)} MiB, live buffers ${result.buffersBefore.toFixed(1)} -> ${result.buffersAfter.toFixed(1)} MiB; ${result.inputDropped} bytes dropped\n`,
  );
  expect(result.sent).toBe(100 * 2 ** 20);
  // At most the 1 MiB queue + the 64 KiB ring are kept; the rest is dropped and counted.
  expect(result.inputDropped).toBeGreaterThanOrEqual(result.sent - (1 << 20) - (1 << 16));
  // Held: at most the queue (1 MiB, within the first 1 MiB chunk) and the ring. Without the cap
  // the queue held all 100 MiB. RSS also carries the allocator's slack from the freed chunks.
  expect(result.buffersAfter - result.buffersBefore).toBeLessThan(8);
  expect(result.after - result.before).toBeLessThan(100);
  expect(result.uartBytes).toBeGreaterThan(0); // the guest was reading all along
}, 90_000);
