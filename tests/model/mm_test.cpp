// Tests of mm/: memfd_secret(2) as merged, pinned to mm/secretmem.c.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include "helpers.hpp"
#include "model/machine.hpp"

namespace exmem::model {
namespace {

using mm::VmFault;
using testing::join;
using testing::small_config;

struct Secret {
  mm::Pid pid = 0;
  int fd = -1;
  std::uint64_t addr = 0;
};

Secret make_secret(Machine& m, std::uint64_t pages, unsigned prot = mm::kPROT_READ | mm::kPROT_WRITE) {
  Secret s;
  s.pid = m.mm().spawn();
  s.fd = m.mm().memfd_secret(s.pid, mm::kO_CLOEXEC);
  EXPECT_GE(s.fd, 0);
  EXPECT_EQ(m.mm().ftruncate(s.pid, s.fd, static_cast<std::int64_t>(pages * kPageSize)), 0);
  const auto a = m.mm().mmap(s.pid, pages * kPageSize, prot, mm::kMAP_SHARED, s.fd, 0);
  EXPECT_TRUE(a.ok()) << errno_name(a.err);
  s.addr = a.value;
  return s;
}

std::unique_ptr<Machine> machine(bool gbpages = false, std::size_t flush_log = 0) {
  MachineConfig c = small_config(1 * GiB, gbpages);
  c.flush_log_limit = flush_log;
  return std::make_unique<Machine>(c);
}

TEST(MemfdSecret, AcceptsOnlyOCloexec) {
  auto m = machine();
  const mm::Pid p = m->mm().spawn();
  EXPECT_GE(m->mm().memfd_secret(p, 0), 0);
  EXPECT_GE(m->mm().memfd_secret(p, mm::kO_CLOEXEC), 0);
  EXPECT_EQ(m->mm().memfd_secret(p, 1), -EINVAL);
  EXPECT_EQ(m->mm().memfd_secret(p, mm::kO_CLOEXEC | 04000), -EINVAL);
}

TEST(MemfdSecret, IsEnosysWhenDisabled) {
  MachineConfig c = small_config();
  c.secretmem_enable = false;
  Machine m(c);
  EXPECT_EQ(m.mm().memfd_secret(m.mm().spawn(), 0), -ENOSYS);
}

TEST(MemfdSecret, FtruncateSetsTheSizeOnlyOnce) {
  auto m = machine();
  const mm::Pid p = m->mm().spawn();
  const int fd = m->mm().memfd_secret(p, 0);
  EXPECT_EQ(m->mm().ftruncate(p, fd, -1), -EINVAL);
  EXPECT_EQ(m->mm().ftruncate(p, fd, 0), 0);
  EXPECT_EQ(m->mm().ftruncate(p, fd, 8192), 0);
  EXPECT_EQ(m->mm().ftruncate(p, fd, 8192), -EINVAL);
  EXPECT_EQ(m->mm().ftruncate(p, fd, 4096), -EINVAL);
  EXPECT_EQ(m->mm().ftruncate(p, fd + 100, 4096), -EBADF);
}

TEST(MemfdSecret, MmapRequiresMapSharedAndRefusesExec) {
  auto m = machine();
  const mm::Pid p = m->mm().spawn();
  const int fd = m->mm().memfd_secret(p, 0);
  ASSERT_EQ(m->mm().ftruncate(p, fd, 4096), 0);
  EXPECT_EQ(m->mm().mmap(p, 4096, mm::kPROT_READ, mm::kMAP_PRIVATE, fd, 0).err, -EINVAL);
  EXPECT_EQ(m->mm().mmap(p, 4096, mm::kPROT_READ | mm::kPROT_EXEC, mm::kMAP_SHARED, fd, 0).err,
            -EPERM);
  EXPECT_EQ(m->mm().mmap(p, 0, mm::kPROT_READ, mm::kMAP_SHARED, fd, 0).err, -EINVAL);
  EXPECT_EQ(m->mm().mmap(p, 4096, mm::kPROT_READ, mm::kMAP_SHARED, fd + 1, 0).err, -EBADF);
  EXPECT_TRUE(m->mm().mmap(p, 4096, mm::kPROT_READ, mm::kMAP_SHARED, fd, 0).ok());
}

TEST(MemfdSecret, MmapIsChargedToRlimitMemlock) {
  auto m = machine();
  const mm::Pid p = m->mm().spawn(64 * KiB);
  const int fd = m->mm().memfd_secret(p, 0);
  ASSERT_EQ(m->mm().ftruncate(p, fd, 1 << 20), 0);
  const auto a = m->mm().mmap(p, 48 * KiB, mm::kPROT_READ, mm::kMAP_SHARED, fd, 0);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(m->mm().locked_vm(p), 12u);
  EXPECT_EQ(m->mm().mmap(p, 32 * KiB, mm::kPROT_READ, mm::kMAP_SHARED, fd, 0).err, -EAGAIN);
  ASSERT_EQ(m->mm().munmap(p, a.value, 48 * KiB), 0);
  EXPECT_EQ(m->mm().locked_vm(p), 0u);
  EXPECT_TRUE(m->mm().mmap(p, 32 * KiB, mm::kPROT_READ, mm::kMAP_SHARED, fd, 0).ok());
  const mm::Pid root = m->mm().spawn(0, true);  // CAP_IPC_LOCK
  const int rfd = m->mm().memfd_secret(root, 0);
  ASSERT_EQ(m->mm().ftruncate(root, rfd, 1 << 20), 0);
  EXPECT_TRUE(m->mm().mmap(root, 1 << 20, mm::kPROT_READ, mm::kMAP_SHARED, rfd, 0).ok());
}

TEST(MemfdSecret, FaultTakesAZeroedPageOutOfTheDirectMapAndFlushesOnePage) {
  auto m = machine(false, 16);
  const Secret s = make_secret(*m, 4);
  EXPECT_EQ(m->mm().touch(s.pid, s.addr, true), VmFault::Major);
  const Pfn pfn = m->mm().pagemap(s.pid, s.addr);
  ASSERT_NE(pfn, kNoPfn);
  EXPECT_EQ(m->phys().kind(pfn), phys::FrameKind::Secret);
  EXPECT_FALSE(m->dmap().is_present(pfn));
  const auto& ev = m->flushes().events();
  ASSERT_FALSE(ev.empty());
  EXPECT_EQ(ev.back().reason, directmap::FlushReason::KernelRange);
  EXPECT_EQ(ev.back().start, pfn);
  EXPECT_EQ(ev.back().pages, 1u);
  EXPECT_TRUE(ev.back().all_cpus);
  EXPECT_EQ(m->mm().touch(s.pid, s.addr + 100, false), VmFault::Minor);
  EXPECT_SOUND(*m);
}

TEST(MemfdSecret, SecretPageInAFresh2MLeafCostsOneSplitAndOnePageTablePage) {
  auto m = machine(false);
  const Secret s = make_secret(*m, 2);
  ASSERT_EQ(m->mm().touch(s.pid, s.addr, true), VmFault::Major);
  EXPECT_EQ(m->dmap().counters().level2_splits, 1u);
  EXPECT_EQ(m->phys().pages_of_kind(phys::FrameKind::PageTable), 1u);
  // A second page in the same 2 MiB leaf costs nothing more.
  ASSERT_EQ(m->mm().touch(s.pid, s.addr + kPageSize, true), VmFault::Major);
  const Pfn a = m->mm().pagemap(s.pid, s.addr);
  const Pfn b = m->mm().pagemap(s.pid, s.addr + kPageSize);
  ASSERT_EQ(a / kPagesPer2M, b / kPagesPer2M);
  EXPECT_EQ(m->dmap().counters().level2_splits, 1u);
  EXPECT_EQ(m->phys().pages_of_kind(phys::FrameKind::PageTable), 1u);
  EXPECT_SOUND(*m);
}

TEST(MemfdSecret, FaultPastTheFileSizeIsSigbus) {
  auto m = machine();
  const mm::Pid p = m->mm().spawn();
  const int fd = m->mm().memfd_secret(p, 0);
  ASSERT_EQ(m->mm().ftruncate(p, fd, 4096), 0);
  const auto a = m->mm().mmap(p, 3 * 4096, mm::kPROT_READ | mm::kPROT_WRITE, mm::kMAP_SHARED, fd, 0);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(m->mm().touch(p, a.value, true), VmFault::Major);
  EXPECT_EQ(m->mm().touch(p, a.value + 4096, true), VmFault::SigBus);
  EXPECT_EQ(m->mm().touch(p, a.value + 3 * 4096, true), VmFault::SigSegv);  // past the mapping
}

TEST(MemfdSecret, WriteToAReadOnlyMappingIsSigsegv) {
  auto m = machine();
  const Secret s = make_secret(*m, 1, mm::kPROT_READ);
  EXPECT_EQ(m->mm().touch(s.pid, s.addr, true), VmFault::SigSegv);
  EXPECT_EQ(m->mm().touch(s.pid, s.addr, false), VmFault::Major);
}

TEST(MemfdSecret, FaultWithNoAllocatablePageIsOomNotSigbus) {
  auto m = machine();
  const Secret s = make_secret(*m, 4);
  // Emptied without reclaim: nothing to reclaim and only the holder to kill.
  while (m->phys().alloc_pages(phys::GFP_HIGHUSER & ~phys::__GFP_RECLAIM, 0, 0, phys::FrameKind::Kernel).ok()) {
  }
  // secretmem_fault()'s folio_alloc() reaches __alloc_pages_may_oom(): the
  // OOM killer chooses the faulting process itself, and the fault returns
  // VM_FAULT_OOM (the victim's fault is the one the kernel fails).
  EXPECT_EQ(m->mm().touch(s.pid, s.addr, true), VmFault::Oom);
  EXPECT_FALSE(m->mm().alive(s.pid));
  EXPECT_EQ(m->mm().oom().kills, 1u);
  EXPECT_SOUND(*m);
}

TEST(MemfdSecret, ReleasingTheLastReferenceRestoresZeroesAndFreesThePages) {
  auto m = machine();
  const Secret s = make_secret(*m, 8);
  for (int i = 0; i < 8; ++i) ASSERT_EQ(m->mm().touch(s.pid, s.addr + i * kPageSize, true), VmFault::Major);
  const Pfn pfn = m->mm().pagemap(s.pid, s.addr);
  ASSERT_EQ(m->mm().close(s.pid, s.fd), 0);
  EXPECT_EQ(m->mm().secret_pages(), 8u);  // the mapping still holds the file
  ASSERT_EQ(m->mm().munmap(s.pid, s.addr, 8 * kPageSize), 0);
  EXPECT_EQ(m->mm().secret_pages(), 0u);
  EXPECT_TRUE(m->dmap().is_present(pfn));
  EXPECT_EQ(m->dmap().lookup(pfn).level, directmap::Level::Pte4K);  // no collapse
  EXPECT_EQ(m->dmap().counters().level2_collapses, 0u);
  EXPECT_SOUND(*m);
}

TEST(MemfdSecret, GupIsRefused) {
  auto m = machine();
  const Secret s = make_secret(*m, 1);
  ASSERT_EQ(m->mm().touch(s.pid, s.addr, true), VmFault::Major);
  EXPECT_EQ(m->mm().gup(s.pid, s.addr), -EFAULT);
  EXPECT_EQ(m->mm().read(s.pid, s.fd), -EINVAL);
}

TEST(MemfdSecret, MapPopulateDoesNotPrefault) {
  auto m = machine();
  const mm::Pid p = m->mm().spawn();
  const int fd = m->mm().memfd_secret(p, 0);
  ASSERT_EQ(m->mm().ftruncate(p, fd, 4 * 4096), 0);
  ASSERT_TRUE(m->mm().mmap(p, 4 * 4096, mm::kPROT_READ, mm::kMAP_SHARED | mm::kMAP_POPULATE, fd, 0).ok());
  EXPECT_EQ(m->mm().secret_pages(), 0u);
}

TEST(MemfdSecret, ForkSharesTheMappingButNotTheMlock) {
  auto m = machine();
  const Secret s = make_secret(*m, 2);
  ASSERT_EQ(m->mm().touch(s.pid, s.addr, true), VmFault::Major);
  const auto child = m->mm().fork(s.pid);
  ASSERT_TRUE(child.ok());
  EXPECT_EQ(m->mm().touch(child.value, s.addr, false), VmFault::Minor);
  EXPECT_EQ(m->mm().pagemap(child.value, s.addr), m->mm().pagemap(s.pid, s.addr));
  EXPECT_EQ(m->mm().touch(child.value, s.addr + kPageSize, true), VmFault::Major);
  EXPECT_EQ(m->mm().touch(s.pid, s.addr + kPageSize, false), VmFault::Minor);
  EXPECT_EQ(m->mm().locked_vm(child.value), 0u);
  EXPECT_EQ(m->mm().locked_vm(s.pid), 2u);
  ASSERT_EQ(m->mm().exit(s.pid), 0);
  EXPECT_EQ(m->mm().secret_pages(), 2u);  // the child keeps the file alive
  ASSERT_EQ(m->mm().exit(child.value), 0);
  EXPECT_EQ(m->mm().secret_pages(), 0u);
  EXPECT_SOUND(*m);
}

TEST(MemfdSecret, DontforkMappingIsNotInheritedAndWipeonforkIsRefused) {
  auto m = machine();
  const Secret s = make_secret(*m, 1);
  EXPECT_EQ(m->mm().madvise(s.pid, s.addr, kPageSize, mm::kMADV_WIPEONFORK), -EINVAL);
  ASSERT_EQ(m->mm().madvise(s.pid, s.addr, kPageSize, mm::kMADV_DONTFORK), 0);
  const auto child = m->mm().fork(s.pid);
  ASSERT_TRUE(child.ok());
  EXPECT_EQ(m->mm().touch(child.value, s.addr, false), VmFault::SigSegv);
}

TEST(MemfdSecret, PassingTheFdSharesTheFileWithTheReceiver) {
  auto m = machine();
  const Secret s = make_secret(*m, 1);
  ASSERT_EQ(m->mm().touch(s.pid, s.addr, true), VmFault::Major);
  const mm::Pid other = m->mm().spawn();
  const auto nfd = m->mm().send_fd(s.pid, s.fd, other, false);
  ASSERT_TRUE(nfd.ok());
  ASSERT_EQ(m->mm().exit(s.pid), 0);
  EXPECT_EQ(m->mm().secret_pages(), 1u);
  const auto a = m->mm().mmap(other, kPageSize, mm::kPROT_READ, mm::kMAP_SHARED, nfd.value, 0);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(m->mm().touch(other, a.value, false), VmFault::Minor);
  EXPECT_EQ(m->mm().ftruncate(other, nfd.value, 8192), -EINVAL);
  EXPECT_SOUND(*m);
}

TEST(MemfdSecret, ExecClosesCloexecDescriptorsAndDropsMappings) {
  auto m = machine();
  const mm::Pid p = m->mm().spawn();
  const int keep = m->mm().memfd_secret(p, 0);
  const int drop = m->mm().memfd_secret(p, mm::kO_CLOEXEC);
  ASSERT_EQ(m->mm().exec(p), 0);
  EXPECT_EQ(m->mm().ftruncate(p, keep, 4096), 0);
  EXPECT_EQ(m->mm().ftruncate(p, drop, 4096), -EBADF);
  EXPECT_EQ(m->mm().live_files(), 1u);
}

TEST(MemfdSecret, HibernationIsUnavailableWhileASecretFileExists) {
  auto m = machine();
  EXPECT_TRUE(m->mm().hibernation_available());
  const mm::Pid p = m->mm().spawn();
  const int fd = m->mm().memfd_secret(p, 0);
  EXPECT_FALSE(m->mm().hibernation_available());
  ASSERT_EQ(m->mm().close(p, fd), 0);
  EXPECT_TRUE(m->mm().hibernation_available());
}

TEST(MemfdSecret, LowestFreeDescriptorIsReused) {
  auto m = machine();
  const mm::Pid p = m->mm().spawn();
  EXPECT_EQ(m->mm().memfd_secret(p, 0), 0);
  EXPECT_EQ(m->mm().memfd_secret(p, 0), 1);
  ASSERT_EQ(m->mm().close(p, 0), 0);
  EXPECT_EQ(m->mm().memfd_secret(p, 0), 0);
}

TEST(MemfdSecret, MprotectCannotMakeTheMappingExecutable) {
  auto m = machine();
  const Secret s = make_secret(*m, 4);
  EXPECT_EQ(m->mm().mprotect(s.pid, s.addr, kPageSize, mm::kPROT_READ | mm::kPROT_EXEC), -EACCES);
  EXPECT_EQ(m->mm().mprotect(s.pid, s.addr + 4 * kPageSize, kPageSize, mm::kPROT_READ), -ENOMEM);
  EXPECT_EQ(m->mm().mprotect(s.pid, s.addr + 100, kPageSize, mm::kPROT_READ), -EINVAL);
  EXPECT_EQ(m->mm().touch(s.pid, s.addr, true), VmFault::Major);  // still writable
  ASSERT_EQ(m->mm().mprotect(s.pid, s.addr, 4 * kPageSize, mm::kPROT_READ), 0);
  EXPECT_EQ(m->mm().touch(s.pid, s.addr, true), VmFault::SigSegv);
  EXPECT_EQ(m->mm().touch(s.pid, s.addr, false), VmFault::Minor);
  EXPECT_SOUND(*m);
}

TEST(MemfdSecret, MprotectSplitsTheMappingAndThePiecesHoldTheFileUntilTheLastGoes) {
  auto m = machine();
  const Secret s = make_secret(*m, 4);
  for (std::uint64_t i = 0; i < 4; ++i) ASSERT_EQ(m->mm().touch(s.pid, s.addr + i * kPageSize, true), VmFault::Major);
  ASSERT_EQ(m->mm().close(s.pid, s.fd), 0);  // the mapping alone holds the file now
  ASSERT_EQ(m->mm().mprotect(s.pid, s.addr + kPageSize, 2 * kPageSize, mm::kPROT_READ), 0);
  EXPECT_EQ(m->mm().touch(s.pid, s.addr, true), VmFault::Minor);
  EXPECT_EQ(m->mm().touch(s.pid, s.addr + kPageSize, true), VmFault::SigSegv);
  EXPECT_EQ(m->mm().touch(s.pid, s.addr + 3 * kPageSize, true), VmFault::Minor);
  EXPECT_EQ(m->mm().locked_vm(s.pid), 4u);
  EXPECT_SOUND(*m);
  ASSERT_EQ(m->mm().munmap(s.pid, s.addr, 3 * kPageSize), 0);
  EXPECT_EQ(m->mm().secret_pages(), 4u);  // the last piece still maps the file
  EXPECT_EQ(m->mm().locked_vm(s.pid), 1u);
  ASSERT_EQ(m->mm().munmap(s.pid, s.addr + 3 * kPageSize, kPageSize), 0);
  EXPECT_EQ(m->mm().secret_pages(), 0u);
  EXPECT_EQ(m->mm().live_files(), 0u);
  EXPECT_SOUND(*m);
}

// Random syscall sequences over a few processes; every invariant after each.
RC_GTEST_PROP(MemfdSecretProperty, RandomSyscallSequencesKeepEveryInvariant, ()) {
  MachineConfig c = small_config(64 * MiB, true, 2);
  c.kernel_image_bytes = 4 * MiB;
  Machine m(c);
  auto& mm = m.mm();
  std::vector<mm::Pid> pids{mm.spawn(), mm.spawn(), mm.spawn()};
  std::vector<std::uint64_t> addrs;
  const auto ops = *rc::gen::container<std::vector<std::tuple<int, int, int, int>>>(
      rc::gen::tuple(rc::gen::inRange(0, 15), rc::gen::inRange(0, 3), rc::gen::inRange(0, 4),
                     rc::gen::inRange(0, 64)));
  for (const auto& [op, pi, fd, x] : ops) {
    const mm::Pid p = pids[static_cast<std::size_t>(pi)];
    const auto ux = static_cast<std::uint64_t>(x);
    switch (op) {
      case 0: mm.memfd_secret(p, x % 2 ? mm::kO_CLOEXEC : 0); break;
      case 1: mm.ftruncate(p, fd, x * 4096); break;
      case 2: {
        const auto a = mm.mmap(p, (ux % 8 + 1) * kPageSize, mm::kPROT_READ | mm::kPROT_WRITE,
                               mm::kMAP_SHARED, fd, 0);
        if (a.ok()) addrs.push_back(a.value);
        break;
      }
      case 3:
      case 4:
      case 5:
        if (!addrs.empty()) mm.touch(p, addrs[ux % addrs.size()] + (ux % 8) * kPageSize, x % 3 != 0);
        break;
      case 6: mm.close(p, fd); break;
      case 7:
        if (!addrs.empty()) mm.munmap(p, addrs[ux % addrs.size()] + (ux % 3) * kPageSize, kPageSize);
        break;
      case 8: {
        const auto ch = mm.fork(p);
        if (ch.ok()) pids[(static_cast<std::size_t>(pi) + 1) % pids.size()] = ch.value;
        break;
      }
      case 9: mm.send_fd(p, fd, pids[(static_cast<std::size_t>(pi) + 1) % pids.size()], x % 2);
        break;
      case 10:
        mm.exit(p);
        pids[static_cast<std::size_t>(pi)] = mm.spawn();
        break;
      case 11: mm.exec(p); break;
      case 12:
        if (!addrs.empty()) mm.madvise(p, addrs[ux % addrs.size()], kPageSize, mm::kMADV_DONTFORK);
        break;
      case 13:
        if (!addrs.empty()) {
          mm.mprotect(p, addrs[ux % addrs.size()] + (ux % 3) * kPageSize, (ux % 4 + 1) * kPageSize,
                      x % 2 ? mm::kPROT_READ : mm::kPROT_READ | mm::kPROT_WRITE);
        }
        break;
      default: m.phys().drain_all_pages(); break;
    }
    const auto v = m.check();
    if (!v.empty()) RC_FAIL(join(v));
  }
}

}  // namespace
}  // namespace exmem::model
