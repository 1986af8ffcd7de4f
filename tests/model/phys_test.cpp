// Tests of phys/: boot, the buddy allocator, pcp lists, watermarks, CMA.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <tuple>
#include <vector>

#include "helpers.hpp"
#include "model/machine.hpp"

namespace exmem::model {
namespace {

using phys::FrameKind;
using testing::join;
using testing::small_machine;

TEST(Gfp, MapsFlagsToMigratetypesAndZonesAsTheKernelDoes) {
  using namespace phys;
  EXPECT_EQ(gfp_migratetype(GFP_KERNEL), MIGRATE_UNMOVABLE);
  EXPECT_EQ(gfp_migratetype(GFP_HIGHUSER), MIGRATE_UNMOVABLE);
  EXPECT_EQ(gfp_migratetype(GFP_HIGHUSER_MOVABLE), MIGRATE_MOVABLE);
  EXPECT_EQ(gfp_migratetype(GFP_KERNEL_RECLAIMABLE), MIGRATE_RECLAIMABLE);
  EXPECT_EQ(gfp_zone(GFP_KERNEL), ZONE_NORMAL);
  EXPECT_EQ(gfp_zone(GFP_DMA32 | GFP_KERNEL), ZONE_DMA32);
  EXPECT_EQ(gfp_name(GFP_HIGHUSER_MOVABLE | __GFP_ZERO), "GFP_HIGHUSER_MOVABLE|__GFP_ZERO");
  EXPECT_EQ(gfp_name(GFP_KERNEL), "GFP_KERNEL");
}

TEST(Gfp, FallbackTableMatchesTheKernel) {
  using namespace phys;
  EXPECT_EQ(kFallbacks[MIGRATE_UNMOVABLE][0], MIGRATE_RECLAIMABLE);
  EXPECT_EQ(kFallbacks[MIGRATE_UNMOVABLE][1], MIGRATE_MOVABLE);
  EXPECT_EQ(kFallbacks[MIGRATE_MOVABLE][0], MIGRATE_RECLAIMABLE);
  EXPECT_EQ(kFallbacks[MIGRATE_MOVABLE][1], MIGRATE_UNMOVABLE);
  EXPECT_EQ(kFallbacks[MIGRATE_RECLAIMABLE][0], MIGRATE_UNMOVABLE);
  EXPECT_EQ(kFallbacks[MIGRATE_RECLAIMABLE][1], MIGRATE_MOVABLE);
}

TEST(Boot, FreesAllUnreservedRamIntoMovableMaxOrderBlocksInAddressOrder) {
  auto m = small_machine(1 * GiB);
  const auto& z = m->phys().zone(phys::ZONE_DMA32);
  EXPECT_EQ(m->phys().free_pages() + m->phys().pages_of_kind(FrameKind::Reserved),
            m->phys().total_ram_pages());
  EXPECT_GT(z.nr_free[kMaxPageOrder] * 1024, z.managed_pages * 9 / 10);
  // memblock_free_all() frees to the tail in ascending order.
  const auto& list = z.free_area[kMaxPageOrder][phys::MIGRATE_MOVABLE];
  EXPECT_LT(list.head, list.tail);
  EXPECT_SOUND(*m);
}

TEST(Boot, ComputesWatermarksFromMinFreeKbytes) {
  auto m = small_machine(1 * GiB);
  const auto& z = m->phys().zone(phys::ZONE_DMA32);
  // min_free_kbytes = int_sqrt(lowmem_kbytes * 16) for a 1 GiB machine ~ 4000 kB.
  EXPECT_GT(m->phys().min_free_kbytes(), 3000);
  EXPECT_LT(m->phys().min_free_kbytes(), 4200);
  EXPECT_EQ(z.watermark[phys::WMARK_MIN],
            static_cast<std::uint64_t>(m->phys().min_free_kbytes()) / 4);
  EXPECT_LT(z.watermark[phys::WMARK_MIN], z.watermark[phys::WMARK_LOW]);
  EXPECT_LT(z.watermark[phys::WMARK_LOW], z.watermark[phys::WMARK_HIGH]);
}

TEST(Buddy, FirstUnmovableAllocationClaimsTheWholeMovableBlock) {
  auto m = small_machine();
  const Result<Pfn> r = m->phys().alloc_pages(phys::GFP_KERNEL, 0, 0, FrameKind::Kernel);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(m->phys().pageblock_migratetype(r.value), phys::MIGRATE_UNMOVABLE);
  // An order-10 block spans two pageblocks; change_pageblock_range() takes both.
  EXPECT_EQ(m->phys().pageblock_migratetype(r.value ^ kPageblockNrPages), phys::MIGRATE_UNMOVABLE);
  EXPECT_EQ(m->phys().stats().extfrag_claims, 1u);
  EXPECT_SOUND(*m);
}

TEST(Buddy, RefillsAnEmptyPcpListWithOneBatch) {
  auto m = small_machine();
  const int batch = m->phys().zone(phys::ZONE_DMA32).pcp[0].batch;
  ASSERT_TRUE(m->phys().alloc_pages(phys::GFP_KERNEL, 0, 0, FrameKind::Kernel).ok());
  EXPECT_EQ(m->phys().pcp_pages(), static_cast<std::uint64_t>(batch - 1));
  EXPECT_EQ(m->phys().stats().pcp_refills, 1u);
}

TEST(Buddy, PcpListsAreLastInFirstOut) {
  auto m = small_machine();
  auto& ph = m->phys();
  const Pfn a = ph.alloc_pages(phys::GFP_KERNEL, 0, 0, FrameKind::Kernel).value;
  const Pfn b = ph.alloc_pages(phys::GFP_KERNEL, 0, 0, FrameKind::Kernel).value;
  ASSERT_EQ(ph.free_pages(a, 0, 0), 0);
  ASSERT_EQ(ph.free_pages(b, 0, 0), 0);
  EXPECT_EQ(ph.alloc_pages(phys::GFP_KERNEL, 0, 0, FrameKind::Kernel).value, b);
  EXPECT_EQ(ph.alloc_pages(phys::GFP_KERNEL, 0, 0, FrameKind::Kernel).value, a);
  EXPECT_SOUND(*m);
}

TEST(Buddy, EachCpuHasItsOwnPcpList) {
  auto m = small_machine();
  auto& ph = m->phys();
  const Pfn a = ph.alloc_pages(phys::GFP_KERNEL, 0, 0, FrameKind::Kernel).value;
  ASSERT_EQ(ph.free_pages(a, 0, 0), 0);
  EXPECT_NE(ph.alloc_pages(phys::GFP_KERNEL, 0, 1, FrameKind::Kernel).value, a);
  EXPECT_EQ(ph.alloc_pages(phys::GFP_KERNEL, 0, 0, FrameKind::Kernel).value, a);
}

TEST(Buddy, FreeingEverythingMergesBackToTheBootBlocks) {
  auto m = small_machine();
  auto& ph = m->phys();
  const auto before = ph.buddyinfo(phys::ZONE_DMA32);
  std::vector<std::pair<Pfn, unsigned>> live;
  const phys::Gfp gfps[] = {phys::GFP_KERNEL, phys::GFP_HIGHUSER_MOVABLE,
                            phys::GFP_KERNEL_RECLAIMABLE};
  for (unsigned i = 0; i < 3000; ++i) {
    const unsigned order = i % 7 == 0 ? 3 : i % 11 == 0 ? 9 : 0;
    const Result<Pfn> r = ph.alloc_pages(gfps[i % 3], order, i % 2, FrameKind::Kernel);
    if (r.ok()) live.emplace_back(r.value, order);
  }
  for (const auto& [pfn, order] : live) ASSERT_EQ(ph.free_pages(pfn, order, 1), 0);
  ph.drain_all_pages();
  EXPECT_EQ(ph.buddyinfo(phys::ZONE_DMA32), before);
  EXPECT_SOUND(*m);
}

TEST(Buddy, RefusesToFreeAPageThatIsNotAllocated) {
  auto m = small_machine();
  auto& ph = m->phys();
  const Pfn p = ph.alloc_pages(phys::GFP_KERNEL, 0, 0, FrameKind::Kernel).value;
  EXPECT_EQ(ph.free_pages(p, 0, 0), 0);
  EXPECT_EQ(ph.free_pages(p, 0, 0), -EINVAL);  // double free
  EXPECT_EQ(ph.free_pages(0, 0, 0), -EINVAL);  // reserved low memory
  EXPECT_EQ(ph.free_pages(p | 1, 1, 0), -EINVAL);  // misaligned
  EXPECT_SOUND(*m);
}

TEST(Buddy, RefusesOrdersAboveMaxPageOrder) {
  auto m = small_machine();
  EXPECT_EQ(m->phys().alloc_pages(phys::GFP_KERNEL, 11, 0, FrameKind::Kernel).err, -EINVAL);
}

TEST(Watermarks, OrdinaryAllocationsFailAtTheMinWatermarkAndAtomicOnesGoDeeper) {
  auto m = small_machine();
  auto& ph = m->phys();
  std::uint64_t n = 0;
  while (ph.alloc_pages(phys::GFP_KERNEL, 0, 0, FrameKind::Kernel).ok()) ++n;
  const auto& z = ph.zone(phys::ZONE_DMA32);
  EXPECT_GT(n, 0u);
  EXPECT_GT(ph.free_pages(), 0u);  // the reserve below min is kept
  EXPECT_LE(static_cast<std::uint64_t>(z.nr_free_pages), z.watermark[phys::WMARK_MIN] + 1);
  EXPECT_FALSE(ph.alloc_pages(phys::GFP_NOWAIT, 0, 0, FrameKind::Kernel).ok());
  EXPECT_TRUE(ph.alloc_pages(phys::GFP_ATOMIC, 0, 0, FrameKind::Kernel).ok());
  EXPECT_GT(ph.stats().pgalloc_fail, 0u);
  EXPECT_SOUND(*m);
}

TEST(Cma, UnmovableAllocationsNeverLandInCmaButMovableOnesMay) {
  MachineConfig c = testing::small_config();
  c.cma_bytes = 32 * MiB;
  Machine m(c);
  auto& ph = m.phys();
  const auto cma = ph.cma_area();
  ASSERT_EQ(cma.size(), bytes_to_pfn(32 * MiB));
  for (Result<Pfn> r; (r = ph.alloc_pages(phys::GFP_KERNEL, 0, 0, FrameKind::Kernel)).ok();) {
    EXPECT_TRUE(r.value < cma.start || r.value >= cma.end);
  }
  const Result<Pfn> mov = ph.alloc_pages(phys::GFP_HIGHUSER_MOVABLE, 0, 0, FrameKind::User);
  ASSERT_TRUE(mov.ok());
  EXPECT_TRUE(mov.value >= cma.start && mov.value < cma.end);
  EXPECT_SOUND(m);
}

TEST(Cma, AllocatesAFreeAlignedRangeAndReleasesIt) {
  MachineConfig c = testing::small_config();
  c.cma_bytes = 16 * MiB;
  Machine m(c);
  auto& ph = m.phys();
  const Result<Pfn> r = ph.cma_alloc(kPageblockNrPages, kPageblockOrder);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(ph.kind(r.value), FrameKind::CmaAllocated);
  EXPECT_EQ(r.value % kPageblockNrPages, 0u);
  EXPECT_SOUND(m);
  EXPECT_EQ(ph.cma_release(r.value, kPageblockNrPages), 0);
  EXPECT_SOUND(m);
  EXPECT_EQ(ph.cma_release(r.value, kPageblockNrPages), -EINVAL);
}

// Random allocation and free sequences, all invariants checked after each step.
RC_GTEST_PROP(BuddyProperty, RandomAllocationsAndFreesKeepEveryInvariant, ()) {
  MachineConfig c = testing::small_config(64 * MiB);
  c.kernel_image_bytes = 4 * MiB;
  c.cma_bytes = *rc::gen::element<std::uint64_t>(0, 4 * MiB);
  Machine m(c);
  auto& ph = m.phys();
  const auto ops = *rc::gen::container<std::vector<std::tuple<int, int, int, int>>>(
      rc::gen::tuple(rc::gen::inRange(0, 10), rc::gen::inRange(0, 6), rc::gen::inRange(0, 40),
                     rc::gen::inRange(0, 1 << 20)));
  static constexpr phys::Gfp kGfps[] = {phys::GFP_KERNEL,     phys::GFP_HIGHUSER_MOVABLE,
                                        phys::GFP_KERNEL_RECLAIMABLE, phys::GFP_ATOMIC,
                                        phys::GFP_TRANSHUGE_LIGHT,    phys::GFP_NOWAIT};
  std::vector<std::pair<Pfn, unsigned>> live;
  for (const auto& [op, g, o, pick] : ops) {
    const auto cpu = static_cast<CpuId>(pick % 2);
    if (op < 6) {
      const unsigned order = o < 30 ? 0u : o < 36 ? static_cast<unsigned>(o - 29) : static_cast<unsigned>(o - 30);
      const Result<Pfn> r = ph.alloc_pages(kGfps[g], order, cpu, FrameKind::Kernel);
      if (r.ok()) live.emplace_back(r.value, order);
    } else if (op < 9 && !live.empty()) {
      const std::size_t i = static_cast<std::size_t>(pick) % live.size();
      RC_ASSERT(ph.free_pages(live[i].first, live[i].second, cpu) == 0);
      live[i] = live.back();
      live.pop_back();
    } else {
      ph.drain_all_pages();
    }
    const auto v = m.check();
    if (!v.empty()) RC_FAIL(join(v));
  }
}

}  // namespace
}  // namespace exmem::model
