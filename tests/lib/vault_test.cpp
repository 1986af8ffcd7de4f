// Vaults (exmem_vault_*): an exclusive mapping of its own that is PROT_NONE
// while closed. Closed vaults fault on any access and read-only opens fault on
// writes (checked in death-test children, which re-execute this program: a
// fork()ed child could not reach the vault at all, MADV_DONTFORK), opens are
// counted per access, concurrent openers never lose access while they hold it,
// misuse is refused with a message, and vaults live in memfd_secret memory (or
// locked memory under EXMEM_LOCKED_ONLY), count towards the maximum and show in
// exmem_stats. Also the C++ handle, exmem::vault.
#include <exmem/exmem.h>
#include <gtest/gtest.h>
#include <sys/uio.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <exmem/exmem.hpp>
#include <thread>
#include <vector>

#include "support/test_util.hpp"

using namespace exmem_test;

namespace {

// The permissions /proc/self/maps shows for the mapping holding p ("---s"...).
std::string perms_of(const void* p) {
  auto v = vma_of(p);
  return v ? v->perms : std::string("(no mapping)");
}

class Vault : public ::testing::Test {
 protected:
  void SetUp() override {
    REQUIRE_MEMFD_SECRET();
    ASSERT_EQ(exmem_protection(), EXMEM_PROT_SECRET) << last_error_text();
  }
};

TEST_F(Vault, IsPageGranularZeroedClosedAndInAMemfdSecretMapping) {
  exmem_vault* v = exmem_vault_create(10000);
  ASSERT_NE(v, nullptr) << last_error_text();
  EXPECT_EQ(exmem_vault_size(v), round_up(10000, page_size()));
  void* p = exmem_vault_open(v, EXMEM_VAULT_READ_WRITE);
  ASSERT_NE(p, nullptr) << last_error_text();
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % page_size(), 0u);
  EXPECT_TRUE(all_zero(p, exmem_vault_size(v))) << "a new vault is not zeroed";
  auto vma = vma_of(p, true);
  ASSERT_TRUE(vma.has_value());
  EXPECT_TRUE(is_secretmem(*vma)) << "the vault is not memfd_secret memory: " << vma->path;
  EXPECT_EQ(vma->start, reinterpret_cast<uintptr_t>(p)) << "the vault shares its mapping";
  EXPECT_EQ(vma->end - vma->start, exmem_vault_size(v)) << "the vault's mapping is not exactly its pages";
  EXPECT_EQ(vma->rss_kb, vma->size_kb) << "the vault is not pre-faulted";
  // Guard pages on both sides: the neighbouring addresses are in no accessible mapping.
  for (uintptr_t a : {vma->start - 1, vma->end}) {
    auto g = vma_of(reinterpret_cast<void*>(a));
    EXPECT_TRUE(!g || g->perms.substr(0, 3) == "---") << "no guard page at " << std::hex << a << ": " << g->perms;
  }
  fill_pattern(p, exmem_vault_size(v), 5);
  EXPECT_EQ(exmem_vault_close(v, EXMEM_VAULT_READ_WRITE), EXMEM_OK) << last_error_text();
  EXPECT_EQ(perms_of(p), "---s") << "a closed vault must be PROT_NONE";
  const void* q = exmem_vault_open(v, EXMEM_VAULT_READ);
  ASSERT_EQ(q, p) << "a vault keeps its address";
  EXPECT_TRUE(has_pattern(q, exmem_vault_size(v), 5)) << "the vault lost its contents while closed";
  EXPECT_EQ(exmem_vault_close(v, EXMEM_VAULT_READ), EXMEM_OK);
  EXPECT_EQ(exmem_vault_destroy(v), EXMEM_OK) << last_error_text();
  EXPECT_FALSE(vma_of(p) && is_secretmem(*vma_of(p))) << "the vault's mapping survived its destruction";
}

