// kernel_map.cpp: the direct map's page tables, decoded (walk_direct_map) and
// read from this machine's /proc/kcore (read_kernel_map).
#include "host/kernel_map.hpp"

#include <elf.h>
#include <fcntl.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cerrno>
#include <cstring>
#include <map>

#include "host/proc_text.hpp"

namespace exmem::host {

std::string_view map_coverage_name(MapCoverage c) {
  switch (c) {
    case MapCoverage::NotMapped: return "not mapped";
    case MapCoverage::Leaf1G: return "1G";
    case MapCoverage::Leaf2M: return "2M";
    case MapCoverage::Split4K: return "4K";
  }
  return "?";
}

std::uint64_t KernelDirectMap::regions_of(MapCoverage c) const {
  return static_cast<std::uint64_t>(std::count(regions.begin(), regions.end(), c));
}

namespace {

constexpr bool present(std::uint64_t e) { return (e & kPtePresent) != 0; }
constexpr bool huge(std::uint64_t e) { return (e & kPteHuge) != 0; }
constexpr unsigned index_at(std::uint64_t va, unsigned shift) { return static_cast<unsigned>((va >> shift) & 511); }

void add_range(std::vector<std::pair<std::uint64_t, std::uint64_t>>& v, std::uint64_t start, std::uint64_t end) {
  if (!v.empty() && v.back().second == start) {
    v.back().second = end;
  } else {
    v.emplace_back(start, end);
  }
}

std::string hex(std::uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace

std::optional<KernelDirectMap> walk_direct_map(const PageTable& top, unsigned levels,
                                               std::uint64_t page_offset_base, std::uint64_t phys_end,
                                               const ReadTable& read_table, std::string* error) {
  auto fail = [&](std::string what) -> std::optional<KernelDirectMap> {
    if (error != nullptr) *error = std::move(what);
    return std::nullopt;
  };
  if (levels != 4 && levels != 5) return fail("levels must be 4 or 5");
  if (page_offset_base % k1G != 0) return fail("page_offset_base " + hex(page_offset_base) + " is not 1 GiB aligned");
  KernelDirectMap m;
  m.levels = levels;
  m.page_offset_base = page_offset_base;
  m.phys_end = (phys_end + k1G - 1) / k1G * k1G;
  const std::size_t nregions = m.phys_end / k2M;
  m.regions.assign(nregions, MapCoverage::NotMapped);
  m.pte_present.assign(nregions, 0);
  m.pte_cleared.assign(nregions, 0);

  // Upper-level tables are read once each (a PUD table covers 512 GiB).
  std::map<std::uint64_t, PageTable> cache;
  auto table = [&](std::uint64_t phys) -> const PageTable* {
    if (auto it = cache.find(phys); it != cache.end()) return &it->second;
    PageTable t{};
    if (!read_table(phys, t)) return nullptr;
    ++m.tables_read;
    return &cache.emplace(phys, t).first->second;
  };

  PageTable pmd{}, pte{};
  for (std::uint64_t pa = 0; pa < m.phys_end; pa += k1G) {
    const std::uint64_t va = page_offset_base + pa;
    const std::size_t r0 = pa / k2M;
    // PGD (and P4D with 5 levels) down to the PUD entry of this 1 GiB.
    std::uint64_t e = top[index_at(va, levels == 5 ? 48 : 39)];
    bool mapped = present(e);
    if (mapped && levels == 5) {
      const PageTable* p4d = table(e & kPteAddrMask);
      if (p4d == nullptr) return fail("cannot read the P4D table at " + hex(e & kPteAddrMask));
      e = (*p4d)[index_at(va, 39)];
      mapped = present(e);
    }
    if (mapped) {
      const PageTable* pud = table(e & kPteAddrMask);
      if (pud == nullptr) return fail("cannot read the PUD table at " + hex(e & kPteAddrMask));
      e = (*pud)[index_at(va, 30)];
      mapped = present(e);
    }
    if (!mapped) {
      add_range(m.not_mapped, pa, pa + k1G);
      continue;
    }
    if (huge(e)) {
      std::fill_n(m.regions.begin() + static_cast<std::ptrdiff_t>(r0), 512, MapCoverage::Leaf1G);
      m.bytes_1g += k1G;
      continue;
    }
    if (!read_table(e & kPteAddrMask, pmd)) return fail("cannot read the PMD table at " + hex(e & kPteAddrMask));
    ++m.tables_read;
    for (unsigned i = 0; i < 512; ++i) {
      const std::uint64_t pe = pmd[i];
      const std::uint64_t rpa = pa + i * k2M;
      if (!present(pe)) {
        add_range(m.not_mapped, rpa, rpa + k2M);
        continue;
      }
      if (huge(pe)) {
        m.regions[r0 + i] = MapCoverage::Leaf2M;
        m.bytes_2m += k2M;
        continue;
      }
      if (!read_table(pe & kPteAddrMask, pte)) return fail("cannot read the PTE table at " + hex(pe & kPteAddrMask));
      ++m.tables_read;
      m.regions[r0 + i] = MapCoverage::Split4K;
      std::uint16_t p = 0, c = 0;
      for (unsigned j = 0; j < 512; ++j) {
        if (present(pte[j])) {
          ++p;
        } else if (pte[j] != 0) {
          ++c;
        } else {
          add_range(m.not_mapped, rpa + j * k4K, rpa + (j + 1) * k4K);
        }
      }
      m.pte_present[r0 + i] = p;
      m.pte_cleared[r0 + i] = c;
      m.bytes_4k += (std::uint64_t{p} + c) * k4K;
    }
  }
  return m;
}

std::optional<std::uint64_t> count_split_pmds(const PageTable& top, unsigned levels, std::uint64_t va,
                                              std::uint64_t bytes, const ReadTable& read_table) {
  std::uint64_t split = 0;
  PageTable t{}, pmd{};
  bool have_pmd = false;
  for (std::uint64_t i = 0; i < bytes / k2M; ++i) {
    const std::uint64_t a = va + i * k2M;
    if (i == 0 || a % k1G == 0) {  // the PMD table of this GiB
      have_pmd = false;
      std::uint64_t e = top[index_at(a, levels == 5 ? 48 : 39)];
      if (present(e) && levels == 5) {
        if (!read_table(e & kPteAddrMask, t)) return std::nullopt;
        e = t[index_at(a, 39)];
      }
      if (present(e)) {
        if (!read_table(e & kPteAddrMask, t)) return std::nullopt;
        e = t[index_at(a, 30)];
        if (present(e) && !huge(e)) {
          if (!read_table(e & kPteAddrMask, pmd)) return std::nullopt;
          have_pmd = true;
        }
      }
    }
    if (!have_pmd) continue;
    const std::uint64_t pe = pmd[index_at(a, 21)];
    if (present(pe) && !huge(pe)) ++split;
  }
  return split;
}

// ---- Refusals ------------------------------------------------------------------------

std::string_view refusal_name(KernelMapRefusal r) {
  switch (r) {
    case KernelMapRefusal::None: return "none";
    case KernelMapRefusal::NotX86_64: return "not_x86_64";
    case KernelMapRefusal::NoKcore: return "no_kcore";
    case KernelMapRefusal::NeedsRoot: return "needs_root";
    case KernelMapRefusal::Lockdown: return "lockdown";
    case KernelMapRefusal::OpenDenied: return "open_denied";
    case KernelMapRefusal::NoKallsyms: return "no_kallsyms";
    case KernelMapRefusal::AddressesHidden: return "addresses_hidden";
    case KernelMapRefusal::SymbolMissing: return "symbol_missing";
    case KernelMapRefusal::PagingUnknown: return "paging_unknown";
    case KernelMapRefusal::BadKcore: return "bad_kcore";
    case KernelMapRefusal::ReadFailed: return "read_failed";
  }
  return "?";
}

namespace {

KernelMapResult refuse(KernelMapRefusal r, std::string why, std::string would_allow) {
  KernelMapResult res;
  res.refusal = r;
  res.why = std::move(why);
  res.would_allow = std::move(would_allow);
  return res;
}

// The bracketed word of /sys/kernel/security/lockdown ("none [integrity] confidentiality").
std::string lockdown_mode(std::string_view text) {
  const auto open = text.find('[');
  const auto close = text.find(']', open == std::string_view::npos ? 0 : open);
  if (open == std::string_view::npos || close == std::string_view::npos) return std::string(trim(text));
  return std::string(text.substr(open + 1, close - open - 1));
}

}  // namespace

KernelMapResult refusal_for_access(const KernelMapAccess& a) {
  if (a.machine != "x86_64") {
    return refuse(KernelMapRefusal::NotX86_64,
                  "this machine is " + (a.machine.empty() ? std::string("unknown") : a.machine) +
                      "; the walker reads x86-64 page tables only",
                  "an x86-64 machine");
  }
  if (a.kcore_errno == 0) return {};
  if (a.kcore_errno == ENOENT && !a.proc_mounted) {
    return refuse(KernelMapRefusal::NoKcore, "/proc is not mounted here, so /proc/kcore cannot be read",
                  "mounting proc on /proc (mount -t proc proc /proc)");
  }
  if (a.kcore_errno == ENOENT) {
    return refuse(KernelMapRefusal::NoKcore,
                  "/proc/kcore does not exist although /proc is mounted: this kernel is built without "
                  "CONFIG_PROC_KCORE",
                  "a kernel built with CONFIG_PROC_KCORE=y (Debian's stock kernels have it)");
  }
  if (a.kcore_errno == EACCES || a.kcore_errno == EPERM) {
    if (!a.root || !a.cap_sys_rawio) {
      return refuse(KernelMapRefusal::NeedsRoot,
                    std::string("/proc/kcore refused (") + errno_name(a.kcore_errno) +
                        "): it is readable by root only and open_kcore() wants CAP_SYS_RAWIO, which this "
                        "process " + (a.root ? "lacks" : "does not have (not root)"),
                    "running as root with CAP_SYS_RAWIO (e.g. sudo exmem probe --map)");
    }
    if (a.lockdown && lockdown_mode(*a.lockdown) == "confidentiality") {
      return refuse(KernelMapRefusal::Lockdown,
                    "/proc/kcore refused: the kernel is locked down (lockdown=confidentiality forbids "
                    "LOCKDOWN_KCORE)",
                    "booting without lockdown=confidentiality (and, where Secure Boot enforces it, with "
                    "Secure Boot off or the lockdown LSM not in lsm=)");
    }
    return refuse(KernelMapRefusal::OpenDenied,
                  std::string("/proc/kcore refused (") + errno_name(a.kcore_errno) +
                      ") although this process is root with CAP_SYS_RAWIO and the kernel is not locked "
                      "down for confidentiality: a security module or the container runtime denies it",
                  "the policy of that security module or container (e.g. a privileged container)");
  }
  return refuse(KernelMapRefusal::OpenDenied,
                std::string("/proc/kcore cannot be opened: ") + errno_name(a.kcore_errno) + " (" +
                    std::strerror(a.kcore_errno) + ")",
                "the cause that errno names");
}

KernelSymbols parse_kallsyms(std::string_view text) {
  KernelSymbols s;
  bool any_nonzero = false;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    const std::string_view line = text.substr(pos, nl - pos);
    pos = nl + 1;
    // "ffffffffa6e13d60 D page_offset_base" (a module symbol adds "\t[mod]")
    const auto sp1 = line.find(' ');
    if (sp1 == std::string_view::npos) continue;
    const auto sp2 = line.find(' ', sp1 + 1);
    if (sp2 == std::string_view::npos) continue;
    ++s.lines;
    std::uint64_t addr = 0;
    bool ok = sp1 > 0 && sp1 <= 16;
    for (std::size_t i = 0; ok && i < sp1; ++i) {
      const char c = line[i];
      const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
      if (d < 0) ok = false;
      addr = addr * 16 + static_cast<unsigned>(d < 0 ? 0 : d);
    }
    if (!ok) continue;
    if (addr != 0) any_nonzero = true;
    std::string_view name = line.substr(sp2 + 1);
    if (const auto tab = name.find_first_of("\t "); tab != std::string_view::npos) continue;  // a module's
    if (name == "init_top_pgt") s.init_top_pgt = addr;
    else if (name == "page_offset_base") s.page_offset_base = addr;
    else if (name == "__pgtable_l5_enabled") s.pgtable_l5_enabled = addr;
  }
  s.all_zero = s.lines > 0 && !any_nonzero;
  return s;
}

// ---- /proc/kcore -----------------------------------------------------------------------

namespace {

struct Segment {
  std::uint64_t vaddr, paddr, offset, size;
};

class Kcore {
 public:
  explicit Kcore(int fd) : fd_(fd) {}
  ~Kcore() {
    if (fd_ >= 0) ::close(fd_);
  }
  Kcore(const Kcore&) = delete;
  Kcore& operator=(const Kcore&) = delete;

