// workload/: what drives the model (see README.md for what the folder owns).
// sched_analysis.hpp: which CPUs ran, and which held loaded, each mm of a
// recorded command, from the scheduler events of `exmem trace record --sched`
// (trace_format.hpp), for `exmem trace sched`. It asks when a TLB flush of
// the mm limited to the CPU issuing it (the VM_LOCAL_CPU proposal of 2018)
// would have been enough.
//
// The process tree: the root is the command's first process ("#
// command_pid"), from its first exec on (before it, it is the recorder's
// fork, running the recorder's code in a copy of its mm). A task_newtask printed by a task of the tree adds the child
// to it: with CLONE_VM (a thread, or vfork) it shares its parent's mm,
// without it the child has a new mm (fork). sched_process_exec gives the task
// a new mm (and moves it to the new pid when a thread exec'd). Tasks outside
// the tree are not followed.
//
// Running: a CPU runs an mm from a sched_switch to one of its tasks until the
// next sched_switch on that CPU (or an exec there). "One CPU" time is wall
// time during which exactly one CPU ran the mm; "two or more" likewise. Its
// running time is the sum over CPUs (CPU time). A single-CPU interval is a
// maximal stretch of one-CPU time (the CPU may change inside it only if
// the handover leaves no gap: a gap is an interval's end).
//
// Lazy TLB (x86): a CPU keeps the last user mm loaded (in CR3, and in its
// TLB, which the CPU also fills speculatively) when it switches to a task
// that has no mm of its own, and unloads it only when it switches to a task
// of another mm (switch_mm_irqs_off()). Here the tasks without an mm are the
// idle task (pid 0) and kernel threads: the "# kthread" lines (PF_KTHREAD in
// /proc/PID/stat at the start and the end of the recording) and the children
// kthreadd (pid 2) creates while it runs. Every other task outside the tree
// is taken to have an mm of its own and unloads. An mm is loaded on a CPU
// while a CPU runs it and then while that CPU stays lazy; when the mm's last
// task has exited (or exec'd away) and left its CPU, the mm is gone and
// unloaded everywhere (exit_mmap() has flushed it). "Safe" time is when one
// CPU runs the mm and no other CPU has it loaded: a flush issued from that CPU
// then needs no IPI even for a lazy CPU. (x86 skips lazy CPUs for ordinary
// flushes, as they catch up on switch: should_flush_tlb(), but not when page
// tables are freed, as their TLBs and paging-structure caches may still walk
// them: info->freed_tables.)
//
// Shares are of the mm's running (CPU) time, since a task issues a flush
// while it runs: one_cpu_ns / running_ns is the chance that a flush issued at
// a random moment of its CPU time came from the only CPU running it.
// Percentiles are nearest-rank: p50 is the ceil(n/2)-th of n sorted values.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "model/workload/trace_format.hpp"

