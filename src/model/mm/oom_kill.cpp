// mm/: processes and memfd_secret (see mm.hpp for what the folder owns).
// oom_kill.cpp: choosing the victim and killing it.
#include "model/mm/oom_kill.hpp"

#include "model/mm/mm.hpp"

namespace exmem::model::mm {

long oom_badness(const Mm& mm, Pid pid, std::uint64_t totalpages) {
  if (!mm.alive(pid) || mm.unkillable(pid)) return kBadnessNever;  // oom_unkillable_task()
  long adj = mm.oom_score_adj(pid);
  if (adj == kOomScoreAdjMin) return kBadnessNever;
  long points = static_cast<long>(mm.rss(pid)) + 0 /* MM_SWAPENTS */ + static_cast<long>(mm.pgtables_pages(pid));
  adj *= static_cast<long>(totalpages / 1000);
  points += adj;
  return points;
}

Pid select_bad_process(const Mm& mm, std::uint64_t totalpages, long* points) {
  Pid chosen = 0;
  long chosen_points = LONG_MIN;
  for (Pid pid = 1; pid <= mm.max_pid(); ++pid) {  // for_each_process(): creation order
    // oom_evaluate_task()
    if (!mm.alive(pid)) continue;
    const long p = oom_badness(mm, pid, totalpages);
    if (p == kBadnessNever || p < chosen_points) continue;
    chosen = pid;
    chosen_points = p;
  }
  if (points != nullptr) *points = chosen_points;
  return chosen;
}

bool out_of_memory(Mm& mm, phys::Gfp gfp, unsigned order, std::uint64_t totalpages, CpuId cpu) {
  (void)order;
  OomStats& st = mm.oom();
  ++st.invocations;
  // The OOM killer does not compensate for IO-less reclaim. (The kernel
  // returns true here and the allocation retries; the model's caller fails.)
  if ((gfp & phys::__GFP_FS) == 0) {
    ++st.skipped_nofs;
    return false;
  }
  long points = 0;
  const Pid victim = select_bad_process(mm, totalpages, &points);
  if (victim == 0) {
    ++st.no_victim;  // the kernel panics: "System is deadlocked on memory"
    return false;
  }
  // oom_kill_process() -> __oom_kill_process() + the OOM reaper
  OomVictim v;
  v.pid = victim;
  v.role = mm.name(victim);
  v.badness = points;
  v.rss = mm.rss(victim);
  v.secret_pages = mm.secret_rss(victim);
  v.freed = mm.oom_kill(victim, cpu);
  ++st.kills;
  if (st.victims.size() < OomStats::kMaxVictimsKept) st.victims.push_back(std::move(v));
  return true;
}

}  // namespace exmem::model::mm
