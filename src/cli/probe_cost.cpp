// `exmem probe --cost`, the measuring half: what a split direct map costs on this
// machine's kernel. /proc counts splits but does not say where they are, so the probe
// makes its own: it places kernel-accessed pages (ramfs page cache) into 2 MiB regions
// it knows are split, because they hold a live memfd_secret page, and times kernel
// accesses to them against the same accesses to pages in regions holding none.
//
// Everything allocated lives in a child process (measure_in_child): its secret
// memory, its ramfs (a detached mount, fsopen/fsmount, reachable only through a
// descriptor: it is unmounted when the last descriptor closes, so also on a crash),
// its spinning threads. The parent checks, asks, reads the counters around the child,
// derives the figures (probe_cost_figures.cpp) and writes the report and the file.
#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <iostream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_set>
#include <utility>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#endif

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "host/host.hpp"
#include "probe_cost.hpp"
#include "probe_timing.hpp"
#include "probe_util.hpp"

#ifndef EXMEM_VERSION
#define EXMEM_VERSION "unknown"
#endif

namespace exmem::cli::probe {

namespace {

namespace pu = probe_util;
using pu::median_of;

constexpr std::size_t kPage = 4096;
constexpr std::size_t kFilePages = 16;        // one memfd_secret file per 64 KiB
constexpr unsigned kRegionShift = 9;          // 2 MiB of 4 KiB frames
constexpr std::uint64_t kCallsPerRun = 256 * 1024;  // accesses per run and working set
constexpr std::uint64_t kFaultPagesPerRun = 128;
constexpr std::size_t kReadBytes = 64;

struct CostError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

[[noreturn]] void fail(const std::string& what) { throw CostError(what); }
[[noreturn]] void fail_errno(const std::string& what) { fail(what + ": " + host::errno_text(errno)); }

using probe_timing::compiler_barrier;
using probe_timing::now_ns;
using probe_timing::timed_touch;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#else
  compiler_barrier();
#endif
}

// A descriptor closed on scope exit.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    std::swap(fd_, o.fd_);
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// A mapping unmapped on scope exit (or by reset()).
class Map {
 public:
  Map() = default;
  Map(void* p, std::size_t len) : p_(p), len_(len) {}
  ~Map() { reset(); }
  Map(Map&& o) noexcept : p_(std::exchange(o.p_, MAP_FAILED)), len_(o.len_) {}
  Map& operator=(Map&& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(len_, o.len_);
    return *this;
  }
  Map(const Map&) = delete;
  Map& operator=(const Map&) = delete;
  void reset() {
    if (p_ != MAP_FAILED) ::munmap(p_, len_);
    p_ = MAP_FAILED;
  }
  char* bytes() const { return static_cast<char*>(p_); }
  std::uintptr_t addr() const { return reinterpret_cast<std::uintptr_t>(p_); }

 private:
  void* p_ = MAP_FAILED;
  std::size_t len_ = 0;
};

// A memfd_secret file of `pages` pages, mapped; the descriptor is closed at once
// (the mapping keeps the file), so the probe holds no more descriptors than one.
Map map_secret(std::size_t pages) {
  Fd fd(host::memfd_secret(O_CLOEXEC));
  if (fd.get() < 0) fail_errno("memfd_secret");
  const std::size_t len = pages * kPage;
  if (::ftruncate(fd.get(), static_cast<off_t>(len)) != 0) fail_errno("ftruncate of a memfd_secret file");
  void* p = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (p == MAP_FAILED) fail_errno("mmap of a memfd_secret file");
  return Map(p, len);
}

Map map_anon(std::size_t pages) {
  const std::size_t len = pages * kPage;
  void* p = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) fail_errno("anonymous mmap");
  (void)::madvise(p, len, MADV_NOHUGEPAGE);  // 4 KiB faults, not a huge page filled at once
  return Map(p, len);
}

constexpr std::size_t kRegion = std::size_t{2} << 20;

const char* align_up(const char* p, std::size_t a) {
  const auto v = reinterpret_cast<std::uintptr_t>(p);
  return reinterpret_cast<const char*>((v + a - 1) / a * a);
}

// `pages` anonymous pages, dense in 2 MiB regions: transparent huge pages where the
// kernel gives them (one order-9 folio fills a region, so the control pages share few
// direct-map leaves), then mapped by 4 KiB page-table entries like the ramfs file
// (a 4 KiB mprotect in each huge page splits its PMD mapping, not the folio), and
// kept from khugepaged (MADV_NOHUGEPAGE). Touched, in place; starts at align_up(.., 2 MiB).
Map map_anon_dense(std::size_t pages) {
  const std::size_t len = pages * kPage;
  void* p = ::mmap(nullptr, len + kRegion, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) fail_errno("anonymous mmap");
  Map m(p, len + kRegion);
  char* base = const_cast<char*>(align_up(m.bytes(), kRegion));
  (void)::madvise(base, len, MADV_HUGEPAGE);
  for (std::size_t i = 0; i < pages; ++i) base[i * kPage] = static_cast<char>(i | 1);
  (void)::madvise(base, len, MADV_NOHUGEPAGE);
  for (std::size_t o = 0; o < len; o += kRegion) {
    if (::mprotect(base + o, kPage, PROT_READ) != 0 || ::mprotect(base + o, kPage, PROT_READ | PROT_WRITE) != 0) {
      fail_errno("mprotect of the control pages");
    }
  }
  return m;
}

