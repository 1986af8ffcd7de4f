// Vaults (exmem_vault_*): an exclusive mapping of its own that is PROT_NONE
// while no one uses it. The mapping is made by the arena beside shared regions
// (heap/apart.cpp: guard units, the maximum, MADV_DONTFORK); this unit owns the
// handle: the count of opens per access and the protection that follows from
// them, changed under the vault's mutex so that concurrent opens and closes
// always leave the protection the counts call for.
#include <exmem/exmem.h>

#include <pthread.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <new>

#include "diagnostics.hpp"
#include "error.hpp"
#include "heap/arena.hpp"
#include "heap/heap.hpp"

using namespace exmem;

struct exmem_vault {
  static constexpr uint64_t kMagic = 0x746c7561566d6d78ull;  // "xmmVault"
  uint64_t magic = kMagic;
  void* addr = nullptr;
  size_t len = 0;
  uint64_t generation = 0;  // heap::fork_generation() at creation
  pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
  uint32_t readers = 0;  // outstanding EXMEM_VAULT_READ opens (under mu)
  uint32_t writers = 0;  // outstanding EXMEM_VAULT_READ_WRITE opens (under mu)
  // The access the mapping allows now (0, EXMEM_VAULT_READ, _READ_WRITE),
  // written under mu after the mprotect; read by heap::arena_find().
  std::atomic<int> access{0};
};

namespace {

constexpr size_t kMaxVault = size_t{1} << 40;

class Hold {
 public:
  explicit Hold(pthread_mutex_t* m) : m_(m) { pthread_mutex_lock(m_); }
  ~Hold() { pthread_mutex_unlock(m_); }
  Hold(const Hold&) = delete;
  Hold& operator=(const Hold&) = delete;

 private:
  pthread_mutex_t* m_;
};

const char* access_name(int access) {
  return access == EXMEM_VAULT_READ ? "EXMEM_VAULT_READ" : "EXMEM_VAULT_READ_WRITE";
}

// The access the counts call for: read-write wins over read.
int wanted(const exmem_vault* v) {
  return v->writers ? EXMEM_VAULT_READ_WRITE : v->readers ? EXMEM_VAULT_READ : 0;
}

backend::Access backend_access(int access) {
  return access == EXMEM_VAULT_READ_WRITE ? backend::Access::read_write
         : access == EXMEM_VAULT_READ     ? backend::Access::read
                                          : backend::Access::none;
}

// Makes the mapping allow what the counts call for. pre: v->mu held.
int apply(exmem_vault* v) {
  int want = wanted(v);
  if (want == v->access.load(std::memory_order_relaxed)) return EXMEM_OK;
  if (backend::Failure f = backend::protect(v->addr, v->len, backend_access(want)); f.failed())
    return diagnostics::mapping_failed(f, v->len, 0);
  v->access.store(want, std::memory_order_release);
  return EXMEM_OK;
}

// EXMEM_OK when v is a vault handle usable in this process; else the error,
// worded for `who`.
int check_handle(const exmem_vault* v, const char* who) {
  if (!v) return detail::set_error(EXMEM_E_INVALID, "%s: the vault is NULL", who);
  if (v->magic != exmem_vault::kMagic)
    return detail::set_error(EXMEM_E_INVALID, "%s(%p): not a vault made by exmem_vault_create (or destroyed)", who,
                             static_cast<const void*>(v));
  if (v->generation != heap::fork_generation())
    return detail::set_error(EXMEM_E_INVALID,
                             "%s(%p): the vault was made by an ancestor process; a child created by fork() "
                             "cannot reach it (vaults are never inherited)",
                             who, static_cast<const void*>(v));
  return EXMEM_OK;
}

bool valid_access(int access) { return access == EXMEM_VAULT_READ || access == EXMEM_VAULT_READ_WRITE; }

}  // namespace

