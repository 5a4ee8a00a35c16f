// The management daemon end to end: `tskvm daemon` as a child process, the
// CLI verbs against it, and two VMs of examples/05-serial-echo at once — one
// on the bare platform (no ACPI), one on the 'pc' platform (the guest enables
// and polls the ACPI power button). Needs the build (dist/) and the example
// guests (`npm run build`).
import { execFile, spawn, type ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { DaemonClient } from '../src/daemon/client';
import type { DaemonEvent, VmInfo, VmSummary } from '../src/daemon/protocol';
import { CLI, exampleGuest } from './helpers/paths';

jest.setTimeout(60000);

let dir: string;
let socketPath: string;
let daemon: ChildProcess;
let daemonLog = '';
let daemonExit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `tskvm ARGS --socket <test socket>`; `input` is piped to stdin. */
function tskvm(args: string[], input?: string): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [CLI, ...args, '--socket', socketPath], { timeout: 30000 }, (error, stdout, stderr) => {
      resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
    if (input !== undefined) child.stdin!.end(input);
    else child.stdin!.end();
  });
}

function startDaemon(socket: string): { child: ChildProcess; ready: Promise<void>; exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }> } {
  const child = spawn(process.execPath, [CLI, 'daemon', '--socket', socket], { stdio: ['ignore', 'ignore', 'pipe'] });
  const ready = new Promise<void>((resolve, reject) => {
    child.stderr!.on('data', (d: Buffer) => {
      daemonLog += d.toString();
      if (daemonLog.includes(`listening on ${socket}`)) resolve();
    });
    child.once('exit', () => reject(new Error(`the daemon exited early: ${daemonLog}`)));
  });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  return { child, ready, exit };
}

/** A console attached through the protocol, collecting what the VM prints. */
class ConsoleTap {
  text = '';
  closed = false;
  private waiters: (() => void)[] = [];
  constructor(readonly socket: net.Socket) {
    socket.on('data', (d: Buffer) => {
      this.text += d.toString('latin1');
      this.poke();
    });
    socket.on('close', () => {
      this.closed = true;
      this.poke();
    });
    socket.resume();
  }
  static async attach(name: string): Promise<ConsoleTap> {
    const client = await DaemonClient.connect(socketPath);
    const { socket } = await client.openConsole(name);
    return new ConsoleTap(socket);
  }
  type(text: string): void {
    this.socket.write(text);
  }
  /** Resolves when `predicate` holds; fails after `ms`. */
  async until(predicate: () => boolean, what: string, ms = 10000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!predicate()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; console so far: ${JSON.stringify(this.text)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 50);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }
  waitFor(needle: string, ms?: number): Promise<void> {
    return this.until(() => this.text.includes(needle), JSON.stringify(needle), ms);
  }
  private poke(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}

function writeConfig(file: string, platform: 'bare' | 'pc'): string {
  const config = { memory: '2M', platform, boot: { kind: 'binary', file: path.relative(path.dirname(file), exampleGuest('05-serial-echo')), mode: 'long' } };
  fs.writeFileSync(file, JSON.stringify(config));
  return file;
}

async function list(): Promise<VmSummary[]> {
  const r = await tskvm(['list', '--json']);
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout) as VmSummary[];
}

const events: DaemonEvent[] = [];
let watcher: DaemonClient;
let bareConfig: string;
let acpiConfig: string;
let consoleA: ConsoleTap;
let consoleB: ConsoleTap;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tskvm-daemon-'));
  socketPath = path.join(dir, 'tskvm.sock');
  fs.mkdirSync(path.join(dir, 'vms'));
  bareConfig = writeConfig(path.join(dir, 'vms', 'echo.json'), 'bare');
  acpiConfig = writeConfig(path.join(dir, 'vms', 'echo-acpi.json'), 'pc');
  const started = startDaemon(socketPath);
  daemon = started.child;
  daemonExit = started.exit;
  await started.ready;
  watcher = await DaemonClient.connect(socketPath);
  await watcher.watch((event) => events.push(event));
});

