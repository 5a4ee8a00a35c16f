// The `--web HOST:PORT` value: where the web console listens.
//
// The host is required, not defaulted to every interface: the page can type
// into the guest's console, so exposing it beyond this machine must be a
// choice the user writes down (`--web 0.0.0.0:8080`). IPv6 hosts are written
// in brackets as in URLs (`[::1]:8080`). Port 0 asks the kernel for a free
// port; the console prints the one it got.

export interface ListenAddress {
  /** As given, without brackets: "127.0.0.1", "localhost", "::1". */
  host: string;
  /** 0 to 65535; 0 means "any free port". */
  port: number;
}

export function parseListenAddress(value: string): ListenAddress {
  const text = value.trim();
  const bracketed = /^\[([0-9a-fA-F:.]+)\]:(\d+)$/.exec(text);
  const plain = /^([A-Za-z0-9.-]+):(\d+)$/.exec(text);
  const match = bracketed ?? plain;
  if (!match) throw new RangeError(`invalid address "${value}": use HOST:PORT, e.g. 127.0.0.1:8080 or [::1]:8080`);
  const port = Number(match[2]);
  if (!Number.isInteger(port) || port > 65535) throw new RangeError(`invalid port in "${value}": use 0 to 65535`);
  return { host: match[1]!, port };
}

/** The host as it appears in a URL: IPv6 literals need brackets. */
export function urlHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}
