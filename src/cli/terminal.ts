// Connects the user's terminal to the guest's serial console.
//
// On a TTY the input is switched to raw mode, so that every key (Ctrl-C
// included) goes to the guest and the guest does its own echo and line
// editing; the ConsoleEscapeFilter reserves Ctrl-A as QEMU does so that the
// user can still quit (Ctrl-A x). Raw mode outlives our process if we do not
// undo it, leaving the user's shell without echo, so it is restored on
// detach() and also on process exit, an uncaught exception, SIGTERM and
// SIGHUP. On a pipe there is no terminal mode to change: bytes are forwarded
// through the same escape filter.
import { ConsoleEscapeFilter, escapeHelp, type EscapeAction } from './escape-filter';

export interface AttachTerminalOptions {
  /** Usually process.stdin. */
  input: NodeJS.ReadStream;
  /** Usually process.stdout; receives the escape help text. */
  output: NodeJS.WriteStream;
  /** Bytes typed by the user, escape sequences removed, for the guest's UART. */
  onGuestInput(bytes: Uint8Array): void;
  /** The user asked to quit (Ctrl-A x). The terminal has been restored already. */
  onQuit(): void;
  /** The user asked for exit statistics (Ctrl-A c). */
  onStats?(): void;
  /** Diagnostics for the user; default: written to `output` with "\r\n". */
  log?(line: string): void;
  /** The escape prefix byte; default 0x01 (Ctrl-A). */
  escapeByte?: number;
}

export interface TerminalAttachment {
  /** Stops reading and restores the terminal. Safe to call more than once. */
  detach(): void;
}

/** Signals whose default action kills us with the terminal still in raw mode. */
const FATAL_SIGNALS: readonly NodeJS.Signals[] = ['SIGTERM', 'SIGHUP'];

/** "\n" → "\r\n": in raw mode the terminal no longer adds the carriage return. */
function crlf(text: string): string {
  return text.replace(/\r?\n/g, '\r\n');
}

export function attachTerminal(options: AttachTerminalOptions): TerminalAttachment {
  const { input, output } = options;
  const filter = new ConsoleEscapeFilter({ escapeByte: options.escapeByte });
  const log = options.log ?? ((line: string) => void output.write(crlf(line) + '\r\n'));
  // process.stdin on a pipe has no isTTY at all, whatever its type says.
  const tty = input.isTTY === true && typeof input.setRawMode === 'function';
  const wasRaw = tty && input.isRaw === true;
  let rawSet = false;
  let detached = false;

  const restoreMode = (): void => {
    if (!rawSet) return;
    rawSet = false;
    try {
      input.setRawMode(wasRaw);
    } catch {
      // The terminal may be gone already (SIGHUP, EIO); nothing left to restore.
    }
  };

  const runAction = (action: EscapeAction): void => {
    switch (action) {
      case 'help':
        output.write(crlf(escapeHelp(filter.escapeByte)));
        break;
      case 'stats':
        if (options.onStats) options.onStats();
        else log('no exit statistics available');
        break;
      case 'quit':
        detach();
        options.onQuit();
        break;
    }
  };

  const onData = (chunk: Buffer | string): void => {
    if (detached) return;
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    const { guest, actions } = filter.push(bytes);
    if (guest.length > 0) options.onGuestInput(guest);
    for (const action of actions) {
      if (detached) break;
      runAction(action);
    }
  };

  const onEnd = (): void => {
    if (detached) return;
    // A trailing escape prefix on a pipe will never get its command byte.
    const rest = filter.flush();
    if (rest.length > 0) options.onGuestInput(rest);
  };

  // Process-wide handlers, registered only while the terminal is raw.
  const onExit = (): void => restoreMode();
  // The monitor variant observes without changing Node's crash behaviour.
  const onUncaught = (): void => restoreMode();
  const onSignal = (signal: NodeJS.Signals): void => {
    detach();
    // Our listener replaced the default action (terminate). If no one else
    // handles the signal, re-raise it now that the default is back.
    if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
  };

  function detach(): void {
    if (detached) return;
    detached = true;
    input.off('data', onData);
    input.off('end', onEnd);
    if (tty) {
      process.off('exit', onExit);
      process.off('uncaughtExceptionMonitor', onUncaught);
      for (const signal of FATAL_SIGNALS) process.off(signal, onSignal);
    }
    restoreMode();
    input.pause();
  }

  if (tty) {
    input.setRawMode(true); // may throw; nothing is registered yet
    rawSet = true;
    process.on('exit', onExit);
    process.on('uncaughtExceptionMonitor', onUncaught);
    for (const signal of FATAL_SIGNALS) process.on(signal, onSignal);
  }
  input.on('data', onData);
  input.on('end', onEnd);
  input.resume();

  return { detach };
}
