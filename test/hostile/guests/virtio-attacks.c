/*
 * virtio-attacks: a hostile virtio driver (issue 6). It finds whatever virtio
 * devices the VMM gives it (block, entropy, console, net) and runs a list of
 * attack cases against each, one after the other in the same VM. Each case
 * prints one line on the debug console:
 *
 *   CASE <device>.<case> <outcome> next=<ok|ok-after-reset|FAIL>
 *
 * <outcome> is what the device did with the bad request:
 *   needs-reset            the device status has DEVICE_NEEDS_RESET (0x40)
 *   used=<len> status=<s>  a used element came back with that length; the
 *                          block status byte (status=none: not written)
 *   used=none              nothing came back (the request was ignored)
 * plus case-specific values (register reads). `next` is the NEXT GOOD
 * REQUEST after the attack: served as is (ok), served after the device reset
 * that the spec requires after NEEDS_RESET / FAILED (ok-after-reset), or not
 * served (FAIL). The host test (test/hostile/virtio-attacks.test.ts) asserts
 * every line exactly.
 *
 * The disk the host gives us: sector n starts with the ASCII "sect%04d".
 * Disk 0 is read-write, disk 1 (if any) read-only.
 */
#include "virtio-guest.h"

/* Guest-physical layout (8 MiB of RAM). */
#define BLK_QMEM 0x100000ul
#define RO_QMEM 0x110000ul
#define RNG_QMEM 0x120000ul
#define CON_RXMEM 0x130000ul
#define CON_TXMEM 0x134000ul
#define NET_RXMEM 0x140000ul
#define NET_TXMEM 0x144000ul
#define HDR 0x200000ul     /* request header */
#define DATA 0x201000ul    /* data buffers (up to 4 MiB) */
#define STATUSB 0x1f0000ul /* the block status byte */
#define IND 0x1e0000ul     /* indirect tables */

#define BLK_QSIZE 16
#define BLK_FEATURES (F_VERSION_1 | F_INDIRECT | (1ul << 2) | (1ul << 5) | (1ul << 6) | (1ul << 9))

#define STATUS_BYTE (*(volatile u8 *)STATUSB)

/* ---- results ------------------------------------------------------------------ */

static struct {
  int got;   /* used elements seen */
  u32 len;   /* length of the last one */
  u8 dev;    /* device status after the request */
} r;

static void collect(struct vq *q) {
  u32 len;
  r.got = 0;
  host_sync(); /* the notify may have been a raw write, not vq_kick */
  while (vq_poll(q, &len) >= 0) r.got++, r.len = len;
  r.dev = vstatus(q->d);
}
static void submit(struct vq *q, u16 head) {
  vq_post(q, head);
  vq_kick(q);
  collect(q);
}
static void case_start(const char *dev, const char *name) {
  puts_("CASE ");
  puts_(dev);
  putc_('.');
  puts_(name);
}
static void print_outcome(int with_status) {
  if (r.dev & S_NEEDS_RESET) puts_(" needs-reset");
  if (!r.got) {
    if (!(r.dev & S_NEEDS_RESET)) puts_(" used=none");
    return;
  }
  puts_(" used=");
  putdec(r.len);
  if (r.got > 1) {
    puts_(" n=");
    putdec(r.got);
  }
  if (with_status) {
    puts_(" status=");
    if (STATUS_BYTE == 0xee) puts_("none");
    else putdec(STATUS_BYTE);
  }
}
static void kv(const char *key, u64 value) {
  putc_(' ');
  puts_(key);
  putc_('=');
  puthex(value);
}

/* ---- block ---------------------------------------------------------------------- */

static struct vdev blk;
static struct vq bq;
static u64 capacity;

static int blk_init(struct vdev *d, struct vq *q, u64 mem) {
  if (vnegotiate(d, BLK_FEATURES)) return -1;
  if (vq_setup(q, d, 0, BLK_QSIZE, mem)) return -1;
  vdriver_ok(d);
  return (vstatus(d) & S_DRIVER_OK) ? 0 : -1;
}

static void blk_hdr(u32 type, u64 sector) {
  *(volatile u32 *)HDR = type;
  *(volatile u32 *)(HDR + 4) = 0;
  *(volatile u64 *)(HDR + 8) = sector;
  STATUS_BYTE = 0xee;
}
/* The usual chain in descriptors 0, 1, 2: header, data (if len), status. */
static void blk_chain(struct vq *q, u32 type, u64 sector, u64 data, u32 len, int in) {
  blk_hdr(type, sector);
  if (len) {
    vq_set(q, 0, HDR, 16, D_NEXT, 1);
    vq_set(q, 1, data, len, D_NEXT | (in ? D_WRITE : 0), 2);
  } else {
    vq_set(q, 0, HDR, 16, D_NEXT, 2);
  }
  vq_set(q, 2, STATUSB, 1, D_WRITE, 0);
}
static void blk_req(struct vq *q, u32 type, u64 sector, u64 data, u32 len, int in) {
  blk_chain(q, type, sector, data, len, in);
  submit(q, 0);
}

static char expect[9] = "sect0000";
static void sector_name(u64 n) {
  for (int i = 7; i >= 4; i--, n /= 10) expect[i] = (char)('0' + n % 10);
}

/* The good request: read sector 5 and check its contents. */
static int blk_good(struct vq *q) {
  memset((void *)DATA, 0, 16);
  blk_req(q, 0, 5, DATA, 512, 1);
  sector_name(5);
  return r.got == 1 && r.len == 513 && STATUS_BYTE == 0 && memeq((void *)DATA, expect, 8) && !(vstatus(q->d) & S_NEEDS_RESET);
}

