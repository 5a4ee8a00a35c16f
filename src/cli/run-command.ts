// `tskvm run`: boot a Linux kernel (or, with --binary, a flat binary) on a
// vCPU worker, with the guest's serial console on this terminal.
//
// Flags follow QEMU/kvmtool where they exist: --kernel/-k, --initrd/-i,
// --append/-p, --memory/-m, --cpus/-c. The terminal is in raw mode so Ctrl-C
// reaches the guest; Ctrl-A x quits, Ctrl-A c prints exit statistics, Ctrl-A h
// lists the keys (like QEMU's -serial mon:stdio).
import * as fs from 'fs';
import { Machine, MachineStartError, type MachineStatistics } from '../vmm/machine';
import { formatExitReport } from '../vmm/exit-report';
import { formatCountTable } from '../vmm/exit-stats';
import { attachTerminal, type TerminalAttachment } from './terminal';
import { WebConsole } from '../web/web-console';
import type { ListenAddress } from '../web/listen-address';
import { gdbWaitingLine, listenForGdb, type GdbAddress } from './gdb-option';
import type { GdbStub } from '../gdb/gdb-stub';
import type { VcpuStop } from '../vmm/exit-loop';
import { MAX_CPUS, type DiskConfig, type NetConfig } from '../vmm/sync-machine';
import { exitCodeFor } from './exit-codes';
import { ConsoleOutput, droppedOutputLine } from './console-output';

export { exitCodeFor } from './exit-codes';

export interface RunOptions {
  kernel: string;
  initrd?: string;
  append?: string;
  memory: string;
  cpus: number;
  trace?: boolean;
  stats?: boolean;
  logUnclaimed?: boolean;
  kvmDevice: string;
  rng?: boolean;
  disk?: DiskConfig[];
  net?: NetConfig[];
  console?: 'serial' | 'virtio';
  /** --no-io-thread: serve virtio queues inside the vCPU's exits instead of on the I/O thread. */
  ioThread?: boolean;
  /** --no-emulator-workarounds turns off the automatic kernel switches. */
  emulatorWorkarounds: boolean;
  /** --web HOST:PORT: also serve the console in a browser. */
  web?: ListenAddress;
  /** --gdb HOST:PORT: start stopped and wait for gdb (gdb-option.ts). */
  gdb?: GdbAddress;
}

export const DEFAULT_APPEND = 'console=ttyS0 panic=-1';
/** With --console virtio: kernel messages start on ttyS0 and move to hvc0 once virtio_console is loaded. */
export const DEFAULT_APPEND_VIRTIO_CONSOLE = 'console=ttyS0 console=hvc0 panic=-1';

/** The one sentence for a file the user named that we cannot use. */
export function checkReadableFile(file: string, what: string): string | undefined {
  try {
    const st = fs.statSync(file);
    if (st.isDirectory()) return `${what} ${file} is a directory, not a file.`;
    fs.accessSync(file, fs.constants.R_OK);
    return undefined;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return `${what} ${file} does not exist.`;
    if (code === 'EACCES') return `no permission to read ${what} ${file}.`;
    return `cannot read ${what} ${file}: ${(err as Error).message}`;
  }
}

export function formatStatistics(s: MachineStatistics): string {
  const parts = [formatCountTable('exit reason', s.exits), formatCountTable('device', s.devices), formatCountTable('unclaimed', s.unclaimed)];
  if (Object.keys(s.workarounds).length) parts.push(formatCountTable('emulation workaround', s.workarounds));
  if (s.ioThread && Object.keys(s.ioThread).length) parts.push(formatCountTable('I/O thread, no exit (ioeventfd/irqfd)', s.ioThread));
  if (s.consoleDropped) parts.push(`console bytes dropped (nobody reading): ${s.consoleDropped}`);
  if (s.vcpu) parts.push(`vCPU 0 at RIP ${s.vcpu.rip}, CPL ${s.vcpu.cpl}, ${s.vcpu.mode}`);
  return parts.join('\n\n');
}

