// report/: what `exmem sim --out DIR` writes: the run's JSON, CSV tables and a
// self-contained HTML page (inline CSS and script, no network) with maps of
// physical memory and the direct map, and time series per policy; and the
// self-contained HTML page of `exmem study` (study_report.hpp), drawn from the
// study's JSON document, which the study runner writes.
// Owns: the formats of those files, the JSON form of a run (json.cpp) that
// `exmem sim --json` prints, and the study page (not the study's JSON format). Must not touch: the model's state (it reads
// the typed results of sim/run.hpp, their figures through sim/metrics.hpp,
// and region maps from model/snapshot.hpp).
//
// report.hpp: the writer and its pieces.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/snapshot.hpp"
#include "sim/run.hpp"

namespace exmem::report {

// Maps hold at most this many cells: larger machines merge 2, 4, 8 ... regions
// per cell (model::merge_regions: worst coverage). 65536 cells is 128 GiB at
// one 2 MiB region per cell.
inline constexpr std::size_t kMaxMapCells = 65536;

// A region map as JSON:
//   region_bytes      2097152
//   regions           2 MiB regions of the physical address space
//   regions_per_cell  regions merged into one cell (a power of two)
//   cells             cells in `data`
//   encoding          what a cell byte means (model/snapshot.hpp)
//   data              the cell bytes, base64
//   coverage_regions  {hole, 1G, 2M, 4K}: regions of each coverage (not merged)
//   content_pages     {free, secret, page_table, kernel, user, reserved, other, no_ram}: pages
//   not_present_pages RAM pages not present in the direct map
//   split_regions_not_present  regions split to 4 KiB with some page not present
nlohmann::json to_json(const model::RegionMap& map, std::size_t max_cells = kMaxMapCells);
// The cell bytes of a region map's JSON (its `data`). std::invalid_argument
// when `data` is missing or not base64, or does not hold `cells` bytes.
std::vector<std::uint8_t> cells_of(const nlohmann::json& region_map_json);

// RFC 4648 base64, with padding.
std::string base64_encode(std::span<const std::uint8_t> bytes);
// std::invalid_argument naming the offset of the first bad character.
std::vector<std::uint8_t> base64_decode(std::string_view text);

// What `exmem sim` produced: what it was asked (`header`: the JSON objects
// scenario, machine, workload and, for a trace, calibration) and one typed
// result per policy.
struct Document {
  nlohmann::json header = nlohmann::json::object();
  std::vector<sim::RunResult> runs;
  // A page of maps alone (`exmem probe --map --out`: a real machine's direct
  // map): each run's map_start drawn under its `policy` as its label, no
  // comparison table, no charts, no difference view; the header's `machine`
  // and `direct_map` objects as its meta lines; `title` and `footer` its own
  // (plain text). write_report() ignores it: only html_page() reads it.
  bool maps_only = false;
  std::string title, footer;
};

// A run as `exmem sim --json` prints it: every metric of sim/metrics.hpp at
// its JSON pointer, with the policy, the scenario, the fragmentation indices,
// the policy's counters, the samples and (for a trace) the lines not
// understood; with `region_maps`, region_map {start, end} too (to_json above).
nlohmann::json to_json(const sim::RunResult& run, bool region_maps = false);
// Every figure of the run that has a runs.csv column name, under that name
// (null when the run has no such figure): some, such as split_regions_end,
// are not in the run's JSON.
nlohmann::json columns_json(const sim::RunResult& run);
// The header with a `runs` array.
nlohmann::json to_json(const Document& doc, bool region_maps = false);

// Writes into dir (created when absent, with its parents):
//   report.json    the whole object
//   runs.csv       one row per run (policy) with the main figures
//   over_time.csv  one row per sample of each run's direct_map_over_time
//   index.html     the self-contained page
// report.json is to_json(doc, true). A run without region maps or samples
// gives empty cells and a page that says what it lacks. std::system_error
// naming the path and the errno text when a directory or file cannot be made
// or written.
void write_report(const std::filesystem::path& dir, const Document& doc);

// The pieces write_report() writes, for other writers and tests.
std::string runs_csv(const Document& doc);
std::string over_time_csv(const Document& doc);
std::string html_page(const Document& doc);

// The columns of runs.csv (after `policy`), in order.
std::vector<std::string> runs_csv_columns();

}  // namespace exmem::report
