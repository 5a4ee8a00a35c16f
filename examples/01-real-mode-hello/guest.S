/*
 * 01-real-mode-hello: the smallest useful guest.
 *
 * Runs in 16-bit real mode. The VMM loads this flat binary at guest
 * physical address 0x8000 and starts it with CS=0, IP=0x8000,
 * DS=ES=SS=0, SP=0x8000.
 *
 * It writes "Hello from real mode!\n" one byte at a time to I/O port
 * 0xE9 (the debug console). Every `outb` leaves the guest: KVM returns
 * from KVM_RUN with KVM_EXIT_IO and the VMM prints the byte.
 *
 * Final registers (checked by tests):
 *   AX = number of characters printed (22)
 *   BX = 0xBEEF
 */
        .code16
        .text
        .globl _start
_start:
        cld
        mov     $msg, %si           /* DS:SI -> message (DS = 0) */
        xor     %cx, %cx            /* CX counts characters */
        mov     $0xE9, %dx          /* debug console port */
1:
        lodsb                       /* AL = [DS:SI], SI++ */
        test    %al, %al
        jz      2f                  /* NUL terminator: done */
        outb    %al, %dx            /* -> KVM_EXIT_IO (out, port 0xE9, size 1) */
        inc     %cx
        jmp     1b
2:
        mov     %cx, %ax            /* AX = characters printed */
        mov     $0xBEEF, %bx
        hlt                         /* -> KVM_EXIT_HLT: the VMM ends the run */
        jmp     2b                  /* never reached with these examples */

msg:
        .asciz  "Hello from real mode!\n"
