// users/: other users of unmapped pages (see README.md for what the folder owns).
// execmem.cpp: the execmem ROX cache.
#include "model/users/execmem.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace exmem::model::users {

namespace {
constexpr std::uint64_t kNoArea = ~std::uint64_t{0};
constexpr std::uint64_t kRangePages = (kModulesEnd - kModulesVaddr) / kPageSize;
// vm_area_alloc_pages() for the huge mapping: a high-order attempt that does
// not retry hard (inferred, not read in vmalloc.c: __GFP_NORETRY), then the
// fallback to base pages.
constexpr phys::Gfp kHugeGfp = phys::GFP_KERNEL | phys::__GFP_NOWARN | phys::__GFP_NORETRY;
constexpr phys::Gfp kBaseGfp = phys::GFP_KERNEL | phys::__GFP_NOWARN;

std::uint64_t round_up_2m(std::uint64_t pages) {
  return (pages + kPagesPer2M - 1) / kPagesPer2M * kPagesPer2M;
}

}  // namespace

ExecmemCache::ExecmemCache(phys::PageSource& pages, directmap::DirectMap& dmap,
                           const phys::PhysMem& phys)
    : pages_(pages), dmap_(dmap), phys_(phys) {}

// mirrors execmem_alloc() -> execmem_cache_alloc()
Result<std::uint64_t> ExecmemCache::alloc(std::uint64_t pages, CpuId cpu) {
  using R = Result<std::uint64_t>;
  if (pages == 0 || pages > kRangePages) return R::error(-EINVAL);
  free_pending(cpu);
  auto take = [&]() -> std::uint64_t {  // __execmem_cache_alloc(): the first free area that fits
    for (auto it = free_.begin(); it != free_.end(); ++it) {
      if (it->second < pages) continue;
      const std::uint64_t start = it->first;
      const std::uint64_t len = it->second;
      free_.erase(it);
      if (len > pages) free_.emplace(start + pages, len - pages);
      busy_.emplace(start, pages);
      free_pages_ -= pages;
      busy_pages_ += pages;
      return start;
    }
    return kNoArea;
  };
  std::uint64_t start = take();
  if (start == kNoArea) {
    if (populate(pages, cpu) != 0) {
      ++stats_.load_failures;
      return R::error(-ENOMEM);
    }
    start = take();
  }
  // execmem_alloc_rw(): execmem_force_rw(), the text is written, then
  // module_enable_text_rox(): execmem_restore_rox().
  int err = force_rw(start, pages, cpu);
  // The module's text is written here.
  if (err == 0) err = restore_rox(start, pages, cpu);
  if (err != 0) {
    // execmem_alloc_rw() frees what it got (__free(execmem)): execmem_free()
    // (pending ranges were tried at this load's start).
    unload(start, cpu);
    ++stats_.load_failures;
    return R::error(-ENOMEM);
  }
  ++stats_.loads;
  return R{kModulesVaddr + start * kPageSize, 0};
}

// execmem_force_rw(): set_memory_nx(), then set_memory_rw().
int ExecmemCache::force_rw(std::uint64_t start, std::uint64_t pages, CpuId cpu) {
  const int err = change_attr(start, pages, directmap::DirectMap::AliasOp::Nx, cpu);
  return err != 0 ? err : change_attr(start, pages, directmap::DirectMap::AliasOp::Rw, cpu);
}

// execmem_restore_rox(): set_memory_rox().
int ExecmemCache::restore_rox(std::uint64_t start, std::uint64_t pages, CpuId cpu) {
  return change_attr(start, pages, directmap::DirectMap::AliasOp::Rox, cpu);
}

