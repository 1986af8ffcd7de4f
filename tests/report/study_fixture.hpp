// Shared by the study page's tests: synthetic study documents in the format
// "exmem-study/1" (src/report/study_report.hpp), with the summary computed
// from the points as the study runner does (seeds pooled per combination of
// axis values and policy).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace exmem::report::testing {

// Quantile q of sorted values, by linear interpolation between order statistics.
inline double quantile(const std::vector<double>& sorted, double q) {
  const double at = q * static_cast<double>(sorted.size() - 1);
  const auto lo = static_cast<std::size_t>(std::floor(at));
  const std::size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (at - static_cast<double>(lo));
}

struct StudyAxis {
  std::string name;
  std::vector<std::string> values;
};

struct StudyMetric {
  std::string key, label, unit;
  // The metric of one point: axis values (in the axes' order), policy, seed; nullopt for null.
  std::function<std::optional<double>(const std::vector<std::string>&, const std::string&, int)> value;
};

// A study over the cartesian product of the axes' values x policies x seeds.
inline nlohmann::json make_study(const std::string& name, const std::string& description,
                                 const std::vector<StudyAxis>& axes, const std::vector<std::string>& policies,
                                 const std::vector<int>& seeds, const std::vector<StudyMetric>& metrics,
                                 const std::optional<std::string>& x) {
  using nlohmann::json;
  json s;
  s["format"] = "exmem-study/1";
  s["axes"] = json::array();
  for (const StudyAxis& a : axes) s["axes"].push_back({{"name", a.name}, {"values", a.values}});
  s["policies"] = policies;
  s["x"] = x ? json(*x) : json();
  s["metrics"] = json::array();
  for (const StudyMetric& m : metrics) {
    s["metrics"].push_back({{"key", m.key}, {"json", "/" + m.key}, {"label", m.label}, {"unit", m.unit}});
  }
  // Every combination of axis values, the first axis slowest.
  std::vector<std::vector<std::string>> combos = {{}};
  for (const StudyAxis& a : axes) {
    std::vector<std::vector<std::string>> next;
    for (const auto& c : combos) {
      for (const std::string& v : a.values) {
        next.push_back(c);
        next.back().push_back(v);
      }
    }
    combos = next;
  }
  s["points"] = json::array();
  s["summary"] = json::array();
  std::size_t index = 0;
  for (const auto& combo : combos) {
    json axes_obj = json::object();
    for (std::size_t i = 0; i < axes.size(); ++i) axes_obj[axes[i].name] = combo[i];
    for (const std::string& policy : policies) {
      std::vector<std::vector<double>> values(metrics.size());
      for (const int seed : seeds) {
        json p;
        p["index"] = index;
        p["hash"] = fmt::format("{:016x}", 0x9f86d081884c7d65ULL ^ (index * 0x9e3779b97f4a7c15ULL));
        p["axes"] = axes_obj;
        p["policy"] = policy;
        p["seed"] = seed;
        p["run_seconds"] = 0.25 + 0.01 * static_cast<double>(index % 7);
        p["metrics"] = json::object();
        for (std::size_t m = 0; m < metrics.size(); ++m) {
          const auto v = metrics[m].value(combo, policy, seed);
          p["metrics"][metrics[m].key] = v ? json(*v) : json();
          if (v) values[m].push_back(*v);
        }
        s["points"].push_back(p);
        ++index;
      }
      json g;
      g["axes"] = axes_obj;
      g["policy"] = policy;
      g["n"] = seeds.size();
      g["stats"] = json::object();
      for (std::size_t m = 0; m < metrics.size(); ++m) {
        std::vector<double> v = values[m];
        if (v.empty()) {
          g["stats"][metrics[m].key] = json();
          continue;
        }
        std::sort(v.begin(), v.end());
        g["stats"][metrics[m].key] = {{"median", quantile(v, 0.5)}, {"min", v.front()}, {"max", v.back()},
                                      {"q1", quantile(v, 0.25)}, {"q3", quantile(v, 0.75)}};
      }
      s["summary"].push_back(g);
    }
  }
  std::vector<int> seed_list = seeds;
  s["study"] = {{"name", name},
                {"file", "studies/" + name + ".toml"},
                {"description", description},
                {"model_version", "0.1.0+model.3f2a9c01b7de"},
                {"points", index},
                {"seeds", seed_list}};
  return s;
}

