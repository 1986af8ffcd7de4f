// Misuse is detected and ends the process with a message naming the pointer:
// double free (same thread, another thread, large objects), a pointer the heap
// does not own, and (with canaries enabled) a write past the usable size.
// Each misuse runs in a child process; the child announces the pointer it will
// misuse in decimal ("ptr=<n>"), so that a hex number naming it in the output
// can only come from the library's message.
#include <exmem/exmem.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "support/test_util.hpp"

using namespace exmem_test;

namespace {

void announce(const void* p) {
  std::printf("ptr=%llu\n", static_cast<unsigned long long>(reinterpret_cast<uintptr_t>(p)));
  std::fflush(stdout);
}

struct Misuse {
  ChildResult r;
  uintptr_t ptr = 0;
  std::string message;  // the output without the announcement
};

Misuse run_misuse(const std::function<int()>& body) {
  Misuse m;
  m.r = run_child(body, 20s);
  m.message = m.r.output;
  size_t at = m.message.find("ptr=");
  if (at != std::string::npos) {
    size_t eol = m.message.find('\n', at);
    m.ptr = static_cast<uintptr_t>(std::strtoull(m.message.c_str() + at + 4, nullptr, 10));
    m.message.erase(at, eol == std::string::npos ? std::string::npos : eol - at + 1);
  }
  return m;
}

// The child aborted (SIGABRT) with a message containing `word` and naming the pointer.
void expect_abort_naming(const Misuse& m, const char* word) {
  ASSERT_NE(m.ptr, 0u) << "the child never got to the misuse; it " << m.r.describe();
  EXPECT_TRUE(m.r.killed_by(SIGABRT)) << "expected an abort; the child " << m.r.describe();
  if (word) {
    EXPECT_TRUE(contains(m.message, word)) << "the message should say '" << word << "': " << m.message;
  }
  EXPECT_TRUE(names_pointer(m.message, reinterpret_cast<void*>(m.ptr)))
      << "the message should name the pointer 0x" << std::hex << m.ptr << ": " << m.message;
}

class Misuses : public ::testing::Test {
 protected:
  void SetUp() override { REQUIRE_MEMFD_SECRET(); }
};

TEST_F(Misuses, DoubleFreeOfASmallObjectAbortsNamingThePointer) {
  Misuse m = run_misuse([] {
    void* keep = exmem_alloc(32);  // keeps the slab in use
    void* p = exmem_alloc(32);
    CHILD_CHECK(keep && p, "alloc: %s", last_error_text().c_str());
    exmem_free(p);
    announce(p);
    exmem_free(p);
    return 0;
  });
  expect_abort_naming(m, "double free");
}

// free's shortcut for the object the magazine path of alloc handed out last
// (heap.hpp, free_impl) must not let a second free of it through: the first
// free clears the shortcut.
TEST_F(Misuses, DoubleFreeOfTheObjectJustReusedFromTheMagazineAbortsNamingThePointer) {
  Misuse m = run_misuse([] {
    void* keep = exmem_alloc(32);
    void* q = exmem_alloc(32);
    CHILD_CHECK(keep && q, "alloc: %s", last_error_text().c_str());
    exmem_free(q);                 // into the magazine
    void* p = exmem_alloc(32);     // back out of it: the shortcut's object
    CHILD_CHECK(p == q, "the magazine did not hand q back (%p, %p)", p, q);
    exmem_free(p);                 // the shortcut
    announce(p);
    exmem_free(p);
    return 0;
  });
  expect_abort_naming(m, "double free");
}

// ... nor a free by the owner after another thread freed it: the remote free
// sets remote_check, which sends the owner's free through the full checks.
TEST_F(Misuses, RemoteThenOwnerFreeOfTheObjectJustReusedFromTheMagazineAbortsNamingThePointer) {
  Misuse m = run_misuse([] {
    void* keep = exmem_alloc(32);
    void* q = exmem_alloc(32);
    CHILD_CHECK(keep && q, "alloc: %s", last_error_text().c_str());
    exmem_free(q);
    void* p = exmem_alloc(32);
    CHILD_CHECK(p == q, "the magazine did not hand q back (%p, %p)", p, q);
    std::thread([p] { exmem_free(p); }).join();  // a remote free
    announce(p);
    exmem_free(p);  // the owner frees it again
    return 0;
  });
  expect_abort_naming(m, "double free");
}

// ... nor after a magazine pop consumed remote_check (it checks only objects
// in the magazines, and moves the shortcut to the object it pops).
TEST_F(Misuses, RemoteFreeThenPopThenOwnerFreeOfTheReusedObjectAbortsNamingThePointer) {
  Misuse m = run_misuse([] {
    void* keep = exmem_alloc(32);
    void* q1 = exmem_alloc(32);
    void* q2 = exmem_alloc(32);
    CHILD_CHECK(keep && q1 && q2, "alloc: %s", last_error_text().c_str());
    exmem_free(q1);
    exmem_free(q2);
    void* p = exmem_alloc(32);  // q2
    std::thread([p] { exmem_free(p); }).join();  // a remote free
    void* r = exmem_alloc(32);  // q1: pops, sees remote_check, checks the magazine, clears it
    (void)r;
    announce(p);
    exmem_free(p);  // the owner frees p again
    return 0;
  });
  expect_abort_naming(m, "double free");
}

// The thread keeps one freed object per class; the next free of the class
// clears the object's bit in its slab inline, and the next allocations take
// free objects from the slab inline. A second free of either kind of object
// still finds a clear bit.
TEST_F(Misuses, DoubleFreeOfAnObjectFreedPastTheCacheAbortsNamingThePointer) {
  Misuse m = run_misuse([] {
    void* keep = exmem_alloc(32);
    void* a = exmem_alloc(32);
    void* b = exmem_alloc(32);
    CHILD_CHECK(keep && a && b, "alloc: %s", last_error_text().c_str());
    exmem_free(a);  // kept by the thread
    exmem_free(b);  // back in its slab's bitmap
    announce(b);
    exmem_free(b);
    return 0;
  });
  expect_abort_naming(m, "double free");
}

TEST_F(Misuses, DoubleFreeOfAnObjectTakenFromTheBitmapAbortsNamingThePointer) {
  Misuse m = run_misuse([] {
    void* keep = exmem_alloc(64);
    void* v[100];
    for (void*& p : v) {
      p = exmem_alloc(64);  // all but the first from the slab's bitmap, inline
      CHILD_CHECK(p, "alloc: %s", last_error_text().c_str());
    }
    for (void* p : v) exmem_free(p);
    void* p = exmem_alloc(64);  // the cached object
    void* q = exmem_alloc(64);  // the lowest free object of the slab
    CHILD_CHECK(keep && p && q, "alloc: %s", last_error_text().c_str());
    exmem_free(q);
    exmem_free(p);
    announce(q);
    exmem_free(q);
    return 0;
  });
  expect_abort_naming(m, "double free");
}

TEST_F(Misuses, DoubleFreeOfTheOnlyObjectOfASlabAbortsNamingThePointer) {
  Misuse m = run_misuse([] {
    void* p = exmem_alloc(700);
    CHILD_CHECK(p, "alloc: %s", last_error_text().c_str());
    exmem_free(p);
    announce(p);
    exmem_free(p);
    return 0;
  });
  expect_abort_naming(m, "double free");
}

TEST_F(Misuses, DoubleFreeOfALargeObjectAbortsNamingThePointer) {
  Misuse m = run_misuse([] {
    void* p = exmem_alloc(100000);
    CHILD_CHECK(p, "alloc: %s", last_error_text().c_str());
    exmem_free(p);
    announce(p);
    exmem_free(p);
    return 0;
  });
  expect_abort_naming(m, "double free");
}

TEST_F(Misuses, DoubleFreeAcrossThreadsAbortsNamingThePointer) {
  Misuse m = run_misuse([] {
    void* keep = exmem_alloc(48);
    void* p = exmem_alloc(48);
    CHILD_CHECK(keep && p, "alloc: %s", last_error_text().c_str());
    std::thread([p] { exmem_free(p); }).join();  // a remote free
    announce(p);
    exmem_free(p);  // the owner frees it again
    return 0;
  });
  expect_abort_naming(m, "double free");
}

TEST_F(Misuses, SecondRemoteFreeAbortsNamingThePointer) {
  Misuse m = run_misuse([] {
    void* keep = exmem_alloc(48);
    void* p = exmem_alloc(48);
    CHILD_CHECK(keep && p, "alloc: %s", last_error_text().c_str());
    std::thread([p] {
      exmem_free(p);
      announce(p);
      exmem_free(p);
    }).join();
    return 0;
  });
  expect_abort_naming(m, "double free");
}

TEST_F(Misuses, RemoteFreeOfAnObjectTheOwnerAlreadyFreedAbortsBeforeReuse) {
  Misuse m = run_misuse([] {
    void* keep = exmem_alloc(48);
    void* p = exmem_alloc(48);
    CHILD_CHECK(keep && p, "alloc: %s", last_error_text().c_str());
    exmem_free(p);  // the owner frees it (it waits, wiped, for reuse)
    announce(p);
    std::thread([p] { exmem_free(p); }).join();  // another thread frees it again
    void* again = exmem_alloc(48);  // reuse must not hand out a doubly freed object
    (void)again;
    return 0;
  });
  expect_abort_naming(m, "double free");
}

// The remote free sets the owner's remote_check flag; the next reuse from the
// magazine checks every object waiting there, not only the one it takes (here
// p2, taken first, is innocent), so that p1 cannot be handed out later with
// the flag already consumed.
TEST_F(Misuses, RemoteFreeOfAnObjectDeeperInTheMagazineAbortsAtTheNextReuse) {
  Misuse m = run_misuse([] {
    void* keep = exmem_alloc(48);
    void* p1 = exmem_alloc(48);
    void* p2 = exmem_alloc(48);
    CHILD_CHECK(keep && p1 && p2, "alloc: %s", last_error_text().c_str());
    exmem_free(p1);
    exmem_free(p2);  // the magazine holds p1, then p2 (taken first)
    announce(p1);
    std::thread([p1] { exmem_free(p1); }).join();  // another thread frees p1 again
    void* again = exmem_alloc(48);                 // takes p2: must still catch p1
    std::printf("not caught at the first reuse (got %p)\n", again);
    std::fflush(stdout);
    void* later = exmem_alloc(48);
    (void)later;
    return 0;
  });
  expect_abort_naming(m, "double free");
  EXPECT_FALSE(contains(m.message, "not caught at the first reuse")) << m.message;
}

TEST_F(Misuses, FreeOfMallocMemoryAbortsAsNotOwned) {
  Misuse m = run_misuse([] {
    exmem_free(exmem_alloc(16));  // the heap is set up
    void* p = std::malloc(64);
    announce(p);
    exmem_free(p);
    return 0;
  });
  expect_abort_naming(m, "not owned");
}

TEST_F(Misuses, FreeOfAStackAddressAbortsAsNotOwned) {
  Misuse m = run_misuse([] {
    exmem_free(exmem_alloc(16));
    char local[32];
    announce(local);
    exmem_free(local);
    return 0;
  });
  expect_abort_naming(m, "not owned");
}

TEST_F(Misuses, FreeOfAPointerInsideASmallObjectAbortsNamingIt) {
  Misuse m = run_misuse([] {
    auto* p = static_cast<char*>(exmem_alloc(64));
    CHILD_CHECK(p, "alloc: %s", last_error_text().c_str());
    announce(p + 16);
    exmem_free(p + 16);
    return 0;
  });
  expect_abort_naming(m, nullptr);
}

TEST_F(Misuses, FreeOfAPointerInsideALargeObjectAbortsNamingIt) {
  Misuse m = run_misuse([] {
    auto* p = static_cast<char*>(exmem_alloc(50000));
    CHILD_CHECK(p, "alloc: %s", last_error_text().c_str());
    announce(p + 8192);
    exmem_free(p + 8192);
    return 0;
  });
  expect_abort_naming(m, nullptr);
}

TEST_F(Misuses, UsableSizeOfMemoryTheHeapDoesNotOwnIsZero) {
  ASSERT_NE(exmem_alloc(1), nullptr);  // the heap is set up (the object is leaked on purpose)
  int local = 0;
  void* m = std::malloc(100);
  EXPECT_EQ(exmem_usable_size(nullptr), 0u);
  EXPECT_EQ(exmem_usable_size(&local), 0u);
  EXPECT_EQ(exmem_usable_size(m), 0u);
  std::free(m);
}

// ---- Canaries (a configuration: each test runs in a fresh process) ----------

// Each size's one-byte overrun aborts at free, naming the pointer.
int check_canary_damage_is_caught() {
  for (size_t size : {size_t{1}, size_t{24}, size_t{100}, size_t{1000}, size_t{4000}}) {
    Misuse m = run_misuse([size] {
      void* keep = exmem_alloc(size);
      auto* p = static_cast<unsigned char*>(exmem_alloc(size));
      CHILD_CHECK(keep && p, "alloc: %s", last_error_text().c_str());
      size_t usable = exmem_usable_size(p);
      CHILD_CHECK(usable >= size, "usable size %zu < %zu", usable, size);
      std::memset(p, 0x11, usable);  // in bounds: fine
      announce(p);
      p[usable] ^= 0xFF;  // one byte past the usable size
      exmem_free(p);
      return 0;
    });
    CHILD_CHECK(m.ptr != 0, "size %zu: the child never got to the damage; it %s", size, m.r.describe().c_str());
    CHILD_CHECK(m.r.killed_by(SIGABRT), "size %zu: a damaged canary was not caught at free; the child %s", size,
                m.r.describe().c_str());
    CHILD_CHECK(contains(m.message, "canary"), "size %zu: the message does not say 'canary': %s", size,
                m.message.c_str());
    CHILD_CHECK(names_pointer(m.message, reinterpret_cast<void*>(m.ptr)),
                "size %zu: the message does not name the pointer %#llx: %s", size,
                static_cast<unsigned long long>(m.ptr), m.message.c_str());
  }
  return 0;
}

int canary_damage_is_caught() {
  exmem_config cfg{};
  cfg.canaries = 1;
  CHILD_CHECK(exmem_init(&cfg) == EXMEM_OK, "exmem_init(canaries): %s", last_error_text().c_str());
  return check_canary_damage_is_caught();
}

TEST(Canaries, WritingOneBytePastTheUsableSizeAbortsAtFreeNamingThePointer) {
  REQUIRE_MEMFD_SECRET();
  EXPECT_IN_FRESH_PROCESS(canary_damage_is_caught);
}

// EXMEM_CANARIES=1 turns them on for a program that never calls exmem_init.
int canary_damage_is_caught_with_the_environment() {
  setenv("EXMEM_CANARIES", "1", 1);
  return check_canary_damage_is_caught();
}

TEST(Canaries, ExmemCanariesTurnsThemOnWithoutExmemInit) {
  REQUIRE_MEMFD_SECRET();
  EXPECT_IN_FRESH_PROCESS(canary_damage_is_caught_with_the_environment);
}

int canaries_allow_in_bounds_use() {
  exmem_config cfg{};
  cfg.canaries = 1;
  CHILD_CHECK(exmem_init(&cfg) == EXMEM_OK, "exmem_init(canaries): %s", last_error_text().c_str());
  for (size_t size = 1; size <= 4096; size += 13) {
    auto* p = static_cast<unsigned char*>(exmem_alloc(size));
    CHILD_CHECK(p, "alloc(%zu): %s", size, last_error_text().c_str());
    std::memset(p, 0xEE, exmem_usable_size(p));
    p = static_cast<unsigned char*>(exmem_realloc(p, size + 100));
    CHILD_CHECK(p, "realloc: %s", last_error_text().c_str());
    std::memset(p, 0xEE, exmem_usable_size(p));
    exmem_free(p);
    void* c = exmem_calloc(3, size);
    CHILD_CHECK(c, "calloc: %s", last_error_text().c_str());
    std::memset(c, 0x77, exmem_usable_size(c));
    exmem_free(c);
  }
  return 0;
}

TEST(Canaries, InBoundsWritesNeverTripThem) {
  REQUIRE_MEMFD_SECRET();
  EXPECT_IN_FRESH_PROCESS(canaries_allow_in_bounds_use);
}

}  // namespace
