/* Threads racing to the drop-in's first call (the set-up runs once), then
 * allocating and freeing from libsodium's and OpenSSL's secure heaps at once,
 * freeing one another's objects.
 *
 *   threads_test preload */
#include "check.h"  /* first: it defines _GNU_SOURCE */

#include <openssl/crypto.h>
#include <pthread.h>
#include <sodium.h>

enum { kThreads = 8, kRounds = 2000, kSlots = 64 };
static void* g_slots[kThreads][kSlots];
static pthread_barrier_t g_start;

/* Slots of even index hold libsodium's objects, odd ones OpenSSL's. */
static void release(unsigned k, void* p) {
  if (k & 1) OPENSSL_secure_clear_free(p, 1);
  else sodium_free(p);
}

static void* worker(void* arg) {
  unsigned id = (unsigned)(uintptr_t)arg;
  pthread_barrier_wait(&g_start);
  for (unsigned r = 0; r < kRounds; ++r) {
    unsigned k = (r * 7u + id) % kSlots;
    /* Free what the next thread left in the same slot (a remote free). */
    void* old = __atomic_exchange_n(&g_slots[(id + 1) % kThreads][k], NULL, __ATOMIC_ACQ_REL);
    if (old) release(k, old);
    size_t n = 1 + (r * 37u + id) % 700;
    void* p = (k & 1) ? OPENSSL_secure_malloc(n) : sodium_malloc(n);
    if (!p) return (void*)1;
    if (r % 256 == 0 && !in_secretmem(p)) return (void*)2;
    memset(p, (int)id, n);
    void* prev = __atomic_exchange_n(&g_slots[id][k], p, __ATOMIC_ACQ_REL);
    if (prev) release(k, prev);
  }
  return NULL;
}

int main(int argc, char** argv) {
  preloaded_mode(argc, argv, "preload");
  CHECK(sodium_init() >= 0, "sodium_init");
  pthread_t t[kThreads];
  pthread_barrier_init(&g_start, NULL, kThreads);
  for (unsigned i = 0; i < kThreads; ++i)
    CHECK(pthread_create(&t[i], NULL, worker, (void*)(uintptr_t)i) == 0, "pthread_create");
  for (unsigned i = 0; i < kThreads; ++i) {
    void* rc;
    pthread_join(t[i], &rc);
    CHECK(rc == NULL, "thread %u failed (%p)", i, rc);
  }
  for (unsigned i = 0; i < kThreads; ++i)
    for (unsigned k = 0; k < kSlots; ++k)
      if (g_slots[i][k]) {
        CHECK(in_secretmem(g_slots[i][k]), "a served object outside memfd_secret memory");
        release(k, g_slots[i][k]);
      }
  CHECK(CRYPTO_secure_used() == 0 && CRYPTO_secure_malloc_done() == 1, "every OpenSSL object freed");
  printf("threads: ok\n");
  return 0;
}
