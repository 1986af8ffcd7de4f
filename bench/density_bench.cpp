// Density of exmem's heap, and how many secrets fit under a memlock limit.
//
// (a) 1,000,000 live 32-byte secrets, each written with its own contents and all
//     checked afterwards: exclusive memory used (exmem_stats and, independently,
//     the secretmem mappings in /proc/self/maps) and VMAs added to the process.
//     Targets: at most 48 MiB of exclusive memory, at most 64 VMAs.
// (b) In forked children that dropped CAP_IPC_LOCK and set RLIMIT_MEMLOCK to
//     8 MiB: live 32-byte secrets allocated until the allocator says no, for
//     exmem, libsodium sodium_malloc and one memfd_secret per secret.
//     Target for exmem: at least 200,000.
// (c) Informational: the slowest single exmem_alloc call while the heap grows
//     to 1,000,000 secrets, by default and after exmem_init reserved 32 MiB.
// The program exits 0 whatever the outcome; PASS/FAIL lines say what was met.

// exmem.h declares a function and a struct both named exmem_stats, which g++'s
// -Wshadow reports as the function hiding the struct's constructor.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wshadow"
#include <exmem/exmem.h>
#pragma GCC diagnostic pop

#include <sodium.h>
#include <sys/capability.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "host/secret.hpp"

namespace {

constexpr std::size_t kSize = 32;
constexpr std::size_t kMillion = 1000000;
constexpr std::size_t kTargetExclusiveBytes = 48u << 20;
constexpr std::size_t kTargetVmas = 64;
constexpr rlim_t kMemlockLimit = 8u << 20;
constexpr std::uint64_t kTargetUnderLimit = 200000;
constexpr std::uint64_t kExmemBound = 5000000;   // > 8 MiB / 32 B: the limit stops it first
constexpr std::uint64_t kSodiumBound = 2000000;  // bounds the time libsodium may take...
constexpr double kSodiumSeconds = 20.0;          // ...and so does this
constexpr std::uint64_t kMemfdBound = 200000;
constexpr double kSlowCall = 1e-3;               // (c): calls slower than 1 ms
constexpr std::size_t kReserve = 32u << 20;      // (c): exmem_init reservation

const char* pass(bool ok) { return ok ? "PASS" : "FAIL"; }

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// ---- /proc ---------------------------------------------------------------

struct MapsInfo {
  std::size_t vmas = 0;            // lines of /proc/self/maps
  std::size_t secretmem_vmas = 0;  // mappings of memfd_secret files
  std::size_t secretmem_bytes = 0;
};

MapsInfo read_maps() {
  MapsInfo m;
  std::ifstream in("/proc/self/maps");
  std::string line;
  while (std::getline(in, line)) {
    ++m.vmas;
    if (line.find("secretmem") != std::string::npos) {
      ++m.secretmem_vmas;
      unsigned long lo = 0, hi = 0;
      if (std::sscanf(line.c_str(), "%lx-%lx", &lo, &hi) == 2) m.secretmem_bytes += hi - lo;
    }
  }
  return m;
}

long status_kib(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const std::size_t n = std::strlen(field);
  while (std::getline(in, line)) {
    if (line.compare(0, n, field) == 0 && line.size() > n && line[n] == ':')
      return std::strtol(line.c_str() + n + 1, nullptr, 10);
  }
  return -1;
}

long read_long_file(const char* path) {
  std::ifstream in(path);
  long v = -1;
  in >> v;
  return v;
}

double mib(std::size_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0); }

// ---- (a) a million live secrets ----------------------------------------------

struct DensityResult {
  std::size_t allocated = 0;
  std::string failure;  // empty if all were allocated
  std::size_t bad_contents = 0;
  double alloc_seconds = 0, free_seconds = 0;
  MapsInfo before, after;
  long rss_before_kib = 0, rss_after_kib = 0;
  struct exmem_stats stats {};
  struct exmem_stats stats_after_free {};
  int protection = EXMEM_PROT_NONE;
};

void fill(void* p, std::uint64_t i) {
  std::uint64_t words[kSize / 8];
  for (std::size_t w = 0; w < kSize / 8; ++w) words[w] = i * 0x9E3779B97F4A7C15ull + w;
  std::memcpy(p, words, kSize);
}

