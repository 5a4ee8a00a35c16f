// Boots Debian's stock cloud kernel with a busybox initramfs through the CLI
// (`tskvm run`) and talks to the shell. Slow: on the nested KVM of our
// machines the kernel runs in KVM's instruction emulator and takes minutes to
// reach user space (DESIGN.md), so the two boots here share what they check.
//
// Boot 1: shell on the virtio console (hvc0), with a virtio disk, a read-only
// virtio disk, a virtio NIC on a host tap and virtio-rng: make a filesystem
// and write a file, refuse writes to the read-only disk, ping and TCP to the
// host, random bytes from /dev/hwrng, uname and /proc/cpuinfo, poweroff -f.
// Boot 2: two vCPUs (--cpus 2), shell on the serial console (ttyS0). First,
// on the one online CPU, two processes switch back and forth 300 times each
// with their own values in YMM0 and must find them intact (avx-context.c:
// the kernel's XSAVE state handling, done by tskvm at CPL0 here). Linux
// boots on CPU 0 (maxcpus=1) and the shell brings CPU 1 online (INIT/SIPI
// through the in-kernel LAPIC, as at boot): booting with both CPUs online
// takes about 1.6 times as long here (README, "SMP"), too long for CI. Then
// nproc says 2, a process pinned to CPU 1 runs there, and the file written
// in boot 1 is read back from the disk with the same checksum; poweroff -f.
import { execFileSync } from 'child_process';
import { createHash, randomBytes } from 'crypto';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { writeInitramfs, INIT_READY_MARKER } from '../src/initramfs/build';
import { linuxGuest } from './helpers/paths';
import { startCliGuest, type CliGuest } from './helpers/cli-guest';

// Generous: a boot takes 6 to 9 minutes on our machines, more on a busy one.
const BOOT_TIMEOUT_MS = 20 * 60 * 1000;
jest.setTimeout(BOOT_TIMEOUT_MS + 15 * 60 * 1000);

const guest = linuxGuest();
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tskvm-linux-'));
const initrd = path.join(dir, 'initrd.gz');
const disk = path.join(dir, 'disk.img');
const roDisk = path.join(dir, 'ro.img');
const roContent = randomBytes(4096);
const token = `tskvm-${randomBytes(6).toString('hex')}`;
// A tap and a /24 of our own, so that parallel runs do not collide.
const tap = `tskvmt${process.pid % 100000}`;
const subnet = `10.${100 + (process.pid % 100)}.${(process.pid >> 8) % 250}`;
const hostIp = `${subnet}.1`;
const guestIp = `${subnet}.2`;
let fileSha = '';

function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

// A freestanding static program, so the toolchain needs no libc for it.
const avxContextSource = path.join(__dirname, 'linux-guest', 'avx-context.c');
const avxContext = path.join(dir, 'avx-context');
// The guest sees the host's CPUID on this KVM (cpuid-probe.ts), so AVX is there if the host has it.
const hostHasAvx = /^flags\s*:.*\bavx\b/m.test(fs.readFileSync('/proc/cpuinfo', 'utf8'));

beforeAll(() => {
  sh('gcc', ['-O2', '-static', '-nostdlib', '-ffreestanding', '-fno-stack-protector', '-fno-builtin', '-o', avxContext, avxContextSource]);
  writeInitramfs({
    output: initrd,
    cache: guest.cache,
    modules: ['virtio_pci', 'virtio_blk', 'virtio_net', 'virtio_console', 'virtio_rng'],
    extraFiles: [{ path: '/bin/avx-context', source: avxContext, mode: 0o755 }],
  });
  fs.writeFileSync(disk, Buffer.alloc(0));
  fs.truncateSync(disk, 32 * 1024 * 1024);
  fs.writeFileSync(roDisk, roContent);
  sh('ip', ['tuntap', 'add', 'dev', tap, 'mode', 'tap']);
  sh('ip', ['addr', 'add', `${hostIp}/24`, 'dev', tap]);
  sh('ip', ['link', 'set', tap, 'up']);
});

afterAll(() => {
  try {
    sh('ip', ['tuntap', 'del', 'dev', tap, 'mode', 'tap']);
  } catch {
    // already gone
  }
  fs.rmSync(dir, { recursive: true, force: true });
});

