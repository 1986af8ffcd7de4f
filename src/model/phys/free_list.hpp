// phys/: physical memory of the model (see physmem.hpp for what the folder owns).
// free_list.hpp: the buddy free lists. The kernel links free blocks through
// struct page; the model has no struct page, so the links of each free block
// live in one open-addressing table keyed by the block's first pfn. Lists keep
// the kernel's order exactly (head insertion, tail insertion, list_move_tail),
// and the table costs memory only for blocks that are free.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "model/huge_pages.hpp"
#include "model/types.hpp"

namespace exmem::model::phys {

// One kernel list_head of free blocks (free_area[order].free_list[mt]).
struct FreeList {
  Pfn head = kNoPfn;
  Pfn tail = kNoPfn;
  std::uint64_t count = 0;
  [[nodiscard]] bool empty() const { return head == kNoPfn; }
};

class FreeListStore {
 public:
  explicit FreeListStore(std::size_t expected_blocks = 1024);

  // mirrors list_add(): the block becomes the list's first entry.
  void add_head(FreeList& list, Pfn pfn);
  // mirrors list_add_tail()
  void add_tail(FreeList& list, Pfn pfn);
  // mirrors list_del()
  void remove(FreeList& list, Pfn pfn);
  [[nodiscard]] bool contains(Pfn pfn) const { return find_index(pfn) != kNotFound; }
  // The entry after pfn on its list, or kNoPfn; pfn must be on a list.
  [[nodiscard]] Pfn next(Pfn pfn) const;
  [[nodiscard]] std::size_t size() const { return used_; }
  [[nodiscard]] std::size_t bytes() const { return slots_.capacity() * sizeof(Slot); }

 private:
  struct Slot {
    Pfn key;
    Pfn next;
    Pfn prev;
  };
  static constexpr std::size_t kNotFound = ~std::size_t{0};

  [[nodiscard]] std::size_t home(Pfn pfn) const {
    return static_cast<std::size_t>((std::uint64_t{pfn} * 0x9E3779B97F4A7C15ull) >> shift_);
  }
  // Inline: the buddy code calls these several times per block it moves.
  [[nodiscard]] std::size_t find_index(Pfn pfn) const {
    std::size_t i = home(pfn);
    while (true) {
      const Pfn k = slots_[i].key;
      if (k == pfn) return i;
      if (k == kNoPfn) return kNotFound;
      i = (i + 1) & mask_;
    }
  }
  Slot& slot(Pfn pfn) {
    const std::size_t i = find_index(pfn);
    if (i == kNotFound) [[unlikely]] not_on_a_list();
    return slots_[i];
  }
  [[noreturn]] static void not_on_a_list();
  Slot& insert(Pfn pfn);
  void erase_at(std::size_t i);
  void grow();

  HugeVector<Slot> slots_;
  std::size_t mask_ = 0;
  unsigned shift_ = 64;
  std::size_t used_ = 0;
};

}  // namespace exmem::model::phys
