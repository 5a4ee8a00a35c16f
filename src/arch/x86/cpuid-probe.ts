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
 * or work that only matters on a CPU that executes kernel code itself
 * (Documentation/admin-guide/kernel-parameters.txt for each switch):
 *
 * - `cryptomgr.notests`: skip the crypto API's boot-time self-tests; their
 *   RSA test vectors alone kept a Debian kernel busy for minutes in
 *   big-number code here (measured by sampling RIP).
 * - `initcall_blacklist=ftrace_check_for_weak_functions,tracer_init_tracefs,trace_eval_init`:
 *   three tracing initcalls of Linux 6.1 (kernel/trace/ftrace.c, trace.c).
 *   The first looks up every one of ~37,700 ftrace call sites in kallsyms
 *   (the soft-lockup reports "stuck for 22s! ... ftrace_check_work_func" on
 *   Debian's 6.1 kernel); the second creates the tracefs files of every
 *   trace event while holding event_mutex, and init_kprobe_trace waits on
 *   it ("task swapper/0:1 blocked for more than 120 seconds"); the third
 *   rewrites the format string of every trace event for every enum name
 *   (trace_event_update_all: a third of the RIP samples in the minute after
 *   the clocksource switch). Without them function tracing may also patch
 *   weak (overridden) functions, /sys/kernel/tracing has no event files and
 *   event formats show enum values as numbers; nothing else changes.
 * - `init_on_alloc=0`: Debian's kernel zeroes every page it allocates
 *   (CONFIG_INIT_ON_ALLOC_DEFAULT_ON), one emulated store at a time here;
 *   pages that must be zero are still zeroed (__GFP_ZERO).
 * - `nowatchdog`: the soft- and hard-lockup detectors compare wall-clock
 *   time with the progress a native CPU makes. At the emulator's speed
 *   correct but slow boot work (BTF parsing, kallsyms look-ups) trips them
 *   every 20 s, and each report is a register dump and stack trace of about
 *   2 KB printed from the timer interrupt: on a serial console two port
 *   exits per byte, with the tick it runs in held up meanwhile.
 */
export const EMULATOR_SPEED_SWITCHES = [
  'cryptomgr.notests',
  'initcall_blacklist=ftrace_check_for_weak_functions,tracer_init_tracefs,trace_eval_init',
  'init_on_alloc=0',
  'nowatchdog',
] as const;

/**
 * Timekeeping on this KVM: kvm-clock (the paravirtual clock, KVM API doc
 * "KVM_FEATURE_CLOCKSOURCE2") was measured to fall behind the TSC and then
 * jump forward: a guest's printk time went from 9.6 s to 87.7 s within one
 * second of host time, and after ten minutes its kvm-clock based sched_clock
 * was 120 s behind the TSC ("sched_clock: Marking stable (554025741406, ...)
 * ->(673828428097, ...)"). A jump is harmless once Linux runs its tick from
 * high-resolution timers, but Linux switches its timekeeping from jiffies to
 * kvm-clock first (clocksource_done_booting) and to high resolution on a
 * later tick; a jump in between makes tick_handle_periodic() replay every
 * missed 4 ms tick before it returns (kernel/time/tick-common.c), and a tick
 * costs 1.5 to 4 ms in the emulator. Every boot spent about 100 s there
 * after "clocksource: Switched to clocksource kvm-clock", and some never got
 * out (soft-lockup reports with RIP frozen in stop_machine_cpuslocked for
 * 1,000 s; the Linux test's boot timed out).
 *
 * The TSC itself keeps time here, so tskvm boots Linux on it:
 * - `no-kvmclock`: do not register kvm-clock (Linux falls back to the TSC
 *   for timekeeping and sched_clock; the wall clock comes from the CMOS RTC).
 * - `tsc=reliable`: the TSC needs no watchdog (there is no HPET or ACPI PM
 *   timer to check it against; without this Linux would never trust it for
 *   high-resolution timers).
 * - `tsc_early_khz=N`: the frequency, from KVM_GET_TSC_KHZ, so Linux does
 *   not calibrate the TSC against the PIT in emulated polling loops.
 * With them the clocksource switch ("Switched to clocksource tsc-early") was
 * followed by the next boot message 1.7 s later instead of ~100 s.
 */
export function emulatorClockSwitches(tscKhz: number): string[] {
  return ['no-kvmclock', 'tsc=reliable', `tsc_early_khz=${tscKhz}`];
}

/** linuxEmulatorCmdline() shortened for messages and help texts. */
export const EMULATOR_CMDLINE_SUMMARY = 'noxsaves clearcpuid=... cryptomgr.notests initcall_blacklist=... init_on_alloc=0 nowatchdog no-kvmclock tsc=reliable tsc_early_khz=...';

/** The name part of a command-line switch: `init_on_alloc` of `init_on_alloc=0`. */
function switchName(word: string): string {
  const equals = word.indexOf('=');
  return equals < 0 ? word : word.slice(0, equals);
}

/**
 * The switches to add to `userCmdline`. A switch the user already set is
 * left out so the user's value counts (Linux takes the last occurrence of
 * most switches, and ours are appended): `init_on_alloc=1` keeps page
 * zeroing, a `clearcpuid=` of the user's own replaces the list.
 * `initcall_blacklist=` adds to a list, so ours is added either way.
 * `tscKhz` (KVM_GET_TSC_KHZ) enables the clock switches; without it Linux
 * keeps kvm-clock. A user's `clocksource=` or `no-kvmclock` also keeps
 * tskvm's clock switches out: the user chose the clock.
 */
export function linuxEmulatorCmdline(userCmdline = '', options: { tscKhz?: number } = {}): string {
  const userSet = new Set(userCmdline.split(/\s+/).filter((w) => w !== '').map(switchName));
  const userChoseClock = userSet.has('clocksource') || userSet.has('no-kvmclock') || userSet.has('tsc');
  const clock = options.tscKhz && options.tscKhz > 0 && !userChoseClock ? emulatorClockSwitches(options.tscKhz) : [];
  const switches = ['noxsaves', `clearcpuid=${EMULATOR_CLEARCPUID.join(',')}`, ...EMULATOR_SPEED_SWITCHES, ...clock];
  return switches.filter((w) => switchName(w) === 'initcall_blacklist' || !userSet.has(switchName(w))).join(' ');
}
