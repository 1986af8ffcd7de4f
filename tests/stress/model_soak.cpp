// exmem_model_soak: the kernel model under load. A machine (1 TiB by default)
// runs the synthetic workload with every share of it non-zero (secret churn
// with forks and fd passing, kernel, user, MAP_EXCLUSIVE, ROX cache and guest
// memory, write-protected page tables, secret holders that keep their memory
// for a while), interleaved with CPA calls of a module loader of its own:
// set_memory_ro / rox / np / 4k on kernel pages it allocated, undone before the
// pages are freed, as vfree() and module unload do. Machine::check() runs every
// --check-every events and at the end; any violation ends the run with FAIL.
//
// A bench-mode run, not a unit test (it is not registered with CTest):
//   exmem_model_soak                        # 100,000,000 events on 1 TiB, upstream
//   exmem_model_soak --policy all --events 10000000
// It prints events per second, the checks done and what they cost, the peak
// RSS, and PASS or FAIL.
#include <sys/resource.h>
#include <time.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "model/machine.hpp"
#include "model/policy/policy.hpp"
#include "model/workload/synthetic.hpp"

namespace md = exmem::model;

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// CPU seconds of this process: the machine may be shared, so rates are given
// per CPU second as well as per wall-clock second.
double cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

std::uint64_t peak_rss_bytes() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<std::uint64_t>(ru.ru_maxrss) * 1024;  // KiB on Linux
}

struct Options {
  std::string ram = "1TiB";
  std::string events = "100000000";
  std::vector<std::string> policies{"upstream"};
  std::string collapse = "rox-only";
  std::string check_every = "0";  // 0: chosen from the cost of one check
  std::string seed = "1";
  unsigned cpus = 16;
  double cpa_share = 0.02;
};

std::uint64_t parse_count(const char* option, const std::string& text) {
  std::uint64_t v = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, v);
  if (text.empty() || ec != std::errc{} || ptr != end)
    throw CLI::ValidationError(option, fmt::format("\"{}\": expected a whole number", text));
  return v;
}

// A module loader's pages: allocated from the page allocator, their direct-map
// attributes changed by CPA, restored before they are freed.
class CpaDriver {
 public:
  explicit CpaDriver(md::Machine& m, std::uint64_t seed) : m_(m), rng_(seed ^ 0xC0FFEEull) {}

  void step() {
    const auto cpu = static_cast<md::CpuId>(rng_.below(m_.phys().cpus()));
    if (held_.empty() || (held_.size() < 256 && rng_.uniform() < 0.55)) {
      const unsigned order = static_cast<unsigned>(rng_.below(10));  // up to 2 MiB
      md::Result<md::Pfn> p = m_.alloc_pages(md::phys::GFP_KERNEL, order, cpu, md::phys::FrameKind::Kernel);
      ++calls_;
      if (!p.ok()) {
        ++alloc_failures_;
        return;
      }
      Held h{p.value, order, static_cast<Change>(rng_.below(4))};
      const md::Pfn n = md::Pfn{1} << order;
      int rc = 0;
      switch (h.change) {
        case Change::Ro: rc = m_.dmap().set_memory_ro(h.pfn, n, cpu); break;
        case Change::Rox: rc = m_.dmap().set_memory_rox(h.pfn, n, cpu); break;
        case Change::Np: rc = m_.dmap().set_memory_np(h.pfn, n, cpu); break;
        case Change::K4: rc = m_.dmap().set_memory_4k(h.pfn, n, cpu); break;
      }
      ++calls_;
      if (rc != 0) ++cpa_failures_;  // a split without a table page: partly changed, restored below
      held_.push_back(h);
      return;
    }
    const std::size_t i = rng_.below(held_.size());
    const Held h = held_[i];
    held_[i] = held_.back();
    held_.pop_back();
    const md::Pfn n = md::Pfn{1} << h.order;
    int rc = 0;
    switch (h.change) {
      case Change::Ro: rc = m_.dmap().set_memory_rw(h.pfn, n, cpu); break;
      case Change::Rox:
        rc = m_.dmap().set_memory_nx(h.pfn, n, cpu);
        if (rc == 0) rc = m_.dmap().set_memory_rw(h.pfn, n, cpu);
        break;
      case Change::Np: rc = m_.dmap().set_memory_p(h.pfn, n, cpu); break;
      case Change::K4: rc = m_.dmap().clear_4k(h.pfn, n, cpu); break;
    }
    calls_ += 2;
    if (rc != 0) {  // cannot restore it: never give the page back in that state
      ++stuck_;
      return;
    }
    m_.free_pages(h.pfn, h.order, cpu);
  }

