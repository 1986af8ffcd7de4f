// workload/: what drives the model: the built-in synthetic workload (and,
// later, kmem trace readers and scenario files).
// Owns: the workload's own bookkeeping (its processes, its live allocations,
// its random stream). Must not touch: model state except through the public
// calls of Machine, phys::PhysMem and mm::Mm, as a kernel caller would.
//
// synthetic.hpp: secret churn by many processes (memfd_secret, ftruncate, mmap,
// faults, fork, fd passing, exit) mixed with ordinary kernel allocations
// (GFP_KERNEL orders 0-3, some reclaimable) and user allocations
// (GFP_HIGHUSER_MOVABLE pages and THPs), after a fill of long-lived user memory.
// Kernel and user pages go through Machine::alloc_pages()/free_pages(), so the
// policy's shrinker and pageblock marks see them; every step gives the
// machine's collapse scanner one tick.
#pragma once

#include <cstdint>
#include <functional>

#include "model/machine.hpp"

namespace exmem::model::workload {

struct WorkloadConfig {
  std::uint64_t events = 1'000'000;  // page alloc/free events to run
  std::uint64_t seed = 1;
  double secret_share = 0.4;  // of events: secret faults and frees
  double kernel_share = 0.3;  // kernel allocations and frees; the rest are user ones
  unsigned secret_processes = 64;  // processes holding a secret region at any time
  std::uint64_t max_secret_file_pages = 64;
  double fork_probability = 0.05;     // a finished secret holder forks before exiting
  double fd_pass_probability = 0.05;  // ... or passes its fd to a helper that maps it
  double fill = 0.5;  // fraction of free memory taken by long-lived THPs before the run
  std::uint64_t working_set_pages = 0;  // kernel + user pages live at once (0: automatic)
  // Write-protected page tables: user memory needs a page-table page per 512
  // base pages, taken from the policy and read-only in the direct map.
  bool wp_page_tables = false;

  // Secret holders' sizes and lifetimes: a file of min..max pages (uniform);
  // after faulting it in, the holder keeps it for a number of its turns drawn
  // from an exponential distribution of this mean (0: it lets go at once).
  std::uint64_t min_secret_file_pages = 1;
  double secret_hold_turns = 0;

  // The other users of unmapped pages (shares of events; secret_share +
  // kernel_share + these <= 1, the rest are user allocations).
  // MAP_EXCLUSIVE (2019): anonymous private mappings whose pages leave the
  // direct map at fault and come back at unmap.
  double map_exclusive_share = 0;
  std::uint64_t map_exclusive_max_pages = 64;
  // The execmem ROX cache (6.15): module and BPF program loads and unloads of
  // 1..rox_max_pages pages each.
  double rox_share = 0;
  std::uint64_t rox_max_pages = 64;
  // KVM guests whose memory is a guest_memfd with NO_DIRECT_MAP: `guests`
  // VMs of guest_pages each, faulted in and torn down over the run.
  double guest_share = 0;
  unsigned guests = 4;
  std::uint64_t guest_pages = 262'144;
};

struct WorkloadResult {
  std::uint64_t events = 0;
  std::uint64_t secret_faults = 0;
  std::uint64_t secret_frees = 0;
  std::uint64_t secret_ooms = 0;
  std::uint64_t secret_sigbus = 0;    // faults that ended in SIGBUS
  std::uint64_t mmap_failures = 0;    // mmap() of a secret region refused (ENOMEM, EAGAIN)
  std::uint64_t wp_tables_allocated = 0;
  std::uint64_t wp_tables_freed = 0;
  std::uint64_t wp_table_failures = 0;
  std::uint64_t kernel_allocs = 0;
  std::uint64_t kernel_frees = 0;
  std::uint64_t user_allocs = 0;
  std::uint64_t user_frees = 0;
  std::uint64_t alloc_failures = 0;
  std::uint64_t forks = 0;
  std::uint64_t fd_passes = 0;
  std::uint64_t fill_pages = 0;
  double fill_seconds = 0;
  double run_seconds = 0;
};

// xoshiro256** seeded by splitmix64: a small, fast, reproducible stream.
class Rng {
 public:
  explicit Rng(std::uint64_t seed);
  std::uint64_t next();
  std::uint64_t below(std::uint64_t n) { return n == 0 ? 0 : next() % n; }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

 private:
  std::uint64_t s_[4];
};

class SyntheticWorkload {
 public:
  SyntheticWorkload(Machine& machine, const WorkloadConfig& config);
  ~SyntheticWorkload();
  SyntheticWorkload(const SyntheticWorkload&) = delete;
  SyntheticWorkload& operator=(const SyntheticWorkload&) = delete;

  // Fills memory (once), then runs until config.events events have happened.
  // `after_step`, when given, is called after every step with the event count.
  WorkloadResult run(const std::function<void(std::uint64_t)>& after_step = {});

 private:
  struct State;
  void fill();
  void secret_step();
  void kernel_step();
  void user_step();

  Machine& machine_;
  WorkloadConfig config_;
  Rng rng_;
  std::unique_ptr<State> st_;
  WorkloadResult result_;
};

}  // namespace exmem::model::workload
