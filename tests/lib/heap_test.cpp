// The heap's contract, on the memfd_secret backend: contents round-trip for every
// size, live objects never overlap, realloc/calloc behave as documented, sizes
// that cannot be had fail cleanly, and freed memory is wiped.
#include <exmem/exmem.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "support/test_util.hpp"

using namespace exmem_test;

namespace {

class Heap : public ::testing::Test {
 protected:
  void SetUp() override {
    REQUIRE_MEMFD_SECRET();
    ASSERT_EQ(exmem_protection(), EXMEM_PROT_SECRET) << last_error_text();
  }
};

struct Obj {
  unsigned char* p;
  size_t size;
  uint64_t seed;
};

uint64_t seed_of(size_t i) { return i * 0x9E3779B97F4A7C15ull + 12345; }

TEST_F(Heap, EverySizeFrom1To8192RoundTripsItsContents) {
  // Every size of the small-object heap; above 4096 (page-granular objects of
  // two pages, each its own mapping) every 37th size and the edges.
  std::vector<Obj> small;  // sizes up to 4096 stay live together
  std::vector<Obj> window;  // larger ones in a sliding window
  for (size_t n = 1; n <= 8192; n += (n <= 4100 || n >= 8180) ? 1 : 37) {
    auto* p = static_cast<unsigned char*>(exmem_alloc(n));
    ASSERT_NE(p, nullptr) << "exmem_alloc(" << n << "): " << last_error_text();
    ASSERT_GE(exmem_usable_size(p), n) << "size " << n;
    fill_pattern(p, n, seed_of(n));
    (n <= 4096 ? small : window).push_back({p, n, seed_of(n)});
    if (window.size() == 32) {
      for (Obj& o : window) {
        ASSERT_TRUE(has_pattern(o.p, o.size, o.seed)) << "size " << o.size << " lost its contents";
        exmem_free(o.p);
      }
      window.clear();
    }
  }
  for (Obj& o : small) {
    ASSERT_TRUE(has_pattern(o.p, o.size, o.seed)) << "size " << o.size << " lost its contents";
    exmem_free(o.p);
  }
  for (Obj& o : window) {
    ASSERT_TRUE(has_pattern(o.p, o.size, o.seed)) << "size " << o.size << " lost its contents";
    exmem_free(o.p);
  }
}

TEST_F(Heap, LargeSizesUpToSeveralMiBRoundTripTheirContents) {
  const size_t sizes[] = {8193, 20000, 65535, 65536, 65537, MiB - 1, MiB, 3 * MiB + 123, 6 * MiB};
  std::vector<Obj> live;
  for (size_t n : sizes) {
    auto* p = static_cast<unsigned char*>(exmem_alloc(n));
    ASSERT_NE(p, nullptr) << "exmem_alloc(" << n << "): " << last_error_text();
    ASSERT_GE(exmem_usable_size(p), n);
    fill_pattern(p, n, seed_of(n));
    live.push_back({p, n, seed_of(n)});
  }
  for (Obj& o : live) {
    EXPECT_TRUE(has_pattern(o.p, o.size, o.seed)) << "size " << o.size << " lost its contents";
    exmem_free(o.p);
  }
}

TEST_F(Heap, UsableSizeCoversTheRequestWithBoundedWaste) {
  const size_t page = page_size();
  for (size_t n : {size_t{1}, size_t{15}, size_t{16}, size_t{17}, size_t{32}, size_t{100}, size_t{129}, size_t{1000},
                   size_t{4095}, size_t{4096}, size_t{4097}, size_t{20000}, size_t{100000}}) {
    void* p = exmem_alloc(n);
    ASSERT_NE(p, nullptr) << last_error_text();
    size_t u = exmem_usable_size(p);
    EXPECT_GE(u, n) << "size " << n;
    if (n <= 4096)
      EXPECT_LE(u, std::max<size_t>(16, n + n / 4 + 16)) << "size " << n << ": size classes should waste <= 25%";
    else
      EXPECT_LE(u, round_up(n, page)) << "size " << n << ": large objects should be page-granular";
    exmem_free(p);
  }
}

TEST_F(Heap, AllocationsAreAlignedForAnyFundamentalType) {
  std::vector<void*> ptrs;
  for (size_t n = 1; n <= 5000; n += 7) {
    void* p = exmem_alloc(n);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % alignof(std::max_align_t), 0u)
        << "exmem_alloc(" << n << ") = " << p << " is not aligned for max_align_t (exmem::allocator<T> relies on it)";
    ptrs.push_back(p);
  }
  for (void* p : ptrs) exmem_free(p);
}

