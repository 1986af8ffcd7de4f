// reset_heap(): the test hook that takes the heap back to "never set up".
#include <new>

#include "exmem_testing.hpp"
#include "heap/arena_state.hpp"

namespace exmem::testing {

void reset_heap() {
  using namespace exmem::heap;
  ArenaLock l;
  Arena& a = arena();
  if (a.ready) release_reservation(a);
  forget_thread_heaps(a);
  a.~Arena();
  new (&a) Arena();
}

}  // namespace exmem::testing
