// The run driver: the same seed gives the same run, samples cover the run and
// end at its end, a trace's replay is counted under the workload's names,
// region maps come when asked, the fragmentation index is the kernel's, and
// the catalogue declares every figure once.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "sim/measure.hpp"
#include "sim/metrics.hpp"
#include "sim/run.hpp"

namespace exmem::sim {
namespace {

namespace md = exmem::model;

md::workload::Scenario small(std::uint64_t events, std::uint64_t seed) {
  md::workload::Scenario s;
  s.name = "small";
  s.machine.ram_bytes = 2 * md::GiB;
  s.machine.cpus = 4;
  s.workload.events = events;
  s.workload.seed = seed;
  return s;
}

RunOptions options(bool maps = false) {
  RunOptions o;
  o.tlb = md::tlb::TlbConfig::preset("haswell");
  o.region_maps = maps;
  return o;
}

// Counts what the driver tells its observer.
struct Counting final : RunObserver {
  int begun = 0;
  int ended = 0;
  std::uint64_t checkpoints = 0;
  std::string policy;
  void begin(std::string_view p) override {
    ++begun;
    policy = p;
  }
  void checkpoint(std::uint64_t, double) override { ++checkpoints; }
  void end() override { ++ended; }
};

TEST(Run, TheSameSeedGivesTheSameRunAndAnotherSeedAnother) {
  const RunResult a = run_synthetic(small(20000, 4), "upstream", options());
  const RunResult b = run_synthetic(small(20000, 4), "upstream", options());
  const RunResult c = run_synthetic(small(20000, 5), "upstream", options());
  EXPECT_EQ(a.direct_map.level2_splits, b.direct_map.level2_splits);
  EXPECT_EQ(a.direct_map.leaves_4k, b.direct_map.leaves_4k);
  EXPECT_EQ(a.tlb_cost.misses, b.tlb_cost.misses);
  EXPECT_EQ(a.workload.secret_faults, b.workload.secret_faults);
  ASSERT_EQ(a.over_time.size(), b.over_time.size());
  for (std::size_t i = 0; i < a.over_time.size(); ++i) {
    EXPECT_EQ(a.over_time[i].events, b.over_time[i].events);
    EXPECT_EQ(a.over_time[i].tlb_miss_rate, b.over_time[i].tlb_miss_rate);
  }
  EXPECT_NE(a.workload.secret_faults + a.direct_map.leaves_4k, c.workload.secret_faults + c.direct_map.leaves_4k);
}

TEST(Run, SamplesCoverTheRunAndTheLastIsItsEnd) {
  Counting seen;
  RunOptions o = options();
  o.observer = &seen;
  const RunResult r = run_synthetic(small(50000, 2), "upstream", o);
  EXPECT_EQ(seen.begun, 1);
  EXPECT_GE(seen.ended, 1);
  EXPECT_EQ(seen.policy, "upstream");
  // Told at each sample and every few thousand events, not after every step.
  EXPECT_GT(seen.checkpoints, 0u);
  EXPECT_LT(seen.checkpoints, 200u);
  EXPECT_GE(r.over_time.size(), kSamples - 1);
  EXPECT_LE(r.over_time.size(), kSamples + 1);
  for (std::size_t i = 1; i < r.over_time.size(); ++i) EXPECT_GT(r.over_time[i].events, r.over_time[i - 1].events);
  const Sample& last = r.over_time.back();
  EXPECT_EQ(last.events, r.events());
  EXPECT_EQ(last.direct_map_4k_kb, r.direct_map.direct_map_4k_kb());
  EXPECT_EQ(last.level2_splits, r.direct_map.level2_splits);
  EXPECT_EQ(r.policy, "upstream");
  EXPECT_EQ(r.scenario, "small");
  EXPECT_EQ(r.source, Source::Synthetic);
  EXPECT_FALSE(r.trace.has_value());
  EXPECT_FALSE(r.map_start.has_value()) << "no region maps unless asked";
  EXPECT_GT(r.peak_rss_bytes, 0u);
  EXPECT_NE(r.zone("DMA32"), nullptr);
}

TEST(Run, RegionMapsWhenAskedShowWhatThePolicyDid) {
  const RunResult up = run_synthetic(small(20000, 3), "upstream", options(true));
  const RunResult pool = run_synthetic(small(20000, 3), "secretmem-pmd-pool", options(true));
  ASSERT_TRUE(up.map_start && up.map_end && pool.map_start && pool.map_end);
  EXPECT_EQ(up.map_end->regions_of(md::Coverage::Split4K),
            up.map_start->regions_of(md::Coverage::Split4K) + up.direct_map.level2_splits -
                up.direct_map.level2_collapses);
  EXPECT_GT(up.direct_map.level2_splits, pool.direct_map.level2_splits);
  EXPECT_GT(pool.pooled_pages, 0u);
}

TEST(Run, ATraceIsReplayedAndCountedUnderTheWorkloadsNames) {
  md::workload::Scenario s = small(0, 1);
  s.machine.ram_bytes = 4 * md::GiB;
  Counting seen;
  RunOptions o = options(true);
  o.observer = &seen;
  const RunResult r = run_trace(s, "upstream", std::string(EXMEM_SOURCE_DIR) + "/tests/data/small.trace", o);
  ASSERT_TRUE(r.trace.has_value());
  EXPECT_EQ(r.source, Source::Trace);
  EXPECT_GT(r.trace->events, 0u);
  EXPECT_EQ(r.events(), r.trace->events);
  EXPECT_EQ(r.workload.kernel_allocs, r.trace->kernel_allocs + r.trace->reclaimable_allocs);
  EXPECT_EQ(r.workload.secret_faults, r.trace->secret_faults);
  EXPECT_EQ(r.workload.secret_frees, r.mm.secret_pages_freed);
  EXPECT_EQ(r.workload.fill_seconds, 0.0);
  EXPECT_EQ(r.over_time.back().events, r.trace->events);
  EXPECT_TRUE(r.map_start.has_value()) << "a trace's start map is the machine at boot";
  EXPECT_GT(seen.checkpoints, 0u) << "a replay reports now and then";
  EXPECT_THROW((void)run_trace(s, "upstream", "/nonexistent/exmem.trace", options()), md::workload::TraceError);
}

TEST(Measure, TheFragmentationIndexIsTheKernels) {
  std::array<std::uint64_t, md::kNrPageOrders> free{};
  EXPECT_EQ(fragmentation_index(free, 9), 0) << "nothing free";
  free[9] = 1;
  EXPECT_EQ(fragmentation_index(free, 9), -1000) << "a block of the order is free";
  EXPECT_EQ(fragmentation_index(free, 3), -1000) << "a larger one is too";
  free = {};
  free[0] = 1024;  // 1024 single pages, none of order 9
  // 1000 - (1000 + 1024 * 1000 / 512) / 1024 = 1000 - 2 = 998: fragmentation
  EXPECT_EQ(fragmentation_index(free, 9), 998);
  free = {};
  free[8] = 1;  // 256 pages in one block: want of memory more than fragmentation
  EXPECT_EQ(fragmentation_index(free, 9), 1000 - (1000 + 256 * 1000 / 512) / 1);
}

TEST(Metrics, EachFigureIsDeclaredOnceAndEveryShownOneHasALabel) {
  std::set<std::string_view> pointers;
  std::set<std::string_view> columns;
  std::set<std::string_view> labels;
  for (const Metric& m : metrics()) {
    if (!m.json.empty()) {
      EXPECT_TRUE(pointers.insert(m.json).second) << "twice: " << m.json;
      EXPECT_EQ(m.json.front(), '/') << m.json;
    }
    if (!m.column.empty()) {
      EXPECT_TRUE(columns.insert(m.column).second) << "twice: " << m.column;
    }
    const bool shown = (m.show & (kTable | kTableIfAny | kTableIfNonzero | kColumn)) != 0;
    if (shown) {
      EXPECT_FALSE(m.label.empty()) << m.json << m.column;
      EXPECT_TRUE(labels.insert(m.label).second) << "twice: " << m.label;
    } else {
      EXPECT_FALSE(m.json.empty()) << "a metric nobody shows: " << m.label;
    }
    if (m.parts.empty()) {
      EXPECT_NE(m.get, nullptr) << m.label;
    } else {
      for (const std::string_view p : m.parts) EXPECT_NE(find_metric(p), nullptr) << p;
    }
  }
  EXPECT_NE(find_metric("/direct_map/direct_map_level2_splits"), nullptr);
  EXPECT_EQ(find_metric("/no/such/figure"), nullptr);
}

TEST(Metrics, AccessorsReadTheRunAndSayWhatARunLacks) {
  RunResult r;
  r.direct_map.level2_splits = 7;
  r.workload.hold_turns = 3;
  const Metric* splits = find_metric("/direct_map/direct_map_level2_splits");
  ASSERT_NE(splits, nullptr);
  EXPECT_EQ(std::get<std::uint64_t>(*splits->get(r)), 7u);
  const Metric* hold = find_metric("/workload/hold_turns");
  ASSERT_NE(hold, nullptr);
  EXPECT_EQ(as_double(*hold->get(r)), 3.0);
  r.source = Source::Trace;
  EXPECT_FALSE(hold->get(r).has_value()) << "a trace has no holder turns";
  EXPECT_FALSE(find_metric("/trace/events")->get(r).has_value()) << "no replay statistics";
  r.trace = md::workload::ReplayStats{};
  r.trace->events = 11;
  EXPECT_EQ(as_double(*find_metric("/trace/events")->get(r)), 11.0);
}

}  // namespace
}  // namespace exmem::sim

