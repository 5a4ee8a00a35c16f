import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';

import { readCpio, S_IFCHR, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG } from '../src/initramfs/cpio';
import {
  buildInitramfs, buildInitramfsDetailed, resolveModules, readModinfo, writeInitramfs,
  INIT_READY_MARKER, stripModuleSignature,
} from '../src/initramfs/build';

/** A minimal ELF64 LE file with a .modinfo section (enough for readModinfo). */
function fakeModule(modinfo: string[]): Buffer {
  const info = Buffer.from(modinfo.map((s) => s + '\0').join(''), 'utf8');
  const shstr = Buffer.from('\0.shstrtab\0.modinfo\0', 'latin1');
  const infoOff = 64;
  const shstrOff = infoOff + info.length;
  let shoff = shstrOff + shstr.length;
  shoff += (8 - (shoff % 8)) % 8;
  const elf = Buffer.alloc(shoff + 3 * 64);
  elf.writeUInt32BE(0x7f454c46, 0);
  elf[4] = 2; elf[5] = 1; elf[6] = 1;
  elf.writeUInt16LE(1, 0x10); // ET_REL
  elf.writeUInt16LE(0x3e, 0x12); // x86-64
  elf.writeBigUInt64LE(BigInt(shoff), 0x28);
  elf.writeUInt16LE(64, 0x34);
  elf.writeUInt16LE(64, 0x3a);
  elf.writeUInt16LE(3, 0x3c);
  elf.writeUInt16LE(1, 0x3e);
  info.copy(elf, infoOff);
  shstr.copy(elf, shstrOff);
  const sec = (i: number, name: number, off: number, size: number) => {
    const o = shoff + i * 64;
    elf.writeUInt32LE(name, o);
    elf.writeUInt32LE(i === 1 ? 3 : 1, o + 4);
    elf.writeBigUInt64LE(BigInt(off), o + 0x18);
    elf.writeBigUInt64LE(BigInt(size), o + 0x20);
  };
  sec(1, 1, shstrOff, shstr.length);
  sec(2, 11, infoOff, info.length);
  return elf;
}

const FAKE_BUSYBOX = Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]), Buffer.alloc(1000, 0x90)]);

let tmp: string;
let busybox: string;
let modDir: string;

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tskvm-initramfs-'));
  busybox = path.join(tmp, 'busybox');
  fs.writeFileSync(busybox, FAKE_BUSYBOX, { mode: 0o755 });
  modDir = path.join(tmp, 'lib/modules/6.1.0-test-amd64');
  const k = path.join(modDir, 'kernel/drivers');
  fs.mkdirSync(path.join(k, 'virtio'), { recursive: true });
  fs.mkdirSync(path.join(k, 'block'), { recursive: true });
  fs.writeFileSync(path.join(k, 'virtio/virtio.ko'), fakeModule(['license=GPL', 'depends=', 'name=virtio']));
  fs.writeFileSync(path.join(k, 'virtio/virtio_ring.ko'), fakeModule(['depends=virtio', 'name=virtio_ring']));
  fs.writeFileSync(path.join(k, 'virtio/virtio_pci.ko'),
    fakeModule(['depends=virtio_pci_modern_dev,virtio_ring,virtio', 'name=virtio_pci']));
  fs.writeFileSync(path.join(k, 'virtio/virtio_pci_modern_dev.ko'), fakeModule(['depends=', 'name=virtio_pci_modern_dev']));
  fs.writeFileSync(path.join(k, 'block/virtio_blk.ko'), fakeModule(['depends=virtio,virtio_ring', 'name=virtio_blk']));
  fs.writeFileSync(path.join(k, 'block/loop1.ko'), fakeModule(['depends=loop2', 'name=loop1']));
  fs.writeFileSync(path.join(k, 'block/loop2.ko'), fakeModule(['depends=loop1', 'name=loop2']));
  fs.writeFileSync(path.join(k, 'block/needs_missing.ko'), fakeModule(['depends=nonexistent', 'name=needs_missing']));
  fs.writeFileSync(path.join(k, 'block/uses_builtin.ko'), fakeModule(['depends=crc32c', 'name=uses_builtin']));
  fs.writeFileSync(path.join(modDir, 'modules.builtin'), 'kernel/lib/crc32c.ko\n');
});

afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

function entries(archive: Buffer) {
  const recs = readCpio(zlib.gunzipSync(archive));
  return new Map(recs.map((r) => [r.name, r]));
}