// Open or closed, a memfd_secret vault is out of reach of GUP-based readers
// (control: a plain buffer is read the same way).
TEST_F(Vault, OpenVaultIsHiddenFromProcessVmReadv) {
  exmem_vault* v = exmem_vault_create(4096);
  ASSERT_NE(v, nullptr);
  void* p = exmem_vault_open(v, EXMEM_VAULT_READ_WRITE);
  ASSERT_NE(p, nullptr);
  fill_pattern(p, 64, 12);
  char plain[16] = "plain bytes";
  char buf[16];
  iovec local{buf, sizeof buf};
  iovec remote{plain, sizeof plain};
  ASSERT_EQ(::process_vm_readv(::getpid(), &local, 1, &remote, 1, 0), 16) << std::strerror(errno);
  remote.iov_base = p;
  EXPECT_EQ(::process_vm_readv(::getpid(), &local, 1, &remote, 1, 0), -1) << "the open vault is readable via GUP";
  EXPECT_EQ(exmem_vault_close(v, EXMEM_VAULT_READ_WRITE), EXMEM_OK);
  EXPECT_EQ(::process_vm_readv(::getpid(), &local, 1, &remote, 1, 0), -1) << "the closed vault is readable via GUP";
  EXPECT_EQ(exmem_vault_destroy(v), EXMEM_OK);
}

int read_closed_vault() {
  exmem_vault* v = exmem_vault_create(4096);
  CHILD_CHECK(v != nullptr, "create: %s", last_error_text().c_str());
  auto* p = static_cast<volatile unsigned char*>(exmem_vault_open(v, EXMEM_VAULT_READ_WRITE));
  CHILD_CHECK(p != nullptr, "open: %s", last_error_text().c_str());
  p[0] = 42;
  CHILD_CHECK(p[0] == 42, "the open vault does not hold what was written");
  CHILD_CHECK(exmem_vault_close(v, EXMEM_VAULT_READ_WRITE) == EXMEM_OK, "close: %s", last_error_text().c_str());
  std::fprintf(stderr, "used while open; now reading it closed\n");
  unsigned char c = p[0];
  std::fprintf(stderr, "READ A CLOSED VAULT: %u\n", c);
  return 0;
}

int write_closed_vault() {
  exmem_vault* v = exmem_vault_create(4096);
  CHILD_CHECK(v != nullptr, "create: %s", last_error_text().c_str());
  auto* p = static_cast<volatile unsigned char*>(exmem_vault_open(v, EXMEM_VAULT_READ_WRITE));
  CHILD_CHECK(p != nullptr, "open: %s", last_error_text().c_str());
  p[100] = 1;
  CHILD_CHECK(exmem_vault_close(v, EXMEM_VAULT_READ_WRITE) == EXMEM_OK, "close: %s", last_error_text().c_str());
  std::fprintf(stderr, "used while open; now writing it closed\n");
  p[100] = 2;
  std::fprintf(stderr, "WROTE A CLOSED VAULT\n");
  return 0;
}

int write_read_only_vault() {
  exmem_vault* v = exmem_vault_create(3 * 4096);
  CHILD_CHECK(v != nullptr, "create: %s", last_error_text().c_str());
  auto* w = static_cast<volatile unsigned char*>(exmem_vault_open(v, EXMEM_VAULT_READ_WRITE));
  CHILD_CHECK(w != nullptr, "open: %s", last_error_text().c_str());
  w[8000] = 7;
  CHILD_CHECK(exmem_vault_close(v, EXMEM_VAULT_READ_WRITE) == EXMEM_OK, "close: %s", last_error_text().c_str());
  auto* r = static_cast<volatile unsigned char*>(exmem_vault_open(v, EXMEM_VAULT_READ));
  CHILD_CHECK(r == w, "the vault moved");
  CHILD_CHECK(r[8000] == 7, "a read-only open cannot read what was written");
  std::fprintf(stderr, "read while open for reading; now writing\n");
  r[8000] = 8;
  std::fprintf(stderr, "WROTE A READ-ONLY VAULT\n");
  return 0;
}

TEST_F(Vault, ClosedVaultFaultsOnRead) {
  EXPECT_EXIT(exit_with(read_closed_vault), ::testing::KilledBySignal(SIGSEGV), "now reading it closed");
}

TEST_F(Vault, ClosedVaultFaultsOnWrite) {
  EXPECT_EXIT(exit_with(write_closed_vault), ::testing::KilledBySignal(SIGSEGV), "now writing it closed");
}

TEST_F(Vault, ReadOnlyOpenFaultsOnWrite) {
  EXPECT_EXIT(exit_with(write_read_only_vault), ::testing::KilledBySignal(SIGSEGV), "read while open for reading; now writing");
}

