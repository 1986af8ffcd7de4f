// `exmem sim --trace`: the recording's real direct-map deltas against the
// model (see model/workload/trace_calibration.hpp).
//
// The JSON block "calibration" (the report's header):
//   secret_pages, secret_regions_2m          the trace's "# secret" pages and their 2 MiB regions
//   model_at_real_pfns {ram_bytes, direct_gbpages, direct_map_level2_splits, direct_map_level3_splits,
//                       DirectMap4k_delta_kb, pfns_outside_ram}
//                                            the model's direct map with those pfns taken out
//   real {direct_map_level2_splits, direct_map_level3_splits, DirectMap4k_delta_kb, regions_split_before}
//                                            the real counters' deltas (with "# start"/"# end" counters)
//   explained                                the counters' upper-bound check (see trace_calibration.hpp)
//   upstream_replay {...}                    the upstream run's own splits
// With the trace's "# direct_map" snapshots, the exact comparison as well:
//   direct_map_regions {
//     regions_compared                       2 MiB regions mapped in both end maps
//     split_in_model_to_match_start          regions the model split to 4 KiB before the secret pages
//                                            (split in the real start map, a leaf in the model's boot map)
//     gib_split_in_model_to_match_start      1 GiB leaves the model split to 2 MiB leaves likewise
//     split_both, split_model_only, split_kernel_only
//                                            regions split to 4 KiB in both end maps / only the model's /
//                                            only the kernel's
//     leaf1g_both, leaf1g_model_only, leaf1g_kernel_only
//                                            regions inside a 1 GiB leaf, likewise
//     mapped_model_only, mapped_kernel_only  regions mapped in one end map only (layout, not compared)
//     kernel_new_splits, kernel_new_splits_with_secret, kernel_collapsed
//                                            the real kernel during the recording: regions split at the end
//                                            and not at the start, those holding a secret page, and regions
//                                            split at the start but not at the end
//     kernel_only_with_secret                split_kernel_only regions that hold a secret page
//     first_model_only, first_kernel_only    the first few such regions' numbers (region N: N x 2 MiB)
//     explained                              split_model_only == 0 and kernel_only_with_secret == 0: every
//                                            disagreement is a region the kernel split for something
//                                            other than the trace's secret pages
//   }
// Without them: "direct_map_snapshot": the reason the trace gives ("<refusal>: <why>"), or
// "not recorded" for a trace from before the snapshots.
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
  if (c.exact.exact) {
    const wl::RegionComparison& x = c.exact;
    j["direct_map_regions"] = {{"regions_compared", x.regions},
                               {"split_in_model_to_match_start", x.presplit_2m},
                               {"gib_split_in_model_to_match_start", x.presplit_1g},
                               {"split_both", x.split_both},
                               {"split_model_only", x.split_model_only},
                               {"split_kernel_only", x.split_kernel_only},
                               {"leaf1g_both", x.leaf1g_both},
                               {"leaf1g_model_only", x.leaf1g_model_only},
                               {"leaf1g_kernel_only", x.leaf1g_kernel_only},
                               {"mapped_model_only", x.mapped_model_only},
                               {"mapped_kernel_only", x.mapped_kernel_only},
                               {"kernel_new_splits", x.kernel_new_splits},
                               {"kernel_new_splits_with_secret", x.kernel_new_with_secret},
                               {"kernel_collapsed", x.kernel_collapsed},
                               {"kernel_only_with_secret", x.kernel_only_with_secret},
                               {"first_model_only", x.first_model_only},
                               {"first_kernel_only", x.first_kernel_only},
                               {"explained", x.explained}};
  } else {
    j["direct_map_snapshot"] = c.map_unavailable.empty() ? std::string("not recorded") : c.map_unavailable;
  }
  for (const auto& run : runs) {
    if (run.policy != "upstream") continue;
    j["upstream_replay"] = {{"direct_map_level2_splits", run.direct_map.level2_splits},
                            {"direct_map_level3_splits", run.direct_map.level3_splits},
                            {"secret_faults", run.workload.secret_faults}};
  }
  return j;
}

