// mm/: processes and memfd_secret (see mm.hpp for what the folder owns).
// process_memory.hpp: who owns every movable or reclaimable page of the model,
// as the kernel's LRU lists, rmap and slab caches know them:
//
// - anonymous pages (FrameKind::User) of a process: movable, never reclaimed
//   (the model has no swap), freed when the process exits or the OOM reaper
//   reaps it;
// - page-cache pages (FrameKind::PageCache) a process read: clean, on the one
//   file LRU (oldest first), mapped by the process that read them while it
//   lives; they stay cached after it exits, until reclaimed or freed;
// - reclaimable kernel slab (FrameKind::Reclaimable: dentries, inodes), the
//   kernel's, freed by its shrinker oldest first.
//
// A caller keeps a PageHandle for each page it allocated here. The handle
// stays valid when reclaim, the OOM reaper or migration took or moved the
// page: pfn() follows a migration, free() of a page already gone is a no-op
// that returns false, and frees the handle. pfn -> handle is a flat hash map
// of the live movable blocks (migrate_pages() asks by pfn), built at the
// first migrate() and kept from then on: a run that never migrates does not
// pay a cache miss per allocation and free for it.
//
// Per process: rss counters (MM_ANONPAGES, MM_FILEPAGES of page-cache pages
// it maps; its secret pages are added by Mm), oom_score_adj, mlockall().
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/huge_pages.hpp"
#include "model/pfn_map.hpp"
#include "model/phys/page_source.hpp"
#include "model/phys/physmem.hpp"
#include "model/types.hpp"

namespace exmem::model::mm {

using Pid = int;
using PageHandle = std::uint32_t;
inline constexpr PageHandle kNoHandle = PfnMap::kAbsent;

// The oom_score_adj range (include/uapi/linux/oom.h).
inline constexpr int kOomScoreAdjMin = -1000;
inline constexpr int kOomScoreAdjMax = 1000;

enum class PageUse : std::uint8_t {
  Anon,       // FrameKind::User, on its process's list
  PageCache,  // FrameKind::PageCache, on the file LRU
  Slab,       // FrameKind::Reclaimable, on the slab shrinker's list
};

struct OwnerStats {
  std::uint64_t anon_allocs = 0;
  std::uint64_t cache_allocs = 0;
  std::uint64_t slab_allocs = 0;
  std::uint64_t frees = 0;             // blocks freed by their caller
  std::uint64_t frees_of_gone = 0;     // frees of a block reclaimed or reaped before: no-ops
  std::uint64_t cache_reclaimed = 0;   // page-cache pages freed by reclaim (shrink_folio_list())
  std::uint64_t slab_reclaimed = 0;    // slab pages freed by the shrinker
  std::uint64_t anon_reaped = 0;       // anonymous pages freed by the OOM reaper or exit
  std::uint64_t migrated = 0;          // blocks moved by migrate()
  std::uint64_t migrate_refused = 0;   // blocks pinned or not ours
};

// A block as allocated, for a caller that keeps it (the synthetic
// workload): free() of it touches the owner's record only when reclaim, the
// OOM killer or migration changed the block since (a bit per record says so),
// so the fast path costs no cache miss on the record.
struct OwnedPage {
  PageHandle handle = kNoHandle;
  Pfn pfn = kNoPfn;  // as allocated
  Pid pid = 0;
  std::uint8_t order = 0;
  PageUse use = PageUse::Anon;
};

class ProcessMemory {
 public:
  explicit ProcessMemory(phys::PageSource& pages);

  // A process's record (Mm calls these at spawn and exit).
  void add_process(Pid pid);
  // exit_mmap(): its anonymous pages are freed (zap_pte_range()), the page
  // cache it mapped stays cached, unmapped. Returns the pages freed.
  std::uint64_t exit_process(Pid pid, CpuId cpu);
  // The OOM reaper (__oom_reap_task_mm()): the same as exit for the memory
  // this file owns.
  std::uint64_t reap(Pid pid, CpuId cpu) { return exit_process(pid, cpu); }

  // do_anonymous_page(): a movable anonymous block of `pid`.
  Result<PageHandle> alloc_anon(Pid pid, phys::Gfp gfp, unsigned order, CpuId cpu);
  // filemap_read() / filemap_fault() of a page not cached: a page-cache block
  // read by `pid` (0: by no process, e.g. readahead of the kernel), mapped by it.
  Result<PageHandle> alloc_cache(Pid pid, phys::Gfp gfp, unsigned order, CpuId cpu);
  // kmem_cache_alloc() of a reclaimable cache needing a new slab.
  Result<PageHandle> alloc_slab(phys::Gfp gfp, unsigned order, CpuId cpu);
  // The caller lets go (munmap, truncate, kmem_cache_free of the slab's last
  // object): the block is freed; false when it was gone already (reclaimed,
  // reaped). The handle is invalid afterwards either way.
  bool free(PageHandle h, CpuId cpu);
  // The block of a handle just allocated, and its free by that description
  // (the same as free(handle) but cheaper while nothing changed the block).
  [[nodiscard]] OwnedPage owned(PageHandle h) const {
    const Slot& x = slots_[h];
    return {h, x.pfn, x.pid, x.order, static_cast<PageUse>(x.use)};
  }
  bool free(const OwnedPage& p, CpuId cpu);
  // The block's pfn now (kNoPfn when gone), its order and use.
  [[nodiscard]] Pfn pfn(PageHandle h) const { return slots_[h].pfn; }
  [[nodiscard]] unsigned order(PageHandle h) const { return slots_[h].order; }
  [[nodiscard]] PageUse use(PageHandle h) const { return static_cast<PageUse>(slots_[h].use); }
  // FOLL_PIN | FOLL_LONGTERM: a pinned block refuses migration.
  void set_pinned(PageHandle h, bool pinned);

