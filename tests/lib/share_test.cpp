// Sharing exclusive memory with another process: exmem_share_create makes a
// region, exmem_share_send passes its descriptor over an AF_UNIX socket
// (SCM_RIGHTS), exmem_share_recv maps it in the receiver, and both see the same
// bytes. The receivers here never inherit the mapping: one is a freshly executed
// program, the other a child forked before the region existed. Malformed or
// forged messages are refused without crashing the receiver.
#include <exmem/exmem.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "support/test_util.hpp"

using namespace exmem_test;

namespace {

struct SocketPair {
  int fd[2] = {-1, -1};
  SocketPair() { ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fd); }
  ~SocketPair() {
    for (int f : fd)
      if (f >= 0) ::close(f);
  }
  void close(int i) {
    ::close(fd[i]);
    fd[i] = -1;
  }
};

// One byte from fd within the timeout, or '\0'.
char read_byte(int fd, std::chrono::milliseconds timeout = 20s) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return '\0';
  char c = '\0';
  return ::read(fd, &c, 1) == 1 ? c : '\0';
}

class Share : public ::testing::Test {
 protected:
  void SetUp() override {
    REQUIRE_MEMFD_SECRET();
    ASSERT_EQ(exmem_protection(), EXMEM_PROT_SECRET) << last_error_text();
  }
};

TEST_F(Share, CreatedRegionIsZeroedPageGranularPrefaultedAndSecret) {
  exmem_shared s{};
  ASSERT_EQ(exmem_share_create(10000, &s), EXMEM_OK) << last_error_text();
  EXPECT_GE(s.size, 10000u);
  EXPECT_EQ(s.size % page_size(), 0u);
  EXPECT_GE(s.fd, 0);
  EXPECT_EQ(s.protection, EXMEM_PROT_SECRET);
  ASSERT_NE(s.addr, nullptr);
  EXPECT_TRUE(all_zero(s.addr, s.size));
  auto vma = vma_of(s.addr, true);
  ASSERT_TRUE(vma.has_value());
  EXPECT_TRUE(is_secretmem(*vma)) << vma->path;
  EXPECT_EQ(vma->rss_kb, vma->size_kb) << "the shared region is not pre-faulted";
  EXPECT_GE(vma->end - reinterpret_cast<uintptr_t>(s.addr), s.size);
  fill_pattern(s.addr, s.size, 8);
  EXPECT_TRUE(has_pattern(s.addr, s.size, 8));

  // Hidden from process_vm_readv like any secret (control: a plain buffer reads).
  char plain[16] = "plain bytes";
  char buf[16];
  iovec local{buf, sizeof buf};
  iovec remote{plain, sizeof plain};
  ASSERT_EQ(::process_vm_readv(::getpid(), &local, 1, &remote, 1, 0), 16) << std::strerror(errno);
  remote.iov_base = s.addr;
  EXPECT_EQ(::process_vm_readv(::getpid(), &local, 1, &remote, 1, 0), -1) << "the shared region is readable via GUP";

  EXPECT_EQ(exmem_share_release(&s), EXMEM_OK) << last_error_text();
}

TEST_F(Share, ReleasedRegionIsUnmappedAndItsDescriptorClosed) {
  exmem_shared s{};
  ASSERT_EQ(exmem_share_create(4096, &s), EXMEM_OK) << last_error_text();
  fill_pattern(s.addr, 4096, 3);
  void* addr = s.addr;
  int fd = s.fd;
  ASSERT_EQ(exmem_share_release(&s), EXMEM_OK) << last_error_text();
  errno = 0;
  EXPECT_EQ(::fcntl(fd, F_GETFD), -1) << "the region's descriptor is still open after release";
  ChildResult r = run_child([addr] {
    std::printf("read %s\n", has_pattern(addr, 4096, 3) ? "THE OLD CONTENTS" : "other bytes");
    return 0;
  });
  EXPECT_TRUE(r.killed_by(SIGSEGV)) << "touching a released region should fault; the child " << r.describe();
}

