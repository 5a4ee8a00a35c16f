import { Bus, MmioBus, PioBus, type BusDevice, type AccessSize } from '../src/bus/bus';

class Recorder implements BusDevice {
  readonly accesses: string[] = [];
  constructor(readonly name: string, private readonly value = 0x12345678) {}
  read(offset: number, size: AccessSize): number {
    this.accesses.push(`r${offset}:${size}`);
    return this.value;
  }
  write(offset: number, size: AccessSize, value: number): void {
    this.accesses.push(`w${offset}:${size}=${value.toString(16)}`);
  }
}

describe('Bus', () => {
  it('routes accesses with offsets relative to the base', () => {
    const bus = new PioBus();
    const dev = new Recorder('uart');
    bus.register(0x3f8, 8, dev);
    bus.write(0x3fb, 1, 0x83);
    expect(bus.read(0x3fd, 1)).toBe(0x78);
    expect(dev.accesses).toEqual(['w3:1=83', 'r5:1']);
    expect(bus.accessCounts.get('uart')).toBe(2);
  });

  it('masks values to the access size (device returning junk high bits)', () => {
    const bus = new MmioBus();
    bus.register(0xd0000000, 0x1000, new Recorder('dev', -1));
    expect(bus.read(0xd0000000, 1)).toBe(0xff);
    expect(bus.read(0xd0000000, 2)).toBe(0xffff);
    expect(bus.read(0xd0000000, 4)).toBe(0xffffffff);
  });

  it('rejects overlapping ranges, naming both devices', () => {
    const bus = new PioBus();
    bus.register(0x60, 1, new Recorder('kbd-data'));
    expect(() => bus.register(0x5f, 2, new Recorder('other'))).toThrow(/other .* overlaps kbd-data/);
    expect(() => bus.register(0x60, 1, new Recorder('dup'))).toThrow(/overlaps/);
    bus.register(0x61, 1, new Recorder('adjacent')); // touching is fine
  });

  it('rejects invalid ranges', () => {
    const bus = new PioBus();
    expect(() => bus.register(-1, 1, new Recorder('neg'))).toThrow();
    expect(() => bus.register(0xffff, 2, new Recorder('past-end'))).toThrow();
    expect(() => bus.register(0, 0, new Recorder('empty'))).toThrow();
    expect(() => bus.register(1.5, 1, new Recorder('fraction'))).toThrow();
    expect(() => bus.register(NaN, 1, new Recorder('nan'))).toThrow();
  });

  it('reads all ones and counts accesses nobody claims', () => {
    const seen: string[] = [];
    const bus = new PioBus({ onUnclaimed: (a) => seen.push(`${a.isWrite ? 'w' : 'r'}${a.address.toString(16)}`) });
    expect(bus.read(0x1234, 1)).toBe(0xff);
    expect(bus.read(0x1234, 2)).toBe(0xffff);
    expect(bus.read(0x1234, 4)).toBe(0xffffffff);
    bus.write(0x80, 1, 1);
    expect(bus.unclaimedReads).toBe(3);
    expect(bus.unclaimedWrites).toBe(1);
    expect(seen).toEqual(['r1234', 'r1234', 'r1234', 'w80']);
  });

  it('an access straddling the end of a range is unclaimed', () => {
    const bus = new PioBus();
    const dev = new Recorder('dev');
    bus.register(0x100, 2, dev);
    expect(bus.read(0x101, 2)).toBe(0xffff);
    expect(bus.read(0x101, 1)).toBe(0x78);
    expect(dev.accesses).toEqual(['r1:1']);
  });

  it('unregister removes a device and clears the lookup cache', () => {
    const bus = new Bus('test', 0x1000);
    const dev = new Recorder('dev');
    bus.register(0x10, 4, dev);
    bus.read(0x10, 1);
    bus.unregister(dev);
    expect(bus.read(0x10, 1)).toBe(0xff);
    expect(bus.registered).toHaveLength(0);
  });

  it('survives a sweep of hostile addresses', () => {
    const bus = new PioBus();
    bus.register(0x3f8, 8, new Recorder('uart'));
    for (const address of [-1, 0x10000, 2 ** 53, NaN, Infinity, 0.5]) {
      expect(() => bus.read(address, 4)).not.toThrow();
      expect(() => bus.write(address, 4, 0xffffffff)).not.toThrow();
    }
  });
});
