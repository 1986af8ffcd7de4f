// probe_map.cpp: `exmem probe --map` (see probe_map.hpp).
#include "probe_map.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "host/host.hpp"
#include "model/directmap/directmap.hpp"
#include "model/directmap/flush.hpp"
#include "model/snapshot.hpp"
#include "report/files.hpp"
#include "report/report.hpp"

namespace exmem::cli::probe {
namespace {

namespace host = exmem::host;
using model::Content;
using model::Coverage;

constexpr std::size_t kNotMappedListed = 256;
constexpr std::size_t kStripCells = 1024;  // the text strip: 16 lines of 64
constexpr std::size_t kStripWidth = 64;

std::uint64_t ram_pages_in(const host::KernelDirectMap& m, std::uint64_t start, std::uint64_t end) {
  std::uint64_t bytes = 0;
  for (const auto& [s, e] : m.ram) {
    const std::uint64_t a = std::max(s, start), b = std::min(e, end);
    if (a < b) bytes += b - a;
  }
  return bytes / host::k4K;
}

// The real map as the model's region map: coverage from the page tables; content
// "secret" where a PTE was taken out of the map, "no RAM" outside /proc/kcore's RAM,
// else "other" (what a real page holds is not read).
model::RegionMap to_region_map(const host::KernelDirectMap& m) {
  model::RegionMap r;
  r.nr_frames = static_cast<model::Pfn>(m.phys_end / host::k4K);
  r.regions.resize(m.regions.size());
  r.not_present.assign(m.regions.size(), 0);
  for (std::size_t i = 0; i < m.regions.size(); ++i) {
    const std::uint64_t start = i * host::k2M, end = start + host::k2M;
    Coverage c = Coverage::Hole;
    switch (m.regions[i]) {
      case host::MapCoverage::NotMapped: c = Coverage::Hole; break;
      case host::MapCoverage::Leaf1G: c = Coverage::Leaf1G; break;
      case host::MapCoverage::Leaf2M: c = Coverage::Leaf2M; break;
      case host::MapCoverage::Split4K: c = Coverage::Split4K; break;
    }
    const std::uint16_t cleared = m.pte_cleared[i];
    const std::uint64_t ram = ram_pages_in(m, start, end);
    Content k = cleared > 0 ? Content::Secret : ram > 0 ? Content::Other : Content::NoRam;
    r.regions[i] = model::region_code(c, k, cleared > 0);
    r.not_present[i] = cleared;
    r.not_present_pages += cleared;
    r.pages[static_cast<unsigned>(Content::Secret)] += cleared;
    r.pages[static_cast<unsigned>(Content::Other)] += ram - std::min<std::uint64_t>(ram, cleared);
    r.pages[static_cast<unsigned>(Content::NoRam)] += host::k2M / host::k4K - ram;
    ++r.regions_by_coverage[static_cast<unsigned>(c)];
  }
  return r;
}

// The model's direct map at boot, laid out like this machine: its RAM as /proc/kcore
// lists it, 1 GiB leaves when the CPU has pdpe1gb (as the kernel's direct_gbpages
// defaults). Drawn beside the real map, the difference is what the running kernel
// split since boot, and where its boot mapping differs from the model's.
class FakeTables final : public model::directmap::PageTableAllocator {
 public:
  model::Result<model::Pfn> alloc_table_page(model::CpuId) override { return {next_++, 0}; }
  void free_table_page(model::Pfn, model::CpuId) override {}

