// tlb/: per-CPU TLBs (see tlb.hpp for what the folder owns).
// cost.cpp: the access stream and the cost estimate.
#include "model/tlb/cost.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace exmem::model::tlb {

AccessStream::AccessStream(const directmap::DirectMap& dmap, const phys::PhysMem& phys,
                           const AccessConfig& config, std::uint64_t seed)
    : dmap_(dmap), phys_(phys), config_(config), rng_(seed) {
  for (const phys::PfnRange& r : phys.ram()) ram_pages_ += r.size();
  if (ram_pages_ == 0) return;
  const std::uint64_t want = std::min<std::uint64_t>(
      std::max<std::uint64_t>(config.hot_set_bytes / kPageSize, 1), ram_pages_);
  hot_.reserve(want);
  for (std::uint64_t i = 0; i < want; ++i) hot_.push_back(any_ram_page());
  if (config.locality == Locality::Zipf) {
    zipf_cdf_.resize(hot_.size());
    double sum = 0;
    for (std::size_t k = 0; k < hot_.size(); ++k) {
      sum += 1.0 / std::pow(static_cast<double>(k + 1), config.zipf_s);
      zipf_cdf_[k] = sum;
    }
    for (double& c : zipf_cdf_) c /= sum;
  }
}

Pfn AccessStream::any_ram_page() {
  std::uniform_int_distribution<std::uint64_t> d(0, ram_pages_ - 1);
  std::uint64_t i = d(rng_);
  for (const phys::PfnRange& r : phys_.ram()) {
    if (i < r.size()) return static_cast<Pfn>(r.start + i);
    i -= r.size();
  }
  return phys_.ram().front().start;
}

Pfn AccessStream::next() {
  if (ram_pages_ == 0) return 0;
  std::uniform_real_distribution<double> u(0.0, 1.0);
  Pfn p = 0;
  for (int attempt = 0; attempt < 8; ++attempt) {  // skip pages absent from the direct map
    if (u(rng_) < config_.hot_fraction) {
      if (config_.locality == Locality::Zipf) {
        const auto it = std::lower_bound(zipf_cdf_.begin(), zipf_cdf_.end(), u(rng_));
        p = hot_[std::min<std::size_t>(static_cast<std::size_t>(it - zipf_cdf_.begin()),
                                       hot_.size() - 1)];
      } else {
        std::uniform_int_distribution<std::size_t> d(0, hot_.size() - 1);
        p = hot_[d(rng_)];
      }
    } else {
      p = any_ram_page();
    }
    if (dmap_.is_present(p)) break;
  }
  return p;
}

double shootdown_cost_us(const directmap::FlushCounters& f, unsigned cpus,
                         const ShootdownCosts& c) {
  const double ipi = cpus > 1 ? c.ipi_round_trip_ns : 0.0;
  const double ns = static_cast<double>(f.range_flushes) * ipi +
                    static_cast<double>(f.range_pages) * c.single_page_flush_ns +
                    static_cast<double>(f.full_flushes) * (ipi + c.full_flush_ns) +
                    static_cast<double>(f.local_flushes) * c.single_page_flush_ns;
  return ns / 1000.0;
}

CostReport estimate_cost(const directmap::DirectMap& dmap, const phys::PhysMem& phys,
                         const directmap::FlushCounters& flushes, const TlbConfig& tlb,
                         const AccessConfig& access, std::uint64_t seed,
                         const ShootdownCosts& costs) {
  TlbSystem sys(dmap, phys, tlb, access.spec, seed);
  sys.set_history(0);
  AccessStream stream(dmap, phys, access, seed ^ 0x9E3779B97F4A7C15ull);
  const unsigned cpus = sys.cpus();
  for (std::uint64_t i = 0; i < access.accesses; ++i) {
    sys.access(static_cast<CpuId>(i % cpus), stream.next());
  }
  const TlbStats& s = sys.stats();
  CostReport r;
  r.tlb = tlb.name;
  r.accesses = s.accesses;
  r.l1_hits = s.l1_hits;
  r.lower_hits = s.lower_hits;
  r.misses = s.walks;
  r.walk_refs = s.walk_refs;
  r.faults = s.faults;
  r.miss_rate =
      s.accesses == 0 ? 0.0 : static_cast<double>(s.walks) / static_cast<double>(s.accesses);
  r.walk_cycles = static_cast<double>(s.walk_refs) * tlb.walk_ref_cycles +
                  static_cast<double>(s.lower_hit_cycles);
  const directmap::FlushCounters& f = flushes;
  r.range_flushes = f.range_flushes;
  r.range_pages = f.range_pages;
  r.full_flushes = f.full_flushes;
  r.local_flushes = f.local_flushes;
  r.ipis = (f.range_flushes + f.full_flushes) * (cpus - 1);
  r.shootdown_us = shootdown_cost_us(f, cpus, costs);
  const directmap::DirectMapCounters& d = dmap.counters();
  r.leaves_4k = d.leaves_4k;
  r.leaves_2m = d.leaves_2m;
  r.leaves_1g = d.leaves_1g;
  return r;
}

std::vector<std::pair<std::string, std::string>> cost_columns(const CostReport& r) {
  return {
      {"TLB miss %", fmt::format("{:.2f}", r.miss_rate * 100.0)},
      {"walks", fmt::format("{}", r.misses)},
      {"walk Mcycles", fmt::format("{:.2f}", r.walk_cycles / 1e6)},
      {"shootdowns", fmt::format("{}", r.range_flushes + r.full_flushes)},
      {"IPIs", fmt::format("{}", r.ipis)},
      {"shootdown us", fmt::format("{:.1f}", r.shootdown_us)},
  };
}

std::string format_cost(const CostReport& r) {
  return fmt::format(
      "{}: {:.2f}% TLB misses ({} walks, {} walk refs, ~{:.0f} cycles) over {} accesses; "
      "{} range + {} full flushes, {} IPIs, ~{:.1f} us of shootdowns; leaves 4K/2M/1G {}/{}/{}",
      r.tlb, r.miss_rate * 100.0, r.misses, r.walk_refs, r.walk_cycles, r.accesses, r.range_flushes,
      r.full_flushes, r.ipis, r.shootdown_us, r.leaves_4k, r.leaves_2m, r.leaves_1g);
}

}  // namespace exmem::model::tlb
