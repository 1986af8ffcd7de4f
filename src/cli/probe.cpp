// `exmem probe`: what this machine's kernel offers for exclusive memory, and what it
// costs, measured. It calls the kernel directly (not the exmem library), so it reports
// what the kernel gives.
//
// Output: human-readable by default; with --json one JSON object. Its keys are stable:
//
// {                                    (keys in this order)
//   "system": {"kernel": "6.18.0", "machine": "x86_64", "page_size": 4096,
//              "mem_total_kb": n|null, "mem_available_kb": n|null,
//              "euid": n, "cap_sys_admin": bool},
//   "memfd_secret": {
//     "available": bool,                 // memfd_secret(O_CLOEXEC) returned a descriptor
//     "errno": n|null,                   // errno of the failed call, null when available
//     "errno_name": "ENOSYS"|null,
//     "reason": string,                  // why not (or "available")
//     "secretmem_enable_param": "Y"|"N"|null,   // /sys/module/secretmem/parameters/enable
//     "cmdline_secretmem_enable": string|null,  // secretmem.enable= on /proc/cmdline
//     "seccomp_mode": n|null},           // Seccomp: of /proc/self/status
//   "memlock": {
//     "soft_bytes": n|null,              // RLIMIT_MEMLOCK; null = unlimited
//     "hard_bytes": n|null,
//     "locked_bytes": n|null,            // VmLck of this process
//     "cap_ipc_lock": bool,              // CAP_IPC_LOCK (bit 14) in CapEff
//     "meaning": string},
//   "hibernation": {
//     "state_file": bool,                // /sys/power/state exists
//     "state": string|null,              // its contents
//     "disk_listed_now": bool|null,      // "disk" listed, no secret file held by us
//     "disk_listed_with_secret_open": bool|null,  // while we hold a memfd_secret file
//     "blocked_by_secretmem": bool|null, // observed: listed now, not listed with one open
//     "hibernation_supported": bool|null,// /sys/power/disk exists (CONFIG_HIBERNATION)
//     "disk_file": string|null,          // contents of /sys/power/disk
//     "note": string},
//   "direct_map": {                      // null for a field the kernel does not show
//     "DirectMap4k": kB|null, "DirectMap2M": kB|null, "DirectMap1G": kB|null,
//     "total_kb": kB|null,
//     "direct_map_level2_splits": n|null, "direct_map_level3_splits": n|null,
//     "direct_map_level2_collapses": n|null, "direct_map_level3_collapses": n|null},
//   "fault_cost": {                      // first touch of one page, ns per page
//     "measured": bool, "error": string|null, "pages": n,
//     "secret_ns_median": n|null, "secret_ns_p90": n|null,
//     "anon_ns_median": n|null, "anon_ns_p90": n|null,
//     "ratio": x|null,                   // secret median / anonymous median
//     "timer_ns_median": n|null},        // cost of one pair of clock readings (included)
//   "reserve": {                         // one memfd_secret file of mib MiB, every page touched
//     "measured": bool, "error": string|null, "mib": n, "pages": n,
//     "asked_bytes": n, "memlock_soft_bytes": n|null,
//     "level2_splits_delta": n|null, "level3_splits_delta": n|null,
//     "level2_collapses_delta": n|null,
//     "directmap4k_delta_kb": n|null, "directmap2m_delta_kb": n|null,
//     "directmap1g_delta_kb": n|null,
//     "touch_ns_per_page": n|null,
//     "pages_present": n|null,           // present in /proc/self/pagemap
//     "distinct_2m_regions": n|null,     // distinct pfn >> 9 of those pages; null if unknown
//     "pagemap_status": "ok"|"needs root"|"unreadable"|"no pfns"|"not present"|"not measured",
//     "pagemap_note": string,
//     "interpretation": string}
// }
// With --no-measure, fault_cost and reserve have "measured": false and null figures.

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "probe_util.hpp"

#ifndef SYS_memfd_secret
#define SYS_memfd_secret 447
#endif

namespace exmem::cli {
namespace {

namespace pu = probe_util;
// Keys keep the order of the layout above.
using json = nlohmann::ordered_json;

constexpr unsigned kCapIpcLock = 14;
constexpr unsigned kCapSysAdmin = 21;
constexpr std::uint64_t kMiB = std::uint64_t{1} << 20;
constexpr std::uint64_t kFaultPagesMax = 65536;
constexpr std::uint64_t kReserveMibMax = 65536;

// ---------------------------------------------------------------------------------
// Small system helpers

std::optional<std::string> read_text(const char* path) {
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::string out;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      ::close(fd);
      return std::nullopt;
    }
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return out;
}

bool path_exists(const char* path) { return ::access(path, F_OK) == 0; }

std::string errno_name(int e) {
  switch (e) {
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case EINTR: return "EINTR";
    case EBADF: return "EBADF";
    case EAGAIN: return "EAGAIN";
    case ENOMEM: return "ENOMEM";
    case EACCES: return "EACCES";
    case EFAULT: return "EFAULT";
    case EBUSY: return "EBUSY";
    case ENODEV: return "ENODEV";
    case EINVAL: return "EINVAL";
    case ENFILE: return "ENFILE";
    case EMFILE: return "EMFILE";
    case EFBIG: return "EFBIG";
    case ENOSPC: return "ENOSPC";
    case ENOSYS: return "ENOSYS";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    default: return fmt::format("errno {}", e);
  }
}

std::string errno_text(int e) { return fmt::format("{} ({})", errno_name(e), std::strerror(e)); }

long secret_create() { return ::syscall(SYS_memfd_secret, static_cast<unsigned>(O_CLOEXEC)); }

std::int64_t now_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000000000 + static_cast<std::int64_t>(ts.tv_nsec);
}

