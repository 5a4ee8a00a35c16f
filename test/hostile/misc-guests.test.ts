// Hostile guests (issue 6): a guest that sweeps every port, pokes MMIO where
// nothing is, and abuses the UART. On both platforms the VMM stays up,
// unclaimed accesses are counted and read as all ones, and afterwards the
// guest still prints through the debug console and through the serial port.
import { runAttack, unclaimedSweepAccesses } from './misc-helpers';

const PLATFORMS = ['bare', 'pc'] as const;

/** The writes misc-port-sweep.S leaves out (they reset or power off; see the guest). */
const sweepSkipsWrite = (port: number, width: number): boolean => port === 0x64 || (port <= 0x605 && port + width > 0x605);
/** misc-port-sweep's string I/O to unclaimed port 0x2000: 64 KiB each of insb/insw/insd (and outs). */
const STRING_ACCESSES = 0x10000 + 0x8000 + 0x4000;

describe.each(PLATFORMS)('hostile guests on the %s platform', (platform) => {
  it('a sweep of every port in every width, and rep ins/outs with large counts', () => {
    const r = runAttack('misc-port-sweep', platform);
    expect(r.console).toContain('swept ports 0x0000-0xffff in widths 1, 2, 4\n');
    expect(r.console).toContain('string I/O done: 64 KiB each of insb/insw/insd read all ones\n');
    expect(r.console).toContain('still alive (debugcon)\n');
    expect(r.console).toContain('still alive (serial)\n');
    expect(r.stop.kind).toBe(platform === 'pc' ? 'poweroff' : 'halt');
    const readsFromBus = unclaimedSweepAccesses(r.pio) + STRING_ACCESSES;
    const writesFromBus = unclaimedSweepAccesses(r.pio, sweepSkipsWrite) + STRING_ACCESSES;
    if (platform === 'bare') {
      // No in-kernel devices: every access reaches our bus, so the counts are exact.
      // Writes: + the SLP_TYP 1 request and the S5 write at the end (0x604 is unclaimed on bare).
      expect(r.stats.unclaimed['port reads']).toBe(readsFromBus);
      expect(r.stats.unclaimed['port writes']).toBe(writesFromBus + 2);
    } else {
      // KVM's in-kernel PIC (0x20-0x21, 0xA0-0xA1, ELCR 0x4D0-0x4D1), PIT
      // (0x40-0x43) and speaker port (0x61) answer some accesses that our bus
      // would count: a few dozen at most.
      expect(r.stats.unclaimed['port reads']).toBeLessThanOrEqual(readsFromBus);
      expect(r.stats.unclaimed['port reads']).toBeGreaterThan(readsFromBus - 64);
      expect(r.stats.unclaimed['port writes']).toBeLessThanOrEqual(writesFromBus);
      expect(r.stats.unclaimed['port writes']).toBeGreaterThan(writesFromBus - 64);
      expect(r.stats.devices['acpi-pm']).toBeGreaterThan(0);
      expect(r.stats.devices['pci-config']).toBeGreaterThan(0);
    }
  }, 120_000);

  it('1/2/4/8-byte and unaligned MMIO where no device is: all ones, counted', () => {
    const r = runAttack('misc-mmio', platform);
    // 19 addresses x 4 widths + the access that is half RAM, half MMIO.
    expect(r.console).toContain('mmio: all-ones checks passed: 0x000000000000004d\n');
    expect(r.console).toContain('still alive (debugcon)\n');
    expect(r.console).toContain('still alive (serial)\n');
    expect(r.stop.kind).toBe(platform === 'pc' ? 'poweroff' : 'halt');
    // At least 19 x (1 + 1 + 1 + 2) bus accesses each way (8 bytes are two
    // halves; page-crossing accesses arrive in pieces and count per piece),
    // + 1 for the half-RAM one; on 'bare' also the reads of the (absent) APIC windows.
    const minimum = 19 * 5 + 1;
    expect(r.stats.unclaimed['mmio reads']).toBeGreaterThanOrEqual(minimum + (platform === 'bare' ? 3 * 5 : 0));
    expect(r.stats.unclaimed['mmio writes']).toBeGreaterThanOrEqual(minimum);
  });

  it('UART abuse: divisor 0, random register writes, loopback, FIFO overrun; the serial still works', () => {
    const r = runAttack('misc-uart', platform, { inputAfter: 'echo> echoed: ', input: 'ping from the host\n' });
    expect(r.console).toContain('uart: 20000 random register writes done\n');
    expect(r.console).toContain('uart: loopback ok\n');
    expect(r.console).toContain('uart: FIFO overrun reported\n');
    expect(r.console).toContain('echo> echoed: ping from the host\n');
    expect(r.console).toContain('still alive (debugcon)\n');
    expect(r.console).toContain('still alive (serial)\n');
    expect(r.console).not.toContain('FAIL');
    expect(r.stop.kind).toBe(platform === 'pc' ? 'poweroff' : 'halt');
    expect(r.stats.devices.serial8250).toBeGreaterThan(80_000);
  });
});
