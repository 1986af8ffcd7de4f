// `exmem sim`, the parts its files share: the JSON of what the command was
// asked (sim_run.cpp; the runs themselves are sim/run.hpp's), the policies run
// at once with --jobs (sim_parallel.cpp), the progress bar (sim_progress.cpp),
// the comparison table (sim_table.cpp), the trace's calibration block
// (sim_calibration.cpp) and the built-in default scenario (generated from
// scenarios/default.toml at build time).
#pragma once

#include <chrono>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <functional>
#include <optional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "model/workload/scenario.hpp"
#include "model/workload/trace_calibration.hpp"
#include "model/workload/trace_replay.hpp"
#include "report/report.hpp"
#include "sim/costs.hpp"
#include "sim/run.hpp"

namespace exmem::cli::sim {

// The text of scenarios/default.toml, compiled into the command.
std::string_view default_scenario_text();

// A scenario's text and the name its messages give it (its path, or
// "<built-in>/default.toml").
struct ScenarioFile {
  std::string text;
  std::string source;
};
// The scenario a user named (scenario_files.cpp): "default" (built in), a
// file (relative to `relative_to` when given and the path is relative), or
// the name of a shipped scenario ("key-server"). nullopt when there is none
// or it cannot be read.
std::optional<ScenarioFile> find_scenario(const std::string& arg, const std::filesystem::path& relative_to = {});
// The names of the shipped scenarios, "default" first.
std::vector<std::string> known_scenarios();

// A one-line progress bar on stderr: the policy's name, percent done and
// events per second, drawn once the command has run for a second (at once
// when `immediate`), at most ten times a second, and cleared when the
// policy's run ends.
class Progress final : public exmem::sim::RunObserver {
 public:
  explicit Progress(bool enabled, bool immediate = false);
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;
  ~Progress() override;
  void begin(std::string_view label) override;
  // Redraws when due.
  void checkpoint(std::uint64_t events, double fraction) override {
    if (enabled_) draw(events, fraction);
  }
  void end() override;

 private:
  void draw(std::uint64_t events, double fraction);
  bool enabled_;
  bool immediate_;
  bool drawn_ = false;
  std::string label_;
  std::chrono::steady_clock::time_point command_start_;
  std::chrono::steady_clock::time_point run_start_;
  std::chrono::steady_clock::time_point last_draw_;
};

// The one progress line on stderr, drawn over the last one:
// "exmem sim: <what> [#####.....]  NN%  R events/s". Progress and the line of
// policies run at once (sim_parallel.cpp) both draw it.
void draw_progress_line(std::string_view what, double fraction, double events_per_second);
// Clears the line drawn last.
void clear_progress_line();

// The CPUs this process may run on (its affinity mask), at least 1.
unsigned online_cpus();

// One policy's run of `exmem sim --jobs N`: its result, or the exception it
// ended with; neither when it was not started because one before it failed.
struct PolicyRun {
  std::optional<exmem::sim::RunResult> result;
  std::exception_ptr error;
};
// run(0) .. run(count - 1), at most `jobs` at once, each on a thread of its own
// (sim_parallel.cpp says why threads are safe here), their results in order.
// The progress line, when enabled, is over all of them (policies done and
// running, the share of the work done, events per second) and is cleared
// before this returns.
std::vector<PolicyRun> run_concurrently(
    std::size_t count, unsigned jobs, bool progress_enabled, bool immediate,
    const std::function<exmem::sim::RunResult(std::size_t, exmem::sim::RunObserver&)>& run);

// What the command was asked, as the JSON objects scenario, machine and
// workload of its report (`trace` when it replays one from `trace_path`).
nlohmann::json header_json(const model::workload::Scenario& s, const model::workload::TraceInfo* trace,
                           const std::string& trace_path);

// The figures the kernel slowdown used and where from (`file`: --costs, or
// nullptr: the built-in constants), the kernel access stream's settings and,
// with a file, the model against the probe's sweep on `tlb`: the report's
// `costs` object.
nlohmann::json costs_json(const model::tlb::KernelCostFigures& figures, const exmem::sim::CostsFile* file,
                          const model::tlb::AccessConfig& access, const model::tlb::TlbConfig& tlb);
// Its lines for the console (empty when the report has none).
std::string costs_text(const nlohmann::json& header);

// The comparison table of a whole `exmem sim` report, `columns` wide at most
// when it can be: wider than that, the policies are shown in groups, each
// group a table of its own, and long lines are wrapped.
std::string table_text(const report::Document& doc, std::size_t columns);
// The width to print for: $COLUMNS when set, else stdout's terminal's, else
// unlimited (a pipe or a file gets the whole table on one line per figure).
std::size_t output_columns();

// A trace's calibration block of the report: the real deltas, the model's
// direct map at the real pfns, and the upstream run's own splits when
// `runs` has one.
nlohmann::json calibration_json(const model::workload::TraceCalibration& c,
                                const std::vector<exmem::sim::RunResult>& runs);
// The block as text, when the report has one (empty otherwise).
std::string calibration_text(const nlohmann::json& header);

}  // namespace exmem::cli::sim
