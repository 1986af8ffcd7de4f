// fork(): by default (EXMEM_FORK_PRIVATE) a child cannot reach its parent's
// secrets (touching them faults) and gets a clean allocator that works; with
// EXMEM_FORK_SHARE the child keeps the parent's objects mapped and shared, and
// allocates from regions of its own. The share mode is a per-process
// configuration, so those tests run in fresh processes.
#include <exmem/exmem.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <thread>
#include <tuple>
#include <vector>

#include "support/test_util.hpp"

using namespace exmem_test;

namespace {

class ForkPrivate : public ::testing::Test {
 protected:
  void SetUp() override {
    REQUIRE_MEMFD_SECRET();
    ASSERT_EQ(exmem_protection(), EXMEM_PROT_SECRET) << last_error_text();
  }
};

// The child reads the parent's object: it must die of SIGSEGV before it can
// print anything about the bytes.
void expect_child_faults_reading(const void* p, size_t n, uint64_t seed) {
  ChildResult r = run_child([p, n, seed] {
    bool same = has_pattern(p, n, seed);
    std::printf("the child read the parent's object: %s\n", same ? "SAME BYTES AS THE SECRET" : "other bytes");
    return 0;
  });
  EXPECT_TRUE(r.killed_by(SIGSEGV)) << "reading the parent's secret in a forked child should fault; the child "
                                    << r.describe();
}

TEST_F(ForkPrivate, ChildFaultsWhenTouchingTheParentsSmallSecret) {
  void* p = exmem_alloc(32);
  ASSERT_NE(p, nullptr);
  fill_pattern(p, 32, 1234);
  expect_child_faults_reading(p, 32, 1234);
  EXPECT_TRUE(has_pattern(p, 32, 1234)) << "the parent's secret changed";
  exmem_free(p);
}

TEST_F(ForkPrivate, ChildFaultsWhenTouchingTheParentsLargeSecret) {
  void* p = exmem_alloc(100000);
  ASSERT_NE(p, nullptr);
  fill_pattern(p, 100000, 77);
  expect_child_faults_reading(p, 100000, 77);
  EXPECT_TRUE(has_pattern(p, 100000, 77));
  exmem_free(p);
}

int child_allocates_its_own() {
  CHILD_CHECK(exmem_protection() == EXMEM_PROT_SECRET, "the child's protection is %d", exmem_protection());
  struct exmem_stats s{};
  CHILD_CHECK(exmem_stats(&s) == 0, "exmem_stats");
  CHILD_CHECK(s.live_objects == 0, "the child's allocator should start clean, but counts %zu live objects",
              s.live_objects);
  std::vector<void*> v;
  for (size_t i = 0; i < 3000; ++i) {
    size_t n = i == 0 ? 200000 : 1 + (i * 53) % 3000;
    void* p = exmem_alloc(n);
    CHILD_CHECK(p != nullptr, "exmem_alloc(%zu) in the child: %s", n, last_error_text().c_str());
    fill_pattern(p, n, i);
    v.push_back(p);
  }
  for (size_t i = 0; i < v.size(); ++i) {
    size_t n = i == 0 ? 200000 : 1 + (i * 53) % 3000;
    CHILD_CHECK(has_pattern(v[i], n, i), "object %zu lost its contents", i);
    auto vma = vma_of(v[i]);
    CHILD_CHECK(vma && is_secretmem(*vma), "the child's object %p is not in memfd_secret memory", v[i]);
    exmem_free(v[i]);
  }
  CHILD_CHECK(exmem_stats(&s) == 0 && s.live_objects == 0, "%zu objects still live", s.live_objects);
  return 0;
}

TEST_F(ForkPrivate, ChildOfARawForkSystemCallCannotReadTheSecretEither) {
  // fork(2) made without the C library's fork handlers (a raw system call, as
  // some runtimes do): only MADV_DONTFORK keeps the pages out of the child.
  void* p = exmem_alloc(32);
  void* q = exmem_alloc(100000);
  ASSERT_TRUE(p && q);
  fill_pattern(p, 32, 4321);
  fill_pattern(q, 100000, 4322);
  for (auto [addr, n, seed] : {std::tuple<void*, size_t, uint64_t>{p, 32, 4321}, {q, 100000, 4322}}) {
    long pid = ::syscall(SYS_fork);
    ASSERT_GE(pid, 0) << std::strerror(errno);
    if (pid == 0) ::_exit(has_pattern(addr, n, seed) ? 3 : 4);  // nothing but a read and _exit here
    bool timed_out = false;
    int status = wait_for(static_cast<pid_t>(pid), 10s, &timed_out);
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV)
        << "the child of a raw fork " << describe_status(status) << " (3: it read the secret, 4: other bytes)";
  }
  exmem_free(p);
  exmem_free(q);
}

