// The real kernel's direct map, page by page: its x86-64 page tables read
// through /proc/kcore, each 2 MiB region of physical memory found to be inside
// a 1 GiB leaf, a 2 MiB leaf, split to 4 KiB pages, or not mapped at all.
//
// Two halves, so that tests need no kcore:
//   - walk_direct_map(): the decoding, over any page tables given as a
//     function that reads a 4 KiB table at a physical address (tests build
//     synthetic tables in memory);
//   - read_kernel_map(): this machine's tables, from /proc/kcore's ELF program
//     headers (PT_LOAD p_vaddr -> file offset) and /proc/kallsyms
//     (init_top_pgt, page_offset_base and, where it exists,
//     __pgtable_l5_enabled); KASLR needs nothing more, since kallsyms shows the
//     randomized addresses and page_offset_base the randomized base. When the
//     kernel does not allow the read, a KernelMapRefusal says exactly why and
//     what would allow it; nothing is guessed.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace exmem::host {

inline constexpr std::uint64_t k4K = 4096;
inline constexpr std::uint64_t k2M = std::uint64_t{2} << 20;
inline constexpr std::uint64_t k1G = std::uint64_t{1} << 30;

// x86-64 page-table entry bits.
inline constexpr std::uint64_t kPtePresent = 1;        // _PAGE_PRESENT
inline constexpr std::uint64_t kPteHuge = 1u << 7;     // _PAGE_PSE: a leaf at PUD or PMD level
inline constexpr std::uint64_t kPteAddrMask = 0x000ffffffffff000ULL;  // PTE_PFN_MASK (no SME bit)

using PageTable = std::array<std::uint64_t, 512>;
// Reads the 4 KiB page table at physical address `phys` into `out`; false when it cannot.
using ReadTable = std::function<bool(std::uint64_t phys, PageTable& out)>;

// How the direct map covers one 2 MiB region.
enum class MapCoverage : std::uint8_t {
  NotMapped = 0,  // no present entry above the PTE level (no RAM there, or a hole)
  Leaf1G = 1,     // inside a present 1 GiB leaf (PUD with PSE)
  Leaf2M = 2,     // a present 2 MiB leaf (PMD with PSE)
  Split4K = 3,    // a PTE table
};
std::string_view map_coverage_name(MapCoverage c);  // "not mapped", "1G", "2M", "4K"

struct KernelDirectMap {
  unsigned levels = 4;                  // 4 or 5 (LA57)
  std::uint64_t page_offset_base = 0;   // virtual address of physical 0
  std::uint64_t phys_end = 0;           // walked [0, phys_end), a multiple of 1 GiB
  std::vector<MapCoverage> regions;     // one per 2 MiB region of [0, phys_end)
  // Per region, for Split4K only (0 otherwise): present PTEs, and PTEs that are
  // not present but not empty either (a page taken out of the direct map, as
  // memfd_secret does with set_direct_map_invalid_noflush(), which keeps the pfn).
  std::vector<std::uint16_t> pte_present, pte_cleared;
  // Bytes mapped per page size, counted as the kernel counts direct_pages_count[]
  // (DirectMap4k/2M/1G): a PTE counts when it is not empty, present or not.
  std::uint64_t bytes_4k = 0, bytes_2m = 0, bytes_1g = 0;
  std::uint64_t tables_read = 0;        // PUD/PMD/PTE tables read by the walk
  // The kernel image's own mapping at __START_KERNEL_map (the "high map"): its
  // 2 MiB leaves that were split to PTE tables. __split_large_page() counts a
  // split there in DirectMap4k/2M as well (virt_addr_valid() holds for a
  // kernel-image address), so /proc/meminfo should show
  //   DirectMap2M = bytes_2m - 2 MiB x high_map_split_2m
  //   DirectMap4k = bytes_4k + 2 MiB x high_map_split_2m
  // nullopt when not walked (tests, or the high map unreadable).
  std::optional<std::uint64_t> high_map_split_2m;
  // Ranges [start, end) of physical addresses with no mapping at all, merged.
  std::vector<std::pair<std::uint64_t, std::uint64_t>> not_mapped;
  // Physical RAM as /proc/kcore lists it (its KCORE_RAM segments), merged; empty in tests.
  std::vector<std::pair<std::uint64_t, std::uint64_t>> ram;

