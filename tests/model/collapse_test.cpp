// Tests of the collapse modes: when the direct map gets its large leaves back
// and the flushes each mode issues.
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

#include "helpers.hpp"
#include "model/machine.hpp"

namespace exmem::model {
namespace {

using testing::join;

struct OneSecret {
  mm::Pid pid = 0;
  std::uint64_t addr = 0;
  Pfn pfn = kNoPfn;
};

OneSecret fault_one(Machine& m, std::uint64_t pages = 1) {
  OneSecret s;
  s.pid = m.mm().spawn(0, true);
  const int fd = m.mm().memfd_secret(s.pid, 0);
  m.mm().ftruncate(s.pid, fd, static_cast<std::int64_t>(pages * kPageSize));
  s.addr = m.mm().mmap(s.pid, pages * kPageSize, mm::kPROT_READ | mm::kPROT_WRITE, mm::kMAP_SHARED,
                       fd, 0)
               .value;
  for (std::uint64_t i = 0; i < pages; ++i) {
    EXPECT_EQ(m.mm().touch(s.pid, s.addr + i * kPageSize, true), mm::VmFault::Major);
  }
  s.pfn = m.mm().pagemap(s.pid, s.addr);
  return s;
}

Machine* machine_with(std::unique_ptr<Machine>& hold, CollapseMode mode, unsigned scan_rate = 4,
                      bool gbpages = true, std::uint64_t ram = 256 * MiB) {
  MachineConfig c = testing::small_config(ram, gbpages);
  c.collapse = mode;
  c.scan_rate = scan_rate;
  hold = std::make_unique<Machine>(c);
  return hold.get();
}

// One full pass of the scanner over the whole direct map.
void scan_everything(Machine& m) {
  const Pfn regions = (m.phys().nr_frames() + kPagesPer2M - 1) / kPagesPer2M;
  const unsigned rate = m.config().scan_rate;
  for (Pfn i = 0; i <= regions / rate + 1; ++i) m.scan_tick(0);
}

TEST(Collapse, RoxOnlyNeverCollapsesAfterASecretPageIsRestored) {
  std::unique_ptr<Machine> hold;
  Machine& m = *machine_with(hold, CollapseMode::RoxOnly);
  const OneSecret s = fault_one(m);
  EXPECT_EQ(m.dmap().lookup(s.pfn).level, directmap::Level::Pte4K);
  EXPECT_EQ(m.mm().exit(s.pid), 0);
  scan_everything(m);  // the scanner does nothing in this mode
  EXPECT_EQ(m.dmap().lookup(s.pfn).level, directmap::Level::Pte4K);
  EXPECT_EQ(m.dmap().counters().level2_collapses, 0u);
  EXPECT_EQ(m.collapse_stats().collapses, 0u);
  EXPECT_SOUND(m);
}

// __set_pages_np() (set_direct_map_invalid_noflush()) clears PRESENT|RW and,
// through pgprot_clear_protnone_bits(), _PAGE_GLOBAL; __set_pages_p()
// (set_direct_map_default_noflush()) sets PRESENT|RW only. So the restored
// secret page differs from its 511 neighbours in G, and collapse_pmd_page()
// (pte_flags() equal for all 512) refuses the region.
TEST(Collapse, OnRestoreIsRefusedByCollapsePmdPageBecauseSetPagesPDoesNotRestoreGlobal) {
  std::unique_ptr<Machine> hold;
  Machine& m = *machine_with(hold, CollapseMode::OnRestore);
  const OneSecret s = fault_one(m);
  const Pfn neighbour = s.pfn ^ 1;
  EXPECT_EQ(m.mm().exit(s.pid), 0);
  const directmap::Lookup l = m.dmap().lookup(s.pfn);
  EXPECT_EQ(l.level, directmap::Level::Pte4K);
  EXPECT_TRUE(l.present());
  EXPECT_NE(l.flags & directmap::_PAGE_RW, 0);
  EXPECT_EQ(l.flags & directmap::_PAGE_GLOBAL, 0);  // not restored
  EXPECT_NE(l.flags & directmap::_PAGE_DIRTY, 0);   // __set_pages_np() left D alone
  EXPECT_NE(m.dmap().lookup(neighbour).flags & directmap::_PAGE_GLOBAL, 0);
  EXPECT_EQ(m.collapse_stats().attempts, 1u);  // on-restore asked ...
  EXPECT_EQ(m.dmap().counters().level2_collapses, 0u);  // ... and was refused
  EXPECT_EQ(m.dmap().counters().refused_2m.global, 1u);
  EXPECT_EQ(m.dmap().counters().refused_2m.total(), 1u);
  EXPECT_EQ(m.collapse_stats().flushes, 0u);
  EXPECT_SOUND(m);
}

TEST(Collapse, ScannerIsRefusedByCollapsePmdPageForARestoredSecretPageWithoutGlobal) {
  std::unique_ptr<Machine> hold;
  Machine& m = *machine_with(hold, CollapseMode::Scanner, 8);
  scan_everything(m);
  const std::uint64_t c0 = m.dmap().counters().level2_collapses;
  const OneSecret s = fault_one(m);
  EXPECT_EQ(m.mm().exit(s.pid), 0);
  const std::uint64_t g0 = m.dmap().counters().refused_2m.global;
  scan_everything(m);
  EXPECT_EQ(m.dmap().lookup(s.pfn).level, directmap::Level::Pte4K);
  EXPECT_EQ(m.dmap().counters().level2_collapses, c0);
  EXPECT_GT(m.dmap().counters().refused_2m.global, g0);  // once per scan of the region
  EXPECT_SOUND(m);
}

// The hypothetical kernel of the -gd modes: __set_pages_p() puts G (and D)
// back, so the region is uniform again and collapses.
TEST(Collapse, OnRestoreGdCollapsesThe2MAroundARestoredPageWithOneFlush) {
  std::unique_ptr<Machine> hold;
  Machine& m = *machine_with(hold, CollapseMode::OnRestoreGd);
  const OneSecret s = fault_one(m);
  const std::uint64_t full0 = m.flushes().counters().full_flushes;
  const std::uint64_t tables0 = m.phys().pages_of_kind(phys::FrameKind::PageTable);
  EXPECT_EQ(m.mm().exit(s.pid), 0);
  EXPECT_EQ(m.dmap().lookup(s.pfn).level, directmap::Level::Pmd2M);
  EXPECT_EQ(m.dmap().lookup(s.pfn).flags, directmap::PAGE_KERNEL);
  EXPECT_EQ(m.dmap().counters().level2_collapses, 1u);
  EXPECT_EQ(m.collapse_stats().flushes, 1u);
  EXPECT_EQ(m.flushes().counters().full_flushes - full0, 1u);
  EXPECT_EQ(m.phys().pages_of_kind(phys::FrameKind::PageTable), tables0 - 1);  // the PTE table freed
  EXPECT_SOUND(m);
}

TEST(Collapse, OnRestoreGdCollapsesTheGiBTooWhenItIsUniform) {
  std::unique_ptr<Machine> hold;
  Machine& m = *machine_with(hold, CollapseMode::OnRestoreGd, 4, true, 4 * GiB);
  const OneSecret s = fault_one(m);
  if (m.dmap().counters().level3_splits == 0) GTEST_SKIP() << "the page was not in a 1 GiB leaf";
  EXPECT_EQ(m.mm().exit(s.pid), 0);
  EXPECT_EQ(m.dmap().lookup(s.pfn).level, directmap::Level::Pud1G);
  EXPECT_EQ(m.dmap().counters().level3_collapses, 1u);
  EXPECT_SOUND(m);
}

TEST(Collapse, OnRestoreGdLeavesARegionSplitWhileAnotherSecretPageIsInIt) {
  std::unique_ptr<Machine> hold;
  Machine& m = *machine_with(hold, CollapseMode::OnRestoreGd);
  const OneSecret a = fault_one(m);
  const OneSecret b = fault_one(m);
  ASSERT_EQ(a.pfn & ~(kPagesPer2M - 1), b.pfn & ~(kPagesPer2M - 1));
  EXPECT_EQ(m.mm().exit(a.pid), 0);
  EXPECT_EQ(m.dmap().lookup(a.pfn).level, directmap::Level::Pte4K);
  EXPECT_EQ(m.dmap().counters().level2_collapses, 0u);
  EXPECT_EQ(m.dmap().counters().refused_2m.not_present, 1u);  // b is still unmapped
  EXPECT_EQ(m.mm().exit(b.pid), 0);
  EXPECT_EQ(m.dmap().lookup(a.pfn).level, directmap::Level::Pmd2M);
  EXPECT_SOUND(m);
}

TEST(Collapse, ScannerGdCollapsesA2MRegionOnceItsLastSecretPageIsFreedAndOnlyThen) {
  std::unique_ptr<Machine> hold;
  Machine& m = *machine_with(hold, CollapseMode::ScannerGd, 8);
  scan_everything(m);  // whatever boot left split and uniform (the ISA range) collapses first
  const std::uint64_t c0 = m.dmap().counters().level2_collapses;
  const std::uint64_t f0 = m.collapse_stats().flushes;
  const OneSecret a = fault_one(m);
  const OneSecret b = fault_one(m);
  ASSERT_EQ(a.pfn & ~(kPagesPer2M - 1), b.pfn & ~(kPagesPer2M - 1));
  scan_everything(m);
  EXPECT_EQ(m.dmap().counters().level2_collapses, c0);
  EXPECT_EQ(m.mm().exit(a.pid), 0);
  scan_everything(m);
  EXPECT_EQ(m.dmap().lookup(a.pfn).level, directmap::Level::Pte4K);  // b is still there
  EXPECT_EQ(m.dmap().counters().level2_collapses, c0);
  EXPECT_EQ(m.mm().exit(b.pid), 0);
  EXPECT_EQ(m.dmap().lookup(a.pfn).level, directmap::Level::Pte4K);  // not before the scan
  scan_everything(m);
  EXPECT_EQ(m.dmap().lookup(a.pfn).level, directmap::Level::Pmd2M);
  EXPECT_EQ(m.dmap().counters().level2_collapses, c0 + 1);
  EXPECT_EQ(m.collapse_stats().flushes, f0 + 1);
  EXPECT_GT(m.collapse_stats().attempts, 0u);
  EXPECT_SOUND(m);
}

// set_memory_ro() clears RW|DIRTY, set_memory_rw() sets RW only: the page
// comes back without _PAGE_DIRTY and collapse_pmd_page() refuses its region
// (the write-protected page-table path of the wp-page-tables policies).
TEST(Collapse, SetMemoryRoThenRwLeavesDirtyClearAndCollapsePmdPageRefuses) {
  std::unique_ptr<Machine> hold;
  Machine& m = *machine_with(hold, CollapseMode::OnRestore);
  const Pfn p = m.phys().alloc_pages(phys::GFP_KERNEL, 0, 0, phys::FrameKind::Kernel).value;
  ASSERT_EQ(m.dmap().set_memory_ro(p, 1, 0), 0);
  EXPECT_EQ(m.dmap().lookup(p).flags & (directmap::_PAGE_RW | directmap::_PAGE_DIRTY), 0);
  ASSERT_EQ(m.dmap().set_memory_rw(p, 1, 0), 0);  // on-restore asks for the collapse here
  const directmap::Lookup l = m.dmap().lookup(p);
  EXPECT_EQ(l.level, directmap::Level::Pte4K);
  EXPECT_NE(l.flags & directmap::_PAGE_RW, 0);
  EXPECT_EQ(l.flags & directmap::_PAGE_DIRTY, 0);
  EXPECT_NE(l.flags & directmap::_PAGE_GLOBAL, 0);  // never non-present: G stayed
  EXPECT_EQ(m.dmap().counters().level2_collapses, 0u);
  EXPECT_EQ(m.dmap().counters().refused_2m.dirty, 1u);
  EXPECT_EQ(m.dmap().collapse_range(p, 1, 0), 0);
  EXPECT_EQ(m.dmap().counters().refused_2m.dirty, 2u);
  EXPECT_SOUND(m);
}

TEST(Collapse, OnRestoreGdCollapsesAfterSetMemoryRoThenRw) {
  std::unique_ptr<Machine> hold;
  Machine& m = *machine_with(hold, CollapseMode::OnRestoreGd);
  const Pfn p = m.phys().alloc_pages(phys::GFP_KERNEL, 0, 0, phys::FrameKind::Kernel).value;
  ASSERT_EQ(m.dmap().set_memory_ro(p, 1, 0), 0);
  ASSERT_EQ(m.dmap().set_memory_rw(p, 1, 0), 0);
  EXPECT_EQ(m.dmap().lookup(p).level, directmap::Level::Pmd2M);
  EXPECT_EQ(m.dmap().lookup(p).flags, directmap::PAGE_KERNEL);
  EXPECT_EQ(m.dmap().counters().level2_collapses, 1u);
  EXPECT_SOUND(m);
}

// --collapse none: no path collapses, not set_memory_rox()'s CPA_COLLAPSE
// (cpa_collapse_large_pages()), not collapse_range() or
// clear_4k_and_collapse() (the policies'), not the execmem cache's vmalloc
// range, not the scanner.
TEST(Collapse, NoneNeverCollapsesOnAnyPath) {
  std::unique_ptr<Machine> hold;
  MachineConfig c = testing::small_config(256 * MiB, true);
  c.collapse = CollapseMode::None;
  c.flush_log_limit = 1 << 20;
  hold = std::make_unique<Machine>(c);
  Machine& m = *hold;
  const OneSecret s = fault_one(m);
  EXPECT_EQ(m.mm().exit(s.pid), 0);
  scan_everything(m);
  EXPECT_EQ(m.dmap().lookup(s.pfn).level, directmap::Level::Pte4K);
  // A split region made uniform, then every call that can collapse.
  const Pfn region = s.pfn & ~(kPagesPer2M - 1);
  ASSERT_EQ(m.dmap().set_memory_rox(region, kPagesPer2M, 0), 0);  // CPA_COLLAPSE
  EXPECT_EQ(m.dmap().collapse_range(region, kPagesPer2M, 0), 0);
  ASSERT_EQ(m.dmap().set_memory_4k(region, 1, 0), 0);
  ASSERT_EQ(m.dmap().clear_4k_and_collapse(region, 1, 0), 0);
  EXPECT_EQ(m.dmap().lookup(s.pfn).level, directmap::Level::Pte4K);
  // execmem: a partial load splits the vmalloc leaf, which stays split.
  const Result<std::uint64_t> a = m.execmem().alloc(16, 0);
  ASSERT_TRUE(a.ok());
  ASSERT_EQ(m.execmem().free(a.value, 0), 0);
  EXPECT_EQ(m.execmem().stats().vmalloc_splits, 1u);
  EXPECT_EQ(m.execmem().stats().vmalloc_collapses, 0u);
  EXPECT_EQ(m.dmap().counters().level2_collapses + m.dmap().counters().level3_collapses, 0u);
  EXPECT_EQ(m.collapse_stats().flushes, 0u);
  for (const directmap::FlushEvent& e : m.flushes().events()) {
    EXPECT_NE(e.reason, directmap::FlushReason::Collapse);
  }
  EXPECT_SOUND(m);
}

TEST(Collapse, UnknownModeNamesTheKnownOnes) {
  try {
    (void)parse_collapse_mode("sometimes");
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    const std::string w = e.what();
    for (const char* n : {"none", "rox-only", "on-restore", "scanner", "on-restore-gd", "scanner-gd"}) {
      EXPECT_NE(w.find(n), std::string::npos) << n;
    }
  }
  EXPECT_EQ(parse_collapse_mode("on-restore"), CollapseMode::OnRestore);
  EXPECT_EQ(parse_collapse_mode("scanner-gd"), CollapseMode::ScannerGd);
  EXPECT_EQ(MachineConfig{}.collapse, CollapseMode::RoxOnly);
}

}  // namespace
}  // namespace exmem::model
