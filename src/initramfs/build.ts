/**
 * Builds a small busybox initramfs (gzip-compressed newc cpio) for a Linux guest.
 *
 * Layout of the archive:
 *
 *   /bin/busybox            the static busybox binary (mode 0755)
 *   /bin/<applet>, /sbin/<applet>   symlinks to busybox for common applets;
 *                           /init also runs `busybox --install -s` for the rest
 *   /dev, /proc, /sys, /tmp, /root, /etc, /mnt
 *   /dev/console            char 5:1, so the kernel can open the console for /init
 *                           before devtmpfs is mounted
 *   /lib/modules/<ver>/*.ko optional kernel modules, flat, with dependencies
 *   /init                   the script below (or a caller-supplied one)
 *
 * The default /init mounts proc, sysfs and devtmpfs, loads the modules with
 * `insmod` in dependency order, prints the line `tskvm-init: ready` on the console,
 * then runs an interactive shell on the console (`setsid cttyhack sh`, which gives
 * the shell a controlling tty so job control and ^C work on ttyS0). When the shell
 * exits, /init powers the machine off (`poweroff -f`) or reboots (`reboot -f`).
 *
 * Kernel modules: Debian's 6.1 cloud kernel ships modules uncompressed (.ko,
 * CONFIG_MODULE_COMPRESS_NONE) and its package has no modules.dep (depmod runs at
 * install time). Dependencies are therefore read from each module's ELF `.modinfo`
 * section (`depends=a,b`), or from modules.dep when it exists. Compressed modules
 * (.ko.gz via node:zlib, .ko.xz / .ko.zst via the host's `xz` / `zstd` commands)
 * are decompressed on the host so that busybox `insmod` only ever sees plain .ko.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';

import { CpioWriter } from './cpio';

/** The exact line /init prints when userspace is up. */
export const INIT_READY_MARKER = 'tskvm-init: ready';

/**
 * Applets that get a symlink inside the archive itself. Not `modprobe`: the
 * kernel runs /sbin/modprobe for every module it would like to autoload
 * (crypto algorithms, binfmts, ...). This initramfs has no modules.dep, so
 * each run fails anyway, and on a KVM that emulates guest kernel code each
 * fork+exec costs seconds; without /sbin/modprobe the kernel gives up at
 * once. Modules listed with --modules are loaded by /init with insmod;
 * `busybox modprobe` is still there for users.
 */
export const DEFAULT_APPLETS: readonly string[] = [
  'sh', 'ash', 'cat', 'cp', 'dmesg', 'echo', 'free', 'grep', 'head', 'hexdump', 'insmod', 'ip',
  'kill', 'ln', 'ls', 'lsmod', 'mkdir', 'mknod', 'mount', 'mv', 'ps', 'rm', 'rmmod',
  'sed', 'setsid', 'cttyhack', 'sleep', 'stty', 'sync', 'tail', 'time', 'top', 'umount', 'uname',
  'vi', 'wc', 'dd', 'df', 'du', 'find', 'poweroff', 'reboot', 'halt', 'ifconfig', 'udhcpc',
  'ping', 'wget', 'date', 'env', 'true', 'false', 'test', 'seq', 'md5sum', 'sha256sum', 'mdev',
  'mke2fs', 'blockdev', 'nc', 'cmp', 'od', 'xxd',
];
const SBIN_APPLETS = new Set([
  'insmod', 'rmmod', 'lsmod', 'mdev', 'poweroff', 'reboot', 'halt', 'ifconfig', 'ip',
  'udhcpc', 'mke2fs', 'blockdev',
]);

export interface ExtraFile {
  /** Path inside the guest, e.g. "/etc/motd". Parent directories are created. */
  path: string;
  /** Contents; or give `source`. */
  data?: Uint8Array | string;
  /** Host file to copy; or give `data`. */
  source?: string;
  /** Permission bits, default 0644 (0755 if the host source is executable). */
  mode?: number;
}

export interface ExtraSymlink {
  path: string;
  target: string;
}

export interface InitramfsOptions {
  /** Host path of a static busybox binary. */
  busybox: string;
  /** Kernel modules to include: `dir` is lib/modules/<version>, `names` like "virtio_blk". */
  modules?: { dir: string; names: string[] };
  /**
   * Keep the signatures appended to the modules (default: strip them, see
   * stripModuleSignature).
   */
  keepModuleSignatures?: boolean;
  /** Replaces the generated /init script entirely. */
  initScript?: string;
  /** Shell commands the default /init runs after loading modules, before the marker. */
  initCommands?: string[];
  /** What the default /init does when the interactive shell exits. Default 'poweroff'. */
  onShellExit?: 'poweroff' | 'reboot' | 'halt';
  /** Extra files and symlinks. */
  extraFiles?: ExtraFile[];
  extraSymlinks?: ExtraSymlink[];
  /** Default true: gzip the archive (the kernel's CONFIG_RD_GZIP). */
  compress?: boolean;
}

