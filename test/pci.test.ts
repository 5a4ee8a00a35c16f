import { type AccessSize, MmioBus, PioBus } from '../src/bus/bus';
import {
  PCI_CAP_ID_MSIX,
  PCI_CAP_ID_VNDR,
  PCI_COMMAND_INTX_DISABLE,
  PCI_COMMAND_IO,
  PCI_COMMAND_MASTER,
  PCI_COMMAND_MEMORY,
  PCI_COMMAND_PARITY,
  PCI_COMMAND_SERR,
  PCI_STATUS_CAP_LIST,
  PCI_STATUS_INTERRUPT,
  PCI_STATUS_REC_MASTER_ABORT,
  PCI_STATUS_SIG_TARGET_ABORT,
  PciConfigError,
  PciConfigSpace,
  type PciBarDefinition,
  type PciBarRange,
} from '../src/pci/config-space';
import {
  PCI_CONFIG_ADDRESS_PORT,
  PCI_CONFIG_PORT_COUNT,
  PciError,
  PciHostBridge,
  pciConfigAddress,
} from '../src/pci/host-bridge';
import { type PciDevice, pciBarBusDevice } from '../src/pci/pci-device';

class TestDevice implements PciDevice {
  readonly config = new PciConfigSpace();
  readonly accesses: { bar: number; offset: number; size: number; value?: number }[] = [];

  constructor(
    readonly name: string,
    bars: [number, PciBarDefinition][],
    ids = { vendor: 0x1af4, device: 0x1041, classCode: 0x020000 },
  ) {
    this.config.setVendorId(ids.vendor);
    this.config.setDeviceId(ids.device);
    this.config.setRevisionId(0x01);
    this.config.setClassCode(ids.classCode);
    this.config.setSubsystem(0x1af4, 0x0001);
    this.config.setInterruptPin(1);
    for (const [index, def] of bars) this.config.defineBar(index, def);
  }

  barRead(bar: number, offset: number, size: AccessSize): number {
    this.accesses.push({ bar, offset, size });
    return 0x11223344 + bar;
  }

  barWrite(bar: number, offset: number, size: AccessSize, value: number): void {
    this.accesses.push({ bar, offset, size, value });
  }
}

type BarEvent = { device: string; bar: number; oldRange: PciBarRange | undefined; newRange: PciBarRange | undefined };

function standardDevice(name = 'nic'): TestDevice {
  return new TestDevice(name, [
    [0, { kind: 'memory32', size: 0x1000 }],
    [1, { kind: 'io', size: 32 }],
    [2, { kind: 'memory64', size: 0x4000, prefetchable: true }],
    [4, { kind: 'memory32', size: 256 }],
  ]);
}

function setup() {
  const events: BarEvent[] = [];
  const bridge = new PciHostBridge({
    onBarChange: (device, bar, oldRange, newRange) => events.push({ device: device.name, bar, oldRange, newRange }),
  });
  const pio = new PioBus();
  pio.register(PCI_CONFIG_ADDRESS_PORT, PCI_CONFIG_PORT_COUNT, bridge);
  const outl = (port: number, v: number) => pio.write(port, 4, v);
  const outw = (port: number, v: number) => pio.write(port, 2, v);
  const outb = (port: number, v: number) => pio.write(port, 1, v);
  const inl = (port: number) => pio.read(port, 4);
  const inw = (port: number) => pio.read(port, 2);
  const inb = (port: number) => pio.read(port, 1);
  /** Like Linux's pci_conf1_read: select the dword, then access 0xcfc + (reg & 3). */
  const cfgRead = (slot: number, reg: number, size: AccessSize, fn = 0, bus = 0): number => {
    outl(0xcf8, pciConfigAddress(bus, slot, fn, reg));
    return pio.read(0xcfc + (reg & 3), size);
  };
  const cfgWrite = (slot: number, reg: number, size: AccessSize, value: number, fn = 0, bus = 0): void => {
    outl(0xcf8, pciConfigAddress(bus, slot, fn, reg));
    pio.write(0xcfc + (reg & 3), size, value);
  };
  return { bridge, pio, events, outl, outw, outb, inl, inw, inb, cfgRead, cfgWrite };
}

