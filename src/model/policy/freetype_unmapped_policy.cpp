// policy/: policies for unmapped pages (see policy.hpp for what the folder owns).
// freetype_unmapped_policy.cpp: "__GFP_UNMAPPED" on top of "freetypes" (RFC
// series under review in 2026, building on Brendan Jackman's freetype work
// for address-space isolation and guest_memfd). Stated intent: make the page
// allocator itself aware of the direct map: free lists are indexed by a
// freetype (the migratetype plus flags, here the unmapped flag), a pageblock
// flag marks pageblocks whose pages are handed out unmapped, and pools of
// already-unmapped contiguous pages let one TLB flush cover many pages.
//
// Mechanism in the model: the unmapped free lists, one per migratetype, hold
// free pages that are out of the direct map; a request for an unmapped page
// takes from the unmovable list, then from the others in the fallback order.
// When all are empty, pages of flagged pageblocks that were freed while mapped
// (kept on the mapped lists of their freetype) are unmapped as one batch with
// one flush; failing that the allocator takes a whole pageblock (or else the
// highest order available), sets the pageblock flag and unmaps the block as one
// range with one flush: a whole pageblock leaves as one 2 MiB leaf made not
// present, with no split at all. Freed secret pages go back to the unmapped
// lists with no direct-map change. A shrinker returns the mapped lists first,
// then wholly free unmapped pageblocks, mapped back as one range.
// A 2 MiB folio (a guest_memfd with 2 MiB folios) is a whole pageblock: one
// wholly free on an unmapped list (no direct-map change, no flush), else one
// from the page allocator, flagged and unmapped as one range with one flush;
// freed, its pages join the unmapped list of its freetype, still unmapped.
// Other large orders take the default path.
#include <fmt/format.h>

#include "model/policy/alloc_util.hpp"
#include "model/policy/policy.hpp"
#include "model/policy/pool.hpp"

namespace exmem::model::policy {

namespace {

struct Freetype {
  phys::Migratetype mt = phys::MIGRATE_UNMOVABLE;
  bool unmapped = false;
  [[nodiscard]] unsigned index() const { return static_cast<unsigned>(mt) * 2 + (unmapped ? 1 : 0); }
};
constexpr unsigned kNrFreetypes = phys::MIGRATE_PCPTYPES * 2;

class FreetypeUnmappedPolicy final : public Policy {
 public:

  Result<Pfn> alloc_secret_page(CpuId cpu, Owner /*owner*/) override {
    Pfn p = take_unmapped();
    if (p == kNoPfn && unmap_batch(cpu)) p = take_unmapped();
    if (p == kNoPfn) {
      const int err = refill(cpu);
      if (err != 0) return Result<Pfn>::error(err);
      p = take_unmapped();
    }
    phys().set_kind(p, 0, phys::FrameKind::Secret);
    return {p, 0};
  }

  void free_secret_page(Pfn pfn, CpuId cpu, Owner /*owner*/) override {
    (void)cpu;
    phys().set_kind(pfn, 0, phys::FrameKind::Unmapped);
    lists_[freetype_of(pfn, true).index()].put(pfn);
  }

  Result<Pfn> alloc_unmapped_folio(unsigned order, CpuId cpu, Owner owner) override {
    if (order != kPageblockOrder) return Policy::alloc_unmapped_folio(order, cpu, owner);
    for (const phys::Migratetype mt : kUnmappedOrder) {
      BlockLists& l = lists_[Freetype{mt, true}.index()];
      const Pfn whole = l.whole_block();
      if (whole == kNoPfn) continue;
      l.take_block(whole);
      phys().set_kind(whole, kPageblockOrder, phys::FrameKind::Secret);
      return {whole, 0};
    }
    const Result<Pfn> r = Policy::alloc_unmapped_folio(order, cpu, owner);
    if (r.ok()) {
      flagged_.insert(r.value);
      ++whole_;
    }
    return r;
  }

  void free_unmapped_folio(Pfn pfn, unsigned order, CpuId cpu, Owner owner) override {
    if (order != kPageblockOrder) {
      Policy::free_unmapped_folio(pfn, order, cpu, owner);
      return;
    }
    phys().set_kind(pfn, kPageblockOrder, phys::FrameKind::Unmapped);
    lists_[freetype_of(pfn, true).index()].put_block(pfn);
  }

  // A page of a flagged pageblock freed by another user: it is still mapped;
  // it waits on the mapped list of its freetype for the next batch.
  bool on_free(Pfn pfn, unsigned order, CpuId cpu) override {
    (void)cpu;
    if (order > kPageblockOrder || flagged_.count(pageblock_of(pfn)) == 0) return false;
    phys().set_kind(pfn, order, phys::FrameKind::Kernel);
    BlockLists& l = lists_[freetype_of(pfn, false).index()];
    for (Pfn p = pfn; p < pfn + (Pfn{1} << order); ++p) l.put(p);
    joined_ += Pfn{1} << order;
    return true;
  }

  std::uint64_t shrink(std::uint64_t nr, CpuId cpu) override {
    std::uint64_t given = 0;
    for (unsigned mt = 0; mt < phys::MIGRATE_PCPTYPES; ++mt) {
      BlockLists& mapped = lists_[Freetype{static_cast<phys::Migratetype>(mt), false}.index()];
      while (given < nr && !mapped.empty()) {
        phys().free_pages(mapped.take(), 0, cpu);
        ++given;
      }
    }
    for (unsigned mt = 0; mt < phys::MIGRATE_PCPTYPES; ++mt) {
      BlockLists& un = lists_[Freetype{static_cast<phys::Migratetype>(mt), true}.index()];
      for (const Pfn b : un.whole_blocks()) {
        if (given >= nr) break;
        un.take_block(b);
        flagged_.erase(b);
        map_range(context(), b, kPageblockNrPages, cpu);
        phys().free_pages(b, kPageblockOrder, cpu);
        given += kPageblockNrPages;
        ++returned_;
      }
    }
    return given;
  }