export interface ResolvedModule {
  /** Module name with '_' (as modinfo spells it). */
  name: string;
  /** Host file. */
  file: string;
  /** Module names it depends on. */
  depends: string[];
}

export interface InitramfsResult {
  archive: Buffer;
  /** Kernel release the modules came from, if any. */
  kernelVersion?: string;
  /** Modules in load order. */
  modules: ResolvedModule[];
}

export class InitramfsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InitramfsError';
  }
}

/** Builds the initramfs and returns the (by default gzip-compressed) archive. */
export function buildInitramfs(opts: InitramfsOptions): Buffer {
  return buildInitramfsDetailed(opts).archive;
}

export function buildInitramfsDetailed(opts: InitramfsOptions): InitramfsResult {
  const busybox = readHostFile(opts.busybox, 'busybox binary');
  if (busybox.length < 4 || busybox.readUInt32BE(0) !== 0x7f454c46) {
    throw new InitramfsError(`${opts.busybox} is not an ELF executable: pass a static busybox (scripts/get-linux-guest.sh leaves one in guest-cache/busybox)`);
  }

  let kernelVersion: string | undefined;
  let modules: ResolvedModule[] = [];
  if (opts.modules && opts.modules.names.length > 0) {
    const r = resolveModules(opts.modules.dir, opts.modules.names);
    kernelVersion = r.kernelVersion;
    modules = r.modules;
  }

  const w = new CpioWriter();
  for (const d of ['bin', 'sbin', 'usr', 'usr/bin', 'usr/sbin', 'dev', 'proc', 'sys', 'tmp', 'root', 'etc', 'mnt', 'run']) {
    w.add({ type: 'dir', path: d, mode: d === 'tmp' ? 0o1777 : d === 'root' ? 0o700 : 0o755 });
  }
  w.add({ type: 'chardev', path: 'dev/console', major: 5, minor: 1, mode: 0o600 });
  w.add({ type: 'chardev', path: 'dev/null', major: 1, minor: 3, mode: 0o666 });
  w.add({ type: 'chardev', path: 'dev/ttyS0', major: 4, minor: 64, mode: 0o600 });
  w.add({ type: 'file', path: 'bin/busybox', data: busybox, mode: 0o755 });
  for (const a of DEFAULT_APPLETS) {
    if (SBIN_APPLETS.has(a)) w.add({ type: 'symlink', path: `sbin/${a}`, target: '../bin/busybox' });
    else w.add({ type: 'symlink', path: `bin/${a}`, target: 'busybox' });
  }

  if (kernelVersion !== undefined) {
    const modDir = `lib/modules/${kernelVersion}`;
    w.mkdirp(modDir);
    for (const m of modules) {
      const data = readModule(m.file);
      w.add({ type: 'file', path: `${modDir}/${m.name}.ko`, data: opts.keepModuleSignatures ? data : stripModuleSignature(data), mode: 0o644 });
    }
  }

  for (const f of opts.extraFiles ?? []) {
    if ((f.data === undefined) === (f.source === undefined)) {
      throw new InitramfsError(`extra file ${f.path}: give exactly one of data or source`);
    }
    let data: Uint8Array | string;
    let mode = f.mode;
    if (f.source !== undefined) {
      data = readHostFile(f.source, `extra file for ${f.path}`);
      if (mode === undefined) mode = fs.statSync(f.source).mode & 0o111 ? 0o755 : 0o644;
    } else data = f.data!;
    ensureParents(w, f.path);
    w.add({ type: 'file', path: f.path, data, mode: mode ?? 0o644 });
  }
  for (const l of opts.extraSymlinks ?? []) {
    ensureParents(w, l.path);
    w.add({ type: 'symlink', path: l.path, target: l.target });
  }

  if (!w.has('init')) {
    const script = opts.initScript ?? defaultInitScript({
      kernelVersion,
      modules: modules.map((m) => m.name),
      commands: opts.initCommands ?? [],
      onShellExit: opts.onShellExit ?? 'poweroff',
    });
    w.add({ type: 'file', path: 'init', data: script, mode: 0o755 });
  }

  const cpio = w.finish();
  const archive = opts.compress === false ? cpio : zlib.gzipSync(cpio, { level: 6 });
  return { archive, kernelVersion, modules };
}

