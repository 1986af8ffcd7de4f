#include "host/direct_map.hpp"

#include "host/proc_text.hpp"

namespace exmem::host {

DirectMapCounters parse_direct_map(std::string_view meminfo, std::string_view vmstat) {
  DirectMapCounters d;
  d.dm4k_kb = key_value(meminfo, "DirectMap4k");
  d.dm2m_kb = key_value(meminfo, "DirectMap2M");
  d.dm1g_kb = key_value(meminfo, "DirectMap1G");
  d.level2_splits = key_value(vmstat, "direct_map_level2_splits");
  d.level3_splits = key_value(vmstat, "direct_map_level3_splits");
  d.level2_collapses = key_value(vmstat, "direct_map_level2_collapses");
  d.level3_collapses = key_value(vmstat, "direct_map_level3_collapses");
  return d;
}

DirectMapCounters read_direct_map() {
  const auto meminfo = read_text("/proc/meminfo");
  const auto vmstat = read_text("/proc/vmstat");
  return parse_direct_map(meminfo ? *meminfo : std::string_view{}, vmstat ? *vmstat : std::string_view{});
}

}  // namespace exmem::host
