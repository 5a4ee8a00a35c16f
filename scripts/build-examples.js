#!/usr/bin/env node
'use strict';
// Builds the example guests and the exit-benchmark baseline.
//
//   examples/*/guest.S, bench/exits/guest.S  -> guest.bin next to the source
//                                              (flat binary linked at 0x8000)
//   bench/exits/c-loop.c                     -> bench/exits/c-loop
//
// Uses the system binutils (as, ld) and gcc; no npm dependencies. A file is
// rebuilt only when its source is newer than its output.

const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');

const root = path.resolve(__dirname, '..');

function rel(p) {
  return path.relative(root, p) || '.';
}

function findTool(name) {
  const dirs = (process.env.PATH || '').split(path.delimiter).filter(Boolean);
  for (const dir of dirs) {
    const candidate = path.join(dir, name);
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      if (fs.statSync(candidate).isFile()) return candidate;
    } catch {
      // not here
    }
  }
  return null;
}

function fail(message) {
  console.error(`build-examples: ${message}`);
  process.exit(1);
}

function run(cmd, args) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.error) fail(`could not run ${cmd}: ${r.error.message}`);
  if (r.status !== 0) {
    fail(`command failed (exit ${r.status === null ? r.signal : r.status}): ${cmd} ${args.join(' ')}`);
  }
}

function mtime(p) {
  try {
    return fs.statSync(p).mtimeMs;
  } catch {
    return -1;
  }
}

function upToDate(output, sources) {
  const out = mtime(output);
  return out >= 0 && sources.every((s) => mtime(s) <= out);
}

// --- collect work ----------------------------------------------------------

const guestSources = [];
const examplesDir = path.join(root, 'examples');
if (fs.existsSync(examplesDir)) {
  for (const entry of fs.readdirSync(examplesDir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    if (!entry.isDirectory()) continue;
    const src = path.join(examplesDir, entry.name, 'guest.S');
    if (fs.existsSync(src)) guestSources.push(src);
  }
}
// Hostile-guest attack programs (issue 6): every test/hostile/guests/NAME.S
// becomes NAME.bin beside it, linked at 0x8000 like the examples.
const hostileDir = path.join(root, 'test', 'hostile', 'guests');
const hostileSources = fs.existsSync(hostileDir)
  ? fs.readdirSync(hostileDir).filter((f) => f.endsWith('.S')).sort().map((f) => path.join(hostileDir, f))
  : [];
// ... and every test/hostile/guests/NAME.c, a freestanding C guest (the
// virtio attack programs): compiled for 64-bit long mode without SSE, red zone,
// PIC, stack protector, CET or unwind tables (KVM's instruction emulator runs
// guest CPL0 code here, DESIGN.md), kept in source order so that the `_start`
// the file opens with (top-level asm) lands at 0x8000, and linked like the
// assembly guests. Headers (*.h) in that directory are shared by the C guests
// and count as their sources for rebuilds.
const hostileCSources = fs.existsSync(hostileDir)
  ? fs.readdirSync(hostileDir).filter((f) => f.endsWith('.c')).sort().map((f) => path.join(hostileDir, f))
  : [];
// Shared assembly (*.inc) that the .S guests .include: a change rebuilds them.
const hostileIncludes = fs.existsSync(hostileDir)
  ? fs.readdirSync(hostileDir).filter((f) => f.endsWith('.inc')).map((f) => path.join(hostileDir, f))
  : [];
const hostileHeaders = fs.existsSync(hostileDir)
  ? fs.readdirSync(hostileDir).filter((f) => f.endsWith('.h')).map((f) => path.join(hostileDir, f))
  : [];
const GUEST_CFLAGS = [
  '-ffreestanding', '-nostdlib', '-mno-red-zone', '-mgeneral-regs-only', '-fno-pic', '-fno-pie',
  '-fno-stack-protector', '-fcf-protection=none', '-fno-asynchronous-unwind-tables',
  '-fno-toplevel-reorder', '-fno-reorder-functions', '-O2', '-Wall', '-Wextra',
];
const benchGuest = path.join(root, 'bench', 'exits', 'guest.S');
if (fs.existsSync(benchGuest)) guestSources.push(benchGuest);

const cLoopSrc = path.join(root, 'bench', 'exits', 'c-loop.c');
const cLoopOut = path.join(root, 'bench', 'exits', 'c-loop');
const needCLoop = fs.existsSync(cLoopSrc);

// --- check tools only for what is actually needed ---------------------------

const missing = [];
if (guestSources.length + hostileSources.length > 0) {
  if (!findTool('as')) missing.push('as');
  if (!findTool('ld')) missing.push('ld');
}
if ((needCLoop || hostileCSources.length > 0) && !findTool('gcc')) missing.push('gcc');
if (missing.length > 0) {
  fail(`${missing.join(', ')} not found: install binutils/gcc (apt-get install binutils gcc)`);
}

// --- build -----------------------------------------------------------------

const flatBinaries = [
  ...guestSources.map((src) => ({ src, obj: path.join(path.dirname(src), 'guest.o'), bin: path.join(path.dirname(src), 'guest.bin') })),
  ...hostileSources.map((src) => ({ src, obj: src.replace(/\.S$/, '.o'), bin: src.replace(/\.S$/, '.bin'), deps: hostileIncludes })),
];
for (const { src, obj, bin, deps = [] } of flatBinaries) {
  if (upToDate(bin, [src, ...deps])) {
    console.log(`up to date  ${rel(bin)}`);
    continue;
  }
  run('as', ['--64', '-I', path.dirname(src), '-o', obj, src]); // -I: a guest may .include a shared file beside it
  run('ld', ['-m', 'elf_x86_64', '-N', '-Ttext=0x8000', '--oformat=binary', '-e', '_start', '-o', bin, obj]);
  console.log(`built       ${rel(bin)} (${fs.statSync(bin).size} bytes)`);
}

for (const src of hostileCSources) {
  const obj = src.replace(/\.c$/, '.o');
  const bin = src.replace(/\.c$/, '.bin');
  if (upToDate(bin, [src, ...hostileHeaders])) {
    console.log(`up to date  ${rel(bin)}`);
    continue;
  }
  run('gcc', [...GUEST_CFLAGS, '-c', '-o', obj, src]);
  run('ld', ['-m', 'elf_x86_64', '-N', '-Ttext=0x8000', '--oformat=binary', '-e', '_start', '-o', bin, obj]);
  console.log(`built       ${rel(bin)} (${fs.statSync(bin).size} bytes)`);
}

if (needCLoop) {
  if (upToDate(cLoopOut, [cLoopSrc])) {
    console.log(`up to date  ${rel(cLoopOut)}`);
  } else {
    run('gcc', ['-O2', '-Wall', '-o', cLoopOut, cLoopSrc]);
    console.log(`built       ${rel(cLoopOut)}`);
  }
}
