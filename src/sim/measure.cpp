// measure.cpp: the fragmentation index, the sampling TLB probe, peak RSS.
#include "sim/measure.hpp"

#include <sys/resource.h>

#include "model/tlb/cost.hpp"

namespace exmem::sim {

namespace md = exmem::model;

int fragmentation_index(const std::array<std::uint64_t, md::kNrPageOrders>& nr_free, unsigned order) {
  std::uint64_t total = 0;
  std::uint64_t suitable = 0;
  std::uint64_t free_pages = 0;
  for (unsigned o = 0; o < md::kNrPageOrders; ++o) {
    total += nr_free[o];
    free_pages += nr_free[o] << o;
    if (o >= order) suitable += nr_free[o] << (o - order);
  }
  if (total == 0) return 0;
  if (suitable != 0) return -1000;
  const std::uint64_t requested = std::uint64_t{1} << order;
  return static_cast<int>(1000 - (1000 + free_pages * 1000 / requested) / total);
}

MissRateProbe::MissRateProbe(const md::Machine& machine, const md::tlb::TlbConfig& tlb, std::uint64_t seed)
    : machine_(machine), tlb_(tlb) {
  md::tlb::AccessStream stream(machine.dmap(), machine.phys(), md::tlb::AccessConfig{}, seed ^ 0x5851F42D4C957F2Dull);
  accesses_.reserve(kAccesses);
  for (std::size_t i = 0; i < kAccesses; ++i) accesses_.push_back(stream.next());
}

double MissRateProbe::sample() {
  tlb_.flush_all();
  const md::directmap::DirectMap& dmap = machine_.dmap();
  std::uint64_t walks = 0;
  std::uint64_t measured = 0;
  for (std::size_t i = 0; i < accesses_.size(); ++i) {
    const md::Pfn p = accesses_[i];
    const md::directmap::Lookup lk = dmap.lookup(p);
    if (!lk.present()) continue;  // a page that left the direct map since
    const bool counted = i >= accesses_.size() / 2;
    measured += counted ? 1 : 0;
    if (tlb_.lookup(md::tlb::kKernelAsid, p).level >= 0) continue;
    walks += counted ? 1 : 0;
    md::tlb::Translation t;
    t.size = md::tlb::page_size_of(lk.level);
    t.vpn = p & ~(md::tlb::pages_of(t.size) - 1);
    t.pfn = static_cast<md::Pfn>(t.vpn);
    t.flags = lk.flags;
    tlb_.fill(t, p);
  }
  return measured == 0 ? 0.0 : static_cast<double>(walks) / static_cast<double>(measured);
}

std::uint64_t peak_rss_bytes() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<std::uint64_t>(ru.ru_maxrss) * 1024;  // ru_maxrss is in KiB on Linux
}

}  // namespace exmem::sim
