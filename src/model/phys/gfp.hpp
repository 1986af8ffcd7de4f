// phys/: physical memory (see physmem.hpp for what the folder owns).
// gfp.hpp: gfp flags as in include/linux/gfp_types.h and the alloc_flags the
// allocator derives from them (mm/internal.h).
#pragma once

#include <cstdint>
#include <string>

namespace exmem::model::phys {

using Gfp = std::uint32_t;

// Bit numbers follow enum ___GFP_*_BIT in include/linux/gfp_types.h.
inline constexpr Gfp __GFP_DMA = 1u << 0;  // no ZONE_DMA in the model: treated as __GFP_DMA32
inline constexpr Gfp __GFP_HIGHMEM = 1u << 1;
inline constexpr Gfp __GFP_DMA32 = 1u << 2;
inline constexpr Gfp __GFP_MOVABLE = 1u << 3;
inline constexpr Gfp __GFP_RECLAIMABLE = 1u << 4;
inline constexpr Gfp __GFP_HIGH = 1u << 5;
inline constexpr Gfp __GFP_IO = 1u << 6;
inline constexpr Gfp __GFP_FS = 1u << 7;
inline constexpr Gfp __GFP_ZERO = 1u << 8;
inline constexpr Gfp __GFP_DIRECT_RECLAIM = 1u << 10;
inline constexpr Gfp __GFP_KSWAPD_RECLAIM = 1u << 11;
inline constexpr Gfp __GFP_WRITE = 1u << 12;
inline constexpr Gfp __GFP_NOWARN = 1u << 13;
inline constexpr Gfp __GFP_RETRY_MAYFAIL = 1u << 14;
inline constexpr Gfp __GFP_NOFAIL = 1u << 15;
inline constexpr Gfp __GFP_NORETRY = 1u << 16;
inline constexpr Gfp __GFP_MEMALLOC = 1u << 17;
inline constexpr Gfp __GFP_COMP = 1u << 18;
inline constexpr Gfp __GFP_NOMEMALLOC = 1u << 19;
inline constexpr Gfp __GFP_HARDWALL = 1u << 20;
inline constexpr Gfp __GFP_THISNODE = 1u << 21;
inline constexpr Gfp __GFP_ACCOUNT = 1u << 22;

inline constexpr Gfp __GFP_RECLAIM = __GFP_DIRECT_RECLAIM | __GFP_KSWAPD_RECLAIM;
inline constexpr Gfp GFP_MOVABLE_MASK = __GFP_RECLAIMABLE | __GFP_MOVABLE;

inline constexpr Gfp GFP_ATOMIC = __GFP_HIGH | __GFP_KSWAPD_RECLAIM;
inline constexpr Gfp GFP_KERNEL = __GFP_RECLAIM | __GFP_IO | __GFP_FS;
inline constexpr Gfp GFP_KERNEL_ACCOUNT = GFP_KERNEL | __GFP_ACCOUNT;
inline constexpr Gfp GFP_NOWAIT = __GFP_KSWAPD_RECLAIM | __GFP_NOWARN;
inline constexpr Gfp GFP_NOIO = __GFP_RECLAIM;
inline constexpr Gfp GFP_NOFS = __GFP_RECLAIM | __GFP_IO;
inline constexpr Gfp GFP_USER = __GFP_RECLAIM | __GFP_IO | __GFP_FS | __GFP_HARDWALL;
inline constexpr Gfp GFP_DMA32 = __GFP_DMA32;
inline constexpr Gfp GFP_HIGHUSER = GFP_USER | __GFP_HIGHMEM;
inline constexpr Gfp GFP_HIGHUSER_MOVABLE = GFP_HIGHUSER | __GFP_MOVABLE;
inline constexpr Gfp GFP_TRANSHUGE_LIGHT =
    (GFP_HIGHUSER_MOVABLE | __GFP_COMP | __GFP_NOMEMALLOC | __GFP_NOWARN) & ~__GFP_RECLAIM;
inline constexpr Gfp GFP_TRANSHUGE = GFP_TRANSHUGE_LIGHT | __GFP_DIRECT_RECLAIM;
// Slab caches created with SLAB_RECLAIM_ACCOUNT allocate with this.
inline constexpr Gfp GFP_KERNEL_RECLAIMABLE = GFP_KERNEL | __GFP_RECLAIMABLE;

// alloc_flags of mm/internal.h (values are the model's; meanings are the kernel's).
inline constexpr unsigned ALLOC_WMARK_MIN = 0;
inline constexpr unsigned ALLOC_WMARK_LOW = 1;
inline constexpr unsigned ALLOC_WMARK_HIGH = 2;
inline constexpr unsigned ALLOC_NO_WATERMARKS = 0x04;
inline constexpr unsigned ALLOC_WMARK_MASK = ALLOC_NO_WATERMARKS - 1;
inline constexpr unsigned ALLOC_OOM = 0x08;
inline constexpr unsigned ALLOC_NON_BLOCK = 0x10;
inline constexpr unsigned ALLOC_MIN_RESERVE = 0x20;
inline constexpr unsigned ALLOC_CPUSET = 0x40;
inline constexpr unsigned ALLOC_CMA = 0x80;
inline constexpr unsigned ALLOC_NOFRAGMENT = 0x100;
inline constexpr unsigned ALLOC_HIGHATOMIC = 0x200;
inline constexpr unsigned ALLOC_KSWAPD = 0x800;
inline constexpr unsigned ALLOC_RESERVES =
    ALLOC_NON_BLOCK | ALLOC_MIN_RESERVE | ALLOC_HIGHATOMIC | ALLOC_OOM;

// "GFP_KERNEL", "GFP_HIGHUSER_MOVABLE|__GFP_ZERO", ... for traces and messages,
// from the one table of names (gfp_names.hpp) that traces are read with.
std::string gfp_name(Gfp gfp);

}  // namespace exmem::model::phys
