// Text output of the management verbs (`tskvm list`, `tskvm info <name>`),
// from the daemon's JSON results. `--json` prints the results as they are.
import { formatCountTable } from '../vmm/exit-stats';
import type { StopInfo, VmInfo, VmSummary } from '../daemon/protocol';

/** "4.2s", "3m 05s", "2h 01m". */
export function formatUptime(seconds: number | null): string {
  if (seconds === null) return '-';
  if (seconds < 60) return `${seconds.toFixed(1)}s`;
  const s = Math.floor(seconds);
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h ${String(Math.floor(s / 60) % 60).padStart(2, '0')}m`;
}

/** "poweroff: ACPI S5 (the guest powered off)", "halt: hlt". */
export function formatStop(stop: StopInfo): string {
  return `${stop.kind}: ${stop.reason}`;
}

function describeState(vm: VmSummary): string {
  return vm.state === 'stopped' && vm.stop ? `stopped (${formatStop(vm.stop)})` : vm.state;
}

/** A table with a header row; columns as wide as their widest cell. */
function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')).join('\n');
}

export function formatVmList(vms: VmSummary[]): string {
  const rows = [['NAME', 'STATE', 'UPTIME', 'PLATFORM', 'MEMORY']];
  for (const vm of vms) rows.push([vm.name, describeState(vm), formatUptime(vm.uptimeSeconds), vm.platform, vm.memory]);
  return table(rows).replace(/ +$/gm, '');
}

const hex = (n: number): string => '0x' + n.toString(16);

export function formatVmInfo(info: VmInfo): string {
  const boot =
    info.boot.kind === 'binary'
      ? `binary ${info.boot.file} (${info.boot.mode} mode, load ${hex(info.boot.load)}, entry ${hex(info.boot.entry)})`
      : `linux ${info.boot.kernel}${info.boot.initrd ? ` + ${info.boot.initrd}` : ''}${info.boot.cmdline ? ` "${info.boot.cmdline}"` : ''}`;
  const fields: [string, string][] = [
    ['Name', info.name],
    ['State', describeState(info)],
    ['Uptime', formatUptime(info.uptimeSeconds)],
    ['Platform', info.platform],
    ['Memory', info.memory],
    ['Boot', boot],
    ['Console', `${info.consoles} attached, ${info.outputBytes} bytes of output so far`],
  ];
  const s = info.statistics;
  if (s?.vcpu) fields.push(['vCPU 0', `RIP ${s.vcpu.rip}, CPL ${s.vcpu.cpl}, ${s.vcpu.mode}`]);
  if (s) fields.push(['Exits', String(s.total)]);
  if (s && s.consoleDropped > 0) fields.push(['Dropped', `${s.consoleDropped} console bytes nobody read`]);
  const lines = fields.map(([k, v]) => `${(k + ':').padEnd(10)} ${v}`);
  if (info.stop?.report) lines.push('', info.stop.report);
  if (s) {
    lines.push('', formatCountTable('exit reason', s.exits), '', formatCountTable('device', s.devices));
    const workarounds = Object.entries(s.workarounds).filter(([, n]) => n > 0);
    if (workarounds.length > 0) lines.push('', formatCountTable('workaround', Object.fromEntries(workarounds)));
  }
  return lines.join('\n');
}