afterAll(async () => {
  watcher?.close();
  if (daemon.exitCode === null && daemon.signalCode === null) {
    daemon.kill('SIGTERM');
    await daemonExit;
  }
  fs.rmSync(dir, { recursive: true, force: true });
});

test('the daemon listens on a private socket and refuses a second daemon', async () => {
  expect(fs.statSync(socketPath).mode & 0o777).toBe(0o600);
  const second = await new Promise<CliResult>((resolve) =>
    execFile(process.execPath, [CLI, 'daemon', '--socket', socketPath], { timeout: 10000 }, (error, stdout, stderr) =>
      resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    ),
  );
  expect(second.code).toBe(1);
  expect(second.stderr).toBe(`tskvm: a tskvm daemon is already listening on ${socketPath}\n`);
  expect(await list()).toEqual([]);
});

test('two VMs start at once; names are unique', async () => {
  const [a, b] = await Promise.all([tskvm(['start', 'a', bareConfig]), tskvm(['start', 'b', acpiConfig])]);
  expect(a).toEqual({ code: 0, stdout: 'VM a started (bare platform, 2M RAM)\n', stderr: '' });
  expect(b).toEqual({ code: 0, stdout: 'VM b started (pc platform, 2M RAM)\n', stderr: '' });
  const again = await tskvm(['start', 'a', bareConfig]);
  expect(again.code).toBe(1);
  expect(again.stderr).toBe('tskvm: a VM named "a" already exists (running)\n');
  const vms = await list();
  expect(vms.map((vm) => [vm.name, vm.state, vm.platform])).toEqual([
    ['a', 'running', 'bare'],
    ['b', 'running', 'pc'],
  ]);
  const text = await tskvm(['list']);
  expect(text.stdout).toMatch(/^NAME +STATE +UPTIME +PLATFORM +MEMORY\na +running +\d+\.\ds +bare +2M\nb +running +\d+\.\ds +pc +2M\n$/);
});

test('each console replays its prompt and answers its own lines', async () => {
  [consoleA, consoleB] = await Promise.all([ConsoleTap.attach('a'), ConsoleTap.attach('b')]);
  await consoleA.waitFor('echo> ');
  await consoleB.waitFor('echo> ');
  expect(consoleA.text.startsWith('serial echo guest')).toBe(true); // history from before we attached
  consoleA.type('hello from a\r');
  consoleB.type('and b here\r');
  await consoleA.waitFor('you typed: hello from a\r\necho> ');
  await consoleB.waitFor('you typed: and b here\r\necho> ');
  expect(consoleA.text).not.toContain('and b here');
  expect(consoleB.text).not.toContain('hello from a');
});

test('the CLI console: piped input, then detached on end of input; the VM keeps running', async () => {
  const r = await tskvm(['console', 'a', '--no-replay'], 'piped line\r');
  expect(r.code).toBe(0);
  expect(r.stdout).toContain('piped line\r\nyou typed: piped line\r\necho> ');
  expect(r.stdout).not.toContain('serial echo guest'); // --no-replay
  expect(r.stderr).toContain('tskvm: detached from VM a (it keeps running)');
  await consoleA.waitFor('you typed: piped line'); // a second console on the same VM sees it too
  // Ctrl-] detaches at once; what came before it still reaches the guest.
  const r2 = await tskvm(['console', 'a', '--no-replay'], 'x\x1dnot sent\r');
  expect(r2.code).toBe(0);
  expect(r2.stderr).toContain('detached from VM a');
  consoleA.type('\r');
  await consoleA.waitFor('you typed: x\r\n');
  expect(consoleA.text).not.toContain('not sent');
  expect((await list()).find((vm) => vm.name === 'a')?.state).toBe('running');
});