  [[nodiscard]] std::uint64_t pooled_pages() const override {
    std::uint64_t n = 0;
    for (const BlockLists& l : lists_) n += l.free_pages();
    return n;
  }
  [[nodiscard]] std::vector<Counter> counters() const override {
    return {{"flagged_pageblocks", flagged_.size()}, {"refills_whole_pageblock", whole_},
            {"refills_lower_order", partial_},       {"batches_unmapped", batches_},
            {"pages_unmapped_in_batches", batched_pages_}, {"pages_joined_on_free", joined_},
            {"pageblocks_returned", returned_}};
  }
  [[nodiscard]] std::vector<std::string> check() const override {
    std::vector<std::string> v;
    for (unsigned i = 0; i < kNrFreetypes; ++i) {
      const bool unmapped = (i & 1) != 0;
      lists_[i].for_each([&](Pfn p) {
        if (v.size() >= 16) return;
        const phys::FrameKind want = unmapped ? phys::FrameKind::Unmapped : phys::FrameKind::Kernel;
        if (phys().kind(p) != want || dmap().is_present(p) == unmapped) {
          v.push_back(fmt::format("{}: page {:#x} on the {} list is a {} frame, {}", name(), p,
                                  unmapped ? "unmapped" : "mapped",
                                  phys::frame_kind_name(phys().frame_byte(p)),
                                  dmap().is_present(p) ? "present" : "not present"));
        }
        if (flagged_.count(pageblock_of(p)) == 0) {
          v.push_back(fmt::format("{}: page {:#x} listed outside the flagged pageblocks", name(), p));
        }
      });
    }
    return v;
  }

 private:
  [[nodiscard]] Freetype freetype_of(Pfn pfn, bool unmapped) const {
    phys::Migratetype mt = phys().pageblock_migratetype(pfn);
    if (mt >= phys::MIGRATE_PCPTYPES) mt = phys::MIGRATE_UNMOVABLE;
    return {mt, unmapped};
  }
  // The unmovable unmapped list, then the others in fallback order.
  static constexpr phys::Migratetype kUnmappedOrder[] = {phys::MIGRATE_UNMOVABLE, phys::kFallbacks[0][0],
                                                         phys::kFallbacks[0][1]};
  Pfn take_unmapped() {
    for (const phys::Migratetype mt : kUnmappedOrder) {
      BlockLists& l = lists_[Freetype{mt, true}.index()];
      if (!l.empty()) return l.take();
    }
    return kNoPfn;
  }
  // Every page waiting on a mapped list leaves the direct map; one flush for all.
  bool unmap_batch(CpuId cpu) {
    Pfn lo = kNoPfn;
    Pfn hi = 0;
    std::uint64_t n = 0;
    for (unsigned mt = 0; mt < phys::MIGRATE_PCPTYPES; ++mt) {
      const auto type = static_cast<phys::Migratetype>(mt);
      BlockLists& mapped = lists_[Freetype{type, false}.index()];
      BlockLists& un = lists_[Freetype{type, true}.index()];
      while (!mapped.empty()) {
        const Pfn p = mapped.take();
        if (dmap().set_direct_map_invalid_noflush(p, cpu) != 0) {
          phys().free_pages(p, 0, cpu);  // no table page to split with: give it back
          continue;
        }
        phys().set_kind(p, 0, phys::FrameKind::Unmapped);
        un.put(p);
        lo = std::min(lo, p);
        hi = std::max(hi, p);
        ++n;
      }
    }
    if (n == 0) return false;
    flushes().kernel_range(lo, hi - lo + 1, cpu, directmap::FlushReason::KernelRange);
    ++batches_;
    batched_pages_ += n;
    return true;
  }
  int refill(CpuId cpu) {
    unsigned o = 0;
    const Result<Pfn> r = alloc_highest(phys(), kPageblockOrder, cpu, phys::FrameKind::Unmapped, o);
    if (!r.ok()) return r.err;
    const Pfn n = Pfn{1} << o;
    const int err = unmap_range(context(), r.value, n, cpu);
    if (err != 0) {
      phys().free_pages(r.value, o, cpu);
      return err;
    }
    flagged_.insert(pageblock_of(r.value));
    BlockLists& l = lists_[freetype_of(r.value, true).index()];
    for (Pfn p = r.value; p < r.value + n; ++p) l.put(p);
    if (o == kPageblockOrder) {
      ++whole_;
    } else {
      ++partial_;
    }
    return 0;
  }

  std::array<BlockLists, kNrFreetypes> lists_{};
  std::set<Pfn> flagged_;  // the pageblock flag: pages handed out unmapped
  std::uint64_t whole_ = 0;
  std::uint64_t partial_ = 0;
  std::uint64_t batches_ = 0;
  std::uint64_t batched_pages_ = 0;
  std::uint64_t joined_ = 0;
  std::uint64_t returned_ = 0;
};

}  // namespace

void exmem_model_register_freetype_unmapped_policy(Registry& registry) {
  registry.add({"freetype-unmapped",
                "__GFP_UNMAPPED with freetypes (2026): free lists by migratetype + unmapped flag, "
                "a pageblock flag, pools of unmapped contiguous pages, batched flushes",
                [] { return std::make_unique<FreetypeUnmappedPolicy>(); }});
}

}  // namespace exmem::model::policy
