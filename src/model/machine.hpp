// The kernel model, root folder (see types.hpp for what the folder owns).
// machine.hpp: one modelled machine: its RAM and page allocator, its direct
// map, the TLB flush log, the processes, and the policy for unmapped pages.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/directmap/directmap.hpp"
#include "model/directmap/flush.hpp"
#include "model/mm/mm.hpp"
#include "model/phys/physmem.hpp"
#include "model/policy/policy.hpp"
#include "model/types.hpp"

namespace exmem::model {

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
  bool secretmem_enable = true;  // secretmem.enable= (on by default since 6.5)
  std::uint64_t rlimit_memlock_bytes = 8 * MiB;  // default RLIMIT_MEMLOCK since 5.16
  std::string policy = "upstream";
  std::size_t flush_log_limit = 0;  // flush events kept for inspection (0: counters only)

  [[nodiscard]] phys::PhysConfig phys_config() const;
};

class Machine final : private directmap::PageTableAllocator {
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

  // All invariants of all parts, plus the ones between them: no secret page is
  // present in the direct map; every page-table page of the direct map is an
  // allocated PageTable frame, and every PageTable frame is one of them.
  [[nodiscard]] std::vector<std::string> check() const;
  // Host bytes the model occupies.
  [[nodiscard]] std::size_t model_bytes() const;

 private:
  Result<Pfn> alloc_table_page(CpuId cpu) override;
  void free_table_page(Pfn pfn, CpuId cpu) override;

  MachineConfig config_;
  directmap::FlushLog flushes_;
  std::unique_ptr<phys::PhysMem> phys_;
  std::unique_ptr<directmap::DirectMap> dmap_;
  std::unique_ptr<policy::Policy> policy_;
  std::unique_ptr<mm::Mm> mm_;
};

}  // namespace exmem::model
