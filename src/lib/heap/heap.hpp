// The heap: how exclusive regions are carved into objects. Owns slabs, thread
// heaps and the fast paths; asks arena.hpp for slabs and large objects and never
// calls the kernel itself.
//
// Layout. One PROT_NONE reservation holds every region and large object; the
// 64 KiB units of that reservation are described by a table of Slab records kept
// in ordinary memory, so a pointer finds its slab by arithmetic and no allocator
// metadata lives inside the exclusive pages (they hold secrets and nothing else).
//
// Ownership. A slab belongs to one thread heap at a time. Its owner allocates
// and frees with plain loads and stores on the `bits` bitmap (relaxed atomics,
// no read-modify-write): no lock and no atomic instruction on the fast path.
// Another thread frees by setting the object's bit in `remote` (one fetch_or);
// the owner folds remote bits back in when it needs room. A thread that exits
// leaves its slabs as orphans, which other threads adopt.
//
// Fast paths. alloc() and free() are inlined into exmem_alloc/exmem_free; their
// common cases (a 32-byte object back and forth through the thread's magazine;
// the lowest free object of the current slab's `hint` word when the magazine is
// empty; clearing the object's bit when it is full) call nothing. Everything
// else leaves through a tail call to heap.cpp: canaries on (one branch on
// g_layout.canaries, then a copy of the fast path compiled with the canary
// code), no current slab or its `hint` word full, objects over kWipeInline
// bytes (memset), a slab that changes lists, a thread heap that other threads
// freed into.
// Every free checks that the pointer is an object start in a slab of this
// thread, allocated (bits, remote) and not already in a magazine, except a free
// of ThreadHeap::last, the object the magazine path of alloc handed out last,
// which is known to be all of these unless another thread freed it (then
// remote_check is set and the full checks run). No thread heap is null: a
// thread without one points to g_no_heap, where both fast paths find nothing.
//
// Invariants (per slab, per object index i < nobj):
//   allocated  <=> bits[i] == 1 && remote[i] == 0
//   free       <=> bits[i] == 0 (then remote[i] == 0 and the bytes are zero)
//   freed by another thread, not yet collected <=> bits[i] == 1 && remote[i] == 1
//   indices >= nobj have bits == 1 forever; `used` counts ones in bits;
//   hint < nwords, and no word below hint has a clear bit.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <emmintrin.h>

#include "heap/size_class.hpp"

namespace exmem::heap {

struct ThreadHeap;

enum class UnitKind : uint8_t {
  unmapped = 0,  // not part of any mapping (guard or never used)
  slab_free,     // in a region, not assigned to a class
  slab,          // carved into objects of one class
  large,         // first unit of a large object
  large_tail     // later units of a large object
};

enum class SlabList : uint8_t { none, current, partial, full, orphan, free };

struct alignas(64) Slab {
  // Set when the slab is assigned a class; read by every thread.
  uint8_t* start = nullptr;
  uint32_t obj_size = 0;
  uint32_t nobj = 0;
  uint32_t inv = 0;  // ceil(2^32 / obj_size): index = (offset * inv) >> 32
  uint16_t nwords = 0;
  uint8_t cls = 0;
  std::atomic<UnitKind> kind{UnitKind::unmapped};
  std::atomic<ThreadHeap*> owner{nullptr};

  // Owner only.
  uint16_t hint = 0;  // no free bit below this word
  SlabList list = SlabList::none;
  uint32_t used = 0;  // written by the owner with set_used(), read by exmem_stats
  Slab* next = nullptr;
  Slab* prev = nullptr;

  // Large objects (kind == large).
  size_t large_len = 0;  // bytes mapped (page multiple)
  size_t extent_units = 0;