/*
 * Ends a case: tries the good request on the device as it is, unless it is in
 * NEEDS_RESET / FAILED / not DRIVER_OK, in which case it resets and
 * re-initializes it first, as §2.1.2 asks of a driver.
 */
static void next_check(struct vdev *d, struct vq *q, u64 mem) {
  u8 s = vstatus(d);
  if ((s & (S_NEEDS_RESET | S_FAILED)) || !(s & S_DRIVER_OK)) {
    int ok = blk_init(d, q, mem) == 0 && blk_good(q);
    puts_(ok ? " next=ok-after-reset\n" : " next=FAIL\n");
  } else {
    puts_(blk_good(q) ? " next=ok\n" : " next=FAIL\n");
  }
}
/* Most cases: a fresh device, one chain at head 0, the outcome, the good request. */
#define BLK_CASE(name, build)            \
  do {                                   \
    blk_init(&blk, &bq, BLK_QMEM);       \
    case_start("blk", name);             \
    build;                               \
    submit(&bq, 0);                      \
    print_outcome(1);                    \
    next_check(&blk, &bq, BLK_QMEM);     \
  } while (0)

static void blk_queue_cases(void) {
  struct vq *q = &bq;
  u64 bar = blk.bar;

  BLK_CASE("baseline", blk_chain(q, 0, 5, DATA, 512, 1));

  /* Descriptor loops (§2.7.5.2: "MUST NOT create a descriptor chain ... loop"). */
  BLK_CASE("loop-self", vq_set(q, 0, HDR, 16, D_NEXT, 0));
  BLK_CASE("loop-two", (blk_hdr(0, 0), vq_set(q, 0, HDR, 16, D_NEXT, 1), vq_set(q, 1, DATA, 512, D_NEXT, 0)));
  BLK_CASE("loop-whole-table", ({
             blk_hdr(1, 0);
             vq_set(q, 0, HDR, 16, D_NEXT, 1);
             for (u16 i = 1; i < BLK_QSIZE; i++) vq_set(q, i, DATA, 512, D_NEXT, (u16)((i + 1) % BLK_QSIZE));
           }));
  /* A chain exactly as long as the queue is legal (§2.7.5.3.1): header, 14 data, status. */
  BLK_CASE("chain-equal-queue-size", ({
             blk_hdr(1, 10);
             vq_set(q, 0, HDR, 16, D_NEXT, 1);
             for (u16 i = 1; i < 15; i++) vq_set(q, i, DATA + 512 * (i - 1), 512, D_NEXT, (u16)(i + 1));
             vq_set(q, 15, STATUSB, 1, D_WRITE, 0);
           }));
  /* Loop inside an indirect table (§2.7.5.3.1). */
  BLK_CASE("loop-indirect", ({
             struct desc *t = (struct desc *)IND;
             blk_hdr(0, 0);
             t[0] = (struct desc){HDR, 16, D_NEXT, 1};
             t[1] = (struct desc){DATA, 512, D_NEXT, 0};
             t[2] = (struct desc){STATUSB, 1, D_WRITE, 0};
             vq_set(q, 0, IND, 3 * 16, D_INDIRECT, 0);
           }));
  /* An indirect table longer than the queue: tolerated (Linux does it), bounded by 32768. */
  BLK_CASE("indirect-longer-than-queue", ({
             struct desc *t = (struct desc *)IND;
             blk_hdr(1, 20);
             t[0] = (struct desc){HDR, 16, D_NEXT, 1};
             for (u16 i = 1; i < 31; i++) t[i] = (struct desc){DATA + 512 * (i - 1), 512, D_NEXT, (u16)(i + 1)};
             t[31] = (struct desc){STATUSB, 1, D_WRITE, 0};
             vq_set(q, 0, IND, 32 * 16, D_INDIRECT, 0);
           }));
  BLK_CASE("indirect-with-next", ({
             struct desc *t = (struct desc *)IND;
             blk_hdr(0, 0);
             t[0] = (struct desc){HDR, 16, D_NEXT, 1};
             t[1] = (struct desc){STATUSB, 1, D_WRITE, 0};
             vq_set(q, 0, IND, 2 * 16, D_INDIRECT | D_NEXT, 1);
             vq_set(q, 1, STATUSB, 1, D_WRITE, 0);
           }));
  BLK_CASE("indirect-nested", ({
             struct desc *t = (struct desc *)IND;
             blk_hdr(0, 0);
             t[0] = (struct desc){IND + 0x100, 32, D_INDIRECT, 0};
             vq_set(q, 0, IND, 16, D_INDIRECT, 0);
           }));
  BLK_CASE("indirect-len-24", (blk_hdr(0, 0), vq_set(q, 0, IND, 24, D_INDIRECT, 0)));
  BLK_CASE("indirect-len-0", (blk_hdr(0, 0), vq_set(q, 0, IND, 0, D_INDIRECT, 0)));
  BLK_CASE("indirect-past-ram", vq_set(q, 0, GUEST_RAM - 16, 32, D_INDIRECT, 0));
  BLK_CASE("indirect-wraps", vq_set(q, 0, 0xfffffffffffffff0ul, 32, D_INDIRECT, 0));
  BLK_CASE("indirect-next-out-of-range", ({
             struct desc *t = (struct desc *)IND;
             blk_hdr(0, 0);
             t[0] = (struct desc){HDR, 16, D_NEXT, 7};
             t[1] = (struct desc){STATUSB, 1, D_WRITE, 0};
             vq_set(q, 0, IND, 2 * 16, D_INDIRECT, 0);
           }));

  /* Indices out of range (§2.7.6: ring entries are heads < queue size; §2.7.5: next < size). */
  BLK_CASE("next-out-of-range", (blk_chain(q, 0, 0, DATA, 512, 1), q->desc[1].next = BLK_QSIZE));
  BLK_CASE("next-0xffff", (blk_chain(q, 0, 0, DATA, 512, 1), q->desc[0].next = 0xffff));
  {
    blk_init(&blk, q, BLK_QMEM);
    case_start("blk", "head-out-of-range");
    blk_chain(q, 0, 5, DATA, 512, 1);
    submit(q, BLK_QSIZE);
    print_outcome(1);
    next_check(&blk, q, BLK_QMEM);
    blk_init(&blk, q, BLK_QMEM);
    case_start("blk", "head-0xffff");
    submit(q, 0xffff);
    print_outcome(1);
    next_check(&blk, q, BLK_QMEM);
  }
  /* avail.idx moving by more than the queue size (§2.7.6.1, §2.7.13): forward, and backwards. */
  {
    blk_init(&blk, q, BLK_QMEM);
    case_start("blk", "avail-idx-jump");
    blk_chain(q, 0, 5, DATA, 512, 1);
    q->avail[2] = 0;
    q->avail[1] = BLK_QSIZE + 1;
    vq_kick(q);
    collect(q);
    print_outcome(1);
    next_check(&blk, q, BLK_QMEM);
    blk_init(&blk, q, BLK_QMEM);
    case_start("blk", "avail-idx-backwards");
    q->avail[1] = 0xffff;
    vq_kick(q);
    collect(q);
    print_outcome(1);
    next_check(&blk, q, BLK_QMEM);
  }

  /* Buffer addresses (§2.7.5: addr is a guest physical address of a buffer). */
  BLK_CASE("addr-past-ram", blk_chain(q, 0, 5, GUEST_RAM, 512, 1));
  BLK_CASE("addr-straddles-ram-end", blk_chain(q, 0, 5, GUEST_RAM - 256, 512, 1));
  BLK_CASE("addr-wraps-2^64", blk_chain(q, 0, 5, 0xfffffffffffffe00ul, 0x400, 1));
  BLK_CASE("addr-ends-at-2^64", blk_chain(q, 0, 5, 0xfffffffffffffe00ul, 0x200, 1));
  BLK_CASE("addr-own-bar", blk_chain(q, 0, 5, bar, 512, 1));
  BLK_CASE("addr-lapic", blk_chain(q, 0, 5, 0xfee00000ul, 512, 1));
  BLK_CASE("addr-pci-hole", blk_chain(q, 0, 5, 0xc0000000ul, 512, 1));
  BLK_CASE("header-in-bar", (blk_chain(q, 0, 5, DATA, 512, 1), q->desc[0].addr = bar));
  BLK_CASE("status-past-ram", (blk_chain(q, 0, 5, DATA, 512, 1), q->desc[2].addr = GUEST_RAM + 0x1000));
  /* The device's writes aimed at the rings themselves: all guest RAM, so served. */
  BLK_CASE("dma-into-desc-table", blk_chain(q, 0, 1, BLK_QMEM, 512, 1));
  BLK_CASE("dma-into-avail-ring", blk_chain(q, 0, 2, BLK_QMEM + 0x1000, 512, 1));
  BLK_CASE("dma-into-used-ring", blk_chain(q, 0, 3, BLK_QMEM + 0x2000, 512, 1));
  /* Huge lengths (§2.7.5.2 bounds a chain at 2^32 bytes). */
  BLK_CASE("len-4GiB-1", blk_chain(q, 0, 5, DATA, 0xffffffffu, 1));
  BLK_CASE("len-4MiB-in-ram", blk_chain(q, 0, 0, DATA, 0x400000, 1));
  /* Aliasing: the data buffer of a write is its own header; a read whose data overlaps the status byte. */
  BLK_CASE("aliased-header-is-data", (blk_chain(q, 1, 40, HDR, 512, 0), q->desc[1].addr = HDR));
  BLK_CASE("aliased-data-over-status", blk_chain(q, 0, 6, STATUSB - 256, 512, 1));
  /* The same head made available twice before it was used (§2.7.13.2). */
  {
    blk_init(&blk, q, BLK_QMEM);
    case_start("blk", "same-head-twice");
    blk_chain(q, 0, 5, DATA, 512, 1);
    vq_post(q, 0);
    vq_post(q, 0);
    vq_kick(q);
    collect(q);
    print_outcome(1);
    next_check(&blk, q, BLK_QMEM);
  }
  /* Shape (§2.7.4.2: writable after readable; §5.2.6: header first, status last). */
  BLK_CASE("readable-after-writable", ({
             blk_hdr(0, 5);
             vq_set(q, 0, HDR, 16, D_NEXT, 1);
             vq_set(q, 1, STATUSB, 1, D_WRITE | D_NEXT, 2);
             vq_set(q, 2, DATA, 512, 0, 0);
           }));
  BLK_CASE("short-header", (blk_chain(q, 0, 5, DATA, 512, 1), q->desc[0].len = 8));
  BLK_CASE("no-status-byte", (blk_chain(q, 1, 5, DATA, 512, 0), q->desc[1].flags = 0));
  BLK_CASE("zero-length-data", (blk_chain(q, 0, 5, DATA, 512, 1), q->desc[1].len = 0));
}

