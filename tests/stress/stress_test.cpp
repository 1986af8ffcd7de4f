// Stress: long random runs of libexmem (workload.hpp) on two threads that pass
// objects to each other; the same while forked children (in both fork modes)
// check what they inherited and run workloads of their own; and a region
// passed back and forth between two processes over SCM_RIGHTS.
//
// Tests: Stress.* and StressFresh.* (the latter configure the heap themselves).
//
// Each worker performs EXMEM_STRESS_OPS operations (default 10,000,000; the
// ThreadSanitizer stage of CI lowers it and the tests say so). Seeds come from
// EXMEM_STRESS_SEED or are drawn fresh; every failure names its seed.
#include <exmem/exmem.h>
#include <gtest/gtest.h>
#include <dirent.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "support/test_util.hpp"
#include "workload.hpp"

using namespace exmem_test;
using namespace exmem_stress;

namespace {

struct Settings {
  uint64_t ops = 0;
  uint64_t seed = 0;
};

// Reads EXMEM_STRESS_OPS and EXMEM_STRESS_SEED, says what runs (and whether the
// count is the full one), or fails the test naming the bad variable.
Settings settings(const char* test) {
  Settings s;
  std::string err;
  s.ops = ops_per_thread(&err);
  if (err.empty()) s.seed = base_seed(&err);
  if (!err.empty()) {
    ADD_FAILURE() << err;
    return Settings{};
  }
  std::printf("[ stress   ] %s: %" PRIu64 " operations per worker%s, seed %" PRIu64
              " (EXMEM_STRESS_SEED=%" PRIu64 " repeats this run)\n",
              test, s.ops,
              s.ops == kDefaultOps ? " (the full count)"
                                   : s.ops < kDefaultOps ? " (REDUCED by EXMEM_STRESS_OPS from the full 10000000)"
                                                         : " (raised by EXMEM_STRESS_OPS)",
              s.seed, s.seed);
  std::fflush(stdout);
  return s;
}

struct exmem_stats stats_now() {
  struct exmem_stats s{};
  EXPECT_EQ(exmem_stats(&s), 0);
  return s;
}

size_t open_fds() {
  size_t n = 0;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (readdir(d)) ++n;
    closedir(d);
  }
  return n;
}

void print_stats(const Worker& w, double seconds) {
  const WorkerStats& s = w.stats();
  std::printf("[ stress   ] %s: %" PRIu64 " ops in %.1f s (%.2f M/s): %" PRIu64 " allocs (%" PRIu64
              " large), %" PRIu64 " frees, %" PRIu64 " reallocs, %" PRIu64 " rewrites, %" PRIu64
              " handed over, %" PRIu64 " received, %.1f MiB verified\n",
              w.name().c_str(), s.ops, seconds, static_cast<double>(s.ops) / seconds / 1e6, s.allocs,
              s.large_allocs, s.frees, s.reallocs, s.writes, s.handed, s.received,
              static_cast<double>(s.bytes_verified) / (1 << 20));
}

// Two workers handing objects to each other; `during` runs on the calling
// thread meanwhile (it may pause the workers through the gate). Returns the
// first failure, or "".
struct Pair {
  Handoff a_to_b, b_to_a;
  PauseGate gate{2};
  std::atomic<bool> stop{false};
  std::unique_ptr<Worker> a, b;
  Pair(uint64_t ops, uint64_t seed, const std::string& prefix) {
    WorkerConfig ca{ops, seed * 2 + 1};
    WorkerConfig cb{ops, seed * 2 + 2};
    a = std::make_unique<Worker>(prefix + "thread A", ca, &a_to_b, &b_to_a, &gate, &stop);
    b = std::make_unique<Worker>(prefix + "thread B", cb, &b_to_a, &a_to_b, &gate, &stop);
  }
  std::string run(const std::function<void()>& during, bool quiet = false) {
    auto t0 = std::chrono::steady_clock::now();
    std::thread ta([&] { a->run(); });
    std::thread tb([&] { b->run(); });
    if (during) during();
    ta.join();
    tb.join();
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!quiet) {
      print_stats(*a, secs);
      print_stats(*b, secs);
      std::fflush(stdout);
    }
    if (!a->failure().empty()) return a->failure();
    if (!b->failure().empty()) return b->failure();
    std::string why;
    if (!drain_handoff(&a_to_b, &why) || !drain_handoff(&b_to_a, &why)) return why;
    return "";
  }
};

