// Runs examples/04-mmio-device/guest.bin with the multiplier device at
// 0xD0000000. Usage: node dist/examples/04-mmio-device/run.js [--trace]
import * as fs from 'fs';
import * as path from 'path';
import { SyncMachine } from '../../src';
import { MultiplierDevice } from './multiplier-device';

export const DEVICE_BASE = 0xd0000000;

export function runMmioExample(options: { trace?: boolean; onOutput?: (text: string) => void } = {}) {
  // guest.bin sits next to run.ts; the compiled run.js lives in dist/examples/04-mmio-device/.
  const beside = path.join(__dirname, 'guest.bin');
  const guestPath = fs.existsSync(beside) ? beside : path.join(__dirname, '..', '..', '..', 'examples', '04-mmio-device', 'guest.bin');
  const guest = fs.readFileSync(guestPath);
  const machine = SyncMachine.create({ memory: '2M', trace: options.trace });
  try {
    let text = '';
    machine.addMmioDevice(DEVICE_BASE, 0x1000, new MultiplierDevice((byte) => {
      text += String.fromCharCode(byte);
      if (byte === 0x0a) {
        options.onOutput?.(text);
        text = '';
      }
    }));
    machine.loadBinary(guest, 0x8000);
    machine.setMode('long', { entry: 0x8000 });
    const stop = machine.runSync();
    return { stop, regs: machine.vcpu.getRegs(), stats: machine.statistics() };
  } finally {
    machine.close();
  }
}

if (require.main === module) {
  const result = runMmioExample({ trace: process.argv.includes('--trace'), onOutput: (line) => process.stdout.write(line) });
  console.log(`guest stopped (${result.stop.reason}); RAX = ${result.regs.rax} ; MMIO exits: ${(result.stats.exits['mmio-read'] ?? 0) + (result.stats.exits['mmio-write'] ?? 0)}`);
}
