// policy/: policies for unmapped pages (see policy.hpp for what the folder owns).
// pte_mapped_cache_policy.cpp: "mm: introduce __GFP_PTE_MAPPED" (RFC, Mike
// Rapoport, 2021). Stated intent: callers that will change the direct-map
// attributes of their pages (write-protected page tables, secret memory) get
// them from a global cache of pages whose direct-map entries are already 4K,
// so that their attribute changes split nothing more. The cache is refilled
// with a 2 MiB allocation, split once; if none is free, with an order-0 page,
// and then the whole pageblock is marked pte-mapped so that its other pages
// join the cache when they are freed. A shrinker gives pages back under memory
// pressure. The RFC's TODO, done here: free cached pages are compacted into
// whole 2 MiB blocks (pages are served from the fullest pageblock first, so the
// others empty; in-use pages are unmovable and never moved), and a pageblock
// whose 512 pages are all cached gets its 2 MiB mapping back (the 4K pin
// cleared, the PTEs collapsed) and goes back to the buddy allocator.
//
// Cached pages are present in the direct map (Kernel frames mapped by 4K
// PTEs); a secret page taken from the cache is removed with no split and one
// single-page flush, and put back present when freed.
// A 2 MiB folio (a guest_memfd with 2 MiB folios) is a whole pageblock of the
// cache when one is wholly cached, else a 2 MiB allocation marked pte-mapped
// (one split, one flush); its 512 PTEs are then made not present as one range
// with one flush. Freed, they are made present again and join the cache,
// whose wholly cached pageblocks go back as above. Other large orders take
// the default path.
#include <fmt/format.h>

#include "model/policy/policy.hpp"
#include "model/policy/pool.hpp"

namespace exmem::model::policy {

namespace {

constexpr phys::Gfp kRefillGfp = phys::GFP_KERNEL | phys::__GFP_NORETRY | phys::__GFP_NOWARN;
// Free cached pages kept when a whole pageblock could be given back.
constexpr std::uint64_t kKeepCached = kPageblockNrPages;

class PteMappedCachePolicy final : public Policy {
 public:

  Result<Pfn> alloc_secret_page(CpuId cpu, Owner /*owner*/) override {
    if (cache_.empty()) {
      const int err = refill(cpu);
      if (err != 0) return Result<Pfn>::error(err);
    }
    const Pfn p = cache_.take();
    const int err = dmap().set_direct_map_invalid_noflush(p, cpu);  // a 4K PTE: no split
    if (err != 0) {
      cache_.put(p);
      return Result<Pfn>::error(err);
    }
    flushes().kernel_range(p, 1, cpu, directmap::FlushReason::KernelRange);
    phys().set_kind(p, 0, phys::FrameKind::Secret);
    return {p, 0};
  }

  void free_secret_page(Pfn pfn, CpuId cpu, Owner /*owner*/) override {
    dmap().set_direct_map_default_noflush(pfn, cpu);
    phys().set_kind(pfn, 0, phys::FrameKind::Kernel);
    cache_.put(pfn);
    maybe_restore(pageblock_of(pfn), cpu);
  }

  Result<Pfn> alloc_unmapped_folio(unsigned order, CpuId cpu, Owner owner) override {
    if (order != kPageblockOrder) return Policy::alloc_unmapped_folio(order, cpu, owner);
    Pfn block = cache_.whole_block();
    if (block != kNoPfn) {
      cache_.take_block(block);
    } else {
      const Result<Pfn> r = phys().alloc_pages(phys::GFP_HIGHUSER | phys::__GFP_ZERO, kPageblockOrder, cpu,
                                               phys::FrameKind::Kernel);
      if (!r.ok()) return r;
      block = r.value;
      mark(block, cpu);
      ++refills_2m_;
    }
    const int err = unmap_range(context(), block, kPageblockNrPages, cpu);  // 4K PTEs: no split
    if (err != 0) {
      cache_.put_block(block);
      return Result<Pfn>::error(err);
    }
    phys().set_kind(block, kPageblockOrder, phys::FrameKind::Secret);
    return {block, 0};
  }

  void free_unmapped_folio(Pfn pfn, unsigned order, CpuId cpu, Owner owner) override {
    if (order != kPageblockOrder) {
      Policy::free_unmapped_folio(pfn, order, cpu, owner);
      return;
    }
    map_range(context(), pfn, kPageblockNrPages, cpu);
    phys().set_kind(pfn, kPageblockOrder, phys::FrameKind::Kernel);
    cache_.put_block(pfn);
    maybe_restore(pfn, cpu);
  }

  // The RFC's first user: page tables made read-only come from the cache, so
  // set_memory_ro() splits nothing (one single-page flush).
  Result<Pfn> alloc_wp_table(CpuId cpu) override {
    if (cache_.empty()) {
      const int err = refill(cpu);
      if (err != 0) return Result<Pfn>::error(err);
    }
    const Pfn p = cache_.take();
    const int err = dmap().set_memory_ro(p, 1, cpu);
    if (err != 0) {
      cache_.put(p);
      return Result<Pfn>::error(err);
    }
    return {p, 0};
  }
  void free_wp_table(Pfn pfn, CpuId cpu) override {
    dmap().set_memory_rw(pfn, 1, cpu);
    cache_.put(pfn);
    maybe_restore(pageblock_of(pfn), cpu);
  }

