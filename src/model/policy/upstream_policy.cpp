// policy/: policies for unmapped pages (see policy.hpp for what the folder owns).
// upstream_policy.cpp: memfd_secret as merged (mm/secretmem.c, Linux 5.14 to
// 6.18): no pool; every fault takes one zeroed order-0 page from the buddy
// allocator, removes it from the direct map (splitting leaves as needed) and
// flushes that one page from every CPU's TLB; every free maps it back and zeroes
// it. secretmem does not ask for collapse: a split is undone only by the
// machine's collapse mode (on-restore or scanner), never under rox-only.
// The other users of unmapped pages did the same per page in their own patches
// (MAP_EXCLUSIVE's __set_page_user_exclusive(), guest_memfd's
// folio_zap_direct_map() with NO_DIRECT_MAP), so under this policy each user
// behaves as its patch did.
#include "model/policy/policy.hpp"

namespace exmem::model::policy {

namespace {

class UpstreamPolicy final : public Policy {
 public:

  // mirrors the allocation half of secretmem_fault()
  Result<Pfn> alloc_secret_page(CpuId cpu, Owner /*owner*/) override {
    // folio_alloc(GFP_HIGHUSER | __GFP_ZERO, 0): the mapping's gfp mask.
    const Result<Pfn> page =
        phys().alloc_pages(phys::GFP_HIGHUSER | phys::__GFP_ZERO, 0, cpu, phys::FrameKind::Secret);
    if (!page.ok()) return page;
    const int err = dmap().set_direct_map_invalid_noflush(page.value, cpu);
    if (err != 0) {
      phys().free_pages(page.value, 0, cpu);  // folio_put()
      return Result<Pfn>::error(err);
    }
    flushes().kernel_range(page.value, 1, cpu, directmap::FlushReason::KernelRange);
    return page;
  }

  // mirrors secretmem_free_folio() and the folio_put() after it
  void free_secret_page(Pfn pfn, CpuId cpu, Owner /*owner*/) override {
    dmap().set_direct_map_default_noflush(pfn, cpu);
    // folio_zero_segment(): the model keeps no page contents.
    phys().free_pages(pfn, 0, cpu);
  }
};

}  // namespace

void exmem_model_register_upstream_policy(Registry& registry) {
  registry.add({"upstream",
                "memfd_secret as merged: order-0 page per fault, removed from the direct map, "
                "one-page flush; restored on free; no collapse",
                [] { return std::make_unique<UpstreamPolicy>(); }});
}

}  // namespace exmem::model::policy
