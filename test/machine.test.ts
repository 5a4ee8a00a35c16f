// The async Machine: the VM runs on a vCPU worker while this thread's event
// loop keeps going (DESIGN.md: threading). Real guests on /dev/kvm.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Machine } from '../src';

// as(1), 16-bit: 1: mov $0x3fd,%dx; 2: in (%dx),%al; test $1,%al; jz 2b; mov $0x3f8,%dx;
// in (%dx),%al; cmp $'q',%al; je 3f; out %al,(%dx); jmp 1b; 3: hlt
// Echoes COM1 input to COM1 output until it reads 'q'.
const ECHO = Uint8Array.of(0xba, 0xfd, 0x03, 0xec, 0xa8, 0x01, 0x74, 0xfb, 0xba, 0xf8, 0x03, 0xec, 0x3c, 0x71, 0x74, 0x03, 0xee, 0xeb, 0xed, 0xf4);
// 64-bit: 1: jmp 1b
const SPIN = Uint8Array.of(0xeb, 0xfe);

function collect(machine: Machine): { text: () => string; waitFor: (s: string) => Promise<void> } {
  let text = '';
  const waiters: { s: string; resolve: () => void }[] = [];
  machine.on('output', (d) => {
    text += d.toString('latin1');
    for (const w of waiters.filter((w) => text.includes(w.s))) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve();
    }
  });
  return { text: () => text, waitFor: (s) => (text.includes(s) ? Promise.resolve() : new Promise((resolve) => waiters.push({ s, resolve }))) };
}

test('console input reaches the guest UART and its echo comes back; the main thread keeps running', async () => {
  const machine = new Machine({ memory: '1M', boot: { kind: 'binary', file: ECHO, mode: 'real' } });
  const out = collect(machine);
  let ticks = 0;
  const timer = setInterval(() => ticks++, 5);
  try {
    await machine.start();
    expect(machine.state).toBe('running');
    await machine.sendInput('hello from the host\n');
    await out.waitFor('hello from the host\n');
    // More than the UART FIFO holds (16 bytes): the rest waits in the ring until the guest reads.
    const long = 'x'.repeat(5000) + '\n';
    await machine.sendInput(long);
    await out.waitFor(long);
    await machine.sendInput('q');
    const stop = await machine.wait();
    expect(stop.kind).toBe('halt');
    expect(machine.state).toBe('stopped');
    expect(ticks).toBeGreaterThan(0);
    expect(machine.statistics?.devices.serial8250).toBeGreaterThan(5000);
  } finally {
    clearInterval(timer);
    await machine.stop();
  }
});

test('input sent in several pieces in the same tick all reaches the guest (a websocket delivering many keystrokes from one read)', async () => {
  const machine = new Machine({ memory: '1M', boot: { kind: 'binary', file: ECHO, mode: 'real' } });
  const out = collect(machine);
  try {
    await machine.start();
    // Each piece fits the ring at once, so each pump finishes synchronously:
    // the later pieces must not be left behind in the queue.
    const pieces = [...'hello from a browser\n'];
    await Promise.all(pieces.map((key) => machine.sendInput(key)));
    await out.waitFor('hello from a browser\n');
    void machine.sendInput('q');
    expect((await machine.wait()).kind).toBe('halt');
  } finally {
    await machine.stop();
  }
});

test('pause, resume and stop a spinning guest from a script whose timers keep firing', async () => {
  const machine = new Machine({ memory: '1M', boot: { kind: 'binary', file: SPIN, mode: 'long' } });
  const states: string[] = [];
  machine.on('state', (s) => states.push(s));
  let ticks = 0;
  const timer = setInterval(() => ticks++, 2);
  try {
    await machine.start();
    await new Promise((r) => setTimeout(r, 50));
    await machine.pause();
    expect(machine.state).toBe('paused');
    const paused = await machine.readStatistics();
    expect(paused?.vcpu?.rip).toBe('0x8000');
    const ticksWhilePaused = ticks;
    await new Promise((r) => setTimeout(r, 30));
    expect(ticks).toBeGreaterThan(ticksWhilePaused);
    await machine.resume();
    expect(machine.state).toBe('running');
    const stop = await machine.stop();
    expect(stop.kind).toBe('stopped');
    expect(states).toEqual(['starting', 'running', 'paused', 'running', 'stopped']);
  } finally {
    clearInterval(timer);
  }
});

