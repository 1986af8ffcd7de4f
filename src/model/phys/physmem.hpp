// phys/: physical memory of the model: frames, zones, the buddy allocator,
// per-CPU page lists, CMA, watermarks and gfp requests.
// Owns: every frame's state byte, pageblock migratetypes, free lists, pcp
// lists and zone counters. Must not touch: the direct map (directmap/), the
// processes and files (mm/); owners of allocated pages tag them by FrameKind
// and get them back only through alloc_pages()/free_pages().
//
// physmem.hpp: the machine's RAM, booted as Linux boots it (e820 ranges,
// memblock reservations, memblock_free_all()), and the page allocator on it.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "model/pfn_map.hpp"
#include "model/phys/frame.hpp"
#include "model/phys/free_list.hpp"
#include "model/phys/gfp.hpp"
#include "model/phys/migratetype.hpp"
#include "model/phys/page_owners.hpp"
#include "model/phys/zone.hpp"
#include "model/types.hpp"

namespace exmem::model::phys {

struct PhysConfig {
  std::uint64_t ram_bytes = 4 * GiB;
  unsigned cpus = 4;
  // RAM that would sit in [pci_hole_start, pci_hole_end) is remapped above it.
  std::uint64_t pci_hole_start = 3 * GiB;
  std::uint64_t pci_hole_end = 4 * GiB;
  std::uint64_t low_reserved_bytes = 1 * MiB;  // x86 reserves the first 1 MiB
  std::uint64_t kernel_image_start = 16 * MiB;  // CONFIG_PHYSICAL_START
  std::uint64_t kernel_image_bytes = 48 * MiB;  // text, data, bss, brk
  bool reserve_memmap = true;  // struct page array: 64 bytes per frame, top-down
  std::uint64_t cma_bytes = 0;  // cma= boot parameter, placed top-down under the memmap
  // CONFIG_TRANSPARENT_HUGEPAGE with THP enabled ("always" or "madvise", the
  // distributions' defaults): order-9 pages use pcp lists, and khugepaged
  // starts at boot (on machines of 512 MiB and more) and raises
  // min_free_kbytes to set_recommended_min_free_kbytes().
  bool thp = true;
  // -1: the kernel's own value (calculate_min_free_kbytes(), raised by
  // khugepaged). Otherwise vm.min_free_kbytes as written from user space
  // after boot (sysctl.conf): it wins over both, as the sysctl does.
  int min_free_kbytes = -1;
  unsigned watermark_scale_factor = 10;
  unsigned watermark_boost_factor = 15000;
  // The CPU's share of its last-level cache (cacheinfo's
  // per_cpu_data_slice_size: LLC size / CPUs sharing it), from which
  // zone_pcp_update_cacheinfo() sets PCPF_FREE_HIGH_BATCH when it holds more
  // than 3 x pcp->batch pages. Default 2 MiB: AMD EPYC Zen 3/4 (32 MiB of L3
  // per 8-core CCD, 16 threads); Intel Sapphire Rapids has 1.875 MiB per core,
  // 960 KiB per thread; both exceed 3 x 63 pages (756 KiB) and set the flag.
  // 0: no cache information (the flag stays clear).
  std::uint64_t llc_bytes_per_cpu = 2 * MiB;
  // The model has no clock. vmstat_update() runs refresh_cpu_vm_stats() on
  // every CPU once a second, and with it decay_pcp_high(); the model stands in
  // one second by this many pcp operations (allocations that reach
  // rmqueue_pcplist() plus frees through free_frozen_page_commit()), the order
  // of a busy server's page allocation and free rate (/proc/vmstat pgalloc_*
  // and pgfree deltas of 10^5 a second), after which PhysMem::vmstat_tick()
  // runs. 0: only when the caller calls vmstat_tick().
  std::uint64_t pcp_ops_per_vmstat_tick = 100000;
};

struct PfnRange {
  Pfn start = 0;
  Pfn end = 0;  // exclusive
  [[nodiscard]] Pfn size() const { return end - start; }
};

// Where boot puts everything (e820 RAM ranges around the PCI hole, memblock's
// reservations), or why a configuration cannot boot: the one place of these
// rules, for PhysMem's boot and for readers that want to refuse a machine
// before building it (scenario files).
struct RamLayout {
  std::vector<PfnRange> ram;    // ascending; the second starts at the hole's end
  Pfn low_reserved_end = 0;     // [0, it): the low reservation
  PfnRange kernel_image{};
  PfnRange memmap{};            // empty without reserve_memmap
  PfnRange cma{};               // empty without cma_bytes
  std::string problem;          // empty when the configuration boots
};
// `cma_parts`, when given, says what the CMA area is made of in the problem
// text ("cma 512 MiB and the secretmem area of X, 512 MiB").
RamLayout plan_ram_layout(const PhysConfig& config, std::string_view cma_parts = {});

// Counters in the spirit of /proc/vmstat (the vmstat name where there is one).
struct PhysStats {
  std::uint64_t pgalloc = 0;         // successful allocations (blocks)
  std::uint64_t pgalloc_fail = 0;    // allocations that returned NULL
  std::uint64_t pgfree = 0;          // freed blocks
  std::uint64_t pcp_refills = 0;     // rmqueue_bulk() calls
  std::uint64_t pcp_drains = 0;      // free_pcppages_bulk() calls
  std::uint64_t extfrag_claims = 0;  // fallbacks that claimed the pageblock
  std::uint64_t extfrag_steals = 0;  // fallbacks that stole without claiming
  std::uint64_t cma_fallbacks = 0;   // movable allocations served from CMA
  std::uint64_t slowpath = 0;        // allocations that entered the slow path
  std::uint64_t kswapd_wakeups = 0;  // pageoutrun: kswapd woken, balance_pgdat() run
  std::uint64_t highatomic_reserved = 0;
  std::uint64_t highatomic_unreserved = 0;  // pageblocks unreserve_highatomic_pageblock() gave back
  std::uint64_t pgsteal_kswapd = 0;   // pgsteal_kswapd: pages kswapd reclaimed
  std::uint64_t pgsteal_direct = 0;   // pgsteal_direct: pages direct reclaim reclaimed
  std::uint64_t allocstall = 0;       // allocstall_dma32 + allocstall_normal: try_to_free_pages() calls
  std::uint64_t compact_stall = 0;    // compact_stall: direct compactions that ran
  std::uint64_t compact_success = 0;  // compact_success: ... after which the allocation succeeded
  std::uint64_t compact_fail = 0;     // compact_fail: ... after which it still failed
  std::uint64_t compact_migrate_scanned = 0;  // compact_migrate_scanned
  std::uint64_t compact_free_scanned = 0;     // compact_free_scanned
  std::uint64_t pgmigrate_success = 0;  // pgmigrate_success: pages migrated (compaction and CMA)
  std::uint64_t pgmigrate_fail = 0;     // pgmigrate_fail: pages that failed to migrate
  std::uint64_t oom_kill = 0;           // oom_kill: out_of_memory() calls that killed a victim
  std::uint64_t cma_migrated = 0;       // pages cma_alloc() migrated out of its range (no vmstat name)
  std::uint64_t vmstat_ticks = 0;    // vmstat_tick() calls (model seconds)
};

enum class RmqueueMode { Normal, Cma, Claim, Steal };  // enum rmqueue_mode

class PhysMem {
 public:
  explicit PhysMem(const PhysConfig& config);
  PhysMem(const PhysMem&) = delete;
  PhysMem& operator=(const PhysMem&) = delete;