TEST_F(Vault, NestedOpensKeepItOpenUntilTheLastCloseAndReadWriteWins) {
  exmem_vault* v = exmem_vault_create(4096);
  ASSERT_NE(v, nullptr) << last_error_text();
  void* p = exmem_vault_open(v, EXMEM_VAULT_READ_WRITE);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(exmem_vault_open(v, EXMEM_VAULT_READ_WRITE), p);
  EXPECT_EQ(perms_of(p), "rw-s");
  EXPECT_EQ(exmem_vault_close(v, EXMEM_VAULT_READ_WRITE), EXMEM_OK);
  EXPECT_EQ(perms_of(p), "rw-s") << "one of two read-write opens closed: still read-write";
  static_cast<volatile char*>(p)[0] = 'x';
  EXPECT_EQ(exmem_vault_close(v, EXMEM_VAULT_READ_WRITE), EXMEM_OK);
  EXPECT_EQ(perms_of(p), "---s") << "the last close must make it PROT_NONE";

  // Read-write wins over read, whatever the order.
  ASSERT_EQ(exmem_vault_open(v, EXMEM_VAULT_READ), p);
  EXPECT_EQ(perms_of(p), "r--s");
  ASSERT_EQ(exmem_vault_open(v, EXMEM_VAULT_READ_WRITE), p);
  EXPECT_EQ(perms_of(p), "rw-s");
  ASSERT_EQ(exmem_vault_open(v, EXMEM_VAULT_READ), p);
  EXPECT_EQ(exmem_vault_close(v, EXMEM_VAULT_READ_WRITE), EXMEM_OK);
  EXPECT_EQ(perms_of(p), "r--s") << "only read opens are left: read-only";
  EXPECT_EQ(exmem_vault_close(v, EXMEM_VAULT_READ), EXMEM_OK);
  EXPECT_EQ(perms_of(p), "r--s");
  EXPECT_EQ(exmem_vault_close(v, EXMEM_VAULT_READ), EXMEM_OK);
  EXPECT_EQ(perms_of(p), "---s");
  EXPECT_EQ(exmem_vault_destroy(v), EXMEM_OK);
}

// Several threads open and close one vault (mixing read and read-write) for
// thousands of rounds and touch it while they hold it: a protection left wrong
// by a racing close would kill the process with SIGSEGV. It runs in a child
// (which makes its own vault) so that a fault is reported, not a crash.
TEST_F(Vault, ConcurrentOpenersNeverLoseAccessWhileTheyHoldIt) {
  constexpr int kThreads = 4, kRounds = 3000;
  ChildResult r = run_child([] {
    exmem_vault* v = exmem_vault_create(4096);
    CHILD_CHECK(v != nullptr, "create: %s", last_error_text().c_str());
    std::atomic<int> failures{0};
    std::vector<std::thread> ts;
    for (int t = 0; t < kThreads; ++t) {
      ts.emplace_back([&, t] {
        for (int i = 0; i < kRounds; ++i) {
          bool write = (i + t) % 3 != 0;
          int access = write ? EXMEM_VAULT_READ_WRITE : EXMEM_VAULT_READ;
          auto* p = static_cast<volatile unsigned char*>(exmem_vault_open(v, access));
          if (!p) {
            failures.fetch_add(1);
            continue;
          }
          if (write) p[t * 64] = static_cast<unsigned char>(i);
          unsigned char c = p[t * 64];
          if (write && c != static_cast<unsigned char>(i)) failures.fetch_add(1);
          if (exmem_vault_close(v, access) != EXMEM_OK) failures.fetch_add(1);
        }
      });
    }
    for (auto& th : ts) th.join();
    CHILD_CHECK(failures.load() == 0, "%d opens or closes failed", failures.load());
    CHILD_CHECK(perms_of(exmem_vault_open(v, EXMEM_VAULT_READ)) == "r--s", "perms");
    CHILD_CHECK(exmem_vault_close(v, EXMEM_VAULT_READ) == EXMEM_OK, "close");
    void* p = exmem_vault_open(v, EXMEM_VAULT_READ);
    exmem_vault_close(v, EXMEM_VAULT_READ);
    CHILD_CHECK(perms_of(p) == "---s", "after every open was closed the vault is %s, not PROT_NONE",
                perms_of(p).c_str());
    CHILD_CHECK(exmem_vault_destroy(v) == EXMEM_OK, "destroy: %s", last_error_text().c_str());
    std::printf("%d threads x %d rounds\n", kThreads, kRounds);
    return 0;
  });
  EXPECT_TRUE(r.succeeded()) << r.describe();
}

