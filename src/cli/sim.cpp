// `exmem sim`: the kernel model on the built-in synthetic workload, with a
// report of what it did to the direct map (a table, or JSON with --json).
#include <sys/resource.h>

#include <charconv>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "model/machine.hpp"
#include "model/policy/policy.hpp"
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

nlohmann::json run_one(const md::MachineConfig& mc, const md::workload::WorkloadConfig& wc) {
  const auto t0 = std::chrono::steady_clock::now();
  md::Machine machine(mc);
  const double boot_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  md::workload::SyntheticWorkload workload(machine, wc);
  const md::workload::WorkloadResult r = workload.run();

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
  j["workload"] = {
      {"kernel_allocs", r.kernel_allocs}, {"kernel_frees", r.kernel_frees},
      {"user_allocs", r.user_allocs},     {"user_frees", r.user_frees},
      {"alloc_failures", r.alloc_failures}, {"fill_pages", r.fill_pages},
  };
  return j;
}

void print_table(const nlohmann::json& out) {
  const auto& m = out["machine"];
  fmt::print("exmem sim: {} RAM, {} CPUs, direct_gbpages {}, {} events, seed {}\n",
             m["ram"].get<std::string>(), m["cpus"].get<unsigned>(),
             m["direct_gbpages"].get<bool>() ? "on" : "off",
             out["workload"]["events"].get<std::uint64_t>(),
             out["workload"]["seed"].get<std::uint64_t>());
  for (const auto& run : out["runs"]) {
    const auto& d = run["direct_map"];
    const auto& s = run["secretmem"];
    const auto& t = run["tlb_flushes"];
    const auto& a = run["allocator"];
    fmt::print("\npolicy {}\n", run["policy"].get<std::string>());
    auto row = [](const char* name, const std::string& value) {
      fmt::print("  {:<30} {:>20}\n", name, value);
    };
    auto num = [](const nlohmann::json& v) { return fmt::format("{}", v.get<std::uint64_t>()); };
    row("events", num(run["events"]));
    row("events per second", fmt::format("{:.0f}", run["events_per_second"].get<double>()));
    row("boot / fill / run seconds",
        fmt::format("{:.2f} / {:.2f} / {:.2f}", run["boot_seconds"].get<double>(),
                    run["fill_seconds"].get<double>(), run["run_seconds"].get<double>()));
    row("peak RSS", md::format_size(run["peak_rss_bytes"].get<std::uint64_t>()));
    row("model bytes per 4 KiB frame", fmt::format("{:.2f}", run["model_bytes_per_frame"].get<double>()));
    row("DirectMap4k (kB)", num(d["DirectMap4k"]));
    row("DirectMap2M (kB)", num(d["DirectMap2M"]));
    row("DirectMap1G (kB)", num(d["DirectMap1G"]));
    row("direct_map_level2_splits", num(d["direct_map_level2_splits"]));
    row("direct_map_level3_splits", num(d["direct_map_level3_splits"]));
    row("direct_map_level2_collapses", num(d["direct_map_level2_collapses"]));
    row("direct_map_level3_collapses", num(d["direct_map_level3_collapses"]));
    row("direct-map page-table pages", num(d["page_table_pages"]));
    row("secret faults / frees / OOMs",
        fmt::format("{} / {} / {}", num(s["faults"]), num(s["frees"]), num(s["ooms"])));
    row("TLB range flushes (pages)",
        fmt::format("{} ({})", num(t["range_flushes"]), num(t["range_pages"])));
    row("TLB full flushes", num(t["full_flushes"]));
    row("allocations failed", num(a["pgalloc_fail"]));
    row("pageblocks claimed / stolen from",
        fmt::format("{} / {}", num(a["extfrag_claims"]), num(a["extfrag_steals"])));
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
  sim->add_flag("--json", opts->json, "Print one JSON object with a `runs` array");
  sim->footer(
      "Examples:\n"
      "  exmem sim --ram 64GiB --policy upstream --events 1000000 --seed 1\n"
      "  exmem sim --ram 1TiB --events 1000000 --json\n"
      "  exmem sim --ram 4TiB --cpus 64 --no-gbpages --events 200000\n"
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
    mc.ram_bytes = ram;
    mc.cpus = opts->cpus;
    mc.direct_gbpages = !opts->no_gbpages;
    md::workload::WorkloadConfig wc;
    wc.events = parse_count("--events", opts->events, 1'000'000'000'000ull,
                            "a whole number of events from 0 to 1000000000000");
    wc.seed = parse_count("--seed", opts->seed, ~std::uint64_t{0},
                          "a whole number from 0 to 18446744073709551615");

    nlohmann::json out;
    out["machine"] = {{"ram_bytes", ram},
                      {"ram", md::format_size(ram)},
                      {"cpus", mc.cpus},
                      {"direct_gbpages", mc.direct_gbpages}};
    out["workload"] = {{"name", "synthetic"},
                       {"events", wc.events},
                       {"seed", wc.seed},
                       {"secret_share", wc.secret_share},
                       {"kernel_share", wc.kernel_share},
                       {"fill", wc.fill}};
    out["runs"] = nlohmann::json::array();
    for (const std::string& name : policies) {
      mc.policy = name;
      try {
        out["runs"].push_back(run_one(mc, wc));
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
