// Another process, even one running as root, cannot read (or write) a live
// secret of the memfd_secret backend through the kernel's ways into a process's
// memory: process_vm_readv, /proc/PID/mem and ptrace. Each attempt has a control:
// the same bytes in ordinary malloc memory of the same process are readable the
// same way, which proves the attempt itself works.
#include <exmem/exmem.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/wait.h>

#include <cerrno>
#include <cstring>
#include <random>

#include "support/test_util.hpp"

using namespace exmem_test;

namespace {

constexpr size_t kLen = 32;

// A child process holding the same 32-byte pattern in an exmem secret and in
// malloc memory, alive until finish(). The child checks at the end that its
// secret is intact.
class Holder {
 public:
  explicit Holder(uint64_t seed) : seed_(seed) {}
  Holder(const Holder&) = delete;
  Holder& operator=(const Holder&) = delete;
  ~Holder() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (go_ >= 0) ::close(go_);
  }

  // Returns an empty string on success, else why the holder could not start.
  std::string start() {
    int up[2], down[2];
    if (::pipe2(up, O_CLOEXEC) != 0 || ::pipe2(down, O_CLOEXEC) != 0) return "pipe2 failed";
    pid_ = ::fork();
    if (pid_ < 0) return strf("fork: %s", std::strerror(errno));
    if (pid_ == 0) {
      ::close(up[0]);
      ::close(down[1]);
      uintptr_t addrs[2] = {0, 0};
      void* secret = exmem_alloc(kLen);
      void* plain = std::malloc(kLen);
      if (secret && plain) {
        fill_pattern(secret, kLen, seed_);
        fill_pattern(plain, kLen, seed_);
        addrs[0] = reinterpret_cast<uintptr_t>(secret);
        addrs[1] = reinterpret_cast<uintptr_t>(plain);
      } else {
        std::fprintf(stderr, "holder: %s\n", last_error_text().c_str());
      }
      write_all(up[1], addrs, sizeof addrs);
      char c;
      read_all(down[0], &c, 1);
      int rc = 0;
      if (!secret) rc = 2;
      else if (exmem_protection() != EXMEM_PROT_SECRET) rc = 3;
      else if (!has_pattern(secret, kLen, seed_)) rc = 4;  // another process changed it
      ::_exit(rc);
    }
    ::close(up[1]);
    ::close(down[0]);
    go_ = down[1];
    uintptr_t addrs[2] = {0, 0};
    bool ok = read_all(up[0], addrs, sizeof addrs);
    ::close(up[0]);
    if (!ok) return "the holder died before reporting its addresses";
    if (!addrs[0] || !addrs[1]) return "the holder could not allocate its secret (see its stderr)";
    secret_ = addrs[0];
    plain_ = addrs[1];
    return {};
  }

  // Lets the child check its secret and exit; returns its wait status.
  int finish() {
    char c = 'x';
    write_all(go_, &c, 1);
    ::close(go_);
    go_ = -1;
    bool timed_out = false;
    int status = wait_for(pid_, 10s, &timed_out);
    pid_ = -1;
    return timed_out ? -1 : status;
  }

  pid_t pid() const { return pid_; }
  uintptr_t secret() const { return secret_; }
  uintptr_t plain() const { return plain_; }
  std::string pattern() const { return make_pattern(kLen, seed_); }

 private:
  uint64_t seed_;
  pid_t pid_ = -1;
  int go_ = -1;
  uintptr_t secret_ = 0;
  uintptr_t plain_ = 0;
};

uint64_t random_seed() {
  std::random_device rd;
  return (uint64_t{rd()} << 32) | rd() | 1;
}

class SecretIsolation : public ::testing::Test {
 protected:
  void SetUp() override {
    REQUIRE_MEMFD_SECRET();
    ASSERT_EQ(exmem_protection(), EXMEM_PROT_SECRET)
        << "memfd_secret works here, so the default policy must use it; " << last_error_text();
    if (::geteuid() != 0)
      std::fprintf(stderr, "note: not running as root; the reads below are attempted by the holder's parent\n");
    std::string why = holder_.start();
    ASSERT_TRUE(why.empty()) << why;
  }
  void TearDown() override {
    if (holder_.pid() > 0) {
      int status = holder_.finish();
      EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
          << "the holder " << describe_status(status)
          << " (2: no secret, 3: not memfd_secret, 4: its secret was changed from outside)";
    }
  }
  Holder holder_{random_seed()};
};

std::string read_vm(pid_t pid, uintptr_t addr, ssize_t* got, int* err) {
  std::string buf(kLen, '\0');
  iovec local{buf.data(), kLen};
  iovec remote{reinterpret_cast<void*>(addr), kLen};
  errno = 0;
  *got = ::process_vm_readv(pid, &local, 1, &remote, 1, 0);
  *err = errno;
  return buf;
}

