// The files the web console page is made of, keyed by URL path.
//
// Everything is served from this machine — the page, its script and style,
// and xterm.js from node_modules — because the VMM host may have no internet
// access, and a console that loads code from a CDN would run someone else's
// script with the power to type into the guest.
//
// The page's own files are plain static files in src/web (not TypeScript:
// they run in the browser, and the project's tsconfig has no DOM types). The
// compiled server lives in dist/src/web, where tsc copies no static files, so
// we look next to this module first and then in the source tree.
import * as fs from 'fs';
import * as path from 'path';

export interface StaticAsset {
  contentType: string;
  body: Buffer;
}

const PAGE_FILES: ReadonlyArray<[urlPath: string, file: string, contentType: string]> = [
  ['/', 'page.html', 'text/html; charset=utf-8'],
  ['/page.js', 'page.js', 'text/javascript; charset=utf-8'],
  ['/page.css', 'page.css', 'text/css; charset=utf-8'],
];

const XTERM_FILES: ReadonlyArray<[urlPath: string, module: string, contentType: string]> = [
  ['/xterm/xterm.js', '@xterm/xterm/lib/xterm.js', 'text/javascript; charset=utf-8'],
  ['/xterm/xterm.css', '@xterm/xterm/css/xterm.css', 'text/css; charset=utf-8'],
];

function pageDirectory(): string {
  const candidates = [__dirname, path.resolve(__dirname, '../../../src/web')];
  const found = candidates.find((dir) => fs.existsSync(path.join(dir, 'page.html')));
  if (!found) throw new Error(`the web console page is missing (looked for page.html in ${candidates.join(' and ')})`);
  return found;
}

function resolveModule(specifier: string): string {
  try {
    return require.resolve(specifier);
  } catch {
    throw new Error(`${specifier} is not installed: run npm install (the web console serves xterm.js from node_modules)`);
  }
}

/**
 * Reads every asset once, at start: a missing file is reported before the
 * URL is printed, and requests never touch the file system (so no request
 * path can name a file we did not list).
 */
export function loadStaticAssets(): Map<string, StaticAsset> {
  const assets = new Map<string, StaticAsset>();
  const dir = pageDirectory();
  for (const [urlPath, file, contentType] of PAGE_FILES) assets.set(urlPath, { contentType, body: fs.readFileSync(path.join(dir, file)) });
  for (const [urlPath, module, contentType] of XTERM_FILES) assets.set(urlPath, { contentType, body: fs.readFileSync(resolveModule(module)) });
  return assets;
}