  // __free_pages() of a page in a pte-mapped pageblock: into the cache.
  bool on_free(Pfn pfn, unsigned order, CpuId cpu) override {
    if (order > kPageblockOrder || marked_.count(pageblock_of(pfn)) == 0) return false;
    phys().set_kind(pfn, order, phys::FrameKind::Kernel);
    for (Pfn p = pfn; p < pfn + (Pfn{1} << order); ++p) cache_.put(p);
    joined_ += Pfn{1} << order;
    maybe_restore(pageblock_of(pfn), cpu);
    return true;
  }

  // The cache's shrinker: whole pageblocks first (their 2 MiB mapping back),
  // then single pages; a pageblock that gave pages back is no longer marked.
  std::uint64_t shrink(std::uint64_t nr, CpuId cpu) override {
    std::uint64_t given = 0;
    for (const Pfn b : cache_.whole_blocks()) {
      if (given >= nr) break;
      restore_block(b, cpu);
      given += kPageblockNrPages;
    }
    while (given < nr && !cache_.empty()) {
      const Pfn p = cache_.take();
      marked_.erase(pageblock_of(p));
      phys().free_pages(p, 0, cpu);
      ++given;
      ++shrunk_;
    }
    return given;
  }

  [[nodiscard]] std::uint64_t pooled_pages() const override { return cache_.free_pages(); }
  [[nodiscard]] std::vector<Counter> counters() const override {
    return {{"marked_pageblocks", marked_.size()}, {"refills_2m", refills_2m_},
            {"refills_order0", refills_order0_},   {"pages_joined_on_free", joined_},
            {"blocks_restored_2m", restored_},     {"pages_shrunk", shrunk_}};
  }
  [[nodiscard]] std::vector<std::string> check() const override {
    std::vector<std::string> v;
    cache_.for_each([&](Pfn p) {
      if (v.size() >= 16) return;
      if (phys().kind(p) != phys::FrameKind::Kernel) {
        v.push_back(fmt::format("{}: cached page {:#x} is a {} frame", name(), p,
                                phys::frame_kind_name(phys().frame_byte(p))));
      }
      const directmap::Lookup l = dmap().lookup(p);
      if (!l.present() || l.level != directmap::Level::Pte4K) {
        v.push_back(fmt::format("{}: cached page {:#x} is not a present 4K PTE", name(), p));
      }
    });
    for (const Pfn b : marked_) {
      if (dmap().lookup(b).level == directmap::Level::Pmd2M ||
          dmap().lookup(b).level == directmap::Level::Pud1G) {
        v.push_back(fmt::format("{}: marked pageblock {:#x} is mapped by a large leaf", name(), b));
      }
    }
    return v;
  }

 private:
  int refill(CpuId cpu) {
    Result<Pfn> r = phys().alloc_pages(kRefillGfp, kPageblockOrder, cpu, phys::FrameKind::Kernel);
    if (r.ok()) {
      mark(r.value, cpu);
      for (Pfn p = r.value; p < r.value + kPageblockNrPages; ++p) cache_.put(p);
      ++refills_2m_;
      return 0;
    }
    r = phys().alloc_pages(phys::GFP_KERNEL, 0, cpu, phys::FrameKind::Kernel);
    if (!r.ok()) return r.err;
    mark(pageblock_of(r.value), cpu);
    cache_.put(r.value);
    ++refills_order0_;
    return 0;
  }
  // set_memory_4k() on the whole pageblock: one split, one flush, and the
  // pageblock flag that sends its freed pages to the cache.
  void mark(Pfn block, CpuId cpu) {
    if (!marked_.insert(block).second) return;
    dmap().set_memory_4k(block, kPageblockNrPages, cpu);
  }
  void maybe_restore(Pfn block, CpuId cpu) {
    if (cache_.in_block(block) == kPageblockNrPages &&
        cache_.free_pages() >= kPageblockNrPages + kKeepCached) {
      restore_block(block, cpu);
    }
  }
  void restore_block(Pfn block, CpuId cpu) {
    cache_.take_block(block);
    marked_.erase(block);
    dmap().clear_4k_and_collapse(block, kPageblockNrPages, cpu);
    phys().free_pages(block, kPageblockOrder, cpu);
    ++restored_;
  }

  BlockLists cache_;
  std::set<Pfn> marked_;
  std::uint64_t refills_2m_ = 0;
  std::uint64_t refills_order0_ = 0;
  std::uint64_t joined_ = 0;
  std::uint64_t restored_ = 0;
  std::uint64_t shrunk_ = 0;
};

}  // namespace

void exmem_model_register_pte_mapped_cache_policy(Registry& registry) {
  registry.add({"pte-mapped-cache",
                "__GFP_PTE_MAPPED (2021): cache of 4K-mapped pages refilled by 2 MiB (else order-0 "
                "+ pageblock marked), shrinker, whole free blocks collapsed back to 2 MiB",
                [] { return std::make_unique<PteMappedCachePolicy>(); }});
}

}  // namespace exmem::model::policy
