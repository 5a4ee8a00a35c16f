// The GDB Remote Serial Protocol framing codec (src/gdb/rsp-packet.ts): pure,
// no KVM. Well-formed traffic, and what a garbled or hostile peer may send.
import { checksum, encodePacket, RspDecoder, type RspEvent } from '../src/gdb/rsp-packet';
import { fromHex, fromLittleEndian, littleEndian, parseHexNumber, toHex } from '../src/gdb/hex';

const bytes = (text: string): Uint8Array => Uint8Array.from(Buffer.from(text, 'latin1'));
const text = (event: RspEvent | undefined): string | undefined =>
  event?.kind === 'packet' ? Buffer.from(event.payload).toString('latin1') : undefined;

describe('encodePacket', () => {
  it('frames a payload with its modulo-256 checksum in two lower-case hex digits', () => {
    expect(encodePacket('OK').toString('latin1')).toBe('$OK#9a');
    expect(encodePacket('').toString('latin1')).toBe('$#00');
    expect(encodePacket('qSupported').toString('latin1')).toBe('$qSupported#37');
  });

  it("escapes '$', '#', '}' and '*' as '}' + (byte ^ 0x20), checksummed as sent", () => {
    const packet = encodePacket(Uint8Array.of(0x24, 0x23, 0x7d, 0x2a, 0x41));
    expect([...packet]).toEqual([0x24, 0x7d, 0x04, 0x7d, 0x03, 0x7d, 0x5d, 0x7d, 0x0a, 0x41, 0x23, ...Buffer.from('a3')]);
    expect(checksum(Uint8Array.of(0x7d, 0x04, 0x7d, 0x03, 0x7d, 0x5d, 0x7d, 0x0a, 0x41))).toBe(0xa3);
  });
});

describe('RspDecoder', () => {
  it('reads a packet, acks, nacks and Ctrl-C', () => {
    const d = new RspDecoder(4096);
    const events = d.push(bytes('+$g#67-\x03+'));
    expect(events.map((e) => e.kind)).toEqual(['ack', 'packet', 'nack', 'interrupt', 'ack']);
    expect(text(events[1])).toBe('g');
  });

  it('reads packets split at every byte boundary', () => {
    const wire = bytes('$m8078,4#a4$qC#b4');
    const d = new RspDecoder(4096);
    const events = [...wire].flatMap((b) => d.push(Uint8Array.of(b)));
    expect(events.map(text)).toEqual(['m8078,4', 'qC']);
  });

  it('round-trips every byte value, 0x03 inside a packet included (binary-safe X packets)', () => {
    const payload = Uint8Array.from({ length: 256 }, (_, i) => i);
    const d = new RspDecoder(4096);
    const events = d.push(encodePacket(payload));
    expect(events).toHaveLength(1);
    expect(events[0]!.kind).toBe('packet');
    expect([...(events[0] as { payload: Uint8Array }).payload]).toEqual([...payload]);
  });

  it("a wrong checksum is 'bad-checksum' (answer '-'), and the next packet is read", () => {
    const d = new RspDecoder(4096);
    expect(d.push(bytes('$g#00'))).toEqual([{ kind: 'bad-checksum' }]);
    expect(d.push(bytes('$g#zz'))).toEqual([{ kind: 'bad-checksum' }]);
    expect(d.push(bytes('$g#6z'))).toEqual([{ kind: 'bad-checksum' }]);
    expect(d.push(bytes('$g#67')).map(text)).toEqual(['g']);
  });

  it('bounds a packet: an oversized one is dropped whole and the decoder recovers', () => {
    const d = new RspDecoder(16);
    const big = encodePacket('M8000,100:' + '00'.repeat(0x100));
    expect(d.push(big)).toEqual([{ kind: 'oversized' }]);
    expect(d.push(bytes('$?#3f')).map(text)).toEqual(['?']);
    // Exactly at the limit is fine.
    expect(d.push(encodePacket('x'.repeat(16))).map((e) => e.kind)).toEqual(['packet']);
    expect(d.push(encodePacket('x'.repeat(17)))).toEqual([{ kind: 'oversized' }]);
  });

  it("resynchronises on '$' inside a packet and skips noise between packets", () => {
    const d = new RspDecoder(4096);
    expect(d.push(bytes('garbage\r\n$half-a-pac$?#3f noise $qC#b4')).map(text)).toEqual(['?', 'qC']);
  });

  it("drops a lone '}' at the end of a payload (nothing to escape)", () => {
    const d = new RspDecoder(4096);
    const raw = bytes('ab}');
    const wire = Buffer.concat([Buffer.from('$'), Buffer.from(raw), Buffer.from('#' + checksum(raw).toString(16).padStart(2, '0'))]);
    expect(d.push(wire).map(text)).toEqual(['ab']);
  });

  it('survives random garbage: only known events, never a throw, bounded buffering', () => {
    let seed = 12345;
    const random = (): number => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
    const d = new RspDecoder(64);
    for (let round = 0; round < 200; round++) {
      const chunk = Uint8Array.from({ length: Math.floor(random() * 300) }, () =>
        random() < 0.2 ? [0x24, 0x23, 0x7d, 0x2b, 0x2d, 0x03][Math.floor(random() * 6)]! : Math.floor(random() * 256),
      );
      for (const e of d.push(chunk)) {
        expect(['packet', 'ack', 'nack', 'interrupt', 'bad-checksum', 'oversized']).toContain(e.kind);
        if (e.kind === 'packet') expect(e.payload.length).toBeLessThanOrEqual(64);
      }
    }
    // Still in step afterwards.
    d.push(bytes('#00'));
    expect(d.push(bytes('$?#3f')).map(text)).toContain('?');
  });

  it('rejects a nonsensical size limit', () => {
    expect(() => new RspDecoder(0)).toThrow(RangeError);
  });
});

describe('hex helpers', () => {
  it('converts bytes, numbers and little-endian values', () => {
    expect(toHex(Uint8Array.of(0x48, 0x65, 0x00, 0xff))).toBe('486500ff');
    expect([...fromHex('486500FF')!]).toEqual([0x48, 0x65, 0x00, 0xff]);
    expect(fromHex('abc')).toBeUndefined();
    expect(fromHex('zz')).toBeUndefined();
    expect(parseHexNumber('ffffffff81000000')).toBe(0xffffffff81000000n);
    expect(parseHexNumber('1ffffffff81000000')).toBeUndefined(); // > 64 bits
    expect(parseHexNumber('')).toBeUndefined();
    expect(parseHexNumber('-1')).toBeUndefined();
    expect([...littleEndian(0x8011n, 8)]).toEqual([0x11, 0x80, 0, 0, 0, 0, 0, 0]);
    expect(fromLittleEndian(Uint8Array.of(0x11, 0x80, 0, 0))).toBe(0x8011n);
    expect([...littleEndian(-1n, 4)]).toEqual([0xff, 0xff, 0xff, 0xff]);
  });
});
