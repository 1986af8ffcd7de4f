// `exmem sim`, the parts its files share: running one policy on a scenario's
// synthetic workload or on a recorded trace (sim_run.cpp), the progress bar
// (sim_progress.cpp), the comparison table (sim_table.cpp) and the built-in
// default scenario (generated from scenarios/default.toml at build time).
#pragma once

#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "model/tlb/tlb.hpp"
#include "model/workload/scenario.hpp"
#include "model/workload/trace_calibration.hpp"

namespace exmem::cli::sim {

// The text of scenarios/default.toml, compiled into the command.
std::string_view default_scenario_text();

// A one-line progress bar on stderr: the policy's name, percent done and
// events per second, drawn once the command has run for a second (at once
// when `immediate`), at most ten times a second, and cleared when the
// policy's run ends.
class Progress {
 public:
  explicit Progress(bool enabled, bool immediate = false);
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;
  ~Progress();
  void begin(std::string label);
  // Cheap enough to call after every workload step: looks at the clock every
  // 1024 calls only.
  void update(std::uint64_t events, double fraction) {
    if (!enabled_ || (++calls_ & 1023u) != 0) return;
    draw(events, fraction);
  }
  // Always redraws when due (for callers that call rarely).
  void update_now(std::uint64_t events, double fraction) {
    if (enabled_) draw(events, fraction);
  }
  void end();

 private:
  void draw(std::uint64_t events, double fraction);
  bool enabled_;
  bool immediate_;
  bool drawn_ = false;
  std::uint64_t calls_ = 0;
  std::string label_;
  std::chrono::steady_clock::time_point command_start_;
  std::chrono::steady_clock::time_point run_start_;
  std::chrono::steady_clock::time_point last_draw_;
};

// One policy on the scenario's synthetic workload: the JSON object of one run.
// With `region_maps`, the run also carries region_map {start, end}: the map
// of physical memory and the direct map (report/report.hpp) after the fill
// and at the end, for the HTML report of --out.
nlohmann::json run_synthetic(const model::workload::Scenario& scenario, const std::string& policy,
                             const model::tlb::TlbConfig& tlb, Progress& progress,
                             bool region_maps = false);
// One policy replaying a trace of the real kernel (see workload/trace_replay.hpp);
// region maps, when asked, at boot and at the end.
nlohmann::json run_trace(const model::workload::Scenario& scenario, const std::string& policy,
                         const model::tlb::TlbConfig& tlb, const std::string& trace_path, Progress& progress,
                         bool region_maps = false);

// The comparison table of a whole `exmem sim` report.
void print_table(const nlohmann::json& out);

// A trace's calibration block of the report: the real deltas, the model's
// direct map at the real pfns, and the upstream run's own splits when
// `runs` has one.
nlohmann::json calibration_json(const model::workload::TraceCalibration& c, const nlohmann::json& runs);
// Prints the block when the report has one.
void print_calibration(const nlohmann::json& out);

}  // namespace exmem::cli::sim