namespace exmem::model::workload {

struct IntervalStats {
  std::uint64_t count = 0;
  std::uint64_t total_ns = 0;
  std::uint64_t median_ns = 0;  // nearest rank; 0 without intervals
  std::uint64_t p90_ns = 0;
};
IntervalStats interval_stats(std::vector<std::uint64_t> durations_ns);

struct SchedMmStats {
  int id = 0;           // 1, 2, ... in the order the mms appeared
  int pid = 0;          // the process that got it (fork, exec, or the command)
  std::string label;    // how it got it: "exec /usr/bin/gzip", "fork of 1234", ...
  unsigned tasks = 0;   // tasks that used it
  // Running.
  std::uint64_t running_ns = 0;    // sum over CPUs
  std::uint64_t one_cpu_ns = 0;    // wall time on exactly one CPU
  std::uint64_t multi_cpu_ns = 0;  // wall time on two or more
  IntervalStats one_cpu;           // the single-CPU intervals
  // Lazy TLB counted.
  std::uint64_t loaded_ns = 0;            // sum over CPUs of the time it was loaded
  std::uint64_t loaded_multi_cpu_ns = 0;  // wall time loaded on two or more CPUs
  std::uint64_t safe_ns = 0;              // wall time running on one CPU and loaded on no other
  IntervalStats safe;                     // the intervals of safe time
  std::vector<std::uint64_t> one_cpu_intervals_ns;  // in the order they ended
  std::vector<std::uint64_t> safe_intervals_ns;
};

struct SchedReport {
  std::string command;
  int command_pid = 0;
  unsigned cpus = 0;  // of the machine that recorded
  std::string trace_clock;
  double duration_seconds = 0;
  std::uint64_t lost_events = 0;
  std::uint64_t sched_events = 0;     // lines read
  std::uint64_t bad_sched_lines = 0;  // scheduler lines that did not parse
  std::uint64_t out_of_order = 0;     // events earlier than the one before (taken at that time)
  std::uint64_t first_ns = 0;         // first and last scheduler event
  std::uint64_t last_ns = 0;
  // What the CPUs did, summed over them, from each CPU's first switch to the
  // last event: how busy the machine was besides the command.
  std::uint64_t cpu_command_ns = 0;  // the command's tasks
  std::uint64_t cpu_idle_ns = 0;     // pid 0
  std::uint64_t cpu_kthread_ns = 0;  // kernel threads
  std::uint64_t cpu_other_ns = 0;    // every other task (other programs)
  std::vector<SchedMmStats> mms;  // in the order they appeared; only mms that ran
  SchedMmStats total;             // sums; intervals pooled over the mms
};

// The analysis as a stream of events in time order; finish() at the end.
class SchedAnalysis {
 public:
  SchedAnalysis(int command_pid, const std::vector<int>& kthreads);
  void on_event(const SchedEvent& e);
  // Closes what is open at the last event's time.
  SchedReport finish();

 private:
  struct Mm {
    SchedMmStats s;
    int running = 0;  // CPUs running it
    int loaded = 0;   // CPUs holding it loaded (running ones included)
    int live = 0;     // tasks that have it and have not exited or exec'd away
    bool gone = false;
    std::uint64_t last_ns = 0;
    std::uint64_t one_since = 0;
    std::uint64_t safe_since = 0;
    std::set<int> task_ids;
  };
  enum class Doing : std::uint8_t { Unknown, Command, Idle, Kthread, Other };
  struct Cpu {
    int running = -1;  // index into mms_, -1: a task outside the tree (or nothing known)
    int loaded = -1;
    Doing doing = Doing::Unknown;  // since `since`
    std::uint64_t since = 0;
  };
  void account(Cpu& k, std::uint64_t t, Doing next);
  std::uint64_t doing_ns_[5]{};
  int new_mm(int pid, std::string label);
  void advance(Mm& m, std::uint64_t t);
  void set_cpu(unsigned cpu, std::uint64_t t, int running, int loaded);
  void apply(int mm, std::uint64_t t, int drun, int dload);
  void maybe_gone(int mm, std::uint64_t t);
  bool lazy_task(int pid) const { return pid == 0 || kthreads_.count(pid) != 0; }
  Cpu& cpu(unsigned c);

  int root_;
  std::set<int> kthreads_;
  std::map<int, int> task_mm_;  // tid -> mm of the tree's live tasks
  std::vector<Mm> mms_;
  std::vector<Cpu> cpus_;
  std::uint64_t now_ = 0;
  bool started_ = false;
  bool started_root_ = false;
  std::uint64_t first_ = 0;
  std::uint64_t out_of_order_ = 0;
  std::uint64_t events_ = 0;
};

// Reads a trace recorded with --sched and analyses it (TraceError when it
// cannot be read, has no "# command_pid", or holds no scheduler event).
SchedReport analyse_sched_trace(const std::string& path);

}  // namespace exmem::model::workload
