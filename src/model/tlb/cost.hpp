// tlb/: per-CPU TLBs (see tlb.hpp for what the folder owns).
// cost.hpp: the kernel's access stream over the direct map (slab objects, page
// cache, network buffers: a hot set with Zipf or uniform locality, plus a cold
// tail over all of RAM), and the cost of a run: TLB misses, page-walk
// estimate and shootdown cost, for display next to the split counts.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "model/directmap/directmap.hpp"
#include "model/phys/physmem.hpp"
#include "model/tlb/system.hpp"
#include "model/types.hpp"

namespace exmem::model::tlb {

enum class Locality : std::uint8_t { Uniform, Zipf };

struct AccessConfig {
  std::uint64_t accesses = 200'000;
  std::uint64_t hot_set_bytes = 64 * MiB;
  double hot_fraction = 0.95;  // accesses to the hot set; the rest go anywhere in RAM
  Locality locality = Locality::Zipf;
  double zipf_s = 0.99;
  SpecConfig spec{};
};

// Published figures behind the shootdown estimate (docs/tlb.md has the sources).
struct ShootdownCosts {
  double single_page_flush_ns = 100;  // arch/x86/mm/tlb.c: "Each single flush is about 100 ns"
  double ipi_round_trip_ns = 2000;    // ~1-3 us IPI round trip on recent Xeons (order of magnitude)
  double full_flush_ns = 500;         // local full flush (assumed); the refill shows up as misses
};

// Direct-map pages in RAM, drawn with the configured locality.
class AccessStream {
 public:
  // Pages of phys's RAM; the stream skips the ones absent from dmap.
  AccessStream(const directmap::DirectMap& dmap, const phys::PhysMem& phys,
               const AccessConfig& config, std::uint64_t seed);
  Pfn next();
  [[nodiscard]] const std::vector<Pfn>& hot_set() const { return hot_; }

 private:
  Pfn any_ram_page();
  const directmap::DirectMap& dmap_;
  const phys::PhysMem& phys_;
  AccessConfig config_;
  std::mt19937_64 rng_;
  std::vector<Pfn> hot_;
  std::vector<double> zipf_cdf_;
  std::uint64_t ram_pages_ = 0;
};

struct CostReport {
  std::string tlb;  // preset name
  std::uint64_t accesses = 0;
  std::uint64_t l1_hits = 0;
  std::uint64_t lower_hits = 0;
  std::uint64_t misses = 0;  // page walks
  std::uint64_t walk_refs = 0;
  std::uint64_t faults = 0;  // accesses to pages absent from the direct map (skipped by the stream)
  double miss_rate = 0;      // misses / accesses
  double walk_cycles = 0;    // walk_refs x walk_ref_cycles + lower-level hit cycles
  // Shootdowns the machine's flush log counted during its run.
  std::uint64_t range_flushes = 0;
  std::uint64_t range_pages = 0;
  std::uint64_t full_flushes = 0;
  std::uint64_t local_flushes = 0;
  std::uint64_t ipis = 0;
  double shootdown_us = 0;
  // The leaf mix the access stream ran on.
  std::uint64_t leaves_4k = 0;
  std::uint64_t leaves_2m = 0;
  std::uint64_t leaves_1g = 0;
};

// Runs the access stream on every CPU of phys (round robin) against the direct
// map as it stands, and prices the flushes the log counted.
CostReport estimate_cost(const directmap::DirectMap& dmap, const phys::PhysMem& phys,
                         const directmap::FlushCounters& flushes, const TlbConfig& tlb,
                         const AccessConfig& access, std::uint64_t seed,
                         const ShootdownCosts& costs = {});
// The shootdown part alone, from flush counters and the number of CPUs.
double shootdown_cost_us(const directmap::FlushCounters& flushes, unsigned cpus,
                         const ShootdownCosts& costs = {});
// The report as (column header, value) pairs, for a table next to the split counts.
std::vector<std::pair<std::string, std::string>> cost_columns(const CostReport& r);
// One line: "haswell-like: 1.2% misses (2400 walks, ~96000 cycles), 12 shootdowns ~30 us".
std::string format_cost(const CostReport& r);

}  // namespace exmem::model::tlb
