// RLIMIT_MEMLOCK and CAP_IPC_LOCK: how much exclusive memory this process may
// map. memfd_secret mappings (and mlock) are charged to RLIMIT_MEMLOCK at mmap
// time and refused beyond it, unless the process has CAP_IPC_LOCK.
//
// Facts plus the functions that word them; the buffer-taking ones allocate
// nothing and never throw, for the library's error paths.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace exmem::host {

struct MemlockFacts {
  std::optional<std::uint64_t> soft;          // RLIMIT_MEMLOCK, bytes; nullopt: unlimited
  std::optional<std::uint64_t> hard;
  std::optional<std::uint64_t> locked_bytes;  // VmLck of this process
  bool caps_known = false;                    // CapEff was readable
  bool cap_ipc_lock = false;                  // CAP_IPC_LOCK in CapEff
};

inline constexpr std::uint64_t kNoLimit = ~std::uint64_t{0};
// From the limits (kNoLimit for RLIM_INFINITY) and the text of /proc/self/status.
MemlockFacts memlock_facts(std::uint64_t soft, std::uint64_t hard, std::string_view status);
// This process's, now.
MemlockFacts memlock_facts();

// What the limit means for this process, one sentence.
std::size_t word_memlock_limit(const MemlockFacts& facts, char* buf, std::size_t size);
// The message for a mapping of `asked` bytes the limit refused with errno err:
// the limit, what is locked already, and the remedies. snprintf's contract.
std::size_t word_memlock_refusal(const MemlockFacts& facts, std::uint64_t asked, int err, char* buf,
                                 std::size_t size);
std::string memlock_limit_meaning(const MemlockFacts& facts);
std::string memlock_refusal(const MemlockFacts& facts, std::uint64_t asked, int err);

// "8 MiB (8388608 bytes)", or "unlimited" for nullopt. snprintf's contract.
std::size_t format_limit(const std::optional<std::uint64_t>& limit, char* buf, std::size_t size);
std::string limit_text(const std::optional<std::uint64_t>& limit);

}  // namespace exmem::host
