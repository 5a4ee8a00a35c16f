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
import { attachTerminal } from './terminal';
import type { VcpuStop } from '../vmm/exit-loop';

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
  /** --no-emulator-workarounds turns off the automatic kernel switches. */
  emulatorWorkarounds: boolean;
}

export const DEFAULT_APPEND = 'console=ttyS0 panic=-1';

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
  if (s.consoleDropped) parts.push(`console bytes dropped (nobody reading): ${s.consoleDropped}`);
  if (s.vcpu) parts.push(`vCPU 0 at RIP ${s.vcpu.rip}, CPL ${s.vcpu.cpl}, ${s.vcpu.mode}`);
  return parts.join('\n\n');
}

/** Exit code for a stop: 0 for an orderly end (halt, power off, reboot, quit), 2 for a guest error. */
export function exitCodeFor(stop: VcpuStop): number {
  return stop.kind === 'error' ? 2 : 0;
}

export async function runCommand(options: RunOptions, log: (line: string) => void): Promise<number> {
  for (const [file, what] of [[options.kernel, 'kernel'], [options.initrd, 'initrd']] as const) {
    if (file === undefined) continue;
    const problem = checkReadableFile(file, what);
    if (problem) throw new MachineStartError(problem, 'ENOENT');
  }
  if (options.cpus !== 1) throw new MachineStartError(`--cpus ${options.cpus}: this version of tskvm boots Linux with one vCPU.`, 'ECONFIG');
  const machine = new Machine({
    memory: options.memory,
    kvmPath: options.kvmDevice,
    trace: options.trace,
    logUnclaimed: options.logUnclaimed,
    rng: options.rng,
    boot: {
      kind: 'linux',
      kernel: options.kernel,
      initrd: options.initrd,
      cmdline: options.append ?? DEFAULT_APPEND,
      emulatorWorkarounds: options.emulatorWorkarounds ? 'auto' : 'off',
    },
  });
  // In raw mode the terminal adds no carriage returns: our own lines need "\r\n".
  const rawTerminal = process.stdin.isTTY === true;
  const say = (line: string): void => log(rawTerminal ? line.replace(/\n/g, '\r\n') : line);
  machine.on('output', (data) => process.stdout.write(data));
  machine.on('log', (message) => say(`tskvm: ${message}`));
  await machine.start();

  let stdinPaused = false;
  const terminal = attachTerminal({
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
  const stop = await machine.wait();
  terminal.detach();
  process.stdin.pause();
  if (options.stats && machine.statistics) log('\n' + formatStatistics(machine.statistics) + '\n');
  if (stop.kind === 'error') {
    log(`tskvm: guest stopped: ${stop.reason}`);
    if (stop.report) log(formatExitReport(stop.report));
  } else if (stop.kind === 'reset') {
    log(`tskvm: the guest rebooted (${stop.reason}); tskvm ends the run like QEMU -no-reboot`);
  }
  return exitCodeFor(stop);
}
