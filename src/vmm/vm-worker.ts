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
  try {
    machine = SyncMachine.create({
      ...data.config,
      platform: data.config.platform ?? (data.boot.kind === 'linux' ? 'pc' : 'bare'),
      trace: data.config.trace ? (line) => post({ type: 'log', message: line }) : undefined,
    });
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
    machine.on('log', (message) => post({ type: 'log', message }));
    machine.setConsoleSink((byte) => output.writeByte(byte));
    const info = load(machine, data.boot);
    machine.vcpu.bindThread();

    // Console input: move bytes from the ring into the UART as it has room.
    const feedInput = (): void => {
      const serial = machine.serial;
      if (!serial || input.available === 0) return;
      const room = serial.rxSpace;
      if (room > 0) serial.receive(input.read(room));
    };
    machine.on('input-space', feedInput);

    let mailSeen = Atomics.load(control, CONTROL_MAIL);
    let stopRequested = false;
    const handle = (command: WorkerCommand): void => {
      switch (command.type) {
        case 'stop':
          stopRequested = true;
          break;
        case 'statistics':
          post({ type: 'statistics', id: command.id, statistics: statistics() });
          break;
        case 'pause': {
          post({ type: 'paused' });
          // Sleep until the next command; the vCPU stays out of KVM_RUN.
          for (;;) {
            Atomics.wait(control, CONTROL_MAIL, mailSeen);
            mailSeen = Atomics.load(control, CONTROL_MAIL);
            const next = receiveMessageOnPort(data.commands)?.message as WorkerCommand | undefined;
            if (!next) continue;
            if (next.type === 'resume') break;
            handle(next);
            if (stopRequested) break;
          }
          if (!stopRequested) post({ type: 'resumed' });
          break;
        }
        case 'resume':
          break;
      }
    };
    const afterExit = (): void => {
      if (Atomics.load(control, CONTROL_MAIL) !== mailSeen) {
        mailSeen = Atomics.load(control, CONTROL_MAIL);
        for (let m = receiveMessageOnPort(data.commands); m; m = receiveMessageOnPort(data.commands)) handle(m.message as WorkerCommand);
      }
      feedInput();
    };

    post({ type: 'started', vcpuFds: [machine.vcpu.fd], info });
    const stop = machine.runSync({ afterExit, shouldStop: () => stopRequested });
    machine.vcpu.unbindThread();
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
