// `exmem trace record`, run as a real process: it needs root and tracefs, as
// CI has; without them the tests fail saying so.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

namespace {

struct CommandResult {
  int status = -1;
  std::string output;  // stdout and stderr
};

CommandResult run(const std::string& args) {
  CommandResult r;
  // LeakSanitizer cannot run under ptrace, which the recorder uses on its
  // command: in sanitizer builds, the traced program must not start it.
  std::string cmd = "ASAN_OPTIONS=detect_leaks=0 " + std::string(EXMEM_BIN) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) r.output.append(buf, n);
  int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

std::string temp_path(const char* name) {
  return (std::filesystem::temp_directory_path() / (std::string("exmem-") + std::to_string(getpid()) + "-" + name))
      .string();
}

void require_root() {
  ASSERT_EQ(geteuid(), 0u) << "exmem trace record needs root (tracefs and /proc/PID/pagemap); run the tests as root";
}

TEST(TraceRecord, WritesKmemEventsTheDirectMapCountersAndTheCommandsSecretPages) {
  require_root();
  std::string out = temp_path("holder.trace");
  CommandResult r = run("trace record -o " + out + " -- " + EXMEM_SECRET_HOLDER);
  ASSERT_EQ(r.status, 0) << r.output;
  std::string t = slurp(out);
  std::remove(out.c_str());
  EXPECT_EQ(t.rfind("# exmem-trace 1\n", 0), 0u) << t.substr(0, 200);
  EXPECT_NE(t.find("\n# start DirectMap4k_kB="), std::string::npos);
  EXPECT_NE(t.find(" level2_splits="), std::string::npos);
  EXPECT_NE(t.find("\n# end DirectMap4k_kB="), std::string::npos);
  EXPECT_NE(t.find("\n# exit_status: 0\n"), std::string::npos);
  // The program holds exmem memory when it exits: its pages are marked.
  EXPECT_NE(t.find("\n# secret pfn=0x"), std::string::npos) << "no secret page marked";
  // The event count in the footer is the number of event lines.
  size_t events = 0, allocs = 0;
  std::istringstream in(t);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    ++events;
    allocs += line.find("mm_page_alloc:") != std::string::npos;
  }
  EXPECT_GT(allocs, 0u) << "no mm_page_alloc event recorded";
  EXPECT_NE(t.find("\n# events: " + std::to_string(events) + "\n"), std::string::npos) << "counted " << events;
}

TEST(TraceRecord, ARecordingReplaysOnTheModelWithTheCommandsSecretPagesFaultedThroughMemfdSecret) {
  require_root();
  std::string out = temp_path("replay.trace");
  CommandResult rec = run("trace record -o " + out + " -- " + EXMEM_SECRET_HOLDER);
  ASSERT_EQ(rec.status, 0) << rec.output;
  const std::string t = slurp(out);
  std::size_t marked = 0;
  std::size_t events = 0;
  std::istringstream in(t);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("# secret ", 0) == 0) ++marked;
    if (!line.empty() && line[0] != '#') ++events;
  }
  ASSERT_GT(marked, 0u);
  CommandResult sim = run("sim --trace " + out + " --policy upstream --json");
  std::remove(out.c_str());
  ASSERT_EQ(sim.status, 0) << sim.output.substr(0, 2000);
  const auto j = nlohmann::json::parse(sim.output);
  const auto& tr = j["runs"][0]["trace"];
  EXPECT_EQ(tr["events"].get<std::size_t>(), events);
  EXPECT_EQ(tr["unknown_lines"], 0) << tr["first_unknown_lines"];
  EXPECT_EQ(tr["secret_marked"].get<std::size_t>(), marked);
  // Every marked page was faulted while the recording ran, so each is one
  // memfd_secret fault in the model (unless tracefs dropped events).
  if (j["workload"]["trace"]["lost_events"] == 0) {
    EXPECT_EQ(tr["secret_faults"].get<std::size_t>(), marked);
    EXPECT_EQ(tr["secret_files"], 1);
  } else {
    EXPECT_LE(tr["secret_faults"].get<std::size_t>(), marked);
  }
  EXPECT_GT(j["runs"][0]["direct_map"]["direct_map_level2_splits"].get<std::uint64_t>(), 0u);
}

TEST(TraceRecord, ExitsWithTheCommandsStatusAndRecordsIt) {
  require_root();
  std::string out = temp_path("status.trace");
  CommandResult r = run("trace record -o " + out + " -- sh -c 'exit 3'");
  EXPECT_EQ(r.status, 3) << r.output;
  EXPECT_NE(slurp(out).find("\n# exit_status: 3\n"), std::string::npos);
  std::remove(out.c_str());
}

// The traced command may exec again (nice, env, sh -c 'exec ...'): the
// recorder must not pass the SIGTRAP of that exec on, which killed it.
TEST(TraceRecord, ACommandThatExecsAgainRunsToItsEnd) {
  require_root();
  std::string out = temp_path("exec.trace");
  CommandResult r = run("trace record -o " + out + " -- nice -n 1 sh -c 'exec sh -c \"exit 4\"'");
  EXPECT_EQ(r.status, 4) << r.output;
  EXPECT_NE(slurp(out).find("\n# exit_status: 4\n"), std::string::npos);
  std::remove(out.c_str());
}

