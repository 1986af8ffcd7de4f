// report/: what `exmem sim --out DIR` writes: the run's JSON, CSV tables and a
// self-contained HTML page (inline CSS and script, no network) with maps of
// physical memory and the direct map, and time series per policy.
// Owns: the formats of those files. Must not touch: the model's state (it
// reads the JSON a run produced, and region maps from model/snapshot.hpp).
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

// Writes into dir (created when absent, with its parents):
//   report.json    the whole object
//   runs.csv       one row per run (policy) with the main figures
//   over_time.csv  one row per sample of each run's direct_map_over_time
//   index.html     the self-contained page
// `out` has the shape `exmem sim --json` prints (machine, workload, runs[]);
// each run may carry region_map {start, end} (to_json above). Missing keys
// give empty cells and a page that says what it lacks. std::system_error
// naming the path and the errno text when a directory or file cannot be made
// or written.
void write_report(const std::filesystem::path& dir, const nlohmann::json& out);

// The pieces write_report() writes, for other writers and tests.
std::string runs_csv(const nlohmann::json& out);
std::string over_time_csv(const nlohmann::json& out);
std::string html_page(const nlohmann::json& out);

// The columns of runs.csv (after `policy`), in order.
std::vector<std::string> runs_csv_columns();

}  // namespace exmem::report
