// `exmem sim`: what the command was asked, as the head of its report (the
// runs themselves are sim/run.hpp's, their JSON report/json.cpp's).
#include <cmath>
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

nlohmann::json costs_json(const md::tlb::KernelCostFigures& figures, const exmem::sim::CostsFile* file,
                          const md::tlb::AccessConfig& access, const md::tlb::TlbConfig& tlb) {
  nlohmann::json out;
  out["source"] = figures.source;
  auto opt = [](const auto& v) { return v ? nlohmann::json(*v) : nlohmann::json(nullptr); };
  if (file != nullptr) {
    out["file"] = file->path;
    out["date"] = opt(file->date);
    out["kernel"] = opt(file->kernel);
    out["cpu_model"] = opt(file->cpu_model);
    out["cpu_mhz"] = opt(file->cpu_mhz);
    out["hypervisor"] = opt(file->hypervisor);
  } else {
    out["file"] = nullptr;
  }
  auto figure = [](double ns, const std::string& from) {
    return nlohmann::json{{"ns", ns > 0 ? nlohmann::json(ns) : nlohmann::json(nullptr)}, {"from", from}};
  };
  out["figures"] = {{"walk_ns", figure(figures.walk_ns, figures.walk_from)},
                    {"kernel_access_ns", figure(figures.kernel_access_ns, figures.kernel_access_from)},
                    {"ipi_round_trip_ns", figure(figures.shootdown.ipi_round_trip_ns, figures.ipi_from)},
                    {"single_page_flush_ns", figure(figures.shootdown.single_page_flush_ns, figures.single_flush_from)},
                    {"full_flush_ns", figure(figures.shootdown.full_flush_ns, figures.full_flush_from)}};
  nlohmann::json weights = nlohmann::json::object();
  for (std::size_t k = 0; k < md::tlb::kKernelPageKinds; ++k) {
    weights[std::string(md::tlb::kernel_page_kind_name(static_cast<md::tlb::KernelPageKind>(k)))] =
        access.weights.w[k];
  }
  out["kernel_access"] = {{"accesses", access.accesses},
                          {"hot_set_bytes", access.hot_set_bytes},
                          {"hot_fraction", access.hot_fraction},
                          {"locality", access.locality == md::tlb::Locality::Zipf ? "zipf" : "uniform"},
                          {"zipf_s", access.zipf_s},
                          {"weights", weights},
                          {"accesses_per_event", access.accesses_per_event}};
  if (file != nullptr) {
    const std::vector<md::tlb::SweepPoint> sweep = exmem::sim::sweep_points(*file);
    const md::tlb::ProbeCheckResult check =
        md::tlb::check_against_probe(tlb, sweep, file->cpu_mhz.value_or(0), file->walk.ns, 1);
    nlohmann::json points = nlohmann::json::array();
    for (const md::tlb::ProbeCheck& p : check.points) {
      points.push_back({{"pages", p.pages},
                        {"probe_extra_ns", p.probe_extra_ns},
                        {"model_extra_ns", p.model_extra_ns},
                        {"ratio", std::isfinite(p.ratio) ? nlohmann::json(p.ratio) : nlohmann::json(nullptr)},
                        {"model_walks_per_access_split", p.walks_split},
                        {"model_walks_per_access_control", p.walks_control}});
    }
    out["model_vs_probe"] = {{"tlb", tlb.name}, {"how", check.how}, {"points", points}};
  }
  return out;
}

}  // namespace exmem::cli::sim
