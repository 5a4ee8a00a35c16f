/*
 * virtio-guest.h: a tiny guest-side virtio-pci driver library for the hostile
 * guests of issue 6 (test/hostile/guests/virtio-*.c, blk-*.c). Header-only:
 * each guest is one translation unit that includes it. Built by
 * scripts/build-examples.js (freestanding C, long mode, linked at 0x8000).
 *
 * What the VMM gives us (examples/03-long-mode-serial/README.md): 64-bit long
 * mode, the first 4 GiB identity-mapped with 2 MiB pages (so the PCI BARs we
 * place at 0xE0000000 are reachable), page tables at 0x1000-0x6FFF, a GDT at
 * 0x500. The file starts with `_start`, which moves the stack well away from
 * the page tables (STACK_TOP) and calls guest_main(); when that returns the
 * guest pulses the i8042 reset line (command 0xFE to port 0x64), which ends
 * the run on tskvm's 'pc' platform (HLT does not).
 *
 * Output goes to the debug console, port 0xE9, one line per result:
 *   CASE <name> <outcome...>
 *   INFO <anything>
 *   DONE
 * which the host tests parse (test/hostile/virtio-attacks.test.ts).
 *
 * The driver follows virtio 1.2:
 *   §4.1.2   discovery: vendor 0x1AF4, device 0x1040 + virtio device id
 *   §4.1.4   the vendor capabilities (cap id 0x09) that locate the common,
 *            notify, ISR and device configuration structures inside a BAR
 *   §3.1.1   initialization: reset, ACKNOWLEDGE, DRIVER, features,
 *            FEATURES_OK (read back), queues, DRIVER_OK
 *   §4.1.5.1.3 queue set-up through queue_select/size/desc/driver/device/enable
 *   §2.7     split virtqueues; §4.1.5.2 notifications (write the queue index
 *            at notify base + queue_notify_off * notify_off_multiplier)
 * No interrupts: the guest runs with IF = 0 and polls the used ring. On the
 * vCPU thread tskvm serves a request inside the notify write's MMIO exit; with
 * the virtio I/O thread (ioThread) KVM hands the notify to that thread and the
 * request is served while the guest runs on. So after each notify the guest
 * writes HOST_SYNC_PORT, whose handler in the test harness returns once the
 * VMM has served every notification made before it; vq_poll() then finds the
 * used entries (and still looks a few times).
 */
#ifndef VIRTIO_GUEST_H
#define VIRTIO_GUEST_H

/* Not every guest uses every helper. */
#pragma GCC diagnostic ignored "-Wunused-function"

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long u64;

/* Guest RAM the tests give us (--mem / memory: '8M'). */
#define GUEST_RAM 0x800000ul
#define STACK_TOP 0x80000ul
/* A word the host may write before the run to pick what a guest does. */
#define HOST_MODE_ADDR 0x7f00ul

__asm__(
    ".text\n"
    ".globl _start\n"
    "_start:\n"
    "  mov $0x80000, %rsp\n" /* STACK_TOP */
    "  call guest_main\n"
    "1: mov $0xfe, %al\n"    /* i8042: pulse the CPU reset line: tskvm ends the run */
    "  out %al, $0x64\n"
    "  hlt\n"
    "  jmp 1b\n");

/*
 * gcc may emit calls to these even when freestanding. String instructions, so
 * that gcc cannot turn the loops back into calls to themselves.
 */
void *memset(void *d, int c, unsigned long n) {
  void *p = d;
  __asm__ volatile("rep stosb" : "+D"(p), "+c"(n) : "a"(c) : "memory");
  return d;
}
void *memcpy(void *d, const void *s, unsigned long n) {
  void *p = d;
  __asm__ volatile("rep movsb" : "+D"(p), "+S"(s), "+c"(n) : : "memory");
  return d;
}

#define barrier() __asm__ volatile("" ::: "memory")

/* ---- port and MMIO accesses of an exact width ---------------------------- */

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(port)); }
static inline void outw(u16 port, u16 v) { __asm__ volatile("outw %0, %1" ::"a"(v), "Nd"(port)); }
static inline void outl(u16 port, u32 v) { __asm__ volatile("outl %0, %1" ::"a"(v), "Nd"(port)); }
static inline u32 inl(u16 port) {
  u32 v;
  __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
  return v;
}

