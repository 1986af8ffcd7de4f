// Threads: per-thread caches, frees from other threads, objects outliving the
// thread that allocated them. Every object carries its own byte pattern over its
// whole usable size and is verified before it is freed.
#include <exmem/exmem.h>
#include <gtest/gtest.h>

#include <atomic>
#include <exmem/exmem.hpp>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "support/test_util.hpp"

using namespace exmem_test;

namespace {

// Fills the whole usable size of p with tag; checks it.
void stamp(void* p, unsigned char tag) { std::memset(p, tag, exmem_usable_size(p)); }
bool intact(const void* p, unsigned char tag) {
  auto* b = static_cast<const unsigned char*>(p);
  size_t n = exmem_usable_size(p);
  return n > 0 && b[0] == tag && std::memcmp(b, b + 1, n - 1) == 0;
}

struct exmem_stats get_stats() {
  struct exmem_stats s{};
  EXPECT_EQ(exmem_stats(&s), 0);
  return s;
}

class Threads : public ::testing::Test {
 protected:
  void SetUp() override {
    REQUIRE_MEMFD_SECRET();
    ASSERT_EQ(exmem_protection(), EXMEM_PROT_SECRET) << last_error_text();
  }
};

TEST_F(Threads, FourThreadsAllocateAndFreeRandomObjectsWithoutInterference) {
  constexpr int kThreads = 4;
  constexpr int kOps = 200000;
  struct exmem_stats s0 = get_stats();
  std::atomic<int> failures{0};
  std::vector<std::string> errors(kThreads);
  std::vector<std::thread> threads;
  const uint64_t seed = std::random_device{}();
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(seed + static_cast<uint64_t>(t));
      struct Live {
        void* p;
        unsigned char tag;
      };
      std::vector<Live> live;
      for (int op = 0; op < kOps && failures.load() == 0; ++op) {
        if (live.empty() || (live.size() < 2000 && rng() % 2 == 0)) {
          uint64_t r = rng() % 1000;
          size_t n = r < 3 ? 4097 + rng() % 60000 : r < 100 ? 257 + rng() % 3840 : 1 + rng() % 256;
          void* p = exmem_alloc(n);
          if (!p || exmem_usable_size(p) < n) {
            errors[t] = strf("exmem_alloc(%zu) = %p: %s", n, p, last_error_text().c_str());
            failures++;
            break;
          }
          auto tag = static_cast<unsigned char>(1 + (rng() % 255));
          stamp(p, tag);
          live.push_back({p, tag});
        } else {
          size_t i = static_cast<size_t>(rng() % live.size());
          if (!intact(live[i].p, live[i].tag)) {
            errors[t] = strf("object %p was overwritten", live[i].p);
            failures++;
            break;
          }
          exmem_free(live[i].p);
          live[i] = live.back();
          live.pop_back();
        }
      }
      for (Live& l : live) {
        if (!intact(l.p, l.tag) && errors[t].empty()) {
          errors[t] = strf("object %p was overwritten", l.p);
          failures++;
        }
        exmem_free(l.p);
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_TRUE(errors[t].empty()) << "thread " << t << ": " << errors[t];
  struct exmem_stats s1 = get_stats();
  EXPECT_EQ(s1.live_objects, s0.live_objects) << "stats lost track of objects of exited threads";
  EXPECT_EQ(s1.live_bytes, s0.live_bytes);
}

TEST_F(Threads, ObjectsFreedByAnotherThreadAreVerifiedAndReused) {
  // Two producers allocate and stamp objects; two consumers verify and free them.
  constexpr int kPerProducer = 60000;
  struct Item {
    void* p;
    unsigned char tag;
  };
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Item> queue;
  int producers_left = 2;
  std::atomic<int> bad{0};
  std::atomic<int> failed_allocs{0};
  struct exmem_stats s0 = get_stats();

  auto producer = [&](int id) {
    std::mt19937 rng(static_cast<unsigned>(id));
    for (int i = 0; i < kPerProducer; ++i) {
      size_t n = rng() % 100 == 0 ? 5000 + rng() % 10000 : 1 + rng() % 512;
      void* p = exmem_alloc(n);
      if (!p) {
        failed_allocs++;
        continue;
      }
      auto tag = static_cast<unsigned char>(1 + rng() % 255);
      stamp(p, tag);
      std::lock_guard<std::mutex> lock(mu);
      queue.push_back({p, tag});
      cv.notify_one();
    }
    std::lock_guard<std::mutex> lock(mu);
    --producers_left;
    cv.notify_all();
  };
  auto consumer = [&] {
    for (;;) {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return !queue.empty() || producers_left == 0; });
      if (queue.empty()) return;
      Item it = queue.front();
      queue.pop_front();
      lock.unlock();
      if (!intact(it.p, it.tag)) bad++;
      exmem_free(it.p);
    }
  };
  std::vector<std::thread> th;
  th.emplace_back(producer, 1);
  th.emplace_back(producer, 2);
  th.emplace_back(consumer);
  th.emplace_back(consumer);
  for (auto& t : th) t.join();
  EXPECT_EQ(failed_allocs.load(), 0) << last_error_text();
  EXPECT_EQ(bad.load(), 0) << "objects were damaged between allocation in one thread and free in another";
  struct exmem_stats s1 = get_stats();
  EXPECT_EQ(s1.live_objects, s0.live_objects);
  EXPECT_EQ(s1.live_bytes, s0.live_bytes);

