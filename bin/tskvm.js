#!/usr/bin/env node
'use strict';
// Entry point of the `tskvm` command; the CLI itself is src/cli/main.ts.
const path = require('path');
let main;
try {
  main = require(path.join(__dirname, '..', 'dist', 'src', 'cli', 'main.js')).main;
} catch (err) {
  if (err && err.code === 'MODULE_NOT_FOUND') {
    console.error('tskvm: the TypeScript build is missing (dist/): run `npm install` (or `npm run build`) in the tskvm package.');
    process.exit(1);
  }
  throw err;
}
main(process.argv).then((code) => process.exit(code));
