// exmem_fuzz_api: libexmem's C API driven by random operation sequences and
// checked against a reference model. Any divergence traps.
//
// The input is a sequence of operations, read front to back (so that seeds can
// be written by hand: fuzz/corpus/gen_api_corpus.py). Each starts with an
// opcode byte followed by its arguments: bytes 0..237 select operations 0..16
// (modulo 17), bytes 238..255 the set-up orders 17..20 (238 + op - 17, modulo 4). Reading past the end yields zeros, and the run stops there.
//
//   op  name            arguments
//   0   alloc           size
//   1   calloc          count, size
//   2   realloc         object, size          (object 255: realloc(NULL, size))
//   3   free            object                (object 255: free(NULL))
//   4   usable_size     object
//   5   write           object, u16 offset, u16 length, u8 seed
//   6   read            object                (every byte against the model)
//   7   remote alloc    size                  (on the second thread)
//   8   remote free     object                (on the second thread)
//   9   remote realloc  object, size          (on the second thread)
//   10  restart thread                        (its heap is retired: orphans)
//   11  burst           size, u8 count, u8 order (alloc count objects, free them)
//   12  stats                                 (live objects and bytes = model)
//   13  share           size                  (create, send to self, recv, release)
//   14  bad share msg   u8 length, bytes, u8 descriptor kind
//   15  free all
//   16  inject fault    u8 call, u8 nth, u8 every (for the next operation only)
//   17  reset                                 (everything freed; the heap back to
//                                             never set up: exmem_testing::reset_heap)
//   18  init            u8 config             (exmem_init: growth, reserve, canaries,
//                                             fork mode, policy; maximum always 8 MiB)
//   19  failed set-up   u8 how                (a first use, exmem_alloc, exmem_protection
//                                             or exmem_share_create, while mmap fails)
//   20  fork                                  (the child allocates, checks and exits;
//                                             the parent waits for it)
//
//   object: one byte, index modulo the number of live objects.
//   size:   a kind byte, then its value (see read_size()): tiny, small, class
//           edges, special values (0, 1, 4096, 4097...), large (to 68 KiB), big
//           (to 1 MiB), huge (which must fail with NULL + errno), raw 64-bit.
//
// exmem_config.maximum is 8 MiB, so that filling the heap stays cheap: every
// page of exclusive memory is faulted in when its region is mapped. After a
// reset, a first use without exmem_init sets the heap up with the defaults,
// which have no maximum: sizes between 8 MiB and what the heap refuses anyway
// (2^46) are then folded to plausible ones. Set-up orders (reset, failed
// set-up, exmem_init, first use, fork, in any order) are how a fork deadlock
// after a failed first use would show: as a hang, which libFuzzer reports.
//
// The model keeps, for each live object, its address, the size asked, its
// usable size and the bytes expected in all of its usable bytes. It checks:
//  - a successful allocation is 16-byte aligned, its usable size is at least
//    the size asked and stays the same while it lives;
//  - no two live objects (nor a shared region) overlap (an interval map);
//  - a new object (alloc, calloc, or the part of a moved realloc past the
//    copied prefix) reads as zeros in all its usable bytes. Free objects are
//    wiped at free and handed out again, so this observes the wipe of every
//    small object without reading freed memory. A large object is wiped and
//    then unmapped at free: that wipe cannot be observed without touching an
//    unmapped page, and is not checked here;
//  - contents are preserved until free: every object is compared with the
//    model before it is realloc'ed or freed, on read, and at the end;
//  - realloc keeps the prefix (min(old usable, new size)); a realloc that
//    fails leaves the object untouched;
//  - an impossible request (a size beyond the configured maximum, up to
//    SIZE_MAX, or a calloc product that overflows) fails with NULL, errno
//    ENOMEM or EINVAL and a last error; a plausible request fails only when
//    the heap's reserved bytes leave no room under the maximum, or under an
//    injected system-call failure;
//  - exmem_stats counts exactly the model's live objects and usable bytes;
//  - a malformed share message is refused with EXMEM_E_PROTOCOL (or another
//    error) and leaks no descriptor.
// Every input ends by freeing everything, so no state of the model leaks into
// the next input (the heap's own state, its regions and slabs, does persist).
//
// Built twice (see EXMEM_FUZZ_LOCKED below). EXMEM_FUZZ_TRACE=1 in the
// environment prints each operation (to read a reproducer).
#include <exmem/exmem.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <iterator>
#include <limits>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "exmem_testing.hpp"

// exmem_fuzz_api: memfd_secret regions, canaries on (the small/large boundary
// at 4088 bytes). exmem_fuzz_api_locked: the locked fallback (EXMEM_LOCKED_ONLY),
// canaries off (the boundary at 4096): the same heap over memory that is far
// cheaper to fault in, so it runs many more inputs per second.
#ifndef EXMEM_FUZZ_LOCKED
#define EXMEM_FUZZ_LOCKED 0
#endif

