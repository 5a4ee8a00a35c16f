// PCI host bridge with configuration mechanism #1 (PCI Local Bus Specification
// 3.0 §3.2.2.3.2, Figure 3-1): one PCI bus (bus 0) of 32 device slots, each with
// a single function (function 0).
//
// Registering: the two registers are one device of 8 ports, so an access that
// straddles them reaches it whole (a straddle past 0xcff never reaches it, see
// bus.ts):
//   const pci = new PciHostBridge({ onBarChange });
//   pio.register(PCI_CONFIG_ADDRESS_PORT, PCI_CONFIG_PORT_COUNT, pci);
//
// Ports:
//   0xcf8-0xcfb CONFIG_ADDRESS, 32 bits. Only a dword access at 0xcf8 is a
//          CONFIG_ADDRESS access (§3.2.2.3.2: "Anything other than a DWORD
//          access to CONFIG_ADDRESS ... [is] passed through as a normal I/O
//          transaction"). Narrower ones reach nobody here: they read 0xff per
//          byte and writes are ignored. (Real chipsets put other registers
//          there, e.g. a reset control register at 0xcf9; none is emulated.)
//            bit 31     enable: CONFIG_DATA accesses become configuration cycles
//            bits 30:24 reserved, read as 0
//            bits 23:16 bus number; 15:11 device (slot); 10:8 function
//            bits 7:2   register (dword) number; bits 1:0 read as 0
//          Bits 27:24 are where AMD chipsets (and Linux's PCI_CONF1_ADDRESS for
//          registers ≥ 0x100) put extended register bits. They read as 0 like
//          the other reserved bits, but a CONFIG_DATA access made while any of
//          them is set addresses a register beyond the 256-byte space, which
//          does not exist: it reads all ones and writes are ignored, rather than
//          aliasing onto the header. So no access can reach past offset 255.
//   0xcfc-0xcff CONFIG_DATA. With the enable bit set, a 1, 2 or 4 byte access
//          at 0xcfc + n is a configuration cycle to the dword CONFIG_ADDRESS
//          selects, with byte enables for bytes n.. of that dword. With the
//          enable bit clear it is an ordinary I/O access nobody claims: reads
//          all ones, writes ignored. An access that crosses 0xcfb/0xcfc is split
//          into its CONFIG_ADDRESS part (a partial access: ignored) and its
//          CONFIG_DATA part, as the CPU splits a misaligned I/O access.
//
// Configuration cycles to a bus other than 0 (there are no bridges), a function
// other than 0, or an empty slot end in master abort: the host bridge returns
// all ones for reads (§6.1: "it is adequate for the host bus to PCI bridge to
// return a value of all 1's on read accesses to Configuration Space registers of
// non-existent devices") and drops writes.
//
// Slot 0 holds the host bridge's own function. Its ids are those of the Intel
// 82441FX PMC of the 440FX chipset (vendor 0x8086, device 0x1237, revision 0x02,
// class 0x060000 host bridge), the same QEMU's pc machine shows, so Linux and
// other guests treat it as a well-known host bridge. It matters to Linux's
// pci_check_type1() in arch/x86/pci/direct.c, which writes the byte 0x01 to
// 0xcfb (ignored here), writes the dword 0x80000000 to 0xcf8 and requires to read
// it back, then (on machines with no DMI BIOS date of 2001 or later, like this
// one) runs pci_sanity_check(): some devfn on bus 0 must have class 0x0600 (host
// bridge) or 0x0300 (VGA), or vendor Intel or Compaq. Its type-2 probe (byte
// writes of 0 to 0xcfb, 0xcf8 and 0xcfa, then byte reads of 0xcf8 and 0xcfa
// expecting 0) fails, since those bytes read 0xff.
//
// Resources: tskvm boots Linux without firmware, so `assignResources` does what
// a BIOS would: gives every BAR a naturally aligned address in the windows the
// VMM names (largest first, so nothing overlaps and little space is wasted) and
// enables I/O and memory decoding. Linux's pcibios_resource_survey() keeps such
// assignments as long as they fit its root bus windows.
//
// BAR windows: the VMM is told through `onBarChange(device, bar, oldRange,
// newRange)` whenever a BAR's decoded range changes (a guest moves a BAR or
// toggles command bits 0/1, or `assignResources` runs), and maps or unmaps the
// window on its own buses (pciBarBusDevice in pci-device.ts). The bridge never
// touches a bus itself. The ranges are exact: a guest may move a BAR anywhere its
// kind allows (I/O below 0x10000, 32-bit memory below 4 GiB, 64-bit memory below
// 2^64), including over RAM or another device, so the VMM must cope with any
// range. If the callback throws, the error goes to `onCallbackError` (counted in
// `callbackErrors`) instead of unwinding into the guest's port access: nothing a
// guest does makes the bridge throw.

