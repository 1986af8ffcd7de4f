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

// Runs of consecutive pfns in vm page order: [pfn, pfn + n).
template <class F>
void for_each_run(const std::vector<Pfn>& pages, F&& f) {
  std::size_t i = 0;
  while (i < pages.size()) {
    std::size_t j = i + 1;
    while (j < pages.size() && pages[j] == pages[j - 1] + 1) ++j;
    f(pages[i], static_cast<Pfn>(j - i));
    i = j;
  }
}
}  // namespace

ExecmemCache::ExecmemCache(phys::PageSource& pages, directmap::DirectMap& dmap,
                           const phys::PhysMem& phys)
    : pages_(pages), dmap_(dmap), phys_(phys) {}

// mirrors execmem_alloc() -> execmem_cache_alloc()
Result<std::uint64_t> ExecmemCache::alloc(std::uint64_t pages, CpuId cpu) {
  using R = Result<std::uint64_t>;
  if (pages == 0 || pages > kRangePages) return R::error(-EINVAL);
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
  ++stats_.loads;
  return R{kModulesVaddr + start * kPageSize, 0};
}

// mirrors execmem_free() -> execmem_cache_free(), and the work it schedules
int ExecmemCache::free(std::uint64_t addr, CpuId cpu) {
  if (addr < kModulesVaddr || addr >= kModulesEnd || (addr - kModulesVaddr) % kPageSize != 0) {
    return -EINVAL;
  }
  const auto it = busy_.find((addr - kModulesVaddr) / kPageSize);
  if (it == busy_.end()) return -EINVAL;
  const std::uint64_t start = it->first;
  const std::uint64_t pages = it->second;
  busy_.erase(it);
  busy_pages_ -= pages;
  add_free(start, pages);
  ++stats_.unloads;
  clean(cpu);  // schedule_work(&execmem_cache_clean_work), run at once
  return 0;
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

// mirrors execmem_cache_populate(): vmalloc the area, set_memory_rox() it, add it
int ExecmemCache::populate(std::uint64_t pages, CpuId cpu) {
  const std::uint64_t alloc_pages = round_up_2m(pages);
  const std::uint64_t start = find_vmap_area(alloc_pages);
  if (start == kNoArea) return -ENOMEM;
  Vm vm;
  vm.pages = alloc_pages;
  vm.huge = true;
  // __vmalloc_node_range() with VM_ALLOW_HUGE_VMAP: PMD-sized blocks ...
  for (std::uint64_t i = 0; i < alloc_pages / kPagesPer2M; ++i) {
    const Result<Pfn> r = pages_.alloc_pages(kHugeGfp, kHpagePmdOrder, cpu, phys::FrameKind::Kernel);
    if (!r.ok()) {
      vm.huge = false;
      break;
    }
    vm.blocks.push_back(r.value);
  }
  // ... else, as vmalloc retries with shift = PAGE_SHIFT, base pages.
  if (!vm.huge) {
    for (const Pfn b : vm.blocks) pages_.free_pages(b, kHpagePmdOrder, cpu);
    vm.blocks.clear();
    for (std::uint64_t i = 0; i < alloc_pages; ++i) {
      const Result<Pfn> r = pages_.alloc_pages(kBaseGfp, 0, cpu, phys::FrameKind::Kernel);
      if (!r.ok()) {
        for (const Pfn p : vm.blocks) pages_.free_pages(p, 0, cpu);
        return -ENOMEM;
      }
      vm.blocks.push_back(r.value);
    }
  }
  // set_memory_rox(p, vm->nr_pages): the direct-map alias of every page
  // becomes read-only (and, in this model, executable), collapsing what it can.
  int err = 0;
  if (vm.huge) {
    for (const Pfn b : vm.blocks) {
      if (err == 0) err = dmap_.set_memory_rox(b, kPagesPer2M, cpu);
    }
  } else {
    for_each_run(vm.blocks, [&](Pfn p, Pfn n) {
      if (err == 0) err = dmap_.set_memory_rox(p, n, cpu);
    });
  }
  vms_.emplace(start, std::move(vm));
  if (err != 0) {  // err_free_mem: give everything back, mapped as before
    release(start, cpu);
    --stats_.releases;
    return err;
  }
  add_free(start, alloc_pages);
  ++stats_.populates;
  ++(vms_.at(start).huge ? stats_.populates_huge : stats_.populates_base_pages);
  return 0;
}

// execmem_set_direct_map_valid(vm, true), then vfree(): the pages go back.
void ExecmemCache::release(std::uint64_t start, CpuId cpu) {
  const auto it = vms_.find(start);
  Vm& vm = it->second;
  // set_direct_map_valid_noflush() sets PRESENT|RW. The kernel never cleared
  // NX on the direct-map alias ("Directmap always has NX set"); this model's
  // set_memory_rox() did, on the direct map itself, so NX goes back here.
  auto restore = [&](Pfn p, Pfn n) {
    dmap_.set_direct_map_valid_noflush(p, n, true, cpu);
    if ((dmap_.lookup(p).flags & directmap::_PAGE_NX) == 0) {
      dmap_.set_memory_nx(p, n, cpu);
    }
  };
  if (vm.huge) {
    for (const Pfn b : vm.blocks) {
      restore(b, kPagesPer2M);
      pages_.free_pages(b, kHpagePmdOrder, cpu);
    }
  } else {
    for_each_run(vm.blocks, restore);
    for (const Pfn p : vm.blocks) pages_.free_pages(p, 0, cpu);
  }
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
    if (start % kPagesPer2M != 0 || vm.pages == 0 || vm.pages % kPagesPer2M != 0) {
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
    for (const Pfn b : vm.blocks) {
      const Pfn n = vm.huge ? kPagesPer2M : 1;
      if (b % n != 0) bad(fmt::format("block {:#x} is not aligned to its order", b));
      for (Pfn p = b; p < b + n; ++p) {
        if (ph.kind(p) != phys::FrameKind::Kernel) {
          bad(fmt::format("page {:#x} is a {} frame", p, phys::frame_kind_name(ph.frame_byte(p))));
        }
        const directmap::Lookup l = dm.lookup(p);
        if (!l.present() || (l.flags & directmap::_PAGE_RW) != 0) {
          bad(fmt::format("page {:#x} is not read-only and present in the direct map", p));
        }
      }
    }
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
