// Size strings for memory options: "64M", "2G", "512K", "4096" (bytes).

const UNITS: Record<string, number> = { '': 1, B: 1, K: 1024, KB: 1024, KIB: 1024, M: 1024 ** 2, MB: 1024 ** 2, MIB: 1024 ** 2, G: 1024 ** 3, GB: 1024 ** 3, GIB: 1024 ** 3 };

export function parseSize(value: number | string): number {
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`invalid size: ${value}`);
    return value;
  }
  const m = /^\s*(\d+)\s*([a-zA-Z]*)\s*$/.exec(value);
  const unit = m ? UNITS[m[2].toUpperCase()] : undefined;
  if (!m || unit === undefined) throw new RangeError(`invalid size "${value}": use a number with an optional K, M or G suffix`);
  const bytes = Number(m[1]) * unit;
  if (!Number.isSafeInteger(bytes)) throw new RangeError(`size "${value}" is too large`);
  return bytes;
}

/** Parses a number that may be written in hex (0x...) or decimal. */
export function parseAddress(value: string): number {
  const s = value.trim();
  const n = /^0x[0-9a-f]+$/i.test(s) ? parseInt(s, 16) : /^\d+$/.test(s) ? parseInt(s, 10) : NaN;
  if (!Number.isSafeInteger(n)) throw new RangeError(`invalid address "${value}": use decimal or 0x-prefixed hex`);
  return n;
}
