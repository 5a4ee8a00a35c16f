// tskvm native addon: the only native code in tskvm.
//
// It does exactly what JavaScript cannot: open device files, issue ioctl(2)
// with raw buffers, mmap guest RAM and the vCPU's kvm_run page (exposed as
// external ArrayBuffers, no copies), create eventfds, and kick a vCPU thread
// out of KVM_RUN with a signal. Every policy decision lives in TypeScript.
//
// Errors: a failing syscall throws a JS Error whose `code` is the errno name
// ("ENOENT", "EACCES", ...) and whose message names the call, e.g.
// "KVM_CREATE_VM failed: Permission denied (EACCES)".
//
// The module is context-aware (NODE_API_MODULE registers per environment),
// so it loads in worker_threads; shared state is process-wide and guarded.

#include <napi.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>  // struct kvm_run, KVM_RUN
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace {

// ---------------------------------------------------------------- errors

// Facts from <linux/kvm.h> live in kvm-abi.c: the header is C, and its
// flexible-array members (__DECLARE_FLEX_ARRAY) lay out differently when
// compiled as C++, so sizes and ioctl numbers must come from a C compiler.
extern "C" {
struct tskvm_fact {
  const char* name;
  unsigned long value;
};
extern const struct tskvm_fact tskvm_ioctls[];
extern const unsigned long tskvm_ioctl_count;
extern const struct tskvm_fact tskvm_layout[];
extern const unsigned long tskvm_layout_count;
}

std::string IoctlNameOf(unsigned long request) {
  for (unsigned long i = 0; i < tskvm_ioctl_count; i++) {
    if (tskvm_ioctls[i].value == request) return tskvm_ioctls[i].name;
  }
  char buf[48];
  snprintf(buf, sizeof buf, "ioctl 0x%lx", request);
  return buf;
}

// Builds `Error("<what> failed: <strerror> (<ENAME>)")` with `.code`/`.errno`/`.syscall`.
Napi::Error ErrnoError(Napi::Env env, const std::string& what, int err) {
  const char* ename = strerrorname_np(err);
  std::string code = ename ? ename : "E" + std::to_string(err);
  std::string message = what + " failed: " + strerror(err) + " (" + code + ")";
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, code));
  error.Set("errno", Napi::Number::New(env, err));
  error.Set("syscall", Napi::String::New(env, what));
  return error;
}

Napi::Value ThrowErrno(Napi::Env env, const std::string& what, int err) {
  ErrnoError(env, what, err).ThrowAsJavaScriptException();
  return env.Undefined();
}

Napi::Value ThrowType(Napi::Env env, const char* message) {
  Napi::TypeError::New(env, message).ThrowAsJavaScriptException();
  return env.Undefined();
}

bool ArgInt(const Napi::CallbackInfo& info, size_t i, int64_t* out) {
  if (info.Length() <= i || !info[i].IsNumber()) return false;
  double d = info[i].As<Napi::Number>().DoubleValue();
  if (d != (double)(int64_t)d) return false;
  *out = (int64_t)d;
  return true;
}

// --------------------------------------------------------------- mappings
//
// Guest RAM and kvm_run pages are mmap'd here and recorded in a process-wide
// table keyed by a small integer id. JS gets external ArrayBuffers that do NOT
// own the memory (no finalizer): a GC must never munmap RAM under a live
// memslot. The owner (GuestMemory / Vcpu in TS) frees by explicit unmap(id).
// Workers re-wrap the same pages by id because ArrayBuffers over external
// memory cannot be transferred between threads.

struct Mapping {
  void* addr;
  size_t size;
};

std::mutex g_mappings_mutex;
std::map<uint32_t, Mapping> g_mappings;
uint32_t g_next_mapping_id = 1;

uint32_t AddMapping(void* addr, size_t size) {
  std::lock_guard<std::mutex> lock(g_mappings_mutex);
  uint32_t id = g_next_mapping_id++;
  g_mappings[id] = Mapping{addr, size};
  return id;
}