async function powerOff(g: CliGuest): Promise<void> {
  g.send('poweroff -f\n');
  expect(await g.exit(120_000)).toBe(0);
}

test('boot 1: virtio console, disk, read-only disk, NIC on a tap, rng; uname, cpuinfo, poweroff -f exits 0', async () => {
  // The host end of a TCP connection from the guest.
  let received = '';
  const server = net.createServer((socket) => {
    socket.on('data', (d) => (received += d.toString()));
    // A reset from the guest (its nc giving up) shows as a missing pong below, not as an uncaught error.
    socket.on('error', () => {});
    socket.end('pong-from-host\n');
  });
  await new Promise<void>((resolve) => server.listen(0, hostIp, resolve));
  const port = (server.address() as net.AddressInfo).port;

  const g = startCliGuest([
    '--kernel', guest.kernel, '--initrd', initrd, '--memory', '256M', '--stats',
    '--console', 'virtio', '--disk', disk, '--disk', `${roDisk},ro`, '--net', `tap=${tap},mac=52:54:00:12:34:56`, '--rng',
  ]);
  try {
    await g.waitFor(INIT_READY_MARKER, BOOT_TIMEOUT_MS);
    // The shell is on hvc0: the kernel's preferred console once virtio_console is loaded.
    expect(await g.run('cat /sys/class/tty/console/active')).toMatch(/\bhvc0\s*$/);

    expect(await g.run('uname -r')).toContain(guest.kernelVersion);
    // Where KVM runs kernel code in its emulator, tskvm boots Linux on the TSC
    // instead of kvm-clock (cpuid-probe.ts: emulatorClockSwitches).
    if (g.stderr().includes('no-kvmclock')) {
      expect((await g.run('cat /sys/devices/system/clocksource/clocksource0/current_clocksource')).trim()).toBe('tsc');
    }
    const cpuinfo = await g.run('cat /proc/cpuinfo');
    expect(cpuinfo).toMatch(/processor\s*:\s*0/);
    expect(cpuinfo).toMatch(/vendor_id\s*:/);
    expect(cpuinfo).toMatch(/flags\s*:.*\bhypervisor\b/);

    // Four virtio functions behind the host bridge (vendor 0x1af4, modern ids 0x1040 + type).
    const ids = await g.run('cat /sys/bus/pci/devices/*/device');
    for (const id of ['0x1043', '0x1042', '0x1041', '0x1044']) expect(ids).toContain(id);

    // Entropy: 32 bytes from the virtio-rng, not all the same.
    expect(await g.run('cat /sys/class/misc/hw_random/rng_current')).toContain('virtio_rng');
    const hex = (await g.run('dd if=/dev/hwrng bs=32 count=1 2>/dev/null | od -An -tx1')).replace(/\s+/g, '');
    expect(hex).toMatch(/^[0-9a-f]{64}$/);
    expect(new Set(hex.match(/../g)).size).toBeGreaterThan(8);

    // The disk: capacity, a filesystem and a file, flushed.
    expect((await g.run('blockdev --getsize64 /dev/vda')).trim()).toBe(String(32 * 1024 * 1024));
    await g.run('mke2fs -q /dev/vda && mkdir -p /mnt && mount -t ext2 /dev/vda /mnt && echo "mkfs-ok"', 300_000);
    expect(g.console()).toContain('mkfs-ok');
    const sum = await g.run(`echo ${token} > /mnt/hello.txt && sync && sha256sum /mnt/hello.txt && umount /mnt`);
    fileSha = /([0-9a-f]{64})/.exec(sum)?.[1] ?? '';
    expect(fileSha).toBe(createHash('sha256').update(`${token}\n`).digest('hex'));

    // The read-only disk: the kernel knows, reads work, writes fail.
    expect((await g.run('blockdev --getro /dev/vdb')).trim()).toBe('1');
    expect(await g.run('dd if=/dev/vdb bs=4096 count=1 2>/dev/null | sha256sum')).toContain(createHash('sha256').update(roContent).digest('hex'));
    expect(await g.run('dd if=/dev/zero of=/dev/vdb bs=512 count=1 2>&1; echo "status=$?"')).toMatch(/status=1/);

    // The NIC: ping the host over the tap, then a TCP exchange.
    await g.run(`ip link set eth0 up && ip addr add ${guestIp}/24 dev eth0`);
    expect(await g.run(`ip link show eth0`)).toContain('52:54:00:12:34:56');
    const ping = await g.run(`ping -c 3 -W 10 ${hostIp}`, 180_000);
    expect(ping).toMatch(/3 packets transmitted, 3 packets received/);
    // -w: nc's idle timeout. The guest's first TCP connection seeds its RNG
    // (chacha in the emulator: a 23 s soft lockup in one CI-style run), so
    // nc must wait long enough for the reply to be read.
    const tcp = await g.run(`echo hello-from-guest | nc -w 240 ${hostIp} ${port}`, 600_000);
    expect(tcp).toContain('pong-from-host');
    expect(received).toContain('hello-from-guest');

    await powerOff(g);
    // --stats printed the exit table, with the virtio devices' BARs among the devices.
    expect(g.stderr()).toMatch(/exit reason/);
    expect(g.stderr()).toMatch(/virtio-blk0/);
    // The disk, NIC and rng were served on the virtio I/O thread: notifications
    // by ioeventfd and interrupts by irqfd, not through the exit loop.
    for (const device of ['virtio-blk0', 'virtio-blk1', 'virtio-net0', 'virtio-rng']) {
      expect(Number(new RegExp(`${device} notifications\\s+(\\d+)`).exec(g.stderr())?.[1])).toBeGreaterThan(0);
      expect(Number(new RegExp(`${device} interrupts\\s+(\\d+)`).exec(g.stderr())?.[1])).toBeGreaterThan(0);
    }
  } finally {
    g.kill();
    server.close();
  }
  // Host side: the file is in the image, read without the guest (e2fsprogs' debugfs).
  expect(sh('debugfs', ['-R', 'cat /hello.txt', disk])).toBe(`${token}\n`);
  expect(createHash('sha256').update(fs.readFileSync(roDisk)).digest('hex')).toBe(createHash('sha256').update(roContent).digest('hex'));
});

