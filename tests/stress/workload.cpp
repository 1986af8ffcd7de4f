#include "workload.hpp"

#include <exmem/exmem.h>
#include <sys/random.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace exmem_stress {

namespace {

uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

// A whole number > 0 from the environment variable `name`, or `dflt` when unset.
uint64_t env_number(const char* name, uint64_t dflt, std::string* error) {
  const char* v = std::getenv(name);
  if (!v || !*v) return dflt;
  char* end = nullptr;
  errno = 0;
  unsigned long long n = std::strtoull(v, &end, 10);
  if (errno != 0 || *end != '\0' || n == 0 || v[0] == '-') {
    *error = std::string(name) + "=\"" + v + "\": expected a whole number greater than 0";
    return 0;
  }
  return n;
}

// Index of the first byte of [p, p+n) that is not zero, or n.
size_t first_nonzero(const uint8_t* p, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    if (w) break;
  }
  for (; i < n; ++i)
    if (p[i]) return i;
  return n;
}

std::string hex(const void* p) {
  char b[32];
  std::snprintf(b, sizeof b, "%p", p);
  return b;
}

}  // namespace

uint64_t ops_per_thread(std::string* error) { return env_number("EXMEM_STRESS_OPS", kDefaultOps, error); }

uint64_t base_seed(std::string* error) {
  uint64_t fresh = 0;
  if (getrandom(&fresh, sizeof fresh, 0) != sizeof fresh) fresh = 0x5eed;
  return env_number("EXMEM_STRESS_SEED", fresh | 1, error);
}

Rng::Rng(uint64_t seed) {
  for (uint64_t& s : s_) s = splitmix64(seed);
}

