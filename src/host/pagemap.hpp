// /proc/PID/pagemap: the physical frames behind a process's virtual pages, and
// where its memfd_secret mappings are. The kernel shows frame numbers only to
// CAP_SYS_ADMIN; others read every pfn as 0.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace exmem::host {

// An entry: bits 0-54 the page frame number, bit 63 present.
inline constexpr std::uint64_t kPagemapPfnMask = (std::uint64_t{1} << 55) - 1;
constexpr bool pagemap_present(std::uint64_t entry) { return (entry >> 63) != 0; }
constexpr std::uint64_t pagemap_pfn(std::uint64_t entry) { return entry & kPagemapPfnMask; }

// This machine's page size, which is also pagemap's unit.
std::size_t page_size();

// /proc/PID/pagemap, open for reading.
class Pagemap {
 public:
  explicit Pagemap(pid_t pid = 0);  // 0: this process
  ~Pagemap();
  Pagemap(const Pagemap&) = delete;
  Pagemap& operator=(const Pagemap&) = delete;

  // errno of the open; 0 when the file is open.
  int error() const { return open_error_; }
  // Reads the entries of `count` pages from the page holding addr on, into out.
  // Returns the number of entries read: fewer than count after a short read
  // or a failure, with errno set (0 for a short read).
  std::size_t read(std::uintptr_t addr, std::size_t count, std::uint64_t* out) const;

 private:
  int fd_ = -1;
  int open_error_ = 0;
};

// The frames of `pages` pages from addr on.
struct Frames {
  int error = 0;             // errno of a failed open or read; 0 otherwise
  bool complete = false;     // every entry was read
  std::size_t present = 0;   // pages present
  std::vector<std::uint64_t> pfns;  // non-zero pfns of the present pages, in address order
};
Frames frames_of(const Pagemap& pm, std::uintptr_t addr, std::size_t pages);

// How many distinct naturally aligned regions of 2^shift frames hold the frames.
std::size_t distinct_regions(std::vector<std::uint64_t> pfns, unsigned shift);
// The shift of a region of region_bytes in frames of page_bytes (9 for 2 MiB of 4 KiB pages).
unsigned frames_shift(std::size_t region_bytes, std::size_t page_bytes);

// A virtual address range [begin, end).
struct Range {
  std::uintptr_t begin = 0;
  std::uintptr_t end = 0;
  bool operator==(const Range&) const = default;
};
// The memfd_secret mappings ("/secretmem" lines) in the text of /proc/PID/maps.
std::vector<Range> parse_secret_mappings(std::string_view maps);
// The memfd_secret mappings of pid (0: this process); empty when unreadable.
std::vector<Range> secret_mappings(pid_t pid = 0);

}  // namespace exmem::host
