// policy/: policies for unmapped pages (see policy.hpp for what the folder owns).
// unmapped_alloc_policy.cpp: "mm: introduce unmapped_alloc()" (RFC, Mike
// Rapoport, March 2023). Stated intent: a small allocator beside the page
// allocator for pages that must not be in the direct map, so that removing
// them fragments it as little as possible without touching the core buddy
// code. Mechanism: a separate buddy-style cache of unmapped blocks; when empty
// it is refilled with a 2 MiB page or, failing that, the highest order
// available, removed from the direct map as one range with one flush; pages
// are split out of it, go back to it (merging with their buddies) when freed,
// and stay unmapped; a shrinker maps cached blocks back and returns them to
// the page allocator under memory pressure.
// A large folio (a guest_memfd with 2 MiB folios) is a block of its order
// split from the cache (no direct-map change, no flush); when the cache holds
// none, a block of that order from the page allocator joins the cache first,
// removed as one range with one flush. Freed, it goes back to the cache.
#include <utility>
#include <vector>

#include "model/policy/alloc_util.hpp"
#include "model/policy/policy.hpp"
#include "model/policy/pool.hpp"

namespace exmem::model::policy {

namespace {

class UnmappedAllocPolicy final : public Policy {
 public:

  Result<Pfn> alloc_secret_page(CpuId cpu, Owner /*owner*/) override {
    if (cache_.empty()) {
      const int err = refill(cpu);
      if (err != 0) return Result<Pfn>::error(err);
    }
    const Pfn p = cache_.take_page();
    phys().set_kind(p, 0, phys::FrameKind::Secret);
    return {p, 0};
  }

  void free_secret_page(Pfn pfn, CpuId cpu, Owner /*owner*/) override {
    (void)cpu;
    phys().set_kind(pfn, 0, phys::FrameKind::Unmapped);
    cache_.add(pfn, 0);
  }

  Result<Pfn> alloc_unmapped_folio(unsigned order, CpuId cpu, Owner owner) override {
    if (order == 0 || order > UnmappedBuddy::kMaxOrder) return Policy::alloc_unmapped_folio(order, cpu, owner);
    Pfn p = cache_.take_block(order);
    if (p == kNoPfn) {
      const Result<Pfn> r = phys().alloc_pages(phys::GFP_HIGHUSER | phys::__GFP_ZERO, order, cpu,
                                               phys::FrameKind::Unmapped);
      if (!r.ok()) return r;
      const int err = unmap_range(context(), r.value, Pfn{1} << order, cpu);
      if (err != 0) {
        phys().free_pages(r.value, order, cpu);
        return Result<Pfn>::error(err);
      }
      cache_.add(r.value, order);
      if (order == kPageblockOrder) {
        ++refills_2m_;
      } else {
        ++refills_lower_;
      }
      p = cache_.take_block(order);
    }
    phys().set_kind(p, order, phys::FrameKind::Secret);
    return {p, 0};
  }

  void free_unmapped_folio(Pfn pfn, unsigned order, CpuId cpu, Owner owner) override {
    if (order == 0 || order > UnmappedBuddy::kMaxOrder) {
      Policy::free_unmapped_folio(pfn, order, cpu, owner);
      return;
    }
    phys().set_kind(pfn, order, phys::FrameKind::Unmapped);
    cache_.add(pfn, order);
  }

  // unmapped_alloc_scan_objects(): largest blocks first, mapped back, freed.
  // Mapping a block smaller than 2 MiB back splits the 2 MiB leaf the refill
  // removed whole, and the split's page-table page can fail to come under the
  // very pressure that runs the shrinker. The RFC ignores
  // set_direct_map_default_noflush()'s error and frees the page anyway, out of
  // the direct map, where the next kernel access to it faults. The model does
  // not free such a block: it stays cached, unmapped, and is counted
  // (shrink_map_failures), so a run shows how often the RFC as posted would
  // have done so. (A failed map leaves the block as it was: a cached block
  // lies in one 2 MiB leaf, and the split is the first step of the change.)
  std::uint64_t shrink(std::uint64_t nr, CpuId cpu) override {
    std::uint64_t given = 0;
    Pfn pfn = 0;
    unsigned order = 0;
    std::vector<std::pair<Pfn, unsigned>> kept;
    while (given < nr && cache_.take_largest(pfn, order)) {
      const Pfn n = Pfn{1} << order;
      if (map_range(context(), pfn, n, cpu) != 0) {
        kept.emplace_back(pfn, order);
        ++map_failures_;
        continue;
      }
      phys().free_pages(pfn, order, cpu);
      given += n;
      shrunk_ += n;
    }
    for (const auto& [p, o] : kept) cache_.add(p, o);
    return given;
  }

  [[nodiscard]] std::uint64_t pooled_pages() const override { return cache_.free_pages(); }
  [[nodiscard]] std::vector<Counter> counters() const override {
    return {{"refills_2m", refills_2m_}, {"refills_lower_order", refills_lower_}, {"pages_shrunk", shrunk_},
            {"shrink_map_failures", map_failures_}};
  }
  [[nodiscard]] std::vector<std::string> check() const override {
    return cache_.check(phys(), dmap(), name());
  }

 private:
  int refill(CpuId cpu) {
    unsigned o = 0;
    const Result<Pfn> r = alloc_highest(phys(), kPageblockOrder, cpu, phys::FrameKind::Unmapped, o);
    if (!r.ok()) return r.err;
    const int err = unmap_range(context(), r.value, Pfn{1} << o, cpu);
    if (err != 0) {
      phys().free_pages(r.value, o, cpu);
      return err;
    }
    cache_.add(r.value, o);
    if (o == kPageblockOrder) {
      ++refills_2m_;
    } else {
      ++refills_lower_;
    }
    return 0;
  }

  UnmappedBuddy cache_;
  std::uint64_t refills_2m_ = 0;
  std::uint64_t refills_lower_ = 0;
  std::uint64_t shrunk_ = 0;
  std::uint64_t map_failures_ = 0;  // blocks kept because mapping them back failed
};

}  // namespace

void exmem_model_register_unmapped_alloc_policy(Registry& registry) {
  registry.add({"unmapped-alloc",
                "unmapped_alloc() (2023): a separate buddy cache of unmapped blocks refilled with "
                "2 MiB or the highest order available (one range, one flush); shrinker maps back",
                [] { return std::make_unique<UnmappedAllocPolicy>(); }});
}

}  // namespace exmem::model::policy
