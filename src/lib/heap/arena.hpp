// The arena: the process-wide side of the heap, behind one lock and off every
// fast path. Owns the address-space reservation, the slab table, the regions
// (asked of backend/), large objects, orphaned and free slabs, the registry of
// thread heaps, configuration, statistics and fork handling.
#pragma once

#include <cstddef>

#include <exmem/exmem.h>

#include "backend/backend.hpp"
#include "heap/heap.hpp"

namespace exmem::heap {

// Sets up the arena with cfg (nullptr: defaults) if it is not set up yet.
// Returns EXMEM_OK or an enum exmem_error (with the last error set).
int arena_init(const exmem_config* cfg);
// Sets up with defaults if needed; returns the protection level or EXMEM_PROT_NONE.
int arena_protection();

// A heap for the calling thread, created on first use (nullptr on failure).
ThreadHeap* thread_heap();

// Under the arena lock: a slab of class cls for h (an orphan, a free unit, or a
// new region). nullptr with the last error set when no memory can be had.
Slab* arena_take_slab(ThreadHeap* h, size_t cls);
// Gives an empty slab (used == 0, not in any list) back to the arena; the first
// with the lock held, the second takes it.
void arena_give_slab(Slab* s);
void arena_give_slab_locked(Slab* s);

void* arena_alloc_large(size_t size);
void arena_free_large(Slab* s, void* p);

// True when p lies in memory inherited from the parent in EXMEM_FORK_SHARE mode.
bool arena_inherited(const void* p);
// Usable size of p, or 0 when the heap does not own p.
size_t arena_usable_size(const void* p);

int arena_stats(struct exmem_stats* out);

// Maps a shared region (exmem_share_*) inside the reservation, outside the heap.
// fd < 0: a new region; else map the received fd, whose protection level is given.
int arena_map_shared(size_t len, int fd, int protection, exmem_shared* out);
int arena_unmap_shared(exmem_shared* s);

// Folds the remote frees of s into its bitmap (owner or arena lock held).
void collect_remote(Slab* s);

}  // namespace exmem::heap