TEST_F(Share, CreatingAndReleasingManyRegionsLeaksNeitherDescriptorsNorMappings) {
  auto fds = [] {
    size_t n = 0;
    for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
    return n;
  };
  exmem_shared warm{};
  ASSERT_EQ(exmem_share_create(4096, &warm), EXMEM_OK);
  ASSERT_EQ(exmem_share_release(&warm), EXMEM_OK);
  size_t fd0 = fds(), vma0 = count_vmas();
  for (int i = 0; i < 300; ++i) {
    exmem_shared s{};
    ASSERT_EQ(exmem_share_create(static_cast<size_t>(4096 * (1 + i % 5)), &s), EXMEM_OK)
        << "iteration " << i << ": " << last_error_text();
    ASSERT_EQ(exmem_share_release(&s), EXMEM_OK) << last_error_text();
  }
  EXPECT_EQ(fds(), fd0) << "descriptors leak";
  if (!kSanitizer) {  // its own allocator maps memory meanwhile
    EXPECT_LE(count_vmas(), vma0 + 2) << "mappings leak";
  }
}

TEST_F(Share, ExecutedPeerSeesTheSameBytesInBothDirections) {
  ASSERT_TRUE(std::filesystem::exists(helper_path())) << helper_path() << " is missing";
  SocketPair sp;
  ASSERT_GE(sp.fd[0], 0) << std::strerror(errno);
  const size_t size = 3 * page_size() + 5;
  const uint64_t a = 0xA11CE, b = 0xB0B, c = 0xC0FFEE;
  exmem_shared s{};
  ASSERT_EQ(exmem_share_create(size, &s), EXMEM_OK) << last_error_text();
  fill_pattern(s.addr, size, a);

  int peer_fd = sp.fd[1];
  Spawned peer = spawn_child([&] {
    ::fcntl(peer_fd, F_SETFD, 0);  // only the socket crosses exec
    std::string fd = std::to_string(peer_fd), sz = std::to_string(size), sa = std::to_string(a),
                sb = std::to_string(b), sc = std::to_string(c);
    const char* argv[] = {helper_path(), "share-peer", fd.c_str(), sz.c_str(), sa.c_str(), sb.c_str(), sc.c_str(),
                          nullptr};
    ::execv(argv[0], const_cast<char* const*>(argv));
    std::fprintf(stderr, "exec %s: %s\n", argv[0], std::strerror(errno));
    return 127;
  });
  ASSERT_TRUE(peer.error.empty()) << peer.error;
  sp.close(1);

  ASSERT_EQ(exmem_share_send(sp.fd[0], &s), EXMEM_OK) << last_error_text();
  char got = read_byte(sp.fd[0]);
  if (got == 'b') {
    EXPECT_TRUE(has_pattern(s.addr, size, b)) << "the sender does not see the peer's write; first bytes "
                                              << hex_bytes(s.addr, 16);
    fill_pattern(s.addr, size, c);
    char byte = 'c';
    write_all(sp.fd[0], &byte, 1);
  }
  ChildResult r = collect(peer, 20s);
  EXPECT_EQ(got, 'b') << "the peer never reported its write";
  EXPECT_TRUE(r.succeeded()) << "the peer " << r.describe();
  EXPECT_TRUE(contains(r.output, "peer: received")) << r.output;
  EXPECT_EQ(exmem_share_release(&s), EXMEM_OK);
}

