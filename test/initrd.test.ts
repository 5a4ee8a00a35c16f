// Host-side gunzip of the initramfs (src/arch/x86/initrd.ts).
import * as zlib from 'zlib';
import { unpackInitrdOnHost } from '../src/arch/x86/initrd';
import { CpioWriter } from '../src/initramfs/cpio';

function cpio(): Buffer {
  const w = new CpioWriter();
  w.add({ type: 'file', path: 'init', data: Buffer.from('#!/bin/sh\n'), mode: 0o755 });
  return w.finish();
}

test('a gzip newc archive comes back as the plain archive', () => {
  const plain = cpio();
  const r = unpackInitrdOnHost(zlib.gzipSync(plain));
  expect(r.unpacked).toBe(true);
  expect(Buffer.from(r.data).equals(plain)).toBe(true);
});

test('anything else passes through unchanged, with a reason', () => {
  const plain = cpio();
  expect(unpackInitrdOnHost(plain)).toMatchObject({ unpacked: false, reason: 'not gzip' });
  expect(unpackInitrdOnHost(zlib.gzipSync(Buffer.from('not a cpio archive')))).toMatchObject({ unpacked: false });
  const truncated = zlib.gzipSync(plain).subarray(0, 20);
  const r = unpackInitrdOnHost(truncated);
  expect(r.unpacked).toBe(false);
  expect(r.data).toBe(truncated);
  expect(unpackInitrdOnHost(new Uint8Array(0)).unpacked).toBe(false);
});

test('a gzip bomb stops at the output limit instead of filling host memory', () => {
  const bomb = zlib.gzipSync(Buffer.concat([Buffer.from('070701'), Buffer.alloc(8 * 1024 * 1024)]));
  const r = unpackInitrdOnHost(bomb, 1024 * 1024);
  expect(r.unpacked).toBe(false);
});