// direct_map_level2_splits of /proc/vmstat, read through one open descriptor.
class SplitCounter {
 public:
  SplitCounter() : fd_(::open("/proc/vmstat", O_RDONLY | O_CLOEXEC)), buf_(65536, '\0') {}
  // nullopt when the kernel does not count splits (or vmstat is unreadable).
  std::optional<std::uint64_t> read() {
    if (fd_.get() < 0) return std::nullopt;
    std::size_t got = 0;
    for (;;) {
      const ssize_t n = ::pread(fd_.get(), buf_.data() + got, buf_.size() - got, static_cast<off_t>(got));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      got += static_cast<std::size_t>(n);
      if (got == buf_.size()) buf_.resize(buf_.size() * 2);
    }
    return host::key_value(std::string_view(buf_.data(), got), "direct_map_level2_splits");
  }

 private:
  Fd fd_;
  std::string buf_;
};

// Threads spinning on the given CPUs until destroyed; the constructor returns once
// every one of them runs on its CPU.
class Spinners {
 public:
  explicit Spinners(const std::vector<unsigned>& cpus) {
    for (const unsigned cpu : cpus) {
      threads_.emplace_back([this, cpu] {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        (void)::sched_setaffinity(0, sizeof set, &set);
        started_.fetch_add(1);
        while (!stop_.load(std::memory_order_relaxed)) cpu_relax();
      });
    }
    while (started_.load() < threads_.size()) std::this_thread::yield();
  }
  ~Spinners() {
    stop_.store(true);
    for (auto& t : threads_) t.join();
  }
  Spinners(const Spinners&) = delete;
  Spinners& operator=(const Spinners&) = delete;

 private:
  std::atomic<bool> stop_{false};
  std::atomic<std::size_t> started_{0};
  std::vector<std::thread> threads_;
};

// A ramfs of our own: fsopen + fsmount give a detached mount, in no mount namespace's
// tree; it goes when the last descriptor (this one, and the files') closes.
Fd private_ramfs() {
#if defined(SYS_fsopen) && defined(SYS_fsconfig) && defined(SYS_fsmount)
  constexpr unsigned kFsopenCloexec = 0x00000001;
  constexpr unsigned kFsconfigCmdCreate = 6;
  constexpr unsigned kFsmountCloexec = 0x00000001;
  Fd fs(static_cast<int>(::syscall(SYS_fsopen, "ramfs", kFsopenCloexec)));
  if (fs.get() < 0) fail_errno("fsopen(\"ramfs\") (a private ramfs for the page-cache pages)");
  if (::syscall(SYS_fsconfig, fs.get(), kFsconfigCmdCreate, nullptr, nullptr, 0) != 0) {
    fail_errno("fsconfig(FSCONFIG_CMD_CREATE) of the private ramfs");
  }
  Fd mnt(static_cast<int>(::syscall(SYS_fsmount, fs.get(), kFsmountCloexec, 0)));
  if (mnt.get() < 0) fail_errno("fsmount of the private ramfs");
  return mnt;
#else
  fail("this build has no fsopen/fsmount system call numbers: no private ramfs");
#endif
}

// An unnamed file in the private ramfs.
Fd ramfs_file(const Fd& mnt) {
  Fd f(::openat(mnt.get(), ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
  if (f.get() < 0) fail_errno("O_TMPFILE in the private ramfs");
  return f;
}

// Writes `pages` pages to f, one write per page: each write allocates one page-cache
// page, GFP_HIGHUSER (ramfs_get_inode), unmovable, as the freed secret pages were.
void write_pages(const Fd& f, std::size_t pages) {
  std::vector<char> page(kPage);
  for (std::size_t i = 0; i < pages; ++i) {
    std::memset(page.data(), static_cast<int>(i & 0xff) | 1, page.size());
    if (::pwrite(f.get(), page.data(), kPage, static_cast<off_t>(i * kPage)) != static_cast<ssize_t>(kPage)) {
      fail_errno("writing a page of the private ramfs");
    }
  }
}

// Frames of `pages` pages mapped at addr; every page must be present with a pfn.
std::vector<std::uint64_t> pfns_of(const host::Pagemap& pm, std::uintptr_t addr, std::size_t pages,
                                   const char* what) {
  host::Frames f = host::frames_of(pm, addr, pages);
  if (!f.complete) {
    errno = f.error;
    fail_errno(std::string("reading /proc/self/pagemap for ") + what);
  }
  if (f.pfns.size() != pages) {
    fail(std::string("/proc/self/pagemap shows no frame for a page of ") + what +
         " (pfns need CAP_SYS_ADMIN; this kernel may hide them)");
  }
  return std::move(f.pfns);
}

std::vector<unsigned> allowed_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) != 0) fail_errno("sched_getaffinity");
  std::vector<unsigned> cpus;
  for (unsigned c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &set)) cpus.push_back(c);
  }
  if (cpus.empty()) fail("no CPU in this process's affinity mask");
  return cpus;
}

void pin_to(unsigned cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (::sched_setaffinity(0, sizeof set, &set) != 0) fail_errno(fmt::format("sched_setaffinity to CPU {}", cpu));
}

// A group of pages: their base address and the shuffled page indices.
struct Group {
  const char* base = nullptr;
  std::vector<std::uint64_t> idx;
};

// Accesses per system call: process_vm_readv with kIov remote iovecs of 64 bytes at
// random pages of the set. Every access pins the page (pin_user_pages_remote), copies
// through kmap_local_page, i.e. the page's direct-map address, and unpins it; all
// kIov accesses of a call run in the kernel without a return to user space, so the
// TLB keeps the direct map's entries from one access to the next (with PTI and no
// PCID it is flushed at every kernel entry and exit).
constexpr std::size_t kIov = 1024;