inline void compiler_barrier() { asm volatile("" ::: "memory"); }

std::string fmt_bytes(std::uint64_t b) {
  if (b >= kMiB && b % kMiB == 0) return fmt::format("{} MiB", b / kMiB);
  if (b >= 1024 && b % 1024 == 0) return fmt::format("{} KiB", b / 1024);
  return fmt::format("{} B", b);
}

std::string fmt_limit(const std::optional<std::uint64_t>& v) {
  return v ? fmt::format("{} ({} bytes)", fmt_bytes(*v), *v) : std::string("unlimited");
}

template <typename T>
json opt_json(const std::optional<T>& v) {
  return v ? json(*v) : json(nullptr);
}

template <typename T>
std::string opt_str(const std::optional<T>& v, std::string_view absent = "absent") {
  return v ? fmt::format("{}", *v) : std::string(absent);
}

std::optional<std::int64_t> delta(const std::optional<std::uint64_t>& before,
                                  const std::optional<std::uint64_t>& after) {
  if (!before || !after) return std::nullopt;
  return static_cast<std::int64_t>(*after) - static_cast<std::int64_t>(*before);
}

// ---------------------------------------------------------------------------------
// The sections

struct System {
  std::string kernel;
  std::string machine;
  std::size_t page_size = 4096;
  std::optional<std::uint64_t> mem_total_kb;
  std::optional<std::uint64_t> mem_available_kb;
  unsigned euid = 0;
  std::optional<std::uint64_t> cap_eff;
  std::optional<std::uint64_t> seccomp_mode;
  std::optional<std::uint64_t> locked_kb;
  bool cap(unsigned bit) const { return cap_eff && pu::has_cap(*cap_eff, bit); }
};

System read_system() {
  System s;
  utsname u{};
  if (::uname(&u) == 0) {
    s.kernel = u.release;
    s.machine = u.machine;
  }
  const long ps = ::sysconf(_SC_PAGESIZE);
  if (ps > 0) s.page_size = static_cast<std::size_t>(ps);
  if (const auto mi = read_text("/proc/meminfo")) {
    const auto kv = pu::parse_key_values(*mi);
    s.mem_total_kb = pu::lookup(kv, "MemTotal");
    s.mem_available_kb = pu::lookup(kv, "MemAvailable");
  }
  s.euid = static_cast<unsigned>(::geteuid());
  if (const auto st = read_text("/proc/self/status")) {
    s.cap_eff = pu::parse_status_hex(*st, "CapEff");
    const auto kv = pu::parse_key_values(*st);
    s.seccomp_mode = pu::lookup(kv, "Seccomp");
    s.locked_kb = pu::lookup(kv, "VmLck");
  }
  return s;
}

struct SecretProbe {
  bool available = false;
  int err = 0;
  std::string reason;
  std::optional<std::string> enable_param;
  std::optional<std::string> cmdline_enable;
};

