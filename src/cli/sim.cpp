// `exmem sim`: the kernel model on the built-in synthetic workload, with a
// report of what it did to the direct map (a table, or JSON with --json).
#include <sys/resource.h>

#include <charconv>
#include <chrono>
#include <cstdio>
#include <functional>
#include <algorithm>
#include <array>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "model/machine.hpp"
#include "model/policy/policy.hpp"
#include "model/tlb/cost.hpp"
#include "model/workload/synthetic.hpp"

namespace exmem::cli {

namespace {

namespace md = exmem::model;

struct SimOptions {
  std::string ram = "64GiB";
  std::vector<std::string> policies{"upstream"};
  std::string events = "1000000";
  std::string seed = "1";
  unsigned cpus = 16;
  bool no_gbpages = false;
  bool json = false;
  std::string collapse = "rox-only";
  unsigned scan_rate = 4;
  std::string secretmem;  // secretmem= (empty: RAM / 256)
  std::string pool_fail = "oom";
  bool wp_page_tables = false;
  std::string tlb = "haswell";
};

std::uint64_t peak_rss_bytes() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<std::uint64_t>(ru.ru_maxrss) * 1024;  // ru_maxrss is in KiB on Linux
}

[[noreturn]] void fail(const std::string& message) {
  std::fprintf(stderr, "exmem sim: %s\n", message.c_str());
  throw CLI::RuntimeError(2);
}

// A whole decimal number in [0, max]; anything else is an error naming the option.
std::uint64_t parse_count(const char* option, const std::string& text, std::uint64_t max,
                          const char* expected) {
  std::uint64_t v = 0;
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, v);
  if (text.empty() || ec != std::errc{} || ptr != end || v > max) {
    fail(fmt::format("{} \"{}\": expected {}", option, text, expected));
  }
  return v;
}

// mirrors __fragmentation_index() of mm/vmstat.c: -1000 when a block of the
// order is free; else toward 0 when failure would be for want of memory and
// toward 1000 when it would be for fragmentation.
int fragmentation_index(const std::array<std::uint64_t, md::kNrPageOrders>& nr_free, unsigned order) {
  std::uint64_t total = 0;
  std::uint64_t suitable = 0;
  std::uint64_t free_pages = 0;
  for (unsigned o = 0; o < md::kNrPageOrders; ++o) {
    total += nr_free[o];
    free_pages += nr_free[o] << o;
    if (o >= order) suitable += nr_free[o] << (o - order);
  }
  if (total == 0) return 0;
  if (suitable != 0) return -1000;
  const std::uint64_t requested = std::uint64_t{1} << order;
  return static_cast<int>(1000 - (1000 + free_pages * 1000 / requested) / total);
}

