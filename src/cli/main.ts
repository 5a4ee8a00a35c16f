// The `tskvm` command.
//
// Exit codes (exit-codes.ts): 0 the guest halted, powered off or reset; 1 a
// host-side problem (bad option, missing file, no /dev/kvm, ...) reported in
// one sentence; 2-5 the guest stopped on an error, with a report on stderr:
// 2 emulation failure (or another guest error), 3 triple fault, 4 failed VM
// entry, 5 unknown exit reason.
import * as fs from 'fs';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { Kvm } from '../kvm/kvm';
import { MAX_CPUS, SyncMachine, type DiskConfig, type NetConfig } from '../vmm/sync-machine';
import { parseMac } from '../virtio/virtio-net';
import { formatExitReport } from '../vmm/exit-report';
import { formatCountTable } from '../vmm/exit-stats';
import { parseAddress, parseSize } from '../vmm/size';
import type { CpuMode } from '../arch/x86/modes';
import { runCommand, type RunOptions } from './run-command';
import { registerManageCommands } from './manage-commands';
import { writeInitramfs } from '../initramfs/build';
import { webOption, WEB_OPTION_HELP } from './web-option';
import { runBinaryOnWorker } from './run-binary-async';
import type { ListenAddress } from '../web/listen-address';
import { gdbAddressOption, GDB_OPTION_HELP, type GdbAddress } from './gdb-option';

import { EXIT_HOST_ERROR, EXIT_OK, exitCodeFor } from './exit-codes';
import { ConsoleOutput, droppedOutputLine } from './console-output';
import { EMULATOR_CMDLINE_SUMMARY } from '../arch/x86/cpuid-probe';

export { EXIT_OK, EXIT_HOST_ERROR, EXIT_GUEST_ERROR, EXIT_TRIPLE_FAULT, EXIT_ENTRY_FAILED, EXIT_UNKNOWN_EXIT } from './exit-codes';

/** An error meant for the user: its message is the one sentence we print. */
export class CliError extends Error {}