SecretProbe probe_secret(const System& sys) {
  SecretProbe p;
  if (const auto e = read_text("/sys/module/secretmem/parameters/enable")) {
    p.enable_param = std::string(pu::trim(*e));
  }
  if (const auto c = read_text("/proc/cmdline")) p.cmdline_enable = pu::cmdline_param(*c, "secretmem.enable");

  const long fd = secret_create();
  if (fd >= 0) {
    ::close(static_cast<int>(fd));
    p.available = true;
    p.reason = "available: memfd_secret(O_CLOEXEC) returned a file descriptor";
    return p;
  }
  p.err = errno;
  const bool seccomp_filter = sys.seccomp_mode && *sys.seccomp_mode == 2;
  const std::string seccomp_note =
      seccomp_filter ? " A seccomp filter is active on this process (Seccomp: 2), and filters may also answer ENOSYS."
                     : "";
  switch (p.err) {
    case ENOSYS: {
      const auto [major, minor] = pu::kernel_major_minor(sys.kernel);
      const bool known = major != 0;
      const bool before_5_14 = known && (major < 5 || (major == 5 && minor < 14));
      const bool before_6_5 = known && (major < 6 || (major == 6 && minor < 5));
      if (p.cmdline_enable && pu::kernel_bool_false(*p.cmdline_enable)) {
        p.reason = fmt::format("disabled on the kernel command line (secretmem.enable={} in /proc/cmdline); "
                               "remove it, or set secretmem.enable=1, and reboot.",
                               *p.cmdline_enable);
      } else if (before_5_14) {
        p.reason = fmt::format("not in this kernel: memfd_secret appeared in Linux 5.14, this is {}.", sys.kernel);
      } else if (before_6_5 && !p.cmdline_enable) {
        p.reason = fmt::format("off by default before Linux 6.5 (this is {}): boot with secretmem.enable=1.",
                               sys.kernel);
      } else if (p.enable_param && pu::kernel_bool_false(*p.enable_param)) {
        p.reason = "disabled: /sys/module/secretmem/parameters/enable reads N (secretmem.enable=0 at boot).";
      } else if (p.enable_param && seccomp_filter) {
        p.reason = fmt::format(
            "secretmem is built in and enabled (/sys/module/secretmem/parameters/enable reads {}), so the "
            "ENOSYS most likely comes from the seccomp filter active on this process (Seccomp: 2), as "
            "container runtimes answer for system calls their profile does not know.",
            *p.enable_param);
      } else if (p.enable_param) {
        p.reason = fmt::format(
            "secretmem is built in and enabled (/sys/module/secretmem/parameters/enable reads {}), but the "
            "architecture cannot change the direct map one page at a time (can_set_direct_map() is false; "
            "on arm64 that needs rodata=full or a similar setting).",
            *p.enable_param);
      } else {
        p.reason = fmt::format(
            "not supported by this kernel: built without CONFIG_SECRETMEM (no /sys/module/secretmem), or the "
            "architecture cannot change the direct map one page at a time; secretmem.enable is not set to 0 "
            "on /proc/cmdline.{}",
            seccomp_note);
      }
      break;
    }
    case EPERM:
    case EACCES:
      p.reason = fmt::format(
          "refused by a security policy: a seccomp filter (Seccomp mode {} in /proc/self/status) or a Linux "
          "security module denies the system call.",
          opt_str(sys.seccomp_mode, "unknown"));
      break;
    case EMFILE:
    case ENFILE:
      p.reason = "out of file descriptors (per-process or system-wide limit).";
      break;
    case ENOMEM:
      p.reason = "the kernel could not allocate the file (out of memory).";
      break;
    default:
      p.reason = fmt::format("memfd_secret failed with {}.", errno_text(p.err));
      break;
  }
  return p;
}

struct Memlock {
  std::optional<std::uint64_t> soft;
  std::optional<std::uint64_t> hard;
  std::optional<std::uint64_t> locked_bytes;
  bool cap_ipc_lock = false;
  bool caps_known = false;
  std::string meaning;
};

std::optional<std::uint64_t> rlim_value(rlim_t v) {
  if (v == RLIM_INFINITY) return std::nullopt;
  return static_cast<std::uint64_t>(v);
}

Memlock read_memlock(const System& sys) {
  Memlock m;
  rlimit rl{};
  if (::getrlimit(RLIMIT_MEMLOCK, &rl) == 0) {
    m.soft = rlim_value(rl.rlim_cur);
    m.hard = rlim_value(rl.rlim_max);
  }
  if (sys.locked_kb) m.locked_bytes = *sys.locked_kb * 1024;
  m.caps_known = sys.cap_eff.has_value();
  m.cap_ipc_lock = sys.cap(kCapIpcLock);
  if (m.cap_ipc_lock) {
    m.meaning =
        "limit ignored: CAP_IPC_LOCK is in the effective set, so memfd_secret mappings (and mlock) are not "
        "limited by RLIMIT_MEMLOCK";
  } else if (!m.soft) {
    m.meaning = "no limit: RLIMIT_MEMLOCK is unlimited";
  } else {
    m.meaning = fmt::format(
        "this process may map at most {} of memfd_secret memory (and mlock) in total: mappings are charged "
        "to RLIMIT_MEMLOCK at mmap time and refused with EAGAIN beyond it{}",
        fmt_bytes(*m.soft), m.caps_known ? "" : " (CapEff unreadable: capabilities unknown)");
  }
  return m;
}

struct Hibernation {
  bool state_file = false;
  std::optional<std::string> state;
  std::optional<bool> disk_now;
  std::optional<bool> disk_with_secret;
  std::optional<bool> blocked;
  std::optional<bool> supported;
  std::optional<std::string> disk_file;
  std::string note;
};

