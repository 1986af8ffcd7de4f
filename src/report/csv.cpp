// csv.cpp: runs.csv and over_time.csv, and the columns they share with the page.
#include <cstdint>
#include <string>

#include <fmt/format.h>

#include "report/files.hpp"
#include "report/metrics.hpp"
#include "report/report.hpp"

namespace exmem::report {

namespace detail {

const std::vector<const sim::Metric*>& columns() {
  static const std::vector<const sim::Metric*> c = [] {
    std::vector<const sim::Metric*> v;
    for (const sim::Metric& m : sim::metrics()) {
      if ((m.show & sim::kColumn) != 0) v.push_back(&m);
    }
    return v;
  }();
  return c;
}

std::string csv_number(const sim::Number& v) {
  return std::visit([](auto x) { return fmt::format("{}", x); }, v);
}

}  // namespace detail

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

std::vector<std::string> runs_csv_columns() {
  std::vector<std::string> cols;
  for (const sim::Metric* m : detail::columns()) cols.emplace_back(m->column);
  return cols;
}

std::string runs_csv(const Document& doc) {
  std::string s = "policy";
  for (const sim::Metric* m : detail::columns()) s += fmt::format(",{}", m->column);
  s += '\n';
  for (const sim::RunResult& run : doc.runs) {
    s += csv_field(run.policy);
    for (const sim::Metric* m : detail::columns()) {
      s += ',';
      if (const auto v = m->get(run)) s += detail::csv_number(*v);
    }
    s += '\n';
  }
  return s;
}

std::string over_time_csv(const Document& doc) {
  std::string s = "policy";
  for (const sim::SampleField& f : sim::sample_fields()) s += fmt::format(",{}", f.key);
  s += '\n';
  for (const sim::RunResult& run : doc.runs) {
    const std::string policy = csv_field(run.policy);
    for (const sim::Sample& x : run.over_time) {
      s += policy;
      for (const sim::SampleField& f : sim::sample_fields()) {
        s += ',';
        s += detail::csv_number(f.get(x));
      }
      s += '\n';
    }
  }
  return s;
}

}  // namespace exmem::report
