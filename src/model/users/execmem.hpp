// users/: other users of unmapped pages (see README.md for what the folder owns).
// execmem.hpp: the ROX cache of mm/execmem.c (x86-64 since Linux 6.15, "x86/
// module: use large ROX pages for text allocations" and "execmem: add support
// for cache of large ROX pages", Mike Rapoport): module and BPF text comes
// from 2 MiB pages that were made read-only and executable once, so that
// loading text changes no direct-map entry and splits nothing.
//
// What the direct map sees:
// - populate (execmem_cache_populate()): vmalloc(2 MiB, VM_ALLOW_HUGE_VMAP)
//   takes one order-9 block from the page allocator (GFP_KERNEL | __GFP_NOWARN;
//   when no such block is free, vmalloc falls back to 512 order-0 pages), then
//   set_memory_rox() on it: a whole aligned 2 MiB leaf changes in place, a
//   2 MiB region that was split before collapses back (CPA_COLLAPSE).
// - a load (execmem_alloc(EXECMEM_MODULE_TEXT)) takes the first free area of
//   the cache that fits (__execmem_cache_alloc()); no direct-map change.
// - an unload (execmem_free()) returns the range to the free areas, merged
//   with its neighbours (execmem_cache_add()), then execmem_cache_clean()
//   releases every free area that is 2 MiB aligned and a multiple of 2 MiB:
//   set_direct_map_valid_noflush(true) on its pages, then vfree().
//
// The pages come straight from the page source (the machine's alloc_pages())
// and not from the policy for unmapped pages: upstream execmem takes them
// from vmalloc, which takes them from the page allocator, and they stay
// present (read-only) in the direct map.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "model/directmap/directmap.hpp"
#include "model/phys/page_source.hpp"
#include "model/phys/physmem.hpp"
#include "model/types.hpp"

namespace exmem::model::users {

// The module mapping space on x86-64 (MODULES_VADDR .. MODULES_END).
inline constexpr std::uint64_t kModulesVaddr = 0xffffffffa0000000ull;
inline constexpr std::uint64_t kModulesEnd = 0xffffffffff000000ull;

struct ExecmemStats {
  std::uint64_t loads = 0;               // execmem_alloc() that succeeded
  std::uint64_t load_failures = 0;       // execmem_alloc() that returned NULL
  std::uint64_t unloads = 0;             // execmem_free()
  std::uint64_t populates = 0;           // execmem_cache_populate() that succeeded
  std::uint64_t populates_huge = 0;      // ... with one 2 MiB block
  std::uint64_t populates_base_pages = 0;  // ... with vmalloc's order-0 fallback
  std::uint64_t releases = 0;            // areas given back by execmem_cache_clean()
};

class ExecmemCache {
 public:
  // Pages come from and go back to `pages`; dmap is where they turn ROX and
  // back; phys is read by check().
  ExecmemCache(phys::PageSource& pages, directmap::DirectMap& dmap, const phys::PhysMem& phys);
  ExecmemCache(const ExecmemCache&) = delete;
  ExecmemCache& operator=(const ExecmemCache&) = delete;

  // mirrors execmem_alloc(EXECMEM_MODULE_TEXT, pages * PAGE_SIZE) with
  // EXECMEM_ROX_CACHE: the text's address, or -EINVAL for 0 pages, -ENOMEM
  // when the cache cannot be populated.
  Result<std::uint64_t> alloc(std::uint64_t pages, CpuId cpu);
  // mirrors execmem_free(): -EINVAL when addr is not the start of a live allocation.
  int free(std::uint64_t addr, CpuId cpu);

  // vmalloc_to_pfn(): the frame behind a text address (kNoPfn outside the cache).
  [[nodiscard]] Pfn pfn_of(std::uint64_t addr) const;
  // Pages handed out / free in the cache / held by it in all.
  [[nodiscard]] std::uint64_t busy_pages() const { return busy_pages_; }
  [[nodiscard]] std::uint64_t free_pages() const { return free_pages_; }
  [[nodiscard]] std::uint64_t cached_pages() const { return busy_pages_ + free_pages_; }
  // vm areas the cache holds (each 2 MiB or a multiple).
  [[nodiscard]] std::uint64_t areas() const { return vms_.size(); }
  [[nodiscard]] const ExecmemStats& stats() const { return stats_; }
  [[nodiscard]] std::size_t model_bytes() const;
  // Free and busy areas tile the vm areas exactly; every page of every vm area
  // is an allocated Kernel frame, present and read-only in the direct map.
  [[nodiscard]] std::vector<std::string> check() const;

 private:
  struct Vm {                 // one vm_struct of the cache
    std::uint64_t pages = 0;  // a multiple of 512
    bool huge = false;        // order-9 blocks (else order-0 pages)
    std::vector<Pfn> blocks;  // one pfn per block, in address order
  };
  int populate(std::uint64_t pages, CpuId cpu);
  void release(std::uint64_t start, CpuId cpu);
  void clean(CpuId cpu);
  void add_free(std::uint64_t start, std::uint64_t pages);
  [[nodiscard]] std::uint64_t find_vmap_area(std::uint64_t pages) const;

  phys::PageSource& pages_;
  directmap::DirectMap& dmap_;
  const phys::PhysMem& phys_;
  // Addresses in pages from kModulesVaddr.
  std::map<std::uint64_t, Vm> vms_;                  // start -> vm area
  std::map<std::uint64_t, std::uint64_t> free_;      // execmem_cache.free_areas: start -> pages
  std::map<std::uint64_t, std::uint64_t> busy_;      // execmem_cache.busy_areas: start -> pages
  std::uint64_t busy_pages_ = 0;
  std::uint64_t free_pages_ = 0;
  ExecmemStats stats_;
};

}  // namespace exmem::model::users
