// phys/: physical memory of the model (see physmem.hpp for what the folder owns).
// physmem.cpp: boot (e820 layout, memblock reservations, memblock_free_all()),
// the allocation entry points (__alloc_pages(), get_page_from_freelist(),
// rmqueue()), the free path, CMA, and the invariant check.
#include "model/phys/physmem.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <stdexcept>

namespace exmem::model::phys {

namespace {
constexpr Pfn kDma32EndPfn = static_cast<Pfn>((4 * GiB) >> kPageShift);
constexpr std::uint64_t kMemmapBytesPerFrame = 64;  // sizeof(struct page)

Pfn round_up(Pfn v, Pfn a) { return static_cast<Pfn>((std::uint64_t{v} + a - 1) / a * a); }
Pfn round_down(Pfn v, Pfn a) { return v / a * a; }
}  // namespace

PhysMem::PhysMem(const PhysConfig& config)
    : config_(config), lists_(static_cast<std::size_t>(config.ram_bytes >> 22) + 1024) {
  if (config_.cpus == 0 || config_.cpus > 4096) {
    throw std::invalid_argument(
        fmt::format("cpus = {}: expected a number of CPUs from 1 to 4096", config_.cpus));
  }
  layout_ram();
  setup_zones();
}

RamLayout plan_ram_layout(const PhysConfig& c, std::string_view cma_parts) {
  RamLayout l;
  const std::uint64_t ram = c.ram_bytes;
  if (ram < 64 * MiB || ram > 8 * TiB || ram % (2 * MiB) != 0) {
    l.problem = fmt::format("ram = {} bytes: expected a multiple of 2 MiB from 64 MiB to 8 TiB", ram);
    return l;
  }
  const std::uint64_t hs = c.pci_hole_start;
  const std::uint64_t he = c.pci_hole_end;
  if (hs % (2 * MiB) != 0 || he % (2 * MiB) != 0 || hs >= he || he > 4 * GiB || hs < 256 * MiB) {
    l.problem = fmt::format(
        "PCI hole [{:#x}, {:#x}): expected 2 MiB aligned bounds with 256 MiB <= start < end <= 4 GiB", hs, he);
    return l;
  }
  const bool above_hole = ram > hs;
  if (above_hole) {
    l.ram.push_back({0, bytes_to_pfn(hs)});
    l.ram.push_back({bytes_to_pfn(he), bytes_to_pfn(he + (ram - hs))});
  } else {
    l.ram.push_back({0, bytes_to_pfn(ram)});
  }
  const Pfn end_pfn = l.ram.back().end;

  // memblock reservations: the first 1 MiB, the kernel image, the memmap at
  // the top of RAM (memblock allocates top-down), and the CMA area under it.
  l.low_reserved_end = std::max<Pfn>(1, bytes_to_pfn(c.low_reserved_bytes));
  l.kernel_image = {bytes_to_pfn(c.kernel_image_start), bytes_to_pfn(c.kernel_image_start + c.kernel_image_bytes)};
  if (l.kernel_image.end > l.ram.front().end || l.kernel_image.start < l.low_reserved_end) {
    l.problem = fmt::format(
        "the kernel image ({} from {}) is not inside the first RAM range above the low {}: that range ends at {}",
        format_size(c.kernel_image_bytes), format_size(c.kernel_image_start), format_size(c.low_reserved_bytes),
        format_size(pfn_to_bytes(l.ram.front().end)));
    return l;
  }
  Pfn top = end_pfn;
  if (c.reserve_memmap) {
    const Pfn memmap = round_up(
        static_cast<Pfn>((std::uint64_t{bytes_to_pfn(ram)} * kMemmapBytesPerFrame + kPageSize - 1) / kPageSize),
        kPageblockNrPages);
    if (memmap > end_pfn - l.ram.back().start || end_pfn - memmap < l.kernel_image.end) {
      l.problem = fmt::format("the memmap ({}, {} bytes a page of RAM) does not fit {}",
                              format_size(pfn_to_bytes(memmap)), kMemmapBytesPerFrame,
                              above_hole ? fmt::format("in the {} of RAM above the PCI hole",
                                                       format_size(pfn_to_bytes(l.ram.back().size())))
                                         : "between the kernel image and the end of RAM");
      return l;
    }
    top = end_pfn - memmap;
    l.memmap = {top, end_pfn};
  }
  if (c.cma_bytes != 0) {
    const Pfn cma_pages = round_up(bytes_to_pfn(c.cma_bytes), kPageblockNrPages);
    const Pfn cma_end = round_down(top, kPageblockNrPages);
    if (cma_pages >= cma_end || cma_end - cma_pages < l.ram.back().start ||
        cma_end - cma_pages < l.kernel_image.end) {
      l.problem = fmt::format("the CMA area ({}{}{}) does not fit under the memmap, above {}",
                              format_size(pfn_to_bytes(cma_pages)), cma_parts.empty() ? "" : ": ", cma_parts,
                              above_hole ? "the PCI hole" : "the kernel image");
      return l;
    }
    l.cma = {cma_end - cma_pages, cma_end};
  }
  return l;
}

void PhysMem::layout_ram() {
  const RamLayout l = plan_ram_layout(config_);
  if (!l.problem.empty()) throw std::invalid_argument(l.problem);
  ram_ = l.ram;
  total_ram_pages_ = config_.ram_bytes >> kPageShift;
  const Pfn end_pfn = ram_.back().end;
  frames_ = ZeroedBytes(round_up(end_pfn, Pfn{1} << kMaxPageOrder));  // all FreeTail
  pageblocks_.assign(frames_.size() >> kPageblockOrder, MIGRATE_MOVABLE);
  pb_compound_.assign(pageblocks_.size(), 0);
  dma32_end_ = kDma32EndPfn;
  Pfn prev_end = 0;
  for (const PfnRange& r : ram_) {
    set_frames(prev_end, r.start - prev_end, static_cast<std::uint8_t>(FrameKind::Hole));
    prev_end = r.end;
  }
  set_frames(prev_end, static_cast<Pfn>(frames_.size()) - prev_end,
             static_cast<std::uint8_t>(FrameKind::Hole));

  reserved_.push_back({0, l.low_reserved_end});
  if (l.kernel_image.size() != 0) reserved_.push_back(l.kernel_image);
  if (l.memmap.size() != 0) reserved_.push_back(l.memmap);
  if (l.cma.size() != 0) {
    cma_ = l.cma;
    cma_bitmap_.assign((std::size_t{cma_.size()} + 63) / 64, 0);  // cma_activate_area()
    cma_busy_.assign(cma_bitmap_.size(), 0);
  }
  std::sort(reserved_.begin(), reserved_.end(),
            [](const PfnRange& a, const PfnRange& b) { return a.start < b.start; });
  for (const PfnRange& r : reserved_) {
    set_frames(r.start, r.size(), static_cast<std::uint8_t>(FrameKind::Reserved));
  }
}

void PhysMem::setup_zones() {
  const Pfn end_pfn = ram_.back().end;
  zones_[ZONE_DMA32].type = ZONE_DMA32;
  zones_[ZONE_DMA32].zone_start_pfn = 0;
  zones_[ZONE_DMA32].zone_end_pfn = std::min(end_pfn, dma32_end_);
  zones_[ZONE_NORMAL].type = ZONE_NORMAL;
  zones_[ZONE_NORMAL].zone_start_pfn = dma32_end_;
  zones_[ZONE_NORMAL].zone_end_pfn = std::max(end_pfn, dma32_end_);
  for (const PfnRange& r : ram_) {
    for (Pfn p = r.start; p < r.end;) {
      const unsigned zi = zone_of(p);
      const Pfn zend = std::min(r.end, zones_[zi].zone_end_pfn);
      zones_[zi].present_pages += zend - p;
      p = zend;
    }
  }

  // memblock_free_all(): every RAM range minus the reservations, in ascending
  // order, the largest naturally aligned blocks first, each to the list tail.
  std::vector<PfnRange> kept = reserved_;  // memblock-reserved, and the CMA area
  if (cma_.end != 0) kept.push_back(cma_);
  std::sort(kept.begin(), kept.end(),
            [](const PfnRange& a, const PfnRange& b) { return a.start < b.start; });
  for (const PfnRange& r : ram_) {
    Pfn p = r.start;
    for (const PfnRange& res : kept) {
      if (res.end <= p || res.start >= r.end) continue;
      if (res.start > p) free_boot_range(p, std::min(res.start, r.end));
      p = std::max(p, res.end);
    }
    if (p < r.end) free_boot_range(p, r.end);
  }
  // cma_activate_area() -> init_cma_reserved_pageblock(): each pageblock is
  // marked MIGRATE_CMA and freed (straight to the buddy in the model).
  for (Pfn p = cma_.start; p < cma_.end; p += kPageblockNrPages) {
    Zone& z = zone_for(p);
    pageblocks_[p >> kPageblockOrder] = MIGRATE_CMA;  // its frames are FreeTail already
    free_one_page_core(z, p, kPageblockOrder, MIGRATE_CMA, false);
    z.managed_pages += kPageblockNrPages;
    z.cma_pages += kPageblockNrPages;
  }
  kind_pages_[static_cast<unsigned>(FrameKind::Reserved)] = total_ram_pages_ - managed_pages();
  init_per_zone_wmark_min();
  for (Zone& z : zones_) setup_pcp(z);
}

// mirrors __free_pages_memory() -> memblock_free_pages() -> __free_pages_core()
void PhysMem::free_boot_range(Pfn start, Pfn end) {
  while (start < end) {
    unsigned order = start == 0 ? kMaxPageOrder
                                : std::min(kMaxPageOrder,
                                           static_cast<unsigned>(std::countr_zero(start)));
    while (std::uint64_t{start} + (std::uint64_t{1} << order) > end) --order;
    const Pfn nr = Pfn{1} << order;
    Zone& z = zone_for(start);  // frames are FreeTail (0) from the start
    split_large_buddy(z, start, order, true);  // FPI_TO_TAIL
    z.managed_pages += nr;
    start += nr;
  }
}

void PhysMem::count_kind(std::uint8_t b, Pfn count, bool add) {
  std::uint64_t& c = kind_pages_[b < kind_pages_.size() ? b : 0];
  if (add) {
    c += count;
  } else {
    c -= count;
  }
}

void PhysMem::account_block(Pfn pfn, unsigned order, std::uint8_t kind, bool add) {
  const Pfn nr = Pfn{1} << order;
  count_kind(kind, nr, add);
  const auto k = static_cast<FrameKind>(kind);
  if (k == FrameKind::PageCache) {
    std::uint64_t& f = file_pages_[zone_of(pfn)];
    f = add ? f + nr : f - nr;
  }
  if (order == 0 || !is_movable_kind(k)) return;
  if (add) {
    compound_.insert(pfn, order);
  } else if (!compound_.erase(pfn)) {
    return;
  }
  const std::size_t first = pfn >> kPageblockOrder;
  const std::size_t last = (pfn + nr - 1) >> kPageblockOrder;
  for (std::size_t b = first; b <= last; ++b) {
    pb_compound_[b] = static_cast<std::uint16_t>(add ? pb_compound_[b] + 1 : pb_compound_[b] - 1);
  }
}

unsigned PhysMem::movable_block_order(Pfn pfn) const {
  if (pb_compound_[pfn >> kPageblockOrder] == 0) return 0;
  const std::uint32_t order = compound_.find(pfn);
  return order == PfnMap::kAbsent ? 0 : order;
}

std::uint64_t PhysMem::zone_reclaimable_pages(unsigned z) const {
  // The fallback to the free pages ("ensure zones with sufficient free pages
  // are not skipped") is in the 2025 tree read; a revert was proposed in Aug 2025.
  if (file_pages_[z] != 0) return file_pages_[z];
  return static_cast<std::uint64_t>(std::max<std::int64_t>(0, zones_[z].nr_free_pages));
}

// mirrors rmqueue_buddy()
Pfn PhysMem::rmqueue_buddy(Zone& z, unsigned order, unsigned alloc_flags, unsigned mt) {
  Pfn page = kNoPfn;
  if (alloc_flags & ALLOC_HIGHATOMIC) page = rmqueue_smallest(z, order, MIGRATE_HIGHATOMIC);
  if (page == kNoPfn) {
    RmqueueMode mode = RmqueueMode::Normal;
    page = rmqueue_core(z, order, mt, alloc_flags, mode);
    // Failing now is worse than failing a high-order atomic allocation later.
    if (page == kNoPfn && (alloc_flags & (ALLOC_OOM | ALLOC_NON_BLOCK))) {
      page = rmqueue_smallest(z, order, MIGRATE_HIGHATOMIC);
    }
  }
  return page;
}

// mirrors rmqueue()
Pfn PhysMem::rmqueue(Zone& z, unsigned order, unsigned alloc_flags, unsigned mt, CpuId cpu) {
  Pfn page = kNoPfn;
  if (pcp_allowed_order(order)) page = rmqueue_pcplist(z, order, mt, alloc_flags, cpu);
  if (page == kNoPfn) page = rmqueue_buddy(z, order, alloc_flags, mt);
  if ((alloc_flags & ALLOC_KSWAPD) && z.boosted_watermark) {
    z.boosted_watermark = false;
    wakeup_kswapd(z, 0, z.type, cpu);
  }
  return page;
}

// mirrors get_page_from_freelist(): walk the zonelist from the highest allowed
// zone down; with ALLOC_NOFRAGMENT, retry once without it before giving up.
Pfn PhysMem::get_page_from_freelist(Gfp gfp, unsigned order, unsigned alloc_flags,
                                    unsigned highest_zoneidx, unsigned mt, CpuId cpu) {
  (void)gfp;
  while (true) {
    const bool no_fallback = (alloc_flags & ALLOC_NOFRAGMENT) != 0;
    for (int zi = static_cast<int>(highest_zoneidx); zi >= 0; --zi) {
      Zone& z = zones_[static_cast<unsigned>(zi)];
      if (!z.populated()) continue;
      if (!(alloc_flags & ALLOC_NO_WATERMARKS)) {
        bool ok = false;
        // Detect whether free pages are below the high watermark (pcp->high tuning).
        if (!z.below_high) {
          if (zone_watermark_fast(z, order, z.wmark_pages(WMARK_HIGH), highest_zoneidx,
                                  alloc_flags)) {
            ok = true;
          } else {
            z.below_high = true;
          }
        }
        if (!ok && !zone_watermark_fast(z, order, z.wmark_pages(alloc_flags & ALLOC_WMARK_MASK),
                                        highest_zoneidx, alloc_flags)) {
          continue;  // node_reclaim() is off by default
        }
      }
      const Pfn page = rmqueue(z, order, alloc_flags, mt, cpu);
      if (page != kNoPfn) {
        if ((alloc_flags & ALLOC_HIGHATOMIC) && order != 0) {
          reserve_highatomic_pageblock(z, page, order);
        }
        return page;
      }
    }
    if (!no_fallback) return kNoPfn;
    alloc_flags &= ~ALLOC_NOFRAGMENT;
  }
}

namespace {
// mirrors gfp_to_alloc_flags() (slow path) as in 6.18: ALLOC_HIGHATOMIC only
// for high-order requests that cannot reclaim, are not __GFP_NOMEMALLOC and
// have __GFP_HIGH (GFP_ATOMIC), since "mm/page_alloc: only set
// ALLOC_HIGHATOMIC for __GPF_HIGH allocations" (Cascardo, Aug 2025, in 6.18
// and backported to stable). 6.3 .. 6.17 gave it to every such request
// without __GFP_NOMEMALLOC (GFP_NOWAIT too), never to GFP_TRANSHUGE_LIGHT.
// The rt_or_dl_task() ALLOC_MIN_RESERVE of reclaiming callers is not modelled
// (the model has no scheduling classes).
unsigned gfp_to_alloc_flags(Gfp gfp, unsigned order) {
  unsigned flags = ALLOC_WMARK_MIN | ALLOC_CPUSET;
  if (gfp & __GFP_HIGH) flags |= ALLOC_MIN_RESERVE;
  if (gfp & __GFP_KSWAPD_RECLAIM) flags |= ALLOC_KSWAPD;
  if (!(gfp & __GFP_DIRECT_RECLAIM)) {
    // Not worth trying to allocate harder for __GFP_NOMEMALLOC even if it
    // cannot schedule.
    if (!(gfp & __GFP_NOMEMALLOC)) {
      flags |= ALLOC_NON_BLOCK;
      if (order > 0 && (flags & ALLOC_MIN_RESERVE)) flags |= ALLOC_HIGHATOMIC;
    }
    if (flags & ALLOC_MIN_RESERVE) flags &= ~ALLOC_CPUSET;
  }
  if (gfp_migratetype(gfp) == MIGRATE_MOVABLE) flags |= ALLOC_CMA;  // gfp_to_alloc_flags_cma()
  return flags;
}
}  // namespace

Result<Pfn> PhysMem::alloc_pages(Gfp gfp, unsigned order, CpuId cpu, FrameKind kind) {
  if (order > kMaxPageOrder || cpu >= config_.cpus || !is_allocated_kind(kind) ||
      (gfp & GFP_MOVABLE_MASK) == GFP_MOVABLE_MASK) {
    return Result<Pfn>::error(-EINVAL);
  }
  const unsigned mt = gfp_migratetype(gfp);
  const unsigned highest = gfp_zone(gfp);
  // prepare_alloc_pages() + alloc_flags_nofragment(): the fast path.
  unsigned alloc_flags = ALLOC_WMARK_LOW;
  if (mt == MIGRATE_MOVABLE) alloc_flags |= ALLOC_CMA;
  if (gfp & __GFP_KSWAPD_RECLAIM) alloc_flags |= ALLOC_KSWAPD;
  int preferred = -1;
  for (int zi = static_cast<int>(highest); zi >= 0; --zi) {
    if (zones_[static_cast<unsigned>(zi)].populated()) {
      preferred = zi;
      break;
    }
  }
  if (preferred == ZONE_NORMAL && zones_[ZONE_DMA32].populated()) alloc_flags |= ALLOC_NOFRAGMENT;
  Pfn page = get_page_from_freelist(gfp, order, alloc_flags, highest, mt, cpu);
  if (page == kNoPfn) {
    // __alloc_pages_slowpath() (slowpath.cpp), with the alloc_flags it starts
    // from (restart: gfp_to_alloc_flags()).
    page = alloc_pages_slowpath(gfp, order, gfp_to_alloc_flags(gfp, order), highest, mt, cpu);
  }
  if (page == kNoPfn) {
    ++stats_.pgalloc_fail;
    return Result<Pfn>::error(-ENOMEM);
  }
  const Pfn nr = Pfn{1} << order;
  set_frames(page, nr, static_cast<std::uint8_t>(kind));
  account_block(page, order, static_cast<std::uint8_t>(kind), true);
  ++stats_.pgalloc;
  return Result<Pfn>{page, 0};
}

int PhysMem::free_pages(Pfn pfn, unsigned order, CpuId cpu) {
  if (order > kMaxPageOrder || cpu >= config_.cpus || pfn >= frames_.size() ||
      (pfn & ((Pfn{1} << order) - 1)) != 0) {
    return -EINVAL;
  }
  const std::uint8_t b = frames_[pfn];
  if (b >= kFreeHeadBase || !is_allocated_kind(static_cast<FrameKind>(b)) ||
      b == static_cast<std::uint8_t>(FrameKind::CmaAllocated)) {
    return -EINVAL;  // bad_page(): not an allocated page
  }
  const Pfn nr = Pfn{1} << order;
  // Owners may tag parts of a block differently only via set_kind on the block.
  account_block(pfn, order, b, false);
  ++stats_.pgfree;
  if (pfn < cma_.end && pfn + nr > cma_.start) cma_pages_freed(pfn, nr, false);
  free_frozen_pages(pfn, order, cpu);
  return 0;
}

// mirrors __drain_all_pages(zone, false) -> drain_pages_zone() on every CPU
void PhysMem::drain_all_pages(Zone* zone) {
  for (Zone& z : zones_) {
    if (zone != nullptr && &z != zone) continue;
    for (PerCpuPages& pcp : z.pcp) {
      while (pcp.count > 0) {
        const int to_drain = std::min(pcp.count, pcp.batch << kPcpBatchScaleMax);
        free_pcppages_bulk(z, to_drain, pcp, 0);
      }
    }
  }
}

void PhysMem::set_page_owners(PageOwners* owners) {
  if (owners != owners_ && !cma_busy_.empty()) {
    // Without owners a movable page of the CMA area is marked busy as an
    // unmovable one is; with them it may migrate: the marks and the memo go.
    std::fill(cma_busy_.begin(), cma_busy_.end(), 0);
    cma_memo_.valid = false;
    cma_memo_.open.clear();
  }
  owners_ = owners;
}

void PhysMem::set_kind(Pfn pfn, unsigned order, FrameKind kind) {
  const Pfn nr = Pfn{1} << order;
  if (pfn >= frames_.size() || !is_allocated_kind(kind) ||
      !is_allocated_kind(static_cast<FrameKind>(frames_[pfn]))) {
    throw std::logic_error("set_kind: not an allocated block");
  }
  account_block(pfn, order, frames_[pfn], false);
  set_frames(pfn, nr, static_cast<std::uint8_t>(kind));
  account_block(pfn, order, static_cast<std::uint8_t>(kind), true);
  // A page that became movable may be migrated now: cma_alloc() no longer
  // counts it as always busy.
  if (is_movable_kind(kind) && pfn < cma_.end && pfn + nr > cma_.start) {
    cma_pages_freed(pfn, nr, false);
  }
}

// ---- CMA ---------------------------------------------------------------------

namespace {
// A frame alloc_contig_range() cannot take without migrating it: neither free
// in the buddy nor on a pcp list (which the drain empties). A movable one is
// migrated; any other makes the range fail as -EBUSY.
constexpr bool cma_frame_busy(std::uint8_t b) {
  return b != static_cast<std::uint8_t>(FrameKind::FreeTail) && !is_free_head(b) &&
         b != static_cast<std::uint8_t>(FrameKind::Pcp);
}

// Start positions (bit indices) of the ranges of nr bits that overlap [a, b).
PfnRange cma_starts_over(Pfn a, Pfn b, Pfn nr) { return {a >= nr ? a - nr + 1 : 0, b}; }

// Sorted, overlapping and touching ranges merged.
void merge_ranges(std::vector<PfnRange>& v) {
  std::sort(v.begin(), v.end(),
            [](const PfnRange& x, const PfnRange& y) { return x.start < y.start; });
  std::size_t n = 0;
  for (const PfnRange& r : v) {
    if (r.start >= r.end) continue;
    if (n > 0 && r.start <= v[n - 1].end) {
      v[n - 1].end = std::max(v[n - 1].end, r.end);
    } else {
      v[n++] = r;
    }
  }
  v.resize(n);
}

constexpr std::size_t kCmaMemoMaxOpen = 1024;  // past this many, the memo is dropped
}  // namespace

// mirrors find_next_bit() (set) / find_next_zero_bit() (!set): the first bit
// in [start, size) that is `set`, else size.
Pfn PhysMem::cma_find_next(Pfn start, Pfn size, bool set, bool busy) const {
  if (start >= size) return size;
  const std::uint64_t invert = set ? 0 : ~std::uint64_t{0};
  const std::size_t words = (std::size_t{size} + 63) / 64;
  auto word = [&](std::size_t w) {
    return ((busy ? cma_bitmap_[w] | cma_busy_[w] : cma_bitmap_[w]) ^ invert);
  };
  std::size_t w = start / 64;
  std::uint64_t x = word(w) & (~std::uint64_t{0} << (start % 64));
  while (x == 0) {
    if (++w >= words) return size;
    x = word(w);
  }
  return static_cast<Pfn>(
      std::min<std::uint64_t>(size, w * 64 + static_cast<unsigned>(std::countr_zero(x))));
}

// mirrors bitmap_find_next_zero_area_off(): the first index in [start, limit)
// with (index + align_offset) & align_mask == 0 whose nr bits are all clear; a
// value >= the bitmap's size when there is none (the kernel's has no limit:
// it is the bitmap's size).
Pfn PhysMem::cma_find_next_zero_area(Pfn start, Pfn limit, Pfn nr, Pfn align_mask,
                                     Pfn align_offset, bool busy) const {
  const Pfn size = cma_.size();
  limit = std::min(limit, size);
  for (;;) {
    // The range's first bit is clear, so a clear bit at or above limit ends it.
    const std::uint64_t zero = cma_find_next(start, limit, false, busy);
    if (zero >= limit) return size;
    const std::uint64_t index =
        ((zero + align_offset + align_mask) & ~std::uint64_t{align_mask}) - align_offset;
    if (index >= limit || index + nr > size) return size;
    const Pfn i = cma_find_next(static_cast<Pfn>(index), static_cast<Pfn>(index + nr), true, busy);
    if (i >= index + nr) return static_cast<Pfn>(index);
    start = i + 1;
  }
}

// mirrors bitmap_set() / bitmap_clear()
void PhysMem::cma_assign_bits(std::vector<std::uint64_t>& map, Pfn bit, Pfn nr, bool set) {
  for (Pfn b = bit; b < bit + nr;) {
    const unsigned shift = b % 64;
    const Pfn n = std::min<Pfn>(64 - shift, bit + nr - b);
    const std::uint64_t m = (n == 64 ? ~std::uint64_t{0} : ((std::uint64_t{1} << n) - 1)) << shift;
    std::uint64_t& word = map[b / 64];
    if (set) {
      word |= m;
    } else {
      word &= ~m;
    }
    b += n;
  }
}

// Freeing is the only way a busy page of the area stops being busy (set_kind()
// keeps it allocated; allocating and draining only make pages busier), so the
// marks of the freed pages go, and when a bit or mark of theirs was set (in
// cma_release(), the bitmap's), the ranges over them are opened again: the
// others keep the set bit that closed them.
void PhysMem::cma_pages_freed(Pfn pfn, Pfn count, bool bits_cleared) {
  const Pfn a = std::max(pfn, cma_.start) - cma_.start;
  const Pfn b = std::min<Pfn>(pfn + count, cma_.end) - cma_.start;
  if (a >= b) return;
  const bool marked = cma_find_next(a, b, true, true) < b;
  if (marked) cma_assign_bits(cma_busy_, a, b - a, false);
  if (!cma_memo_.valid || !(marked || bits_cleared)) return;
  if (cma_memo_.open.size() >= kCmaMemoMaxOpen) {
    cma_memo_.valid = false;
    cma_memo_.open.clear();
    return;
  }
  const PfnRange starts = cma_starts_over(a, b, cma_memo_.count);
  cma_memo_.open.push_back(starts);
  if (bits_cleared) cma_memo_.bitmap_floor = std::min(cma_memo_.bitmap_floor, starts.start);
}

// The kernel's loop: bitmap_find_next_zero_area_off() finds the lowest aligned
// range of clear bits from `start`; alloc_contig_range() then takes its pages
// or fails -EBUSY, and the search goes on after the failed range. The bits of
// a range handed out stay set until cma_release(), so ranges taken by earlier
// calls cost nothing, and with no clear range of the size left it fails at
// once (-ENOMEM).
//
// The model returns the same range as that loop, faster, by three rules:
// - Where the kernel retries from the next aligned range (start = bitmap_no +
//   mask + 1), the model skips past the highest busy page of the failed range:
//   every range that starts at or below that page and ends above it holds it
//   and would fail the same way.
// - A busy page found is marked in cma_busy_ until it is freed, and the search
//   skips marked pages as it skips handed-out ones. A page is marked only while
//   it is allocated, not by cma_alloc(), and cannot migrate: unmovable, or
//   movable while there are no owners to migrate it. free_pages() and
//   cma_release() clear the marks, set_kind() to a movable kind and
//   set_page_owners() too, and nothing else makes such a page free or
//   movable, so a marked page is always busy and a range holding one would
//   fail. (A pinned page is not marked: it may be unpinned by the next call.)
// - The memo (cma_memo_) of the last (count, align_order) searched: a search
//   that fails leaves every aligned range holding a set bit, so the next one
//   looks only at the ranges over pages freed since (and, after a success, at
//   those above the range handed out): every other range still holds a set
//   bit. A pcp range skipped after the drain (which sets no bit) drops the memo.
// So the first range that can be taken, and so the pfn returned, is the one
// the kernel's loop would take on the same state.
Result<Pfn> PhysMem::cma_alloc(Pfn count, unsigned align_order) {
  if (count == 0 || cma_.end == 0 || align_order > 20) return Result<Pfn>::error(-EINVAL);
  const Pfn maxno = cma_.size();
  // No clear range of count bits can exist: bitmap_find_next_zero_area_off() fails.
  if (count > maxno - cma_bitmap_weight_) return Result<Pfn>::error(-ENOMEM);
  const Pfn mask = (Pfn{1} << align_order) - 1;
  const Pfn offset = cma_.start & mask;  // cma_bitmap_aligned_offset()
  std::vector<PfnRange> windows;  // start positions to look at, ascending
  if (cma_memo_.valid && cma_memo_.count == count && cma_memo_.align_order == align_order) {
    windows = std::move(cma_memo_.open);
    merge_ranges(windows);
  } else {
    windows.push_back({0, maxno});
    cma_memo_.bitmap_floor = 0;
  }
  cma_memo_.valid = true;
  cma_memo_.count = count;
  cma_memo_.align_order = align_order;
  cma_memo_.open.clear();
  // cc.zone: a CMA area lies in one zone.
  Zone& zone = zone_for(cma_.start);
  // The kernel's first alloc_contig_range() call, whatever range it tries,
  // isolates it and drains the zone's pcp lists before it looks at a page;
  // so a call with any clear aligned range in the bitmap drains, even when
  // the model, knowing that range busy, skips it. (Each later call drains
  // again: the model drains at each range it tries, which adds nothing
  // unless a migration refilled a pcp list since.)
  // The lowest clear range is also the floor of the next searches: no clear
  // range of this size lies below it until bits are cleared, which lowers it.
  cma_memo_.bitmap_floor =
      cma_find_next_zero_area(cma_memo_.bitmap_floor, maxno, count, mask, offset, false);
  if (cma_memo_.bitmap_floor < maxno) drain_all_pages(&zone);
  Pfn start = 0;
  for (std::size_t wi = 0; wi < windows.size(); ++wi) {
    start = std::max(start, windows[wi].start);
    for (;;) {
      const Pfn bitmap_no =
          cma_find_next_zero_area(start, windows[wi].end, count, mask, offset, true);
      if (bitmap_no >= maxno) break;  // none starts in this window
      const Pfn s = cma_.start + bitmap_no;
      const Pfn e = s + count;
      Pfn busy = kNoPfn;
      bool movable = false;
      for (Pfn p = e; p > s;) {  // from the top: the highest busy page
        --p;
        const std::uint8_t b = frames_[p];
        if (!cma_frame_busy(b)) continue;
        if (is_movable_kind(static_cast<FrameKind>(b)) && owners_ != nullptr) {
          movable = true;  // alloc_contig_range() migrates it
          continue;
        }
        busy = p;
        break;
      }
      if (busy != kNoPfn) {
        cma_assign_bits(cma_busy_, busy - cma_.start, 1, true);
        start = busy - cma_.start + 1;  // the next aligned range above the busy page
        continue;
      }
      // alloc_contig_range(): isolate the pageblocks (only a range to migrate
      // from needs it here), drain, migrate. (The kernel would also migrate
      // the movable pages of a range that holds an unmovable one, before
      // failing it; the model tries only ranges without one.)
      if (movable) cma_isolate(s, e, true);
      drain_all_pages(&zone);
      if (movable) {
        Pfn failed = kNoPfn;
        const int err = cma_migrate_range(s, e, failed);
        bool clean = err == 0;
        for (Pfn p = s; p < e && clean; ++p) clean = !cma_frame_busy(frames_[p]);
        if (!clean) {
          cma_isolate(s, e, false);
          // Pinned pages can move later: nothing is marked, so the memo goes.
          cma_memo_.valid = false;
          cma_memo_.open.clear();
          if (err == -ENOMEM) return Result<Pfn>::error(-ENOMEM);  // cma_alloc() stops at once
          start = bitmap_no + mask + 1;  // the kernel's next try
          continue;
        }
      }
      // A page still on a pcp list after the drain fails test_pages_isolated():
      // -EBUSY, and the kernel tries the next range. (A pcp list holds no
      // page of the area unless a migration of this call refilled it.)
      bool pcp = false;
      for (Pfn p = s; p < e && !pcp; ++p) {
        pcp = frames_[p] == static_cast<std::uint8_t>(FrameKind::Pcp);
      }
      if (pcp) {
        if (movable) cma_isolate(s, e, false);  // undo_isolate_page_range()
        cma_memo_.valid = false;
        start = bitmap_no + mask + 1;
        continue;
      }
      // Taken: the ranges above it stay open for the next search.
      cma_memo_.open.push_back({bitmap_no + 1, windows[wi].end});
      cma_memo_.open.insert(cma_memo_.open.end(),
                            windows.begin() + static_cast<std::ptrdiff_t>(wi) + 1, windows.end());
      if (!cma_memo_.valid) cma_memo_.open.clear();
      // isolate_freepages_range(): take the free blocks covering [s, e) out of
      // the buddy; the parts of straddling blocks outside the range go back.
      Zone& z = zone_for(s);
      Pfn p = s;
      for (unsigned o = 0; o <= kMaxPageOrder; ++o) {  // the block that contains s
        const Pfn h = s & ~((Pfn{1} << o) - 1);
        if (is_free_head(frames_[h]) && free_head_order(frames_[h]) >= o &&
            h + (Pfn{1} << free_head_order(frames_[h])) > s) {
          p = h;
          break;
        }
      }
      std::vector<PfnRange> give_back;
      while (p < e) {
        const unsigned order = free_head_order(frames_[p]);
        const Pfn end = p + (Pfn{1} << order);
        const unsigned mt = pageblock_migratetype(p);
        del_from_free_list(z, p, order, mt);
        account_freepages(z, -(std::int64_t{1} << order), mt);
        if (p < s) give_back.push_back({p, s});
        if (end > e) give_back.push_back({e, end});
        p = end;
      }
      set_frames(s, count, static_cast<std::uint8_t>(FrameKind::CmaAllocated));
      count_kind(static_cast<std::uint8_t>(FrameKind::CmaAllocated), count, true);
      for (const PfnRange& r : give_back) {
        for (Pfn q = r.start; q < r.end;) {
          unsigned order = std::min(kMaxPageOrder, static_cast<unsigned>(std::countr_zero(q)));
          while (std::uint64_t{q} + (std::uint64_t{1} << order) > r.end) --order;
          set_frames(q, Pfn{1} << order, static_cast<std::uint8_t>(FrameKind::FreeTail));
          free_one_page_core(z, q, order, pageblock_migratetype(q), false);
          q += Pfn{1} << order;
        }
      }
      if (movable) cma_isolate(s, e, false);  // undo_isolate_page_range()
      cma_assign_bits(cma_bitmap_, bitmap_no, count, true);
      cma_bitmap_weight_ += count;
      ++stats_.pgalloc;
      return Result<Pfn>{s, 0};
    }
  }
  if (!cma_memo_.valid) cma_memo_.open.clear();
  // As the kernel reports it: -EBUSY when a clear range of the bitmap was
  // found busy, -ENOMEM when the bitmap has none (the floor, found above:
  // no bit was set since).
  return Result<Pfn>::error(cma_memo_.bitmap_floor < maxno ? -EBUSY : -ENOMEM);
}

int PhysMem::cma_release(Pfn pfn, Pfn count) {
  if (count == 0 || pfn < cma_.start || std::uint64_t{pfn} + count > cma_.end) return -EINVAL;
  for (Pfn p = pfn; p < pfn + count; ++p) {
    if (frames_[p] != static_cast<std::uint8_t>(FrameKind::CmaAllocated) || !cma_bitmap_test(p)) {
      return -EINVAL;
    }
  }
  count_kind(static_cast<std::uint8_t>(FrameKind::CmaAllocated), count, false);
  free_contig_range(pfn, count);
  cma_assign_bits(cma_bitmap_, pfn - cma_.start, count, false);  // cma_clear_bitmap()
  cma_bitmap_weight_ -= count;
  cma_pages_freed(pfn, count, true);
  ++stats_.pgfree;
  return 0;
}

// The CMA bitmap: one bit per page of the area, none past it; a set bit is a
// page cma_alloc() handed out, allocated until cma_release() (its owner may
// have re-tagged it); a cma-allocated frame has its bit set (checked with the
// frames). A busy mark is on an allocated page. The memo leaves open every
// aligned range with no set bit.
std::vector<std::string> PhysMem::check_cma() const {
  std::vector<std::string> v;
  auto bad = [&v](std::string msg) {
    if (v.size() < 16) v.push_back(std::move(msg));
  };
  const std::size_t words = (std::size_t{cma_.size()} + 63) / 64;
  if (cma_bitmap_.size() != words || cma_busy_.size() != words) {
    bad(fmt::format("CMA bitmap: {} and {} words for a {}-page area", cma_bitmap_.size(),
                    cma_busy_.size(), cma_.size()));
    return v;
  }
  std::uint64_t weight = 0;
  for (std::size_t w = 0; w < words; ++w) {
    weight += static_cast<unsigned>(std::popcount(cma_bitmap_[w]));
    for (int which = 0; which < 2; ++which) {
      std::uint64_t word = which == 0 ? cma_bitmap_[w] : cma_busy_[w];
      while (word != 0) {
        const std::uint64_t bit = w * 64 + static_cast<unsigned>(std::countr_zero(word));
        word &= word - 1;
        const std::string_view what = which == 0 ? "CMA bitmap bit" : "CMA busy mark";
        if (bit >= cma_.size()) {
          bad(fmt::format("{} {} set past the area's {} pages", what, bit, cma_.size()));
          continue;
        }
        const Pfn p = cma_.start + static_cast<Pfn>(bit);
        const std::uint8_t b = frames_[p];
        if (is_free_head(b) || !is_allocated_kind(static_cast<FrameKind>(b))) {
          bad(fmt::format("pfn {:#x}: its {} is set but it is {}", p, what, frame_kind_name(b)));
        } else if (which == 1 && b == static_cast<std::uint8_t>(FrameKind::CmaAllocated)) {
          bad(fmt::format("pfn {:#x}: its {} is set but it is cma-allocated", p, what));
        } else if (which == 1 && owners_ != nullptr && is_movable_kind(static_cast<FrameKind>(b))) {
          bad(fmt::format("pfn {:#x}: its {} is set but it is movable", p, what));
        }
      }
    }
  }
  if (weight != cma_bitmap_weight_) {
    bad(fmt::format("CMA bitmap: {} bits set but {} counted", weight, cma_bitmap_weight_));
  }
  if (cma_memo_.valid) {
    const Pfn count = cma_memo_.count;
    const Pfn mask = (Pfn{1} << cma_memo_.align_order) - 1;
    const Pfn offset = cma_.start & mask;
    const Pfn lowest = cma_find_next_zero_area(0, cma_.size(), count, mask, offset, false);
    if (std::min(lowest, cma_.size()) < std::min(cma_memo_.bitmap_floor, cma_.size())) {
      bad(fmt::format("CMA search memo: the bitmap's lowest clear range (count {}, align order "
                      "{}) is at bit {}, below its floor {}",
                      count, cma_memo_.align_order, lowest, cma_memo_.bitmap_floor));
    }
    std::vector<PfnRange> open = cma_memo_.open;
    merge_ranges(open);
    std::size_t oi = 0;
    for (std::uint64_t n = ((std::uint64_t{offset} + mask) & ~std::uint64_t{mask}) - offset;
         n + count <= cma_.size(); n += std::uint64_t{mask} + 1) {
      while (oi < open.size() && open[oi].end <= n) ++oi;
      if (oi < open.size() && open[oi].start <= n) continue;
      const auto s = static_cast<Pfn>(n);
      if (cma_find_next(s, s + count, true, true) >= s + count) {
        bad(fmt::format("CMA search memo: the range at bit {} (count {}, align order {}) is clear "
                        "but not open",
                        n, count, cma_memo_.align_order));
      }
    }
  }
  return v;
}

std::uint64_t PhysMem::managed_pages() const {
  std::uint64_t n = 0;
  for (const Zone& z : zones_) n += z.managed_pages;
  return n;
}

std::uint64_t PhysMem::free_pages() const {
  std::int64_t n = 0;
  for (const Zone& z : zones_) n += z.nr_free_pages;
  return static_cast<std::uint64_t>(n);
}

std::uint64_t PhysMem::pcp_pages() const {
  std::uint64_t n = 0;
  for (const Zone& z : zones_) {
    for (const PerCpuPages& pcp : z.pcp) n += static_cast<std::uint64_t>(pcp.count);
  }
  return n;
}

std::size_t PhysMem::model_bytes() const {
  std::size_t n = frames_.size() + pageblocks_.capacity() + lists_.bytes() + compound_.model_bytes() +
                  pb_compound_.capacity() * sizeof(std::uint16_t) + sizeof(*this) +
                  (cma_bitmap_.capacity() + cma_busy_.capacity()) * sizeof(std::uint64_t) +
                  cma_memo_.open.capacity() * sizeof(PfnRange);
  for (const Zone& z : zones_) {
    n += z.pcp.capacity() * sizeof(PerCpuPages);
    for (const PerCpuPages& pcp : z.pcp) {
      for (const auto& l : pcp.lists) n += l.size() * sizeof(Pfn) + 512;
    }
  }
  return n;
}

std::array<std::uint64_t, kNrPageOrders> PhysMem::buddyinfo(unsigned z) const {
  return zones_[z].nr_free;
}

std::vector<Pfn> PhysMem::free_list(unsigned z, unsigned order, unsigned mt) const {
  std::vector<Pfn> v;
  for (Pfn p = zones_[z].free_area[order][mt].head; p != kNoPfn; p = lists_.next(p)) v.push_back(p);
  return v;
}

int PhysMem::unusable_free_index(unsigned z, unsigned order) const {
  const Zone& zone = zones_[z];
  std::uint64_t free_pages = 0;
  std::uint64_t suitable = 0;
  for (unsigned o = 0; o < kNrPageOrders; ++o) {
    free_pages += zone.nr_free[o] << o;
    if (o >= order) suitable += zone.nr_free[o] << (o - order);
  }
  if (free_pages == 0) return 1000;
  return static_cast<int>((free_pages - (suitable << order)) * 1000 / free_pages);
}

std::vector<std::string> PhysMem::check() const {
  std::vector<std::string> v;
  auto bad = [&v](std::string msg) {
    if (v.size() < 64) v.push_back(std::move(msg));
  };
  std::array<std::uint64_t, 256> byte_count{};
  std::array<std::array<std::array<std::uint64_t, MIGRATE_TYPES>, kNrPageOrders>, MAX_NR_ZONES>
      heads{};
  std::array<std::uint64_t, MAX_NR_ZONES> zone_free{};
  std::array<std::uint64_t, MAX_NR_ZONES> file_count{};

  // Frames: each in one state; free blocks aligned, whole, and within a zone.
  std::size_t ri = 0;
  Pfn tail_left = 0;
  for (Pfn p = 0; p < frames_.size(); ++p) {
    while (ri < ram_.size() && p >= ram_[ri].end) ++ri;
    const bool in_ram = ri < ram_.size() && p >= ram_[ri].start;
    const std::uint8_t b = frames_[p];
    ++byte_count[b];
    constexpr auto kHole = static_cast<std::uint8_t>(FrameKind::Hole);
    if (!in_ram && b != kHole) bad(fmt::format("pfn {:#x}: outside RAM but {}", p, frame_kind_name(b)));
    if (in_ram && b == kHole) bad(fmt::format("pfn {:#x}: RAM frame marked as a hole", p));
    if (tail_left > 0) {
      if (b != static_cast<std::uint8_t>(FrameKind::FreeTail)) {
        bad(fmt::format("pfn {:#x}: inside a free block but {}", p, frame_kind_name(b)));
      }
      --tail_left;
      continue;
    }
    if (b == static_cast<std::uint8_t>(FrameKind::FreeTail)) {
      bad(fmt::format("pfn {:#x}: free tail frame outside any free block", p));
      continue;
    }
    if (b > kFreeHeadBase + kMaxPageOrder) {
      bad(fmt::format("pfn {:#x}: invalid state byte {}", p, b));
      continue;
    }
    if (!is_free_head(b)) {
      if (b == static_cast<std::uint8_t>(FrameKind::PageCache)) ++file_count[zone_of(p)];
      if (b > static_cast<std::uint8_t>(kLastKind)) {
        bad(fmt::format("pfn {:#x}: invalid state byte {}", p, b));
      } else if (b == static_cast<std::uint8_t>(FrameKind::CmaAllocated) && !cma_bitmap_test(p)) {
        bad(fmt::format("pfn {:#x}: cma-allocated but {}", p,
                        p >= cma_.start && p < cma_.end ? "its CMA bitmap bit is clear"
                                                        : "outside the CMA area"));
      }
      continue;
    }
    const unsigned order = free_head_order(b);
    const Pfn nr = Pfn{1} << order;
    const unsigned zi = zone_of(p);
    if ((p & (nr - 1)) != 0) bad(fmt::format("free block {:#x} order {}: misaligned", p, order));
    if (std::uint64_t{p} + nr > zones_[zi].zone_end_pfn || zone_of(p + nr - 1) != zi) {
      bad(fmt::format("free block {:#x} order {}: crosses its zone's end", p, order));
    }
    const unsigned mt = pageblock_migratetype(p);
    if (order > kPageblockOrder) {
      for (Pfn q = p; q < p + nr; q += kPageblockNrPages) {
        if (pageblock_migratetype(q) != mt) {
          bad(fmt::format("free block {:#x} order {}: pageblocks of different migratetypes", p,
                          order));
          break;
        }
      }
    }
    if (!lists_.contains(p)) bad(fmt::format("free block {:#x} order {}: on no free list", p, order));
    ++heads[zi][order][mt];
    if (mt != MIGRATE_ISOLATE) zone_free[zi] += nr;
    tail_left = nr - 1;
  }
  if (tail_left != 0) bad("a free block runs past the last frame");

  // Free lists: entries are free heads of the list's order and migratetype.
  std::uint64_t listed = 0;
  for (unsigned zi = 0; zi < MAX_NR_ZONES; ++zi) {
    const Zone& z = zones_[zi];
    std::int64_t cma = 0;
    std::int64_t highatomic = 0;
    for (unsigned o = 0; o < kNrPageOrders; ++o) {
      std::uint64_t per_order = 0;
      for (unsigned mt = 0; mt < MIGRATE_TYPES; ++mt) {
        const FreeList& list = z.free_area[o][mt];
        std::uint64_t n = 0;
        Pfn prev = kNoPfn;
        for (Pfn p = list.head; p != kNoPfn && n <= list.count; p = lists_.next(p)) {
          ++n;
          prev = p;
          if (frames_[p] != free_head_byte(o)) {
            bad(fmt::format("{} free list order {} {}: pfn {:#x} is {}", zone_name(zi), o,
                            migratetype_name(mt), p, frame_kind_name(frames_[p])));
          } else if (pageblock_migratetype(p) != mt) {
            bad(fmt::format("{} free list order {} {}: pfn {:#x} is in a {} pageblock",
                            zone_name(zi), o, migratetype_name(mt), p,
                            migratetype_name(pageblock_migratetype(p))));
          }
          if (!z.spans(p)) bad(fmt::format("{} free list: pfn {:#x} outside the zone", zone_name(zi), p));
        }
        if (prev != list.tail) {
          bad(fmt::format("{} free list order {} {}: tail mismatch", zone_name(zi), o,
                          migratetype_name(mt)));
        }
        if (n != list.count || n != heads[zi][o][mt]) {
          bad(fmt::format("{} free list order {} {}: {} listed, count {}, {} free heads",
                          zone_name(zi), o, migratetype_name(mt), n, list.count,
                          heads[zi][o][mt]));
        }
        per_order += n;
        listed += n;
        if (mt == MIGRATE_CMA) cma += static_cast<std::int64_t>(n << o);
        if (mt == MIGRATE_HIGHATOMIC) highatomic += static_cast<std::int64_t>(n << o);
      }
      if (per_order != z.nr_free[o]) {
        bad(fmt::format("{} order {}: nr_free {} but {} blocks listed", zone_name(zi), o,
                        z.nr_free[o], per_order));
      }
    }
    if (static_cast<std::uint64_t>(z.nr_free_pages) != zone_free[zi]) {
      bad(fmt::format("{}: NR_FREE_PAGES {} but {} pages in free blocks", zone_name(zi),
                      z.nr_free_pages, zone_free[zi]));
    }
    if (z.nr_free_cma != cma) {
      bad(fmt::format("{}: NR_FREE_CMA_PAGES {} but {} listed", zone_name(zi), z.nr_free_cma, cma));
    }
    if (z.nr_free_highatomic != highatomic) {
      bad(fmt::format("{}: nr_free_highatomic {} but {} listed", zone_name(zi),
                      z.nr_free_highatomic, highatomic));
    }
  }
  if (listed != lists_.size()) {
    bad(fmt::format("free list store holds {} entries but {} are listed", lists_.size(), listed));
  }

  // Per-CPU lists hold exactly the Pcp frames.
  std::uint64_t pcp_frames = 0;
  for (unsigned zi = 0; zi < MAX_NR_ZONES; ++zi) {
    const Zone& z = zones_[zi];
    for (std::size_t cpu = 0; cpu < z.pcp.size(); ++cpu) {
      const PerCpuPages& pcp = z.pcp[cpu];
      std::uint64_t n = 0;
      for (unsigned idx = 0; idx < kNrPcpLists; ++idx) {
        const unsigned order = pindex_to_order(idx);
        for (const Pfn p : pcp.lists[idx]) {
          n += std::uint64_t{1} << order;
          if (!z.spans(p) || (p & ((Pfn{1} << order) - 1)) != 0) {
            bad(fmt::format("cpu {} pcp list {}: bad pfn {:#x}", cpu, idx, p));
            continue;
          }
          for (Pfn q = p; q < p + (Pfn{1} << order); ++q) {
            if (frames_[q] != static_cast<std::uint8_t>(FrameKind::Pcp)) {
              bad(fmt::format("cpu {} pcp list {}: pfn {:#x} is {}", cpu, idx, q,
                              frame_kind_name(frames_[q])));
              break;
            }
          }
        }
      }
      if (n != static_cast<std::uint64_t>(pcp.count)) {
        bad(fmt::format("{} cpu {}: pcp count {} but {} pages listed", zone_name(zi), cpu,
                        pcp.count, n));
      }
      pcp_frames += n;
    }
  }
  if (pcp_frames != byte_count[static_cast<unsigned>(FrameKind::Pcp)]) {
    bad(fmt::format("{} frames marked pcp but {} on pcp lists",
                    byte_count[static_cast<unsigned>(FrameKind::Pcp)], pcp_frames));
  }

  // Owners' counts match the frames; managed pages are all accounted for.
  std::uint64_t allocated = 0;
  for (unsigned k = static_cast<unsigned>(FrameKind::Kernel);
       k <= static_cast<unsigned>(kLastKind); ++k) {
    if (byte_count[k] != kind_pages_[k]) {
      bad(fmt::format("{} frames marked {} but {} accounted", byte_count[k],
                      frame_kind_name(static_cast<std::uint8_t>(k)), kind_pages_[k]));
    }
    allocated += byte_count[k];
  }
  std::uint64_t free_total = 0;
  for (unsigned zi = 0; zi < MAX_NR_ZONES; ++zi) free_total += zone_free[zi];
  if (free_total + pcp_frames + allocated != managed_pages()) {
    bad(fmt::format("managed pages {} != free {} + pcp {} + allocated {}", managed_pages(),
                    free_total, pcp_frames, allocated));
  }

  for (std::string& msg : check_cma()) bad(std::move(msg));

  // Per-zone file pages and the movable compound blocks follow the frames.
  for (unsigned zi = 0; zi < MAX_NR_ZONES; ++zi) {
    if (file_count[zi] != file_pages_[zi]) {
      bad(fmt::format("{}: {} page-cache frames but {} counted", zone_name(zi), file_count[zi], file_pages_[zi]));
    }
  }
  std::vector<std::uint16_t> pb_count(pb_compound_.size(), 0);
  compound_.for_each([&](Pfn head, std::uint32_t order) {
    const Pfn nr = Pfn{1} << order;
    const std::uint8_t b = frames_[head];
    bool ok = order > 0 && (head & (nr - 1)) == 0 && std::uint64_t{head} + nr <= frames_.size() &&
              !is_free_head(b) && is_movable_kind(static_cast<FrameKind>(b));
    for (Pfn q = head; ok && q < head + nr; ++q) ok = frames_[q] == b;
    if (!ok) bad(fmt::format("movable block {:#x} order {}: not an allocated movable block", head, order));
    for (std::size_t pb = head >> kPageblockOrder; pb <= (head + nr - 1) >> kPageblockOrder && pb < pb_count.size(); ++pb) {
      ++pb_count[pb];
    }
  });
  if (pb_count != pb_compound_) bad("movable compound blocks: per-pageblock counts do not match the map");

  // Pageblocks: valid migratetypes; CMA exactly on the CMA area.
  for (std::size_t i = 0; i < pageblocks_.size(); ++i) {
    const unsigned mt = pageblocks_[i];
    const auto start = static_cast<Pfn>(i << kPageblockOrder);
    if (mt >= MIGRATE_TYPES) bad(fmt::format("pageblock {:#x}: invalid migratetype {}", start, mt));
    const bool in_cma = start >= cma_.start && start < cma_.end;
    if (in_cma != (mt == MIGRATE_CMA)) {
      bad(fmt::format("pageblock {:#x}: migratetype {} {} the CMA area", start,
                      migratetype_name(mt), in_cma ? "inside" : "outside"));
    }
  }
  return v;
}

// ---- names -----------------------------------------------------------------

std::string_view migratetype_name(unsigned mt) {
  static constexpr std::array<std::string_view, MIGRATE_TYPES> kNames{
      "Unmovable", "Movable", "Reclaimable", "HighAtomic", "CMA", "Isolate"};
  return mt < MIGRATE_TYPES ? kNames[mt] : "invalid";
}

std::string_view zone_name(unsigned z) {
  return z == ZONE_DMA32 ? "DMA32" : z == ZONE_NORMAL ? "Normal" : "invalid";
}

std::string_view frame_kind_name(std::uint8_t b) {
  if (is_free_head(b)) return "free";
  static constexpr std::array<std::string_view, kNumAllocatedKinds> kNames{
      "free-tail", "reserved", "hole", "pcp", "kernel", "reclaimable", "user",
      "page-table", "secret", "unmapped", "cma-allocated", "page-cache"};
  return b < kNames.size() ? kNames[b] : "invalid";
}

}  // namespace exmem::model::phys
