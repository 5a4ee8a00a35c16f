/**
 * A writer (and a small reader, for tests and inspection) for the "newc" cpio
 * format, the format the Linux kernel unpacks an initramfs from.
 *
 * Each entry is:
 *
 *   header  110 ASCII bytes: magic "070701" then 13 fields of 8 upper-case hex digits
 *             c_ino c_mode c_uid c_gid c_nlink c_mtime c_filesize
 *             c_devmajor c_devminor c_rdevmajor c_rdevminor c_namesize c_check
 *   name    c_namesize bytes including the terminating NUL, then zero padding so that
 *           header + name ends on a multiple of 4
 *   data    c_filesize bytes (file contents, or the target of a symlink without NUL),
 *           then zero padding to a multiple of 4
 *
 * The archive ends with an entry named "TRAILER!!!" (all fields zero, nlink 1).
 * See the kernel's Documentation/driver-api/early-userspace/buffer-format.rst.
 */

/** File type bits of st_mode (octal, as in <sys/stat.h>). */
export const S_IFMT = 0o170000;
export const S_IFDIR = 0o040000;
export const S_IFREG = 0o100000;
export const S_IFLNK = 0o120000;
export const S_IFCHR = 0o020000;
export const S_IFBLK = 0o060000;

export const NEWC_MAGIC = '070701';
export const NEWC_HEADER_SIZE = 110;
export const TRAILER_NAME = 'TRAILER!!!';

/** Common ownership/time fields; all default to 0. */
export interface EntryMeta {
  uid?: number;
  gid?: number;
  /** Seconds since the epoch. Default 0, so archives are reproducible. */
  mtime?: number;
}

export type CpioEntry =
  | ({ type: 'dir'; path: string; mode?: number } & EntryMeta)
  | ({ type: 'file'; path: string; data: Uint8Array | string; mode?: number } & EntryMeta)
  | ({ type: 'symlink'; path: string; target: string } & EntryMeta)
  | ({ type: 'chardev'; path: string; major: number; minor: number; mode?: number } & EntryMeta)
  | ({ type: 'blockdev'; path: string; major: number; minor: number; mode?: number } & EntryMeta);

/** One parsed entry, as returned by {@link readCpio}. */
export interface CpioRecord {
  name: string;
  ino: number;
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  mtime: number;
  devMajor: number;
  devMinor: number;
  rdevMajor: number;
  rdevMinor: number;
  data: Buffer;
}

const MAX_FIELD = 0xffffffff;
/** Linux's PATH_MAX; the kernel refuses longer names in an initramfs. */
const MAX_NAME_BYTES = 4095;

export class CpioError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CpioError';
  }
}

function pad4(n: number): number {
  return (4 - (n % 4)) % 4;
}

function hex8(value: number, field: string): string {
  if (!Number.isInteger(value) || value < 0 || value > MAX_FIELD) {
    throw new CpioError(`cpio: field ${field} = ${value} is not an integer in 0..0xffffffff`);
  }
  return value.toString(16).toUpperCase().padStart(8, '0');
}

/**
 * Normalises an archive path: no leading "/" or "./", no empty, "." or ".."
 * components, no NUL. "/bin/sh" and "bin/sh" both become "bin/sh".
 */
export function normalizePath(path: string): string {
  if (typeof path !== 'string') throw new CpioError('cpio: path must be a string');
  if (path.includes('\0')) throw new CpioError(`cpio: path ${JSON.stringify(path)} contains a NUL byte`);
  let p = path;
  while (p.startsWith('/')) p = p.slice(1);
  while (p.startsWith('./')) p = p.slice(2);
  while (p.endsWith('/')) p = p.slice(0, -1);
  if (p === '' || p === '.') throw new CpioError(`cpio: path ${JSON.stringify(path)} names no entry`);
  for (const part of p.split('/')) {
    if (part === '' || part === '.' || part === '..') {
      throw new CpioError(`cpio: path ${JSON.stringify(path)} has an empty, "." or ".." component`);
    }
  }
  if (Buffer.byteLength(p, 'utf8') > MAX_NAME_BYTES) {
    throw new CpioError(`cpio: path ${JSON.stringify(p.slice(0, 40))}... is longer than ${MAX_NAME_BYTES} bytes`);
  }
  return p;
}

function permBits(mode: number | undefined, dflt: number, path: string): number {
  const m = mode ?? dflt;
  if (!Number.isInteger(m) || m < 0 || m > 0o7777) {
    throw new CpioError(`cpio: mode ${m} for ${path} must be permission bits in 0..0o7777 (no file type bits)`);
  }
  return m;
}

