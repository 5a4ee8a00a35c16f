// The management protocol of `tskvm daemon`: JSON lines over a Unix stream
// socket (one JSON object per line, UTF-8, "\n" terminated).
//
//   client → daemon   {"id":1,"op":"start","name":"a","config":{...},"cwd":"/home/me/vms"}
//   daemon → client   {"id":1,"ok":true,"result":{"name":"a","state":"running",...}}
//                     {"id":2,"ok":false,"error":{"code":"ENOVM","message":"no VM named \"b\""}}
//
// A connection may carry any number of requests; each response repeats the
// request's `id` (a number or a short string, optional), and a request that
// takes long (shutdown) does not hold up the ones after it. Two requests
// change what the connection carries afterwards and must be its last:
//
// - `console`: after the ok response the connection is a raw byte stream both
//   ways — the VM's recent output (history) and then its live console output
//   from the daemon, keystrokes for the guest's COM1 from the client — until
//   either side closes it (detach) or the VM stops (the daemon closes it).
// - `watch`: after the ok response the daemon sends event lines
//   ({"event":"state",...}) until the client closes the connection.
//
// Everything that arrives is untrusted: `parseRequest` turns one line into a
// typed request or a ProtocolError (which the daemon answers with an error
// response); nothing a client sends can throw past it.
import type { MachineOptions, MachineState, MachineStatistics, PowerButtonResult } from '../vmm/machine';
import { parseMachineConfig, type MachineConfigJson } from './machine-config';

/** Bumped when a request or result changes incompatibly; `ping` reports it. */
export const PROTOCOL_VERSION = 1;
/** Longest request line accepted (a config with a long command line fits easily). */
export const MAX_REQUEST_BYTES = 1 << 20;
/** VM names: a letter or digit, then letters, digits, '.', '_' or '-'; at most 64 characters. */
export const VM_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** Longest grace time `shutdown` accepts before it destroys the VM: one day. */
export const MAX_SHUTDOWN_TIMEOUT_SECONDS = 86400;

export type RequestId = number | string;

/** The requests, as a client writes them. */
export type ClientRequest =
  | { id?: RequestId; op: 'ping' }
  | { id?: RequestId; op: 'list' }
  /** Creates VM `name` from a MachineOptions-shaped config and starts it. Relative paths in it resolve against `cwd`. */
  | { id?: RequestId; op: 'start'; name: string; config: MachineConfigJson; cwd: string }
  | { id?: RequestId; op: 'info'; name: string }
  | { id?: RequestId; op: 'suspend'; name: string }
  | { id?: RequestId; op: 'resume'; name: string }
  /** Presses the ACPI power button, waits up to `timeoutSeconds` (default 30) for the guest to power off, then destroys it. */
  | { id?: RequestId; op: 'shutdown'; name: string; timeoutSeconds?: number }
  | { id?: RequestId; op: 'destroy'; name: string }
  /** Attaches to the console; `replay: false` skips the output history. */
  | { id?: RequestId; op: 'console'; name: string; replay?: boolean }
  | { id?: RequestId; op: 'watch' };

export type Op = ClientRequest['op'];

/** A request after validation: `start` carries ready MachineOptions (paths absolute). */
export type Request = Exclude<ClientRequest, { op: 'start' }> | { id?: RequestId; op: 'start'; name: string; options: MachineOptions };

export type VmState = MachineState;

/** Why a VM stopped, as plain JSON (an error's register dump is preformatted text). */
export interface StopInfo {
  kind: 'halt' | 'poweroff' | 'reset' | 'stopped' | 'error';
  reason: string;
  report?: string;
}

export interface VmSummary {
  name: string;
  state: VmState;
  /** Seconds since the guest started; null before it runs. */
  uptimeSeconds: number | null;
  platform: 'bare' | 'pc';
  /** Guest RAM as configured ("2M", or bytes). */
  memory: string;
  /** Set once the VM has stopped by itself (it stays listed until destroyed). */
  stop?: StopInfo;
}

