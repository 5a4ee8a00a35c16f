// `tskvm run-binary FILE --gdb HOST:PORT`: the flat binary boots on a vCPU
// worker (the async Machine, with --platform/--cpus as without --gdb; the
// debugger drives vCPU 0), stopped before its first instruction, so the event
// loop is free to serve gdb.
// The run is then handled like `tskvm run`'s (runMachine), --web included.
import { Machine } from '../vmm/machine';
import type { CpuMode } from '../arch/x86/modes';
import type { ListenAddress } from '../web/listen-address';
import { runMachine } from './run-command';
import type { GdbAddress } from './gdb-option';

export interface RunBinaryGdbOptions {
  mode: CpuMode;
  load: number;
  entry?: number;
  mem: string;
  /** vCPUs (default 1) and platform (default 'bare'), as `run-binary --cpus/--platform` resolved them. */
  cpus?: number;
  platform?: 'bare' | 'pc';
  trace?: boolean;
  stats?: boolean;
  logUnclaimed?: boolean;
  kvmDevice: string;
  web?: ListenAddress;
  gdb: GdbAddress;
}

export function runBinaryWithGdb(image: Uint8Array, options: RunBinaryGdbOptions, log: (line: string) => void): Promise<number> {
  const machine = new Machine({
    memory: options.mem,
    cpus: options.cpus,
    platform: options.platform ?? 'bare',
    kvmPath: options.kvmDevice,
    trace: options.trace,
    logUnclaimed: options.logUnclaimed,
    boot: { kind: 'binary', file: image, mode: options.mode, load: options.load, entry: options.entry },
    debug: { waitForDebugger: true },
  });
  return runMachine(machine, { stats: options.stats, web: options.web, gdb: options.gdb }, log);
}
