// policy/: policies for unmapped pages (see policy.hpp for what the folder owns).
// pool.hpp: pieces several policies share: removing and restoring direct-map
// ranges with one flush, a pool of 2 MiB chunks handing out 4 KiB pages, and a
// buddy-style cache of unmapped blocks (orders 0 to pageblock_order).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "model/directmap/directmap.hpp"
#include "model/phys/physmem.hpp"
#include "model/policy/policy.hpp"
#include "model/types.hpp"

namespace exmem::model::policy {

// set_direct_map_valid_noflush(pfn, n, false) and one flush_tlb_kernel_range()
// for the whole range (a full flush above the single-page ceiling).
int unmap_range(const PolicyContext& c, Pfn pfn, Pfn n, CpuId cpu);
// set_direct_map_valid_noflush(pfn, n, true): a not-present entry is never
// cached by a TLB, so no flush (the direct map tells the collapse mode).
int map_range(const PolicyContext& c, Pfn pfn, Pfn n, CpuId cpu);

// 2 MiB chunks already out of the direct map; free pages are Unmapped frames,
// pages handed out are Secret frames. Pages are taken from the lowest chunk
// with free pages so that the others can empty and go back.
class ChunkPool {
 public:
  void add(Pfn start);  // every page of the chunk free
  [[nodiscard]] bool has_free() const { return free_ != 0; }
  Pfn take();
  // A page back; returns its chunk's start when the chunk is now wholly free.
  Pfn put(Pfn pfn);
  void remove(Pfn start);  // a wholly free chunk leaves the pool
  // A 2 MiB folio: every page of the lowest wholly free chunk at once (the
  // chunk stays in the pool, wholly in use); kNoPfn when no chunk is wholly free.
  Pfn take_whole();
  // Such a folio back: every page of the chunk free again.
  void put_whole(Pfn start);
  [[nodiscard]] bool owns(Pfn pfn) const { return chunks_.count(pfn & ~(kPagesPer2M - 1)) != 0; }
  [[nodiscard]] std::uint64_t free_pages() const { return free_; }
  [[nodiscard]] std::uint64_t chunks() const { return chunks_.size(); }
  // The wholly free chunks, lowest first.
  [[nodiscard]] std::vector<Pfn> wholly_free() const { return {whole_.begin(), whole_.end()}; }
  // The lowest wholly free chunk at or above `from`; kNoPfn when none.
  [[nodiscard]] Pfn wholly_free_from(Pfn from) const {
    const auto it = whole_.lower_bound(from);
    return it == whole_.end() ? kNoPfn : *it;
  }
  [[nodiscard]] std::vector<Pfn> starts() const;
  // Every chunk aligned and absent from the direct map; its free pages
  // Unmapped frames, the others Secret frames; the counts add up.
  [[nodiscard]] std::vector<std::string> check(const phys::PhysMem& phys, const directmap::DirectMap& dmap,
                                                    std::string_view who) const;

 private:
  std::map<Pfn, std::vector<Pfn>> chunks_;  // chunk start -> its free pages
  std::set<Pfn> with_free_;
  std::set<Pfn> whole_;  // chunks all of whose pages are free: trimming looks here, not at every chunk
  std::uint64_t free_ = 0;
};

// A buddy allocator of its own over blocks that are out of the direct map:
// free blocks of orders 0..kPageblockOrder, merged with their buddy when both
// are free (the cache only ever holds whole naturally aligned blocks it got
// from the page allocator, so a free buddy in the cache is always its own).
class UnmappedBuddy {
 public:
  static constexpr unsigned kMaxOrder = kPageblockOrder;
  void add(Pfn pfn, unsigned order);  // merges
  // An order-0 page, splitting the smallest free block; kNoPfn when empty.
  Pfn take_page() { return take_block(0); }
  // A block of 2^order pages (order <= kMaxOrder), splitting the smallest free
  // block that holds one (expand()); kNoPfn when there is none.
  Pfn take_block(unsigned order);
  // The largest free block (for shrinkers): false when empty.
  bool take_largest(Pfn& pfn, unsigned& order);
  [[nodiscard]] std::uint64_t free_pages() const { return free_; }
  [[nodiscard]] bool empty() const { return free_ == 0; }
  [[nodiscard]] std::vector<std::string> check(const phys::PhysMem& phys, const directmap::DirectMap& dmap,
                                                    std::string_view who) const;

 private:
  std::array<std::set<Pfn>, kMaxOrder + 1> lists_{};
  std::uint64_t free_ = 0;
};

// Free order-0 pages a policy holds, filed by pageblock. take() serves the
// pageblock with the fewest free pages first, so that the others fill up to
// whole free pageblocks: the way free cached pages are compacted into whole
// 2 MiB blocks without moving any page that is in use.
class BlockLists {
 public:
  void put(Pfn pfn);
  // Every page of a pageblock none of whose pages is listed, at once (as 512
  // put()s in pfn order would file them). Kept as the block's start alone
  // until a page of it is taken: 2 MiB folios freed by the thousand cost no
  // per-page list.
  void put_block(Pfn block);
  Pfn take();  // kNoPfn when empty
  // Takes every page of one pageblock (which must hold `count` of them).
  std::vector<Pfn> take_block(Pfn block);
  [[nodiscard]] std::uint64_t free_pages() const { return total_; }
  [[nodiscard]] bool empty() const { return total_ == 0; }
  [[nodiscard]] std::uint64_t in_block(Pfn block) const;
  // Pageblocks whose 512 pages are all here.
  [[nodiscard]] std::vector<Pfn> whole_blocks() const;
  // The first of whole_blocks() (the highest such pageblock), in O(log n); kNoPfn when none.
  [[nodiscard]] Pfn whole_block() const;
  template <class F>
  void for_each(F&& f) const {
    for (const auto& [block, pages] : blocks_) {
      for (const Pfn p : pages) f(p);
    }
    for (const Pfn block : whole_) {
      for (Pfn p = block; p < block + kPageblockNrPages; ++p) f(p);
    }
  }

 private:
  void refile(Pfn block, std::size_t before);
  // A block put whole: its page list as put_block() would have filed it.
  static std::vector<Pfn> block_pages(Pfn block);
  std::map<Pfn, std::vector<Pfn>> blocks_;
  std::set<Pfn> whole_;  // blocks put whole by put_block(), none of their pages taken since
  std::set<std::pair<std::size_t, Pfn>> by_count_;  // (free pages, pageblock)
  std::uint64_t total_ = 0;
};

inline Pfn pageblock_of(Pfn pfn) { return pfn & ~(kPageblockNrPages - 1); }

}  // namespace exmem::model::policy
