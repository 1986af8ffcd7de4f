// sim/: the run driver (see run.hpp for what the folder owns).
// measure.hpp: what a run measures on the machine besides its counters: the
// kernel's fragmentation index, a cheap TLB miss rate for samples along the
// run, and the host's peak RSS.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "model/machine.hpp"
#include "model/tlb/tlb.hpp"
#include "model/types.hpp"

namespace exmem::sim {

// mirrors __fragmentation_index() of mm/vmstat.c, in thousandths: -1000 when a
// block of the order is free; else toward 0 when failure would be for want of
// memory and toward 1000 when it would be for fragmentation.
int fragmentation_index(const std::array<std::uint64_t, model::kNrPageOrders>& nr_free, unsigned order);

// A cheap TLB miss rate for the samples along a run: one fixed sequence of
// the cost estimate's kernel accesses (its Zipf hot set, another seed) through
// one CPU's TLB, flushed first, on the direct map as it stands: a miss fills
// the leaf the direct map has now. The same accesses every time, so samples
// differ only by what the run did to the direct map. The first half warms the
// TLB, the second half is measured; it is colder than the final estimate's
// (which gives every CPU hundreds of times more accesses), so its rate is
// higher: compare samples with each other, not with tlb_cost.miss_rate.
class MissRateProbe {
 public:
  MissRateProbe(const model::Machine& machine, const model::tlb::TlbConfig& tlb, std::uint64_t seed);
  double sample();

 private:
  static constexpr std::size_t kAccesses = 1024;
  const model::Machine& machine_;
  model::tlb::CpuTlb tlb_;
  std::vector<model::Pfn> accesses_;
};

// The process's peak resident set (getrusage), in bytes.
std::uint64_t peak_rss_bytes();

}  // namespace exmem::sim
