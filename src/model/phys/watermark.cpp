// phys/: physical memory of the model (see physmem.hpp for what the folder owns).
// watermark.cpp: min_free_kbytes, zone watermarks, lowmem_reserve and the
// watermark checks that make allocations fail where the kernel's fail.
#include <algorithm>
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

// mirrors calculate_min_free_kbytes() and __setup_per_zone_wmarks()
void PhysMem::setup_per_zone_wmarks() {
  std::uint64_t lowmem_pages = 0;
  for (const Zone& z : zones_) lowmem_pages += z.managed_pages;
  if (config_.min_free_kbytes >= 0) {
    min_free_kbytes_ = config_.min_free_kbytes;
  } else {
    const std::uint64_t lowmem_kbytes = lowmem_pages * (kPageSize >> 10);
    min_free_kbytes_ =
        static_cast<int>(std::clamp<std::uint64_t>(int_sqrt(lowmem_kbytes * 16), 128, 262144));
  }
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