  // Reads the ELF header and program headers; an empty string when they are sound.
  std::string load() {
    Elf64_Ehdr eh{};
    if (::pread(fd_, &eh, sizeof eh, 0) != static_cast<ssize_t>(sizeof eh)) return "cannot read its ELF header";
    if (std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
        eh.e_type != ET_CORE || eh.e_machine != EM_X86_64 || eh.e_phentsize != sizeof(Elf64_Phdr)) {
      return "not a 64-bit x86-64 ELF core file";
    }
    std::vector<Elf64_Phdr> ph(eh.e_phnum);
    const auto bytes = static_cast<ssize_t>(ph.size() * sizeof(Elf64_Phdr));
    if (::pread(fd_, ph.data(), static_cast<std::size_t>(bytes), static_cast<off_t>(eh.e_phoff)) != bytes) {
      return "cannot read its program headers";
    }
    for (const Elf64_Phdr& p : ph) {
      if (p.p_type == PT_LOAD) segments_.push_back({p.p_vaddr, p.p_paddr, p.p_offset, p.p_memsz});
    }
    if (segments_.empty()) return "no PT_LOAD segments";
    return {};
  }

  bool read_virt(std::uint64_t va, void* out, std::size_t len) const {
    for (const Segment& s : segments_) {
      if (va >= s.vaddr && va - s.vaddr < s.size && s.size - (va - s.vaddr) >= len) {
        const auto off = static_cast<off_t>(s.offset + (va - s.vaddr));
        return ::pread(fd_, out, len, off) == static_cast<ssize_t>(len);
      }
    }
    errno = EFAULT;
    return false;
  }

