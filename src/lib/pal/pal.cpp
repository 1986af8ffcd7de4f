#include "pal/pal.hpp"

#include <cerrno>
#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <termios.h>
#include <unistd.h>

#include "host/secret.hpp"

// The test build fails the calls it is told to; the shipped one never asks.
#ifdef EXMEM_FAULT_INJECTION
#include "testing/exmem_testing.hpp"
#define EXMEM_INJECTED(call) ::exmem::testing::injected(::exmem::testing::Call::call)
#else
#define EXMEM_INJECTED(call) false
#endif

namespace exmem::pal {

int memfd_secret(unsigned flags) {
  if (EXMEM_INJECTED(memfd_secret)) return -1;
  return static_cast<int>(::syscall(host::kSysMemfdSecret, flags));
}
int memfd_create(const char* name, unsigned flags) {
  if (EXMEM_INJECTED(memfd_create)) return -1;
  return ::memfd_create(name, flags);
}
int ftruncate(int fd, off_t length) {
  if (EXMEM_INJECTED(ftruncate)) return -1;
  return ::ftruncate(fd, length);
}
void* mmap(void* addr, size_t len, int prot, int flags, int fd, off_t offset) {
  if (EXMEM_INJECTED(mmap)) return MAP_FAILED;
  return ::mmap(addr, len, prot, flags, fd, offset);
}
void* mmap_restore(void* addr, size_t len) {
  return ::mmap(addr, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
}
int munmap(void* addr, size_t len) {
  if (EXMEM_INJECTED(munmap)) return -1;
  return ::munmap(addr, len);
}
int madvise(void* addr, size_t len, int advice) {
  if (EXMEM_INJECTED(madvise)) return -1;
  return ::madvise(addr, len, advice);
}
int mlock(const void* addr, size_t len) {
  if (EXMEM_INJECTED(mlock)) return -1;
  return ::mlock(addr, len);
}
int mprotect(void* addr, size_t len, int prot) {
  if (EXMEM_INJECTED(mprotect)) return -1;
  return ::mprotect(addr, len, prot);
}
int close(int fd) {
  if (EXMEM_INJECTED(close)) {
    ::close(fd);  // a failed close still releases the descriptor on Linux
    return -1;
  }
  return ::close(fd);
}
int open(const char* path, int flags) {
  if (EXMEM_INJECTED(open)) return -1;
  return ::open(path, flags);
}
ssize_t read(int fd, void* buf, size_t len) {
  if (EXMEM_INJECTED(read)) return -1;
  return ::read(fd, buf, len);
}

ssize_t write(int fd, const void* buf, size_t len) { return ::write(fd, buf, len); }
int tcgetattr(int fd, struct termios* out) { return ::tcgetattr(fd, out); }
int tcsetattr(int fd, int when, const struct termios* t) { return ::tcsetattr(fd, when, t); }

ssize_t sendmsg(int sock, const msghdr* msg, int flags) {
  if (EXMEM_INJECTED(sendmsg)) return -1;
  ssize_t n;
  do n = ::sendmsg(sock, msg, flags);
  while (n < 0 && errno == EINTR);
  return n;
}
ssize_t recvmsg(int sock, msghdr* msg, int flags) {
  if (EXMEM_INJECTED(recvmsg)) return -1;
  ssize_t n;
  do n = ::recvmsg(sock, msg, flags);
  while (n < 0 && errno == EINTR);
  return n;
}
int fstatfs(int fd, struct statfs* out) {
  if (EXMEM_INJECTED(fstatfs)) return -1;
  return ::fstatfs(fd, out);
}
int fstat(int fd, struct stat* out) { return ::fstat(fd, out); }

bool random_bytes(void* buf, size_t n) {
  return ::getrandom(buf, n, 0) == static_cast<ssize_t>(n);
}

ssize_t getrandom(void* buf, size_t n) { return ::getrandom(buf, n, 0); }

int at_fork(void (*prepare)(), void (*parent)(), void (*child)()) { return ::pthread_atfork(prepare, parent, child); }

Limit memlock_limit() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_MEMLOCK, &rl) != 0) return {};
  auto fact = [](rlim_t v) { return v == RLIM_INFINITY ? kUnlimited : static_cast<uint64_t>(v); };
  return {fact(rl.rlim_cur), fact(rl.rlim_max)};
}

void write_stderr(const char* text, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(STDERR_FILENO, text, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    text += w;
    n -= static_cast<size_t>(w);
  }
}

}  // namespace exmem::pal