namespace {

constexpr size_t kMaximum = size_t{8} << 20;  // exmem_config.maximum: keeps every run cheap
constexpr size_t kSmallMax = 4096;
constexpr size_t kPage = 4096;
constexpr size_t kMiB = size_t{1} << 20;
constexpr uint8_t kSetUpOpcodes = 238;  // first opcode byte of the set-up orders (ops 17..20)
constexpr size_t kMaxLive = 4096;  // objects the model keeps at once (more allocations are freed at once)

// ---- Failure ------------------------------------------------------------------

[[noreturn]] void diverge(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void diverge(const char* fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  std::fprintf(stderr, "exmem_fuzz_api: divergence from the model: %s\n  last error: %d %s\n", buf,
               exmem_last_error(), exmem_last_error_message());
  std::fflush(stderr);
  __builtin_trap();
}

#define CHECK(cond, ...)              \
  do {                                \
    if (!(cond)) diverge(__VA_ARGS__); \
  } while (0)

// ---- Input --------------------------------------------------------------------

class Input {
 public:
  Input(const uint8_t* data, size_t size) : p_(data), end_(data + size) {}
  bool done() const { return p_ >= end_; }
  uint8_t u8() { return p_ < end_ ? *p_++ : 0; }
  uint16_t u16() {
    uint16_t lo = u8();
    return static_cast<uint16_t>(lo | (u8() << 8));
  }
  uint64_t u64() {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= uint64_t{u8()} << (8 * i);
    return v;
  }

 private:
  const uint8_t* p_;
  const uint8_t* end_;
};

constexpr uint32_t kClassSize[] = {16,  32,  48,  64,  80,   96,   112,  128,  160,  192,  224,  256,  320,  384,
                                   448, 512, 640, 768, 896, 1024, 1280, 1536, 1792, 2048, 2560, 3072, 3584, 4096};
constexpr size_t kNumClasses = sizeof kClassSize / sizeof kClassSize[0];

constexpr size_t kSpecial[] = {0,    1,    7,    8,     9,     15,    16,    17,          4080,
                               4087, 4088, 4089, 4095,  4096,  4097,  8191,  8192,        8193,
                               65535, 65536, 65537, 131072, 1048575, 1048576, 1048577, 2 * kMiB};
constexpr size_t kHuge[] = {std::numeric_limits<size_t>::max(),
                            std::numeric_limits<size_t>::max() - 1,
                            std::numeric_limits<size_t>::max() - 7,
                            std::numeric_limits<size_t>::max() - 8,
                            std::numeric_limits<size_t>::max() - 15,
                            std::numeric_limits<size_t>::max() - 4095,
                            std::numeric_limits<size_t>::max() - 4096,
                            std::numeric_limits<size_t>::max() / 2,
                            std::numeric_limits<size_t>::max() / 2 + 1,
                            (size_t{1} << 46) + 1,
                            size_t{1} << 47,
                            size_t{64} << 30,
                            size_t{1} << 40,
                            kMaximum + 1,
                            kMaximum + kPage,
                            2 * kMaximum};

// Whether the heap runs with exmem_config.maximum = kMaximum (else: no cap).
bool g_capped = true;

// A size that no heap of this configuration can satisfy. Uncapped, every size
// above kMaximum is folded (fold()) unless the heap refuses it anyway.
bool impossible(size_t n) { return n > kMaximum; }

constexpr size_t kLargestObject = size_t{1} << 46;  // the heap refuses larger objects

size_t fold(size_t n) {
  if (g_capped || n <= kMaximum || n > kLargestObject) return n;
  return n % (kSmallMax + 65537);
}

size_t read_size_unfolded(Input& in);
size_t read_size(Input& in) { return fold(read_size_unfolded(in)); }

size_t read_size_unfolded(Input& in) {
  // Kinds by weight (of 32): tiny 8, small 8, class edge 6, special 4, large 2,
  // big 1, huge 2, raw 1. Large and big objects are rare because each of their
  // pages is faulted in when mapped (about 0.3 ms a page for memfd_secret).
  uint8_t kind = in.u8() % 32;
  if (kind < 8) return in.u8();                         // tiny
  if (kind < 16) return 1 + in.u16() % kSmallMax;       // any small size
  if (kind < 22) {                                      // a class edge: the size, one less, one more
    uint8_t v = in.u8();
    size_t c = kClassSize[v % kNumClasses];
    size_t d = (v / kNumClasses) % 3;
    return d == 0 ? c : d == 1 ? c - 1 : c + 1;
  }
  if (kind < 26) return kSpecial[in.u8() % (sizeof kSpecial / sizeof kSpecial[0])];
  if (kind < 28) return kSmallMax + 1 + in.u16();       // large, up to 68 KiB
  if (kind < 29) {                                      // big: about 256 KiB to 1 MiB
    uint8_t v = in.u8();
    return (1 + v % 4) * (kMiB / 4) - (v >> 2);
  }
  if (kind < 31) return kHuge[in.u8() % (sizeof kHuge / sizeof kHuge[0])];
  uint64_t v = in.u64();  // raw; a plausible raw size is folded to at most 68 KiB
  return impossible(v) ? v : v % (kSmallMax + 65537);
}

size_t read_count(Input& in) {
  uint8_t k = in.u8();
  switch (k % 4) {
    case 0:
      return in.u8();
    case 1:
      return std::numeric_limits<size_t>::max() >> (in.u8() % 64);
    case 2:
      return size_t{1} << (in.u8() % 64);
    default:
      return in.u16();
  }
}

// Bytes of a write: a xorshift stream from seed, never all zero.
void fill_bytes(uint8_t* dst, size_t n, uint64_t seed) {
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;
  for (size_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    dst[i] = static_cast<uint8_t>(x >> 24);
  }
}

// Index of the first byte of [p, p+n) that is not zero, or n. Through memcmp:
// a loop here would be instrumented for coverage, byte by byte.
size_t first_nonzero(const uint8_t* p, size_t n) {
  static const uint8_t zeros[4096] = {};
  for (size_t at = 0; at < n; at += sizeof zeros) {
    size_t k = std::min(sizeof zeros, n - at);
    if (std::memcmp(p + at, zeros, k) != 0) {
      while (p[at] == 0) ++at;
      return at;
    }
  }
  return n;
}

// ---- The second thread ----------------------------------------------------------

// Runs tasks one at a time on its own thread (so on its own thread heap), while
// the caller waits: the run stays deterministic.
class Remote {
 public:
  Remote() { start(); }
  ~Remote() { stop(); }
  void run(const std::function<void()>& task) {
    std::unique_lock<std::mutex> l(m_);
    task_ = &task;
    cv_.notify_all();
    cv_.wait(l, [&] { return task_ == nullptr; });
  }
  // Ends the thread (its heap is retired, its slabs orphaned) and starts another.
  void restart() { without_thread([] {}); }
  // Runs f while the thread does not exist (its heap retired), then starts another.
  template <class F>
  void without_thread(F f) {
    stop();
    f();
    start();
  }

 private:
  void start() {
    quit_ = false;
    t_ = std::thread([this] {
      std::unique_lock<std::mutex> l(m_);
      for (;;) {
        cv_.wait(l, [&] { return task_ != nullptr || quit_; });
        if (task_) {
          (*task_)();
          task_ = nullptr;
          cv_.notify_all();
        } else {
          return;
        }
      }
    });
  }
  void stop() {
    {
      std::lock_guard<std::mutex> l(m_);
      quit_ = true;
      cv_.notify_all();
    }
    t_.join();
  }
  std::mutex m_;
  std::condition_variable cv_;
  const std::function<void()>* task_ = nullptr;
  bool quit_ = false;
  std::thread t_;
};

// ---- The model ------------------------------------------------------------------

struct Object {
  uint8_t* p = nullptr;
  size_t asked = 0;
  size_t usable = 0;
  std::vector<uint8_t> bytes;  // expected contents of [p, p + usable)
};

class Model {
 public:
  std::vector<Object> live;
  std::map<uintptr_t, uintptr_t> spans;  // start -> end of every live object and shared region
  bool injecting = false;                // a system call may fail during this operation

  // Whether a failure of an allocation of `size` is plausible: an impossible
  // size, the maximum, or an injected fault. Asked after the failure (a
  // failed allocation leaves the heap's reservation as it was): exmem_stats
  // walks the slab table, too slow to call before every allocation.
  bool may_fail(size_t size) const {
    if (impossible(size) || injecting) return true;
    struct exmem_stats s{};
    exmem_stats(&s);
    size_t need = (size + kPage - 1) / kPage * kPage + (size_t{64} << 10);
    return s.reserved_bytes + need > kMaximum;
  }

  void add_span(const void* p, size_t n, const char* what) {
    auto a = reinterpret_cast<uintptr_t>(p);
    uintptr_t b = a + n;
    auto next = spans.lower_bound(a);
    if (next != spans.end())
      CHECK(next->first >= b, "%s %p (+%zu) overlaps the live object at %#lx..%#lx", what, p, n, next->first,
            next->second);
    if (next != spans.begin()) {
      auto prev = std::prev(next);
      CHECK(prev->second <= a, "%s %p (+%zu) overlaps the live object at %#lx..%#lx", what, p, n, prev->first,
            prev->second);
    }
    spans.emplace(a, b);
  }
  void remove_span(const void* p) {
    auto it = spans.find(reinterpret_cast<uintptr_t>(p));
    CHECK(it != spans.end(), "model: no span at %p", p);
    spans.erase(it);
  }

  // A new object from alloc/calloc/realloc(NULL): checks it and records it as zeros.
  void adopt(void* v, size_t asked, const char* what) {
    auto* p = static_cast<uint8_t*>(v);
    CHECK((reinterpret_cast<uintptr_t>(p) & 15) == 0, "%s(%zu) = %p is not 16-byte aligned", what, asked, v);
    size_t usable = exmem_usable_size(p);
    CHECK(usable >= asked && usable > 0, "%s(%zu) = %p: usable size %zu is less than asked", what, asked, v,
          usable);
    size_t i = first_nonzero(p, usable);
    CHECK(i == usable, "%s(%zu) = %p: byte %zu of %zu is %#x, not zero (freed memory not wiped?)", what, asked, v,
          i, usable, i < usable ? p[i] : 0);
    add_span(p, usable, what);
    live.push_back(Object{p, asked, usable, std::vector<uint8_t>(usable, 0)});
  }

  void verify(const Object& o, const char* when) const {
    size_t u = exmem_usable_size(o.p);
    CHECK(u == o.usable, "%s: usable size of %p changed from %zu to %zu", when, static_cast<void*>(o.p), o.usable, u);
    if (std::memcmp(o.p, o.bytes.data(), o.usable) != 0) {
      size_t i = 0;
      while (o.p[i] == o.bytes[i]) ++i;
      diverge("%s: object %p (asked %zu, usable %zu) byte %zu is %#x, the model says %#x", when,
              static_cast<void*>(o.p), o.asked, o.usable, i, o.p[i], o.bytes[i]);
    }
  }

  Object take(size_t i) {
    Object o = std::move(live[i]);
    live[i] = std::move(live.back());
    live.pop_back();
    remove_span(o.p);
    return o;
  }

  size_t live_bytes() const {
    size_t n = 0;
    for (const Object& o : live) n += o.usable;
    return n;
  }
};

// A failed allocation: NULL, errno and the calling thread's last error set.
void check_failure(void* p, size_t asked, const char* what, int err, int last) {
  CHECK(p == nullptr, "%s(%zu) must fail but returned %p", what, asked, p);
  CHECK(err == ENOMEM || err == EINVAL, "%s(%zu) failed with errno %d, expected ENOMEM or EINVAL", what, asked, err);
  CHECK(last != EXMEM_OK, "%s(%zu) failed without setting the last error", what, asked);
}

// ---- Operations -----------------------------------------------------------------

struct Fuzzer {
  Model m;
  Remote remote;

  // The model's own containers keep their capacity from one input to the next,
  // so that libFuzzer's leak detection (mallocs against frees per input) sees
  // a balance.
  Fuzzer() { m.live.reserve(kMaxLive + 256); }

  void alloc(size_t size, bool on_remote) {
    void* p = nullptr;
    int err = 0, last = 0;
    auto body = [&] {
      errno = 0;
      p = exmem_alloc(size);
      err = errno;
      last = exmem_last_error();
    };
    if (on_remote)
      remote.run(body);
    else
      body();
    if (std::getenv("EXMEM_FUZZ_TRACE")) std::fprintf(stderr, "  exmem_alloc(%zu) = %p\n", size, p);
    if (impossible(size)) return check_failure(p, size, "exmem_alloc", err, last);
    if (!p) {
      CHECK(m.may_fail(size), "exmem_alloc(%zu) failed (errno %d) though the heap holds little", size, err);
      return check_failure(p, size, "exmem_alloc", err, last);
    }
    m.adopt(p, size, "exmem_alloc");
  }

  void calloc_(size_t n, size_t size) {
    size_t total = 0;
    bool overflow = __builtin_mul_overflow(n, size, &total);
    if (!overflow && fold(total) != total) {
      n = 1;
      total = size;
    }
    errno = 0;
    void* p = exmem_calloc(n, size);
    int err = errno;
    if (overflow || impossible(total)) {
      CHECK(p == nullptr, "exmem_calloc(%zu, %zu) must fail but returned %p", n, size, p);
      CHECK(err == ENOMEM || err == EINVAL, "exmem_calloc(%zu, %zu): errno %d", n, size, err);
      return;
    }
    if (!p) {
      CHECK(m.may_fail(total), "exmem_calloc(%zu, %zu) failed (errno %d) though the heap holds little", n, size, err);
      return check_failure(p, total, "exmem_calloc", err, exmem_last_error());
    }
    m.adopt(p, total, "exmem_calloc");
  }

  void realloc_(uint8_t which, size_t size, bool on_remote) {
    if (which == 255 || m.live.empty()) {
      if (on_remote) return alloc(size, true);
      errno = 0;
      void* p = exmem_realloc(nullptr, size);
      int err = errno;
      if (impossible(size)) return check_failure(p, size, "exmem_realloc(NULL)", err, exmem_last_error());
      if (!p) {
        CHECK(m.may_fail(size), "exmem_realloc(NULL, %zu) failed (errno %d)", size, err);
        return check_failure(p, size, "exmem_realloc(NULL)", err, exmem_last_error());
      }
      return m.adopt(p, size, "exmem_realloc(NULL)");
    }
    size_t i = which % m.live.size();
    m.verify(m.live[i], "before exmem_realloc");
    Object& o = m.live[i];
    void* q = nullptr;
    int err = 0, last = 0;
    auto body = [&] {
      errno = 0;
      q = exmem_realloc(o.p, size);
      err = errno;
      last = exmem_last_error();
    };
    if (on_remote)
      remote.run(body);
    else
      body();
    if (std::getenv("EXMEM_FUZZ_TRACE"))
      std::fprintf(stderr, "  exmem_realloc(%p (usable %zu), %zu) = %p\n", static_cast<void*>(o.p), o.usable, size, q);
    if (size == 0) {  // frees the object and returns NULL
      CHECK(q == nullptr, "exmem_realloc(%p, 0) returned %p, expected NULL", static_cast<void*>(o.p), q);
      m.take(i);
      return;
    }
    if (!q) {
      if (!impossible(size))
        CHECK(m.may_fail(size), "exmem_realloc(%p, %zu) failed (errno %d)", static_cast<void*>(o.p), size, err);
      check_failure(q, size, "exmem_realloc", err, last);
      m.verify(o, "after a failed exmem_realloc");  // untouched
      return;
    }
    CHECK(!impossible(size), "exmem_realloc(%p, %zu) must fail but returned %p", static_cast<void*>(o.p), size, q);
    auto* nq = static_cast<uint8_t*>(q);
    CHECK((reinterpret_cast<uintptr_t>(nq) & 15) == 0, "exmem_realloc(%zu) = %p is not 16-byte aligned", size, q);
    size_t usable = exmem_usable_size(nq);
    CHECK(usable >= size, "exmem_realloc(%p, %zu) = %p: usable size %zu is less than asked",
          static_cast<void*>(o.p), size, q, usable);
    if (nq == o.p) {  // in place: every byte stays
      CHECK(usable == o.usable, "exmem_realloc in place changed the usable size from %zu to %zu", o.usable, usable);
      o.asked = size;
      m.verify(o, "after exmem_realloc in place");
      return;
    }
    Object old = m.take(i);
    size_t keep = std::min(old.usable, size);
    if (std::memcmp(nq, old.bytes.data(), keep) != 0) {
      size_t k = 0;
      while (nq[k] == old.bytes[k]) ++k;
      diverge("exmem_realloc(%p, %zu) = %p lost the prefix: byte %zu of %zu is %#x, was %#x",
              static_cast<void*>(old.p), size, q, k, keep, nq[k], old.bytes[k]);
    }
    size_t z = keep + first_nonzero(nq + keep, usable - keep);
    CHECK(z == usable, "exmem_realloc(%p, %zu) = %p: byte %zu past the copied prefix is %#x, not zero",
          static_cast<void*>(old.p), size, q, z, z < usable ? nq[z] : 0);
    m.add_span(nq, usable, "exmem_realloc");
    Object n{nq, size, usable, std::vector<uint8_t>(usable, 0)};
    std::memcpy(n.bytes.data(), old.bytes.data(), keep);
    m.live.push_back(std::move(n));
  }

  void free_(uint8_t which, bool on_remote) {
    if (which == 255 || m.live.empty()) {
      exmem_free(nullptr);
      return;
    }
    size_t i = which % m.live.size();
    m.verify(m.live[i], "before exmem_free");
    Object o = m.take(i);
    if (on_remote)
      remote.run([&] { exmem_free(o.p); });
    else
      exmem_free(o.p);
  }

  void usable(uint8_t which) {
    CHECK(exmem_usable_size(nullptr) == 0, "exmem_usable_size(NULL) is not 0");
    if (m.live.empty()) return;
    const Object& o = m.live[which % m.live.size()];
    size_t u = exmem_usable_size(o.p);
    CHECK(u == o.usable && u >= o.asked, "exmem_usable_size(%p) = %zu, the model says %zu (asked %zu)",
          static_cast<void*>(o.p), u, o.usable, o.asked);
  }

  void write(uint8_t which, uint16_t off, uint16_t len, uint8_t seed) {
    if (m.live.empty()) return;
    Object& o = m.live[which % m.live.size()];
    // Offsets reach the whole object: scale them to its usable size.
    size_t start = o.usable > 65536 ? static_cast<size_t>(off) * (o.usable / 65536) : off % o.usable;
    size_t n = std::min<size_t>(len, o.usable - start);
    if (len == 0xFFFF) n = o.usable - start;  // all the rest
    fill_bytes(o.bytes.data() + start, n, (uint64_t{seed} << 32) ^ start ^ (n << 16));
    std::memcpy(o.p + start, o.bytes.data() + start, n);
  }

  void read(uint8_t which) {
    if (m.live.empty()) return;
    m.verify(m.live[which % m.live.size()], "read");
  }

  void burst(size_t size, uint8_t count, uint8_t order) {
    // Bursts stay cheap: small objects (past a magazine's worth), a few large ones.
    if (impossible(size) || size > 256 * 1024) size %= kSmallMax + 1;
    if (size > kSmallMax) count = static_cast<uint8_t>(count % 5);
    std::vector<void*> got;
    for (unsigned k = 0; k < count; ++k) {
      void* p = exmem_alloc(size);
      if (!p) {
        CHECK(m.may_fail(size), "exmem_alloc(%zu) failed in a burst (object %u)", size, k);
        break;
      }
      m.adopt(p, size, "exmem_alloc (burst)");
      auto* b = static_cast<uint8_t*>(p);
      Object& o = m.live.back();
      fill_bytes(o.bytes.data(), o.usable, k + 1);
      std::memcpy(b, o.bytes.data(), o.usable);
      got.push_back(p);
    }
    // Free them: in order, in reverse, or every other one first.
    std::vector<void*> seq;
    switch (order % 3) {
      case 0:
        seq = got;
        break;
      case 1:
        seq.assign(got.rbegin(), got.rend());
        break;
      default:
        for (size_t k = 0; k < got.size(); k += 2) seq.push_back(got[k]);
        for (size_t k = 1; k < got.size(); k += 2) seq.push_back(got[k]);
    }
    bool remote_half = order & 4;
    for (size_t k = 0; k < seq.size(); ++k) {
      size_t i = 0;
      while (m.live[i].p != seq[k]) ++i;
      m.verify(m.live[i], "before exmem_free (burst)");
      Object o = m.take(i);
      if (remote_half && (k & 1))
        remote.run([&] { exmem_free(o.p); });
      else
        exmem_free(o.p);
    }
  }

  void stats() {
    struct exmem_stats s{};
    CHECK(exmem_stats(&s) == EXMEM_OK, "exmem_stats failed");
    CHECK(s.live_objects == m.live.size(), "exmem_stats: %zu live objects, the model has %zu", s.live_objects,
          m.live.size());
    CHECK(s.live_bytes == m.live_bytes(), "exmem_stats: %zu live bytes, the model has %zu", s.live_bytes,
          m.live_bytes());
    CHECK(!g_capped || s.reserved_bytes <= kMaximum, "exmem_stats: %zu bytes reserved, above the maximum %zu", s.reserved_bytes,
          kMaximum);
  }

  static int next_fd() {
    int fd = dup(0);
    if (fd >= 0) close(fd);
    return fd;
  }

  void share(size_t size) {
    if (size > kMiB && !impossible(size)) size %= kMiB;
    struct exmem_shared s{};
    int rc = exmem_share_create(size, &s);
    if (size == 0 || size > (size_t{1} << 40)) {
      CHECK(rc == EXMEM_E_INVALID, "exmem_share_create(%zu) = %d, expected EXMEM_E_INVALID", size, rc);
      return;
    }
    if (impossible(size)) {  // shared regions count towards exmem_config.maximum
      CHECK(rc != EXMEM_OK, "exmem_share_create(%zu) succeeded beyond the maximum of %zu bytes", size, kMaximum);
      return;
    }
    if (rc != EXMEM_OK) {
      CHECK(m.may_fail(size), "exmem_share_create(%zu) failed: %d", size, rc);
      return;
    }
    CHECK(s.size >= size && s.size % kPage == 0 && s.fd >= 0, "exmem_share_create(%zu): size %zu, fd %d", size,
          s.size, s.fd);
    m.add_span(s.addr, s.size, "exmem_share_create");
    auto* a = static_cast<uint8_t*>(s.addr);
    size_t nz = first_nonzero(a, s.size);
    CHECK(nz == s.size, "exmem_share_create(%zu): byte %zu is not zero", size, nz);
    fill_bytes(a, s.size, size);
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0, "socketpair: %s", std::strerror(errno));
    rc = exmem_share_send(sv[0], &s);
    if (rc == EXMEM_OK) {
      struct exmem_shared r{};
      rc = exmem_share_recv(sv[1], &r);
      if (rc == EXMEM_OK) {
        CHECK(r.size == s.size && r.protection == s.protection, "exmem_share_recv: size %zu/%zu, protection %d/%d",
              r.size, s.size, r.protection, s.protection);
        m.add_span(r.addr, r.size, "exmem_share_recv");
        CHECK(std::memcmp(r.addr, s.addr, s.size) == 0, "a received share does not hold the sender's bytes");
        static_cast<uint8_t*>(r.addr)[s.size - 1] ^= 0x5A;
        CHECK(a[s.size - 1] == static_cast<uint8_t*>(r.addr)[s.size - 1], "a write through the received share "
                                                                            "is not seen by the sender");
        m.remove_span(r.addr);
        CHECK(exmem_share_release(&r) == EXMEM_OK, "exmem_share_release (received)");
      } else {
        // Both ends live in this process: the received mapping counts towards the maximum too.
        CHECK(m.injecting || (m.may_fail(size) && rc == EXMEM_E_MAXIMUM), "exmem_share_recv of a valid message failed: %d",
              rc);
      }
    } else {
      CHECK(m.injecting, "exmem_share_send failed: %d", rc);
    }
    close(sv[0]);
    close(sv[1]);
    m.remove_span(s.addr);
    CHECK(exmem_share_release(&s) == EXMEM_OK, "exmem_share_release");
  }

  void bad_share(Input& in) {
    uint8_t len = in.u8();
    std::vector<uint8_t> bytes(size_t{len} + 1, 0);
    for (size_t k = 0; k < len; ++k) bytes[k] = in.u8();
    uint8_t kind = in.u8();
    int before = next_fd();
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0, "socketpair: %s", std::strerror(errno));
    // The descriptor passed along: none, an ordinary memfd, /dev/null, two of them.
    int fds[2] = {-1, -1};
    int nfds = 0;
    switch (kind % 4) {
      case 1:
        fds[0] = memfd_create("fuzz", MFD_CLOEXEC);
        if (fds[0] >= 0 && ftruncate(fds[0], 8192) != 0) diverge("ftruncate: %s", std::strerror(errno));
        nfds = 1;
        break;
      case 2:
        fds[0] = open("/dev/null", O_RDWR | O_CLOEXEC);
        nfds = 1;
        break;
      case 3:
        fds[0] = open("/dev/null", O_RDWR | O_CLOEXEC);
        fds[1] = memfd_create("fuzz", MFD_CLOEXEC);
        nfds = 2;
        break;
      default:
        break;
    }
    iovec iov{bytes.data(), len ? len : size_t{1}};
    alignas(cmsghdr) char control[CMSG_SPACE(2 * sizeof(int))] = {};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (nfds) {
      msg.msg_control = control;
      msg.msg_controllen = CMSG_SPACE(static_cast<size_t>(nfds) * sizeof(int));
      cmsghdr* c = CMSG_FIRSTHDR(&msg);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(static_cast<size_t>(nfds) * sizeof(int));
      std::memcpy(CMSG_DATA(c), fds, static_cast<size_t>(nfds) * sizeof(int));
    }
    CHECK(sendmsg(sv[0], &msg, MSG_NOSIGNAL) >= 0, "sendmsg: %s", std::strerror(errno));
    for (int fd : fds)
      if (fd >= 0) close(fd);
    close(sv[0]);  // the receiver sees the end of the stream after the message
    struct exmem_shared r{};
    int rc = exmem_share_recv(sv[1], &r);
    // Nothing here is a memfd_secret file (or a memfd that claims to be
    // locked with a valid header): nothing may be accepted as exclusive memory.
    if (rc == EXMEM_OK) {
      CHECK(r.protection == EXMEM_PROT_LOCKED && (kind % 4) == 1,
            "exmem_share_recv accepted a malformed message (protection %d, descriptor kind %u)", r.protection,
            kind % 4);
      exmem_share_release(&r);
    } else {
      CHECK(rc == EXMEM_E_PROTOCOL || rc == EXMEM_E_SYSTEM || rc == EXMEM_E_MEMLOCK || rc == EXMEM_E_NO_MEMORY ||
                rc == EXMEM_E_MAXIMUM,
            "exmem_share_recv of a malformed message returned %d", rc);
    }
    close(sv[1]);
    int after = next_fd();
    CHECK(after == before, "exmem_share_recv leaked a descriptor (the next free one was %d, now %d)", before, after);
  }

