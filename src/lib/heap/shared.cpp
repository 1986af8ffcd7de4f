// Shared regions (exmem_share_*): exclusive files mapped inside the heap's
// reservation, between guard units, but outside the heap's slabs.
#include <exmem/exmem.h>

#include "diagnostics.hpp"
#include "error.hpp"
#include "heap/arena.hpp"
#include "heap/arena_state.hpp"

namespace exmem::heap {

int arena_map_shared(size_t len, int fd, backend::Kind kind, backend::Region* out, backend::Kind* kind_out) {
  ArenaLock l;
  Arena& a = arena();
  if (int rc = ensure_initialized(a); rc != EXMEM_OK) return rc;
  len = round_up(len, kPage);
  // Shared regions are exclusive memory this heap holds: they count towards
  // exmem_config.maximum as regions and large objects do.
  if (int rc = check_maximum(a, len); rc != EXMEM_OK) return rc;
  size_t units = len / kSlabSize + 1, first = 0;
  if (!take_extent(a, units, &first))
    return detail::set_error(EXMEM_E_NO_MEMORY, "the heap's address-space reservation is exhausted (asked %zu bytes)",
                             len);
  void* addr = g_layout.base + first * kSlabSize;
  backend::Region r;
  backend::Failure f;
  if (fd < 0) {
    backend::MapOptions o = map_options(a);
    o.keep_fd = true;
    o.dontfork = true;
    o.shared = true;
    f = backend::map(addr, len, o, &r);
    kind = a.kind;
  } else {
    f = backend::map_fd(addr, len, fd, kind, &r);
  }
  if (f.failed()) {
    give_extent(a, first, units);
    return diagnostics::mapping_failed(f, len, fd < 0 ? a.mapped_bytes : 0);
  }
  a.mapped.emplace(reinterpret_cast<uintptr_t>(r.addr), len);
  a.mapped_bytes += len;
  *out = r;
  *kind_out = kind;
  return EXMEM_OK;
}

int arena_unmap_shared(const backend::Region& r) {
  ArenaLock l;
  Arena& a = arena();
  auto it = a.mapped.find(reinterpret_cast<uintptr_t>(r.addr));
  if (!a.ready || it == a.mapped.end() || it->second != r.len)
    return detail::set_error(EXMEM_E_INVALID, "exmem_share_release: %p (+%zu bytes) is not a shared region of this heap",
                             r.addr, r.len);
  unmap_extent(a, r, r.len / kSlabSize + 1);
  return EXMEM_OK;
}

}  // namespace exmem::heap
