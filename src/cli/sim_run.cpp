// `exmem sim`: one policy's run, on the synthetic workload or on a trace, and
// its JSON object (the keys README and the report writer rely on).
#include <sys/resource.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <memory>
#include <random>
#include <vector>

#include "model/machine.hpp"
#include "model/snapshot.hpp"
#include "model/tlb/cost.hpp"
#include "model/tlb/tlb.hpp"
#include "model/workload/synthetic.hpp"
#include "model/workload/trace_replay.hpp"
#include "report/report.hpp"
#include "sim.hpp"

namespace exmem::cli::sim {

namespace {

namespace md = exmem::model;

// Samples of the direct map over a run (direct_map_over_time).
constexpr std::uint64_t kSamples = 50;

std::uint64_t peak_rss_bytes() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<std::uint64_t>(ru.ru_maxrss) * 1024;  // ru_maxrss is in KiB on Linux
}

// mirrors __fragmentation_index() of mm/vmstat.c: -1000 when a block of the
// order is free; else toward 0 when failure would be for want of memory and
// toward 1000 when it would be for fragmentation.
int fragmentation_index(const std::array<std::uint64_t, md::kNrPageOrders>& nr_free, unsigned order) {
  std::uint64_t total = 0;
  std::uint64_t suitable = 0;
  std::uint64_t free_pages = 0;
  for (unsigned o = 0; o < md::kNrPageOrders; ++o) {
    total += nr_free[o];
    free_pages += nr_free[o] << o;
    if (o >= order) suitable += nr_free[o] << (o - order);
  }
  if (total == 0) return 0;
  if (suitable != 0) return -1000;
  const std::uint64_t requested = std::uint64_t{1} << order;
  return static_cast<int>(1000 - (1000 + free_pages * 1000 / requested) / total);
}

// A cheap TLB miss rate for the samples along a run: one fixed sequence of
// the cost estimate's kernel accesses (its Zipf hot set, another seed) through
// one CPU's TLB, flushed first, on the direct map as it stands: a miss fills
// the leaf the direct map has now. The same accesses every time, so samples
// differ only by what the run did to the direct map. The first half warms the
// TLB, the second half is measured; it is colder than the final estimate's
// (which gives every CPU hundreds of times more accesses), so its rate is
// higher: compare samples with each other, not with tlb_cost.miss_rate.
class MissRateProbe {
 public:
  MissRateProbe(const md::Machine& machine, const md::tlb::TlbConfig& tlb, std::uint64_t seed)
      : machine_(machine), tlb_(tlb) {
    md::tlb::AccessStream stream(machine.dmap(), machine.phys(), md::tlb::AccessConfig{}, seed ^ 0x5851F42D4C957F2Dull);
    accesses_.reserve(kAccesses);
    for (std::size_t i = 0; i < kAccesses; ++i) accesses_.push_back(stream.next());
  }

  double sample() {
    tlb_.flush_all();
    const md::directmap::DirectMap& dmap = machine_.dmap();
    std::uint64_t walks = 0;
    std::uint64_t measured = 0;
    for (std::size_t i = 0; i < accesses_.size(); ++i) {
      const md::Pfn p = accesses_[i];
      const md::directmap::Lookup lk = dmap.lookup(p);
      if (!lk.present()) continue;  // a page that left the direct map since
      const bool counted = i >= accesses_.size() / 2;
      measured += counted ? 1 : 0;
      if (tlb_.lookup(md::tlb::kKernelAsid, p).level >= 0) continue;
      walks += counted ? 1 : 0;
      md::tlb::Translation t;
      t.size = md::tlb::page_size_of(lk.level);
      t.vpn = p & ~(md::tlb::pages_of(t.size) - 1);
      t.pfn = static_cast<md::Pfn>(t.vpn);
      t.flags = lk.flags;
      tlb_.fill(t, p);
    }
    return measured == 0 ? 0.0 : static_cast<double>(walks) / static_cast<double>(measured);
  }

