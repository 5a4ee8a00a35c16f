// Boots Debian's stock cloud kernel with a busybox initramfs through the CLI
// (`tskvm run`), talks to the shell on the serial console, and powers off.
// Slow: on the nested KVM of our machines the kernel runs in KVM's
// instruction emulator and takes minutes to reach user space (DESIGN.md).
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { writeInitramfs, INIT_READY_MARKER } from '../src/initramfs/build';
import { CLI, linuxGuest } from './helpers/paths';

const BOOT_TIMEOUT_MS = 12 * 60 * 1000;
jest.setTimeout(BOOT_TIMEOUT_MS + 60 * 1000);

test('tskvm run boots the Debian kernel to a busybox shell; uname, cpuinfo, poweroff -f exits 0', async () => {
  const guest = linuxGuest();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tskvm-linux-'));
  const initrd = path.join(dir, 'initrd.gz');
  writeInitramfs({ output: initrd, cache: guest.cache });

  const child = spawn(process.execPath, [CLI, 'run', '--kernel', guest.kernel, '--initrd', initrd, '--memory', '256M', '--stats'], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let console_ = '';
  let stderr = '';
  const waiters: { text: string; resolve: () => void }[] = [];
  child.stdout.on('data', (d: Buffer) => {
    console_ += d.toString('latin1');
    for (const w of waiters.filter((w) => console_.includes(w.text))) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve();
    }
  });
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const waitFor = (text: string, ms: number): Promise<void> =>
    console_.includes(text)
      ? Promise.resolve()
      : new Promise((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`no "${text}" on the console after ${ms} ms; console tail:\n${console_.slice(-2000)}\nstderr:\n${stderr}`)), ms);
          waiters.push({ text, resolve: () => (clearTimeout(timer), resolve()) });
          void exited.then((code) => reject(new Error(`tskvm exited (${code}) before "${text}"; console tail:\n${console_.slice(-2000)}\nstderr:\n${stderr}`)));
        });

  try {
    await waitFor(INIT_READY_MARKER, BOOT_TIMEOUT_MS);
    // Markers built from two echoed halves so the command's own echo does not match.
    child.stdin.write('uname -r; echo "un""ame-done"\n');
    await waitFor('uname-done', 60_000);
    expect(console_).toContain(guest.kernelVersion);

    child.stdin.write('cat /proc/cpuinfo; echo "cpu""info-done"\n');
    await waitFor('cpuinfo-done', 60_000);
    const cpuinfo = console_.slice(console_.lastIndexOf('cat /proc/cpuinfo'));
    expect(cpuinfo).toMatch(/processor\s*:\s*0/);
    expect(cpuinfo).toMatch(/vendor_id\s*:/);
    expect(cpuinfo).toMatch(/flags\s*:.*\bhypervisor\b/);

    child.stdin.write('poweroff -f\n');
    let timer: NodeJS.Timeout | undefined;
    const code = await Promise.race([exited, new Promise<string>((r) => (timer = setTimeout(() => r('timeout'), 120_000)))]);
    clearTimeout(timer);
    expect(code).toBe(0);
    // --stats printed the exit table, and the UART did the console work.
    expect(stderr).toMatch(/exit reason/);
    expect(stderr).toMatch(/serial8250/);
  } finally {
    child.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
