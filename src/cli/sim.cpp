// `exmem sim`: the kernel model on a scenario (scenarios/*.toml; the built-in
// default one when none is named) or on a recorded kmem trace, every selected
// policy on the same workload, with a report of what each did to the direct map
// (a table, or JSON with --json). Options given on the command line override
// the scenario's values.
#include "sim.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
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
#include "sim/costs.hpp"

namespace exmem::cli {

namespace {

namespace md = exmem::model;
namespace wl = exmem::model::workload;

struct SimOptions {
  std::string scenario;
  std::string trace;
  bool print_scenario = false;
  bool json = false;
  std::string out_dir;
  std::string progress = "auto";
  std::string costs;  // --costs FILE (sim/costs.hpp)
  std::string jobs;   // --jobs N, checked by jobs_of()
  // The options of the scenario's settings (workload/settings.hpp), by flag:
  // their texts as given (a repeated option, such as --policy, has several).
  std::map<std::string, std::vector<std::string>> settings;
  std::map<std::string, bool> flags;  // the settings' flags (--no-gbpages)
};

[[noreturn]] void fail(const std::string& message, int code = 2) {
  std::fflush(stdout);
  std::fprintf(stderr, "exmem sim: %s\n", message.c_str());
  throw CLI::RuntimeError(code);
}

// --jobs: how many policies run at once; without it, one per CPU this process may use.
constexpr unsigned kMaxJobs = 1024;
unsigned jobs_of(const std::string& text, bool given) {
  if (!given) return sim::online_cpus();
  unsigned long n = 0;
  bool ok = !text.empty() && text.size() <= 5 && text.find_first_not_of("0123456789") == std::string::npos;
  if (ok) n = std::stoul(text);
  if (!ok || n < 1 || n > kMaxJobs) {
    fail(fmt::format("--jobs \"{}\": expected the number of policies to run at once, a whole number from 1 to {}",
                     text, kMaxJobs));
  }
  return static_cast<unsigned>(n);
}

// A policy's run ended with `error`: the command's error, naming the policy
// (status 2 for the errors of its input, 1 for any other).
[[noreturn]] void failed_run(const std::string& policy, const std::exception_ptr& error) {
  const std::string which = fmt::format("the run of policy \"{}\" failed: ", policy);
  try {
    std::rethrow_exception(error);
  } catch (const std::invalid_argument& e) {
    fail(which + e.what());
  } catch (const wl::TraceError& e) {
    fail(which + fmt::format("--trace: {}", e.what()));
  } catch (const std::exception& e) {
    fail(which + e.what(), 1);
  }
}

// --scenario: a file, or the name of a shipped scenario ("key-server"); "default"
// is built in. Read, each value checked; the rules between settings are
// checked once the options have overridden it (apply_overrides()).
struct Loaded {
  wl::Scenario scenario;
  std::string text;
};
Loaded load(const std::string& arg) {
  const std::optional<sim::ScenarioFile> found = sim::find_scenario(arg.empty() ? "default" : arg);
  if (!found) {
    fail(fmt::format("--scenario \"{}\": expected a scenario file or the name of a shipped scenario ({})", arg,
                     fmt::join(sim::known_scenarios(), ", ")));
  }
  return {wl::read_scenario(found->text, found->source), found->text};
}

const wl::Setting& setting(std::string_view path) {
  for (const wl::Setting& st : wl::scenario_settings()) {
    if (st.path == path) return st;
  }
  throw std::logic_error(fmt::format("no scenario setting {}", path));
}

// The options given override the scenario's settings, then the scenario is
// checked once, as a whole (ScenarioError naming the option or the file's line).
void apply_overrides(const SimOptions& o, wl::Scenario& s, const wl::TraceInfo* trace, bool scenario_given) {
  // A trace sizes the machine like the one it was recorded on, unless a scenario or an option says otherwise.
  if (trace != nullptr && !scenario_given) {
    if (trace->mem_total_kb != 0) {
      const std::uint64_t bytes = trace->mem_total_kb * md::KiB;
      wl::apply_value(s, setting("machine.ram"),
                      std::clamp<std::uint64_t>((bytes + md::GiB - 1) / md::GiB * md::GiB, md::GiB, 4 * md::TiB),
                      "--trace", o.trace);
    }
    if (trace->cpus != 0) {
      wl::apply_value(s, setting("machine.cpus"), std::uint64_t{std::min(trace->cpus, 4096u)}, "--trace", o.trace);
    }
  }
  std::uint64_t order = 0;
  for (const wl::Setting& st : wl::scenario_settings()) {
    if (st.flag.empty()) continue;
    ++order;
    if (st.kind == wl::SettingKind::Bool) {
      if (o.flags.at(st.flag)) wl::apply_option(s, st, {}, order);
      continue;
    }
    const std::vector<std::string>& texts = o.settings.at(st.flag);
    if (!texts.empty()) wl::apply_option(s, st, texts, order);
  }
  wl::check_scenario(s);
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
                  "key-server, pool-starvation, vm-host-1tib, vm-host-4tib, wp-page-tables-host). Without it: the built-in "
                  "default scenario")
      ->type_name("FILE|NAME");
  sim->add_option("--trace", opts->trace,
                  "Replay a trace written by `exmem trace record` instead of the synthetic workload (every policy "
                  "replays the same trace; the machine takes the trace's RAM and CPUs unless told otherwise)")
      ->type_name("FILE");
  sim->add_flag("--print-scenario", opts->print_scenario,
                "Print the scenario's TOML (the built-in default one without --scenario) and exit");
  // The scenario's settings that have an option, from the schema.
  for (const wl::Setting& st : wl::scenario_settings()) {
    if (st.flag.empty()) continue;
    if (st.kind == wl::SettingKind::Bool) {
      sim->add_flag(st.flag, opts->flags[st.flag], st.option_help());
      continue;
    }
    std::string type_name = st.type_name;
    if (type_name.empty()) type_name = st.kind == wl::SettingKind::Size ? "SIZE" : "N";
    CLI::Option* opt = sim->add_option(st.flag, opts->settings[st.flag], st.option_help())->type_name(type_name);
    if (st.kind != wl::SettingKind::Policies) opt->expected(1)->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  }
  sim->add_option("--costs", opts->costs,
                  "Price the kernel slowdown with the figures `exmem probe --cost --save FILE` measured (format "
                  "exmem-costs/1) instead of the built-in constants, and check the model against the probe's sweep")
      ->type_name("FILE");
  sim->add_option("--jobs,-j", opts->jobs,
                  "Policies run at once, each on its own thread with its own machine, 1 to 1024 (default: the "
                  "CPUs this process may use; 1: one after another). The results and their order are those of a "
                  "run one after another; the memory is up to N times one run's")
      ->type_name("N");
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
      "  exmem sim --policy all --jobs 1                every policy, one after another\n"
      "  exmem probe --cost --save host.costs && exmem sim --costs host.costs\n"
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
        wl::check_scenario(loaded.scenario);
        std::fwrite(loaded.text.data(), 1, loaded.text.size(), stdout);
        return;
      }
      if (!opts->trace.empty()) trace = std::make_unique<wl::TraceInfo>(wl::read_trace_info(opts->trace));
      if (trace && !opts->settings.at("--events").empty()) {
        fail("--events: a trace replays all of its events; expected --events without --trace, or --trace alone");
      }
      apply_overrides(*opts, loaded.scenario, trace.get(), scenario_given);
    } catch (const wl::ScenarioError& e) {
      fail(e.what());
    } catch (const wl::TraceError& e) {
      fail(fmt::format("--trace: {}", e.what()));
    }
    wl::Scenario& s = loaded.scenario;
    if (trace && !scenario_given) {  // the run is the trace's, on a machine like the one it was recorded on
      s.name = std::filesystem::path(opts->trace).stem().string();
      s.source = opts->trace;
      s.description = trace->command.empty() ? "a kmem trace" : fmt::format("a kmem trace of `{}`", trace->command);
    }
    const unsigned jobs = jobs_of(opts->jobs, sim->get_option("--jobs")->count() > 0);
    const md::tlb::TlbConfig tlb = md::tlb::TlbConfig::preset(s.tlb);
    std::optional<exmem::sim::CostsFile> costs;
    if (!opts->costs.empty()) {
      try {
        costs = exmem::sim::load_costs(opts->costs);
      } catch (const exmem::sim::CostsError& e) {
        fail(fmt::format("--costs: {}", e.what()));
      }
    }

    report::Document doc;
    doc.header = sim::header_json(s, trace.get(), opts->trace);
    const md::tlb::KernelCostFigures figures = costs ? exmem::sim::figures_of(*costs) : md::tlb::KernelCostFigures{};
    doc.header["costs"] = sim::costs_json(figures, costs ? &*costs : nullptr, s.kernel_access, tlb);
    const bool progress_on = progress_enabled(opts->progress);
    exmem::sim::RunOptions ro;
    ro.tlb = tlb;
    ro.costs = figures;
    ro.region_maps = !opts->out_dir.empty();
    auto run_one = [&](std::size_t i, exmem::sim::RunObserver& observer) {
      exmem::sim::RunOptions o = ro;
      o.observer = &observer;
      return trace ? exmem::sim::run_trace(s, s.policies[i], opts->trace, o)
                   : exmem::sim::run_synthetic(s, s.policies[i], o);
    };
    // Each result in the policies' order, as it would come serially.
    auto take = [&](std::size_t i, exmem::sim::RunResult&& r) {
      doc.runs.push_back(std::move(r));
      if (trace && i == 0) warn_unknown_lines(doc.runs.back(), opts->trace);
    };
    if (jobs == 1 || s.policies.size() == 1) {
      sim::Progress progress(progress_on, opts->progress == "always");
      for (std::size_t i = 0; i < s.policies.size(); ++i) {
        std::optional<exmem::sim::RunResult> r;
        try {
          r.emplace(run_one(i, progress));
        } catch (const std::exception&) {
          progress.end();
          failed_run(s.policies[i], std::current_exception());
        }
        take(i, std::move(*r));
      }
    } else {
      std::vector<sim::PolicyRun> runs =
          sim::run_concurrently(s.policies.size(), jobs, progress_on, opts->progress == "always", run_one);
      for (std::size_t i = 0; i < runs.size(); ++i) {
        if (runs[i].error) failed_run(s.policies[i], runs[i].error);
        if (!runs[i].result) throw std::logic_error("exmem sim: a run neither finished nor failed");
        take(i, std::move(*runs[i].result));
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
