// The C API (include/exmem/exmem.h): argument checks and errno, over heap/.
#include <exmem/exmem.h>

#include <cerrno>
#include <cstring>

#include "error.hpp"
#include "heap/arena.hpp"
#include "heap/heap.hpp"
#include "heap/settings.hpp"
#include "public_types.hpp"

using namespace exmem;

extern "C" {

int exmem_init(const struct exmem_config* cfg) {
  heap::Settings s;
  if (int rc = heap::resolve_settings(cfg, &s); rc != EXMEM_OK) return rc;
  return heap::arena_init(s);
}

void* exmem_alloc(size_t size) { return heap::alloc(size); }

void* exmem_calloc(size_t n, size_t size) {
  size_t total;
  if (__builtin_mul_overflow(n, size, &total)) {
    detail::set_error(EXMEM_E_INVALID, "exmem_calloc(%zu, %zu): the product overflows size_t", n, size);
    errno = ENOMEM;
    return nullptr;
  }
  // Free objects are always zero (wiped at free, fresh pages are zero), so
  // there is nothing to clear.
  return heap::alloc(total);
}

void* exmem_realloc(void* p, size_t size) {
  if (!p) return heap::alloc(size);
  if (size == 0) {
    heap::free(p);
    return nullptr;
  }
  size_t have = heap::arena_usable_size(p);
  if (have == 0) {
    if (heap::arena_inherited(p))
      detail::fatal("exmem_realloc(%p): the object belongs to the parent process and is not mapped in this child "
                    "(EXMEM_FORK_PRIVATE)",
                    p);
    detail::fatal("exmem_realloc(%p): pointer not owned by the exmem heap", p);
  }
  if (size <= have && size > have / 2) return p;
  void* q = heap::alloc(size);
  if (!q) return nullptr;  // p is untouched
  std::memcpy(q, p, size < have ? size : have);
  heap::free(p);  // wipes the old copy
  return q;
}

void exmem_free(void* p) { heap::free(p); }

size_t exmem_usable_size(const void* p) { return heap::arena_usable_size(p); }

int exmem_protection(void) { return protection_of(heap::arena_protection()); }

const char* exmem_strerror(int error) {
  switch (error) {
    case EXMEM_OK:
      return "success";
    case EXMEM_E_INVALID:
      return "invalid argument";
    case EXMEM_E_NO_SECRET:
      return "memfd_secret is unavailable and the policy requires it";
    case EXMEM_E_MEMLOCK:
      return "RLIMIT_MEMLOCK refused the exclusive memory";
    case EXMEM_E_MAXIMUM:
      return "the configured maximum of exclusive memory is reached";
    case EXMEM_E_NO_MEMORY:
      return "out of memory";
    case EXMEM_E_SYSTEM:
      return "a system call failed";
    case EXMEM_E_ALREADY:
      return "the heap is already set up with another configuration";
    case EXMEM_E_PROTOCOL:
      return "malformed share message";
    default:
      return "unknown exmem error";
  }
}

int exmem_last_error(void) { return detail::last_error(); }
const char* exmem_last_error_message(void) { return detail::last_error_message(); }

int exmem_stats(struct exmem_stats* out) {
  if (!out) return detail::set_error(EXMEM_E_INVALID, "exmem_stats: the output pointer is NULL");
  heap::Stats s = heap::arena_stats();
  *out = {};
  out->live_objects = s.live_objects;
  out->live_bytes = s.live_bytes;
  out->reserved_bytes = s.mapped_bytes;
  out->exclusive_pages = s.secret_bytes / heap::kPage;
  out->memlock_bytes = s.mapped_bytes;
  out->mappings = s.mappings;
  out->regions = s.regions;
  out->protection = protection_of(s.kind);
  out->fallback_bytes = s.fallback_bytes;
  out->vaults = s.vaults;
  return EXMEM_OK;
}

int exmem_is_exclusive(const void* p) {
  heap::Found f = heap::arena_find(p);
  return f.found ? protection_of(f.kind) : EXMEM_PROT_NONE;
}

}  // extern "C"