TEST_F(Heap, AllocZeroReturnsAUniqueFreeablePointer) {
  // Documented by this test: exmem_alloc(0) behaves like malloc(0) on glibc: a
  // distinct, non-NULL pointer each time, which exmem_free accepts.
  struct exmem_stats before{};
  ASSERT_EQ(exmem_stats(&before), 0);
  void* a = exmem_alloc(0);
  void* b = exmem_alloc(0);
  ASSERT_NE(a, nullptr) << last_error_text();
  ASSERT_NE(b, nullptr) << last_error_text();
  EXPECT_NE(a, b);
  struct exmem_stats during{};
  ASSERT_EQ(exmem_stats(&during), 0);
  EXPECT_EQ(during.live_objects, before.live_objects + 2);
  exmem_free(a);
  exmem_free(b);
  struct exmem_stats after{};
  ASSERT_EQ(exmem_stats(&after), 0);
  EXPECT_EQ(after.live_objects, before.live_objects);
}

TEST_F(Heap, FreeOfNullIsIgnored) {
  struct exmem_stats before{}, after{};
  ASSERT_EQ(exmem_stats(&before), 0);
  exmem_free(nullptr);
  ASSERT_EQ(exmem_stats(&after), 0);
  EXPECT_EQ(after.live_objects, before.live_objects);
}

TEST_F(Heap, LiveObjectsNeverOverlapUnderRandomAllocationAndFree) {
  const uint64_t seed = std::random_device{}();
  SCOPED_TRACE(strf("random seed %llu", static_cast<unsigned long long>(seed)));
  std::mt19937_64 rng(seed);
  std::vector<Obj> live;
  auto random_size = [&]() -> size_t {
    uint64_t r = rng() % 1000;
    if (r < 2) return 4097 + rng() % 200000;  // large, page-granular
    if (r < 100) return 257 + rng() % 3840;
    return 1 + rng() % 256;
  };
  auto verify_and_free = [&](size_t i) {
    Obj o = live[i];
    ASSERT_TRUE(all_equal(o.p, exmem_usable_size(o.p), static_cast<unsigned char>(o.seed)))
        << "object " << static_cast<void*>(o.p) << " (" << o.size << " bytes) was overwritten";
    exmem_free(o.p);
    live[i] = live.back();
    live.pop_back();
  };
  for (int op = 0; op < 60000; ++op) {
    if (live.empty() || (live.size() < 20000 && rng() % 100 < 55)) {
      size_t n = random_size();
      auto* p = static_cast<unsigned char*>(exmem_alloc(n));
      ASSERT_NE(p, nullptr) << "exmem_alloc(" << n << "): " << last_error_text();
      auto tag = static_cast<unsigned char>(1 + rng() % 255);
      std::memset(p, tag, exmem_usable_size(p));  // the whole usable size belongs to the object
      live.push_back({p, n, tag});
    } else {
      verify_and_free(static_cast<size_t>(rng() % live.size()));
      if (testing::Test::HasFatalFailure()) return;
    }
  }
  std::vector<std::pair<uintptr_t, uintptr_t>> spans;
  for (const Obj& o : live) {
    auto a = reinterpret_cast<uintptr_t>(o.p);
    spans.emplace_back(a, a + exmem_usable_size(o.p));
  }
  std::sort(spans.begin(), spans.end());
  for (size_t i = 1; i < spans.size(); ++i)
    ASSERT_LE(spans[i - 1].second, spans[i].first)
        << "live objects overlap: [" << std::hex << spans[i - 1].first << ", " << spans[i - 1].second << ") and ["
        << spans[i].first << ", " << spans[i].second << ")";
  while (!live.empty()) {
    verify_and_free(live.size() - 1);
    if (testing::Test::HasFatalFailure()) return;
  }
}

TEST_F(Heap, ReallocKeepsThePrefixWhileGrowingAndShrinking) {
  const size_t steps[] = {10, 24, 100, 3000, 4096, 5000, 70000, 2 * MiB, 90000, 4000, 64, 8, 1};
  size_t cur = 1;
  auto* p = static_cast<unsigned char*>(exmem_alloc(cur));
  ASSERT_NE(p, nullptr);
  fill_pattern(p, cur, 42);
  for (size_t n : steps) {
    auto* q = static_cast<unsigned char*>(exmem_realloc(p, n));
    ASSERT_NE(q, nullptr) << "exmem_realloc(" << cur << " -> " << n << "): " << last_error_text();
    ASSERT_GE(exmem_usable_size(q), n);
    size_t kept = std::min(cur, n);
    ASSERT_TRUE(has_pattern(q, kept, 42)) << "realloc " << cur << " -> " << n << " lost the first " << kept << " bytes";
    fill_pattern(q, n, 42);
    p = q;
    cur = n;
  }
  exmem_free(p);
}

