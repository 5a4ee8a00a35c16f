// Virtio block device (virtio 1.2 §5.2), a VirtioDeviceModel for the PCI
// transport (src/virtio/virtio-pci.ts), backed by a raw disk image on the host:
//
//   const disk = VirtioBlk.open({ path: 'disk.img', log: console.error });
//   const blk = new VirtioPciDevice({ memory, device: disk, irq, name: 'virtio-blk' });
//   bridge.addDevice(blk);
//   ...
//   disk.close(); // when the VM is gone
//
// §5.2.1 device id 2; §5.2.2 one virtqueue, 0 "requestq" (VIRTIO_BLK_F_MQ is
// not offered). The model runs on the thread that owns the device (a vCPU
// thread, DESIGN.md "Threading") and does its host I/O synchronously with
// node's fs (readSync, writeSync, fsyncSync): each request is complete, used
// ring entry included, when queueNotify returns.
//
// The image
// ---------
// A raw image: sector n is bytes 512 n .. 512 n + 511 of the file. It must be a
// regular file. Capacity (in 512-byte sectors, §5.2.4 "capacity") is the file
// size divided by 512, rounded down: the bytes of a trailing partial sector
// exist on the host but the guest cannot see them (no error, since qemu-img
// and truncate make whole-sector images anyway). The size is read once, when
// the image is opened; a file that shrinks later gives the guest I/O errors
// for the missing sectors. readOnly opens the file O_RDONLY and offers
// VIRTIO_BLK_F_RO; otherwise it is opened read-write (O_RDWR), which fails
// with EACCES/EROFS for a file we may not write.
//
// Features (§5.2.3)
// -----------------
//   VIRTIO_BLK_F_SEG_MAX (2)   always; seg_max = queue size - 2, room for the
//                              header and status descriptors in a chain of at
//                              most queue size descriptors (§2.7.5.3.1).
//   VIRTIO_BLK_F_RO (5)        when readOnly.
//   VIRTIO_BLK_F_BLK_SIZE (6)  always; blk_size = 512.
//   VIRTIO_BLK_F_FLUSH (9)     always (§5.2.5: "Devices SHOULD always offer
//                              VIRTIO_BLK_F_FLUSH"). Writes go to the host's
//                              page cache; a FLUSH request fsyncs the image.
//                              If the driver does not accept the bit it cannot
//                              ask for durability, so the device is
//                              write-through instead: every write is followed
//                              by an fsync (Linux likewise assumes no write
//                              cache without FLUSH).
//
// Configuration (§5.2.4, struct virtio_blk_config, little-endian)
// ----------------------------------------------------------------
//   0x00 le64 capacity    0x08 le32 size_max    0x0c le32 seg_max
//   0x10 geometry {le16 cylinders, u8 heads, u8 sectors}
//   0x14 le32 blk_size    0x18 topology {u8, u8, le16, le32}
//   0x20 u8 writeback     0x22 le16 num_queues  0x24.. discard and write
//   zeroes limits, up to 0x3b. configSize is 0x3c: the struct up to the
//   secure-erase fields. Only capacity, seg_max and blk_size are non-zero
//   (the others belong to features not offered, and read 0). Any 1-, 2- or
//   4-byte read inside the 0x3c bytes works, e.g. a byte of capacity; the
//   driver's writes are ignored (writeback is writable only with
//   VIRTIO_BLK_F_CONFIG_WCE, not offered). The configuration never changes
//   after the image is opened, so config_generation never moves.
//
// Requests (§5.2.6)
// -----------------
// A chain is: a 16-byte header (le32 type, le32 reserved, le64 sector) at the
// start of the device-readable part; then the data (device-readable for OUT,
// device-writable for IN and GET_ID); then one status byte, the LAST byte of
// the device-writable part. The device reads the header from its own copy
// (readChain), so a guest that changes it during the request cannot make us
// check one value and use another.
//   IN (0)      read sectors: data = the writable bytes before the status byte.
//   OUT (1)     write sectors: data = the readable bytes after the header.
//   FLUSH (4)   fsync the image (nothing to do for a read-only image).
//   GET_ID (8)  the serial: a NUL-padded ASCII string of 20 bytes
//               (VIRTIO_BLK_ID_BYTES, §5.2.6), as much of it as the data
//               buffer holds.
//   other       VIRTIO_BLK_S_UNSUPP (2): GET_LIFETIME, DISCARD, WRITE_ZEROES,
//               SECURE_ERASE and friends belong to features not offered.
// IN/OUT answer VIRTIO_BLK_S_IOERR (1) when the data length is not a
// multiple of 512 (§5.2.6.1 forbids it), when sectors sector ..
// sector + length/512 - 1 are not all below capacity (checked in BigInt:
// the le64 sector cannot overflow anything), for OUT on a read-only device
// (§5.2.6.2: IOERR "for a write request if the VIRTIO_BLK_F_RO feature if
// offered, and MUST NOT write any data"), and when the host I/O fails. A host
// error (EIO, ENOSPC, a file that shrank...) goes to `log` the first time each
// error code is seen, and is counted in stats.hostErrors every time.
// The used length (§2.7.8) is the bytes written into the guest's buffers:
// the data bytes (IN, GET_ID; for an IN that fails part way, the bytes that
// did arrive) plus the status byte.
//
// Host work per request is bounded: data moves in pieces of at most
// VIRTIO_BLK_CHUNK_BYTES (128 KiB) through one scratch buffer (reads) or one
// readChain copy (writes), whatever length the guest's chain claims
// (SplitQueue already bounds a chain to 256 MiB by default).
//
// A chain with fewer than 16 readable bytes (no complete header) or no
// writable byte (nowhere to put the status) is a malformed request, not a
// broken queue: there is no way to report a status, so it goes back to the
// used ring with 0 bytes written, counted in stats.badRequests, and the
// device goes on with the next chain. Errors in the queue itself
// (SplitQueue throws VirtqueueError) propagate to the transport, which sets
// DEVICE_NEEDS_RESET.

