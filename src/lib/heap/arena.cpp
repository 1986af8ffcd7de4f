#include "heap/arena.hpp"

#include <pthread.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <new>
#include <vector>

#include "backend/sys.hpp"
#include "error.hpp"

namespace exmem::heap {

Fast g_fast;
constinit thread_local ThreadHeap* t_heap __attribute__((tls_model("initial-exec"))) = nullptr;

namespace {

constexpr size_t kDefaultGrowth = size_t{1} << 20;
constexpr size_t kDefaultSpan = size_t{64} << 30;  // address space only
constexpr size_t kGrowthCap = 16;                  // regions grow to 16x the growth step

size_t round_up(size_t v, size_t a) { return (v + a - 1) / a * a; }

// Every field is guarded by `lock`.
struct Arena {
  bool configured = false;  // cfg holds the configuration to use
  bool ready = false;       // reservation and table exist
  exmem_config cfg{};
  backend::Kind kind = backend::Kind::none;
  size_t nunits = 0;
  size_t table_bytes = 0;
  size_t bump = 1;  // next never-used unit; unit 0 stays a guard
  std::map<size_t, size_t> free_extents;  // first unit -> units, for reuse
  std::vector<Slab*> free_slabs;          // mapped units not assigned to a class
  List orphans[kClasses];
  std::map<uintptr_t, size_t> mapped;  // our mappings, for VMA accounting
  size_t reserved = 0;                 // bytes mapped (regions + large + shared)
  size_t region_bytes = 0;             // bytes of slab regions
  size_t regions = 0;
  ThreadHeap* heaps = nullptr;  // live thread heaps
  ThreadHeap* idle = nullptr;   // heaps of exited threads, for reuse
  size_t large_objects = 0;  // live large objects and their bytes
  size_t large_bytes = 0;
  bool announced = false;
  struct Inherited {
    uint8_t* base;
    size_t span;
    Slab* table;
  };
  std::vector<Inherited> inherited;  // the parents' reservations (table: nullptr when not mapped here)
};

pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
alignas(Arena) unsigned char g_arena_storage[sizeof(Arena)];
Arena* g_arena = nullptr;  // constructed on first use, never destroyed

struct Locked {
  Locked() { pthread_mutex_lock(&g_lock); }
  ~Locked() { pthread_mutex_unlock(&g_lock); }
  Locked(const Locked&) = delete;
  Locked& operator=(const Locked&) = delete;
};

Arena& A() {
  if (!g_arena) g_arena = new (g_arena_storage) Arena();
  return *g_arena;
}

void on_fork_prepare() { pthread_mutex_lock(&g_lock); }
void on_fork_parent() { pthread_mutex_unlock(&g_lock); }
void on_fork_child();

bool same_config(const exmem_config& a, const exmem_config& b) {
  return a.reserve == b.reserve && a.growth == b.growth && a.maximum == b.maximum && a.policy == b.policy &&
         a.fork_mode == b.fork_mode && (a.canaries != 0) == (b.canaries != 0) && (a.quiet != 0) == (b.quiet != 0);
}

int validate(const exmem_config& c) {
  if (c.policy < EXMEM_PREFER_SECRET || c.policy > EXMEM_LOCKED_ONLY)
    return detail::set_error(EXMEM_E_INVALID,
                             "exmem_config.policy = %d: expected EXMEM_PREFER_SECRET (0), EXMEM_REQUIRE_SECRET (1) "
                             "or EXMEM_LOCKED_ONLY (2)",
                             c.policy);
  if (c.fork_mode < EXMEM_FORK_PRIVATE || c.fork_mode > EXMEM_FORK_SHARE)
    return detail::set_error(EXMEM_E_INVALID,
                             "exmem_config.fork_mode = %d: expected EXMEM_FORK_PRIVATE (0) or EXMEM_FORK_SHARE (1)",
                             c.fork_mode);
  if (c.maximum != 0 && c.reserve > c.maximum)
    return detail::set_error(EXMEM_E_INVALID, "exmem_config.reserve (%zu bytes) exceeds exmem_config.maximum (%zu bytes)",
                             c.reserve, c.maximum);
  if (c.growth > (size_t{1} << 40) || c.reserve > (size_t{1} << 44))
    return detail::set_error(EXMEM_E_INVALID, "exmem_config.growth (%zu) or reserve (%zu) is implausibly large",
                             c.growth, c.reserve);
  return EXMEM_OK;
}

// Finds `units` free units of the reservation (first fit, then the bump).
bool take_extent(Arena& a, size_t units, size_t* first) {
  for (auto it = a.free_extents.begin(); it != a.free_extents.end(); ++it) {
    if (it->second >= units) {
      *first = it->first;
      size_t rest = it->second - units;
      size_t at = it->first + units;
      a.free_extents.erase(it);
      if (rest) a.free_extents.emplace(at, rest);
      return true;
    }
  }
  if (a.bump + units > a.nunits) return false;
  *first = a.bump;
  a.bump += units;
  return true;
}

void give_extent(Arena& a, size_t first, size_t units) {
  auto it = a.free_extents.emplace(first, units).first;
  auto next = std::next(it);
  if (next != a.free_extents.end() && it->first + it->second == next->first) {
    it->second += next->second;
    a.free_extents.erase(next);
  }
  if (it != a.free_extents.begin()) {
    auto prev = std::prev(it);
    if (prev->first + prev->second == it->first) {
      prev->second += it->second;
      a.free_extents.erase(it);
    }
  }
}

backend::MapOptions map_options(const Arena& a) {
  backend::MapOptions o;
  o.kind = a.kind;
  o.dontfork = a.cfg.fork_mode == EXMEM_FORK_PRIVATE;
  o.shared = a.cfg.fork_mode == EXMEM_FORK_SHARE;
  o.charged = a.reserved;
  return o;
}

int check_maximum(const Arena& a, size_t len) {
  if (a.cfg.maximum && a.reserved + len > a.cfg.maximum)
    return detail::set_error(EXMEM_E_MAXIMUM,
                             "the configured maximum of %zu bytes of exclusive memory would be exceeded: %zu held, "
                             "%zu more asked (raise exmem_config.maximum)",
                             a.cfg.maximum, a.reserved, len);
  return EXMEM_OK;
}

// Maps len bytes at a fresh extent (followed by at least one guard unit).
int map_extent(Arena& a, size_t len, const backend::MapOptions& opt, backend::Region* r, size_t* first,
               size_t* units) {
  *units = len / kSlabSize + 1;
  if (!take_extent(a, *units, first))
    return detail::set_error(EXMEM_E_NO_MEMORY,
                             "the heap's %zu-byte address-space reservation is exhausted (asked %zu bytes)",
                             a.nunits * kSlabSize, len);
  int rc = backend::map(g_fast.base + *first * kSlabSize, len, opt, r);
  if (rc != EXMEM_OK) {
    give_extent(a, *first, *units);
    return rc;
  }
  a.mapped.emplace(reinterpret_cast<uintptr_t>(r->addr), len);
  a.reserved += len;
  return EXMEM_OK;
}

// Adds a region of slabs: sized to double the heap (between the growth step and
// 16 times it), halved while RLIMIT_MEMLOCK refuses it, down to one slab.
int grow(Arena& a, size_t at_least) {
  size_t step = a.cfg.growth ? round_up(a.cfg.growth, kSlabSize) : kDefaultGrowth;
  size_t len = std::clamp(a.region_bytes, step, step * kGrowthCap);
  len = std::max(round_up(at_least, kSlabSize), round_up(len, kSlabSize));
  if (a.cfg.maximum) {
    size_t room = a.cfg.maximum > a.reserved ? (a.cfg.maximum - a.reserved) / kSlabSize * kSlabSize : 0;
    if (room < round_up(at_least, kSlabSize)) return check_maximum(a, round_up(at_least, kSlabSize));
    len = std::min(len, room);
  }
  for (;;) {
    backend::Region r;
    size_t first = 0, units = 0;
    int rc = map_extent(a, len, map_options(a), &r, &first, &units);
    if (rc == EXMEM_OK) {
      size_t n = len / kSlabSize;
      for (size_t i = n; i-- > 0;) {
        Slab* s = &g_fast.table[first + i];
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

int setup(Arena& a) {
  if (a.ready) return EXMEM_OK;
  const exmem_config& c = a.cfg;
  if (c.policy == EXMEM_LOCKED_ONLY) {
    a.kind = backend::Kind::locked;
  } else if (int e = backend::probe_secret(); e == 0) {
    a.kind = backend::Kind::secret;
  } else if (c.policy == EXMEM_REQUIRE_SECRET) {
    return detail::set_error(EXMEM_E_NO_SECRET,
                             "memfd_secret is unavailable (%s: %s) and the policy is EXMEM_REQUIRE_SECRET",
                             std::strerror(e), backend::why_unavailable(e));
  } else {
    a.kind = backend::Kind::locked;
    if (!c.quiet && !a.announced) {
      std::fprintf(stderr,
                   "exmem: memfd_secret is unavailable (%s: %s); falling back to locked memory (mlock + "
                   "MADV_DONTDUMP + guard pages), which the kernel can still read\n",
                   std::strerror(e), backend::why_unavailable(e));
      a.announced = true;
    }
  }

  size_t span = kDefaultSpan;
  if (c.maximum) span = std::clamp(round_up(c.maximum, kSlabSize) * 4, size_t{1} << 30, kDefaultSpan);
  // Address space can be limited (RLIMIT_AS, tools like valgrind): take what
  // is given, down to 64 MiB.
  void* base = backend::reserve(span);
  while (!base && span > (size_t{64} << 20)) {
    span /= 2;
    base = backend::reserve(span);
  }
  if (!base) return detail::last_error();
  size_t nunits = span / kSlabSize;
  size_t table_bytes = round_up(nunits * sizeof(Slab), kPage);
  void* table = sys::mmap(nullptr, table_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                          -1, 0);
  if (table == MAP_FAILED) {
    int e = errno;
    backend::release(base, span);
    return detail::set_error(EXMEM_E_NO_MEMORY, "cannot map the heap's %zu-byte slab table: %s", table_bytes,
                             std::strerror(e));
  }
  // Ordinary memory, but nothing a core dump needs (and up to a GiB of it).
  sys::madvise(table, table_bytes, MADV_DONTDUMP);
  // Slab records are all-zero bytes when unused: unmapped kind, no owner.
  g_fast.base = static_cast<uint8_t*>(base);
  g_fast.span = span;
  g_fast.table = static_cast<Slab*>(table);
  g_fast.canaries = c.canaries != 0;
  uint64_t key = 0;
  if (getrandom(&key, sizeof key, 0) != sizeof key) key = reinterpret_cast<uintptr_t>(&key) * 0x2545F4914F6CDD1Dull;
  g_fast.canary_key = key;
  a.nunits = nunits;
  a.table_bytes = table_bytes;
  a.bump = 1;
  a.ready = true;

  if (c.reserve) {
    if (int rc = grow(a, c.reserve); rc != EXMEM_OK) {
      // Nothing half-made stays behind: the next call may try again.
      sys::munmap(table, table_bytes);
      backend::release(base, span);
      g_fast = Fast{};
      a.free_slabs.clear();
      a.free_extents.clear();
      a.mapped.clear();
      a.reserved = a.region_bytes = a.regions = 0;
      a.ready = false;
      return rc;
    }
  }
  return EXMEM_OK;
}

int ensure_ready(Arena& a) {
  if (!a.configured) {
    a.cfg = exmem_config{};
    a.configured = true;
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, [] { pthread_atfork(on_fork_prepare, on_fork_parent, on_fork_child); });
  }
  return setup(a);
}

void init_slab(Slab* s, ThreadHeap* h, size_t cls, size_t unit) {
  uint32_t size = kClassSize[cls];
  s->start = g_fast.base + unit * kSlabSize;
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

// Retires the heap of an exiting thread: its slabs become orphans (or free).
void retire(ThreadHeap* h) {
  Locked l;
  Arena& a = A();
  auto leave = [&](Slab* s) {
    collect_remote(s);
    s->owner.store(nullptr, std::memory_order_release);
    if (s->used == 0) {
      arena_give_slab(s);
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
  // remote_pending flag through a slab's stale owner pointer.
  // Reset field by field (not destroy + construct): remote_pending may be
  // written concurrently, and must stay a live atomic object.
  for (size_t c = 0; c < kClasses; ++c) {
    h->current[c] = nullptr;
    h->partial[c].head = nullptr;
    h->full[c].head = nullptr;
  }
  h->remote_pending.store(false, std::memory_order_relaxed);
  h->next_heap = a.idle;
  a.idle = h;
}

struct HeapOwner {
  ThreadHeap* heap = nullptr;
  ~HeapOwner() {
    if (heap && heap == t_heap) retire(heap);
    t_heap = nullptr;
    heap = nullptr;
  }
};
thread_local HeapOwner t_owner;

void on_fork_child() {
  // Only the forking thread exists here, and it holds the lock.
  Arena& a = A();
  if (a.ready) {
    if (a.cfg.fork_mode == EXMEM_FORK_SHARE) {
      // The parent's objects stay mapped and shared; this process only reads and
      // writes them, and allocates from reservations of its own.
      a.inherited.push_back({g_fast.base, g_fast.span, g_fast.table});
    } else {
      // MADV_DONTFORK kept the regions out of this process. The address range
      // stays reserved (PROT_NONE, one VMA) so that no new object ever takes an
      // address the parent used: code run in the child (destructors, say) may
      // still free the parent's pointers, which is then a no-op.
      sys::mmap_restore(g_fast.base, g_fast.span);
      sys::munmap(g_fast.table, a.table_bytes);
      a.inherited.push_back({g_fast.base, g_fast.span, nullptr});
    }
  }
  // The parent's other threads do not exist here: their heaps can go.
  for (ThreadHeap* list : {a.heaps, a.idle}) {
    for (ThreadHeap* h = list; h;) {
      ThreadHeap* n = h->next_heap;
      h->~ThreadHeap();
      ::operator delete(h, std::align_val_t{alignof(ThreadHeap)});
      h = n;
    }
  }
  exmem_config cfg = a.cfg;
  bool configured = a.configured, announced = a.announced;
  auto inherited = std::move(a.inherited);
  a.~Arena();
  new (&a) Arena();
  a.cfg = cfg;
  a.configured = configured;
  a.announced = announced;
  a.inherited = std::move(inherited);
  g_fast = Fast{};
  t_heap = nullptr;
  t_owner.heap = nullptr;
  pthread_mutex_unlock(&g_lock);
}

}  // namespace

void collect_remote(Slab* s) {
  if (s->remote_count.load(std::memory_order_acquire) == 0) return;
  uint32_t n = 0;
  for (uint32_t w = 0; w < s->nwords; ++w) {
    if (s->remote[w].load(std::memory_order_relaxed) == 0) continue;
    uint64_t r = s->remote[w].exchange(0, std::memory_order_acquire);
    s->bits[w].store(s->bits[w].load(std::memory_order_relaxed) & ~r, std::memory_order_relaxed);
    if (r && w < s->hint) s->hint = static_cast<uint16_t>(w);
    n += static_cast<uint32_t>(__builtin_popcountll(r));
  }
  s->remote_count.fetch_sub(n, std::memory_order_relaxed);
  set_used(s, s->used - n);
}

int arena_init(const exmem_config* cfg) {
  exmem_config c = cfg ? *cfg : exmem_config{};
  Locked l;
  Arena& a = A();
  if (a.ready) {
    if (!same_config(a.cfg, c))
      return detail::set_error(EXMEM_E_ALREADY,
                               "exmem_init: the heap is already set up with another configuration (call exmem_init "
                               "once, before the first allocation)");
    return EXMEM_OK;
  }
  if (int rc = validate(c); rc != EXMEM_OK) return rc;
  // Not set up yet (or a set-up failed): this configuration replaces the last
  // one, and stays in force if set-up fails, so that later allocations obey
  // it (EXMEM_REQUIRE_SECRET must never quietly become locked memory).
  a.cfg = c;
  a.configured = true;
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, [] { pthread_atfork(on_fork_prepare, on_fork_parent, on_fork_child); });
  return setup(a);
}

int arena_protection() {
  Locked l;
  Arena& a = A();
  if (ensure_ready(a) != EXMEM_OK) return EXMEM_PROT_NONE;
  return a.kind == backend::Kind::secret ? EXMEM_PROT_SECRET : EXMEM_PROT_LOCKED;
}

ThreadHeap* thread_heap() {
  if (t_heap) return t_heap;
  ThreadHeap* h = nullptr;
  {
    Locked l;
    Arena& a = A();
    if (ensure_ready(a) != EXMEM_OK) return nullptr;
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
  t_owner.heap = h;  // registers the exit hook for this thread
  return h;
}

Slab* arena_take_slab(ThreadHeap* h, size_t cls) {
  Locked l;
  Arena& a = A();
  // An orphan with room first: it holds live objects already.
  while (Slab* s = a.orphans[cls].pop()) {
    collect_remote(s);
    if (s->used == 0) {
      arena_give_slab(s);
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
  init_slab(s, h, cls, static_cast<size_t>(s - g_fast.table));
  return s;
}

void arena_give_slab_locked(Slab* s) {
  Locked l;
  arena_give_slab(s);
}

void arena_give_slab(Slab* s) {
  // pre: the arena lock is held.
  s->owner.store(nullptr, std::memory_order_relaxed);
  s->kind.store(UnitKind::slab_free, std::memory_order_relaxed);
  s->list = SlabList::free;
  A().free_slabs.push_back(s);
}

void* arena_alloc_large(size_t size) {
  if (size > (size_t{1} << 46)) {
    detail::set_error(EXMEM_E_NO_MEMORY, "an object of %zu bytes cannot be exclusive memory", size);
    return nullptr;
  }
  size_t len = round_up(size, kPage);
  Locked l;
  Arena& a = A();
  if (ensure_ready(a) != EXMEM_OK) return nullptr;
  if (check_maximum(a, len) != EXMEM_OK) return nullptr;
  backend::Region r;
  size_t first = 0, units = 0;
  if (map_extent(a, len, map_options(a), &r, &first, &units) != EXMEM_OK) return nullptr;
  Slab* s = &g_fast.table[first];
  s->start = static_cast<uint8_t*>(r.addr);
  s->large_len = len;
  s->extent_units = units;
  s->obj_size = 0;
  for (size_t i = 1; i < units - 1; ++i) g_fast.table[first + i].kind.store(UnitKind::large_tail);
  s->kind.store(UnitKind::large, std::memory_order_release);
  a.large_objects += 1;
  a.large_bytes += len;
  return r.addr;
}

void arena_free_large(Slab* s, void* p) {
  Locked l;
  Arena& a = A();
  if (s->kind.load() != UnitKind::large || p != s->start)
    detail::fatal("exmem_free(%p): double free or pointer into a large object the heap does not own", p);
  wipe(p, s->large_len);
  size_t first = static_cast<size_t>(s - g_fast.table);
  for (size_t i = 0; i < s->extent_units; ++i) g_fast.table[first + i].kind.store(UnitKind::unmapped);
  backend::unmap(backend::Region{p, s->large_len, -1});
  a.mapped.erase(reinterpret_cast<uintptr_t>(p));
  a.reserved -= s->large_len;
  a.large_objects -= 1;
  a.large_bytes -= s->large_len;
  give_extent(a, first, s->extent_units);
  s->large_len = 0;
  s->extent_units = 0;
}

bool arena_inherited(const void* p) {
  if (!g_arena) return false;
  Locked l;
  for (const auto& in : A().inherited)
    if (static_cast<size_t>(static_cast<const uint8_t*>(p) - in.base) < in.span) return true;
  return false;
}

size_t arena_usable_size(const void* p) {
  auto usable = [](const Slab* table, const uint8_t* base, const void* q) -> size_t {
    size_t off = static_cast<size_t>(static_cast<const uint8_t*>(q) - base);
    const Slab* s = &table[off >> kSlabShift];
    UnitKind k = s->kind.load(std::memory_order_acquire);
    if (k == UnitKind::large) return q == s->start ? s->large_len : 0;
    if (k != UnitKind::slab) return 0;
    size_t rel = static_cast<size_t>(static_cast<const uint8_t*>(q) - s->start);
    if (rel % s->obj_size) return 0;
    return s->obj_size - (g_fast.canaries ? 8 : 0);
  };
  if (!p) return 0;
  if (static_cast<size_t>(static_cast<const uint8_t*>(p) - g_fast.base) < g_fast.span)
    return usable(g_fast.table, g_fast.base, p);
  if (!g_arena) return 0;
  Locked l;
  for (const auto& in : A().inherited)
    if (static_cast<size_t>(static_cast<const uint8_t*>(p) - in.base) < in.span)
      return in.table ? usable(in.table, in.base, p) : 0;
  return 0;
}

int arena_stats(struct exmem_stats* out) {
  if (!out) return detail::set_error(EXMEM_E_INVALID, "exmem_stats: the output pointer is NULL");
  Locked l;
  Arena& a = A();
  *out = {};
  // Live small objects are counted from the slabs (no counter on the fast
  // paths): set bits, less those freed by other threads and not yet collected.
  size_t objects = a.large_objects, bytes = a.large_bytes;
  if (a.ready) {
    for (size_t u = 1; u < a.bump; ++u) {
      const Slab& s = g_fast.table[u];
      if (s.kind.load(std::memory_order_acquire) != UnitKind::slab) continue;
      // The two counts move at different instants while threads run: clamp.
      int64_t diff = int64_t{__atomic_load_n(&s.used, __ATOMIC_RELAXED)} -
                     int64_t{s.remote_count.load(std::memory_order_relaxed)};
      size_t live = diff > 0 ? static_cast<size_t>(diff) : 0;
      objects += live;
      bytes += live * (s.obj_size - (g_fast.canaries ? 8 : 0));
    }
  }
  // Objects in the thread heaps' magazines are free, though their bits are set.
  for (ThreadHeap* h = a.heaps; h; h = h->next_heap) {
    for (size_t c = 0; c < kClasses; ++c) {
      size_t n = __atomic_load_n(&h->mag_n[c], __ATOMIC_RELAXED);
      n = std::min(n, objects);
      objects -= n;
      size_t b = n * (kClassSize[c] - (g_fast.canaries ? 8 : 0));
      bytes -= std::min(b, bytes);
    }
  }
  out->live_objects = objects;
  out->live_bytes = bytes;
  out->reserved_bytes = a.reserved;
  out->exclusive_pages = a.kind == backend::Kind::secret ? a.reserved / kPage : 0;
  out->memlock_bytes = a.reserved;
  out->regions = a.mapped.size();  // slab regions, large objects, shared regions
  // VMAs: each mapping, each PROT_NONE piece of the reservation between and
  // around them, and the slab table.
  if (a.ready) {
    size_t vmas = a.mapped.size() + 1;  // the table
    uintptr_t cursor = reinterpret_cast<uintptr_t>(g_fast.base);
    for (const auto& [addr, len] : a.mapped) {
      if (addr > cursor) ++vmas;
      cursor = addr + len;
    }
    if (cursor < reinterpret_cast<uintptr_t>(g_fast.base) + g_fast.span) ++vmas;
    out->mappings = vmas;
  }
  out->protection = !a.ready                        ? EXMEM_PROT_NONE
                    : a.kind == backend::Kind::secret ? EXMEM_PROT_SECRET
                                                      : EXMEM_PROT_LOCKED;
  return EXMEM_OK;
}

int arena_map_shared(size_t len, int fd, int protection, exmem_shared* out) {
  Locked l;
  Arena& a = A();
  if (int rc = ensure_ready(a); rc != EXMEM_OK) return rc;
  len = round_up(len, kPage);
  // Shared regions are exclusive memory this heap holds: they count towards
  // exmem_config.maximum as regions and large objects do.
  if (int rc = check_maximum(a, len); rc != EXMEM_OK) return rc;
  size_t units = len / kSlabSize + 1, first = 0;
  if (!take_extent(a, units, &first))
    return detail::set_error(EXMEM_E_NO_MEMORY, "the heap's address-space reservation is exhausted (asked %zu bytes)",
                             len);
  void* addr = g_fast.base + first * kSlabSize;
  backend::Region r;
  int rc;
  if (fd < 0) {
    backend::MapOptions o = map_options(a);
    o.keep_fd = true;
    o.dontfork = true;
    o.shared = true;
    rc = backend::map(addr, len, o, &r);
  } else {
    rc = backend::map_fd(addr, len, fd, protection == EXMEM_PROT_SECRET ? backend::Kind::secret : backend::Kind::locked, &r);
  }
  if (rc != EXMEM_OK) {
    give_extent(a, first, units);
    return rc;
  }
  a.mapped.emplace(reinterpret_cast<uintptr_t>(r.addr), len);
  a.reserved += len;
  int prot = fd >= 0 ? protection : a.kind == backend::Kind::secret ? EXMEM_PROT_SECRET : EXMEM_PROT_LOCKED;
  *out = exmem_shared{r.addr, len, r.fd, prot};
  return EXMEM_OK;
}

int arena_unmap_shared(exmem_shared* s) {
  Locked l;
  Arena& a = A();
  auto it = a.mapped.find(reinterpret_cast<uintptr_t>(s->addr));
  if (!a.ready || it == a.mapped.end() || it->second != s->size)
    return detail::set_error(EXMEM_E_INVALID, "exmem_share_release: %p (+%zu bytes) is not a shared region of this heap",
                             s->addr, s->size);
  backend::unmap(backend::Region{s->addr, s->size, s->fd});
  a.mapped.erase(it);
  a.reserved -= s->size;
  size_t first = static_cast<size_t>(static_cast<uint8_t*>(s->addr) - g_fast.base) / kSlabSize;
  give_extent(a, first, s->size / kSlabSize + 1);
  *s = exmem_shared{nullptr, 0, -1, EXMEM_PROT_NONE};
  return EXMEM_OK;
}

}  // namespace exmem::heap
