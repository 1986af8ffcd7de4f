// Allocates a secret through the C++ interface and checks what protects it.
#include <exmem/exmem.hpp>

#include <cstdio>

int main() {
  exmem::secret<unsigned long> key(0x1122334455667788ul);
  exmem::string text("an installed secret, longer than the small-string buffer");
  int p = exmem::protection();
  std::printf("c++ consumer: protection %d, key %s, text of %zu bytes\n", p,
              *key == 0x1122334455667788ul ? "intact" : "damaged", text.size());
  return (p == EXMEM_PROT_SECRET || p == EXMEM_PROT_LOCKED) && *key == 0x1122334455667788ul ? 0 : 1;
}
