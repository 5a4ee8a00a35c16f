// Where a worker_thread's script is. Under ts-node/jest the modules are
// TypeScript (src/), but a worker needs JavaScript: use the build in dist/
// (`npm run build`, run by `npm install` and `npm test`).
import * as fs from 'fs';
import * as path from 'path';

/** The compiled `<name>.js` beside this module, else in dist/src/vmm/; undefined if neither exists. */
export function findWorkerScript(name: string): { path?: string; looked: string[] } {
  const here = path.join(__dirname, `${name}.js`);
  const built = path.resolve(__dirname, `../../dist/src/vmm/${name}.js`);
  for (const candidate of [here, built]) if (fs.existsSync(candidate)) return { path: candidate, looked: [here, built] };
  return { looked: [here, built] };
}
