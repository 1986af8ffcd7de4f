// Tests of phys/slowpath.cpp and phys/compaction.cpp: __alloc_pages_slowpath()
// with kswapd, direct reclaim, compaction, should_reclaim_retry(), the OOM
// killer and CMA migration, against a fake PageOwners.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>
#include <vector>

#include "helpers.hpp"
#include "model/phys/physmem.hpp"

namespace exmem::model {
namespace {

using namespace phys;
using testing::join;

PhysConfig small_phys(std::uint64_t ram = 256 * MiB, std::uint64_t cma = 0) {
  PhysConfig c;
  c.ram_bytes = ram;
  c.cpus = 2;
  c.kernel_image_bytes = 8 * MiB;
  c.cma_bytes = cma;
  return c;
}

// The owners of every block the test allocated through it.
class FakeOwners : public PageOwners {
 public:
  explicit FakeOwners(PhysMem& pm) : pm_(pm) {}

  struct Block {
    unsigned order = 0;
    FrameKind kind = FrameKind::User;
    bool pinned = false;
    bool victim = false;  // freed by out_of_memory()
  };

  bool alloc(Gfp gfp, unsigned order, FrameKind kind, bool victim = false) {
    const Result<Pfn> r = pm_.alloc_pages(gfp, order, 0, kind);
    if (!r.ok()) return false;
    blocks_[r.value] = Block{order, kind, false, victim};
    order_.push_back(r.value);
    return true;
  }
  void free(Pfn pfn) {
    const auto it = blocks_.find(pfn);
    ASSERT_NE(it, blocks_.end());
    ASSERT_EQ(pm_.free_pages(pfn, it->second.order, 0), 0);
    blocks_.erase(it);
  }

  std::uint64_t reclaim(unsigned highest_zoneidx, std::uint64_t nr, CpuId) override {
    ++reclaim_calls;
    if (!reclaimable) return 0;
    std::uint64_t freed = 0;
    for (auto it = order_.begin(); it != order_.end() && freed < nr;) {
      const auto b = blocks_.find(*it);
      if (b == blocks_.end()) {
        it = order_.erase(it);
        continue;
      }
      if (b->second.kind != FrameKind::PageCache || pm_.zone_of(*it) > highest_zoneidx) {
        ++it;
        continue;
      }
      freed += std::uint64_t{1} << b->second.order;
      EXPECT_EQ(pm_.free_pages(*it, b->second.order, 0), 0);
      blocks_.erase(b);
      it = order_.erase(it);
    }
    return freed;
  }
  bool migrate(Pfn from, Pfn to, unsigned order) override {
    ++migrate_calls;
    migrate_orders.insert(order);
    const auto it = blocks_.find(from);
    if (it == blocks_.end() || it->second.pinned || it->second.order != order) return false;
    EXPECT_EQ(pm_.kind(to), it->second.kind);
    blocks_[to] = it->second;
    blocks_.erase(from);
    std::replace(order_.begin(), order_.end(), from, to);
    return true;
  }
  bool out_of_memory(Gfp, unsigned, CpuId) override {
    ++oom_calls;
    bool killed = false;
    for (auto it = blocks_.begin(); it != blocks_.end();) {
      if (!it->second.victim) {
        ++it;
        continue;
      }
      EXPECT_EQ(pm_.free_pages(it->first, it->second.order, 0), 0);
      it = blocks_.erase(it);
      killed = true;
    }
    return killed;
  }