// ns per access of one call: accesses [b0, b0 + kIov) of the pre-drawn sequence.
double time_call(pid_t self, const Group& g, std::uint64_t ws, const std::vector<std::uint32_t>& rnd,
                 const std::vector<std::uint16_t>& off, std::size_t b0, std::vector<iovec>& remote,
                 std::vector<char>& buf) {
  for (std::size_t i = 0; i < kIov; ++i) {
    remote[i].iov_base = const_cast<char*>(g.base + g.idx[rnd[b0 + i] % ws] * kPage + off[b0 + i]);
    remote[i].iov_len = kReadBytes;
  }
  iovec local{buf.data(), buf.size()};
  const std::int64_t t0 = now_ns();
  const ssize_t n = ::process_vm_readv(self, &local, 1, remote.data(), kIov, 0);
  const std::int64_t t1 = now_ns();
  if (n != static_cast<ssize_t>(buf.size())) fail_errno("process_vm_readv of the probe's own pages");
  return static_cast<double>(t1 - t0) / static_cast<double>(kIov);
}

// One run at one working set: calls on split and control alternating (ABBA...), so that
// drift and other processes fall on both alike; the median call of each, ns per access.
std::pair<double, double> time_run(pid_t self, const Group& split, const Group& control, std::uint64_t ws,
                                   const std::vector<std::uint32_t>& rnd, const std::vector<std::uint16_t>& off) {
  std::vector<iovec> remote(kIov);
  std::vector<char> buf(kIov * kReadBytes);
  (void)time_call(self, split, ws, rnd, off, 0, remote, buf);  // warm
  (void)time_call(self, control, ws, rnd, off, 0, remote, buf);
  std::vector<double> a, b;
  for (std::size_t b0 = 0, n = 0; b0 + kIov <= rnd.size(); b0 += kIov, ++n) {
    if (n % 2 == 0) {
      a.push_back(time_call(self, split, ws, rnd, off, b0, remote, buf));
      b.push_back(time_call(self, control, ws, rnd, off, b0, remote, buf));
    } else {
      b.push_back(time_call(self, control, ws, rnd, off, b0, remote, buf));
      a.push_back(time_call(self, split, ws, rnd, off, b0, remote, buf));
    }
  }
  return {median_of(std::move(a)), median_of(std::move(b))};
}