import * as nodeFs from 'fs';
import * as path from 'path';
import type { Chain, SplitQueue } from './split-queue';
import { readConfigBytes } from './virtio-pci';
import type { VirtioDeviceModel } from './virtio-pci';

/** Virtio device id of the block device (§5.2.1). */
export const VIRTIO_ID_BLOCK = 2;
/** The request queue (§5.2.2). */
export const VIRTIO_BLK_REQUESTQ = 0;
export const VIRTIO_BLK_QUEUE_SIZE = 256;

// Feature bits (§5.2.3).
export const VIRTIO_BLK_F_SIZE_MAX = 1;
export const VIRTIO_BLK_F_SEG_MAX = 2;
export const VIRTIO_BLK_F_GEOMETRY = 4;
export const VIRTIO_BLK_F_RO = 5;
export const VIRTIO_BLK_F_BLK_SIZE = 6;
export const VIRTIO_BLK_F_FLUSH = 9;

// Request types (§5.2.6, struct virtio_blk_req "type").
export const VIRTIO_BLK_T_IN = 0;
export const VIRTIO_BLK_T_OUT = 1;
export const VIRTIO_BLK_T_FLUSH = 4;
export const VIRTIO_BLK_T_GET_ID = 8;

// Status values (§5.2.6, the last byte of a request).
export const VIRTIO_BLK_S_OK = 0;
export const VIRTIO_BLK_S_IOERR = 1;
export const VIRTIO_BLK_S_UNSUPP = 2;

/** Sector size: capacity and sector numbers count 512-byte sectors whatever blk_size says (§5.2.4, §5.2.6). */
export const VIRTIO_BLK_SECTOR_SIZE = 512;
/** Length of the GET_ID string (VIRTIO_BLK_ID_BYTES, §5.2.6). */
export const VIRTIO_BLK_ID_BYTES = 20;
/** Most bytes moved between guest and host in one step. */
export const VIRTIO_BLK_CHUNK_BYTES = 128 * 1024;

// struct virtio_blk_config offsets (§5.2.4).
export const VIRTIO_BLK_CFG_CAPACITY = 0x00; // le64
export const VIRTIO_BLK_CFG_SIZE_MAX = 0x08; // le32
export const VIRTIO_BLK_CFG_SEG_MAX = 0x0c; // le32
export const VIRTIO_BLK_CFG_GEOMETRY = 0x10; // le16 cylinders, u8 heads, u8 sectors
export const VIRTIO_BLK_CFG_BLK_SIZE = 0x14; // le32
/** Bytes of configuration: through write_zeroes_may_unmap and unused1[3], before max_secure_erase_sectors (0x3c). */
export const VIRTIO_BLK_CONFIG_SIZE = 0x3c;

