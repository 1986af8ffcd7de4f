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
// was discussed is MachineConfig::pool_fail_sigbus.
//
// The model keeps one pool per machine (the patch kept one per file: the model's
// secretmem files do not tell the policy which file faults); a chunk goes back
// to CMA once it is wholly free and at least one more free chunk's worth of
// pages remains pooled.
#include "model/policy/policy.hpp"
#include "model/policy/secretmem_common.hpp"

namespace exmem::model::policy {

namespace {

class SecretmemPmdPoolPolicy final : public Policy {
 public:
  [[nodiscard]] std::string_view name() const override { return "secretmem-pmd-pool"; }

  [[nodiscard]] std::uint64_t boot_cma_bytes(const MachineConfig& c) const override {
    return secretmem_area_bytes(c);
  }
  void attach(Machine& m) override { sigbus_ = m.config().pool_fail_sigbus; }

  Result<Pfn> alloc_secret_page(Machine& m, CpuId cpu) override {
    if (!pool_.has_free()) {
      if (grow_from_cma(m, pool_, cpu) != 0) {
        ++depleted_;
        // secretmem_fault(): the pool is empty and cannot grow.
        return Result<Pfn>::error(sigbus_ ? -EFAULT : -ENOMEM);
      }
      ++chunks_taken_;
    }
    const Pfn p = pool_.take();
    m.phys().set_kind(p, 0, phys::FrameKind::Secret);
    return {p, 0};
  }

  void free_secret_page(Machine& m, Pfn pfn, CpuId cpu) override {
    m.phys().set_kind(pfn, 0, phys::FrameKind::Unmapped);
    const Pfn chunk = pool_.put(pfn);
    if (chunk != kNoPfn && pool_.free_pages() >= 2 * kPagesPer2M) {
      release_to_cma(m, pool_, chunk, cpu);
      ++chunks_released_;
    }
  }

  [[nodiscard]] std::uint64_t pooled_pages() const override { return pool_.free_pages(); }
  [[nodiscard]] std::vector<Counter> counters() const override {
    return {{"pool_chunks", pool_.chunks()},
            {"chunks_taken", chunks_taken_},
            {"chunks_released", chunks_released_},
            {"pool_depleted_faults", depleted_}};
  }
  [[nodiscard]] std::vector<std::string> check(const Machine& m) const override {
    std::vector<std::string> v = pool_.check(m, name());
    for (std::string& s : check_chunks_in_cma(m, pool_, name())) v.push_back(std::move(s));
    return v;
  }

 private:
  ChunkPool pool_;
  bool sigbus_ = false;
  std::uint64_t chunks_taken_ = 0;
  std::uint64_t chunks_released_ = 0;
  std::uint64_t depleted_ = 0;
};

}  // namespace

void exmem_model_register_secretmem_pmd_pool_policy(Registry& registry) {
  registry.add({"secretmem-pmd-pool",
                "secretmem v16 (2020-21): pool of 2 MiB chunks from a secretmem= CMA area (one "
                "pool per machine here), one range and one flush per chunk; depleted: fault OOMs",
                [] { return std::make_unique<SecretmemPmdPoolPolicy>(); }});
}

}  // namespace exmem::model::policy
