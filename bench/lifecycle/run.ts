// bench/lifecycle: create and destroy small VMs many times and print open
// file descriptors and RSS before and after, to show nothing leaks.
//
//   node dist/bench/lifecycle/run.js [syncCycles=1000] [workerCycles=100]
//
// Sync cycles: SyncMachine.create → load a guest → run to HLT → close.
// Worker cycles: new Machine → start (vCPU worker thread) → guest halts → wait.
import * as fs from 'fs';
import * as path from 'path';
import { Machine, SyncMachine } from '../exits/api';

const GUEST = path.join(__dirname, '..', '..', '..', 'examples', '01-real-mode-hello', 'guest.bin');

function openFds(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

function rssMiB(): number {
  return process.memoryUsage().rss / (1024 * 1024);
}

function settle(): void {
  (global as { gc?: () => void }).gc?.();
}

async function main(): Promise<void> {
  const syncCycles = Number(process.argv[2] ?? 1000);
  const workerCycles = Number(process.argv[3] ?? 100);
  const guest = fs.readFileSync(GUEST);

  const runSyncCycle = (): void => {
    const m = SyncMachine.create({ memory: '1M' });
    try {
      m.loadBinary(guest, 0x8000);
      m.setMode('real', { entry: 0x8000 });
      m.runSync();
    } finally {
      m.close();
    }
  };
  const runWorkerCycle = async (): Promise<void> => {
    const m = new Machine({ memory: '1M', boot: { kind: 'binary', file: guest, mode: 'real' } });
    await m.start();
    await m.wait();
  };

  // Warm up so lazily created things (JIT, thread pool) are not counted as growth.
  for (let i = 0; i < 20; i++) runSyncCycle();
  for (let i = 0; i < 3; i++) await runWorkerCycle();
  settle();
  const fd0 = openFds();
  const rss0 = rssMiB();
  const t0 = Date.now();
  for (let i = 0; i < syncCycles; i++) runSyncCycle();
  settle();
  const fd1 = openFds();
  const rss1 = rssMiB();
  const t1 = Date.now();
  for (let i = 0; i < workerCycles; i++) await runWorkerCycle();
  await new Promise((r) => setTimeout(r, 200)); // let worker threads finish exiting
  settle();
  const fd2 = openFds();
  const rss2 = rssMiB();
  const t2 = Date.now();

  console.log(`bench/lifecycle (run with --expose-gc for steadier RSS)`);
  console.log(`  ${syncCycles} SyncMachine create/run/close: fds ${fd0} -> ${fd1}, RSS ${rss0.toFixed(1)} -> ${rss1.toFixed(1)} MiB, ${((t1 - t0) / syncCycles).toFixed(2)} ms/cycle`);
  console.log(`  ${workerCycles} Machine (worker) start/halt:  fds ${fd1} -> ${fd2}, RSS ${rss1.toFixed(1)} -> ${rss2.toFixed(1)} MiB, ${((t2 - t1) / workerCycles).toFixed(2)} ms/cycle`);
}

main().catch((e) => {
  console.error(`bench/lifecycle: ${(e as Error).message}`);
  process.exit(1);
});
