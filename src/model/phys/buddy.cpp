// phys/: physical memory of the model (see physmem.hpp for what the folder owns).
// buddy.cpp: the buddy allocator core of mm/page_alloc.c as of Linux 6.15,
// unchanged through 6.18: free lists, merging, expand, and the __rmqueue()
// fallback ladder (native list -> CMA -> claim a foreign pageblock -> steal)
// with enum rmqueue_mode, which came with "mm: page_alloc: speed up
// fallbacks in rmqueue_bulk()" (Johannes Weiner), merged during the 6.15 rcs
// and backported to 6.14.y.
#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "model/phys/physmem.hpp"

namespace exmem::model::phys {

namespace {
inline Pfn pfn_plus(Pfn pfn, std::uint64_t n) { return static_cast<Pfn>(pfn + n); }
inline Pfn pageblock_start_pfn(Pfn pfn) { return pfn & ~(kPageblockNrPages - 1); }
}  // namespace

// mirrors __add_to_free_list() and set_buddy_order()
void PhysMem::add_to_free_list(Zone& z, Pfn pfn, unsigned order, unsigned mt, bool tail) {
  FreeList& list = z.free_area[order][mt];
  if (tail) {
    lists_.add_tail(list, pfn);
  } else {
    lists_.add_head(list, pfn);
  }
  ++z.nr_free[order];
  frames_[pfn] = free_head_byte(order);
}

// mirrors __del_page_from_free_list(); the head becomes an ordinary free frame
void PhysMem::del_from_free_list(Zone& z, Pfn pfn, unsigned order, unsigned mt) {
  lists_.remove(z.free_area[order][mt], pfn);
  --z.nr_free[order];
  frames_[pfn] = static_cast<std::uint8_t>(FrameKind::FreeTail);
}

// mirrors move_to_free_list(): list_move_tail() and the accounting
void PhysMem::move_to_free_list(Zone& z, Pfn pfn, unsigned order, unsigned old_mt,
                                unsigned new_mt) {
  lists_.remove(z.free_area[order][old_mt], pfn);
  lists_.add_tail(z.free_area[order][new_mt], pfn);
  const auto nr = static_cast<std::int64_t>(1) << order;
  account_freepages(z, -nr, old_mt);
  account_freepages(z, nr, new_mt);
}

// mirrors __free_one_page(): merge with free buddies, then add to the head of
// the list, or to its tail when FPI_TO_TAIL or buddy_merge_likely().
void PhysMem::free_one_page_core(Zone& z, Pfn pfn, unsigned order, unsigned mt,
                                 bool fpi_to_tail) {
  account_freepages(z, std::int64_t{1} << order, mt);
  Pfn buddy_pfn = pfn;
  while (order < kMaxPageOrder) {
    unsigned buddy_mt = mt;
    buddy_pfn = pfn ^ (Pfn{1} << order);  // __find_buddy_pfn()
    if (!page_is_buddy(buddy_pfn, order) || zone_of(buddy_pfn) != zone_of(pfn)) break;
    if (order >= kPageblockOrder) {
      // Do not merge free pages of a pageblock without fallbacks with a normal one.
      buddy_mt = pageblock_migratetype(buddy_pfn);
      if (mt != buddy_mt &&
          (!migratetype_is_mergeable(mt) || !migratetype_is_mergeable(buddy_mt))) {
        break;
      }
    }
    del_from_free_list(z, buddy_pfn, order, buddy_mt);
    if (buddy_mt != mt) {
      // Match the buddy type, so that expand() later puts sub-blocks right.
      change_pageblock_range(buddy_pfn, order, mt);
    }
    pfn &= buddy_pfn;
    ++order;
  }
  bool to_tail = fpi_to_tail;
  if (!to_tail && order < kMaxPageOrder - 1) {
    // mirrors buddy_merge_likely(): is the next-higher buddy already free?
    const Pfn higher = buddy_pfn & pfn;
    const Pfn higher_buddy = higher ^ (Pfn{1} << (order + 1));
    to_tail = page_is_buddy(higher_buddy, order + 1) && zone_of(higher_buddy) == zone_of(higher);
  }
  add_to_free_list(z, pfn, order, mt, to_tail);
}

// mirrors split_large_buddy(): blocks above pageblock order are freed one
// pageblock at a time, each with its own pageblock's migratetype.
void PhysMem::split_large_buddy(Zone& z, Pfn pfn, unsigned order, bool fpi_to_tail) {
  const Pfn end = pfn_plus(pfn, std::uint64_t{1} << order);
  const unsigned step = std::min(order, kPageblockOrder);
  do {
    free_one_page_core(z, pfn, step, pageblock_migratetype(pfn), fpi_to_tail);
    pfn = pfn_plus(pfn, std::uint64_t{1} << step);
  } while (pfn != end);
}

// mirrors expand(): hand the upper halves back to the free lists
std::uint64_t PhysMem::expand(Zone& z, Pfn pfn, unsigned low, unsigned high, unsigned mt) {
  std::uint64_t nr_added = 0;
  while (high > low) {
    --high;
    const Pfn size = Pfn{1} << high;
    add_to_free_list(z, pfn + size, high, mt, false);
    nr_added += size;
  }
  return nr_added;
}

// mirrors page_del_and_expand()
void PhysMem::page_del_and_expand(Zone& z, Pfn pfn, unsigned low, unsigned high, unsigned mt) {
  auto nr_pages = static_cast<std::int64_t>(std::uint64_t{1} << high);
  del_from_free_list(z, pfn, high, mt);
  nr_pages -= static_cast<std::int64_t>(expand(z, pfn, low, high, mt));
  account_freepages(z, -nr_pages, mt);
}

// mirrors __rmqueue_smallest(): the first block of the smallest order that fits
Pfn PhysMem::rmqueue_smallest(Zone& z, unsigned order, unsigned mt) {
  for (unsigned current = order; current < kNrPageOrders; ++current) {
    const FreeList& list = z.free_area[current][mt];
    if (list.empty()) continue;
    const Pfn pfn = list.head;  // get_page_from_free_area()
    page_del_and_expand(z, pfn, order, current, mt);
    return pfn;
  }
  return kNoPfn;
}

// mirrors change_pageblock_range()
void PhysMem::change_pageblock_range(Pfn pfn, unsigned order, unsigned mt) {
  const std::uint64_t nr_blocks =
      order >= kPageblockOrder ? (std::uint64_t{1} << (order - kPageblockOrder)) : 1;
  const std::size_t first = pfn >> kPageblockOrder;
  for (std::uint64_t i = 0; i < nr_blocks; ++i) {
    pageblocks_[first + i] = static_cast<std::uint8_t>(mt);
  }
}

namespace {
// mirrors should_try_claim_block()
bool should_try_claim_block(unsigned order, unsigned start_mt) {
  if (order >= kPageblockOrder) return true;
  if (order >= kPageblockOrder / 2) return true;
  if (start_mt == MIGRATE_RECLAIMABLE || start_mt == MIGRATE_UNMOVABLE) return true;
  return false;  // page_group_by_mobility_disabled is false on any machine modelled
}
}  // namespace

// mirrors find_suitable_fallback(): -1 nothing at this order, -2 claim refused
int PhysMem::find_suitable_fallback(const Zone& z, unsigned order, unsigned mt,
                                    bool claimable) const {
  if (claimable && !should_try_claim_block(order, mt)) return -2;
  if (z.nr_free[order] == 0) return -1;
  for (const Migratetype fallback : kFallbacks[mt]) {
    if (!z.free_area[order][fallback].empty()) return fallback;
  }
  return -1;
}

// mirrors prep_move_freepages_block(): count free and movable pages of a block
bool PhysMem::prep_move_freepages_block(const Zone& z, Pfn pfn, Pfn& start,
                                        std::uint64_t* num_free,
                                        std::uint64_t* num_movable) const {
  start = pageblock_start_pfn(pfn);
  const Pfn end = start + kPageblockNrPages;
  if (!z.spans(start) || !z.spans(end - 1)) return false;
  if (num_free != nullptr) {
    *num_free = 0;
    *num_movable = 0;
    for (Pfn p = start; p < end;) {
      const std::uint8_t b = frames_[p];
      if (is_free_head(b)) {
        const Pfn nr = Pfn{1} << free_head_order(b);
        *num_free += nr;
        p += nr;
        continue;
      }
      // PageLRU() || page_has_movable_ops(): the model's movable pages are User.
      if (b == static_cast<std::uint8_t>(FrameKind::User)) ++*num_movable;
      ++p;
    }
  }
  return true;
}

// mirrors __move_freepages_block()
std::uint64_t PhysMem::move_freepages_block(Zone& z, Pfn start, unsigned old_mt,
                                            unsigned new_mt) {
  std::uint64_t moved = 0;
  const Pfn end = start + kPageblockNrPages;
  for (Pfn p = start; p < end;) {
    const std::uint8_t b = frames_[p];
    if (!is_free_head(b)) {
      ++p;
      continue;
    }
    const unsigned order = free_head_order(b);
    move_to_free_list(z, p, order, old_mt, new_mt);
    p += Pfn{1} << order;
    moved += std::uint64_t{1} << order;
  }
  return moved;
}

// mirrors boost_watermark()
bool PhysMem::boost_watermark(Zone& z) {
  if (config_.watermark_boost_factor == 0) return false;
  if (std::uint64_t{kPageblockNrPages} * 4 > z.managed_pages) return false;
  std::uint64_t max_boost = z.watermark[WMARK_HIGH] * config_.watermark_boost_factor / 10000;
  if (max_boost == 0) return false;
  max_boost = std::max<std::uint64_t>(kPageblockNrPages, max_boost);
  z.watermark_boost = std::min(z.watermark_boost + kPageblockNrPages, max_boost);
  return true;
}

// mirrors try_to_claim_block(): take the whole pageblock for start_type when the
// block is large, or when free + compatible pages are at least half the block.
Pfn PhysMem::try_to_claim_block(Zone& z, Pfn page, unsigned current_order, unsigned order,
                                unsigned start_type, unsigned block_type,
                                unsigned alloc_flags) {
  if (current_order >= kPageblockOrder) {
    del_from_free_list(z, page, current_order, block_type);
    account_freepages(z, -(std::int64_t{1} << current_order), block_type);
    change_pageblock_range(page, current_order, start_type);
    const std::uint64_t nr_added = expand(z, page, order, current_order, start_type);
    account_freepages(z, static_cast<std::int64_t>(nr_added), start_type);
    return page;
  }
  if (boost_watermark(z) && (alloc_flags & ALLOC_KSWAPD)) z.boosted_watermark = true;

  Pfn start = 0;
  std::uint64_t free_pages = 0;
  std::uint64_t movable_pages = 0;
  if (!prep_move_freepages_block(z, page, start, &free_pages, &movable_pages)) return kNoPfn;

  std::uint64_t alike_pages = 0;
  if (start_type == MIGRATE_MOVABLE) {
    alike_pages = movable_pages;
  } else if (block_type == MIGRATE_MOVABLE) {
    // Unmovable/reclaimable falling back to a movable block: every non-movable
    // page counts as compatible.
    alike_pages = kPageblockNrPages - (free_pages + movable_pages);
  }
  if (free_pages + alike_pages >= (kPageblockNrPages >> 1)) {
    move_freepages_block(z, start, block_type, start_type);
    pageblocks_[start >> kPageblockOrder] = static_cast<std::uint8_t>(start_type);
    return rmqueue_smallest(z, order, start_type);
  }
  return kNoPfn;
}

// mirrors __rmqueue_claim(): scan foreign lists from the highest order down
Pfn PhysMem::rmqueue_claim(Zone& z, unsigned order, unsigned mt, unsigned alloc_flags) {
  unsigned min_order = order;
  if (order < kPageblockOrder && (alloc_flags & ALLOC_NOFRAGMENT)) min_order = kPageblockOrder;
  for (int current = static_cast<int>(kMaxPageOrder); current >= static_cast<int>(min_order);
       --current) {
    const auto cur = static_cast<unsigned>(current);
    const int fallback_mt = find_suitable_fallback(z, cur, mt, true);
    if (fallback_mt == -1) continue;
    if (fallback_mt == -2) break;
    const auto block_type = static_cast<unsigned>(fallback_mt);
    const Pfn page = z.free_area[cur][block_type].head;
    const Pfn got = try_to_claim_block(z, page, cur, order, mt, block_type, alloc_flags);
    if (got != kNoPfn) {
      ++stats_.extfrag_claims;  // trace_mm_page_alloc_extfrag()
      return got;
    }
  }
  return kNoPfn;
}

// mirrors __rmqueue_steal(): the smallest foreign block, pageblock unchanged
Pfn PhysMem::rmqueue_steal(Zone& z, unsigned order, unsigned mt) {
  for (unsigned current = order; current < kNrPageOrders; ++current) {
    const int fallback_mt = find_suitable_fallback(z, current, mt, false);
    if (fallback_mt == -1) continue;
    const auto block_type = static_cast<unsigned>(fallback_mt);
    const Pfn page = z.free_area[current][block_type].head;
    page_del_and_expand(z, page, order, current, block_type);
    ++stats_.extfrag_steals;
    return page;
  }
  return kNoPfn;
}

// mirrors __rmqueue(): CMA balancing, then native, CMA, claim, steal; `mode`
// remembers the step that last worked across one rmqueue_bulk() batch.
Pfn PhysMem::rmqueue_core(Zone& z, unsigned order, unsigned mt, unsigned alloc_flags,
                          RmqueueMode& mode) {
  if ((alloc_flags & ALLOC_CMA) && z.nr_free_cma > z.nr_free_pages / 2) {
    // Balance movable allocations between regular and CMA areas.
    const Pfn page = rmqueue_smallest(z, order, MIGRATE_CMA);
    if (page != kNoPfn) {
      ++stats_.cma_fallbacks;
      return page;
    }
  }
  Pfn page = kNoPfn;
  switch (mode) {
    case RmqueueMode::Normal:
      page = rmqueue_smallest(z, order, mt);
      if (page != kNoPfn) return page;
      [[fallthrough]];
    case RmqueueMode::Cma:
      if (alloc_flags & ALLOC_CMA) {
        page = rmqueue_smallest(z, order, MIGRATE_CMA);  // __rmqueue_cma_fallback()
        if (page != kNoPfn) {
          ++stats_.cma_fallbacks;
          mode = RmqueueMode::Cma;
          return page;
        }
      }
      [[fallthrough]];
    case RmqueueMode::Claim:
      page = rmqueue_claim(z, order, mt, alloc_flags);
      if (page != kNoPfn) {
        // The claimed block replenished the native list.
        mode = RmqueueMode::Normal;
        return page;
      }
      [[fallthrough]];
    case RmqueueMode::Steal:
      if (!(alloc_flags & ALLOC_NOFRAGMENT)) {
        page = rmqueue_steal(z, order, mt);
        if (page != kNoPfn) {
          mode = RmqueueMode::Steal;
          return page;
        }
      }
  }
  return kNoPfn;
}

// mirrors reserve_highatomic_pageblock(): after a high-order atomic allocation,
// set aside its pageblock (up to 1% of the zone) for later ones; none at all
// in a zone whose 1% is less than a pageblock (under 200 MiB), since "mm:
// page_alloc: enforce minimum zone size to do high atomic reserves" (6.8).
void PhysMem::reserve_highatomic_pageblock(Zone& z, Pfn pfn, unsigned order) {
  if (z.managed_pages / 100 < kPageblockNrPages) return;
  const std::uint64_t max_managed =
      ((z.managed_pages / 100) + kPageblockNrPages - 1) / kPageblockNrPages * kPageblockNrPages;
  if (z.nr_reserved_highatomic >= max_managed) return;
  const unsigned mt = pageblock_migratetype(pfn);
  if (!migratetype_is_mergeable(mt)) return;
  if (order < kPageblockOrder) {
    Pfn start = 0;
    if (!prep_move_freepages_block(z, pfn, start, nullptr, nullptr)) return;
    move_freepages_block(z, start, mt, MIGRATE_HIGHATOMIC);
    pageblocks_[start >> kPageblockOrder] = MIGRATE_HIGHATOMIC;
    z.nr_reserved_highatomic += kPageblockNrPages;
  } else {
    change_pageblock_range(pfn, order, MIGRATE_HIGHATOMIC);
    z.nr_reserved_highatomic += std::uint64_t{1} << order;
  }
  ++stats_.highatomic_reserved;
}

// mirrors unreserve_highatomic_pageblock(): when an allocation is about to
// fail, give a highatomic pageblock (the first free highatomic block found,
// lowest order first) to the allocation's migratetype. Without force, each
// zone keeps its last reserved pageblock.
bool PhysMem::unreserve_highatomic_pageblock(unsigned highest_zoneidx, unsigned mt, bool force) {
  for (int zi = static_cast<int>(highest_zoneidx); zi >= 0; --zi) {
    Zone& z = zones_[static_cast<unsigned>(zi)];
    if (!z.populated()) continue;
    // Preserve at least one pageblock unless memory pressure is really high.
    if (!force && z.nr_reserved_highatomic <= kPageblockNrPages) continue;
    for (unsigned order = 0; order < kNrPageOrders; ++order) {
      const FreeList& list = z.free_area[order][MIGRATE_HIGHATOMIC];
      if (list.empty()) continue;
      const Pfn page = list.head;  // get_page_from_free_area()
      const std::uint64_t size =
          std::min<std::uint64_t>(std::max<std::uint64_t>(kPageblockNrPages, std::uint64_t{1} << order),
                                  z.nr_reserved_highatomic);
      z.nr_reserved_highatomic -= size;
      // Convert to the allocation's migratetype, bypassing the claim heuristics.
      std::uint64_t moved = 0;
      if (order < kPageblockOrder) {
        Pfn start = 0;
        if (!prep_move_freepages_block(z, page, start, nullptr, nullptr)) continue;
        moved = move_freepages_block(z, start, MIGRATE_HIGHATOMIC, mt);
        pageblocks_[start >> kPageblockOrder] = static_cast<std::uint8_t>(mt);
      } else {
        move_to_free_list(z, page, order, MIGRATE_HIGHATOMIC, mt);
        change_pageblock_range(page, order, mt);
        moved = 1;
      }
      if (moved > 0) {
        ++stats_.highatomic_unreserved;
        return true;
      }
    }
  }
  return false;
}

}  // namespace exmem::model::phys
