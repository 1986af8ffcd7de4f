// `exmem sim`: the kernel model on a scenario (scenarios/*.toml; the built-in
// default one when none is named) or on a recorded kmem trace, every selected
// policy on the same workload, with a report of what each did to the direct map
// (a table, or JSON with --json). Options given on the command line override
// the scenario's values.
#include "sim.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

#include "commands.hpp"
#include "model/machine.hpp"
#include "model/policy/policy.hpp"
#include "model/tlb/tlb.hpp"
#include "model/workload/scenario.hpp"
#include "model/workload/trace_calibration.hpp"
#include "model/workload/trace_replay.hpp"
#include "report/report.hpp"

#ifndef EXMEM_SCENARIO_DIRS
#define EXMEM_SCENARIO_DIRS ""
#endif

namespace exmem::cli {

namespace {

namespace md = exmem::model;
namespace wl = exmem::model::workload;

struct SimOptions {
  std::string scenario;
  std::string trace;
  bool print_scenario = false;
  std::string ram;
  std::vector<std::string> policies;
  std::string events;
  std::string seed;
  unsigned cpus = 16;
  bool no_gbpages = false;
  bool json = false;
  std::string out_dir;
  std::string collapse;
  unsigned scan_rate = 4;
  std::string secretmem;
  std::string pool_fail;
  bool wp_page_tables = false;
  std::string tlb;
  std::string progress = "auto";
};

[[noreturn]] void fail(const std::string& message) {
  std::fprintf(stderr, "exmem sim: %s\n", message.c_str());
  throw CLI::RuntimeError(2);
}

// A whole decimal number in [0, max]; anything else is an error naming the option.
std::uint64_t parse_count(const char* option, const std::string& text, std::uint64_t max, const char* expected) {
  std::uint64_t v = 0;
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, v);
  if (text.empty() || ec != std::errc{} || ptr != end || v > max) {
    fail(fmt::format("{} \"{}\": expected {}", option, text, expected));
  }
  return v;
}

// Folders holding the shipped scenarios: the installed data folder, then the source tree's.
std::vector<std::string> scenario_dirs() {
  std::vector<std::string> dirs;
  std::string all = EXMEM_SCENARIO_DIRS;
  for (std::size_t start = 0; start <= all.size();) {
    const std::size_t end = std::min(all.find(':', start), all.size());
    if (end > start) dirs.push_back(all.substr(start, end - start));
    start = end + 1;
  }
  return dirs;
}

std::vector<std::string> known_scenarios() {
  std::vector<std::string> names{"default"};
  for (const std::string& d : scenario_dirs()) {
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(d, ec)) {
      if (e.path().extension() != ".toml") continue;
      const std::string stem = e.path().stem().string();
      if (std::find(names.begin(), names.end(), stem) == names.end()) names.push_back(stem);
    }
  }
  return names;
}

// --scenario: a file, or the name of a shipped scenario ("key-server"); "default" is built in.
struct Loaded {
  wl::Scenario scenario;
  std::string text;
};
Loaded load(const std::string& arg) {
  auto read = [](const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
  };
  std::error_code ec;
  if (arg.empty() || arg == "default") {
    return {wl::parse_scenario(sim::default_scenario_text(), "<built-in>/default.toml"),
            std::string(sim::default_scenario_text())};
  }
  if (std::filesystem::is_regular_file(arg, ec)) return {wl::load_scenario(arg), read(arg)};
  if (arg.find('/') == std::string::npos) {
    const std::string file = arg.size() > 5 && arg.substr(arg.size() - 5) == ".toml" ? arg : arg + ".toml";
    for (const std::string& d : scenario_dirs()) {
      const std::string path = d + "/" + file;
      if (std::filesystem::is_regular_file(path, ec)) return {wl::load_scenario(path), read(path)};
    }
  }
  fail(fmt::format("--scenario \"{}\": expected a scenario file or the name of a shipped scenario ({})", arg,
                   fmt::join(known_scenarios(), ", ")));
}