 private:
  model::Pfn next_ = 0;
};

model::RegionMap modelled_boot_map(const host::KernelDirectMap& m, bool gbpages) {
  namespace dm = model::directmap;
  std::vector<dm::MappedRange> ram;
  for (const auto& [s, e] : m.ram) {
    ram.push_back({static_cast<model::Pfn>(s / host::k4K), static_cast<model::Pfn>(e / host::k4K)});
  }
  FakeTables tables;
  dm::FlushLog flushes;
  const dm::DirectMap d(ram, gbpages, tables, flushes);
  model::RegionMap r;
  r.nr_frames = static_cast<model::Pfn>(m.phys_end / host::k4K);
  r.regions.resize(m.regions.size());
  r.not_present.assign(m.regions.size(), 0);
  for (std::size_t i = 0; i < m.regions.size(); ++i) {
    const auto first = static_cast<model::Pfn>(i * 512);
    Coverage c = Coverage::Hole;
    const dm::Level l0 = d.lookup(first).level;
    if (l0 == dm::Level::Pud1G) {
      c = Coverage::Leaf1G;
    } else if (l0 == dm::Level::Pmd2M) {
      c = Coverage::Leaf2M;
    } else {
      for (model::Pfn p = first; p < first + 512; ++p) {
        if (d.lookup(p).level == dm::Level::Pte4K) {
          c = Coverage::Split4K;
          break;
        }
      }
    }
    const std::uint64_t ram_pages = ram_pages_in(m, i * host::k2M, (i + 1) * host::k2M);
    r.regions[i] = model::region_code(c, ram_pages > 0 ? Content::Other : Content::NoRam, false);
    r.pages[static_cast<unsigned>(Content::Other)] += ram_pages;
    r.pages[static_cast<unsigned>(Content::NoRam)] += host::k2M / host::k4K - ram_pages;
    ++r.regions_by_coverage[static_cast<unsigned>(c)];
  }
  return r;
}

nlohmann::json opt_json(const std::optional<std::uint64_t>& v) { return v ? nlohmann::json(*v) : nlohmann::json(); }

nlohmann::json agrees(std::uint64_t walk_kb, const std::optional<std::uint64_t>& meminfo_kb) {
  return meminfo_kb ? nlohmann::json(walk_kb == *meminfo_kb) : nlohmann::json();
}

// What /proc/meminfo should show for the walk: __split_large_page() counts the
// kernel image's split 2 MiB leaves (its mapping at __START_KERNEL_map) too.
struct Expected {
  std::uint64_t kb4k, kb2m, kb1g;
};
Expected expected_kb(const host::KernelDirectMap& m) {
  const std::uint64_t moved = m.high_map_split_2m.value_or(0) * host::k2M;
  return {(m.bytes_4k + moved) / 1024, (m.bytes_2m - std::min(moved, m.bytes_2m)) / 1024, m.bytes_1g / 1024};
}

nlohmann::json to_json(const host::KernelMapResult& res, const host::DirectMapCounters& dm,
                       const model::RegionMap* rmap) {
  nlohmann::json j = nlohmann::json::object();
  const bool ok = res.refusal == host::KernelMapRefusal::None && res.map;
  j["available"] = ok;
  j["refusal"] = std::string(host::refusal_name(res.refusal));
  j["why"] = ok ? nlohmann::json() : nlohmann::json(res.why);
  j["would_allow"] = ok ? nlohmann::json() : nlohmann::json(res.would_allow);
  if (!ok) return nlohmann::json{{"kernel_map", j}};
  const host::KernelDirectMap& m = *res.map;
  j["levels"] = m.levels;
  j["page_offset_base"] = fmt::format("{:#x}", m.page_offset_base);
  j["phys_end"] = m.phys_end;
  j["ram"] = nlohmann::json::array();
  for (const auto& [s, e] : m.ram) j["ram"].push_back({s, e});
  j["walk_kb"] = {{"DirectMap4k", m.bytes_4k / 1024}, {"DirectMap2M", m.bytes_2m / 1024}, {"DirectMap1G", m.bytes_1g / 1024}};
  j["high_map_split_2m"] = opt_json(m.high_map_split_2m);
  const Expected ex = expected_kb(m);
  j["expected_meminfo_kb"] = {{"DirectMap4k", ex.kb4k}, {"DirectMap2M", ex.kb2m}, {"DirectMap1G", ex.kb1g}};
  j["meminfo_kb"] = {{"DirectMap4k", opt_json(dm.dm4k_kb)}, {"DirectMap2M", opt_json(dm.dm2m_kb)},
                     {"DirectMap1G", opt_json(dm.dm1g_kb)}};
  j["agrees"] = {{"DirectMap4k", agrees(ex.kb4k, dm.dm4k_kb)},
                 {"DirectMap2M", agrees(ex.kb2m, dm.dm2m_kb)},
                 {"DirectMap1G", agrees(ex.kb1g, dm.dm1g_kb)}};
  j["regions"] = {{"1G", m.regions_of(host::MapCoverage::Leaf1G)}, {"2M", m.regions_of(host::MapCoverage::Leaf2M)},
                  {"4K", m.regions_of(host::MapCoverage::Split4K)},
                  {"not_mapped", m.regions_of(host::MapCoverage::NotMapped)}};
  nlohmann::json split = nlohmann::json::array();
  std::uint64_t cleared = 0;
  for (std::size_t i = 0; i < m.regions.size(); ++i) {
    if (m.regions[i] == host::MapCoverage::Split4K) split.push_back(i);
    cleared += m.pte_cleared[i];
  }
  j["split_regions"] = split;
  j["cleared_pages"] = cleared;
  j["not_mapped"] = nlohmann::json::array();
  for (std::size_t i = 0; i < m.not_mapped.size() && i < kNotMappedListed; ++i) {
    j["not_mapped"].push_back({m.not_mapped[i].first, m.not_mapped[i].second});
  }
  if (m.not_mapped.size() > kNotMappedListed) j["not_mapped_truncated"] = true;
  j["tables_read"] = m.tables_read;
  if (rmap != nullptr) j["region_map"] = report::to_json(*rmap);
  return nlohmann::json{{"kernel_map", j}};
}

std::string kb_text(std::uint64_t kb) { return host::bytes_text(kb * 1024); }

// One character per cell: '.' not mapped, 'G' 1 GiB leaf, 'M' 2 MiB leaf, 'k' split,
// 's' split with pages taken out of the map.
std::string strip(const model::RegionMap& r) {
  std::size_t per_cell = 1;
  while ((r.size() + per_cell - 1) / per_cell > kStripCells) per_cell *= 2;
  const std::vector<std::uint8_t> cells = model::merge_regions(r.regions, per_cell);
  std::string s = fmt::format("  one character per {} (. not mapped, G 1 GiB leaf, M 2 MiB leaf, k split to 4 KiB, "
                              "s split with pages taken out):\n",
                              host::bytes_text(per_cell * host::k2M));
  for (std::size_t i = 0; i < cells.size(); ++i) {
    if (i % kStripWidth == 0) s += fmt::format("  {:>#14x} ", i * per_cell * host::k2M);
    const std::uint8_t c = cells[i];
    char ch = '.';
    switch (model::region_coverage(c)) {
      case Coverage::Hole: ch = '.'; break;
      case Coverage::Leaf1G: ch = 'G'; break;
      case Coverage::Leaf2M: ch = 'M'; break;
      case Coverage::Split4K: ch = model::region_not_present(c) ? 's' : 'k'; break;
    }
    s += ch;
    if (i % kStripWidth == kStripWidth - 1 || i + 1 == cells.size()) s += '\n';
  }
  return s;
}

std::string to_text(const host::KernelMapResult& res, const host::DirectMapCounters& dm, const model::RegionMap* rmap) {
  if (res.refusal != host::KernelMapRefusal::None || !res.map) {
    return fmt::format("direct map page tables: not readable here ({})\n  why: {}\n  would allow it: {}\n",
                       host::refusal_name(res.refusal), res.why, res.would_allow);
  }
  const host::KernelDirectMap& m = *res.map;
  std::string s = fmt::format(
      "direct map page tables (/proc/kcore, {}-level paging, page_offset_base {:#x}), physical 0 to {}:\n",
      m.levels, m.page_offset_base, host::bytes_text(m.phys_end));
  const Expected ex = expected_kb(m);
  auto line = [&](const char* name, std::uint64_t walk, std::uint64_t expect, const std::optional<std::uint64_t>& mi) {
    s += fmt::format("  {:<12} {:>10} in the direct map, {:>10} counted", name, kb_text(walk / 1024), kb_text(expect));
    if (mi) {
      s += fmt::format(", /proc/meminfo {:>10}: {}\n", kb_text(*mi),
                       expect == *mi ? "agrees"
                                     : fmt::format("differs by {} kB", static_cast<std::int64_t>(expect) -
                                                                           static_cast<std::int64_t>(*mi)));
    } else {
      s += ", /proc/meminfo does not show it\n";
    }
  };
  line("DirectMap4k", m.bytes_4k, ex.kb4k, dm.dm4k_kb);
  line("DirectMap2M", m.bytes_2m, ex.kb2m, dm.dm2m_kb);
  line("DirectMap1G", m.bytes_1g, ex.kb1g, dm.dm1g_kb);
  if (m.high_map_split_2m) {
    s += fmt::format("  (counted = the direct map with the kernel image's {} split 2 MiB leaves at __START_KERNEL_map\n"
                     "   moved from 2M to 4k, as __split_large_page() counts them)\n",
                     *m.high_map_split_2m);
  } else {
    s += "  (the kernel image's mapping could not be read: its splits, which the kernel counts too, are not added)\n";
  }
  if (dm.dm1g_kb && *dm.dm1g_kb > ex.kb1g) {
    s += fmt::format("  (DirectMap1G counts {} more than the 1 GiB leaves present: at boot phys_pud_init() counts a\n"
                     "   1 GiB leaf each time a mapping call covers it and does not uncount one it replaces by a\n"
                     "   PMD table; the page tables above are what the CPU walks)\n",
                     kb_text(*dm.dm1g_kb - ex.kb1g));
  }
  std::uint64_t cleared = 0;
  for (const auto c : m.pte_cleared) cleared += c;
  s += fmt::format("  2 MiB regions: {} in 1 GiB leaves, {} 2 MiB leaves, {} split to 4 KiB ({} pages taken out "
                   "of the map), {} not mapped\n",
                   m.regions_of(host::MapCoverage::Leaf1G), m.regions_of(host::MapCoverage::Leaf2M),
                   m.regions_of(host::MapCoverage::Split4K), cleared, m.regions_of(host::MapCoverage::NotMapped));
  if (rmap != nullptr) s += strip(*rmap);
  return s;
}

void write_out(const std::string& text) {
  if (std::fwrite(text.data(), 1, text.size(), stdout) != text.size() || std::fflush(stdout) != 0) {
    std::fprintf(stderr, "exmem probe: writing the report failed: %s\n", std::strerror(errno));
    throw CLI::RuntimeError(1);
  }
}

}  // namespace

int run_map(const MapOptions& opt) {
  const host::KernelMapResult res = host::read_kernel_map();
  const host::DirectMapCounters dm = host::read_direct_map();
  std::optional<model::RegionMap> rmap;
  if (res.map) rmap = to_region_map(*res.map);
  const model::RegionMap* rp = rmap ? &*rmap : nullptr;
  const nlohmann::json j = to_json(res, dm, rp);

  if (!opt.out_dir.empty() && rmap) {
    try {
      report::make_directories(opt.out_dir);
      report::write_file(std::filesystem::path(opt.out_dir) / "map.json", j.dump(2) + "\n");
      // The page of `exmem sim --out`, its maps alone: this machine's direct map.
      report::Document doc;
      const host::KernelDirectMap& m = *res.map;
      const Expected ex = expected_kb(m);
      doc.maps_only = true;
      doc.title = fmt::format("exmem probe --map: this machine's direct map, {} of physical addresses",
                              host::bytes_text(m.phys_end));
      doc.footer = "Written by exmem probe --map --out from the page tables read through /proc/kcore, with "
                   "map.json next to it.";
      doc.header["machine"] = {{"name", "this machine"},
                               {"ram", host::bytes_text(ram_pages_in(m, 0, m.phys_end) * host::k4K)},
                               {"physical addresses", host::bytes_text(m.phys_end)},
                               {"paging_levels", m.levels},
                               {"page_offset_base", fmt::format("{:#x}", m.page_offset_base)}};
      doc.header["direct_map"] = {{"DirectMap4k walked", kb_text(m.bytes_4k / 1024)},
                                  {"DirectMap2M walked", kb_text(m.bytes_2m / 1024)},
                                  {"DirectMap1G walked", kb_text(m.bytes_1g / 1024)},
                                  {"kernel image split 2M leaves", j["kernel_map"]["high_map_split_2m"]},
                                  {"meminfo DirectMap4k", dm.dm4k_kb ? kb_text(*dm.dm4k_kb) : "not shown"},
                                  {"meminfo DirectMap2M", dm.dm2m_kb ? kb_text(*dm.dm2m_kb) : "not shown"},
                                  {"meminfo DirectMap1G", dm.dm1g_kb ? kb_text(*dm.dm1g_kb) : "not shown"},
                                  {"counted like meminfo", fmt::format("4k {}, 2M {}, 1G {}", kb_text(ex.kb4k),
                                                                       kb_text(ex.kb2m), kb_text(ex.kb1g))}};
      const std::optional<std::string> cpuinfo = host::read_text("/proc/cpuinfo");
      const bool gbpages = cpuinfo && host::lists_word(*cpuinfo, "pdpe1gb");
      sim::RunResult model_run;
      model_run.policy = fmt::format("the model at boot, with this machine's RAM ({} 1 GiB leaves: pdpe1gb {})",
                                     gbpages ? "with" : "without", gbpages ? "in /proc/cpuinfo" : "absent");
      model_run.map_start = modelled_boot_map(m, gbpages);
      doc.runs.push_back(std::move(model_run));
      sim::RunResult run;
      run.policy = "this machine, now";
      run.map_start = *rmap;
      doc.runs.push_back(std::move(run));
      report::write_file(std::filesystem::path(opt.out_dir) / "index.html", report::html_page(doc));
    } catch (const std::exception& e) {
      std::fprintf(stderr, "exmem probe --map: %s\n", e.what());
      throw CLI::RuntimeError(1);
    }
  }
  write_out(opt.json_out ? j.dump(2) + "\n" : to_text(res, dm, rp));
  if (!opt.out_dir.empty() && !rmap) {
    std::fprintf(stderr, "exmem probe --map: nothing written to %s: the map could not be read\n", opt.out_dir.c_str());
  }
  return rmap ? 0 : 3;
}

}  // namespace exmem::cli::probe
