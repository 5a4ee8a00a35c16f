/*
 * 06-smp-wakeup: the bootstrap processor wakes a second CPU.
 *
 * Run with two vCPUs on tskvm's pc platform (in-kernel local APICs):
 *   tskvm run-binary examples/06-smp-wakeup/guest.bin --mode protected --cpus 2
 *
 * CPU 0, the bootstrap processor (BSP), starts here at 0x8000 in 32-bit
 * protected mode: the VMM set flat segments (code 0x10, data 0x18, see
 * example 02) and ESP = 0x8000. CPU 1, an application processor (AP), does
 * not run at all: like a real AP after reset it waits for the BSP to send it
 * an INIT and a STARTUP inter-processor interrupt (IPI).
 *
 * What the BSP does:
 *   1. prints which CPU it is (CPUID leaf 1, EBX[31:24] = initial APIC id);
 *   2. sends INIT, waits 10 ms, sends STARTUP (SIPI), waits 200 us, sends
 *      STARTUP again, waits 200 us: the MP spec's "universal start-up
 *      algorithm" (Intel MP spec 1.4, B.4; SDM Vol. 3A 8.4.4.1). The IPIs are
 *      written to the local APIC's Interrupt Command Register (ICR, SDM Vol. 3A
 *      10.6.1);
 *   3. waits for the AP to set `ap_flag`, at most about a second (measured
 *      with the TSC), and prints "CPU 1 is up" or "CPU 1 did not start";
 *   4. powers the machine off (ACPI S5), which ends the run.
 *
 * What the AP does: a STARTUP IPI carries an 8-bit vector; the AP starts in
 * 16-bit REAL MODE at CS:IP = (vector << 8):0000, i.e. physical address
 * vector << 12 (SDM Vol. 3A 8.4.4.1; MP spec B.4.2). Its code must therefore
 * sit on a 4 KiB boundary below 1 MiB. The binary is loaded at 0x8000, and
 * `.org 0x1000` below puts `ap_start` at 0x8000 + 0x1000 = 0x9000: vector 0x09.
 * The AP prints "hello from CPU 1", sets `ap_flag` and halts for good.
 *
 * Timing: the delays and the timeout use the time-stamp counter (RDTSC,
 * SDM Vol. 3B 17.17), whose rate the guest does not know; the tick counts
 * below are long enough for any TSC up to 4 GHz (a slower TSC only waits
 * longer). KVM itself needs none of the delays; real hardware does.
 *
 * Section numbers of the Intel SDM are those of its editions up to 2022;
 * later editions number these Vol. 3 chapters one higher (the ICR is 11.6.1
 * there, the numbering src/arch/x86/lapic.ts uses).
 *
 * Ending the run: with the in-kernel irqchip (pc platform) HLT does not stop
 * tskvm (an interrupt could wake the CPU), so the BSP writes the ACPI
 * "soft off" request instead. On the bare platform (--cpus 1 without
 * --platform pc) nothing answers at that port, no local APIC receives the
 * IPIs, the AP never comes, and the BSP's final HLT ends the run.
 */

/* Local APIC registers, xAPIC mode, at the default base 0xFEE00000 (SDM Vol. 3A 10.4.1, Table 10-1). */
        .set    ICR_LOW,   0xFEE00300   /* bits 31:0 of the ICR; writing it sends the IPI */
        .set    ICR_HIGH,  0xFEE00310   /* bits 63:32 of the ICR; bits 63:56 = destination */

/* ICR low-dword fields (SDM Vol. 3A 10.6.1, Figure 10-12). */
        .set    ICR_DM_INIT,    0x500   /* delivery mode 101b (bits 10:8) */
        .set    ICR_DM_STARTUP, 0x600   /* delivery mode 110b; bits 7:0 = the start page */
        .set    ICR_LEVEL_ASSERT, 0x4000 /* bit 14, level = 1 (must be 1 except INIT de-assert) */
        .set    ICR_BUSY,       0x1000  /* bit 12, delivery status: 1 = send pending */
        /* Bit 11 (destination mode) = 0: physical, bits 19:18 (shorthand) = 00: use the destination field. */
        .set    ICR_INIT,    ICR_DM_INIT | ICR_LEVEL_ASSERT         /* 0x4500 */
        .set    ICR_STARTUP, ICR_DM_STARTUP | ICR_LEVEL_ASSERT      /* 0x4600 | vector */

