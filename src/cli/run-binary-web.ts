// `tskvm run-binary --web`: a flat binary on the asynchronous Machine.
//
// Plain `run-binary` runs the guest synchronously on the main thread
// (SyncMachine): simplest for teaching, but then nothing else can run — no
// HTTP server, no websocket. A web console needs the event loop free, so with
// --web the same binary boots on a vCPU worker (Machine, with --platform and
// --cpus as without --web) and the run is handled like `tskvm run`'s.
import { Machine } from '../vmm/machine';
import type { CpuMode } from '../arch/x86/modes';
import type { ListenAddress } from '../web/listen-address';
import { runMachine } from './run-command';

export interface RunBinaryWebOptions {
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
  web: ListenAddress;
}

export function runBinaryWithWeb(image: Uint8Array, options: RunBinaryWebOptions, log: (line: string) => void): Promise<number> {
  const machine = new Machine({
    memory: options.mem,
    cpus: options.cpus,
    platform: options.platform ?? 'bare',
    kvmPath: options.kvmDevice,
    trace: options.trace,
    logUnclaimed: options.logUnclaimed,
    boot: { kind: 'binary', file: image, mode: options.mode, load: options.load, entry: options.entry },
  });
  return runMachine(machine, { stats: options.stats, web: options.web }, log);
}