static void blk_request_cases(void) {
  struct vq *q = &bq;
  /* Sectors at and after capacity (§5.2.6.2: IOERR); lengths not a multiple of 512 (§5.2.6.1). */
  BLK_CASE("read-last-sector", blk_chain(q, 0, capacity - 1, DATA, 512, 1));
  BLK_CASE("read-at-capacity", blk_chain(q, 0, capacity, DATA, 512, 1));
  BLK_CASE("read-across-end", blk_chain(q, 0, capacity - 1, DATA, 1024, 1));
  BLK_CASE("read-sector-2^64-1", blk_chain(q, 0, 0xfffffffffffffffful, DATA, 512, 1));
  BLK_CASE("write-at-capacity", blk_chain(q, 1, capacity, DATA, 512, 0));
  BLK_CASE("write-sector-2^63", blk_chain(q, 1, 1ul << 63, DATA, 512, 0));
  BLK_CASE("read-100-bytes", blk_chain(q, 0, 5, DATA, 100, 1));
  BLK_CASE("type-0xff", blk_chain(q, 0xff, 0, DATA, 512, 1));
  BLK_CASE("type-discard", blk_chain(q, 11, 0, DATA, 512, 0));
  BLK_CASE("get-id", blk_chain(q, 8, 0, DATA, 20, 1));
  BLK_CASE("flush", blk_chain(q, 4, 0, 0, 0, 0));
}