TEST_F(ForkPrivate, ChildAllocatesItsOwnSecretsFromACleanHeap) {
  std::vector<void*> parents;
  for (int i = 0; i < 500; ++i) parents.push_back(exmem_alloc(32));
  parents.push_back(exmem_alloc(50000));
  for (void* p : parents) ASSERT_NE(p, nullptr);
  ChildResult r = run_child(child_allocates_its_own);
  EXPECT_TRUE(r.succeeded()) << r.describe();
  for (void* p : parents) exmem_free(p);
}

TEST_F(ForkPrivate, GrandchildAllocatesItsOwnSecretsToo) {
  void* p = exmem_alloc(64);
  ASSERT_NE(p, nullptr);
  ChildResult r = run_child([] {
    void* q = exmem_alloc(64);
    CHILD_CHECK(q != nullptr, "child alloc: %s", last_error_text().c_str());
    ChildResult g = run_child(child_allocates_its_own);
    CHILD_CHECK(g.succeeded(), "the grandchild %s", g.describe().c_str());
    exmem_free(q);
    return 0;
  });
  EXPECT_TRUE(r.succeeded()) << r.describe();
  exmem_free(p);
}

TEST_F(ForkPrivate, ForkWhileOtherThreadsAllocateLeavesAWorkingHeapInTheChild) {
  // fork() can happen while another thread holds the heap's locks; the child
  // must not deadlock or find a damaged heap.
  // Neither the busy threads nor the children use the C library's heap (their
  // bookkeeping is in fixed arrays): GCC 12's sanitizers do not hold their own
  // allocator's locks across fork, so a child forked while a busy thread was
  // inside the sanitizer's malloc hung in it at its first allocation of the
  // same size class (seen in CI, under ASan and under TSan). exmem's own
  // bookkeeping allocations happen under its arena lock, which its fork
  // handlers hold across fork.
  std::atomic<bool> stop{false};
  std::vector<std::thread> busy;
  for (int t = 0; t < 2; ++t)
    busy.emplace_back([&stop, t] {
      std::array<void*, 301> v{};
      size_t live = 0;
      size_t i = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        size_t n = (i++ % 97 == 0) ? 70000 : 16 + (i * 31 + static_cast<size_t>(t)) % 2000;
        if (void* p = exmem_alloc(n)) v[live++] = p;
        if (live == v.size()) {
          for (void* p : v) exmem_free(p);
          live = 0;
        }
      }
      for (size_t k = 0; k < live; ++k) exmem_free(v[k]);
    });
  int failures = 0;
  std::string first;
  for (int k = 0; k < 12; ++k) {
    ChildResult r = run_child(
        [] {
          static std::array<void*, 2000> v;
          for (size_t i = 0; i < v.size(); ++i) {
            void* p = exmem_alloc(1 + i % 1000);
            CHILD_CHECK(p != nullptr, "alloc: %s", exmem_last_error_message());
            std::memset(p, 0x3C, 1 + i % 1000);
            v[i] = p;
          }
          void* big = exmem_alloc(90000);
          CHILD_CHECK(big != nullptr, "large alloc: %s", exmem_last_error_message());
          exmem_free(big);
          for (size_t i = 0; i < v.size(); ++i) {
            CHILD_CHECK(all_equal(v[i], 1 + i % 1000, 0x3C), "object %zu damaged", i);
            exmem_free(v[i]);
          }
          return 0;
        },
        10s);
    if (!r.succeeded()) {
      if (!failures++) first = r.describe();
    }
  }
  stop = true;
  for (auto& t : busy) t.join();
  EXPECT_EQ(failures, 0) << failures << " of 12 children failed; the first " << first;
}

TEST_F(ForkPrivate, ChildMayFreeObjectsItInheritedWithoutAborting) {
  // A child that returns through scopes holding exmem objects, or runs exit()
  // with global exmem containers, frees pointers of its parent's heap. Their
  // memory is out of its reach already; freeing them must not end the child.
  void* small = exmem_alloc(32);
  void* large = exmem_alloc(70000);
  ASSERT_TRUE(small && large);
  ChildResult r = run_child([small, large] {
    exmem_free(small);
    exmem_free(large);
    void* mine = exmem_alloc(32);
    CHILD_CHECK(mine != nullptr, "alloc after freeing inherited pointers: %s", last_error_text().c_str());
    exmem_free(mine);
    return 0;
  });
  EXPECT_TRUE(r.succeeded()) << "the child " << r.describe();
  exmem_free(small);
  exmem_free(large);
}

// ---- EXMEM_FORK_SHARE ---------------------------------------------------------

