// Tests for the ACPI table writer (src/arch/x86/acpi.ts). The tables are parsed
// back here with raw offsets from the ACPI 6.4 specification (§5.2.5 RSDP,
// §5.2.6 header, §5.2.7/5.2.8 RSDT/XSDT, §5.2.9 FADT, §5.2.10 FACS, §5.2.11.1
// DSDT, §5.2.12 MADT), independently of the writer's constants.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GuestMemory } from '../src/memory/guest-memory';
import {
  PM1A_CNT_PORT,
  PM1A_EVT_PORT,
  S5_SLEEP_TYPE,
  acpiTablesSize,
  pciIntxGsi,
  writeAcpiTables,
  type AcpiPciOptions,
} from '../src/arch/x86/acpi';

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

// --- A minimal AML reader (ACPI 6.4 §20.2), independent of the encoder -------

/** Decodes a PkgLength (§20.2.4) at `p`: its value and how many bytes it takes. */
function readPkgLength(aml: Uint8Array, p: number): { value: number; size: number } {
  const lead = aml[p];
  const follow = lead >> 6;
  if (follow === 0) return { value: lead & 0x3f, size: 1 };
  let value = lead & 0x0f;
  for (let i = 0; i < follow; i++) value |= aml[p + 1 + i] << (4 + 8 * i);
  return { value, size: 1 + follow };
}

/** Decodes an Integer (§20.2.3: ZeroOp, OneOp, Byte/Word/DWordPrefix) at `p`. */
function readInteger(aml: Uint8Array, p: number): { value: number; size: number } {
  const op = aml[p];
  if (op === 0x00 || op === 0x01) return { value: op, size: 1 };
  const width = op === 0x0a ? 1 : op === 0x0b ? 2 : op === 0x0c ? 4 : 0;
  if (width === 0) throw new Error(`not an integer opcode: 0x${op.toString(16)} at ${p}`);
  let value = 0;
  for (let i = 0; i < width; i++) value += aml[p + 1 + i] * 2 ** (8 * i);
  return { value, size: 1 + width };
}