class Stress : public ::testing::Test {
 protected:
  void SetUp() override {
    REQUIRE_MEMFD_SECRET();
    ASSERT_EQ(exmem_protection(), EXMEM_PROT_SECRET) << last_error_text();
  }
};

TEST_F(Stress, TwoThreadsRandomOperationsWithCrossThreadFreesKeepEveryObjectIntact) {
  Settings s = settings("two threads");
  ASSERT_GT(s.ops, 0u);
  struct exmem_stats before = stats_now();
  Pair pair(s.ops, s.seed, "");
  std::string failure = pair.run(nullptr);
  ASSERT_EQ(failure, "") << "seed " << s.seed;
  EXPECT_GT(pair.a->stats().received + pair.b->stats().received, 0u) << "no object changed threads";
  EXPECT_GT(pair.a->stats().large_allocs + pair.b->stats().large_allocs, 0u) << "no large object was made";
  struct exmem_stats after = stats_now();
  EXPECT_EQ(after.live_objects, before.live_objects) << "objects leaked (seed " << s.seed << ")";
  EXPECT_EQ(after.live_bytes, before.live_bytes) << "seed " << s.seed;
}

// A child's own workload: two threads, a tenth of the parent's count.
int child_workload(uint64_t ops, uint64_t seed, const char* mode) {
  struct exmem_stats s{};
  CHILD_CHECK(exmem_stats(&s) == 0, "exmem_stats");
  Pair pair(ops, seed, std::string("child (") + mode + ") ");
  std::string failure = pair.run(nullptr, true);
  CHILD_CHECK(failure.empty(), "%s", failure.c_str());
  struct exmem_stats after{};
  CHILD_CHECK(exmem_stats(&after) == 0, "exmem_stats");
  CHILD_CHECK(after.live_objects == s.live_objects, "the child's objects leaked: %zu live, %zu before",
              after.live_objects, s.live_objects);
  return 0;
}

// EXMEM_FORK_PRIVATE (the default): the main thread forks while both workers
// run. Each child checks that the parent's objects are out of its reach (not
// owned by its heap: usable size 0; freeing one is a no-op; its address is
// not readable) and runs a workload of its own while the parent goes on.
//
// Under AddressSanitizer the workers are paused at each fork: GCC 12's ASan
// takes no lock of its own allocator across fork, so a child forked while a
// worker is inside ASan's malloc inherits that lock held and hangs at its
// first allocation of the same size class (seen in CI: the child's stack
// ended in SizeClassAllocator64::GetFromAllocator). The release build
// forks while both workers run.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kPauseAtForks = true;
#else
constexpr bool kPauseAtForks = false;
#endif

