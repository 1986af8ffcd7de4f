// exmem_replay_bench: how fast the model replays a kmem trace.
//
// (a) A generated trace in the format of `exmem trace record` (a mix shaped
//     like a real one: order-0 user and kernel pages, some higher orders and
//     THPs, pcp drains, a few extfrag events, secret pages of one process)
//     is replayed on a 16 GiB machine: events per second.
// (b) When run as root with tracefs and the exmem command at hand, it records
//     a real trace: `exmem trace record` around this program's own workload
//     mode (a server-like loop that maps, touches and unmaps anonymous
//     memory and creates, faults and closes memfd_secret regions for a few
//     seconds), replays it, and prints the ratio of the recording's wall time
//     to the replay's.
// Targets: >= 20 million events per second, and a replay >= 100x faster than
// the recording. Each replay is run --runs times (default 5), each on a fresh
// machine; the median is judged and the spread (fastest and slowest run) is
// printed beside it. The program exits 0 whatever the outcome: the PASS/FAIL
// lines say what was met.
//
//   exmem_replay_bench [--events N] [--runs N] [--record-seconds S] [--trace FILE] [--keep]
#include <fmt/format.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "model/machine.hpp"
#include "model/workload/trace_format.hpp"
#include "model/workload/trace_replay.hpp"

