// The web console end to end: `tskvm run-binary --web` runs the serial echo
// guest (examples/05-serial-echo), a headless Chromium opens the page, types
// into the xterm.js terminal and reads the guest's answer back from the
// terminal's buffer; the status panel shows the vCPU and its exit counts;
// typing "halt" stops the guest and the CLI exits 0.
//
// The browser is Debian's chromium driven by playwright-core (no browser
// download). Without chromium the test is skipped locally; under CI=true it
// fails, as a missing /dev/kvm does (.ci/run installs chromium).
import { spawn, type ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as net from 'net';
import { chromium, type Browser, type Page } from 'playwright-core';
import { CLI, exampleGuest } from './helpers/paths';

const CHROMIUM_CANDIDATES = [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser'].filter((p): p is string => !!p);
const executablePath = CHROMIUM_CANDIDATES.find((p) => fs.existsSync(p));
const inCi = process.env.CI === 'true' || process.env.CI === '1';

if (!executablePath && inCi) {
  test('chromium is installed (CI)', () => {
    throw new Error(`no chromium at ${CHROMIUM_CANDIDATES.join(', ')}: install it (apt-get install chromium; .ci/run does) or set CHROMIUM_PATH`);
  });
}

const describeWithBrowser = executablePath ? describe : describe.skip;

interface RunningCli {
  child: ChildProcess;
  url: Promise<string>;
  exit: Promise<number | null>;
  stdout: () => string;
  stderr: () => string;
}

function startCli(args: string[]): RunningCli {
  // stdin is a pipe, not a TTY: with --web the CLI then leaves it alone and the page is the console.
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString('latin1')));
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const url = new Promise<string>((resolve, reject) => {
    child.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString();
      const m = /^tskvm: web console on (http:\/\/\S+)$/m.exec(stderr);
      if (m) resolve(m[1]!);
    });
    void exit.then((code) => reject(new Error(`tskvm exited (${code}) before printing the URL; stderr:\n${stderr}`)));
  });
  // Runs that fail on purpose never print a URL: only a caller awaiting it should see that rejection.
  url.catch(() => {});
  return { child, url, exit, stdout: () => stdout, stderr: () => stderr };
}

/** The terminal's text, read through the page (xterm.js keeps the screen in a buffer, not in DOM text we can trust). */
function terminalText(page: Page): Promise<string> {
  return page.evaluate(() => {
    const buffer = (window as unknown as { term: { buffer: { active: { length: number; getLine(i: number): { translateToString(trim: boolean): string } | undefined } } } }).term.buffer.active;
    const lines: string[] = [];
    for (let i = 0; i < buffer.length; i++) lines.push(buffer.getLine(i)?.translateToString(true) ?? '');
    return lines.join('\n');
  });
}

async function waitForTerminalText(page: Page, text: string, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const screen = await terminalText(page);
    if (screen.includes(text)) return;
    if (Date.now() > deadline) throw new Error(`"${text}" did not appear in the terminal; it shows:\n${screen}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  const timeout = new Promise<T>((_, reject) => {
    setTimeout(() => reject(new Error(`${what}: no answer after ${ms} ms`)), ms).unref();
  });
  return Promise.race([promise, timeout]);
}

describe('tskvm --web option errors (no browser needed)', () => {
  test('a bad HOST:PORT is one sentence and exit 1', async () => {
    const run = startCli(['run-binary', exampleGuest('05-serial-echo'), '--mode', 'long', '--web', 'nonsense']);
    expect(await run.exit).toBe(1);
    expect(run.stderr()).toMatch(/^tskvm: .*invalid address "nonsense": use HOST:PORT/);
  });

  test('a busy port is reported before the guest runs, exit 1', async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = blocker.address() as net.AddressInfo;
      const run = startCli(['run-binary', exampleGuest('05-serial-echo'), '--mode', 'long', '--web', `127.0.0.1:${port}`]);
      expect(await run.exit).toBe(1);
      expect(run.stderr()).toBe(`tskvm: cannot serve the web console on 127.0.0.1:${port}: the port is in use (pick another, or 0 for any free port).\n`);
      expect(run.stdout()).toBe('');
    } finally {
      blocker.close();
    }
  });
});

describeWithBrowser('web console in headless Chromium', () => {
  let browser: Browser | undefined;
  let cli: RunningCli | undefined;

  beforeAll(async () => {
    browser = await chromium.launch({ executablePath, headless: true, args: ['--no-sandbox'] });
  });

  afterAll(async () => {
    await browser?.close();
  });

  afterEach(() => {
    if (cli && cli.child.exitCode === null && cli.child.signalCode === null) cli.child.kill('SIGKILL');
    cli = undefined;
  });

  test('types a line into the echo guest, shows vCPU state and exit counts, and "halt" ends the run with 0', async () => {
    cli = startCli(['run-binary', exampleGuest('05-serial-echo'), '--mode', 'long', '--web', '127.0.0.1:0']);
    const url = await withTimeout(cli.url, 15_000, 'tskvm --web');
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);

    const page = await browser!.newPage();
    const pageErrors: string[] = [];
    page.on('pageerror', (err) => pageErrors.push(err.message));
    page.on('console', (message) => message.type() === 'error' && pageErrors.push(message.text()));
    page.on('response', (r) => r.status() >= 400 && pageErrors.push(`${r.status()} ${r.url()}`));
    await page.goto(url);

    // The prompt was printed before the page connected: it comes from the history replay.
    await waitForTerminalText(page, 'echo> ');
    await page.click('#terminal');
    await page.keyboard.type('hello from chromium');
    await page.keyboard.press('Enter');
    await waitForTerminalText(page, 'you typed: hello from chromium');

    // The status panel: a running vCPU in long mode, and the UART's port I/O exits counted.
    await page.waitForFunction(() => Number(document.querySelector('#exits tr[data-reason="io-out"] td.count')?.textContent ?? 0) > 0, undefined, { timeout: 10_000 });
    expect(await page.textContent('#state')).toBe('running');
    expect(await page.textContent('#rip')).toMatch(/^0x[0-9a-f]+$/);
    expect(await page.textContent('#mode')).toMatch(/long mode/);
    expect(await page.textContent('#cpl')).toBe('0');
    expect(Number(await page.textContent('#exits tr[data-reason="io-in"] td.count'))).toBeGreaterThan(0);
    expect(Number(await page.textContent('#total'))).toBeGreaterThan(0);

    // A second browser that connects now still sees the conversation so far.
    const late = await browser!.newPage();
    await late.goto(url);
    await waitForTerminalText(late, 'you typed: hello from chromium');
    await late.close();

    await page.keyboard.type('halt');
    await page.keyboard.press('Enter');
    expect(await withTimeout(cli.exit, 15_000, 'tskvm exit after "halt"')).toBe(0);
    await page.waitForFunction(() => document.querySelector('#connection')?.textContent?.startsWith('disconnected'), undefined, { timeout: 5_000 });
    expect(await page.textContent('#state')).toMatch(/^stopped \(halt/);
    await waitForTerminalText(page, 'bye');
    // The local stdout got the same console bytes.
    expect(cli.stdout()).toContain('you typed: hello from chromium');
    expect(cli.stderr()).not.toMatch(/error/i);
    expect(pageErrors).toEqual([]);
    await page.close();
  });
});
