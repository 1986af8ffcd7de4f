// directmap/: the direct map (see directmap.hpp for what the folder owns).
// directmap.cpp: boot-time mapping, lookup, and the invariant check.
#include "model/directmap/directmap.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace exmem::model::directmap {

namespace {
constexpr Pfn kIsaEndPfn = static_cast<Pfn>((1 * MiB) >> kPageShift);
}

DirectMap::DirectMap(const std::vector<MappedRange>& ram, bool direct_gbpages,
                     PageTableAllocator& allocator, FlushLog& flushes)
    : ram_(ram), allocator_(allocator), flushes_(flushes), gbpages_(direct_gbpages) {
  Pfn end = 0;
  for (const MappedRange& r : ram_) end = std::max(end, r.end);
  max_pfn_mapped_ = end;
  pud_.assign((std::uint64_t{end} + kPagesPer1G - 1) / kPagesPer1G, Entry{});
  // init_mem_mapping(): the ISA range first (4 KiB pages, it is not all RAM on
  // real machines), then the RAM ranges.
  for (const MappedRange& r : ram_) {
    if (r.start < kIsaEndPfn) {
      map_boot_range(r.start, std::min(r.end, kIsaEndPfn));
      if (r.end > kIsaEndPfn) map_boot_range(kIsaEndPfn, r.end);
    } else {
      map_boot_range(r.start, r.end);
    }
  }
}

std::uint32_t DirectMap::new_pmd_table(Pfn page, std::uint8_t flags, bool leaves) {
  std::uint32_t idx = 0;
  if (!free_pmd_tables_.empty()) {
    idx = free_pmd_tables_.back();
    free_pmd_tables_.pop_back();
  } else {
    idx = static_cast<std::uint32_t>(pmd_tables_.size());
    pmd_tables_.emplace_back();
  }
  PmdTable& t = pmd_tables_[idx];
  t.page = page;
  for (Entry& e : t.e) e = leaves ? Entry{kLeaf, flags, 0} : Entry{};
  return idx;
}

std::uint32_t DirectMap::new_pte_table(Pfn page, std::uint8_t flags) {
  std::uint32_t idx = 0;
  if (!free_pte_tables_.empty()) {
    idx = free_pte_tables_.back();
    free_pte_tables_.pop_back();
  } else {
    idx = static_cast<std::uint32_t>(pte_tables_.size());
    pte_tables_.emplace_back();
  }
  pte_tables_[idx] = PteTable{page, kUniformPtes | flags};
  return idx;
}

void DirectMap::free_pte_table(std::uint32_t slot) {
  const std::uint32_t rep = pte_tables_[slot].rep;
  if ((rep & kUniformPtes) == 0) free_full_ptes_.push_back(rep);
  pte_tables_[slot].rep = kUniformPtes;
  free_pte_tables_.push_back(slot);
}

void DirectMap::pte_set(std::uint32_t slot, unsigned i, std::uint8_t v) {
  PteTable& t = pte_tables_[slot];
  if ((t.rep & kUniformPtes) != 0) {
    const auto u = static_cast<std::uint8_t>(t.rep);
    if (v == u) return;
    std::uint32_t f = 0;
    if (!free_full_ptes_.empty()) {
      f = free_full_ptes_.back();
      free_full_ptes_.pop_back();
    } else {
      f = static_cast<std::uint32_t>(full_ptes_.size());
      full_ptes_.emplace_back();
    }
    full_ptes_[f].pte.fill(u);
    full_ptes_[f].same = kPtrsPerTable;
    full_ptes_[f].ref = u;
    t.rep = f;
  }
  FullPtes& f = full_ptes_[t.rep];
  const std::uint8_t old = f.pte[i];
  if (old == v) return;
  f.pte[i] = v;
  // O(1) on every write: same counts the entries equal to ref; when none is
  // left, ref moves to the value just written (one count of 512 bytes).
  f.same = static_cast<std::uint16_t>(f.same - (old == f.ref) + (v == f.ref));
  if (f.same == 0) {
    f.ref = v;
    f.same = static_cast<std::uint16_t>(std::count(f.pte.begin(), f.pte.end(), v));
  }
  if (f.same == kPtrsPerTable) {  // all 512 equal again: back to one byte
    free_full_ptes_.push_back(t.rep);
    t.rep = kUniformPtes | f.ref;
  }
}

DirectMap::Entry& DirectMap::pmd_entry_for(Pfn pfn, bool boot) {
  Entry& pud = pud_[pfn / kPagesPer1G];
  if (pud.kind == kNone && boot) pud = Entry{kTable, 0, new_pmd_table(kNoPfn, 0, false)};
  return pmd_tables_[pud.table].e[(pfn / kPagesPer2M) % kPtrsPerTable];
}

