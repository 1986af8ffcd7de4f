// report/: the report writer (see report.hpp for what the folder owns).
// metrics.hpp: the figures of one run that runs.csv and the page's comparison
// table show, read from the run's JSON by pointer, and the helpers both use.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace exmem::report::detail {

enum class Format {
  Integer,      // a count
  Real,         // shortest round-trip decimal in CSV; two decimals on the page
  PerThousand,  // a rate: as is in CSV; x1000 with one decimal on the page
  Whole,        // a real shown without decimals on the page
};

struct Metric {
  std::string_view csv;    // column of runs.csv
  std::string_view label;  // row of the page's table
  std::vector<std::string_view> pointers;  // JSON pointers into a run, summed
  Format format = Format::Integer;
};

const std::vector<Metric>& metrics();

// The metric's value in a run: the sum of the values its pointers find
// (integers stay integers); nullopt when none is found or one is not a number.
std::optional<nlohmann::json> metric_value(const nlohmann::json& run, const Metric& m);

// The value at a JSON pointer, or nullptr when the path is absent.
const nlohmann::json* find(const nlohmann::json& j, std::string_view pointer);

// A number as CSV writes it: integers exactly, reals in the shortest form that
// reads back to the same double.
std::string csv_number(const nlohmann::json& v);
// A run's policy name, or "run N" (1-based) when it has none.
std::string policy_of(const nlohmann::json& run, std::size_t index);

}  // namespace exmem::report::detail
