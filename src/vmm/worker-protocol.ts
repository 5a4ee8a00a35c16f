// What the main thread (machine.ts) and a vCPU worker (vm-worker.ts) say to
// each other. Everything here crosses a thread boundary by structured clone,
// so it is plain data.
//
// Channels:
// - console output: a ByteRing (worker writes, main reads), bytes as they come;
// - console input:  a ByteRing (main writes, worker reads) + a kick so a vCPU
//   sitting in KVM_RUN comes out to take them;
// - commands (pause, resume, stop, statistics, debugger requests): a MessagePort. The worker's
//   event loop is blocked in KVM_RUN, so it reads the port synchronously with
//   receiveMessageOnPort after a kick; a shared counter tells it when to look,
//   which keeps the per-exit cost to one Atomics.load.
// - events (started, paused, log, stopped, error, debugger replies and stops):
//   postMessage to the parent.
import type { MachineConfig } from './sync-machine';
import type { CpuMode } from '../arch/x86/modes';
import type { VcpuStop } from './exit-loop';
import type { MessagePort } from 'worker_threads';
import type { DebugReply, DebugRequest, DebugStop } from './debug-protocol';

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
  /** Frames from the host's taps: ByteRing records [NIC index, frame bytes...]. */
  netInput?: SharedArrayBuffer;
  /** Int32 slots, see CONTROL_*. */
  control: SharedArrayBuffer;
  commands: MessagePort;
  /** Set when a debugger may attach (Machine option `debug`); see debug-target.ts. */
  debug?: { waitForDebugger?: boolean };
}

/** control[CONTROL_MAIL] is bumped after each command posted on the port. */
export const CONTROL_MAIL = 0;
export const CONTROL_SLOTS = 4;

export type WorkerCommand =
  | { type: 'pause' }
  | { type: 'resume' }
  | { type: 'stop' }
  | { type: 'reset' }
  | { type: 'statistics'; id: number }
  /** Press the ACPI power button; answered with a 'power-button' event. */
  | { type: 'power-button'; id: number }
  /** A debugger request (debug-protocol.ts), answered with a 'debug-reply' event. */
  | { type: 'debug'; id: number; request: DebugRequest }
  /** Stop the vCPU for the debugger; answered with a 'debug-stopped' event (none if it is stopped already). */
  | { type: 'debug-interrupt' };

export interface MachineStatistics {
  exits: Record<string, number>;
  total: number;
  devices: Record<string, number>;
  unclaimed: Record<string, number>;
  workarounds: Record<string, number>;
  /** With the virtio I/O thread: per device, notifications it served (ioeventfd) and interrupts it sent (irqfd), none of them exits. */
  ioThread?: Record<string, number>;
  /** Console bytes lost because nobody read the output. */
  consoleDropped: number;
  /** Where vCPU 0 was when the statistics were taken (RIP, privilege level, mode). */
  vcpu?: { rip: string; cpl: number; mode: string };
}

export type WorkerEvent =
  /** tapsOnIoThread: the virtio I/O thread reads the taps itself (the main thread must not). */
  | { type: 'started'; vcpuFds: number[]; info?: Record<string, unknown>; tapsOnIoThread: boolean }
  /** reset() done: a new VM (new vCPU fds) runs from the same config. */
  | { type: 'reset'; vcpuFds: number[]; info?: Record<string, unknown> }
  | { type: 'paused' }
  | { type: 'resumed' }
  | { type: 'log'; message: string }
  | { type: 'statistics'; id: number; statistics: MachineStatistics }
  | { type: 'power-button'; id: number; result: 'sci' | 'not-enabled' | 'no-acpi' }
  | { type: 'stopped'; stop: VcpuStop; statistics: MachineStatistics }
  | { type: 'debug-reply'; id: number; reply: DebugReply }
  /** The vCPU stopped for the debugger; a 'resumed' event follows when it runs again. */
  | { type: 'debug-stopped'; stop: DebugStop }
  | { type: 'error'; message: string; code?: string };
