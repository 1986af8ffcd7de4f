// mm/: processes and memfd_secret (see mm.hpp for what the folder owns).
// page_index.hpp: a file's pages by index, as the page cache's xarray holds
// them: low indexes in a dense vector, the rest in a hash map. Used by
// secretmem files, MAP_EXCLUSIVE objects (mm.cpp) and guest_memfd files
// (users/guest_memfd.cpp).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <unordered_map>
#include <utility>
#include <vector>

#include "model/types.hpp"

namespace exmem::model::mm {

class PageIndex {
 public:
  static constexpr std::uint64_t kDenseLimit = std::uint64_t{1} << 22;  // indexes kept densely

  [[nodiscard]] Pfn find(std::uint64_t index) const {
    if (index < kDenseLimit) return index < dense_.size() ? dense_[index] : kNoPfn;
    const auto it = sparse_.find(index);
    return it == sparse_.end() ? kNoPfn : it->second;
  }
  // The index must be empty (callers find() first).
  void insert(std::uint64_t index, Pfn pfn) {
    if (index < kDenseLimit) {
      if (index >= dense_.size()) {
        dense_.resize(std::max<std::size_t>(index + 1, std::min<std::size_t>(dense_.size() * 2, kDenseLimit)),
                      kNoPfn);
      }
      dense_[index] = pfn;
    } else {
      sparse_[index] = pfn;
    }
    ++size_;
  }
  // The page at index leaves: its pfn, or kNoPfn when there was none.
  Pfn erase(std::uint64_t index) {
    Pfn pfn = kNoPfn;
    if (index < kDenseLimit) {
      if (index >= dense_.size() || dense_[index] == kNoPfn) return kNoPfn;
      pfn = dense_[index];
      dense_[index] = kNoPfn;
    } else {
      const auto it = sparse_.find(index);
      if (it == sparse_.end()) return kNoPfn;
      pfn = it->second;
      sparse_.erase(it);
    }
    --size_;
    return pfn;
  }
  // Every (index, pfn), in index order.
  [[nodiscard]] std::vector<std::pair<std::uint64_t, Pfn>> all() const {
    std::vector<std::pair<std::uint64_t, Pfn>> out;
    for (std::size_t i = 0; i < dense_.size(); ++i) {
      if (dense_[i] != kNoPfn) out.emplace_back(i, dense_[i]);
    }
    std::vector<std::pair<std::uint64_t, Pfn>> rest(sparse_.begin(), sparse_.end());
    std::sort(rest.begin(), rest.end());
    out.insert(out.end(), rest.begin(), rest.end());
    return out;
  }
  // Pages held, as counted on insert and erase.
  [[nodiscard]] std::uint64_t size() const { return size_; }
  [[nodiscard]] std::size_t model_bytes() const { return dense_.capacity() * sizeof(Pfn) + sparse_.size() * 32; }

 private:
  std::vector<Pfn> dense_;
  std::unordered_map<std::uint64_t, Pfn> sparse_;
  std::uint64_t size_ = 0;
};

}  // namespace exmem::model::mm
