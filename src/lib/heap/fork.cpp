// Fork: the arena lock is held across fork() so that the child inherits a
// consistent arena; the child then forgets what it cannot use (the parent's
// other threads' heaps and, in EXMEM_FORK_PRIVATE mode, the parent's regions,
// which MADV_DONTFORK kept out of it). Shared regions and vaults are kept out
// of children in both modes; a vault handle the child inherited is refused
// (fork_generation()).
#include <atomic>
#include <new>
#include <utility>

#include "heap/arena_state.hpp"
#include "pal/pal.hpp"

namespace exmem::heap {

namespace {

std::atomic<uint64_t> g_fork_generation{0};

void on_fork_prepare() { pthread_mutex_lock(&g_arena_lock); }
void on_fork_parent() { pthread_mutex_unlock(&g_arena_lock); }

void on_fork_child() {
  // Only the forking thread exists here, and it holds the lock.
  g_fork_generation.fetch_add(1, std::memory_order_relaxed);
  Arena& a = arena();
  if (a.ready) {
    if (a.settings.fork_share) {
      // The parent's objects stay mapped and shared; this process only reads and
      // writes them, and allocates from reservations of its own.
      a.inherited.push_back({g_layout.base, g_layout.span, g_layout.table});
      // Shared regions and vaults (MADV_DONTFORK) left holes in the inherited
      // reservation: reserve them again, so that no mapping of this process
      // lands where the parent keeps a secret.
      for (const auto& [addr, m] : a.mapped)
        if (m.use == Use::shared || m.use == Use::received || m.use == Use::vault)
          pal::mmap_restore(reinterpret_cast<void*>(addr), m.len);
    } else {
      // MADV_DONTFORK kept the regions out of this process. The address range
      // stays reserved (PROT_NONE, one VMA) so that no new object ever takes an
      // address the parent used: code run in the child (destructors, say) may
      // still free the parent's pointers, which is then a no-op.
      pal::mmap_restore(g_layout.base, g_layout.span);
      pal::munmap(g_layout.table, a.table_bytes);
      a.inherited.push_back({g_layout.base, g_layout.span, nullptr});
    }
  }
  // The parent's other threads do not exist here: their heaps can go.
  forget_thread_heaps(a);
  Settings settings = a.settings;
  bool configured = a.configured, announced = a.announced;
  auto inherited = std::move(a.inherited);
  a.~Arena();
  new (&a) Arena();
  a.settings = settings;
  a.configured = configured;
  a.announced = announced;
  a.inherited = std::move(inherited);
  g_layout = Layout{};
  pthread_mutex_unlock(&g_arena_lock);
}

}  // namespace

uint64_t fork_generation() { return g_fork_generation.load(std::memory_order_relaxed); }

int register_fork_handlers() { return pal::at_fork(on_fork_prepare, on_fork_parent, on_fork_child); }

}  // namespace exmem::heap
