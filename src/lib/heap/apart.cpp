// Mappings apart from the slabs: shared regions (exmem_share_*) and vaults
// (exmem_vault_*). Each is an exclusive mapping of its own inside the heap's
// reservation, between guard units, counted towards exmem_config.maximum like
// regions and large objects, and kept out of children (MADV_DONTFORK) in both
// fork modes.
#include <exmem/exmem.h>

#include "diagnostics.hpp"
#include "error.hpp"
#include "heap/arena.hpp"
#include "heap/arena_state.hpp"

namespace exmem::heap {

int arena_map_apart(Use use, size_t len, int fd, backend::Kind kind, const std::atomic<int>* access,
                    backend::Region* out, backend::Kind* kind_out) {
  ArenaLock l;
  Arena& a = arena();
  if (int rc = ensure_initialized(a); rc != EXMEM_OK) return rc;
  len = round_up(len, kPage);
  // Exclusive memory this heap holds: it counts towards exmem_config.maximum
  // as regions and large objects do.
  if (int rc = check_maximum(a, len); rc != EXMEM_OK) return rc;
  size_t units = len / kSlabSize + 1, first = 0;
  if (!take_extent(a, units, &first))
    return detail::set_error(EXMEM_E_NO_MEMORY, "the heap's address-space reservation is exhausted (asked %zu bytes)",
                             len);
  void* addr = g_layout.base + first * kSlabSize;
  backend::Region r;
  backend::Failure f;
  if (use == Use::received) {
    f = backend::map_fd(addr, len, fd, kind, &r);
  } else {
    backend::MapOptions o;
    o.kind = a.kind;
    o.dontfork = true;
    // A shared region is a file passed to other processes; a vault stays in
    // this one (under the locked backend: private, wiped on fork).
    o.keep_fd = use == Use::shared;
    o.shared = use == Use::shared;
    f = backend::map(addr, len, o, &r);
    kind = a.kind;
    // A vault is born closed: no one can touch it before its first open.
    if (!f.failed() && use == Use::vault) {
      f = backend::protect(r.addr, r.len, backend::Access::none);
      if (f.failed()) backend::unmap(r);
    }
  }
  if (f.failed()) {
    give_extent(a, first, units);
    return diagnostics::mapping_failed(f, len, use == Use::received ? 0 : a.mapped_bytes);
  }
  record_mapping(a, r, use, kind, use == Use::vault ? access : nullptr);
  if (use == Use::vault) ++a.vaults;
  *out = r;
  *kind_out = kind;
  return EXMEM_OK;
}

int arena_unmap_apart(Use use, const backend::Region& r, const char* who) {
  ArenaLock l;
  Arena& a = arena();
  auto it = a.mapped.find(reinterpret_cast<uintptr_t>(r.addr));
  bool ok = a.ready && it != a.mapped.end() && it->second.len == r.len &&
            (it->second.use == use || (use == Use::shared && it->second.use == Use::received));
  if (!ok)
    return detail::set_error(EXMEM_E_INVALID, "%s: %p (+%zu bytes) is not a %s of this heap", who, r.addr, r.len,
                             use == Use::vault ? "vault" : "shared region");
  if (it->second.use == Use::vault) --a.vaults;
  unmap_extent(a, r, r.len / kSlabSize + 1);
  return EXMEM_OK;
}

}  // namespace exmem::heap
