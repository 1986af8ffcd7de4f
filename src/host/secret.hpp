// memfd_secret(2): the system call, and why it is unavailable when it is.
//
// The diagnosis is facts plus one function that words them, so that the
// library's fallback message, its EXMEM_E_NO_SECRET error and `exmem probe`
// say the same sentence. Everything here that takes a buffer allocates
// nothing and never throws: the library calls it on its error paths.
#pragma once

#include <sys/syscall.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace exmem::host {

#ifdef SYS_memfd_secret
inline constexpr long kSysMemfdSecret = SYS_memfd_secret;
#else
inline constexpr long kSysMemfdSecret = 447;  // the same number on every architecture that has it
#endif

// memfd_secret(flags): a descriptor, or -1 with errno set.
int memfd_secret(unsigned flags);

// What decides whether memfd_secret works here.
struct SecretFacts {
  int err = 0;                      // errno of memfd_secret; 0 when it gave a descriptor
  char kernel[65] = {};             // uname release; empty when unknown
  bool has_enable_param = false;    // /sys/module/secretmem/parameters/enable exists
  char enable_param[16] = {};       // ...and reads this ("Y", "N")
  bool has_cmdline_enable = false;  // secretmem.enable= is on /proc/cmdline
  char cmdline_enable[64] = {};     // ...with this value
  std::optional<std::uint64_t> seccomp_mode;  // Seccomp: of /proc/self/status
};

// The facts beside an errno the caller got from memfd_secret (0: it worked).
SecretFacts secret_facts(int err);
// Calls memfd_secret(O_CLOEXEC) once (closing what it gives) and gathers the facts.
SecretFacts check_secret();

// One sentence: why memfd_secret is unavailable, and the remedy when there is
// one ("available: ..." when err is 0). Written into buf as snprintf does;
// returns the length the whole sentence needs.
std::size_t word_secret_unavailable(const SecretFacts& facts, char* buf, std::size_t size);
// secret_facts(err) worded: what the library says for an errno of memfd_secret.
std::size_t why_secret_unavailable(int err, char* buf, std::size_t size);
// word_secret_unavailable as a string.
std::string secret_reason(const SecretFacts& facts);

// "ENOSYS (Function not implemented)", into buf as snprintf does.
std::size_t format_errno(int err, char* buf, std::size_t size);
std::string errno_text(int err);

}  // namespace exmem::host
