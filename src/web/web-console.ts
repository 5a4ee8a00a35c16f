// The web console: a small HTTP server that shows a running Machine in a
// browser — an xterm.js terminal on the guest's serial console, and the
// vCPU's state and exit counts, refreshed about once a second.
//
//   const web = await WebConsole.start(machine, { host: '127.0.0.1', port: 8080 });
//   console.error(`web console on ${web.url}`);
//   await machine.start();          // the console closes itself when the guest stops
//
// One page, its static files, and one websocket endpoint (/ws) speaking the
// protocol in protocol.ts. Every connected browser sees the same console
// (output goes to all of them; what any of them types goes to the guest),
// like several people looking at one serial line.
//
// Limits, because a browser is an untrusted peer: at most `maxClients`
// sockets; keystroke frames of at most MAX_INPUT_FRAME bytes (ws enforces it
// while parsing, before buffering a larger frame); a socket is paused while
// the guest has not taken its keystrokes yet, so a fast typist or a paste
// cannot queue unbounded input; a browser that does not keep up with the
// guest's output is disconnected instead of buffering for it without end.
import * as http from 'http';
import type { AddressInfo, Socket } from 'net';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import type { Machine, MachineStatistics } from '../vmm/machine';
import type { VcpuStop } from '../vmm/exit-loop';
import { urlHost, type ListenAddress } from './listen-address';
import { OutputHistory, DEFAULT_HISTORY_BYTES } from './output-history';
import {
  CLOSE_GOING_AWAY,
  CLOSE_NORMAL,
  CLOSE_TRY_AGAIN_LATER,
  MAX_INPUT_FRAME,
  classifyClientFrame,
  statusMessage,
  type ServerMessage,
} from './protocol';
import { isAllowedHost, isAllowedOrigin } from './request-guard';
import { loadStaticAssets, type StaticAsset } from './static-assets';

/** What the web console needs from a machine (a Machine, or a stand-in in tests). */
export type ConsoleMachine = Pick<Machine, 'on' | 'off' | 'sendInput' | 'readStatistics' | 'state' | 'statistics'>;

export interface WebConsoleOptions extends ListenAddress {
  /** Console output kept for browsers that connect later (default 64 KiB). */
  historyBytes?: number;
  /** How often the status panel is refreshed while someone watches (default 1000 ms). */
  statusIntervalMs?: number;
  /** Browsers connected at once (default 8). */
  maxClients?: number;
  /** Output queued for one browser before it is disconnected as too slow (default 1 MiB). */
  maxBufferedOutput?: number;
}

export const WEBSOCKET_PATH = '/ws';

/**
 * Served with every response. The page loads only its own files and talks
 * only to its own origin; xterm.js sets element styles, hence 'unsafe-inline'
 * for styles (not for scripts).
 */
const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'Content-Security-Policy': "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'Cache-Control': 'no-store',
};

/** How long a closing browser gets to answer the websocket close handshake before we drop it. */
const CLOSE_GRACE_MS = 1000;

interface Client {
  socket: WebSocket;
  /** Keystroke frames handed to the machine and not yet taken into its input ring. */
  inputInFlight: number;
}

/** The one sentence for a listen() failure. */
function listenError(err: NodeJS.ErrnoException, where: string): Error {
  const why =
    err.code === 'EADDRINUSE'
      ? 'the port is in use (pick another, or 0 for any free port)'
      : err.code === 'EADDRNOTAVAIL'
        ? 'that is not an address of this machine'
        : err.code === 'EACCES'
          ? 'no permission (ports below 1024 need root)'
          : err.code === 'ENOTFOUND' || err.code === 'EAI_AGAIN'
            ? 'the host name does not resolve'
            : err.message;
  const error = new Error(`cannot serve the web console on ${where}: ${why}.`) as NodeJS.ErrnoException;
  error.code = err.code;
  return error;
}

export class WebConsole {
  private readonly clients = new Set<Client>();
  private readonly history: OutputHistory;
  private readonly wss: WebSocketServer;
  private lastStatistics?: MachineStatistics;
  private pollTimer?: NodeJS.Timeout;
  private polling = false;
  private closing?: Promise<void>;
  private bound!: ListenAddress;

