// The web console's pure parts: the output history bound, what a browser
// may send, which Host/Origin headers are answered, the --web address, and
// the status message built from machine statistics. No KVM, no sockets.
import { OutputHistory } from '../src/web/output-history';
import { CLOSE_TOO_BIG, CLOSE_UNSUPPORTED_DATA, MAX_INPUT_FRAME, classifyClientFrame, statusMessage } from '../src/web/protocol';
import { isAllowedHost, isAllowedOrigin, splitHostHeader } from '../src/web/request-guard';
import { parseListenAddress, urlHost } from '../src/web/listen-address';

describe('OutputHistory', () => {
  test('keeps everything below the limit, in order', () => {
    const h = new OutputHistory(16);
    h.append(Buffer.from('abc'));
    h.append(Buffer.from('def'));
    expect(h.snapshot().toString()).toBe('abcdef');
    expect(h.length).toBe(6);
  });

  test('drops the oldest bytes, cutting inside a chunk when needed', () => {
    const h = new OutputHistory(8);
    h.append(Buffer.from('01234'));
    h.append(Buffer.from('56789'));
    expect(h.snapshot().toString()).toBe('23456789');
    h.append(Buffer.from('ab'));
    expect(h.snapshot().toString()).toBe('456789ab');
    expect(h.length).toBe(8);
  });

  test('a chunk larger than the limit keeps only its tail', () => {
    const h = new OutputHistory(4);
    h.append(Buffer.from('xy'));
    h.append(Buffer.from('0123456789'));
    expect(h.snapshot().toString()).toBe('6789');
  });

  test('never holds more than the limit over many appends', () => {
    const h = new OutputHistory(1000);
    let all = '';
    for (let i = 0; i < 500; i++) {
      const piece = `line ${i}\r\n`;
      all += piece;
      h.append(Buffer.from(piece));
      expect(h.length).toBeLessThanOrEqual(1000);
    }
    expect(h.snapshot().toString()).toBe(all.slice(-1000));
  });

  test('copies: the caller may reuse its buffer, and a snapshot is not live', () => {
    const h = new OutputHistory(8);
    const reused = Buffer.from('aaaa');
    h.append(reused);
    reused.fill(0x62);
    const snap = h.snapshot();
    h.append(Buffer.from('cc'));
    expect(snap.toString()).toBe('aaaa');
    expect(h.snapshot().toString()).toBe('aaaacc');
  });

  test('limit 0 keeps nothing; a bad limit is refused', () => {
    const h = new OutputHistory(0);
    h.append(Buffer.from('x'));
    expect(h.snapshot().length).toBe(0);
    expect(() => new OutputHistory(-1)).toThrow(RangeError);
    expect(() => new OutputHistory(1.5)).toThrow(RangeError);
  });
});

describe('classifyClientFrame', () => {
  test('a binary frame is keystrokes', () => {
    expect(classifyClientFrame(Buffer.from('ls\r'), true)).toEqual({ kind: 'input', bytes: Buffer.from('ls\r') });
  });

  test('fragments and ArrayBuffers are joined into one byte string', () => {
    const frame = classifyClientFrame([Buffer.from('ab'), Buffer.from('c')], true);
    expect(frame.kind === 'input' && frame.bytes.toString()).toBe('abc');
    const ab = Uint8Array.of(1, 2, 3).buffer;
    const frame2 = classifyClientFrame(ab, true);
    expect(frame2.kind === 'input' && [...frame2.bytes]).toEqual([1, 2, 3]);
  });

  test('text frames are refused (only binary keystrokes exist)', () => {
    expect(classifyClientFrame(Buffer.from('{"type":"input"}'), false)).toMatchObject({ kind: 'reject', code: CLOSE_UNSUPPORTED_DATA });
  });

  test('frames are bounded: MAX_INPUT_FRAME passes, one more byte is refused', () => {
    expect(classifyClientFrame(Buffer.alloc(MAX_INPUT_FRAME, 0x61), true).kind).toBe('input');
    expect(classifyClientFrame(Buffer.alloc(MAX_INPUT_FRAME + 1, 0x61), true)).toMatchObject({ kind: 'reject', code: CLOSE_TOO_BIG });
  });

  test('an empty frame is ignored', () => {
    expect(classifyClientFrame(Buffer.alloc(0), true)).toEqual({ kind: 'ignore' });
  });
});

