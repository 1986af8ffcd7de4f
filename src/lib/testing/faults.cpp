#include <atomic>
#include <cerrno>

#include "exmem_testing.hpp"

namespace exmem::testing {

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

}  // namespace

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
  static const char* const names[kCalls] = {"memfd_secret", "memfd_create", "ftruncate", "mmap",    "munmap",
                                            "madvise",      "mlock",        "close",     "open",    "read",
                                            "sendmsg",      "recvmsg",      "fstatfs",   "mprotect"};
  return names[static_cast<int>(c)];
}

}  // namespace exmem::testing
