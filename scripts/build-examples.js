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
const benchGuest = path.join(root, 'bench', 'exits', 'guest.S');
if (fs.existsSync(benchGuest)) guestSources.push(benchGuest);

const cLoopSrc = path.join(root, 'bench', 'exits', 'c-loop.c');
const cLoopOut = path.join(root, 'bench', 'exits', 'c-loop');
const needCLoop = fs.existsSync(cLoopSrc);

// --- check tools only for what is actually needed ---------------------------

const missing = [];
if (guestSources.length > 0) {
  if (!findTool('as')) missing.push('as');
  if (!findTool('ld')) missing.push('ld');
}
if (needCLoop && !findTool('gcc')) missing.push('gcc');
if (missing.length > 0) {
  fail(`${missing.join(', ')} not found: install binutils/gcc (apt-get install binutils gcc)`);
}

// --- build -----------------------------------------------------------------

for (const src of guestSources) {
  const dir = path.dirname(src);
  const obj = path.join(dir, 'guest.o');
  const bin = path.join(dir, 'guest.bin');
  if (upToDate(bin, [src])) {
    console.log(`up to date  ${rel(bin)}`);
    continue;
  }
  run('as', ['--64', '-o', obj, src]);
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
