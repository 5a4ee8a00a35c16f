// The web console server against a stand-in machine (no KVM, no browser):
// a websocket client checks the history replay, keystroke forwarding with
// back-pressure, the limits on what a client may send, the Origin check,
// status polling, and the shutdown when the machine stops.
import { EventEmitter } from 'events';
import * as http from 'http';
import WebSocket from 'ws';
import type { MachineState, MachineStatistics } from '../src/vmm/machine';
import type { VcpuStop } from '../src/vmm/exit-loop';
import { WebConsole, type ConsoleMachine } from '../src/web/web-console';
import { MAX_INPUT_FRAME } from '../src/web/protocol';

class FakeMachine extends EventEmitter {
  state: MachineState = 'running';
  statistics: MachineStatistics | undefined;
  inputs: Buffer[] = [];
  statisticsReads = 0;
  /** When set, sendInput() stays pending until release() (a guest that does not read). */
  holdInput = false;
  private held: (() => void)[] = [];

  sendInput(data: Uint8Array | string): Promise<void> {
    this.inputs.push(Buffer.from(data));
    if (!this.holdInput) return Promise.resolve();
    return new Promise((resolve) => this.held.push(resolve));
  }

  release(): void {
    this.holdInput = false;
    for (const resolve of this.held.splice(0)) resolve();
  }

  async readStatistics(): Promise<MachineStatistics | undefined> {
    this.statisticsReads++;
    return {
      exits: { 'io-out': this.statisticsReads },
      total: this.statisticsReads,
      devices: {},
      unclaimed: {},
      workarounds: {},
      consoleDropped: 0,
      vcpu: { rip: '0x8000', cpl: 0, mode: '64-bit long mode' },
    };
  }

  output(text: string): void {
    this.emit('output', Buffer.from(text));
  }

  halt(): void {
    this.state = 'stopped';
    this.emit('state', 'stopped');
    this.emit('exit', { kind: 'halt', reason: 'hlt' } satisfies VcpuStop);
  }
}

interface Client {
  socket: WebSocket;
  console: () => string;
  json: () => Array<Record<string, unknown>>;
  waitFor(predicate: () => boolean, what: string): Promise<void>;
  closed: Promise<{ code: number; reason: string }>;
}

function connect(web: WebConsole, headers: Record<string, string> = {}): Promise<Client> {
  const { host, port } = web.address;
  const socket = new WebSocket(`ws://${host}:${port}/ws`, { headers });
  let text = '';
  const messages: Array<Record<string, unknown>> = [];
  const listeners = new Set<() => void>();
  socket.on('message', (data: Buffer, isBinary: boolean) => {
    if (isBinary) text += data.toString();
    else messages.push(JSON.parse(data.toString()) as Record<string, unknown>);
    for (const l of listeners) l();
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) => socket.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  const client: Client = {
    socket,
    console: () => text,
    json: () => messages,
    closed,
    waitFor: (predicate, what) =>
      new Promise((resolve, reject) => {
        if (predicate()) return resolve();
        const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), 3000);
        const check = (): void => {
          if (!predicate()) return;
          clearTimeout(timer);
          listeners.delete(check);
          resolve();
        };
        listeners.add(check);
      }),
  };
  return new Promise((resolve, reject) => {
    socket.once('open', () => resolve(client));
    socket.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
    socket.once('error', reject);
  });
}

function get(web: WebConsole, path: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  const { host, port } = web.address;
  return new Promise((resolve, reject) => {
    http
      .get({ host, port, path, headers }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      })
      .on('error', reject);
  });
}

let machine: FakeMachine;
let web: WebConsole;

beforeEach(async () => {
  machine = new FakeMachine();
  web = await WebConsole.start(machine as unknown as ConsoleMachine, { host: '127.0.0.1', port: 0, statusIntervalMs: 50, historyBytes: 32 });
});

afterEach(async () => {
  await web.close();
});