  // mirrors __alloc_pages(): fast path at the low watermark, then
  // __alloc_pages_slowpath() (slowpath.cpp) as Linux 6.18 runs it: kswapd
  // woken (it runs balance_pgdat() at once: the model has no threads), the
  // min watermark and the reserves gfp allows, async compaction first for
  // costly and non-movable high orders, direct reclaim (try_to_free_pages(),
  // then unreserve_highatomic_pageblock() and a pcp drain), direct compaction,
  // should_reclaim_retry() / should_compact_retry(), and the OOM killer for
  // orders <= 3 without __GFP_NORETRY / __GFP_RETRY_MAYFAIL. Reclaim, migration
  // and kills go through the page owners (set_page_owners()); without them
  // nothing is reclaimed, migrated or killed and the allocation fails
  // (-ENOMEM) where the kernel would need them. The block's frames are tagged `kind`.
  Result<Pfn> alloc_pages(Gfp gfp, unsigned order, CpuId cpu, FrameKind kind);
  // mirrors __free_pages(): pcp list for pcp orders, else the buddy directly.
  // -EINVAL when the block is not an allocated block of that order.
  int free_pages(Pfn pfn, unsigned order, CpuId cpu);
  // mirrors drain_all_pages(zone): every CPU's pcp list of `zone`, or of
  // every zone when it is nullptr (the kernel's drain_all_pages(NULL)).
  void drain_all_pages(Zone* zone = nullptr);
  // mirrors min_free_kbytes_sysctl_handler(): a write to vm.min_free_kbytes
  // sets user_min_free_kbytes and min_free_kbytes, then setup_per_zone_wmarks()
  // (watermarks, and pcp high_min/high_max from the new low watermark).
  // -EINVAL for a negative value (the sysctl's extra1 = SYSCTL_ZERO).
  int set_min_free_kbytes(int kbytes);
  // One second of vmstat_update() on every CPU: the pcp part of
  // refresh_cpu_vm_stats(true), decay_pcp_high() on each CPU's list of each
  // populated zone. PhysMem calls it itself every pcp_ops_per_vmstat_tick pcp
  // operations (PhysConfig); callers with a clock of their own may call it.
  void vmstat_tick();
  // Who the slow path reclaims from, migrates with and kills through (see
  // page_owners.hpp); nullptr (the default): no one, and then cma_alloc()
  // cannot migrate either (a movable page is busy, as an unmovable one).
  void set_page_owners(PageOwners* owners);
  // Two paths do at once what the kernel does page by page, and end in the
  // same state: a pcp refill takes the pages of the block it splits as one
  // run (rmqueue_run()), and free_contig_range() looks up a pageblock's zone
  // and migratetype once for all of its pages. Off, both go page by page, as
  // the kernel's code does. On by default; the tests compare the two.
  void set_batched(bool on) { batched_ = on; }
  // Re-tags an allocated block (e.g. a pool page handed out as a secret page).
  void set_kind(Pfn pfn, unsigned order, FrameKind kind);

