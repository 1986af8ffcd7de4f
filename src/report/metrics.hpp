// report/: the report writer (see report.hpp for what the folder owns).
// metrics.hpp: the figures runs.csv and the page's comparison table show (the
// catalogue's columns, sim/metrics.hpp), and the helpers both use.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "sim/metrics.hpp"

namespace exmem::report::detail {

// The catalogue's metrics that are columns of runs.csv, in order.
const std::vector<const sim::Metric*>& columns();

// A number as CSV writes it: integers exactly, reals in the shortest form that
// reads back to the same double.
std::string csv_number(const sim::Number& v);

}  // namespace exmem::report::detail
