/*
 * misc-port-sweep: every I/O port 0x0000-0xFFFF, in every width, read and
 * written with pseudo-random values; then string I/O with large counts.
 *
 * Per port P, in this order: inb, inw, inl from P, then outb, outw, outl to
 * P with fresh xorshift32 values (seed 0x2545F491), so 6 accesses per port,
 * 393216 in all. Accesses that start near the top (a word at 0xFFFF, a
 * dword at 0xFFFD..0xFFFF) run past the 64 KiB port space; KVM passes them
 * to the VMM as they are.
 *
 * Writes the sweep leaves out, because they would end the run rather than
 * attack it (each is a documented way for a guest to stop its machine):
 *   - port 0x64, the i8042 command port: command 0xFE, or any 0xF0-0xFF
 *     with bit 0 clear, pulses the CPU reset line (src/devices/i8042.ts);
 *   - any write that reaches byte 0x605, the high byte of ACPI PM1_CNT:
 *     SLP_EN with SLP_TYP = 5 is soft-off (ACPI 6.4 §4.8.4.2.1): byte writes
 *     at 0x605, word writes at 0x604-0x605, dword writes at 0x602-0x605.
 * Reads of those ports are swept like every other. A sleep request of
 * another type (SLP_TYP 1, which tskvm answers with WAK_STS) is made once,
 * on purpose, after the sweep.
 *
 * String I/O at CPL 0 (emulated by KVM, delivered in page-sized pieces):
 *   rep insb/insw/insd from unclaimed port 0x2000 into RAM at 1 MiB,
 *   64 KiB each; the guest checks every byte reads 0xFF (all ones);
 *   rep outsb/outsw/outsd of 64 KiB each to port 0x2000;
 *   rep outsb of 4 KiB to COM1's scratch register, rep insb of 4 KiB from
 *   its receive buffer.
 * The program ends in `finish` (misc-common.inc): "still alive" on the debug
 * console and COM1, then power off. Run with --mode long --mem 4M.
 */
        .code64
        .text
        .globl _start

        .set UNCLAIMED_PORT, 0x2000
        .set BUFFER, 0x100000
        .set STRING_BYTES, 0x10000

_start:
        mov     $0x2545F491, %r15d      /* xorshift32 seed */
        xor     %ebx, %ebx              /* EBX = port */
sweep:
        mov     %bx, %dx
        inb     %dx, %al
        inw     %dx, %ax
        inl     %dx, %eax

        cmp     $0x64, %ebx             /* i8042 command port: no writes */
        je      next
        cmp     $0x605, %ebx
        je      next                    /* byte at PM1_CNT+1 */
        call    rand32
        outb    %al, %dx
        cmp     $0x604, %ebx
        je      next                    /* word at 0x604 reaches 0x605 */
        call    rand32
        outw    %ax, %dx
        cmp     $0x602, %ebx
        jb      1f
        cmp     $0x605, %ebx
        jbe     next                    /* dwords at 0x602-0x605 reach 0x605 */
1:      call    rand32
        outl    %eax, %dx
next:
        inc     %ebx
        cmp     $0x10000, %ebx
        jb      sweep

        lea     swept_msg(%rip), %rsi
        call    puts_e9

        /* One sleep request of a type tskvm does not implement (SLP_TYP 1, SLP_EN). */
        mov     $PM1_CNT, %dx
        mov     $((1 << 10) | (1 << 13)), %ax
        outw    %ax, %dx

        /* rep ins{b,w,d} from an unclaimed port: every byte must read 0xFF. */
        cld
        mov     $UNCLAIMED_PORT, %dx
        call    clear_buffer
        mov     $BUFFER, %edi
        mov     $STRING_BYTES, %ecx
        rep insb
        call    check_buffer
        call    clear_buffer
        mov     $BUFFER, %edi
        mov     $(STRING_BYTES / 2), %ecx
        rep insw
        call    check_buffer
        call    clear_buffer
        mov     $BUFFER, %edi
        mov     $(STRING_BYTES / 4), %ecx
        rep insl
        call    check_buffer

        /* rep outs{b,w,d} to it. */
        mov     $BUFFER, %esi
        mov     $STRING_BYTES, %ecx
        rep outsb
        mov     $BUFFER, %esi
        mov     $(STRING_BYTES / 2), %ecx
        rep outsw
        mov     $BUFFER, %esi
        mov     $(STRING_BYTES / 4), %ecx
        rep outsl

        /* COM1: 4 KiB at the scratch register, 4 KiB from the receive buffer. */
        mov     $(COM1 + 7), %dx
        mov     $BUFFER, %esi
        mov     $0x1000, %ecx
        rep outsb
        mov     $COM1, %dx
        mov     $BUFFER, %edi
        mov     $0x1000, %ecx
        rep insb

        lea     strings_msg(%rip), %rsi
        call    puts_e9
        jmp     finish

/* clear_buffer: 64 KiB of zeros at BUFFER (so the check sees what the ins wrote). */
clear_buffer:
        push    %rax
        push    %rcx
        push    %rdi
        xor     %eax, %eax
        mov     $BUFFER, %edi
        mov     $(STRING_BYTES / 8), %ecx
        rep stosq
        pop     %rdi
        pop     %rcx
        pop     %rax
        ret

/* check_buffer: all 64 KiB at BUFFER are 0xFF, else print the bad offset and stop. */
check_buffer:
        push    %rax
        push    %rcx
        push    %rdi
        mov     $BUFFER, %edi
        mov     $(STRING_BYTES / 8), %ecx
        mov     $-1, %rax
        repe scasq
        jne     1f
        pop     %rdi
        pop     %rcx
        pop     %rax
        ret
1:      lea     bad_msg(%rip), %rsi
        call    puts_e9
        lea     -8(%rdi), %rax
        call    puthex_e9
        jmp     finish

swept_msg:      .asciz "swept ports 0x0000-0xffff in widths 1, 2, 4\n"
strings_msg:    .asciz "string I/O done: 64 KiB each of insb/insw/insd read all ones\n"
bad_msg:        .asciz "FAIL: unclaimed string read was not all ones at "

        .include "misc-common.inc"