namespace {

namespace md = exmem::model;
namespace wl = exmem::model::workload;

constexpr double kTargetEventsPerSecond = 20e6;
constexpr double kTargetRatio = 100.0;

struct Replayed {
  wl::ReplayStats stats;
  int runs = 0;
  double median_seconds = 0;
  double best_seconds = 0;
  double worst_seconds = 0;
  double median_critical_cpu = 0;  // CPU seconds of the busier of the replay's two threads
};

// Replays the trace `runs` times, each on a fresh machine sized like the recorded one.
Replayed replay(const std::string& path, int runs) {
  const wl::TraceInfo info = wl::read_trace_info(path);
  md::MachineConfig mc;
  mc.ram_bytes = std::max<std::uint64_t>(md::GiB, (info.mem_total_kb * md::KiB + md::GiB - 1) / md::GiB * md::GiB);
  mc.cpus = std::max(1u, info.cpus);
  mc.policy = "upstream";
  std::vector<double> seconds;
  std::vector<double> critical;
  Replayed out;
  for (int i = 0; i < runs; ++i) {
    md::Machine m(mc);
    wl::TraceReplay r(m, path);
    out.stats = r.run();
    seconds.push_back(out.stats.seconds);
    critical.push_back(std::max(out.stats.reader_cpu_seconds, out.stats.model_cpu_seconds));
  }
  std::sort(seconds.begin(), seconds.end());
  std::sort(critical.begin(), critical.end());
  const auto mid = static_cast<std::size_t>(runs / 2);
  out.runs = runs;
  out.median_seconds = seconds[mid];
  out.best_seconds = seconds.front();
  out.worst_seconds = seconds.back();
  out.median_critical_cpu = critical[mid];
  return out;
}

void print_replay(const char* what, const Replayed& r) {
  const auto& s = r.stats;
  const double eps = static_cast<double>(s.events) / r.median_seconds;
  const auto events = static_cast<double>(s.events);
  fmt::print("{}: {} events in {} lines ({:.1f} MiB) replayed in {:.3f} s (median of {}; {:.3f} to {:.3f} s)\n",
             what, s.events, s.lines, static_cast<double>(s.bytes) / (1 << 20), r.median_seconds, r.runs,
             r.best_seconds, r.worst_seconds);
  fmt::print("  {:.2f} million events per second (median; {:.2f} to {:.2f} over the runs), {:.0f} MiB/s of text\n",
             eps / 1e6, events / r.worst_seconds / 1e6, events / r.best_seconds / 1e6,
             static_cast<double>(s.bytes) / (1 << 20) / r.median_seconds);
  fmt::print(
      "  CPU time: reader thread {:.3f} s, model thread {:.3f} s (the busier one allows {:.2f} million events "
      "per second on otherwise idle CPUs)\n",
      s.reader_cpu_seconds, s.model_cpu_seconds, static_cast<double>(s.events) / r.median_critical_cpu / 1e6);
  fmt::print(
      "  allocations replayed {}, frees replayed {}, frees of pages from before {}, secret faults {}, "
      "model allocation failures {}, unknown lines {}\n",
      s.allocs_replayed, s.frees_replayed, s.frees_unknown, s.secret_faults, s.model_alloc_failures, s.unknown_lines);
  fmt::print("  {} >= {:.0f} million events per second (median)\n", eps >= kTargetEventsPerSecond ? "PASS" : "FAIL",
             kTargetEventsPerSecond / 1e6);
}

// A trace shaped like one recorded on a busy 16 GiB, 4-CPU machine: order-0
// pages come from per-CPU lists first (the pages that CPU freed last, LIFO, as
// the kernel's pcp lists hand them out), refilled with runs of neighbouring
// pages; higher orders from anywhere; most frees hit recent allocations;
// overfull per-CPU lists drain (mm_page_pcpu_drain).
void generate(const std::string& path, std::uint64_t events) {
  FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) {
    fmt::print(stderr, "exmem_replay_bench: cannot create {}: {}\n", path, std::strerror(errno));
    std::exit(1);
  }
  std::mt19937_64 rng(42);
  constexpr unsigned kCpus = 4;
  const std::uint64_t pfns = 16 * md::GiB / md::kPageSize;
  std::vector<std::uint8_t> used(pfns, 0);
  struct Block {
    std::uint64_t pfn;
    unsigned order;
  };
  std::vector<Block> live;
  std::vector<std::vector<std::uint64_t>> pcp(kCpus);
  std::vector<std::uint64_t> cursor(kCpus, 0);
  const std::uint64_t working_set = 200'000;
  static const char* const kTasks[] = {"cc1plus-24291", "kworker/u8:3-812", "systemd-journal-301", "bash-1200",
                                       "secret_holder-4242"};
  static const char* const kUserGfp = "GFP_HIGHUSER_MOVABLE|__GFP_COMP|__GFP_ZERO";
  static const char* const kKernelGfp[] = {"GFP_KERNEL_ACCOUNT|__GFP_ZERO", "GFP_KERNEL|__GFP_COMP",
                                           "GFP_NOWAIT|__GFP_COMP|__GFP_NOWARN|__GFP_NORETRY",
                                           "GFP_KERNEL|__GFP_RECLAIMABLE", "GFP_ATOMIC|__GFP_NOWARN"};
  std::fprintf(f, "# exmem-trace 1\n# command: generated by exmem_replay_bench\n# cpus: %u\n# MemTotal_kB: %llu\n",
               kCpus, static_cast<unsigned long long>(16 * md::GiB / md::KiB - 300 * md::KiB));
  std::fprintf(f, "# start DirectMap4k_kB=0 DirectMap2M_kB=0 DirectMap1G_kB=0\n");
  std::vector<std::uint64_t> secrets;
  double t = 1000.0;
  // Small blocks in the lower half of the pfns, THPs in the upper half (as
  // a real machine's movable memory keeps whole pageblocks free for them).
  auto take_free_block = [&](unsigned order) -> std::uint64_t {
    const std::uint64_t base = order >= 9 ? pfns / 2 : 0x1000;
    const std::uint64_t span = order >= 9 ? pfns / 2 : pfns / 2 - 0x1000;
    for (;;) {
      const std::uint64_t pfn = (base + rng() % span) & ~((std::uint64_t{1} << order) - 1);
      if (pfn < base) continue;
      bool free_run = true;
      for (std::uint64_t i = 0; i < (std::uint64_t{1} << order) && free_run; ++i) free_run = used[pfn + i] == 0;
      if (!free_run) continue;
      for (std::uint64_t i = 0; i < (std::uint64_t{1} << order); ++i) used[pfn + i] = 1;
      return pfn;
    }
  };
  // An order-0 page for cpu: its pcp list's last freed page, else the next of a run.
  auto take_page = [&](unsigned cpu) -> std::uint64_t {
    std::vector<std::uint64_t>& list = pcp[cpu];
    if (!list.empty()) {
      const std::uint64_t pfn = list.back();
      list.pop_back();
      return pfn;
    }
    std::uint64_t& c = cursor[cpu];
    for (int tries = 0; tries < 64; ++tries) {
      if (c == 0 || (c & 63) == 0) c = take_free_block(6);  // rmqueue_bulk(): a run of 64 neighbours
      const std::uint64_t pfn = c++;
      return pfn;
    }
    return take_free_block(0);
  };
  auto print_alloc = [&](const char* task, unsigned cpu, std::uint64_t pfn, unsigned order, int mt, const char* gfp) {
    std::fprintf(f,
                 "%16s [%03u] ..... %.6f: mm_page_alloc: page=00000000%08llx pfn=0x%llx order=%u migratetype=%d "
                 "gfp_flags=%s\n",
                 task, cpu, t, static_cast<unsigned long long>(rng() & 0xffffffff),
                 static_cast<unsigned long long>(pfn), order, mt, gfp);
  };
  for (std::uint64_t e = 0; e < events; ++e) {
    t += 0.000002;
    const auto cpu = static_cast<unsigned>(rng() % kCpus);
    const char* task = kTasks[rng() % 4];
    const std::uint64_t r = rng() % 1000;
    if (r < 20) {
      std::fprintf(f,
                   "%16s [%03u] d..3. %.6f: mm_page_alloc_extfrag: page=00000000e899c817 pfn=0x%llx alloc_order=0 "
                   "fallback_order=10 pageblock_order=9 alloc_migratetype=0 fallback_migratetype=1 fragmenting=0 "
                   "change_ownership=1\n",
                   task, cpu, t, static_cast<unsigned long long>(0x1000 + rng() % (pfns / 2)) & ~0x3ffull);
      continue;
    }
    if (r < 22 && secrets.size() < 2048) {  // a secret page of the holder
      const std::uint64_t pfn = take_page(cpu);
      secrets.push_back(pfn);
      print_alloc(kTasks[4], cpu, pfn, 0, 0, "GFP_HIGHUSER|__GFP_COMP|__GFP_ZERO");
      continue;
    }
    const bool grow = live.size() < working_set ? rng() % 100 < 60 : rng() % 100 < 40;
    if (grow || live.empty()) {
      const std::uint64_t o = rng() % 1000;
      const unsigned order = o < 900 ? 0 : o < 960 ? 1 : o < 980 ? 2 : o < 995 ? 3 : 9;
      const bool user = order == 9 || rng() % 100 < 55;
      const char* gfp = order == 9 ? "GFP_TRANSHUGE_LIGHT" : user ? kUserGfp : kKernelGfp[rng() % 5];
      const std::uint64_t pfn = order == 0 ? take_page(cpu) : take_free_block(order);
      live.push_back({pfn, order});
      print_alloc(task, cpu, pfn, order, user ? 1 : 0, gfp);
      continue;
    }
    // Most frees are of recent allocations (short-lived pages), the rest of any.
    const std::size_t recent = std::min<std::size_t>(live.size(), 2000);
    const std::size_t i = rng() % 10 < 7 ? live.size() - 1 - rng() % recent : rng() % live.size();
    const Block b = live[i];
    live[i] = live.back();
    live.pop_back();
    std::fprintf(f, "%16s [%03u] ..... %.6f: %s: page=00000000%08llx pfn=0x%llx order=%u\n", task, cpu, t,
                 b.order == 0 && rng() % 4 == 0 ? "mm_page_free_batched" : "mm_page_free",
                 static_cast<unsigned long long>(rng() & 0xffffffff), static_cast<unsigned long long>(b.pfn), b.order);
    if (b.order != 0) {
      for (std::uint64_t k = 0; k < (std::uint64_t{1} << b.order); ++k) used[b.pfn + k] = 0;
      continue;
    }
    std::vector<std::uint64_t>& list = pcp[cpu];
    list.push_back(b.pfn);
    if (list.size() > 512) {  // free_pcppages_bulk(): the oldest half goes back to the buddy allocator
      for (std::size_t k = 0; k < 256; ++k) {
        std::fprintf(f,
                     "%16s [%03u] d..3. %.6f: mm_page_pcpu_drain: page=00000000%08llx pfn=0x%llx order=0 "
                     "migratetype=1\n",
                     task, cpu, t, static_cast<unsigned long long>(rng() & 0xffffffff),
                     static_cast<unsigned long long>(list[k]));
        used[list[k]] = 0;
      }
      list.erase(list.begin(), list.begin() + 256);
    }
  }
  std::fprintf(f, "# end DirectMap4k_kB=0 DirectMap2M_kB=0 DirectMap1G_kB=0\n");
  for (std::uint64_t p : secrets) std::fprintf(f, "# secret pfn=0x%llx pid=4242\n", static_cast<unsigned long long>(p));
  std::fprintf(f, "# exit_status: 0\n# events: %llu\n# lost_events: 0\n", static_cast<unsigned long long>(events));
  std::fclose(f);
}

