import type { AccessSize } from '../src/bus/bus';
import { PioBus } from '../src/bus/bus';
import {
  FCR_CLEAR_RCVR,
  FCR_ENABLE_FIFO,
  IER_MSI,
  IER_RDI,
  IER_RLSI,
  IER_THRI,
  IIR_MSI,
  IIR_NO_INT,
  IIR_RDI,
  IIR_RLSI,
  IIR_RX_TIMEOUT,
  IIR_THRI,
  LSR_DR,
  LSR_OE,
  LSR_TEMT,
  LSR_THRE,
  MCR_DTR,
  MCR_LOOP,
  MCR_OUT1,
  MCR_OUT2,
  MCR_RTS,
  MSR_CTS,
  MSR_DCD,
  MSR_DCTS,
  MSR_DDCD,
  MSR_DDSR,
  MSR_DSR,
  MSR_RI,
  MSR_TERI,
  Serial8250,
  UART_FCR,
  UART_IER,
  UART_IIR,
  UART_LCR,
  UART_LSR,
  UART_MCR,
  UART_MSR,
  UART_RBR,
  UART_SCR,
  UART_THR,
} from '../src/devices/serial-8250';

function setup(extra: { onRxSpace?: () => void } = {}) {
  const tx: number[] = [];
  const irq: boolean[] = [];
  const uart = new Serial8250({ onTransmit: (b) => tx.push(b), irq: (l) => irq.push(l), ...extra });
  const r = (off: number): number => uart.read(off, 1);
  const w = (off: number, v: number): void => uart.write(off, 1, v);
  return { uart, tx, irq, r, w };
}

const bytes = (...b: number[]): Uint8Array => Uint8Array.from(b);

describe('Serial8250 registers', () => {
  it('has the power-on state of a 16550A', () => {
    const { r, irq } = setup();
    expect(r(UART_IER)).toBe(0);
    expect(r(UART_IIR)).toBe(IIR_NO_INT);
    expect(r(UART_LCR)).toBe(0);
    expect(r(UART_MCR)).toBe(0);
    expect(r(UART_LSR)).toBe(LSR_THRE | LSR_TEMT);
    expect(r(UART_MSR) & 0xf0).toBe(MSR_CTS | MSR_DSR | MSR_DCD);
    expect(irq).toEqual([]);
  });

  it('keeps the scratch register and masks IER/MCR to their implemented bits', () => {
    const { r, w } = setup();
    w(UART_SCR, 0xa5);
    expect(r(UART_SCR)).toBe(0xa5);
    w(UART_IER, 0xff);
    expect(r(UART_IER)).toBe(0x0f);
    w(UART_MCR, 0xff);
    expect(r(UART_MCR)).toBe(0x1f);
    w(UART_LCR, 0x5b);
    expect(r(UART_LCR)).toBe(0x5b);
  });

  it('switches offsets 0 and 1 to the divisor latch with DLAB', () => {
    const { uart, r, w, tx } = setup();
    w(UART_IER, 0x05);
    w(UART_LCR, 0x83);
    w(0, 0x01);
    w(1, 0x00);
    expect(r(0)).toBe(0x01);
    expect(r(1)).toBe(0x00);
    expect(uart.divisor).toBe(1);
    expect(uart.baudRate).toBe(115200);
    expect(tx).toEqual([]); // a DLL write is not a transmit
    w(UART_LCR, 0x03);
    expect(r(UART_IER)).toBe(0x05);
    w(UART_LCR, 0x80);
    w(0, 0x0c);
    w(UART_LCR, 0x03);
    expect(uart.baudRate).toBe(9600);
  });

  it('transmits THR writes immediately with THRE/TEMT staying set', () => {
    const { uart, r, w, tx } = setup();
    for (const c of 'hi\n') w(UART_THR, c.charCodeAt(0));
    expect(String.fromCharCode(...tx)).toBe('hi\n');
    expect(r(UART_LSR) & (LSR_THRE | LSR_TEMT)).toBe(LSR_THRE | LSR_TEMT);
    expect(uart.txBytes).toBe(3);
  });

  it('splits wide accesses into byte accesses', () => {
    const { uart, w } = setup();
    w(UART_SCR, 0x77);
    w(UART_LCR, 0x03);
    // offsets 4..7: MCR, LSR, MSR, SCR
    const v = uart.read(4, 4);
    expect(v & 0xff).toBe(0);
    expect((v >>> 8) & 0xff).toBe(LSR_THRE | LSR_TEMT);
    expect(v >>> 24).toBe(0x77);
    uart.write(6, 2, 0x5500); // MSR (ignored), SCR
    expect(uart.read(7, 1)).toBe(0x55);
    expect(uart.read(7, 2)).toBe(0xff55); // offset 8 is not ours
  });
});

