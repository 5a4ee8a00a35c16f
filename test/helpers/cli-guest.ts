// Runs `tskvm run ...` as a child process and talks to the guest's console
// through its stdin/stdout, for the suites that boot Linux.
import { spawn } from 'child_process';
import { CLI } from './paths';

export interface CliGuest {
  /** Everything the guest printed so far. */
  readonly console: () => string;
  readonly stderr: () => string;
  /** Resolves once `text` has appeared on the console (rejects on timeout or exit). */
  waitFor(text: string, ms: number): Promise<void>;
  /**
   * Types `command` and waits for its end; returns the console text the
   * command printed (between two echoed markers).
   */
  run(command: string, ms?: number): Promise<string>;
  send(text: string): void;
  /** Resolves with the exit code (null when killed), or 'timeout'. */
  exit(ms: number): Promise<number | null | 'timeout'>;
  kill(): void;
}

let markerCount = 0;

export function startCliGuest(args: string[]): CliGuest {
  const child = spawn(process.execPath, [CLI, 'run', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const waiters: { text: string; from: number; resolve: () => void }[] = [];
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString('latin1');
    for (const w of waiters.filter((w) => out.indexOf(w.text, w.from) >= 0)) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve();
    }
  });
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const tail = (): string => `console tail:\n${out.slice(-3000)}\nstderr:\n${err.slice(-3000)}`;
  const waitFrom = (text: string, from: number, ms: number): Promise<void> =>
    out.indexOf(text, from) >= 0
      ? Promise.resolve()
      : new Promise((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`no "${text}" on the console after ${ms} ms; ${tail()}`)), ms);
          waiters.push({ text, from, resolve: () => (clearTimeout(timer), resolve()) });
          void exited.then((code) => reject(new Error(`tskvm exited (${code}) before "${text}"; ${tail()}`)));
        });
  return {
    console: () => out,
    stderr: () => err,
    waitFor: (text, ms) => waitFrom(text, 0, ms),
    async run(command, ms = 120_000) {
      const id = `${++markerCount}`;
      const from = out.length;
      // Begin and end markers, each typed as two quoted halves so that the
      // shell's echo of the command line (wrapped at 80 columns) never matches.
      child.stdin.write(`echo "cmd""-begin-${id}"; ${command}; echo "cmd""-done-${id}"\n`);
      const begin = `cmd-begin-${id}`;
      const done = `cmd-done-${id}`;
      await waitFrom(done, from, ms);
      const start = out.indexOf(begin, from);
      return out.slice(start + begin.length, out.indexOf(done, start)).replace(/^\r?\n/, '');
    },
    send: (text) => void child.stdin.write(text),
    async exit(ms) {
      let timer: NodeJS.Timeout | undefined;
      const result = await Promise.race([exited, new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), ms)))]);
      clearTimeout(timer);
      return result;
    },
    kill: () => void child.kill('SIGKILL'),
  };
}