extern "C" {

struct exmem_vault* exmem_vault_create(size_t size) {
  if (size == 0 || size > kMaxVault) {
    detail::set_error(EXMEM_E_INVALID, "exmem_vault_create: size %zu: expected 1 to %zu bytes", size, kMaxVault);
    errno = EINVAL;
    return nullptr;
  }
  auto* v = new (std::nothrow) exmem_vault();
  if (!v) {
    detail::set_error(EXMEM_E_NO_MEMORY, "exmem_vault_create: cannot allocate the vault's handle");
    errno = ENOMEM;
    return nullptr;
  }
  backend::Region r;
  backend::Kind kind = backend::Kind::none;
  if (heap::arena_map_apart(heap::Use::vault, size, -1, backend::Kind::none, &v->access, &r, &kind) != EXMEM_OK) {
    delete v;
    errno = ENOMEM;
    return nullptr;
  }
  v->addr = r.addr;
  v->len = r.len;
  v->generation = heap::fork_generation();
  return v;
}

void* exmem_vault_open(struct exmem_vault* v, int access) {
  if (check_handle(v, "exmem_vault_open") != EXMEM_OK) {
    errno = EINVAL;
    return nullptr;
  }
  if (!valid_access(access)) {
    detail::set_error(EXMEM_E_INVALID,
                      "exmem_vault_open(%p, %d): the access must be EXMEM_VAULT_READ (1) or EXMEM_VAULT_READ_WRITE (3)",
                      static_cast<void*>(v), access);
    errno = EINVAL;
    return nullptr;
  }
  Hold h(&v->mu);
  uint32_t& count = access == EXMEM_VAULT_READ ? v->readers : v->writers;
  if (count == UINT32_MAX) {
    detail::set_error(EXMEM_E_INVALID, "exmem_vault_open(%p): too many outstanding %s opens",
                      static_cast<void*>(v), access_name(access));
    errno = EINVAL;
    return nullptr;
  }
  ++count;
  if (apply(v) != EXMEM_OK) {
    --count;
    errno = ENOMEM;
    return nullptr;
  }
  return v->addr;
}

int exmem_vault_close(struct exmem_vault* v, int access) {
  if (int rc = check_handle(v, "exmem_vault_close"); rc != EXMEM_OK) return rc;
  if (!valid_access(access))
    return detail::set_error(
        EXMEM_E_INVALID,
        "exmem_vault_close(%p, %d): the access must be EXMEM_VAULT_READ (1) or EXMEM_VAULT_READ_WRITE (3)",
        static_cast<void*>(v), access);
  Hold h(&v->mu);
  uint32_t& count = access == EXMEM_VAULT_READ ? v->readers : v->writers;
  if (count == 0)
    return detail::set_error(EXMEM_E_INVALID,
                             "exmem_vault_close(%p, %s): no %s open is outstanding (%u read, %u read-write): each "
                             "close must match an open of the same access",
                             static_cast<void*>(v), access_name(access), access_name(access), v->readers, v->writers);
  --count;
  if (int rc = apply(v); rc != EXMEM_OK) {
    ++count;  // the protection did not change: the open stands, the close may be retried
    return rc;
  }
  return EXMEM_OK;
}

size_t exmem_vault_size(const struct exmem_vault* v) {
  return v && v->magic == exmem_vault::kMagic ? v->len : 0;
}

int exmem_vault_destroy(struct exmem_vault* v) {
  if (!v) return EXMEM_OK;
  if (v->magic == exmem_vault::kMagic && v->generation != heap::fork_generation()) {
    // An ancestor's vault: its pages were never in this process; only the
    // handle (this process's copy of it) is released. Its mutex may have been
    // held by another thread at fork() and is not touched.
    v->magic = 0;
    delete v;  // trivially destructible: the mutex is left as it is
    return EXMEM_OK;
  }
  if (int rc = check_handle(v, "exmem_vault_destroy"); rc != EXMEM_OK) return rc;
  {
    Hold h(&v->mu);
    if (v->readers || v->writers)
      return detail::set_error(EXMEM_E_INVALID,
                               "exmem_vault_destroy(%p): %u read and %u read-write opens are outstanding; close them "
                               "first (nothing was released)",
                               static_cast<void*>(v), v->readers, v->writers);
    // Wipe before the pages go: locked memory is not cleared when unmapped.
    if (backend::Failure f = backend::protect(v->addr, v->len, backend::Access::read_write); f.failed())
      return diagnostics::mapping_failed(f, v->len, 0);
    v->access.store(EXMEM_VAULT_READ_WRITE, std::memory_order_release);
    heap::wipe(v->addr, v->len);
    if (int rc = heap::arena_unmap_apart(heap::Use::vault, backend::Region{v->addr, v->len, -1},
                                         "exmem_vault_destroy");
        rc != EXMEM_OK) {
      backend::protect(v->addr, v->len, backend::Access::none);
      v->access.store(0, std::memory_order_release);
      return rc;
    }
    v->magic = 0;
  }
  pthread_mutex_destroy(&v->mu);
  delete v;
  return EXMEM_OK;
}

}  // extern "C"
