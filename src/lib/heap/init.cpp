// Set-up: one path, whatever comes first (exmem_init, an allocation,
// exmem_protection, exmem_share_*). The fork handlers are registered under one
// pthread_once before the first set-up, however many set-ups fail.
#include <pthread.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <new>

#include <exmem/exmem.h>

#include "diagnostics.hpp"
#include "error.hpp"
#include "heap/arena.hpp"
#include "heap/arena_state.hpp"
#include "pal/pal.hpp"

namespace exmem::heap {

Layout g_layout;
constinit ThreadHeap g_no_heap{};
constinit thread_local ThreadHeap* t_heap __attribute__((tls_model("initial-exec"))) = &g_no_heap;
pthread_mutex_t g_arena_lock = PTHREAD_MUTEX_INITIALIZER;

namespace {

alignas(Arena) unsigned char g_arena_storage[sizeof(Arena)];
Arena* g_arena = nullptr;  // constructed on first use, never destroyed

pthread_once_t g_fork_handlers_once = PTHREAD_ONCE_INIT;
int g_fork_handlers_error = 0;  // written once, under g_fork_handlers_once

// Chooses the backend the settings allow. EXMEM_OK or EXMEM_E_NO_SECRET.
int choose_backend(Arena& a) {
  const Settings& s = a.settings;
  if (s.source == Source::locked_only) {
    a.kind = backend::Kind::locked;
  } else if (int e = backend::probe_secret(); e == 0) {
    a.kind = backend::Kind::secret;
  } else if (s.source == Source::require_secret) {
    return diagnostics::secret_required(e);
  } else {
    a.kind = backend::Kind::locked;
    if (!s.quiet && !a.announced) {
      diagnostics::announce_fallback(e);
      a.announced = true;
    }
  }
  return EXMEM_OK;
}

// The reservation, the slab table and the canary key.
int setup(Arena& a) {
  if (a.ready) return EXMEM_OK;
  if (int rc = choose_backend(a); rc != EXMEM_OK) return rc;
  const Settings& s = a.settings;

  // Address space can be limited (RLIMIT_AS, tools like valgrind): take what
  // is given, down to 64 MiB.
  size_t span = s.span;
  backend::Failure why;
  void* base = backend::reserve_address_space(span, &why);
  while (!base && span > (size_t{64} << 20)) {
    span /= 2;
    base = backend::reserve_address_space(span, &why);
  }
  if (!base) return diagnostics::mapping_failed(why, span, a.mapped_bytes);
  size_t nunits = span / kSlabSize;
  size_t table_bytes = round_up(nunits * sizeof(Slab), kPage);
  void* table = pal::mmap(nullptr, table_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                          -1, 0);
  if (table == MAP_FAILED) {
    int e = errno;
    backend::release_address_space(base, span);
    return detail::set_error(EXMEM_E_NO_MEMORY, "cannot map the heap's %zu-byte slab table: %s", table_bytes,
                             std::strerror(e));
  }
  // Ordinary memory, but nothing a core dump needs (and up to a GiB of it).
  pal::madvise(table, table_bytes, MADV_DONTDUMP);
  // Slab records are all-zero bytes when unused: unmapped kind, no owner.
  g_layout.base = static_cast<uint8_t*>(base);
  g_layout.span = span;
  g_layout.table = static_cast<Slab*>(table);
  g_layout.canaries = s.canaries;
  uint64_t key = 0;
  if (!pal::random_bytes(&key, sizeof key)) key = reinterpret_cast<uintptr_t>(&key) * 0x2545F4914F6CDD1Dull;
  g_layout.canary_key = key;
  a.nunits = nunits;
  a.table_bytes = table_bytes;
  a.bump = 1;
  a.ready = true;

  if (s.reserve) {
    if (int rc = grow(a, s.reserve); rc != EXMEM_OK) {
      // Nothing half-made stays behind: the next call may try again.
      release_reservation(a);
      return rc;
    }
  }
  return EXMEM_OK;
}

}  // namespace

Arena& arena() {
  if (!g_arena) g_arena = new (g_arena_storage) Arena();
  return *g_arena;
}

bool arena_exists() { return g_arena != nullptr; }

void release_reservation(Arena& a) {
  pal::munmap(g_layout.table, a.table_bytes);
  backend::release_address_space(g_layout.base, g_layout.span);
  g_layout = Layout{};
  a.free_slabs.clear();
  a.free_extents.clear();
  for (List& l : a.orphans) l.head = nullptr;
  a.mapped.clear();
  a.mapped_bytes = a.region_bytes = a.regions = 0;
  a.large_objects = a.large_bytes = 0;
  a.vaults = 0;
  a.nunits = a.table_bytes = 0;
  a.bump = 1;
  a.ready = false;
}

int ensure_initialized(Arena& a) {
  if (!a.configured) {
    // The defaults, with EXMEM_POLICY and EXMEM_FORK applied; a bad value
    // refuses set-up (and every allocation) with the variable named.
    if (int rc = resolve_settings(nullptr, &a.settings); rc != EXMEM_OK) return rc;
    a.configured = true;
  }
  pthread_once(&g_fork_handlers_once, [] { g_fork_handlers_error = register_fork_handlers(); });
  if (int e = g_fork_handlers_error)
    return detail::set_error(EXMEM_E_SYSTEM,
                             "cannot register the heap's fork handlers (pthread_atfork: %s): a forked child would "
                             "inherit a heap it cannot use",
                             std::strerror(e));
  return setup(a);
}

int arena_init(const Settings& s) {
  ArenaLock l;
  Arena& a = arena();
  if (a.ready) {
    if (!a.settings.same_request(s))
      return detail::set_error(EXMEM_E_ALREADY,
                               "exmem_init: the heap is already set up with another configuration (call exmem_init "
                               "once, before the first allocation)");
    return EXMEM_OK;
  }
  // Not set up yet (or a set-up failed): these settings replace the last ones,
  // and stay in force if set-up fails, so that later allocations obey them
  // (EXMEM_REQUIRE_SECRET must never quietly become locked memory).
  a.settings = s;
  a.configured = true;
  return ensure_initialized(a);
}

backend::Kind arena_protection() {
  ArenaLock l;
  Arena& a = arena();
  if (ensure_initialized(a) != EXMEM_OK) return backend::Kind::none;
  return a.kind;
}

}  // namespace exmem::heap
