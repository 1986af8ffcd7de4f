// Tests of tlb/: the generic LRU table, TLB geometry and presets, the flush
// ceiling and IPIs, and the cost of a workload on different direct maps.
#include "model/tlb/tlb.hpp"

#include <gtest/gtest.h>

#include <iostream>

#include "helpers.hpp"
#include "model/machine.hpp"
#include "model/tlb/cost.hpp"
#include "model/tlb/lru_table.hpp"
#include "model/tlb/system.hpp"

namespace exmem::model {
namespace {

using directmap::FlushReason;
using testing::small_config;
using tlb::AccessConfig;
using tlb::LruTable;
using tlb::PageSize;
using tlb::SpecConfig;
using tlb::TlbConfig;
using tlb::TlbSystem;

TEST(LruTable, EvictsTheLeastRecentlyUsedWayOfTheSet) {
  LruTable<int> t(1, 2);
  t.fill(1, 0, 10);
  t.fill(2, 0, 20);
  ASSERT_NE(t.find(1, 0), nullptr);  // 1 is now the most recently used
  const auto evicted = t.fill(3, 0, 30);
  ASSERT_TRUE(evicted.has_value());
  EXPECT_EQ(*evicted, 20);
  EXPECT_EQ(t.peek(2, 0), nullptr);
  EXPECT_EQ(*t.peek(1, 0), 10);
  EXPECT_EQ(*t.peek(3, 0), 30);
}

TEST(LruTable, KeepsSetsApartAndRefillsTheSameTagInPlace) {
  LruTable<int> t(2, 1);
  t.fill(4, 0, 1);
  t.fill(5, 1, 2);  // the other set: nothing evicted
  EXPECT_EQ(t.size(), 2u);
  EXPECT_FALSE(t.fill(4, 0, 3).has_value());
  EXPECT_EQ(*t.peek(4, 0), 3);
  EXPECT_EQ(t.invalidate_if([](int v) { return v == 2; }), 1u);
  EXPECT_EQ(t.size(), 1u);
}

TEST(TlbPresets, AreLabelledApproximationsWithTheirGeometry) {
  for (const std::string& name : TlbConfig::preset_names()) {
    const TlbConfig c = TlbConfig::preset(name);
    EXPECT_NE(c.source.find("approximation"), std::string::npos) << name;
    EXPECT_EQ(c.levels.size(), 2u) << name;
  }
  const TlbConfig h = TlbConfig::haswell_like();
  EXPECT_EQ(h.levels[0].arrays[0].sets * h.levels[0].arrays[0].ways, 64u);  // 4K
  EXPECT_EQ(h.levels[0].arrays[1].sets * h.levels[0].arrays[1].ways, 32u);  // 2M
  EXPECT_EQ(h.levels[0].arrays[2].sets * h.levels[0].arrays[2].ways, 4u);   // 1G
  EXPECT_EQ(h.levels[1].arrays[0].sets * h.levels[1].arrays[0].ways, 1024u);
  const TlbConfig z = TlbConfig::zen2_like();
  EXPECT_EQ(z.levels[0].arrays[0].sets * z.levels[0].arrays[0].ways, 64u);
  EXPECT_EQ(z.levels[1].arrays[0].sets * z.levels[1].arrays[0].ways, 2048u);
  EXPECT_THROW(TlbConfig::preset("pentium"), std::invalid_argument);
}

TEST(CpuTlb, Zen2KeepsA1GPageAsThe2MPieceThatWasUsedInItsL2) {
  tlb::CpuTlb t(TlbConfig::zen2_like());
  tlb::Translation gb;
  gb.vpn = kPagesPer1G;
  gb.pfn = kPagesPer1G;
  gb.size = PageSize::k1G;
  gb.flags = directmap::PAGE_KERNEL;
  t.fill(gb, kPagesPer1G + 3 * kPagesPer2M + 7);
  std::size_t l2_pieces = 0;
  t.for_each([&](const tlb::Translation& e) {
    if (e.size == PageSize::k2M) {
      ++l2_pieces;
      EXPECT_EQ(e.vpn, kPagesPer1G + 3 * kPagesPer2M);
      EXPECT_EQ(e.pfn, kPagesPer1G + 3 * kPagesPer2M);
    }
  });
  EXPECT_EQ(l2_pieces, 1u);
  EXPECT_EQ(t.lookup(tlb::kKernelAsid, kPagesPer1G + 5).level, 0);  // the L1 holds it whole
}

class FlushCeiling : public ::testing::Test {
 protected:
  FlushCeiling() : m(small_config(2 * GiB, true, 4)), sys(m.dmap(), m.phys(), TlbConfig::haswell_like(), {}, 1) {
    sys.attach(m.flushes());
  }
  Machine m;
  TlbSystem sys;
};

TEST_F(FlushCeiling, A34PageRangeBecomesAFullFlush) {
  const Pfn base = bytes_to_pfn(GiB + 64 * MiB);
  sys.access(1, base);
  m.flushes().kernel_range(base + 100, 34, 0, FlushReason::KernelRange);
  EXPECT_EQ(sys.stats().flushes_full, 1u);
  EXPECT_EQ(sys.stats().flushes_range, 0u);
  EXPECT_EQ(sys.cpu_tlb(1).entries(), 0u);  // the unrelated entry went too
}

TEST_F(FlushCeiling, A33PageRangeStaysARangeFlushOnEveryCpu) {
  const Pfn base = bytes_to_pfn(64 * MiB);  // 2M leaves in the first GiB
  sys.access(1, base);
  sys.access(2, base + 4 * kPagesPer2M);
  m.flushes().kernel_range(base + 4 * kPagesPer2M + 1, 33, 0, FlushReason::KernelRange);
  EXPECT_EQ(sys.stats().flushes_range, 1u);
  EXPECT_EQ(sys.stats().flushes_full, 0u);
  EXPECT_EQ(sys.stats().range_pages, 33u);
  EXPECT_GT(sys.cpu_tlb(1).entries(), 0u);  // outside the range: kept
  EXPECT_EQ(sys.cpu_tlb(2).entries(), 0u);  // its 2M entry covers a flushed page
}

TEST_F(FlushCeiling, KernelFlushesInterruptEveryOtherOnlineCpu) {
  m.flushes().kernel_range(1000, 1, 0, FlushReason::KernelRange);
  m.flushes().all(2, FlushReason::Split);
  EXPECT_EQ(sys.stats().ipis, 2u * 3u);
  m.flushes().local(1000, 1, 0, FlushReason::KernelRange);
  EXPECT_EQ(sys.stats().ipis, 6u);
  EXPECT_EQ(sys.stats().flushes_local, 1u);
}

TEST(TlbSystem, AccessMissesWalksFillsThenHits) {
  Machine m(small_config(2 * GiB, true, 2));
  TlbSystem sys(m.dmap(), m.phys(), TlbConfig::haswell_like(), {}, 1);
  const Pfn p = bytes_to_pfn(GiB + 5 * MiB);
  EXPECT_EQ(sys.access(0, p).level, -1);
  EXPECT_EQ(sys.access(0, p + 1000).level, 0);  // same 1G leaf
  EXPECT_EQ(sys.stats().walks, 1u);
  EXPECT_EQ(sys.stats().walk_refs, 2u);   // PML4E + PUD leaf
  EXPECT_EQ(sys.access(1, p).level, -1);  // per-CPU TLBs
}

TEST(TlbSystem, SpeculationFillsTranslationsNoInstructionTouched) {
  Machine m(small_config(2 * GiB, true, 2));
  const Pfn p = bytes_to_pfn(GiB + 6 * MiB);
  ASSERT_EQ(m.dmap().set_memory_4k(p, kPagesPer2M, 0), 0);  // 4K leaves around p
  SpecConfig spec;
  spec.rate = 4;
  spec.reach = 8;
  TlbSystem sys(m.dmap(), m.phys(), TlbConfig::haswell_like(), spec, 3);
  sys.access(0, p);
  EXPECT_GT(sys.stats().spec_fills, 0u);
  std::size_t neighbours = 0;
  sys.cpu_tlb(0).for_each([&](const tlb::Translation& t) {
    if (t.speculative && t.vpn != p) {
      ++neighbours;
      EXPECT_TRUE(t.overlaps(tlb::kKernelAsid, p - 8, 17)) << t.vpn;  // within the reach
    }
  });
  EXPECT_GT(neighbours, 0u);
  EXPECT_EQ(sys.cpu_tlb(1).entries(), 0u);  // CPU 1 touched nothing
  EXPECT_EQ(sys.stats().walks, 1u);         // speculative walks are not misses
}

// Once software changed a page size, the Intel SDM (Vol. 3A 4.10.4.2) lets a
// TLB hold translations of both sizes for one address: a blind speculative
// fill (as at CPA steps) walks although a 2M entry covers the target; an
// ordinary one stops at the TLB hit.
TEST(TlbSystem, BlindSpeculationFillsA4KEntryBesideALive2MOne) {
  Machine m(small_config(2 * GiB, true, 2));
  const Pfn p = bytes_to_pfn(GiB + 6 * MiB) + 3;
  ASSERT_EQ(m.dmap().set_memory_4k(p - 3 + kPagesPer2M, 1, 0), 0);  // 1G -> 2M leaves
  SpecConfig spec;
  spec.rate = 1;
  spec.reach = 0;
  TlbSystem sys(m.dmap(), m.phys(), TlbConfig::haswell_like(), spec, 3);
  sys.access(0, p);  // fills the 2M entry of p's region
  ASSERT_EQ(m.dmap().lookup(p).level, directmap::Level::Pmd2M);
  ASSERT_EQ(m.dmap().set_memory_4k(p, 1, 0), 0);  // p's region now 4K (no TLB flush reached sys)
  auto sizes = [&] {
    std::uint8_t bits = 0;
    sys.cpu_tlb(0).for_each([&](const tlb::Translation& t) {
      if (t.covers(tlb::kKernelAsid, p)) bits |= tlb::size_bit(t.size);
    });
    return bits;
  };
  ASSERT_EQ(sizes(), tlb::size_bit(tlb::PageSize::k2M));
  sys.speculate(0);
  EXPECT_EQ(sizes(), tlb::size_bit(tlb::PageSize::k2M));  // the 2M entry hit: no walk
  sys.speculate(0, true);
  EXPECT_EQ(sizes(), tlb::size_bit(tlb::PageSize::k2M) | tlb::size_bit(tlb::PageSize::k4K));
}

// Kernel data spread over 2 GiB, hot set of 256 MiB: four 1G or a few 2M
// entries reach it all; 4K entries cannot.
std::uint64_t misses_of(bool split_all, const TlbConfig& tlb) {
  Machine m(small_config(2 * GiB, true, 2));
  if (split_all) {
    for (const phys::PfnRange& r : m.phys().ram()) {
      EXPECT_EQ(m.dmap().set_memory_4k(r.start, r.size(), 0), 0);
    }
    EXPECT_EQ(m.dmap().counters().leaves_1g + m.dmap().counters().leaves_2m, 0u);
  }
  AccessConfig a;
  a.accesses = 50'000;
  a.hot_set_bytes = 256 * MiB;
  a.locality = tlb::Locality::Uniform;
  a.live_kernel_pages = false;  // kernel data over all of RAM (the split's own table pages would be live kernel pages)
  const tlb::CostReport r = tlb::estimate_cost(m.dmap(), m.phys(), m.flushes().counters(), tlb, a, 42);
  std::cout << "  [" << (split_all ? "fully split" : "boot map  ") << "] " << tlb::format_cost(r)
            << "\n";
  return r.misses;
}

TEST(TlbCost, HotSetWithinThe1GLeafReachMissesLessThanOnAFullySplitMap) {
  for (const std::string& name : TlbConfig::preset_names()) {
    const TlbConfig tlb = TlbConfig::preset(name);
    const std::uint64_t large = misses_of(false, tlb);
    const std::uint64_t split = misses_of(true, tlb);
    EXPECT_LT(large * 10, split) << name;
  }
}

TEST(TlbCost, PricesTheShootdownsOfTheRunFromPublishedFigures) {
  directmap::FlushCounters f;
  f.range_flushes = 10;
  f.range_pages = 10;
  f.full_flushes = 1;
  tlb::ShootdownCosts c;
  // 10 x (IPI + 100 ns) + 1 x (IPI + full flush)
  const double expect_us =
      (10 * (c.ipi_round_trip_ns + 100) + c.ipi_round_trip_ns + c.full_flush_ns) / 1000.0;
  EXPECT_DOUBLE_EQ(tlb::shootdown_cost_us(f, 4, c), expect_us);
  EXPECT_DOUBLE_EQ(tlb::shootdown_cost_us(f, 1, c), (10 * 100 + c.full_flush_ns) / 1000.0);

  Machine m(small_config(1 * GiB, true, 4));
  m.flushes().kernel_range(100, 1, 0, FlushReason::KernelRange);
  AccessConfig a;
  a.accesses = 1000;
  const tlb::CostReport r = tlb::estimate_cost(m.dmap(), m.phys(), m.flushes().counters(),
                                                TlbConfig::haswell_like(), a, 7);
  EXPECT_EQ(r.accesses, 1000u);
  EXPECT_EQ(r.range_flushes, 1u);
  EXPECT_EQ(r.ipis, 3u);
  EXPECT_GT(r.shootdown_us, 0.0);
  EXPECT_EQ(r.l1_hits + r.lower_hits + r.misses, r.accesses);
  EXPECT_EQ(tlb::cost_columns(r).size(), 7u);
}

}  // namespace
}  // namespace exmem::model