TEST_F(Share, ChildForkedBeforeTheRegionExistedMapsItAndKeepsItAfterTheSenderReleases) {
  SocketPair sp;
  ASSERT_GE(sp.fd[0], 0);
  const size_t size = 2 * page_size();
  int child_fd = sp.fd[1], parent_fd = sp.fd[0];
  Spawned child = spawn_child([child_fd, parent_fd, size] {
    ::close(parent_fd);  // so that a parent gone early means EOF here
    exmem_shared r{};
    int rc = exmem_share_recv(child_fd, &r);
    CHILD_CHECK(rc == EXMEM_OK, "exmem_share_recv = %d: %s", rc, last_error_text().c_str());
    CHILD_CHECK(r.size >= size && r.fd >= 0 && r.addr, "size %zu fd %d addr %p", r.size, r.fd, r.addr);
    CHILD_CHECK(r.protection == EXMEM_PROT_SECRET, "protection %d", r.protection);
    auto vma = vma_of(r.addr);
    CHILD_CHECK(vma && is_secretmem(*vma), "the received mapping is not memfd_secret memory");
    CHILD_CHECK(has_pattern(r.addr, size, 21), "the child does not see the parent's bytes: %s",
                hex_bytes(r.addr, 16).c_str());
    fill_pattern(r.addr, size, 22);
    char c = 'b';
    CHILD_CHECK(write_all(child_fd, &c, 1), "write");
    CHILD_CHECK(read_byte(child_fd) == 'c', "no word from the parent");
    // The parent wrote pattern 23, then released its mapping and descriptor.
    CHILD_CHECK(has_pattern(r.addr, size, 23), "the child does not see the parent's last write");
    fill_pattern(r.addr, size, 24);
    CHILD_CHECK(has_pattern(r.addr, size, 24), "the region is no longer writable after the sender released it");
    CHILD_CHECK(exmem_share_release(&r) == EXMEM_OK, "release: %s", last_error_text().c_str());
    return 0;
  });
  ASSERT_TRUE(child.error.empty()) << child.error;
  sp.close(1);

  exmem_shared s{};
  ASSERT_EQ(exmem_share_create(size, &s), EXMEM_OK) << last_error_text();
  fill_pattern(s.addr, size, 21);
  ASSERT_EQ(exmem_share_send(sp.fd[0], &s), EXMEM_OK) << last_error_text();
  char got = read_byte(sp.fd[0]);
  if (got == 'b') {
    EXPECT_TRUE(has_pattern(s.addr, size, 22)) << "the parent does not see the child's write";
    fill_pattern(s.addr, size, 23);
    EXPECT_EQ(exmem_share_release(&s), EXMEM_OK) << last_error_text();
    char c = 'c';
    write_all(sp.fd[0], &c, 1);
  }
  ChildResult r = collect(child, 20s);
  EXPECT_EQ(got, 'b');
  EXPECT_TRUE(r.succeeded()) << "the child " << r.describe();
  if (got != 'b') exmem_share_release(&s);
}

TEST_F(Share, PlainBytesWithoutADescriptorGiveEXMEM_E_PROTOCOL) {
  for (size_t len : {size_t{1}, size_t{8}, size_t{16}, size_t{24}, size_t{32}, size_t{64}}) {
    SocketPair sp;
    std::string junk(len, '\0');
    // A plausible-looking message: a page count in the first word.
    size_t pages = 4096;
    std::memcpy(junk.data(), &pages, std::min(len, sizeof pages));
    ASSERT_TRUE(write_all(sp.fd[0], junk.data(), len));
    sp.close(0);
    exmem_shared out{};
    int rc = exmem_share_recv(sp.fd[1], &out);
    EXPECT_EQ(rc, EXMEM_E_PROTOCOL) << len << " plain bytes: " << last_error_text();
    EXPECT_EQ(exmem_last_error(), EXMEM_E_PROTOCOL) << len << " plain bytes: " << last_error_text();
    if (rc == EXMEM_OK) exmem_share_release(&out);
  }
}

TEST_F(Share, ReceivingFromAClosedSocketIsAnErrorNotAHang) {
  SocketPair sp;
  sp.close(0);
  exmem_shared out{};
  int rc = exmem_share_recv(sp.fd[1], &out);
  EXPECT_NE(rc, EXMEM_OK);
  EXPECT_TRUE(rc == EXMEM_E_PROTOCOL || rc == EXMEM_E_SYSTEM) << "rc " << rc << ": " << last_error_text();
}

TEST_F(Share, SendingOnSomethingOtherThanAUnixSocketFails) {
  exmem_shared s{};
  ASSERT_EQ(exmem_share_create(4096, &s), EXMEM_OK);
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  EXPECT_NE(exmem_share_send(p[1], &s), EXMEM_OK) << "SCM_RIGHTS cannot travel over a pipe";
  EXPECT_NE(exmem_share_send(-1, &s), EXMEM_OK);
  ::close(p[0]);
  ::close(p[1]);
  EXPECT_EQ(exmem_share_release(&s), EXMEM_OK);
}

