// Tests of workload/sched_analysis and the scheduler lines of trace_format:
// the lines as this kernel prints them (sched_switch, task_newtask,
// sched_process_exec, sched_process_exit), and on small hand-written traces
// with every figure worked out by hand: two threads of one mm overlapping on
// two CPUs, a fork (a new mm) then exec (another), lazy TLB through idle and
// a kernel thread (x86's enter_lazy_tlb(): the CPU keeps the last user mm
// loaded; switch_mm_irqs_off() to another mm unloads it), and an mm gone when
// its last task exits (exit_mmap()).
#include "model/workload/sched_analysis.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "model/workload/trace_format.hpp"

namespace exmem::model::workload {
namespace {

constexpr std::uint64_t kUs = 1000;  // ns
constexpr std::uint64_t kBase = 1000;  // s: every timestamp is kBase + us

std::string ts(std::uint64_t us) { return fmt::format("{}.{:06}", kBase + us / 1'000'000, us % 1'000'000); }

std::string sw(unsigned cpu, std::uint64_t us, const std::string& prev, int prev_pid, const char* state,
               const std::string& next, int next_pid) {
  return fmt::format(
      "{:>16}-{:<7} [{:03}] d..2. {}: sched_switch: prev_comm={} prev_pid={} prev_prio=120 prev_state={} ==> "
      "next_comm={} next_pid={} next_prio=120\n",
      prev, prev_pid, cpu, ts(us), prev, prev_pid, state, next, next_pid);
}
std::string newtask(unsigned cpu, std::uint64_t us, const std::string& comm, int parent, int child,
                    std::uint64_t flags) {
  return fmt::format("{:>16}-{:<7} [{:03}] ..... {}: task_newtask: pid={} comm={} clone_flags={:x} oom_score_adj=0\n",
                     comm, parent, cpu, ts(us), child, comm, flags);
}
std::string exec(unsigned cpu, std::uint64_t us, const std::string& comm, int pid, int old_pid,
                 const std::string& file) {
  return fmt::format("{:>16}-{:<7} [{:03}] ..... {}: sched_process_exec: filename={} pid={} old_pid={}\n", comm, pid,
                     cpu, ts(us), file, pid, old_pid);
}
std::string exit_line(unsigned cpu, std::uint64_t us, const std::string& comm, int pid) {
  return fmt::format("{:>16}-{:<7} [{:03}] ..... {}: sched_process_exit: comm={} pid={} prio=120 group_dead=true\n",
                     comm, pid, cpu, ts(us), comm, pid);
}

constexpr std::uint64_t kThreadFlags = 0x3d0f00;  // pthread_create: CLONE_VM|CLONE_FS|CLONE_FILES|...
constexpr std::uint64_t kForkFlags = 0x1200011;   // fork(): SIGCHLD|CLONE_CHILD_SETTID|CLONE_CHILD_CLEARTID

// Feeds the lines through the parser to the analysis.
SchedReport analyse(int root, const std::string& lines, const std::vector<int>& kthreads = {}) {
  SchedAnalysis a(root, kthreads);
  std::size_t pos = 0;
  while (pos < lines.size()) {
    const std::size_t nl = lines.find('\n', pos);
    const std::string_view line(lines.data() + pos, nl - pos);
    pos = nl + 1;
    const std::optional<SchedEvent> e = parse_sched_line(line);
    EXPECT_TRUE(e.has_value()) << line;
    if (e) a.on_event(*e);
  }
  return a.finish();
}

const SchedMmStats& mm(const SchedReport& r, const std::string& label) {
  for (const auto& m : r.mms)
    if (m.label == label) return m;
  ADD_FAILURE() << "no mm " << label;
  static const SchedMmStats none;
  return none;
}

TEST(SchedLine, ReadsTheFourEventsAsThisKernelPrintsThem) {
  const auto s = parse_sched_line(
      "         cc1plus-6853    [000] d..2. 59672.965206: sched_switch: prev_comm=cc1plus prev_pid=6853 "
      "prev_prio=120 prev_state=R ==> next_comm=rcu_preempt next_pid=15 next_prio=120");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->kind, SchedEventKind::Switch);
  EXPECT_EQ(s->ns, 59672965206000u);
  EXPECT_EQ(s->cpu, 0u);
  EXPECT_EQ(s->pid, 6853);
  EXPECT_EQ(s->prev_pid, 6853);
  EXPECT_EQ(s->next_pid, 15);
  EXPECT_FALSE(s->prev_dead);
  EXPECT_EQ(s->name, "rcu_preempt");

