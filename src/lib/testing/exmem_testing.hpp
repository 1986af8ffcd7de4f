// Test hooks of libexmem, in the exmem_testing library only (the same sources
// built with EXMEM_FAULT_INJECTION); the shipped libexmem has none of them.
//
// Fault injection makes a system call of the platform layer (pal/pal.hpp) fail
// with a chosen errno. reset_heap() gives the process a heap that was never set
// up, so that one process can try set-up orders again and again.
#pragma once

#include <cstdint>

namespace exmem::testing {

enum class Call : int {
  memfd_secret,
  memfd_create,
  ftruncate,
  mmap,
  munmap,
  madvise,
  mlock,
  close,
  open,
  read,
  sendmsg,
  recvmsg,
  fstatfs,
  mprotect,
  count_
};

// Fails the nth call of c from now (nth >= 1); with every, that call and all
// later ones. err == 0 removes the fault.
void inject(Call c, int err, uint64_t nth, bool every);
void clear_faults();
// Calls of c made since the last clear_faults() (to aim at "the n-th call").
uint64_t calls(Call c);
const char* call_name(Call c);

// True (with errno set to the injected error) when this call of c is to fail.
// Called by the platform layer of the test build.
bool injected(Call c);

// Takes the heap back to "never set up": unmaps the reservation, its regions and
// the slab table, and forgets the configuration. The fork handlers stay
// registered (they are registered once per process, whatever happens).
// pre: no live object or shared region, and no thread but the caller holds a
// thread heap (threads that allocated have exited).
void reset_heap();

}  // namespace exmem::testing
