// run.cpp: the two run loops around one driver: boot, drive the workload while
// sampling, then describe the machine at the end.
#include "sim/run.hpp"

#include <algorithm>
#include <chrono>
#include <memory>

#include "sim/measure.hpp"

namespace exmem::sim {

namespace {

namespace md = exmem::model;
namespace wl = exmem::model::workload;

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Takes a sample each `every` events (the run's expected length / kSamples),
// and one at the very end.
class Sampler {
 public:
  Sampler(const md::Machine& machine, const md::tlb::TlbConfig& tlb, std::uint64_t seed, std::uint64_t expected,
          std::vector<Sample>& out)
      : machine_(machine),
        probe_(machine, tlb, seed),
        every_(std::max<std::uint64_t>(1, expected / kSamples)),
        next_(every_),
        out_(out) {}
  [[nodiscard]] std::uint64_t every() const { return every_; }
  // The event count of the next sample.
  [[nodiscard]] std::uint64_t next() const { return next_; }
  void at(std::uint64_t events) {
    if (events < next_) return;
    next_ = events + every_;
    take(events);
  }
  void finish(std::uint64_t events) {
    if (out_.empty() || out_.back().events != events) take(events);
  }

 private:
  void take(std::uint64_t events) {
    const auto& c = machine_.dmap().counters();
    out_.push_back({events, c.direct_map_4k_kb(), c.direct_map_2m_kb(), c.direct_map_1g_kb(), c.level2_splits,
                    c.level3_splits, probe_.sample()});
  }
  const md::Machine& machine_;
  MissRateProbe probe_;
  std::uint64_t every_;
  std::uint64_t next_;
  std::vector<Sample>& out_;
};

// What every run reports about the machine at its end.
void describe(RunResult& r, md::Machine& machine, const wl::Scenario& scenario, const RunOptions& o) {
  const std::uint64_t seed = scenario.workload.seed;
  const md::phys::PhysMem& phys = machine.phys();
  r.policy = std::string(machine.policy().name());
  r.peak_rss_bytes = peak_rss_bytes();
  r.model_bytes = machine.model_bytes();
  r.total_ram_pages = phys.total_ram_pages();
  r.direct_map = machine.dmap().counters();
  r.flushes = machine.flushes().counters();
  // What the run's direct map and flushes cost: the kernel access stream of
  // the run's own live kernel pages ([kernel_access]: hot set, locality,
  // weights by kind) on its final direct map and on the boot map of the same
  // RAM, once, at the end.
  const auto c0 = std::chrono::steady_clock::now();
  r.tlb_cost = md::tlb::estimate_cost(machine.dmap(), machine.phys(), machine.flushes().counters(), o.tlb,
                                      scenario.kernel_access, seed, o.costs, r.workload.events);
  r.cost_seconds = seconds_since(c0);
  r.allocator.stats = phys.stats();
  r.allocator.free_pages = phys.free_pages();
  r.allocator.pcp_pages = phys.pcp_pages();
  r.allocator.managed_pages = phys.managed_pages();
  r.allocator.min_free_kbytes = phys.min_free_kbytes();
  for (md::Pfn p = 0; p < phys.nr_frames(); p += md::kPageblockNrPages) {
    if (phys.kind(p) != md::phys::FrameKind::Hole && phys.pageblock_migratetype(p) == md::phys::MIGRATE_UNMOVABLE) {
      ++r.allocator.unmovable_pageblocks;
    }
  }
  r.collapse_mode = machine.config().collapse;
  r.collapse = machine.collapse_stats();
  r.pooled_pages = machine.policy().pooled_pages();
  for (unsigned z = 0; z < md::phys::MAX_NR_ZONES; ++z) {
    if (phys.zone(z).managed_pages == 0) continue;
    const auto info = phys.buddyinfo(z);
    ZoneFragmentation f;
    f.zone = std::string(md::phys::zone_name(z));
    for (unsigned order = 0; order < md::kNrPageOrders; ++order) {
      f.unusable_free_index[order] = phys.unusable_free_index(z, order);
      f.extfrag_index[order] = fragmentation_index(info, order);
    }
    r.fragmentation.push_back(std::move(f));
  }
  r.policy_counters = machine.policy().counters();
  r.mm = machine.mm().stats();
  r.secret_live_pages = machine.mm().secret_pages();
  r.owners = machine.mm().memory().stats();
  r.reclaim = machine.reclaim_stats();
  r.oom = machine.mm().oom();
  r.page_cache_pages = machine.mm().memory().cache_pages();
  r.slab_pages = machine.mm().memory().slab_pages();
}

// Boots the machine for `policy`, hands it to `drive` (which runs the workload
// and fills the workload's part of the result), then describes the machine.
template <class Drive>
RunResult run_on(const wl::Scenario& scenario, const std::string& policy, const RunOptions& o, Source source,
                 Drive drive) {
  md::MachineConfig mc = scenario.machine;
  mc.policy = policy;
  if (o.observer != nullptr) o.observer->begin(policy);
  RunResult r;
  r.source = source;
  r.scenario = scenario.name;
  const auto t0 = std::chrono::steady_clock::now();
  md::Machine machine(mc);
  r.boot_seconds = seconds_since(t0);
  drive(machine, r);
  if (o.observer != nullptr) o.observer->end();
  describe(r, machine, scenario, o);
  if (o.region_maps) {
    if (!r.map_start) r.map_start = md::region_map(machine);
    r.map_end = md::region_map(machine);
  }
  return r;
}

// A replay's counters under the synthetic workload's names.
wl::WorkloadResult as_workload(const wl::ReplayStats& st, const md::mm::MmStats& ms) {
  wl::WorkloadResult w;
  w.events = st.events;
  w.secret_faults = st.secret_faults;
  w.secret_frees = ms.secret_pages_freed;
  w.secret_ooms = st.secret_ooms;
  w.secret_sigbus = ms.faults_sigbus;
  w.kernel_allocs = st.kernel_allocs + st.reclaimable_allocs;
  w.kernel_frees = st.kernel_frees;
  w.user_allocs = st.user_allocs;
  w.user_frees = st.user_frees;
  w.alloc_failures = st.model_alloc_failures;
  w.frees_of_gone = st.frees_of_gone;
  w.processes_killed = st.processes_killed;
  w.run_seconds = st.seconds;
  return w;
}

}  // namespace

const ZoneFragmentation* RunResult::zone(std::string_view name) const {
  for (const auto& f : fragmentation) {
    if (f.zone == name) return &f;
  }
  return nullptr;
}

RunResult run_synthetic(const wl::Scenario& scenario, const std::string& policy, const RunOptions& o) {
  return run_on(scenario, policy, o, Source::Synthetic, [&](md::Machine& machine, RunResult& r) {
    const wl::WorkloadConfig& wc = scenario.workload;
    wl::SyntheticWorkload workload(machine, wc);
    Sampler sampler(machine, o.tlb, wc.seed, wc.events, r.over_time);
    const double total = static_cast<double>(std::max<std::uint64_t>(1, wc.events));
    // Woken after the first step (the start map), then at each sample and
    // every kObserverEvents for the progress bar: the steps between cost
    // nothing here.
    constexpr std::uint64_t kObserverEvents = 65536;
    r.workload = workload.run_waking([&](std::uint64_t events) {
      if (o.region_maps && !r.map_start) r.map_start = md::region_map(machine);  // after the fill
      sampler.at(events);
      if (o.observer == nullptr) return sampler.next();
      o.observer->checkpoint(events, static_cast<double>(events) / total);
      return std::min(sampler.next(), events + kObserverEvents);
    });
    if (o.observer != nullptr) o.observer->end();
    sampler.finish(r.workload.events);
  });
}

RunResult run_trace(const wl::Scenario& scenario, const std::string& policy, const std::string& trace_path,
                    const RunOptions& o) {
  return run_on(scenario, policy, o, Source::Trace, [&](md::Machine& machine, RunResult& r) {
    wl::TraceReplay replay(machine, trace_path);
    if (o.region_maps) r.map_start = md::region_map(machine);
    const wl::TraceInfo& info = replay.info();
    // Samples by events when the footer counted them, else by bytes (about 100 a line).
    const std::uint64_t expected = info.recorded_events != 0 ? info.recorded_events : info.bytes / 100;
    Sampler sampler(machine, o.tlb, scenario.workload.seed, expected, r.over_time);
    const wl::ReplayStats st = replay.run(
        [&](const wl::ReplayProgress& p) {
          const double fraction =
              p.total_bytes ? static_cast<double>(p.bytes) / static_cast<double>(p.total_bytes) : 0.0;
          if (o.observer != nullptr) o.observer->checkpoint(p.events, fraction);
          sampler.at(p.events);
        },
        std::clamp<std::uint64_t>(sampler.every() / 2, 1, 65536));
    if (o.observer != nullptr) o.observer->end();
    sampler.finish(st.events);
    r.workload = as_workload(st, machine.mm().stats());
    r.trace = st;
  });
}

}  // namespace exmem::sim
