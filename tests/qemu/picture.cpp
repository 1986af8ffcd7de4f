// The picture of the QEMU test's third step (tests/qemu/run.sh): a trace
// recorded in the guest with its real direct map at the start and the end
// ("# direct_map" lines), drawn as two grids of 2 MiB regions side by side:
// the guest kernel's map at the end (read through /proc/kcore) and the model's
// at the end (started from the kernel's start map, the trace's secret pages
// then taken out with set_direct_map_invalid_noflush(), as `exmem sim --trace`
// does: workload::calibrate_trace()). Writes one HTML page of inline SVG, sized
// to the pixel, and prints its width and height, for a headless browser's
// screenshot (tests/qemu/pictures.sh).
//
// usage: exmem_qemu_picture TRACE TITLE OUT.html
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "model/snapshot.hpp"
#include "model/workload/trace_calibration.hpp"
#include "model/workload/trace_format.hpp"

namespace {

namespace wl = exmem::model::workload;
using exmem::model::Coverage;

constexpr int kPerRow = 64;  // regions per row: 128 MiB
constexpr int kCell = 9;
constexpr int kPitch = 10;
constexpr int kLabel = 60;   // the rows' address labels
constexpr int kGap = 40;     // between the two grids

std::string escape(const std::string& s) {
  std::string o;
  for (const char c : s) {
    if (c == '<') o += "&lt;";
    else if (c == '>') o += "&gt;";
    else if (c == '&') o += "&amp;";
    else o += c;
  }
  return o;
}

const char* colour(Coverage c, bool new_split) {
  switch (c) {
    case Coverage::Hole: return "#e6e6e6";
    case Coverage::Leaf1G: return "#4575b4";
    case Coverage::Leaf2M: return "#a6cee3";
    case Coverage::Split4K: return new_split ? "#d7301f" : "#fdae6b";
  }
  return "#000";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s TRACE TITLE OUT.html\n", argv[0]);
    return 2;
  }
  wl::TraceInfo info;
  try {
    info = wl::read_trace_info(argv[1]);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "exmem_qemu_picture: %s\n", e.what());
    return 2;
  }
  if (!info.map_start || !info.map_end) {
    std::fprintf(stderr, "exmem_qemu_picture: %s has no direct-map snapshots (%s)\n", argv[1],
                 info.map_unavailable.empty() ? "not recorded" : info.map_unavailable.c_str());
    return 2;
  }
  const wl::TraceCalibration c = wl::calibrate_trace(info);
  const wl::RegionComparison& x = c.exact;
  const std::vector<std::uint8_t>& kernel = info.map_end->regions;
  const std::vector<std::uint8_t>& start = info.map_start->regions;
  const std::vector<std::uint8_t>& model = x.model_end;
  std::set<std::uint64_t> secret;
  for (const auto& [pfn, pid] : info.secret_pages) secret.insert(pfn >> 9);

  const std::size_t n = std::max(kernel.size(), model.size());
  const int rows = static_cast<int>((n + kPerRow - 1) / kPerRow);
  const int grid_w = kPerRow * kPitch;
  const int top = 86;
  const int width = kLabel + grid_w + kGap + kLabel + grid_w + 20;
  const int height = top + rows * kPitch + 110;
  auto at = [](const std::vector<std::uint8_t>& v, std::size_t r) {
    return r < v.size() ? static_cast<Coverage>(v[r]) : Coverage::Hole;
  };

  std::string svg;
  auto grid = [&](int x0, const std::vector<std::uint8_t>& map, bool is_model, const char* heading) {
    svg += fmt::format("<text x='{}' y='{}' class='h'>{}</text>\n", x0 + kLabel, top - 10, heading);
    for (int row = 0; row < rows; ++row) {
      const std::uint64_t mib = static_cast<std::uint64_t>(row) * kPerRow * 2;
      if (mib % 1024 == 0 || rows <= 24) {
        svg += fmt::format("<text x='{}' y='{}' class='l'>{}</text>\n", x0 + kLabel - 6, top + row * kPitch + 8,
                           mib % 1024 == 0 ? fmt::format("{} GiB", mib / 1024) : fmt::format("{} MiB", mib));
      }
    }
    for (std::size_t r = 0; r < n; ++r) {
      const Coverage cov = at(map, r);
      const bool new_split = cov == Coverage::Split4K && at(start, r) != Coverage::Split4K;
      const int cx = x0 + kLabel + static_cast<int>(r % kPerRow) * kPitch;
      const int cy = top + static_cast<int>(r / kPerRow) * kPitch;
      const bool differs = (at(kernel, r) == Coverage::Split4K) != (at(model, r) == Coverage::Split4K) &&
                           at(kernel, r) != Coverage::Hole && at(model, r) != Coverage::Hole;
      svg += fmt::format("<rect x='{}' y='{}' width='{}' height='{}' fill='{}'{}/>", cx, cy, kCell, kCell,
                         colour(cov, new_split), differs ? " stroke='#000' stroke-width='2'" : "");
      if (secret.count(r) != 0) {
        svg += fmt::format("<circle cx='{}' cy='{}' r='2' fill='#000'/>", cx + kCell / 2.0, cy + kCell / 2.0);
      }
    }
    svg += "\n";
    (void)is_model;
  };
  grid(0, kernel, false, "guest kernel, at the end (read through /proc/kcore)");
  grid(kLabel + grid_w + kGap, model, true, "model, at the end (started from the kernel's start map)");

  // Legend and figures.
  int ly = top + rows * kPitch + 24;
  int lx = kLabel;
  const std::pair<const char*, const char*> legend[] = {
      {colour(Coverage::Leaf1G, false), "1 GiB leaf"},
      {colour(Coverage::Leaf2M, false), "2 MiB leaf"},
      {colour(Coverage::Split4K, false), "split to 4 KiB before the recording"},
      {colour(Coverage::Split4K, true), "split during it"},
      {colour(Coverage::Hole, false), "not mapped"}};
  for (const auto& [fill, text] : legend) {
    svg += fmt::format("<rect x='{}' y='{}' width='{}' height='{}' fill='{}'/><text x='{}' y='{}' class='k'>{}</text>",
                       lx, ly - 9, kCell, kCell, fill, lx + 14, ly, text);
    lx += 34 + static_cast<int>(std::string(text).size()) * 6;
  }
  svg += fmt::format("<circle cx='{}' cy='{}' r='2' fill='#000'/><text x='{}' y='{}' class='k'>holds a secret page "
                     "of the recording</text>",
                     lx + 4, ly - 4, lx + 14, ly);
  ly += 24;
  svg += fmt::format(
      "<text x='{}' y='{}' class='k'>{} secret pages in {} regions. Of the {} regions mapped in both maps, split in "
      "both {}, only in the model {}, only in the kernel {} (a black frame would mark each).</text>",
      kLabel, ly, c.secret_pages, c.secret_regions, x.regions, x.split_both, x.split_model_only, x.split_kernel_only);
  ly += 18;
  svg += fmt::format(
      "<text x='{}' y='{}' class='k'>The kernel split {} regions during the recording, {} of them holding a secret "
      "page; before replaying, the model split {} regions to match the kernel's start map.</text>",
      kLabel, ly, x.kernel_new_splits, x.kernel_new_with_secret, x.presplit_2m);
  ly += 18;
  svg += fmt::format("<text x='{}' y='{}' class='k'>{}</text>", kLabel, ly,
                     x.explained ? "The maps agree wherever the recording's secret pages decide."
                                 : "The maps DISAGREE where the recording's secret pages decide.");

  std::ofstream out(argv[3]);
  out << "<!doctype html><html><head><meta charset='utf-8'><style>"
         "body{margin:0;background:#fff}"
         "text{font-family:DejaVu Sans,sans-serif}"
         ".t{font-size:15px;font-weight:bold}.h{font-size:13px}.l{font-size:10px;text-anchor:end;fill:#444}"
         ".k{font-size:11px;fill:#222}"
         "</style></head><body>"
      << fmt::format("<svg xmlns='http://www.w3.org/2000/svg' width='{}' height='{}'>", width, height)
      << fmt::format("<text x='{}' y='24' class='t'>{}</text>", kLabel, escape(argv[2]))
      << fmt::format("<text x='{}' y='46' class='k'>{}</text>", kLabel,
                     escape(fmt::format("one cell per 2 MiB of physical memory, {} per row; trace: {} events, "
                                        "command: {}",
                                        kPerRow, info.recorded_events, info.command)))
      << svg << "</svg></body></html>\n";
  if (!out) {
    std::fprintf(stderr, "exmem_qemu_picture: cannot write %s\n", argv[3]);
    return 2;
  }
  std::printf("%d %d\n", width, height);
  return 0;
}