import type { AccessSize, BusDevice } from '../bus/bus';
import {
  PCI_BAR_COUNT,
  PCI_COMMAND,
  PCI_COMMAND_IO,
  PCI_COMMAND_MEMORY,
  PCI_CONFIG_SPACE_SIZE,
  PciConfigSpace,
  type PciBarKind,
  type PciBarRange,
} from './config-space';
import type { PciDevice } from './pci-device';

export const PCI_CONFIG_ADDRESS_PORT = 0xcf8;
export const PCI_CONFIG_DATA_PORT = 0xcfc;
/** CONFIG_ADDRESS and CONFIG_DATA together: register one device over 0xcf8-0xcff. */
export const PCI_CONFIG_PORT_COUNT = 8;

// CONFIG_ADDRESS fields (§3.2.2.3.2, Figure 3-1).
export const PCI_CONFIG_ADDRESS_ENABLE = 0x8000_0000;
/** Bits software can set and read back: enable, bus, device, function, register. */
const CONFIG_ADDRESS_READABLE = 0x80ff_fffc;
/** Extended register number (AMD / Linux PCI_CONF1_ADDRESS for registers ≥ 0x100). */
const CONFIG_ADDRESS_EXTENDED_REGISTER = 0x0f00_0000;

export const PCI_SLOT_COUNT = 32;
export const PCI_FUNCTION_COUNT = 8;

// The host bridge function's identity: the 440FX's 82441FX PMC.
export const PCI_VENDOR_ID_INTEL = 0x8086;
export const PCI_DEVICE_ID_INTEL_82441 = 0x1237;
export const PCI_HOST_BRIDGE_REVISION = 0x02;
/** Base class 0x06 bridge, sub-class 0x00 host bridge, interface 0 (PCI Code and ID Assignment spec). */
export const PCI_CLASS_BRIDGE_HOST = 0x060000;

/** The address the enable bit, bus, slot, function and register fields make (register = offset & 0xfc). */
export function pciConfigAddress(bus: number, slot: number, fn: number, register: number): number {
  return (PCI_CONFIG_ADDRESS_ENABLE | ((bus & 0xff) << 16) | ((slot & 0x1f) << 11) | ((fn & 0x7) << 8) | (register & 0xfc)) >>> 0;
}

export type PciBarChangeHandler = (
  device: PciDevice,
  barIndex: number,
  oldRange: PciBarRange | undefined,
  newRange: PciBarRange | undefined,
) => void;

export interface PciHostBridgeOptions {
  onBarChange?: PciBarChangeHandler;
  /** Receives an error thrown by `onBarChange` (which the bridge otherwise swallows). */
  onCallbackError?: (error: unknown, device: PciDevice, barIndex: number) => void;
}

/** Address windows `assignResources` may use. */
export interface PciResourceWindows {
  /** The 32-bit memory window (must lie below 4 GiB); also takes 64-bit BARs when no 64-bit window is given. */
  readonly mmioBase: number | bigint;
  readonly mmioSize: number | bigint;
  /** The I/O port window (must lie below 0x10000). */
  readonly ioBase: number;
  readonly ioSize: number;
  /** Optional window above 4 GiB for 64-bit BARs. */
  readonly mmio64Base?: number | bigint;
  readonly mmio64Size?: number | bigint;
}

export interface PciBarAssignment {
  readonly slot: number;
  readonly device: PciDevice;
  readonly barIndex: number;
  readonly range: PciBarRange;
}

/** A programming error by the VMM (never raised by guest accesses). */
export class PciError extends Error {
  readonly code = 'EPCI';
}

