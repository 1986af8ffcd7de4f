// Tests of tlb/cost: the kernel's access stream drawn from the run's live
// kernel pages by kind, the slowdown against the boot direct map, and the
// direction of Intel's 2021 measurements of the direct map's page sizes.
#include <gtest/gtest.h>

#include <cmath>
#include <iostream>
#include <random>
#include <vector>

#include "helpers.hpp"
#include "model/tlb/cost.hpp"

namespace exmem::model {
namespace {

using testing::small_config;
using tlb::AccessConfig;
using tlb::KernelPageKind;
using tlb::TlbConfig;

std::vector<Pfn> alloc_kind(Machine& m, unsigned n, phys::Gfp gfp, phys::FrameKind kind) {
  std::vector<Pfn> out;
  for (unsigned i = 0; i < n; ++i) {
    const Result<Pfn> r = m.phys().alloc_pages(gfp, 0, 0, kind);
    EXPECT_TRUE(r.ok());
    out.push_back(r.value);
  }
  return out;
}

AccessConfig only(KernelPageKind k) {
  AccessConfig a;
  a.accesses = 5000;
  a.weights.w.fill(0.0);
  a.weights.of(k) = 1.0;
  return a;
}

// The stream touches only the kinds it is told to, as the frames record them.
TEST(KernelStream, DrawsOnlyLivePagesOfTheWeightedKinds) {
  Machine m(small_config(1 * GiB, true, 2));
  alloc_kind(m, 300, phys::GFP_KERNEL, phys::FrameKind::Kernel);
  alloc_kind(m, 200, phys::GFP_KERNEL | phys::__GFP_RECLAIMABLE, phys::FrameKind::Reclaimable);
  for (const auto& [kind, frame] : {std::pair{KernelPageKind::Kernel, phys::FrameKind::Kernel},
                                    std::pair{KernelPageKind::SlabReclaimable, phys::FrameKind::Reclaimable}}) {
    const tlb::KernelStream s = tlb::kernel_stream(m.dmap(), m.phys(), only(kind), 3);
    ASSERT_TRUE(s.live) << s.source;
    EXPECT_EQ(s.source, "live kernel pages");
    ASSERT_EQ(s.pfns.size(), 5000u);
    for (const Pfn p : s.pfns) ASSERT_EQ(m.phys().kind(p), frame) << p;
  }
  const tlb::KernelStream s = tlb::kernel_stream(m.dmap(), m.phys(), only(KernelPageKind::Kernel), 3);
  EXPECT_GE(s.live_pages[static_cast<std::size_t>(KernelPageKind::Kernel)], 300u);
  EXPECT_GE(s.live_pages[static_cast<std::size_t>(KernelPageKind::SlabReclaimable)], 200u);
}

// A page of weight 9 is drawn nine times as often as one of weight 1.
TEST(KernelStream, WeightsAreRelativeShareOfAPageOfEachKind) {
  Machine m(small_config(1 * GiB, true, 2));
  alloc_kind(m, 500, phys::GFP_KERNEL, phys::FrameKind::Kernel);
  alloc_kind(m, 500, phys::GFP_KERNEL | phys::__GFP_RECLAIMABLE, phys::FrameKind::Reclaimable);
  AccessConfig a = only(KernelPageKind::Kernel);
  a.weights.of(KernelPageKind::SlabReclaimable) = 9.0;
  a.hot_fraction = 0.0;  // every access an independent draw
  a.accesses = 40'000;
  const tlb::KernelStream s = tlb::kernel_stream(m.dmap(), m.phys(), a, 5);
  ASSERT_TRUE(s.live);
  const double nk = static_cast<double>(s.live_pages[static_cast<std::size_t>(KernelPageKind::Kernel)]);
  const double nr = static_cast<double>(s.live_pages[static_cast<std::size_t>(KernelPageKind::SlabReclaimable)]);
  std::size_t reclaimable = 0;
  for (const Pfn p : s.pfns) reclaimable += m.phys().kind(p) == phys::FrameKind::Reclaimable ? 1 : 0;
  const double expect = 9 * nr / (9 * nr + nk);
  EXPECT_NEAR(static_cast<double>(reclaimable) / static_cast<double>(s.pfns.size()), expect, 0.02);
}

// No live page of a weighted kind: the stream is the RAM-wide one, and says so.
TEST(KernelStream, FallsBackToAllOfRamAndSaysSoWhenNoWeightedPageIsLive) {
  Machine m(small_config(1 * GiB, true, 2));
  const tlb::KernelStream s = tlb::kernel_stream(m.dmap(), m.phys(), only(KernelPageKind::PageCache), 3);
  EXPECT_FALSE(s.live);
  EXPECT_NE(s.source.find("no live kernel pages"), std::string::npos) << s.source;
  EXPECT_EQ(s.pfns.size(), 5000u);
  const tlb::CostReport r = tlb::estimate_cost(m.dmap(), m.phys(), m.flushes().counters(),
                                                TlbConfig::haswell_like(), only(KernelPageKind::PageCache), 3);
  EXPECT_FALSE(r.stream_live);
  EXPECT_EQ(r.stream_source, s.source);
}

// The slowdown is against the boot map of the same RAM: zero on an unsplit
// map without flushes; on a map whose kernel pages sit in split regions, the
// extra walks priced at walk_ns, over kernel time, as estimate_cost() says.
TEST(KernelSlowdown, IsZeroOnTheBootMapAndCountsTheExtraWalksOfASplitOne) {
  Machine m(small_config(4 * GiB, true, 2));
  const std::vector<Pfn> pages = alloc_kind(m, 4000, phys::GFP_KERNEL, phys::FrameKind::Kernel);
  AccessConfig a = only(KernelPageKind::Kernel);
  a.accesses = 20'000;
  a.locality = tlb::Locality::Uniform;
  tlb::KernelCostFigures f;
  f.walk_ns = 20;
  f.kernel_access_ns = 300;
  const tlb::CostReport same =
      tlb::estimate_cost(m.dmap(), m.phys(), m.flushes().counters(), TlbConfig::haswell_like(), a, 9, f, 1000);
  ASSERT_TRUE(same.stream_live);
  EXPECT_EQ(same.misses, same.walks_unsplit);
  EXPECT_DOUBLE_EQ(same.extra_walk_ns, 0.0);
  EXPECT_DOUBLE_EQ(same.slowdown_percent, 0.0);

  // Every kernel page's 2 MiB region split to 4 KiB (as secret pages beside them would).
  for (const Pfn p : pages) ASSERT_EQ(m.dmap().set_memory_4k(p, 1, 0), 0);
  const tlb::CostReport split =
      tlb::estimate_cost(m.dmap(), m.phys(), m.flushes().counters(), TlbConfig::haswell_like(), a, 9, f, 1000);
  std::cout << "  " << tlb::format_cost(split) << "\n";
  EXPECT_GT(split.misses, split.walks_unsplit * 2);
  EXPECT_DOUBLE_EQ(split.walk_ns, 20.0);
  EXPECT_DOUBLE_EQ(split.run_accesses, 1000.0 * tlb::kDefaultAccessesPerEvent);
  EXPECT_DOUBLE_EQ(split.scale, split.run_accesses / static_cast<double>(split.accesses));
  const double extra = (static_cast<double>(split.misses) - static_cast<double>(split.walks_unsplit)) * split.scale * 20;
  EXPECT_DOUBLE_EQ(split.extra_walk_ns, extra);
  const double kernel = split.run_accesses * 300 + static_cast<double>(split.walks_unsplit) * split.scale * 20;
  EXPECT_DOUBLE_EQ(split.kernel_ns, kernel);
  EXPECT_GT(split.shootdown_ns, 0.0);  // the splits' flush_tlb_all()s
  EXPECT_DOUBLE_EQ(split.slowdown_percent, (extra + split.shootdown_ns) / kernel * 100.0);
}

// The boot map of a machine's RAM is the one init_mem_mapping() builds: no
// split, 1 GiB leaves with direct_gbpages.
TEST(KernelSlowdown, TheBootMapOfTheRamHasNoSplits) {
  Machine m(small_config(4 * GiB, true, 2));
  ASSERT_EQ(m.dmap().set_memory_4k(static_cast<Pfn>(2 * GiB / kPageSize), 1, 0), 0);
  const tlb::BootDirectMap boot(m.dmap());
  EXPECT_EQ(boot.map.counters().level2_splits + boot.map.counters().level3_splits, 0u);
  EXPECT_EQ(boot.map.mapped_pages(), m.dmap().mapped_pages());
  EXPECT_GT(boot.map.counters().leaves_1g, 0u);
  EXPECT_LT(boot.map.counters().leaves_4k, m.dmap().counters().leaves_4k);
}

// Intel's "Test report for kernel direct mapping performance" (linux-mm,
// 2021): across its machines the direct map with 4K pages was worst on
// average on all of them; 1G was best in 45% of the tests and 2M in about 30%,
// and on two machines 2M was best. The model's direction: a kernel working set
// spread over all of RAM costs more walk cycles with 4 KiB leaves than with 2
// MiB ones on every preset; and where the second-level TLB holds no 1 GiB
// entry (haswell-like: its STLB holds 4K and 2M only, its L1 four 1G
// entries), a working set of a few hundred 2 MiB regions spread over more
// GiB than the L1 holds costs more with 1 GiB leaves than with 2 MiB ones.
enum class Leaves { k4K, k2M, k1G };

struct MapOf {
  std::unique_ptr<Machine> m;
  explicit MapOf(Leaves l) : m(std::make_unique<Machine>(small_config(8 * GiB, l == Leaves::k1G, 1))) {
    if (l != Leaves::k4K) return;
    for (const phys::PfnRange& r : m->phys().ram()) EXPECT_EQ(m->dmap().set_memory_4k(r.start, r.size(), 0), 0);
    EXPECT_EQ(m->dmap().counters().leaves_2m + m->dmap().counters().leaves_1g, 0u);
  }
};

double cycles(const MapOf& map, const TlbConfig& tlb, const std::vector<Pfn>& stream) {
  return tlb::run_stream(map.m->dmap(), map.m->phys(), tlb, stream, {}, 1).walk_cycles;
}

TEST(DirectMapPageSizes, FollowIntels2021ReportFourKIsWorstAndOneGCanLoseToTwoM) {
  const MapOf k4(Leaves::k4K);
  const MapOf k2(Leaves::k2M);
  const MapOf k1(Leaves::k1G);
  const phys::PhysMem& phys = k2.m->phys();
  std::mt19937_64 rng(2021);
  std::vector<Pfn> ram;  // RAM pages above the first GiB (whose ISA range is 4 KiB in every map)
  for (const phys::PfnRange& r : phys.ram()) {
    for (Pfn p = std::max<Pfn>(r.start, static_cast<Pfn>(GiB / kPageSize)); p < r.end; p += 1) ram.push_back(p);
  }
  // A large working set: 200,000 accesses uniformly over 7 GiB.
  std::vector<Pfn> wide;
  std::uniform_int_distribution<std::size_t> any(0, ram.size() - 1);
  for (int i = 0; i < 200'000; ++i) wide.push_back(ram[any(rng)]);
  // A few hundred 2 MiB regions spread over every GiB: 384 hot pages, one per region.
  std::vector<Pfn> hot;
  std::vector<std::uint64_t> regions;
  while (hot.size() < 384) {
    const Pfn p = ram[any(rng)];
    const std::uint64_t reg = p / kPagesPer2M;
    if (std::find(regions.begin(), regions.end(), reg) != regions.end()) continue;
    regions.push_back(reg);
    hot.push_back(p);
  }
  std::vector<Pfn> spread;
  for (int i = 0; i < 200'000; ++i) spread.push_back(hot[static_cast<std::size_t>(i) % hot.size()]);
  for (const std::string& name : TlbConfig::preset_names()) {
    const TlbConfig tlb = TlbConfig::preset(name);
    const double w4 = cycles(k4, tlb, wide), w2 = cycles(k2, tlb, wide), w1 = cycles(k1, tlb, wide);
    const double s4 = cycles(k4, tlb, spread), s2 = cycles(k2, tlb, spread), s1 = cycles(k1, tlb, spread);
    std::cout << "  " << name << ": wide 4K/2M/1G " << w4 << "/" << w2 << "/" << w1 << " cycles; 384 regions "
              << s4 << "/" << s2 << "/" << s1 << "\n";
    EXPECT_GT(w4, w2) << name;  // 4K worst
    EXPECT_GT(w4, w1) << name;
    EXPECT_GE(s4, s2) << name;  // both fit the second level: 4K only pays its extra compulsory walks
  }
  // haswell-like: no 1G entry in the STLB: 1G loses to 2M on the spread set.
  const TlbConfig haswell = TlbConfig::haswell_like();
  EXPECT_GT(cycles(k1, haswell, spread), 2 * cycles(k2, haswell, spread));
  // recent-intel-like has an STLB array for 1G: there 1G does not lose.
  const TlbConfig recent = TlbConfig::recent_intel_like();
  EXPECT_LE(cycles(k1, recent, spread), cycles(k2, recent, spread));
}

}  // namespace
}  // namespace exmem::model
