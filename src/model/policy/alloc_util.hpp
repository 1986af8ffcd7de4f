// policy/: policies for unmapped pages (see policy.hpp for what the folder owns).
// alloc_util.hpp: the highest order the page allocator could serve now, as
// __rmqueue_fallback() and the unmapped caches look for it.
#pragma once

#include <algorithm>

#include "model/phys/physmem.hpp"

namespace exmem::model::policy {

// The highest order <= max_order with a free block in any zone (buddyinfo); -1: none.
inline int highest_free_order(const phys::PhysMem& phys, unsigned max_order) {
  int best = -1;
  for (unsigned z = 0; z < phys::MAX_NR_ZONES; ++z) {
    const auto info = phys.buddyinfo(z);
    for (unsigned o = kMaxPageOrder + 1; o-- > 0;) {
      if (info[o] == 0) continue;
      best = std::max(best, static_cast<int>(std::min(o, max_order)));
      break;
    }
  }
  return best;
}

// The largest block the page allocator gives now, at most max_order: tried
// from the highest order with a free block down to order 0 (the watermarks
// may refuse a high order that buddyinfo shows). order is set on success.
inline Result<Pfn> alloc_highest(phys::PhysMem& phys, unsigned max_order, CpuId cpu, phys::FrameKind kind,
                                 unsigned& order) {
  const int top = highest_free_order(phys, max_order);
  for (int o = top; o >= 0; --o) {
    const auto uo = static_cast<unsigned>(o);
    const phys::Gfp gfp = uo > 0 ? phys::GFP_KERNEL | phys::__GFP_NORETRY | phys::__GFP_NOWARN
                                 : phys::GFP_KERNEL;
    const Result<Pfn> r = phys.alloc_pages(gfp, uo, cpu, kind);
    if (r.ok()) {
      order = uo;
      return r;
    }
  }
  return Result<Pfn>::error(-ENOMEM);
}

}  // namespace exmem::model::policy
