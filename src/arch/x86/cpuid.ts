// The CPUID a tskvm guest sees, built from KVM_GET_SUPPORTED_CPUID.
//
// Policy (and why):
// - Start from what KVM supports on this host: the guest sees a real CPU model.
// - Topology: each vCPU gets APIC id == vCPU id (leaf 1 EBX[31:24], leaf 0xB /
//   0x1F EDX = x2APIC id), leaf 1 EBX[23:16] = number of logical CPUs and HTT set
//   when there is more than one; the MP table uses the same ids.
// - Masked because KVM's instruction emulator cannot execute them (DESIGN.md:
//   on nested KVM, guest kernel code runs in that emulator, which fails on
//   them; masking keeps Linux from using them at CPL0):
//     CX16 (leaf 1 ECX bit 13): `lock cmpxchg16b` (SLUB's cmpxchg_double).
//   With VT-x/AMD-V guests run natively and these could stay; the policy is
//   conservative because the same VMM must boot here.
//   and other CPL0 instructions the emulator does not implement, whose
//   features Linux uses only when CPUID advertises them:
//     SMAP (leaf 7 EBX 20): clac/stac around every user-memory access.
//     FSGSBASE (leaf 7 EBX 0): rd/wr{fs,gs}base in context switches.
//     PCID (leaf 1 ECX 17), INVPCID (leaf 7 EBX 10): invpcid in TLB flushes.
//     PKU/OSPKE (leaf 7 ECX 3/4): rdpkru/wrpkru.
//     RDRAND (leaf 1 ECX 30), RDSEED (leaf 7 EBX 18): the kernel's entropy seeding.
//     SERIALIZE (leaf 7 EDX 14), WAITPKG (leaf 7 ECX 5), RDPID (leaf 7 ECX 22),
//     CLFLUSHOPT/CLWB (leaf 7 EBX 23/24), TSXLDTRK (leaf 7 EDX 16).
//     POPCNT (leaf 1 ECX 23): hweight*() in the kernel; LZCNT (ABM, leaf
//     0x80000001 ECX 5), BMI1/BMI2/ADX (leaf 7 EBX 3/8/19), MOVBE (leaf 1 ECX 22),
//     and the crypto extensions AES/PCLMULQDQ (leaf 1 ECX 25/1), SHA (leaf 7
//     EBX 29), GFNI (leaf 7 ECX 8) that kernel crypto would pick up.
//     SSSE3, SSE4.1, SSE4.2 (leaf 1 ECX 9/19/20): kernel SIMD routines
//     (blake2s, chacha, crc32c) use SSE instructions the emulator lacks
//     (e.g. movd to an xmm register); without these bits Linux uses C code.
// - XSAVE (leaf 1 ECX 26) and AVX, FMA, F16C (leaf 1 ECX 28, 12, 29), AVX2
//   (leaf 7 EBX 5) are advertised, with leaf 0xD limited to the x87, SSE and
//   AVX state components (XCR0 bits 0-2) in the standard format: XSAVEC and
//   XSAVES (leaf 0xD.1 EAX bits 1, 3) and supervisor state are hidden, so a
//   guest kernel uses xsave/xsaveopt/xrstor, which tskvm performs when KVM's
//   emulator cannot (xsave-workarounds.ts). AVX-512 and AMX stay masked with
//   their state components. OSXSAVE (leaf 1 ECX 27) is left to KVM, which
//   derives it from the guest's CR4.
// - Masked because a VMM with no emulation for them should not advertise them:
//     HLE/RTM (TSX, leaf 7 EBX 4/11), MONITOR/MWAIT (leaf 1 ECX 3).
// - Kept: the KVM paravirtual leaves 0x40000000.. (kvmclock, PV EOI...), which
//   make timekeeping cheap; the hypervisor bit (leaf 1 ECX 31).
import type { CpuidEntry } from '../../kvm/structs/cpuid';

const bit = (n: number): number => (1 << n) >>> 0;

