// Every system call the backend makes can fail; for each, the public API must
// return a clean error, leak nothing (descriptors, mappings, reserved bytes),
// and work again once the fault stops. Each case runs in a fresh process.
#include <gtest/gtest.h>

#include <dirent.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <tuple>

#include <exmem/exmem.h>

#include "exmem_testing.hpp"

namespace {

using exmem::testing::Call;

size_t open_fds() {
  size_t n = 0;
  DIR* d = opendir("/proc/self/fd");
  while (dirent* e = readdir(d))
    if (e->d_name[0] != '.') ++n;
  closedir(d);
  return n - 1;  // the directory stream itself
}

size_t vmas() {
  FILE* f = std::fopen("/proc/self/maps", "r");
  size_t n = 0;
  for (int c; (c = std::fgetc(f)) != EOF;)
    if (c == '\n') ++n;
  std::fclose(f);
  return n;
}

struct Snapshot {
  size_t fds, maps, reserved, live;
};
Snapshot snap() {
  struct exmem_stats s{};
  exmem_stats(&s);
  return {open_fds(), vmas(), s.reserved_bytes, s.live_objects};
}

// Runs body in a child process and expects it to exit 0; the child reports
// what went wrong on stderr.
template <class F>
void in_child(F body) {
  EXPECT_EXIT(
      {
        body();
        std::fflush(stderr);
        _exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}

#define CHECK_OR_DIE(cond, ...)                                     \
  do {                                                              \
    if (!(cond)) {                                                  \
      std::fprintf(stderr, "check failed: %s: ", #cond);            \
      std::fprintf(stderr, __VA_ARGS__);                            \
      std::fprintf(stderr, "\n");                                   \
      _exit(1);                                                     \
    }                                                               \
  } while (0)

// One allocation that needs a new region (a large object always does).
void* fresh_region_alloc() { return exmem_alloc(100000); }

using Case = std::tuple<Call, int, bool>;  // call, errno, every

class FailingCall : public ::testing::TestWithParam<Case> {};

TEST_P(FailingCall, GivesACleanErrorLeaksNothingAndRecovers) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  auto [call, err, every] = GetParam();
  in_child([call = call, err = err, every = every] {
    // Set the heap up first, so the fault hits region creation.
    void* warm = exmem_alloc(32);
    CHECK_OR_DIE(warm != nullptr, "%s", exmem_last_error_message());
    Snapshot before = snap();
    exmem::testing::clear_faults();
    exmem::testing::inject(call, err, 1, every);
    errno = 0;
    void* p = fresh_region_alloc();
    bool failed = p == nullptr;
    int saved = errno;
    exmem::testing::clear_faults();
    if (failed) {
      CHECK_OR_DIE(saved == ENOMEM, "errno %d after a failed %s", saved, exmem::testing::call_name(call));
      CHECK_OR_DIE(exmem_last_error() != EXMEM_OK, "no error code recorded");
      CHECK_OR_DIE(std::strlen(exmem_last_error_message()) > 10, "empty message");
      Snapshot after = snap();
      CHECK_OR_DIE(after.fds == before.fds, "descriptors %zu -> %zu", before.fds, after.fds);
      CHECK_OR_DIE(after.reserved == before.reserved, "reserved %zu -> %zu", before.reserved, after.reserved);
      CHECK_OR_DIE(after.maps == before.maps, "VMAs %zu -> %zu", before.maps, after.maps);
      CHECK_OR_DIE(after.live == before.live, "live objects %zu -> %zu", before.live, after.live);
    } else {
      exmem_free(p);
    }
    // Works again once the fault stops, and the earlier object is intact.
    void* q = fresh_region_alloc();
    CHECK_OR_DIE(q != nullptr, "no recovery after %s failed: %s", exmem::testing::call_name(call),
                 exmem_last_error_message());
    std::memset(q, 0x5a, 100000);
    exmem_free(q);
    std::memset(warm, 1, 32);
    exmem_free(warm);
  });
}

std::string CaseName(const ::testing::TestParamInfo<Case>& info) {
  auto [call, err, every] = info.param;
  std::string e = err == ENOMEM   ? "ENOMEM"
                  : err == EAGAIN ? "EAGAIN"
                  : err == ENOSYS ? "ENOSYS"
                  : err == EPERM  ? "EPERM"
                                  : "EMFILE";
  return std::string(exmem::testing::call_name(call)) + "_" + e + (every ? "_every" : "_first");
}

INSTANTIATE_TEST_SUITE_P(Backend, FailingCall,
                         ::testing::Combine(::testing::Values(Call::memfd_secret, Call::ftruncate, Call::mmap,
                                                              Call::madvise, Call::open, Call::read),
                                            ::testing::Values(ENOMEM, EAGAIN, ENOSYS, EPERM, EMFILE),
                                            ::testing::Bool()),
                         CaseName);

TEST(FailingCallAtSetUp, MemfdSecretEnosysFallsBackToLockedMemoryWhenThePolicyAllows) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  in_child([] {
    exmem::testing::inject(Call::memfd_secret, ENOSYS, 1, true);
    exmem_config cfg{};
    cfg.quiet = 1;
    CHECK_OR_DIE(exmem_init(&cfg) == EXMEM_OK, "%s", exmem_last_error_message());
    CHECK_OR_DIE(exmem_protection() == EXMEM_PROT_LOCKED, "protection %d", exmem_protection());
    void* p = exmem_alloc(64);
    CHECK_OR_DIE(p != nullptr, "%s", exmem_last_error_message());
    exmem_free(p);
  });
}

TEST(FailingCallAtSetUp, MemfdSecretEnosysFailsCleanlyWhenSecretIsRequired) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  in_child([] {
    exmem::testing::inject(Call::memfd_secret, ENOSYS, 1, true);
    exmem_config cfg{};
    cfg.policy = EXMEM_REQUIRE_SECRET;
    CHECK_OR_DIE(exmem_init(&cfg) == EXMEM_E_NO_SECRET, "%s", exmem_last_error_message());
    CHECK_OR_DIE(std::strstr(exmem_last_error_message(), "memfd_secret") != nullptr, "%s",
                 exmem_last_error_message());
    // Once the kernel offers it again, set-up succeeds.
    exmem::testing::clear_faults();
    CHECK_OR_DIE(exmem_init(&cfg) == EXMEM_OK, "%s", exmem_last_error_message());
    CHECK_OR_DIE(exmem_protection() == EXMEM_PROT_SECRET, "protection %d", exmem_protection());
  });
}

TEST(FailingCallAtSetUp, ReservationFailureLeavesTheHeapRetryable) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  in_child([] {
    exmem::testing::inject(Call::mmap, ENOMEM, 1, true);
    errno = 0;
    CHECK_OR_DIE(exmem_alloc(32) == nullptr, "allocated with mmap failing");
    CHECK_OR_DIE(errno == ENOMEM, "errno %d", errno);
    exmem::testing::clear_faults();
    void* p = exmem_alloc(32);
    CHECK_OR_DIE(p != nullptr, "%s", exmem_last_error_message());
    exmem_free(p);
  });
}

