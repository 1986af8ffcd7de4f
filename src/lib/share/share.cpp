// Sharing: one exclusive region passed to another process over an AF_UNIX
// socket with SCM_RIGHTS. The region is its own memfd_secret file (or a locked
// memfd under the fallback), mapped inside the heap's reservation so that guard
// pages surround it, and kept out of children (MADV_DONTFORK).
#include <exmem/exmem.h>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

#include "error.hpp"
#include "heap/arena.hpp"
#include "pal/pal.hpp"
#include "public_types.hpp"

using namespace exmem;

namespace {

// What travels beside the descriptor.
struct Message {
  char magic[8];  // "exmemSH1"
  uint64_t size;
  int32_t protection;
  int32_t pad;
};
constexpr char kMagic[8] = {'e', 'x', 'm', 'e', 'm', 'S', 'H', '1'};
constexpr size_t kMaxShare = size_t{1} << 40;

// Maps a new shared region (fd < 0) or a received one into *out.
int map_shared(size_t size, int fd, int protection, exmem_shared* out) {
  backend::Region r;
  backend::Kind kind = backend::Kind::none;
  heap::Use use = fd < 0 ? heap::Use::shared : heap::Use::received;
  int rc = heap::arena_map_apart(use, size, fd, kind_of(protection), nullptr, &r, &kind);
  if (rc == EXMEM_OK) *out = exmem_shared{r.addr, r.len, r.fd, protection_of(kind)};
  return rc;
}

}  // namespace

extern "C" {

int exmem_share_create(size_t size, struct exmem_shared* out) {
  if (!out) return detail::set_error(EXMEM_E_INVALID, "exmem_share_create: the output pointer is NULL");
  if (size == 0 || size > kMaxShare)
    return detail::set_error(EXMEM_E_INVALID, "exmem_share_create: size %zu: expected 1 to %zu bytes", size, kMaxShare);
  return map_shared(size, -1, EXMEM_PROT_NONE, out);
}

int exmem_share_send(int sock, const struct exmem_shared* s) {
  if (!s || s->fd < 0 || s->size == 0)
    return detail::set_error(EXMEM_E_INVALID, "exmem_share_send: not a region made by exmem_share_create or _recv");
  Message m{};
  std::memcpy(m.magic, kMagic, sizeof kMagic);
  m.size = s->size;
  m.protection = s->protection;
  iovec iov{&m, sizeof m};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &s->fd, sizeof(int));
  ssize_t n = pal::sendmsg(sock, &msg, MSG_NOSIGNAL);
  if (n != static_cast<ssize_t>(sizeof m))
    return detail::set_error(EXMEM_E_SYSTEM, "exmem_share_send: sendmsg on socket %d failed: %s", sock,
                             n < 0 ? std::strerror(errno) : "short write");
  return EXMEM_OK;
}

int exmem_share_recv(int sock, struct exmem_shared* out) {
  if (!out) return detail::set_error(EXMEM_E_INVALID, "exmem_share_recv: the output pointer is NULL");
  Message m{};
  iovec iov{&m, sizeof m};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n = pal::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  if (n < 0) return detail::set_error(EXMEM_E_SYSTEM, "exmem_share_recv: recvmsg on socket %d failed: %s", sock, std::strerror(errno));
  int fd = -1, extra = 0;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int got;
      std::memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      if (fd < 0) fd = got;
      else {
        pal::close(got);  // never leak descriptors a peer pushed on us
        ++extra;
      }
    }
  }
  auto protocol = [&](const char* what) {
    if (fd >= 0) pal::close(fd);
    return detail::set_error(EXMEM_E_PROTOCOL, "exmem_share_recv: %s (got %zd bytes%s)", what, n,
                             msg.msg_flags & MSG_CTRUNC ? ", control data truncated" : "");
  };
  if (n != static_cast<ssize_t>(sizeof m) || std::memcmp(m.magic, kMagic, sizeof kMagic) != 0)
    return protocol("the message is not an exmem share message");
  if (fd < 0) return protocol("the message carries no file descriptor");
  if (extra) return protocol("the message carries more than one file descriptor");
  if (m.size == 0 || m.size > kMaxShare || m.size % 4096)
    return protocol("the message names an impossible region size");
  if (m.protection != EXMEM_PROT_SECRET && m.protection != EXMEM_PROT_LOCKED)
    return protocol("the message names an unknown protection level");
  // The descriptor must be what the message claims: a memfd_secret file for
  // EXMEM_PROT_SECRET, a memfd (tmpfs) for EXMEM_PROT_LOCKED. A peer must not
  // pass off ordinary memory or a regular file as exclusive memory.
  struct statfs fs{};
  if (pal::fstatfs(fd, &fs) != 0) return protocol("the descriptor cannot be inspected");
  constexpr long kSecretmemMagic = 0x5345434d;  // "SECM"
  constexpr long kTmpfsMagic = 0x01021994;
  if (m.protection == EXMEM_PROT_SECRET && static_cast<long>(fs.f_type) != kSecretmemMagic)
    return protocol("the descriptor is not a memfd_secret file, though the message says it is");
  if (m.protection == EXMEM_PROT_LOCKED && static_cast<long>(fs.f_type) != kTmpfsMagic)
    return protocol("the descriptor is not a memfd, though the message says it is");
  struct stat st{};
  if (pal::fstat(fd, &st) == 0 && st.st_size > 0 && static_cast<uint64_t>(st.st_size) < m.size)
    return protocol("the region is smaller than the message says");
  int rc = map_shared(static_cast<size_t>(m.size), fd, m.protection, out);
  if (rc != EXMEM_OK) pal::close(fd);
  return rc;
}

int exmem_share_release(struct exmem_shared* s) {
  if (!s || !s->addr) return detail::set_error(EXMEM_E_INVALID, "exmem_share_release: no region given");
  if (int rc = heap::arena_unmap_apart(heap::Use::shared, backend::Region{s->addr, s->size, s->fd},
                                       "exmem_share_release");
      rc != EXMEM_OK)
    return rc;
  *s = exmem_shared{nullptr, 0, -1, EXMEM_PROT_NONE};
  return EXMEM_OK;
}

}  // extern "C"
