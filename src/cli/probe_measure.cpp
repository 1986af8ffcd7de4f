// `exmem probe`'s measurements: the first-touch fault cost of a memfd_secret
// page (from user space, against an anonymous page), and the direct-map cost of
// reserving exclusive memory through libexmem, the route an application takes.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstring>
#include <ctime>
#include <type_traits>
#include <vector>

#include <fmt/format.h>

// exmem.h declares a function and a struct both named exmem_stats, which g++'s
// -Wshadow reports as the function hiding the struct's constructor.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wshadow"
#include <exmem/exmem.h>
#pragma GCC diagnostic pop

#include "probe_report.hpp"
#include "probe_timing.hpp"
#include "probe_util.hpp"

namespace exmem::cli::probe {

namespace {

namespace pu = probe_util;

using probe_timing::compiler_barrier;
using probe_timing::now_ns;
using probe_timing::timed_touch;

// A mapping released on scope exit.
struct Mapping {
  void* addr = MAP_FAILED;
  std::size_t len = 0;
  Mapping() = default;
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping() {
    if (addr != MAP_FAILED) ::munmap(addr, len);
  }
  char* bytes() const { return static_cast<char*>(addr); }
};

// Maps a memfd_secret file of `len` bytes, MAP_SHARED. Returns an error text on failure.
std::optional<std::string> map_secret(Mapping& m, std::size_t len) {
  const int fd = host::memfd_secret(O_CLOEXEC);
  if (fd < 0) return fmt::format("memfd_secret failed: {}", host::errno_text(errno));
  if (::ftruncate(fd, static_cast<off_t>(len)) != 0) {
    const int e = errno;
    ::close(fd);
    return fmt::format("ftruncate failed: {}", host::errno_text(e));
  }
  void* p = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  const int e = errno;
  ::close(fd);  // the mapping keeps the file alive
  if (p == MAP_FAILED) {
    if (e == EAGAIN) return host::memlock_refusal(host::memlock_facts(), len, e);
    return fmt::format("mmap of the memfd_secret file failed: {}", host::errno_text(e));
  }
  m.addr = p;
  m.len = len;
  return std::nullopt;
}

// What the child that reserved through libexmem saw, sent back through a pipe.
struct ReserveOutcome {
  int rc = EXMEM_OK;            // exmem_init's answer
  char message[1024] = {};      // its message, or host's wording of a memlock refusal
  host::DirectMapCounters before, after;
  std::int64_t init_ns = 0;     // exmem_init, which maps and faults in every page
  std::uint64_t mapped_pages = 0;  // pages of the process's memfd_secret mappings
  int pagemap_open_error = 0;
  int pagemap_error = 0;
  bool pagemap_complete = false;
  std::uint64_t present = 0;
  std::uint64_t pfns = 0;       // present pages with a non-zero pfn
  std::uint64_t regions = 0;    // distinct 2 MiB regions holding those
};
static_assert(std::is_trivially_copyable_v<ReserveOutcome>);

// In the child: exmem_init with .reserve = bytes, memfd_secret required; the
// counters around it; then the frames of every memfd_secret page mapped.
ReserveOutcome reserve_in_child(std::uint64_t bytes, std::size_t page_size) {
  ReserveOutcome o;
  exmem_config cfg{};
  cfg.reserve = static_cast<std::size_t>(bytes);
  cfg.policy = EXMEM_REQUIRE_SECRET;
  cfg.quiet = 1;
  o.before = host::read_direct_map();
  const std::int64_t t0 = now_ns();
  o.rc = exmem_init(&cfg);
  const std::int64_t t1 = now_ns();
  o.after = host::read_direct_map();
  o.init_ns = t1 - t0;
  if (o.rc != EXMEM_OK) {
    const std::string m = o.rc == EXMEM_E_MEMLOCK
                               ? host::memlock_refusal(host::memlock_facts(), bytes, EAGAIN)
                               : fmt::format("exmem_init failed: {}", exmem_last_error_message());
    std::snprintf(o.message, sizeof o.message, "%s", m.c_str());
    return o;
  }
  const host::Pagemap pm;
  o.pagemap_open_error = pm.error();
  std::vector<std::uint64_t> pfns;
  o.pagemap_complete = true;
  for (const host::Range& r : host::secret_mappings()) {
    const std::size_t pages = (r.end - r.begin) / page_size;
    o.mapped_pages += pages;
    if (pm.error() != 0) continue;
    host::Frames f = host::frames_of(pm, r.begin, pages);
    o.present += f.present;
    pfns.insert(pfns.end(), f.pfns.begin(), f.pfns.end());
    if (!f.complete && o.pagemap_complete) {
      o.pagemap_complete = false;
      o.pagemap_error = f.error;
    }
  }
  o.pfns = pfns.size();
  o.regions = host::distinct_regions(std::move(pfns), host::frames_shift(std::size_t{2} << 20, page_size));
  return o;
}

// Runs reserve_in_child in a child process, so that the reservation is the
// library's first and is given back when the child exits. nullopt plus an
// error text when the child could not report.
std::optional<ReserveOutcome> reserve_through_library(std::uint64_t bytes, std::size_t page_size,
                                                      std::string* error) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    *error = fmt::format("pipe2 failed: {}", host::errno_text(errno));
    return std::nullopt;
  }
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) {
    *error = fmt::format("fork failed: {}", host::errno_text(errno));
    ::close(fds[0]);
    ::close(fds[1]);
    return std::nullopt;
  }
  if (pid == 0) {
    ::close(fds[0]);
    const ReserveOutcome o = reserve_in_child(bytes, page_size);
    const bool sent = ::write(fds[1], &o, sizeof o) == static_cast<ssize_t>(sizeof o);  // < PIPE_BUF: one write
    ::_exit(sent ? 0 : 1);
  }
  ::close(fds[1]);
  ReserveOutcome o;
  std::size_t got = 0;
  while (got < sizeof o) {
    const ssize_t n = ::read(fds[0], reinterpret_cast<char*>(&o) + got, sizeof o - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<std::size_t>(n);
  }
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (got == sizeof o) return o;
  if (WIFSIGNALED(status)) {
    *error = fmt::format("the process reserving through libexmem was killed by signal {} ({}){}", WTERMSIG(status),
                         ::strsignal(WTERMSIG(status)),
                         WTERMSIG(status) == SIGKILL ? ", perhaps by the OOM killer" : "");
  } else {
    *error = "the process reserving through libexmem exited without reporting";
  }
  return std::nullopt;
}

