import { GuestMemory } from '../src/memory/guest-memory';
import { native } from '../src/native';

describe('GuestMemory', () => {
  let memory: GuestMemory;
  beforeEach(() => {
    memory = GuestMemory.allocate([
      { gpa: 0, size: 0x10000 },
      { gpa: 0x100000, size: 0x1000 },
    ]);
  });
  afterEach(() => memory.close());

  it('reads and writes by guest physical address, little-endian', () => {
    memory.writeU32(0x1000, 0xdeadbeef);
    expect(memory.readU8(0x1000)).toBe(0xef);
    expect(memory.readU16(0x1002)).toBe(0xdead);
    memory.writeU64(0x100ff8, 0x0102030405060708n);
    expect(memory.readU64(0x100ff8)).toBe(0x0102030405060708n);
    memory.write(0x20, Buffer.from('hello\0world'));
    expect(memory.readCString(0x20, 64)).toBe('hello');
    expect(memory.size).toBe(0x11000);
  });

  it.each([
    ['past the end of a region', 0xffff, 2],
    ['in the gap between regions', 0x20000, 1],
    ['past the last region', 0x101000, 1],
    ['negative', -1, 1],
    ['NaN', NaN, 1],
    ['fractional', 0.5, 1],
    ['beyond 2^53', 2 ** 60, 1],
    ['a huge length', 0, 2 ** 40],
    ['a negative length', 0x10, -5],
  ])('rejects an access %s', (_what, gpa, length) => {
    expect(() => memory.slice(gpa, length)).toThrow(expect.objectContaining({ code: 'EGUESTMEM' }));
    expect(memory.contains(gpa, length)).toBe(false);
  });

  it('rejects a write that would cross from one region into unmapped space', () => {
    expect(() => memory.write(0xfffe, new Uint8Array(4))).toThrow(/outside guest RAM/);
    // nothing was written before the check failed
    expect(memory.readU16(0xfffe)).toBe(0);
  });

  it('rejects overlapping or unaligned regions', () => {
    expect(() => GuestMemory.allocate([{ gpa: 0, size: 0x2000 }, { gpa: 0x1000, size: 0x1000 }])).toThrow(/overlaps/);
    expect(() => GuestMemory.allocate([{ gpa: 0x10, size: 0x1000 }])).toThrow(/aligned/);
  });

  it('a worker-style attach sees the same pages without owning them', () => {
    const before = native.mappingCount();
    const attached = GuestMemory.attach(memory.layout());
    attached.writeU8(0x42, 7);
    expect(memory.readU8(0x42)).toBe(7);
    attached.close();
    expect(native.mappingCount()).toBe(before);
    expect(memory.readU8(0x42)).toBe(7);
  });

  it('close() frees the mappings and later accesses throw', () => {
    const before = native.mappingCount();
    const m = GuestMemory.allocate([{ gpa: 0, size: 0x1000 }]);
    expect(native.mappingCount()).toBe(before + 1);
    m.close();
    expect(native.mappingCount()).toBe(before);
    expect(() => m.readU8(0)).toThrow(/closed/);
  });
});
