// Backend: where exclusive pages come from, and nothing about how they are
// carved (that is heap/). Two kinds:
//   secret: one memfd_secret(2) file per region, mapped MAP_SHARED: the pages
//           leave the kernel direct map when they are faulted in.
//   locked: anonymous memory, mlock + MADV_DONTDUMP + MADV_WIPEONFORK.
// Regions are placed inside a PROT_NONE reservation owned by the caller, so the
// unmapped neighbours of every region are its guard pages. Every region is
// faulted in when it is created, from the kernel side (read(2) from /dev/zero),
// so that a fault that cannot be satisfied is a clean error here and never a
// SIGBUS or an OOM kill later, at use.
//
// The backend reports facts: which step failed and the errno it gave
// (Failure). Wording them for the user is diagnostics.hpp's job.
#pragma once

#include <cstddef>

namespace exmem::backend {

enum class Kind { none = 0, secret = 1, locked = 2 };

// Calls memfd_secret once. Returns 0 when available, else the errno it gave.
int probe_secret();

// The step of a mapping that the kernel refused.
enum class Step {
  none,
  reserve,           // the PROT_NONE reservation of address space
  memfd_secret,      // creating the region's memfd_secret file
  size_secret,       // ftruncate of that file
  memfd_create,      // creating the locked memfd of a shareable region
  size_memfd,        // ftruncate of that file
  map,               // mmap of a new region
  map_received,      // mmap of a received region
  mlock,             // mlock of a new locked region
  mlock_received,    // mlock of a received locked region
  dontdump,          // madvise(MADV_DONTDUMP)
  wipeonfork,        // madvise(MADV_WIPEONFORK)
  dontfork,          // madvise(MADV_DONTFORK)
  protect,           // mprotect of a vault
  open_zero,         // opening /dev/zero to fault a region in
  fault_in           // the kernel could not provide a page (read from /dev/zero ended short)
};

struct Failure {
  Step step = Step::none;
  int err = 0;      // errno of the failed call
  size_t page = 0;  // fault_in: the page of the region that could not be had
  bool failed() const { return step != Step::none; }
};

// Reserves len bytes of address space, PROT_NONE, charged to nothing.
// Returns nullptr on failure, with *why set.
void* reserve_address_space(size_t len, Failure* why);
// Gives back a reservation (and whatever is mapped inside it).
void release_address_space(void* addr, size_t len);

struct Region {
  void* addr = nullptr;
  size_t len = 0;
  int fd = -1;  // kept open only when asked (for sharing)
};

struct MapOptions {
  Kind kind = Kind::secret;
  bool dontfork = true;   // children do not inherit the mapping
  bool shared = false;    // locked kind: MAP_SHARED so children see it (fork share mode)
  bool keep_fd = false;   // keep the file open (regions to be passed to another process)
};

// Maps len bytes (page multiple) at addr, which must lie inside a reservation,
// and faults every page in. On failure the reservation is restored at
// [addr, addr+len) and the failure is returned.
Failure map(void* addr, size_t len, const MapOptions& opt, Region* out);
// Maps an existing exclusive file (received from another process) at addr.
Failure map_fd(void* addr, size_t len, int fd, Kind kind, Region* out);
// Returns [addr, addr+len) to the reservation (PROT_NONE) and closes fd if open.
void unmap(const Region& r);

// What a mapped region may be used for: nothing, reading, or reading and writing.
enum class Access { none, read, read_write };
// Changes the protection of a whole mapping made by map() (a vault's). A whole
// VMA changes, so it never splits one, and its pages stay faulted in and locked.
Failure protect(void* addr, size_t len, Access access);

}  // namespace exmem::backend
