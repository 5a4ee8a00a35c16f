// A GDB remote stub: gdb's `target remote HOST:PORT` drives a Machine's vCPU
// through `machine.debug` (src/vmm/machine-debugger.ts).
//
//   const stub = await GdbStub.listen(machine, { host: '127.0.0.1', port: 1234 });
//   ... gdb -ex 'target remote 127.0.0.1:1234' ...
//   await stub.close();
//
// Protocol: GDB manual, Appendix E "GDB Remote Serial Protocol" (framing in
// rsp-packet.ts; register layout and target.xml in amd64-registers.ts).
// All-stop mode, one thread (the vCPU), one client at a time. Packets served:
//   qSupported (PacketSize, qXfer:features:read), qXfer:features:read:target.xml,
//   ?  g G p P  m M X  c s  Z0/z0 Z1/z1  k vKill  D  H qC qfThreadInfo
//   qsThreadInfo qAttached T, and Ctrl-C (0x03) while the guest runs.
// Anything else gets the empty reply ("not supported", E.1), which gdb
// expects; e.g. vCont? → gdb falls back to c and s.
//
// Breakpoints: Z0 (software) and Z1 (hardware) both become hardware
// instruction breakpoints (DR0-DR3): gdb must not patch int3 into guest
// memory, since on KVM's instruction emulator an int3 at CPL0 fails
// (DESIGN.md). Watchpoints (Z2-Z4) get the empty reply: KVM's emulator does
// not check data breakpoints (debug-registers.ts), so gdb falls back to
// single-stepping, which works.
//
// Addresses are guest linear addresses; memory goes through the guest's page
// tables when paging is on (code-fetch.ts).
import * as net from 'net';
import type { Machine } from '../vmm/machine';
import type { DebugOutcome } from '../vmm/machine-debugger';
import type { CpuState, CpuStateChange } from '../vmm/debug-protocol';
import { encodePacket, RspDecoder, type RspEvent } from './rsp-packet';
import { fromHex, parseHexNumber, toHex } from './hex';
import { AMD64_REGISTERS, registerSize, targetDescriptionXml, type StatePart } from './amd64-registers';

/** The largest packet we accept (raw payload bytes); told to gdb in qSupported as PacketSize (hex). */
export const GDB_PACKET_SIZE = 0x1000;

/** Error replies ("E NN", E.1: NN is not interpreted by gdb; these follow errno numbers). */
const ERROR_BAD_PACKET = 'E16'; // EINVAL
const ERROR_MEMORY = 'E0e'; // EFAULT
const ERROR_NO_SPACE = 'E1c'; // ENOSPC: no free debug register
const ERROR_FAILED = 'E05'; // EIO

/**
 * The stop reply for a stop (E.3 "Stop Reply Packets"). Every stop for the
 * debugger is reported as SIGTRAP (05) on thread 1. The machine's end:
 * W00 for an orderly end (HLT with nothing to wake the vCPU, power off,
 * reset), W01 for a guest error (triple fault, emulation failure), X09
 * (SIGKILL) when the host stopped it.
 */
export function stopReply(outcome: DebugOutcome): string {
  if (outcome.kind === 'stopped') return 'T05thread:01;';
  if (outcome.stop.kind === 'error') return 'W01';
  if (outcome.stop.kind === 'stopped') return 'X09';
  return 'W00';
}

export interface GdbStubOptions {
  host: string;
  /** 0 picks a free port (see `address`). */
  port: number;
  /** One line per client connecting or leaving. */
  log?: (line: string) => void;
}

export class GdbStub {
  private session?: GdbSession;

  private constructor(
    private readonly server: net.Server,
    private readonly machine: Machine,
    private readonly log: (line: string) => void,
  ) {
    server.on('connection', (socket) => this.accept(socket));
  }