/* Geometry changed after DRIVER_OK is ignored (§4.1.4.3.2: configure before enabling). */
static void blk_geometry_cases(void) {
  struct vq *q = &bq;
  u64 c = blk.common;
  blk_init(&blk, q, BLK_QMEM);
  case_start("blk", "resize-after-driver-ok");
  wr16(c + C_QSELECT, 0);
  wr16(c + C_QSIZE, 0);
  wr16(c + C_QSIZE, 3);
  wr16(c + C_QSIZE, 0x8000);
  wr32(c + C_QDESC, 0xfffff000u);
  wr16(c + C_QENABLE, 0);
  kv("size", rd16(c + C_QSIZE));
  kv("desc", rd32(c + C_QDESC));
  kv("enable", rd16(c + C_QENABLE));
  next_check(&blk, q, BLK_QMEM);

  /* Bad geometry at queue_enable: the device refuses the queue with NEEDS_RESET. */
  static const struct {
    const char *name;
    u16 size;
    u32 field;
    u32 value;
  } bad[] = {
      {"enable-size-0", 0xffff, 0, 0},          /* size 0 */
      {"enable-size-3", 3, 0, 0},
      {"enable-size-512", 512, 0, 0},          /* above the maximum, 256 */
      {"enable-desc-past-ram", BLK_QSIZE, C_QDESC, (u32)GUEST_RAM},
      {"enable-desc-misaligned", BLK_QSIZE, C_QDESC, (u32)BLK_QMEM + 8},
      {"enable-used-overlaps-desc", BLK_QSIZE, C_QDEVICE, (u32)BLK_QMEM},
      {"enable-used-in-bar", BLK_QSIZE, C_QDEVICE, 0xe0000000u},
  };
  for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    case_start("blk", bad[i].name);
    vnegotiate(&blk, BLK_FEATURES);
    vq_program(q, &blk, 0, bad[i].size == 0xffff ? BLK_QSIZE : bad[i].size, BLK_QMEM);
    if (bad[i].size == 0xffff) wr16(c + C_QSIZE, 0);
    if (bad[i].field) wr32(c + bad[i].field, bad[i].value);
    wr16(c + C_QENABLE, 1);
    kv("enable", rd16(c + C_QENABLE));
    r.got = 0;
    r.dev = vstatus(&blk);
    print_outcome(0);
    next_check(&blk, q, BLK_QMEM);
  }

  /* queue_select out of range: size reads 0, writes go nowhere; a notify for a missing queue is ignored. */
  blk_init(&blk, q, BLK_QMEM);
  case_start("blk", "queue-select-out-of-range");
  wr16(c + C_QSELECT, 0x1234);
  kv("size", rd16(c + C_QSIZE));
  wr16(c + C_QSIZE, 8);
  wr32(c + C_QDESC, 0x1000);
  wr16(c + C_QENABLE, 1);
  kv("enable", rd16(c + C_QENABLE));
  wr16(c + C_QSELECT, 1);
  kv("q1size", rd16(c + C_QSIZE));
  wr16(blk.notify + 5 * blk.notify_mult, 5);
  wr16(blk.notify + 0xffc, 0x3ff);
  wr16(c + C_QSELECT, 0);
  kv("q0size", rd16(c + C_QSIZE));
  next_check(&blk, q, BLK_QMEM);
}

