// The arena's state, shared by its units (and by nothing else):
//   init.cpp      settings, the reservation and the slab table, set-up
//   extent.cpp    extents of the reservation, the cap, mapping into an extent
//   region.cpp    slab regions (grow), slabs handed to and from thread heaps,
//                 large objects
//   registry.cpp  the thread heaps: creation, retirement at thread exit
//   fork.cpp      the fork handlers
//   stats.cpp     statistics, VMA accounting, usable size, inherited ranges,
//                 what a pointer points into
//   apart.cpp     mappings apart from the slabs: shared regions and vaults
// Every field of Arena is guarded by the arena lock (ArenaLock).
#pragma once

#include <pthread.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <vector>

#include "backend/backend.hpp"
#include "heap/arena.hpp"
#include "heap/heap.hpp"
#include "heap/settings.hpp"

namespace exmem::heap {

// One mapping of the reservation (a region of slabs, a large object, a shared
// region or a vault), recorded for VMA accounting, statistics and arena_find().
struct Mapping {
  size_t len = 0;  // bytes mapped (page multiple)
  Use use = Use::region;
  backend::Kind kind = backend::Kind::none;
  const std::atomic<int>* access = nullptr;  // a vault's open access (0: closed); nullptr otherwise
};

struct Arena {
  bool configured = false;  // settings hold the configuration to use
  bool ready = false;       // reservation and table exist
  Settings settings;
  backend::Kind kind = backend::Kind::none;
  size_t nunits = 0;
  size_t table_bytes = 0;
  size_t bump = 1;  // next never-used unit; unit 0 stays a guard
  std::map<size_t, size_t> free_extents;  // first unit -> units, for reuse
  std::vector<Slab*> free_slabs;          // mapped units not assigned to a class
  List orphans[kClasses];
  std::map<uintptr_t, Mapping> mapped;  // our mappings, by address
  size_t mapped_bytes = 0;              // bytes mapped (regions + large + shared + vaults)
  size_t region_bytes = 0;             // bytes of slab regions
  size_t regions = 0;
  ThreadHeap* heaps = nullptr;  // live thread heaps
  ThreadHeap* idle = nullptr;   // heaps of exited threads, for reuse
  size_t large_objects = 0;  // live large objects and their bytes
  size_t large_bytes = 0;
  size_t vaults = 0;         // live vaults
  bool announced = false;  // the fallback to locked memory was said on stderr
  struct Inherited {
    uint8_t* base;
    size_t span;
    Slab* table;
  };
  std::vector<Inherited> inherited;  // the parents' reservations (table: nullptr when not mapped here)
};

extern pthread_mutex_t g_arena_lock;

// Holds the arena lock for its scope.
class ArenaLock {
 public:
  ArenaLock() { pthread_mutex_lock(&g_arena_lock); }
  ~ArenaLock() { pthread_mutex_unlock(&g_arena_lock); }
  ArenaLock(const ArenaLock&) = delete;
  ArenaLock& operator=(const ArenaLock&) = delete;
};

// The arena, constructed on first use and never destroyed. pre: lock held.
Arena& arena();
// Whether arena() was ever called (no lock needed to ask).
bool arena_exists();

inline size_t round_up(size_t v, size_t a) { return (v + a - 1) / a * a; }

// init.cpp. Sets the heap up with the arena's settings (the defaults when none
// were given), registering the fork handlers first, once per process.
// pre: lock held. Returns EXMEM_OK or an enum exmem_error (last error set).
int ensure_initialized(Arena& a);
// Unmaps the reservation (and all inside it) and the slab table; the arena
// forgets its extents, slabs and mappings. pre: lock held, a.ready.
void release_reservation(Arena& a);

// extent.cpp. pre: lock held.
bool take_extent(Arena& a, size_t units, size_t* first);
void give_extent(Arena& a, size_t first, size_t units);
// EXMEM_OK when len more bytes stay within the configured maximum.
int check_maximum(const Arena& a, size_t len);
// Maps len bytes at a fresh extent followed by at least one guard unit, and
// records the mapping as used for `use`.
int map_extent(Arena& a, size_t len, Use use, const backend::MapOptions& opt, backend::Region* r, size_t* first,
               size_t* units);
// Records r, made at a fresh extent, as a mapping used for `use`, of kind `kind`.
void record_mapping(Arena& a, const backend::Region& r, Use use, backend::Kind kind,
                    const std::atomic<int>* access = nullptr);
// Unmaps a mapping made by map_extent (or a shared region) and frees its extent.
void unmap_extent(Arena& a, const backend::Region& r, size_t units);
backend::MapOptions map_options(const Arena& a);

// region.cpp. pre: lock held.
int grow(Arena& a, size_t at_least);

// registry.cpp. pre: lock held; only the calling thread is left (in a forked
// child, or by the test hook). Frees every thread heap record.
void forget_thread_heaps(Arena& a);

// fork.cpp. Registers the fork handlers; 0 or the errno of pthread_atfork.
// pre: called once per process (ensure_initialized does).
int register_fork_handlers();

}  // namespace exmem::heap
