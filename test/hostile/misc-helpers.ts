// Shared by the misc-* hostile tests: paths of the attack guests and a runner.
import * as fs from 'fs';
import * as path from 'path';
import { SyncMachine } from '../../src';
import type { Bus } from '../../src/bus/bus';

export const HOSTILE_GUESTS = path.join(__dirname, 'guests');

/** A built attack guest (scripts/build-examples.js builds test/hostile/guests/*.S). */
export function hostileGuest(name: string): string {
  const file = path.join(HOSTILE_GUESTS, `${name}.bin`);
  if (!fs.existsSync(file)) throw new Error(`${file} is missing: run \`node scripts/build-examples.js\``);
  return file;
}

/**
 * Runs a long-mode attack guest on a SyncMachine (4 MiB RAM) to its end.
 * `input` is typed into COM1 once the console shows `inputAfter`.
 */
export function runAttack(name: string, platform: 'bare' | 'pc', options: { inputAfter?: string; input?: string } = {}) {
  // On 'pc' a virtio device sits on PCI too, so config-space scribbles can reach one.
  const machine = SyncMachine.create({ memory: '4M', platform, rng: platform === 'pc' });
  let text = '';
  const logs: string[] = [];
  machine.setConsoleSink((byte) => (text += String.fromCharCode(byte)));
  machine.on('log', (line) => logs.push(line));
  try {
    machine.loadBinary(fs.readFileSync(hostileGuest(name)), 0x8000);
    machine.setMode('long', { entry: 0x8000 });
    let started = false;
    let input = Buffer.from(options.input ?? '');
    const stop = machine.runSync({
      afterExit: () => {
        started ||= options.inputAfter !== undefined && text.includes(options.inputAfter);
        // The UART takes what fits in its FIFO; the rest follows as the guest reads.
        if (started && input.length > 0) input = input.subarray(machine.sendInput(input));
      },
    });
    return { stop, console: text, logs, stats: machine.statistics(), pio: machine.pio, mmio: machine.mmio };
  } finally {
    machine.close();
  }
}

/** How many of the accesses (port, width) for every port and width 1/2/4 no device on `bus` claims. */
export function unclaimedSweepAccesses(bus: Bus, skip: (port: number, width: number) => boolean = () => false): number {
  let n = 0;
  for (let port = 0; port < 0x10000; port++)
    for (const width of [1, 2, 4]) if (!skip(port, width) && !bus.registered.some((r) => port >= r.base && port + width <= r.base + r.length)) n++;
  return n;
}