describe('PCI configuration mechanism #1', () => {
  it('shows the host bridge at 00:00.0', () => {
    const { cfgRead } = setup();
    expect(cfgRead(0, 0x00, 4)).toBe(0x12378086);
    expect(cfgRead(0, 0x00, 2)).toBe(0x8086);
    expect(cfgRead(0, 0x02, 2)).toBe(0x1237);
    expect(cfgRead(0, 0x08, 4)).toBe(0x06000002); // class 06/00/00, revision 02
    expect(cfgRead(0, 0x0a, 2)).toBe(0x0600);
    expect(cfgRead(0, 0x0e, 1)).toBe(0x00); // type 0 header, single function
    expect(cfgRead(0, 0x10, 4)).toBe(0); // no BARs
    expect(cfgRead(0, 0x34, 1)).toBe(0); // no capabilities
  });

  it('reads all ones from absent slots, functions and buses, and ignores writes to them', () => {
    const { bridge, cfgRead, cfgWrite } = setup();
    const nic = standardDevice();
    bridge.addDevice(nic, 3);
    for (const slot of [1, 2, 4, 31]) {
      expect(cfgRead(slot, 0, 4)).toBe(0xffffffff);
      expect(cfgRead(slot, 0x0a, 2)).toBe(0xffff);
      expect(cfgRead(slot, 0x3d, 1)).toBe(0xff);
    }
    for (const fn of [1, 7]) {
      expect(cfgRead(0, 0, 4, fn)).toBe(0xffffffff);
      expect(cfgRead(3, 0, 4, fn)).toBe(0xffffffff);
      cfgWrite(3, 0x04, 2, 0xffff, fn); // must not reach function 0
    }
    expect(cfgRead(3, 0, 4, 0, 1)).toBe(0xffffffff);
    cfgWrite(3, 0x04, 2, 0xffff, 0, 1);
    cfgWrite(5, 0x04, 2, 0xffff);
    expect(nic.config.command).toBe(0);
    expect(cfgRead(3, 0, 4)).toBe(0x10411af4);
  });

  it('passes CONFIG_DATA accesses through as plain I/O while the enable bit is clear', () => {
    const { bridge, outl, inl, inb, pio } = setup();
    const nic = standardDevice();
    bridge.addDevice(nic, 1);
    outl(0xcf8, pciConfigAddress(0, 1, 0, 0x04) & 0x7fffffff);
    expect(inl(0xcfc)).toBe(0xffffffff);
    expect(inb(0xcfe)).toBe(0xff);
    pio.write(0xcfc, 2, 0x7);
    expect(nic.config.command).toBe(0);
  });

  it('selects bytes within the dword by port offset for byte, word and dword accesses', () => {
    const { outl, inl, inw, inb, cfgWrite, cfgRead, bridge } = setup();
    outl(0xcf8, pciConfigAddress(0, 0, 0, 0));
    expect([inb(0xcfc), inb(0xcfd), inb(0xcfe), inb(0xcff)]).toEqual([0x86, 0x80, 0x37, 0x12]);
    expect(inw(0xcfc)).toBe(0x8086);
    expect(inw(0xcfd)).toBe(0x3780); // bytes 1-2 of the dword
    expect(inw(0xcfe)).toBe(0x1237);
    expect(inl(0xcfc)).toBe(0x12378086);
    // The low bits of the register number are not part of CONFIG_ADDRESS.
    outl(0xcf8, pciConfigAddress(0, 0, 0, 0x0b) | 3);
    expect(inl(0xcf8)).toBe(0x80000008);
    expect(inb(0xcff)).toBe(0x06);
    // Byte writes at each lane land in the right byte.
    const nic = standardDevice();
    bridge.addDevice(nic, 2);
    cfgWrite(2, 0x3c, 1, 0x0b); // interrupt line
    cfgWrite(2, 0x0c, 1, 0x10); // cache line size
    cfgWrite(2, 0x0d, 1, 0x40); // latency timer
    expect(cfgRead(2, 0x0c, 2)).toBe(0x4010);
    expect(nic.config.interruptLine).toBe(0x0b);
    expect(cfgRead(2, 0x3c, 4)).toBe(0x0000010b); // pin INTA# in byte 1
  });

  it('splits accesses that straddle CONFIG_ADDRESS and CONFIG_DATA', () => {
    const { outl, inl, pio, bridge } = setup();
    outl(0xcf8, pciConfigAddress(0, 0, 0, 0));
    // dword at 0xcfa: two bytes of CONFIG_ADDRESS (not an address access: 0xff) + vendor id.
    expect(pio.read(0xcfa, 4)).toBe(0x8086ffff);
    expect(pio.read(0xcfb, 2)).toBe(0x86ff);
    // A write there changes only the CONFIG_DATA part, never CONFIG_ADDRESS.
    const nic = standardDevice();
    bridge.addDevice(nic, 1);
    outl(0xcf8, pciConfigAddress(0, 1, 0, 0x3c));
    pio.write(0xcfb, 4, 0x00_00_2a_ff);
    expect(inl(0xcf8)).toBe(pciConfigAddress(0, 1, 0, 0x3c));
    expect(nic.config.interruptLine).toBe(0x2a);
    // Accesses running past 0xcff never reach the bridge (the bus rejects them).
    expect(pio.read(0xcfe, 4)).toBe(0xffffffff);
  });

  it('implements CONFIG_ADDRESS as a dword-only register with reserved bits reading 0', () => {
    const { outl, outw, outb, inl, inw, inb } = setup();
    outl(0xcf8, 0x80001234);
    expect(inl(0xcf8)).toBe(0x80001234);
    outl(0xcf8, 0xffffffff);
    expect(inl(0xcf8)).toBe(0x80fffffc); // bits 30:24 and 1:0 read 0
    outl(0xcf8, 0x80000000);
    outb(0xcf8, 0x12);
    outb(0xcfb, 0x00);
    outw(0xcfa, 0x1234);
    expect(inl(0xcf8)).toBe(0x80000000);
    expect([inb(0xcf8), inb(0xcf9), inb(0xcfa), inb(0xcfb)]).toEqual([0xff, 0xff, 0xff, 0xff]);
    expect(inw(0xcf8)).toBe(0xffff);
    expect(inw(0xcfa)).toBe(0xffff);
  });

  it("passes Linux's pci_check_type1() and fails its pci_check_type2()", () => {
    const { outl, outb, inl, inw, inb, bridge } = setup();
    bridge.addDevice(standardDevice(), 1);
    outl(0xcf8, 0x8000_1004); // some earlier value to restore
    // pci_check_type1 (arch/x86/pci/direct.c)
    outb(0xcfb, 0x01);
    const tmp = inl(0xcf8);
    outl(0xcf8, 0x80000000);
    expect(inl(0xcf8)).toBe(0x80000000);
    // pci_sanity_check: some devfn on bus 0 has class PCI_CLASS_BRIDGE_HOST (read with pci_conf1_read, len 2).
    let found = -1;
    for (let devfn = 0; devfn < 0x100 && found < 0; devfn++) {
      outl(0xcf8, (0x80000000 | (devfn << 8) | (0x0a & ~3)) >>> 0);
      if (inw(0xcfc + (0x0a & 2)) === 0x0600) found = devfn;
    }
    expect(found).toBe(0);
    outl(0xcf8, tmp);
    expect(inl(0xcf8)).toBe(0x8000_1004);
    // pci_check_type2: must not look like mechanism #2.
    outb(0xcfb, 0x00);
    outb(0xcf8, 0x00);
    outb(0xcfa, 0x00);
    expect(inb(0xcf8) === 0x00 && inb(0xcfa) === 0x00).toBe(false);
  });

  it('treats extended register numbers (CONFIG_ADDRESS bits 27:24) as nonexistent registers', () => {
    const { bridge, outl, inl, pio } = setup();
    const nic = standardDevice();
    bridge.addDevice(nic, 1);
    // Linux's PCI_CONF1_ADDRESS for register 0x104 of 00:01.0.
    const extended = (pciConfigAddress(0, 1, 0, 0x04) | (0x1 << 24)) >>> 0;
    outl(0xcf8, extended);
    expect(inl(0xcf8)).toBe(pciConfigAddress(0, 1, 0, 0x04)); // reserved bits read 0
    expect(inl(0xcfc)).toBe(0xffffffff); // not an alias of offset 0x04
    pio.write(0xcfc, 2, PCI_COMMAND_MEMORY);
    expect(nic.config.command).toBe(0);
    outl(0xcf8, pciConfigAddress(0, 1, 0, 0x04));
    pio.write(0xcfc, 2, PCI_COMMAND_MEMORY);
    expect(nic.config.command).toBe(PCI_COMMAND_MEMORY);
  });
});

