// workload/: what drives the model (see README.md for what the folder owns).
// trace_calibration.hpp: a recorded trace against the real kernel.
//
// `exmem trace record` writes the real kernel's direct-map counters before
// and after the command ran (/proc/meminfo DirectMap*, /proc/vmstat
// direct_map_level2/3_splits) and the real pfn of every page of the command's
// memfd_secret mappings. From those this computes what the real kernel did,
// and what the model's direct map does when the same pfns are removed from
// it, with set_direct_map_invalid_noflush() as secretmem_fault() does, on a
// model machine laid out like the recording one (its direct-mapped RAM, the
// PCI hole at 3-4 GiB, 1 GiB leaves only if the real direct map had any).
//
// The real kernel had split some regions before the recording (DirectMap4k at
// the start says how many, not which); a secret page landing in one of them
// costs the real kernel nothing and the fresh model one split. So the model's
// count at the real pfns is an upper bound of the real one, and the difference
// must not exceed the regions split before plus those split by other activity
// during the recording: `explained` checks exactly that.
//
// With a start snapshot the model machine's RAM is the snapshot's mapped
// regions (still with the model's PCI hole at 3-4 GiB) rather than the counters' total.
//
// When the trace carries the real direct map at the start and the end (its
// "# direct_map" lines, trace_format.hpp), the comparison is exact instead:
// the model's direct map starts from the real start map (every region split
// there is split in the model with DirectMap::split_to() before the secret
// pages are taken out, and a GiB of 2 MiB leaves there is split to them), and
// its end map is compared with the real end map region by region
// (RegionComparison).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/machine.hpp"
#include "model/workload/trace_replay.hpp"

namespace exmem::model::workload {

// The model's end map against the real end map, per 2 MiB region, over the
// regions both map (regions mapped in only one of them are counted apart: the
// model's RAM layout is the recording machine's size with the model's PCI hole,
// not its e820 map).
struct RegionComparison {
  bool exact = false;                    // the trace has both snapshots
  std::uint64_t regions = 0;             // regions compared (mapped in both)
  std::uint64_t presplit_2m = 0;         // regions split to 4 KiB in the model to match the start map
  std::uint64_t presplit_1g = 0;         // GiBs split to 2 MiB leaves in the model to match it
  std::uint64_t split_both = 0;          // split to 4 KiB in both end maps
  std::uint64_t split_model_only = 0;    // split in the model's, a leaf in the kernel's
  std::uint64_t split_kernel_only = 0;   // split in the kernel's, a leaf in the model's
  std::uint64_t leaf1g_both = 0;         // inside a 1 GiB leaf in both
  std::uint64_t leaf1g_model_only = 0;
  std::uint64_t leaf1g_kernel_only = 0;
  std::uint64_t mapped_model_only = 0;   // layout differences, not compared
  std::uint64_t mapped_kernel_only = 0;
  // The real kernel during the recording: regions split at the end and not
  // at the start, and of those the ones holding one of the command's secret
  // pages; regions split at the start and no longer at the end (collapsed).
  std::uint64_t kernel_new_splits = 0;
  std::uint64_t kernel_new_with_secret = 0;
  std::uint64_t kernel_collapsed = 0;
  // split_kernel_only regions holding a secret page (the model missed them:
  // never expected), and the first few region numbers of each disagreement.
  std::uint64_t kernel_only_with_secret = 0;
  std::vector<std::uint64_t> first_model_only, first_kernel_only;
  // The model's map at the end, one model::Coverage value per region (for pictures).
  std::vector<std::uint8_t> model_end;
  // Every region the model split is split in the real end map, and every
  // region only the kernel split holds none of the command's secret pages
  // (other kernel activity during the recording, not in the trace's secret pages).
  bool explained = false;
};

struct TraceCalibration {
  bool have_counters = false;  // the trace has "# start" and "# end" counters
  // The real kernel while the command ran.
  std::int64_t real_level2_splits = 0;
  std::int64_t real_level3_splits = 0;
  std::int64_t real_directmap4k_kb = 0;        // DirectMap4k delta
  std::uint64_t regions_split_before = 0;      // DirectMap4k at the start / 2 MiB
  // The command's secret pages (the trace's "# secret" lines).
  std::uint64_t secret_pages = 0;
  std::uint64_t secret_regions = 0;            // distinct 2 MiB regions they are in
  std::uint64_t outside_model = 0;             // pfns beyond the model machine's RAM (skipped)
  // The model's direct map with the same pfns removed.
  MachineConfig machine;                       // the layout it used
  std::uint64_t model_level2_splits = 0;
  std::uint64_t model_level3_splits = 0;
  std::uint64_t model_directmap4k_kb = 0;      // DirectMap4k delta
  // model_level2_splits - real_level2_splits <= regions_split_before (and the
  // model never predicts fewer than the real kernel did for these pages).
  bool explained = false;
  RegionComparison exact;  // exact.exact: the trace's snapshots were used
  std::string map_unavailable;  // otherwise: the trace's reason (empty: an older trace)
};

// The two halves of the exact comparison, for other callers than a trace
// (bench/calibrate.cpp): the model's map split where `start` is split, and the
// model's map against the real `end` one, `secret_pfns` being the pages whose
// regions decide. compare_with_snapshot() sets x.exact.
void start_from_snapshot(directmap::DirectMap& dm, const DirectMapSnapshot& start, RegionComparison& x);
void compare_with_snapshot(const Machine& machine, const DirectMapSnapshot& start, const DirectMapSnapshot& end,
                           const std::vector<std::uint64_t>& secret_pfns, RegionComparison& x);

// Needs the start and end counters for have_counters; without them only the
// secret-page part is filled.
TraceCalibration calibrate_trace(const TraceInfo& info);

// Several recordings made one after the other on the same machine: the model's
// direct map keeps what earlier ones split, as the real kernel does (splits
// never heal for secret memory), so only the regions split before the first
// recording stay unknown to it.
class TraceCalibrator {
 public:
  // The model machine is laid out from this trace's counters (see above).
  explicit TraceCalibrator(const TraceInfo& first);
  ~TraceCalibrator();
  TraceCalibrator(const TraceCalibrator&) = delete;
  TraceCalibrator& operator=(const TraceCalibrator&) = delete;
  // The next recording, in the order they were made.
  TraceCalibration add(const TraceInfo& info);

 private:
  MachineConfig config_;
  std::unique_ptr<Machine> machine_;
};

}  // namespace exmem::model::workload
