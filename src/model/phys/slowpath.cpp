// phys/: physical memory of the model (see physmem.hpp for what the folder owns).
// slowpath.cpp: __alloc_pages_slowpath() of mm/page_alloc.c (Linux 6.18) and
// the reclaim it drives: kswapd (wakeup_kswapd(), balance_pgdat()), direct
// reclaim (try_to_free_pages()), should_reclaim_retry(), should_compact_retry()
// and the OOM killer (__alloc_pages_may_oom()). Reclaim and kills reach the
// pages' owners only through PageOwners (page_owners.hpp).
//
// What the model leaves out, where the kernel has it: cpusets and zonelist
// restarts (one node, no hotplug), OOM-victim reserves (ALLOC_OOM; PF_MEMALLOC,
// set while the owners reclaim, and __GFP_MEMALLOC do give
// ALLOC_NO_WATERMARKS), defrag_mode, memcg, throttling and sleeping.
#include <algorithm>

#include "model/phys/compaction.hpp"
#include "model/phys/physmem.hpp"

namespace exmem::model::phys {

namespace {
constexpr int kMaxReclaimRetries = 16;        // MAX_RECLAIM_RETRIES
constexpr std::uint64_t kSwapClusterMax = 32;  // SWAP_CLUSTER_MAX
constexpr int kDefPriority = 12;               // DEF_PRIORITY
constexpr int kMaxCompactRetries = 16;         // MAX_COMPACT_RETRIES
// Not in the kernel: a bound on the slow path's retry loop that honest owners
// never reach (each retry needs reclaim or a kill that freed pages), so that
// an owner that reports progress it did not make cannot hang the model.
constexpr int kModelRetryBound = 1 << 20;
}  // namespace

// mirrors drain_pages_zone()
void PhysMem::drain_pages_zone(unsigned cpu, Zone& z) {
  PerCpuPages& pcp = z.pcp[cpu];
  while (pcp.count > 0) {
    free_pcppages_bulk(z, std::min(pcp.count, pcp.batch << kPcpBatchScaleMax), pcp, 0);
  }
}

// mirrors pgdat_balanced(): some eligible zone meets its high watermark.
bool PhysMem::pgdat_balanced(unsigned order, unsigned highest_zoneidx) const {
  bool any = false;
  for (unsigned i = 0; i <= highest_zoneidx; ++i) {
    const Zone& z = zones_[i];
    if (!z.populated()) continue;
    any = true;
    if (zone_watermark_ok(z, order, z.wmark_pages(WMARK_HIGH), highest_zoneidx, 0, z.nr_free_pages)) {
      return true;
    }
  }
  return !any;
}

// mirrors wakeup_kswapd(). The model has no threads: a woken kswapd runs
// balance_pgdat() at once and then sleeps again. Not modelled: the
// hopeless-node rule (kswapd_failures >= MAX_RECLAIM_RETRIES) and kcompactd.
void PhysMem::wakeup_kswapd(Zone& z, unsigned order, unsigned highest_zoneidx, CpuId cpu) {
  if (!z.populated()) return;
  bool boosted = false;  // pgdat_watermark_boosted()
  for (unsigned i = 0; i <= highest_zoneidx; ++i) boosted |= zones_[i].watermark_boost != 0;
  if (!boosted && pgdat_balanced(order, highest_zoneidx)) return;
  ++stats_.kswapd_wakeups;
  balance_pgdat(order, highest_zoneidx, cpu);
}

// mirrors wake_all_kswapds() (one node: one kswapd)
void PhysMem::wake_all_kswapds(unsigned order, unsigned highest_zoneidx, CpuId cpu) {
  for (int zi = static_cast<int>(highest_zoneidx); zi >= 0; --zi) {
    Zone& z = zones_[static_cast<unsigned>(zi)];
    if (!z.populated()) continue;
    wakeup_kswapd(z, order, highest_zoneidx, cpu);
    return;
  }
}

// mirrors balance_pgdat(): reclaim until an eligible zone is balanced (free
// pages above its high watermark), or, while the watermarks are boosted,
// until the boost is reclaimed; then take the boost off.
// The owners' reclaim has no scan priority: where shrink_node() scans
// lru_size >> priority pages, one pass here asks for what would balance the
// node (at most kswapd_shrink_node()'s nr_to_reclaim), or for the boost still
// to reclaim; a pass that reclaims nothing ends the run (a deterministic owner
// would free nothing at a higher priority either).
void PhysMem::balance_pgdat(unsigned order, unsigned highest_zoneidx, CpuId cpu) {
  std::array<std::uint64_t, MAX_NR_ZONES> zone_boosts{};
  std::uint64_t nr_boost_reclaim = 0;
  for (unsigned i = 0; i <= highest_zoneidx; ++i) {
    if (!zones_[i].populated()) continue;
    nr_boost_reclaim += zones_[i].watermark_boost;
    zone_boosts[i] = zones_[i].watermark_boost;
  }
  const bool boosted = nr_boost_reclaim != 0;
  for (unsigned i = 0; i <= highest_zoneidx; ++i) zones_[i].reclaim_active = zones_[i].populated();  // set_reclaim_active()
  std::uint64_t nr_reclaimed = 0;
  int priority = kDefPriority;
  while (priority >= 1) {
    bool raise_priority = true;
    const bool balanced = pgdat_balanced(order, highest_zoneidx);
    if (!balanced && nr_boost_reclaim != 0) {
      // The node is imbalanced: ignore the boost and restart.
      nr_boost_reclaim = 0;
      priority = kDefPriority;
      continue;
    }
    if (nr_boost_reclaim == 0 && balanced) break;
    if (nr_boost_reclaim != 0 && priority == kDefPriority - 2) raise_priority = false;
    // kswapd_shrink_node()
    std::uint64_t nr_to_reclaim = 0;
    std::uint64_t shortfall = ~std::uint64_t{0};
    for (unsigned i = 0; i <= highest_zoneidx; ++i) {
      const Zone& z = zones_[i];
      if (!z.populated()) continue;
      const std::uint64_t high = z.wmark_pages(WMARK_HIGH);
      nr_to_reclaim += std::max(high, kSwapClusterMax);
      const std::int64_t need = static_cast<std::int64_t>(high + z.lowmem_reserve[highest_zoneidx]) + 1 -
                                z.nr_free_pages;
      shortfall = std::min(shortfall, static_cast<std::uint64_t>(std::max<std::int64_t>(need, 0)));
    }
    std::uint64_t ask = nr_boost_reclaim != 0 ? nr_boost_reclaim : shortfall;
    ask = std::min(nr_to_reclaim, std::max(ask, kSwapClusterMax));
    const std::uint64_t got = owners_ != nullptr ? owners_->reclaim(highest_zoneidx, ask, cpu) : 0;
    stats_.pgsteal_kswapd += got;
    nr_reclaimed += got;
    // High orders may never balance under fragmentation: after twice the
    // allocation's size, check order 0 only (compaction's job from there).
    if (order != 0 && nr_reclaimed >= compact::compact_gap(order)) order = 0;
    if (got >= ask) raise_priority = false;
    nr_boost_reclaim -= std::min(nr_boost_reclaim, got);
    if (got == 0) break;
    if (raise_priority) --priority;
  }
  if (boosted) {
    for (unsigned i = 0; i <= highest_zoneidx; ++i) {
      zones_[i].watermark_boost -= std::min(zones_[i].watermark_boost, zone_boosts[i]);
    }
  }
  // clear_reclaim_active(): kswapd goes back to sleep once balanced; an
  // unbalanced zone keeps it awake (see Zone::reclaim_active).
  for (unsigned i = 0; i <= highest_zoneidx; ++i) {
    Zone& z = zones_[i];
    if (z.populated() && z.nr_free_pages >= static_cast<std::int64_t>(z.wmark_pages(WMARK_HIGH))) {
      z.reclaim_active = false;
    }
  }
}

// mirrors try_to_free_pages() -> do_try_to_free_pages() -> shrink_zones():
// reclaim SWAP_CLUSTER_MAX pages from the zones the allocation may use. For
// costly orders, a zone where compaction can already run is not reclaimed
// (compaction_ready()); when every eligible zone is, reclaim is skipped and
// reports progress (sc->compaction_ready). One pass: the owners have no
// priorities to escalate (see balance_pgdat()).
std::uint64_t PhysMem::try_to_free_pages(unsigned order, Gfp gfp, unsigned highest_zoneidx,
                                         CpuId cpu) {
  (void)gfp;
  ++stats_.allocstall;
  bool compaction_ready = false;
  bool shrink = false;
  for (int zi = static_cast<int>(highest_zoneidx); zi >= 0; --zi) {
    const Zone& z = zones_[static_cast<unsigned>(zi)];
    if (!z.populated()) continue;
    if (order > kPageAllocCostlyOrder) {
      // compaction_ready()
      bool ready = zone_watermark_ok(z, order, z.wmark_pages(WMARK_MIN), highest_zoneidx, 0, z.nr_free_pages);
      if (!ready && compaction_suitable(z, order, highest_zoneidx, z.nr_free_pages, true)) {
        ready = zone_watermark_ok(z, 0, z.wmark_pages(WMARK_HIGH) + compact::compact_gap(order),
                                  highest_zoneidx, 0, z.nr_free_pages);
      }
      if (ready) {
        compaction_ready = true;
        continue;
      }
    }
    shrink = true;  // shrink_node() of the one node, once
    break;
  }
  std::uint64_t got = 0;
  if (shrink && owners_ != nullptr) got = owners_->reclaim(highest_zoneidx, kSwapClusterMax, cpu);
  stats_.pgsteal_direct += got;
  if (got != 0) return got;
  return compaction_ready ? 1 : 0;  // aborted reclaim to try compaction: don't OOM
}

// mirrors __alloc_pages_direct_reclaim() with __perform_reclaim(): reclaim,
// and only when that made progress, retry; after a failed retry, give back
// the highatomic reserve (all but one pageblock) and drain the pcp lists,
// then retry once more.
Pfn PhysMem::alloc_pages_direct_reclaim(Gfp gfp, unsigned order, unsigned alloc_flags,
                                        unsigned highest_zoneidx, unsigned mt, CpuId cpu,
                                        std::uint64_t& did_some_progress) {
  did_some_progress = try_to_free_pages(order, gfp, highest_zoneidx, cpu);
  if (did_some_progress == 0) return kNoPfn;
  Pfn page = get_page_from_freelist(gfp, order, alloc_flags, highest_zoneidx, mt, cpu);
  if (page == kNoPfn) {
    unreserve_highatomic_pageblock(highest_zoneidx, mt, false);
    drain_all_pages();
    page = get_page_from_freelist(gfp, order, alloc_flags, highest_zoneidx, mt, cpu);
  }
  return page;
}

// mirrors should_reclaim_retry(): retry while reclaim makes progress (costly
// orders never count as progress) up to MAX_RECLAIM_RETRIES passes without,
// and only while some zone would meet its min watermark if everything
// reclaimable were reclaimed; before giving up (OOM), unreserve the
// highatomic pageblocks, even the last one, one per call.
bool PhysMem::should_reclaim_retry(unsigned order, unsigned highest_zoneidx, unsigned mt,
                                   unsigned alloc_flags, bool did_some_progress,
                                   int& no_progress_loops) {
  if (did_some_progress && order <= kPageAllocCostlyOrder) {
    no_progress_loops = 0;
  } else {
    ++no_progress_loops;
  }
  bool ret = false;
  if (no_progress_loops <= kMaxReclaimRetries) {
    for (int zi = static_cast<int>(highest_zoneidx); zi >= 0; --zi) {
      const auto i = static_cast<unsigned>(zi);
      const Zone& z = zones_[i];
      if (!z.populated()) continue;
      const auto available = static_cast<std::int64_t>(zone_reclaimable_pages(i)) + z.nr_free_pages;
      if (zone_watermark_ok(z, order, z.wmark_pages(WMARK_MIN), highest_zoneidx, alloc_flags, available)) {
        ret = true;
        break;
      }
    }
  }
  if (!ret) return unreserve_highatomic_pageblock(highest_zoneidx, mt, true);
  return ret;
}

// mirrors __alloc_pages_may_oom(): one last attempt at the high watermark
// (catching memory another kill freed), then the OOM killer, except for
// costly orders, __GFP_RETRY_MAYFAIL, __GFP_THISNODE and lowmem-only
// requests. A kill is progress: the slow path retries. The model's one
// difference: a kill that gave back no page is not progress (the kernel would
// wait for the OOM reaper; the model's owners free the victim's memory before
// out_of_memory() returns, so nothing more would come).
Pfn PhysMem::alloc_pages_may_oom(Gfp gfp, unsigned order, unsigned highest_zoneidx, unsigned mt,
                                 CpuId cpu, std::uint64_t& did_some_progress) {
  did_some_progress = 0;
  const Pfn page = get_page_from_freelist((gfp | __GFP_HARDWALL) & ~__GFP_DIRECT_RECLAIM, order,
                                          ALLOC_WMARK_HIGH | ALLOC_CPUSET, highest_zoneidx, mt, cpu);
  if (page != kNoPfn) return page;
  if (order > kPageAllocCostlyOrder) return kNoPfn;  // the OOM killer will not help high orders
  if (gfp & (__GFP_RETRY_MAYFAIL | __GFP_THISNODE)) return kNoPfn;
  if (highest_zoneidx < ZONE_NORMAL) return kNoPfn;  // no kills for lowmem
  if (owners_ == nullptr) return kNoPfn;
  const std::uint64_t before = free_pages() + pcp_pages();
  if (owners_->out_of_memory(gfp, order, cpu)) {
    ++stats_.oom_kill;
    if (free_pages() + pcp_pages() > before) did_some_progress = 1;
  }
  if ((gfp & __GFP_NOFAIL) && did_some_progress != 0) {
    // __alloc_pages_cpuset_fallback(ALLOC_NO_WATERMARKS)
    return get_page_from_freelist(gfp, order, ALLOC_NO_WATERMARKS | ALLOC_CPUSET, highest_zoneidx, mt, cpu);
  }
  return kNoPfn;
}

namespace {
// mirrors should_compact_retry() (CONFIG_COMPACTION)
template <class Suitable>
bool should_compact_retry(unsigned order, int compact_result, int& compact_priority,
                          int& compaction_retries, Suitable&& zonelist_suitable) {
  if (order == 0) return false;
  // Skipped for want of order-0 pages: go on while reclaim can help.
  if (compact_result == compact::COMPACT_SKIPPED) return zonelist_suitable();
  if (compact_result == compact::COMPACT_SUCCESS) {
    // A block was formed but the allocation failed: retry some.
    int max_retries = kMaxCompactRetries;
    if (order > kPageAllocCostlyOrder) max_retries /= 4;
    if (++compaction_retries <= max_retries) return true;
  }
  // Failed: retry with a higher priority.
  const int min_priority = order > kPageAllocCostlyOrder ? compact::MIN_COMPACT_COSTLY_PRIORITY
                                                         : compact::MIN_COMPACT_PRIORITY;
  if (compact_priority > min_priority) {
    --compact_priority;
    compaction_retries = 0;
    return true;
  }
  return false;
}
}  // namespace

// mirrors __alloc_pages_slowpath(), in the kernel's order of steps.
Pfn PhysMem::alloc_pages_slowpath(Gfp gfp, unsigned order, unsigned alloc_flags,
                                  unsigned highest_zoneidx, unsigned mt, CpuId cpu) {
  ++stats_.slowpath;
  const bool can_direct_reclaim = (gfp & __GFP_DIRECT_RECLAIM) != 0;
  const bool can_compact = (gfp & __GFP_IO) != 0;  // gfp_compaction_allowed()
  const bool nofail = (gfp & __GFP_NOFAIL) != 0;
  const bool costly_order = order > kPageAllocCostlyOrder;
  // gfp_pfmemalloc_allowed(): __GFP_MEMALLOC, or PF_MEMALLOC (an allocation
  // made while reclaiming), unless __GFP_NOMEMALLOC; OOM victims' ALLOC_OOM is
  // not modelled.
  const bool pf_memalloc = owners_ != nullptr && owners_->memalloc();
  const bool pfmemalloc = !(gfp & __GFP_NOMEMALLOC) && ((gfp & __GFP_MEMALLOC) || pf_memalloc);
  int compaction_retries = 0;
  int no_progress_loops = 0;
  int compact_result = compact::COMPACT_SKIPPED;
  int compact_priority = compact::DEF_COMPACT_PRIORITY;
  std::uint64_t did_some_progress = 0;
  Pfn page = kNoPfn;

  bool populated = false;
  for (unsigned i = 0; i <= highest_zoneidx; ++i) populated |= zones_[i].populated();
  if (!populated) return kNoPfn;

  if (alloc_flags & ALLOC_KSWAPD) wake_all_kswapds(order, highest_zoneidx, cpu);
  // The adjusted alloc_flags might succeed at once.
  page = get_page_from_freelist(gfp, order, alloc_flags, highest_zoneidx, mt, cpu);
  if (page != kNoPfn) return page;

  // Costly orders, and non-movable high orders (to keep pageblocks of their
  // type), try async compaction before reclaim.
  if (can_direct_reclaim && can_compact && (costly_order || (order > 0 && mt != MIGRATE_MOVABLE)) &&
      !pfmemalloc) {
    page = alloc_pages_direct_compact(gfp, order, alloc_flags, highest_zoneidx, mt, cpu,
                                      compact::INIT_COMPACT_PRIORITY, compact_result);
    if (page != kNoPfn) return page;
    if (costly_order && (gfp & __GFP_NORETRY)) {
      // THP faults and the like: give up where compaction could not start.
      if (compact_result == compact::COMPACT_SKIPPED || compact_result == compact::COMPACT_DEFERRED) {
        goto nopage;
      }
      if (gfp & __GFP_THISNODE) goto nopage;
      compact_priority = compact::INIT_COMPACT_PRIORITY;  // keep it async
    }
  }

  for (int loops = 0; loops < kModelRetryBound; ++loops) {  // retry:
    if (alloc_flags & ALLOC_KSWAPD) wake_all_kswapds(order, highest_zoneidx, cpu);
    if (pfmemalloc) {
      alloc_flags = ALLOC_NO_WATERMARKS | (alloc_flags & ALLOC_KSWAPD);
      if (mt == MIGRATE_MOVABLE) alloc_flags |= ALLOC_CMA;  // gfp_to_alloc_flags_cma()
    }
    page = get_page_from_freelist(gfp, order, alloc_flags, highest_zoneidx, mt, cpu);
    if (page != kNoPfn) return page;
    if (!can_direct_reclaim) break;  // not willing to reclaim: nothing to balance
    if (pf_memalloc) break;          // avoid recursion of direct reclaim

    page = alloc_pages_direct_reclaim(gfp, order, alloc_flags, highest_zoneidx, mt, cpu, did_some_progress);
    if (page != kNoPfn) return page;
    page = alloc_pages_direct_compact(gfp, order, alloc_flags, highest_zoneidx, mt, cpu,
                                      compact_priority, compact_result);
    if (page != kNoPfn) return page;

    if (gfp & __GFP_NORETRY) break;
    // Costly orders retry only with __GFP_RETRY_MAYFAIL and compaction.
    if (costly_order && (!can_compact || !(gfp & __GFP_RETRY_MAYFAIL))) break;
    if (should_reclaim_retry(order, highest_zoneidx, mt, alloc_flags, did_some_progress > 0,
                             no_progress_loops)) {
      continue;
    }
    // Compaction retries only make sense while order-0 reclaim progresses.
    if (did_some_progress > 0 && can_compact &&
        should_compact_retry(order, compact_result, compact_priority, compaction_retries,
                             [&] { return compaction_zonelist_suitable(order, highest_zoneidx); })) {
      continue;
    }
    // Reclaim has failed us: start killing things.
    page = alloc_pages_may_oom(gfp, order, highest_zoneidx, mt, cpu, did_some_progress);
    if (page != kNoPfn) return page;
    if (did_some_progress != 0) {
      no_progress_loops = 0;
      continue;
    }
    break;
  }

nopage:
  if (nofail && can_direct_reclaim) {
    // __alloc_pages_cpuset_fallback(ALLOC_MIN_RESERVE). The kernel then loops
    // until someone frees memory; the model has no one else, so it fails.
    page = get_page_from_freelist(gfp, order, ALLOC_MIN_RESERVE | ALLOC_CPUSET, highest_zoneidx, mt, cpu);
  }
  return page;
}

}  // namespace exmem::model::phys
