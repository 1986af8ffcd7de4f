// policy/: policies for unmapped pages (see policy.hpp for what the folder owns).
// secretmem_pmd_pool_policy.cpp: "mm: introduce memfd_secret system call to
// create secret memory areas", v16 of the series (Mike Rapoport, 2021; the
// pool came in with the early versions of 2020). Intent as stated: keep the
// direct map from being fragmented by secret pages by taking them from a pool
// of 2 MiB chunks that come from a CMA area reserved at boot with the
// secretmem= parameter; a chunk leaves the direct map as one 2 MiB range with
// one TLB flush and 4 KiB pages are handed out from it with no further split.
// NAKed because a depleted pool fails at fault time (VM_FAULT_OOM), and any
// user able to create secret memory can deplete it; the SIGBUS variant that
// was discussed is the policy's parameter pool_fail = "sigbus".
//
// One pool per file, as in the patch (the pool hung off the file's
// secretmem_ctx): a file's first fault takes a whole 2 MiB chunk for it alone,
// its freed pages go back to its own pool, and its chunks go back to CMA (into
// the direct map as one range each) when the file is evicted
// (Policy::release_file()). The other users of unmapped pages get the same
// treatment per owner: one pool per MAP_EXCLUSIVE mapping object and per
// guest_memfd file. A 2 MiB folio (a guest_memfd with 2 MiB folios) is a
// wholly free chunk of the owner's pool, or a chunk grown from CMA for it,
// handed out whole; other large orders take the default path (the page
// allocator), which the 2020 series never had to serve.
#include <set>

#include "model/policy/policy.hpp"
#include "model/policy/secretmem_common.hpp"

namespace exmem::model::policy {

namespace {

// The answer to a depleted pool at fault time: VM_FAULT_OOM (as in the NAKed
// patch) or VM_FAULT_SIGBUS. `[machine] pool_fail` in a scenario, --pool-fail.
const ParamSpec& pool_fail_param() {
  static const ParamSpec p{"pool_fail", "--pool-fail", ParamSpec::Kind::Choice, 0, 0, 1, false, {"oom", "sigbus"},
                           "answer of a depleted pool",
                           "What secretmem-pmd-pool does when its pool is depleted at fault time",
                           "default: oom"};
  return p;
}

class SecretmemPmdPoolPolicy final : public Policy {
 public:
  void configure(const Params& params) override { sigbus_ = params.choice(pool_fail_param()) == "sigbus"; }

  // mirrors secretmem_fault() -> secretmem_alloc_page(ctx, gfp) of the 2020
  // pool series (not in mainline): a page from the file's pool, which
  // secretmem_pool_increase() first grows by a 2 MiB chunk from CMA when empty
  Result<Pfn> alloc_secret_page(CpuId cpu, Owner owner) override {
    ChunkPool& pool = pools_[owner];
    if (!pool.has_free()) {
      if (grow_from_cma(context(), pool, cpu) != 0) {
        ++depleted_;
        if (pool.chunks() == 0) pools_.erase(owner);
        // secretmem_fault(): the pool is empty and cannot grow.
        return Result<Pfn>::error(sigbus_ ? -EFAULT : -ENOMEM);
      }
      ++chunks_taken_;
    }
    const Pfn p = pool.take();
    phys().set_kind(p, 0, phys::FrameKind::Secret);
    return {p, 0};
  }

  Result<Pfn> alloc_unmapped_folio(unsigned order, CpuId cpu, Owner owner) override {
    if (order != kPageblockOrder) return Policy::alloc_unmapped_folio(order, cpu, owner);
    ChunkPool& pool = pools_[owner];
    Pfn chunk = pool.take_whole();
    if (chunk == kNoPfn) {
      if (grow_from_cma(context(), pool, cpu) != 0) {
        ++depleted_;
        if (pool.chunks() == 0) pools_.erase(owner);
        return Result<Pfn>::error(sigbus_ ? -EFAULT : -ENOMEM);
      }
      ++chunks_taken_;
      chunk = pool.take_whole();
    }
    phys().set_kind(chunk, kPageblockOrder, phys::FrameKind::Secret);
    return {chunk, 0};
  }

