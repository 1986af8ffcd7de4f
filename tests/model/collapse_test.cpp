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

TEST(Collapse, OnRestoreCollapsesThe2MAroundARestoredPageWithOneFlush) {
  std::unique_ptr<Machine> hold;
  Machine& m = *machine_with(hold, CollapseMode::OnRestore);
  const OneSecret s = fault_one(m);
  const std::uint64_t full0 = m.flushes().counters().full_flushes;
  const std::uint64_t tables0 = m.phys().pages_of_kind(phys::FrameKind::PageTable);
  EXPECT_EQ(m.mm().exit(s.pid), 0);
  EXPECT_EQ(m.dmap().lookup(s.pfn).level, directmap::Level::Pmd2M);
  EXPECT_EQ(m.dmap().counters().level2_collapses, 1u);
  EXPECT_EQ(m.collapse_stats().flushes, 1u);
  EXPECT_EQ(m.flushes().counters().full_flushes - full0, 1u);
  EXPECT_EQ(m.phys().pages_of_kind(phys::FrameKind::PageTable), tables0 - 1);  // the PTE table freed
  EXPECT_SOUND(m);
}

TEST(Collapse, OnRestoreCollapsesTheGiBTooWhenItIsUniform) {
  std::unique_ptr<Machine> hold;
  Machine& m = *machine_with(hold, CollapseMode::OnRestore, 4, true, 4 * GiB);
  const OneSecret s = fault_one(m);
  if (m.dmap().counters().level3_splits == 0) GTEST_SKIP() << "the page was not in a 1 GiB leaf";
  EXPECT_EQ(m.mm().exit(s.pid), 0);
  EXPECT_EQ(m.dmap().lookup(s.pfn).level, directmap::Level::Pud1G);
  EXPECT_EQ(m.dmap().counters().level3_collapses, 1u);
  EXPECT_SOUND(m);
}

TEST(Collapse, OnRestoreLeavesARegionSplitWhileAnotherSecretPageIsInIt) {
  std::unique_ptr<Machine> hold;
  Machine& m = *machine_with(hold, CollapseMode::OnRestore);
  const OneSecret a = fault_one(m);
  const OneSecret b = fault_one(m);
  ASSERT_EQ(a.pfn & ~(kPagesPer2M - 1), b.pfn & ~(kPagesPer2M - 1));
  EXPECT_EQ(m.mm().exit(a.pid), 0);
  EXPECT_EQ(m.dmap().lookup(a.pfn).level, directmap::Level::Pte4K);
  EXPECT_EQ(m.dmap().counters().level2_collapses, 0u);
  EXPECT_EQ(m.mm().exit(b.pid), 0);
  EXPECT_EQ(m.dmap().lookup(a.pfn).level, directmap::Level::Pmd2M);
  EXPECT_SOUND(m);
}

TEST(Collapse, ScannerCollapsesA2MRegionOnceItsLastSecretPageIsFreedAndOnlyThen) {
  std::unique_ptr<Machine> hold;
  Machine& m = *machine_with(hold, CollapseMode::Scanner, 8);
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

TEST(Collapse, NoneNeverCollapses) {
  std::unique_ptr<Machine> hold;
  Machine& m = *machine_with(hold, CollapseMode::None);
  const OneSecret s = fault_one(m);
  EXPECT_EQ(m.mm().exit(s.pid), 0);
  scan_everything(m);
  EXPECT_EQ(m.dmap().lookup(s.pfn).level, directmap::Level::Pte4K);
  EXPECT_EQ(m.collapse_stats().flushes, 0u);
}

TEST(Collapse, UnknownModeNamesTheKnownOnes) {
  try {
    (void)parse_collapse_mode("sometimes");
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    const std::string w = e.what();
    for (const char* n : {"none", "rox-only", "on-restore", "scanner"}) {
      EXPECT_NE(w.find(n), std::string::npos) << n;
    }
  }
  EXPECT_EQ(parse_collapse_mode("on-restore"), CollapseMode::OnRestore);
  EXPECT_EQ(MachineConfig{}.collapse, CollapseMode::RoxOnly);
}

}  // namespace
}  // namespace exmem::model
