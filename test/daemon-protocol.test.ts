// The daemon's protocol without VMs: request validation (hostile and
// malformed input gets an error, never an exception of another kind), the
// config check, the line framing, the output history, the socket path rules,
// and an in-process daemon fed garbage over its socket that keeps answering.
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { DaemonClient, DaemonRequestError, DaemonUnavailableError } from '../src/daemon/client';
import { LineSplitter } from '../src/daemon/line-splitter';
import { MachineConfigJsonError, parseMachineConfig } from '../src/daemon/machine-config';
import { OutputHistory } from '../src/daemon/output-history';
import { MAX_REQUEST_BYTES, ProtocolError, parseRequest, type Response } from '../src/daemon/protocol';
import { DaemonServer } from '../src/daemon/server';
import { SocketPathError, defaultSocketPath, prepareSocketPath } from '../src/daemon/socket-path';

const BOOT = { kind: 'binary', file: 'guest.bin', mode: 'long' };

function refused(line: string): ProtocolError {
  try {
    parseRequest(line);
  } catch (err) {
    expect((err as Error).name).toBe('ProtocolError'); // jest realms: no instanceof on thrown errors across modules
    return err as ProtocolError;
  }
  throw new Error(`accepted: ${line}`);
}

describe('parseRequest', () => {
  test('accepts every op in its documented shape', () => {
    expect(parseRequest('{"op":"ping"}')).toEqual({ op: 'ping' });
    expect(parseRequest('{"id":7,"op":"list"}')).toEqual({ id: 7, op: 'list' });
    expect(parseRequest('{"id":"x","op":"info","name":"vm-1.a_b"}')).toEqual({ id: 'x', op: 'info', name: 'vm-1.a_b' });
    for (const op of ['suspend', 'resume', 'destroy']) expect(parseRequest(JSON.stringify({ op, name: 'a' }))).toEqual({ op, name: 'a' });
    expect(parseRequest('{"op":"shutdown","name":"a"}')).toEqual({ op: 'shutdown', name: 'a' });
    expect(parseRequest('{"op":"shutdown","name":"a","timeoutSeconds":2.5}')).toEqual({ op: 'shutdown', name: 'a', timeoutSeconds: 2.5 });
    expect(parseRequest('{"op":"console","name":"a","replay":false}')).toEqual({ op: 'console', name: 'a', replay: false });
    expect(parseRequest('{"op":"watch"}')).toEqual({ op: 'watch' });
    const start = parseRequest(JSON.stringify({ id: 1, op: 'start', name: 'a', cwd: '/vms', config: { memory: '2M', boot: BOOT } }));
    expect(start).toEqual({ id: 1, op: 'start', name: 'a', options: { memory: '2M', boot: { kind: 'binary', file: '/vms/guest.bin', mode: 'long' } } });
  });

  test.each([
    ['', 'not valid JSON'],
    ['{', 'not valid JSON'],
    ['\u0000\u00ff', 'not valid JSON'],
    ['null', 'JSON object'],
    ['[]', 'JSON object'],
    ['42', 'JSON object'],
    ['"ping"', 'JSON object'],
    ['{}', '"op"'],
    ['{"op":5}', '"op"'],
    ['{"op":"reboot"}', 'unknown op "reboot"'],
    ['{"op":"toString"}', 'unknown op'],
    ['{"op":"__proto__"}', 'unknown op'],
    ['{"op":"ping","id":{}}', '"id"'],
    ['{"op":"ping","id":1.5}', '"id"'],
    ['{"op":"ping","id":null}', '"id"'],
    [JSON.stringify({ op: 'ping', id: 'x'.repeat(129) }), '"id"'],
    ['{"op":"ping","name":"a"}', 'unexpected field "name"'],
    ['{"op":"list","__proto__":{"polluted":1}}', 'unexpected field "__proto__"'],
    ['{"op":"info"}', '"name"'],
    ['{"op":"info","name":7}', '"name"'],
    ['{"op":"info","name":""}', 'invalid VM name'],
    ['{"op":"info","name":"../etc"}', 'invalid VM name'],
    ['{"op":"info","name":"a b"}', 'invalid VM name'],
    ['{"op":"info","name":"-a"}', 'invalid VM name'],
    ['{"op":"info","name":"a\\n"}', 'invalid VM name'],
    [JSON.stringify({ op: 'info', name: 'a'.repeat(65) }), 'invalid VM name'],
    ['{"op":"shutdown","name":"a","timeoutSeconds":-1}', 'timeoutSeconds'],
    ['{"op":"shutdown","name":"a","timeoutSeconds":"5"}', 'timeoutSeconds'],
    ['{"op":"shutdown","name":"a","timeoutSeconds":1e400}', 'timeoutSeconds'],
    ['{"op":"shutdown","name":"a","timeoutSeconds":86401}', 'timeoutSeconds'],
    ['{"op":"console","name":"a","replay":"no"}', '"replay"'],
    ['{"op":"start","name":"a","config":{"boot":{}}}', '"cwd"'],
    ['{"op":"start","name":"a","cwd":"relative","config":{}}', '"cwd"'],
    ['{"op":"start","name":"a","cwd":"/x\\u0000","config":{}}', '"cwd"'],
    ['{"op":"start","name":"a","cwd":"/"}', 'config must be a JSON object'],
    ['{"op":"start","name":"a","cwd":"/","config":[]}', 'config must be a JSON object'],
  ])('refuses %s', (line, message) => {
    const error = refused(line);
    expect(error.code).toBe('EBADREQUEST');
    expect(error.message).toContain(message);
  });

  test('an error keeps the request id when it could be read', () => {
    expect(refused('{"id":9,"op":"info","name":""}').id).toBe(9);
    expect(refused('{"id":{},"op":"info"}').id).toBeUndefined();
  });

  test('deeply nested and huge inputs are refused, not thrown', () => {
    expect(refused('['.repeat(200000) + ']'.repeat(200000)).code).toBe('EBADREQUEST');
    expect(refused(JSON.stringify({ op: 'info', name: 'n'.repeat(500000) })).code).toBe('EBADREQUEST');
  });

  test('random bytes only ever produce ProtocolErrors', () => {
    let seed = 12345;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const pieces = ['{', '}', '"op"', ':', '"start"', '"name"', '"a"', ',', '"config"', '"boot"', '"kind"', '"binary"', '[', ']', 'null', '1', '"cwd"', '"/"'];
    for (let i = 0; i < 3000; i++) {
      const line = Array.from({ length: 1 + rand(24) }, () => (rand(4) === 0 ? String.fromCharCode(rand(256)) : pieces[rand(pieces.length)])).join('');
      try {
        parseRequest(line);
      } catch (err) {
        expect((err as Error).name).toBe('ProtocolError');
      }
    }
  });
});

