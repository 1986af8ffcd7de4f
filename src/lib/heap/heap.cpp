#include "heap/heap.hpp"

#include <cerrno>

#include <exmem/exmem.h>

#include "error.hpp"
#include "heap/arena.hpp"

namespace exmem::heap {

void report_double_free(const void* p) {
  detail::fatal("exmem_free(%p): double free (the object is not allocated)", p);
}

void report_canary(const void* p) {
  detail::fatal("exmem_free(%p): damaged canary after the object: it was written past its end", p);
}

void* alloc_slow(size_t size) {
  if (size == 0) size = 1;  // a unique, freeable pointer
  ThreadHeap* h = thread_heap();
  if (!h) {
    errno = ENOMEM;
    return nullptr;
  }
  // Not size + 8 <= kMaxSmall: that wraps around for sizes near SIZE_MAX.
  if (size <= kMaxSmall - g_layout.canary_bytes()) return alloc(size);
  void* p = arena_alloc_large(size);
  if (!p) errno = ENOMEM;
  return p;
}

void* alloc_from_slab(ThreadHeap* h, size_t cls, size_t size) {
  if (h == &g_no_heap) return alloc_slow(size);
  Slab* s = h->current[cls];
  void* p = s ? slab_take(s) : nullptr;
  if (!p) {
    p = alloc_refill(h, cls);
    if (!p) return nullptr;
  }
  if (g_layout.canaries) write_canary(p, cls);
  return p;
}

void* alloc_canary(size_t size) { return alloc_impl<true>(size); }
void free_canary(void* p) { free_impl<true>(p); }

void free_rest(ThreadHeap* h, Slab* s, void* p) {
  wipe(p, s->obj_size);
  size_t cls = s->cls;
  uint32_t n = h->mag_n[cls];
  if (n < kMagazine) {
    h->mag[cls][n] = p;
    set_mag_n(h, cls, n + 1);
    return;
  }
  give_back(h, s, index_of(s, p));
}

void* check_magazines_remote(ThreadHeap* h, void* p) {
  h->remote_check.exchange(false, std::memory_order_acquire);
  check_reused(p);
  for (size_t c = 0; c < kClasses; ++c)
    for (uint32_t i = 0; i < h->mag_n[c]; ++i) check_reused(h->mag[c][i]);
  return p;
}

void flush_magazines(ThreadHeap* h) {
  for (size_t c = 0; c < kClasses; ++c) {
    for (uint32_t i = 0; i < h->mag_n[c]; ++i) {
      void* p = h->mag[c][i];
      Slab* s = slab_of(p);
      uint32_t idx = index_of(s, p);
      uint32_t w = idx >> 6;
      if (s->remote[w].load(std::memory_order_acquire) & (uint64_t{1} << (idx & 63))) report_double_free(p);
      s->bits[w].store(s->bits[w].load(std::memory_order_relaxed) & ~(uint64_t{1} << (idx & 63)),
                       std::memory_order_relaxed);
      if (w < s->hint) s->hint = static_cast<uint16_t>(w);
      set_used(s, s->used - 1);
    }
    set_mag_n(h, c, 0);
  }
}

void check_reused(void* p) {
  Slab* s = slab_of(p);
  uint32_t idx = index_of(s, p);
  if (s->remote[idx >> 6].load(std::memory_order_acquire) & (uint64_t{1} << (idx & 63))) report_double_free(p);
}

void check_magazine_against_remote(ThreadHeap* h, Slab* s) {
  size_t c = s->cls;
  for (uint32_t i = 0; i < h->mag_n[c]; ++i) {
    auto* p = static_cast<uint8_t*>(h->mag[c][i]);
    if (static_cast<size_t>(p - s->start) >= kSlabSize) continue;
    uint32_t idx = index_of(s, p);
    if (s->remote[idx >> 6].load(std::memory_order_acquire) & (uint64_t{1} << (idx & 63))) report_double_free(p);
  }
}

// Folds remote frees into a slab of this heap, catching frees of objects the
// heap already holds as free in its magazine.
static void collect_owned(ThreadHeap* h, Slab* s) {
  if (s->remote_count.load(std::memory_order_acquire) == 0) return;
  check_magazine_against_remote(h, s);
  collect_remote(s);
}

void* alloc_refill(ThreadHeap* h, size_t cls) {
  if (Slab* s = h->current[cls]) {
    collect_owned(h, s);
    if (void* p = slab_take(s)) return p;
    h->current[cls] = nullptr;
    h->full[cls].push(s, SlabList::full);
  }
  // Other threads freed into full slabs of this heap: give them room back.
  if (h->remote_pending.exchange(false, std::memory_order_acquire)) {
    for (size_t c = 0; c < kClasses; ++c) {
      for (Slab* s = h->full[c].head; s;) {
        Slab* next = s->next;
        if (s->remote_count.load(std::memory_order_acquire)) {
          collect_owned(h, s);
          h->full[c].remove(s);
          if (s->used == 0)
            arena_give_slab(s);
          else
            h->partial[c].push(s, SlabList::partial);
        }
        s = next;
      }
    }
  }
  while (Slab* s = h->partial[cls].pop()) {
    collect_owned(h, s);
    s->list = SlabList::current;
    h->current[cls] = s;
    if (void* p = slab_take(s)) return p;
    h->current[cls] = nullptr;
    h->full[cls].push(s, SlabList::full);
  }
  Slab* s = arena_take_slab(h, cls);
  if (!s) {
    errno = ENOMEM;
    return nullptr;
  }
  s->list = SlabList::current;
  h->current[cls] = s;
  return slab_take(s);
}

void free_list_change(ThreadHeap* h, Slab* s) {
  if (s->list == SlabList::full) {
    h->full[s->cls].remove(s);
    if (s->used) {
      h->partial[s->cls].push(s, SlabList::partial);
      return;
    }
  } else if (s->list == SlabList::partial && s->used == 0) {
    h->partial[s->cls].remove(s);
  } else {
    return;
  }
  arena_give_slab(s);
}

void free_slow(void* p) {
  if (!p) return;
  size_t off = static_cast<size_t>(static_cast<uint8_t*>(p) - g_layout.base);
  if (!g_layout.base || off >= g_layout.span) {
    if (arena_inherited(p)) return;  // the parent's object (EXMEM_FORK_SHARE): not ours to wipe
    detail::fatal("exmem_free(%p): pointer not owned by the exmem heap", p);
  }
  Slab* s = slab_of(p);
  UnitKind kind = s->kind.load(std::memory_order_acquire);
  if (kind == UnitKind::large) {
    if (p != s->start)
      detail::fatal("exmem_free(%p): pointer into a large object, not its start: not owned by the exmem heap", p);
    return arena_free_large(s, p);
  }
  if (kind != UnitKind::slab)
    detail::fatal("exmem_free(%p): double free, or a pointer the exmem heap does not own (no live object there)", p);
  uint32_t idx = index_of(s, p);
  if (idx * s->obj_size != static_cast<uint32_t>(static_cast<uint8_t*>(p) - s->start) || idx >= s->nobj)
    detail::fatal("exmem_free(%p): pointer inside an object, not its start: not owned by the exmem heap", p);

  ThreadHeap* h = thread_heap();
  if (h && s->owner.load(std::memory_order_relaxed) == h) return free(p);  // now the fast path applies

  // Another thread's slab (or an orphan): publish the free through `remote`.
  uint32_t w = idx >> 6;
  uint64_t bit = uint64_t{1} << (idx & 63);
  if (!(s->bits[w].load(std::memory_order_relaxed) & bit)) report_double_free(p);
  if (g_layout.canaries) {
    uint64_t c;
    std::memcpy(&c, static_cast<uint8_t*>(p) + s->obj_size - 8, 8);
    if (c != canary_for(p)) report_canary(p);
  }
  wipe(p, s->obj_size);
  uint64_t old = s->remote[w].fetch_or(bit, std::memory_order_release);
  if (old & bit) report_double_free(p);
  s->remote_count.fetch_add(1, std::memory_order_release);
  if (ThreadHeap* owner = s->owner.load(std::memory_order_acquire)) {
    owner->remote_pending.store(true, std::memory_order_release);
    owner->remote_check.store(true, std::memory_order_release);
  }
}

}  // namespace exmem::heap
