// struct kvm_run (<linux/kvm.h>): the page KVM shares with userspace for each
// vCPU. Header fields, then a union at offset 32 whose meaning depends on
// exit_reason. Offsets (checked against the header in test/kvm-structs.test.ts):
//   request_interrupt_window u8 @0, immediate_exit u8 @1, exit_reason u32 @8,
//   ready_for_interrupt_injection u8 @12, if_flag u8 @13, flags u16 @14,
//   cr8 u64 @16, apic_base u64 @24, union @32:
//   io:       direction u8 @32, size u8 @33, port u16 @34, count u32 @36, data_offset u64 @40
//   mmio:     phys_addr u64 @32, data u8[8] @40, len u32 @48, is_write u8 @52
//   internal: suberror u32 @32, ndata u32 @36, data u64[16] @40
//   emulation_failure (internal with suberror 1): flags u64 @40, insn_size u8 @48, insn_bytes u8[15] @49
//   fail_entry: hardware_entry_failure_reason u64 @32, cpu u32 @40
//   system_event: type u32 @32, ndata u32 @36, data u64[16] @40
//   debug.arch: exception u32 @32, pad u32 @36, pc u64 @40, dr6 u64 @48, dr7 u64 @56
//   ex:       exception u32 @32, error_code u32 @36
//   hw:       hardware_exit_reason u64 @32
import { EMULATION_FLAG_INSTRUCTION_BYTES, ExitReason, InternalErrorSuberror, exitReasonName } from '../constants';

export const RUN = {
  REQUEST_INTERRUPT_WINDOW: 0,
  IMMEDIATE_EXIT: 1,
  EXIT_REASON: 8,
  READY_FOR_INTERRUPT_INJECTION: 12,
  IF_FLAG: 13,
  FLAGS: 14,
  CR8: 16,
  APIC_BASE: 24,
  UNION: 32,
  IO_DIRECTION: 32,
  IO_SIZE: 33,
  IO_PORT: 34,
  IO_COUNT: 36,
  IO_DATA_OFFSET: 40,
  MMIO_PHYS_ADDR: 32,
  MMIO_DATA: 40,
  MMIO_LEN: 48,
  MMIO_IS_WRITE: 52,
  INTERNAL_SUBERROR: 32,
  INTERNAL_NDATA: 36,
  INTERNAL_DATA: 40,
  EMULATION_FLAGS: 40,
  EMULATION_INSN_SIZE: 48,
  EMULATION_INSN_BYTES: 49,
  FAIL_ENTRY_REASON: 32,
  FAIL_ENTRY_CPU: 40,
  SYSTEM_EVENT_TYPE: 32,
  SYSTEM_EVENT_NDATA: 36,
  SYSTEM_EVENT_DATA: 40,
  DEBUG_EXCEPTION: 32,
  DEBUG_PC: 40,
  DEBUG_DR6: 48,
  DEBUG_DR7: 56,
  EX_EXCEPTION: 32,
  EX_ERROR_CODE: 36,
  HW_EXIT_REASON: 32,
} as const;

export const KVM_EXIT_IO_IN = 0;
export const KVM_EXIT_IO_OUT = 1;

export interface IoExit {
  reason: 'io';
  direction: 'in' | 'out';
  port: number;
  /** Bytes per access: 1, 2 or 4. */
  size: 1 | 2 | 4;
  /** Number of accesses (>1 for `rep ins/outs`). */
  count: number;
  /** Offset of the data in the kvm_run mapping (size * count bytes). */
  dataOffset: number;
}
export interface MmioExit {
  reason: 'mmio';
  address: number;
  /** 1, 2, 4 or 8 bytes. */
  length: number;
  isWrite: boolean;
  /** For writes, the bytes written (a copy). */
  data: Uint8Array;
}
export interface HltExit { reason: 'hlt' }
export interface ShutdownExit { reason: 'shutdown' }
export interface FailEntryExit { reason: 'fail_entry'; hardwareEntryFailureReason: bigint; cpu: number }
export interface InternalErrorExit {
  reason: 'internal_error';
  suberror: number;
  suberrorName: string;
  data: bigint[];
  /** For emulation failures when KVM provides them: the instruction bytes at RIP. */
  instructionBytes?: Uint8Array;
}
export interface SystemEventExit { reason: 'system_event'; type: number; typeName: string; data: bigint[] }
export interface DebugExit { reason: 'debug'; exception: number; pc: bigint; dr6: bigint; dr7: bigint }
export interface ExceptionExit { reason: 'exception'; exception: number; errorCode: number }
export interface InterruptedExit { reason: 'intr' }
export interface IrqWindowOpenExit { reason: 'irq_window_open' }
export interface UnknownExit { reason: 'unknown'; exitReason: number; name: string; hardwareExitReason: bigint }

export type VcpuExit =
  | IoExit | MmioExit | HltExit | ShutdownExit | FailEntryExit | InternalErrorExit
  | SystemEventExit | DebugExit | ExceptionExit | InterruptedExit | IrqWindowOpenExit | UnknownExit;