// set_memory_*() on cache addresses: the primary walk (__change_page_attr_set_clr())
// over the vmalloc mapping yields one step per vmalloc PMD leaf changed whole
// and one per 4 KiB PTE; a PMD leaf the range covers only in part is split
// first. The direct map sees each step's alias (DirectMap::alias_change_page_attr()).
int ExecmemCache::change_attr(std::uint64_t start, std::uint64_t pages,
                              directmap::DirectMap::AliasOp op, CpuId cpu) {
  std::vector<directmap::DirectMap::AliasStep> steps;
  std::vector<std::pair<Vm*, std::size_t>> split_blocks;  // vmalloc leaves split in the range
  const std::uint64_t end = start + pages;
  std::uint64_t p = start;
  while (p < end) {
    auto it = vms_.upper_bound(p);
    --it;  // the caller's range lies inside the vm areas
    Vm& vm = it->second;
    const std::uint64_t off = p - it->first;
    if (!vm.huge) {
      steps.push_back({vm.blocks[off], 1, false});
      ++p;
      continue;
    }
    const std::size_t b = off / kPagesPer2M;
    const std::uint64_t b_start = it->first + b * kPagesPer2M;
    const std::uint64_t b_end = b_start + kPagesPer2M;
    if (!vm.split[b] && p == b_start && end >= b_end) {  // the whole leaf, in place
      steps.push_back({vm.blocks[b], static_cast<Pfn>(kPagesPer2M), false});
      p = b_end;
      continue;
    }
    bool split_now = false;
    if (!vm.split[b]) {
      vm.split[b] = true;
      split_now = true;
      ++stats_.vmalloc_splits;
    }
    split_blocks.emplace_back(&vm, b);
    const std::uint64_t stop = std::min(end, b_end);
    for (std::uint64_t q = p; q < stop; ++q) {
      steps.push_back({static_cast<Pfn>(vm.blocks[b] + (q - b_start)), 1, split_now && q == p});
    }
    p = stop;
  }
  // set_memory_rox()'s cpa_collapse_large_pages() over the vmalloc range: every
  // split leaf in it is uniform again (the whole block is ROX once more).
  std::uint32_t collapses = 0;
  if (op == directmap::DirectMap::AliasOp::Rox && dmap_.collapse_enabled()) {
    for (const auto& [vm, b] : split_blocks) {
      if (!vm->split[b]) continue;
      vm->split[b] = false;
      ++collapses;
    }
    stats_.vmalloc_collapses += collapses;
  }
  return dmap_.alias_change_page_attr(op, steps, collapses, cpu);
}

// mirrors execmem_free() -> execmem_cache_free(), and the work it schedules
int ExecmemCache::free(std::uint64_t addr, CpuId cpu) {
  if (addr < kModulesVaddr || addr >= kModulesEnd || (addr - kModulesVaddr) % kPageSize != 0) {
    return -EINVAL;
  }
  const std::uint64_t start = (addr - kModulesVaddr) / kPageSize;
  // A range already pending was freed once: a second free is the caller's bug.
  if (!busy_.contains(start) || pending_.contains(start)) return -EINVAL;
  free_pending(cpu);
  ++stats_.unloads;
  unload(start, cpu);
  return 0;
}

// execmem_cache_free() of the busy range at start
void ExecmemCache::unload(std::uint64_t start, CpuId cpu) {
  if (free_busy(start, cpu) != 0) {
    // execmem_cache_free(): pending_free_set(), the range stays busy, and
    // execmem_cache_free_slow() is scheduled; the caller sees the free done.
    pending_.emplace(start, busy_.at(start));
    ++stats_.pending_frees;
    return;
  }
  clean(cpu);  // schedule_work(&execmem_cache_clean_work), run at once
}

// __execmem_cache_free(): execmem_force_rw(), execmem_fill_trapping_insns(),
// execmem_restore_rox() (whose error the kernel ignores; on an alias that
// force_rw has just split it changes entries in place and cannot fail),
// then the range joins the free areas.
int ExecmemCache::free_busy(std::uint64_t start, CpuId cpu) {
  const std::uint64_t pages = busy_.at(start);
  if (const int err = force_rw(start, pages, cpu); err != 0) return err;
  restore_rox(start, pages, cpu);
  busy_.erase(start);
  busy_pages_ -= pages;
  add_free(start, pages);
  return 0;
}

// mirrors execmem_cache_free_slow(): each pending range is freed if its
// execmem_force_rw() now succeeds, then execmem_cache_clean().
void ExecmemCache::free_pending(CpuId cpu) {
  if (pending_.empty()) return;
  bool freed = false;
  for (auto it = pending_.begin(); it != pending_.end();) {
    ++stats_.pending_retries;
    if (free_busy(it->first, cpu) == 0) {
      it = pending_.erase(it);
      freed = true;
    } else {
      ++it;
    }
  }
  if (freed) clean(cpu);
}