  // The memory freed remotely is usable again by the threads that own it: a
  // second round must not need (much) more exclusive memory than the first.
  size_t reserved_after_first = s1.reserved_bytes;
  producers_left = 2;
  th.clear();
  th.emplace_back(producer, 3);
  th.emplace_back(producer, 4);
  th.emplace_back(consumer);
  th.emplace_back(consumer);
  for (auto& t : th) t.join();
  EXPECT_EQ(bad.load(), 0);
  struct exmem_stats s2 = get_stats();
  EXPECT_LE(s2.reserved_bytes, reserved_after_first + 16 * MiB)
      << "remotely freed memory does not seem to be reused: reserved grew from " << reserved_after_first << " to "
      << s2.reserved_bytes;
}

TEST_F(Threads, ObjectsOutliveTheThreadThatAllocatedThem) {
  constexpr int kThreads = 8;
  constexpr int kEach = 5000;
  std::vector<std::vector<std::pair<void*, unsigned char>>> made(kThreads);
  std::vector<std::thread> th;
  for (int t = 0; t < kThreads; ++t)
    th.emplace_back([&made, t] {
      for (int i = 0; i < kEach; ++i) {
        void* p = exmem_alloc(static_cast<size_t>(1 + (i * 37) % 1500));
        if (!p) return;
        auto tag = static_cast<unsigned char>(1 + (t * 31 + i) % 255);
        stamp(p, tag);
        made[t].emplace_back(p, tag);
      }
    });
  for (auto& t : th) t.join();
  // The threads are gone; their slabs are orphans. Freeing from here and then
  // allocating again must work and must not hand out a live object.
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_EQ(made[t].size(), static_cast<size_t>(kEach)) << "thread " << t << ": " << last_error_text();
    for (size_t i = 0; i < made[t].size(); i += 2) {
      ASSERT_TRUE(intact(made[t][i].first, made[t][i].second));
      exmem_free(made[t][i].first);
    }
  }
  std::vector<void*> again;
  for (int i = 0; i < kThreads * kEach / 2; ++i) {
    void* p = exmem_alloc(static_cast<size_t>(1 + (i * 37) % 1500));
    ASSERT_NE(p, nullptr);
    ASSERT_TRUE(all_zero(p, exmem_usable_size(p))) << "a new object holds old bytes";
    stamp(p, 0xEE);
    again.push_back(p);
  }
  for (int t = 0; t < kThreads; ++t)
    for (size_t i = 1; i < made[t].size(); i += 2) {
      ASSERT_TRUE(intact(made[t][i].first, made[t][i].second)) << "a live object of an exited thread was reused";
      exmem_free(made[t][i].first);
    }
  for (void* p : again) {
    ASSERT_TRUE(intact(p, 0xEE));
    exmem_free(p);
  }
}

TEST_F(Threads, ThreadLocalSecretsAreReleasedWhenTheirThreadExits) {
  // thread_local objects constructed before the thread's first allocation are
  // destroyed after the heap's own per-thread clean-up: their frees must still
  // be counted and must not leak or crash.
  struct Holder {
    exmem::string* s = nullptr;
    ~Holder() { delete s; }
  };
  struct Tls {
    static void run(int n) {
      thread_local Holder holder;  // constructed before any exmem allocation of this thread
      holder.s = new exmem::string(static_cast<size_t>(100 + n), 'k');
      std::vector<void*> v;
      for (int i = 0; i < 100; ++i) v.push_back(exmem_alloc(48));
      for (void* p : v) exmem_free(p);
    }
  };
  struct exmem_stats s0 = get_stats();
  for (int round = 0; round < 3; ++round) {
    std::vector<std::thread> th;
    for (int t = 0; t < 4; ++t) th.emplace_back(Tls::run, t);
    for (auto& t : th) t.join();
  }
  struct exmem_stats s1 = get_stats();
  EXPECT_EQ(s1.live_objects, s0.live_objects) << "objects freed at thread exit were not accounted";
  EXPECT_EQ(s1.live_bytes, s0.live_bytes);
}

TEST_F(Threads, LastErrorIsPerThread) {
  EXPECT_EQ(exmem_alloc(SIZE_MAX), nullptr);
  int mine = exmem_last_error();
  EXPECT_NE(mine, EXMEM_OK);
  int theirs = -1;
  std::thread([&] { theirs = exmem_last_error(); }).join();
  EXPECT_EQ(theirs, EXMEM_OK) << "a new thread sees another thread's error";
  EXPECT_EQ(exmem_last_error(), mine);
}

}  // namespace
