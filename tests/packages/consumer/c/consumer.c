/* Built against the installed libexmem-dev with pkg-config: allocates a
 * secret and checks what protects it. */
#include <exmem/exmem.h>

#include <stdio.h>
#include <string.h>

int main(void) {
  char *s = exmem_alloc(32);
  if (!s) {
    fprintf(stderr, "c consumer: exmem_alloc: %s\n", exmem_last_error_message());
    return 1;
  }
  strcpy(s, "an installed secret");
  int p = exmem_protection();
  int here = exmem_is_exclusive(s);
  printf("c consumer: protection %d, secret of %zu bytes with protection %d\n", p, exmem_usable_size(s), here);
  exmem_free(s);
  return (p == EXMEM_PROT_SECRET || p == EXMEM_PROT_LOCKED) && here == p ? 0 : 1;
}
