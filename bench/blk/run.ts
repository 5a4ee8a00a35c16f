// bench/blk: sequential read and write throughput of a virtio-blk disk,
// measured inside the guest with busybox dd and O_DIRECT (no page cache), for
// tskvm and for QEMU (virtio-blk-pci) on the same kernel, initramfs, image
// size and commands, in one run. Prints MB/s and the ratios tskvm ÷ QEMU.
//
// Usage: node dist/bench/blk/run.js [--size-mb N] [--bs 1M] [--timeout SECONDS] [--skip-exit-path]
//
// tskvm runs twice: as `tskvm run` does by default (queues served on the
// virtio I/O thread, notifications by ioeventfd, interrupts by irqfd) and
// with --no-io-thread (each notification an MMIO exit served in the exit
// loop); --skip-exit-path leaves out the second run.
//
// The guest's /init (built here) loads virtio_pci + virtio_blk, then runs
//   dd if=/dev/zero of=/dev/vda bs=BS count=N oflag=direct   (write)
//   dd if=/dev/vda of=/dev/null bs=BS count=N iflag=direct   (read)
// each between two reads of /proc/uptime (the guest clock, 10 ms steps), and
// prints "blk-write T0 T1" / "blk-read T0 T1": Debian's busybox dd prints
// only its record counts, no time or rate.
//
// QEMU is tried with KVM first (-enable-kvm -cpu host, cache=none, like
// tskvm's O_DIRECT-less but fsync-on-flush file backend); on the nested KVM of
// our machines it stops at an instruction KVM's emulator cannot run (see
// bench/boot), and the bench then falls back to QEMU's software CPU (TCG) and
// says so next to the figure: the ratio is then against TCG, not KVM.
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { writeInitramfs } from '../../src/initramfs/build';
import { linuxEmulatorCmdline } from '../../src/arch/x86/cpuid-probe';

const ROOT = path.join(__dirname, '..', '..', '..');
const CACHE = process.env.GUEST_CACHE ?? path.join(ROOT, 'guest-cache');
const CLI = path.join(ROOT, 'bin', 'tskvm.js');
const DONE = 'blk-bench-done';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
}

interface Result {
  ok: boolean;
  writeMBs?: number;
  readMBs?: number;
  failure?: string;
  seconds: number;
}

/** MB/s for "blk-write T0 T1" and "blk-read T0 T1" (guest uptime in seconds around each dd). */
function parseRates(text: string, bytes: number): { writeMBs?: number; readMBs?: number } {
  const rate = (name: string): number | undefined => {
    const m = new RegExp(`${name} ([\\d.]+) ([\\d.]+)`).exec(text);
    const seconds = m ? Number(m[2]) - Number(m[1]) : NaN;
    // A 10 ms clock: a run shorter than one step has no measurable rate.
    return seconds > 0 ? bytes / 1e6 / seconds : undefined;
  };
  return { writeMBs: rate('blk-write'), readMBs: rate('blk-read') };
}

function runGuest(command: string, args: string[], bytes: number, timeoutSeconds: number, failurePattern?: RegExp): Promise<Result> {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let done = false;
    const finish = (r: Omit<Result, 'seconds'>): void => {
      if (done) return;
      done = true;
      if (!r.ok) {
        // Keep the whole console for the post-mortem: the summary shows only its last lines.
        const log = path.join(os.tmpdir(), `tskvm-blk-bench-${path.basename(command)}-${process.pid}-${Date.now()}.log`);
        fs.writeFileSync(log, out);
        r = { ...r, failure: `${r.failure} (console: ${log})` };
      }
      clearTimeout(timer);
      child.kill('SIGKILL');
      resolve({ ...r, seconds: (Date.now() - started) / 1000 });
    };
    const timer = setTimeout(() => finish({ ok: false, failure: `no result within ${timeoutSeconds} s` }), timeoutSeconds * 1000);
    const check = (): void => {
      if (out.includes(DONE)) {
        const { writeMBs, readMBs } = parseRates(out, bytes);
        finish(writeMBs && readMBs ? { ok: true, writeMBs, readMBs } : { ok: false, failure: `no timings in the output: ${out.slice(-500)}` });
      } else if (failurePattern?.test(out)) {
        finish({ ok: false, failure: (out.match(/KVM internal error[^\n]*/)?.[0] ?? 'failed') + ' (emulation failure)' });
      }
    };
    child.stdout.on('data', (d: Buffer) => ((out += d.toString('latin1')), check()));
    child.stderr.on('data', (d: Buffer) => ((out += d.toString('latin1')), check()));
    child.on('error', (e) => finish({ ok: false, failure: `${command}: ${e.message}` }));
    child.on('exit', (code) => finish({ ok: false, failure: `exited with ${code}: ${out.trim().split('\n').slice(-3).join(' | ')}` }));
  });
}