// The recorded program: a server-like loop, about one request a millisecond.
int workload(double seconds) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  std::mt19937 rng(7);
  const long page = ::sysconf(_SC_PAGESIZE);
  int held_fd = -1;
  void* held = MAP_FAILED;
#ifdef SYS_memfd_secret
  const long nr_memfd_secret = SYS_memfd_secret;
#else
  const long nr_memfd_secret = 447;
#endif
  for (unsigned i = 0; std::chrono::steady_clock::now() < end; ++i) {
    // A session's keys in secret memory: 1 to 4 pages, faulted, then released.
    const int fd = static_cast<int>(::syscall(nr_memfd_secret, 0));
    if (fd >= 0) {
      const std::size_t len = static_cast<std::size_t>(page) * (1 + rng() % 4);
      if (::ftruncate(fd, static_cast<off_t>(len)) == 0) {
        void* p = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p != MAP_FAILED) {
          std::memset(p, 0x5a, len);
          ::munmap(p, len);
        }
      }
      ::close(fd);
    }
    // Every tenth request: a 1 MiB buffer, touched and dropped.
    if (i % 10 == 0) {
      const std::size_t len = 1 << 20;
      void* p = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p != MAP_FAILED) {
        for (std::size_t off = 0; off < len; off += static_cast<std::size_t>(page)) static_cast<char*>(p)[off] = 1;
        ::munmap(p, len);
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  // Secret memory still held at exit: the recorder marks its pages.
  held_fd = static_cast<int>(::syscall(nr_memfd_secret, 0));
  if (held_fd >= 0 && ::ftruncate(held_fd, 16 * page) == 0) {
    held = ::mmap(nullptr, static_cast<std::size_t>(16 * page), PROT_READ | PROT_WRITE, MAP_SHARED, held_fd, 0);
    if (held != MAP_FAILED) std::memset(held, 0x5a, static_cast<std::size_t>(16 * page));
  }
  return 0;
}

