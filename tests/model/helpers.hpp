// Helpers shared by the model's tests: small machines and invariant checks.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "model/machine.hpp"

namespace exmem::model::testing {

inline MachineConfig small_config(std::uint64_t ram = 256 * MiB, bool gbpages = true,
                                  unsigned cpus = 2) {
  MachineConfig c;
  c.ram_bytes = ram;
  c.cpus = cpus;
  c.direct_gbpages = gbpages;
  c.kernel_image_bytes = 8 * MiB;
  return c;
}

inline std::unique_ptr<Machine> small_machine(std::uint64_t ram = 256 * MiB, bool gbpages = true,
                                              unsigned cpus = 2) {
  return std::make_unique<Machine>(small_config(ram, gbpages, cpus));
}

inline std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += x + "\n";
  return s;
}

// Allocates order-0 kernel pages for `gfp` on `cpu` until the allocator
// refuses, appending them to `held`.
inline void take_pages(Machine& m, phys::Gfp gfp, CpuId cpu, std::vector<Pfn>& held) {
  for (;;) {
    const Result<Pfn> r = m.phys().alloc_pages(gfp, 0, cpu, phys::FrameKind::Kernel);
    if (!r.ok()) return;
    held.push_back(r.value);
  }
}

// Leaves (almost) only order-0 free blocks: every page the allocator gives
// allocated, then the even pfns of `free_back` of them freed (their odd
// buddies stay allocated). Returns the pages still held.
inline std::vector<Pfn> leave_only_order0(Machine& m, std::size_t free_back = 2048) {
  std::vector<Pfn> held;
  m.phys().drain_all_pages();  // pcp pages of other CPUs back to the buddy first
  for (const phys::Gfp gfp : {phys::GFP_KERNEL, phys::GFP_ATOMIC}) take_pages(m, gfp, 0, held);
  std::sort(held.begin(), held.end());
  std::vector<Pfn> kept;
  std::size_t freed = 0;
  for (auto it = held.rbegin(); it != held.rend(); ++it) {
    if (freed < free_back && *it % 2 == 0) {
      m.phys().free_pages(*it, 0, 0);
      ++freed;
    } else {
      kept.push_back(*it);
    }
  }
  m.phys().drain_all_pages();
  // Whatever merged into larger blocks on the way is taken too.
  for (unsigned o = kMaxPageOrder; o > 0; --o) {
    while (m.phys().alloc_pages(phys::GFP_ATOMIC, o, 0, phys::FrameKind::Kernel).ok()) {
    }
  }
  return kept;
}

#define EXPECT_SOUND(machine) EXPECT_TRUE((machine).check().empty()) << join((machine).check())

}  // namespace exmem::model::testing
