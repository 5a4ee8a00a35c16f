/*
 * c-loop: the C baseline for the exit benchmark.
 *
 *   c-loop <guest.bin> <exits>
 *
 * The smallest VMM that can run bench/exits/guest.bin: one vCPU in real
 * mode, 1 MiB of RAM at GPA 0, the guest at 0x8000. It calls KVM_RUN in a
 * loop, checks that every exit is a 1-byte OUT to port 0x10, and times
 * <exits> round trips after a warm-up. Prints one JSON line:
 *
 *   {"exits":N,"seconds":S,"exitsPerSecond":R}
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define RAM_SIZE     (1u << 20)
#define LOAD_ADDR    0x8000u
#define BENCH_PORT   0x10
#define WARMUP_EXITS 1000

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("c-loop: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static const char *exit_name(uint32_t reason)
{
    switch (reason) {
    case KVM_EXIT_IO: return "KVM_EXIT_IO";
    case KVM_EXIT_HLT: return "KVM_EXIT_HLT";
    case KVM_EXIT_MMIO: return "KVM_EXIT_MMIO";
    case KVM_EXIT_SHUTDOWN: return "KVM_EXIT_SHUTDOWN";
    case KVM_EXIT_FAIL_ENTRY: return "KVM_EXIT_FAIL_ENTRY";
    case KVM_EXIT_INTERNAL_ERROR: return "KVM_EXIT_INTERNAL_ERROR";
    case KVM_EXIT_INTR: return "KVM_EXIT_INTR";
    default: return "unknown exit";
    }
}

/* One KVM_RUN; the exit must be OUT, port 0x10, size 1, count 1. */
static void run_one(int vcpu, struct kvm_run *run)
{
    while (ioctl(vcpu, KVM_RUN, 0) < 0) {
        if (errno == EINTR || errno == EAGAIN)
            continue;
        die("KVM_RUN failed: %s", strerror(errno));
    }
    if (run->exit_reason != KVM_EXIT_IO)
        die("unexpected exit %u (%s); expected KVM_EXIT_IO", run->exit_reason,
            exit_name(run->exit_reason));
    if (run->io.direction != KVM_EXIT_IO_OUT || run->io.port != BENCH_PORT ||
        run->io.size != 1 || run->io.count != 1)
        die("unexpected I/O exit: %s port 0x%x size %u count %u; expected out port 0x%x size 1",
            run->io.direction == KVM_EXIT_IO_OUT ? "out" : "in", run->io.port,
            run->io.size, run->io.count, BENCH_PORT);
}

static double now_seconds(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        die("clock_gettime failed: %s", strerror(errno));
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s <guest.bin> <exits>\n", argv[0]);
        return 2;
    }
    char *end;
    errno = 0;
    unsigned long long n = strtoull(argv[2], &end, 10);
    if (errno || *end || end == argv[2] || n == 0 || argv[2][0] == '-')
        die("exit count must be a positive integer, got \"%s\"", argv[2]);

    /* Guest image. */
    int gfd = open(argv[1], O_RDONLY | O_CLOEXEC);
    if (gfd < 0)
        die("cannot open guest image %s: %s (run node scripts/build-examples.js)",
            argv[1], strerror(errno));
    struct stat st;
    if (fstat(gfd, &st) != 0)
        die("cannot stat %s: %s", argv[1], strerror(errno));
    if (st.st_size <= 0 || (uint64_t)st.st_size > RAM_SIZE - LOAD_ADDR)
        die("guest image %s has size %lld; it must be 1..%u bytes", argv[1],
            (long long)st.st_size, RAM_SIZE - LOAD_ADDR);

    /* KVM. */
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0)
        die("cannot open /dev/kvm: %s (is KVM enabled, and are you root or in the kvm group?)",
            strerror(errno));
    int api = ioctl(kvm, KVM_GET_API_VERSION, 0);
    if (api != KVM_API_VERSION)
        die("KVM API version %d, expected %d", api, KVM_API_VERSION);

    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0)
        die("KVM_CREATE_VM failed: %s", strerror(errno));

    /* 1 MiB of RAM at GPA 0. */
    uint8_t *ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (ram == MAP_FAILED)
        die("mmap of guest RAM failed: %s", strerror(errno));
    struct kvm_userspace_memory_region region = {
        .slot = 0,
        .flags = 0,
        .guest_phys_addr = 0,
        .memory_size = RAM_SIZE,
        .userspace_addr = (uint64_t)(uintptr_t)ram,
    };
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0)
        die("KVM_SET_USER_MEMORY_REGION failed: %s", strerror(errno));

    size_t off = 0;
    while (off < (size_t)st.st_size) {
        ssize_t r = read(gfd, ram + LOAD_ADDR + off, (size_t)st.st_size - off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            die("cannot read guest image %s: %s", argv[1], r < 0 ? strerror(errno) : "short read");
        off += (size_t)r;
    }
    close(gfd);

    /* vCPU and its kvm_run page. */
    int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    if (vcpu < 0)
        die("KVM_CREATE_VCPU failed: %s", strerror(errno));
    int mmap_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (mmap_size < (int)sizeof(struct kvm_run))
        die("KVM_GET_VCPU_MMAP_SIZE failed: %s", mmap_size < 0 ? strerror(errno) : "too small");
    struct kvm_run *run = mmap(NULL, (size_t)mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    if (run == MAP_FAILED)
        die("mmap of kvm_run failed: %s", strerror(errno));

    /* Real mode: CS = 0 (base 0), IP = 0x8000, SP = 0x8000. */
    struct kvm_sregs sregs;
    if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0)
        die("KVM_GET_SREGS failed: %s", strerror(errno));
    sregs.cs.selector = 0;
    sregs.cs.base = 0;
    sregs.ds.selector = sregs.es.selector = sregs.ss.selector = 0;
    sregs.ds.base = sregs.es.base = sregs.ss.base = 0;
    if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0)
        die("KVM_SET_SREGS failed: %s", strerror(errno));

    struct kvm_regs regs;
    memset(&regs, 0, sizeof regs);
    regs.rip = LOAD_ADDR;
    regs.rsp = LOAD_ADDR;
    regs.rflags = 2; /* bit 1 is reserved and must be set */
    if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0)
        die("KVM_SET_REGS failed: %s", strerror(errno));

    /* Warm-up, then the timed loop. */
    for (int i = 0; i < WARMUP_EXITS; i++)
        run_one(vcpu, run);

    double t0 = now_seconds();
    for (unsigned long long i = 0; i < n; i++)
        run_one(vcpu, run);
    double t1 = now_seconds();

    double secs = t1 - t0;
    printf("{\"exits\":%llu,\"seconds\":%.6f,\"exitsPerSecond\":%.0f}\n", n, secs,
           secs > 0 ? (double)n / secs : 0.0);
    return 0;
}
