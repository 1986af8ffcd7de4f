// workload/: what drives the model (see synthetic.hpp for what the folder owns).
// trace_replay.cpp: the replay of a kmem trace on the model, fed by the
// reader thread of trace_reader.cpp.
#include "model/workload/trace_replay.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <thread>
#include <unordered_map>

#include "model/mm/mm.hpp"
#include "model/workload/trace_reader.hpp"

namespace exmem::model::workload {

struct TraceReplay::State {
  // kOwned: `model` is a handle of mm::ProcessMemory (a movable page of a
  // trace process, or reclaimable slab), not a pfn.
  enum : std::uint8_t { kEmpty = 0, kLive = 1, kSecret = 2, kModelFailed = 3, kOwned = 4 };
  // What the replay knows of one real pfn: the model block allocated for it
  // (or, for a secret page, its file), its order, and the secret page mark.
  struct Entry {
    Pfn model;
    std::uint8_t order;
    std::uint8_t state;
    std::uint16_t secret;  // 0: not marked; else 1 + index in owners
  };
  static_assert(sizeof(Entry) == 8);

  struct Owner {  // a traced pid with secret pages
    int trace_pid = 0;
    std::uint64_t marked = 0;
    mm::Pid pid = 0;  // its model process (0: not yet spawned)
    int file = -1;    // its current file
  };
  struct SecretFile {
    std::uint32_t owner = 0;
    int fd = -1;
    std::uint64_t addr = 0;
    std::uint64_t pages = 0;
    std::uint64_t touched = 0;
    bool live = false;
  };
  State(Machine& m, const TraceInfo& i) : machine(m), info(i), ncpus(m.phys().cpus()) {
    for (const auto& [tid, pid] : i.threads) thread_group[tid] = pid;
  }

  Machine& machine;
  const TraceInfo& info;
  unsigned ncpus;
  PfnTable<Entry> table;  // real pfn -> Entry
  std::vector<Owner> owners;
  std::unordered_map<int, std::uint16_t> owner_of_pid;
  std::vector<SecretFile> files;
  std::unordered_map<std::uint64_t, std::uint64_t> partial;  // block head -> pages freed so far
  std::unordered_map<int, int> thread_group;                 // tid -> pid, from "# thread" lines
  std::unordered_map<int, mm::Pid> processes;                // traced pid (-1: none given) -> model process
  ReplayStats stats;
  bool ran = false;

  // Marks a real pfn as a page of pid's memfd_secret mappings.
  bool mark_secret(std::uint64_t pfn, int pid) {
    auto [it, added] = owner_of_pid.try_emplace(pid, static_cast<std::uint16_t>(owners.size()));
    if (added) {
      if (owners.size() >= 0xFFFF) {
        owner_of_pid.erase(it);
        return false;
      }
      owners.push_back(Owner{pid, 0, 0, -1});
    }
    Entry& e = table.get(pfn);
    if (e.secret != 0) return true;
    e.secret = static_cast<std::uint16_t>(it->second + 1);
    ++owners[it->second].marked;
    ++stats.secret_marked;
    return true;
  }

  // The block (or secret page) the trace allocated at real pfn goes.
  void release(Entry& e, std::uint64_t real_pfn, CpuId cpu) {
    switch (e.state) {
      case kLive:
        if (machine.phys().kind(e.model) == phys::FrameKind::User) {
          ++stats.user_frees;
        } else {
          ++stats.kernel_frees;
        }
        machine.free_pages(e.model, e.order, cpu);
        ++stats.frees_replayed;
        machine.scan_tick(cpu);
        break;
      case kOwned: {
        mm::ProcessMemory& mem = machine.mm().memory();
        if (mem.use(e.model) == mm::PageUse::Anon) {
          ++stats.user_frees;
        } else {
          ++stats.kernel_frees;
        }
        if (mem.free(e.model, cpu)) {
          ++stats.frees_replayed;
        } else {
          ++stats.frees_of_gone;
        }
        machine.scan_tick(cpu);
        break;
      }
      case kSecret: {
        ++stats.secret_frees;
        SecretFile& f = files[e.model];
        if (f.live) release_file(f);
        break;
      }
      case kModelFailed:
        ++stats.frees_of_model_failures;
        break;
      default:
        break;
    }
    e.state = kEmpty;
    if (!partial.empty()) partial.erase(real_pfn);
  }