  const auto n = parse_sched_line(
      "           exmem-7163    [001] ..... 59672.968907: task_newtask: pid=7171 comm=exmem clone_flags=1200000 "
      "oom_score_adj=0");
  ASSERT_TRUE(n);
  EXPECT_EQ(n->kind, SchedEventKind::NewTask);
  EXPECT_EQ(n->pid, 7163);
  EXPECT_EQ(n->child, 7171);
  EXPECT_EQ(n->clone_flags, 0x1200000u);
  EXPECT_EQ(n->cpu, 1u);

  const auto x = parse_sched_line(
      "           exmem-7171    [000] .N... 59672.976139: sched_process_exec: filename=/tmp/two_threads pid=7171 "
      "old_pid=7170");
  ASSERT_TRUE(x);
  EXPECT_EQ(x->kind, SchedEventKind::Exec);
  EXPECT_EQ(x->child, 7171);
  EXPECT_EQ(x->old_pid, 7170);
  EXPECT_EQ(x->name, "/tmp/two_threads");

  const auto e = parse_sched_line(
      "         cc1plus-7169    [001] ..... 59673.029158: sched_process_exit: comm=cc1plus pid=7169 prio=120 "
      "group_dead=true");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->kind, SchedEventKind::Exit);
  EXPECT_EQ(e->child, 7169);
  // Kernels before group_dead= print the same without it.
  const auto old = parse_sched_line("  sh-12 [001] ..... 5.000001: sched_process_exit: comm=sh pid=12 prio=120");
  ASSERT_TRUE(old);
  EXPECT_EQ(old->child, 12);
  EXPECT_EQ(old->ns, 5000001000u);
}

TEST(SchedLine, CommsWithSpacesAndADeadPrevAreRead) {
  const auto s = parse_sched_line(
      "  Web Content-900 [001] d..2. 10.5: sched_switch: prev_comm=Web Content prev_pid=900 prev_prio=120 "
      "prev_state=X ==> next_comm=my prev_pid=7 thing next_pid=42 next_prio=120");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->prev_pid, 900);
  EXPECT_EQ(s->next_pid, 42);
  EXPECT_TRUE(s->prev_dead);
  EXPECT_EQ(s->ns, 10'500'000'000u);
  EXPECT_EQ(s->name, "my prev_pid=7 thing");
}

TEST(SchedLine, KmemAndOtherLinesAreNotSchedulerLines) {
  const std::string kmem =
      "  cc1plus-2431 [000] ..... 100.000001: mm_page_alloc: page=00000000deadbeef pfn=0x10 order=0 "
      "migratetype=0 gfp_flags=GFP_KERNEL";
  EXPECT_FALSE(is_sched_line(kmem));
  EXPECT_FALSE(parse_sched_line(kmem));
  EXPECT_FALSE(is_sched_line("sched_switch: no prefix"));
  EXPECT_FALSE(is_sched_line("  a-1 [000] ..... 1.0: sched_wakeup: comm=a pid=1"));
  EXPECT_TRUE(is_sched_line("  a-1 [000] ..... 1.0: sched_switch: broken"));
  EXPECT_FALSE(parse_sched_line("  a-1 [000] ..... 1.0: sched_switch: broken"));
  EXPECT_FALSE(parse_sched_line("  a-1 [000] ..... 1: sched_process_exit: comm=a pid=1 prio=120"));  // no timestamp
}

TEST(IntervalStats, MedianAndP90AreNearestRank) {
  const IntervalStats s = interval_stats({5, 1, 4, 2, 3, 10, 9, 8, 7, 6});
  EXPECT_EQ(s.count, 10u);
  EXPECT_EQ(s.total_ns, 55u);
  EXPECT_EQ(s.median_ns, 5u);  // the 5th of 10
  EXPECT_EQ(s.p90_ns, 9u);     // the 9th
  const IntervalStats one = interval_stats({7});
  EXPECT_EQ(one.median_ns, 7u);
  EXPECT_EQ(one.p90_ns, 7u);
  EXPECT_EQ(interval_stats({}).median_ns, 0u);
}