// A forged region description sent with exmem_share_send (a sender that lies):
// the receiver runs in a child so that a crash is reported, not suffered.
ChildResult receive_forged(const exmem_shared& forged, int* send_rc, int* recv_rc) {
  SocketPair sp;
  *send_rc = exmem_share_send(sp.fd[0], &forged);
  int fd = sp.fd[1];
  int rc_pipe[2];
  if (::pipe(rc_pipe) != 0) return {};
  ChildResult r = run_child(
      [fd, &rc_pipe] {
        exmem_shared out{};
        int rc = exmem_share_recv(fd, &out);
        std::printf("recv = %d, protection %d, size %zu: %s\n", rc, out.protection, out.size,
                    last_error_text().c_str());
        if (rc == EXMEM_OK) {
          // Touch every page the receiver claims to have.
          auto* b = static_cast<volatile unsigned char*>(out.addr);
          for (size_t off = 0; off < out.size; off += 4096) b[off] = 1;
        }
        int v[2] = {rc, out.protection};
        write_all(rc_pipe[1], v, sizeof v);
        return 0;
      },
      20s);
  int v[2] = {-1, -1};
  ::close(rc_pipe[1]);
  if (read_all(rc_pipe[0], v, sizeof v)) *recv_rc = v[0];
  ::close(rc_pipe[0]);
  r.output += strf("[protection reported %d]", v[1]);
  return r;
}

TEST_F(Share, AnAdvertisedSizeLargerThanTheFileIsRefusedWithoutSIGBUS) {
  exmem_shared s{};
  ASSERT_EQ(exmem_share_create(4096, &s), EXMEM_OK);
  exmem_shared forged = s;
  forged.size = 64 * page_size();
  int send_rc = -1, recv_rc = -1;
  ChildResult r = receive_forged(forged, &send_rc, &recv_rc);
  if (send_rc != EXMEM_OK) {
    std::fprintf(stderr, "note: exmem_share_send refused the forged size itself (%d)\n", send_rc);
  } else {
    EXPECT_TRUE(r.succeeded()) << "the receiver of a lying size " << r.describe();
    EXPECT_NE(recv_rc, EXMEM_OK) << "the receiver accepted a size larger than the file: " << r.output;
  }
  EXPECT_EQ(exmem_share_release(&s), EXMEM_OK);
}

TEST_F(Share, AnOrdinaryMemfdIsNeverReportedAsSecret) {
  int fd = ::memfd_create("not-secret", MFD_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, 4096), 0);
  void* addr = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ASSERT_NE(addr, MAP_FAILED);
  exmem_shared forged{addr, 4096, fd, EXMEM_PROT_SECRET};
  int send_rc = -1, recv_rc = -1;
  ChildResult r = receive_forged(forged, &send_rc, &recv_rc);
  if (send_rc != EXMEM_OK) {
    std::fprintf(stderr, "note: exmem_share_send refused an ordinary memfd itself (%d)\n", send_rc);
  } else {
    EXPECT_TRUE(r.succeeded()) << "the receiver " << r.describe();
    EXPECT_TRUE(recv_rc != EXMEM_OK || !contains(r.output, "protection 1,"))
        << "an ordinary memfd was received and reported as memfd_secret memory: " << r.output;
  }
  ::munmap(addr, 4096);
  ::close(fd);
}

TEST_F(Share, ARegularFileIsNeverMappedAsASharedRegion) {
  // A peer passing a descriptor of a file on disk must not make the receiver
  // keep its secrets in that file.
  std::string dir = make_temp_dir();
  ASSERT_FALSE(dir.empty());
  std::string path = dir + "/region";
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, 4096), 0);
  for (int prot : {EXMEM_PROT_SECRET, EXMEM_PROT_LOCKED}) {
    exmem_shared forged{nullptr, 4096, fd, prot};
    int send_rc = -1, recv_rc = -1;
    ChildResult r = receive_forged(forged, &send_rc, &recv_rc);
    ASSERT_EQ(send_rc, EXMEM_OK);
    EXPECT_TRUE(r.succeeded()) << "the receiver " << r.describe();
    EXPECT_NE(recv_rc, EXMEM_OK) << "a regular file was mapped as a region claiming protection " << prot << ": "
                                 << r.output;
  }
  ::close(fd);
  remove_tree(dir);
}