  // Restores and frees what is still held (at the end of the run).
  void finish() {
    while (!held_.empty()) {
      const Held h = held_.back();
      held_.pop_back();
      const md::Pfn n = md::Pfn{1} << h.order;
      int rc = 0;
      switch (h.change) {
        case Change::Ro: rc = m_.dmap().set_memory_rw(h.pfn, n, 0); break;
        case Change::Rox:
          rc = m_.dmap().set_memory_nx(h.pfn, n, 0);
          if (rc == 0) rc = m_.dmap().set_memory_rw(h.pfn, n, 0);
          break;
        case Change::Np: rc = m_.dmap().set_memory_p(h.pfn, n, 0); break;
        case Change::K4: rc = m_.dmap().clear_4k(h.pfn, n, 0); break;
      }
      if (rc == 0) m_.free_pages(h.pfn, h.order, 0);
      else ++stuck_;
    }
  }

  std::uint64_t calls() const { return calls_; }
  std::uint64_t cpa_failures() const { return cpa_failures_; }
  std::uint64_t alloc_failures() const { return alloc_failures_; }
  std::uint64_t stuck() const { return stuck_; }

 private:
  enum class Change : std::uint8_t { Ro, Rox, Np, K4 };
  struct Held {
    md::Pfn pfn;
    unsigned order;
    Change change;
  };
  md::Machine& m_;
  md::workload::Rng rng_;
  std::vector<Held> held_;
  std::uint64_t calls_ = 0, cpa_failures_ = 0, alloc_failures_ = 0, stuck_ = 0;
};

struct RunResult {
  bool pass = true;
  std::uint64_t events = 0;
  double run_seconds = 0;  // wall clock, checks excluded
  double run_cpu = 0;      // CPU, checks excluded
  std::uint64_t checks = 0;
  double check_seconds = 0;
  double check_cpu = 0;
};

