// Extents of the reservation: runs of 64 KiB units, each mapping followed by at
// least one unmapped guard unit. First fit over the freed extents, then a bump
// pointer over units never used.
#include <exmem/exmem.h>

#include "diagnostics.hpp"
#include "error.hpp"
#include "heap/arena_state.hpp"

namespace exmem::heap {

bool take_extent(Arena& a, size_t units, size_t* first) {
  for (auto it = a.free_extents.begin(); it != a.free_extents.end(); ++it) {
    if (it->second >= units) {
      *first = it->first;
      size_t rest = it->second - units;
      size_t at = it->first + units;
      a.free_extents.erase(it);
      if (rest) a.free_extents.emplace(at, rest);
      return true;
    }
  }
  if (a.bump + units > a.nunits) return false;
  *first = a.bump;
  a.bump += units;
  return true;
}

void give_extent(Arena& a, size_t first, size_t units) {
  auto it = a.free_extents.emplace(first, units).first;
  auto next = std::next(it);
  if (next != a.free_extents.end() && it->first + it->second == next->first) {
    it->second += next->second;
    a.free_extents.erase(next);
  }
  if (it != a.free_extents.begin()) {
    auto prev = std::prev(it);
    if (prev->first + prev->second == it->first) {
      prev->second += it->second;
      a.free_extents.erase(it);
    }
  }
}

backend::MapOptions map_options(const Arena& a) {
  backend::MapOptions o;
  o.kind = a.kind;
  o.dontfork = !a.settings.fork_share;
  o.shared = a.settings.fork_share;
  return o;
}

int check_maximum(const Arena& a, size_t len) {
  size_t maximum = a.settings.maximum;
  if (maximum && a.mapped_bytes + len > maximum)
    return detail::set_error(EXMEM_E_MAXIMUM,
                             "the configured maximum of %zu bytes of exclusive memory would be exceeded: %zu held, "
                             "%zu more asked (raise exmem_config.maximum)",
                             maximum, a.mapped_bytes, len);
  return EXMEM_OK;
}

void record_mapping(Arena& a, const backend::Region& r, Use use, backend::Kind kind,
                    const std::atomic<int>* access) {
  a.mapped.emplace(reinterpret_cast<uintptr_t>(r.addr), Mapping{r.len, use, kind, access});
  a.mapped_bytes += r.len;
}

int map_extent(Arena& a, size_t len, Use use, const backend::MapOptions& opt, backend::Region* r, size_t* first,
               size_t* units) {
  *units = len / kSlabSize + 1;
  if (!take_extent(a, *units, first))
    return detail::set_error(EXMEM_E_NO_MEMORY,
                             "the heap's %zu-byte address-space reservation is exhausted (asked %zu bytes)",
                             a.nunits * kSlabSize, len);
  if (backend::Failure f = backend::map(g_layout.base + *first * kSlabSize, len, opt, r); f.failed()) {
    give_extent(a, *first, *units);
    return diagnostics::mapping_failed(f, len, a.mapped_bytes);
  }
  record_mapping(a, *r, use, opt.kind);
  return EXMEM_OK;
}

void unmap_extent(Arena& a, const backend::Region& r, size_t units) {
  backend::unmap(r);
  a.mapped.erase(reinterpret_cast<uintptr_t>(r.addr));
  a.mapped_bytes -= r.len;
  size_t first = static_cast<size_t>(static_cast<uint8_t*>(r.addr) - g_layout.base) / kSlabSize;
  give_extent(a, first, units);
}

}  // namespace exmem::heap
