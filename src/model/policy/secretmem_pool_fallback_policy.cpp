// policy/: policies for unmapped pages (see policy.hpp for what the folder owns).
// secretmem_pool_fallback_policy.cpp: Mike Rapoport's last word on the
// secretmem pool (2021, in the v16+ review thread): "the pool is an
// optimisation, never a requirement". Stated intent: when a fault finds the
// pool empty, try to grow it with one 2 MiB allocation from the page allocator
// (removed from the direct map as one range, one flush); if no 2 MiB block is
// free, fall back to an order-0 page exactly as merged memfd_secret does. A
// fault fails only when the page allocator itself has no page.
//
// A 2 MiB folio (a guest_memfd with 2 MiB folios) is a wholly free chunk of
// the pool, handed out whole with no direct-map change and no flush; else a
// new chunk grown for it (one range, one flush); else, as merged, a folio of
// that order from the page allocator removed as one range (the default).
// Other large orders take the default path.
//
// Pool pages go back to the pool when freed; a wholly free chunk goes back to
// the buddy allocator (mapped again as one range) when another chunk's worth of
// free pages remains, or at once under memory pressure (the pool's shrinker).
#include "model/policy/policy.hpp"
#include "model/policy/secretmem_common.hpp"

namespace exmem::model::policy {

namespace {

// The chunk allocation must not dig into reserves or retry: it is opportunistic.
constexpr phys::Gfp kChunkGfp = phys::GFP_HIGHUSER | phys::__GFP_NORETRY | phys::__GFP_NOWARN;

class SecretmemPoolFallbackPolicy final : public Policy {
 public:
  Result<Pfn> alloc_secret_page(CpuId cpu, Owner /*owner*/) override {
    if (!pool_.has_free() && !grow(cpu)) {
      // The fallback: secretmem as merged, one order-0 page.
      const Result<Pfn> page = phys().alloc_pages(phys::GFP_HIGHUSER | phys::__GFP_ZERO, 0, cpu,
                                                    phys::FrameKind::Secret);
      if (!page.ok()) return page;
      const int err = dmap().set_direct_map_invalid_noflush(page.value, cpu);
      if (err != 0) {
        phys().free_pages(page.value, 0, cpu);
        return Result<Pfn>::error(err);
      }
      flushes().kernel_range(page.value, 1, cpu, directmap::FlushReason::KernelRange);
      ++order0_fallbacks_;
      return page;
    }
    const Pfn p = pool_.take();
    phys().set_kind(p, 0, phys::FrameKind::Secret);
    return {p, 0};
  }

  void free_secret_page(Pfn pfn, CpuId cpu, Owner /*owner*/) override {
    if (!pool_.owns(pfn)) {
      dmap().set_direct_map_default_noflush(pfn, cpu);
      phys().free_pages(pfn, 0, cpu);
      return;
    }
    phys().set_kind(pfn, 0, phys::FrameKind::Unmapped);
    const Pfn chunk = pool_.put(pfn);
    if (chunk != kNoPfn && pool_.free_pages() >= 2 * kPagesPer2M) release(chunk, cpu);
  }

  Result<Pfn> alloc_unmapped_folio(unsigned order, CpuId cpu, Owner owner) override {
    if (order != kPageblockOrder) return Policy::alloc_unmapped_folio(order, cpu, owner);
    Pfn chunk = pool_.take_whole();
    if (chunk == kNoPfn && grow(cpu)) chunk = pool_.take_whole();
    if (chunk == kNoPfn) return Policy::alloc_unmapped_folio(order, cpu, owner);
    phys().set_kind(chunk, kPageblockOrder, phys::FrameKind::Secret);
    return {chunk, 0};
  }

  void free_unmapped_folio(Pfn pfn, unsigned order, CpuId cpu, Owner owner) override {
    if (order != kPageblockOrder || !pool_.owns(pfn)) {
      Policy::free_unmapped_folio(pfn, order, cpu, owner);
      return;
    }
    phys().set_kind(pfn, kPageblockOrder, phys::FrameKind::Unmapped);
    pool_.put_whole(pfn);
    if (pool_.free_pages() >= 2 * kPagesPer2M) release(pfn, cpu);
  }

  std::uint64_t shrink(std::uint64_t nr, CpuId cpu) override {
    std::uint64_t given = 0;
    for (const Pfn c : pool_.wholly_free()) {
      if (given >= nr) break;
      release(c, cpu);
      given += kPagesPer2M;
    }
    return given;
  }

  [[nodiscard]] std::uint64_t pooled_pages() const override { return pool_.free_pages(); }
  [[nodiscard]] std::vector<Counter> counters() const override {
    return {{"pool_chunks", pool_.chunks()},
            {"chunks_taken", chunks_taken_},
            {"chunks_released", chunks_released_},
            {"order0_fallbacks", order0_fallbacks_}};
  }
  [[nodiscard]] std::vector<std::string> check() const override {
    return pool_.check(phys(), dmap(), name());
  }

 private:
  bool grow(CpuId cpu) {
    const Result<Pfn> r = phys().alloc_pages(kChunkGfp, kPageblockOrder, cpu, phys::FrameKind::Unmapped);
    if (!r.ok()) return false;
    if (unmap_range(context(), r.value, kPagesPer2M, cpu) != 0) {
      phys().free_pages(r.value, kPageblockOrder, cpu);
      return false;
    }
    pool_.add(r.value);
    ++chunks_taken_;
    return true;
  }
  void release(Pfn chunk, CpuId cpu) {
    pool_.remove(chunk);
    map_range(context(), chunk, kPagesPer2M, cpu);
    phys().free_pages(chunk, kPageblockOrder, cpu);
    ++chunks_released_;
  }

  ChunkPool pool_;
  std::uint64_t chunks_taken_ = 0;
  std::uint64_t chunks_released_ = 0;
  std::uint64_t order0_fallbacks_ = 0;
};

}  // namespace

void exmem_model_register_secretmem_pool_fallback_policy(Registry& registry) {
  registry.add({"secretmem-pool-fallback",
                "secretmem pool as an optimisation: grow it with a 2 MiB allocation (one range, "
                "one flush), else fall back to an order-0 page as merged",
                [] { return std::make_unique<SecretmemPoolFallbackPolicy>(); }});
}

}  // namespace exmem::model::policy
