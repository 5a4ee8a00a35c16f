// Typed view of the C++ addon (native/addon.cc). Only src/kvm and src/memory
// should need it; everything above talks to the typed KVM classes.
import * as path from 'path';

export interface NativeAddon {
  open(path: string, flags: number): number;
  close(fd: number): void;
  /** ioctl(2). `arg` by value (number/bigint) or by pointer (buffer). Throws Error{code} on failure. */
  ioctl(fd: number, request: number, arg?: number | bigint | ArrayBuffer | ArrayBufferView): number;
  mapAnonymous(size: number): number;
  mapFd(fd: number, size: number, offset?: number): number;
  /** External ArrayBuffer over a mapping; it does not own the pages. */
  mappingBuffer(id: number): ArrayBuffer;
  mappingAddress(id: number): bigint;
  unmap(id: number): boolean;
  mappingCount(): number;
  bindVcpuThread(vcpuFd: number, runMappingId: number): void;
  unbindVcpuThread(vcpuFd: number): void;
  kick(vcpuFd: number): boolean;
  /** KVM_RUN: 0 on an exit, -EINTR/-EAGAIN when interrupted; throws otherwise. */
  run(vcpuFd: number): number;
  /** KVM_RUN interrupted (-EINTR) after at most `microseconds` (time-slicing several vCPUs on one thread). */
  runFor(vcpuFd: number, microseconds: number): number;
  eventfd(initval?: number, flags?: number): number;
  eventfdRead(fd: number): number | null;
  eventfdWrite(fd: number, value: number): void;
  /** poll(2) for POLLIN on a thread-pool thread: true when readable, false on timeout. */
  waitReadable(fd: number, timeoutMs: number): Promise<boolean>;
  /** poll(2) for POLLIN on the calling thread: the fds that are readable (or hung up), empty on timeout. */
  pollReadable(fds: readonly number[], timeoutMs: number): number[];
  /** sizeof/offsetof facts from <linux/kvm.h>, keyed "sizeof kvm_regs", "kvm_regs.rip". */
  layout: Record<string, number>;
  /** Request numbers from <linux/kvm.h>, keyed by macro name. */
  ioctlNumbers: Record<string, number>;
  O_RDWR: number;
  EFD_NONBLOCK: number;
}

function load(): NativeAddon {
  // dist/src/native.js and src/native.ts (under jest) both sit two levels
  // below the package root, next to build/.
  const candidates = [
    path.join(__dirname, '..', 'build', 'Release', 'tskvm_native.node'),
    path.join(__dirname, '..', '..', 'build', 'Release', 'tskvm_native.node'),
  ];
  let lastError: unknown;
  for (const file of candidates) {
    try {
      // eslint-disable-next-line @typescript-eslint/no-var-requires
      return require(file) as NativeAddon;
    } catch (err) {
      lastError = err;
      if ((err as { code?: string }).code !== 'MODULE_NOT_FOUND') throw err;
    }
  }
  const error = new Error(
    'The tskvm native addon is not built (build/Release/tskvm_native.node is missing): run `npm install` in the tskvm package.',
  );
  (error as Error & { cause?: unknown }).cause = lastError;
  throw error;
}

export const native: NativeAddon = load();