// mirrors kernel_physical_mapping_init() over one split_mem_range() result
void DirectMap::map_boot_range(Pfn start, Pfn end) {
  Pfn p = start;
  while (p < end) {
    if (gbpages_ && p % kPagesPer1G == 0 && std::uint64_t{p} + kPagesPer1G <= end) {
      pud_[p / kPagesPer1G] = Entry{kLeaf, PAGE_KERNEL, 0};
      ++counters_.leaves_1g;
      p += kPagesPer1G;
    } else if (p % kPagesPer2M == 0 && std::uint64_t{p} + kPagesPer2M <= end) {
      pmd_entry_for(p, true) = Entry{kLeaf, PAGE_KERNEL, 0};
      ++counters_.leaves_2m;
      p += kPagesPer2M;
    } else {
      Entry& pmd = pmd_entry_for(p, true);
      if (pmd.kind == kNone) pmd = Entry{kTable, 0, new_pte_table(kNoPfn, 0)};
      pte_set(pmd.table, p % kPtrsPerTable, PAGE_KERNEL);
      ++counters_.leaves_4k;
      ++p;
    }
  }
  mapped_pages_ += end - start;
}

Lookup DirectMap::lookup(Pfn pfn) const {
  const std::size_t gi = pfn / kPagesPer1G;
  if (gi >= pud_.size()) return {};
  const Entry& pud = pud_[gi];
  if (pud.kind == kNone) return {};
  if (pud.kind == kLeaf) return {Level::Pud1G, pud.flags};
  const Entry& pmd = pmd_tables_[pud.table].e[(pfn / kPagesPer2M) % kPtrsPerTable];
  if (pmd.kind == kNone) return {};
  if (pmd.kind == kLeaf) return {Level::Pmd2M, pmd.flags};
  const std::uint8_t pte = pte_get(pmd.table, pfn % kPtrsPerTable);
  if (pte == 0) return {};
  return {Level::Pte4K, pte};
}

std::vector<Pfn> DirectMap::table_pages() const {
  std::vector<Pfn> out;
  for (const Entry& pud : pud_) {
    if (pud.kind != kTable) continue;
    const PmdTable& t = pmd_tables_[pud.table];
    if (t.page != kNoPfn) out.push_back(t.page);
    for (const Entry& pmd : t.e) {
      if (pmd.kind == kTable && pte_tables_[pmd.table].page != kNoPfn) {
        out.push_back(pte_tables_[pmd.table].page);
      }
    }
  }
  return out;
}

DirectMap::TableRef DirectMap::table_ref(Pfn pfn, Level level) const {
  const std::size_t gi = pfn / kPagesPer1G;
  if (gi >= pud_.size() || pud_[gi].kind != kTable) return {};
  const Entry& pud = pud_[gi];
  if (level == Level::Pmd2M) return {pmd_tables_[pud.table].page, pud.table};
  if (level != Level::Pte4K) return {};
  const Entry& pmd = pmd_tables_[pud.table].e[(pfn / kPagesPer2M) % kPtrsPerTable];
  if (pmd.kind != kTable) return {};
  return {pte_tables_[pmd.table].page, pmd.table};
}

DirectMap::PteStorage DirectMap::pte_storage() const {
  PteStorage s;
  s.tables = pte_tables_.size() - free_pte_tables_.size();
  s.full = full_ptes_.size() - free_full_ptes_.size();
  s.free_full = free_full_ptes_.size();
  return s;
}

void DirectMap::overwrite_pte_record_for_test(Pfn pfn, std::uint32_t rep) {
  const std::size_t gi = pfn / kPagesPer1G;
  if (gi >= pud_.size() || pud_[gi].kind != kTable) return;
  const Entry& pmd = pmd_tables_[pud_[gi].table].e[(pfn / kPagesPer2M) % kPtrsPerTable];
  if (pmd.kind == kTable) pte_tables_[pmd.table].rep = rep;
}

std::size_t DirectMap::model_bytes() const {
  return pud_.capacity() * sizeof(Entry) + pmd_tables_.capacity() * sizeof(PmdTable) +
         free_pmd_tables_.capacity() * sizeof(std::uint32_t) +
         pte_tables_.capacity() * sizeof(PteTable) +
         free_pte_tables_.capacity() * sizeof(std::uint32_t) +
         full_ptes_.capacity() * sizeof(FullPtes) +
         free_full_ptes_.capacity() * sizeof(std::uint32_t) +
         ram_.capacity() * sizeof(MappedRange) + sizeof(*this);
}