// ---- The locked fallback shares too ------------------------------------------------

int locked_share_works() {
  exmem_config cfg{};
  cfg.policy = EXMEM_LOCKED_ONLY;
  cfg.quiet = 1;
  CHILD_CHECK(exmem_init(&cfg) == EXMEM_OK, "init: %s", last_error_text().c_str());
  SocketPair sp;
  int child_fd = sp.fd[1], parent_fd = sp.fd[0];
  Spawned child = spawn_child([child_fd, parent_fd] {
    ::close(parent_fd);  // so that a parent gone early means EOF here
    exmem_shared r{};
    CHILD_CHECK(exmem_share_recv(child_fd, &r) == EXMEM_OK, "recv: %s", last_error_text().c_str());
    CHILD_CHECK(r.protection == EXMEM_PROT_LOCKED, "protection %d", r.protection);
    CHILD_CHECK(has_pattern(r.addr, 8192, 31), "the child does not see the parent's bytes");
    auto vma = vma_of(r.addr, true);
    CHILD_CHECK(vma && (vma->has_flag("lo") || kSanitizer) && vma->has_flag("dd"),
                "received locked region: VmFlags%s", vma ? vma->vmflags.c_str() : " (none)");
    fill_pattern(r.addr, 8192, 32);
    char c = 'b';
    CHILD_CHECK(write_all(child_fd, &c, 1), "write");
    return 0;
  });
  sp.close(1);
  exmem_shared s{};
  CHILD_CHECK(exmem_share_create(8192, &s) == EXMEM_OK, "create: %s", last_error_text().c_str());
  CHILD_CHECK(s.protection == EXMEM_PROT_LOCKED, "protection %d", s.protection);
  auto vma = vma_of(s.addr, true);
  CHILD_CHECK(vma && (vma->has_flag("lo") || kSanitizer) && vma->has_flag("dd"),
              "locked shared region: VmFlags%s", vma ? vma->vmflags.c_str() : " (none)");
  fill_pattern(s.addr, 8192, 31);
  CHILD_CHECK(exmem_share_send(sp.fd[0], &s) == EXMEM_OK, "send: %s", last_error_text().c_str());
  char got = read_byte(sp.fd[0]);
  ChildResult r = collect(child, 20s);
  CHILD_CHECK(got == 'b' && r.succeeded(), "the child %s", r.describe().c_str());
  CHILD_CHECK(has_pattern(s.addr, 8192, 32), "the parent does not see the child's write");
  CHILD_CHECK(exmem_share_release(&s) == EXMEM_OK, "release");
  return 0;
}

TEST(ShareLocked, LockedFallbackRegionsAreSharedTheSameWay) { EXPECT_IN_FRESH_PROCESS(locked_share_works); }

// ---- The example program ------------------------------------------------------

TEST(ShareDemo, ExampleProgramPassesARegionBetweenTwoProcesses) {
#ifndef EXMEM_SHARE_DEMO
  GTEST_SKIP() << "NOT TESTED: the examples are not built (EXMEM_BUILD_EXAMPLES=OFF)";
#else
  REQUIRE_MEMFD_SECRET();
  ChildResult r = run_child([] {
    const char* argv[] = {EXMEM_SHARE_DEMO, nullptr};
    ::execv(argv[0], const_cast<char* const*>(argv));
    std::fprintf(stderr, "exec %s: %s\n", argv[0], std::strerror(errno));
    return 127;
  }, 20s);
  EXPECT_TRUE(r.succeeded()) << "share_demo " << r.describe();
  EXPECT_TRUE(contains(r.output, "receiver: the region reads \"hello from the sender")) << r.output;
  EXPECT_TRUE(contains(r.output, "sender: the region now reads \"hello from the receiver")) << r.output;
  EXPECT_TRUE(contains(r.output, "memfd_secret")) << r.output;
#endif
}

}  // namespace