bool tracefs_available() {
  struct stat st {};
  return ::stat("/sys/kernel/tracing/trace", &st) == 0 || ::stat("/sys/kernel/debug/tracing/trace", &st) == 0 ||
         ::stat("/sys/kernel/tracing", &st) == 0;
}

// The number given for `option`, from lo to hi: the whole text must be one,
// and only digits when `whole`. Says what was wrong and returns nothing
// otherwise.
std::optional<double> parse_number(const char* option, const char* text, bool whole, double lo, double hi) {
  char* end = nullptr;
  errno = 0;
  const double v = whole ? static_cast<double>(std::strtoull(text, &end, 10)) : std::strtod(text, &end);
  const bool digits_only =
      !whole || std::all_of(text, text + std::strlen(text), [](char c) { return c >= '0' && c <= '9'; });
  if (*text == '\0' || end == nullptr || *end != '\0' || errno != 0 || !digits_only || !(v >= lo && v <= hi)) {
    fmt::print(stderr, "exmem_replay_bench: {} \"{}\": expected {} from {} to {}\n", option, text,
               whole ? "a whole number" : "a number of seconds", lo, hi);
    return std::nullopt;
  }
  return v;
}

}  // namespace

double load_average() {
  double l = 0;
  if (FILE* f = std::fopen("/proc/loadavg", "r")) {
    if (std::fscanf(f, "%lf", &l) != 1) l = 0;
    std::fclose(f);
  }
  return l;
}