  // mirrors the last close of a memfd_secret file: munmap + close, after
  // which secretmem_free_folio() restores and frees every page of it.
  void release_file(SecretFile& f) {
    mm::Mm& m = machine.mm();
    const Owner& o = owners[f.owner];
    m.munmap(o.pid, f.addr, f.pages * kPageSize);
    m.close(o.pid, f.fd);
    f.live = false;
    ++stats.secret_releases;
  }

  // A page of a traced pid's secret mapping is faulted in: the pid's current
  // file (a new one when it has none or it is full) gets its next page.
  void secret_fault(Entry& e, CpuId cpu) {
    mm::Mm& m = machine.mm();
    Owner& o = owners[e.secret - 1u];
    if (o.pid == 0) o.pid = m.spawn(~std::uint64_t{0}, /*cap_ipc_lock=*/true, static_cast<int>(cpu));
    m.set_cpu(o.pid, cpu);
    if (o.file < 0 || !files[static_cast<std::size_t>(o.file)].live ||
        files[static_cast<std::size_t>(o.file)].touched >= files[static_cast<std::size_t>(o.file)].pages) {
      SecretFile f;
      f.owner = static_cast<std::uint32_t>(e.secret - 1u);
      f.pages = std::max<std::uint64_t>(1, o.marked);
      f.fd = m.memfd_secret(o.pid, mm::kO_CLOEXEC);
      if (f.fd < 0 || m.ftruncate(o.pid, f.fd, static_cast<std::int64_t>(f.pages * kPageSize)) != 0) {
        if (f.fd >= 0) m.close(o.pid, f.fd);
        e.state = kModelFailed;
        ++stats.model_alloc_failures;
        return;
      }
      const Result<std::uint64_t> addr =
          m.mmap(o.pid, f.pages * kPageSize, mm::kPROT_READ | mm::kPROT_WRITE, mm::kMAP_SHARED, f.fd, 0);
      if (!addr.ok()) {
        m.close(o.pid, f.fd);
        e.state = kModelFailed;
        ++stats.model_alloc_failures;
        return;
      }
      f.addr = addr.value;
      f.live = true;
      files.push_back(f);
      o.file = static_cast<int>(files.size() - 1);
      ++stats.secret_files;
    }
    SecretFile& f = files[static_cast<std::size_t>(o.file)];
    const mm::VmFault fault = m.touch(o.pid, f.addr + f.touched * kPageSize, true);
    ++f.touched;
    if (fault == mm::VmFault::Major) {
      ++stats.secret_faults;
      e.model = static_cast<Pfn>(o.file);
      e.order = 0;
      e.state = kSecret;
      return;
    }
    if (fault == mm::VmFault::Oom) ++stats.secret_ooms;
    ++stats.model_alloc_failures;
    e.state = kModelFailed;
  }

  // The model process of the traced task's process (spawned at its first
  // page, and again after the OOM killer took it).
  mm::Pid process_of(int tid, CpuId cpu) {
    int pid = tid;
    if (tid >= 0) {
      const auto it = thread_group.find(tid);
      if (it != thread_group.end()) pid = it->second;
    } else {
      pid = -1;
    }
    mm::Mm& m = machine.mm();
    mm::Pid& p = processes[pid];
    if (p != 0 && m.alive(p)) return p;
    if (p != 0) ++stats.processes_killed;
    p = m.spawn(~std::uint64_t{0}, /*cap_ipc_lock=*/true, static_cast<int>(cpu));
    m.set_name(p, pid < 0 ? std::string("trace-unknown") : fmt::format("trace-pid-{}", pid));
    ++stats.trace_processes;
    return p;
  }

