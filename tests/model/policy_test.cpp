// Tests of the policies for unmapped pages: each test pins what one design's
// mechanism must do; the property runs random workloads under every policy and
// collapse mode and checks every invariant along the way.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <iterator>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "helpers.hpp"
#include "model/machine.hpp"
#include "model/policy/policy.hpp"
#include "model/policy/pool.hpp"
#include "model/users/guest_memfd.hpp"
#include "model/workload/synthetic.hpp"

namespace exmem::model {
namespace {

using testing::join;
using testing::leave_only_order0;
using testing::take_pages;

MachineConfig policy_config(const std::string& policy, std::uint64_t ram = 256 * MiB) {
  MachineConfig c = testing::small_config(ram);
  c.policy = policy;
  return c;
}

std::uint64_t counter(const Machine& m, std::string_view name) {
  for (const auto& c : m.policy().counters()) {
    if (c.name == name) return c.value;
  }
  ADD_FAILURE() << "policy " << m.policy().name() << " has no counter " << name;
  return 0;
}

std::uint64_t flushes(const Machine& m) {
  const auto& f = m.flushes().counters();
  return f.range_flushes + f.full_flushes + f.local_flushes;
}

// A process with a secret mapping of `pages` pages (mlock limit lifted).
struct Secret {
  mm::Pid pid = 0;
  std::uint64_t addr = 0;
  int mmap_err = 0;
};
Secret map_secret(Machine& m, std::uint64_t pages) {
  Secret s;
  s.pid = m.mm().spawn(0, true);
  const int fd = m.mm().memfd_secret(s.pid, 0);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(m.mm().ftruncate(s.pid, fd, static_cast<std::int64_t>(pages * kPageSize)), 0);
  const Result<std::uint64_t> a = m.mm().mmap(s.pid, pages * kPageSize,
                                              mm::kPROT_READ | mm::kPROT_WRITE, mm::kMAP_SHARED, fd, 0);
  s.addr = a.value;
  s.mmap_err = a.err;
  return s;
}
mm::VmFault touch(Machine& m, const Secret& s, std::uint64_t page) {
  return m.mm().touch(s.pid, s.addr + page * kPageSize, true);
}


// A page of `held` in the pageblock of pfn (kNoPfn: none).
Pfn held_in_pageblock(const std::vector<Pfn>& held, Pfn pfn) {
  for (const Pfn q : held) {
    if ((q & ~(kPageblockNrPages - 1)) == (pfn & ~(kPageblockNrPages - 1)) && q != pfn) return q;
  }
  return kNoPfn;
}

// --- secretmem-pmd-pool ---

TEST(SecretmemPmdPool, PmdPoolRemovesAWhole2MChunkWithOneFlush) {
  MachineConfig c = policy_config("secretmem-pmd-pool");
  c.policy_params.set("secretmem", 8 * MiB);
  Machine m(c);
  const Secret s = map_secret(m, kPagesPer2M);
  ASSERT_EQ(s.mmap_err, 0);
  const std::uint64_t f0 = flushes(m);
  const auto splits0 = m.dmap().counters().level2_splits + m.dmap().counters().level3_splits;
  ASSERT_EQ(touch(m, s, 0), mm::VmFault::Major);
  EXPECT_EQ(flushes(m) - f0, 1u);  // one flush for the whole chunk
  const Pfn first = m.mm().pagemap(s.pid, s.addr);
  const Pfn chunk = first & ~(kPagesPer2M - 1);
  EXPECT_EQ(m.dmap().lookup(chunk).level, directmap::Level::Pmd2M);  // one range, no split
  EXPECT_FALSE(m.dmap().is_present(chunk));
  EXPECT_GE(first, m.phys().cma_area().start);
  EXPECT_LT(first, m.phys().cma_area().end);
  // The other 511 pages come from the same chunk with no flush and no split.
  for (std::uint64_t i = 1; i < kPagesPer2M; ++i) ASSERT_EQ(touch(m, s, i), mm::VmFault::Major);
  EXPECT_EQ(flushes(m) - f0, 1u);
  EXPECT_EQ(m.dmap().counters().level2_splits + m.dmap().counters().level3_splits, splits0);
  for (std::uint64_t i = 0; i < kPagesPer2M; ++i) {
    EXPECT_EQ(m.mm().pagemap(s.pid, s.addr + i * kPageSize) & ~(kPagesPer2M - 1), chunk);
  }
  EXPECT_EQ(counter(m, "chunks_taken"), 1u);
  EXPECT_SOUND(m);
}

TEST(SecretmemPmdPool, DepletedPmdPoolFailsTheFaultWithOom) {
  MachineConfig c = policy_config("secretmem-pmd-pool");
  c.policy_params.set("secretmem", 2 * MiB);  // one chunk
  Machine m(c);
  const Secret s = map_secret(m, kPagesPer2M + 1);
  ASSERT_EQ(s.mmap_err, 0);  // mmap does not look at the pool
  for (std::uint64_t i = 0; i < kPagesPer2M; ++i) ASSERT_EQ(touch(m, s, i), mm::VmFault::Major);
  EXPECT_GT(m.phys().free_pages(), 1000u);  // plenty of memory, but not in the pool
  EXPECT_EQ(touch(m, s, kPagesPer2M), mm::VmFault::Oom);
  EXPECT_EQ(counter(m, "pool_depleted_faults"), 1u);
  EXPECT_SOUND(m);
}

TEST(SecretmemPmdPool, SigbusVariantFailsTheFaultWithSigbus) {
  MachineConfig c = policy_config("secretmem-pmd-pool");
  c.policy_params.set("secretmem", 2 * MiB);
  c.policy_params.set("pool_fail", std::string("sigbus"));
  Machine m(c);
  const Secret s = map_secret(m, kPagesPer2M + 1);
  for (std::uint64_t i = 0; i < kPagesPer2M; ++i) ASSERT_EQ(touch(m, s, i), mm::VmFault::Major);
  EXPECT_EQ(touch(m, s, kPagesPer2M), mm::VmFault::SigBus);
  EXPECT_SOUND(m);
}

TEST(SecretmemPmdPool, FreedPagesGoBackToTheirFilesPoolStillUnmapped) {
  MachineConfig c = policy_config("secretmem-pmd-pool");
  c.policy_params.set("secretmem", 8 * MiB);
  Machine m(c);
  // A MAP_EXCLUSIVE mapping frees pages while its owner lives (munmap of a part).
  const mm::Pid pid = m.mm().spawn(0, true);
  const Result<std::uint64_t> a =
      m.mm().mmap(pid, 4 * kPageSize, mm::kPROT_READ | mm::kPROT_WRITE,
                  mm::kMAP_PRIVATE | mm::kMAP_ANONYMOUS | mm::kMAP_EXCLUSIVE, -1, 0);
  ASSERT_TRUE(a.ok()) << errno_name(a.err);
  const Pfn p = m.mm().pagemap(pid, a.value);
  ASSERT_NE(p, kNoPfn);
  EXPECT_EQ(m.policy().pooled_pages(), kPagesPer2M - 4);
  const std::uint64_t f0 = flushes(m);
  ASSERT_EQ(m.mm().munmap(pid, a.value, kPageSize), 0);
  EXPECT_EQ(m.policy().pooled_pages(), kPagesPer2M - 3);
  EXPECT_FALSE(m.dmap().is_present(p));
  EXPECT_EQ(m.phys().kind(p), phys::FrameKind::Unmapped);
  EXPECT_EQ(flushes(m), f0);
  EXPECT_EQ(counter(m, "chunks_released"), 0u);  // the owner still lives
  EXPECT_SOUND(m);
}

TEST(SecretmemPmdPool, EachFileTakesChunksForItsOwnPool) {
  MachineConfig c = policy_config("secretmem-pmd-pool");
  c.policy_params.set("secretmem", 8 * MiB);
  Machine m(c);
  const Secret a = map_secret(m, 2);
  const Secret b = map_secret(m, 2);
  for (std::uint64_t i = 0; i < 2; ++i) {
    ASSERT_EQ(touch(m, a, i), mm::VmFault::Major);
    ASSERT_EQ(touch(m, b, i), mm::VmFault::Major);
  }
  const Pfn chunk_a = m.mm().pagemap(a.pid, a.addr) & ~(kPagesPer2M - 1);
  const Pfn chunk_b = m.mm().pagemap(b.pid, b.addr) & ~(kPagesPer2M - 1);
  EXPECT_NE(chunk_a, chunk_b);  // the two files never share a chunk
  EXPECT_EQ(m.mm().pagemap(a.pid, a.addr + kPageSize) & ~(kPagesPer2M - 1), chunk_a);
  EXPECT_EQ(m.mm().pagemap(b.pid, b.addr + kPageSize) & ~(kPagesPer2M - 1), chunk_b);
  EXPECT_EQ(counter(m, "pools"), 2u);
  EXPECT_EQ(counter(m, "pool_chunks"), 2u);
  EXPECT_EQ(counter(m, "chunks_taken"), 2u);
  EXPECT_EQ(m.policy().pooled_pages(), 2 * (kPagesPer2M - 2));
  EXPECT_SOUND(m);
}

TEST(SecretmemPmdPool, ReleasingAFileReturnsItsChunksToCma) {
  MachineConfig c = policy_config("secretmem-pmd-pool");
  c.policy_params.set("secretmem", 8 * MiB);
  Machine m(c);
  const Secret a = map_secret(m, kPagesPer2M + 1);  // two chunks
  const Secret b = map_secret(m, 1);
  for (std::uint64_t i = 0; i <= kPagesPer2M; ++i) ASSERT_EQ(touch(m, a, i), mm::VmFault::Major);
  ASSERT_EQ(touch(m, b, 0), mm::VmFault::Major);
  const Pfn a0 = m.mm().pagemap(a.pid, a.addr) & ~(kPagesPer2M - 1);
  const Pfn a1 = m.mm().pagemap(a.pid, a.addr + kPagesPer2M * kPageSize) & ~(kPagesPer2M - 1);
  const Pfn b0 = m.mm().pagemap(b.pid, b.addr) & ~(kPagesPer2M - 1);
  ASSERT_NE(a0, a1);
  EXPECT_EQ(counter(m, "pool_chunks"), 3u);
  const std::uint64_t free0 = m.phys().free_pages() + m.phys().pcp_pages();
  EXPECT_EQ(m.mm().exit(a.pid), 0);  // the last reference: the file is evicted
  EXPECT_EQ(counter(m, "chunks_released"), 2u);
  EXPECT_EQ(counter(m, "pools"), 1u);
  EXPECT_EQ(counter(m, "pool_chunks"), 1u);
  for (const Pfn chunk : {a0, a1}) {
    EXPECT_TRUE(m.dmap().is_present(chunk));  // back in the direct map ...
    EXPECT_FALSE(phys::is_allocated_kind(m.phys().kind(chunk)));  // ... and free in CMA
  }
  EXPECT_EQ(m.phys().free_pages() + m.phys().pcp_pages() - free0, 2 * kPagesPer2M);
  EXPECT_FALSE(m.dmap().is_present(b0));  // the other file's pool is untouched
  EXPECT_EQ(m.policy().pooled_pages(), kPagesPer2M - 1);
  EXPECT_SOUND(m);
}

TEST(SecretmemPmdPool, OtherUsersGetAPoolPerOwnerToo) {
  MachineConfig c = policy_config("secretmem-pmd-pool");
  c.policy_params.set("secretmem", 8 * MiB);
  Machine m(c);
  const Secret s = map_secret(m, 1);
  ASSERT_EQ(touch(m, s, 0), mm::VmFault::Major);
  const Result<std::uint32_t> g =
      m.guest_memfd().create(4 * kPageSize, users::kGUEST_MEMFD_FLAG_NO_DIRECT_MAP);
  ASSERT_TRUE(g.ok());
  ASSERT_EQ(m.guest_memfd().fault(g.value, 0, 0), mm::VmFault::Major);
  const mm::Pid pid = m.mm().spawn(0, true);
  const Result<std::uint64_t> x = m.mm().mmap(pid, kPageSize, mm::kPROT_READ | mm::kPROT_WRITE,
                                              mm::kMAP_PRIVATE | mm::kMAP_ANONYMOUS | mm::kMAP_EXCLUSIVE, -1, 0);
  ASSERT_TRUE(x.ok());
  const Pfn ps = m.mm().pagemap(s.pid, s.addr) & ~(kPagesPer2M - 1);
  const Pfn pg = m.guest_memfd().pfn(g.value, 0) & ~(kPagesPer2M - 1);
  const Pfn px = m.mm().pagemap(pid, x.value) & ~(kPagesPer2M - 1);
  EXPECT_NE(ps, pg);
  EXPECT_NE(ps, px);
  EXPECT_NE(pg, px);
  EXPECT_EQ(counter(m, "pools"), 3u);
  ASSERT_EQ(m.guest_memfd().release(g.value, 0), 0);
  EXPECT_EQ(counter(m, "pools"), 2u);
  EXPECT_TRUE(m.dmap().is_present(pg));
  EXPECT_SOUND(m);
}

// --- secretmem-pool-reserve ---

TEST(SecretmemPoolReserve, ReservePolicyFailsMmapNotTheFault) {
  MachineConfig c = policy_config("secretmem-pool-reserve");
  c.policy_params.set("secretmem", 4 * MiB);  // 1024 pages
  Machine m(c);
  const Secret a = map_secret(m, 2 * kPagesPer2M);
  ASSERT_EQ(a.mmap_err, 0);
  const Secret b = map_secret(m, 1);
  EXPECT_EQ(b.mmap_err, -ENOMEM);  // the reservation cannot be met: mmap fails cleanly
  // The rest of memory is exhausted; no fault of the reserved mapping fails.
  std::vector<Pfn> hog;
  take_pages(m, phys::GFP_KERNEL, 0, hog);
  for (std::uint64_t i = 0; i < 2 * kPagesPer2M; ++i) {
    ASSERT_EQ(touch(m, a, i), mm::VmFault::Major) << "page " << i;
  }
  EXPECT_EQ(counter(m, "unreserved_faults"), 0u);
  EXPECT_EQ(counter(m, "mmap_enomem"), 1u);
  EXPECT_SOUND(m);
}

TEST(SecretmemPoolReserve, UnmapReturnsTheReservation) {
  MachineConfig c = policy_config("secretmem-pool-reserve");
  c.policy_params.set("secretmem", 2 * MiB);
  Machine m(c);
  const Secret a = map_secret(m, kPagesPer2M);
  ASSERT_EQ(a.mmap_err, 0);
  EXPECT_EQ(counter(m, "reserved_pages"), kPagesPer2M);
  EXPECT_EQ(m.mm().exit(a.pid), 0);
  EXPECT_EQ(counter(m, "reserved_pages"), 0u);
  const Secret b = map_secret(m, kPagesPer2M);
  EXPECT_EQ(b.mmap_err, 0);
  EXPECT_SOUND(m);
}

// --- secretmem-pool-fallback ---

TEST(SecretmemPoolFallback, GrowsThePoolWithOne2MAllocationAndOneFlush) {
  Machine m(policy_config("secretmem-pool-fallback"));
  const Secret s = map_secret(m, 8);
  const std::uint64_t f0 = flushes(m);
  for (std::uint64_t i = 0; i < 8; ++i) ASSERT_EQ(touch(m, s, i), mm::VmFault::Major);
  EXPECT_EQ(flushes(m) - f0, 1u);
  EXPECT_EQ(counter(m, "chunks_taken"), 1u);
  EXPECT_EQ(counter(m, "order0_fallbacks"), 0u);
  EXPECT_EQ(m.policy().pooled_pages(), kPagesPer2M - 8);
  EXPECT_SOUND(m);
}

TEST(SecretmemPoolFallback, FallbackPolicyUsesOrder0WhenNo2MBlockIsFree) {
  Machine m(policy_config("secretmem-pool-fallback"));
  leave_only_order0(m);
  const Secret s = map_secret(m, 1);
  ASSERT_EQ(touch(m, s, 0), mm::VmFault::Major);
  EXPECT_EQ(counter(m, "order0_fallbacks"), 1u);
  EXPECT_EQ(counter(m, "chunks_taken"), 0u);
  const Pfn p = m.mm().pagemap(s.pid, s.addr);
  EXPECT_EQ(p % 2, 0u);  // one of the order-0 pages left free
  EXPECT_EQ(m.dmap().lookup(p).level, directmap::Level::Pte4K);  // split as merged secretmem does
  EXPECT_SOUND(m);
  EXPECT_EQ(m.mm().exit(s.pid), 0);
  EXPECT_TRUE(m.dmap().is_present(p));
  EXPECT_SOUND(m);
}

// --- pte-mapped-cache ---

TEST(PteMappedCache, RefillsWithA2MBlockSplitOnceAndPinnedTo4K) {
  Machine m(policy_config("pte-mapped-cache"));
  const Secret s = map_secret(m, 1);
  ASSERT_EQ(touch(m, s, 0), mm::VmFault::Major);
  EXPECT_EQ(counter(m, "refills_2m"), 1u);
  const Pfn p = m.mm().pagemap(s.pid, s.addr);
  const Pfn block = p & ~(kPagesPer2M - 1);
  EXPECT_EQ(m.dmap().lookup(block).level, directmap::Level::Pte4K);
  EXPECT_TRUE(m.dmap().is_present(block == p ? block + 1 : block));  // cached pages stay mapped
  EXPECT_EQ(m.policy().pooled_pages(), kPagesPer2M - 1);
  // The next secret page needs no split: one single-page flush.
  const Secret t = map_secret(m, 1);
  const auto splits = m.dmap().counters().level2_splits;
  const std::uint64_t range0 = m.flushes().counters().range_flushes;
  ASSERT_EQ(touch(m, t, 0), mm::VmFault::Major);
  EXPECT_EQ(m.dmap().counters().level2_splits, splits);
  EXPECT_EQ(m.flushes().counters().range_flushes - range0, 1u);
  EXPECT_SOUND(m);
}

// The cache's pages went through set_direct_map_invalid_noflush() and back
// through set_direct_map_default_noflush() (__set_pages_p(): PRESENT|RW), so
// they lack _PAGE_GLOBAL and collapse_pmd_page() refuses the block the policy
// gives back; in a kernel whose __set_pages_p() restored G (the -gd collapse
// modes) the block collapses.
TEST(PteMappedCache, PteMappedCacheRestoresA2MLeafAfterCompactionOnlyWhenGlobalIsRestored) {
  for (const CollapseMode mode : {CollapseMode::RoxOnly, CollapseMode::OnRestoreGd}) {
    SCOPED_TRACE(collapse_mode_name(mode));
    MachineConfig c = policy_config("pte-mapped-cache");
    c.collapse = mode;
    Machine m(c);
    const Secret s = map_secret(m, 3);
    for (std::uint64_t i = 0; i < 3; ++i) touch(m, s, i);
    const Pfn block = m.mm().pagemap(s.pid, s.addr) & ~(kPagesPer2M - 1);
    EXPECT_EQ(m.mm().exit(s.pid), 0);
    EXPECT_EQ(m.policy().pooled_pages(), kPagesPer2M);  // the whole block is cached and free
    const auto collapses = m.dmap().counters().level2_collapses;
    const auto refused = m.dmap().counters().refused_2m.global;
    EXPECT_EQ(m.policy().shrink(kPagesPer2M, 0), kPagesPer2M);
    EXPECT_TRUE(m.dmap().is_present(block));
    if (mode == CollapseMode::OnRestoreGd) {
      EXPECT_EQ(m.dmap().lookup(block).level, directmap::Level::Pmd2M);
      EXPECT_EQ(m.dmap().counters().level2_collapses - collapses, 1u);
    } else {
      EXPECT_EQ(m.dmap().lookup(block).level, directmap::Level::Pte4K);
      EXPECT_EQ(m.dmap().counters().level2_collapses - collapses, 0u);
      EXPECT_EQ(m.dmap().counters().refused_2m.global - refused, 1u);
    }
    EXPECT_EQ(counter(m, "blocks_restored_2m"), 1u);
    EXPECT_EQ(m.policy().pooled_pages(), 0u);
    EXPECT_SOUND(m);
  }
}

TEST(PteMappedCache, MarkingSendsAFreedNeighbourToTheCache) {
  Machine m(policy_config("pte-mapped-cache"));
  std::vector<Pfn> held = leave_only_order0(m);
  const Secret s = map_secret(m, 1);
  ASSERT_EQ(touch(m, s, 0), mm::VmFault::Major);
  EXPECT_EQ(counter(m, "refills_order0"), 1u);
  const Pfn p = m.mm().pagemap(s.pid, s.addr);
  const Pfn neighbour = held_in_pageblock(held, p);
  ASSERT_NE(neighbour, kNoPfn);
  EXPECT_EQ(m.dmap().lookup(neighbour).level, directmap::Level::Pte4K);  // the pageblock is split
  const std::uint64_t free0 = m.phys().free_pages() + m.phys().pcp_pages();
  m.free_pages(neighbour, 0, 0);
  EXPECT_EQ(counter(m, "pages_joined_on_free"), 1u);
  EXPECT_EQ(m.policy().pooled_pages(), 1u);
  EXPECT_EQ(m.phys().free_pages() + m.phys().pcp_pages(), free0);  // the buddy did not get it
  // A page of an unmarked pageblock goes to the buddy as usual.
  const Pfn far = held.front();
  ASSERT_NE(far & ~(kPagesPer2M - 1), p & ~(kPagesPer2M - 1));
  m.free_pages(far, 0, 0);
  EXPECT_EQ(m.policy().pooled_pages(), 1u);
  EXPECT_SOUND(m);
}

// --- migrate-unmapped ---

TEST(MigrateUnmapped, MigrateUnmappedStealsAWholePageblock) {
  Machine m(policy_config("migrate-unmapped"));
  const Secret s = map_secret(m, 2);
  ASSERT_EQ(touch(m, s, 0), mm::VmFault::Major);
  EXPECT_EQ(counter(m, "whole_pageblocks_stolen"), 1u);
  const Pfn p = m.mm().pagemap(s.pid, s.addr);
  const Pfn block = p & ~(kPageblockNrPages - 1);
  for (Pfn q = block; q < block + kPageblockNrPages; ++q) ASSERT_FALSE(m.dmap().is_present(q));
  EXPECT_EQ(m.dmap().lookup(block).level, directmap::Level::Pte4K);  // remapped with PTEs
  EXPECT_EQ(m.policy().pooled_pages(), kPageblockNrPages - 1);
  const std::uint64_t f0 = flushes(m);
  ASSERT_EQ(touch(m, s, 1), mm::VmFault::Major);
  EXPECT_EQ(flushes(m), f0);  // already unmapped: no flush
  EXPECT_EQ(m.mm().pagemap(s.pid, s.addr + kPageSize) & ~(kPageblockNrPages - 1), block);
  EXPECT_SOUND(m);
}

TEST(MigrateUnmapped, PagesOfTheStolenPageblockJoinTheUnmappedListsWhenFreed) {
  Machine m(policy_config("migrate-unmapped"));
  std::vector<Pfn> held = leave_only_order0(m);
  const Secret s = map_secret(m, 1);
  ASSERT_EQ(touch(m, s, 0), mm::VmFault::Major);
  EXPECT_EQ(counter(m, "partial_steals"), 1u);
  const Pfn p = m.mm().pagemap(s.pid, s.addr);
  const Pfn neighbour = held_in_pageblock(held, p);
  ASSERT_NE(neighbour, kNoPfn);
  m.free_pages(neighbour, 0, 0);
  EXPECT_FALSE(m.dmap().is_present(neighbour));
  EXPECT_EQ(counter(m, "pages_joined_on_free"), 1u);
  EXPECT_EQ(m.policy().pooled_pages(), 1u);
  EXPECT_SOUND(m);
}

// --- unmapped-alloc ---

TEST(UnmappedAlloc, RefillsWithA2MPageAsOneRangeWithoutASplit) {
  Machine m(policy_config("unmapped-alloc"));
  const auto splits = m.dmap().counters().level2_splits;
  const std::uint64_t f0 = flushes(m);
  const Secret s = map_secret(m, 4);
  for (std::uint64_t i = 0; i < 4; ++i) ASSERT_EQ(touch(m, s, i), mm::VmFault::Major);
  EXPECT_EQ(counter(m, "refills_2m"), 1u);
  EXPECT_EQ(flushes(m) - f0, 1u);
  EXPECT_EQ(m.dmap().counters().level2_splits, splits);
  EXPECT_EQ(m.policy().pooled_pages(), kPagesPer2M - 4);
  EXPECT_SOUND(m);
}

TEST(UnmappedAlloc, RefillsWithTheHighestOrderAvailableWhenNo2MPageIsFree) {
  Machine m(policy_config("unmapped-alloc"));
  leave_only_order0(m);
  const Secret s = map_secret(m, 1);
  ASSERT_EQ(touch(m, s, 0), mm::VmFault::Major);
  EXPECT_EQ(counter(m, "refills_2m"), 0u);
  EXPECT_EQ(counter(m, "refills_lower_order"), 1u);
  EXPECT_SOUND(m);
}

TEST(UnmappedAlloc, ShrinkerMapsCachedPagesBack) {
  Machine m(policy_config("unmapped-alloc"));
  const Secret s = map_secret(m, 1);
  touch(m, s, 0);
  const Pfn p = m.mm().pagemap(s.pid, s.addr);
  EXPECT_EQ(m.mm().exit(s.pid), 0);
  EXPECT_FALSE(m.dmap().is_present(p));  // freed into the cache, still unmapped
  EXPECT_EQ(m.policy().shrink(kPagesPer2M, 0), kPagesPer2M);
  EXPECT_TRUE(m.dmap().is_present(p));
  EXPECT_EQ(m.policy().pooled_pages(), 0u);
  EXPECT_SOUND(m);
}

// Takes every free page the allocator hands out for `gfp`, from each CPU's
// lists and the buddy; returns them.
std::vector<Pfn> take_free_pages(Machine& m, phys::Gfp gfp) {
  std::vector<Pfn> held;
  for (CpuId cpu = 0; cpu < m.config().cpus; ++cpu) take_pages(m, gfp, cpu, held);
  return held;
}

// A cached block under 2 MiB lies in a 2 MiB leaf the refill removed whole:
// mapping it back splits that leaf, and with no page left for the page table
// the block stays cached and unmapped (the RFC would free it out of the
// direct map). Once a page is free, the same shrink maps and frees it all.
TEST(UnmappedAlloc, ShrinkerKeepsABlockItCannotMapBack) {
  Machine m(policy_config("unmapped-alloc"));
  const Secret s = map_secret(m, 1);
  ASSERT_EQ(touch(m, s, 0), mm::VmFault::Major);
  ASSERT_EQ(m.policy().pooled_pages(), kPagesPer2M - 1);  // orders 0..8 of one leaf
  const Pfn p = m.mm().pagemap(s.pid, s.addr);
  ASSERT_EQ(m.dmap().lookup(p).level, directmap::Level::Pmd2M);
  std::vector<Pfn> held = take_free_pages(m, phys::__GFP_NOWARN | phys::__GFP_MEMALLOC);
  ASSERT_FALSE(held.empty());
  EXPECT_EQ(m.policy().shrink(kPagesPer2M, 0), 0u);
  EXPECT_EQ(counter(m, "shrink_map_failures"), kPageblockOrder);  // one per order 0..8
  EXPECT_EQ(m.policy().pooled_pages(), kPagesPer2M - 1);
  EXPECT_EQ(m.dmap().lookup(p).level, directmap::Level::Pmd2M);
  EXPECT_SOUND(m);
  m.phys().free_pages(held.back(), 0, 0);
  held.pop_back();
  EXPECT_EQ(m.policy().shrink(kPagesPer2M, 0), kPagesPer2M - 1);
  EXPECT_EQ(counter(m, "shrink_map_failures"), kPageblockOrder);
  EXPECT_EQ(m.policy().pooled_pages(), 0u);
  EXPECT_EQ(m.dmap().lookup(p).level, directmap::Level::Pte4K);
  EXPECT_SOUND(m);
  for (const Pfn h : held) m.phys().free_pages(h, 0, 0);
  EXPECT_SOUND(m);
}

// Reclaim runs with PF_MEMALLOC: the page table the shrinker's split needs
// comes from below the min watermark, where an ordinary GFP_KERNEL
// allocation stops.
TEST(UnmappedAlloc, ShrinkerSplitsWithTheReservesWhileReclaiming) {
  Machine m(policy_config("unmapped-alloc"));
  const Secret s = map_secret(m, 1);
  ASSERT_EQ(touch(m, s, 0), mm::VmFault::Major);
  const std::vector<Pfn> held = take_free_pages(m, phys::__GFP_NOWARN);
  ASSERT_FALSE(held.empty());
  ASSERT_FALSE(m.phys().alloc_pages(phys::__GFP_NOWARN, 0, 0, phys::FrameKind::Kernel).ok());
  const unsigned top = m.phys().zone_of(m.phys().nr_frames() - 1);
  EXPECT_EQ(m.reclaim(top, kPagesPer2M, 0), kPagesPer2M - 1);
  EXPECT_EQ(counter(m, "shrink_map_failures"), 0u);
  EXPECT_EQ(m.policy().pooled_pages(), 0u);
  EXPECT_SOUND(m);
}

// MIGRATE_UNMAPPED's steal remaps the pageblock with PTEs first; when the
// split finds no page for its table, the pageblock stays an ordinary one and
// the allocation fails, nothing of it unmapped.
TEST(MigrateUnmapped, AStealThatCannotSplitLeavesThePageblockOrdinary) {
  Machine m(policy_config("migrate-unmapped"));
  // Down to the min watermark, then one whole pageblock mapped by a 2 MiB
  // leaf given back: the steal takes it, and the table's allocation finds the
  // zone under its watermark again.
  std::vector<Pfn> held = take_free_pages(m, phys::__GFP_NOWARN);
  const std::set<Pfn> mine(held.begin(), held.end());
  Pfn block = kNoPfn;
  for (Pfn b = 0; b + kPageblockNrPages <= m.phys().nr_frames() && block == kNoPfn; b += kPageblockNrPages) {
    bool all = m.dmap().lookup(b).level == directmap::Level::Pmd2M;
    for (Pfn p = b; p < b + kPageblockNrPages && all; ++p) all = mine.count(p) != 0;
    if (all) block = b;
  }
  ASSERT_NE(block, kNoPfn);
  for (Pfn p = block; p < block + kPageblockNrPages; ++p) m.phys().free_pages(p, 0, 0);
  m.phys().drain_all_pages();
  const Result<Pfn> r = m.policy().alloc_secret_page(0, policy::Owner{});
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.err, -ENOMEM);
  EXPECT_EQ(counter(m, "split_failures"), 1u);
  EXPECT_EQ(counter(m, "unmapped_pageblocks"), 0u);
  EXPECT_TRUE(m.dmap().is_present(block));
  EXPECT_EQ(m.dmap().lookup(block).level, directmap::Level::Pmd2M);
  EXPECT_SOUND(m);
  for (const Pfn h : held) {
    if (h < block || h >= block + kPageblockNrPages) m.phys().free_pages(h, 0, 0);
  }
  const Result<Pfn> again = m.policy().alloc_secret_page(0, policy::Owner{});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(counter(m, "unmapped_pageblocks"), 1u);
  EXPECT_EQ(m.dmap().lookup(again.value).level, directmap::Level::Pte4K);
  m.policy().free_secret_page(again.value, 0, policy::Owner{});
  EXPECT_SOUND(m);
}

// --- freetype-unmapped ---

TEST(FreetypeUnmapped, UnmapsAWholePageblockAsOneLeafWithOneFlush) {
  Machine m(policy_config("freetype-unmapped"));
  const auto splits = m.dmap().counters().level2_splits;
  const std::uint64_t f0 = flushes(m);
  const Secret s = map_secret(m, 16);
  for (std::uint64_t i = 0; i < 16; ++i) ASSERT_EQ(touch(m, s, i), mm::VmFault::Major);
  const Pfn block = m.mm().pagemap(s.pid, s.addr) & ~(kPageblockNrPages - 1);
  EXPECT_EQ(m.dmap().lookup(block).level, directmap::Level::Pmd2M);
  EXPECT_FALSE(m.dmap().is_present(block));
  EXPECT_EQ(m.dmap().counters().level2_splits, splits);
  EXPECT_EQ(flushes(m) - f0, 1u);
  EXPECT_EQ(counter(m, "flagged_pageblocks"), 1u);
  EXPECT_SOUND(m);
}

TEST(FreetypeUnmapped, PagesFreedIntoAFlaggedPageblockAreUnmappedInOneBatchWithOneFlush) {
  Machine m(policy_config("freetype-unmapped"));
  std::vector<Pfn> held = leave_only_order0(m);
  const Secret s = map_secret(m, 2);
  ASSERT_EQ(touch(m, s, 0), mm::VmFault::Major);
  EXPECT_EQ(counter(m, "refills_lower_order"), 1u);
  const Pfn p = m.mm().pagemap(s.pid, s.addr);
  const Pfn block = p & ~(kPageblockNrPages - 1);
  std::uint64_t freed = 0;
  for (const Pfn q : held) {
    if ((q & ~(kPageblockNrPages - 1)) == block) {
      m.free_pages(q, 0, 0);
      ++freed;
    }
  }
  ASSERT_GT(freed, 8u);
  EXPECT_EQ(counter(m, "pages_joined_on_free"), freed);
  const std::uint64_t f0 = flushes(m);
  ASSERT_EQ(touch(m, s, 1), mm::VmFault::Major);
  EXPECT_EQ(flushes(m) - f0, 1u);  // one flush for the whole batch
  EXPECT_EQ(counter(m, "pages_unmapped_in_batches"), freed);
  EXPECT_EQ(m.policy().pooled_pages(), freed - 1);
  EXPECT_SOUND(m);
}

// --- write-protected page tables ---

TEST(WpPageTables, FromTheBuddyTheyAreMadeReadOnlyWithASplitAndAFlush) {
  Machine m(policy_config("upstream"));
  const auto splits = m.dmap().counters().level2_splits;
  const Result<Pfn> t = m.policy().alloc_wp_table(0);
  ASSERT_TRUE(t.ok());
  const directmap::Lookup l = m.dmap().lookup(t.value);
  EXPECT_TRUE(l.present());
  EXPECT_EQ(l.flags & directmap::_PAGE_RW, 0);
  EXPECT_EQ(l.level, directmap::Level::Pte4K);
  EXPECT_EQ(m.dmap().counters().level2_splits - splits, 1u);
  m.policy().free_wp_table(t.value, 0);
  EXPECT_NE(m.dmap().lookup(t.value).flags & directmap::_PAGE_RW, 0);
  EXPECT_SOUND(m);
}

TEST(WpPageTables, PteMappedCacheServesThemWithoutASplit) {
  Machine m(policy_config("pte-mapped-cache"));
  const Result<Pfn> first = m.policy().alloc_wp_table(0);  // refills the cache: one split
  ASSERT_TRUE(first.ok());
  const auto splits = m.dmap().counters().level2_splits + m.dmap().counters().level3_splits;
  const std::uint64_t range0 = m.flushes().counters().range_flushes;
  for (int i = 0; i < 16; ++i) {
    const Result<Pfn> t = m.policy().alloc_wp_table(0);
    ASSERT_TRUE(t.ok());
    EXPECT_EQ(m.dmap().lookup(t.value).flags & directmap::_PAGE_RW, 0);
  }
  EXPECT_EQ(m.dmap().counters().level2_splits + m.dmap().counters().level3_splits, splits);
  EXPECT_EQ(m.flushes().counters().range_flushes - range0, 16u);  // one page each
  m.policy().free_wp_table(first.value, 0);
  EXPECT_EQ(m.policy().pooled_pages(), kPagesPer2M - 16);
  EXPECT_SOUND(m);
}

// --- the registry and the property ---

// A policy needs no Machine: the parts it works with, built here, and a page
// source of the test's own that sees every page given back through it.
struct StandaloneParts final : directmap::PageTableAllocator, phys::PageSource {
  explicit StandaloneParts(const MachineConfig& c)
      : mem(c.phys_config()), dm(ram_of(mem), c.direct_gbpages, *this, log) {
    dm.set_running();
  }
  static std::vector<directmap::MappedRange> ram_of(const phys::PhysMem& mem) {
    std::vector<directmap::MappedRange> ram;
    for (const phys::PfnRange& r : mem.ram()) ram.push_back({r.start, r.end});
    return ram;
  }
  Result<Pfn> alloc_table_page(CpuId cpu) override {
    return mem.alloc_pages(phys::GFP_KERNEL, 0, cpu, phys::FrameKind::PageTable);
  }
  void free_table_page(Pfn pfn, CpuId cpu) override { mem.free_pages(pfn, 0, cpu); }
  Result<Pfn> alloc_pages(phys::Gfp gfp, unsigned order, CpuId cpu, phys::FrameKind kind) override {
    return mem.alloc_pages(gfp, order, cpu, kind);
  }
  void free_pages(Pfn pfn, unsigned order, CpuId cpu) override {
    freed.push_back(pfn);
    mem.free_pages(pfn, order, cpu);
  }
  phys::PhysMem mem;
  directmap::FlushLog log;
  directmap::DirectMap dm;
  std::vector<Pfn> freed;
};

TEST(Policies, APolicyRunsOnPartsAndAPageSourceOfItsOwn) {
  StandaloneParts parts(policy_config("upstream"));
  const std::unique_ptr<policy::Policy> p = policy::make_policy("upstream");
  p->bind({parts.mem, parts.dm, parts.log, parts});

  const Result<Pfn> page = p->alloc_secret_page(1, {policy::OwnerKind::Secretmem, 0});
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(parts.mem.kind(page.value), phys::FrameKind::Secret);
  EXPECT_FALSE(parts.dm.is_present(page.value));
  EXPECT_EQ(parts.log.counters().range_flushes, 1u);
  p->free_secret_page(page.value, 1, {policy::OwnerKind::Secretmem, 0});
  EXPECT_TRUE(parts.dm.is_present(page.value));
  EXPECT_TRUE(parts.freed.empty());  // upstream frees a secret page to the buddy itself

  // A write-protected page table goes back through the source, where a
  // machine would offer it to the policy's on_free().
  const Result<Pfn> table = p->alloc_wp_table(0);
  ASSERT_TRUE(table.ok());
  EXPECT_EQ(parts.dm.lookup(table.value).flags & directmap::_PAGE_RW, 0);
  p->free_wp_table(table.value, 0);
  EXPECT_NE(parts.dm.lookup(table.value).flags & directmap::_PAGE_RW, 0);
  EXPECT_EQ(parts.freed, std::vector<Pfn>{table.value});
  EXPECT_EQ(join(p->check()), "");
  EXPECT_EQ(join(parts.mem.check()), "");
  EXPECT_EQ(join(parts.dm.check()), "");
}

TEST(Policies, AllEightAreRegistered) {
  const std::vector<std::string> want{"freetype-unmapped",      "migrate-unmapped",
                                      "pte-mapped-cache",       "secretmem-pmd-pool",
                                      "secretmem-pool-fallback", "secretmem-pool-reserve",
                                      "unmapped-alloc",         "upstream"};
  EXPECT_EQ(policy::Registry::builtin().names(), want);
}

RC_GTEST_PROP(PolicyProperty, RandomWorkloadsKeepEveryInvariantUnderEveryPolicy, ()) {
  const auto names = policy::Registry::builtin().names();
  const std::string name = *rc::gen::elementOf(names);
  const auto mode = *rc::gen::element(CollapseMode::None, CollapseMode::RoxOnly, CollapseMode::OnRestore,
                                      CollapseMode::Scanner, CollapseMode::OnRestoreGd, CollapseMode::ScannerGd);
  MachineConfig c = policy_config(name, *rc::gen::element(128 * MiB, 256 * MiB));
  c.collapse = mode;
  c.scan_rate = *rc::gen::inRange(1u, 64u);
  c.policy_params.set("secretmem", *rc::gen::element(2 * MiB, 4 * MiB, 16 * MiB));
  c.policy_params.set("pool_fail", std::string(*rc::gen::arbitrary<bool>() ? "sigbus" : "oom"));
  Machine m(c);
  workload::WorkloadConfig wc;
  wc.seed = *rc::gen::arbitrary<std::uint64_t>();
  wc.events = *rc::gen::inRange<std::uint64_t>(200, 3000);
  wc.fill = *rc::gen::element(0.0, 0.5, 0.9);
  wc.secret_share = *rc::gen::element(0.2, 0.4, 0.6);
  wc.kernel_share = 0.2;
  wc.wp_page_tables = *rc::gen::arbitrary<bool>();
  // The other users of unmapped pages, each on or off.
  wc.map_exclusive_share = *rc::gen::element(0.0, 0.05);
  wc.rox_share = *rc::gen::element(0.0, 0.05);
  wc.guest_share = *rc::gen::element(0.0, 0.05);
  wc.guests = *rc::gen::inRange(1u, 4u);
  wc.guest_pages = *rc::gen::inRange<std::uint64_t>(16, 4096);
  wc.min_secret_file_pages = *rc::gen::inRange<std::uint64_t>(1, 16);
  wc.max_secret_file_pages = wc.min_secret_file_pages + *rc::gen::inRange<std::uint64_t>(0, 64);
  wc.secret_hold_turns = *rc::gen::element(0.0, 4.0, 32.0);
  workload::SyntheticWorkload w(m, wc);
  std::uint64_t next = 0;
  bool sound = true;
  std::string why;
  w.run([&](std::uint64_t events) {
    if (!sound || events < next) return;
    next = events + 250;
    const auto v = m.check();
    if (!v.empty()) {
      sound = false;
      why = join(v);
    }
  });
  if (!sound) RC_FAIL(why);
  const auto v = m.check();
  if (!v.empty()) RC_FAIL(join(v));
  // Every page the policy hands out is accounted: no page is lost.
  RC_ASSERT(m.phys().pages_of_kind(phys::FrameKind::Secret) ==
            m.mm().secret_pages() + m.mm().exclusive_pages() + m.guest_memfd().unmapped_pages());
}

}  // namespace
}  // namespace exmem::model

