/*
 * avx-context: do the AVX registers of a Linux process survive context
 * switches? Runs inside a tskvm Linux guest (test/linux-boot.test.ts).
 *
 * Two processes on one CPU (the parent and a fork) each load their own
 * 32-byte pattern into YMM0, call sched_yield() so the kernel switches to
 * the other, and compare YMM0 with the pattern afterwards. The kernel must
 * save and restore the whole YMM register (XSAVE state component 2, SDM
 * Vol. 1, 13.5.3); a kernel that only saves the FXSAVE state keeps the low
 * 128 bits (XMM0) but not the upper 128. Prints one line per process:
 *   avx-context: parent 300 switches, xmm lost 0, ymm upper lost 0
 * or "avx-context: no AVX" when CPUID/XCR0 do not offer AVX.
 *
 * Freestanding (no libc): built with gcc -nostdlib -static at test time.
 */
typedef unsigned long u64;
typedef unsigned char u8;

#define SYS_write 1
#define SYS_sched_yield 24
#define SYS_fork 57
#define SYS_exit 60
#define SYS_wait4 61

static long syscall4(long n, long a, long b, long c, long d) {
  long ret;
  register long r10 __asm__("r10") = d;
  __asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10) : "rcx", "r11", "memory");
  return ret;
}

static void put(const char *s) {
  long n = 0;
  while (s[n]) n++;
  syscall4(SYS_write, 1, (long)s, n, 0);
}

/* A report line, assembled first and written with one system call. */
struct line {
  char text[96];
  long length;
};

static void append(struct line *l, const char *s) {
  while (*s && l->length < (long)sizeof(l->text)) l->text[l->length++] = *s++;
}

static void append_number(struct line *l, long v) {
  char buf[24];
  int i = 23;
  buf[i] = 0;
  do { buf[--i] = (char)('0' + v % 10); v /= 10; } while (v && i > 0);
  append(l, buf + i);
}

static int avx_usable(void) {
  unsigned a, b, c, d, lo, hi;
  __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(1), "c"(0));
  if (!(c & (1u << 27)) || !(c & (1u << 28))) return 0; /* OSXSAVE, AVX */
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (lo & 6) == 6; /* XCR0: SSE and AVX state enabled */
}

/* Loads YMM0 from `in`, yields, stores YMM0 to `out` (YMM0 lives across the system call). */
static void yield_keeping_ymm0(const u8 *in, u8 *out) {
  long ret;
  __asm__ volatile("vmovdqu (%1), %%ymm0\n\t"
                   "syscall\n\t"
                   "vmovdqu %%ymm0, (%2)\n\t"
                   : "=a"(ret) : "r"(in), "r"(out), "a"(SYS_sched_yield) : "rcx", "r11", "memory", "xmm0");
}

static int differs(const u8 *a, const u8 *b, int n) {
  for (int i = 0; i < n; i++) if (a[i] != b[i]) return 1;
  return 0;
}

__attribute__((force_align_arg_pointer, noreturn)) void _start(void) {
  enum { SWITCHES = 300 };
  if (!avx_usable()) {
    put("avx-context: no AVX\n");
    syscall4(SYS_exit, 0, 0, 0, 0);
    __builtin_unreachable();
  }
  long pid = syscall4(SYS_fork, 0, 0, 0, 0);
  u8 in[32], out[32];
  for (int i = 0; i < 32; i++) in[i] = (u8)((pid == 0 ? 0x11 : 0x22) + i);
  long lostLow = 0, lostHigh = 0;
  for (int i = 0; i < SWITCHES; i++) {
    yield_keeping_ymm0(in, out);
    lostLow += differs(in, out, 16);
    lostHigh += differs(in + 16, out + 16, 16);
  }
  /* The parent reports after the child has exited, and each report is one
   * write(): the two lines must not interleave on the console. */
  if (pid > 0) syscall4(SYS_wait4, pid, 0, 0, 0);
  struct line line = { .length = 0 };
  append(&line, pid == 0 ? "avx-context: child " : "avx-context: parent ");
  append_number(&line, SWITCHES);
  append(&line, " switches, xmm lost ");
  append_number(&line, lostLow);
  append(&line, ", ymm upper lost ");
  append_number(&line, lostHigh);
  append(&line, "\n");
  syscall4(SYS_write, 1, (long)line.text, line.length, 0);
  syscall4(SYS_exit, 0, 0, 0, 0);
  __builtin_unreachable();
}
