// Tests of phys/: boot, the buddy allocator, pcp lists, watermarks, CMA.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <bit>
#include <numeric>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "helpers.hpp"
#include "model/huge_pages.hpp"
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
  // calculate_min_free_kbytes() alone: THP off, so khugepaged never raises it
  // (with THP on, set_recommended_min_free_kbytes() gives this 1 GiB machine
  // 45,056 kB; watermark_test.cpp pins that).
  MachineConfig c = testing::small_config(1 * GiB);
  c.thp = false;
  auto m = std::make_unique<Machine>(c);
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

// A 1 GiB machine of two CPUs without THP, with a CMA area of `cma` bytes.
phys::PhysConfig gib_two_cpus(std::uint64_t cma) {
  phys::PhysConfig cfg;
  cfg.ram_bytes = 1 * GiB;
  cfg.cpus = 2;
  cfg.thp = false;
  cfg.cma_bytes = cma;
  return cfg;
}

// The same buddy: the same blocks on the same free lists in the same order,
// the same frames and pageblocks.
void same_buddy(const phys::PhysMem& a, const phys::PhysMem& b, const std::string& when) {
  for (unsigned z = 0; z < phys::MAX_NR_ZONES; ++z) {
    for (unsigned o = 0; o <= kMaxPageOrder; ++o) {
      for (unsigned mt = 0; mt < phys::MIGRATE_TYPES; ++mt) {
        ASSERT_EQ(a.free_list(z, o, mt), b.free_list(z, o, mt))
            << when << ": zone " << z << ", order " << o << ", migratetype " << mt;
      }
    }
  }
  for (Pfn p = 0; p < a.nr_frames(); ++p) {
    ASSERT_EQ(a.frame_byte(p), b.frame_byte(p)) << when << ": pfn " << p;
    if (p % kPageblockNrPages == 0) {
      ASSERT_EQ(a.pageblock_migratetype(p), b.pageblock_migratetype(p)) << when << ": pfn " << p;
    }
  }
}

// same_buddy(), and the same free counters, pcp lists and allocation statistics.
void same_state(const phys::PhysMem& a, const phys::PhysMem& b, const std::string& when) {
  for (unsigned z = 0; z < phys::MAX_NR_ZONES; ++z) {
    const phys::Zone& za = a.zone(z);
    const phys::Zone& zb = b.zone(z);
    ASSERT_EQ(za.nr_free_pages, zb.nr_free_pages) << when << ": zone " << z;
    ASSERT_EQ(za.nr_free_cma, zb.nr_free_cma) << when << ": zone " << z;
    ASSERT_EQ(za.nr_free, zb.nr_free) << when << ": zone " << z;
    for (unsigned cpu = 0; cpu < a.cpus(); ++cpu) {
      ASSERT_EQ(za.pcp[cpu].count, zb.pcp[cpu].count) << when << ": zone " << z << ", cpu " << cpu;
      ASSERT_EQ(za.pcp[cpu].high, zb.pcp[cpu].high) << when << ": zone " << z << ", cpu " << cpu;
      ASSERT_EQ(za.pcp[cpu].lists, zb.pcp[cpu].lists) << when << ": zone " << z << ", cpu " << cpu;
    }
  }
  ASSERT_NO_FATAL_FAILURE(same_buddy(a, b, when));
  ASSERT_EQ(a.stats().pcp_refills, b.stats().pcp_refills) << when;
  ASSERT_EQ(a.stats().pcp_drains, b.stats().pcp_drains) << when;
  ASSERT_EQ(a.stats().cma_fallbacks, b.stats().cma_fallbacks) << when;
  ASSERT_EQ(a.stats().pgalloc_fail, b.stats().pgalloc_fail) << when;
}

