// What the heap can say about itself: statistics with VMA accounting, the
// usable size of an object, whether a pointer is the fork parent's, and what a
// pointer points into.
#include <algorithm>
#include <iterator>

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
  size_t canary = g_layout.canary_bytes();
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
  size_t canary = g_layout.canary_bytes();
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
  out.regions = a.mapped.size();  // slab regions, large objects, shared regions, vaults
  out.vaults = a.vaults;
  // The heap's own locked memory is the fallback's when memfd_secret was
  // preferred (EXMEM_LOCKED_ONLY asked for it; a received region is the sender's).
  bool fell_back = a.kind == backend::Kind::locked && a.settings.source == Source::prefer_secret;
  for (const auto& [addr, m] : a.mapped) {
    if (m.kind == backend::Kind::secret) out.secret_bytes += m.len;
    else if (fell_back && m.use != Use::received) out.fallback_bytes += m.len;
  }
  // VMAs: each mapping, each PROT_NONE piece of the reservation between and
  // around them, and the slab table.
  if (a.ready) {
    size_t vmas = a.mapped.size() + 1;  // the table
    uintptr_t cursor = reinterpret_cast<uintptr_t>(g_layout.base);
    for (const auto& [addr, m] : a.mapped) {
      if (addr > cursor) ++vmas;
      cursor = addr + m.len;
    }
    if (cursor < reinterpret_cast<uintptr_t>(g_layout.base) + g_layout.span) ++vmas;
    out.mappings = vmas;
    out.kind = a.kind;
  }
  return out;
}

Found arena_find(const void* p) {
  Found f;
  if (!p || !arena_exists()) return f;
  ArenaLock l;
  Arena& a = arena();
  if (!a.ready || !within(p, g_layout.base, g_layout.span)) return f;
  const auto* q = static_cast<const uint8_t*>(p);
  const Slab* s = slab_of(p);
  UnitKind k = s->kind.load(std::memory_order_acquire);
  if (k == UnitKind::slab_free) return f;
  if (k == UnitKind::slab) {
    // A small object: live when its bit is set, no other thread freed it
    // (remote), and it is not in this thread's cache of freed objects.
    uint32_t idx = index_of(s, p);
    if (idx >= s->nobj || (idx >> 6) >= std::size(s->bits)) return f;
    const uint8_t* obj = s->start + size_t{idx} * s->obj_size;
    size_t usable = s->obj_size - g_layout.canary_bytes();
    if (q >= obj + usable) return f;  // the canary
    uint64_t bit = uint64_t{1} << (idx & 63);
    if (!(s->bits[idx >> 6].load(std::memory_order_acquire) & bit) ||
        (s->remote[idx >> 6].load(std::memory_order_acquire) & bit))
      return f;
    if (const ThreadHeap* h = t_heap; h != &g_no_heap) {
      for (uint32_t i = 0; i < h->mag_n[s->cls]; ++i)
        if (h->mag[s->cls][i] == obj) return f;
    }
    f = Found{true, Use::region, obj, usable, a.kind, 0};
    return f;
  }
  // A large object, a shared region or a vault: the mapping holding p.
  auto it = a.mapped.upper_bound(reinterpret_cast<uintptr_t>(p));
  if (it == a.mapped.begin()) return f;
  --it;
  const Mapping& m = it->second;
  if (reinterpret_cast<uintptr_t>(p) - it->first >= m.len || m.use == Use::region) return f;
  f.found = true;
  f.use = m.use;
  f.start = reinterpret_cast<const uint8_t*>(it->first);
  f.len = m.len;
  f.kind = m.kind;
  f.access = m.access ? m.access->load(std::memory_order_acquire) : 0;
  return f;
}

}  // namespace exmem::heap
