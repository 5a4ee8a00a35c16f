// Counting what the guest made the VMM do: exits by reason, accesses by device.
import type { VcpuExit } from '../kvm/structs/run';

export class ExitStats {
  readonly byReason = new Map<string, number>();
  total = 0;
  readonly startedAt = process.hrtime.bigint();

  count(exit: VcpuExit): void {
    this.total++;
    const key = exit.reason === 'io' ? `io-${exit.direction}` : exit.reason === 'mmio' ? (exit.isWrite ? 'mmio-write' : 'mmio-read') : exit.reason;
    this.byReason.set(key, (this.byReason.get(key) ?? 0) + 1);
  }

  toJSON(): { total: number; byReason: Record<string, number> } {
    return { total: this.total, byReason: Object.fromEntries(this.byReason) };
  }
}

/** A plain-text table: one row per key, counts right-aligned, sorted by count. */
export function formatCountTable(title: string, counts: Map<string, number> | Record<string, number>): string {
  const rows = (counts instanceof Map ? [...counts] : Object.entries(counts)).sort((a, b) => b[1] - a[1]);
  const width = Math.max(title.length, ...rows.map(([k]) => k.length));
  const total = rows.reduce((s, [, n]) => s + n, 0);
  const lines = [`${title.padEnd(width)}  ${'count'.padStart(10)}`];
  for (const [k, n] of rows) lines.push(`${k.padEnd(width)}  ${String(n).padStart(10)}`);
  lines.push(`${'total'.padEnd(width)}  ${String(total).padStart(10)}`);
  return lines.join('\n');
}
