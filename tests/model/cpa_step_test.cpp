// Tests of the direct map's CPA steps (directmap::CpaStepObserver): each
// page-table write inside a CPA call is reported at the moment it is made, in
// order with the flushes, as arch/x86/mm/pat/set_memory.c makes them.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "helpers.hpp"
#include "model/machine.hpp"

namespace exmem::model {
namespace {

using directmap::CpaStep;
using directmap::CpaStepKind;
using directmap::Level;

// Records steps and flushes in one sequence.
struct Recorder final : directmap::CpaStepObserver, directmap::FlushObserver {
  std::vector<std::string> seq;
  std::vector<CpaStep> steps;
  void on_cpa_step(const CpaStep& s) override {
    steps.push_back(s);
    seq.emplace_back(step_name(s.kind));
  }
  void on_flush(const directmap::FlushEvent& e) override {
    seq.push_back(std::string("flush:") + std::string(directmap::flush_reason_name(e.reason)));
  }
  static const char* step_name(CpaStepKind k) {
    switch (k) {
      case CpaStepKind::SplitInstall: return "split";
      case CpaStepKind::PteChange: return "pte";
      case CpaStepKind::LeafChange: return "leaf";
      case CpaStepKind::CollapseInstall: return "collapse";
      case CpaStepKind::CollapseBreak: return "break";
      case CpaStepKind::CollapseMake: return "make";
    }
    return "?";
  }
};

struct StepRig {
  StepRig() : m(std::make_unique<Machine>(testing::small_config(2 * GiB, true, 2))) {
    m->dmap().set_cpa_step_observer(&rec);
    m->flushes().set_observer(&rec);
  }
  ~StepRig() {
    m->dmap().set_cpa_step_observer(nullptr);
    m->flushes().set_observer(nullptr);
  }
  StepRig(const StepRig&) = delete;
  StepRig& operator=(const StepRig&) = delete;
  std::unique_ptr<Machine> m;
  Recorder rec;
};

const Pfn kRegion = bytes_to_pfn(GiB + 6 * MiB);  // 2M-aligned, inside a 1G leaf

// __split_large_page(): the table is installed (same attributes as the leaf),
// then flush_tlb_all(); only then does __change_page_attr() write the PTE, and
// cpa_flush() flushes it.
TEST(CpaSteps, SplitInstallsTheTableThenFlushesThenChangesThePte) {
  StepRig r;
  ASSERT_EQ(r.m->dmap().set_memory_ro(kRegion + 3, 1, 0), 0);
  const std::vector<std::string> want = {"split", "flush:split", "split", "flush:split", "pte",
                                         "flush:cpa_flush"};
  EXPECT_EQ(r.rec.seq, want) << testing::join(r.rec.seq);
  ASSERT_EQ(r.rec.steps.size(), 3u);
  const CpaStep& s1 = r.rec.steps[0];
  EXPECT_EQ(s1.old_level, Level::Pud1G);
  EXPECT_EQ(s1.new_level, Level::Pmd2M);
  EXPECT_EQ(s1.changed_pages, 0u);  // the kernel's split keeps the attributes
  const CpaStep& s2 = r.rec.steps[1];
  EXPECT_EQ(s2.start, kRegion);
  EXPECT_EQ(s2.pages, kPagesPer2M);
  EXPECT_EQ(s2.old_flags, s2.new_flags);
  EXPECT_EQ(s2.changed_pages, 0u);
  const CpaStep& pte = r.rec.steps[2];
  EXPECT_EQ(pte.start, kRegion + 3);
  EXPECT_NE(pte.old_flags & directmap::_PAGE_RW, 0);
  EXPECT_EQ(pte.new_flags & directmap::_PAGE_RW, 0);
}

// The test-only split style writes the new attributes with the table.
TEST(CpaSteps, NewAttributesInSplitChangesThePteInTheSameWrite) {
  StepRig r;
  r.m->dmap().set_split_style(directmap::SplitStyle::NewAttributesInSplit);
  ASSERT_EQ(r.m->dmap().set_memory_ro(kRegion + 3, 2, 0), 0);
  const std::vector<std::string> want = {"split", "flush:split", "split", "flush:split",
                                         "flush:cpa_flush"};
  EXPECT_EQ(r.rec.seq, want) << testing::join(r.rec.seq);
  const CpaStep& s2 = r.rec.steps.at(1);
  EXPECT_EQ(s2.changed, kRegion + 3);
  EXPECT_EQ(s2.changed_pages, 2u);
  EXPECT_EQ(s2.new_flags & directmap::_PAGE_RW, 0);
  EXPECT_EQ(r.m->dmap().lookup(kRegion + 4).flags & directmap::_PAGE_RW, 0);
  EXPECT_NE(r.m->dmap().lookup(kRegion + 5).flags & directmap::_PAGE_RW, 0);
  EXPECT_TRUE(r.m->dmap().check().empty());
}

// __should_split_large_page(): a request covering a whole leaf changes it in place.
TEST(CpaSteps, WholeLeafChangeIsOneStep) {
  StepRig r;
  ASSERT_EQ(r.m->dmap().set_memory_ro(kRegion + 3, 1, 0), 0);  // 1G split first
  r.rec.seq.clear();
  r.rec.steps.clear();
  ASSERT_EQ(r.m->dmap().set_memory_ro(kRegion + kPagesPer2M, kPagesPer2M, 0), 0);
  const std::vector<std::string> want = {"leaf", "flush:cpa_flush"};
  EXPECT_EQ(r.rec.seq, want) << testing::join(r.rec.seq);
  EXPECT_EQ(r.rec.steps.at(0).old_level, Level::Pmd2M);
  EXPECT_EQ(r.rec.steps.at(0).new_level, Level::Pmd2M);
}

// cpa_collapse_large_pages() (6.15): set_pmd() of the leaf over the table, one
// flush_tlb_all() after all collapses.
TEST(CpaSteps, CollapseOf615SetsTheLeafThenFlushesOnce) {
  StepRig r;
  ASSERT_EQ(r.m->dmap().set_memory_ro(kRegion + 3, 1, 0), 0);
  r.rec.seq.clear();
  r.rec.steps.clear();
  ASSERT_EQ(r.m->dmap().set_memory_rox(kRegion, kPagesPer2M, 0), 0);
  ASSERT_FALSE(r.rec.seq.empty());
  // 512 PTE changes, cpa_flush, the collapse, its flush.
  const std::vector<std::string> tail(r.rec.seq.end() - 3, r.rec.seq.end());
  const std::vector<std::string> want = {"flush:cpa_flush", "collapse", "flush:collapse"};
  EXPECT_EQ(tail, want) << testing::join(r.rec.seq);
  const CpaStep& c = r.rec.steps.back();
  EXPECT_EQ(c.old_level, Level::Pte4K);
  EXPECT_EQ(c.new_level, Level::Pmd2M);
  EXPECT_EQ(c.old_flags, c.new_flags);
}

// Break-before-make (not the kernel's): clear, flush, set; then the final flush.
TEST(CpaSteps, BreakBeforeMakeCollapseClearsFlushesThenSets) {
  StepRig r;
  r.m->dmap().set_collapse_style(directmap::CollapseStyle::BreakBeforeMake);
  ASSERT_EQ(r.m->dmap().set_memory_ro(kRegion + 3, 1, 0), 0);
  r.rec.seq.clear();
  r.rec.steps.clear();
  ASSERT_EQ(r.m->dmap().set_memory_rox(kRegion, kPagesPer2M, 0), 0);
  const std::vector<std::string> tail(r.rec.seq.end() - 4, r.rec.seq.end());
  const std::vector<std::string> want = {"break", "flush:collapse", "make", "flush:collapse"};
  EXPECT_EQ(tail, want) << testing::join(r.rec.seq);
  const CpaStep& brk = r.rec.steps.at(r.rec.steps.size() - 2);
  EXPECT_EQ(brk.new_level, Level::None);
  EXPECT_EQ(brk.pages, kPagesPer2M);
  EXPECT_EQ(r.m->dmap().lookup(kRegion).level, Level::Pmd2M);
  EXPECT_EQ(r.m->dmap().counters().level2_collapses, 1u);
  EXPECT_TRUE(r.m->dmap().check().empty()) << testing::join(r.m->dmap().check());
}

}  // namespace
}  // namespace exmem::model
