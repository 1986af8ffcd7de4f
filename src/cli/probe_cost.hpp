// `exmem probe --cost`: what a split direct map costs on this machine's kernel,
// measured, written as the costs file of /work/wt/COSTS_FORMAT.md ("exmem-costs/1")
// that `exmem sim --costs FILE` reads.
//
// Two halves:
//   - the pure half (probe_cost_figures.cpp, also compiled into the tests): the
//     statistics of a figure, the decoding of a hypervisor's CPUID vendor, the
//     derivation of the five figures from the raw samples and the costs file's JSON;
//   - the measuring half (probe_cost.cpp): the confirmation, the child process that
//     places pages, times them and reports raw samples, the report and --save.
//
// With --json the command prints one object: {"costs": the costs file's object (the
// same as --save writes), "machine": {"hypervisor", "hypervisor_vendor",
// "nested_paging", "pti", "cpu", "cpus"}, "placement": {secret_files, secret_pages,
// anchor_pages, freed_pages, reused_pages, reuse_rate, split_file_pages,
// split_group_pages, control_file_pages, control_group_pages, split_group_regions,
// control_group_regions, anchor_regions, secret_regions, contamination_bound,
// calls_per_run}, "faults": {placement_faults, placement_split_faults, ...},
// "seconds", "saved": FILE|null}.
//
// The groups (why these two): the split group is ramfs page cache (GFP_HIGHUSER,
// ramfs_get_inode) written right after every other memfd_secret file was freed, so it
// takes the freed frames; a page counts when its 2 MiB region holds a live secret page
// (its direct-map entry is invalid, so the region is mapped by 4 KiB entries). The
// control group is anonymous memory in transparent huge pages, mapped by 4 KiB
// entries: movable, because on a machine where secret memory was used before, the
// free unmovable memory a ramfs page would take lies in regions split earlier
// (/proc/pagetypeinfo: unmovable pageblocks ~ direct_map_level2_splits), so a ramfs
// control group would be split too. Both are read by process_vm_readv: the same code
// (pin, kmap_local_page, copy, unpin) for both.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace exmem::cli::probe {

inline constexpr const char* kCostsFormat = "exmem-costs/1";

// One figure of the costs file: {"ns", "low", "high", "runs", "measured", "how"}.
struct Figure {
  double ns = 0.0;
  std::optional<double> low, high;  // p25 / p75 over runs; absent when runs < 2
  std::uint64_t runs = 0;
  bool measured = false;
  std::string how;
};

// Median (ns), 25th (low) and 75th (high) percentile, nearest rank, of samples,
// rounded to 0.1 ns; low/high absent when fewer than 2 samples. runs = samples.size().
Figure figure_from_samples(std::vector<double> samples, std::string how);
// A figure that must not be negative (a difference): a negative median becomes 0,
// low/high are raised to 0, and the sentence says what was measured before clamping.
Figure clamp_nonnegative(Figure f);
// The figure the probe cannot measure: one INVLPG (arch/x86/mm/tlb.c).
Figure single_page_flush_constant();

// The 12 bytes of CPUID leaf 0x40000000 (EBX, ECX, EDX) decoded: "KVM",
// "Hyper-V", "VMware", "Xen", "QEMU TCG", ... or "unknown (\"...\")".
std::string hypervisor_name(std::string_view vendor12);
struct Hypervisor {
  bool present = false;      // CPUID leaf 1 ECX bit 31
  std::string vendor_raw;    // leaf 0x40000000, printable characters only
  std::optional<std::string> name;  // nullopt on bare metal
};
Hypervisor read_hypervisor();  // x86 only; elsewhere present = false

