// study/: `exmem study` (see study.hpp for what the folder owns).
// summary.cpp: the study's report from its stored points.
#include "study/summary.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <system_error>

#include "report/files.hpp"
#include "report/study_report.hpp"

namespace exmem::study {

namespace {

std::string number_text(const nlohmann::json& v) {
  if (v.is_number_unsigned()) return fmt::format("{}", v.get<std::uint64_t>());
  if (v.is_number_integer()) return fmt::format("{}", v.get<std::int64_t>());
  if (v.is_number_float()) return fmt::format("{}", v.get<double>());
  if (v.is_boolean()) return v.get<bool>() ? "1" : "0";
  return "";
}

// One CSV line of fields.
std::string csv_line(const std::vector<std::string>& fields) {
  std::string out;
  for (std::size_t i = 0; i < fields.size(); ++i) {
    if (i != 0) out.push_back(',');
    out.append(report::csv_field(fields[i]));
  }
  out.push_back('\n');
  return out;
}

}  // namespace

double quantile(std::span<const double> sorted, double q) {
  if (sorted.empty()) return std::numeric_limits<double>::quiet_NaN();
  const double h = (static_cast<double>(sorted.size()) - 1) * q;
  const auto lo = static_cast<std::size_t>(std::floor(h));
  const std::size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (h - static_cast<double>(lo)) * (sorted[hi] - sorted[lo]);
}

nlohmann::json study_json(const Study& study, const std::vector<nlohmann::json>& stored) {
  nlohmann::json doc;
  doc["format"] = "exmem-study/1";
  doc["study"] = {{"name", study.name},
                  {"file", study.file},
                  {"description", study.description},
                  {"model_version", study.model_version},
                  {"points", study.points.size()},
                  {"seeds", study.seeds},
                  {"costs", study.costs ? nlohmann::json(*study.costs) : nlohmann::json(nullptr)}};
  nlohmann::json axes = nlohmann::json::array();
  for (const Axis& a : study.axes) axes.push_back({{"name", a.name}, {"values", a.labels}});
  doc["axes"] = axes;
  doc["policies"] = study.policies;
  doc["x"] = study.x.empty() ? nlohmann::json(nullptr) : nlohmann::json(study.x);
  nlohmann::json metrics = nlohmann::json::array();
  for (const MetricRef& m : study.metrics) {
    metrics.push_back({{"key", m.key}, {"json", m.json}, {"label", m.label}, {"unit", m.unit}});
  }
  doc["metrics"] = metrics;

  nlohmann::json points = nlohmann::json::array();
  for (std::size_t i = 0; i < study.points.size(); ++i) {
    const Point& p = study.points[i];
    const nlohmann::json& run = stored.at(i).at("run");
    const nlohmann::json columns = stored.at(i).value("columns", nlohmann::json::object());
    nlohmann::json values = nlohmann::json::object();
    for (const MetricRef& m : study.metrics) {
      // A figure with a runs.csv column is stored under it; the others at their place in the run.
      if (columns.contains(m.key)) {
        values[m.key] = columns[m.key].is_number() ? columns[m.key] : nlohmann::json(nullptr);
        continue;
      }
      const nlohmann::json::json_pointer ptr(m.json.empty() ? std::string("/-") : m.json);
      values[m.key] = !m.json.empty() && run.contains(ptr) && run[ptr].is_number() ? run[ptr] : nlohmann::json(nullptr);
    }
    points.push_back({{"index", p.index},
                      {"hash", p.hash},
                      {"axes", axes_json(study, p)},
                      {"policy", p.policy},
                      {"seed", p.seed},
                      {"run_seconds", stored.at(i).value("seconds", 0.0)},
                      {"metrics", values}});
  }

  // Per combination of the axes' values and policy, in the points' order: the seeds pooled.
  nlohmann::json summary = nlohmann::json::array();
  std::map<std::pair<std::vector<std::size_t>, std::string>, std::vector<std::size_t>> groups;
  std::vector<std::pair<std::vector<std::size_t>, std::string>> order;
  for (const Point& p : study.points) {
    auto key = std::make_pair(p.at, p.policy);
    auto [it, fresh] = groups.try_emplace(key);
    if (fresh) order.push_back(key);
    it->second.push_back(p.index);
  }
  for (const auto& key : order) {
    const std::vector<std::size_t>& members = groups.at(key);
    nlohmann::json stats = nlohmann::json::object();
    for (const MetricRef& m : study.metrics) {
      std::vector<double> v;
      for (std::size_t i : members) {
        const nlohmann::json& x = points[i]["metrics"][m.key];
        if (x.is_number()) v.push_back(x.get<double>());
      }
      if (v.empty()) {
        stats[m.key] = nullptr;
        continue;
      }
      std::sort(v.begin(), v.end());
      stats[m.key] = {{"median", quantile(v, 0.5)},
                      {"min", v.front()},
                      {"max", v.back()},
                      {"q1", quantile(v, 0.25)},
                      {"q3", quantile(v, 0.75)},
                      {"n", v.size()}};
    }
    summary.push_back({{"axes", axes_json(study, study.points[members.front()])},
                       {"policy", key.second},
                       {"n", members.size()},
                       {"stats", stats}});
  }
  doc["points"] = std::move(points);
  doc["summary"] = std::move(summary);
  return doc;
}

std::string results_csv(const nlohmann::json& doc) {
  std::vector<std::string> head{"point", "hash"};
  for (const auto& a : doc["axes"]) head.push_back(a["name"].get<std::string>());
  head.insert(head.end(), {"policy", "seed"});
  for (const auto& m : doc["metrics"]) head.push_back(m["key"].get<std::string>());
  head.emplace_back("run_seconds");
  std::string out = csv_line(head);
  for (const auto& p : doc["points"]) {
    std::vector<std::string> row{fmt::format("{}", p["index"].get<std::size_t>()), p["hash"].get<std::string>()};
    for (const auto& a : doc["axes"]) row.push_back(p["axes"][a["name"].get<std::string>()].get<std::string>());
    row.push_back(p["policy"].get<std::string>());
    row.push_back(fmt::format("{}", p["seed"].get<std::uint64_t>()));
    for (const auto& m : doc["metrics"]) row.push_back(number_text(p["metrics"][m["key"].get<std::string>()]));
    row.push_back(fmt::format("{:.3f}", p["run_seconds"].get<double>()));
    out += csv_line(row);
  }
  return out;
}

std::string summary_csv(const nlohmann::json& doc) {
  std::vector<std::string> head;
  for (const auto& a : doc["axes"]) head.push_back(a["name"].get<std::string>());
  head.insert(head.end(), {"policy", "seeds"});
  for (const auto& m : doc["metrics"]) {
    for (const char* s : {"median", "min", "max", "q1", "q3"}) head.push_back(fmt::format("{}_{}", m["key"].get<std::string>(), s));
  }
  std::string out = csv_line(head);
  for (const auto& g : doc["summary"]) {
    std::vector<std::string> row;
    for (const auto& a : doc["axes"]) row.push_back(g["axes"][a["name"].get<std::string>()].get<std::string>());
    row.push_back(g["policy"].get<std::string>());
    row.push_back(fmt::format("{}", g["n"].get<std::size_t>()));
    for (const auto& m : doc["metrics"]) {
      const nlohmann::json& st = g["stats"][m["key"].get<std::string>()];
      for (const char* s : {"median", "min", "max", "q1", "q3"}) row.push_back(st.is_object() ? number_text(st[s]) : "");
    }
    out += csv_line(row);
  }
  return out;
}

void write_study_report(const std::filesystem::path& dir, const nlohmann::json& doc) {
  report::make_directories(dir);
  // Strings that are not UTF-8 are written with U+FFFD rather than refused, as exmem sim's report does.
  report::write_file(dir / "study.json", doc.dump(1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
  report::write_file(dir / "results.csv", results_csv(doc));
  report::write_file(dir / "summary.csv", summary_csv(doc));
  report::write_file(dir / "index.html", report::study_html_page(doc));
}

}  // namespace exmem::study
