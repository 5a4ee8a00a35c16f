// The websocket protocol between the web console page (page.js) and the VMM.
//
//   server → browser  binary frame: guest console bytes, as the guest wrote them
//                     text frame:   one JSON ServerMessage (status, stopped)
//   browser → server  binary frame: keystrokes for the guest's console, 1..MAX_INPUT_FRAME bytes
//
// Console bytes travel as binary frames both ways because they are bytes,
// not text: a guest may write any byte, and a terminal sends control keys.
// Everything from the browser is untrusted (any page or program can speak
// websocket), so the inbound side is deliberately tiny: one message kind,
// bounded, and anything else closes the connection.
import type { MachineState, MachineStatistics } from '../vmm/machine';

/** Largest keystroke frame accepted. A paste larger than this is split by the page. */
export const MAX_INPUT_FRAME = 4096;

/** Close codes from RFC 6455 §7.4.1 that say why we hung up. */
export const CLOSE_NORMAL = 1000;
export const CLOSE_GOING_AWAY = 1001;
export const CLOSE_UNSUPPORTED_DATA = 1003;
export const CLOSE_POLICY = 1008;
export const CLOSE_TOO_BIG = 1009;
export const CLOSE_TRY_AGAIN_LATER = 1013;

export interface StatusMessage {
  type: 'status';
  state: MachineState;
  /** Where vCPU 0 was at the last sample: RIP (hex string), privilege level, CPU mode in words. */
  vcpu?: { rip: string; cpl: number; mode: string };
  /** VM exits by reason since boot ("io-in", "io-out", "hlt", ...). */
  exits: Record<string, number>;
  total: number;
  /** Console bytes the guest wrote while nobody read them. */
  consoleDropped: number;
}

export interface StoppedMessage {
  type: 'stopped';
  /** halt, poweroff, reset, error, stopped. */
  kind: string;
  reason: string;
}

export type ServerMessage = StatusMessage | StoppedMessage;

/** What to do with one frame from a browser. */
export type ClientFrame =
  | { kind: 'input'; bytes: Buffer }
  | { kind: 'ignore' }
  | { kind: 'reject'; code: number; reason: string };

/** Classifies a frame from a browser. Only non-empty binary frames up to MAX_INPUT_FRAME are keystrokes. */
export function classifyClientFrame(data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean): ClientFrame {
  if (!isBinary) return { kind: 'reject', code: CLOSE_UNSUPPORTED_DATA, reason: 'only binary keystroke frames are accepted' };
  const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
  if (bytes.length > MAX_INPUT_FRAME) return { kind: 'reject', code: CLOSE_TOO_BIG, reason: `keystroke frame over ${MAX_INPUT_FRAME} bytes` };
  if (bytes.length === 0) return { kind: 'ignore' };
  return { kind: 'input', bytes };
}

/** Keeps only finite, non-negative counts: the page renders these as numbers. */
function counts(record: Record<string, number> | undefined): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, value] of Object.entries(record ?? {})) if (Number.isFinite(value) && value >= 0) out[name] = value;
  return out;
}

/** The status message for a machine state and its latest statistics (if any were read yet). */
export function statusMessage(state: MachineState, statistics: MachineStatistics | undefined): StatusMessage {
  const message: StatusMessage = {
    type: 'status',
    state,
    exits: counts(statistics?.exits),
    total: statistics?.total ?? 0,
    consoleDropped: statistics?.consoleDropped ?? 0,
  };
  if (statistics?.vcpu) message.vcpu = { ...statistics.vcpu };
  return message;
}
