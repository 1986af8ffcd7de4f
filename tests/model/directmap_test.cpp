// Tests of directmap/: boot mapping, CPA splits and in-place changes,
// collapse as in 6.15, counters, and the flush requests.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include "helpers.hpp"
#include "model/machine.hpp"

namespace exmem::model {
namespace {

using directmap::FlushReason;
using directmap::Level;
using testing::join;
using testing::small_config;

constexpr Pfn pfn_at(std::uint64_t bytes) { return bytes_to_pfn(bytes); }

std::unique_ptr<Machine> machine(std::uint64_t ram, bool gbpages, std::size_t flush_log = 0) {
  MachineConfig c = small_config(ram, gbpages);
  c.flush_log_limit = flush_log;
  return std::make_unique<Machine>(c);
}

TEST(DirectMapBoot, MapsRamWithTheLargestLeavesAndTheIsaRangeWith4K) {
  auto m = machine(8 * GiB, true);
  const auto& c = m->dmap().counters();
  // [0, 3 GiB): the first GiB holds the 4K-mapped ISA range, so 2M leaves;
  // then 1G leaves; the PCI hole is not mapped; [4 GiB, 9 GiB) is 1G leaves.
  EXPECT_EQ(c.direct_map_4k_kb(), 2048u);
  EXPECT_EQ(c.direct_map_2m_kb(), 1 * 1024 * 1024u - 2048u);
  EXPECT_EQ(c.direct_map_1g_kb(), 7u * 1024 * 1024);
  EXPECT_EQ(c.direct_map_4k_kb() + c.direct_map_2m_kb() + c.direct_map_1g_kb(),
            m->phys().total_ram_pages() * 4);
  EXPECT_EQ(m->dmap().lookup(pfn_at(3 * GiB + 5 * MiB)).level, Level::None);
  EXPECT_EQ(m->dmap().lookup(pfn_at(5 * GiB)).level, Level::Pud1G);
  EXPECT_EQ(m->dmap().lookup(pfn_at(1 * MiB)).level, Level::Pte4K);
  EXPECT_EQ(c.level2_splits + c.level3_splits, 0u);
  EXPECT_SOUND(*m);
}

TEST(DirectMapBoot, WithoutGbpagesUses2MLeaves) {
  auto m = machine(2 * GiB, false);
  EXPECT_EQ(m->dmap().counters().leaves_1g, 0u);
  EXPECT_EQ(m->dmap().lookup(pfn_at(1 * GiB)).level, Level::Pmd2M);
  EXPECT_SOUND(*m);
}

TEST(DirectMapSplit, SplitsOnlyTheLeafThatHoldsThePage) {
  auto m = machine(1 * GiB, false);
  const Pfn p = pfn_at(512 * MiB) + 7;
  ASSERT_EQ(m->dmap().set_direct_map_invalid_noflush(p, 0), 0);
  const auto& c = m->dmap().counters();
  EXPECT_EQ(c.level2_splits, 1u);
  EXPECT_EQ(c.level3_splits, 0u);
  EXPECT_EQ(m->dmap().lookup(p).level, Level::Pte4K);
  EXPECT_FALSE(m->dmap().is_present(p));
  EXPECT_TRUE(m->dmap().is_present(p + 1));
  EXPECT_EQ(m->dmap().lookup(p - kPagesPer2M).level, Level::Pmd2M);
  EXPECT_EQ(m->dmap().lookup(p + kPagesPer2M).level, Level::Pmd2M);
  EXPECT_EQ(m->phys().pages_of_kind(phys::FrameKind::PageTable), 1u);
  ASSERT_EQ(m->dmap().set_direct_map_default_noflush(p, 0), 0);
  EXPECT_SOUND(*m);
}

TEST(DirectMapSplit, RemovingAPageFromA1GLeafSplitsLevel3ThenLevel2) {
  auto m = machine(8 * GiB, true);
  const auto before = m->dmap().counters();
  const Pfn p = pfn_at(5 * GiB) + 12345;
  ASSERT_EQ(m->dmap().set_direct_map_invalid_noflush(p, 0), 0);
  const auto& c = m->dmap().counters();
  EXPECT_EQ(c.level3_splits, 1u);
  EXPECT_EQ(c.level2_splits, 1u);
  EXPECT_EQ(c.leaves_1g, before.leaves_1g - 1);
  EXPECT_EQ(c.leaves_2m, before.leaves_2m + 511);
  EXPECT_EQ(c.leaves_4k, before.leaves_4k + 512);
  EXPECT_EQ(m->phys().pages_of_kind(phys::FrameKind::PageTable), 2u);
  // Restoring it collapses nothing: only set_memory_rox() asks for collapse.
  ASSERT_EQ(m->dmap().set_direct_map_default_noflush(p, 0), 0);
  EXPECT_TRUE(m->dmap().is_present(p));
  EXPECT_EQ(m->dmap().lookup(p).level, Level::Pte4K);
  EXPECT_EQ(c.level2_collapses + c.level3_collapses, 0u);
  EXPECT_SOUND(*m);
}

// split_to(): the model started from a real map. Each step is
// split_large_page() (__split_large_page()) with the leaf's own protection, so
// the pages stay PAGE_KERNEL and a later set_direct_map_invalid_noflush() in
// the region (secretmem_fault()) splits nothing more, as in the real kernel
// whose region was split before.
TEST(DirectMapSplitTo, SplitsA1GLeafTo2MThenTo4KKeepingTheAttributes) {
  auto m = machine(8 * GiB, true);
  directmap::DirectMap& d = m->dmap();
  const Pfn p = pfn_at(5 * GiB + 6 * MiB) + 3;
  const std::uint8_t flags = d.lookup(p).flags;
  ASSERT_EQ(d.split_to(p, Level::Pmd2M, 0), 0);
  EXPECT_EQ(d.lookup(p).level, Level::Pmd2M);
  EXPECT_EQ(d.lookup(pfn_at(5 * GiB + 600 * MiB)).level, Level::Pmd2M);
  EXPECT_EQ(d.counters().level3_splits, 1u);
  EXPECT_EQ(d.counters().level2_splits, 0u);
  ASSERT_EQ(d.split_to(p, Level::Pte4K, 0), 0);
  EXPECT_EQ(d.lookup(p).level, Level::Pte4K);
  EXPECT_EQ(d.lookup(p).flags, flags);
  EXPECT_EQ(d.lookup(p + kPagesPer2M).level, Level::Pmd2M);
  EXPECT_EQ(d.counters().level2_splits, 1u);
  // Already that small: nothing more.
  ASSERT_EQ(d.split_to(p, Level::Pte4K, 0), 0);
  ASSERT_EQ(d.split_to(p, Level::Pmd2M, 0), 0);
  EXPECT_EQ(d.counters().level2_splits, 1u);
  EXPECT_EQ(d.counters().level3_splits, 1u);
  // A secret page there now costs no split (secretmem_fault() in a split region).
  ASSERT_EQ(d.set_direct_map_invalid_noflush(p + 1, 0), 0);
  EXPECT_EQ(d.counters().level2_splits, 1u);
  // The PCI hole is not mapped.
  EXPECT_EQ(d.split_to(pfn_at(3 * GiB + 2 * MiB), Level::Pte4K, 0), -EINVAL);
  EXPECT_SOUND(*m);
}

TEST(DirectMapSplit, ChangeCoveringAWholeLeafChangesItInPlace) {
  auto m = machine(1 * GiB, false, 16);
  const Pfn p = pfn_at(256 * MiB);
  ASSERT_EQ(m->dmap().set_memory_ro(p, kPagesPer2M, 0), 0);
  EXPECT_EQ(m->dmap().counters().level2_splits, 0u);
  EXPECT_EQ(m->dmap().lookup(p).level, Level::Pmd2M);
  EXPECT_FALSE(m->dmap().lookup(p + 3).flags & directmap::_PAGE_RW);
  // 512 pages is above tlb_single_page_flush_ceiling: one full flush.
  ASSERT_EQ(m->flushes().events().size(), 1u);
  EXPECT_TRUE(m->flushes().events()[0].full);
}

TEST(DirectMapSplit, SameProtectionKeepsTheLeafAndFlushesNothing) {
  auto m = machine(1 * GiB, false, 16);
  const Pfn p = pfn_at(256 * MiB) + 9;
  ASSERT_EQ(m->dmap().set_memory_rw(p, 1, 0), 0);
  EXPECT_EQ(m->dmap().counters().level2_splits, 0u);
  EXPECT_TRUE(m->flushes().events().empty());
}

TEST(DirectMapSplit, SetMemoryRoOnOnePageFlushesAllAfterTheSplitThenThatPage) {
  auto m = machine(1 * GiB, false, 16);
  const Pfn p = pfn_at(256 * MiB) + 9;
  ASSERT_EQ(m->dmap().set_memory_ro(p, 1, 0), 0);
  const auto& ev = m->flushes().events();
  ASSERT_EQ(ev.size(), 2u);
  EXPECT_TRUE(ev[0].full);
  EXPECT_EQ(ev[0].reason, FlushReason::Split);
  EXPECT_FALSE(ev[1].full);
  EXPECT_TRUE(ev[1].all_cpus);
  EXPECT_EQ(ev[1].start, p);
  EXPECT_EQ(ev[1].pages, 1u);
}

TEST(DirectMapSplit, NoflushVariantsRequestNoFlushOfTheirOwn) {
  auto m = machine(1 * GiB, false, 16);
  const Pfn p = pfn_at(256 * MiB) + 9;
  ASSERT_EQ(m->dmap().set_direct_map_invalid_noflush(p, 0), 0);  // splits: one flush
  ASSERT_EQ(m->dmap().set_direct_map_invalid_noflush(p + 1, 0), 0);
  ASSERT_EQ(m->dmap().set_direct_map_valid_noflush(p, 2, true, 0), 0);
  ASSERT_EQ(m->flushes().events().size(), 1u);
  EXPECT_EQ(m->flushes().events()[0].reason, FlushReason::Split);
}

TEST(DirectMapSplit, FailsWithEnomemWhenNoPageTablePageCanBeAllocated) {
  auto m = machine(1 * GiB, false);
  while (m->phys().alloc_pages(phys::GFP_KERNEL, 0, 0, phys::FrameKind::Kernel).ok()) {
  }
  const Pfn p = pfn_at(256 * MiB) + 9;
  EXPECT_EQ(m->dmap().set_direct_map_invalid_noflush(p, 0), -ENOMEM);
  EXPECT_EQ(m->dmap().counters().split_enomem, 1u);
  EXPECT_EQ(m->dmap().lookup(p).level, Level::Pmd2M);
  EXPECT_TRUE(m->dmap().is_present(p));
  EXPECT_SOUND(*m);
}

TEST(DirectMapCollapse, SetMemoryRoxThatRestoresUniformAttributesCollapsesTo2MThen1G) {
  auto m = machine(8 * GiB, true, 64);
  const auto boot = m->dmap().counters();
  const Pfn base = pfn_at(5 * GiB);
  ASSERT_EQ(m->dmap().set_memory_ro(base + 100, 1, 0), 0);
  ASSERT_EQ(m->dmap().counters().level3_splits, 1u);
  ASSERT_EQ(m->dmap().counters().level2_splits, 1u);
  ASSERT_EQ(m->dmap().set_memory_rox(base, kPagesPer1G, 0), 0);
  const auto& c = m->dmap().counters();
  EXPECT_EQ(c.level2_collapses, 1u);
  EXPECT_EQ(c.level3_collapses, 1u);
  EXPECT_EQ(m->dmap().lookup(base + 100).level, Level::Pud1G);
  EXPECT_EQ(c.leaves_1g, boot.leaves_1g);
  EXPECT_EQ(c.leaves_4k, boot.leaves_4k);
  EXPECT_EQ(m->phys().pages_of_kind(phys::FrameKind::PageTable), 0u);
  EXPECT_EQ(m->flushes().events().back().reason, FlushReason::Collapse);
  EXPECT_SOUND(*m);
}

TEST(DirectMapCollapse, RoxOverOne2MRangeCollapsesThePmdButNotThePud) {
  auto m = machine(8 * GiB, true);
  const Pfn base = pfn_at(5 * GiB) + 7 * kPagesPer2M;
  ASSERT_EQ(m->dmap().set_memory_ro(base + 3, 1, 0), 0);
  ASSERT_EQ(m->dmap().set_memory_rox(base, kPagesPer2M, 0), 0);
  EXPECT_EQ(m->dmap().counters().level2_collapses, 1u);
  EXPECT_EQ(m->dmap().counters().level3_collapses, 0u);
  EXPECT_EQ(m->dmap().lookup(base).level, Level::Pmd2M);
  EXPECT_EQ(m->phys().pages_of_kind(phys::FrameKind::PageTable), 1u);  // the PMD table stays
  EXPECT_SOUND(*m);
}

TEST(DirectMapCollapse, APagePinnedBySetMemory4kIsNeverCollapsed) {
  auto m = machine(1 * GiB, false);
  const Pfn base = pfn_at(256 * MiB);
  ASSERT_EQ(m->dmap().set_memory_4k(base, 1, 0), 0);
  EXPECT_EQ(m->dmap().counters().level2_splits, 1u);
  EXPECT_TRUE(m->dmap().lookup(base).flags & directmap::_PAGE_KERNEL_4K);
  ASSERT_EQ(m->dmap().set_memory_rox(base, kPagesPer2M, 0), 0);
  EXPECT_EQ(m->dmap().counters().level2_collapses, 0u);
  EXPECT_EQ(m->dmap().lookup(base).level, Level::Pte4K);
  EXPECT_SOUND(*m);
}

// The restore observer hears of a range once it is back at PAGE_KERNEL, from
// whichever call put it there, and of nothing else.
struct RestoreLog final : directmap::RestoreObserver {
  std::vector<std::pair<Pfn, Pfn>> seen;
  void on_restored(Pfn pfn, Pfn n, CpuId /*cpu*/) override { seen.emplace_back(pfn, n); }
};

TEST(DirectMapRestore, TheObserverHearsOfRangesBackAtTheDefaultAttributes) {
  auto m = machine(1 * GiB, false);
  RestoreLog log;
  m->dmap().set_restore_observer(&log);
  const Pfn p = pfn_at(512 * MiB) + 7;
  ASSERT_EQ(m->dmap().set_direct_map_invalid_noflush(p, 0), 0);
  EXPECT_TRUE(log.seen.empty());
  ASSERT_EQ(m->dmap().set_direct_map_default_noflush(p, 0), 0);
  ASSERT_EQ(m->dmap().set_direct_map_valid_noflush(p, 4, false, 0), 0);
  ASSERT_EQ(m->dmap().set_direct_map_valid_noflush(p, 4, true, 0), 0);
  ASSERT_EQ(m->dmap().set_memory_ro(p, 2, 0), 0);
  ASSERT_EQ(m->dmap().set_memory_rw(p, 2, 0), 0);
  const std::vector<std::pair<Pfn, Pfn>> want{{p, 1}, {p, 4}, {p, 2}};
  EXPECT_EQ(log.seen, want);

  // Executable pages are not back until NX is: set_memory_rox() collapses by
  // itself, and set_direct_map_valid_noflush() leaves them executable.
  log.seen.clear();
  const Pfn q = pfn_at(256 * MiB);
  ASSERT_EQ(m->dmap().set_memory_rox(q, 3, 0), 0);
  ASSERT_EQ(m->dmap().set_direct_map_valid_noflush(q, 3, false, 0), 0);
  ASSERT_EQ(m->dmap().set_direct_map_valid_noflush(q, 3, true, 0), 0);
  EXPECT_TRUE(log.seen.empty());
  ASSERT_EQ(m->dmap().set_memory_nx(q, 3, 0), 0);
  ASSERT_EQ(log.seen.size(), 1u);
  EXPECT_EQ(log.seen[0], std::make_pair(q, Pfn{3}));

  // A page pinned by set_memory_4k() is not back at the default, present or not.
  log.seen.clear();
  const Pfn r = pfn_at(128 * MiB);
  ASSERT_EQ(m->dmap().set_memory_4k(r, kPagesPer2M, 0), 0);
  ASSERT_EQ(m->dmap().set_direct_map_invalid_noflush(r, 0), 0);
  ASSERT_EQ(m->dmap().set_direct_map_default_noflush(r, 0), 0);
  EXPECT_TRUE(log.seen.empty());
  m->dmap().set_restore_observer(nullptr);
  EXPECT_SOUND(*m);
}

TEST(DirectMapCollapse, WithoutGbpagesNoPudCollapse) {
  auto m = machine(2 * GiB, false);
  const Pfn base = pfn_at(1 * GiB);
  ASSERT_EQ(m->dmap().set_memory_ro(base + 1, 1, 0), 0);
  ASSERT_EQ(m->dmap().set_memory_rox(base, kPagesPer1G, 0), 0);
  EXPECT_EQ(m->dmap().counters().level2_collapses, 1u);
  EXPECT_EQ(m->dmap().counters().level3_collapses, 0u);
  EXPECT_EQ(m->dmap().lookup(base).level, Level::Pmd2M);
  EXPECT_SOUND(*m);
}

// The PTE tables' storage (the model's, not the kernel's): a table whose 512
// entries are equal keeps one byte, a 512-byte block only while they differ.
// __split_large_page() fills the new table with the leaf's protection and
// __change_page_attr() then writes one PTE at a time; the storage must follow
// every write and give the block back once the entries agree again.
TEST(DirectMapPteStorage, SplitThenWhollyClearedHoldsNoFullTable) {
  auto m = machine(1 * GiB, false);
  auto& d = m->dmap();
  const auto boot = d.pte_storage();
  const Pfn base = pfn_at(512 * MiB);
  ASSERT_EQ(d.set_direct_map_invalid_noflush(base + 9, 0), 0);  // splits: one table
  ASSERT_EQ(d.counters().level2_splits, 1u);
  EXPECT_EQ(d.pte_storage().tables, boot.tables + 1);
  EXPECT_EQ(d.pte_storage().full, boot.full + 1);  // the entries differ
  // Clearing the rest of the 2 MiB (what removing a 2 MiB folio from the
  // direct map does) makes the 512 entries equal again.
  ASSERT_EQ(d.set_direct_map_valid_noflush(base, kPagesPer2M, false, 0), 0);
  EXPECT_EQ(d.pte_storage().tables, boot.tables + 1);
  EXPECT_EQ(d.pte_storage().full, boot.full);
  // Its block is free again (the boot ISA table's, given back at boot and reused).
  EXPECT_EQ(d.pte_storage().free_full, boot.free_full);
  for (Pfn p = base; p < base + kPagesPer2M; ++p) {
    ASSERT_EQ(d.lookup(p).level, Level::Pte4K);
    ASSERT_FALSE(d.is_present(p));
  }
  EXPECT_EQ(m->phys().pages_of_kind(phys::FrameKind::PageTable), 1u);  // the table page stays
  EXPECT_SOUND(*m);
  // Restored whole: still compact (the present entries are equal).
  ASSERT_EQ(d.set_direct_map_valid_noflush(base, kPagesPer2M, true, 0), 0);
  EXPECT_EQ(d.pte_storage().full, boot.full);
  EXPECT_TRUE(d.is_present(base + 9));
  EXPECT_SOUND(*m);
}

TEST(DirectMapPteStorage, ASingleDifferingPteTakesOneBlockAndItsRestoreGivesItBack) {
  auto m = machine(1 * GiB, false);
  auto& d = m->dmap();
  const auto boot = d.pte_storage();
  const Pfn a = pfn_at(256 * MiB);
  const Pfn b = pfn_at(384 * MiB);
  // set_memory_4k() splits with uniform PTEs (all pinned): still compact.
  ASSERT_EQ(d.set_memory_4k(a, kPagesPer2M, 0), 0);
  EXPECT_EQ(d.pte_storage().tables, boot.tables + 1);
  EXPECT_EQ(d.pte_storage().full, boot.full);
  ASSERT_EQ(d.set_memory_ro(a + 511, 1, 0), 0);  // the last PTE differs
  EXPECT_EQ(d.pte_storage().full, boot.full + 1);
  EXPECT_EQ(d.pte_storage().free_full, 0u);  // the block given back at boot, reused
  EXPECT_FALSE(d.lookup(a + 511).flags & directmap::_PAGE_RW);
  EXPECT_TRUE(d.lookup(a + 510).flags & directmap::_PAGE_RW);
  EXPECT_SOUND(*m);
  ASSERT_EQ(d.set_memory_ro(a + 0, 1, 0), 0);  // the first one too: still two values
  EXPECT_EQ(d.pte_storage().full, boot.full + 1);
  // A second differing table needs a new block, and model_bytes() counts it.
  const std::size_t bytes = d.model_bytes();
  ASSERT_EQ(d.set_direct_map_invalid_noflush(b + 3, 0), 0);
  EXPECT_EQ(d.pte_storage().full, boot.full + 2);
  EXPECT_GE(d.model_bytes(), bytes + kPtrsPerTable);
  EXPECT_SOUND(*m);
  ASSERT_EQ(d.set_memory_rw(a, kPagesPer2M, 0), 0);
  // set_memory_ro() cleared _PAGE_DIRTY and set_memory_rw() leaves it clear:
  // entries 0 and 511 still differ from the others.
  EXPECT_EQ(d.pte_storage().full, boot.full + 2);
  ASSERT_EQ(d.set_memory_ro(a, kPagesPer2M, 0), 0);  // now all equal: folded
  EXPECT_EQ(d.pte_storage().full, boot.full + 1);
  EXPECT_EQ(d.pte_storage().free_full, 1u);
  EXPECT_SOUND(*m);
  // The next table that needs a block reuses the freed one.
  const Pfn c = pfn_at(640 * MiB);
  ASSERT_EQ(d.set_direct_map_invalid_noflush(c + 3, 0), 0);
  EXPECT_EQ(d.pte_storage().tables, boot.tables + 3);
  EXPECT_EQ(d.pte_storage().full, boot.full + 2);
  EXPECT_EQ(d.pte_storage().free_full, 0u);
  EXPECT_SOUND(*m);
}

// A CPA step over a whole compact table: __change_page_attr() writes the same
// new PTE 512 times; without an observer of CPA steps the model writes the
// one byte (no block taken), with one it makes the 512 writes it reports.
struct StepCount final : directmap::CpaStepObserver {
  int pte_changes = 0;
  void on_cpa_step(const directmap::CpaStep& s) override {
    pte_changes += s.kind == directmap::CpaStepKind::PteChange ? 1 : 0;
  }
};

TEST(DirectMapPteStorage, AChangeOfAWholeCompactTableStaysCompact) {
  auto m = machine(1 * GiB, false, 64);
  auto& d = m->dmap();
  const auto boot = d.pte_storage();
  const Pfn a = pfn_at(256 * MiB);
  ASSERT_EQ(d.set_memory_4k(a, 2 * kPagesPer2M, 0), 0);  // two split, compact tables
  ASSERT_EQ(d.pte_storage().tables, boot.tables + 2);
  const std::size_t flushes = m->flushes().events().size();
  ASSERT_EQ(d.set_memory_ro(a, 2 * kPagesPer2M, 0), 0);
  EXPECT_EQ(d.pte_storage().full, boot.full);
  EXPECT_EQ(d.pte_storage().free_full, boot.free_full);
  for (Pfn p = a; p < a + 2 * kPagesPer2M; ++p) {
    ASSERT_FALSE(d.lookup(p).flags & directmap::_PAGE_RW);
    ASSERT_EQ(d.lookup(p).level, Level::Pte4K);
  }
  EXPECT_GT(m->flushes().events().size(), flushes);  // CPA_FLUSHTLB was set: cpa_flush()
  StepCount steps;
  d.set_cpa_step_observer(&steps);
  ASSERT_EQ(d.set_memory_rw(a, kPagesPer2M, 0), 0);
  d.set_cpa_step_observer(nullptr);
  EXPECT_EQ(steps.pte_changes, static_cast<int>(kPagesPer2M));
  EXPECT_EQ(d.pte_storage().full, boot.full);  // taken at the first write, given back at the last
  EXPECT_TRUE(d.lookup(a + 17).flags & directmap::_PAGE_RW);
  EXPECT_SOUND(*m);
}

// collapse_pmd_page() frees the table: its slot is reused by the next split
// (not leaked), and the TLB model's table_ref() sees the same slot again.
TEST(DirectMapPteStorage, CollapsedTablesAreRecycled) {
  auto m = machine(1 * GiB, false);
  auto& d = m->dmap();
  const auto boot = d.pte_storage();
  const Pfn a = pfn_at(256 * MiB);
  ASSERT_EQ(d.set_memory_ro(a + 5, 1, 0), 0);
  const auto slot = d.table_ref(a, Level::Pte4K).slot;
  ASSERT_EQ(d.set_memory_rox(a, kPagesPer2M, 0), 0);
  ASSERT_EQ(d.counters().level2_collapses, 1u);
  EXPECT_EQ(d.pte_storage().tables, boot.tables);
  EXPECT_EQ(d.pte_storage().full, boot.full);
  const Pfn b = pfn_at(640 * MiB);
  ASSERT_EQ(d.set_memory_ro(b + 7, 1, 0), 0);
  EXPECT_EQ(d.table_ref(b, Level::Pte4K).slot, slot);
  EXPECT_EQ(d.pte_storage().tables, boot.tables + 1);
  EXPECT_EQ(d.pte_storage().free_full, 0u);  // the block freed by the fold, reused
  EXPECT_SOUND(*m);
}

TEST(DirectMapPteStorage, CheckCatchesACorruptedRecord) {
  auto m = machine(1 * GiB, false);
  auto& d = m->dmap();
  const Pfn a = pfn_at(256 * MiB);
  const Pfn b = pfn_at(384 * MiB);
  ASSERT_EQ(d.set_direct_map_invalid_noflush(a, 0), 0);  // a: full
  ASSERT_EQ(d.set_memory_4k(b, 1, 0), 0);
  ASSERT_EQ(d.set_memory_4k(b, kPagesPer2M, 0), 0);  // b: compact
  ASSERT_TRUE(d.check().empty()) << join(d.check());
  constexpr std::uint32_t kCompact = 0x80000000u;
  // A compact record with bits beyond its one byte.
  d.overwrite_pte_record_for_test(b, kCompact | 0x100u | directmap::PAGE_KERNEL);
  EXPECT_FALSE(d.check().empty());
  // A compact record where a full one belongs: the lookups change, and the
  // block is neither used nor free.
  d.overwrite_pte_record_for_test(b, kCompact | directmap::PAGE_KERNEL | directmap::_PAGE_KERNEL_4K);
  ASSERT_TRUE(d.check().empty()) << join(d.check());
  d.overwrite_pte_record_for_test(a, kCompact | directmap::PAGE_KERNEL);
  EXPECT_FALSE(d.check().empty());
  // Two tables sharing one block (a's is block 0: the boot ISA table's,
  // given back once its 512 entries were mapped, then reused).
  d.overwrite_pte_record_for_test(a, 0);
  ASSERT_TRUE(d.check().empty()) << join(d.check());
  d.overwrite_pte_record_for_test(b, 0);
  EXPECT_FALSE(d.check().empty());
  // A block index out of range.
  d.overwrite_pte_record_for_test(b, 12345);
  EXPECT_FALSE(d.check().empty());
}

// The storage is lossless: after every random CPA call over a few 2 MiB
// regions (where tables take, give back and reuse blocks), each page's
// lookup() equals the per-page rule __change_page_attr() applies,
// pgprot_clear_protnone_bits((old & ~clr) | set), whatever the level.
RC_GTEST_PROP(DirectMapPteStorage, LookupsFollowThePerPageRule, ()) {
  Machine m(small_config(1 * GiB, false));
  auto& d = m.dmap();
  const Pfn lo = pfn_at(256 * MiB);
  const Pfn span = 4 * kPagesPer2M;
  std::vector<std::uint8_t> want(span);
  for (Pfn i = 0; i < span; ++i) want[i] = d.lookup(lo + i).flags;
  using namespace directmap;
  const auto ops = *rc::gen::container<std::vector<std::tuple<int, std::uint32_t, int>>>(
      rc::gen::tuple(rc::gen::inRange(0, 10), rc::gen::inRange<std::uint32_t>(0, span),
                     rc::gen::inRange(1, 1100)));
  for (const auto& [op, off, len] : ops) {
    Pfn n = static_cast<Pfn>(std::min<std::uint64_t>(static_cast<std::uint64_t>(len), span - off));
    const Pfn pfn = lo + off;
    std::uint8_t set = 0;
    std::uint8_t clr = 0;
    switch (op) {
      case 0: d.set_memory_ro(pfn, n, 0); clr = _PAGE_RW | _PAGE_DIRTY; break;
      case 1: d.set_memory_rw(pfn, n, 0); set = _PAGE_RW; break;
      case 2: d.set_memory_np(pfn, n, 0); clr = _PAGE_PRESENT; break;
      case 3: d.set_memory_p(pfn, n, 0); set = _PAGE_PRESENT; break;
      case 4: d.set_memory_rox(pfn, n, 0); clr = _PAGE_RW | _PAGE_DIRTY | _PAGE_NX; break;
      case 5: n = 1; d.set_memory_4k(pfn, 1, 0); set = _PAGE_KERNEL_4K; break;
      case 6: n = 1; d.set_direct_map_invalid_noflush(pfn, 0); clr = _PAGE_PRESENT | _PAGE_RW; break;
      case 7: n = 1; d.set_direct_map_default_noflush(pfn, 0); set = _PAGE_PRESENT | _PAGE_RW; break;
      case 8: d.set_memory_nx(pfn, n, 0); set = _PAGE_NX; break;
      default: d.clear_4k_and_collapse(pfn, n, 0); clr = _PAGE_KERNEL_4K; break;
    }
    for (Pfn i = off; i < off + n; ++i) {
      auto v = static_cast<std::uint8_t>((want[i] & ~clr) | set);
      if ((v & _PAGE_PRESENT) == 0) v = static_cast<std::uint8_t>(v & ~_PAGE_GLOBAL);
      want[i] = v;
    }
    for (Pfn i = 0; i < span; ++i) {
      if (d.lookup(lo + i).flags != want[i]) {
        RC_FAIL(fmt::format("op {} at +{} x{}: page +{} has {:#x}, want {:#x}", op, off, n, i,
                            d.lookup(lo + i).flags, want[i]));
      }
    }
    const auto v = d.check();
    if (!v.empty()) RC_FAIL(join(v));
  }
}

// Random CPA sequences keep the counters equal to the tables and the mapped RAM.
RC_GTEST_PROP(DirectMapProperty, RandomCpaSequencesKeepEveryInvariant, ()) {
  MachineConfig c = small_config(2 * GiB, *rc::gen::arbitrary<bool>());
  Machine m(c);
  const Pfn span = m.phys().ram().back().end;
  const auto ops = *rc::gen::container<std::vector<std::tuple<int, std::uint32_t, int>>>(
      rc::gen::tuple(rc::gen::inRange(0, 10), rc::gen::inRange<std::uint32_t>(0, span),
                     rc::gen::inRange(1, 1200)));
  auto& d = m.dmap();
  for (const auto& [op, pfn, len] : ops) {
    const auto n = static_cast<Pfn>(std::min<std::uint64_t>(static_cast<std::uint64_t>(len), span - pfn));
    if (n == 0) continue;
    switch (op) {
      case 0: d.set_memory_ro(pfn, n, 0); break;
      case 1: d.set_memory_rw(pfn, n, 0); break;
      case 2: d.set_memory_np(pfn, n, 0); break;
      case 3: d.set_memory_p(pfn, n, 0); break;
      case 4: d.set_memory_rox(pfn, n, 0); break;
      case 5: d.set_memory_4k(pfn, 1, 0); break;
      case 6: d.set_direct_map_invalid_noflush(pfn, 0); break;
      case 7: d.set_direct_map_default_noflush(pfn, 0); break;
      case 8: d.set_memory_nx(pfn, n, 0); break;
      default: d.set_direct_map_valid_noflush(pfn, n, true, 0); break;
    }
    const auto v = d.check();
    if (!v.empty()) RC_FAIL(join(v));
  }
  const auto v = m.check();
  if (!v.empty()) RC_FAIL(join(v));
}

}  // namespace
}  // namespace exmem::model
