// The gdb stub on the real /dev/kvm: Debian's gdb against
// `tskvm run-binary --gdb` with example 03, and a raw protocol client for
// what gdb's batch mode cannot show (Ctrl-C, garbled packets, a second
// client, detach). Under CI=true a missing gdb fails the suite (.ci/run
// installs it); elsewhere those tests are skipped with a note.
import { spawn, spawnSync } from 'child_process';
import * as net from 'net';
import { Machine } from '../src';
import { GdbStub } from '../src/gdb/gdb-stub';
import { encodePacket, RspDecoder, type RspEvent } from '../src/gdb/rsp-packet';
import { AMD64_REGISTERS } from '../src/gdb/amd64-registers';
import { CLI, exampleGuest } from './helpers/paths';

const CI = process.env.CI === 'true' || process.env.CI === '1';
const HAVE_GDB = spawnSync('gdb', ['--version'], { encoding: 'utf8' }).status === 0;
if (!HAVE_GDB && !CI) console.warn('gdb is not installed (apt-get install gdb): skipping the tests that run it');
const withGdb = HAVE_GDB || CI ? it : it.skip;

const LONG_MODE_GUEST = exampleGuest('03-long-mode-serial');

interface CliRun {
  port: Promise<number>;
  exit: Promise<number | null>;
  stdout: () => string;
  stderr: () => string;
  kill: () => void;
}

/** `tskvm run-binary GUEST --mode long --gdb 127.0.0.1:0`; `port` resolves from its "waiting for gdb" line. */
function startTskvm(): CliRun {
  const child = spawn(process.execPath, [CLI, 'run-binary', LONG_MODE_GUEST, '--mode', 'long', '--gdb', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const port = new Promise<number>((resolve, reject) => {
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
      const m = /waiting for gdb on 127\.0\.0\.1:(\d+)/.exec(err);
      if (m) resolve(Number(m[1]));
    });
    void exit.then((code) => reject(new Error(`tskvm exited (${code}) before listening: ${err}`)));
  });
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  return { port, exit, stdout: () => out, stderr: () => err, kill: () => child.kill('SIGKILL') };
}