  void free_all() {
    while (!m.live.empty()) {
      m.verify(m.live.back(), "before exmem_free (free all)");
      Object o = m.take(m.live.size() - 1);
      exmem_free(o.p);
    }
  }

  void inject(uint8_t call, uint8_t nth, uint8_t every) {
    using exmem::testing::Call;
    // The calls before Call::mprotect: only vaults call mprotect, which this
    // target does not exercise, and the committed corpus was made with them.
    auto c = static_cast<Call>(call % static_cast<int>(Call::mprotect));
    // Not EINTR: the callers retry it, and an endless EINTR is no real kernel's.
    static constexpr int kErrs[] = {ENOMEM, EAGAIN, EPERM, EMFILE, EFAULT, ENOSYS};
    exmem::testing::clear_faults();
    exmem::testing::inject(c, kErrs[(every >> 1) % (sizeof kErrs / sizeof kErrs[0])], 1 + nth % 4, every & 1);
    m.injecting = true;
  }

  // ---- Set-up orders ----

  // What LLVMFuzzerInitialize sets up, and what every input starts from.
  static exmem_config standard_config() {
    exmem_config cfg{};
    cfg.maximum = kMaximum;
    cfg.canaries = EXMEM_FUZZ_LOCKED ? 0 : 1;
    cfg.policy = EXMEM_FUZZ_LOCKED ? EXMEM_LOCKED_ONLY : EXMEM_PREFER_SECRET;
    cfg.quiet = 1;
    return cfg;
  }
  // The configuration in force, or to be used by the next set-up.
  exmem_config config = standard_config();

