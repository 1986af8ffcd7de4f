// `exmem sim`: what the command was asked, as the head of its report (the
// runs themselves are sim/run.hpp's, their JSON report/json.cpp's).
#include <string>

#include "model/machine.hpp"
#include "model/types.hpp"
#include "sim.hpp"

namespace exmem::cli::sim {

namespace md = exmem::model;

nlohmann::json header_json(const md::workload::Scenario& s, const md::workload::TraceInfo* trace,
                           const std::string& trace_path) {
  const md::MachineConfig& mc = s.machine;
  const md::workload::WorkloadConfig& wc = s.workload;
  nlohmann::json out;
  out["scenario"] = {{"name", s.name}, {"source", s.source}, {"description", s.description}};
  out["machine"] = {{"ram_bytes", mc.ram_bytes},
                    {"ram", md::format_size(mc.ram_bytes)},
                    {"cpus", mc.cpus},
                    {"direct_gbpages", mc.direct_gbpages},
                    {"collapse", std::string(md::collapse_mode_name(mc.collapse))},
                    {"scan_rate", mc.scan_rate},
                    {"tlb", s.tlb},
                    {"pci_hole_start", mc.pci_hole_start},
                    {"pci_hole_end", mc.pci_hole_end},
                    {"secretmem_bytes", mc.policy_params.size("secretmem", 0)},
                    {"pool_fail", mc.policy_params.choice("pool_fail", "oom")}};
  if (trace != nullptr) {
    out["workload"] = {{"name", "trace"},
                       {"events", trace->recorded_events},
                       {"seed", wc.seed},
                       {"trace",
                        {{"path", trace_path},
                         {"command", trace->command},
                         {"cpus", trace->cpus},
                         {"mem_total_kb", trace->mem_total_kb},
                         {"duration_seconds", trace->duration_seconds},
                         {"recorded_events", trace->recorded_events},
                         {"lost_events", trace->lost_events},
                         {"secret_pages", trace->secret_pages.size()},
                         {"start", trace->start_counters},
                         {"end", trace->end_counters}}}};
  } else {
    out["workload"] = {{"name", "synthetic"},
                       {"events", wc.events},
                       {"seconds", s.seconds},
                       {"events_per_second", s.events_per_second},
                       {"seed", wc.seed},
                       {"secret_share", wc.secret_share},
                       {"kernel_share", wc.kernel_share},
                       {"map_exclusive_share", wc.map_exclusive_share},
                       {"rox_share", wc.rox_share},
                       {"guest_share", wc.guest_share},
                       {"secret_processes", wc.secret_processes},
                       {"min_secret_file_pages", wc.min_secret_file_pages},
                       {"max_secret_file_pages", wc.max_secret_file_pages},
                       {"secret_hold_turns", wc.secret_hold_turns},
                       {"fill", wc.fill},
                       {"ordinary_processes", wc.ordinary_processes},
                       {"page_cache_share", wc.page_cache_share},
                       {"wp_page_tables", wc.wp_page_tables}};
  }
  return out;
}

}  // namespace exmem::cli::sim