namespace exmem::sim {
namespace {

// The shipped pool-starvation scenario, whole (README states its result):
// under secretmem-pmd-pool the one-page files pin the secretmem= area 512
// pages per page charged, the database's pages are migrated out of it
// (alloc_contig_range()), and the OOM killer (out_of_memory(), oom_badness())
// kills the database, which holds no secret; under upstream nothing is
// reclaimed and no one is killed.
TEST(PoolStarvation, APerFilePoolPinsFiveHundredTimesWhatIsChargedAndTheOomKillerKillsTheInnocent) {
  const md::workload::Scenario s =
      md::workload::load_scenario(std::string(EXMEM_SOURCE_DIR) + "/scenarios/pool-starvation.toml");
  const RunResult up = run_synthetic(s, "upstream", options());
  EXPECT_EQ(up.oom.kills, 0u);
  EXPECT_EQ(up.workload.secret_ooms, 0u);
  EXPECT_EQ(up.secret_live_pages, s.workload.secret_processes);

  const RunResult pool = run_synthetic(s, "secretmem-pmd-pool", options());
  ASSERT_GE(pool.oom.kills, 1u);
  const md::mm::OomVictim& v = pool.oom.victims.front();
  EXPECT_EQ(v.role, "database");
  EXPECT_EQ(v.secret_pages, 0u);
  EXPECT_GT(pool.allocator.stats.cma_migrated, 0u);
  ASSERT_GT(pool.secret_live_pages, 0u);
  // Pages out of the direct map per secret page the users were charged for.
  EXPECT_GE((pool.pooled_pages + pool.secret_live_pages) / pool.secret_live_pages, 500u);
  EXPECT_GT(pool.workload.secret_ooms, 0u);  // the area ran dry: those faults fail
}

}  // namespace
}  // namespace exmem::sim