RunResult soak(const std::string& policy, std::uint64_t ram, std::uint64_t events, std::uint64_t check_every,
               std::uint64_t seed, const Options& o) {
  RunResult res;
  md::MachineConfig mc;
  mc.ram_bytes = ram;
  mc.cpus = o.cpus;
  mc.policy = policy;
  mc.collapse = md::parse_collapse_mode(o.collapse);
  const auto tb = Clock::now();
  md::Machine machine(mc);
  fmt::print("[{}] booted {} in {:.1f} s ({} of model)\n", policy, md::format_size(ram), seconds_since(tb),
             md::format_size(machine.model_bytes()));

  auto report = [&](const std::vector<std::string>& v, std::uint64_t at) {
    if (v.empty()) return;
    res.pass = false;
    fmt::print("[{}] FAIL: Machine::check() after {} events: {} violation(s)\n", policy, at, v.size());
    for (std::size_t i = 0; i < v.size() && i < 20; ++i) fmt::print("    {}\n", v[i]);
  };
  auto check = [&](std::uint64_t at) {
    const auto t0 = Clock::now();
    const double c0 = cpu_seconds();
    std::vector<std::string> v = machine.check();
    res.check_cpu += cpu_seconds() - c0;
    res.check_seconds += seconds_since(t0);
    ++res.checks;
    report(v, at);
  };

  // One check up front: what it costs decides how often to check.
  check(0);
  const double one_check_cpu = res.check_cpu;
  const double one_check_wall = res.check_seconds;
  fmt::print("[{}] one Machine::check() takes {:.3f} s of CPU ({:.3f} s of wall clock)\n", policy, one_check_cpu,
             res.check_seconds);

  md::workload::WorkloadConfig wc;
  wc.events = events;
  wc.seed = seed;
  wc.secret_share = 0.30;
  wc.kernel_share = 0.25;
  wc.map_exclusive_share = 0.05;
  wc.rox_share = 0.05;
  wc.guest_share = 0.05;  // user allocations: the remaining 0.30
  wc.guests = 4;
  wc.guest_pages = 65536;
  wc.fork_probability = 0.1;
  wc.fd_pass_probability = 0.1;
  wc.secret_hold_turns = 20;
  wc.min_secret_file_pages = 1;
  wc.wp_page_tables = true;
  md::workload::SyntheticWorkload w(machine, wc);
  CpaDriver cpa(machine, seed);

  // Unless --check-every is given, the interval follows the measured rates:
  // a check every K events, with K such that checks take about a quarter of
  // the CPU time (a check walks every frame: on 1 TiB it costs seconds), but
  // at least four checks inside the run and none closer than 100,000 events.
  auto interval = [&](std::uint64_t done, double workload_cpu) -> std::uint64_t {
    if (check_every) return check_every;
    const double rate = workload_cpu > 0.05 ? static_cast<double>(done) / workload_cpu : 1e7;
    const auto k = static_cast<std::uint64_t>(rate * (res.check_cpu / static_cast<double>(res.checks)) * 3.0);
    return std::clamp<std::uint64_t>(k, 100'000, std::max<std::uint64_t>(events / 5, 100'000));
  };
  std::uint64_t every = interval(0, 0);
  fmt::print("[{}] {} events; Machine::check() every {} events{}\n", policy, events, every,
             check_every ? "" : " to start with (then from the measured rates)");

  std::uint64_t next_check = every;
  std::uint64_t next_progress = events / 10;
  const auto t0 = Clock::now();
  const double cpu0 = cpu_seconds();
  md::workload::Rng pick(seed ^ 0x5157u);
  struct Stop {};
  md::workload::WorkloadResult wr;
  try {
    wr = w.run([&](std::uint64_t ev) {
    if (o.cpa_share > 0 && pick.uniform() < o.cpa_share) cpa.step();
    if (ev >= next_check) {
      check(ev);
      next_check = ev + interval(ev, cpu_seconds() - cpu0 - (res.check_cpu - one_check_cpu));
      if (!res.pass) {
        wr.events = ev;
        throw Stop{};  // the first failure says enough
      }
    }
    if (ev >= next_progress && events >= 10) {
      next_progress += events / 10;
      fmt::print("[{}] {:>3}%: {} events, {} checks, {:.0f} s\n", policy, ev * 100 / events, ev, res.checks,
                 seconds_since(t0));
      std::fflush(stdout);
    }
    });
  } catch (const Stop&) {
    fmt::print("[{}] FAIL: stopped after the first failed check\n", policy);
    fmt::print("[{}] FAIL\n", policy);
    return res;
  }
  res.run_seconds = seconds_since(t0) - (res.check_seconds - one_check_wall);
  res.run_cpu = cpu_seconds() - cpu0 - (res.check_cpu - one_check_cpu);
  res.events = wr.events;
  cpa.finish();
  check(wr.events);
  fmt::print("[{}] {} events in {:.1f} s of CPU ({:.1f} s of wall clock), checks excluded: {:.2f} M events per CPU "
             "second ({:.2f} M per wall-clock second)\n",
             policy, wr.events, res.run_cpu, res.run_seconds, static_cast<double>(wr.events) / res.run_cpu / 1e6,
             static_cast<double>(wr.events) / res.run_seconds / 1e6);
  fmt::print("[{}] {} checks: {:.1f} s of CPU in all, {:.2f} s each ({:.1f} s of wall clock in all)\n", policy,
             res.checks, res.check_cpu, res.check_cpu / static_cast<double>(res.checks), res.check_seconds);
  fmt::print("[{}] secret faults {}, frees {}, OOM {}, SIGBUS {}, mmap refused {}, forks {}, fd passes {}; "
             "kernel {}/{}, user {}/{} (allocs/frees), failed allocs {}; wp tables {}/{} ({} failed)\n",
             policy, wr.secret_faults, wr.secret_frees, wr.secret_ooms, wr.secret_sigbus, wr.mmap_failures, wr.forks,
             wr.fd_passes, wr.kernel_allocs, wr.kernel_frees, wr.user_allocs, wr.user_frees, wr.alloc_failures,
             wr.wp_tables_allocated, wr.wp_tables_freed, wr.wp_table_failures);
  fmt::print("[{}] MAP_EXCLUSIVE pages {}/{} ({} failed); ROX cache loads {}/{} ({} failed); guest_memfd folios "
             "{}/{} ({} failed)\n",
             policy, wr.exclusive_faults, wr.exclusive_frees, wr.exclusive_failures, wr.rox_loads, wr.rox_unloads,
             wr.rox_failures, wr.guest_faults, wr.guest_frees, wr.guest_failures);
  const auto& c = machine.dmap().counters();
  fmt::print("[{}] CPA driver: {} calls, {} failed splits, {} failed allocs, {} pages kept unrestorable; "
             "direct map: 4k {} kB, 2M {} kB, 1G {} kB, level-2 splits {}, level-3 splits {}, collapses {}/{}\n",
             policy, cpa.calls(), cpa.cpa_failures(), cpa.alloc_failures(), cpa.stuck(), c.direct_map_4k_kb(),
             c.direct_map_2m_kb(), c.direct_map_1g_kb(), c.level2_splits, c.level3_splits, c.level2_collapses,
             c.level3_collapses);
  fmt::print("[{}] {}\n", policy, res.pass ? "PASS" : "FAIL");
  std::fflush(stdout);
  return res;
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // progress shows as it happens, even into a file
  Options o;
  CLI::App app{"The kernel model under load: random operation sequences with Machine::check() along the way."};
  app.add_option("--ram", o.ram, "RAM of the machine (e.g. 1TiB, 64GiB)")->capture_default_str();
  app.add_option("--events", o.events, "page alloc/free events per policy")->capture_default_str();
  app.add_option("--policy", o.policies, "policy to run, or `all` (repeatable)")->capture_default_str();
  app.add_option("--collapse", o.collapse, "collapse mode: none, rox-only, on-restore, scanner")
      ->capture_default_str();
  app.add_option("--check-every", o.check_every,
                 "events between two Machine::check() calls (0: about 5% of the run's time)")
      ->capture_default_str();
  app.add_option("--seed", o.seed, "seed of the workload")->capture_default_str();
  app.add_option("--cpus", o.cpus, "CPUs of the machine")->capture_default_str()->check(CLI::Range(1u, 256u));
  app.add_option("--cpa-share", o.cpa_share, "fraction of steps followed by a CPA call of the module loader")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  std::uint64_t ram = 0;
  if (!md::parse_size(o.ram, ram)) {
    std::fprintf(stderr, "exmem_model_soak: --ram \"%s\": expected a size such as 1TiB or 64GiB\n", o.ram.c_str());
    return 2;
  }
  std::uint64_t events = 0, check_every = 0, seed = 0;
  try {
    events = parse_count("--events", o.events);
    check_every = parse_count("--check-every", o.check_every);
    seed = parse_count("--seed", o.seed);
    (void)md::parse_collapse_mode(o.collapse);
  } catch (const CLI::ValidationError& e) {
    std::fprintf(stderr, "exmem_model_soak: %s\n", e.what());
    return 2;
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "exmem_model_soak: --collapse: %s\n", e.what());
    return 2;
  }
  std::vector<std::string> policies;
  const auto& reg = md::policy::Registry::builtin();
  for (const std::string& p : o.policies) {
    if (p == "all") {
      for (const std::string& n : reg.names()) policies.push_back(n);
    } else if (reg.find(p)) {
      policies.push_back(p);
    } else {
      std::string known;
      for (const std::string& n : reg.names()) known += (known.empty() ? "" : ", ") + n;
      std::fprintf(stderr, "exmem_model_soak: --policy \"%s\": expected one of %s, or all\n", p.c_str(),
                   known.c_str());
      return 2;
    }
  }

  bool pass = true;
  const auto t0 = Clock::now();
  for (const std::string& p : policies) {
    try {
      RunResult r = soak(p, ram, events, check_every, seed, o);
      pass = pass && r.pass;
    } catch (const std::exception& e) {
      fmt::print("[{}] FAIL: {}\n", p, e.what());
      pass = false;
    }
  }
  fmt::print("exmem_model_soak: {} polic{} on {}, {:.1f} s in all, peak RSS {}: {}\n", policies.size(),
             policies.size() == 1 ? "y" : "ies", md::format_size(ram), seconds_since(t0),
             md::format_size(peak_rss_bytes()), pass ? "PASS" : "FAIL");
  return pass ? 0 : 1;
}