void init_share_mode() {
  exmem_config cfg{};
  cfg.fork_mode = EXMEM_FORK_SHARE;
  CHILD_CHECK(exmem_init(&cfg) == EXMEM_OK, "exmem_init(fork_mode = SHARE): %s", last_error_text().c_str());
  CHILD_CHECK(exmem_protection() == EXMEM_PROT_SECRET, "protection %d", exmem_protection());
}

int share_mode_child_sees_and_writes() {
  init_share_mode();
  void* small = exmem_alloc(48);
  void* large = exmem_alloc(30000);
  CHILD_CHECK(small && large, "alloc: %s", last_error_text().c_str());
  fill_pattern(small, 48, 1);
  fill_pattern(large, 30000, 2);
  ChildResult r = run_child([=] {
    CHILD_CHECK(has_pattern(small, 48, 1), "the child does not see the parent's small object");
    CHILD_CHECK(has_pattern(large, 30000, 2), "the child does not see the parent's large object");
    fill_pattern(small, 48, 3);
    fill_pattern(large, 30000, 4);
    CHILD_CHECK(exmem_protection() == EXMEM_PROT_SECRET, "child protection %d", exmem_protection());
    return 0;
  });
  CHILD_CHECK(r.succeeded(), "the child %s", r.describe().c_str());
  CHILD_CHECK(has_pattern(small, 48, 3), "the child's write to the small object is not visible to the parent");
  CHILD_CHECK(has_pattern(large, 30000, 4), "the child's write to the large object is not visible to the parent");
  exmem_free(small);
  exmem_free(large);
  return 0;
}

// The harness itself: a child that hangs is reported with where its threads
// wait, so that a hang seen once (in CI, say) can be understood afterwards.
TEST(ChildHarness, AChildThatTimesOutIsReportedWithWhereItsThreadsWait) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  ChildResult r = run_child(
      [fds] {
        char c;
        return ::read(fds[0], &c, 1) == 1 ? 0 : 1;  // nobody writes: blocks
      },
      500ms);
  ::close(fds[0]);
  ::close(fds[1]);
  EXPECT_TRUE(r.timed_out);
  EXPECT_NE(r.hang.find("state S"), std::string::npos) << r.hang;
  if (::geteuid() == 0) {
    EXPECT_NE(r.hang.find("pipe_read"), std::string::npos) << "no kernel stack:\n" << r.hang;
  }
  EXPECT_NE(r.describe().find("where its threads were"), std::string::npos) << r.describe();
}

TEST(ForkShare, ChildSeesTheParentsObjectsAndItsWritesAreVisibleToTheParent) {
  REQUIRE_MEMFD_SECRET();
  EXPECT_IN_FRESH_PROCESS(share_mode_child_sees_and_writes);
}

int share_mode_child_free_leaves_inherited_alone() {
  init_share_mode();
  void* small = exmem_alloc(48);
  void* large = exmem_alloc(30000);
  CHILD_CHECK(small && large, "alloc: %s", last_error_text().c_str());
  fill_pattern(small, 48, 5);
  fill_pattern(large, 30000, 6);
  ChildResult r = run_child([=] {
    exmem_free(small);  // an inherited object: left alone (not wiped, not reused)
    exmem_free(large);
    CHILD_CHECK(has_pattern(small, 48, 5), "the child's free wiped the parent's small object");
    CHILD_CHECK(has_pattern(large, 30000, 6), "the child's free wiped or unmapped the parent's large object");
    std::vector<void*> v;
    for (int i = 0; i < 200; ++i) {
      void* p = exmem_alloc(48);
      CHILD_CHECK(p != nullptr, "alloc in the child: %s", last_error_text().c_str());
      CHILD_CHECK(p != small, "the child reused the inherited object it freed");
      std::memset(p, 0xCC, 48);
      v.push_back(p);
    }
    return 0;
  });
  CHILD_CHECK(r.succeeded(), "the child %s", r.describe().c_str());
  CHILD_CHECK(has_pattern(small, 48, 5), "the parent's small object changed");
  CHILD_CHECK(has_pattern(large, 30000, 6), "the parent's large object changed");
  exmem_free(small);
  exmem_free(large);
  return 0;
}

TEST(ForkShare, ChildsFreeOfAnInheritedObjectLeavesItAlone) {
  REQUIRE_MEMFD_SECRET();
  EXPECT_IN_FRESH_PROCESS(share_mode_child_free_leaves_inherited_alone);
}