// The whole measurement, in the child process. Throws CostError.
CostRaw measure_in_child(const CostOptions& opt) {
  CostRaw raw;
  const std::vector<unsigned> cpus = allowed_cpus();
  raw.cpu = cpus.front();
  raw.cpus = static_cast<unsigned>(cpus.size());
  const std::vector<unsigned> others(cpus.begin() + 1, cpus.end());
  const std::vector<unsigned> one(others.begin(), others.begin() + std::min<std::size_t>(1, others.size()));
  raw.busy_one = static_cast<unsigned>(one.size());
  raw.busy_all = static_cast<unsigned>(others.size());
  pin_to(raw.cpu);

  const host::Pagemap pm;
  if (pm.error() != 0) fail("opening /proc/self/pagemap: " + host::errno_text(pm.error()));
  SplitCounter splits;
  const Fd mnt = private_ramfs();

  const std::size_t files = static_cast<std::size_t>(opt.cost_mib) * (std::size_t{1} << 20) / (kFilePages * kPage);
  raw.secret_files = files;
  raw.secret_pages = files * kFilePages;
  const std::size_t half_pages = (files / 2) * kFilePages;

  // Control: anonymous pages (movable, so from other pageblocks than the split
  // ones the unmovable allocations reuse), touched before any secret page of ours exists.
  const Map control_map = map_anon_dense(half_pages);
  const char* control_base = align_up(control_map.bytes(), kRegion);
  raw.control_file_pages = half_pages;

  // Placement: every page of every secret file touched, one at a time and timed,
  // with every other CPU spinning; the split counter read between the faults.
  std::vector<Map> secret;
  secret.reserve(files);
  {
    const Spinners busy(others);
    std::optional<std::uint64_t> prev = splits.read();
    std::vector<double> nonsplit_chunk;
    for (std::size_t f = 0; f < files; ++f) {
      secret.push_back(map_secret(kFilePages));
      for (std::size_t p = 0; p < kFilePages; ++p) {
        const double t = static_cast<double>(timed_touch(secret.back().bytes() + p * kPage));
        const std::optional<std::uint64_t> now = splits.read();
        const std::uint64_t d = prev && now ? *now - *prev : 0;
        prev = now;
        ++raw.placement_faults;
        if (d == 0) {
          nonsplit_chunk.push_back(t);
        } else if (d == 1) {
          ++raw.placement_split_faults;
          raw.split_faults.push_back(t);
        } else {
          ++raw.placement_multi_split_faults;  // someone else split too: neither group
        }
      }
      if (nonsplit_chunk.size() >= 1024 || (f + 1 == files && !nonsplit_chunk.empty())) {
        raw.nonsplit_faults_runs.push_back(median_of(std::move(nonsplit_chunk)));
        nonsplit_chunk.clear();
      }
    }
  }

  std::unordered_set<std::uint64_t> anchor_regions, secret_regions, freed_pfns;
  for (std::size_t f = 0; f < files; ++f) {
    for (const std::uint64_t pfn : pfns_of(pm, secret[f].addr(), kFilePages, "a memfd_secret file")) {
      secret_regions.insert(pfn >> kRegionShift);
      if (f % 2 == 0) {
        anchor_regions.insert(pfn >> kRegionShift);
        raw.anchor_pages += 1;
      } else {
        freed_pfns.insert(pfn);
      }
    }
  }
  raw.anchor_regions = anchor_regions.size();
  raw.secret_regions = secret_regions.size();

  // Free every other file; at once, ramfs pages take the freed (unmovable) frames.
  for (std::size_t f = 1; f < files; f += 2) secret[f].reset();
  raw.freed_pages = freed_pfns.size();
  const Fd split = ramfs_file(mnt);
  write_pages(split, half_pages);
  raw.split_file_pages = half_pages;

  // The split file stays mapped (shared, populated) for the sweep: process_vm_readv
  // reaches its pages through this mapping.
  void* sp_addr = ::mmap(nullptr, half_pages * kPage, PROT_READ, MAP_SHARED | MAP_POPULATE, split.get(), 0);
  if (sp_addr == MAP_FAILED) fail_errno("mmap of the split-group ramfs file");
  const Map split_map(sp_addr, half_pages * kPage);
  Group split_group{split_map.bytes(), {}};
  Group control_group{control_base, {}};
  {
    const auto sp = pfns_of(pm, split_map.addr(), half_pages, "the split-group ramfs file");
    for (std::size_t i = 0; i < sp.size(); ++i) {
      if (freed_pfns.count(sp[i]) != 0) ++raw.reused_pages;
      if (anchor_regions.count(sp[i] >> kRegionShift) != 0) split_group.idx.push_back(i);
    }
    std::unordered_set<std::uint64_t> sr, cr;
    for (const std::uint64_t i : split_group.idx) sr.insert(sp[i] >> kRegionShift);
    const auto cp = pfns_of(pm, reinterpret_cast<std::uintptr_t>(control_base), half_pages,
                            "the control anonymous pages");
    for (std::size_t i = 0; i < cp.size(); ++i) {
      if (secret_regions.count(cp[i] >> kRegionShift) == 0) {
        control_group.idx.push_back(i);
        cr.insert(cp[i] >> kRegionShift);
      }
    }
    raw.split_group_regions = sr.size();
    raw.control_group_regions = cr.size();
  }
  raw.split_pages = split_group.idx.size();
  raw.control_pages = control_group.idx.size();

  // The sweep: the same pre-drawn sequence for both groups, batches interleaved.
  std::mt19937_64 rng(0x5eedcafef00dULL);
  std::shuffle(split_group.idx.begin(), split_group.idx.end(), rng);
  std::shuffle(control_group.idx.begin(), control_group.idx.end(), rng);
  raw.calls = kCallsPerRun;
  std::vector<std::uint32_t> rnd(kCallsPerRun);
  std::vector<std::uint16_t> off(kCallsPerRun);
  for (std::size_t i = 0; i < kCallsPerRun; ++i) {
    rnd[i] = static_cast<std::uint32_t>(rng() >> 32);
    off[i] = static_cast<std::uint16_t>((rng() % (kPage / kReadBytes)) * kReadBytes);
  }
  for (const std::uint64_t ws : working_sets(raw.split_pages, raw.control_pages)) {
    raw.sweep.push_back(CostSweepRaw{ws, {}, {}});
  }
  const pid_t self = ::getpid();
  for (std::uint64_t r = 0; r < opt.runs; ++r) {
    for (CostSweepRaw& w : raw.sweep) {
      const auto [a, b] = time_run(self, split_group, control_group, w.pages, rnd, off);
      w.split.push_back(a);
      w.control.push_back(b);
    }
  }

  // Faults: secret against anonymous, with 0, 1 and all other CPUs spinning.
  raw.fault_pages_per_run = kFaultPagesPerRun;
  for (std::uint64_t r = 0; r < opt.runs; ++r) {
    for (int cond = 0; cond < 3; ++cond) {
      const Spinners busy(cond == 0 ? std::vector<unsigned>{} : cond == 1 ? one : others);
      Map anon = map_anon(kFaultPagesPerRun + 1);
      Map sec = map_secret(kFaultPagesPerRun + 1);
      (void)timed_touch(anon.bytes());  // warms the paths, allocates the page tables
      (void)timed_touch(sec.bytes());
      std::vector<double> a, s;
      std::optional<std::uint64_t> prev = splits.read();
      for (std::size_t i = 1; i <= kFaultPagesPerRun; ++i) {
        a.push_back(static_cast<double>(timed_touch(anon.bytes() + i * kPage)));
        (void)splits.read();  // the same work between faults as for the secret pages
        const double t = static_cast<double>(timed_touch(sec.bytes() + i * kPage));
        const std::optional<std::uint64_t> now = splits.read();
        if (prev && now && *now != *prev) {
          ++raw.condition_faults_split;
        } else {
          s.push_back(t);
        }
        prev = now;
      }
      const double sm = median_of(s);
      if (cond == 0) raw.secret_idle.push_back(sm);
      if (cond == 1) raw.secret_one.push_back(sm);
      if (cond == 2) {
        raw.secret_all.push_back(sm);
        raw.anon.push_back(median_of(a));
      }
    }
  }
  // The search for unsplit regions, last, so that it disturbs no other figure:
  // secret files faulted (every other CPU spinning) until enough faults split a
  // 2 MiB leaf or --split-mib is used up; all of it freed at the end.
  if (opt.split_mib > 0) {
    const Spinners busy(others);
    const std::size_t max_pages = static_cast<std::size_t>(opt.split_mib) * (std::size_t{1} << 20) / kPage;
    std::vector<Map> search;
    std::optional<std::uint64_t> prev = splits.read();
    // Files of 2 MiB: gigabytes in 64 KiB files would pass vm.max_map_count.
    constexpr std::size_t kSearchFilePages = kRegion / kPage;
    while (raw.search_pages + kSearchFilePages <= max_pages && raw.search_split_faults < kSplitFaultsWanted) {
      search.push_back(map_secret(kSearchFilePages));
      for (std::size_t p = 0; p < kSearchFilePages; ++p) {
        const double t = static_cast<double>(timed_touch(search.back().bytes() + p * kPage));
        const std::optional<std::uint64_t> now = splits.read();
        if (prev && now && *now - *prev == 1) {
          ++raw.search_split_faults;
          raw.split_faults.push_back(t);
        }
        prev = now;
      }
      raw.search_pages += kSearchFilePages;
    }
  }
  return raw;
}

