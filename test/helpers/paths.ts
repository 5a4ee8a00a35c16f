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