// Two machines that free the same pages in the same order, one letting them
// gather on the pcp list before the drain takes them (blocks at adjacent
// addresses, rising or falling, leave it as one run, freed as aligned blocks),
// the other draining after every page (each freed alone by __free_one_page()),
// end with the same buddy: the same blocks on the same lists in the same order,
// the same frames and pageblocks. The CMA area starts in the middle of an
// order-10 block, so a run across its start must stop merging at the
// pageblock: CMA never merges with movable. Groups are freed in rising address
// order, except every fourth (and, with `falling`, all but every fourth).
void drained_together_end_as_one_by_one(bool falling) {
  const phys::PhysConfig cfg = gib_two_cpus(6 * MiB);
  phys::PhysMem a(cfg);
  phys::PhysMem b(cfg);
  const phys::PfnRange cma = a.cma_area();
  ASSERT_EQ(cma.start % (Pfn{1} << kMaxPageOrder), kPageblockNrPages)
      << "the CMA area should start in the middle of an order-10 block";
  // The same pages live on both: the whole CMA area page by page, and 60,000
  // movable pages (the boundary's order-9 block goes first).
  std::vector<Pfn> live;
  for (phys::PhysMem* ph : {&a, &b}) {
    live.clear();
    for (Pfn i = 0; i < cma.size(); ++i) {
      const Result<Pfn> r = ph->cma_alloc(1, 0);
      ASSERT_TRUE(r.ok()) << r.err;
      live.push_back(r.value);
    }
    for (int i = 0; i < 60'000; ++i) {
      const Result<Pfn> r = ph->alloc_pages(phys::GFP_HIGHUSER_MOVABLE, 0, 0, FrameKind::User);
      ASSERT_TRUE(r.ok()) << r.err;
      live.push_back(r.value);
    }
    ph->drain_all_pages();
  }
  std::sort(live.begin(), live.end());
  const Pfn below = cma.start - kPageblockNrPages;
  ASSERT_TRUE(std::binary_search(live.begin(), live.end(), below))
      << "the pageblock below the CMA area should be allocated";

  auto free_one = [&cma](phys::PhysMem& ph, Pfn p) {
    return p >= cma.start && p < cma.end ? ph.cma_release(p, 1) : ph.free_pages(p, 0, 0);
  };
  // A group: the pages are freed in that order on CPU 0, then every list drained.
  auto free_group = [&](const std::vector<Pfn>& group, const std::string& when) {
    for (const Pfn p : group) ASSERT_EQ(free_one(a, p), 0) << when << ": pfn " << p;
    a.drain_all_pages();
    for (const Pfn p : group) {
      ASSERT_EQ(free_one(b, p), 0) << when << ": pfn " << p;
      b.drain_all_pages();
    }
    ASSERT_NO_FATAL_FAILURE(same_buddy(a, b, when));
    for (const Pfn p : group) live.erase(std::lower_bound(live.begin(), live.end(), p));
  };

  // Across the CMA area's start: a movable pageblock, then a CMA one.
  std::vector<Pfn> across(std::lower_bound(live.begin(), live.end(), below),
                          std::lower_bound(live.begin(), live.end(), cma.start + kPageblockNrPages));
  ASSERT_EQ(across.size(), 2 * kPageblockNrPages);
  if (falling) std::reverse(across.begin(), across.end());
  ASSERT_NO_FATAL_FAILURE(free_group(across, "across the CMA area's start"));
  EXPECT_EQ(a.pageblock_migratetype(below), phys::MIGRATE_MOVABLE);
  EXPECT_EQ(a.kind(below), FrameKind::FreeHead);
  EXPECT_EQ(a.kind(cma.start), FrameKind::FreeHead);

  // Then stretches of the live pages, short and long, rising and falling.
  std::mt19937_64 rng(17);
  for (int g = 0; g < 60 && !live.empty(); ++g) {
    const std::size_t len = std::min<std::size_t>(live.size(), 1 + rng() % 3000);
    const std::size_t at = rng() % (live.size() - len + 1);
    std::vector<Pfn> group(live.begin() + static_cast<std::ptrdiff_t>(at),
                           live.begin() + static_cast<std::ptrdiff_t>(at + len));
    if ((g % 4 == 3) != falling) std::reverse(group.begin(), group.end());
    ASSERT_NO_FATAL_FAILURE(free_group(group, "group " + std::to_string(g)));
  }
  EXPECT_TRUE(a.check().empty()) << join(a.check());
  EXPECT_TRUE(b.check().empty()) << join(b.check());
}

TEST(Buddy, PagesDrainedTogetherInRisingOrderEndAsWhenDrainedOneByOne) {
  drained_together_end_as_one_by_one(false);
}

TEST(Buddy, PagesDrainedTogetherInFallingOrderEndAsWhenDrainedOneByOne) {
  drained_together_end_as_one_by_one(true);
}

