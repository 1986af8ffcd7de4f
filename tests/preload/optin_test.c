/* The link-time opt-in: this program links libexmem-preload ahead of
 * libsodium, libcrypto and libgcrypt (no LD_PRELOAD) and calls exmem_dropin.
 * It also uses the exmem API directly: one heap serves everything. */
#include "check.h"  /* first: it defines _GNU_SOURCE */
#include <exmem/dropin.h>
#include <gcrypt.h>
#include <openssl/crypto.h>
#include <sodium.h>


int main(void) {
  require_memfd_secret();
  /* The program uses libcrypto for its own sake, as a real one does (with
   * --as-needed, a libcrypto referenced for nothing but the secure heap would be
   * dropped: the drop-in defines those functions). */
  CHECK(OpenSSL_version_num() >= 0x30000000L, "OpenSSL 3");
  CHECK(exmem_dropin(EXMEM_DROPIN_ALL) == EXMEM_DROPIN_ALL, "exmem_dropin serves all three: 0x%x",
        exmem_dropin(EXMEM_DROPIN_ALL));
  CHECK(exmem_dropin(EXMEM_DROPIN_OPENSSL) == EXMEM_DROPIN_OPENSSL, "the mask is of the libraries asked about");
  CHECK(sodium_init() >= 0, "sodium_init");
  CHECK(gcry_check_version(GCRYPT_VERSION) != NULL, "gcry_check_version");

  struct exmem_stats s0, s1;
  exmem_stats(&s0);
  void* a = sodium_malloc(40);
  void* b = OPENSSL_secure_malloc(40);
  void* c = gcry_malloc_secure(40);
  void* d = exmem_alloc(40);
  CHECK(a && b && c && d, "allocations");
  CHECK(in_secretmem(a) && in_secretmem(b) && in_secretmem(c) && in_secretmem(d), "all four in memfd_secret memory");
  exmem_stats(&s1);
  CHECK(s1.live_objects == s0.live_objects + 4, "one heap: %zu live objects, expected %zu", s1.live_objects,
        s0.live_objects + 4);
  CHECK(exmem_usable_size(a) >= 40 && exmem_usable_size(b) >= 40 && exmem_usable_size(c) >= 40,
        "the program's exmem API sees the drop-in's objects");
  sodium_free(a);
  OPENSSL_secure_free(b);
  gcry_free(c);
  exmem_free(d);
  exmem_stats(&s1);
  CHECK(s1.live_objects == s0.live_objects, "all freed");
  printf("opt-in: ok\n");
  return 0;
}
