/*
 * 04-mmio-device: a guest driving a memory-mapped device.
 *
 * Long mode, set up by the VMM exactly as in example 03. The demo
 * device lives at guest physical 0xD0000000 (identity-mapped, so the
 * virtual address is the same). There is no RAM there: every load or
 * store to the window leaves the guest with KVM_EXIT_MMIO and the VMM
 * routes it to the TypeScript device model.
 *
 *   +0x0 OPERAND_A (rw)   +0x4 OPERAND_B (rw)
 *   +0x8 PRODUCT   (ro)   = A * B, low 32 bits
 *   +0xC CHAR_OUT  (wo)   the device prints the low byte
 *
 * For n = 1..10 it computes n! = (n-1)! * n with the device's
 * multiplier and prints "n! = value\n" through CHAR_OUT.
 *
 * Final registers (checked by tests):
 *   RAX = 3628800   (10!, fits in 32 bits)
 *   RBX = 0xD0000000 (device base)
 *   R12 = 11        (loop counter after the last n)
 */
        .code64
        .text
        .globl _start

        .set    DEV_BASE,  0xD0000000
        .set    OPERAND_A, 0x0
        .set    OPERAND_B, 0x4
        .set    PRODUCT,   0x8
        .set    CHAR_OUT,  0xC

_start:
        mov     $DEV_BASE, %ebx     /* zero-extends: RBX = 0xD0000000 */
        mov     $1, %r13d           /* r13 = (n-1)! */
        mov     $1, %r12d           /* r12 = n */
1:
        movl    %r13d, OPERAND_A(%rbx)      /* MMIO write */
        movl    %r12d, OPERAND_B(%rbx)      /* MMIO write */
        movl    PRODUCT(%rbx), %r13d        /* MMIO read: n! */

        mov     %r12d, %eax
        call    print_dec           /* "n" */
        lea     eq(%rip), %rsi
        call    print_str           /* "! = " */
        mov     %r13d, %eax
        call    print_dec           /* n! */
        mov     $'\n', %eax
        call    putc

        inc     %r12d
        cmp     $10, %r12d
        jbe     1b

        mov     %r13, %rax          /* RAX = 10! = 3628800 */
2:
        hlt
        jmp     2b

/* putc: AL = byte, written to CHAR_OUT. */
putc:
        movl    %eax, CHAR_OUT(%rbx)        /* MMIO write, device prints low byte */
        ret

/* print_str: RSI -> NUL-terminated string. Clobbers RAX, RSI. */
print_str:
        movzbl  (%rsi), %eax
        test    %eax, %eax
        jz      1f
        call    putc
        inc     %rsi
        jmp     print_str
1:
        ret

/* print_dec: EAX = unsigned value, printed in decimal.
 * Digits are pushed to a small buffer on the stack, then sent in order.
 * Clobbers RAX, RCX, RDX, RSI. */
print_dec:
        sub     $16, %rsp
        lea     16(%rsp), %rsi      /* write digits backwards from here */
        mov     $10, %ecx
1:
        xor     %edx, %edx
        div     %ecx                /* EAX = EAX / 10, EDX = remainder */
        add     $'0', %dl
        dec     %rsi
        mov     %dl, (%rsi)
        test    %eax, %eax
        jnz     1b
2:
        movzbl  (%rsi), %eax
        call    putc
        inc     %rsi
        lea     16(%rsp), %rcx
        cmp     %rcx, %rsi
        jb      2b
        add     $16, %rsp
        ret

eq:
        .asciz  "! = "
