// metrics.cpp: the catalogue.
#include "sim/metrics.hpp"

#include <array>
#include <type_traits>

namespace exmem::sim {

double as_double(const Number& n) {
  return std::visit([](auto v) { return static_cast<double>(v); }, n);
}

namespace {

template <class T>
std::optional<Number> number(T v) {
  if constexpr (std::is_floating_point_v<T>) {
    return Number{static_cast<double>(v)};
  } else if constexpr (std::is_signed_v<T>) {
    return Number{static_cast<std::int64_t>(v)};
  } else {
    return Number{static_cast<std::uint64_t>(v)};
  }
}

// Accessors, one expression of the RunResult `r` each.
#define EXMEM_GET(expr) +[](const RunResult& r) -> std::optional<Number> { return number(expr); }
// ... that only a synthetic run has.
#define EXMEM_SYNTHETIC(expr)                                                  \
  +[](const RunResult& r) -> std::optional<Number> {                          \
    return r.source == Source::Synthetic ? number(expr) : std::nullopt;       \
  }
// ... a field of the replay's statistics, only a trace run has.
#define EXMEM_TRACE(field)                                                     \
  +[](const RunResult& r) -> std::optional<Number> {                          \
    return r.trace ? number(r.trace->field) : std::nullopt;                   \
  }

std::optional<Number> normal_zone_order9(const RunResult& r, bool extfrag) {
  const ZoneFragmentation* z = r.zone("Normal");
  if (z == nullptr) return std::nullopt;
  return number(extfrag ? z->extfrag_index[9] : z->unusable_free_index[9]);
}

// OOM kills of the processes whose names start with `prefix` ("secret-": the
// holders of secret memory, their children and helpers); nullopt when more
// were killed than the run kept a record of.
std::optional<Number> kills_of(const RunResult& r, std::string_view prefix, bool matching) {
  if (r.oom.kills > r.oom.victims.size()) return std::nullopt;
  std::uint64_t n = 0;
  for (const model::mm::OomVictim& v : r.oom.victims) n += (v.role.rfind(prefix, 0) == 0) == matching;
  return number(n);
}

// Pages held for secret memory (mapped to its files, and pooled by the
// policy) per page charged to the processes' RLIMIT_MEMLOCK (the pages
// mapped); nullopt when no secret page is live.
std::optional<Number> pinned_per_charged(const RunResult& r) {
  if (r.secret_live_pages == 0) return std::nullopt;
  return number(static_cast<double>(r.secret_live_pages + r.pooled_pages) / static_cast<double>(r.secret_live_pages));
}

constexpr std::array<std::string_view, 2> kClaimsSteals = {"/allocator/extfrag_claims", "/allocator/extfrag_steals"};
constexpr std::array<std::string_view, 3> kSeconds = {"/boot_seconds", "/fill_seconds", "/run_seconds"};

const Metric kMetrics[] = {
    // The direct map.
    {"/direct_map/DirectMap4k", "DirectMap4k_kB", "DirectMap4k (kB)", "kB", Format::Integer,
     EXMEM_GET(r.direct_map.direct_map_4k_kb()), kTable | kColumn},
    {"/direct_map/DirectMap2M", "DirectMap2M_kB", "DirectMap2M (kB)", "kB", Format::Integer,
     EXMEM_GET(r.direct_map.direct_map_2m_kb()), kTable | kColumn},
    {"/direct_map/DirectMap1G", "DirectMap1G_kB", "DirectMap1G (kB)", "kB", Format::Integer,
     EXMEM_GET(r.direct_map.direct_map_1g_kb()), kTable | kColumn},
    {"/direct_map/direct_map_level2_splits", "direct_map_level2_splits", "direct_map_level2_splits", "splits",
     Format::Integer, EXMEM_GET(r.direct_map.level2_splits), kTable | kColumn},
    {"/direct_map/direct_map_level3_splits", "direct_map_level3_splits", "direct_map_level3_splits", "splits",
     Format::Integer, EXMEM_GET(r.direct_map.level3_splits), kTable | kColumn},
    {"/direct_map/direct_map_level2_collapses", "direct_map_level2_collapses", "direct_map_level2_collapses",
     "collapses", Format::Integer, EXMEM_GET(r.direct_map.level2_collapses), kTable | kColumn},
    {"/direct_map/direct_map_level3_collapses", "direct_map_level3_collapses", "direct_map_level3_collapses",
     "collapses", Format::Integer, EXMEM_GET(r.direct_map.level3_collapses), kTable | kColumn},
    {"/direct_map/page_table_pages", "page_table_pages", "direct-map page-table pages", "pages", Format::Integer,
     EXMEM_GET(r.direct_map.table_pages_allocated - r.direct_map.table_pages_freed), kTable | kColumn},
    {"/direct_map/split_enomem", "", "", "splits", Format::Integer, EXMEM_GET(r.direct_map.split_enomem)},
    // Collapse attempts collapse_pmd_page()/collapse_pud_page() refused, by why.
    {"/direct_map/collapse_refused_2m_global_dirty", "collapse_refused_2m_global_dirty",
     "2 MiB collapses refused for G/D only", "attempts", Format::Integer,
     EXMEM_GET(r.direct_map.refused_2m.global_or_dirty()), kTableIfNonzero | kColumn},
    {"/direct_map/collapse_refused_2m/global", "", "", "attempts", Format::Integer,
     EXMEM_GET(r.direct_map.refused_2m.global)},
    {"/direct_map/collapse_refused_2m/dirty", "", "", "attempts", Format::Integer,
     EXMEM_GET(r.direct_map.refused_2m.dirty)},
    {"/direct_map/collapse_refused_2m/global_and_dirty", "", "", "attempts", Format::Integer,
     EXMEM_GET(r.direct_map.refused_2m.global_dirty)},
    {"/direct_map/collapse_refused_2m/other_flags", "", "", "attempts", Format::Integer,
     EXMEM_GET(r.direct_map.refused_2m.other)},
    {"/direct_map/collapse_refused_2m/not_present", "", "", "attempts", Format::Integer,
     EXMEM_GET(r.direct_map.refused_2m.not_present)},
    {"/direct_map/collapse_refused_2m/pinned_4k", "", "", "attempts", Format::Integer,
     EXMEM_GET(r.direct_map.refused_2m.pinned_4k)},
    {"/direct_map/collapse_refused_1g_global_dirty", "collapse_refused_1g_global_dirty",
     "1 GiB collapses refused for G/D only", "attempts", Format::Integer,
     EXMEM_GET(r.direct_map.refused_1g.global_or_dirty()), kTableIfNonzero | kColumn},
    {"/direct_map/collapse_refused_1g/total", "", "", "attempts", Format::Integer,
     EXMEM_GET(r.direct_map.refused_1g.total())},
    {"/direct_map/vm_unmap_alias_flushes", "", "", "flushes", Format::Integer,
     EXMEM_GET(r.direct_map.vm_unmap_alias_flushes)},
    // From the end's region map, when the run took one (its JSON has it under region_map).
    {"", "split_regions_end", "2 MiB regions split to 4K at the end", "regions", Format::Integer,
     +[](const RunResult& r) -> std::optional<Number> {
       return r.map_end ? number(r.map_end->regions_of(model::Coverage::Split4K)) : std::nullopt;
     },
     kColumn},
    // TLB flushes.
    {"", "tlb_flush_events", "TLB flush events", "flushes", Format::Integer,
     EXMEM_GET(r.flushes.range_flushes + r.flushes.full_flushes + r.flushes.local_flushes), kTable | kColumn},
    {"/tlb_flushes/full_flushes", "full_flushes", "full flushes", "flushes", Format::Integer,
     EXMEM_GET(r.flushes.full_flushes), kTable | kColumn | kSubRow},
    {"/tlb_flushes/range_flushes", "range_flushes", "range flushes", "flushes", Format::Integer,
     EXMEM_GET(r.flushes.range_flushes), kTable | kColumn | kSubRow},
    {"/tlb_flushes/range_pages", "", "pages in range flushes", "pages", Format::Integer,
     EXMEM_GET(r.flushes.range_pages), kTable | kSubRow},
    {"/collapse/flushes", "", "flushes by the collapse mode", "flushes", Format::Integer,
     EXMEM_GET(r.collapse.flushes), kTable | kSubRow},
    {"/tlb_flushes/local_flushes", "", "", "flushes", Format::Integer, EXMEM_GET(r.flushes.local_flushes)},
    // What the direct map costs (model/tlb/cost.hpp).
    {"/tlb_cost/miss_rate", "tlb_miss_rate", "TLB misses per 1000 kernel accesses", "misses per access",
     Format::PerThousand, EXMEM_GET(r.tlb_cost.miss_rate), kTable | kColumn},
    {"/tlb_cost/walk_cycles", "walk_cycles", "page-walk cycles (estimate)", "cycles", Format::Whole,
     EXMEM_GET(r.tlb_cost.walk_cycles), kTable | kColumn},
    {"/tlb_cost/ipis", "shootdown_ipis", "shootdown IPIs", "IPIs", Format::Integer, EXMEM_GET(r.tlb_cost.ipis),
     kTable | kColumn},
    {"/tlb_cost/shootdown_us", "shootdown_us", "shootdown cost (us, estimate)", "us", Format::Whole,
     EXMEM_GET(r.tlb_cost.shootdown_us), kTable | kColumn},
    // The kernel slowdown against the boot direct map (model/tlb/cost.hpp:
    // estimate_cost()), with its inputs; the figures' sources are strings in
    // the JSON (report/json.cpp).
    {"/tlb_cost/slowdown/percent", "kernel_slowdown_percent", "kernel slowdown % (estimate)", "%",
     Format::Percent, EXMEM_GET(r.tlb_cost.slowdown_percent), kTable | kColumn},
    {"/tlb_cost/slowdown/walks_split", "", "", "walks", Format::Integer, EXMEM_GET(r.tlb_cost.misses)},
    {"/tlb_cost/slowdown/walks_unsplit", "", "", "walks", Format::Integer, EXMEM_GET(r.tlb_cost.walks_unsplit)},
    {"/tlb_cost/slowdown/walk_refs_unsplit", "", "", "references", Format::Integer,
     EXMEM_GET(r.tlb_cost.walk_refs_unsplit)},
    {"/tlb_cost/slowdown/walk_cycles_unsplit", "", "", "cycles", Format::Whole,
     EXMEM_GET(r.tlb_cost.walk_cycles_unsplit)},
    {"/tlb_cost/slowdown/stream_accesses", "", "", "accesses", Format::Integer, EXMEM_GET(r.tlb_cost.accesses)},
    {"/tlb_cost/slowdown/events", "", "", "events", Format::Integer, EXMEM_GET(r.tlb_cost.events)},
    {"/tlb_cost/slowdown/accesses_per_event", "", "", "accesses", Format::Integer,
     EXMEM_GET(r.tlb_cost.accesses_per_event)},
    {"/tlb_cost/slowdown/run_accesses", "", "", "accesses", Format::Whole, EXMEM_GET(r.tlb_cost.run_accesses)},
    {"/tlb_cost/slowdown/scale", "", "", "", Format::Real, EXMEM_GET(r.tlb_cost.scale)},
    {"/tlb_cost/slowdown/walk_ns", "", "", "ns", Format::Real, EXMEM_GET(r.tlb_cost.walk_ns)},
    {"/tlb_cost/slowdown/kernel_access_ns", "", "", "ns", Format::Real, EXMEM_GET(r.tlb_cost.kernel_access_ns)},
    {"/tlb_cost/slowdown/extra_walk_ns", "", "", "ns", Format::Whole, EXMEM_GET(r.tlb_cost.extra_walk_ns)},
    {"/tlb_cost/slowdown/shootdown_ns", "", "", "ns", Format::Whole, EXMEM_GET(r.tlb_cost.shootdown_ns)},
    {"/tlb_cost/slowdown/kernel_ns", "", "", "ns", Format::Whole, EXMEM_GET(r.tlb_cost.kernel_ns)},
    // The stream: drawn from the run's live kernel pages (1) or over all of RAM (0).
    {"/tlb_cost/stream/live", "", "", "", Format::Integer, EXMEM_GET(r.tlb_cost.stream_live ? 1u : 0u)},
    {"/tlb_cost/stream/hot_set_pages", "", "", "pages", Format::Integer, EXMEM_GET(r.tlb_cost.hot_set_pages)},
    {"/tlb_cost/stream/live_pages/page_cache", "", "", "pages", Format::Integer,
     EXMEM_GET(r.tlb_cost.live_pages[0])},
    {"/tlb_cost/stream/live_pages/slab_reclaimable", "", "", "pages", Format::Integer,
     EXMEM_GET(r.tlb_cost.live_pages[1])},
    {"/tlb_cost/stream/live_pages/kernel", "", "", "pages", Format::Integer, EXMEM_GET(r.tlb_cost.live_pages[2])},
    {"/tlb_cost/stream/live_pages/page_tables", "", "", "pages", Format::Integer,
     EXMEM_GET(r.tlb_cost.live_pages[3])},
    {"/tlb_cost/stream/live_pages/user", "", "", "pages", Format::Integer, EXMEM_GET(r.tlb_cost.live_pages[4])},
    {"/tlb_cost/seconds", "", "", "s", Format::Seconds, EXMEM_GET(r.cost_seconds)},
    {"/tlb_cost/accesses", "", "", "accesses", Format::Integer, EXMEM_GET(r.tlb_cost.accesses)},
    {"/tlb_cost/misses", "", "", "misses", Format::Integer, EXMEM_GET(r.tlb_cost.misses)},
    {"/tlb_cost/leaves_4k", "", "", "leaves", Format::Integer, EXMEM_GET(r.tlb_cost.leaves_4k)},
    {"/tlb_cost/leaves_2m", "", "", "leaves", Format::Integer, EXMEM_GET(r.tlb_cost.leaves_2m)},
    {"/tlb_cost/leaves_1g", "", "", "leaves", Format::Integer, EXMEM_GET(r.tlb_cost.leaves_1g)},
    // memfd_secret.
    {"/secretmem/faults", "secret_faults", "secret faults", "pages", Format::Integer,
     EXMEM_GET(r.workload.secret_faults), kTable | kColumn},
    {"/secretmem/frees", "", "", "pages", Format::Integer, EXMEM_GET(r.workload.secret_frees)},
    {"/secretmem/ooms", "", "", "faults", Format::Integer, EXMEM_GET(r.workload.secret_ooms)},
    {"/secretmem/live_pages", "", "", "pages", Format::Integer, EXMEM_GET(r.secret_live_pages)},
    {"/secretmem/files_created", "", "", "files", Format::Integer, EXMEM_GET(r.mm.secret_files_created)},
    {"/secretmem/forks", "", "", "forks", Format::Integer, EXMEM_GET(r.workload.forks)},
    {"/secretmem/fd_passes", "", "", "fds", Format::Integer, EXMEM_GET(r.workload.fd_passes)},
    // The other users of unmapped pages, when the scenario has them.
    {"/workload/exclusive_faults", "", "MAP_EXCLUSIVE pages faulted", "pages", Format::Integer,
     EXMEM_SYNTHETIC(r.workload.exclusive_faults), kTableIfNonzero},
    {"/workload/exclusive_failures", "", "MAP_EXCLUSIVE failures", "failures", Format::Integer,
     EXMEM_SYNTHETIC(r.workload.exclusive_failures), kTableIfNonzero},
    {"/workload/rox_loads", "", "execmem ROX loads", "loads", Format::Integer, EXMEM_SYNTHETIC(r.workload.rox_loads),
     kTableIfNonzero},
    {"/workload/rox_failures", "", "execmem ROX load failures", "loads", Format::Integer,
     EXMEM_SYNTHETIC(r.workload.rox_failures), kTableIfNonzero},
    {"/workload/guest_faults", "", "guest_memfd pages faulted", "folios", Format::Integer,
     EXMEM_SYNTHETIC(r.workload.guest_faults), kTableIfNonzero},
    {"/workload/guest_failures", "", "guest faults that found no page", "faults", Format::Integer,
     EXMEM_SYNTHETIC(r.workload.guest_failures), kTableIfNonzero},
    {"/workload/wp_tables_allocated", "", "write-protected page tables", "pages", Format::Integer,
     EXMEM_GET(r.workload.wp_tables_allocated), kTableIfNonzero},
    {"/workload/wp_table_failures", "", "write-protected table failures", "failures", Format::Integer,
     EXMEM_GET(r.workload.wp_table_failures), kTableIfNonzero},
    {"/workload/wp_tables_freed", "", "", "pages", Format::Integer, EXMEM_GET(r.workload.wp_tables_freed)},
    {"/workload/exclusive_frees", "", "", "pages", Format::Integer, EXMEM_SYNTHETIC(r.workload.exclusive_frees)},
    {"/workload/rox_unloads", "", "", "unloads", Format::Integer, EXMEM_SYNTHETIC(r.workload.rox_unloads)},
    {"/workload/guest_frees", "", "", "folios", Format::Integer, EXMEM_SYNTHETIC(r.workload.guest_frees)},
    {"/workload/guest_teardowns", "", "", "VMs", Format::Integer, EXMEM_SYNTHETIC(r.workload.guest_teardowns)},
    {"/workload/hold_turns", "", "", "turns", Format::Integer, EXMEM_SYNTHETIC(r.workload.hold_turns)},
    {"/workload/kernel_allocs", "", "", "blocks", Format::Integer, EXMEM_GET(r.workload.kernel_allocs)},
    {"/workload/kernel_frees", "", "", "blocks", Format::Integer, EXMEM_GET(r.workload.kernel_frees)},
    {"/workload/user_allocs", "", "", "blocks", Format::Integer, EXMEM_GET(r.workload.user_allocs)},
    {"/workload/user_frees", "", "", "blocks", Format::Integer, EXMEM_GET(r.workload.user_frees)},
    {"/workload/alloc_failures", "", "", "allocations", Format::Integer, EXMEM_GET(r.workload.alloc_failures)},
    {"/workload/fill_pages", "", "", "pages", Format::Integer, EXMEM_GET(r.workload.fill_pages)},
    {"/workload/page_cache_allocs", "", "", "blocks", Format::Integer, EXMEM_SYNTHETIC(r.workload.page_cache_allocs)},
    {"/workload/slab_allocs", "", "", "blocks", Format::Integer, EXMEM_SYNTHETIC(r.workload.slab_allocs)},
    {"/workload/frees_of_gone", "", "", "frees", Format::Integer, EXMEM_GET(r.workload.frees_of_gone)},
    {"/workload/processes_killed", "", "", "processes", Format::Integer, EXMEM_GET(r.workload.processes_killed)},
    // Reclaim, migration and the OOM killer: what the owners of pages did
    // when the allocator asked (model/phys/page_owners.hpp).
    // The allocator's side (PhysStats, /proc/vmstat's names): kswapd and
    // direct reclaim, compaction and migration.
    {"/reclaim/kswapd_pages", "reclaimed_kswapd", "reclaimed by kswapd", "pages", Format::Integer,
     EXMEM_GET(r.allocator.stats.pgsteal_kswapd), kTable | kColumn},
    {"/reclaim/direct_pages", "reclaimed_direct", "reclaimed directly", "pages", Format::Integer,
     EXMEM_GET(r.allocator.stats.pgsteal_direct), kTable | kColumn},
    {"/reclaim/kswapd_runs", "", "", "runs", Format::Integer, EXMEM_GET(r.allocator.stats.kswapd_wakeups)},
    {"/reclaim/allocstall", "", "", "allocations", Format::Integer, EXMEM_GET(r.allocator.stats.allocstall)},
    {"/compaction/stall", "compact_stall", "compactions", "runs", Format::Integer,
     EXMEM_GET(r.allocator.stats.compact_stall), kTableIfNonzero | kColumn},
    {"/compaction/success", "", "", "runs", Format::Integer, EXMEM_GET(r.allocator.stats.compact_success)},
    {"/compaction/fail", "", "", "runs", Format::Integer, EXMEM_GET(r.allocator.stats.compact_fail)},
    {"/compaction/migrate_scanned", "", "", "pages", Format::Integer,
     EXMEM_GET(r.allocator.stats.compact_migrate_scanned)},
    {"/compaction/free_scanned", "", "", "pages", Format::Integer, EXMEM_GET(r.allocator.stats.compact_free_scanned)},
    {"/migrate/pages", "pages_migrated", "pages migrated", "pages", Format::Integer,
     EXMEM_GET(r.allocator.stats.pgmigrate_success), kTableIfNonzero | kColumn},
    {"/migrate/failed", "", "", "pages", Format::Integer, EXMEM_GET(r.allocator.stats.pgmigrate_fail)},
    {"/migrate/cma_pages", "", "", "pages", Format::Integer, EXMEM_GET(r.allocator.stats.cma_migrated)},
    {"/allocator/highatomic_unreserved", "", "", "pageblocks", Format::Integer,
     EXMEM_GET(r.allocator.stats.highatomic_unreserved)},
    {"/reclaim/page_cache_pages", "reclaimed_page_cache", "page cache reclaimed", "pages", Format::Integer,
     EXMEM_GET(r.reclaim.cache_pages), kTable | kColumn},
    {"/reclaim/slab_pages", "reclaimed_slab", "slab reclaimed", "pages", Format::Integer,
     EXMEM_GET(r.reclaim.slab_pages), kTable | kSubRow},
    {"/reclaim/policy_pages", "", "pooled pages shrunk", "pages", Format::Integer, EXMEM_GET(r.reclaim.policy_pages),
     kTable | kSubRow},
    {"/reclaim/calls", "", "", "calls", Format::Integer, EXMEM_GET(r.reclaim.calls)},
    {"/reclaim/refused", "", "", "calls", Format::Integer, EXMEM_GET(r.reclaim.refused)},
    {"/migrate/owner_blocks", "", "blocks migrated (owners)", "blocks", Format::Integer, EXMEM_GET(r.owners.migrated),
     kTableIfNonzero},
    {"/migrate/owner_refused", "", "", "blocks", Format::Integer, EXMEM_GET(r.owners.migrate_refused)},
    {"/oom/kills", "oom_kills", "OOM kills", "processes", Format::Integer, EXMEM_GET(r.oom.kills), kTable | kColumn},
    {"/oom/invocations", "", "", "calls", Format::Integer, EXMEM_GET(r.oom.invocations)},
    {"/oom/no_victim", "", "", "calls", Format::Integer, EXMEM_GET(r.oom.no_victim)},
    {"/oom/skipped_nofs", "", "", "calls", Format::Integer, EXMEM_GET(r.oom.skipped_nofs)},
    {"/oom/anon_reaped", "", "", "pages", Format::Integer, EXMEM_GET(r.owners.anon_reaped)},
    {"/oom/kills_secret_holders", "oom_kills_secret_holders", "OOM kills of secret holders", "processes", Format::Integer,
     +[](const RunResult& r) { return kills_of(r, "secret-", true); }, kColumn},
    {"/oom/kills_others", "oom_kills_others", "OOM kills of other processes", "processes", Format::Integer,
     +[](const RunResult& r) { return kills_of(r, "secret-", false); }, kColumn},
    // The owners' pages.
    {"/owners/page_cache_pages", "", "", "pages", Format::Integer, EXMEM_GET(r.page_cache_pages)},
    {"/owners/slab_pages", "", "", "pages", Format::Integer, EXMEM_GET(r.slab_pages)},
    {"/owners/frees_of_gone", "", "frees of pages already reclaimed or reaped", "frees", Format::Integer,
     EXMEM_GET(r.owners.frees_of_gone), kTableIfNonzero},
    // Failures seen by the processes: faults that still failed (VM_FAULT_OOM
    // with no page: the OOM killer found no victim, or the faulting process
    // was the victim).
    {"/failures/failed_faults", "failed_faults", "failed faults", "faults", Format::Integer,
     EXMEM_GET(r.workload.secret_ooms), kTable | kColumn},
    {"/failures/oom_victim_faults", "", "", "faults", Format::Integer, EXMEM_GET(r.mm.faults_oom_victim)},
    {"/failures/sigbus_at_fault", "sigbus_at_fault", "SIGBUS at fault", "faults", Format::Integer,
     EXMEM_GET(r.workload.secret_sigbus), kTable | kColumn},
    {"/failures/mmap_failed", "mmap_failed", "failed mmaps", "mmaps", Format::Integer,
     EXMEM_GET(r.workload.mmap_failures), kTable | kColumn},
    // Fragmentation (the JSON has every zone and order under /fragmentation).
    {"", "", "unusable free index, order 9", "thousandths", Format::Integer,
     +[](const RunResult& r) { return normal_zone_order9(r, false); }, kTable},
    {"", "", "extfrag index, order 9", "thousandths", Format::Integer,
     +[](const RunResult& r) { return normal_zone_order9(r, true); }, kTable},
    {"/secretmem/pinned_per_charged", "pinned_per_charged_page", "pages held per secret page charged", "", Format::Real,
     +[](const RunResult& r) { return pinned_per_charged(r); }, kColumn},
    {"/pooled_pages", "pooled_pages", "pooled pages at the end", "pages", Format::Integer, EXMEM_GET(r.pooled_pages),
     kTable | kColumn},
    // The buddy allocator.
    {"/allocator/unmovable_pageblocks", "", "unmovable pageblocks", "pageblocks", Format::Integer,
     EXMEM_GET(r.allocator.unmovable_pageblocks), kTable},
    {"", "", "pageblocks claimed / stolen from", "pageblocks", Format::Integer, nullptr, kTable, kClaimsSteals, " / "},
    {"/allocator/pgalloc_fail", "", "allocations failed", "allocations", Format::Integer,
     EXMEM_GET(r.allocator.stats.pgalloc_fail), kTable},
    {"/allocator/extfrag_claims", "", "", "pageblocks", Format::Integer, EXMEM_GET(r.allocator.stats.extfrag_claims)},
    {"/allocator/extfrag_steals", "", "", "pageblocks", Format::Integer, EXMEM_GET(r.allocator.stats.extfrag_steals)},
    {"/allocator/pgalloc", "", "", "blocks", Format::Integer, EXMEM_GET(r.allocator.stats.pgalloc)},
    {"/allocator/pgfree", "", "", "blocks", Format::Integer, EXMEM_GET(r.allocator.stats.pgfree)},
    {"/allocator/pcp_refills", "", "", "calls", Format::Integer, EXMEM_GET(r.allocator.stats.pcp_refills)},
    {"/allocator/pcp_drains", "", "", "calls", Format::Integer, EXMEM_GET(r.allocator.stats.pcp_drains)},
    {"/allocator/slowpath", "", "", "allocations", Format::Integer, EXMEM_GET(r.allocator.stats.slowpath)},
    {"/allocator/free_pages", "", "", "pages", Format::Integer, EXMEM_GET(r.allocator.free_pages)},
    {"/allocator/pcp_pages", "", "", "pages", Format::Integer, EXMEM_GET(r.allocator.pcp_pages)},
    {"/allocator/managed_pages", "", "", "pages", Format::Integer, EXMEM_GET(r.allocator.managed_pages)},
    {"/allocator/min_free_kbytes", "", "", "kB", Format::Integer, EXMEM_GET(r.allocator.min_free_kbytes)},
    // The collapse mode.
    {"/collapse/regions_scanned", "", "", "regions", Format::Integer, EXMEM_GET(r.collapse.attempts)},
    {"/collapse/collapses", "", "", "leaves", Format::Integer, EXMEM_GET(r.collapse.collapses)},
    // A trace's replay (model/workload/trace_replay.hpp).
    {"/trace/events", "", "trace events", "events", Format::Integer, EXMEM_TRACE(events), kTableIfAny},
    {"/trace/allocs_replayed", "", "allocations replayed", "blocks", Format::Integer, EXMEM_TRACE(allocs_replayed),
     kTableIfAny | kSubRow},
    {"/trace/model_alloc_failures", "", "allocations the model failed", "allocations", Format::Integer,
     EXMEM_TRACE(model_alloc_failures), kTableIfAny | kSubRow},
    {"/trace/allocs_failed_in_trace", "", "allocations failed in the trace", "allocations", Format::Integer,
     EXMEM_TRACE(allocs_failed_in_trace), kTableIfAny | kSubRow},
    {"/trace/frees_replayed", "", "frees replayed", "blocks", Format::Integer, EXMEM_TRACE(frees_replayed),
     kTableIfAny | kSubRow},
    {"/trace/frees_unknown", "", "frees of pages from before", "frees", Format::Integer, EXMEM_TRACE(frees_unknown),
     kTableIfAny | kSubRow},
    {"/trace/secret_faults", "", "secret pages faulted", "pages", Format::Integer, EXMEM_TRACE(secret_faults),
     kTableIfAny | kSubRow},
    {"/trace/unknown_lines", "", "lines not understood", "lines", Format::Integer, EXMEM_TRACE(unknown_lines),
     kTableIfAny | kSubRow},
    {"/trace/lines", "", "", "lines", Format::Integer, EXMEM_TRACE(lines)},
    {"/trace/sched_lines", "", "", "lines", Format::Integer, EXMEM_TRACE(sched_lines)},
    {"/trace/bytes", "", "", "bytes", Format::Integer, EXMEM_TRACE(bytes)},
    {"/trace/allocs", "", "", "lines", Format::Integer, EXMEM_TRACE(allocs)},
    {"/trace/kernel_allocs", "", "", "blocks", Format::Integer, EXMEM_TRACE(kernel_allocs)},
    {"/trace/reclaimable_allocs", "", "", "blocks", Format::Integer, EXMEM_TRACE(reclaimable_allocs)},
    {"/trace/user_allocs", "", "", "blocks", Format::Integer, EXMEM_TRACE(user_allocs)},
    {"/trace/realloc_while_live", "", "", "allocations", Format::Integer, EXMEM_TRACE(realloc_while_live)},
    {"/trace/unknown_gfp_allocs", "", "", "allocations", Format::Integer, EXMEM_TRACE(unknown_gfp_allocs)},
    {"/trace/frees", "", "", "lines", Format::Integer, EXMEM_TRACE(frees)},
    {"/trace/frees_partial", "", "", "frees", Format::Integer, EXMEM_TRACE(frees_partial)},
    {"/trace/frees_of_model_failures", "", "", "frees", Format::Integer, EXMEM_TRACE(frees_of_model_failures)},
    {"/trace/frees_of_gone", "", "", "frees", Format::Integer, EXMEM_TRACE(frees_of_gone)},
    {"/trace/trace_processes", "", "", "processes", Format::Integer, EXMEM_TRACE(trace_processes)},
    {"/trace/processes_killed", "", "", "processes", Format::Integer, EXMEM_TRACE(processes_killed)},
    {"/trace/secret_marked", "", "", "pages", Format::Integer, EXMEM_TRACE(secret_marked)},
    {"/trace/secret_ooms", "", "", "faults", Format::Integer, EXMEM_TRACE(secret_ooms)},
    {"/trace/secret_files", "", "", "files", Format::Integer, EXMEM_TRACE(secret_files)},
    {"/trace/secret_releases", "", "", "files", Format::Integer, EXMEM_TRACE(secret_releases)},
    {"/trace/secret_frees", "", "", "frees", Format::Integer, EXMEM_TRACE(secret_frees)},
    {"/trace/pcpu_drains", "", "", "events", Format::Integer, EXMEM_TRACE(pcpu_drains)},
    {"/trace/zone_locked", "", "", "events", Format::Integer, EXMEM_TRACE(zone_locked)},
    {"/trace/extfrag", "", "", "events", Format::Integer, EXMEM_TRACE(extfrag)},
    {"/trace/lost_events", "", "", "events", Format::Integer, EXMEM_TRACE(lost_events)},
    {"/trace/replay_seconds", "", "", "s", Format::Seconds, EXMEM_TRACE(seconds)},
    // The run and the host.
    {"/events", "events", "events", "events", Format::Integer, EXMEM_GET(r.events()), kColumn},
    {"/events_per_second", "events_per_second", "events per second", "events/s", Format::Whole,
     EXMEM_GET(r.events_per_second()), kTable | kColumn},
    {"", "", "boot / fill / run seconds", "s", Format::Seconds, nullptr, kTable, kSeconds, "/"},
    {"/boot_seconds", "", "", "s", Format::Seconds, EXMEM_GET(r.boot_seconds)},
    {"/fill_seconds", "", "", "s", Format::Seconds, EXMEM_GET(r.workload.fill_seconds)},
    {"/run_seconds", "", "", "s", Format::Seconds, EXMEM_GET(r.workload.run_seconds)},
    {"/peak_rss_bytes", "", "peak RSS", "bytes", Format::Size, EXMEM_GET(r.peak_rss_bytes), kTable},
    {"/model_bytes", "", "", "bytes", Format::Integer, EXMEM_GET(r.model_bytes)},
    {"/model_bytes_per_frame", "", "", "bytes", Format::Real,
     EXMEM_GET(r.total_ram_pages ? static_cast<double>(r.model_bytes) / static_cast<double>(r.total_ram_pages)
                                 : 0.0)},
};

#undef EXMEM_GET
#undef EXMEM_SYNTHETIC
#undef EXMEM_TRACE

const SampleField kSampleFields[] = {
    {"events", "events", Format::Integer, +[](const Sample& s) { return Number{s.events}; }},
    {"DirectMap4k", "DirectMap4k (kB)", Format::Integer, +[](const Sample& s) { return Number{s.direct_map_4k_kb}; },
     true},
    {"DirectMap2M", "DirectMap2M (kB)", Format::Integer, +[](const Sample& s) { return Number{s.direct_map_2m_kb}; }},
    {"DirectMap1G", "DirectMap1G (kB)", Format::Integer, +[](const Sample& s) { return Number{s.direct_map_1g_kb}; }},
    {"direct_map_level2_splits", "direct_map_level2_splits", Format::Integer,
     +[](const Sample& s) { return Number{s.level2_splits}; }, true},
    {"direct_map_level3_splits", "direct_map_level3_splits", Format::Integer,
     +[](const Sample& s) { return Number{s.level3_splits}; }},
    {"tlb_miss_rate", "TLB misses per 1000 kernel accesses", Format::PerThousand,
     +[](const Sample& s) { return Number{s.tlb_miss_rate}; }, true},
};

}  // namespace

std::span<const SampleField> sample_fields() { return kSampleFields; }

std::span<const Metric> metrics() { return kMetrics; }

const Metric* find_metric(std::string_view json_pointer) {
  for (const Metric& m : kMetrics) {
    if (!m.json.empty() && m.json == json_pointer) return &m;
  }
  return nullptr;
}

}  // namespace exmem::sim
