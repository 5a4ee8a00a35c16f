/*
 * 02-protected-mode: 32-bit code, flat segments, paging off.
 *
 * The VMM has already put the vCPU in protected mode before the first
 * instruction: CR0.PE = 1, a GDT at 0x500 with a flat 4 GiB code
 * segment (selector 0x10) and data segment (selector 0x18), ESP = 0x8000.
 * This binary is loaded at 0x8000 and starts at _start.
 *
 * It prints "Hello from 32-bit protected mode!\n" on port 0xE9, one
 * `outb` (one KVM_EXIT_IO) per byte, then computes the sum
 * 1 + 2 + ... + 100 with a loop.
 *
 * Final registers (checked by tests):
 *   EAX = 5050        (sum of 1..100)
 *   EBX = 0xCAFEBABE
 *   ECX = CR0         (bit 0, PE, is set; bit 31, PG, is clear)
 *   EDX = 0xE9        (the console port)
 */
        .code32
        .text
        .globl _start
_start:
        cld
        mov     $msg, %esi          /* flat segments: offset = address */
        mov     $0xE9, %edx
1:
        lodsb                       /* AL = [ESI], ESI++ */
        test    %al, %al
        jz      2f
        outb    %al, %dx            /* -> KVM_EXIT_IO (out, port 0xE9, size 1) */
        jmp     1b
2:

        xor     %eax, %eax          /* sum */
        mov     $100, %ecx
3:
        add     %ecx, %eax
        loop    3b                  /* ECX--, repeat while ECX != 0 */

        mov     $0xCAFEBABE, %ebx
        mov     %cr0, %ecx          /* show that PE (bit 0) is set */
4:
        hlt
        jmp     4b

msg:
        .asciz  "Hello from 32-bit protected mode!\n"