TEST_F(Vault, CloseWithoutAMatchingOpenIsRefusedWithAMessage) {
  exmem_vault* v = exmem_vault_create(4096);
  ASSERT_NE(v, nullptr);
  EXPECT_EQ(exmem_vault_close(v, EXMEM_VAULT_READ), EXMEM_E_INVALID);
  EXPECT_EQ(exmem_last_error(), EXMEM_E_INVALID);
  EXPECT_TRUE(contains(exmem_last_error_message(), "exmem_vault_close")) << exmem_last_error_message();
  EXPECT_TRUE(contains(exmem_last_error_message(), "no EXMEM_VAULT_READ open")) << exmem_last_error_message();

  // A read open is not closed by a read-write close, and stays open.
  void* p = exmem_vault_open(v, EXMEM_VAULT_READ);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(exmem_vault_close(v, EXMEM_VAULT_READ_WRITE), EXMEM_E_INVALID);
  EXPECT_TRUE(contains(exmem_last_error_message(), "same access")) << exmem_last_error_message();
  EXPECT_EQ(perms_of(p), "r--s") << "a refused close changed the protection";
  EXPECT_EQ(exmem_vault_close(v, EXMEM_VAULT_READ), EXMEM_OK);

  for (int bad : {0, 2, 4, -1}) {
    errno = 0;
    EXPECT_EQ(exmem_vault_open(v, bad), nullptr) << "access " << bad;
    EXPECT_EQ(errno, EINVAL);
    EXPECT_EQ(exmem_last_error(), EXMEM_E_INVALID);
    EXPECT_TRUE(contains(exmem_last_error_message(), "EXMEM_VAULT_READ")) << exmem_last_error_message();
    EXPECT_EQ(exmem_vault_close(v, bad), EXMEM_E_INVALID) << "access " << bad;
  }
  EXPECT_EQ(perms_of(p), "---s");
  EXPECT_EQ(exmem_vault_open(nullptr, EXMEM_VAULT_READ), nullptr);
  EXPECT_TRUE(contains(exmem_last_error_message(), "NULL")) << exmem_last_error_message();
  EXPECT_EQ(exmem_vault_close(nullptr, EXMEM_VAULT_READ), EXMEM_E_INVALID);
  EXPECT_EQ(exmem_vault_size(nullptr), 0u);
  EXPECT_EQ(exmem_vault_destroy(nullptr), EXMEM_OK);
  EXPECT_EQ(exmem_vault_destroy(v), EXMEM_OK);
}

TEST_F(Vault, DestroyWhileOpenIsRefusedAndReleasesNothing) {
  exmem_vault* v = exmem_vault_create(8192);
  ASSERT_NE(v, nullptr);
  void* p = exmem_vault_open(v, EXMEM_VAULT_READ_WRITE);
  ASSERT_NE(p, nullptr);
  fill_pattern(p, 8192, 99);
  struct exmem_stats before{};
  ASSERT_EQ(exmem_stats(&before), EXMEM_OK);
  EXPECT_EQ(exmem_vault_destroy(v), EXMEM_E_INVALID);
  EXPECT_TRUE(contains(exmem_last_error_message(), "outstanding")) << exmem_last_error_message();
  EXPECT_TRUE(contains(exmem_last_error_message(), "nothing was released")) << exmem_last_error_message();
  struct exmem_stats after{};
  ASSERT_EQ(exmem_stats(&after), EXMEM_OK);
  EXPECT_EQ(after.vaults, before.vaults);
  EXPECT_EQ(after.reserved_bytes, before.reserved_bytes);
  EXPECT_EQ(perms_of(p), "rw-s");
  EXPECT_TRUE(has_pattern(p, 8192, 99)) << "a refused destroy wiped the vault";
  ASSERT_EQ(exmem_vault_close(v, EXMEM_VAULT_READ_WRITE), EXMEM_OK);
  // A read open refuses it too.
  ASSERT_NE(exmem_vault_open(v, EXMEM_VAULT_READ), nullptr);
  EXPECT_EQ(exmem_vault_destroy(v), EXMEM_E_INVALID);
  ASSERT_EQ(exmem_vault_close(v, EXMEM_VAULT_READ), EXMEM_OK);
  EXPECT_EQ(exmem_vault_destroy(v), EXMEM_OK) << last_error_text();
}