nlohmann::json run_one(const md::MachineConfig& mc, const md::workload::WorkloadConfig& wc,
                       const md::tlb::TlbConfig& tlb) {
  const auto t0 = std::chrono::steady_clock::now();
  md::Machine machine(mc);
  const double boot_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  md::workload::SyntheticWorkload workload(machine, wc);
  // DirectMap4k/2M/1G over time: ten samples along the run.
  nlohmann::json over_time = nlohmann::json::array();
  const std::uint64_t every = std::max<std::uint64_t>(1, wc.events / 10);
  std::uint64_t next_sample = every;
  const md::workload::WorkloadResult r = workload.run([&](std::uint64_t events) {
    if (events < next_sample) return;
    next_sample = events + every;
    const auto& c = machine.dmap().counters();
    over_time.push_back({{"events", events},
                         {"DirectMap4k", c.direct_map_4k_kb()},
                         {"DirectMap2M", c.direct_map_2m_kb()},
                         {"DirectMap1G", c.direct_map_1g_kb()}});
  });

  const auto& dm = machine.dmap().counters();
  const auto& fl = machine.flushes().counters();
  const auto& ps = machine.phys().stats();
  const auto& ms = machine.mm().stats();
  const double eps = r.run_seconds > 0 ? static_cast<double>(r.events) / r.run_seconds : 0.0;
  const std::uint64_t frames = machine.phys().total_ram_pages();
  std::uint64_t unmovable_blocks = 0;
  for (md::Pfn p = 0; p < machine.phys().nr_frames(); p += md::kPageblockNrPages) {
    if (machine.phys().kind(p) != md::phys::FrameKind::Hole &&
        machine.phys().pageblock_migratetype(p) == md::phys::MIGRATE_UNMOVABLE) {
      ++unmovable_blocks;
    }
  }
  nlohmann::json j;
  j["policy"] = std::string(machine.policy().name());
  j["events"] = r.events;
  j["events_per_second"] = eps;
  j["run_seconds"] = r.run_seconds;
  j["boot_seconds"] = boot_seconds;
  j["fill_seconds"] = r.fill_seconds;
  j["peak_rss_bytes"] = peak_rss_bytes();
  j["model_bytes"] = machine.model_bytes();
  j["model_bytes_per_frame"] =
      frames ? static_cast<double>(machine.model_bytes()) / static_cast<double>(frames) : 0.0;
  j["direct_map"] = {
      {"DirectMap4k", dm.direct_map_4k_kb()},
      {"DirectMap2M", dm.direct_map_2m_kb()},
      {"DirectMap1G", dm.direct_map_1g_kb()},
      {"direct_map_level2_splits", dm.level2_splits},
      {"direct_map_level3_splits", dm.level3_splits},
      {"direct_map_level2_collapses", dm.level2_collapses},
      {"direct_map_level3_collapses", dm.level3_collapses},
      {"page_table_pages", dm.table_pages_allocated - dm.table_pages_freed},
      {"split_enomem", dm.split_enomem},
  };
  j["tlb_flushes"] = {
      {"range_flushes", fl.range_flushes},
      {"range_pages", fl.range_pages},
      {"full_flushes", fl.full_flushes},
      {"local_flushes", fl.local_flushes},
  };
  // What the run's direct map and flushes cost: the same kernel access stream
  // (hot set, Zipf locality, speculation) on every policy's final direct map.
  const md::tlb::CostReport cost = md::tlb::estimate_cost(machine, tlb, md::tlb::AccessConfig{}, wc.seed);
  j["tlb_cost"] = {
      {"tlb", cost.tlb},
      {"accesses", cost.accesses},
      {"misses", cost.misses},
      {"miss_rate", cost.miss_rate},
      {"walk_cycles", cost.walk_cycles},
      {"ipis", cost.ipis},
      {"shootdown_us", cost.shootdown_us},
      {"leaves_4k", cost.leaves_4k},
      {"leaves_2m", cost.leaves_2m},
      {"leaves_1g", cost.leaves_1g},
  };
  j["secretmem"] = {
      {"faults", r.secret_faults},
      {"frees", r.secret_frees},
      {"ooms", r.secret_ooms},
      {"live_pages", machine.mm().secret_pages()},
      {"files_created", ms.secret_files_created},
      {"forks", r.forks},
      {"fd_passes", r.fd_passes},
  };
  j["allocator"] = {
      {"pgalloc", ps.pgalloc},
      {"pgalloc_fail", ps.pgalloc_fail},
      {"pgfree", ps.pgfree},
      {"extfrag_claims", ps.extfrag_claims},
      {"extfrag_steals", ps.extfrag_steals},
      {"pcp_refills", ps.pcp_refills},
      {"pcp_drains", ps.pcp_drains},
      {"slowpath", ps.slowpath},
      {"free_pages", machine.phys().free_pages()},
      {"pcp_pages", machine.phys().pcp_pages()},
      {"managed_pages", machine.phys().managed_pages()},
      {"min_free_kbytes", machine.phys().min_free_kbytes()},
      {"unmovable_pageblocks", unmovable_blocks},
  };
  const auto& cs = machine.collapse_stats();
  j["collapse"] = {
      {"mode", std::string(md::collapse_mode_name(machine.config().collapse))},
      {"regions_scanned", cs.attempts},
      {"collapses", cs.collapses},
      {"flushes", cs.flushes},
  };
  j["failures"] = {
      {"oom_at_fault", r.secret_ooms},
      {"sigbus_at_fault", r.secret_sigbus},
      {"mmap_failed", r.mmap_failures},
  };
  j["pooled_pages"] = machine.policy().pooled_pages();
  j["direct_map_over_time"] = over_time;
  // The kernel's fragmentation indices (mm/vmstat.c), per zone and order, in thousandths.
  nlohmann::json frag = nlohmann::json::object();
  for (unsigned z = 0; z < md::phys::MAX_NR_ZONES; ++z) {
    if (machine.phys().zone(z).managed_pages == 0) continue;
    const auto info = machine.phys().buddyinfo(z);
    nlohmann::json unusable = nlohmann::json::array();
    nlohmann::json extfrag = nlohmann::json::array();
    for (unsigned order = 0; order < md::kNrPageOrders; ++order) {
      unusable.push_back(machine.phys().unusable_free_index(z, order));
      extfrag.push_back(fragmentation_index(info, order));
    }
    frag[std::string(md::phys::zone_name(z))] = {{"unusable_free_index", unusable},
                                                 {"extfrag_index", extfrag}};
  }
  j["fragmentation"] = frag;
  nlohmann::json pc = nlohmann::json::object();
  for (const auto& c : machine.policy().counters()) pc[c.name] = c.value;
  j["policy_counters"] = pc;
  j["workload"] = {
      {"kernel_allocs", r.kernel_allocs}, {"kernel_frees", r.kernel_frees},
      {"user_allocs", r.user_allocs},     {"user_frees", r.user_frees},
      {"alloc_failures", r.alloc_failures}, {"fill_pages", r.fill_pages},
      {"wp_tables_allocated", r.wp_tables_allocated}, {"wp_tables_freed", r.wp_tables_freed},
      {"wp_table_failures", r.wp_table_failures},
  };
  return j;
}