// Two threads of one mm on two CPUs:
//   cpu0: 100 runs 0-5 ms, idle (lazy) 5-10, 100 again 10-14
//   cpu1: idle until 2, 101 (the thread) 2-9, then bash (another mm) 9-14
TEST(SchedAnalysis, TwoThreadsOfOneMmOverlappingOnTwoCpus) {
  std::string t = exec(0, 0, "app", 100, 100, "/usr/bin/app");
  t += newtask(0, 1000, "app", 100, 101, kThreadFlags);
  t += sw(1, 2000, "swapper/1", 0, "R", "app", 101);
  t += sw(0, 5000, "app", 100, "S", "swapper/0", 0);
  t += sw(1, 9000, "app", 101, "S", "bash", 555);
  t += sw(0, 10000, "swapper/0", 0, "R", "app", 100);
  t += sw(1, 14000, "bash", 555, "S", "swapper/1", 0);
  const SchedReport r = analyse(100, t);
  ASSERT_EQ(r.mms.size(), 1u);
  const SchedMmStats& m = r.mms[0];
  EXPECT_EQ(m.label, "exec /usr/bin/app");
  EXPECT_EQ(m.pid, 100);
  EXPECT_EQ(m.tasks, 2u);
  // Running: 1 CPU 0-2, 2 CPUs 2-5, 1 CPU 5-9, none 9-10, 1 CPU 10-14.
  EXPECT_EQ(m.running_ns, 16000 * kUs);
  EXPECT_EQ(m.one_cpu_ns, 10000 * kUs);
  EXPECT_EQ(m.multi_cpu_ns, 3000 * kUs);
  EXPECT_EQ(m.one_cpu.count, 3u);  // 0-2, 5-9, 10-14
  EXPECT_EQ(m.one_cpu.median_ns, 4000 * kUs);
  EXPECT_EQ(m.one_cpu.p90_ns, 4000 * kUs);
  EXPECT_EQ((m.one_cpu_intervals_ns), (std::vector<std::uint64_t>{2000 * kUs, 4000 * kUs, 4000 * kUs}));
  // Loaded: cpu0 keeps the mm while idle 5-10, so 5-9 (the thread running on
  // cpu1) is on one CPU but not safe; bash on cpu1 unloads it at 9.
  EXPECT_EQ(m.loaded_ns, 21000 * kUs);
  EXPECT_EQ(m.loaded_multi_cpu_ns, 7000 * kUs);
  EXPECT_EQ(m.safe_ns, 6000 * kUs);
  EXPECT_EQ(m.safe_intervals_ns, (std::vector<std::uint64_t>{2000 * kUs, 4000 * kUs}));
  EXPECT_EQ(m.safe.median_ns, 2000 * kUs);
  EXPECT_EQ(m.safe.p90_ns, 4000 * kUs);
  EXPECT_EQ(r.total.running_ns, m.running_ns);
  EXPECT_EQ(r.total.one_cpu.count, 3u);
  // What the CPUs did from their first switch on: cpu0 idle 5-10 and the
  // command 10-14; cpu1 the command 2-9 and bash 9-14.
  EXPECT_EQ(r.cpu_command_ns, 11000 * kUs);
  EXPECT_EQ(r.cpu_idle_ns, 5000 * kUs);
  EXPECT_EQ(r.cpu_other_ns, 5000 * kUs);
  EXPECT_EQ(r.cpu_kthread_ns, 0u);
}