export interface VmInfo extends VmSummary {
  boot: { kind: 'linux'; kernel: string; initrd?: string; cmdline?: string } | { kind: 'binary'; file: string; mode: string; load: number; entry: number };
  /** Clients attached to the console now. */
  consoles: number;
  /** Console output bytes since the start. */
  outputBytes: number;
  /** Exits by reason, device accesses and where vCPU 0 is (RIP, CPL, mode); absent before the first answer. */
  statistics?: MachineStatistics;
}

export interface Results {
  ping: { daemon: 'tskvm'; protocol: number; pid: number; vms: number };
  list: { vms: VmSummary[] };
  start: VmSummary;
  info: VmInfo;
  suspend: VmSummary;
  resume: VmSummary;
  /** `button`: what the press did; `destroyed`: the guest did not power off in time and was destroyed. */
  shutdown: { name: string; button: PowerButtonResult; destroyed: boolean; stop: StopInfo };
  destroy: { name: string; stop: StopInfo };
  /** `replayed`: history bytes that follow before the live output. */
  console: { name: string; replayed: number };
  watch: { watching: true };
}

export type ErrorCode =
  /** Not JSON, not an object, unknown op, a field missing or of the wrong type, a bad config. */
  | 'EBADREQUEST'
  /** A request line longer than MAX_REQUEST_BYTES. */
  | 'ETOOLONG'
  | 'ENOVM'
  | 'EEXIST'
  /** The VM is not in a state that allows it (suspend a stopped VM, ...). */
  | 'ESTATE'
  /** The VM could not start (missing file, no /dev/kvm, ...); the message says why. */
  | 'ESTART'
  /** The daemon is stopping. */
  | 'ESHUTDOWN'
  | 'EINTERNAL';

export interface ErrorBody {
  code: ErrorCode;
  message: string;
}

export type Response<R = unknown> = { id?: RequestId; ok: true; result: R } | { id?: RequestId; ok: false; error: ErrorBody };

export type DaemonEvent =
  | { event: 'state'; name: string; state: VmState }
  | { event: 'stopped'; name: string; stop: StopInfo }
  | { event: 'removed'; name: string };

/** A request the daemon refuses; `id` is the request's, when it could be read. */
export class ProtocolError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly id?: RequestId,
  ) {
    super(message);
    this.name = 'ProtocolError';
  }
}

const OPS: ReadonlySet<string> = new Set<Op>(['ping', 'list', 'start', 'info', 'suspend', 'resume', 'shutdown', 'destroy', 'console', 'watch']);

/** The fields each op may carry besides `id` and `op`. */
const FIELDS: Record<Op, readonly string[]> = {
  ping: [],
  list: [],
  watch: [],
  start: ['name', 'config', 'cwd'],
  info: ['name'],
  suspend: ['name'],
  resume: ['name'],
  destroy: ['name'],
  shutdown: ['name', 'timeoutSeconds'],
  console: ['name', 'replay'],
};

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function readId(value: unknown): RequestId | undefined {
  if (typeof value === 'number' && Number.isSafeInteger(value)) return value;
  if (typeof value === 'string' && value.length <= 128) return value;
  return undefined;
}

/** Quotes a client-supplied string for a message, cut short. */
export function quote(value: string, max = 64): string {
  return JSON.stringify(value.length > max ? value.slice(0, max) + '…' : value);
}

/** Checks a VM name; returns it or throws a ProtocolError. */
export function checkVmName(value: unknown, id?: RequestId): string {
  if (typeof value !== 'string') throw new ProtocolError('EBADREQUEST', 'the request needs a "name" string', id);
  if (!VM_NAME_PATTERN.test(value))
    throw new ProtocolError('EBADREQUEST', `invalid VM name ${quote(value)}: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit`, id);
  return value;
}

/**
 * Validates one request line. Returns the typed request, or throws a
 * ProtocolError saying what is wrong (never anything else).
 */