test('serves the page and xterm.js from node_modules, and nothing else', async () => {
  expect(web.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
  const page = await get(web, '/');
  expect(page.status).toBe(200);
  expect(page.headers['content-type']).toMatch(/^text\/html/);
  expect(page.headers['content-security-policy']).toMatch(/script-src 'self'/);
  expect(page.body).toContain('/xterm/xterm.js');
  const xterm = await get(web, '/xterm/xterm.js');
  expect(xterm.status).toBe(200);
  expect(xterm.body.length).toBeGreaterThan(10000);
  expect((await get(web, '/../package.json')).status).toBe(404);
  expect((await get(web, '/%2e%2e/package.json')).status).toBe(404);
  expect((await get(web, '/', { Host: 'evil.example:1234' })).status).toBe(403);
});

test('a late client gets the last history bytes, then live output', async () => {
  machine.output('boot messages that scroll away... ');
  machine.output('echo> ');
  const client = await connect(web);
  await client.waitFor(() => client.console().endsWith('echo> '), 'the replayed prompt');
  expect(client.console().length).toBeLessThanOrEqual(32);
  machine.output('more');
  await client.waitFor(() => client.console().endsWith('echo> more'), 'live output');
  client.socket.close();
});

test('keystrokes go to the machine; the socket is paused until the guest takes them', async () => {
  const client = await connect(web);
  machine.holdInput = true;
  client.socket.send(Buffer.from('ab'));
  client.socket.send(Buffer.from('cd'));
  await new Promise((resolve) => setTimeout(resolve, 100));
  // The first frame is with the machine; the second waits (in the socket, or queued behind the first).
  expect(Buffer.concat(machine.inputs).toString()).toMatch(/^ab(cd)?$/);
  machine.release();
  await new Promise((resolve) => setTimeout(resolve, 100));
  expect(Buffer.concat(machine.inputs).toString()).toBe('abcd');
  client.socket.close();
});

test('a text frame or an oversized frame closes that client; input stays out of the machine', async () => {
  const a = await connect(web);
  a.socket.send('{"type":"input","data":"x"}');
  expect((await a.closed).code).toBe(1003);
  const b = await connect(web);
  b.socket.send(Buffer.alloc(MAX_INPUT_FRAME + 1, 0x78));
  expect((await b.closed).code).toBe(1009);
  expect(machine.inputs).toEqual([]);
});

test('an upgrade from another origin is refused', async () => {
  await expect(connect(web, { Origin: 'https://evil.example' })).rejects.toThrow(/403/);
  const { port } = web.address;
  await expect(connect(web, { Origin: `http://127.0.0.1:${port}` })).resolves.toBeDefined();
});

test('status is sent on connect and polled while someone watches', async () => {
  const client = await connect(web);
  await client.waitFor(() => client.json().filter((m) => m.type === 'status').length >= 3, 'three status messages');
  const first = client.json()[0]!;
  expect(first).toMatchObject({ type: 'status', state: 'running' });
  const last = client.json().at(-1)!;
  expect(last).toMatchObject({ type: 'status', state: 'running', vcpu: { mode: '64-bit long mode' } });
  expect((last.exits as Record<string, number>)['io-out']).toBeGreaterThan(0);
  client.socket.close();
  await client.closed;
  // No one is watching: polling stops.
  await new Promise((resolve) => setTimeout(resolve, 100));
  const reads = machine.statisticsReads;
  await new Promise((resolve) => setTimeout(resolve, 200));
  expect(machine.statisticsReads).toBe(reads);
});

test('when the machine stops: final status, a stopped message, the socket and the server close', async () => {
  const client = await connect(web);
  machine.statistics = { exits: { hlt: 1 }, total: 1, devices: {}, unclaimed: {}, workarounds: {}, consoleDropped: 0 };
  machine.halt();
  const closed = await client.closed;
  expect(closed).toEqual({ code: 1000, reason: 'the guest stopped' });
  const messages = client.json();
  expect(messages.at(-2)).toMatchObject({ type: 'status', state: 'stopped', exits: { hlt: 1 } });
  expect(messages.at(-1)).toEqual({ type: 'stopped', kind: 'halt', reason: 'hlt' });
  expect(messages.filter((m) => m.state === 'stopped')).toHaveLength(1);
  await web.close();
  await expect(get(web, '/')).rejects.toThrow(/ECONNREFUSED/);
});

test('a busy port is one clear sentence', async () => {
  const other = await WebConsole.start(new FakeMachine() as unknown as ConsoleMachine, { host: '127.0.0.1', port: web.address.port }).catch((err: Error) => err);
  expect(other).toBeInstanceOf(Error);
  expect((other as Error).message).toMatch(/^cannot serve the web console on 127\.0\.0\.1:\d+: the port is in use/);
});

test('connections beyond maxClients are refused', async () => {
  const small = await WebConsole.start(machine as unknown as ConsoleMachine, { host: '127.0.0.1', port: 0, maxClients: 1 });
  try {
    const first = await connect(small);
    await expect(connect(small)).rejects.toThrow(/503/);
    first.socket.close();
    await first.closed;
    // The server notices the close shortly after the client does.
    await new Promise((resolve) => setTimeout(resolve, 50));
    await expect(connect(small)).resolves.toBeDefined();
  } finally {
    await small.close();
  }
});
