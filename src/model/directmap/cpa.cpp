// directmap/: the direct map (see directmap.hpp for what the folder owns).
// cpa.cpp: change_page_attr_set_clr() and friends from
// arch/x86/mm/pat/set_memory.c: the split decision, the 1G -> 2M -> 4K
// cascade, the collapse that set_memory_rox() asks for since Linux 6.15, and
// the direct-map alias of set_memory_*() calls on vmalloc addresses.
#include <algorithm>

#include "model/directmap/directmap.hpp"

namespace exmem::model::directmap {

namespace {
// mirrors pgprot_clear_protnone_bits(): _PAGE_GLOBAL is _PAGE_PROTNONE on a
// non-present entry, so an entry going non-present loses it.
constexpr std::uint8_t clear_protnone_bits(std::uint8_t prot) {
  return (prot & _PAGE_PRESENT) != 0 ? prot : static_cast<std::uint8_t>(prot & ~_PAGE_GLOBAL);
}
}  // namespace
std::string_view cpa_step_kind_name(CpaStepKind k) {
  switch (k) {
    case CpaStepKind::SplitInstall: return "split: the new table installed (__split_large_page)";
    case CpaStepKind::PteChange: return "PTE changed (__change_page_attr)";
    case CpaStepKind::LeafChange: return "large leaf changed in place (__should_split_large_page)";
    case CpaStepKind::CollapseInstall:
      return "collapse: the leaf set over the table (collapse_pmd_page/collapse_pud_page)";
    case CpaStepKind::CollapseBreak: return "break-before-make collapse: the PMD cleared";
    case CpaStepKind::CollapseMake:
      return "break-before-make collapse: the 2 MiB leaf set after the flush";
  }
  return "?";
}

// mirrors __set_pages_np() behind set_direct_map_invalid_noflush()
int DirectMap::set_direct_map_invalid_noflush(Pfn pfn, CpuId cpu) {
  Cpa cpa{0, _PAGE_PRESENT | _PAGE_RW, false, false, 0, cpu};
  ++counters_.cpa_calls;
  return change_page_attr_set_clr_core(cpa, pfn, 1);
}

// mirrors __set_pages_p() behind set_direct_map_default_noflush(): PRESENT|RW
// only, so a page that was invalid comes back without _PAGE_GLOBAL
// (set_restore_global_dirty(): the hypothetical kernel that restores G and D).
int DirectMap::set_direct_map_default_noflush(Pfn pfn, CpuId cpu) {
  return set_direct_map_valid_noflush(pfn, 1, true, cpu);
}

// mirrors set_direct_map_valid_noflush(): __set_pages_p() or __set_pages_np()
int DirectMap::set_direct_map_valid_noflush(Pfn pfn, Pfn nr, bool valid, CpuId cpu) {
  Cpa cpa{};
  cpa.cpu = cpu;
  if (valid) {
    cpa.set = _PAGE_PRESENT | _PAGE_RW;
    if (restore_gd_) cpa.set |= _PAGE_GLOBAL | _PAGE_DIRTY;
  } else {
    cpa.clr = _PAGE_PRESENT | _PAGE_RW;
  }
  ++counters_.cpa_calls;
  const int err = change_page_attr_set_clr_core(cpa, pfn, nr);
  if (valid) restored(err, pfn, nr, cpu);
  return err;
}

// mirrors set_memory_ro(): clears RW and DIRTY (Write=0,Dirty=1 would be a
// shadow-stack entry)
int DirectMap::set_memory_ro(Pfn pfn, Pfn n, CpuId cpu) {
  return change_page_attr_set_clr(pfn, n, 0, _PAGE_RW | _PAGE_DIRTY, false, false, cpu);
}
// mirrors set_memory_rw(): sets RW only; DIRTY stays clear (the hypothetical
// set_restore_global_dirty() kernel sets it back)
int DirectMap::set_memory_rw(Pfn pfn, Pfn n, CpuId cpu) {
  const auto set = static_cast<std::uint8_t>(_PAGE_RW | (restore_gd_ ? _PAGE_DIRTY : 0));
  const int err = change_page_attr_set_clr(pfn, n, set, 0, false, false, cpu);
  restored(err, pfn, n, cpu);
  return err;
}
// mirrors set_memory_np()
int DirectMap::set_memory_np(Pfn pfn, Pfn n, CpuId cpu) {
  return change_page_attr_set_clr(pfn, n, 0, _PAGE_PRESENT, false, false, cpu);
}
// mirrors set_memory_p()
int DirectMap::set_memory_p(Pfn pfn, Pfn n, CpuId cpu) {
  const int err = change_page_attr_set_clr(pfn, n, _PAGE_PRESENT, 0, false, false, cpu);
  restored(err, pfn, n, cpu);
  return err;
}
// mirrors set_memory_nx()
int DirectMap::set_memory_nx(Pfn pfn, Pfn n, CpuId cpu) {
  const int err = change_page_attr_set_clr(pfn, n, _PAGE_NX, 0, false, false, cpu);
  restored(err, pfn, n, cpu);
  return err;
}
// mirrors set_memory_x()
int DirectMap::set_memory_x(Pfn pfn, Pfn n, CpuId cpu) {
  return change_page_attr_set_clr(pfn, n, 0, _PAGE_NX, false, false, cpu);
}
// mirrors set_memory_4k(): sets _PAGE_KERNEL_4K and forces the split
int DirectMap::set_memory_4k(Pfn pfn, Pfn n, CpuId cpu) {
  return change_page_attr_set_clr(pfn, n, _PAGE_KERNEL_4K, 0, true, false, cpu);
}
// mirrors set_memory_rox(): clear RW, DIRTY and NX, and ask for CPA_COLLAPSE
int DirectMap::set_memory_rox(Pfn pfn, Pfn n, CpuId cpu) {
  return change_page_attr_set_clr(pfn, n, 0, _PAGE_RW | _PAGE_DIRTY | _PAGE_NX, false, true, cpu);
}

// mirrors change_page_attr_set_clr() with a vmalloc primary, through
// cpa_process_alias() for each step of the primary walk, and cpa_flush() with
// force_flush_all (see directmap.hpp).
int DirectMap::alias_change_page_attr(AliasOp op, const std::vector<AliasStep>& steps,
                                      std::uint32_t primary_collapses, CpuId cpu) {
  ++counters_.cpa_calls;
  vm_unmap_aliases(cpu);
  // The primary's masks, then the alias's: NX taken out of both.
  std::uint8_t set = 0;
  std::uint8_t clr = 0;
  switch (op) {
    case AliasOp::Nx: set = _PAGE_NX; break;  // set_memory_nx()
    case AliasOp::Rw:                          // set_memory_rw()
      set = static_cast<std::uint8_t>(_PAGE_RW | (restore_gd_ ? _PAGE_DIRTY : 0));
      break;
    case AliasOp::Rox: clr = _PAGE_RW | _PAGE_DIRTY | _PAGE_NX; break;  // set_memory_rox()
  }
  set = static_cast<std::uint8_t>(set & ~_PAGE_NX);
  clr = static_cast<std::uint8_t>(clr & ~_PAGE_NX);
  for (const AliasStep& step : steps) {
    // __change_page_attr() on the primary: split_large_page() of the vmalloc
    // PMD leaf (its page-table page is not modelled), then flush_tlb_all().
    if (step.split_primary) flushes_.all(cpu, FlushReason::Split);
    // __change_page_attr_set_clr(&alias_cpa, 0): nothing to do without masks.
    if (set == 0 && clr == 0) continue;
    Cpa alias{set, clr, false, false, 0, cpu};
    const int ret = change_page_attr_set_clr_core(alias, step.pfn, step.pages);
    if (ret != 0) {
      flushes_.all(cpu, FlushReason::Error);  // cpa_flush_all()
      return ret;
    }
  }
  // cpa_flush(): force_flush_all, whatever the number of pages.
  flushes_.all(cpu, FlushReason::CpaFlush);
  // cpa_collapse_large_pages() on the primary (vmalloc) range only.
  if (op == AliasOp::Rox && primary_collapses != 0 && collapse_enabled_) {
    flushes_.all(cpu, FlushReason::Collapse);
  }
  return 0;
}

// mirrors vm_unmap_aliases() as change_page_attr_set_clr() calls it: when
// lazily freed vmap areas wait to be purged, __purge_vmap_area_lazy() flushes
// their range (flush_tlb_kernel_range(), a full flush above the ceiling).
// The model knows only the areas the execmem cache vfree()s: other vmalloc
// users (kernel stacks, BPF, module data, vm_map_ram() blocks) are not
// modelled, and neither is the purge that vfree() itself starts once
// vmap_lazy_nr passes lazy_max_pages(), so this is a lower bound of the
// flushes vm_unmap_aliases() adds to set_memory_*() calls (none to the
// set_direct_map_*_noflush() calls of secretmem, which do not call it).
void DirectMap::vm_unmap_aliases(CpuId cpu) {
  if (lazy_vmap_pages_ == 0) return;
  const auto pages = static_cast<Pfn>(std::min<std::uint64_t>(lazy_vmap_pages_, kNoPfn - 1));
  lazy_vmap_pages_ = 0;
  ++counters_.vm_unmap_alias_flushes;
  // A vmalloc range: no direct-map pfn (kNoPfn matches no direct-map entry).
  flushes_.kernel_range(kNoPfn, pages, cpu, FlushReason::VmUnmapAliases);
}

void DirectMap::restored(int err, Pfn pfn, Pfn n, CpuId cpu) {
  if (restore_observer_ == nullptr || err != 0 || n == 0) return;
  for (Pfn p = pfn; p < pfn + n; ++p) {
    if ((lookup(p).flags & kRestoreMask) != (PAGE_KERNEL & kRestoreMask)) return;
  }
  restore_observer_->on_restored(pfn, n, cpu);
}

int DirectMap::collapse_range(Pfn pfn, Pfn n, CpuId cpu) {
  const std::uint64_t before = counters_.level2_collapses + counters_.level3_collapses;
  cpa_collapse_large_pages(pfn, n, cpu);
  return static_cast<int>(counters_.level2_collapses + counters_.level3_collapses - before);
}
int DirectMap::split_to(Pfn pfn, Level level, CpuId cpu) {
  Cpa cpa{0, 0, false, false, 1, cpu};
  const std::size_t gi = pfn / kPagesPer1G;
  if (gi >= pud_.size() || pud_[gi].kind == kNone) return -EINVAL;
  if (pud_[gi].kind == kLeaf) {
    if (level >= Level::Pud1G) return 0;
    if (const int err = split_large_page(cpa, pfn, Level::Pud1G); err != 0) return err;
  }
  const Entry& pmd = pmd_tables_[pud_[gi].table].e[(pfn / kPagesPer2M) % kPtrsPerTable];
  if (pmd.kind == kNone) return -EINVAL;
  if (pmd.kind == kTable || level >= Level::Pmd2M) return 0;
  return split_large_page(cpa, pfn, Level::Pmd2M);
}

int DirectMap::clear_4k(Pfn pfn, Pfn n, CpuId cpu) {
  return change_page_attr_set_clr(pfn, n, 0, _PAGE_KERNEL_4K, false, false, cpu);
}
int DirectMap::clear_4k_and_collapse(Pfn pfn, Pfn n, CpuId cpu) {
  const int ret = clear_4k(pfn, n, cpu);
  if (ret != 0) return ret;
  collapse_range(pfn, n, cpu);
  return 0;
}

// mirrors change_page_attr_set_clr(): vm_unmap_aliases(), change, then flush
// (cpa_flush), then collapse when CPA_COLLAPSE was asked for and something
// changed. The primary is the direct map, so no alias is processed (the
// kernel-image high map, the other alias, is not modelled).
int DirectMap::change_page_attr_set_clr(Pfn start, Pfn numpages, std::uint8_t set,
                                        std::uint8_t clr, bool force_split, bool collapse,
                                        CpuId cpu) {
  ++counters_.cpa_calls;
  if (set == 0 && clr == 0 && !force_split) return 0;
  vm_unmap_aliases(cpu);
  Cpa cpa{set, clr, force_split, false, 0, cpu};
  const int ret = change_page_attr_set_clr_core(cpa, start, numpages);
  if (!cpa.flushtlb) return ret;
  if (ret != 0) {
    flushes_.all(cpu, FlushReason::Error);  // cpa_flush_all()
    return ret;
  }
  // cpa_flush(): per-page flushes on every CPU, or everything above the ceiling.
  flushes_.kernel_range(start, numpages, cpu, FlushReason::CpaFlush);
  if (collapse) cpa_collapse_large_pages(start, numpages, cpu);
  return 0;
}

// mirrors __change_page_attr_set_clr(): step through the range one leaf at a time
int DirectMap::change_page_attr_set_clr_core(Cpa& cpa, Pfn start, Pfn numpages) {
  Pfn rempages = numpages;
  Pfn addr = start;
  while (rempages != 0) {
    cpa.numpages = rempages;  // for the large-page preservation check
    const int ret = change_page_attr(cpa, addr);
    if (ret != 0) return ret;
    rempages -= cpa.numpages;
    addr += cpa.numpages;
  }
  return 0;
}

// mirrors __change_page_attr()
int DirectMap::change_page_attr(Cpa& cpa, Pfn addr) {
  while (true) {
    const std::size_t gi = addr / kPagesPer1G;
    Entry* pud = gi < pud_.size() ? &pud_[gi] : nullptr;
    Entry* leaf = nullptr;
    Level level = Level::None;
    std::uint32_t pte_table = 0;
    std::uint8_t pte = 0;
    if (pud != nullptr && pud->kind == kLeaf) {
      leaf = pud;
      level = Level::Pud1G;
    } else if (pud != nullptr && pud->kind == kTable) {
      Entry& pmd = pmd_tables_[pud->table].e[(addr / kPagesPer2M) % kPtrsPerTable];
      if (pmd.kind == kLeaf) {
        leaf = &pmd;
        level = Level::Pmd2M;
      } else if (pmd.kind == kTable) {
        const std::uint32_t rep = pte_tables_[pmd.table].rep;
        if ((rep & kUniformPtes) != 0 && rep != kUniformPtes && addr % kPtrsPerTable == 0 &&
            cpa.numpages >= kPtrsPerTable && step_observer_ == nullptr) {
          // The whole table, all 512 equal: __change_page_attr() would write
          // the same new PTE 512 times; done in one, the table stays compact.
          const auto u = static_cast<std::uint8_t>(rep);
          const auto new_prot =
              clear_protnone_bits(static_cast<std::uint8_t>((u & ~cpa.clr) | cpa.set));
          if (new_prot != u) {
            pte_tables_[pmd.table].rep = kUniformPtes | new_prot;
            cpa.flushtlb = true;
          }
          cpa.numpages = kPtrsPerTable;
          return 0;
        }
        pte = pte_get(pmd.table, addr % kPtrsPerTable);
        if (pte != 0) {
          pte_table = pmd.table;
          level = Level::Pte4K;
        }
      }
    }
    if (level == Level::None) {
      // __cpa_process_fault(): holes inside the direct map are skipped.
      if (addr < max_pfn_mapped_) {
        cpa.numpages = 1;
        return 0;
      }
      return -EFAULT;
    }
    if (level == Level::Pte4K) {
      const auto new_prot =
          clear_protnone_bits(static_cast<std::uint8_t>((pte & ~cpa.clr) | cpa.set));
      if (new_prot != pte) {
        const std::uint8_t old_prot = pte;
        pte_set(pte_table, addr % kPtrsPerTable, new_prot);
        cpa.flushtlb = true;
        step([&] {
          return CpaStep{CpaStepKind::PteChange, cpa.cpu, addr, 1, Level::Pte4K, Level::Pte4K,
                         old_prot, new_prot, addr, 1};
        });
      }
      cpa.numpages = 1;
      return 0;
    }
    const Pfn psize = level == Level::Pud1G ? kPagesPer1G : kPagesPer2M;
    const int do_split =
        cpa.force_split ? 1 : should_split_large_page(cpa, *leaf, addr, psize, level);
    if (do_split <= 0) return do_split;
    const int err = split_large_page(cpa, addr, level);
    if (err != 0) return err;
    // repeat: the address now resolves one level lower.
  }
}

// mirrors __should_split_large_page(): keep the leaf when the protection does
// not change; change it in place when the request covers the whole leaf;
// otherwise split.
int DirectMap::should_split_large_page(Cpa& cpa, Entry& leaf, Pfn addr, Pfn psize, Level level) {
  const Pfn lpaddr = addr & ~(psize - 1);
  const Pfn to_end = lpaddr + psize - addr;  // pages that fit in the leaf from addr
  if (to_end < cpa.numpages) cpa.numpages = to_end;
  const std::uint8_t old_prot = leaf.flags;
  const auto req_prot =
      clear_protnone_bits(static_cast<std::uint8_t>((old_prot & ~cpa.clr) | cpa.set));
  if (req_prot == old_prot) return 0;
  if (addr != lpaddr || cpa.numpages != psize) return 1;
  // (static_protections() finds no conflict: the model has no kernel text alias.)
  leaf.flags = req_prot;
  cpa.flushtlb = true;
  step([&] {
    return CpaStep{CpaStepKind::LeafChange, cpa.cpu, lpaddr, psize, level, level, old_prot,
                   req_prot, lpaddr, psize};
  });
  return 0;
}

// mirrors split_page_count()
void DirectMap::split_page_count(Level level) {
  if (level == Level::Pmd2M) {
    if (counters_.leaves_2m == 0) return;
    --counters_.leaves_2m;
    if (running_) ++counters_.level2_splits;
    counters_.leaves_4k += kPtrsPerTable;
  } else {
    if (counters_.leaves_1g == 0) return;
    --counters_.leaves_1g;
    if (running_) ++counters_.level3_splits;
    counters_.leaves_2m += kPtrsPerTable;
  }
}

// mirrors collapse_page_count()
void DirectMap::collapse_page_count(Level level) {
  if (level == Level::Pmd2M) {
    ++counters_.leaves_2m;
    if (running_) ++counters_.level2_collapses;
    counters_.leaves_4k -= kPtrsPerTable;
  } else {
    ++counters_.leaves_1g;
    if (running_) ++counters_.level3_collapses;
    counters_.leaves_2m -= kPtrsPerTable;
  }
}

// mirrors split_large_page() and __split_large_page(): one page-table page from
// alloc_pages(GFP_KERNEL, 0), 512 entries with the leaf's protection, then
// flush_tlb_all(). Failing to get the page is the split's only failure.
int DirectMap::split_large_page(Cpa& cpa, Pfn addr, Level level) {
  const Result<Pfn> base = allocator_.alloc_table_page(cpa.cpu);
  if (!base.ok()) {
    ++counters_.split_enomem;
    return -ENOMEM;
  }
  ++counters_.table_pages_allocated;
  if (level == Level::Pmd2M) {
    Entry& pud = pud_[addr / kPagesPer1G];
    const std::uint32_t pmd_table = pud.table;
    const std::size_t slot = (addr / kPagesPer2M) % kPtrsPerTable;
    const std::uint8_t ref_prot = clear_protnone_bits(pmd_tables_[pmd_table].e[slot].flags);
    const std::uint32_t t = new_pte_table(base.value, ref_prot);
    const Pfn lpaddr = addr & ~(kPagesPer2M - 1);
    CpaStep st{CpaStepKind::SplitInstall, cpa.cpu, lpaddr, kPagesPer2M, Level::Pmd2M,
               Level::Pte4K, ref_prot, ref_prot, addr, 0};
    if (split_style_ == SplitStyle::NewAttributesInSplit) {
      // Not the kernel's order: the CPA range's PTEs change in the same write.
      const auto new_prot = static_cast<std::uint8_t>((ref_prot & ~cpa.clr) | cpa.set);
      const Pfn n = std::min<Pfn>(cpa.numpages, lpaddr + kPagesPer2M - addr);
      if (new_prot != ref_prot) {
        for (Pfn p = addr; p < addr + n; ++p) pte_set(t, p % kPtrsPerTable, new_prot);
        st.new_flags = new_prot;
        st.changed_pages = n;
        cpa.flushtlb = true;
      }
    }
    pmd_tables_[pmd_table].e[slot] = Entry{kTable, 0, t};
    step([&] { return st; });
  } else {
    Entry& pud = pud_[addr / kPagesPer1G];
    const std::uint8_t ref_prot = clear_protnone_bits(pud.flags);
    const std::uint32_t t = new_pmd_table(base.value, ref_prot, true);
    pud_[addr / kPagesPer1G] = Entry{kTable, 0, t};
    const Pfn lpaddr = addr & ~(kPagesPer1G - 1);
    step([&] {
      return CpaStep{CpaStepKind::SplitInstall, cpa.cpu, lpaddr, kPagesPer1G, Level::Pud1G,
                     Level::Pmd2M, ref_prot, ref_prot, lpaddr, 0};
    });
  }
  split_page_count(level);
  flushes_.all(cpa.cpu, FlushReason::Split);
  return 0;
}

// mirrors cpa_collapse_large_pages(): try every 2 MiB region the range touches;
// flush everything once, then free the old tables.
void DirectMap::cpa_collapse_large_pages(Pfn start, Pfn numpages, CpuId cpu) {
  if (!collapse_enabled_) return;  // collapse mode none
  std::vector<Pfn> pgtables;
  int collapsed = 0;
  const Pfn first = start & ~(kPagesPer2M - 1);
  const std::uint64_t end = std::uint64_t{start} + numpages;
  for (std::uint64_t addr = first; addr < end; addr += kPagesPer2M) {
    collapsed += collapse_large_pages(static_cast<Pfn>(addr), pgtables, cpu);
  }
  if (collapsed == 0) return;
  flushes_.all(cpu, FlushReason::Collapse);
  for (const Pfn page : pgtables) {
    if (page == kNoPfn) continue;  // a boot-time table from memblock stays reserved
    ++counters_.table_pages_freed;
    allocator_.free_table_page(page, cpu);
  }
}

// mirrors collapse_large_pages()
int DirectMap::collapse_large_pages(Pfn addr, std::vector<Pfn>& pgtables, CpuId cpu) {
  const std::size_t gi = addr / kPagesPer1G;
  if (gi >= pud_.size()) return 0;
  Entry& pud = pud_[gi];
  if (pud.kind != kTable) return 0;  // !pud_present() || pud_leaf()
  Entry& pmd = pmd_tables_[pud.table].e[(addr / kPagesPer2M) % kPtrsPerTable];
  if (pmd.kind != kTable) return 0;  // !pmd_present() || pmd_leaf()
  int collapsed = collapse_pmd_page(pmd, addr & ~(kPagesPer2M - 1), pgtables, cpu);
  if (collapsed != 0) {
    const int pud_collapsed = collapse_pud_page(pud, pgtables);
    if (pud_collapsed != 0) {
      const auto base = static_cast<Pfn>(gi * kPagesPer1G);
      step([&] {
        return CpaStep{CpaStepKind::CollapseInstall, cpu, base, kPagesPer1G, Level::Pmd2M,
                       Level::Pud1G, pud.flags, pud.flags, base, 0};
      });
    }
    collapsed += pud_collapsed;
  }
  return collapsed;
}

namespace {
// Why two entries that must match do not: the bits in which they differ.
void count_refusal(DirectMapCounters::CollapseRefusals& r, std::uint8_t diff) {
  const auto gd = static_cast<std::uint8_t>(_PAGE_GLOBAL | _PAGE_DIRTY);
  if (diff == _PAGE_GLOBAL) {
    ++r.global;
  } else if (diff == _PAGE_DIRTY) {
    ++r.dirty;
  } else if (diff == gd) {
    ++r.global_dirty;
  } else {
    ++r.other;
  }
}
}  // namespace

// mirrors collapse_pmd_page(): the first PTE not pinned by _PAGE_KERNEL_4K,
// the other 511 present with flags identical to the first's, all of them
// (pte_flags(): G and D included; pfns are contiguous in the direct map).
// A refusal is counted by why (DirectMapCounters::CollapseRefusals).
int DirectMap::collapse_pmd_page(Entry& pmd, Pfn addr, std::vector<Pfn>& pgtables, CpuId cpu) {
  const std::uint32_t idx = pmd.table;
  const PteTable& t = pte_tables_[idx];
  const std::uint8_t first = pte_get(idx, 0);
  if (first & _PAGE_KERNEL_4K) {  // the page is 4k intentionally
    ++counters_.refused_2m.pinned_4k;
    return 0;
  }
  bool absent = (first & _PAGE_PRESENT) == 0;
  std::uint8_t diff = 0;
  if ((t.rep & kUniformPtes) == 0) {  // compact: all 512 are first
    const FullPtes& f = full_ptes_[t.rep];
    for (unsigned i = 1; i < kPtrsPerTable; ++i) {
      absent |= (f.pte[i] & _PAGE_PRESENT) == 0;
      diff |= static_cast<std::uint8_t>(f.pte[i] ^ first);
    }
  }
  if (absent) {
    ++counters_.refused_2m.not_present;
    return 0;
  }
  if (diff != 0) {
    count_refusal(counters_.refused_2m, diff);
    return 0;
  }
  pgtables.push_back(t.page);
  if (collapse_style_ == CollapseStyle::BreakBeforeMake) {
    // Not the kernel's: pmd_clear(), flush the 2 MiB, then set the leaf. In
    // between the 512 pages are not in the direct map.
    pmd = Entry{};
    step([&] {
      return CpaStep{CpaStepKind::CollapseBreak, cpu, addr, kPagesPer2M, Level::Pte4K, Level::None,
                     first, 0, addr, kPagesPer2M};
    });
    flushes_.kernel_range(addr, kPagesPer2M, cpu, FlushReason::Collapse);
    pmd = Entry{kLeaf, first, 0};
    step([&] {
      return CpaStep{CpaStepKind::CollapseMake, cpu, addr, kPagesPer2M, Level::None, Level::Pmd2M,
                     0, first, addr, kPagesPer2M};
    });
  } else {
    pmd = Entry{kLeaf, first, 0};
    step([&] {
      return CpaStep{CpaStepKind::CollapseInstall, cpu, addr, kPagesPer2M, Level::Pte4K,
                     Level::Pmd2M, first, first, addr, 0};
    });
  }
  free_pte_table(idx);
  collapse_page_count(Level::Pmd2M);
  return 1;
}

// mirrors collapse_pud_page(): needs direct_gbpages and 512 present PMD leaves
// with identical flags.
int DirectMap::collapse_pud_page(Entry& pud, std::vector<Pfn>& pgtables) {
  if (!gbpages_) return 0;
  const std::uint32_t idx = pud.table;
  const PmdTable& t = pmd_tables_[idx];
  const Entry& first = t.e[0];
  bool absent = false;
  std::uint8_t diff = 0;
  for (const Entry& e : t.e) {
    if (e.kind != kLeaf) return 0;  // !pmd_leaf(): another 2 MiB is still split
    absent |= (e.flags & _PAGE_PRESENT) == 0;
    diff |= static_cast<std::uint8_t>(e.flags ^ first.flags);
  }
  if (absent) {
    ++counters_.refused_1g.not_present;
    return 0;
  }
  if (diff != 0) {
    count_refusal(counters_.refused_1g, diff);
    return 0;
  }
  pgtables.push_back(t.page);
  pud = Entry{kLeaf, first.flags, 0};
  free_pmd_tables_.push_back(idx);
  collapse_page_count(Level::Pud1G);
  return 1;
}

}  // namespace exmem::model::directmap
