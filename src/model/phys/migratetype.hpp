// phys/: physical memory of the model (see physmem.hpp for what the folder owns).
// migratetype.hpp: migratetypes, zones and the fallback table (mm/page_alloc.c,
// include/linux/mmzone.h).
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

#include "model/phys/gfp.hpp"

namespace exmem::model::phys {

enum Migratetype : std::uint8_t {
  MIGRATE_UNMOVABLE = 0,
  MIGRATE_MOVABLE = 1,
  MIGRATE_RECLAIMABLE = 2,
  MIGRATE_HIGHATOMIC = 3,  // == MIGRATE_PCPTYPES
  MIGRATE_CMA = 4,
  MIGRATE_ISOLATE = 5,
  MIGRATE_TYPES = 6,
};
inline constexpr unsigned MIGRATE_PCPTYPES = 3;

std::string_view migratetype_name(unsigned mt);

// mirrors fallbacks[][] in mm/page_alloc.c: where each type may fall back to.
inline constexpr std::array<std::array<Migratetype, MIGRATE_PCPTYPES - 1>, MIGRATE_PCPTYPES>
    kFallbacks{{
        {MIGRATE_RECLAIMABLE, MIGRATE_MOVABLE},    // MIGRATE_UNMOVABLE
        {MIGRATE_RECLAIMABLE, MIGRATE_UNMOVABLE},  // MIGRATE_MOVABLE
        {MIGRATE_UNMOVABLE, MIGRATE_MOVABLE},      // MIGRATE_RECLAIMABLE
    }};

// mirrors migratetype_is_mergeable()
inline constexpr bool migratetype_is_mergeable(unsigned mt) { return mt < MIGRATE_PCPTYPES; }

// mirrors gfp_migratetype()
inline constexpr Migratetype gfp_migratetype(Gfp gfp) {
  if (gfp & __GFP_MOVABLE) return MIGRATE_MOVABLE;
  if (gfp & __GFP_RECLAIMABLE) return MIGRATE_RECLAIMABLE;
  return MIGRATE_UNMOVABLE;
}

// Zones of the model: ZONE_DMA32 (below 4 GiB) and ZONE_NORMAL. ZONE_DMA (the
// first 16 MiB) is folded into DMA32; there is no ZONE_MOVABLE.
enum ZoneType : std::uint8_t { ZONE_DMA32 = 0, ZONE_NORMAL = 1, MAX_NR_ZONES = 2 };
std::string_view zone_name(unsigned z);

// mirrors gfp_zone(): the highest zone a request may use.
inline constexpr ZoneType gfp_zone(Gfp gfp) {
  return (gfp & (__GFP_DMA32 | __GFP_DMA)) ? ZONE_DMA32 : ZONE_NORMAL;
}

}  // namespace exmem::model::phys
