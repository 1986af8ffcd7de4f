// Secrets in: exmem_is_exclusive on every kind of pointer; exmem_read from a
// pipe (short reads, end of file, more data than room, refused destinations,
// errors wipe); exmem_read_password through a pseudo-terminal (echo off while
// it waits, restored after, nothing echoed, too long a line wiped, not a
// terminal refused); exmem_random, exmem_adopt, exmem_equal; their C++
// wrappers. Timing independence of exmem_equal is not a unit test's business
// (see bench/).
#include <exmem/exmem.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <pty.h>
#include <sys/mman.h>
#include <termios.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <exmem/exmem.hpp>
#include <future>
#include <thread>

#include "support/test_util.hpp"

using namespace exmem_test;

namespace {

class Input : public ::testing::Test {
 protected:
  void SetUp() override {
    REQUIRE_MEMFD_SECRET();
    ASSERT_EQ(exmem_protection(), EXMEM_PROT_SECRET) << last_error_text();
  }
};

struct Pipe {
  int fd[2] = {-1, -1};
  Pipe() { EXPECT_EQ(::pipe2(fd, O_CLOEXEC), 0); }
  ~Pipe() {
    for (int f : fd)
      if (f >= 0) ::close(f);
  }
  void close_write() {
    ::close(fd[1]);
    fd[1] = -1;
  }
};

// What is left in fd now (non-blocking).
std::string leftover(int fd) {
  int fl = ::fcntl(fd, F_GETFL);
  ::fcntl(fd, F_SETFL, fl | O_NONBLOCK);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  ::fcntl(fd, F_SETFL, fl);
  return out;
}

// ---- exmem_is_exclusive -------------------------------------------------------------

TEST_F(Input, IsExclusiveKnowsLiveSmallObjectsByAnyByteOfTheirUsableSize) {
  char* p = static_cast<char*>(exmem_alloc(40));
  ASSERT_NE(p, nullptr);
  size_t usable = exmem_usable_size(p);
  EXPECT_EQ(exmem_is_exclusive(p), EXMEM_PROT_SECRET);
  EXPECT_EQ(exmem_is_exclusive(p + 1), EXMEM_PROT_SECRET) << "an interior pointer";
  EXPECT_EQ(exmem_is_exclusive(p + usable - 1), EXMEM_PROT_SECRET) << "the last usable byte";
  exmem_free(p);
  EXPECT_EQ(exmem_is_exclusive(p), EXMEM_PROT_NONE) << "a freed object (in this thread's cache)";
  EXPECT_EQ(exmem_is_exclusive(p + 1), EXMEM_PROT_NONE);

  // Freed in bulk: past the cache, back in the slab's bitmap.
  std::vector<void*> v;
  for (int i = 0; i < 200; ++i) v.push_back(exmem_alloc(100));
  for (void* q : v) EXPECT_EQ(exmem_is_exclusive(q), EXMEM_PROT_SECRET);
  for (void* q : v) exmem_free(q);
  for (void* q : v) EXPECT_EQ(exmem_is_exclusive(q), EXMEM_PROT_NONE) << q;
}

TEST_F(Input, IsExclusiveSaysNoneForAnObjectAnotherThreadFreed) {
  void* p = exmem_alloc(64);
  ASSERT_NE(p, nullptr);
  std::thread([p] { exmem_free(p); }).join();
  EXPECT_EQ(exmem_is_exclusive(p), EXMEM_PROT_NONE);
}

TEST_F(Input, IsExclusiveKnowsLargeObjectsVaultsAndSharedRegionsByAnyByte) {
  constexpr size_t kLarge = 100000;
  char* big = static_cast<char*>(exmem_alloc(kLarge));
  ASSERT_NE(big, nullptr);
  size_t big_len = exmem_usable_size(big);
  for (size_t off : {size_t{0}, size_t{5000}, kLarge - 1, big_len - 1})
    EXPECT_EQ(exmem_is_exclusive(big + off), EXMEM_PROT_SECRET) << "offset " << off;
  EXPECT_EQ(exmem_is_exclusive(big + big_len), EXMEM_PROT_NONE) << "the guard page after a large object";
  exmem_free(big);
  EXPECT_EQ(exmem_is_exclusive(big), EXMEM_PROT_NONE) << "a freed large object";
  EXPECT_EQ(exmem_is_exclusive(big + 5000), EXMEM_PROT_NONE);

  exmem_vault* v = exmem_vault_create(3 * 4096);
  ASSERT_NE(v, nullptr);
  char* va = static_cast<char*>(exmem_vault_open(v, EXMEM_VAULT_READ));
  ASSERT_EQ(exmem_vault_close(v, EXMEM_VAULT_READ), EXMEM_OK);
  for (size_t off : {size_t{0}, size_t{4096}, size_t{3 * 4096 - 1}})
    EXPECT_EQ(exmem_is_exclusive(va + off), EXMEM_PROT_SECRET) << "a closed vault, offset " << off;
  EXPECT_EQ(exmem_is_exclusive(va + 3 * 4096), EXMEM_PROT_NONE) << "past the vault";
  EXPECT_EQ(exmem_is_exclusive(va - 1), EXMEM_PROT_NONE) << "before the vault";
  ASSERT_EQ(exmem_vault_destroy(v), EXMEM_OK);
  EXPECT_EQ(exmem_is_exclusive(va), EXMEM_PROT_NONE) << "a destroyed vault";

  exmem_shared s{};
  ASSERT_EQ(exmem_share_create(5000, &s), EXMEM_OK);
  char* sa = static_cast<char*>(s.addr);
  EXPECT_EQ(exmem_is_exclusive(sa), EXMEM_PROT_SECRET);
  EXPECT_EQ(exmem_is_exclusive(sa + s.size - 1), EXMEM_PROT_SECRET);
  EXPECT_EQ(exmem_is_exclusive(sa + s.size), EXMEM_PROT_NONE);
  ASSERT_EQ(exmem_share_release(&s), EXMEM_OK);
  EXPECT_EQ(exmem_is_exclusive(sa), EXMEM_PROT_NONE) << "a released shared region";
}

int static_byte;

TEST_F(Input, IsExclusiveSaysNoneForAnythingElseWithoutTouchingIt) {
  int on_stack = 0;
  void* heap = std::malloc(64);
  void* unmapped = ::mmap(nullptr, 8192, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(unmapped, MAP_FAILED);
  ASSERT_EQ(::munmap(unmapped, 8192), 0);
  for (const void* p : {static_cast<const void*>(nullptr), static_cast<const void*>(&on_stack),
                        static_cast<const void*>(heap), static_cast<const void*>(&static_byte), static_cast<const void*>(unmapped),
                        reinterpret_cast<const void*>(uintptr_t{1}), reinterpret_cast<const void*>(~uintptr_t{0}),
                        reinterpret_cast<const void*>(uintptr_t{0xffff800000001000})})
    EXPECT_EQ(exmem_is_exclusive(p), EXMEM_PROT_NONE) << p;
  std::free(heap);
  EXPECT_EQ(exmem::is_exclusive(&on_stack), EXMEM_PROT_NONE);
}

int is_exclusive_under_locked_and_canaries() {
  exmem_config cfg{};
  cfg.policy = EXMEM_LOCKED_ONLY;
  cfg.canaries = 1;
  CHILD_CHECK(exmem_init(&cfg) == EXMEM_OK, "init: %s", last_error_text().c_str());
  char* p = static_cast<char*>(exmem_alloc(24));
  char* q = static_cast<char*>(exmem_alloc(24));
  CHILD_CHECK(p && q, "alloc");
  size_t usable = exmem_usable_size(p);
  CHILD_CHECK(exmem_is_exclusive(p) == EXMEM_PROT_LOCKED, "small object: %d", exmem_is_exclusive(p));
  CHILD_CHECK(exmem_is_exclusive(p + usable - 1) == EXMEM_PROT_LOCKED, "last usable byte");
  CHILD_CHECK(exmem_is_exclusive(p + usable) == EXMEM_PROT_NONE, "the canary after the object counts as usable");
  void* big = exmem_alloc(20000);
  CHILD_CHECK(exmem_is_exclusive(static_cast<char*>(big) + 19999) == EXMEM_PROT_LOCKED, "large object");
  exmem_vault* v = exmem_vault_create(100);
  void* va = exmem_vault_open(v, EXMEM_VAULT_READ);
  CHILD_CHECK(exmem_is_exclusive(va) == EXMEM_PROT_LOCKED, "vault: %d", exmem_is_exclusive(va));
  exmem_vault_close(v, EXMEM_VAULT_READ);
  exmem_vault_destroy(v);
  exmem_free(p);
  exmem_free(q);
  exmem_free(big);
  return 0;
}

TEST(InputLocked, IsExclusiveSaysLockedUnderLockedOnlyAndLeavesCanariesOut) {
  EXPECT_IN_FRESH_PROCESS(is_exclusive_under_locked_and_canaries);
}

// ---- exmem_read ---------------------------------------------------------------------

TEST_F(Input, ReadGathersShortReadsUntilEndOfFile) {
  Pipe pp;
  char* dst = static_cast<char*>(exmem_alloc(64));
  ASSERT_NE(dst, nullptr);
  std::thread writer([&] {
    for (const char* chunk : {"01", "23", "45", "67", "89"}) {
      write_all(pp.fd[1], chunk, 2);
      std::this_thread::sleep_for(20ms);
    }
    pp.close_write();
  });
  ssize_t n = exmem_read(pp.fd[0], dst, 64);
  writer.join();
  EXPECT_EQ(n, 10) << last_error_text();
  EXPECT_EQ(std::string(dst, 10), "0123456789");
  EXPECT_TRUE(all_zero(dst + 10, 54)) << "bytes past what was read changed";
  exmem_free(dst);
}

TEST_F(Input, ReadStopsAtSizeAndLeavesTheRestInThePipe) {
  Pipe pp;
  std::string data = make_pattern(150, 3);
  ASSERT_TRUE(write_all(pp.fd[1], data.data(), data.size()));
  char* dst = static_cast<char*>(exmem_alloc(128));
  EXPECT_EQ(exmem_read(pp.fd[0], dst, 100), 100) << last_error_text();
  EXPECT_EQ(std::string(dst, 100), data.substr(0, 100));
  EXPECT_EQ(leftover(pp.fd[0]), data.substr(100)) << "exmem_read took more than it was asked";
  EXPECT_EQ(exmem_read(pp.fd[0], dst, 0), 0);
  exmem_free(dst);
}

TEST_F(Input, ReadRefusesADestinationThatIsNotWritableExmemMemoryBeforeReading) {
  Pipe pp;
  ASSERT_TRUE(write_all(pp.fd[1], "secret", 6));
  char stack_buf[64];
  void* plain = std::malloc(64);
  char* small = static_cast<char*>(exmem_alloc(32));
  char* large = static_cast<char*>(exmem_alloc(100000));
  size_t large_len = exmem_usable_size(large);
  exmem_vault* v = exmem_vault_create(4096);
  ASSERT_TRUE(small && large && v);
  struct Case {
    const char* what;
    void* dst;
    size_t size;
    const char* says;
  } refused[] = {
      {"a stack buffer", stack_buf, 6, "not exmem memory"},
      {"a malloc'd buffer", plain, 6, "not exmem memory"},
      {"NULL", nullptr, 6, "not exmem memory"},
      {"past a small object's end", small, 33, "do not fit"},
      {"an interior pointer past the end", small + 16, 17, "do not fit"},
      {"past a large object's end", large + large_len - 5, 6, "do not fit"},
  };
  for (const Case& c : refused) {
    errno = 0;
    EXPECT_EQ(exmem_read(pp.fd[0], c.dst, c.size), -1) << c.what;
    EXPECT_EQ(errno, EINVAL) << c.what;
    EXPECT_EQ(exmem_last_error(), EXMEM_E_INVALID) << c.what;
    EXPECT_TRUE(contains(exmem_last_error_message(), c.says)) << c.what << ": " << exmem_last_error_message();
  }
  // A vault must be open for writing.
  void* va = exmem_vault_open(v, EXMEM_VAULT_READ);
  ASSERT_EQ(exmem_vault_close(v, EXMEM_VAULT_READ), EXMEM_OK);
  EXPECT_EQ(exmem_read(pp.fd[0], va, 6), -1) << "a closed vault";
  EXPECT_TRUE(contains(exmem_last_error_message(), "not open for writing")) << exmem_last_error_message();
  ASSERT_EQ(exmem_vault_open(v, EXMEM_VAULT_READ), va);
  EXPECT_EQ(exmem_read(pp.fd[0], va, 6), -1) << "a vault open for reading only";
  EXPECT_TRUE(contains(exmem_last_error_message(), "not open for writing")) << exmem_last_error_message();
  ASSERT_EQ(exmem_vault_close(v, EXMEM_VAULT_READ), EXMEM_OK);
  EXPECT_EQ(leftover(pp.fd[0]), "secret") << "a refused read consumed input";

  // What fits is taken: an interior pointer, the end of a large object, an open vault.
  ASSERT_TRUE(write_all(pp.fd[1], "0123456789abcdefghijkl", 22));
  EXPECT_EQ(exmem_read(pp.fd[0], small + 16, 16), 16) << last_error_text();
  EXPECT_EQ(exmem_read(pp.fd[0], large + large_len - 2, 2), 2) << last_error_text();
  ASSERT_EQ(exmem_vault_open(v, EXMEM_VAULT_READ_WRITE), va);
  EXPECT_EQ(exmem_read(pp.fd[0], static_cast<char*>(va) + 4090, 4), 4) << last_error_text();
  EXPECT_EQ(std::string(static_cast<char*>(va) + 4090, 4), "ijkl");
  ASSERT_EQ(exmem_vault_close(v, EXMEM_VAULT_READ_WRITE), EXMEM_OK);
  exmem_shared s{};
  ASSERT_EQ(exmem_share_create(4096, &s), EXMEM_OK);
  ASSERT_TRUE(write_all(pp.fd[1], "xyz", 3));
  EXPECT_EQ(exmem_read(pp.fd[0], s.addr, 3), 3) << "a shared region: " << last_error_text();
  EXPECT_EQ(exmem_share_release(&s), EXMEM_OK);
  EXPECT_EQ(exmem_vault_destroy(v), EXMEM_OK);
  exmem_free(small);
  exmem_free(large);
  std::free(plain);
}

TEST_F(Input, ReadErrorWipesWhatWasReadAndKeepsErrno) {
  Pipe pp;
  ASSERT_EQ(::fcntl(pp.fd[0], F_SETFL, O_NONBLOCK), 0);
  ASSERT_TRUE(write_all(pp.fd[1], "0123456789", 10));
  char* dst = static_cast<char*>(exmem_alloc(64));
  std::memset(dst, 0xAA, 64);
  errno = 0;
  // 10 bytes come, then the empty non-blocking pipe says EAGAIN.
  EXPECT_EQ(exmem_read(pp.fd[0], dst, 64), -1);
  EXPECT_EQ(errno, EAGAIN);
  EXPECT_EQ(exmem_last_error(), EXMEM_E_SYSTEM);
  EXPECT_TRUE(contains(exmem_last_error_message(), "after 10 of 64 bytes")) << exmem_last_error_message();
  EXPECT_TRUE(all_zero(dst, 10)) << "the bytes read before the error were not wiped: " << hex_bytes(dst, 10);
  EXPECT_TRUE(all_equal(dst + 10, 54, 0xAA));
  errno = 0;
  EXPECT_EQ(exmem_read(-1, dst, 8), -1);
  EXPECT_EQ(errno, EBADF);
  exmem_free(dst);
}

// ---- exmem_read_password --------------------------------------------------------------

struct Pty {
  int master = -1, slave = -1;
  Pty() { EXPECT_EQ(::openpty(&master, &slave, nullptr, nullptr, nullptr), 0) << std::strerror(errno); }
  ~Pty() {
    if (master >= 0) ::close(master);
    if (slave >= 0) ::close(slave);
  }
  tcflag_t lflag() const {
    termios t{};
    ::tcgetattr(slave, &t);
    return t.c_lflag;
  }
  // Waits until the reader turned echo off (it then waits for input).
  bool wait_echo_off(std::chrono::milliseconds timeout = 10s) const {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (lflag() & ECHO) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(1ms);
    }
    return true;
  }
  std::string output() const { return leftover(master); }
};

// Runs exmem_read_password on the pty's slave in a thread, types `typed` on the
// master once echo is off, and returns the call's result (errno in *err, and
// that thread's last error message in *message).
ssize_t type_password(Pty& pty, const std::string& typed, void* dst, size_t size, int* err,
                      std::string* message = nullptr, const char* prompt = "Password: ") {
  auto f = std::async(std::launch::async, [&] {
    errno = 0;
    ssize_t n = exmem_read_password(pty.slave, prompt, dst, size);
    *err = errno;
    if (message) *message = exmem_last_error_message();
    return n;
  });
  bool off = pty.wait_echo_off();
  EXPECT_TRUE(off) << "echo was never turned off while exmem_read_password waited";
  write_all(pty.master, typed.data(), typed.size());
  if (f.wait_for(10s) != std::future_status::ready) {
    ADD_FAILURE() << "exmem_read_password did not return after the input " << typed.size() << " bytes";
    write_all(pty.master, "\n\x04\x04", 3);  // let it go
  }
  return f.get();
}

TEST_F(Input, ReadPasswordTurnsEchoOffWhileItReadsAndRestoresItAfter) {
  Pty pty;
  ASSERT_TRUE(pty.lflag() & ECHO) << "the new pty does not echo to begin with";
  termios before{};
  ASSERT_EQ(::tcgetattr(pty.slave, &before), 0);
  char* dst = static_cast<char*>(exmem_alloc(64));
  std::memset(dst, 0xAA, 64);
  int err = 0;
  ssize_t n = type_password(pty, "hunter2\n", dst, 64, &err);
  EXPECT_EQ(n, 7) << std::strerror(err) << "; " << last_error_text();
  EXPECT_STREQ(dst, "hunter2");
  termios after{};
  ASSERT_EQ(::tcgetattr(pty.slave, &after), 0);
  EXPECT_EQ(after.c_lflag, before.c_lflag) << "the terminal's local modes were not restored";
  EXPECT_TRUE(after.c_lflag & ECHO);
  std::string shown = pty.output();
  EXPECT_TRUE(contains(shown, "Password: ")) << "the prompt was not written to the terminal: " << shown;
  EXPECT_FALSE(contains(shown, "hunter")) << "the password was echoed: " << shown;
  exmem_free(dst);
}

TEST_F(Input, ReadPasswordTooLongALineIsENOBUFSWipedAndConsumed) {
  Pty pty;
  char* dst = static_cast<char*>(exmem_alloc(8));
  std::memset(dst, 0xAA, 8);
  int err = 0;
  std::string message;
  EXPECT_EQ(type_password(pty, "0123456789abcdef\n", dst, 8, &err, &message), -1);
  EXPECT_EQ(err, ENOBUFS);
  EXPECT_TRUE(contains(message, "does not fit")) << message;
  EXPECT_TRUE(all_zero(dst, 8)) << "what was read was not wiped: " << hex_bytes(dst, 8);
  EXPECT_TRUE(pty.lflag() & ECHO) << "echo was not restored after ENOBUFS";
  EXPECT_FALSE(contains(pty.output(), "0123")) << "the too-long password was echoed";
  // Exactly size - 1 characters fit, and the rest of the long line was not left behind.
  EXPECT_EQ(type_password(pty, "1234567\n", dst, 8, &err), 7) << std::strerror(err);
  EXPECT_STREQ(dst, "1234567");
  exmem_free(dst);
}

TEST_F(Input, ReadPasswordTakesALineEndedByEndOfFile) {
  Pty pty;
  char* dst = static_cast<char*>(exmem_alloc(32));
  std::memset(dst, 0xAA, 32);
  int err = 0;
  // ^D after "abc" hands it over without a newline; a second ^D is end of file.
  EXPECT_EQ(type_password(pty, "abc\x04\x04", dst, 32, &err), 3) << std::strerror(err);
  EXPECT_STREQ(dst, "abc");
  EXPECT_EQ(type_password(pty, "\x04", dst, 32, &err), 0) << "end of file at once: an empty line";
  EXPECT_STREQ(dst, "");
  EXPECT_TRUE(pty.lflag() & ECHO);
  exmem_free(dst);
}

TEST_F(Input, ReadPasswordRefusesWhatIsNotATerminalAndTouchesNothing) {
  char* dst = static_cast<char*>(exmem_alloc(32));
  int file = ::memfd_create("not-a-tty", MFD_CLOEXEC);
  ASSERT_GE(file, 0);
  errno = 0;
  EXPECT_EQ(exmem_read_password(file, "Password: ", dst, 32), -1);
  EXPECT_EQ(errno, ENOTTY);
  EXPECT_TRUE(contains(exmem_last_error_message(), "not a usable terminal")) << exmem_last_error_message();
  EXPECT_EQ(::lseek(file, 0, SEEK_END), 0) << "the prompt was written to a file that is not a terminal";
  ::close(file);

  // No controlling terminal: /dev/tty cannot be opened.
  ChildResult r = run_child([] {
    CHILD_CHECK(::setsid() > 0, "setsid: %s", std::strerror(errno));
    char* d = static_cast<char*>(exmem_alloc(32));
    errno = 0;
    CHILD_CHECK(exmem_read_password(-1, "Password: ", d, 32) == -1, "read a password without a terminal");
    CHILD_CHECK(errno == ENOTTY, "errno %s", std::strerror(errno));
    CHILD_CHECK(contains(exmem_last_error_message(), "/dev/tty"), "%s", exmem_last_error_message());
    return 0;
  });
  EXPECT_TRUE(r.succeeded()) << r.describe();

  // A destination outside exmem memory is refused before the terminal is touched.
  Pty pty;
  char plain[32];
  errno = 0;
  EXPECT_EQ(exmem_read_password(pty.slave, "Password: ", plain, sizeof plain), -1);
  EXPECT_EQ(errno, EINVAL);
  EXPECT_EQ(pty.output(), "") << "the prompt was written though the destination was refused";
  EXPECT_EQ(exmem_read_password(pty.slave, "Password: ", dst, 0), -1) << "size 0 has no room for the NUL";
  EXPECT_EQ(errno, EINVAL);
  try {
    exmem::read_password(dst, 32, nullptr, 1000000);
    ADD_FAILURE() << "exmem::read_password did not throw on a descriptor that is not open";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), EBADF) << e.what();
  }
  exmem_free(dst);
}