  // Whether exmem_init would take a as a repeat of b (the library's rule).
  static bool same_request(const exmem_config& a, const exmem_config& b) {
    return a.reserve == b.reserve && a.growth == b.growth && a.maximum == b.maximum && a.policy == b.policy &&
           a.fork_mode == b.fork_mode && (a.canaries != 0) == (b.canaries != 0) && (a.quiet != 0) == (b.quiet != 0);
  }

  // Whether the heap is set up (exmem_stats does not set it up).
  static bool set_up() {
    struct exmem_stats s{};
    exmem_stats(&s);
    return s.protection != EXMEM_PROT_NONE;
  }

  void reset() {
    free_all();
    remote.without_thread([] { exmem::testing::reset_heap(); });
    CHECK(!set_up(), "the heap is still set up after reset_heap()");
    config = exmem_config{};  // a first use now takes the defaults: no maximum
    g_capped = false;
  }

  void init(uint8_t v) {
    static constexpr size_t kGrowth[] = {0, size_t{64} << 10, size_t{1} << 20, size_t{3} << 20};
    static constexpr size_t kReserve[] = {0, size_t{64} << 10, size_t{1} << 20, size_t{64} << 10};
    exmem_config c = standard_config();
    c.growth = kGrowth[v & 3];
    c.reserve = kReserve[(v >> 2) & 3];
    c.canaries = (v >> 4) & 1;
    c.fork_mode = (v >> 5) & 1 ? EXMEM_FORK_SHARE : EXMEM_FORK_PRIVATE;
    if (!EXMEM_FUZZ_LOCKED && ((v >> 6) & 1)) c.policy = EXMEM_REQUIRE_SECRET;
    bool was_set_up = set_up();
    int rc = exmem_init(&c);
    if (was_set_up) {
      int want = same_request(c, config) ? EXMEM_OK : EXMEM_E_ALREADY;
      CHECK(rc == want, "exmem_init on a set-up heap returned %d, expected %d", rc, want);
      return;
    }
    // Before set-up, the configuration replaces the last one, even when set-up fails.
    config = c;
    g_capped = true;
    CHECK(rc == EXMEM_OK || m.injecting || (c.policy == EXMEM_REQUIRE_SECRET && rc == EXMEM_E_NO_SECRET),
          "exmem_init before set-up returned %d", rc);
    CHECK((rc == EXMEM_OK) == set_up(), "exmem_init returned %d, but the heap is %sset up", rc,
          set_up() ? "" : "not ");
  }