export function parseRequest(line: string): Request {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    throw new ProtocolError('EBADREQUEST', 'the request is not valid JSON');
  }
  if (!isPlainObject(value)) throw new ProtocolError('EBADREQUEST', 'the request must be a JSON object');
  const hasId = Object.prototype.hasOwnProperty.call(value, 'id');
  const id = hasId ? readId(value.id) : undefined;
  if (hasId && id === undefined) throw new ProtocolError('EBADREQUEST', '"id" must be an integer or a string of at most 128 characters');
  const op = value.op;
  if (typeof op !== 'string') throw new ProtocolError('EBADREQUEST', 'the request needs an "op" string', id);
  if (!OPS.has(op)) throw new ProtocolError('EBADREQUEST', `unknown op ${quote(op)} (known: ${[...OPS].join(', ')})`, id);
  const known = FIELDS[op as Op];
  for (const key of Object.keys(value)) {
    if (key !== 'id' && key !== 'op' && !known.includes(key)) throw new ProtocolError('EBADREQUEST', `unexpected field ${quote(key)} in a ${op} request`, id);
  }
  const base = hasId ? { id } : {};

  switch (op as Op) {
    case 'ping':
    case 'list':
    case 'watch':
      return { ...base, op: op as 'ping' | 'list' | 'watch' };
    case 'info':
    case 'suspend':
    case 'resume':
    case 'destroy':
      return { ...base, op: op as 'info' | 'suspend' | 'resume' | 'destroy', name: checkVmName(value.name, id) };
    case 'shutdown': {
      const name = checkVmName(value.name, id);
      const timeout = value.timeoutSeconds;
      if (timeout === undefined) return { ...base, op: 'shutdown', name };
      if (typeof timeout !== 'number' || !Number.isFinite(timeout) || timeout < 0 || timeout > MAX_SHUTDOWN_TIMEOUT_SECONDS)
        throw new ProtocolError('EBADREQUEST', `"timeoutSeconds" must be a number from 0 to ${MAX_SHUTDOWN_TIMEOUT_SECONDS}`, id);
      return { ...base, op: 'shutdown', name, timeoutSeconds: timeout };
    }
    case 'console': {
      const name = checkVmName(value.name, id);
      if (value.replay !== undefined && typeof value.replay !== 'boolean') throw new ProtocolError('EBADREQUEST', '"replay" must be true or false', id);
      return value.replay === undefined ? { ...base, op: 'console', name } : { ...base, op: 'console', name, replay: value.replay };
    }
    case 'start': {
      const name = checkVmName(value.name, id);
      const cwd = value.cwd;
      if (typeof cwd !== 'string' || !cwd.startsWith('/') || cwd.includes('\0') || cwd.length > 4096)
        throw new ProtocolError('EBADREQUEST', '"cwd" must be an absolute directory path (relative paths in the config resolve against it)', id);
      try {
        return { ...base, op: 'start', name, options: parseMachineConfig(value.config, cwd) };
      } catch (err) {
        throw new ProtocolError('EBADREQUEST', (err as Error).message, id);
      }
    }
  }
}

/** One line of the protocol: JSON and "\n". */
export function encodeLine(message: Response | DaemonEvent | ClientRequest): string {
  return JSON.stringify(message) + '\n';
}

/** The error response for a refused request. */
export function errorResponse(code: ErrorCode, message: string, id?: RequestId): Response<never> {
  return id === undefined ? { ok: false, error: { code, message } } : { id, ok: false, error: { code, message } };
}

/** Checks the shape of a line from the daemon (the client side trusts the daemon less than blindly). */
export function parseResponseOrEvent(line: string): Response | DaemonEvent {
  const value: unknown = JSON.parse(line);
  if (!isPlainObject(value)) throw new Error('the daemon sent something that is not a JSON object');
  if (typeof value.event === 'string') return value as unknown as DaemonEvent;
  if (value.ok === true && 'result' in value) return value as unknown as Response;
  if (value.ok === false && isPlainObject(value.error) && typeof value.error.code === 'string' && typeof value.error.message === 'string')
    return value as unknown as Response;
  throw new Error('the daemon sent a line that is neither a response nor an event');
}