std::vector<std::string> DirectMap::check() const {
  std::vector<std::string> v;
  auto bad = [&v](std::string msg) {
    if (v.size() < 64) v.push_back(std::move(msg));
  };
  // Recount the leaves and make sure only RAM is mapped.
  std::uint64_t l4k = 0;
  std::uint64_t l2m = 0;
  std::uint64_t l1g = 0;
  std::uint64_t pmd_live = 0;
  std::uint64_t pte_live = 0;
  std::uint64_t full_live = 0;
  std::vector<std::uint8_t> full_used(full_ptes_.size(), 0);
  auto is_ram = [this](Pfn p) {
    return std::any_of(ram_.begin(), ram_.end(),
                       [p](const MappedRange& r) { return p >= r.start && p < r.end; });
  };
  for (std::size_t gi = 0; gi < pud_.size(); ++gi) {
    const Entry& pud = pud_[gi];
    const auto base = static_cast<Pfn>(gi * kPagesPer1G);
    if (pud.kind == kLeaf) {
      ++l1g;
      if (!gbpages_) bad(fmt::format("1 GiB leaf at pfn {:#x} without direct_gbpages", base));
      if (!is_ram(base) || !is_ram(base + kPagesPer1G - 1)) {
        bad(fmt::format("1 GiB leaf at pfn {:#x} maps a hole", base));
      }
      continue;
    }
    if (pud.kind != kTable) continue;
    ++pmd_live;
    const PmdTable& t = pmd_tables_[pud.table];
    for (unsigned i = 0; i < kPtrsPerTable; ++i) {
      const Entry& pmd = t.e[i];
      const Pfn b2 = base + i * kPagesPer2M;
      if (pmd.kind == kLeaf) {
        ++l2m;
        if (!is_ram(b2) || !is_ram(b2 + kPagesPer2M - 1)) {
          bad(fmt::format("2 MiB leaf at pfn {:#x} maps a hole", b2));
        }
      } else if (pmd.kind == kTable) {
        ++pte_live;
        if (pmd.table >= pte_tables_.size()) {
          bad(fmt::format("PMD entry at pfn {:#x} points to PTE table {} of {}", b2, pmd.table,
                          pte_tables_.size()));
          continue;
        }
        const std::uint32_t rep = pte_tables_[pmd.table].rep;
        if ((rep & kUniformPtes) != 0) {
          if ((rep & ~(kUniformPtes | 0xFFu)) != 0) {
            bad(fmt::format("PTE table of pfn {:#x}: compact record {:#x} has stray bits", b2,
                            rep));
          }
        } else if (rep >= full_ptes_.size()) {
          bad(fmt::format("PTE table of pfn {:#x}: full block {} of {}", b2, rep,
                          full_ptes_.size()));
          continue;
        } else {
          if (full_used[rep]++ != 0) bad(fmt::format("full PTE block {} shared", rep));
          ++full_live;
          const FullPtes& f = full_ptes_[rep];
          const auto same =
              static_cast<std::uint64_t>(std::count(f.pte.begin(), f.pte.end(), f.ref));
          if (same != std::uint64_t{f.same} || same == 0) {
            bad(fmt::format("PTE table of pfn {:#x}: {} entries are {:#x}, recorded {}", b2,
                            same, f.ref, f.same));
          }
          const auto first = std::count(f.pte.begin(), f.pte.end(), f.pte[0]);
          if (first == std::ptrdiff_t{kPtrsPerTable}) {
            bad(fmt::format("PTE table of pfn {:#x}: 512 equal entries held in full", b2));
          }
        }
        for (unsigned j = 0; j < kPtrsPerTable; ++j) {
          if (pte_get(pmd.table, j) == 0) continue;
          ++l4k;
          if (!is_ram(b2 + j)) bad(fmt::format("4 KiB pte at pfn {:#x} maps a hole", b2 + j));
        }
      }
    }
  }
  if (l4k != counters_.leaves_4k || l2m != counters_.leaves_2m || l1g != counters_.leaves_1g) {
    bad(fmt::format("DirectMap counters 4k/2M/1G = {}/{}/{} but the tables hold {}/{}/{}",
                    counters_.leaves_4k, counters_.leaves_2m, counters_.leaves_1g, l4k, l2m,
                    l1g));
  }
  const std::uint64_t kb = counters_.direct_map_4k_kb() + counters_.direct_map_2m_kb() +
                           counters_.direct_map_1g_kb();
  if (kb != mapped_pages_ * 4) {
    bad(fmt::format("DirectMap4k + DirectMap2M + DirectMap1G = {} kB but {} kB of RAM is mapped",
                    kb, mapped_pages_ * 4));
  }
  if (pmd_live + free_pmd_tables_.size() != pmd_tables_.size() ||
      pte_live + free_pte_tables_.size() != pte_tables_.size()) {
    bad("page-table slots leaked or doubly used");
  }
  for (const std::uint32_t f : free_full_ptes_) {
    if (f >= full_ptes_.size() || full_used[f]++ != 0) {
      bad(fmt::format("free full PTE block {} out of range, in use or listed twice", f));
    }
  }
  if (full_live + free_full_ptes_.size() != full_ptes_.size()) {
    bad(fmt::format("{} full PTE blocks, {} in use and {} free", full_ptes_.size(), full_live,
                    free_full_ptes_.size()));
  }
  const std::uint64_t live_pages = table_pages().size();
  if (counters_.table_pages_allocated - counters_.table_pages_freed != live_pages) {
    bad(fmt::format("{} table pages allocated, {} freed, but {} in use",
                    counters_.table_pages_allocated, counters_.table_pages_freed, live_pages));
  }
  return v;
}

}  // namespace exmem::model::directmap
