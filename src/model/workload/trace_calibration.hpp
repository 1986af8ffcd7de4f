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
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "model/machine.hpp"
#include "model/workload/trace_replay.hpp"

namespace exmem::model::workload {

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
};

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
