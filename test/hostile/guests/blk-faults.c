/*
 * blk-faults: a well-behaved virtio-blk driver for the host-fault tests
 * (test/hostile/blk-host-faults.test.ts). The host writes the mode to
 * HOST_MODE_ADDR (and an argument after it) before the run:
 *
 *   1 ENOSPC   write sectors 0, 1, 2... (sector n: "gwri%04d" then the byte
 *              n & 0xff) until one fails; write 3 more (they must fail too);
 *              then rewrite sector 0 and read it back (space that exists
 *              still works):
 *                CASE enospc first-ioerr=<n> more=<s,s,s> rewrite=<s> read=<ok|bad>
 *   2 EIO      read sector 0, the last sector three times, sector 0 again:
 *                CASE eio first=<s> last=<s,s,s> again=<s> data=<ok|bad>
 *   3 DURABLE  write sectors 0..N-1 (N = the argument; "dura%04d", then
 *              n & 0xff), FLUSH, print "FLUSHED n=<N> status=<s>", then keep
 *              writing further sectors without a flush until killed
 *   4          like 3, but stop after FLUSHED
 * <s> is the virtio-blk status byte (0 OK, 1 IOERR, 2 UNSUPP).
 */
#include "virtio-guest.h"

#define QMEM 0x100000ul
#define HDR 0x200000ul
#define DATA 0x201000ul
#define STATUSB 0x1f0000ul
#define STATUS_BYTE (*(volatile u8 *)STATUSB)

static struct vdev blk;
static struct vq q;
static u64 capacity;

/* One request: header, data (unless len is 0), status. Returns the status byte, or 0xee if nothing came back. */
static u8 req(u32 type, u64 sector, u32 len, int in) {
  *(volatile u32 *)HDR = type;
  *(volatile u32 *)(HDR + 4) = 0;
  *(volatile u64 *)(HDR + 8) = sector;
  STATUS_BYTE = 0xee;
  if (len) {
    vq_set(&q, 0, HDR, 16, D_NEXT, 1);
    vq_set(&q, 1, DATA, len, D_NEXT | (in ? D_WRITE : 0), 2);
  } else {
    vq_set(&q, 0, HDR, 16, D_NEXT, 2);
  }
  vq_set(&q, 2, STATUSB, 1, D_WRITE, 0);
  vq_post(&q, 0);
  vq_kick(&q);
  u32 used;
  if (vq_poll(&q, &used) < 0) return 0xee;
  return STATUS_BYTE;
}

static void fill(const char *tag, u64 n) {
  u8 *p = (u8 *)DATA;
  memset(p, (int)(n & 0xff), 512);
  memcpy(p, tag, 4);
  for (int i = 7; i >= 4; i--, n /= 10) p[i] = (u8)('0' + n % 10);
}

static void enospc(void) {
  u64 n = 0;
  u8 s = 0;
  for (; n < capacity; n++) {
    fill("gwri", n);
    if ((s = req(1, n, 512, 0)) != 0) break;
  }
  puts_("CASE enospc first-ioerr=");
  putdec(n);
  puts_(" status=");
  putdec(s);
  puts_(" more=");
  for (int i = 1; i <= 3; i++) {
    fill("gwri", n + i);
    putdec(req(1, n + i, 512, 0));
    puts_(i < 3 ? "," : "");
  }
  fill("gwri", 0);
  ((u8 *)DATA)[8] = '!';
  puts_(" rewrite=");
  putdec(req(1, 0, 512, 0));
  memset((void *)DATA, 0, 512);
  puts_(" read=");
  putdec(req(0, 0, 512, 1));
  puts_(memeq((void *)DATA, "gwri0000!", 9) ? ",ok\n" : ",bad\n");
}

static void eio(void) {
  puts_("CASE eio first=");
  putdec(req(0, 0, 512, 1));
  puts_(" last=");
  for (int i = 0; i < 3; i++) {
    putdec(req(0, capacity - 1, 512, 1));
    puts_(i < 2 ? "," : "");
  }
  memset((void *)DATA, 0, 512);
  puts_(" again=");
  putdec(req(0, 0, 512, 1));
  puts_(memeq((void *)DATA, "sect0000", 8) ? " data=ok\n" : " data=bad\n");
}

static void durable(u32 count, int forever) {
  u8 bad = 0;
  for (u32 n = 0; n < count; n++) {
    fill("dura", n);
    bad |= req(1, n, 512, 0);
  }
  u8 s = req(4, 0, 0, 0);
  puts_("FLUSHED n=");
  putdec(count);
  puts_(" writes=");
  putdec(bad);
  puts_(" status=");
  putdec(s);
  puts_("\n");
  /* Writes after the flush: no promise about these. */
  for (u64 n = count; forever; n = n + 1 < capacity ? n + 1 : count) {
    fill("late", n);
    req(1, n, 512, 0);
  }
}

void guest_main(void) {
  u32 mode = *(volatile u32 *)HOST_MODE_ADDR;
  u32 arg = *(volatile u32 *)(HOST_MODE_ADDR + 4);
  if (vdev_find(&blk, VIRTIO_ID_BLOCK, 0) || vnegotiate(&blk, F_VERSION_1 | (1ul << 9) /* FLUSH */) ||
      vq_setup(&q, &blk, 0, 16, QMEM)) {
    puts_("INFO no usable virtio-blk device\nDONE\n");
    return;
  }
  vdriver_ok(&blk);
  capacity = rd64(blk.devcfg);
  if (mode == 1) enospc();
  else if (mode == 2) eio();
  else if (mode == 3 || mode == 4) durable(arg, mode == 3);
  puts_("DONE\n");
}
