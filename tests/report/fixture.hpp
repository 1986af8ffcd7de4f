// Shared by the report's tests: real machines run briefly on the synthetic
// workload through the run driver that `exmem sim` uses (sim/run.hpp), with
// region maps at the start and the end, and the report's Document of them.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/machine.hpp"
#include "model/snapshot.hpp"
#include "model/workload/scenario.hpp"
#include "report/report.hpp"
#include "sim/run.hpp"

namespace exmem::report::testing {

namespace md = exmem::model;

// A 4 GiB machine (with the PCI hole at 3..4 GiB: RAM up to 5 GiB), 4 CPUs.
inline md::MachineConfig config_4g(const std::string& policy) {
  md::MachineConfig c;
  c.ram_bytes = 4 * md::GiB;
  c.cpus = 4;
  c.policy = policy;
  return c;
}

inline md::workload::Scenario scenario_4g(std::uint64_t events) {
  md::workload::Scenario s;
  s.name = "fixture";
  s.machine = config_4g("upstream");
  s.workload = md::workload::WorkloadConfig{};
  s.workload.events = events;
  s.workload.seed = 3;
  s.tlb = "haswell";
  return s;
}

inline sim::RunResult make_run(const std::string& policy, std::uint64_t events) {
  sim::RunOptions o;
  o.tlb = md::tlb::TlbConfig::preset("haswell");
  o.region_maps = true;
  return sim::run_synthetic(scenario_4g(events), policy, o);
}

// What `exmem sim` asked, as far as the page shows it.
inline nlohmann::json header_of(const md::workload::Scenario& s) {
  const md::MachineConfig& mc = s.machine;
  nlohmann::json h;
  h["machine"] = {{"ram_bytes", mc.ram_bytes},
                  {"ram", md::format_size(mc.ram_bytes)},
                  {"cpus", mc.cpus},
                  {"direct_gbpages", mc.direct_gbpages},
                  {"collapse", std::string(md::collapse_mode_name(mc.collapse))},
                  {"tlb", s.tlb}};
  h["workload"] = {{"name", "synthetic"}, {"events", s.workload.events}, {"seed", s.workload.seed}};
  return h;
}

struct Report {
  Document doc;
  nlohmann::json out;  // to_json(doc, true): report.json
};

// Two policies on a 4 GiB machine: upstream splits the direct map, the pool does not.
inline const Report& shared_report() {
  static const Report r = [] {
    Report rep;
    rep.doc.header = header_of(scenario_4g(20000));
    rep.doc.runs.push_back(make_run("upstream", 20000));
    rep.doc.runs.push_back(make_run("secretmem-pmd-pool", 20000));
    rep.out = to_json(rep.doc, true);
    return rep;
  }();
  return r;
}

// A fresh directory under the system's temporary directory, removed at the end.
class TempDir {
 public:
  TempDir() {
    std::string templ = (std::filesystem::temp_directory_path() / "exmem-report-XXXXXX").string();
    if (::mkdtemp(templ.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = templ;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

inline std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + p.string());
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// RFC 4180 rows (quoted fields with doubled quotes), as a reader would parse them.
inline std::vector<std::vector<std::string>> parse_csv(const std::string& text) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> row;
  std::string field;
  bool quoted = false;
  bool any = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') {
        field += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        field += c;
      }
      continue;
    }
    any = true;
    if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      row.push_back(field);
      field.clear();
    } else if (c == '\n') {
      row.push_back(field);
      field.clear();
      rows.push_back(row);
      row.clear();
      any = false;
    } else if (c != '\r') {
      field += c;
    }
  }
  if (any) {
    row.push_back(field);
    rows.push_back(row);
  }
  return rows;
}

}  // namespace exmem::report::testing
