#include "backend/sys.hpp"

#include <atomic>
#include <cerrno>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_memfd_secret
#define SYS_memfd_secret 447
#endif

namespace exmem::sys {

namespace {

struct Fault {
  std::atomic<int> err{0};
  std::atomic<uint64_t> fire_at{0};  // call number that fails first
  std::atomic<bool> every{false};
  std::atomic<uint64_t> calls{0};
};
constexpr int kCalls = static_cast<int>(Call::count_);
Fault g_faults[kCalls];
std::atomic<bool> g_armed{false};

// True (with errno set) when this call is to fail.
bool injected(Call c) {
  if (!g_armed.load(std::memory_order_relaxed)) return false;
  Fault& f = g_faults[static_cast<int>(c)];
  uint64_t n = f.calls.fetch_add(1, std::memory_order_relaxed) + 1;
  int err = f.err.load(std::memory_order_relaxed);
  if (err == 0) return false;
  uint64_t at = f.fire_at.load(std::memory_order_relaxed);
  if (n == at || (f.every.load(std::memory_order_relaxed) && n >= at)) {
    errno = err;
    return true;
  }
  return false;
}

}  // namespace

int memfd_secret(unsigned flags) {
  if (injected(Call::memfd_secret)) return -1;
  return static_cast<int>(::syscall(SYS_memfd_secret, flags));
}
int memfd_create(const char* name, unsigned flags) {
  if (injected(Call::memfd_create)) return -1;
  return ::memfd_create(name, flags);
}
int ftruncate(int fd, off_t length) {
  if (injected(Call::ftruncate)) return -1;
  return ::ftruncate(fd, length);
}
void* mmap(void* addr, size_t len, int prot, int flags, int fd, off_t offset) {
  if (injected(Call::mmap)) return MAP_FAILED;
  return ::mmap(addr, len, prot, flags, fd, offset);
}
void* mmap_restore(void* addr, size_t len) {
  return ::mmap(addr, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
}
int munmap(void* addr, size_t len) {
  if (injected(Call::munmap)) return -1;
  return ::munmap(addr, len);
}
int madvise(void* addr, size_t len, int advice) {
  if (injected(Call::madvise)) return -1;
  return ::madvise(addr, len, advice);
}
int mlock(const void* addr, size_t len) {
  if (injected(Call::mlock)) return -1;
  return ::mlock(addr, len);
}
int close(int fd) {
  if (injected(Call::close)) {
    ::close(fd);  // a failed close still releases the descriptor on Linux
    return -1;
  }
  return ::close(fd);
}
int open(const char* path, int flags) {
  if (injected(Call::open)) return -1;
  return ::open(path, flags);
}
ssize_t read(int fd, void* buf, size_t len) {
  if (injected(Call::read)) return -1;
  return ::read(fd, buf, len);
}

void inject(Call c, int err, uint64_t nth, bool every) {
  Fault& f = g_faults[static_cast<int>(c)];
  f.err.store(0, std::memory_order_relaxed);
  f.fire_at.store(f.calls.load(std::memory_order_relaxed) + (nth ? nth : 1), std::memory_order_relaxed);
  f.every.store(every, std::memory_order_relaxed);
  f.err.store(err, std::memory_order_relaxed);
  g_armed.store(true, std::memory_order_release);
}

void clear_faults() {
  for (Fault& f : g_faults) {
    f.err.store(0, std::memory_order_relaxed);
    f.calls.store(0, std::memory_order_relaxed);
    f.every.store(false, std::memory_order_relaxed);
  }
  g_armed.store(true, std::memory_order_release);  // keep counting calls
}

uint64_t calls(Call c) { return g_faults[static_cast<int>(c)].calls.load(std::memory_order_relaxed); }

const char* call_name(Call c) {
  static const char* const names[kCalls] = {"memfd_secret", "memfd_create", "ftruncate", "mmap", "munmap",
                                            "madvise",      "mlock",        "close",     "open", "read"};
  return names[static_cast<int>(c)];
}

}  // namespace exmem::sys