test('boot 2: two vCPUs, serial console; CPU 1 comes online, nproc is 2; the file written in boot 1 reads back with the same checksum', async () => {
  expect(fileSha).not.toBe(''); // boot 1 ran and wrote it
  const g = startCliGuest(['--kernel', guest.kernel, '--initrd', initrd, '--memory', '256M', '--cpus', '2', '--disk', disk, '--append', 'console=ttyS0 panic=-1 maxcpus=1']);
  try {
    await g.waitFor(INIT_READY_MARKER, BOOT_TIMEOUT_MS);
    expect(await g.run('cat /sys/class/tty/console/active')).toMatch(/\bttyS0\s*$/);
    // Both CPUs are in the MP table and the MADT; one is online.
    expect((await g.run('cat /sys/devices/system/cpu/present')).trim()).toBe('0-1');
    expect((await g.run('nproc')).trim()).toBe('1');
    // AVX registers survive context switches between two processes on one CPU.
    const avx = await g.run('avx-context', 600_000);
    if (hostHasAvx) {
      expect(avx).toMatch(/avx-context: parent 300 switches, xmm lost 0, ymm upper lost 0/);
      expect(avx).toMatch(/avx-context: child 300 switches, xmm lost 0, ymm upper lost 0/);
    } else {
      expect(avx).toContain('avx-context: no AVX');
    }
    await g.run('echo 1 > /sys/devices/system/cpu/cpu1/online', 600_000);
    expect((await g.run('cat /sys/devices/system/cpu/online')).trim()).toBe('0-1');
    expect((await g.run('nproc')).trim()).toBe('2');
    // Field 39 of /proc/PID/stat is the CPU the process last ran on.
    expect((await g.run("taskset -c 1 awk '{print \"on-cpu-\" $39}' /proc/self/stat")).trim()).toContain('on-cpu-1');
    const back = await g.run('mkdir -p /mnt && mount -t ext2 /dev/vda /mnt && cat /mnt/hello.txt && sha256sum /mnt/hello.txt && umount /mnt');
    expect(back).toContain(token);
    expect(back).toContain(fileSha);
    await powerOff(g);
  } finally {
    g.kill();
  }
});
