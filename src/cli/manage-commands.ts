// The management verbs, after virsh: a long-running `tskvm daemon` holds
// named VMs, and short commands talk to it over its Unix socket
// (src/daemon/protocol.ts):
//
//   tskvm daemon [--socket PATH]           run the daemon (foreground; SIGTERM stops it and its VMs)
//   tskvm start <name> <config.json>       create and start a VM (MachineOptions as JSON)
//   tskvm list                             names, states, uptimes
//   tskvm console <name>                   attach this terminal (Ctrl-] or Ctrl-A x detaches)
//   tskvm suspend|resume <name>            pause / continue the vCPU
//   tskvm shutdown <name> [--timeout S]    ACPI power button; destroyed after S seconds (30)
//   tskvm destroy <name>                   pull the plug
//   tskvm info [name]                      without a name: this host's KVM; with one: the VM
//
// Every client verb takes `--socket PATH` (default: socket-path.ts). Errors
// are thrown as one sentence; main.ts prints "tskvm: <sentence>" and exits 1.
import * as fs from 'fs';
import * as path from 'path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { DaemonClient } from '../daemon/client';
import type { MachineConfigJson } from '../daemon/machine-config';
import { MAX_SHUTDOWN_TIMEOUT_SECONDS } from '../daemon/protocol';
import { DEFAULT_SHUTDOWN_TIMEOUT_SECONDS, runDaemon } from '../daemon/server';
import { defaultSocketPath } from '../daemon/socket-path';
import { parseSize } from '../vmm/size';
import { runConsole } from './daemon-console';
import { formatStop, formatVmInfo, formatVmList } from './manage-format';

export interface ManageCommandsContext {
  setExitCode(code: number): void;
  /** `tskvm info` without a VM name: the host's KVM API version and capabilities (main.ts). */
  kvmInfo(options: { kvmDevice: string }): number;
}

interface SocketOption {
  socket: string;
}

const socketOption = (): Option => new Option('--socket <path>', 'the daemon\'s Unix socket').default(defaultSocketPath());

function say(line: string): void {
  process.stdout.write(line + '\n');
}

/** Runs one request on a fresh connection. */
async function ask<T>(options: SocketOption, call: (client: DaemonClient) => Promise<T>): Promise<T> {
  const client = await DaemonClient.connect(options.socket);
  try {
    return await call(client);
  } finally {
    client.close();
  }
}

/** Reads a VM config file: JSON in the shape of MachineOptions; its relative paths are relative to the file. */
function readConfig(file: string): { config: MachineConfigJson; cwd: string } {
  const absolute = path.resolve(file);
  let text: string;
  try {
    text = fs.readFileSync(absolute, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new Error(code === 'ENOENT' ? `config file ${file} does not exist` : `config file ${file} cannot be read (${(err as Error).message})`);
  }
  try {
    return { config: JSON.parse(text) as MachineConfigJson, cwd: path.dirname(absolute) };
  } catch (err) {
    throw new Error(`config file ${file} is not valid JSON (${(err as Error).message})`);
  }
}

function timeoutOption(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0 || n > MAX_SHUTDOWN_TIMEOUT_SECONDS)
    throw new InvalidArgumentError(`must be a number of seconds from 0 to ${MAX_SHUTDOWN_TIMEOUT_SECONDS}`);
  return n;
}

function historyOption(value: string): number {
  try {
    const n = parseSize(value);
    if (n >= 1 && n <= 64 << 20) return n;
  } catch {
    // fall through
  }
  throw new InvalidArgumentError('must be a size from 1 byte to 64M (e.g. 64K)');
}