/** Function 0 of slot 0: the host bridge itself, with no BARs. */
export class PciHostBridgeFunction implements PciDevice {
  readonly name = 'pci-host-bridge';
  readonly config = new PciConfigSpace();

  constructor() {
    this.config.setVendorId(PCI_VENDOR_ID_INTEL);
    this.config.setDeviceId(PCI_DEVICE_ID_INTEL_82441);
    this.config.setRevisionId(PCI_HOST_BRIDGE_REVISION);
    this.config.setClassCode(PCI_CLASS_BRIDGE_HOST);
  }
}

interface BarRequest {
  slot: number;
  device: PciDevice;
  index: number;
  kind: PciBarKind;
  size: bigint;
}

function toBigInt(value: number | bigint, what: string): bigint {
  if (typeof value === 'bigint') return value;
  if (!Number.isSafeInteger(value)) throw new PciError(`${what} must be an integer: ${value}`);
  return BigInt(value);
}

export class PciHostBridge implements BusDevice {
  readonly name = 'pci-config';
  readonly hostFunction = new PciHostBridgeFunction();
  onBarChange?: PciBarChangeHandler;
  onCallbackError?: (error: unknown, device: PciDevice, barIndex: number) => void;
  /** How many times `onBarChange` threw. */
  callbackErrors = 0;

  private address = 0;
  private extendedRegister = false;
  private readonly slots: (PciDevice | undefined)[] = new Array<PciDevice | undefined>(PCI_SLOT_COUNT).fill(undefined);

  constructor(options: PciHostBridgeOptions = {}) {
    this.onBarChange = options.onBarChange;
    this.onCallbackError = options.onCallbackError;
    this.addDevice(this.hostFunction, 0);
  }

  /**
   * Puts `device` in `slot` (default: the lowest free slot from 1) and starts
   * reporting its BAR changes. Returns the slot.
   */
  addDevice(device: PciDevice, slot?: number): number {
    if (this.slots.includes(device)) throw new PciError(`${device.name} is already on the bus`);
    let s = slot;
    if (s === undefined) {
      s = this.slots.findIndex((d, i) => i > 0 && d === undefined);
      if (s < 0) throw new PciError(`no free PCI slot for ${device.name}`);
    }
    if (!Number.isInteger(s) || s < 0 || s >= PCI_SLOT_COUNT) throw new PciError(`invalid PCI slot ${s} for ${device.name}`);
    const taken = this.slots[s];
    if (taken) throw new PciError(`PCI slot ${s} is taken by ${taken.name}`);
    this.slots[s] = device;
    const previous = device.config.onBarChange;
    device.config.onBarChange = (bar, oldRange, newRange) => {
      previous?.(bar, oldRange, newRange);
      this.reportBarChange(device, bar, oldRange, newRange);
    };
    // A device added with decoding already on reports its current windows.
    for (let i = 0; i < PCI_BAR_COUNT; i++) {
      const range = device.config.barRange(i);
      if (range) this.reportBarChange(device, i, undefined, range);
    }
    return s;
  }

  device(slot: number): PciDevice | undefined {
    return Number.isInteger(slot) && slot >= 0 && slot < PCI_SLOT_COUNT ? this.slots[slot] : undefined;
  }

  /** The occupied slots, in slot order (slot 0 is the host bridge function). */
  get devices(): { slot: number; device: PciDevice }[] {
    const result: { slot: number; device: PciDevice }[] = [];
    this.slots.forEach((device, slot) => device && result.push({ slot, device }));
    return result;
  }

  /** CONFIG_ADDRESS as the guest reads it. */
  get configAddress(): number {
    return this.address;
  }

  private reportBarChange(device: PciDevice, bar: number, oldRange: PciBarRange | undefined, newRange: PciBarRange | undefined): void {
    try {
      this.onBarChange?.(device, bar, oldRange, newRange);
    } catch (error) {
      this.callbackErrors++;
      this.onCallbackError?.(error, device, bar);
    }
  }

  // ---- port side ----------------------------------------------------------

