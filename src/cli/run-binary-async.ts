// `tskvm run-binary FILE --web HOST:PORT` and/or `--gdb HOST:PORT`: the flat
// binary boots on a vCPU worker (the async Machine) instead of the calling
// thread.
//
// Plain `run-binary` runs the guest synchronously on the main thread
// (SyncMachine): simplest for teaching, but then nothing else can run — no
// HTTP server, no websocket, no gdb connection. With --web or --gdb the event
// loop must stay free, so the same binary (with --platform and --cpus as
// without them) runs on a worker and the run is handled like `tskvm run`'s
// (runMachine). With --gdb it is stopped before its first instruction and the
// debugger drives vCPU 0.
import { Machine } from '../vmm/machine';
import type { CpuMode } from '../arch/x86/modes';
import type { ListenAddress } from '../web/listen-address';
import { runMachine } from './run-command';
import type { GdbAddress } from './gdb-option';
import type { DiskConfig } from '../vmm/sync-machine';

export interface RunBinaryAsyncOptions {
  mode: CpuMode;
  load: number;
  entry?: number;
  mem: string;
  /** vCPUs (default 1) and platform (default 'bare'), as `run-binary --cpus/--platform` resolved them. */
  cpus?: number;
  platform?: 'bare' | 'pc';
  /** virtio-blk disks and a virtio-rng device ('pc' platform), as `run-binary --disk/--rng` gave them. */
  disk?: DiskConfig[];
  rng?: boolean;
  trace?: boolean;
  stats?: boolean;
  logUnclaimed?: boolean;
  kvmDevice: string;
  web?: ListenAddress;
  gdb?: GdbAddress;
}

export function runBinaryOnWorker(image: Uint8Array, options: RunBinaryAsyncOptions, log: (line: string) => void): Promise<number> {
  const machine = new Machine({
    memory: options.mem,
    cpus: options.cpus,
    platform: options.platform ?? 'bare',
    disks: options.disk,
    rng: options.rng,
    kvmPath: options.kvmDevice,
    trace: options.trace,
    logUnclaimed: options.logUnclaimed,
    boot: { kind: 'binary', file: image, mode: options.mode, load: options.load, entry: options.entry },
    debug: options.gdb ? { waitForDebugger: true } : undefined,
  });
  return runMachine(machine, { stats: options.stats, web: options.web, gdb: options.gdb }, log);
}