std::uint64_t ExecmemCache::pending_pages() const {
  std::uint64_t n = 0;
  for (const auto& [start, pages] : pending_) n += pages;
  return n;
}

// mirrors execmem_cache_add(): merged with the free areas on either side
void ExecmemCache::add_free(std::uint64_t start, std::uint64_t pages) {
  free_pages_ += pages;
  auto next = free_.lower_bound(start);
  if (next != free_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second == start) {
      start = prev->first;
      pages += prev->second;
      free_.erase(prev);
    }
  }
  if (next != free_.end() && next->first == start + pages) {
    pages += next->second;
    free_.erase(next);
  }
  free_.emplace(start, pages);
}

// The lowest 2 MiB aligned hole of the module space that fits (alloc_vmap_area()
// with the PMD alignment execmem_vmalloc() asks for VM_ALLOW_HUGE_VMAP).
std::uint64_t ExecmemCache::find_vmap_area(std::uint64_t pages) const {
  std::uint64_t cand = 0;
  for (const auto& [start, vm] : vms_) {
    if (cand + pages <= start) return cand;
    cand = round_up_2m(start + vm.pages);
  }
  return cand + pages <= kRangePages ? cand : kNoArea;
}

// vmalloc's fallback to order-0 pages (vm_area_alloc_pages() with order 0).
int ExecmemCache::vmalloc_base_pages(Vm& vm, std::uint64_t pages, CpuId cpu) {
  vm.pages = pages;
  vm.huge = false;
  vm.blocks.clear();
  vm.split.clear();
  for (std::uint64_t i = 0; i < pages; ++i) {
    const Result<Pfn> r = pages_.alloc_pages(kBaseGfp, 0, cpu, phys::FrameKind::Kernel);
    if (!r.ok()) {
      for (const Pfn p : vm.blocks) pages_.free_pages(p, 0, cpu);
      vm.blocks.clear();
      return -ENOMEM;
    }
    vm.blocks.push_back(r.value);
  }
  return 0;
}

// mirrors execmem_cache_populate(): vmalloc the area (round_up(size, PMD_SIZE),
// else alloc_size = size), set_memory_rox() it, add it
int ExecmemCache::populate(std::uint64_t pages, CpuId cpu) {
  Vm vm;
  std::uint64_t start = kNoArea;
  const std::uint64_t rounded = round_up_2m(pages);
  // execmem_vmalloc(range, alloc_size, PAGE_KERNEL, VM_ALLOW_HUGE_VMAP):
  // __vmalloc_node_range() tries PMD-sized blocks ...
  if (const std::uint64_t s = find_vmap_area(rounded); s != kNoArea) {
    vm.pages = rounded;
    vm.huge = true;
    for (std::uint64_t i = 0; i < rounded / kPagesPer2M; ++i) {
      const Result<Pfn> r = pages_.alloc_pages(kHugeGfp, kHpagePmdOrder, cpu, phys::FrameKind::Kernel);
      if (!r.ok()) {
        vm.huge = false;
        break;
      }
      vm.blocks.push_back(r.value);
    }
    if (vm.huge) {
      vm.split.assign(vm.blocks.size(), false);
      start = s;
    } else {
      // ... else, as vmalloc retries with shift = PAGE_SHIFT, base pages.
      for (const Pfn b : vm.blocks) pages_.free_pages(b, kHpagePmdOrder, cpu);
      if (vmalloc_base_pages(vm, rounded, cpu) == 0) start = s;
    }
  }
  // if (!p) { alloc_size = size; p = execmem_vmalloc(...); } (6.17+): the
  // rounded size is too much for vmalloc; below 2 MiB no huge mapping is tried.
  const bool exact = start == kNoArea && rounded != pages;
  if (exact) {
    const std::uint64_t s = find_vmap_area(pages);
    if (s != kNoArea && vmalloc_base_pages(vm, pages, cpu) == 0) start = s;
  }
  if (start == kNoArea) return -ENOMEM;
  const std::uint64_t alloc_pages = vm.pages;
  vms_.emplace(start, std::move(vm));
  // set_memory_rox(p, vm->nr_pages) on the vmalloc address: the direct-map alias
  // becomes read-only and clean (NX stays), no collapse of the direct map.
  const int err = change_attr(start, alloc_pages, directmap::DirectMap::AliasOp::Rox, cpu);
  if (err != 0) {
    // err_free_mem: vfree(p). The alias entries already changed stay read-only
    // (the kernel does not restore them on this path); the pages go back.
    const Vm& v = vms_.at(start);
    for (const Pfn b : v.blocks) pages_.free_pages(b, v.huge ? kHpagePmdOrder : 0, cpu);
    dmap_.free_vmap_area_noflush(v.pages);
    vms_.erase(start);
    return err;
  }
  add_free(start, alloc_pages);
  ++stats_.populates;
  ++(vms_.at(start).huge ? stats_.populates_huge : stats_.populates_base_pages);
  if (exact) ++stats_.populates_exact;
  return 0;
}

