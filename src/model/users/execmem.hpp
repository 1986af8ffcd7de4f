// users/: other users of unmapped pages (see README.md for what the folder owns).
// execmem.hpp: the ROX cache of mm/execmem.c (x86-64 since Linux 6.15, "x86/
// module: use large ROX pages for text allocations" and "execmem: add support
// for cache of large ROX pages", Mike Rapoport): module and BPF text comes
// from 2 MiB pages that were made read-only and executable once, so that
// loading text changes no direct-map entry and splits nothing.
//
// What the direct map sees (Linux 6.18, mm/execmem.c and set_memory.c):
// - populate (execmem_cache_populate()): vmalloc(round_up(size, 2 MiB),
//   VM_ALLOW_HUGE_VMAP) takes order-9 blocks from the page allocator
//   (GFP_KERNEL | __GFP_NOWARN; when no such block is free, vmalloc falls back
//   to order-0 pages), and when even that fails execmem retries with
//   alloc_size = size (since 6.17). Then set_memory_rox() on the *vmalloc*
//   address: the direct map changes only as its alias (cpa_process_alias()):
//   RW and DIRTY cleared, NX never touched ("Directmap always has NX set"),
//   one flush_tlb_all() per call (force_flush_all), and the CPA_COLLAPSE
//   collapse walks only the vmalloc range, so the direct map never collapses
//   from here. A block on a 2 MiB direct-map leaf changes it in place; the
//   alias of an order-0 page is one page, which splits its 2 MiB leaf.
// - a load (a module's text: module_memory_alloc() -> execmem_alloc_rw(),
//   then module_enable_text_rox() -> execmem_restore_rox()) takes the first
//   free area of the cache that fits (__execmem_cache_alloc()), then
//   execmem_force_rw() (set_memory_nx() + set_memory_rw()) and
//   execmem_restore_rox() (set_memory_rox()) on it. Through the alias,
//   set_memory_rw() splits the direct-map 2 MiB leaf behind a range that is
//   not a whole aligned 2 MiB block, and nothing collapses it again.
// - an unload (execmem_free() -> execmem_cache_free() ->
//   __execmem_cache_free(), since 6.17): execmem_force_rw() and
//   execmem_restore_rox() on the range (the same alias splits), then the range
//   goes back to the free areas, merged with its neighbours
//   (execmem_cache_add_locked()), then execmem_cache_clean() releases every
//   free area that is 2 MiB aligned and a multiple of 2 MiB:
//   set_direct_map_valid_noflush(true) on its pages (PRESENT|RW: DIRTY stays
//   clear), then vfree() (its vmap area freed lazily, flushed at the next
//   vm_unmap_aliases()).
// The vmalloc side: a huge area is mapped with 2 MiB PMD leaves; a call on
// part of one splits it (a flush_tlb_all(), its page-table page not
// modelled) and the set_memory_rox() that ends every load and unload
// collapses it again (another flush_tlb_all(); not while collapse is off).
// - a free whose execmem_force_rw() fails (a split of the alias that finds
//   no page for its table) leaves the range busy and marked pending
//   (pending_free_set()); execmem_cache_free_slow(), a delayed work in the
//   kernel, tries such ranges again. The model has no clock: it tries them
//   at the start of the next load or unload. The maple-tree stores of that
//   path, which may fail under __GFP_NORETRY in the kernel, never fail here.
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
  std::uint64_t populates_exact = 0;     // ... with alloc_size = size after the 2 MiB one failed
  std::uint64_t releases = 0;            // areas given back by execmem_cache_clean()
  std::uint64_t vmalloc_splits = 0;      // vmalloc PMD leaves split by a partial call
  std::uint64_t vmalloc_collapses = 0;   // ... and collapsed back by set_memory_rox()
  std::uint64_t pending_frees = 0;       // unloads left pending: execmem_force_rw() failed
  std::uint64_t pending_retries = 0;     // execmem_cache_free_slow() tries of a pending range
};

class ExecmemCache {
 public:
  // Pages come from and go back to `pages`; dmap is where they turn ROX and
  // back; phys is read by check().
  ExecmemCache(phys::PageSource& pages, directmap::DirectMap& dmap, const phys::PhysMem& phys);
  ExecmemCache(const ExecmemCache&) = delete;
  ExecmemCache& operator=(const ExecmemCache&) = delete;

  // A module's text loaded: mirrors execmem_alloc_rw(EXECMEM_MODULE_TEXT,
  // pages * PAGE_SIZE) with EXECMEM_ROX_CACHE (execmem_alloc() then
  // execmem_force_rw()), and the execmem_restore_rox() of
  // module_enable_text_rox(): the text's address, or -EINVAL for 0 pages,
  // -ENOMEM when the cache cannot be populated or the permissions not changed.
  Result<std::uint64_t> alloc(std::uint64_t pages, CpuId cpu);
  // mirrors execmem_free() -> execmem_cache_free(): -EINVAL when addr is not
  // the start of a live allocation.
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
  // Pages of the busy ranges whose free is pending.
  [[nodiscard]] std::uint64_t pending_pages() const;
  // Free and busy areas tile the vm areas exactly; pending ranges are busy;
  // every page of every vm area is an allocated Kernel frame, present,
  // read-only, not dirty and not executable in the direct map, except in a
  // pending range (its execmem_force_rw() may have changed part of it).
  [[nodiscard]] std::vector<std::string> check() const;

 private:
  struct Vm {                 // one vm_struct of the cache
    std::uint64_t pages = 0;  // a multiple of 512, except after the alloc_size = size fallback
    bool huge = false;        // order-9 blocks mapped by PMD leaves (else order-0 pages)
    std::vector<Pfn> blocks;  // one pfn per block, in address order
    std::vector<bool> split;  // huge: the vmalloc PMD leaf of each block is split to PTEs
  };
  int populate(std::uint64_t pages, CpuId cpu);
  // Vm of `pages` order-0 pages (vmalloc's fallback), or -ENOMEM.
  int vmalloc_base_pages(Vm& vm, std::uint64_t pages, CpuId cpu);
  // set_memory_nx/rw/rox() on [start, start + pages) of the cache's addresses:
  // the primary walk's steps, their direct-map alias.
  int change_attr(std::uint64_t start, std::uint64_t pages, directmap::DirectMap::AliasOp op,
                  CpuId cpu);
  // execmem_force_rw() and execmem_restore_rox() on [start, start + pages).
  int force_rw(std::uint64_t start, std::uint64_t pages, CpuId cpu);
  int restore_rox(std::uint64_t start, std::uint64_t pages, CpuId cpu);
  // __execmem_cache_free() of the busy range at start: -ENOMEM (the range
  // stays busy) when execmem_force_rw() fails, else the range is free.
  int free_busy(std::uint64_t start, CpuId cpu);
  // execmem_cache_free() of the busy range at start: freed and the cache
  // cleaned, or left pending.
  void unload(std::uint64_t start, CpuId cpu);
  // execmem_cache_free_slow(): every pending range tried again.
  void free_pending(CpuId cpu);
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
  std::map<std::uint64_t, std::uint64_t> pending_;   // busy ranges whose free is pending
  std::uint64_t busy_pages_ = 0;
  std::uint64_t free_pages_ = 0;
  ExecmemStats stats_;
};

}  // namespace exmem::model::users