  // mirrors cma_alloc() for the model: the lowest aligned range whose bits in
  // the CMA bitmap are clear and whose pages can all be taken: free pages,
  // pcp pages (drained), and movable pages, which alloc_contig_range()
  // migrates out of the range (its pageblocks MIGRATE_ISOLATE meanwhile, so
  // no destination is inside it). A range holding an unmovable page, a pinned
  // one (PageOwners::migrate() refused) or the tail of a movable block that
  // starts below it is busy. -ENOMEM when the bitmap has no clear aligned
  // range of `count` bits or a migration found no destination, -EBUSY when
  // every range tried was busy.
  Result<Pfn> cma_alloc(Pfn count, unsigned align_order);
  // mirrors cma_release(): the pages go back to the buddy and their bits are cleared.
  int cma_release(Pfn pfn, Pfn count);

  // --- read-only views ---
  [[nodiscard]] const PhysConfig& config() const { return config_; }
  [[nodiscard]] std::uint8_t frame_byte(Pfn pfn) const { return frames_[pfn]; }
  // Every frame's byte, nr_frames() of them (whole-machine scans, such as the TLB cost's stream).
  [[nodiscard]] const std::uint8_t* frame_bytes() const { return frames_.data(); }
  [[nodiscard]] FrameKind kind(Pfn pfn) const {
    const std::uint8_t b = frames_[pfn];
    return is_free_head(b) ? FrameKind::FreeHead : static_cast<FrameKind>(b);
  }
  [[nodiscard]] Migratetype pageblock_migratetype(Pfn pfn) const {
    return static_cast<Migratetype>(pageblocks_[pfn >> kPageblockOrder]);
  }
  [[nodiscard]] Pfn nr_frames() const { return static_cast<Pfn>(frames_.size()); }
  [[nodiscard]] const std::vector<PfnRange>& ram() const { return ram_; }
  [[nodiscard]] const std::vector<PfnRange>& reserved() const { return reserved_; }
  [[nodiscard]] PfnRange cma_area() const { return cma_; }
  // Whether pfn's bit in the CMA bitmap is set (false outside the CMA area).
  [[nodiscard]] bool cma_bitmap_test(Pfn pfn) const {
    if (pfn < cma_.start || pfn >= cma_.end) return false;
    const Pfn bit = pfn - cma_.start;
    return ((cma_bitmap_[bit / 64] >> (bit % 64)) & 1U) != 0;
  }
  // Pages whose bit in the CMA bitmap is set.
  [[nodiscard]] std::uint64_t cma_bitmap_weight() const { return cma_bitmap_weight_; }
  [[nodiscard]] std::uint64_t total_ram_pages() const { return total_ram_pages_; }
  [[nodiscard]] const Zone& zone(unsigned z) const { return zones_[z]; }
  [[nodiscard]] unsigned zone_of(Pfn pfn) const { return pfn < dma32_end_ ? ZONE_DMA32 : ZONE_NORMAL; }
  [[nodiscard]] std::uint64_t managed_pages() const;
  [[nodiscard]] std::uint64_t free_pages() const;  // buddy free pages (NR_FREE_PAGES)
  [[nodiscard]] std::uint64_t pcp_pages() const;
  [[nodiscard]] std::uint64_t pages_of_kind(FrameKind k) const {
    return kind_pages_[static_cast<unsigned>(k)];
  }
  // mirrors zone_reclaimable_pages(): the zone's file LRU (FrameKind::PageCache
  // pages; no swap, so no anonymous pages), or its free pages when that is 0.
  [[nodiscard]] std::uint64_t zone_reclaimable_pages(unsigned z) const;
  // The order of the allocated movable block whose first frame is pfn (0 for
  // a base page), as compound_order() of its head.
  [[nodiscard]] unsigned movable_block_order(Pfn pfn) const;
  [[nodiscard]] const PhysStats& stats() const { return stats_; }
  [[nodiscard]] unsigned cpus() const { return config_.cpus; }
  [[nodiscard]] int min_free_kbytes() const { return min_free_kbytes_; }
  // Bytes of host memory the model's physical-memory state occupies.
  [[nodiscard]] std::size_t model_bytes() const;
  // Free blocks per order of one zone (all migratetypes), as /proc/buddyinfo.
  [[nodiscard]] std::array<std::uint64_t, kNrPageOrders> buddyinfo(unsigned z) const;
  // The first pfns of the free blocks on free_area[order].free_list[mt] of
  // zone z, from the list's head.
  [[nodiscard]] std::vector<Pfn> free_list(unsigned z, unsigned order, unsigned mt) const;
  // mirrors unusable_free_index() of mm/vmstat.c, in thousandths.
  [[nodiscard]] int unusable_free_index(unsigned z, unsigned order) const;

