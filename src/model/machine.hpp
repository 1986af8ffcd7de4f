// The kernel model, root folder: the vocabulary every part shares (types.hpp:
// pfn, order, sizes, negative-errno results) and the Machine that boots the
// parts and hands each the narrow services it uses.
// Owns: types.hpp and machine.{hpp,cpp}. Must not touch: the state of any part
// directly; each sub-folder owns its own, and says so in its main header or
// README.md: phys/physmem.hpp, directmap/directmap.hpp, mm/mm.hpp,
// users/README.md, policy/policy.hpp, tlb/tlb.hpp, workload/README.md.
//
// machine.hpp: one modelled machine: its RAM and page allocator, its direct
// map, the TLB flush log, the processes, the policy for unmapped pages, and the
// kernel's other users of such pages (the execmem ROX cache, guest_memfd).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "model/directmap/directmap.hpp"
#include "model/directmap/flush.hpp"
#include "model/mm/mm.hpp"
#include "model/phys/page_owners.hpp"
#include "model/phys/page_source.hpp"
#include "model/phys/physmem.hpp"
#include "model/policy/policy.hpp"
#include "model/types.hpp"
#include "model/users/execmem.hpp"
#include "model/users/guest_memfd.hpp"

namespace exmem::model {

// How the direct map gets its large leaves back (`exmem sim --collapse`).
// Every collapse follows collapse_pmd_page()/collapse_pud_page(): all 512
// entries with identical flags, _PAGE_GLOBAL and _PAGE_DIRTY included. In an
// upstream kernel (6.18) three things stand between the model's on-restore and
// scanner modes and a collapse: (1) no kernel path calls the collapse for a
// restored direct-map range or from a scan (CPA_COLLAPSE is set only by
// set_memory_rox(), which walks its primary range); (2) __set_pages_p(), behind
// set_direct_map_default/valid_noflush(), sets only PRESENT|RW, so a secret
// page comes back without _PAGE_GLOBAL (__set_pages_np() lost it through
// pgprot_clear_protnone_bits()) and its 2 MiB region is refused; (3)
// set_memory_rw() sets only RW after set_memory_ro() cleared RW|DIRTY, so a
// write-protected page table given back lacks _PAGE_DIRTY (until the CPU sets
// it on a write through the direct map, which the model does not simulate).
// on-restore and scanner model (1) only: they are refused where (2) or (3)
// apply (DirectMapCounters::refused_2m/refused_1g say why). The -gd modes
// also model (2) and (3) changed: restore paths put G and D back.
enum class CollapseMode : std::uint8_t {
  None,         // never collapse, on any path (set_memory_rox() and policies too)
  RoxOnly,      // upstream since 6.15: only set_memory_rox() asks (CPA_COLLAPSE)
  OnRestore,    // hypothetical: after a range is restored, collapse the 2 MiB (and 1 GiB) around it
  Scanner,      // hypothetical: a khugepaged-like scan of the direct map, scan_rate regions per step
  OnRestoreGd,  // on-restore in a kernel whose __set_pages_p()/set_memory_rw() restore G and D
  ScannerGd,    // scanner in such a kernel
};
std::string_view collapse_mode_name(CollapseMode m);
// std::invalid_argument naming the known modes for an unknown name.
CollapseMode parse_collapse_mode(std::string_view name);
std::vector<std::string> collapse_mode_names();

struct MachineConfig {
  std::uint64_t ram_bytes = 4 * GiB;
  unsigned cpus = 4;
  bool direct_gbpages = true;
  std::uint64_t pci_hole_start = 3 * GiB;
  std::uint64_t pci_hole_end = 4 * GiB;
  std::uint64_t kernel_image_bytes = 48 * MiB;
  bool reserve_memmap = true;
  std::uint64_t cma_bytes = 0;
  bool thp = true;
  // PhysConfig's: the last-level cache per CPU (PCPF_FREE_HIGH_BATCH) and the
  // pcp operations that stand in for a second of vmstat_update() (decay_pcp_high()).
  std::uint64_t llc_bytes_per_cpu = 2 * MiB;
  std::uint64_t pcp_ops_per_vmstat_tick = 100000;
  bool secretmem_enable = true;  // secretmem.enable= (on by default since 6.5)
  std::uint64_t rlimit_memlock_bytes = 8 * MiB;  // default RLIMIT_MEMLOCK since 5.16
  std::string policy = "upstream";
  // Values of the policies' own parameters (policy::ParamSpec, declared by
  // each policy in its registration): the policy that declares a key reads it.
  policy::Params policy_params;
  CollapseMode collapse = CollapseMode::RoxOnly;
  unsigned scan_rate = 4;  // 2 MiB regions the scanner looks at per scan_tick()
  std::size_t flush_log_limit = 0;  // flush events kept for inspection (0: counters only)