bool check(const void* p, std::uint64_t i) {
  std::uint64_t words[kSize / 8];
  for (std::size_t w = 0; w < kSize / 8; ++w) words[w] = i * 0x9E3779B97F4A7C15ull + w;
  return std::memcmp(p, words, kSize) == 0;
}

DensityResult run_density() {
  DensityResult r;
  // The pointer table is allocated and touched before the first count, so that
  // the VMAs counted after are the heap's.
  std::vector<void*> ptrs(kMillion, nullptr);
  r.before = read_maps();
  r.rss_before_kib = status_kib("VmRSS");

  const auto t0 = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < kMillion; ++i) {
    void* p = exmem_alloc(kSize);
    if (!p) {
      r.failure = std::string("exmem_alloc failed at #") + std::to_string(i) + ": " + exmem_last_error_message();
      break;
    }
    fill(p, i);
    ptrs[i] = p;
    ++r.allocated;
  }
  r.alloc_seconds = seconds_since(t0);

  r.protection = exmem_protection();
  exmem_stats(&r.stats);
  r.after = read_maps();
  r.rss_after_kib = status_kib("VmRSS");
  for (std::size_t i = 0; i < r.allocated; ++i)
    if (!check(ptrs[i], i)) ++r.bad_contents;

  const auto t1 = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < r.allocated; ++i) exmem_free(ptrs[i]);
  r.free_seconds = seconds_since(t1);
  exmem_stats(&r.stats_after_free);
  return r;
}

// ---- (b) children under RLIMIT_MEMLOCK without CAP_IPC_LOCK ----------------------

struct ChildReport {
  int setup_ok = 0;
  char setup[256] = {};
  std::uint64_t count = 0;
  int bound_reached = 0;
  int time_bound_reached = 0;
  std::uint64_t guarded = 0;   // libsodium: secrets with both guard pages in place
  long first_unguarded = -1;   // libsodium: index of the first one without
  // (c) latency of single calls while the heap grows
  double init_seconds = 0;     // exmem_init with a reservation
  double worst_call = 0;       // slowest exmem_alloc, seconds
  std::uint64_t worst_index = 0;
  std::uint64_t slow_calls = 0;  // calls over kSlowCall
  double slow_seconds = 0;     // their total
  int err = 0;          // errno when it stopped
  char where[64] = {};  // the call that failed
  char message[768] = {};
  double seconds = 0;
  long vmas = 0;
  long vmlck_kib = 0;
  struct exmem_stats stats {};
};

void copy(char* dst, std::size_t n, const std::string& s) {
  std::snprintf(dst, n, "%s", s.c_str());
}

// Drops CAP_IPC_LOCK from the effective, permitted and inheritable sets and
// sets RLIMIT_MEMLOCK (soft and hard) to kMemlockLimit.
bool restrict_memlock(ChildReport& rep) {
  std::string what;
  cap_t caps = cap_get_proc();
  if (!caps) {
    copy(rep.setup, sizeof rep.setup, std::string("cap_get_proc: ") + std::strerror(errno));
    return false;
  }
  cap_value_t ipc_lock[] = {CAP_IPC_LOCK};
  bool ok = cap_set_flag(caps, CAP_EFFECTIVE, 1, ipc_lock, CAP_CLEAR) == 0 &&
            cap_set_flag(caps, CAP_PERMITTED, 1, ipc_lock, CAP_CLEAR) == 0 &&
            cap_set_flag(caps, CAP_INHERITABLE, 1, ipc_lock, CAP_CLEAR) == 0 && cap_set_proc(caps) == 0;
  cap_free(caps);
  if (!ok) {
    copy(rep.setup, sizeof rep.setup, std::string("dropping CAP_IPC_LOCK: ") + std::strerror(errno));
    return false;
  }
  caps = cap_get_proc();
  cap_flag_value_t eff = CAP_SET, perm = CAP_SET;
  if (caps) {
    cap_get_flag(caps, CAP_IPC_LOCK, CAP_EFFECTIVE, &eff);
    cap_get_flag(caps, CAP_IPC_LOCK, CAP_PERMITTED, &perm);
    cap_free(caps);
  }
  if (eff != CAP_CLEAR || perm != CAP_CLEAR) {
    copy(rep.setup, sizeof rep.setup, "CAP_IPC_LOCK still set after cap_set_proc");
    return false;
  }
  const rlimit lim{kMemlockLimit, kMemlockLimit};
  if (setrlimit(RLIMIT_MEMLOCK, &lim) != 0) {
    copy(rep.setup, sizeof rep.setup, std::string("setrlimit(RLIMIT_MEMLOCK): ") + std::strerror(errno));
    return false;
  }
  copy(rep.setup, sizeof rep.setup, "CAP_IPC_LOCK dropped (effective, permitted), RLIMIT_MEMLOCK = 8 MiB");
  return true;
}

