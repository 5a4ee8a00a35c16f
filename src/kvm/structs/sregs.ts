// struct kvm_segment, struct kvm_dtable and struct kvm_sregs (<asm/kvm.h>, x86).
//
// kvm_segment (24 bytes): base u64 @0, limit u32 @8, selector u16 @12,
//   type u8 @14, present @15, dpl @16, db @17, s @18, l @19, g @20, avl @21,
//   unusable @22, padding @23.
// kvm_dtable (16 bytes): base u64 @0, limit u16 @8, padding u16[3].
// kvm_sregs (312 bytes): cs @0, ds @24, es @48, fs @72, gs @96, ss @120,
//   tr @144, ldt @168, gdt @192, idt @208, cr0 @224, cr2 @232, cr3 @240,
//   cr4 @248, cr8 @256, efer @264, apic_base @272, interrupt_bitmap u64[4] @280.

export const KVM_SEGMENT_SIZE = 24;
export const KVM_DTABLE_SIZE = 16;
export const KVM_SREGS_SIZE = 312;

export interface Segment {
  base: bigint;
  limit: number;
  selector: number;
  /** Descriptor type field (SDM Vol. 3, 3.4.5.1: code/data types). */
  type: number;
  present: number;
  dpl: number;
  /** Default operation size (1 = 32-bit). */
  db: number;
  /** Descriptor type: 1 = code/data, 0 = system. */
  s: number;
  /** 64-bit code segment. */
  l: number;
  /** Granularity: limit in 4 KiB units. */
  g: number;
  avl: number;
  unusable: number;
}

export interface DescriptorTable {
  base: bigint;
  limit: number;
}

export const SEGMENT_NAMES = ['cs', 'ds', 'es', 'fs', 'gs', 'ss', 'tr', 'ldt'] as const;

export interface Sregs {
  cs: Segment; ds: Segment; es: Segment; fs: Segment; gs: Segment; ss: Segment;
  tr: Segment; ldt: Segment;
  gdt: DescriptorTable; idt: DescriptorTable;
  cr0: bigint; cr2: bigint; cr3: bigint; cr4: bigint; cr8: bigint;
  efer: bigint; apic_base: bigint;
  /** Pending external interrupts (bitmap of 256 vectors). */
  interrupt_bitmap: [bigint, bigint, bigint, bigint];
}

const CONTROL_NAMES = ['cr0', 'cr2', 'cr3', 'cr4', 'cr8', 'efer', 'apic_base'] as const;
const CONTROL_OFFSET = 224;
const GDT_OFFSET = 192;
const IDT_OFFSET = 208;
const BITMAP_OFFSET = 280;

function decodeSegment(view: DataView, at: number): Segment {
  return {
    base: view.getBigUint64(at, true),
    limit: view.getUint32(at + 8, true),
    selector: view.getUint16(at + 12, true),
    type: view.getUint8(at + 14),
    present: view.getUint8(at + 15),
    dpl: view.getUint8(at + 16),
    db: view.getUint8(at + 17),
    s: view.getUint8(at + 18),
    l: view.getUint8(at + 19),
    g: view.getUint8(at + 20),
    avl: view.getUint8(at + 21),
    unusable: view.getUint8(at + 22),
  };
}

function encodeSegment(view: DataView, at: number, s: Segment): void {
  view.setBigUint64(at, BigInt.asUintN(64, s.base), true);
  view.setUint32(at + 8, s.limit >>> 0, true);
  view.setUint16(at + 12, s.selector, true);
  view.setUint8(at + 14, s.type);
  view.setUint8(at + 15, s.present);
  view.setUint8(at + 16, s.dpl);
  view.setUint8(at + 17, s.db);
  view.setUint8(at + 18, s.s);
  view.setUint8(at + 19, s.l);
  view.setUint8(at + 20, s.g);
  view.setUint8(at + 21, s.avl);
  view.setUint8(at + 22, s.unusable);
  view.setUint8(at + 23, 0);
}

function viewOf(buf: Uint8Array): DataView {
  if (buf.byteLength < KVM_SREGS_SIZE) throw new RangeError('kvm_sregs buffer too small');
  return new DataView(buf.buffer, buf.byteOffset, KVM_SREGS_SIZE);
}

export function decodeSregs(buf: Uint8Array): Sregs {
  const view = viewOf(buf);
  const sregs = {} as Sregs;
  SEGMENT_NAMES.forEach((name, i) => (sregs[name] = decodeSegment(view, i * KVM_SEGMENT_SIZE)));
  sregs.gdt = { base: view.getBigUint64(GDT_OFFSET, true), limit: view.getUint16(GDT_OFFSET + 8, true) };
  sregs.idt = { base: view.getBigUint64(IDT_OFFSET, true), limit: view.getUint16(IDT_OFFSET + 8, true) };
  CONTROL_NAMES.forEach((name, i) => (sregs[name] = view.getBigUint64(CONTROL_OFFSET + i * 8, true)));
  sregs.interrupt_bitmap = [0, 1, 2, 3].map((i) => view.getBigUint64(BITMAP_OFFSET + i * 8, true)) as Sregs['interrupt_bitmap'];
  return sregs;
}

export function encodeSregs(sregs: Sregs, buf: Uint8Array = new Uint8Array(KVM_SREGS_SIZE)): Uint8Array {
  const view = viewOf(buf);
  SEGMENT_NAMES.forEach((name, i) => encodeSegment(view, i * KVM_SEGMENT_SIZE, sregs[name]));
  for (const [at, table] of [[GDT_OFFSET, sregs.gdt], [IDT_OFFSET, sregs.idt]] as const) {
    view.setBigUint64(at, BigInt.asUintN(64, table.base), true);
    view.setUint16(at + 8, table.limit, true);
    view.setUint16(at + 10, 0, true);
    view.setUint32(at + 12, 0, true);
  }
  CONTROL_NAMES.forEach((name, i) => view.setBigUint64(CONTROL_OFFSET + i * 8, BigInt.asUintN(64, sregs[name]), true));
  sregs.interrupt_bitmap.forEach((word, i) => view.setBigUint64(BITMAP_OFFSET + i * 8, BigInt.asUintN(64, word), true));
  return buf;
}
