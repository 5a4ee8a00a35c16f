// Many VMs in one process (issue 6): 20 async Machines, each on its own vCPU
// worker. One runs the port-sweep attack; the other 19 echo console input
// and all keep answering while it runs. Then a few create/destroy cycles of
// 20 VMs leave open fds and RSS where they were. bench/soak/run.ts is the
// long version.
import * as fs from 'fs';
import { Machine } from '../../src';
import { hostileGuest } from './misc-helpers';

// 16-bit, from test/machine.test.ts: echoes COM1 input to COM1 until it reads 'q'.
const ECHO = Uint8Array.of(0xba, 0xfd, 0x03, 0xec, 0xa8, 0x01, 0x74, 0xfb, 0xba, 0xf8, 0x03, 0xec, 0x3c, 0x71, 0x74, 0x03, 0xee, 0xeb, 0xed, 0xf4);
const VMS = 20;

const openFds = (): number => fs.readdirSync('/proc/self/fd').length;
const rssMiB = (): number => process.memoryUsage().rss / 2 ** 20;
const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 300)); // worker threads finish exiting

function echoVm(): { machine: Machine; text: () => string; waitFor: (s: string, ms: number) => Promise<void> } {
  const machine = new Machine({ memory: '1M', boot: { kind: 'binary', file: ECHO, mode: 'real' } });
  let text = '';
  machine.on('output', (d) => (text += d.toString('latin1')));
  const waitFor = async (s: string, ms: number): Promise<void> => {
    const deadline = Date.now() + ms;
    while (!text.includes(s)) {
      if (Date.now() > deadline) throw new Error(`no "${s}" after ${ms} ms (got ${JSON.stringify(text.slice(-80))})`);
      await new Promise((r) => setTimeout(r, 5));
    }
  };
  return { machine, text: () => text, waitFor };
}

it('19 echo VMs keep answering while a 20th sweeps every port; then all stop cleanly', async () => {
  const attacker = new Machine({ memory: '4M', boot: { kind: 'binary', file: fs.readFileSync(hostileGuest('misc-port-sweep')), mode: 'long' } });
  const echoes = Array.from({ length: VMS - 1 }, echoVm);
  try {
    await Promise.all([attacker.start(), ...echoes.map((e) => e.machine.start())]);
    const attackStart = await attacker.readStatistics();
    for (let round = 0; round < 3; round++) {
      await Promise.all(echoes.map((e, i) => e.machine.sendInput(`vm${i} round${round}\n`)));
      await Promise.all(echoes.map((e, i) => e.waitFor(`vm${i} round${round}\n`, 60_000)));
    }
    const attackNow = await attacker.readStatistics();
    // The attacker made progress too (its unclaimed port accesses went up) and is still going or done cleanly.
    expect(attackNow!.unclaimed['port reads']!).toBeGreaterThan(attackStart!.unclaimed['port reads']!);
    expect(['running', 'stopped']).toContain(attacker.state);
    await Promise.all(echoes.map((e) => e.machine.sendInput('q')));
    const stops = await Promise.all(echoes.map((e) => e.machine.wait()));
    expect(stops.every((s) => s.kind === 'halt')).toBe(true);
  } finally {
    await Promise.all([attacker.stop(), ...echoes.map((e) => e.machine.stop())]);
  }
}, 180_000);

it('creating and destroying 20 VMs at a time leaves fds and RSS where they were', async () => {
  const cycle = async (): Promise<void> => {
    const vms = Array.from({ length: VMS }, echoVm);
    await Promise.all(vms.map((v) => v.machine.start()));
    await Promise.all(vms.map((v) => v.machine.sendInput('ok\nq')));
    await Promise.all(vms.map((v) => v.waitFor('ok\n', 60_000)));
    expect((await Promise.all(vms.map((v) => v.machine.wait()))).every((s) => s.kind === 'halt')).toBe(true);
  };
  await cycle(); // warm-up: worker machinery, JIT
  await settle();
  const fdsBefore = openFds();
  const rssBefore = rssMiB();
  for (let i = 0; i < 3; i++) await cycle();
  await settle();
  // A worker that is still tearing down closes its fds a moment later; a
  // leak never comes back down.
  for (let waited = 0; openFds() > fdsBefore && waited < 5000; waited += 100) await new Promise((r) => setTimeout(r, 100));
  const fdsAfter = openFds();
  const rssAfter = rssMiB();
  process.stdout.write(`20 VMs x 3 cycles: fds ${fdsBefore} -> ${fdsAfter}, RSS ${rssBefore.toFixed(1)} -> ${rssAfter.toFixed(1)} MiB\n`);
  expect(fdsAfter).toBeLessThanOrEqual(fdsBefore);
  expect(rssAfter - rssBefore).toBeLessThan(64);
}, 180_000);
