// The virtio I/O thread: a worker_thread that serves the queues of the
// offloaded virtio devices (disks, NICs, entropy) so that the guest's I/O
// does not pass through the vCPU's exit loop (DESIGN.md: threading).
//
//   guest writes a queue's notify address ──KVM ioeventfd──▶ this thread
//   this thread serves the queue, sets ISR ──irqfd──▶ KVM's I/O APIC
//   guest EOIs the level interrupt ──KVM resamplefd──▶ this thread re-asserts if ISR ≠ 0
//
// The vCPU thread keeps each device's registers (virtio-pci.ts); this thread
// owns the models that do the work (queue-server.ts) and, for NICs, reads
// the tap itself. It blocks in poll(2) on every fd it serves plus a doorbell
// eventfd for the vCPU thread's messages (io-protocol.ts). Guest RAM is the
// vCPU thread's mapping, re-wrapped here (GuestMemory.attach); the vCPU
// thread keeps it, and the fds, until this thread says it has ended.
import { receiveMessageOnPort, workerData } from 'worker_threads';
import { native } from '../native';
import { GuestMemory } from '../memory/guest-memory';
import { VirtioSharedState } from '../virtio/shared-state';
import { QueueServer } from '../virtio/queue-server';
import { VirtioBlk } from '../virtio/virtio-blk';
import { VirtioNet, parseMac } from '../virtio/virtio-net';
import { VirtioRng } from '../virtio/virtio-rng';
import type { VirtioDeviceModel } from '../virtio/virtio-pci';
import { Tap, TAP_MAX_FRAME } from '../net/tap';
import { IO_CONTROL_CELLS, IO_DONE, IO_ENDED, IO_LOGS, type IoCommand, type IoWorkerData, type OffloadedDeviceSpec } from './io-protocol';

const data = workerData as IoWorkerData;
const control = new Int32Array(data.control, 0, IO_CONTROL_CELLS);

/** Answers the vCPU thread's stop, sync or quit `seq` (io-thread.ts sendAndWait). */
function acknowledge(seq: number): void {
  Atomics.store(control, IO_DONE, seq);
  Atomics.notify(control, IO_DONE);
}

function log(message: string): void {
  data.logs.postMessage(message);
  Atomics.add(control, IO_LOGS, 1);
}

/** What the poll loop does when an fd is readable. */
type Handler = () => void;

interface Served {
  server: QueueServer;
  /** Closes what the model opened (a disk image). */
  close(): void;
  /** A NIC's tap: read while the guest has receive buffers, and not after a read error. */
  tap?: { tap: Tap; blocked: boolean; failed: boolean };
}

function buildModel(spec: OffloadedDeviceSpec): { model: VirtioDeviceModel; close(): void; tap?: Served['tap'] } {
  const m = spec.model;
  switch (m.kind) {
    case 'blk': {
      const disk = VirtioBlk.open({ path: m.path, readOnly: m.readOnly, serial: m.serial, log });
      return { model: disk, close: () => disk.close() };
    }
    case 'net': {
      // The fd belongs to whoever opened the tap; this thread only reads and writes it.
      const tap = Tap.fromFd(m.tapName, m.tapFd);
      tap.log = log;
      const state = { tap, blocked: false, failed: false };
      const model = new VirtioNet({
        mac: parseMac(m.mac),
        onTransmit: (frame) => tap.write(frame),
        onRxSpace: () => (state.blocked = false),
      });
      return { model, close: () => {}, tap: state };
    }
    case 'rng':
      return { model: new VirtioRng(), close: () => {} };
  }
}

function main(): void {
  const memory = GuestMemory.attach(data.memory);
  const devices: Served[] = [];
  const handlers = new Map<number, Handler>();
  const drain = (fd: number): void => void native.eventfdRead(fd);
  try {
    for (const spec of data.devices) {
      const built = buildModel(spec);
      const server = new QueueServer({
        name: spec.name,
        memory,
        model: built.model,
        shared: new VirtioSharedState(spec.shared),
        assertLine: () => native.eventfdWrite(spec.irqFd, 1),
        log,
      });
      devices.push({ server, close: built.close, tap: built.tap });
      spec.queueFds.forEach((fd, index) =>
        handlers.set(fd, () => {
          drain(fd);
          server.notify(index);
        }),
      );
      handlers.set(spec.resampleFd, () => {
        drain(spec.resampleFd);
        server.resample();
      });
    }
  } catch (err) {
    log(`virtio I/O thread: ${(err as Error).message}`);
    for (const d of devices) d.close();
    end();
    return;
  }

  const frame = new Uint8Array(TAP_MAX_FRAME);
  /** Moves waiting frames from a tap to the guest until it runs out of receive buffers. */
  const readTap = (served: Served): void => {
    const t = served.tap!;
    try {
      for (let f = t.tap.read(frame); f; f = t.tap.read(frame)) {
        // `f` is a view of `frame`; VirtioNet copies it into the guest's buffer.
        if (!(served.server.model as VirtioNet).receive(f)) {
          // Dropped (no buffer): leave the rest in the tap's queue until the guest adds buffers.
          t.blocked = true;
          return;
        }
      }
    } catch (err) {
      // The host side of the tap went away: this NIC receives nothing more; the other devices go on.
      t.failed = true;
      log(`${served.server.name}: reading tap ${t.tap.name} failed (${(err as { code?: string }).code ?? (err as Error).message}); the NIC receives no more frames`);
    }
  };

  let quitSeq = -1;
  const handle = (command: IoCommand): void => {
    switch (command.type) {
      case 'start':
        devices[command.device]?.server.start(command.features, command.queues);
        break;
      case 'stop':
        devices[command.device]?.server.stop();
        acknowledge(command.seq);
        break;
      case 'sync':
        // The doorbell is polled last, so the notifications that were pending with it are served.
        acknowledge(command.seq);
        break;
      case 'quit':
        quitSeq = command.seq;
        break;
    }
  };
  const doorbell = (): void => {
    drain(data.doorbellFd);
    for (let m = receiveMessageOnPort(data.commands); m; m = receiveMessageOnPort(data.commands)) handle(m.message as IoCommand);
  };

  // The eventfds are fixed; the taps come and go with the guest's receive buffers.
  const eventFds = [...handlers.keys()];
  try {
    while (quitSeq < 0) {
      const fds = [...eventFds];
      for (const d of devices) if (d.tap && !d.tap.blocked && !d.tap.failed && d.server.serving) fds.push(d.tap.tap.fd);
      // Last: the fds come back in this order, and a sync must follow the notifications that came before it.
      fds.push(data.doorbellFd);
      for (const fd of native.pollReadable(fds, -1)) {
        const handler = handlers.get(fd);
        if (handler) handler();
        else if (fd === data.doorbellFd) doorbell();
        else {
          const served = devices.find((d) => d.tap?.tap.fd === fd);
          if (served) readTap(served);
        }
        if (quitSeq >= 0) break;
      }
    }
  } catch (err) {
    log(`virtio I/O thread stopped: ${(err as Error).message}`);
  } finally {
    for (const d of devices) d.close();
    end(quitSeq);
  }
}

/** Tells the vCPU thread this thread no longer touches guest RAM or the fds. */
function end(seq = -1): void {
  Atomics.store(control, IO_ENDED, 1);
  if (seq >= 0) acknowledge(seq);
  else Atomics.notify(control, IO_DONE);
  data.commands.close();
  data.logs.close();
}

main();