inline double ram_gib(const std::string& ram) { return std::stod(ram.substr(0, ram.size() - 3)); }

// The browser test's study: axes scenario (2 values) and machine.ram (x, 3
// values), 3 policies, 3 seeds; direct_map_level2_splits spans more than 3
// decades (a log-scale chart), kernel_slowdown_percent is null for
// "unmap-none" (that run has no such figure).
inline nlohmann::json two_axis_study(const std::string& description = "Is pooling needed?") {
  const std::vector<StudyAxis> axes = {{"scenario", {"default", "key-server"}},
                                       {"machine.ram", {"16GiB", "64GiB", "256GiB"}}};
  const std::vector<std::string> policies = {"upstream", "secretmem-pmd-pool", "unmap-none"};
  StudyMetric splits{"direct_map_level2_splits", "direct_map_level2_splits", "", {}};
  splits.value = [](const std::vector<std::string>& c, const std::string& policy, int seed) -> std::optional<double> {
    const double scale = c[0] == "key-server" ? 3.0 : 1.0;
    const double ram = ram_gib(c[1]);
    if (policy == "upstream") return std::round(scale * 40.0 * ram * (1.0 + 0.08 * seed));
    if (policy == "secretmem-pmd-pool") return std::round(scale * 2.0 + seed);
    return std::round(scale * 4.0 * ram * (1.0 + 0.05 * seed));
  };
  StudyMetric slowdown{"kernel_slowdown_percent", "kernel slowdown % (estimate)", "%", {}};
  slowdown.value = [](const std::vector<std::string>& c, const std::string& policy, int seed) -> std::optional<double> {
    if (policy == "unmap-none") return std::nullopt;
    const double scale = c[0] == "key-server" ? 1.6 : 1.0;
    const double base = policy == "upstream" ? 0.4 + 0.1 * std::log2(ram_gib(c[1])) : 0.1;
    return scale * base * (1.0 + 0.1 * (seed - 2));
  };
  return make_study("pooling", description, axes, policies, {1, 2, 3}, {splits, slowdown}, "machine.ram");
}

// No axes (x null): 2 policies, 5 seeds (the q1-q3 box is drawn), one metric
// null in one point.
inline nlohmann::json no_axis_study() {
  StudyMetric splits{"direct_map_level2_splits", "direct_map_level2_splits", "", {}};
  splits.value = [](const std::vector<std::string>&, const std::string& policy, int seed) -> std::optional<double> {
    return policy == "upstream" ? 1000.0 + 37.0 * seed : 10.0 + seed;
  };
  StudyMetric slowdown{"kernel_slowdown_percent", "kernel slowdown % (estimate)", "%", {}};
  slowdown.value = [](const std::vector<std::string>&, const std::string& policy, int seed) -> std::optional<double> {
    if (policy == "upstream" && seed == 3) return std::nullopt;
    return policy == "upstream" ? 0.5 + 0.02 * seed : 0.1 + 0.01 * seed;
  };
  return make_study("single", "One machine, two policies.", {}, {"upstream", "secretmem-pmd-pool"}, {1, 2, 3, 4, 5},
                    {splits, slowdown}, std::nullopt);
}

// One axis, 2 policies, 3 seeds: one policy's splits are 0 and the other's
// span 3 to 30,000, so the chart is on a log scale with a foot for 0.
inline nlohmann::json zero_and_large_study() {
  const std::vector<StudyAxis> axes = {{"machine.ram", {"16GiB", "64GiB", "256GiB"}}};
  StudyMetric splits{"direct_map_level2_splits", "direct_map_level2_splits", "", {}};
  splits.value = [](const std::vector<std::string>& c, const std::string& policy, int seed) -> std::optional<double> {
    if (policy == "unmapped-alloc") return 0.0;
    const double ram = ram_gib(c[0]);
    return ram == 16 ? 3.0 * seed : 120.0 * ram * seed;
  };
  return make_study("zeros", "Zeros beside large values.", axes, {"upstream", "unmapped-alloc"}, {1, 2, 3}, {splits},
                    "machine.ram");
}

}  // namespace exmem::report::testing
