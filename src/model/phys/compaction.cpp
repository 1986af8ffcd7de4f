// phys/: physical memory of the model (see physmem.hpp for what the folder owns).
// compaction.cpp: direct compaction of mm/compaction.c (Linux 6.18) as the
// slow path calls it (try_to_compact_pages() -> compact_zone()): a migrate
// scanner from the zone's start isolates movable blocks, a free scanner from
// the zone's end isolates free pages as destinations, and the owners move
// each block (PageOwners::migrate()); it stops when __compact_finished()
// would (a free block of the order on a suitable list) or the scanners meet.
//
// Left out, where the kernel has it: deferred compaction (defer_compaction(),
// compaction_deferred(): every call compacts), the pageblock skip hints and
// the cached scanner positions (each run scans the whole zone from both
// ends), fast_isolate_freepages() / fast_find_migrateblock(), the async free
// scanner's stride (the model looks at every pfn), capture_control (the slow
// path allocates from the free lists after compaction), migrate_pages()'
// retries of a failed folio (the owners answer the same each time), and
// kcompactd / proactive compaction.
#include <algorithm>

#include "model/phys/compaction.hpp"
#include "model/phys/physmem.hpp"

namespace exmem::model::phys {

using namespace compact;

namespace {
inline Pfn pageblock_start_pfn(Pfn pfn) { return pfn & ~(kPageblockNrPages - 1); }
inline Pfn pageblock_end_pfn(Pfn pfn) { return pageblock_start_pfn(pfn) + kPageblockNrPages; }
inline Pfn block_end_pfn(Pfn pfn, unsigned order) {
  return static_cast<Pfn>((std::uint64_t{pfn} + (std::uint64_t{1} << order)) & ~((std::uint64_t{1} << order) - 1));
}
inline bool is_migrate_movable(unsigned mt) { return mt == MIGRATE_MOVABLE || mt == MIGRATE_CMA; }
}  // namespace

// mirrors struct compact_control (the fields the model uses)
struct PhysMem::CompactControl {
  Zone* zone = nullptr;
  unsigned order = 0;
  Gfp gfp = 0;
  unsigned migratetype = 0;
  unsigned alloc_flags = 0;
  unsigned highest_zoneidx = 0;
  bool async = true;                   // mode == MIGRATE_ASYNC
  bool whole_zone = true;
  bool ignore_block_suitable = false;  // MIN_COMPACT_PRIORITY
  CpuId cpu = 0;
  Pfn migrate_pfn = 0;
  Pfn free_pfn = 0;
  std::array<std::vector<Pfn>, kNrPageOrders> freepages;  // isolated free blocks per order
  std::uint64_t nr_freepages = 0;
  std::vector<std::pair<Pfn, unsigned>> migratepages;  // isolated (head, order)
  std::uint64_t nr_migratepages = 0;
  std::uint64_t total_migrate_scanned = 0;
  std::uint64_t total_free_scanned = 0;
};

// mirrors __fragmentation_index() over fill_contig_page_info()
int PhysMem::fragmentation_index(const Zone& z, unsigned order) const {
  std::uint64_t free_blocks_total = 0;
  std::uint64_t free_pages = 0;
  std::uint64_t free_blocks_suitable = 0;
  for (unsigned o = 0; o < kNrPageOrders; ++o) {
    free_blocks_total += z.nr_free[o];
    free_pages += z.nr_free[o] << o;
    if (o >= order) free_blocks_suitable += z.nr_free[o] << (o - order);
  }
  if (free_blocks_total == 0) return 0;
  if (free_blocks_suitable != 0) return -1000;
  const std::uint64_t requested = std::uint64_t{1} << order;
  return static_cast<int>(1000 - static_cast<std::int64_t>((1000 + free_pages * 1000 / requested) /
                                                           free_blocks_total));
}

// mirrors __compaction_suitable(): order-0 pages above the min (costly: low)
// watermark plus compact_gap(), so the free scanner finds destinations; and
// with use_fragindex, compaction_suitable(): costly orders only when the
// failure is due to fragmentation (fragmentation index above
// sysctl_extfrag_threshold).
bool PhysMem::compaction_suitable(const Zone& z, unsigned order, unsigned highest_zoneidx,
                                  std::int64_t wmark_target, bool use_fragindex) const {
  const std::uint64_t watermark =
      (order > kPageAllocCostlyOrder ? z.wmark_pages(WMARK_LOW) : z.wmark_pages(WMARK_MIN)) + compact_gap(order);
  if (!zone_watermark_ok(z, 0, watermark, highest_zoneidx, ALLOC_CMA, wmark_target)) return false;
  if (use_fragindex && order > kPageAllocCostlyOrder) {
    const int fragindex = fragmentation_index(z, order);
    if (fragindex >= 0 && fragindex <= kExtfragThreshold) return false;
  }
  return true;
}

// mirrors compaction_zonelist_suitable()
bool PhysMem::compaction_zonelist_suitable(unsigned order, unsigned highest_zoneidx) const {
  for (int zi = static_cast<int>(highest_zoneidx); zi >= 0; --zi) {
    const auto i = static_cast<unsigned>(zi);
    const Zone& z = zones_[i];
    if (!z.populated()) continue;
    const auto available = static_cast<std::int64_t>(zone_reclaimable_pages(i) / order) + z.nr_free_pages;
    if (compaction_suitable(z, order, highest_zoneidx, available, false)) return true;
  }
  return false;
}

// mirrors __compact_finished() (and compact_finished(): NO_SUITABLE_PAGE
// means CONTINUE)
int PhysMem::compact_finished(const CompactControl& cc) const {
  if ((cc.free_pfn >> kPageblockOrder) <= (cc.migrate_pfn >> kPageblockOrder)) {  // compact_scanners_met()
    return cc.whole_zone ? COMPACT_COMPLETE : COMPACT_PARTIAL_SKIPPED;
  }
  // Always finish a pageblock, so fewer fallbacks are needed later.
  if ((cc.migrate_pfn & (kPageblockNrPages - 1)) != 0) return COMPACT_CONTINUE;
  const Zone& z = *cc.zone;
  for (unsigned o = cc.order; o < kNrPageOrders; ++o) {
    if (!z.free_area[o][cc.migratetype].empty()) return COMPACT_SUCCESS;
    if (cc.migratetype == MIGRATE_MOVABLE && !z.free_area[o][MIGRATE_CMA].empty()) return COMPACT_SUCCESS;
    // Job done if the allocation would claim a block of another type.
    if (find_suitable_fallback(z, o, cc.migratetype, true) >= 0) return COMPACT_SUCCESS;
  }
  return COMPACT_CONTINUE;
}

// mirrors isolate_migratepages() (without fast_find_migrateblock() and skip
// hints) and isolate_migratepages_block(): the next suitable source pageblock
// below the free scanner, its movable blocks isolated COMPACT_CLUSTER_MAX
// pages at a time. Compound (THP) blocks are skipped whole when their order
// is at least the target order or pageblock_order; smaller ones are isolated
// whole. Async direct compaction gives up an order-aligned block at the first
// page it cannot isolate (skip_on_failure). Returns whether pages were isolated.
bool PhysMem::isolate_migratepages(CompactControl& cc) {
  const Zone& z = *cc.zone;
  Pfn low_pfn = cc.migrate_pfn;
  Pfn block_start = std::max(pageblock_start_pfn(low_pfn), z.zone_start_pfn);
  Pfn block_end = pageblock_end_pfn(low_pfn);
  for (; block_end <= cc.free_pfn;
       cc.migrate_pfn = low_pfn = block_end, block_start = block_end, block_end += kPageblockNrPages) {
    if (frames_[block_start] == static_cast<std::uint8_t>(FrameKind::Hole)) continue;  // pageblock_pfn_to_page()
    // suitable_migration_source(): pageblock_skip_persistent(), then for
    // async direct compaction only blocks of the allocation's type.
    if (movable_block_order(block_start) >= kPageblockOrder ||
        movable_block_order(block_start & ~((Pfn{1} << kMaxPageOrder) - 1)) > kPageblockOrder) {
      continue;
    }
    if (cc.async) {
      const unsigned block_mt = pageblock_migratetype(block_start);
      if (cc.migratetype == MIGRATE_MOVABLE ? !is_migrate_movable(block_mt) : block_mt != cc.migratetype) {
        continue;
      }
    }
    // isolate_migratepages_block(cc, low_pfn, block_end)
    const bool skip_on_failure = cc.async;  // direct compaction, MIGRATE_ASYNC
    Pfn next_skip_pfn = skip_on_failure ? block_end_pfn(low_pfn, cc.order) : 0;
    std::uint64_t nr_isolated = 0;
    std::uint64_t nr_scanned = 0;
    for (; low_pfn < block_end; ++low_pfn) {
      if (skip_on_failure && low_pfn >= next_skip_pfn) {
        if (nr_isolated != 0) break;  // migrate what the previous aligned block gave
        next_skip_pfn = block_end_pfn(low_pfn, cc.order);
      }
      ++nr_scanned;
      const std::uint8_t b = frames_[low_pfn];
      if (is_free_head(b)) {  // PageBuddy(): skip the free block
        const unsigned o = free_head_order(b);
        low_pfn += (Pfn{1} << o) - 1;
        nr_scanned += (std::uint64_t{1} << o) - 1;
        continue;
      }
      bool fail = !is_movable_kind(static_cast<FrameKind>(b));
      unsigned o = 0;
      if (!fail) {
        o = movable_block_order(low_pfn);
        // skip_isolation_on_order(): THPs are not compacted for their own order or less.
        if (o > 0 && (o >= cc.order || o >= kPageblockOrder)) {
          low_pfn += (Pfn{1} << o) - 1;
          nr_scanned += (std::uint64_t{1} << o) - 1;
          fail = true;
        }
      }
      if (!fail) {
        cc.migratepages.emplace_back(low_pfn, o);
        cc.nr_migratepages += std::uint64_t{1} << o;
        nr_isolated += std::uint64_t{1} << o;
        low_pfn += (Pfn{1} << o) - 1;
        if (cc.nr_migratepages >= kCompactClusterMax) {
          ++low_pfn;
          break;
        }
        continue;
      }
      // isolate_fail:
      if (!skip_on_failure) continue;
      if (nr_isolated != 0) {  // the order-aligned block cannot become free: put them back
        cc.migratepages.clear();
        cc.nr_migratepages = 0;
        nr_isolated = 0;
      }
      if (low_pfn < next_skip_pfn) {
        low_pfn = next_skip_pfn - 1;
        next_skip_pfn += Pfn{1} << cc.order;
      }
    }
    cc.total_migrate_scanned += nr_scanned;
    cc.migrate_pfn = std::min(low_pfn, block_end);
    break;
  }
  return cc.nr_migratepages != 0;
}

// mirrors isolate_freepages() and isolate_freepages_block() (stride 1): from
// the free scanner's position down to the migrate scanner's pageblock, free
// blocks of suitable target pageblocks (movable or CMA, not already holding a
// free block of the target order) are taken out of the buddy, each only while
// the order-0 min watermark holds (__isolate_free_page()), until there are as
// many free pages as pages to migrate.
void PhysMem::isolate_freepages(CompactControl& cc) {
  Zone& z = *cc.zone;
  auto isolate_start = static_cast<std::int64_t>(cc.free_pfn);
  auto block_start = static_cast<std::int64_t>(pageblock_start_pfn(cc.free_pfn));
  auto block_end = std::min<std::int64_t>(block_start + kPageblockNrPages, z.zone_end_pfn);
  const auto low_pfn = static_cast<std::int64_t>(pageblock_end_pfn(cc.migrate_pfn));
  for (; block_start >= low_pfn; block_end = block_start, block_start -= kPageblockNrPages,
                                 isolate_start = block_start) {
    const auto bs = static_cast<Pfn>(block_start);
    const std::uint8_t first = frames_[bs];
    if (first == static_cast<std::uint8_t>(FrameKind::Hole)) continue;
    // suitable_migration_target()
    if (is_free_head(first) && free_head_order(first) >= (cc.order > 0 ? cc.order : kPageblockOrder)) continue;
    if (!cc.ignore_block_suitable && !is_migrate_movable(pageblock_migratetype(bs))) continue;
    // Never from a range alloc_contig_range() has isolated (the kernel's
    // test_pages_isolated() would then fail it; the model keeps it clean).
    if (pageblock_migratetype(bs) == MIGRATE_ISOLATE) continue;
    // isolate_freepages_block()
    auto p = static_cast<Pfn>(isolate_start);
    const auto end = static_cast<Pfn>(block_end);
    std::uint64_t nr_scanned = 0;
    while (p < end) {
      ++nr_scanned;
      const std::uint8_t b = frames_[p];
      if (!is_free_head(b)) {
        const unsigned o = is_movable_kind(static_cast<FrameKind>(b)) ? movable_block_order(p) : 0;
        nr_scanned += (std::uint64_t{1} << o) - 1;
        p += Pfn{1} << o;
        continue;
      }
      const unsigned o = free_head_order(b);
      const unsigned mt = pageblock_migratetype(p);
      // __isolate_free_page(): obey the watermark as an allocation would.
      if (mt != MIGRATE_ISOLATE &&
          !zone_watermark_ok(z, 0, z.watermark[WMARK_MIN] + (std::uint64_t{1} << o), 0, ALLOC_CMA,
                             z.nr_free_pages)) {
        break;
      }
      del_from_free_list(z, p, o, mt);
      account_freepages(z, -(std::int64_t{1} << o), mt);
      if (o >= kPageblockOrder - 1) {  // at least half a pageblock: make it movable
        for (Pfn q = p; q < p + (Pfn{1} << o); q += kPageblockNrPages) {
          const unsigned qmt = pageblock_migratetype(q);
          if (migratetype_is_mergeable(qmt) && qmt != MIGRATE_MOVABLE) {
            move_freepages_block(z, pageblock_start_pfn(q), qmt, MIGRATE_MOVABLE);
            pageblocks_[q >> kPageblockOrder] = MIGRATE_MOVABLE;
          }
        }
      }
      cc.freepages[o].push_back(p);
      cc.nr_freepages += std::uint64_t{1} << o;
      nr_scanned += (std::uint64_t{1} << o) - 1;
      p += Pfn{1} << o;
      if (cc.nr_migratepages <= cc.nr_freepages) break;
    }
    cc.total_free_scanned += nr_scanned;
    isolate_start = std::min<std::int64_t>(p, block_end);
    if (cc.nr_freepages >= cc.nr_migratepages) {
      // Restart at the previous pageblock if this one is done.
      if (isolate_start >= block_end) isolate_start = block_start - kPageblockNrPages;
      break;
    }
    if (isolate_start < block_end) break;  // isolation failed early: do not go on
  }
  cc.free_pfn = static_cast<Pfn>(std::max<std::int64_t>(isolate_start, 0));
}

bool PhysMem::migrate_block(Pfn from, Pfn to, unsigned order, CpuId cpu) {
  const std::uint8_t kind = frames_[from];
  const Pfn nr = Pfn{1} << order;
  set_frames(to, nr, kind);
  account_block(to, order, kind, true);
  ++stats_.pgalloc;
  if (owners_ == nullptr || !owners_->migrate(from, to, order)) {
    account_block(to, order, kind, false);
    --stats_.pgalloc;
    set_frames(to, nr, static_cast<std::uint8_t>(FrameKind::FreeTail));
    stats_.pgmigrate_fail += nr;
    return false;
  }
  stats_.pgmigrate_success += nr;
  free_pages(from, order, cpu);  // folio_put() of the old folio
  return true;
}

// mirrors migrate_pages() with compaction_alloc() / compaction_free(): each
// isolated block gets a destination from the isolated free pages (a larger
// one split), the free scanner running once more when there is none; with no
// destination at all the rest go back (-ENOMEM). A block that cannot move
// (pinned) returns its destination to the free pages.
int PhysMem::migrate_isolated(CompactControl& cc) {
  int err = 0;
  for (const auto& [from, order] : cc.migratepages) {
    Pfn dst = kNoPfn;
    for (bool isolated = false; dst == kNoPfn;) {
      unsigned so = order;
      while (so < kNrPageOrders && cc.freepages[so].empty()) ++so;
      if (so < kNrPageOrders) {
        dst = cc.freepages[so].back();
        cc.freepages[so].pop_back();
        while (so > order) {
          --so;
          cc.freepages[so].push_back(dst + (Pfn{1} << so));
        }
        break;
      }
      if (isolated) break;
      isolate_freepages(cc);
      isolated = true;
    }
    if (dst == kNoPfn) {
      err = -ENOMEM;
      break;
    }
    const std::uint64_t nr = std::uint64_t{1} << order;
    cc.nr_freepages -= nr;
    cc.nr_migratepages -= nr;
    if (!migrate_block(from, dst, order, cc.cpu)) {
      cc.freepages[order].push_back(dst);  // compaction_free()
      cc.nr_freepages += nr;
    }
  }
  cc.migratepages.clear();
  cc.nr_migratepages = 0;
  return err;
}

// mirrors release_freepages(): the isolated free pages go back to the buddy
// (straight to the free lists in the model; the kernel frees them as pages).
void PhysMem::release_freepages(CompactControl& cc) {
  for (unsigned o = 0; o < kNrPageOrders; ++o) {
    for (const Pfn p : cc.freepages[o]) split_large_buddy(*cc.zone, p, o, false);
    cc.freepages[o].clear();
  }
  cc.nr_freepages = 0;
}

// mirrors compact_zone()
int PhysMem::compact_zone(CompactControl& cc) {
  Zone& z = *cc.zone;
  // Allocation can already succeed: nothing to do.
  if (zone_watermark_ok(z, cc.order, z.wmark_pages(cc.alloc_flags & ALLOC_WMARK_MASK), cc.highest_zoneidx,
                        cc.alloc_flags, z.nr_free_pages)) {
    return COMPACT_SUCCESS;
  }
  if (!compaction_suitable(z, cc.order, cc.highest_zoneidx, z.nr_free_pages, true)) return COMPACT_SKIPPED;
  cc.migrate_pfn = z.zone_start_pfn;
  cc.free_pfn = pageblock_start_pfn(z.zone_end_pfn - 1);
  Pfn last_migrated_pfn = kNoPfn;
  int ret = COMPACT_CONTINUE;
  while ((ret = compact_finished(cc)) == COMPACT_CONTINUE) {
    if (isolate_migratepages(cc)) {
      last_migrated_pfn = std::max(z.zone_start_pfn, pageblock_start_pfn(cc.migrate_pfn - 1));
      const int err = migrate_isolated(cc);
      // -ENOMEM when the scanners have not met: stop here (COMPACT_CONTENDED).
      if (err == -ENOMEM && (cc.free_pfn >> kPageblockOrder) > (cc.migrate_pfn >> kPageblockOrder)) {
        ret = COMPACT_CONTENDED;
        break;
      }
    }
    // check_drain: past the order-aligned block migrated from, flush this
    // CPU's pcp lists so the freed pages merge (lru_add_drain_cpu_zone()).
    if (cc.order > 0 && last_migrated_pfn != kNoPfn &&
        last_migrated_pfn < (cc.migrate_pfn & ~((Pfn{1} << cc.order) - 1))) {
      drain_pages_zone(cc.cpu, z);
      last_migrated_pfn = kNoPfn;
    }
  }
  release_freepages(cc);
  stats_.compact_migrate_scanned += cc.total_migrate_scanned;
  stats_.compact_free_scanned += cc.total_free_scanned;
  return ret;
}

// mirrors try_to_compact_pages(): compact each eligible zone, highest first,
// until one says the allocation should succeed. Without owners nothing can
// migrate, so the model skips compaction (COMPACT_SKIPPED).
int PhysMem::try_to_compact_pages(Gfp gfp, unsigned order, unsigned alloc_flags, unsigned highest_zoneidx,
                                  int prio, CpuId cpu) {
  if (!(gfp & __GFP_IO) || owners_ == nullptr) return COMPACT_SKIPPED;  // gfp_compaction_allowed()
  int rc = COMPACT_SKIPPED;
  for (int zi = static_cast<int>(highest_zoneidx); zi >= 0; --zi) {
    Zone& z = zones_[static_cast<unsigned>(zi)];
    if (!z.populated()) continue;
    // compaction_deferred() would go here: deferral is not modelled.
    CompactControl cc;  // compact_zone_order()
    cc.zone = &z;
    cc.order = order;
    cc.gfp = gfp;
    cc.migratetype = gfp_migratetype(gfp);
    cc.alloc_flags = alloc_flags;
    cc.highest_zoneidx = highest_zoneidx;
    cc.async = prio == COMPACT_PRIO_ASYNC;
    cc.whole_zone = true;  // no cached scanner positions: every run covers the zone
    cc.ignore_block_suitable = prio == MIN_COMPACT_PRIORITY;
    cc.cpu = cpu;
    const int status = compact_zone(cc);
    rc = std::max(rc, status);
    if (status == COMPACT_SUCCESS) break;  // the allocation should succeed
    // defer_compaction() after a complete sync run would go here.
  }
  return rc;
}

// mirrors __alloc_pages_direct_compact()
Pfn PhysMem::alloc_pages_direct_compact(Gfp gfp, unsigned order, unsigned alloc_flags,
                                        unsigned highest_zoneidx, unsigned mt, CpuId cpu, int prio,
                                        int& compact_result) {
  if (order == 0) return kNoPfn;
  compact_result = try_to_compact_pages(gfp, order, alloc_flags, highest_zoneidx, prio, cpu);
  if (compact_result == COMPACT_SKIPPED) return kNoPfn;
  ++stats_.compact_stall;  // compaction ran in at least one zone
  const Pfn page = get_page_from_freelist(gfp, order, alloc_flags, highest_zoneidx, mt, cpu);
  if (page != kNoPfn) {
    ++stats_.compact_success;
    return page;
  }
  ++stats_.compact_fail;
  return kNoPfn;
}

// start_isolate_page_range() / undo_isolate_page_range() for the CMA area:
// the pageblocks over [s, e) (widened to whole MAX_PAGE_ORDER blocks inside
// the area, so no free block straddles the edge) become MIGRATE_ISOLATE, their
// free pages leave NR_FREE_PAGES and nothing is allocated from them; undoing
// gives them back to MIGRATE_CMA and frees their free blocks again so they merge.
void PhysMem::cma_isolate(Pfn s, Pfn e, bool isolate) {
  constexpr Pfn kMaxBlock = Pfn{1} << kMaxPageOrder;
  const Pfn start = std::max(s & ~(kMaxBlock - 1), cma_.start);
  const Pfn end = std::min(static_cast<Pfn>((std::uint64_t{e} + kMaxBlock - 1) & ~std::uint64_t{kMaxBlock - 1}), cma_.end);
  Zone& z = zone_for(start);
  std::vector<std::pair<Pfn, unsigned>> free_blocks;
  for (Pfn p = start; p < end;) {
    const std::uint8_t b = frames_[p];
    if (!is_free_head(b)) {
      ++p;
      continue;
    }
    const unsigned o = free_head_order(b);
    const unsigned mt = pageblock_migratetype(p);
    del_from_free_list(z, p, o, mt);
    account_freepages(z, -(std::int64_t{1} << o), mt);
    free_blocks.emplace_back(p, o);
    p += Pfn{1} << o;
  }
  for (Pfn p = start; p < end; p += kPageblockNrPages) {
    pageblocks_[p >> kPageblockOrder] = isolate ? MIGRATE_ISOLATE : MIGRATE_CMA;
  }
  for (const auto& [p, o] : free_blocks) split_large_buddy(z, p, o, false);
}

// mirrors __alloc_contig_migrate_range() for [s, e) of the isolated CMA
// range, after drain_all_pages(): every movable block that starts in the
// range, compound ones whole (alloc_contig mode), goes to a destination
// allocated as alloc_migration_target() does (the isolated pageblocks cannot
// provide one). The kernel would first reclaim clean page-cache pages of the
// range (reclaim_clean_pages_from_list()); the owners' interface reclaims no
// particular page, so the model migrates them too.
int PhysMem::cma_migrate_range(Pfn s, Pfn e, Pfn& busy_pfn) {
  for (Pfn p = s; p < e;) {
    const std::uint8_t b = frames_[p];
    if (is_free_head(b)) {
      p += Pfn{1} << free_head_order(b);
      continue;
    }
    if (!is_movable_kind(static_cast<FrameKind>(b))) {
      ++p;
      continue;
    }
    const unsigned order = movable_block_order(p);
    if (p == s && order == 0) {
      // The tail of a movable block that starts below the range: the kernel
      // cannot isolate a tail page, so the range fails.
      for (unsigned o = 1; o <= kMaxPageOrder; ++o) {
        const Pfn h = s & ~((Pfn{1} << o) - 1);
        if (h != s && movable_block_order(h) == o && is_movable_kind(static_cast<FrameKind>(frames_[h]))) {
          busy_pfn = s;
          return -EBUSY;
        }
      }
    }
    // alloc_migration_target(): the cma_alloc() gfp (GFP_KERNEL) as
    // __alloc_contig_verify_gfp_mask() makes it, movable; THPs as GFP_TRANSHUGE.
    Gfp gfp = (GFP_KERNEL & (__GFP_IO | __GFP_FS | __GFP_RECLAIM)) | __GFP_MOVABLE;
    if (order > 0) gfp = (gfp & ~__GFP_RECLAIM) | GFP_TRANSHUGE;
    if (zone_of(p) == ZONE_NORMAL) gfp |= __GFP_HIGHMEM;
    const auto kind = static_cast<FrameKind>(b);
    const Result<Pfn> dst = alloc_pages(gfp, order, 0, kind);
    if (!dst.ok()) {
      busy_pfn = p;
      return -ENOMEM;  // migrate_pages() bails out; so does cma_alloc()
    }
    // alloc_pages() tagged the destination; migrate_block() tags it again.
    account_block(dst.value, order, static_cast<std::uint8_t>(kind), false);
    --stats_.pgalloc;
    if (frames_[p] != b || movable_block_order(p) != order) {
      // The nested allocation moved or freed this block: give the
      // destination back and look at p again.
      set_frames(dst.value, Pfn{1} << order, static_cast<std::uint8_t>(FrameKind::FreeTail));
      split_large_buddy(zone_for(dst.value), dst.value, order, false);
      continue;
    }
    set_frames(dst.value, Pfn{1} << order, static_cast<std::uint8_t>(FrameKind::FreeTail));
    if (!migrate_block(p, dst.value, order, 0)) {
      split_large_buddy(zone_for(dst.value), dst.value, order, false);
      busy_pfn = p;
      return -EBUSY;
    }
    stats_.cma_migrated += Pfn{1} << order;
    p += Pfn{1} << order;
  }
  return 0;
}

}  // namespace exmem::model::phys