// Fills the pagemap fields of r from what the child read.
void pagemap_fields(Reserve& r, const ReserveOutcome& o, const System& sys) {
  if (o.pagemap_open_error != 0) {
    r.pagemap_status = "unreadable";
    r.pagemap_note = fmt::format("/proc/self/pagemap could not be opened: {}", host::errno_text(o.pagemap_open_error));
    return;
  }
  if (!o.pagemap_complete) {
    r.pagemap_status = "unreadable";
    r.pagemap_note = o.pagemap_error != 0
                         ? fmt::format("reading /proc/self/pagemap failed: {}", host::errno_text(o.pagemap_error))
                         : std::string("short read from /proc/self/pagemap");
    return;
  }
  r.pages_present = o.present;
  if (o.present == 0) {
    r.pagemap_status = "not present";
    r.pagemap_note =
        "pagemap does not show the memfd_secret pages as present although every page was faulted in: this "
        "kernel hides secretmem pages from pagemap, so the 2 MiB regions holding them cannot be counted.";
    return;
  }
  if (o.pfns == 0) {
    if (!sys.cap(host::kCapSysAdmin)) {
      r.pagemap_status = "needs root";
      r.pagemap_note =
          "needs root: pagemap shows the pages present but reads every pfn as 0 without CAP_SYS_ADMIN.";
    } else {
      r.pagemap_status = "no pfns";
      r.pagemap_note =
          "pagemap shows the pages present but reports no pfn for memfd_secret pages, even with "
          "CAP_SYS_ADMIN: the distinct 2 MiB regions cannot be counted on this kernel.";
    }
    return;
  }
  r.regions = o.regions;
  r.pagemap_status = "ok";
  r.pagemap_note = fmt::format(
      "pagemap reports pfns for memfd_secret pages: {} of {} pages present, in {} distinct 2 MiB regions "
      "(pfn >> {}).",
      o.present, o.mapped_pages, o.regions, host::frames_shift(std::size_t{2} << 20, sys.page_size));
  if (o.present != o.mapped_pages) r.pagemap_note += " Some pages faulted in are not shown present.";
}

// One split per 2 MiB region first used; regions already split cost nothing.
std::string interpret(const Reserve& r) {
  std::string s;
  if (!r.l2_delta) {
    s = "this kernel does not count direct-map splits in /proc/vmstat (no direct_map_level2_splits).";
  } else if (r.regions) {
    const auto regions = static_cast<std::int64_t>(*r.regions);
    const std::int64_t d = *r.l2_delta;
    if (d == regions) {
      s = fmt::format("each of the {} 2 MiB regions holding the pages was still a 2 MiB leaf of the direct map, "
                      "and its first secret page split it: {} splits.",
                      regions, d);
    } else if (d >= 0 && d < regions) {
      s = fmt::format("{} splits for {} regions: {} of the regions were already split (by earlier secret pages, "
                      "such as those of the fault-cost run, or by other users of the direct map) and cost "
                      "nothing more.",
                      d, regions, regions - d);
    } else {
      s = fmt::format("{} splits for {} regions: more splits than regions, so something else on the system "
                      "split the direct map during the measurement (another process using memfd_secret, or "
                      "set_memory_* in the kernel); the delta overstates this reservation's cost.",
                      d, regions);
    }
  } else {
    s = fmt::format("{} splits; the regions holding the pages are unknown ({}). At most one split per 2 MiB "
                    "region touched; the pages are order-0 allocations and may be spread over many regions.",
                    *r.l2_delta, r.pagemap_status);
  }
  if (r.l3_delta && *r.l3_delta > 0) {
    s += fmt::format(" {} 1 GiB leaves were first split into 2 MiB leaves.", *r.l3_delta);
  }
  return s;
}

}  // namespace

