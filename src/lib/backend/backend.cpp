#include "backend/backend.hpp"

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <exmem/exmem.h>

#include "backend/sys.hpp"
#include "error.hpp"

#ifndef MADV_WIPEONFORK
#define MADV_WIPEONFORK 18
#endif

namespace exmem::backend {

namespace {

constexpr size_t kPage = 4096;

// Puts the PROT_NONE reservation back over [addr, addr+len) after a failed or
// released mapping, so the range stays ours and keeps guarding its neighbours.
void restore_reservation(void* addr, size_t len) {
  void* p = sys::mmap_restore(addr, len);
  if (p == MAP_FAILED) detail::fatal("cannot restore the guard reservation at %p (+%zu bytes): %s", addr, len, std::strerror(errno));
}

void format_limit(char* buf, size_t n, rlim_t v) {
  if (v == RLIM_INFINITY)
    std::snprintf(buf, n, "unlimited");
  else
    std::snprintf(buf, n, "%" PRIu64 " bytes", static_cast<uint64_t>(v));
}

int memlock_error(size_t asked, size_t charged) {
  rlimit rl{};
  getrlimit(RLIMIT_MEMLOCK, &rl);
  char soft[48], hard[48];
  format_limit(soft, sizeof soft, rl.rlim_cur);
  format_limit(hard, sizeof hard, rl.rlim_max);
  return detail::set_error(
      EXMEM_E_MEMLOCK,
      "RLIMIT_MEMLOCK refused %zu bytes of exclusive memory (limit %s, hard limit %s; this heap already holds "
      "%zu bytes locked). Raise it with `ulimit -l <KiB>` or `memlock` in /etc/security/limits.conf, "
      "LimitMEMLOCK= for a systemd service, or grant CAP_IPC_LOCK",
      asked, soft, hard, charged);
}

int system_error(const char* what, size_t len, int e) {
  int code = (e == ENOMEM) ? EXMEM_E_NO_MEMORY : EXMEM_E_SYSTEM;
  return detail::set_error(code, "%s of %zu bytes failed: %s", what, len, std::strerror(e));
}

// Faults in every page of [addr, addr+len) from the kernel side. read(2) from
// /dev/zero copies into the range with copy_to_user: a fault the kernel cannot
// satisfy ends the read short (EFAULT) instead of raising SIGBUS or calling the
// OOM killer, as a user-space touch would. MADV_POPULATE_WRITE is refused for
// secretmem (no GUP), hence this route.
int prefault(void* addr, size_t len) {
  int zero = sys::open("/dev/zero", O_RDONLY | O_CLOEXEC);
  if (zero < 0) {
    int e = errno;
    return detail::set_error(EXMEM_E_SYSTEM,
                             "cannot open /dev/zero to fault in a %zu-byte region: %s (exmem needs /dev/zero)", len,
                             std::strerror(e));
  }
  auto* p = static_cast<char*>(addr);
  size_t done = 0;
  while (done < len) {
    ssize_t r = sys::read(zero, p + done, len - done);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      int e = (r < 0) ? errno : EFAULT;
      sys::close(zero);
      return detail::set_error(EXMEM_E_NO_MEMORY,
                               "the kernel could not provide page %zu of a %zu-byte exclusive region (%s): out of "
                               "memory",
                               done / kPage, len, std::strerror(e));
    }
    done += static_cast<size_t>(r);
  }
  sys::close(zero);
  return EXMEM_OK;
}

}  // namespace

int probe_secret() {
  int fd = sys::memfd_secret(O_CLOEXEC);
  if (fd < 0) return errno;
  sys::close(fd);
  return 0;
}

const char* why_unavailable(int e) {
  switch (e) {
    case 0:
      return "available";
    case ENOSYS:
      return "the kernel does not offer memfd_secret (older than 5.14, built without CONFIG_SECRETMEM, or booted "
             "with secretmem.enable=0)";
    case EPERM:
    case EACCES:
      return "memfd_secret is blocked for this process (seccomp or a security module)";
    case EMFILE:
    case ENFILE:
      return "no file descriptor is free";
    case ENOMEM:
      return "the kernel is out of memory";
    default:
      return "memfd_secret failed";
  }
}

void* reserve(size_t len) {
  void* p = sys::mmap(nullptr, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    system_error("reserving address space", len, errno);
    return nullptr;
  }
  return p;
}

void release(void* addr, size_t len) { sys::munmap(addr, len); }