describe('PCI configuration header', () => {
  it('keeps read-only fields read-only', () => {
    const { bridge, cfgRead, cfgWrite } = setup();
    const nic = standardDevice();
    bridge.addDevice(nic, 1);
    const before = [0x00, 0x08, 0x0c, 0x2c, 0x30, 0x34, 0x38].map((r) => cfgRead(1, r, 4));
    cfgWrite(1, 0x00, 4, 0xdeadbeef);
    cfgWrite(1, 0x08, 4, 0xffffffff);
    cfgWrite(1, 0x0a, 2, 0x0101);
    cfgWrite(1, 0x0e, 1, 0x80); // header type
    cfgWrite(1, 0x0f, 1, 0x40); // BIST start
    cfgWrite(1, 0x2c, 4, 0x12345678);
    cfgWrite(1, 0x30, 4, 0xffffffff); // no expansion ROM: sizes to 0
    cfgWrite(1, 0x34, 1, 0x80);
    cfgWrite(1, 0x3d, 1, 0x04);
    const after = [0x00, 0x08, 0x0c, 0x2c, 0x30, 0x34, 0x38].map((r) => cfgRead(1, r, 4));
    expect(after[0]).toBe(before[0]);
    expect(after[1]).toBe(before[1]);
    expect(after[1]).toBe(0x02000001);
    expect(after[3]).toBe(before[3]);
    expect(after[4]).toBe(0);
    expect(after[5]).toBe(0);
    expect(cfgRead(1, 0x0e, 2)).toBe(0);
    expect(cfgRead(1, 0x3d, 1)).toBe(1);
  });

  it('lets only the implemented command bits be written', () => {
    const { bridge, cfgRead, cfgWrite } = setup();
    const nic = standardDevice();
    bridge.addDevice(nic, 1);
    cfgWrite(1, 0x04, 2, 0xffff);
    const writable =
      PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_PARITY | PCI_COMMAND_SERR | PCI_COMMAND_INTX_DISABLE;
    expect(cfgRead(1, 0x04, 2)).toBe(writable);
    expect(nic.config.busMasterEnabled).toBe(true);
    expect(nic.config.interruptDisabled).toBe(true);
    cfgWrite(1, 0x04, 2, 0);
    expect(cfgRead(1, 0x04, 2)).toBe(0);
  });

  it('clears status error bits by writing 1 and leaves read-only status bits alone', () => {
    const { bridge, cfgRead, cfgWrite } = setup();
    const nic = standardDevice();
    nic.config.addCapability(PCI_CAP_ID_VNDR, 16);
    bridge.addDevice(nic, 1);
    nic.config.raiseStatus(PCI_STATUS_REC_MASTER_ABORT | PCI_STATUS_SIG_TARGET_ABORT);
    nic.config.setInterruptStatus(true);
    const all = PCI_STATUS_REC_MASTER_ABORT | PCI_STATUS_SIG_TARGET_ABORT | PCI_STATUS_CAP_LIST | PCI_STATUS_INTERRUPT;
    expect(cfgRead(1, 0x06, 2)).toBe(all);
    cfgWrite(1, 0x06, 2, 0); // writing 0 changes nothing
    expect(cfgRead(1, 0x06, 2)).toBe(all);
    // A dword write to the command register carries status bits of 0: no clearing.
    cfgWrite(1, 0x04, 4, PCI_COMMAND_MASTER);
    expect(cfgRead(1, 0x06, 2)).toBe(all);
    cfgWrite(1, 0x06, 2, PCI_STATUS_REC_MASTER_ABORT);
    expect(cfgRead(1, 0x06, 2)).toBe(all & ~PCI_STATUS_REC_MASTER_ABORT);
    cfgWrite(1, 0x07, 1, 0xff); // byte write to the high half clears the rest
    expect(cfgRead(1, 0x06, 2)).toBe(PCI_STATUS_CAP_LIST | PCI_STATUS_INTERRUPT);
    cfgWrite(1, 0x04, 4, 0xffff0000 | PCI_COMMAND_MASTER);
    expect(cfgRead(1, 0x06, 2)).toBe(PCI_STATUS_CAP_LIST | PCI_STATUS_INTERRUPT);
    expect(cfgRead(1, 0x04, 2)).toBe(PCI_COMMAND_MASTER);
  });

  it('builds a capability list a driver can walk from the port side', () => {
    const { bridge, cfgRead, cfgWrite } = setup();
    const dev = standardDevice('virtio');
    const common = dev.config.addCapability(PCI_CAP_ID_VNDR, 16); // virtio_pci_cap
    dev.config.setU8(common + 2, 16); // cap_len
    dev.config.setU8(common + 3, 1); // cfg_type VIRTIO_PCI_CAP_COMMON_CFG
    const msix = dev.config.addCapability(PCI_CAP_ID_MSIX, 12);
    dev.config.setU16(msix + 2, 3); // table size - 1
    dev.config.setWritable(msix + 2, 2, 0xc000); // MSI-X enable + function mask
    const notify = dev.config.addCapability(PCI_CAP_ID_VNDR, 20); // virtio_pci_notify_cap
    bridge.addDevice(dev, 4);

    expect(cfgRead(4, 0x06, 2) & PCI_STATUS_CAP_LIST).toBe(PCI_STATUS_CAP_LIST);
    const walked: [number, number][] = [];
    let ptr = cfgRead(4, 0x34, 1) & 0xfc;
    while (ptr !== 0 && walked.length < 48) {
      walked.push([ptr, cfgRead(4, ptr, 1)]);
      ptr = cfgRead(4, ptr + 1, 1) & 0xfc;
    }
    expect(walked).toEqual([
      [common, PCI_CAP_ID_VNDR],
      [msix, PCI_CAP_ID_MSIX],
      [notify, PCI_CAP_ID_VNDR],
    ]);
    expect(common).toBe(0x40);
    for (const [off] of walked) expect(off % 4).toBe(0);
    expect(dev.config.capabilities()).toEqual(walked.map(([offset, id]) => ({ id, offset })));
    expect(cfgRead(4, common, 4)).toBe(0x01100000 | (msix << 8) | PCI_CAP_ID_VNDR);
    // Only the bits the device made writable change; the list links are read-only.
    cfgWrite(4, msix, 4, 0xffffffff);
    expect(cfgRead(4, msix, 4)).toBe(((0xc003 << 16) | (notify << 8) | PCI_CAP_ID_MSIX) >>> 0);
    cfgWrite(4, common, 4, 0);
    expect(cfgRead(4, common + 1, 1)).toBe(msix);
  });

  it('runs the device hooks for each dword piece', () => {
    const config = new PciConfigSpace();
    const cap = config.addCapability(PCI_CAP_ID_VNDR, 20);
    config.setWritable(cap + 16, 4, 0xffffffff);
    const reads: [number, number][] = [];
    const writes: [number, number][] = [];
    config.beforeRead = (offset, length) => {
      reads.push([offset, length]);
      if (offset >= cap + 16) config.setU32(cap + 16, 0xcafef00d);
    };
    config.afterWrite = (offset, length) => writes.push([offset, length]);
    expect(config.read(cap + 16, 4)).toBe(0xcafef00d);
    expect(config.read(cap + 14, 4)).toBe(0xf00d0000); // split into two dword pieces
    expect(reads).toEqual([
      [cap + 16, 4],
      [cap + 14, 2],
      [cap + 16, 2],
    ]);
    config.write(cap + 15, 2, 0xffff);
    expect(writes).toEqual([
      [cap + 15, 1],
      [cap + 16, 1],
    ]);
  });

  it('never reaches past offset 255 and tolerates invalid arguments', () => {
    const config = new PciConfigSpace();
    config.setWritable(0xfc, 4, 0xffffffff);
    config.write(0xfc, 4, 0x11223344);
    expect(config.read(0xfe, 4)).toBe(0xffff1122);
    expect(config.read(0xff, 2)).toBe(0xff11);
    config.write(0xff, 4, 0xaabbccdd);
    expect(config.getU32(0xfc)).toBe(0xdd223344);
    for (const [o, s] of [
      [256, 1],
      [-1, 4],
      [1.5, 2],
      [NaN, 1],
      [0, 0],
      [0, 3.5],
      [0, 8],
    ]) {
      expect(() => config.read(o, s)).not.toThrow();
      expect(() => config.write(o, s, 0xffffffff)).not.toThrow();
    }
    expect(config.read(256, 1)).toBe(0xff);
    expect(config.read(-4, 4)).toBe(0xffffffff);
    expect(() => config.write(0x04, 2, NaN)).not.toThrow();
    expect(() => config.setU8(256, 0)).toThrow(PciConfigError);
  });
});

