/*
 * bench/exits guest: the cheapest possible exit, forever.
 *
 * Real mode, loaded at 0x8000 like the examples. Each iteration is
 * exactly one port-I/O write of one byte to port 0x10, i.e. one
 * KVM_EXIT_IO (direction out, size 1, count 1). The benchmark host
 * counts exits and stops after N; the guest never halts.
 */
        .code16
        .text
        .globl _start
_start:
        xor     %ax, %ax
1:
        outb    %al, $0x10
        inc     %ax
        jmp     1b
