// Secrets in without a plaintext copy elsewhere: reading a descriptor or a
// terminal line straight into exmem memory, random bytes, adopting a buffer
// (copy, then wipe the original), and comparing in constant time. The
// destination of every input is checked with the lookup exmem_is_exclusive()
// uses (heap::arena_find): it must lie inside one live heap object, a vault
// open for writing, or a shared region of this process.
#include <exmem/exmem.h>

#include <fcntl.h>
#include <termios.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

#include "error.hpp"
#include "heap/arena.hpp"
#include "heap/heap.hpp"
#include "pal/pal.hpp"

using namespace exmem;

namespace {

const char* what_holds(heap::Use use) {
  switch (use) {
    case heap::Use::vault:
      return "vault";
    case heap::Use::shared:
    case heap::Use::received:
      return "shared region";
    default:
      return "object";
  }
}

// EXMEM_OK when size bytes at dst are exmem memory this process may write;
// else EXMEM_E_INVALID with the last error saying why, naming `who`.
int check_destination(const char* who, const void* dst, size_t size) {
  heap::Found f = heap::arena_find(dst);
  if (!f.found)
    return detail::set_error(EXMEM_E_INVALID,
                             "%s: the destination %p is not exmem memory (expected a live heap object, a vault open "
                             "for writing or a shared region of this process)",
                             who, dst);
  size_t room = f.len - static_cast<size_t>(static_cast<const uint8_t*>(dst) - f.start);
  if (size > room)
    return detail::set_error(EXMEM_E_INVALID, "%s: %zu bytes do not fit at %p: the %s holding it has %zu bytes from there",
                             who, size, dst, what_holds(f.use), room);
  if (f.use == heap::Use::vault && f.access != EXMEM_VAULT_READ_WRITE)
    return detail::set_error(EXMEM_E_INVALID,
                             "%s: the destination %p lies in a vault that is not open for writing (open it with "
                             "EXMEM_VAULT_READ_WRITE first)",
                             who, dst);
  return EXMEM_OK;
}

// Writes all n bytes (the prompt), retrying EINTR and short writes.
bool write_all(int fd, const char* p, size_t n) {
  while (n) {
    ssize_t w = pal::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

int set_terminal(int fd, const termios& t) {
  int rc;
  do rc = pal::tcsetattr(fd, TCSAFLUSH, &t);
  while (rc != 0 && errno == EINTR);
  return rc;
}

}  // namespace

extern "C" {

ssize_t exmem_read(int fd, void* dst, size_t size) {
  if (check_destination("exmem_read", dst, size) != EXMEM_OK) {
    errno = EINVAL;
    return -1;
  }
  auto* d = static_cast<uint8_t*>(dst);
  size_t done = 0;
  while (done < size) {
    ssize_t n = pal::read(fd, d + done, size - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      heap::wipe(d, done);
      detail::set_error(EXMEM_E_SYSTEM,
                        "exmem_read: reading descriptor %d failed after %zu of %zu bytes: %s (what was read is wiped)",
                        fd, done, size, std::strerror(e));
      errno = e;
      return -1;
    }
    if (n == 0) break;  // end of file
    done += static_cast<size_t>(n);
  }
  return static_cast<ssize_t>(done);
}

ssize_t exmem_read_password(int tty_fd, const char* prompt, void* dst, size_t size) {
  if (size == 0) {
    detail::set_error(EXMEM_E_INVALID, "exmem_read_password: size 0 leaves no room for the terminating NUL");
    errno = EINVAL;
    return -1;
  }
  if (check_destination("exmem_read_password", dst, size) != EXMEM_OK) {
    errno = EINVAL;
    return -1;
  }
  int fd = tty_fd;
  if (fd < 0) {
    fd = pal::open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
      int e = errno;
      detail::set_error(e == ENXIO ? EXMEM_E_INVALID : EXMEM_E_SYSTEM,
                        "exmem_read_password: cannot open /dev/tty: %s%s", std::strerror(e),
                        e == ENXIO ? " (the process has no controlling terminal)" : "");
      errno = e == ENXIO ? ENOTTY : e;
      return -1;
    }
  }
  auto done = [&](ssize_t rc) {
    if (fd != tty_fd) pal::close(fd);
    return rc;
  };
  termios saved{};
  if (pal::tcgetattr(fd, &saved) != 0) {
    int e = errno;
    detail::set_error(e == ENOTTY ? EXMEM_E_INVALID : EXMEM_E_SYSTEM,
                      "exmem_read_password: descriptor %d is not a usable terminal: %s", fd, std::strerror(e));
    done(0);
    errno = e;
    return -1;
  }
  termios quiet = saved;
  quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO | ECHOE | ECHOK | ECHONL);
  if (set_terminal(fd, quiet) != 0) {
    int e = errno;
    detail::set_error(EXMEM_E_SYSTEM, "exmem_read_password: cannot turn echo off on descriptor %d: %s", fd,
                      std::strerror(e));
    set_terminal(fd, saved);  // whatever part of it took effect
    done(0);
    errno = e;
    return -1;
  }

  // From here on every path restores `saved`.
  auto* d = static_cast<volatile char*>(dst);
  size_t n = 0;
  int err = 0;
  bool too_long = false;
  if (prompt && !write_all(fd, prompt, std::strlen(prompt))) err = errno;
  // One byte per read(2), straight into dst: no stdio buffer, no copy. The
  // last byte of dst (the NUL's) receives the byte after size - 1 of them: a
  // newline there still fits; anything else means the line is too long, and
  // the rest of it is read there too (and dropped), so that it is not left
  // for the next reader of the terminal.
  while (!err) {
    ssize_t r = pal::read(fd, const_cast<char*>(d) + n, 1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      err = errno;
      break;
    }
    if (r == 0) break;  // end of file: the line is what came before it
    if (d[n] == '\n') break;
    if (too_long) continue;
    if (n + 1 < size) ++n;
    else too_long = true;
  }
  if (!err && !too_long) d[n] = '\0';
  // The newline the user typed was not echoed.
  if (saved.c_lflag & ECHO) write_all(fd, "\n", 1);
  if (set_terminal(fd, saved) != 0 && !err) {
    err = errno;
    detail::set_error(EXMEM_E_SYSTEM, "exmem_read_password: cannot restore the terminal's settings: %s",
                      std::strerror(err));
  } else if (err) {
    detail::set_error(EXMEM_E_SYSTEM, "exmem_read_password: reading the terminal failed: %s (what was read is wiped)",
                      std::strerror(err));
  }
  if (err || too_long) {
    heap::wipe(dst, size);
    if (too_long)
      detail::set_error(EXMEM_E_INVALID,
                        "exmem_read_password: the line does not fit in %zu bytes (at most %zu characters and the "
                        "NUL); what was read is wiped",
                        size, size - 1);
    done(0);
    errno = err ? err : ENOBUFS;
    return -1;
  }
  return done(static_cast<ssize_t>(n));
}

int exmem_random(void* dst, size_t size) {
  if (check_destination("exmem_random", dst, size) != EXMEM_OK) {
    errno = EINVAL;
    return EXMEM_E_INVALID;
  }
  auto* d = static_cast<uint8_t*>(dst);
  size_t done = 0;
  while (done < size) {
    // getrandom gives at most 32 MiB - 1 bytes a call, fewer when interrupted.
    ssize_t n = pal::getrandom(d + done, size - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int e = n < 0 ? errno : EIO;
      heap::wipe(d, done);
      detail::set_error(EXMEM_E_SYSTEM, "exmem_random: getrandom failed after %zu of %zu bytes: %s", done, size,
                        std::strerror(e));
      errno = e;
      return EXMEM_E_SYSTEM;
    }
    done += static_cast<size_t>(n);
  }
  return EXMEM_OK;
}

void* exmem_adopt(void* src, size_t size) {
  if (!src && size) {
    detail::set_error(EXMEM_E_INVALID, "exmem_adopt: the source is NULL");
    errno = EINVAL;
    return nullptr;
  }
  void* p = heap::alloc(size);
  if (!p) return nullptr;  // errno and the last error are set; src is untouched
  if (size) {
    std::memcpy(p, src, size);
    heap::wipe(src, size);  // an asm barrier keeps the stores
  }
  return p;
}

int exmem_equal(const void* a, const void* b, size_t size) {
  if (size && (!a || !b)) {
    detail::set_error(EXMEM_E_INVALID, "exmem_equal: a NULL buffer");
    return 0;
  }
  const auto* x = static_cast<const unsigned char*>(a);
  const auto* y = static_cast<const unsigned char*>(b);
  // Every byte is read and folded in; the barrier hides the accumulator from
  // the optimiser, so that no early exit can be derived from its value.
  uint64_t acc = 0;
  size_t i = 0;
  for (; i + 8 <= size; i += 8) {
    uint64_t u, v;
    std::memcpy(&u, x + i, 8);
    std::memcpy(&v, y + i, 8);
    acc |= u ^ v;
    asm volatile("" : "+r"(acc));
  }
  for (; i < size; ++i) {
    acc |= static_cast<uint64_t>(x[i] ^ y[i]);
    asm volatile("" : "+r"(acc));
  }
  // 1 when acc == 0, without a branch: (acc | -acc) has its top bit set iff acc != 0.
  return static_cast<int>(1 ^ ((acc | (0 - acc)) >> 63));
}

}  // extern "C"
