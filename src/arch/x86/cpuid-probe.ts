// Does the guest's CPUID instruction return what KVM_SET_CPUID2 set?
//
// On a normal KVM host it does: CPUID always exits to KVM, which answers from
// the table the VMM set. On the nested KVM of our machines (DESIGN.md) the
// guest was measured to see host-like CPUID values no matter what was set,
// so masking a feature in CPUID does not keep Linux from using it. This probe
// runs four instructions in a throw-away VM to find out which case we are in;
// the Linux boot then adds kernel command-line switches that achieve the same
// masking from inside the guest (see linuxEmulatorCmdline below).
import type { Kvm } from '../../kvm/kvm';
import { GuestMemory } from '../../memory/guest-memory';
import { buildGuestCpuid, CPUID_1_ECX_CX16, CPUID_1_ECX_POPCNT } from './cpuid';
import { setupRealMode } from './modes';

export interface CpuidProbeResult {
  /** True if the guest saw the CPUID leaf 1 the VMM set. */
  honored: boolean;
  /** Leaf 1 ECX as set by the VMM and as read by the guest. */
  setEcx: number;
  guestEcx: number;
}

const PROBE_ENTRY = 0x1000;
// mov eax, 1 ; cpuid ; hlt   (real mode, operand-size prefix for the 32-bit mov)
const PROBE_CODE = Uint8Array.of(0x66, 0xb8, 0x01, 0x00, 0x00, 0x00, 0x0f, 0xa2, 0xf4);

let cached: CpuidProbeResult | undefined;

/** Runs the probe once per process (about a millisecond) and caches the answer. */
export function probeCpuidEnforcement(kvm: Kvm): CpuidProbeResult {
  if (cached) return cached;
  const vm = kvm.createVm();
  const memory = GuestMemory.allocate([{ gpa: 0, size: 64 * 1024 }]);
  try {
    vm.mapMemory(memory);
    vm.setTssAddress(0xfffbd000);
    const vcpu = vm.createVcpu(0);
    const cpuid = buildGuestCpuid(kvm.supportedCpuid(), { vcpuId: 0, cpuCount: 1 });
    vcpu.setCpuid(cpuid);
    memory.write(PROBE_ENTRY, PROBE_CODE);
    setupRealMode(vcpu, { entry: PROBE_ENTRY, stack: 0x8000 });
    let exit = vcpu.run();
    for (let i = 0; exit.reason === 'intr' && i < 10; i++) exit = vcpu.run();
    if (exit.reason !== 'hlt') throw new Error(`CPUID probe guest ended with ${exit.reason}, not hlt`);
    const setEcx = cpuid.find((e) => e.function === 1)?.ecx ?? 0;
    const guestEcx = Number(vcpu.getRegs().rcx & 0xffffffffn);
    // Compare bits the policy clears (CX16 and POPCNT are masked and present on any recent host).
    const watched = CPUID_1_ECX_CX16 | CPUID_1_ECX_POPCNT;
    cached = { honored: (guestEcx & watched & ~setEcx) === 0, setEcx, guestEcx };
    return cached;
  } finally {
    vm.close();
    memory.close();
  }
}

/**
 * Kernel command-line switches with the effect of the CPUID policy
 * (cpuid.ts), for when CPUID masking is not honored. Linux documents both in
 * Documentation/admin-guide/kernel-parameters.txt: `noxsaves` keeps the
 * kernel on the standard XSAVE format (xsave/xsaveopt/xrstor, which tskvm
 * performs at the emulation-failure exit: xsave-workarounds.ts) instead of
 * xsaves/xrstors with the compacted format and supervisor state;
 * `clearcpuid=` clears feature bits before the kernel patches its code for
 * them.
 *
 * XSAVE itself must stay on: this KVM runs the guest's user code natively
 * with the host's AVX enabled, so a kernel limited to fxsave (`noxsave`)
 * would not save the upper halves of the YMM registers on a context switch
 * and processes would corrupt each other's AVX registers (glibc's memcpy).
 *
 * The clearcpuid value must stay under 128 bytes: Linux copies it into a
 * 128-byte buffer and silently drops the rest (cpu_parse_early_param() in
 * arch/x86/kernel/cpu/common.c), and it takes only the last clearcpuid=.
 * So the list holds the features the kernel itself uses at CPL0 (user space
 * runs natively and may use anything), with the instruction that fails:
 */
