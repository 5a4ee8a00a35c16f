// Host-side errors with one clear sentence each (DESIGN.md: conventions).

/** An error raised by the addon carries the errno name in `code`. */
export function errnoCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

export class KvmError extends Error {
  constructor(
    message: string,
    readonly code: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'KvmError';
  }
}

/** Turns a failure to open the KVM device into the sentence a user needs. */
export function kvmOpenError(path: string, err: unknown): KvmError {
  const code = errnoCode(err) ?? 'EUNKNOWN';
  switch (code) {
    case 'ENOENT':
      return new KvmError(
        `${path} does not exist: this machine has no KVM (enable virtualization in the firmware and load the kvm_intel or kvm_amd module).`,
        code,
        { cause: err },
      );
    case 'EACCES':
    case 'EPERM':
      return new KvmError(
        `no permission to open ${path}: add your user to the "kvm" group (or run as root) and log in again.`,
        code,
        { cause: err },
      );
    case 'ENXIO':
    case 'ENODEV':
      return new KvmError(`${path} exists but KVM is not loaded (load the kvm_intel or kvm_amd module).`, code, { cause: err });
    default:
      return new KvmError(`cannot open ${path}: ${(err as Error).message}`, code, { cause: err });
  }
}
