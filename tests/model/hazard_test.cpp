// Tests of tlb/'s hazard checker: the kernel's own sequences pass it under
// speculative fills, at operation boundaries and inside every CPA step; the
// same sequences without their flushes, a split that changes attributes in the
// same write, a break-before-make collapse, and the 2018 VM_LOCAL_CPU
// proposal, are flagged with the events (and the step) that produced them.
#include <gtest/gtest.h>

#include <iostream>
#include <memory>
#include <random>

#include "helpers.hpp"
#include "model/machine.hpp"
#include "model/phys/gfp.hpp"
#include "model/tlb/system.hpp"

namespace exmem::model {
namespace {

using directmap::FlushReason;
using directmap::Level;
using testing::small_config;
using tlb::Hazard;
using tlb::SpecConfig;
using tlb::TlbConfig;
using tlb::TlbSystem;

constexpr unsigned kCpus = 4;

SpecConfig eager_speculation(std::uint64_t reach = 8) {
  SpecConfig s;
  s.rate = 3;
  s.reach = reach;
  s.any_recent = true;
  s.recent = 64;
  return s;
}

struct Rig {
  explicit Rig(SpecConfig spec = eager_speculation(), std::uint64_t ram = 2 * GiB,
               bool steps = true)
      : m(std::make_unique<Machine>(small_config(ram, true, kCpus))),
        sys(m->dmap(), m->phys(), TlbConfig::haswell_like(), spec, 2024) {
    sys.attach(m->flushes());
    if (steps) sys.attach_steps(m->dmap());  // speculation and checks inside every CPA step too
  }
  // every CPU touches pages [first, first + n)
  void warm(Pfn first, Pfn n) {
    for (CpuId c = 0; c < kCpus; ++c) {
      for (Pfn p = first; p < first + n; ++p) sys.access(c, p);
    }
  }
  Pfn alloc(CpuId cpu, phys::FrameKind kind) {
    const Result<Pfn> r = m->phys().alloc_pages(phys::GFP_KERNEL, 0, cpu, kind);
    EXPECT_TRUE(r.ok());
    return r.value;
  }
  bool has_hazard(Hazard::Kind k) const { return first(k) != nullptr; }
  const Hazard* first(Hazard::Kind k) const {
    for (const Hazard& h : sys.hazards()) {
      if (h.kind == k) return &h;
    }
    return nullptr;
  }
  std::string hazards_text() const {
    std::string s;
    for (const Hazard& h : sys.hazards()) s += h.describe() + "\n";
    for (const tlb::Leak& l : sys.leaks()) s += l.report();
    return s;
  }
  std::unique_ptr<Machine> m;
  TlbSystem sys;
};

const Pfn kRegion = bytes_to_pfn(GiB + 6 * MiB);  // 2M-aligned, inside a 1G leaf

TEST(HazardChecker, KernelSplitSequencePassesUnderSpeculativeFills) {
  Rig r;
  r.warm(kRegion, 16);
  // set_memory_ro() on one page: 1G -> 2M -> 4K, each split installing the
  // table and then flush_tlb_all(); then cpa_flush() of the page.
  r.sys.op("set_memory_ro(1 page)",
           [&] { EXPECT_EQ(r.m->dmap().set_memory_ro(kRegion + 3, 1, 0), 0); });
  // set_direct_map_invalid_noflush() and the caller's one-page flush.
  r.sys.op("remove a page and flush it", [&] {
    EXPECT_EQ(r.m->dmap().set_direct_map_invalid_noflush(kRegion + 5, 1), 0);
    r.m->flushes().kernel_range(kRegion + 5, 1, 1, FlushReason::KernelRange);
  });
  r.warm(kRegion, 16);
  EXPECT_EQ(r.m->dmap().counters().level3_splits, 1u);
  EXPECT_EQ(r.m->dmap().counters().level2_splits, 1u);
  EXPECT_GT(r.sys.stats().spec_fills, 0u);
  EXPECT_TRUE(r.sys.clean()) << r.hazards_text();
}

// Split a 2M region, let every CPU cache its PTE table in the walk caches,
// then set_memory_rox() the whole region: 6.15 collapses it, flushes all, and
// frees the old PTE table; the freed page is then reused.
struct CollapseRun {
  Pfn old_table = kNoPfn;
};
CollapseRun run_collapse(Rig& r) {
  CollapseRun out;
  r.sys.op("set_memory_ro(1 page)",
           [&] { EXPECT_EQ(r.m->dmap().set_memory_ro(kRegion + 3, 1, 0), 0); });
  r.warm(kRegion, 16);
  out.old_table = r.m->dmap().table_ref(kRegion, Level::Pte4K).page;
  EXPECT_NE(out.old_table, kNoPfn);
  r.sys.op("set_memory_rox(2 MiB): collapse",
           [&] { EXPECT_EQ(r.m->dmap().set_memory_rox(kRegion, kPagesPer2M, 0), 0); });
  EXPECT_EQ(r.m->dmap().counters().level2_collapses, 1u);
  r.sys.op("reuse the freed page-table page", [&] {
    for (int i = 0; i < 4; ++i) r.alloc(0, phys::FrameKind::Kernel);
  });
  EXPECT_EQ(r.m->phys().kind(out.old_table), phys::FrameKind::Kernel);
  for (CpuId c = 0; c < kCpus; ++c) {
    for (Pfn p = kRegion; p < kRegion + kPagesPer2M; p += 7) r.sys.access(c, p);
  }
  return out;
}

TEST(HazardChecker, CollapseSequenceOf615PassesUnderSpeculativeFills) {
  Rig r;
  r.warm(kRegion, 16);
  run_collapse(r);
  EXPECT_TRUE(r.sys.clean()) << r.hazards_text();
}

TEST(HazardChecker, CollapseWithoutItsFlushIsFlagged) {
  {
    // Inside the steps every CPU speculatively fills the new 2 MiB leaf, so
    // later accesses hit it instead of walking through the stale PDE: the
    // stale walk cache is still flagged.
    Rig r;
    r.sys.skip_flushes(FlushReason::Collapse);
    r.warm(kRegion, 16);
    run_collapse(r);
    EXPECT_TRUE(r.has_hazard(Hazard::Kind::StaleWalkCache)) << r.hazards_text();
  }
  // Checked at operation boundaries only, an access walks through it and leaks.
  Rig r(eager_speculation(), 2 * GiB, false);
  r.sys.skip_flushes(FlushReason::Collapse);
  r.warm(kRegion, 16);
  const CollapseRun run = run_collapse(r);
  EXPECT_TRUE(r.has_hazard(Hazard::Kind::StaleWalkCache)) << r.hazards_text();
  ASSERT_FALSE(r.sys.leaks().empty()) << r.hazards_text();
  EXPECT_EQ(r.sys.leaks().front().frame, run.old_table);
  std::cout << r.sys.leaks().front().report();
  EXPECT_NE(r.sys.leaks().front().what.find("kernel frame"), std::string::npos);
}

// memfd_secret's fault: the page is removed from the direct map, and the one
// page flush keeps other CPUs from reading it. CPU 1 used the page (then a
// slab page) just before, and speculates on it.
struct SecretRun {
  Pfn page = kNoPfn;
  bool cpu1_leaked = false;
};
SecretRun run_secret_fault(Rig& r) {
  SecretRun out;
  mm::Mm& mm = r.m->mm();
  const mm::Pid pid = mm.spawn(8 * MiB, false, 0);
  const int fd = mm.memfd_secret(pid, 0);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(mm.ftruncate(pid, fd, 4096), 0);
  const Result<std::uint64_t> addr =
      mm.mmap(pid, 4096, mm::kPROT_READ | mm::kPROT_WRITE, mm::kMAP_SHARED, fd, 0);
  EXPECT_TRUE(addr.ok());
  const Pfn q = r.alloc(0, phys::FrameKind::Kernel);
  for (CpuId c = 1; c < kCpus; ++c) r.sys.access(c, q);
  r.sys.op("kfree: the slab page goes back to cpu0's pcp list",
           [&] { r.m->phys().free_pages(q, 0, 0); });
  r.sys.op("secretmem_fault",
           [&] { EXPECT_EQ(mm.touch(pid, addr.value, true), mm::VmFault::Major); });
  out.page = mm.pagemap(pid, addr.value);
  EXPECT_EQ(out.page, q);  // LIFO pcp list: the page CPU 1 just used
  EXPECT_FALSE(r.m->dmap().is_present(out.page));
  out.cpu1_leaked = r.sys.access(1, out.page).leak;  // a stale pointer on CPU 1
  r.sys.op("close: secretmem frees the page", [&] {
    EXPECT_EQ(mm.munmap(pid, addr.value, 4096), 0);
    EXPECT_EQ(mm.close(pid, fd), 0);
  });
  return out;
}

TEST(HazardChecker, SecretPageRemovedWithItsFlushIsClean) {
  Rig r(eager_speculation(0));
  const SecretRun run = run_secret_fault(r);
  EXPECT_FALSE(run.cpu1_leaked);
  EXPECT_TRUE(r.sys.clean()) << r.hazards_text();
}

TEST(HazardChecker, SecretPageFreedWithoutTheFlushItsRemovalNeededIsFlagged) {
  Rig r(eager_speculation(0));
  r.sys.skip_flushes(FlushReason::KernelRange);
  const SecretRun run = run_secret_fault(r);
  EXPECT_TRUE(r.has_hazard(Hazard::Kind::StaleEntry)) << r.hazards_text();
  EXPECT_TRUE(run.cpu1_leaked);
  ASSERT_FALSE(r.sys.leaks().empty());
  EXPECT_EQ(r.sys.leaks().front().frame, run.page);
  EXPECT_NE(r.sys.leaks().front().what.find("secret frame"), std::string::npos)
      << r.sys.leaks().front().report();
}

TEST(HazardChecker, ReportsMixedSizeEntriesWithDifferentAttributes) {
  Rig r(SpecConfig{});
  tlb::Translation big;
  big.vpn = kRegion;
  big.pfn = kRegion;
  big.size = tlb::PageSize::k2M;
  big.flags = directmap::PAGE_KERNEL;
  tlb::Translation small = big;
  small.size = tlb::PageSize::k4K;
  small.vpn = small.pfn = kRegion + 9;
  small.flags = directmap::PAGE_KERNEL & ~directmap::_PAGE_RW;  // grants less: not stale
  r.sys.cpu_tlb(2).fill(big, big.vpn);
  r.sys.cpu_tlb(2).fill(small, small.vpn);
  r.sys.scan();
  EXPECT_TRUE(r.has_hazard(Hazard::Kind::MixedSizeAttributes)) << r.hazards_text();
  EXPECT_FALSE(r.has_hazard(Hazard::Kind::StaleEntry)) << r.hazards_text();
}

// ---- Inside the CPA steps: the page-size rules (AMD erratum 383, SDM 4.10.4.2).

// Every CPU speculates three times per trigger on exactly the page it touched.
SpecConfig on_the_page() {
  SpecConfig s;
  s.rate = 3;
  s.reach = 0;
  s.any_recent = true;
  return s;
}
const Pfn kPage = kRegion + 3;

std::string steps_of(const Rig& r) {
  std::string s;
  for (const Hazard& h : r.sys.hazards()) s += "[" + h.step + "] ";
  return s;
}

// __split_large_page(): the new PTEs get the leaf's attributes, the table is
// installed, flush_tlb_all(), and only then __change_page_attr() changes the
// PTE. At the install every CPU holds the old 1G/2M entry and speculatively
// fills the new smaller one: same frame, same attributes, so no hazard.
TEST(HazardChecker, KernelSplitHasNoMixedSizeHazardInsideItsSteps) {
  Rig r(on_the_page());
  r.warm(kPage, 1);
  r.sys.op("set_memory_ro(1 page)", [&] { EXPECT_EQ(r.m->dmap().set_memory_ro(kPage, 1, 0), 0); });
  EXPECT_EQ(r.m->dmap().counters().level3_splits, 1u);
  EXPECT_EQ(r.m->dmap().counters().level2_splits, 1u);
  EXPECT_EQ(r.sys.stats().cpa_steps, 3u);  // 1G -> PMD table, 2M -> PTE table, the PTE
  EXPECT_GT(r.sys.stats().mixed_same_attributes, 0u);  // both sizes were live together
  EXPECT_TRUE(r.sys.clean()) << r.hazards_text();
  EXPECT_EQ(r.m->dmap().lookup(kPage).flags & directmap::_PAGE_RW, 0);
}

// The same call with a split that writes the new attributes into the PTEs it
// installs (not the kernel's order): one write changes both the page size and
// the attributes of kPage while every CPU still holds its 2M entry (SDM), and
// a speculative fill then puts a read-only 4K entry beside the writable 2M one
// (erratum 383), both found at the step itself.
TEST(HazardChecker, SplitThatChangesAttributesInTheSameWriteIsFlaggedAtTheStep) {
  Rig r(on_the_page());
  r.m->dmap().set_split_style(directmap::SplitStyle::NewAttributesInSplit);
  r.warm(kPage, 1);
  r.sys.op("set_memory_ro(1 page)", [&] { EXPECT_EQ(r.m->dmap().set_memory_ro(kPage, 1, 0), 0); });
  EXPECT_EQ(r.m->dmap().lookup(kPage).flags & directmap::_PAGE_RW, 0);
  const Hazard* sdm = r.first(Hazard::Kind::SizeAndAttributeChange);
  ASSERT_NE(sdm, nullptr) << r.hazards_text();
  EXPECT_NE(sdm->step.find("__split_large_page"), std::string::npos) << sdm->describe();
  EXPECT_NE(sdm->describe().find("4.10.4.2"), std::string::npos) << sdm->describe();
  EXPECT_EQ(sdm->entry.size, tlb::PageSize::k2M);
  const Hazard* mixed = r.first(Hazard::Kind::MixedSizeAttributes);
  ASSERT_NE(mixed, nullptr) << r.hazards_text();
  EXPECT_NE(mixed->step.find("__split_large_page"), std::string::npos) << steps_of(r);
  EXPECT_NE(mixed->describe().find("erratum 383"), std::string::npos) << mixed->describe();
  std::cout << sdm->describe() << "\n" << mixed->describe() << "\n";
  EXPECT_TRUE(r.sys.leaks().empty()) << r.hazards_text();
}

// The 6.15 collapse: set_memory_rox() makes the 512 PTEs identical,
// cpa_flush(), then collapse_pmd_page() sets the PMD leaf over the table with
// the PTEs' attributes and cpa_collapse_large_pages() flushes once after it.
// At the set_pmd() CPUs hold 4K entries and fill the 2M one: they agree.
TEST(HazardChecker, CollapseOf615HasNoMixedSizeHazardInsideItsSteps) {
  Rig r(on_the_page());
  r.sys.op("set_memory_ro(1 page)", [&] { EXPECT_EQ(r.m->dmap().set_memory_ro(kPage, 1, 0), 0); });
  r.warm(kPage, 1);
  const std::uint64_t same0 = r.sys.stats().mixed_same_attributes;
  r.sys.op("set_memory_rox(2 MiB): collapse",
           [&] { EXPECT_EQ(r.m->dmap().set_memory_rox(kRegion, kPagesPer2M, 0), 0); });
  EXPECT_EQ(r.m->dmap().counters().level2_collapses, 1u);
  EXPECT_EQ(r.m->dmap().lookup(kPage).level, Level::Pmd2M);
  EXPECT_GT(r.sys.stats().mixed_same_attributes, same0);  // 4K and 2M live together at set_pmd()
  EXPECT_TRUE(r.sys.clean()) << r.hazards_text();
}

// Break-before-make (the SDM's sequence for a page-size change): clear the
// PMD, flush, set the 2M leaf. Another CPU reading a page of the region in the
// window faults, and the direct map has no fault handler for its own
// addresses: this is why 6.15 sets the leaf over the table instead.
struct BbmRun {
  std::uint64_t flushes = 0;  // full flushes the collapse call made
};
BbmRun run_collapse_with_a_reader(Rig& r) {
  BbmRun out;
  r.sys.op("set_memory_ro(1 page)", [&] { EXPECT_EQ(r.m->dmap().set_memory_ro(kPage, 1, 0), 0); });
  r.sys.concurrent_access(1, kRegion + 100);  // cpu1's kernel code reads a page of the region
  const std::uint64_t full0 = r.m->flushes().counters().full_flushes;
  r.sys.op("set_memory_rox(2 MiB): collapse",
           [&] { EXPECT_EQ(r.m->dmap().set_memory_rox(kRegion, kPagesPer2M, 0), 0); });
  out.flushes = r.m->flushes().counters().full_flushes - full0;
  EXPECT_EQ(r.m->dmap().counters().level2_collapses, 1u);
  EXPECT_EQ(r.m->dmap().lookup(kRegion + 100).level, Level::Pmd2M);
  EXPECT_TRUE(r.m->dmap().check().empty()) << testing::join(r.m->dmap().check());
  return out;
}

TEST(HazardChecker, BreakBeforeMakeCollapseFaultsAnotherCpusAccessInTheWindow) {
  Rig r(on_the_page());
  r.m->dmap().set_collapse_style(directmap::CollapseStyle::BreakBeforeMake);
  const BbmRun run = run_collapse_with_a_reader(r);
  EXPECT_EQ(run.flushes, 3u);  // cpa_flush, the window's flush, the final flush_tlb_all
  const Hazard* h = r.first(Hazard::Kind::DirectMapNotPresent);
  ASSERT_NE(h, nullptr) << r.hazards_text();
  EXPECT_EQ(h->cpu, 1u);
  EXPECT_EQ(h->entry.vpn, kRegion + 100);
  EXPECT_NE(h->step.find("break-before-make collapse: the PMD cleared"), std::string::npos)
      << h->describe();
  EXPECT_NE(h->describe().find("access in the break-before-make window faults"),
            std::string::npos);
  std::cout << h->describe() << "\n";
  // It is the only kind: break-before-make keeps the page-size rules.
  for (const Hazard& x : r.sys.hazards()) {
    EXPECT_EQ(x.kind, Hazard::Kind::DirectMapNotPresent) << x.describe();
  }
}

TEST(HazardChecker, CollapseOf615WithTheSameConcurrentAccessIsClean) {
  Rig r(on_the_page());
  const BbmRun run = run_collapse_with_a_reader(r);
  EXPECT_EQ(run.flushes, 2u);  // cpa_flush and the collapse's flush_tlb_all
  EXPECT_GT(r.sys.stats().accesses, 0u);
  EXPECT_TRUE(r.sys.clean()) << r.hazards_text();
}

// VM_LOCAL_CPU (2018): a mapping used from one CPU is invalidated on that CPU
// only. A second thread of the mm on CPU 1 speculatively cached it.
enum class Unmap { LocalOnly, Shootdown };
struct LocalCpuRun {
  Pfn page = kNoPfn;
  bool cpu1_leaked = false;
};
LocalCpuRun run_vm_local_cpu(Rig& r, Unmap how, bool second_thread) {
  LocalCpuRun out;
  constexpr std::uint64_t kVpn = 0x7f0000;
  const tlb::Asid mm = r.sys.new_user_space();
  r.sys.run(0, mm);
  if (second_thread) r.sys.run(1, mm);
  out.page = r.alloc(0, phys::FrameKind::User);
  r.sys.op("mmap + fault: VM_LOCAL_CPU mapping",
           [&] { r.sys.map_user(mm, kVpn, out.page, directmap::PAGE_KERNEL); });
  r.sys.user_access(0, mm, kVpn);
  r.sys.speculate_all();  // CPUs running the mm speculate on its recent addresses
  r.sys.op("munmap + free the page", [&] {
    r.sys.unmap_user(mm, kVpn);
    if (how == Unmap::LocalOnly) {
      r.sys.flush_user_local(0, mm, kVpn, 1);
    } else {
      r.sys.flush_user_shootdown(0, mm, kVpn, 1);
    }
    r.m->phys().free_pages(out.page, 0, 0);
  });
  r.sys.op("the page is reused as a page table",
           [&] { EXPECT_EQ(r.alloc(0, phys::FrameKind::PageTable), out.page); });
  if (second_thread) out.cpu1_leaked = r.sys.user_access(1, mm, kVpn).leak;
  return out;
}

TEST(HazardChecker, VmLocalCpuLetsAnotherCpusSpeculativeEntryReachAReusedPageTable) {
  Rig r(eager_speculation(0));
  const LocalCpuRun run = run_vm_local_cpu(r, Unmap::LocalOnly, true);
  EXPECT_TRUE(run.cpu1_leaked);
  ASSERT_FALSE(r.sys.leaks().empty());
  const tlb::Leak& leak = r.sys.leaks().front();
  EXPECT_EQ(leak.cpu, 1u);
  EXPECT_EQ(leak.frame, run.page);
  EXPECT_NE(leak.what.find("speculative"), std::string::npos) << leak.report();
  EXPECT_NE(leak.what.find("page-table frame"), std::string::npos) << leak.report();
  std::cout << leak.report();
}

TEST(HazardChecker, VmLocalCpuTwinWithAFullShootdownIsClean) {
  Rig r(eager_speculation(0));
  const LocalCpuRun run = run_vm_local_cpu(r, Unmap::Shootdown, true);
  EXPECT_FALSE(run.cpu1_leaked);
  EXPECT_TRUE(r.sys.clean()) << r.hazards_text();
  EXPECT_EQ(r.sys.stats().ipis, 1u);
}

TEST(HazardChecker, VmLocalCpuIsSafeWhenTheMmOnlyEverRanOnThatCpu) {
  Rig r(eager_speculation(0));
  run_vm_local_cpu(r, Unmap::LocalOnly, false);
  EXPECT_TRUE(r.sys.ran_only_on(1, 0));
  EXPECT_TRUE(r.sys.clean()) << r.hazards_text();
  EXPECT_EQ(r.sys.stats().ipis, 0u);
}

}  // namespace
}  // namespace exmem::model