  /** Starts listening; rejects with one sentence (and `code`, e.g. EADDRINUSE) if the address cannot be bound. */
  static listen(machine: Machine, options: GdbStubOptions): Promise<GdbStub> {
    if (!machine.debug.enabled) return Promise.reject(new Error('the gdb stub needs a machine created with the `debug` option'));
    const server = net.createServer();
    return new Promise((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) => {
        const why = err.code === 'EADDRINUSE' ? 'the address is in use' : err.code === 'EACCES' ? 'permission denied' : err.message;
        reject(Object.assign(new Error(`cannot listen for gdb on ${options.host}:${options.port}: ${why}`), { code: err.code }));
      });
      server.listen(options.port, options.host, () => resolve(new GdbStub(server, machine, options.log ?? (() => {}))));
    });
  }

  /** Where the stub listens (the real port when 0 was asked for). */
  get address(): { host: string; port: number } {
    const a = this.server.address() as net.AddressInfo;
    return { host: a.address, port: a.port };
  }

  /** Stops listening and ends the client's connection once its pending reply (e.g. the guest's exit) is sent. */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    await this.session?.end();
    await closed;
  }

  private accept(socket: net.Socket): void {
    if (this.session) {
      // One debugger at a time (like gdbserver and QEMU).
      socket.destroy();
      return;
    }
    const who = `${socket.remoteAddress}:${socket.remotePort}`;
    this.log(`gdb connected from ${who}`);
    this.session = new GdbSession(socket, this.machine, () => {
      this.session = undefined;
      this.log(`gdb at ${who} disconnected`);
    });
  }
}

/** One gdb connection. Packets are answered one at a time, in order; Ctrl-C is acted on at once. */
class GdbSession {
  private readonly decoder = new RspDecoder(GDB_PACKET_SIZE);
  private queue: Promise<void>;
  private lastSent?: Buffer;
  /** True while c or s waits for the vCPU to stop. */
  private running = false;
  /** Set by D, k, or the end of the connection: the session does no more work. */
  private finished = false;

  constructor(
    private readonly socket: net.Socket,
    private readonly machine: Machine,
    private readonly onClose: () => void,
  ) {
    socket.setNoDelay(true);
    // gdb expects the target stopped once it has attached.
    this.queue = this.interruptQuietly();
    socket.on('data', (chunk: Buffer) => {
      for (const event of this.decoder.push(chunk)) this.onEvent(event);
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      if (!this.finished) {
        // gdb went away without D or k: let the guest run on, as after D.
        this.finished = true;
        void this.machine.debug.detach().catch(() => {});
      }
      this.onClose();
    });
  }

  /** Finishes the packet in hand (its reply included), then closes the connection. */
  async end(): Promise<void> {
    await Promise.race([this.queue, new Promise((resolve) => setTimeout(resolve, 2000).unref())]);
    this.finished = true;
    this.socket.end();
  }

  private onEvent(event: RspEvent): void {
    switch (event.kind) {
      case 'packet': {
        this.socket.write('+');
        const packet = Buffer.from(event.payload).toString('latin1');
        this.queue = this.queue.then(() => this.serve(packet));
        break;
      }
      case 'bad-checksum':
      case 'oversized':
        this.socket.write('-');
        break;
      case 'nack':
        if (this.lastSent) this.socket.write(this.lastSent);
        break;
      case 'interrupt':
        // gdb's Ctrl-C: stop the guest; the pending c/s answers with the stop.
        if (this.running) void this.machine.debug.interrupt().catch(() => {});
        break;
      case 'ack':
        break;
    }
  }

  private async interruptQuietly(): Promise<void> {
    if (this.machine.state === 'stopped') return;
    await this.machine.debug.interrupt().catch(() => {});
  }

  private async serve(packet: string): Promise<void> {
    if (this.finished) return;
    let reply: string | undefined;
    try {
      reply = await this.answer(packet);
    } catch (err) {
      reply = (err as { code?: string }).code === 'ENOSPC' ? ERROR_NO_SPACE : ERROR_FAILED;
    }
    if (reply !== undefined && !this.socket.destroyed) this.send(reply);
  }

  private send(payload: string): void {
    this.lastSent = encodePacket(payload);
    this.socket.write(this.lastSent);
  }