/** struct virtio_blk_req header: le32 type, le32 reserved, le64 sector (§5.2.6). */
const HEADER_SIZE = 16;
const HEADER_TYPE = 0;
const HEADER_SECTOR = 8;
/** The status byte (§5.2.6: "u8 status"). */
const STATUS_SIZE = 1;

/**
 * PCI class code: base class 0x01 mass storage, sub-class 0x80 "other" (PCI
 * Code and ID Assignment spec). Virtio defines none; drivers match on vendor
 * and device id.
 */
const CLASS_MASS_STORAGE_OTHER = 0x018000;

/** The subset of node's `fs` the model uses; tests pass a wrapper to inject host errors. */
export interface VirtioBlkFs {
  openSync(path: string, flags: string): number;
  fstatSync(fd: number): { size: number; isFile(): boolean };
  readSync(fd: number, buffer: Uint8Array, offset: number, length: number, position: number): number;
  writeSync(fd: number, buffer: Uint8Array, offset: number, length: number, position: number): number;
  fsyncSync(fd: number): void;
  closeSync(fd: number): void;
}

export interface VirtioBlkOptions {
  /** The raw image file. */
  path: string;
  /** Open the image read-only and offer VIRTIO_BLK_F_RO (default false). */
  readOnly?: boolean;
  /**
   * The GET_ID string: printable ASCII, at most 20 bytes. Default: the image's
   * file name, with other characters replaced by '_' and cut to 20 bytes.
   */
  serial?: string;
  /** Receives one message per distinct host error code (the first EIO, the first ENOSPC...). */
  log?: (message: string) => void;
  /** File system calls (default: node's fs). */
  fs?: VirtioBlkFs;
}

export interface VirtioBlkStats {
  /** IN requests completed with OK. */
  reads: number;
  /** OUT requests completed with OK. */
  writes: number;
  /** FLUSH requests completed with OK. */
  flushes: number;
  /** GET_ID requests completed with OK. */
  getIds: number;
  /** Bytes read from the image and given to the guest. */
  bytesRead: number;
  /** Bytes written to the image. */
  bytesWritten: number;
  /** Requests answered VIRTIO_BLK_S_IOERR (bad range or length, write to a read-only disk, host error). */
  ioErrors: number;
  /** Host I/O calls that failed (each also makes its request an IOERR). */
  hostErrors: number;
  /** Requests answered VIRTIO_BLK_S_UNSUPP. */
  unsupported: number;
  /** Chains returned with 0 bytes: short header or no status byte. */
  badRequests: number;
}

/** An image that cannot be used; `code` is the errno name (ENOENT, EACCES...) or EINVAL for a file that is not a regular file. */
export class VirtioBlkError extends Error {
  constructor(
    message: string,
    readonly code: string,
    readonly path: string,
  ) {
    super(message);
    this.name = 'VirtioBlkError';
  }
}

interface Outcome {
  status: number;
  /** Data bytes written into the guest's buffers (the status byte not included). */
  dataWritten: number;
}

/** node's fs, checked against the interface (no cast). */
const defaultFs: VirtioBlkFs = nodeFs;

function errorCode(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code !== '' ? code : 'EUNKNOWN';
}

function errorMessage(err: unknown): string {
  const message = (err as { message?: unknown } | null)?.message;
  return typeof message === 'string' ? message : String(err);
}

/** The one-sentence reason an image cannot be opened, with the fix. */
function openFailure(file: string, readOnly: boolean, err: unknown): VirtioBlkError {
  const code = errorCode(err);
  let why: string;
  switch (code) {
    case 'ENOENT':
      why = 'it does not exist; check the path';
      break;
    case 'EACCES':
    case 'EPERM':
      why = readOnly
        ? 'permission denied; make the file readable by this user'
        : 'permission denied; make the file writable by this user or attach it read-only';
      break;
    case 'EROFS':
      why = 'it is on a read-only file system; attach it read-only';
      break;
    case 'EISDIR':
      why = 'it is a directory; give a raw disk image file';
      break;
    default:
      why = errorMessage(err);
  }
  return new VirtioBlkError(`cannot open disk image ${file} (${code}): ${why}.`, code, file);
}

