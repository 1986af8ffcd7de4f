// Tests of the users of unmapped pages other than memfd_secret: MAP_EXCLUSIVE
// (mm/), the execmem ROX cache and guest_memfd with NO_DIRECT_MAP (users/).
// Each user runs under every policy; the properties check every invariant
// after every operation of random sequences.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "helpers.hpp"
#include "model/machine.hpp"
#include "model/policy/policy.hpp"

namespace exmem::model {
namespace {

using mm::VmFault;
using testing::join;
using testing::leave_only_order0;

constexpr unsigned kExclusiveFlags = mm::kMAP_PRIVATE | mm::kMAP_ANONYMOUS | mm::kMAP_EXCLUSIVE;
constexpr unsigned kRw = mm::kPROT_READ | mm::kPROT_WRITE;

std::vector<std::string> policies() { return policy::Registry::builtin().names(); }

MachineConfig config_for(const std::string& policy, std::uint64_t ram = 256 * MiB) {
  MachineConfig c = testing::small_config(ram);
  c.policy = policy;
  c.policy_params.set("secretmem", 16 * MiB);
  return c;
}

std::uint64_t range_flushes(const Machine& m) { return m.flushes().counters().range_flushes; }

// A page that has left its user: no longer a Secret frame, and either back in
// the direct map or kept unmapped in the policy's pool (an Unmapped frame).
::testing::AssertionResult came_back(const Machine& m, Pfn p) {
  const phys::FrameKind k = m.phys().kind(p);
  if (k == phys::FrameKind::Secret) {
    return ::testing::AssertionFailure() << "pfn " << p << " is still a Secret frame";
  }
  if (!m.dmap().is_present(p) && k != phys::FrameKind::Unmapped) {
    return ::testing::AssertionFailure()
           << "pfn " << p << " is neither in the direct map nor pooled (a "
           << phys::frame_kind_name(m.phys().frame_byte(p)) << " frame)";
  }
  if (m.policy().name() == "upstream" && !m.dmap().is_present(p)) {
    return ::testing::AssertionFailure() << "pfn " << p << " was not restored by upstream";
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult held_unmapped(const Machine& m, Pfn p) {
  if (p == kNoPfn) return ::testing::AssertionFailure() << "no page";
  if (m.phys().kind(p) != phys::FrameKind::Secret) {
    return ::testing::AssertionFailure() << "pfn " << p << " is a "
                                         << phys::frame_kind_name(m.phys().frame_byte(p)) << " frame";
  }
  if (m.dmap().is_present(p)) {
    return ::testing::AssertionFailure() << "pfn " << p << " is present in the direct map";
  }
  return ::testing::AssertionSuccess();
}


// ---------------------------------------------------------------- MAP_EXCLUSIVE

TEST(MapExclusive, PagesLeaveTheDirectMapAtFaultAndComeBackAtUnmapUnderEveryPolicy) {
  for (const std::string& name : policies()) {
    SCOPED_TRACE(name);
    Machine m(config_for(name));
    const mm::Pid pid = m.mm().spawn(0, true);
    const Result<std::uint64_t> a = m.mm().mmap(pid, 8 * kPageSize, kRw, kExclusiveFlags, -1, 0);
    ASSERT_TRUE(a.ok()) << errno_name(a.err);
    std::vector<Pfn> pages;
    for (std::uint64_t i = 0; i < 8; ++i) {
      const Pfn p = m.mm().pagemap(pid, a.value + i * kPageSize);
      EXPECT_TRUE(held_unmapped(m, p)) << "page " << i;
      pages.push_back(p);
    }
    EXPECT_EQ(m.mm().exclusive_pages(), 8u);
    EXPECT_SOUND(m);
    ASSERT_EQ(m.mm().munmap(pid, a.value, 8 * kPageSize), 0);
    for (const Pfn p : pages) EXPECT_TRUE(came_back(m, p));
    EXPECT_EQ(m.mm().exclusive_pages(), 0u);
    EXPECT_EQ(m.mm().stats().exclusive_pages_freed, 8u);
    EXPECT_EQ(m.mm().locked_vm(pid), 0u);
    EXPECT_SOUND(m);
  }
}

TEST(MapExclusive, IsRefusedForAnythingButPrivateAnonymousMemory) {
  Machine m(config_for("upstream"));
  const mm::Pid pid = m.mm().spawn(0, true);
  const int fd = m.mm().memfd_secret(pid, 0);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(m.mm().ftruncate(pid, fd, 4 * kPageSize), 0);
  // A file mapping, private or shared.
  EXPECT_EQ(m.mm().mmap(pid, kPageSize, kRw, mm::kMAP_PRIVATE | mm::kMAP_EXCLUSIVE, fd, 0).err, -EINVAL);
  EXPECT_EQ(m.mm().mmap(pid, kPageSize, kRw, mm::kMAP_SHARED | mm::kMAP_EXCLUSIVE, fd, 0).err, -EINVAL);
  // Shared anonymous memory, and hugetlbfs.
  EXPECT_EQ(m.mm().mmap(pid, kPageSize, kRw, mm::kMAP_SHARED | mm::kMAP_ANONYMOUS | mm::kMAP_EXCLUSIVE, -1, 0).err,
            -EINVAL);
  EXPECT_EQ(m.mm().mmap(pid, kPageSize, kRw, kExclusiveFlags | mm::kMAP_HUGETLB, -1, 0).err, -EINVAL);
  EXPECT_EQ(m.mm().stats().exclusive_mmap_refused, 4u);
  EXPECT_EQ(m.mm().stats().exclusive_mmaps, 0u);
  EXPECT_EQ(m.phys().pages_of_kind(phys::FrameKind::Secret), 0u);
  // Plain anonymous memory is not modelled at all.
  EXPECT_EQ(m.mm().mmap(pid, kPageSize, kRw, mm::kMAP_PRIVATE | mm::kMAP_ANONYMOUS, -1, 0).err, -EOPNOTSUPP);
  EXPECT_TRUE(m.mm().mmap(pid, kPageSize, kRw, kExclusiveFlags, -1, 0).ok());
  EXPECT_SOUND(m);
}

TEST(MapExclusive, ImpliesMapLockedChargedToRlimitMemlock) {
  Machine m(config_for("upstream"));
  const mm::Pid pid = m.mm().spawn(8 * kPageSize, false);
  const Result<std::uint64_t> a = m.mm().mmap(pid, 6 * kPageSize, kRw, kExclusiveFlags, -1, 0);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(m.mm().locked_vm(pid), 6u);
  EXPECT_EQ(m.mm().mmap(pid, 3 * kPageSize, kRw, kExclusiveFlags, -1, 0).err, -EAGAIN);
  EXPECT_EQ(m.mm().exclusive_pages(), 6u);  // the refused mapping took nothing
  EXPECT_TRUE(m.mm().mmap(pid, 2 * kPageSize, kRw, kExclusiveFlags, -1, 0).ok());
  const mm::Pid privileged = m.mm().spawn(8 * kPageSize, true);
  EXPECT_TRUE(m.mm().mmap(privileged, 64 * kPageSize, kRw, kExclusiveFlags, -1, 0).ok());
  EXPECT_SOUND(m);
}

TEST(MapExclusive, ImpliesMapPopulateWithAOnePageFlushEachAsTheRfcDid) {
  Machine m(config_for("upstream"));
  const mm::Pid pid = m.mm().spawn(0, true);
  const std::uint64_t f0 = range_flushes(m);
  const Result<std::uint64_t> a = m.mm().mmap(pid, 5 * kPageSize, mm::kPROT_READ, kExclusiveFlags, -1, 0);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(m.mm().stats().exclusive_faults, 5u);  // all populated at mmap
  EXPECT_EQ(range_flushes(m) - f0, 5u);            // __set_page_user_exclusive(): one page each
  // A PROT_READ mapping gets pages of its own, not the shared zero page.
  std::vector<Pfn> seen;
  for (std::uint64_t i = 0; i < 5; ++i) seen.push_back(m.mm().pagemap(pid, a.value + i * kPageSize));
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(std::unique(seen.begin(), seen.end()), seen.end());
  EXPECT_EQ(m.mm().touch(pid, a.value + 4 * kPageSize, false), VmFault::Minor);
  EXPECT_EQ(m.mm().stats().exclusive_faults, 5u);
  EXPECT_SOUND(m);
}

TEST(MapExclusive, PopulateStopsAtThePageThatCannotBeHadAndMmapStillSucceeds) {
  MachineConfig c = config_for("secretmem-pmd-pool");
  c.policy_params.set("secretmem", 2 * MiB);  // one chunk for the one pool
  Machine m(c);
  const mm::Pid pid = m.mm().spawn(0, true);
  const Result<std::uint64_t> a =
      m.mm().mmap(pid, (kPagesPer2M + 2) * kPageSize, kRw, kExclusiveFlags, -1, 0);
  ASSERT_TRUE(a.ok());  // mm_populate() ignores the failure
  EXPECT_EQ(m.mm().stats().exclusive_faults, kPagesPer2M);
  EXPECT_EQ(m.mm().stats().exclusive_faults_oom, 1u);
  EXPECT_EQ(m.mm().pagemap(pid, a.value + kPagesPer2M * kPageSize), kNoPfn);
  EXPECT_EQ(m.mm().touch(pid, a.value + kPagesPer2M * kPageSize, true), VmFault::Oom);
  EXPECT_SOUND(m);
  EXPECT_EQ(m.mm().exit(pid), 0);
  EXPECT_EQ(m.phys().pages_of_kind(phys::FrameKind::Secret), 0u);
  EXPECT_SOUND(m);
}

TEST(MapExclusive, ForkLeavesTheMappingOutOfTheChildUnlikeSecretmem) {
  for (const std::string& name : policies()) {
    SCOPED_TRACE(name);
    Machine m(config_for(name));
    const mm::Pid parent = m.mm().spawn(0, true);
    const Result<std::uint64_t> x = m.mm().mmap(parent, 4 * kPageSize, kRw, kExclusiveFlags, -1, 0);
    ASSERT_TRUE(x.ok());
    const int fd = m.mm().memfd_secret(parent, 0);
    ASSERT_EQ(m.mm().ftruncate(parent, fd, kPageSize), 0);
    const Result<std::uint64_t> s = m.mm().mmap(parent, kPageSize, kRw, mm::kMAP_SHARED, fd, 0);
    ASSERT_TRUE(s.ok());
    ASSERT_EQ(m.mm().touch(parent, s.value, true), VmFault::Major);
    const Pfn xp = m.mm().pagemap(parent, x.value);
    const Result<mm::Pid> child = m.mm().fork(parent);
    ASSERT_TRUE(child.ok());
    EXPECT_EQ(m.mm().stats().exclusive_not_copied, 1u);
    // The exclusive mapping is not there in the child; the secretmem one is shared.
    EXPECT_EQ(m.mm().pagemap(child.value, x.value), kNoPfn);
    EXPECT_FALSE(m.mm().is_exclusive(child.value, x.value));
    EXPECT_EQ(m.mm().touch(child.value, x.value, false), VmFault::SigSegv);
    EXPECT_EQ(m.mm().pagemap(child.value, s.value), m.mm().pagemap(parent, s.value));
    EXPECT_EQ(m.mm().exclusive_pages(), 4u);  // nothing was copied
    EXPECT_SOUND(m);
    EXPECT_EQ(m.mm().exit(child.value), 0);
    EXPECT_EQ(m.mm().pagemap(parent, x.value), xp);  // the parent's pages stay
    EXPECT_TRUE(held_unmapped(m, xp));
    EXPECT_SOUND(m);
  }
}

TEST(MapExclusive, MprotectIsAllowedAndThePagesStayOutOfTheDirectMap) {
  for (const std::string& name : policies()) {
    SCOPED_TRACE(name);
    Machine m(config_for(name));
    const mm::Pid pid = m.mm().spawn(0, true);
    const Result<std::uint64_t> a = m.mm().mmap(pid, 4 * kPageSize, kRw, kExclusiveFlags, -1, 0);
    ASSERT_TRUE(a.ok());
    std::vector<Pfn> pages;
    for (std::uint64_t i = 0; i < 4; ++i) pages.push_back(m.mm().pagemap(pid, a.value + i * kPageSize));
    const std::uint64_t flushes0 = m.flushes().counters().range_flushes + m.flushes().counters().full_flushes;
    ASSERT_EQ(m.mm().mprotect(pid, a.value, 4 * kPageSize, 0), 0);  // PROT_NONE
    EXPECT_EQ(m.mm().touch(pid, a.value, false), VmFault::SigSegv);
    // One page made readable: the mapping splits; that page reads, does not write.
    ASSERT_EQ(m.mm().mprotect(pid, a.value + kPageSize, kPageSize, mm::kPROT_READ), 0);
    EXPECT_EQ(m.mm().touch(pid, a.value + kPageSize, false), VmFault::Minor);
    EXPECT_EQ(m.mm().touch(pid, a.value + kPageSize, true), VmFault::SigSegv);
    EXPECT_EQ(m.mm().touch(pid, a.value + 2 * kPageSize, false), VmFault::SigSegv);
    EXPECT_EQ(m.mm().mprotect(pid, a.value, 4 * kPageSize, mm::kPROT_READ | mm::kPROT_EXEC), 0);
    for (std::uint64_t i = 0; i < 4; ++i) {
      EXPECT_EQ(m.mm().pagemap(pid, a.value + i * kPageSize), pages[i]);  // nothing moved
      EXPECT_TRUE(held_unmapped(m, pages[i]));
    }
    EXPECT_EQ(m.flushes().counters().range_flushes + m.flushes().counters().full_flushes, flushes0);
    EXPECT_EQ(m.mm().locked_vm(pid), 4u);
    EXPECT_SOUND(m);
    // The pieces go one by one; the object goes with the last.
    ASSERT_EQ(m.mm().munmap(pid, a.value, 2 * kPageSize), 0);
    EXPECT_EQ(m.mm().exclusive_pages(), 2u);
    EXPECT_TRUE(came_back(m, pages[0]));
    EXPECT_TRUE(came_back(m, pages[1]));
    EXPECT_TRUE(held_unmapped(m, pages[2]));
    EXPECT_SOUND(m);
    ASSERT_EQ(m.mm().exit(pid), 0);
    EXPECT_TRUE(came_back(m, pages[2]));
    EXPECT_TRUE(came_back(m, pages[3]));
    EXPECT_SOUND(m);
  }
}

TEST(MapExclusive, MprotectRefusesHolesAndBadArguments) {
  Machine m(config_for("upstream"));
  const mm::Pid pid = m.mm().spawn(0, true);
  const Result<std::uint64_t> a = m.mm().mmap(pid, 2 * kPageSize, kRw, kExclusiveFlags, -1, 0);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(m.mm().mprotect(pid, a.value + 1, kPageSize, mm::kPROT_READ), -EINVAL);
  EXPECT_EQ(m.mm().mprotect(pid, a.value, kPageSize, 0x40), -EINVAL);
  EXPECT_EQ(m.mm().mprotect(pid, a.value, 3 * kPageSize, mm::kPROT_READ), -ENOMEM);  // runs past the end
  EXPECT_EQ(m.mm().touch(pid, a.value, true), VmFault::Minor);  // the failed call changed nothing
  EXPECT_EQ(m.mm().mprotect(pid, a.value, 0, mm::kPROT_READ), 0);
  EXPECT_SOUND(m);
}

TEST(MapExclusive, GetUserPagesIsRefused) {
  for (const std::string& name : policies()) {
    SCOPED_TRACE(name);
    Machine m(config_for(name));
    const mm::Pid pid = m.mm().spawn(0, true);
    const Result<std::uint64_t> a = m.mm().mmap(pid, 2 * kPageSize, kRw, kExclusiveFlags, -1, 0);
    ASSERT_TRUE(a.ok());
    EXPECT_EQ(m.mm().gup(pid, a.value), -EFAULT);
    EXPECT_EQ(m.mm().gup(pid, a.value + kPageSize), -EFAULT);
    EXPECT_EQ(m.mm().stats().gup_refused, 2u);
    EXPECT_TRUE(held_unmapped(m, m.mm().pagemap(pid, a.value)));
  }
}

TEST(MapExclusive, PartialMunmapFreesOnlyTheHole) {
  Machine m(config_for("upstream"));
  const mm::Pid pid = m.mm().spawn(0, true);
  const Result<std::uint64_t> a = m.mm().mmap(pid, 8 * kPageSize, kRw, kExclusiveFlags, -1, 0);
  ASSERT_TRUE(a.ok());
  std::vector<Pfn> pages;
  for (std::uint64_t i = 0; i < 8; ++i) pages.push_back(m.mm().pagemap(pid, a.value + i * kPageSize));
  ASSERT_EQ(m.mm().munmap(pid, a.value + 2 * kPageSize, 3 * kPageSize), 0);
  for (std::uint64_t i = 0; i < 8; ++i) {
    if (i >= 2 && i < 5) {
      EXPECT_TRUE(m.dmap().is_present(pages[i])) << i;
      EXPECT_EQ(m.mm().pagemap(pid, a.value + i * kPageSize), kNoPfn) << i;
      EXPECT_EQ(m.mm().touch(pid, a.value + i * kPageSize, false), VmFault::SigSegv) << i;
    } else {
      EXPECT_TRUE(held_unmapped(m, pages[i])) << i;
      EXPECT_EQ(m.mm().pagemap(pid, a.value + i * kPageSize), pages[i]) << i;
    }
  }
  EXPECT_EQ(m.mm().locked_vm(pid), 5u);
  EXPECT_EQ(m.mm().exclusive_pages(), 5u);
  EXPECT_SOUND(m);
  ASSERT_EQ(m.mm().exec(pid), 0);  // execve() drops the rest
  EXPECT_EQ(m.mm().exclusive_pages(), 0u);
  for (const Pfn p : pages) EXPECT_TRUE(m.dmap().is_present(p));
  EXPECT_SOUND(m);
}

// ---------------------------------------------------------------- execmem ROX cache

// execmem_cache_populate() calls set_memory_rox() on the vmalloc address: the
// direct map changes only as cpa_process_alias() changes it, RW and DIRTY
// cleared and NX kept ("Directmap always has NX set"), with force_flush_all:
// every flush of the call is flush_tlb_all(), never a range.
TEST(Execmem, PopulateThroughCpaProcessAliasKeepsNxAndFlushesEverything) {
  for (const std::string& name : policies()) {
    SCOPED_TRACE(name);
    Machine m(config_for(name));
    const auto splits2 = m.dmap().counters().level2_splits;
    const auto range0 = m.flushes().counters().range_flushes;
    const auto full0 = m.flushes().counters().full_flushes;
    const Result<std::uint64_t> a = m.execmem().alloc(kPagesPer2M, 0);  // one whole block
    ASSERT_TRUE(a.ok()) << errno_name(a.err);
    EXPECT_GE(a.value, users::kModulesVaddr);
    EXPECT_EQ(m.execmem().stats().populates_huge, 1u);
    const Pfn p = m.execmem().pfn_of(a.value);
    ASSERT_NE(p, kNoPfn);
    ASSERT_EQ(p % kPagesPer2M, 0u);
    for (const Pfn q : {p, p + 7, p + kPagesPer2M - 1}) {
      const directmap::Lookup l = m.dmap().lookup(q);
      EXPECT_EQ(l.level, directmap::Level::Pmd2M) << q;  // a whole leaf changes in place
      EXPECT_TRUE(l.present()) << q;
      EXPECT_EQ(l.flags & (directmap::_PAGE_RW | directmap::_PAGE_DIRTY), 0) << q;
      EXPECT_NE(l.flags & directmap::_PAGE_NX, 0) << q;  // never executable in the direct map
    }
    EXPECT_EQ(m.dmap().counters().level2_splits, splits2);
    EXPECT_EQ(m.flushes().counters().range_flushes, range0);  // force_flush_all
    // populate's set_memory_rox, then the load's set_memory_nx, set_memory_rw
    // and set_memory_rox (execmem_alloc_rw(), execmem_restore_rox()).
    EXPECT_EQ(m.flushes().counters().full_flushes - full0, 4u);
    for (std::uint64_t i = 0; i < 16; ++i) EXPECT_EQ(m.execmem().pfn_of(a.value + i * kPageSize), p + i);
    EXPECT_SOUND(m);
    // The only load goes: the 2 MiB page is wholly free and goes back, RW again
    // (set_direct_map_valid_noflush(): PRESENT|RW, DIRTY stays clear).
    ASSERT_EQ(m.execmem().free(a.value, 0), 0);
    EXPECT_EQ(m.execmem().stats().releases, 1u);
    EXPECT_EQ(m.execmem().cached_pages(), 0u);
    const directmap::Lookup l = m.dmap().lookup(p);
    EXPECT_EQ(l.level, directmap::Level::Pmd2M);
    EXPECT_TRUE(l.present());
    EXPECT_NE(l.flags & directmap::_PAGE_RW, 0);
    EXPECT_NE(l.flags & directmap::_PAGE_NX, 0);
    EXPECT_EQ(l.flags & directmap::_PAGE_DIRTY, 0);
    EXPECT_NE(m.phys().kind(p), phys::FrameKind::Kernel);
    EXPECT_EQ(m.flushes().counters().range_flushes, range0);
    EXPECT_SOUND(m);
  }
}

// module_memory_alloc() -> execmem_alloc_rw() -> execmem_force_rw()
// (set_memory_nx(), set_memory_rw()) on part of a cached 2 MiB page: through
// cpa_process_alias() set_memory_rw() splits the direct-map 2 MiB leaf, and
// execmem_restore_rox() (set_memory_rox(), CPA_COLLAPSE on the vmalloc range
// only) does not collapse it.
TEST(Execmem, APartialLoadSplitsThe2MiBAliasLeafThroughExecmemForceRw) {
  Machine m(config_for("upstream"));
  const auto splits2 = m.dmap().counters().level2_splits;
  const Result<std::uint64_t> a = m.execmem().alloc(16, 0);
  ASSERT_TRUE(a.ok());
  const Pfn p = m.execmem().pfn_of(a.value);
  const Pfn chunk = p & ~(kPagesPer2M - 1);
  EXPECT_EQ(m.dmap().counters().level2_splits, splits2 + 1);
  for (const Pfn q : {chunk, p, p + 15, chunk + kPagesPer2M - 1}) {
    const directmap::Lookup l = m.dmap().lookup(q);
    EXPECT_EQ(l.level, directmap::Level::Pte4K) << q;
    EXPECT_EQ(l.flags & (directmap::_PAGE_RW | directmap::_PAGE_DIRTY), 0) << q;
    EXPECT_NE(l.flags & directmap::_PAGE_NX, 0) << q;
  }
  // The 512 PTEs are uniform again, but nothing collapses the direct map.
  EXPECT_EQ(m.dmap().counters().level2_collapses, 0u);
  EXPECT_EQ(m.execmem().stats().vmalloc_splits, 1u);     // the vmalloc PMD leaf too ...
  EXPECT_EQ(m.execmem().stats().vmalloc_collapses, 1u);  // ... which set_memory_rox() restores
  EXPECT_SOUND(m);
}

// __execmem_cache_free() (6.17+): execmem_force_rw() then execmem_restore_rox()
// on the freed range. Its set_memory_rw() splits, through the alias, a
// direct-map 2 MiB leaf that a whole-block load left intact, and the leaf
// stays split (the collapse walks only the vmalloc range).
TEST(Execmem, APartialUnloadSplitsA2MiBAliasLeafThatStaysSplit) {
  Machine m(config_for("upstream"));
  const Result<std::uint64_t> whole = m.execmem().alloc(kPagesPer2M, 0);
  ASSERT_TRUE(whole.ok());
  const Pfn chunk = m.execmem().pfn_of(whole.value);
  ASSERT_EQ(m.dmap().lookup(chunk).level, directmap::Level::Pmd2M);
  const auto splits2 = m.dmap().counters().level2_splits;
  // The alias of one freed page, as __execmem_cache_free() of a page-sized
  // module range inside the block sees it: set_memory_nx, _rw, _rox.
  const std::vector<directmap::DirectMap::AliasStep> one{{chunk + 5, 1, true}};
  using Op = directmap::DirectMap::AliasOp;
  const auto cpa0 = m.dmap().counters().cpa_calls;
  ASSERT_EQ(m.dmap().alias_change_page_attr(Op::Nx, one, 0, 0), 0);
  EXPECT_EQ(m.dmap().lookup(chunk).level, directmap::Level::Pmd2M);  // NX is not modified
  ASSERT_EQ(m.dmap().alias_change_page_attr(Op::Rw, one, 0, 0), 0);
  EXPECT_EQ(m.dmap().lookup(chunk).level, directmap::Level::Pte4K);
  EXPECT_EQ(m.dmap().counters().level2_splits, splits2 + 1);
  EXPECT_NE(m.dmap().lookup(chunk + 5).flags & directmap::_PAGE_RW, 0);
  ASSERT_EQ(m.dmap().alias_change_page_attr(Op::Rox, one, 1, 0), 0);
  EXPECT_EQ(m.dmap().counters().cpa_calls - cpa0, 3u);
  EXPECT_EQ(m.dmap().lookup(chunk + 5).flags, m.dmap().lookup(chunk).flags);  // uniform again
  EXPECT_EQ(m.dmap().lookup(chunk).level, directmap::Level::Pte4K);          // and still split
  EXPECT_EQ(m.dmap().counters().level2_collapses, 0u);
  // The same through the cache: two loads in a fresh 2 MiB page, one unloaded.
  const Result<std::uint64_t> b = m.execmem().alloc(64, 1);
  const Result<std::uint64_t> c = m.execmem().alloc(64, 1);
  ASSERT_TRUE(b.ok() && c.ok());
  const Pfn chunk2 = m.execmem().pfn_of(b.value) & ~(kPagesPer2M - 1);
  const auto cpa1 = m.dmap().counters().cpa_calls;
  ASSERT_EQ(m.execmem().free(b.value, 0), 0);
  EXPECT_EQ(m.dmap().counters().cpa_calls - cpa1, 3u);  // force_rw (nx, rw), restore_rox
  EXPECT_EQ(m.execmem().stats().releases, 0u);          // c is still live in the page
  EXPECT_EQ(m.dmap().lookup(chunk2).level, directmap::Level::Pte4K);
  ASSERT_EQ(m.execmem().free(c.value, 0), 0);
  EXPECT_EQ(m.dmap().counters().level2_collapses, 0u);
  ASSERT_EQ(m.execmem().free(whole.value, 0), 0);
  EXPECT_EQ(m.dmap().lookup(chunk).level, directmap::Level::Pte4K);  // for good
  EXPECT_EQ(m.dmap().counters().level2_collapses, 0u);
  EXPECT_SOUND(m);
}

// execmem_cache_populate() never collapses the direct map: a 2 MiB region a
// secret page split before stays split when its frames become ROX text,
// even when its 512 PTEs are uniform (here in the -gd kernel, where the
// restored page got G and D back); set_memory_rox() on the direct-map
// address itself, by contrast, would collapse it (CPA_COLLAPSE on the primary).
TEST(Execmem, PopulateOverARegionASecretPageSplitDoesNotCollapseIt) {
  MachineConfig c = config_for("upstream");
  c.collapse = CollapseMode::ScannerGd;  // restores G and D; no scan runs here
  Machine m(c);
  const mm::Pid pid = m.mm().spawn(0, true);
  const int fd = m.mm().memfd_secret(pid, 0);
  ASSERT_EQ(m.mm().ftruncate(pid, fd, kPageSize), 0);
  const std::uint64_t addr =
      m.mm().mmap(pid, kPageSize, mm::kPROT_READ | mm::kPROT_WRITE, mm::kMAP_SHARED, fd, 0).value;
  ASSERT_EQ(m.mm().touch(pid, addr, true), VmFault::Major);
  const Pfn region = m.mm().pagemap(pid, addr) & ~(kPagesPer2M - 1);
  ASSERT_EQ(m.mm().exit(pid), 0);
  ASSERT_EQ(m.dmap().lookup(region).level, directmap::Level::Pte4K);
  // set_memory_rox(vmalloc address of a huge block at region, 512) -> the alias.
  const std::vector<directmap::DirectMap::AliasStep> block{{region, static_cast<Pfn>(kPagesPer2M), false}};
  ASSERT_EQ(m.dmap().alias_change_page_attr(directmap::DirectMap::AliasOp::Rox, block, 0, 0), 0);
  EXPECT_EQ(m.dmap().lookup(region).level, directmap::Level::Pte4K);
  EXPECT_EQ(m.dmap().lookup(region + 100).flags & directmap::_PAGE_RW, 0);
  EXPECT_EQ(m.dmap().counters().level2_collapses, 0u);
  ASSERT_EQ(m.dmap().set_memory_rox(region, kPagesPer2M, 0), 0);  // the primary: collapses
  EXPECT_EQ(m.dmap().lookup(region).level, directmap::Level::Pmd2M);
  EXPECT_EQ(m.dmap().counters().level2_collapses, 1u);
}

// Loads and unloads of a live cache: the direct map never collapses, and
// every CPA flush of the cache is a full one.
TEST(Execmem, TheCacheServesManyLoadsFromOne2MiBPageAndReusesFreedSpace) {
  Machine m(config_for("upstream"));
  const Result<std::uint64_t> a = m.execmem().alloc(64, 0);
  const Result<std::uint64_t> b = m.execmem().alloc(64, 1);
  const Result<std::uint64_t> c = m.execmem().alloc(64, 0);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(m.execmem().stats().populates, 1u);
  const Pfn chunk = m.execmem().pfn_of(a.value) & ~(kPagesPer2M - 1);
  EXPECT_EQ(m.execmem().pfn_of(b.value) & ~(kPagesPer2M - 1), chunk);
  EXPECT_EQ(m.execmem().pfn_of(c.value) & ~(kPagesPer2M - 1), chunk);
  const std::uint64_t cpa0 = m.dmap().counters().cpa_calls;
  const std::uint64_t range0 = m.flushes().counters().range_flushes;
  ASSERT_EQ(m.execmem().free(b.value, 0), 0);
  EXPECT_EQ(m.execmem().stats().releases, 0u);  // a and c still live in the page
  const Result<std::uint64_t> d = m.execmem().alloc(32, 1);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d.value, b.value);  // first fit: b's old place
  EXPECT_EQ(m.execmem().stats().populates, 1u);
  // An unload and a load: set_memory_nx, set_memory_rw, set_memory_rox each.
  EXPECT_EQ(m.dmap().counters().cpa_calls - cpa0, 6u);
  EXPECT_EQ(m.flushes().counters().range_flushes, range0);
  EXPECT_EQ(m.dmap().counters().level2_collapses, 0u);
  EXPECT_EQ(m.execmem().busy_pages(), 64u + 32 + 64);
  // What no free area fits takes a second 2 MiB page.
  const Result<std::uint64_t> e = m.execmem().alloc(400, 0);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(m.execmem().stats().populates, 2u);
  EXPECT_EQ(m.execmem().areas(), 2u);
  EXPECT_SOUND(m);
  for (const std::uint64_t addr : {a.value, c.value, d.value, e.value}) ASSERT_EQ(m.execmem().free(addr, 0), 0);
  EXPECT_EQ(m.execmem().areas(), 0u);
  EXPECT_EQ(m.execmem().stats().releases, 2u);
  EXPECT_EQ(m.dmap().counters().level2_collapses, 0u);
  EXPECT_SOUND(m);
}

// vfree() of a released cache area frees its vmap area lazily
// (free_vmap_area_noflush()); the next change_page_attr_set_clr() runs
// vm_unmap_aliases(), whose purge flushes that range: one flush for all of it.
TEST(Execmem, AReleasedAreaIsFlushedByTheNextVmUnmapAliases) {
  Machine m(config_for("upstream"));
  const Result<std::uint64_t> a = m.execmem().alloc(kPagesPer2M, 0);
  ASSERT_TRUE(a.ok());
  ASSERT_EQ(m.execmem().free(a.value, 0), 0);
  ASSERT_EQ(m.execmem().stats().releases, 1u);
  EXPECT_EQ(m.dmap().counters().vm_unmap_alias_flushes, 0u);  // set_direct_map_*: no vm_unmap_aliases()
  const Pfn p = m.phys().alloc_pages(phys::GFP_KERNEL, 0, 0, phys::FrameKind::Kernel).value;
  const auto full0 = m.flushes().counters().full_flushes;
  ASSERT_EQ(m.dmap().set_memory_ro(p, 1, 0), 0);
  EXPECT_EQ(m.dmap().counters().vm_unmap_alias_flushes, 1u);
  // the purge (512 pages: above the ceiling), the split, the cpa_flush() range
  EXPECT_GE(m.flushes().counters().full_flushes - full0, 1u);
  ASSERT_EQ(m.dmap().set_memory_rw(p, 1, 0), 0);
  EXPECT_EQ(m.dmap().counters().vm_unmap_alias_flushes, 1u);  // nothing left to purge
}

TEST(Execmem, FallsBackToBasePagesWhenNo2MiBBlockIsFree) {
  Machine m(config_for("upstream"));
  leave_only_order0(m);
  const Result<std::uint64_t> a = m.execmem().alloc(8, 0);
  ASSERT_TRUE(a.ok()) << errno_name(a.err);
  EXPECT_EQ(m.execmem().stats().populates_base_pages, 1u);
  const Pfn p = m.execmem().pfn_of(a.value);
  EXPECT_EQ(m.dmap().lookup(p).level, directmap::Level::Pte4K);
  EXPECT_EQ(m.dmap().lookup(p).flags & directmap::_PAGE_RW, 0);
  EXPECT_SOUND(m);
  ASSERT_EQ(m.execmem().free(a.value, 0), 0);
  EXPECT_NE(m.dmap().lookup(p).flags & directmap::_PAGE_RW, 0);
  EXPECT_NE(m.dmap().lookup(p).flags & directmap::_PAGE_NX, 0);
  EXPECT_EQ(m.execmem().cached_pages(), 0u);
  EXPECT_SOUND(m);
}

// execmem_cache_populate() since 6.17: when vmalloc of round_up(size,
// PMD_SIZE) fails (no order-9 block and not 512 order-0 pages either), it
// retries with alloc_size = size.
TEST(Execmem, PopulateFallsBackToAllocSizeEqualsSize) {
  Machine m(config_for("upstream"));
  leave_only_order0(m);
  // Down to the min watermark for GFP_KERNEL, then 400 pages back: fewer than
  // 512, so the rounded attempt fails; its pages are freed to this CPU's pcp
  // list, which keeps at most pcp->high of them and gives the rest back to the
  // buddy (free_frozen_page_commit()), so the exact attempt passes the
  // watermark. (With only a few pages back they would all stay on the pcp
  // list, below the watermark, and direct reclaim with nothing to reclaim never
  // drains it: __alloc_pages_direct_reclaim() drains only after progress.)
  std::vector<Pfn> held;
  for (Result<Pfn> r = m.phys().alloc_pages(phys::GFP_KERNEL, 0, 0, phys::FrameKind::Kernel); r.ok();
       r = m.phys().alloc_pages(phys::GFP_KERNEL, 0, 0, phys::FrameKind::Kernel)) {
    held.push_back(r.value);
  }
  ASSERT_GE(held.size(), 400u);
  for (std::size_t i = 0; i < 400; ++i) m.phys().free_pages(held[i], 0, 0);
  m.phys().drain_all_pages();
  const Result<std::uint64_t> a = m.execmem().alloc(8, 0);
  ASSERT_TRUE(a.ok()) << errno_name(a.err);
  EXPECT_EQ(m.execmem().stats().populates_exact, 1u);
  EXPECT_EQ(m.execmem().cached_pages(), 8u);
  const Pfn p = m.execmem().pfn_of(a.value);
  EXPECT_EQ(m.dmap().lookup(p).flags & directmap::_PAGE_RW, 0);
  EXPECT_SOUND(m);
  ASSERT_EQ(m.execmem().free(a.value, 0), 0);
  EXPECT_EQ(m.execmem().cached_pages(), 8u);  // never 2 MiB aligned and sized: kept
  EXPECT_SOUND(m);
}

TEST(Execmem, LargeLoadsTakeSeveral2MiBPagesAtOnce) {
  Machine m(config_for("upstream"));
  const Result<std::uint64_t> a = m.execmem().alloc(kPagesPer2M + 10, 0);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(m.execmem().cached_pages(), 2 * kPagesPer2M);
  EXPECT_EQ(m.execmem().areas(), 1u);
  EXPECT_NE(m.execmem().pfn_of(a.value + kPagesPer2M * kPageSize), kNoPfn);
  EXPECT_SOUND(m);
  ASSERT_EQ(m.execmem().free(a.value, 0), 0);
  EXPECT_EQ(m.execmem().cached_pages(), 0u);
  EXPECT_SOUND(m);
}

// execmem_cache_free() whose execmem_force_rw() fails (the alias split finds
// no page for its table) leaves the range busy and pending, as
// pending_free_set() does, instead of handing out pages the failed call left
// writable; execmem_cache_free_slow() frees it once the split can be made
// (the model tries at the next load or unload). Here the failing free is the
// one a failed load makes of its own range.
TEST(Execmem, AnUnloadThatCannotForceRwStaysPendingUntilItCan) {
  Machine m(config_for("upstream"));
  users::ExecmemCache& x = m.execmem();
  const Result<std::uint64_t> a = x.alloc(kPagesPer2M - 8, 0);  // splits its block's alias
  const Result<std::uint64_t> tail = x.alloc(8, 0);               // the block's last 8 pages
  ASSERT_TRUE(a.ok() && tail.ok());
  const Result<std::uint64_t> b = x.alloc(kPagesPer2M, 0);  // a second block, a whole leaf
  ASSERT_TRUE(b.ok());
  const Pfn second = x.pfn_of(b.value);
  ASSERT_EQ(second % kPagesPer2M, 0u);
  ASSERT_EQ(m.dmap().lookup(second).level, directmap::Level::Pmd2M);
  // Both freed: one free area from the first block's tail through the second
  // block, not 2 MiB aligned, so it stays cached; the second leaf stays whole.
  ASSERT_EQ(x.free(tail.value, 0), 0);
  ASSERT_EQ(x.free(b.value, 0), 0);
  ASSERT_EQ(x.areas(), 2u);
  ASSERT_EQ(m.dmap().lookup(second).level, directmap::Level::Pmd2M);
  std::vector<Pfn> held;
  m.phys().drain_all_pages();
  for (const phys::Gfp gfp : {phys::GFP_KERNEL, phys::GFP_ATOMIC}) testing::take_pages(m, gfp, 0, held);
  // The first free area that fits runs from the first block's last 8 pages
  // into the second, whose leaf cannot be split now: the load fails and so
  // does the free of its range.
  const Result<std::uint64_t> c = x.alloc(16, 0);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.err, -ENOMEM);
  EXPECT_EQ(x.stats().pending_frees, 1u);
  EXPECT_EQ(x.pending_pages(), 16u);
  EXPECT_EQ(x.busy_pages(), kPagesPer2M - 8 + 16);
  EXPECT_SOUND(m);
  // Memory back: the next unload frees the pending range first.
  for (const Pfn p : held) ASSERT_EQ(m.phys().free_pages(p, 0, 0), 0);
  ASSERT_EQ(x.free(a.value, 0), 0);
  EXPECT_EQ(x.pending_pages(), 0u);
  EXPECT_GE(x.stats().pending_retries, 1u);
  EXPECT_EQ(x.busy_pages(), 0u);
  EXPECT_EQ(m.dmap().lookup(second).level, directmap::Level::Pte4K);  // split by the retry
  EXPECT_SOUND(m);
}

TEST(Execmem, RejectsBadArguments) {
  Machine m(config_for("upstream"));
  EXPECT_EQ(m.execmem().alloc(0, 0).err, -EINVAL);
  const Result<std::uint64_t> a = m.execmem().alloc(4, 0);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(m.execmem().free(a.value + kPageSize, 0), -EINVAL);  // not the start of a load
  EXPECT_EQ(m.execmem().free(0x1000, 0), -EINVAL);               // not module space
  EXPECT_EQ(m.execmem().free(a.value + 1, 0), -EINVAL);
  EXPECT_EQ(m.execmem().free(a.value, 0), 0);
  EXPECT_EQ(m.execmem().free(a.value, 0), -EINVAL);  // twice
  EXPECT_EQ(m.execmem().pfn_of(a.value), kNoPfn);
  EXPECT_SOUND(m);
}

// ---------------------------------------------------------------- guest_memfd

TEST(GuestMemfd, ATornDownVmRestoresEveryPageUnderEveryPolicy) {
  for (const std::string& name : policies()) {
    SCOPED_TRACE(name);
    Machine m(config_for(name));
    const Result<std::uint32_t> g =
        m.guest_memfd().create(64 * kPageSize, users::kGUEST_MEMFD_FLAG_NO_DIRECT_MAP);
    ASSERT_TRUE(g.ok());
    std::vector<Pfn> pages;
    for (std::uint64_t i = 0; i < 64; ++i) {
      ASSERT_EQ(m.guest_memfd().fault(g.value, i, static_cast<CpuId>(i % 2)), VmFault::Major) << i;
      const Pfn p = m.guest_memfd().pfn(g.value, i);
      EXPECT_TRUE(held_unmapped(m, p)) << i;
      pages.push_back(p);
    }
    EXPECT_EQ(m.guest_memfd().fault(g.value, 3, 0), VmFault::Minor);
    EXPECT_EQ(m.guest_memfd().unmapped_pages(), 64u);
    EXPECT_SOUND(m);
    ASSERT_EQ(m.guest_memfd().release(g.value, 1), 0);
    for (const Pfn p : pages) EXPECT_TRUE(came_back(m, p));
    EXPECT_EQ(m.guest_memfd().unmapped_pages(), 0u);
    EXPECT_EQ(m.guest_memfd().stats().folios_freed, 64u);
    EXPECT_EQ(m.phys().pages_of_kind(phys::FrameKind::Secret), 0u);
    EXPECT_SOUND(m);
  }
}

TEST(GuestMemfd, UpstreamZapsEachFolioWithAOnePageFlush) {
  Machine m(config_for("upstream"));
  const Result<std::uint32_t> g =
      m.guest_memfd().create(8 * kPageSize, users::kGUEST_MEMFD_FLAG_NO_DIRECT_MAP);
  ASSERT_TRUE(g.ok());
  const std::uint64_t f0 = range_flushes(m);
  for (std::uint64_t i = 0; i < 8; ++i) ASSERT_EQ(m.guest_memfd().fault(g.value, i, 0), VmFault::Major);
  EXPECT_EQ(range_flushes(m) - f0, 8u);
  const std::uint64_t f1 = range_flushes(m) + m.flushes().counters().full_flushes;
  ASSERT_EQ(m.guest_memfd().release(g.value, 0), 0);
  EXPECT_EQ(range_flushes(m) + m.flushes().counters().full_flushes, f1);  // restoring needs no flush
  EXPECT_SOUND(m);
}

// A guest_memfd with 2 MiB folios (the huge-page guest_memfd series): a fault
// of any index populates the whole folio that holds it, as
// __filemap_get_folio_mpol() does for a mapping whose minimum folio order is 9
// (the index aligned down, one filemap_alloc_folio() of that order), and
// folio_file_pfn() finds the page inside it; folio_zap_direct_map() removes the
// folio with one set_direct_map_valid_noflush() over its range and one
// flush_tlb_kernel_range(); folio_restore_direct_map() at the release puts the
// range back with no flush.
TEST(GuestMemfd, A2MiBFolioIsOneOrder9BlockZappedAsOneRangeWithOneFlush) {
  Machine m(config_for("upstream"));
  users::GuestMemfd& gm = m.guest_memfd();
  const Result<std::uint32_t> g = gm.create(2 * kPagesPer2M * kPageSize, users::kGUEST_MEMFD_FLAG_NO_DIRECT_MAP,
                                            kPageblockOrder);
  ASSERT_TRUE(g.ok());
  const std::uint64_t flushes0 = range_flushes(m) + m.flushes().counters().full_flushes;
  m.flushes().set_recording(16);
  m.flushes().clear_events();
  const std::uint64_t cpa0 = m.dmap().counters().cpa_calls;
  const std::uint64_t pgalloc0 = m.phys().stats().pgalloc;
  ASSERT_EQ(gm.fault(g.value, kPagesPer2M + 188, 1), VmFault::Major);  // inside the second folio
  EXPECT_EQ(m.phys().stats().pgalloc - pgalloc0, 1u);  // one block (of 512 pages, below)
  EXPECT_EQ(gm.folios(g.value), 1u);
  EXPECT_EQ(gm.unmapped_pages(), kPagesPer2M);
  EXPECT_EQ(gm.stats().faults, 1u);
  const Pfn head = gm.pfn(g.value, kPagesPer2M);
  ASSERT_NE(head, kNoPfn);
  EXPECT_EQ(head % kPagesPer2M, 0u);  // an order-9 block: naturally aligned
  EXPECT_EQ(gm.pfn(g.value, kPagesPer2M + 188), head + 188);  // folio_file_pfn()
  EXPECT_EQ(gm.pfn(g.value, 0), kNoPfn);  // the first folio was not touched
  EXPECT_EQ(m.dmap().counters().cpa_calls - cpa0, 1u);  // one set_direct_map_valid_noflush()
  // One flush_tlb_kernel_range() of the folio's range, which, being above
  // tlb_single_page_flush_ceiling, flushes everything.
  EXPECT_EQ(range_flushes(m) + m.flushes().counters().full_flushes - flushes0, 1u);
  ASSERT_EQ(m.flushes().events().size(), 1u);
  EXPECT_EQ(m.flushes().events()[0].start, head);
  EXPECT_EQ(m.flushes().events()[0].pages, kPagesPer2M);
  EXPECT_TRUE(m.flushes().events()[0].all_cpus);
  for (Pfn p = head; p < head + kPagesPer2M; ++p) ASSERT_TRUE(held_unmapped(m, p)) << p;
  EXPECT_TRUE(m.dmap().is_present(head - 1));              // exactly that range
  EXPECT_TRUE(m.dmap().is_present(head + kPagesPer2M));
  for (const std::uint64_t i : {kPagesPer2M, 2 * kPagesPer2M - 1}) {
    EXPECT_EQ(gm.fault(g.value, i, 0), VmFault::Minor) << i;
  }
  EXPECT_SOUND(m);
  const std::uint64_t flushes1 = range_flushes(m) + m.flushes().counters().full_flushes;
  ASSERT_EQ(gm.release(g.value, 0), 0);
  EXPECT_EQ(range_flushes(m) + m.flushes().counters().full_flushes, flushes1);  // restoring needs no flush
  for (Pfn p = head; p < head + kPagesPer2M; ++p) ASSERT_TRUE(m.dmap().is_present(p)) << p;
  EXPECT_EQ(gm.stats().folios_freed, 1u);
  EXPECT_EQ(gm.unmapped_pages(), 0u);
  EXPECT_EQ(m.phys().pages_of_kind(phys::FrameKind::Secret), 0u);
  EXPECT_SOUND(m);
}

// Policy::alloc_unmapped_folio() of order 9 under every policy: the folio's
// 512 pages are Secret and out of the direct map, every invariant holds, and
// the release gives every page back (mapped again or pooled unmapped); a
// second VM's folios fault after it.
TEST(GuestMemfd, EveryPolicyServesAndTakesBack2MiBFolios) {
  for (const std::string& name : policies()) {
    SCOPED_TRACE(name);
    Machine m(config_for(name));
    users::GuestMemfd& gm = m.guest_memfd();
    for (int vm = 0; vm < 2; ++vm) {
      const Result<std::uint32_t> g =
          gm.create(3 * kPagesPer2M * kPageSize, users::kGUEST_MEMFD_FLAG_NO_DIRECT_MAP, kPageblockOrder);
      ASSERT_TRUE(g.ok());
      std::vector<Pfn> heads;
      for (std::uint64_t f = 0; f < 3; ++f) {
        ASSERT_EQ(gm.fault(g.value, f * kPagesPer2M + 7, static_cast<CpuId>(f % 2)), VmFault::Major) << f;
        const Pfn head = gm.pfn(g.value, f * kPagesPer2M);
        ASSERT_NE(head, kNoPfn);
        EXPECT_EQ(head % kPagesPer2M, 0u);
        for (Pfn p = head; p < head + kPagesPer2M; ++p) ASSERT_TRUE(held_unmapped(m, p)) << p;
        heads.push_back(head);
      }
      EXPECT_EQ(gm.unmapped_pages(), 3 * kPagesPer2M);
      EXPECT_SOUND(m);
      ASSERT_EQ(gm.release(g.value, 1), 0);
      for (const Pfn head : heads) {
        for (Pfn p = head; p < head + kPagesPer2M; ++p) ASSERT_TRUE(came_back(m, p)) << p;
      }
      EXPECT_EQ(m.phys().pages_of_kind(phys::FrameKind::Secret), 0u);
      EXPECT_SOUND(m);
    }
  }
}

TEST(GuestMemfd, AFolioOrderNeedsASizeOfWholeFolios) {
  Machine m(config_for("upstream"));
  users::GuestMemfd& gm = m.guest_memfd();
  EXPECT_EQ(gm.create(kPagesPer2M * kPageSize + kPageSize, users::kGUEST_MEMFD_FLAG_NO_DIRECT_MAP, kPageblockOrder).err,
            -EINVAL);
  EXPECT_EQ(gm.create(4 * MiB, users::kGUEST_MEMFD_FLAG_NO_DIRECT_MAP, kPageblockOrder + 1).err, -EINVAL);
  const Result<std::uint32_t> g = gm.create(4 * MiB, users::kGUEST_MEMFD_FLAG_MMAP, kPageblockOrder);
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(gm.folio_order(g.value), kPageblockOrder);
  ASSERT_EQ(gm.fault(g.value, 3, 0), VmFault::Major);  // without NO_DIRECT_MAP: a mapped User folio
  EXPECT_EQ(gm.mapped_pages(), kPagesPer2M);
  EXPECT_TRUE(m.dmap().is_present(gm.pfn(g.value, 3)));
  EXPECT_SOUND(m);
  ASSERT_EQ(gm.release(g.value, 0), 0);
  EXPECT_EQ(gm.mapped_pages(), 0u);
  EXPECT_SOUND(m);
}

TEST(GuestMemfd, WithoutNoDirectMapFoliosStayInTheDirectMap) {
  Machine m(config_for("upstream"));
  const Result<std::uint32_t> g = m.guest_memfd().create(4 * kPageSize, users::kGUEST_MEMFD_FLAG_MMAP);
  ASSERT_TRUE(g.ok());
  ASSERT_EQ(m.guest_memfd().fault(g.value, 0, 0), VmFault::Major);
  const Pfn p = m.guest_memfd().pfn(g.value, 0);
  EXPECT_TRUE(m.dmap().is_present(p));
  EXPECT_EQ(m.phys().kind(p), phys::FrameKind::User);
  EXPECT_EQ(m.guest_memfd().mapped_pages(), 1u);
  EXPECT_EQ(m.guest_memfd().unmapped_pages(), 0u);
  EXPECT_SOUND(m);
  ASSERT_EQ(m.guest_memfd().release(g.value, 0), 0);
  EXPECT_NE(m.phys().kind(p), phys::FrameKind::User);
  EXPECT_SOUND(m);
}

TEST(GuestMemfd, RefusesBadSizesFlagsAndIndexes) {
  Machine m(config_for("upstream"));
  users::GuestMemfd& gm = m.guest_memfd();
  EXPECT_EQ(gm.create(0, users::kGUEST_MEMFD_FLAG_NO_DIRECT_MAP).err, -EINVAL);
  EXPECT_EQ(gm.create(kPageSize + 1, users::kGUEST_MEMFD_FLAG_NO_DIRECT_MAP).err, -EINVAL);
  EXPECT_EQ(gm.create(kPageSize, std::uint64_t{1} << 7).err, -EINVAL);
  const Result<std::uint32_t> g = gm.create(2 * kPageSize, users::kGUEST_MEMFD_FLAG_NO_DIRECT_MAP);
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(gm.fault(g.value, 2, 0), VmFault::SigBus);  // past the size
  EXPECT_EQ(gm.stats().faults_sigbus, 1u);
  EXPECT_EQ(gm.fault(g.value + 1, 0, 0), VmFault::SigSegv);  // no such file
  EXPECT_EQ(gm.release(g.value, 0), 0);
  EXPECT_EQ(gm.release(g.value, 0), -EBADF);
  EXPECT_EQ(gm.fault(g.value, 0, 0), VmFault::SigSegv);
  EXPECT_EQ(gm.live_files(), 0u);
  EXPECT_SOUND(m);
}

TEST(GuestMemfd, AFaultWithNoMemoryIsOom) {
  MachineConfig c = config_for("secretmem-pmd-pool");
  c.policy_params.set("secretmem", 2 * MiB);
  Machine m(c);
  const Result<std::uint32_t> g =
      m.guest_memfd().create((kPagesPer2M + 1) * kPageSize, users::kGUEST_MEMFD_FLAG_NO_DIRECT_MAP);
  ASSERT_TRUE(g.ok());
  for (std::uint64_t i = 0; i < kPagesPer2M; ++i) ASSERT_EQ(m.guest_memfd().fault(g.value, i, 0), VmFault::Major);
  EXPECT_EQ(m.guest_memfd().fault(g.value, kPagesPer2M, 0), VmFault::Oom);
  EXPECT_EQ(m.guest_memfd().stats().faults_oom, 1u);
  EXPECT_SOUND(m);
}

// ---------------------------------------------------------------- random sequences

enum Op : int {
  kMapExclusive,
  kMunmapPart,
  kMprotectPart,
  kFork,
  kExit,
  kTouch,
  kGup,
  kSecretFile,
  kRoxLoad,
  kRoxUnload,
  kGuestCreate,
  kGuestFault,
  kGuestRelease,
  kNrOps,
};

struct Mapping {
  mm::Pid pid = 0;
  std::uint64_t addr = 0;
  std::uint64_t pages = 0;
};

// Random operations drawn from `ops` on a small machine under a random policy
// and collapse mode; every invariant is checked after every operation, and
// once everything is let go no page is left behind.
void random_sequence(const std::vector<int>& ops) {
  const auto names = policies();
  MachineConfig c = config_for(*rc::gen::elementOf(names), 128 * MiB);
  c.collapse = *rc::gen::element(CollapseMode::None, CollapseMode::RoxOnly, CollapseMode::OnRestore,
                                 CollapseMode::Scanner, CollapseMode::OnRestoreGd, CollapseMode::ScannerGd);
  c.policy_params.set("secretmem", *rc::gen::element(2 * MiB, 8 * MiB));
  Machine m(c);
  mm::Mm& mm = m.mm();
  std::vector<mm::Pid> procs;
  std::vector<Mapping> maps;  // MAP_EXCLUSIVE mappings as created (pieces may be gone)
  std::vector<std::uint64_t> loads;
  std::vector<std::uint32_t> guests;
  const int n = *rc::gen::inRange(1, 80);
  for (int step = 0; step < n; ++step) {
    const int op = *rc::gen::elementOf(ops);
    const auto cpu = static_cast<CpuId>(*rc::gen::inRange(0, 2));
    switch (op) {
      case kMapExclusive: {
        if (procs.empty() || *rc::gen::inRange(0, 4) == 0) procs.push_back(mm.spawn(0, true));
        const mm::Pid pid = procs[*rc::gen::inRange<std::size_t>(0, procs.size())];
        const std::uint64_t pages = *rc::gen::inRange<std::uint64_t>(1, 40);
        const unsigned prot = *rc::gen::element(kRw, mm::kPROT_READ, 0u);
        const Result<std::uint64_t> a = mm.mmap(pid, pages * kPageSize, prot, kExclusiveFlags, -1, 0);
        if (a.ok()) maps.push_back({pid, a.value, pages});
        break;
      }
      case kMunmapPart:
      case kMprotectPart:
      case kTouch:
      case kGup: {
        if (maps.empty()) break;
        const Mapping& x = maps[*rc::gen::inRange<std::size_t>(0, maps.size())];
        const std::uint64_t first = *rc::gen::inRange<std::uint64_t>(0, x.pages);
        const std::uint64_t count = *rc::gen::inRange<std::uint64_t>(1, x.pages - first + 1);
        const std::uint64_t addr = x.addr + first * kPageSize;
        if (op == kMunmapPart) RC_ASSERT(mm.munmap(x.pid, addr, count * kPageSize) == 0 || !mm.alive(x.pid));
        if (op == kMprotectPart) mm.mprotect(x.pid, addr, count * kPageSize, *rc::gen::element(kRw, 0u, mm::kPROT_READ));
        if (op == kTouch) mm.touch(x.pid, addr, *rc::gen::arbitrary<bool>());
        if (op == kGup) RC_ASSERT(mm.gup(x.pid, addr) == (mm.alive(x.pid) ? -EFAULT : -ESRCH));
        break;
      }
      case kFork: {
        if (procs.empty()) break;
        const Result<mm::Pid> child = mm.fork(procs[*rc::gen::inRange<std::size_t>(0, procs.size())]);
        if (child.ok()) procs.push_back(child.value);
        break;
      }
      case kExit: {
        if (procs.empty()) break;
        const std::size_t i = *rc::gen::inRange<std::size_t>(0, procs.size());
        mm.exit(procs[i]);
        procs.erase(procs.begin() + static_cast<std::ptrdiff_t>(i));
        break;
      }
      case kSecretFile: {
        const mm::Pid pid = mm.spawn(0, true);
        procs.push_back(pid);
        const int fd = mm.memfd_secret(pid, 0);
        const std::uint64_t pages = *rc::gen::inRange<std::uint64_t>(1, 40);
        mm.ftruncate(pid, fd, static_cast<std::int64_t>(pages * kPageSize));
        const Result<std::uint64_t> a = mm.mmap(pid, pages * kPageSize, kRw, mm::kMAP_SHARED, fd, 0);
        if (a.ok()) {
          for (std::uint64_t i = 0; i < pages; ++i) mm.touch(pid, a.value + i * kPageSize, true);
        }
        break;
      }
      case kRoxLoad: {
        const Result<std::uint64_t> a = m.execmem().alloc(*rc::gen::inRange<std::uint64_t>(1, 700), cpu);
        if (a.ok()) loads.push_back(a.value);
        break;
      }
      case kRoxUnload: {
        if (loads.empty()) break;
        const std::size_t i = *rc::gen::inRange<std::size_t>(0, loads.size());
        RC_ASSERT(m.execmem().free(loads[i], cpu) == 0);
        loads.erase(loads.begin() + static_cast<std::ptrdiff_t>(i));
        break;
      }
      case kGuestCreate: {
        const std::uint64_t flags = *rc::gen::element(users::kGUEST_MEMFD_FLAG_NO_DIRECT_MAP,
                                                      users::kGUEST_MEMFD_FLAG_NO_DIRECT_MAP | users::kGUEST_MEMFD_FLAG_MMAP,
                                                      std::uint64_t{0});
        const Result<std::uint32_t> g =
            m.guest_memfd().create(*rc::gen::inRange<std::uint64_t>(1, 300) * kPageSize, flags);
        RC_ASSERT(g.ok());
        guests.push_back(g.value);
        break;
      }
      case kGuestFault: {
        if (guests.empty()) break;
        const std::uint32_t g = guests[*rc::gen::inRange<std::size_t>(0, guests.size())];
        const std::uint64_t size = m.guest_memfd().size_pages(g);
        const std::uint64_t from = *rc::gen::inRange<std::uint64_t>(0, size + 1);
        const std::uint64_t count = *rc::gen::inRange<std::uint64_t>(1, 64);
        for (std::uint64_t i = from; i < from + count; ++i) m.guest_memfd().fault(g, i, cpu);
        break;
      }
      case kGuestRelease: {
        if (guests.empty()) break;
        const std::size_t i = *rc::gen::inRange<std::size_t>(0, guests.size());
        RC_ASSERT(m.guest_memfd().release(guests[i], cpu) == 0);
        guests.erase(guests.begin() + static_cast<std::ptrdiff_t>(i));
        break;
      }
      default: break;
    }
    const auto v = m.check();
    if (!v.empty()) RC_FAIL(fmt::format("after step {} (op {}) under {}:\n{}", step, op, c.policy, join(v)));
  }
  // Everything goes; every page comes back from every user.
  for (const mm::Pid pid : procs) mm.exit(pid);
  for (const std::uint64_t a : loads) RC_ASSERT(m.execmem().free(a, 0) == 0);
  for (const std::uint32_t g : guests) RC_ASSERT(m.guest_memfd().release(g, 0) == 0);
  const auto v = m.check();
  if (!v.empty()) RC_FAIL(join(v));
  RC_ASSERT(m.phys().pages_of_kind(phys::FrameKind::Secret) == 0u);
  RC_ASSERT(mm.exclusive_pages() == 0u);
  RC_ASSERT(m.execmem().cached_pages() == 0u);
  RC_ASSERT(m.guest_memfd().unmapped_pages() + m.guest_memfd().mapped_pages() == 0u);
}

RC_GTEST_PROP(UsersProperty, MapExclusiveSequencesKeepEveryInvariantUnderEveryPolicy, ()) {
  random_sequence({kMapExclusive, kMunmapPart, kMprotectPart, kFork, kExit, kTouch, kGup});
}

RC_GTEST_PROP(UsersProperty, ExecmemSequencesKeepEveryInvariantUnderEveryPolicy, ()) {
  random_sequence({kRoxLoad, kRoxLoad, kRoxUnload});
}

RC_GTEST_PROP(UsersProperty, GuestMemfdSequencesKeepEveryInvariantUnderEveryPolicy, ()) {
  random_sequence({kGuestCreate, kGuestFault, kGuestFault, kGuestRelease});
}

RC_GTEST_PROP(UsersProperty, AllUsersTogetherKeepEveryInvariantUnderEveryPolicy, ()) {
  std::vector<int> all;
  for (int op = 0; op < kNrOps; ++op) all.push_back(op);
  random_sequence(all);
}

}  // namespace
}  // namespace exmem::model