  // shrink_node() on the file LRU: up to nr pages of clean page cache, oldest
  // first; pages mapped by an mlocked process are skipped (the unevictable
  // list). Then shrink_slab(): reclaimable slab, oldest first.
  // Only pages below pfn `below` (the zones the allocation may use).
  std::uint64_t reclaim_page_cache(std::uint64_t nr, CpuId cpu, Pfn below = kNoPfn);
  std::uint64_t shrink_slab(std::uint64_t nr, CpuId cpu);
  // migrate_pages() of one movable block: its record moves to `to`.
  bool migrate(Pfn from, Pfn to, unsigned order);

  // Per-process figures (0 for an unknown pid).
  [[nodiscard]] std::uint64_t anon_pages(Pid pid) const;
  [[nodiscard]] std::uint64_t file_pages(Pid pid) const;
  [[nodiscard]] bool mlocked(Pid pid) const;
  void set_mlocked(Pid pid, bool on);  // mlockall(MCL_CURRENT | MCL_FUTURE) / munlockall()

  [[nodiscard]] std::uint64_t cache_pages() const { return cache_pages_; }
  [[nodiscard]] std::uint64_t anon_pages() const { return anon_pages_; }
  [[nodiscard]] std::uint64_t slab_pages() const { return slab_pages_; }
  [[nodiscard]] const OwnerStats& stats() const { return stats_; }
  [[nodiscard]] std::size_t model_bytes() const;
  // Every record's frames are of its kind; pages of each kind counted; the
  // lists and the pfn map agree with the records.
  [[nodiscard]] std::vector<std::string> check(const phys::PhysMem& phys) const;

 private:
  struct Slot {
    Pfn pfn = kNoPfn;        // kNoPfn: gone (or the slot is free)
    Pid pid = 0;             // anon: its process; page cache: the process mapping it (0: none)
    std::uint32_t gen = 0;   // given at allocation: the queue entries of earlier blocks go stale
    std::uint8_t order = 0;
    std::uint8_t use = 0;    // PageUse
    std::uint8_t state = 0;  // kFree, kLive, kGone
    std::uint8_t pinned = 0;
  };
  static_assert(sizeof(Slot) == 16);
  // The file LRU and the slab list, oldest first: entries are appended at
  // allocation and left in place when their block goes (stale: the slot's
  // generation moved on), so a free touches no neighbour; reclaim skips stale
  // entries and the queue is compacted when they dominate.
  struct Queue {
    struct Entry {
      std::uint32_t slot;
      std::uint32_t gen;
    };
    std::vector<Entry> entries;
    std::size_t head = 0;
    std::uint64_t live = 0;  // blocks live in it
  };
  struct Proc {
    bool alive = false;
    bool mlocked = false;
    std::uint64_t anon = 0;  // pages
    std::uint64_t file = 0;  // page-cache pages mapped
  };

  Result<PageHandle> alloc(Pid pid, PageUse use, phys::Gfp gfp, unsigned order, CpuId cpu);
  std::uint32_t new_slot();
  void push(Queue& q, std::uint32_t s);
  [[nodiscard]] bool current(const Queue::Entry& e) const {
    return slots_[e.slot].gen == e.gen && slots_[e.slot].state == 1;  // kLive
  }
  void compact(Queue& q);
  Proc* proc(Pid pid);
  [[nodiscard]] const Proc* proc(Pid pid) const;
  // The block leaves its list and the pfn map and goes back to the allocator.
  void uncount(PageUse use, Pid pid, unsigned order, Pfn pfn);
  void drop(std::uint32_t s, CpuId cpu, bool gone);

  phys::PageSource& pages_;
  HugeVector<Slot> slots_;
  std::vector<std::uint32_t> free_slots_;
  std::vector<Proc> procs_;  // index = pid
  Queue file_lru_;
  Queue slab_list_;
  // One bit per record: set when reclaim, the OOM killer or migration
  // changed its block, cleared when the record is reused.
  std::vector<std::uint64_t> changed_;
  void mark_changed(std::uint32_t s) {
    if ((s >> 6) >= changed_.size()) changed_.resize((s >> 6) + 1, 0);
    changed_[s >> 6] |= std::uint64_t{1} << (s & 63);
  }
  [[nodiscard]] bool is_changed(std::uint32_t s) const {
    return (s >> 6) < changed_.size() && ((changed_[s >> 6] >> (s & 63)) & 1) != 0;
  }
  std::uint32_t next_gen_ = 0;
  PfnMap movable_;       // pfn -> slot of the live movable blocks, once indexed_
  bool indexed_ = false;  // set by the first migrate()
  std::uint64_t cache_pages_ = 0;
  std::uint64_t anon_pages_ = 0;
  std::uint64_t slab_pages_ = 0;
  OwnerStats stats_;
};

}  // namespace exmem::model::mm