uint64_t Rng::next() {
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

// Word i of the pattern is base + i * step: a shifted, truncated or foreign
// copy differs at once, and filling costs one add per 8 bytes.
namespace {
struct PatternWords {
  uint64_t base, step;
  PatternWords(uint64_t id, size_t size) {
    uint64_t x = id ^ (uint64_t{size} << 40);
    base = splitmix64(x);
    step = splitmix64(x) | 1;
  }
};
}  // namespace

void fill_pattern(void* p, size_t n, uint64_t id, size_t size) {
  PatternWords w(id, size);
  auto* b = static_cast<uint8_t*>(p);
  size_t words = n / 8;
  uint64_t v = w.base;
  for (size_t i = 0; i < words; ++i, v += w.step) std::memcpy(b + i * 8, &v, 8);
  if (size_t rest = n % 8) std::memcpy(b + words * 8, &v, rest);
}

size_t check_pattern(const void* p, size_t n, uint64_t id, size_t size) {
  PatternWords w(id, size);
  auto* b = static_cast<const uint8_t*>(p);
  size_t words = n / 8;
  uint64_t v = w.base;
  for (size_t i = 0; i < words; ++i, v += w.step) {
    uint64_t got;
    std::memcpy(&got, b + i * 8, 8);
    if (got != v) {
      for (size_t k = 0; k < 8; ++k)
        if (b[i * 8 + k] != reinterpret_cast<const uint8_t*>(&v)[k]) return i * 8 + k;
    }
  }
  size_t rest = n % 8;
  for (size_t k = 0; k < rest; ++k)
    if (b[words * 8 + k] != reinterpret_cast<const uint8_t*>(&v)[k]) return words * 8 + k;
  return n;
}

void Handoff::push(const Object& o) {
  std::lock_guard<std::mutex> l(m_);
  q_.push_back(o);
}

void Handoff::take_all(std::vector<Object>* out) {
  std::lock_guard<std::mutex> l(m_);
  out->insert(out->end(), q_.begin(), q_.end());
  q_.clear();
}

size_t Handoff::size() {
  std::lock_guard<std::mutex> l(m_);
  return q_.size();
}

void PauseGate::checkpoint() {
  if (!asked_.load(std::memory_order_acquire)) return;
  std::unique_lock<std::mutex> l(m_);
  ++waiting_;
  cv_.notify_all();
  cv_.wait(l, [&] { return !asked_.load(std::memory_order_relaxed); });
  --waiting_;
}

void PauseGate::retire() {
  std::lock_guard<std::mutex> l(m_);
  --workers_;
  cv_.notify_all();
}

void PauseGate::pause() {
  std::unique_lock<std::mutex> l(m_);
  asked_.store(true, std::memory_order_release);
  cv_.wait(l, [&] { return waiting_ >= workers_; });
}

void PauseGate::resume() {
  std::lock_guard<std::mutex> l(m_);
  asked_.store(false, std::memory_order_release);
  cv_.notify_all();
}

Worker::Worker(std::string name, WorkerConfig cfg, Handoff* out, Handoff* in, PauseGate* gate,
               std::atomic<bool>* stop)
    : name_(std::move(name)),
      cfg_(cfg),
      rng_(cfg.seed),
      out_(out),
      in_(in),
      gate_(gate),
      stop_(stop),
      next_id_(cfg.seed << 20) {
  live_.reserve(cfg_.target_live * 2);
}

bool Worker::fail(const std::string& what) {
  char seed[64];
  std::snprintf(seed, sizeof seed, " (worker seed %" PRIu64 ", after %" PRIu64 " operations)", cfg_.seed,
                stats_.ops);
  failure_ = name_ + ": " + what + seed;
  if (stop_) stop_->store(true);
  return false;
}

bool Worker::verify(const Object& o, const char* when) {
  size_t usable = exmem_usable_size(o.p);
  if (usable < o.size)
    return fail(std::string(when) + ": exmem_usable_size(" + hex(o.p) + ") = " + std::to_string(usable) +
                ", less than the " + std::to_string(o.size) + " bytes asked");
  size_t bad = check_pattern(o.p, o.size, o.id, o.size);
  stats_.bytes_verified += o.size;
  if (bad != o.size)
    return fail(std::string(when) + ": object " + hex(o.p) + " (" + std::to_string(o.size) + " bytes, id " +
                std::to_string(o.id) + ") differs from its pattern at byte " + std::to_string(bad));
  return true;
}

size_t Worker::random_size() {
  uint64_t r = rng_.below(1'000'000);
  if (r < cfg_.large_per_million) {
    ++stats_.large_allocs;
    return 4097 + rng_.below(60 * 1024);
  }
  uint64_t k = rng_.below(100);
  if (k < 60) return 1 + rng_.below(128);
  if (k < 90) return 129 + rng_.below(896);
  return 1025 + rng_.below(3072);
}

bool Worker::do_alloc() {
  size_t n = random_size();
  void* p = exmem_alloc(n);
  if (!p)
    return fail("exmem_alloc(" + std::to_string(n) + ") failed: " + exmem_last_error_message());
  Object o{static_cast<uint8_t*>(p), n, next_id_++};
  // A new object reads as zeros: freed memory was wiped before its reuse.
  if (size_t i = first_nonzero(o.p, n); i != n)
    return fail("exmem_alloc(" + std::to_string(n) + ") = " + hex(p) + ": byte " + std::to_string(i) +
                " is not zero (freed memory not wiped?)");
  fill_pattern(o.p, n, o.id, n);
  live_.push_back(o);
  recent_[recent_at_++ % kRecent].store(p, std::memory_order_relaxed);
  ++stats_.allocs;
  return true;
}

bool Worker::do_free() {
  size_t i = rng_.below(live_.size());
  Object o = live_[i];
  if (!verify(o, "before exmem_free")) return false;
  live_[i] = live_.back();
  live_.pop_back();
  exmem_free(o.p);
  ++stats_.frees;
  return true;
}

bool Worker::do_realloc() {
  size_t i = rng_.below(live_.size());
  Object& o = live_[i];
  if (!verify(o, "before exmem_realloc")) return false;
  size_t n = random_size();
  void* q = exmem_realloc(o.p, n);
  if (!q)
    return fail("exmem_realloc(" + hex(o.p) + ", " + std::to_string(n) + ") failed: " + exmem_last_error_message());
  auto* nq = static_cast<uint8_t*>(q);
  size_t keep = n < o.size ? n : o.size;
  size_t bad = check_pattern(nq, keep, o.id, o.size);
  if (bad != keep)
    return fail("exmem_realloc(" + hex(o.p) + ", " + std::to_string(n) + ") = " + hex(q) +
                " lost the object's prefix at byte " + std::to_string(bad) + " of " + std::to_string(keep));
  o = Object{nq, n, next_id_++};
  fill_pattern(o.p, n, o.id, n);
  recent_[recent_at_++ % kRecent].store(q, std::memory_order_relaxed);
  ++stats_.reallocs;
  return true;
}

bool Worker::do_write() {
  Object& o = live_[rng_.below(live_.size())];
  if (!verify(o, "before rewriting")) return false;
  o.id = next_id_++;
  fill_pattern(o.p, o.size, o.id, o.size);
  ++stats_.writes;
  return true;
}

bool Worker::do_handoff() {
  size_t i = rng_.below(live_.size());
  Object o = live_[i];
  if (!verify(o, "before handing over")) return false;
  live_[i] = live_.back();
  live_.pop_back();
  out_->push(o);
  ++stats_.handed;
  return true;
}

bool Worker::receive() {
  incoming_.clear();
  in_->take_all(&incoming_);
  for (const Object& o : incoming_) {
    if (!verify(o, "received from the other thread")) return false;
    live_.push_back(o);
    ++stats_.received;
  }
  return true;
}

void Worker::run() {
  const bool pair = out_ && in_;
  for (uint64_t op = 0; op < cfg_.ops; ++op) {
    stats_.ops = op;
    if ((op & 63) == 0) {
      progress_.store(op, std::memory_order_relaxed);
      if (stop_ && stop_->load(std::memory_order_relaxed)) break;
      if (gate_) gate_->checkpoint();
      if (pair && !receive()) break;
    }
    bool ok;
    uint64_t r = rng_.below(100);
    if (live_.empty() || (live_.size() < cfg_.target_live && r < 40) || (r < 30)) {
      ok = do_alloc();
    } else if (r < 70) {
      ok = do_free();
    } else if (r < 80) {
      ok = do_realloc();
    } else if (r < 95 || !pair) {
      ok = do_write();
    } else {
      ok = do_handoff();
    }
    if (!ok) break;
  }
  if (failure_.empty()) {
    stats_.ops = cfg_.ops;
    progress_.store(cfg_.ops, std::memory_order_relaxed);
    finish(pair);
  }
  // Until here a pause may still catch this worker (between two frees).
  if (gate_) gate_->retire();
}

void Worker::finish(bool pair) {
  if (pair && !receive()) return;
  for (size_t k = 0; !live_.empty(); ++k) {
    if ((k & 63) == 0 && gate_) gate_->checkpoint();
    if (!verify(live_.back(), "at the end, before exmem_free")) return;
    exmem_free(live_.back().p);
    live_.pop_back();
    ++stats_.frees;
  }
}

bool Worker::verify_all(std::string* why) const {
  for (const Object& o : live_) {
    size_t usable = exmem_usable_size(o.p);
    size_t bad = check_pattern(o.p, o.size, o.id, o.size);
    if (usable < o.size || bad != o.size) {
      *why = name_ + ": object " + hex(o.p) + " (" + std::to_string(o.size) + " bytes, usable " +
             std::to_string(usable) + ") differs from its pattern at byte " + std::to_string(bad);
      return false;
    }
  }
  return true;
}

bool drain_handoff(Handoff* h, std::string* why) {
  std::vector<Object> left;
  h->take_all(&left);
  for (const Object& o : left) {
    size_t bad = check_pattern(o.p, o.size, o.id, o.size);
    if (bad != o.size) {
      *why = "object " + hex(o.p) + " left in a handoff queue differs from its pattern at byte " +
             std::to_string(bad);
      return false;
    }
    exmem_free(o.p);
  }
  return true;
}

}  // namespace exmem_stress
