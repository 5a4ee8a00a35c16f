// GDB Remote Serial Protocol framing (GDB manual, Appendix E "GDB Remote
// Serial Protocol", E.1 "Overview"). Pure: bytes in, events out; bytes out.
//
//   packet:      '$' payload '#' c1 c2    c1c2 = two hex digits, the sum of
//                                         the payload bytes (as sent) mod 256
//   escape:      '}' (0x7d) then (byte XOR 0x20), for '#', '$', '}' and '*'
//                inside a payload (binary data: X packets, qXfer replies)
//   acks:        '+' payload received intact, '-' please send it again
//   interrupt:   0x03 outside a packet: stop the target (gdb's Ctrl-C)
//   run-length:  '*' followed by a count char in *replies* only (E.1: "Response
//                data can be run-length encoded"); this stub never sends it,
//                and escapes every '*' so gdb never reads one as a repeat.
//
// The decoder takes whatever arrives on the socket, in any split. It bounds
// every packet (a peer cannot make it buffer more than `maxPacketSize` raw
// payload bytes), resynchronises on '$', and skips noise between packets.
// The encoder produces complete packets.

const DOLLAR = 0x24; // '$'
const HASH = 0x23; // '#'
const ESCAPE = 0x7d; // '}'
const STAR = 0x2a; // '*'
const PLUS = 0x2b; // '+'
const MINUS = 0x2d; // '-'
const INTERRUPT = 0x03; // Ctrl-C

export type RspEvent =
  /** A packet whose checksum matched; `payload` is unescaped. Answer '+'. */
  | { kind: 'packet'; payload: Uint8Array }
  /** The peer acknowledged our last packet. */
  | { kind: 'ack' }
  /** The peer asks for our last packet again. */
  | { kind: 'nack' }
  /** 0x03 between packets: interrupt the target. */
  | { kind: 'interrupt' }
  /** A packet whose checksum did not match (or was not hex). Answer '-'. */
  | { kind: 'bad-checksum' }
  /** A packet longer than the limit: dropped whole. Answer '-'. */
  | { kind: 'oversized' };

/** The modulo-256 sum of `bytes` (E.1: the checksum of a packet). */
export function checksum(bytes: Uint8Array): number {
  let sum = 0;
  for (const b of bytes) sum = (sum + b) & 0xff;
  return sum;
}

function hexDigit(byte: number): number {
  if (byte >= 0x30 && byte <= 0x39) return byte - 0x30;
  if (byte >= 0x61 && byte <= 0x66) return byte - 0x61 + 10;
  if (byte >= 0x41 && byte <= 0x46) return byte - 0x41 + 10;
  return -1;
}

/** Whether a payload byte must be escaped: the framing characters, and '*' (read as run-length by gdb). */
function needsEscape(byte: number): boolean {
  return byte === DOLLAR || byte === HASH || byte === ESCAPE || byte === STAR;
}

/** Frames a payload as `$payload#xx`, escaping what must be escaped. */
export function encodePacket(payload: Uint8Array | string): Buffer {
  const data = typeof payload === 'string' ? Buffer.from(payload, 'latin1') : payload;
  let escapes = 0;
  for (const b of data) if (needsEscape(b)) escapes++;
  const out = Buffer.alloc(data.length + escapes + 4);
  let at = 0;
  out[at++] = DOLLAR;
  for (const b of data) {
    if (needsEscape(b)) {
      out[at++] = ESCAPE;
      out[at++] = b ^ 0x20;
    } else {
      out[at++] = b;
    }
  }
  const sum = checksum(out.subarray(1, at));
  out[at++] = HASH;
  out.write(sum.toString(16).padStart(2, '0'), at, 'latin1');
  return out;
}

type State = 'idle' | 'payload' | 'check1' | 'check2';

export class RspDecoder {
  private state: State = 'idle';
  /** Raw payload bytes of the packet being read (escapes still in), up to the limit. */
  private readonly raw: Uint8Array;
  private length = 0;
  private overflowed = false;
  private sent = 0;

  /** `maxPacketSize`: the most raw payload bytes one packet may have (what qSupported's PacketSize tells gdb). */
  constructor(readonly maxPacketSize: number) {
    if (!Number.isInteger(maxPacketSize) || maxPacketSize < 1) throw new RangeError('maxPacketSize must be a positive integer');
    this.raw = new Uint8Array(maxPacketSize);
  }

  /** Feeds bytes from the peer; returns what they complete, in order. */
  push(bytes: Uint8Array): RspEvent[] {
    const events: RspEvent[] = [];
    for (const byte of bytes) {
      switch (this.state) {
        case 'idle':
          if (byte === DOLLAR) this.startPacket();
          else if (byte === PLUS) events.push({ kind: 'ack' });
          else if (byte === MINUS) events.push({ kind: 'nack' });
          else if (byte === INTERRUPT) events.push({ kind: 'interrupt' });
          // Anything else between packets is noise: skip it.
          break;
        case 'payload':
          if (byte === HASH) this.state = 'check1';
          else if (byte === DOLLAR) this.startPacket(); // a new packet began: the old one was cut short
          else if (this.length < this.raw.length) this.raw[this.length++] = byte;
          else this.overflowed = true;
          break;
        case 'check1': {
          const digit = hexDigit(byte);
          if (digit >= 0) {
            this.sent = digit * 16;
            this.state = 'check2';
          } else {
            this.state = 'idle';
            events.push(this.overflowed ? { kind: 'oversized' } : { kind: 'bad-checksum' });
          }
          break;
        }
        case 'check2': {
          this.state = 'idle';
          const digit = hexDigit(byte);
          if (this.overflowed) events.push({ kind: 'oversized' });
          else if (digit < 0 || this.sent + digit !== checksum(this.raw.subarray(0, this.length))) events.push({ kind: 'bad-checksum' });
          else events.push({ kind: 'packet', payload: unescape(this.raw.subarray(0, this.length)) });
          break;
        }
      }
    }
    return events;
  }

  private startPacket(): void {
    this.state = 'payload';
    this.length = 0;
    this.overflowed = false;
  }
}

/** Undoes '}' escapes; a '}' at the very end (nothing to escape) is dropped. */
function unescape(raw: Uint8Array): Uint8Array {
  const out = new Uint8Array(raw.length);
  let n = 0;
  for (let i = 0; i < raw.length; i++) {
    if (raw[i] === ESCAPE) {
      if (i + 1 < raw.length) out[n++] = raw[++i]! ^ 0x20;
    } else {
      out[n++] = raw[i]!;
    }
  }
  return out.slice(0, n);
}
