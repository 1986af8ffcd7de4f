// The only door from the library to the kernel. Every system call the backend
// makes goes through one function here, so that failures can be reasoned about
// and injected in one place. Each returns what the system call returns, with
// errno set on failure; none of them allocates.
#pragma once

#include <cstddef>
#include <cstdint>
#include <sys/types.h>

namespace exmem::sys {

// memfd_secret(2). pre: flags is 0 or O_CLOEXEC. ENOSYS when the kernel lacks it.
int memfd_secret(unsigned flags);
// memfd_create(2), for the locked fallback of shared regions.
int memfd_create(const char* name, unsigned flags);
// pre: fd is a file whose size was never set (memfd_secret allows one ftruncate).
int ftruncate(int fd, off_t length);
// pre: addr/len page aligned when MAP_FIXED is given.
void* mmap(void* addr, size_t len, int prot, int flags, int fd, off_t offset);
// mmap used only to put the PROT_NONE reservation back; never injected, since
// the library cannot go on without its guards.
void* mmap_restore(void* addr, size_t len);
int munmap(void* addr, size_t len);
int madvise(void* addr, size_t len, int advice);
int mlock(const void* addr, size_t len);
int close(int fd);
int open(const char* path, int flags);
// read(2); used to fault pages in from the kernel side, where a failed fault
// becomes a short read instead of SIGBUS or the OOM killer.
ssize_t read(int fd, void* buf, size_t len);

// Fault injection, for tests: make a call fail with errno `err`.
enum class Call : int { memfd_secret, memfd_create, ftruncate, mmap, munmap, madvise, mlock, close, open, read, count_ };
// Fails the nth call of c from now (nth >= 1); with every, that call and all
// later ones. err == 0 removes the fault.
void inject(Call c, int err, uint64_t nth, bool every);
void clear_faults();
// Calls of c made since the last clear_faults() (to aim at "the n-th call").
uint64_t calls(Call c);
const char* call_name(Call c);

}  // namespace exmem::sys
