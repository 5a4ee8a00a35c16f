// Segment descriptors (Intel SDM Vol. 3A, 3.4.5 "Segment Descriptors").
//
// The VMM writes a small GDT into guest memory and loads the matching hidden
// segment state into the vCPU with KVM_SET_SREGS, so the guest starts with
// segments that agree with its GDT (it may reload them at any time).
import type { Segment } from '../../kvm/structs/sregs';

/** Selectors of the boot GDT. 0x10/0x18 are what the Linux boot protocol calls __BOOT_CS/__BOOT_DS. */
export const GDT_CODE_SELECTOR = 0x10;
export const GDT_DATA_SELECTOR = 0x18;
export const GDT_TSS_SELECTOR = 0x20;

/** Segment types (SDM Vol. 3A, Table 3-1 and Table 3-2). */
export const SEGMENT_TYPE = {
  DATA_READ_WRITE_ACCESSED: 0x3,
  CODE_EXECUTE_READ_ACCESSED: 0xb,
  TSS_BUSY_32_64: 0xb,
  LDT: 0x2,
} as const;

/** Encodes one 8-byte descriptor from the fields KVM's kvm_segment uses. */
export function encodeDescriptor(seg: Segment): bigint {
  const base = BigInt.asUintN(32, seg.base);
  // With G=1 the limit is in 4 KiB units: the descriptor holds limit >> 12.
  const limit = BigInt(seg.g ? seg.limit >>> 12 : seg.limit) & 0xfffffn;
  let d = 0n;
  d |= limit & 0xffffn; // limit 15:0 → bits 15:0
  d |= (base & 0xffffffn) << 16n; // base 23:0 → bits 39:16
  d |= BigInt(seg.type & 0xf) << 40n;
  d |= BigInt(seg.s & 1) << 44n;
  d |= BigInt(seg.dpl & 3) << 45n;
  d |= BigInt(seg.present & 1) << 47n;
  d |= (limit >> 16n) << 48n; // limit 19:16 → bits 51:48
  d |= BigInt(seg.avl & 1) << 52n;
  d |= BigInt(seg.l & 1) << 53n;
  d |= BigInt(seg.db & 1) << 54n;
  d |= BigInt(seg.g & 1) << 55n;
  d |= (base >> 24n) << 56n; // base 31:24 → bits 63:56
  return d;
}

/** A flat 4 GiB code or data segment. */
export function flatSegment(selector: number, kind: 'code32' | 'code64' | 'data'): Segment {
  const code = kind !== 'data';
  return {
    base: 0n,
    limit: 0xffffffff,
    selector,
    type: code ? SEGMENT_TYPE.CODE_EXECUTE_READ_ACCESSED : SEGMENT_TYPE.DATA_READ_WRITE_ACCESSED,
    present: 1,
    dpl: 0,
    // 64-bit code segments must have D=0 with L=1 (SDM Vol. 3A, 5.2.1).
    db: kind === 'code64' ? 0 : 1,
    s: 1,
    l: kind === 'code64' ? 1 : 0,
    g: 1,
    avl: 0,
    unusable: 0,
  };
}

/**
 * A task-state segment. VMX requires a usable TR in protected mode (SDM Vol. 3C,
 * 26.3.1.2: TR type must be busy 32/64-bit TSS), even if the guest never switches tasks.
 */
export function tssSegment(selector: number, base = 0n, limit = 0x67): Segment {
  return { base, limit, selector, type: SEGMENT_TYPE.TSS_BUSY_32_64, present: 1, dpl: 0, db: 0, s: 0, l: 0, g: 0, avl: 0, unusable: 0 };
}

/** The null LDT, marked unusable. */
export function unusableLdt(): Segment {
  return { base: 0n, limit: 0, selector: 0, type: SEGMENT_TYPE.LDT, present: 0, dpl: 0, db: 0, s: 0, l: 0, g: 0, avl: 0, unusable: 1 };
}
