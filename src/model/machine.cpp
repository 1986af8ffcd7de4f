// The kernel model, root folder (see machine.hpp for what the folder owns).
// machine.cpp: boot order and the checks across parts.
#include "model/machine.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>

namespace exmem::model {

std::string_view collapse_mode_name(CollapseMode m) {
  switch (m) {
    case CollapseMode::None: return "none";
    case CollapseMode::RoxOnly: return "rox-only";
    case CollapseMode::OnRestore: return "on-restore";
    case CollapseMode::Scanner: return "scanner";
    case CollapseMode::OnRestoreGd: return "on-restore-gd";
    case CollapseMode::ScannerGd: return "scanner-gd";
  }
  return "?";
}

std::vector<std::string> collapse_mode_names() {
  return {"none", "rox-only", "on-restore", "scanner", "on-restore-gd", "scanner-gd"};
}

CollapseMode parse_collapse_mode(std::string_view name) {
  for (const CollapseMode m : {CollapseMode::None, CollapseMode::RoxOnly, CollapseMode::OnRestore,
                               CollapseMode::Scanner, CollapseMode::OnRestoreGd,
                               CollapseMode::ScannerGd}) {
    if (collapse_mode_name(m) == name) return m;
  }
  throw std::invalid_argument(fmt::format("unknown collapse mode '{}': known modes are {}", name,
                                          fmt::join(collapse_mode_names(), ", ")));
}

phys::PhysConfig MachineConfig::phys_config() const {
  phys::PhysConfig pc;
  pc.ram_bytes = ram_bytes;
  pc.cpus = cpus;
  pc.pci_hole_start = pci_hole_start;
  pc.pci_hole_end = pci_hole_end;
  pc.kernel_image_bytes = kernel_image_bytes;
  pc.reserve_memmap = reserve_memmap;
  pc.cma_bytes = cma_bytes;
  pc.thp = thp;
  pc.llc_bytes_per_cpu = llc_bytes_per_cpu;
  pc.pcp_ops_per_vmstat_tick = pcp_ops_per_vmstat_tick;
  return pc;
}

namespace {

// What PhysMem boots with: the machine's own CMA area and the policy's under it.
std::uint64_t policy_cma_bytes(const MachineConfig& config, const policy::PolicyInfo& policy) {
  return policy.boot_cma_bytes ? policy.boot_cma_bytes(config.policy_params, config.ram_bytes) : 0;
}
phys::PhysConfig boot_phys_config(const MachineConfig& config, const policy::PolicyInfo& policy) {
  phys::PhysConfig pc = config.phys_config();
  pc.cma_bytes += policy_cma_bytes(config, policy);
  return pc;
}

}  // namespace

std::string boot_problem(const MachineConfig& config) {
  const policy::Registry& registry = policy::Registry::builtin();
  const policy::PolicyInfo* policy = registry.find(config.policy);
  if (policy == nullptr) {
    return fmt::format("unknown policy '{}': known policies are {}", config.policy, fmt::join(registry.names(), ", "));
  }
  const std::uint64_t policy_cma = policy_cma_bytes(config, *policy);
  std::string parts;
  if (policy_cma != 0) {
    parts = config.cma_bytes == 0 ? fmt::format("the secretmem area of {}", config.policy)
                                  : fmt::format("cma {} and the secretmem area of {}, {}", format_size(config.cma_bytes),
                                                config.policy, format_size(policy_cma));
  }
  return phys::plan_ram_layout(boot_phys_config(config, *policy), parts).problem;
}

Machine::Machine(const MachineConfig& config) : config_(config) {
  flushes_.set_recording(config_.flush_log_limit);
  const policy::PolicyInfo& info = policy::Registry::builtin().resolve(config_.policy);  // fail early
  policy_ = info.make();
  policy_->configure(config_.policy_params);
  phys_ = std::make_unique<phys::PhysMem>(boot_phys_config(config_, info));
  std::vector<directmap::MappedRange> ram;
  for (const phys::PfnRange& r : phys_->ram()) ram.push_back({r.start, r.end});
  directmap::PageTableAllocator& tables = *this;
  dmap_ = std::make_unique<directmap::DirectMap>(ram, config_.direct_gbpages, tables, flushes_);
  phys::PageSource& pages = *this;
  policy_->bind({*phys_, *dmap_, flushes_, pages});
  mm_ = std::make_unique<mm::Mm>(*policy_, pages, *phys_, *dmap_,
                                 mm::MmSettings{config_.rlimit_memlock_bytes, config_.secretmem_enable});
  execmem_ = std::make_unique<users::ExecmemCache>(pages, *dmap_, *phys_);
  guest_memfd_ = std::make_unique<users::GuestMemfd>(*policy_, pages, *phys_, *dmap_);
  phys_->set_page_owners(this);
  dmap_->set_running();  // system_state = SYSTEM_RUNNING
  const CollapseMode mode = config_.collapse;
  dmap_->set_collapse_enabled(mode != CollapseMode::None);
  dmap_->set_restore_global_dirty(mode == CollapseMode::OnRestoreGd || mode == CollapseMode::ScannerGd);
  if (mode == CollapseMode::OnRestore || mode == CollapseMode::OnRestoreGd) {
    dmap_->set_restore_observer(this);
  }
}

// The allocator's slow path (phys/slowpath.cpp) reaches reclaim(), migrate()
// and out_of_memory() below through phys::PageOwners.
Result<Pfn> Machine::alloc_pages(phys::Gfp gfp, unsigned order, CpuId cpu, phys::FrameKind kind) {
  return phys_->alloc_pages(gfp, order, cpu, kind);
}

namespace {
// Sets a flag for the scope: PF_MEMALLOC and the like.
struct FlagScope {
  bool& flag;
  explicit FlagScope(bool& f) : flag(f) { flag = true; }
  ~FlagScope() { flag = false; }
  FlagScope(const FlagScope&) = delete;
  FlagScope& operator=(const FlagScope&) = delete;
};
}  // namespace

// mirrors shrink_node(): the file LRU, then shrink_slab() (the reclaimable
// caches, then the policy's pool through its shrinker).
std::uint64_t Machine::reclaim(unsigned highest_zoneidx, std::uint64_t nr_to_reclaim, CpuId cpu) {
  if (in_reclaim_ || in_table_alloc_) {
    ++reclaim_stats_.refused;
    return 0;
  }
  const FlagScope reclaiming(in_reclaim_);
  const FlagScope memalloc(pf_memalloc_);
  ++reclaim_stats_.calls;
  // The first pfn above highest_zoneidx (zones are ascending ranges of pfns).
  Pfn below = kNoPfn;
  if (highest_zoneidx < phys_->zone_of(phys_->nr_frames() - 1)) {
    Pfn lo = 0;
    Pfn hi = phys_->nr_frames() - 1;
    while (lo < hi) {
      const Pfn mid = lo + (hi - lo) / 2;
      if (phys_->zone_of(mid) > highest_zoneidx) {
        hi = mid;
      } else {
        lo = mid + 1;
      }
    }
    below = lo;
  }
  mm::ProcessMemory& mem = mm_->memory();
  const std::uint64_t cache = mem.reclaim_page_cache(nr_to_reclaim, cpu, below);
  std::uint64_t freed = cache;
  reclaim_stats_.cache_pages += cache;
  if (freed < nr_to_reclaim) {
    const std::uint64_t slab = mem.shrink_slab(nr_to_reclaim - freed, cpu);
    reclaim_stats_.slab_pages += slab;
    freed += slab;
  }
  if (freed < nr_to_reclaim) {
    const std::uint64_t pooled = policy_->shrink(nr_to_reclaim - freed, cpu);
    reclaim_stats_.policy_pages += pooled;
    freed += pooled;
  }
  return freed;
}

// mirrors move_to_new_folio() for the owners: mm/'s record follows the block.
bool Machine::migrate(Pfn from, Pfn to, unsigned order) { return mm_->memory().migrate(from, to, order); }

// mirrors out_of_memory() for the whole machine: totalpages = totalram_pages()
// (no swap).
bool Machine::out_of_memory(phys::Gfp gfp, unsigned order, CpuId cpu) {
  if (in_reclaim_ || in_table_alloc_) {
    ++reclaim_stats_.refused;
    return false;
  }
  const FlagScope memalloc(in_reclaim_);
  return mm::out_of_memory(*mm_, gfp, order, phys_->managed_pages(), cpu);
}

void Machine::free_pages(Pfn pfn, unsigned order, CpuId cpu) {
  if (policy_->on_free(pfn, order, cpu)) return;
  phys_->free_pages(pfn, order, cpu);
}

void Machine::on_restored(Pfn pfn, Pfn n, CpuId cpu) {
  const std::uint64_t full_before = flushes_.counters().full_flushes;
  const Pfn first = pfn & ~(kPagesPer2M - 1);
  const Pfn last = (pfn + n - 1) & ~(kPagesPer2M - 1);
  for (std::uint64_t r = first; r <= last; r += kPagesPer2M) {
    ++collapse_stats_.attempts;
    collapse_stats_.collapses +=
        static_cast<std::uint64_t>(dmap_->collapse_range(static_cast<Pfn>(r), kPagesPer2M, cpu));
  }
  collapse_stats_.flushes += flushes_.counters().full_flushes - full_before;
}

void Machine::scan_tick(CpuId cpu) {
  if (config_.collapse != CollapseMode::Scanner && config_.collapse != CollapseMode::ScannerGd) return;
  const Pfn end = phys_->nr_frames();
  if (end < kPagesPer2M) return;
  const std::uint64_t full_before = flushes_.counters().full_flushes;
  for (unsigned i = 0; i < config_.scan_rate; ++i) {
    if (scan_cursor_ + kPagesPer2M > end) scan_cursor_ = 0;
    ++collapse_stats_.attempts;
    collapse_stats_.collapses +=
        static_cast<std::uint64_t>(dmap_->collapse_range(scan_cursor_, kPagesPer2M, cpu));
    scan_cursor_ += kPagesPer2M;
  }
  collapse_stats_.flushes += flushes_.counters().full_flushes - full_before;
}

Machine::~Machine() = default;

// mirrors alloc_pages(GFP_KERNEL, 0) in split_large_page()
Result<Pfn> Machine::alloc_table_page(CpuId cpu) {
  const FlagScope cpa(in_table_alloc_);
  return phys_->alloc_pages(phys::GFP_KERNEL, 0, cpu, phys::FrameKind::PageTable);
}

// mirrors __free_page() of a page table after a collapse
void Machine::free_table_page(Pfn pfn, CpuId cpu) { phys_->free_pages(pfn, 0, cpu); }

std::vector<std::string> Machine::check() const {
  std::vector<std::string> v = phys_->check();
  for (std::string& s : dmap_->check()) v.push_back(std::move(s));
  for (std::string& s : mm_->check()) v.push_back(std::move(s));
  for (std::string& s : execmem_->check()) v.push_back(std::move(s));
  for (std::string& s : guest_memfd_->check()) v.push_back(std::move(s));
  for (std::string& s : policy_->check()) v.push_back(std::move(s));

  // Page-table pages: allocated PageTable frames, exactly the direct map's.
  std::vector<Pfn> tables = dmap_->table_pages();
  std::sort(tables.begin(), tables.end());
  for (const Pfn p : tables) {
    if (phys_->kind(p) != phys::FrameKind::PageTable) {
      v.push_back(fmt::format("direct-map page table at pfn {:#x} is a {} frame", p,
                              phys::frame_kind_name(phys_->frame_byte(p))));
    }
  }
  if (phys_->pages_of_kind(phys::FrameKind::PageTable) != tables.size()) {
    v.push_back(fmt::format("{} PageTable frames but the direct map uses {} table pages",
                            phys_->pages_of_kind(phys::FrameKind::PageTable), tables.size()));
  }
  // No unmapped page is present in the direct map, whichever user holds it.
  std::uint64_t secret = 0;
  for (Pfn p = 0; p < phys_->nr_frames(); ++p) {
    const phys::FrameKind k = phys_->kind(p);
    if (k == phys::FrameKind::Secret || k == phys::FrameKind::Unmapped) {
      if (k == phys::FrameKind::Secret) ++secret;
      if (dmap_->is_present(p)) {
        if (v.size() < 128) {
          v.push_back(fmt::format("{} page {:#x} is present in the direct map",
                                  k == phys::FrameKind::Secret ? "secret" : "pooled unmapped", p));
        }
      }
    }
  }
  // Movable and reclaimable pages: each with its owner's record.
  const mm::ProcessMemory& mem = mm_->memory();
  const std::uint64_t user_held = mem.anon_pages() + guest_memfd_->mapped_pages();
  if (phys_->pages_of_kind(phys::FrameKind::User) != user_held) {
    v.push_back(fmt::format("{} User frames but their owners hold {} (anonymous {}, guest_memfd {})",
                            phys_->pages_of_kind(phys::FrameKind::User), user_held, mem.anon_pages(),
                            guest_memfd_->mapped_pages()));
  }
  if (phys_->pages_of_kind(phys::FrameKind::PageCache) != mem.cache_pages()) {
    v.push_back(fmt::format("{} PageCache frames but the file LRU holds {}",
                            phys_->pages_of_kind(phys::FrameKind::PageCache), mem.cache_pages()));
  }
  if (phys_->pages_of_kind(phys::FrameKind::Reclaimable) != mem.slab_pages()) {
    v.push_back(fmt::format("{} Reclaimable frames but the slab shrinker holds {}",
                            phys_->pages_of_kind(phys::FrameKind::Reclaimable), mem.slab_pages()));
  }
  const std::uint64_t held = mm_->secret_pages() + mm_->exclusive_pages() + guest_memfd_->unmapped_pages();
  if (secret != held) {
    v.push_back(fmt::format("{} Secret frames but the users hold {} pages (secretmem {}, "
                            "MAP_EXCLUSIVE {}, guest_memfd {})",
                            secret, held, mm_->secret_pages(), mm_->exclusive_pages(),
                            guest_memfd_->unmapped_pages()));
  }
  return v;
}

std::size_t Machine::model_bytes() const {
  return phys_->model_bytes() + dmap_->model_bytes() + mm_->model_bytes() +
         execmem_->model_bytes() + guest_memfd_->model_bytes() + sizeof(*this) +
         flushes_.events().capacity() * sizeof(directmap::FlushEvent);
}

}  // namespace exmem::model
