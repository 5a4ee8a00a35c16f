// Fuzz target: PCI configuration space (src/pci/config-space.ts) and the
// configuration mechanism #1 ports of the host bridge (src/pci/host-bridge.ts),
// with a virtio-pci device behind them.
//
// PCI Local Bus Specification 3.0: §6.1 (256-byte space, reserved registers
// read 0), §6.2.5.1 (BAR sizing: write all ones, read back ~(size-1) with the
// type bits; addresses naturally aligned), §3.2.2.3.2 (CONFIG_ADDRESS and
// CONFIG_DATA). virtio 1.2 §4.1.4.9: the PCI_CFG capability window reaches
// the BAR from configuration space.
import * as fc from 'fast-check';
import { PCI_CONFIG_SPACE_SIZE, PciConfigSpace, type PciBarRange } from '../../src/pci/config-space';
import { PciHostBridge, pciConfigAddress } from '../../src/pci/host-bridge';
import { VirtioNet } from '../../src/virtio/virtio-net';
import { VirtioPciDevice } from '../../src/virtio/virtio-pci';
import { FUZZ_TIMEOUT_MS, RecordingMemory, VIRTIO_RAM, checkProperty, isModelBug } from './fuzz-support';

const TARGET = 'pci-config';

type Op = { kind: 'read'; offset: number; size: number } | { kind: 'write'; offset: number; size: number; value: number };

const arbOffset = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 0, max: 0xff }) },
  { weight: 2, arbitrary: fc.integer({ min: 0x10, max: 0x27 }) }, // the BARs
  { weight: 1, arbitrary: fc.constantFrom(-1, 0xfd, 0xfe, 0xff, 0x100, 0x1000, 2 ** 32, 0.5, NaN) },
);
const arbSize = fc.oneof({ weight: 8, arbitrary: fc.constantFrom(1, 2, 4) }, { weight: 1, arbitrary: fc.constantFrom(0, 3, 5, 8, -1, 1.5) });
const arbValue = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 0, max: 0xffffffff }) },
  { weight: 3, arbitrary: fc.constantFrom(0xffffffff, 0, 0xfffffff0, 0x80000000, 0x7) },
  { weight: 1, arbitrary: fc.constantFrom(-1, 2 ** 40, NaN, Infinity, 1.5) },
);
const arbOp: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant('read' as const), offset: arbOffset, size: arbSize }),
  fc.record({ kind: fc.constant('write' as const), offset: arbOffset, size: arbSize, value: arbValue }),
);

/** Bytes the guest must never change in a function with no writable capability fields. */
const READ_ONLY = [
  ...range(0x00, 0x04), // vendor, device id
  ...range(0x08, 0x0c), // revision, class code
  0x0e, // header type
  0x0f, // BIST
  ...range(0x28, 0x3c), // CardBus CIS, subsystem ids, expansion ROM, capabilities pointer, reserved
  ...range(0x3d, 0x100), // interrupt pin, min_gnt, max_lat, capabilities
];

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from }, (_, i) => from + i);
}

function allOnes(size: number): number {
  return size === 4 ? 0xffffffff : 2 ** (8 * size) - 1;
}