 private:
  static constexpr std::size_t kAccesses = 1024;
  const md::Machine& machine_;
  md::tlb::CpuTlb tlb_;
  std::vector<md::Pfn> accesses_;
};

nlohmann::json sample(const md::Machine& machine, std::uint64_t events, MissRateProbe& probe) {
  const auto& c = machine.dmap().counters();
  return {{"events", events},
          {"DirectMap4k", c.direct_map_4k_kb()},
          {"DirectMap2M", c.direct_map_2m_kb()},
          {"DirectMap1G", c.direct_map_1g_kb()},
          {"direct_map_level2_splits", c.level2_splits},
          {"direct_map_level3_splits", c.level3_splits},
          {"tlb_miss_rate", probe.sample()}};
}

// What every run reports about the machine at its end.
void machine_report(nlohmann::json& j, md::Machine& machine, const md::tlb::TlbConfig& tlb, std::uint64_t seed) {
  const auto& dm = machine.dmap().counters();
  const auto& fl = machine.flushes().counters();
  const auto& ps = machine.phys().stats();
  const std::uint64_t frames = machine.phys().total_ram_pages();
  std::uint64_t unmovable_blocks = 0;
  for (md::Pfn p = 0; p < machine.phys().nr_frames(); p += md::kPageblockNrPages) {
    if (machine.phys().kind(p) != md::phys::FrameKind::Hole &&
        machine.phys().pageblock_migratetype(p) == md::phys::MIGRATE_UNMOVABLE) {
      ++unmovable_blocks;
    }
  }
  j["policy"] = std::string(machine.policy().name());
  j["peak_rss_bytes"] = peak_rss_bytes();
  j["model_bytes"] = machine.model_bytes();
  j["model_bytes_per_frame"] = frames ? static_cast<double>(machine.model_bytes()) / static_cast<double>(frames) : 0.0;
  j["direct_map"] = {
      {"DirectMap4k", dm.direct_map_4k_kb()},
      {"DirectMap2M", dm.direct_map_2m_kb()},
      {"DirectMap1G", dm.direct_map_1g_kb()},
      {"direct_map_level2_splits", dm.level2_splits},
      {"direct_map_level3_splits", dm.level3_splits},
      {"direct_map_level2_collapses", dm.level2_collapses},
      {"direct_map_level3_collapses", dm.level3_collapses},
      {"page_table_pages", dm.table_pages_allocated - dm.table_pages_freed},
      {"split_enomem", dm.split_enomem},
  };
  j["tlb_flushes"] = {
      {"range_flushes", fl.range_flushes},
      {"range_pages", fl.range_pages},
      {"full_flushes", fl.full_flushes},
      {"local_flushes", fl.local_flushes},
  };
  // What the run's direct map and flushes cost: the same kernel access stream
  // (hot set, Zipf locality, speculation) on every policy's final direct map.
  const md::tlb::CostReport cost = md::tlb::estimate_cost(machine.dmap(), machine.phys(),
                                                          machine.flushes().counters(), tlb,
                                                          md::tlb::AccessConfig{}, seed);
  j["tlb_cost"] = {
      {"tlb", cost.tlb},
      {"accesses", cost.accesses},
      {"misses", cost.misses},
      {"miss_rate", cost.miss_rate},
      {"walk_cycles", cost.walk_cycles},
      {"ipis", cost.ipis},
      {"shootdown_us", cost.shootdown_us},
      {"leaves_4k", cost.leaves_4k},
      {"leaves_2m", cost.leaves_2m},
      {"leaves_1g", cost.leaves_1g},
  };
  j["allocator"] = {
      {"pgalloc", ps.pgalloc},
      {"pgalloc_fail", ps.pgalloc_fail},
      {"pgfree", ps.pgfree},
      {"extfrag_claims", ps.extfrag_claims},
      {"extfrag_steals", ps.extfrag_steals},
      {"pcp_refills", ps.pcp_refills},
      {"pcp_drains", ps.pcp_drains},
      {"slowpath", ps.slowpath},
      {"free_pages", machine.phys().free_pages()},
      {"pcp_pages", machine.phys().pcp_pages()},
      {"managed_pages", machine.phys().managed_pages()},
      {"min_free_kbytes", machine.phys().min_free_kbytes()},
      {"unmovable_pageblocks", unmovable_blocks},
  };
  const auto& cs = machine.collapse_stats();
  j["collapse"] = {
      {"mode", std::string(md::collapse_mode_name(machine.config().collapse))},
      {"regions_scanned", cs.attempts},
      {"collapses", cs.collapses},
      {"flushes", cs.flushes},
  };
  j["pooled_pages"] = machine.policy().pooled_pages();
  // The kernel's fragmentation indices (mm/vmstat.c), per zone and order, in thousandths.
  nlohmann::json frag = nlohmann::json::object();
  for (unsigned z = 0; z < md::phys::MAX_NR_ZONES; ++z) {
    if (machine.phys().zone(z).managed_pages == 0) continue;
    const auto info = machine.phys().buddyinfo(z);
    nlohmann::json unusable = nlohmann::json::array();
    nlohmann::json extfrag = nlohmann::json::array();
    for (unsigned order = 0; order < md::kNrPageOrders; ++order) {
      unusable.push_back(machine.phys().unusable_free_index(z, order));
      extfrag.push_back(fragmentation_index(info, order));
    }
    frag[std::string(md::phys::zone_name(z))] = {{"unusable_free_index", unusable}, {"extfrag_index", extfrag}};
  }
  j["fragmentation"] = frag;
  nlohmann::json pc = nlohmann::json::object();
  for (const auto& c : machine.policy().counters()) pc[c.name] = c.value;
  j["policy_counters"] = pc;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

nlohmann::json run_synthetic(const md::workload::Scenario& scenario, const std::string& policy,
                             const md::tlb::TlbConfig& tlb, Progress& progress, bool region_maps) {
  md::MachineConfig mc = scenario.machine;
  mc.policy = policy;
  const md::workload::WorkloadConfig& wc = scenario.workload;
  progress.begin(policy);
  const auto t0 = std::chrono::steady_clock::now();
  md::Machine machine(mc);
  const double boot_seconds = seconds_since(t0);
  md::workload::SyntheticWorkload workload(machine, wc);
  MissRateProbe probe(machine, tlb, wc.seed);
  nlohmann::json over_time = nlohmann::json::array();
  const std::uint64_t every = std::max<std::uint64_t>(1, wc.events / kSamples);
  std::uint64_t next_sample = every;
  const double total = static_cast<double>(std::max<std::uint64_t>(1, wc.events));
  nlohmann::json map_start;
  const md::workload::WorkloadResult r = workload.run([&](std::uint64_t events) {
    if (region_maps && map_start.is_null()) map_start = report::to_json(md::region_map(machine));
    progress.update(events, static_cast<double>(events) / total);
    if (events < next_sample) return;
    next_sample = events + every;
    over_time.push_back(sample(machine, events, probe));
  });
  progress.end();
  if (over_time.empty() || over_time.back()["events"].get<std::uint64_t>() != r.events) {
    over_time.push_back(sample(machine, r.events, probe));  // the end of the run
  }

  nlohmann::json j;
  machine_report(j, machine, tlb, wc.seed);
  if (region_maps) {
    if (map_start.is_null()) map_start = report::to_json(md::region_map(machine));
    j["region_map"] = {{"start", map_start}, {"end", report::to_json(md::region_map(machine))}};
  }
  const auto& ms = machine.mm().stats();
  j["scenario"] = scenario.name;
  j["events"] = r.events;
  j["events_per_second"] = r.run_seconds > 0 ? static_cast<double>(r.events) / r.run_seconds : 0.0;
  j["run_seconds"] = r.run_seconds;
  j["boot_seconds"] = boot_seconds;
  j["fill_seconds"] = r.fill_seconds;
  j["secretmem"] = {
      {"faults", r.secret_faults},
      {"frees", r.secret_frees},
      {"ooms", r.secret_ooms},
      {"live_pages", machine.mm().secret_pages()},
      {"files_created", ms.secret_files_created},
      {"forks", r.forks},
      {"fd_passes", r.fd_passes},
  };
  j["failures"] = {
      {"oom_at_fault", r.secret_ooms},
      {"sigbus_at_fault", r.secret_sigbus},
      {"mmap_failed", r.mmap_failures},
  };
  j["direct_map_over_time"] = over_time;
  j["workload"] = {
      {"kernel_allocs", r.kernel_allocs},
      {"kernel_frees", r.kernel_frees},
      {"user_allocs", r.user_allocs},
      {"user_frees", r.user_frees},
      {"alloc_failures", r.alloc_failures},
      {"fill_pages", r.fill_pages},
      {"wp_tables_allocated", r.wp_tables_allocated},
      {"wp_tables_freed", r.wp_tables_freed},
      {"wp_table_failures", r.wp_table_failures},
      {"hold_turns", r.hold_turns},
      {"exclusive_faults", r.exclusive_faults},
      {"exclusive_frees", r.exclusive_frees},
      {"exclusive_failures", r.exclusive_failures},
      {"rox_loads", r.rox_loads},
      {"rox_unloads", r.rox_unloads},
      {"rox_failures", r.rox_failures},
      {"guest_faults", r.guest_faults},
      {"guest_frees", r.guest_frees},
      {"guest_failures", r.guest_failures},
      {"guest_teardowns", r.guest_teardowns},
  };
  return j;
}

nlohmann::json run_trace(const md::workload::Scenario& scenario, const std::string& policy,
                         const md::tlb::TlbConfig& tlb, const std::string& trace_path, Progress& progress,
                         bool region_maps) {
  md::MachineConfig mc = scenario.machine;
  mc.policy = policy;
  progress.begin(policy);
  const auto t0 = std::chrono::steady_clock::now();
  md::Machine machine(mc);
  const double boot_seconds = seconds_since(t0);
  md::workload::TraceReplay replay(machine, trace_path);
  nlohmann::json map_start;
  if (region_maps) map_start = report::to_json(md::region_map(machine));
  MissRateProbe probe(machine, tlb, scenario.workload.seed);
  const md::workload::TraceInfo& info = replay.info();
  // Samples by events when the footer counted them, else by bytes (about 100 a line).
  const std::uint64_t expected = info.recorded_events != 0 ? info.recorded_events : info.bytes / 100;
  const std::uint64_t every = std::max<std::uint64_t>(1, expected / kSamples);
  std::uint64_t next_sample = every;
  nlohmann::json over_time = nlohmann::json::array();
  const md::workload::ReplayStats st = replay.run(
      [&](const md::workload::ReplayProgress& p) {
        const double fraction = p.total_bytes ? static_cast<double>(p.bytes) / static_cast<double>(p.total_bytes) : 0.0;
        progress.update_now(p.events, fraction);
        if (p.events < next_sample) return;
        next_sample = p.events + every;
        over_time.push_back(sample(machine, p.events, probe));
      },
      std::clamp<std::uint64_t>(every / 2, 1, 65536));
  progress.end();
  if (over_time.empty() || over_time.back()["events"].get<std::uint64_t>() != st.events) {
    over_time.push_back(sample(machine, st.events, probe));
  }

  nlohmann::json j;
  machine_report(j, machine, tlb, scenario.workload.seed);
  if (region_maps) {
    j["region_map"] = {{"start", map_start}, {"end", report::to_json(md::region_map(machine))}};
  }
  const auto& ms = machine.mm().stats();
  j["scenario"] = scenario.name;
  j["events"] = st.events;
  j["events_per_second"] = st.seconds > 0 ? static_cast<double>(st.events) / st.seconds : 0.0;
  j["run_seconds"] = st.seconds;
  j["boot_seconds"] = boot_seconds;
  j["fill_seconds"] = 0.0;
  j["secretmem"] = {
      {"faults", st.secret_faults},
      {"frees", ms.secret_pages_freed},
      {"ooms", st.secret_ooms},
      {"live_pages", machine.mm().secret_pages()},
      {"files_created", ms.secret_files_created},
      {"forks", 0},
      {"fd_passes", 0},
  };
  j["failures"] = {
      {"oom_at_fault", st.secret_ooms},
      {"sigbus_at_fault", ms.faults_sigbus},
      {"mmap_failed", 0},
  };
  j["direct_map_over_time"] = over_time;
  j["workload"] = {
      {"kernel_allocs", st.kernel_allocs + st.reclaimable_allocs},
      {"kernel_frees", st.kernel_frees},
      {"user_allocs", st.user_allocs},
      {"user_frees", st.user_frees},
      {"alloc_failures", st.model_alloc_failures},
      {"fill_pages", 0},
      {"wp_tables_allocated", 0},
      {"wp_tables_freed", 0},
      {"wp_table_failures", 0},
  };
  nlohmann::json unknown = nlohmann::json::array();
  for (const auto& u : st.first_unknown) unknown.push_back({{"line", u.line}, {"text", u.text}, {"why", u.why}});
  j["trace"] = {
      {"lines", st.lines},
      {"bytes", st.bytes},
      {"events", st.events},
      {"allocs", st.allocs},
      {"allocs_failed_in_trace", st.allocs_failed_in_trace},
      {"allocs_replayed", st.allocs_replayed},
      {"model_alloc_failures", st.model_alloc_failures},
      {"kernel_allocs", st.kernel_allocs},
      {"reclaimable_allocs", st.reclaimable_allocs},
      {"user_allocs", st.user_allocs},
      {"realloc_while_live", st.realloc_while_live},
      {"unknown_gfp_allocs", st.unknown_gfp_allocs},
      {"unknown_gfp_names", st.unknown_gfp_names},
      {"frees", st.frees},
      {"frees_replayed", st.frees_replayed},
      {"frees_unknown", st.frees_unknown},
      {"frees_partial", st.frees_partial},
      {"frees_of_model_failures", st.frees_of_model_failures},
      {"secret_marked", st.secret_marked},
      {"secret_faults", st.secret_faults},
      {"secret_ooms", st.secret_ooms},
      {"secret_files", st.secret_files},
      {"secret_releases", st.secret_releases},
      {"secret_frees", st.secret_frees},
      {"pcpu_drains", st.pcpu_drains},
      {"zone_locked", st.zone_locked},
      {"extfrag", st.extfrag},
      {"lost_events", st.lost_events},
      {"unknown_lines", st.unknown_lines},
      {"first_unknown_lines", unknown},
      {"replay_seconds", st.seconds},
  };
  return j;
}

}  // namespace exmem::cli::sim