void child_exmem(ChildReport& rep) {
  const auto t0 = std::chrono::steady_clock::now();
  std::uint64_t n = 0;
  for (; n < kExmemBound; ++n) {
    void* p = exmem_alloc(kSize);
    if (!p) {
      rep.err = errno;
      copy(rep.where, sizeof rep.where, "exmem_alloc returned NULL");
      copy(rep.message, sizeof rep.message, exmem_last_error_message());
      break;
    }
    fill(p, n);  // live and written; never freed
  }
  rep.seconds = seconds_since(t0);
  rep.count = n;
  rep.bound_reached = n == kExmemBound;
  exmem_stats(&rep.stats);
}

struct Vma {
  std::uintptr_t lo, hi;
  bool no_access;  // "---p": a guard page
};

// Whether the pages just below and just above [p, p + n) are guard pages.
bool guarded(const std::vector<Vma>& maps, const void* p, std::size_t n, std::uintptr_t page) {
  const auto addr = reinterpret_cast<std::uintptr_t>(p);
  const std::uintptr_t below = (addr & ~(page - 1)) - page;
  const std::uintptr_t above = (addr + n + page - 1) & ~(page - 1);
  auto no_access_at = [&](std::uintptr_t a) {
    auto it = std::upper_bound(maps.begin(), maps.end(), a, [](std::uintptr_t x, const Vma& v) { return x < v.lo; });
    if (it == maps.begin()) return false;
    --it;
    return a < it->hi && it->no_access;
  };
  return no_access_at(below) && no_access_at(above);
}

void child_sodium(ChildReport& rep) {
  if (sodium_init() < 0) {
    copy(rep.where, sizeof rep.where, "sodium_init failed");
    return;
  }
  // Reserved up front: no allocation of the benchmark itself once the
  // process runs out of mappings.
  std::vector<void*> ptrs;
  ptrs.reserve(kSodiumBound);
  std::vector<Vma> maps;
  maps.reserve(static_cast<std::size_t>(read_long_file("/proc/sys/vm/max_map_count")) + 1024);

  const auto t0 = std::chrono::steady_clock::now();
  std::uint64_t n = 0;
  for (; n < kSodiumBound; ++n) {
    void* p = sodium_malloc(kSize);
    if (!p) {
      rep.err = errno;
      copy(rep.where, sizeof rep.where, "sodium_malloc returned NULL");
      break;
    }
    fill(p, n);
    ptrs.push_back(p);
    if ((n & 1023) == 0 && seconds_since(t0) > kSodiumSeconds) {
      ++n;
      rep.time_bound_reached = 1;
      break;
    }
  }
  rep.seconds = seconds_since(t0);
  rep.count = n;
  rep.bound_reached = n == kSodiumBound || rep.time_bound_reached;

  // Which of them kept their guard pages: libsodium ignores the result of its
  // mprotect (and mlock) calls, and past vm.max_map_count they fail.
  std::ifstream in("/proc/self/maps");
  std::string line;
  while (std::getline(in, line)) {
    unsigned long lo = 0, hi = 0;
    char perms[5] = {};
    if (std::sscanf(line.c_str(), "%lx-%lx %4s", &lo, &hi, perms) == 3)
      maps.push_back(Vma{lo, hi, std::strncmp(perms, "---", 3) == 0});
  }
  const auto page = static_cast<std::uintptr_t>(sysconf(_SC_PAGESIZE));
  for (std::size_t i = 0; i < ptrs.size(); ++i) {
    if (guarded(maps, ptrs[i], kSize, page)) {
      ++rep.guarded;
    } else if (rep.first_unguarded < 0) {
      rep.first_unguarded = static_cast<long>(i);
    }
  }
}