bool FindMapping(uint32_t id, Mapping* out) {
  std::lock_guard<std::mutex> lock(g_mappings_mutex);
  auto it = g_mappings.find(id);
  if (it == g_mappings.end()) return false;
  *out = it->second;
  return true;
}

// mapAnonymous(size) -> id. Private anonymous memory for guest RAM; NORESERVE
// so untouched guest pages cost nothing.
Napi::Value MapAnonymous(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t size;
  if (!ArgInt(info, 0, &size) || size <= 0) return ThrowType(env, "mapAnonymous(size): size must be a positive integer");
  void* addr = mmap(nullptr, (size_t)size, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (addr == MAP_FAILED) return ThrowErrno(env, "mmap", errno);
  // Guest RAM benefits from transparent huge pages; failure is harmless.
  madvise(addr, (size_t)size, MADV_HUGEPAGE);
  return Napi::Number::New(env, AddMapping(addr, (size_t)size));
}

// mapFd(fd, size, offset) -> id. Used for the vCPU's shared kvm_run area.
Napi::Value MapFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t fd, size, offset = 0;
  if (!ArgInt(info, 0, &fd) || !ArgInt(info, 1, &size) || size <= 0)
    return ThrowType(env, "mapFd(fd, size, offset?): fd and size must be integers");
  if (info.Length() > 2 && !ArgInt(info, 2, &offset)) return ThrowType(env, "mapFd: offset must be an integer");
  void* addr = mmap(nullptr, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, (int)fd, (off_t)offset);
  if (addr == MAP_FAILED) return ThrowErrno(env, "mmap", errno);
  return Napi::Number::New(env, AddMapping(addr, (size_t)size));
}

Napi::Value MappingBuffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t id;
  Mapping m;
  if (!ArgInt(info, 0, &id) || !FindMapping((uint32_t)id, &m))
    return ThrowType(env, "mappingBuffer(id): no such mapping");
  // No finalizer: the buffer never owns the pages (see the table comment).
  return Napi::ArrayBuffer::New(env, m.addr, m.size);
}

Napi::Value MappingAddress(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t id;
  Mapping m;
  if (!ArgInt(info, 0, &id) || !FindMapping((uint32_t)id, &m))
    return ThrowType(env, "mappingAddress(id): no such mapping");
  return Napi::BigInt::New(env, (uint64_t)(uintptr_t)m.addr);
}

Napi::Value Unmap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t id;
  if (!ArgInt(info, 0, &id)) return ThrowType(env, "unmap(id): id must be an integer");
  Mapping m;
  {
    std::lock_guard<std::mutex> lock(g_mappings_mutex);
    auto it = g_mappings.find((uint32_t)id);
    if (it == g_mappings.end()) return Napi::Boolean::New(env, false);
    m = it->second;
    g_mappings.erase(it);
  }
  if (munmap(m.addr, m.size) != 0) return ThrowErrno(env, "munmap", errno);
  return Napi::Boolean::New(env, true);
}

Napi::Value MappingCount(const Napi::CallbackInfo& info) {
  std::lock_guard<std::mutex> lock(g_mappings_mutex);
  return Napi::Number::New(info.Env(), (double)g_mappings.size());
}

// --------------------------------------------------------------- files

Napi::Value Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t flags;
  if (info.Length() < 2 || !info[0].IsString() || !ArgInt(info, 1, &flags))
    return ThrowType(env, "open(path, flags): expected a string and an integer");
  std::string path = info[0].As<Napi::String>().Utf8Value();
  int fd = open(path.c_str(), (int)flags | O_CLOEXEC);
  if (fd < 0) return ThrowErrno(env, "open " + path, errno);
  return Napi::Number::New(env, fd);
}

Napi::Value Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t fd;
  if (!ArgInt(info, 0, &fd)) return ThrowType(env, "close(fd): fd must be an integer");
  if (close((int)fd) != 0) return ThrowErrno(env, "close", errno);
  return env.Undefined();
}