async function main(): Promise<void> {
  const sizeMb = Number(arg('--size-mb', '64'));
  const bs = arg('--bs', '1M');
  const timeout = Number(arg('--timeout', '1200'));
  const count = Math.floor((sizeMb * 1024 * 1024) / parseBs(bs));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tskvm-blk-bench-'));
  const initrd = path.join(dir, 'initrd.gz');
  const image = path.join(dir, 'disk.img');
  fs.writeFileSync(image, Buffer.alloc(0));
  fs.truncateSync(image, sizeMb * 1024 * 1024);
  const ver = fs.readFileSync(path.join(CACHE, 'kernel-version'), 'utf8').trim();
  writeInitramfs({
    output: initrd,
    cache: CACHE,
    modules: ['virtio_pci', 'virtio_blk'],
    initCommands: [
      `read t0 rest < /proc/uptime; dd if=/dev/zero of=/dev/vda bs=${bs} count=${count} oflag=direct; read t1 rest < /proc/uptime; echo "blk-write $t0 $t1"`,
      `read t0 rest < /proc/uptime; dd if=/dev/vda of=/dev/null bs=${bs} count=${count} iflag=direct; read t1 rest < /proc/uptime; echo "blk-read $t0 $t1"`,
      `echo ${DONE.slice(0, 5)}""${DONE.slice(5)}`,
      'poweroff -f',
    ],
  });
  const kernel = path.join(CACHE, 'vmlinuz');
  const base = 'console=ttyS0 panic=-1 quiet';
  console.log(`bench/blk: kernel ${ver}, ${sizeMb} MiB image, dd bs=${bs} count=${count}, O_DIRECT in the guest`);

  const bytes = count * parseBs(bs);
  const tskvmArgs = [CLI, 'run', '-k', kernel, '-i', initrd, '-m', '256M', '-p', base, '--disk', image];
  const tskvm = await runGuest(process.execPath, tskvmArgs, bytes, timeout);
  const exitPath = process.argv.includes('--skip-exit-path') ? undefined : await runGuest(process.execPath, [...tskvmArgs, '--no-io-thread'], bytes, timeout);
  // The same kernel switches tskvm adds on this KVM, so both guests run the same code paths.
  const cmdline = `${base} ${linuxEmulatorCmdline()}`;
  const qemuArgs = (drive: string): string[] => [
    '-m', '256M', '-smp', '1', '-kernel', kernel, '-initrd', initrd, '-append', cmdline, '-nographic', '-no-reboot', '-nodefaults', '-serial', 'stdio',
    '-drive', `file=${image},if=none,id=d0,format=raw,${drive}`, '-device', 'virtio-blk-pci,drive=d0,disable-legacy=on',
  ];
  let qemuLabel = 'qemu -enable-kvm';
  let qemu = await runGuest('qemu-system-x86_64', ['-enable-kvm', '-cpu', 'host', ...qemuArgs('cache=none,aio=threads')], bytes, timeout, /KVM internal error[\s\S]*Code=/);
  const kvmFailure = qemu.ok ? undefined : qemu.failure;
  if (!qemu.ok) {
    qemuLabel = 'qemu tcg';
    qemu = await runGuest('qemu-system-x86_64', ['-accel', 'tcg', ...qemuArgs('cache=none,aio=threads')], bytes, timeout);
  }
  const row = (name: string, r: Result): string =>
    r.ok ? `${name.padEnd(22)} write ${r.writeMBs!.toFixed(2).padStart(8)} MB/s   read ${r.readMBs!.toFixed(2).padStart(8)} MB/s   (run ${r.seconds.toFixed(1)} s)` : `${name.padEnd(22)} failed: ${r.failure}`;
  console.log(row('tskvm', tskvm));
  if (exitPath) console.log(row('tskvm --no-io-thread', exitPath));
  if (kvmFailure) console.log(`${'qemu -enable-kvm'.padEnd(22)} failed: ${kvmFailure}`);
  console.log(row(qemuLabel, qemu));
  if (tskvm.ok && exitPath?.ok)
    console.log(`ratio I/O thread / exit path: write ${(tskvm.writeMBs! / exitPath.writeMBs!).toFixed(3)}, read ${(tskvm.readMBs! / exitPath.readMBs!).toFixed(3)}`);
  if (tskvm.ok && qemu.ok) {
    console.log(`ratio tskvm / ${qemuLabel}: write ${(tskvm.writeMBs! / qemu.writeMBs!).toFixed(3)}, read ${(tskvm.readMBs! / qemu.readMBs!).toFixed(3)} (goal >= 1.0 against qemu -enable-kvm)`);
  }
  fs.rmSync(dir, { recursive: true, force: true });
}

function parseBs(bs: string): number {
  const m = /^(\d+)([KM]?)$/i.exec(bs);
  if (!m) throw new Error(`--bs ${bs}: expected N, NK or NM`);
  return Number(m[1]) * (m[2]?.toUpperCase() === 'M' ? 1 << 20 : m[2]?.toUpperCase() === 'K' ? 1 << 10 : 1);
}

void main();
