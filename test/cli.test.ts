// The CLI end to end: it runs example (1), and every host-side mistake is one
// clear sentence with a non-zero exit code.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { CLI, exampleGuest } from './helpers/paths';

function tskvm(args: string[], options: { asUser?: number } = {}) {
  const command = options.asUser === undefined ? process.execPath : 'setpriv';
  const argv =
    options.asUser === undefined
      ? [CLI, ...args]
      : [`--reuid=${options.asUser}`, `--regid=${options.asUser}`, '--clear-groups', process.execPath, CLI, ...args];
  const r = spawnSync(command, argv, { encoding: 'utf8', timeout: 30000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The error output is exactly one line starting with "tskvm: ". */
function expectOneSentence(stderr: string, pattern: RegExp): void {
  const lines = stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^tskvm: /);
  expect(lines[0]).toMatch(pattern);
}

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tskvm-cli-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('tskvm run-binary', () => {
  it('runs the real-mode example and exits 0', () => {
    const r = tskvm(['run-binary', exampleGuest('01-real-mode-hello'), '--mode', 'real']);
    expect(r.stdout).toBe('Hello from real mode!\n');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  it('runs the long-mode example with --stats', () => {
    const r = tskvm(['run-binary', exampleGuest('03-long-mode-serial'), '--mode', 'long', '--stats']);
    expect(r.status).toBe(0);
    expect(r.stdout).toBe('Hello from 64-bit long mode!\n');
    expect(r.stderr).toMatch(/io-out\s+29/);
    expect(r.stderr).toMatch(/serial8250\s+58/);
  });

  it('--trace prints decoded exits', () => {
    const r = tskvm(['run-binary', exampleGuest('01-real-mode-hello'), '--trace']);
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/^vcpu0 io-out port=0xe9 size=1 value=0x48 rip=0x[0-9a-f]+$/m);
    expect(r.stderr).toMatch(/^vcpu0 hlt rip=/m);
  });

  it('--disk puts a virtio-blk disk on PCI (implying --platform pc) that a bare-metal driver finds', () => {
    // test/hostile/guests/blk-faults.c with no mode word: find the disk, negotiate, DRIVER_OK, print DONE, reset.
    const guest = path.join(__dirname, 'hostile', 'guests', 'blk-faults.bin');
    const disk = path.join(tmp, 'disk.img');
    fs.writeFileSync(disk, Buffer.alloc(64 * 1024));
    const r = tskvm(['run-binary', guest, '--mode', 'long', '--mem', '8M', '--disk', disk, '--stats']);
    expect(r.status).toBe(0);
    expect(r.stdout).toBe('DONE\n');
    expect(r.stderr).toMatch(/virtio-blk0\.bar4\s+\d+/);
    const without = tskvm(['run-binary', guest, '--mode', 'long', '--mem', '8M', '--platform', 'pc']);
    expect(without.stdout).toContain('no usable virtio-blk device');
    const bare = tskvm(['run-binary', guest, '--mode', 'long', '--disk', disk, '--platform', 'bare']);
    expect(bare.status).toBe(1);
    expectOneSentence(bare.stderr, /needs --platform pc/);
  });

  it('a guest error exits 2 with a report', () => {
    const file = path.join(tmp, 'int3.bin');
    fs.writeFileSync(file, Buffer.from([0xcc]));
    const r = tskvm(['run-binary', file, '--mode', 'long']);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/guest stopped: emulation failure/);
    expect(r.stderr).toMatch(/RIP 0x0000000000008000 in 64-bit long mode/);
  });
});

describe('host-side errors: one sentence, non-zero exit', () => {
  it('no /dev/kvm', () => {
    const r = tskvm(['run-binary', exampleGuest('01-real-mode-hello'), '--kvm-device', path.join(tmp, 'no-such-kvm')]);
    expect(r.status).toBe(1);
    expectOneSentence(r.stderr, /no-such-kvm does not exist: this machine has no KVM/);
  });

  it('no permission to open /dev/kvm (run as an unprivileged user)', () => {
    if (process.getuid?.() !== 0) throw new Error('this test drops privileges with setpriv and must run as root (as CI does)');
    // The real /dev/kvm when ordinary users are denied it (crw------- here);
    // otherwise a stand-in device file nobody may open.
    let device = '/dev/kvm';
    if ((fs.statSync('/dev/kvm').mode & 0o006) !== 0) {
      device = path.join(tmp, 'kvm-no-access');
      fs.writeFileSync(device, '');
      fs.chmodSync(device, 0o000);
    }
    fs.chmodSync(tmp, 0o755);
    const r = tskvm(['run-binary', exampleGuest('01-real-mode-hello'), '--kvm-device', device], { asUser: 65534 });
    expect(r.status).toBe(1);
    expectOneSentence(r.stderr, /no permission to open .*: add your user to the "kvm" group/);
  });

  it('a binary larger than guest RAM', () => {
    const file = path.join(tmp, 'big.bin');
    fs.writeFileSync(file, Buffer.alloc(100 * 1024));
    const r = tskvm(['run-binary', file, '--mem', '64K']);
    expect(r.status).toBe(1);
    expectOneSentence(r.stderr, /binary \(102400 bytes\) does not fit in guest RAM .* use a larger --mem/);
  });

  it('an entry point outside guest RAM', () => {
    const r = tskvm(['run-binary', exampleGuest('02-protected-mode'), '--mode', 'protected', '--entry', '0x10000000']);
    expect(r.status).toBe(1);
    expectOneSentence(r.stderr, /entry point 0x10000000 is outside guest RAM/);
  });

  it('a missing binary', () => {
    const r = tskvm(['run-binary', path.join(tmp, 'missing.bin')]);
    expect(r.status).toBe(1);
    expectOneSentence(r.stderr, /binary .*missing\.bin does not exist/);
  });

  it('bad option values', () => {
    expectOneSentence(tskvm(['run-binary', 'x', '--mode', 'weird']).stderr, /mode/);
    expectOneSentence(tskvm(['run-binary', 'x', '--mem', 'lots']).stderr, /invalid size "lots"/);
    expectOneSentence(tskvm(['run-binary', 'x', '--entry', 'zz']).stderr, /invalid address "zz"/);
    expect(tskvm(['run-binary', 'x', '--mem', 'lots']).status).toBe(1);
  });
});

describe('tskvm run (Linux): host-side mistakes', () => {
  it('a file that is not a kernel', () => {
    const junk = path.join(tmp, 'junk.img');
    fs.writeFileSync(junk, Buffer.alloc(100000, 0x5a));
    const r = tskvm(['run', '--kernel', junk]);
    expect(r.status).toBe(1);
    expectOneSentence(r.stderr, /kernel .*junk\.img is not a bzImage or ELF vmlinux/);
  });

  it('a truncated bzImage', () => {
    // A setup header that says the protected-mode payload is far longer than the file.
    const image = Buffer.alloc(0x4000);
    image.writeUInt16LE(0xaa55, 0x1fe);
    image.writeUInt8(0xeb, 0x200); // jmp over the header: it ends at 0x202 + 0x6a
    image.writeUInt8(0x6a, 0x201);
    image.write('HdrS', 0x202, 'latin1');
    image.writeUInt16LE(0x020f, 0x206);
    image.writeUInt8(4, 0x1f1); // setup_sects
    image.writeUInt32LE(0x1000, 0x248); // payload_offset
    image.writeUInt32LE(0x100000, 0x24c); // payload_length
    const file = path.join(tmp, 'truncated.bzImage');
    fs.writeFileSync(file, image);
    const r = tskvm(['run', '--kernel', file]);
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^tskvm: .*(truncated|corrupt|past the end)/);
  });

  it('a missing kernel or initrd, and bad flags', () => {
    expectOneSentence(tskvm(['run', '--kernel', path.join(tmp, 'nope')]).stderr, /kernel .*nope does not exist/);
    const junk = path.join(tmp, 'junk.img');
    expectOneSentence(tskvm(['run', '--kernel', junk, '--initrd', path.join(tmp, 'no-initrd')]).stderr, /initrd .*no-initrd does not exist/);
    expectOneSentence(tskvm(['run', '--kernel', junk, '--cpus', '0']).stderr, /cpus/);
    expectOneSentence(tskvm(['run']).stderr, /--kernel/);
  });

  it('no /dev/kvm', () => {
    const junk = path.join(tmp, 'junk.img');
    const r = tskvm(['run', '--kernel', junk, '--kvm-device', path.join(tmp, 'no-kvm')]);
    expect(r.status).toBe(1);
    expectOneSentence(r.stderr, /no-kvm does not exist/);
  });
});