void child_memfd_per_secret(ChildReport& rep) {
  const long page = sysconf(_SC_PAGESIZE);
  const auto t0 = std::chrono::steady_clock::now();
  std::uint64_t n = 0;
  for (; n < kMemfdBound; ++n) {
    const long fd = exmem::host::memfd_secret(0);
    if (fd < 0) {
      rep.err = errno;
      copy(rep.where, sizeof rep.where, "memfd_secret");
      break;
    }
    if (ftruncate(static_cast<int>(fd), page) != 0) {
      rep.err = errno;
      copy(rep.where, sizeof rep.where, "ftruncate");
      close(static_cast<int>(fd));
      break;
    }
    void* p = mmap(nullptr, static_cast<std::size_t>(page), PROT_READ | PROT_WRITE, MAP_SHARED,
                   static_cast<int>(fd), 0);
    if (p == MAP_FAILED) {
      rep.err = errno;
      copy(rep.where, sizeof rep.where, "mmap");
      close(static_cast<int>(fd));
      break;
    }
    close(static_cast<int>(fd));  // the mapping keeps the file: no descriptor limit in the way
    fill(p, n);
  }
  rep.seconds = seconds_since(t0);
  rep.count = n;
  rep.bound_reached = n == kMemfdBound;
}

// (c) Every call timed: growing the heap creates a region and pre-faults all
// its pages inside one exmem_alloc call.
void time_calls(ChildReport& rep) {
  const auto t0 = std::chrono::steady_clock::now();
  std::uint64_t n = 0;
  for (; n < kMillion; ++n) {
    const auto c0 = std::chrono::steady_clock::now();
    void* p = exmem_alloc(kSize);
    const double d = seconds_since(c0);
    if (!p) {
      rep.err = errno;
      copy(rep.where, sizeof rep.where, "exmem_alloc returned NULL");
      copy(rep.message, sizeof rep.message, exmem_last_error_message());
      break;
    }
    fill(p, n);
    if (d > rep.worst_call) {
      rep.worst_call = d;
      rep.worst_index = n;
    }
    if (d > kSlowCall) {
      ++rep.slow_calls;
      rep.slow_seconds += d;
    }
  }
  rep.seconds = seconds_since(t0);
  rep.count = n;
  exmem_stats(&rep.stats);
}

void child_latency_default(ChildReport& rep) { time_calls(rep); }

void child_latency_reserved(ChildReport& rep) {
  exmem_config cfg{};
  cfg.reserve = kReserve;
  const auto t0 = std::chrono::steady_clock::now();
  const int rc = exmem_init(&cfg);
  rep.init_seconds = seconds_since(t0);
  if (rc != EXMEM_OK) {
    copy(rep.where, sizeof rep.where, "exmem_init failed");
    copy(rep.message, sizeof rep.message, exmem_last_error_message());
    return;
  }
  time_calls(rep);
}

struct ChildOutcome {
  ChildReport rep;
  bool got_report = false;
  std::string exit;  // how the child ended
};

