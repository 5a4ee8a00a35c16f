#!/usr/bin/env node
'use strict';
// The VMM process the durability test kills (test/hostile/blk-host-faults.test.ts):
//   node blk-durability-child.js GUEST.bin IMAGE COUNT
// runs the blk-faults guest in mode 3 on a 'pc' machine with IMAGE as its
// virtio-blk disk, and copies the guest's debug-console lines to stdout as
// they come (a synchronous write: stdout is a pipe). It uses the compiled
// library in dist/ (`npx tsc -p .`), because `tskvm run-binary` has no --disk.
const fs = require('fs');
const path = require('path');
const { SyncMachine } = require(path.join(__dirname, '..', '..', 'dist', 'src', 'vmm', 'sync-machine.js'));

const [guest, image, count] = process.argv.slice(2);
const machine = SyncMachine.create({ memory: '8M', platform: 'pc', disks: [{ path: image }] });
machine.on('output', (data) => fs.writeSync(1, data));
machine.on('log', (message) => fs.writeSync(2, `${message}\n`));
machine.loadBinary(fs.readFileSync(guest), 0x8000);
machine.memory.writeU32(0x7f00, 3); // HOST_MODE_ADDR: durability, write then keep writing
machine.memory.writeU32(0x7f04, Number(count));
machine.setMode('long', { entry: 0x8000 });
const stop = machine.runSync();
machine.close();
fs.writeSync(2, `stopped: ${stop.kind} ${stop.reason}\n`);
