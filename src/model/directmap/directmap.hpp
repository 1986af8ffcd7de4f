// directmap/: the kernel's direct map of all RAM (x86-64), its page tables,
// the change-page-attribute (CPA) operations, split and collapse, the
// DirectMap/vmstat counters and the TLB flush requests they cause.
// Owns: the direct map's entries, its page-table bookkeeping, the counters and
// the flush log. Must not touch: frame states or free lists (phys/): page-table
// pages are requested from, and returned to, phys/ through PageTableAllocator.
// Tells a FlushObserver of every flush, a RestoreObserver of every range
// back at the default attributes, and a CpaStepObserver of every page-table
// write inside a CPA operation.
//
// directmap.hpp: the kernel page tables of the direct map, stored sparsely:
// one entry per GiB, PMD tables only under split or partly mapped GiBs, PTE
// tables only under split or partly mapped 2 MiB leaves. The direct map is
// linear (pfn N maps at PAGE_OFFSET + N * 4 KiB), so entries keep attributes
// only; a leaf's pfn is implied by its position. A PTE table whose 512
// entries are equal (most are: a 2 MiB folio leaves and rejoins the direct map
// as one range) is held as one byte, 512 bytes only while its entries differ;
// its page-table page, and so every result of the model, is the same either
// way.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "model/directmap/flush.hpp"
#include "model/huge_pages.hpp"
#include "model/types.hpp"

