// The only door from the library to the kernel. Every system call the backend
// makes goes through one function here, so that failures can be reasoned about
// (and injected) in one place. Each returns what the system call returns, with
// errno set on failure; none of them allocates.
#pragma once

#include <cstddef>
#include <sys/types.h>

namespace exmem::sys {

// memfd_secret(2). pre: flags is 0 or O_CLOEXEC. ENOSYS when the kernel lacks it.
int memfd_secret(unsigned flags);
// pre: fd is a file whose size was never set (memfd_secret allows one ftruncate).
int ftruncate(int fd, off_t length);
// pre: addr/len page aligned when MAP_FIXED is given.
void* mmap(void* addr, size_t len, int prot, int flags, int fd, off_t offset);
int munmap(void* addr, size_t len);
int mprotect(void* addr, size_t len, int prot);
int madvise(void* addr, size_t len, int advice);
int mlock(const void* addr, size_t len);
int close(int fd);
int open(const char* path, int flags);
// read(2); used to fault pages in from the kernel side, where a failed fault
// becomes a short read instead of SIGBUS or the OOM killer.
ssize_t read(int fd, void* buf, size_t len);

}  // namespace exmem::sys

namespace exmem::sys {
// memfd_create(2), for the locked fallback of shared regions.
int memfd_create(const char* name, unsigned flags);
}  // namespace exmem::sys