/* Status-machine abuse (§2.1, §3.1.1). */
static void blk_status_cases(void) {
  struct vq *q = &bq;
  u64 c = blk.common;
  u64 offered = vfeatures(&blk);

  /* A kick before DRIVER_OK is ignored; DRIVER_OK then serves what was made available. */
  case_start("blk", "kick-before-driver-ok");
  vnegotiate(&blk, BLK_FEATURES);
  vq_setup(q, &blk, 0, BLK_QSIZE, BLK_QMEM);
  blk_chain(q, 0, 5, DATA, 512, 1);
  submit(q, 0);
  print_outcome(1);
  vdriver_ok(&blk);
  collect(q);
  puts_(" then");
  print_outcome(1);
  next_check(&blk, q, BLK_QMEM);

  case_start("blk", "driver-ok-without-features-ok");
  vreset(&blk);
  vset(&blk, S_ACK | S_DRIVER);
  vset(&blk, S_ACK | S_DRIVER | S_DRIVER_OK);
  kv("status", vstatus(&blk));
  next_check(&blk, q, BLK_QMEM);

  case_start("blk", "queue-enable-before-features-ok");
  vreset(&blk);
  vset(&blk, S_ACK | S_DRIVER);
  vq_setup(q, &blk, 0, BLK_QSIZE, BLK_QMEM);
  r.got = 0;
  r.dev = vstatus(&blk);
  print_outcome(0);
  next_check(&blk, q, BLK_QMEM);

  case_start("blk", "features-without-version-1");
  kv("status", vnegotiate_raw(&blk, offered & ~F_VERSION_1));
  next_check(&blk, q, BLK_QMEM);

  case_start("blk", "features-not-offered");
  kv("status", vnegotiate_raw(&blk, F_VERSION_1 | 1ul /* VIRTIO_BLK_F_BARRIER, legacy */ | (1ul << 63)));
  next_check(&blk, q, BLK_QMEM);

  case_start("blk", "features-changed-after-features-ok");
  vnegotiate(&blk, BLK_FEATURES);
  wr32(c + C_GFSELECT, 1);
  wr32(c + C_GF, 0);
  kv("driver-features-hi", rd32(c + C_GF));
  vq_setup(q, &blk, 0, BLK_QSIZE, BLK_QMEM);
  vdriver_ok(&blk);
  next_check(&blk, q, BLK_QMEM);

  /* Reset with a request made available (not yet notified): it is never served. */
  blk_init(&blk, q, BLK_QMEM);
  case_start("blk", "reset-with-request-pending");
  blk_chain(q, 0, 5, DATA, 512, 1);
  vq_post(q, 0);
  vreset(&blk);
  vq_kick(q); /* after the reset: ignored */
  collect(q);
  kv("status", r.dev);
  print_outcome(1);
  next_check(&blk, q, BLK_QMEM);

  blk_init(&blk, q, BLK_QMEM);
  case_start("blk", "status-bits-cleared");
  vset(&blk, S_ACK);
  kv("status", vstatus(&blk));
  next_check(&blk, q, BLK_QMEM);

  blk_init(&blk, q, BLK_QMEM);
  case_start("blk", "driver-sets-needs-reset");
  vset(&blk, vstatus(&blk) | S_NEEDS_RESET | 0x30);
  kv("status", vstatus(&blk));
  next_check(&blk, q, BLK_QMEM);

  blk_init(&blk, q, BLK_QMEM);
  case_start("blk", "kick-after-failed");
  vset(&blk, vstatus(&blk) | S_FAILED);
  blk_chain(q, 0, 5, DATA, 512, 1);
  submit(q, 0);
  kv("status", r.dev);
  print_outcome(1);
  next_check(&blk, q, BLK_QMEM);
}