  read(offset: number, size: AccessSize): number {
    if (!this.validPortAccess(offset, size)) return size === 1 ? 0xff : size === 2 ? 0xffff : 0xffffffff;
    let value = 0;
    for (const part of this.split(offset, size)) {
      let dword: number;
      if (part.dword === 0) dword = part.length === 4 ? this.address : 0xffffffff;
      else dword = this.configDataRead(part.start, part.length) << (8 * part.start);
      for (let i = 0; i < part.length; i++) {
        const byte = (dword >>> (8 * (part.start + i))) & 0xff;
        value |= byte << (8 * (part.dword + part.start + i - offset));
      }
    }
    return value >>> 0;
  }

  write(offset: number, size: AccessSize, value: number): void {
    if (!this.validPortAccess(offset, size)) return;
    const v = typeof value === 'number' && Number.isFinite(value) ? value >>> 0 : 0;
    for (const part of this.split(offset, size)) {
      const shift = 8 * (part.dword + part.start - offset);
      const bits = part.length === 4 ? v : (v >>> shift) & (2 ** (8 * part.length) - 1);
      if (part.dword === 0) {
        if (part.length === 4) {
          this.address = (bits & CONFIG_ADDRESS_READABLE) >>> 0;
          this.extendedRegister = (bits & CONFIG_ADDRESS_EXTENDED_REGISTER) !== 0;
        }
        // A partial access to CONFIG_ADDRESS is not a CONFIG_ADDRESS access: ignored.
      } else {
        this.configDataWrite(part.start, part.length, bits);
      }
    }
  }

  private validPortAccess(offset: number, size: number): boolean {
    return (
      (size === 1 || size === 2 || size === 4) && Number.isInteger(offset) && offset >= 0 && offset + size <= PCI_CONFIG_PORT_COUNT
    );
  }

  /** Splits a port access into its parts in the CONFIG_ADDRESS dword (0) and the CONFIG_DATA dword (4). */
  private split(offset: number, size: number): { dword: 0 | 4; start: number; length: number }[] {
    const parts: { dword: 0 | 4; start: number; length: number }[] = [];
    const end = offset + size;
    for (const dword of [0, 4] as const) {
      const start = Math.max(offset, dword);
      const stop = Math.min(end, dword + 4);
      if (start < stop) parts.push({ dword, start: start - dword, length: stop - start });
    }
    return parts;
  }

  /** The function a CONFIG_DATA access addresses now, with the register's dword offset; undefined on master abort. */
  private target(): { device: PciDevice; register: number } | undefined {
    const a = this.address;
    if ((a & PCI_CONFIG_ADDRESS_ENABLE) === 0 || this.extendedRegister) return undefined;
    const bus = (a >>> 16) & 0xff;
    const slot = (a >>> 11) & 0x1f;
    const fn = (a >>> 8) & 0x7;
    if (bus !== 0 || fn !== 0) return undefined;
    const device = this.slots[slot];
    return device ? { device, register: a & 0xfc } : undefined;
  }

  /** Bytes [start, start + length) of the selected dword, in the low bits. */
  private configDataRead(start: number, length: number): number {
    const t = this.target();
    if (!t) return length === 4 ? 0xffffffff : 2 ** (8 * length) - 1;
    return t.device.config.read(t.register + start, length);
  }

  private configDataWrite(start: number, length: number, value: number): void {
    const t = this.target();
    if (t) t.device.config.write(t.register + start, length, value);
  }

  // ---- direct configuration access (for the VMM and debugging) ------------

  /** A configuration read as the guest would make it, without touching CONFIG_ADDRESS. */
  configRead(bus: number, slot: number, fn: number, offset: number, size: number): number {
    const allOnes = size === 4 ? 0xffffffff : size === 2 ? 0xffff : 0xff;
    if (bus !== 0 || fn !== 0 || !Number.isInteger(offset) || offset < 0 || offset >= PCI_CONFIG_SPACE_SIZE) return allOnes;
    const device = this.device(slot);
    return device ? device.config.read(offset, size) : allOnes;
  }

  configWrite(bus: number, slot: number, fn: number, offset: number, size: number, value: number): void {
    if (bus !== 0 || fn !== 0) return;
    this.device(slot)?.config.write(offset, size, value);
  }