TEST_F(Stress, ForkPrivateChildrenForkedMidRunCannotReachTheParentsObjectsAndRunTheirOwn) {
  Settings s = settings("fork (EXMEM_FORK_PRIVATE)");
  ASSERT_GT(s.ops, 0u);
  if (kPauseAtForks)
    std::printf("[ stress   ] AddressSanitizer build: the workers are PAUSED at each fork (GCC 12's ASan "
                "allocator lock is not held across fork); the release build forks while they run\n");
  constexpr int kForks = 4;
  struct exmem_stats before = stats_now();
  Pair pair(s.ops, s.seed, "parent ");
  std::vector<Spawned> children;
  std::vector<std::string> spawn_errors;
  auto during = [&] {
    for (int f = 0; f < kForks; ++f) {
      // Spread the forks over the run: wait until the workers are f/kForks through.
      uint64_t mark = s.ops / (kForks + 1) * static_cast<uint64_t>(f + 1);
      while (pair.a->progress() < mark && !pair.stop.load())
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      if (pair.stop.load()) return;
      if (kPauseAtForks) pair.gate.pause();
      const Worker* a = pair.a.get();
      const Worker* b = pair.b.get();
      uint64_t child_seed = s.seed * 31 + static_cast<uint64_t>(f);
      children.push_back(spawn_child([a, b, child_seed, &s] {
        // Addresses the workers held lately (their object lists may be mid-update
        // in this copy of memory: only the lock-free ring is read).
        for (const Worker* w : {a, b}) {
          for (size_t i = 0; i < Worker::kRecent; ++i) {
            void* p = w->recent(i);
            if (!p) continue;
            CHILD_CHECK(exmem_usable_size(p) == 0, "the parent's object %p has usable size %zu in the child", p,
                        exmem_usable_size(p));
            auto vma = vma_of(p);
            CHILD_CHECK(!vma || vma->perms.find('r') == std::string::npos,
                        "the parent's object %p is readable in the child (%s)", p,
                        vma ? vma->perms.c_str() : "");
            exmem_free(p);  // not the child's: a no-op
          }
        }
        return child_workload(std::max<uint64_t>(s.ops / 10, 1000), child_seed, "private");
      }));
      if (kPauseAtForks) pair.gate.resume();
      if (!children.back().error.empty()) spawn_errors.push_back(children.back().error);
    }
  };
  std::string failure = pair.run(during);
  ASSERT_EQ(failure, "") << "seed " << s.seed;
  ASSERT_TRUE(spawn_errors.empty()) << spawn_errors.front();
  EXPECT_EQ(children.size(), static_cast<size_t>(kForks));
  for (Spawned& c : children) {
    ChildResult r = collect(c, std::chrono::minutes(5));
    EXPECT_TRUE(r.succeeded()) << "a forked child " << r.describe() << " (seed " << s.seed << ")";
  }
  struct exmem_stats after = stats_now();
  EXPECT_EQ(after.live_objects, before.live_objects) << "seed " << s.seed;
}

// EXMEM_FORK_SHARE: the workers pause, the main thread forks, the child checks
// every object both workers hold (the regions stay mapped and shared), "frees"
// some of them (a no-op for inherited objects), and lets the parent go on; the
// parent's workers later verify those objects again before they free them.
// The child then runs a workload of its own while the parent runs. The mode is
// set per process: the test runs in a fresh one.
// For tests that configure the heap themselves (in a fresh process): SetUp
// must not set it up with the defaults first.
class StressFresh : public ::testing::Test {
 protected:
  void SetUp() override { REQUIRE_MEMFD_SECRET(); }
};

TEST_F(StressFresh, ForkShareChildrenSeeEveryInheritedObjectIntactAndCannotFreeThem) {
  Settings s = settings("fork (EXMEM_FORK_SHARE)");
  ASSERT_GT(s.ops, 0u);
  // The fresh process runs this test again from the start: it must draw the same seed.
  const bool had_seed = std::getenv("EXMEM_STRESS_SEED") != nullptr;
  if (!had_seed) setenv("EXMEM_STRESS_SEED", std::to_string(s.seed).c_str(), 1);
  EXPECT_IN_FRESH_PROCESS([s]() -> int {
    struct exmem_config cfg{};
    cfg.fork_mode = EXMEM_FORK_SHARE;
    CHILD_CHECK(exmem_init(&cfg) == EXMEM_OK, "exmem_init: %s", last_error_text().c_str());
    constexpr int kForks = 3;
    Pair pair(s.ops, s.seed, "parent ");
    std::vector<Spawned> children;
    std::string trouble;
    auto during = [&] {
      for (int f = 0; f < kForks; ++f) {
        uint64_t mark = s.ops / (kForks + 1) * static_cast<uint64_t>(f + 1);
        while (pair.a->progress() < mark && !pair.stop.load())
          std::this_thread::sleep_for(std::chrono::milliseconds(5));
        if (pair.stop.load()) return;
        int ready[2];
        if (pipe(ready) != 0) {
          trouble = "pipe failed";
          return;
        }
        pair.gate.pause();
        const Worker* a = pair.a.get();
        const Worker* b = pair.b.get();
        uint64_t child_seed = s.seed * 37 + static_cast<uint64_t>(f);
        int wfd = ready[1];
        children.push_back(spawn_child([a, b, child_seed, wfd, &s] {
          std::string why;
          size_t n = 0;
          for (const Worker* w : {a, b}) {
            CHILD_CHECK(w->verify_all(&why), "inherited object: %s", why.c_str());
            n += w->objects().size();
            // Freeing an inherited object must leave it alone (the parent verifies it later).
            for (size_t i = 0; i < w->objects().size(); i += 7) exmem_free(w->objects()[i].p);
          }
          CHILD_CHECK(n > 0, "the child inherited no objects to check");
          char ok = 1;
          CHILD_CHECK(write(wfd, &ok, 1) == 1, "write to the parent");
          close(wfd);
          return child_workload(std::max<uint64_t>(s.ops / 10, 1000), child_seed, "share");
        }));
        close(ready[1]);
        char got = 0;
        // The child either says it is done with the inherited objects or dies.
        ssize_t r = read(ready[0], &got, 1);
        close(ready[0]);
        pair.gate.resume();
        if (r != 1) trouble = "a forked child ended before checking the inherited objects";
      }
    };
    std::string failure = pair.run(during);
    CHILD_CHECK(failure.empty(), "%s (seed %" PRIu64 ")", failure.c_str(), s.seed);
    CHILD_CHECK(trouble.empty(), "%s", trouble.c_str());
    CHILD_CHECK(children.size() == static_cast<size_t>(kForks), "%zu children forked", children.size());
    for (Spawned& c : children) {
      ChildResult r = collect(c, std::chrono::minutes(5));
      CHILD_CHECK(r.succeeded(), "a forked child %s (seed %" PRIu64 ")", r.describe().c_str(), s.seed);
    }
    return 0;
  });
  if (!had_seed) unsetenv("EXMEM_STRESS_SEED");
}