Hibernation probe_hibernation(const SecretProbe& secret) {
  Hibernation h;
  const auto st = read_text("/sys/power/state");
  h.state_file = st.has_value();
  if (const auto d = read_text("/sys/power/disk")) {
    h.disk_file = std::string(pu::trim(*d));
    h.supported = true;
  } else if (path_exists("/sys/power")) {
    h.supported = false;
  }
  if (!st) {
    h.note = "/sys/power/state is absent (no sysfs here, or a kernel without power management): "
             "hibernation cannot be read.";
    return h;
  }
  h.state = std::string(pu::trim(*st));
  h.disk_now = pu::lists_word(*st, "disk");

  if (secret.available) {
    const long fd = secret_create();
    if (fd >= 0) {
      // The kernel counts secretmem users from file creation, not from mmap.
      if (const auto st2 = read_text("/sys/power/state")) h.disk_with_secret = pu::lists_word(*st2, "disk");
      ::close(static_cast<int>(fd));
    }
  }

  if (*h.disk_now) {
    if (!h.disk_with_secret) {
      h.note = "hibernation is available now; the effect of a memfd_secret file could not be observed "
               "(memfd_secret unavailable).";
    } else if (!*h.disk_with_secret) {
      h.blocked = true;
      h.note = "hibernation is available now and blocked while any memfd_secret file exists: the kernel's "
               "hibernation_available() is false while secretmem is active. A process holding exclusive "
               "memory blocks hibernation for the whole system.";
    } else {
      h.blocked = false;
      h.note = "unexpected: /sys/power/state still lists \"disk\" while a memfd_secret file is open.";
    }
  } else if (h.supported && !*h.supported) {
    h.note = "this kernel offers no hibernation (no /sys/power/disk: built without CONFIG_HIBERNATION), so "
             "secret memory blocks nothing here. On kernels with hibernation, any open memfd_secret file "
             "disables it system-wide.";
  } else {
    h.note = fmt::format(
        "hibernation is unavailable already (/sys/power/disk reads \"{}\"): nohibernate on the command line, "
        "kernel lockdown, or another process holding a memfd_secret file; the effect of secret memory "
        "cannot be observed now.",
        h.disk_file.value_or("?"));
  }
  return h;
}

struct DirectMap {
  std::optional<std::uint64_t> dm4k, dm2m, dm1g;
  std::optional<std::uint64_t> l2_splits, l3_splits, l2_collapses, l3_collapses;
  std::optional<std::uint64_t> total_kb() const {
    if (!dm4k && !dm2m && !dm1g) return std::nullopt;
    return dm4k.value_or(0) + dm2m.value_or(0) + dm1g.value_or(0);
  }
};

DirectMap read_direct_map() {
  DirectMap d;
  if (const auto mi = read_text("/proc/meminfo")) {
    const auto kv = pu::parse_key_values(*mi);
    d.dm4k = pu::lookup(kv, "DirectMap4k");
    d.dm2m = pu::lookup(kv, "DirectMap2M");
    d.dm1g = pu::lookup(kv, "DirectMap1G");
  }
  if (const auto vm = read_text("/proc/vmstat")) {
    const auto kv = pu::parse_key_values(*vm);
    d.l2_splits = pu::lookup(kv, "direct_map_level2_splits");
    d.l3_splits = pu::lookup(kv, "direct_map_level3_splits");
    d.l2_collapses = pu::lookup(kv, "direct_map_level2_collapses");
    d.l3_collapses = pu::lookup(kv, "direct_map_level3_collapses");
  }
  return d;
}

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

struct Fd {
  int fd = -1;
  Fd() = default;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

std::string memlock_refusal(std::uint64_t asked, const Memlock& ml) {
  std::optional<std::uint64_t> locked_kb;
  if (const auto st = read_text("/proc/self/status")) locked_kb = pu::lookup(pu::parse_key_values(*st), "VmLck");
  return fmt::format(
      "RLIMIT_MEMLOCK refused the mapping (EAGAIN): asked {} bytes ({}), soft limit {}, already locked by "
      "this process {}. Raise the limit with `ulimit -l KIB` (up to the hard limit: {}), a `memlock` line "
      "in /etc/security/limits.conf (LimitMEMLOCK= for a systemd service), or run with CAP_IPC_LOCK.",
      asked, fmt_bytes(asked), fmt_limit(ml.soft), locked_kb ? fmt_bytes(*locked_kb * 1024) : "unknown",
      fmt_limit(ml.hard));
}

// Map a memfd_secret file of `len` bytes, MAP_SHARED. Returns an error text on failure.
std::optional<std::string> map_secret(Mapping& m, std::size_t len, const Memlock& ml) {
  Fd f;
  const long fd = secret_create();
  if (fd < 0) return fmt::format("memfd_secret failed: {}", errno_text(errno));
  f.fd = static_cast<int>(fd);
  if (::ftruncate(f.fd, static_cast<off_t>(len)) != 0) return fmt::format("ftruncate failed: {}", errno_text(errno));
  void* p = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, f.fd, 0);
  if (p == MAP_FAILED) {
    const int e = errno;
    if (e == EAGAIN) return memlock_refusal(len, ml);
    return fmt::format("mmap of the memfd_secret file failed: {}", errno_text(e));
  }
  m.addr = p;
  m.len = len;
  return std::nullopt;  // the mapping keeps the file alive
}

struct FaultCost {
  bool measured = false;
  std::optional<std::string> error;
  std::uint64_t pages = 0;
  std::optional<std::int64_t> secret_median, secret_p90, anon_median, anon_p90, timer_median;
  std::optional<double> ratio;
};

std::int64_t timed_touch(char* page) {
  volatile char* p = page;
  compiler_barrier();
  const std::int64_t t0 = now_ns();
  compiler_barrier();
  *p = 1;
  compiler_barrier();
  const std::int64_t t1 = now_ns();
  compiler_barrier();
  return t1 - t0;
}