/** gdb -batch with these commands against PORT; resolves with everything it printed. */
function runGdb(port: number, commands: string[]): Promise<{ status: number | null; output: string }> {
  const args = ['-batch', '-nx', '-ex', 'set architecture i386:x86-64', '-ex', `target remote 127.0.0.1:${port}`, ...commands.flatMap((c) => ['-ex', c])];
  const child = spawn('gdb', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  return new Promise((resolve) => child.on('exit', (status) => (clearTimeout(timer), resolve({ status, output }))));
}

function requireGdb(): void {
  if (!HAVE_GDB) throw new Error('gdb is not installed: CI must have it (.ci/run installs the Debian package gdb)');
}

describe('Debian gdb against tskvm run-binary --gdb', () => {
  withGdb(
    'stops at a breakpoint, reads registers and memory, single-steps, and continues to the end of the guest',
    async () => {
      requireGdb();
      const tskvm = startTskvm();
      try {
        const gdb = await runGdb(await tskvm.port, [
          'info registers rip',
          // putc's `out %al,(%dx)` (examples/03-long-mode-serial/guest.S): a Z0 breakpoint, hardware underneath.
          'break *0x8076',
          'continue',
          'info registers rip rdi',
          'x/4xb 0x8078',
          'stepi',
          'info registers rip',
          'delete',
          // After print() returned: RCX holds the character count.
          'hbreak *0x8011',
          'continue',
          'print $rcx',
          'x/s 0x8078',
          'delete',
          'continue',
        ]);
        const out = gdb.output;
        expect(out).toMatch(/^rip\s+0x8000\s/m); // stopped before the first instruction
        expect(out).toMatch(/Breakpoint 1, 0x0000000000008076 in \?\? \(\)/);
        expect(out).toMatch(/^rip\s+0x8076\s/m);
        expect(out).toMatch(/^rdi\s+0x48\s+72$/m); // 'H', the first character
        expect(out).toMatch(/^0x8078:\s+0x48\s+0x65\s+0x6c\s+0x6c$/m);
        expect(out).toMatch(/^0x0000000000008077 in \?\? \(\)$/m); // stepi: the next instruction
        expect(out).toMatch(/^rip\s+0x8077\s/m);
        expect(out).toMatch(/Breakpoint 2, 0x0000000000008011 in \?\? \(\)/);
        expect(out).toMatch(/^\$1 = 29$/m);
        expect(out).toMatch(/^0x8078:\s+"Hello from 64-bit long mode!\\n"$/m);
        expect(out).toMatch(/\[Inferior 1 \(Remote target\) exited normally\]/);
        expect(await tskvm.exit).toBe(0);
        expect(tskvm.stdout()).toBe('Hello from 64-bit long mode!\n');
        expect(tskvm.stderr()).toMatch(/^tskvm: the guest is stopped before its first instruction; waiting for gdb on 127\.0\.0\.1:\d+ /);
      } finally {
        tskvm.kill();
      }
    },
    90_000,
  );

  withGdb(
    "gdb's kill ends the VM; the disassembly at the entry point is the guest's",
    async () => {
      requireGdb();
      const tskvm = startTskvm();
      try {
        const gdb = await runGdb(await tskvm.port, ['x/2i $pc', 'stepi', 'kill']);
        expect(gdb.output).toMatch(/=> 0x8000:\s+lea\s+0x71\(%rip\),%rsi/);
        expect(gdb.output).toMatch(/0x8007:\s+call\s+0x804c/);
        expect(gdb.output).toMatch(/0x0000000000008007 in \?\? \(\)/);
        expect(gdb.output).toMatch(/\[Inferior 1 \(Remote target\) killed\]/);
        expect(await tskvm.exit).toBe(0);
        expect(tskvm.stdout()).toBe('');
      } finally {
        tskvm.kill();
      }
    },
    90_000,
  );
});

/** A minimal RSP client: one request at a time, acks handled. */
class RspClient {
  private readonly decoder = new RspDecoder(1 << 16);
  private readonly events: RspEvent[] = [];
  private wake?: () => void;
  readonly closed: Promise<void>;

  private constructor(readonly socket: net.Socket) {
    socket.setNoDelay(true); // as gdb does: small packets go out at once
    socket.on('data', (chunk: Buffer) => {
      this.events.push(...this.decoder.push(chunk));
      this.wake?.();
    });
    this.closed = new Promise((resolve) => socket.on('close', () => resolve()));
  }

  static connect(port: number): Promise<RspClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1', () => resolve(new RspClient(socket)));
      socket.once('error', reject);
    });
  }

  async next(): Promise<RspEvent> {
    while (this.events.length === 0) await new Promise<void>((resolve) => (this.wake = resolve));
    return this.events.shift()!;
  }

  /** Sends a packet, expects '+', returns the reply's payload (acked). */
  async request(payload: string): Promise<string> {
    this.socket.write(encodePacket(payload));
    expect(await this.next()).toEqual({ kind: 'ack' });
    return this.reply();
  }

  async reply(): Promise<string> {
    const event = await this.next();
    if (event.kind !== 'packet') throw new Error(`expected a packet, got ${event.kind}`);
    this.socket.write('+');
    return Buffer.from(event.payload).toString('latin1');
  }
}

const le64 = (v: number): string => Buffer.from(new BigUint64Array([BigInt(v)]).buffer).toString('hex');
const RIP = AMD64_REGISTERS.findIndex((r) => r.name === 'rip').toString(16);

