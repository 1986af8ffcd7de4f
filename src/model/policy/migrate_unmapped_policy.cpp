// policy/: policies for unmapped pages (see policy.hpp for what the folder owns).
// migrate_unmapped_policy.cpp: "mm/page_alloc: introduce __GFP_UNMAPPED and
// MIGRATE_UNMAPPED" (RFC, Mike Rapoport, January 2022). Stated intent: group
// pages that are removed from the direct map in pageblocks of their own, so
// that the splits they cause stay in few 2 MiB regions; the author reported
// the direct-map splits of module loading going from several tens to single
// digits. Mechanism: a migratetype MIGRATE_UNMAPPED; when its free lists are
// empty the allocator steals a whole pageblock, remaps it with PTEs (one split
// and one flush), removes its free pages from the direct map and moves them to
// the unmapped lists; pages of that pageblock freed later join the unmapped
// lists too (removed from the direct map as they arrive). A secret page is
// taken from the lists with no direct-map change and no flush, and goes back
// there when freed, still unmapped.
//
// The model's allocator has no MIGRATE_UNMAPPED lists of its own, so the
// policy keeps them: it steals the largest free block (a whole pageblock when
// one is free, as __rmqueue_fallback() prefers), and frees of the stolen
// pageblock's other pages reach the lists through Policy::on_free (free pages
// the buddy held in that pageblock at steal time join when next freed). Under
// memory pressure a shrinker maps wholly free pageblocks back and returns them.
// A 2 MiB folio (a guest_memfd with 2 MiB folios) is a whole pageblock of the
// unmapped lists when one is wholly free (no direct-map change, no flush), else
// a pageblock stolen whole for it: remapped with PTEs as every MIGRATE_UNMAPPED
// pageblock is (one split, one flush) and unmapped as one range (one flush).
// Freed, its pages join the unmapped lists. Other large orders take the
// default path.
#include <fmt/format.h>

#include "model/policy/alloc_util.hpp"
#include "model/policy/policy.hpp"
#include "model/policy/pool.hpp"

namespace exmem::model::policy {

namespace {

class MigrateUnmappedPolicy final : public Policy {
 public:

  Result<Pfn> alloc_secret_page(CpuId cpu, Owner /*owner*/) override {
    if (lists_.empty()) {
      const int err = steal(cpu);
      if (err != 0) return Result<Pfn>::error(err);
    }
    const Pfn p = lists_.take();
    phys().set_kind(p, 0, phys::FrameKind::Secret);
    return {p, 0};
  }

  void free_secret_page(Pfn pfn, CpuId cpu, Owner /*owner*/) override {
    (void)cpu;
    phys().set_kind(pfn, 0, phys::FrameKind::Unmapped);  // stays out of the direct map
    lists_.put(pfn);
  }

  Result<Pfn> alloc_unmapped_folio(unsigned order, CpuId cpu, Owner owner) override {
    if (order != kPageblockOrder) return Policy::alloc_unmapped_folio(order, cpu, owner);
    const Pfn whole = lists_.whole_block();
    if (whole != kNoPfn) {
      lists_.take_block(whole);
      phys().set_kind(whole, kPageblockOrder, phys::FrameKind::Secret);
      return {whole, 0};
    }
    const Result<Pfn> r =
        phys().alloc_pages(phys::GFP_HIGHUSER | phys::__GFP_ZERO, kPageblockOrder, cpu, phys::FrameKind::Secret);
    if (!r.ok()) return r;
    if (const int err = mark_unmapped(r.value, cpu); err != 0) {
      phys().free_pages(r.value, kPageblockOrder, cpu);
      return Result<Pfn>::error(err);
    }
    const int err = unmap_range(context(), r.value, kPageblockNrPages, cpu);
    if (err != 0) {
      blocks_.erase(r.value);
      dmap().clear_4k(r.value, kPageblockNrPages, cpu);
      phys().free_pages(r.value, kPageblockOrder, cpu);
      return Result<Pfn>::error(err);
    }
    ++whole_;
    return r;
  }

  void free_unmapped_folio(Pfn pfn, unsigned order, CpuId cpu, Owner owner) override {
    if (order != kPageblockOrder) {
      Policy::free_unmapped_folio(pfn, order, cpu, owner);
      return;
    }
    phys().set_kind(pfn, kPageblockOrder, phys::FrameKind::Unmapped);  // stays out of the direct map
    lists_.put_block(pfn);
  }

