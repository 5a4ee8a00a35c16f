// Tests for the ACPI table writer (src/arch/x86/acpi.ts). The tables are parsed
// back here with raw offsets from the ACPI 6.4 specification (§5.2.5 RSDP,
// §5.2.6 header, §5.2.7/5.2.8 RSDT/XSDT, §5.2.9 FADT, §5.2.10 FACS, §5.2.11.1
// DSDT, §5.2.12 MADT), independently of the writer's constants.
import { GuestMemory } from '../src/memory/guest-memory';
import { PM1A_CNT_PORT, PM1A_EVT_PORT, S5_SLEEP_TYPE, acpiTablesSize, writeAcpiTables } from '../src/arch/x86/acpi';

const MiB = 1024 * 1024;

function withMemory<T>(size: number, fn: (memory: GuestMemory) => T): T {
  const memory = GuestMemory.allocate([{ gpa: 0, size }]);
  try {
    return fn(memory);
  } finally {
    memory.close();
  }
}

function ascii(memory: GuestMemory, gpa: number, length: number): string {
  return memory.read(gpa, length).toString('latin1');
}

function byteSum(memory: GuestMemory, gpa: number, length: number): number {
  let sum = 0;
  for (const b of memory.read(gpa, length)) sum += b;
  return sum & 0xff;
}

interface Header {
  signature: string;
  length: number;
  revision: number;
  oemId: string;
  oemTableId: string;
  creatorId: string;
  sum: number;
}

/** System Description Table Header (§5.2.6). */
function header(memory: GuestMemory, gpa: number): Header {
  const length = memory.readU32(gpa + 4);
  return {
    signature: ascii(memory, gpa, 4),
    length,
    revision: memory.readU8(gpa + 8),
    oemId: ascii(memory, gpa + 10, 6),
    oemTableId: ascii(memory, gpa + 16, 8),
    creatorId: ascii(memory, gpa + 28, 4),
    sum: byteSum(memory, gpa, length),
  };
}

interface Gas {
  spaceId: number;
  bitWidth: number;
  bitOffset: number;
  accessSize: number;
  address: bigint;
}

function gas(memory: GuestMemory, gpa: number): Gas {
  return {
    spaceId: memory.readU8(gpa),
    bitWidth: memory.readU8(gpa + 1),
    bitOffset: memory.readU8(gpa + 2),
    accessSize: memory.readU8(gpa + 3),
    address: memory.readU64(gpa + 4),
  };
}

interface Parsed {
  rsdp: number;
  rsdt: number;
  xsdt: number;
  /** signature → address, from the XSDT. */
  tables: Map<string, number>;
  rsdtEntries: number[];
  xsdtEntries: number[];
}

function parseRoot(memory: GuestMemory, rsdp: number): Parsed {
  expect(ascii(memory, rsdp, 8)).toBe('RSD PTR ');
  expect(byteSum(memory, rsdp, 20)).toBe(0); // Checksum covers the ACPI 1.0 part
  expect(memory.readU8(rsdp + 15)).toBe(2); // Revision
  expect(memory.readU32(rsdp + 20)).toBe(36); // Length
  expect(byteSum(memory, rsdp, 36)).toBe(0); // Extended Checksum covers all of it
  expect(ascii(memory, rsdp + 9, 6)).toBe('TSKVM ');
  const rsdt = memory.readU32(rsdp + 16);
  const xsdt = Number(memory.readU64(rsdp + 24));

  const x = header(memory, xsdt);
  expect(x.signature).toBe('XSDT');
  expect(x.sum).toBe(0);
  expect((x.length - 36) % 8).toBe(0);
  const xsdtEntries: number[] = [];
  for (let p = xsdt + 36; p < xsdt + x.length; p += 8) xsdtEntries.push(Number(memory.readU64(p)));

  const r = header(memory, rsdt);
  expect(r.signature).toBe('RSDT');
  expect(r.sum).toBe(0);
  expect((r.length - 36) % 4).toBe(0);
  const rsdtEntries: number[] = [];
  for (let p = rsdt + 36; p < rsdt + r.length; p += 4) rsdtEntries.push(memory.readU32(p));

  const tables = new Map<string, number>();
  for (const e of xsdtEntries) tables.set(header(memory, e).signature, e);
  return { rsdp, rsdt, xsdt, tables, rsdtEntries, xsdtEntries };
}

interface MadtEntry {
  type: number;
  length: number;
  bytes: Buffer;
}