  /** The reply to one packet; undefined: none (k). */
  private async answer(packet: string): Promise<string | undefined> {
    const debug = this.machine.debug;
    const kind = packet[0];
    if (packet.startsWith('qSupported')) return `PacketSize=${GDB_PACKET_SIZE.toString(16)};qXfer:features:read+`;
    if (packet.startsWith('qXfer:features:read:')) return this.readFeatures(packet.slice('qXfer:features:read:'.length));
    if (packet === 'qAttached' || packet.startsWith('qAttached:')) return '1'; // attached to a running VM: quitting gdb detaches
    if (packet === 'qC') return 'QC1';
    if (packet === 'qfThreadInfo') return 'm1';
    if (packet === 'qsThreadInfo') return 'l';
    if (kind === 'H' || kind === 'T') return 'OK'; // select thread / is thread alive: there is one, thread 1
    if (packet === '?') return stopReply(await this.currentStop());
    if (packet === 'g') return this.readAllRegisters(await debug.readState());
    if (kind === 'G') return this.writeAllRegisters(packet.slice(1));
    if (kind === 'p') return this.readRegister(packet.slice(1));
    if (kind === 'P') return this.writeRegister(packet.slice(1));
    if (kind === 'm') return this.readMemory(packet.slice(1));
    if (kind === 'M' || kind === 'X') return this.writeMemory(packet.slice(1), kind === 'X');
    if (kind === 'Z' || kind === 'z') return this.breakpoint(packet, kind === 'Z');
    if (kind === 'c' || kind === 's') return this.resume(kind === 'c' ? 'continue' : 'step', packet.slice(1));
    if (packet === 'k' || packet.startsWith('vKill')) return this.kill(packet !== 'k');
    if (kind === 'D') return this.detach();
    return '';
  }

  private async currentStop(): Promise<DebugOutcome> {
    if (this.machine.state === 'stopped') return { kind: 'exited', stop: await this.machine.wait() };
    return this.machine.debug.interrupt();
  }

  /** qXfer:features:read:ANNEX:OFFSET,LENGTH → 'm' + part (more follows) or 'l' + last part (E.4 "General Query Packets"). */
  private readFeatures(request: string): string {
    const match = /^([^:]*):([0-9a-fA-F]+),([0-9a-fA-F]+)$/.exec(request);
    if (!match) return ERROR_BAD_PACKET;
    if (match[1] !== 'target.xml') return 'E00';
    const xml = targetDescriptionXml();
    const offset = Number.parseInt(match[2]!, 16);
    const length = Math.min(Number.parseInt(match[3]!, 16), GDB_PACKET_SIZE - 16);
    const part = xml.slice(offset, offset + length);
    return (offset + length >= xml.length ? 'l' : 'm') + part;
  }

  private readAllRegisters(state: CpuState): string {
    return AMD64_REGISTERS.map((r) => toHex(r.read(state))).join('');
  }

  private async writeAllRegisters(hex: string): Promise<string> {
    const bytes = fromHex(hex);
    const total = AMD64_REGISTERS.reduce((n, r) => n + r.bitsize / 8, 0);
    if (!bytes || bytes.length !== total) return ERROR_BAD_PACKET;
    const state = await this.machine.debug.readState();
    const parts = new Set<StatePart>();
    let at = 0;
    for (const r of AMD64_REGISTERS) {
      const value = bytes.subarray(at, at + r.bitsize / 8);
      at += r.bitsize / 8;
      if (Buffer.compare(value, r.read(state)) === 0) continue;
      if (!r.write) return ERROR_FAILED; // e.g. a segment selector: not writable here
      parts.add(r.write(state, value));
    }
    await this.writeParts(state, parts);
    return 'OK';
  }

  private async readRegister(text: string): Promise<string> {
    const index = parseHexNumber(text);
    const register = index === undefined ? undefined : AMD64_REGISTERS[Number(index)];
    if (!register) return ERROR_BAD_PACKET;
    return toHex(register.read(await this.machine.debug.readState()));
  }

  private async writeRegister(text: string): Promise<string> {
    const [number, hex] = text.split('=');
    const index = parseHexNumber(number ?? '');
    const register = index === undefined ? undefined : AMD64_REGISTERS[Number(index)];
    const bytes = fromHex(hex ?? '');
    if (!register || !bytes || bytes.length !== registerSize(Number(index))) return ERROR_BAD_PACKET;
    if (!register.write) return ERROR_FAILED;
    const state = await this.machine.debug.readState();
    await this.writeParts(state, new Set([register.write(state, bytes)]));
    return 'OK';
  }