// What the child process measured (sent to the parent as JSON).
struct CostSweepRaw {
  std::uint64_t pages = 0;
  std::vector<double> split, control;  // ns per call, one per run
};
struct CostRaw {
  unsigned cpu = 0;         // the CPU the measurement ran on
  unsigned cpus = 1;        // online CPUs
  std::uint64_t calls = 0;  // preads per run and working set
  // Placement.
  std::uint64_t secret_files = 0, secret_pages = 0, anchor_pages = 0, freed_pages = 0;
  std::uint64_t reused_pages = 0;        // freed secret pfns found in the split file
  std::uint64_t split_file_pages = 0, control_file_pages = 0;
  std::uint64_t split_pages = 0;         // split file pages in a region with a live anchor
  std::uint64_t control_pages = 0;       // control file pages in no region of our secret pages
  std::uint64_t anchor_regions = 0, secret_regions = 0;
  std::uint64_t split_group_regions = 0, control_group_regions = 0;  // distinct 2 MiB regions of each group
  std::vector<CostSweepRaw> sweep;
  // Faults: per-run medians (ns per first touch), non-splitting faults only.
  std::uint64_t fault_pages_per_run = 0;
  unsigned busy_one = 0, busy_all = 0;   // CPUs spinning in the "one" and "all" conditions
  std::vector<double> anon, secret_idle, secret_one, secret_all;
  std::uint64_t condition_faults_split = 0;  // faults of the conditions that split (left out)
  // Placement faults (every other CPU busy), one sample per fault.
  std::vector<double> split_faults;          // direct_map_level2_splits rose by 1
  std::vector<double> nonsplit_faults_runs;  // median of the non-splitting ones, per chunk of files
  std::uint64_t placement_faults = 0, placement_split_faults = 0, placement_multi_split_faults = 0;
  // The search for unsplit regions (--split-mib): secret pages faulted after the
  // measurements until enough faults split a 2 MiB leaf; their splitting faults
  // join split_faults.
  std::uint64_t search_pages = 0, search_split_faults = 0;
};
nlohmann::json raw_to_json(const CostRaw& r);
CostRaw raw_from_json(const nlohmann::json& j);  // throws nlohmann::json::exception

// The "source" object of the costs file.
struct CostSource {
  std::string tool = "exmem probe --cost";
  std::optional<std::string> exmem_version, date, kernel, cpu_model;
  std::optional<double> cpu_mhz;
  std::optional<unsigned> cpus;
  std::optional<std::string> hypervisor;
  std::optional<bool> pti;
};

struct SweepFigure {
  std::uint64_t pages = 0;
  Figure split, control;
};
struct FaultFigures {
  Figure anon, secret_idle, secret_one_busy, secret_all_busy, secret_split;
};
struct CostCounters {
  std::uint64_t l2_before = 0, l2_after = 0, dm4k_before = 0, dm4k_after = 0;
};

struct Costs {
  CostSource source;
  Figure walk, ipi_round_trip, single_page_flush, full_flush, kernel_access;
  std::vector<SweepFigure> sweep;
  std::optional<FaultFigures> faults;
  std::optional<CostCounters> counters;
};

// The five figures, the sweep and the fault figures from the raw samples, as
// COSTS_FORMAT.md defines them. Throws std::runtime_error when the raw samples
// cannot give them (no sweep, a group empty).
Costs derive_costs(const CostRaw& raw, CostSource source);
// The costs file: the keys of COSTS_FORMAT.md, in its order.
nlohmann::ordered_json costs_to_json(const Costs& c);
nlohmann::ordered_json figure_to_json(const Figure& f);

// The working sets timed for groups of `split` and `control` pages: 64, 256,
// 1024, ... (x4) up to the smaller group, and the smaller group itself when it is
// more than twice the last of those. Empty when the smaller group has < 64 pages.
std::vector<std::uint64_t> working_sets(std::uint64_t split, std::uint64_t control);

}  // namespace exmem::cli::probe

namespace exmem::cli::probe {

inline constexpr std::uint64_t kCostRunsMin = 3, kCostRunsMax = 101, kCostRunsDefault = 7;
inline constexpr std::uint64_t kCostMibMin = 8, kCostMibMax = 1024, kCostMibDefault = 128;
inline constexpr std::uint64_t kSplitMibMax = 16384;
// The search stops once this many of its faults split a leaf.
inline constexpr std::uint64_t kSplitFaultsWanted = 32;

struct CostOptions {
  bool yes = false;
  bool json_out = false;
  std::string save;  // empty: not saved
  std::uint64_t runs = kCostRunsDefault;
  std::uint64_t cost_mib = kCostMibDefault;
  // MiB of secret memory the probe may fault, after the measurements, looking for
  // faults that split a 2 MiB leaf (0: no search). The unmovable allocations a
  // secret page comes from are served first from pageblocks split earlier, so a
  // machine that ran secret memory before may need gigabytes before one splits.
  std::uint64_t split_mib = 0;
};

// `exmem probe --cost` (probe_cost.cpp): checks, confirmation, the measurement in a
// child process, the report on stdout and the file. Throws CLI::RuntimeError(1)
// after writing the reason to stderr.
void run_cost(const CostOptions& opt);

}  // namespace exmem::cli::probe
