// The arena: the process-wide side of the heap, behind one lock and off every
// fast path. Owns the address-space reservation, the slab table, the regions
// (asked of backend/), large objects, orphaned and free slabs, the registry of
// thread heaps, statistics, shared regions and fork handling. Its units are
// listed in arena_state.hpp. It speaks internal types only (Settings, Stats,
// backend::Kind); the C API converts to and from the public ones.
#pragma once

#include <cstddef>

#include "backend/backend.hpp"
#include "heap/heap.hpp"
#include "heap/settings.hpp"

namespace exmem::heap {

// Sets the heap up with s if it is not set up yet. Once it is, a request for
// the same settings succeeds and another one is EXMEM_E_ALREADY. Returns
// EXMEM_OK or an enum exmem_error (with the last error set).
int arena_init(const Settings& s);
// Sets up with defaults if needed; the backend in use, or Kind::none.
backend::Kind arena_protection();

// A heap for the calling thread, created on first use (nullptr on failure).
ThreadHeap* thread_heap();

// Under the arena lock: a slab of class cls for h (an orphan, a free unit, or a
// new region). nullptr with the last error set when no memory can be had.
Slab* arena_take_slab(ThreadHeap* h, size_t cls);
// Gives an empty slab (used == 0, not in any list) back to the arena: the
// first takes the arena lock, the second is called with it held.
void arena_give_slab(Slab* s);
void arena_give_slab_locked(Slab* s);

void* arena_alloc_large(size_t size);
void arena_free_large(Slab* s, void* p);

// True when p lies in memory inherited from the parent in EXMEM_FORK_SHARE mode.
bool arena_inherited(const void* p);
// Usable size of p, or 0 when the heap does not own p.
size_t arena_usable_size(const void* p);

struct Stats {
  size_t live_objects = 0;
  size_t live_bytes = 0;
  size_t mapped_bytes = 0;  // exclusive bytes mapped and faulted in (all locked)
  size_t mappings = 0;      // VMAs: mappings, the reservation's gaps, the table
  size_t regions = 0;       // slab regions, large objects, shared regions
  backend::Kind kind = backend::Kind::none;  // none: not set up
};
Stats arena_stats();

// Maps a shared region (exmem_share_*) inside the reservation, outside the heap.
// fd < 0: a new region of the heap's kind; else the received fd, of kind `kind`.
// On success *out holds the mapping (its fd kept open) and *kind_out its kind.
int arena_map_shared(size_t len, int fd, backend::Kind kind, backend::Region* out, backend::Kind* kind_out);
// Unmaps a shared region of this heap and closes its descriptor.
int arena_unmap_shared(const backend::Region& r);

// Folds the remote frees of s into its bitmap (owner or arena lock held).
void collect_remote(Slab* s);

}  // namespace exmem::heap