  // Invariants: every frame in exactly one state; free lists consistent with
  // order, alignment and pageblock migratetype; counters add up; pcp lists hold
  // exactly the Pcp frames. Returns the violations found (empty when sound).
  [[nodiscard]] std::vector<std::string> check() const;

 private:
  // boot (physmem.cpp)
  void layout_ram();
  void reserve(Pfn start, Pfn end);
  void free_boot_range(Pfn start, Pfn end);  // __free_pages_memory()
  void setup_zones();

  // buddy core (buddy.cpp)
  void add_to_free_list(Zone& z, Pfn pfn, unsigned order, unsigned mt, bool tail);
  void del_from_free_list(Zone& z, Pfn pfn, unsigned order, unsigned mt);
  void move_to_free_list(Zone& z, Pfn pfn, unsigned order, unsigned old_mt, unsigned new_mt);
  // mirrors account_freepages() (inline, as the next: called on every block the buddy moves)
  void account_freepages(Zone& z, std::int64_t nr, unsigned mt) {
    if (mt == MIGRATE_ISOLATE) return;
    z.nr_free_pages += nr;
    if (mt == MIGRATE_CMA) {
      z.nr_free_cma += nr;
    } else if (mt == MIGRATE_HIGHATOMIC) {
      z.nr_free_highatomic += nr;
    }
  }
  // mirrors page_is_buddy(): a free block of exactly this order, same zone
  [[nodiscard]] bool page_is_buddy(Pfn buddy, unsigned order) const {
    return buddy < frames_.size() && frames_[buddy] == free_head_byte(order);
  }
  void free_one_page_core(Zone& z, Pfn pfn, unsigned order, unsigned mt, bool fpi_to_tail);
  void split_large_buddy(Zone& z, Pfn pfn, unsigned order, bool fpi_to_tail);
  std::uint64_t expand(Zone& z, Pfn pfn, unsigned low, unsigned high, unsigned mt);
  void page_del_and_expand(Zone& z, Pfn pfn, unsigned low, unsigned high, unsigned mt);
  Pfn rmqueue_smallest(Zone& z, unsigned order, unsigned mt);
  int find_suitable_fallback(const Zone& z, unsigned order, unsigned mt, bool claimable) const;
  bool prep_move_freepages_block(const Zone& z, Pfn pfn, Pfn& start, std::uint64_t* num_free,
                                 std::uint64_t* num_movable) const;
  std::uint64_t move_freepages_block(Zone& z, Pfn start, unsigned old_mt, unsigned new_mt);
  void change_pageblock_range(Pfn pfn, unsigned order, unsigned mt);
  bool boost_watermark(Zone& z);
  Pfn try_to_claim_block(Zone& z, Pfn page, unsigned current_order, unsigned order,
                         unsigned start_type, unsigned block_type, unsigned alloc_flags);
  Pfn rmqueue_claim(Zone& z, unsigned order, unsigned mt, unsigned alloc_flags);
  Pfn rmqueue_steal(Zone& z, unsigned order, unsigned mt);
  Pfn rmqueue_core(Zone& z, unsigned order, unsigned mt, unsigned alloc_flags, RmqueueMode& mode);
  void reserve_highatomic_pageblock(Zone& z, Pfn pfn, unsigned order);
  bool unreserve_highatomic_pageblock(unsigned highest_zoneidx, unsigned mt, bool force);

