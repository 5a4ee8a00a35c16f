// Tests for the MP table writer (src/arch/x86/mptable.ts). The table is parsed
// back here with raw offsets from the Intel MultiProcessor Specification 1.4,
// chapter 4, independently of the writer's constants.
import { GuestMemory } from '../src/memory/guest-memory';
import { mpTableSize, writeMpTable } from '../src/arch/x86/mptable';

interface Processor {
  type: 0;
  apicId: number;
  apicVersion: number;
  flags: number;
  signature: number;
  features: number;
}
interface Bus {
  type: 1;
  id: number;
  busType: string;
}
interface IoApic {
  type: 2;
  id: number;
  version: number;
  flags: number;
  address: number;
}
interface Interrupt {
  type: 3 | 4;
  intType: number;
  flags: number;
  srcBus: number;
  srcIrq: number;
  destId: number;
  destPin: number;
}
type Entry = Processor | Bus | IoApic | Interrupt;

interface Parsed {
  mpf: {
    signature: string;
    physPtr: number;
    length: number;
    specRev: number;
    feature1: number;
    feature2: number;
    sum: number;
  };
  header: {
    signature: string;
    length: number;
    specRev: number;
    oemId: string;
    productId: string;
    oemTablePtr: number;
    oemTableSize: number;
    entryCount: number;
    lapicAddress: number;
    extLength: number;
    extChecksum: number;
    sum: number;
  };
  entries: Entry[];
  /** Bytes walked from the header start to the end of the last entry. */
  walked: number;
}

function byteSum(bytes: Uint8Array): number {
  return bytes.reduce((s, b) => (s + b) & 0xff, 0);
}

function parse(memory: GuestMemory, mpfAddr: number): Parsed {
  const mpfBytes = memory.read(mpfAddr, 16);
  const mpf = {
    signature: mpfBytes.toString('latin1', 0, 4),
    physPtr: mpfBytes.readUInt32LE(4),
    length: mpfBytes[8],
    specRev: mpfBytes[9],
    feature1: mpfBytes[11],
    feature2: mpfBytes[12],
    sum: byteSum(mpfBytes),
  };
  const h = memory.read(mpf.physPtr, 44);
  const length = h.readUInt16LE(4);
  const table = memory.read(mpf.physPtr, length);
  const header = {
    signature: h.toString('latin1', 0, 4),
    length,
    specRev: h[6],
    oemId: h.toString('latin1', 8, 16),
    productId: h.toString('latin1', 16, 28),
    oemTablePtr: h.readUInt32LE(28),
    oemTableSize: h.readUInt16LE(32),
    entryCount: h.readUInt16LE(34),
    lapicAddress: h.readUInt32LE(36),
    extLength: h.readUInt16LE(40),
    extChecksum: h[42],
    sum: byteSum(table),
  };
  const entries: Entry[] = [];
  let p = 44;
  for (let i = 0; i < header.entryCount; i++) {
    const type = table[p];
    switch (type) {
      case 0:
        entries.push({
          type,
          apicId: table[p + 1],
          apicVersion: table[p + 2],
          flags: table[p + 3],
          signature: table.readUInt32LE(p + 4),
          features: table.readUInt32LE(p + 8),
        });
        expect([...table.subarray(p + 12, p + 20)]).toEqual(new Array(8).fill(0));
        p += 20;
        break;
      case 1:
        entries.push({ type, id: table[p + 1], busType: table.toString('latin1', p + 2, p + 8) });
        p += 8;
        break;
      case 2:
        entries.push({
          type,
          id: table[p + 1],
          version: table[p + 2],
          flags: table[p + 3],
          address: table.readUInt32LE(p + 4),
        });
        p += 8;
        break;
      case 3:
      case 4:
        entries.push({
          type,
          intType: table[p + 1],
          flags: table.readUInt16LE(p + 2),
          srcBus: table[p + 4],
          srcIrq: table[p + 5],
          destId: table[p + 6],
          destPin: table[p + 7],
        });
        p += 8;
        break;
      default:
        throw new Error(`unknown MP entry type ${type} at offset ${p}`);
    }
  }
  return { mpf, header, entries, walked: p };
}

