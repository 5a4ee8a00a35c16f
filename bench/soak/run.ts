// bench/soak: many VMs in one process, over and over (issue 6). Each cycle
// starts VMS async Machines (one vCPU worker each): one runs the port-sweep
// attack guest (test/hostile/guests/misc-port-sweep.bin), the others echo a
// line of console input; the cycle ends when every echo came back, then all
// are stopped. Prints open fds and RSS before and after, and per-cycle time.
//
//   node --expose-gc dist/bench/soak/run.js [cycles=50] [vms=20]
//
// (Build the attack guest first: node scripts/build-examples.js.)
import * as fs from 'fs';
import * as path from 'path';
import { Machine } from '../exits/api';

const ATTACK = path.join(__dirname, '..', '..', '..', 'test', 'hostile', 'guests', 'misc-port-sweep.bin');
// 16-bit: echoes COM1 input to COM1 until it reads 'q' (as in test/machine.test.ts).
const ECHO = Uint8Array.of(0xba, 0xfd, 0x03, 0xec, 0xa8, 0x01, 0x74, 0xfb, 0xba, 0xf8, 0x03, 0xec, 0x3c, 0x71, 0x74, 0x03, 0xee, 0xeb, 0xed, 0xf4);

const openFds = (): number => fs.readdirSync('/proc/self/fd').length;
const rssMiB = (): number => process.memoryUsage().rss / 2 ** 20;
/** The main thread's JS heap and live ArrayBuffers: growth here would be ours; growth only in RSS is native. */
const heapMiB = (): string => {
  const m = process.memoryUsage();
  return `heap ${(m.heapUsed / 2 ** 20).toFixed(1)} MiB, array buffers ${(m.arrayBuffers / 2 ** 20).toFixed(1)} MiB`;
};
const settle = async (): Promise<void> => {
  await new Promise((r) => setTimeout(r, 300)); // worker threads finish exiting
  (global as { gc?: () => void }).gc?.();
};

async function echoRoundTrip(machine: Machine, line: string): Promise<void> {
  let text = '';
  machine.on('output', (d) => (text += d.toString('latin1')));
  await machine.sendInput(line);
  const deadline = Date.now() + 120_000;
  while (!text.includes(line)) {
    if (Date.now() > deadline) throw new Error(`an echo VM did not answer within 120 s`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function cycle(vms: number, attack: Uint8Array, n: number): Promise<void> {
  const attacker = new Machine({ memory: '4M', boot: { kind: 'binary', file: attack, mode: 'long' } });
  const echoes = Array.from({ length: vms - 1 }, () => new Machine({ memory: '1M', boot: { kind: 'binary', file: ECHO, mode: 'real' } }));
  try {
    await Promise.all([attacker.start(), ...echoes.map((m) => m.start())]);
    await Promise.all(echoes.map((m, i) => echoRoundTrip(m, `cycle ${n} vm ${i}\n`)));
  } finally {
    await Promise.all([attacker.stop(), ...echoes.map((m) => m.stop())]);
  }
}

async function main(): Promise<void> {
  const cycles = Number(process.argv[2] ?? 50);
  const vms = Number(process.argv[3] ?? 20);
  if (!fs.existsSync(ATTACK)) throw new Error(`${ATTACK} is missing: run node scripts/build-examples.js`);
  const attack = fs.readFileSync(ATTACK);

  await cycle(vms, attack, 0); // warm-up: worker machinery, JIT
  await settle();
  const fd0 = openFds();
  const rss0 = rssMiB();
  const heap0 = heapMiB();
  const t0 = Date.now();
  for (let i = 1; i <= cycles; i++) {
    await cycle(vms, attack, i);
    if (i % 10 === 0) {
      await settle(); // so that the figures show what stays, not garbage not yet collected
      console.log(`  after ${i} cycles: fds ${openFds()}, RSS ${rssMiB().toFixed(1)} MiB, ${heapMiB()}`);
    }
  }
  await settle();
  const fd1 = openFds();
  const rss1 = rssMiB();
  console.log(`bench/soak (run with --expose-gc for steadier RSS)`);
  console.log(`  main thread before: ${heap0}; after: ${heapMiB()}`);
  console.log(`  ${cycles} cycles of ${vms} VMs (1 port-sweep attacker + ${vms - 1} echo): fds ${fd0} -> ${fd1}, RSS ${rss0.toFixed(1)} -> ${rss1.toFixed(1)} MiB, ${((Date.now() - t0) / cycles).toFixed(0)} ms/cycle`);
}

main().catch((e) => {
  console.error(`bench/soak: ${(e as Error).message}`);
  process.exit(1);
});
