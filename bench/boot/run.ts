// bench/boot: time from start to the first line /init prints ("tskvm-init:
// ready"), for tskvm and for QEMU (`qemu-system-x86_64 -enable-kvm`, Debian's
// package) on the same kernel, initramfs, memory and command line, in one run.
//
// Usage: node dist/bench/boot/run.js [--runs N] [--tcg] [--timeout SECONDS]
//   --tcg   also time QEMU without KVM (its software CPU), for reference.
//
// On the nested KVM of our machines QEMU+KVM cannot boot this kernel: KVM's
// instruction emulator fails on an instruction and QEMU stops the VM
// ("KVM internal error. Suberror: 1"). The bench then reports that failure,
// with the instruction, instead of a time; tskvm handles those exits itself.
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { writeInitramfs, INIT_READY_MARKER } from '../../src/initramfs/build';
import { linuxEmulatorCmdline } from '../../src/arch/x86/cpuid-probe';

const ROOT = path.join(__dirname, '..', '..', '..');
const CACHE = process.env.GUEST_CACHE ?? path.join(ROOT, 'guest-cache');
const CLI = path.join(ROOT, 'bin', 'tskvm.js');
const BASE_CMDLINE = 'console=ttyS0 panic=-1';

interface Outcome {
  ok: boolean;
  seconds: number;
  /** Why it did not reach /init. */
  failure?: string;
}

/** Spawns a VMM and resolves when the marker shows up on its stdout, it exits, or time runs out. */
function timeToMarker(command: string, args: string[], timeoutSeconds: number, failurePattern?: RegExp): Promise<Outcome> {
  return new Promise((resolve) => {
    const started = process.hrtime.bigint();
    const elapsed = (): number => Number(process.hrtime.bigint() - started) / 1e9;
    const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let done = false;
    const finish = (o: Outcome): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      child.kill('SIGKILL');
      resolve(o);
    };
    const timer = setTimeout(() => finish({ ok: false, seconds: elapsed(), failure: `no "${INIT_READY_MARKER}" within ${timeoutSeconds} s` }), timeoutSeconds * 1000);
    const check = (): void => {
      if (out.includes(INIT_READY_MARKER)) finish({ ok: true, seconds: elapsed() });
      const failed = failurePattern && (out + err).match(failurePattern);
      if (failed) finish({ ok: false, seconds: elapsed(), failure: summarizeFailure(out + err) });
    };
    child.stdout.on('data', (d: Buffer) => ((out += d.toString('latin1')), check()));
    child.stderr.on('data', (d: Buffer) => ((err += d.toString('latin1')), check()));
    child.on('error', (e) => finish({ ok: false, seconds: elapsed(), failure: `${command}: ${e.message}` }));
    child.on('exit', (code) => finish({ ok: false, seconds: elapsed(), failure: `exited with ${code} before /init; stderr: ${err.trim().split('\n').slice(-3).join(' | ')}` }));
  });
}

/** QEMU prints "KVM internal error. Suberror: 1", then "emulation failure", registers and "Code=... <xx> ..." (the failing byte in <>). */
function summarizeFailure(text: string): string {
  const code = text.match(/Code=.*?<([0-9a-f]{2})>([0-9a-f ]*)/);
  const rip = text.match(/RIP=([0-9a-f]+)/);
  const bytes = code ? [code[1], ...code[2]!.trim().split(' ').slice(0, 5)].join(' ') : '?';
  return `KVM emulation failure at RIP ${rip ? '0x' + rip[1] : '?'}, instruction bytes ${bytes} (QEMU stops the VM)`;
}

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
}

async function main(): Promise<void> {
  const kernel = path.join(CACHE, 'vmlinuz');
  if (!fs.existsSync(kernel)) throw new Error(`no kernel in ${CACHE}: run scripts/get-linux-guest.sh first`);
  const runs = arg('--runs', 1);
  const timeout = arg('--timeout', 900);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tskvm-bench-boot-'));
  const initrd = path.join(dir, 'initrd.gz');
  writeInitramfs({ output: initrd, cache: CACHE });
  // The same command line for both: tskvm adds its switches for this KVM to
  // BASE_CMDLINE itself (it logs them); QEMU gets them written out.
  const cmdline = `${BASE_CMDLINE} ${linuxEmulatorCmdline()}`;
  console.log(`kernel ${kernel}\ninitrd ${initrd}\ncmdline ${cmdline}\nmemory 256M, 1 vCPU, ${runs} run(s) each\n`);

  const results: Record<string, Outcome[]> = { tskvm: [], 'qemu -enable-kvm': [], 'qemu tcg': [] };
  for (let r = 0; r < runs; r++) {
    results['tskvm']!.push(
      await timeToMarker(process.execPath, [CLI, 'run', '-k', kernel, '-i', initrd, '-m', '256M', '-p', BASE_CMDLINE], timeout, /tskvm: guest stopped/),
    );
    const qemu = ['-m', '256M', '-smp', '1', '-kernel', kernel, '-initrd', initrd, '-append', cmdline, '-nographic', '-no-reboot', '-nodefaults', '-serial', 'stdio'];
    // QEMU's report ends with the "Code=... <xx> ..." line: wait for it.
    results['qemu -enable-kvm']!.push(await timeToMarker('qemu-system-x86_64', ['-enable-kvm', '-cpu', 'host', ...qemu], timeout, /KVM internal error[\s\S]*Code=[^\n]*\n/));
    if (process.argv.includes('--tcg')) results['qemu tcg']!.push(await timeToMarker('qemu-system-x86_64', ['-accel', 'tcg', ...qemu], timeout));
  }
  fs.rmSync(dir, { recursive: true, force: true });

  const best = (os: Outcome[]): Outcome | undefined => os.filter((o) => o.ok).sort((a, b) => a.seconds - b.seconds)[0];
  for (const [name, outcomes] of Object.entries(results)) {
    if (!outcomes.length) continue;
    const b = best(outcomes);
    console.log(`${name.padEnd(18)} ${b ? `${b.seconds.toFixed(2)} s to /init` : `did not boot: ${outcomes[0]!.failure}`}`);
  }
  const t = best(results['tskvm']!);
  const q = best(results['qemu -enable-kvm']!);
  if (t && q) console.log(`\nratio tskvm / qemu -enable-kvm = ${(t.seconds / q.seconds).toFixed(3)} (goal <= 0.8)`);
  else console.log(`\nratio tskvm / qemu -enable-kvm: not defined (${t ? 'qemu -enable-kvm did not boot on this KVM' : 'tskvm did not boot'})`);
  const g = best(results['qemu tcg']!);
  if (t && g) console.log(`ratio tskvm / qemu tcg = ${(t.seconds / g.seconds).toFixed(3)} (reference: software CPU, no KVM)`);
}

main().catch((e) => {
  console.error(`bench/boot: ${(e as Error).message}`);
  process.exit(1);
});
