// The platform layer: the library's only door to the kernel. Every system call
// libexmem makes goes through one function here: the backend's mappings, the
// slab table, the fork handlers, random bytes, the descriptors of sharing and
// the one line of text the library ever prints. Each function returns what the
// system call returns, with errno set on failure, or the facts it read; none of
// them allocates, and none words a message (diagnostics.hpp does that).
//
// A test-only build (the exmem_testing target, EXMEM_FAULT_INJECTION) can make
// any call listed in testing/exmem_testing.hpp fail; the shipped library has no
// such hook.
#pragma once

#include <cstddef>
#include <cstdint>
#include <sys/types.h>

struct msghdr;
struct stat;
struct statfs;
struct termios;

namespace exmem::pal {

// memfd_secret(2). pre: flags is 0 or O_CLOEXEC. ENOSYS when the kernel lacks it.
int memfd_secret(unsigned flags);
// memfd_create(2), for the locked fallback of shared regions.
int memfd_create(const char* name, unsigned flags);
// pre: fd is a file whose size was never set (memfd_secret allows one ftruncate).
int ftruncate(int fd, off_t length);
// pre: addr/len page aligned when MAP_FIXED is given.
void* mmap(void* addr, size_t len, int prot, int flags, int fd, off_t offset);
// Puts a PROT_NONE reservation over [addr, addr+len) (MAP_FIXED). Never
// injected: the library cannot go on without its guards.
void* mmap_restore(void* addr, size_t len);
int munmap(void* addr, size_t len);
int madvise(void* addr, size_t len, int advice);
int mlock(const void* addr, size_t len);
// mprotect(2), for vaults.
int mprotect(void* addr, size_t len, int prot);
int close(int fd);
int open(const char* path, int flags);
// read(2); used to fault pages in from the kernel side, where a failed fault
// becomes a short read instead of SIGBUS or the OOM killer.
ssize_t read(int fd, void* buf, size_t len);
// write(2) (a password prompt). Does not retry.
ssize_t write(int fd, const void* buf, size_t len);
// tcgetattr(3) / tcsetattr(3): turning a terminal's echo off and back on.
int tcgetattr(int fd, struct termios* out);
int tcsetattr(int fd, int when, const struct termios* t);

// Sharing: one message with a descriptor over an AF_UNIX socket. Both retry EINTR.
ssize_t sendmsg(int sock, const msghdr* msg, int flags);
ssize_t recvmsg(int sock, msghdr* msg, int flags);
int fstatfs(int fd, struct statfs* out);
int fstat(int fd, struct stat* out);

// Fills buf with n random bytes from the kernel; false when it cannot.
bool random_bytes(void* buf, size_t n);
// getrandom(2) with flags 0: may return fewer bytes than asked (large n, a signal).
ssize_t getrandom(void* buf, size_t n);

// pthread_atfork(3). Returns 0 or an errno value. pre: called once per process
// (handlers registered twice run twice).
int at_fork(void (*prepare)(), void (*parent)(), void (*child)());

// RLIMIT_MEMLOCK as the kernel enforces it; kUnlimited for RLIM_INFINITY.
inline constexpr uint64_t kUnlimited = UINT64_MAX;
struct Limit {
  uint64_t soft = kUnlimited;
  uint64_t hard = kUnlimited;
};
Limit memlock_limit();

// The message sink: writes n bytes to standard error, unbuffered and without
// allocating (usable while the heap is broken).
void write_stderr(const char* text, size_t n);

}  // namespace exmem::pal
