import {
  ConsoleEscapeFilter,
  ESCAPE_HELP,
  escapeHelp,
  escapeKeyName,
  type EscapeAction,
} from '../src/cli/escape-filter';

const CA = 0x01;
const bytes = (...b: number[]): Uint8Array => Uint8Array.from(b);
const ascii = (s: string): number[] => Array.from(Buffer.from(s, 'latin1'));

describe('ConsoleEscapeFilter', () => {
  it('passes plain bytes through', () => {
    const f = new ConsoleEscapeFilter();
    const r = f.push(bytes(...ascii('ls -l\r'), 0x03, 0x1b, 0x7f));
    expect(Array.from(r.guest)).toEqual([...ascii('ls -l\r'), 0x03, 0x1b, 0x7f]);
    expect(r.actions).toEqual([]);
  });

  it('Ctrl-A x quits and drops what follows', () => {
    const f = new ConsoleEscapeFilter();
    const r = f.push(bytes(...ascii('ab'), CA, ...ascii('xcd')));
    expect(Array.from(r.guest)).toEqual(ascii('ab'));
    expect(r.actions).toEqual(['quit']);
    expect(f.quitRequested).toBe(true);
    // Later input is dropped too.
    expect(f.push(bytes(...ascii('more'))).guest.length).toBe(0);
  });

  it('handles the prefix and the command in different chunks', () => {
    const f = new ConsoleEscapeFilter();
    let r = f.push(bytes(...ascii('a'), CA));
    expect(Array.from(r.guest)).toEqual(ascii('a'));
    expect(r.actions).toEqual([]);
    expect(f.escapePending).toBe(true);
    r = f.push(bytes(...ascii('h')));
    expect(r.guest.length).toBe(0);
    expect(r.actions).toEqual(['help']);
    expect(f.escapePending).toBe(false);
    r = f.push(bytes(CA));
    r = f.push(bytes(...ascii('c'), ...ascii('z')));
    expect(r.actions).toEqual(['stats']);
    expect(Array.from(r.guest)).toEqual(ascii('z'));
    f.push(bytes(CA));
    r = f.push(bytes(...ascii('x')));
    expect(r.actions).toEqual(['quit']);
  });

  it('Ctrl-A Ctrl-A sends one literal Ctrl-A', () => {
    const f = new ConsoleEscapeFilter();
    expect(Array.from(f.push(bytes(CA, CA)).guest)).toEqual([CA]);
    expect(Array.from(f.push(bytes(CA, CA, CA, CA)).guest)).toEqual([CA, CA]);
    // Three in a row: a literal, then a pending prefix.
    expect(Array.from(f.push(bytes(CA, CA, CA)).guest)).toEqual([CA]);
    expect(f.escapePending).toBe(true);
    expect(Array.from(f.push(bytes(CA)).guest)).toEqual([CA]);
  });

  it('passes both bytes of an unknown command', () => {
    const f = new ConsoleEscapeFilter();
    const r = f.push(bytes(CA, ...ascii('q'), CA, 0x03, CA, ...ascii('X')));
    expect(Array.from(r.guest)).toEqual([CA, ...ascii('q'), CA, 0x03, CA, ...ascii('X')]);
    expect(r.actions).toEqual([]);
    // Split across chunks.
    expect(f.push(bytes(CA)).guest.length).toBe(0);
    expect(Array.from(f.push(bytes(...ascii('b'))).guest)).toEqual([CA, ...ascii('b')]);
  });

  it('supports a custom escape byte', () => {
    const f = new ConsoleEscapeFilter({ escapeByte: 0x1d });
    let r = f.push(bytes(CA, ...ascii('x'), 0x1d, ...ascii('h'), 0x1d, 0x1d));
    expect(Array.from(r.guest)).toEqual([CA, ...ascii('x'), 0x1d]);
    expect(r.actions).toEqual(['help']);
    r = f.push(bytes(0x1d, ...ascii('x')));
    expect(r.actions).toEqual(['quit']);
    expect(escapeHelp(0x1d)).toContain('C-] x');
  });

  it('rejects bad escape bytes', () => {
    expect(() => new ConsoleEscapeFilter({ escapeByte: 256 })).toThrow(RangeError);
    expect(() => new ConsoleEscapeFilter({ escapeByte: -1 })).toThrow(RangeError);
    expect(() => new ConsoleEscapeFilter({ escapeByte: 1.5 })).toThrow(RangeError);
    expect(() => new ConsoleEscapeFilter({ escapeByte: 0x78 })).toThrow(RangeError);
  });

  it('does not throw on empty chunks and keeps state across them', () => {
    const f = new ConsoleEscapeFilter();
    expect(f.push(new Uint8Array(0))).toEqual({ guest: new Uint8Array(0), actions: [] });
    f.push(bytes(CA));
    expect(f.push(new Uint8Array(0)).guest.length).toBe(0);
    expect(f.escapePending).toBe(true);
    expect(f.push(bytes(...ascii('c'))).actions).toEqual(['stats']);
  });

  it('flush() releases a held prefix', () => {
    const f = new ConsoleEscapeFilter();
    expect(f.flush().length).toBe(0);
    f.push(bytes(...ascii('a'), CA));
    expect(Array.from(f.flush())).toEqual([CA]);
    expect(f.escapePending).toBe(false);
    expect(f.flush().length).toBe(0);
  });

  it('documents the keys in its help text', () => {
    expect(escapeKeyName(0x01)).toBe('C-a');
    expect(escapeKeyName(0x1d)).toBe('C-]');
    for (const key of ['C-a h', 'C-a x', 'C-a c', 'C-a C-a']) expect(ESCAPE_HELP).toContain(key);
    expect(ESCAPE_HELP).not.toContain('\r');
  });

  /** The whole input at once, byte by byte, written as plainly as possible. */
  function reference(input: number[], esc: number): { guest: number[]; actions: EscapeAction[] } {
    const guest: number[] = [];
    const actions: EscapeAction[] = [];
    let i = 0;
    while (i < input.length) {
      const b = input[i++];
      if (b !== esc) {
        guest.push(b);
        continue;
      }
      if (i === input.length) break; // held prefix, still pending at the end
      const c = input[i++];
      if (c === esc) guest.push(esc);
      else if (c === 0x78) {
        actions.push('quit');
        break;
      } else if (c === 0x68) actions.push('help');
      else if (c === 0x63) actions.push('stats');
      else guest.push(esc, c);
    }
    return { guest, actions };
  }

  it('matches a reference implementation on random chunked input', () => {
    // Small deterministic PRNG (mulberry32) so failures reproduce.
    let seed = 0x5eed1234;
    const rand = (): number => {
      seed = (seed + 0x6d2b79f5) | 0;
      let t = seed;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    // Escape and command keys are frequent so that every path is exercised.
    const alphabet = [0x01, 0x1d, 0x78, 0x68, 0x63, 0x61, 0x03, 0x0d, 0x00, 0xff];
    for (let iter = 0; iter < 2000; iter++) {
      const esc = iter % 2 === 0 ? 0x01 : 0x1d;
      const len = Math.floor(rand() * 40);
      const input: number[] = [];
      for (let i = 0; i < len; i++) {
        input.push(rand() < 0.8 ? alphabet[Math.floor(rand() * alphabet.length)] : Math.floor(rand() * 256));
      }
      const f = new ConsoleEscapeFilter({ escapeByte: esc });
      const guest: number[] = [];
      const actions: EscapeAction[] = [];
      let pos = 0;
      while (pos < input.length || rand() < 0.3) {
        const n = Math.min(input.length - pos, Math.floor(rand() * 6)); // empty chunks included
        const r = f.push(Uint8Array.from(input.slice(pos, pos + n)));
        guest.push(...r.guest);
        actions.push(...r.actions);
        pos += n;
        if (pos >= input.length && rand() < 0.5) break;
      }
      const want = reference(input, esc);
      expect({ iter, guest, actions }).toEqual({ iter, guest: want.guest, actions: want.actions });
    }
  });
});
