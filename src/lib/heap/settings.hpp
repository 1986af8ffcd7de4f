// Settings: exmem_config resolved once, at set-up, into what the heap's units
// read (the backend to ask for, the address span to reserve, the region step,
// the cap, fork behaviour, canaries). Nothing below the C API reads
// exmem_config itself.
#pragma once

#include <cstddef>

struct exmem_config;

namespace exmem::heap {

enum class Source { prefer_secret, require_secret, locked_only };

struct Settings {
  // As asked (compared when exmem_init is called again).
  size_t reserve = 0;  // bytes to map and fault in at set-up
  size_t growth = 0;   // exmem_config.growth, 0 for the default
  size_t maximum = 0;  // cap on exclusive bytes held, 0: none
  Source source = Source::prefer_secret;
  bool fork_share = false;  // EXMEM_FORK_SHARE: children keep the regions
  bool canaries = false;
  bool quiet = false;
  // Derived.
  size_t span = 0;         // address space to reserve, at most (halved while refused)
  size_t growth_step = 0;  // bytes of the smallest region

  // Whether a later exmem_init asks for the same heap.
  bool same_request(const Settings& o) const {
    return reserve == o.reserve && growth == o.growth && maximum == o.maximum && source == o.source &&
           fork_share == o.fork_share && canaries == o.canaries && quiet == o.quiet;
  }
};

// Checks cfg and resolves it. cfg == nullptr means the program gave no
// configuration: the defaults, with the environment applied (apply_environment).
// Returns EXMEM_OK, or EXMEM_E_INVALID with the last error naming the field (or
// the variable) and what was expected.
int resolve_settings(const exmem_config* cfg, Settings* out);

// Overrides cfg's policy, fork mode and canaries with EXMEM_POLICY
// (prefer-secret, require-secret, locked-only), EXMEM_FORK (private, share) and
// EXMEM_CANARIES (0, 1) where they are set, for programs that do not configure the heap themselves (the preload's
// users). Read with secure_getenv: a set-user-ID program ignores them.
// Returns EXMEM_OK, or EXMEM_E_INVALID naming the variable, its value and the
// values expected (cfg is then unchanged).
int apply_environment(exmem_config* cfg);

}  // namespace exmem::heap
