// libgcrypt's secure memory served by exmem through gcry_set_allocation_handler.
// libgcrypt 1.10.1's src/global.c dispatches every allocation through the
// handlers once they are set: do_malloc() calls the secure handler for
// GCRY_ALLOC_FLAG_SECURE (unless GCRYCTL_DISABLE_SECMEM set no_secure_memory)
// and falls back to _gcry_private_malloc when the non-secure handler is NULL;
// _gcry_is_secure() asks is_secure_func; _gcry_realloc_core() and _gcry_free()
// call realloc_func / free_func for every pointer, secure or not, which is why
// those two dispatch on ownership here. Nothing else in libgcrypt calls its
// private allocator. _gcry_set_allocation_handler() runs global_init() first
// and returns without installing in FIPS mode.
#include <dlfcn.h>
#include <pthread.h>

#include <cerrno>
#include <cstdlib>

#include <exmem/exmem.h>

#include "dropin.hpp"

namespace exmem::dropin {

namespace {

// gcrypt.h's enum gcry_ctl_cmds (stable ABI; the header is not needed to build).
constexpr int kGcryctlInitializationFinishedP = 39;
constexpr int kGcryctlFipsModeP = 55;

using AllocFn = void* (*)(size_t);
using CheckFn = int (*)(const void*);
using ReallocFn = void* (*)(void*, size_t);
using FreeFn = void (*)(void*);
using SetHandlerFn = void (*)(AllocFn, AllocFn, CheckFn, ReallocFn, FreeFn);
using ControlFn = unsigned (*)(int, ...);  // gcry_error_t gcry_control(enum gcry_ctl_cmds, ...)

std::atomic<bool> g_installed{false};
pthread_mutex_t g_install_lock = PTHREAD_MUTEX_INITIALIZER;

void* secure_alloc(size_t n) {
  if (n == 0) {  // as _gcry_private_malloc_secure
    errno = EINVAL;
    return nullptr;
  }
  if (!ready()) {
    errno = ENOMEM;
    return nullptr;
  }
  void* p = exmem_alloc(n);
  if (p) g_gcrypt.allocated();
  return p;
}

int is_secure(const void* p) { return owns(p) ? 1 : 0; }

void* realloc_any(void* p, size_t n) {
  if (owns(p)) return exmem_realloc(p, n);  // stays secure; the old copy is wiped
  return std::realloc(p, n);
}

void free_any(void* p) {
  if (owns(p)) {
    exmem_free(p);
    g_gcrypt.freed();
    return;
  }
  std::free(p);
}

}  // namespace

bool gcrypt_install(bool late) {
  if (g_installed.load(std::memory_order_acquire)) return true;
  auto set = reinterpret_cast<SetHandlerFn>(dlsym(RTLD_DEFAULT, "gcry_set_allocation_handler"));
  auto control = reinterpret_cast<ControlFn>(dlsym(RTLD_DEFAULT, "gcry_control"));
  if (!set || !control) return false;
  pthread_mutex_lock(&g_install_lock);
  bool ok = g_installed.load(std::memory_order_relaxed);
  if (!ok) {
    if (control(kGcryctlInitializationFinishedP, 0) != 0) {
      // Its own pool may hold secure objects that handlers could not free.
      say("libgcrypt finished its initialisation before %s: its secure memory stays in its own pool (call "
          "exmem_dropin before gcry_check_version)",
          late ? "exmem_dropin was called" : "the drop-in's constructor ran");
    } else {
      set(nullptr, secure_alloc, is_secure, realloc_any, free_any);
      if (control(kGcryctlFipsModeP, 0) != 0)
        say("libgcrypt is in FIPS mode, which refuses allocation handlers: its secure memory stays in its own pool");
      else
        ok = true;
    }
    g_installed.store(ok, std::memory_order_release);
  }
  pthread_mutex_unlock(&g_install_lock);
  return ok;
}

}  // namespace exmem::dropin