  [[nodiscard]] std::uint64_t regions_of(MapCoverage c) const;
};

// Walks the direct map's tables over the virtual range [page_offset_base,
// page_offset_base + phys_end): `top` is the top-level table (the PGD,
// init_top_pgt), `levels` 4 or 5. phys_end is rounded up to 1 GiB. An entry
// whose table cannot be read is an error: nullopt with `error` set.
std::optional<KernelDirectMap> walk_direct_map(const PageTable& top, unsigned levels,
                                               std::uint64_t page_offset_base, std::uint64_t phys_end,
                                               const ReadTable& read_table, std::string* error);

// __START_KERNEL_map and the span the kernel image may take (KERNEL_IMAGE_SIZE with KASLR).
inline constexpr std::uint64_t kStartKernelMap = 0xffffffff80000000ULL;
inline constexpr std::uint64_t kKernelImageSize = std::uint64_t{1} << 30;

// PMD entries that point to a PTE table (a split 2 MiB leaf) in the virtual
// range [va, va + bytes) (2 MiB aligned, within one PUD entry's GiB per step);
// PUD or PMD entries not present count nothing. nullopt when a table cannot be read.
std::optional<std::uint64_t> count_split_pmds(const PageTable& top, unsigned levels, std::uint64_t va,
                                              std::uint64_t bytes, const ReadTable& read_table);

// ---- This machine ------------------------------------------------------------------

enum class KernelMapRefusal : std::uint8_t {
  None = 0,
  NotX86_64,          // the walker knows x86-64 page tables only
  NoKcore,            // /proc/kcore absent: CONFIG_PROC_KCORE off, or /proc not mounted
  NeedsRoot,          // /proc/kcore is 0400 root and open_kcore() wants CAP_SYS_RAWIO
  Lockdown,           // lockdown=confidentiality refuses /proc/kcore (LOCKDOWN_KCORE)
  OpenDenied,         // open refused for another reason (an LSM, a container)
  NoKallsyms,         // /proc/kallsyms unreadable
  AddressesHidden,    // kallsyms shows zeros: kptr_restrict, or not CAP_SYSLOG
  SymbolMissing,      // init_top_pgt or page_offset_base not in kallsyms (CONFIG_KALLSYMS_ALL off)
  PagingUnknown,      // cannot tell 4-level from 5-level paging
  BadKcore,           // /proc/kcore is not the ELF core file it should be
  ReadFailed,         // a read through /proc/kcore failed
};
std::string_view refusal_name(KernelMapRefusal r);  // "no_kcore", "needs_root" ...

struct KernelMapResult {
  std::optional<KernelDirectMap> map;   // set when refusal == None
  KernelMapRefusal refusal = KernelMapRefusal::None;
  std::string why;                      // what the kernel refused, in one sentence
  std::string would_allow;              // what would allow it
};

// The facts read_kernel_map() decides on, so that tests can feed each case.
struct KernelMapAccess {
  std::string machine;                  // uname -m
  int kcore_errno = 0;                  // of open("/proc/kcore"); 0 when it opened
  bool proc_mounted = true;             // /proc/self/stat exists
  bool root = false;                    // euid 0
  bool cap_sys_rawio = false;           // CAP_SYS_RAWIO (17) in CapEff
  std::optional<std::string> lockdown;  // /sys/kernel/security/lockdown, when readable
  std::optional<std::string> kptr_restrict;  // /proc/sys/kernel/kptr_restrict
};
// The refusal for those facts before any symbol is read (None when kcore opened).
KernelMapResult refusal_for_access(const KernelMapAccess& a);

// The symbols read_kernel_map() needs, from the text of /proc/kallsyms.
struct KernelSymbols {
  std::optional<std::uint64_t> init_top_pgt, page_offset_base, pgtable_l5_enabled;
  bool all_zero = false;                // every address read as 0 (hidden)
  std::size_t lines = 0;
};
KernelSymbols parse_kallsyms(std::string_view text);

// The running kernel's direct map. Needs root on a kernel with /proc/kcore,
// kallsyms addresses shown, no lockdown=confidentiality.
KernelMapResult read_kernel_map();

}  // namespace exmem::host
