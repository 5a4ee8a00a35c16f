import * as fs from 'fs';
import * as path from 'path';

export const ROOT = path.join(__dirname, '..', '..');
export const CLI = path.join(ROOT, 'bin', 'tskvm.js');

/** Path of a built example guest; fails clearly if `npm install` did not build it. */
export function exampleGuest(name: string): string {
  const file = path.join(ROOT, 'examples', name, 'guest.bin');
  if (!fs.existsSync(file)) throw new Error(`${file} is missing: run \`npm run build:examples\` (npm install does it)`);
  return file;
}

/** The Debian guest fetched by scripts/get-linux-guest.sh (.ci/run runs it). */
export function linuxGuest(): { kernel: string; busybox: string; modules: string; kernelVersion: string; cache: string } {
  const cache = process.env.GUEST_CACHE ?? path.join(ROOT, 'guest-cache');
  const kernel = path.join(cache, 'vmlinuz');
  const versionFile = path.join(cache, 'kernel-version');
  if (!fs.existsSync(kernel) || !fs.existsSync(versionFile))
    throw new Error(`no Linux guest in ${cache}: run scripts/get-linux-guest.sh (as root) first`);
  return {
    kernel,
    busybox: path.join(cache, 'busybox'),
    modules: path.join(cache, 'modules'),
    kernelVersion: fs.readFileSync(versionFile, 'utf8').trim(),
    cache,
  };
}
