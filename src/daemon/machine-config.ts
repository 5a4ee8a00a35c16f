// A VM config as JSON (what `tskvm start NAME config.json` sends the daemon):
// the shape of MachineOptions (src/vmm/machine.ts) with files as paths, never
// bytes. `parseMachineConfig` checks every field — the JSON comes from a
// client, so a typo or a wrong type is a one-sentence error naming the field,
// not an exception deep in the VMM — and makes the paths absolute.
//
//   { "memory": "2M", "platform": "bare",
//     "boot": { "kind": "binary", "file": "guest.bin", "mode": "long" } }
import { MAX_CPUS } from '../vmm/sync-machine';
import * as path from 'path';
import type { MachineOptions } from '../vmm/machine';
import type { DiskConfig, NetConfig } from '../vmm/sync-machine';
import { parseAddress, parseSize } from '../vmm/size';

export interface MachineConfigJson {
  memory?: string | number;
  cpus?: number;
  platform?: 'bare' | 'pc';
  kvmPath?: string;
  debugConsole?: boolean;
  serial?: boolean;
  logUnclaimed?: boolean;
  trace?: boolean;
  rng?: boolean;
  disks?: { path: string; readOnly?: boolean; serial?: string }[];
  net?: { tap: string; mac?: string }[];
  console?: 'serial' | 'virtio';
  /** Console output ring between the vCPU worker and the daemon (power of two, bytes). */
  outputBufferSize?: number;
  boot:
    | { kind: 'linux'; kernel: string; initrd?: string; cmdline?: string; emulatorWorkarounds?: 'auto' | 'on' | 'off' }
    | { kind: 'binary'; file: string; mode: 'real' | 'protected' | 'long'; load?: number | string; entry?: number | string };
}

export class MachineConfigJsonError extends Error {}

type Json = Record<string, unknown>;

const TOP_LEVEL = ['memory', 'cpus', 'platform', 'kvmPath', 'debugConsole', 'serial', 'logUnclaimed', 'trace', 'rng', 'disks', 'net', 'console', 'outputBufferSize', 'boot'];
const LINUX_BOOT = ['kind', 'kernel', 'initrd', 'cmdline', 'emulatorWorkarounds'];
const BINARY_BOOT = ['kind', 'file', 'mode', 'load', 'entry'];
/** Beyond this a guest address cannot be in RAM (MachineConfig allows at most 3 GiB). */
const MAX_ADDRESS = 2 ** 32;

function fail(message: string): never {
  throw new MachineConfigJsonError(message);
}

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function onlyKeys(value: Json, allowed: readonly string[], where: string): void {
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key)) fail(`${where} has an unknown field ${JSON.stringify(key.slice(0, 64))} (known: ${allowed.join(', ')})`);
  }
}

function optionalBoolean(value: Json, key: string, where: string): boolean | undefined {
  const v = value[key];
  if (v === undefined || typeof v === 'boolean') return v;
  return fail(`${where}.${key} must be true or false`);
}

function oneOf<T extends string>(value: Json, key: string, choices: readonly T[], where: string): T | undefined {
  const v = value[key];
  if (v === undefined) return undefined;
  if (typeof v === 'string' && (choices as readonly string[]).includes(v)) return v as T;
  return fail(`${where}.${key} must be one of ${choices.join(', ')}`);
}

function filePath(value: unknown, where: string, cwd: string): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > 4096 || value.includes('\0')) fail(`${where} must be a file path`);
  return path.resolve(cwd, value);
}

function shortString(value: unknown, where: string, max: number): string {
  if (typeof value !== 'string' || value.length > max || value.includes('\0')) fail(`${where} must be a string of at most ${max} characters`);
  return value;
}

function address(value: unknown, where: string): number | undefined {
  if (value === undefined) return undefined;
  let n: number;
  if (typeof value === 'number') n = value;
  else if (typeof value === 'string') {
    try {
      n = parseAddress(value);
    } catch {
      return fail(`${where} must be an address (a number, or "0x..." hex)`);
    }
  } else return fail(`${where} must be an address (a number, or "0x..." hex)`);
  if (!Number.isSafeInteger(n) || n < 0 || n >= MAX_ADDRESS) fail(`${where} must be an address below 4 GiB`);
  return n;
}