describe('buildInitramfs', () => {
  it('builds a gzip newc archive with busybox, device nodes and /init', () => {
    const archive = buildInitramfs({ busybox });
    expect(archive[0]).toBe(0x1f);
    expect(archive[1]).toBe(0x8b);
    const e = entries(archive);
    for (const d of ['bin', 'sbin', 'dev', 'proc', 'sys', 'tmp']) {
      expect(e.get(d)!.mode & S_IFMT).toBe(S_IFDIR);
    }
    const bb = e.get('bin/busybox')!;
    expect(bb.mode).toBe(S_IFREG | 0o755);
    expect(bb.data).toEqual(FAKE_BUSYBOX);
    const console = e.get('dev/console')!;
    expect(console.mode & S_IFMT).toBe(S_IFCHR);
    expect([console.rdevMajor, console.rdevMinor]).toEqual([5, 1]);
    expect(e.get('bin/sh')!.mode & S_IFMT).toBe(S_IFLNK);
    expect(e.get('bin/sh')!.data.toString()).toBe('busybox');
    expect(e.get('sbin/poweroff')!.data.toString()).toBe('../bin/busybox');
    // parents precede children
    const names = readCpio(zlib.gunzipSync(archive)).map((r) => r.name);
    expect(names.indexOf('dev')).toBeLessThan(names.indexOf('dev/console'));

    const init = e.get('init')!;
    expect(init.mode).toBe(S_IFREG | 0o755);
    const script = init.data.toString();
    expect(script.startsWith('#!/bin/sh\n')).toBe(true);
    expect(script).toContain('mount -t proc proc /proc');
    expect(script).toContain('mount -t sysfs sysfs /sys');
    expect(script).toContain('mount -t devtmpfs devtmpfs /dev');
    expect(script).toContain(`echo "${INIT_READY_MARKER}"`);
    expect(INIT_READY_MARKER).toBe('tskvm-init: ready');
    expect(script).toContain('setsid cttyhack sh');
    expect(script.trim().split('\n').pop()).toBe('poweroff -f');
    expect(script).not.toContain('insmod');
  });

  it('can write an uncompressed archive, a custom /init and extra files', () => {
    const src = path.join(tmp, 'hostfile');
    fs.writeFileSync(src, 'host data', { mode: 0o755 });
    const archive = buildInitramfs({
      busybox,
      compress: false,
      initScript: '#!/bin/sh\necho custom\n',
      extraFiles: [
        { path: '/etc/motd', data: 'hello\n' },
        { path: '/usr/local/bin/tool', source: src },
      ],
      extraSymlinks: [{ path: '/etc/mtab', target: '/proc/mounts' }],
    });
    const e = new Map(readCpio(archive).map((r) => [r.name, r]));
    expect(e.get('init')!.data.toString()).toBe('#!/bin/sh\necho custom\n');
    expect(e.get('etc/motd')!.data.toString()).toBe('hello\n');
    expect(e.get('etc/motd')!.mode).toBe(S_IFREG | 0o644);
    expect(e.get('usr/local')!.mode & S_IFMT).toBe(S_IFDIR);
    expect(e.get('usr/local/bin/tool')!.mode).toBe(S_IFREG | 0o755);
    expect(e.get('etc/mtab')!.data.toString()).toBe('/proc/mounts');
  });

  it('runs extra init commands and the chosen exit action', () => {
    const e = entries(buildInitramfs({ busybox, initCommands: ['echo hi'], onShellExit: 'reboot' }));
    const script = e.get('init')!.data.toString();
    expect(script.indexOf('echo hi')).toBeLessThan(script.indexOf(INIT_READY_MARKER));
    expect(script.trim().split('\n').pop()).toBe('reboot -f');
  });

  it('reports a missing or non-ELF busybox clearly', () => {
    expect(() => buildInitramfs({ busybox: path.join(tmp, 'nope') })).toThrow(/cannot read busybox binary .*nope.*ENOENT/);
    const txt = path.join(tmp, 'notelf');
    fs.writeFileSync(txt, '#!/bin/sh\n');
    expect(() => buildInitramfs({ busybox: txt })).toThrow(/not an ELF executable/);
  });

  it('includes modules with their dependencies, loaded in dependency order', () => {
    const res = buildInitramfsDetailed({ busybox, modules: { dir: modDir, names: ['virtio-blk', 'virtio_pci'] } });
    expect(res.kernelVersion).toBe('6.1.0-test-amd64');
    const order = res.modules.map((m) => m.name);
    expect(order).toEqual(['virtio', 'virtio_ring', 'virtio_blk', 'virtio_pci_modern_dev', 'virtio_pci']);
    const e = entries(res.archive);
    for (const m of order) {
      expect(e.get(`lib/modules/6.1.0-test-amd64/${m}.ko`)!.data.readUInt32BE(0)).toBe(0x7f454c46);
    }
    const script = e.get('init')!.data.toString();
    const insmods = script.split('\n').filter((l) => l.startsWith('insmod ')).map((l) => l.split(' ')[1]);
    expect(insmods).toEqual(order.map((m) => `/lib/modules/6.1.0-test-amd64/${m}.ko`));
    expect(script.indexOf('insmod')).toBeGreaterThan(script.indexOf('mount -t devtmpfs'));
    expect(script.indexOf('insmod')).toBeLessThan(script.indexOf(INIT_READY_MARKER));
  });

  it('prefers modules.dep when present, skips built-ins, and reports errors', () => {
    expect(resolveModules(modDir, ['uses_builtin']).modules.map((m) => m.name)).toEqual(['uses_builtin']);
    expect(() => resolveModules(modDir, ['loop1'])).toThrow(/cycle: loop1 -> loop2 -> loop1/);
    expect(() => resolveModules(modDir, ['needs_missing'])).toThrow(/nonexistent \(needed by needs_missing\) not found/);
    expect(() => resolveModules(modDir, ['../evil'])).toThrow(/bad module name/);
    expect(() => resolveModules(path.join(tmp, 'nodir'), ['x'])).toThrow(/not readable/);

    const d2 = path.join(tmp, 'dep/lib/modules/9.9');
    fs.mkdirSync(d2, { recursive: true });
    fs.writeFileSync(path.join(d2, 'a.ko'), Buffer.from('not even elf'));
    fs.writeFileSync(path.join(d2, 'b.ko'), Buffer.from('not even elf'));
    fs.writeFileSync(path.join(d2, 'modules.dep'), 'a.ko: b.ko\nb.ko:\n');
    expect(resolveModules(d2, ['a']).modules.map((m) => m.name)).toEqual(['b', 'a']);
  });

  it('decompresses .ko.gz modules on the host', () => {
    const d = path.join(tmp, 'gz/lib/modules/1.0');
    fs.mkdirSync(d, { recursive: true });
    const mod = fakeModule(['depends=', 'name=zipped']);
    fs.writeFileSync(path.join(d, 'zipped.ko.gz'), zlib.gzipSync(mod));
    const e = entries(buildInitramfs({ busybox, modules: { dir: d, names: ['zipped'] } }));
    expect(e.get('lib/modules/1.0/zipped.ko')!.data).toEqual(mod);
  });

  it('readModinfo parses .modinfo strings and rejects non-ELF input', () => {
    const info = readModinfo(fakeModule(['alias=a', 'alias=b', 'depends=x,y']));
    expect(info.get('alias')).toEqual(['a', 'b']);
    expect(info.get('depends')).toEqual(['x,y']);
    expect(() => readModinfo(Buffer.from('hello'))).toThrow(/not a loadable/);
  });

  it('writeInitramfs writes a file and returns a summary', () => {
    const out = path.join(tmp, 'initrd.gz');
    const r = writeInitramfs({ output: out, busybox, modulesDir: modDir, modules: ['virtio_ring'] });
    expect(fs.statSync(out).size).toBe(r.bytes);
    expect(r.modules).toEqual(['virtio', 'virtio_ring']);
    expect(r.summary).toContain('6.1.0-test-amd64');
  });

  const realCache = path.join(__dirname, '..', 'guest-cache');
  const haveReal = fs.existsSync(path.join(realCache, 'modules')) && fs.existsSync(path.join(realCache, 'busybox'));
  (haveReal || process.env.CI ? it : it.skip)('resolves real Debian modules from guest-cache (when present)', () => {
    const r = resolveModules(path.join(realCache, 'modules'), ['virtio_blk', 'virtio_pci']);
    const names = r.modules.map((m) => m.name);
    expect(names).toContain('virtio');
    expect(names).toContain('virtio_ring');
    expect(names.indexOf('virtio_ring')).toBeLessThan(names.indexOf('virtio_blk'));
  });
});