namespace exmem::model::directmap {

// Attribute bits the model distinguishes (pgprot bits of arch/x86, in one byte:
// arch/x86/include/asm/pgtable_types.h has _PAGE_BIT_GLOBAL 8 and
// _PAGE_BIT_DIRTY 6; the model packs them). _PAGE_ACCESSED is always set in
// the kernel's direct map (__PAGE_KERNEL has it and nothing clears it), so the
// model leaves it out. _PAGE_DIRTY is kept as the kernel's software writes it:
// the CPU also sets D on the first write through a writable entry, which the
// model does not simulate (it has no writes through the direct map), so a D
// cleared by set_memory_ro() stays clear here until something sets it.
inline constexpr std::uint8_t _PAGE_PRESENT = 0x01;
inline constexpr std::uint8_t _PAGE_RW = 0x02;
inline constexpr std::uint8_t _PAGE_NX = 0x04;
inline constexpr std::uint8_t _PAGE_KERNEL_4K = 0x08;  // software bit set by set_memory_4k()
inline constexpr std::uint8_t _PAGE_GLOBAL = 0x10;     // also _PAGE_PROTNONE when !PRESENT
inline constexpr std::uint8_t _PAGE_DIRTY = 0x20;
inline constexpr std::uint8_t kEntryMapped = 0x80;     // the entry holds a pfn (!pte_none)
// __PAGE_KERNEL = __PP|__RW|___A|__NX|___D|___G (G is masked off only on PTI
// hosts, which the model does not model).
inline constexpr std::uint8_t PAGE_KERNEL =
    kEntryMapped | _PAGE_PRESENT | _PAGE_RW | _PAGE_NX | _PAGE_GLOBAL | _PAGE_DIRTY;
// What a restore puts back (the bits RestoreObserver compares): present,
// writable, not executable, not pinned to 4K. G and D are left out: the
// kernel's restore paths (__set_pages_p(), set_memory_rw()) do not set them.
inline constexpr std::uint8_t kRestoreMask =
    kEntryMapped | _PAGE_PRESENT | _PAGE_RW | _PAGE_NX | _PAGE_KERNEL_4K;

enum class Level : std::uint8_t { None = 0, Pte4K = 1, Pmd2M = 2, Pud1G = 3 };  // PG_LEVEL_*

struct Lookup {
  Level level = Level::None;
  std::uint8_t flags = 0;
  [[nodiscard]] bool present() const { return (flags & _PAGE_PRESENT) != 0; }
};

// Where split page tables come from: alloc_pages(GFP_KERNEL, 0) and __free_page().
class PageTableAllocator {
 public:
  virtual ~PageTableAllocator() = default;
  virtual Result<Pfn> alloc_table_page(CpuId cpu) = 0;
  virtual void free_table_page(Pfn pfn, CpuId cpu) = 0;
};

// Told when a range is back in the direct map, present, writable, not
// executable and not pinned to 4K (kRestoreMask: G and D may still differ from
// PAGE_KERNEL, as the kernel leaves them), by a call that set those bits, at
// the end of that call: set_direct_map_default_noflush(),
// set_direct_map_valid_noflush(valid), set_memory_p(), set_memory_rw() and
// set_memory_nx(). Calls that collapse by themselves (set_memory_rox(),
// clear_4k_and_collapse()), the execmem alias calls and clear_4k() tell no
// one. The machine's collapse mode on-restore listens here.
class RestoreObserver {
 public:
  virtual ~RestoreObserver() = default;
  virtual void on_restored(Pfn pfn, Pfn n, CpuId cpu) = 0;
};

// CPA steps: one page-table write inside a CPA operation, as a TLB sees it:
// from this instant the translations of [start, start + pages) have page size
// new_level (Level::None: not present) instead of old_level, and
// [changed, changed + changed_pages) has new_flags instead of old_flags (the
// rest of the range keeps old_flags; changed_pages 0: no attribute changes).
enum class CpaStepKind : std::uint8_t {
  SplitInstall,     // __split_large_page(): __set_pmd_pte() points the entry at the new table
  PteChange,        // __change_page_attr(): set_pte_atomic() of one 4 KiB PTE
  LeafChange,       // __should_split_large_page(): a whole large leaf changed in place
  CollapseInstall,  // collapse_pmd_page()/collapse_pud_page(): set_pmd()/set_pud() of the leaf
  CollapseBreak,    // break-before-make collapse (not the kernel's): the PMD cleared
  CollapseMake,     // break-before-make collapse: the 2 MiB leaf set after the flush
};
std::string_view cpa_step_kind_name(CpaStepKind k);

struct CpaStep {
  CpaStepKind kind = CpaStepKind::PteChange;
  CpuId cpu = 0;  // the CPU running the CPA call
  Pfn start = 0;
  Pfn pages = 0;
  Level old_level = Level::None;
  Level new_level = Level::None;
  std::uint8_t old_flags = 0;
  std::uint8_t new_flags = 0;
  Pfn changed = 0;
  Pfn changed_pages = 0;
};

// Told of each CPA step at the moment of the write, before anything after it
// (the TLB model lets every CPU speculate there and checks its TLBs).
class CpaStepObserver {
 public:
  virtual ~CpaStepObserver() = default;
  virtual void on_cpa_step(const CpaStep& step) = 0;
};

// How a 2 MiB region is collapsed. SetLeaf is the kernel's (6.15
// collapse_pmd_page(): set_pmd() of the leaf over the table, one
// flush_tlb_all() after all collapses). BreakBeforeMake clears the PMD,
// flushes, then sets the leaf (the Intel SDM's recommended sequence for a page
// size change); for the hazard checker's tests: in the window, the 512 pages
// are not in the direct map. (A PUD collapse that follows keeps set_pud().)
enum class CollapseStyle : std::uint8_t { SetLeaf, BreakBeforeMake };
// How a 2 MiB leaf is split. Kernel: the new PTEs take the leaf's attributes,
// the change comes after the split's flush (__split_large_page()).
// NewAttributesInSplit: the PTEs in the CPA range get the new attributes in
// the same write that installs the table; not the kernel's, for the tests.
enum class SplitStyle : std::uint8_t { Kernel, NewAttributesInSplit };

struct DirectMapCounters {
  // direct_pages_count[]: leaves of each size (DirectMap4k/2M/1G in kB below).
  std::uint64_t leaves_4k = 0;
  std::uint64_t leaves_2m = 0;
  std::uint64_t leaves_1g = 0;
  // /proc/vmstat events, counted once the system is running.
  std::uint64_t level2_splits = 0;
  std::uint64_t level3_splits = 0;
  std::uint64_t level2_collapses = 0;
  std::uint64_t level3_collapses = 0;
  // The model's own.
  // Collapse attempts collapse_pmd_page() / collapse_pud_page() refused, by
  // why. global/dirty/global_dirty: the entries differ only in _PAGE_GLOBAL,
  // only in _PAGE_DIRTY, or only in those two (what a kernel whose restore
  // paths put G and D back would have collapsed); other: any other flag
  // (RW, NX, PRESENT of a 2 MiB leaf); not_present: a PTE is not present;
  // pinned_4k: the first PTE has _PAGE_KERNEL_4K. collapse_pud_page() counts
  // only when all 512 PMD entries are leaves (a GiB still holding a PTE table
  // is not a refusal).
  struct CollapseRefusals {
    std::uint64_t pinned_4k = 0;
    std::uint64_t not_present = 0;
    std::uint64_t global = 0;
    std::uint64_t dirty = 0;
    std::uint64_t global_dirty = 0;
    std::uint64_t other = 0;
    [[nodiscard]] std::uint64_t total() const {
      return pinned_4k + not_present + global + dirty + global_dirty + other;
    }
    // Refusals for G/D alone.
    [[nodiscard]] std::uint64_t global_or_dirty() const { return global + dirty + global_dirty; }
  };
  CollapseRefusals refused_2m;
  CollapseRefusals refused_1g;
  // flush_tlb_kernel_range() by vm_unmap_aliases() in change_page_attr_set_clr()
  // (lazily freed vmalloc areas the model knows of: the execmem cache's).
  std::uint64_t vm_unmap_alias_flushes = 0;
  std::uint64_t split_enomem = 0;          // splits that failed for want of a table page
  std::uint64_t table_pages_allocated = 0;
  std::uint64_t table_pages_freed = 0;
  std::uint64_t cpa_calls = 0;