function parseBoot(value: unknown, cwd: string): MachineOptions['boot'] {
  if (!isObject(value)) return fail('config.boot must be an object: { "kind": "binary", "file", "mode" } or { "kind": "linux", "kernel", ... }');
  if (value.kind === 'linux') {
    onlyKeys(value, LINUX_BOOT, 'config.boot');
    const boot: MachineOptions['boot'] = { kind: 'linux', kernel: filePath(value.kernel, 'config.boot.kernel', cwd) };
    if (value.initrd !== undefined) boot.initrd = filePath(value.initrd, 'config.boot.initrd', cwd);
    if (value.cmdline !== undefined) boot.cmdline = shortString(value.cmdline, 'config.boot.cmdline', 65536);
    const workarounds = oneOf(value, 'emulatorWorkarounds', ['auto', 'on', 'off'] as const, 'config.boot');
    if (workarounds !== undefined) boot.emulatorWorkarounds = workarounds;
    return boot;
  }
  if (value.kind === 'binary') {
    onlyKeys(value, BINARY_BOOT, 'config.boot');
    const mode = oneOf(value, 'mode', ['real', 'protected', 'long'] as const, 'config.boot');
    if (mode === undefined) fail('config.boot.mode must be one of real, protected, long');
    const boot: MachineOptions['boot'] = { kind: 'binary', file: filePath(value.file, 'config.boot.file', cwd), mode };
    const load = address(value.load, 'config.boot.load');
    const entry = address(value.entry, 'config.boot.entry');
    if (load !== undefined) boot.load = load;
    if (entry !== undefined) boot.entry = entry;
    return boot;
  }
  return fail('config.boot.kind must be "binary" or "linux"');
}

function parseDisks(value: unknown, cwd: string): DiskConfig[] {
  if (!Array.isArray(value) || value.length > 16) fail('config.disks must be a list of at most 16 { "path", "readOnly"?, "serial"? }');
  return value.map((disk: unknown, i) => {
    const where = `config.disks[${i}]`;
    if (!isObject(disk)) fail(`${where} must be an object`);
    onlyKeys(disk, ['path', 'readOnly', 'serial'], where);
    const out: DiskConfig = { path: filePath(disk.path, `${where}.path`, cwd) };
    const readOnly = optionalBoolean(disk, 'readOnly', where);
    if (readOnly !== undefined) out.readOnly = readOnly;
    if (disk.serial !== undefined) out.serial = shortString(disk.serial, `${where}.serial`, 20);
    return out;
  });
}

function parseNet(value: unknown): NetConfig[] {
  if (!Array.isArray(value) || value.length > 8) fail('config.net must be a list of at most 8 { "tap", "mac"? }');
  return value.map((nic: unknown, i) => {
    const where = `config.net[${i}]`;
    if (!isObject(nic)) fail(`${where} must be an object`);
    onlyKeys(nic, ['tap', 'mac'], where); // no "fd": the daemon opens taps itself
    // Linux interface names: at most IFNAMSIZ - 1 = 15 bytes (include/uapi/linux/if.h).
    const tap = shortString(nic.tap, `${where}.tap`, 15);
    if (tap.length === 0) fail(`${where}.tap must name a tap interface`);
    return nic.mac === undefined ? { tap } : { tap, mac: shortString(nic.mac, `${where}.mac`, 17) };
  });
}

/**
 * Validates a config from a client and resolves its relative paths against
 * `cwd`. Throws MachineConfigJsonError naming the first bad field.
 */
export function parseMachineConfig(value: unknown, cwd: string): MachineOptions {
  if (!isObject(value)) fail('config must be a JSON object with at least a "boot" entry');
  onlyKeys(value, TOP_LEVEL, 'config');
  const options: MachineOptions = { boot: parseBoot(value.boot, cwd) };
  if (value.memory !== undefined) {
    if (typeof value.memory !== 'string' && typeof value.memory !== 'number') fail('config.memory must be a size such as "64M" or a number of bytes');
    try {
      parseSize(value.memory);
    } catch (err) {
      fail(`config.memory: ${(err as Error).message}`);
    }
    options.memory = value.memory;
  }
  if (value.cpus !== undefined) {
    const n = value.cpus;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > MAX_CPUS) fail(`config.cpus must be an integer from 1 to ${MAX_CPUS}`);
    options.cpus = n;
  }
  const platform = oneOf(value, 'platform', ['bare', 'pc'] as const, 'config');
  if (platform !== undefined) options.platform = platform;
  if (value.kvmPath !== undefined) options.kvmPath = filePath(value.kvmPath, 'config.kvmPath', cwd);
  for (const key of ['debugConsole', 'serial', 'logUnclaimed', 'trace', 'rng'] as const) {
    const flag = optionalBoolean(value, key, 'config');
    if (flag !== undefined) options[key] = flag;
  }
  if (value.disks !== undefined) options.disks = parseDisks(value.disks, cwd);
  if (value.net !== undefined) options.net = parseNet(value.net);
  const console = oneOf(value, 'console', ['serial', 'virtio'] as const, 'config');
  if (console !== undefined) options.console = console;
  if (value.outputBufferSize !== undefined) {
    const n = value.outputBufferSize;
    // ByteRing needs a power of two; 4 KiB .. 64 MiB is plenty either way.
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 4096 || n > 1 << 26 || (n & (n - 1)) !== 0)
      fail('config.outputBufferSize must be a power of two from 4096 to 67108864');
    options.outputBufferSize = n;
  }
  return options;
}