describe('Serial8250 receiver', () => {
  it('holds one byte without FIFO and flags an overrun from the line', () => {
    const { uart, r } = setup();
    expect(uart.rxSpace).toBe(1);
    expect(uart.receive(bytes(1, 2, 3))).toBe(1);
    expect(uart.rxSpace).toBe(0);
    expect(r(UART_LSR) & (LSR_DR | LSR_OE)).toBe(LSR_DR);
    expect(uart.receive(bytes(9), { overrun: true })).toBe(0);
    expect(uart.droppedBytes).toBe(1);
    expect(r(UART_LSR) & (LSR_DR | LSR_OE)).toBe(LSR_DR | LSR_OE);
    expect(r(UART_LSR) & LSR_OE).toBe(0); // reading LSR clears OE
    expect(r(UART_RBR)).toBe(9); // 16450 mode: the new byte overwrote the holding register
    expect(r(UART_LSR) & LSR_DR).toBe(0);
    expect(r(UART_RBR)).toBe(9); // empty RBR reads its stale value
  });

  it('fills a 16-byte FIFO, refuses the rest and reports overruns', () => {
    const { uart, r, w } = setup();
    w(UART_FCR, FCR_ENABLE_FIFO);
    expect(uart.rxSpace).toBe(16);
    const data = Uint8Array.from({ length: 20 }, (_, i) => 0x41 + i);
    expect(uart.receive(data)).toBe(16);
    expect(uart.rxSpace).toBe(0);
    expect(r(UART_LSR) & LSR_OE).toBe(0); // refused bytes are not lost
    expect(uart.receive(bytes(0x7a, 0x7b), { overrun: true })).toBe(0);
    expect(uart.droppedBytes).toBe(2);
    expect(r(UART_LSR) & (LSR_OE | LSR_DR)).toBe(LSR_OE | LSR_DR);
    const got: number[] = [];
    while (r(UART_LSR) & LSR_DR) got.push(r(UART_RBR));
    expect(got).toEqual(Array.from(data.subarray(0, 16))); // FIFO kept its bytes in order
    expect(uart.rxBytes).toBe(16);
  });

  it('clears the receive FIFO on FCR reset and on toggling FIFO enable', () => {
    const { uart, r, w } = setup();
    w(UART_FCR, FCR_ENABLE_FIFO);
    uart.receive(bytes(1, 2, 3));
    w(UART_FCR, FCR_ENABLE_FIFO | FCR_CLEAR_RCVR);
    expect(r(UART_LSR) & LSR_DR).toBe(0);
    expect(uart.rxSpace).toBe(16);
    uart.receive(bytes(1, 2, 3));
    w(UART_FCR, 0);
    expect(r(UART_LSR) & LSR_DR).toBe(0);
    expect(uart.rxSpace).toBe(1);
    // FCR bits other than bit 0 are not programmed while bit 0 is clear.
    w(UART_FCR, FCR_CLEAR_RCVR | 0xc0);
    expect(r(UART_IIR) & 0xc0).toBe(0);
  });

  it('calls onRxSpace once the guest drains what was refused', () => {
    let calls = 0;
    const { uart, r, w } = setup({ onRxSpace: () => calls++ });
    w(UART_FCR, FCR_ENABLE_FIFO);
    expect(uart.receive(new Uint8Array(16))).toBe(16);
    r(UART_RBR);
    expect(calls).toBe(0); // nothing was refused yet
    uart.receive(new Uint8Array(3)); // one byte fits, two refused
    expect(uart.rxSpace).toBe(0);
    r(UART_RBR);
    expect(calls).toBe(1);
    r(UART_RBR);
    expect(calls).toBe(1);
  });

  it('lets the host refill from inside onRxSpace', () => {
    const pending = Array.from({ length: 100 }, (_, i) => i);
    let uart!: Serial8250;
    const push = (): void => {
      const n = uart.receive(Uint8Array.from(pending.slice(0, 64)));
      pending.splice(0, n);
    };
    uart = new Serial8250({ onRxSpace: push });
    uart.write(UART_FCR, 1, FCR_ENABLE_FIFO);
    push();
    const got: number[] = [];
    for (let i = 0; i < 1000 && uart.read(UART_LSR, 1) & LSR_DR; i++) got.push(uart.read(UART_RBR, 1));
    expect(got).toEqual(Array.from({ length: 100 }, (_, i) => i));
  });
});

