// workload/: what drives the model (see synthetic.hpp for what the folder owns).
// trace_format.hpp: the trace file `exmem trace record` writes and
// `exmem sim --trace` replays: its header and footer, the grammar of its event
// lines, and the helpers that write its own lines.
//
// The file is text. Lines starting with '#' are exmem's own; every other line
// is a tracefs event line exactly as trace_pipe printed it:
//   # exmem-trace 1
//   # command: <argv joined by spaces>
//   # cpus: N
//   # MemTotal_kB: N
//   # sched: on                      (recorded with --sched: the scheduler events below are in it)
//   # trace_clock: mono              (with --sched: the tracefs clock of the timestamps)
//   # start DirectMap4k_kB=.. DirectMap2M_kB=.. DirectMap1G_kB=.. level2_splits=.. level3_splits=..
//     level2_collapses=.. level3_collapses=..          (one line; "absent" for a counter the kernel lacks)
//   <event lines: kmem:mm_page_alloc, mm_page_free, mm_page_free_batched,
//    mm_page_pcpu_drain, mm_page_alloc_extfrag; with --sched also
//    sched:sched_switch, task:task_newtask, sched:sched_process_exec and
//    sched:sched_process_exit, of every task on the machine>
//   # end DirectMap4k_kB=.. ... (same keys as start)
//   # secret pfn=0x<hex> pid=<pid>   (a page of the command's memfd_secret
//                                     mappings, read from /proc/PID/pagemap)
//   # thread tid=<tid> pid=<pid>     (a thread of the command other than its
//                                     first: event lines name the thread that
//                                     allocated, so a replay can tell which
//                                     allocations were the command's faults)
//   # command_pid: N                 (the pid of the command's first process; its
//                                     process tree starts there)
//   # kthread pid=N                  (with --sched: a kernel thread (PF_KTHREAD),
//                                     listed from /proc at the start and the end)
//   # exit_status: N
//   # duration_seconds: X
//   # events: N
//   # lost_events: N        (events tracefs dropped: its buffer overflowed)
//   # direct_map start regions=N from=I map=RUNS
//   # direct_map end regions=N from=I map=RUNS
//                                    (the real direct map at the start and the end
//                                     of the recording, read through /proc/kcore
//                                     (host/kernel_map.hpp): one code per 2 MiB
//                                     region of [0, N x 2 MiB), run-length coded:
//                                     RUNS is <count><code>... with code G (inside a
//                                     1 GiB leaf), M (a 2 MiB leaf), K (split to
//                                     4 KiB PTEs) or . (not mapped); a map is cut
//                                     into lines of at most kDirectMapRunsPerLine
//                                     runs, each starting at region I, in order.
//                                     Both are written in the footer, the start map
//                                     kept in memory meanwhile, so that the header
//                                     stays short)
//   # direct_map unavailable <refusal>: <why>
//                                    (instead, when the map could not be read:
//                                     host::refusal_name() and the sentence why)
//
// An event line, as every kernel since 4.x prints it:
//   <comm>-<pid> [<cpu>] <flags> <timestamp>: mm_page_<event>: page=<ptr> pfn=<n> order=<n>
//     [migratetype=<n> gfp_flags=<flags>]
// with pfn in hex ("pfn=0x1a2b") or decimal ("pfn=6699"). A bare tracefs
// capture (no '#' lines) reads too; a reader ignores '#' lines it does not know.
//
// The scheduler's lines, as this kernel's TP_printk formats print them:
//   <comm>-<pid> [<cpu>] <flags> <sec>.<usec>: sched_switch: prev_comm=<s> prev_pid=<n> prev_prio=<n>
//     prev_state=<S|D|R+|X|Z|...> ==> next_comm=<s> next_pid=<n> next_prio=<n>
//   ... task_newtask: pid=<child> comm=<s> clone_flags=<hex, no 0x> oom_score_adj=<n>
//       (printed by the parent, whose pid is the prefix's)
//   ... sched_process_exec: filename=<s> pid=<n> old_pid=<n>
//   ... sched_process_exit: comm=<s> pid=<n> prio=<n>[ group_dead=<true|false>]
// `exmem sim --trace` counts them and skips them; `exmem trace sched`
// (sched_analysis.hpp) reads them. Traces from before --sched (no such lines,
// no "# sched"/"# command_pid"/"# kthread" lines) read as before, and the
// format's version stays 1: every addition is a line old readers skip. So do
// traces without "# direct_map" lines (recorded before the snapshots, or
// elsewhere than on x86-64): the calibration then falls back to the counters.
//
// The "# secret" lines come from samples of the command's mappings taken
// while it ran and at its exit: a page it faulted in and released between two
// samples is not marked, nor are the pages of processes it forked.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "model/phys/gfp.hpp"