  void free_unmapped_folio(Pfn pfn, unsigned order, CpuId cpu, Owner owner) override {
    if (order != kPageblockOrder) {
      Policy::free_unmapped_folio(pfn, order, cpu, owner);
      return;
    }
    phys().set_kind(pfn, kPageblockOrder, phys::FrameKind::Unmapped);
    pools_.at(owner).put_whole(pfn);
  }

  // The page goes back to its file's pool, still out of the direct map.
  void free_secret_page(Pfn pfn, CpuId cpu, Owner owner) override {
    (void)cpu;
    phys().set_kind(pfn, 0, phys::FrameKind::Unmapped);
    pools_.at(owner).put(pfn);
  }

  // mirrors secretmem_evict_inode() -> secretmem_cleanup_pool() ->
  // secretmem_cleanup_chunk() of the 2020 pool series (mainline secretmem.c has
  // no evict_inode): every chunk of the file's pool goes back into the direct
  // map and to CMA (set_direct_map_default_noflush(), cma_release()).
  void release_file(Owner owner, CpuId cpu) override {
    const auto it = pools_.find(owner);
    if (it == pools_.end()) return;
    ChunkPool& pool = it->second;
    for (const Pfn c : pool.wholly_free()) {
      release_to_cma(context(), pool, c, cpu);
      ++chunks_released_;
    }
    if (pool.chunks() == 0) pools_.erase(it);
  }

  [[nodiscard]] std::uint64_t pooled_pages() const override {
    std::uint64_t n = 0;
    for (const auto& [owner, pool] : pools_) n += pool.free_pages();
    return n;
  }
  [[nodiscard]] std::vector<Counter> counters() const override {
    std::uint64_t chunks = 0;
    for (const auto& [owner, pool] : pools_) chunks += pool.chunks();
    return {{"pools", pools_.size()},
            {"pool_chunks", chunks},
            {"chunks_taken", chunks_taken_},
            {"chunks_released", chunks_released_},
            {"pool_depleted_faults", depleted_}};
  }
  [[nodiscard]] std::vector<std::string> check() const override {
    std::vector<std::string> v;
    std::set<Pfn> seen;
    for (const auto& [owner, pool] : pools_) {
      const std::string who =
          fmt::format("{} pool of {} {}", name(), owner_kind_name(owner.kind), owner.id);
      for (std::string& s : pool.check(phys(), dmap(), who)) v.push_back(std::move(s));
      for (std::string& s : check_chunks_in_cma(phys(), pool, who)) v.push_back(std::move(s));
      if (pool.chunks() == 0) v.push_back(fmt::format("{}: kept with no chunk", who));
      for (const Pfn c : pool.starts()) {
        if (!seen.insert(c).second) v.push_back(fmt::format("{}: chunk {:#x} is in another pool too", who, c));
      }
    }
    return v;
  }

 private:
  std::map<Owner, ChunkPool> pools_;
  bool sigbus_ = false;
  std::uint64_t chunks_taken_ = 0;
  std::uint64_t chunks_released_ = 0;
  std::uint64_t depleted_ = 0;
};

}  // namespace

void exmem_model_register_secretmem_pmd_pool_policy(Registry& registry) {
  registry.add({"secretmem-pmd-pool",
                "secretmem v16 (2020-21): one pool of 2 MiB chunks per file from a secretmem= CMA "
                "area, one range and one flush per chunk, chunks back at eviction; depleted: fault OOMs",
                [] { return std::make_unique<SecretmemPmdPoolPolicy>(); },
                {secretmem_param(), pool_fail_param()},
                secretmem_area_bytes});
}

}  // namespace exmem::model::policy