// ioctl(fd, request, arg?) -> non-negative result.
// arg: omitted/number/bigint (passed by value) or an ArrayBuffer/TypedArray/
// DataView whose bytes are passed by pointer (the kernel reads and/or writes
// them in place, so struct results appear in the caller's buffer).
Napi::Value Ioctl(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t fd, request;
  if (!ArgInt(info, 0, &fd) || !ArgInt(info, 1, &request))
    return ThrowType(env, "ioctl(fd, request, arg?): fd and request must be integers");
  unsigned long arg = 0;
  if (info.Length() > 2 && !info[2].IsUndefined()) {
    Napi::Value v = info[2];
    if (v.IsNumber()) {
      arg = (unsigned long)v.As<Napi::Number>().Int64Value();
    } else if (v.IsBigInt()) {
      bool lossless;
      arg = (unsigned long)v.As<Napi::BigInt>().Uint64Value(&lossless);
    } else if (v.IsArrayBuffer()) {
      arg = (unsigned long)(uintptr_t)v.As<Napi::ArrayBuffer>().Data();
    } else if (v.IsTypedArray()) {
      Napi::TypedArray ta = v.As<Napi::TypedArray>();
      arg = (unsigned long)(uintptr_t)((uint8_t*)ta.ArrayBuffer().Data() + ta.ByteOffset());
    } else if (v.IsDataView()) {
      Napi::DataView dv = v.As<Napi::DataView>();
      arg = (unsigned long)(uintptr_t)((uint8_t*)dv.ArrayBuffer().Data() + dv.ByteOffset());
    } else {
      return ThrowType(env, "ioctl: arg must be a number, bigint, ArrayBuffer, TypedArray or DataView");
    }
  }
  int r = ioctl((int)fd, (unsigned long)request, arg);
  if (r < 0) return ThrowErrno(env, IoctlNameOf((unsigned long)request), errno);
  return Napi::Number::New(env, r);
}

// --------------------------------------------------------------- vCPU run and kick
//
// Kicking a vCPU out of KVM_RUN (KVM API doc, "immediate_exit"): the kicker
// sets kvm_run->immediate_exit = 1 and sends a real-time signal to the thread
// that runs the vCPU. Either KVM_RUN is not yet entered (it then returns
// EINTR at once thanks to immediate_exit) or the signal interrupts it. The
// handler does nothing; it exists so the signal interrupts instead of killing.
// SIGUSR1 is avoided because Node's inspector uses it.

int KickSignal() { return SIGRTMIN + 4; }

void KickHandler(int) {}

std::once_flag g_kick_handler_once;

void InstallKickHandler() {
  std::call_once(g_kick_handler_once, [] {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = KickHandler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // deliberately no SA_RESTART: KVM_RUN must return EINTR
    sigaction(KickSignal(), &sa, nullptr);
  });
}

struct VcpuThread {
  pthread_t thread;
  struct kvm_run* run;
};

std::mutex g_vcpus_mutex;
std::map<int, VcpuThread> g_vcpus;  // keyed by vCPU fd

// bindVcpuThread(vcpuFd, runMappingId): the calling thread will run this vCPU.
Napi::Value BindVcpuThread(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t fd, mapping_id;
  Mapping m;
  if (!ArgInt(info, 0, &fd) || !ArgInt(info, 1, &mapping_id) || !FindMapping((uint32_t)mapping_id, &m))
    return ThrowType(env, "bindVcpuThread(fd, runMappingId): bad arguments");
  InstallKickHandler();
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, KickSignal());
  pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
  std::lock_guard<std::mutex> lock(g_vcpus_mutex);
  g_vcpus[(int)fd] = VcpuThread{pthread_self(), (struct kvm_run*)m.addr};
  return env.Undefined();
}