  [[nodiscard]] std::uint64_t direct_map_4k_kb() const { return leaves_4k * 4; }
  [[nodiscard]] std::uint64_t direct_map_2m_kb() const { return leaves_2m * 2048; }
  [[nodiscard]] std::uint64_t direct_map_1g_kb() const { return leaves_1g * 1024 * 1024; }
};

struct MappedRange {
  Pfn start = 0;
  Pfn end = 0;
};

class DirectMap {
 public:
  // mirrors init_mem_mapping(): the ISA range (first 1 MiB) with 4 KiB pages,
  // then every RAM range with the largest leaves that fit (1 GiB only with
  // direct_gbpages). Boot-time page tables come from memblock, not the buddy.
  DirectMap(const std::vector<MappedRange>& ram, bool direct_gbpages,
            PageTableAllocator& allocator, FlushLog& flushes);

  // system_state = SYSTEM_RUNNING: splits and collapses count in vmstat from now.
  void set_running() { running_ = true; }
  // At most one observer of restores; nullptr detaches it.
  void set_restore_observer(RestoreObserver* observer) { restore_observer_ = observer; }
  // Off: nothing collapses, on any path (set_memory_rox()'s CPA_COLLAPSE,
  // collapse_range(), clear_4k_and_collapse(), the execmem primary range):
  // the machine's collapse mode none. On by default.
  void set_collapse_enabled(bool on) { collapse_enabled_ = on; }
  [[nodiscard]] bool collapse_enabled() const { return collapse_enabled_; }
  // Not upstream, a hypothetical kernel change: __set_pages_p() (behind
  // set_direct_map_default/valid_noflush()) also sets _PAGE_GLOBAL|_PAGE_DIRTY
  // and set_memory_rw() also sets _PAGE_DIRTY, so restored entries are
  // PAGE_KERNEL again and collapse_pmd_page() can take them. Off by default;
  // the collapse modes on-restore-gd and scanner-gd turn it on.
  void set_restore_global_dirty(bool on) { restore_gd_ = on; }
  // At most one observer of CPA steps; nullptr detaches it. Costs one branch
  // per page-table write when none is attached.
  void set_cpa_step_observer(CpaStepObserver* observer) { step_observer_ = observer; }
  // Variants of collapse and split that the kernel does not use (tests only).
  void set_collapse_style(CollapseStyle s) { collapse_style_ = s; }
  void set_split_style(SplitStyle s) { split_style_ = s; }
  [[nodiscard]] CollapseStyle collapse_style() const { return collapse_style_; }