test('start() fails with one sentence for a missing file or KVM device', async () => {
  const missing = new Machine({ memory: '1M', boot: { kind: 'binary', file: '/nonexistent/guest.bin', mode: 'real' } });
  await expect(missing.start()).rejects.toMatchObject({ code: 'ENOENT', message: 'binary /nonexistent/guest.bin does not exist' });
  const noKvm = new Machine({ memory: '1M', kvmPath: '/dev/no-such-kvm', boot: { kind: 'binary', file: SPIN, mode: 'long' } });
  await expect(noKvm.start()).rejects.toMatchObject({ message: expect.stringContaining('/dev/no-such-kvm does not exist') });
  expect(noKvm.state).toBe('stopped');
});

test('a machine described in JSON resolves its paths relative to the file', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tskvm-json-'));
  try {
    fs.writeFileSync(path.join(dir, 'echo.bin'), ECHO);
    fs.writeFileSync(path.join(dir, 'vm.json'), JSON.stringify({ memory: '1M', boot: { kind: 'binary', file: 'echo.bin', mode: 'real' } }));
    const machine = Machine.fromJsonFile(path.join(dir, 'vm.json'));
    const out = collect(machine);
    await machine.start();
    await machine.sendInput('json\nq');
    await out.waitFor('json\n');
    expect((await machine.wait()).kind).toBe('halt');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('creating and destroying VMs leaves no file descriptors behind', async () => {
  const fds = () => fs.readdirSync('/proc/self/fd').length;
  const cycle = async () => {
    const m = new Machine({ memory: '1M', boot: { kind: 'binary', file: Uint8Array.of(0xf4), mode: 'real' } });
    await m.start();
    expect((await m.wait()).kind).toBe('halt');
  };
  const settle = () => new Promise((r) => setTimeout(r, 200)); // worker threads finish exiting
  await cycle(); // warm-up: worker thread machinery
  await settle();
  const before = fds();
  for (let i = 0; i < 30; i++) await cycle();
  await settle();
  expect(fds()).toBeLessThanOrEqual(before);
});

test('reset() reboots the guest from its config: fresh RAM and statistics, same console and listeners', async () => {
  // The guest writes a counter byte in RAM at 0x7000 and the digit on the console.
  // 16-bit: mov $0x700,%ax; mov %ax,%ds; incb (0); mov (0),%al; add $'0',%al; mov $0x3f8,%dx; out %al,(%dx); 1: jmp 1b
  const COUNT = Uint8Array.of(0xb8, 0x00, 0x07, 0x8e, 0xd8, 0xfe, 0x06, 0x00, 0x00, 0xa0, 0x00, 0x00, 0x04, 0x30, 0xba, 0xf8, 0x03, 0xee, 0xeb, 0xfe);
  const machine = new Machine({ memory: '1M', boot: { kind: 'binary', file: COUNT, mode: 'real' } });
  const out = collect(machine);
  let resets = 0;
  machine.on('reset', () => resets++);
  try {
    await machine.start();
    await out.waitFor('1');
    const before = await machine.readStatistics();
    await machine.reset();
    // RAM starts from zero again: the counter prints 1 again, not 2.
    await new Promise<void>((resolve) => {
      const poll = setInterval(() => {
        if (out.text() === '11') {
          clearInterval(poll);
          resolve();
        }
      }, 5);
    });
    expect(out.text()).toBe('11');
    expect(resets).toBe(1);
    expect(machine.state).toBe('running');
    const after = await machine.readStatistics();
    expect(after!.devices.serial8250).toBe(1);
    expect(before!.devices.serial8250).toBe(1);
    // Paused machines reset too (resumed first); a stopped one cannot.
    await machine.pause();
    await machine.reset();
    await out.waitFor('111');
    expect((await machine.stop()).kind).toBe('stopped');
    await expect(machine.reset()).rejects.toThrow(/stopped/);
  } finally {
    await machine.stop();
  }
});
