// The `tskvm` command's exit codes (documented in README.md, "The CLI").
//
//   0  the guest halted, powered off or reset (or the user quit)
//   1  a host-side problem, reported in one sentence
//   2  the guest stopped on an error: KVM's emulator gave up (emulation
//      failure / KVM internal error), or another guest error (a device
//      model that failed, ...)
//   3  triple fault (KVM_EXIT_SHUTDOWN)
//   4  the vCPU could not enter the guest (KVM_EXIT_FAIL_ENTRY, or KVM_RUN
//      failing with an errno such as EINVAL)
//   5  an exit reason tskvm does not know
// Codes 2-5 come with a report (reason, RIP, CPU mode, instruction bytes,
// registers) on stderr.
import type { VcpuStop } from '../vmm/exit-loop';
import { guestErrorClass, type GuestErrorClass } from '../vmm/exit-report';

export const EXIT_OK = 0;
export const EXIT_HOST_ERROR = 1;
export const EXIT_GUEST_ERROR = 2;
export const EXIT_TRIPLE_FAULT = 3;
export const EXIT_ENTRY_FAILED = 4;
export const EXIT_UNKNOWN_EXIT = 5;

const CODE_FOR_CLASS: Record<GuestErrorClass, number> = {
  emulation: EXIT_GUEST_ERROR,
  other: EXIT_GUEST_ERROR,
  'triple-fault': EXIT_TRIPLE_FAULT,
  entry: EXIT_ENTRY_FAILED,
  'unknown-exit': EXIT_UNKNOWN_EXIT,
};

/** Exit code for a stop: 0 for an orderly end (halt, power off, reboot, quit), 2-5 for a guest error by class. */
export function exitCodeFor(stop: VcpuStop): number {
  return stop.kind === 'error' ? CODE_FOR_CLASS[guestErrorClass(stop.report)] : EXIT_OK;
}