function madtEntries(memory: GuestMemory, madt: number): { lapicAddress: number; flags: number; entries: MadtEntry[] } {
  const length = memory.readU32(madt + 4);
  const entries: MadtEntry[] = [];
  let p = madt + 44;
  while (p < madt + length) {
    const type = memory.readU8(p);
    const len = memory.readU8(p + 1);
    expect(len).toBeGreaterThanOrEqual(2);
    entries.push({ type, length: len, bytes: memory.read(p, len) });
    p += len;
  }
  expect(p).toBe(madt + length);
  return { lapicAddress: memory.readU32(madt + 36), flags: memory.readU32(madt + 40), entries };
}

describe('writeAcpiTables', () => {
  test('RSDP at the default base with valid checksums; RSDT and XSDT list FADT and MADT', () => {
    withMemory(2 * MiB, (memory) => {
      const { rsdp, size } = writeAcpiTables(memory, { cpus: 1 });
      expect(rsdp).toBe(0xe0000);
      expect(rsdp % 16).toBe(0);
      expect(size).toBe(acpiTablesSize(1));
      expect(rsdp + size).toBeLessThanOrEqual(0x100000);
      const root = parseRoot(memory, rsdp);
      expect(root.xsdtEntries).toEqual(root.rsdtEntries);
      expect([...root.tables.keys()].sort()).toEqual(['APIC', 'FACP']);
      for (const addr of root.xsdtEntries) {
        const h = header(memory, addr);
        expect(h.sum).toBe(0);
        expect(h.oemId).toBe('TSKVM ');
        expect(h.oemTableId).toHaveLength(8);
        expect(h.creatorId).toHaveLength(4);
        // Every table lies inside the region the writer reported.
        expect(addr).toBeGreaterThanOrEqual(rsdp);
        expect(addr + h.length).toBeLessThanOrEqual(rsdp + size);
      }
    });
  });

  test('FADT: revision 6, PM1a blocks, SCI 9, SMI_CMD 0, DSDT and FACS pointers, flags', () => {
    withMemory(2 * MiB, (memory) => {
      const { rsdp, size } = writeAcpiTables(memory, { cpus: 2 });
      const fadt = parseRoot(memory, rsdp).tables.get('FACP')!;
      const h = header(memory, fadt);
      expect(h.revision).toBe(6);
      expect(h.length).toBe(276);
      expect(h.sum).toBe(0);

      const facs = memory.readU32(fadt + 36); // FIRMWARE_CTRL
      const dsdt = memory.readU32(fadt + 40); // DSDT
      expect(Number(memory.readU64(fadt + 132))).toBe(facs); // X_FIRMWARE_CTRL
      expect(Number(memory.readU64(fadt + 140))).toBe(dsdt); // X_DSDT
      expect(memory.readU16(fadt + 46)).toBe(9); // SCI_INT
      expect(memory.readU32(fadt + 48)).toBe(0); // SMI_CMD
      expect(memory.readU8(fadt + 52)).toBe(0); // ACPI_ENABLE
      expect(memory.readU8(fadt + 53)).toBe(0); // ACPI_DISABLE
      expect(memory.readU32(fadt + 56)).toBe(0x600); // PM1a_EVT_BLK
      expect(memory.readU32(fadt + 60)).toBe(0); // PM1b_EVT_BLK
      expect(memory.readU32(fadt + 64)).toBe(0x604); // PM1a_CNT_BLK
      expect(memory.readU32(fadt + 68)).toBe(0); // PM1b_CNT_BLK
      expect(memory.readU32(fadt + 76)).toBe(0); // PM_TMR_BLK
      expect(memory.readU32(fadt + 80)).toBe(0); // GPE0_BLK
      expect(memory.readU32(fadt + 84)).toBe(0); // GPE1_BLK
      expect(memory.readU8(fadt + 88)).toBe(4); // PM1_EVT_LEN
      expect(memory.readU8(fadt + 89)).toBe(2); // PM1_CNT_LEN
      expect(memory.readU8(fadt + 91)).toBe(0); // PM_TMR_LEN
      expect(memory.readU8(fadt + 92)).toBe(0); // GPE0_BLK_LEN
      expect(memory.readU8(fadt + 93)).toBe(0); // GPE1_BLK_LEN
      expect(memory.readU8(fadt + 108)).toBe(0x32); // CENTURY
      expect(PM1A_EVT_PORT).toBe(0x600);
      expect(PM1A_CNT_PORT).toBe(0x604);

      const bootArch = memory.readU16(fadt + 109);
      expect(bootArch & (1 << 1)).toBeTruthy(); // 8042
      expect(bootArch & (1 << 2)).toBeTruthy(); // VGA not present
      expect(bootArch & (1 << 3)).toBe(0); // MSI allowed

      const flags = memory.readU32(fadt + 112);
      expect(flags & (1 << 0)).toBeTruthy(); // WBINVD
      expect(flags & (1 << 2)).toBeTruthy(); // PROC_C1
      expect(flags & (1 << 4)).toBe(0); // PWR_BUTTON clear: fixed-feature power button
      expect(flags & (1 << 5)).toBeTruthy(); // SLP_BUTTON: none
      expect(flags & (1 << 10)).toBe(0); // RESET_REG_SUP: no reset register
      expect(flags & (1 << 20)).toBe(0); // not HW_REDUCED_ACPI

      // X_PM1a_EVT_BLK and X_PM1a_CNT_BLK: System I/O, widths matching the lengths.
      expect(gas(memory, fadt + 148)).toEqual({ spaceId: 1, bitWidth: 32, bitOffset: 0, accessSize: 2, address: 0x600n });
      expect(gas(memory, fadt + 172)).toEqual({ spaceId: 1, bitWidth: 16, bitOffset: 0, accessSize: 2, address: 0x604n });
      // X_PM1b blocks, X_PM_TMR_BLK, X_GPE blocks: absent.
      for (const off of [160, 184, 196, 208, 220, 232]) expect(gas(memory, fadt + off).address).toBe(0n);

      // FACS: 64 bytes, 64-byte aligned, inside the written region.
      expect(facs % 64).toBe(0);
      expect(ascii(memory, facs, 4)).toBe('FACS');
      expect(memory.readU32(facs + 4)).toBe(64);
      expect(facs + 64).toBeLessThanOrEqual(rsdp + size);

      const d = header(memory, dsdt);
      expect(d.signature).toBe('DSDT');
      expect(d.sum).toBe(0);
      expect(d.revision).toBeGreaterThanOrEqual(2);
    });
  });

  test('DSDT AML is exactly Name (_S5_, Package (4) { S5, S5, 0, 0 })', () => {
    withMemory(2 * MiB, (memory) => {
      const { rsdp } = writeAcpiTables(memory, { cpus: 1 });
      const fadt = parseRoot(memory, rsdp).tables.get('FACP')!;
      const dsdt = Number(memory.readU64(fadt + 140));
      const length = memory.readU32(dsdt + 4);
      const aml = [...memory.read(dsdt + 36, length - 36)];
      expect(S5_SLEEP_TYPE).toBe(5);
      expect(aml).toEqual([
        0x08, // NameOp
        0x5f, 0x53, 0x35, 0x5f, // NameSeg "_S5_"
        0x12, // PackageOp
        0x08, // PkgLength: itself + NumElements + 6 bytes of elements
        0x04, // NumElements
        0x0a, 0x05, // BytePrefix 5 (SLP_TYPa)
        0x0a, 0x05, // BytePrefix 5 (SLP_TYPb)
        0x00, // ZeroOp
        0x00, // ZeroOp
      ]);
    });
  });

  test.each([1, 4])('MADT for %i CPU(s): local APICs, I/O APIC, SCI override, LAPIC NMI', (cpus) => {
    withMemory(2 * MiB, (memory) => {
      const { rsdp } = writeAcpiTables(memory, { cpus });
      const madt = parseRoot(memory, rsdp).tables.get('APIC')!;
      const h = header(memory, madt);
      expect(h.sum).toBe(0);
      const { lapicAddress, flags, entries } = madtEntries(memory, madt);
      expect(lapicAddress).toBe(0xfee00000);
      expect(flags & 1).toBe(1); // PCAT_COMPAT

      const lapics = entries.filter((e) => e.type === 0);
      expect(lapics).toHaveLength(cpus);
      lapics.forEach((e, i) => {
        expect(e.length).toBe(8);
        expect(e.bytes[2]).toBe(i); // ACPI Processor UID
        expect(e.bytes[3]).toBe(i); // APIC ID
        expect(e.bytes.readUInt32LE(4)).toBe(1); // Enabled
      });

      const ioapics = entries.filter((e) => e.type === 1);
      expect(ioapics).toHaveLength(1);
      expect(ioapics[0].length).toBe(12);
      expect(ioapics[0].bytes[2]).toBe(cpus); // I/O APIC ID after the local APIC ids
      expect(ioapics[0].bytes.readUInt32LE(4)).toBe(0xfec00000);
      expect(ioapics[0].bytes.readUInt32LE(8)).toBe(0); // GSI base

      // Only the SCI has an override: ISA IRQ 9 → GSI 9, active high (01), level (11).
      // IRQ 0 keeps the identity mapping (KVM's default routing, like the MP table).
      const overrides = entries.filter((e) => e.type === 2);
      expect(overrides).toHaveLength(1);
      const sci = overrides[0];
      expect(sci.length).toBe(10);
      expect(sci.bytes[2]).toBe(0); // bus ISA
      expect(sci.bytes[3]).toBe(9); // source IRQ
      expect(sci.bytes.readUInt32LE(4)).toBe(9); // GSI
      expect(sci.bytes.readUInt16LE(8)).toBe(0b1101);

      const nmis = entries.filter((e) => e.type === 4);
      expect(nmis).toHaveLength(1);
      expect(nmis[0].length).toBe(6);
      expect(nmis[0].bytes[2]).toBe(0xff); // all processors
      expect(nmis[0].bytes[5]).toBe(1); // LINT1

      expect(entries).toHaveLength(cpus + 3);
    });
  });

  test('timerPin 2 adds the IRQ 0 → GSI 2 override', () => {
    withMemory(2 * MiB, (memory) => {
      const { rsdp } = writeAcpiTables(memory, { cpus: 1, timerPin: 2 });
      const madt = parseRoot(memory, rsdp).tables.get('APIC')!;
      expect(header(memory, madt).sum).toBe(0);
      const overrides = madtEntries(memory, madt).entries.filter((e) => e.type === 2);
      expect(overrides.map((e) => [e.bytes[3], e.bytes.readUInt32LE(4)])).toEqual([
        [0, 2],
        [9, 9],
      ]);
    });
  });

  test('custom base, addresses and the 254-CPU maximum', () => {
    withMemory(2 * MiB, (memory) => {
      const { rsdp, size } = writeAcpiTables(memory, { cpus: 254, base: 0xf0010, ioapicAddress: 0xfec01000, lapicAddress: 0xfee10000 });
      expect(rsdp).toBe(0xf0010);
      expect(rsdp + size).toBeLessThanOrEqual(0x100000);
      const root = parseRoot(memory, rsdp);
      const fadt = root.tables.get('FACP')!;
      expect(memory.readU32(fadt + 36) % 64).toBe(0);
      const { lapicAddress, entries } = madtEntries(memory, root.tables.get('APIC')!);
      expect(lapicAddress).toBe(0xfee10000);
      expect(entries.filter((e) => e.type === 0)).toHaveLength(254);
      expect(entries.find((e) => e.type === 1)!.bytes.readUInt32LE(4)).toBe(0xfec01000);
    });
  });

  test('writes nothing outside [rsdp, rsdp + size)', () => {
    withMemory(2 * MiB, (memory) => {
      memory.fill(0, 2 * MiB, 0xcc);
      const { rsdp, size } = writeAcpiTables(memory, { cpus: 4 });
      const before = memory.read(0, rsdp);
      const after = memory.read(rsdp + size, 2 * MiB - rsdp - size);
      expect(before.every((b) => b === 0xcc)).toBe(true);
      expect(after.every((b) => b === 0xcc)).toBe(true);
    });
  });

  test('throws RangeError when guest memory is too small or the tables do not fit below 1 MiB', () => {
    withMemory(512 * 1024, (memory) => {
      expect(() => writeAcpiTables(memory, { cpus: 1 })).toThrow(RangeError);
    });
    withMemory(0xe1000, (memory) => {
      // Holds the RSDP's page but not all of the tables.
      expect(() => writeAcpiTables(memory, { cpus: 1, base: 0xe0f00 })).toThrow(RangeError);
    });
    withMemory(2 * MiB, (memory) => {
      expect(() => writeAcpiTables(memory, { cpus: 1, base: 0xfff00 })).toThrow(/past 0x100000/);
      expect(() => writeAcpiTables(memory, { cpus: 254, base: 0xffc00 })).toThrow(RangeError);
    });
  });

  test('rejects bad arguments', () => {
    withMemory(2 * MiB, (memory) => {
      expect(() => writeAcpiTables(memory, { cpus: 0 })).toThrow(RangeError);
      expect(() => writeAcpiTables(memory, { cpus: 255 })).toThrow(RangeError);
      expect(() => writeAcpiTables(memory, { cpus: 1.5 })).toThrow(RangeError);
      expect(() => writeAcpiTables(memory, { cpus: 1, base: 0xe0008 })).toThrow(RangeError);
      expect(() => writeAcpiTables(memory, { cpus: 1, base: -16 })).toThrow(RangeError);
      expect(() => writeAcpiTables(memory, { cpus: 2, ioapicId: 1 })).toThrow(RangeError);
      expect(() => writeAcpiTables(memory, { cpus: 1, ioapicAddress: 2 ** 32 })).toThrow(RangeError);
      expect(() => writeAcpiTables(memory, { cpus: 1, lapicAddress: -1 })).toThrow(RangeError);
    });
  });
});