// ---- exmem_random, exmem_adopt, exmem_equal ------------------------------------------

TEST_F(Input, RandomFillsAndTwoCallsDiffer) {
  auto* a = static_cast<unsigned char*>(exmem_alloc(64));
  auto* b = static_cast<unsigned char*>(exmem_alloc(64));
  ASSERT_TRUE(a && b);
  ASSERT_EQ(exmem_random(a, 64), EXMEM_OK) << last_error_text();
  ASSERT_EQ(exmem_random(b, 64), EXMEM_OK) << last_error_text();
  EXPECT_FALSE(all_zero(a, 64));
  EXPECT_NE(std::memcmp(a, b, 64), 0) << "two calls gave the same 64 bytes";
  EXPECT_EQ(exmem_random(a, 0), EXMEM_OK);
  char plain[16];
  errno = 0;
  EXPECT_EQ(exmem_random(plain, sizeof plain), EXMEM_E_INVALID) << "random bytes into plain memory";
  EXPECT_EQ(errno, EINVAL);
  EXPECT_EQ(exmem_random(a, 65), EXMEM_E_INVALID) << "past the object";
  EXPECT_THROW(exmem::random(plain, sizeof plain), std::system_error);
  exmem::random(b, 64);
  exmem_free(a);
  exmem_free(b);
}

