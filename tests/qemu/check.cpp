// The outside half of the QEMU test (tests/qemu/run.sh): the guest's direct map
// before and after it faulted secret pages (`exmem probe --map --json`, read
// through the guest's /proc/kcore) and the frames of those pages, against the
// model's direct map laid out like the guest (its RAM ranges as /proc/kcore
// listed them, 1 GiB leaves when the guest's kernel used them) with the same
// frames taken out (set_direct_map_invalid_noflush(), as secretmem_fault() does).
//
// Requires region-level agreement:
//   1. every 2 MiB region the model newly splits for those frames is split in the real map after;
//   2. every region the real kernel newly split (split after, not before) holds one of the frames;
//   3. the real map's walk agrees with the guest's /proc/meminfo on DirectMap4k and 2M before
//      and after, once the kernel image's split leaves are counted as the kernel counts them
//      (the probe's "agrees"); DirectMap1G may exceed the 1 GiB leaves walked (the boot-time
//      count of phys_pud_init() is not undone when a 1 GiB leaf is remapped), but by the same
//      amount before and after, and never fall short of them;
//   4. the after map shows every frame's page taken out (not present) in its PTE.
// Prints the figures, one per line, and exits 0 when all hold, 1 when one fails, 2 on bad input.
//
// usage: exmem_qemu_check BEFORE.json AFTER.json FRAMES.txt
//
// The third step: `exmem sim --trace GUEST.trace --policy upstream --json` of a
// recording made in the guest with its direct map before and after. Requires
// the exact comparison (calibration.direct_map_regions) to be there and
// explained: no region split only in the model, no region split only in the
// kernel that holds one of the recorded secret pages; prints its figures.
//
// usage: exmem_qemu_check --trace-calibration SIM.json
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/directmap/directmap.hpp"
#include "model/directmap/flush.hpp"
#include "model/snapshot.hpp"
#include "report/report.hpp"

namespace {

using exmem::model::Pfn;
namespace dm = exmem::model::directmap;

struct Real {
  nlohmann::json j;
  std::vector<std::uint8_t> cells;  // one per 2 MiB region
  bool split(std::size_t r) const {
    return r < cells.size() && exmem::model::region_coverage(cells[r]) == exmem::model::Coverage::Split4K;
  }
};

Real load(const char* path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error(std::string("cannot read ") + path);
  Real r;
  r.j = nlohmann::json::parse(in).at("kernel_map");
  if (!r.j.at("available").get<bool>()) {
    throw std::runtime_error(std::string(path) + ": the guest could not read its map: " +
                             r.j.value("why", std::string("?")));
  }
  const nlohmann::json& rm = r.j.at("region_map");
  if (rm.at("regions_per_cell").get<std::uint64_t>() != 1) throw std::runtime_error("region map merges regions");
  r.cells = exmem::report::cells_of(rm);
  return r;
}

// Allocates made-up page-table frames: the model's tables need a pfn each, not RAM.
class Tables final : public dm::PageTableAllocator {
 public:
  exmem::model::Result<Pfn> alloc_table_page(exmem::model::CpuId) override { return {next_++, 0}; }
  void free_table_page(Pfn, exmem::model::CpuId) override {}

 private:
  Pfn next_ = Pfn{1} << 30;
};

// DirectMap1G - the 1 GiB leaves walked, in kB (0 when the kernel does not show DirectMap1G).
std::int64_t excess_1g(const nlohmann::json& j) {
  const nlohmann::json& mi = j["meminfo_kb"]["DirectMap1G"];
  if (mi.is_null()) return 0;
  return static_cast<std::int64_t>(mi.get<std::uint64_t>()) -
         static_cast<std::int64_t>(j["expected_meminfo_kb"]["DirectMap1G"].get<std::uint64_t>());
}

bool check_totals(const char* when, const nlohmann::json& j) {
  bool ok = true;
  std::printf("%s high_map_split_2m=%s\n", when, j["high_map_split_2m"].dump().c_str());
  for (const char* k : {"DirectMap4k", "DirectMap2M", "DirectMap1G"}) {
    const nlohmann::json& mi = j["meminfo_kb"][k];
    std::printf("%s %s walk_kb=%s expected_kb=%s meminfo_kb=%s\n", when, k, j["walk_kb"][k].dump().c_str(),
                j["expected_meminfo_kb"][k].dump().c_str(), mi.dump().c_str());
    if (std::string(k) == "DirectMap1G") {
      if (excess_1g(j) < 0) {
        std::printf("FAIL %s DirectMap1G: /proc/meminfo shows fewer 1 GiB leaves than the page tables hold\n", when);
        ok = false;
      } else if (excess_1g(j) > 0) {
        std::printf("%s DirectMap1G: /proc/meminfo counts %lld kB more than the 1 GiB leaves present\n", when,
                    static_cast<long long>(excess_1g(j)));
      }
    } else if (!mi.is_null() && j["agrees"][k] != true) {
      std::printf("FAIL %s %s: the walk and /proc/meminfo differ\n", when, k);
      ok = false;
    }
  }
  return ok;
}

}  // namespace

