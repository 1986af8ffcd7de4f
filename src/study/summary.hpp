// study/: `exmem study` (see study.hpp for what the folder owns).
// summary.hpp: the study's report, from its stored points:
//   study.json   format "exmem-study/1" (docs/study-format.md): the study, its
//                axes, every point's metrics, and per combination of the
//                axes' values and policy the spread over seeds
//   results.csv  one row per point
//   summary.csv  one row per combination and policy: each metric's median,
//                min, max and quartiles over the seeds
//   index.html   the self-contained page (report/study_report.hpp)
#pragma once

#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "study/study.hpp"

namespace exmem::study {

// The quantile q (0..1) of sorted values, by linear interpolation between the
// closest ranks (R's type 7, numpy's default). NaN when there are none.
double quantile(std::span<const double> sorted, double q);

// The study's report document from the stored result of every point
// (`stored[i]` is points[i]'s, as store.hpp loads it).
nlohmann::json study_json(const Study& study, const std::vector<nlohmann::json>& stored);

std::string results_csv(const nlohmann::json& doc);
std::string summary_csv(const nlohmann::json& doc);

// Writes study.json, results.csv, summary.csv and index.html into dir.
// std::system_error naming the path when it cannot.
void write_study_report(const std::filesystem::path& dir, const nlohmann::json& doc);

}  // namespace exmem::study
