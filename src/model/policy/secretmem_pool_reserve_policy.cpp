// policy/: policies for unmapped pages (see policy.hpp for what the folder owns).
// secretmem_pool_reserve_policy.cpp: the remedy the reviewers of the secretmem
// pool (v16, 2021) asked for, after the way hugetlbfs works: reserve at mmap()
// time, so that "a fault after a successful mmap never fails". Stated intent:
// keep the 2 MiB chunk pool and its one-flush-per-chunk removal, but move the
// failure from the fault (OOM, which any user could trigger) to mmap(), which
// fails cleanly with -ENOMEM when the reservation cannot be met.
//
// Mechanism: the pool's capacity (chunks x 512) must cover every page that
// live mappings may fault (their reservations); mmap() grows the pool from the
// secretmem= CMA area until it does, or fails. A fault takes a page from the
// pool, which the reservation guarantees is there. munmap() and exit return
// the reservation; a wholly free chunk goes back to CMA when the rest of the
// pool still covers the reservations. (The model reserves per mapping: a
// mapping inherited by fork() carries no reservation of its own.)
// A 2 MiB folio (a guest_memfd with 2 MiB folios, which reserves nothing) is
// served as a whole chunk grown from CMA for it, so that the reservations'
// cover stays as it was; freed, the chunk is trimmed like any other. Other
// large orders take the default path (the page allocator).
#include "model/policy/policy.hpp"
#include "model/policy/secretmem_common.hpp"

namespace exmem::model::policy {

namespace {

class SecretmemPoolReservePolicy final : public Policy {
 public:
  // mirrors hugetlb_reserve_pages() called from mmap
  int reserve(std::uint64_t pages, CpuId cpu) override {
    while (capacity() < reserved_ + pages) {
      if (grow_from_cma(context(), pool_, cpu) != 0) {
        ++mmap_enomem_;
        trim(cpu);
        return -ENOMEM;
      }
      ++chunks_taken_;
    }
    reserved_ += pages;
    return 0;
  }

  void unreserve(std::uint64_t pages, CpuId cpu) override {
    reserved_ -= std::min(pages, reserved_);
    trim(cpu);
  }

  Result<Pfn> alloc_secret_page(CpuId cpu, Owner /*owner*/) override {
    if (!pool_.has_free()) {
      // Only a fault no reservation covers gets here.
      ++unreserved_faults_;
      if (grow_from_cma(context(), pool_, cpu) != 0) return Result<Pfn>::error(-ENOMEM);
      ++chunks_taken_;
    }
    const Pfn p = pool_.take();
    phys().set_kind(p, 0, phys::FrameKind::Secret);
    return {p, 0};
  }

  void free_secret_page(Pfn pfn, CpuId cpu, Owner /*owner*/) override {
    phys().set_kind(pfn, 0, phys::FrameKind::Unmapped);
    if (pool_.put(pfn) != kNoPfn) trim(cpu);
  }

  Result<Pfn> alloc_unmapped_folio(unsigned order, CpuId cpu, Owner owner) override {
    if (order != kPageblockOrder) return Policy::alloc_unmapped_folio(order, cpu, owner);
    ++unreserved_faults_;
    if (grow_from_cma(context(), pool_, cpu) != 0) return Result<Pfn>::error(-ENOMEM);
    ++chunks_taken_;
    const Pfn chunk = pool_.take_whole();
    phys().set_kind(chunk, kPageblockOrder, phys::FrameKind::Secret);
    return {chunk, 0};
  }

  void free_unmapped_folio(Pfn pfn, unsigned order, CpuId cpu, Owner owner) override {
    if (order != kPageblockOrder) {
      Policy::free_unmapped_folio(pfn, order, cpu, owner);
      return;
    }
    phys().set_kind(pfn, kPageblockOrder, phys::FrameKind::Unmapped);
    pool_.put_whole(pfn);
    trim(cpu);
  }

  [[nodiscard]] std::uint64_t pooled_pages() const override { return pool_.free_pages(); }
  [[nodiscard]] std::uint64_t reserved_pages() const { return reserved_; }
  [[nodiscard]] std::vector<Counter> counters() const override {
    return {{"pool_chunks", pool_.chunks()},       {"reserved_pages", reserved_},
            {"chunks_taken", chunks_taken_},       {"chunks_released", chunks_released_},
            {"mmap_enomem", mmap_enomem_},         {"unreserved_faults", unreserved_faults_}};
  }
  [[nodiscard]] std::vector<std::string> check() const override {
    std::vector<std::string> v = pool_.check(phys(), dmap(), name());
    for (std::string& s : check_chunks_in_cma(phys(), pool_, name())) v.push_back(std::move(s));
    if (capacity() < reserved_) {
      v.push_back(fmt::format("{}: pool of {} pages cannot cover {} reserved pages", name(),
                              capacity(), reserved_));
    }
    return v;
  }

 private:
  [[nodiscard]] std::uint64_t capacity() const { return pool_.chunks() * kPagesPer2M; }
  // Wholly free chunks the reservations do not need go back to CMA (one spare
  // stays), lowest first. Releasing a chunk changes no other chunk, so walking
  // the live set upward visits what a snapshot would, without copying it on
  // every free while the reservations keep many chunks.
  void trim(CpuId cpu) {
    for (Pfn c = pool_.wholly_free_from(0); c != kNoPfn; c = pool_.wholly_free_from(c + kPagesPer2M)) {
      if (capacity() < reserved_ + 2 * kPagesPer2M) break;  // one spare chunk stays
      release_to_cma(context(), pool_, c, cpu);
      ++chunks_released_;
    }
  }

  ChunkPool pool_;
  std::uint64_t reserved_ = 0;
  std::uint64_t chunks_taken_ = 0;
  std::uint64_t chunks_released_ = 0;
  std::uint64_t mmap_enomem_ = 0;
  std::uint64_t unreserved_faults_ = 0;
};

}  // namespace

void exmem_model_register_secretmem_pool_reserve_policy(Registry& registry) {
  registry.add({"secretmem-pool-reserve",
                "secretmem pool with hugetlbfs-style reservation: mmap reserves from the 2 MiB "
                "chunk pool (or fails with ENOMEM); a fault after a successful mmap never fails",
                [] { return std::make_unique<SecretmemPoolReservePolicy>(); },
                {secretmem_param()},
                secretmem_area_bytes});
}

}  // namespace exmem::model::policy
