// Tap: the host end of virtio-net, on a real TAP interface (needs root, as
// the CI machine runs; the Linux suite uses one too).
import { execFileSync } from 'child_process';
import * as dgram from 'dgram';
import { Tap, TapError, TAP_MAX_FRAME } from '../src/net/tap';
import { native } from '../src/native';

const name = `tskvmu${process.pid % 100000}`;
const subnet = `10.${200 + (process.pid % 50)}.${(process.pid >> 8) % 250}`;
const ip = (...args: string[]): string => execFileSync('ip', args, { encoding: 'utf8' });

beforeAll(() => {
  ip('tuntap', 'add', 'dev', name, 'mode', 'tap');
  ip('addr', 'add', `${subnet}.1/24`, 'dev', name);
});
afterAll(() => {
  try {
    ip('tuntap', 'del', 'dev', name, 'mode', 'tap');
  } catch {
    // gone
  }
});

test('frames the host sends to the tap are read one per read; waitReadable wakes for them', async () => {
  const tap = Tap.open(name);
  try {
    ip('link', 'set', name, 'up');
    const buffer = new Uint8Array(TAP_MAX_FRAME);
    while (tap.read(buffer)); // whatever the host sent when the link came up (IPv6 router solicitations...)
    // Talking to a neighbour on the tap's subnet makes the host send an ARP request through it.
    const socket = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => socket.send('hello', 9, `${subnet}.2`, () => resolve()));
    socket.close();
    expect(await native.waitReadable(tap.fd, 5000)).toBe(true);
    let arp: Uint8Array | undefined;
    for (let frame = tap.read(buffer); frame; frame = tap.read(buffer)) {
      if (frame[12] === 0x08 && frame[13] === 0x06) arp = Uint8Array.from(frame);
    }
    expect(arp).toBeDefined();
    expect(Array.from(arp!.subarray(0, 6))).toEqual([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]); // broadcast
    expect(arp!.length).toBeGreaterThanOrEqual(42); // Ethernet header + ARP for IPv4
    // A frame from the "guest": a gratuitous ARP reply; the host takes it without error.
    const frame = new Uint8Array(42);
    frame.set([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0, 0x12, 0x34, 0x56, 0x08, 0x06]);
    expect(tap.write(frame)).toBe(true);
    expect(tap.stats.txFrames).toBe(1);
  } finally {
    tap.close();
  }
  // Nothing is readable on a timeout with no traffic: waitReadable resolves false.
  const idle = Tap.open(name);
  try {
    ip('link', 'set', name, 'down');
    while (idle.read(new Uint8Array(TAP_MAX_FRAME)));
    expect(await native.waitReadable(idle.fd, 50)).toBe(false);
  } finally {
    idle.close();
  }
});

test('bad names and a busy tap are one clear sentence', () => {
  expect(() => Tap.open('no spaces allowed')).toThrow(TapError);
  expect(() => Tap.open('x'.repeat(16))).toThrow(/1 to 15/);
  const first = Tap.open(name);
  try {
    expect(() => Tap.open(name)).toThrow(/tap tskvmu\d+ is in use by another program\./);
  } finally {
    first.close();
  }
});
