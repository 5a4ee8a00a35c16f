import { PassThrough } from 'stream';
import { attachTerminal } from '../src/cli/terminal';

const CA = 0x01;

function sink(): { stream: NodeJS.WriteStream; text(): string } {
  const chunks: Buffer[] = [];
  const pt = new PassThrough();
  pt.on('data', (c: Buffer) => chunks.push(c));
  return {
    stream: pt as unknown as NodeJS.WriteStream,
    text: () => Buffer.concat(chunks).toString('latin1'),
  };
}

/** A PassThrough dressed up as a TTY read stream. */
function fakeTty(): PassThrough & { isTTY: boolean; isRaw: boolean; setRawMode: jest.Mock } {
  const pt = new PassThrough() as PassThrough & { isTTY: boolean; isRaw: boolean; setRawMode: jest.Mock };
  pt.isTTY = true;
  pt.isRaw = false;
  pt.setRawMode = jest.fn((mode: boolean) => {
    pt.isRaw = mode;
    return pt;
  });
  return pt;
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function processListenerCounts(): number[] {
  return ['exit', 'uncaughtExceptionMonitor', 'SIGTERM', 'SIGHUP'].map((e) => process.listenerCount(e));
}

describe('attachTerminal', () => {
  it('forwards piped input through the escape filter without raw mode', async () => {
    const input = new PassThrough();
    const out = sink();
    const got: number[] = [];
    const onQuit = jest.fn();
    const onStats = jest.fn();
    const before = processListenerCounts();
    const t = attachTerminal({
      input: input as unknown as NodeJS.ReadStream,
      output: out.stream,
      onGuestInput: (b) => got.push(...b),
      onQuit,
      onStats,
    });
    expect(processListenerCounts()).toEqual(before); // nothing to restore on a pipe
    input.write(Buffer.from('echo hi\r'));
    input.write(Uint8Array.of(CA));
    input.write(Buffer.from('h'));
    input.write(Uint8Array.of(CA, 0x63, CA, CA, 0x03));
    await tick();
    expect(Buffer.from(got).toString('latin1')).toBe('echo hi\r\x01\x03');
    expect(out.text()).toContain('C-a x');
    expect(out.text()).toContain('\r\n');
    expect(out.text().replace(/\r\n/g, '')).not.toContain('\n');
    expect(onStats).toHaveBeenCalledTimes(1);
    expect(onQuit).not.toHaveBeenCalled();

    input.write(Uint8Array.of(0x61, CA, 0x78, 0x62));
    await tick();
    expect(onQuit).toHaveBeenCalledTimes(1);
    expect(got[got.length - 1]).toBe(0x61);
    expect(input.listenerCount('data')).toBe(0);
    t.detach();
    t.detach();
  });

  it('reports a missing stats handler through log', async () => {
    const input = new PassThrough();
    const lines: string[] = [];
    const t = attachTerminal({
      input: input as unknown as NodeJS.ReadStream,
      output: sink().stream,
      onGuestInput: () => {},
      onQuit: () => {},
      log: (l) => lines.push(l),
    });
    input.write(Uint8Array.of(CA, 0x63));
    await tick();
    expect(lines.length).toBe(1);
    t.detach();
  });

  it('flushes a trailing escape prefix at end of input', async () => {
    const input = new PassThrough();
    const got: number[] = [];
    const t = attachTerminal({
      input: input as unknown as NodeJS.ReadStream,
      output: sink().stream,
      onGuestInput: (b) => got.push(...b),
      onQuit: () => {},
    });
    input.end(Uint8Array.of(0x61, CA));
    await tick();
    await tick();
    expect(got).toEqual([0x61, CA]);
    t.detach();
  });

  it('sets raw mode on a TTY and restores it on detach, once', async () => {
    const input = fakeTty();
    const got: number[] = [];
    const before = processListenerCounts();
    const t = attachTerminal({
      input: input as unknown as NodeJS.ReadStream,
      output: sink().stream,
      onGuestInput: (b) => got.push(...b),
      onQuit: () => {},
    });
    expect(input.setRawMode).toHaveBeenCalledTimes(1);
    expect(input.setRawMode).toHaveBeenLastCalledWith(true);
    expect(processListenerCounts()).toEqual(before.map((n) => n + 1));
    input.write(Uint8Array.of(0x03));
    await tick();
    expect(got).toEqual([0x03]); // Ctrl-C goes to the guest

    t.detach();
    expect(input.setRawMode).toHaveBeenCalledTimes(2);
    expect(input.setRawMode).toHaveBeenLastCalledWith(false);
    expect(input.isPaused()).toBe(true);
    expect(processListenerCounts()).toEqual(before);
    t.detach();
    expect(input.setRawMode).toHaveBeenCalledTimes(2);
    expect(processListenerCounts()).toEqual(before);
  });

  it('restores the terminal before calling onQuit', async () => {
    const input = fakeTty();
    let rawAtQuit: boolean | undefined;
    const t = attachTerminal({
      input: input as unknown as NodeJS.ReadStream,
      output: sink().stream,
      onGuestInput: () => {},
      onQuit: () => {
        rawAtQuit = input.isRaw;
      },
    });
    input.write(Uint8Array.of(CA));
    input.write(Uint8Array.of(0x78));
    await tick();
    expect(rawAtQuit).toBe(false);
    t.detach();
    expect(input.setRawMode).toHaveBeenCalledTimes(2);
  });

  it('restores the terminal on SIGTERM and on an uncaught exception', () => {
    const before = processListenerCounts();
    // Another SIGTERM listener, so that the handler does not re-raise the signal at us.
    const other = jest.fn();
    process.on('SIGTERM', other);
    try {
      const a = fakeTty();
      attachTerminal({ input: a as unknown as NodeJS.ReadStream, output: sink().stream, onGuestInput: () => {}, onQuit: () => {} });
      process.emit('SIGTERM', 'SIGTERM');
      expect(a.setRawMode).toHaveBeenLastCalledWith(false);
      expect(other).toHaveBeenCalled();

      const b = fakeTty();
      const tb = attachTerminal({ input: b as unknown as NodeJS.ReadStream, output: sink().stream, onGuestInput: () => {}, onQuit: () => {} });
      process.emit('uncaughtExceptionMonitor', new Error('boom'));
      expect(b.setRawMode).toHaveBeenLastCalledWith(false);
      tb.detach();
      expect(b.setRawMode).toHaveBeenCalledTimes(2);
    } finally {
      process.off('SIGTERM', other);
    }
    expect(processListenerCounts()).toEqual(before);
  });
});
