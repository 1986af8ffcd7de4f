// workload/: what drives the model (see synthetic.hpp for what the folder owns).
// trace_replay.hpp: replays a trace of the real kernel's page allocator, as
// `exmem trace record` writes it (trace_format.hpp: the format), on a
// modelled machine.
//
// The model's buddy allocator chooses its own pfns, so each mm_page_alloc is
// replayed as an allocation of the same order with the same gfp flags, and the
// real pfn is remembered with the model's block; mm_page_free and
// mm_page_free_batched free that block. Pages marked by `# secret pfn=.. pid=..`
// lines are replayed as memfd_secret faults instead: one secretmem file per
// traced pid, sized for all its marked pages and touched page by page through
// mm/; the first free of one of its pages releases the whole file (the real
// kernel frees secretmem pages only when the file is released, so its other
// pages' frees follow at once in the trace). What cannot be replayed is counted:
// Movable pages belong to a model process per traced pid (the pid on the
// line), as anonymous memory, so reclaim, migration and the OOM killer see
// an owner; reclaimable ones are slab the shrinker may free. A later free of
// a page the model reclaimed, or whose owner it killed, is counted and
// skipped. What else cannot be replayed is counted:
// frees of pages allocated before the recording started, allocations the real
// kernel failed (page=(null), pfn 0), gfp flag names the model does not know,
// lines that are not kmem page events (the first few with their line numbers).
// The scheduler events of a `--sched` recording are counted and skipped.
//
// The file is read as a stream (header and trailing footer first, then the
// events in one pass, by a reader thread of its own: trace_reader.hpp), so
// traces larger than memory replay.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "model/machine.hpp"
#include "model/workload/trace_format.hpp"

namespace exmem::model::workload {

struct ReplayStats {
  std::uint64_t lines = 0;
  std::uint64_t bytes = 0;
  std::uint64_t events = 0;  // kmem page event lines recognised
  // mm_page_alloc
  std::uint64_t allocs = 0;                  // lines
  std::uint64_t allocs_failed_in_trace = 0;  // the real kernel returned no page
  std::uint64_t allocs_replayed = 0;         // model allocations made (secret faults not included)
  std::uint64_t model_alloc_failures = 0;    // the model could not allocate what the kernel did
  std::uint64_t kernel_allocs = 0;           // replayed, unmovable
  std::uint64_t reclaimable_allocs = 0;      // replayed, __GFP_RECLAIMABLE
  std::uint64_t user_allocs = 0;             // replayed, __GFP_MOVABLE
  std::uint64_t realloc_while_live = 0;      // a pfn allocated again before its free was seen: freed first
  std::uint64_t unknown_gfp_allocs = 0;      // allocations whose gfp_flags had names the model ignores
  std::map<std::string, std::uint64_t> unknown_gfp_names;
  // mm_page_free, mm_page_free_batched
  std::uint64_t frees = 0;                    // lines
  std::uint64_t frees_replayed = 0;           // model blocks freed
  std::uint64_t kernel_frees = 0;             // ... of them unmovable or reclaimable
  std::uint64_t user_frees = 0;               // ... of them movable
  std::uint64_t frees_unknown = 0;            // pages allocated before the recording started: skipped
  std::uint64_t frees_partial = 0;            // part of a larger block (split_page): the block goes with its last part
  std::uint64_t frees_of_model_failures = 0;  // the model had failed that allocation
  std::uint64_t frees_of_gone = 0;            // the model had reclaimed the page or killed its owner: skipped
  std::uint64_t trace_processes = 0;          // model processes owning the trace's movable pages
  std::uint64_t processes_killed = 0;         // ... that the OOM killer took (respawned at their next allocation)
  // memfd_secret pages
  std::uint64_t secret_marked = 0;    // pages marked by "# secret" lines
  std::uint64_t secret_faults = 0;    // marked pages allocated, replayed as secretmem faults
  std::uint64_t secret_ooms = 0;      // ... that ended in VM_FAULT_OOM in the model
  std::uint64_t secret_files = 0;     // secretmem files created
  std::uint64_t secret_releases = 0;  // files released at the first free of one of their pages
  std::uint64_t secret_frees = 0;     // frees of secret pages (each file's first one releases it)
  // counted, not replayed
  std::uint64_t pcpu_drains = 0;
  std::uint64_t zone_locked = 0;
  std::uint64_t extfrag = 0;
  std::uint64_t lost_events = 0;  // "CPU:N [LOST M EVENTS]" lines of trace_pipe
  std::uint64_t sched_lines = 0;  // scheduler events of a --sched recording: skipped (not allocator events)
  // lines that are not events
  std::uint64_t unknown_lines = 0;
  std::vector<UnknownLine> first_unknown;  // the first kMaxUnknownReported
  double seconds = 0;                      // wall time of the replay
  // CPU time of its two threads: the reader (read, split, parse) and the
  // replay on the model; they overlap, so on idle CPUs `seconds` is about the larger.
  double reader_cpu_seconds = 0;
  double model_cpu_seconds = 0;
  static constexpr std::size_t kMaxUnknownReported = kMaxUnknownLinesKept;
};

struct ReplayProgress {
  std::uint64_t events = 0;
  std::uint64_t bytes = 0;
  std::uint64_t total_bytes = 0;  // 0 when unknown
};

class TraceReplay {
 public:
  // Reads the trace's header and footer (TraceError when unreadable).
  TraceReplay(Machine& machine, const std::string& path);
  ~TraceReplay();
  TraceReplay(const TraceReplay&) = delete;
  TraceReplay& operator=(const TraceReplay&) = delete;

  [[nodiscard]] const TraceInfo& info() const { return info_; }
  // Replays every event; `progress` is called every `every_lines` lines and
  // once at the end. TraceError when the file cannot be read or holds no kmem
  // page event at all.
  ReplayStats run(const std::function<void(const ReplayProgress&)>& progress = {}, std::uint64_t every_lines = 65536);

 private:
  struct State;
  Machine& machine_;
  TraceInfo info_;
  std::unique_ptr<State> st_;
};

}  // namespace exmem::model::workload
