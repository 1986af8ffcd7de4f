// `exmem trace sched FILE`: how long each mm of a command recorded with
// `exmem trace record --sched` ran on one CPU only, and was loaded on one CPU
// only (lazy TLB counted): when a TLB flush limited to the local CPU (the
// VM_LOCAL_CPU proposal) would have been enough. The analysis is the model's
// (model/workload/sched_analysis.hpp); this file prints it.
#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "model/workload/sched_analysis.hpp"

namespace exmem::cli {

namespace {

namespace wl = exmem::model::workload;

double seconds(std::uint64_t ns) { return static_cast<double>(ns) * 1e-9; }
double share(std::uint64_t part, std::uint64_t whole) {
  return whole == 0 ? 0.0 : static_cast<double>(part) / static_cast<double>(whole);
}

nlohmann::json intervals_json(const wl::IntervalStats& s) {
  return {{"count", s.count},
          {"total_seconds", seconds(s.total_ns)},
          {"median_seconds", seconds(s.median_ns)},
          {"p90_seconds", seconds(s.p90_ns)}};
}

nlohmann::json mm_json(const wl::SchedMmStats& m) {
  nlohmann::json j;
  if (m.id != 0) {
    j["id"] = m.id;
    j["pid"] = m.pid;
  }
  j["how"] = m.label;
  j["tasks"] = m.tasks;
  j["running_seconds"] = seconds(m.running_ns);
  j["one_cpu_seconds"] = seconds(m.one_cpu_ns);
  j["multi_cpu_seconds"] = seconds(m.multi_cpu_ns);
  j["share_on_one_cpu"] = share(m.one_cpu_ns, m.running_ns);
  j["one_cpu_intervals"] = intervals_json(m.one_cpu);
  j["lazy"] = {{"loaded_seconds", seconds(m.loaded_ns)},
               {"loaded_multi_cpu_seconds", seconds(m.loaded_multi_cpu_ns)},
               {"safe_seconds", seconds(m.safe_ns)},
               {"share_safe", share(m.safe_ns, m.running_ns)},
               {"safe_intervals", intervals_json(m.safe)}};
  return j;
}

std::string cpus_note(unsigned cpus) {
  if (cpus == 0) return "the trace does not say how many CPUs the machine had";
  if (cpus <= 2) {
    return fmt::format(
        "this machine has only {} CPU{}: an mm cannot spread wider, and it shares them with every other "
        "task, so \"on one CPU only\" is far more likely here than on a larger machine",
        cpus, cpus == 1 ? "" : "s");
  }
  return fmt::format("{} CPUs", cpus);
}

std::string duration(std::uint64_t ns) {
  if (ns == 0) return "-";
  if (ns < 1'000'000) return fmt::format("{:.0f}us", static_cast<double>(ns) * 1e-3);
  if (ns < 1'000'000'000) return fmt::format("{:.1f}ms", static_cast<double>(ns) * 1e-6);
  return fmt::format("{:.2f}s", static_cast<double>(ns) * 1e-9);
}

void print_text(const wl::SchedReport& r, const std::string& path) {
  std::printf("%s: %s (pid %d), %.3f s recorded, clock %s\n", path.c_str(), r.command.c_str(), r.command_pid,
              r.duration_seconds, r.trace_clock.empty() ? "unknown" : r.trace_clock.c_str());
  std::printf("machine: %s\n", cpus_note(r.cpus).c_str());
  std::printf("scheduler events: %llu; events lost by tracefs: %llu%s\n",
              static_cast<unsigned long long>(r.sched_events), static_cast<unsigned long long>(r.lost_events),
              r.lost_events ? " (the figures miss some switches: raise --buffer-kb)" : "");
  const std::uint64_t all = r.cpu_command_ns + r.cpu_idle_ns + r.cpu_kthread_ns + r.cpu_other_ns;
  std::printf("the CPUs' time: the command %.1f%%, other programs %.1f%%, kernel threads %.1f%%, idle %.1f%%%s\n",
              100 * share(r.cpu_command_ns, all), 100 * share(r.cpu_other_ns, all),
              100 * share(r.cpu_kthread_ns, all), 100 * share(r.cpu_idle_ns, all),
              share(r.cpu_other_ns, all) > 0.2 ? " (other programs competed for the CPUs)" : "");
  if (r.bad_sched_lines || r.out_of_order)
    std::printf("scheduler lines not understood: %llu; events out of time order: %llu\n",
                static_cast<unsigned long long>(r.bad_sched_lines), static_cast<unsigned long long>(r.out_of_order));
  std::printf("\n%-4s %-7s %-28s %5s %9s %8s %8s %8s %9s %8s %8s %9s %8s %8s\n", "mm", "pid", "how", "tasks",
              "running", "1 CPU", "2+ CPUs", "share1", "intervals", "median", "p90", "safe", "share", "median");
  std::printf("%-4s %-7s %-28s %5s %9s %8s %8s %8s %9s %8s %8s %9s %8s %8s\n", "", "", "", "", "s (CPU)", "s", "s",
              "", "1 CPU", "", "", "(lazy) s", "safe", "safe");
  auto row = [](const std::string& id, const std::string& pid, const wl::SchedMmStats& m) {
    std::string how = m.label;
    if (how.size() > 28) how = "..." + how.substr(how.size() - 25);
    std::printf("%-4s %-7s %-28s %5u %9.3f %8.3f %8.3f %7.1f%% %9llu %8s %8s %9.3f %7.1f%% %8s\n", id.c_str(),
                pid.c_str(), how.c_str(), m.tasks, seconds(m.running_ns), seconds(m.one_cpu_ns),
                seconds(m.multi_cpu_ns), 100 * share(m.one_cpu_ns, m.running_ns),
                static_cast<unsigned long long>(m.one_cpu.count), duration(m.one_cpu.median_ns).c_str(),
                duration(m.one_cpu.p90_ns).c_str(), seconds(m.safe_ns), 100 * share(m.safe_ns, m.running_ns),
                duration(m.safe.median_ns).c_str());
  };
  // The mms that ran longest; all of them are in --json.
  std::vector<const wl::SchedMmStats*> order;
  for (const auto& m : r.mms) order.push_back(&m);
  std::stable_sort(order.begin(), order.end(),
                   [](const auto* a, const auto* b) { return a->running_ns > b->running_ns; });
  constexpr std::size_t kShown = 15;
  for (std::size_t i = 0; i < order.size() && i < kShown; ++i)
    row(std::to_string(order[i]->id), std::to_string(order[i]->pid), *order[i]);
  if (order.size() > kShown) std::printf("... %zu more mms (see --json)\n", order.size() - kShown);
  row("all", "", r.total);
  std::printf(
      "\nshare1: of the mm's CPU time, the part during which no other CPU ran it (a flush issued then\n"
      "could have stayed local if nothing else had the mm loaded). safe: one CPU ran it and no other CPU\n"
      "even held it loaded (lazy TLB: a CPU that switched to idle or a kernel thread keeps the last user\n"
      "mm loaded until it runs a task of another mm), which is when a local-only flush really suffices.\n");
}

}  // namespace

void add_trace_sched(CLI::App& trace) {
  auto* cmd = trace.add_subcommand(
      "sched", "How long each mm of a command recorded with --sched ran, and was loaded, on one CPU only");
  struct Opts {
    std::string file;
    bool json = false;
  };
  auto opts = std::make_shared<Opts>();
  cmd->add_option("file", opts->file, "A trace written by `exmem trace record --sched`")->required();
  cmd->add_flag("--json", opts->json, "Print the figures as JSON (every mm)");
  cmd->footer(
      "Follows the mms of the recorded command's process tree: its first process, children forked\n"
      "without CLONE_VM (a new mm), threads and vfork children (CLONE_VM: the same mm), and exec (a new\n"
      "mm). For each mm and in total: its running time (summed over CPUs), the wall time during which\n"
      "exactly one CPU ran it against two or more, the single-CPU intervals (count, median, p90), and the\n"
      "same with lazy TLB counted: the idle task and kernel threads keep the last user mm loaded, a\n"
      "task of another mm unloads it; \"safe\" is when one CPU runs the mm and no other holds it loaded.\n"
      "Shares are of the mm's CPU time. The machine's CPU count is printed: with few CPUs, one CPU only\n"
      "is much more likely.\n\n"
      "Examples:\n"
      "  sudo exmem trace record --sched -o build.trace -- make -j2\n"
      "  exmem trace sched build.trace\n"
      "  exmem trace sched build.trace --json | jq .total");
  cmd->callback([opts] {
    wl::SchedReport r;
    try {
      r = wl::analyse_sched_trace(opts->file);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "exmem trace sched: %s\n", e.what());
      throw CLI::RuntimeError(2);
    }
    if (!opts->json) {
      print_text(r, opts->file);
      return;
    }
    nlohmann::json j;
    j["file"] = opts->file;
    j["command"] = r.command;
    j["command_pid"] = r.command_pid;
    j["cpus"] = r.cpus;
    j["cpus_note"] = cpus_note(r.cpus);
    j["trace_clock"] = r.trace_clock;
    j["duration_seconds"] = r.duration_seconds;
    j["sched_events"] = r.sched_events;
    j["lost_events"] = r.lost_events;
    j["bad_sched_lines"] = r.bad_sched_lines;
    j["out_of_order_events"] = r.out_of_order;
    j["cpu_seconds"] = {{"command", seconds(r.cpu_command_ns)},
                        {"idle", seconds(r.cpu_idle_ns)},
                        {"kernel_threads", seconds(r.cpu_kthread_ns)},
                        {"other_tasks", seconds(r.cpu_other_ns)}};
    j["mms"] = nlohmann::json::array();
    for (const auto& m : r.mms) j["mms"].push_back(mm_json(m));
    j["total"] = mm_json(r.total);
    j["total"]["mms"] = r.mms.size();
    std::printf("%s\n", j.dump(2).c_str());
  });
}

}  // namespace exmem::cli