/** The default serial: the file name, printable ASCII only, at most 20 bytes. */
function serialFromPath(file: string): string {
  return path
    .basename(file)
    .replace(/[^\x20-\x7e]/g, '_')
    .slice(0, VIRTIO_BLK_ID_BYTES);
}

export class VirtioBlk implements VirtioDeviceModel {
  readonly deviceId = VIRTIO_ID_BLOCK;
  readonly features: bigint;
  readonly queueSizes: readonly number[] = [VIRTIO_BLK_QUEUE_SIZE];
  readonly configSize = VIRTIO_BLK_CONFIG_SIZE;
  readonly classCode = CLASS_MASS_STORAGE_OTHER;

  readonly path: string;
  readonly readOnly: boolean;
  /** Disk size in 512-byte sectors. */
  readonly capacity: number;
  /** The GET_ID string. */
  readonly serial: string;
  readonly stats: VirtioBlkStats = {
    reads: 0,
    writes: 0,
    flushes: 0,
    getIds: 0,
    bytesRead: 0,
    bytesWritten: 0,
    ioErrors: 0,
    hostErrors: 0,
    unsupported: 0,
    badRequests: 0,
  };

  private readonly fs: VirtioBlkFs;
  private readonly log?: (message: string) => void;
  private fd: number | undefined;
  private readonly capacityBig: bigint;
  private readonly config: Buffer;
  /** The 20-byte NUL-padded GET_ID answer. */
  private readonly id: Buffer;
  private readonly scratch = Buffer.alloc(VIRTIO_BLK_CHUNK_BYTES);
  private readonly loggedCodes = new Set<string>();
  /**
   * fsync after every write: the driver did not accept VIRTIO_BLK_F_FLUSH.
   * True until activate() says otherwise (the conservative choice for a
   * caller that drives the model without a transport).
   */
  private writeThrough = true;

  /** Opens the image (same as the constructor). Throws VirtioBlkError, one sentence with the errno code kept, if it cannot be used. */
  static open(options: VirtioBlkOptions): VirtioBlk {
    return new VirtioBlk(options);
  }

  constructor(options: VirtioBlkOptions) {
    const file = options.path;
    if (typeof file !== 'string' || file === '') throw new RangeError('virtio-blk: the disk image path is empty');
    const serial = options.serial ?? serialFromPath(file);
    if (!/^[\x20-\x7e]*$/.test(serial) || serial.length > VIRTIO_BLK_ID_BYTES)
      throw new RangeError(`virtio-blk serial ${JSON.stringify(serial)} is not printable ASCII of at most ${VIRTIO_BLK_ID_BYTES} bytes`);
    this.path = file;
    this.readOnly = options.readOnly ?? false;
    this.serial = serial;
    this.log = options.log;
    this.fs = options.fs ?? defaultFs;

    let fd: number;
    try {
      fd = this.fs.openSync(file, this.readOnly ? 'r' : 'r+');
    } catch (err) {
      throw openFailure(file, this.readOnly, err);
    }
    let size: number;
    try {
      const st = this.fs.fstatSync(fd);
      if (!st.isFile())
        throw new VirtioBlkError(`cannot use disk image ${file} (EINVAL): it is not a regular file; give a raw disk image file.`, 'EINVAL', file);
      size = st.size;
    } catch (err) {
      this.fs.closeSync(fd);
      if (err instanceof VirtioBlkError) throw err;
      throw openFailure(file, this.readOnly, err);
    }
    this.fd = fd;
    // Whole sectors only (see the header); size < 2^53, so capacity * 512 is exact.
    this.capacity = Math.floor(size / VIRTIO_BLK_SECTOR_SIZE);
    this.capacityBig = BigInt(this.capacity);

    let features = (1n << BigInt(VIRTIO_BLK_F_SEG_MAX)) | (1n << BigInt(VIRTIO_BLK_F_BLK_SIZE)) | (1n << BigInt(VIRTIO_BLK_F_FLUSH));
    if (this.readOnly) features |= 1n << BigInt(VIRTIO_BLK_F_RO);
    this.features = features;

    this.config = Buffer.alloc(VIRTIO_BLK_CONFIG_SIZE);
    this.config.writeBigUInt64LE(this.capacityBig, VIRTIO_BLK_CFG_CAPACITY);
    // A chain holds at most queue size descriptors (§2.7.5.3.1); two are the header and the status.
    this.config.writeUInt32LE(VIRTIO_BLK_QUEUE_SIZE - 2, VIRTIO_BLK_CFG_SEG_MAX);
    this.config.writeUInt32LE(VIRTIO_BLK_SECTOR_SIZE, VIRTIO_BLK_CFG_BLK_SIZE);

    this.id = Buffer.alloc(VIRTIO_BLK_ID_BYTES);
    this.id.write(serial, 'latin1');
  }

