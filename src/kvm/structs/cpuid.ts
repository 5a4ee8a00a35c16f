// struct kvm_cpuid2 + struct kvm_cpuid_entry2 (<asm/kvm.h>, x86):
//   kvm_cpuid2: nent u32 @0, padding u32 @4, entries[] @8
//   kvm_cpuid_entry2 (40 bytes): function u32 @0, index @4, flags @8,
//     eax @12, ebx @16, ecx @20, edx @24, padding u32[3] @28.

export const KVM_CPUID2_HEADER_SIZE = 8;
export const KVM_CPUID_ENTRY2_SIZE = 40;
/** KVM_MAX_CPUID_ENTRIES (arch/x86/include/asm/kvm_host.h). */
export const MAX_CPUID_ENTRIES = 256;
/** kvm_cpuid_entry2.flags: the entry depends on `index` (ECX input). */
export const KVM_CPUID_FLAG_SIGNIFCANT_INDEX = 1;

export interface CpuidEntry {
  function: number;
  index: number;
  flags: number;
  eax: number;
  ebx: number;
  ecx: number;
  edx: number;
}

/** An empty kvm_cpuid2 with room for `capacity` entries (for KVM_GET_SUPPORTED_CPUID). */
export function cpuidBuffer(capacity = MAX_CPUID_ENTRIES): Uint8Array {
  const buf = new Uint8Array(KVM_CPUID2_HEADER_SIZE + capacity * KVM_CPUID_ENTRY2_SIZE);
  new DataView(buf.buffer).setUint32(0, capacity, true);
  return buf;
}

export function encodeCpuid(entries: readonly CpuidEntry[]): Uint8Array {
  if (entries.length > MAX_CPUID_ENTRIES) throw new RangeError(`too many CPUID entries (${entries.length} > ${MAX_CPUID_ENTRIES})`);
  const buf = new Uint8Array(KVM_CPUID2_HEADER_SIZE + entries.length * KVM_CPUID_ENTRY2_SIZE);
  const view = new DataView(buf.buffer);
  view.setUint32(0, entries.length, true);
  entries.forEach((e, i) => {
    const at = KVM_CPUID2_HEADER_SIZE + i * KVM_CPUID_ENTRY2_SIZE;
    view.setUint32(at, e.function >>> 0, true);
    view.setUint32(at + 4, e.index >>> 0, true);
    view.setUint32(at + 8, e.flags >>> 0, true);
    view.setUint32(at + 12, e.eax >>> 0, true);
    view.setUint32(at + 16, e.ebx >>> 0, true);
    view.setUint32(at + 20, e.ecx >>> 0, true);
    view.setUint32(at + 24, e.edx >>> 0, true);
  });
  return buf;
}

export function decodeCpuid(buf: Uint8Array): CpuidEntry[] {
  if (buf.byteLength < KVM_CPUID2_HEADER_SIZE) throw new RangeError('kvm_cpuid2 buffer too small');
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const n = Math.min(view.getUint32(0, true), (buf.byteLength - KVM_CPUID2_HEADER_SIZE) / KVM_CPUID_ENTRY2_SIZE);
  const out: CpuidEntry[] = [];
  for (let i = 0; i < n; i++) {
    const at = KVM_CPUID2_HEADER_SIZE + i * KVM_CPUID_ENTRY2_SIZE;
    out.push({
      function: view.getUint32(at, true),
      index: view.getUint32(at + 4, true),
      flags: view.getUint32(at + 8, true),
      eax: view.getUint32(at + 12, true),
      ebx: view.getUint32(at + 16, true),
      ecx: view.getUint32(at + 20, true),
      edx: view.getUint32(at + 24, true),
    });
  }
  return out;
}
