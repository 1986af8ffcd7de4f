// Tests of model/snapshot: region maps against the machine's own state, page
// by page.
#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <vector>

#include "fixture.hpp"
#include "model/machine.hpp"
#include "model/phys/frame.hpp"
#include "model/snapshot.hpp"
#include "model/workload/synthetic.hpp"

namespace exmem::report::testing {
namespace {

using md::Content;
using md::Coverage;
using md::Pfn;
using md::phys::FrameKind;

// A machine after a short synthetic run, kept alive to compare its region map
// with, page by page.
struct Live {
  std::unique_ptr<md::Machine> machine;
  md::RegionMap end;
};

Live live_run(const std::string& policy) {
  Live run;
  const md::workload::Scenario s = scenario_4g(20000);
  md::MachineConfig mc = s.machine;
  mc.policy = policy;
  run.machine = std::make_unique<md::Machine>(mc);
  md::workload::SyntheticWorkload w(*run.machine, s.workload);
  (void)w.run();
  run.end = md::region_map(*run.machine);
  return run;
}

// upstream, then secretmem-pmd-pool.
const std::vector<Live>& live_runs() {
  static const std::vector<Live>* runs = [] {
    auto* v = new std::vector<Live>;
    v->push_back(live_run("upstream"));
    v->push_back(live_run("secretmem-pmd-pool"));
    return v;
  }();
  return *runs;
}

// The region of a pfn, and the pfn at an address.
constexpr std::size_t region_of(std::uint64_t bytes) { return bytes / (2 * md::MiB); }

// What a region should be, from lookup_address() and the frame kind of every page.
std::uint8_t reference_code(const md::Machine& m, std::size_t r, std::uint16_t& not_present) {
  using md::directmap::Level;
  const Pfn start = static_cast<Pfn>(r * md::kRegionPages);
  const Pfn end = std::min<Pfn>(start + md::kRegionPages, m.phys().nr_frames());
  std::array<std::uint32_t, md::kNumContents> counts{};
  unsigned worst = 0;
  not_present = 0;
  for (Pfn p = start; p < end; ++p) {
    const auto l = m.dmap().lookup(p);
    Content k = md::content_of_frame(m.phys().frame_byte(p));
    unsigned cov = 0;
    switch (l.level) {
      case Level::None: cov = 0; break;
      case Level::Pud1G: cov = 1; break;
      case Level::Pmd2M: cov = 2; break;
      case Level::Pte4K: cov = 3; break;
    }
    worst = std::max(worst, cov);
    if (l.level != Level::None && !l.present()) {
      ++not_present;
      if (k != Content::Free && k != Content::NoRam) k = Content::Secret;
    }
    ++counts[static_cast<unsigned>(k)];
  }
  Content shown = Content::NoRam;
  if (counts[static_cast<unsigned>(Content::Secret)] != 0) {
    shown = Content::Secret;
  } else if (counts[static_cast<unsigned>(Content::PageTable)] != 0) {
    shown = Content::PageTable;
  } else {
    std::uint32_t most = 0;
    for (const Content k : {Content::Free, Content::Kernel, Content::User, Content::Reserved, Content::Other}) {
      if (counts[static_cast<unsigned>(k)] > most) {
        most = counts[static_cast<unsigned>(k)];
        shown = k;
      }
    }
  }
  return md::region_code(static_cast<Coverage>(worst), shown, not_present != 0);
}

void expect_matches_reference(const md::Machine& m, const md::RegionMap& map) {
  ASSERT_EQ(map.nr_frames, m.phys().nr_frames());
  ASSERT_EQ(map.size(), (std::size_t{m.phys().nr_frames()} + 511) / 512);
  std::size_t mismatches = 0;
  for (std::size_t r = 0; r < map.size(); ++r) {
    std::uint16_t np = 0;
    const std::uint8_t want = reference_code(m, r, np);
    if (map.regions[r] != want || map.not_present[r] != np) {
      if (++mismatches <= 5) {
        ADD_FAILURE() << "region " << r << " (" << r * 2 << " MiB): code " << int{map.regions[r]}
                      << " not_present " << map.not_present[r] << ", expected code " << int{want}
                      << " not_present " << np;
      }
    }
  }
  EXPECT_EQ(mismatches, 0u);
}

TEST(RegionMap, FreshMachineWithGbpagesShowsOneGiBLeaves) {
  const md::Machine m(config_4g("upstream"));
  const md::RegionMap map = md::region_map(m);
  expect_matches_reference(m, map);
  const auto& c = m.dmap().counters();
  ASSERT_GT(c.leaves_1g, 0u);
  EXPECT_EQ(map.regions_of(Coverage::Leaf1G), c.leaves_1g * 512);
  EXPECT_EQ(map.regions_of(Coverage::Leaf2M), c.leaves_2m);
  // RAM from 1 GiB to 2 GiB is one 1 GiB leaf at boot.
  for (std::size_t r = region_of(1 * md::GiB); r < region_of(2 * md::GiB); ++r) {
    ASSERT_EQ(md::region_coverage(map.regions[r]), Coverage::Leaf1G) << "region " << r;
    ASSERT_FALSE(md::region_not_present(map.regions[r]));
  }
  // Nothing is unmapped at boot.
  EXPECT_EQ(map.not_present_pages, 0u);
  EXPECT_EQ(map.pages_of(Content::Secret), 0u);
}

TEST(RegionMap, WithoutGbpagesNoRegionIsInsideAOneGiBLeaf) {
  md::MachineConfig c = config_4g("upstream");
  c.direct_gbpages = false;
  const md::Machine m(c);
  const md::RegionMap map = md::region_map(m);
  EXPECT_EQ(map.regions_of(Coverage::Leaf1G), 0u);
  EXPECT_EQ(map.regions_of(Coverage::Leaf2M), m.dmap().counters().leaves_2m);
  expect_matches_reference(m, map);
}

TEST(RegionMap, PciHoleShowsAsHoleWithNoRam) {
  const md::Machine m(config_4g("upstream"));
  const md::RegionMap map = md::region_map(m);
  const auto& cfg = m.config();
  ASSERT_LT(cfg.pci_hole_start, cfg.pci_hole_end);
  for (std::size_t r = region_of(cfg.pci_hole_start); r < region_of(cfg.pci_hole_end); ++r) {
    ASSERT_EQ(md::region_coverage(map.regions[r]), Coverage::Hole) << "region " << r;
    ASSERT_EQ(md::region_content(map.regions[r]), Content::NoRam) << "region " << r;
  }
  // Every Hole frame of the machine is counted as no RAM, and only those.
  std::uint64_t holes = 0;
  for (Pfn p = 0; p < m.phys().nr_frames(); ++p) holes += m.phys().kind(p) == FrameKind::Hole;
  EXPECT_EQ(map.pages_of(Content::NoRam), holes);
  EXPECT_EQ(map.regions_of(Coverage::Hole),
            (cfg.pci_hole_end - cfg.pci_hole_start) / (2 * md::MiB));
}

TEST(RegionMap, RegionsWithASecretPageAreSplitToFourKAndShownSecret) {
  const Live& run = live_runs()[0];  // upstream
  const md::Machine& m = *run.machine;
  ASSERT_GT(m.mm().secret_pages(), 0u) << "the workload left no secret page to look at";
  std::size_t with_secret = 0;
  for (std::size_t r = 0; r < run.end.size(); ++r) {
    std::uint16_t secrets = 0;
    const Pfn start = static_cast<Pfn>(r * 512);
    for (Pfn p = start; p < std::min<Pfn>(start + 512, m.phys().nr_frames()); ++p) {
      secrets += m.phys().kind(p) == FrameKind::Secret;
    }
    if (secrets == 0) continue;
    ++with_secret;
    const std::uint8_t code = run.end.regions[r];
    ASSERT_EQ(md::region_coverage(code), Coverage::Split4K) << "region " << r;
    ASSERT_EQ(md::region_content(code), Content::Secret) << "region " << r;
    ASSERT_TRUE(md::region_not_present(code)) << "region " << r;
    ASSERT_GE(run.end.not_present[r], secrets) << "region " << r;
  }
  EXPECT_GT(with_secret, 0u);
  // upstream unmaps exactly its secret pages.
  EXPECT_EQ(run.end.pages_of(Content::Secret), m.phys().pages_of_kind(FrameKind::Secret));
  EXPECT_EQ(run.end.not_present_pages, m.phys().pages_of_kind(FrameKind::Secret));
  expect_matches_reference(m, run.end);
}

TEST(RegionMap, APoolUnmapsWholeTwoMiBLeaves) {
  const Live& run = live_runs()[1];  // secretmem-pmd-pool
  const md::Machine& m = *run.machine;
  expect_matches_reference(m, run.end);
  std::size_t leaves_unmapped = 0;
  for (std::size_t r = 0; r < run.end.size(); ++r) {
    const std::uint8_t code = run.end.regions[r];
    if (md::region_coverage(code) == Coverage::Leaf2M && md::region_not_present(code)) {
      ++leaves_unmapped;
      EXPECT_EQ(md::region_content(code), Content::Secret) << "region " << r;
      EXPECT_EQ(run.end.not_present[r], 512) << "region " << r;
    }
  }
  EXPECT_GT(leaves_unmapped, 0u) << "the pool should hold 2 MiB chunks removed as whole leaves";
  EXPECT_EQ(run.end.pages_of(Content::Secret),
            m.phys().pages_of_kind(FrameKind::Secret) + m.phys().pages_of_kind(FrameKind::Unmapped));
}

TEST(RegionMap, PageCountsAddUpToTheAllocatorsCounters) {
  for (const Live& run : live_runs()) {
    const md::Machine& m = *run.machine;
    const md::RegionMap& map = run.end;
    std::uint64_t sum = 0;
    for (const auto n : map.pages) sum += n;
    EXPECT_EQ(sum, m.phys().nr_frames());
    EXPECT_EQ(map.pages_of(Content::Free), m.phys().free_pages() + m.phys().pcp_pages())
        << m.policy().name();
    EXPECT_EQ(map.pages_of(Content::PageTable), m.phys().pages_of_kind(FrameKind::PageTable));
    EXPECT_EQ(map.pages_of(Content::User),
              m.phys().pages_of_kind(FrameKind::User) + m.phys().pages_of_kind(FrameKind::PageCache));
    EXPECT_EQ(map.pages_of(Content::Kernel), m.phys().pages_of_kind(FrameKind::Kernel) +
                                                 m.phys().pages_of_kind(FrameKind::Reclaimable));
    std::uint64_t regions = 0;
    for (const auto n : map.regions_by_coverage) regions += n;
    EXPECT_EQ(regions, map.size());
  }
}

TEST(RegionMap, MergingTakesTheWorstCoverageAndSecretFirst) {
  const std::uint8_t g = md::region_code(Coverage::Leaf1G, Content::User, false);
  const std::uint8_t m2 = md::region_code(Coverage::Leaf2M, Content::Free, false);
  const std::uint8_t k4 = md::region_code(Coverage::Split4K, Content::Kernel, false);
  const std::uint8_t sec = md::region_code(Coverage::Split4K, Content::Secret, true);
  const std::uint8_t pt = md::region_code(Coverage::Leaf1G, Content::PageTable, false);
  const std::uint8_t hole = md::region_code(Coverage::Hole, Content::NoRam, false);
  const std::vector<std::uint8_t> codes = {g, g, g, m2, /**/ g, k4, g, g, /**/ g, sec, g, pt,
                                           /**/ hole, hole, hole, g, /**/ hole, hole};
  const auto merged = md::merge_regions(codes, 4);
  ASSERT_EQ(merged.size(), 5u);
  EXPECT_EQ(merged[0], md::region_code(Coverage::Leaf2M, Content::User, false));
  EXPECT_EQ(merged[1], md::region_code(Coverage::Split4K, Content::User, false));
  EXPECT_EQ(merged[2], md::region_code(Coverage::Split4K, Content::Secret, true));
  EXPECT_EQ(merged[3], md::region_code(Coverage::Leaf1G, Content::User, false));
  EXPECT_EQ(merged[4], md::region_code(Coverage::Hole, Content::NoRam, false));
  EXPECT_EQ(md::merge_regions(codes, 1), codes);
}

TEST(RegionMap, JsonMergesLargeMapsAndKeepsTheTotals) {
  const Live& run = live_runs()[0];
  const md::RegionMap& map = run.end;
  const nlohmann::json j = to_json(map, 100);
  const std::size_t per = j["regions_per_cell"].get<std::size_t>();
  EXPECT_EQ(per & (per - 1), 0u) << "a power of two";
  EXPECT_LE(j["cells"].get<std::size_t>(), 100u);
  EXPECT_GT(j["cells"].get<std::size_t>(), 50u) << "no coarser than it needs to be";
  EXPECT_EQ(cells_of(j), md::merge_regions(map.regions, per));
  EXPECT_EQ(j["regions"].get<std::size_t>(), map.size());
  EXPECT_EQ(j["coverage_regions"]["4K"].get<std::uint64_t>(), map.regions_of(Coverage::Split4K));
  EXPECT_EQ(j["content_pages"]["secret"].get<std::uint64_t>(), map.pages_of(Content::Secret));
  EXPECT_EQ(j["not_present_pages"].get<std::uint64_t>(), map.not_present_pages);
  const nlohmann::json full = to_json(map);
  EXPECT_EQ(full["regions_per_cell"].get<std::size_t>(), 1u);
  EXPECT_EQ(cells_of(full), map.regions);
}

}  // namespace
}  // namespace exmem::report::testing