describe('PCI BARs', () => {
  it('implements the sizing protocol for 32-bit memory, I/O and 64-bit memory BARs', () => {
    const { bridge, cfgRead, cfgWrite } = setup();
    const nic = standardDevice();
    const big = new TestDevice('big', [
      [0, { kind: 'memory64', size: 2 ** 33 }],
      [2, { kind: 'memory32', size: 0x100000, prefetchable: true }],
      [3, { kind: 'io', size: 256 }],
    ]);
    bridge.addDevice(nic, 1);
    bridge.addDevice(big, 2);
    const size = (slot: number, reg: number): number => {
      const saved = cfgRead(slot, reg, 4);
      cfgWrite(slot, reg, 4, 0xffffffff);
      const mask = cfgRead(slot, reg, 4);
      cfgWrite(slot, reg, 4, saved);
      expect(cfgRead(slot, reg, 4)).toBe(saved);
      return mask;
    };
    expect(size(1, 0x10)).toBe(0xfffff000); // 4 KiB, 32-bit, not prefetchable
    expect(size(1, 0x14)).toBe(0x0000ffe1); // 32 ports, upper 16 bits hardwired 0
    expect(size(1, 0x18)).toBe(0xffffc00c); // 16 KiB, 64-bit, prefetchable
    expect(size(1, 0x1c)).toBe(0xffffffff); // upper half of the 64-bit BAR
    expect(size(1, 0x20)).toBe(0xffffff00); // 256 bytes
    expect(size(1, 0x24)).toBe(0); // unimplemented
    expect(size(2, 0x10)).toBe(0x00000004); // 8 GiB: no writable bits in the low dword
    expect(size(2, 0x14)).toBe(0xfffffffe);
    expect(size(2, 0x18)).toBe(0xfff00008);
    expect(size(2, 0x1c)).toBe(0x0000ff01);
    expect(size(0, 0x10)).toBe(0); // the host bridge has no BARs
    // Sizing with decoding off reports nothing.
    expect(bridge.callbackErrors).toBe(0);
  });

  it('reports windows when the command register enables and disables decoding', () => {
    const { bridge, cfgWrite, events } = setup();
    const nic = standardDevice();
    bridge.addDevice(nic, 1);
    cfgWrite(1, 0x10, 4, 0xfebf0000);
    cfgWrite(1, 0x14, 4, 0xc041); // address bits below the size are read-only
    cfgWrite(1, 0x18, 4, 0x00004000);
    cfgWrite(1, 0x1c, 4, 0x00000001);
    cfgWrite(1, 0x20, 4, 0xfebf1000);
    expect(events).toEqual([]);
    expect(nic.config.barAddress(1)).toEqual({ kind: 'io', address: 0xc040n, size: 32n, prefetchable: false, decoding: false });

    cfgWrite(1, 0x04, 2, PCI_COMMAND_MEMORY);
    expect(events).toEqual([
      { device: 'nic', bar: 0, oldRange: undefined, newRange: { kind: 'memory32', space: 'memory', base: 0xfebf0000n, size: 0x1000n } },
      { device: 'nic', bar: 2, oldRange: undefined, newRange: { kind: 'memory64', space: 'memory', base: 0x1_0000_4000n, size: 0x4000n } },
      { device: 'nic', bar: 4, oldRange: undefined, newRange: { kind: 'memory32', space: 'memory', base: 0xfebf1000n, size: 0x100n } },
    ]);
    events.length = 0;
    cfgWrite(1, 0x04, 1, PCI_COMMAND_MEMORY | PCI_COMMAND_IO);
    expect(events).toEqual([
      { device: 'nic', bar: 1, oldRange: undefined, newRange: { kind: 'io', space: 'io', base: 0xc040n, size: 32n } },
    ]);
    events.length = 0;
    cfgWrite(1, 0x04, 2, PCI_COMMAND_MASTER | PCI_COMMAND_MEMORY | PCI_COMMAND_IO); // no change in decoding
    expect(events).toEqual([]);
    cfgWrite(1, 0x04, 2, PCI_COMMAND_IO);
    expect(events.map((e) => [e.bar, e.oldRange?.base, e.newRange])).toEqual([
      [0, 0xfebf0000n, undefined],
      [2, 0x1_0000_4000n, undefined],
      [4, 0xfebf1000n, undefined],
    ]);
    events.length = 0;
    cfgWrite(1, 0x04, 2, 0);
    expect(events).toEqual([{ device: 'nic', bar: 1, oldRange: { kind: 'io', space: 'io', base: 0xc040n, size: 32n }, newRange: undefined }]);
  });

  it('reports BAR moves exactly, including the halfway state of a 64-bit move', () => {
    const { bridge, cfgWrite, events } = setup();
    const nic = standardDevice();
    bridge.addDevice(nic, 1);
    cfgWrite(1, 0x10, 4, 0xe0000000);
    cfgWrite(1, 0x18, 4, 0xe0010000);
    cfgWrite(1, 0x04, 2, PCI_COMMAND_MEMORY);
    events.length = 0;
    cfgWrite(1, 0x10, 4, 0xe0002000);
    expect(events).toEqual([
      {
        device: 'nic',
        bar: 0,
        oldRange: { kind: 'memory32', space: 'memory', base: 0xe0000000n, size: 0x1000n },
        newRange: { kind: 'memory32', space: 'memory', base: 0xe0002000n, size: 0x1000n },
      },
    ]);
    events.length = 0;
    cfgWrite(1, 0x12, 2, 0xe000); // word write to the upper half: no change
    expect(events).toEqual([]);
    cfgWrite(1, 0x13, 1, 0xd0); // byte write moves it
    expect(events.map((e) => e.newRange?.base)).toEqual([0xd0002000n]);
    events.length = 0;
    cfgWrite(1, 0x18, 4, 0x00000000);
    cfgWrite(1, 0x1c, 4, 0x00000080);
    expect(events.map((e) => [e.bar, e.oldRange?.base, e.newRange?.base])).toEqual([
      [2, 0xe0010000n, 0n],
      [2, 0n, 0x80_0000_0000n],
    ]);
    events.length = 0;
    cfgWrite(1, 0x1c, 4, 0xffffffff);
    cfgWrite(1, 0x18, 4, 0xffffffff);
    expect(events.map((e) => e.newRange?.base)).toEqual([0xffffffff_00000000n, 0xffffffff_ffffc000n]);
    const last = events[1].newRange!;
    expect(last.base + last.size).toBe(1n << 64n);
    expect(nic.config.barAddress(2)?.address).toBe(0xffffffff_ffffc000n);
    expect(nic.config.barAddress(3)).toBeUndefined(); // upper half is not a BAR of its own
  });

  it('lets the VMM map BAR windows on its buses', () => {
    const mmio = new MmioBus();
    const pio = new PioBus();
    const windows = new Map<string, ReturnType<typeof pciBarBusDevice>>();
    const bridge = new PciHostBridge({
      onBarChange: (device, bar, oldRange, newRange) => {
        const key = `${device.name}/${bar}`;
        let window = windows.get(key);
        if (!window) windows.set(key, (window = pciBarBusDevice(device, bar)));
        const space = (newRange ?? oldRange)!.space;
        const bus = space === 'io' ? pio : mmio;
        if (oldRange) bus.unregister(window);
        if (newRange) bus.register(Number(newRange.base), Number(newRange.size), window);
      },
    });
    const nic = standardDevice();
    bridge.addDevice(nic, 1);
    const assigned = bridge.assignResources({ mmioBase: 0xc000_0000, mmioSize: 0x1000_0000, ioBase: 0xc000, ioSize: 0x1000 });
    const bar0 = assigned.find((a) => a.barIndex === 0)!.range;
    const bar1 = assigned.find((a) => a.barIndex === 1)!.range;
    expect(mmio.read(Number(bar0.base) + 8, 4)).toBe(0x11223344);
    pio.write(Number(bar1.base) + 2, 2, 0xbeef);
    expect(nic.accesses).toEqual([
      { bar: 0, offset: 8, size: 4 },
      { bar: 1, offset: 2, size: 2, value: 0xbeef },
    ]);
    // Moving BAR 0 remaps the window.
    nic.config.write(0x10, 4, 0xd000_0000);
    expect(mmio.read(Number(bar0.base) + 8, 4)).toBe(0xffffffff);
    expect(mmio.read(0xd000_0008, 4)).toBe(0x11223344);
  });

  it('keeps going when the VMM callback throws', () => {
    const errors: unknown[] = [];
    const bridge = new PciHostBridge({
      onBarChange: () => {
        throw new Error('overlap');
      },
      onCallbackError: (e) => errors.push(e),
    });
    const nic = standardDevice();
    bridge.addDevice(nic, 1);
    bridge.write(0, 4, pciConfigAddress(0, 1, 0, 4));
    expect(() => bridge.write(4, 2, PCI_COMMAND_MEMORY)).not.toThrow();
    expect(bridge.callbackErrors).toBe(3);
    expect(errors).toHaveLength(3);
    expect(nic.config.command).toBe(PCI_COMMAND_MEMORY);
  });

  it('validates BAR definitions', () => {
    const c = new PciConfigSpace();
    expect(() => c.defineBar(0, { kind: 'memory32', size: 8 })).toThrow(PciConfigError);
    expect(() => c.defineBar(0, { kind: 'memory32', size: 0x3000 })).toThrow(PciConfigError);
    expect(() => c.defineBar(0, { kind: 'io', size: 512 })).toThrow(PciConfigError);
    expect(() => c.defineBar(0, { kind: 'io', size: 2 })).toThrow(PciConfigError);
    expect(() => c.defineBar(0, { kind: 'io', size: 16, prefetchable: true })).toThrow(PciConfigError);
    expect(() => c.defineBar(5, { kind: 'memory64', size: 0x1000 })).toThrow(PciConfigError);
    c.defineBar(4, { kind: 'memory64', size: 0x1000 });
    expect(() => c.defineBar(5, { kind: 'memory32', size: 0x1000 })).toThrow(PciConfigError);
    expect(() => c.defineBar(6, { kind: 'memory32', size: 0x1000 })).toThrow(PciConfigError);
  });
});

