// mm/: processes and memfd_secret (see mm.hpp for what the folder owns).
// process_memory.cpp: anonymous pages, the page cache's file LRU and
// reclaimable slab, with their owners.
#include "model/mm/process_memory.hpp"

#include <fmt/format.h>

namespace exmem::model::mm {

namespace {
enum : std::uint8_t { kFree = 0, kLive = 1, kGone = 2 };
}  // namespace

// ---- ProcessMemory ---------------------------------------------------------

ProcessMemory::ProcessMemory(phys::PageSource& pages) : pages_(pages) {}

ProcessMemory::Proc* ProcessMemory::proc(Pid pid) {
  if (pid <= 0 || static_cast<std::size_t>(pid) >= procs_.size()) return nullptr;
  Proc& p = procs_[static_cast<std::size_t>(pid)];
  return p.alive ? &p : nullptr;
}
const ProcessMemory::Proc* ProcessMemory::proc(Pid pid) const {
  if (pid <= 0 || static_cast<std::size_t>(pid) >= procs_.size()) return nullptr;
  const Proc& p = procs_[static_cast<std::size_t>(pid)];
  return p.alive ? &p : nullptr;
}

void ProcessMemory::add_process(Pid pid) {
  if (pid <= 0) return;
  if (static_cast<std::size_t>(pid) >= procs_.size()) procs_.resize(static_cast<std::size_t>(pid) + 1);
  procs_[static_cast<std::size_t>(pid)] = Proc{};
  procs_[static_cast<std::size_t>(pid)].alive = true;
}

std::uint32_t ProcessMemory::new_slot() {
  if (!free_slots_.empty()) {
    const std::uint32_t s = free_slots_.back();
    free_slots_.pop_back();
    return s;
  }
  slots_.emplace_back();
  return static_cast<std::uint32_t>(slots_.size() - 1);
}

void ProcessMemory::push(Queue& q, std::uint32_t s) {
  q.entries.push_back({s, slots_[s].gen});
  if (q.entries.size() - q.head > 2 * q.live + 4096) compact(q);
}

// Drops the stale entries (and the consumed head) of a queue, keeping order.
void ProcessMemory::compact(Queue& q) {
  std::size_t out = 0;
  for (std::size_t i = q.head; i < q.entries.size(); ++i) {
    if (current(q.entries[i])) q.entries[out++] = q.entries[i];
  }
  q.entries.resize(out);
  q.head = 0;
}

Result<PageHandle> ProcessMemory::alloc(Pid pid, PageUse use, phys::Gfp gfp, unsigned order, CpuId cpu) {
  const phys::FrameKind kind = use == PageUse::Anon        ? phys::FrameKind::User
                               : use == PageUse::PageCache ? phys::FrameKind::PageCache
                                                           : phys::FrameKind::Reclaimable;
  if (use == PageUse::Anon && proc(pid) == nullptr) return Result<PageHandle>::error(-ESRCH);
  const Result<Pfn> r = pages_.alloc_pages(gfp, order, cpu, kind);
  if (!r.ok()) return Result<PageHandle>::error(r.err);
  // The allocation may have run reclaim or the OOM killer: the process may be gone.
  Proc* p = proc(pid);
  if (use == PageUse::Anon && p == nullptr) {
    pages_.free_pages(r.value, order, cpu);
    return Result<PageHandle>::error(-ENOMEM);
  }
  const std::uint32_t s = new_slot();
  if (is_changed(s)) changed_[s >> 6] &= ~(std::uint64_t{1} << (s & 63));
  Slot& x = slots_[s];
  x.pfn = r.value;
  x.order = static_cast<std::uint8_t>(order);
  x.use = static_cast<std::uint8_t>(use);
  x.state = kLive;
  x.pinned = 0;
  x.gen = ++next_gen_;  // queue entries of the record's earlier blocks are stale now
  x.pid = use == PageUse::Slab || p == nullptr ? 0 : pid;
  const std::uint64_t n = std::uint64_t{1} << order;
  switch (use) {
    case PageUse::Anon:
      p->anon += n;
      anon_pages_ += n;
      ++stats_.anon_allocs;
      break;
    case PageUse::PageCache:
      if (p != nullptr) p->file += n;
      cache_pages_ += n;
      ++stats_.cache_allocs;
      break;
    case PageUse::Slab:
      slab_pages_ += n;
      ++stats_.slab_allocs;
      break;
  }
  if (use == PageUse::PageCache) {
    ++file_lru_.live;
    push(file_lru_, s);
  } else if (use == PageUse::Slab) {
    ++slab_list_.live;
    push(slab_list_, s);
  }
  if (use != PageUse::Slab && indexed_) movable_.insert(x.pfn, s);
  return Result<PageHandle>{s, 0};
}

Result<PageHandle> ProcessMemory::alloc_anon(Pid pid, phys::Gfp gfp, unsigned order, CpuId cpu) {
  return alloc(pid, PageUse::Anon, gfp, order, cpu);
}
Result<PageHandle> ProcessMemory::alloc_cache(Pid pid, phys::Gfp gfp, unsigned order, CpuId cpu) {
  return alloc(pid, PageUse::PageCache, gfp, order, cpu);
}
Result<PageHandle> ProcessMemory::alloc_slab(phys::Gfp gfp, unsigned order, CpuId cpu) {
  return alloc(0, PageUse::Slab, gfp, order, cpu);
}

// A block leaves its owner's counts (and the pfn index, when built).
void ProcessMemory::uncount(PageUse use, Pid pid, unsigned order, Pfn pfn) {
  const std::uint64_t n = std::uint64_t{1} << order;
  switch (use) {
    case PageUse::Anon:
      procs_[static_cast<std::size_t>(pid)].anon -= n;
      anon_pages_ -= n;
      break;
    case PageUse::PageCache:
      if (Proc* q = proc(pid)) q->file -= n;
      cache_pages_ -= n;
      --file_lru_.live;
      break;
    case PageUse::Slab:
      slab_pages_ -= n;
      --slab_list_.live;
      break;
  }
  if (use != PageUse::Slab && indexed_) movable_.erase(pfn);
}

void ProcessMemory::drop(std::uint32_t s, CpuId cpu, bool gone) {
  Slot& x = slots_[s];
  const Pfn pfn = x.pfn;
  uncount(static_cast<PageUse>(x.use), x.pid, x.order, pfn);
  x.pfn = kNoPfn;
  if (gone) mark_changed(s);
  x.state = gone ? kGone : kFree;
  if (!gone) free_slots_.push_back(s);
  pages_.free_pages(pfn, x.order, cpu);
}

bool ProcessMemory::free(PageHandle h, CpuId cpu) {
  Slot& x = slots_[h];
  if (x.state == kGone) {
    x.state = kFree;
    free_slots_.push_back(h);
    ++stats_.frees_of_gone;
    return false;
  }
  if (x.state != kLive) return false;
  ++stats_.frees;
  drop(h, cpu, false);
  return true;
}

// The fast path: nothing changed the block since its allocation, so the
// caller's description is the record's; the record is only written.
bool ProcessMemory::free(const OwnedPage& p, CpuId cpu) {
  if (is_changed(p.handle)) return free(p.handle, cpu);
  uncount(p.use, p.pid, p.order, p.pfn);
  Slot& x = slots_[p.handle];  // written, not read: no wait on a cache miss
  x.pfn = kNoPfn;
  x.state = kFree;
  free_slots_.push_back(p.handle);
  ++stats_.frees;
  pages_.free_pages(p.pfn, p.order, cpu);
  return true;
}

void ProcessMemory::set_pinned(PageHandle h, bool pinned) { slots_[h].pinned = pinned ? 1 : 0; }

std::uint64_t ProcessMemory::exit_process(Pid pid, CpuId cpu) {
  Proc* p = proc(pid);
  if (p == nullptr) return 0;
  std::uint64_t freed = 0;
  // zap_pte_range() over its mappings: the model keeps no list per process,
  // it looks for its blocks (exits of processes with anonymous memory are rare).
  if (p->anon != 0) {
    for (std::uint32_t s = 0; s < slots_.size(); ++s) {
      const Slot& x = slots_[s];
      if (x.state != kLive || x.pid != pid || static_cast<PageUse>(x.use) != PageUse::Anon) continue;
      freed += std::uint64_t{1} << x.order;
      drop(s, cpu, true);
    }
    p = &procs_[static_cast<std::size_t>(pid)];
  }
  stats_.anon_reaped += freed;
  // Its page-cache pages stay cached; no longer mapped by a live process.
  p->alive = false;
  p->file = 0;
  p->mlocked = false;
  return freed;
}

// mirrors shrink_folio_list() over the inactive file LRU, oldest first: clean
// page cache is freed (unmapped first when mapped, try_to_unmap()); a page an
// mlocked process maps is unevictable and rotated out of the way, as is a
// page above the zones the allocation may use.
std::uint64_t ProcessMemory::reclaim_page_cache(std::uint64_t nr, CpuId cpu, Pfn below) {
  Queue& q = file_lru_;
  std::uint64_t freed = 0;
  std::size_t scan = q.entries.size() - q.head;  // at most one pass
  while (freed < nr && scan > 0 && q.head < q.entries.size()) {
    --scan;
    const Queue::Entry e = q.entries[q.head++];
    if (!current(e)) continue;
    const Slot& x = slots_[e.slot];
    const Proc* p = proc(x.pid);
    if ((p != nullptr && p->mlocked) || x.pfn >= below) {
      q.entries.push_back(e);  // to the newest end: scanned again last
      continue;
    }
    const std::uint64_t n = std::uint64_t{1} << x.order;
    drop(e.slot, cpu, true);
    freed += n;
    stats_.cache_reclaimed += n;
  }
  if (q.head > q.entries.size() / 2) compact(q);
  return freed;
}

// mirrors shrink_slab() over the reclaimable caches: the oldest slabs first
std::uint64_t ProcessMemory::shrink_slab(std::uint64_t nr, CpuId cpu) {
  Queue& q = slab_list_;
  std::uint64_t freed = 0;
  while (freed < nr && q.head < q.entries.size()) {
    const Queue::Entry e = q.entries[q.head++];
    if (!current(e)) continue;
    const std::uint64_t n = std::uint64_t{1} << slots_[e.slot].order;
    drop(e.slot, cpu, true);
    freed += n;
    stats_.slab_reclaimed += n;
  }
  if (q.head > q.entries.size() / 2) compact(q);
  return freed;
}

// mirrors migrate_folio_move(): the owner's record follows the folio to its
// new pfn; a long-term pinned folio is refused (folio_maybe_dma_pinned()).
bool ProcessMemory::migrate(Pfn from, Pfn to, unsigned order) {
  if (!indexed_) {
    // The first migration: index the live movable blocks by pfn, and keep
    // the index from now on (a run that never migrates never pays for it).
    indexed_ = true;
    for (std::uint32_t i = 0; i < slots_.size(); ++i) {
      const Slot& x = slots_[i];
      if (x.state == kLive && static_cast<PageUse>(x.use) != PageUse::Slab) movable_.insert(x.pfn, i);
    }
  }
  const std::uint32_t s = movable_.find(from);
  if (s == kNoHandle || slots_[s].order != order || slots_[s].pinned) {
    ++stats_.migrate_refused;
    return false;
  }
  movable_.erase(from);
  slots_[s].pfn = to;
  mark_changed(s);
  movable_.insert(to, s);
  ++stats_.migrated;
  return true;
}

std::uint64_t ProcessMemory::anon_pages(Pid pid) const {
  const Proc* p = proc(pid);
  return p == nullptr ? 0 : p->anon;
}
std::uint64_t ProcessMemory::file_pages(Pid pid) const {
  const Proc* p = proc(pid);
  return p == nullptr ? 0 : p->file;
}
bool ProcessMemory::mlocked(Pid pid) const {
  const Proc* p = proc(pid);
  return p != nullptr && p->mlocked;
}
void ProcessMemory::set_mlocked(Pid pid, bool on) {
  if (Proc* p = proc(pid)) p->mlocked = on;
}

std::size_t ProcessMemory::model_bytes() const {
  return sizeof(*this) + slots_.capacity() * sizeof(Slot) + free_slots_.capacity() * 4 +
         procs_.capacity() * sizeof(Proc) + movable_.model_bytes() + changed_.capacity() * 8 +
         (file_lru_.entries.capacity() + slab_list_.entries.capacity()) * sizeof(Queue::Entry);
}

std::vector<std::string> ProcessMemory::check(const phys::PhysMem& phys) const {
  std::vector<std::string> v;
  auto bad = [&](std::string s) {
    if (v.size() < 64) v.push_back(std::move(s));
  };
  std::uint64_t anon = 0;
  std::uint64_t cache = 0;
  std::uint64_t slab = 0;
  std::vector<std::uint64_t> anon_of(procs_.size(), 0);
  std::vector<std::uint64_t> file_of(procs_.size(), 0);
  std::size_t movable = 0;
  for (std::uint32_t s = 0; s < slots_.size(); ++s) {
    const Slot& x = slots_[s];
    if (x.state != kLive) {
      if (x.pfn != kNoPfn) bad(fmt::format("owner record {}: not live but at pfn {:#x}", s, x.pfn));
      continue;
    }
    const auto use = static_cast<PageUse>(x.use);
    const phys::FrameKind want = use == PageUse::Anon        ? phys::FrameKind::User
                                 : use == PageUse::PageCache ? phys::FrameKind::PageCache
                                                             : phys::FrameKind::Reclaimable;
    const std::uint64_t n = std::uint64_t{1} << x.order;
    if (x.pfn >= phys.nr_frames() || phys.kind(x.pfn) != want) {
      bad(fmt::format("owner record {}: pfn {:#x} is not a {} frame", s, x.pfn,
                      phys::frame_kind_name(static_cast<std::uint8_t>(want))));
    }
    if (use == PageUse::Anon) {
      anon += n;
      if (x.pid <= 0 || static_cast<std::size_t>(x.pid) >= procs_.size() || !procs_[static_cast<std::size_t>(x.pid)].alive) {
        bad(fmt::format("anonymous block at pfn {:#x} belongs to pid {}, not a live process", x.pfn, x.pid));
      } else {
        anon_of[static_cast<std::size_t>(x.pid)] += n;
      }
    } else if (use == PageUse::PageCache) {
      cache += n;
      if (proc(x.pid) != nullptr) file_of[static_cast<std::size_t>(x.pid)] += n;
    } else {
      slab += n;
    }
    if (use != PageUse::Slab && indexed_) {
      ++movable;
      if (movable_.find(x.pfn) != s) bad(fmt::format("movable block at pfn {:#x}: not found by its pfn", x.pfn));
    }
  }
  if (indexed_ && movable != movable_.size()) bad(fmt::format("{} movable blocks but the pfn map holds {}", movable, movable_.size()));
  if (anon != anon_pages_) bad(fmt::format("anonymous pages: {} held, {} counted", anon, anon_pages_));
  if (cache != cache_pages_) bad(fmt::format("page-cache pages: {} held, {} counted", cache, cache_pages_));
  if (slab != slab_pages_) bad(fmt::format("reclaimable slab pages: {} held, {} counted", slab, slab_pages_));
  for (std::size_t i = 0; i < procs_.size(); ++i) {
    const Proc& p = procs_[i];
    if (!p.alive) continue;
    if (p.anon != anon_of[i]) bad(fmt::format("pid {}: MM_ANONPAGES {} but it holds {}", i, p.anon, anon_of[i]));
    if (p.file != file_of[i]) bad(fmt::format("pid {}: mapped page cache {} but it maps {}", i, p.file, file_of[i]));
  }
  // Queues: each live page-cache and slab block current in its queue exactly once.
  auto walk = [&](const Queue& q, PageUse use, const char* what) {
    std::vector<std::uint8_t> seen(slots_.size(), 0);
    std::uint64_t count = 0;
    for (std::size_t i = q.head; i < q.entries.size(); ++i) {
      const Queue::Entry& e = q.entries[i];
      if (!current(e)) continue;
      if (static_cast<PageUse>(slots_[e.slot].use) != use) bad(fmt::format("{}: record {} of another use", what, e.slot));
      if (seen[e.slot]++ != 0) bad(fmt::format("{}: record {} queued twice", what, e.slot));
      ++count;
    }
    std::uint64_t live = 0;
    for (const Slot& x : slots_) live += x.state == kLive && static_cast<PageUse>(x.use) == use ? 1 : 0;
    if (count != live || count != q.live) {
      bad(fmt::format("{}: {} live blocks, {} queued, {} counted", what, live, count, q.live));
    }
  };
  walk(file_lru_, PageUse::PageCache, "file LRU");
  walk(slab_list_, PageUse::Slab, "slab list");
  return v;
}

}  // namespace exmem::model::mm
