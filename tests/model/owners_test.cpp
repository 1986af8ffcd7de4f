// Tests of the owners of movable and reclaimable pages (mm/process_memory,
// mm/oom_kill, the Machine's phys::PageOwners), pinned to mm/oom_kill.c,
// mm/vmscan.c, mm/migrate.c and mm/secretmem.c.
#include <gtest/gtest.h>
#include <iostream>

#include "helpers.hpp"
#include "model/machine.hpp"
#include "model/mm/oom_kill.hpp"
#include "model/workload/synthetic.hpp"

namespace exmem::model {
namespace {

using mm::VmFault;
using testing::join;
using testing::small_config;

std::unique_ptr<Machine> machine() { return std::make_unique<Machine>(small_config(1 * GiB, false)); }

void expect_checks(const Machine& m) {
  const std::vector<std::string> v = m.check();
  EXPECT_TRUE(v.empty()) << join(v);
}

// n order-0 anonymous pages of pid.
std::vector<mm::PageHandle> anon(Machine& m, mm::Pid pid, unsigned n) {
  std::vector<mm::PageHandle> out;
  for (unsigned i = 0; i < n; ++i) {
    const auto h = m.mm().memory().alloc_anon(pid, phys::GFP_HIGHUSER_MOVABLE, 0, 0);
    EXPECT_TRUE(h.ok());
    out.push_back(h.value);
  }
  return out;
}

struct Secret {
  mm::Pid pid = 0;
  int fd = -1;
  std::uint64_t addr = 0;
};

Secret make_secret(mm::Mm& m, mm::Pid pid, std::uint64_t pages) {
  Secret s;
  s.pid = pid;
  s.fd = m.memfd_secret(pid, mm::kO_CLOEXEC);
  EXPECT_GE(s.fd, 0);
  EXPECT_EQ(m.ftruncate(pid, s.fd, static_cast<std::int64_t>(pages * kPageSize)), 0);
  const auto a = m.mmap(pid, pages * kPageSize, mm::kPROT_READ | mm::kPROT_WRITE, mm::kMAP_SHARED, s.fd, 0);
  EXPECT_TRUE(a.ok());
  s.addr = a.value;
  return s;
}

// oom_badness(): rss + swap entries + page tables, plus oom_score_adj *
// totalpages / 1000; OOM_SCORE_ADJ_MIN is never chosen.
TEST(OomKill, OomBadnessIsRssPlusPageTablesPlusScaledAdj) {
  auto m = machine();
  mm::Mm& mm = m->mm();
  const mm::Pid a = mm.spawn();
  const mm::Pid b = mm.spawn();
  anon(*m, a, 600);  // 600 pages: 2 page-table pages
  anon(*m, b, 100);
  Secret s = make_secret(mm, b, 8);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(mm.touch(b, s.addr + i * kPageSize, true), VmFault::Major);
  const std::uint64_t total = 1'000'000;
  EXPECT_EQ(mm.rss(a), 600u);
  EXPECT_EQ(mm.rss(b), 108u);  // secretmem pages count as MM_FILEPAGES
  EXPECT_EQ(mm.secret_rss(b), 8u);
  EXPECT_EQ(mm::oom_badness(mm, a, total), 602);
  EXPECT_EQ(mm::oom_badness(mm, b, total), 109);
  EXPECT_EQ(mm::select_bad_process(mm, total), a);
  // oom_score_adj 1 adds totalpages / 1000 = 1000 points.
  ASSERT_EQ(mm.set_oom_score_adj(b, 1), 0);
  EXPECT_EQ(mm::oom_badness(mm, b, total), 1109);
  EXPECT_EQ(mm::select_bad_process(mm, total), b);
  EXPECT_EQ(mm.set_oom_score_adj(b, 1001), -EINVAL);
  // OOM_SCORE_ADJ_MIN: never chosen, however large.
  ASSERT_EQ(mm.set_oom_score_adj(b, 0), 0);
  ASSERT_EQ(mm.set_oom_score_adj(a, mm::kOomScoreAdjMin), 0);
  EXPECT_EQ(mm::oom_badness(mm, a, total), mm::kBadnessNever);
  EXPECT_EQ(mm::select_bad_process(mm, total), b);
  // An unkillable task (init, a kernel thread) neither.
  ASSERT_EQ(mm.set_unkillable(b, true), 0);
  EXPECT_EQ(mm::select_bad_process(mm, total), 0);
  expect_checks(*m);
}

// select_bad_process() -> oom_evaluate_task(): a task scoring the same as the
// chosen one replaces it, so the later in for_each_process() order wins a tie.
TEST(OomKill, SelectBadProcessPrefersTheLaterTaskOnATie) {
  auto m = machine();
  mm::Mm& mm = m->mm();
  const mm::Pid a = mm.spawn();
  const mm::Pid b = mm.spawn();
  const mm::Pid c = mm.spawn();
  anon(*m, a, 50);
  anon(*m, b, 50);
  anon(*m, c, 10);
  EXPECT_EQ(mm::select_bad_process(mm, 1000), b);
}

// __oom_kill_process() + __oom_reap_task_mm(): the victim's anonymous pages
// are freed before out_of_memory() returns, its fds are closed; its page
// cache stays cached. A later free of a reaped page is a no-op the caller sees.
TEST(OomKill, KillFreesTheVictimsAnonPagesAndClosesItsFds) {
  auto m = machine();
  mm::Mm& mm = m->mm();
  const mm::Pid big = mm.spawn();
  const mm::Pid small = mm.spawn();
  ASSERT_EQ(mm.set_name(big, "database"), 0);
  std::vector<mm::PageHandle> pages = anon(*m, big, 1000);
  anon(*m, small, 10);
  const auto cache = mm.memory().alloc_cache(big, phys::GFP_HIGHUSER_MOVABLE, 0, 0);
  ASSERT_TRUE(cache.ok());
  Secret s = make_secret(mm, big, 4);
  ASSERT_EQ(mm.touch(big, s.addr, true), VmFault::Major);
  const std::uint64_t user_before = m->phys().pages_of_kind(phys::FrameKind::User);

  ASSERT_TRUE(m->out_of_memory(phys::GFP_KERNEL, 0, 0));
  EXPECT_FALSE(mm.alive(big));
  EXPECT_TRUE(mm.alive(small));
  EXPECT_EQ(m->phys().pages_of_kind(phys::FrameKind::User), user_before - 1000);
  EXPECT_EQ(mm.live_files(), 0u);  // its only fd closed: the file released
  EXPECT_EQ(mm.secret_pages(), 0u);
  EXPECT_EQ(mm.memory().cache_pages(), 1u);  // the page cache outlives the process
  ASSERT_EQ(mm.oom().victims.size(), 1u);
  const mm::OomVictim& v = mm.oom().victims[0];
  EXPECT_EQ(v.pid, big);
  EXPECT_EQ(v.role, "database");
  EXPECT_EQ(v.rss, 1002u);  // 1000 anon + 1 page cache + 1 secret
  EXPECT_EQ(v.secret_pages, 1u);
  EXPECT_EQ(v.badness, 1002 + 2);
  EXPECT_EQ(v.freed, 1001u);  // anon reaped + the secret page
  EXPECT_FALSE(mm.memory().free(pages[0], 0));  // reaped already
  EXPECT_EQ(mm.memory().stats().frees_of_gone, 1u);
  expect_checks(*m);
}

// out_of_memory(): "The OOM killer does not compensate for IO-less reclaim":
// a GFP_NOFS allocation kills no one.
TEST(OomKill, OutOfMemoryKillsNoOneForANoFsAllocation) {
  auto m = machine();
  const mm::Pid a = m->mm().spawn();
  anon(*m, a, 10);
  EXPECT_FALSE(m->out_of_memory(phys::GFP_NOFS, 0, 0));
  EXPECT_TRUE(m->mm().alive(a));
  EXPECT_EQ(m->mm().oom().skipped_nofs, 1u);
}

// A secretmem file lives until its last reference goes (secretmem_release()
// at the final fput()): a holder killed after passing its fd over
// SCM_RIGHTS to a live process leaves the file and its pages in place.
TEST(OomKill, SecretFilePassedToALiveProcessSurvivesTheHoldersKill) {
  auto m = machine();
  mm::Mm& mm = m->mm();
  const mm::Pid holder = mm.spawn();
  const mm::Pid peer = mm.spawn();
  anon(*m, holder, 500);
  Secret s = make_secret(mm, holder, 4);
  for (int i = 0; i < 4; ++i) ASSERT_EQ(mm.touch(holder, s.addr + i * kPageSize, true), VmFault::Major);
  const Result<int> fd = mm.send_fd(holder, s.fd, peer, true);
  ASSERT_TRUE(fd.ok());
  ASSERT_TRUE(m->out_of_memory(phys::GFP_KERNEL, 0, 0));
  EXPECT_FALSE(mm.alive(holder));
  EXPECT_EQ(mm.live_files(), 1u);
  EXPECT_EQ(mm.secret_pages(), 4u);
  // The peer maps it and finds the holder's pages.
  const auto a = mm.mmap(peer, 4 * kPageSize, mm::kPROT_READ, mm::kMAP_SHARED, fd.value, 0);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(mm.touch(peer, a.value + 3 * kPageSize, false), VmFault::Minor);
  expect_checks(*m);
  mm.exit(peer);
  EXPECT_EQ(mm.live_files(), 0u);
  EXPECT_EQ(mm.secret_pages(), 0u);
  expect_checks(*m);
}

// shrink_node(): clean page cache goes from the file LRU oldest first, then
// shrink_slab() frees reclaimable slab; anonymous pages (no swap), secret
// pages and the page cache an mlocked process maps are never reclaimed.
TEST(Reclaim, ShrinkNodeFreesPageCacheOldestFirstNeverAnonSecretOrMlocked) {
  auto m = machine();
  mm::Mm& mm = m->mm();
  mm::ProcessMemory& mem = mm.memory();
  const mm::Pid reader = mm.spawn();
  const mm::Pid locked = mm.spawn();
  mem.set_mlocked(locked, true);
  // mlocked cache sits at the oldest end: reclaim must step over it.
  const mm::PageHandle pinned_by_mlock = mem.alloc_cache(locked, phys::GFP_HIGHUSER_MOVABLE, 0, 0).value;
  std::vector<mm::PageHandle> cache;
  for (int i = 0; i < 8; ++i) cache.push_back(mem.alloc_cache(reader, phys::GFP_HIGHUSER_MOVABLE, 0, 0).value);
  const mm::PageHandle oldest = cache[0];
  anon(*m, reader, 20);
  const auto slab = mem.alloc_slab(phys::GFP_KERNEL_RECLAIMABLE, 0, 0);
  ASSERT_TRUE(slab.ok());
  Secret s = make_secret(mm, reader, 2);
  ASSERT_EQ(mm.touch(reader, s.addr, true), VmFault::Major);
  EXPECT_EQ(mm.rss(reader), 8u + 20u + 1u);

  // Three pages: the three oldest unlocked page-cache pages.
  EXPECT_EQ(m->reclaim(phys::ZONE_NORMAL, 3, 0), 3u);
  EXPECT_EQ(mem.pfn(oldest), kNoPfn);
  EXPECT_EQ(mem.pfn(cache[1]), kNoPfn);
  EXPECT_EQ(mem.pfn(cache[2]), kNoPfn);
  EXPECT_NE(mem.pfn(cache[3]), kNoPfn);
  EXPECT_EQ(mm.rss(reader), 5u + 20u + 1u);
  // Everything reclaimable: the rest of the cache, then the slab; nothing else.
  EXPECT_EQ(m->reclaim(phys::ZONE_NORMAL, 1000, 0), 5u + 1u);
  EXPECT_NE(mem.pfn(pinned_by_mlock), kNoPfn);
  EXPECT_EQ(mem.pfn(slab.value), kNoPfn);
  EXPECT_EQ(mm.memory().anon_pages(reader), 20u);
  EXPECT_EQ(mm.secret_pages(), 1u);
  EXPECT_EQ(m->reclaim_stats().cache_pages, 8u);
  EXPECT_EQ(m->reclaim_stats().slab_pages, 1u);
  EXPECT_FALSE(mem.free(oldest, 0));  // reclaimed: the caller's free is a no-op
  EXPECT_TRUE(mem.free(pinned_by_mlock, 0));
  expect_checks(*m);
}

// migrate_pages() -> move_to_new_folio(): the owner's record follows the
// folio, so a later free frees the new pfn; a long-term pinned folio
// (folio_maybe_dma_pinned()) and a pfn nobody owns are refused.
TEST(Migrate, OwnerFollowsTheBlockSoALaterFreeFreesTheNewPfn) {
  auto m = machine();
  mm::ProcessMemory& mem = m->mm().memory();
  const mm::Pid p = m->mm().spawn();
  const mm::PageHandle h = mem.alloc_anon(p, phys::GFP_HIGHUSER_MOVABLE, 0, 0).value;
  const Pfn from = mem.pfn(h);
  // What compaction does: a target of the same kind, migrate, free the source.
  const Pfn to = m->phys().alloc_pages(phys::GFP_HIGHUSER_MOVABLE, 0, 1, phys::FrameKind::User).value;
  ASSERT_TRUE(m->migrate(from, to, 0));
  ASSERT_EQ(m->phys().free_pages(from, 0, 0), 0);
  EXPECT_EQ(mem.pfn(h), to);
  expect_checks(*m);
  EXPECT_TRUE(mem.free(h, 0));
  EXPECT_NE(m->phys().kind(to), phys::FrameKind::User);
  expect_checks(*m);

  // Pinned: refused, the record stays.
  const mm::PageHandle pinned = mem.alloc_cache(p, phys::GFP_HIGHUSER_MOVABLE, 0, 0).value;
  mem.set_pinned(pinned, true);
  const Pfn at = mem.pfn(pinned);
  EXPECT_FALSE(m->migrate(at, to, 0));
  EXPECT_EQ(mem.pfn(pinned), at);
  EXPECT_FALSE(m->migrate(to, at, 0));  // not an owned block
  EXPECT_EQ(mem.stats().migrate_refused, 2u);
  expect_checks(*m);
}

// A policy standing between Mm and the machine's policy that, like
// __alloc_pages_may_oom() inside the fault's folio_alloc(), runs the OOM
// killer before the allocation succeeds (from the reserves, ALLOC_OOM).
class OomInFaultPolicy final : public policy::Policy {
 public:
  OomInFaultPolicy(policy::Policy& inner, mm::Mm*& mm) : inner_(inner), mm_(mm) {}
  Result<Pfn> alloc_secret_page(CpuId cpu, policy::Owner owner) override {
    if (kill_next) {
      kill_next = false;
      killed = mm::out_of_memory(*mm_, phys::GFP_HIGHUSER, 0, 1000, cpu);
    }
    return inner_.alloc_secret_page(cpu, owner);
  }
  void free_secret_page(Pfn pfn, CpuId cpu, policy::Owner owner) override { inner_.free_secret_page(pfn, cpu, owner); }
  void release_file(policy::Owner owner, CpuId cpu) override { inner_.release_file(owner, cpu); }
  bool kill_next = false;
  bool killed = false;

