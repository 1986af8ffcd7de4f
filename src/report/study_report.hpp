// report/: the report writer (see report.hpp for what the folder owns).
// study_report.hpp: the HTML page of `exmem study`, drawn from the study's
// JSON document (format "exmem-study/1", which the study runner writes).
//
// The document, as this page reads it:
//   format    "exmem-study/1"
//   study     {name, file, description, model_version, points, seeds: [...]}
//   axes      [{name, values: ["16GiB", ...]}] in study order (may be empty)
//   policies  ["upstream", ...]
//   x         the name of the axis on the charts' x axis, or null
//   metrics   [{key, json, label, unit}]
//   points    [{index, hash, axes: {name: value}, policy, seed, run_seconds,
//               metrics: {key: number or null}}]
//   summary   [{axes: {name: value}, policy, n,
//               stats: {key: {median, min, max, q1, q3} or null}}]
//             one group per combination of axis values and policy, seeds pooled
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace exmem::report {

// One self-contained page (inline CSS, script and data; no network): the
// study's title, description and header; per metric a grid of charts (one per
// combination of the axes other than `x`), one line per policy through the
// median over seeds with a min-max band (and a q1-q3 band when n >= 4); with
// no `x`, policies as categories with a dot at the median and a min-max
// whisker. Then the summary table (median [min - max]) and every point in a
// collapsible table. The charts are inline SVG drawn by the page's script,
// which records on <body>: data-drawn "ok" when done or "error: ..." if it
// failed, data-plots (charts drawn). Every string from the document is escaped.
// Tolerant of missing or mistyped members (they read as absent), it does not throw.
std::string study_html_page(const nlohmann::json& study);

}  // namespace exmem::report