namespace {

std::string regions_list(const nlohmann::json& regions) {
  std::string s;
  for (const auto& r : regions) {
    s += fmt::format("{}{} ({:#x})", s.empty() ? "" : ", ", r.get<std::uint64_t>(), r.get<std::uint64_t>() << 21);
  }
  return s;
}

// The exact comparison: the model started from the real start map, its end
// map against the real end map, region by region.
std::string regions_text(const nlohmann::json& x) {
  auto u = [&](const char* k) { return x[k].get<std::uint64_t>(); };
  std::string text = fmt::format(
      "  exact, region by region: the model started from the real direct map at the start of the recording\n"
      "  ({} regions split to 4 KiB and {} GiBs to 2 MiB leaves to match it); at the end, of {} regions mapped in "
      "both:\n",
      u("split_in_model_to_match_start"), u("gib_split_in_model_to_match_start"), u("regions_compared"));
  text += fmt::format("  {:<46} {:>8} {:>12} {:>13}\n", "", "both", "model only", "kernel only");
  text += fmt::format("  {:<46} {:>8} {:>12} {:>13}\n", "regions split to 4 KiB", u("split_both"),
                      u("split_model_only"), u("split_kernel_only"));
  if (u("leaf1g_both") + u("leaf1g_model_only") + u("leaf1g_kernel_only") > 0) {
    text += fmt::format("  {:<46} {:>8} {:>12} {:>13}\n", "regions inside a 1 GiB leaf", u("leaf1g_both"),
                        u("leaf1g_model_only"), u("leaf1g_kernel_only"));
  }
  if (u("mapped_model_only") + u("mapped_kernel_only") > 0) {
    text += fmt::format("  {:<46} {:>8} {:>12} {:>13}\n", "regions mapped in one map only (layout)", "",
                        u("mapped_model_only"), u("mapped_kernel_only"));
  }
  text += fmt::format("  the real kernel split {} regions during the recording, {} of them holding a secret page",
                      u("kernel_new_splits"), u("kernel_new_splits_with_secret"));
  text += u("kernel_collapsed") > 0 ? fmt::format("; {} split regions became leaves again\n", u("kernel_collapsed"))
                                    : std::string("\n");
  if (u("split_model_only") > 0) {
    text += fmt::format("  split only in the model (the kernel did not split them for these pages): {}\n",
                        regions_list(x["first_model_only"]));
  }
  if (u("split_kernel_only") > 0) {
    text += fmt::format(
        "  split only in the kernel, {} of them holding a secret page; the rest by kernel activity the trace's "
        "secret pages do not show: {}{}\n",
        u("kernel_only_with_secret"), regions_list(x["first_kernel_only"]),
        u("split_kernel_only") > x["first_kernel_only"].size() ? ", ..." : "");
  }
  text += x["explained"].get<bool>()
              ? "  the model's map agrees with the kernel's wherever the trace's secret pages decide (exact)\n"
              : "  NOT explained: the maps disagree where the trace's secret pages decide\n";
  return text;
}

}  // namespace

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
      fmt::format("{} ({})",
                  c.contains("direct_map_regions") ? "model from the real start map" : "model direct map, the real pfns",
                  md::format_size(at["ram_bytes"].get<std::uint64_t>())),
      at["direct_map_level2_splits"].get<std::uint64_t>(), at["DirectMap4k_delta_kb"].get<std::uint64_t>());
  if (c.contains("upstream_replay")) {
    text += fmt::format("  {:<46} {:>12}\n", "upstream replay, the model's own placement",
                        c["upstream_replay"]["direct_map_level2_splits"].get<std::uint64_t>());
  }
  if (at["pfns_outside_ram"].get<std::uint64_t>() > 0) {
    text += fmt::format("  {} secret pfns lie beyond the model machine's RAM and were skipped\n",
                        at["pfns_outside_ram"].get<std::uint64_t>());
  }
  if (c.contains("direct_map_regions")) return text + regions_text(c["direct_map_regions"]);
  if (c.contains("direct_map_snapshot") && c["direct_map_snapshot"] != "not recorded") {
    text += fmt::format("  no direct-map snapshot in the trace ({}): the counters only\n",
                        c["direct_map_snapshot"].get<std::string>());
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
