// phys/: physical memory of the model (see physmem.hpp for what the folder owns).
// compaction.hpp: the enums the slow path and compaction share
// (include/linux/compaction.h).
#pragma once

namespace exmem::model::phys::compact {

// enum compact_priority: lower is more thorough.
inline constexpr int COMPACT_PRIO_SYNC_FULL = 0;
inline constexpr int MIN_COMPACT_PRIORITY = COMPACT_PRIO_SYNC_FULL;
inline constexpr int COMPACT_PRIO_SYNC_LIGHT = 1;
inline constexpr int MIN_COMPACT_COSTLY_PRIORITY = COMPACT_PRIO_SYNC_LIGHT;
inline constexpr int DEF_COMPACT_PRIORITY = COMPACT_PRIO_SYNC_LIGHT;
inline constexpr int COMPACT_PRIO_ASYNC = 2;
inline constexpr int INIT_COMPACT_PRIORITY = COMPACT_PRIO_ASYNC;

// enum compact_result, in the kernel's order (try_to_compact_pages() keeps the max).
inline constexpr int COMPACT_NOT_SUITABLE_ZONE = 0;
inline constexpr int COMPACT_SKIPPED = 1;
inline constexpr int COMPACT_DEFERRED = 2;
inline constexpr int COMPACT_NO_SUITABLE_PAGE = 3;
inline constexpr int COMPACT_CONTINUE = 4;
inline constexpr int COMPACT_COMPLETE = 5;
inline constexpr int COMPACT_PARTIAL_SKIPPED = 6;
inline constexpr int COMPACT_CONTENDED = 7;
inline constexpr int COMPACT_SUCCESS = 8;

inline constexpr unsigned kCompactClusterMax = 32;  // COMPACT_CLUSTER_MAX (SWAP_CLUSTER_MAX)
inline constexpr int kExtfragThreshold = 500;       // sysctl_extfrag_threshold
// mirrors compact_gap()
inline constexpr unsigned long compact_gap(unsigned order) { return 2UL << order; }

}  // namespace exmem::model::phys::compact
