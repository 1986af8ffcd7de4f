// What the heap can say about itself: statistics with VMA accounting, the
// usable size of an object, and whether a pointer is the fork parent's.
#include <algorithm>

#include "heap/arena.hpp"
#include "heap/arena_state.hpp"

namespace exmem::heap {

namespace {

// Whether p lies in [base, base + span).
bool within(const void* p, const uint8_t* base, size_t span) {
  return static_cast<size_t>(static_cast<const uint8_t*>(p) - base) < span;
}

}  // namespace

bool arena_inherited(const void* p) {
  if (!arena_exists()) return false;
  ArenaLock l;
  for (const auto& in : arena().inherited)
    if (within(p, in.base, in.span)) return true;
  return false;
}

size_t arena_usable_size(const void* p) {
  size_t canary = g_layout.canaries ? 8 : 0;
  auto usable = [canary](const Slab* table, const uint8_t* base, const void* q) -> size_t {
    size_t off = static_cast<size_t>(static_cast<const uint8_t*>(q) - base);
    const Slab* s = &table[off >> kSlabShift];
    UnitKind k = s->kind.load(std::memory_order_acquire);
    if (k == UnitKind::large) return q == s->start ? s->large_len : 0;
    if (k != UnitKind::slab) return 0;
    size_t rel = static_cast<size_t>(static_cast<const uint8_t*>(q) - s->start);
    if (rel % s->obj_size) return 0;
    return s->obj_size - canary;
  };
  if (!p) return 0;
  if (within(p, g_layout.base, g_layout.span)) return usable(g_layout.table, g_layout.base, p);
  if (!arena_exists()) return 0;
  ArenaLock l;
  for (const auto& in : arena().inherited)
    if (within(p, in.base, in.span)) return in.table ? usable(in.table, in.base, p) : 0;
  return 0;
}

Stats arena_stats() {
  ArenaLock l;
  Arena& a = arena();
  Stats out;
  size_t canary = g_layout.canaries ? 8 : 0;
  // Live small objects are counted from the slabs (no counter on the fast
  // paths): set bits, less those freed by other threads and not yet collected.
  size_t objects = a.large_objects, bytes = a.large_bytes;
  if (a.ready) {
    for (size_t u = 1; u < a.bump; ++u) {
      const Slab& s = g_layout.table[u];
      if (s.kind.load(std::memory_order_acquire) != UnitKind::slab) continue;
      // The two counts move at different instants while threads run: clamp.
      int64_t diff = int64_t{__atomic_load_n(&s.used, __ATOMIC_RELAXED)} -
                     int64_t{s.remote_count.load(std::memory_order_relaxed)};
      size_t live = diff > 0 ? static_cast<size_t>(diff) : 0;
      objects += live;
      bytes += live * (s.obj_size - canary);
    }
  }
  // Objects in the thread heaps' magazines are free, though their bits are set.
  for (ThreadHeap* h = a.heaps; h; h = h->next_heap) {
    for (size_t c = 0; c < kClasses; ++c) {
      size_t n = __atomic_load_n(&h->mag_n[c], __ATOMIC_RELAXED);
      n = std::min(n, objects);
      objects -= n;
      size_t b = n * (kClassSize[c] - canary);
      bytes -= std::min(b, bytes);
    }
  }
  out.live_objects = objects;
  out.live_bytes = bytes;
  out.mapped_bytes = a.mapped_bytes;
  out.regions = a.mapped.size();  // slab regions, large objects, shared regions
  // VMAs: each mapping, each PROT_NONE piece of the reservation between and
  // around them, and the slab table.
  if (a.ready) {
    size_t vmas = a.mapped.size() + 1;  // the table
    uintptr_t cursor = reinterpret_cast<uintptr_t>(g_layout.base);
    for (const auto& [addr, len] : a.mapped) {
      if (addr > cursor) ++vmas;
      cursor = addr + len;
    }
    if (cursor < reinterpret_cast<uintptr_t>(g_layout.base) + g_layout.span) ++vmas;
    out.mappings = vmas;
    out.kind = a.kind;
  }
  return out;
}

}  // namespace exmem::heap
