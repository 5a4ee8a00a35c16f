// `--gdb HOST:PORT` for `tskvm run-binary` and `tskvm run`: the VM is created
// with the debugger enabled and its vCPU stopped before the first
// instruction (like QEMU's `-s -S`), and a gdb stub listens on HOST:PORT
// (src/gdb/gdb-stub.ts). Port 0 picks a free port; the line on stderr says which.
import { InvalidArgumentError } from 'commander';
import { GdbStub } from '../gdb/gdb-stub';
import { MachineStartError, type Machine } from '../vmm/machine';

export interface GdbAddress {
  host: string;
  port: number;
}

/** Parses HOST:PORT (or :PORT, meaning 127.0.0.1) for commander. */
export function gdbAddressOption(value: string): GdbAddress {
  const colon = value.lastIndexOf(':');
  const host = colon > 0 ? value.slice(0, colon).replace(/^\[(.*)\]$/, '$1') : '127.0.0.1';
  const portText = colon >= 0 ? value.slice(colon + 1) : value;
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port > 65535) throw new InvalidArgumentError('expected HOST:PORT, e.g. 127.0.0.1:1234');
  return { host, port };
}

/**
 * Listens for gdb for a machine created with `debug: { waitForDebugger: true }`
 * (before it starts: a busy port is reported before the guest is created).
 * Throws one sentence if it cannot listen.
 */
export async function listenForGdb(machine: Machine, address: GdbAddress, log: (line: string) => void): Promise<GdbStub> {
  try {
    return await GdbStub.listen(machine, { ...address, log: (line) => log(`tskvm: ${line}`) });
  } catch (err) {
    throw new MachineStartError((err as Error).message, (err as { code?: string }).code ?? 'EGDB');
  }
}

/** The line that tells the user the guest waits, and the gdb command that attaches. */
export function gdbWaitingLine(stub: GdbStub, address: GdbAddress): string {
  const host = address.host.includes(':') ? `[${address.host}]` : address.host;
  const where = `${host}:${stub.address.port}`;
  return `tskvm: the guest is stopped before its first instruction; waiting for gdb on ${where} (gdb -ex 'target remote ${where}')`;
}

export const GDB_OPTION_HELP = "start stopped and wait for gdb on HOST:PORT (gdb -ex 'target remote HOST:PORT'; port 0: any free port)";
