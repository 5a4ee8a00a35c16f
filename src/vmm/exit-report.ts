// A readable report of why a vCPU stopped: reason, RIP, CPU mode, the
// instruction bytes at RIP and the registers. Used for every exit the loop
// cannot continue from (emulation failure, triple fault, failed entry,
// unknown exit), so a failure is a report and not a hang (DESIGN.md).
import type { GuestMemory } from '../memory/guest-memory';
import type { Vcpu } from '../kvm/vcpu';
import type { VcpuExit } from '../kvm/structs/run';
import type { Regs } from '../kvm/structs/regs';
import type { Sregs } from '../kvm/structs/sregs';
import { describeMode } from '../arch/x86/modes';
import { instructionBytesAt } from '../arch/x86/code-fetch';

export interface ExitReport {
  vcpu: number;
  reason: string;
  detail: string;
  rip: bigint;
  mode: string;
  instructionBytes?: Uint8Array;
  regs?: Regs;
  sregs?: Sregs;
}

const hex = (v: bigint | number, width = 16): string => '0x' + v.toString(16).padStart(width, '0');

function describeExit(exit: VcpuExit): string {
  switch (exit.reason) {
    case 'internal_error':
      return `KVM internal error: ${exit.suberrorName}${exit.data.length ? ` (data ${exit.data.map((d) => hex(d, 1)).join(' ')})` : ''}`;
    case 'fail_entry':
      return `VM entry failed: hardware reason ${hex(exit.hardwareEntryFailureReason, 1)} on CPU ${exit.cpu}`;
    case 'shutdown':
      return 'shutdown (triple fault: an exception occurred while delivering a double fault)';
    case 'system_event':
      return `system event: ${exit.typeName}`;
    case 'unknown':
      return `unhandled exit ${exit.name} (${exit.exitReason}), hardware exit reason ${hex(exit.hardwareExitReason, 1)}`;
    case 'exception':
      return `exception ${exit.exception} (error code ${exit.errorCode})`;
    default:
      return exit.reason;
  }
}

export function buildExitReport(vcpu: Vcpu, memory: GuestMemory, exit: VcpuExit): ExitReport {
  const report: ExitReport = { vcpu: vcpu.id, reason: exit.reason, detail: describeExit(exit), rip: 0n, mode: 'unknown' };
  try {
    const regs = vcpu.getRegs();
    const sregs = vcpu.getSregs();
    report.regs = regs;
    report.sregs = sregs;
    report.rip = regs.rip;
    report.mode = describeMode(sregs);
    report.instructionBytes =
      exit.reason === 'internal_error' && exit.instructionBytes?.length ? exit.instructionBytes : instructionBytesAt(vcpu, memory, regs, sregs);
  } catch {
    // The vCPU state may be unreadable after some failures; report what we have.
  }
  return report;
}

/** A report for a KVM_RUN that failed with an errno instead of exiting (reason 'run_failed'). */
export function buildRunFailureReport(vcpu: Vcpu, memory: GuestMemory, error: unknown): ExitReport {
  const code = (error as { code?: unknown }).code;
  const message = (error as Error).message ?? String(error);
  const report = buildExitReport(vcpu, memory, { reason: 'hlt' });
  return { ...report, reason: 'run_failed', detail: `KVM_RUN failed: ${typeof code === 'string' ? `${code} (${message})` : message}` };
}

/**
 * What kind of guest error a stop is, for the CLI's exit code (src/cli/main.ts):
 * 'emulation' KVM's instruction emulator gave up (KVM_EXIT_INTERNAL_ERROR),
 * 'triple-fault' KVM_EXIT_SHUTDOWN, 'entry' the vCPU could not enter guest
 * mode (KVM_EXIT_FAIL_ENTRY, or KVM_RUN failing with an errno), 'unknown-exit'
 * an exit reason tskvm does not know, 'other' anything else (a device model
 * that threw, a guest exception exit, ...).
 */
export type GuestErrorClass = 'emulation' | 'triple-fault' | 'entry' | 'unknown-exit' | 'other';

export function guestErrorClass(report: ExitReport | undefined): GuestErrorClass {
  switch (report?.reason) {
    case 'internal_error':
      return 'emulation';
    case 'shutdown':
      return 'triple-fault';
    case 'fail_entry':
    case 'run_failed':
      return 'entry';
    case 'unknown':
      return 'unknown-exit';
    default:
      return 'other';
  }
}

export function formatExitReport(r: ExitReport): string {
  const lines = [
    `vCPU ${r.vcpu} stopped: ${r.detail}`,
    `  RIP ${hex(r.rip)} in ${r.mode}`,
    `  instruction bytes: ${r.instructionBytes ? Buffer.from(r.instructionBytes).toString('hex').replace(/(..)(?!$)/g, '$1 ') : '(unavailable)'}`,
  ];
  if (r.regs) {
    const g = r.regs;
    lines.push(
      `  RAX ${hex(g.rax)} RBX ${hex(g.rbx)} RCX ${hex(g.rcx)} RDX ${hex(g.rdx)}`,
      `  RSI ${hex(g.rsi)} RDI ${hex(g.rdi)} RSP ${hex(g.rsp)} RBP ${hex(g.rbp)}`,
      `  R8  ${hex(g.r8)} R9  ${hex(g.r9)} R10 ${hex(g.r10)} R11 ${hex(g.r11)}`,
      `  R12 ${hex(g.r12)} R13 ${hex(g.r13)} R14 ${hex(g.r14)} R15 ${hex(g.r15)}`,
      `  RFLAGS ${hex(g.rflags)}`,
    );
  }
  if (r.sregs) {
    const s = r.sregs;
    lines.push(
      `  CS ${hex(s.cs.selector, 4)} base ${hex(s.cs.base)} CR0 ${hex(s.cr0)} CR3 ${hex(s.cr3)} CR4 ${hex(s.cr4)} EFER ${hex(s.efer)}`,
    );
  }
  return lines.join('\n');
}