void apply_overrides(const CLI::App& sim, const SimOptions& o, wl::Scenario& s, const wl::TraceInfo* trace,
                     bool scenario_given) {
  auto given = [&](const char* name) { return sim.get_option(name)->count() > 0; };
  md::MachineConfig& mc = s.machine;
  // A trace sizes the machine like the one it was recorded on, unless a scenario or an option says otherwise.
  if (trace != nullptr && !scenario_given) {
    if (trace->mem_total_kb != 0) {
      const std::uint64_t bytes = trace->mem_total_kb * md::KiB;
      mc.ram_bytes = std::clamp<std::uint64_t>((bytes + md::GiB - 1) / md::GiB * md::GiB, md::GiB, 4 * md::TiB);
    }
    if (trace->cpus != 0) mc.cpus = std::min(trace->cpus, 4096u);
  }
  if (given("--ram")) {
    std::uint64_t ram = 0;
    if (!md::parse_size(o.ram, ram)) {
      fail(
          fmt::format("--ram \"{}\": expected a size such as 64GiB, 512MiB or 1TiB "
                      "(a whole number with a unit KiB, MiB, GiB or TiB)",
                      o.ram));
    }
    if (ram < md::GiB || ram > 4 * md::TiB || ram % (2 * md::MiB) != 0) {
      fail(fmt::format("--ram \"{}\": expected a size from 1GiB to 4TiB, a multiple of 2MiB", o.ram));
    }
    mc.ram_bytes = ram;
  }
  if (given("--policy")) {
    const auto& registry = md::policy::Registry::builtin();
    s.policies.clear();
    for (const std::string& name : o.policies) {
      if (name == "all") {
        for (const std::string& n : registry.names()) s.policies.push_back(n);
      } else if (registry.find(name) == nullptr) {
        fail(fmt::format("--policy \"{}\": unknown policy; known policies are {} (or all)", name,
                         fmt::join(registry.names(), ", ")));
      } else {
        s.policies.push_back(name);
      }
    }
  }
  if (given("--collapse")) {
    try {
      mc.collapse = md::parse_collapse_mode(o.collapse);
    } catch (const std::invalid_argument&) {
      fail(fmt::format("--collapse \"{}\": unknown collapse mode; known modes are {}", o.collapse,
                       fmt::join(md::collapse_mode_names(), ", ")));
    }
  }
  if (given("--pool-fail")) {
    if (o.pool_fail != "oom" && o.pool_fail != "sigbus") {
      fail(fmt::format("--pool-fail \"{}\": expected oom or sigbus", o.pool_fail));
    }
    mc.pool_fail_sigbus = o.pool_fail == "sigbus";
  }
  if (given("--scan-rate")) mc.scan_rate = o.scan_rate;
  if (given("--cpus")) mc.cpus = o.cpus;
  if (o.no_gbpages) mc.direct_gbpages = false;
  if (given("--secretmem")) {
    std::uint64_t sb = 0;
    if (!md::parse_size(o.secretmem, sb) || sb < 2 * md::MiB || sb % (2 * md::MiB) != 0 || sb > mc.ram_bytes / 2) {
      fail(fmt::format("--secretmem \"{}\": expected a multiple of 2MiB, at most half the RAM", o.secretmem));
    }
    mc.secretmem_bytes = sb;
  } else if (mc.secretmem_bytes > mc.ram_bytes / 2) {
    fail(
        fmt::format("the scenario's secretmem area ({}) is more than half the RAM ({}): expected --secretmem "
                    "SIZE or a larger --ram",
                    md::format_size(mc.secretmem_bytes), md::format_size(mc.ram_bytes)));
  }
  if (given("--events")) {
    s.workload.events =
        parse_count("--events", o.events, 1'000'000'000'000ull, "a whole number of events from 0 to 1000000000000");
    s.seconds = 0;
    s.events_per_second = 0;
  }
  if (o.wp_page_tables) s.workload.wp_page_tables = true;
  if (given("--seed")) {
    s.workload.seed = parse_count("--seed", o.seed, ~std::uint64_t{0}, "a whole number from 0 to 18446744073709551615");
  }
  if (given("--tlb")) {
    try {
      (void)md::tlb::TlbConfig::preset(o.tlb);
    } catch (const std::invalid_argument&) {
      fail(fmt::format("--tlb \"{}\": unknown TLB preset; known presets are {}", o.tlb,
                       fmt::join(md::tlb::TlbConfig::preset_names(), ", ")));
    }
    s.tlb = o.tlb;
  }
}

