/* Holds exmem memory until it exits: what `exmem trace record` must mark. */
#include <exmem/exmem.h>
#include <stdio.h>
#include <string.h>

int main(void) {
  for (int i = 0; i < 1000; ++i) {
    char *p = exmem_alloc(32);
    if (!p) {
      fprintf(stderr, "secret_holder: %s\n", exmem_last_error_message());
      return 1;
    }
    memset(p, i & 0xff, 32);
  }
  return exmem_protection() == EXMEM_PROT_SECRET ? 0 : 2;
}