TEST_F(Vault, SizeZeroOrHugeIsRefused) {
  errno = 0;
  EXPECT_EQ(exmem_vault_create(0), nullptr);
  EXPECT_EQ(errno, EINVAL);
  EXPECT_EQ(exmem_last_error(), EXMEM_E_INVALID);
  errno = 0;
  EXPECT_EQ(exmem_vault_create(SIZE_MAX), nullptr);
  EXPECT_EQ(errno, EINVAL);
}

TEST_F(Vault, StatsCountVaultsAndTheirPages) {
  struct exmem_stats s0{};
  ASSERT_EQ(exmem_stats(&s0), EXMEM_OK);
  std::vector<exmem_vault*> vs;
  for (size_t n : {size_t{1}, size_t{4096}, size_t{70000}}) {
    exmem_vault* v = exmem_vault_create(n);
    ASSERT_NE(v, nullptr) << last_error_text();
    vs.push_back(v);
  }
  size_t bytes = 4096 + 4096 + round_up(70000, page_size());
  struct exmem_stats s1{};
  ASSERT_EQ(exmem_stats(&s1), EXMEM_OK);
  EXPECT_EQ(s1.vaults, s0.vaults + 3);
  EXPECT_EQ(s1.reserved_bytes, s0.reserved_bytes + bytes);
  EXPECT_EQ(s1.exclusive_pages, s0.exclusive_pages + bytes / page_size());
  EXPECT_EQ(s1.regions, s0.regions + 3) << "each vault is a memfd_secret file of its own";
  EXPECT_EQ(s1.live_objects, s0.live_objects) << "a vault is not a heap object";
  EXPECT_EQ(s1.fallback_bytes, 0u);
  for (exmem_vault* v : vs) ASSERT_EQ(exmem_vault_destroy(v), EXMEM_OK);
  struct exmem_stats s2{};
  ASSERT_EQ(exmem_stats(&s2), EXMEM_OK);
  EXPECT_EQ(s2.vaults, s0.vaults);
  EXPECT_EQ(s2.reserved_bytes, s0.reserved_bytes);
}

TEST_F(Vault, ForkedChildCannotReachItAndTheParentKeepsIt) {
  exmem_vault* v = exmem_vault_create(4096);
  ASSERT_NE(v, nullptr);
  void* p = exmem_vault_open(v, EXMEM_VAULT_READ_WRITE);
  ASSERT_NE(p, nullptr);
  fill_pattern(p, 4096, 31);
  ChildResult r = run_child([v, p] {
    CHILD_CHECK(exmem_vault_open(v, EXMEM_VAULT_READ) == nullptr, "the child opened its parent's vault");
    CHILD_CHECK(contains(exmem_last_error_message(), "fork()"), "message: %s", exmem_last_error_message());
    CHILD_CHECK(exmem_vault_close(v, EXMEM_VAULT_READ_WRITE) == EXMEM_E_INVALID, "the child closed the parent's open");
    CHILD_CHECK(exmem_is_exclusive(p) == EXMEM_PROT_NONE, "the parent's vault is exmem memory in the child");
    CHILD_CHECK(exmem_vault_destroy(v) == EXMEM_OK, "releasing the inherited handle: %s", last_error_text().c_str());
    std::printf("open refused; reading the parent's vault address\n");
    std::fflush(stdout);
    bool same = has_pattern(p, 4096, 31);
    std::printf("the child read %s\n", same ? "THE PARENT'S SECRET" : "other bytes");
    return 0;
  });
  EXPECT_TRUE(r.killed_by(SIGSEGV) && contains(r.output, "open refused")) << r.describe();
  EXPECT_TRUE(has_pattern(p, 4096, 31)) << "the parent's vault changed";
  EXPECT_EQ(perms_of(p), "rw-s");
  EXPECT_EQ(exmem_vault_close(v, EXMEM_VAULT_READ_WRITE), EXMEM_OK);
  EXPECT_EQ(exmem_vault_destroy(v), EXMEM_OK);
}

