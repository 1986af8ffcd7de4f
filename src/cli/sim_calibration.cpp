// `exmem sim --trace`: the recording's real direct-map deltas against the
// model (see model/workload/trace_calibration.hpp).
#include <fmt/format.h>

#include <cstdint>
#include <string>
#include <vector>

#include "model/types.hpp"
#include "sim.hpp"

namespace exmem::cli::sim {

namespace md = exmem::model;
namespace wl = exmem::model::workload;

nlohmann::json calibration_json(const wl::TraceCalibration& c, const std::vector<exmem::sim::RunResult>& runs) {
  nlohmann::json j = {
      {"secret_pages", c.secret_pages},
      {"secret_regions_2m", c.secret_regions},
      {"model_at_real_pfns",
       {{"ram_bytes", c.machine.ram_bytes},
        {"direct_gbpages", c.machine.direct_gbpages},
        {"direct_map_level2_splits", c.model_level2_splits},
        {"direct_map_level3_splits", c.model_level3_splits},
        {"DirectMap4k_delta_kb", c.model_directmap4k_kb},
        {"pfns_outside_ram", c.outside_model}}},
  };
  if (c.have_counters) {
    j["real"] = {{"direct_map_level2_splits", c.real_level2_splits},
                 {"direct_map_level3_splits", c.real_level3_splits},
                 {"DirectMap4k_delta_kb", c.real_directmap4k_kb},
                 {"regions_split_before", c.regions_split_before}};
    j["explained"] = c.explained;
  }
  for (const auto& run : runs) {
    if (run.policy != "upstream") continue;
    j["upstream_replay"] = {{"direct_map_level2_splits", run.direct_map.level2_splits},
                            {"direct_map_level3_splits", run.direct_map.level3_splits},
                            {"secret_faults", run.workload.secret_faults}};
  }
  return j;
}

std::string calibration_text(const nlohmann::json& out) {
  if (!out.contains("calibration")) return {};
  std::string text;
  const auto& c = out["calibration"];
  const auto& at = c["model_at_real_pfns"];
  text += fmt::format(
      "\nagainst the real kernel (the command's secret pages: {}, the 2 MiB regions they lie in: {})\n",
      c["secret_pages"].get<std::uint64_t>(), c["secret_regions_2m"].get<std::uint64_t>());
  text += fmt::format("  {:<46} {:>12} {:>18}\n", "", "level-2 splits", "DirectMap4k delta");
  if (c.contains("real")) {
    text += fmt::format("  {:<46} {:>12} {:>15} kB\n", "real kernel during the recording",
                        c["real"]["direct_map_level2_splits"].get<std::int64_t>(),
                        c["real"]["DirectMap4k_delta_kb"].get<std::int64_t>());
  }
  text += fmt::format(
      "  {:<46} {:>12} {:>15} kB\n",
      fmt::format("model direct map, the real pfns ({})", md::format_size(at["ram_bytes"].get<std::uint64_t>())),
      at["direct_map_level2_splits"].get<std::uint64_t>(), at["DirectMap4k_delta_kb"].get<std::uint64_t>());
  if (c.contains("upstream_replay")) {
    text += fmt::format("  {:<46} {:>12}\n", "upstream replay, the model's own placement",
                        c["upstream_replay"]["direct_map_level2_splits"].get<std::uint64_t>());
  }
  if (at["pfns_outside_ram"].get<std::uint64_t>() > 0) {
    text += fmt::format("  {} secret pfns lie beyond the model machine's RAM and were skipped\n",
                        at["pfns_outside_ram"].get<std::uint64_t>());
  }
  if (!c.contains("real")) {
    text += fmt::format("  the trace has no start and end counters: nothing to compare with\n");
    return text;
  }
  const std::int64_t model = static_cast<std::int64_t>(at["direct_map_level2_splits"].get<std::uint64_t>());
  const std::int64_t real = c["real"]["direct_map_level2_splits"].get<std::int64_t>();
  const std::uint64_t before = c["real"]["regions_split_before"].get<std::uint64_t>();
  if (c["explained"].get<bool>()) {
    text += fmt::format(
        "  the model splits {} more, no more than the {} regions the real kernel had split before the recording "
        "(consistent)\n",
        model - real, before);
  } else if (real > model) {
    text += fmt::format(
        "  the real kernel split {} more than these pages explain: other activity split regions during the "
        "recording\n",
        real - model);
  } else {
    text += fmt::format(
        "  NOT explained: the model splits {} more, but only {} regions were split before the recording\n",
        model - real, before);
  }
  return text;
}

}  // namespace exmem::cli::sim