  // __free_one_page() into a MIGRATE_UNMAPPED pageblock: the unmapped list.
  bool on_free(Pfn pfn, unsigned order, CpuId cpu) override {
    if (order > kPageblockOrder || blocks_.count(pageblock_of(pfn)) == 0) return false;
    const Pfn n = Pfn{1} << order;
    if (unmap_range(context(), pfn, n, cpu) != 0) return false;
    phys().set_kind(pfn, order, phys::FrameKind::Unmapped);
    for (Pfn p = pfn; p < pfn + n; ++p) lists_.put(p);
    joined_ += n;
    return true;
  }

  std::uint64_t shrink(std::uint64_t nr, CpuId cpu) override {
    std::uint64_t given = 0;
    for (const Pfn b : lists_.whole_blocks()) {
      if (given >= nr) break;
      lists_.take_block(b);
      blocks_.erase(b);
      dmap().clear_4k(b, kPageblockNrPages, cpu);  // back to an ordinary pageblock
      map_range(context(), b, kPageblockNrPages, cpu);
      phys().free_pages(b, kPageblockOrder, cpu);
      given += kPageblockNrPages;
      ++returned_;
    }
    return given;
  }

  [[nodiscard]] std::uint64_t pooled_pages() const override { return lists_.free_pages(); }
  [[nodiscard]] std::vector<Counter> counters() const override {
    return {{"unmapped_pageblocks", blocks_.size()}, {"whole_pageblocks_stolen", whole_},
            {"partial_steals", partial_},            {"pages_joined_on_free", joined_},
            {"pageblocks_returned", returned_},     {"split_failures", split_failures_}};
  }
  [[nodiscard]] std::vector<std::string> check() const override {
    std::vector<std::string> v;
    lists_.for_each([&](Pfn p) {
      if (v.size() >= 16) return;
      if (phys().kind(p) != phys::FrameKind::Unmapped || dmap().is_present(p)) {
        v.push_back(fmt::format("{}: listed page {:#x} is not an unmapped Unmapped frame", name(), p));
      }
      if (blocks_.count(pageblock_of(p)) == 0) {
        v.push_back(fmt::format("{}: listed page {:#x} outside the unmapped pageblocks", name(), p));
      }
    });
    for (const Pfn b : blocks_) {
      const directmap::Level l = dmap().lookup(b).level;
      if (l == directmap::Level::Pmd2M || l == directmap::Level::Pud1G) {
        v.push_back(fmt::format("{}: unmapped pageblock {:#x} is not remapped with PTEs", name(), b));
      }
    }
    return v;
  }

 private:
  // mirrors set_pageblock_unmapped(): the pageblock becomes MIGRATE_UNMAPPED,
  // remapped with PTEs (set_memory_4k() here: one split, one flush). The
  // split's page-table page can fail to come; then, as in the RFC, the
  // pageblock keeps its migratetype, left as it was (the split is the change's
  // first step), and the allocation fails with the error.
  int mark_unmapped(Pfn block, CpuId cpu) {
    if (!blocks_.insert(block).second) return 0;  // already remapped with PTEs
    const int err = dmap().set_memory_4k(block, kPageblockNrPages, cpu);
    if (err != 0) {
      blocks_.erase(block);
      ++split_failures_;
    }
    return err;
  }

  int steal(CpuId cpu) {
    unsigned o = 0;
    const Result<Pfn> r = alloc_highest(phys(), kPageblockOrder, cpu, phys::FrameKind::Unmapped, o);
    if (!r.ok()) return r.err;
    const Pfn n = Pfn{1} << o;
    if (const int err = mark_unmapped(pageblock_of(r.value), cpu); err != 0) {
      phys().free_pages(r.value, o, cpu);
      return err;
    }
    const int err = unmap_range(context(), r.value, n, cpu);
    if (err != 0) {
      phys().free_pages(r.value, o, cpu);
      return err;
    }
    for (Pfn p = r.value; p < r.value + n; ++p) lists_.put(p);
    if (o == kPageblockOrder) {
      ++whole_;
    } else {
      ++partial_;
    }
    return 0;
  }

  BlockLists lists_;
  std::set<Pfn> blocks_;  // pageblocks of migratetype MIGRATE_UNMAPPED
  std::uint64_t whole_ = 0;
  std::uint64_t partial_ = 0;
  std::uint64_t joined_ = 0;
  std::uint64_t returned_ = 0;
  std::uint64_t split_failures_ = 0;  // pageblocks set_memory_4k() could not split
};

}  // namespace

void exmem_model_register_migrate_unmapped_policy(Registry& registry) {
  registry.add({"migrate-unmapped",
                "MIGRATE_UNMAPPED (2022): steal a whole pageblock, remap it with PTEs, move its "
                "free pages to the unmapped lists; its pages freed later join them",
                [] { return std::make_unique<MigrateUnmappedPolicy>(); }});
}

}  // namespace exmem::model::policy
