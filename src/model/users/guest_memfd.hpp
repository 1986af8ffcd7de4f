// users/: other users of unmapped pages (see README.md for what the folder owns).
// guest_memfd.hpp: KVM guest memory in guest_memfd files
// (virt/kvm/guest_memfd.c), with GUEST_MEMFD_FLAG_NO_DIRECT_MAP from "KVM:
// guest_memfd: Add flag to remove from direct map" (Patrick Roy, 2025-2026,
// "Direct Map Removal Support for guest_memfd", v7 and later): a guest_memfd
// created with the flag takes each folio out of the direct map when it is
// first mapped (kvm_gmem_get_pfn() on a guest fault, or a fault of a user
// mapping: folio_zap_direct_map(), i.e. set_direct_map_valid_noflush(false)
// and flush_tlb_kernel_range()), and puts it back when the folio is freed
// (kvm_gmem_free_folio() -> folio_restore_direct_map()).
//
// Folio order: upstream guest_memfd allocates order-0 folios only
// (kvm_gmem_get_folio(): "TODO: Support huge pages", WARN_ON_ONCE on a large
// folio); the hugetlb and THP guest_memfd series (2025-26) give the file a
// folio size (e.g. 2 MiB), which the page cache then enforces as the
// mapping's minimum folio order: __filemap_get_folio_mpol() aligns the index
// down to the folio (mapping_align_index()) and allocates the whole folio
// with filemap_alloc_folio() at that order, and folio_file_pfn() finds a
// page's pfn inside it. The model gives each file a folio order (create()).
//
// In the model one guest_memfd file stands for one VM's memory: a fault of
// any index populates the whole folio that holds it, one allocation of the
// file's order. With NO_DIRECT_MAP the folio comes from the machine's policy
// for unmapped pages (Policy::alloc_unmapped_folio() with a GuestMemfd owner,
// which is Policy::alloc_secret_page() for order 0: this is what the
// unmapped-page designs are for), removed from the direct map as one unit
// (folio_zap_direct_map(): one range, one flush); without it from the page
// allocator as GFP_HIGHUSER folios that stay mapped. Tearing the VM down
// releases the file: every folio is freed as a unit in index order
// (Policy::free_unmapped_folio(): folio_restore_direct_map()), then the policy
// hears the owner is gone.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/directmap/directmap.hpp"
#include "model/mm/mm.hpp"
#include "model/phys/page_source.hpp"
#include "model/phys/physmem.hpp"
#include "model/policy/policy.hpp"
#include "model/types.hpp"

namespace exmem::model::users {

// include/uapi/linux/kvm.h
inline constexpr std::uint64_t kGUEST_MEMFD_FLAG_MMAP = std::uint64_t{1} << 0;
inline constexpr std::uint64_t kGUEST_MEMFD_FLAG_INIT_SHARED = std::uint64_t{1} << 1;
inline constexpr std::uint64_t kGUEST_MEMFD_FLAG_NO_DIRECT_MAP = std::uint64_t{1} << 2;

struct GuestMemfdStats {
  std::uint64_t files_created = 0;
  std::uint64_t files_released = 0;
  std::uint64_t faults = 0;        // folios allocated (of the file's order)
  std::uint64_t faults_minor = 0;  // the folio was there already
  std::uint64_t faults_oom = 0;    // no folio could be had
  std::uint64_t faults_sigbus = 0;  // past the file's size
  std::uint64_t folios_freed = 0;
};

class GuestMemfd {
 public:
  // Folios come from policy (NO_DIRECT_MAP) or from `pages`; phys and dmap
  // are read by check().
  GuestMemfd(policy::Policy& policy, phys::PageSource& pages, const phys::PhysMem& phys,
             const directmap::DirectMap& dmap);
  ~GuestMemfd();
  GuestMemfd(const GuestMemfd&) = delete;
  GuestMemfd& operator=(const GuestMemfd&) = delete;

  // mirrors KVM_CREATE_GUEST_MEMFD -> kvm_gmem_create(): the file's id, or
  // -EINVAL for an unknown flag, a size that is 0 or not a whole number of
  // folios, or a folio order above kPageblockOrder (the series' 2 MiB).
  Result<std::uint32_t> create(std::uint64_t size, std::uint64_t flags, unsigned folio_order = 0);
  // mirrors kvm_gmem_get_pfn() for a guest fault on page `index` of the file:
  // Major when the folio holding it was allocated (and, with NO_DIRECT_MAP,
  // zapped from the direct map), Minor when it was there, Oom when none could be had (-ENOMEM),
  // SigBus past the size or on another error, SigSegv for a file that is not live.
  mm::VmFault fault(std::uint32_t file, std::uint64_t index, CpuId cpu);
  // The VM is torn down and the last reference to the file goes
  // (kvm_gmem_release(), then the inode's eviction): every folio is freed
  // (kvm_gmem_free_folio() restores its direct-map entry). -EBADF for a file
  // that is not live.
  int release(std::uint32_t file, CpuId cpu);

  // The page at `index` (folio_file_pfn()), kNoPfn when its folio is not there.
  [[nodiscard]] Pfn pfn(std::uint32_t file, std::uint64_t index) const;
  [[nodiscard]] bool live(std::uint32_t file) const;
  [[nodiscard]] std::uint64_t size_pages(std::uint32_t file) const;
  [[nodiscard]] unsigned folio_order(std::uint32_t file) const;
  [[nodiscard]] std::uint64_t folios(std::uint32_t file) const;
  [[nodiscard]] std::uint64_t live_files() const { return live_files_; }
  // Pages of the folios held out of the direct map (FrameKind::Secret frames) / in it.
  [[nodiscard]] std::uint64_t unmapped_pages() const { return unmapped_pages_; }
  [[nodiscard]] std::uint64_t mapped_pages() const { return mapped_pages_; }
  [[nodiscard]] const GuestMemfdStats& stats() const { return stats_; }
  [[nodiscard]] std::size_t model_bytes() const;
  // Every folio of a NO_DIRECT_MAP file is a Secret frame absent from the
  // direct map; every other folio a present User frame; counts add up.
  [[nodiscard]] std::vector<std::string> check() const;

 private:
  struct File;
  File* file_of(std::uint32_t file);
  [[nodiscard]] const File* file_of(std::uint32_t file) const;

  policy::Policy& policy_;
  phys::PageSource& pages_;
  const phys::PhysMem& phys_;
  const directmap::DirectMap& dmap_;
  std::vector<std::unique_ptr<File>> files_;  // index = id
  std::vector<std::uint32_t> free_ids_;
  std::uint64_t live_files_ = 0;
  std::uint64_t unmapped_pages_ = 0;
  std::uint64_t mapped_pages_ = 0;
  GuestMemfdStats stats_;
};

}  // namespace exmem::model::users
