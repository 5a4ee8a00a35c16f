/*
 * 05-serial-echo: an interactive 64-bit guest on COM1, and a power button.
 *
 * The VMM has put the vCPU in long mode (as in 03-long-mode-serial):
 * identity-mapped page tables, 64-bit code segment, RSP = 0x8000, and the
 * image loaded at 0x8000. Interrupts are off (RFLAGS.IF = 0): everything is
 * polled, as a boot loader's console would be.
 *
 * Loop: print the prompt "echo> "; poll the 8250's Line Status Register
 * (0x3FD) until bit 0 (Data Ready, 16550 datasheet LSR[0]) is set; read the
 * byte from the Receive Buffer (0x3F8) and echo it. CR or LF ends the line:
 * the guest prints "you typed: <line>" and a new prompt. A CR followed by LF
 * counts as one end of line. Backspace (0x08) and DEL (0x7F) erase one
 * character. Lines are cut at LINE_MAX bytes.
 *
 * The line "halt" prints "bye" and stops the CPU with `hlt`; on tskvm's bare
 * platform HLT ends the run (nothing could wake the vCPU).
 *
 * ACPI power button (only where the machine has ACPI fixed hardware, i.e.
 * tskvm's 'pc' platform): the guest acts as a tiny OSPM. At start it writes
 * PWRBTN_EN (bit 8) to PM1_EN (port 0x602) and reads it back (ACPI 6.4
 * §4.8.4.1.2): on the bare platform the port is unclaimed and reads all ones,
 * so the value does not come back and the guest ignores ACPI, like an OS
 * without an ACPI driver. With ACPI, each turn of the loop also reads PM1_STS
 * (port 0x600); when PWRBTN_STS (bit 8, §4.8.4.1.1) is set the guest clears
 * it (write 1), prints "power button pressed" and enters soft-off: SLP_TYP =
 * 5 (the \_S5 value in tskvm's DSDT) and SLP_EN (bit 13) in PM1_CNT (port
 * 0x604, §4.8.4.2.1). "halt" also powers off there, since a 'pc' machine
 * has an interrupt controller and HLT does not end its run.
 *
 * Ports: PM1A_EVT_PORT = 0x600 and PM1A_CNT_PORT = 0x604 in
 * src/arch/x86/acpi.ts.
 */
        .code64
        .text
        .globl _start

        .set COM1_RBR, 0x3F8        /* receive buffer (read) */
        .set COM1_THR, 0x3F8        /* transmit holding (write) */
        .set COM1_LSR, 0x3FD        /* line status */
        .set LSR_DR,   0x01         /* data ready */
        .set LSR_THRE, 0x20         /* transmit holding register empty */
        .set PM1_STS,  0x600
        .set PM1_EN,   0x602
        .set PM1_CNT,  0x604
        .set PWRBTN,   0x100        /* PWRBTN_STS / PWRBTN_EN, bit 8 */
        .set SLP_S5,   (5 << 10) | (1 << 13)   /* SLP_TYP = 5, SLP_EN */
        .set LINE_MAX, 120

/*
 * Registers kept across the loop:
 *   R12 = 1 when ACPI PM1 registers answered, else 0
 *   RBX = bytes in the current line
 *   R13 = the previous byte received (to fold CR LF into one end of line)
 */
_start:
        /* Enable the power button event and see whether it sticks. */
        mov     $PM1_EN, %dx
        mov     $PWRBTN, %ax
        outw    %ax, %dx
        inw     %dx, %ax
        xor     %r12d, %r12d
        cmp     $PWRBTN, %ax
        jne     1f
        mov     $1, %r12d
1:
        lea     banner(%rip), %rsi
        call    puts
        xor     %r13d, %r13d

prompt:
        lea     prompt_msg(%rip), %rsi
        call    puts
        xor     %ebx, %ebx

poll:
        test    %r12d, %r12d
        jz      1f
        mov     $PM1_STS, %dx
        inw     %dx, %ax
        test    $PWRBTN, %ax
        jnz     power_button
1:
        mov     $COM1_LSR, %dx
        inb     %dx, %al
        test    $LSR_DR, %al
        jz      poll
        mov     $COM1_RBR, %dx
        inb     %dx, %al
        movzbl  %al, %eax
        mov     %r13d, %ecx         /* previous byte */
        mov     %eax, %r13d
        cmp     $'\r', %al
        je      end_of_line
        cmp     $'\n', %al
        jne     2f
        cmp     $'\r', %cl          /* LF right after CR: already handled */
        je      poll
        jmp     end_of_line
2:
        cmp     $0x08, %al
        je      erase
        cmp     $0x7F, %al
        je      erase
        cmp     $LINE_MAX, %ebx
        jae     poll                /* line full: drop the byte */
        lea     line(%rip), %rdi
        mov     %al, (%rdi,%rbx)
        inc     %ebx
        mov     %eax, %edi
        call    putc                /* echo */
        jmp     poll

erase:
        test    %ebx, %ebx
        jz      poll
        dec     %ebx
        lea     rubout(%rip), %rsi
        call    puts
        jmp     poll

end_of_line:
        lea     you_typed(%rip), %rsi
        call    puts
        lea     line(%rip), %rsi
        mov     %ebx, %ecx
        call    write
        lea     crlf(%rip), %rsi
        call    puts
        /* "halt"? */
        cmp     $4, %ebx
        jne     prompt
        lea     line(%rip), %rsi
        cmpl    $0x746c6168, (%rsi) /* "halt", little endian */
        jne     prompt
        lea     bye(%rip), %rsi
        call    puts
        test    %r12d, %r12d
        jnz     soft_off
3:
        hlt
        jmp     3b

power_button:
        mov     $PM1_STS, %dx       /* write 1 to clear PWRBTN_STS */
        mov     $PWRBTN, %ax
        outw    %ax, %dx
        lea     button_msg(%rip), %rsi
        call    puts
soft_off:
        mov     $PM1_CNT, %dx
        mov     $SLP_S5, %ax
        outw    %ax, %dx
4:
        hlt                         /* the VMM ends the run at the S5 write */
        jmp     4b

/* puts: RSI -> NUL-terminated string. Clobbers RAX, RCX, RDX, RSI, RDI. */
puts:
        movzbl  (%rsi), %edi
        test    %edi, %edi
        jz      1f
        call    putc
        inc     %rsi
        jmp     puts
1:
        ret

/* write: RSI -> bytes, RCX = count. Clobbers RAX, RCX, RDX, RSI, RDI. */
write:
        test    %rcx, %rcx
        jz      1f
        movzbl  (%rsi), %edi
        call    putc
        inc     %rsi
        dec     %rcx
        jmp     write
1:
        ret

/* putc: DIL = byte. Waits for THR empty, then writes it. Clobbers AL, DX. */
putc:
        mov     $COM1_LSR, %dx
1:
        inb     %dx, %al
        test    $LSR_THRE, %al
        jz      1b
        mov     $COM1_THR, %dx
        mov     %dil, %al
        outb    %al, %dx
        ret

banner:
        .asciz  "serial echo guest: type a line; \"halt\" stops\r\n"
prompt_msg:
        .asciz  "echo> "
you_typed:
        .asciz  "\r\nyou typed: "
crlf:
        .asciz  "\r\n"
rubout:
        .asciz  "\b \b"
bye:
        .asciz  "bye\r\n"
button_msg:
        .asciz  "\r\npower button pressed: powering off\r\n"
line:
        .skip   LINE_MAX
