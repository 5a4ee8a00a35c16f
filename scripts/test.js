#!/usr/bin/env node
// The README's test command (`npm test`). Runs jest over test/ and prints a
// plain "N passed, N failed" line that CI reads. Under CI=true a missing or
// unusable /dev/kvm fails the run instead of letting KVM tests be skipped.
'use strict';
const { spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const root = path.join(__dirname, '..');
if (process.env.CI === 'true' || process.env.CI === '1') {
  try {
    fs.accessSync('/dev/kvm', fs.constants.R_OK | fs.constants.W_OK);
  } catch (err) {
    console.error(`/dev/kvm is not usable in CI (${err.code}): KVM tests cannot run, failing the run.`);
    console.log('0 passed, 1 failed');
    process.exit(1);
  }
}

const resultsFile = path.join(require('os').tmpdir(), `tskvm-jest-${process.pid}.json`);
const jestBin = require.resolve('jest/bin/jest');
const args = [jestBin, '--json', `--outputFile=${resultsFile}`, ...process.argv.slice(2)];
const run = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });

let passed = 0;
let failed = 0;
let skipped = 0;
try {
  const results = JSON.parse(fs.readFileSync(resultsFile, 'utf8'));
  passed = results.numPassedTests;
  failed = results.numFailedTests + (results.numRuntimeErrorTestSuites || 0);
  skipped = results.numPendingTests + (results.numTodoTests || 0);
  fs.unlinkSync(resultsFile);
} catch {
  failed = Math.max(failed, 1);
}
const status = run.status === 0 && failed === 0 ? 0 : 1;
if (status !== 0 && failed === 0) failed = 1;
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(status);