// One process writes into a shared region, the other verifies and writes back,
// round after round. Rounds come in generations: each generation one side (the
// parent for even ones, the child for odd ones) creates a fresh region of a
// random size, passes it over SCM_RIGHTS, drops its previous region and drives
// the generation's rounds; the other side receives it, checks that it is
// zeroed, drops its previous one and answers.
struct Msg {
  uint32_t kind;  // 1: a round; 2: a new region follows on the share socket
  uint32_t pad;
  uint64_t round, off, len, seed;
};

bool send_msg(int fd, const Msg& m) { return write_all(fd, &m, sizeof m); }
bool recv_msg(int fd, Msg* m) { return read_all(fd, m, sizeof *m); }

constexpr uint64_t kRoundsPerRegion = 500;

// One side of the exchange; `me` is 0 for the parent, 1 for the child.
// Returns "" or what went wrong.
std::string share_session(int me, int ctl, int shr, uint64_t rounds, uint64_t seed) {
  Rng rng(seed * 2 + static_cast<uint64_t>(me));
  struct exmem_shared region{};
  bool have = false;
  uint64_t round = 0;
  auto fail = [&](const std::string& w) {
    return std::string(me ? "child: " : "parent: ") + w + " (round " + std::to_string(round) + ")";
  };
  for (uint64_t gen = 0; round < rounds; ++gen) {
    const uint64_t end = std::min(rounds, round + kRoundsPerRegion);
    if (gen % 2 == static_cast<uint64_t>(me)) {  // drive
      struct exmem_shared fresh{};
      size_t size = 4096 * (1 + rng.below(64));  // 1 page .. 256 KiB
      if (exmem_share_create(size, &fresh) != EXMEM_OK) return fail("exmem_share_create: " + last_error_text());
      if (!send_msg(ctl, Msg{2, 0, round, 0, size, 0})) return fail("send");
      if (exmem_share_send(shr, &fresh) != EXMEM_OK) return fail("exmem_share_send: " + last_error_text());
      if (have && exmem_share_release(&region) != EXMEM_OK) return fail("exmem_share_release: " + last_error_text());
      region = fresh;
      have = true;
      Msg ack{};  // the peer has checked that the region is zeroed: now write
      if (!recv_msg(ctl, &ack) || ack.kind != 2 || ack.round != round) return fail("the peer did not take the region");
      for (; round < end; ++round) {
        uint64_t off = rng.below(region.size);
        uint64_t len = 1 + rng.below(std::min<uint64_t>(region.size - off, 16384));
        uint64_t sd = seed * 1000003 + round * 2;
        fill_pattern(static_cast<uint8_t*>(region.addr) + off, len, sd, len);
        if (!send_msg(ctl, Msg{1, 0, round, off, len, sd})) return fail("send");
        Msg reply{};
        if (!recv_msg(ctl, &reply) || reply.kind != 1 || reply.round != round) return fail("no reply from the peer");
        size_t bad = check_pattern(static_cast<uint8_t*>(region.addr) + off, len, sd + 1, len);
        if (bad != len)
          return fail("the peer's write-back differs at byte " + std::to_string(bad) + " of " + std::to_string(len) +
                      " at offset " + std::to_string(off) + " of the region");
      }
    } else {  // answer
      Msg m{};
      if (!recv_msg(ctl, &m) || m.kind != 2 || m.round != round) return fail("expected a new region");
      struct exmem_shared got{};
      if (exmem_share_recv(shr, &got) != EXMEM_OK) return fail("exmem_share_recv: " + last_error_text());
      if (got.size < m.len) return fail("the received region is smaller than the one sent");
      for (size_t k = 0; k < got.size; k += 512)
        if (static_cast<uint8_t*>(got.addr)[k] != 0) return fail("a fresh region is not zeroed");
      if (have && exmem_share_release(&region) != EXMEM_OK) return fail("exmem_share_release: " + last_error_text());
      region = got;
      have = true;
      if (!send_msg(ctl, m)) return fail("send");
      for (; round < end; ++round) {
        if (!recv_msg(ctl, &m) || m.kind != 1 || m.round != round || m.off + m.len > region.size)
          return fail("expected a round");
        auto* at = static_cast<uint8_t*>(region.addr) + m.off;
        size_t bad = check_pattern(at, m.len, m.seed, m.len);
        if (bad != m.len)
          return fail("the shared bytes differ from what the peer wrote, at byte " + std::to_string(bad) + " of " +
                      std::to_string(m.len));
        fill_pattern(at, m.len, m.seed + 1, m.len);
        if (!send_msg(ctl, m)) return fail("send");
      }
    }
  }
  if (have && exmem_share_release(&region) != EXMEM_OK) return fail("exmem_share_release: " + last_error_text());
  return "";
}