  std::atomic<uint32_t> remote_count{0};
  std::atomic<uint64_t> bits[kSlabSize / 16 / 64];
  std::atomic<uint64_t> remote[kSlabSize / 16 / 64];
};

struct List {
  Slab* head = nullptr;
  void push(Slab* s, SlabList which) {
    s->list = which;
    s->prev = nullptr;
    s->next = head;
    if (head) head->prev = s;
    head = s;
  }
  void remove(Slab* s) {
    if (s->prev) s->prev->next = s->next;
    else head = s->next;
    if (s->next) s->next->prev = s->prev;
    s->next = s->prev = nullptr;
    s->list = SlabList::none;
  }
  Slab* pop() {
    Slab* s = head;
    if (s) remove(s);
    return s;
  }
};

// The object this heap freed last, per class, already wiped: the next
// allocation of the class takes it back without touching the slab, which keeps
// the slab's bitmap (a load and a store to the same word in every alloc and
// every free) off the critical path of an alloc/free loop. Its bit stays set
// (the slab counts it as used); exmem_stats subtracts it. One object: every
// free of another object compares the pointer with each object waiting here
// (a double free would otherwise hand it out twice), and the bitmap, taken and
// given back inline, is nearly as fast for everything past the first.
inline constexpr uint32_t kMagazine = 1;

struct alignas(64) ThreadHeap {
  uint32_t mag_n[kClasses] = {};  // written by the owner with set_mag_n(), read by exmem_stats
  // The object the magazine path of alloc handed out last, and its class, as
  // long as it is live: every local free of it clears `last`. A free of exactly
  // this pointer needs none of free's checks (it is an object start this heap
  // owns and has not freed) unless another thread freed it meanwhile, which
  // sets remote_check; see free_impl. Canaries off only.
  void* last = nullptr;
  uint32_t last_cls = 0;
  void* mag[kClasses][kMagazine] = {};
  Slab* current[kClasses] = {};
  List partial[kClasses];
  List full[kClasses];
  // Set by other threads when they free into one of this heap's slabs:
  // remote_pending until alloc_refill folds full slabs back, remote_check until
  // the next magazine pop has checked every magazine against remote bits.
  std::atomic<bool> remote_pending{false};
  std::atomic<bool> remote_check{false};
  ThreadHeap* next_heap = nullptr;
};

// Where the heap lies: what the fast paths read. Written only at set-up (under
// the arena lock, before any pointer of the heap is handed out), in a forked
// child, and by the test hook that resets the heap.
struct Layout {
  uint8_t* base = nullptr;
  size_t span = 0;
  Slab* table = nullptr;
  bool canaries = false;
  uint64_t canary_key = 0;
  // Bytes a small object's slot keeps after its usable bytes for the canary.
  size_t canary_bytes() const { return canaries ? sizeof(uint64_t) : 0; }
};
extern Layout g_layout;

// The heap of a thread that has none (not yet, or no longer): its magazines
// stay empty and no slab has it as owner, so the fast paths find nothing there
// and leave for the slow paths, which give the thread its heap. t_heap is never
// null, and the fast paths need no null test. Nothing ever writes to it.
extern ThreadHeap g_no_heap;

// constinit: no TLS wrapper call on the fast paths.
extern constinit thread_local ThreadHeap* t_heap __attribute__((tls_model("initial-exec")));

// Slow paths (heap.cpp).
void* alloc_slow(size_t size);
void free_slow(void* p);
void* alloc_refill(ThreadHeap* h, size_t cls);
// The magazine of cls is empty: an object from the current slab, or a refill;
// the canary written when canaries are on. h == &g_no_heap: alloc_slow(size).
void* alloc_from_slab(ThreadHeap* h, size_t cls, size_t size);
// alloc() and free() with canaries on.
void* alloc_canary(size_t size);
void free_canary(void* p);
// The rest of a free whose checks passed, when the object is over kWipeInline
// bytes or the magazine is full: wipe, then magazine or slab.
void free_rest(ThreadHeap* h, Slab* s, void* p);
void free_list_change(ThreadHeap* h, Slab* s);
// Returns the magazines' objects to their slabs (owner or arena lock held).
void flush_magazines(ThreadHeap* h);
// Aborts if another thread freed an object that sits in h's magazine.
void check_magazine_against_remote(ThreadHeap* h, Slab* s);
[[noreturn]] void report_double_free(const void* p);
[[noreturn]] void report_canary(const void* p);
// Aborts if p, taken from a magazine, was freed by another thread meanwhile.
void check_reused(void* p);
// h->remote_check was set: clears it, then aborts if p (just taken from a
// magazine) or any object still in h's magazines was freed by another thread.
// Returns p.
void* check_magazines_remote(ThreadHeap* h, void* p);

// The slab record of the unit holding p. pre: p lies in [base, base + span).
inline Slab* slab_of(const void* p) {
  return &g_layout.table[static_cast<size_t>(static_cast<const uint8_t*>(p) - g_layout.base) >> kSlabShift];
}

// Index of the object of s that p points into (floor of offset / obj_size,
// exact for every offset inside a slab). pre: s is a slab and p lies in it.
inline uint32_t index_of(const Slab* s, const void* p) {
  uint32_t rel = static_cast<uint32_t>(static_cast<const uint8_t*>(p) - s->start);
  return static_cast<uint32_t>((uint64_t{rel} * s->inv) >> 32);
}

inline uint64_t canary_for(const void* slot) {
  return g_layout.canary_key ^ reinterpret_cast<uintptr_t>(slot) ^ 0x9e3779b97f4a7c15ull;
}

// Zeroes n bytes in a way the compiler cannot drop. Small objects (16-byte
// aligned, sizes a multiple of 16) are wiped inline with vector stores.
inline void wipe(void* p, size_t n) {
  if (n <= 256 && (n & 15) == 0 && (reinterpret_cast<uintptr_t>(p) & 15) == 0) {
    auto* q = static_cast<__m128i*>(p);
    const __m128i z = _mm_setzero_si128();
    for (size_t i = 0; i < n / 16; ++i) {
      _mm_store_si128(q + i, z);
      asm volatile("" : : : "memory");  // keep it a loop of stores, not a memset call
    }
  } else {
    std::memset(p, 0, n);
  }
  asm volatile("" : : "r"(p) : "memory");
}

// Objects up to this size are wiped inline by free (vector stores); larger
// ones by memset, out of line.
inline constexpr uint32_t kWipeInline = 256;

// wipe() for the fast path. pre: 16 <= n <= kWipeInline, n a multiple of 16, p
// 16-byte aligned (every small object: class sizes are multiples of 16 and
// slabs start on a page).
// Stores from both ends, overlapping in the middle: two stores and no loop for
// 16 and 32 bytes, four up to 64, eight up to 128.
inline void wipe_small(void* p, uint32_t n) {
  auto* q = static_cast<uint8_t*>(p);
  const __m128i z = _mm_setzero_si128();
  auto zero16 = [&](uint32_t at) { _mm_store_si128(reinterpret_cast<__m128i*>(q + at), z); };
  zero16(0);
  zero16(n - 16);
  if (n > 32) {
    zero16(16);
    zero16(n - 32);
    if (n > 64) {
      zero16(32);
      zero16(48);
      zero16(n - 64);
      zero16(n - 48);
      for (uint32_t i = 64; i + 64 < n; i += 16) {
        zero16(i);
        asm volatile("" : : : "memory");  // keep it a loop of stores, not a memset call
      }
    }
  }
  asm volatile("" : : "r"(p) : "memory");
}

// The owner's store of a slab's count; exmem_stats reads it from another
// thread, so it is a relaxed atomic store (a plain mov, no lock prefix).
inline void set_used(Slab* s, uint32_t v) { __atomic_store_n(&s->used, v, __ATOMIC_RELAXED); }

inline void set_mag_n(ThreadHeap* h, size_t cls, uint32_t v) { __atomic_store_n(&h->mag_n[cls], v, __ATOMIC_RELAXED); }

// Takes the object of the lowest clear bit of word w of s, whose value b has
// one. Owner only.
[[gnu::always_inline]] inline void* take_in_word(Slab* s, uint32_t w, uint64_t b) {
  s->bits[w].store(b | (b + 1), std::memory_order_relaxed);  // sets the lowest clear bit
  set_used(s, s->used + 1);
  return s->start + (size_t{w} * 64 + static_cast<size_t>(__builtin_ctzll(~b))) * s->obj_size;
}

// Takes the lowest free object of s, or nullptr when s is full (then hint is
// its last word, so that alloc's fast path never reads past the bitmap).
// Owner only.
inline void* slab_take(Slab* s) {
  for (uint32_t w = s->hint; w < s->nwords; ++w) {
    uint64_t b = s->bits[w].load(std::memory_order_relaxed);
    if (~b) {
      s->hint = static_cast<uint16_t>(w);
      return take_in_word(s, w, b);
    }
  }
  s->hint = static_cast<uint16_t>(s->nwords - 1);
  return nullptr;
}

// Object idx of s, wiped, goes back to its slab: its bit is cleared. A slab
// other than the current one changes lists when it stops being full or
// becomes empty. Owner only.
[[gnu::always_inline]] inline void give_back(ThreadHeap* h, Slab* s, uint32_t idx) {
  uint32_t w = idx >> 6;
  s->bits[w].store(s->bits[w].load(std::memory_order_relaxed) & ~(uint64_t{1} << (idx & 63)),
                   std::memory_order_relaxed);
  if (w < s->hint) s->hint = static_cast<uint16_t>(w);
  uint32_t used = s->used - 1;
  set_used(s, used);
  if (__builtin_expect(s->list != SlabList::current, 0) && (used == 0 || used + 1 == s->nobj))
    free_list_change(h, s);
}


inline void write_canary(void* p, size_t cls) {
  uint64_t c = canary_for(p);
  std::memcpy(static_cast<uint8_t*>(p) + kClassSize[cls] - 8, &c, 8);
}

// alloc() with canaries off (kCanaries false: inlined in exmem_alloc) or on
// (alloc_canary()).
template <bool kCanaries>
[[gnu::always_inline]] inline void* alloc_impl(size_t size) {
  constexpr size_t kCanary = kCanaries ? sizeof(uint64_t) : 0;
  ThreadHeap* h = t_heap;
  // One comparison for size == 0 and sizes over the small classes; size - 1
  // never wraps into the small range, size + kCanary never overflows.
  if (__builtin_expect(size - 1 >= kMaxSmall - kCanary, 0)) return alloc_slow(size);
  size_t cls = class_of(size + kCanary);
  uint32_t n = h->mag_n[cls];  // always 0 in g_no_heap
  if (__builtin_expect(n == 0, 0)) {
    // The lowest free object of the current slab, when its `hint` word has one
    // (g_no_heap has no current slab).
    Slab* s = h->current[cls];
    if (__builtin_expect(s == nullptr, 0)) return alloc_from_slab(h, cls, size);
    uint32_t w = s->hint;
    uint64_t b = s->bits[w].load(std::memory_order_relaxed);
    if (__builtin_expect(b == ~uint64_t{0}, 0)) return alloc_from_slab(h, cls, size);
    void* p = take_in_word(s, w, b);
    if constexpr (kCanaries) write_canary(p, cls);
    return p;
  }
  void* p = h->mag[cls][n - 1];
  set_mag_n(h, cls, n - 1);
  if constexpr (kCanaries) {
    write_canary(p, cls);
  } else {
    h->last = p;
    h->last_cls = static_cast<uint32_t>(cls);
  }
  // Another thread may have freed this (already free) object again: its remote
  // bit would then be set, and it set h->remote_check after. Catch that double
  // free before reuse.
  if (__builtin_expect(h->remote_check.load(std::memory_order_relaxed), 0)) return check_magazines_remote(h, p);
  return p;
}

inline void* alloc(size_t size) {
  if (__builtin_expect(g_layout.canaries, 0)) return alloc_canary(size);
  return alloc_impl<false>(size);
}

// free() with canaries off (inlined in exmem_free) or on (free_canary()).
template <bool kCanaries>
[[gnu::always_inline]] inline void free_impl(void* p) {
  // p == nullptr lands here too: base + span never wraps around, and a heap not
  // set up (or forgotten in a forked child) has span 0.
  uintptr_t off = reinterpret_cast<uintptr_t>(p) - reinterpret_cast<uintptr_t>(g_layout.base);
  if (__builtin_expect(off >= g_layout.span, 0)) return free_slow(p);
  ThreadHeap* h = t_heap;
  if constexpr (!kCanaries) {
    if (p == h->last) {  // never true in g_no_heap: its `last` stays null
      // The object alloc handed out last: live, an object start, in a slab h
      // owns (a slab with live objects keeps its owner while the thread
      // lives; retire() clears `last`), and not in a magazine. Only another
      // thread can have freed it already, and that set remote_check, which
      // only a magazine pop clears, after checking the object it pops and
      // setting `last` to it. Either way `last` is cleared here, so that a
      // second free of p takes the full checks.
      h->last = nullptr;
      if (__builtin_expect(!h->remote_check.load(std::memory_order_relaxed), 1)) {
        size_t cls = h->last_cls;
        uint32_t n = h->mag_n[cls];
        if (__builtin_expect(kClassSize[cls] > kWipeInline || n == kMagazine, 0))
          return free_rest(h, &g_layout.table[off >> kSlabShift], p);
        wipe_small(p, kClassSize[cls]);
        h->mag[cls][n] = p;
        set_mag_n(h, cls, n + 1);
        return;
      }
    }
  }
  Slab* s = &g_layout.table[off >> kSlabShift];
  // A unit has an owner only while it is a slab (init_slab sets the owner
  // before the kind, arena_give_slab_locked clears it before the kind), and no
  // slab has g_no_heap as owner: owner == h says kind == slab and h is a real
  // heap. Units of other threads, orphans, free slabs, large objects and
  // unmapped units all go to free_slow.
  if (__builtin_expect(s->owner.load(std::memory_order_relaxed) != h, 0)) return free_slow(p);
  // rel * inv: the index in the high half; the low half is below inv exactly
  // when rel is a multiple of the object size (ceil(2^32 / size) = inv, and
  // rel < 64 KiB: checked for every class and offset), so a pointer inside an
  // object goes to free_slow, which names it.
  uint32_t rel = static_cast<uint32_t>(static_cast<uint8_t*>(p) - s->start);
  uint64_t prod = uint64_t{rel} * s->inv;
  uint32_t idx = static_cast<uint32_t>(prod >> 32);
  if (__builtin_expect(static_cast<uint32_t>(prod) >= s->inv || idx >= s->nobj, 0)) return free_slow(p);
  uint32_t size = s->obj_size;
  uint32_t w = idx >> 6;
  // Allocated: bit set in bits and clear in remote (else a double free).
  uint64_t live = s->bits[w].load(std::memory_order_relaxed) & ~s->remote[w].load(std::memory_order_relaxed);
  if (__builtin_expect(!((live >> (idx & 63)) & 1), 0)) report_double_free(p);
  if constexpr (kCanaries) {
    uint64_t c;
    std::memcpy(&c, static_cast<uint8_t*>(p) + size - 8, 8);
    if (c != canary_for(p)) report_canary(p);
  }
  size_t cls = s->cls;
  uint32_t n = h->mag_n[cls];
  for (uint32_t i = 0; i < n; ++i)
    if (__builtin_expect(h->mag[cls][i] == p, 0)) report_double_free(p);
  if (__builtin_expect(size > kWipeInline, 0)) return free_rest(h, s, p);
  wipe_small(p, size);
  if (n == kMagazine) return give_back(h, s, idx);
  h->mag[cls][n] = p;
  set_mag_n(h, cls, n + 1);
}

inline void free(void* p) {
  if (__builtin_expect(g_layout.canaries, 0)) return free_canary(p);
  free_impl<false>(p);
}

}  // namespace exmem::heap