int share_mode_allocations_stay_apart() {
  init_share_mode();
  // The parent has a partly used slab of 32-byte objects when it forks.
  std::vector<void*> mine;
  for (int i = 0; i < 50; ++i) {
    void* p = exmem_alloc(32);
    CHILD_CHECK(p, "alloc: %s", last_error_text().c_str());
    std::memset(p, 0x11, 32);
    mine.push_back(p);
  }
  int up[2], down[2];
  CHILD_CHECK(::pipe(up) == 0 && ::pipe(down) == 0, "pipe");
  ChildResult r;
  std::thread waiter([&] {
    r = run_child([&] {
      std::vector<void*> theirs;
      for (int i = 0; i < 500; ++i) {
        void* p = exmem_alloc(32);
        CHILD_CHECK(p, "child alloc: %s", last_error_text().c_str());
        std::memset(p, 0xCC, 32);
        theirs.push_back(p);
      }
      char c = 'a';
      CHILD_CHECK(write_all(up[1], &c, 1), "pipe");
      CHILD_CHECK(read_all(down[0], &c, 1), "pipe");  // the parent allocated meanwhile
      for (void* p : theirs) CHILD_CHECK(all_equal(p, 32, 0xCC), "the parent's new object landed on the child's %p", p);
      for (void* p : mine) CHILD_CHECK(all_equal(p, 32, 0x11), "an inherited object changed under the child");
      return 0;
    });
  });
  char c;
  CHILD_CHECK(read_all(up[0], &c, 1), "the child died before allocating");
  std::vector<void*> more;
  for (int i = 0; i < 500; ++i) {
    void* p = exmem_alloc(32);
    CHILD_CHECK(p, "alloc: %s", last_error_text().c_str());
    std::memset(p, 0x33, 32);
    more.push_back(p);
  }
  CHILD_CHECK(write_all(down[1], &c, 1), "pipe");
  waiter.join();
  CHILD_CHECK(r.succeeded(), "the child %s", r.describe().c_str());
  for (void* p : more) CHILD_CHECK(all_equal(p, 32, 0x33), "the child's object landed on the parent's new %p", p);
  for (void* p : mine) CHILD_CHECK(all_equal(p, 32, 0x11), "the child's allocations overwrote the parent's %p", p);
  return 0;
}

TEST(ForkShare, ParentAndChildAllocationsNeverLandOnEachOther) {
  REQUIRE_MEMFD_SECRET();
  EXPECT_IN_FRESH_PROCESS(share_mode_allocations_stay_apart);
}

// Bytes of address space this process has mapped (VmSize).
size_t mapped_address_space() {
  FILE* f = std::fopen("/proc/self/status", "r");
  size_t kib = 0;
  char line[256];
  while (f && std::fgets(line, sizeof line, f))
    if (std::sscanf(line, "VmSize: %zu kB", &kib) == 1) break;
  if (f) std::fclose(f);
  return kib * 1024;
}

// The first use of the heap fails (RLIMIT_AS leaves no room for its smallest
// reservation, 64 MiB), the limit is raised, exmem_init succeeds: the fork
// handlers must still be registered once, or fork() waits forever on the heap's
// lock. SIGALRM ends a process that deadlocks.
int fork_after_first_use_refused_by_rlimit_as() {
  rlimit old{};
  CHILD_CHECK(getrlimit(RLIMIT_AS, &old) == 0, "getrlimit: %s", std::strerror(errno));
  rlimit tight = old;
  tight.rlim_cur = mapped_address_space() + (size_t{48} << 20);
  CHILD_CHECK(setrlimit(RLIMIT_AS, &tight) == 0, "setrlimit: %s", std::strerror(errno));
  void* refused = exmem_alloc(32);
  CHILD_CHECK(setrlimit(RLIMIT_AS, &old) == 0, "setrlimit back: %s", std::strerror(errno));
  CHILD_CHECK(refused == nullptr, "the first allocation succeeded under a tight RLIMIT_AS");
  CHILD_CHECK(exmem_init(nullptr) == EXMEM_OK, "exmem_init: %s", last_error_text().c_str());
  void* p = exmem_alloc(32);
  CHILD_CHECK(p, "alloc after exmem_init: %s", last_error_text().c_str());
  alarm(10);
  pid_t pid = fork();
  CHILD_CHECK(pid >= 0, "fork: %s", std::strerror(errno));
  if (pid == 0) _exit(exmem_alloc(32) ? 0 : 3);
  int status = 0;
  CHILD_CHECK(waitpid(pid, &status, 0) == pid, "waitpid: %s", std::strerror(errno));
  alarm(0);
  CHILD_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the forked child: %s", describe_status(status).c_str());
  exmem_free(p);
  return 0;
}

TEST(ForkAfterFailedSetUp, ExmemInitAfterAFirstUseRefusedByRlimitAsLeavesForkWorking) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "not under a sanitizer: its runtime maps memory of its own, which a tight RLIMIT_AS refuses; "
                  "tests/faults runs the same sequence with an injected mmap failure in every build";
#endif
  EXPECT_IN_FRESH_PROCESS(fork_after_first_use_refused_by_rlimit_as);
}

}  // namespace
