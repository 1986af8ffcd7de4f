// policy/: policies for unmapped pages (see policy.hpp for what the folder owns).
// secretmem_common.hpp: what the secretmem pool designs share: the size of the
// secretmem= CMA area and taking / giving back a 2 MiB chunk of it.
#pragma once

#include <fmt/format.h>

#include <algorithm>

#include "model/policy/policy.hpp"
#include "model/policy/pool.hpp"

namespace exmem::model::policy {

// secretmem=, the parameter of the pool designs that take 2 MiB chunks from a
// CMA area reserved at boot: `[machine] secretmem` in a scenario, --secretmem.
inline const ParamSpec& secretmem_param() {
  static const ParamSpec p{"secretmem",
                           "--secretmem",
                           ParamSpec::Kind::Size,
                           2 * MiB,
                           2 * TiB,
                           2 * MiB,
                           true,
                           {},
                           "",
                           "secretmem= CMA area of the pool policies",
                           "default: RAM / 256, at least 16MiB"};
  return p;
}

// The area's size: the one given, else RAM / 256 (at least 16 MiB), in 2 MiB units.
inline std::uint64_t secretmem_area_bytes(const Params& params, std::uint64_t ram_bytes) {
  const std::uint64_t given = params.size(secretmem_param());
  const std::uint64_t b = given != 0 ? given : std::max(16 * MiB, ram_bytes / 256);
  return b & ~(2 * MiB - 1);
}

// cma_alloc(512 pages, order 9), then the chunk leaves the direct map as one
// range with one flush and joins the pool.
inline int grow_from_cma(const PolicyContext& c, ChunkPool& pool, CpuId cpu) {
  const Result<Pfn> r = c.phys.cma_alloc(kPagesPer2M, kPageblockOrder);
  if (!r.ok()) return r.err;
  c.phys.set_kind(r.value, kPageblockOrder, phys::FrameKind::Unmapped);
  const int err = unmap_range(c, r.value, kPagesPer2M, cpu);
  if (err != 0) {
    c.phys.set_kind(r.value, kPageblockOrder, phys::FrameKind::CmaAllocated);
    c.phys.cma_release(r.value, kPagesPer2M);
    return err;
  }
  pool.add(r.value);
  return 0;
}

// A wholly free chunk goes back: into the direct map as one range, then cma_release().
inline void release_to_cma(const PolicyContext& c, ChunkPool& pool, Pfn start, CpuId cpu) {
  pool.remove(start);
  map_range(c, start, kPagesPer2M, cpu);
  c.phys.set_kind(start, kPageblockOrder, phys::FrameKind::CmaAllocated);
  c.phys.cma_release(start, kPagesPer2M);
}

// Every chunk lies inside the CMA area.
inline std::vector<std::string> check_chunks_in_cma(const phys::PhysMem& phys, const ChunkPool& pool,
                                                    std::string_view who) {
  std::vector<std::string> v;
  const phys::PfnRange cma = phys.cma_area();
  for (const Pfn c : pool.starts()) {
    if (c < cma.start || c + kPagesPer2M > cma.end) {
      v.push_back(fmt::format("{}: chunk {:#x} is outside the CMA area", who, c));
    }
  }
  return v;
}

}  // namespace exmem::model::policy