  // set_direct_map_*_noflush(): clear or set PRESENT|RW, never flush.
  int set_direct_map_invalid_noflush(Pfn pfn, CpuId cpu);
  int set_direct_map_default_noflush(Pfn pfn, CpuId cpu);
  int set_direct_map_valid_noflush(Pfn pfn, Pfn nr, bool valid, CpuId cpu);
  // set_memory_*() on direct-map addresses; these flush as cpa_flush() does.
  int set_memory_ro(Pfn pfn, Pfn numpages, CpuId cpu);
  int set_memory_rw(Pfn pfn, Pfn numpages, CpuId cpu);
  int set_memory_np(Pfn pfn, Pfn numpages, CpuId cpu);
  int set_memory_p(Pfn pfn, Pfn numpages, CpuId cpu);
  int set_memory_nx(Pfn pfn, Pfn numpages, CpuId cpu);
  int set_memory_x(Pfn pfn, Pfn numpages, CpuId cpu);
  int set_memory_4k(Pfn pfn, Pfn numpages, CpuId cpu);
  // The only caller that asks for collapse (CPA_COLLAPSE), since Linux 6.15.
  // On direct-map addresses (the execmem cache calls it on vmalloc addresses:
  // alias_change_page_attr() below).
  int set_memory_rox(Pfn pfn, Pfn numpages, CpuId cpu);

  // set_memory_nx/rw/rox() on a vmalloc address (the execmem ROX cache), as
  // change_page_attr_set_clr() does it when the primary range is not the
  // direct map: the vmalloc page tables are the caller's (not modelled here);
  // for each step of the primary walk (a vmalloc PMD leaf changed whole: 512
  // pages; a 4 KiB PTE: 1 page) cpa_process_alias() changes the direct-map
  // alias of that step's pages, with NX taken out of both masks ("Directmap
  // always has NX set, do not modify"), and sets force_flush_all, so cpa_flush()
  // is one flush_tlb_all(). CPA_COLLAPSE (rox) walks only the primary range:
  // the direct map never collapses from here.
  enum class AliasOp : std::uint8_t { Nx, Rw, Rox };
  struct AliasStep {
    Pfn pfn = 0;                 // cpa->pfn: the first frame of the step
    Pfn pages = 1;               // cpa->numpages after __change_page_attr()
    bool split_primary = false;  // the primary's vmalloc PMD leaf was split first
  };
  // primary_collapses: vmalloc PMDs the rox call's cpa_collapse_large_pages()
  // collapses (one flush_tlb_all() when any, and only while collapse is on).
  // The primary entries change on every call execmem makes, so cpa_flush()
  // always runs. Returns 0 or -ENOMEM (a split of the alias found no page).
  int alias_change_page_attr(AliasOp op, const std::vector<AliasStep>& steps,
                             std::uint32_t primary_collapses, CpuId cpu);
  // vfree() of a vmalloc area that was not VM_FLUSH_RESET_PERMS: its vmap
  // area goes on the lazy purge list (free_vmap_area_noflush()), and the next
  // vm_unmap_aliases() (every change_page_attr_set_clr()) flushes it.
  void free_vmap_area_noflush(std::uint64_t pages) { lazy_vmap_pages_ += pages; }
  // cpa_collapse_large_pages() on its own, for the model's collapse modes and
  // policies: every 2 MiB region the range touches whose 512 PTEs are uniform
  // becomes a leaf, then its GiB when uniform; one flush_tlb_all() when any
  // collapsed. Returns the number of collapses (both levels).
  int collapse_range(Pfn pfn, Pfn numpages, CpuId cpu);
  // Clears _PAGE_KERNEL_4K (what set_memory_4k() set): the PTEs may collapse
  // again; the second form then asks for collapse.
  int clear_4k(Pfn pfn, Pfn numpages, CpuId cpu);
  int clear_4k_and_collapse(Pfn pfn, Pfn numpages, CpuId cpu);