TEST_F(Heap, ReallocOfNullAllocatesAndReallocToZeroFrees) {
  struct exmem_stats s0{}, s1{}, s2{};
  ASSERT_EQ(exmem_stats(&s0), 0);
  void* p = exmem_realloc(nullptr, 50);
  ASSERT_NE(p, nullptr) << last_error_text();
  EXPECT_GE(exmem_usable_size(p), 50u);
  ASSERT_EQ(exmem_stats(&s1), 0);
  EXPECT_EQ(s1.live_objects, s0.live_objects + 1);
  EXPECT_EQ(exmem_realloc(p, 0), nullptr) << "exmem.h: realloc(p, 0) frees p and returns NULL";
  ASSERT_EQ(exmem_stats(&s2), 0);
  EXPECT_EQ(s2.live_objects, s0.live_objects) << "realloc(p, 0) did not free p";
}

TEST_F(Heap, FailedReallocLeavesTheObjectUntouched) {
  for (size_t n : {size_t{40}, size_t{30000}}) {
    void* p = exmem_alloc(n);
    ASSERT_NE(p, nullptr);
    fill_pattern(p, n, 7);
    errno = 0;
    for (size_t huge : {SIZE_MAX, SIZE_MAX / 2, size_t{1} << 46}) {
      EXPECT_EQ(exmem_realloc(p, huge), nullptr) << "realloc to " << huge << " bytes succeeded";
      EXPECT_TRUE(errno == ENOMEM || errno == EINVAL) << "errno " << errno;
      EXPECT_NE(exmem_last_error(), EXMEM_OK);
      ASSERT_TRUE(has_pattern(p, n, 7)) << "a failed realloc changed the object";
    }
    EXPECT_GE(exmem_usable_size(p), n) << "a failed realloc released the object";
    exmem_free(p);
  }
}

TEST_F(Heap, CallocReturnsZeroedMemoryWhereFreedObjectsWere) {
  for (size_t size : {size_t{8}, size_t{48}, size_t{1000}, size_t{4096}, size_t{12000}}) {
    std::vector<void*> dirty;
    for (int i = 0; i < 200; ++i) {
      void* p = exmem_alloc(size);
      ASSERT_NE(p, nullptr);
      std::memset(p, 0xA5, exmem_usable_size(p));
      dirty.push_back(p);
    }
    std::set<void*> was(dirty.begin(), dirty.end());
    for (void* p : dirty) exmem_free(p);
    size_t reused = 0;
    std::vector<void*> fresh;
    for (int i = 0; i < 200; ++i) {
      void* p = exmem_calloc(1, size);
      ASSERT_NE(p, nullptr) << last_error_text();
      reused += was.count(p);
      ASSERT_TRUE(all_zero(p, size)) << "calloc(1, " << size << ") returned non-zero bytes at " << p;
      fresh.push_back(p);
    }
    for (void* p : fresh) exmem_free(p);
    EXPECT_GT(reused, 0u) << "calloc never reused freed memory of size " << size << ": the test proved nothing";
  }
}

TEST_F(Heap, CallocDetectsSizeOverflow) {
  const std::pair<size_t, size_t> cases[] = {
      {SIZE_MAX, 2}, {2, SIZE_MAX}, {SIZE_MAX / 2 + 1, 2}, {size_t{1} << 33, size_t{1} << 33}, {SIZE_MAX, SIZE_MAX}};
  for (auto [n, size] : cases) {
    errno = 0;
    EXPECT_EQ(exmem_calloc(n, size), nullptr) << "calloc(" << n << ", " << size << ") overflowed into a small object";
    EXPECT_TRUE(errno == ENOMEM || errno == EINVAL) << "calloc(" << n << ", " << size << "): errno " << errno;
  }
  void* p = exmem_calloc(0, 16);
  exmem_free(p);  // any result of a zero count must be freeable
}