describe('PciHostBridge.assignResources', () => {
  it('gives every BAR a naturally aligned, non-overlapping range inside the windows and enables decoding', () => {
    const { bridge, events, cfgRead } = setup();
    const devices = [
      standardDevice('a'),
      new TestDevice('b', [
        [0, { kind: 'memory32', size: 0x10 }],
        [1, { kind: 'memory64', size: 0x100000 }],
        [3, { kind: 'io', size: 4 }],
        [5, { kind: 'io', size: 256 }],
      ]),
      new TestDevice('c', [[0, { kind: 'memory32', size: 0x2000_0000 }]]),
      new TestDevice('d', [[2, { kind: 'memory32', size: 0x800 }]]),
      new TestDevice('e', []),
    ];
    for (const d of devices) bridge.addDevice(d);
    const windows = { mmioBase: 0xc000_0000, mmioSize: 0x3ec0_0000, ioBase: 0x1000, ioSize: 0xf000 };
    const assigned = bridge.assignResources(windows);
    expect(assigned).toHaveLength(4 + 4 + 1 + 1);
    const ranges = assigned.map((a) => a.range);
    for (const r of ranges) {
      expect(r.base % r.size).toBe(0n);
      if (r.space === 'io') {
        expect(r.base).toBeGreaterThanOrEqual(0x1000n);
        expect(r.base + r.size).toBeLessThanOrEqual(0x10000n);
      } else {
        expect(r.base).toBeGreaterThanOrEqual(0xc000_0000n);
        expect(r.base + r.size).toBeLessThanOrEqual(0xfec0_0000n);
      }
    }
    for (let i = 0; i < ranges.length; i++)
      for (let j = i + 1; j < ranges.length; j++) {
        const [x, y] = [ranges[i], ranges[j]];
        if (x.space !== y.space) continue;
        expect(x.base < y.base + y.size && y.base < x.base + x.size).toBe(false);
      }
    // Decoding is on, the registers hold the addresses, and the VMM heard of every window.
    for (const a of assigned) {
      expect(a.device.config.barAddress(a.barIndex)).toMatchObject({ address: a.range.base, decoding: true });
      expect(events).toContainEqual({ device: a.device.name, bar: a.barIndex, oldRange: undefined, newRange: a.range });
    }
    expect(events).toHaveLength(assigned.length);
    expect(cfgRead(1, 0x04, 2)).toBe(PCI_COMMAND_IO | PCI_COMMAND_MEMORY);
    expect(cfgRead(3, 0x04, 2)).toBe(PCI_COMMAND_MEMORY);
    expect(cfgRead(5, 0x04, 2)).toBe(0); // no BARs
    expect(cfgRead(0, 0x04, 2)).toBe(0);

    // Reassigning unmaps the old windows before mapping the new ones.
    events.length = 0;
    const again = bridge.assignResources({ ...windows, mmioBase: 0x8000_0000, mmio64Base: 2n ** 40n, mmio64Size: 2n ** 30n });
    const firstMapIndex = events.findIndex((e) => e.newRange !== undefined);
    expect(events.slice(0, firstMapIndex).every((e) => e.newRange === undefined)).toBe(true);
    const b64 = again.find((a) => a.device.name === 'b' && a.barIndex === 1)!.range;
    expect(b64.base).toBe(2n ** 40n);
    expect(again.filter((a) => a.range.kind === 'memory64').every((a) => a.range.base >= 2n ** 40n)).toBe(true);
  });

  it('refuses windows that are too small or out of range', () => {
    const bridge = new PciHostBridge();
    bridge.addDevice(new TestDevice('c', [[0, { kind: 'memory32', size: 0x2000_0000 }]]));
    expect(() => bridge.assignResources({ mmioBase: 0xf000_0000, mmioSize: 0x1000_0000, ioBase: 0xc000, ioSize: 0x1000 })).toThrow(
      PciError,
    );
    expect(() => bridge.assignResources({ mmioBase: 0xf000_0000, mmioSize: 0x2000_0000, ioBase: 0xc000, ioSize: 0x1000 })).toThrow(
      PciError,
    );
    expect(() => bridge.assignResources({ mmioBase: 0xc000_0000, mmioSize: 0x2000_0000, ioBase: 0xf000, ioSize: 0x2000 })).toThrow(
      PciError,
    );
  });

  it('places devices in slots', () => {
    const bridge = new PciHostBridge();
    expect(bridge.addDevice(standardDevice('a'))).toBe(1);
    expect(bridge.addDevice(standardDevice('b'), 31)).toBe(31);
    expect(bridge.addDevice(standardDevice('c'))).toBe(2);
    expect(() => bridge.addDevice(standardDevice('d'), 31)).toThrow(PciError);
    expect(() => bridge.addDevice(standardDevice('e'), 32)).toThrow(PciError);
    expect(bridge.devices.map((d) => d.slot)).toEqual([0, 1, 2, 31]);
  });
});