std::string read_mem(int fd, uintptr_t addr, ssize_t* got, int* err) {
  std::string buf(kLen, '\0');
  errno = 0;
  *got = ::pread(fd, buf.data(), kLen, static_cast<off_t>(addr));
  *err = errno;
  return buf;
}

TEST_F(SecretIsolation, ProcessVmReadvCannotReadALiveSecret) {
  ssize_t got;
  int err;
  std::string control = read_vm(holder_.pid(), holder_.plain(), &got, &err);
  ASSERT_EQ(got, static_cast<ssize_t>(kLen)) << "control read of malloc memory failed: " << std::strerror(err);
  ASSERT_EQ(control, holder_.pattern()) << "control read returned other bytes";

  std::string seen = read_vm(holder_.pid(), holder_.secret(), &got, &err);
  EXPECT_NE(got, static_cast<ssize_t>(kLen)) << "process_vm_readv read the whole secret";
  EXPECT_NE(seen, holder_.pattern()) << "process_vm_readv returned the secret bytes";
  if (got < 0) {
    EXPECT_EQ(err, EFAULT) << std::strerror(err);
  }
}

TEST_F(SecretIsolation, ProcMemCannotReadALiveSecret) {
  int fd = ::open(strf("/proc/%d/mem", holder_.pid()).c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0) << "open /proc/PID/mem: " << std::strerror(errno);
  ssize_t got;
  int err;
  std::string control = read_mem(fd, holder_.plain(), &got, &err);
  ASSERT_EQ(got, static_cast<ssize_t>(kLen)) << "control pread of malloc memory failed: " << std::strerror(err);
  ASSERT_EQ(control, holder_.pattern());

  std::string seen = read_mem(fd, holder_.secret(), &got, &err);
  ::close(fd);
  EXPECT_LT(got, static_cast<ssize_t>(kLen)) << "pread on /proc/PID/mem read the whole secret";
  EXPECT_NE(seen, holder_.pattern()) << "/proc/PID/mem returned the secret bytes";
}

TEST_F(SecretIsolation, PtracePeekdataCannotReadALiveSecret) {
  pid_t pid = holder_.pid();
  ASSERT_EQ(::ptrace(PTRACE_ATTACH, pid, nullptr, nullptr), 0) << "PTRACE_ATTACH: " << std::strerror(errno);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSTOPPED(status)) << describe_status(status);

  std::string pattern = holder_.pattern();
  long want;
  std::memcpy(&want, pattern.data(), sizeof want);

  errno = 0;
  long control = ::ptrace(PTRACE_PEEKDATA, pid, reinterpret_cast<void*>(holder_.plain()), nullptr);
  int control_err = errno;
  errno = 0;
  long seen = ::ptrace(PTRACE_PEEKDATA, pid, reinterpret_cast<void*>(holder_.secret()), nullptr);
  int err = errno;
  ::ptrace(PTRACE_DETACH, pid, nullptr, nullptr);

  ASSERT_EQ(control_err, 0) << "control PEEKDATA of malloc memory failed: " << std::strerror(control_err);
  ASSERT_EQ(control, want) << "control PEEKDATA returned other bytes";
  EXPECT_NE(err, 0) << "PTRACE_PEEKDATA of the secret succeeded and returned 0x" << std::hex << seen;
  EXPECT_NE(seen, want) << "PTRACE_PEEKDATA returned the secret bytes";
}

TEST_F(SecretIsolation, AnotherProcessCannotWriteALiveSecret) {
  // process_vm_writev, /proc/PID/mem and PTRACE_POKEDATA: each must fail. The
  // holder checks in TearDown that its secret is unchanged (exit status 4 if not).
  pid_t pid = holder_.pid();
  std::string junk(kLen, 'X');

  iovec local{junk.data(), kLen};
  iovec remote{reinterpret_cast<void*>(holder_.secret()), kLen};
  EXPECT_NE(::process_vm_writev(pid, &local, 1, &remote, 1, 0), static_cast<ssize_t>(kLen))
      << "process_vm_writev wrote into the secret";

  int fd = ::open(strf("/proc/%d/mem", pid).c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  EXPECT_NE(::pwrite(fd, junk.data(), kLen, static_cast<off_t>(holder_.secret())), static_cast<ssize_t>(kLen))
      << "pwrite on /proc/PID/mem wrote into the secret";
  ::close(fd);

  ASSERT_EQ(::ptrace(PTRACE_ATTACH, pid, nullptr, nullptr), 0) << std::strerror(errno);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  long rc = ::ptrace(PTRACE_POKEDATA, pid, reinterpret_cast<void*>(holder_.secret()),
                     reinterpret_cast<void*>(0x5858585858585858L));
  int err = errno;
  ::ptrace(PTRACE_DETACH, pid, nullptr, nullptr);
  EXPECT_EQ(rc, -1) << "PTRACE_POKEDATA wrote into the secret";
  if (rc == -1) {
    EXPECT_NE(err, 0);
  }
}

}  // namespace