static inline u8 rd8(u64 a) {
  u8 v;
  __asm__ volatile("movb (%1), %0" : "=q"(v) : "r"(a) : "memory");
  return v;
}
static inline u16 rd16(u64 a) {
  u16 v;
  __asm__ volatile("movw (%1), %0" : "=r"(v) : "r"(a) : "memory");
  return v;
}
static inline u32 rd32(u64 a) {
  u32 v;
  __asm__ volatile("movl (%1), %0" : "=r"(v) : "r"(a) : "memory");
  return v;
}
static inline u64 rd64(u64 a) {
  u64 v;
  __asm__ volatile("movq (%1), %0" : "=r"(v) : "r"(a) : "memory");
  return v;
}
static inline void wr8(u64 a, u8 v) { __asm__ volatile("movb %0, (%1)" ::"q"(v), "r"(a) : "memory"); }
static inline void wr16(u64 a, u16 v) { __asm__ volatile("movw %0, (%1)" ::"r"(v), "r"(a) : "memory"); }
static inline void wr32(u64 a, u32 v) { __asm__ volatile("movl %0, (%1)" ::"r"(v), "r"(a) : "memory"); }
static inline void wr64(u64 a, u64 v) { __asm__ volatile("movq %0, (%1)" ::"r"(v), "r"(a) : "memory"); }

/* ---- debug console (port 0xE9) --------------------------------------------- */