namespace exmem::model {
namespace {

// The pools' pieces for 2 MiB folios: a pageblock put back whole serves
// pages in the order 512 put()s would (so the pools behave as before), a
// chunk taken whole leaves the pool's free count and comes back whole, and
// the unmapped buddy cache hands out an aligned order-9 block (expand()).
TEST(PolicyPools, WholeBlocksBehaveAsTheirPagesWould) {
  policy::BlockLists whole;
  policy::BlockLists paged;
  const Pfn block = 7 * kPageblockNrPages;
  whole.put_block(block);
  for (Pfn p = block; p < block + kPageblockNrPages; ++p) paged.put(p);
  paged.put(3 * kPageblockNrPages + 5);
  whole.put(3 * kPageblockNrPages + 5);
  EXPECT_EQ(whole.whole_block(), block);
  EXPECT_EQ(whole.in_block(block), kPageblockNrPages);
  EXPECT_EQ(whole.free_pages(), paged.free_pages());
  while (!paged.empty()) ASSERT_EQ(whole.take(), paged.take());
  EXPECT_TRUE(whole.empty());
  whole.put_block(block);
  EXPECT_EQ(whole.take_block(block).size(), kPageblockNrPages);
  EXPECT_TRUE(whole.empty());
  EXPECT_EQ(whole.whole_block(), kNoPfn);

  policy::ChunkPool pool;
  pool.add(0);
  pool.add(kPagesPer2M);
  EXPECT_NE(pool.take(), kNoPfn);  // the first chunk is no longer whole
  EXPECT_EQ(pool.take_whole(), kPagesPer2M);
  EXPECT_EQ(pool.free_pages(), kPagesPer2M - 1);
  EXPECT_EQ(pool.take_whole(), kNoPfn);
  pool.put_whole(kPagesPer2M);
  EXPECT_EQ(pool.free_pages(), 2 * kPagesPer2M - 1);

  policy::UnmappedBuddy cache;
  cache.add(0, 0);
  EXPECT_EQ(cache.take_block(kPageblockOrder), kNoPfn);
  cache.add(2 * kPagesPer2M, kPageblockOrder);
  EXPECT_EQ(cache.take_block(kPageblockOrder), 2 * kPagesPer2M);
  EXPECT_EQ(cache.free_pages(), 1u);
}

// The chunk pool keeps its wholly free chunks as a set (trimming reads it on
// every free) instead of scanning every chunk: after each step of a random mix
// of page and folio takes and puts, additions and removals, wholly_free() and
// wholly_free_from() name exactly the chunks whose 512 pages are all free.
TEST(PolicyPools, TheWhollyFreeChunksAreExactlyThoseWithEveryPageFree) {
  constexpr Pfn kChunks = 8;
  policy::ChunkPool pool;
  std::map<Pfn, std::vector<Pfn>> taken;  // chunk in the pool -> its pages handed out
  std::set<Pfn> folios;                   // chunks handed out whole
  std::mt19937_64 rng(17);
  for (int step = 0; step < 20000; ++step) {
    const Pfn chunk = static_cast<Pfn>(rng() % kChunks) * kPagesPer2M;
    const bool in_pool = taken.count(chunk) != 0;
    switch (rng() % 6) {
      case 0:  // a chunk joins the pool, or a wholly free one leaves it
        if (!in_pool) {
          pool.add(chunk);
          taken[chunk];
        } else if (taken[chunk].empty() && folios.count(chunk) == 0) {
          pool.remove(chunk);
          taken.erase(chunk);
        }
        break;
      case 1:
      case 2: {  // a page handed out (from the lowest chunk with free pages)
        const Pfn p = pool.take();
        if (p == kNoPfn) break;
        taken.at(p & ~(kPagesPer2M - 1)).push_back(p);
        break;
      }
      case 3: {  // a page of this chunk back
        if (!in_pool || taken[chunk].empty()) break;
        std::vector<Pfn>& t = taken[chunk];
        const std::size_t i = rng() % t.size();
        const Pfn start = pool.put(t[i]);
        t.erase(t.begin() + static_cast<std::ptrdiff_t>(i));
        EXPECT_EQ(start, t.empty() && folios.count(chunk) == 0 ? chunk : kNoPfn);
        break;
      }
      case 4: {  // a 2 MiB folio
        const Pfn c = pool.take_whole();
        if (c != kNoPfn) folios.insert(c);
        break;
      }
      default:  // a folio back
        if (!folios.empty()) {
          const Pfn c = *std::next(folios.begin(), static_cast<std::ptrdiff_t>(rng() % folios.size()));
          pool.put_whole(c);
          folios.erase(c);
        }
        break;
    }
    std::vector<Pfn> expected;
    for (const auto& [c, t] : taken) {
      if (t.empty() && folios.count(c) == 0) expected.push_back(c);
    }
    ASSERT_EQ(pool.wholly_free(), expected) << "step " << step;
    const Pfn from = static_cast<Pfn>(rng() % (kChunks + 1)) * kPagesPer2M;
    const auto next = std::lower_bound(expected.begin(), expected.end(), from);
    ASSERT_EQ(pool.wholly_free_from(from), next == expected.end() ? kNoPfn : *next) << "step " << step;
  }
}

}  // namespace
}  // namespace exmem::model
