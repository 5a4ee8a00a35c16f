// Which HTTP requests and websocket upgrades the web console answers.
//
// The console types into the guest, so two browser attacks matter even on
// 127.0.0.1:
//   - Cross-site websocket hijacking: any page the user visits may open
//     ws://127.0.0.1:PORT; browsers do not apply the same-origin policy to
//     websockets, they only send an Origin header. We accept an upgrade only
//     when the Origin is our own page's origin (or absent: not a browser,
//     which could connect anyway).
//   - DNS rebinding: evil.example resolving to 127.0.0.1 makes the page
//     same-origin with itself, but its requests carry "Host: evil.example".
//     We answer only Host names that mean the address we are bound to.
// When bound to a wildcard address (0.0.0.0, ::) we cannot know every name
// the machine has, so the Host check is skipped; the README says so.
import { urlHost, type ListenAddress } from './listen-address';

const WILDCARD_HOSTS = new Set(['0.0.0.0', '::', '']);
const LOOPBACK_NAMES = new Set(['localhost', '127.0.0.1', '::1']);

function isLoopback(host: string): boolean {
  return LOOPBACK_NAMES.has(host) || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** Splits a Host header ("a:1", "[::1]:8080") into name and port; undefined if malformed. */
export function splitHostHeader(header: string): { name: string; port: number | undefined } | undefined {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+))(?::(\d{1,5}))?$/.exec(header.trim());
  if (!m) return undefined;
  return { name: (m[1] ?? m[2]!).toLowerCase(), port: m[3] === undefined ? undefined : Number(m[3]) };
}

/** Whether a request's Host header names the address this server is bound to. */
export function isAllowedHost(header: string | undefined, bound: ListenAddress): boolean {
  if (header === undefined) return false;
  const host = splitHostHeader(header);
  // Browsers omit the port only for 80; we never assume it.
  if (!host || host.port !== bound.port) return false;
  const boundHost = bound.host.toLowerCase();
  if (WILDCARD_HOSTS.has(boundHost)) return true;
  if (host.name === boundHost) return true;
  return isLoopback(boundHost) && isLoopback(host.name);
}

/** Whether a websocket upgrade's Origin is our own page (or missing: not from a browser). */
export function isAllowedOrigin(origin: string | undefined, hostHeader: string | undefined): boolean {
  if (origin === undefined) return true;
  if (hostHeader === undefined) return false;
  const host = splitHostHeader(hostHeader);
  if (!host) return false;
  return origin.toLowerCase() === `http://${urlHost(host.name)}${host.port === undefined ? '' : `:${host.port}`}`;
}
