// workload/trace_calibration: a recording's real direct-map deltas against the
// model's direct map at the same pfns.
#include "model/workload/trace_calibration.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "model/snapshot.hpp"

namespace exmem::model::workload {
namespace {

// A recording on a 4 GiB machine (3 GiB below the PCI hole, 1 GiB above it),
// 2 MiB leaves only; `regions_before` 2 MiB regions split at the start.
TraceInfo recording(std::uint64_t regions_before, std::int64_t real_splits) {
  TraceInfo t;
  t.cpus = 2;
  const std::uint64_t total_kb = 4ull << 20;
  const std::uint64_t k4 = regions_before * 2048;
  t.start_counters = {{"DirectMap4k_kB", std::to_string(k4)},
                      {"DirectMap2M_kB", std::to_string(total_kb - k4)},
                      {"DirectMap1G_kB", "0"},
                      {"level2_splits", "100"},
                      {"level3_splits", "0"}};
  t.end_counters = {{"DirectMap4k_kB", std::to_string(k4 + static_cast<std::uint64_t>(real_splits) * 2048)},
                    {"DirectMap2M_kB", std::to_string(total_kb - k4 - static_cast<std::uint64_t>(real_splits) * 2048)},
                    {"DirectMap1G_kB", "0"},
                    {"level2_splits", std::to_string(100 + real_splits)},
                    {"level3_splits", "0"}};
  return t;
}

TEST(TraceCalibration, CountsTheRealDeltasAndTheModelsSplitsAtTheSamePfns) {
  TraceInfo t = recording(3, 2);
  for (std::uint64_t p = 0; p < 600; ++p) t.secret_pages.emplace_back(0x10000 + p, 7);  // regions 0x80, 0x81
  t.secret_pages.emplace_back(0x20000, 7);                                             // region 0x100
  const TraceCalibration c = calibrate_trace(t);
  ASSERT_TRUE(c.have_counters);
  EXPECT_EQ(c.real_level2_splits, 2);
  EXPECT_EQ(c.real_directmap4k_kb, 4096);
  EXPECT_EQ(c.regions_split_before, 3u);
  EXPECT_EQ(c.secret_pages, 601u);
  EXPECT_EQ(c.secret_regions, 3u);
  EXPECT_EQ(c.machine.ram_bytes, 4 * GiB);
  EXPECT_FALSE(c.machine.direct_gbpages);  // the real direct map had no 1 GiB leaf
  EXPECT_EQ(c.model_level2_splits, 3u);
  EXPECT_EQ(c.model_level3_splits, 0u);
  EXPECT_EQ(c.model_directmap4k_kb, 3u * 2048);
  EXPECT_EQ(c.outside_model, 0u);
  EXPECT_TRUE(c.explained);  // one more than the real kernel, within the 3 regions split before
}

TEST(TraceCalibration, ADifferenceBeyondTheRegionsSplitBeforeIsNotExplained) {
  TraceInfo t = recording(0, 1);
  for (std::uint64_t r = 0; r < 4; ++r) t.secret_pages.emplace_back(0x10000 + r * 512, 7);
  const TraceCalibration c = calibrate_trace(t);
  EXPECT_EQ(c.model_level2_splits, 4u);
  EXPECT_FALSE(c.explained);  // 3 more, with no region split before
  // Fewer model splits than real ones is not explained by regions split before either.
  TraceInfo u = recording(5, 3);
  u.secret_pages.emplace_back(0x10000, 7);
  EXPECT_FALSE(calibrate_trace(u).explained);
}

TEST(TraceCalibration, LaterRecordingsSeeWhatEarlierOnesSplit) {
  TraceInfo first = recording(0, 2);
  first.secret_pages = {{0x10000, 1}, {0x10200, 1}};
  TraceInfo second = recording(2, 1);
  second.secret_pages = {{0x10001, 2}, {0x10400, 2}};  // one region split by the first, one new
  TraceCalibrator cal(first);
  const TraceCalibration a = cal.add(first);
  const TraceCalibration b = cal.add(second);
  EXPECT_EQ(a.model_level2_splits, 2u);
  EXPECT_TRUE(a.explained);
  EXPECT_EQ(b.model_level2_splits, 1u);
  EXPECT_EQ(b.real_level2_splits, 1);
  EXPECT_TRUE(b.explained);
  // On its own the second recording's pfns would split both regions.
  EXPECT_EQ(calibrate_trace(second).model_level2_splits, 2u);
}

TEST(TraceCalibration, PfnsBeyondTheModelsRamAreCountedAndSkipped) {
  TraceInfo t = recording(0, 0);
  t.secret_pages = {{(6 * GiB) >> 12, 1}, {0x10000, 1}};  // RAM ends at 5 GiB (the hole moves 1 GiB up)
  const TraceCalibration c = calibrate_trace(t);
  EXPECT_EQ(c.outside_model, 1u);
  EXPECT_EQ(c.model_level2_splits, 1u);
}

TEST(TraceCalibration, WithoutCountersOnlyTheSecretPagesAreCompared) {
  TraceInfo t;
  t.mem_total_kb = 2u << 20;
  t.secret_pages = {{0x10000, 1}};
  const TraceCalibration c = calibrate_trace(t);
  EXPECT_FALSE(c.have_counters);
  EXPECT_FALSE(c.explained);
  EXPECT_EQ(c.machine.ram_bytes, 2 * GiB);
  EXPECT_EQ(c.model_level2_splits, 1u);
}

// With the trace's "# direct_map" snapshots: the model starts from the real
// start map (DirectMap::split_to() on each region split there) and its end map
// is compared with the real one region by region. The model machine of
// recording(): [0, 3 GiB) and [4, 5 GiB) of 2 MiB leaves, the ISA range split.
DirectMapSnapshot like_the_model() {
  DirectMapSnapshot s;
  s.regions.assign(2560, static_cast<std::uint8_t>(Coverage::Leaf2M));
  s.regions[0] = static_cast<std::uint8_t>(Coverage::Split4K);
  for (std::size_t r = 1536; r < 2048; ++r) s.regions[r] = static_cast<std::uint8_t>(Coverage::Hole);
  return s;
}
constexpr auto kSplit = static_cast<std::uint8_t>(Coverage::Split4K);

TEST(TraceCalibrationExact, StartsFromTheRealStartMapAndComparesTheEndMapRegionByRegion) {
  TraceInfo t = recording(2, 2);
  DirectMapSnapshot start = like_the_model();
  start.regions[0x200] = kSplit;  // split before: a secret page lands here, no split for it
  start.regions[0x300] = kSplit;  // split before, no secret page
  DirectMapSnapshot end = start;
  end.regions[0x80] = kSplit;   // the secret page's new split (secretmem_fault())
  end.regions[0x400] = kSplit;  // the kernel's own activity
  t.map_start = start;
  t.map_end = end;
  t.secret_pages = {{0x10000, 7}, {0x40000 + 5, 7}};
  const TraceCalibration c = calibrate_trace(t);
  const RegionComparison& x = c.exact;
  ASSERT_TRUE(x.exact);
  EXPECT_EQ(x.presplit_2m, 2u);
  EXPECT_EQ(x.presplit_1g, 0u);
  EXPECT_EQ(c.model_level2_splits, 1u);  // the split region 0x200 costs nothing
  EXPECT_EQ(x.split_both, 4u);           // 0, 0x80, 0x200, 0x300
  EXPECT_EQ(x.split_model_only, 0u);
  EXPECT_EQ(x.split_kernel_only, 1u);    // 0x400
  EXPECT_EQ(x.first_kernel_only, (std::vector<std::uint64_t>{0x400}));
  EXPECT_EQ(x.kernel_only_with_secret, 0u);
  EXPECT_EQ(x.kernel_new_splits, 2u);
  EXPECT_EQ(x.kernel_new_with_secret, 1u);
  EXPECT_EQ(x.regions, 2048u);
  EXPECT_EQ(x.mapped_model_only + x.mapped_kernel_only, 0u);
  EXPECT_TRUE(x.explained);
}

TEST(TraceCalibrationExact, ARegionOnlyTheModelSplitsIsNotExplained) {
  TraceInfo t = recording(1, 0);
  t.map_start = like_the_model();
  t.map_end = like_the_model();  // the kernel did not split the secret page's region
  t.secret_pages = {{0x10000, 7}};
  const TraceCalibration c = calibrate_trace(t);
  EXPECT_EQ(c.exact.split_model_only, 1u);
  EXPECT_EQ(c.exact.first_model_only, (std::vector<std::uint64_t>{0x80}));
  EXPECT_FALSE(c.exact.explained);
  // Without the snapshots the comparison is the counters' upper bound, as before.
  t.map_start.reset();
  t.map_end.reset();
  EXPECT_FALSE(calibrate_trace(t).exact.exact);
}

TEST(TraceCalibrationExact, AGibOf2MLeavesAtTheStartSplitsTheModels1GLeaf) {
  TraceInfo t = recording(0, 0);
  // GiB 2 a 1 GiB leaf in the real map: the model gets 1 GiB leaves, and its
  // 1 GiB leaves of GiBs 1 and 4, 2 MiB leaves in the real map, are split to them.
  DirectMapSnapshot s = like_the_model();
  for (std::size_t r = 1024; r < 1536; ++r) s.regions[r] = static_cast<std::uint8_t>(Coverage::Leaf1G);
  t.map_start = s;
  t.map_end = s;
  const TraceCalibration c = calibrate_trace(t);
  ASSERT_TRUE(c.machine.direct_gbpages);
  EXPECT_EQ(c.machine.ram_bytes, 4 * GiB);  // the snapshot's mapped regions
  EXPECT_EQ(c.exact.presplit_1g, 2u);
  EXPECT_EQ(c.exact.leaf1g_both, 512u);
  EXPECT_EQ(c.exact.leaf1g_model_only + c.exact.leaf1g_kernel_only, 0u);
  EXPECT_EQ(c.exact.split_model_only + c.exact.split_kernel_only, 0u);
  EXPECT_EQ(c.exact.model_end, s.regions);  // the model's end map is the real one
  EXPECT_TRUE(c.exact.explained);
}

}  // namespace
}  // namespace exmem::model::workload
