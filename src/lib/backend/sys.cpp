#include "backend/sys.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_memfd_secret
#define SYS_memfd_secret 447
#endif

namespace exmem::sys {

int memfd_secret(unsigned flags) { return static_cast<int>(::syscall(SYS_memfd_secret, flags)); }
int ftruncate(int fd, off_t length) { return ::ftruncate(fd, length); }
void* mmap(void* addr, size_t len, int prot, int flags, int fd, off_t offset) {
  return ::mmap(addr, len, prot, flags, fd, offset);
}
int munmap(void* addr, size_t len) { return ::munmap(addr, len); }
int mprotect(void* addr, size_t len, int prot) { return ::mprotect(addr, len, prot); }
int madvise(void* addr, size_t len, int advice) { return ::madvise(addr, len, advice); }
int mlock(const void* addr, size_t len) { return ::mlock(addr, len); }
int close(int fd) { return ::close(fd); }
int open(const char* path, int flags) { return ::open(path, flags); }
ssize_t read(int fd, void* buf, size_t len) { return ::read(fd, buf, len); }

}  // namespace exmem::sys

namespace exmem::sys {
int memfd_create(const char* name, unsigned flags) { return ::memfd_create(name, flags); }
}  // namespace exmem::sys