/** The default /init: a POSIX sh script for busybox ash. */
export function defaultInitScript(o: {
  kernelVersion?: string;
  modules: string[];
  commands: string[];
  onShellExit: 'poweroff' | 'reboot' | 'halt';
}): string {
  const lines = [
    '#!/bin/sh',
    '# Generated by tskvm (src/initramfs/build.ts).',
    'export PATH=/sbin:/bin:/usr/sbin:/usr/bin',
    'export HOME=/root',
    'mount -t proc proc /proc',
    'mount -t sysfs sysfs /sys',
    'mount -t devtmpfs devtmpfs /dev || echo "tskvm-init: devtmpfs mount failed" >&2',
    '/bin/busybox --install -s 2>/dev/null',
  ];
  if (o.kernelVersion !== undefined) {
    for (const m of o.modules) {
      lines.push(`insmod /lib/modules/${o.kernelVersion}/${m}.ko || echo "tskvm-init: insmod ${m} failed" >&2`);
    }
  }
  // A console driver loaded above (virtio_console's hvc0, with console=hvc0 on
  // the command line) can become the kernel's preferred console after /init
  // was started on the first one; the last entry of console/active is the
  // one /dev/console means now (Documentation/ABI/testing/sysfs-tty).
  lines.push(
    'active=$(cat /sys/class/tty/console/active 2>/dev/null); active=${active##* }',
    'if [ -n "$active" ] && [ -c "/dev/$active" ]; then exec <"/dev/$active" >"/dev/$active" 2>&1; fi',
  );
  lines.push(...o.commands);
  lines.push(`echo "${INIT_READY_MARKER}"`);
  lines.push('setsid cttyhack sh');
  lines.push(`${o.onShellExit} -f`);
  lines.push('');
  return lines.join('\n');
}

function ensureParents(w: CpioWriter, p: string): void {
  const parts = p.replace(/^\/+/, '').split('/');
  if (parts.length > 1) w.mkdirp(parts.slice(0, -1).join('/'));
}

function readHostFile(file: string, what: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (e) {
    const code = (e as { code?: string }).code;
    throw new InitramfsError(
      `cannot read ${what} ${file} (${code ?? String(e)}): run scripts/get-linux-guest.sh as root or pass the right path`,
    );
  }
}

// ---------------------------------------------------------------------------
// Kernel modules

const MODULE_SUFFIXES = ['.ko', '.ko.xz', '.ko.zst', '.ko.gz'];

/** "virtio-blk" and "virtio_blk" are the same module. */
export function canonicalModuleName(n: string): string {
  return n.replace(/-/g, '_');
}

function moduleNameOfFile(file: string): string | undefined {
  const base = path.basename(file);
  for (const s of MODULE_SUFFIXES) {
    if (base.endsWith(s)) return canonicalModuleName(base.slice(0, -s.length));
  }
  return undefined;
}

function walk(dir: string, out: string[]): void {
  for (const ent of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, ent.name);
    if (ent.isDirectory()) walk(p, out);
    else if (ent.isFile() && moduleNameOfFile(p) !== undefined) out.push(p);
  }
}

