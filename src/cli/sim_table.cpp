// `exmem sim`: the comparison table, one column per policy.
#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>

#include "model/types.hpp"
#include "sim.hpp"

namespace exmem::cli::sim {

namespace md = exmem::model;

void print_table(const nlohmann::json& out) {
  const auto& m = out["machine"];
  const auto& w = out["workload"];
  const auto& sc = out["scenario"];
  const std::string machine_text = fmt::format(
      "{} RAM, {} CPUs, direct_gbpages {}, collapse {}, TLB {}", m["ram"].get<std::string>(), m["cpus"].get<unsigned>(),
      m["direct_gbpages"].get<bool>() ? "on" : "off", m["collapse"].get<std::string>(), m["tlb"].get<std::string>());
  if (w["name"] == "trace") {
    const auto& t = w["trace"];
    fmt::print("exmem sim: trace {} replayed on {}\n", t["path"].get<std::string>(), machine_text);
    std::string recorded;
    if (!t["command"].get<std::string>().empty()) recorded += fmt::format("`{}`", t["command"].get<std::string>());
    if (t["duration_seconds"].get<double>() > 0) {
      recorded +=
          fmt::format("{}recorded in {:.2f} s", recorded.empty() ? "" : ", ", t["duration_seconds"].get<double>());
    }
    if (t["cpus"].get<unsigned>() > 0) recorded += fmt::format(" on {} CPUs", t["cpus"].get<unsigned>());
    if (t["lost_events"].get<std::uint64_t>() > 0) {
      recorded += fmt::format(", {} events lost by tracefs", t["lost_events"].get<std::uint64_t>());
    }
    if (!recorded.empty()) fmt::print("  {}\n", recorded);
  } else {
    fmt::print("exmem sim: scenario {}: {}, {} events, seed {}\n", sc["name"].get<std::string>(), machine_text,
               w["events"].get<std::uint64_t>(), w["seed"].get<std::uint64_t>());
    if (!sc["description"].get<std::string>().empty()) fmt::print("  {}\n", sc["description"].get<std::string>());
  }
  const auto& runs = out["runs"];
  if (runs.empty()) return;
  std::size_t width = 12;
  for (const auto& run : runs) width = std::max(width, run["policy"].get<std::string>().size());
  auto num = [](const nlohmann::json& v) { return fmt::format("{}", v.get<std::uint64_t>()); };
  auto row = [&](const char* name, const std::function<std::string(const nlohmann::json&)>& cell) {
    fmt::print("  {:<34}", name);
    for (const auto& run : runs) fmt::print(" {:>{}}", cell(run), width);
    fmt::print("\n");
  };
  fmt::print("\n");
  row("policy", [](const nlohmann::json& r) { return r["policy"].get<std::string>(); });
  row("DirectMap4k (kB)", [&](const nlohmann::json& r) { return num(r["direct_map"]["DirectMap4k"]); });
  row("DirectMap2M (kB)", [&](const nlohmann::json& r) { return num(r["direct_map"]["DirectMap2M"]); });
  row("DirectMap1G (kB)", [&](const nlohmann::json& r) { return num(r["direct_map"]["DirectMap1G"]); });
  row("direct_map_level2_splits",
      [&](const nlohmann::json& r) { return num(r["direct_map"]["direct_map_level2_splits"]); });
  row("direct_map_level3_splits",
      [&](const nlohmann::json& r) { return num(r["direct_map"]["direct_map_level3_splits"]); });
  row("direct_map_level2_collapses",
      [&](const nlohmann::json& r) { return num(r["direct_map"]["direct_map_level2_collapses"]); });
  row("direct_map_level3_collapses",
      [&](const nlohmann::json& r) { return num(r["direct_map"]["direct_map_level3_collapses"]); });
  row("direct-map page-table pages", [&](const nlohmann::json& r) { return num(r["direct_map"]["page_table_pages"]); });
  row("TLB flush events", [&](const nlohmann::json& r) {
    const auto& t = r["tlb_flushes"];
    return fmt::format("{}", t["range_flushes"].get<std::uint64_t>() + t["full_flushes"].get<std::uint64_t>() +
                                 t["local_flushes"].get<std::uint64_t>());
  });
  row("  full flushes", [&](const nlohmann::json& r) { return num(r["tlb_flushes"]["full_flushes"]); });
  row("  range flushes", [&](const nlohmann::json& r) { return num(r["tlb_flushes"]["range_flushes"]); });
  row("  pages in range flushes", [&](const nlohmann::json& r) { return num(r["tlb_flushes"]["range_pages"]); });
  row("  flushes by the collapse mode", [&](const nlohmann::json& r) { return num(r["collapse"]["flushes"]); });
  row("TLB misses per 1000 kernel accesses",
      [](const nlohmann::json& r) { return fmt::format("{:.1f}", 1000.0 * r["tlb_cost"]["miss_rate"].get<double>()); });
  row("page-walk cycles (estimate)",
      [](const nlohmann::json& r) { return fmt::format("{:.0f}", r["tlb_cost"]["walk_cycles"].get<double>()); });
  row("shootdown IPIs", [&](const nlohmann::json& r) { return num(r["tlb_cost"]["ipis"]); });
  row("shootdown cost (us, estimate)",
      [](const nlohmann::json& r) { return fmt::format("{:.0f}", r["tlb_cost"]["shootdown_us"].get<double>()); });
  row("secret faults", [&](const nlohmann::json& r) { return num(r["secretmem"]["faults"]); });
  // The other users of unmapped pages, when the scenario has them.
  auto optional_row = [&](const char* name, const char* key) {
    bool any = false;
    for (const auto& run : runs)
      any = any || (run["workload"].contains(key) && run["workload"][key].get<std::uint64_t>() > 0);
    if (any) {
      row(name, [&num, key](const nlohmann::json& r) {
        return r["workload"].contains(key) ? num(r["workload"][key]) : std::string("-");
      });
    }
  };
  optional_row("MAP_EXCLUSIVE pages faulted", "exclusive_faults");
  optional_row("MAP_EXCLUSIVE failures", "exclusive_failures");
  optional_row("execmem ROX loads", "rox_loads");
  optional_row("execmem ROX load failures", "rox_failures");
  optional_row("guest_memfd pages faulted", "guest_faults");
  optional_row("guest faults that found no page", "guest_failures");
  optional_row("write-protected page tables", "wp_tables_allocated");
  optional_row("write-protected table failures", "wp_table_failures");
  row("OOM at fault", [&](const nlohmann::json& r) { return num(r["failures"]["oom_at_fault"]); });
  row("SIGBUS at fault", [&](const nlohmann::json& r) { return num(r["failures"]["sigbus_at_fault"]); });
  row("failed mmaps", [&](const nlohmann::json& r) { return num(r["failures"]["mmap_failed"]); });
  row("unusable free index, order 9", [](const nlohmann::json& r) {
    const auto& f = r["fragmentation"];
    return f.contains("Normal") ? fmt::format("{}", f["Normal"]["unusable_free_index"][9].get<int>())
                                : std::string("-");
  });
  row("extfrag index, order 9", [](const nlohmann::json& r) {
    const auto& f = r["fragmentation"];
    return f.contains("Normal") ? fmt::format("{}", f["Normal"]["extfrag_index"][9].get<int>()) : std::string("-");
  });
  row("pooled pages at the end", [&](const nlohmann::json& r) { return num(r["pooled_pages"]); });
  row("unmovable pageblocks", [&](const nlohmann::json& r) { return num(r["allocator"]["unmovable_pageblocks"]); });
  row("pageblocks claimed / stolen from", [&](const nlohmann::json& r) {
    return fmt::format("{} / {}", num(r["allocator"]["extfrag_claims"]), num(r["allocator"]["extfrag_steals"]));
  });
  row("allocations failed", [&](const nlohmann::json& r) { return num(r["allocator"]["pgalloc_fail"]); });
  if (w["name"] == "trace") {
    auto tnum = [&](const char* key) { return [&num, key](const nlohmann::json& r) { return num(r["trace"][key]); }; };
    row("trace events", tnum("events"));
    row("  allocations replayed", tnum("allocs_replayed"));
    row("  allocations the model failed", tnum("model_alloc_failures"));
    row("  allocations failed in the trace", tnum("allocs_failed_in_trace"));
    row("  frees replayed", tnum("frees_replayed"));
    row("  frees of pages from before", tnum("frees_unknown"));
    row("  secret pages faulted", tnum("secret_faults"));
    row("  lines not understood", tnum("unknown_lines"));
  }
  row("events per second",
      [](const nlohmann::json& r) { return fmt::format("{:.0f}", r["events_per_second"].get<double>()); });
  row("boot / fill / run seconds", [](const nlohmann::json& r) {
    return fmt::format("{:.2f}/{:.2f}/{:.2f}", r["boot_seconds"].get<double>(), r["fill_seconds"].get<double>(),
                       r["run_seconds"].get<double>());
  });
  row("peak RSS", [](const nlohmann::json& r) { return md::format_size(r["peak_rss_bytes"].get<std::uint64_t>()); });
  bool any = false;
  for (const auto& run : runs) any = any || !run["policy_counters"].empty();
  if (!any) return;
  fmt::print("\npolicy counters\n");
  for (const auto& run : runs) {
    if (run["policy_counters"].empty()) continue;
    std::string line;
    for (const auto& [k, v] : run["policy_counters"].items()) {
      line += fmt::format("{}{} {}", line.empty() ? "" : ", ", k, v.get<std::uint64_t>());
    }
    fmt::print("  {:<{}}  {}\n", run["policy"].get<std::string>(), width, line);
  }
}

}  // namespace exmem::cli::sim