describe('the stub, packet by packet', () => {
  it('serves queries, registers, memory and breakpoints; Ctrl-C stops a spinning guest; D lets it finish', async () => {
    const machine = new Machine({
      memory: '2M',
      boot: { kind: 'binary', file: LONG_MODE_GUEST, mode: 'long' },
      debug: { waitForDebugger: true },
    });
    let output = '';
    machine.on('output', (d) => (output += d.toString()));
    await machine.start();
    const stub = await GdbStub.listen(machine, { host: '127.0.0.1', port: 0 });
    const client = await RspClient.connect(stub.address.port);
    try {
      expect(await client.request('qSupported:multiprocess+;swbreak+;hwbreak+')).toBe('PacketSize=1000;qXfer:features:read+');
      expect(await client.request('vMustReplyEmpty')).toBe('');
      expect(await client.request('vCont?')).toBe('');
      expect(await client.request('Z2,8078,1')).toBe(''); // watchpoints: not offered
      expect(await client.request('?')).toBe('T05thread:01;');
      expect(await client.request('qfThreadInfo')).toBe('m1');
      expect(await client.request('qC')).toBe('QC1');

      // A garbled packet is refused with '-'.
      client.socket.write('$g#00');
      expect(await client.next()).toEqual({ kind: 'nack' });

      // target.xml, read in small parts, is the whole description.
      let xml = '';
      for (let part = await client.request('qXfer:features:read:target.xml:0,100'); ; ) {
        xml += part.slice(1);
        if (part[0] === 'l') break;
        part = await client.request(`qXfer:features:read:target.xml:${xml.length.toString(16)},100`);
      }
      expect(xml).toMatch(/<architecture>i386:x86-64<\/architecture>/);
      expect(xml).toMatch(/<\/target>\n$/);
      expect(await client.request('qXfer:features:read:other.xml:0,100')).toBe('E00');

      // 'g': every register in target.xml order; RIP at the entry point.
      const g = await client.request('g');
      expect(g.length).toBe(2 * AMD64_REGISTERS.reduce((n, r) => n + r.bitsize / 8, 0));
      expect(g.slice(16 * 16, 17 * 16)).toBe(le64(0x8000));
      expect(await client.request(`p${RIP}`)).toBe(le64(0x8000));
      expect(await client.request('p1000')).toMatch(/^E/);

      // Memory: read the message, write a spin loop (jmp .) at 0x9000 and jump there.
      expect(Buffer.from(await client.request('m8078,5'), 'hex').toString()).toBe('Hello');
      expect(await client.request('m7fffffff0000,4')).toMatch(/^E/); // unmapped
      expect(await client.request('M9000,2:ebfe')).toBe('OK');
      expect(await client.request(`P${RIP}=${le64(0x9000)}`)).toBe('OK');
      expect(await client.request('m9000,2')).toBe('ebfe');

      // Four hardware breakpoints, not five.
      for (const a of ['a000', 'a001', 'a002', 'a003']) expect(await client.request(`Z0,${a},1`)).toBe('OK');
      expect(await client.request('Z1,a004,1')).toBe('E1c');
      for (const a of ['a000', 'a001', 'a002', 'a003']) expect(await client.request(`z0,${a},1`)).toBe('OK');

      // A second debugger is turned away.
      const second = await RspClient.connect(stub.address.port);
      await second.closed;

      // Continue into the loop, then Ctrl-C.
      client.socket.write(encodePacket('c'));
      expect(await client.next()).toEqual({ kind: 'ack' });
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(machine.state).toBe('running');
      client.socket.write(Uint8Array.of(0x03));
      expect(await client.reply()).toBe('T05thread:01;');
      expect(await client.request(`p${RIP}`)).toBe(le64(0x9000));

      // Back to the entry point, detach: the guest runs to its end.
      expect(await client.request(`P${RIP}=${le64(0x8000)}`)).toBe('OK');
      expect(await client.request('D')).toBe('OK');
      await client.closed;
      expect(await machine.wait()).toEqual({ kind: 'halt', reason: 'hlt' });
      expect(output).toBe('Hello from 64-bit long mode!\n');
    } finally {
      client.socket.destroy();
      await machine.stop();
      await stub.close();
    }
  }, 30_000);

  it('refuses a machine without the debug option, and a busy port in one sentence', async () => {
    const plain = new Machine({ boot: { kind: 'binary', file: LONG_MODE_GUEST, mode: 'long' } });
    await expect(GdbStub.listen(plain, { host: '127.0.0.1', port: 0 })).rejects.toThrow(/debug/);
    const machine = new Machine({ boot: { kind: 'binary', file: LONG_MODE_GUEST, mode: 'long' }, debug: {} });
    const first = await GdbStub.listen(machine, { host: '127.0.0.1', port: 0 });
    try {
      await expect(GdbStub.listen(machine, { host: '127.0.0.1', port: first.address.port })).rejects.toThrow(/cannot listen for gdb on 127\.0\.0\.1:\d+: the address is in use/);
    } finally {
      await first.close();
    }
  });
});