/** Reads a module file, decompressing .ko.xz / .ko.zst / .ko.gz on the host. */
export function readModule(file: string): Buffer {
  const raw = readHostFile(file, 'kernel module');
  if (file.endsWith('.ko')) return raw;
  if (file.endsWith('.gz')) return zlib.gunzipSync(raw);
  const tool = file.endsWith('.xz') ? 'xz' : 'zstd';
  try {
    return execFileSync(tool, ['-dc', file], { maxBuffer: 1 << 30, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    throw new InitramfsError(`cannot decompress ${file} with \`${tool} -dc\` (${(e as Error).message}): install ${tool} (apt-get install ${tool === 'xz' ? 'xz-utils' : 'zstd'})`);
  }
}

/** MODULE_SIG_STRING (include/linux/module_signature.h): ends a signed module. */
const MODULE_SIG_MAGIC = Buffer.from('~Module signature appended~\n');
/** struct module_signature: algo, hash, id_type, signer_len, key_id_len, pad[3], __be32 sig_len. */
const MODULE_SIGNATURE_INFO_SIZE = 12;

/**
 * Removes the signature that Debian appends to each module (the module,
 * then the PKCS#7 signature, then struct module_signature with its length,
 * then the magic string; scripts/sign-file.c). Loading a signed module makes
 * the kernel hash it with SHA-256 and check an RSA signature; on the nested
 * KVM of our machines that code runs in KVM's instruction emulator and took
 * tens of seconds per module (soft-lockup reports in crypto_sha256_finup
 * under module_sig_check). An unsigned module loads all the same and taints
 * the kernel ("module verification failed"), because Debian's kernel does not
 * force signatures (CONFIG_MODULE_SIG_FORCE unset, module.sig_enforce=0)
 * unless Secure Boot's lockdown is on, which a tskvm guest never is. A module
 * without the magic, or with a length that does not fit, is left as it is.
 */
export function stripModuleSignature(module: Buffer): Buffer {
  const magicAt = module.length - MODULE_SIG_MAGIC.length;
  if (magicAt < MODULE_SIGNATURE_INFO_SIZE || !module.subarray(magicAt).equals(MODULE_SIG_MAGIC)) return module;
  const infoAt = magicAt - MODULE_SIGNATURE_INFO_SIZE;
  const sigLength = module.readUInt32BE(infoAt + 8);
  if (sigLength > infoAt) return module;
  return module.subarray(0, infoAt - sigLength);
}

/**
 * Reads the NUL-separated key=value strings of a module's ELF `.modinfo` section.
 * Only ELF64 little-endian (x86-64 modules) is supported.
 */
export function readModinfo(elf: Buffer): Map<string, string[]> {
  const bad = (why: string) => new InitramfsError(`not a loadable x86-64 kernel module: ${why}`);
  if (elf.length < 64 || elf.readUInt32BE(0) !== 0x7f454c46) throw bad('no ELF magic');
  if (elf[4] !== 2 || elf[5] !== 1) throw bad('not ELF64 little-endian');
  const shoff = Number(elf.readBigUInt64LE(0x28));
  const shentsize = elf.readUInt16LE(0x3a);
  const shnum = elf.readUInt16LE(0x3c);
  const shstrndx = elf.readUInt16LE(0x3e);
  if (shentsize < 64 || shoff + shnum * shentsize > elf.length || shstrndx >= shnum) throw bad('bad section table');
  const sh = (i: number) => {
    const o = shoff + i * shentsize;
    return {
      name: elf.readUInt32LE(o),
      offset: Number(elf.readBigUInt64LE(o + 0x18)),
      size: Number(elf.readBigUInt64LE(o + 0x20)),
    };
  };
  const strtab = sh(shstrndx);
  if (strtab.offset + strtab.size > elf.length) throw bad('bad section name table');
  const info = new Map<string, string[]>();
  for (let i = 0; i < shnum; i++) {
    const s = sh(i);
    const nameStart = strtab.offset + s.name;
    if (nameStart >= strtab.offset + strtab.size) continue;
    const nameEnd = elf.indexOf(0, nameStart);
    if (elf.toString('latin1', nameStart, nameEnd) !== '.modinfo') continue;
    if (s.offset + s.size > elf.length) throw bad('.modinfo outside the file');
    for (const str of elf.toString('utf8', s.offset, s.offset + s.size).split('\0')) {
      const eq = str.indexOf('=');
      if (eq <= 0) continue;
      const k = str.slice(0, eq);
      const list = info.get(k) ?? [];
      list.push(str.slice(eq + 1));
      info.set(k, list);
    }
    return info;
  }
  throw bad('no .modinfo section');
}

/**
 * Finds the named modules under `dir` (lib/modules/<version>) plus everything they
 * depend on, and returns them in a valid load order (dependencies first).
 * Modules that are built into the kernel (modules.builtin) are skipped.
 */
export function resolveModules(dir: string, names: string[]): { kernelVersion: string; modules: ResolvedModule[] } {
  let real: string;
  try {
    real = fs.realpathSync(dir);
    if (!fs.statSync(real).isDirectory()) throw new Error('not a directory');
  } catch (e) {
    throw new InitramfsError(`module directory ${dir} is not readable (${(e as Error).message}): pass lib/modules/<version>, e.g. guest-cache/modules`);
  }
  const kernelVersion = path.basename(real);

  const files: string[] = [];
  walk(real, files);
  const byName = new Map<string, string>();
  for (const f of files) {
    const n = moduleNameOfFile(f)!;
    if (!byName.has(n)) byName.set(n, f);
  }

  const builtin = new Set<string>();
  const builtinFile = path.join(real, 'modules.builtin');
  if (fs.existsSync(builtinFile)) {
    for (const line of fs.readFileSync(builtinFile, 'utf8').split('\n')) {
      const n = moduleNameOfFile(line.trim());
      if (n) builtin.add(n);
    }
  }

  // modules.dep lines: "kernel/a/b.ko: kernel/c/d.ko kernel/e/f.ko"
  const depFromFile = new Map<string, string[]>();
  const depFile = path.join(real, 'modules.dep');
  if (fs.existsSync(depFile)) {
    for (const line of fs.readFileSync(depFile, 'utf8').split('\n')) {
      const colon = line.indexOf(':');
      if (colon < 0) continue;
      const n = moduleNameOfFile(line.slice(0, colon).trim());
      if (!n) continue;
      const deps = line.slice(colon + 1).trim().split(/\s+/).filter(Boolean)
        .map((d) => moduleNameOfFile(d)).filter((d): d is string => !!d);
      depFromFile.set(n, deps);
    }
  }

  const dependsOf = (n: string, file: string): string[] => {
    const fromDep = depFromFile.get(n);
    if (fromDep) return fromDep;
    const dep = readModinfo(readModule(file)).get('depends')?.[0] ?? '';
    return dep.split(',').map((s) => s.trim()).filter(Boolean).map(canonicalModuleName);
  };

  const order: ResolvedModule[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (n: string, chain: string[]): void => {
    const st = state.get(n);
    if (st === 'done') return;
    if (st === 'visiting') throw new InitramfsError(`module dependency cycle: ${[...chain, n].join(' -> ')}`);
    if (builtin.has(n) && !byName.has(n)) {
      state.set(n, 'done');
      return;
    }
    const file = byName.get(n);
    if (!file) {
      const via = chain.length ? ` (needed by ${chain[chain.length - 1]})` : '';
      throw new InitramfsError(`kernel module ${n}${via} not found under ${real}`);
    }
    state.set(n, 'visiting');
    const depends = dependsOf(n, file);
    for (const d of depends) visit(d, [...chain, n]);
    state.set(n, 'done');
    order.push({ name: n, file, depends });
  };
  for (const raw of names) {
    if (typeof raw !== 'string' || !/^[A-Za-z0-9_-]+$/.test(raw)) {
      throw new InitramfsError(`bad module name ${JSON.stringify(raw)}: use names like virtio_blk`);
    }
    visit(canonicalModuleName(raw), []);
  }
  return { kernelVersion, modules: order };
}

// ---------------------------------------------------------------------------
// CLI helper

/** Paths that scripts/get-linux-guest.sh leaves in a guest cache directory. */
export function guestCachePaths(cacheDir: string): { vmlinuz: string; busybox: string; modules: string; kernelVersionFile: string } {
  return {
    vmlinuz: path.join(cacheDir, 'vmlinuz'),
    busybox: path.join(cacheDir, 'busybox'),
    modules: path.join(cacheDir, 'modules'),
    kernelVersionFile: path.join(cacheDir, 'kernel-version'),
  };
}

/**
 * For the `tskvm initramfs` subcommand: builds an initramfs and writes it to
 * `output`. `busybox` defaults to <cache>/busybox and the module dir to
 * <cache>/modules. Returns a one-line summary for printing.
 */
export function writeInitramfs(o: {
  output: string;
  cache?: string;
  busybox?: string;
  modulesDir?: string;
  modules?: string[];
  initScript?: string;
  initCommands?: string[];
  onShellExit?: 'poweroff' | 'reboot' | 'halt';
  compress?: boolean;
  extraFiles?: ExtraFile[];
}): { output: string; bytes: number; kernelVersion?: string; modules: string[]; summary: string } {
  const cache = o.cache ?? 'guest-cache';
  const paths = guestCachePaths(cache);
  const res = buildInitramfsDetailed({
    busybox: o.busybox ?? paths.busybox,
    modules: o.modules && o.modules.length ? { dir: o.modulesDir ?? paths.modules, names: o.modules } : undefined,
    initScript: o.initScript,
    initCommands: o.initCommands,
    onShellExit: o.onShellExit,
    compress: o.compress,
    extraFiles: o.extraFiles,
  });
  try {
    fs.writeFileSync(o.output, res.archive);
  } catch (e) {
    throw new InitramfsError(`cannot write ${o.output} (${(e as { code?: string }).code ?? String(e)}): choose a writable path`);
  }
  const mods = res.modules.map((m) => m.name);
  const summary =
    `wrote ${o.output} (${res.archive.length} bytes${o.compress === false ? '' : ', gzip'})` +
    (mods.length ? `, modules for ${res.kernelVersion}: ${mods.join(' ')}` : '');
  return { output: o.output, bytes: res.archive.length, kernelVersion: res.kernelVersion, modules: mods, summary };
}
