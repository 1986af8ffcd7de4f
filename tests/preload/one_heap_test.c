/* A program linked with libexmem.so and run under libexmem-preload: the
 * preload's exmem_* come first, so the program and the drop-in share one heap.
 * The program configures the heap itself first (exmem_init), as a program
 * that uses exmem directly would: the drop-in uses that heap.
 *
 *   one_heap_test preload */
#include "check.h"  /* first: it defines _GNU_SOURCE */
#include <exmem/exmem.h>
#include <sodium.h>


int main(int argc, char** argv) {
  preloaded_mode(argc, argv, "preload");
  Dl_info info;
  CHECK(dladdr(dlsym(RTLD_DEFAULT, "exmem_alloc"), &info) && strstr(info.dli_fname, "exmem-preload"),
        "exmem_alloc resolves to the preload, not to %s", info.dli_fname);
  struct exmem_config cfg = {0};
  cfg.policy = EXMEM_REQUIRE_SECRET;
  cfg.fork_mode = EXMEM_FORK_PRIVATE;
  CHECK(exmem_init(&cfg) == EXMEM_OK, "the program's exmem_init: %s", exmem_last_error_message());
  CHECK(sodium_init() >= 0, "sodium_init");
  void* a = exmem_alloc(64);
  void* b = sodium_malloc(64);
  CHECK(a && b && in_secretmem(a) && in_secretmem(b), "both in memfd_secret memory");
  struct exmem_stats s;
  exmem_stats(&s);
  CHECK(s.live_objects == 2, "one heap holds both objects: %zu live", s.live_objects);
  CHECK(exmem_usable_size(b) >= 64, "the program's exmem_usable_size knows sodium_malloc's object");
  /* The program's configuration stands: exmem_init with it again is OK. */
  CHECK(exmem_init(&cfg) == EXMEM_OK, "the heap keeps the program's configuration");
  sodium_free(b);
  exmem_free(a);
  printf("one heap: ok\n");
  return 0;
}