void print_table(const nlohmann::json& out) {
  const auto& m = out["machine"];
  fmt::print("exmem sim: {} RAM, {} CPUs, direct_gbpages {}, {} events, seed {}, collapse {}\n",
             m["ram"].get<std::string>(), m["cpus"].get<unsigned>(),
             m["direct_gbpages"].get<bool>() ? "on" : "off",
             out["workload"]["events"].get<std::uint64_t>(),
             out["workload"]["seed"].get<std::uint64_t>(), m["collapse"].get<std::string>());
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
  row("direct-map page-table pages",
      [&](const nlohmann::json& r) { return num(r["direct_map"]["page_table_pages"]); });
  row("TLB flush events", [&](const nlohmann::json& r) {
    const auto& t = r["tlb_flushes"];
    return fmt::format("{}", t["range_flushes"].get<std::uint64_t>() +
                                 t["full_flushes"].get<std::uint64_t>() +
                                 t["local_flushes"].get<std::uint64_t>());
  });
  row("  full flushes", [&](const nlohmann::json& r) { return num(r["tlb_flushes"]["full_flushes"]); });
  row("  range flushes", [&](const nlohmann::json& r) { return num(r["tlb_flushes"]["range_flushes"]); });
  row("  pages in range flushes", [&](const nlohmann::json& r) { return num(r["tlb_flushes"]["range_pages"]); });
  row("  flushes by the collapse mode", [&](const nlohmann::json& r) { return num(r["collapse"]["flushes"]); });
  row("TLB misses per 1000 kernel accesses", [](const nlohmann::json& r) {
    return fmt::format("{:.1f}", 1000.0 * r["tlb_cost"]["miss_rate"].get<double>());
  });
  row("page-walk cycles (estimate)", [](const nlohmann::json& r) {
    return fmt::format("{:.0f}", r["tlb_cost"]["walk_cycles"].get<double>());
  });
  row("shootdown IPIs", [&](const nlohmann::json& r) { return num(r["tlb_cost"]["ipis"]); });
  row("shootdown cost (us, estimate)", [](const nlohmann::json& r) {
    return fmt::format("{:.0f}", r["tlb_cost"]["shootdown_us"].get<double>());
  });
  row("secret faults", [&](const nlohmann::json& r) { return num(r["secretmem"]["faults"]); });
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
    return f.contains("Normal") ? fmt::format("{}", f["Normal"]["extfrag_index"][9].get<int>())
                                : std::string("-");
  });
  row("pooled pages at the end", [&](const nlohmann::json& r) { return num(r["pooled_pages"]); });
  row("unmovable pageblocks", [&](const nlohmann::json& r) { return num(r["allocator"]["unmovable_pageblocks"]); });
  row("pageblocks claimed / stolen from", [&](const nlohmann::json& r) {
    return fmt::format("{} / {}", num(r["allocator"]["extfrag_claims"]), num(r["allocator"]["extfrag_steals"]));
  });
  row("allocations failed", [&](const nlohmann::json& r) { return num(r["allocator"]["pgalloc_fail"]); });
  row("events per second",
      [](const nlohmann::json& r) { return fmt::format("{:.0f}", r["events_per_second"].get<double>()); });
  row("boot / fill / run seconds", [](const nlohmann::json& r) {
    return fmt::format("{:.2f}/{:.2f}/{:.2f}", r["boot_seconds"].get<double>(),
                       r["fill_seconds"].get<double>(), r["run_seconds"].get<double>());
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

}  // namespace

void add_sim(CLI::App& app) {
  auto opts = std::make_shared<SimOptions>();
  CLI::App* sim = app.add_subcommand(
      "sim",
      "Run the kernel model (buddy allocator, x86-64 direct map, memfd_secret) on the built-in "
      "synthetic workload and report direct-map fragmentation");
  sim->add_option("--ram", opts->ram,
                  "RAM of the modelled machine, 1GiB to 4TiB (units KiB, MiB, GiB, TiB)")
      ->type_name("SIZE")
      ->capture_default_str();
  sim->add_option("--policy", opts->policies,
                  "Policy for unmapped pages; repeat to compare, or `all`")
      ->type_name("NAME")
      ->capture_default_str();
  sim->add_option("--events", opts->events, "Page alloc/free events to run")
      ->type_name("N")
      ->capture_default_str();
  sim->add_option("--seed", opts->seed, "Seed of the workload's random stream")
      ->type_name("S")
      ->capture_default_str();
  sim->add_option("--cpus", opts->cpus, "CPUs of the modelled machine")
      ->check(CLI::Range(1u, 4096u))
      ->capture_default_str();
  sim->add_flag("--no-gbpages", opts->no_gbpages, "Boot without direct_gbpages (no 1 GiB leaves)");
  sim->add_option("--tlb", opts->tlb,
                  "TLB geometry for the cost columns: haswell, zen2 or recent-intel (approximations; see docs/tlb.md)")
      ->type_name("PRESET")
      ->capture_default_str();
  sim->add_option("--collapse", opts->collapse,
                  "How direct-map leaves come back: none, rox-only (upstream 6.15), on-restore, "
                  "scanner")
      ->type_name("MODE")
      ->capture_default_str();
  sim->add_option("--scan-rate", opts->scan_rate,
                  "2 MiB regions the scanner collapse mode looks at per workload step")
      ->check(CLI::Range(1u, 1u << 20))
      ->capture_default_str();
  sim->add_option("--secretmem", opts->secretmem,
                  "secretmem= CMA area of the pool policies (default: RAM / 256, at least 16MiB)")
      ->type_name("SIZE");
  sim->add_flag("--wp-page-tables", opts->wp_page_tables,
                "Write-protected page tables: user memory's page-table pages come from the policy, "
                "read-only in the direct map");
  sim->add_option("--pool-fail", opts->pool_fail,
                  "What secretmem-pmd-pool does when its pool is depleted at fault time: oom or "
                  "sigbus")
      ->type_name("oom|sigbus")
      ->capture_default_str();
  sim->add_flag("--json", opts->json, "Print one JSON object with a `runs` array");
  sim->footer(
      "Examples:\n"
      "  exmem sim --ram 64GiB --policy upstream --events 1000000 --seed 1\n"
      "  exmem sim --ram 1TiB --events 1000000 --json\n"
      "  exmem sim --ram 4TiB --cpus 64 --no-gbpages --events 200000\n"
      "  exmem sim --ram 64GiB --policy all --collapse on-restore\n"
      "Known policies: " +
      [] {
        std::string s;
        for (const auto& p : md::policy::Registry::builtin().all()) {
          s += "\n  " + p.name + ": " + p.summary;
        }
        return s;
      }());

  sim->callback([opts] {
    std::uint64_t ram = 0;
    if (!md::parse_size(opts->ram, ram)) {
      fail(fmt::format("--ram \"{}\": expected a size such as 64GiB, 512MiB or 1TiB "
                       "(a whole number with a unit KiB, MiB, GiB or TiB)",
                       opts->ram));
    }
    if (ram < md::GiB || ram > 4 * md::TiB || ram % (2 * md::MiB) != 0) {
      fail(fmt::format("--ram \"{}\": expected a size from 1GiB to 4TiB, a multiple of 2MiB",
                       opts->ram));
    }
    const auto& registry = md::policy::Registry::builtin();
    std::vector<std::string> policies;
    for (const std::string& name : opts->policies) {
      if (name == "all") {
        for (const std::string& n : registry.names()) policies.push_back(n);
      } else if (registry.find(name) == nullptr) {
        fail(fmt::format("--policy \"{}\": unknown policy; known policies are {} (or all)", name,
                         fmt::join(registry.names(), ", ")));
      } else {
        policies.push_back(name);
      }
    }
    md::MachineConfig mc;
    try {
      mc.collapse = md::parse_collapse_mode(opts->collapse);
    } catch (const std::invalid_argument&) {
      fail(fmt::format("--collapse \"{}\": unknown collapse mode; known modes are {}",
                       opts->collapse, fmt::join(md::collapse_mode_names(), ", ")));
    }
    if (opts->pool_fail != "oom" && opts->pool_fail != "sigbus") {
      fail(fmt::format("--pool-fail \"{}\": expected oom or sigbus", opts->pool_fail));
    }
    mc.pool_fail_sigbus = opts->pool_fail == "sigbus";
    mc.scan_rate = opts->scan_rate;
    if (!opts->secretmem.empty()) {
      std::uint64_t sb = 0;
      if (!md::parse_size(opts->secretmem, sb) || sb < 2 * md::MiB || sb % (2 * md::MiB) != 0 ||
          sb > ram / 2) {
        fail(fmt::format("--secretmem \"{}\": expected a multiple of 2MiB, at most half the RAM",
                         opts->secretmem));
      }
      mc.secretmem_bytes = sb;
    }
    mc.ram_bytes = ram;
    mc.cpus = opts->cpus;
    mc.direct_gbpages = !opts->no_gbpages;
    md::workload::WorkloadConfig wc;
    wc.events = parse_count("--events", opts->events, 1'000'000'000'000ull,
                            "a whole number of events from 0 to 1000000000000");
    wc.wp_page_tables = opts->wp_page_tables;
    wc.seed = parse_count("--seed", opts->seed, ~std::uint64_t{0},
                          "a whole number from 0 to 18446744073709551615");

    md::tlb::TlbConfig tlb;
    try {
      tlb = md::tlb::TlbConfig::preset(opts->tlb);
    } catch (const std::invalid_argument&) {
      fail(fmt::format("--tlb \"{}\": unknown TLB preset; known presets are {}", opts->tlb,
                       fmt::join(md::tlb::TlbConfig::preset_names(), ", ")));
    }
    nlohmann::json out;
    out["machine"] = {{"ram_bytes", ram},
                      {"ram", md::format_size(ram)},
                      {"cpus", mc.cpus},
                      {"direct_gbpages", mc.direct_gbpages},
                      {"collapse", std::string(md::collapse_mode_name(mc.collapse))},
                      {"scan_rate", mc.scan_rate},
                      {"tlb", opts->tlb}};
    out["workload"] = {{"name", "synthetic"},
                       {"events", wc.events},
                       {"seed", wc.seed},
                       {"secret_share", wc.secret_share},
                       {"kernel_share", wc.kernel_share},
                       {"fill", wc.fill},
                       {"wp_page_tables", wc.wp_page_tables}};
    out["runs"] = nlohmann::json::array();
    for (const std::string& name : policies) {
      mc.policy = name;
      try {
        out["runs"].push_back(run_one(mc, wc, tlb));
      } catch (const std::invalid_argument& e) {
        fail(e.what());
      }
    }
    if (opts->json) {
      fmt::print("{}\n", out.dump(2));
    } else {
      print_table(out);
    }
  });
}

}  // namespace exmem::cli