  PhysMem& pm_;
  std::map<Pfn, Block> blocks_;
  std::vector<Pfn> order_;  // allocation order: oldest first
  bool reclaimable = true;
  int reclaim_calls = 0;
  int migrate_calls = 0;
  int oom_calls = 0;
  std::set<unsigned> migrate_orders;
};

constexpr Gfp kNoKswapd = ~__GFP_KSWAPD_RECLAIM;

// Without owners, the slow path fails where reclaim would be needed: fill
// with `kind` until then.
void fill(FakeOwners& f, Gfp gfp, FrameKind kind, bool victim = false) {
  for (bool more = true; more;) {
    more = false;
    while (f.alloc(gfp, 0, kind, victim)) more = true;
    f.pm_.drain_all_pages();  // and the pcp pages too
  }
}

// try_to_free_pages(): an order-0 GFP_HIGHUSER allocation with no free
// pages left reclaims SWAP_CLUSTER_MAX page-cache pages and succeeds.
TEST(SlowPath, DirectReclaimFreesPageCacheAndSucceeds_TryToFreePages) {
  PhysMem pm(small_phys());
  FakeOwners f(pm);
  fill(f, GFP_HIGHUSER_MOVABLE, FrameKind::PageCache);
  ASSERT_GT(pm.zone_reclaimable_pages(ZONE_DMA32), 10000u);
  EXPECT_FALSE(pm.alloc_pages(GFP_HIGHUSER & kNoKswapd, 0, 0, FrameKind::Secret).ok());
  pm.set_page_owners(&f);
  const PhysStats before = pm.stats();
  const Result<Pfn> r = pm.alloc_pages(GFP_HIGHUSER & kNoKswapd, 0, 0, FrameKind::Secret);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(pm.stats().allocstall - before.allocstall, 1u);
  EXPECT_EQ(pm.stats().pgsteal_direct, 32u);  // SWAP_CLUSTER_MAX
  EXPECT_EQ(pm.stats().pgsteal_kswapd, 0u);
  EXPECT_EQ(f.oom_calls, 0);
  EXPECT_EQ(join(pm.check()), "");
}

// balance_pgdat(): a woken kswapd reclaims until a zone is above its high
// watermark, and takes the watermark boost off.
TEST(SlowPath, KswapdReclaimsToTheHighWatermark_BalancePgdat) {
  PhysMem pm(small_phys());
  FakeOwners f(pm);
  fill(f, GFP_HIGHUSER_MOVABLE, FrameKind::PageCache);
  pm.set_page_owners(&f);
  const PhysStats before = pm.stats();
  ASSERT_TRUE(pm.alloc_pages(GFP_HIGHUSER, 0, 0, FrameKind::Secret).ok());
  EXPECT_GT(pm.stats().kswapd_wakeups, before.kswapd_wakeups);
  EXPECT_GT(pm.stats().pgsteal_kswapd, 0u);
  EXPECT_EQ(pm.stats().allocstall, before.allocstall);  // kswapd was enough: no direct reclaim
  const Zone& z = pm.zone(ZONE_DMA32);
  EXPECT_GE(z.nr_free_pages + 1, static_cast<std::int64_t>(z.wmark_pages(WMARK_HIGH)));
  EXPECT_EQ(z.watermark_boost, 0u);
  EXPECT_EQ(join(pm.check()), "");
}

// __alloc_pages_may_oom(): with nothing reclaimable the OOM killer runs; the
// kill is progress and the retry succeeds.
TEST(SlowPath, OomKillFreesMemoryAndTheRetrySucceeds_AllocPagesMayOom) {
  PhysMem pm(small_phys());
  FakeOwners f(pm);
  fill(f, GFP_KERNEL, FrameKind::Kernel, true);
  pm.set_page_owners(&f);
  ASSERT_TRUE(pm.alloc_pages(GFP_HIGHUSER, 0, 0, FrameKind::Secret).ok());
  EXPECT_EQ(f.oom_calls, 1);
  EXPECT_EQ(pm.stats().oom_kill, 1u);
  EXPECT_EQ(join(pm.check()), "");
}

// out_of_memory() without a victim: the allocation fails (-ENOMEM).
TEST(SlowPath, NoVictimMeansTheAllocationFails_AllocPagesMayOom) {
  PhysMem pm(small_phys());
  FakeOwners f(pm);
  fill(f, GFP_KERNEL, FrameKind::Kernel);
  pm.set_page_owners(&f);
  const Result<Pfn> r = pm.alloc_pages(GFP_HIGHUSER, 0, 0, FrameKind::Secret);
  EXPECT_EQ(r.err, -ENOMEM);
  EXPECT_EQ(f.oom_calls, 1);
  EXPECT_EQ(pm.stats().oom_kill, 0u);
  EXPECT_EQ(join(pm.check()), "");
}

// __alloc_pages_slowpath(): GFP_TRANSHUGE_LIGHT has no __GFP_DIRECT_RECLAIM
// (nor kswapd): it never reaches reclaim, compaction or the OOM killer.
TEST(SlowPath, TranshugeLightNeverReclaimsOrKills_AllocPagesSlowpath) {
  PhysMem pm(small_phys());
  FakeOwners f(pm);
  fill(f, GFP_HIGHUSER_MOVABLE, FrameKind::PageCache);
  pm.set_page_owners(&f);
  EXPECT_FALSE(pm.alloc_pages(GFP_TRANSHUGE_LIGHT, kHpagePmdOrder, 0, FrameKind::User).ok());
  EXPECT_EQ(f.reclaim_calls, 0);
  EXPECT_EQ(f.oom_calls, 0);
  EXPECT_EQ(pm.stats().compact_stall, 0u);
  EXPECT_EQ(join(pm.check()), "");
}

// __alloc_pages_may_oom(): the OOM killer does not help costly orders (> 3),
// even with __GFP_RETRY_MAYFAIL, which retries.
TEST(SlowPath, CostlyOrdersNeverCallTheOomKiller_AllocPagesMayOom) {
  PhysMem pm(small_phys());
  FakeOwners f(pm);
  fill(f, GFP_KERNEL, FrameKind::Kernel, true);
  pm.set_page_owners(&f);
  EXPECT_FALSE(pm.alloc_pages(GFP_KERNEL, 4, 0, FrameKind::Kernel).ok());
  EXPECT_FALSE(pm.alloc_pages(GFP_KERNEL | __GFP_RETRY_MAYFAIL, 4, 0, FrameKind::Kernel).ok());
  EXPECT_GT(f.reclaim_calls, 0);
  EXPECT_EQ(f.oom_calls, 0);
  EXPECT_EQ(join(pm.check()), "");
}

// __alloc_pages_slowpath(): __GFP_NORETRY leaves after one reclaim and
// compaction round; __GFP_RETRY_MAYFAIL retries but is never OOM-killed for.
TEST(SlowPath, NoretryAndRetryMayfailDoNotOom_AllocPagesSlowpath) {
  PhysMem pm(small_phys());
  FakeOwners f(pm);
  fill(f, GFP_KERNEL, FrameKind::Kernel, true);
  pm.set_page_owners(&f);
  EXPECT_FALSE(pm.alloc_pages((GFP_KERNEL | __GFP_NORETRY) & kNoKswapd, 0, 0, FrameKind::Kernel).ok());
  EXPECT_EQ(f.reclaim_calls, 1);
  EXPECT_FALSE(pm.alloc_pages((GFP_KERNEL | __GFP_RETRY_MAYFAIL) & kNoKswapd, 0, 0, FrameKind::Kernel).ok());
  EXPECT_EQ(f.reclaim_calls, 1 + 17);  // MAX_RECLAIM_RETRIES + 1 passes without progress
  EXPECT_EQ(f.oom_calls, 0);
  EXPECT_EQ(join(pm.check()), "");
}

// should_reclaim_retry(): with reclaimable pages that reclaim cannot free,
// it retries MAX_RECLAIM_RETRIES times, then unreserves a highatomic
// pageblock (force, even the last) before it would go OOM, and the
// allocation succeeds from it.
TEST(SlowPath, GivesUpAfterMaxReclaimRetriesAndUnreservesHighatomic_ShouldReclaimRetry) {
  PhysMem pm(small_phys());
  FakeOwners f(pm);
  fill(f, GFP_HIGHUSER_MOVABLE, FrameKind::PageCache);  // reclaimable on paper
  pm.drain_all_pages();
  // 100 pages of one pageblock back: still below the low watermark, where a
  // GFP_ATOMIC order-1 allocation reserves its pageblock as highatomic.
  Pfn block = kNoPfn;
  for (const auto& [pfn, b] : f.blocks_) {
    const Pfn start = pfn & ~(kPageblockNrPages - 1);
    if (pfn != start) continue;
    bool whole = true;
    for (Pfn q = start; q < start + 100 && whole; ++q) whole = f.blocks_.count(q) != 0;
    if (whole) {
      block = start;
      break;
    }
  }
  ASSERT_NE(block, kNoPfn);
  for (Pfn q = block; q < block + 100; ++q) f.free(q);
  pm.drain_all_pages();
  const Zone& zone = pm.zone(ZONE_DMA32);
  ASSERT_LT(zone.nr_free_pages, static_cast<std::int64_t>(zone.wmark_pages(WMARK_LOW)))
      << zone.wmark_pages(WMARK_MIN) << " " << zone.wmark_pages(WMARK_HIGH);
  ASSERT_TRUE(pm.alloc_pages(GFP_ATOMIC, 1, 0, FrameKind::Kernel).ok());
  ASSERT_EQ(pm.stats().highatomic_reserved, 1u);
  ASSERT_EQ(pm.zone(ZONE_DMA32).nr_reserved_highatomic, kPageblockNrPages);
  f.reclaimable = false;  // nothing frees
  pm.set_page_owners(&f);
  ASSERT_GT(pm.zone(ZONE_DMA32).nr_free_highatomic, 0);
  const Result<Pfn> r = pm.alloc_pages(GFP_KERNEL & kNoKswapd, 0, 0, FrameKind::Kernel);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(pm.pageblock_migratetype(r.value), MIGRATE_UNMOVABLE);
  EXPECT_EQ(f.reclaim_calls, 17);  // MAX_RECLAIM_RETRIES + 1
  EXPECT_EQ(pm.stats().highatomic_unreserved, 1u);
  EXPECT_EQ(pm.zone(ZONE_DMA32).nr_reserved_highatomic, 0u);
  EXPECT_EQ(f.oom_calls, 0);
  EXPECT_EQ(join(pm.check()), "");
}

// Fills with movable base pages, then frees every other one: plenty of free
// pages, none in a block of order 1 or more.
void fragment_with_user_pages(FakeOwners& f) {
  fill(f, GFP_HIGHUSER_MOVABLE, FrameKind::User);
  fill(f, GFP_ATOMIC | __GFP_MOVABLE, FrameKind::User);  // the reserves too: no large block left
  f.pm_.drain_all_pages();
  std::vector<Pfn> all;
  for (const auto& [pfn, b] : f.blocks_) all.push_back(pfn);
  for (const Pfn p : all) {
    if (p % 2 == 0) f.free(p);
  }
  f.pm_.drain_all_pages();
}

// compact_zone(): direct compaction migrates movable pages to the free
// pages at the zone's end and forms an order-9 block for a THP.
TEST(Compaction, FormsAnOrder9BlockByMigratingMovablePages_CompactZone) {
  PhysMem pm(small_phys());
  FakeOwners f(pm);
  fragment_with_user_pages(f);
  EXPECT_FALSE(pm.alloc_pages(GFP_TRANSHUGE, kHpagePmdOrder, 0, FrameKind::User).ok());  // no owners
  pm.set_page_owners(&f);
  const Result<Pfn> r = pm.alloc_pages(GFP_TRANSHUGE, kHpagePmdOrder, 0, FrameKind::User);
  ASSERT_TRUE(r.ok());
  EXPECT_GT(pm.stats().pgmigrate_success, 0u);
  EXPECT_EQ(pm.stats().pgmigrate_fail, 0u);
  EXPECT_EQ(pm.stats().compact_stall, 1u);
  EXPECT_EQ(pm.stats().compact_success, 1u);
  EXPECT_GT(pm.stats().compact_migrate_scanned, 0u);
  EXPECT_GT(pm.stats().compact_free_scanned, 0u);
  EXPECT_EQ(pm.movable_block_order(r.value), kHpagePmdOrder);
  EXPECT_EQ(join(pm.check()), "");
}

// migrate_pages(): pinned pages do not move; compaction fails and counts them.
TEST(Compaction, RefusesPinnedPages_CompactZone) {
  PhysMem pm(small_phys());
  FakeOwners f(pm);
  fragment_with_user_pages(f);
  for (auto& [pfn, b] : f.blocks_) b.pinned = true;
  pm.set_page_owners(&f);
  EXPECT_FALSE(pm.alloc_pages(GFP_TRANSHUGE, kHpagePmdOrder, 0, FrameKind::User).ok());
  EXPECT_EQ(pm.stats().pgmigrate_success, 0u);
  EXPECT_GT(pm.stats().pgmigrate_fail, 0u);
  EXPECT_GT(pm.stats().compact_fail, 0u);
  EXPECT_EQ(join(pm.check()), "");
}

// isolate_migratepages_block() / skip_isolation_on_order(): THPs are never
// migrated when compacting for their order or less.
TEST(Compaction, NeverMigratesThpsForTheirOrderOrLess_IsolateMigratepagesBlock) {
  PhysMem pm(small_phys());
  FakeOwners f(pm);
  while (f.alloc(GFP_TRANSHUGE_LIGHT, kHpagePmdOrder, FrameKind::User)) {
  }
  std::vector<Pfn> thps;
  for (const auto& [pfn, b] : f.blocks_) thps.push_back(pfn);
  ASSERT_GT(thps.size(), 20u);
  fill(f, GFP_HIGHUSER_MOVABLE, FrameKind::User);
  fill(f, GFP_ATOMIC | __GFP_MOVABLE, FrameKind::User);
  pm.drain_all_pages();
  std::vector<Pfn> small;
  for (const auto& [pfn, b] : f.blocks_) {
    if (b.order == 0 && pfn % 2 == 0) small.push_back(pfn);
  }
  for (const Pfn p : small) f.free(p);
  pm.drain_all_pages();
  pm.set_page_owners(&f);
  (void)pm.alloc_pages(GFP_HIGHUSER_MOVABLE | __GFP_COMP, 4, 0, FrameKind::User);
  (void)pm.alloc_pages(GFP_TRANSHUGE, kHpagePmdOrder, 0, FrameKind::User);
  EXPECT_EQ(f.migrate_orders.count(kHpagePmdOrder), 0u);
  for (const Pfn p : thps) {
    ASSERT_TRUE(f.blocks_.count(p));
    EXPECT_EQ(pm.movable_block_order(p), kHpagePmdOrder);
  }
  EXPECT_EQ(join(pm.check()), "");
}

// isolate_migratepages_block(): a compound block smaller than the target
// order (an order-2 mTHP) is isolated and migrated whole, at its order.
TEST(Compaction, MigratesSmallerCompoundBlocksWhole_IsolateMigratepagesBlock) {
  PhysMem pm(small_phys());
  FakeOwners f(pm);
  for (bool more = true; more;) {
    more = false;
    while (f.alloc(GFP_HIGHUSER_MOVABLE | __GFP_COMP, 2, FrameKind::User)) more = true;
    pm.drain_all_pages();
  }
  fill(f, GFP_HIGHUSER_MOVABLE, FrameKind::User);
  fill(f, GFP_ATOMIC | __GFP_MOVABLE, FrameKind::User);
  std::vector<Pfn> drop;
  for (const auto& [pfn, b] : f.blocks_) {
    if (b.order == 2 && (pfn / 4) % 2 == 0) drop.push_back(pfn);
  }
  for (const Pfn p : drop) f.free(p);
  pm.drain_all_pages();
  pm.set_page_owners(&f);
  const Result<Pfn> r = pm.alloc_pages(GFP_TRANSHUGE, kHpagePmdOrder, 0, FrameKind::User);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(f.migrate_orders.count(2));
  for (const auto& [pfn, b] : f.blocks_) {
    if (b.order == 2) {
      ASSERT_EQ(pm.movable_block_order(pfn), 2u) << pfn;
    }
  }
  EXPECT_EQ(join(pm.check()), "");
}

// Movable pages until some of them sit in the CMA area.
std::vector<Pfn> user_pages_in_cma(FakeOwners& f) {
  std::vector<Pfn> in;
  const PfnRange cma = f.pm_.cma_area();
  for (int i = 0; i < 200000 && in.size() < 64; ++i) {
    if (!f.alloc(GFP_HIGHUSER_MOVABLE, 0, FrameKind::User)) break;
    const Pfn p = f.order_.back();
    if (p >= cma.start && p < cma.end) in.push_back(p);
  }
  return in;
}

// cma_alloc() -> alloc_contig_range(): movable pages in the range are
// migrated out of it (to destinations outside the area).
TEST(Cma, MigratesMovablePagesOutOfTheRange_AllocContigRange) {
  PhysMem pm(small_phys(256 * MiB, 8 * MiB));
  FakeOwners f(pm);
  const std::vector<Pfn> in = user_pages_in_cma(f);
  ASSERT_FALSE(in.empty());
  pm.set_page_owners(&f);
  const PfnRange cma = pm.cma_area();
  const Result<Pfn> r = pm.cma_alloc(cma.size(), 0);  // the whole area
  ASSERT_TRUE(r.ok()) << r.err;
  EXPECT_GE(pm.stats().cma_migrated, in.size());
  EXPECT_EQ(pm.stats().pgmigrate_fail, 0u);
  for (const auto& [pfn, b] : f.blocks_) EXPECT_TRUE(pfn < cma.start || pfn >= cma.end) << pfn;
  EXPECT_EQ(join(pm.check()), "");
  EXPECT_EQ(pm.cma_release(r.value, cma.size()), 0);
  EXPECT_EQ(join(pm.check()), "");
}

// cma_alloc(): an unmovable page in the range, or a pinned one, still
// makes it busy (-EBUSY); the busy marks stay on unmovable pages only.
TEST(Cma, UnmovableOrPinnedPagesStillFailEbusy_CmaAlloc) {
  PhysMem pm(small_phys(256 * MiB, 8 * MiB));
  FakeOwners f(pm);
  const std::vector<Pfn> in = user_pages_in_cma(f);
  ASSERT_GE(in.size(), 2u);
  pm.set_page_owners(&f);
  const PfnRange cma = pm.cma_area();
  f.blocks_[in[0]].pinned = true;
  EXPECT_EQ(pm.cma_alloc(cma.size(), 0).err, -EBUSY);
  EXPECT_EQ(join(pm.check()), "");
  f.blocks_[in[0]].pinned = false;
  pm.set_kind(in[0], 0, FrameKind::Kernel);  // now unmovable
  f.blocks_[in[0]].kind = FrameKind::Kernel;
  EXPECT_EQ(pm.cma_alloc(cma.size(), 0).err, -EBUSY);
  EXPECT_EQ(join(pm.check()), "");
  pm.set_kind(in[0], 0, FrameKind::User);  // movable again: no longer always busy
  f.blocks_[in[0]].kind = FrameKind::User;
  const Result<Pfn> r = pm.cma_alloc(cma.size(), 0);
  EXPECT_TRUE(r.ok()) << r.err;
  EXPECT_EQ(join(pm.check()), "");
}

}  // namespace
}  // namespace exmem::model