TEST_F(Stress, ScmRightsShareOneWritesTheOtherVerifiesAndWritesBackForManyRounds) {
  Settings s = settings("SCM_RIGHTS share");
  ASSERT_GT(s.ops, 0u);
  const uint64_t rounds = std::max<uint64_t>(s.ops / 50, 2000);
  int ctl[2], shr[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ctl), 0);
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, shr), 0);
  size_t fds_before = open_fds();
  struct exmem_stats st0 = stats_now();
  auto t0 = std::chrono::steady_clock::now();

  const uint64_t seed = s.seed;
  Spawned peer = spawn_child([&, rounds] {
    close(ctl[0]);
    close(shr[0]);
    std::string r = share_session(1, ctl[1], shr[1], rounds, seed);
    CHILD_CHECK(r.empty(), "%s (seed %" PRIu64 ")", r.c_str(), seed);
    return 0;
  });
  ASSERT_TRUE(peer.error.empty()) << peer.error;
  close(ctl[1]);
  close(shr[1]);
  std::string r = share_session(0, ctl[0], shr[0], rounds, seed);
  close(ctl[0]);
  close(shr[0]);
  ChildResult cr = collect(peer, std::chrono::minutes(10));
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("[ stress   ] %" PRIu64 " rounds over %" PRIu64 " regions in %.1f s\n", rounds,
              (rounds + kRoundsPerRegion - 1) / kRoundsPerRegion, secs);
  EXPECT_EQ(r, "") << "seed " << seed;
  EXPECT_TRUE(cr.succeeded()) << "the peer " << cr.describe();
  EXPECT_EQ(open_fds(), fds_before - 4) << "descriptors leaked (the four socket ends are closed)";
  struct exmem_stats st1 = stats_now();
  EXPECT_EQ(st1.reserved_bytes, st0.reserved_bytes) << "a shared region was not released";
}

}  // namespace