  /** Whether close() has run. */
  get closed(): boolean {
    return this.fd === undefined;
  }

  /** Closes the image. Later requests get VIRTIO_BLK_S_IOERR. Calling it again does nothing. */
  close(): void {
    const fd = this.fd;
    if (fd === undefined) return;
    this.fd = undefined;
    this.fs.closeSync(fd);
  }

  // ---- VirtioDeviceModel ------------------------------------------------------

  readConfig(offset: number, size: number): number {
    return readConfigBytes(this.config, offset, size);
  }

  writeConfig(_offset: number, _size: number, _value: number): void {
    // Nothing is writable without VIRTIO_BLK_F_CONFIG_WCE (§5.2.4): ignored.
  }

  activate(features: bigint): void {
    this.writeThrough = (features & (1n << BigInt(VIRTIO_BLK_F_FLUSH))) === 0n;
  }

  queueNotify(queueIndex: number, queue: SplitQueue): void {
    if (queueIndex !== VIRTIO_BLK_REQUESTQ) return;
    for (let chain = queue.popAvailable(); chain; chain = queue.popAvailable()) {
      queue.pushUsed(chain.head, this.serve(queue, chain));
    }
  }

  reset(): void {
    // Every request completes inside queueNotify: nothing is in flight.
  }

  // ---- requests (§5.2.6) --------------------------------------------------------

  /** Serves one chain; returns the used length. */
  private serve(queue: SplitQueue, chain: Chain): number {
    if (chain.readableBytes < HEADER_SIZE || chain.writableBytes < STATUS_SIZE) {
      this.stats.badRequests++;
      return 0;
    }
    const header = queue.readChain(chain, HEADER_SIZE);
    const view = new DataView(header.buffer, header.byteOffset, header.byteLength);
    const type = view.getUint32(HEADER_TYPE, true);
    const sector = view.getBigUint64(HEADER_SECTOR, true);
    let outcome: Outcome;
    switch (type) {
      case VIRTIO_BLK_T_IN:
        outcome = this.readRequest(queue, chain, sector);
        break;
      case VIRTIO_BLK_T_OUT:
        outcome = this.writeRequest(queue, chain, sector);
        break;
      case VIRTIO_BLK_T_FLUSH:
        outcome = this.flushRequest();
        break;
      case VIRTIO_BLK_T_GET_ID:
        outcome = this.getIdRequest(queue, chain);
        break;
      default:
        outcome = { status: VIRTIO_BLK_S_UNSUPP, dataWritten: 0 };
    }
    if (outcome.status === VIRTIO_BLK_S_IOERR) this.stats.ioErrors++;
    else if (outcome.status === VIRTIO_BLK_S_UNSUPP) this.stats.unsupported++;
    queue.writeChain(chain, Uint8Array.of(outcome.status), chain.writableBytes - STATUS_SIZE);
    return outcome.dataWritten + STATUS_SIZE;
  }

  /** Whether `length` bytes from `sector` are whole sectors inside the disk; the byte offset if so. */
  private byteOffset(sector: bigint, length: number): number | undefined {
    if (length % VIRTIO_BLK_SECTOR_SIZE !== 0) return undefined;
    const sectors = BigInt(length / VIRTIO_BLK_SECTOR_SIZE);
    if (sector > this.capacityBig || sectors > this.capacityBig - sector) return undefined;
    return Number(sector) * VIRTIO_BLK_SECTOR_SIZE; // ≤ the file size, so exact
  }