// Runs measure_in_child in a child process; its raw samples come back as JSON.
CostRaw measure(const CostOptions& opt) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) fail_errno("pipe2");
  Fd rd(fds[0]);
  Fd wr(fds[1]);
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) fail_errno("fork");
  if (pid == 0) {
    (void)::prctl(PR_SET_PDEATHSIG, SIGKILL);  // the parent gone, nothing is left measuring
    int code = 0;
    std::string out;
    try {
      out = raw_to_json(measure_in_child(opt)).dump();
    } catch (const std::exception& e) {
      out = nlohmann::json{{"error", e.what()}}.dump();
      code = 1;
    }
    std::size_t done = 0;
    while (done < out.size()) {
      const ssize_t n = ::write(wr.get(), out.data() + done, out.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) ::_exit(2);
      done += static_cast<std::size_t>(n);
    }
    ::_exit(code);
  }
  wr = Fd();
  std::string text;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(rd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buf, static_cast<std::size_t>(n));
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFSIGNALED(status)) {
    fail(fmt::format("the measuring process was killed by signal {} ({}){}", WTERMSIG(status),
                     ::strsignal(WTERMSIG(status)), WTERMSIG(status) == SIGKILL ? ", perhaps by the OOM killer" : ""));
  }
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception&) {
    fail("the measuring process exited without reporting");
  }
  if (j.contains("error")) fail(j["error"].get<std::string>());
  try {
    return raw_from_json(j);
  } catch (const nlohmann::json::exception& e) {
    fail(std::string("the measuring process's report is incomplete: ") + e.what());
  }
}

// ---------------------------------------------------------------------------------
// The machine

std::optional<std::string> cpu_model() {
  const auto t = host::read_text("/proc/cpuinfo");
  if (!t) return std::nullopt;
  const auto pos = t->find("model name");
  if (pos == std::string::npos) return std::nullopt;
  const auto colon = t->find(':', pos);
  const auto eol = t->find('\n', pos);
  if (colon == std::string::npos || colon > eol) return std::nullopt;
  return std::string(host::trim(std::string_view(*t).substr(colon + 1, eol - colon - 1)));
}

