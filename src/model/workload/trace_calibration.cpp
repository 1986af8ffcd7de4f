// workload/: what drives the model (see README.md for what the folder owns).
// trace_calibration.cpp: a recorded trace's real direct-map deltas against the
// model's direct map at the same pfns.
#include "model/workload/trace_calibration.hpp"

#include <algorithm>
#include <charconv>
#include <map>
#include <optional>
#include <string_view>
#include <unordered_set>

namespace exmem::model::workload {

namespace {

std::optional<std::int64_t> counter(const std::map<std::string, std::string>& m, std::string_view key) {
  const auto it = m.find(std::string(key));
  if (it == m.end()) return std::nullopt;
  std::int64_t v = 0;
  const std::string_view s = it->second;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

// The real kernel's deltas over one recording.
void real_deltas(const TraceInfo& info, TraceCalibration& c) {
  const auto& st = info.start_counters;
  const auto& en = info.end_counters;
  const auto s4k = counter(st, trace_counter::kDirectMap4k);
  const auto e4k = counter(en, trace_counter::kDirectMap4k);
  const auto sl2 = counter(st, trace_counter::kLevel2Splits);
  const auto el2 = counter(en, trace_counter::kLevel2Splits);
  const auto sl3 = counter(st, trace_counter::kLevel3Splits);
  const auto el3 = counter(en, trace_counter::kLevel3Splits);
  c.have_counters = s4k && e4k && sl2 && el2;
  if (!c.have_counters) return;
  c.real_level2_splits = *el2 - *sl2;
  c.real_level3_splits = sl3 && el3 ? *el3 - *sl3 : 0;
  c.real_directmap4k_kb = *e4k - *s4k;
  c.regions_split_before = static_cast<std::uint64_t>(std::max<std::int64_t>(0, *s4k)) / 2048;
}

// A machine like the recording one: its direct-mapped RAM (without the
// counters, MemTotal rounded up to 2 MiB), the model's PCI hole at 3-4 GiB.
MachineConfig layout(const TraceInfo& info) {
  const auto& st = info.start_counters;
  const auto s4k = counter(st, trace_counter::kDirectMap4k);
  const auto s2m = counter(st, trace_counter::kDirectMap2M);
  const auto s1g = counter(st, trace_counter::kDirectMap1G);
  std::uint64_t ram_kb = 0;
  if (s4k && s2m) ram_kb = static_cast<std::uint64_t>(*s4k + *s2m + (s1g ? *s1g : 0));
  if (ram_kb == 0) ram_kb = info.mem_total_kb;
  MachineConfig mc;
  mc.ram_bytes = std::max<std::uint64_t>(GiB, (ram_kb * KiB + 2 * MiB - 1) / (2 * MiB) * (2 * MiB));
  mc.direct_gbpages = s1g && *s1g > 0;
  mc.cpus = std::max(1u, info.cpus);
  mc.policy = "upstream";
  return mc;
}

}  // namespace

TraceCalibrator::TraceCalibrator(const TraceInfo& first) : config_(layout(first)) {}
TraceCalibrator::~TraceCalibrator() = default;

TraceCalibration TraceCalibrator::add(const TraceInfo& info) {
  TraceCalibration c;
  c.machine = config_;
  real_deltas(info, c);
  std::unordered_set<std::uint64_t> regions;
  for (const auto& [pfn, pid] : info.secret_pages) regions.insert(pfn >> 9);
  c.secret_pages = info.secret_pages.size();
  c.secret_regions = regions.size();
  if (c.secret_pages != 0) {
    if (!machine_) machine_ = std::make_unique<Machine>(config_);  // booted once, kept across recordings
    directmap::DirectMap& dm = machine_->dmap();
    const directmap::DirectMapCounters before = dm.counters();
    for (const auto& [pfn, pid] : info.secret_pages) {
      if (dm.set_direct_map_invalid_noflush(static_cast<Pfn>(pfn), 0) != 0) ++c.outside_model;
    }
    const directmap::DirectMapCounters after = dm.counters();
    c.model_level2_splits = after.level2_splits - before.level2_splits;
    c.model_level3_splits = after.level3_splits - before.level3_splits;
    c.model_directmap4k_kb = (after.leaves_4k - before.leaves_4k) * 4;
  }
  if (c.have_counters) {
    const auto model = static_cast<std::int64_t>(c.model_level2_splits);
    c.explained = model >= c.real_level2_splits &&
                  model - c.real_level2_splits <= static_cast<std::int64_t>(c.regions_split_before);
  }
  return c;
}

TraceCalibration calibrate_trace(const TraceInfo& info) { return TraceCalibrator(info).add(info); }

}  // namespace exmem::model::workload