static void putc_(char c) { outb(0xe9, (u8)c); }
static void puts_(const char *s) {
  while (*s) putc_(*s++);
}
static void puthex(u64 v) {
  char buf[19];
  int i = 18;
  buf[i] = 0;
  do {
    buf[--i] = "0123456789abcdef"[v & 15];
    v >>= 4;
  } while (v);
  buf[--i] = 'x';
  buf[--i] = '0';
  puts_(buf + i);
}
static void putdec(u64 v) {
  char buf[21];
  int i = 20;
  buf[i] = 0;
  do {
    buf[--i] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  puts_(buf + i);
}

/* ---- PCI configuration mechanism #1 (ports 0xCF8/0xCFC), bus 0 ------------- */

static u32 pci_addr(int slot, int reg) { return 0x80000000u | ((u32)slot << 11) | ((u32)reg & 0xfc); }
static u32 pci_read32(int slot, int reg) {
  outl(0xcf8, pci_addr(slot, reg));
  return inl(0xcfc);
}
static void pci_write32(int slot, int reg, u32 v) {
  outl(0xcf8, pci_addr(slot, reg));
  outl(0xcfc, v);
}
static u8 pci_read8(int slot, int reg) { return (u8)(pci_read32(slot, reg) >> (8 * (reg & 3))); }
static void pci_write16(int slot, int reg, u16 v) {
  outl(0xcf8, pci_addr(slot, reg));
  outw((u16)(0xcfc + (reg & 2)), v);
}

/* ---- virtio-pci ------------------------------------------------------------- */

#define VIRTIO_VENDOR 0x1af4
#define VIRTIO_ID_NET 1
#define VIRTIO_ID_BLOCK 2
#define VIRTIO_ID_CONSOLE 3
#define VIRTIO_ID_ENTROPY 4

/* Device status bits (§2.1). */
#define S_ACK 1
#define S_DRIVER 2
#define S_DRIVER_OK 4
#define S_FEATURES_OK 8
#define S_NEEDS_RESET 0x40
#define S_FAILED 0x80

/* Feature bits (§6). */
#define F_INDIRECT (1ul << 28)
#define F_EVENT_IDX (1ul << 29)
#define F_VERSION_1 (1ul << 32)

/* struct virtio_pci_common_cfg offsets (§4.1.4.3). */
#define C_DFSELECT 0x00
#define C_DF 0x04
#define C_GFSELECT 0x08
#define C_GF 0x0c
#define C_NUMQ 0x12
#define C_STATUS 0x14
#define C_GENERATION 0x15
#define C_QSELECT 0x16
#define C_QSIZE 0x18
#define C_QENABLE 0x1c
#define C_QNOTIFYOFF 0x1e
#define C_QDESC 0x20
#define C_QDRIVER 0x28
#define C_QDEVICE 0x30

/* Descriptor flags (§2.7.5). */
#define D_NEXT 1
#define D_WRITE 2
#define D_INDIRECT 4

struct vdev {
  int slot;
  u16 id;
  u64 bar;        /* where we put BAR 4 */
  u32 bar_size;
  u64 common, isr, devcfg, notify; /* absolute addresses of the structures */
  u32 devcfg_len;
  u32 notify_mult;
  int pcicfg;     /* config-space offset of the VIRTIO_PCI_CAP_PCI_CFG capability */
};

struct desc {
  u64 addr;
  u32 len;
  u16 flags;
  u16 next;
};

struct vq {
  struct vdev *d;
  u16 index;
  u16 size;
  u64 mem;        /* descriptor table at mem, avail at mem+0x1000, used at mem+0x2000 */
  struct desc *desc;
  volatile u16 *avail; /* flags, idx, ring[] */
  volatile u32 *used;  /* flags|idx, then {id, len} pairs */
  u16 avail_idx;
  u16 used_seen;
};

/*
 * Finds the nth (0-based) virtio device of type `id`, places its BAR 4 (a
 * 64-bit memory BAR, sized the PCI way: write all ones, read back) at
 * 0xE0000000 + slot MiB, turns on memory decoding and bus mastering, and walks
 * the capability list (§4.1.4). Returns 0, or -1 if there is no such device.
 */
static int vdev_find(struct vdev *d, u16 id, int nth) {
  for (int slot = 0; slot < 32; slot++) {
    u32 ids = pci_read32(slot, 0);
    if ((ids & 0xffff) != VIRTIO_VENDOR || (ids >> 16) != 0x1040u + id) continue;
    if (nth-- > 0) continue;
    memset(d, 0, sizeof *d);
    d->slot = slot;
    d->id = id;
    pci_write32(slot, 0x20, 0xffffffffu); /* BAR 4 */
    d->bar_size = ~(pci_read32(slot, 0x20) & ~0xfu) + 1;
    d->bar = 0xe0000000ul + ((u64)slot << 20);
    pci_write32(slot, 0x20, (u32)d->bar);
    pci_write32(slot, 0x24, 0); /* BAR 5: the upper half */
    pci_write16(slot, 0x04, 0x0006); /* Command: memory space, bus master */
    if (!(pci_read32(slot, 0x04) & (1u << 20))) return -1; /* Status: capabilities list */
    int ptr = pci_read8(slot, 0x34) & 0xfc;
    for (int n = 0; ptr && n < 48; n++, ptr = pci_read8(slot, ptr + 1) & 0xfc) {
      if (pci_read8(slot, ptr) != 0x09) continue; /* vendor-specific */
      u8 type = pci_read8(slot, ptr + 3);
      u8 bar = pci_read8(slot, ptr + 4);
      u32 off = pci_read32(slot, ptr + 8);
      u32 len = pci_read32(slot, ptr + 12);
      if (type == 5) d->pcicfg = ptr;
      if (bar != 4) continue;
      switch (type) {
      case 1: d->common = d->bar + off; break;
      case 2: d->notify = d->bar + off; d->notify_mult = pci_read32(slot, ptr + 16); break;
      case 3: d->isr = d->bar + off; break;
      case 4: d->devcfg = d->bar + off; d->devcfg_len = len; break;
      }
    }
    return d->common && d->notify && d->isr ? 0 : -1;
  }
  return -1;
}

static u8 vstatus(struct vdev *d) { return rd8(d->common + C_STATUS); }
static void vset(struct vdev *d, u8 s) { wr8(d->common + C_STATUS, s); }
static void vreset(struct vdev *d) { vset(d, 0); }

static u64 vfeatures(struct vdev *d) {
  wr32(d->common + C_DFSELECT, 0);
  u64 f = rd32(d->common + C_DF);
  wr32(d->common + C_DFSELECT, 1);
  return f | ((u64)rd32(d->common + C_DF) << 32);
}

/*
 * §3.1.1 steps 1-5: reset, ACKNOWLEDGE, DRIVER, accept exactly `accept`
 * (whatever was offered: the caller may be hostile), FEATURES_OK. Returns the
 * status read back (FEATURES_OK is set only if the device accepted).
 */
static u8 vnegotiate_raw(struct vdev *d, u64 accept) {
  vreset(d);
  vset(d, S_ACK);
  vset(d, S_ACK | S_DRIVER);
  wr32(d->common + C_GFSELECT, 0);
  wr32(d->common + C_GF, (u32)accept);
  wr32(d->common + C_GFSELECT, 1);
  wr32(d->common + C_GF, (u32)(accept >> 32));
  vset(d, S_ACK | S_DRIVER | S_FEATURES_OK);
  return vstatus(d);
}
/* The well-behaved version: accept what we want of what is offered. */
static int vnegotiate(struct vdev *d, u64 want) {
  u64 offered = vfeatures(d);
  return (vnegotiate_raw(d, offered & want) & S_FEATURES_OK) ? 0 : -1;
}

/* Programs queue `index` (size 0: the device's maximum) at `mem` without enabling it. */
static void vq_program(struct vq *q, struct vdev *d, u16 index, u16 size, u64 mem) {
  u64 c = d->common;
  q->d = d;
  q->index = index;
  q->mem = mem;
  q->desc = (struct desc *)mem;
  q->avail = (volatile u16 *)(mem + 0x1000);
  q->used = (volatile u32 *)(mem + 0x2000);
  q->avail_idx = 0;
  q->used_seen = 0;
  memset((void *)mem, 0, 0x2000);
  memset((void *)(mem + 0x2000), 0, 0x1000);
  wr16(c + C_QSELECT, index);
  if (size == 0) size = rd16(c + C_QSIZE);
  q->size = size;
  wr16(c + C_QSIZE, size);
  wr32(c + C_QDESC, (u32)mem);
  wr32(c + C_QDESC + 4, 0);
  wr32(c + C_QDRIVER, (u32)(mem + 0x1000));
  wr32(c + C_QDRIVER + 4, 0);
  wr32(c + C_QDEVICE, (u32)(mem + 0x2000));
  wr32(c + C_QDEVICE + 4, 0);
}
static int vq_enable(struct vq *q) {
  wr16(q->d->common + C_QSELECT, q->index);
  wr16(q->d->common + C_QENABLE, 1);
  return rd16(q->d->common + C_QENABLE) == 1 ? 0 : -1;
}
static int vq_setup(struct vq *q, struct vdev *d, u16 index, u16 size, u64 mem) {
  vq_program(q, d, index, size, mem);
  return vq_enable(q);
}
static void vdriver_ok(struct vdev *d) { vset(d, vstatus(d) | S_DRIVER_OK); }

static void vq_set(struct vq *q, u16 i, u64 addr, u32 len, u16 flags, u16 next) {
  q->desc[i].addr = addr;
  q->desc[i].len = len;
  q->desc[i].flags = flags;
  q->desc[i].next = next;
}
/* Makes chain `head` available (§2.7.13): ring entry, then idx. */
static void vq_post(struct vq *q, u16 head) {
  q->avail[2 + q->avail_idx % q->size] = head;
  barrier();
  q->avail_idx++;
  q->avail[1] = q->avail_idx;
  barrier();
}
/* The test harness's barrier port (virtio-harness.ts), see the header. */
#define HOST_SYNC_PORT 0xea
static void host_sync(void) { outb(HOST_SYNC_PORT, 0); }
static void vq_kick(struct vq *q) {
  wr16(q->d->notify + (u64)q->index * q->d->notify_mult, q->index);
  host_sync();
}
static u16 vq_used_idx(struct vq *q) { return (u16)(q->used[0] >> 16); }

/* Takes the next used element: returns its id and sets *len, or -1 if there is none. */
static int vq_poll(struct vq *q, u32 *len) {
  for (int tries = 0; tries < 4; tries++) {
    barrier();
    if (vq_used_idx(q) != q->used_seen) {
      u32 slot = q->used_seen % q->size;
      q->used_seen++;
      if (len) *len = q->used[1 + 2 * slot + 1];
      return (int)q->used[1 + 2 * slot];
    }
  }
  return -1;
}

static int memeq(const void *a, const void *b, unsigned long n) {
  const u8 *p = a, *q = b;
  while (n--)
    if (*p++ != *q++) return 0;
  return 1;
}

#endif