int trace_calibration(const char* path) {
  nlohmann::json c;
  try {
    std::ifstream in(path);
    if (!in) throw std::runtime_error(std::string("cannot read ") + path);
    c = nlohmann::json::parse(in).at("calibration");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "exmem_qemu_check: %s\n", e.what());
    return 2;
  }
  if (!c.contains("direct_map_regions")) {
    std::printf("FAIL the trace has no direct-map snapshots: %s\n", c.value("direct_map_snapshot", std::string("?")).c_str());
    return 1;
  }
  const nlohmann::json& x = c["direct_map_regions"];
  for (const auto& [k, v] : x.items()) std::printf("trace %s %s\n", k.c_str(), v.dump().c_str());
  std::printf("trace secret_pages %s secret_regions_2m %s model_level2_splits %s real_level2_splits %s\n",
              c["secret_pages"].dump().c_str(), c["secret_regions_2m"].dump().c_str(),
              c["model_at_real_pfns"]["direct_map_level2_splits"].dump().c_str(),
              c.contains("real") ? c["real"]["direct_map_level2_splits"].dump().c_str() : "null");
  bool ok = x["explained"].get<bool>();
  if (c["secret_pages"].get<std::uint64_t>() == 0) {
    std::printf("FAIL the recording marked no secret page\n");
    ok = false;
  }
  std::printf("%s\n", ok ? "TRACE AGREE" : "TRACE DISAGREE");
  return ok ? 0 : 1;
}

int main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[1]) == "--trace-calibration") return trace_calibration(argv[2]);
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s BEFORE.json AFTER.json FRAMES.txt | --trace-calibration SIM.json\n", argv[0]);
    return 2;
  }
  Real before, after;
  std::vector<Pfn> frames;
  try {
    before = load(argv[1]);
    after = load(argv[2]);
    std::ifstream in(argv[3]);
    std::string line;
    while (std::getline(in, line)) {
      std::istringstream ls(line);
      std::string tag, route;
      std::uint64_t pfn = 0;
      if (ls >> tag >> route >> pfn && tag == "FRAME") frames.push_back(static_cast<Pfn>(pfn));
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "exmem_qemu_check: %s\n", e.what());
    return 2;
  }
  if (frames.empty()) {
    std::fprintf(stderr, "exmem_qemu_check: no FRAME lines in %s\n", argv[3]);
    return 2;
  }
  bool ok = check_totals("before", before.j) && true;
  ok = check_totals("after", after.j) && ok;
  if (excess_1g(before.j) != excess_1g(after.j)) {
    std::printf("FAIL DirectMap1G's excess over the 1 GiB leaves changed between before and after\n");
    ok = false;
  }

  // The model, laid out like the guest.
  std::vector<dm::MappedRange> ram;
  for (const auto& r : before.j["ram"]) {
    ram.push_back({static_cast<Pfn>(r[0].get<std::uint64_t>() / 4096), static_cast<Pfn>(r[1].get<std::uint64_t>() / 4096)});
  }
  const bool gbpages = before.j["regions"]["1G"].get<std::uint64_t>() > 0;
  Tables tables;
  dm::FlushLog flushes;
  dm::DirectMap model(ram, gbpages, tables, flushes);
  model.set_running();
  const std::size_t nregions = before.cells.size();
  auto model_split = [&](std::size_t r) {
    // Split when any RAM page of the region is mapped by a PTE.
    for (Pfn p = static_cast<Pfn>(r * 512); p < static_cast<Pfn>((r + 1) * 512); ++p) {
      if (model.lookup(p).level == dm::Level::Pte4K) return true;
    }
    return false;
  };
  std::vector<bool> model_boot(nregions);
  std::size_t boot_agree = 0;
  for (std::size_t r = 0; r < nregions; ++r) {
    model_boot[r] = model_split(r);
    if (model_boot[r] == before.split(r)) ++boot_agree;
  }
  std::set<std::size_t> frame_regions;
  for (const Pfn f : frames) {
    frame_regions.insert(f / 512);
    if (const int err = model.set_direct_map_invalid_noflush(f, 0); err != 0) {
      std::printf("FAIL the model refused set_direct_map_invalid_noflush(%u): %d\n", static_cast<unsigned>(f), err);
      ok = false;
    }
  }
  std::size_t modelled = 0, modelled_real = 0, real_new = 0, real_new_with_frame = 0;
  for (std::size_t r = 0; r < nregions; ++r) {
    if (model_split(r) && !model_boot[r]) {
      ++modelled;
      if (after.split(r)) {
        ++modelled_real;
      } else {
        std::printf("FAIL region %zu (%#zx): the model splits it, the real map after does not\n", r, r << 21);
        ok = false;
      }
    }
    if (after.split(r) && !before.split(r)) {
      ++real_new;
      if (frame_regions.count(r) != 0) {
        ++real_new_with_frame;
      } else {
        std::printf("FAIL region %zu (%#zx): newly split in the real map, holds none of the frames\n", r, r << 21);
        ok = false;
      }
    }
  }
  // Every frame's page is out of the real map (its PTE cleared) while the pages are held.
  std::uint64_t frames_split_after = 0;
  for (const std::size_t r : frame_regions) frames_split_after += after.split(r) ? 1 : 0;
  const std::uint64_t cleared = after.j["cleared_pages"].get<std::uint64_t>();
  std::printf("frames %zu in %zu regions; frame regions split in the real map after: %llu\n", frames.size(),
              frame_regions.size(), static_cast<unsigned long long>(frames_split_after));
  std::printf("model boot map vs real map before: %zu of %zu regions agree on split/not split\n", boot_agree, nregions);
  std::printf("modelled new splits %zu, split in the real map after %zu\n", modelled, modelled_real);
  std::printf("real new splits %zu, holding a frame %zu\n", real_new, real_new_with_frame);
  std::printf("real pages taken out of the map after %llu (frames %zu)\n", static_cast<unsigned long long>(cleared),
              frames.size());
  if (frames_split_after != frame_regions.size()) {
    std::printf("FAIL some frame's region is not split in the real map after\n");
    ok = false;
  }
  if (cleared < frames.size()) {
    std::printf("FAIL fewer pages out of the real map than frames\n");
    ok = false;
  }
  std::printf("%s\n", ok ? "AGREE" : "DISAGREE");
  return ok ? 0 : 1;
}