  // A first use while mmap fails: every mmap (the reservation, at each size
  // tried) or the second one (the slab table, after the reservation).
  void failed_set_up(uint8_t how) {
    if (set_up()) return;  // only a first use sets up
    using exmem::testing::Call;
    exmem::testing::clear_faults();
    if (how & 4)
      exmem::testing::inject(Call::mmap, ENOMEM, 2, false);
    else
      exmem::testing::inject(Call::mmap, ENOMEM, 1, true);
    switch (how % 3) {
      case 0: {
        errno = 0;
        void* p = exmem_alloc(32);
        CHECK(p == nullptr && errno == ENOMEM, "exmem_alloc with mmap failing at set-up returned %p (errno %d)", p,
              errno);
        break;
      }
      case 1:
        CHECK(exmem_protection() == EXMEM_PROT_NONE, "exmem_protection with mmap failing at set-up: %d",
              exmem_protection());
        break;
      default: {
        struct exmem_shared sh{};
        CHECK(exmem_share_create(4096, &sh) != EXMEM_OK, "exmem_share_create with mmap failing at set-up succeeded");
        break;
      }
    }
    CHECK(exmem_last_error() != EXMEM_OK, "a failed set-up recorded no error");
    exmem::testing::clear_faults();
    CHECK(!set_up(), "a failed set-up left the heap set up");
  }

