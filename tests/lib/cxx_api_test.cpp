// The C++ API: exmem::allocator and the containers built on it keep their
// storage in exclusive memory, exmem::secret<T> wipes its bytes when it is reset
// or destroyed, and errors are exmem::bad_alloc (a std::bad_alloc) carrying the
// reason.
#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <limits>
#include <exmem/exmem.hpp>
#include <list>
#include <map>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "support/test_util.hpp"

using namespace exmem_test;

namespace {

static_assert(std::is_base_of_v<std::bad_alloc, exmem::bad_alloc>);
static_assert(!std::is_copy_constructible_v<exmem::secret<int>>);
static_assert(std::is_nothrow_move_constructible_v<exmem::secret<int>>);

class CxxApi : public ::testing::Test {
 protected:
  void SetUp() override {
    REQUIRE_MEMFD_SECRET();
    ASSERT_EQ(exmem::protection(), EXMEM_PROT_SECRET) << last_error_text();
  }
};

// True when [p, p+n) is a live exmem object's storage in memfd_secret memory.
::testing::AssertionResult in_exclusive_memory(const void* p, size_t n) {
  size_t usable = exmem_usable_size(p);
  if (usable < n) return ::testing::AssertionFailure() << p << " is not an exmem object of >= " << n << " bytes";
  auto vma = vma_of(p);
  if (!vma || !is_secretmem(*vma))
    return ::testing::AssertionFailure() << p << " is not in a memfd_secret mapping";
  return ::testing::AssertionSuccess();
}

TEST_F(CxxApi, VectorStorageIsInExclusiveMemory) {
  exmem::vector<int> v;
  for (int i = 0; i < 10000; ++i) v.push_back(i * 3);
  EXPECT_TRUE(in_exclusive_memory(v.data(), v.size() * sizeof(int)));
  for (int i = 0; i < 10000; ++i) ASSERT_EQ(v[static_cast<size_t>(i)], i * 3);
  exmem::vector<unsigned char> small(24, 0x5A);
  EXPECT_TRUE(in_exclusive_memory(small.data(), small.size()));
  // Control: ordinary storage is not taken for exmem's.
  std::vector<int> plain(100);
  EXPECT_EQ(exmem_usable_size(plain.data()), 0u);
}

TEST_F(CxxApi, StringStorageIsInExclusiveMemory) {
  exmem::string s = "correct horse battery staple, and then some more words to leave the small buffer";
  s += s;
  EXPECT_TRUE(in_exclusive_memory(s.data(), s.size() + 1));
  EXPECT_EQ(s.substr(0, 13), "correct horse");
  exmem::string copy = s;
  EXPECT_TRUE(in_exclusive_memory(copy.data(), copy.size() + 1));
  EXPECT_EQ(copy, s);
}

TEST_F(CxxApi, AllocatorServesNodeContainers) {
  std::map<int, int, std::less<int>, exmem::allocator<std::pair<const int, int>>> m;
  std::list<long, exmem::allocator<long>> l;
  for (int i = 0; i < 2000; ++i) {
    m[i] = -i;
    l.push_back(i);
  }
  // Node containers hand out pointers into their nodes: check the mapping.
  for (const void* p : {static_cast<const void*>(&m.at(1000)), static_cast<const void*>(&l.back())}) {
    auto vma = vma_of(p);
    EXPECT_TRUE(vma && is_secretmem(*vma)) << p << " is not in memfd_secret memory";
  }
  long sum = 0;
  for (long x : l) sum += x;
  EXPECT_EQ(sum, 1999L * 2000 / 2);
  EXPECT_EQ(m.at(1234), -1234);
}

TEST_F(CxxApi, AllocatorsCompareEqualAndRebind) {
  exmem::allocator<int> a;
  exmem::allocator<double> b(a);
  EXPECT_TRUE(a == b);
  double* p = b.allocate(10);
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(in_exclusive_memory(p, 10 * sizeof(double)));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % alignof(double), 0u);
  b.deallocate(p, 10);
}

TEST_F(CxxApi, SecretHoldsItsValueInExclusiveMemory) {
  exmem::secret<std::array<unsigned char, 32>> key;
  ASSERT_TRUE(key);
  EXPECT_TRUE(all_zero(key->data(), 32)) << "value-initialised";
  EXPECT_TRUE(in_exclusive_memory(key.get(), 32));
  fill_pattern(key->data(), 32, 9);
  EXPECT_TRUE(has_pattern((*key).data(), 32, 9));
  exmem::secret<int> n(42);
  EXPECT_EQ(*n, 42);
}