describe('Serial8250 interrupts', () => {
  it('gates the IRQ line with MCR OUT2 and drives it only on changes', () => {
    const { uart, irq, r, w } = setup();
    w(UART_IER, IER_RDI);
    uart.receive(bytes(0x31));
    expect(r(UART_IIR) & 0x0f).toBe(IIR_RDI);
    expect(irq).toEqual([]); // OUT2 clear: line held low
    w(UART_MCR, MCR_OUT2 | MCR_DTR | MCR_RTS);
    expect(irq).toEqual([true]);
    expect(uart.irqLevel).toBe(true);
    w(UART_MCR, MCR_OUT2 | MCR_DTR); // no level change
    expect(irq).toEqual([true]);
    r(UART_RBR);
    expect(irq).toEqual([true, false]);
    uart.receive(bytes(0x32));
    expect(irq).toEqual([true, false, true]);
    w(UART_MCR, 0);
    expect(irq).toEqual([true, false, true, false]);
  });

  it('raises THRE when enabled, clears it on IIR read, re-arms on THR write', () => {
    const { irq, r, w } = setup();
    w(UART_MCR, MCR_OUT2);
    w(UART_IER, IER_THRI);
    expect(irq).toEqual([true]);
    expect(r(UART_IIR)).toBe(IIR_THRI);
    expect(irq).toEqual([true, false]);
    expect(r(UART_IIR)).toBe(IIR_NO_INT);
    w(UART_THR, 0x41);
    expect(irq).toEqual([true, false, true]);
    w(UART_THR, 0x42); // still pending: no extra edge
    expect(irq).toEqual([true, false, true]);
    w(UART_IER, 0);
    expect(irq).toEqual([true, false, true, false]);
    w(UART_IER, IER_THRI); // re-enabling with THR empty raises it again
    expect(r(UART_IIR)).toBe(IIR_THRI);
  });

  it('passes the Linux THRE/TXEN startup tests (no UART_BUG_THRE/TXEN)', () => {
    const { r, w } = setup();
    w(UART_IER, IER_THRI);
    const iir1 = r(UART_IIR);
    w(UART_IER, 0);
    w(UART_IER, IER_THRI);
    const iir = r(UART_IIR);
    w(UART_IER, 0);
    expect(iir1 & IIR_NO_INT).toBe(0);
    expect(iir & IIR_NO_INT).toBe(0);
    w(UART_IER, IER_THRI);
    const lsr = r(UART_LSR);
    const iir2 = r(UART_IIR);
    w(UART_IER, 0);
    expect(lsr & LSR_TEMT && iir2 & IIR_NO_INT).toBeFalsy();
  });

  it('orders line status > data > THRE > modem status', () => {
    const { uart, r, w } = setup();
    w(UART_IER, IER_RDI | IER_THRI | IER_RLSI | IER_MSI);
    uart.setModemInputs({ cts: false }); // a modem status change
    uart.receive(bytes(1));
    uart.receive(bytes(2), { overrun: true }); // overrun (no FIFO)
    expect(r(UART_IIR)).toBe(IIR_RLSI);
    r(UART_LSR);
    expect(r(UART_IIR)).toBe(IIR_RDI);
    r(UART_RBR);
    expect(r(UART_IIR)).toBe(IIR_THRI); // this read clears THRE
    expect(r(UART_IIR)).toBe(IIR_MSI);
    expect(r(UART_MSR) & MSR_DCTS).toBe(MSR_DCTS);
    expect(r(UART_IIR)).toBe(IIR_NO_INT);
  });

  it('uses trigger levels and the character timeout with FIFOs', () => {
    const { uart, r, w } = setup();
    w(UART_FCR, FCR_ENABLE_FIFO | 0x80); // trigger at 8
    w(UART_IER, IER_RDI);
    uart.receive(bytes(1, 2, 3));
    expect(r(UART_IIR)).toBe(0xc0 | IIR_RX_TIMEOUT);
    uart.receive(new Uint8Array(5));
    expect(r(UART_IIR)).toBe(0xc0 | IIR_RDI);
    r(UART_RBR);
    expect(r(UART_IIR)).toBe(0xc0 | IIR_RX_TIMEOUT);
  });

  it('re-evaluates the line when IER changes', () => {
    const { uart, irq, w } = setup();
    w(UART_MCR, MCR_OUT2);
    uart.receive(bytes(7));
    expect(irq).toEqual([]);
    w(UART_IER, IER_RDI);
    expect(irq).toEqual([true]);
    w(UART_IER, 0);
    expect(irq).toEqual([true, false]);
  });
});

