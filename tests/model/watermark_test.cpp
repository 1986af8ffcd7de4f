// Tests of phys/ against the kernel's watermark and reserve rules:
// set_recommended_min_free_kbytes() (mm/khugepaged.c) on top of
// calculate_min_free_kbytes(), the vm.min_free_kbytes sysctl,
// gfp_to_alloc_flags()'s ALLOC_HIGHATOMIC as in 6.18 with
// reserve_highatomic_pageblock()'s limits, decay_pcp_high() from the vmstat
// tick, and PCPF_FREE_HIGH_BATCH from the LLC size (zone_pcp_update_cacheinfo()).
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include "helpers.hpp"
#include "model/phys/physmem.hpp"

namespace exmem::model {
namespace {

using phys::FrameKind;
using phys::PhysConfig;
using phys::PhysMem;
using testing::join;

std::uint64_t int_sqrt(std::uint64_t x) {
  auto r = static_cast<std::uint64_t>(std::sqrt(static_cast<double>(x)));
  while (r * r > x) --r;
  while ((r + 1) * (r + 1) <= x) ++r;
  return r;
}

struct Wmarks {
  std::uint64_t min, low, high;
};

// __setup_per_zone_wmarks() with watermark_scale_factor 10: min_free_kbytes
// spread over the zones by managed pages; low - min = high - low =
// max(min / 4, managed * 10 / 10000).
std::array<Wmarks, phys::MAX_NR_ZONES> kernel_wmarks(const PhysMem& pm, std::uint64_t min_free_kbytes) {
  std::uint64_t lowmem = 0;
  for (unsigned z = 0; z < phys::MAX_NR_ZONES; ++z) lowmem += pm.zone(z).managed_pages;
  std::array<Wmarks, phys::MAX_NR_ZONES> w{};
  for (unsigned z = 0; z < phys::MAX_NR_ZONES; ++z) {
    const std::uint64_t managed = pm.zone(z).managed_pages;
    const std::uint64_t min = (min_free_kbytes / 4) * managed / lowmem;
    const std::uint64_t d = std::max(min / 4, managed * 10 / 10000);
    w[z] = {min, min + d, min + 2 * d};
  }
  return w;
}

// The kernel's min_free_kbytes at boot on a THP machine of 512 MiB or more:
// calculate_min_free_kbytes() = int_sqrt(lowmem_kbytes * 16) clamped to
// [128, 262144], then set_recommended_min_free_kbytes():
//   recommended = pageblock_nr_pages * nr_zones * 2
//               + pageblock_nr_pages * nr_zones * MIGRATE_PCPTYPES * MIGRATE_PCPTYPES
// pages (512 * nr_zones * 11), at most nr_free_buffer_pages() / 20 (managed
// pages above the high watermarks of the first pass), in kB; the larger wins.
std::uint64_t kernel_min_free_kbytes(const PhysMem& pm, std::uint64_t nr_zones, bool thp) {
  std::uint64_t lowmem = 0;
  for (unsigned z = 0; z < phys::MAX_NR_ZONES; ++z) lowmem += pm.zone(z).managed_pages;
  const std::uint64_t calculated = std::clamp<std::uint64_t>(int_sqrt(lowmem * 4 * 16), 128, 262144);
  if (!thp) return calculated;
  const auto first = kernel_wmarks(pm, calculated);
  std::uint64_t nr_free_buffer_pages = 0;
  for (unsigned z = 0; z < phys::MAX_NR_ZONES; ++z) {
    if (pm.zone(z).managed_pages > first[z].high) nr_free_buffer_pages += pm.zone(z).managed_pages - first[z].high;
  }
  std::uint64_t recommended = 512 * nr_zones * 2 + 512 * nr_zones * 3 * 3;
  recommended = std::min(recommended, nr_free_buffer_pages / 20) * 4;
  return std::max(calculated, recommended);
}

void expect_kernel_wmarks(const PhysMem& pm, std::uint64_t min_free_kbytes) {
  const auto w = kernel_wmarks(pm, min_free_kbytes);
  for (unsigned z = 0; z < phys::MAX_NR_ZONES; ++z) {
    const phys::Zone& zone = pm.zone(z);
    if (zone.managed_pages == 0) continue;
    SCOPED_TRACE(phys::zone_name(z));
    EXPECT_EQ(zone.watermark[phys::WMARK_MIN], w[z].min);
    EXPECT_EQ(zone.watermark[phys::WMARK_LOW], w[z].low);
    EXPECT_EQ(zone.watermark[phys::WMARK_HIGH], w[z].high);
    // zone_set_pageset_high_and_batch(): high_min from the low watermark.
    const phys::PerCpuPages& pcp = zone.pcp.front();
    EXPECT_EQ(static_cast<std::uint64_t>(pcp.high_min),
              std::max<std::uint64_t>(w[z].low / pm.cpus(), static_cast<std::uint64_t>(pcp.batch) * 4));
  }
}

PhysConfig config(std::uint64_t ram, unsigned cpus = 16) {
  PhysConfig c;
  c.ram_bytes = ram;
  c.cpus = cpus;
  return c;
}

// ---- set_recommended_min_free_kbytes() -------------------------------------

// 16 GiB, THP on: three populated zones up to ZONE_NORMAL (DMA, DMA32,
// Normal): 512 * 3 * 11 = 16,896 pages = 67,584 kB, far above the sqrt
// formula's ~16,230 kB and far under 5% of lowmem. Summed over the zones:
// min 66 MiB, low ~82 MiB, high ~99 MiB (the sqrt formula gave 16/32/48).
TEST(KhugepagedWatermarks, SixteenGiBGetsSetRecommendedMinFreeKbytes) {
  PhysMem pm(config(16 * GiB));
  const std::uint64_t expected = kernel_min_free_kbytes(pm, 3, true);
  EXPECT_EQ(expected, 67584u);
  EXPECT_EQ(static_cast<std::uint64_t>(pm.min_free_kbytes()), expected);
  expect_kernel_wmarks(pm, expected);
  std::uint64_t low = 0;
  for (unsigned z = 0; z < phys::MAX_NR_ZONES; ++z) low += pm.zone(z).watermark[phys::WMARK_LOW];
  EXPECT_GT(low, (82 * MiB) >> kPageShift);
  EXPECT_LT(low, (83 * MiB) >> kPageShift);
  EXPECT_TRUE(pm.check().empty()) << join(pm.check());
}

// 64 GiB: the same 67,584 kB (above the sqrt formula's ~32,498 kB); the
// kswapd distances come from watermark_scale_factor (0.1% of each zone).
TEST(KhugepagedWatermarks, SixtyFourGiBGetsSetRecommendedMinFreeKbytes) {
  PhysMem pm(config(64 * GiB));
  const std::uint64_t expected = kernel_min_free_kbytes(pm, 3, true);
  EXPECT_EQ(expected, 67584u);
  EXPECT_GT(expected, kernel_min_free_kbytes(pm, 3, false));
  EXPECT_EQ(static_cast<std::uint64_t>(pm.min_free_kbytes()), expected);
  expect_kernel_wmarks(pm, expected);
  std::uint64_t high = 0;
  for (unsigned z = 0; z < phys::MAX_NR_ZONES; ++z) high += pm.zone(z).watermark[phys::WMARK_HIGH];
  EXPECT_GT(high, (194 * MiB) >> kPageShift);
  EXPECT_LT(high, (196 * MiB) >> kPageShift);
}

// THP off: khugepaged never starts; calculate_min_free_kbytes() alone.
TEST(KhugepagedWatermarks, ThpOffKeepsTheSqrtFormula) {
  PhysConfig c = config(16 * GiB);
  c.thp = false;
  PhysMem pm(c);
  const std::uint64_t expected = kernel_min_free_kbytes(pm, 3, false);
  EXPECT_LT(expected, 67584u);
  EXPECT_EQ(static_cast<std::uint64_t>(pm.min_free_kbytes()), expected);
  expect_kernel_wmarks(pm, expected);
}

// RAM below the PCI hole's start: ZONE_NORMAL is empty, the zones are DMA and
// DMA32: 512 * 2 * 11 = 11,264 pages = 45,056 kB.
TEST(KhugepagedWatermarks, OneGiBCountsDmaAndDma32) {
  PhysMem pm(config(1 * GiB, 2));
  EXPECT_EQ(pm.zone(phys::ZONE_NORMAL).present_pages, 0u);
  EXPECT_EQ(kernel_min_free_kbytes(pm, 2, true), 45056u);
  EXPECT_EQ(pm.min_free_kbytes(), 45056);
  expect_kernel_wmarks(pm, 45056);
}

// 768 MiB: 11,264 pages would be more than 5% of lowmem, so the cap
// (nr_free_buffer_pages() / 20) decides.
TEST(KhugepagedWatermarks, RecommendationIsCappedAtFivePercentOfLowmem) {
  PhysMem pm(config(768 * MiB, 2));
  const std::uint64_t expected = kernel_min_free_kbytes(pm, 2, true);
  EXPECT_LT(expected, 45056u);
  EXPECT_LT(expected * 20 / 4, pm.managed_pages());
  EXPECT_EQ(static_cast<std::uint64_t>(pm.min_free_kbytes()), expected);
  expect_kernel_wmarks(pm, expected);
}

// hugepage_init() leaves THP (and khugepaged) off below 512 MiB of RAM.
TEST(KhugepagedWatermarks, NoRecommendationBelow512MiB) {
  PhysConfig c = config(256 * MiB, 2);
  c.kernel_image_bytes = 8 * MiB;
  PhysMem pm(c);
  EXPECT_EQ(static_cast<std::uint64_t>(pm.min_free_kbytes()), kernel_min_free_kbytes(pm, 2, false));
}

// 1 TiB: int_sqrt(lowmem_kbytes * 16) is ~130,000 kB, above khugepaged's
// 67,584 kB, which only ever raises min_free_kbytes: unaffected.
TEST(KhugepagedWatermarks, OneTiBKeepsTheLargerSqrtValue) {
  PhysMem pm(config(1 * TiB, 4));
  const std::uint64_t sqrt_value = kernel_min_free_kbytes(pm, 3, false);
  EXPECT_GT(sqrt_value, 67584u);
  EXPECT_EQ(static_cast<std::uint64_t>(pm.min_free_kbytes()), sqrt_value);
  expect_kernel_wmarks(pm, sqrt_value);
}

// min_free_kbytes_sysctl_handler(): a value written after boot wins, lower
// than khugepaged's too (khugepaged recomputes only when THP settings or
// memory change); writing it again re-derives the watermarks and pcp high_min.
TEST(KhugepagedWatermarks, SysctlValueWinsAndRederivesPcpHigh) {
  PhysConfig c = config(16 * GiB);
  c.min_free_kbytes = 16384;
  PhysMem pm(c);
  EXPECT_EQ(pm.min_free_kbytes(), 16384);
  expect_kernel_wmarks(pm, 16384);
  const int high_min_before = pm.zone(phys::ZONE_NORMAL).pcp.front().high_min;
  EXPECT_EQ(pm.set_min_free_kbytes(262144), 0);
  EXPECT_EQ(pm.min_free_kbytes(), 262144);
  expect_kernel_wmarks(pm, 262144);
  EXPECT_GT(pm.zone(phys::ZONE_NORMAL).pcp.front().high_min, high_min_before);
  EXPECT_EQ(pm.set_min_free_kbytes(-1), -EINVAL);
  EXPECT_EQ(pm.min_free_kbytes(), 262144);
}

// ---- gfp_to_alloc_flags(): ALLOC_HIGHATOMIC as in 6.18 ----------------------

// Allocates GFP_KERNEL order-0 pages until one needed the slow path: free
// pages are then under the low watermark and above min, where every further
// request goes through gfp_to_alloc_flags().
std::vector<Pfn> fill_to_slowpath(PhysMem& pm) {
  std::vector<Pfn> held;
  const std::uint64_t slow = pm.stats().slowpath;
  while (pm.stats().slowpath == slow) {
    const Result<Pfn> r = pm.alloc_pages(phys::GFP_KERNEL, 0, 0, FrameKind::Kernel);
    if (!r.ok()) break;
    held.push_back(r.value);
  }
  return held;
}

std::unique_ptr<PhysMem> atomic_machine(std::uint64_t ram) {
  PhysConfig c = config(ram, 2);
  c.kernel_image_bytes = 8 * MiB;
  c.pcp_ops_per_vmstat_tick = 0;
  return std::make_unique<PhysMem>(c);
}

// GFP_TRANSHUGE_LIGHT has __GFP_NOMEMALLOC: neither 6.17 nor 6.18 gives it
// ALLOC_HIGHATOMIC, so a THP taken in the slow path reserves nothing.
TEST(HighAtomic, TranshugeLightInTheSlowPathReservesNoPageblock) {
  auto pm(atomic_machine(1 * GiB));
  fill_to_slowpath(*pm);
  const std::uint64_t slow = pm->stats().slowpath;
  const Result<Pfn> r = pm->alloc_pages(phys::GFP_TRANSHUGE_LIGHT, kHpagePmdOrder, 0, FrameKind::User);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(pm->stats().slowpath, slow + 1);
  EXPECT_EQ(pm->stats().highatomic_reserved, 0u);
  EXPECT_EQ(pm->zone(phys::ZONE_DMA32).nr_reserved_highatomic, 0u);
  EXPECT_NE(pm->pageblock_migratetype(r.value), phys::MIGRATE_HIGHATOMIC);
  EXPECT_TRUE(pm->check().empty()) << join(pm->check());
}

// GFP_NOWAIT has no __GFP_HIGH: 6.3 .. 6.17 reserved for it, 6.18 does not.
TEST(HighAtomic, NowaitHighOrderInTheSlowPathReservesNoPageblock) {
  auto pm(atomic_machine(1 * GiB));
  fill_to_slowpath(*pm);
  const std::uint64_t slow = pm->stats().slowpath;
  const Result<Pfn> r = pm->alloc_pages(phys::GFP_NOWAIT, 2, 0, FrameKind::Kernel);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(pm->stats().slowpath, slow + 1);
  EXPECT_EQ(pm->stats().highatomic_reserved, 0u);
  EXPECT_EQ(pm->zone(phys::ZONE_DMA32).nr_reserved_highatomic, 0u);
}

// GFP_ATOMIC (__GFP_HIGH, no direct reclaim) order 2 in the slow path:
// ALLOC_HIGHATOMIC, and its pageblock becomes MIGRATE_HIGHATOMIC.
TEST(HighAtomic, AtomicOrderTwoInTheSlowPathReservesItsPageblock) {
  auto pm(atomic_machine(1 * GiB));
  fill_to_slowpath(*pm);
  const Result<Pfn> r = pm->alloc_pages(phys::GFP_ATOMIC, 2, 0, FrameKind::Kernel);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(pm->stats().highatomic_reserved, 1u);
  EXPECT_EQ(pm->zone(phys::ZONE_DMA32).nr_reserved_highatomic, kPageblockNrPages);
  EXPECT_EQ(pm->pageblock_migratetype(r.value), phys::MIGRATE_HIGHATOMIC);
  EXPECT_TRUE(pm->check().empty()) << join(pm->check());
}

// reserve_highatomic_pageblock(): at most ALIGN(managed / 100, pageblock)
// pages of a zone are reserved, however many atomic requests come.
TEST(HighAtomic, ReservesStopAtOnePercentOfTheZone) {
  auto pm(atomic_machine(1 * GiB));
  fill_to_slowpath(*pm);
  const phys::Zone& z = pm->zone(phys::ZONE_DMA32);
  const std::uint64_t cap = (z.managed_pages / 100 + kPageblockNrPages - 1) / kPageblockNrPages * kPageblockNrPages;
  for (int i = 0; i < 4000; ++i) {
    if (!pm->alloc_pages(phys::GFP_ATOMIC, 2, static_cast<CpuId>(i % 2), FrameKind::Kernel).ok()) break;
    ASSERT_LE(z.nr_reserved_highatomic, cap) << "after " << i + 1 << " allocations";
    if (i % 64 == 63) pm->drain_all_pages();  // refills from fresh pageblocks
  }
  EXPECT_EQ(z.nr_reserved_highatomic, cap);
  EXPECT_EQ(pm->stats().highatomic_reserved, cap / kPageblockNrPages);
  EXPECT_TRUE(pm->check().empty()) << join(pm->check());
}

// "if 1% of a zone falls below a pageblock size, then don't reserve any
// pageblocks": a 128 MiB machine's only zone reserves none.
TEST(HighAtomic, SmallZoneReservesNothing) {
  auto pm(atomic_machine(128 * MiB));
  ASSERT_LT(pm->zone(phys::ZONE_DMA32).managed_pages / 100, kPageblockNrPages);
  fill_to_slowpath(*pm);
  ASSERT_TRUE(pm->alloc_pages(phys::GFP_ATOMIC, 2, 0, FrameKind::Kernel).ok());
  EXPECT_EQ(pm->stats().highatomic_reserved, 0u);
  EXPECT_EQ(pm->zone(phys::ZONE_DMA32).nr_reserved_highatomic, 0u);
}

// ---- decay_pcp_high() -------------------------------------------------------

// Grows cpu 0's pcp->high by allocating on it (nr_pcp_alloc() raises high by
// a batch per refill while the zone is above its high watermark), then frees
// everything on it so its lists are full.
void grow_pcp(PhysMem& pm, int pages) {
  std::vector<Pfn> held;
  for (int i = 0; i < pages; ++i) {
    const Result<Pfn> r = pm.alloc_pages(phys::GFP_KERNEL, 0, 0, FrameKind::Kernel);
    ASSERT_TRUE(r.ok());
    held.push_back(r.value);
  }
  for (const Pfn p : held) ASSERT_EQ(pm.free_pages(p, 0, 0), 0);
}

// decay_pcp_high(): high = max3(count - (batch << 5), high - high / 8,
// high_min), then the pages over it go back to the buddy.
TEST(DecayPcpHigh, EachTickShrinksHighByAnEighthAndDrainsToIt) {
  PhysConfig c = config(1 * GiB, 2);
  c.pcp_ops_per_vmstat_tick = 0;
  PhysMem pm(c);
  grow_pcp(pm, 20000);
  const phys::PerCpuPages& pcp = pm.zone(phys::ZONE_DMA32).pcp[0];
  ASSERT_GT(pcp.high, pcp.high_min);
  int ticks = 0;
  while (pcp.high > pcp.high_min) {
    const int high = pcp.high;
    const int count = pcp.count;
    const std::uint64_t free_before = pm.free_pages();
    pm.vmstat_tick();
    ++ticks;
    const int expected_high = std::max({count - (pcp.batch << 5), high - high / 8, pcp.high_min});
    ASSERT_EQ(pcp.high, expected_high);
    ASSERT_EQ(pcp.count, std::min(count, expected_high));
    ASSERT_EQ(pm.free_pages(), free_before + static_cast<std::uint64_t>(count - pcp.count));
    ASSERT_LT(ticks, 100);
  }
  EXPECT_GT(ticks, 1);
  EXPECT_EQ(pm.stats().vmstat_ticks, static_cast<std::uint64_t>(ticks));
  EXPECT_LE(pcp.count, pcp.high_min);
  EXPECT_TRUE(pm.check().empty()) << join(pm.check());
}

// Without a caller's clock, PhysMem ticks itself every
// pcp_ops_per_vmstat_tick pcp operations (allocations through
// rmqueue_pcplist() and frees through free_frozen_page_commit()).
TEST(DecayPcpHigh, PhysMemTicksItselfEveryNPcpOperations) {
  PhysConfig c = config(1 * GiB, 2);
  c.pcp_ops_per_vmstat_tick = 1000;
  PhysMem pm(c);
  const phys::PerCpuPages& pcp = pm.zone(phys::ZONE_DMA32).pcp[0];
  std::vector<Pfn> held;
  for (int i = 0; i < 999; ++i) {  // operations 1 .. 999 on cpu 0: pcp->high grows
    const Result<Pfn> r = pm.alloc_pages(phys::GFP_KERNEL, 0, 0, FrameKind::Kernel);
    ASSERT_TRUE(r.ok());
    held.push_back(r.value);
  }
  EXPECT_EQ(pm.stats().vmstat_ticks, 0u);
  const int high = pcp.high;
  const int count = pcp.count;
  ASSERT_GT(high, pcp.high_min);
  ASSERT_EQ(pm.free_pages(held.back(), 0, 0), 0);  // operation 1000: the tick, then the free
  held.pop_back();
  EXPECT_EQ(pm.stats().vmstat_ticks, 1u);
  EXPECT_EQ(pcp.high, std::max({count - (pcp.batch << 5), high - high / 8, pcp.high_min}));
  for (const Pfn p : held) ASSERT_EQ(pm.free_pages(p, 0, 0), 0);  // operations 1001 .. 1998
  EXPECT_EQ(pm.stats().vmstat_ticks, 1u);
  // cpu 0 idle for 40 model seconds while cpu 1 allocates and frees: cpu 0's
  // high decays back to high_min.
  for (int i = 0; i < 20000; ++i) {
    const Result<Pfn> r = pm.alloc_pages(phys::GFP_KERNEL, 0, 1, FrameKind::Kernel);
    ASSERT_TRUE(r.ok());
    ASSERT_EQ(pm.free_pages(r.value, 0, 1), 0);
  }
  EXPECT_EQ(pm.stats().vmstat_ticks, 41u);
  EXPECT_EQ(pcp.high, pcp.high_min);
  EXPECT_LE(pcp.count, pcp.high_min);
  EXPECT_TRUE(pm.check().empty()) << join(pm.check());
}

// ---- PCPF_FREE_HIGH_BATCH ---------------------------------------------------

// zone_pcp_update_cacheinfo(): the flag is set when the CPU's LLC slice
// holds more than 3 x batch pages (batch 63 here: 756 KiB).
TEST(FreeHighBatch, SetFromTheLlcSlicePerCpu) {
  for (const std::uint64_t llc : {std::uint64_t{2} * MiB, std::uint64_t{1} * MiB, std::uint64_t{512} * 1024,
                                  std::uint64_t{0}}) {
    PhysConfig c = config(16 * GiB, 4);
    c.llc_bytes_per_cpu = llc;
    PhysMem pm(c);
    for (unsigned z = 0; z < phys::MAX_NR_ZONES; ++z) {
      for (const phys::PerCpuPages& pcp : pm.zone(z).pcp) {
        ASSERT_EQ(pcp.batch, 63);
        EXPECT_EQ((pcp.flags & phys::PCPF_FREE_HIGH_BATCH) != 0, (llc >> kPageShift) > 3 * 63)
            << "llc " << llc << " zone " << phys::zone_name(z);
      }
    }
  }
}

// free_frozen_page_commit(): once consecutive high-order frees pass
// batch + high_min / 2, each free drains the pcp lists (free_high); with
// PCPF_FREE_HIGH_BATCH only once a batch of pages has gathered.
std::vector<int> counts_after_order2_frees(std::uint64_t llc) {
  PhysConfig c = config(1 * GiB, 64);  // many CPUs: high_min is 4 x batch
  c.llc_bytes_per_cpu = llc;
  c.pcp_ops_per_vmstat_tick = 0;
  PhysMem pm(c);
  std::vector<Pfn> held;
  for (int i = 0; i < 300; ++i) {
    const Result<Pfn> r = pm.alloc_pages(phys::GFP_KERNEL, 2, 1, FrameKind::Kernel);  // on cpu 1
    EXPECT_TRUE(r.ok());
    held.push_back(r.value);
  }
  const phys::PerCpuPages& pcp = pm.zone(phys::ZONE_DMA32).pcp[0];
  EXPECT_EQ(pcp.count, 0);
  EXPECT_EQ(pcp.high_min, 4 * pcp.batch);
  std::vector<int> counts;
  for (const Pfn p : held) {
    EXPECT_EQ(pm.free_pages(p, 2, 0), 0);  // freed on cpu 0
    counts.push_back(pcp.count);
  }
  EXPECT_TRUE(pm.check().empty()) << join(pm.check());
  return counts;
}

TEST(FreeHighBatch, KeepsABatchOnThePcpListWhileFreeingHighOrderPages) {
  // free_count grows by 4 a free; it passes batch + high_min / 2 = 63 + 126
  // from the 49th free on.
  const std::vector<int> without = counts_after_order2_frees(0);
  const std::vector<int> with = counts_after_order2_frees(2 * MiB);
  const auto tail_max = [](const std::vector<int>& v) { return *std::max_element(v.begin() + 60, v.end()); };
  EXPECT_EQ(tail_max(without), 0);  // every free drains everything
  EXPECT_EQ(tail_max(with), 60);    // up to 15 blocks kept, drained at the 16th (64 >= batch)
  EXPECT_EQ(without[40], 41 * 4);   // before the threshold both keep every page
  EXPECT_EQ(with[40], 41 * 4);
}

}  // namespace
}  // namespace exmem::model
