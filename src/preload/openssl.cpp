// OpenSSL 3's secure heap (crypto/mem_sec.c: the CRYPTO_secure_* family, with
// OpenSSL 3.0's signatures) served by exmem. libcrypto calls these through
// its PLT (BN_secure_new, the private keys of EVP_PKEY...), so its own
// allocations come here too. The definitions are unversioned: glibc's
// dynamic linker binds a versioned reference (CRYPTO_secure_malloc@OPENSSL_3.0.0)
// to an unversioned definition found first (tests/preload pins this).
#include <cerrno>
#include <cstddef>

#include <exmem/exmem.h>

#include "dropin.hpp"

namespace exmem::dropin {

namespace {

std::atomic<size_t> g_used{0};  // usable bytes of live objects (CRYPTO_secure_used)

void* served_alloc(size_t num) {
  if (!ready()) {
    errno = ENOMEM;
    return nullptr;
  }
  // OpenSSL's secure heap hands out a block for 0 bytes too: a unique pointer.
  void* p = exmem_calloc(1, num ? num : 1);  // zeroed: free objects are always zero
  if (!p) return nullptr;
  g_used.fetch_add(exmem_usable_size(p), std::memory_order_relaxed);
  g_openssl.allocated();
  return p;
}

void served_free(void* p) {
  g_used.fetch_sub(exmem_usable_size(p), std::memory_order_relaxed);
  exmem_free(p);  // wipes
  g_openssl.freed();
}

}  // namespace

bool openssl_served() { return next_symbol("CRYPTO_secure_malloc") != nullptr; }

}  // namespace exmem::dropin

using namespace exmem::dropin;

extern "C" {

// The pool's size and minimum block are OpenSSL's arena parameters; exmem
// grows on demand and needs neither.
EXMEM_API int CRYPTO_secure_malloc_init(size_t size, size_t minsize) {
  (void)size;
  (void)minsize;
  return ready() ? 1 : 0;
}

EXMEM_API int CRYPTO_secure_malloc_done(void) { return g_openssl.live.load(std::memory_order_relaxed) == 0 ? 1 : 0; }

EXMEM_API int CRYPTO_secure_malloc_initialized(void) { return 1; }

EXMEM_API void* CRYPTO_secure_malloc(size_t num, const char* file, int line) {
  (void)file;
  (void)line;
  return served_alloc(num);
}

EXMEM_API void* CRYPTO_secure_zalloc(size_t num, const char* file, int line) {
  (void)file;
  (void)line;
  return served_alloc(num);
}

EXMEM_API void CRYPTO_secure_free(void* ptr, const char* file, int line) {
  if (!ptr) return;
  if (owns(ptr)) return served_free(ptr);
  // As OpenSSL does for a pointer outside its secure arena.
  using Fn = void (*)(void*, const char*, int);
  static Fn fn = real<Fn>("CRYPTO_free");
  if (fn) fn(ptr, file, line);
}

EXMEM_API void CRYPTO_secure_clear_free(void* ptr, size_t num, const char* file, int line) {
  if (!ptr) return;
  if (owns(ptr)) return served_free(ptr);
  using Fn = void (*)(void*, size_t, const char*, int);
  static Fn fn = real<Fn>("CRYPTO_clear_free");
  if (fn) fn(ptr, num, file, line);
}

EXMEM_API int CRYPTO_secure_allocated(const void* ptr) { return owns(ptr) ? 1 : 0; }

EXMEM_API size_t CRYPTO_secure_actual_size(void* ptr) { return owns(ptr) ? exmem_usable_size(ptr) : 0; }

EXMEM_API size_t CRYPTO_secure_used(void) { return g_used.load(std::memory_order_relaxed); }

}  // extern "C"
