// Shared by the report's tests: real machines run briefly on the synthetic
// workload, snapshotted at the start and the end, and an `out` object shaped
// as `exmem sim --json` prints it, built from them by hand.
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
#include "model/tlb/cost.hpp"
#include "model/workload/synthetic.hpp"
#include "report/report.hpp"

namespace exmem::report::testing {

namespace md = exmem::model;

inline md::MachineConfig config_4g(const std::string& policy) {
  md::MachineConfig c;
  c.ram_bytes = 4 * md::GiB;  // with the PCI hole at 3..4 GiB: RAM up to 5 GiB
  c.cpus = 4;
  c.policy = policy;
  return c;
}

struct PolicyRun {
  std::unique_ptr<md::Machine> machine;
  md::workload::WorkloadResult result;
  md::RegionMap start;
  md::RegionMap end;
  md::tlb::CostReport cost;
  nlohmann::json json;
};

// The fields of a run that the report reads, from the machine itself.
// `sample_tlb`: whether the samples carry tlb_miss_rate (older JSON does not).
inline PolicyRun make_run(const std::string& policy, std::uint64_t events, bool sample_tlb) {
  PolicyRun run;
  run.machine = std::make_unique<md::Machine>(config_4g(policy));
  md::Machine& m = *run.machine;
  run.start = md::region_map(m);
  md::workload::WorkloadConfig wc;
  wc.events = events;
  wc.seed = 3;
  md::workload::SyntheticWorkload w(m, wc);
  const md::tlb::TlbConfig tlb = md::tlb::TlbConfig::preset("haswell");
  md::tlb::AccessConfig small;
  small.accesses = 4000;
  nlohmann::json over_time = nlohmann::json::array();
  const std::uint64_t every = std::max<std::uint64_t>(1, events / 8);
  std::uint64_t next = every;
  run.result = w.run([&](std::uint64_t e) {
    if (e < next) return;
    next = e + every;
    const auto& c = m.dmap().counters();
    nlohmann::json s = {{"events", e},
                        {"DirectMap4k", c.direct_map_4k_kb()},
                        {"DirectMap2M", c.direct_map_2m_kb()},
                        {"DirectMap1G", c.direct_map_1g_kb()},
                        {"direct_map_level2_splits", c.level2_splits},
                        {"direct_map_level3_splits", c.level3_splits}};
    if (sample_tlb) s["tlb_miss_rate"] = md::tlb::estimate_cost(m.dmap(), m.phys(), m.flushes().counters(), tlb, small, e).miss_rate;
    over_time.push_back(s);
  });
  run.end = md::region_map(m);
  run.cost = md::tlb::estimate_cost(m.dmap(), m.phys(), m.flushes().counters(), tlb,
                                     md::tlb::AccessConfig{}, wc.seed);
  const auto& dm = m.dmap().counters();
  const auto& fl = m.flushes().counters();
  nlohmann::json& j = run.json;
  j["policy"] = policy;
  j["events"] = run.result.events;
  j["events_per_second"] =
      run.result.run_seconds > 0 ? static_cast<double>(run.result.events) / run.result.run_seconds : 0.0;
  j["direct_map"] = {{"DirectMap4k", dm.direct_map_4k_kb()},
                     {"DirectMap2M", dm.direct_map_2m_kb()},
                     {"DirectMap1G", dm.direct_map_1g_kb()},
                     {"direct_map_level2_splits", dm.level2_splits},
                     {"direct_map_level3_splits", dm.level3_splits},
                     {"direct_map_level2_collapses", dm.level2_collapses},
                     {"direct_map_level3_collapses", dm.level3_collapses},
                     {"page_table_pages", dm.table_pages_allocated - dm.table_pages_freed}};
  j["tlb_flushes"] = {{"range_flushes", fl.range_flushes},
                      {"range_pages", fl.range_pages},
                      {"full_flushes", fl.full_flushes},
                      {"local_flushes", fl.local_flushes}};
  j["tlb_cost"] = {{"tlb", run.cost.tlb},
                   {"miss_rate", run.cost.miss_rate},
                   {"walk_cycles", run.cost.walk_cycles},
                   {"ipis", run.cost.ipis},
                   {"shootdown_us", run.cost.shootdown_us}};
  j["secretmem"] = {{"faults", run.result.secret_faults}};
  j["failures"] = {{"oom_at_fault", run.result.secret_ooms},
                   {"sigbus_at_fault", run.result.secret_sigbus},
                   {"mmap_failed", run.result.mmap_failures}};
  j["pooled_pages"] = m.policy().pooled_pages();
  j["direct_map_over_time"] = over_time;
  j["region_map"] = {{"start", to_json(run.start)}, {"end", to_json(run.end)}};
  return run;
}

struct Report {
  std::vector<PolicyRun> runs;
  nlohmann::json out;
};

// Two policies on a 4 GiB machine, the second without tlb_miss_rate samples.
inline const Report& shared_report() {
  static const Report r = [] {
    Report rep;
    rep.runs.push_back(make_run("upstream", 20000, true));
    rep.runs.push_back(make_run("secretmem-pmd-pool", 20000, false));
    const auto& mc = rep.runs.front().machine->config();
    rep.out["machine"] = {{"ram_bytes", mc.ram_bytes},
                          {"ram", md::format_size(mc.ram_bytes)},
                          {"cpus", mc.cpus},
                          {"direct_gbpages", mc.direct_gbpages},
                          {"collapse", std::string(md::collapse_mode_name(mc.collapse))},
                          {"tlb", "haswell"}};
    rep.out["workload"] = {{"name", "synthetic"}, {"events", 20000}, {"seed", 3}};
    rep.out["runs"] = nlohmann::json::array();
    for (const PolicyRun& run : rep.runs) rep.out["runs"].push_back(run.json);
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