  private async writeParts(state: CpuState, parts: Set<StatePart>): Promise<void> {
    if (parts.size === 0) return;
    const change: CpuStateChange = {};
    if (parts.has('regs')) change.regs = state.regs;
    if (parts.has('fpu')) change.fpu = state.fpu;
    if (parts.has('fsBase')) change.fsBase = state.sregs.fs.base;
    if (parts.has('gsBase')) change.gsBase = state.sregs.gs.base;
    await this.machine.debug.writeState(change);
  }

  /** m ADDR,LENGTH → hex bytes (fewer where memory ends); E0e if none is readable. */
  private async readMemory(text: string): Promise<string> {
    const range = parseRange(text);
    if (!range) return ERROR_BAD_PACKET;
    const length = Math.min(range.length, (GDB_PACKET_SIZE - 4) >> 1);
    if (length === 0) return '';
    const bytes = await this.machine.debug.readMemory(range.address, length);
    return bytes.length > 0 ? toHex(bytes) : ERROR_MEMORY;
  }

  /** M ADDR,LENGTH:HEX or X ADDR,LENGTH:BINARY (already unescaped by the decoder). */
  private async writeMemory(text: string, binary: boolean): Promise<string> {
    const colon = text.indexOf(':');
    const range = colon < 0 ? undefined : parseRange(text.slice(0, colon));
    const data = colon < 0 ? undefined : binary ? Uint8Array.from(Buffer.from(text.slice(colon + 1), 'latin1')) : fromHex(text.slice(colon + 1));
    if (!range || !data || data.length !== range.length) return ERROR_BAD_PACKET;
    if (data.length === 0) return 'OK'; // gdb's probe for X support
    return (await this.machine.debug.writeMemory(range.address, data)) ? 'OK' : ERROR_MEMORY;
  }

  /** Z0/Z1 insert, z0/z1 remove (TYPE,ADDR,KIND); other types are not supported (empty reply). */
  private async breakpoint(packet: string, insert: boolean): Promise<string> {
    const match = /^[Zz]([0-4]),([0-9a-fA-F]{1,16}),([0-9a-fA-F]+)$/.exec(packet);
    if (!match) return ERROR_BAD_PACKET;
    if (match[1] !== '0' && match[1] !== '1') return '';
    const address = BigInt('0x' + match[2]!);
    if (insert) await this.machine.debug.insertBreakpoint(address);
    else await this.machine.debug.removeBreakpoint(address);
    return 'OK';
  }

  /** c [ADDR] / s [ADDR]: optionally move RIP, run (or step), and reply with the next stop. */
  private async resume(mode: 'continue' | 'step', addressText: string): Promise<string> {
    const debug = this.machine.debug;
    if (this.machine.state === 'stopped') return stopReply({ kind: 'exited', stop: await this.machine.wait() });
    if (addressText) {
      const address = parseHexNumber(addressText);
      if (address === undefined) return ERROR_BAD_PACKET;
      const state = await debug.readState();
      state.regs.rip = address;
      await debug.writeState({ regs: state.regs });
    }
    this.running = true;
    try {
      return stopReply(mode === 'continue' ? await debug.continue() : await debug.step());
    } finally {
      this.running = false;
    }
  }

  /** k / vKill: end the VM. gdb expects no reply to k (E.2 "Packets"); vKill is answered OK. */
  private async kill(replyOk: boolean): Promise<string | undefined> {
    this.finished = true;
    await this.machine.stop();
    if (replyOk) this.send('OK');
    this.socket.end();
    return undefined;
  }

  /** D: breakpoints off, the guest runs on, the connection ends. */
  private async detach(): Promise<string | undefined> {
    this.finished = true;
    await this.machine.debug.detach().catch(() => {});
    this.send('OK');
    this.socket.end();
    return undefined;
  }
}

/** "ADDR,LENGTH" in hex. */
function parseRange(text: string): { address: bigint; length: number } | undefined {
  const [a, l] = text.split(',');
  const address = parseHexNumber(a ?? '');
  const length = parseHexNumber(l ?? '');
  if (address === undefined || length === undefined || length > 0x100000n) return undefined;
  return { address, length: Number(length) };
}
