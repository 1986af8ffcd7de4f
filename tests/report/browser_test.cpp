// The report page in a real browser: headless Chromium (Debian's chromium
// package) opens index.html from disk, the DOM it ends with says the maps and
// charts were drawn, and its screenshot shows each map's cells in the legend's
// colours, as many pixels per cell for every colour; the difference views show
// exactly the cells each run changed, so two policies that split the direct
// map differently look different.
#include <gtest/gtest.h>
#include <png.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <regex>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "browser.hpp"
#include "report/files.hpp"
#include "fixture.hpp"

namespace exmem::report::testing {
namespace {

// The legend's colours, as the page shows them.
std::map<std::string, Rgb> legend(const std::string& dom) {
  std::map<std::string, Rgb> out;
  const std::regex swatch(R"re(data-legend="([^"]+)" data-colour="(#[0-9a-fA-F]{6})")re");
  for (auto it = std::sregex_iterator(dom.begin(), dom.end(), swatch); it != std::sregex_iterator(); ++it) {
    out[(*it)[1].str()] = parse_colour((*it)[2].str());
  }
  return out;
}

// The page's colouring rule, restated: coverage, lighter when mostly free,
// secret/unmapped and page tables drawn over it.
std::string swatch_of(std::uint8_t code) {
  const auto coverage = md::region_coverage(code);
  const auto content = md::region_content(code);
  if (coverage == md::Coverage::Hole) return "hole";
  if (content == md::Content::Secret) return coverage == md::Coverage::Split4K ? "secret-4K" : "secret-leaf";
  if (content == md::Content::PageTable) return "page-table";
  const std::string key = coverage == md::Coverage::Leaf1G ? "1G" : coverage == md::Coverage::Leaf2M ? "2M" : "4K";
  return content == md::Content::Free ? key + "-free" : key;
}

TEST(ReportInBrowser, DrawsEveryMapAndChartInTheLegendsColours) {
  const std::string chromium = chromium_or_fail();
  ASSERT_FALSE(chromium.empty());

  const Report& rep = shared_report();
  TempDir dir;
  const auto report_dir = dir.path() / "report";
  write_report(report_dir, rep.doc);
  const auto html = report_dir / "index.html";

  // The DOM after the page's script ran.
  const auto dom_file = dir.path() / "dom.html";
  const std::string dom_error = browse(chromium, html, dir.path(), "--dump-dom", dom_file);
  ASSERT_TRUE(dom_error.empty()) << dom_error;
  const std::string dom = read_file(dom_file);
  const auto attrs = body_attributes(dom);
  ASSERT_EQ(attrs.count("data-report-error"), 0u) << attrs.at("data-report-error");
  ASSERT_EQ(attrs.count("data-report-ready"), 1u) << "the page's script did not finish:\n" << dom.substr(0, 2000);
  const std::size_t runs = rep.doc.runs.size();
  EXPECT_EQ(attrs.at("data-maps-drawn"), std::to_string(2 * runs)) << "start and end for every run";
  EXPECT_EQ(attrs.at("data-charts-drawn"), "3") << "DirectMap4k, level-2 splits, TLB miss rate";
  EXPECT_NE(dom.find("<svg"), std::string::npos);
  const auto rects = nlohmann::json::parse(attrs.at("data-map-rects"));
  ASSERT_EQ(rects.size(), 2 * runs);
  const auto colours = legend(dom);
  for (const char* key : {"1G", "1G-free", "2M", "2M-free", "4K", "4K-free", "secret-4K", "secret-leaf",
                          "page-table", "hole"}) {
    ASSERT_EQ(colours.count(key), 1u) << "legend entry " << key;
  }

  // The screenshot.
  const auto png = dir.path() / "shot.png";
  const std::string shot_error = browse(chromium, html, dir.path(), "--screenshot", png);
  ASSERT_TRUE(shot_error.empty()) << shot_error;
  const Image image = read_png(png);
  ASSERT_EQ(image.width, static_cast<png_uint_32>(kWidth));
  ASSERT_EQ(image.height, static_cast<png_uint_32>(kHeight));

  std::map<std::string, std::uint64_t> seen_total;
  for (const auto& r : rects) {
    const std::size_t run_index = r["run"].get<std::size_t>();
    const std::string when = r["when"].get<std::string>();
    const int x0 = r["x"].get<int>();
    const int y0 = r["y"].get<int>();
    const int w = r["w"].get<int>();
    const int h = r["h"].get<int>();
    SCOPED_TRACE(fmt::format("{} {} map at {},{} {}x{}", r["policy"].get<std::string>(), when, x0, y0, w, h));
    ASSERT_GT(w, 0);
    ASSERT_GT(h, 0);
    ASSERT_LE(x0 + w, kWidth);
    ASSERT_LE(y0 + h, kHeight) << "the map is below the screenshot";
    // Cells per legend colour, from the region map the page embeds.
    const auto cells = cells_of(rep.out["runs"][run_index]["region_map"][when]);
    std::map<std::string, std::uint64_t> want;
    for (const std::uint8_t c : cells) ++want[swatch_of(c)];
    // Pixels per legend colour inside the map (exact colours: the page puts pixels, no smoothing).
    std::map<std::string, std::uint64_t> got;
    for (int y = y0; y < y0 + h; ++y) {
      for (int x = x0; x < x0 + w; ++x) {
        const png_byte* p = &image.rgba[(static_cast<std::size_t>(y) * image.width + x) * 4];
        for (const auto& [key, c] : colours) {
          if (std::abs(p[0] - c.r) <= 2 && std::abs(p[1] - c.g) <= 2 && std::abs(p[2] - c.b) <= 2) {
            ++got[key];
            break;
          }
        }
      }
    }
    // Every colour the cells call for is there, and no other; each cell the same number of pixels.
    ASSERT_FALSE(want.empty());
    const auto& [big_key, big_cells] = *std::max_element(
        want.begin(), want.end(), [](const auto& a, const auto& b) { return a.second < b.second; });
    const std::uint64_t per_cell = got[big_key] / big_cells;
    ASSERT_GE(per_cell, 1u) << "no pixels of " << big_key;
    for (const auto& [key, n] : colours) {
      (void)n;
      EXPECT_EQ(got[key], want[key] * per_cell) << key << ": " << want[key] << " cells";
      seen_total[key] += got[key];
    }
  }
  // Between them the maps show the three coverages and secret pages.
  EXPECT_GT(seen_total["1G"] + seen_total["1G-free"], 0u);
  EXPECT_GT(seen_total["2M"] + seen_total["2M-free"], 0u);
  EXPECT_GT(seen_total["4K"] + seen_total["4K-free"] + seen_total["secret-4K"], 0u);
  EXPECT_GT(seen_total["secret-4K"], 0u) << "upstream's secret pages";
  EXPECT_GT(seen_total["secret-leaf"], 0u) << "the pool's unmapped 2 MiB chunks";
  EXPECT_GT(seen_total["hole"], 0u) << "the PCI hole";

  // The difference views: the cells whose code the run changed, in the legend's
  // colours (the rest grey), and the same cells alone, large.
  const auto diffs = nlohmann::json::parse(attrs.at("data-diff-rects"));
  ASSERT_EQ(diffs.size(), 2 * runs) << "a whole map and a zoom for every run";
  std::map<std::string, std::uint64_t> zoom_pixels;  // per policy
  std::map<std::string, std::uint64_t> changed_of;
  for (const auto& d : diffs) {
    const std::size_t run_index = d["run"].get<std::size_t>();
    const std::string policy = d["policy"].get<std::string>();
    const std::string kind = d["kind"].get<std::string>();
    SCOPED_TRACE(fmt::format("{} {} view", policy, kind));
    const auto start = cells_of(rep.out["runs"][run_index]["region_map"]["start"]);
    const auto end = cells_of(rep.out["runs"][run_index]["region_map"]["end"]);
    ASSERT_EQ(start.size(), end.size());
    std::uint64_t changed = 0;
    for (std::size_t i = 0; i < end.size(); ++i) changed += start[i] != end[i];
    EXPECT_EQ(d["changed"].get<std::uint64_t>(), changed) << "the page counts the cells that changed";
    changed_of[policy] = changed;
    const int x0 = d["x"].get<int>();
    const int y0 = d["y"].get<int>();
    const int w = d["w"].get<int>();
    const int h = d["h"].get<int>();
    ASSERT_LE(y0 + h, kHeight) << "the view is below the screenshot";
    std::uint64_t coloured = 0;
    for (int y = y0; y < y0 + h; ++y) {
      for (int x = x0; x < x0 + w; ++x) {
        const png_byte* p = &image.rgba[(static_cast<std::size_t>(y) * image.width + x) * 4];
        for (const auto& [key, c] : colours) {
          if (std::abs(p[0] - c.r) <= 2 && std::abs(p[1] - c.g) <= 2 && std::abs(p[2] - c.b) <= 2) {
            ++coloured;
            break;
          }
        }
      }
    }
    const auto side = d["side"].get<std::uint64_t>();
    EXPECT_EQ(coloured, d["shown"].get<std::uint64_t>() * side * side)
        << "only the changed cells are in colour, each a square of side " << side;
    if (kind == "zoom") zoom_pixels[policy] = coloured;
  }
  // upstream splits the direct map where the pool takes whole 2 MiB leaves:
  // different split counts, different cells changed, views that differ.
  const sim::RunResult& upstream = rep.doc.runs[0];
  const sim::RunResult& pool = rep.doc.runs[1];
  ASSERT_GT(upstream.direct_map.level2_splits, pool.direct_map.level2_splits);
  EXPECT_NE(changed_of[upstream.policy], changed_of[pool.policy]);
  EXPECT_GT(zoom_pixels[upstream.policy], 0u);
  EXPECT_NE(zoom_pixels[upstream.policy], zoom_pixels[pool.policy]) << "the two policies' views look alike";
}

}  // namespace
}  // namespace exmem::report::testing

namespace exmem::report::testing {
namespace {

TEST(ReportInBrowser, APageWithMissingPartsStillFinishesAndSaysWhat) {
  const std::string chromium = chromium_or_fail();
  ASSERT_FALSE(chromium.empty());
  Document doc = shared_report().doc;
  doc.runs[1].map_start.reset();
  doc.runs[1].map_end.reset();
  doc.runs[1].over_time.clear();
  doc.header.erase("machine");
  TempDir dir;
  write_report(dir.path(), doc);
  const auto dom_file = dir.path() / "dom.html";
  const std::string error = browse(chromium, dir.path() / "index.html", dir.path(), "--dump-dom", dom_file);
  ASSERT_TRUE(error.empty()) << error;
  const std::string dom = read_file(dom_file);
  const auto attrs = body_attributes(dom);
  ASSERT_EQ(attrs.count("data-report-error"), 0u) << attrs.at("data-report-error");
  ASSERT_EQ(attrs.count("data-report-ready"), 1u);
  EXPECT_EQ(attrs.at("data-maps-drawn"), "2") << "only the first run has maps";
  EXPECT_EQ(attrs.at("data-charts-drawn"), "3") << "the first run still has its samples";
  EXPECT_NE(dom.find("no start snapshot in this run"), std::string::npos);
  EXPECT_NE(dom.find("no end snapshot in this run"), std::string::npos);
  EXPECT_NE(dom.find("<b>machine</b> not recorded"), std::string::npos);
}

}  // namespace
}  // namespace exmem::report::testing

namespace exmem::report::testing {
namespace {

// Document::maps_only (`exmem probe --map --out`: a real machine's direct map):
// one map per run, labelled `now`, no comparison table, no charts, no difference
// view, the page's own title and footer, and the script still finishes.
TEST(ReportInBrowser, AMapsOnlyPageDrawsOneMapPerRunAndNothingElse) {
  const std::string chromium = chromium_or_fail();
  ASSERT_FALSE(chromium.empty());
  Document doc;
  doc.maps_only = true;
  doc.title = "a real direct map";
  doc.footer = "written by the test";
  doc.header["machine"] = {{"name", "this machine"}};
  doc.header["direct_map"] = {{"DirectMap2M walked", "4 GiB"}};
  sim::RunResult run = shared_report().doc.runs[0];
  run.policy = "this machine";
  run.map_end.reset();
  doc.runs.push_back(std::move(run));
  TempDir dir;
  write_file(dir.path() / "index.html", html_page(doc));
  const auto dom_file = dir.path() / "dom.html";
  const std::string error = browse(chromium, dir.path() / "index.html", dir.path(), "--dump-dom", dom_file);
  ASSERT_TRUE(error.empty()) << error;
  const std::string dom = read_file(dom_file);
  const auto attrs = body_attributes(dom);
  ASSERT_EQ(attrs.count("data-report-error"), 0u) << attrs.at("data-report-error");
  ASSERT_EQ(attrs.count("data-report-ready"), 1u);
  EXPECT_EQ(attrs.at("data-maps-drawn"), "1");
  EXPECT_EQ(attrs.at("data-charts-drawn"), "0");
  EXPECT_EQ(attrs.at("data-diff-rects"), "[]");
  const auto rects = nlohmann::json::parse(attrs.at("data-map-rects"));
  ASSERT_EQ(rects.size(), 1u);
  EXPECT_EQ(rects[0]["when"], "now");
  EXPECT_NE(dom.find("<title>a real direct map</title>"), std::string::npos);
  EXPECT_NE(dom.find("written by the test"), std::string::npos);
  EXPECT_NE(dom.find("<b>direct_map</b>"), std::string::npos);
  EXPECT_EQ(dom.find("id=\"comparison\""), std::string::npos);
  EXPECT_EQ(dom.find("id=\"chart-grid\""), std::string::npos);
}

}  // namespace
}  // namespace exmem::report::testing