// A pcp refill takes the pages of the block it splits as one run: the same
// pages as __rmqueue() called once per page, and the same buddy afterwards.
// Two 1 GiB machines, one refilling by runs and one page by page, run the
// same random allocations and frees: orders 0 to 3, unmovable, reclaimable
// and movable, on two CPUs, with drains, until memory runs short. A quarter
// of RAM is CMA, so once the regular free pages fall below the CMA area's,
// movable refills alternate between the two (the CMA balancing that may stop
// a run part way). Every allocation must return the same block; every 2,000
// operations the free lists, frames, pageblocks, counters and pcp lists must
// be equal.
TEST(Buddy, RefillsTakenAsRunsEndAsWhenTakenOneByOne) {
  const phys::PhysConfig cfg = gib_two_cpus(256 * MiB);
  phys::PhysMem a(cfg);
  phys::PhysMem b(cfg);
  b.set_batched(false);
  struct Block {
    Pfn pfn;
    unsigned order;
  };
  std::vector<Block> live;
  std::mt19937_64 rng(23);
  const phys::Gfp gfps[] = {phys::GFP_KERNEL, phys::GFP_KERNEL_RECLAIMABLE, phys::GFP_HIGHUSER_MOVABLE,
                            phys::GFP_HIGHUSER_MOVABLE};
  std::uint64_t failed = 0;
  std::uint64_t from_cma = 0;
  for (int op = 1; op <= 200'000; ++op) {
    const std::string when = "operation " + std::to_string(op);
    const auto cpu = static_cast<CpuId>(rng() % 2);
    // Grow until an allocation fails, then hold memory near full.
    const bool grow = failed == 0 ? rng() % 8 != 0 : rng() % 2 == 0;
    if (grow || live.empty()) {
      const phys::Gfp gfp = gfps[rng() % 4];
      const unsigned order = rng() % 2 == 0 ? static_cast<unsigned>(1 + rng() % 3) : 0;
      const Result<Pfn> ra = a.alloc_pages(gfp, order, cpu, FrameKind::Kernel);
      const Result<Pfn> rb = b.alloc_pages(gfp, order, cpu, FrameKind::Kernel);
      ASSERT_EQ(ra.ok(), rb.ok()) << when;
      if (!ra.ok()) {
        ++failed;
        continue;
      }
      ASSERT_EQ(ra.value, rb.value) << when << ": order " << order;
      if (ra.value >= a.cma_area().start && ra.value < a.cma_area().end) ++from_cma;
      live.push_back({ra.value, order});
    } else {
      const std::size_t i = rng() % live.size();
      ASSERT_EQ(a.free_pages(live[i].pfn, live[i].order, cpu), 0) << when;
      ASSERT_EQ(b.free_pages(live[i].pfn, live[i].order, cpu), 0) << when;
      live[i] = live.back();
      live.pop_back();
    }
    if (op % 5'000 == 0) {
      a.drain_all_pages();
      b.drain_all_pages();
    }
    if (op % 2'000 == 0) {
      ASSERT_NO_FATAL_FAILURE(same_state(a, b, when));
    }
  }
  // The run reached the CMA balancing and the end of memory.
  EXPECT_GT(from_cma, 1'000u);
  EXPECT_GT(failed, 0u);
  EXPECT_TRUE(a.check().empty()) << join(a.check());
  EXPECT_TRUE(b.check().empty()) << join(b.check());
}

// cma_release() of a range looks up each pageblock's zone and migratetype once
// for all of its pages: the same pcp lists, drains and buddy as freeing them
// one by one. Two 1 GiB machines with 64 MiB of CMA, one of them page by
// page (set_batched(false)), take chunks of 1 to 1,536 pages at alignments of
// a page and of a pageblock, among movable allocations, and release them in
// one to three pieces that cross pageblocks; the state must stay equal.
TEST(Cma, RangesReleasedAsWhenReleasedPageByPage) {
  const phys::PhysConfig cfg = gib_two_cpus(64 * MiB);
  phys::PhysMem a(cfg);
  phys::PhysMem b(cfg);
  b.set_batched(false);
  struct Chunk {
    Pfn pfn;
    Pfn count;
  };
  std::vector<Chunk> chunks;
  std::vector<Pfn> movable;
  std::mt19937_64 rng(31);
  const Pfn sizes[] = {1, 7, 300, 512, 1024, 1536};
  std::uint64_t released = 0;
  for (int op = 1; op <= 6'000; ++op) {
    const std::string when = "operation " + std::to_string(op);
    const auto kind = rng() % 8;
    if (kind < 3) {
      const Pfn count = sizes[rng() % std::size(sizes)];
      const unsigned align = rng() % 2 == 0 ? 0 : kPageblockOrder;
      const Result<Pfn> ra = a.cma_alloc(count, align);
      const Result<Pfn> rb = b.cma_alloc(count, align);
      ASSERT_EQ(ra.ok(), rb.ok()) << when;
      ASSERT_EQ(ra.value, rb.value) << when;
      if (ra.ok()) chunks.push_back({ra.value, count});
    } else if (kind < 5 && !chunks.empty()) {
      const std::size_t i = rng() % chunks.size();
      const Chunk c = chunks[i];
      chunks[i] = chunks.back();
      chunks.pop_back();
      // One to three pieces, released in a random order.
      std::vector<Pfn> cuts = {c.pfn, c.pfn + c.count};
      for (int k = static_cast<int>(rng() % 3); k > 0 && c.count > 1; --k) {
        cuts.push_back(c.pfn + 1 + static_cast<Pfn>(rng() % (c.count - 1)));
      }
      std::sort(cuts.begin(), cuts.end());
      cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
      std::vector<std::size_t> order(cuts.size() - 1);
      std::iota(order.begin(), order.end(), std::size_t{0});
      std::shuffle(order.begin(), order.end(), rng);
      for (const std::size_t k : order) {
        ASSERT_EQ(a.cma_release(cuts[k], cuts[k + 1] - cuts[k]), 0) << when;
        ASSERT_EQ(b.cma_release(cuts[k], cuts[k + 1] - cuts[k]), 0) << when;
        released += cuts[k + 1] - cuts[k];
      }
    } else if (kind < 7 || movable.empty()) {
      const auto cpu = static_cast<CpuId>(rng() % 2);
      const Result<Pfn> ra = a.alloc_pages(phys::GFP_HIGHUSER_MOVABLE, 0, cpu, FrameKind::Kernel);
      const Result<Pfn> rb = b.alloc_pages(phys::GFP_HIGHUSER_MOVABLE, 0, cpu, FrameKind::Kernel);
      ASSERT_EQ(ra.ok(), rb.ok()) << when;
      ASSERT_EQ(ra.value, rb.value) << when;
      if (ra.ok()) movable.push_back(ra.value);
    } else {
      const std::size_t i = rng() % movable.size();
      const auto cpu = static_cast<CpuId>(rng() % 2);
      ASSERT_EQ(a.free_pages(movable[i], 0, cpu), 0) << when;
      ASSERT_EQ(b.free_pages(movable[i], 0, cpu), 0) << when;
      movable[i] = movable.back();
      movable.pop_back();
    }
    if (op % 200 == 0) {
      ASSERT_NO_FATAL_FAILURE(same_state(a, b, when));
    }
  }
  EXPECT_GT(released, 100'000u) << "the test should release many pages";
  EXPECT_GT(a.stats().pcp_drains, 100u) << "the releases should overflow the pcp lists";
  EXPECT_TRUE(a.check().empty()) << join(a.check());
  EXPECT_TRUE(b.check().empty()) << join(b.check());
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
  // A movable page has an owner (Machine::check() holds every User frame to one).
  mm::ProcessMemory& mem = m.mm().memory();
  const Result<mm::PageHandle> mov = mem.alloc_anon(m.mm().spawn(), phys::GFP_HIGHUSER_MOVABLE, 0, 0);
  ASSERT_TRUE(mov.ok());
  EXPECT_TRUE(mem.pfn(mov.value) >= cma.start && mem.pfn(mov.value) < cma.end);
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

// Pages of `zone` on the pcp lists of all CPUs.
std::uint64_t pcp_pages_of(const phys::PhysMem& ph, unsigned zone) {
  std::uint64_t n = 0;
  for (const auto& pcp : ph.zone(zone).pcp) n += static_cast<std::uint64_t>(pcp.count);
  return n;
}

// Order-0 pages of `gfp` allocated on each CPU and freed again: they wait on
// that CPU's pcp list.
void fill_pcp_lists(Machine& m, phys::Gfp gfp) {
  for (CpuId cpu = 0; cpu < m.config().cpus; ++cpu) {
    std::vector<Pfn> held;
    for (int i = 0; i < 8; ++i) {
      const Result<Pfn> r = m.phys().alloc_pages(gfp, 0, cpu, FrameKind::Kernel);
      ASSERT_TRUE(r.ok());
      held.push_back(r.value);
    }
    for (const Pfn p : held) ASSERT_EQ(m.phys().free_pages(p, 0, cpu), 0);
  }
}

// alloc_contig_range() drains the CMA zone's pcp lists (drain_all_pages(cc.zone))
// in every try, before it looks at a page of its range: whether or not the
// range holds pcp pages, and whether the range is then taken or busy. Only a
// bitmap with no clear range (-ENOMEM before any try) leaves them, and so do
// the other zones.
TEST(Cma, EveryTryDrainsTheCmaZonesPcpListsOnly_AllocContigRange) {
  MachineConfig c = testing::small_config(6 * GiB);
  c.cma_bytes = 8 * MiB;  // four 2 MiB chunks
  Machine m(c);
  auto& ph = m.phys();
  const phys::PfnRange cma = ph.cma_area();
  const unsigned cz = ph.zone_of(cma.start);
  ASSERT_EQ(cz, phys::ZONE_NORMAL);
  ASSERT_NO_FATAL_FAILURE(fill_pcp_lists(m, phys::GFP_KERNEL));
  ASSERT_NO_FATAL_FAILURE(fill_pcp_lists(m, phys::GFP_DMA32));
  const std::uint64_t dma32 = pcp_pages_of(ph, phys::ZONE_DMA32);
  ASSERT_GT(dma32, 0u);
  ASSERT_GT(pcp_pages_of(ph, cz), 0u);
  // Unmovable pages never sit in the area, so the range taken holds none of them.
  const Result<Pfn> a = ph.cma_alloc(kPageblockNrPages, kPageblockOrder);
  ASSERT_TRUE(a.ok()) << a.err;
  EXPECT_EQ(pcp_pages_of(ph, cz), 0u);
  EXPECT_EQ(pcp_pages_of(ph, phys::ZONE_DMA32), dma32);
  // A busy try (an unmovable page in the range) drains as well, on every
  // call, even when the model already knows the range busy.
  std::vector<Pfn> rest;
  for (Result<Pfn> r; (r = ph.cma_alloc(kPageblockNrPages, kPageblockOrder)).ok();) {
    rest.push_back(r.value);
  }
  ASSERT_EQ(rest.size(), 3u);
  ASSERT_EQ(ph.cma_release(rest[0], kPageblockNrPages), 0);
  Result<Pfn> mov;
  while ((mov = ph.alloc_pages(phys::GFP_HIGHUSER_MOVABLE, 0, 0, FrameKind::User)).ok() &&
         (mov.value < rest[0] || mov.value >= rest[0] + kPageblockNrPages)) {
  }
  ASSERT_TRUE(mov.ok());
  ph.set_kind(mov.value, 0, FrameKind::Kernel);
  for (int call = 0; call < 2; ++call) {
    ASSERT_NO_FATAL_FAILURE(fill_pcp_lists(m, phys::GFP_KERNEL));
    ASSERT_GT(pcp_pages_of(ph, cz), 0u);
    EXPECT_EQ(ph.cma_alloc(kPageblockNrPages, kPageblockOrder).err, -EBUSY);
    EXPECT_EQ(pcp_pages_of(ph, cz), 0u) << "call " << call;
  }
  // No clear range in the bitmap: no alloc_contig_range(), no drain.
  ASSERT_NO_FATAL_FAILURE(fill_pcp_lists(m, phys::GFP_KERNEL));
  const std::uint64_t left = pcp_pages_of(ph, cz);
  ASSERT_GT(left, 0u);
  EXPECT_EQ(ph.cma_alloc(2 * kPageblockNrPages, kPageblockOrder).err, -ENOMEM);
  EXPECT_EQ(pcp_pages_of(ph, cz), left);
  EXPECT_TRUE(ph.check().empty()) << join(ph.check());
}

// These tests re-tag CMA pages without the direct-map work a policy does, so
// they check PhysMem's invariants rather than the whole machine's.
TEST(Cma, BitmapFollowsAllocAndReleaseAndFailsAtOnceWhenFull) {
  MachineConfig c = testing::small_config();
  c.cma_bytes = 8 * MiB;  // four 2 MiB chunks
  Machine m(c);
  auto& ph = m.phys();
  const phys::PfnRange cma = ph.cma_area();
  std::vector<Pfn> got;
  for (Result<Pfn> r; (r = ph.cma_alloc(kPageblockNrPages, kPageblockOrder)).ok();) {
    got.push_back(r.value);
    for (Pfn p = r.value; p < r.value + kPageblockNrPages; ++p) ASSERT_TRUE(ph.cma_bitmap_test(p));
  }
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(got.front(), cma.start);  // the lowest range first, as the kernel's bitmap search
  EXPECT_EQ(ph.cma_bitmap_weight(), cma.size());
  // No clear range of the size is left: -ENOMEM before any page is looked at.
  EXPECT_EQ(ph.cma_alloc(1, 0).err, -ENOMEM);
  EXPECT_TRUE(ph.check().empty()) << join(ph.check());
  // Owners re-tag what they were given; the bits stay set until the release.
  ph.set_kind(got[1], kPageblockOrder, FrameKind::Unmapped);
  EXPECT_TRUE(ph.check().empty()) << join(ph.check());
  EXPECT_EQ(ph.cma_release(got[1], kPageblockNrPages), -EINVAL);
  ph.set_kind(got[1], kPageblockOrder, FrameKind::CmaAllocated);
  EXPECT_EQ(ph.cma_release(got[1], kPageblockNrPages), 0);
  EXPECT_FALSE(ph.cma_bitmap_test(got[1]));
  EXPECT_EQ(ph.cma_bitmap_weight(), cma.size() - kPageblockNrPages);
  EXPECT_TRUE(ph.check().empty()) << join(ph.check());
  // A movable page in the one clear range makes it busy (no migration): -EBUSY.
  Result<Pfn> mov;
  while ((mov = ph.alloc_pages(phys::GFP_HIGHUSER_MOVABLE, 0, 0, FrameKind::User)).ok() &&
         (mov.value < got[1] || mov.value >= got[1] + kPageblockNrPages)) {
  }
  ASSERT_TRUE(mov.ok());
  EXPECT_EQ(ph.cma_alloc(kPageblockNrPages, kPageblockOrder).err, -EBUSY);
  // Smaller ranges around the movable page are still found in that range.
  const Result<Pfn> small = ph.cma_alloc(16, 4);
  ASSERT_TRUE(small.ok());
  EXPECT_TRUE(small.value >= got[1] && small.value < got[1] + kPageblockNrPages);
  EXPECT_TRUE(small.value + 16 <= mov.value || small.value > mov.value);
  EXPECT_TRUE(ph.check().empty()) << join(ph.check());
}

TEST(Cma, FailsWithEnomemWhenNoClearRangeOfTheSizeIsLeftInTheBitmap) {
  MachineConfig c = testing::small_config();
  c.cma_bytes = 8 * MiB;
  Machine m(c);
  auto& ph = m.phys();
  std::vector<Pfn> got;
  for (Result<Pfn> r; (r = ph.cma_alloc(kPageblockNrPages, kPageblockOrder)).ok();) {
    got.push_back(r.value);
  }
  ASSERT_EQ(got.size(), 4u);
  // Two chunks go back and a small range is taken at the start of each (the
  // lowest clear range each time): 992 clear bits, but no clear aligned range of 512.
  for (const std::size_t i : {3U, 1U}) {
    ASSERT_EQ(ph.cma_release(got[i], kPageblockNrPages), 0);
    const Result<Pfn> r = ph.cma_alloc(16, 4);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r.value, got[i]);  // the lowest clear range
  }
  EXPECT_EQ(ph.cma_bitmap_weight(), 2 * kPageblockNrPages + 32);
  EXPECT_EQ(ph.cma_alloc(kPageblockNrPages, kPageblockOrder).err, -ENOMEM);
  EXPECT_EQ(ph.cma_alloc(kPageblockNrPages, kPageblockOrder).err, -ENOMEM);  // from the memo
  const Result<Pfn> r = ph.cma_alloc(kPageblockNrPages - 16, 4);  // fits after the small range
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value, got[1] + 16);
  EXPECT_TRUE(ph.check().empty()) << join(ph.check());
}

TEST(Cma, CheckReportsASetBitOnAFreedPage) {
  MachineConfig c = testing::small_config();
  c.cma_bytes = 4 * MiB;
  Machine m(c);
  auto& ph = m.phys();
  const Result<Pfn> r = ph.cma_alloc(kPageblockNrPages, kPageblockOrder);
  ASSERT_TRUE(r.ok());
  // An owner bug: the chunk goes to the buddy instead of through cma_release().
  ph.set_kind(r.value, kPageblockOrder, FrameKind::Unmapped);
  ASSERT_EQ(ph.free_pages(r.value, kPageblockOrder, 0), 0);
  const std::string v = join(ph.check());
  EXPECT_NE(v.find("CMA bitmap bit is set"), std::string::npos) << v;
}

// The search cma_alloc() did before the bitmap: every aligned range of the
// area in turn, the lowest whose pages are all free or on pcp lists. kNoPfn
// when there is none.
Pfn linear_cma_search(const phys::PhysMem& ph, Pfn count, unsigned align_order) {
  const phys::PfnRange cma = ph.cma_area();
  const Pfn align = Pfn{1} << align_order;
  for (Pfn s = (cma.start + align - 1) / align * align; std::uint64_t{s} + count <= cma.end;
       s += align) {
    bool busy = false;
    for (Pfn p = s; p < s + count && !busy; ++p) {
      const FrameKind k = ph.kind(p);
      busy = k != FrameKind::FreeHead && k != FrameKind::FreeTail && k != FrameKind::Pcp;
    }
    if (!busy) return s;
  }
  return kNoPfn;
}

// The error cma_alloc() gives when linear_cma_search() finds nothing, as the
// kernel's loop ends: -EBUSY when some aligned range had all its bitmap bits
// clear (and was found busy), -ENOMEM when none had.
int linear_cma_error(const phys::PhysMem& ph, Pfn count, unsigned align_order) {
  const phys::PfnRange cma = ph.cma_area();
  const Pfn align = Pfn{1} << align_order;
  for (Pfn s = (cma.start + align - 1) / align * align; std::uint64_t{s} + count <= cma.end;
       s += align) {
    bool set = false;
    for (Pfn p = s; p < s + count && !set; ++p) set = ph.cma_bitmap_test(p);
    if (!set) return -EBUSY;
  }
  return -ENOMEM;
}

// Random states of the CMA area (chunks handed out and released, movable and
// re-tagged pages in it, pcp pages): cma_alloc() returns exactly the range the
// linear search finds, and fails exactly when it finds none.
RC_GTEST_PROP(CmaProperty, BitmapSearchReturnsWhatTheLinearSearchFinds, ()) {
  MachineConfig c = testing::small_config(64 * MiB);
  c.kernel_image_bytes = 4 * MiB;
  // Mostly an area over half of free memory, so movable pages land in it at once.
  c.cma_bytes = *rc::gen::element<std::uint64_t>(4 * MiB, 16 * MiB, 32 * MiB, 32 * MiB);
  Machine m(c);
  auto& ph = m.phys();
  // The test's own pages have no owner: nothing migrates (see below).
  ph.set_page_owners(nullptr);
  const auto ops = *rc::gen::container<std::vector<std::tuple<int, int, int, int>>>(
      rc::gen::tuple(rc::gen::inRange(0, 13), rc::gen::inRange(0, 11), rc::gen::inRange(1, 1100),
                     rc::gen::inRange(0, 1 << 20)));
  std::vector<std::pair<Pfn, unsigned>> live;  // buddy blocks
  struct Taken {
    Pfn pfn;
    Pfn count;
    bool retagged;
  };
  std::vector<Taken> taken;  // ranges from cma_alloc()
  for (const auto& [op, o, n, pick] : ops) {
    const auto cpu = static_cast<CpuId>(pick % 2);
    if (op < 5) {
      const auto order = static_cast<unsigned>(o) % 10;
      const Result<Pfn> r = ph.alloc_pages(phys::GFP_HIGHUSER_MOVABLE, order, cpu, FrameKind::User);
      if (r.ok()) live.emplace_back(r.value, order);
    } else if (op == 5) {
      const Result<Pfn> r =
          ph.alloc_pages(phys::GFP_KERNEL, static_cast<unsigned>(o) % 4, cpu, FrameKind::Kernel);
      if (r.ok()) live.emplace_back(r.value, static_cast<unsigned>(o) % 4);
    } else if (op < 8) {
      if (live.empty()) continue;
      const std::size_t i = static_cast<std::size_t>(pick) % live.size();
      RC_ASSERT(ph.free_pages(live[i].first, live[i].second, cpu) == 0);
      live[i] = live.back();
      live.pop_back();
    } else if (op < 11) {
      // A chunk-sized request half the time, as the secretmem pools make.
      const bool chunk = pick % 2 == 0;
      const auto count = chunk ? kPageblockNrPages : static_cast<Pfn>(n);
      const unsigned align = chunk ? kPageblockOrder : static_cast<unsigned>(o);
      const Pfn want = linear_cma_search(ph, count, align);
      const int want_err = want == kNoPfn ? linear_cma_error(ph, count, align) : 0;
      const Result<Pfn> r = ph.cma_alloc(count, align);
      if (want == kNoPfn) {
        RC_ASSERT(r.err == want_err);
      } else {
        RC_ASSERT(r.ok());
        RC_ASSERT(r.value == want);
        taken.push_back({r.value, count, false});
      }
    } else if (op == 11) {
      if (taken.empty()) continue;
      const std::size_t i = static_cast<std::size_t>(pick) % taken.size();
      Taken& t = taken[i];
      // A block-shaped range is re-tagged by its owner first, as a pool does,
      // and tagged back before its release.
      const bool block = std::has_single_bit(t.count) && t.pfn % t.count == 0;
      const auto order = static_cast<unsigned>(std::countr_zero(t.count));
      if (block && !t.retagged) {
        ph.set_kind(t.pfn, order, FrameKind::Unmapped);
        t.retagged = true;
      } else {
        if (t.retagged) ph.set_kind(t.pfn, order, FrameKind::CmaAllocated);
        RC_ASSERT(ph.cma_release(t.pfn, t.count) == 0);
        taken[i] = taken.back();
        taken.pop_back();
      }
    } else {
      ph.drain_all_pages();
    }
    const auto v = ph.check();
    if (!v.empty()) RC_FAIL(join(v));
  }
}

// One long seeded run in the state the pool soak reaches: the area full of
// movable pages and chunks, most searches failing, pages freed and chunks
// released between them. Every cma_alloc() is compared with the linear search.
TEST(Cma, LongRandomRunMatchesTheLinearSearch) {
  MachineConfig c = testing::small_config(64 * MiB);
  c.kernel_image_bytes = 4 * MiB;
  c.cma_bytes = 32 * MiB;
  Machine m(c);
  auto& ph = m.phys();
  // The pages here are the test's, not the Machine's owners': without owners
  // nothing migrates and a movable page is as busy as an unmovable one, which
  // is what the linear search assumes (migration has tests of its own).
  ph.set_page_owners(nullptr);
  std::mt19937 rng(7);
  auto below = [&rng](std::uint32_t n) { return static_cast<std::uint32_t>(rng() % n); };
  std::vector<std::pair<Pfn, unsigned>> live;
  std::vector<std::pair<Pfn, Pfn>> taken;
  std::uint64_t found = 0;
  std::uint64_t busy = 0;
  std::uint64_t nomem = 0;
  for (int step = 0; step < 30000; ++step) {
    const std::uint32_t op = below(100);
    const auto cpu = static_cast<CpuId>(below(2));
    if (op < 40) {
      const unsigned order = below(4) == 0 ? below(10) : 0;
      const Result<Pfn> r = ph.alloc_pages(phys::GFP_HIGHUSER_MOVABLE, order, cpu, FrameKind::User);
      if (r.ok()) live.emplace_back(r.value, order);
    } else if (op < 75) {
      if (live.empty()) continue;
      const std::size_t i = below(static_cast<std::uint32_t>(live.size()));
      ASSERT_EQ(ph.free_pages(live[i].first, live[i].second, cpu), 0);
      live[i] = live.back();
      live.pop_back();
    } else if (op < 95) {
      const bool chunk = below(4) != 0;
      const Pfn count = chunk ? kPageblockNrPages : 1 + below(600);
      const unsigned align = chunk ? kPageblockOrder : below(10);
      const Pfn want = linear_cma_search(ph, count, align);
      const int want_err = want == kNoPfn ? linear_cma_error(ph, count, align) : 0;
      const Result<Pfn> r = ph.cma_alloc(count, align);
      ASSERT_EQ(r.ok() ? r.value : kNoPfn, want) << "step " << step << ": count " << count
                                                  << ", align order " << align;
      ASSERT_EQ(r.err, want_err) << "step " << step;
      if (r.ok()) {
        taken.emplace_back(r.value, count);
        ++found;
      } else {
        ++(r.err == -EBUSY ? busy : nomem);
      }
    } else if (op < 99) {
      if (taken.empty()) continue;
      const std::size_t i = below(static_cast<std::uint32_t>(taken.size()));
      ASSERT_EQ(ph.cma_release(taken[i].first, taken[i].second), 0);
      taken[i] = taken.back();
      taken.pop_back();
    } else {
      ph.drain_all_pages();
    }
    if (step % 64 == 0) {
      ASSERT_TRUE(ph.check().empty()) << "step " << step << "\n" << join(ph.check());
    }
  }
  EXPECT_TRUE(ph.check().empty()) << join(ph.check());
  EXPECT_GT(found, 100u) << busy << " busy, " << nomem << " -ENOMEM";
  EXPECT_GT(busy, 100u) << found << " found, " << nomem << " -ENOMEM";
  EXPECT_GT(nomem, 100u) << found << " found, " << busy << " busy";
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

// The model's large tables: a HugeVector of 2 MiB or more sits on a 2 MiB
// boundary (so that transparent huge pages can back it) and keeps its
// contents as it grows across that size and back; a small one is ordinary.
TEST(HugeVector, LargeStorageIsHugePageAlignedAndKeepsItsContentsAcrossGrowth) {
  HugeVector<std::uint64_t> v;
  const std::size_t n = 3 * kHugePageBytes / sizeof(std::uint64_t);
  for (std::size_t i = 0; i < n; ++i) v.push_back(i * 7 + 1);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(v.data()) % kHugePageBytes, 0u);
  for (std::size_t i = 0; i < n; i += 4099) ASSERT_EQ(v[i], i * 7 + 1) << "at " << i;
  EXPECT_EQ(v.back(), (n - 1) * 7 + 1);
  v.resize(16);
  v.shrink_to_fit();
  EXPECT_EQ(v.size(), 16u);
  EXPECT_EQ(v[15], 15u * 7 + 1);
  HugeVector<std::uint64_t> copy(v);
  EXPECT_EQ(copy, v);
  EXPECT_EQ(round_up_huge(1), kHugePageBytes);
  EXPECT_EQ(round_up_huge(kHugePageBytes), kHugePageBytes);
  EXPECT_EQ(round_up_huge(kHugePageBytes + 1), 2 * kHugePageBytes);
}

}  // namespace
}  // namespace exmem::model