int main(int argc, char** argv) {
  std::uint64_t events = 4'000'000;
  int runs = 5;
  double record_seconds = 3.0;
  std::string given_trace;
  bool keep = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--workload" && i + 1 < argc) return workload(std::atof(argv[i + 1]));
    if (a == "--events" && i + 1 < argc) {
      const auto v = parse_number("--events", argv[++i], true, 1, 1e10);
      if (!v) return 2;
      events = static_cast<std::uint64_t>(*v);
    } else if (a == "--runs" && i + 1 < argc) {
      const auto v = parse_number("--runs", argv[++i], true, 1, 100);
      if (!v) return 2;
      runs = static_cast<int>(*v);
    } else if (a == "--record-seconds" && i + 1 < argc) {
      const auto v = parse_number("--record-seconds", argv[++i], false, 0.1, 3600);
      if (!v) return 2;
      record_seconds = *v;
    } else if (a == "--trace" && i + 1 < argc) {
      given_trace = argv[++i];
    } else if (a == "--keep") {
      keep = true;
    } else {
      fmt::print(stderr,
                 "exmem_replay_bench: unknown argument \"{}\"; expected [--events N] [--runs N] "
                 "[--record-seconds S] [--trace FILE] [--keep]\n",
                 a);
      return 2;
    }
  }
  const std::string dir = std::filesystem::temp_directory_path().string();
  fmt::print("{} CPUs online, load average {:.2f} at the start (the replay uses two threads)\n",
             std::thread::hardware_concurrency(), load_average());
  if (!given_trace.empty()) {
    const Replayed r = replay(given_trace, runs);
    print_replay(given_trace.c_str(), r);
    const wl::TraceInfo info = wl::read_trace_info(given_trace);
    if (info.duration_seconds > 0) {
      const double ratio = info.duration_seconds / r.median_seconds;
      fmt::print("  recorded in {:.3f} s: the replay is {:.0f}x faster\n  {} >= 100x\n", info.duration_seconds, ratio,
                 ratio >= kTargetRatio ? "PASS" : "FAIL");
    }
    return 0;
  }

  const std::string generated = fmt::format("{}/exmem-replay-bench-{}.trace", dir, ::getpid());
  fmt::print("(a) generated trace, {} events\n", events);
  generate(generated, events);
  print_replay("generated", replay(generated, runs));
  if (!keep) std::filesystem::remove(generated);

  fmt::print("\n(b) recorded trace: `exmem trace record` around {:.1f} s of a server-like loop\n", record_seconds);
#ifdef EXMEM_BIN
  if (::geteuid() != 0) {
    fmt::print("  SKIPPED: needs root (tracefs and /proc/PID/pagemap); run it with sudo\n");
    return 0;
  }
  if (!tracefs_available()) {
    fmt::print("  SKIPPED: tracefs is not available on this kernel\n");
    return 0;
  }
  const std::string recorded = fmt::format("{}/exmem-replay-bench-{}-recorded.trace", dir, ::getpid());
  const std::string cmd = fmt::format("{} trace record -o {} -- {} --workload {} > /dev/null", EXMEM_BIN, recorded,
                                      argv[0], record_seconds);
  const int rc = std::system(cmd.c_str());
  if (rc != 0) {
    fmt::print("  FAIL: `{}` exited with {}\n", cmd, rc);
    return 0;
  }
  const wl::TraceInfo info = wl::read_trace_info(recorded);
  const Replayed r = replay(recorded, runs);
  print_replay("recorded", r);
  const double ratio = info.duration_seconds / r.median_seconds;
  fmt::print("  recorded in {:.3f} s ({} events, {:.0f} a second, {} lost by tracefs): the replay is {:.0f}x faster\n",
             info.duration_seconds, info.recorded_events,
             static_cast<double>(info.recorded_events) / std::max(info.duration_seconds, 1e-9), info.lost_events,
             ratio);
  fmt::print("  {} >= 100x\n", ratio >= kTargetRatio ? "PASS" : "FAIL");
  if (keep) {
    fmt::print("  kept {}\n", recorded);
  } else {
    std::filesystem::remove(recorded);
  }
#else
  fmt::print("  SKIPPED: built without the exmem command (EXMEM_BUILD_CLI=OFF)\n");
#endif
  return 0;
}