// TSC cycles per microsecond over 50 ms of CLOCK_MONOTONIC; /proc/cpuinfo's "cpu MHz" elsewhere.
std::optional<double> cpu_mhz() {
#if defined(__x86_64__) || defined(__i386__)
  const std::int64_t t0 = now_ns();
  const unsigned long long c0 = __rdtsc();
  while (now_ns() - t0 < 50'000'000) {
  }
  const std::int64_t t1 = now_ns();
  const unsigned long long c1 = __rdtsc();
  if (t1 > t0 && c1 > c0) {
    return std::round(static_cast<double>(c1 - c0) / (static_cast<double>(t1 - t0) / 1000.0) * 10.0) / 10.0;
  }
#endif
  const auto t = host::read_text("/proc/cpuinfo");
  if (!t) return std::nullopt;
  const auto pos = t->find("cpu MHz");
  if (pos == std::string::npos) return std::nullopt;
  const auto colon = t->find(':', pos);
  if (colon == std::string::npos) return std::nullopt;
  try {
    return std::stod(t->substr(colon + 1, 32));
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

std::optional<bool> pti_on() {
  const auto t = host::read_text("/sys/devices/system/cpu/vulnerabilities/meltdown");
  if (!t) return std::nullopt;
  return t->find("PTI") != std::string::npos;
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string nested_paging_note(const Hypervisor& h) {
  if (!h.present) {
    return "bare metal (CPUID leaf 1 ECX bit 31 clear): a 2 MiB direct-map leaf is a 2 MiB TLB entry.";
  }
  return fmt::format(
      "under {}: with nested paging (EPT/NPT) the guest's 2 MiB leaf may be backed by the host's 4 KiB pages, so "
      "a TLB entry covers at most the smaller of the two, a guest 2 MiB leaf saves less than on bare metal, and "
      "every guest page-walk step is itself a host walk. The guest cannot see the host's page size; the "
      "figures are measured anyway and hold for this guest as configured.",
      h.name.value_or("a hypervisor"));
}

std::uint64_t split_estimate(const CostOptions& opt) {
  return opt.cost_mib / 2 + 1;  // one region per 2 MiB of secret memory, if not split yet
}

// The question asked on a terminal: what the probe does and what it leaves behind.
std::string consequences(const CostOptions& opt) {
  const std::uint64_t fault_mib = (kFaultPagesPerRun + 1) * kPage * 3 / (1 << 20) + 1;
  return fmt::format(
      "exmem probe --cost will, in a child process pinned to one CPU:\n"
      "  - allocate {} MiB of secret memory (memfd_secret), plus about {} MiB more for the fault timing, and\n"
      "    {} MiB each of ramfs page cache and anonymous memory; all of it is freed when the probe ends;\n"
      "  - leave about {} regions of 2 MiB of the kernel's direct map (more if the allocator scatters the pages)\n"
      "    split into 4 KiB pages until reboot: each region that receives a secret page is split once, if it\n"
      "    was not already, and memfd_secret's splits never heal;\n"
      "  - mount a private ramfs temporarily (a detached mount, in no directory; it goes with the child);\n"
      "  - keep the other CPUs spinning for the fault timing; {} runs take about {} s.\n",
      opt.cost_mib, fault_mib, opt.cost_mib / 2, split_estimate(opt), std::max<std::uint64_t>(opt.runs, 1),
      2 + opt.runs * 2 + opt.cost_mib / 16) +
         (opt.split_mib == 0
              ? std::string()
              : fmt::format("  - then fault up to {} MiB more secret memory, until {} faults split a 2 MiB leaf (about\n"
                            "    {} more regions stay split; at ~0.1 ms a page, {} MiB take up to {} s).\n",
                            opt.split_mib, kSplitFaultsWanted, kSplitFaultsWanted, opt.split_mib,
                            opt.split_mib * 256 / 10000 + 1));
}

[[noreturn]] void refuse(const std::string& msg) {
  std::fprintf(stderr, "exmem probe --cost: %s\n", msg.c_str());
  throw CLI::RuntimeError(1);
}

void confirm(const CostOptions& opt) {
  if (opt.yes) return;
  if (::isatty(STDIN_FILENO) == 0) {
    refuse(
        "refusing to run without --yes: stdin is not a terminal, so the probe cannot ask. It leaves part of the "
        "kernel's direct map split until reboot; pass --yes to accept (see exmem probe --help).");
  }
  std::fprintf(stderr, "%sType yes to continue: ", consequences(opt).c_str());
  std::fflush(stderr);
  std::string answer;
  if (!std::getline(std::cin, answer) || host::trim(answer) != "yes") refuse("not confirmed; nothing was done.");
}

// ---------------------------------------------------------------------------------
// Report and file

// The "cpu" line of /proc/stat: all jiffies, and steal (time the hypervisor ran something
// else while this guest's CPUs wanted to run).
struct CpuTimes {
  std::uint64_t total = 0, steal = 0;
};
std::optional<CpuTimes> cpu_times() {
  const auto t = host::read_text("/proc/stat");
  if (!t || t->rfind("cpu ", 0) != 0) return std::nullopt;
  std::istringstream in(t->substr(4, t->find('\n') - 4));
  CpuTimes c;
  std::uint64_t v = 0;
  for (int i = 0; in >> v; ++i) {
    c.total += v;
    if (i == 7) c.steal = v;
  }
  return c;
}

std::optional<double> loadavg_1m() {
  const auto t = host::read_text("/proc/loadavg");
  if (!t) return std::nullopt;
  try {
    return std::stod(*t);
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

struct Outcome {
  CostRaw raw;
  Costs costs;
  Hypervisor hv;
  host::DirectMapCounters before, after;
  double seconds = 0.0;
  std::string saved;
  std::optional<double> steal_share;  // of all CPU time during the run
  std::optional<double> load_before;  // 1-minute load average when it started
};

std::string pu_opt(const std::optional<std::uint64_t>& v) { return v ? std::to_string(*v) : std::string("absent"); }

std::string fig(const Figure& f) {
  if (!f.measured) return fmt::format("{:.1f} ns (not measured)", f.ns);
  if (!f.low || !f.high) return fmt::format("{:.1f} ns ({} runs)", f.ns, f.runs);
  return fmt::format("{:.1f} ns [{:.1f}, {:.1f}] ({} runs)", f.ns, *f.low, *f.high, f.runs);
}

std::string pct(std::uint64_t part, std::uint64_t whole) {
  return whole == 0 ? std::string("n/a") : fmt::format("{:.1f}%", 100.0 * static_cast<double>(part) /
                                                                      static_cast<double>(whole));
}

std::string contamination(const host::DirectMapCounters& dm) {
  const auto total = dm.total_kb();
  if (!dm.dm4k_kb || !total || *total == 0) return "unknown (no DirectMap4k in /proc/meminfo)";
  return fmt::format(
      "{} of the direct map was mapped by 4 KiB pages before the run (DirectMap4k {} kB of {} kB): at most "
      "that share of control pages may sit in regions split earlier. Such a page is slower, so contamination "
      "can only shrink the measured difference. (The control pages are movable anonymous pages: the unmovable "
      "free memory a ramfs page would come from lies first in regions split earlier.)",
      pct(*dm.dm4k_kb, *total), *dm.dm4k_kb, *total);
}

nlohmann::ordered_json outcome_json(const Outcome& o) {
  using oj = nlohmann::ordered_json;
  const CostRaw& r = o.raw;
  oj j;
  j["costs"] = costs_to_json(o.costs);
  j["machine"] = {{"hypervisor", o.hv.name ? oj(*o.hv.name) : oj(nullptr)},
                  {"hypervisor_vendor", o.hv.present ? oj(o.hv.vendor_raw) : oj(nullptr)},
                  {"nested_paging", nested_paging_note(o.hv)},
                  {"pti", o.costs.source.pti ? oj(*o.costs.source.pti) : oj(nullptr)},
                  {"cpu", r.cpu},
                  {"cpus", r.cpus},
                  {"steal_share", o.steal_share ? oj(*o.steal_share) : oj(nullptr)},
                  {"loadavg_1m_before", o.load_before ? oj(*o.load_before) : oj(nullptr)}};
  const auto total = o.before.total_kb();
  j["placement"] = {{"secret_files", r.secret_files},
                    {"secret_pages", r.secret_pages},
                    {"anchor_pages", r.anchor_pages},
                    {"freed_pages", r.freed_pages},
                    {"reused_pages", r.reused_pages},
                    {"reuse_rate", r.freed_pages ? oj(static_cast<double>(r.reused_pages) /
                                                      static_cast<double>(r.freed_pages))
                                                 : oj(nullptr)},
                    {"split_file_pages", r.split_file_pages},
                    {"split_group_pages", r.split_pages},
                    {"control_file_pages", r.control_file_pages},
                    {"control_group_pages", r.control_pages},
                    {"split_group_regions", r.split_group_regions},
                    {"control_group_regions", r.control_group_regions},
                    {"anchor_regions", r.anchor_regions},
                    {"secret_regions", r.secret_regions},
                    {"contamination_bound", o.before.dm4k_kb && total && *total
                                                ? oj(static_cast<double>(*o.before.dm4k_kb) /
                                                     static_cast<double>(*total))
                                                : oj(nullptr)},
                    {"calls_per_run", r.calls}};
  j["faults"] = {{"placement_faults", r.placement_faults},
                 {"placement_split_faults", r.placement_split_faults},
                 {"placement_multi_split_faults", r.placement_multi_split_faults},
                 {"search_pages", r.search_pages},
                 {"search_split_faults", r.search_split_faults},
                 {"pages_per_run", r.fault_pages_per_run},
                 {"busy_one", r.busy_one},
                 {"busy_all", r.busy_all},
                 {"condition_faults_split", r.condition_faults_split}};
  j["seconds"] = std::round(o.seconds * 10.0) / 10.0;
  j["saved"] = o.saved.empty() ? oj(nullptr) : oj(o.saved);
  return j;
}

std::string outcome_text(const Outcome& o) {
  const CostRaw& r = o.raw;
  const Costs& c = o.costs;
  std::string s;
  auto line = [&s](std::string_view label, std::string_view value) { s += fmt::format("  {:<28}{}\n", label, value); };
  s += fmt::format("exmem probe --cost: Linux {}, {} CPUs, measured on CPU {} ({:.1f} s)\n\n",
                   c.source.kernel.value_or("?"), r.cpus, r.cpu, o.seconds);
  s += "Machine\n";
  line("hypervisor", o.hv.name ? fmt::format("{} (CPUID vendor \"{}\")", *o.hv.name, o.hv.vendor_raw)
                               : std::string("none (bare metal)"));
  line("nested paging", nested_paging_note(o.hv));
  line("page-table isolation", c.source.pti ? (*c.source.pti ? "on (PTI)" : "off") : "unknown");
  line("contention", fmt::format("load average {} at the start; steal {} of CPU time during the run (the figures "
                                 "grow with both)",
                                 o.load_before ? fmt::format("{:.2f}", *o.load_before) : std::string("unknown"),
                                 o.steal_share ? fmt::format("{:.1f}%", *o.steal_share * 100.0) : std::string("unknown")));
  line("cpu", fmt::format("{}, {}", c.source.cpu_model.value_or("?"),
                          c.source.cpu_mhz ? fmt::format("{:.1f} MHz (TSC)", *c.source.cpu_mhz) : "MHz unknown"));

  s += "\nPlacement (ramfs pages in regions split by live memfd_secret pages)\n";
  line("secret memory", fmt::format("{} files of 64 KiB, {} pages, in {} 2 MiB regions", r.secret_files,
                                    r.secret_pages, r.secret_regions));
  line("anchors kept", fmt::format("{} pages in {} regions", r.anchor_pages, r.anchor_regions));
  line("freed, reused by ramfs", fmt::format("{} of {} pages ({})", r.reused_pages, r.freed_pages,
                                             pct(r.reused_pages, r.freed_pages)));
  line("split group", fmt::format("{} of {} ramfs pages (region holds an anchor), in {} 2 MiB regions",
                                  r.split_pages, r.split_file_pages, r.split_group_regions));
  line("control group", fmt::format("{} of {} anonymous pages (region holds no secret page), in {} 2 MiB regions",
                                    r.control_pages, r.control_file_pages, r.control_group_regions));
  line("control contamination", contamination(o.before));

  s += fmt::format("\nKernel access: 64 B of a page read by process_vm_readv (1024 per call), ns per access, median "
                   "[p25, p75] over {} runs of {} accesses\n",
                   c.sweep.empty() ? 0 : c.sweep.front().split.runs, r.calls);
  s += fmt::format("  {:>8}  {:>28}  {:>28}\n", "pages", "split (ramfs, 4 KiB leaf)", "control (anon, 2 MiB leaf)");
  for (const auto& w : c.sweep) {
    const auto cell = [](const Figure& f) {
      return f.low && f.high ? fmt::format("{:.1f} [{:.1f}, {:.1f}]", f.ns, *f.low, *f.high) : fmt::format("{:.1f}", f.ns);
    };
    s += fmt::format("  {:>8}  {:>28}  {:>28}\n", w.pages, cell(w.split), cell(w.control));
  }

  s += fmt::format("\nFirst touch, ns per page ({} pages per run; {} busy = all others{})\n", r.fault_pages_per_run,
                   r.busy_all, r.busy_all == r.busy_one ? fmt::format(": on {} CPUs, 1 busy is all others", r.cpus)
                                                        : std::string());
  if (c.faults) {
    line("anonymous", fig(c.faults->anon));
    line("secret, 0 busy", fig(c.faults->secret_idle));
    line(fmt::format("secret, {} busy", r.busy_one), fig(c.faults->secret_one_busy));
    line(fmt::format("secret, {} busy (all)", r.busy_all), fig(c.faults->secret_all_busy));
    line("secret, split a 2 MiB leaf", fig(c.faults->secret_split));
  }
  line("splitting faults", fmt::format("{} of {} placement faults ({} with other splits, left out); {} of the "
                                       "timed runs' faults split and were left out",
                                       r.placement_split_faults, r.placement_faults, r.placement_multi_split_faults,
                                       r.condition_faults_split));
  if (r.search_pages > 0) {
    line("search (--split-mib)", fmt::format("{} of {} secret pages faulted ({} MiB) split a 2 MiB leaf",
                                            r.search_split_faults, r.search_pages, r.search_pages * kPage >> 20));
  }

  s += "\nFigures (exmem-costs/1)\n";
  line("walk_ns", fig(c.walk));
  line("ipi_round_trip_ns", fig(c.ipi_round_trip));
  line("single_page_flush_ns", fig(c.single_page_flush));
  line("full_flush_ns", fig(c.full_flush));
  line("kernel_access_ns", fig(c.kernel_access));
  for (const auto& [name, f] : {std::pair<const char*, const Figure*>{"walk_ns", &c.walk},
                                {"ipi_round_trip_ns", &c.ipi_round_trip}, {"full_flush_ns", &c.full_flush}}) {
    if (f->how.find("clamped") != std::string::npos) line(name, f->how);
  }

  s += "\nDirect map\n";
  line("direct_map_level2_splits", fmt::format("{} -> {}", pu_opt(o.before.level2_splits), pu_opt(o.after.level2_splits)));
  line("DirectMap4k", fmt::format("{} kB -> {} kB", pu_opt(o.before.dm4k_kb), pu_opt(o.after.dm4k_kb)));
  if (!o.saved.empty()) s += fmt::format("\nSaved to {}\n", o.saved);
  return s;
}

// Writes text to FILE.tmp, then renames it to FILE: no half-written FILE remains.
void save_file(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (f == nullptr) refuse(fmt::format("cannot write the costs file {}: {} (creating {})", path, host::errno_text(errno), tmp));
  const bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size() && std::fflush(f) == 0 &&
                  ::fsync(::fileno(f)) == 0;
  const int e = errno;
  if (std::fclose(f) != 0 || !ok) {
    std::remove(tmp.c_str());
    refuse(fmt::format("cannot write the costs file {}: {}", path, host::errno_text(ok ? errno : e)));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int re = errno;
    std::remove(tmp.c_str());
    refuse(fmt::format("cannot write the costs file {}: rename from {} failed: {}", path, tmp, host::errno_text(re)));
  }
}

}  // namespace

void run_cost(const CostOptions& opt) {
  // Checks first: nothing is asked that could not be done.
  std::uint64_t cap_eff = 0;
  if (const auto st = host::read_text("/proc/self/status")) cap_eff = host::status_hex(*st, "CapEff").value_or(0);
  if (!host::has_cap(cap_eff, host::kCapSysAdmin)) {
    refuse("needs root (CAP_SYS_ADMIN): the page frames in /proc/self/pagemap are shown only to it, and mounting "
           "the private ramfs needs it. Run it as root, e.g. sudo exmem probe --cost.");
  }
  const host::SecretFacts sf = host::check_secret();
  if (sf.err != 0) refuse("memfd_secret is not available: " + host::secret_reason(sf));
  if (const auto mi = host::read_text("/proc/meminfo")) {
    const auto avail = host::key_value(*mi, "MemAvailable");
    const std::uint64_t need_kb = (opt.cost_mib * 2 + opt.split_mib + 16) * 1024;
    if (avail && need_kb > *avail / 4 * 3) {
      refuse(fmt::format("needs about {} MiB ({} MiB secret, as much ramfs and anonymous, {} MiB for --split-mib), "
                         "more than three quarters of MemAvailable ({} MiB). Ask for less with --cost-mib or "
                         "--split-mib.",
                         need_kb / 1024, opt.cost_mib, opt.split_mib, *avail / 1024));
    }
  }
  if (!opt.save.empty()) {
    // Fail before measuring if the file cannot be written at all.
    const std::string tmp = opt.save + ".tmp";
    FILE* f = std::fopen(tmp.c_str(), "w");
    if (f == nullptr) {
      refuse(fmt::format("cannot write the costs file {}: {} (creating {})", opt.save, host::errno_text(errno), tmp));
    }
    std::fclose(f);
    std::remove(tmp.c_str());
  }
  confirm(opt);

  Outcome o;
  o.hv = read_hypervisor();
  CostSource src;
  src.exmem_version = EXMEM_VERSION;
  src.date = utc_now();
  utsname u{};
  if (::uname(&u) == 0) src.kernel = u.release;
  src.cpu_model = cpu_model();
  src.cpu_mhz = cpu_mhz();
  const long online = ::sysconf(_SC_NPROCESSORS_ONLN);
  if (online > 0) src.cpus = static_cast<unsigned>(online);
  src.hypervisor = o.hv.name;
  src.pti = pti_on();

  const auto t0 = std::chrono::steady_clock::now();
  o.load_before = loadavg_1m();
  const auto ct0 = cpu_times();
  o.before = host::read_direct_map();
  try {
    o.raw = measure(opt);
    o.after = host::read_direct_map();
    o.costs = derive_costs(o.raw, std::move(src));
  } catch (const std::exception& e) {
    refuse(e.what());
  }
  o.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (const auto ct1 = cpu_times(); ct0 && ct1 && ct1->total > ct0->total) {
    o.steal_share = static_cast<double>(ct1->steal - ct0->steal) / static_cast<double>(ct1->total - ct0->total);
  }
  if (o.before.level2_splits && o.after.level2_splits && o.before.dm4k_kb && o.after.dm4k_kb) {
    o.costs.counters = CostCounters{*o.before.level2_splits, *o.after.level2_splits, *o.before.dm4k_kb,
                                    *o.after.dm4k_kb};
  }
  if (!opt.save.empty()) {
    save_file(opt.save, costs_to_json(o.costs).dump(2) + "\n");
    o.saved = opt.save;
  }
  const std::string out = opt.json_out ? outcome_json(o).dump(2) + "\n" : outcome_text(o);
  if (std::fwrite(out.data(), 1, out.size(), stdout) != out.size() || std::fflush(stdout) != 0) {
    refuse(fmt::format("writing the report failed: {}", host::errno_text(errno)));
  }
}

}  // namespace exmem::cli::probe