ChildOutcome run_child(void (*body)(ChildReport&), bool limit_memlock) {
  ChildOutcome out;
  int fds[2];
  if (pipe(fds) != 0) {
    out.exit = std::string("pipe: ") + std::strerror(errno);
    return out;
  }
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = fork();
  if (pid < 0) {
    out.exit = std::string("fork: ") + std::strerror(errno);
    close(fds[0]);
    close(fds[1]);
    return out;
  }
  if (pid == 0) {
    close(fds[0]);
    // Static storage: the report must not need the heap once memory runs out.
    static ChildReport rep;
    rep.setup_ok = limit_memlock ? (restrict_memlock(rep) ? 1 : 0) : 1;
    if (rep.setup_ok) {
      body(rep);
      rep.vmas = static_cast<long>(read_maps().vmas);
      rep.vmlck_kib = status_kib("VmLck");
    }
    const char* p = reinterpret_cast<const char*>(&rep);
    std::size_t left = sizeof rep;
    while (left > 0) {
      const ssize_t w = write(fds[1], p, left);
      if (w <= 0) break;
      p += w;
      left -= static_cast<std::size_t>(w);
    }
    _exit(0);
  }
  close(fds[1]);
  char* p = reinterpret_cast<char*>(&out.rep);
  std::size_t got = 0;
  while (got < sizeof out.rep) {
    const ssize_t r = read(fds[0], p + got, sizeof out.rep - got);
    if (r <= 0) break;
    got += static_cast<std::size_t>(r);
  }
  close(fds[0]);
  out.got_report = got == sizeof out.rep;
  int status = 0;
  waitpid(pid, &status, 0);
  if (WIFSIGNALED(status))
    out.exit = std::string("killed by signal ") + std::to_string(WTERMSIG(status)) + " (" +
               strsignal(WTERMSIG(status)) + ")";
  else
    out.exit = "exit " + std::to_string(WEXITSTATUS(status));
  return out;
}

std::string stop_reason(const ChildOutcome& c, std::uint64_t bound) {
  if (!c.got_report) return "no report from the child: " + c.exit;
  if (!c.rep.setup_ok) return std::string("set-up failed: ") + c.rep.setup;
  if (c.rep.time_bound_reached)
    return "never refused: stopped by the benchmark after " + std::to_string(static_cast<int>(kSodiumSeconds)) + " s";
  if (c.rep.bound_reached) return "never refused: stopped by the benchmark at " + std::to_string(bound);
  std::string s = c.rep.where;
  if (c.rep.err) s += std::string(": ") + std::strerror(c.rep.err) + " (errno " + std::to_string(c.rep.err) + ")";
  return s;
}

}  // namespace