  // Not a kernel call: starts the model from a real kernel's map. Splits the
  // leaf that maps pfn until it is no larger than `level` (Pmd2M: a 1 GiB leaf
  // becomes 512 2 MiB leaves; Pte4K: down to a PTE table), each step
  // split_large_page() with the leaf's own attributes and no change after it,
  // as a CPA call the model did not see (e.g. before a trace's recording began)
  // left the region. Counts in vmstat like any split once running. Returns 0
  // (also when already that small), -EINVAL when pfn is not mapped at all,
  // -ENOMEM when a table page cannot be had.
  int split_to(Pfn pfn, Level level, CpuId cpu);

  // mirrors lookup_address() on the direct-map address of pfn
  [[nodiscard]] Lookup lookup(Pfn pfn) const;
  [[nodiscard]] bool is_present(Pfn pfn) const { return lookup(pfn).present(); }
  [[nodiscard]] const DirectMapCounters& counters() const { return counters_; }
  [[nodiscard]] std::uint64_t mapped_pages() const { return mapped_pages_; }
  [[nodiscard]] bool direct_gbpages() const { return gbpages_; }
  // The RAM ranges it was built over (init_mem_mapping()'s input).
  [[nodiscard]] const std::vector<MappedRange>& ram() const { return ram_; }
  // Pfns of the page-table pages that splits took from the buddy allocator.
  [[nodiscard]] std::vector<Pfn> table_pages() const;
  // The table that maps pfn one level above its leaf (level Pte4K: its PTE
  // table; Pmd2M: its PMD table), as the TLB model's paging-structure caches
  // remember it: page is kNoPfn for boot tables, slot tells tables apart.
  struct TableRef {
    Pfn page = kNoPfn;
    std::uint32_t slot = 0xFFFFFFFFu;  // none
    bool operator==(const TableRef&) const = default;
  };
  [[nodiscard]] TableRef table_ref(Pfn pfn, Level level) const;
  // How the PTE tables are held (the model's storage, not the kernel's): a
  // table whose 512 entries are all equal keeps that one byte (compact); one
  // with entries that differ keeps 512 bytes (full).
  struct PteStorage {
    std::uint64_t tables = 0;       // live PTE tables (split or partly mapped 2 MiB regions)
    std::uint64_t full = 0;         // of them, held as 512 bytes
    std::uint64_t free_full = 0;    // 512-byte blocks kept for reuse
  };
  [[nodiscard]] PteStorage pte_storage() const;
  // Tests only: overwrite the storage record of the PTE table that maps pfn
  // (check() must catch a bad one). No effect when pfn has no PTE table.
  void overwrite_pte_record_for_test(Pfn pfn, std::uint32_t rep);
  // The bytes the model holds for the direct map (vector capacities).
  [[nodiscard]] std::size_t model_bytes() const;
  // Counters add up to the mapped RAM and match the tables; tables are sound.
  [[nodiscard]] std::vector<std::string> check() const;

 private:
  enum EntryKind : std::uint8_t { kNone = 0, kLeaf = 1, kTable = 2 };
  struct Entry {  // a PUD or PMD entry
    EntryKind kind = kNone;
    std::uint8_t flags = 0;
    std::uint32_t table = 0;  // index of the lower table when kind == kTable
  };
  struct PmdTable {
    Pfn page = kNoPfn;  // the page-table page (kNoPfn: allocated at boot by memblock)
    std::array<Entry, kPtrsPerTable> e{};
  };
  // A PTE table (one per split or partly mapped 2 MiB region; Entry::table of
  // its PMD entry is its slot, which TableRef reports): its page-table page
  // and its 512 entries (0: pte_none), compact when they are all equal (a
  // split leaf, a 2 MiB folio removed from or restored to the direct map as
  // one range), else in a 512-byte block of full_ptes_. A write that makes
  // the entries differ takes a block (from the free list first); a write that
  // makes them all equal again gives it back, so a full table never holds 512
  // equal entries.
  static constexpr std::uint32_t kUniformPtes = 0x80000000u;
  struct PteTable {
    Pfn page = kNoPfn;
    std::uint32_t rep = kUniformPtes;  // kUniformPtes | the entry, or a full_ptes_ index
  };
  struct FullPtes {
    std::array<std::uint8_t, kPtrsPerTable> pte{};
    std::uint16_t same = 0;  // entries equal to ref: never 0 (ref moves) nor 512 (folded)
    std::uint8_t ref = 0;
  };
  struct Cpa {  // struct cpa_data, for one call
    std::uint8_t set = 0;
    std::uint8_t clr = 0;
    bool force_split = false;
    bool flushtlb = false;  // CPA_FLUSHTLB
    Pfn numpages = 0;       // remaining pages, then pages consumed by one step
    CpuId cpu = 0;
  };

