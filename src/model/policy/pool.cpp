// policy/: policies for unmapped pages (see policy.hpp for what the folder owns).
// pool.cpp: the shared pieces of pool.hpp.
#include "model/policy/pool.hpp"

#include <fmt/format.h>

namespace exmem::model::policy {

int unmap_range(const PolicyContext& c, Pfn pfn, Pfn n, CpuId cpu) {
  const int err = c.dmap.set_direct_map_valid_noflush(pfn, n, false, cpu);
  if (err != 0) return err;
  c.flushes.kernel_range(pfn, n, cpu, directmap::FlushReason::KernelRange);
  return 0;
}

int map_range(const PolicyContext& c, Pfn pfn, Pfn n, CpuId cpu) {
  return c.dmap.set_direct_map_valid_noflush(pfn, n, true, cpu);
}

void ChunkPool::add(Pfn start) {
  std::vector<Pfn>& f = chunks_[start];
  f.clear();
  for (Pfn i = kPagesPer2M; i-- > 0;) f.push_back(start + i);  // taken lowest first
  with_free_.insert(start);
  whole_.insert(start);
  free_ += kPagesPer2M;
}

Pfn ChunkPool::take() {
  if (with_free_.empty()) return kNoPfn;
  const Pfn start = *with_free_.begin();
  std::vector<Pfn>& f = chunks_[start];
  if (f.size() == kPagesPer2M) whole_.erase(start);
  const Pfn p = f.back();
  f.pop_back();
  if (f.empty()) with_free_.erase(start);
  --free_;
  return p;
}

Pfn ChunkPool::put(Pfn pfn) {
  const Pfn start = pfn & ~(kPagesPer2M - 1);
  std::vector<Pfn>& f = chunks_.at(start);
  f.push_back(pfn);
  with_free_.insert(start);
  ++free_;
  if (f.size() != kPagesPer2M) return kNoPfn;
  whole_.insert(start);
  return start;
}

void ChunkPool::remove(Pfn start) {
  free_ -= chunks_.at(start).size();
  chunks_.erase(start);
  with_free_.erase(start);
  whole_.erase(start);
}

Pfn ChunkPool::take_whole() {
  if (whole_.empty()) return kNoPfn;
  const Pfn start = *whole_.begin();  // the lowest wholly free chunk
  std::vector<Pfn>().swap(chunks_.at(start));  // in use as one folio: no list kept
  with_free_.erase(start);
  whole_.erase(start);
  free_ -= kPagesPer2M;
  return start;
}

void ChunkPool::put_whole(Pfn start) {
  std::vector<Pfn>& f = chunks_.at(start);
  for (Pfn i = kPagesPer2M; i-- > 0;) f.push_back(start + i);  // as add(): taken lowest first
  with_free_.insert(start);
  whole_.insert(start);
  free_ += kPagesPer2M;
}

std::vector<Pfn> ChunkPool::starts() const {
  std::vector<Pfn> out;
  for (const auto& [start, f] : chunks_) out.push_back(start);
  return out;
}

std::vector<std::string> ChunkPool::check(const phys::PhysMem& phys, const directmap::DirectMap& dmap,
                                                    std::string_view who) const {
  std::vector<std::string> v;
  std::uint64_t free = 0;
  for (const auto& [start, f] : chunks_) {
    if (start % kPagesPer2M != 0) v.push_back(fmt::format("{}: chunk {:#x} not 2 MiB aligned", who, start));
    std::uint64_t unmapped = 0;
    for (Pfn p = start; p < start + kPagesPer2M; ++p) {
      const phys::FrameKind k = phys.kind(p);
      if (k == phys::FrameKind::Unmapped) ++unmapped;
      else if (k != phys::FrameKind::Secret && v.size() < 16) {
        v.push_back(fmt::format("{}: chunk page {:#x} is a {} frame", who, p,
                                phys::frame_kind_name(phys.frame_byte(p))));
      }
      if (dmap.is_present(p) && v.size() < 16) {
        v.push_back(fmt::format("{}: chunk page {:#x} is present in the direct map", who, p));
      }
    }
    if (unmapped != f.size()) {
      v.push_back(fmt::format("{}: chunk {:#x} lists {} free pages but {} are Unmapped frames", who,
                              start, f.size(), unmapped));
    }
    if ((f.empty() == (with_free_.count(start) != 0))) {
      v.push_back(fmt::format("{}: chunk {:#x} misfiled in the with-free set", who, start));
    }
    if ((f.size() == kPagesPer2M) != (whole_.count(start) != 0)) {
      v.push_back(fmt::format("{}: chunk {:#x} with {} free pages misfiled in the wholly-free set", who, start,
                              f.size()));
    }
    free += f.size();
  }
  for (const Pfn start : whole_) {
    if (chunks_.count(start) == 0) {
      v.push_back(fmt::format("{}: wholly free chunk {:#x} is not in the pool", who, start));
    }
  }
  if (free != free_) v.push_back(fmt::format("{}: {} free pages counted, {} listed", who, free_, free));
  return v;
}

void UnmappedBuddy::add(Pfn pfn, unsigned order) {
  while (order < kMaxOrder) {
    const Pfn buddy = pfn ^ (Pfn{1} << order);
    auto it = lists_[order].find(buddy);
    if (it == lists_[order].end()) break;
    lists_[order].erase(it);
    free_ -= Pfn{1} << order;
    pfn &= ~(Pfn{1} << order);
    ++order;
  }
  lists_[order].insert(pfn);
  free_ += Pfn{1} << order;
}

Pfn UnmappedBuddy::take_block(unsigned order) {
  for (unsigned o = order; o <= kMaxOrder; ++o) {
    if (lists_[o].empty()) continue;
    const Pfn pfn = *lists_[o].begin();
    lists_[o].erase(lists_[o].begin());
    free_ -= Pfn{1} << o;
    // expand(): the upper halves go back on the lower lists
    while (o > order) {
      --o;
      lists_[o].insert(pfn + (Pfn{1} << o));
      free_ += Pfn{1} << o;
    }
    return pfn;
  }
  return kNoPfn;
}

bool UnmappedBuddy::take_largest(Pfn& pfn, unsigned& order) {
  for (unsigned o = kMaxOrder + 1; o-- > 0;) {
    if (lists_[o].empty()) continue;
    pfn = *lists_[o].begin();
    order = o;
    lists_[o].erase(lists_[o].begin());
    free_ -= Pfn{1} << o;
    return true;
  }
  return false;
}

std::vector<std::string> UnmappedBuddy::check(const phys::PhysMem& phys, const directmap::DirectMap& dmap,
                                                    std::string_view who) const {
  std::vector<std::string> v;
  std::uint64_t free = 0;
  for (unsigned o = 0; o <= kMaxOrder; ++o) {
    for (const Pfn p : lists_[o]) {
      free += Pfn{1} << o;
      if (p % (Pfn{1} << o) != 0) v.push_back(fmt::format("{}: order-{} block {:#x} misaligned", who, o, p));
      for (Pfn q = p; q < p + (Pfn{1} << o) && v.size() < 16; ++q) {
        if (phys.kind(q) != phys::FrameKind::Unmapped) {
          v.push_back(fmt::format("{}: cached page {:#x} is a {} frame", who, q,
                                  phys::frame_kind_name(phys.frame_byte(q))));
        }
        if (dmap.is_present(q)) {
          v.push_back(fmt::format("{}: cached page {:#x} is present in the direct map", who, q));
        }
      }
    }
  }
  if (free != free_) v.push_back(fmt::format("{}: {} free pages counted, {} listed", who, free_, free));
  return v;
}

void BlockLists::refile(Pfn block, std::size_t before) {
  if (before != 0) by_count_.erase({before, block});
  auto it = blocks_.find(block);
  if (it == blocks_.end()) return;
  if (it->second.empty()) {
    blocks_.erase(it);
    return;
  }
  by_count_.insert({it->second.size(), block});
}

void BlockLists::put(Pfn pfn) {
  const Pfn block = pageblock_of(pfn);
  std::vector<Pfn>& v = blocks_[block];
  const std::size_t before = v.size();
  v.push_back(pfn);
  ++total_;
  refile(block, before);
}

std::vector<Pfn> BlockLists::block_pages(Pfn block) {
  std::vector<Pfn> v;
  v.reserve(kPageblockNrPages);
  for (Pfn p = block; p < block + kPageblockNrPages; ++p) v.push_back(p);
  return v;
}

void BlockLists::put_block(Pfn block) {
  whole_.insert(block);
  by_count_.insert({kPageblockNrPages, block});
  total_ += kPageblockNrPages;
}

Pfn BlockLists::take() {
  if (by_count_.empty()) return kNoPfn;
  const Pfn block = by_count_.begin()->second;
  if (whole_.erase(block) != 0) blocks_[block] = block_pages(block);
  std::vector<Pfn>& v = blocks_.at(block);
  const std::size_t before = v.size();
  const Pfn p = v.back();
  v.pop_back();
  --total_;
  refile(block, before);
  return p;
}

std::vector<Pfn> BlockLists::take_block(Pfn block) {
  if (whole_.erase(block) != 0) {
    by_count_.erase({kPageblockNrPages, block});
    total_ -= kPageblockNrPages;
    return block_pages(block);
  }
  auto it = blocks_.find(block);
  if (it == blocks_.end()) return {};
  std::vector<Pfn> out = std::move(it->second);
  by_count_.erase({out.size(), block});
  blocks_.erase(it);
  total_ -= out.size();
  return out;
}

std::uint64_t BlockLists::in_block(Pfn block) const {
  if (whole_.count(block) != 0) return kPageblockNrPages;
  auto it = blocks_.find(block);
  return it == blocks_.end() ? 0 : it->second.size();
}

Pfn BlockLists::whole_block() const {
  if (by_count_.empty()) return kNoPfn;
  const auto last = by_count_.rbegin();
  return last->first == kPageblockNrPages ? last->second : kNoPfn;
}

std::vector<Pfn> BlockLists::whole_blocks() const {
  std::vector<Pfn> out;
  for (auto it = by_count_.rbegin(); it != by_count_.rend() && it->first == kPageblockNrPages; ++it) {
    out.push_back(it->second);
  }
  return out;
}

}  // namespace exmem::model::policy
