// sim/: the run driver (see run.hpp for what the folder owns).
// metrics.hpp: the one catalogue of the figures a run reports. Each is
// declared once, with where it goes in a run's JSON, its runs.csv column, its
// label in the console table and on the report page, its unit, how it is
// shown, and how to read it from a RunResult. Every renderer walks this list:
// the JSON writer and the CSV, the console table and the page's comparison table.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <variant>

#include "sim/run.hpp"

namespace exmem::sim {

// A figure: a count, a signed count, or a real number (rates, seconds).
using Number = std::variant<std::uint64_t, std::int64_t, double>;
double as_double(const Number& n);

enum class Format : std::uint8_t {
  Integer,      // a count
  Real,         // a real number
  PerThousand,  // a rate: shown x1000 with one decimal
  Whole,        // a real shown without decimals
  Seconds,      // a real shown with two decimals
  Size,         // bytes, shown as 12.5 MiB
  Percent,      // a percentage, shown with three decimals
};

// Where a metric is shown, besides its JSON place.
enum Show : unsigned {
  kJsonOnly = 0,
  kTable = 1u << 0,            // a row of the console table, always
  kTableIfAny = 1u << 1,       // a row when some run has the figure (a trace's rows)
  kTableIfNonzero = 1u << 2,   // a row when some run has it nonzero (the other users of unmapped pages)
  kColumn = 1u << 3,           // a column of runs.csv and a row of the page's comparison table
  kSubRow = 1u << 4,           // indented under the row before it in the console table
};

struct Metric {
  std::string_view json;    // JSON pointer in a run ("/direct_map/DirectMap4k"); empty when not in the JSON
  std::string_view column;  // runs.csv column; empty when not a column
  std::string_view label;   // console table and page row; empty when not shown
  std::string_view unit;    // "kB", "pages", "events", "s", "bytes", "accesses"... ; empty for a bare count
  Format format = Format::Integer;
  std::optional<Number> (*get)(const RunResult&) = nullptr;  // nullopt: this run has no such figure
  unsigned show = kJsonOnly;
  // A row of several figures ("boot / fill / run seconds"): the JSON pointers
  // of its parts, joined by `separator`; `get` is then unused.
  std::span<const std::string_view> parts = {};
  std::string_view separator = {};
};

// A figure of the samples along a run (Sample, run.hpp): its key in the
// JSON's direct_map_over_time and over_time.csv's column, its label, and
// whether the report page draws it as a chart.
struct SampleField {
  std::string_view key;
  std::string_view label;
  Format format = Format::Integer;
  Number (*get)(const Sample&) = nullptr;
  bool chart = false;
};
std::span<const SampleField> sample_fields();

// Every metric, in the order of the console table (and of runs.csv's columns).
std::span<const Metric> metrics();
// The metric at a JSON pointer, or nullptr.
const Metric* find_metric(std::string_view json_pointer);

}  // namespace exmem::sim
