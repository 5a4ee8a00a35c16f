// Console escape sequences for the serial console, after QEMU's
// `-serial mon:stdio` / `-nographic` convention.
//
// The CLI puts stdin in raw mode so that every key the user types reaches the
// guest unchanged: Ctrl-C is an ordinary byte (0x03) for the guest's shell,
// not a SIGINT for us, and Ctrl-Z, Ctrl-\ and friends likewise. That leaves
// the user no way to stop the VMM from the keyboard, so, like QEMU, we reserve
// one prefix byte (Ctrl-A by default) and interpret the byte after it:
//
//   Ctrl-A x       quit
//   Ctrl-A h       print the list of escape keys
//   Ctrl-A c       print exit statistics
//   Ctrl-A Ctrl-A  send one literal Ctrl-A to the guest
//   Ctrl-A <other> send both bytes to the guest unchanged
//
// The filter is a small state machine with no I/O: the prefix and the command
// byte may arrive in different chunks (they usually do when typed by hand).

/** What the caller should do in response to an escape sequence. */
export type EscapeAction = 'quit' | 'help' | 'stats';

/** The result of feeding one chunk through the filter. */
export interface EscapeFilterResult {
  /** Bytes to forward to the guest, in order. May share memory with the input chunk. */
  guest: Uint8Array;
  /** Escape commands recognised in this chunk, in order. */
  actions: EscapeAction[];
}

export interface ConsoleEscapeFilterOptions {
  /** The escape prefix byte; 0x01 (Ctrl-A, QEMU's default) unless given. 0x1d is Ctrl-]. */
  escapeByte?: number;
}

/** Ctrl-A, QEMU's default escape prefix. */
export const DEFAULT_ESCAPE_BYTE = 0x01;

const COMMANDS: ReadonlyMap<number, EscapeAction> = new Map<number, EscapeAction>([
  [0x78 /* x */, 'quit'],
  [0x68 /* h */, 'help'],
  [0x63 /* c */, 'stats'],
]);

const EMPTY = new Uint8Array(0);

/** A key's name as QEMU writes it in its help: `C-a` for 0x01, `C-]` for 0x1d. */
export function escapeKeyName(byte: number): string {
  if (byte === 0x7f) return 'DEL';
  if (byte < 0x20) return `C-${String.fromCharCode(byte + 0x40).toLowerCase()}`;
  if (byte < 0x7f) return String.fromCharCode(byte);
  return `0x${byte.toString(16).padStart(2, '0')}`;
}

/** The help text for a given escape byte, with "\n" line endings. */
export function escapeHelp(escapeByte: number = DEFAULT_ESCAPE_BYTE): string {
  const k = escapeKeyName(escapeByte);
  const rows: Array<[string, string]> = [
    [`${k} h`, 'print this help'],
    [`${k} x`, 'exit emulator'],
    [`${k} c`, 'print exit statistics'],
    [`${k} ${k}`, `sends ${k}`],
  ];
  const width = Math.max(...rows.map(([keys]) => keys.length)) + 2;
  return rows.map(([keys, what]) => keys.padEnd(width) + what + '\n').join('');
}

/** Help text for the default escape byte (Ctrl-A), with "\n" line endings. */
export const ESCAPE_HELP: string = escapeHelp(DEFAULT_ESCAPE_BYTE);

export class ConsoleEscapeFilter {
  readonly escapeByte: number;
  /** True after the escape byte was seen and the command byte has not arrived yet. */
  private pending = false;
  private quit = false;

  constructor(options: ConsoleEscapeFilterOptions = {}) {
    const escapeByte = options.escapeByte ?? DEFAULT_ESCAPE_BYTE;
    if (!Number.isInteger(escapeByte) || escapeByte < 0 || escapeByte > 0xff) {
      throw new RangeError(`escape byte must be an integer 0..255, got ${escapeByte}`);
    }
    if (COMMANDS.has(escapeByte)) {
      throw new RangeError(`escape byte ${escapeKeyName(escapeByte)} collides with an escape command key`);
    }
    this.escapeByte = escapeByte;
  }

  /** True while an escape prefix is waiting for its command byte. */
  get escapePending(): boolean {
    return this.pending;
  }

  /** True once `quit` has been returned; every later chunk is dropped. */
  get quitRequested(): boolean {
    return this.quit;
  }

  /**
   * Feeds one chunk of user input. Returns the bytes for the guest and the
   * escape actions seen. After a quit action the rest of the chunk, and any
   * later chunk, is dropped.
   */
  push(chunk: Uint8Array): EscapeFilterResult {
    if (this.quit || chunk.length === 0) return { guest: EMPTY, actions: [] };
    // Fast path: nothing to interpret.
    if (!this.pending && chunk.indexOf(this.escapeByte) < 0) return { guest: chunk, actions: [] };

    // Each input byte yields at most one output byte, except for an unknown
    // command which also yields the held prefix: at most length + 1.
    const out = new Uint8Array(chunk.length + 1);
    let n = 0;
    const actions: EscapeAction[] = [];
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i];
      if (!this.pending) {
        if (b === this.escapeByte) this.pending = true;
        else out[n++] = b;
        continue;
      }
      this.pending = false;
      if (b === this.escapeByte) {
        out[n++] = b;
        continue;
      }
      const action = COMMANDS.get(b);
      if (action === undefined) {
        out[n++] = this.escapeByte;
        out[n++] = b;
        continue;
      }
      actions.push(action);
      if (action === 'quit') {
        this.quit = true;
        break;
      }
    }
    return { guest: out.subarray(0, n), actions };
  }

  /**
   * Ends the input (e.g. EOF on a pipe): returns a held escape prefix, which
   * no command byte will follow any more, so that it still reaches the guest.
   */
  flush(): Uint8Array {
    if (!this.pending || this.quit) return EMPTY;
    this.pending = false;
    return Uint8Array.of(this.escapeByte);
  }
}