describe('parseMachineConfig', () => {
  test('resolves paths against the cwd and keeps the known fields', () => {
    const options = parseMachineConfig(
      {
        memory: 4 << 20,
        platform: 'pc',
        serial: true,
        rng: false,
        disks: [{ path: 'disk.img', readOnly: true, serial: 'D1' }],
        net: [{ tap: 'tap0', mac: '52:54:00:12:34:56' }],
        console: 'virtio',
        outputBufferSize: 65536,
        boot: { kind: 'linux', kernel: '../k/vmlinuz', initrd: '/abs/initrd.gz', cmdline: 'console=ttyS0' },
      },
      '/home/u/vms',
    );
    expect(options).toEqual({
      memory: 4 << 20,
      platform: 'pc',
      serial: true,
      rng: false,
      disks: [{ path: '/home/u/vms/disk.img', readOnly: true, serial: 'D1' }],
      net: [{ tap: 'tap0', mac: '52:54:00:12:34:56' }],
      console: 'virtio',
      outputBufferSize: 65536,
      boot: { kind: 'linux', kernel: '/home/u/k/vmlinuz', initrd: '/abs/initrd.gz', cmdline: 'console=ttyS0' },
    });
    expect(parseMachineConfig({ boot: { ...BOOT, load: '0x9000', entry: 0x9010 } }, '/')).toEqual({
      boot: { kind: 'binary', file: '/guest.bin', mode: 'long', load: 0x9000, entry: 0x9010 },
    });
  });

  test.each([
    [{ boot: BOOT, memry: '2M' }, 'unknown field "memry"'],
    [{}, 'config.boot must be an object'],
    [{ boot: { kind: 'efi' } }, 'config.boot.kind'],
    [{ boot: { kind: 'binary', file: 'x' } }, 'config.boot.mode'],
    [{ boot: { kind: 'binary', file: 7, mode: 'long' } }, 'config.boot.file'],
    [{ boot: { kind: 'binary', file: '', mode: 'long' } }, 'config.boot.file'],
    [{ boot: { ...BOOT, load: -1 } }, 'config.boot.load'],
    [{ boot: { ...BOOT, load: 2 ** 40 } }, 'config.boot.load'],
    [{ boot: { ...BOOT, entry: 'zz' } }, 'config.boot.entry'],
    [{ boot: { ...BOOT, extra: 1 } }, 'config.boot has an unknown field'],
    [{ boot: { kind: 'linux' } }, 'config.boot.kernel'],
    [{ boot: BOOT, memory: 'lots' }, 'config.memory'],
    [{ boot: BOOT, memory: true }, 'config.memory'],
    [{ boot: BOOT, platform: 'arm' }, 'config.platform'],
    [{ boot: BOOT, serial: 'yes' }, 'config.serial'],
    [{ boot: BOOT, disks: {} }, 'config.disks'],
    [{ boot: BOOT, disks: [{ path: 'a', size: 1 }] }, 'config.disks[0]'],
    [{ boot: BOOT, net: [{ tap: 'tap0', fd: 3 }] }, 'config.net[0] has an unknown field "fd"'],
    [{ boot: BOOT, net: [{ tap: 'a-very-long-interface-name' }] }, 'config.net[0].tap'],
    [{ boot: BOOT, outputBufferSize: 5000 }, 'outputBufferSize'],
    [{ boot: BOOT, trace: 1 }, 'config.trace'],
  ])('refuses %j', (config, message) => {
    expect(() => parseMachineConfig(config, '/')).toThrow(MachineConfigJsonError);
    expect(() => parseMachineConfig(config, '/')).toThrow(message);
  });
});