describe('Serial8250 loopback', () => {
  it('routes TX to RX and modem outputs to modem status', () => {
    const { uart, tx, r, w } = setup();
    w(UART_MCR, MCR_LOOP);
    r(UART_MSR); // clear the deltas of entering loopback
    w(UART_THR, 0x5a);
    expect(tx).toEqual([]);
    expect(r(UART_LSR) & LSR_DR).toBe(LSR_DR);
    expect(r(UART_RBR)).toBe(0x5a);
    w(UART_MCR, MCR_LOOP | MCR_RTS);
    expect(r(UART_MSR)).toBe(MSR_CTS | MSR_DCTS);
    w(UART_MCR, MCR_LOOP | MCR_DTR | MCR_OUT1 | MCR_OUT2);
    expect(r(UART_MSR)).toBe(MSR_DSR | MSR_RI | MSR_DCD | MSR_DCTS | MSR_DDSR | MSR_DDCD);
    w(UART_MCR, MCR_LOOP | MCR_DTR | MCR_OUT2); // RI trailing edge
    expect(r(UART_MSR) & MSR_TERI).toBe(MSR_TERI);
    // Host input waits while looping, then is invited back.
    expect(uart.rxSpace).toBe(0);
  });

  it('refuses host input in loopback and asks for it again afterwards', () => {
    let calls = 0;
    const { uart, w } = setup({ onRxSpace: () => calls++ });
    w(UART_MCR, MCR_LOOP);
    expect(uart.receive(bytes(1))).toBe(0);
    w(UART_MCR, 0);
    expect(calls).toBe(1);
    expect(uart.receive(bytes(1))).toBe(1);
  });

  it('overruns when looping more than the FIFO holds', () => {
    const { uart, r, w } = setup();
    w(UART_FCR, FCR_ENABLE_FIFO);
    w(UART_MCR, MCR_LOOP);
    for (let i = 0; i < 20; i++) w(UART_THR, i);
    expect(uart.droppedBytes).toBe(4);
    expect(r(UART_LSR) & LSR_OE).toBe(LSR_OE);
  });
});