/** Offset of the first occurrence of `needle` in `hay`, or -1. */
function indexOf(hay: Uint8Array, needle: number[]): number {
  outer: for (let i = 0; i + needle.length <= hay.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

const asciiBytes = (text: string) => [...text].map((c) => c.charCodeAt(0));

/** Where `Name (<seg>, …)` (§20.2.5.1: NameOp 0x08, NameSeg) puts its value. */
function nameValue(aml: Uint8Array, seg: string): number {
  const at = indexOf(aml, [0x08, ...asciiBytes(seg)]);
  expect(at).toBeGreaterThanOrEqual(0);
  return at + 5;
}

interface Resource {
  tag: number;
  bytes: Uint8Array;
}

/** Splits the contents of a ResourceTemplate buffer (§6.4) into descriptors. */
function resources(data: Uint8Array): Resource[] {
  const out: Resource[] = [];
  let p = 0;
  while (p < data.length) {
    const tag = data[p];
    // Large items: bit 7 set, 16-bit length in bytes 1-2 (§6.4.3); small: length in bits 2:0 (§6.4.2).
    const size = tag & 0x80 ? 3 + (data[p + 1] | (data[p + 2] << 8)) : 1 + (tag & 0x07);
    out.push({ tag, bytes: data.subarray(p, p + size) });
    p += size;
    if (tag === 0x79) break;
  }
  expect(p).toBe(data.length);
  return out;
}

function dsdtOf(memory: GuestMemory, rsdp: number): { address: number; table: Uint8Array } {
  const fadt = parseRoot(memory, rsdp).tables.get('FACP')!;
  const address = Number(memory.readU64(fadt + 140)); // X_DSDT
  const length = memory.readU32(address + 4);
  return { address, table: new Uint8Array(memory.read(address, length)) };
}

/** iasl (ACPICA) when it is installed; CI does not have it. */
function iaslAvailable(): boolean {
  const probe = spawnSync('iasl', ['-v'], { encoding: 'utf8' });
  return !probe.error;
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

  const PCI: AcpiPciOptions = { mmioBase: 0xc0000000, mmioSize: 0x3ec00000, ioBase: 0x1000, ioSize: 0x1000, slots: 32 };

  test('pci: DSDT holds Scope (\\_SB) { Device (PCI0) } with _HID PNP0A03, _CRS windows and a _PRT entry per slot and pin', () => {
    withMemory(2 * MiB, (memory) => {
      const { rsdp, size } = writeAcpiTables(memory, { cpus: 2, pci: PCI });
      expect(size).toBe(acpiTablesSize(2, undefined, undefined, PCI));
      expect(size).toBeGreaterThan(acpiTablesSize(2));
      const { address, table } = dsdtOf(memory, rsdp);
      const h = header(memory, address);
      expect(h.signature).toBe('DSDT');
      expect(h.sum).toBe(0);
      expect(h.revision).toBeGreaterThanOrEqual(2);
      expect(address + h.length).toBeLessThanOrEqual(rsdp + size);
      const aml = table.subarray(36);

      // \_S5 unchanged, then one Scope whose PkgLength runs to the end of the table.
      expect([...aml.subarray(0, 14)]).toEqual([0x08, ...asciiBytes('_S5_'), 0x12, 0x08, 0x04, 0x0a, 0x05, 0x0a, 0x05, 0x00, 0x00]);
      let p = 14;
      expect(aml[p]).toBe(0x10); // ScopeOp
      const scopeLength = readPkgLength(aml, p + 1);
      expect(p + 1 + scopeLength.value).toBe(aml.length);
      p += 1 + scopeLength.size;
      expect([...aml.subarray(p, p + 5)]).toEqual([0x5c, ...asciiBytes('_SB_')]); // \_SB_
      p += 5;
      expect([aml[p], aml[p + 1]]).toEqual([0x5b, 0x82]); // DeviceOp
      const deviceLength = readPkgLength(aml, p + 2);
      expect(p + 2 + deviceLength.value).toBe(aml.length); // the device is all the scope holds
      p += 2 + deviceLength.size;
      expect([...aml.subarray(p, p + 4)]).toEqual(asciiBytes('PCI0'));
      const body = aml.subarray(p + 4);

      // _HID EisaId("PNP0A03") = DWordConst 0x030AD041; _UID, _SEG, _BBN 0; no _ADR next to _HID (§6.1).
      expect([...body.subarray(nameValue(body, '_HID'), nameValue(body, '_HID') + 5)]).toEqual([0x0c, 0x41, 0xd0, 0x0a, 0x03]);
      for (const seg of ['_UID', '_SEG', '_BBN']) expect(readInteger(body, nameValue(body, seg)).value).toBe(0);
      expect(indexOf(body, [0x08, ...asciiBytes('_ADR')])).toBe(-1);

      // _CRS: a Buffer (§20.2.5.4) of resource descriptors (§6.4).
      let c = nameValue(body, '_CRS');
      expect(body[c]).toBe(0x11); // BufferOp
      const crsLength = readPkgLength(body, c + 1);
      const bufferSize = readInteger(body, c + 1 + crsLength.size);
      const crsData = body.subarray(c + 1 + crsLength.size + bufferSize.size, c + 1 + crsLength.value);
      expect(crsData.length).toBe(bufferSize.value);
      expect(crsData.reduce((sum, b) => sum + b, 0) & 0xff).toBe(0); // End Tag checksum
      const res = resources(crsData);
      expect(res.map((r) => r.tag)).toEqual([0x88, 0x47, 0x88, 0x88, 0x87, 0x79]);
      const u16 = (b: Uint8Array, o: number) => b[o] | (b[o + 1] << 8);
      const u32 = (b: Uint8Array, o: number) => (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)) >>> 0;
      // Word descriptors: type at 3, general flags at 4 (0x0C: fixed min/max, producer), _MIN at 8, _MAX at 10, _LEN at 14.
      const word = (r: Resource) => ({ type: r.bytes[3], flags: r.bytes[4], min: u16(r.bytes, 8), max: u16(r.bytes, 10), len: u16(r.bytes, 14) });
      expect(word(res[0])).toEqual({ type: 2, flags: 0x0c, min: 0, max: 0, len: 1 }); // bus 0 only
      expect([...res[1].bytes]).toEqual([0x47, 0x01, 0xf8, 0x0c, 0xf8, 0x0c, 0x01, 0x08]); // IO 0xCF8, 8 ports
      expect(word(res[2])).toEqual({ type: 1, flags: 0x0c, min: 0x0000, max: 0x0cf7, len: 0x0cf8 });
      expect(word(res[3])).toEqual({ type: 1, flags: 0x0c, min: 0x0d00, max: 0xffff, len: 0xf300 });
      // DWord memory: type 0, flags 0x0C, NonCacheable + ReadWrite (0x01), _MIN at 10, _MAX at 14, _LEN at 22.
      const mem = res[4].bytes;
      expect([mem[3], mem[4], mem[5]]).toEqual([0, 0x0c, 0x01]);
      expect([u32(mem, 10), u32(mem, 14), u32(mem, 22)]).toEqual([0xc0000000, 0xfebfffff, 0x3ec00000]);
      // The I/O window assignResources uses lies inside a WordIO window.
      expect(PCI.ioBase).toBeGreaterThanOrEqual(0x0d00);

      // _PRT: a Package of 4 × 31 Packages { Address, Pin, Source 0, GSI }.
      c = nameValue(body, '_PRT');
      expect(body[c]).toBe(0x12); // PackageOp
      const prtLength = readPkgLength(body, c + 1);
      const prtEnd = c + 1 + prtLength.value;
      expect(prtEnd).toBe(body.length); // _PRT is the device's last object
      let q = c + 1 + prtLength.size;
      expect(body[q]).toBe(4 * 31); // NumElements
      q += 1;
      const entries: number[][] = [];
      while (q < prtEnd) {
        expect(body[q]).toBe(0x12);
        const len = readPkgLength(body, q + 1);
        const end = q + 1 + len.value;
        let e = q + 1 + len.size;
        expect(body[e]).toBe(4);
        e += 1;
        const values: number[] = [];
        while (e < end) {
          const v = readInteger(body, e);
          values.push(v.value);
          e += v.size;
        }
        expect(e).toBe(end);
        entries.push(values);
        q = end;
      }
      expect(entries).toHaveLength(4 * 31);
      const expected: number[][] = [];
      for (let slot = 1; slot < 32; slot++)
        for (let pin = 0; pin < 4; pin++) expected.push([slot * 0x10000 + 0xffff, pin, 0, 16 + ((slot + pin) % 4)]);
      expect(entries).toEqual(expected);
      expect(pciIntxGsi(1, 0)).toBe(17);
      expect(pciIntxGsi(4, 0)).toBe(16);

      // The MADT is the same as without the pci option: its I/O APIC (GSI base 0) covers GSIs 16–19.
      const madt = parseRoot(memory, rsdp).tables.get('APIC')!;
      expect(header(memory, madt).sum).toBe(0);
      const { entries: madtList } = madtEntries(memory, madt);
      expect(madtList).toHaveLength(2 + 3);
      expect(madtList.find((e) => e.type === 1)!.bytes.readUInt32LE(8)).toBe(0);

      // With iasl (ACPICA) installed, also disassemble the DSDT and compile the result again.
      if (iaslAvailable()) {
        const dir = mkdtempSync(join(tmpdir(), 'tskvm-dsdt-'));
        try {
          writeFileSync(join(dir, 'dsdt.dat'), table);
          const dis = spawnSync('iasl', ['-d', 'dsdt.dat'], { cwd: dir, encoding: 'utf8' });
          expect(dis.status).toBe(0);
          const dsl = readFileSync(join(dir, 'dsdt.dsl'), 'utf8');
          expect(dsl).toContain('Scope (\\_SB)');
          expect(dsl).toContain('Device (PCI0)');
          expect(dsl).toContain('EisaId ("PNP0A03")');
          expect(dsl).toContain('Name (_PRT, Package (0x7C)');
          expect(dsl).toContain('WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode');
          expect(dsl).toContain('IO (Decode16');
          expect(dsl.match(/WordIO \(ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange/g)).toHaveLength(2);
          expect(dsl).toContain('DWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable, ReadWrite');
          expect(dsl).toContain('0xFEBFFFFF');
          // The disassembly compiles again without errors or warnings (e.g. _HID next to _ADR).
          const asl = spawnSync('iasl', ['-p', 'again', 'dsdt.dsl'], { cwd: dir, encoding: 'utf8' });
          expect(asl.status).toBe(0);
          expect(asl.stdout).toMatch(/0 Errors, 0 Warnings/);
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      }
    });
  });

  test('pci: fewer slots, another irqBase and a 64-bit window', () => {
    withMemory(2 * MiB, (memory) => {
      const pci: AcpiPciOptions = { ...PCI, slots: 3, irqBase: 20, mmio64Base: 0x8000000000n, mmio64Size: 0x4000000000n };
      const { rsdp } = writeAcpiTables(memory, { cpus: 1, pci });
      const { address, table } = dsdtOf(memory, rsdp);
      expect(header(memory, address).sum).toBe(0);
      const aml = table.subarray(36);
      const prt = nameValue(aml, '_PRT');
      const prtLength = readPkgLength(aml, prt + 1);
      expect(aml[prt + 1 + prtLength.size]).toBe(8); // slots 1 and 2, four pins each
      // Slot 2, INTD: GSI 20 + (2 + 3) % 4 = 21.
      expect(indexOf(aml, [0x12, 0x0c, 0x04, 0x0c, 0xff, 0xff, 0x02, 0x00, 0x0a, 0x03, 0x00, 0x0a, 21])).toBeGreaterThan(prt);
      // QWordMemory (0x8A) after the DWordMemory window: _MIN at 14, _LEN at 38.
      const q = indexOf(aml, [0x8a, 0x2b, 0x00, 0x00, 0x0c, 0x01]);
      expect(q).toBeGreaterThan(0);
      const view = Buffer.from(aml.buffer, aml.byteOffset + q, 46);
      expect(view.readBigUInt64LE(14)).toBe(0x8000000000n);
      expect(view.readBigUInt64LE(22)).toBe(0xbfffffffffn);
      expect(view.readBigUInt64LE(38)).toBe(0x4000000000n);

      // One slot (the host bridge only): an empty _PRT.
      writeAcpiTables(memory, { cpus: 1, pci: { ...PCI, slots: 1 } });
      const only = dsdtOf(memory, rsdp).table.subarray(36);
      const empty = nameValue(only, '_PRT');
      expect([...only.subarray(empty, empty + 3)]).toEqual([0x12, 0x02, 0x00]);
    });
  });

  test('pci: rejects bad windows, slot counts and irqBase', () => {
    withMemory(2 * MiB, (memory) => {
      const bad: Partial<AcpiPciOptions>[] = [
        { mmioSize: 0 },
        { mmioBase: 0xf0000000, mmioSize: 0x20000000 }, // past 4 GiB
        { mmioBase: 1.5 },
        { ioBase: 0xc00, ioSize: 0x100 }, // covers 0xcf8-0xcff
        { ioBase: 0xff00, ioSize: 0x200 },
        { slots: 0 },
        { slots: 33 },
        { irqBase: 15 }, // an ISA IRQ
        { irqBase: 21 }, // 21 + 3 = 24: past KVM's 24 I/O APIC pins
        { mmio64Base: 0x100000000n }, // without a size
        { mmio64Base: 0x80000000, mmio64Size: 0x1000 }, // below 4 GiB
      ];
      for (const b of bad) expect(() => writeAcpiTables(memory, { cpus: 1, pci: { ...PCI, ...b } })).toThrow(RangeError);
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
