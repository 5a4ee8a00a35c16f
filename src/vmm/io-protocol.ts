// What the vCPU thread (io-thread.ts) and the virtio I/O thread
// (io-worker.ts) say to each other. Messages go over a MessagePort and the
// sender then writes the doorbell eventfd, which the I/O thread polls beside
// its ioeventfds; replies that the vCPU thread waits for are Int32 cells in a
// SharedArrayBuffer (Atomics.wait), because the vCPU thread never returns to
// its event loop while the guest runs.
import type { MessagePort } from 'worker_threads';
import type { GuestMemoryLayout } from '../memory/guest-memory';
import type { QueueGeometry } from '../virtio/virtio-pci';

/** Which device model the I/O thread builds for an offloaded device. */
export type OffloadedModelSpec =
  | { kind: 'blk'; path: string; readOnly?: boolean; serial?: string }
  | { kind: 'net'; mac: string; tapName: string; tapFd: number }
  | { kind: 'rng' };

export interface OffloadedDeviceSpec {
  name: string;
  model: OffloadedModelSpec;
  /** VirtioSharedState.buffer */
  shared: SharedArrayBuffer;
  /** One ioeventfd per queue (index = queue index). */
  queueFds: number[];
  /** irqfd (resample mode) and its resample eventfd. */
  irqFd: number;
  resampleFd: number;
}

export interface IoWorkerData {
  memory: GuestMemoryLayout;
  devices: OffloadedDeviceSpec[];
  /** Eventfd written after each message. */
  doorbellFd: number;
  /** Messages to the I/O thread. */
  commands: MessagePort;
  /** Log lines from the I/O thread (read with receiveMessageOnPort when IO_LOGS moves). */
  logs: MessagePort;
  /** Int32 cells, see IO_* below. */
  control: SharedArrayBuffer;
}

export type IoCommand =
  | { type: 'start'; device: number; features: bigint; queues: QueueGeometry[] }
  | { type: 'stop'; device: number; seq: number }
  /** Answered once every notification signalled before it was sent has been served. */
  | { type: 'sync'; seq: number }
  | { type: 'quit'; seq: number };

/** control cells: the last stop/quit sequence number the I/O thread finished. */
export const IO_DONE = 0;
/** ...incremented with each log line posted. */
export const IO_LOGS = 1;
/** ...1 once the I/O thread has ended its loop (quit, or an error it could not survive). */
export const IO_ENDED = 2;
export const IO_CONTROL_CELLS = 3;