/* Register accesses of every width, unaligned, and past the ends (§4.1.3.1). */
static void blk_mmio_cases(void) {
  struct vq *q = &bq;
  u64 c = blk.common, dc = blk.devcfg;

  blk_init(&blk, q, BLK_QMEM);
  case_start("blk", "mmio-widths");
  wr32(c + C_DFSELECT, 0);
  kv("rd64-features", rd64(c + C_DFSELECT)); /* select (0) in the low half, feature word 0 above */
  kv("rd8-numq-hi", rd8(c + C_NUMQ + 1));
  kv("rd16-0x17", rd16(c + 0x17));           /* queue_select's high byte + queue_size's low byte */
  kv("rd32-0x13", rd32(c + 0x13));           /* num_queues hi, status, generation, queue_select lo */
  kv("rd64-capacity", rd64(dc));
  kv("rd32-cfg+0x13", rd32(dc + 0x13));       /* geometry.sectors + 3 bytes of blk_size */
  kv("rd8-notify", rd8(blk.notify));
  (void)rd8(blk.isr);                        /* clear the ISR */
  wr8(blk.isr, 0xff);                        /* read-only */
  kv("isr", rd8(blk.isr));
  kv("rd64-page-cross", rd64(blk.bar + 0xffc)); /* common page end + the ISR byte */
  kv("rd32-bar-end", rd32(blk.bar + blk.bar_size - 2));
  kv("rd32-past-bar", rd32(blk.bar + blk.bar_size));
  next_check(&blk, q, BLK_QMEM);

  case_start("blk", "mmio-narrow-writes");
  vreset(&blk);
  wr16(c + C_STATUS, 0xff01); /* status = ACK; the generation byte is read-only */
  kv("status", vstatus(&blk));
  vset(&blk, S_ACK | S_DRIVER);
  wr64(c + C_GFSELECT, ((vfeatures(&blk) & BLK_FEATURES & 0xffffffff) << 32) | 0); /* select 0 and word 0 at once */
  wr8(c + C_GFSELECT, 1);
  wr8(c + C_GF, 1);                   /* VERSION_1, a byte at a time */
  vset(&blk, S_ACK | S_DRIVER | S_FEATURES_OK);
  kv("status", vstatus(&blk));
  wr16(c + C_QSELECT, 0);
  wr8(c + C_QSIZE, BLK_QSIZE);
  wr8(c + C_QSIZE + 1, 0);
  vq_program(q, &blk, 0, BLK_QSIZE, BLK_QMEM);
  wr64(c + C_QDESC, BLK_QMEM);        /* 8-byte writes of the 64-bit fields */
  wr64(c + C_QDRIVER, BLK_QMEM + 0x1000);
  wr64(c + 0x2e, 0);                  /* unaligned: queue_driver's top half + queue_device's low half, then fixed */
  wr32(c + C_QDEVICE, (u32)BLK_QMEM + 0x2000);
  wr32(c + C_QDRIVER + 4, 0);
  kv("desc", rd64(c + C_QDESC));
  kv("driver", rd64(c + C_QDRIVER));
  kv("device", rd64(c + C_QDEVICE));
  wr8(c + C_QENABLE, 1);
  vdriver_ok(&blk);
  kv("status", vstatus(&blk));
  /* A notify of any width anywhere in the queue's 4 bytes. */
  blk_chain(q, 0, 5, DATA, 512, 1);
  vq_post(q, 0);
  wr8(blk.notify + 3, 0xaa);
  collect(q);
  print_outcome(1);
  next_check(&blk, q, BLK_QMEM);

  /* Device configuration read and written past its end (§4.1.4.6). */
  case_start("blk", "devcfg-past-end");
  kv("len", blk.devcfg_len);
  kv("rd32-0x3a", rd32(dc + 0x3a));
  kv("rd32-0x100", rd32(dc + 0x100));
  kv("rd8-0xfff", rd8(dc + 0xfff));
  wr32(dc + 0x100, 0xffffffffu);
  wr64(dc + 0x38, ~0ul);
  wr64(dc, 0x1234);                   /* capacity is read-only */
  kv("capacity", rd64(dc));
  next_check(&blk, q, BLK_QMEM);

  /* The PCI_CFG access window (§4.1.4.9) with a length and offset a driver must not use. */
  if (blk.pcicfg) {
    int p = blk.pcicfg, s = blk.slot;
    case_start("blk", "pci-cfg-window");
    pci_write32(s, p + 4, 4);          /* bar 4 */
    pci_write32(s, p + 8, C_STATUS);   /* offset */
    pci_write32(s, p + 12, 1);         /* length */
    kv("status", pci_read8(s, p + 16));
    pci_write32(s, p + 16, 0x5a5a5a5a);
    pci_write32(s, p + 12, 3);         /* length 3: nothing happens */
    pci_write32(s, p + 8, C_QSELECT);
    pci_write32(s, p + 16, 0x11111111);
    kv("len3-data", pci_read32(s, p + 16));
    kv("queue-select", rd16(blk.common + C_QSELECT));
    pci_write32(s, p + 12, 4);
    pci_write32(s, p + 8, 0x3ffe);     /* past the BAR */
    kv("past-bar-data", pci_read32(s, p + 16));
    pci_write32(s, p + 4, 0);          /* bar 0 */
    pci_write32(s, p + 8, 0);
    kv("bar0-data", pci_read32(s, p + 16));
    next_check(&blk, q, BLK_QMEM);
  }
}

/*
 * The BAR moved where it must not go (PCI 3.0 §6.2.5.1 lets software put a BAR
 * anywhere; the VMM must cope): on top of RAM, above 4 GiB, and decoding off.
 * Each time it then goes back to its place and the device must work as before.
 */
static void blk_bar_cases(void) {
  struct vq *q = &bq;
  int s = blk.slot;
  u32 bar = (u32)blk.bar;

  blk_init(&blk, q, BLK_QMEM);
  case_start("blk", "bar-over-ram");
  *(volatile u32 *)(DATA + 0x14) = 0x5a5a5a5a;
  pci_write32(s, 0x20, (u32)DATA); /* RAM wins: the "register" reads what RAM holds */
  kv("read", rd32(DATA + 0x14));
  pci_write32(s, 0x20, bar);
  kv("status", vstatus(&blk));
  next_check(&blk, q, BLK_QMEM);

  case_start("blk", "bar-above-4g");
  pci_write32(s, 0x24, 1); /* BAR 4/5 = 0x1_xxxxxxxx: beyond our page tables, but the VMM must map or refuse it */
  kv("old-place", rd32(blk.common + C_NUMQ) & 0xffff);
  pci_write32(s, 0x24, 0);
  next_check(&blk, q, BLK_QMEM);

  case_start("blk", "decode-off");
  pci_write16(s, 0x04, 0x0004); /* bus master only: no memory decoding */
  kv("status", rd8(blk.common + C_STATUS));
  wr8(blk.common + C_STATUS, 0); /* goes nowhere: no reset */
  pci_write16(s, 0x04, 0x0006);
  kv("status-after", vstatus(&blk));
  next_check(&blk, q, BLK_QMEM);
}

/* ---- read-only disk (§5.2.6.2) ---------------------------------------------------- */

static void ro_cases(struct vdev *d) {
  struct vq q;
  case_start("ro", "features");
  kv("ro", (vfeatures(d) >> 5) & 1);
  puts_("\n");
#define RO_CASE(name, type, sector, len, in)          \
  do {                                                \
    blk_init(d, &q, RO_QMEM);                          \
    case_start("ro", name);                           \
    blk_req(&q, type, sector, DATA, len, in);         \
    print_outcome(1);                                 \
    next_check(d, &q, RO_QMEM);                       \
  } while (0)
  memset((void *)DATA, 0x77, 1024);
  RO_CASE("write", 1, 1, 512, 0);
  RO_CASE("write-past-end", 1, capacity, 512, 0);
  RO_CASE("flush", 4, 0, 0, 0);
  RO_CASE("read", 0, 1, 512, 1);
}