function addressOption(value: string): number {
  try {
    return parseAddress(value);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

/** `--disk path[,ro][,serial=ID]` (repeatable): kvmtool's `--disk`, with QEMU's `readonly` spelled `ro`. */
function diskOption(value: string, previous: DiskConfig[] = []): DiskConfig[] {
  const [file, ...flags] = value.split(',');
  if (!file) throw new InvalidArgumentError('needs an image path: --disk PATH[,ro][,serial=ID]');
  const disk: DiskConfig = { path: file };
  for (const flag of flags) {
    if (flag === 'ro' || flag === 'readonly') disk.readOnly = true;
    else if (flag.startsWith('serial=')) disk.serial = flag.slice('serial='.length);
    else throw new InvalidArgumentError(`unknown disk option "${flag}" (known: ro, serial=ID)`);
  }
  return [...previous, disk];
}

/** `--net tap=NAME[,mac=XX:XX:XX:XX:XX:XX]` (repeatable), like QEMU's -nic tap,ifname=. */
function netOption(value: string, previous: NetConfig[] = []): NetConfig[] {
  const fields = new Map(value.split(',').map((f) => [f.split('=')[0]!, f.slice(f.indexOf('=') + 1)] as const));
  const tap = fields.get('tap');
  if (!tap || !value.includes('tap=')) throw new InvalidArgumentError('expected tap=NAME[,mac=XX:XX:XX:XX:XX:XX]');
  for (const key of fields.keys()) if (key !== 'tap' && key !== 'mac') throw new InvalidArgumentError(`unknown net option "${key}" (known: tap, mac)`);
  const mac = fields.get('mac');
  if (mac !== undefined) {
    try {
      parseMac(mac);
    } catch (err) {
      throw new InvalidArgumentError((err as Error).message);
    }
  }
  return [...previous, { tap, ...(mac === undefined ? {} : { mac }) }];
}

/** `run-binary --cpus N`: 1..MAX_CPUS (they share one thread, sync-machine.ts). */
function cpusOption(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > MAX_CPUS) throw new InvalidArgumentError(`must be an integer from 1 to ${MAX_CPUS}`);
  return n;
}

/**
 * `run-binary`'s platform: as given, else 'pc' when there are several vCPUs
 * (they need the in-kernel APICs) or virtio devices (they live on PCI).
 */
function binaryPlatform(options: { cpus: number; platform?: 'bare' | 'pc'; disk?: DiskConfig[]; rng?: boolean }): 'bare' | 'pc' {
  if (options.platform === 'bare' && (options.disk?.length || options.rng)) throw new CliError("--disk and --rng put virtio devices on PCI, which needs --platform pc (not bare).");
  return options.platform ?? (options.cpus > 1 || options.disk?.length || options.rng ? 'pc' : 'bare');
}

function sizeOption(value: string): string {
  try {
    parseSize(value);
    return value;
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

function readImage(file: string, what: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new CliError(`${what} ${file} does not exist.`);
    if (code === 'EACCES') throw new CliError(`no permission to read ${what} ${file}.`);
    if (code === 'EISDIR') throw new CliError(`${what} ${file} is a directory, not a file.`);
    throw new CliError(`cannot read ${what} ${file}: ${(err as Error).message}`);
  }
}

interface RunBinaryOptions {
  mode: CpuMode;
  load: number;
  entry?: number;
  mem: string;
  cpus: number;
  platform?: 'bare' | 'pc';
  disk?: DiskConfig[];
  rng?: boolean;
  trace?: boolean;
  stats?: boolean;
  logUnclaimed?: boolean;
  kvmDevice: string;
  web?: ListenAddress;
  gdb?: GdbAddress;
}

function printStats(machine: SyncMachine): void {
  const s = machine.statistics();
  process.stderr.write('\n' + formatCountTable('exit reason', s.exits) + '\n\n');
  process.stderr.write(formatCountTable('device', s.devices) + '\n\n');
  process.stderr.write(formatCountTable('unclaimed', s.unclaimed) + '\n');
}

function runBinary(file: string, options: RunBinaryOptions): number {
  const image = readImage(file, 'binary');
  const machine = SyncMachine.create({
    memory: options.mem,
    cpus: options.cpus,
    platform: options.platform,
    disks: options.disk,
    rng: options.rng,
    trace: options.trace,
    logUnclaimed: options.logUnclaimed,
    kvmPath: options.kvmDevice,
  });
  // Never process.stdout.write here: on a pipe nobody reads it blocks the vCPU (console-output.ts).
  const consoleOut = ConsoleOutput.forStdout();
  try {
    machine.on('output', (data) => consoleOut.write(data));
    machine.on('log', (message) => process.stderr.write(`tskvm: ${message}\n`));
    machine.loadBinary(image, options.load);
    machine.setMode(options.mode, { entry: options.entry ?? options.load });
    const stop = machine.runSync();
    const dropped = consoleOut.finish();
    if (dropped > 0) process.stderr.write(droppedOutputLine(dropped) + '\n');
    if (options.stats) printStats(machine);
    if (stop.kind === 'error') {
      process.stderr.write(`tskvm: guest stopped: ${stop.reason}\n`);
      if (stop.report) process.stderr.write(formatExitReport(stop.report) + '\n');
    }
    return exitCodeFor(stop);
  } finally {
    consoleOut.finish(0);
    machine.close();
  }
}

function info(options: { kvmDevice: string }): number {
  const kvm = Kvm.open(options.kvmDevice);
  try {
    console.log(`KVM API version ${kvm.apiVersion}, vCPU mmap size ${kvm.vcpuMmapSize} bytes`);
    for (const [name, value] of Object.entries(kvm.capabilities())) console.log(`  ${name.padEnd(28)} ${value}`);
  } finally {
    kvm.close();
  }
  return EXIT_OK;
}

export function buildProgram(setExitCode: (code: number) => void): Command {
  const program = new Command('tskvm')
    .description('A virtual machine monitor for Linux/KVM, written in TypeScript')
    .exitOverride()
    .configureOutput({ outputError: (str, write) => write(`tskvm: ${str.replace(/^error: /, '')}`) });

  program
    .command('run-binary')
    .description('run a flat binary (a bare-metal program) with a debug console on port 0xE9 and COM1 at 0x3F8')
    .argument('<file>', 'flat binary image')
    .addOption(new Option('--mode <mode>', 'CPU mode at entry').choices(['real', 'protected', 'long']).default('real'))
    .option('--load <address>', 'guest physical load address', addressOption, 0x8000)
    .option('--entry <address>', 'entry point (default: the load address)', addressOption)
    .option('--mem <size>', 'guest RAM size (e.g. 2M, 64M)', sizeOption, '2M')
    .option('--cpus <n>', `vCPUs (1 to ${MAX_CPUS}): vCPU 0 starts at the entry point, the others wait for INIT/SIPI; more than 1 implies --platform pc`, cpusOption, 1)
    .addOption(
      new Option(
        '--platform <platform>',
        'bare: HLT ends the run; pc: in-kernel APICs, PIC and PIT, i8042, ACPI PM (HLT does not end the run: the guest ends it with an i8042 reset or ACPI S5) (default: bare; pc with --cpus > 1)',
      ).choices(['bare', 'pc']),
    )
    .option('--disk <path[,ro]>', 'a virtio-blk disk on PCI backed by a raw image (repeatable; implies --platform pc)', diskOption)
    .option('--rng', 'a virtio-rng device on PCI (implies --platform pc)')
    .option('--trace', 'print every VM exit, decoded, on stderr')
    .option('--stats', 'print exit and device statistics on stderr at the end')
    .option('--log-unclaimed', 'log accesses to ports/addresses no device claims')
    .option('--kvm-device <path>', 'the KVM device node', '/dev/kvm')
    .option('--web <host:port>', WEB_OPTION_HELP, webOption)
    .option('--gdb <host:port>', GDB_OPTION_HELP, gdbAddressOption)
    .action(async (file: string, given: RunBinaryOptions) => {
      const options = { ...given, platform: binaryPlatform(given) };
      const web = options.web;
      const gdb = options.gdb;
      // The web console and the gdb stub need the event loop free: the guest then runs on a vCPU worker.
      if (gdb || web) return setExitCode(await runBinaryOnWorker(readImage(file, 'binary'), { ...options, gdb, web }, (line) => process.stderr.write(line + '\n')));
      setExitCode(runBinary(file, options));
    });

  program
    .command('run')
    .description('boot a Linux kernel with an initramfs; the guest serial console is this terminal (Ctrl-A x quits, Ctrl-A h helps)')
    .requiredOption('-k, --kernel <file>', 'kernel: bzImage or ELF vmlinux')
    .option('-i, --initrd <file>', 'initramfs (see `tskvm initramfs`)')
    .option('-p, --append <cmdline>', `kernel command line (default "console=ttyS0 panic=-1")`)
    .option('-m, --memory <size>', 'guest RAM (e.g. 256M, 1G)', sizeOption, '256M')
    .option('-c, --cpus <n>', 'number of vCPUs', (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1 || n > 64) throw new InvalidArgumentError('must be an integer from 1 to 64');
      return n;
    }, 1)
    .option('--disk <path[,ro]>', 'a virtio-blk disk backed by a raw image (repeatable: vda, vdb, ...; module virtio_blk)', diskOption)
    .option('--net <tap=NAME[,mac=..]>', 'a virtio-net NIC on host tap NAME (repeatable; module virtio_net)', netOption)
    .addOption(new Option('--console <device>', 'where the terminal\'s input goes: the serial port (ttyS0) or a virtio console (hvc0; module virtio_console, and console=hvc0 in --append)').choices(['serial', 'virtio']).default('serial'))
    .option('--rng', 'a virtio-rng device (the guest\'s /dev/hwrng; modules virtio_pci, virtio_rng)')
    .option('--no-io-thread', 'serve the virtio disks, NICs and rng inside the vCPU\'s exits instead of on the I/O thread (which KVM signals through ioeventfds and which interrupts the guest through irqfds)')
    .option('--no-emulator-workarounds', `do not add '${EMULATOR_CMDLINE_SUMMARY}' to the kernel command line when this KVM ignores the CPUID policy`)
    .option('--trace', 'print every VM exit, decoded, on stderr')
    .option('--stats', 'print exit and device statistics on stderr at the end')
    .option('--log-unclaimed', 'log accesses to ports/addresses no device claims')
    .option('--kvm-device <path>', 'the KVM device node', '/dev/kvm')
    .option('--web <host:port>', WEB_OPTION_HELP, webOption)
    .option('--gdb <host:port>', GDB_OPTION_HELP, gdbAddressOption)
    .action(async (options: RunOptions) => setExitCode(await runCommand(options, (line) => process.stderr.write(line + '\n'))));

  program
    .command('initramfs')
    .description('build a busybox initramfs (/init mounts /proc, /sys, /dev, prints "tskvm-init: ready" and starts a shell)')
    .requiredOption('-o, --output <file>', 'where to write the archive (gzip cpio)')
    .option('--cache <dir>', 'guest cache from scripts/get-linux-guest.sh', 'guest-cache')
    .option('--busybox <file>', 'static busybox binary (default: <cache>/busybox)')
    .option('--modules <names>', 'comma-separated kernel modules to load at boot, with their dependencies', (v) => v.split(',').filter(Boolean))
    .option('--modules-dir <dir>', 'lib/modules/<version> to take them from (default: <cache>/modules)')
    .option('--run <command>', 'shell command /init runs before the shell (repeatable)', (v: string, prev: string[] = []) => [...prev, v])
    .addOption(new Option('--on-shell-exit <action>', 'what /init does when the shell exits').choices(['poweroff', 'reboot', 'halt']).default('poweroff'))
    .action((options: { output: string; cache: string; busybox?: string; modules?: string[]; modulesDir?: string; run?: string[]; onShellExit: 'poweroff' | 'reboot' | 'halt' }) => {
      const result = writeInitramfs({
        output: options.output,
        cache: options.cache,
        busybox: options.busybox,
        modules: options.modules,
        modulesDir: options.modulesDir,
        initCommands: options.run,
        onShellExit: options.onShellExit,
      });
      process.stderr.write(`tskvm: ${result.summary}\n`);
      setExitCode(EXIT_OK);
    });

  // daemon, list, start, console, suspend, resume, shutdown, destroy, and `info [name]` (host KVM info without a name).
  registerManageCommands(program, { setExitCode, kvmInfo: info });

  return program;
}

/** Runs the CLI; resolves to the process exit code. */
export async function main(argv: string[]): Promise<number> {
  let exitCode = EXIT_OK;
  const program = buildProgram((code) => (exitCode = code));
  try {
    await program.parseAsync(argv);
    return exitCode;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? EXIT_OK : EXIT_HOST_ERROR;
    const message = err instanceof Error ? err.message : String(err);
    process.stderr.write(`tskvm: ${message}\n`);
    return EXIT_HOST_ERROR;
  }
}