  // per-CPU lists (pcp.cpp)
  // mirrors pcp_allowed_order()
  [[nodiscard]] bool pcp_allowed_order(unsigned order) const {
    return order <= kPageAllocCostlyOrder || (config_.thp && order == kHpagePmdOrder);
  }
  int nr_pcp_alloc(PerCpuPages& pcp, const Zone& z, unsigned order);
  int rmqueue_run(Zone& z, unsigned order, int want, std::deque<Pfn>& list, unsigned mt,
                  unsigned alloc_flags);
  int rmqueue_bulk(Zone& z, unsigned order, int count, std::deque<Pfn>& list, unsigned mt,
                   unsigned alloc_flags);
  Pfn rmqueue_pcplist(Zone& z, unsigned order, unsigned mt, unsigned alloc_flags, CpuId cpu);
  // Defined in pcp.cpp and inlined into its callers there, on every page freed.
  inline void free_frozen_page_commit(Zone& z, PerCpuPages& pcp, Pfn pfn, unsigned mt,
                                      unsigned order);
  inline int nr_pcp_high(PerCpuPages& pcp, Zone& z, int batch, bool free_high);
  static int nr_pcp_free(const PerCpuPages& pcp, int batch, int high, bool free_high);
  void free_pcppages_bulk(Zone& z, int count, PerCpuPages& pcp, unsigned pindex);
  void free_pcp_run(Zone& z, Pfn low, Pfn high, unsigned order, bool rising);
  void setup_pcp(Zone& z);
  void zone_pcp_update(Zone& z);
  bool decay_pcp_high(Zone& z, PerCpuPages& pcp);
  void count_pcp_op() {
    if (config_.pcp_ops_per_vmstat_tick != 0 && ++pcp_ops_ >= config_.pcp_ops_per_vmstat_tick) {
      pcp_ops_ = 0;
      vmstat_tick();
    }
  }

  // watermarks (watermark.cpp)
  void init_per_zone_wmark_min();
  void calculate_min_free_kbytes();
  void set_recommended_min_free_kbytes();
  [[nodiscard]] std::uint64_t nr_free_buffer_pages() const;
  void setup_per_zone_wmarks_core();  // __setup_per_zone_wmarks()
  void setup_per_zone_wmarks();
  void setup_per_zone_lowmem_reserve();
  [[nodiscard]] std::int64_t zone_watermark_unusable_free(const Zone& z, unsigned order,
                                                          unsigned alloc_flags) const;
  [[nodiscard]] bool zone_watermark_ok(const Zone& z, unsigned order, std::uint64_t mark,
                                       unsigned highest_zoneidx, unsigned alloc_flags,
                                       std::int64_t free_pages) const;
  [[nodiscard]] bool zone_watermark_fast(const Zone& z, unsigned order, std::uint64_t mark,
                                         unsigned highest_zoneidx, unsigned alloc_flags) const;

