// host/ on this machine's kernel: the memfd_secret call, the diagnosis under a
// seccomp filter that answers ENOSYS, the pagemap frames of a secret mapping,
// and a real RLIMIT_MEMLOCK refusal. The machine must offer memfd_secret.
#include <fcntl.h>
#include <linux/capability.h>
#include <sys/syscall.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

#include <gtest/gtest.h>

#include "host/host.hpp"
#include "support/test_util.hpp"

// Counts the allocations of this program, to hold host to its promise that the
// functions the library calls on its error paths allocate nothing.
std::atomic<unsigned long> g_allocations{0};

void* operator new(std::size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace {

namespace host = exmem::host;

constexpr std::size_t kPages = 64;

TEST(HostKernel, TheLibrarysWordingsAllocateNothing) {
  char why[1024];
  char refusal[1024];
  const unsigned long before = g_allocations.load();
  ASSERT_GT(before, 0U) << "the counting operator new is not in use";
  host::why_secret_unavailable(ENOSYS, why, sizeof why);
  host::word_memlock_refusal(host::memlock_facts(), 1 << 20, EAGAIN, refusal, sizeof refusal);
  const unsigned long after = g_allocations.load();
  EXPECT_EQ(after, before) << "allocations while wording: " << why << " / " << refusal;
  EXPECT_NE(std::string(refusal).find("RLIMIT_MEMLOCK refused the mapping (EAGAIN)"), std::string::npos) << refusal;
  EXPECT_GT(std::strlen(why), 20U) << why;
}

TEST(HostKernel, MemfdSecretWorksHere) {
  const host::SecretFacts f = host::check_secret();
  ASSERT_EQ(f.err, 0) << "memfd_secret is not available: " << host::secret_reason(f);
  const int fd = host::memfd_secret(O_CLOEXEC);
  ASSERT_GE(fd, 0) << host::errno_text(errno);
  ::close(fd);
  char why[512];
  host::why_secret_unavailable(0, why, sizeof why);
  EXPECT_STREQ(why, "available: memfd_secret(O_CLOEXEC) returned a file descriptor");
}

TEST(HostKernel, ASeccompFilterIsNamedAsTheCause) {
  const exmem_test::ChildResult r = exmem_test::run_child([] {
    std::string why_not;
    CHILD_CHECK(exmem_test::block_memfd_secret(&why_not), "cannot install the filter: %s", why_not.c_str());
    const host::SecretFacts f = host::check_secret();
    CHILD_CHECK(f.err == ENOSYS, "memfd_secret gave errno %d under the filter", f.err);
    CHILD_CHECK(f.seccomp_mode == 2U, "Seccomp mode not read as 2");
    char why[1024];
    host::why_secret_unavailable(ENOSYS, why, sizeof why);
    CHILD_CHECK(std::string(why) == host::secret_reason(f), "two wordings of the same facts differ");
    CHILD_CHECK(std::string(why).find("seccomp filter") != std::string::npos, "no seccomp in: %s", why);
    return 0;
  });
  EXPECT_TRUE(r.succeeded()) << r.describe();
}

TEST(HostKernel, PagemapShowsTheFramesOfASecretMapping) {
  const std::size_t ps = host::page_size();
  const int fd = host::memfd_secret(O_CLOEXEC);
  ASSERT_GE(fd, 0) << host::errno_text(errno);
  ASSERT_EQ(::ftruncate(fd, static_cast<off_t>(kPages * ps)), 0);
  void* p = ::mmap(nullptr, kPages * ps, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::close(fd);
  ASSERT_NE(p, MAP_FAILED) << host::errno_text(errno);
  auto* bytes = static_cast<volatile char*>(p);
  for (std::size_t i = 0; i < kPages; ++i) bytes[i * ps] = 1;

  const auto base = reinterpret_cast<std::uintptr_t>(p);
  bool found = false;
  for (const host::Range& r : host::secret_mappings())
    if (r == host::Range{base, base + kPages * ps}) found = true;
  EXPECT_TRUE(found) << "the mapping is not among this process's /secretmem lines";

  const host::Pagemap pm;
  ASSERT_EQ(pm.error(), 0) << host::errno_text(pm.error());
  const host::Frames f = host::frames_of(pm, base, kPages);
  EXPECT_TRUE(f.complete);
  EXPECT_EQ(f.present, kPages);
  const auto status = host::read_text("/proc/self/status");
  const bool admin = status && host::has_cap(host::status_hex(*status, "CapEff").value_or(0), host::kCapSysAdmin);
  if (admin) {
    EXPECT_EQ(f.pfns.size(), kPages) << "as root every present page shows its frame";
    EXPECT_GE(host::distinct_regions(f.pfns, host::frames_shift(std::size_t{2} << 20, ps)), 1U);
  } else {
    EXPECT_TRUE(f.pfns.empty()) << "without CAP_SYS_ADMIN every pfn reads 0";
  }
  ::munmap(p, kPages * ps);
}

TEST(HostKernel, MemlockFactsAreThisProcesss) {
  rlimit rl{};
  ASSERT_EQ(::getrlimit(RLIMIT_MEMLOCK, &rl), 0);
  const host::MemlockFacts m = host::memlock_facts();
  if (rl.rlim_cur == RLIM_INFINITY) {
    EXPECT_FALSE(m.soft.has_value());
  } else {
    EXPECT_EQ(m.soft, static_cast<std::uint64_t>(rl.rlim_cur));
  }
  EXPECT_TRUE(m.caps_known);
  EXPECT_TRUE(m.locked_bytes.has_value());
}

// Drops CAP_IPC_LOCK from this process's effective set (always allowed).
bool drop_ipc_lock() {
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  if (::syscall(SYS_capget, &hdr, data) != 0) return false;
  data[0].effective &= ~(1U << host::kCapIpcLock);
  return ::syscall(SYS_capset, &hdr, data) == 0;
}

// Without CAP_IPC_LOCK and under a 64 KiB limit, mapping 1 MiB of memfd_secret
// is refused with EAGAIN, and the refusal is worded with the real figures.
TEST(HostKernel, ARealRefusalIsWordedWithItsFigures) {
  const exmem_test::ChildResult r = exmem_test::run_child([] {
    CHILD_CHECK(drop_ipc_lock(), "capset: %s", host::errno_text(errno).c_str());
    const rlimit rl{65536, 65536};
    CHILD_CHECK(::setrlimit(RLIMIT_MEMLOCK, &rl) == 0, "setrlimit: %s", host::errno_text(errno).c_str());
    const host::MemlockFacts m = host::memlock_facts();
    CHILD_CHECK(m.caps_known && !m.cap_ipc_lock, "CAP_IPC_LOCK still effective");
    CHILD_CHECK(m.soft == 65536U, "soft limit not read back");
    const int fd = host::memfd_secret(O_CLOEXEC);
    CHILD_CHECK(fd >= 0, "memfd_secret: %s", host::errno_text(errno).c_str());
    CHILD_CHECK(::ftruncate(fd, 1 << 20) == 0, "ftruncate");
    void* p = ::mmap(nullptr, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    const int e = errno;
    CHILD_CHECK(p == MAP_FAILED && e == EAGAIN, "a 1 MiB mapping under a 64 KiB limit was not refused with EAGAIN");
    const std::string s = host::memlock_refusal(m, 1 << 20, e);
    CHILD_CHECK(s.find("(EAGAIN): asked 1048576 bytes (1 MiB), soft limit 64 KiB (65536 bytes)") != std::string::npos,
                "%s", s.c_str());
    return 0;
  });
  EXPECT_TRUE(r.succeeded()) << r.describe();
}

}  // namespace
