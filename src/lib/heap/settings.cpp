#include "heap/settings.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include <exmem/exmem.h>

#include "error.hpp"
#include "heap/size_class.hpp"

namespace exmem::heap {

namespace {

constexpr size_t kDefaultGrowth = size_t{1} << 20;
constexpr size_t kDefaultSpan = size_t{64} << 30;  // address space only

size_t round_up(size_t v, size_t a) { return (v + a - 1) / a * a; }

int validate(const exmem_config& c) {
  if (c.policy < EXMEM_PREFER_SECRET || c.policy > EXMEM_LOCKED_ONLY)
    return detail::set_error(EXMEM_E_INVALID,
                             "exmem_config.policy = %d: expected EXMEM_PREFER_SECRET (0), EXMEM_REQUIRE_SECRET (1) "
                             "or EXMEM_LOCKED_ONLY (2)",
                             c.policy);
  if (c.fork_mode < EXMEM_FORK_PRIVATE || c.fork_mode > EXMEM_FORK_SHARE)
    return detail::set_error(EXMEM_E_INVALID,
                             "exmem_config.fork_mode = %d: expected EXMEM_FORK_PRIVATE (0) or EXMEM_FORK_SHARE (1)",
                             c.fork_mode);
  if (c.maximum != 0 && c.reserve > c.maximum)
    return detail::set_error(EXMEM_E_INVALID, "exmem_config.reserve (%zu bytes) exceeds exmem_config.maximum (%zu bytes)",
                             c.reserve, c.maximum);
  if (c.growth > (size_t{1} << 40) || c.reserve > (size_t{1} << 44))
    return detail::set_error(EXMEM_E_INVALID, "exmem_config.growth (%zu) or reserve (%zu) is implausibly large",
                             c.growth, c.reserve);
  return EXMEM_OK;
}

struct Named {
  const char* name;
  int value;
};

// The value of the variable among the names, or -1 (and the error set).
int from_environment(const char* var, const Named (&names)[3], int count, int* out) {
  const char* v = secure_getenv(var);
  if (!v) return EXMEM_OK;
  for (int i = 0; i < count; ++i)
    if (std::strcmp(v, names[i].name) == 0) {
      *out = names[i].value;
      return EXMEM_OK;
    }
  char expected[96] = "";
  for (int i = 0; i < count; ++i) {
    std::strncat(expected, i ? (i + 1 == count ? " or " : ", ") : "", sizeof expected - std::strlen(expected) - 1);
    std::strncat(expected, names[i].name, sizeof expected - std::strlen(expected) - 1);
  }
  return detail::set_error(EXMEM_E_INVALID, "the environment variable %s = '%.64s': expected %s", var, v, expected);
}

}  // namespace

int apply_environment(exmem_config* cfg) {
  static constexpr Named kPolicies[3] = {{"prefer-secret", EXMEM_PREFER_SECRET},
                                         {"require-secret", EXMEM_REQUIRE_SECRET},
                                         {"locked-only", EXMEM_LOCKED_ONLY}};
  static constexpr Named kForks[3] = {{"private", EXMEM_FORK_PRIVATE}, {"share", EXMEM_FORK_SHARE}, {"", 0}};
  static constexpr Named kSwitch[3] = {{"0", 0}, {"1", 1}, {"", 0}};
  int policy = cfg->policy, fork_mode = cfg->fork_mode, canaries = cfg->canaries;
  if (int rc = from_environment("EXMEM_POLICY", kPolicies, 3, &policy); rc != EXMEM_OK) return rc;
  if (int rc = from_environment("EXMEM_FORK", kForks, 2, &fork_mode); rc != EXMEM_OK) return rc;
  if (int rc = from_environment("EXMEM_CANARIES", kSwitch, 2, &canaries); rc != EXMEM_OK) return rc;
  cfg->policy = policy;
  cfg->fork_mode = fork_mode;
  cfg->canaries = canaries;
  return EXMEM_OK;
}

int resolve_settings(const exmem_config* cfg, Settings* out) {
  exmem_config c = cfg ? *cfg : exmem_config{};
  if (!cfg)
    if (int rc = apply_environment(&c); rc != EXMEM_OK) return rc;
  if (int rc = validate(c); rc != EXMEM_OK) return rc;
  Settings s;
  s.reserve = c.reserve;
  s.growth = c.growth;
  s.maximum = c.maximum;
  s.source = c.policy == EXMEM_LOCKED_ONLY      ? Source::locked_only
             : c.policy == EXMEM_REQUIRE_SECRET ? Source::require_secret
                                                : Source::prefer_secret;
  s.fork_share = c.fork_mode == EXMEM_FORK_SHARE;
  s.canaries = c.canaries != 0;
  s.quiet = c.quiet != 0;
  s.span = kDefaultSpan;
  if (c.maximum) s.span = std::clamp(round_up(c.maximum, kSlabSize) * 4, size_t{1} << 30, kDefaultSpan);
  s.growth_step = c.growth ? round_up(c.growth, kSlabSize) : kDefaultGrowth;
  *out = s;
  return EXMEM_OK;
}

}  // namespace exmem::heap
