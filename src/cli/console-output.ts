// The guest's console output on the CLI's stdout, without ever holding up
// the vCPU.
//
// Node writes to a stdout pipe synchronously on Linux: a reader that stops
// reading (a full pipe) blocked `process.stdout.write`, and with it the
// guest, forever (issue 6: `tskvm run-binary ... | (sleep 1000)` hung with
// the vCPU stuck in the write). Here:
// - a pipe or FIFO is written through a second, non-blocking open file
//   description of the same pipe (/proc/self/fd/1 opened with O_NONBLOCK;
//   fd 1's own flags, shared with whoever gave it to us, stay as they are);
//   a socket is made non-blocking (see forStdout);
// - what the pipe cannot take now waits in a bounded backlog (256 KiB by
//   default; the pipe or socket buffer holds more) and goes out with later
//   writes, or from a timer when the event loop is free;
// - beyond that, bytes are dropped and counted; the CLI reports the count.
// Regular files and terminals are written directly: a file write completes,
// and a terminal is a person (a terminal stopped with Ctrl-S does hold the
// guest up, as it would hold up any program).
import * as fs from 'fs';

export const DEFAULT_BACKLOG_LIMIT = 256 * 1024;

export class ConsoleOutput {
  /** Bytes lost because the reader did not keep up (or went away). */
  dropped = 0;
  private readonly fd: number;
  private readonly ownsFd: boolean;
  private backlog: Buffer[] = [];
  private backlogBytes = 0;
  private broken = false;
  private timer?: NodeJS.Timeout;
  private finished = false;

  private readonly backlogLimit: number;

  constructor(fd: number, options: { nonBlocking?: boolean; backlogLimit?: number } = {}) {
    this.backlogLimit = options.backlogLimit ?? DEFAULT_BACKLOG_LIMIT;
    let target = fd;
    let owns = false;
    if (options.nonBlocking) {
      try {
        target = fs.openSync(`/proc/self/fd/${fd}`, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK);
        owns = true;
      } catch {
        // No reader left (ENXIO) or no /proc: nothing can be written without blocking.
        this.broken = true;
      }
    }
    this.fd = target;
    this.ownsFd = owns;
  }

  /** For stdout: non-blocking when it is a pipe or FIFO (see the top of the file). */
  static forStdout(backlogLimit?: number): ConsoleOutput {
    let stat: fs.Stats | undefined;
    try {
      stat = fs.fstatSync(1);
    } catch {
      /* fd 1 closed: writes fail and are counted */
    }
    // A socket (what child_process gives a child for stdio 'pipe') cannot be
    // reopened through /proc; creating process.stdout makes libuv put fd 1
    // in non-blocking mode (uv_pipe_open does, libuv >= 1.2.1), so a full
    // socket answers EAGAIN.
    if (stat?.isSocket()) void process.stdout;
    return new ConsoleOutput(1, { nonBlocking: stat?.isFIFO() ?? false, backlogLimit });
  }

  /** Bytes waiting for the reader. */
  get pending(): number {
    return this.backlogBytes;
  }

  write(data: Uint8Array): void {
    const bytes = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.length);
    this.flush();
    let rest = bytes;
    if (this.backlogBytes === 0) rest = rest.subarray(this.tryWrite(rest));
    if (rest.length === 0) return;
    const keep = Math.min(rest.length, this.backlogLimit - this.backlogBytes);
    if (keep > 0) {
      this.backlog.push(Buffer.from(rest.subarray(0, keep))); // a copy: the caller may reuse its buffer
      this.backlogBytes += keep;
      this.scheduleFlush();
    }
    this.dropped += rest.length - keep;
  }

  /** Writes as much of the backlog as the reader takes now. */
  flush(): void {
    while (this.backlog.length > 0) {
      const head = this.backlog[0]!;
      const n = this.tryWrite(head);
      this.backlogBytes -= n;
      if (n < head.length) {
        this.backlog[0] = head.subarray(n);
        return;
      }
      this.backlog.shift();
    }
  }

  /**
   * At the end of a run: gives the reader up to `ms` to take the backlog
   * (polling; the event loop may not be free), then counts what is left as
   * dropped and closes our descriptor. Returns the total dropped.
   */
  finish(ms = 1000): number {
    if (this.finished) return this.dropped;
    this.finished = true;
    const deadline = Date.now() + ms;
    const sleeper = new Int32Array(new SharedArrayBuffer(4));
    for (this.flush(); this.backlogBytes > 0 && Date.now() < deadline; this.flush()) Atomics.wait(sleeper, 0, 0, 10);
    this.dropped += this.backlogBytes;
    this.backlog = [];
    this.backlogBytes = 0;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    if (this.ownsFd) fs.closeSync(this.fd);
    this.broken = true;
    return this.dropped;
  }

  /** 0 when the reader cannot take anything now (EAGAIN); a reader gone (EPIPE, ...) drops everything from then on. */
  private tryWrite(bytes: Buffer): number {
    if (this.broken) {
      this.dropped += bytes.length;
      return bytes.length;
    }
    try {
      return fs.writeSync(this.fd, bytes);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EAGAIN') return 0;
      this.broken = true;
      this.dropped += bytes.length;
      return bytes.length;
    }
  }

  /** While the event loop is free (the async Machine), the backlog drains from a timer too. */
  private scheduleFlush(): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      this.flush();
      if (this.backlogBytes === 0) {
        clearInterval(this.timer);
        this.timer = undefined;
      }
    }, 10);
    this.timer.unref();
  }
}

/** The line the CLI prints when console output was lost. */
export function droppedOutputLine(dropped: number): string {
  return `tskvm: ${dropped} bytes of console output were dropped: stdout was not being read (the guest is never held up by its console)`;
}