/* ---- entropy (§5.4) -------------------------------------------------------------------- */

static void rng_cases(struct vdev *d) {
  struct vq q;
#define RNG_CASE(name, build)                                        \
  do {                                                               \
    vnegotiate(d, F_VERSION_1 | F_INDIRECT);                         \
    vq_setup(&q, d, 0, 8, RNG_QMEM);                                 \
    vdriver_ok(d);                                                   \
    case_start("rng", name);                                         \
    build;                                                           \
    submit(&q, 0);                                                   \
    print_outcome(0);                                                \
    if (vstatus(d) & S_NEEDS_RESET) {                                \
      vnegotiate(d, F_VERSION_1);                                    \
      vq_setup(&q, d, 0, 8, RNG_QMEM);                               \
      vdriver_ok(d);                                                 \
      puts_(" reset");                                               \
    }                                                                \
    vq_set(&q, 0, DATA, 16, D_WRITE, 0);                             \
    submit(&q, 0);                                                   \
    puts_(r.got == 1 && r.len == 16 ? " next=ok\n" : " next=FAIL\n"); \
  } while (0)
  RNG_CASE("good", vq_set(&q, 0, DATA, 32, D_WRITE, 0));
  RNG_CASE("readable-buffer", vq_set(&q, 0, DATA, 32, 0, 0));
  RNG_CASE("zero-length", vq_set(&q, 0, DATA, 0, D_WRITE, 0));
  RNG_CASE("1MiB", vq_set(&q, 0, DATA, 0x100000, D_WRITE, 0));
  RNG_CASE("past-ram", vq_set(&q, 0, GUEST_RAM - 8, 16, D_WRITE, 0));
  RNG_CASE("loop", vq_set(&q, 0, DATA, 16, D_WRITE | D_NEXT, 0));
}

/* ---- console (§5.3) ----------------------------------------------------------------------- */

static void con_cases(struct vdev *d) {
  struct vq rx, tx;
  static const char msg[] = "virtio-console says hi\n";
#define CON_CASE(name, build)                                              \
  do {                                                                     \
    vnegotiate(d, F_VERSION_1);                                            \
    vq_setup(&rx, d, 0, 8, CON_RXMEM);                                     \
    vq_setup(&tx, d, 1, 8, CON_TXMEM);                                     \
    vdriver_ok(d);                                                         \
    case_start("con", name);                                               \
    build;                                                                 \
    submit(&tx, 0);                                                        \
    print_outcome(0);                                                      \
    if (vstatus(d) & S_NEEDS_RESET) {                                      \
      vnegotiate(d, F_VERSION_1);                                          \
      vq_setup(&rx, d, 0, 8, CON_RXMEM);                                   \
      vq_setup(&tx, d, 1, 8, CON_TXMEM);                                   \
      vdriver_ok(d);                                                       \
      puts_(" reset");                                                     \
    }                                                                      \
    memcpy((void *)DATA, msg, sizeof msg - 1);                             \
    vq_set(&tx, 0, DATA, sizeof msg - 1, 0, 0);                            \
    submit(&tx, 0);                                                        \
    puts_(r.got == 1 && r.len == 0 ? " next=ok\n" : " next=FAIL\n");       \
  } while (0)
  CON_CASE("tx-past-ram", vq_set(&tx, 0, GUEST_RAM, 64, 0, 0));
  CON_CASE("tx-writable", vq_set(&tx, 0, DATA, 64, D_WRITE, 0));
  CON_CASE("tx-next-out-of-range", (vq_set(&tx, 0, DATA, 4, 0, 0), tx.desc[0].flags = D_NEXT, tx.desc[0].next = 8));
}

/* ---- net (§5.1) ----------------------------------------------------------------------------- */

