// tlb/: per-CPU TLBs and paging-structure caches, the flushes and shootdowns
// that reach them, speculative fills, the hazard checker (stale translations;
// mixed-size entries whose frame or attributes differ, AMD erratum 383; a write
// changing page size and attributes at once, Intel SDM Vol. 3A 4.10.4.2; a
// kernel access faulting in a break-before-make window), checked at operation
// boundaries and inside every CPA step, the VM_LOCAL_CPU scenario and the cost
// estimate of a run.
// Owns: TLB geometry and contents, the kernel access stream, shootdown counts
// and costs, hazard and leak reports. Must not touch: the direct map, frames or
// processes: it reads directmap/ (lookup, table_ref) and phys/ (frame kinds),
// learns of flushes through directmap::FlushObserver and of the page-table
// writes inside a CPA call through directmap::CpaStepObserver (attach_steps()
// is its only write to the direct map: the observer pointer).
//
// tlb.hpp: TLB geometry (levels of arrays, each holding some page sizes),
// presets for a few cores, and one CPU's TLB with its paging-structure caches.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "model/directmap/directmap.hpp"
#include "model/tlb/lru_table.hpp"
#include "model/types.hpp"

namespace exmem::model::tlb {

enum class PageSize : std::uint8_t { k4K = 0, k2M = 1, k1G = 2 };
inline constexpr std::uint8_t size_bit(PageSize s) {
  return static_cast<std::uint8_t>(1u << static_cast<unsigned>(s));
}
inline constexpr std::uint64_t pages_of(PageSize s) {
  return s == PageSize::k4K ? 1 : s == PageSize::k2M ? kPagesPer2M : kPagesPer1G;
}
inline constexpr unsigned shift_of(PageSize s) {
  return s == PageSize::k4K ? 0 : s == PageSize::k2M ? 9 : 18;
}
std::string_view page_size_name(PageSize s);
PageSize page_size_of(directmap::Level level);

// An address space: 0 is the kernel (global entries, vpn = pfn of the direct
// map); others are user address spaces (PCID-tagged entries).
using Asid = std::uint32_t;
inline constexpr Asid kKernelAsid = 0;

// One cached translation. Addresses are in 4 KiB pages.
struct Translation {
  Asid asid = kKernelAsid;
  std::uint64_t vpn = 0;  // first virtual page, aligned to the size
  PageSize size = PageSize::k4K;
  Pfn pfn = 0;             // first frame
  std::uint8_t flags = 0;  // directmap::_PAGE_* bits
  std::uint64_t fill_seq = 0;
  bool speculative = false;
  std::uint8_t frame_byte = 0;  // phys frame byte of the accessed frame at fill

  [[nodiscard]] bool covers(Asid a, std::uint64_t v) const {
    return asid == a && v >= vpn && v < vpn + pages_of(size);
  }
  [[nodiscard]] bool overlaps(Asid a, std::uint64_t v, std::uint64_t pages) const {
    return asid == a && v < vpn + pages_of(size) && vpn < v + pages;
  }
};

// One array of a TLB level: sets x ways, holding the page sizes in `sizes`.
struct ArrayConfig {
  std::string name;
  unsigned sets = 1;
  unsigned ways = 1;
  std::uint8_t sizes = size_bit(PageSize::k4K);
  bool gb_as_2m = false;  // 1G translations are stored as the 2M piece that was used
};

struct LevelConfig {
  std::string name;
  std::vector<ArrayConfig> arrays;
  unsigned hit_cycles = 0;  // added latency of a hit at this level
};

struct TlbConfig {
  std::string name;
  std::string source;  // where the geometry comes from; all presets are approximations
  std::vector<LevelConfig> levels;
  unsigned pde_cache_entries = 32;   // paging-structure cache of PMD entries (-> PTE tables)
  unsigned pdpte_cache_entries = 4;  // of PUD entries (-> PMD tables)
  unsigned walk_ref_cycles = 40;     // assumed cost of one page-walk memory reference

  // Approximations of real cores; see docs/tlb.md for the sources.
  static TlbConfig haswell_like();
  static TlbConfig zen2_like();
  static TlbConfig recent_intel_like();
  // "haswell", "zen2", "recent-intel"; std::invalid_argument names the bad name.
  static TlbConfig preset(std::string_view name);
  static std::vector<std::string> preset_names();
};

// A paging-structure cache entry: the table a PMD or PUD entry pointed to.
struct PscEntry {
  std::uint64_t region = 0;  // 2M or 1G region number
  directmap::DirectMap::TableRef table;
  std::uint64_t fill_seq = 0;
};

// One CPU's TLB: levels probed in order, a hit in a lower level refills the
// upper ones; fills go to every level that can hold the size.
class CpuTlb {
 public:
  explicit CpuTlb(const TlbConfig& config);

  struct Hit {
    int level = -1;  // -1: miss
    Translation t{};
  };
  Hit lookup(Asid asid, std::uint64_t vpn);
  // accessed_vpn picks the 2M piece where a level keeps 1G pages as 2M.
  void fill(const Translation& t, std::uint64_t accessed_vpn);
  // INVLPG on each page of the range: every entry covering one of them, and
  // (as INVLPG does) every paging-structure cache entry.
  std::size_t invalidate_range(Asid asid, std::uint64_t vpn, std::uint64_t pages);
  // Everything, global entries included (flush_tlb_all on this CPU).
  std::size_t flush_all();
  // Non-global entries of one address space.
  std::size_t flush_asid(Asid asid);

  LruTable<PscEntry>& pde_cache() { return pde_; }
  LruTable<PscEntry>& pdpte_cache() { return pdpte_; }
  [[nodiscard]] const LruTable<PscEntry>& pde_cache() const { return pde_; }
  [[nodiscard]] const LruTable<PscEntry>& pdpte_cache() const { return pdpte_; }

  template <class F>
  void for_each(F f) const {
    for (const auto& level : arrays_) {
      for (const Array& a : level) a.table.for_each(f);
    }
  }
  [[nodiscard]] std::size_t entries() const;

 private:
  struct Array {
    ArrayConfig config;
    LruTable<Translation> table;
  };
  static std::uint64_t tag_of(Asid asid, std::uint64_t vpn, PageSize s);
  static void fill_array(Array& a, const Translation& t);

  std::vector<std::vector<Array>> arrays_;  // [level][array]
  LruTable<PscEntry> pde_;
  LruTable<PscEntry> pdpte_;
};

}  // namespace exmem::model::tlb
