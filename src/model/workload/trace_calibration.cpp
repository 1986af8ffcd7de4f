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

#include "model/snapshot.hpp"

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
  if (info.map_start) {
    // The real map itself: its mapped regions (DirectMap1G may count 1 GiB
    // leaves the kernel has remapped since boot, so the counters can
    // overstate the RAM), and 1 GiB leaves only if it has any.
    const DirectMapSnapshot& s = *info.map_start;
    const std::uint64_t mapped = s.regions.size() - s.regions_of(static_cast<std::uint8_t>(Coverage::Hole));
    if (mapped != 0) mc.ram_bytes = std::max<std::uint64_t>(GiB, mapped * 2 * MiB);
    mc.direct_gbpages = s.regions_of(static_cast<std::uint8_t>(Coverage::Leaf1G)) > 0;
  }
  mc.cpus = std::max(1u, info.cpus);
  mc.policy = "upstream";
  return mc;
}

}  // namespace

// The model's map made like the real one at the start: each region split
// there is split in the model, each GiB of 2 MiB leaves there split to them.
void start_from_snapshot(directmap::DirectMap& dm, const DirectMapSnapshot& start, RegionComparison& x) {
  const auto split = static_cast<std::uint8_t>(Coverage::Split4K);
  const auto leaf2m = static_cast<std::uint8_t>(Coverage::Leaf2M);
  for (std::size_t r = 0; r < start.regions.size(); ++r) {
    const std::uint8_t want = start.regions[r];
    if (want != split && want != leaf2m) continue;
    const auto pfn = static_cast<Pfn>(r * kRegionPages);
    const directmap::Level was = dm.lookup(pfn).level;
    if (was == directmap::Level::Pud1G && dm.split_to(pfn, directmap::Level::Pmd2M, 0) == 0) ++x.presplit_1g;
    if (want == split && (was == directmap::Level::Pud1G || was == directmap::Level::Pmd2M) &&
        dm.split_to(pfn, directmap::Level::Pte4K, 0) == 0) {
      ++x.presplit_2m;
    }
  }
}

// The model's end map against the real end map (see RegionComparison).
void compare_with_snapshot(const Machine& machine, const DirectMapSnapshot& start, const DirectMapSnapshot& end,
                           const std::vector<std::uint64_t>& secret_pfns, RegionComparison& x) {
  x.exact = true;
  const RegionMap model = region_map(machine);
  x.model_end.resize(model.regions.size());
  for (std::size_t r = 0; r < model.regions.size(); ++r) {
    x.model_end[r] = static_cast<std::uint8_t>(region_coverage(model.regions[r]));
  }
  std::unordered_set<std::uint64_t> secret;
  for (const std::uint64_t pfn : secret_pfns) secret.insert(pfn >> 9);
  const std::size_t n = std::max(model.regions.size(), end.regions.size());
  auto real_at = [](const DirectMapSnapshot& s, std::size_t r) {
    return r < s.regions.size() ? static_cast<Coverage>(s.regions[r]) : Coverage::Hole;
  };
  constexpr std::size_t kFirst = 8;
  for (std::size_t r = 0; r < n; ++r) {
    const Coverage k = real_at(end, r);
    const Coverage m = r < model.regions.size() ? region_coverage(model.regions[r]) : Coverage::Hole;
    const bool k_split = k == Coverage::Split4K;
    const bool k_start_split = real_at(start, r) == Coverage::Split4K;
    if (k_split && !k_start_split) {
      ++x.kernel_new_splits;
      if (secret.count(r) != 0) ++x.kernel_new_with_secret;
    }
    if (!k_split && k_start_split) ++x.kernel_collapsed;
    if ((k == Coverage::Hole) != (m == Coverage::Hole)) {
      ++(k == Coverage::Hole ? x.mapped_model_only : x.mapped_kernel_only);
      continue;
    }
    if (k == Coverage::Hole) continue;
    ++x.regions;
    const bool m_split = m == Coverage::Split4K;
    if (m_split && k_split) {
      ++x.split_both;
    } else if (m_split) {
      ++x.split_model_only;
      if (x.first_model_only.size() < kFirst) x.first_model_only.push_back(r);
    } else if (k_split) {
      ++x.split_kernel_only;
      if (secret.count(r) != 0) ++x.kernel_only_with_secret;
      if (x.first_kernel_only.size() < kFirst) x.first_kernel_only.push_back(r);
    }
    const bool m_1g = m == Coverage::Leaf1G;
    const bool k_1g = k == Coverage::Leaf1G;
    if (m_1g && k_1g) {
      ++x.leaf1g_both;
    } else if (m_1g) {
      ++x.leaf1g_model_only;
    } else if (k_1g) {
      ++x.leaf1g_kernel_only;
    }
  }
  x.explained = x.split_model_only == 0 && x.kernel_only_with_secret == 0;
}


TraceCalibrator::TraceCalibrator(const TraceInfo& first) : config_(layout(first)) {}
TraceCalibrator::~TraceCalibrator() = default;

TraceCalibration TraceCalibrator::add(const TraceInfo& info) {
  TraceCalibration c;
  c.machine = config_;
  c.map_unavailable = info.map_unavailable;
  real_deltas(info, c);
  std::unordered_set<std::uint64_t> regions;
  for (const auto& [pfn, pid] : info.secret_pages) regions.insert(pfn >> 9);
  c.secret_pages = info.secret_pages.size();
  c.secret_regions = regions.size();
  const bool exact = info.map_start.has_value() && info.map_end.has_value();
  if (c.secret_pages != 0 || exact) {
    if (!machine_) machine_ = std::make_unique<Machine>(config_);  // booted once, kept across recordings
    directmap::DirectMap& dm = machine_->dmap();
    if (exact) start_from_snapshot(dm, *info.map_start, c.exact);
    const directmap::DirectMapCounters before = dm.counters();
    for (const auto& [pfn, pid] : info.secret_pages) {
      if (dm.set_direct_map_invalid_noflush(static_cast<Pfn>(pfn), 0) != 0) ++c.outside_model;
    }
    const directmap::DirectMapCounters after = dm.counters();
    c.model_level2_splits = after.level2_splits - before.level2_splits;
    c.model_level3_splits = after.level3_splits - before.level3_splits;
    c.model_directmap4k_kb = (after.leaves_4k - before.leaves_4k) * 4;
    if (exact) {
      std::vector<std::uint64_t> pfns;
      pfns.reserve(info.secret_pages.size());
      for (const auto& [pfn, pid] : info.secret_pages) pfns.push_back(pfn);
      compare_with_snapshot(*machine_, *info.map_start, *info.map_end, pfns, c.exact);
    }
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