namespace exmem::model::workload {

inline constexpr int kTraceFormatVersion = 1;

// The beginnings of exmem's own lines.
namespace trace_line {
inline constexpr std::string_view kVersion = "# exmem-trace";
inline constexpr std::string_view kCommand = "# command:";
inline constexpr std::string_view kCpus = "# cpus:";
inline constexpr std::string_view kMemTotal = "# MemTotal_kB:";
inline constexpr std::string_view kStart = "# start";
inline constexpr std::string_view kEnd = "# end";
inline constexpr std::string_view kSecret = "# secret";
inline constexpr std::string_view kThread = "# thread";
inline constexpr std::string_view kExitStatus = "# exit_status:";
inline constexpr std::string_view kDuration = "# duration_seconds:";
inline constexpr std::string_view kEvents = "# events:";
inline constexpr std::string_view kLostEvents = "# lost_events:";
inline constexpr std::string_view kSched = "# sched:";
inline constexpr std::string_view kTraceClock = "# trace_clock:";
inline constexpr std::string_view kCommandPid = "# command_pid:";
inline constexpr std::string_view kKthread = "# kthread";
inline constexpr std::string_view kDirectMap = "# direct_map";
// A line of the direct-map snapshot: kDirectMap, then a space or nothing (a
// comment such as "# direct_map=..." is an ordinary comment, ignored).
inline bool is_direct_map_line(std::string_view line) {
  return line.substr(0, kDirectMap.size()) == kDirectMap &&
         (line.size() == kDirectMap.size() || line[kDirectMap.size()] == ' ');
}
}  // namespace trace_line

// The keys of "# start" and "# end": /proc/meminfo's DirectMap lines (with
// "_kB") and /proc/vmstat's direct_map_* counters (without the prefix).
namespace trace_counter {
inline constexpr std::string_view kDirectMap4k = "DirectMap4k_kB";
inline constexpr std::string_view kDirectMap2M = "DirectMap2M_kB";
inline constexpr std::string_view kDirectMap1G = "DirectMap1G_kB";
inline constexpr std::string_view kLevel2Splits = "level2_splits";
inline constexpr std::string_view kLevel3Splits = "level3_splits";
inline constexpr std::string_view kLevel2Collapses = "level2_collapses";
inline constexpr std::string_view kLevel3Collapses = "level3_collapses";
// In the order the recorder writes them.
inline constexpr std::array<std::string_view, 7> kAll{kDirectMap4k,  kDirectMap2M,     kDirectMap1G,    kLevel2Splits,
                                                      kLevel3Splits, kLevel2Collapses, kLevel3Collapses};
inline constexpr std::string_view kAbsent = "absent";  // the value of a counter the kernel does not have
}  // namespace trace_counter

// The kmem tracepoints the recorder enables (those the running kernel has).
inline constexpr std::array<const char*, 5> kRecordedEvents{"mm_page_alloc", "mm_page_free", "mm_page_free_batched",
                                                            "mm_page_pcpu_drain", "mm_page_alloc_extfrag"};

// The scheduler tracepoints `exmem trace record --sched` enables, "system/event".
inline constexpr std::array<const char*, 4> kSchedEvents{"sched/sched_switch", "task/task_newtask",
                                                         "sched/sched_process_exec", "sched/sched_process_exit"};

// Real pfns up to 2^36 (256 TiB of physical address space) can be replayed.
inline constexpr std::uint64_t kMaxRealPfn = std::uint64_t{1} << 36;

// "FILE:LINE: what", or "FILE: what" about the whole file.
class TraceError : public std::runtime_error {
 public:
  TraceError(const std::string& file, std::uint64_t line, const std::string& what);
};

// A real direct map as "# direct_map" lines carry it: one code per 2 MiB
// region of physical memory from 0, the values of model::Coverage (snapshot.hpp:
// 0 not mapped, 1 inside a 1 GiB leaf, 2 a 2 MiB leaf, 3 split to 4 KiB), which
// are also host::MapCoverage's.
struct DirectMapSnapshot {
  std::vector<std::uint8_t> regions;
  [[nodiscard]] std::uint64_t regions_of(std::uint8_t coverage) const;
  bool operator==(const DirectMapSnapshot&) const = default;
};
// Runs per "# direct_map" line (a map of many short runs takes several lines).
inline constexpr std::size_t kDirectMapRunsPerLine = 4096;
// The lines of one snapshot; `when` is "start" or "end".
std::string trace_direct_map_lines(std::string_view when, const DirectMapSnapshot& map);
// "# direct_map unavailable <refusal>: <why>".
std::string trace_direct_map_unavailable_line(std::string_view refusal, std::string_view why);

// The lines `exmem trace record` writes around the events.
struct TraceInfo {
  std::string path;
  int format_version = 0;  // "# exmem-trace N"; 0: absent (a bare tracefs capture)
  std::string command;
  unsigned cpus = 0;  // 0: not recorded
  std::uint64_t mem_total_kb = 0;
  double duration_seconds = 0;  // wall time of the recording; 0: not recorded
  std::uint64_t recorded_events = 0;
  std::uint64_t lost_events = 0;
  std::optional<int> exit_status;
  std::map<std::string, std::string> start_counters;  // "# start k=v ..."
  std::map<std::string, std::string> end_counters;    // "# end k=v ..."
  std::uint64_t bytes = 0;                            // size of the file (0: not a regular file)
  // Secret pages listed in the footer: real pfn and pid.
  std::vector<std::pair<std::uint64_t, int>> secret_pages;
  // Threads of the processes with secret pages ("# thread tid=.. pid=.."):
  // event lines name the task (thread) that allocated.
  std::map<int, int> threads;
  bool sched = false;              // "# sched: on": recorded with --sched
  std::string trace_clock;         // "# trace_clock: NAME"; empty: not recorded
  std::optional<int> command_pid;  // "# command_pid: N"
  std::vector<int> kthreads;       // "# kthread pid=N"
  // The real direct map at the start and the end ("# direct_map start/end");
  // both absent in traces from before the snapshots or when the map could not
  // be read, and then map_unavailable says why ("<refusal>: <why>"; empty for
  // an older trace).
  std::optional<DirectMapSnapshot> map_start, map_end;
  std::string map_unavailable;
};

// Reads the header (leading '#' lines) and the footer (trailing '#' lines)
// without reading the events between them. TraceError when unreadable, and
// when a "# direct_map" line is malformed (naming the line and the field).
TraceInfo read_trace_info(const std::string& path);

// "# secret pfn=0x1a2b pid=42": false when the line is not well formed.
bool parse_secret_line(std::string_view line, std::uint64_t& pfn, int& pid);

// trace_pipe's note of events its ring buffer dropped, "CPU:1 [LOST 42 EVENTS]":
// their number; nullopt for any other line.
std::optional<std::uint64_t> parse_lost_events(std::string_view line);

enum class TraceEventKind : std::uint8_t {
  Alloc,            // kmem:mm_page_alloc (replayed)
  Free,             // kmem:mm_page_free (replayed)
  FreeBatched,      // kmem:mm_page_free_batched (replayed, order 0)
  PcpuDrain,        // kmem:mm_page_pcpu_drain (counted: pcp -> buddy, the model has its own pcp)
  AllocZoneLocked,  // kmem:mm_page_alloc_zone_locked (counted)
  AllocExtfrag,     // kmem:mm_page_alloc_extfrag (counted)
};

struct TraceEvent {
  TraceEventKind kind = TraceEventKind::Alloc;
  std::uint64_t pfn = 0;
  unsigned order = 0;
  int pid = -1;          // the task's pid from "comm-PID", -1 when the prefix is not there
  unsigned cpu = 0;      // from "[CPU]", 0 when the prefix is not there
  bool failed = false;   // mm_page_alloc that returned no page (page=(null), pfn=0 / pfn=0x0)
  std::string_view gfp;  // mm_page_alloc's gfp_flags text
};

// Where read_event_line() found a line to end, and whether it is an event.
struct EventLine {
  const char* end = nullptr;  // the line's '\n', or the end of the text when it has none
  bool event = false;         // a kmem page event (in `ev`); else `why` says what is wrong
};

// The grammar's one entry point. Reads the line that starts at `begin` and
// ends at the first '\n' at or after it, or at `end` (a '\r' before the
// newline is not part of it). The usual layout is read in one pass straight
// from the text, without looking for the newline first; a line it does not
// fit goes to a general reader that tolerates what kernels and tracefs
// options vary (another order of the fields, "(TGID)" after the pid, a comm
// holding anything). `why`, when given, says why a line is not an event.
// With `pid_at` given, a line of the usual layout leaves ev.pid unread and
// *pid_at points at the '[' of its "[CPU]" for read_event_pid(), as most
// events never need it; *pid_at is nullptr when the pid was read already (or
// the line has none).
EventLine read_event_line(const char* begin, const char* end, TraceEvent& ev, std::string* why = nullptr,
                          const char** pid_at = nullptr);

// The pid of "comm-PID [" (or "comm-PID (TGID) [") of the line starting at
// line_begin, read_event_line() having left its '[' in pid_at.
void read_event_pid(const char* line_begin, const char* pid_at, TraceEvent& ev);

// One line without its newline: read_event_line() on it. nullopt when it is
// not a kmem page event; `why` then says what is wrong.
std::optional<TraceEvent> parse_trace_line(std::string_view line, std::string* why = nullptr);

struct GfpFlags {
  phys::Gfp gfp = 0;
  unsigned unknown = 0;  // flag names the model does not know (ignored)
};
// show_gfp_flags() text back to flags with phys/'s table of names
// (gfp_names.hpp): "GFP_KERNEL|__GFP_ZERO", "GFP_ATOMIC", "none", ...;
// unknown names are counted and appended to unknown_names.
GfpFlags parse_gfp_flags(std::string_view text, std::vector<std::string>* unknown_names = nullptr);

// A line that is neither an event nor one of exmem's own.
struct UnknownLine {
  std::uint64_t line = 0;
  std::string text;  // the line, cut at 160 characters
  std::string why;
};
// A reader keeps the first few with their text and counts the rest.
inline constexpr std::size_t kMaxUnknownLinesKept = 10;

enum class SchedEventKind : std::uint8_t {
  Switch,   // sched:sched_switch: prev_pid leaves the cpu, next_pid runs
  NewTask,  // task:task_newtask: `pid` (the prefix's task) created `child`
  Exec,     // sched:sched_process_exec: old_pid exec'd and is now `child` (the same pid unless a thread exec'd)
  Exit,     // sched:sched_process_exit: `child` exits
};

// CLONE_VM in task_newtask's clone_flags: the new task shares its parent's mm.
inline constexpr std::uint64_t kCloneVm = 0x100;

struct SchedEvent {
  SchedEventKind kind = SchedEventKind::Switch;
  std::uint64_t ns = 0;  // the timestamp, in ns (tracefs prints microseconds: "<sec>.<usec>")
  unsigned cpu = 0;
  int pid = -1;           // the prefix's task (the one running on cpu)
  int prev_pid = -1;      // Switch
  int next_pid = -1;      // Switch
  bool prev_dead = false;  // Switch: prev_state has X or Z (the task exited)
  int child = -1;          // NewTask: the new task; Exec: the pid after exec; Exit: the task exiting
  int old_pid = -1;        // Exec
  std::uint64_t clone_flags = 0;  // NewTask
  std::string_view name;  // NewTask: comm; Exec: filename; Exit: comm; Switch: next_comm
};

// A scheduler line (the four events above); nullopt for any other line.
std::optional<SchedEvent> parse_sched_line(std::string_view line);
// Whether a line that is not a kmem event is one of the four scheduler events
// (cheap: the event's name only), for the replay, which skips them.
bool is_sched_line(std::string_view line);

// The writer's side: exmem's own lines, each ending in a newline.
// `counters` are " key=value" pairs (each after a space) with the keys of
// trace_counter::kAll.
std::string trace_header(std::string_view command, long cpus, std::uint64_t mem_total_kb, std::string_view counters);
std::string trace_end_line(std::string_view counters);
std::string trace_secret_line(std::uint64_t pfn, int pid);
std::string trace_thread_line(int tid, int pid);
std::string trace_sched_lines(std::string_view trace_clock);  // "# sched: on" and "# trace_clock: .."
std::string trace_command_pid_line(int pid);
std::string trace_kthread_line(int pid);
std::string trace_footer(int exit_status, double duration_seconds, std::uint64_t events, std::uint64_t lost_events);

// The trace opened for reading; closed when it goes (TraceError when it cannot be opened).
class TraceFile {
 public:
  explicit TraceFile(const std::string& path);
  ~TraceFile();
  TraceFile(const TraceFile&) = delete;
  TraceFile& operator=(const TraceFile&) = delete;
  [[nodiscard]] int fd() const { return fd_; }

 private:
  int fd_;
};

}  // namespace exmem::model::workload
