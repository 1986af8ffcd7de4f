// csv.cpp: runs.csv and over_time.csv, and the metrics they share with the page.
#include <cstdint>
#include <string>

#include <fmt/format.h>

#include "report/metrics.hpp"
#include "report/report.hpp"

namespace exmem::report {

namespace detail {

const std::vector<Metric>& metrics() {
  static const std::vector<Metric> m = {
      {"DirectMap4k_kB", "DirectMap4k (kB)", {"/direct_map/DirectMap4k"}},
      {"DirectMap2M_kB", "DirectMap2M (kB)", {"/direct_map/DirectMap2M"}},
      {"DirectMap1G_kB", "DirectMap1G (kB)", {"/direct_map/DirectMap1G"}},
      {"direct_map_level2_splits", "direct_map_level2_splits", {"/direct_map/direct_map_level2_splits"}},
      {"direct_map_level3_splits", "direct_map_level3_splits", {"/direct_map/direct_map_level3_splits"}},
      {"direct_map_level2_collapses", "direct_map_level2_collapses",
       {"/direct_map/direct_map_level2_collapses"}},
      {"direct_map_level3_collapses", "direct_map_level3_collapses",
       {"/direct_map/direct_map_level3_collapses"}},
      {"page_table_pages", "direct-map page-table pages", {"/direct_map/page_table_pages"}},
      {"split_regions_end", "2 MiB regions split to 4K at the end", {"/region_map/end/coverage_regions/4K"}},
      {"tlb_flush_events", "TLB flush events",
       {"/tlb_flushes/range_flushes", "/tlb_flushes/full_flushes", "/tlb_flushes/local_flushes"}},
      {"full_flushes", "full flushes", {"/tlb_flushes/full_flushes"}},
      {"range_flushes", "range flushes", {"/tlb_flushes/range_flushes"}},
      {"tlb_miss_rate", "TLB misses per 1000 kernel accesses", {"/tlb_cost/miss_rate"}, Format::PerThousand},
      {"walk_cycles", "page-walk cycles (estimate)", {"/tlb_cost/walk_cycles"}, Format::Whole},
      {"shootdown_ipis", "shootdown IPIs", {"/tlb_cost/ipis"}},
      {"shootdown_us", "shootdown cost (us, estimate)", {"/tlb_cost/shootdown_us"}, Format::Whole},
      {"secret_faults", "secret faults", {"/secretmem/faults"}},
      {"oom_at_fault", "OOM at fault", {"/failures/oom_at_fault"}},
      {"sigbus_at_fault", "SIGBUS at fault", {"/failures/sigbus_at_fault"}},
      {"mmap_failed", "failed mmaps", {"/failures/mmap_failed"}},
      {"pooled_pages", "pooled pages at the end", {"/pooled_pages"}},
      {"events", "events", {"/events"}},
      {"events_per_second", "events per second", {"/events_per_second"}, Format::Whole},
  };
  return m;
}

const nlohmann::json* find(const nlohmann::json& j, std::string_view pointer) {
  const nlohmann::json* at = &j;
  while (!pointer.empty()) {
    if (pointer.front() != '/') return nullptr;
    pointer.remove_prefix(1);
    const std::size_t slash = pointer.find('/');
    const std::string key(pointer.substr(0, slash));
    pointer = slash == std::string_view::npos ? std::string_view{} : pointer.substr(slash);
    if (!at->is_object()) return nullptr;
    const auto it = at->find(key);
    if (it == at->end()) return nullptr;
    at = &*it;
  }
  return at;
}

std::optional<nlohmann::json> metric_value(const nlohmann::json& run, const Metric& m) {
  bool found = false;
  bool integral = true;
  std::uint64_t sum = 0;
  double real = 0;
  for (const std::string_view p : m.pointers) {
    const nlohmann::json* v = find(run, p);
    if (v == nullptr) continue;
    if (!v->is_number()) return std::nullopt;
    found = true;
    if (v->is_number_unsigned()) {
      sum += v->get<std::uint64_t>();
    } else {
      integral = false;
    }
    real += v->get<double>();
  }
  if (!found) return std::nullopt;
  if (m.pointers.size() == 1) return *find(run, m.pointers.front());
  return integral ? nlohmann::json(sum) : nlohmann::json(real);
}

std::string csv_number(const nlohmann::json& v) {
  if (v.is_number_unsigned()) return fmt::format("{}", v.get<std::uint64_t>());
  if (v.is_number_integer()) return fmt::format("{}", v.get<std::int64_t>());
  if (v.is_number_float()) return fmt::format("{}", v.get<double>());
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
  return {};
}

std::string policy_of(const nlohmann::json& run, std::size_t index) {
  const nlohmann::json* p = find(run, "/policy");
  if (p != nullptr && p->is_string()) return p->get<std::string>();
  return fmt::format("run {}", index + 1);
}

}  // namespace detail

namespace {

// RFC 4180: fields with a comma, quote or line break are quoted, quotes doubled.
std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string q = "\"";
  for (const char c : s) {
    if (c == '"') q += '"';
    q += c;
  }
  q += '"';
  return q;
}

const nlohmann::json& runs_of(const nlohmann::json& out) {
  static const nlohmann::json empty = nlohmann::json::array();
  const nlohmann::json* runs = detail::find(out, "/runs");
  return runs != nullptr && runs->is_array() ? *runs : empty;
}

}  // namespace

std::vector<std::string> runs_csv_columns() {
  std::vector<std::string> cols;
  for (const auto& m : detail::metrics()) cols.emplace_back(m.csv);
  return cols;
}

std::string runs_csv(const nlohmann::json& out) {
  std::string s = "policy";
  for (const auto& m : detail::metrics()) s += fmt::format(",{}", m.csv);
  s += '\n';
  const nlohmann::json& runs = runs_of(out);
  for (std::size_t i = 0; i < runs.size(); ++i) {
    s += csv_field(detail::policy_of(runs[i], i));
    for (const auto& m : detail::metrics()) {
      const auto v = detail::metric_value(runs[i], m);
      s += ',';
      if (v) s += csv_field(detail::csv_number(*v));
    }
    s += '\n';
  }
  return s;
}

std::string over_time_csv(const nlohmann::json& out) {
  static constexpr std::string_view kColumns[] = {
      "events", "DirectMap4k", "DirectMap2M", "DirectMap1G", "direct_map_level2_splits",
      "direct_map_level3_splits", "tlb_miss_rate"};
  std::string s = "policy";
  for (const std::string_view c : kColumns) s += fmt::format(",{}", c);
  s += '\n';
  const nlohmann::json& runs = runs_of(out);
  for (std::size_t i = 0; i < runs.size(); ++i) {
    const nlohmann::json* samples = detail::find(runs[i], "/direct_map_over_time");
    if (samples == nullptr || !samples->is_array()) continue;
    const std::string policy = csv_field(detail::policy_of(runs[i], i));
    for (const nlohmann::json& sample : *samples) {
      s += policy;
      for (const std::string_view c : kColumns) {
        s += ',';
        if (!sample.is_object()) continue;
        const auto it = sample.find(std::string(c));
        if (it != sample.end() && it->is_number()) s += detail::csv_number(*it);
      }
      s += '\n';
    }
  }
  return s;
}

}  // namespace exmem::report