describe('writeMpTable', () => {
  let memory: GuestMemory;
  beforeEach(() => {
    memory = GuestMemory.allocate([{ gpa: 0, size: 0x100000 }]);
  });
  afterEach(() => memory.close());

  it.each([1, 2, 8])('writes a valid table for %i CPU(s)', (cpus) => {
    const loc = writeMpTable(memory, { cpus });
    expect(loc.floatingPointer).toBe(0x9fc00);
    expect(loc.configTable).toBe(0x9fc10);
    expect(loc.size).toBe(16 + 44 + 20 * cpus + 8 + 8 + 16 * 8 + 2 * 8);
    expect(loc.size).toBe(mpTableSize(cpus));

    const t = parse(memory, loc.floatingPointer);
    // Floating pointer.
    expect(t.mpf.signature).toBe('_MP_');
    expect(t.mpf.physPtr).toBe(loc.configTable);
    expect(t.mpf.length).toBe(1);
    expect(t.mpf.specRev).toBe(4);
    expect(t.mpf.feature1).toBe(0);
    expect(t.mpf.feature2 & 0x80).toBe(0); // IMCRP clear: virtual wire mode
    expect(t.mpf.sum).toBe(0);
    expect([...memory.read(loc.floatingPointer + 13, 3)]).toEqual([0, 0, 0]);

    // Header.
    expect(t.header.signature).toBe('PCMP');
    expect(t.header.specRev).toBe(4);
    expect(t.header.length).toBe(loc.size - 16);
    expect(t.walked).toBe(t.header.length);
    expect(t.header.sum).toBe(0);
    expect(t.header.oemId).toBe('TSKVM   ');
    expect(t.header.productId).toBe('TSKVM VM    ');
    expect(t.header.oemTablePtr).toBe(0);
    expect(t.header.oemTableSize).toBe(0);
    expect(t.header.lapicAddress).toBe(0xfee00000);
    expect(t.header.extLength).toBe(0);
    expect(t.header.extChecksum).toBe(0);
    expect(t.header.entryCount).toBe(cpus + 1 + 1 + 16 + 2);

    // Entry order: processors, bus, I/O APIC, I/O interrupts, local interrupts.
    const types = t.entries.map((e) => e.type);
    expect(types).toEqual([
      ...new Array(cpus).fill(0),
      1,
      2,
      ...new Array(16).fill(3),
      4,
      4,
    ]);

    const procs = t.entries.filter((e): e is Processor => e.type === 0);
    procs.forEach((cpu, i) => {
      expect(cpu.apicId).toBe(i);
      expect(cpu.apicVersion).toBe(0x14);
      expect(cpu.flags & 1).toBe(1); // EN
      expect(cpu.flags & 2).toBe(i === 0 ? 2 : 0); // BP only on CPU 0
      expect(cpu.flags & ~3).toBe(0);
      expect(cpu.signature).toBe(0x600);
      expect(cpu.features).toBe((1 << 0) | (1 << 9));
    });

    const bus = t.entries[cpus] as Bus;
    expect(bus).toEqual({ type: 1, id: 0, busType: 'ISA   ' });

    const ioapic = t.entries[cpus + 1] as IoApic;
    expect(ioapic).toEqual({ type: 2, id: cpus, version: 0x11, flags: 1, address: 0xfec00000 });
    expect(procs.map((c) => c.apicId)).not.toContain(ioapic.id);

    const ioInts = t.entries.filter((e): e is Interrupt => e.type === 3);
    ioInts.forEach((e, irq) => {
      expect(e).toEqual({ type: 3, intType: 0, flags: 0, srcBus: 0, srcIrq: irq, destId: ioapic.id, destPin: irq });
    });

    const localInts = t.entries.filter((e): e is Interrupt => e.type === 4);
    expect(localInts).toEqual([
      { type: 4, intType: 3, flags: 0, srcBus: 0, srcIrq: 0, destId: 0xff, destPin: 0 }, // ExtINT → LINT0
      { type: 4, intType: 1, flags: 0, srcBus: 0, srcIrq: 0, destId: 0xff, destPin: 1 }, // NMI → LINT1
    ]);
  });

  it('ends at or below 0xa0000 and touches nothing outside its range', () => {
    memory.fill(0x9f000, 0x1000, 0xaa);
    memory.fill(0xa0000, 0x100, 0xbb);
    const loc = writeMpTable(memory, { cpus: 8 });
    expect(loc.floatingPointer + loc.size).toBeLessThanOrEqual(0xa0000);
    expect([...memory.read(0x9f000, loc.floatingPointer - 0x9f000)].every((b) => b === 0xaa)).toBe(true);
    const end = loc.floatingPointer + loc.size;
    expect([...memory.read(end, 0xa0000 - end)].every((b) => b === 0xaa)).toBe(true);
    expect([...memory.read(0xa0000, 0x100)].every((b) => b === 0xbb)).toBe(true);
  });

  it('honours explicit addresses, ids, base and CPU identification', () => {
    const loc = writeMpTable(memory, {
      cpus: 2,
      ioapicAddress: 0xfec01000,
      ioapicId: 9,
      lapicAddress: 0xfee10000,
      base: 0x9e000,
      cpuSignature: 0x50654,
      cpuFeatures: 0x078bfbff,
    });
    expect(loc).toEqual({ floatingPointer: 0x9e000, configTable: 0x9e010, size: mpTableSize(2) });
    const t = parse(memory, 0x9e000);
    expect(t.mpf.sum).toBe(0);
    expect(t.header.sum).toBe(0);
    expect(t.header.lapicAddress).toBe(0xfee10000);
    expect(t.entries[3]).toEqual({ type: 2, id: 9, version: 0x11, flags: 1, address: 0xfec01000 });
    for (const e of t.entries.filter((x): x is Interrupt => x.type === 3)) expect(e.destId).toBe(9);
    for (const e of t.entries.filter((x): x is Processor => x.type === 0)) {
      expect(e.signature).toBe(0x50654);
      expect(e.features).toBe(0x078bfbff);
    }
  });

  it('fits 40 CPUs in the last KiB below 0xa0000, and 254 CPUs with a lower base', () => {
    const loc40 = writeMpTable(memory, { cpus: 40 });
    expect(loc40.floatingPointer + loc40.size).toBeLessThanOrEqual(0xa0000);
    expect(parse(memory, loc40.floatingPointer).header.sum).toBe(0);

    const loc = writeMpTable(memory, { cpus: 254, base: 0x9e000 });
    const t = parse(memory, loc.floatingPointer);
    expect(t.mpf.sum).toBe(0);
    expect(t.header.sum).toBe(0);
    expect(t.header.entryCount).toBe(254 + 20);
    const ids = t.entries.filter((e): e is Processor => e.type === 0).map((e) => e.apicId);
    expect(ids).toEqual(Array.from({ length: 254 }, (_, i) => i));
    expect((t.entries[255] as IoApic).id).toBe(254);
  });

  it('with timerPin 2 routes ISA IRQ 0 to INTIN2 and lists no IRQ 2', () => {
    const loc = writeMpTable(memory, { cpus: 1, timerPin: 2 });
    expect(loc.size).toBe(mpTableSize(1, 2));
    const t = parse(memory, loc.floatingPointer);
    expect(t.header.sum).toBe(0);
    expect(t.walked).toBe(t.header.length);
    const ioInts = t.entries.filter((e): e is Interrupt => e.type === 3);
    expect(ioInts.map((e) => [e.srcIrq, e.destPin])).toEqual([
      [0, 2],
      [1, 1],
      ...Array.from({ length: 13 }, (_, i) => [i + 3, i + 3]),
    ]);
  });

  it.each([
    ['zero CPUs', { cpus: 0 }, /cpus must be an integer from 1 to 254/],
    ['255 CPUs', { cpus: 255 }, /cpus must be an integer from 1 to 254/],
    ['a fractional CPU count', { cpus: 1.5 }, /cpus/],
    ['NaN CPUs', { cpus: NaN }, /cpus/],
    ['an I/O APIC id that collides with a local APIC id', { cpus: 4, ioapicId: 3 }, /collides with the local APIC ids 0..3/],
    ['the broadcast I/O APIC id', { cpus: 4, ioapicId: 0xff }, /ioapicId must be an integer from 0 to 254/],
    ['a table that runs past 0xa0000', { cpus: 41 }, /past 0xa0000/],
    ['254 CPUs at the default base', { cpus: 254 }, /needs 5300 bytes at 0x9fc00/],
    ['a base inside the VGA window', { cpus: 1, base: 0xa0000 }, /past 0xa0000/],
    ['a base above 1 MiB', { cpus: 1, base: 0x100000 }, /past 0xa0000/],
    ['an unaligned base', { cpus: 1, base: 0x9fc08 }, /16-byte aligned/],
    ['a negative base', { cpus: 1, base: -16 }, /16-byte aligned/],
    ['an I/O APIC address above 4 GiB', { cpus: 1, ioapicAddress: 2 ** 32 }, /ioapicAddress/],
    ['a negative local APIC address', { cpus: 1, lapicAddress: -1 }, /lapicAddress/],
  ])('rejects %s with a RangeError', (_what, options, message) => {
    memory.fill(0x9f000, 0x1000, 0x5a);
    let error: unknown;
    try {
      writeMpTable(memory, options);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(RangeError);
    expect((error as Error).message).toMatch(message);
    // Nothing was written.
    expect([...memory.read(0x9f000, 0x1000)].every((b) => b === 0x5a)).toBe(true);
  });

  it('rejects a table outside guest RAM', () => {
    const small = GuestMemory.allocate([{ gpa: 0, size: 0x9f000 }]);
    try {
      expect(() => writeMpTable(small, { cpus: 1 })).toThrow(RangeError);
      expect(() => writeMpTable(small, { cpus: 1 })).toThrow(/not inside guest RAM/);
    } finally {
      small.close();
    }
  });
});