TEST_F(Heap, ImpossibleSizesFailCleanlyAndTheHeapStillWorks) {
  for (size_t n : {SIZE_MAX, SIZE_MAX - 4096, SIZE_MAX / 2, size_t{1} << 44}) {
    errno = 0;
    EXPECT_EQ(exmem_alloc(n), nullptr) << "exmem_alloc(" << n << ") succeeded";
    EXPECT_TRUE(errno == ENOMEM || errno == EINVAL) << "exmem_alloc(" << n << "): errno " << errno;
    EXPECT_NE(exmem_last_error(), EXMEM_OK);
    const char* msg = exmem_last_error_message();
    ASSERT_NE(msg, nullptr);
    EXPECT_GT(std::strlen(msg), 0u);
  }
  void* p = exmem_alloc(64);
  ASSERT_NE(p, nullptr) << "the heap stopped working after failed allocations: " << last_error_text();
  exmem_free(p);
}

TEST_F(Heap, FreedMemoryReadsAsZeroWhenItIsReused) {
  for (size_t size : {size_t{1}, size_t{16}, size_t{32}, size_t{200}, size_t{3000}, size_t{4096}, size_t{20000},
                      size_t{300000}}) {
    const int count = size > 4096 ? 16 : 500;
    std::set<void*> was;
    std::vector<void*> v;
    for (int i = 0; i < count; ++i) {
      void* p = exmem_alloc(size);
      ASSERT_NE(p, nullptr);
      std::memset(p, 0x5A, exmem_usable_size(p));
      v.push_back(p);
      was.insert(p);
    }
    for (void* p : v) exmem_free(p);
    v.clear();
    size_t reused = 0;
    for (int i = 0; i < count; ++i) {
      void* p = exmem_alloc(size);
      ASSERT_NE(p, nullptr);
      reused += was.count(p);
      ASSERT_TRUE(all_zero(p, exmem_usable_size(p)))
          << "a new " << size << "-byte object at " << p << " holds bytes of a freed one";
      v.push_back(p);
    }
    for (void* p : v) exmem_free(p);
    if (size <= 4096) {
      EXPECT_GT(reused, 0u) << "no address was reused for size " << size << ": nothing was tested";
    }
  }
}

TEST_F(Heap, FreeWipesASmallObjectInPlace) {
  // Read the bytes of a freed object where it was (its slab stays in use thanks
  // to a live neighbour). In a child, so that a fault cannot end the test program.
  // Every class size: free's inline wipe takes a different store sequence for
  // 16, 32, up to 64, up to 128 and up to 256 bytes, memset beyond.
  ChildResult r = run_child([] {
    std::vector<size_t> sizes{1, 100, 1000};
    for (size_t size : {16, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512, 640, 768, 896,
                        1024, 1280, 1536, 1792, 2048, 2560, 3072, 3584, 4096})
      sizes.push_back(size);
    for (size_t size : sizes) {
      void* keep = exmem_alloc(size);
      auto* p = static_cast<unsigned char*>(exmem_alloc(size));
      CHILD_CHECK(keep && p, "alloc: %s", last_error_text().c_str());
      size_t usable = exmem_usable_size(p);
      std::memset(p, 0xC3, usable);
      exmem_free(p);
      CHILD_CHECK(all_zero(p, usable), "size %zu: the freed object still holds %s", size, hex_bytes(p, 16).c_str());
      exmem_free(keep);
    }
    return 0;
  });
  EXPECT_TRUE(r.succeeded()) << r.describe();
}

// Past the thread's cache of one freed object per class, free clears the
// object's bit in its slab inline and alloc takes the lowest free object of the
// slab inline: those objects too are wiped in place, and handed out again zeroed.
TEST_F(Heap, ObjectsFreedPastTheCacheAreWipedInPlaceAndReusedZeroed) {
  ChildResult r = run_child([] {
    for (size_t size : {16, 32, 48, 64, 96, 128, 160, 256, 320, 1024, 4096}) {
      void* keep = exmem_alloc(size);
      CHILD_CHECK(keep, "alloc: %s", last_error_text().c_str());
      std::vector<unsigned char*> v;
      for (int i = 0; i < 70; ++i) {  // more than one bitmap word of the largest classes' slabs
        auto* p = static_cast<unsigned char*>(exmem_alloc(size));
        CHILD_CHECK(p, "alloc: %s", last_error_text().c_str());
        std::memset(p, 0xC3, exmem_usable_size(p));
        v.push_back(p);
      }
      for (unsigned char* p : v) exmem_free(p);
      for (unsigned char* p : v)
        CHILD_CHECK(all_zero(p, size), "size %zu: the freed object at %p still holds %s", size,
                    static_cast<void*>(p), hex_bytes(p, 16).c_str());
      std::set<void*> was(v.begin(), v.end());
      size_t reused = 0;
      for (size_t i = 0; i < v.size(); ++i) {
        auto* p = static_cast<unsigned char*>(exmem_alloc(size));
        CHILD_CHECK(p, "alloc: %s", last_error_text().c_str());
        CHILD_CHECK(all_zero(p, exmem_usable_size(p)), "size %zu: a reused object holds %s", size,
                    hex_bytes(p, 16).c_str());
        reused += was.count(p);
        v[i] = p;
      }
      CHILD_CHECK(reused > 0, "size %zu: no freed object was reused: nothing was tested", size);
      for (unsigned char* p : v) exmem_free(p);
      exmem_free(keep);
    }
    return 0;
  });
  EXPECT_TRUE(r.succeeded()) << r.describe();
}