describe('stripModuleSignature', () => {
  const MAGIC = Buffer.from('~Module signature appended~\n');
  /** body, then a fake PKCS#7 blob, struct module_signature (sig_len big-endian at +8) and the magic. */
  function signed(body: Buffer, sigLength: number, declared = sigLength): Buffer {
    const info = Buffer.alloc(12);
    info[2] = 2; // PKEY_ID_PKCS7
    info.writeUInt32BE(declared, 8);
    return Buffer.concat([body, Buffer.alloc(sigLength, 0x30), info, MAGIC]);
  }

  it('removes the signature, its descriptor and the magic, leaving the module as built', () => {
    const body = fakeModule(['name=virtio_blk', 'depends=virtio,virtio_ring']);
    const stripped = stripModuleSignature(signed(body, 681));
    expect(stripped.equals(body)).toBe(true);
    expect(readModinfo(stripped).get('name')).toEqual(['virtio_blk']);
  });

  it('leaves an unsigned module alone', () => {
    const body = fakeModule(['name=plain']);
    expect(stripModuleSignature(body)).toBe(body);
  });

  it('leaves a module whose declared signature length does not fit alone', () => {
    const body = Buffer.from('tiny');
    const lying = signed(body, 8, 0xffffffff);
    expect(stripModuleSignature(lying)).toBe(lying);
    const short = Buffer.concat([Buffer.alloc(4), MAGIC]); // no room for the descriptor
    expect(stripModuleSignature(short)).toBe(short);
  });
});