describe('LineSplitter', () => {
  test('joins chunks, splits lines, keeps the rest', () => {
    const s = new LineSplitter(100);
    s.push(Buffer.from('{"a"'));
    expect(s.next()).toBeUndefined();
    s.push(Buffer.from(':1}\n{"b":2}\nraw'));
    expect(s.next()).toEqual({ line: '{"a":1}' });
    expect(s.next()).toEqual({ line: '{"b":2}' });
    expect(s.next()).toBeUndefined();
    s.push(Buffer.from(' bytes\n'));
    expect(s.takeRest().toString()).toBe('raw bytes\n');
    expect(s.next()).toBeUndefined();
  });

  test('an over-long line is reported once and skipped up to its newline', () => {
    const s = new LineSplitter(10);
    s.push(Buffer.alloc(8, 0x41));
    expect(s.next()).toBeUndefined();
    s.push(Buffer.alloc(8, 0x41));
    expect(s.next()).toEqual({ tooLong: true });
    s.push(Buffer.alloc(1000, 0x41)); // still the same line: dropped, not held
    expect(s.next()).toBeUndefined();
    s.push(Buffer.from('AAA\nok\n'));
    expect(s.next()).toEqual({ line: 'ok' });
    // A long line that arrives whole.
    s.push(Buffer.from('x'.repeat(50) + '\nfine\n'));
    expect(s.next()).toEqual({ tooLong: true });
    expect(s.next()).toEqual({ line: 'fine' });
  });
});

