// The locked fallback backend (anonymous memory, mlock, MADV_DONTDUMP,
// MADV_WIPEONFORK, guard pages), exercised by forcing it with EXMEM_LOCKED_ONLY,
// and the protection policies, including what happens on a machine without
// memfd_secret (simulated with a seccomp filter that makes it fail with ENOSYS).
// Each configuration runs in a fresh process.
#include <exmem/exmem.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "support/test_util.hpp"

using namespace exmem_test;

namespace {

void init_locked_only() {
  exmem_config cfg{};
  cfg.policy = EXMEM_LOCKED_ONLY;
  CHILD_CHECK(exmem_init(&cfg) == EXMEM_OK, "exmem_init(EXMEM_LOCKED_ONLY): %s", last_error_text().c_str());
  CHILD_CHECK(exmem_protection() == EXMEM_PROT_LOCKED, "exmem_protection() = %d, expected EXMEM_PROT_LOCKED",
              exmem_protection());
}

int locked_allocations_work() {
  init_locked_only();
  std::vector<std::pair<void*, size_t>> v;
  for (size_t n = 1; n <= 6000; n += 11) v.emplace_back(exmem_alloc(n), n);
  for (size_t n : {size_t{20000}, size_t{65536}, size_t{MiB + 1}}) v.emplace_back(exmem_alloc(n), n);
  for (auto& [p, n] : v) {
    CHILD_CHECK(p != nullptr, "exmem_alloc(%zu): %s", n, last_error_text().c_str());
    CHILD_CHECK(exmem_usable_size(p) >= n, "usable size");
    fill_pattern(p, n, n);
  }
  for (auto& [p, n] : v) {
    CHILD_CHECK(has_pattern(p, n, n), "a %zu-byte object lost its contents", n);
    auto vma = vma_of(p);
    CHILD_CHECK(vma && !is_secretmem(*vma), "EXMEM_LOCKED_ONLY handed out memfd_secret memory");
  }
  struct exmem_stats s{};
  CHILD_CHECK(exmem_stats(&s) == 0, "stats");
  CHILD_CHECK(s.protection == EXMEM_PROT_LOCKED, "stats.protection %d", s.protection);
  CHILD_CHECK(s.exclusive_pages == 0, "locked memory is still in the direct map, yet exclusive_pages = %zu",
              s.exclusive_pages);
  CHILD_CHECK(s.live_objects == v.size(), "live_objects %zu, expected %zu", s.live_objects, v.size());
  CHILD_CHECK(s.memlock_bytes > 0 && s.reserved_bytes > 0, "memlock %zu reserved %zu", s.memlock_bytes,
              s.reserved_bytes);
  CHILD_CHECK(s.fallback_bytes == 0, "EXMEM_LOCKED_ONLY asked for locked memory: no fallback, yet fallback_bytes = %zu",
              s.fallback_bytes);
  for (auto& [p, n] : v) exmem_free(p);
  CHILD_CHECK(exmem_stats(&s) == 0 && s.live_objects == 0, "live objects after freeing all: %zu", s.live_objects);
  return 0;
}

TEST(LockedFallback, ForcedLockedOnlyPolicyGivesWorkingLockedMemory) {
  EXPECT_IN_FRESH_PROCESS(locked_allocations_work);
}

int locked_memory_is_locked_and_not_dumped() {
  long before = status_kb("VmLck");
  CHILD_CHECK(before >= 0, "no VmLck in /proc/self/status");
  init_locked_only();
  void* small = exmem_alloc(64);
  void* large = exmem_alloc(200000);
  CHILD_CHECK(small && large, "alloc: %s", last_error_text().c_str());
  long after = status_kb("VmLck");
  struct exmem_stats s{};
  CHILD_CHECK(exmem_stats(&s) == 0, "stats");
  std::fprintf(stderr, "VmLck %ld kB -> %ld kB; reserved %zu bytes\n", before, after, s.reserved_bytes);
  CHILD_CHECK(after > before, "VmLck did not grow (%ld -> %ld kB): the memory is not mlocked", before, after);
  CHILD_CHECK(static_cast<size_t>(after - before) * 1024 >= s.reserved_bytes,
              "VmLck grew by %ld kB but the heap holds %zu bytes", after - before, s.reserved_bytes);
  for (void* p : {small, large}) {
    auto vma = vma_of(p, true);
    CHILD_CHECK(vma.has_value(), "%p is in no mapping", p);
    CHILD_CHECK(vma->has_flag("lo"), "the mapping of %p is not locked; VmFlags:%s", p, vma->vmflags.c_str());
    CHILD_CHECK(vma->has_flag("dd"), "the mapping of %p is not excluded from core dumps; VmFlags:%s", p,
                vma->vmflags.c_str());
    CHILD_CHECK(vma->has_flag("wf") || vma->has_flag("dc"),
                "the mapping of %p is neither wiped on fork nor kept from children; VmFlags:%s", p,
                vma->vmflags.c_str());
    CHILD_CHECK(vma->rss_kb == vma->size_kb, "the mapping of %p is not fully faulted in (%zu of %zu kB)", p,
                vma->rss_kb, vma->size_kb);
  }
  exmem_free(small);
  exmem_free(large);
  return 0;
}

TEST(LockedFallback, MemoryIsMlockedAndExcludedFromCoreDumps) {
  if (kSanitizer) GTEST_SKIP() << "NOT TESTED under a sanitizer, which turns mlock() into a no-op";
  EXPECT_IN_FRESH_PROCESS(locked_memory_is_locked_and_not_dumped);
}

int locked_memory_hidden_from_children() {
  init_locked_only();
  void* small = exmem_alloc(32);
  void* large = exmem_alloc(50000);
  CHILD_CHECK(small && large, "alloc: %s", last_error_text().c_str());
  fill_pattern(small, 32, 11);
  fill_pattern(large, 50000, 12);
  for (auto [p, n, seed] : {std::tuple<void*, size_t, uint64_t>{small, 32, 11}, {large, 50000, 12}}) {
    ChildResult r = run_child([p = p, n = n, seed = seed] {
      bool same = has_pattern(p, n, seed);
      std::printf("%s\n", same ? "the child sees the parent's secret" : "the child sees other bytes");
      return same ? 1 : 0;
    });
    CHILD_CHECK(r.succeeded() || r.killed_by(SIGSEGV),
                "a forked child must either fault on or see no secret at %p; it %s", p, r.describe().c_str());
  }
  ChildResult r = run_child([] {
    CHILD_CHECK(exmem_protection() == EXMEM_PROT_LOCKED, "the child's protection is %d", exmem_protection());
    void* q = exmem_alloc(100);
    CHILD_CHECK(q != nullptr, "the child cannot allocate: %s", last_error_text().c_str());
    fill_pattern(q, 100, 3);
    CHILD_CHECK(has_pattern(q, 100, 3), "contents");
    exmem_free(q);
    return 0;
  });
  CHILD_CHECK(r.succeeded(), "child allocation: %s", r.describe().c_str());
  CHILD_CHECK(has_pattern(small, 32, 11) && has_pattern(large, 50000, 12), "the parent's secrets changed");
  return 0;
}

TEST(LockedFallback, ForkedChildSeesNoneOfTheParentsSecretsAndAllocatesItsOwn) {
  EXPECT_IN_FRESH_PROCESS(locked_memory_hidden_from_children);
}

int locked_guard_page() {
  init_locked_only();
  auto* p = static_cast<unsigned char*>(exmem_alloc(20000));
  CHILD_CHECK(exmem_alloc(20000) && exmem_alloc(20000), "alloc");
  CHILD_CHECK(p, "alloc: %s", last_error_text().c_str());
  auto* end = reinterpret_cast<volatile unsigned char*>(round_up(reinterpret_cast<uintptr_t>(p) + 20000, page_size()));
  end[-1] = 1;
  end[0] = 1;
  std::fprintf(stderr, "writing past the end of a locked large object did not fault\n");
  return 0;
}

TEST(LockedFallback, WritingPastALargeObjectHitsAGuardPage) {
  EXPECT_EXIT(::exmem_test::exit_with(locked_guard_page), ::testing::KilledBySignal(SIGSEGV), "");
}

// ---- Policies -------------------------------------------------------------------------

int require_secret_succeeds() {
  exmem_config cfg{};
  cfg.policy = EXMEM_REQUIRE_SECRET;
  int rc = exmem_init(&cfg);
  CHILD_CHECK(rc == EXMEM_OK, "exmem_init(EXMEM_REQUIRE_SECRET) = %d on a machine with memfd_secret: %s", rc,
              last_error_text().c_str());
  CHILD_CHECK(exmem_protection() == EXMEM_PROT_SECRET, "protection %d", exmem_protection());
  void* p = exmem_alloc(32);
  CHILD_CHECK(p != nullptr, "alloc: %s", last_error_text().c_str());
  auto vma = vma_of(p);
  CHILD_CHECK(vma && is_secretmem(*vma), "the object is not in memfd_secret memory");
  exmem_free(p);
  return 0;
}

TEST(Policy, RequireSecretSucceedsWhereMemfdSecretExists) {
  REQUIRE_MEMFD_SECRET();
  EXPECT_IN_FRESH_PROCESS(require_secret_succeeds);
}

// Sends this process's stderr into a memory file until the returned descriptor
// is passed to collect_stderr, which restores it and returns what was written.
int capture_stderr() {
  std::fflush(stderr);
  int saved = ::dup(STDERR_FILENO);
  int mem = ::memfd_create("stderr", MFD_CLOEXEC);
  CHILD_CHECK(saved >= 0 && mem >= 0, "dup/memfd_create: %s", std::strerror(errno));
  ::dup2(mem, STDERR_FILENO);
  ::close(mem);
  return saved;
}

std::string collect_stderr(int saved) {
  std::fflush(stderr);
  std::string text = read_file(strf("/proc/self/fd/%d", STDERR_FILENO));
  ::dup2(saved, STDERR_FILENO);
  ::close(saved);
  return text;
}

void block_or_die() {
  std::string why;
  CHILD_CHECK(block_memfd_secret(&why), "cannot simulate a kernel without memfd_secret: %s", why.c_str());
}

int prefer_secret_falls_back_and_says_so() {
  block_or_die();
  int saved = capture_stderr();
  void* p = exmem_alloc(32);
  int prot = exmem_protection();
  for (int i = 0; i < 100; ++i) exmem_free(exmem_alloc(static_cast<size_t>(100 + i * 50)));
  std::string said = collect_stderr(saved);
  CHILD_CHECK(p != nullptr, "the default policy did not fall back: %s", last_error_text().c_str());
  CHILD_CHECK(prot == EXMEM_PROT_LOCKED, "protection %d after the fallback", prot);
  CHILD_CHECK(!said.empty(), "the fallback to locked memory was not announced on stderr");
  CHILD_CHECK(contains(said, "memfd_secret"), "the announcement does not mention memfd_secret: %s", said.c_str());
  size_t lines = 0;
  for (char c : said) lines += c == '\n';
  CHILD_CHECK(lines <= 2, "the fallback was announced more than once: %s", said.c_str());
  CHILD_CHECK(contains(said, "fallback_bytes"), "the announcement does not name the statistic: %s", said.c_str());
  std::fprintf(stderr, "announcement: %s", said.c_str());
  // exmem_stats counts the fallback: every byte the heap holds, vaults included.
  exmem_vault* v = exmem_vault_create(8192);
  CHILD_CHECK(v != nullptr, "a vault under the fallback: %s", last_error_text().c_str());
  struct exmem_stats s{};
  CHILD_CHECK(exmem_stats(&s) == 0, "stats");
  CHILD_CHECK(s.fallback_bytes > 0, "the heap fell back, yet fallback_bytes is 0");
  CHILD_CHECK(s.fallback_bytes == s.reserved_bytes, "fallback_bytes %zu, but the heap holds %zu bytes of locked memory",
              s.fallback_bytes, s.reserved_bytes);
  CHILD_CHECK(s.exclusive_pages == 0, "exclusive_pages %zu under the fallback", s.exclusive_pages);
  size_t with_vault = s.fallback_bytes;
  CHILD_CHECK(exmem_vault_destroy(v) == EXMEM_OK, "destroy");
  CHILD_CHECK(exmem_stats(&s) == 0 && s.fallback_bytes == with_vault - 8192, "fallback_bytes %zu after the vault went",
              s.fallback_bytes);
  exmem_free(p);
  return 0;
}

TEST(Policy, PreferSecretFallsBackToLockedMemoryAndSaysSoOnceWithoutMemfdSecret) {
  EXPECT_IN_FRESH_PROCESS(prefer_secret_falls_back_and_says_so);
}

int quiet_fallback_is_silent() {
  block_or_die();
  exmem_config cfg{};
  cfg.quiet = 1;
  int saved = capture_stderr();
  int rc = exmem_init(&cfg);
  void* p = exmem_alloc(32);
  std::string said = collect_stderr(saved);
  CHILD_CHECK(rc == EXMEM_OK && p != nullptr, "rc %d: %s", rc, last_error_text().c_str());
  CHILD_CHECK(exmem_protection() == EXMEM_PROT_LOCKED, "protection %d", exmem_protection());
  CHILD_CHECK(said.empty(), "quiet = 1, yet stderr got: %s", said.c_str());
  exmem_free(p);
  return 0;
}

TEST(Policy, QuietFallbackPrintsNothing) { EXPECT_IN_FRESH_PROCESS(quiet_fallback_is_silent); }

int require_secret_fails_without_it() {
  block_or_die();
  exmem_config cfg{};
  cfg.policy = EXMEM_REQUIRE_SECRET;
  int rc = exmem_init(&cfg);
  CHILD_CHECK(rc == EXMEM_E_NO_SECRET, "exmem_init(EXMEM_REQUIRE_SECRET) without memfd_secret returned %d: %s", rc,
              last_error_text().c_str());
  CHILD_CHECK(exmem_last_error() == EXMEM_E_NO_SECRET, "%s", last_error_text().c_str());
  CHILD_CHECK(contains(exmem_last_error_message(), "memfd_secret"), "the message does not say why: %s",
              exmem_last_error_message());
  return 0;
}

TEST(Policy, RequireSecretFailsWithEXMEM_E_NO_SECRETWithoutMemfdSecret) {
  EXPECT_IN_FRESH_PROCESS(require_secret_fails_without_it);
}

int require_secret_never_hands_out_locked_memory() {
  block_or_die();
  exmem_config cfg{};
  cfg.policy = EXMEM_REQUIRE_SECRET;
  exmem_init(&cfg);
  errno = 0;
  void* p = exmem_alloc(32);
  CHILD_CHECK(p == nullptr, "EXMEM_REQUIRE_SECRET was asked for, yet exmem_alloc returned memory (protection %d)",
              exmem_protection());
  CHILD_CHECK(errno == ENOMEM, "errno %d", errno);
  CHILD_CHECK(exmem_last_error() == EXMEM_E_NO_SECRET, "%s", last_error_text().c_str());
  return 0;
}

TEST(Policy, AfterRequireSecretFailsAllocationsFailToo) {
  EXPECT_IN_FRESH_PROCESS(require_secret_never_hands_out_locked_memory);
}

}  // namespace