 private:
  policy::Policy& inner_;
  mm::Mm*& mm_;
};

// secretmem_fault() holds the file across its allocation: when that
// allocation's OOM killer picks the faulting process (the file's only
// holder), the fault ends in VM_FAULT_OOM, the file goes with the fault's
// reference, and nothing is used after it was freed (run under ASan).
TEST(OomKill, SecretFaultWhoseAllocationKillsItsOwnProcessReturnsVmFaultOom) {
  auto m = machine();
  mm::Mm* mm_ptr = nullptr;
  OomInFaultPolicy policy(m->policy(), mm_ptr);
  mm::Mm mm(policy, *m, m->phys(), m->dmap(), mm::MmSettings{});
  mm_ptr = &mm;
  const mm::Pid victim = mm.spawn();
  const mm::Pid other = mm.spawn();
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(mm.memory().alloc_anon(victim, phys::GFP_HIGHUSER_MOVABLE, 0, 0).ok());
  ASSERT_TRUE(mm.memory().alloc_anon(other, phys::GFP_HIGHUSER_MOVABLE, 0, 0).ok());
  Secret s = make_secret(mm, victim, 4);
  ASSERT_EQ(mm.touch(victim, s.addr, true), VmFault::Major);
  const std::uint64_t secret_frames = m->phys().pages_of_kind(phys::FrameKind::Secret);

  policy.kill_next = true;
  EXPECT_EQ(mm.touch(victim, s.addr + kPageSize, true), VmFault::Oom);
  EXPECT_TRUE(policy.killed);
  EXPECT_FALSE(mm.alive(victim));
  EXPECT_TRUE(mm.alive(other));
  EXPECT_EQ(mm.live_files(), 0u);
  EXPECT_EQ(mm.secret_pages(), 0u);
  EXPECT_EQ(m->phys().pages_of_kind(phys::FrameKind::Secret), secret_frames - 1);
  EXPECT_EQ(mm.stats().faults_oom_victim, 1u);
  EXPECT_EQ(mm.oom().victims.at(0).pid, victim);
  const std::vector<std::string> v = mm.check();
  EXPECT_TRUE(v.empty()) << join(v);

  // The same with a MAP_EXCLUSIVE mapping populated at mmap: the kill
  // during population stops it, and the object goes.
  const mm::Pid x = mm.spawn();
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(mm.memory().alloc_anon(x, phys::GFP_HIGHUSER_MOVABLE, 0, 0).ok());
  policy.kill_next = true;
  const auto a = mm.mmap(x, 8 * kPageSize, mm::kPROT_READ | mm::kPROT_WRITE,
                         mm::kMAP_PRIVATE | mm::kMAP_ANONYMOUS | mm::kMAP_EXCLUSIVE, -1, 0);
  EXPECT_TRUE(a.ok());
  EXPECT_FALSE(mm.alive(x));
  EXPECT_EQ(mm.exclusive_pages(), 0u);
  const std::vector<std::string> w = mm.check();
  EXPECT_TRUE(w.empty()) << join(w);
}

// The slow path through the Machine's PageOwners: a GFP_KERNEL allocation
// that finds no memory reclaims page cache (__alloc_pages_direct_reclaim()),
// and when there is none left, __alloc_pages_may_oom() kills. The filler
// asks without reclaim and without reserves (no __GFP_RECLAIM,
// __GFP_NOMEMALLOC), so it empties the free lists down to the min watermark,
// and drains the pcp lists it filled: pages left on them sit below the
// watermark, and direct reclaim that made no progress of its own never drains
// them (__alloc_pages_direct_reclaim()).
TEST(Reclaim, FailedAllocationReclaimsThenKills) {
  auto m = machine();
  mm::Mm& mm = m->mm();
  const mm::Pid hog = mm.spawn();
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(mm.memory().alloc_cache(hog, phys::GFP_HIGHUSER_MOVABLE, 0, 0).ok());
  for (int i = 0; i < 600; ++i) ASSERT_TRUE(mm.memory().alloc_anon(hog, phys::GFP_HIGHUSER_MOVABLE, 0, 0).ok());
  auto fill = [&] {
    constexpr phys::Gfp kFiller = (phys::GFP_KERNEL & ~phys::__GFP_RECLAIM) | phys::__GFP_NOMEMALLOC;
    std::uint64_t n = 0;
    while (m->phys().alloc_pages(kFiller, 4, 0, phys::FrameKind::Kernel).ok()) n += 16;
    // Then base pages, with the pcp lists drained until none is left on them.
    for (bool more = true; more;) {
      more = false;
      while (m->phys().alloc_pages(kFiller, 0, 0, phys::FrameKind::Kernel).ok()) {
        ++n;
        more = true;
      }
      if (m->phys().pcp_pages() == 0) break;
      m->phys().drain_all_pages();
    }
    return n;
  };
  ASSERT_GT(fill(), 0u);
  EXPECT_TRUE(m->alloc_pages(phys::GFP_KERNEL, 0, 0, phys::FrameKind::Kernel).ok());
  EXPECT_GT(m->reclaim_stats().cache_pages, 0u);
  EXPECT_TRUE(mm.alive(hog));
  EXPECT_EQ(mm.oom().kills, 0u);
  // No page cache left: the hog is killed and the allocation succeeds.
  mm.memory().reclaim_page_cache(~std::uint64_t{0}, 0);
  fill();
  EXPECT_TRUE(m->alloc_pages(phys::GFP_KERNEL, 0, 0, phys::FrameKind::Kernel).ok());
  EXPECT_FALSE(mm.alive(hog));
  EXPECT_EQ(mm.oom().kills, 1u);
  // A __GFP_NORETRY allocation never reaches the OOM killer.
  const mm::Pid other = mm.spawn();
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(mm.memory().alloc_anon(other, phys::GFP_HIGHUSER_MOVABLE, 0, 0).ok());
  fill();
  EXPECT_FALSE(m->alloc_pages(phys::GFP_KERNEL | phys::__GFP_NORETRY, 0, 0, phys::FrameKind::Kernel).ok());
  EXPECT_EQ(mm.oom().kills, 1u);
  expect_checks(*m);
}

}  // namespace
}  // namespace exmem::model