TEST_F(CxxApi, SecretWipesItsBytesOnResetAndDestruction) {
  // Read the old bytes where the secret was (a live neighbour keeps the slab in
  // use). In a child: if the memory is gone instead, the child faults, which
  // also keeps the secret out of reach, and the test says which happened.
  ChildResult r = run_child([] {
    exmem::secret<std::array<unsigned char, 48>> keep;
    exmem::secret<std::array<unsigned char, 48>> key;
    fill_pattern(key->data(), 48, 77);
    const unsigned char* old = key->data();
    key.reset();
    CHILD_CHECK(!key, "the handle is not empty after reset");
    CHILD_CHECK(all_zero(old, 48), "after reset the old bytes are still there: %s", hex_bytes(old, 48).c_str());

    const unsigned char* old2 = nullptr;
    {
      exmem::secret<std::array<unsigned char, 48>> scoped;
      fill_pattern(scoped->data(), 48, 78);
      old2 = scoped->data();
    }
    CHILD_CHECK(all_zero(old2, 48), "after destruction the old bytes are still there: %s",
                hex_bytes(old2, 48).c_str());
    return 0;
  });
  EXPECT_TRUE(r.succeeded()) << r.describe();
}

TEST_F(CxxApi, SecretMovesOwnershipWithoutCopying) {
  exmem::secret<std::array<unsigned char, 16>> a;
  fill_pattern(a->data(), 16, 5);
  auto* where = a.get();
  exmem::secret<std::array<unsigned char, 16>> b(std::move(a));
  EXPECT_FALSE(a);  // NOLINT(bugprone-use-after-move): the moved-from state is specified
  EXPECT_EQ(b.get(), where);
  exmem::secret<std::array<unsigned char, 16>> c;
  c = std::move(b);
  EXPECT_EQ(c.get(), where);
  EXPECT_TRUE(has_pattern(c->data(), 16, 5));
}

struct Throws {
  explicit Throws(int) { throw std::runtime_error("constructor failed"); }
};

TEST_F(CxxApi, SecretWhoseConstructorThrowsReleasesItsMemory) {
  struct exmem_stats before = exmem::stats();
  EXPECT_THROW(exmem::secret<Throws>(1), std::runtime_error);
  struct exmem_stats after = exmem::stats();
  EXPECT_EQ(after.live_objects, before.live_objects);
}

TEST_F(CxxApi, FailureThrowsExmemBadAllocCarryingTheReason) {
  exmem::allocator<char> a;
  try {
    (void)a.allocate(std::numeric_limits<size_t>::max() / 2);
    FAIL() << "an impossible allocation succeeded";
  } catch (const exmem::bad_alloc& e) {
    EXPECT_NE(e.error(), EXMEM_OK);
    EXPECT_GT(std::strlen(e.what()), 0u);
    EXPECT_STRNE(e.what(), "std::bad_alloc");
  }
  bool as_std = false;
  try {
    exmem::vector<long> v;
    v.reserve(std::numeric_limits<size_t>::max() / 64);
  } catch (const std::bad_alloc&) {
    as_std = true;
  } catch (const std::length_error&) {
    as_std = true;  // the container may refuse first; either way no crash
  }
  EXPECT_TRUE(as_std);
}

TEST_F(CxxApi, StatsMatchTheCApi) {
  exmem::vector<char> v(1000);
  struct exmem_stats a = exmem::stats();
  struct exmem_stats b{};
  ASSERT_EQ(exmem_stats(&b), 0);
  EXPECT_EQ(a.live_objects, b.live_objects);
  EXPECT_EQ(a.reserved_bytes, b.reserved_bytes);
  EXPECT_EQ(a.protection, EXMEM_PROT_SECRET);
}

int init_conflict_throws() {
  exmem_config cfg{};
  cfg.canaries = 1;
  exmem::init(cfg);
  exmem::init(cfg);  // identical: fine
  cfg.canaries = 0;
  try {
    exmem::init(cfg);
    CHILD_CHECK(false, "a conflicting exmem::init did not throw");
  } catch (const exmem::bad_alloc& e) {
    CHILD_CHECK(e.error() == EXMEM_E_ALREADY, "the exception carries %d (%s), expected EXMEM_E_ALREADY", e.error(),
                e.what());
  }
  return 0;
}

TEST(CxxInit, ConflictingInitThrowsWithEXMEM_E_ALREADY) { EXPECT_IN_FRESH_PROCESS(init_conflict_throws); }

}  // namespace
