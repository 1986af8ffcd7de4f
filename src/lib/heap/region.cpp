// Regions of slabs and large objects: what the arena maps for the heap, and the
// slabs it hands to thread heaps and takes back.
#include <algorithm>

#include <exmem/exmem.h>

#include "error.hpp"
#include "heap/arena.hpp"
#include "heap/arena_state.hpp"

namespace exmem::heap {

namespace {

constexpr size_t kGrowthCap = 16;  // regions grow to 16x the growth step

void init_slab(Slab* s, ThreadHeap* h, size_t cls, size_t unit) {
  uint32_t size = kClassSize[cls];
  s->start = g_layout.base + unit * kSlabSize;
  s->obj_size = size;
  s->nobj = static_cast<uint32_t>(kSlabSize / size);
  s->inv = static_cast<uint32_t>(((uint64_t{1} << 32) + size - 1) / size);
  s->nwords = static_cast<uint16_t>((s->nobj + 63) / 64);
  s->cls = static_cast<uint8_t>(cls);
  s->hint = 0;
  set_used(s, 0);
  for (uint32_t w = 0; w < s->nwords; ++w) {
    s->bits[w].store(0, std::memory_order_relaxed);
    s->remote[w].store(0, std::memory_order_relaxed);
  }
  if (uint32_t tail = s->nobj % 64)  // indices past nobj stay taken forever
    s->bits[s->nwords - 1].store(~uint64_t{0} << tail, std::memory_order_relaxed);
  s->remote_count.store(0, std::memory_order_relaxed);
  s->owner.store(h, std::memory_order_relaxed);
  s->kind.store(UnitKind::slab, std::memory_order_release);
}

}  // namespace

// Adds a region of slabs: sized to double the heap (between the growth step and
// 16 times it), halved while RLIMIT_MEMLOCK refuses it, down to one slab.
int grow(Arena& a, size_t at_least) {
  size_t step = a.settings.growth_step;
  size_t len = std::clamp(a.region_bytes, step, step * kGrowthCap);
  len = std::max(round_up(at_least, kSlabSize), round_up(len, kSlabSize));
  if (size_t maximum = a.settings.maximum) {
    size_t room = maximum > a.mapped_bytes ? (maximum - a.mapped_bytes) / kSlabSize * kSlabSize : 0;
    if (room < round_up(at_least, kSlabSize)) return check_maximum(a, round_up(at_least, kSlabSize));
    len = std::min(len, room);
  }
  for (;;) {
    backend::Region r;
    size_t first = 0, units = 0;
    int rc = map_extent(a, len, Use::region, map_options(a), &r, &first, &units);
    if (rc == EXMEM_OK) {
      size_t n = len / kSlabSize;
      for (size_t i = n; i-- > 0;) {
        Slab* s = &g_layout.table[first + i];
        s->kind.store(UnitKind::slab_free, std::memory_order_relaxed);
        s->list = SlabList::free;
        a.free_slabs.push_back(s);
      }
      a.region_bytes += len;
      ++a.regions;
      return EXMEM_OK;
    }
    if (rc != EXMEM_E_MEMLOCK || len <= round_up(at_least, kSlabSize) || len <= kSlabSize) return rc;
    len = std::max(round_up(at_least, kSlabSize), len / 2 / kSlabSize * kSlabSize);
  }
}

void collect_remote(Slab* s) {
  if (s->remote_count.load(std::memory_order_acquire) == 0) return;
  uint32_t n = 0;
  for (uint32_t w = 0; w < s->nwords; ++w) {
    if (s->remote[w].load(std::memory_order_relaxed) == 0) continue;
    uint64_t r = s->remote[w].exchange(0, std::memory_order_acquire);
    uint64_t b = s->bits[w].load(std::memory_order_relaxed);
    // Another thread freed an object that was free already: it raced with the
    // owner's free of it (each checks the other's bitmap before it writes its own).
    if (uint64_t twice = r & ~b)
      report_double_free(s->start + (size_t{w} * 64 + static_cast<size_t>(__builtin_ctzll(twice))) * s->obj_size);
    s->bits[w].store(b & ~r, std::memory_order_relaxed);
    if (r && w < s->hint) s->hint = static_cast<uint16_t>(w);
    n += static_cast<uint32_t>(__builtin_popcountll(r));
  }
  s->remote_count.fetch_sub(n, std::memory_order_relaxed);
  set_used(s, s->used - n);
}

Slab* arena_take_slab(ThreadHeap* h, size_t cls) {
  ArenaLock l;
  Arena& a = arena();
  // An orphan with room first: it holds live objects already.
  while (Slab* s = a.orphans[cls].pop()) {
    collect_remote(s);
    if (s->used == 0) {
      arena_give_slab_locked(s);
      continue;
    }
    s->owner.store(h, std::memory_order_relaxed);
    if (s->used < s->nobj) return s;
    h->full[cls].push(s, SlabList::full);
  }
  if (a.free_slabs.empty()) {
    if (int rc = grow(a, kSlabSize); rc != EXMEM_OK) return nullptr;
  }
  Slab* s = a.free_slabs.back();
  a.free_slabs.pop_back();
  init_slab(s, h, cls, static_cast<size_t>(s - g_layout.table));
  return s;
}

void arena_give_slab(Slab* s) {
  ArenaLock l;
  arena_give_slab_locked(s);
}

void arena_give_slab_locked(Slab* s) {
  s->owner.store(nullptr, std::memory_order_relaxed);
  s->kind.store(UnitKind::slab_free, std::memory_order_relaxed);
  s->list = SlabList::free;
  arena().free_slabs.push_back(s);
}

void* arena_alloc_large(size_t size) {
  if (size > (size_t{1} << 46)) {
    detail::set_error(EXMEM_E_NO_MEMORY, "an object of %zu bytes cannot be exclusive memory", size);
    return nullptr;
  }
  size_t len = round_up(size, kPage);
  ArenaLock l;
  Arena& a = arena();
  if (ensure_initialized(a) != EXMEM_OK) return nullptr;
  if (check_maximum(a, len) != EXMEM_OK) return nullptr;
  backend::Region r;
  size_t first = 0, units = 0;
  if (map_extent(a, len, Use::large, map_options(a), &r, &first, &units) != EXMEM_OK) return nullptr;
  Slab* s = &g_layout.table[first];
  s->start = static_cast<uint8_t*>(r.addr);
  s->large_len = len;
  s->extent_units = units;
  s->obj_size = 0;
  for (size_t i = 1; i < units - 1; ++i) g_layout.table[first + i].kind.store(UnitKind::large_tail);
  s->kind.store(UnitKind::large, std::memory_order_release);
  a.large_objects += 1;
  a.large_bytes += len;
  return r.addr;
}

void arena_free_large(Slab* s, void* p) {
  ArenaLock l;
  Arena& a = arena();
  if (s->kind.load() != UnitKind::large || p != s->start)
    detail::fatal("exmem_free(%p): double free or pointer into a large object the heap does not own", p);
  wipe(p, s->large_len);
  size_t first = static_cast<size_t>(s - g_layout.table);
  for (size_t i = 0; i < s->extent_units; ++i) g_layout.table[first + i].kind.store(UnitKind::unmapped);
  unmap_extent(a, backend::Region{p, s->large_len, -1}, s->extent_units);
  a.large_objects -= 1;
  a.large_bytes -= s->large_len;
  s->large_len = 0;
  s->extent_units = 0;
}

}  // namespace exmem::heap
