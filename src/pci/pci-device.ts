// What a PCI function looks like to the host bridge (src/pci/host-bridge.ts).
//
// A device owns a PciConfigSpace (src/pci/config-space.ts): it sets its ids,
// defines its BARs and adds its capabilities there, and may hook config reads
// and writes. The registers behind its BARs are reached through `barRead` /
// `barWrite` with the offset relative to the BAR's base; the VMM, told by the
// host bridge's `onBarChange` where the guest (or `assignResources`) put each
// BAR, registers a window on its MMIO or PIO bus that forwards there —
// `pciBarBusDevice` builds that window:
//
//   const bridge = new PciHostBridge({
//     onBarChange: (device, bar, oldRange, newRange) => {
//       const bus = (newRange ?? oldRange)!.space === 'io' ? pio : mmio;
//       const window = windows.get(device, bar) ?? pciBarBusDevice(device, bar);
//       if (oldRange) bus.unregister(window);
//       if (newRange) bus.register(Number(newRange.base), Number(newRange.size), window);
//     },
//   });
//
// Offsets passed to barRead/barWrite are within [0, size) and accesses are 1, 2
// or 4 bytes (8-byte MMIO accesses arrive as two 4-byte ones, see bus.ts).

import type { AccessSize, BusDevice } from '../bus/bus';
import type { PciConfigSpace } from './config-space';

export interface PciDevice {
  readonly name: string;
  readonly config: PciConfigSpace;
  /** Reads `size` bytes at `offset` within BAR `bar`. Absent: the BAR reads all ones. */
  barRead?(bar: number, offset: number, size: AccessSize): number;
  /** Writes `size` bytes at `offset` within BAR `bar`. Absent: writes are ignored. */
  barWrite?(bar: number, offset: number, size: AccessSize, value: number): void;
}

const ALL_ONES: Record<AccessSize, number> = { 1: 0xff, 2: 0xffff, 4: 0xffffffff };

/** A BusDevice that forwards accesses to BAR `bar` of `device`, for the VMM to register where the BAR decodes. */
export function pciBarBusDevice(device: PciDevice, bar: number): BusDevice {
  return {
    name: `${device.name}.bar${bar}`,
    read(offset: number, size: AccessSize): number {
      const mask = ALL_ONES[size] ?? 0xffffffff;
      if (!device.barRead) return mask;
      return (device.barRead(bar, offset, size) & mask) >>> 0;
    },
    write(offset: number, size: AccessSize, value: number): void {
      device.barWrite?.(bar, offset, size, value);
    },
  };
}
