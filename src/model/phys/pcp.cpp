// phys/: physical memory of the model (see physmem.hpp for what the folder owns).
// pcp.cpp: per-CPU page lists as in mm/page_alloc.c (6.7+ high/batch
// auto-tuning): LIFO lists per migratetype and order, refilled in batches by
// rmqueue_bulk() and drained oldest-first by free_pcppages_bulk().
#include <algorithm>
#include <bit>

#include "model/phys/physmem.hpp"

namespace exmem::model::phys {

// mirrors nr_pcp_alloc(): how many blocks one refill takes from the buddy
int PhysMem::nr_pcp_alloc(PerCpuPages& pcp, const Zone& z, unsigned order) {
  const int base_batch = pcp.batch;
  const int high_min = pcp.high_min;
  const int high_max = pcp.high_max;
  int high = pcp.high = std::clamp(pcp.high, high_min, high_max);
  if (high < base_batch) return 1;
  int batch = order != 0 ? base_batch : (base_batch << pcp.alloc_factor);
  // A larger pcp->high could have avoided going to the zone.
  if (high_min != high_max && !z.below_high) high = pcp.high = std::min(high + batch, high_max);
  if (order == 0) {
    const int max_nr_alloc = std::max(high - pcp.count - base_batch, base_batch);
    // Double the batch for consecutive order-0 allocations without frees.
    if (batch <= max_nr_alloc && pcp.alloc_factor < kPcpBatchScaleMax) ++pcp.alloc_factor;
    batch = std::min(batch, max_nr_alloc);
  }
  if (batch > 1) batch = std::max(batch >> order, 2);
  return batch;
}

// Up to `want` blocks of `order` for rmqueue_bulk(), taken as __rmqueue()
// takes them while it takes them from __rmqueue_smallest() of `mt`: no CMA
// balancing before any of them, and a block of `mt` to take or split. A block
// of `order` is the list's head. A larger one is the smallest that fits, so
// the lists below its order are empty: each split hands its upper half to an
// empty list, the next call takes the lowest remaining block, and the calls
// hand out the block's pages in rising order. They are taken here at once:
// what stays free is the rest of the block as its aligned blocks, each alone
// on its list, and the free lists, counters and frames end as those calls
// leave them, without listing and unlisting every half. Stops where
// __rmqueue() would balance towards CMA or fall back: rmqueue_bulk() then
// takes the next block the one-by-one way.
int PhysMem::rmqueue_run(Zone& z, unsigned order, int want, std::deque<Pfn>& list, unsigned mt,
                         unsigned alloc_flags) {
  if (mt == MIGRATE_CMA || mt == MIGRATE_ISOLATE) return 0;
  const bool cma_balance = (alloc_flags & ALLOC_CMA) != 0;
  const auto step = std::int64_t{1} << order;
  int n = 0;
  unsigned current = order;
  while (n < want) {
    if (cma_balance && z.nr_free_cma > z.nr_free_pages / 2) break;
    while (current < kNrPageOrders && z.free_area[current][mt].empty()) ++current;
    if (current == kNrPageOrders) break;
    const Pfn block = z.free_area[current][mt].head;
    del_from_free_list(z, block, current, mt);
    if (current == order) {
      // What the code below does for a block of `order` (nothing to split),
      // without its loops: most refill pages after a drain are such blocks
      // (4% of secretmem-pmd-pool's instructions).
      account_freepages(z, -step, mt);
      set_frames(block, Pfn{1} << order, static_cast<std::uint8_t>(FrameKind::Pcp));
      list.push_back(block);
      ++n;
      continue;
    }
    const int room = 1 << (current - order);
    int m = 1;  // the first block passed the balance check above
    for (std::int64_t free_pages = z.nr_free_pages - step; n + m < want && m < room;
         ++m, free_pages -= step) {
      if (cma_balance && z.nr_free_cma > free_pages / 2) break;
    }
    const Pfn taken = static_cast<Pfn>(m) << order;
    const Pfn end = block + (Pfn{1} << current);
    for (Pfn q = block + taken; q < end;) {
      const auto o = static_cast<unsigned>(std::countr_zero(q));  // below `current`: q is inside
      add_to_free_list(z, q, o, mt, false);
      q += Pfn{1} << o;
    }
    account_freepages(z, -static_cast<std::int64_t>(taken), mt);
    set_frames(block, taken, static_cast<std::uint8_t>(FrameKind::Pcp));
    for (Pfn q = block; q < block + taken; q += Pfn{1} << order) list.push_back(q);
    n += m;
    if (m < room) current = order;  // the rest went to the lists below
  }
  return n;
}

// mirrors rmqueue_bulk(): blocks go to the list tail in the order obtained
int PhysMem::rmqueue_bulk(Zone& z, unsigned order, int count, std::deque<Pfn>& list,
                          unsigned mt, unsigned alloc_flags) {
  RmqueueMode mode = RmqueueMode::Normal;
  ++stats_.pcp_refills;
  int i = 0;
  while (i < count) {
    if (batched_ && mode == RmqueueMode::Normal) {
      const int n = rmqueue_run(z, order, count - i, list, mt, alloc_flags);
      if (n > 0) {
        i += n;
        continue;
      }
    }
    const Pfn pfn = rmqueue_core(z, order, mt, alloc_flags, mode);
    if (pfn == kNoPfn) break;
    set_frames(pfn, Pfn{1} << order, static_cast<std::uint8_t>(FrameKind::Pcp));
    list.push_back(pfn);
    ++i;
  }
  return i;
}

// mirrors rmqueue_pcplist() and __rmqueue_pcplist()
Pfn PhysMem::rmqueue_pcplist(Zone& z, unsigned order, unsigned mt, unsigned alloc_flags,
                             CpuId cpu) {
  count_pcp_op();  // the model's clock for vmstat_tick()
  PerCpuPages& pcp = z.pcp[cpu];
  pcp.free_count >>= 1;
  std::deque<Pfn>& list = pcp.lists[order_to_pindex(mt, order)];
  if (list.empty()) {
    const int batch = nr_pcp_alloc(pcp, z, order);
    const int alloced = rmqueue_bulk(z, order, batch, list, mt, alloc_flags);
    pcp.count += alloced << order;
    if (list.empty()) return kNoPfn;
  }
  const Pfn pfn = list.front();
  list.pop_front();
  pcp.count -= 1 << order;
  return pfn;
}

// mirrors nr_pcp_free()
int PhysMem::nr_pcp_free(const PerCpuPages& pcp, int batch, int high, bool free_high) {
  if (free_high) return std::min(pcp.count, batch << kPcpBatchScaleMax);
  if (high < batch) return 1;
  const int min_nr_free = batch;
  const int max_nr_free = high - batch;
  return std::clamp(pcp.free_count, min_nr_free, std::max(min_nr_free, max_nr_free));
}

// mirrors nr_pcp_high()
[[gnu::always_inline]] inline int PhysMem::nr_pcp_high(PerCpuPages& pcp, Zone& z, int batch,
                                                      bool free_high) {
  const int high_min = pcp.high_min;
  const int high_max = pcp.high_max;
  int high = pcp.high = std::clamp(pcp.high, high_min, high_max);
  if (high == 0) return 0;
  if (free_high) {
    pcp.high = std::max(high - (batch << kPcpBatchScaleMax), high_min);
    return 0;
  }
  // If reclaim is active, limit the number of pages that can be stored on pcp lists.
  if (z.reclaim_active) {
    if (z.nr_free_pages >= static_cast<std::int64_t>(z.wmark_pages(WMARK_HIGH))) {
      z.reclaim_active = false;  // kswapd would have balanced it and slept
    } else {
      const int free_count = std::max(pcp.free_count, batch);
      pcp.high = std::max(high - free_count, high_min);
      return std::min(batch << 2, pcp.high);
    }
  }
  if (high_min == high_max) return high;
  if (z.below_high) {
    const int free_count = std::max(pcp.free_count, batch);
    pcp.high = std::max(high - free_count, high_min);
    high = std::max(pcp.count, high_min);
  } else if (pcp.count >= high) {
    const int need_high = pcp.free_count + batch;
    // pcp->high should be large enough to hold the batch being freed.
    if (pcp.high < need_high) pcp.high = std::clamp(need_high, high_min, high_max);
  }
  return high;
}

// mirrors free_pcppages_bulk(): round-robin over the lists, oldest first,
// starting with the list that overflowed.
void PhysMem::free_pcppages_bulk(Zone& z, int count, PerCpuPages& pcp, unsigned pindex) {
  count = std::min(pcp.count, count);
  if (count <= 0) return;
  ++stats_.pcp_drains;
  unsigned idx = pindex == 0 ? kNrPcpLists - 1 : pindex - 1;
  while (count > 0) {
    do {
      if (++idx > kNrPcpLists - 1) idx = 0;
    } while (pcp.lists[idx].empty());
    std::deque<Pfn>& list = pcp.lists[idx];
    const unsigned order = pindex_to_order(idx);
    const int nr_pages = 1 << order;
    do {
      // Blocks that leave the list one after another at adjacent addresses,
      // rising (a range freed page by page, as free_contig_range() does) or
      // falling (a refill's pages, taken from the list's other end), are
      // freed together: see free_pcp_run().
      const Pfn step = static_cast<Pfn>(nr_pages);
      Pfn low = list.back();
      Pfn high = low + step;
      auto take = [&] {
        list.pop_back();
        count -= nr_pages;
        pcp.count -= nr_pages;
      };
      take();
      // The block after the first says which way the run goes.
      auto next_is = [&](Pfn pfn) { return count > 0 && !list.empty() && list.back() == pfn; };
      auto next_below = [&] { return low >= step && next_is(low - step); };
      const bool falling = next_below();
      while (falling ? next_below() : next_is(high)) {
        take();
        if (falling) {
          low -= step;
        } else {
          high += step;
        }
      }
      free_pcp_run(z, low, high, order, !falling);
    } while (count > 0 && !list.empty());
  }
}

// Frees [low, high), blocks of `order` that __free_one_page() would take one
// after another, in rising address order or falling, as aligned blocks of up
// to a pageblock taken in that same order. The buddy ends the same: a
// block's pages merge only among themselves until the last of them completes
// it (every buddy below the block's order lies inside it), and that last
// merge goes on from the whole block exactly as freeing the block does, with
// the same buddy_merge_likely() placement; the sub-blocks listed on the way
// were taken off again, leaving every other list entry where it was. A
// pageblock is the cap because above it each half keeps its own migratetype.
void PhysMem::free_pcp_run(Zone& z, Pfn low, Pfn high, unsigned order, bool rising) {
  // The largest block (up to a pageblock) aligned at `at` that fits in `room` pages.
  // `at` is aligned to `order` and room holds at least one block of it.
  auto block_order = [order](Pfn at, Pfn room) {
    const unsigned aligned = static_cast<unsigned>(std::countr_zero(at));  // 32 for pfn 0
    const unsigned fits = static_cast<unsigned>(std::bit_width(room)) - 1;
    return std::max(order, std::min({kPageblockOrder, aligned, fits}));
  };
  auto free_block = [&](Pfn q, unsigned o) {
    set_frames(q, Pfn{1} << o, static_cast<std::uint8_t>(FrameKind::FreeTail));
    free_one_page_core(z, q, o, pageblock_migratetype(q), false);
  };
  if (rising) {
    for (Pfn q = low; q < high;) {
      const unsigned o = block_order(q, high - q);  // starting at q
      free_block(q, o);
      q += Pfn{1} << o;
    }
  } else {
    for (Pfn e = high; e > low;) {
      const unsigned o = block_order(e, e - low);  // ending at e
      e -= Pfn{1} << o;
      free_block(e, o);
    }
  }
}

// mirrors free_frozen_page_commit() (free_unref_page_commit() before 6.14)
[[gnu::always_inline]] inline void PhysMem::free_frozen_page_commit(Zone& z, PerCpuPages& pcp,
                                                                  Pfn pfn, unsigned mt,
                                                                  unsigned order) {
  count_pcp_op();  // the model's clock for vmstat_tick()
  bool free_high = false;
  // Freeing reduces the number of pages batch-allocated next time.
  pcp.alloc_factor = static_cast<std::uint8_t>(pcp.alloc_factor >> 1);
  const unsigned pindex = order_to_pindex(mt, order);
  set_frames(pfn, Pfn{1} << order, static_cast<std::uint8_t>(FrameKind::Pcp));
  pcp.lists[pindex].push_front(pfn);
  pcp.count += 1 << order;

  const int batch = pcp.batch;
  // Limit high-order pages (other than THP) kept while freeing heavily.
  if (order != 0 && order <= kPageAllocCostlyOrder) {
    free_high = pcp.free_count >= (batch + pcp.high_min / 2) &&
                (pcp.flags & PCPF_PREV_FREE_HIGH_ORDER) &&
                (!(pcp.flags & PCPF_FREE_HIGH_BATCH) || pcp.count >= batch);
    pcp.flags |= PCPF_PREV_FREE_HIGH_ORDER;
  } else if (pcp.flags & PCPF_PREV_FREE_HIGH_ORDER) {
    pcp.flags = static_cast<std::uint8_t>(pcp.flags & ~PCPF_PREV_FREE_HIGH_ORDER);
  }
  if (pcp.free_count < (batch << kPcpBatchScaleMax)) pcp.free_count += 1 << order;
  const int high = nr_pcp_high(pcp, z, batch, free_high);
  if (pcp.count >= high) {
    free_pcppages_bulk(z, nr_pcp_free(pcp, batch, high, free_high), pcp, pindex);
    if (z.below_high &&
        zone_watermark_ok(z, 0, z.wmark_pages(WMARK_HIGH), ZONE_NORMAL, 0, z.nr_free_pages)) {
      z.below_high = false;
    }
  }
}

// mirrors free_frozen_pages() (free_unref_page() before 6.14)
void PhysMem::free_frozen_pages(Pfn pfn, unsigned order, CpuId cpu) {
  Zone& z = zone_for(pfn);
  if (!pcp_allowed_order(order)) {
    set_frames(pfn, Pfn{1} << order, static_cast<std::uint8_t>(FrameKind::FreeTail));
    split_large_buddy(z, pfn, order, false);  // __free_pages_ok() -> free_one_page()
    return;
  }
  unsigned mt = pageblock_migratetype(pfn);
  if (mt > MIGRATE_RECLAIMABLE) {
    if (mt == MIGRATE_ISOLATE) {
      set_frames(pfn, Pfn{1} << order, static_cast<std::uint8_t>(FrameKind::FreeTail));
      split_large_buddy(z, pfn, order, false);
      return;
    }
    mt = MIGRATE_MOVABLE;  // CMA and HIGHATOMIC pages use the movable pcp list
  }
  free_frozen_page_commit(z, z.pcp[cpu], pfn, mt, order);
}

// mirrors free_contig_range() of 6.18: every page goes through __free_page(),
// here on CPU 0, as free_frozen_pages() takes it. What that looks up per page
// (zone, pageblock migratetype, pcp) is looked up once per pageblock: freeing
// cannot change them within it. A drain on the way may merge blocks and retag
// a free buddy's pageblocks, but this pageblock is not free while the loop is
// in it (its next page is still allocated), so it is not that buddy.
void PhysMem::free_contig_range(Pfn pfn, Pfn count) {
  const Pfn end = pfn + count;
  if (!batched_) {
    for (Pfn p = pfn; p < end; ++p) free_frozen_pages(p, 0, 0);
    return;
  }
  for (Pfn p = pfn; p < end;) {
    const Pfn block_end = std::min<Pfn>(end, (p | (kPageblockNrPages - 1)) + 1);
    Zone& z = zone_for(p);
    unsigned mt = pageblock_migratetype(p);
    if (mt == MIGRATE_ISOLATE) {  // straight to the buddy, as free_frozen_pages() does
      for (; p < block_end; ++p) free_frozen_pages(p, 0, 0);
      continue;
    }
    if (mt > MIGRATE_RECLAIMABLE) mt = MIGRATE_MOVABLE;  // as free_frozen_pages()
    PerCpuPages& pcp = z.pcp[0];
    for (; p < block_end; ++p) free_frozen_page_commit(z, pcp, p, mt, 0);
  }
}

// mirrors decay_pcp_high(), called from the vmstat counter updater: shrink
// pcp->high by an eighth (but never more than batch << PCP_BATCH_SCALE_MAX
// below the count, nor below high_min), then free the pages over it, batch
// by batch as in 6.18.7+ and 6.19 ("mm/page_alloc: batch page freeing in
// decay_pcp_high"; 6.18.0 freed them in one free_pcppages_bulk() call, the
// same pages but for the round-robin start). Returns whether there is more
// to do.
bool PhysMem::decay_pcp_high(Zone& z, PerCpuPages& pcp) {
  const int high_min = pcp.high_min;
  const int batch = pcp.batch;
  bool todo = false;
  // Decrease pcp->high periodically to free possible idle pcp pages, without
  // freeing too many at once.
  if (pcp.high > high_min) {
    pcp.high = std::max({pcp.count - (batch << kPcpBatchScaleMax), pcp.high - (pcp.high >> 3),
                         high_min});
    if (pcp.high > high_min) todo = true;
  }
  int to_drain = pcp.count - pcp.high;
  while (to_drain > 0) {
    const int to_drain_batched = std::min(to_drain, batch);
    free_pcppages_bulk(z, to_drain_batched, pcp, 0);
    todo = true;
    to_drain -= to_drain_batched;
  }
  return todo;
}

// mirrors the pcp part of refresh_cpu_vm_stats(true) as vmstat_update() runs
// it on every CPU: decay_pcp_high() on the CPU's list of each populated zone.
// (CONFIG_NUMA's drain of remote-node pagesets does not apply: one node.)
void PhysMem::vmstat_tick() {
  ++stats_.vmstat_ticks;
  for (Zone& z : zones_) {
    if (!z.populated()) continue;
    for (PerCpuPages& pcp : z.pcp) decay_pcp_high(z, pcp);
  }
}

namespace {
// mirrors zone_batchsize()
int zone_batchsize(std::uint64_t managed_pages) {
  std::uint64_t batch = std::min<std::uint64_t>(managed_pages >> 10, (1u << 20) / kPageSize);
  batch /= 4;
  if (batch < 1) batch = 1;
  const std::uint64_t v = batch + batch / 2;
  std::uint64_t pow2 = 1;
  while (pow2 * 2 <= v) pow2 *= 2;  // rounddown_pow_of_two()
  return static_cast<int>(pow2 - 1);
}

// mirrors zone_highsize()
int zone_highsize(std::uint64_t low_wmark, std::uint64_t managed, int batch, unsigned ncpus,
                  unsigned high_fraction) {
  const std::uint64_t total_pages = high_fraction == 0 ? low_wmark : managed / high_fraction;
  const std::uint64_t high = total_pages / std::max(1u, ncpus);
  return static_cast<int>(std::max<std::uint64_t>(high, static_cast<std::uint64_t>(batch) << 2));
}
}  // namespace

namespace {
struct PagesetSizes {
  int batch;
  int high_min;
  int high_max;
};
// mirrors zone_set_pageset_high_and_batch() with percpu_pagelist_high_fraction
// 0: batch from the zone's size, high_min from its low watermark and
// high_max from an eighth of the zone, both split over the online CPUs.
PagesetSizes zone_pageset_sizes(const Zone& z, unsigned ncpus) {
  const int batch = std::max(1, zone_batchsize(z.managed_pages));
  return {batch, zone_highsize(z.watermark[WMARK_LOW], z.managed_pages, batch, ncpus, 0),
          zone_highsize(z.watermark[WMARK_LOW], z.managed_pages, batch, ncpus, 8)};
}
}  // namespace

// mirrors setup_zone_pageset() (per_cpu_pages_init() and
// zone_set_pageset_high_and_batch()), then zone_pcp_update_cacheinfo() as
// setup_pcp_cacheinfo() runs it when cacheinfo brings each CPU online: with
// more than 3 x batch pages of LLC per CPU, consecutive high-order frees keep
// a batch on the pcp list before draining (PCPF_FREE_HIGH_BATCH).
void PhysMem::setup_pcp(Zone& z) {
  const PagesetSizes s = zone_pageset_sizes(z, config_.cpus);
  const bool free_high_batch =
      (config_.llc_bytes_per_cpu >> kPageShift) > 3 * static_cast<std::uint64_t>(s.batch);
  z.pcp.assign(config_.cpus, PerCpuPages{});
  for (PerCpuPages& pcp : z.pcp) {
    pcp.batch = s.batch;
    pcp.high_min = s.high_min;
    pcp.high_max = s.high_max;
    pcp.high = s.high_min;  // the kernel starts at 0 and clamps to high_min on first use
    if (free_high_batch) pcp.flags |= PCPF_FREE_HIGH_BATCH;
  }
}

// mirrors zone_pcp_update() -> zone_set_pageset_high_and_batch(): new batch,
// high_min and high_max for every CPU after the watermarks (or the zone's
// size) changed; pcp->high itself is clamped into [high_min, high_max] on
// its next use (nr_pcp_alloc(), nr_pcp_high()), the lists are kept.
void PhysMem::zone_pcp_update(Zone& z) {
  if (z.pcp.empty()) return;  // at boot, before setup_zone_pageset()
  const PagesetSizes s = zone_pageset_sizes(z, config_.cpus);
  for (PerCpuPages& pcp : z.pcp) {
    pcp.batch = s.batch;
    pcp.high_min = s.high_min;
    pcp.high_max = s.high_max;
  }
}

}  // namespace exmem::model::phys