TEST_F(Heap, ReallocWipesTheObjectItMovedAwayFrom) {
  ChildResult r = run_child([] {
    void* keep = exmem_alloc(32);
    auto* p = static_cast<unsigned char*>(exmem_alloc(32));
    CHILD_CHECK(keep && p, "alloc: %s", last_error_text().c_str());
    fill_pattern(p, 32, 99);
    void* q = exmem_realloc(p, 3000);
    CHILD_CHECK(q != nullptr, "realloc: %s", last_error_text().c_str());
    CHILD_CHECK(q != p, "realloc from 32 to 3000 bytes did not move; the test needs a move");
    CHILD_CHECK(has_pattern(q, 32, 99), "realloc lost the prefix");
    CHILD_CHECK(all_zero(p, 32), "the old object still holds %s after realloc moved it", hex_bytes(p, 32).c_str());
    exmem_free(q);
    exmem_free(keep);
    return 0;
  });
  EXPECT_TRUE(r.succeeded()) << r.describe();
}

TEST_F(Heap, FreedLargeObjectCannotBeReadBackFromItsOldAddress) {
  // After exmem_free, the pages of a large object are either unmapped (the read
  // faults) or wiped; the secret must not be readable there.
  ChildResult r = run_child([] {
    auto* p = static_cast<unsigned char*>(exmem_alloc(40000));
    CHILD_CHECK(p != nullptr, "alloc: %s", last_error_text().c_str());
    fill_pattern(p, 40000, 5);
    exmem_free(p);
    CHILD_CHECK(!has_pattern(p, 32, 5) && all_zero(p, 40000), "freed large object still readable: %s",
                hex_bytes(p, 16).c_str());
    return 0;
  });
  EXPECT_TRUE(r.succeeded() || r.killed_by(SIGSEGV)) << r.describe();
}

TEST_F(Heap, ObjectsLiveInMemfdSecretMappings) {
  for (size_t n : {size_t{32}, size_t{4000}, size_t{50000}}) {
    void* p = exmem_alloc(n);
    ASSERT_NE(p, nullptr);
    auto v = vma_of(p);
    ASSERT_TRUE(v.has_value()) << p << " is in no mapping of /proc/self/maps";
    EXPECT_TRUE(is_secretmem(*v)) << "a " << n << "-byte object lives in '" << v->path << "', not in memfd_secret";
    EXPECT_EQ(v->perms, "rw-s");
    EXPECT_GE(v->end, reinterpret_cast<uintptr_t>(p) + n) << "the object runs past its mapping";
    exmem_free(p);
  }
}

TEST_F(Heap, ExclusiveRegionsAreFullyFaultedInWhenCreated) {
  // Pre-faulting every page when a region is made is what guarantees that using
  // memory after a successful allocation cannot fault and fail.
  std::vector<void*> v;
  for (int i = 0; i < 3000; ++i) v.push_back(exmem_alloc(static_cast<size_t>(16 + (i % 50) * 16)));
  v.push_back(exmem_alloc(300000));
  for (void* p : v) ASSERT_NE(p, nullptr);
  size_t checked = 0;
  for (const Vma& m : read_smaps()) {
    if (!is_secretmem(m)) continue;
    ++checked;
    EXPECT_EQ(m.rss_kb, m.size_kb) << "secretmem mapping " << std::hex << m.start << "-" << m.end << std::dec
                                   << " has only " << m.rss_kb << " of " << m.size_kb << " kB faulted in";
    EXPECT_TRUE(m.has_flag("lo") && m.has_flag("dd")) << "VmFlags: " << m.vmflags;
  }
  EXPECT_GT(checked, 0u) << "no secretmem mapping in /proc/self/smaps";
  for (void* p : v) exmem_free(p);
}

}  // namespace
