// The vCPU worker: a worker_thread that owns one SyncMachine — its KVM file
// descriptors, guest RAM and every device model — and runs its exit loop, so
// the main thread's event loop never blocks in KVM_RUN (DESIGN.md:
// threading). Devices have exactly one owner thread: this one.
//
// See worker-protocol.ts for the channels. This file is started by machine.ts.
import * as fs from 'fs';
import { parentPort, receiveMessageOnPort, workerData } from 'worker_threads';
import { SyncMachine } from './sync-machine';
import { describeMode } from '../arch/x86/modes';
import { ByteRing } from './byte-ring';
import { DebugTarget, DebugTargetError } from './debug-target';
import type { DebugReply, DebugRequest, DebugStopReason } from './debug-protocol';
import type { DebugExit } from '../kvm/structs/run';
import { CONTROL_MAIL, type BootSpec, type MachineStatistics, type WorkerCommand, type WorkerData, type WorkerEvent } from './worker-protocol';

const data = workerData as WorkerData;
const post = (event: WorkerEvent): void => parentPort!.postMessage(event);

function bytes(source: string | Uint8Array, what: string): Uint8Array {
  if (typeof source !== 'string') return source;
  try {
    return fs.readFileSync(source);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'does not exist' : code === 'EACCES' ? 'is not readable (permission denied)' : `cannot be read (${(err as Error).message})`;
    throw Object.assign(new Error(`${what} ${source} ${why}`), { code: code ?? 'EIO' });
  }
}

function load(machine: SyncMachine, boot: BootSpec): Record<string, unknown> | undefined {
  if (boot.kind === 'linux') {
    const info = machine.loadLinux({
      kernel: bytes(boot.kernel, 'kernel'),
      initrd: boot.initrd === undefined ? undefined : bytes(boot.initrd, 'initrd'),
      kernelPath: typeof boot.kernel === 'string' ? boot.kernel : undefined,
      initrdPath: typeof boot.initrd === 'string' ? boot.initrd : undefined,
      cmdline: boot.cmdline ?? 'console=ttyS0 panic=-1',
      emulatorWorkarounds: boot.emulatorWorkarounds,
    });
    return { ...info };
  }
  const image = bytes(boot.file, 'binary');
  const loadAddress = boot.load ?? 0x8000;
  machine.loadBinary(image, loadAddress);
  machine.setMode(boot.mode, { entry: boot.entry ?? loadAddress });
  return undefined;
}

