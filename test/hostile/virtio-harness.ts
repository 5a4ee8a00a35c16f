// Shared by the virtio hostile-guest suites (issue 6): runs a guest from
// test/hostile/guests on a real /dev/kvm 'pc' machine and parses the lines it
// prints on the debug console (port 0xE9):
//   CASE <name> <outcome...>    one per attack case
//   INFO ...                    for humans
//   DONE                        the guest got to its end
// The guest ends its run itself (i8042 reset, see guests/virtio-guest.h).
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { SyncMachine, type MachineConfig } from '../../src/vmm/sync-machine';
import type { VcpuStop } from '../../src/vmm/exit-loop';

export const GUESTS = path.join(__dirname, 'guests');

/** Path of a built hostile guest; fails clearly if the build did not make it. */
export function hostileGuest(name: string): string {
  const file = path.join(GUESTS, `${name}.bin`);
  if (!fs.existsSync(file)) throw new Error(`${file} is missing: run \`npm run build:examples\` (npm install does it)`);
  return file;
}

export const SECTOR = 512;
/** guests/virtio-guest.h HOST_SYNC_PORT */
const HOST_SYNC_PORT = 0xea;

/** A raw image of `sectors` sectors; sector n starts with the ASCII "sect%04d" and is filled with the byte n & 0xff. */
export function patternImage(file: string, sectors: number): Buffer {
  const image = Buffer.alloc(sectors * SECTOR);
  for (let n = 0; n < sectors; n++) {
    image.fill(n & 0xff, n * SECTOR, (n + 1) * SECTOR);
    image.write(`sect${String(n).padStart(4, '0')}`, n * SECTOR, 'latin1');
  }
  fs.writeFileSync(file, image);
  return image;
}

export function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export interface GuestRun {
  /** Every debug-console line. */
  lines: string[];
  /** CASE name -> the rest of its line. */
  cases: Map<string, string>;
  /** Lines the machine logged (device errors, host I/O errors). */
  logs: string[];
  /** Bytes the guest wrote to the virtio console. */
  virtioOutput: string;
  stop: VcpuStop;
  done: boolean;
}

export interface RunOptions {
  /** Before the run: add devices, write HOST_MODE_ADDR... */
  setup?: (machine: SyncMachine) => void;
  /** Each debug-console line as it arrives, while the guest waits in its port write (the host may act on it). */
  onLine?: (line: string, machine: SyncMachine) => void;
  /** After the run, before close: read device statistics. */
  inspect?: (machine: SyncMachine, run: GuestRun) => void;
}

/** Runs guest `name` (loaded and entered at 0x8000 in long mode) on a machine built from `config`. */
export function runHostileGuest(name: string, config: MachineConfig, options: RunOptions = {}): GuestRun {
  const machine = SyncMachine.create({ memory: '8M', platform: 'pc', ...config });
  try {
    let debugcon = '';
    let virtioOutput = '';
    const logs: string[] = [];
    machine.on('output', (data, source) => {
      if (source === 'debugcon') {
        const from = debugcon.length;
        debugcon += data.toString('latin1');
        // Lines are flushed at each newline, so a line ends inside this chunk.
        const lineStart = debugcon.lastIndexOf('\n', from - 1) + 1;
        if (options.onLine && debugcon.endsWith('\n')) options.onLine(debugcon.slice(lineStart, -1), machine);
      }
      else if (source === 'virtio') virtioOutput += data.toString('latin1');
    });
    machine.on('log', (message) => logs.push(message));
    // The guests' barrier (guests/virtio-guest.h, HOST_SYNC_PORT): with the
    // I/O thread, wait until it has served the notifications made so far.
    machine.addPioDevice(HOST_SYNC_PORT, 1, {
      name: 'host-sync',
      read: () => 0,
      write: () => machine.io?.sync(),
    });
    options.setup?.(machine);
    machine.loadBinary(fs.readFileSync(hostileGuest(name)), 0x8000);
    machine.setMode('long', { entry: 0x8000 });
    const stop = machine.runSync();
    const lines = debugcon.split('\n').filter((l) => l !== '');
    const cases = new Map<string, string>();
    for (const line of lines) {
      const m = /^CASE (\S+) ?(.*)$/.exec(line);
      if (m) cases.set(m[1]!, m[2]!);
    }
    const run: GuestRun = { lines, cases, logs, virtioOutput, stop, done: lines.includes('DONE') };
    options.inspect?.(machine, run);
    return run;
  } finally {
    machine.close();
  }
}