TEST_F(Input, RandomFillsMoreThanOneGetrandomCallGives) {
  // getrandom(2) gives at most 32 MiB - 1 bytes a call.
  constexpr size_t kSize = 33 * MiB;
  auto* p = static_cast<unsigned char*>(exmem_alloc(kSize));
  ASSERT_NE(p, nullptr) << last_error_text();
  ASSERT_EQ(exmem_random(p, kSize), EXMEM_OK) << last_error_text();
  EXPECT_FALSE(all_zero(p, 4096));
  EXPECT_FALSE(all_zero(p + kSize - 4096, 4096)) << "the tail past the first getrandom call was not filled";
  exmem_free(p);
}

TEST_F(Input, AdoptCopiesIntoExmemMemoryAndWipesTheSource) {
  auto* src = static_cast<char*>(std::malloc(100));
  fill_pattern(src, 100, 77);
  void* p = exmem_adopt(src, 100);
  ASSERT_NE(p, nullptr) << last_error_text();
  EXPECT_TRUE(has_pattern(p, 100, 77));
  EXPECT_EQ(exmem_is_exclusive(p), EXMEM_PROT_SECRET);
  EXPECT_TRUE(all_zero(src, 100)) << "the source was not wiped";
  exmem_free(p);
  errno = 0;
  EXPECT_EQ(exmem_adopt(nullptr, 10), nullptr);
  EXPECT_EQ(errno, EINVAL);
  std::free(src);

  std::array<unsigned char, 32> key{};
  fill_pattern(key.data(), key.size(), 5);
  exmem::secret<std::array<unsigned char, 32>> s = exmem::adopt(key);
  EXPECT_TRUE(has_pattern(s->data(), 32, 5));
  EXPECT_EQ(exmem_is_exclusive(s.get()), EXMEM_PROT_SECRET);
  EXPECT_TRUE(all_zero(key.data(), key.size())) << "exmem::adopt(T&) did not wipe the original";
}