  // In the forked child: its own heap works, and with EXMEM_FORK_SHARE the
  // parent's objects read as the model says. Returns the exit code.
  int child_checks() {
    exmem::testing::clear_faults();
    auto* p = static_cast<uint8_t*>(exmem_alloc(48));
    if (!p) return 2;
    if (first_nonzero(p, 48) != 48) return 3;
    std::memset(p, 0x5a, 48);
    if (config.fork_mode == EXMEM_FORK_SHARE)
      for (const Object& o : m.live)
        if (std::memcmp(o.p, o.bytes.data(), o.usable) != 0) return 4;
    exmem_free(p);
    struct exmem_stats s{};
    if (exmem_stats(&s) != EXMEM_OK || s.live_objects != 0) return 5;
    return 0;
  }

  void fork_() {
    std::fflush(nullptr);
    // A deadlock in the fork handlers hangs fork() itself: libFuzzer reports
    // the timeout. One in the child shows here.
    pid_t pid = fork();
    CHECK(pid >= 0, "fork: %s", std::strerror(errno));
    if (pid == 0) _exit(child_checks());
    int status = 0;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    pid_t got;
    while ((got = waitpid(pid, &status, WNOHANG)) == 0 && std::chrono::steady_clock::now() < deadline) usleep(500);
    if (got == 0) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      diverge("the forked child did not exit within 10 s (a deadlock in the heap's fork handling?)");
    }
    CHECK(got == pid, "waitpid: %s", std::strerror(errno));
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "the forked child failed its checks: status %#x (exit code 2: no allocation, 3: not zeroed, 4: the "
          "parent's objects differ, 5: stats)",
          status);
  }

  void run(Input& in) {
    static const bool trace = std::getenv("EXMEM_FUZZ_TRACE") != nullptr;
    static const char* const names[] = {"alloc",        "calloc",        "realloc",     "free",  "usable_size",
                                        "write",        "read",          "remote alloc", "remote free",
                                        "remote realloc", "restart thread", "burst",      "stats", "share",
                                        "bad share",    "free all",      "inject",       "reset",
                                        "init",         "failed set-up", "fork"};
    while (!in.done()) {
      bool was_injecting = m.injecting;
      // Opcode bytes 238..255 are the set-up orders (each costs a set-up or a
      // fork, so they stay rarer than the heap's own operations); the rest
      // select operations 0..16 modulo 17.
      uint8_t b = in.u8();
      auto op = static_cast<uint8_t>(b < kSetUpOpcodes ? b % 17 : 17 + (b - kSetUpOpcodes) % 4);
      if (trace) std::fprintf(stderr, "op %s (%zu live)\n", names[op], m.live.size());
      switch (op) {
        case 0:
          alloc(read_size(in), false);
          break;
        case 1: {
          size_t n = read_count(in);
          calloc_(n, read_size(in));
          break;
        }
        case 2: {
          uint8_t w = in.u8();
          realloc_(w, read_size(in), false);
          break;
        }
        case 3:
          free_(in.u8(), false);
          break;
        case 4:
          usable(in.u8());
          break;
        case 5: {
          uint8_t w = in.u8();
          uint16_t off = in.u16();
          uint16_t len = in.u16();
          write(w, off, len, in.u8());
          break;
        }
        case 6:
          read(in.u8());
          break;
        case 7:
          alloc(read_size(in), true);
          break;
        case 8:
          free_(in.u8(), true);
          break;
        case 9: {
          uint8_t w = in.u8();
          realloc_(w, read_size(in), true);
          break;
        }
        case 10:
          remote.restart();
          break;
        case 11: {
          size_t size = read_size(in);
          uint8_t count = in.u8();
          burst(size, count, in.u8());
          break;
        }
        case 12:
          if (!m.injecting) stats();
          break;
        case 13:
          share(read_size(in));
          break;
        case 14:
          bad_share(in);
          break;
        case 15:
          free_all();
          break;
        case 16: {
          uint8_t call = in.u8();
          uint8_t nth = in.u8();
          inject(call, nth, in.u8());
          break;
        }
        case 17:
          reset();
          break;
        case 18:
          init(in.u8());
          break;
        case 19:
          failed_set_up(in.u8());
          break;
        default:
          fork_();
          break;
      }
      if (was_injecting) {  // a fault lasts for one operation
        exmem::testing::clear_faults();
        m.injecting = false;
      }
      if (m.live.size() > kMaxLive) free_all();
    }
    exmem::testing::clear_faults();
    m.injecting = false;
    for (const Object& o : m.live) m.verify(o, "at the end of the input");
    free_all();
    stats();
    // The next input starts from the standard configuration.
    if (!same_request(config, standard_config())) {
      reset();
      exmem_config std_cfg = standard_config();
      CHECK(exmem_init(&std_cfg) == EXMEM_OK, "exmem_init of the standard configuration after a reset failed");
      config = std_cfg;
      g_capped = true;
    }
  }
};