// execmem_set_direct_map_valid(vm, true), then vfree(): the pages go back.
// set_direct_map_valid_noflush() sets PRESENT|RW (NX was never cleared on the
// direct map; DIRTY, cleared by set_memory_rox(), stays clear).
void ExecmemCache::release(std::uint64_t start, CpuId cpu) {
  const auto it = vms_.find(start);
  Vm& vm = it->second;
  if (vm.huge) {
    for (const Pfn b : vm.blocks) {
      dmap_.set_direct_map_valid_noflush(b, kPagesPer2M, true, cpu);
      pages_.free_pages(b, kHpagePmdOrder, cpu);
    }
  } else {
    // get_vm_area_page_order() is 0: one page per call.
    for (const Pfn p : vm.blocks) dmap_.set_direct_map_valid_noflush(p, 1, true, cpu);
    for (const Pfn p : vm.blocks) pages_.free_pages(p, 0, cpu);
  }
  // vfree() -> remove_vm_area() -> free_vmap_area_noflush(): no
  // VM_FLUSH_RESET_PERMS, so the vmalloc TLB entries go at the next purge.
  dmap_.free_vmap_area_noflush(vm.pages);
  vms_.erase(it);
  ++stats_.releases;
}

// mirrors execmem_cache_clean(): a free area that is 2 MiB aligned and a
// multiple of 2 MiB goes back. (The kernel frees the one vm area found at the
// free area's start; the model releases every vm area lying wholly inside it,
// so that two adjacent areas merged into one free area both go.)
void ExecmemCache::clean(CpuId cpu) {
  const std::vector<std::pair<std::uint64_t, std::uint64_t>> areas(free_.begin(), free_.end());
  for (const auto& [s, n] : areas) {
    if (s % kPagesPer2M != 0 || n % kPagesPer2M != 0) continue;
    std::vector<std::uint64_t> gone;
    for (auto it = vms_.lower_bound(s); it != vms_.end() && it->first < s + n; ++it) {
      if (it->first + it->second.pages <= s + n) gone.push_back(it->first);
    }
    if (gone.empty()) continue;
    free_.erase(s);
    free_pages_ -= n;
    std::uint64_t cur = s;
    for (const std::uint64_t v : gone) {
      if (v > cur) {  // a piece of a vm area that is not wholly free stays
        free_.emplace(cur, v - cur);
        free_pages_ += v - cur;
      }
      cur = v + vms_.at(v).pages;
      release(v, cpu);
    }
    if (cur < s + n) {
      free_.emplace(cur, s + n - cur);
      free_pages_ += s + n - cur;
    }
  }
}

Pfn ExecmemCache::pfn_of(std::uint64_t addr) const {
  if (addr < kModulesVaddr || addr >= kModulesEnd) return kNoPfn;
  const std::uint64_t page = (addr - kModulesVaddr) / kPageSize;
  auto it = vms_.upper_bound(page);
  if (it == vms_.begin()) return kNoPfn;
  --it;
  const Vm& vm = it->second;
  const std::uint64_t off = page - it->first;
  if (off >= vm.pages) return kNoPfn;
  if (vm.huge) return static_cast<Pfn>(vm.blocks[off / kPagesPer2M] + off % kPagesPer2M);
  return vm.blocks[off];
}

std::size_t ExecmemCache::model_bytes() const {
  std::size_t n = sizeof(*this) + (free_.size() + busy_.size()) * 48;
  for (const auto& [start, vm] : vms_) n += sizeof(Vm) + 48 + vm.blocks.capacity() * sizeof(Pfn);
  return n;
}