TEST(FailingCallLocked, MlockFailureIsAMemlockErrorAndRecovers) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  for (int err : {ENOMEM, EAGAIN, EPERM}) {
    in_child([err] {
      exmem_config cfg{};
      cfg.policy = EXMEM_LOCKED_ONLY;
      CHECK_OR_DIE(exmem_init(&cfg) == EXMEM_OK, "%s", exmem_last_error_message());
      void* warm = exmem_alloc(32);
      CHECK_OR_DIE(warm != nullptr, "%s", exmem_last_error_message());
      Snapshot before = snap();
      exmem::testing::inject(Call::mlock, err, 1, true);
      CHECK_OR_DIE(exmem_alloc(100000) == nullptr, "allocated with mlock failing");
      CHECK_OR_DIE(exmem_last_error() == EXMEM_E_MEMLOCK, "error %d: %s", exmem_last_error(),
                   exmem_last_error_message());
      CHECK_OR_DIE(std::strstr(exmem_last_error_message(), "RLIMIT_MEMLOCK") != nullptr, "%s",
                   exmem_last_error_message());
      Snapshot after = snap();
      CHECK_OR_DIE(after.maps == before.maps && after.reserved == before.reserved, "leaked a mapping");
      exmem::testing::clear_faults();
      void* p = exmem_alloc(100000);
      CHECK_OR_DIE(p != nullptr, "%s", exmem_last_error_message());
      exmem_free(p);
      exmem_free(warm);
    });
  }
}