  void on_alloc(const Record& ev) {
    ++stats.allocs;
    if (ev.failed) {
      ++stats.allocs_failed_in_trace;
      return;
    }
    const CpuId cpu = ev.cpu % ncpus;
    Entry& e = table.get(ev.pfn);
    if (e.state != kEmpty) {
      ++stats.realloc_while_live;
      release(e, ev.pfn, cpu);
    }
    // secretmem_fault() allocates order-0 folios with the mapping's gfp,
    // GFP_HIGHUSER (| __GFP_ZERO): highmem-capable but not movable, in the
    // context of the faulting task. The same pfn may have been another page
    // of that task before (a page table: GFP_KERNEL_ACCOUNT), which is not.
    if (e.secret != 0 && ev.order == 0 &&
        (ev.gfp & (phys::__GFP_MOVABLE | phys::__GFP_HIGHMEM)) == phys::__GFP_HIGHMEM && same_process(e, ev.pid)) {
      secret_fault(e, cpu);
      return;
    }
    const phys::FrameKind kind = (ev.gfp & phys::__GFP_MOVABLE) != 0       ? phys::FrameKind::User
                                 : (ev.gfp & phys::__GFP_RECLAIMABLE) != 0 ? phys::FrameKind::Reclaimable
                                                                           : phys::FrameKind::Kernel;
    mm::ProcessMemory& mem = machine.mm().memory();
    const Result<Pfn> r = kind == phys::FrameKind::User ? mem.alloc_anon(process_of(ev.pid, cpu), ev.gfp, ev.order, cpu)
                          : kind == phys::FrameKind::Reclaimable ? mem.alloc_slab(ev.gfp, ev.order, cpu)
                                                                  : machine.alloc_pages(ev.gfp, ev.order, cpu, kind);
    e.order = static_cast<std::uint8_t>(ev.order);
    if (!r.ok()) {
      ++stats.model_alloc_failures;
      e.state = kModelFailed;
      return;
    }
    e.model = r.value;
    e.state = kind == phys::FrameKind::Kernel ? kLive : kOwned;
    ++stats.allocs_replayed;
    if (kind == phys::FrameKind::User) {
      ++stats.user_allocs;
    } else if (kind == phys::FrameKind::Reclaimable) {
      ++stats.reclaimable_allocs;
    } else {
      ++stats.kernel_allocs;
    }
    machine.scan_tick(cpu);
  }

  void partial_free(Entry& head, std::uint64_t head_pfn, unsigned order, CpuId cpu) {
    ++stats.frees_partial;
    std::uint64_t& freed = partial[head_pfn];
    freed += std::uint64_t{1} << order;
    if (freed >= (std::uint64_t{1} << head.order)) {
      partial.erase(head_pfn);
      release(head, head_pfn, cpu);
    }
  }

  void on_free(const Record& ev) {
    ++stats.frees;
    const CpuId cpu = ev.cpu % ncpus;
    Entry* e = table.find(ev.pfn);
    if (e != nullptr && e->state != kEmpty) {
      if (e->order > ev.order) {
        partial_free(*e, ev.pfn, ev.order, cpu);
        return;
      }
      const unsigned order = e->order;
      release(*e, ev.pfn, cpu);
      // A free of a larger block than was allocated here: the other blocks it covers go too.
      for (std::uint64_t p = ev.pfn + (std::uint64_t{1} << order); p < ev.pfn + (std::uint64_t{1} << ev.order);) {
        Entry* x = table.find(p);
        if (x != nullptr && x->state != kEmpty) {
          const unsigned o = x->order;
          release(*x, p, cpu);
          p += std::uint64_t{1} << o;
        } else {
          ++p;
        }
      }
      return;
    }
    // A page inside a larger block still live (split_page(), alloc_pages_exact()).
    for (unsigned k = ev.order + 1; k <= kMaxPageOrder; ++k) {
      const std::uint64_t head_pfn = ev.pfn & ~((std::uint64_t{1} << k) - 1);
      Entry* h = table.find(head_pfn);
      if (h != nullptr && h->state != kEmpty && h->order >= k) {
        partial_free(*h, head_pfn, ev.order, cpu);
        return;
      }
    }
    ++stats.frees_unknown;
  }

  // Whether the task that allocated (its tid, -1 when the line had none) is
  // the process that held the secret page.
  bool same_process(const Entry& e, int tid) const {
    if (tid < 0) return true;
    const int owner = owners[e.secret - 1u].trace_pid;
    if (tid == owner) return true;
    const auto it = thread_group.find(tid);
    return it != thread_group.end() && it->second == owner;
  }