  void map_boot_range(Pfn start, Pfn end);
  Entry& pmd_entry_for(Pfn pfn, bool boot);  // allocate boot tables on demand
  std::uint32_t new_pmd_table(Pfn page, std::uint8_t flags, bool leaves);
  std::uint32_t new_pte_table(Pfn page, std::uint8_t flags);
  void free_pte_table(std::uint32_t slot);
  [[nodiscard]] std::uint8_t pte_get(std::uint32_t slot, unsigned i) const {
    const std::uint32_t rep = pte_tables_[slot].rep;
    if ((rep & kUniformPtes) != 0) return static_cast<std::uint8_t>(rep);
    return full_ptes_[rep].pte[i];
  }
  // Writes entry i of the table in slot, taking or giving back its full block.
  void pte_set(std::uint32_t slot, unsigned i, std::uint8_t v);

  // The range's restore, told to the observer when every page is at PAGE_KERNEL.
  void restored(int err, Pfn pfn, Pfn n, CpuId cpu);
  int change_page_attr_set_clr(Pfn start, Pfn numpages, std::uint8_t set, std::uint8_t clr,
                               bool force_split, bool collapse, CpuId cpu);
  int change_page_attr_set_clr_core(Cpa& cpa, Pfn start, Pfn numpages);
  int change_page_attr(Cpa& cpa, Pfn addr);
  int should_split_large_page(Cpa& cpa, Entry& leaf, Pfn addr, Pfn psize, Level level);
  int split_large_page(Cpa& cpa, Pfn addr, Level level);
  void split_page_count(Level level);
  void collapse_page_count(Level level);
  void vm_unmap_aliases(CpuId cpu);
  void cpa_collapse_large_pages(Pfn start, Pfn numpages, CpuId cpu);
  int collapse_large_pages(Pfn addr, std::vector<Pfn>& pgtables, CpuId cpu);
  int collapse_pmd_page(Entry& pmd, Pfn addr, std::vector<Pfn>& pgtables, CpuId cpu);
  int collapse_pud_page(Entry& pud, std::vector<Pfn>& pgtables);
  // Tells the observer of a CPA step; make() builds it only when one is attached.
  template <class MakeStep>
  void step(MakeStep make) {
    if (step_observer_ != nullptr) [[unlikely]] step_observer_->on_cpa_step(make());
  }

  std::vector<Entry> pud_;  // one per GiB of physical address space
  HugeVector<PmdTable> pmd_tables_;
  std::vector<std::uint32_t> free_pmd_tables_;
  HugeVector<PteTable> pte_tables_;
  std::vector<std::uint32_t> free_pte_tables_;
  HugeVector<FullPtes> full_ptes_;
  std::vector<std::uint32_t> free_full_ptes_;
  std::vector<MappedRange> ram_;
  PageTableAllocator& allocator_;
  FlushLog& flushes_;
  RestoreObserver* restore_observer_ = nullptr;
  CpaStepObserver* step_observer_ = nullptr;
  CollapseStyle collapse_style_ = CollapseStyle::SetLeaf;
  SplitStyle split_style_ = SplitStyle::Kernel;
  DirectMapCounters counters_;
  std::uint64_t mapped_pages_ = 0;
  Pfn max_pfn_mapped_ = 0;
  std::uint64_t lazy_vmap_pages_ = 0;  // vmap_lazy_nr of the areas the model frees
  bool gbpages_ = true;
  bool running_ = false;
  bool collapse_enabled_ = true;
  bool restore_gd_ = false;
};

}  // namespace exmem::model::directmap