int main() {
  const long page = sysconf(_SC_PAGESIZE);
  const long max_map_count = read_long_file("/proc/sys/vm/max_map_count");
  rlimit ml{};
  getrlimit(RLIMIT_MEMLOCK, &ml);
  std::printf("exmem density benchmark: %zu-byte secrets\n", kSize);
  std::printf("  euid %d, page %ld B, vm.max_map_count %ld, RLIMIT_MEMLOCK of this process %s\n",
              static_cast<int>(geteuid()), page, max_map_count,
              ml.rlim_cur == RLIM_INFINITY ? "unlimited" : (std::to_string(ml.rlim_cur / 1024) + " KiB").c_str());

  // (b) runs first, in children forked before this process touches any heap
  // (results are printed after (a)).
  const ChildOutcome ex = run_child(child_exmem, true);
  const ChildOutcome so = run_child(child_sodium, true);
  const ChildOutcome mf = run_child(child_memfd_per_secret, true);
  const ChildOutcome lat_default = run_child(child_latency_default, false);
  const ChildOutcome lat_reserve = run_child(child_latency_reserved, false);

  // (a)
  const DensityResult d = run_density();
  const std::size_t exclusive_stats = d.stats.exclusive_pages * static_cast<std::size_t>(page);
  const std::size_t exclusive_maps = d.after.secretmem_bytes - d.before.secretmem_bytes;
  const std::size_t exclusive = std::max({exclusive_stats, exclusive_maps, d.stats.reserved_bytes});
  const std::size_t vma_delta = d.after.vmas >= d.before.vmas ? d.after.vmas - d.before.vmas : 0;

  std::printf("\n(a) %zu live %zu-byte secrets, each written, default configuration\n", kMillion, kSize);
  std::printf("  protection                          : %s\n",
              d.protection == EXMEM_PROT_SECRET   ? "EXMEM_PROT_SECRET (memfd_secret)"
              : d.protection == EXMEM_PROT_LOCKED ? "EXMEM_PROT_LOCKED (NOT memfd_secret)"
                                                  : "EXMEM_PROT_NONE");
  std::printf("  allocated                           : %zu%s%s\n", d.allocated, d.failure.empty() ? "" : "  ",
              d.failure.c_str());
  std::printf("  contents intact after all writes    : %s (%zu damaged)\n", d.bad_contents == 0 ? "yes" : "NO",
              d.bad_contents);
  std::printf("  time to allocate+write all          : %.3f s (%.1f ns per secret)\n", d.alloc_seconds,
              d.allocated ? d.alloc_seconds * 1e9 / static_cast<double>(d.allocated) : 0.0);
  std::printf("  time to free all                    : %.3f s (%.1f ns per secret)\n", d.free_seconds,
              d.allocated ? d.free_seconds * 1e9 / static_cast<double>(d.allocated) : 0.0);
  std::printf("  exmem_stats live objects / bytes    : %zu / %.2f MiB (%.1f B per object)\n", d.stats.live_objects,
              mib(d.stats.live_bytes),
              d.stats.live_objects ? static_cast<double>(d.stats.live_bytes) / static_cast<double>(d.stats.live_objects)
                                   : 0.0);
  std::printf("  exmem_stats reserved_bytes          : %.2f MiB\n", mib(d.stats.reserved_bytes));
  std::printf("  exmem_stats exclusive_pages         : %zu (%.2f MiB)\n", d.stats.exclusive_pages,
              mib(exclusive_stats));
  std::printf("  exmem_stats memlock_bytes           : %.2f MiB\n", mib(d.stats.memlock_bytes));
  std::printf("  exmem_stats mappings / regions      : %zu / %zu\n", d.stats.mappings, d.stats.regions);
  std::printf("  /proc/self/maps secretmem mappings  : %zu VMAs, %.2f MiB (added by the run)\n",
              d.after.secretmem_vmas - d.before.secretmem_vmas, mib(exclusive_maps));
  std::printf("  /proc/self/maps VMAs before / after : %zu / %zu (+%zu)\n", d.before.vmas, d.after.vmas, vma_delta);
  std::printf("  VmRSS before / after                : %ld / %ld KiB\n", d.rss_before_kib, d.rss_after_kib);
  std::printf("  exmem_stats after freeing all       : live %zu objects, reserved %.2f MiB, mappings %zu\n",
              d.stats_after_free.live_objects, mib(d.stats_after_free.reserved_bytes), d.stats_after_free.mappings);
  std::printf("  useful bytes / exclusive bytes      : %.1f%%\n",
              exclusive ? 100.0 * static_cast<double>(kMillion * kSize) / static_cast<double>(exclusive) : 0.0);
  const bool all = d.allocated == kMillion && d.bad_contents == 0;
  const bool secret = d.protection == EXMEM_PROT_SECRET;
  std::printf("  %s  all %zu allocated, written and intact\n", pass(all), kMillion);
  std::printf("  %s  exclusive memory <= 48 MiB: %.2f MiB (largest of stats pages, stats reserved, maps)%s\n",
              pass(all && secret && exclusive <= kTargetExclusiveBytes), mib(exclusive),
              secret ? "" : " [not memfd_secret]");
  std::printf("  %s  VMAs <= %zu: +%zu in /proc/self/maps, %zu in exmem_stats\n",
              pass(all && vma_delta <= kTargetVmas && d.stats.mappings <= kTargetVmas), kTargetVmas, vma_delta,
              d.stats.mappings);

  std::printf("\n(b) live %zu-byte secrets in a child without CAP_IPC_LOCK, RLIMIT_MEMLOCK = 8 MiB, until failure\n",
              kSize);
  std::printf("  set-up: %s\n", ex.got_report ? ex.rep.setup : ex.exit.c_str());
  std::printf("  %-30s %12s %10s %10s %10s %12s  %s\n", "allocator", "live secrets", "exmem/peer", "seconds",
              "VMAs", "VmLck KiB", "stopped by");
  struct Line {
    const char* name;
    const ChildOutcome* c;
    std::uint64_t bound;
  };
  for (const Line& l : {Line{"exmem", &ex, kExmemBound}, Line{"libsodium sodium_malloc", &so, kSodiumBound},
                        Line{"one memfd_secret per secret", &mf, kMemfdBound}}) {
    const ChildReport& r = l.c->rep;
    char ratio[32] = "-";
    if (l.c->got_report && r.count > 0 && ex.got_report)
      std::snprintf(ratio, sizeof ratio, "%.1fx", static_cast<double>(ex.rep.count) / static_cast<double>(r.count));
    std::printf("  %-30s %12llu %10s %10.3f %10ld %12ld  %s; child %s\n", l.name,
                static_cast<unsigned long long>(r.count), ratio, r.seconds, r.vmas, r.vmlck_kib,
                stop_reason(*l.c, l.bound).c_str(), l.c->exit.c_str());
  }
  if (ex.got_report && ex.rep.setup_ok) {
    std::printf("  exmem at the stop: reserved %.2f MiB, memlock %.2f MiB, mappings %zu, regions %zu, protection %d\n",
                mib(ex.rep.stats.reserved_bytes), mib(ex.rep.stats.memlock_bytes), ex.rep.stats.mappings,
                ex.rep.stats.regions, ex.rep.stats.protection);
    std::printf("  exmem_last_error_message(): %s\n", ex.rep.message[0] ? ex.rep.message : "(none)");
  }
  if (so.got_report && so.rep.setup_ok) {
    const long locked_pages = so.rep.vmlck_kib * 1024 / page;
    std::printf("  libsodium at the stop: %ld VMAs (vm.max_map_count %ld); %llu of %llu secrets have both guard "
                "pages",
                so.rep.vmas, max_map_count, static_cast<unsigned long long>(so.rep.guarded),
                static_cast<unsigned long long>(so.rep.count));
    if (so.rep.first_unguarded >= 0) std::printf(" (the first without: #%ld)", so.rep.first_unguarded);
    std::printf("; %ld pages locked, one per secret at most: the others are not locked.\n", locked_pages);
    std::printf("    (libsodium ignores failures of mlock and mprotect: past the memlock limit its secrets are not "
                "locked, past vm.max_map_count they lose their guard pages)\n");
    if (so.rep.guarded > 0 && ex.got_report)
      std::printf("    exmem / libsodium secrets that are locked and guarded as libsodium promises: %.1fx\n",
                  static_cast<double>(ex.rep.count) /
                      static_cast<double>(std::min<std::uint64_t>(so.rep.guarded,
                                                                  static_cast<std::uint64_t>(locked_pages))));
  }
  const bool ex_ok = ex.got_report && ex.rep.setup_ok && ex.exit == "exit 0";
  std::printf("  %s  exmem >= %llu live secrets under the limit: %llu%s\n",
              pass(ex_ok && ex.rep.count >= kTargetUnderLimit), static_cast<unsigned long long>(kTargetUnderLimit),
              static_cast<unsigned long long>(ex.rep.count), ex_ok ? "" : (" (" + ex.exit + ")").c_str());
  std::printf("  %s  exmem stops with NULL and a message, not a signal: %s\n",
              pass(ex_ok && !ex.rep.bound_reached && ex.rep.message[0] != '\0'), ex.exit.c_str());

  std::printf("\n(c) latency of single exmem_alloc calls while 1,000,000 secrets are allocated (informational)\n");
  std::printf("  %-34s %10s %10s %12s %14s %12s\n", "configuration", "init s", "total s", "worst call",
              "calls > 1 ms", "their total");
  for (const auto& [label, c] : {std::pair<const char*, const ChildOutcome*>{"default (grows on demand)", &lat_default},
                                 {"exmem_init reserve = 32 MiB", &lat_reserve}}) {
    const ChildReport& r = c->rep;
    if (!c->got_report || !r.setup_ok || r.count != kMillion) {
      std::printf("  %-34s failed: %s %s; child %s\n", label, r.where, r.message, c->exit.c_str());
      continue;
    }
    std::printf("  %-34s %10.3f %10.3f %9.1f ms %14llu %10.3f s   (worst: call #%llu)\n", label, r.init_seconds,
                r.seconds, r.worst_call * 1e3, static_cast<unsigned long long>(r.slow_calls), r.slow_seconds,
                static_cast<unsigned long long>(r.worst_index));
  }
  if (lat_default.got_report && lat_default.rep.stats.exclusive_pages > 0)
    std::printf("  pre-faulting: %.1f us per exclusive page (time of the calls over 1 ms / pages reserved)\n",
                lat_default.rep.slow_seconds * 1e6 / static_cast<double>(lat_default.rep.stats.exclusive_pages));
  return 0;
}
