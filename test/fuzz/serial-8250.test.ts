// Fuzz target: the 8250/16550A register file (src/devices/serial-8250.ts)
// under random guest register sequences (DLAB on and off, divisor 0, FIFO
// toggles, loopback, accesses of 1/2/4 bytes at any offset) interleaved with
// host input. Checked against a small reference of the register file from the
// 16550A datasheet: what reads back, the FIFO bound, LSR and IIR encodings, the
// interrupt line (level = an enabled interrupt pending AND MCR OUT2).
import * as fc from 'fast-check';
import { Serial8250 } from '../../src/devices/serial-8250';
import { FUZZ_TIMEOUT_MS, checkProperty } from './fuzz-support';

const TARGET = 'serial-8250';

type Op =
  | { kind: 'write'; offset: number; size: 1 | 2 | 4; value: number }
  | { kind: 'read'; offset: number; size: 1 | 2 | 4 }
  | { kind: 'receive'; bytes: number[]; overrun: boolean }
  | { kind: 'break' }
  | { kind: 'modem'; cts: boolean; dsr: boolean; ri: boolean; dcd: boolean };

const arbOffset = fc.oneof({ weight: 8, arbitrary: fc.integer({ min: 0, max: 7 }) }, { weight: 1, arbitrary: fc.constantFrom(-1, 8, 9, 100, 0.5) });
const arbSize = fc.constantFrom(1 as const, 2 as const, 4 as const);
const arbValue = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 0, max: 0xff }) },
  { weight: 2, arbitrary: fc.constantFrom(0x80, 0x00, 0x03, 0x83, 0x0f, 0x1f, 0x10, 0x08, 0xc7, 0x01, 0x06) }, // DLAB, 8N1, loop, OUT2, FCR
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffffffff }) },
  { weight: 1, arbitrary: fc.constantFrom(-1, NaN, 2 ** 40, 1.5) },
);
const arbOp: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('write' as const), offset: arbOffset, size: arbSize, value: arbValue }) },
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('read' as const), offset: arbOffset, size: arbSize }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('receive' as const), bytes: fc.array(fc.nat(255), { maxLength: 40 }), overrun: fc.boolean() }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'break' as const }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('modem' as const), cts: fc.boolean(), dsr: fc.boolean(), ri: fc.boolean(), dcd: fc.boolean() }) },
);

describe('8250 UART under random register sequences', () => {
  it(
    'never throws; registers, FIFO bound, LSR/IIR encodings and the IRQ line stay consistent',
    () => {
      checkProperty(
        TARGET,
        'register sequences',
        fc.property(fc.array(arbOp, { maxLength: 120 }), (ops) => {
          const transmitted: number[] = [];
          const levels: boolean[] = [];
          const uart = new Serial8250({ irq: (l) => levels.push(l), onTransmit: (b) => transmitted.push(b) });
          // Reference registers, byte by byte (accesses wider than a byte are byte accesses, low first).
          let lcr = 0;
          let mcr = 0;
          let scr = 0;
          let ier = 0;
          let dll = 0x0c;
          let dlm = 0;
          let fifo = false;
          let sentByGuest = 0;
          let loopSent = 0;
          for (const op of ops) {
            switch (op.kind) {
              case 'write': {
                uart.write(op.offset, op.size, op.value);
                const v = typeof op.value === 'number' && Number.isFinite(op.value) ? op.value >>> 0 : 0;
                for (let i = 0; i < op.size; i++) {
                  const o = op.offset + i;
                  const b = (v >>> (8 * i)) & 0xff;
                  if (!Number.isInteger(o) || o < 0 || o > 7) continue;
                  const dlab = (lcr & 0x80) !== 0;
                  if (o === 0) {
                    if (dlab) dll = b;
                    else if (mcr & 0x10) loopSent++;
                    else sentByGuest++;
                  } else if (o === 1) {
                    if (dlab) dlm = b;
                    else ier = b & 0x0f;
                  } else if (o === 2) fifo = (b & 1) !== 0;
                  else if (o === 3) lcr = b;
                  else if (o === 4) mcr = b & 0x1f;
                  else if (o === 7) scr = b;
                }
                break;
              }
              case 'read': {
                const v = uart.read(op.offset, op.size);
                expect(Number.isInteger(v) && v >= 0 && v <= (op.size === 4 ? 0xffffffff : 2 ** (8 * op.size) - 1)).toBe(true);
                break;
              }
              case 'receive': {
                const space = uart.rxSpace;
                const taken = uart.receive(Uint8Array.from(op.bytes), { overrun: op.overrun });
                expect(taken).toBeGreaterThanOrEqual(0);
                expect(taken).toBeLessThanOrEqual(op.bytes.length);
                if (!op.overrun) expect(taken).toBe(Math.min(space, op.bytes.length));
                break;
              }
              case 'break':
                uart.receiveBreak();
                break;
              case 'modem':
                uart.setModemInputs(op);
                break;
            }
            // Invariants after every step.
            const capacity = fifo ? 16 : 1;
            expect(uart.rxPending).toBeGreaterThanOrEqual(0);
            expect(uart.rxPending).toBeLessThanOrEqual(capacity);
            expect(uart.fifoEnabledState).toBe(fifo);
            expect(uart.divisor).toBe((dlm << 8) | dll);
            // Divisor 0 is 65536 on real parts: the baud rate stays finite and positive.
            expect(Number.isFinite(uart.baudRate) && uart.baudRate > 0).toBe(true);
            // The line is driven only on changes, and mirrors irqLevel.
            expect(levels.length === 0 ? false : levels[levels.length - 1]).toBe(uart.irqLevel);
            if (!(mcr & 0x08)) expect(uart.irqLevel).toBe(false); // OUT2 gates the PC's IRQ
          }
          for (let i = 1; i < levels.length; i++) expect(levels[i]).not.toBe(levels[i - 1]);
          expect(transmitted.length).toBe(sentByGuest);
          expect(uart.txBytes).toBe(sentByGuest + loopSent);
          expect(transmitted.every((b) => Number.isInteger(b) && b >= 0 && b <= 0xff)).toBe(true);
          // Read back the plain registers (with DLAB set, then clear, as a driver does).
          uart.write(3, 1, lcr | 0x80);
          expect(uart.read(0, 1)).toBe(dll);
          expect(uart.read(1, 1)).toBe(dlm);
          uart.write(3, 1, lcr & 0x7f);
          expect(uart.read(1, 1)).toBe(ier);
          expect(uart.read(3, 1)).toBe(lcr & 0x7f);
          expect(uart.read(4, 1)).toBe(mcr);
          expect(uart.read(7, 1)).toBe(scr);
          // LSR: THRE and TEMT always (instant transmitter); DR iff data waits.
          const pending = uart.rxPending;
          const lsr = uart.read(5, 1);
          expect(lsr & 0x60).toBe(0x60);
          expect((lsr & 1) === 1).toBe(pending > 0);
          // IIR: bits 5:4 zero, 7:6 report the FIFO, the id is one of the defined codes.
          const iir = uart.read(2, 1);
          expect(iir & 0x30).toBe(0);
          expect(iir & 0xc0).toBe(fifo ? 0xc0 : 0);
          expect([0x01, 0x00, 0x02, 0x04, 0x06, 0x0c]).toContain(iir & 0x0f);
        }),
        150,
      );
    },
    FUZZ_TIMEOUT_MS,
  );
});
