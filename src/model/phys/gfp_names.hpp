// phys/: see gfp.hpp for what the folder owns.
// gfp_names.hpp: the one table of gfp flag names, as show_gfp_flags() prints
// them (include/trace/events/mmflags.h). gfp_name() writes flags with it and
// the trace reader (workload/trace_format.hpp) reads them back with it.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

#include "model/phys/gfp.hpp"

namespace exmem::model::phys {

enum class GfpNameUse : std::uint8_t {
  Composite,  // a GFP_* mask: gfp_name() prints the first one wholly present, then the bits left
  Bit,        // a single __GFP_* bit: printed for each bit not covered by the composite
  ReadOnly,   // another spelling a trace may hold: read, never printed
};

struct GfpName {
  std::string_view name;
  Gfp gfp;
  GfpNameUse use;
};

// In printing order: the composites from the widest, then the bits from bit 0.
inline constexpr std::array<GfpName, 41> kGfpNames{{
    {"GFP_TRANSHUGE", GFP_TRANSHUGE, GfpNameUse::Composite},
    {"GFP_TRANSHUGE_LIGHT", GFP_TRANSHUGE_LIGHT, GfpNameUse::Composite},
    {"GFP_HIGHUSER_MOVABLE", GFP_HIGHUSER_MOVABLE, GfpNameUse::Composite},
    {"GFP_HIGHUSER", GFP_HIGHUSER, GfpNameUse::Composite},
    {"GFP_USER", GFP_USER, GfpNameUse::Composite},
    {"GFP_KERNEL_ACCOUNT", GFP_KERNEL_ACCOUNT, GfpNameUse::Composite},
    // Slab caches with SLAB_RECLAIM_ACCOUNT: printed as the kernel prints it, two names.
    {"GFP_KERNEL|__GFP_RECLAIMABLE", GFP_KERNEL_RECLAIMABLE, GfpNameUse::Composite},
    {"GFP_KERNEL", GFP_KERNEL, GfpNameUse::Composite},
    {"GFP_NOFS", GFP_NOFS, GfpNameUse::Composite},
    {"GFP_ATOMIC", GFP_ATOMIC, GfpNameUse::Composite},
    {"GFP_NOWAIT", GFP_NOWAIT, GfpNameUse::Composite},
    {"GFP_NOIO", GFP_NOIO, GfpNameUse::Composite},
    {"__GFP_DMA", __GFP_DMA, GfpNameUse::Bit},
    {"__GFP_HIGHMEM", __GFP_HIGHMEM, GfpNameUse::Bit},
    {"__GFP_DMA32", __GFP_DMA32, GfpNameUse::Bit},
    {"__GFP_MOVABLE", __GFP_MOVABLE, GfpNameUse::Bit},
    {"__GFP_RECLAIMABLE", __GFP_RECLAIMABLE, GfpNameUse::Bit},
    {"__GFP_HIGH", __GFP_HIGH, GfpNameUse::Bit},
    {"__GFP_IO", __GFP_IO, GfpNameUse::Bit},
    {"__GFP_FS", __GFP_FS, GfpNameUse::Bit},
    {"__GFP_ZERO", __GFP_ZERO, GfpNameUse::Bit},
    {"__GFP_DIRECT_RECLAIM", __GFP_DIRECT_RECLAIM, GfpNameUse::Bit},
    {"__GFP_KSWAPD_RECLAIM", __GFP_KSWAPD_RECLAIM, GfpNameUse::Bit},
    {"__GFP_WRITE", __GFP_WRITE, GfpNameUse::Bit},
    {"__GFP_NOWARN", __GFP_NOWARN, GfpNameUse::Bit},
    {"__GFP_RETRY_MAYFAIL", __GFP_RETRY_MAYFAIL, GfpNameUse::Bit},
    {"__GFP_NOFAIL", __GFP_NOFAIL, GfpNameUse::Bit},
    {"__GFP_NORETRY", __GFP_NORETRY, GfpNameUse::Bit},
    {"__GFP_MEMALLOC", __GFP_MEMALLOC, GfpNameUse::Bit},
    {"__GFP_COMP", __GFP_COMP, GfpNameUse::Bit},
    {"__GFP_NOMEMALLOC", __GFP_NOMEMALLOC, GfpNameUse::Bit},
    {"__GFP_HARDWALL", __GFP_HARDWALL, GfpNameUse::Bit},
    {"__GFP_THISNODE", __GFP_THISNODE, GfpNameUse::Bit},
    {"__GFP_ACCOUNT", __GFP_ACCOUNT, GfpNameUse::Bit},
    {"GFP_DMA", __GFP_DMA, GfpNameUse::ReadOnly},
    {"GFP_DMA32", __GFP_DMA32, GfpNameUse::ReadOnly},
    {"__GFP_RECLAIM", __GFP_RECLAIM, GfpNameUse::ReadOnly},
    {"GFP_KERNEL_RECLAIMABLE", GFP_KERNEL_RECLAIMABLE, GfpNameUse::ReadOnly},
    {"GFP_MOVABLE_MASK", GFP_MOVABLE_MASK, GfpNameUse::ReadOnly},
    {"__GFP_ATOMIC", __GFP_HIGH, GfpNameUse::ReadOnly},  // before 6.3: its meaning went to __GFP_HIGH and ALLOC_NON_BLOCK
    {"GFP_NOIO_NOFS", GFP_NOIO, GfpNameUse::ReadOnly},
}};

// The flags of one name of the table ("GFP_KERNEL", "__GFP_ZERO", ...);
// nullopt for a name it does not hold.
std::optional<Gfp> gfp_from_name(std::string_view name);

}  // namespace exmem::model::phys
