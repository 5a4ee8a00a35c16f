// What the main thread (machine.ts) and a vCPU worker (vm-worker.ts) say to
// each other. Everything here crosses a thread boundary by structured clone,
// so it is plain data.
//
// Channels:
// - console output: a ByteRing (worker writes, main reads), bytes as they come;
// - console input:  a ByteRing (main writes, worker reads) + a kick so a vCPU
//   sitting in KVM_RUN comes out to take them;
// - commands (pause, resume, stop, statistics): a MessagePort. The worker's
//   event loop is blocked in KVM_RUN, so it reads the port synchronously with
//   receiveMessageOnPort after a kick; a shared counter tells it when to look,
//   which keeps the per-exit cost to one Atomics.load.
// - events (started, paused, log, stopped, error): postMessage to the parent.
import type { MachineConfig } from './sync-machine';
import type { CpuMode } from '../arch/x86/modes';
import type { VcpuStop } from './exit-loop';
import type { MessagePort } from 'worker_threads';

/** What to put in the VM before it runs. Paths are read by the worker; bytes are copied to it. */
export type BootSpec =
  | {
      kind: 'linux';
      kernel: string | Uint8Array;
      initrd?: string | Uint8Array;
      /** Kernel command line. Default "console=ttyS0 panic=-1". */
      cmdline?: string;
      /** See LoadLinuxOptions.emulatorWorkarounds. */
      emulatorWorkarounds?: 'auto' | 'on' | 'off';
    }
  | {
      kind: 'binary';
      file: string | Uint8Array;
      mode: CpuMode;
      /** Guest physical load address (default 0x8000, as for `tskvm run-binary`). */
      load?: number;
      /** Entry point (default: the load address). */
      entry?: number;
    };

/** MachineConfig without the function-valued options (they cannot cross threads). */
export type WorkerMachineConfig = Omit<MachineConfig, 'trace'> & { trace?: boolean };

export interface WorkerData {
  config: WorkerMachineConfig;
  boot: BootSpec;
  output: SharedArrayBuffer;
  input: SharedArrayBuffer;
  /** Int32 slots, see CONTROL_*. */
  control: SharedArrayBuffer;
  commands: MessagePort;
}

/** control[CONTROL_MAIL] is bumped after each command posted on the port. */
export const CONTROL_MAIL = 0;
export const CONTROL_SLOTS = 4;

export type WorkerCommand =
  | { type: 'pause' }
  | { type: 'resume' }
  | { type: 'stop' }
  | { type: 'statistics'; id: number };

export interface MachineStatistics {
  exits: Record<string, number>;
  total: number;
  devices: Record<string, number>;
  unclaimed: Record<string, number>;
  workarounds: Record<string, number>;
  /** Console bytes lost because nobody read the output. */
  consoleDropped: number;
  /** Where vCPU 0 was when the statistics were taken (RIP, privilege level, mode). */
  vcpu?: { rip: string; cpl: number; mode: string };
}

export type WorkerEvent =
  | { type: 'started'; vcpuFds: number[]; info?: Record<string, unknown> }
  | { type: 'paused' }
  | { type: 'resumed' }
  | { type: 'log'; message: string }
  | { type: 'statistics'; id: number; statistics: MachineStatistics }
  | { type: 'stopped'; stop: VcpuStop; statistics: MachineStatistics }
  | { type: 'error'; message: string; code?: string };