FaultCost measure_fault_cost(std::uint64_t pages, const System& sys, const SecretProbe& secret, const Memlock& ml) {
  FaultCost fc;
  fc.pages = pages;
  if (!secret.available) {
    fc.error = fmt::format("memfd_secret is not available: {}", secret.reason);
    return fc;
  }
  const std::size_t ps = sys.page_size;
  // One extra page of each kind, touched first and not timed: it warms the code paths
  // and allocates the page tables.
  const std::size_t len = (static_cast<std::size_t>(pages) + 1) * ps;

  Mapping anon;
  anon.addr = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (anon.addr == MAP_FAILED) {
    fc.error = fmt::format("anonymous mmap failed: {}", errno_text(errno));
    return fc;
  }
  anon.len = len;
  // Time 4 KiB faults, not a transparent huge page filled on the first touch.
  (void)::madvise(anon.addr, len, MADV_NOHUGEPAGE);

  Mapping sec;
  if (auto err = map_secret(sec, len, ml)) {
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

struct Reserve {
  bool measured = false;
  std::optional<std::string> error;
  std::uint64_t mib = 0;
  std::uint64_t pages = 0;
  std::uint64_t asked_bytes = 0;
  std::optional<std::uint64_t> memlock_soft;
  std::optional<std::int64_t> l2_delta, l3_delta, l2_collapse_delta, dm4k_delta, dm2m_delta, dm1g_delta;
  std::optional<std::int64_t> touch_ns_per_page;
  std::optional<std::uint64_t> pages_present;
  std::optional<std::uint64_t> regions;
  std::string pagemap_status = "not measured";
  std::string pagemap_note;
  std::string interpretation;
};

// Reads the pagemap entries of [base, base + pages * ps) and fills the pagemap fields.
void read_pagemap(Reserve& r, const char* base, std::size_t pages, const System& sys) {
  Fd pm;
  pm.fd = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (pm.fd < 0) {
    r.pagemap_status = "unreadable";
    r.pagemap_note = fmt::format("/proc/self/pagemap could not be opened: {}", errno_text(errno));
    return;
  }
  const std::size_t ps = sys.page_size;
  const std::uint64_t first = reinterpret_cast<std::uintptr_t>(base) / ps;
  std::vector<std::uint64_t> pfns;
  pfns.reserve(pages);
  std::uint64_t present = 0;
  constexpr std::size_t kChunk = 65536;
  std::vector<std::uint64_t> buf(kChunk);
  for (std::size_t done = 0; done < pages;) {
    const std::size_t n = std::min(kChunk, pages - done);
    const auto want = static_cast<ssize_t>(n * sizeof(std::uint64_t));
    const ssize_t got = ::pread(pm.fd, buf.data(), static_cast<std::size_t>(want),
                                static_cast<off_t>((first + done) * sizeof(std::uint64_t)));
    if (got != want) {
      r.pagemap_status = "unreadable";
      r.pagemap_note = got < 0 ? fmt::format("reading /proc/self/pagemap failed: {}", errno_text(errno))
                               : std::string("short read from /proc/self/pagemap");
      return;
    }
    for (std::size_t i = 0; i < n; ++i) {
      if (!pu::pagemap_present(buf[i])) continue;
      ++present;
      const std::uint64_t pfn = pu::pagemap_pfn(buf[i]);
      if (pfn != 0) pfns.push_back(pfn);
    }
    done += n;
  }
  r.pages_present = present;
  if (present == 0) {
    r.pagemap_status = "not present";
    r.pagemap_note =
        "pagemap does not show the memfd_secret pages as present although every page was touched: this "
        "kernel hides secretmem pages from pagemap, so the 2 MiB regions holding them cannot be counted.";
    return;
  }
  if (pfns.empty()) {
    if (!sys.cap(kCapSysAdmin)) {
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
  // Regions of 2 MiB: 2 MiB / page size frames (pfn >> 9 with 4 KiB pages).
  unsigned shift = 0;
  while ((ps << shift) < (std::size_t{2} << 20)) ++shift;
  r.regions = pu::distinct_regions(std::move(pfns), shift);
  r.pagemap_status = "ok";
  r.pagemap_note = fmt::format(
      "pagemap reports pfns for memfd_secret pages: {} of {} pages present, in {} distinct 2 MiB regions "
      "(pfn >> {}).",
      present, pages, *r.regions, shift);
  if (present != pages) r.pagemap_note += " Some touched pages are not shown present.";
}

Reserve measure_reserve(std::uint64_t mib, const System& sys, const SecretProbe& secret, const Memlock& ml) {
  Reserve r;
  r.mib = mib;
  r.asked_bytes = mib * kMiB;
  r.pages = r.asked_bytes / sys.page_size;
  r.memlock_soft = ml.soft;
  if (!secret.available) {
    r.error = fmt::format("memfd_secret is not available: {}", secret.reason);
    return r;
  }
  if (sys.mem_available_kb && r.asked_bytes / 1024 > *sys.mem_available_kb / 4 * 3) {
    r.error = fmt::format(
        "not attempted: {} MiB is more than three quarters of MemAvailable ({} MiB); a memfd_secret page "
        "that cannot be allocated when first touched invokes the OOM killer. Ask for less with --reserve-mib.",
        mib, *sys.mem_available_kb / 1024);
    return r;
  }

  Mapping m;
  const DirectMap before = read_direct_map();
  if (auto err = map_secret(m, static_cast<std::size_t>(r.asked_bytes), ml)) {
    r.error = *err;
    return r;
  }
  const std::int64_t t0 = now_ns();
  for (std::size_t i = 0; i < r.pages; ++i) {
    volatile char* p = m.bytes() + i * sys.page_size;
    *p = 1;
  }
  const std::int64_t t1 = now_ns();
  const DirectMap after = read_direct_map();
  r.measured = true;
  if (r.pages > 0) r.touch_ns_per_page = (t1 - t0) / static_cast<std::int64_t>(r.pages);
  r.l2_delta = delta(before.l2_splits, after.l2_splits);
  r.l3_delta = delta(before.l3_splits, after.l3_splits);
  r.l2_collapse_delta = delta(before.l2_collapses, after.l2_collapses);
  r.dm4k_delta = delta(before.dm4k, after.dm4k);
  r.dm2m_delta = delta(before.dm2m, after.dm2m);
  r.dm1g_delta = delta(before.dm1g, after.dm1g);

  read_pagemap(r, m.bytes(), static_cast<std::size_t>(r.pages), sys);

  // Interpretation: one split per 2 MiB region first touched; regions already split cost nothing.
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
  r.interpretation = s;
  return r;
}

// ---------------------------------------------------------------------------------
// Output

struct Report {
  System sys;
  SecretProbe secret;
  Memlock memlock;
  Hibernation hib;
  DirectMap dm;
  FaultCost fault;
  Reserve reserve;
};

json to_json(const Report& r) {
  json j;
  j["system"] = {{"kernel", r.sys.kernel},
                 {"machine", r.sys.machine},
                 {"page_size", r.sys.page_size},
                 {"mem_total_kb", opt_json(r.sys.mem_total_kb)},
                 {"mem_available_kb", opt_json(r.sys.mem_available_kb)},
                 {"euid", r.sys.euid},
                 {"cap_sys_admin", r.sys.cap(kCapSysAdmin)}};
  j["memfd_secret"] = {{"available", r.secret.available},
                       {"errno", r.secret.available ? json(nullptr) : json(r.secret.err)},
                       {"errno_name", r.secret.available ? json(nullptr) : json(errno_name(r.secret.err))},
                       {"reason", r.secret.reason},
                       {"secretmem_enable_param", opt_json(r.secret.enable_param)},
                       {"cmdline_secretmem_enable", opt_json(r.secret.cmdline_enable)},
                       {"seccomp_mode", opt_json(r.sys.seccomp_mode)}};
  j["memlock"] = {{"soft_bytes", opt_json(r.memlock.soft)},
                  {"hard_bytes", opt_json(r.memlock.hard)},
                  {"locked_bytes", opt_json(r.memlock.locked_bytes)},
                  {"cap_ipc_lock", r.memlock.cap_ipc_lock},
                  {"meaning", r.memlock.meaning}};
  j["hibernation"] = {{"state_file", r.hib.state_file},
                      {"state", opt_json(r.hib.state)},
                      {"disk_listed_now", opt_json(r.hib.disk_now)},
                      {"disk_listed_with_secret_open", opt_json(r.hib.disk_with_secret)},
                      {"blocked_by_secretmem", opt_json(r.hib.blocked)},
                      {"hibernation_supported", opt_json(r.hib.supported)},
                      {"disk_file", opt_json(r.hib.disk_file)},
                      {"note", r.hib.note}};
  j["direct_map"] = {{"DirectMap4k", opt_json(r.dm.dm4k)},
                     {"DirectMap2M", opt_json(r.dm.dm2m)},
                     {"DirectMap1G", opt_json(r.dm.dm1g)},
                     {"total_kb", opt_json(r.dm.total_kb())},
                     {"direct_map_level2_splits", opt_json(r.dm.l2_splits)},
                     {"direct_map_level3_splits", opt_json(r.dm.l3_splits)},
                     {"direct_map_level2_collapses", opt_json(r.dm.l2_collapses)},
                     {"direct_map_level3_collapses", opt_json(r.dm.l3_collapses)}};
  j["fault_cost"] = {{"measured", r.fault.measured},
                     {"error", opt_json(r.fault.error)},
                     {"pages", r.fault.pages},
                     {"secret_ns_median", opt_json(r.fault.secret_median)},
                     {"secret_ns_p90", opt_json(r.fault.secret_p90)},
                     {"anon_ns_median", opt_json(r.fault.anon_median)},
                     {"anon_ns_p90", opt_json(r.fault.anon_p90)},
                     {"ratio", opt_json(r.fault.ratio)},
                     {"timer_ns_median", opt_json(r.fault.timer_median)}};
  j["reserve"] = {{"measured", r.reserve.measured},
                  {"error", opt_json(r.reserve.error)},
                  {"mib", r.reserve.mib},
                  {"pages", r.reserve.pages},
                  {"asked_bytes", r.reserve.asked_bytes},
                  {"memlock_soft_bytes", opt_json(r.reserve.memlock_soft)},
                  {"level2_splits_delta", opt_json(r.reserve.l2_delta)},
                  {"level3_splits_delta", opt_json(r.reserve.l3_delta)},
                  {"level2_collapses_delta", opt_json(r.reserve.l2_collapse_delta)},
                  {"directmap4k_delta_kb", opt_json(r.reserve.dm4k_delta)},
                  {"directmap2m_delta_kb", opt_json(r.reserve.dm2m_delta)},
                  {"directmap1g_delta_kb", opt_json(r.reserve.dm1g_delta)},
                  {"touch_ns_per_page", opt_json(r.reserve.touch_ns_per_page)},
                  {"pages_present", opt_json(r.reserve.pages_present)},
                  {"distinct_2m_regions", opt_json(r.reserve.regions)},
                  {"pagemap_status", r.reserve.pagemap_status},
                  {"pagemap_note", r.reserve.pagemap_note},
                  {"interpretation", r.reserve.interpretation}};
  return j;
}

std::string kb(const std::optional<std::uint64_t>& v) {
  return v ? fmt::format("{} kB", *v) : std::string("absent");
}

std::string signed_str(const std::optional<std::int64_t>& v, std::string_view unit = "") {
  if (!v) return "absent";
  return fmt::format("{:+}{}", *v, unit);
}

std::string yes_no(const std::optional<bool>& v, std::string_view unknown = "unknown") {
  return v ? std::string(*v ? "yes" : "no") : std::string(unknown);
}

std::string human(const Report& r, bool measured) {
  std::string o;
  auto line = [&o](std::string_view label, std::string_view value) {
    o += fmt::format("  {:<28}{}\n", label, value);
  };
  o += fmt::format("exmem probe: Linux {} {}, page size {} B\n\n", r.sys.kernel, r.sys.machine, r.sys.page_size);

  o += "memfd_secret\n";
  if (r.secret.available) {
    line("available", "yes");
  } else {
    line("available", fmt::format("no: {}", errno_text(r.secret.err)));
    line("why", r.secret.reason);
  }
  line("secretmem.enable (sysfs)", r.secret.enable_param.value_or("absent"));
  line("secretmem.enable (cmdline)", r.secret.cmdline_enable.value_or("not set"));

  o += "\nRLIMIT_MEMLOCK\n";
  line("soft", fmt_limit(r.memlock.soft));
  line("hard", fmt_limit(r.memlock.hard));
  line("locked now (VmLck)", r.memlock.locked_bytes ? fmt_bytes(*r.memlock.locked_bytes) : "unknown");
  line("CAP_IPC_LOCK (effective)", r.memlock.caps_known ? (r.memlock.cap_ipc_lock ? "yes" : "no") : "unknown");
  line("meaning", r.memlock.meaning);

  o += "\nHibernation\n";
  if (!r.hib.state_file) {
    line("/sys/power/state", "absent");
  } else {
    line("/sys/power/state", r.hib.state->empty() ? "(empty)" : *r.hib.state);
    line("\"disk\" listed now", yes_no(r.hib.disk_now));
    line("... with a secret file open", yes_no(r.hib.disk_with_secret, "not checked"));
  }
  line("/sys/power/disk", r.hib.disk_file ? *r.hib.disk_file : std::string("absent"));
  line("blocked by secret memory", yes_no(r.hib.blocked, "not observable"));
  line("note", r.hib.note);

  o += "\nDirect map\n";
  line("DirectMap4k", kb(r.dm.dm4k));
  line("DirectMap2M", kb(r.dm.dm2m));
  line("DirectMap1G", kb(r.dm.dm1g));
  line("direct_map_level2_splits", opt_str(r.dm.l2_splits));
  line("direct_map_level3_splits", opt_str(r.dm.l3_splits));
  line("direct_map_level2_collapses", opt_str(r.dm.l2_collapses));
  line("direct_map_level3_collapses", opt_str(r.dm.l3_collapses));

  if (!measured) {
    o += "\n(measurements skipped: --no-measure)\n";
    return o;
  }

  o += fmt::format("\nFirst-touch fault cost ({} pages of each kind, ns per page)\n", r.fault.pages);
  if (!r.fault.measured) {
    line("not measured", r.fault.error.value_or(""));
  } else {
    line("memfd_secret (MAP_SHARED)",
         fmt::format("median {} ns, p90 {} ns", *r.fault.secret_median, *r.fault.secret_p90));
    line("anonymous (MAP_PRIVATE)", fmt::format("median {} ns, p90 {} ns", *r.fault.anon_median, *r.fault.anon_p90));
    line("ratio (medians)", r.fault.ratio ? fmt::format("{:.2f}x", *r.fault.ratio) : std::string("n/a"));
    line("timer overhead (included)", fmt::format("{} ns per pair of clock readings", *r.fault.timer_median));
  }

  const Reserve& v = r.reserve;
  o += fmt::format("\nReserve {} MiB of exclusive memory ({} pages, every page touched)\n", v.mib, v.pages);
  if (!v.measured) {
    line("not measured", v.error.value_or(""));
  } else {
    line("level2 splits (2M->4K)", signed_str(v.l2_delta));
    line("level3 splits (1G->2M)", signed_str(v.l3_delta));
    line("level2 collapses", signed_str(v.l2_collapse_delta));
    line("DirectMap4k", signed_str(v.dm4k_delta, " kB"));
    line("DirectMap2M", signed_str(v.dm2m_delta, " kB"));
    if (v.dm1g_delta) line("DirectMap1G", signed_str(v.dm1g_delta, " kB"));
    line("touch cost", v.touch_ns_per_page ? fmt::format("{} ns per page", *v.touch_ns_per_page) : "n/a");
    line("distinct 2 MiB regions",
         v.regions ? fmt::format("{}", *v.regions) : fmt::format("unknown ({})", v.pagemap_status));
    line("pagemap", v.pagemap_note);
    line("comparison", v.interpretation);
  }
  return o;
}

struct Options {
  bool json_out = false;
  bool no_measure = false;
  std::uint64_t fault_pages = 256;
  std::uint64_t reserve_mib = 64;
};

CLI::Validator bounded(std::uint64_t lo, std::uint64_t hi, std::string what) {
  return CLI::Validator(
      [lo, hi, what](std::string& s) -> std::string {
        if (pu::parse_bounded(s, lo, hi)) return {};
        return fmt::format("expected a whole number of {} from {} to {}, got '{}'", what, lo, hi, s);
      },
      "");
}

void run(const Options& opt) {
  Report r;
  r.sys = read_system();
  r.secret = probe_secret(r.sys);
  r.memlock = read_memlock(r.sys);
  r.hib = probe_hibernation(r.secret);
  r.dm = read_direct_map();
  r.fault.pages = opt.fault_pages;
  r.reserve.mib = opt.reserve_mib;
  r.reserve.asked_bytes = opt.reserve_mib * kMiB;
  r.reserve.pages = r.reserve.asked_bytes / r.sys.page_size;
  r.reserve.memlock_soft = r.memlock.soft;
  if (!opt.no_measure) {
    r.fault = measure_fault_cost(opt.fault_pages, r.sys, r.secret, r.memlock);
    r.reserve = measure_reserve(opt.reserve_mib, r.sys, r.secret, r.memlock);
  } else {
    r.fault.error = "skipped: --no-measure";
    r.reserve.error = "skipped: --no-measure";
  }

  const std::string out = opt.json_out ? to_json(r).dump(2) + "\n" : human(r, !opt.no_measure);
  if (std::fwrite(out.data(), 1, out.size(), stdout) != out.size() || std::fflush(stdout) != 0) {
    std::fprintf(stderr, "exmem probe: writing the report failed: %s\n", std::strerror(errno));
    throw CLI::RuntimeError(1);
  }
}

}  // namespace

void add_probe(CLI::App& app) {
  auto opt = std::make_shared<Options>();
  CLI::App* sub = app.add_subcommand(
      "probe",
      "What this machine's kernel offers for exclusive memory, and what it costs, measured:\n"
      "memfd_secret availability (or why not), RLIMIT_MEMLOCK and CAP_IPC_LOCK, whether hibernation\n"
      "is blocked by secret memory, the direct map (DirectMap4k/2M/1G, split counters), the first-touch\n"
      "fault cost of a secret page against an anonymous page, and the direct-map splits caused by\n"
      "reserving exclusive memory (with, as root, the 2 MiB physical regions holding its pages).");
  sub->add_flag("--json", opt->json_out, "Print one JSON object instead of the human-readable report");
  CLI::Option* fault =
      sub->add_option("--fault-pages", opt->fault_pages,
                      fmt::format("Pages of each kind (secret, anonymous) whose first touch is timed, 1..{}",
                                  kFaultPagesMax))
          ->type_name("N")
          ->check(bounded(1, kFaultPagesMax, "pages"))
          ->capture_default_str();
  CLI::Option* reserve =
      sub->add_option("--reserve-mib", opt->reserve_mib,
                      fmt::format("MiB of exclusive memory to reserve (one memfd_secret file, every page "
                                  "touched) when counting direct-map splits, 1..{}",
                                  kReserveMibMax))
          ->type_name("N")
          ->check(bounded(1, kReserveMibMax, "MiB"))
          ->capture_default_str();
  sub->add_flag("--no-measure", opt->no_measure,
                "Only read the kernel's state: no fault timing, no reservation")
      ->excludes(fault)
      ->excludes(reserve);
  sub->footer(
      "Examples:\n"
      "  exmem probe                          report on this machine, measured\n"
      "  exmem probe --json                   the same report as one JSON object\n"
      "  exmem probe --no-measure             the kernel's state only, nothing allocated\n"
      "  exmem probe --fault-pages 1024 --reserve-mib 256\n"
      "\n"
      "The reservation is charged to RLIMIT_MEMLOCK unless the process has CAP_IPC_LOCK.\n"
      "The 2 MiB regions are read from /proc/self/pagemap, which shows page frames only to root.");
  sub->callback([opt] { run(*opt); });
}

}  // namespace exmem::cli
