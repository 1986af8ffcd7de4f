// struct exmem_stats tells the truth: live objects and bytes follow allocations and
// frees, and what it says about mappings and locked memory agrees with the
// kernel's view (/proc/self/maps, /proc/self/status). Density: a million live
// 32-byte secrets fit in 48 MiB of exclusive memory and 64 mappings.
#include <exmem/exmem.h>
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "support/test_util.hpp"

using namespace exmem_test;

namespace {

struct exmem_stats get_stats() {
  struct exmem_stats s{};
  EXPECT_EQ(exmem_stats(&s), 0);
  return s;
}

class Stats : public ::testing::Test {
 protected:
  void SetUp() override {
    REQUIRE_MEMFD_SECRET();
    ASSERT_EQ(exmem_protection(), EXMEM_PROT_SECRET) << last_error_text();
  }
};

TEST_F(Stats, CountLiveObjectsAndTheirUsableBytes) {
  struct exmem_stats s0 = get_stats();
  std::vector<void*> v;
  size_t bytes = 0;
  for (size_t i = 0; i < 1000; ++i) {
    void* p = exmem_alloc(1 + i % 700);
    ASSERT_NE(p, nullptr);
    bytes += exmem_usable_size(p);
    v.push_back(p);
  }
  for (size_t n : {size_t{5000}, size_t{20000}, size_t{700000}}) {
    void* p = exmem_alloc(n);
    ASSERT_NE(p, nullptr);
    bytes += exmem_usable_size(p);
    v.push_back(p);
  }
  struct exmem_stats s1 = get_stats();
  EXPECT_EQ(s1.live_objects - s0.live_objects, v.size());
  EXPECT_EQ(s1.live_bytes - s0.live_bytes, bytes) << "live_bytes should sum the usable sizes";
  for (size_t i = 0; i < v.size(); i += 2) exmem_free(v[i]);
  struct exmem_stats s2 = get_stats();
  size_t freed_bytes = 0;
  EXPECT_EQ(s2.live_objects - s0.live_objects, v.size() / 2);
  for (size_t i = 1; i < v.size(); i += 2) {
    freed_bytes += exmem_usable_size(v[i]);
    exmem_free(v[i]);
  }
  struct exmem_stats s3 = get_stats();
  EXPECT_EQ(s3.live_objects, s0.live_objects);
  EXPECT_EQ(s3.live_bytes, s0.live_bytes);
  EXPECT_EQ(s2.live_bytes - s3.live_bytes, freed_bytes);
}

TEST_F(Stats, NoFallbackBytesOnMemfdSecretAndVaultsCounted) {
  void* p = exmem_alloc(100);
  ASSERT_NE(p, nullptr);
  exmem_vault* v = exmem_vault_create(4096);
  ASSERT_NE(v, nullptr) << last_error_text();
  struct exmem_stats s = get_stats();
  EXPECT_EQ(s.fallback_bytes, 0u) << "memfd_secret is in use: nothing fell back";
  EXPECT_GE(s.vaults, 1u);
  EXPECT_EQ(s.exclusive_pages * page_size(), s.reserved_bytes) << "every byte held is memfd_secret memory";
  size_t vaults = s.vaults;
  ASSERT_EQ(exmem_vault_destroy(v), EXMEM_OK);
  EXPECT_EQ(get_stats().vaults, vaults - 1);
  exmem_free(p);
}

TEST_F(Stats, DescribeTheExclusiveMemoryHeld) {
  std::vector<void*> v;
  for (int i = 0; i < 5000; ++i) v.push_back(exmem_alloc(64));
  v.push_back(exmem_alloc(100000));
  for (void* p : v) ASSERT_NE(p, nullptr);
  struct exmem_stats s = get_stats();
  const size_t page = page_size();
  EXPECT_EQ(s.protection, EXMEM_PROT_SECRET);
  EXPECT_GE(s.reserved_bytes, 5000 * 64 + 100000u);
  EXPECT_GT(s.exclusive_pages, 0u) << "memfd_secret pages leave the direct map";
  EXPECT_LE(s.exclusive_pages * page, s.reserved_bytes);
  EXPECT_GE(s.exclusive_pages * page, 5000 * 64 + 100000u);
  EXPECT_GT(s.regions, 0u);
  EXPECT_GT(s.mappings, 0u);
  EXPECT_GT(s.memlock_bytes, 0u) << "memfd_secret mappings are charged to RLIMIT_MEMLOCK";
  EXPECT_GE(s.live_bytes, 5000 * 64 + 100000u);
  EXPECT_LE(s.live_bytes, s.reserved_bytes);

  // The kernel agrees: it counts at least that much locked memory (VmLck).
  long locked_kb = status_kb("VmLck");
  ASSERT_GE(locked_kb, 0);
  EXPECT_GE(static_cast<size_t>(locked_kb) * 1024, s.memlock_bytes);
  for (void* p : v) exmem_free(p);
}

TEST_F(Stats, RegionsCountEveryMemfdSecretFileInUse) {
  // exmem.h: "regions: memfd_secret files (or locked mappings) in use". Every
  // memfd_secret file of the heap is one mapping in /proc/self/maps, whether
  // it holds small objects or one large object.
  std::vector<void*> v;
  for (int i = 0; i < 3000; ++i) v.push_back(exmem_alloc(64));
  for (size_t n : {size_t{100000}, size_t{300000}}) v.push_back(exmem_alloc(n));
  for (void* p : v) ASSERT_NE(p, nullptr);
  struct exmem_stats s = get_stats();
  size_t secret_vmas = 0;
  for (const Vma& m : read_maps()) secret_vmas += is_secretmem(m);
  EXPECT_EQ(s.regions, secret_vmas) << "stats.regions vs memfd_secret mappings in /proc/self/maps";
  for (void* p : v) exmem_free(p);
}

int million_secrets() {
  constexpr size_t kCount = 1000000;
  std::vector<void*> v;
  v.reserve(kCount);  // before the baseline: its own mapping is not the heap's
  size_t vmas0 = count_vmas();
  for (size_t i = 0; i < kCount; ++i) {
    auto* p = static_cast<size_t*>(exmem_alloc(32));
    CHILD_CHECK(p != nullptr, "allocation %zu failed: %s", i, last_error_text().c_str());
    p[0] = i;
    p[3] = ~i;
    v.push_back(p);
  }
  CHILD_CHECK(exmem_protection() == EXMEM_PROT_SECRET, "not on memfd_secret");
  struct exmem_stats s{};
  CHILD_CHECK(exmem_stats(&s) == 0, "struct exmem_stats failed");
  size_t vmas1 = count_vmas();
  size_t delta = vmas1 - vmas0;
  std::fprintf(stderr,
               "1,000,000 x 32 bytes: reserved %zu bytes, exclusive pages %zu, mappings %zu (maps delta %zu), "
               "regions %zu\n",
               s.reserved_bytes, s.exclusive_pages, s.mappings, delta, s.regions);
  CHILD_CHECK(s.live_objects == kCount, "live_objects %zu", s.live_objects);
  CHILD_CHECK(s.live_bytes == kCount * 32, "live_bytes %zu", s.live_bytes);
  CHILD_CHECK(s.reserved_bytes <= 48 * MiB, "reserved %zu bytes > 48 MiB", s.reserved_bytes);
  CHILD_CHECK(s.exclusive_pages * page_size() <= 48 * MiB, "exclusive pages %zu > 48 MiB", s.exclusive_pages);
  CHILD_CHECK(s.exclusive_pages * page_size() >= kCount * 32, "exclusive pages %zu cannot hold the objects",
              s.exclusive_pages);
  CHILD_CHECK(s.mappings <= 64, "stats.mappings %zu > 64", s.mappings);
  if (!kSanitizer) {  // its own allocator maps memory meanwhile
    CHILD_CHECK(delta <= 64, "/proc/self/maps grew by %zu mappings (> 64)", delta);
    CHILD_CHECK(s.mappings + 2 >= delta && delta + 2 >= s.mappings,
                "stats.mappings %zu disagrees with the /proc/self/maps delta %zu", s.mappings, delta);
  }
  for (size_t i = 0; i < kCount; ++i) {
    auto* p = static_cast<size_t*>(v[i]);
    CHILD_CHECK(p[0] == i && p[3] == ~i, "object %zu at %p was overwritten", i, static_cast<void*>(p));
    exmem_free(p);
  }
  CHILD_CHECK(exmem_stats(&s) == 0 && s.live_objects == 0 && s.live_bytes == 0,
              "after freeing everything: %zu objects, %zu bytes live", s.live_objects, s.live_bytes);
  return 0;
}

TEST(Density, AMillionLive32ByteSecretsUseAtMost48MiBAnd64Mappings) {
  REQUIRE_MEMFD_SECRET();
  EXPECT_IN_FRESH_PROCESS(million_secrets);
}

}  // namespace
