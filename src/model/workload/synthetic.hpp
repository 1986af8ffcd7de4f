// workload/: what drives the model (see README.md for what the folder owns).
// synthetic.hpp: secret churn by many processes (memfd_secret, ftruncate, mmap,
// faults, fork, fd passing, exit) mixed with ordinary kernel allocations
// (GFP_KERNEL orders 0-3, some reclaimable) and user allocations
// (GFP_HIGHUSER_MOVABLE pages and THPs), after a fill of long-lived user memory;
// optionally with the other users of unmapped pages: MAP_EXCLUSIVE mappings,
// module loads through the execmem ROX cache, and KVM guests whose memory is a
// guest_memfd with NO_DIRECT_MAP.
// Kernel and user pages go through Machine::alloc_pages()/free_pages(), so the
// policy's shrinker and pageblock marks see them; every step gives the
// machine's collapse scanner one tick.
// User memory belongs to a few ordinary processes (the fill to the first, a
// long-lived "database"): anonymous pages, and a share of page cache they
// read; reclaimable kernel allocations are slab the shrinker can free. The
// OOM killer may kill any process and reclaim may take page cache and slab:
// the workload notices (a free of a page gone is counted, a killed process
// is replaced on its next turn) and carries on.
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
  // Ordinary processes owning the user memory (the first owns the fill), and
  // the share of user allocations that are page cache they read (reclaimable).
  unsigned ordinary_processes = 4;
  double page_cache_share = 0.3;
  std::uint64_t working_set_pages = 0;  // kernel + user pages live at once (0: automatic)
  // Write-protected page tables: user memory needs a page-table page per 512
  // base pages, taken from the policy and read-only in the direct map.
  bool wp_page_tables = false;

  // Secret holders' sizes and lifetimes: a file of min..max pages (uniform);
  // after faulting it in, the holder keeps it for a number of its turns drawn
  // from an exponential distribution of this mean, rounded to the nearest
  // whole turn (0: it lets go at once). MAP_EXCLUSIVE holders live as long.
  std::uint64_t min_secret_file_pages = 1;
  double secret_hold_turns = 0;

  // The other users of unmapped pages (shares of events; secret_share +
  // kernel_share + these <= 1, the rest are user allocations).
  // MAP_EXCLUSIVE (2019): anonymous private mappings whose pages leave the
  // direct map at fault and come back at unmap. secret_processes holders, each
  // mapping 1..map_exclusive_max_pages pages (all populated at mmap).
  double map_exclusive_share = 0;
  std::uint64_t map_exclusive_max_pages = 64;
  // The execmem ROX cache (6.15): module and BPF program loads and unloads of
  // 1..rox_max_pages pages each, about kRoxModules loaded at a time.
  double rox_share = 0;
  std::uint64_t rox_max_pages = 64;
  // KVM guests whose memory is a guest_memfd with NO_DIRECT_MAP: `guests`
  // VMs of guest_pages each, faulted in one folio per turn and torn down once
  // wholly faulted in (or when a fault finds no memory). The guest_memfd's
  // folios are of guest_folio_order (0: 4 KiB, as upstream; 9: 2 MiB, as
  // the huge-page guest_memfd series); guest_pages is a whole number of them.
  double guest_share = 0;
  unsigned guests = 4;
  std::uint64_t guest_pages = 262'144;
  unsigned guest_folio_order = 0;

  // Module loads kept live at a time (the ROX cache's working set).
  static constexpr std::size_t kRoxModules = 64;

  // std::invalid_argument naming the first setting that is out of range and
  // what was expected.
  void validate() const;
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
  std::uint64_t page_cache_allocs = 0;  // of user_allocs: page cache read
  std::uint64_t slab_allocs = 0;        // of kernel_allocs: reclaimable slab
  std::uint64_t frees_of_gone = 0;      // frees of pages reclaim or the OOM killer had taken: skipped
  std::uint64_t processes_killed = 0;   // workload processes the OOM killer took (seen on their turn)
  std::uint64_t processes_replaced = 0;
  std::uint64_t forks = 0;
  std::uint64_t fd_passes = 0;
  std::uint64_t hold_turns = 0;  // holder turns spent keeping memory (no event)
  // MAP_EXCLUSIVE
  std::uint64_t exclusive_faults = 0;    // pages populated (at mmap) or faulted
  std::uint64_t exclusive_frees = 0;     // pages given back (munmap, exit)
  std::uint64_t exclusive_failures = 0;  // mmap refused, or a page that could not be had
  // the execmem ROX cache
  std::uint64_t rox_loads = 0;
  std::uint64_t rox_unloads = 0;
  std::uint64_t rox_failures = 0;  // loads the cache could not serve (ENOMEM)
  // guest_memfd with NO_DIRECT_MAP
  std::uint64_t guest_faults = 0;     // folios allocated (of guest_folio_order)
  std::uint64_t guest_frees = 0;      // folios freed at teardown
  std::uint64_t guest_failures = 0;   // faults that found no page (the VM is then torn down)
  std::uint64_t guest_teardowns = 0;
  std::uint64_t fill_pages = 0;
  double fill_seconds = 0;
  double run_seconds = 0;
};

// xoshiro256** seeded by splitmix64: a small, fast, reproducible stream.
class Rng {
 public:
  explicit Rng(std::uint64_t seed);
  // xoshiro256**, inline: the workload draws a few per event.
  std::uint64_t next() {
    const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const std::uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }
  std::uint64_t below(std::uint64_t n) { return n == 0 ? 0 : next() % n; }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
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
  // The same, for a caller that wants to hear only now and then: after the
  // first step whose event count reaches `next` (0: the first step), calls
  // wake(events), which returns the next count it wants to hear of. The steps
  // in between cost one comparison, not a call.
  WorkloadResult run_waking(const std::function<std::uint64_t(std::uint64_t)>& wake, std::uint64_t next = 0);

 private:
  struct State;
  void fill();
  void secret_step();
  void kernel_step();
  void user_step();
  void exclusive_step();
  void rox_step();
  void guest_step();
  std::uint64_t draw_hold();
  mm::Pid ordinary(std::size_t i);
  // A block the workload lets go (a kernel block when its handle is kNoHandle).
  void free_block(const mm::OwnedPage& b, CpuId cpu);

  Machine& machine_;
  WorkloadConfig config_;
  Rng rng_;
  std::unique_ptr<State> st_;
  WorkloadResult result_;
};

}  // namespace exmem::model::workload