export function registerManageCommands(program: Command, context: ManageCommandsContext): void {
  const { setExitCode } = context;

  program
    .command('daemon')
    .description('run the management daemon in the foreground: it holds named VMs and answers `tskvm list/start/console/...` on a Unix socket (SIGTERM stops it and its VMs)')
    .addOption(socketOption())
    .option('--history <size>', 'console output kept per VM and replayed on attach', historyOption, 64 * 1024)
    .action(async (options: SocketOption & { history: number }) => {
      setExitCode(await runDaemon({ socketPath: options.socket, historyBytes: options.history }));
    });

  program
    .command('list')
    .description('list the daemon\'s VMs: name, state, uptime')
    .addOption(socketOption())
    .option('--json', 'print the daemon\'s answer as JSON')
    .action(async (options: SocketOption & { json?: boolean }) => {
      const { vms } = await ask(options, (c) => c.request({ op: 'list' }));
      say(options.json ? JSON.stringify(vms, null, 2) : formatVmList(vms));
      setExitCode(0);
    });

  program
    .command('start')
    .description('create VM <name> from a JSON config (the shape of the library\'s MachineOptions; paths relative to the file) and start it')
    .argument('<name>', 'a name for the VM (letters, digits, . _ -)')
    .argument('<config>', 'JSON config file, e.g. {"memory":"2M","boot":{"kind":"binary","file":"guest.bin","mode":"long"}}')
    .addOption(socketOption())
    .action(async (name: string, file: string, options: SocketOption) => {
      const { config, cwd } = readConfig(file);
      const vm = await ask(options, (c) => c.request({ op: 'start', name, config, cwd }));
      say(`VM ${vm.name} started (${vm.platform} platform, ${vm.memory} RAM)`);
      setExitCode(0);
    });

  program
    .command('console')
    .description('attach this terminal to a VM\'s serial console (recent output is replayed); Ctrl-] or Ctrl-A x detaches, the VM keeps running')
    .argument('<name>', 'the VM')
    .addOption(socketOption())
    .option('--no-replay', 'do not replay the output from before attaching')
    .action(async (name: string, options: SocketOption & { replay: boolean }) => {
      const code = await runConsole({
        socketPath: options.socket,
        name,
        replay: options.replay,
        input: process.stdin,
        output: process.stdout,
        log: (line) => process.stderr.write(`tskvm: ${line}\n`),
      });
      setExitCode(code);
    });

  program
    .command('suspend')
    .description('pause a VM\'s vCPU (its devices and console keep their state)')
    .argument('<name>', 'the VM')
    .addOption(socketOption())
    .action(async (name: string, options: SocketOption) => {
      await ask(options, (c) => c.request({ op: 'suspend', name }));
      say(`VM ${name} suspended`);
      setExitCode(0);
    });

  program
    .command('resume')
    .description('continue a suspended VM')
    .argument('<name>', 'the VM')
    .addOption(socketOption())
    .action(async (name: string, options: SocketOption) => {
      await ask(options, (c) => c.request({ op: 'resume', name }));
      say(`VM ${name} resumed`);
      setExitCode(0);
    });

  program
    .command('shutdown')
    .description('press the VM\'s ACPI power button and wait for it to power off; destroy it if it has not within the timeout (a guest without ACPI, e.g. on the bare platform, is destroyed then)')
    .argument('<name>', 'the VM')
    .option('--timeout <seconds>', 'grace time before the VM is destroyed', timeoutOption, DEFAULT_SHUTDOWN_TIMEOUT_SECONDS)
    .addOption(socketOption())
    .action(async (name: string, options: SocketOption & { timeout: number }) => {
      const result = await ask(options, (c) => c.request({ op: 'shutdown', name, timeoutSeconds: options.timeout }));
      if (!result.destroyed) say(`VM ${name} shut down: ${formatStop(result.stop)}`);
      else {
        const why = result.button === 'no-acpi' ? 'it has no ACPI power button' : result.button === 'not-enabled' ? 'its OS had not enabled the power button' : 'it did not power off';
        say(`VM ${name} destroyed after ${options.timeout} s: ${why}`);
      }
      setExitCode(0);
    });

  program
    .command('destroy')
    .description('stop a VM at once (pull the plug) and forget it')
    .argument('<name>', 'the VM')
    .addOption(socketOption())
    .action(async (name: string, options: SocketOption) => {
      await ask(options, (c) => c.request({ op: 'destroy', name }));
      say(`VM ${name} destroyed`);
      setExitCode(0);
    });

  program
    .command('info')
    .description('without a name: this host\'s KVM API version and capabilities; with a VM name: its config, state and exit statistics (from the daemon)')
    .argument('[name]', 'a VM held by the daemon')
    .option('--kvm-device <path>', 'the KVM device node (host info)', '/dev/kvm')
    .addOption(socketOption())
    .option('--json', 'print the daemon\'s answer as JSON (VM info)')
    .action(async (name: string | undefined, options: SocketOption & { kvmDevice: string; json?: boolean }) => {
      if (name === undefined) {
        setExitCode(context.kvmInfo({ kvmDevice: options.kvmDevice }));
        return;
      }
      const info = await ask(options, (c) => c.request({ op: 'info', name }));
      say(options.json ? JSON.stringify(info, null, 2) : formatVmInfo(info));
      setExitCode(0);
    });
}