TEST(TraceRecord, LeavesNoTracefsInstanceBehind) {
  require_root();
  std::string out = temp_path("clean.trace");
  ASSERT_EQ(run("trace record -o " + out + " -- true").status, 0);
  std::remove(out.c_str());
  for (const char* root : {"/sys/kernel/tracing/instances", "/sys/kernel/debug/tracing/instances"}) {
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(root, ec))
      EXPECT_EQ(e.path().filename().string().rfind("exmem-", 0), std::string::npos) << e.path();
  }
}

// The scheduler's tracepoints in tracefs; without them --sched cannot work,
// and the test says so loudly rather than passing.
void require_sched_tracepoints() {
  bool found = false;
  for (const char* root : {"/sys/kernel/tracing", "/sys/kernel/debug/tracing"}) {
    if (std::filesystem::exists(std::string(root) + "/events/sched/sched_switch")) found = true;
  }
  if (!found) {
    std::fprintf(stderr,
                 "\n*** tracefs (or its sched:sched_switch event) is NOT available on this machine: "
                 "`exmem trace record --sched` cannot be tested here ***\n\n");
  }
  ASSERT_TRUE(found) << "tracefs with sched:sched_switch is unavailable (mount -t tracefs nodev /sys/kernel/tracing)";
}

// --sched around a program of two threads: the trace holds the scheduler's
// events, the command's pid and the kernel threads, `exmem trace sched` finds
// the program's mm with its two threads running, and the replay on the model
// skips the scheduler lines.
TEST(TraceRecord, SchedRecordsTheSchedulerAndTraceSchedFindsTheCommandsMmAndSimStillReplaysIt) {
  require_root();
  require_sched_tracepoints();
  std::string out = temp_path("sched.trace");
  CommandResult rec = run("trace record --sched -o " + out + " -- " + EXMEM_TWO_THREADS);
  ASSERT_EQ(rec.status, 0) << rec.output;
  const std::string t = slurp(out);
  EXPECT_NE(t.find("\n# sched: on\n"), std::string::npos);
  EXPECT_NE(t.find("\n# trace_clock: "), std::string::npos);
  EXPECT_NE(t.find(": sched_switch: "), std::string::npos);
  EXPECT_NE(t.find(": task_newtask: "), std::string::npos);
  EXPECT_NE(t.find(": sched_process_exec: "), std::string::npos);
  EXPECT_NE(t.find("\n# command_pid: "), std::string::npos);
  EXPECT_NE(t.find("\n# kthread pid=2\n"), std::string::npos) << "kthreadd not listed";

  CommandResult an = run("trace sched --json " + out);
  ASSERT_EQ(an.status, 0) << an.output.substr(0, 2000);
  const auto j = nlohmann::json::parse(an.output);
  EXPECT_EQ(j["cpus"].get<long>(), sysconf(_SC_NPROCESSORS_ONLN));
  ASSERT_GE(j["mms"].size(), 1u);
  const auto& m = j["mms"][0];
  EXPECT_EQ(m["pid"], j["command_pid"]);
  EXPECT_NE(m["how"].get<std::string>().find("exmem_two_threads"), std::string::npos) << m;
  EXPECT_EQ(m["tasks"], 3) << "the main thread and its two threads";
  // Two threads spinning for 0.2 s of wall time each (less CPU time when
  // other work shares the CPUs), and never more than the run's wall time.
  EXPECT_GT(m["running_seconds"].get<double>(), 0.05) << m;
  EXPECT_LT(m["running_seconds"].get<double>(), 2 * j["duration_seconds"].get<double>() + 0.01) << m;
  const double one = m["one_cpu_seconds"].get<double>();
  const double multi = m["multi_cpu_seconds"].get<double>();
  EXPECT_NEAR(one + 2 * multi, m["running_seconds"].get<double>(), 0.01) << "on at most 2 CPUs";
  EXPECT_LE(m["lazy"]["safe_seconds"].get<double>(), one + 1e-9);
  EXPECT_EQ(j["bad_sched_lines"], 0);

  CommandResult text = run("trace sched " + out);
  EXPECT_EQ(text.status, 0);
  EXPECT_NE(text.output.find("CPU"), std::string::npos) << text.output;

  CommandResult sim = run("sim --trace " + out + " --policy upstream --json");
  std::remove(out.c_str());
  ASSERT_EQ(sim.status, 0) << sim.output.substr(0, 2000);
  const auto s = nlohmann::json::parse(sim.output);
  const auto& tr = s["runs"][0]["trace"];
  EXPECT_EQ(tr["unknown_lines"], 0) << tr["first_unknown_lines"];
  EXPECT_GT(tr["sched_lines"].get<std::uint64_t>(), 0u);
  EXPECT_GT(tr["events"].get<std::uint64_t>(), 0u);
}

TEST(TraceSched, ATraceWithoutSchedulerEventsIsAnErrorSayingToRecordWithSched) {
  const std::string path = temp_path("plain.trace");
  std::ofstream(path) << "# exmem-trace 1\n# cpus: 2\n# exit_status: 0\n";
  CommandResult r = run("trace sched " + path);
  std::remove(path.c_str());
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("--sched"), std::string::npos) << r.output;
}

TEST(TraceRecord, AnUnwritableOutputIsAnErrorNamingTheFile) {
  CommandResult r = run("trace record -o /nonexistent-dir/x.trace -- true");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("/nonexistent-dir/x.trace"), std::string::npos) << r.output;
}

TEST(TraceRecord, AMissingCommandIsAnError) {
  CommandResult r = run("trace record -o " + temp_path("none.trace"));
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("command"), std::string::npos) << r.output;
}

}  // namespace
