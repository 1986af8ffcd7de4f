// phys/: physical memory of the model (see physmem.hpp for what the folder owns).
// watermark.cpp: min_free_kbytes, zone watermarks, lowmem_reserve and the
// watermark checks that make allocations fail where the kernel's fail.
#include <algorithm>
#include <cerrno>
#include <cmath>

#include "model/phys/physmem.hpp"

namespace exmem::model::phys {

namespace {
std::uint64_t int_sqrt(std::uint64_t x) {
  auto r = static_cast<std::uint64_t>(std::sqrt(static_cast<double>(x)));
  while (r * r > x) --r;
  while ((r + 1) * (r + 1) <= x) ++r;
  return r;
}
}  // namespace

// Boot, in the kernel's order: init_per_zone_wmark_min() (a postcore
// initcall), then hugepage_init() (a subsys initcall), which on machines of
// 512 MiB and more with THP enabled starts khugepaged through
// start_stop_khugepaged() -> set_recommended_min_free_kbytes(); then, when
// the configuration names one, vm.min_free_kbytes as user space writes it
// after boot (sysctl.conf), which replaces whatever the kernel chose.
// setup_zones() sets up the pcp lists next, from the final watermarks, as
// zone_pcp_update() in setup_per_zone_wmarks() would have.
void PhysMem::init_per_zone_wmark_min() {
  calculate_min_free_kbytes();
  setup_per_zone_wmarks();
  setup_per_zone_lowmem_reserve();
  // hugepage_init(): "By default disable transparent hugepages on smaller
  // systems": totalram_pages() < MB_TO_PAGES(512) leaves khugepaged stopped.
  if (config_.thp && managed_pages() >= (512 * MiB >> kPageShift)) {
    set_recommended_min_free_kbytes();
  }
  if (config_.min_free_kbytes >= 0) set_min_free_kbytes(config_.min_free_kbytes);
}

// mirrors nr_free_buffer_pages(): nr_free_zone_pages(gfp_zone(GFP_USER)), the
// managed pages above the high watermark of every zone up to ZONE_NORMAL.
std::uint64_t PhysMem::nr_free_buffer_pages() const {
  std::uint64_t sum = 0;
  for (const Zone& z : zones_) {
    const std::uint64_t high = z.wmark_pages(WMARK_HIGH);
    if (z.managed_pages > high) sum += z.managed_pages - high;
  }
  return sum;
}

// mirrors calculate_min_free_kbytes(): 4 * sqrt(lowmem_kbytes), from 128 kB
// to 256 MiB. Before the first setup_per_zone_wmarks() the watermarks are 0,
// so lowmem is every managed page.
void PhysMem::calculate_min_free_kbytes() {
  const std::uint64_t lowmem_kbytes = nr_free_buffer_pages() * (kPageSize >> 10);
  const std::uint64_t new_min_free_kbytes = int_sqrt(lowmem_kbytes * 16);
  if (user_min_free_kbytes_ < 0 ||
      new_min_free_kbytes > static_cast<std::uint64_t>(user_min_free_kbytes_)) {
    min_free_kbytes_ = static_cast<int>(std::clamp<std::uint64_t>(new_min_free_kbytes, 128, 262144));
  }
}

// mirrors set_recommended_min_free_kbytes() of mm/khugepaged.c: two free
// pageblocks per zone for fragmentation avoidance, plus MIGRATE_PCPTYPES^2
// pageblocks per zone so that each pcp type has a block to fall back to and
// one more; at most 5% of lowmem; it only ever raises min_free_kbytes.
//
// nr_zones counts the populated zones (populated_zone(): present pages, not
// managed ones) up to gfp_zone(GFP_USER) = ZONE_NORMAL. On x86-64 those are
// ZONE_DMA ([0, 16 MiB), populated on every machine: e820 RAM from 1 MiB up),
// ZONE_DMA32 (up to 4 GiB) and ZONE_NORMAL (RAM above 4 GiB, i.e. machines
// with more RAM than the PCI hole's start). The model folds ZONE_DMA into its
// DMA32 zone, so it counts that zone once more whenever RAM lies below
// 16 MiB: 3 zones (16,896 pages, 66 MiB) above the PCI hole's start, 2 zones
// (11,264 pages, 44 MiB) below it. The watermarks are then spread over the
// model's two zones by managed pages, so the folded DMA32 zone carries ZONE_DMA's
// share too (a few pages of rounding apart from the kernel's two zones).
void PhysMem::set_recommended_min_free_kbytes() {
  constexpr Pfn kZoneDmaEndPfn = static_cast<Pfn>((16 * MiB) >> kPageShift);  // MAX_DMA_PFN
  std::uint64_t nr_zones = 0;
  for (const Zone& z : zones_) {
    if (z.present_pages > 0) ++nr_zones;  // every model zone is <= ZONE_NORMAL
  }
  if (!ram_.empty() && ram_.front().start < kZoneDmaEndPfn) ++nr_zones;  // the folded ZONE_DMA

  // Ensure 2 pageblocks are free to assist fragmentation avoidance.
  std::uint64_t recommended_min = std::uint64_t{kPageblockNrPages} * nr_zones * 2;
  // At least two pageblocks almost free of another type per pcp type: one for
  // a migratetype to fall back to, one to avoid later fallbacks of others.
  recommended_min += std::uint64_t{kPageblockNrPages} * nr_zones * MIGRATE_PCPTYPES * MIGRATE_PCPTYPES;
  // Never more than 5% of lowmem.
  recommended_min = std::min(recommended_min, nr_free_buffer_pages() / 20);
  recommended_min <<= (kPageShift - 10);
  if (recommended_min > static_cast<std::uint64_t>(min_free_kbytes_)) {
    min_free_kbytes_ = static_cast<int>(recommended_min);
  }
  setup_per_zone_wmarks();
}

int PhysMem::set_min_free_kbytes(int kbytes) {
  if (kbytes < 0) return -EINVAL;
  min_free_kbytes_ = kbytes;
  user_min_free_kbytes_ = kbytes;
  setup_per_zone_wmarks();
  return 0;
}

// mirrors __setup_per_zone_wmarks(): min_free_kbytes spread over the zones by
// managed pages; the kswapd distances (low - min, high - low) are a quarter of
// the zone's min or watermark_scale_factor/10000 of the zone, the larger.
void PhysMem::setup_per_zone_wmarks_core() {
  std::uint64_t lowmem_pages = 0;
  for (const Zone& z : zones_) lowmem_pages += z.managed_pages;
  const std::uint64_t pages_min = static_cast<std::uint64_t>(min_free_kbytes_) >> (kPageShift - 10);
  for (Zone& z : zones_) {
    if (lowmem_pages == 0) break;
    std::uint64_t tmp = pages_min * z.managed_pages / lowmem_pages;
    z.watermark[WMARK_MIN] = tmp;
    // The kswapd distance: a fraction of the zone, at least a quarter of min.
    tmp = std::max(tmp >> 2, z.managed_pages * config_.watermark_scale_factor / 10000);
    z.watermark_boost = 0;
    z.watermark[WMARK_LOW] = z.watermark[WMARK_MIN] + tmp;
    z.watermark[WMARK_HIGH] = z.watermark[WMARK_LOW] + tmp;
    z.watermark[WMARK_PROMO] = z.watermark[WMARK_HIGH] + tmp;
  }
}

// mirrors setup_per_zone_wmarks(): the watermarks, then zone_pcp_update() of
// every zone, since pcp high_min comes from the low watermark.
void PhysMem::setup_per_zone_wmarks() {
  setup_per_zone_wmarks_core();
  for (Zone& z : zones_) zone_pcp_update(z);
}

// mirrors setup_per_zone_lowmem_reserve() with sysctl_lowmem_reserve_ratio 256 (DMA32)
void PhysMem::setup_per_zone_lowmem_reserve() {
  static constexpr std::array<std::uint64_t, MAX_NR_ZONES> kRatio{256, 32};
  for (unsigned i = 0; i < MAX_NR_ZONES; ++i) {
    Zone& z = zones_[i];
    z.lowmem_reserve.fill(0);
    std::uint64_t managed = 0;
    for (unsigned j = i + 1; j < MAX_NR_ZONES; ++j) {
      managed += zones_[j].managed_pages;
      z.lowmem_reserve[j] = z.managed_pages == 0 ? 0 : managed / kRatio[i];
    }
  }
}

// mirrors __zone_watermark_unusable_free()
std::int64_t PhysMem::zone_watermark_unusable_free(const Zone& z, unsigned order,
                                                   unsigned alloc_flags) const {
  std::int64_t unusable = (std::int64_t{1} << order) - 1;
  if (!(alloc_flags & ALLOC_RESERVES)) unusable += z.nr_free_highatomic;
  if (!(alloc_flags & ALLOC_CMA)) unusable += z.nr_free_cma;
  return unusable;
}

// mirrors __zone_watermark_ok()
bool PhysMem::zone_watermark_ok(const Zone& z, unsigned order, std::uint64_t mark,
                                unsigned highest_zoneidx, unsigned alloc_flags,
                                std::int64_t free_pages) const {
  auto min = static_cast<std::int64_t>(mark);
  free_pages -= zone_watermark_unusable_free(z, order, alloc_flags);
  if (alloc_flags & ALLOC_RESERVES) {
    // __GFP_HIGH may use half of the min reserve; non-blocking callers more.
    if (alloc_flags & ALLOC_MIN_RESERVE) {
      min -= min / 2;
      if (alloc_flags & ALLOC_NON_BLOCK) min -= min / 4;
    }
    if (alloc_flags & ALLOC_OOM) min -= min / 2;
  }
  if (free_pages <= min + static_cast<std::int64_t>(z.lowmem_reserve[highest_zoneidx])) {
    return false;
  }
  if (order == 0) return true;
  for (unsigned o = order; o < kNrPageOrders; ++o) {
    if (z.nr_free[o] == 0) continue;
    for (unsigned mt = 0; mt < MIGRATE_PCPTYPES; ++mt) {
      if (!z.free_area[o][mt].empty()) return true;
    }
    if ((alloc_flags & ALLOC_CMA) && !z.free_area[o][MIGRATE_CMA].empty()) return true;
    if ((alloc_flags & (ALLOC_HIGHATOMIC | ALLOC_OOM)) &&
        !z.free_area[o][MIGRATE_HIGHATOMIC].empty()) {
      return true;
    }
  }
  return false;
}

// mirrors zone_watermark_fast()
bool PhysMem::zone_watermark_fast(const Zone& z, unsigned order, std::uint64_t mark,
                                  unsigned highest_zoneidx, unsigned alloc_flags) const {
  const std::int64_t free_pages = z.nr_free_pages;
  if (order == 0) {
    const std::int64_t reserved = zone_watermark_unusable_free(z, 0, alloc_flags);
    const std::int64_t usable = free_pages - std::min(free_pages, reserved);
    if (usable > static_cast<std::int64_t>(mark + z.lowmem_reserve[highest_zoneidx])) return true;
  }
  if (zone_watermark_ok(z, order, mark, highest_zoneidx, alloc_flags, free_pages)) return true;
  // __GFP_HIGH order-0 requests ignore the boost when checking the min watermark.
  if (order == 0 && (alloc_flags & ALLOC_MIN_RESERVE) && z.watermark_boost != 0 &&
      (alloc_flags & ALLOC_WMARK_MASK) == WMARK_MIN) {
    return zone_watermark_ok(z, order, z.watermark[WMARK_MIN], highest_zoneidx, alloc_flags,
                             free_pages);
  }
  return false;
}

}  // namespace exmem::model::phys
