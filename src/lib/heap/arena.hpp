// The arena: the process-wide side of the heap, behind one lock and off every
// fast path. Owns the address-space reservation, the slab table, the regions
// (asked of backend/), large objects, orphaned and free slabs, the registry of
// thread heaps, statistics, shared regions and fork handling. Its units are
// listed in arena_state.hpp. It speaks internal types only (Settings, Stats,
// backend::Kind); the C API converts to and from the public ones.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "backend/backend.hpp"
#include "heap/heap.hpp"
#include "heap/settings.hpp"

namespace exmem::heap {

// What a mapping of the reservation is used for.
enum class Use : uint8_t {
  region,    // a region of slabs
  large,     // one large object
  shared,    // a shared region made here (exmem_share_create)
  received,  // a shared region received from another process (exmem_share_recv)
  vault      // a vault (exmem_vault_*)
};

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
  size_t secret_bytes = 0;  // of which memfd_secret memory
  size_t fallback_bytes = 0;  // of which locked memory because EXMEM_PREFER_SECRET fell back
  size_t mappings = 0;      // VMAs: mappings, the reservation's gaps, the table
  size_t regions = 0;       // slab regions, large objects, shared regions, vaults
  size_t vaults = 0;        // live vaults
  backend::Kind kind = backend::Kind::none;  // none: not set up
};
Stats arena_stats();

// Maps a region apart from the slabs, inside the reservation between guard
// units, counted towards the maximum and never inherited by a child
// (MADV_DONTFORK, whatever the fork mode):
//   Use::shared    a new shared region of the heap's kind, its fd kept open;
//   Use::received  the received file fd, of kind `kind`;
//   Use::vault     a new vault of the heap's kind, PROT_NONE when this returns;
//                  access points at the vault's open access, which arena_find()
//                  reports (it must outlive the mapping).
// On success *out holds the mapping and *kind_out its kind.
int arena_map_apart(Use use, size_t len, int fd, backend::Kind kind, const std::atomic<int>* access,
                    backend::Region* out, backend::Kind* kind_out);
// Unmaps a region mapped by arena_map_apart for `use` (Use::shared also takes a
// received one) and closes its descriptor. EXMEM_E_INVALID, naming `who`, when
// r is no such region of this heap.
int arena_unmap_apart(Use use, const backend::Region& r, const char* who);

// What p points into, found without touching the memory at p (any pointer may
// be asked about). found: a live heap object (small or large; the calling
// thread's cache of freed objects is looked at, other threads' caches are not),
// a shared region or a vault of this heap; then [start, start + len) is that
// object's usable bytes or the region's, kind its backend, and access (vaults)
// the access the vault is open for now (0: closed).
struct Found {
  bool found = false;
  Use use = Use::region;
  const uint8_t* start = nullptr;
  size_t len = 0;
  backend::Kind kind = backend::Kind::none;
  int access = 0;
};
Found arena_find(const void* p);

// How many fork() children deep this process is (incremented in every child
// by the fork handler): a handle made by an ancestor is not usable here.
uint64_t fork_generation();

// Folds the remote frees of s into its bitmap (owner or arena lock held).
void collect_remote(Slab* s);

}  // namespace exmem::heap
