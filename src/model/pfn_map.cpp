// pfn_map.cpp: see pfn_map.hpp.
#include "model/pfn_map.hpp"

namespace exmem::model {

std::uint32_t PfnMap::find(Pfn pfn) const {
  if (size_ == 0) return kAbsent;
  const std::size_t mask = cells_.size() - 1;
  for (std::size_t i = home(pfn);; i = (i + 1) & mask) {
    if (cells_[i].key == pfn) return cells_[i].val;
    if (cells_[i].key == kNoPfn) return kAbsent;
  }
}

void PfnMap::grow() {
  HugeVector<Cell> old = std::move(cells_);
  const std::size_t cap = old.empty() ? 1024 : old.size() * 2;
  cells_.assign(cap, Cell{kNoPfn, 0});
  shift_ = 64 - static_cast<unsigned>(__builtin_ctzll(cap));
  size_ = 0;
  for (const Cell& c : old) {
    if (c.key != kNoPfn) insert(c.key, c.val);
  }
}

bool PfnMap::insert(Pfn pfn, std::uint32_t value) {
  if ((size_ + 1) * 2 > cells_.size()) grow();
  const std::size_t mask = cells_.size() - 1;
  std::size_t i = home(pfn);
  while (cells_[i].key != kNoPfn) {
    if (cells_[i].key == pfn) {
      cells_[i].val = value;
      return false;
    }
    i = (i + 1) & mask;
  }
  cells_[i] = Cell{pfn, value};
  ++size_;
  return true;
}

bool PfnMap::erase(Pfn pfn) {
  if (size_ == 0) return false;
  const std::size_t mask = cells_.size() - 1;
  std::size_t i = home(pfn);
  while (cells_[i].key != pfn) {
    if (cells_[i].key == kNoPfn) return false;
    i = (i + 1) & mask;
  }
  // Backward shift: a later entry of the run moves into the hole unless its
  // home lies cyclically in (hole, its place].
  for (std::size_t j = (i + 1) & mask;; j = (j + 1) & mask) {
    if (cells_[j].key == kNoPfn) break;
    const std::size_t h = home(cells_[j].key);
    const bool stays = i <= j ? (h > i && h <= j) : (h > i || h <= j);
    if (stays) continue;
    cells_[i] = cells_[j];
    i = j;
  }
  cells_[i].key = kNoPfn;
  --size_;
  return true;
}

}  // namespace exmem::model