std::vector<std::string> ExecmemCache::check() const {
  std::vector<std::string> v;
  auto bad = [&](std::string s) {
    if (v.size() < 32) v.push_back("execmem: " + std::move(s));
  };
  const phys::PhysMem& ph = phys_;
  const directmap::DirectMap& dm = dmap_;
  std::uint64_t vm_pages = 0;
  std::uint64_t prev_end = 0;
  for (const auto& [start, vm] : vms_) {
    if (start % kPagesPer2M != 0 || vm.pages == 0 || (vm.huge && vm.pages % kPagesPer2M != 0)) {
      bad(fmt::format("vm area at page {} of {} pages is not 2 MiB aligned", start, vm.pages));
    }
    if (start < prev_end) bad(fmt::format("vm areas overlap at page {}", start));
    prev_end = start + vm.pages;
    vm_pages += vm.pages;
    const std::size_t want = vm.huge ? vm.pages / kPagesPer2M : vm.pages;
    if (vm.blocks.size() != want) {
      bad(fmt::format("vm area at page {} holds {} blocks, expected {}", start, vm.blocks.size(), want));
      continue;
    }
    if (vm.huge ? vm.split.size() != want : !vm.split.empty()) {
      bad(fmt::format("vm area at page {} tracks {} vmalloc leaves", start, vm.split.size()));
    }
    // The address (in pages) of each page, to tell pending ranges.
    std::uint64_t addr = start;
    for (const Pfn b : vm.blocks) {
      const Pfn n = vm.huge ? kPagesPer2M : 1;
      if (b % n != 0) bad(fmt::format("block {:#x} is not aligned to its order", b));
      for (Pfn p = b; p < b + n; ++p, ++addr) {
        if (ph.kind(p) != phys::FrameKind::Kernel) {
          bad(fmt::format("page {:#x} is a {} frame", p, phys::frame_kind_name(ph.frame_byte(p))));
        }
        auto pend = pending_.upper_bound(addr);
        if (pend != pending_.begin() && addr < std::prev(pend)->first + std::prev(pend)->second) continue;
        const directmap::Lookup l = dm.lookup(p);
        if (!l.present() || (l.flags & (directmap::_PAGE_RW | directmap::_PAGE_DIRTY)) != 0 ||
            (l.flags & directmap::_PAGE_NX) == 0) {
          bad(fmt::format("page {:#x} is not present, read-only, clean and NX in the direct map", p));
        }
      }
    }
  }
  for (const auto& [s, n] : pending_) {
    const auto b = busy_.find(s);
    if (b == busy_.end() || b->second != n) bad(fmt::format("pending range at page {} is not a busy area", s));
  }
  // Free and busy areas: disjoint, inside the vm areas, covering them exactly.
  std::map<std::uint64_t, std::uint64_t> all(free_.begin(), free_.end());
  std::uint64_t fp = 0;
  std::uint64_t bp = 0;
  for (const auto& [s, n] : free_) fp += n;
  for (const auto& [s, n] : busy_) {
    bp += n;
    if (!all.emplace(s, n).second) bad(fmt::format("page {} is both free and busy", s));
  }
  if (fp != free_pages_) bad(fmt::format("{} free pages listed, {} counted", fp, free_pages_));
  if (bp != busy_pages_) bad(fmt::format("{} busy pages listed, {} counted", bp, busy_pages_));
  if (fp + bp != vm_pages) bad(fmt::format("areas cover {} pages, vm areas hold {}", fp + bp, vm_pages));
  std::uint64_t end = 0;
  for (const auto& [s, n] : all) {
    if (n == 0) bad(fmt::format("empty area at page {}", s));
    if (s < end) bad(fmt::format("areas overlap at page {}", s));
    end = s + n;
    auto it = vms_.upper_bound(s);
    bool inside = it != vms_.begin();
    if (inside) {
      --it;
      // An area may run across adjacent vm areas; each page must be in one.
      std::uint64_t cur = s;
      while (inside && cur < s + n) {
        if (cur < it->first || cur >= it->first + it->second.pages) {
          inside = false;
          break;
        }
        cur = it->first + it->second.pages;
        ++it;
        if (cur < s + n && (it == vms_.end() || it->first != cur)) inside = false;
      }
    }
    if (!inside) bad(fmt::format("area at page {} of {} pages lies outside the vm areas", s, n));
  }
  return v;
}

}  // namespace exmem::model::users
