// tlb/: per-CPU TLBs (see tlb.hpp for what the folder owns).
// cost.hpp: the kernel's access stream over the direct map and the cost of a
// run: TLB misses, page walks and shootdowns, and from them the estimated
// kernel slowdown of the run's direct map against the same machine's direct
// map as it booted (no splits).
//
// The stream: at the end of a run, the kernel's own live pages as the
// machine's frames record them (phys::FrameKind), weighted by kind: page cache
// (read/write copy through the direct map), reclaimable slab (dentries,
// inodes), other kernel allocations (unmovable slab, network buffers,
// vmalloc'd memory: the model does not tell them apart), the direct map's page
// tables and, off by default, anonymous user pages (zeroing, copy-on-write).
// A hot set of those pages takes hot_fraction of the accesses with Zipf or
// uniform locality; the rest go to any of them. When the run has no live page
// of a weighted kind, the stream falls back to random pages over all of RAM
// (the stream this model used before), and says so.
#pragma once

#include <array>
#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "model/directmap/directmap.hpp"
#include "model/phys/physmem.hpp"
#include "model/tlb/system.hpp"
#include "model/types.hpp"

namespace exmem::model::tlb {

enum class Locality : std::uint8_t { Uniform, Zipf };

// The kinds of live kernel pages the stream draws from, in this order.
enum class KernelPageKind : std::uint8_t { PageCache, SlabReclaimable, Kernel, PageTables, User };
inline constexpr std::size_t kKernelPageKinds = 5;
// "page_cache", "slab_reclaimable", "kernel", "page_tables", "user"
std::string_view kernel_page_kind_name(KernelPageKind k);

// Relative weight of one page of each kind (a page of weight 2 is drawn twice
// as often as one of weight 1).
struct KindWeights {
  std::array<double, kKernelPageKinds> w{1.0, 1.0, 1.0, 1.0, 0.0};
  [[nodiscard]] double of(KernelPageKind k) const { return w[static_cast<std::size_t>(k)]; }
  double& of(KernelPageKind k) { return w[static_cast<std::size_t>(k)]; }
};

// A few hundred direct-map page touches per simulated allocation event: one
// event of the synthetic workload (a page allocated or freed, a secret fault)
// stands for a syscall or a fault whose kernel work reads and writes slab
// objects, page-cache pages, the task's page tables and the page itself. 256
// is the order of magnitude of the distinct data cache lines a short syscall
// path touches (a few hundred per pread() or page fault, perf mem), taken as
// pages with no reuse: an upper-side figure, so shootdowns weigh less, not more.
inline constexpr std::uint64_t kDefaultAccessesPerEvent = 256;

struct AccessConfig {
  std::uint64_t accesses = 200'000;
  std::uint64_t hot_set_bytes = 64 * MiB;
  double hot_fraction = 0.95;  // accesses to the hot set; the rest go anywhere in the stream's pages
  Locality locality = Locality::Zipf;
  double zipf_s = 0.99;
  KindWeights weights{};
  // The run's kernel accesses are events x this (the stream is a sample of them).
  std::uint64_t accesses_per_event = kDefaultAccessesPerEvent;
  // false: random pages over all of RAM whatever the frames hold (the samples
  // along a run, and the tests that want a machine-wide stream).
  bool live_kernel_pages = true;
  SpecConfig spec{};
};

// Published figures behind the shootdown estimate (docs/tlb.md has the sources).
struct ShootdownCosts {
  double single_page_flush_ns = 100;  // arch/x86/mm/tlb.c: "Each single flush is about 100 ns"
  double ipi_round_trip_ns = 2000;    // ~1-3 us IPI round trip on recent Xeons (order of magnitude)
  double full_flush_ns = 500;         // local full flush (assumed); the refill shows up as misses
};

// Without a measured figure the kernel work per direct-map page touched is
// taken as 250 ns (assumed, order of magnitude: a pread() of 64 bytes from a
// cached page is a few hundred ns on current x86 cores), and cycles become ns
// at 2500 MHz (assumed).
inline constexpr double kBuiltinKernelAccessNs = 250;
inline constexpr double kAssumedCpuMhz = 2500;

// The figures the cost and slowdown use, and where they came from.
struct KernelCostFigures {
  ShootdownCosts shootdown{};
  double walk_ns = 0;  // ns per page walk; 0: the preset's mean walk cycles at cpu_mhz
  double kernel_access_ns = kBuiltinKernelAccessNs;
  double cpu_mhz = 0;  // 0: unknown (kAssumedCpuMhz where cycles must become ns)
  // "built-in constants", or the costs file with its probe's date and host.
  std::string source = "built-in constants";
  // Per figure: where it comes from.
  std::string walk_from = "model: the preset's mean walk cycles on the run's map at 2500 MHz (assumed)";
  std::string kernel_access_from = "assumed: 250 ns of kernel work per direct-map page touched (order of magnitude)";
  std::string ipi_from = "order of magnitude: ~1-3 us IPI round trip on recent Xeons";
  std::string single_flush_from = "kernel comment, arch/x86/mm/tlb.c: \"Each single flush is about 100 ns\"";
  std::string full_flush_from = "assumed: 500 ns local full flush";
  [[nodiscard]] double mhz() const { return cpu_mhz > 0 ? cpu_mhz : kAssumedCpuMhz; }
};

// Random direct-map pages over all of RAM with the configured hot set and
// locality (the samples along a run, and the kernel stream's fallback).
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

// The kernel's stream of one run, drawn once (see the top of this file).
struct KernelStream {
  std::vector<Pfn> pfns;  // the accesses, in order
  bool live = false;      // drawn from live kernel pages (false: over all of RAM)
  std::string source;     // "live kernel pages" or why it fell back
  // At the end of the run, by kind (user pages counted only when weighted).
  std::array<std::uint64_t, kKernelPageKinds> live_pages{};
  std::uint64_t hot_set_pages = 0;
};
KernelStream kernel_stream(const directmap::DirectMap& dmap, const phys::PhysMem& phys,
                           const AccessConfig& config, std::uint64_t seed);

// What one stream did on one direct map.
struct WalkCount {
  std::uint64_t accesses = 0;
  std::uint64_t l1_hits = 0;
  std::uint64_t lower_hits = 0;
  std::uint64_t walks = 0;
  std::uint64_t walk_refs = 0;
  std::uint64_t faults = 0;
  double walk_cycles = 0;  // walk_refs x walk_ref_cycles + lower-level hit cycles
};
// The stream on every CPU of phys (round robin) against dmap, TLBs empty at the start.
WalkCount run_stream(const directmap::DirectMap& dmap, const phys::PhysMem& phys, const TlbConfig& tlb,
                     std::span<const Pfn> stream, const SpecConfig& spec, std::uint64_t seed);

// Calls alloc_table_page() of nobody: a direct map that must not split.
class NoTablePages final : public directmap::PageTableAllocator {
 public:
  Result<Pfn> alloc_table_page(CpuId) override { return Result<Pfn>::error(12); }  // -ENOMEM
  void free_table_page(Pfn, CpuId) override {}
};
// dmap's RAM mapped as init_mem_mapping() mapped it at boot (same ranges, same
// direct_gbpages), with no split: what a run's direct map is compared with.
struct BootDirectMap {
  explicit BootDirectMap(const directmap::DirectMap& dmap);
  NoTablePages tables;
  directmap::FlushLog flushes;
  directmap::DirectMap map;
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
  // The stream.
  bool stream_live = false;
  std::string stream_source;
  std::array<std::uint64_t, kKernelPageKinds> live_pages{};
  std::uint64_t hot_set_pages = 0;
  // The same stream on the boot direct map (no splits).
  std::uint64_t walks_unsplit = 0;
  std::uint64_t walk_refs_unsplit = 0;
  double walk_cycles_unsplit = 0;
  // The slowdown against the unsplit map (see estimate_cost()).
  std::uint64_t events = 0;
  std::uint64_t accesses_per_event = 0;
  double run_accesses = 0;  // events x accesses_per_event (the stream's accesses when no events)
  double scale = 0;         // run_accesses / accesses
  double walk_ns = 0;
  double kernel_access_ns = 0;
  double extra_walk_ns = 0;  // (misses - walks_unsplit) x walk_ns x scale
  double shootdown_ns = 0;
  double kernel_ns = 0;      // run_accesses x kernel_access_ns + walks_unsplit x scale x walk_ns
  double slowdown_percent = 0;
  std::string figures_source;
  std::string walk_from;
  std::string kernel_access_from;
};

// Draws the run's kernel stream, runs it on every CPU of phys (round robin)
// against the direct map as it stands and against the boot map of the same
// RAM, prices the flushes the log counted, and estimates the slowdown:
//   run accesses  = events x accesses_per_event (the stream's own count when events is 0)
//   scale         = run accesses / stream accesses
//   extra walk ns = (walks - walks on the boot map) x scale x walk_ns
//   kernel ns     = run accesses x kernel_access_ns + walks on the boot map x scale x walk_ns
//   slowdown %    = (extra walk ns + shootdown ns) / kernel ns x 100
CostReport estimate_cost(const directmap::DirectMap& dmap, const phys::PhysMem& phys,
                         const directmap::FlushCounters& flushes, const TlbConfig& tlb,
                         const AccessConfig& access, std::uint64_t seed,
                         const KernelCostFigures& figures = {}, std::uint64_t events = 0);
// The shootdown part alone, from flush counters and the number of CPUs.
double shootdown_cost_us(const directmap::FlushCounters& flushes, unsigned cpus,
                         const ShootdownCosts& costs = {});
// The report as (column header, value) pairs, for a table next to the split counts.
std::vector<std::pair<std::string, std::string>> cost_columns(const CostReport& r);
// One line: "haswell-like: 1.2% misses (2400 walks, ~96000 cycles), 12 shootdowns ~30 us".
std::string format_cost(const CostReport& r);

// The probe's access pattern (`exmem probe --cost`, COSTS_FORMAT.md "sweep")
// through the model: N random pages each in a 2 MiB region split to 4 KiB,
// against N pages in regions mapped by 2 MiB leaves, one access per call, on
// one CPU, and the model's extra time per access beside the probe's.
struct SweepPoint {
  std::uint64_t pages = 0;
  double split_ns = 0;
  double control_ns = 0;
};
struct ProbeCheck {
  std::uint64_t pages = 0;
  double probe_extra_ns = 0;   // split_ns - control_ns
  double model_extra_ns = 0;   // per access
  double ratio = 0;            // model / probe; NaN when the probe saw no extra time
  double walks_split = 0;      // per access, in the model
  double walks_control = 0;
};
struct ProbeCheckResult {
  std::string how;  // which conversion gave ns
  std::vector<ProbeCheck> points;
};
// With cpu_mhz > 0: (walk cycles split - control) / cpu_mhz; else (walks
// split - control) x walk_ns.
ProbeCheckResult check_against_probe(const TlbConfig& tlb, std::span<const SweepPoint> sweep, double cpu_mhz,
                                     double walk_ns, std::uint64_t seed);

}  // namespace exmem::model::tlb
