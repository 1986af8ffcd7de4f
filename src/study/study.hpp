// study/: `exmem study`: many runs of the model, one per point of a sweep,
// stored as they finish and gathered into one report.
// Owns: the study file (its format is docs/study-format.md), the points it
// names (every combination of its axes' values x policies x seeds, each a
// resolved scenario), the hash that names a point's stored result, the stored
// results (store.cpp), and the study's report: study.json, results.csv,
// summary.csv and the page (summary.cpp; the page itself is
// report/study_report.hpp's). Must not touch: how points are run side by
// side, shown running or handed to Slurm (src/cli/study.cpp), or the model's
// insides (a point is one sim::run_synthetic()).
//
// study.hpp: the study file and its points.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/tlb/cost.hpp"
#include "model/workload/scenario.hpp"

namespace exmem::study {

// A study file that cannot be read or is wrong: "FILE:LINE:COLUMN: what was
// expected" (or "FILE: what" about the whole file).
class StudyError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A scenario a study names: its text and the name its messages give it.
struct ScenarioText {
  std::string text;
  std::string source;  // "scenarios/key-server.toml", "<built-in>/default.toml"
};
// Finds a scenario by a study's word for it: a file (relative to the study
// file's folder) or the name of a shipped one. nullopt when there is none;
// `known` then lists what there is, for the message.
struct ScenarioResolver {
  std::function<std::optional<ScenarioText>(const std::string& name, const std::filesystem::path& study_dir)> find;
  std::function<std::vector<std::string>()> known;
};

// An axis: a setting ("machine.ram") or "scenario", and its values in order.
struct Axis {
  std::string name;
  std::vector<std::string> labels;  // as the report shows them: "64GiB", "key-server", "0.25"
};

// A figure the report plots: a metric of sim/metrics.hpp.
struct MetricRef {
  std::string key;    // its runs.csv column ("direct_map_level2_splits"), or its JSON pointer when it has none
  std::string json;   // its JSON pointer in a run ("/direct_map/direct_map_level2_splits"); empty when it has none
  std::string label;  // as the console table labels it
  std::string unit;
};

// One run of the study.
struct Point {
  std::size_t index = 0;          // 0 .. points-1: axes slowest, in file order, then policies, then seeds
  std::vector<std::size_t> at;    // the value of each axis, by position
  std::string policy;
  std::uint64_t seed = 0;
  model::workload::Scenario scenario;  // resolved and checked
  nlohmann::json config;          // the resolved configuration: what `hash` is of
  std::string hash;               // 16 hex digits of its SHA-256
};

struct Study {
  std::string name;         // the file's stem
  std::string file;         // as given
  std::string description;
  std::vector<Axis> axes;
  std::vector<std::string> policies;
  std::vector<std::uint64_t> seeds;
  std::string x;            // the axis on the plots' x axis; empty when the study has none
  std::vector<MetricRef> metrics;
  std::optional<std::string> costs;  // a costs file (exmem-costs/1), resolved
  model::tlb::KernelCostFigures figures;  // its figures, or the built-in ones
  std::string model_version;
  std::vector<Point> points;
};

// Reads a study file and resolves every point (each value checked as a
// scenario file's would be, each point's scenario checked as a whole), so a
// wrong study fails before anything runs. StudyError naming the file's line.
Study load_study(const std::string& path, const ScenarioResolver& resolver, std::string_view model_version);

// The point's value of each axis, by the axis' name, as the report shows it:
// {"machine.ram": "64GiB", "scenario": "key-server"}.
nlohmann::json axes_json(const Study& study, const Point& p);

// The metrics a study reports when its [report] names none.
std::vector<std::string> default_metrics();

// "3", "0-9", "0-9,12": point indices of --point, each < `points`, in order,
// without repeats. std::invalid_argument saying what was expected.
std::vector<std::size_t> parse_point_list(std::string_view text, std::size_t points);

// A file's whole text (study files, stored points). std::system_error with
// errno, naming the path, when it cannot be read.
std::string read_text(const std::filesystem::path& path);

// Lowercase hex SHA-256 of `bytes`.
std::string sha256_hex(std::string_view bytes);

}  // namespace exmem::study