const SUBERROR_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(InternalErrorSuberror).map(([k, v]) => [v, k.toLowerCase()]),
);
const SYSTEM_EVENT_NAMES: Record<number, string> = { 1: 'shutdown', 2: 'reset', 3: 'crash', 4: 'wakeup', 5: 'suspend' };
/** Bound on the kernel-provided data counts (the arrays hold 16 u64). */
const MAX_EXIT_DATA = 16;

function readData(view: DataView, at: number, n: number): bigint[] {
  const out: bigint[] = [];
  for (let i = 0; i < Math.min(n, MAX_EXIT_DATA); i++) out.push(view.getBigUint64(at + i * 8, true));
  return out;
}

function toNumber(value: bigint): number {
  return value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : Number.MAX_SAFE_INTEGER;
}

/** Decodes the exit described by a kvm_run page. */
export function decodeExit(view: DataView): VcpuExit {
  const reason = view.getUint32(RUN.EXIT_REASON, true);
  switch (reason) {
    case ExitReason.IO: {
      const size = view.getUint8(RUN.IO_SIZE);
      return {
        reason: 'io',
        direction: view.getUint8(RUN.IO_DIRECTION) === KVM_EXIT_IO_OUT ? 'out' : 'in',
        port: view.getUint16(RUN.IO_PORT, true),
        size: (size === 2 || size === 4 ? size : 1) as 1 | 2 | 4,
        count: view.getUint32(RUN.IO_COUNT, true),
        dataOffset: toNumber(view.getBigUint64(RUN.IO_DATA_OFFSET, true)),
      };
    }
    case ExitReason.MMIO: {
      const length = Math.min(view.getUint32(RUN.MMIO_LEN, true), 8);
      return {
        reason: 'mmio',
        address: toNumber(view.getBigUint64(RUN.MMIO_PHYS_ADDR, true)),
        length,
        isWrite: view.getUint8(RUN.MMIO_IS_WRITE) !== 0,
        data: new Uint8Array(view.buffer.slice(view.byteOffset + RUN.MMIO_DATA, view.byteOffset + RUN.MMIO_DATA + length)),
      };
    }
    case ExitReason.HLT:
      return { reason: 'hlt' };
    case ExitReason.SHUTDOWN:
      return { reason: 'shutdown' };
    case ExitReason.INTR:
      return { reason: 'intr' };
    case ExitReason.IRQ_WINDOW_OPEN:
      return { reason: 'irq_window_open' };
    case ExitReason.FAIL_ENTRY:
      return {
        reason: 'fail_entry',
        hardwareEntryFailureReason: view.getBigUint64(RUN.FAIL_ENTRY_REASON, true),
        cpu: view.getUint32(RUN.FAIL_ENTRY_CPU, true),
      };
    case ExitReason.INTERNAL_ERROR: {
      const suberror = view.getUint32(RUN.INTERNAL_SUBERROR, true);
      const ndata = view.getUint32(RUN.INTERNAL_NDATA, true);
      const exit: InternalErrorExit = {
        reason: 'internal_error',
        suberror,
        suberrorName: SUBERROR_NAMES[suberror] ?? `suberror ${suberror}`,
        data: readData(view, RUN.INTERNAL_DATA, ndata),
      };
      if (suberror === InternalErrorSuberror.EMULATION && ndata >= 2) {
        const flags = view.getBigUint64(RUN.EMULATION_FLAGS, true);
        if (flags & BigInt(EMULATION_FLAG_INSTRUCTION_BYTES)) {
          const size = Math.min(view.getUint8(RUN.EMULATION_INSN_SIZE), 15);
          const at = view.byteOffset + RUN.EMULATION_INSN_BYTES;
          exit.instructionBytes = new Uint8Array(view.buffer.slice(at, at + size));
        }
      }
      return exit;
    }
    case ExitReason.SYSTEM_EVENT: {
      const type = view.getUint32(RUN.SYSTEM_EVENT_TYPE, true);
      return {
        reason: 'system_event',
        type,
        typeName: SYSTEM_EVENT_NAMES[type] ?? `type ${type}`,
        data: readData(view, RUN.SYSTEM_EVENT_DATA, view.getUint32(RUN.SYSTEM_EVENT_NDATA, true)),
      };
    }
    case ExitReason.DEBUG:
      return {
        reason: 'debug',
        exception: view.getUint32(RUN.DEBUG_EXCEPTION, true),
        pc: view.getBigUint64(RUN.DEBUG_PC, true),
        dr6: view.getBigUint64(RUN.DEBUG_DR6, true),
        dr7: view.getBigUint64(RUN.DEBUG_DR7, true),
      };
    case ExitReason.EXCEPTION:
      return {
        reason: 'exception',
        exception: view.getUint32(RUN.EX_EXCEPTION, true),
        errorCode: view.getUint32(RUN.EX_ERROR_CODE, true),
      };
    default:
      return {
        reason: 'unknown',
        exitReason: reason,
        name: exitReasonName[reason] ?? `exit reason ${reason}`,
        hardwareExitReason: view.getBigUint64(RUN.HW_EXIT_REASON, true),
      };
  }
}