Napi::Value UnbindVcpuThread(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t fd;
  if (!ArgInt(info, 0, &fd)) return ThrowType(env, "unbindVcpuThread(fd): fd must be an integer");
  std::lock_guard<std::mutex> lock(g_vcpus_mutex);
  g_vcpus.erase((int)fd);
  return env.Undefined();
}

// kick(vcpuFd) -> true if a bound thread was signalled.
Napi::Value Kick(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t fd;
  if (!ArgInt(info, 0, &fd)) return ThrowType(env, "kick(fd): fd must be an integer");
  std::lock_guard<std::mutex> lock(g_vcpus_mutex);
  auto it = g_vcpus.find((int)fd);
  if (it == g_vcpus.end()) return Napi::Boolean::New(env, false);
  __atomic_store_n(&it->second.run->immediate_exit, 1, __ATOMIC_SEQ_CST);
  int r = pthread_kill(it->second.thread, KickSignal());
  return Napi::Boolean::New(env, r == 0);
}

// run(vcpuFd) -> 0 after a normal exit, or -EINTR / -EAGAIN when KVM_RUN was
// interrupted (kick, signal); immediate_exit is cleared in that case. Other
// errors throw. Synchronous by design: the caller is a vCPU thread.
Napi::Value Run(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t fd;
  if (!ArgInt(info, 0, &fd)) return ThrowType(env, "run(fd): fd must be an integer");
  int r = ioctl((int)fd, KVM_RUN, 0);
  if (r < 0) {
    int err = errno;
    if (err == EINTR || err == EAGAIN) {
      std::lock_guard<std::mutex> lock(g_vcpus_mutex);
      auto it = g_vcpus.find((int)fd);
      if (it != g_vcpus.end()) __atomic_store_n(&it->second.run->immediate_exit, 0, __ATOMIC_SEQ_CST);
      return Napi::Number::New(env, -err);
    }
    return ThrowErrno(env, "KVM_RUN", err);
  }
  return Napi::Number::New(env, 0);
}

// runFor(vcpuFd, microseconds) -> like run(), but KVM_RUN is interrupted
// (-EINTR) after at most `microseconds`: how one thread time-slices several
// vCPUs (SMP on one vCPU worker, see sync-machine.ts). A per-thread POSIX
// timer delivers the kick signal to this thread (SIGEV_THREAD_ID). The timer
// is periodic, so a signal that lands between arming and entering KVM_RUN
// (where it cannot interrupt anything) is followed by another one a period
// later instead of leaving a halted vCPU blocked for good.

struct SliceTimer {
  timer_t id;
  bool created = false;
  // Deleted when the vCPU worker's thread ends (thread_local destructor), so
  // create/destroy cycles of SMP machines leave no timers behind.
  ~SliceTimer() {
    if (created) timer_delete(id);
  }
};
thread_local SliceTimer t_slice;

Napi::Value RunFor(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t fd, micros;
  if (!ArgInt(info, 0, &fd) || !ArgInt(info, 1, &micros) || micros < 1 || micros > 10000000)
    return ThrowType(env, "runFor(fd, microseconds 1..10^7)");
  if (!t_slice.created) {
    InstallKickHandler();
    struct sigevent sev;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_THREAD_ID;
    sev.sigev_signo = KickSignal();
    sev._sigev_un._tid = (pid_t)syscall(SYS_gettid);
    if (timer_create(CLOCK_MONOTONIC, &sev, &t_slice.id) != 0) return ThrowErrno(env, "timer_create", errno);
    t_slice.created = true;
  }
  struct itimerspec slice;
  slice.it_value.tv_sec = micros / 1000000;
  slice.it_value.tv_nsec = (micros % 1000000) * 1000;
  slice.it_interval = slice.it_value;
  timer_settime(t_slice.id, 0, &slice, nullptr);
  int r = ioctl((int)fd, KVM_RUN, 0);
  int err = errno;
  struct itimerspec off;
  memset(&off, 0, sizeof off);
  timer_settime(t_slice.id, 0, &off, nullptr);
  if (r < 0) {
    if (err == EINTR || err == EAGAIN) {
      std::lock_guard<std::mutex> lock(g_vcpus_mutex);
      auto it = g_vcpus.find((int)fd);
      if (it != g_vcpus.end()) __atomic_store_n(&it->second.run->immediate_exit, 0, __ATOMIC_SEQ_CST);
      return Napi::Number::New(env, -err);
    }
    return ThrowErrno(env, "KVM_RUN", err);
  }
  return Napi::Number::New(env, 0);
}

