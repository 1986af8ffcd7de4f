// Set-up and reporting: exmem_init's contract (once per process, identical
// repeats accepted, conflicting ones refused, out-of-range values rejected,
// reserve honoured), exmem_protection, exmem_strerror. Each configuration runs
// in a fresh process.
#include <exmem/exmem.h>
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <set>
#include <string>

#include "support/test_util.hpp"

using namespace exmem_test;

namespace {

TEST(Protection, DefaultPolicyUsesMemfdSecretWhereTheKernelHasIt) {
  REQUIRE_MEMFD_SECRET();
  EXPECT_EQ(exmem_protection(), EXMEM_PROT_SECRET) << last_error_text();
  struct exmem_stats s{};
  ASSERT_EQ(exmem_stats(&s), 0);
  EXPECT_EQ(s.protection, EXMEM_PROT_SECRET);
}

TEST(Strerror, EveryErrorCodeHasItsOwnDescription) {
  std::set<std::string> seen;
  for (int code = EXMEM_OK; code <= EXMEM_E_PROTOCOL; ++code) {
    const char* s = exmem_strerror(code);
    ASSERT_NE(s, nullptr) << "code " << code;
    EXPECT_GT(std::strlen(s), 0u) << "code " << code;
    EXPECT_TRUE(seen.insert(s).second) << "code " << code << " shares its description: " << s;
  }
  for (int code : {-1, 9, 1000}) {
    const char* s = exmem_strerror(code);
    ASSERT_NE(s, nullptr) << "unknown code " << code;
    EXPECT_GT(std::strlen(s), 0u);
  }
}

int repeat_and_conflict() {
  exmem_config cfg{};
  cfg.growth = 2 * MiB;
  cfg.canaries = 1;
  CHILD_CHECK(exmem_init(&cfg) == EXMEM_OK, "first init: %s", last_error_text().c_str());
  CHILD_CHECK(exmem_init(&cfg) == EXMEM_OK, "an identical second init must succeed: %s", last_error_text().c_str());
  void* p = exmem_alloc(10);
  CHILD_CHECK(p, "alloc: %s", last_error_text().c_str());
  CHILD_CHECK(exmem_init(&cfg) == EXMEM_OK, "an identical init after use must succeed: %s", last_error_text().c_str());
  exmem_config other = cfg;
  other.canaries = 0;
  int rc = exmem_init(&other);
  CHILD_CHECK(rc == EXMEM_E_ALREADY, "a conflicting init returned %d, expected EXMEM_E_ALREADY", rc);
  CHILD_CHECK(exmem_last_error() == EXMEM_E_ALREADY, "the last error is not set: %s", last_error_text().c_str());
  rc = exmem_init(nullptr);
  CHILD_CHECK(rc == EXMEM_E_ALREADY, "init(NULL) (the defaults) after a custom config returned %d", rc);
  exmem_free(p);
  return 0;
}

TEST(Init, IdenticalRepeatsSucceedAndAConflictingConfigIsRefused) {
  EXPECT_IN_FRESH_PROCESS(repeat_and_conflict);
}

int defaults_after_first_use() {
  void* p = exmem_alloc(10);  // sets up the defaults
  CHILD_CHECK(p, "alloc: %s", last_error_text().c_str());
  CHILD_CHECK(exmem_init(nullptr) == EXMEM_OK, "init(NULL) after implicit set-up: %s", last_error_text().c_str());
  exmem_config zero{};
  CHILD_CHECK(exmem_init(&zero) == EXMEM_OK, "an all-zero config is the defaults: %s", last_error_text().c_str());
  exmem_config locked{};
  locked.policy = EXMEM_LOCKED_ONLY;
  CHILD_CHECK(exmem_init(&locked) == EXMEM_E_ALREADY, "changing the policy after set-up must be refused");
  exmem_free(p);
  return 0;
}

TEST(Init, FirstAllocationSetsUpTheDefaults) { EXPECT_IN_FRESH_PROCESS(defaults_after_first_use); }

int rejects(const char* what, exmem_config cfg) {
  int rc = exmem_init(&cfg);
  CHILD_CHECK(rc == EXMEM_E_INVALID, "%s: exmem_init returned %d, expected EXMEM_E_INVALID (%s)", what, rc,
              last_error_text().c_str());
  return 0;
}

int out_of_range_values() {
  exmem_config c{};
  c.policy = 3;
  rejects("policy 3", c);
  c = {};
  c.policy = -1;
  rejects("policy -1", c);
  c = {};
  c.fork_mode = 2;
  rejects("fork_mode 2", c);
  c = {};
  c.reserve = 8 * MiB;
  c.maximum = 4 * MiB;
  rejects("reserve above maximum", c);
  // A rejected config leaves the process free to choose a valid one.
  c = {};
  c.canaries = 1;
  CHILD_CHECK(exmem_init(&c) == EXMEM_OK, "a valid init after rejected ones: %s", last_error_text().c_str());
  return 0;
}

TEST(Init, OutOfRangeValuesAreRejectedWithEXMEM_E_INVALID) { EXPECT_IN_FRESH_PROCESS(out_of_range_values); }

// EXMEM_POLICY and EXMEM_FORK configure a program that never calls exmem_init
// (the preload's users); an explicit config wins over them.
int environment_policy_locked_only() {
  setenv("EXMEM_POLICY", "locked-only", 1);
  void* p = exmem_alloc(64);
  CHILD_CHECK(p != nullptr, "exmem_alloc under EXMEM_POLICY=locked-only: %s", last_error_text().c_str());
  CHILD_CHECK(exmem_protection() == EXMEM_PROT_LOCKED, "EXMEM_POLICY=locked-only gave protection %d",
              exmem_protection());
  exmem_free(p);
  return 0;
}

TEST(Environment, ExmemPolicyLockedOnlyChoosesTheLockedBackendWithoutExmemInit) {
  EXPECT_IN_FRESH_PROCESS(environment_policy_locked_only);
}

int environment_bad_value() {
  setenv("EXMEM_POLICY", "secretish", 1);
  void* p = exmem_alloc(64);
  CHILD_CHECK(p == nullptr, "an allocation succeeded under EXMEM_POLICY=secretish");
  CHILD_CHECK(exmem_last_error() == EXMEM_E_INVALID, "error %d, expected EXMEM_E_INVALID", exmem_last_error());
  std::string m = last_error_text();
  CHILD_CHECK(m.find("EXMEM_POLICY") != std::string::npos && m.find("secretish") != std::string::npos &&
                  m.find("require-secret") != std::string::npos,
              "the message does not name the variable, its value and the values expected: %s", m.c_str());
  // Mended, the next allocation sets the heap up.
  setenv("EXMEM_POLICY", "prefer-secret", 1);
  p = exmem_alloc(64);
  CHILD_CHECK(p != nullptr, "after the variable was mended: %s", last_error_text().c_str());
  exmem_free(p);
  setenv("EXMEM_FORK", "sometimes", 1);
  // The heap is set up already: the variable is not read again.
  CHILD_CHECK(exmem_alloc(8) != nullptr, "a bad EXMEM_FORK is read after set-up");
  return 0;
}

TEST(Environment, ABadValueRefusesSetUpNamingTheVariableTheValueAndTheChoices) {
  EXPECT_IN_FRESH_PROCESS(environment_bad_value);
}

int environment_explicit_config_wins() {
  setenv("EXMEM_POLICY", "locked-only", 1);
  setenv("EXMEM_FORK", "nonsense", 1);
  exmem_config c{};
  c.policy = EXMEM_PREFER_SECRET;
  CHILD_CHECK(exmem_init(&c) == EXMEM_OK, "exmem_init with a config: %s", last_error_text().c_str());
  CHILD_CHECK(exmem_protection() == EXMEM_PROT_SECRET, "the explicit config lost to EXMEM_POLICY: protection %d",
              exmem_protection());
  return 0;
}

TEST(Environment, AnExplicitConfigIsNotOverriddenByTheEnvironment) {
  REQUIRE_MEMFD_SECRET();
  EXPECT_IN_FRESH_PROCESS(environment_explicit_config_wins);
}

int environment_fork_share() {
  setenv("EXMEM_FORK", "share", 1);
  char* p = static_cast<char*>(exmem_alloc(64));
  CHILD_CHECK(p != nullptr, "exmem_alloc: %s", last_error_text().c_str());
  std::strcpy(p, "inherited");
  pid_t pid = fork();
  if (pid == 0) _exit(std::strcmp(p, "inherited") == 0 ? 0 : 1);  // faults under EXMEM_FORK_PRIVATE
  int status = 0;
  CHILD_CHECK(waitpid(pid, &status, 0) == pid, "waitpid");
  CHILD_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "the child of EXMEM_FORK=share could not read the inherited object (status %d)", status);
  return 0;
}

