// `exmem sim --jobs N`: the policies of one run, at most N at once, each on a
// thread of its own with its own Machine, and the progress line over all of
// them.
//
// Threads, not processes: a run shares nothing mutable with another. The
// model's and the run driver's objects with static storage are all const
// (function-local `static const` tables and registries, initialised once
// under the compiler's guard, and const arrays of names); checked with
// `nm -C` on libexmem_model.a, libexmem_sim.a and libexmem_report.a for
// writable data, and the model calls no rand(), getenv() or the like. Each
// run's results stay in memory as the typed RunResult the serial loop makes,
// so the report, its JSON and its table are built by the same code in the same
// order, with nothing serialised between processes.
#include <fmt/format.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <exception>
#include <limits>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "sim.hpp"

namespace exmem::cli::sim {

namespace {

using Clock = std::chrono::steady_clock;

// Where one run stands, written by its thread, read by the progress line.
struct Slot {
  enum State : int { Waiting, Running, Done };
  std::atomic<int> state{Waiting};
  std::atomic<std::uint64_t> events{0};
  std::atomic<std::uint32_t> millionths{0};  // of the run done
};

// The observer of one run: two relaxed stores now and then.
class SlotObserver final : public exmem::sim::RunObserver {
 public:
  explicit SlotObserver(Slot& slot) : slot_(slot) {}
  void begin(std::string_view) override { slot_.state.store(Slot::Running, std::memory_order_relaxed); }
  void checkpoint(std::uint64_t events, double fraction) override {
    slot_.events.store(events, std::memory_order_relaxed);
    slot_.millionths.store(static_cast<std::uint32_t>(std::clamp(fraction, 0.0, 1.0) * 1e6),
                           std::memory_order_relaxed);
  }
  void end() override {}

 private:
  Slot& slot_;
};

// The one progress line of concurrent runs: policies done and running, the
// share of all the runs' work done and the events per second of them all.
// Same rules as Progress: quiet for the first second (unless `immediate`), at
// most ten redraws a second, cleared before anything else is printed.
class GroupProgress {
 public:
  GroupProgress(bool enabled, bool immediate, unsigned jobs, std::vector<Slot>& slots)
      : enabled_(enabled), immediate_(immediate), jobs_(jobs), slots_(slots), start_(Clock::now()) {}
  GroupProgress(const GroupProgress&) = delete;
  GroupProgress& operator=(const GroupProgress&) = delete;
  ~GroupProgress() { clear(); }

  void draw() {
    if (!enabled_) return;
    const Clock::time_point now = Clock::now();
    if (!immediate_ && now - start_ < std::chrono::seconds(1)) return;
    std::size_t done = 0;
    std::size_t running = 0;
    std::uint64_t events = 0;
    double fraction = 0;
    for (const Slot& s : slots_) {
      const int state = s.state.load(std::memory_order_acquire);
      events += s.events.load(std::memory_order_relaxed);
      if (state == Slot::Done) {
        ++done;
        fraction += 1.0;
      } else if (state == Slot::Running) {
        ++running;
        fraction += s.millionths.load(std::memory_order_relaxed) / 1e6;
      }
    }
    fraction /= static_cast<double>(std::max<std::size_t>(1, slots_.size()));
    const double seconds = std::chrono::duration<double>(now - start_).count();
    const double rate = seconds > 0 ? static_cast<double>(events) / seconds : 0.0;
    draw_progress_line(
        fmt::format("{}/{} policies done, {} running ({} at once)", done, slots_.size(), running, jobs_), fraction,
        rate);
    drawn_ = true;
  }
  void clear() {
    if (!drawn_) return;
    clear_progress_line();
    drawn_ = false;
  }

 private:
  bool enabled_;
  bool immediate_;
  unsigned jobs_;
  std::vector<Slot>& slots_;
  Clock::time_point start_;
  bool drawn_ = false;
};

}  // namespace

unsigned online_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return static_cast<unsigned>(CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

std::vector<PolicyRun> run_concurrently(std::size_t count, unsigned jobs, bool progress_enabled, bool immediate,
                                        const std::function<exmem::sim::RunResult(std::size_t, exmem::sim::RunObserver&)>& run) {
  std::vector<PolicyRun> out(count);
  std::vector<Slot> slots(count);
  // Runs are taken in order; after a failure, the runs after it that have not
  // started are not started (a serial run would have stopped there; those
  // already running finish, as nothing can stop a run half-way).
  std::atomic<std::size_t> next{0};
  std::atomic<std::size_t> first_failed{std::numeric_limits<std::size_t>::max()};
  std::mutex mu;
  std::condition_variable changed;
  std::size_t finished_workers = 0;
  const unsigned workers = static_cast<unsigned>(std::min<std::size_t>(std::max(1u, jobs), count));

  auto work = [&] {
    for (std::size_t i; (i = next.fetch_add(1)) < count;) {
      if (i > first_failed.load()) continue;
      SlotObserver observer(slots[i]);
      try {
        out[i].result.emplace(run(i, observer));
      } catch (...) {
        out[i].error = std::current_exception();
        std::size_t f = first_failed.load();
        while (i < f && !first_failed.compare_exchange_weak(f, i)) {
        }
      }
      slots[i].state.store(Slot::Done, std::memory_order_release);
    }
    const std::lock_guard<std::mutex> lock(mu);
    ++finished_workers;
    changed.notify_one();
  };

  std::vector<std::thread> threads;
  threads.reserve(workers);
  for (unsigned k = 0; k < workers; ++k) {
    try {
      threads.emplace_back(work);
    } catch (const std::system_error&) {
      if (threads.empty()) throw;  // not even one: the error of the command
      break;                       // fewer at once than asked
    }
  }
  GroupProgress progress(progress_enabled, immediate, static_cast<unsigned>(threads.size()), slots);
  progress.draw();
  {
    std::unique_lock<std::mutex> lock(mu);
    while (finished_workers < threads.size()) {
      changed.wait_for(lock, std::chrono::milliseconds(100));
      lock.unlock();
      progress.draw();
      lock.lock();
    }
  }
  for (std::thread& t : threads) t.join();
  progress.clear();
  return out;
}

}  // namespace exmem::cli::sim