test('a suspended VM does not answer while the other does; resume delivers the queued input', async () => {
  const r = await tskvm(['suspend', 'a']);
  expect(r).toEqual({ code: 0, stdout: 'VM a suspended\n', stderr: '' });
  expect((await list()).map((vm) => vm.state)).toEqual(['paused', 'running']);
  const before = consoleA.text.length;
  consoleA.type('while paused\r');
  consoleB.type('still here\r');
  await consoleB.waitFor('you typed: still here');
  await new Promise((resolve) => setTimeout(resolve, 300));
  expect(consoleA.text.length).toBe(before); // not even the echo
  expect((await tskvm(['resume', 'a'])).stdout).toBe('VM a resumed\n');
  await consoleA.waitFor('you typed: while paused');
  expect((await list()).map((vm) => vm.state)).toEqual(['running', 'running']);
});

test('info shows the config, where the vCPU is, and exits by reason', async () => {
  const r = await tskvm(['info', 'a', '--json']);
  expect(r.code).toBe(0);
  const info = JSON.parse(r.stdout) as VmInfo;
  expect(info).toMatchObject({ name: 'a', state: 'running', platform: 'bare', memory: '2M', consoles: 1 });
  expect(info.boot).toEqual({ kind: 'binary', file: exampleGuest('05-serial-echo'), mode: 'long', load: 0x8000, entry: 0x8000 });
  expect(info.statistics!.vcpu).toMatchObject({ cpl: 0, mode: expect.stringMatching(/64-bit/) });
  expect(info.statistics!.vcpu!.rip).toMatch(/^0x8[0-9a-f]{3}$/); // inside the 588-byte guest at 0x8000
  expect(info.statistics!.exits['io-in']).toBeGreaterThan(100); // LSR polls
  expect(info.statistics!.exits['io-out']).toBeGreaterThan(50); // echoes and prompts
  expect(info.statistics!.devices.serial8250).toBeGreaterThan(150);
  const text = await tskvm(['info', 'a']);
  expect(text.stdout).toMatch(/^Name: +a\nState: +running\n/);
  expect(text.stdout).toMatch(/^vCPU 0: +RIP 0x8[0-9a-f]+, CPL 0, 64-bit/m);
  expect(text.stdout).toMatch(/^io-in +\d+$/m);
  // Without a name, `info` still describes the host's KVM.
  const host = await tskvm(['info']);
  expect(host.stdout).toMatch(/^KVM API version 12/);
});

test('errors are one sentence with exit code 1', async () => {
  const cases: [string[], string][] = [
    [['info', 'nosuch'], 'tskvm: no VM named "nosuch"\n'],
    [['destroy', 'nosuch'], 'tskvm: no VM named "nosuch"\n'],
    [['console', 'nosuch'], 'tskvm: no VM named "nosuch"\n'],
    [['resume', 'b'], ''], // resuming a running VM is a no-op
    [['start', 'bad name', bareConfig], 'tskvm: invalid VM name "bad name": use 1 to 64 letters, digits, \'.\', \'_\' or \'-\', starting with a letter or digit\n'],
    [['start', 'c', path.join(dir, 'missing.json')], `tskvm: config file ${path.join(dir, 'missing.json')} does not exist\n`],
    [['shutdown', 'a', '--timeout', 'soon'], "tskvm: option '--timeout <seconds>' argument 'soon' is invalid. must be a number of seconds from 0 to 86400\n"],
  ];
  const results = await Promise.all(cases.map(([args]) => tskvm(args)));
  results.forEach((r, i) => {
    expect(r.stderr).toBe(cases[i]![1]);
    expect(r.code).toBe(cases[i]![1] ? 1 : 0);
  });
  const noDaemon = await new Promise<CliResult>((resolve) =>
    execFile(process.execPath, [CLI, 'list', '--socket', path.join(dir, 'none.sock')], (error, stdout, stderr) => resolve({ code: error ? 1 : 0, stdout, stderr })),
  );
  expect(noDaemon.code).toBe(1);
  expect(noDaemon.stderr).toBe(`tskvm: no tskvm daemon is listening on ${path.join(dir, 'none.sock')} (start one with \`tskvm daemon\`, or pass --socket)\n`);
});