function checkDevNum(n: number, what: string, path: string): number {
  // Linux dev_t: 12-bit major, 20-bit minor.
  const max = what === 'major' ? 0xfff : 0xfffff;
  if (!Number.isInteger(n) || n < 0 || n > max) {
    throw new CpioError(`cpio: device ${what} ${n} for ${path} is out of range 0..${max}`);
  }
  return n;
}

interface RawHeader {
  ino: number;
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  mtime: number;
  filesize: number;
  devMajor: number;
  devMinor: number;
  rdevMajor: number;
  rdevMinor: number;
}

/** Encodes one header + name (padded); data is appended by the caller. */
export function encodeHeader(name: string, h: RawHeader): Buffer {
  const nameBytes = Buffer.from(name + '\0', 'utf8');
  const fields = [
    hex8(h.ino, 'ino'),
    hex8(h.mode, 'mode'),
    hex8(h.uid, 'uid'),
    hex8(h.gid, 'gid'),
    hex8(h.nlink, 'nlink'),
    hex8(h.mtime, 'mtime'),
    hex8(h.filesize, 'filesize'),
    hex8(h.devMajor, 'devmajor'),
    hex8(h.devMinor, 'devminor'),
    hex8(h.rdevMajor, 'rdevmajor'),
    hex8(h.rdevMinor, 'rdevminor'),
    hex8(nameBytes.length, 'namesize'),
    hex8(0, 'check'),
  ];
  const header = Buffer.from(NEWC_MAGIC + fields.join(''), 'ascii');
  if (header.length !== NEWC_HEADER_SIZE) throw new Error('cpio: internal error, header size');
  const padding = Buffer.alloc(pad4(NEWC_HEADER_SIZE + nameBytes.length));
  return Buffer.concat([header, nameBytes, padding]);
}

/**
 * Builds a newc archive in memory. Entries are written in insertion order (the
 * kernel creates them in that order, so add a directory before its contents).
 * Inode numbers are assigned from 1 upwards; hard links are not produced.
 */
export class CpioWriter {
  private readonly chunks: Buffer[] = [];
  private readonly seen = new Set<string>();
  private nextIno = 1;
  private size = 0;
  private finished = false;

  /** Total bytes so far (the trailer is added by {@link finish}). */
  get byteLength(): number {
    return this.size;
  }

  has(path: string): boolean {
    return this.seen.has(normalizePath(path));
  }

  add(entry: CpioEntry): this {
    if (this.finished) throw new CpioError('cpio: archive already finished');
    const name = normalizePath(entry.path);
    if (name === TRAILER_NAME) throw new CpioError(`cpio: ${TRAILER_NAME} is reserved for the trailer`);
    if (this.seen.has(name)) throw new CpioError(`cpio: duplicate entry ${name}`);

    let mode: number;
    let data: Buffer = Buffer.alloc(0);
    let rdevMajor = 0;
    let rdevMinor = 0;
    let nlink = 1;
    switch (entry.type) {
      case 'dir':
        mode = S_IFDIR | permBits(entry.mode, 0o755, name);
        nlink = 2;
        break;
      case 'file':
        mode = S_IFREG | permBits(entry.mode, 0o644, name);
        if (typeof entry.data === 'string') data = Buffer.from(entry.data, 'utf8');
        else if (entry.data instanceof Uint8Array) {
          data = Buffer.from(entry.data.buffer, entry.data.byteOffset, entry.data.byteLength);
        } else throw new CpioError(`cpio: data for ${name} must be a string or Uint8Array`);
        if (data.length > MAX_FIELD) throw new CpioError(`cpio: ${name} is larger than 4 GiB - 1`);
        break;
      case 'symlink':
        mode = S_IFLNK | 0o777;
        if (typeof entry.target !== 'string' || entry.target === '' || entry.target.includes('\0')) {
          throw new CpioError(`cpio: symlink ${name} needs a non-empty target without NUL bytes`);
        }
        data = Buffer.from(entry.target, 'utf8');
        if (data.length > MAX_NAME_BYTES) throw new CpioError(`cpio: symlink target for ${name} is too long`);
        break;
      case 'chardev':
      case 'blockdev':
        mode = (entry.type === 'chardev' ? S_IFCHR : S_IFBLK) | permBits(entry.mode, 0o600, name);
        rdevMajor = checkDevNum(entry.major, 'major', name);
        rdevMinor = checkDevNum(entry.minor, 'minor', name);
        break;
      default:
        throw new CpioError(`cpio: unknown entry type ${(entry as { type: unknown }).type}`);
    }

    const header = encodeHeader(name, {
      ino: this.nextIno++,
      mode,
      uid: entry.uid ?? 0,
      gid: entry.gid ?? 0,
      nlink,
      mtime: entry.mtime ?? 0,
      filesize: data.length,
      devMajor: 0,
      devMinor: 0,
      rdevMajor,
      rdevMinor,
    });
    this.push(header);
    if (data.length > 0) {
      this.push(data);
      const p = pad4(data.length);
      if (p) this.push(Buffer.alloc(p));
    }
    this.seen.add(name);
    return this;
  }

