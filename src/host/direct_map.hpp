// The real kernel's direct map, as it counts it: how much of it each page size
// maps (DirectMap4k/2M/1G in /proc/meminfo, x86 only) and how often it was
// split or collapsed (direct_map_level2/3_splits and _collapses in
// /proc/vmstat, absent on kernels that do not count them).
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace exmem::host {

// nullopt for a field the kernel does not show: never 0 in its place.
struct DirectMapCounters {
  std::optional<std::uint64_t> dm4k_kb, dm2m_kb, dm1g_kb;
  std::optional<std::uint64_t> level2_splits, level3_splits, level2_collapses, level3_collapses;

  // DirectMap4k + 2M + 1G; nullopt when the kernel shows none of them.
  std::optional<std::uint64_t> total_kb() const {
    if (!dm4k_kb && !dm2m_kb && !dm1g_kb) return std::nullopt;
    return dm4k_kb.value_or(0) + dm2m_kb.value_or(0) + dm1g_kb.value_or(0);
  }
};

// From the text of /proc/meminfo and /proc/vmstat.
DirectMapCounters parse_direct_map(std::string_view meminfo, std::string_view vmstat);
// From this machine's /proc/meminfo and /proc/vmstat (fields of an unreadable file stay absent).
DirectMapCounters read_direct_map();

// The difference after - before, when both are known.
inline std::optional<std::int64_t> counter_delta(const std::optional<std::uint64_t>& before,
                                                 const std::optional<std::uint64_t>& after) {
  if (!before || !after) return std::nullopt;
  return static_cast<std::int64_t>(*after) - static_cast<std::int64_t>(*before);
}

}  // namespace exmem::host