describe('Serial8250 Linux probe', () => {
  it('is identified as a 16550A by the 8250 driver autoconfig sequence', () => {
    const bus = new PioBus();
    const uart = new Serial8250();
    bus.register(0x3f8, 8, uart);
    const inb = (off: number): number => bus.read(0x3f8 + off, 1);
    const outb = (off: number, v: number): void => bus.write(0x3f8 + off, 1, v);

    // Scratch test through IER.
    const saveIer = inb(UART_IER);
    outb(UART_IER, 0);
    const scratch2 = inb(UART_IER) & 0x0f;
    outb(UART_IER, 0x0f);
    const scratch3 = inb(UART_IER) & 0x0f;
    outb(UART_IER, saveIer);
    expect(scratch2).toBe(0);
    expect(scratch3).toBe(0x0f);

    // Loopback test: LOOP | OUT2 | RTS must show DCD | CTS.
    const saveMcr = inb(UART_MCR);
    outb(UART_MCR, MCR_LOOP | 0x0a);
    const status1 = inb(UART_MSR) & 0xf0;
    outb(UART_MCR, saveMcr);
    expect(status1).toBe(0x90);

    // FIFO check: EFR write under LCR=0xBF, then enable FIFOs and look at IIR[7:6].
    outb(UART_LCR, 0xbf);
    outb(2, 0); // EFR on an enhanced part; FCR here
    outb(UART_LCR, 0);
    outb(UART_FCR, FCR_ENABLE_FIFO);
    expect(inb(UART_IIR) >> 6).toBe(3);

    // autoconfig_16550a: no EFR under LCR=0x80 or 0xBF (reads must not be 0).
    outb(UART_LCR, 0x80);
    expect(inb(2)).not.toBe(0);
    outb(UART_LCR, 0xbf);
    expect(inb(2)).not.toBe(0);

    // Not a National Semiconductor SuperIO (bank 2 EXCR1 does not follow MCR LOOP).
    outb(UART_LCR, 0);
    const s1 = inb(UART_MCR);
    outb(UART_LCR, 0xe0);
    let s2 = inb(2);
    let isNs = false;
    if (!((s2 ^ s1) & MCR_LOOP)) {
      outb(UART_LCR, 0);
      outb(UART_MCR, s1 ^ MCR_LOOP);
      outb(UART_LCR, 0xe0);
      s2 = inb(2);
      outb(UART_LCR, 0);
      outb(UART_MCR, s1);
      isNs = ((s2 ^ s1) & MCR_LOOP) !== 0;
    }
    expect(isNs).toBe(false);

    // Not a 16750 (no 64-byte FIFO bit in IIR).
    outb(UART_LCR, 0);
    outb(UART_FCR, FCR_ENABLE_FIFO | 0x20);
    const f1 = inb(UART_IIR) >> 5;
    outb(UART_FCR, FCR_ENABLE_FIFO);
    outb(UART_LCR, 0x80);
    outb(UART_FCR, FCR_ENABLE_FIFO | 0x20);
    const f2 = inb(UART_IIR) >> 5;
    outb(UART_FCR, FCR_ENABLE_FIFO);
    outb(UART_LCR, 0);
    expect(f1 === 6 && f2 === 7).toBe(false);

    // Not an XScale (IER UUE bit 6 does not stick).
    const ier = inb(UART_IER);
    outb(UART_IER, ier | 0x40);
    expect(inb(UART_IER) & 0x40).toBe(0);
    outb(UART_IER, ier);

    // LSR is never 0xff after clearing the FIFOs (the startup sanity check).
    outb(UART_FCR, FCR_ENABLE_FIFO | FCR_CLEAR_RCVR | 0x04);
    outb(UART_FCR, 0);
    expect(inb(UART_LSR)).not.toBe(0xff);
  });
});

describe('Serial8250 hostile guest', () => {
  it('never throws and keeps reads within the access size', () => {
    let seed = 12345;
    const rand = (): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed;
    };
    const sizes: AccessSize[] = [1, 2, 4];
    const { uart } = setup();
    const weird = [NaN, -1, Infinity, -Infinity, 2 ** 53, 1.5, 0xffffffff, -0x80000000, 1e300];
    for (let i = 0; i < 5000; i++) {
      const size = sizes[rand() % 3];
      const offset = rand() % 5 === 0 ? weird[rand() % weird.length] : rand() % 12;
      const value = rand() % 7 === 0 ? weird[rand() % weird.length] : rand();
      if (rand() & 1) {
        expect(() => uart.write(offset, size, value)).not.toThrow();
      } else {
        const v = uart.read(offset, size);
        expect(Number.isInteger(v)).toBe(true);
        expect(v).toBeGreaterThanOrEqual(0);
        expect(v).toBeLessThan(2 ** (8 * size));
      }
      if (i % 50 === 0) uart.receive(Uint8Array.of(rand() & 0xff, rand() & 0xff), { overrun: (rand() & 1) === 1 });
    }
    // Odd sizes from an untyped caller are taken as bytes.
    expect(() => uart.write(0, 3 as AccessSize, 0x41)).not.toThrow();
    expect(uart.read(7, 0 as AccessSize)).toBeLessThan(0x100);
  });
});
