/*
 * misc-uart: abuse of the COM1 16550A (register map: src/devices/serial-8250.ts).
 *
 *  1. Divisor 0 (DLAB=1, DLL=DLM=0; a real 16550 then has no baud clock),
 *     then a byte sent: the model has no clock and must not divide by zero.
 *  2. 20000 writes of pseudo-random values to pseudo-random offsets 0-7
 *     (so DLAB, loopback, FIFO control and interrupt enables all flip),
 *     each followed by reads of LSR, IIR and MSR.
 *  3. Loopback (MCR bit 4, 16550 datasheet "loopback"): with the FIFO on,
 *     bytes written to THR come back in RBR, and MSR shows CTS/DSR/RI/DCD
 *     from RTS/DTR/OUT1/OUT2 (MCR = 0x1F -> MSR high nibble 0xF).
 *  4. FIFO overflow: still in loopback, 64 bytes into a 16-byte FIFO; LSR
 *     must then show Overrun Error (bit 1) and the FIFO still gives bytes.
 *  5. Back to normal (uart_init), then an echo: print "echo> " on COM1,
 *     read one line from COM1 (the host sends it) and print it back as
 *     "echoed: <line>", so input and output are both shown to work.
 * Ends in `finish` (misc-common.inc). Run with --mode long.
 */
        .code64
        .text
        .globl _start

_start:
        mov     $0x1B873593, %r15d      /* xorshift32 seed */

        /* 1. divisor 0 */
        mov     $(COM1 + 3), %dx
        mov     $0x80, %al
        outb    %al, %dx
        xor     %al, %al
        mov     $(COM1 + 0), %dx
        outb    %al, %dx
        mov     $(COM1 + 1), %dx
        outb    %al, %dx
        mov     $(COM1 + 3), %dx
        mov     $0x03, %al
        outb    %al, %dx
        mov     $'0', %al
        call    putc_serial
        mov     $'\n', %al
        call    putc_serial

        /* 2. random register writes with status reads */
        mov     $20000, %r12d
1:      call    rand32
        mov     %eax, %ecx
        shr     $8, %ecx
        and     $7, %ecx
        lea     COM1(%ecx), %edx
        outb    %al, %dx
        mov     $(COM1 + 5), %dx        /* LSR */
        inb     %dx, %al
        mov     $(COM1 + 2), %dx        /* IIR */
        inb     %dx, %al
        mov     $(COM1 + 6), %dx        /* MSR */
        inb     %dx, %al
        dec     %r12d
        jnz     1b
        lea     random_msg(%rip), %rsi
        call    puts_e9

        /* 3. loopback */
        call    uart_init
        mov     $(COM1 + 4), %dx
        mov     $0x1f, %al              /* LOOP | OUT2 | OUT1 | RTS | DTR */
        outb    %al, %dx
        mov     $(COM1 + 6), %dx
        inb     %dx, %al
        and     $0xf0, %al
        cmp     $0xf0, %al
        jne     fail_msr
        mov     $0x5a, %al
        mov     $COM1, %dx
        outb    %al, %dx
        mov     $(COM1 + 5), %dx
        inb     %dx, %al
        test    $LSR_DR, %al
        jz      fail_loop
        mov     $COM1, %dx
        inb     %dx, %al
        cmp     $0x5a, %al
        jne     fail_loop
        lea     loop_msg(%rip), %rsi
        call    puts_e9

        /* 4. FIFO overflow in loopback: 64 bytes into 16 */
        mov     $COM1, %dx
        mov     $64, %ecx
2:      mov     %cl, %al
        outb    %al, %dx
        loop    2b
        mov     $(COM1 + 5), %dx
        inb     %dx, %al
        test    $0x02, %al              /* OE */
        jz      fail_overrun
        test    $LSR_DR, %al
        jz      fail_overrun
        /* drain what the FIFO kept */
3:      mov     $(COM1 + 5), %dx
        inb     %dx, %al
        test    $LSR_DR, %al
        jz      4f
        mov     $COM1, %dx
        inb     %dx, %al
        jmp     3b
4:      lea     overrun_msg(%rip), %rsi
        call    puts_e9

        /* 5. normal again: echo one line from the host */
        call    uart_init
        lea     prompt(%rip), %rsi
        call    puts_serial
        lea     echoed(%rip), %rsi
        call    puts_serial
5:      mov     $COM1_LSR, %dx
        inb     %dx, %al
        test    $LSR_DR, %al
        jz      5b
        mov     $COM1, %dx
        inb     %dx, %al
        call    putc_serial
        cmp     $'\n', %al
        jne     5b
        jmp     finish

fail_msr:
        lea     msr_fail(%rip), %rsi
        jmp     fail
fail_loop:
        lea     loop_fail(%rip), %rsi
        jmp     fail
fail_overrun:
        lea     overrun_fail(%rip), %rsi
fail:   call    puts_e9
        jmp     finish

random_msg:     .asciz "uart: 20000 random register writes done\n"
loop_msg:       .asciz "uart: loopback ok\n"
overrun_msg:    .asciz "uart: FIFO overrun reported\n"
prompt:         .asciz "echo> "
echoed:         .asciz "echoed: "
msr_fail:       .asciz "FAIL: loopback MSR bits\n"
loop_fail:      .asciz "FAIL: loopback byte did not come back\n"
overrun_fail:   .asciz "FAIL: no overrun error after 64 bytes\n"

        .include "misc-common.inc"
