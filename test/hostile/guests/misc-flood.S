/*
 * misc-flood: console output as fast as the guest can make it, to show that
 * a host that stops reading the console never stalls the vCPU.
 *
 * Writes CHUNKS chunks to the debug console (port 0xE9), each 16 KiB of 'x'
 * by one `rep outsb` followed by the line "\nchunk <16 hex digits>\n"; then
 * "flood done" and `finish` (misc-common.inc). CHUNKS is the quadword at
 * offset 2 of the image (after the first jump), 32 (512 KiB) as built; a
 * host may patch it, 0 meaning forever. Run with --mode long --mem 4M.
 */
        .code64
        .text
        .globl _start

        .set BUFFER, 0x100000
        .set CHUNK, 0x4000

_start:
        jmp     1f
chunks: .quad   32
1:
        cld
        mov     $BUFFER, %edi
        mov     $CHUNK, %ecx
        mov     $'x', %al
        rep stosb
        xor     %ebx, %ebx              /* RBX = chunks written */
2:      mov     chunks(%rip), %rax
        test    %rax, %rax
        jz      3f                      /* 0: forever */
        cmp     %rax, %rbx
        jae     4f
3:      mov     $DEBUGCON, %dx
        mov     $BUFFER, %esi
        mov     $CHUNK, %ecx
        rep outsb
        inc     %rbx
        lea     chunk_msg(%rip), %rsi
        call    puts_e9
        mov     %rbx, %rax
        call    puthex_e9
        lea     newline(%rip), %rsi
        call    puts_e9
        jmp     2b
4:      lea     done_msg(%rip), %rsi
        call    puts_e9
        jmp     finish

chunk_msg:      .asciz "\nchunk "
newline:        .asciz "\n"
done_msg:       .asciz "flood done\n"

        .include "misc-common.inc"
