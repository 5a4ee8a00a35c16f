// A Linux TAP interface: the host end of a guest's virtio-net device.
//
// Opening /dev/net/tun and binding the file descriptor to an interface with
// TUNSETIFF (Documentation/networking/tuntap.rst) gives one Ethernet frame per
// read(2) and sends one frame per write(2). IFF_NO_PI drops the 4-byte packet
// information prefix, so what crosses the fd is the bare frame; tskvm does not
// ask for IFF_VNET_HDR because its virtio-net offers no offloads (the 12-byte
// virtio_net_hdr is added and removed by the device model).
//
// The fd is non-blocking: the vCPU thread writes the guest's frames and must
// never sleep on a full host queue (the frame is dropped and counted, as a
// real NIC would drop it), and readers get EAGAIN instead of blocking.
import * as fs from 'fs';
import { native } from '../native';

/** _IOW('T', 202, int) from <linux/if_tun.h>. */
const TUNSETIFF = 0x400454ca;
const IFF_TAP = 0x0002;
const IFF_NO_PI = 0x1000;
/** struct ifreq: ifr_name[IFNAMSIZ = 16], then a union whose first member is ifr_flags (short); 40 bytes on x86-64. */
const IFREQ_SIZE = 40;
const IFNAMSIZ = 16;
/** The largest frame a tap hands over without offloads: 14-byte header + 65535 (an IPv4/IPv6 packet can be no larger). */
export const TAP_MAX_FRAME = 14 + 65535;

export class TapError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
  }
}

export interface TapStats {
  txFrames: number;
  txDropped: number;
  rxFrames: number;
}

export class Tap {
  readonly name: string;
  readonly fd: number;
  readonly stats: TapStats = { txFrames: 0, txDropped: 0, rxFrames: 0 };
  private closed = false;
  private reportedWriteError?: string;

  private constructor(name: string, fd: number) {
    this.name = name;
    this.fd = fd;
  }

  /**
   * Opens TAP interface `name` (created if missing; needs CAP_NET_ADMIN, or an
   * existing persistent tap owned by this user). Throws a TapError with one
   * sentence saying what went wrong.
   */
  static open(name: string): Tap {
    if (!/^[A-Za-z0-9_.-]{1,15}$/.test(name))
      throw new TapError(`tap interface name "${name}" must be 1 to 15 letters, digits, '_', '.' or '-'.`, 'EINVAL');
    let fd: number;
    try {
      fd = native.open('/dev/net/tun', fs.constants.O_RDWR | fs.constants.O_NONBLOCK);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'EIO';
      const why = code === 'ENOENT' ? 'does not exist (is the tun module loaded?)' : code === 'EACCES' ? 'is not accessible (permission denied)' : `cannot be opened (${code})`;
      throw new TapError(`/dev/net/tun ${why}; cannot attach tap ${name}.`, code);
    }
    const ifreq = new Uint8Array(IFREQ_SIZE);
    ifreq.set(Buffer.from(name, 'ascii').subarray(0, IFNAMSIZ - 1));
    new DataView(ifreq.buffer).setUint16(IFNAMSIZ, IFF_TAP | IFF_NO_PI, true);
    try {
      native.ioctl(fd, TUNSETIFF, ifreq);
    } catch (err) {
      native.close(fd);
      const code = (err as NodeJS.ErrnoException).code ?? 'EIO';
      const why =
        code === 'EPERM'
          ? 'needs CAP_NET_ADMIN (run as root, or create it first with `ip tuntap add NAME mode tap user $USER`)'
          : code === 'EBUSY'
            ? 'is in use by another program'
            : code === 'EINVAL'
              ? 'exists but is not a tap interface'
              : `cannot be attached (${code})`;
      throw new TapError(`tap ${name} ${why}.`, code);
    }
    return new Tap(name, fd);
  }

  /** Wraps an fd already bound to tap `name` (by Tap.open on another thread); close() is then the opener's job. */
  static fromFd(name: string, fd: number): Tap {
    if (!Number.isInteger(fd) || fd < 0) throw new TapError(`invalid fd ${fd} for tap ${name}.`, 'EBADF');
    return new Tap(name, fd);
  }

  /** Where unusual write errors are reported (once per error code). */
  log?: (message: string) => void;

  /** Sends one frame to the host; a full host queue or a write error drops it (counted; never throws). */
  write(frame: Uint8Array): boolean {
    if (this.closed) return false;
    try {
      fs.writeSync(this.fd, frame);
      this.stats.txFrames++;
      return true;
    } catch (err) {
      this.stats.txDropped++;
      const code = (err as NodeJS.ErrnoException).code ?? 'EIO';
      // EAGAIN: the host is not reading fast enough; EIO: the interface is down. Both are normal for a NIC.
      if (code !== 'EAGAIN' && code !== 'EIO' && this.reportedWriteError !== code) {
        this.reportedWriteError = code;
        this.log?.(`writing to tap ${this.name} failed (${code}); frames are dropped`);
      }
      return false;
    }
  }

  /**
   * Reads one frame, or undefined when none is waiting. `buffer` should hold
   * TAP_MAX_FRAME bytes (a shorter buffer truncates the frame).
   */
  read(buffer: Uint8Array): Uint8Array | undefined {
    if (this.closed) return undefined;
    try {
      const n = fs.readSync(this.fd, buffer, 0, buffer.length, null);
      this.stats.rxFrames++;
      return buffer.subarray(0, n);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EAGAIN') return undefined;
      throw err;
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    native.close(this.fd);
  }
}
