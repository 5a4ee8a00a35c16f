#!/usr/bin/env node
// Long fuzz campaign over the property harness in test/fuzz/ (issue 6).
//
//   npm run fuzz                   100000 iterations per property, every target
//   npm run fuzz -- 20000          20000 per property
//   npm run fuzz -- 5000 virtio-blk pci-config
//
// Each target (test/fuzz/<target>.test.ts) runs in its own jest process with
// FUZZ_RUNS set; the harness (test/fuzz/fuzz-support.ts) appends one line per
// property to a report file, which this script sums up per target. A failure
// prints fast-check's counterexample and seed (replay with FUZZ_SEED=<seed>
// FUZZ_RUNS=<n> npx jest test/fuzz/<target>). Exit status 1 if any target failed.
'use strict';
const { spawnSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const root = path.join(__dirname, '..');
const TARGETS = ['split-queue', 'virtio-blk', 'virtio-net', 'pci-config', 'serial-8250', 'linux-loader'];

const args = process.argv.slice(2);
let runs = 100000;
if (args.length > 0 && /^\d+$/.test(args[0])) runs = Number(args.shift());
const targets = args.length > 0 ? args : TARGETS;
for (const t of targets) {
  if (!TARGETS.includes(t)) {
    console.error(`unknown fuzz target ${t}; known: ${TARGETS.join(', ')}`);
    process.exit(2);
  }
}

const jestBin = require.resolve('jest/bin/jest');
const rows = [];
let failed = false;
for (const target of targets) {
  const report = path.join(os.tmpdir(), `tskvm-fuzz-${process.pid}-${target}.jsonl`);
  fs.rmSync(report, { force: true });
  const started = Date.now();
  console.log(`\n== ${target}: ${runs} iterations per property`);
  const run = spawnSync(
    process.execPath,
    [jestBin, '--runInBand', '--testTimeout=86400000', `test/fuzz/${target}.test.ts`],
    { cwd: root, stdio: 'inherit', env: { ...process.env, FUZZ_RUNS: String(runs), FUZZ_REPORT: report } },
  );
  const seconds = (Date.now() - started) / 1000;
  let lines = [];
  try {
    lines = fs.readFileSync(report, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
    fs.rmSync(report, { force: true });
  } catch {
    // No report: jest failed before any property ran.
  }
  const iterations = lines.reduce((n, l) => n + l.runs, 0);
  const ok = run.status === 0 && lines.length > 0 && lines.every((l) => !l.failed);
  if (!ok) failed = true;
  rows.push({ target, properties: lines.length, iterations, result: ok ? 'pass' : 'FAIL', seconds: seconds.toFixed(0) });
}

console.log('\ntarget        properties  iterations  result  seconds');
for (const r of rows)
  console.log(`${r.target.padEnd(14)}${String(r.properties).padStart(10)}${String(r.iterations).padStart(12)}  ${r.result.padEnd(6)}${r.seconds.padStart(9)}`);
process.exit(failed ? 1 : 0);