TEST(Environment, ExmemForkShareLetsTheChildReadInheritedObjects) {
  EXPECT_IN_FRESH_PROCESS(environment_fork_share);
}

int reserve_up_front() {
  long before = status_kb("VmLck");
  exmem_config cfg{};
  cfg.reserve = 6 * MiB;
  CHILD_CHECK(exmem_init(&cfg) == EXMEM_OK, "init(reserve 6 MiB): %s", last_error_text().c_str());
  struct exmem_stats s{};
  CHILD_CHECK(exmem_stats(&s) == 0, "stats");
  CHILD_CHECK(s.reserved_bytes >= 6 * MiB, "reserved %zu bytes, asked 6 MiB up front", s.reserved_bytes);
  CHILD_CHECK(s.exclusive_pages * page_size() >= 6 * MiB, "only %zu exclusive pages after reserving 6 MiB",
              s.exclusive_pages);
  long after = status_kb("VmLck");
  CHILD_CHECK((after - before) * 1024 >= static_cast<long>(6 * MiB), "VmLck grew by %ld kB only", after - before);
  // Allocations within the reserve need no new region.
  size_t regions = s.regions;
  std::vector<void*> v;
  for (int i = 0; i < 20000; ++i) v.push_back(exmem_alloc(64));
  for (void* p : v) CHILD_CHECK(p, "alloc: %s", last_error_text().c_str());
  CHILD_CHECK(exmem_stats(&s) == 0 && s.regions == regions, "regions went from %zu to %zu within the reserve",
              regions, s.regions);
  for (void* p : v) exmem_free(p);
  return 0;
}

TEST(Init, ReserveIsMappedAndFaultedInUpFront) {
  REQUIRE_MEMFD_SECRET();
  EXPECT_IN_FRESH_PROCESS(reserve_up_front);
}

}  // namespace
