#include "backend/backend.hpp"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>

#include "error.hpp"
#include "pal/pal.hpp"

#ifndef MADV_WIPEONFORK
#define MADV_WIPEONFORK 18
#endif

namespace exmem::backend {

namespace {

constexpr size_t kPage = 4096;

Failure failed(Step step, int err) { return Failure{step, err, 0}; }

// Puts the PROT_NONE reservation back over [addr, addr+len) after a failed or
// released mapping, so the range stays ours and keeps guarding its neighbours.
void restore_reservation(void* addr, size_t len) {
  void* p = pal::mmap_restore(addr, len);
  if (p == MAP_FAILED) detail::fatal("cannot restore the guard reservation at %p (+%zu bytes): %s", addr, len, std::strerror(errno));
}

// Faults in every page of [addr, addr+len) from the kernel side. read(2) from
// /dev/zero copies into the range with copy_to_user: a fault the kernel cannot
// satisfy ends the read short (EFAULT) instead of raising SIGBUS or calling the
// OOM killer, as a user-space touch would. MADV_POPULATE_WRITE is refused for
// secretmem (no GUP), hence this route.
Failure prefault(void* addr, size_t len) {
  int zero = pal::open("/dev/zero", O_RDONLY | O_CLOEXEC);
  if (zero < 0) return failed(Step::open_zero, errno);
  auto* p = static_cast<char*>(addr);
  size_t done = 0;
  while (done < len) {
    ssize_t r = pal::read(zero, p + done, len - done);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      int e = (r < 0) ? errno : EFAULT;
      pal::close(zero);
      return Failure{Step::fault_in, e, done / kPage};
    }
    done += static_cast<size_t>(r);
  }
  pal::close(zero);
  return {};
}

// Creates the file behind a region of len bytes: memfd_secret for the secret
// kind, a memfd for a locked region that may be passed to another process.
Failure create_file(Kind kind, size_t len, int* fd) {
  bool secret = kind == Kind::secret;
  *fd = secret ? pal::memfd_secret(O_CLOEXEC) : pal::memfd_create("exmem", MFD_CLOEXEC);
  if (*fd < 0) return failed(secret ? Step::memfd_secret : Step::memfd_create, errno);
  if (pal::ftruncate(*fd, static_cast<off_t>(len)) != 0) {
    int e = errno;
    pal::close(*fd);
    *fd = -1;
    return failed(secret ? Step::size_secret : Step::size_memfd, e);
  }
  return {};
}

}  // namespace

int probe_secret() {
  int fd = pal::memfd_secret(O_CLOEXEC);
  if (fd < 0) return errno;
  pal::close(fd);
  return 0;
}

void* reserve_address_space(size_t len, Failure* why) {
  void* p = pal::mmap(nullptr, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    *why = failed(Step::reserve, errno);
    return nullptr;
  }
  return p;
}

void release_address_space(void* addr, size_t len) { pal::munmap(addr, len); }

Failure map(void* addr, size_t len, const MapOptions& opt, Region* out) {
  int fd = -1;
  int flags = MAP_FIXED;
  if (opt.kind == Kind::secret || opt.keep_fd) {
    // memfd_secret accepts nothing but MAP_SHARED; a locked region that must be
    // passable to another process needs a file.
    if (Failure f = create_file(opt.kind, len, &fd); f.failed()) return f;
    flags |= MAP_SHARED;
  } else {
    flags |= (opt.shared ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS;
  }

  void* p = pal::mmap(addr, len, PROT_READ | PROT_WRITE, flags, fd, 0);
  if (p == MAP_FAILED) {
    int e = errno;
    if (fd >= 0) pal::close(fd);
    restore_reservation(addr, len);
    return failed(Step::map, e);
  }

  auto fail = [&](Failure f) {
    restore_reservation(addr, len);
    if (fd >= 0) pal::close(fd);
    return f;
  };

  if (opt.kind == Kind::locked) {
    if (pal::mlock(addr, len) != 0) return fail(failed(Step::mlock, errno));
    if (pal::madvise(addr, len, MADV_DONTDUMP) != 0) return fail(failed(Step::dontdump, errno));
    // Wipe-on-fork exists only for private anonymous memory.
    if (!opt.shared && fd < 0 && opt.dontfork && pal::madvise(addr, len, MADV_WIPEONFORK) != 0)
      return fail(failed(Step::wipeonfork, errno));
  } else {
    // memfd_secret mappings are already VM_LOCKED|VM_DONTDUMP; only fault them in.
    if (Failure f = prefault(addr, len); f.failed()) return fail(f);
  }
  if (opt.dontfork && pal::madvise(addr, len, MADV_DONTFORK) != 0) return fail(failed(Step::dontfork, errno));

  if (fd >= 0 && !opt.keep_fd) {
    pal::close(fd);
    fd = -1;
  }
  *out = Region{addr, len, fd};
  return {};
}

Failure map_fd(void* addr, size_t len, int fd, Kind kind, Region* out) {
  void* p = pal::mmap(addr, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
  if (p == MAP_FAILED) {
    int e = errno;
    restore_reservation(addr, len);
    return failed(Step::map_received, e);
  }
  auto fail = [&](Failure f) {
    restore_reservation(addr, len);
    return f;
  };
  if (kind == Kind::locked) {
    if (pal::mlock(addr, len) != 0) return fail(failed(Step::mlock_received, errno));
    if (pal::madvise(addr, len, MADV_DONTDUMP) != 0) return fail(failed(Step::dontdump, errno));
  } else {
    // The sender faulted every page in already (so no page is allocated here):
    // reading each one only fills this process's page tables. Writing zeros,
    // as prefault() does, would destroy the shared contents.
    auto* b = static_cast<volatile const char*>(addr);
    for (size_t off = 0; off < len; off += kPage) (void)b[off];
  }
  if (pal::madvise(addr, len, MADV_DONTFORK) != 0) return fail(failed(Step::dontfork, errno));
  *out = Region{addr, len, fd};
  return {};
}

Failure protect(void* addr, size_t len, Access access) {
  int prot = access == Access::read_write ? PROT_READ | PROT_WRITE : access == Access::read ? PROT_READ : PROT_NONE;
  if (pal::mprotect(addr, len, prot) != 0) return failed(Step::protect, errno);
  return {};
}

void unmap(const Region& r) {
  restore_reservation(r.addr, r.len);
  if (r.fd >= 0) pal::close(r.fd);
}

}  // namespace exmem::backend
