// bench/exits: the cost of one VM exit, measured three ways in one run on the
// same guest (bench/exits/guest.S: `out %al, $0x10` in a loop, real mode):
//
//   C         bench/exits/c-loop.c: ioctl(KVM_RUN) in a C loop (the baseline)
//   low-level tskvm's Vcpu.runRaw() loop: N-API call + kvm_run read in JS
//   bus       the full exit loop: decode → PIO bus → device → complete
//   worker    the same full loop inside the async Machine's vCPU worker thread
//             (what `await machine.start()` runs): adds the per-exit check for
//             host commands and console input (DESIGN.md: threading)
//
// Prints exits/s for each and the ratios TS ÷ C. Usage:
//   node dist/bench/exits/run.js [exits-per-round] [rounds]
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { Kvm, Machine, SyncMachine, setupRealMode, GuestMemory, ExitReason } from './api';

const ROOT = path.join(__dirname, '..', '..', '..');
const GUEST = path.join(ROOT, 'bench', 'exits', 'guest.bin');
const C_LOOP = path.join(ROOT, 'bench', 'exits', 'c-loop');
const PORT = 0x10;

interface Result {
  exits: number;
  seconds: number;
}

function measureC(exits: number): Result {
  const out = execFileSync(C_LOOP, [GUEST, String(exits)], { encoding: 'utf8' });
  const r = JSON.parse(out.trim().split('\n').pop()!);
  return { exits: r.exits, seconds: r.seconds };
}

/** Low-level loop: the same work the C program does, through the addon. */
function measureLowLevel(exits: number): Result {
  const kvm = Kvm.open();
  const vm = kvm.createVm();
  const memory = GuestMemory.allocate([{ gpa: 0, size: 1 << 20 }]);
  try {
    vm.mapMemory(memory);
    vm.setTssAddress(0xfffbd000);
    const vcpu = vm.createVcpu(0);
    memory.write(0x8000, fs.readFileSync(GUEST));
    setupRealMode(vcpu, { entry: 0x8000 });
    const run = vcpu.runView;
    const loop = (n: number) => {
      for (let i = 0; i < n; i++) {
        if (vcpu.runRaw() !== ExitReason.IO || run.getUint16(34, true) !== PORT) throw new Error('unexpected exit');
      }
    };
    loop(1000); // warm-up, like the C program
    const t0 = process.hrtime.bigint();
    loop(exits);
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    return { exits, seconds };
  } finally {
    vm.close();
    memory.close();
    kvm.close();
  }
}

/** Full dispatch: SyncMachine + exit loop + PIO bus + a device that counts. */
function measureBus(exits: number): Result {
  const machine = SyncMachine.create({ memory: '1M', debugConsole: false, serial: false });
  try {
    let count = 0;
    let target = 1000;
    machine.addPioDevice(PORT, 1, {
      name: 'counter',
      read: () => 0,
      write: () => {
        if (++count === target) machine.requestStop('halt', 'done');
      },
    });
    machine.loadBinary(fs.readFileSync(GUEST), 0x8000);
    machine.setMode('real', { entry: 0x8000 });
    machine.runSync(); // warm-up
    count = 0;
    target = exits;
    const t0 = process.hrtime.bigint();
    machine.runSync();
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    return { exits: count, seconds };
  } finally {
    machine.close();
  }
}

/**
 * The vCPU worker: the guest's port 0x10 is unclaimed there (no custom device
 * crosses threads), which costs the same bus lookup. Exits are counted by the
 * worker's statistics over a timed window after a warm-up.
 */
async function measureWorker(exits: number, c: Result): Promise<Result> {
  const machine = new Machine({ memory: '1M', debugConsole: false, serial: false, boot: { kind: 'binary', file: GUEST, mode: 'real' } });
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  try {
    await machine.start();
    await sleep(200);
    const t0 = process.hrtime.bigint();
    const before = (await machine.readStatistics())!.total;
    // About as long as the C loop took for the same number of exits.
    await sleep(Math.max(200, (c.seconds * 1000 * exits) / c.exits));
    const after = (await machine.readStatistics())!.total;
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    return { exits: after - before, seconds };
  } finally {
    await machine.stop();
  }
}

function best(results: Result[]): number {
  return Math.max(...results.map((r) => r.exits / r.seconds));
}

async function main(): Promise<void> {
  const exits = Number(process.argv[2] ?? 200000);
  const rounds = Number(process.argv[3] ?? 3);
  for (const f of [GUEST, C_LOOP]) if (!fs.existsSync(f)) throw new Error(`${f} is missing: run \`npm run build:examples\``);
  const c: Result[] = [];
  const low: Result[] = [];
  const bus: Result[] = [];
  const worker: Result[] = [];
  // Interleave the rounds so drift on a noisy machine hits all three alike.
  for (let i = 0; i < rounds; i++) {
    c.push(measureC(exits));
    low.push(measureLowLevel(exits));
    bus.push(measureBus(exits));
    worker.push(await measureWorker(exits, c[c.length - 1]!));
  }
  const rate = { c: best(c), low: best(low), bus: best(bus), worker: best(worker) };
  const fmt = (n: number) => Math.round(n).toLocaleString('en-US').padStart(10);
  const us = (n: number) => (1e6 / n).toFixed(2).padStart(6);
  console.log(`bench/exits: ${exits} PIO exits per round, best of ${rounds} rounds`);
  console.log(`  C loop (baseline)      ${fmt(rate.c)} exits/s  ${us(rate.c)} us/exit`);
  console.log(`  tskvm low-level loop   ${fmt(rate.low)} exits/s  ${us(rate.low)} us/exit`);
  console.log(`  tskvm full bus loop    ${fmt(rate.bus)} exits/s  ${us(rate.bus)} us/exit`);
  console.log(`  tskvm vCPU worker loop ${fmt(rate.worker)} exits/s  ${us(rate.worker)} us/exit`);
  console.log(`  ratio low-level / C    ${(rate.low / rate.c).toFixed(3)}`);
  console.log(`  ratio bus / C          ${(rate.bus / rate.c).toFixed(3)}`);
  console.log(`  ratio worker / C       ${(rate.worker / rate.c).toFixed(3)}`);
  console.log(`  worker cost per exit   ${(1e6 / rate.worker - 1e6 / rate.bus).toFixed(2)} us over the in-thread bus loop`);
}

main().catch((e) => {
  console.error(`bench/exits: ${(e as Error).message}`);
  process.exit(1);
});
