// workload/: what drives the model (see README.md for what the folder owns).
// sched_analysis.cpp: the mms of a recorded command on the CPUs (sched_analysis.hpp).
#include "model/workload/sched_analysis.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

namespace exmem::model::workload {

IntervalStats interval_stats(std::vector<std::uint64_t> d) {
  IntervalStats s;
  s.count = d.size();
  if (d.empty()) return s;
  std::sort(d.begin(), d.end());
  for (const std::uint64_t v : d) s.total_ns += v;
  // Nearest rank: the ceil(p * n)-th value.
  auto rank = [&](std::uint64_t pct) { return d[(pct * d.size() + 99) / 100 - 1]; };
  s.median_ns = rank(50);
  s.p90_ns = rank(90);
  return s;
}

SchedAnalysis::SchedAnalysis(int command_pid, const std::vector<int>& kthreads)
    : root_(command_pid), kthreads_(kthreads.begin(), kthreads.end()) {}

SchedAnalysis::Cpu& SchedAnalysis::cpu(unsigned c) {
  if (c >= cpus_.size()) cpus_.resize(c + 1);
  return cpus_[c];
}

int SchedAnalysis::new_mm(int pid, std::string label) {
  Mm m;
  m.s.id = static_cast<int>(mms_.size()) + 1;
  m.s.pid = pid;
  m.s.label = std::move(label);
  m.last_ns = now_;
  mms_.push_back(std::move(m));
  return static_cast<int>(mms_.size()) - 1;
}

// Time up to t in the mm's present state.
void SchedAnalysis::advance(Mm& m, std::uint64_t t) {
  const std::uint64_t dt = t - m.last_ns;
  m.last_ns = t;
  if (dt == 0) return;
  m.s.running_ns += static_cast<std::uint64_t>(m.running) * dt;
  m.s.loaded_ns += static_cast<std::uint64_t>(m.loaded) * dt;
  if (m.running == 1) m.s.one_cpu_ns += dt;
  if (m.running >= 2) m.s.multi_cpu_ns += dt;
  if (m.loaded >= 2) m.s.loaded_multi_cpu_ns += dt;
  if (m.running == 1 && m.loaded == 1) m.s.safe_ns += dt;
}

// The mm's counts change by drun and dload at t; its intervals open and close.
void SchedAnalysis::apply(int mm, std::uint64_t t, int drun, int dload) {
  if (mm < 0 || (drun == 0 && dload == 0)) return;
  Mm& m = mms_[static_cast<std::size_t>(mm)];
  advance(m, t);
  const bool one_before = m.running == 1;
  const bool safe_before = m.running == 1 && m.loaded == 1;
  m.running += drun;
  m.loaded += dload;
  const bool one_after = m.running == 1;
  const bool safe_after = m.running == 1 && m.loaded == 1;
  if (one_before && !one_after) m.s.one_cpu_intervals_ns.push_back(t - m.one_since);
  if (!one_before && one_after) m.one_since = t;
  if (safe_before && !safe_after) m.s.safe_intervals_ns.push_back(t - m.safe_since);
  if (!safe_before && safe_after) m.safe_since = t;
}

// The cpu runs `running` and holds `loaded` from t on (mm indices, -1: none of the tree's).
void SchedAnalysis::set_cpu(unsigned c, std::uint64_t t, int running, int loaded) {
  Cpu& k = cpu(c);
  // The changes per mm, summed first, so that a thread handing the cpu to a
  // thread of the same mm does not end an interval.
  struct Delta {
    int mm;
    int run;
    int load;
  };
  Delta d[4]{};
  int n = 0;
  auto add = [&](int mm, int run, int load) {
    if (mm < 0) return;
    for (int i = 0; i < n; ++i) {
      if (d[i].mm == mm) {
        d[i].run += run;
        d[i].load += load;
        return;
      }
    }
    d[n++] = Delta{mm, run, load};
  };
  add(k.running, -1, 0);
  add(k.loaded, 0, -1);
  add(running, 1, 0);
  add(loaded, 0, 1);
  const int old_running = k.running;
  k.running = running;
  k.loaded = loaded;
  for (int i = 0; i < n; ++i) apply(d[i].mm, t, d[i].run, d[i].load);
  if (old_running >= 0 && old_running != running) maybe_gone(old_running, t);
}

// An mm whose tasks have all exited or exec'd away is gone once no CPU runs
// it: exit_mmap() flushed it, and no CPU keeps it loaded in any sense that matters.
void SchedAnalysis::maybe_gone(int mm, std::uint64_t t) {
  Mm& m = mms_[static_cast<std::size_t>(mm)];
  if (m.gone || m.live > 0 || m.running > 0) return;
  m.gone = true;
  for (unsigned c = 0; c < cpus_.size(); ++c) {
    if (cpus_[c].loaded == mm) set_cpu(c, t, cpus_[c].running, -1);
  }
}

void SchedAnalysis::account(Cpu& k, std::uint64_t t, Doing next) {
  doing_ns_[static_cast<int>(k.doing)] += t - k.since;
  k.doing = next;
  k.since = t;
}

void SchedAnalysis::on_event(const SchedEvent& e) {
  ++events_;
  std::uint64_t t = e.ns;
  if (!started_) {
    started_ = true;
    first_ = t;
    now_ = t;
  }
  if (t < now_) {
    ++out_of_order_;
    t = now_;
  }
  now_ = t;
  auto mm_of = [&](int pid) {
    const auto it = task_mm_.find(pid);
    return it == task_mm_.end() ? -1 : it->second;
  };
  auto add_task = [&](int pid, int mm) {
    task_mm_[pid] = mm;
    Mm& m = mms_[static_cast<std::size_t>(mm)];
    ++m.live;
    if (m.task_ids.insert(pid).second) ++m.s.tasks;
  };
  switch (e.kind) {
    case SchedEventKind::Switch: {
      const int next = mm_of(e.next_pid);
      Cpu& k = cpu(e.cpu);
      account(k, t,
              next >= 0           ? Doing::Command
              : e.next_pid == 0   ? Doing::Idle
              : lazy_task(e.next_pid) ? Doing::Kthread
                                      : Doing::Other);
      int loaded = -1;
      if (next >= 0) {
        loaded = next;
      } else if (lazy_task(e.next_pid)) {
        loaded = k.loaded;  // enter_lazy_tlb(): the last user mm stays loaded
      }
      set_cpu(e.cpu, t, next, loaded);
      break;
    }
    case SchedEventKind::NewTask: {
      if (e.pid == 2) kthreads_.insert(e.child);  // kthreadd's children are kernel threads
      const int parent = mm_of(e.pid);
      if (parent >= 0) {
        if ((e.clone_flags & kCloneVm) != 0) {
          add_task(e.child, parent);
        } else {
          add_task(e.child, new_mm(e.child, fmt::format("fork of {}", e.pid)));
        }
      }
      break;
    }
    case SchedEventKind::Exec: {
      const int old = mm_of(e.old_pid);
      if (old < 0) {
        // The command's first exec starts the tree: before it, its process
        // was the recorder's fork (a copy of the recorder's mm).
        if (e.old_pid != root_ || started_root_) break;
        started_root_ = true;
        const int mm = new_mm(e.child, fmt::format("exec {}", e.name));
        add_task(e.child, mm);
        set_cpu(e.cpu, t, mm, mm);
        Cpu& k = cpu(e.cpu);
        if (k.doing != Doing::Unknown) account(k, t, Doing::Command);
        break;
      }
      task_mm_.erase(e.old_pid);
      --mms_[static_cast<std::size_t>(old)].live;
      const int mm = new_mm(e.child, fmt::format("exec {}", e.name));
      add_task(e.child, mm);
      // exec_mmap() switches the cpu running the task to its new mm.
      Cpu& k = cpu(e.cpu);
      if (k.running == old) {
        set_cpu(e.cpu, t, mm, mm);
      } else {
        maybe_gone(old, t);
      }
      break;
    }
    case SchedEventKind::Exit: {
      const int mm = mm_of(e.child);
      if (mm < 0) break;
      task_mm_.erase(e.child);
      --mms_[static_cast<std::size_t>(mm)].live;
      maybe_gone(mm, t);
      break;
    }
  }
}

SchedReport SchedAnalysis::finish() {
  SchedReport r;
  const std::uint64_t t = now_;
  for (unsigned c = 0; c < cpus_.size(); ++c) {
    set_cpu(c, t, -1, -1);
    account(cpus_[c], t, Doing::Unknown);
  }
  r.cpu_command_ns = doing_ns_[static_cast<int>(Doing::Command)];
  r.cpu_idle_ns = doing_ns_[static_cast<int>(Doing::Idle)];
  r.cpu_kthread_ns = doing_ns_[static_cast<int>(Doing::Kthread)];
  r.cpu_other_ns = doing_ns_[static_cast<int>(Doing::Other)];
  r.command_pid = root_;
  r.sched_events = events_;
  r.out_of_order = out_of_order_;
  r.first_ns = first_;
  r.last_ns = now_;
  std::vector<std::uint64_t> one_all;
  std::vector<std::uint64_t> safe_all;
  r.total.label = "all";
  for (Mm& m : mms_) {
    if (m.s.running_ns == 0 && m.s.one_cpu_intervals_ns.empty()) continue;
    m.s.one_cpu = interval_stats(m.s.one_cpu_intervals_ns);
    m.s.safe = interval_stats(m.s.safe_intervals_ns);
    SchedMmStats& a = r.total;
    a.tasks += m.s.tasks;
    a.running_ns += m.s.running_ns;
    a.one_cpu_ns += m.s.one_cpu_ns;
    a.multi_cpu_ns += m.s.multi_cpu_ns;
    a.loaded_ns += m.s.loaded_ns;
    a.loaded_multi_cpu_ns += m.s.loaded_multi_cpu_ns;
    a.safe_ns += m.s.safe_ns;
    one_all.insert(one_all.end(), m.s.one_cpu_intervals_ns.begin(), m.s.one_cpu_intervals_ns.end());
    safe_all.insert(safe_all.end(), m.s.safe_intervals_ns.begin(), m.s.safe_intervals_ns.end());
    r.mms.push_back(m.s);
  }
  r.total.one_cpu = interval_stats(one_all);
  r.total.safe = interval_stats(safe_all);
  return r;
}

SchedReport analyse_sched_trace(const std::string& path) {
  const TraceInfo info = read_trace_info(path);
  if (!info.command_pid) {
    throw TraceError(path, 0,
                     "no \"# command_pid\" line: record the trace with `exmem trace record --sched` "
                     "(this exmem's recorder writes the command's pid)");
  }
  SchedAnalysis a(*info.command_pid, info.kthreads);
  std::uint64_t bad = 0;
  std::uint64_t line_no = 0;
  const TraceFile file(path);
  std::vector<char> buf(std::size_t{1} << 20);
  std::size_t have = 0;
  auto line = [&](std::string_view l) {
    ++line_no;
    if (l.empty() || l[0] == '#') return;
    if (!is_sched_line(l)) return;
    if (const std::optional<SchedEvent> e = parse_sched_line(l)) {
      a.on_event(*e);
    } else {
      ++bad;
    }
  };
  for (;;) {
    const ssize_t n = ::read(file.fd(), buf.data() + have, buf.size() - have);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw TraceError(path, line_no, fmt::format("cannot read the trace: {}", std::strerror(errno)));
    }
    if (n == 0) break;
    have += static_cast<std::size_t>(n);
    std::size_t start = 0;
    for (;;) {
      const void* nl = std::memchr(buf.data() + start, '\n', have - start);
      if (nl == nullptr) break;
      const auto end = static_cast<std::size_t>(static_cast<const char*>(nl) - buf.data());
      line(std::string_view(buf.data() + start, end - start));
      start = end + 1;
    }
    std::memmove(buf.data(), buf.data() + start, have - start);
    have -= start;
    if (have == buf.size()) buf.resize(buf.size() * 2);
  }
  if (have > 0) line(std::string_view(buf.data(), have));
  SchedReport r = a.finish();
  if (r.sched_events == 0) {
    throw TraceError(path, 0,
                     "no scheduler event (sched_switch, task_newtask, sched_process_exec, sched_process_exit): "
                     "record the trace with `exmem trace record --sched`");
  }
  r.command = info.command;
  r.cpus = info.cpus;
  r.trace_clock = info.trace_clock;
  r.duration_seconds = info.duration_seconds;
  r.lost_events = info.lost_events;
  r.bad_sched_lines = bad;
  return r;
}

}  // namespace exmem::model::workload