  // ---- resource assignment -------------------------------------------------

  /**
   * Gives every BAR of every device a naturally aligned, non-overlapping
   * address inside the windows and enables I/O / memory decoding on devices
   * that have such BARs (bus mastering is left to the drivers). Decoding is
   * turned off while BARs move, so the VMM sees each window unmapped and then
   * mapped at its new place. Throws PciError if the BARs do not fit.
   */
  assignResources(windows: PciResourceWindows): PciBarAssignment[] {
    const mmioBase = toBigInt(windows.mmioBase, 'mmioBase');
    const mmioSize = toBigInt(windows.mmioSize, 'mmioSize');
    const ioBase = toBigInt(windows.ioBase, 'ioBase');
    const ioSize = toBigInt(windows.ioSize, 'ioSize');
    const has64 = windows.mmio64Base !== undefined || windows.mmio64Size !== undefined;
    const mmio64Base = toBigInt(windows.mmio64Base ?? 0, 'mmio64Base');
    const mmio64Size = toBigInt(windows.mmio64Size ?? 0, 'mmio64Size');
    const checkWindow = (name: string, base: bigint, size: bigint, limit: bigint): void => {
      if (base < 0n || size < 0n || base + size > limit)
        throw new PciError(`${name} window 0x${base.toString(16)}+0x${size.toString(16)} exceeds 0x${limit.toString(16)}`);
    };
    checkWindow('I/O', ioBase, ioSize, 0x1_0000n);
    checkWindow('32-bit memory', mmioBase, mmioSize, 1n << 32n);
    if (has64) checkWindow('64-bit memory', mmio64Base, mmio64Size, 1n << 64n);

    const io: BarRequest[] = [];
    const mem32: BarRequest[] = [];
    const mem64: BarRequest[] = [];
    this.slots.forEach((device, slot) => {
      if (!device) return;
      for (let index = 0; index < PCI_BAR_COUNT; index++) {
        const def = device.config.barDefinition(index);
        if (!def) continue;
        const request = { slot, device, index, kind: def.kind, size: def.size };
        if (def.kind === 'io') io.push(request);
        else if (def.kind === 'memory64' && has64) mem64.push(request);
        else mem32.push(request);
      }
    });

    const placed = new Map<BarRequest, bigint>();
    const allocate = (name: string, requests: BarRequest[], base: bigint, size: bigint): void => {
      // Largest first: every later (smaller, power-of-two) BAR is then aligned
      // where the previous one ended, so only the first can leave a gap.
      requests.sort((a, b) => (a.size === b.size ? a.slot - b.slot || a.index - b.index : a.size > b.size ? -1 : 1));
      let cursor = base;
      for (const r of requests) {
        const address = ((cursor + r.size - 1n) / r.size) * r.size;
        if (address + r.size > base + size)
          throw new PciError(`${name} window too small for BAR ${r.index} of ${r.device.name} (size 0x${r.size.toString(16)})`);
        placed.set(r, address);
        cursor = address + r.size;
      }
    };
    allocate('I/O', io, ioBase, ioSize);
    allocate('32-bit memory', mem32, mmioBase, mmioSize);
    allocate('64-bit memory', mem64, mmio64Base, mmio64Size);

    const assignments: PciBarAssignment[] = [];
    for (const [slot, device] of this.slots.entries()) {
      if (!device) continue;
      const mine = [...placed.entries()].filter(([r]) => r.device === device);
      if (mine.length === 0) continue;
      const config = device.config;
      const command = config.command;
      config.write(PCI_COMMAND, 2, command & ~(PCI_COMMAND_IO | PCI_COMMAND_MEMORY));
      let enable = 0;
      for (const [r, address] of mine) {
        config.programBar(r.index, address);
        enable |= r.kind === 'io' ? PCI_COMMAND_IO : PCI_COMMAND_MEMORY;
      }
      config.write(PCI_COMMAND, 2, (command & ~(PCI_COMMAND_IO | PCI_COMMAND_MEMORY)) | enable);
      for (const [r] of mine) {
        const range = config.barRange(r.index);
        if (range) assignments.push({ slot, device, barIndex: r.index, range });
      }
    }
    return assignments;
  }
}
