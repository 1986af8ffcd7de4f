// Guard pages: a write just past the page-granular end of a large object, or
// just before it, or just outside a region of small objects, faults (SIGSEGV)
// instead of landing in a neighbour. Each write runs in a fresh process.
#include <exmem/exmem.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <csignal>
#include <cstdio>

#include "support/test_util.hpp"

using namespace exmem_test;

namespace {

// Allocates three large objects of `size` in a row (a heap without guards would
// put them next to each other) and returns the first.
unsigned char* three_large(size_t size) {
  CHILD_CHECK(exmem_protection() == EXMEM_PROT_SECRET, "not on memfd_secret: %s", last_error_text().c_str());
  auto* a = static_cast<unsigned char*>(exmem_alloc(size));
  void* b = exmem_alloc(size);
  void* c = exmem_alloc(size);
  CHILD_CHECK(a && b && c, "alloc(%zu): %s", size, last_error_text().c_str());
  return a;
}

unsigned char* page_end(unsigned char* p, size_t size) {
  return reinterpret_cast<unsigned char*>(round_up(reinterpret_cast<uintptr_t>(p) + size, page_size()));
}

[[noreturn]] void write_at(volatile unsigned char* where, const char* what) {
  std::fprintf(stderr, "writing %s at %p\n", what, static_cast<volatile void*>(where));
  *where = 0x42;
  std::fprintf(stderr, "the write %s did not fault\n", what);
  ::_exit(0);
}

int write_past_end(size_t size) {
  unsigned char* p = three_large(size);
  unsigned char* end = page_end(p, size);
  // Everything up to the page-granular end belongs to the object.
  for (unsigned char* q = p; q < end; q += 512) *q = 1;
  end[-1] = 1;
  write_at(end, "one byte past the page-granular end");
}

int write_last_byte(size_t size) {
  unsigned char* p = three_large(size);
  unsigned char* end = page_end(p, size);
  end[-1] = 0x42;
  CHILD_CHECK(end[-1] == 0x42, "the last byte before the page-granular end did not keep its value");
  return 0;
}

int write_before_start(size_t size) {
  unsigned char* p = three_large(size);
  write_at(p - 1, "one byte before the object");
}

const size_t kSizes[] = {20000, 65536, 2 * MiB + 100};

class GuardPages : public ::testing::TestWithParam<size_t> {
 protected:
  void SetUp() override { REQUIRE_MEMFD_SECRET(); }
};

TEST_P(GuardPages, WritingPastALargeObjectsPageGranularEndHitsAGuardPage) {
  size_t size = GetParam();
  EXPECT_EXIT(write_past_end(size), ::testing::KilledBySignal(SIGSEGV), "");
}

TEST_P(GuardPages, TheLastByteBeforeThePageGranularEndIsUsable) {
  size_t size = GetParam();
  EXPECT_IN_FRESH_PROCESS([size] { return write_last_byte(size); });
}

TEST_P(GuardPages, WritingJustBeforeALargeObjectHitsAGuardPage) {
  size_t size = GetParam();
  EXPECT_EXIT(write_before_start(size), ::testing::KilledBySignal(SIGSEGV), "");
}

INSTANTIATE_TEST_SUITE_P(Sizes, GuardPages, ::testing::ValuesIn(kSizes));

// The secretmem mapping holding a small object: its first and last byte.
Vma small_object_region() {
  CHILD_CHECK(exmem_protection() == EXMEM_PROT_SECRET, "not on memfd_secret: %s", last_error_text().c_str());
  void* p = exmem_alloc(32);
  CHILD_CHECK(p, "alloc: %s", last_error_text().c_str());
  auto v = vma_of(p);
  CHILD_CHECK(v && is_secretmem(*v), "the object at %p is not in a secretmem mapping", p);
  return *v;
}

TEST(RegionGuards, WritingJustPastARegionOfSmallObjectsHitsAGuardPage) {
  REQUIRE_MEMFD_SECRET();
  EXPECT_EXIT(write_at(reinterpret_cast<unsigned char*>(small_object_region().end), "just past the region"),
              ::testing::KilledBySignal(SIGSEGV), "");
}

TEST(RegionGuards, WritingJustBeforeARegionOfSmallObjectsHitsAGuardPage) {
  REQUIRE_MEMFD_SECRET();
  EXPECT_EXIT(write_at(reinterpret_cast<unsigned char*>(small_object_region().start) - 1, "just before the region"),
              ::testing::KilledBySignal(SIGSEGV), "");
}

TEST(RegionGuards, EveryExclusiveMappingIsFlankedByInaccessiblePages) {
  REQUIRE_MEMFD_SECRET();
  ASSERT_EQ(exmem_protection(), EXMEM_PROT_SECRET) << last_error_text();
  std::vector<void*> v;
  for (int i = 0; i < 2000; ++i) v.push_back(exmem_alloc(static_cast<size_t>(8 + i % 300)));
  for (size_t n : {size_t{5000}, size_t{20000}, size_t{65536}, size_t{65537}, size_t{300000}})
    for (int i = 0; i < 3; ++i) v.push_back(exmem_alloc(n));
  for (void* p : v) ASSERT_NE(p, nullptr) << last_error_text();

  std::vector<Vma> maps = read_maps();
  size_t secret = 0;
  for (size_t i = 0; i < maps.size(); ++i) {
    if (!is_secretmem(maps[i])) continue;
    ++secret;
    if (i > 0 && maps[i - 1].end == maps[i].start) {
      EXPECT_EQ(maps[i - 1].perms.substr(0, 3), "---")
          << "the mapping before secretmem " << std::hex << maps[i].start << " is accessible: " << maps[i - 1].perms
          << " " << maps[i - 1].path;
    }
    if (i + 1 < maps.size() && maps[i + 1].start == maps[i].end) {
      EXPECT_EQ(maps[i + 1].perms.substr(0, 3), "---")
          << "the mapping after secretmem " << std::hex << maps[i].start << "-" << maps[i].end
          << " is accessible: " << maps[i + 1].perms << " " << maps[i + 1].path;
    }
  }
  EXPECT_GT(secret, 0u);
  for (void* p : v) exmem_free(p);
}

}  // namespace
