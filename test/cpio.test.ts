import { describe, it, expect } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import {
  CpioWriter, readCpio, writeCpio, normalizePath, encodeHeader,
  S_IFDIR, S_IFREG, S_IFLNK, S_IFCHR, NEWC_HEADER_SIZE,
} from '../src/initramfs/cpio';

const hasCpio = spawnSync('cpio', ['--version']).status === 0;
// In CI the tool is installed by .ci/run, so a missing cpio fails instead of skipping.
const itCpio = hasCpio || process.env.CI ? it : it.skip;

function sample(): Buffer {
  return new CpioWriter()
    .add({ type: 'dir', path: '/bin' })
    .add({ type: 'file', path: 'bin/hello', data: 'hi!\n', mode: 0o755 })
    .add({ type: 'file', path: 'bin/empty', data: new Uint8Array(0) })
    .add({ type: 'symlink', path: 'bin/sh', target: 'hello' })
    .add({ type: 'dir', path: 'dev' })
    .add({ type: 'chardev', path: 'dev/console', major: 5, minor: 1 })
    .finish();
}

describe('newc cpio writer', () => {
  it('writes the header bytes exactly (hand-checked)', () => {
    const a = writeCpio([{ type: 'file', path: 'ab', data: 'xyz', mode: 0o644, mtime: 0x12345678 }]);
    const expected =
      '070701' +
      '00000001' + // ino
      '000081A4' + // mode 0100644
      '00000000' + // uid
      '00000000' + // gid
      '00000001' + // nlink
      '12345678' + // mtime
      '00000003' + // filesize
      '00000000' + '00000000' + // devmajor, devminor
      '00000000' + '00000000' + // rdevmajor, rdevminor
      '00000003' + // namesize "ab\0"
      '00000000'; // check
    expect(a.toString('ascii', 0, 110)).toBe(expected);
    // 110 + 3 = 113 -> name padded to 116; data 3 -> padded to 4
    expect(a.subarray(110, 116)).toEqual(Buffer.from('ab\0\0\0\0', 'latin1'));
    expect(a.toString('ascii', 116, 119)).toBe('xyz');
    expect(a[119]).toBe(0);
    // trailer follows at 120
    expect(a.toString('ascii', 120, 126)).toBe('070701');
    expect(a.toString('ascii', 120 + 110, 120 + 110 + 10)).toBe('TRAILER!!!');
    // trailer: 110 + 11 = 121 -> padded to 124
    expect(a.length).toBe(120 + 124);
    expect(a.length % 4).toBe(0);
  });

  it('encodes char device numbers in rdevmajor/rdevminor', () => {
    const a = writeCpio([{ type: 'chardev', path: 'dev/console', major: 5, minor: 1, mode: 0o600 }]);
    const h = a.toString('ascii', 0, NEWC_HEADER_SIZE);
    expect(h.slice(6 + 8, 6 + 16)).toBe('00002180'); // 020600
    expect(h.slice(6 + 9 * 8, 6 + 10 * 8)).toBe('00000005');
    expect(h.slice(6 + 10 * 8, 6 + 11 * 8)).toBe('00000001');
  });

  it('pads every entry to 4 bytes and round-trips through readCpio', () => {
    const recs = readCpio(sample());
    expect(recs.map((r) => r.name)).toEqual(['bin', 'bin/hello', 'bin/empty', 'bin/sh', 'dev', 'dev/console']);
    expect(recs[0].mode).toBe(S_IFDIR | 0o755);
    expect(recs[1].mode).toBe(S_IFREG | 0o755);
    expect(recs[1].data.toString()).toBe('hi!\n');
    expect(recs[2].data.length).toBe(0);
    expect(recs[3].mode).toBe(S_IFLNK | 0o777);
    expect(recs[3].data.toString()).toBe('hello');
    expect(recs[5].mode).toBe(S_IFCHR | 0o600);
    expect([recs[5].rdevMajor, recs[5].rdevMinor]).toEqual([5, 1]);
    expect(new Set(recs.map((r) => r.ino)).size).toBe(recs.length);
  });

  it('handles every name length modulo 4 and binary data', () => {
    const entries = [];
    for (let n = 1; n <= 9; n++) {
      const data = Buffer.alloc(n * 7, n);
      entries.push({ type: 'file' as const, path: 'f'.repeat(n), data });
    }
    const recs = readCpio(writeCpio(entries));
    for (let n = 1; n <= 9; n++) {
      expect(recs[n - 1].name).toBe('f'.repeat(n));
      expect(recs[n - 1].data).toEqual(Buffer.alloc(n * 7, n));
    }
  });

  it('normalises and validates paths', () => {
    expect(normalizePath('/bin/sh')).toBe('bin/sh');
    expect(normalizePath('./etc/')).toBe('etc');
    for (const bad of ['', '/', '.', 'a/../b', 'a//b', 'a/./b', 'x\0y']) {
      expect(() => normalizePath(bad)).toThrow(/cpio/);
    }
    expect(() => normalizePath('a'.repeat(5000))).toThrow(/longer/);
  });

  it('rejects bad entries', () => {
    const w = new CpioWriter().add({ type: 'dir', path: 'a' });
    expect(() => w.add({ type: 'dir', path: '/a/' })).toThrow(/duplicate/);
    expect(() => w.add({ type: 'file', path: 'm', data: '', mode: 0o100644 })).toThrow(/mode/);
    expect(() => w.add({ type: 'file', path: 'm', data: '', mode: -1 })).toThrow(/mode/);
    expect(() => w.add({ type: 'symlink', path: 's', target: '' })).toThrow(/target/);
    expect(() => w.add({ type: 'chardev', path: 'c', major: 4096, minor: 0 })).toThrow(/major/);
    expect(() => w.add({ type: 'chardev', path: 'c', major: 1, minor: 1.5 })).toThrow(/minor/);
    expect(() => w.add({ type: 'file', path: 'TRAILER!!!', data: '' })).toThrow(/reserved/);
    expect(() => w.add({ type: 'file', path: 't', data: '', mtime: 2 ** 32 })).toThrow(/mtime/);
    w.finish();
    expect(() => w.add({ type: 'dir', path: 'b' })).toThrow(/finished/);
    expect(() => w.finish()).toThrow(/finished/);
  });

  it('mkdirp adds missing parents once', () => {
    const w = new CpioWriter().add({ type: 'dir', path: 'lib' });
    w.mkdirp('lib/modules/6.1');
    w.mkdirp('/lib/modules/6.1/kernel');
    expect(readCpio(w.finish()).map((r) => r.name)).toEqual(['lib', 'lib/modules', 'lib/modules/6.1', 'lib/modules/6.1/kernel']);
  });

  it('readCpio rejects malformed archives without reading out of bounds', () => {
    const a = sample();
    expect(() => readCpio(a.subarray(0, 50))).toThrow(/truncated/);
    expect(() => readCpio(a.subarray(0, a.length - 8))).toThrow(/truncated|magic/);
    const bad = Buffer.from(a);
    bad.write('070702', 0, 'ascii');
    expect(() => readCpio(bad)).toThrow(/magic/);
    const badHex = Buffer.from(a);
    badHex.write('zz', 10, 'ascii');
    expect(() => readCpio(badHex)).toThrow(/hex/);
    const badSize = Buffer.from(encodeHeader('x', {
      ino: 1, mode: S_IFREG, uid: 0, gid: 0, nlink: 1, mtime: 0, filesize: 1000,
      devMajor: 0, devMinor: 0, rdevMajor: 0, rdevMinor: 0,
    }));
    expect(() => readCpio(badSize)).toThrow(/truncated/);
  });

  itCpio('is listed and extracted by the system cpio tool', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tskvm-cpio-'));
    try {
      const archive = path.join(dir, 'a.cpio');
      fs.writeFileSync(archive, new CpioWriter()
        .add({ type: 'dir', path: 'bin' })
        .add({ type: 'file', path: 'bin/hello', data: 'hi!\n', mode: 0o755 })
        .add({ type: 'file', path: 'bin/big', data: Buffer.alloc(10001, 0xab) })
        .add({ type: 'symlink', path: 'bin/sh', target: 'hello' })
        .finish());
      const list = spawnSync('cpio', ['-t', '--quiet', '-F', archive], { encoding: 'utf8' });
      expect(list.status).toBe(0);
      expect(list.stdout.trim().split('\n')).toEqual(['bin', 'bin/hello', 'bin/big', 'bin/sh']);
      const verbose = spawnSync('cpio', ['-tv', '--quiet', '-F', archive], { encoding: 'utf8' });
      expect(verbose.stdout).toMatch(/^-rwxr-xr-x .* bin\/hello$/m);
      expect(verbose.stdout).toMatch(/^lrwxrwxrwx .* bin\/sh -> hello$/m);

      const out = path.join(dir, 'x');
      fs.mkdirSync(out);
      const ex = spawnSync('cpio', ['-i', '-d', '--quiet', '-F', archive], { cwd: out, encoding: 'utf8' });
      expect(ex.status).toBe(0);
      expect(fs.readFileSync(path.join(out, 'bin/hello'), 'utf8')).toBe('hi!\n');
      expect(fs.statSync(path.join(out, 'bin/hello')).mode & 0o777).toBe(0o755);
      expect(fs.readFileSync(path.join(out, 'bin/big'))).toEqual(Buffer.alloc(10001, 0xab));
      expect(fs.readlinkSync(path.join(out, 'bin/sh'))).toBe('hello');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  itCpio('reads archives written by the system cpio tool', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tskvm-cpio-'));
    try {
      fs.mkdirSync(path.join(dir, 'd'));
      fs.writeFileSync(path.join(dir, 'd/f'), 'abcde');
      fs.symlinkSync('f', path.join(dir, 'd/l'));
      const r = spawnSync('cpio', ['-o', '-H', 'newc', '--quiet'], { cwd: dir, input: 'd\nd/f\nd/l\n' });
      expect(r.status).toBe(0);
      const recs = readCpio(r.stdout);
      expect(recs.map((x) => x.name)).toEqual(['d', 'd/f', 'd/l']);
      expect(recs[1].data.toString()).toBe('abcde');
      expect(recs[2].mode & 0o170000).toBe(S_IFLNK);
      expect(recs[2].data.toString()).toBe('f');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