describe('OutputHistory', () => {
  test('keeps the newest bytes in order across wrap-around', () => {
    const h = new OutputHistory(8);
    h.push(Buffer.from('abc'));
    expect(h.snapshot().toString()).toBe('abc');
    h.push(Buffer.from('defgh'));
    expect(h.snapshot().toString()).toBe('abcdefgh');
    h.push(Buffer.from('ij'));
    expect(h.snapshot().toString()).toBe('cdefghij');
    h.push(Buffer.from('0123456789XY'));
    expect(h.snapshot().toString()).toBe('456789XY');
    h.push(Buffer.alloc(0));
    expect(h.snapshot().toString()).toBe('456789XY');
    expect(h.total).toBe(22);
  });
});

describe('socket path', () => {
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tskvm-sock-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('default: $TSKVM_SOCKET, /run/tskvm for root, else $XDG_RUNTIME_DIR, else a private tmp dir', () => {
    expect(defaultSocketPath({ TSKVM_SOCKET: '/x/s.sock', XDG_RUNTIME_DIR: '/run/user/5' }, 0)).toBe('/x/s.sock');
    expect(defaultSocketPath({ XDG_RUNTIME_DIR: '/run/user/0' }, 0)).toBe('/run/tskvm/tskvm.sock');
    expect(defaultSocketPath({ XDG_RUNTIME_DIR: '/run/user/1000' }, 1000)).toBe('/run/user/1000/tskvm.sock');
    expect(defaultSocketPath({}, 1000)).toBe(path.join(os.tmpdir(), 'tskvm-1000', 'tskvm.sock'));
  });

  test('creates a private parent directory, refuses non-sockets and long paths, removes stale sockets', async () => {
    const socketPath = path.join(dir, 'sub', 'd.sock');
    await prepareSocketPath(socketPath);
    expect(fs.statSync(path.dirname(socketPath)).mode & 0o777).toBe(0o700);

    fs.writeFileSync(socketPath, 'not a socket');
    await expect(prepareSocketPath(socketPath)).rejects.toMatchObject({ code: 'ENOTSOCK' });
    fs.unlinkSync(socketPath);

    await expect(prepareSocketPath(path.join(dir, 'x'.repeat(120)))).rejects.toMatchObject({ code: 'ETOOLONG' });

    // A socket whose process died: it exists, but nobody listens.
    const r = spawnSync(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(socketPath)}, () => process.kill(process.pid, 'SIGKILL'))`]);
    expect(r.signal).toBe('SIGKILL');
    expect(fs.lstatSync(socketPath).isSocket()).toBe(true);
    await prepareSocketPath(socketPath);
    expect(fs.existsSync(socketPath)).toBe(false);
  });

  test('SocketPathError is one sentence naming the path', () => {
    const e = new SocketPathError('a tskvm daemon is already listening on /s', 'EINUSE');
    expect(e.message).toMatch(/^a tskvm daemon is already listening on \/s$/);
  });
});

describe('an in-process daemon under hostile input', () => {
  let dir: string;
  let socketPath: string;
  let server: DaemonServer;
  const logs: string[] = [];

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tskvm-d-'));
    socketPath = path.join(dir, 'd.sock');
    server = new DaemonServer({ socketPath, log: (line) => logs.push(line) });
    await server.listen();
  });
  afterAll(async () => {
    await server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** Sends raw bytes on a fresh connection and collects the response lines until `count` arrived. */
  function exchange(bytes: Buffer | string, count: number): Promise<Response[]> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(socketPath);
      let text = '';
      socket.on('data', (d) => {
        text += d.toString();
        const lines = text.split('\n').filter(Boolean);
        if (lines.length >= count) {
          socket.destroy();
          resolve(lines.map((l) => JSON.parse(l) as Response));
        }
      });
      socket.on('error', reject);
      socket.write(bytes);
    });
  }

  test('the socket is private (0600)', () => {
    expect(fs.statSync(socketPath).mode & 0o777).toBe(0o600);
    expect(fs.lstatSync(socketPath).isSocket()).toBe(true);
  });

  test('garbage lines get error responses and the connection keeps working', async () => {
    const lines = ['not json', '{"op":"explode"}', '\u0000\u0001\u0002', '[1,2]', '{"id":3,"op":"info","name":"nope"}', '{"id":4,"op":"ping"}'];
    const answers = await exchange(Buffer.concat([Buffer.from(lines.join('\n') + '\n'), Buffer.from([0xff, 0xfe, 0x0a])]), 7);
    // Refusals are immediate; answers to valid requests come when they are done: match them by id.
    const anonymous = answers.filter((a) => a.id === undefined);
    expect(anonymous.map((a) => !a.ok && a.error.code)).toEqual(Array(5).fill('EBADREQUEST')); // 4 bad lines + the invalid UTF-8 one
    expect(answers.find((a) => a.id === 3)).toEqual({ id: 3, ok: false, error: { code: 'ENOVM', message: 'no VM named "nope"' } });
    expect(answers.find((a) => a.id === 4)).toMatchObject({ id: 4, ok: true, result: { daemon: 'tskvm', protocol: 1, pid: process.pid, vms: 0 } });
  });

  test('an over-long line is refused once, then requests work again', async () => {
    const huge = Buffer.alloc(MAX_REQUEST_BYTES + 4096, 0x61);
    const answers = await exchange(Buffer.concat([huge, Buffer.from('\n{"id":1,"op":"list"}\n')]), 2);
    expect(answers[0]).toMatchObject({ ok: false, error: { code: 'ETOOLONG' } });
    expect(answers[1]).toEqual({ id: 1, ok: true, result: { vms: [] } });
  });

  test('a bad config is refused before any VM exists', async () => {
    const [answer] = await exchange(JSON.stringify({ op: 'start', name: 'a', cwd: '/', config: { boot: { kind: 'binary', file: 'x', mode: 'sideways' } } }) + '\n', 1);
    expect(answer).toMatchObject({ ok: false, error: { code: 'EBADREQUEST', message: 'config.boot.mode must be one of real, protected, long' } });
    expect(server.vmNames).toEqual([]);
  });

  test('a missing boot file is a one-sentence ESTART and leaves no VM behind', async () => {
    const client = await DaemonClient.connect(socketPath);
    try {
      const failure = client.request({ op: 'start', name: 'a', cwd: dir, config: { boot: { kind: 'binary', file: 'missing.bin', mode: 'long' } } });
      await expect(failure).rejects.toMatchObject({ code: 'ESTART', message: `binary ${path.join(dir, 'missing.bin')} does not exist` });
      expect((await client.request({ op: 'list' })).vms).toEqual([]);
    } finally {
      client.close();
    }
  });

  test('console and lifecycle requests for unknown VMs fail with ENOVM', async () => {
    const client = await DaemonClient.connect(socketPath);
    try {
      for (const op of ['suspend', 'resume', 'destroy', 'shutdown', 'info'] as const) {
        await expect(client.request({ op, name: 'ghost' })).rejects.toMatchObject({ code: 'ENOVM' });
      }
    } finally {
      client.close();
    }
    const console = await DaemonClient.connect(socketPath);
    const attempt = console.openConsole('ghost');
    await expect(attempt).rejects.toBeInstanceOf(DaemonRequestError);
    console.close();
  });

  test('clients that vanish mid-request or mid-line do not disturb the daemon', async () => {
    for (let i = 0; i < 20; i++) {
      const socket = net.connect(socketPath);
      await new Promise((resolve) => socket.once('connect', resolve));
      socket.write(i % 2 ? '{"op":"li' : '{"op":"list"}\n{"op":"ping"}\n');
      socket.destroy();
    }
    const [answer] = await exchange('{"op":"ping"}\n', 1);
    expect(answer).toMatchObject({ ok: true });
  });

  test('a second daemon on the same socket refuses to start', async () => {
    const second = new DaemonServer({ socketPath, log: () => {} });
    await expect(second.listen()).rejects.toMatchObject({ code: 'EINUSE', message: `a tskvm daemon is already listening on ${socketPath}` });
  });

  test('a client without a daemon gets one sentence', async () => {
    await expect(DaemonClient.connect(path.join(dir, 'none.sock'))).rejects.toBeInstanceOf(DaemonUnavailableError);
    await expect(DaemonClient.connect(path.join(dir, 'none.sock'))).rejects.toThrow(/^no tskvm daemon is listening on .*none\.sock/);
  });
});