// sh (200) forks 201 (a new mm), which execs gzip (another); both exit.
TEST(SchedAnalysis, AForkIsANewMmAndExecAnotherAndAnExitedMmIsUnloaded) {
  std::string t = exec(0, 0, "sh", 200, 200, "/bin/sh");
  t += newtask(0, 1000, "sh", 200, 201, kForkFlags);
  t += sw(1, 2000, "swapper/1", 0, "R", "sh", 201);
  t += exec(1, 3000, "gzip", 201, 201, "/usr/bin/gzip");
  t += sw(0, 4000, "sh", 200, "S", "swapper/0", 0);
  t += exit_line(1, 6000, "gzip", 201);
  t += sw(1, 6500, "gzip", 201, "X", "swapper/1", 0);
  t += sw(0, 7000, "swapper/0", 0, "R", "sh", 200);
  t += sw(1, 7500, "swapper/1", 0, "R", "cron", 300);
  t += exit_line(0, 8000, "sh", 200);
  t += sw(0, 8000, "sh", 200, "X", "swapper/0", 0);
  const SchedReport r = analyse(200, t);
  ASSERT_EQ(r.mms.size(), 3u);
  const SchedMmStats& sh = mm(r, "exec /bin/sh");
  EXPECT_EQ(sh.pid, 200);
  EXPECT_EQ(sh.running_ns, 5000 * kUs);  // 0-4 and 7-8
  EXPECT_EQ(sh.one_cpu_ns, 5000 * kUs);
  EXPECT_EQ(sh.multi_cpu_ns, 0u);
  EXPECT_EQ(sh.one_cpu_intervals_ns, (std::vector<std::uint64_t>{4000 * kUs, 1000 * kUs}));
  EXPECT_EQ(sh.loaded_ns, 8000 * kUs);  // cpu0 held it, idle included, from 0 to its exit
  EXPECT_EQ(sh.safe_ns, 5000 * kUs);
  const SchedMmStats& fork = mm(r, "fork of 200");
  EXPECT_EQ(fork.pid, 201);
  EXPECT_EQ(fork.running_ns, 1000 * kUs);  // 2-3: exec replaced it
  EXPECT_EQ(fork.loaded_ns, 1000 * kUs);   // gone at the exec
  const SchedMmStats& gzip = mm(r, "exec /usr/bin/gzip");
  EXPECT_EQ(gzip.pid, 201);
  EXPECT_EQ(gzip.running_ns, 3500 * kUs);  // 3-6.5, exiting included
  // Gone when its last task left the CPU at 6.5, though cpu1 then idled until 7.5.
  EXPECT_EQ(gzip.loaded_ns, 3500 * kUs);
  EXPECT_EQ(gzip.safe_ns, 3500 * kUs);
  EXPECT_EQ(r.total.running_ns, 9500 * kUs);
  EXPECT_EQ(r.total.one_cpu.count, 4u);
  EXPECT_EQ(r.total.tasks, 3u);
}

// One task migrating from cpu0 to cpu1: cpu0 idles (lazy), runs a kernel
// thread (still lazy), then a task of another mm (unloaded).
TEST(SchedAnalysis, LazyTlbThroughIdleAndAKernelThreadUntilAnotherMmRuns) {
  std::string t = exec(0, 0, "srv", 300, 300, "/srv");
  t += sw(0, 1000, "srv", 300, "S", "swapper/0", 0);
  t += sw(1, 1500, "swapper/1", 0, "R", "srv", 300);
  t += sw(0, 2500, "swapper/0", 0, "R", "kworker/0:1", 40);
  t += sw(0, 3000, "kworker/0:1", 40, "I", "cron", 555);
  t += sw(1, 5000, "srv", 300, "S", "swapper/1", 0);
  const SchedReport r = analyse(300, t, {40});
  ASSERT_EQ(r.mms.size(), 1u);
  const SchedMmStats& m = r.mms[0];
  EXPECT_EQ(m.running_ns, 4500 * kUs);
  EXPECT_EQ(m.one_cpu_ns, 4500 * kUs);  // never on two CPUs at once
  EXPECT_EQ(m.one_cpu_intervals_ns, (std::vector<std::uint64_t>{1000 * kUs, 3500 * kUs}));
  // cpu0 holds it lazily 1-3 (idle, then kworker): 1.5-3 is not safe.
  EXPECT_EQ(m.loaded_multi_cpu_ns, 1500 * kUs);
  EXPECT_EQ(m.safe_ns, 3000 * kUs);
  EXPECT_EQ(m.safe_intervals_ns, (std::vector<std::uint64_t>{1000 * kUs, 2000 * kUs}));

  // Without knowing 40 is a kernel thread, it is another mm: it unloads at 2.5.
  const SchedReport u = analyse(300, t);
  EXPECT_EQ(u.mms[0].loaded_multi_cpu_ns, 1000 * kUs);
  EXPECT_EQ(u.mms[0].safe_ns, 3500 * kUs);
  // kthreadd's (pid 2) children are kernel threads too.
  const SchedReport k = analyse(300, newtask(1, 0, "kthreadd", 2, 40, 0x800100) + t);
  EXPECT_EQ(k.mms[0].safe_ns, 3000 * kUs);
}

TEST(SchedAnalysis, TasksOutsideTheCommandsTreeAreNotCounted) {
  // 400 is the command; 401 is forked by someone else (cron), and a thread of 401 too.
  std::string t = exec(0, 0, "app", 400, 400, "/app");
  t += newtask(1, 100, "cron", 300, 401, kForkFlags);
  t += newtask(1, 200, "cron", 401, 402, kThreadFlags);
  t += sw(1, 300, "cron", 401, "S", "cron", 402);
  t += sw(0, 1000, "app", 400, "S", "swapper/0", 0);
  const SchedReport r = analyse(400, t);
  ASSERT_EQ(r.mms.size(), 1u);
  EXPECT_EQ(r.mms[0].running_ns, 1000 * kUs);
  // The command's pid before its first exec is the recorder's fork: not counted.
  const SchedReport before =
      analyse(400, newtask(0, 0, "exmem", 399, 400, 0x1200000) + sw(1, 0, "swapper/1", 0, "R", "exmem", 400) + t);
  EXPECT_EQ(before.mms.size(), 1u);
}