/*
 * The CPU to wake. tskvm gives vCPU n the local APIC id n (a real OS finds
 * the ids in the ACPI MADT or the MP table). ICR bits 63:56 = bits 31:24 of
 * ICR_HIGH.
 */
        .set    AP_APIC_ID, 1
        .set    AP_DESTINATION, AP_APIC_ID << 24

/* TSC tick counts (see "Timing" above). */
        .set    TICKS_10MS,  1 << 26    /* 67M ticks: >= 10 ms up to 6.7 GHz */
        .set    TICKS_200US, 1 << 20    /* 1M ticks:  >= 200 us up to 5.2 GHz */
        .set    TICKS_TIMEOUT, 0x80000000 /* 2^31 ticks: 0.5 s at 4 GHz, 0.9 s at 2.3 GHz */

/*
 * ACPI PM1a control register (ACPI 6.4 4.8.4.2.1): SLP_TYP in bits 12:10,
 * SLP_EN bit 13. tskvm's FADT puts PM1a_CNT_BLK at port 0x604 and its DSDT's
 * \_S5 package says SLP_TYP 5 (src/arch/x86/acpi.ts); an OS reads both from
 * the ACPI tables, this example takes them as given.
 */
        .set    PM1A_CNT, 0x604
        .set    SLP_TYP_S5, 5 << 10
        .set    SLP_EN, 1 << 13

        .set    DEBUG_CONSOLE, 0xE9     /* tskvm's (and QEMU's/Bochs') debug console port */

        .code32
        .text
        .globl _start
_start:
        cld
        /* Who am I? CPUID.01H:EBX[31:24] is this CPU's initial APIC id (SDM Vol. 2A, CPUID). */
        mov     $1, %eax
        cpuid
        shr     $24, %ebx
        add     $'0', %bl               /* APIC ids here are 0..7: one digit */
        mov     %bl, bsp_digit
        mov     $msg_bsp, %esi
        call    puts

        /* 1. INIT: the AP resets and then waits for a STARTUP IPI. */
        mov     $AP_DESTINATION, %eax
        mov     $ICR_INIT, %ebx
        call    send_ipi
        mov     $TICKS_10MS, %ecx
        call    delay

        /* 2. STARTUP, twice. The vector is the page number of ap_start (0x9000 >> 12 = 0x09). */
        mov     $ap_start, %ebx
        shr     $12, %ebx
        or      $ICR_STARTUP, %ebx
        call    send_ipi
        mov     $TICKS_200US, %ecx
        call    delay
        call    send_ipi                /* an AP already running ignores the second one */
        mov     $TICKS_200US, %ecx
        call    delay

        /* 3. Wait for the AP's flag, but not forever: an AP may not exist. */
        rdtsc                           /* EDX:EAX = time-stamp counter */
        mov     %eax, %esi
        mov     %edx, %edi              /* EDI:ESI = start */
1:
        cmpb    $0, ap_flag             /* x86 stores become visible in order: */
        jne     ap_is_up                /* the AP's message is out before the flag */
        pause                           /* a spin-wait hint (SDM Vol. 2B, PAUSE) */
        rdtsc
        sub     %esi, %eax
        sbb     %edi, %edx              /* EDX:EAX = ticks since start */
        jnz     ap_timed_out            /* 2^32 ticks or more */
        cmp     $TICKS_TIMEOUT, %eax
        jb      1b
ap_timed_out:
        mov     $msg_timeout, %esi
        call    puts
        jmp     power_off
ap_is_up:
        mov     $msg_up, %esi
        call    puts

        /* 4. ACPI soft off (S5): tskvm ends the run with a 'poweroff' stop. */
power_off:
        mov     $PM1A_CNT, %edx
        mov     $(SLP_TYP_S5 | SLP_EN), %eax
        outw    %ax, %dx
        /* Only without ACPI (bare platform) do we get here; HLT then ends the run. */
2:
        cli
        hlt
        jmp     2b