  private constructor(
    private readonly machine: ConsoleMachine,
    private readonly options: WebConsoleOptions,
    private readonly assets: Map<string, StaticAsset>,
    private readonly server: http.Server,
  ) {
    this.history = new OutputHistory(options.historyBytes ?? DEFAULT_HISTORY_BYTES);
    // noServer: upgrades are checked (path, Host, Origin, client count) before ws sees them.
    // No permessage-deflate: keystrokes are tiny, and inflating what a browser sends is work we need not do for it.
    this.wss = new WebSocketServer({ noServer: true, maxPayload: MAX_INPUT_FRAME, perMessageDeflate: false });
  }

  /** Loads the page, listens on host:port, and follows the machine until it stops. */
  static async start(machine: ConsoleMachine, options: WebConsoleOptions): Promise<WebConsole> {
    const assets = loadStaticAssets();
    const server = http.createServer();
    const web = new WebConsole(machine, options, assets, server);
    const where = `${urlHost(options.host)}:${options.port}`;
    await new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => reject(listenError(err, where));
      server.once('error', onError);
      server.listen(options.port, options.host, () => {
        server.off('error', onError);
        resolve();
      });
    });
    const { port } = server.address() as AddressInfo;
    web.bound = { host: options.host, port };
    web.attach();
    return web;
  }

  /** The page's address, with the port actually bound (useful with port 0). */
  get url(): string {
    return `http://${urlHost(this.bound.host)}:${this.bound.port}/`;
  }

  get address(): ListenAddress {
    return { ...this.bound };
  }

  /** Disconnects every browser and stops listening. Safe to call more than once. */
  close(): Promise<void> {
    this.closing ??= this.closeOnce();
    return this.closing;
  }

  // ------------------------------------------------------------ wiring

  private attach(): void {
    this.server.on('request', (req, res) => this.serveRequest(req, res));
    this.server.on('upgrade', (req, socket, head) => this.upgrade(req, socket as Socket, head));
    // A server-level error after listen (rare: EMFILE on accept) must not crash the VMM.
    this.server.on('error', () => {});
    this.machine.on('output', this.onOutput);
    this.machine.on('state', this.onState);
    this.machine.on('exit', this.onExit);
    if (this.machine.state === 'stopped') void this.close();
  }

  private readonly onOutput = (data: Buffer): void => {
    this.history.append(data);
    const limit = this.options.maxBufferedOutput ?? 1 << 20;
    for (const client of this.clients) {
      if (client.socket.bufferedAmount > limit) {
        client.socket.close(CLOSE_TRY_AGAIN_LATER, 'console output backed up; reload to reconnect');
        continue;
      }
      client.socket.send(data, { binary: true });
    }
  };

  private readonly onState = (): void => {
    // 'stopped' is reported by onExit, with the final statistics.
    if (this.machine.state !== 'stopped') this.broadcast(statusMessage(this.machine.state, this.lastStatistics));
  };

  private readonly onExit = (stop: VcpuStop): void => {
    // The machine posts its final statistics with the stop.
    this.lastStatistics = this.machine.statistics ?? this.lastStatistics;
    this.broadcast(statusMessage('stopped', this.lastStatistics));
    this.broadcast({ type: 'stopped', kind: stop.kind, reason: stop.reason });
    void this.close();
  };

  // ------------------------------------------------------------ HTTP

  private serveRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    const reply = (status: number, text: string, headers: Record<string, string> = {}): void => {
      res.writeHead(status, { ...SECURITY_HEADERS, 'Content-Type': 'text/plain; charset=utf-8', ...headers });
      res.end(req.method === 'HEAD' ? undefined : text + '\n');
    };
    if (!isAllowedHost(req.headers.host, this.bound)) return reply(403, 'unexpected Host header');
    if (req.method !== 'GET' && req.method !== 'HEAD') return reply(405, 'only GET', { Allow: 'GET, HEAD' });
    const pathname = (req.url ?? '/').split('?')[0]!;
    const asset = this.assets.get(pathname);
    if (!asset) return reply(404, 'not found');
    res.writeHead(200, { ...SECURITY_HEADERS, 'Content-Type': asset.contentType, 'Content-Length': asset.body.length });
    res.end(req.method === 'HEAD' ? undefined : asset.body);
  }

  private upgrade(req: http.IncomingMessage, socket: Socket, head: Buffer): void {
    const refuse = (status: string): void => {
      socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    };
    socket.on('error', () => socket.destroy());
    const pathname = (req.url ?? '').split('?')[0];
    if (pathname !== WEBSOCKET_PATH) return refuse('404 Not Found');
    if (!isAllowedHost(req.headers.host, this.bound) || !isAllowedOrigin(req.headers.origin, req.headers.host)) return refuse('403 Forbidden');
    if (this.closing) return refuse('503 Service Unavailable');
    if (this.clients.size >= (this.options.maxClients ?? 8)) return refuse('503 Service Unavailable');
    this.wss.handleUpgrade(req, socket, head, (ws) => this.accept(ws));
  }

  // ------------------------------------------------------------ websocket

  private accept(socket: WebSocket): void {
    if (this.closing) {
      socket.close(CLOSE_GOING_AWAY, 'shutting down');
      return;
    }
    const client: Client = { socket, inputInFlight: 0 };
    this.clients.add(client);
    // Errors (a protocol violation, a frame over maxPayload, a reset) end
    // with 'close'; the listener only keeps them from becoming uncaught.
    socket.on('error', () => {});
    socket.on('close', () => {
      this.clients.delete(client);
      if (this.clients.size === 0) this.stopPolling();
    });
    socket.on('message', (data: RawData, isBinary: boolean) => this.receive(client, data, isBinary));
    const history = this.history.snapshot();
    if (history.length > 0) socket.send(history, { binary: true });
    this.send(client, statusMessage(this.machine.state, this.lastStatistics));
    this.startPolling();
  }

  private receive(client: Client, data: RawData, isBinary: boolean): void {
    const frame = classifyClientFrame(data, isBinary);
    if (frame.kind === 'reject') {
      client.socket.close(frame.code, frame.reason);
      return;
    }
    if (frame.kind === 'ignore' || this.machine.state === 'stopped') return;
    // Back-pressure: stop reading this browser until the guest's input ring
    // has room for what it sent. Frames already read from the socket may
    // still arrive while paused; they queue behind this one in order.
    client.inputInFlight++;
    client.socket.pause();
    void this.machine.sendInput(frame.bytes).finally(() => {
      if (--client.inputInFlight === 0 && this.clients.has(client)) client.socket.resume();
    });
  }

  private send(client: Client, message: ServerMessage): void {
    client.socket.send(JSON.stringify(message));
  }

  private broadcast(message: ServerMessage): void {
    for (const client of this.clients) this.send(client, message);
  }

  // ------------------------------------------------------------ status polling

  /**
   * Statistics come from the vCPU thread (readStatistics kicks it out of
   * KVM_RUN), so we ask only while someone is watching, one request at a
   * time, and not at all once the machine has stopped.
   */
  private startPolling(): void {
    if (this.pollTimer || this.polling || this.closing) return;
    void this.poll();
  }

  private stopPolling(): void {
    clearTimeout(this.pollTimer);
    this.pollTimer = undefined;
  }

  private async poll(): Promise<void> {
    this.pollTimer = undefined;
    if (this.closing || this.clients.size === 0) return;
    const state = this.machine.state;
    if (state === 'running' || state === 'paused') {
      this.polling = true;
      try {
        this.lastStatistics = (await this.machine.readStatistics()) ?? this.lastStatistics;
      } catch {
        // A machine that cannot answer now keeps its last figures on the page.
      } finally {
        this.polling = false;
      }
      // The machine may have stopped while we waited: onExit has sent the final status then.
      if (this.closing || this.machine.state === 'stopped') return;
      this.broadcast(statusMessage(this.machine.state, this.lastStatistics));
    }
    if (this.clients.size > 0 && !this.closing) this.pollTimer = setTimeout(() => void this.poll(), this.options.statusIntervalMs ?? 1000);
  }

  // ------------------------------------------------------------ shutdown

  private async closeOnce(): Promise<void> {
    this.stopPolling();
    this.machine.off('output', this.onOutput);
    this.machine.off('state', this.onState);
    this.machine.off('exit', this.onExit);
    const stopped = this.machine.state === 'stopped';
    const sockets = [...this.clients].map(
      ({ socket }) =>
        new Promise<void>((resolve) => {
          if (socket.readyState === socket.CLOSED) return resolve();
          socket.once('close', () => resolve());
          // A browser that does not answer the close handshake is dropped.
          const timer = setTimeout(() => socket.terminate(), CLOSE_GRACE_MS);
          socket.once('close', () => clearTimeout(timer));
          socket.close(stopped ? CLOSE_NORMAL : CLOSE_GOING_AWAY, stopped ? 'the guest stopped' : 'the web console closed');
        }),
    );
    await Promise.all(sockets);
    this.wss.close();
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      // Keep-alive HTTP connections would hold close() open until they time out.
      this.server.closeAllConnections();
    });
  }
}