int share_mode_child_cannot_reach_vault() {
  exmem_config cfg{};
  cfg.fork_mode = EXMEM_FORK_SHARE;
  CHILD_CHECK(exmem_init(&cfg) == EXMEM_OK, "init: %s", last_error_text().c_str());
  exmem_vault* v = exmem_vault_create(4096);
  CHILD_CHECK(v != nullptr, "create: %s", last_error_text().c_str());
  void* p = exmem_vault_open(v, EXMEM_VAULT_READ_WRITE);
  fill_pattern(p, 4096, 32);
  void* obj = exmem_alloc(32);  // a heap object: shared with the child in this mode
  fill_pattern(obj, 32, 33);
  ChildResult r = run_child([v, p, obj] {
    CHILD_CHECK(has_pattern(obj, 32, 33), "EXMEM_FORK_SHARE: the child does not see the parent's object");
    CHILD_CHECK(exmem_vault_open(v, EXMEM_VAULT_READ) == nullptr, "the child opened its parent's vault");
    // The hole the vault left in the inherited reservation is reserved again.
    auto vma = vma_of(p);
    CHILD_CHECK(vma && vma->perms.substr(0, 3) == "---", "the vault's address in the child: %s",
                vma ? vma->perms.c_str() : "no mapping at all");
    std::printf("open refused; reading the parent's vault address\n");
    std::fflush(stdout);
    std::printf("the child read %s\n", has_pattern(p, 4096, 32) ? "THE PARENT'S SECRET" : "other bytes");
    return 0;
  });
  CHILD_CHECK(r.killed_by(SIGSEGV) && contains(r.output, "open refused"), "the child %s", r.describe().c_str());
  CHILD_CHECK(has_pattern(p, 4096, 32), "the parent's vault changed");
  CHILD_CHECK(exmem_vault_close(v, EXMEM_VAULT_READ_WRITE) == EXMEM_OK, "close");
  CHILD_CHECK(exmem_vault_destroy(v) == EXMEM_OK, "destroy");
  exmem_free(obj);
  return 0;
}

// Configured heaps run in fresh processes (no fixture: its SetUp sets the heap up).
TEST(VaultConfig, ShareModeChildCannotReachItEither) {
  REQUIRE_MEMFD_SECRET();
  EXPECT_IN_FRESH_PROCESS(share_mode_child_cannot_reach_vault);
}

int vault_under_locked_only() {
  exmem_config cfg{};
  cfg.policy = EXMEM_LOCKED_ONLY;
  CHILD_CHECK(exmem_init(&cfg) == EXMEM_OK, "init: %s", last_error_text().c_str());
  long before = status_kb("VmLck");
  exmem_vault* v = exmem_vault_create(64 * 1024);
  CHILD_CHECK(v != nullptr, "create: %s", last_error_text().c_str());
  void* p = exmem_vault_open(v, EXMEM_VAULT_READ_WRITE);
  CHILD_CHECK(p != nullptr, "open: %s", last_error_text().c_str());
  CHILD_CHECK(exmem_is_exclusive(p) == EXMEM_PROT_LOCKED, "is_exclusive %d", exmem_is_exclusive(p));
  fill_pattern(p, 64 * 1024, 4);
  auto vma = vma_of(p, true);
  CHILD_CHECK(vma.has_value(), "no mapping");
  CHILD_CHECK(!is_secretmem(*vma), "EXMEM_LOCKED_ONLY gave a memfd_secret vault");
  CHILD_CHECK(vma->perms == "rw-p", "open vault perms %s", vma->perms.c_str());
  CHILD_CHECK(vma->has_flag("dd"), "not excluded from core dumps: %s", vma->vmflags.c_str());
  CHILD_CHECK(vma->has_flag("dc") || vma->has_flag("wf"), "not kept from children: %s", vma->vmflags.c_str());
  if (!kSanitizer) {  // a sanitizer turns mlock() into a no-op
    CHILD_CHECK(vma->has_flag("lo"), "the vault is not locked: %s", vma->vmflags.c_str());
    long after = status_kb("VmLck");
    CHILD_CHECK(after - before >= 64, "VmLck grew by %ld kB only", after - before);
  }
  CHILD_CHECK(exmem_vault_close(v, EXMEM_VAULT_READ_WRITE) == EXMEM_OK, "close");
  auto closed = vma_of(p, true);
  CHILD_CHECK(closed && closed->perms == "---p", "closed vault perms %s", closed ? closed->perms.c_str() : "none");
  if (!kSanitizer) CHILD_CHECK(closed->has_flag("lo") && closed->rss_kb == 64, "closed: pages left RAM or unlocked");
  void* q = exmem_vault_open(v, EXMEM_VAULT_READ);
  CHILD_CHECK(q == p && has_pattern(q, 64 * 1024, 4), "contents lost while closed");
  CHILD_CHECK(exmem_vault_close(v, EXMEM_VAULT_READ) == EXMEM_OK, "close");
  struct exmem_stats s{};
  exmem_stats(&s);
  CHILD_CHECK(s.vaults == 1 && s.fallback_bytes == 0, "vaults %zu fallback_bytes %zu", s.vaults, s.fallback_bytes);
  CHILD_CHECK(exmem_vault_destroy(v) == EXMEM_OK, "destroy: %s", last_error_text().c_str());
  return 0;
}

