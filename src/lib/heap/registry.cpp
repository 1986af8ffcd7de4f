// The registry of thread heaps: a heap for each thread that allocates, made on
// its first allocation and retired when the thread exits (its slabs become
// orphans that other threads adopt; its record is kept for the next thread).
#include <new>

#include <exmem/exmem.h>

#include "error.hpp"
#include "heap/arena.hpp"
#include "heap/arena_state.hpp"

namespace exmem::heap {

namespace {

// Retires the heap of an exiting thread: its slabs become orphans (or free).
void retire(ThreadHeap* h) {
  ArenaLock l;
  Arena& a = arena();
  auto leave = [&](Slab* s) {
    collect_remote(s);
    s->owner.store(nullptr, std::memory_order_release);
    if (s->used == 0) {
      arena_give_slab_locked(s);
    } else {
      a.orphans[s->cls].push(s, SlabList::orphan);
    }
  };
  flush_magazines(h);
  for (size_t c = 0; c < kClasses; ++c) {
    if (Slab* s = h->current[c]) {
      s->list = SlabList::none;
      leave(s);
    }
    while (Slab* s = h->partial[c].pop()) leave(s);
    while (Slab* s = h->full[c].pop()) leave(s);
  }
  for (ThreadHeap** pp = &a.heaps; *pp; pp = &(*pp)->next_heap) {
    if (*pp == h) {
      *pp = h->next_heap;
      break;
    }
  }
  // Kept for reuse, never freed: another thread may still be setting its
  // remote_pending and remote_check flags through a slab's stale owner pointer.
  // Reset field by field (not destroy + construct): the two flags may be
  // written concurrently, and must stay live atomic objects.
  for (size_t c = 0; c < kClasses; ++c) {
    h->current[c] = nullptr;
    h->partial[c].head = nullptr;
    h->full[c].head = nullptr;
  }
  h->remote_pending.store(false, std::memory_order_relaxed);
  h->remote_check.store(false, std::memory_order_relaxed);
  h->last = nullptr;  // the next thread's frees must not take this thread's object for its own
  h->next_heap = a.idle;
  a.idle = h;
}

// Its destructor runs at thread exit: the hook that retires the thread's heap.
struct ThreadExitHook {
  ThreadHeap* heap = nullptr;
  ~ThreadExitHook() {
    if (heap && heap == t_heap) retire(heap);
    t_heap = &g_no_heap;
    heap = nullptr;
  }
};
thread_local ThreadExitHook t_exit_hook;

}  // namespace

ThreadHeap* thread_heap() {
  if (t_heap != &g_no_heap) return t_heap;
  ThreadHeap* h = nullptr;
  {
    ArenaLock l;
    Arena& a = arena();
    if (ensure_initialized(a) != EXMEM_OK) return nullptr;
    if (a.idle) {
      h = a.idle;
      a.idle = h->next_heap;
    } else {
      h = new (std::align_val_t{alignof(ThreadHeap)}, std::nothrow) ThreadHeap();
      if (!h) {
        detail::set_error(EXMEM_E_NO_MEMORY, "cannot allocate a thread heap record (%zu bytes)", sizeof(ThreadHeap));
        return nullptr;
      }
    }
    h->next_heap = a.heaps;
    a.heaps = h;
  }
  t_heap = h;
  t_exit_hook.heap = h;  // registers the exit hook for this thread
  return h;
}

void forget_thread_heaps(Arena& a) {
  for (ThreadHeap* list : {a.heaps, a.idle}) {
    for (ThreadHeap* h = list; h;) {
      ThreadHeap* n = h->next_heap;
      h->~ThreadHeap();
      ::operator delete(h, std::align_val_t{alignof(ThreadHeap)});
      h = n;
    }
  }
  a.heaps = a.idle = nullptr;
  t_heap = &g_no_heap;
  t_exit_hook.heap = nullptr;
}

}  // namespace exmem::heap