describe('request guard', () => {
  const loopback = { host: '127.0.0.1', port: 8080 };

  test('Host headers split into name and port', () => {
    expect(splitHostHeader('127.0.0.1:8080')).toEqual({ name: '127.0.0.1', port: 8080 });
    expect(splitHostHeader('[::1]:8080')).toEqual({ name: '::1', port: 8080 });
    expect(splitHostHeader('Example.COM')).toEqual({ name: 'example.com', port: undefined });
    expect(splitHostHeader('a b:1')).toBeUndefined();
    expect(splitHostHeader('x:1/evil')).toBeUndefined();
  });

  test('a loopback server answers its loopback names on its own port only', () => {
    expect(isAllowedHost('127.0.0.1:8080', loopback)).toBe(true);
    expect(isAllowedHost('localhost:8080', loopback)).toBe(true);
    expect(isAllowedHost('[::1]:8080', loopback)).toBe(true);
    expect(isAllowedHost('127.0.0.1:8081', loopback)).toBe(false);
    expect(isAllowedHost('127.0.0.1', loopback)).toBe(false);
    expect(isAllowedHost(undefined, loopback)).toBe(false);
  });

  test('DNS rebinding: a foreign name for our address is refused', () => {
    expect(isAllowedHost('evil.example:8080', loopback)).toBe(false);
    expect(isAllowedHost('evil.example:8080', { host: '192.168.1.5', port: 8080 })).toBe(false);
    expect(isAllowedHost('192.168.1.5:8080', { host: '192.168.1.5', port: 8080 })).toBe(true);
    // A non-loopback server does not answer to "localhost".
    expect(isAllowedHost('localhost:8080', { host: '192.168.1.5', port: 8080 })).toBe(false);
  });

  test('a wildcard bind accepts any name (it cannot know them all) but still checks the port', () => {
    expect(isAllowedHost('myhost.lan:8080', { host: '0.0.0.0', port: 8080 })).toBe(true);
    expect(isAllowedHost('myhost.lan:9', { host: '::', port: 8080 })).toBe(false);
  });

  test('websocket Origin must be our own page (or absent)', () => {
    expect(isAllowedOrigin(undefined, '127.0.0.1:8080')).toBe(true);
    expect(isAllowedOrigin('http://127.0.0.1:8080', '127.0.0.1:8080')).toBe(true);
    expect(isAllowedOrigin('http://[::1]:8080', '[::1]:8080')).toBe(true);
    expect(isAllowedOrigin('https://evil.example', '127.0.0.1:8080')).toBe(false);
    expect(isAllowedOrigin('http://localhost:8080', '127.0.0.1:8080')).toBe(false);
    expect(isAllowedOrigin('null', '127.0.0.1:8080')).toBe(false);
    expect(isAllowedOrigin('http://127.0.0.1:8080', undefined)).toBe(false);
  });
});

describe('--web HOST:PORT', () => {
  test('parses IPv4, names and bracketed IPv6', () => {
    expect(parseListenAddress('127.0.0.1:8080')).toEqual({ host: '127.0.0.1', port: 8080 });
    expect(parseListenAddress('localhost:0')).toEqual({ host: 'localhost', port: 0 });
    expect(parseListenAddress('[::1]:9000')).toEqual({ host: '::1', port: 9000 });
  });

  test('refuses a missing host or port and out-of-range ports', () => {
    for (const bad of ['8080', ':8080', '127.0.0.1', '127.0.0.1:', '127.0.0.1:65536', '::1:80', 'host:-1', 'a b:80']) {
      expect(() => parseListenAddress(bad)).toThrow(RangeError);
    }
  });

  test('IPv6 hosts get brackets in URLs', () => {
    expect(urlHost('::1')).toBe('[::1]');
    expect(urlHost('127.0.0.1')).toBe('127.0.0.1');
  });
});

describe('statusMessage', () => {
  test('carries the state, the exits by reason and the vCPU', () => {
    const message = statusMessage('running', {
      exits: { 'io-in': 10, 'io-out': 3 },
      total: 13,
      devices: { serial8250: 13 },
      unclaimed: {},
      workarounds: {},
      consoleDropped: 0,
      vcpu: { rip: '0x8052', cpl: 0, mode: '64-bit long mode' },
    });
    expect(message).toEqual({
      type: 'status',
      state: 'running',
      exits: { 'io-in': 10, 'io-out': 3 },
      total: 13,
      consoleDropped: 0,
      vcpu: { rip: '0x8052', cpl: 0, mode: '64-bit long mode' },
    });
  });

  test('before the first statistics: state only, zero counts', () => {
    expect(statusMessage('starting', undefined)).toEqual({ type: 'status', state: 'starting', exits: {}, total: 0, consoleDropped: 0 });
  });
});