  // Physical RAM: the segments whose p_paddr maps into the direct map at base
  // (KCORE_RAM: p_vaddr = __va(p_paddr)).
  std::vector<std::pair<std::uint64_t, std::uint64_t>> ram(std::uint64_t base) const {
    std::vector<std::pair<std::uint64_t, std::uint64_t>> r;
    for (const Segment& s : segments_) {
      if (s.paddr != ~std::uint64_t{0} && s.vaddr >= base && s.vaddr - base == s.paddr) {
        r.emplace_back(s.paddr, s.paddr + s.size);
      }
    }
    std::sort(r.begin(), r.end());
    std::vector<std::pair<std::uint64_t, std::uint64_t>> merged;
    for (const auto& x : r) {
      if (!merged.empty() && x.first <= merged.back().second) {
        merged.back().second = std::max(merged.back().second, x.second);
      } else {
        merged.push_back(x);
      }
    }
    return merged;
  }

 private:
  int fd_;
  std::vector<Segment> segments_;
};

constexpr unsigned kCapSysRawio = 17;

}  // namespace

KernelMapResult read_kernel_map() {
  KernelMapAccess a;
  utsname u{};
  if (::uname(&u) == 0) a.machine = u.machine;
  const int fd = ::open("/proc/kcore", O_RDONLY | O_CLOEXEC);
  a.kcore_errno = fd < 0 ? errno : 0;
  a.proc_mounted = ::access("/proc/self/stat", F_OK) == 0;
  a.root = ::geteuid() == 0;
  if (auto st = read_text("/proc/self/status")) {
    if (auto cap = status_hex(*st, "CapEff")) a.cap_sys_rawio = has_cap(*cap, kCapSysRawio);
  }
  a.lockdown = read_text("/sys/kernel/security/lockdown");
  if (auto k = read_text("/proc/sys/kernel/kptr_restrict")) a.kptr_restrict = std::string(trim(*k));
  KernelMapResult res = refusal_for_access(a);
  if (res.refusal != KernelMapRefusal::None) {
    if (fd >= 0) ::close(fd);
    return res;
  }
  Kcore kcore(fd);

  const std::optional<std::string> kallsyms = read_text("/proc/kallsyms");
  if (!kallsyms) {
    return refuse(KernelMapRefusal::NoKallsyms,
                  std::string("/proc/kallsyms cannot be read (") + errno_name(errno) +
                      "): the kernel is built without CONFIG_KALLSYMS",
                  "a kernel built with CONFIG_KALLSYMS=y and CONFIG_KALLSYMS_ALL=y");
  }
  const KernelSymbols sym = parse_kallsyms(*kallsyms);
  if (sym.all_zero) {
    return refuse(KernelMapRefusal::AddressesHidden,
                  "/proc/kallsyms shows every address as 0 (kernel.kptr_restrict = " +
                      a.kptr_restrict.value_or("unreadable") + ")",
                  "kernel.kptr_restrict = 0 or 1 with CAP_SYSLOG (sysctl -w kernel.kptr_restrict=1, as root)");
  }
  if (!sym.init_top_pgt || !sym.page_offset_base) {
    std::string missing = !sym.init_top_pgt ? "init_top_pgt" : "";
    if (!sym.page_offset_base) missing += missing.empty() ? "page_offset_base" : " and page_offset_base";
    return refuse(KernelMapRefusal::SymbolMissing,
                  "/proc/kallsyms does not list " + missing +
                      " (data symbols need CONFIG_KALLSYMS_ALL; page_offset_base needs "
                      "CONFIG_DYNAMIC_MEMORY_LAYOUT, which KASLR selects)",
                  "a kernel built with CONFIG_KALLSYMS_ALL=y and CONFIG_RANDOMIZE_MEMORY=y (Debian's are)");
  }
  if (std::string err = kcore.load(); !err.empty()) {
    return refuse(KernelMapRefusal::BadKcore, "/proc/kcore: " + err, "a kernel whose /proc/kcore is an ELF core file");
  }
  std::uint64_t base = 0;
  if (!kcore.read_virt(*sym.page_offset_base, &base, sizeof base)) {
    return refuse(KernelMapRefusal::ReadFailed,
                  "reading page_offset_base at " + hex(*sym.page_offset_base) + " through /proc/kcore failed (" +
                      errno_name(errno) + ")",
                  "a /proc/kcore whose text segment covers the kernel's data");
  }
  // 4 or 5 levels: the kernel's own flag when it has one; without it a CPU
  // without la57 runs 4 levels; otherwise we do not know.
  unsigned levels = 0;
  std::string how;
  if (sym.pgtable_l5_enabled) {
    std::uint32_t l5 = 0;
    if (!kcore.read_virt(*sym.pgtable_l5_enabled, &l5, sizeof l5)) {
      return refuse(KernelMapRefusal::ReadFailed, "reading __pgtable_l5_enabled through /proc/kcore failed",
                    "a /proc/kcore whose text segment covers the kernel's data");
    }
    levels = l5 != 0 ? 5 : 4;
  } else if (auto cpu = read_text("/proc/cpuinfo"); cpu && !lists_word(*cpu, "la57")) {
    levels = 4;
  } else if (base < 0xffff800000000000ULL) {
    levels = 5;  // not a canonical 48-bit address: only 5-level paging has it
  } else {
    return refuse(KernelMapRefusal::PagingUnknown,
                  "the CPU has la57 and the kernel has no __pgtable_l5_enabled: 4- or 5-level paging cannot be "
                  "told apart",
                  "booting with no5lvl");
  }
  std::vector<std::pair<std::uint64_t, std::uint64_t>> ram = kcore.ram(base);
  if (ram.empty()) {
    return refuse(KernelMapRefusal::BadKcore, "/proc/kcore lists no RAM segment in the direct map at " + hex(base),
                  "a kernel whose /proc/kcore lists System RAM (KCORE_RAM)");
  }
  PageTable top{};
  if (!kcore.read_virt(*sym.init_top_pgt, top.data(), sizeof top)) {
    return refuse(KernelMapRefusal::ReadFailed, "reading init_top_pgt through /proc/kcore failed (" + errno_name(errno) + ")",
                  "a /proc/kcore whose text segment covers the kernel's data");
  }
  const ReadTable read = [&](std::uint64_t phys, PageTable& out) {
    return kcore.read_virt(base + phys, out.data(), sizeof out);
  };
  std::string err;
  std::optional<KernelDirectMap> m = walk_direct_map(top, levels, base, ram.back().second, read, &err);
  if (!m) {
    return refuse(KernelMapRefusal::ReadFailed, "walking the page tables: " + err,
                  "page tables that lie in RAM /proc/kcore shows");
  }
  m->high_map_split_2m = count_split_pmds(top, levels, kStartKernelMap, kKernelImageSize, read);
  m->ram = std::move(ram);
  res.map = std::move(m);
  return res;
}

}  // namespace exmem::host
