// phys/: physical memory of the model (see physmem.hpp for what the folder owns).
// page_owners.hpp: what the allocator's slow path asks of those who own the
// allocated pages, as __alloc_pages_slowpath() reaches into the rest of the
// kernel: reclaim (shrink_node(): the file LRU and the slab shrinkers),
// migration (migrate_pages() from compaction and alloc_contig_range()) and the
// OOM killer (out_of_memory()). phys/ decides when each runs and counts what
// it did; the owners (the Machine, for mm/, the policies and the workloads)
// decide which of their pages go and update their own records.
//
// Without owners (PhysMem::set_page_owners(nullptr), the default) nothing is
// reclaimable, nothing migrates and no one can be killed: the slow path then
// fails where the kernel would have had to reclaim, compact or kill.
#pragma once

#include <cstdint>

#include "model/phys/gfp.hpp"
#include "model/types.hpp"

namespace exmem::model::phys {

class PageOwners {
 public:
  virtual ~PageOwners() = default;

  // shrink_node() for the model: free up to nr_to_reclaim reclaimable pages
  // in zones 0..highest_zoneidx, oldest first (clean page-cache pages from the
  // file LRU, reclaimable slab through the shrinkers, a policy's pooled pages
  // through its shrinker), each through PhysMem::free_pages(). Secret,
  // mlocked, anonymous (the model has no swap) and unmovable kernel pages are
  // never reclaimed. Returns the pages freed (sc->nr_reclaimed).
  virtual std::uint64_t reclaim(unsigned highest_zoneidx, std::uint64_t nr_to_reclaim, CpuId cpu) = 0;

  // migrate_pages() for one block: the allocated movable block at `from`
  // (FrameKind::User or PageCache, `order`) is being moved to `to`, which the
  // allocator has already allocated with the same kind. The owner points its
  // records at `to` and returns true; the allocator then frees `from`. false:
  // the block is pinned (or not the owner's): the allocator frees `to` and
  // `from` stays where it is.
  virtual bool migrate(Pfn from, Pfn to, unsigned order) = 0;

  // out_of_memory(): choose a victim with oom_badness() and kill it; its
  // memory goes back through PhysMem::free_pages() before this returns (the
  // OOM reaper's work, done at once). false: no process could be killed.
  virtual bool out_of_memory(Gfp gfp, unsigned order, CpuId cpu) = 0;

  // current->flags & PF_MEMALLOC: true while reclaim() runs (direct reclaim
  // and kswapd both set it), so that what a shrinker allocates meanwhile may
  // dip into the reserves (__gfp_pfmemalloc_flags()) and never reclaims again.
  [[nodiscard]] virtual bool memalloc() const { return false; }
};

}  // namespace exmem::model::phys
