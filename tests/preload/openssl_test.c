/* OpenSSL 3's secure heap, written to OpenSSL's documented API
 * (OPENSSL_secure_malloc(3), BN_secure_new(3), EVP_PKEY), natively and under
 * libexmem-preload. The program's references are versioned
 * (CRYPTO_secure_malloc@OPENSSL_3.0.0): landing in memfd_secret memory shows
 * the drop-in's unversioned definitions bind them; BN_secure_new's and the
 * Ed25519 key's allocations are libcrypto's own calls, through its PLT.
 *
 *   openssl_test native | preload */
#include "check.h"  /* first: it defines _GNU_SOURCE */
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>


static void* g_obj;

static int child_uses(void* arg) {
  (void)arg;
  if (!filled(g_obj, 64, 3)) return 3;
  OPENSSL_secure_clear_free(g_obj, 64);
  return 0;
}

/* OpenSSL 3.0's own CRYPTO_secure_used crashes when the secure heap was never
 * set up (its lock is NULL): only the drop-in's is called. */
static size_t secure_used(int preloaded) { return preloaded ? CRYPTO_secure_used() : 0; }

static void sign_verify(int preloaded) {
  size_t used0 = secure_used(preloaded);
  EVP_PKEY* key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
  CHECK(key != NULL, "Ed25519 key generation");
  if (preloaded) CHECK(CRYPTO_secure_used() > used0, "the Ed25519 private key lives in the secure heap");
  const unsigned char msg[] = "a message to sign";
  unsigned char sig[64];
  size_t siglen = sizeof sig;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  CHECK(EVP_DigestSignInit(ctx, NULL, NULL, NULL, key) == 1, "DigestSignInit");
  CHECK(EVP_DigestSign(ctx, sig, &siglen, msg, sizeof msg) == 1 && siglen == 64, "DigestSign");
  EVP_MD_CTX_free(ctx);
  ctx = EVP_MD_CTX_new();
  CHECK(EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, key) == 1, "DigestVerifyInit");
  CHECK(EVP_DigestVerify(ctx, sig, siglen, msg, sizeof msg) == 1, "the signature verifies");
  EVP_MD_CTX_free(ctx);
  EVP_PKEY_free(key);
  if (preloaded) CHECK(CRYPTO_secure_used() == used0, "freeing the key frees its secure memory");
}

int main(int argc, char** argv) {
  int preloaded = preloaded_mode(argc, argv, "native|preload");
  CHECK(CRYPTO_secure_malloc_initialized() == preloaded, "CRYPTO_secure_malloc_initialized");
  if (preloaded) {
    CHECK(CRYPTO_secure_malloc_init(32768, 16) == 1, "CRYPTO_secure_malloc_init returns 1 (the size is ignored)");
    CHECK(CRYPTO_secure_malloc_done() == 1, "no object live yet: _done is 1");
  }

  size_t used0 = secure_used(preloaded);
  unsigned char* p = OPENSSL_secure_malloc(64);
  CHECK(p != NULL, "OPENSSL_secure_malloc");
  CHECK(in_secretmem(p) == preloaded, "OPENSSL_secure_malloc's object %s in memfd_secret memory",
        preloaded ? "must be" : "must not be");
  CHECK(CRYPTO_secure_allocated(p) == preloaded, "CRYPTO_secure_allocated");
  fill(p, 64, 3);
  CHECK(filled(p, 64, 3), "contents survive");
  if (preloaded) {
    CHECK(CRYPTO_secure_actual_size(p) >= 64, "CRYPTO_secure_actual_size: %zu", CRYPTO_secure_actual_size(p));
    CHECK(CRYPTO_secure_used() >= used0 + 64, "CRYPTO_secure_used counts the object");
    CHECK(CRYPTO_secure_malloc_done() == 0, "an object is live: _done is 0, as OpenSSL's");
  }

  unsigned char* z = OPENSSL_secure_zalloc(300);
  CHECK(z != NULL && in_secretmem(z) == preloaded && all_bytes(z, 300, 0), "OPENSSL_secure_zalloc: zeroed");

  /* A pointer of the ordinary heap given to the secure free: OpenSSL frees it. */
  void* plain = OPENSSL_malloc(50);
  CHECK(plain && !CRYPTO_secure_allocated(plain), "OPENSSL_malloc's object is not secure");
  OPENSSL_secure_free(plain);
  plain = OPENSSL_malloc(50);
  OPENSSL_secure_clear_free(plain, 50);

  /* The gpg-agent pattern: allocate, fork, the child goes on with the object. */
  g_obj = p;
  int st = in_child(child_uses, NULL);
  CHECK(exited_ok(st), "a forked child uses and frees its parent's secure object (status %d)", st);
  CHECK(filled(p, 64, 3), "the child's free left the parent's object intact");

  OPENSSL_secure_clear_free(p, 64);
  if (preloaded) CHECK(all_bytes(p, 64, 0), "OPENSSL_secure_clear_free wipes the object");
  OPENSSL_secure_free(z);
  if (preloaded) {
    CHECK(CRYPTO_secure_used() == used0, "CRYPTO_secure_used back to %zu: %zu", used0, CRYPTO_secure_used());
    CHECK(CRYPTO_secure_malloc_done() == 1, "every object freed: _done is 1");
  }

  /* The random generators keep secure state until OPENSSL_cleanup: set them
   * up before measuring what libcrypto's own operations allocate and free. */
  unsigned char rnd[32];
  CHECK(RAND_bytes(rnd, sizeof rnd) == 1 && RAND_priv_bytes(rnd, sizeof rnd) == 1, "RAND_bytes");
  /* libcrypto's own secure allocations. */
  BIGNUM* b = BN_secure_new();
  CHECK(b != NULL && BN_get_flags(b, BN_FLG_SECURE), "BN_secure_new");
  /* The BIGNUM itself is ordinary memory; its digits, allocated inside
   * libcrypto (bn_expand_internal: OPENSSL_secure_zalloc), are secure. */
  size_t before = secure_used(preloaded);
  CHECK(BN_rand(b, 2048, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ANY) == 1 && BN_num_bits(b) == 2048, "BN_rand");
  if (preloaded)
    CHECK(CRYPTO_secure_used() >= before + 2048 / 8, "BN_secure_new's digits, allocated by libcrypto, are served: "
          "CRYPTO_secure_used %zu -> %zu", before, CRYPTO_secure_used());
  BN_clear_free(b);
  if (preloaded) CHECK(CRYPTO_secure_used() == before, "BN_clear_free frees the digits");

  sign_verify(preloaded);

  printf("openssl %s: ok\n", argv[1]);
  return 0;
}