test('shutdown of a guest without ACPI: destroyed after the timeout', async () => {
  expect((await tskvm(['start', 'c', bareConfig])).code).toBe(0);
  const started = Date.now();
  const r = await tskvm(['shutdown', 'c', '--timeout', '1']);
  expect(r).toEqual({ code: 0, stdout: 'VM c destroyed after 1 s: it has no ACPI power button\n', stderr: '' });
  expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
  expect((await list()).map((vm) => vm.name)).toEqual(['a', 'b']);
  // A watcher saw the whole life of c.
  expect(events.filter((e) => e.name === 'c')).toEqual([
    { event: 'state', name: 'c', state: 'starting' },
    { event: 'state', name: 'c', state: 'running' },
    { event: 'state', name: 'c', state: 'stopped' },
    { event: 'stopped', name: 'c', stop: { kind: 'stopped', reason: expect.any(String) } },
    { event: 'removed', name: 'c' },
  ]);
});

test('destroy one VM: its console closes, the other keeps answering', async () => {
  const r = await tskvm(['destroy', 'a']);
  expect(r).toEqual({ code: 0, stdout: 'VM a destroyed\n', stderr: '' });
  await consoleA.until(() => consoleA.closed, 'the console of a to close');
  consoleB.type('after a\r');
  await consoleB.waitFor('you typed: after a');
  expect((await list()).map((vm) => vm.name)).toEqual(['b']);
});

test('shutdown of the ACPI guest: the power button makes it power off by itself (a suspended VM is resumed first)', async () => {
  expect((await tskvm(['suspend', 'b'])).code).toBe(0);
  const r = await tskvm(['shutdown', 'b', '--timeout', '20']);
  expect(r).toEqual({ code: 0, stdout: 'VM b shut down: poweroff: ACPI S5 (the guest powered off)\n', stderr: '' });
  await consoleB.waitFor('power button pressed: powering off');
  await consoleB.until(() => consoleB.closed, 'the console of b to close');
  expect(await list()).toEqual([]);
  expect(daemonLog).toContain('VM b: power button pressed');
});

test('a VM that halts by itself stays listed as stopped until destroyed', async () => {
  expect((await tskvm(['start', 'd', bareConfig])).code).toBe(0);
  const r = await tskvm(['console', 'd'], 'halt\r');
  expect(r.stdout).toContain('bye\r\n');
  expect(r.stderr).toContain('tskvm: VM d stopped: halt: hlt');
  const [vm] = await list();
  expect(vm).toMatchObject({ name: 'd', state: 'stopped', stop: { kind: 'halt', reason: 'hlt' } });
  expect((await tskvm(['list'])).stdout).toMatch(/^d +stopped \(halt: hlt\)/m);
  expect((await tskvm(['suspend', 'd'])).stderr).toBe('tskvm: VM "d" is stopped: only a running VM can be suspended\n');
  expect((await tskvm(['destroy', 'd'])).code).toBe(0);
  expect(await list()).toEqual([]);
});

test('SIGTERM stops the daemon and its VMs and removes the socket', async () => {
  expect((await tskvm(['start', 'e', bareConfig])).code).toBe(0);
  daemon.kill('SIGTERM');
  expect(await daemonExit).toEqual({ code: 0, signal: null });
  expect(fs.existsSync(socketPath)).toBe(false);
  expect(daemonLog).toContain('SIGTERM: stopping');
  expect(daemonLog).toContain('stopped 1 VM');
});

test('a daemon killed hard leaves a stale socket; the next one removes it and starts', async () => {
  const killed = startDaemon(socketPath);
  await killed.ready;
  killed.child.kill('SIGKILL');
  await killed.exit;
  expect(fs.lstatSync(socketPath).isSocket()).toBe(true);
  const next = startDaemon(socketPath);
  await next.ready;
  expect(await list()).toEqual([]);
  next.child.kill('SIGTERM');
  expect(await next.exit).toEqual({ code: 0, signal: null });
});