namespace exmem::model {
namespace {

// Under memory pressure the synthetic workload meets reclaim (the page cache
// and slab its processes made) and the OOM killer (out_of_memory()), notices
// its pages and processes gone, and carries on with every invariant held,
// under every policy.
TEST(OwnersWorkload, PressureReclaimsAndKillsAndKeepsEveryInvariant) {
  std::uint64_t kills = 0;
  for (const std::string& policy : policy::Registry::builtin().names()) {
    SCOPED_TRACE(policy);
    MachineConfig c = small_config(512 * MiB, false, 2);
    c.policy = policy;
    Machine m(c);
    workload::WorkloadConfig wc;
    wc.events = 60000;
    wc.fill = 0.9;
    wc.working_set_pages = 400'000;  // more than is left after the fill
    wc.page_cache_share = 0.1;
    wc.max_secret_file_pages = 16;
    workload::SyntheticWorkload w(m, wc);
    std::uint64_t last = 0;
    const workload::WorkloadResult r = w.run([&](std::uint64_t events) {
      if (events - last < 5000) return;
      last = events;
      const auto v = m.check();
      ASSERT_TRUE(v.empty()) << "after " << events << " events:\n" << join(v);
    });
    EXPECT_GT(m.reclaim_stats().cache_pages, 0u);
    EXPECT_GT(r.frees_of_gone, 0u);
    EXPECT_EQ(r.processes_killed, m.mm().oom().kills);  // every victim was the workload's, and noticed
    kills += m.mm().oom().kills;
    const auto v = m.check();
    EXPECT_TRUE(v.empty()) << join(v);
  }
  EXPECT_GT(kills, 0u);
}

}  // namespace
}  // namespace exmem::model