int adopt_failure_leaves_source() {
  exmem_config cfg{};
  cfg.maximum = MiB;
  CHILD_CHECK(exmem_init(&cfg) == EXMEM_OK, "init");
  size_t n = 2 * MiB;
  auto* src = static_cast<char*>(std::malloc(n));
  fill_pattern(src, n, 8);
  errno = 0;
  CHILD_CHECK(exmem_adopt(src, n) == nullptr, "2 MiB adopted under a 1 MiB maximum");
  CHILD_CHECK(errno == ENOMEM, "errno %d", errno);
  CHILD_CHECK(exmem_last_error() == EXMEM_E_MAXIMUM, "%s", last_error_text().c_str());
  CHILD_CHECK(has_pattern(src, n, 8), "a failed adopt touched the source");
  try {
    exmem::adopt(src, n);
    CHILD_CHECK(false, "exmem::adopt did not throw");
  } catch (const exmem::bad_alloc& e) {
    CHILD_CHECK(e.error() == EXMEM_E_MAXIMUM, "error %d", e.error());
  }
  CHILD_CHECK(has_pattern(src, n, 8), "a failed exmem::adopt touched the source");
  std::free(src);
  return 0;
}

TEST(InputLimits, AdoptThatCannotAllocateLeavesTheSourceUntouched) {
  EXPECT_IN_FRESH_PROCESS(adopt_failure_leaves_source);
}

