// policy/: policies for unmapped pages (see policy.hpp for what the folder owns).
// policy.cpp: owner names, and the default write-protected page-table pages,
// from the buddy allocator, as a kernel with write-protected page tables and no
// cache does.
#include "model/policy/policy.hpp"

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

}  // namespace exmem::model::policy
