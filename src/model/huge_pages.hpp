// huge_pages.hpp: memory for the model's large tables, 2 MiB aligned and
// marked MADV_HUGEPAGE, so that transparent huge pages back them where the
// host allows it (THP "madvise" or "always"; with "never" they are 4 KiB pages
// and nothing else changes).
//
// Why: on a long run at 1 TiB every event touches a frame byte, a free-list
// slot, a pfn-map cell and direct-map tables spread over a few hundred MiB.
// Behind 4 KiB pages most of those touches miss the TLB and walk the page
// tables; behind 2 MiB pages the same tables are a few hundred TLB entries.
// Only the allocation's backing changes: what the model computes, and its
// results, are the same.
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <vector>

namespace exmem::model {

inline constexpr std::size_t kHugePageBytes = std::size_t{2} << 20;

constexpr std::size_t round_up_huge(std::size_t bytes) {
  return (bytes + kHugePageBytes - 1) / kHugePageBytes * kHugePageBytes;
}

// round_up_huge(bytes) of zeroed memory at a 2 MiB boundary (over-mapped,
// then trimmed at both ends), marked MADV_HUGEPAGE. Throws std::bad_alloc.
inline void* map_huge(std::size_t bytes) {
  const std::size_t size = round_up_huge(bytes);
  const std::size_t len = size + kHugePageBytes;
  void* m = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED) throw std::bad_alloc();
  const auto base = reinterpret_cast<std::uintptr_t>(m);
  const std::uintptr_t start = (base + kHugePageBytes - 1) & ~(std::uintptr_t{kHugePageBytes} - 1);
  if (start > base) ::munmap(m, start - base);
  const std::uintptr_t tail = base + len - (start + size);
  if (tail > 0) ::munmap(reinterpret_cast<void*>(start + size), tail);
  void* p = reinterpret_cast<void*>(start);
  (void)::madvise(p, size, MADV_HUGEPAGE);  // a hint: without THP it is 4 KiB pages
  return p;
}

inline void unmap_huge(void* p, std::size_t bytes) { ::munmap(p, round_up_huge(bytes)); }

// A std::allocator that takes allocations of kHugeAt bytes or more from
// map_huge() and smaller ones from operator new: for the containers whose
// size grows with the modelled RAM (free-list slots, pfn maps, direct-map
// tables).
template <typename T>
class HugePageAllocator {
 public:
  using value_type = T;
  static constexpr std::size_t kHugeAt = kHugePageBytes;

  HugePageAllocator() noexcept = default;
  template <typename U>
  HugePageAllocator(const HugePageAllocator<U>& /*other*/) noexcept {}  // NOLINT: rebinding is implicit

  T* allocate(std::size_t n) {
    if (n > SIZE_MAX / sizeof(T)) throw std::bad_array_new_length();
    const std::size_t bytes = n * sizeof(T);
    if (bytes >= kHugeAt) return static_cast<T*>(map_huge(bytes));
    return std::allocator<T>{}.allocate(n);
  }
  void deallocate(T* p, std::size_t n) noexcept {
    const std::size_t bytes = n * sizeof(T);
    if (bytes >= kHugeAt) {
      unmap_huge(p, bytes);
    } else {
      std::allocator<T>{}.deallocate(p, n);
    }
  }
  template <typename U>
  bool operator==(const HugePageAllocator<U>& /*other*/) const noexcept {
    return true;
  }
};

// A vector whose storage, once it reaches 2 MiB, is huge-page backed.
template <typename T>
using HugeVector = std::vector<T, HugePageAllocator<T>>;

}  // namespace exmem::model