  [[nodiscard]] phys::PhysConfig phys_config() const;
};

// Why a Machine of this configuration cannot boot, empty when it can: an
// unknown policy, or the layout PhysMem refuses (phys::plan_ram_layout), with
// the policy's boot-time secretmem area added to the CMA area as the Machine
// adds it.
std::string boot_problem(const MachineConfig& config);

class Machine final : public phys::PageSource,
                      public phys::PageOwners,
                      private directmap::PageTableAllocator,
                      private directmap::RestoreObserver {
 public:
  // Boots the machine. std::invalid_argument names the bad setting.
  explicit Machine(const MachineConfig& config);
  Machine(const Machine&) = delete;
  Machine& operator=(const Machine&) = delete;
  ~Machine() override;

  [[nodiscard]] const MachineConfig& config() const { return config_; }
  phys::PhysMem& phys() { return *phys_; }
  [[nodiscard]] const phys::PhysMem& phys() const { return *phys_; }
  directmap::DirectMap& dmap() { return *dmap_; }
  [[nodiscard]] const directmap::DirectMap& dmap() const { return *dmap_; }
  directmap::FlushLog& flushes() { return flushes_; }
  [[nodiscard]] const directmap::FlushLog& flushes() const { return flushes_; }
  mm::Mm& mm() { return *mm_; }
  [[nodiscard]] const mm::Mm& mm() const { return *mm_; }
  policy::Policy& policy() { return *policy_; }
  [[nodiscard]] const policy::Policy& policy() const { return *policy_; }
  users::ExecmemCache& execmem() { return *execmem_; }
  [[nodiscard]] const users::ExecmemCache& execmem() const { return *execmem_; }
  users::GuestMemfd& guest_memfd() { return *guest_memfd_; }
  [[nodiscard]] const users::GuestMemfd& guest_memfd() const { return *guest_memfd_; }

  // The page source of the kernel users (mm/, users/, a policy giving a page
  // back): the allocator, whose slow path reclaims, compacts and kills
  // through the PageOwners below; a free lets the policy take pages of
  // pageblocks it marked (Policy::on_free).
  Result<Pfn> alloc_pages(phys::Gfp gfp, unsigned order, CpuId cpu, phys::FrameKind kind) override;
  void free_pages(Pfn pfn, unsigned order, CpuId cpu) override;

  // phys::PageOwners, what the allocator's slow path asks of the owners of
  // pages (installed with PhysMem::set_page_owners() at boot):
  // reclaim(): page cache from the file LRU (oldest first, in zones up to
  // highest_zoneidx), then the slab shrinkers: reclaimable slab, then the
  // policy's shrinker (Policy::shrink). migrate(): the owner of the movable
  // block follows it (a pinned block refuses). out_of_memory(): the OOM
  // killer of mm/ (oom_kill.hpp). Neither reclaim nor the OOM killer runs
  // from inside reclaim (PF_MEMALLOC) or from a direct-map page-table
  // allocation (the model's CPA is not reentrant). memalloc(): PF_MEMALLOC,
  // set while reclaim() runs, so a shrinker's page-table page may come from
  // the reserves.
  std::uint64_t reclaim(unsigned highest_zoneidx, std::uint64_t nr_to_reclaim, CpuId cpu) override;
  bool migrate(Pfn from, Pfn to, unsigned order) override;
  bool out_of_memory(phys::Gfp gfp, unsigned order, CpuId cpu) override;
  [[nodiscard]] bool memalloc() const override { return pf_memalloc_; }
  struct ReclaimStats {
    std::uint64_t calls = 0;
    std::uint64_t cache_pages = 0;   // page cache freed
    std::uint64_t slab_pages = 0;    // reclaimable slab freed
    std::uint64_t policy_pages = 0;  // given back by the policy's shrinker
    std::uint64_t refused = 0;       // calls from inside reclaim or a page-table allocation
  };
  [[nodiscard]] const ReclaimStats& reclaim_stats() const { return reclaim_stats_; }
  // One step of background work: the scanner modes look at scan_rate 2 MiB
  // regions of the direct map and collapse those collapse_pmd_page() accepts.
  void scan_tick(CpuId cpu);
  struct CollapseStats {
    std::uint64_t attempts = 0;   // regions looked at
    std::uint64_t collapses = 0;  // leaves created (2 MiB and 1 GiB)
    std::uint64_t flushes = 0;    // flush_tlb_all() calls the mode issued
  };
  [[nodiscard]] const CollapseStats& collapse_stats() const { return collapse_stats_; }

  // All invariants of all parts, plus the ones between them: no unmapped page
  // (a Secret frame of any user: secretmem, MAP_EXCLUSIVE, guest_memfd with
  // NO_DIRECT_MAP; or an Unmapped frame of a pool) is present in the direct
  // map, and the Secret frames are exactly the pages those users hold; every
  // page-table page of the direct map is an allocated PageTable frame, and
  // every PageTable frame is one of them; every User, PageCache and
  // Reclaimable frame has one owner record (mm/'s process memory, or a
  // guest_memfd's direct-mapped folio).
  [[nodiscard]] std::vector<std::string> check() const;
  // Host bytes the model occupies.
  [[nodiscard]] std::size_t model_bytes() const;

 private:
  Result<Pfn> alloc_table_page(CpuId cpu) override;
  void free_table_page(Pfn pfn, CpuId cpu) override;
  // Collapse modes on-restore(-gd): [pfn, pfn + n) is back in the direct map
  // (the direct map tells, whoever restored it), so the 2 MiB regions around
  // it, and their GiB, collapse when collapse_pmd_page() accepts them.
  void on_restored(Pfn pfn, Pfn n, CpuId cpu) override;

  MachineConfig config_;
  directmap::FlushLog flushes_;
  std::unique_ptr<phys::PhysMem> phys_;
  std::unique_ptr<directmap::DirectMap> dmap_;
  std::unique_ptr<policy::Policy> policy_;
  std::unique_ptr<mm::Mm> mm_;
  std::unique_ptr<users::ExecmemCache> execmem_;
  std::unique_ptr<users::GuestMemfd> guest_memfd_;
  CollapseStats collapse_stats_;
  ReclaimStats reclaim_stats_;
  Pfn scan_cursor_ = 0;
  bool in_reclaim_ = false;      // reclaim or the OOM killer is running (neither re-enters)
  bool pf_memalloc_ = false;     // current->flags & PF_MEMALLOC: reclaim is running
  bool in_table_alloc_ = false;  // a direct-map page-table page is being allocated
};

}  // namespace exmem::model