TEST(FailingCallShare, ShareCreateFailsCleanlyAndRecovers) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  for (Call c : {Call::memfd_secret, Call::ftruncate, Call::mmap, Call::read, Call::madvise}) {
    in_child([c] {
      CHECK_OR_DIE(exmem_protection() == EXMEM_PROT_SECRET, "needs memfd_secret");
      size_t fds = open_fds();
      exmem::testing::inject(c, ENOMEM, 1, true);
      struct exmem_shared s{};
      CHECK_OR_DIE(exmem_share_create(8192, &s) != EXMEM_OK, "created with %s failing", exmem::testing::call_name(c));
      exmem::testing::clear_faults();
      CHECK_OR_DIE(open_fds() == fds, "leaked a descriptor after %s failed", exmem::testing::call_name(c));
      CHECK_OR_DIE(exmem_share_create(8192, &s) == EXMEM_OK, "%s", exmem_last_error_message());
      CHECK_OR_DIE(exmem_share_release(&s) == EXMEM_OK, "%s", exmem_last_error_message());
    });
  }
}

// A vault whose mprotect fails: creation leaves nothing behind, a failed open
// leaves the count (and the protection) as it was, a failed close leaves the
// open standing so that it can be retried, and all works once the fault stops.
TEST(FailingCallVault, MprotectFailureLeavesCountsAndProtectionConsistent) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  for (Call c : {Call::memfd_secret, Call::mmap, Call::read, Call::madvise, Call::mprotect}) {
    in_child([c] {
      CHECK_OR_DIE(exmem_protection() == EXMEM_PROT_SECRET, "needs memfd_secret");
      Snapshot before = snap();
      exmem::testing::inject(c, ENOMEM, 1, true);
      CHECK_OR_DIE(exmem_vault_create(8192) == nullptr, "created with %s failing", exmem::testing::call_name(c));
      exmem::testing::clear_faults();
      Snapshot after = snap();
      CHECK_OR_DIE(after.fds == before.fds && after.maps == before.maps && after.reserved == before.reserved,
                   "a failed vault creation (%s) leaked: fds %zu -> %zu, VMAs %zu -> %zu, reserved %zu -> %zu",
                   exmem::testing::call_name(c), before.fds, after.fds, before.maps, after.maps, before.reserved,
                   after.reserved);
      struct exmem_stats s{};
      exmem_stats(&s);
      CHECK_OR_DIE(s.vaults == 0, "vaults %zu after a failed creation", s.vaults);
    });
  }
  in_child([] {
    exmem_vault* v = exmem_vault_create(8192);
    CHECK_OR_DIE(v != nullptr, "%s", exmem_last_error_message());
    exmem::testing::inject(Call::mprotect, ENOMEM, 1, false);
    errno = 0;
    CHECK_OR_DIE(exmem_vault_open(v, EXMEM_VAULT_READ_WRITE) == nullptr, "opened with mprotect failing");
    CHECK_OR_DIE(errno == ENOMEM && exmem_last_error() == EXMEM_E_NO_MEMORY, "errno %d: %s", errno,
                 exmem_last_error_message());
    CHECK_OR_DIE(exmem_vault_close(v, EXMEM_VAULT_READ_WRITE) == EXMEM_E_INVALID,
                 "the failed open was counted: a close matched it");
    CHECK_OR_DIE(exmem_vault_destroy(v) == EXMEM_OK, "a failed open left the vault open: %s",
                 exmem_last_error_message());
    v = exmem_vault_create(8192);
    auto* p = static_cast<volatile char*>(exmem_vault_open(v, EXMEM_VAULT_READ_WRITE));
    CHECK_OR_DIE(p != nullptr, "%s", exmem_last_error_message());
    exmem::testing::inject(Call::mprotect, ENOMEM, 1, false);
    CHECK_OR_DIE(exmem_vault_close(v, EXMEM_VAULT_READ_WRITE) == EXMEM_E_NO_MEMORY, "close with mprotect failing");
    p[0] = 1;  // still open for writing
    CHECK_OR_DIE(exmem_vault_destroy(v) == EXMEM_E_INVALID, "the open stands after the failed close");
    CHECK_OR_DIE(exmem_vault_close(v, EXMEM_VAULT_READ_WRITE) == EXMEM_OK, "retried close: %s",
                 exmem_last_error_message());
    exmem::testing::inject(Call::mprotect, ENOMEM, 1, false);
    CHECK_OR_DIE(exmem_vault_destroy(v) == EXMEM_E_NO_MEMORY, "destroyed with mprotect failing");
    CHECK_OR_DIE(exmem_vault_destroy(v) == EXMEM_OK, "%s", exmem_last_error_message());
  });
}