FaultCost measure_fault_cost(std::uint64_t pages, const Report& facts) {
  FaultCost fc;
  fc.pages = pages;
  if (!facts.secret.available()) {
    fc.error = fmt::format("memfd_secret is not available: {}", facts.secret.reason);
    return fc;
  }
  const std::size_t ps = facts.sys.page_size;
  // One extra page of each kind, touched first and not timed: it warms the code paths
  // and allocates the page tables.
  const std::size_t len = (static_cast<std::size_t>(pages) + 1) * ps;

  Mapping anon;
  anon.addr = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (anon.addr == MAP_FAILED) {
    fc.error = fmt::format("anonymous mmap failed: {}", host::errno_text(errno));
    return fc;
  }
  anon.len = len;
  // Time 4 KiB faults, not a transparent huge page filled on the first touch.
  (void)::madvise(anon.addr, len, MADV_NOHUGEPAGE);

  Mapping sec;
  if (auto err = map_secret(sec, len)) {
    fc.error = *err;
    return fc;
  }

  std::vector<std::int64_t> timer(1000);
  for (auto& t : timer) {
    const std::int64_t t0 = now_ns();
    compiler_barrier();
    t = now_ns() - t0;
  }
  std::sort(timer.begin(), timer.end());
  fc.timer_median = pu::percentile_sorted(timer, 0.5);

  (void)timed_touch(anon.bytes());
  (void)timed_touch(sec.bytes());
  std::vector<std::int64_t> a(pages);
  std::vector<std::int64_t> s(pages);
  // Interleaved, so that noise on the machine falls on both kinds alike.
  for (std::size_t i = 0; i < pages; ++i) {
    a[i] = timed_touch(anon.bytes() + (i + 1) * ps);
    s[i] = timed_touch(sec.bytes() + (i + 1) * ps);
  }
  std::sort(a.begin(), a.end());
  std::sort(s.begin(), s.end());
  fc.measured = true;
  fc.secret_median = pu::percentile_sorted(s, 0.5);
  fc.secret_p90 = pu::percentile_sorted(s, 0.9);
  fc.anon_median = pu::percentile_sorted(a, 0.5);
  fc.anon_p90 = pu::percentile_sorted(a, 0.9);
  if (*fc.anon_median > 0) {
    const double r = static_cast<double>(*fc.secret_median) / static_cast<double>(*fc.anon_median);
    fc.ratio = std::round(r * 1000.0) / 1000.0;
  }
  return fc;
}

Reserve measure_reserve(std::uint64_t mib, const Report& facts) {
  const System& sys = facts.sys;
  Reserve r;
  r.mib = mib;
  r.asked_bytes = mib * kMiB;
  r.pages = r.asked_bytes / sys.page_size;
  r.memlock_soft = facts.memlock.facts.soft;
  if (!facts.secret.available()) {
    r.error = fmt::format("memfd_secret is not available: {}", facts.secret.reason);
    return r;
  }
  if (sys.mem_available_kb && r.asked_bytes / 1024 > *sys.mem_available_kb / 4 * 3) {
    r.error = fmt::format(
        "not attempted: {} MiB is more than three quarters of MemAvailable ({} MiB); a memfd_secret page "
        "that cannot be allocated when first touched invokes the OOM killer. Ask for less with --reserve-mib.",
        mib, *sys.mem_available_kb / 1024);
    return r;
  }

  std::string error;
  const auto o = reserve_through_library(r.asked_bytes, sys.page_size, &error);
  if (!o) {
    r.error = error;
    return r;
  }
  if (o->rc != EXMEM_OK) {
    r.error = std::string(o->message);
    return r;
  }
  r.measured = true;
  if (r.pages > 0) r.touch_ns_per_page = o->init_ns / static_cast<std::int64_t>(r.pages);
  r.l2_delta = host::counter_delta(o->before.level2_splits, o->after.level2_splits);
  r.l3_delta = host::counter_delta(o->before.level3_splits, o->after.level3_splits);
  r.l2_collapse_delta = host::counter_delta(o->before.level2_collapses, o->after.level2_collapses);
  r.dm4k_delta = host::counter_delta(o->before.dm4k_kb, o->after.dm4k_kb);
  r.dm2m_delta = host::counter_delta(o->before.dm2m_kb, o->after.dm2m_kb);
  r.dm1g_delta = host::counter_delta(o->before.dm1g_kb, o->after.dm1g_kb);
  pagemap_fields(r, *o, sys);
  r.interpretation = interpret(r);
  return r;
}

}  // namespace exmem::cli::probe