Fuzzer* g_fuzzer = nullptr;

}  // namespace

// glibc's record of a thread_local destructor (the heap's per-thread exit
// hook) lives until its thread exits; LeakSanitizer, run at the process's exit
// while the main thread and the second thread still hold theirs, reports it.
extern "C" const char* __lsan_default_suppressions() { return "leak:__cxa_thread_atexit_impl\n"; }

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Without CAP_IPC_LOCK, RLIMIT_MEMLOCK must leave room for the maximum (the
  // model does not expect EXMEM_E_MEMLOCK).
  rlimit rl{};
  if (getrlimit(RLIMIT_MEMLOCK, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < 2 * kMaximum) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_MEMLOCK, &rl);
    getrlimit(RLIMIT_MEMLOCK, &rl);
    if (geteuid() != 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < 2 * kMaximum) {
      std::fprintf(stderr, "exmem_fuzz_api: RLIMIT_MEMLOCK is %llu bytes; it needs %zu (run as root or raise it "
                           "with `ulimit -l`)\n",
                   static_cast<unsigned long long>(rl.rlim_cur), 2 * kMaximum);
      std::abort();
    }
  }
  struct exmem_config cfg = Fuzzer::standard_config();
  if (exmem_init(&cfg) != EXMEM_OK) {
    std::fprintf(stderr, "exmem_fuzz_api: exmem_init failed: %s\n", exmem_last_error_message());
    std::abort();
  }
  if (!EXMEM_FUZZ_LOCKED && exmem_protection() != EXMEM_PROT_SECRET)
    std::fprintf(stderr, "exmem_fuzz_api: memfd_secret is unavailable here: fuzzing the locked fallback\n");
  g_fuzzer = new Fuzzer();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in(data, size);
  g_fuzzer->run(in);
  return 0;
}