function main(): void {
  const output = new ByteRing(data.output);
  const input = new ByteRing(data.input);
  const control = new Int32Array(data.control);
  let machine: SyncMachine;
  const createMachine = (): SyncMachine =>
    SyncMachine.create({
      ...data.config,
      platform: data.config.platform ?? (data.boot.kind === 'linux' ? 'pc' : 'bare'),
      trace: data.config.trace ? (line) => post({ type: 'log', message: line }) : undefined,
    });
  try {
    machine = createMachine();
  } catch (err) {
    post({ type: 'error', message: (err as Error).message, code: (err as { code?: string }).code });
    output.close();
    return;
  }
  const where = (): MachineStatistics['vcpu'] => {
    try {
      const sregs = machine.vcpu.getSregs();
      return { rip: '0x' + machine.vcpu.getRegs().rip.toString(16), cpl: sregs.cs.selector & 3, mode: describeMode(sregs) };
    } catch {
      return undefined;
    }
  };
  const statistics = (): MachineStatistics => ({ ...machine.statistics(), consoleDropped: output.dropped, vcpu: where() });
  try {
    // Everything that ties a SyncMachine to this worker's channels (again after a reset).
    const attach = (m: SyncMachine): Record<string, unknown> | undefined => {
      m.on('log', (message) => post({ type: 'log', message }));
      m.setConsoleSink((byte) => output.writeByte(byte));
      m.on('input-space', feedInput);
      const loaded = load(m, data.boot);
      for (const vcpu of m.vcpus) vcpu.bindThread();
      return loaded;
    };

    // Console input: move bytes from the ring into the UART (or virtio console) as it has room.
    const feedInput = (): void => {
      if (input.available === 0) return;
      const room = machine.consoleInputSpace;
      if (room > 0) machine.sendInput(input.read(room));
    };
    // Frames from the taps (machine.ts pumpTap); a NIC with no receive buffer drops (and counts) them.
    const netInput = data.netInput ? new ByteRing(data.netInput) : undefined;
    const feedNet = (): void => {
      if (!netInput || netInput.available === 0) return;
      for (let record = netInput.readRecord(); record; record = netInput.readRecord()) machine.netReceive(record[0]!, record.subarray(1));
    };
    const info = attach(machine);

    let mailSeen = Atomics.load(control, CONTROL_MAIL);
    let stopRequested = false;
    /** reset(): end this run, then boot a fresh VM with the same config. */
    let resetRequested = false;
    // The debugger's end (debug-target.ts), only when the machine was started with `debug`.
    const debug = data.debug ? new DebugTarget(machine.vcpu, machine.memory, machine.debugRegisters) : undefined;
    /** True while hold() keeps the vCPU stopped (pause, or a stop for the debugger). */
    let held = false;

    /**
     * Keeps the vCPU out of KVM_RUN, serving commands, until one resumes it
     * (or asks to stop). The port is read before each sleep, so commands that
     * arrived together are all seen.
     */
    const hold = (): void => {
      held = true;
      try {
        for (;;) {
          const next = receiveMessageOnPort(data.commands)?.message as WorkerCommand | undefined;
          if (!next) {
            Atomics.wait(control, CONTROL_MAIL, mailSeen);
            mailSeen = Atomics.load(control, CONTROL_MAIL);
            continue;
          }
          if (next.type === 'pause') continue; // stopped already
          if (next.type === 'debug-interrupt') {
            // Stopped already (perhaps by pause()): say so to the debugger that asks.
            if (debug) post({ type: 'debug-stopped', stop: { reason: 'interrupt', pc: debug.pc() } });
            continue;
          }
          if (next.type === 'resume') {
            debug?.resume('continue'); // steps off a breakpoint at RIP, if any
            return;
          }
          handle(next);
          if (stopRequested || (next.type === 'debug' && (next.request.op === 'resume' || next.request.op === 'detach'))) return;
        }
      } finally {
        held = false;
        // Commands posted after the one that resumed are read at the next exit.
        mailSeen = -1;
      }
    };
    const stopForDebugger = (reason: DebugStopReason): void => {
      post({ type: 'debug-stopped', stop: { reason, pc: debug!.pc() } });
      hold();
      if (!stopRequested) post({ type: 'resumed' });
    };
    const serveDebugger = (id: number, request: DebugRequest): void => {
      let reply: DebugReply;
      try {
        if (!debug) throw new DebugTargetError('this machine was started without the `debug` option', 'ENODEBUG');
        // Resuming means something only while stopped; a running vCPU just goes on.
        const value = request.op === 'resume' && !held ? undefined : debug.serve(request);
        reply = { ok: true, value };
      } catch (err) {
        reply = { ok: false, error: (err as Error).message, code: (err as { code?: string }).code ?? 'EIO' };
      }
      post({ type: 'debug-reply', id, reply });
    };

    const handle = (command: WorkerCommand): void => {
      switch (command.type) {
        case 'stop':
          stopRequested = true;
          break;
        case 'reset':
          resetRequested = true;
          break;
        case 'statistics':
          post({ type: 'statistics', id: command.id, statistics: statistics() });
          break;
        case 'power-button':
          post({ type: 'power-button', id: command.id, result: machine.pressPowerButton() });
          break;
        case 'pause':
          post({ type: 'paused' });
          hold();
          if (!stopRequested) post({ type: 'resumed' });
          break;
        case 'resume':
          break;
        case 'debug':
          serveDebugger(command.id, command.request);
          break;
        case 'debug-interrupt':
          if (debug && !held) stopForDebugger('interrupt');
          break;
      }
    };
    const afterExit = (): void => {
      if (Atomics.load(control, CONTROL_MAIL) !== mailSeen) {
        mailSeen = Atomics.load(control, CONTROL_MAIL);
        for (let m = receiveMessageOnPort(data.commands); m; m = receiveMessageOnPort(data.commands)) handle(m.message as WorkerCommand);
      }
      feedInput();
      feedNet();
    };

    // With a debugger: breakpoint and single-step exits, and the end of a step
    // whose trap KVM dropped (debug-target.ts). Without one the loop is unchanged.
    const onDebug = (exit: DebugExit): boolean => {
      const outcome = debug!.onDebugExit(exit);
      if (outcome === undefined) return false;
      if (outcome !== 'handled') stopForDebugger(outcome);
      return true;
    };
    const afterExitWhileDebugging = (): void => {
      afterExit();
      if (!debug!.stepping || stopRequested) return;
      const outcome = debug!.afterExitWhileStepping();
      if (outcome !== undefined && outcome !== 'handled') stopForDebugger(outcome);
    };

    post({ type: 'started', vcpuFds: machine.vcpus.map((v) => v.fd), info, tapsOnIoThread: machine.io !== undefined });
    if (data.debug?.waitForDebugger) stopForDebugger('attach');
    let stop;
    for (;;) {
      stop = machine.runSync(
        debug
          ? { afterExit: afterExitWhileDebugging, shouldStop: () => stopRequested || resetRequested, onDebug }
          : { afterExit, shouldStop: () => stopRequested || resetRequested },
      );
      for (const vcpu of machine.vcpus) vcpu.unbindThread();
      if (!resetRequested || stopRequested) break;
      // A cold reset: the old VM (RAM, vCPUs, devices, statistics) is freed
      // and a new one boots from the same config; the console rings, taps
      // and command channel stay.
      resetRequested = false;
      machine.close();
      machine = createMachine();
      const again = attach(machine);
      post({ type: 'reset', vcpuFds: machine.vcpus.map((v) => v.fd), info: again });
    }
    const final = statistics();
    // Free the VM before saying so: the main thread may end this thread as soon as it hears.
    machine.close();
    output.close();
    post({ type: 'stopped', stop, statistics: final });
  } catch (err) {
    machine.close();
    output.close();
    post({ type: 'error', message: (err as Error).message, code: (err as { code?: string }).code });
  } finally {
    data.commands.close();
  }
}

main();