  void on_record(const Record& r) {
    switch (r.kind) {
      case Record::kAlloc:
        ++stats.events;
        on_alloc(r);
        break;
      case Record::kFree:
        ++stats.events;
        on_free(r);
        break;
      case Record::kDrain:
        ++stats.events;
        ++stats.pcpu_drains;
        break;
      case Record::kZoneLocked:
        ++stats.events;
        ++stats.zone_locked;
        break;
      case Record::kExtfrag:
        ++stats.events;
        ++stats.extfrag;
        break;
      case Record::kSecretMark:
        if (!mark_secret(r.pfn, r.pid)) {
          ++stats.unknown_lines;
          stats.first_unknown.push_back({r.line, fmt::format("# secret pfn={:#x} pid={}", r.pfn, r.pid),
                                         "more than 65535 pids with secret pages"});
        }
        break;
    }
  }
};

TraceReplay::TraceReplay(Machine& machine, const std::string& path)
    : machine_(machine), info_(read_trace_info(path)), st_(std::make_unique<State>(machine, info_)) {
  for (const auto& [pfn, pid] : info_.secret_pages) st_->mark_secret(pfn, pid);
}

TraceReplay::~TraceReplay() = default;

ReplayStats TraceReplay::run(const std::function<void(const ReplayProgress&)>& progress, std::uint64_t every_lines) {
  State& st = *st_;
  if (st.ran) throw std::logic_error("TraceReplay::run() called twice");
  st.ran = true;
  const auto t0 = std::chrono::steady_clock::now();
  const double cpu0 = thread_cpu_seconds();
  BatchQueue queue;
  TraceReader reader(info_, queue);
  std::thread thread([&reader] { reader.run(); });
  // Whatever happens here, the reader is stopped and joined.
  struct Join {
    BatchQueue& q;
    std::thread& t;
    ~Join() {
      q.abandon();
      if (t.joinable()) t.join();
    }
  } join{queue, thread};

  std::uint64_t next_report = every_lines == 0 ? ~std::uint64_t{0} : every_lines;
  std::uint64_t bytes = 0;
  while (std::optional<Batch> b = queue.pop()) {
    const std::vector<Record>& recs = b->records;
    constexpr std::size_t kAhead = 8;
    for (std::size_t i = 0; i < recs.size(); ++i) {
      if (i + kAhead < recs.size()) st.table.prefetch(recs[i + kAhead].pfn);
      const Record& r = recs[i];
      st.on_record(r);
      if (r.line >= next_report) {
        while (next_report <= r.line) next_report += every_lines;
        if (progress) progress(ReplayProgress{st.stats.events, bytes, info_.bytes});
      }
    }
    bytes = b->bytes;
    queue.recycle(std::move(*b));
  }
  const double cpu1 = thread_cpu_seconds();
  queue.abandon();
  thread.join();
  reader.count_unknown_gfp();

  ReplayStats& s = st.stats;
  s.lines = reader.lines;
  s.bytes = reader.bytes;
  s.lost_events = reader.lost_events;
  s.sched_lines = reader.sched_lines;
  s.unknown_lines += reader.unknown_lines;
  s.first_unknown.insert(s.first_unknown.end(), reader.first_unknown.begin(), reader.first_unknown.end());
  std::sort(s.first_unknown.begin(), s.first_unknown.end(),
            [](const UnknownLine& a, const UnknownLine& b) { return a.line < b.line; });
  if (s.first_unknown.size() > ReplayStats::kMaxUnknownReported)
    s.first_unknown.resize(ReplayStats::kMaxUnknownReported);
  s.unknown_gfp_allocs = reader.unknown_gfp_allocs;
  s.unknown_gfp_names = reader.unknown_gfp_names;
  s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  s.reader_cpu_seconds = reader.cpu_seconds;
  s.model_cpu_seconds = cpu1 - cpu0;
  if (s.events == 0) {
    std::string first;
    for (const UnknownLine& u : s.first_unknown) first += fmt::format("\n  line {}: {}: {}", u.line, u.why, u.text);
    throw TraceError(info_.path, 0,
                     fmt::format("no kmem page event (mm_page_alloc, mm_page_free, ...) in its {} lines; expected "
                                 "the output of `exmem trace record` or tracefs's trace_pipe{}",
                                 s.lines, first.empty() ? "" : "; lines not understood:" + first));
  }
  if (progress) progress(ReplayProgress{s.events, s.bytes, info_.bytes});
  return s;
}

}  // namespace exmem::model::workload