export const CPUID_1_ECX_MONITOR = bit(3);
export const CPUID_1_ECX_FMA = bit(12);
export const CPUID_1_ECX_CX16 = bit(13);
export const CPUID_1_ECX_PCID = bit(17);
export const CPUID_1_ECX_RDRAND = bit(30);
export const CPUID_1_ECX_SSSE3 = bit(9);
export const CPUID_1_ECX_SSE41 = bit(19);
export const CPUID_1_ECX_SSE42 = bit(20);
export const CPUID_1_ECX_PCLMULQDQ = bit(1);
export const CPUID_1_ECX_MOVBE = bit(22);
export const CPUID_1_ECX_POPCNT = bit(23);
export const CPUID_1_ECX_AES = bit(25);
export const CPUID_80000001_ECX_ABM = bit(5);
export const CPUID_1_ECX_XSAVE = bit(26);
export const CPUID_1_ECX_OSXSAVE = bit(27);
export const CPUID_1_ECX_AVX = bit(28);
export const CPUID_1_ECX_F16C = bit(29);
export const CPUID_1_ECX_HYPERVISOR = bit(31);
export const CPUID_1_EDX_HTT = bit(28);

/**
 * Leaf 7 subleaf 0 EBX: FSGSBASE 0, BMI1 3, HLE 4, BMI2 8, INVPCID 10, RTM 11, AVX512F 16,
 * DQ 17, RDSEED 18, ADX 19, SMAP 20, IFMA 21, CLFLUSHOPT 23, CLWB 24, PF 26, ER 27, CD 28, SHA 29, BW 30, VL 31.
 */
const LEAF7_EBX_MASKED = [0, 3, 4, 8, 10, 11, 16, 17, 18, 19, 20, 21, 23, 24, 26, 27, 28, 29, 30, 31].reduce((m, n) => m | bit(n), 0) >>> 0;
/**
 * Leaf 7 subleaf 0 ECX: AVX512_VBMI 1, PKU 3, OSPKE 4, WAITPKG 5, AVX512_VBMI2 6, GFNI 8, VAES 9,
 * VPCLMULQDQ 10, AVX512_VNNI 11, AVX512_BITALG 12, AVX512_VPOPCNTDQ 14, RDPID 22.
 */
const LEAF7_ECX_MASKED = [1, 3, 4, 5, 6, 8, 9, 10, 11, 12, 14, 22].reduce((m, n) => m | bit(n), 0) >>> 0;
/**
 * Leaf 7 subleaf 0 EDX: AVX512_4VNNIW 2, AVX512_4FMAPS 3, AVX512_VP2INTERSECT 8, SERIALIZE 14,
 * TSXLDTRK 16, AMX_BF16 22, AVX512_FP16 23, AMX_TILE 24, AMX_INT8 25.
 */
const LEAF7_EDX_MASKED = [2, 3, 8, 14, 16, 22, 23, 24, 25].reduce((m, n) => m | bit(n), 0) >>> 0;
/** Leaf 7 subleaf 1 EAX: AVX_VNNI 4, AVX512_BF16 5. */
const LEAF7_1_EAX_MASKED = (bit(4) | bit(5)) >>> 0;

/** XCR0 bits the guest may enable: x87 (0), SSE (1), AVX (2) (SDM Vol. 1, 13.1). */
export const GUEST_XCR0_MASK = 0x7;
/** Leaf 0xD.1 EAX: XSAVEOPT (0) and XGETBV with ECX = 1 (2); XSAVEC (1), XSAVES (3) and XFD (4) hidden. */
const XSAVE_1_EAX_KEPT = (bit(0) | bit(2)) >>> 0;
/** Standard-format size of the legacy region plus header; AVX state follows at 576 (SDM Vol. 1, 13.4). */
const XSAVE_LEGACY_AND_HEADER = 576;