// --------------------------------------------------------------- eventfd

Napi::Value EventFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t initval = 0, flags = 0;
  if (info.Length() > 0 && !ArgInt(info, 0, &initval)) return ThrowType(env, "eventfd(initval?, flags?)");
  if (info.Length() > 1 && !ArgInt(info, 1, &flags)) return ThrowType(env, "eventfd(initval?, flags?)");
  int fd = eventfd((unsigned int)initval, (int)flags | EFD_CLOEXEC);
  if (fd < 0) return ThrowErrno(env, "eventfd", errno);
  return Napi::Number::New(env, fd);
}

// eventfdRead(fd) -> counter value as number, or null if it would block.
Napi::Value EventFdRead(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t fd;
  if (!ArgInt(info, 0, &fd)) return ThrowType(env, "eventfdRead(fd)");
  uint64_t value;
  ssize_t n = read((int)fd, &value, sizeof value);
  if (n < 0) {
    if (errno == EAGAIN) return env.Null();
    return ThrowErrno(env, "eventfd read", errno);
  }
  return Napi::Number::New(env, (double)value);
}

Napi::Value EventFdWrite(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t fd, value;
  if (!ArgInt(info, 0, &fd) || !ArgInt(info, 1, &value) || value <= 0) return ThrowType(env, "eventfdWrite(fd, value>0)");
  uint64_t v = (uint64_t)value;
  if (write((int)fd, &v, sizeof v) < 0) return ThrowErrno(env, "eventfd write", errno);
  return env.Undefined();
}

// --------------------------------------------------------------- waiting for a readable fd
//
// waitReadable(fd, timeoutMs) -> Promise<boolean>: poll(2) for POLLIN on a
// libuv thread-pool thread, so the main thread can wait for frames on a tap
// (a character device libuv cannot watch as a stream). Resolves true when the
// fd is readable (or hung up / in error: the next read says which), false on
// timeout; a finite timeout lets the caller notice it was closed.

class PollWorker : public Napi::AsyncWorker {
 public:
  PollWorker(Napi::Env env, int fd, int timeoutMs)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), fd_(fd), timeoutMs_(timeoutMs) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    struct pollfd p = {fd_, POLLIN, 0};
    int n;
    do n = poll(&p, 1, timeoutMs_);
    while (n < 0 && errno == EINTR);
    if (n < 0) err_ = errno;
    ready_ = n > 0;
  }
  void OnOK() override {
    Napi::Env env = Env();
    if (err_) {
      Napi::Error error = Napi::Error::New(env, std::string("poll: ") + strerror(err_));
      error.Set("code", Napi::String::New(env, strerrorname_np(err_) ? strerrorname_np(err_) : "EIO"));
      deferred_.Reject(error.Value());
    } else {
      deferred_.Resolve(Napi::Boolean::New(env, ready_));
    }
  }

 private:
  Napi::Promise::Deferred deferred_;
  int fd_, timeoutMs_, err_ = 0;
  bool ready_ = false;
};