  // allocation entry points (physmem.cpp; the frees in pcp.cpp)
  Pfn get_page_from_freelist(Gfp gfp, unsigned order, unsigned alloc_flags,
                             unsigned highest_zoneidx, unsigned mt, CpuId cpu);
  Pfn rmqueue(Zone& z, unsigned order, unsigned alloc_flags, unsigned mt, CpuId cpu);
  Pfn rmqueue_buddy(Zone& z, unsigned order, unsigned alloc_flags, unsigned mt);
  void free_frozen_pages(Pfn pfn, unsigned order, CpuId cpu);
  void free_contig_range(Pfn pfn, Pfn count);
  // kswapd and direct reclaim (slowpath.cpp)
  void wakeup_kswapd(Zone& z, unsigned order, unsigned highest_zoneidx, CpuId cpu);
  void wake_all_kswapds(unsigned order, unsigned highest_zoneidx, CpuId cpu);
  [[nodiscard]] bool pgdat_balanced(unsigned order, unsigned highest_zoneidx) const;
  void balance_pgdat(unsigned order, unsigned highest_zoneidx, CpuId cpu);
  std::uint64_t try_to_free_pages(unsigned order, Gfp gfp, unsigned highest_zoneidx, CpuId cpu);
  Pfn alloc_pages_slowpath(Gfp gfp, unsigned order, unsigned alloc_flags, unsigned highest_zoneidx,
                           unsigned mt, CpuId cpu);
  Pfn alloc_pages_direct_reclaim(Gfp gfp, unsigned order, unsigned alloc_flags,
                                 unsigned highest_zoneidx, unsigned mt, CpuId cpu,
                                 std::uint64_t& did_some_progress);
  bool should_reclaim_retry(unsigned order, unsigned highest_zoneidx, unsigned mt,
                            unsigned alloc_flags, bool did_some_progress, int& no_progress_loops);
  Pfn alloc_pages_may_oom(Gfp gfp, unsigned order, unsigned highest_zoneidx, unsigned mt,
                          CpuId cpu, std::uint64_t& did_some_progress);
  void drain_pages_zone(unsigned cpu, Zone& z);  // drain_pages_zone()

  // compaction (compaction.cpp)
  struct CompactControl;
  int try_to_compact_pages(Gfp gfp, unsigned order, unsigned alloc_flags, unsigned highest_zoneidx,
                           int prio, CpuId cpu);
  Pfn alloc_pages_direct_compact(Gfp gfp, unsigned order, unsigned alloc_flags,
                                 unsigned highest_zoneidx, unsigned mt, CpuId cpu, int prio,
                                 int& compact_result);
  int compact_zone(CompactControl& cc);
  int compact_finished(const CompactControl& cc) const;
  // __compaction_suitable() (watermark only), or with use_fragindex
  // compaction_suitable()'s fragmentation-index test for costly orders too
  [[nodiscard]] bool compaction_suitable(const Zone& z, unsigned order, unsigned highest_zoneidx,
                                         std::int64_t wmark_target, bool use_fragindex) const;
  [[nodiscard]] bool compaction_zonelist_suitable(unsigned order, unsigned highest_zoneidx) const;
  [[nodiscard]] int fragmentation_index(const Zone& z, unsigned order) const;
  bool isolate_migratepages(CompactControl& cc);
  void isolate_freepages(CompactControl& cc);
  int migrate_isolated(CompactControl& cc);
  void release_freepages(CompactControl& cc);
  // One movable block to a new place (migrate_folio_move() for the model):
  // `to` is allocated with from's kind, the owners are asked, and on success
  // `from` is freed. false: pinned, `to` is untagged again (still allocated
  // from the buddy's view: the caller gives it back).
  bool migrate_block(Pfn from, Pfn to, unsigned order, CpuId cpu);
  // Frames of allocated blocks: kind counts, the per-zone file pages and the
  // movable compound orders follow every tag change.
  void account_block(Pfn pfn, unsigned order, std::uint8_t kind, bool add);

