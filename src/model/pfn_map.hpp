// pfn_map.hpp: an open-addressing hash map Pfn -> 32-bit value, linear
// probing, backward-shift deletion: 8 bytes an entry (key and value side by
// side: one cache line touched per lookup), no allocation per insert. Used
// where the kernel finds something through struct page and the model, which
// has no struct page, must look it up by pfn: the movable blocks' owners
// (mm/process_memory) and the orders of allocated compound blocks (phys/).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "model/huge_pages.hpp"
#include "model/types.hpp"

namespace exmem::model {

class PfnMap {
 public:
  static constexpr std::uint32_t kAbsent = 0xFFFFFFFFu;

  [[nodiscard]] std::uint32_t find(Pfn pfn) const;  // kAbsent when absent
  // Sets pfn's value; returns false when pfn was there already (its value replaced).
  bool insert(Pfn pfn, std::uint32_t value);
  // Returns false when pfn was absent.
  bool erase(Pfn pfn);
  [[nodiscard]] std::size_t size() const { return size_; }
  [[nodiscard]] std::size_t model_bytes() const { return cells_.capacity() * sizeof(Cell); }
  // f(pfn, value) for every entry, in no particular order.
  template <class F>
  void for_each(F&& f) const {
    for (const Cell& c : cells_) {
      if (c.key != kNoPfn) f(c.key, c.val);
    }
  }

 private:
  struct Cell {
    Pfn key;  // kNoPfn: empty
    std::uint32_t val;
  };
  [[nodiscard]] std::size_t home(Pfn pfn) const {
    return static_cast<std::size_t>((pfn * 0x9E3779B97F4A7C15ull) >> shift_);
  }
  void grow();
  HugeVector<Cell> cells_;
  std::size_t size_ = 0;
  unsigned shift_ = 64;
};

}  // namespace exmem::model