export const EMULATOR_CLEARCPUID = [
  'cx16', //       lock cmpxchg16b (SLUB)
  'smap', //       clac/stac around user accesses (also handled at the failure exit)
  'popcnt', //     popcnt in hweight*()
  'pcid', 'invpcid', // invpcid in TLB flushes
  'fsgsbase', //   rd/wrfsbase, rd/wrgsbase in context switches
  'rdrand', 'rdseed', // the RNG's seeding
  'pku', //        rdpkru/wrpkru in context switches
  'waitpkg', //    tpause/umwait in udelay()
  'serialize', //  serialize in sync_core()
  'rdpid', //      rdpid for the CPU number in entry code
  // SIMD code under kernel_fpu_begin(): the emulator runs movdqa/movdqu but
  // not e.g. movd to an xmm register (66 0f 6e), first met in
  // blake2s_compress_ssse3 while the RNG initialises. Without these bits
  // Linux picks the generic C code (blake2s, chacha, crc32c, crypto).
  'ssse3', 'sse4_1', 'sse4_2', 'pclmulqdq', 'bmi2', 'adx', 'aes',
] as const;

/** Linux's buffer for the clearcpuid= value is 128 bytes including the NUL. */
export const CLEARCPUID_MAX_LENGTH = 127;

/**
 * Switches that only save time when kernel code runs in the emulator (about
 * 4 million instructions/s); each skips boot work that no tskvm guest needs
 * (Documentation/admin-guide/kernel-parameters.txt for each switch):
 *
 * - `cryptomgr.notests`: skip the crypto API's boot-time self-tests; their
 *   RSA test vectors alone kept a Debian kernel busy for minutes in
 *   big-number code here (measured by sampling RIP).
 * - `initcall_blacklist=ftrace_check_for_weak_functions,tracer_init_tracefs`:
 *   two tracing initcalls of Linux 6.1 (kernel/trace/ftrace.c, trace.c).
 *   The first looks up every one of ~37,700 ftrace call sites in kallsyms
 *   (the soft-lockup reports "stuck for 22s! ... ftrace_check_work_func" on
 *   Debian's 6.1 kernel); the second creates the tracefs files of every
 *   trace event while holding event_mutex, and init_kprobe_trace waits on
 *   it ("task swapper/0:1 blocked for more than 120 seconds"). Without them
 *   function tracing may also patch weak (overridden) functions and
 *   /sys/kernel/tracing has no event files; nothing else changes.
 * - `init_on_alloc=0`: Debian's kernel zeroes every page it allocates
 *   (CONFIG_INIT_ON_ALLOC_DEFAULT_ON), one emulated store at a time here;
 *   pages that must be zero are still zeroed (__GFP_ZERO).
 */
export const EMULATOR_SPEED_SWITCHES = [
  'cryptomgr.notests',
  'initcall_blacklist=ftrace_check_for_weak_functions,tracer_init_tracefs',
  'init_on_alloc=0',
] as const;

/** linuxEmulatorCmdline() shortened for messages and help texts. */
export const EMULATOR_CMDLINE_SUMMARY = 'noxsaves clearcpuid=... cryptomgr.notests initcall_blacklist=... init_on_alloc=0';

export function linuxEmulatorCmdline(): string {
  return `noxsaves clearcpuid=${EMULATOR_CLEARCPUID.join(',')} ${EMULATOR_SPEED_SWITCHES.join(' ')}`;
}
