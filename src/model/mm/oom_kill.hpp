// mm/: processes and memfd_secret (see mm.hpp for what the folder owns).
// oom_kill.hpp: the OOM killer (mm/oom_kill.c): oom_badness(),
// select_bad_process() over the processes in creation order, and the kill.
// The OOM reaper's work is done at once: the victim's anonymous memory is
// freed before out_of_memory() returns, then it exits (its fds closed, its
// mappings dropped; a secretmem file goes with its last reference, so a file
// whose fd was passed to a live process survives the kill).
#pragma once

#include <climits>
#include <cstdint>
#include <string>
#include <vector>

#include "model/phys/gfp.hpp"
#include "model/types.hpp"

namespace exmem::model::mm {

using Pid = int;
class Mm;

inline constexpr long kBadnessNever = LONG_MIN;  // oom_badness() of a task never chosen

struct OomVictim {
  Pid pid = 0;
  std::string role;  // what the workload named it ("" when unnamed)
  long badness = 0;
  std::uint64_t rss = 0;           // pages, at the kill
  std::uint64_t secret_pages = 0;  // of rss: secretmem and MAP_EXCLUSIVE pages
  std::uint64_t freed = 0;         // pages freed by the kill (reaped, and files released)
};

struct OomStats {
  std::uint64_t invocations = 0;  // out_of_memory() calls
  std::uint64_t kills = 0;
  std::uint64_t no_victim = 0;     // nothing killable ("Out of memory and no killable processes")
  std::uint64_t skipped_nofs = 0;  // !__GFP_FS: the OOM killer does not run
  std::vector<OomVictim> victims;  // the kills in order, the first kMaxVictimsKept of them
  static constexpr std::size_t kMaxVictimsKept = 1000;
};

// mirrors oom_badness(): rss + swap entries (0: no swap) + page-table pages,
// plus oom_score_adj * totalpages / 1000; kBadnessNever for a dead, unkillable
// or OOM_SCORE_ADJ_MIN task.
long oom_badness(const Mm& mm, Pid pid, std::uint64_t totalpages);
// mirrors select_bad_process(): the highest badness, the later process on a
// tie (oom_evaluate_task() skips only those scoring less); 0 when none.
Pid select_bad_process(const Mm& mm, std::uint64_t totalpages, long* points = nullptr);
// mirrors out_of_memory() for the whole machine (no memcg, no cpuset): false
// when the OOM killer does not run (!__GFP_FS) or finds no victim.
bool out_of_memory(Mm& mm, phys::Gfp gfp, unsigned order, std::uint64_t totalpages, CpuId cpu);

}  // namespace exmem::model::mm