export async function runCommand(options: RunOptions, log: (line: string) => void): Promise<number> {
  for (const [file, what] of [[options.kernel, 'kernel'], [options.initrd, 'initrd']] as const) {
    if (file === undefined) continue;
    const problem = checkReadableFile(file, what);
    if (problem) throw new MachineStartError(problem, 'ENOENT');
  }
  for (const disk of options.disk ?? []) {
    const problem = checkReadableFile(disk.path, 'disk image');
    if (problem) throw new MachineStartError(problem, 'ENOENT');
  }
  if (options.cpus > MAX_CPUS) throw new MachineStartError(`--cpus ${options.cpus}: tskvm runs at most ${MAX_CPUS} vCPUs (they share one thread).`, 'ECONFIG');
  const machine = new Machine({
    memory: options.memory,
    cpus: options.cpus,
    kvmPath: options.kvmDevice,
    trace: options.trace,
    logUnclaimed: options.logUnclaimed,
    rng: options.rng,
    disks: options.disk,
    net: options.net,
    console: options.console,
    ioThread: options.ioThread ?? true,
    boot: {
      kind: 'linux',
      kernel: options.kernel,
      initrd: options.initrd,
      cmdline: options.append ?? (options.console === 'virtio' ? DEFAULT_APPEND_VIRTIO_CONSOLE : DEFAULT_APPEND),
      emulatorWorkarounds: options.emulatorWorkarounds ? 'auto' : 'off',
    },
    debug: options.gdb ? { waitForDebugger: true } : undefined,
  });
  return runMachine(machine, options, log);
}

/**
 * Runs a machine with its console on this terminal (and, with `web`, in
 * browsers too) until it stops; prints the stop report; returns the exit
 * code. `tskvm run` and `tskvm run-binary --web` both end here.
 */
export async function runMachine(
  machine: Machine,
  options: { stats?: boolean; web?: ListenAddress; gdb?: GdbAddress },
  log: (line: string) => void,
): Promise<number> {
  // In raw mode the terminal adds no carriage returns: our own lines need "\r\n".
  const rawTerminal = process.stdin.isTTY === true;
  const say = (line: string): void => log(rawTerminal ? line.replace(/\n/g, '\r\n') : line);
  // Bounded and non-blocking: a stdout nobody reads must not grow our memory (console-output.ts).
  const consoleOut = ConsoleOutput.forStdout();
  machine.on('output', (data) => consoleOut.write(data));
  machine.on('log', (message) => say(`tskvm: ${message}`));
  // Listen before booting: a busy port is reported before the guest runs, and
  // the guest's first output is in the history the first browser gets.
  const web = options.web ? await WebConsole.start(machine, options.web) : undefined;
  if (web) say(`tskvm: web console on ${web.url}`);
  let gdb: GdbStub | undefined;
  try {
    if (options.gdb) gdb = await listenForGdb(machine, options.gdb, say);
    await machine.start();
  } catch (err) {
    await web?.close();
    await gdb?.close();
    throw err;
  }
  if (gdb) say(gdbWaitingLine(gdb, options.gdb!));

  // With --web and stdin not a terminal (a service, nohup, a test), the
  // browser is the console: stdin is not read, so its EOF or stray bytes do
  // not reach the guest.
  const terminal = web && !rawTerminal ? undefined : attachGuestTerminal(machine, say);
  const stop = await machine.wait();
  terminal?.detach();
  if (terminal) process.stdin.pause();
  await web?.close();
  await gdb?.close();
  const dropped = consoleOut.finish() + (machine.statistics?.consoleDropped ?? 0);
  if (dropped > 0) log(droppedOutputLine(dropped));
  if (options.stats && machine.statistics) log('\n' + formatStatistics(machine.statistics) + '\n');
  if (stop.kind === 'error') {
    log(`tskvm: guest stopped: ${stop.reason}`);
    if (stop.report) log(formatExitReport(stop.report));
  } else if (stop.kind === 'reset') {
    log(`tskvm: the guest rebooted (${stop.reason}); tskvm ends the run like QEMU -no-reboot`);
  }
  return exitCodeFor(stop);
}

/** This terminal as the guest's console, with back-pressure and the Ctrl-A keys. */
function attachGuestTerminal(machine: Machine, say: (line: string) => void): TerminalAttachment {
  let stdinPaused = false;
  return attachTerminal({
    input: process.stdin,
    output: process.stdout,
    onGuestInput(bytes) {
      // Back-pressure: stop reading the terminal until the guest has taken the bytes.
      const accepted = machine.sendInput(bytes);
      if (!stdinPaused) {
        stdinPaused = true;
        process.stdin.pause();
        void accepted.then(() => {
          stdinPaused = false;
          if (machine.state !== 'stopped') process.stdin.resume();
        });
      }
    },
    onQuit() {
      say('tskvm: quit (Ctrl-A x)');
      void machine.stop();
    },
    onStats() {
      void machine.readStatistics().then((s) => s && say('\n' + formatStatistics(s) + '\n'));
    },
    log: say,
  });
}