/*
 * send_ipi: EAX = ICR high dword (destination), EBX = ICR low dword
 * (command). The high dword goes first: writing the low dword sends the IPI
 * (SDM Vol. 3A 10.6.1).
 */
send_ipi:
        call    wait_icr_idle
        mov     %eax, ICR_HIGH
        mov     %ebx, ICR_LOW
        ret

/*
 * wait_icr_idle: software must not write the ICR while the previous IPI is
 * still pending (delivery status, bit 12; SDM Vol. 3A 10.6.1). KVM's local
 * APIC sends at once, so the bit reads 0; the poll is bounded because where
 * no APIC answers (bare platform) the MMIO read returns all ones.
 * Preserves all registers but the flags.
 */
wait_icr_idle:
        push    %ecx
        push    %edx
        mov     $1000, %ecx
1:
        mov     ICR_LOW, %edx
        test    $ICR_BUSY, %edx
        jz      2f
        pause
        loop    1b
2:
        pop     %edx
        pop     %ecx
        ret

/* delay: spins for at least ECX TSC ticks (ECX < 2^32). Preserves all registers but the flags. */
delay:
        push    %eax
        push    %edx
        push    %esi
        push    %edi
        rdtsc
        mov     %eax, %esi
        mov     %edx, %edi
1:
        pause
        rdtsc
        sub     %esi, %eax
        sbb     %edi, %edx
        jnz     2f                      /* 2^32 ticks or more: long enough */
        cmp     %ecx, %eax
        jb      1b
2:
        pop     %edi
        pop     %esi
        pop     %edx
        pop     %eax
        ret

/* puts: prints the NUL-terminated string at ESI on the debug console. Clobbers EAX, EDX, ESI. */
puts:
        mov     $DEBUG_CONSOLE, %edx
1:
        lodsb
        test    %al, %al
        jz      2f
        outb    %al, %dx                /* one KVM_EXIT_IO per byte */
        jmp     1b
2:
        ret

msg_bsp:
        .ascii  "CPU "
bsp_digit:
        .asciz  "? (bootstrap processor, 32-bit protected mode): sending INIT, SIPI, SIPI to APIC id 1\n"
msg_up:
        .asciz  "CPU 1 is up\n"
msg_timeout:
        .asciz  "CPU 1 did not start (no answer within 2^31 TSC ticks)\n"

/* Set to 1 by the AP. Below 64 KiB, so the real-mode AP reaches it with DS = 0. */
ap_flag:
        .byte   0

/* ------------------------------------------------------------------ AP */

/*
 * Offset 0x1000 of the binary = physical 0x9000 (the binary is loaded at
 * 0x8000): page-aligned and below 1 MiB, as a start-up page must be. The
 * assembler refuses if the BSP's code above has grown past this point.
 */
        .org    0x1000
        .code16
ap_start:
        /*
         * Real mode, CS = 0x0900 (base 0x9000), IP = 0. The other segment
         * registers hold their reset values (selector 0, base 0; SDM Vol. 3A
         * Table 9-1), and RFLAGS = 2 (interrupts off). With DS = 0 an
         * offset is a physical address, and every label in this binary is
         * below 64 KiB; jumps are IP-relative, so they do not care that the
         * code was linked at 0x9000 rather than at offset 0.
         */
        cli
        cld
        xor     %ax, %ax
        mov     %ax, %ds

        /* Its own APIC id, as the BSP did: CPUID works in real mode too (the 0x66 prefix gives 32-bit registers). */
        mov     $1, %eax
        cpuid
        shr     $24, %ebx
        add     $'0', %bl
        mov     %bl, ap_digit

        mov     $msg_ap, %si
        mov     $DEBUG_CONSOLE, %dx
1:
        lodsb                           /* AL = [DS:SI], SI++ */
        test    %al, %al
        jz      2f
        outb    %al, %dx
        jmp     1b
2:
        movb    $1, ap_flag             /* tell the BSP */

        /* Done: halt for good (no interrupts are enabled; an NMI would land back in the loop). */
3:
        cli
        hlt
        jmp     3b

msg_ap:
        .ascii  "hello from CPU "
ap_digit:
        .asciz  "? (application processor, started by SIPI in real mode at CS:IP 0900:0000)\n"
