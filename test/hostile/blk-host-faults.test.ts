// Host faults under virtio-blk (issue 6), with a real guest driver
// (guests/blk-faults.c) on /dev/kvm:
//   - ENOSPC: the image is a sparse file on a tiny tmpfs that fills up;
//   - EIO: a real one, from an image on an ext2 file system whose loop device
//     was shrunk under it (reads of blocks past the device's new end fail in
//     the block layer). Where loop devices or mounts are not available the
//     test says so and injects EIO through VirtioBlk's `fs` option instead;
//   - durability: the VMM (a child process) is SIGKILLed as soon as the guest
//     says its FLUSH completed; every write before the flush must be in the
//     image.
// In each case the guest sees VIRTIO_BLK_S_IOERR for the failed requests, the
// VMM logs the host error once (not once per request) and the next request
// that the host can serve is served.
import { execFileSync, spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { VirtioBlk, type VirtioBlkFs } from '../../src/virtio/virtio-blk';
import { hostileGuest, patternImage, runHostileGuest, SECTOR, tempDir } from './virtio-harness';

/** HOST_MODE_ADDR in guests/virtio-guest.h: the guest's mode word, then its argument. */
const HOST_MODE_ADDR = 0x7f00;
const sh = (cmd: string, ...args: string[]): string => execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

let dir: string;
beforeAll(() => {
  dir = tempDir('tskvm-blk-faults-');
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

test('ENOSPC: writes past a full file system get IOERR, logged once; space that exists still works', () => {
  const mnt = path.join(dir, 'full');
  fs.mkdirSync(mnt);
  // 64 KiB of tmpfs; the image claims 1 MiB (sparse), so the 129th sector written has nowhere to go.
  sh('mount', '-t', 'tmpfs', '-o', 'size=64k', 'none', mnt);
  try {
    const image = path.join(mnt, 'disk.img');
    fs.writeFileSync(image, '');
    fs.truncateSync(image, 1024 * 1024);
    let hostErrors = 0;
    const run = runHostileGuest(
      'blk-faults',
      { disks: [{ path: image }] },
      {
        setup: (m) => m.memory.writeU32(HOST_MODE_ADDR, 1),
        inspect: (m) => (hostErrors = m.disks[0]!.stats.hostErrors),
      },
    );
    expect(run.done).toBe(true);
    const line = run.cases.get('enospc');
    const m = /^first-ioerr=(\d+) status=1 more=1,1,1 rewrite=0 read=0,ok$/.exec(line ?? '');
    expect(m ? line : `enospc: ${line}`).toBe(line);
    const first = Number(m![1]);
    // tmpfs allocates whole pages: the writes that fit are the 8-sector pages 64 KiB holds.
    expect(first).toBe(128);
    // Logged once, counted every time (the first failure and the 3 after it).
    expect(run.logs.filter((l) => /ENOSPC/.test(l))).toHaveLength(1);
    expect(run.logs.filter((l) => /ENOSPC/.test(l))[0]).toMatch(/virtio-blk .*disk\.img: write at byte 65536 failed with ENOSPC/);
    expect(hostErrors).toBe(4);
    // What the guest wrote before the file system filled is in the image.
    const data = fs.readFileSync(image);
    for (const n of [1, 64, first - 1]) expect(data.toString('latin1', n * SECTOR, n * SECTOR + 8)).toBe(`gwri${String(n).padStart(4, '0')}`);
    expect(data.toString('latin1', 0, 9)).toBe('gwri0000!');
  } finally {
    sh('umount', mnt);
  }
});

/**
 * A 4 MiB image on ext2 on a loop device, whose backing file is then cut to
 * 4 MiB: the image's last blocks (ext2 puts them past 4 MiB on the device)
 * now lie past the end of the device, and reading them fails with EIO. Returns
 * undefined, with the reason, where this cannot be set up.
 */
function imageWithRealEio(): { image: string; cleanup: () => void } | { reason: string } {
  const back = path.join(dir, 'ext2.img');
  const mnt = path.join(dir, 'ext2');
  fs.mkdirSync(mnt, { recursive: true });
  let loop: string | undefined;
  let mounted = false;
  const cleanup = (): void => {
    if (mounted) sh('umount', '-l', mnt);
    if (loop) sh('losetup', '-d', loop);
  };
  try {
    fs.writeFileSync(back, '');
    fs.truncateSync(back, 16 * 1024 * 1024);
    sh('mkfs.ext2', '-q', '-F', back);
    loop = sh('losetup', '-f', '--show', back).trim();
    sh('mount', '-t', 'ext2', loop, mnt);
    mounted = true;
    const image = path.join(mnt, 'disk.img');
    patternImage(image, 8192);
    const fd = fs.openSync(image, 'r');
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fs.truncateSync(back, 4 * 1024 * 1024);
    sh('losetup', '-c', loop);
    // Drop the image's pages from the page cache, so reads go to the device.
    sh('dd', `if=${image}`, 'iflag=nocache', 'count=0', 'status=none');
    // Check: the last sector must now fail with EIO, the first must not.
    const check = fs.openSync(image, 'r');
    try {
      fs.readSync(check, Buffer.alloc(SECTOR), 0, SECTOR, 0);
      try {
        fs.readSync(check, Buffer.alloc(SECTOR), 0, SECTOR, 4 * 1024 * 1024 - SECTOR);
        cleanup();
        return { reason: 'the last sector is still readable after the loop device shrank' };
      } catch (err) {
        if ((err as { code?: string }).code !== 'EIO') throw err;
      }
    } finally {
      fs.closeSync(check);
    }
    return { image, cleanup };
  } catch (err) {
    try {
      cleanup();
    } catch {
      // best effort
    }
    return { reason: `loop device + ext2 not available here: ${(err as Error).message.split('\n')[0]}` };
  }
}

test('EIO: a read the host cannot do gets IOERR, logged once; readable sectors still work', () => {
  const real = imageWithRealEio();
  const logs: string[] = [];
  let hostErrors = 0;
  let run;
  if ('image' in real) {
    try {
      run = runHostileGuest(
        'blk-faults',
        { disks: [{ path: real.image }] },
        {
          setup: (m) => m.memory.writeU32(HOST_MODE_ADDR, 2),
          inspect: (m, r) => {
            hostErrors = m.disks[0]!.stats.hostErrors;
            logs.push(...r.logs);
          },
        },
      );
    } finally {
      real.cleanup();
    }
  } else {
    // Injected: node's fs, but reads of the last 4 KiB fail with EIO.
    console.warn(`EIO is injected through VirtioBlk's fs option: ${real.reason}`);
    const image = path.join(dir, 'eio.img');
    patternImage(image, 8192);
    const faulty: VirtioBlkFs = {
      ...fs,
      readSync: (fd, buffer, offset, length, position) => {
        if (position + length > 4 * 1024 * 1024 - 4096) throw Object.assign(new Error('EIO: i/o error, read'), { code: 'EIO' });
        return fs.readSync(fd, buffer, offset, length, position);
      },
    };
    const model = VirtioBlk.open({ path: image, fs: faulty, log: (message) => logs.push(message) });
    try {
      run = runHostileGuest('blk-faults', {}, {
        setup: (m) => {
          m.addVirtioDevice(model, 'virtio-blk0');
          m.memory.writeU32(HOST_MODE_ADDR, 2);
        },
      });
      hostErrors = model.stats.hostErrors;
    } finally {
      model.close();
    }
  }
  expect(run.done).toBe(true);
  expect(run.cases.get('eio')).toBe('first=0 last=1,1,1 again=0 data=ok');
  expect(logs.filter((l) => /EIO/.test(l))).toHaveLength(1);
  expect(logs.find((l) => /EIO/.test(l))).toMatch(/virtio-blk .*\.img: read at byte \d+ failed with EIO .*further EIO errors are not reported/);
  expect(hostErrors).toBe(3);
});

describe('durability', () => {
  const COUNT = 64;

  test('FLUSH fsyncs the image after the writes before it, and before the guest hears back', () => {
    const image = path.join(dir, 'order.img');
    patternImage(image, 256);
    const events: string[] = [];
    const counting: VirtioBlkFs = {
      ...fs,
      writeSync: (fd, buffer, offset, length, position) => {
        events.push(`write ${position / SECTOR}`);
        return fs.writeSync(fd, buffer, offset, length, position);
      },
      fsyncSync: (fd) => {
        events.push('fsync');
        fs.fsyncSync(fd);
      },
    };
    const model = VirtioBlk.open({ path: image, fs: counting });
    try {
      const run = runHostileGuest('blk-faults', {}, {
        setup: (m) => {
          m.addVirtioDevice(model, 'virtio-blk0');
          m.memory.writeU32(HOST_MODE_ADDR, 4);
          m.memory.writeU32(HOST_MODE_ADDR + 4, COUNT);
        },
        onLine: (line) => events.push(line.split(' ')[0]!),
      });
      expect(run.lines).toContain(`FLUSHED n=${COUNT} writes=0 status=0`);
    } finally {
      model.close();
    }
    // The driver accepted VIRTIO_BLK_F_FLUSH, so writes are not synced one by one;
    // the FLUSH is one fsync, after every write and before the completion reached the guest.
    expect(events).toEqual([...Array.from({ length: COUNT }, (_, n) => `write ${n}`), 'fsync', 'FLUSHED', 'DONE']);
  });

  test('a VMM killed (SIGKILL) right after the guest saw its FLUSH complete has every write before the flush in the image', async () => {
    const dist = path.join(__dirname, '..', '..', 'dist', 'src', 'vmm', 'sync-machine.js');
    if (!fs.existsSync(dist)) throw new Error(`${dist} is missing: build it with \`npx tsc -p .\``);
    const image = path.join(dir, 'durable.img');
    patternImage(image, 1024);
    const child = spawn(process.execPath, [path.join(__dirname, 'blk-durability-child.js'), hostileGuest('blk-faults'), image, String(COUNT)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<NodeJS.Signals | number | null>((resolve) => child.on('exit', (code, signal) => resolve(signal ?? code)));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no FLUSHED line after 20 s; stdout ${out}; stderr ${err}`)), 20_000);
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString('latin1');
        if (out.includes('FLUSHED')) {
          child.kill('SIGKILL'); // while the guest goes on writing sectors after the flush
          clearTimeout(timer);
          resolve();
        }
      });
      void exited.then((how) => reject(new Error(`the VMM exited (${how}) before FLUSHED; stderr ${err}`)));
    });
    expect(await exited).toBe('SIGKILL');
    expect(out).toContain(`FLUSHED n=${COUNT} writes=0 status=0`);
    const data = fs.readFileSync(image);
    for (let n = 0; n < COUNT; n++) {
      const sector = data.subarray(n * SECTOR, (n + 1) * SECTOR);
      expect(sector.toString('latin1', 0, 8)).toBe(`dura${String(n).padStart(4, '0')}`);
      expect(sector.subarray(8).every((b) => b === (n & 0xff))).toBe(true);
    }
  });
});