  private readRequest(queue: SplitQueue, chain: Chain, sector: bigint): Outcome {
    const length = chain.writableBytes - STATUS_SIZE;
    const start = this.byteOffset(sector, length);
    if (start === undefined) return { status: VIRTIO_BLK_S_IOERR, dataWritten: 0 };
    let done = 0;
    while (done < length) {
      const n = Math.min(VIRTIO_BLK_CHUNK_BYTES, length - done);
      const piece = this.scratch.subarray(0, n);
      if (!this.hostRead(piece, start + done)) return { status: VIRTIO_BLK_S_IOERR, dataWritten: done };
      queue.writeChain(chain, piece, done); // all n bytes: done + n <= length < writableBytes
      done += n;
    }
    this.stats.reads++;
    this.stats.bytesRead += length;
    return { status: VIRTIO_BLK_S_OK, dataWritten: length };
  }

  private writeRequest(queue: SplitQueue, chain: Chain, sector: bigint): Outcome {
    const failed: Outcome = { status: VIRTIO_BLK_S_IOERR, dataWritten: 0 };
    if (this.readOnly) return failed; // §5.2.6.2: IOERR, and no data written
    const length = chain.readableBytes - HEADER_SIZE;
    const start = this.byteOffset(sector, length);
    if (start === undefined) return failed;
    let done = 0;
    while (done < length) {
      const piece = queue.readChain(chain, Math.min(VIRTIO_BLK_CHUNK_BYTES, length - done), HEADER_SIZE + done);
      if (piece.length === 0 || !this.hostWrite(piece, start + done)) return failed;
      done += piece.length;
    }
    if (this.writeThrough && length > 0 && !this.hostSync()) return failed;
    this.stats.writes++;
    this.stats.bytesWritten += length;
    return { status: VIRTIO_BLK_S_OK, dataWritten: 0 };
  }

  private flushRequest(): Outcome {
    // A read-only image has nothing of ours to make durable.
    if (!this.readOnly && !this.hostSync()) return { status: VIRTIO_BLK_S_IOERR, dataWritten: 0 };
    this.stats.flushes++;
    return { status: VIRTIO_BLK_S_OK, dataWritten: 0 };
  }

  private getIdRequest(queue: SplitQueue, chain: Chain): Outcome {
    const room = chain.writableBytes - STATUS_SIZE;
    const written = queue.writeChain(chain, this.id.subarray(0, Math.min(room, VIRTIO_BLK_ID_BYTES)));
    this.stats.getIds++;
    return { status: VIRTIO_BLK_S_OK, dataWritten: written };
  }

  // ---- host I/O: false (and a report) on failure -------------------------------------

  private openFd(): number {
    if (this.fd === undefined) throw Object.assign(new Error('the disk image was closed'), { code: 'ECLOSED' });
    return this.fd;
  }

  /** Fills `buffer` from the image at byte `position`. */
  private hostRead(buffer: Uint8Array, position: number): boolean {
    try {
      const fd = this.openFd();
      let done = 0;
      while (done < buffer.length) {
        const n = this.fs.readSync(fd, buffer, done, buffer.length - done, position + done);
        if (!Number.isInteger(n) || n <= 0 || n > buffer.length - done)
          throw Object.assign(new Error('end of file inside the disk: the image shrank after it was opened'), { code: 'ESHORT' });
        done += n;
      }
      return true;
    } catch (err) {
      this.hostError('read', position, err);
      return false;
    }
  }

  /** Writes all of `data` to the image at byte `position`. */
  private hostWrite(data: Uint8Array, position: number): boolean {
    try {
      const fd = this.openFd();
      let done = 0;
      while (done < data.length) {
        const n = this.fs.writeSync(fd, data, done, data.length - done, position + done);
        if (!Number.isInteger(n) || n <= 0 || n > data.length - done)
          throw Object.assign(new Error(`write made no progress (returned ${n})`), { code: 'ESHORT' });
        done += n;
      }
      return true;
    } catch (err) {
      this.hostError('write', position, err);
      return false;
    }
  }

  private hostSync(): boolean {
    try {
      this.fs.fsyncSync(this.openFd());
      return true;
    } catch (err) {
      this.hostError('fsync', undefined, err);
      return false;
    }
  }

  private hostError(op: string, position: number | undefined, err: unknown): void {
    this.stats.hostErrors++;
    const code = errorCode(err);
    if (this.loggedCodes.has(code)) return;
    this.loggedCodes.add(code);
    const where = position === undefined ? '' : ` at byte ${position}`;
    this.log?.(
      `virtio-blk ${this.path}: ${op}${where} failed with ${code} (${errorMessage(err)}); the guest gets an I/O error (further ${code} errors are not reported)`,
    );
  }
}