Napi::Value WaitReadable(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t fd, timeout;
  if (!ArgInt(info, 0, &fd) || !ArgInt(info, 1, &timeout) || fd < 0 || timeout < -1 || timeout > 0x7fffffff)
    return ThrowType(env, "waitReadable(fd, timeoutMs)");
  PollWorker* worker = new PollWorker(env, (int)fd, (int)timeout);
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

// pollReadable(fds, timeoutMs) -> array of the fds that are readable (or hung
// up / in error: the next read says which); empty on timeout. Synchronous, for
// a thread whose only job is waiting on fds: the virtio I/O thread blocks here
// on its ioeventfds, irqfd resample fds, taps and doorbell (src/vmm/io-worker.ts).
Napi::Value PollReadable(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t timeout;
  if (info.Length() < 2 || !info[0].IsArray() || !ArgInt(info, 1, &timeout) || timeout < -1 || timeout > 0x7fffffff)
    return ThrowType(env, "pollReadable(fds[], timeoutMs)");
  Napi::Array list = info[0].As<Napi::Array>();
  uint32_t count = list.Length();
  if (count > 1024) return ThrowType(env, "pollReadable: at most 1024 fds");
  std::vector<struct pollfd> fds(count);
  for (uint32_t i = 0; i < count; i++) {
    Napi::Value v = list.Get(i);
    if (!v.IsNumber()) return ThrowType(env, "pollReadable: fds must be integers");
    fds[i] = {v.As<Napi::Number>().Int32Value(), POLLIN, 0};
  }
  int n;
  do n = poll(fds.data(), count, (int)timeout);
  while (n < 0 && errno == EINTR);
  if (n < 0) return ThrowErrno(env, "poll", errno);
  Napi::Array ready = Napi::Array::New(env);
  uint32_t out = 0;
  for (uint32_t i = 0; i < count; i++)
    if (fds[i].revents) ready.Set(out++, Napi::Number::New(env, fds[i].fd));
  return ready;
}

// --------------------------------------------------------------- layout facts
//
// Sizes, offsets and request numbers from <linux/kvm.h> (via kvm-abi.c), so
// tests can check that every TypeScript struct codec agrees with the header.

Napi::Object FactsObject(Napi::Env env, const struct tskvm_fact* facts, unsigned long count) {
  Napi::Object o = Napi::Object::New(env);
  for (unsigned long i = 0; i < count; i++) o.Set(facts[i].name, Napi::Number::New(env, (double)facts[i].value));
  return o;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("open", Napi::Function::New(env, Open));
  exports.Set("close", Napi::Function::New(env, Close));
  exports.Set("ioctl", Napi::Function::New(env, Ioctl));
  exports.Set("mapAnonymous", Napi::Function::New(env, MapAnonymous));
  exports.Set("mapFd", Napi::Function::New(env, MapFd));
  exports.Set("mappingBuffer", Napi::Function::New(env, MappingBuffer));
  exports.Set("mappingAddress", Napi::Function::New(env, MappingAddress));
  exports.Set("unmap", Napi::Function::New(env, Unmap));
  exports.Set("mappingCount", Napi::Function::New(env, MappingCount));
  exports.Set("bindVcpuThread", Napi::Function::New(env, BindVcpuThread));
  exports.Set("unbindVcpuThread", Napi::Function::New(env, UnbindVcpuThread));
  exports.Set("kick", Napi::Function::New(env, Kick));
  exports.Set("run", Napi::Function::New(env, Run));
  exports.Set("runFor", Napi::Function::New(env, RunFor));
  exports.Set("eventfd", Napi::Function::New(env, EventFd));
  exports.Set("eventfdRead", Napi::Function::New(env, EventFdRead));
  exports.Set("eventfdWrite", Napi::Function::New(env, EventFdWrite));
  exports.Set("waitReadable", Napi::Function::New(env, WaitReadable));
  exports.Set("pollReadable", Napi::Function::New(env, PollReadable));
  exports.Set("layout", FactsObject(env, tskvm_layout, tskvm_layout_count));
  exports.Set("ioctlNumbers", FactsObject(env, tskvm_ioctls, tskvm_ioctl_count));
  exports.Set("O_RDWR", Napi::Number::New(env, O_RDWR));
  exports.Set("EFD_NONBLOCK", Napi::Number::New(env, EFD_NONBLOCK));
  return exports;
}

}  // namespace

NODE_API_MODULE(tskvm_native, Init)
