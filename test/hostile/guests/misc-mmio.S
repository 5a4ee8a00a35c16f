/*
 * misc-mmio: 1/2/4/8-byte and unaligned MMIO where no device answers.
 *
 * Run with --mode long --mem 4M: RAM is 0-4 MiB, everything above is not RAM.
 * For each address A in the table below, and each width (1, 2, 4, 8 bytes):
 * read A and check the value is all ones (what tskvm's bus returns for an
 * unclaimed access, src/bus/bus.ts), then write a pseudo-random value. The
 * table holds aligned and unaligned addresses, addresses whose 8-byte access
 * crosses a page boundary (KVM splits it into two MMIO exits) and the last
 * bytes below 4 GiB:
 *   just above RAM (4 MiB), 256 MiB, the PCI MMIO window tskvm uses
 *   (0xE0000000-0xEFFFFFFF, src/vmm/sync-machine.ts PCI_WINDOWS; nothing is
 *   mapped there because run-binary assigns no BARs), 0xFEBFF000 (below the
 *   I/O APIC), 0xFFFFFFF0 (the reset vector, no firmware here).
 * Then an access that is half RAM, half not: an 8-byte read and write at
 * 4 MiB - 4 (KVM does the RAM half itself and exits for the other).
 * Then above 4 GiB: the guest maps 2 MiB at 0x100000000 with its own page
 * directory (PDPT entry 4) and does the same there.
 * Then the interrupt controllers' windows, reads only: on 'pc' they are
 * KVM's in-kernel I/O APIC (0xFEC00000) and local APIC (0xFEE00000), whose
 * registers are KVM's business; on 'bare' nothing is there (all ones).
 *
 * Prints "mmio: N all-ones checks passed" (or the first failing address) and
 * ends in `finish` (misc-common.inc).
 */
        .code64
        .text
        .globl _start

        .set PDPT, 0x2000               /* tskvm's long-mode page tables (src/arch/x86/modes.ts) */
        .set HIGH_PD, 0x200000          /* our page directory for 4 GiB..4 GiB+1 GiB, in RAM */

_start:
        mov     $0x9E3779B9, %r15d      /* xorshift32 seed */
        xor     %r14d, %r14d            /* R14 = checks passed */

        lea     addresses(%rip), %rbx
1:      mov     (%rbx), %rdi
        test    %rdi, %rdi
        jz      2f
        call    attack
        add     $8, %rbx
        jmp     1b
2:
        /* Half RAM, half MMIO: 8 bytes at 4 MiB - 4. The RAM half is 0 (fresh RAM); the MMIO half reads all ones. */
        mov     $(0x400000 - 4), %rdi
        movl    $0, (%rdi)
        mov     (%rdi), %rax
        mov     $0xffffffff00000000, %rcx
        cmp     %rcx, %rax
        jne     fail
        inc     %r14
        call    rand32
        mov     %rax, (%rdi)

        /* Map 2 MiB at 4 GiB: PD at HIGH_PD, entry 0 = 0x100000000 | PS | RW | P; PDPT[4] -> PD. */
        mov     $HIGH_PD, %edi
        xor     %eax, %eax
        mov     $512, %ecx
        rep stosq
        mov     $0x100000083, %rax
        mov     %rax, HIGH_PD
        mov     $(HIGH_PD | 3), %rax
        mov     %rax, (PDPT + 4 * 8)
        mov     %cr3, %rax
        mov     %rax, %cr3              /* flush the TLB */
        mov     $0x100000000, %rdi
        call    attack
        mov     $0x100000ffd, %rdi      /* unaligned, 8 bytes cross a page */
        call    attack

        /* Interrupt controller windows: reads only, each width. */
        mov     $0xfec00000, %rdi
        call    read_all_widths
        mov     $0xfee00000, %rdi
        call    read_all_widths
        mov     $0xfee00030, %rdi       /* local APIC version register */
        call    read_all_widths

        lea     passed_msg(%rip), %rsi
        call    puts_e9
        mov     %r14, %rax
        call    puthex_e9
        lea     newline(%rip), %rsi
        call    puts_e9
        jmp     finish

/* attack: RDI = address; for widths 1, 2, 4, 8: read (must be all ones), then write random. */
attack:
        movzbl  (%rdi), %eax
        cmp     $0xff, %eax
        jne     fail
        movzwl  (%rdi), %eax
        cmp     $0xffff, %eax
        jne     fail
        mov     (%rdi), %eax
        cmp     $0xffffffff, %eax
        jne     fail
        mov     (%rdi), %rax
        cmp     $-1, %rax
        jne     fail
        add     $4, %r14
        call    rand32
        mov     %al, (%rdi)
        call    rand32
        mov     %ax, (%rdi)
        call    rand32
        mov     %eax, (%rdi)
        call    rand32
        shl     $32, %rax
        or      %r15, %rax
        mov     %rax, (%rdi)
        ret

/* read_all_widths: RDI = address; read 1, 2, 4, 8 bytes, values ignored. */
read_all_widths:
        movzbl  (%rdi), %eax
        movzwl  (%rdi), %eax
        mov     (%rdi), %eax
        mov     (%rdi), %rax
        ret

fail:
        lea     fail_msg(%rip), %rsi
        call    puts_e9
        mov     %rdi, %rax
        call    puthex_e9
        lea     newline(%rip), %rsi
        call    puts_e9
        jmp     finish

        .balign 8
addresses:
        .quad   0x400000, 0x400001, 0x400003, 0x400007
        .quad   0x10000000, 0x10000ffe, 0x10000ffb
        .quad   0xe0000000, 0xe0000002, 0xe0000005, 0xe0001000, 0xeffffff8, 0xefffffff
        .quad   0xfebff000, 0xfebff7fd
        .quad   0xfffffff0, 0xfffffff8
        .quad   0

passed_msg:     .asciz "mmio: all-ones checks passed: 0x"
fail_msg:       .asciz "FAIL: unclaimed MMIO read was not all ones at 0x"
newline:        .asciz "\n"

        .include "misc-common.inc"
