/*
 * 03-long-mode-serial: 64-bit code talking to a UART.
 *
 * The VMM has already put the vCPU in long mode: CR0.PG/PE, CR4.PAE,
 * EFER.LME/LMA, identity-mapped page tables for the first 4 GiB
 * (2 MiB pages) at 0x1000-0x6FFF, a GDT at 0x500 with a 64-bit code
 * segment (selector 0x10) and data segment (selector 0x18), RSP = 0x8000.
 *
 * The message goes out through the serial port the way a real driver
 * does it on an 8250 UART: poll the Line Status Register (0x3FD) until
 * bit 5 (THR empty) is set, then write the byte to THR (0x3F8). Both the
 * `in` and the `out` are exits the VMM's UART model answers.
 * `print` and `putc` are real functions (call/ret), which shows that the
 * stack the VMM set up works.
 *
 * Final registers (checked by tests):
 *   RAX = 0x1122334455667788   (built with 64-bit shifts)
 *   RBX = 6765                 (fib(20), with fib(1) = fib(2) = 1)
 *   RCX = 29                   (characters printed, returned by print)
 *   RSP = 0x8000               (balanced stack)
 */
        .code64
        .text
        .globl _start
_start:
        lea     msg(%rip), %rsi
        call    print               /* returns the count in RAX */
        mov     %rax, %rcx

        /* RAX = 0x1122334455667788, one byte at a time: needs 64-bit regs */
        xor     %eax, %eax
        lea     bytes(%rip), %rsi
        mov     $8, %edx
1:
        shl     $8, %rax
        movzbq  (%rsi), %rdi
        or      %rdi, %rax
        inc     %rsi
        dec     %edx
        jnz     1b

        /* RBX = fib(20) */
        xor     %edi, %edi          /* fib(0) */
        mov     $1, %ebx            /* fib(1) */
        mov     $19, %edx
2:
        lea     (%rdi,%rbx), %r8
        mov     %rbx, %rdi
        mov     %r8, %rbx
        dec     %edx
        jnz     2b
3:
        hlt
        jmp     3b

/* print: RSI -> NUL-terminated string. Returns RAX = characters sent. */
print:
        push    %rbx
        xor     %ebx, %ebx
1:
        movzbl  (%rsi,%rbx), %edi
        test    %edi, %edi
        jz      2f
        call    putc
        inc     %rbx
        jmp     1b
2:
        mov     %rbx, %rax
        pop     %rbx
        ret

/* putc: DIL = byte. Waits for THR empty, then writes it. Clobbers AL, DX. */
putc:
        mov     $0x3FD, %dx         /* LSR */
1:
        inb     %dx, %al
        test    $0x20, %al          /* THRE */
        jz      1b
        mov     $0x3F8, %dx         /* THR */
        mov     %dil, %al
        outb    %al, %dx
        ret

msg:
        .asciz  "Hello from 64-bit long mode!\n"
bytes:
        .byte   0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88
