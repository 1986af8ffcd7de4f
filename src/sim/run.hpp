// sim/: the run driver of `exmem sim`: one policy on a scenario's synthetic
// workload or on a recorded kmem trace, the direct map sampled along the run,
// and what the machine looks like at its end, as one typed RunResult.
// Owns: the run loops, sampling, the run's measurements (measure.hpp) and the
// catalogue of the figures a run reports (metrics.hpp). Must not touch: how a
// result is shown (the console table, JSON, CSV and the HTML page are the
// command's and the report writer's) and the model's insides (it drives the
// machine through its public interface only).
//
// run.hpp: the result and the two ways to get one.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "model/directmap/directmap.hpp"
#include "model/directmap/flush.hpp"
#include "model/machine.hpp"
#include "model/mm/mm.hpp"
#include "model/phys/physmem.hpp"
#include "model/policy/policy.hpp"
#include "model/snapshot.hpp"
#include "model/tlb/cost.hpp"
#include "model/tlb/tlb.hpp"
#include "model/workload/scenario.hpp"
#include "model/workload/synthetic.hpp"
#include "model/workload/trace_replay.hpp"

namespace exmem::sim {

// One sample of the direct map along a run.
struct Sample {
  std::uint64_t events = 0;
  std::uint64_t direct_map_4k_kb = 0;
  std::uint64_t direct_map_2m_kb = 0;
  std::uint64_t direct_map_1g_kb = 0;
  std::uint64_t level2_splits = 0;
  std::uint64_t level3_splits = 0;
  double tlb_miss_rate = 0;  // MissRateProbe (measure.hpp)
};

// The kernel's fragmentation indices of one zone (mm/vmstat.c), per order, in thousandths.
struct ZoneFragmentation {
  std::string zone;  // "DMA", "DMA32", "Normal", ...
  std::array<int, model::kNrPageOrders> unusable_free_index{};
  std::array<int, model::kNrPageOrders> extfrag_index{};
};

// The buddy allocator at the end of a run.
struct AllocatorState {
  model::phys::PhysStats stats;
  std::uint64_t free_pages = 0;
  std::uint64_t pcp_pages = 0;
  std::uint64_t managed_pages = 0;
  int min_free_kbytes = 0;
  std::uint64_t unmovable_pageblocks = 0;
};

enum class Source : std::uint8_t { Synthetic, Trace };

struct RunResult {
  std::string policy;
  std::string scenario;
  Source source = Source::Synthetic;
  // The host.
  std::uint64_t peak_rss_bytes = 0;
  std::uint64_t model_bytes = 0;
  std::uint64_t total_ram_pages = 0;
  double boot_seconds = 0;
  // The machine at the end of the run.
  model::directmap::DirectMapCounters direct_map;
  model::directmap::FlushCounters flushes;
  model::tlb::CostReport tlb_cost;  // the cost estimate on the final direct map
  double cost_seconds = 0;          // the time the estimate took (once, at the end of the run)
  AllocatorState allocator;
  model::CollapseMode collapse_mode = model::CollapseMode{};
  model::Machine::CollapseStats collapse;
  std::uint64_t pooled_pages = 0;
  std::vector<ZoneFragmentation> fragmentation;  // zones with managed pages
  std::vector<model::policy::Policy::Counter> policy_counters;
  model::mm::MmStats mm;
  std::uint64_t secret_live_pages = 0;
  // The owners of movable and reclaimable pages (mm/process_memory.hpp), what
  // the Machine's reclaim() and migrate() did for the allocator, and the OOM
  // killer's record with its victims.
  model::mm::OwnerStats owners;
  model::Machine::ReclaimStats reclaim;
  model::mm::OomStats oom;
  std::uint64_t page_cache_pages = 0;  // at the end
  std::uint64_t slab_pages = 0;        // reclaimable slab at the end
  // What drove it. A trace run's counters are in `workload` too, under the
  // synthetic workload's names (kernel allocations include the reclaimable
  // ones, secret frees are the pages the model freed, ...), and in `trace`.
  model::workload::WorkloadResult workload;
  std::optional<model::workload::ReplayStats> trace;
  // Along the run, about kSamples of them, the last at its end.
  std::vector<Sample> over_time;
  // When asked: the region maps after the fill (a trace's: at boot) and at the end.
  std::optional<model::RegionMap> map_start;
  std::optional<model::RegionMap> map_end;

  [[nodiscard]] std::uint64_t events() const { return workload.events; }
  [[nodiscard]] double events_per_second() const {
    return workload.run_seconds > 0 ? static_cast<double>(workload.events) / workload.run_seconds : 0.0;
  }
  // The zone's indices, or nullptr when the machine has no such zone.
  [[nodiscard]] const ZoneFragmentation* zone(std::string_view name) const;
};

// Samples of the direct map over a run.
inline constexpr std::uint64_t kSamples = 50;

// Told how a run goes (the command's progress bar); every call may be ignored.
class RunObserver {
 public:
  virtual ~RunObserver() = default;
  virtual void begin(std::string_view policy) = 0;
  // Now and then (every few thousand events of a synthetic run, every few
  // thousand lines of a trace's replay): a good moment to redraw.
  virtual void checkpoint(std::uint64_t events, double fraction) = 0;
  virtual void end() = 0;
};

struct RunOptions {
  model::tlb::TlbConfig tlb;
  // The figures of the slowdown estimate: built-in constants, or a costs file's (costs.hpp).
  model::tlb::KernelCostFigures costs;
  bool region_maps = false;
  RunObserver* observer = nullptr;
};

// One policy on the scenario's synthetic workload. std::invalid_argument when
// the machine cannot be built.
RunResult run_synthetic(const model::workload::Scenario& scenario, const std::string& policy,
                        const RunOptions& options);
// One policy replaying a trace of the real kernel (see workload/trace_replay.hpp);
// TraceError when it cannot be read.
RunResult run_trace(const model::workload::Scenario& scenario, const std::string& policy,
                    const std::string& trace_path, const RunOptions& options);

}  // namespace exmem::sim
