// phys/: physical memory of the model (see physmem.hpp for what the folder owns).
// zone.hpp: struct zone and struct per_cpu_pages as the model keeps them.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <vector>

#include "model/phys/free_list.hpp"
#include "model/phys/migratetype.hpp"
#include "model/types.hpp"

namespace exmem::model::phys {

// NR_LOWORDER_PCP_LISTS + NR_PCP_THP: lists for orders 0..3 of each pcp type,
// plus two THP (order 9) lists (unmovable, movable).
inline constexpr unsigned kNrLowOrderPcpLists = MIGRATE_PCPTYPES * (kPageAllocCostlyOrder + 1);
inline constexpr unsigned kNrPcpLists = kNrLowOrderPcpLists + 2;
inline constexpr unsigned kPcpBatchScaleMax = 5;  // CONFIG_PCP_BATCH_SCALE_MAX
inline constexpr std::uint8_t PCPF_PREV_FREE_HIGH_ORDER = 1;
inline constexpr std::uint8_t PCPF_FREE_HIGH_BATCH = 2;

// mirrors struct per_cpu_pages. Lists are LIFO: the front is the list head.
struct PerCpuPages {
  int count = 0;
  int high = 0;
  int high_min = 0;
  int high_max = 0;
  int batch = 0;
  int free_count = 0;
  std::uint8_t alloc_factor = 0;
  std::uint8_t flags = 0;
  std::array<std::deque<Pfn>, kNrPcpLists> lists;
};

enum Wmark : unsigned { WMARK_MIN = 0, WMARK_LOW = 1, WMARK_HIGH = 2, WMARK_PROMO = 3, NR_WMARK = 4 };

// mirrors struct zone (single node).
struct Zone {
  ZoneType type = ZONE_DMA32;
  Pfn zone_start_pfn = 0;
  Pfn zone_end_pfn = 0;  // spanned end (exclusive)
  std::uint64_t present_pages = 0;
  std::uint64_t managed_pages = 0;
  std::uint64_t cma_pages = 0;

  std::array<std::array<FreeList, MIGRATE_TYPES>, kNrPageOrders> free_area{};
  std::array<std::uint64_t, kNrPageOrders> nr_free{};  // free_area[order].nr_free

  std::int64_t nr_free_pages = 0;  // NR_FREE_PAGES
  std::int64_t nr_free_cma = 0;    // NR_FREE_CMA_PAGES
  std::int64_t nr_free_highatomic = 0;
  std::uint64_t nr_reserved_highatomic = 0;

  std::array<std::uint64_t, NR_WMARK> watermark{};  // _watermark[]
  std::uint64_t watermark_boost = 0;
  std::array<std::uint64_t, MAX_NR_ZONES> lowmem_reserve{};
  bool below_high = false;        // ZONE_BELOW_HIGH
  // ZONE_RECLAIM_ACTIVE: kswapd is reclaiming the zone (set_reclaim_active()).
  // The model's kswapd runs at once (balance_pgdat()), so the flag stands for
  // "kswapd would still be awake": set when balance_pgdat() starts, cleared
  // when it ends with the zone balanced, else by the first pcp free that finds
  // the zone's free pages back at its high watermark.
  bool reclaim_active = false;
  bool boosted_watermark = false;  // ZONE_BOOSTED_WATERMARK

  std::vector<PerCpuPages> pcp;  // one per CPU

  [[nodiscard]] bool populated() const { return managed_pages > 0; }
  [[nodiscard]] bool spans(Pfn pfn) const { return pfn >= zone_start_pfn && pfn < zone_end_pfn; }
  // mirrors wmark_pages()
  [[nodiscard]] std::uint64_t wmark_pages(unsigned w) const { return watermark[w] + watermark_boost; }
};

// mirrors order_to_pindex()
inline constexpr unsigned order_to_pindex(unsigned mt, unsigned order) {
  if (order > kPageAllocCostlyOrder) return kNrLowOrderPcpLists + (mt == MIGRATE_MOVABLE ? 1u : 0u);
  return MIGRATE_PCPTYPES * order + mt;
}
// mirrors pindex_to_order()
inline constexpr unsigned pindex_to_order(unsigned pindex) {
  return pindex >= kNrLowOrderPcpLists ? kHpagePmdOrder : pindex / MIGRATE_PCPTYPES;
}

}  // namespace exmem::model::phys