TEST_F(Input, EqualComparesEveryByteAndBit) {
  for (size_t n : {size_t{1}, size_t{7}, size_t{8}, size_t{9}, size_t{31}, size_t{64}, size_t{1000}}) {
    std::string a = make_pattern(n, n), b = a;
    EXPECT_EQ(exmem_equal(a.data(), b.data(), n), 1) << n;
    for (size_t i = 0; i < n; ++i) {
      for (int bit : {0, 7}) {
        b[i] = static_cast<char>(b[i] ^ (1 << bit));
        EXPECT_EQ(exmem_equal(a.data(), b.data(), n), 0) << "size " << n << ", byte " << i << ", bit " << bit;
        b[i] = a[i];
      }
    }
    EXPECT_TRUE(exmem::equal(a.data(), b.data(), n));
  }
  EXPECT_EQ(exmem_equal("a", "b", 0), 1) << "no bytes: equal";
  EXPECT_EQ(exmem_equal(nullptr, "b", 1), 0);
  EXPECT_EQ(exmem_equal(nullptr, nullptr, 0), 1);
}

TEST_F(Input, CxxReadThrowsSystemErrorWithErrno) {
  Pipe pp;
  char* dst = static_cast<char*>(exmem_alloc(16));
  ASSERT_TRUE(write_all(pp.fd[1], "abc", 3));
  pp.close_write();
  EXPECT_EQ(exmem::read(pp.fd[0], dst, 16), 3u);
  char plain[4];
  try {
    exmem::read(pp.fd[0], plain, 4);
    ADD_FAILURE() << "exmem::read into plain memory did not throw";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), EINVAL);
    EXPECT_TRUE(contains(e.what(), "not exmem memory")) << e.what();
  }
  exmem_free(dst);
}

}  // namespace
