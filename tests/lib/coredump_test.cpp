// A core dump of the owner does not contain its secrets. A victim process
// (exmem_test_helper core ...) puts a distinctive 32-byte pattern in exmem
// memory and another in malloc memory, selects every kind of mapping for the
// dump (coredump_filter 0x1ff) and aborts; the test searches the core file.
// The malloc pattern must be there: it proves that the dump was written and
// searched correctly.
//
// The core must land in a known place, so the test sets the system-wide
// /proc/sys/kernel/core_pattern to a file in a temporary directory for the
// duration of the test (root only) and restores the previous value afterwards,
// whatever happens.
#include <exmem/exmem.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <random>

#include "support/test_util.hpp"

using namespace exmem_test;

namespace {

constexpr const char* kCorePattern = "/proc/sys/kernel/core_pattern";

uint64_t random_seed() {
  std::random_device rd;
  return (uint64_t{rd()} << 32) | rd() | 1;
}

class CoreDump : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0)
      GTEST_SKIP() << "NOT TESTED: the core dump test must run as root, to point the system-wide "
                      "kernel.core_pattern at a temporary directory; run the test suite as root to cover it";
    old_pattern_ = read_file(kCorePattern);
    while (!old_pattern_.empty() && old_pattern_.back() == '\n') old_pattern_.pop_back();
    if (old_pattern_.empty())
      GTEST_SKIP() << "NOT TESTED: cannot read " << kCorePattern << ": " << std::strerror(errno);
    dir_ = make_temp_dir();
    ASSERT_FALSE(dir_.empty()) << "mkdtemp: " << std::strerror(errno);
    std::string err;
    if (!write_file(kCorePattern, dir_ + "/core.%p", &err))
      GTEST_SKIP() << "NOT TESTED: cannot set " << kCorePattern << " (" << err
                   << "); a read-only /proc/sys (container?) prevents the core dump test";
    changed_ = true;
  }

  void TearDown() override {
    if (changed_) {
      std::string err;
      EXPECT_TRUE(write_file(kCorePattern, old_pattern_, &err))
          << "COULD NOT RESTORE " << kCorePattern << " to '" << old_pattern_ << "': " << err;
    }
    remove_tree(dir_);
  }

  // Runs the victim and finds its core file; returns its path (empty, with a
  // failure recorded, when there is none).
  std::string dump(const std::string& where, uint64_t seed, uint64_t control_seed) {
    ChildResult r = run_child([&] {
      std::string s1 = std::to_string(seed), s2 = std::to_string(control_seed);
      const char* argv[] = {helper_path(), "core", where.c_str(), s1.c_str(), s2.c_str(), nullptr};
      ::execv(argv[0], const_cast<char* const*>(argv));
      std::fprintf(stderr, "exec %s: %s\n", argv[0], std::strerror(errno));
      return 127;
    });
    EXPECT_TRUE(r.killed_by(SIGABRT) && WCOREDUMP(r.status))
        << "the victim should abort and dump core; it " << r.describe();
    std::string core;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(dir_, ec)) {
      core = e.path().string();
      break;
    }
    EXPECT_FALSE(core.empty()) << "no core file appeared in the temporary directory; the victim " << r.describe();
    return core;
  }

  // Whether the core holds the 32-byte pattern of seed.
  bool holds(const std::string& core, uint64_t seed) {
    size_t apparent = 0, data = 0;
    bool found = file_contains(core, make_pattern(32, seed), &apparent, &data);
    EXPECT_GT(data, 0u) << "the core file " << core << " holds no data";
    return found;
  }

  std::string old_pattern_;
  std::string dir_;
  bool changed_ = false;
};

TEST_F(CoreDump, SecretIsAbsentFromTheOwnersCoreDumpWhileMallocMemoryIsPresent) {
  REQUIRE_MEMFD_SECRET();
  uint64_t secret = random_seed(), control = random_seed();
  std::string core = dump("secret", secret, control);
  ASSERT_FALSE(core.empty());
  EXPECT_TRUE(holds(core, control)) << "control: the malloc pattern is missing from the core, so it proves nothing";
  EXPECT_FALSE(holds(core, secret)) << "the memfd_secret-backed secret is in the core dump";
}

TEST_F(CoreDump, SamePatternInMallocMemoryIsPresentInTheCoreDump) {
  // The control run of the test above, with the very same kind of pattern.
  uint64_t seed = random_seed();
  std::string core = dump("malloc", seed, 0);
  ASSERT_FALSE(core.empty());
  EXPECT_TRUE(holds(core, seed)) << "a malloc'd pattern is not in the core dump";
}

TEST_F(CoreDump, LockedFallbackSecretIsAbsentFromTheOwnersCoreDump) {
  uint64_t secret = random_seed(), control = random_seed();
  std::string core = dump("locked", secret, control);
  ASSERT_FALSE(core.empty());
  EXPECT_TRUE(holds(core, control)) << "control: the malloc pattern is missing from the core";
  EXPECT_FALSE(holds(core, secret)) << "a secret of the locked fallback is in the core dump (MADV_DONTDUMP missing?)";
}

TEST_F(CoreDump, UsingExmemDoesNotInflateTheCoreDump) {
  // A core handler behind a pipe (systemd-coredump, apport) receives every
  // dumped byte, holes included: the heap's metadata and reservations must not
  // add hundreds of MiB of zeros to every crash of a program that uses exmem.
  REQUIRE_MEMFD_SECRET();
  std::string plain = dump("malloc", random_seed(), 0);
  ASSERT_FALSE(plain.empty());
  size_t plain_size = 0, plain_data = 0;
  const std::string absent = make_pattern(32, random_seed());  // scans the whole file
  file_contains(plain, absent, &plain_size, &plain_data);
  remove_tree(plain);
  std::string core = dump("secret", random_seed(), 0);
  ASSERT_FALSE(core.empty());
  size_t size = 0, data = 0;
  file_contains(core, absent, &size, &data);
  EXPECT_LE(size, plain_size + 64 * MiB) << "a core dump of a program using exmem is " << size / MiB
                                         << " MiB (" << data / MiB << " MiB of data) against " << plain_size / MiB
                                         << " MiB without exmem";
}

}  // namespace