describe('PCI host bridge against a hostile guest', () => {
  function mulberry32(seed: number): () => number {
    let a = seed >>> 0;
    return () => {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }

  it('survives 20000 random accesses and reports every BAR window exactly', () => {
    const rand = mulberry32(0x5eed);
    const int = (n: number) => Math.floor(rand() * n);
    const tracked = new Map<string, PciBarRange | undefined>();
    const problems: string[] = [];
    let changes = 0;
    const limits = { io: 0x1_0000n, memory32: 1n << 32n, memory64: 1n << 64n };
    const bridge = new PciHostBridge({
      onBarChange: (device, bar, oldRange, newRange) => {
        const key = `${device.name}/${bar}`;
        const prev = tracked.get(key);
        const same = (a?: PciBarRange, b?: PciBarRange) => (a === undefined ? b === undefined : b !== undefined && a.base === b.base && a.size === b.size);
        if (!same(prev, oldRange)) problems.push(`${key}: old range does not match the last reported one`);
        if (same(oldRange, newRange)) problems.push(`${key}: reported a non-change`);
        const actual = device.config.barRange(bar);
        if (!same(actual, newRange)) problems.push(`${key}: new range is not what the BAR decodes`);
        if (newRange) {
          if (newRange.base < 0n || newRange.base % newRange.size !== 0n || newRange.base + newRange.size > limits[newRange.kind])
            problems.push(`${key}: range ${newRange.base.toString(16)}+${newRange.size.toString(16)} outside the ${newRange.kind} space`);
        }
        tracked.set(key, newRange);
        changes++;
      },
    });
    const devices = [
      standardDevice('a'),
      new TestDevice('b', [
        [0, { kind: 'memory64', size: 2 ** 33, prefetchable: true }],
        [2, { kind: 'io', size: 4 }],
        [3, { kind: 'io', size: 256 }],
        [4, { kind: 'memory64', size: 16 }],
      ]),
      new TestDevice('c', [[5, { kind: 'memory32', size: 2 ** 30 }]]),
    ];
    let maxConfigByte = 0;
    devices.forEach((d, i) => {
      const cap = d.config.addCapability(PCI_CAP_ID_MSIX, 12);
      d.config.setWritable(cap + 2, 2, 0xc000);
      bridge.addDevice(d, [7, 13, 30][i]);
      const { read, write } = d.config;
      d.config.read = (o, s) => ((maxConfigByte = Math.max(maxConfigByte, o + s)), read.call(d.config, o, s));
      d.config.write = (o, s, v) => ((maxConfigByte = Math.max(maxConfigByte, o + s)), write.call(d.config, o, s, v));
    });
    const slots = bridge.devices.map((d) => d.slot);
    const window = { mmioBase: 0x8000_0000, mmioSize: 0x8000_0000, ioBase: 0xc000, ioSize: 0x1000, mmio64Base: 2n ** 36n, mmio64Size: 2n ** 36n };
    const assigned = bridge.assignResources(window);
    for (const a of assigned) {
      const r = a.range;
      const [lo, hi] =
        r.kind === 'io' ? [0xc000n, 0xd000n] : r.kind === 'memory64' ? [2n ** 36n, 2n ** 37n] : [0x8000_0000n, 1n << 32n];
      expect(r.base >= lo && r.base + r.size <= hi).toBe(true);
    }
    expect(problems).toEqual([]);

    const pio = new PioBus();
    pio.register(PCI_CONFIG_ADDRESS_PORT, PCI_CONFIG_PORT_COUNT, bridge);
    const sizes: AccessSize[] = [1, 2, 4];
    const value = (): number => {
      switch (int(5)) {
        case 0:
          return 0;
        case 1:
          return 0xffffffff;
        case 2:
          return 1 << int(32);
        default:
          return int(2 ** 32);
      }
    };
    for (let i = 0; i < 20000; i++) {
      const r = rand();
      if (r < 0.3) {
        // Select a register of a present (or nearby) device, favouring command and BARs.
        const slot = rand() < 0.8 ? slots[int(slots.length)] : int(32);
        const reg = rand() < 0.6 ? [0x04, 0x10, 0x14, 0x18, 0x1c, 0x20, 0x24][int(7)] : int(256);
        let addr = pciConfigAddress(rand() < 0.95 ? 0 : int(256), slot, rand() < 0.95 ? 0 : int(8), reg);
        if (rand() < 0.05) addr = (addr ^ (1 << (24 + int(8)))) >>> 0;
        pio.write(0xcf8, 4, addr);
      } else {
        const port = 0xcf8 + int(8);
        const size = sizes[int(3)];
        expect(() => (rand() < 0.5 ? pio.read(port, size) : pio.write(port, size, value()))).not.toThrow();
      }
      // Direct calls with junk arguments, as a buggy bus might make them.
      if (i % 1000 === 0) {
        for (const [o, s, v] of [
          [-1, 4, 0],
          [7, 4, 1],
          [2.5, 2, 3],
          [4, 3, NaN],
          [0, 4, Infinity],
          [4, 4, -1],
          [NaN, 1, 0],
        ] as [number, AccessSize, number][]) {
          expect(() => bridge.read(o, s)).not.toThrow();
          expect(() => bridge.write(o, s, v)).not.toThrow();
        }
      }
    }
    expect(problems).toEqual([]);
    expect(changes).toBeGreaterThan(100); // the guest did move and toggle BARs
    expect(maxConfigByte).toBeLessThanOrEqual(256);
    // What the VMM was told is what the devices decode now.
    for (const d of devices)
      for (let bar = 0; bar < 6; bar++) {
        const key = `${d.name}/${bar}`;
        const now = d.config.barRange(bar);
        const told = tracked.get(key);
        expect(told === undefined ? now : { base: told.base, size: told.size }).toEqual(now === undefined ? undefined : { base: now.base, size: now.size });
      }
    // The host bridge's identity survived.
    expect(bridge.configRead(0, 0, 0, 0, 4)).toBe(0x12378086);
    expect(bridge.configRead(0, 0, 0, 0x08, 4)).toBe(0x06000002);
    expect(bridge.callbackErrors).toBe(0);
  });
});