static void net_cases(struct vdev *d) {
  struct vq rx, tx;
  u8 mac[6];
  for (int i = 0; i < 6; i++) mac[i] = rd8(d->devcfg + i);
  /* A good frame: virtio_net_hdr (12 bytes, zero), broadcast, our MAC, EtherType 0x88B5 (local experimental). */
  u8 *f = (u8 *)DATA;
  memset(f, 0, 0x12000);
  memset(f + 12, 0xff, 6);
  memcpy(f + 18, mac, 6);
  f[24] = 0x88;
  f[25] = 0xb5;
  memcpy(f + 26, "tskvm hostile guest", 19);
#define NET_CASE(name, build)                                            \
  do {                                                                   \
    vnegotiate(d, F_VERSION_1 | (1ul << 5) | (1ul << 3));                \
    vq_setup(&rx, d, 0, 8, NET_RXMEM);                                   \
    vq_setup(&tx, d, 1, 8, NET_TXMEM);                                   \
    vdriver_ok(d);                                                       \
    case_start("net", name);                                             \
    build;                                                               \
    submit(&tx, 0);                                                      \
    print_outcome(0);                                                    \
    if (vstatus(d) & S_NEEDS_RESET) {                                    \
      vnegotiate(d, F_VERSION_1 | (1ul << 5));                           \
      vq_setup(&rx, d, 0, 8, NET_RXMEM);                                 \
      vq_setup(&tx, d, 1, 8, NET_TXMEM);                                 \
      vdriver_ok(d);                                                     \
      puts_(" reset");                                                   \
    }                                                                    \
    vq_set(&tx, 0, DATA, 12 + 60, 0, 0);                                 \
    submit(&tx, 0);                                                      \
    puts_(r.got == 1 && r.len == 0 ? " next=ok\n" : " next=FAIL\n");     \
  } while (0)
  NET_CASE("tx-good", vq_set(&tx, 0, DATA, 12 + 60, 0, 0));
  NET_CASE("tx-1518", vq_set(&tx, 0, DATA, 12 + 1518, 0, 0));     /* the largest frame: MTU 1500 + 18 */
  NET_CASE("tx-1519", vq_set(&tx, 0, DATA, 12 + 1519, 0, 0));     /* one byte too many */
  NET_CASE("tx-64KiB", vq_set(&tx, 0, DATA, 12 + 0x10000, 0, 0));
  NET_CASE("tx-13-bytes", vq_set(&tx, 0, DATA, 12 + 13, 0, 0));    /* shorter than an Ethernet header */
  NET_CASE("tx-header-only", vq_set(&tx, 0, DATA, 12, 0, 0));
  NET_CASE("tx-empty", vq_set(&tx, 0, DATA, 0, 0, 0));
  NET_CASE("tx-split-header", (vq_set(&tx, 0, DATA, 5, D_NEXT, 1), vq_set(&tx, 1, DATA + 5, 12 + 60 - 5, 0, 0)));
  NET_CASE("tx-writable", vq_set(&tx, 0, DATA, 12 + 60, D_WRITE, 0));
  NET_CASE("tx-past-ram", vq_set(&tx, 0, GUEST_RAM - 32, 12 + 60, 0, 0));
  NET_CASE("tx-len-4GiB-1", vq_set(&tx, 0, DATA, 0xffffffffu, 0, 0));
  NET_CASE("tx-loop", vq_set(&tx, 0, DATA, 12 + 60, D_NEXT, 0));

  /*
   * receiveq buffers the device cannot use. The guest posts one buffer and
   * prints "RXREQ"; the host test answers by handing the device a 60-byte
   * frame (SyncMachine.netReceive) while the guest's port write is being
   * served. Then a good 1526-byte buffer must receive the next frame.
   */
  static const struct {
    const char *name;
    u64 addr;
    u32 len;
    u16 flags;
  } rxbad[] = {
      {"rx-buffer-too-small", NET_RXMEM + 0x3000, 64, D_WRITE}, /* 12 + 60 bytes needed */
      {"rx-readable-buffer", NET_RXMEM + 0x3000, 1526, 0},
      {"rx-past-ram", GUEST_RAM - 0x100, 1526, D_WRITE},
      {"rx-good", NET_RXMEM + 0x3000, 1526, D_WRITE},
  };
  for (unsigned i = 0; i < sizeof rxbad / sizeof rxbad[0]; i++) {
    vnegotiate(d, F_VERSION_1 | (1ul << 5) | (1ul << 3));
    vq_setup(&rx, d, 0, 8, NET_RXMEM);
    vq_setup(&tx, d, 1, 8, NET_TXMEM);
    vdriver_ok(d);
    vq_set(&rx, 0, rxbad[i].addr, rxbad[i].len, rxbad[i].flags, 0);
    vq_post(&rx, 0);
    vq_kick(&rx);
    puts_("RXREQ\n");
    collect(&rx);
    int got = r.got, len = (int)r.len, broke = (r.dev & S_NEEDS_RESET) != 0;
    if (broke) {
      vnegotiate(d, F_VERSION_1 | (1ul << 5));
      vq_setup(&rx, d, 0, 8, NET_RXMEM);
      vq_setup(&tx, d, 1, 8, NET_TXMEM);
      vdriver_ok(d);
    }
    memset((void *)(NET_RXMEM + 0x3000), 0, 1526);
    vq_set(&rx, 1, NET_RXMEM + 0x3000, 1526, D_WRITE, 0);
    vq_post(&rx, 1);
    vq_kick(&rx);
    puts_("RXREQ\n");
    collect(&rx);
    /* header: num_buffers = 1 (§5.1.6.4.1); then the frame the host sent, which starts with "RXFRAME". */
    int ok = r.got == 1 && r.len == 12 + 60 && *(u16 *)(NET_RXMEM + 0x3000 + 10) == 1 && memeq((void *)(NET_RXMEM + 0x3000 + 12), "RXFRAME", 7);
    case_start("net", rxbad[i].name);
    r.got = got;
    r.len = (u32)len;
    r.dev = broke ? S_NEEDS_RESET : 0;
    print_outcome(0);
    if (broke) puts_(" reset");
    puts_(ok ? " next=ok\n" : " next=FAIL\n");
  }
}

void guest_main(void) {
  struct vdev d;
  puts_("INFO virtio-attacks start\n");
  if (vdev_find(&blk, VIRTIO_ID_BLOCK, 0) == 0) {
    capacity = rd64(blk.devcfg);
    puts_("INFO blk");
    kv("slot", blk.slot);
    kv("capacity", capacity);
    kv("bar-size", blk.bar_size);
    kv("notify-mult", blk.notify_mult);
    puts_("\n");
    blk_queue_cases();
    blk_request_cases();
    blk_geometry_cases();
    blk_status_cases();
    blk_mmio_cases();
    blk_bar_cases();
  }
  if (vdev_find(&d, VIRTIO_ID_BLOCK, 1) == 0) ro_cases(&d);
  if (vdev_find(&d, VIRTIO_ID_ENTROPY, 0) == 0) rng_cases(&d);
  if (vdev_find(&d, VIRTIO_ID_CONSOLE, 0) == 0) con_cases(&d);
  if (vdev_find(&d, VIRTIO_ID_NET, 0) == 0) net_cases(&d);
  puts_("DONE\n");
}
