// policy/: policies for unmapped pages (see policy.hpp for what the folder owns).
// policy.cpp: owner names, and the default write-protected page-table pages,
// from the buddy allocator, as a kernel with write-protected page tables and no
// cache does.
#include "model/policy/policy.hpp"

#include "model/policy/pool.hpp"

namespace exmem::model::policy {

std::string_view owner_kind_name(OwnerKind kind) {
  switch (kind) {
    case OwnerKind::Secretmem: return "secretmem";
    case OwnerKind::Exclusive: return "MAP_EXCLUSIVE";
    case OwnerKind::GuestMemfd: return "guest_memfd";
  }
  return "?";
}

Result<Pfn> Policy::alloc_wp_table(CpuId cpu) {
  const Result<Pfn> r =
      phys().alloc_pages(phys::GFP_KERNEL | phys::__GFP_ZERO, 0, cpu, phys::FrameKind::Kernel);
  if (!r.ok()) return r;
  const int err = dmap().set_memory_ro(r.value, 1, cpu);
  if (err != 0) {
    phys().free_pages(r.value, 0, cpu);
    return Result<Pfn>::error(err);
  }
  return r;
}

void Policy::free_wp_table(Pfn pfn, CpuId cpu) {
  dmap().set_memory_rw(pfn, 1, cpu);
  pages().free_pages(pfn, 0, cpu);
}

// The large-folio half mirrors filemap_alloc_folio() with the mapping's
// GFP_HIGHUSER, then folio_zap_direct_map() of the direct-map removal series
// (set_direct_map_valid_noflush() over the folio, one flush_tlb_kernel_range()).
Result<Pfn> Policy::alloc_unmapped_folio(unsigned order, CpuId cpu, Owner owner) {
  if (order == 0) return alloc_secret_page(cpu, owner);
  if (order > kPageblockOrder) return Result<Pfn>::error(-EINVAL);
  const Result<Pfn> r =
      phys().alloc_pages(phys::GFP_HIGHUSER | phys::__GFP_ZERO, order, cpu, phys::FrameKind::Secret);
  if (!r.ok()) return r;
  const int err = unmap_range(context(), r.value, Pfn{1} << order, cpu);
  if (err != 0) {
    phys().free_pages(r.value, order, cpu);  // folio_put()
    return Result<Pfn>::error(err);
  }
  return r;
}

// mirrors folio_restore_direct_map() (set_direct_map_valid_noflush(true) over
// the folio), then the folio is freed
void Policy::free_unmapped_folio(Pfn pfn, unsigned order, CpuId cpu, Owner owner) {
  if (order == 0) {
    free_secret_page(pfn, cpu, owner);
    return;
  }
  map_range(context(), pfn, Pfn{1} << order, cpu);
  phys().free_pages(pfn, order, cpu);
}

}  // namespace exmem::model::policy