TEST(VaultConfig, UnderLockedOnlyTheVaultIsLockedMemoryAndStillClosesToPROT_NONE) {
  EXPECT_IN_FRESH_PROCESS(vault_under_locked_only);
}

int maximum_counts_vaults() {
  exmem_config cfg{};
  cfg.maximum = 1024 * 1024;
  CHILD_CHECK(exmem_init(&cfg) == EXMEM_OK, "init: %s", last_error_text().c_str());
  exmem_vault* a = exmem_vault_create(512 * 1024);
  CHILD_CHECK(a != nullptr, "a 512 KiB vault under a 1 MiB maximum: %s", last_error_text().c_str());
  errno = 0;
  exmem_vault* b = exmem_vault_create(600 * 1024);
  CHILD_CHECK(b == nullptr, "a second vault went past the maximum");
  CHILD_CHECK(errno == ENOMEM, "errno %d", errno);
  CHILD_CHECK(exmem_last_error() == EXMEM_E_MAXIMUM, "%s", last_error_text().c_str());
  // Heap memory and vaults share the cap.
  CHILD_CHECK(exmem_alloc(600 * 1024) == nullptr, "a large object went past the maximum beside the vault");
  CHILD_CHECK(exmem_vault_destroy(a) == EXMEM_OK, "destroy");
  b = exmem_vault_create(600 * 1024);
  CHILD_CHECK(b != nullptr, "the destroyed vault's bytes were not given back: %s", last_error_text().c_str());
  CHILD_CHECK(exmem_vault_destroy(b) == EXMEM_OK, "destroy");
  return 0;
}

TEST(VaultConfig, CountsTowardsTheMaximum) { EXPECT_IN_FRESH_PROCESS(maximum_counts_vaults); }

// ---- C++ ------------------------------------------------------------------------

TEST_F(Vault, CxxGuardsOpenAndCloseWithTheirScope) {
  exmem::vault v(5000);
  EXPECT_EQ(v.size(), 8192u);
  const void* addr = nullptr;
  {
    auto w = v.open_read_write();
    addr = w.data();
    ASSERT_NE(addr, nullptr);
    EXPECT_EQ(w.size(), 8192u);
    EXPECT_EQ(w.span().size(), 8192u);
    std::memset(w.data(), 0x5a, w.size());
    EXPECT_EQ(perms_of(addr), "rw-s");
    {
      auto r = v.open_read();
      static_assert(std::is_same_v<decltype(r.data()), const std::byte*>);
      EXPECT_EQ(static_cast<const void*>(r.data()), addr);
      EXPECT_TRUE(all_equal(r.data(), r.size(), 0x5a));
      EXPECT_EQ(perms_of(addr), "rw-s");
    }
    EXPECT_EQ(perms_of(addr), "rw-s");
    auto moved = std::move(w);
    EXPECT_FALSE(w);
    EXPECT_TRUE(moved);
    EXPECT_EQ(perms_of(addr), "rw-s") << "moving a guard must not close the vault";
  }
  EXPECT_EQ(perms_of(addr), "---s") << "the guards' destructors did not close the vault";
  {
    auto r = v.open_read();
    EXPECT_EQ(perms_of(addr), "r--s");
    r.close();
    EXPECT_EQ(perms_of(addr), "---s");
  }
  exmem::vault other = std::move(v);
  EXPECT_FALSE(v);
  EXPECT_EQ(other.size(), 8192u);
  size_t vaults = exmem::stats().vaults;
  other.reset();
  EXPECT_EQ(exmem::stats().vaults, vaults - 1);
}

TEST_F(Vault, CxxFailureThrowsBadAllocWithTheReason) {
  try {
    exmem::vault v(0);
    FAIL() << "a vault of 0 bytes was made";
  } catch (const exmem::bad_alloc& e) {
    EXPECT_EQ(e.error(), EXMEM_E_INVALID);
    EXPECT_TRUE(contains(e.what(), "exmem_vault_create")) << e.what();
  }
}

}  // namespace
