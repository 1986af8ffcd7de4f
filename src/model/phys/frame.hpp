// phys/: physical memory of the model (see physmem.hpp for what the folder owns).
// frame.hpp: the one-byte state of every frame. A frame is in exactly one of
// these states; the byte is the whole per-frame cost of the model. FreeTail is
// 0 so that the frame array starts as the kernel's zero pages.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <string_view>
#include <utility>

#include "model/huge_pages.hpp"

namespace exmem::model::phys {

enum class FrameKind : std::uint8_t {
  FreeTail = 0,     // inside a free buddy block, not its first frame
  Reserved = 1,     // RAM kept by memblock at boot (firmware, kernel image, memmap)
  Hole = 2,         // no RAM at this pfn (e820 hole, past the end of RAM)
  Pcp = 3,          // free on a per-CPU list (allocated from the buddy's view)
  Kernel = 4,       // unmovable kernel allocation (slab, vmalloc, ...)
  Reclaimable = 5,  // reclaimable kernel allocation (dentries, inodes)
  User = 6,         // movable page on the LRU (anonymous, page cache, THP)
  PageTable = 7,    // page-table page of the kernel direct map
  Secret = 8,       // page a user holds out of the direct map: a secretmem file's, a
                    // MAP_EXCLUSIVE mapping's, a NO_DIRECT_MAP guest_memfd's
  Unmapped = 9,     // free page a policy keeps out of the direct map (a pool)
  CmaAllocated = 10,  // handed out by cma_alloc()
  PageCache = 11,   // a clean page-cache page on the file LRU: movable and reclaimable
  FreeHead = 16,    // first frame of a free buddy block; + order (16..26)
};
inline constexpr std::uint8_t kFreeHeadBase = static_cast<std::uint8_t>(FrameKind::FreeHead);
inline constexpr std::uint8_t kNumAllocatedKinds = 12;
inline constexpr FrameKind kLastKind = FrameKind::PageCache;  // the highest allocated kind

inline constexpr std::uint8_t free_head_byte(unsigned order) {
  return static_cast<std::uint8_t>(kFreeHeadBase + order);
}
inline constexpr bool is_free_head(std::uint8_t b) { return b >= kFreeHeadBase; }
inline constexpr unsigned free_head_order(std::uint8_t b) { return b - kFreeHeadBase; }
inline constexpr bool is_allocated_kind(FrameKind k) {
  return k == FrameKind::Kernel || k == FrameKind::Reclaimable || k == FrameKind::User ||
         k == FrameKind::PageTable || k == FrameKind::Secret || k == FrameKind::Unmapped ||
         k == FrameKind::CmaAllocated || k == FrameKind::PageCache;
}
// Pages compaction and alloc_contig_range() may migrate (MIGRATE_MOVABLE
// allocations on the LRU): anonymous and page-cache pages.
inline constexpr bool is_movable_kind(FrameKind k) {
  return k == FrameKind::User || k == FrameKind::PageCache;
}

std::string_view frame_kind_name(std::uint8_t b);

// A zero-filled byte array: small ones from calloc(), large ones (a frame
// array: a byte per 4 KiB of modelled RAM) mapped straight from the kernel's
// zero pages, 2 MiB aligned and marked MADV_HUGEPAGE: the model writes into
// every stretch of its frame array (each free block's head), so backing it
// with transparent huge pages costs no more memory and spares a page fault per
// 4 KiB at boot and a host TLB miss on most random frame accesses.
class ZeroedBytes {
 public:
  ZeroedBytes() = default;
  explicit ZeroedBytes(std::size_t n) : n_(n) {
    if (n >= kHugeAt) {
      p_ = static_cast<std::uint8_t*>(map_huge(n));  // the kernel's zero pages
      mapped_ = round_up_huge(n);
      return;
    }
    p_ = static_cast<std::uint8_t*>(std::calloc(n == 0 ? 1 : n, 1));
    if (p_ == nullptr) throw std::bad_alloc();
  }
  ~ZeroedBytes() { release(); }
  ZeroedBytes(const ZeroedBytes&) = delete;
  ZeroedBytes& operator=(const ZeroedBytes&) = delete;
  ZeroedBytes(ZeroedBytes&& o) noexcept : p_(o.p_), n_(o.n_), mapped_(o.mapped_) {
    o.p_ = nullptr, o.n_ = 0, o.mapped_ = 0;
  }
  ZeroedBytes& operator=(ZeroedBytes&& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(n_, o.n_);
    std::swap(mapped_, o.mapped_);
    return *this;
  }
  std::uint8_t& operator[](std::size_t i) { return p_[i]; }
  const std::uint8_t& operator[](std::size_t i) const { return p_[i]; }
  std::uint8_t* data() { return p_; }
  [[nodiscard]] const std::uint8_t* data() const { return p_; }
  [[nodiscard]] std::size_t size() const { return n_; }

 private:
  static constexpr std::size_t kHugeAt = std::size_t{8} << 20;  // frames of 8 GiB of modelled RAM
  void release() {
    if (mapped_ != 0) {
      ::munmap(p_, mapped_);
    } else {
      std::free(p_);
    }
    p_ = nullptr, n_ = 0, mapped_ = 0;
  }
  std::uint8_t* p_ = nullptr;
  std::size_t n_ = 0;
  std::size_t mapped_ = 0;  // bytes mapped by mmap (0: from calloc)
};

}  // namespace exmem::model::phys
