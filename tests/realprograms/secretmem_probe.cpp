// Exit 0 when memfd_secret(2) gives a descriptor here; otherwise print why
// (the same sentence as libexmem and `exmem probe`) and exit 1. The real-program
// tests skip loudly with this sentence rather than fail on a missing mapping.
#include <cstdio>

#include "host/secret.hpp"

int main() {
  const exmem::host::SecretFacts facts = exmem::host::check_secret();
  std::printf("%s\n", exmem::host::secret_reason(facts).c_str());
  return facts.err == 0 ? 0 : 1;
}