namespace exmem::model {
namespace {

// Random sequences of the kernel's own CPA calls, secretmem faults and frees,
// and collapses, under speculative fills: the checker never fires.
TEST(HazardChecker, RandomKernelSequencesWithTheirFlushesStayClean) {
  for (std::uint64_t seed = 1; seed <= 6; ++seed) {
    Rig r(eager_speculation(16));
    std::mt19937_64 rng(seed);
    mm::Mm& mm = r.m->mm();
    const mm::Pid pid = mm.spawn(64 * MiB, false, 0);
    const int fd = mm.memfd_secret(pid, 0);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(mm.ftruncate(pid, fd, 64 * 4096), 0);
    const Result<std::uint64_t> addr =
        mm.mmap(pid, 64 * 4096, mm::kPROT_READ | mm::kPROT_WRITE, mm::kMAP_SHARED, fd, 0);
    ASSERT_TRUE(addr.ok());
    const Pfn lo = bytes_to_pfn(GiB);
    auto pick = [&](Pfn span) { return static_cast<Pfn>(lo + rng() % (kPagesPer1G - span)); };
    for (int step = 0; step < 60; ++step) {
      const Pfn p = pick(64);
      const auto n = static_cast<Pfn>(1 + rng() % 40);  // some above the ceiling
      const auto cpu = static_cast<CpuId>(rng() % kCpus);
      switch (rng() % 6) {
        case 0: r.sys.op("set_memory_ro", [&] { r.m->dmap().set_memory_ro(p, n, cpu); }); break;
        case 1: r.sys.op("set_memory_rw", [&] { r.m->dmap().set_memory_rw(p, n, cpu); }); break;
        case 2: r.sys.op("set_memory_np", [&] { r.m->dmap().set_memory_np(p, n, cpu); }); break;
        case 3: r.sys.op("set_memory_p", [&] { r.m->dmap().set_memory_p(p, n, cpu); }); break;
        case 4: {
          const Pfn region = p & ~(kPagesPer2M - 1);
          r.sys.op("set_memory_rox(2 MiB)",
                   [&] { r.m->dmap().set_memory_rox(region, kPagesPer2M, cpu); });
          break;
        }
        default:
          r.sys.op("secretmem_fault",
                   [&] { mm.touch(pid, addr.value + (rng() % 64) * 4096, true); });
      }
      for (int i = 0; i < 16; ++i) r.sys.access(static_cast<CpuId>(rng() % kCpus), pick(1));
    }
    r.sys.op("close the secretmem file", [&] {
      EXPECT_EQ(mm.munmap(pid, addr.value, 64 * 4096), 0);
      EXPECT_EQ(mm.close(pid, fd), 0);
    });
    EXPECT_TRUE(r.sys.clean()) << "seed " << seed << "\n" << r.hazards_text();
    EXPECT_GT(r.sys.stats().spec_fills, 0u);
    EXPECT_GT(r.m->dmap().counters().level2_splits, 0u);
    EXPECT_GT(mm.stats().faults_major, 0u);
  }
}

// The same sequences, with cpa_flush() left out, are caught.
TEST(HazardChecker, RandomKernelSequencesWithoutCpaFlushAreFlagged) {
  Rig r(eager_speculation(16));
  r.sys.skip_flushes(FlushReason::CpaFlush);
  std::mt19937_64 rng(3);
  const Pfn lo = bytes_to_pfn(GiB);
  for (int step = 0; step < 40 && r.sys.clean(); ++step) {
    const auto p = static_cast<Pfn>(lo + rng() % (kPagesPer1G - 64));
    for (CpuId c = 0; c < kCpus; ++c) r.sys.access(c, p);
    r.sys.op(step % 2 == 0 ? "set_memory_np" : "set_memory_ro", [&] {
      if (step % 2 == 0) {
        r.m->dmap().set_memory_np(p, 1, 0);
      } else {
        r.m->dmap().set_memory_ro(p, 1, 0);
      }
    });
  }
  EXPECT_TRUE(r.has_hazard(Hazard::Kind::StaleEntry)) << r.hazards_text();
}

}  // namespace
}  // namespace exmem::model