/** Leaf 0xD (SDM Vol. 1, 13.2): only the x87/SSE/AVX components, standard format only. */
function limitXsaveLeaf(e: CpuidEntry): void {
  if (e.index === 0) {
    const avx = (e.eax & bit(2)) !== 0;
    e.eax = (e.eax & GUEST_XCR0_MASK) >>> 0;
    e.edx = 0;
    // ECX: the area size for every supported component; EBX (size for the
    // components XCR0 enables now) is recomputed by KVM when the guest sets XCR0.
    e.ecx = avx ? XSAVE_LEGACY_AND_HEADER + 256 : XSAVE_LEGACY_AND_HEADER;
    e.ebx = Math.min(e.ebx, e.ecx);
  } else if (e.index === 1) {
    e.eax = (e.eax & XSAVE_1_EAX_KEPT) >>> 0;
    e.ebx = e.ecx = e.edx = 0;
  } else if (e.index !== 2) {
    e.eax = e.ebx = e.ecx = e.edx = 0;
  }
}

export interface CpuidPolicyOptions {
  /** This vCPU's id, used as its APIC id. */
  vcpuId: number;
  /** Number of vCPUs in the machine. */
  cpuCount: number;
}

/** Returns the CPUID entries for one vCPU (the input is not modified). */
export function buildGuestCpuid(supported: readonly CpuidEntry[], options: CpuidPolicyOptions): CpuidEntry[] {
  const { vcpuId, cpuCount } = options;
  const out: CpuidEntry[] = [];
  for (const original of supported) {
    const e = { ...original };
    switch (e.function) {
      case 0x1:
        e.ebx = ((e.ebx & 0x0000ffff) | ((cpuCount & 0xff) << 16) | ((vcpuId & 0xff) << 24)) >>> 0;
        e.ecx =
          (e.ecx &
            ~(CPUID_1_ECX_MONITOR | CPUID_1_ECX_CX16 | CPUID_1_ECX_PCID | CPUID_1_ECX_RDRAND | CPUID_1_ECX_PCLMULQDQ |
              CPUID_1_ECX_MOVBE | CPUID_1_ECX_POPCNT | CPUID_1_ECX_SSSE3 | CPUID_1_ECX_SSE41 | CPUID_1_ECX_SSE42 | CPUID_1_ECX_AES | CPUID_1_ECX_OSXSAVE)) >>>
          0;
        e.ecx = (e.ecx | CPUID_1_ECX_HYPERVISOR) >>> 0;
        e.edx = cpuCount > 1 ? (e.edx | CPUID_1_EDX_HTT) >>> 0 : (e.edx & ~CPUID_1_EDX_HTT) >>> 0;
        break;
      case 0x7:
        if (e.index === 0) {
          e.ebx = (e.ebx & ~LEAF7_EBX_MASKED) >>> 0;
          e.ecx = (e.ecx & ~LEAF7_ECX_MASKED) >>> 0;
          e.edx = (e.edx & ~LEAF7_EDX_MASKED) >>> 0;
        } else if (e.index === 1) {
          e.eax = (e.eax & ~LEAF7_1_EAX_MASKED) >>> 0;
        }
        break;
      case 0x80000001:
        e.ecx = (e.ecx & ~CPUID_80000001_ECX_ABM) >>> 0;
        break;
      case 0xb:
      case 0x1f:
        // Extended topology: EDX is the x2APIC id of the CPU executing CPUID.
        e.edx = vcpuId >>> 0;
        break;
      case 0xd:
        limitXsaveLeaf(e);
        break;
      case 0x19: // Key Locker
      case 0x1d: // AMX tile information
      case 0x1e: // AMX TMUL information
        e.eax = e.ebx = e.ecx = e.edx = 0;
        break;
    }
    out.push(e);
  }
  return out;
}

/** Reads a feature bit from a CPUID list (for tests and `tskvm info`). */
export function cpuidHasBit(entries: readonly CpuidEntry[], fn: number, index: number, reg: 'eax' | 'ebx' | 'ecx' | 'edx', n: number): boolean {
  const e = entries.find((x) => x.function === fn && x.index === index);
  return e !== undefined && (e[reg] & bit(n)) !== 0;
}