  // CMA (physmem.cpp). The bitmap helpers mirror find_next_bit() /
  // find_next_zero_bit(), bitmap_find_next_zero_area_off() and bitmap_set() /
  // bitmap_clear(); with `busy` they search the union of cma_bitmap_ and cma_busy_.
  [[nodiscard]] Pfn cma_find_next(Pfn start, Pfn size, bool set, bool busy) const;
  [[nodiscard]] Pfn cma_find_next_zero_area(Pfn start, Pfn limit, Pfn nr, Pfn align_mask,
                                            Pfn align_offset, bool busy) const;
  static void cma_assign_bits(std::vector<std::uint64_t>& map, Pfn bit, Pfn nr, bool set);
  // Pages of the CMA area went back to the buddy: by free_pages(), or by
  // cma_release() (bits_cleared: their bitmap bits were just cleared).
  void cma_pages_freed(Pfn pfn, Pfn count, bool bits_cleared);
  [[nodiscard]] std::vector<std::string> check_cma() const;
  // alloc_contig_range() for [s, e) of the CMA area: isolate its pageblocks,
  // drain, migrate the movable blocks out. 0, -EBUSY (busy_pfn: the page that
  // could not move) or -ENOMEM (no destination). The pageblocks stay isolated:
  // cma_undo_isolate() gives them back.
  int cma_migrate_range(Pfn s, Pfn e, Pfn& busy_pfn);
  void cma_isolate(Pfn s, Pfn e, bool isolate);

  // Inline, one frame without a call to memset: most calls set one frame.
  void set_frames(Pfn pfn, Pfn count, std::uint8_t b) {
    if (count == 1) {
      frames_[pfn] = b;
    } else {
      std::memset(frames_.data() + pfn, b, count);
    }
  }
  void count_kind(std::uint8_t b, Pfn count, bool add);
  Zone& zone_for(Pfn pfn) { return zones_[zone_of(pfn)]; }

  PhysConfig config_;
  PageOwners* owners_ = nullptr;
  bool batched_ = true;  // set_batched()
  ZeroedBytes frames_;                    // one state byte per frame
  std::vector<std::uint8_t> pageblocks_;  // migratetype per pageblock
  FreeListStore lists_;
  std::array<Zone, MAX_NR_ZONES> zones_{};
  std::vector<PfnRange> ram_;
  std::vector<PfnRange> reserved_;
  PfnRange cma_{};
  // cma->bitmap with order_per_bit 0: one bit per page of the CMA area, set
  // from cma_alloc() until cma_release() (the pages may be re-tagged by their
  // owner meanwhile, but stay allocated).
  std::vector<std::uint64_t> cma_bitmap_;
  std::uint64_t cma_bitmap_weight_ = 0;  // bits set
  // The model's own memory of earlier searches (not in the kernel, which
  // retries every range each time): one bit per page of the CMA area that a
  // search found busy, kept until the page is freed, so it is always busy.
  std::vector<std::uint64_t> cma_busy_;
  // For the last (count, align_order) searched: every aligned range of the
  // area outside `open` holds a bit of cma_bitmap_ or cma_busy_, so it cannot
  // be taken; `open` holds the ranges of start positions (bit indices) where a
  // range may be clear: those above the last range handed out, and those over
  // pages freed since.
  // Also where cma_bitmap_ alone may have its lowest clear range of the kind
  // (which tells -EBUSY from -ENOMEM): none starts below bitmap_floor.
  struct CmaSearchMemo {
    bool valid = false;
    Pfn count = 0;
    unsigned align_order = 0;
    std::vector<PfnRange> open;
    Pfn bitmap_floor = 0;
  };
  CmaSearchMemo cma_memo_;
  Pfn dma32_end_ = 0;
  std::uint64_t total_ram_pages_ = 0;
  int min_free_kbytes_ = 0;
  int user_min_free_kbytes_ = -1;  // user_min_free_kbytes: -1 until the sysctl is written
  std::uint64_t pcp_ops_ = 0;      // pcp operations since the last vmstat_tick()
  std::array<std::uint64_t, 32> kind_pages_{};  // pages per allocated FrameKind
  std::array<std::uint64_t, MAX_NR_ZONES> file_pages_{};  // FrameKind::PageCache pages per zone
  // compound_order() of the allocated movable blocks of order > 0 (THPs),
  // by head pfn, and how many such blocks overlap each pageblock, so that
  // compaction looks the map up only in pageblocks that have one.
  PfnMap compound_;
  std::vector<std::uint16_t> pb_compound_;
  int kswapd_failures_ = 0;  // pgdat->kswapd_failures
  PhysStats stats_;
};

}  // namespace exmem::model::phys