  /** Adds a directory and any missing parents (e.g. "lib/modules/6.1"). */
  mkdirp(path: string, mode = 0o755): this {
    const parts = normalizePath(path).split('/');
    for (let i = 1; i <= parts.length; i++) {
      const p = parts.slice(0, i).join('/');
      if (!this.seen.has(p)) this.add({ type: 'dir', path: p, mode });
    }
    return this;
  }

  /** Appends the trailer and returns the archive. The writer cannot be used afterwards. */
  finish(): Buffer {
    if (this.finished) throw new CpioError('cpio: archive already finished');
    this.push(
      encodeHeader(TRAILER_NAME, {
        ino: 0, mode: 0, uid: 0, gid: 0, nlink: 1, mtime: 0, filesize: 0,
        devMajor: 0, devMinor: 0, rdevMajor: 0, rdevMinor: 0,
      }),
    );
    this.finished = true;
    return Buffer.concat(this.chunks, this.size);
  }

  private push(b: Buffer): void {
    this.chunks.push(b);
    this.size += b.length;
  }
}

/** Convenience: archive a list of entries in order. */
export function writeCpio(entries: Iterable<CpioEntry>): Buffer {
  const w = new CpioWriter();
  for (const e of entries) w.add(e);
  return w.finish();
}

/**
 * Parses a newc archive (uncompressed) up to its trailer. Throws CpioError on a
 * malformed archive; never reads outside the buffer.
 */
export function readCpio(archive: Uint8Array): CpioRecord[] {
  const buf = Buffer.from(archive.buffer, archive.byteOffset, archive.byteLength);
  const out: CpioRecord[] = [];
  let off = 0;
  for (;;) {
    if (off + NEWC_HEADER_SIZE > buf.length) throw new CpioError(`cpio: truncated header at offset ${off}`);
    const magic = buf.toString('ascii', off, off + 6);
    if (magic !== NEWC_MAGIC) throw new CpioError(`cpio: bad magic ${JSON.stringify(magic)} at offset ${off}`);
    const f: number[] = [];
    for (let i = 0; i < 13; i++) {
      const s = buf.toString('ascii', off + 6 + i * 8, off + 14 + i * 8);
      if (!/^[0-9A-Fa-f]{8}$/.test(s)) throw new CpioError(`cpio: bad hex field ${JSON.stringify(s)} at offset ${off}`);
      f.push(parseInt(s, 16));
    }
    const [ino, mode, uid, gid, nlink, mtime, filesize, devMajor, devMinor, rdevMajor, rdevMinor, namesize] = f;
    if (namesize < 1) throw new CpioError(`cpio: zero name size at offset ${off}`);
    const nameStart = off + NEWC_HEADER_SIZE;
    const nameEnd = nameStart + namesize;
    if (nameEnd > buf.length) throw new CpioError(`cpio: truncated name at offset ${off}`);
    if (buf[nameEnd - 1] !== 0) throw new CpioError(`cpio: name at offset ${off} is not NUL-terminated`);
    const name = buf.toString('utf8', nameStart, nameEnd - 1);
    const dataStart = nameEnd + pad4(NEWC_HEADER_SIZE + namesize);
    const dataEnd = dataStart + filesize;
    if (dataEnd > buf.length) throw new CpioError(`cpio: truncated data for ${name}`);
    if (name === TRAILER_NAME) break;
    out.push({
      name, ino, mode, uid, gid, nlink, mtime, devMajor, devMinor, rdevMajor, rdevMinor,
      data: Buffer.from(buf.subarray(dataStart, dataEnd)),
    });
    off = dataEnd + pad4(filesize);
  }
  return out;
}