int map(void* addr, size_t len, const MapOptions& opt, Region* out) {
  int fd = -1;
  int flags = MAP_FIXED;
  if (opt.kind == Kind::secret) {
    fd = sys::memfd_secret(O_CLOEXEC);
    if (fd < 0) {
      int e = errno;
      if (e == EMFILE || e == ENFILE || e == ENOMEM) return system_error("memfd_secret", len, e);
      return detail::set_error(EXMEM_E_NO_SECRET, "memfd_secret failed: %s (%s)", std::strerror(e),
                               why_unavailable(e));
    }
    if (sys::ftruncate(fd, static_cast<off_t>(len)) != 0) {
      int e = errno;
      sys::close(fd);
      return system_error("sizing a memfd_secret file", len, e);
    }
    flags |= MAP_SHARED;  // memfd_secret accepts nothing else
  } else if (opt.keep_fd) {
    // A locked region that must be passable to another process needs a file.
    fd = sys::memfd_create("exmem", MFD_CLOEXEC);
    if (fd < 0) return system_error("memfd_create", len, errno);
    if (sys::ftruncate(fd, static_cast<off_t>(len)) != 0) {
      int e = errno;
      sys::close(fd);
      return system_error("sizing a memfd file", len, e);
    }
    flags |= MAP_SHARED;
  } else {
    flags |= (opt.shared ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS;
  }

  void* p = sys::mmap(addr, len, PROT_READ | PROT_WRITE, flags, fd, 0);
  if (p == MAP_FAILED) {
    int e = errno;
    if (fd >= 0) sys::close(fd);
    restore_reservation(addr, len);
    if (e == EAGAIN || e == EPERM) return memlock_error(len, opt.charged);
    return system_error("mapping an exclusive region", len, e);
  }

  auto fail = [&](int code) {
    restore_reservation(addr, len);
    if (fd >= 0) sys::close(fd);
    return code;
  };

  if (opt.kind == Kind::locked) {
    if (sys::mlock(addr, len) != 0) {
      int e = errno;
      if (e == ENOMEM || e == EAGAIN || e == EPERM) return fail(memlock_error(len, opt.charged));
      return fail(system_error("mlock", len, e));
    }
    if (sys::madvise(addr, len, MADV_DONTDUMP) != 0) return fail(system_error("madvise(MADV_DONTDUMP)", len, errno));
    // Wipe-on-fork exists only for private anonymous memory.
    if (!opt.shared && fd < 0 && opt.dontfork && sys::madvise(addr, len, MADV_WIPEONFORK) != 0)
      return fail(system_error("madvise(MADV_WIPEONFORK)", len, errno));
  } else {
    // memfd_secret mappings are already VM_LOCKED|VM_DONTDUMP; only fault them in.
    if (int rc = prefault(addr, len); rc != EXMEM_OK) return fail(rc);
  }
  if (opt.dontfork && sys::madvise(addr, len, MADV_DONTFORK) != 0)
    return fail(system_error("madvise(MADV_DONTFORK)", len, errno));

  if (fd >= 0 && !opt.keep_fd) {
    sys::close(fd);
    fd = -1;
  }
  *out = Region{addr, len, fd};
  return EXMEM_OK;
}

int map_fd(void* addr, size_t len, int fd, Kind kind, Region* out) {
  void* p = sys::mmap(addr, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
  if (p == MAP_FAILED) {
    int e = errno;
    restore_reservation(addr, len);
    if (e == EAGAIN || e == EPERM) return memlock_error(len, 0);
    return system_error("mapping a received exclusive region", len, e);
  }
  auto fail = [&](int code) {
    restore_reservation(addr, len);
    return code;
  };
  if (kind == Kind::locked) {
    if (sys::mlock(addr, len) != 0) return fail(memlock_error(len, 0));
    if (sys::madvise(addr, len, MADV_DONTDUMP) != 0) return fail(system_error("madvise(MADV_DONTDUMP)", len, errno));
  } else {
    // The sender faulted every page in already (so no page is allocated here):
    // reading each one only fills this process's page tables. Writing zeros,
    // as prefault() does, would destroy the shared contents.
    auto* b = static_cast<volatile const char*>(addr);
    for (size_t off = 0; off < len; off += kPage) (void)b[off];
  }
  if (sys::madvise(addr, len, MADV_DONTFORK) != 0) return fail(system_error("madvise(MADV_DONTFORK)", len, errno));
  *out = Region{addr, len, fd};
  return EXMEM_OK;
}

void unmap(const Region& r) {
  restore_reservation(r.addr, r.len);
  if (r.fd >= 0) sys::close(r.fd);
}

}  // namespace exmem::backend