TEST(SchedAnalysis, AThreadThatExecsTakesTheLeadersPidAndANewMm) {
  std::string t = exec(0, 0, "app", 500, 500, "/app");
  t += newtask(0, 100, "app", 500, 501, kThreadFlags);
  t += sw(0, 200, "app", 500, "S", "app", 501);
  t += exit_line(1, 300, "app", 500);  // de_thread() kills the leader
  t += exec(0, 400, "app", 500, 501, "/bin/true");
  t += sw(0, 1000, "true", 500, "S", "swapper/0", 0);
  const SchedReport r = analyse(500, t);
  ASSERT_EQ(r.mms.size(), 2u);
  EXPECT_EQ(mm(r, "exec /app").running_ns, 400 * kUs);
  EXPECT_EQ(mm(r, "exec /bin/true").running_ns, 600 * kUs);
  EXPECT_EQ(mm(r, "exec /bin/true").pid, 500);
}

// A trace file: the header and footer lines, kmem lines between, read whole.
TEST(SchedAnalysis, ReadsARecordedFileWithItsCommandPidAndKernelThreads) {
  const std::string path =
      (std::filesystem::temp_directory_path() / fmt::format("exmem-sched-{}.trace", ::getpid())).string();
  std::string t = trace_header("/srv", 2, 1024, " DirectMap4k_kB=4");
  t += trace_sched_lines("mono");
  t += exec(0, 0, "srv", 300, 300, "/srv");
  t += "  srv-300 [000] ..... 1000.000500: mm_page_alloc: page=00000000deadbeef pfn=0x10 order=0 migratetype=0 "
       "gfp_flags=GFP_KERNEL\n";
  t += sw(0, 1000, "srv", 300, "S", "swapper/0", 0);
  t += sw(1, 1500, "swapper/1", 0, "R", "srv", 300);
  t += sw(0, 2500, "swapper/0", 0, "R", "kworker/0:1", 40);
  t += sw(0, 3000, "kworker/0:1", 40, "I", "cron", 555);
  t += sw(1, 5000, "srv", 300, "S", "swapper/1", 0);
  t += trace_end_line(" DirectMap4k_kB=4");
  t += trace_command_pid_line(300);
  t += trace_kthread_line(2);
  t += trace_kthread_line(40);
  t += trace_footer(0, 0.005, 7, 0);
  std::ofstream(path) << t;
  const SchedReport r = analyse_sched_trace(path);
  std::filesystem::remove(path);
  EXPECT_EQ(r.cpus, 2u);
  EXPECT_EQ(r.command_pid, 300);
  EXPECT_EQ(r.command, "/srv");
  EXPECT_EQ(r.trace_clock, "mono");
  EXPECT_EQ(r.sched_events, 6u);
  ASSERT_EQ(r.mms.size(), 1u);
  EXPECT_EQ(r.mms[0].safe_ns, 3000 * kUs);  // 40 is a kernel thread, from the footer
}

TEST(SchedAnalysis, ATraceWithoutTheCommandsPidOrSchedulerEventsIsAnErrorSayingHowToRecordOne) {
  const std::string path =
      (std::filesystem::temp_directory_path() / fmt::format("exmem-sched-none-{}.trace", ::getpid())).string();
  std::ofstream(path) << trace_header("x", 2, 1, "") << trace_footer(0, 1, 0, 0);
  try {
    analyse_sched_trace(path);
    ADD_FAILURE() << "no error";
  } catch (const TraceError& e) {
    EXPECT_NE(std::string(e.what()).find("--sched"), std::string::npos) << e.what();
  }
  std::ofstream(path) << trace_header("x", 2, 1, "") << trace_command_pid_line(5) << trace_footer(0, 1, 0, 0);
  try {
    analyse_sched_trace(path);
    ADD_FAILURE() << "no error";
  } catch (const TraceError& e) {
    EXPECT_NE(std::string(e.what()).find("no scheduler event"), std::string::npos) << e.what();
  }
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace exmem::model::workload