describe('PCI configuration space under hostile accesses', () => {
  it(
    'never throws, keeps read-only registers, BARs aligned, reported windows exact, sizing works',
    () => {
      checkProperty(
        TARGET,
        'config space ops',
        fc.property(
          fc.integer({ min: 4, max: 40 }),
          fc.integer({ min: 4, max: 31 }),
          fc.integer({ min: 2, max: 8 }),
          fc.boolean(),
          fc.array(arbOp, { maxLength: 60 }),
          (mem64Log2, mem32Log2, ioLog2, prefetch, ops) => {
            const c = new PciConfigSpace();
            c.setVendorId(0x1af4);
            c.setDeviceId(0x1041);
            c.setClassCode(0x020000);
            c.setInterruptPin(1);
            c.defineBar(0, { kind: 'io', size: 2 ** ioLog2 });
            c.defineBar(1, { kind: 'memory32', size: 2 ** mem32Log2, prefetchable: prefetch });
            c.defineBar(2, { kind: 'memory64', size: 1n << BigInt(mem64Log2), prefetchable: prefetch });
            c.addCapability(0x09, 16);
            const reported: (PciBarRange | undefined)[] = [];
            c.onBarChange = (bar, oldRange, newRange) => {
              // Each report starts from what was reported last.
              expect(oldRange).toEqual(reported[bar]);
              reported[bar] = newRange;
            };
            const snapshot = READ_ONLY.map((o) => c.read(o, 1));
            for (const op of ops) {
              if (op.kind === 'read') {
                const v = c.read(op.offset, op.size);
                expect(Number.isInteger(v) && v >= 0 && v <= 0xffffffff).toBe(true);
                if (op.size === 1 || op.size === 2 || op.size === 4) {
                  expect(v).toBeLessThanOrEqual(allOnes(op.size));
                  if (!(Number.isInteger(op.offset) && op.offset >= 0 && op.offset < PCI_CONFIG_SPACE_SIZE)) expect(v).toBe(allOnes(op.size));
                }
              } else {
                c.write(op.offset, op.size, op.value);
              }
            }
            expect(READ_ONLY.map((o) => c.read(o, 1))).toEqual(snapshot);
            for (const [i, limit] of [
              [0, 1n << 16n],
              [1, 1n << 32n],
              [2, 1n << 64n],
            ] as const) {
              const s = c.barAddress(i)!;
              expect(s.address % s.size).toBe(0n);
              expect(s.address + s.size).toBeLessThanOrEqual(limit);
              expect(reported[i]).toEqual(c.barRange(i));
            }
            // §6.2.5.1 sizing, from whatever state the ops left: all ones in, ~(size-1) | type bits out.
            c.write(0x10, 4, 0xffffffff);
            expect(c.read(0x10, 4)).toBe((0xffff & ~(2 ** ioLog2 - 1) & 0xfffffffc) | 0x1);
            c.write(0x14, 4, 0xffffffff);
            expect(c.read(0x14, 4)).toBe(((0xfffffff0 & ~(2 ** mem32Log2 - 1)) | (prefetch ? 0x8 : 0)) >>> 0);
            c.write(0x18, 4, 0xffffffff);
            c.write(0x1c, 4, 0xffffffff);
            const mask64 = ~((1n << BigInt(mem64Log2)) - 1n) & 0xffff_ffff_ffff_fff0n;
            expect(c.read(0x18, 4)).toBe(Number((mask64 & 0xffff_ffffn) | 0x4n | (prefetch ? 0x8n : 0n)));
            expect(c.read(0x1c, 4)).toBe(Number(mask64 >> 32n));
          },
        ),
        200,
      );
    },
    FUZZ_TIMEOUT_MS,
  );

  it(
    'ports 0xcf8-0xcff with a virtio-pci device: nothing escapes, guest RAM untouched outside RAM',
    () => {
      const ram = new RecordingMemory([...VIRTIO_RAM]);
      try {
        const portOp = fc.oneof(
          // CONFIG_ADDRESS: slot 1 (the device) mostly, any register, sometimes garbage.
          {
            weight: 3,
            arbitrary: fc
              .tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 0xff }), fc.boolean())
              .map(([slot, reg, ext]) => ({ offset: 0, size: 4 as const, write: true, value: (pciConfigAddress(0, slot, 0, reg) | (ext ? 0x0100_0000 : 0)) >>> 0 })),
          },
          {
            weight: 1,
            arbitrary: fc.record({ offset: fc.integer({ min: 0, max: 7 }), size: fc.constantFrom(1 as const, 2 as const, 4 as const), write: fc.boolean(), value: arbValue }),
          },
          // CONFIG_DATA.
          {
            weight: 6,
            arbitrary: fc.record({ offset: fc.integer({ min: 4, max: 7 }), size: fc.constantFrom(1 as const, 2 as const, 4 as const), write: fc.boolean(), value: arbValue }),
          },
        );
        // The virtio PCI_CFG window (§4.1.4.9): cap.bar, cap.offset, cap.length, then pci_cfg_data.
        const sample = new VirtioPciDevice({ memory: ram.memory, device: new VirtioNet({ mac: Uint8Array.from([2, 0, 0, 0, 0, 1]), onTransmit: () => {} }), irq: () => {} });
        const cap = sample.capabilities.pciCfg;
        type PortOp = { offset: number; size: 1 | 2 | 4; write: boolean; value: number };
        const windowOps: fc.Arbitrary<PortOp[]> = fc
          .tuple(
            fc.oneof(fc.constant(4), fc.integer({ min: 0, max: 255 })),
            fc.oneof(fc.integer({ min: 0, max: 0x4000 }), fc.integer({ min: 0, max: 0xffffffff })),
            fc.oneof(fc.constantFrom(1, 2, 4), fc.integer({ min: 0, max: 0xffffffff })),
            fc.boolean(),
            arbValue,
          )
          .map(([bar, offset, length, write, value]) => [
            { offset: 0, size: 4, write: true, value: pciConfigAddress(0, 1, 0, cap + 4) },
            { offset: 4, size: 1, write: true, value: bar },
            { offset: 0, size: 4, write: true, value: pciConfigAddress(0, 1, 0, cap + 8) },
            { offset: 4, size: 4, write: true, value: offset },
            { offset: 0, size: 4, write: true, value: pciConfigAddress(0, 1, 0, cap + 12) },
            { offset: 4, size: 4, write: true, value: length },
            { offset: 0, size: 4, write: true, value: pciConfigAddress(0, 1, 0, cap + 16) },
            { offset: 4, size: 4, write, value },
          ]);
        const arbOps = fc.array(fc.oneof({ weight: 4, arbitrary: portOp.map((o) => [o as PortOp]) }, { weight: 1, arbitrary: windowOps }), { maxLength: 40 }).map((x) => x.flat());
        checkProperty(
          TARGET,
          'host bridge ports + virtio-pci',
          fc.property(arbOps, (ops) => {
            const logs: string[] = [];
            const net = new VirtioNet({ mac: Uint8Array.from([2, 0, 0, 0, 0, 1]), onTransmit: () => {} });
            const dev = new VirtioPciDevice({ memory: ram.memory, device: net, irq: () => {}, log: (m) => logs.push(m) });
            const bridge = new PciHostBridge({ onBarChange: () => {} });
            bridge.addDevice(dev, 1);
            ram.record(() => {
              for (const op of ops) {
                if (op.write) bridge.write(op.offset, op.size, op.value);
                else {
                  const v = bridge.read(op.offset, op.size);
                  expect(Number.isInteger(v) && v >= 0 && v <= allOnes(op.size)).toBe(true);
                }
              }
            });
            expect(ram.violations).toEqual([]);
            expect(logs.filter(isModelBug)).toEqual([]);
            expect(bridge.callbackErrors).toBe(0);
            // Identity survives anything written through the ports.
            expect(bridge.configRead(0, 1, 0, 0, 4)).toBe((0x1041 << 16) | 0x1af4);
          }),
          300,
        );
      } finally {
        ram.close();
      }
    },
    FUZZ_TIMEOUT_MS,
  );
});
