// The random workload of the stress tests: a worker allocates objects of
// random sizes (now and then a large one), writes into each a pattern derived
// from (object id, size), reallocs, frees, and hands objects to another worker
// to free or realloc there. Every object's whole contents are verified before
// each realloc, when it changes hands, and at free. A worker stops at the first
// failure and says what it saw.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace exmem_stress {

// Operations per worker thread: EXMEM_STRESS_OPS, else 10,000,000. A value
// that is not a whole number > 0 is an error naming the variable (*error).
uint64_t ops_per_thread(std::string* error);
inline constexpr uint64_t kDefaultOps = 10'000'000;
// EXMEM_STRESS_SEED, else a fresh random seed.
uint64_t base_seed(std::string* error);

// xoshiro256** seeded by splitmix64.
class Rng {
 public:
  explicit Rng(uint64_t seed);
  uint64_t next();
  uint64_t below(uint64_t n) { return n ? next() % n : 0; }

 private:
  uint64_t s_[4];
};

// The bytes every object holds: a function of (id, size) only, so that a
// verifier needs nothing but the object's record.
void fill_pattern(void* p, size_t n, uint64_t id, size_t size);
// Index of the first byte of [p, p+n) that differs from the pattern, or n.
size_t check_pattern(const void* p, size_t n, uint64_t id, size_t size);

struct Object {
  uint8_t* p = nullptr;
  size_t size = 0;  // bytes asked for and written
  uint64_t id = 0;  // the pattern's id (changes on every rewrite)
};

// Objects handed from one worker to another (a mutex and a vector).
class Handoff {
 public:
  void push(const Object& o);
  void take_all(std::vector<Object>* out);
  size_t size();

 private:
  std::mutex m_;
  std::vector<Object> q_;
};

// Lets a controlling thread stop the workers between two operations (for a
// fork that must see their objects at rest) and let them go again.
class PauseGate {
 public:
  explicit PauseGate(int workers) : workers_(workers) {}
  // Worker side: called between operations; blocks while a pause is asked.
  void checkpoint();
  // A worker that has finished never reaches a checkpoint again.
  void retire();
  // Controller side: returns once every live worker waits at its checkpoint.
  void pause();
  void resume();

 private:
  std::mutex m_;
  std::condition_variable cv_;
  std::atomic<bool> asked_{false};
  int workers_;
  int waiting_ = 0;
};

struct WorkerStats {
  uint64_t ops = 0, allocs = 0, large_allocs = 0, frees = 0, reallocs = 0, writes = 0, handed = 0,
           received = 0, failed_allocs = 0;
  uint64_t bytes_verified = 0;
};

struct WorkerConfig {
  uint64_t ops = 0;
  uint64_t seed = 0;
  size_t target_live = 4096;  // objects each worker keeps around
  unsigned large_per_million = 200;  // allocations that are large objects (4 KiB .. 64 KiB)
};

class Worker {
 public:
  Worker(std::string name, WorkerConfig cfg, Handoff* out, Handoff* in, PauseGate* gate,
         std::atomic<bool>* stop);
  // Runs cfg.ops operations, then frees (after verifying) what it still holds.
  void run();
  // Verifies every object held (for a forked child; the worker must be at rest).
  bool verify_all(std::string* why) const;
  const std::vector<Object>& objects() const { return live_; }
  const std::string& failure() const { return failure_; }
  const WorkerStats& stats() const { return stats_; }
  const std::string& name() const { return name_; }
  // Operations done so far, readable from any thread (updated every 64).
  uint64_t progress() const { return progress_.load(std::memory_order_relaxed); }
  // A few addresses of objects this worker held lately, readable from any
  // thread (and from a child forked at any moment).
  static constexpr size_t kRecent = 64;
  void* recent(size_t i) const { return recent_[i].load(std::memory_order_relaxed); }

 private:
  bool fail(const std::string& what);
  bool verify(const Object& o, const char* when);
  bool do_alloc();
  bool do_free();
  bool do_realloc();
  bool do_write();
  bool do_handoff();
  bool receive();
  void finish(bool pair);
  size_t random_size();

  std::string name_;
  WorkerConfig cfg_;
  Rng rng_;
  Handoff* out_;
  Handoff* in_;
  PauseGate* gate_;
  std::atomic<bool>* stop_;
  std::vector<Object> live_;
  std::vector<Object> incoming_;
  uint64_t next_id_;
  std::string failure_;
  WorkerStats stats_;
  std::atomic<uint64_t> progress_{0};
  std::atomic<void*> recent_[kRecent] = {};
  size_t recent_at_ = 0;
};

// Frees what sits in a handoff queue after the workers ended, verifying each.
bool drain_handoff(Handoff* h, std::string* why);

}  // namespace exmem_stress