bool progress_enabled(const std::string& mode) {
  if (mode == "always") return true;
  if (mode == "never") return false;
  if (mode == "auto") return ::isatty(STDERR_FILENO) == 1;
  fail(fmt::format("--progress \"{}\": expected auto, always or never", mode));
}

void warn_unknown_lines(const exmem::sim::RunResult& run, const std::string& path) {
  if (!run.trace || run.trace->unknown_lines == 0) return;
  std::fflush(stdout);  // never in the middle of a line of stdout
  std::fprintf(stderr, "exmem sim: %s: %llu lines not understood (skipped); the first:\n", path.c_str(),
               static_cast<unsigned long long>(run.trace->unknown_lines));
  for (const auto& u : run.trace->first_unknown) {
    std::fprintf(stderr, "  line %llu: %s: %s\n", static_cast<unsigned long long>(u.line), u.why.c_str(),
                 u.text.c_str());
  }
}

}  // namespace

void add_sim(CLI::App& app) {
  auto opts = std::make_shared<SimOptions>();
  CLI::App* sim = app.add_subcommand(
      "sim",
      "Run the kernel model (buddy allocator, x86-64 direct map, memfd_secret) on a scenario or a recorded "
      "kmem trace, every selected policy side by side, and report direct-map fragmentation");
  sim->add_option("--scenario", opts->scenario,
                  "Scenario file (TOML), or the name of a shipped one (default, laptop-password-manager, "
                  "key-server, vm-host-1tib, wp-page-tables-host). Without it: the built-in default scenario")
      ->type_name("FILE|NAME");
  sim->add_option("--trace", opts->trace,
                  "Replay a trace written by `exmem trace record` instead of the synthetic workload (every policy "
                  "replays the same trace; the machine takes the trace's RAM and CPUs unless told otherwise)")
      ->type_name("FILE");
  sim->add_flag("--print-scenario", opts->print_scenario,
                "Print the scenario's TOML (the built-in default one without --scenario) and exit");
  sim->add_option("--ram", opts->ram, "RAM of the modelled machine, 1GiB to 4TiB (units KiB, MiB, GiB, TiB)")
      ->type_name("SIZE");
  sim->add_option("--policy", opts->policies,
                  "Policy for unmapped pages; repeat to compare, or `all` (default: the scenario's, all for the "
                  "default scenario)")
      ->type_name("NAME");
  sim->add_option("--events", opts->events, "Page alloc/free events to run (default: the scenario's)")->type_name("N");
  sim->add_option("--seed", opts->seed, "Seed of the workload's random stream")->type_name("S");
  sim->add_option("--cpus", opts->cpus, "CPUs of the modelled machine")->check(CLI::Range(1u, 4096u));
  sim->add_flag("--no-gbpages", opts->no_gbpages, "Boot without direct_gbpages (no 1 GiB leaves)");
  sim->add_option("--tlb", opts->tlb,
                  "TLB geometry for the cost columns: haswell, zen2 or recent-intel (approximations; see docs/tlb.md)")
      ->type_name("PRESET");
  sim->add_option("--collapse", opts->collapse,
                  "How direct-map leaves come back: none, rox-only (upstream 6.15), on-restore, scanner")
      ->type_name("MODE");
  sim->add_option("--scan-rate", opts->scan_rate, "2 MiB regions the scanner collapse mode looks at per workload step")
      ->check(CLI::Range(1u, 1u << 20));
  sim->add_option("--secretmem", opts->secretmem,
                  "secretmem= CMA area of the pool policies (default: RAM / 256, at least 16MiB)")
      ->type_name("SIZE");
  sim->add_flag("--wp-page-tables", opts->wp_page_tables,
                "Write-protected page tables: user memory's page-table pages come from the policy, "
                "read-only in the direct map");
  sim->add_option("--pool-fail", opts->pool_fail,
                  "What secretmem-pmd-pool does when its pool is depleted at fault time: oom or sigbus")
      ->type_name("oom|sigbus");
  sim->add_flag("--json", opts->json, "Print one JSON object with a `runs` array");
  sim->add_option("--out", opts->out_dir,
                  "Also write DIR/report.json, runs.csv, over_time.csv and index.html (a self-contained "
                  "page with maps of the direct map at the start and end of each run, and time series)")
      ->type_name("DIR");
  sim->add_option("--progress", opts->progress,
                  "Progress bar on stderr: auto (when stderr is a terminal, once the command has run for a "
                  "second), always (from the start, terminal or not) or never")
      ->type_name("WHEN")
      ->capture_default_str();
  sim->footer(
      "Examples:\n"
      "  exmem sim                                     the default scenario (64 GiB), every policy\n"
      "  exmem sim --scenario key-server               a shipped scenario (see scenarios/)\n"
      "  exmem sim --scenario my.toml --ram 256GiB     a scenario file, its RAM overridden\n"
      "  exmem sim --print-scenario > my.toml          start a scenario from the default one\n"
      "  exmem trace record -o app.trace -- ./app && exmem sim --trace app.trace\n"
      "  exmem sim --ram 64GiB --policy upstream --events 1000000 --seed 1 --json\n"
      "  exmem sim --ram 4TiB --cpus 64 --no-gbpages --events 200000 --policy upstream\n"
      "  exmem sim --policy all --collapse on-restore\n"
      "Known policies: " +
      [] {
        std::string s;
        for (const auto& p : md::policy::Registry::builtin().all()) s += "\n  " + p.name + ": " + p.summary;
        return s;
      }());

  sim->callback([opts, sim] {
    const bool scenario_given = sim->get_option("--scenario")->count() > 0;
    Loaded loaded;
    std::unique_ptr<wl::TraceInfo> trace;
    try {
      loaded = load(opts->scenario);
      if (opts->print_scenario) {
        std::fwrite(loaded.text.data(), 1, loaded.text.size(), stdout);
        return;
      }
      if (!opts->trace.empty()) trace = std::make_unique<wl::TraceInfo>(wl::read_trace_info(opts->trace));
    } catch (const wl::ScenarioError& e) {
      fail(e.what());
    } catch (const wl::TraceError& e) {
      fail(fmt::format("--trace: {}", e.what()));
    }
    wl::Scenario& s = loaded.scenario;
    if (trace && sim->get_option("--events")->count() > 0) {
      fail("--events: a trace replays all of its events; expected --events without --trace, or --trace alone");
    }
    apply_overrides(*sim, *opts, s, trace.get(), scenario_given);
    if (trace && !scenario_given) {  // the run is the trace's, on a machine like the one it was recorded on
      s.name = std::filesystem::path(opts->trace).stem().string();
      s.source = opts->trace;
      s.description = trace->command.empty() ? "a kmem trace" : fmt::format("a kmem trace of `{}`", trace->command);
    }
    const md::tlb::TlbConfig tlb = md::tlb::TlbConfig::preset(s.tlb);

    report::Document doc;
    doc.header = sim::header_json(s, trace.get(), opts->trace);
    sim::Progress progress(progress_enabled(opts->progress), opts->progress == "always");
    exmem::sim::RunOptions ro;
    ro.tlb = tlb;
    ro.region_maps = !opts->out_dir.empty();
    ro.observer = &progress;
    for (const std::string& name : s.policies) {
      try {
        if (trace) {
          doc.runs.push_back(exmem::sim::run_trace(s, name, opts->trace, ro));
          if (doc.runs.size() == 1) warn_unknown_lines(doc.runs.back(), opts->trace);
        } else {
          doc.runs.push_back(exmem::sim::run_synthetic(s, name, ro));
        }
      } catch (const std::invalid_argument& e) {
        progress.end();
        fail(e.what());
      } catch (const wl::TraceError& e) {
        progress.end();
        fail(fmt::format("--trace: {}", e.what()));
      }
    }
    if (trace && (!trace->secret_pages.empty() || !trace->start_counters.empty())) {
      doc.header["calibration"] = sim::calibration_json(wl::calibrate_trace(*trace), doc.runs);
    }
    if (!opts->out_dir.empty()) {
      try {
        report::write_report(opts->out_dir, doc);
      } catch (const std::system_error& e) {
        fail(fmt::format("--out \"{}\": {}", opts->out_dir, e.what()));
      }
    }
    // The maps are in the report's files; the printed JSON stays as without --out.
    const std::string text = opts->json ? report::to_json(doc).dump(2) + "\n"
                                        : sim::table_text(doc, sim::output_columns()) +
                                              sim::calibration_text(doc.header);
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
    if (!opts->out_dir.empty()) {
      fmt::print(stderr, "exmem sim: report written to {}/index.html\n", opts->out_dir);
    }
  });
}

}  // namespace exmem::cli
