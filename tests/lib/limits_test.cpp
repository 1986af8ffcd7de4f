// Exhaustion is an error, never a crash: when the configured maximum or
// RLIMIT_MEMLOCK (without CAP_IPC_LOCK) stops the heap, allocation returns NULL
// with errno ENOMEM and a precise last error, the C++ API throws exmem::bad_alloc
// carrying it, and every object handed out before stays usable (no SIGBUS).
// Each configuration runs in a fresh process.
#include <exmem/exmem.h>
#include <gtest/gtest.h>
#include <sys/capability.h>
#include <sys/resource.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <exmem/exmem.hpp>
#include <vector>

#include "support/test_util.hpp"

using namespace exmem_test;

namespace {

// Fills v with 32-byte objects (each holding its index) until allocation fails
// or `bound` objects exist. Returns errno of the failure.
int allocate_until_null(std::vector<void*>& v, size_t bound) {
  for (;;) {
    errno = 0;
    void* p = exmem_alloc(32);
    if (!p) return errno;
    *static_cast<size_t*>(p) = v.size();
    v.push_back(p);
    if (v.size() >= bound) return 0;
  }
}

void verify_all(const std::vector<void*>& v) {
  for (size_t i = 0; i < v.size(); ++i)
    CHILD_CHECK(*static_cast<size_t*>(v[i]) == i, "object %zu at %p lost its contents", i, v[i]);
}

bool mentions_remedy(const std::string& m) {
  return contains(m, "ulimit") || contains(m, "limits.conf") || contains(m, "CAP_IPC_LOCK") ||
         contains(m, "LimitMEMLOCK");
}

bool has_digit(const std::string& m) { return m.find_first_of("0123456789") != std::string::npos; }

// ---- Maximum -----------------------------------------------------------------------

int maximum_reached() {
  constexpr size_t kMax = 4 * MiB;
  exmem_config cfg{};
  cfg.maximum = kMax;
  CHILD_CHECK(exmem_init(&cfg) == EXMEM_OK, "exmem_init(maximum = 4 MiB): %s", last_error_text().c_str());
  CHILD_CHECK(exmem_protection() == EXMEM_PROT_SECRET, "not on memfd_secret");

  std::vector<void*> v;
  v.reserve(kMax / 16 + 1);
  int err = allocate_until_null(v, kMax / 16 + 1);
  CHILD_CHECK(v.size() <= kMax / 32, "%zu 32-byte objects exceed the 4 MiB maximum", v.size());
  CHILD_CHECK(err == ENOMEM, "errno %d (%s), expected ENOMEM", err, std::strerror(err));
  CHILD_CHECK(exmem_last_error() == EXMEM_E_MAXIMUM, "%s", last_error_text().c_str());
  CHILD_CHECK(contains(exmem_last_error_message(), "maximum"), "the message does not name the maximum: %s",
              exmem_last_error_message());
  CHILD_CHECK(v.size() * 32 >= kMax / 2, "only %zu objects (%zu bytes) fit under a 4 MiB maximum", v.size(),
              v.size() * 32);
  struct exmem_stats s{};
  CHILD_CHECK(exmem_stats(&s) == 0, "stats");
  CHILD_CHECK(s.reserved_bytes <= kMax, "reserved %zu bytes over the %zu maximum", s.reserved_bytes, kMax);
  std::fprintf(stderr, "maximum 4 MiB: %zu objects of 32 bytes, reserved %zu\n", v.size(), s.reserved_bytes);
  verify_all(v);

  errno = 0;
  CHILD_CHECK(exmem_alloc(5 * MiB) == nullptr, "a 5 MiB object was allocated under a 4 MiB maximum");
  CHILD_CHECK(errno == ENOMEM && exmem_last_error() == EXMEM_E_MAXIMUM, "errno %d, %s", errno,
              last_error_text().c_str());

  try {
    exmem::secret<std::array<char, 32>> s32;
    CHILD_CHECK(false, "exmem::secret was constructed past the maximum");
  } catch (const exmem::bad_alloc& e) {
    CHILD_CHECK(e.error() == EXMEM_E_MAXIMUM, "exmem::bad_alloc carries %d: %s", e.error(), e.what());
  }

  for (size_t i = 0; i < 1000; ++i) exmem_free(v[i]);
  void* p = exmem_alloc(32);
  CHILD_CHECK(p != nullptr, "freeing objects did not make room under the maximum: %s", last_error_text().c_str());
  exmem_free(p);
  for (size_t i = 1000; i < v.size(); ++i) exmem_free(v[i]);
  return 0;
}

TEST(Maximum, AllocationFailsWithENOMEMAndEXMEM_E_MAXIMUMWhenTheCapIsReached) {
  REQUIRE_MEMFD_SECRET();
  EXPECT_IN_FRESH_PROCESS(maximum_reached);
}

// ---- RLIMIT_MEMLOCK without CAP_IPC_LOCK ---------------------------------

void drop_ipc_lock_and_limit_memlock(rlim_t bytes) {
  cap_t caps = cap_get_proc();
  CHILD_CHECK(caps != nullptr, "cap_get_proc: %s", std::strerror(errno));
  cap_value_t which[] = {CAP_IPC_LOCK};
  CHILD_CHECK(cap_set_flag(caps, CAP_EFFECTIVE, 1, which, CAP_CLEAR) == 0 &&
                  cap_set_flag(caps, CAP_PERMITTED, 1, which, CAP_CLEAR) == 0 &&
                  cap_set_flag(caps, CAP_INHERITABLE, 1, which, CAP_CLEAR) == 0,
              "cap_set_flag: %s", std::strerror(errno));
  CHILD_CHECK(cap_set_proc(caps) == 0, "cap_set_proc: %s", std::strerror(errno));
  cap_free(caps);
  caps = cap_get_proc();
  cap_flag_value_t eff = CAP_SET, perm = CAP_SET;
  cap_get_flag(caps, CAP_IPC_LOCK, CAP_EFFECTIVE, &eff);
  cap_get_flag(caps, CAP_IPC_LOCK, CAP_PERMITTED, &perm);
  cap_free(caps);
  CHILD_CHECK(eff == CAP_CLEAR && perm == CAP_CLEAR, "CAP_IPC_LOCK is still held");
  rlimit rl{bytes, bytes};
  CHILD_CHECK(setrlimit(RLIMIT_MEMLOCK, &rl) == 0, "setrlimit(RLIMIT_MEMLOCK): %s", std::strerror(errno));
  long locked = status_kb("VmLck");
  CHILD_CHECK(locked == 0, "this fresh process already has %ld kB locked", locked);
}

int memlock_exhaustion() {
  drop_ipc_lock_and_limit_memlock(8 * MiB);
  CHILD_CHECK(exmem_protection() == EXMEM_PROT_SECRET, "not on memfd_secret: %s", last_error_text().c_str());

  std::vector<void*> v;
  v.reserve(8 * MiB / 16 + 1);
  int err = allocate_until_null(v, 8 * MiB / 16 + 1);
  std::fprintf(stderr, "RLIMIT_MEMLOCK 8 MiB: %zu live 32-byte secrets; then: %s\n", v.size(),
               last_error_text().c_str());
  CHILD_CHECK(err == ENOMEM, "errno %d (%s), expected ENOMEM", err, std::strerror(err));
  CHILD_CHECK(v.size() >= 200000, "only %zu 32-byte secrets under an 8 MiB RLIMIT_MEMLOCK (>= 200,000 required)",
              v.size());
  CHILD_CHECK(exmem_last_error() == EXMEM_E_MEMLOCK, "%s", last_error_text().c_str());
  std::string msg = exmem_last_error_message();
  CHILD_CHECK(contains(msg, "RLIMIT_MEMLOCK"), "the message does not name RLIMIT_MEMLOCK: %s", msg.c_str());
  CHILD_CHECK(has_digit(msg), "the message does not say how much was asked: %s", msg.c_str());
  CHILD_CHECK(mentions_remedy(msg), "the message does not say how to raise the limit: %s", msg.c_str());
  struct exmem_stats s{};
  CHILD_CHECK(exmem_stats(&s) == 0, "stats");
  CHILD_CHECK(s.memlock_bytes <= 8 * MiB, "stats.memlock_bytes %zu exceeds the limit", s.memlock_bytes);
  verify_all(v);  // every object handed out is still usable: no SIGBUS

  // A large object fails the same way.
  errno = 0;
  CHILD_CHECK(exmem_alloc(2 * MiB) == nullptr, "a 2 MiB object was allocated past RLIMIT_MEMLOCK");
  CHILD_CHECK(errno == ENOMEM && exmem_last_error() == EXMEM_E_MEMLOCK, "errno %d, %s", errno,
              last_error_text().c_str());

  // The C++ API throws exmem::bad_alloc with the reason; it is a std::bad_alloc.
  try {
    exmem::vector<char> big;
    big.reserve(MiB);
    CHILD_CHECK(false, "exmem::vector reserved 1 MiB past RLIMIT_MEMLOCK");
  } catch (const exmem::bad_alloc& e) {
    CHILD_CHECK(e.error() == EXMEM_E_MEMLOCK, "exmem::bad_alloc carries %d: %s", e.error(), e.what());
    CHILD_CHECK(contains(e.what(), "RLIMIT_MEMLOCK"), "what() does not name RLIMIT_MEMLOCK: %s", e.what());
  }
  bool caught_as_std = false;
  try {
    exmem::secret<std::array<unsigned char, 32>> key;
  } catch (const std::bad_alloc& e) {
    caught_as_std = contains(e.what(), "RLIMIT_MEMLOCK");
  }
  CHILD_CHECK(caught_as_std, "exmem::secret did not throw a std::bad_alloc naming RLIMIT_MEMLOCK");

  // Freeing makes room again.
  for (size_t i = 0; i < v.size(); i += 2) exmem_free(v[i]);
  for (int i = 0; i < 1000; ++i) {
    void* p = exmem_alloc(32);
    CHILD_CHECK(p != nullptr, "no room after freeing half the objects: %s", last_error_text().c_str());
    exmem_free(p);
  }
  for (size_t i = 1; i < v.size(); i += 2) {
    CHILD_CHECK(*static_cast<size_t*>(v[i]) == i, "object %zu lost its contents", i);
    exmem_free(v[i]);
  }
  return 0;
}

TEST(Memlock, AtLeast200000SecretsFitIn8MiBAndThenAllocationFailsWithTheReason) {
  REQUIRE_MEMFD_SECRET();
  if (::geteuid() != 0)
    std::fprintf(stderr, "note: not root; dropping CAP_IPC_LOCK is then a no-op and the test still applies\n");
  EXPECT_IN_FRESH_PROCESS(memlock_exhaustion);
}

int memlock_refuses_first_region() {
  drop_ipc_lock_and_limit_memlock(16 * KiB);
  errno = 0;
  void* p = exmem_alloc(32);
  CHILD_CHECK(p == nullptr, "an allocation succeeded under a 16 KiB RLIMIT_MEMLOCK (%s)", last_error_text().c_str());
  CHILD_CHECK(errno == ENOMEM, "errno %d", errno);
  CHILD_CHECK(exmem_last_error() == EXMEM_E_MEMLOCK, "%s", last_error_text().c_str());
  CHILD_CHECK(contains(exmem_last_error_message(), "RLIMIT_MEMLOCK"), "%s", exmem_last_error_message());
  return 0;
}

TEST(Memlock, ATinyLimitRefusesTheFirstRegionWithEXMEM_E_MEMLOCK) {
  REQUIRE_MEMFD_SECRET();
  EXPECT_IN_FRESH_PROCESS(memlock_refuses_first_region);
}

int memlock_refuses_reserve() {
  drop_ipc_lock_and_limit_memlock(8 * MiB);
  exmem_config cfg{};
  cfg.reserve = 16 * MiB;
  int rc = exmem_init(&cfg);
  CHILD_CHECK(rc == EXMEM_E_MEMLOCK, "exmem_init(reserve = 16 MiB) under an 8 MiB limit returned %d: %s", rc,
              last_error_text().c_str());
  CHILD_CHECK(contains(exmem_last_error_message(), "RLIMIT_MEMLOCK"), "%s", exmem_last_error_message());
  return 0;
}

TEST(Memlock, ReservingMoreThanTheLimitUpFrontFailsInit) {
  REQUIRE_MEMFD_SECRET();
  EXPECT_IN_FRESH_PROCESS(memlock_refuses_reserve);
}

}  // namespace