// A first use of the heap that fails (its set-up refused by the kernel),
// then an exmem_init that succeeds, then fork(): the fork handlers must be
// registered once, or the second prepare handler waits forever for the lock
// the first one took. SIGALRM ends a child that deadlocks.
enum class FirstUse { alloc, protection, share_create };

class FailedFirstUse : public ::testing::TestWithParam<FirstUse> {};

TEST_P(FailedFirstUse, ThenInitThenForkDoesNotDeadlock) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  FirstUse first = GetParam();
  in_child([first] {
    exmem::testing::inject(Call::mmap, ENOMEM, 1, true);
    struct exmem_shared s{};
    switch (first) {
      case FirstUse::alloc:
        CHECK_OR_DIE(exmem_alloc(32) == nullptr, "allocated with mmap failing");
        break;
      case FirstUse::protection:
        CHECK_OR_DIE(exmem_protection() == EXMEM_PROT_NONE, "a protection level with mmap failing");
        break;
      case FirstUse::share_create:
        CHECK_OR_DIE(exmem_share_create(4096, &s) != EXMEM_OK, "a shared region with mmap failing");
        break;
    }
    exmem::testing::clear_faults();
    CHECK_OR_DIE(exmem_init(nullptr) == EXMEM_OK, "%s", exmem_last_error_message());
    void* p = exmem_alloc(32);
    CHECK_OR_DIE(p != nullptr, "%s", exmem_last_error_message());
    alarm(10);  // a deadlocked fork ends the test here, with SIGALRM
    pid_t pid = fork();
    CHECK_OR_DIE(pid >= 0, "fork: %s", std::strerror(errno));
    if (pid == 0) {
      void* q = exmem_alloc(32);
      _exit(q != nullptr ? 0 : 3);
    }
    int status = 0;
    CHECK_OR_DIE(waitpid(pid, &status, 0) == pid, "waitpid: %s", std::strerror(errno));
    alarm(0);
    CHECK_OR_DIE(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child ended with status %#x", status);
    exmem_free(p);
  });
}

std::string FirstUseName(const ::testing::TestParamInfo<FirstUse>& param) {
  switch (param.param) {
    case FirstUse::alloc:
      return "exmem_alloc";
    case FirstUse::protection:
      return "exmem_protection";
    default:
      return "exmem_share_create";
  }
}

INSTANTIATE_TEST_SUITE_P(SetUp, FailedFirstUse,
                         ::testing::Values(FirstUse::alloc, FirstUse::protection, FirstUse::share_create),
                         FirstUseName);

}  // namespace
