// The study page in a real browser: headless Chromium opens a page written by
// study_html_page() from disk; the DOM it ends with has one chart per metric
// and combination of the other axes, one median line and one min-max band per
// policy with values in each chart (the q1-q3 band only with 4 or more runs),
// no script error; the screenshot shows each policy's colour inside the charts
// it has values in, and not where it has none.
// With EXMEM_STUDY_SHOT_DIR set, the page and its screenshot are copied there.
#include <gtest/gtest.h>
#include <png.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "browser.hpp"
#include "fixture.hpp"
#include "report/study_report.hpp"
#include "study_fixture.hpp"

namespace exmem::report::testing {
namespace {

std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (std::size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + what.size())) ++n;
  return n;
}

// One chart as the DOM has it.
struct Plot {
  std::string metric, facet;
  std::size_t band_range = 0, band_iqr = 0, dots = 0;
  std::vector<std::string> line_policies;  // the median lines' policies, in order
  bool log = false;
  std::string text;
};

std::vector<Plot> plots_in(const std::string& dom) {
  std::vector<Plot> out;
  const std::string open = "<svg class=\"study-plot\"";
  for (std::size_t at = dom.find(open); at != std::string::npos; at = dom.find(open, at + 1)) {
    Plot p;
    p.text = dom.substr(at, dom.find("</svg>", at) - at);
    std::smatch m;
    if (std::regex_search(p.text, m, std::regex(R"re(data-metric="([^"]*)")re"))) p.metric = unescape(m[1].str());
    if (std::regex_search(p.text, m, std::regex(R"re(data-facet="([^"]*)")re"))) p.facet = unescape(m[1].str());
    p.band_range = count(p.text, "class=\"band band-range\"");
    p.band_iqr = count(p.text, "class=\"band band-iqr\"");
    p.dots = count(p.text, "class=\"median-dot\"");
    const std::regex line(R"re(<path class="median-line"[^>]*?data-policy="([^"]*)")re");
    for (auto it = std::sregex_iterator(p.text.begin(), p.text.end(), line); it != std::sregex_iterator(); ++it) {
      p.line_policies.push_back(unescape((*it)[1].str()));
    }
    p.log = p.text.find("log scale") != std::string::npos;
    out.push_back(std::move(p));
  }
  return out;
}

struct Browsed {
  std::string dom;
  std::map<std::string, std::string> attrs;
  std::filesystem::path png;  // empty without a screenshot
};

// Writes the page, dumps its DOM and (with `shot`) takes its screenshot.
Browsed browse_study(const std::string& chromium, const nlohmann::json& study, const TempDir& dir, bool shot,
                     const std::string& name) {
  const auto html = dir.path() / (name + ".html");
  {
    std::ofstream out(html, std::ios::binary);
    out << study_html_page(study);
  }
  Browsed b;
  const auto dom_file = dir.path() / (name + ".dom.html");
  const std::string error = browse(chromium, html, dir.path(), "--dump-dom", dom_file);
  EXPECT_TRUE(error.empty()) << error;
  if (!error.empty()) return b;
  b.dom = read_file(dom_file);
  b.attrs = body_attributes(b.dom);
  if (shot) {
    const auto png = dir.path() / (name + ".png");
    const std::string shot_error = browse(chromium, html, dir.path(), "--screenshot", png);
    EXPECT_TRUE(shot_error.empty()) << shot_error;
    if (shot_error.empty()) b.png = png;
  }
  if (const char* keep = std::getenv("EXMEM_STUDY_SHOT_DIR"); keep != nullptr && *keep != '\0') {
    std::filesystem::create_directories(keep);
    std::filesystem::copy_file(html, std::filesystem::path(keep) / (name + ".html"),
                               std::filesystem::copy_options::overwrite_existing);
    if (!b.png.empty()) {
      std::filesystem::copy_file(b.png, std::filesystem::path(keep) / (name + ".png"),
                                 std::filesystem::copy_options::overwrite_existing);
    }
  }
  return b;
}

TEST(StudyInBrowser, ZerosBesideValuesSpanningDecadesSitAtTheFootOfALogScale) {
  const std::string chromium = chromium_or_fail();
  ASSERT_FALSE(chromium.empty());
  TempDir dir;
  const Browsed b = browse_study(chromium, zero_and_large_study(), dir, false, "zeros");
  ASSERT_EQ(b.attrs.count("data-drawn"), 1u);
  ASSERT_EQ(b.attrs.at("data-drawn"), "ok") << (b.attrs.count("data-study-error") ? b.attrs.at("data-study-error") : "");
  const std::vector<Plot> plots = plots_in(b.dom);
  ASSERT_EQ(plots.size(), 1u);
  const Plot& p = plots.front();
  EXPECT_TRUE(p.log) << "3 to 92,160 beside zeros: a log scale";
  EXPECT_NE(p.text.find("log scale, 0 at the foot"), std::string::npos);
  EXPECT_NE(p.text.find(">0</text>"), std::string::npos) << "a tick for 0";
  EXPECT_NE(p.text.find(">1</text>"), std::string::npos) << "then the decades from 10^0";
  EXPECT_EQ(p.line_policies, (std::vector<std::string>{"upstream", "unmapped-alloc"}));
}

TEST(StudyInBrowser, DrawsAChartPerMetricAndFacetWithALineAndBandPerPolicy) {
  const std::string chromium = chromium_or_fail();
  ASSERT_FALSE(chromium.empty());
  const nlohmann::json study = two_axis_study();
  TempDir dir;
  const Browsed b = browse_study(chromium, study, dir, true, "two-axis");
  ASSERT_FALSE(b.dom.empty());
  ASSERT_EQ(b.attrs.count("data-drawn"), 1u);
  ASSERT_EQ(b.attrs.at("data-drawn"), "ok") << (b.attrs.count("data-study-error") ? b.attrs.at("data-study-error") : "");
  EXPECT_EQ(b.attrs.count("data-study-error"), 0u);

  // 2 metrics x 2 scenarios (machine.ram is the x axis, not a facet).
  EXPECT_EQ(b.attrs.at("data-plots"), "4");
  const std::vector<Plot> plots = plots_in(b.dom);
  ASSERT_EQ(plots.size(), 4u);
  const std::vector<std::string> all = {"upstream", "secretmem-pmd-pool", "unmap-none"};
  const std::vector<std::string> with_slowdown = {"upstream", "secretmem-pmd-pool"};
  std::set<std::pair<std::string, std::string>> seen;
  for (const Plot& p : plots) {
    SCOPED_TRACE(p.metric + " / " + p.facet);
    seen.emplace(p.metric, p.facet);
    EXPECT_TRUE(p.facet == "scenario = default" || p.facet == "scenario = key-server");
    const bool splits = p.metric == "direct_map_level2_splits";
    const std::vector<std::string>& want = splits ? all : with_slowdown;
    EXPECT_EQ(p.line_policies, want) << "one median line per policy with values";
    EXPECT_EQ(p.band_range, want.size()) << "one min-max band per policy: its 3 RAM sizes are consecutive";
    EXPECT_EQ(p.band_iqr, 0u) << "3 seeds: no q1-q3 band";
    EXPECT_EQ(p.dots, 3 * want.size()) << "a dot per RAM size";
    EXPECT_EQ(count(p.text, "<title>"), p.dots) << "every dot has a tooltip";
    EXPECT_EQ(p.log, splits) << "the splits span 3..30000: log scale; the slowdown does not";
    for (const char* ram : {">16GiB<", ">64GiB<", ">256GiB<"}) EXPECT_NE(p.text.find(ram), std::string::npos);
  }
  EXPECT_EQ(seen.size(), 4u) << "each metric and facet once";
  EXPECT_EQ(count(b.dom, "unmap-none (no values)"), 1u) << "the slowdown's legend says who has no values";
  EXPECT_EQ(count(b.dom, "\"no-values\">no values here:"), 0u) << "no chart of the slowdown has values of unmap-none";

  // The screenshot: each policy's colour inside the charts where it has values.
  ASSERT_FALSE(b.png.empty());
  const Image image = read_png(b.png);
  ASSERT_EQ(image.width, static_cast<png_uint_32>(kWidth));
  const auto rects = nlohmann::json::parse(b.attrs.at("data-plot-rects"));
  ASSERT_EQ(rects.size(), 4u);
  const std::map<std::string, Rgb> colours = {{"upstream", parse_colour("#1f77b4")},
                                              {"secretmem-pmd-pool", parse_colour("#ff7f0e")},
                                              {"unmap-none", parse_colour("#2ca02c")}};
  for (const auto& r : rects) {
    const std::string metric = r["metric"].get<std::string>();
    SCOPED_TRACE(fmt::format("{} / {} at {},{} {}x{}", metric, r["facet"].get<std::string>(), r["x"].get<int>(),
                             r["y"].get<int>(), r["w"].get<int>(), r["h"].get<int>()));
    const int x0 = r["x"].get<int>(), y0 = r["y"].get<int>(), w = r["w"].get<int>(), h = r["h"].get<int>();
    ASSERT_GT(w, 0);
    ASSERT_LE(x0 + w, static_cast<int>(image.width));
    ASSERT_LE(y0 + h, static_cast<int>(image.height)) << "the chart is below the screenshot";
    std::map<std::string, std::size_t> pixels;
    for (int y = y0; y < y0 + h; ++y) {
      for (int x = x0; x < x0 + w; ++x) {
        const png_byte* px = &image.rgba[(static_cast<std::size_t>(y) * image.width + x) * 4];
        for (const auto& [policy, c] : colours) {
          if (std::abs(px[0] - c.r) <= 2 && std::abs(px[1] - c.g) <= 2 && std::abs(px[2] - c.b) <= 2) ++pixels[policy];
        }
      }
    }
    const bool splits = metric == "direct_map_level2_splits";
    for (const auto& [policy, c] : colours) {
      (void)c;
      if (splits || policy != "unmap-none") {
        EXPECT_GE(pixels[policy], 40u) << policy << "'s line and dots";
      } else {
        EXPECT_LE(pixels[policy], 2u) << policy << " has no slowdown figure, nothing in its colour";
      }
    }
  }
}

TEST(StudyInBrowser, WithoutAxesPoliciesAreCategoriesWithWhiskersAndBoxes) {
  const std::string chromium = chromium_or_fail();
  ASSERT_FALSE(chromium.empty());
  TempDir dir;
  const Browsed b = browse_study(chromium, no_axis_study(), dir, false, "no-axis");
  ASSERT_FALSE(b.dom.empty());
  ASSERT_EQ(b.attrs.at("data-drawn"), "ok") << (b.attrs.count("data-study-error") ? b.attrs.at("data-study-error") : "");
  EXPECT_EQ(b.attrs.at("data-plots"), "2") << "one chart per metric";
  const std::vector<Plot> plots = plots_in(b.dom);
  ASSERT_EQ(plots.size(), 2u);
  for (const Plot& p : plots) {
    SCOPED_TRACE(p.metric);
    EXPECT_EQ(p.facet, "");
    EXPECT_TRUE(p.line_policies.empty()) << "no line between categories";
    EXPECT_EQ(p.dots, 2u) << "a dot at each policy's median";
    EXPECT_EQ(p.band_range, 2u) << "a min-max whisker per policy";
    EXPECT_EQ(p.band_iqr, 2u) << "5 seeds: a q1-q3 box per policy";
    EXPECT_NE(p.text.find(">upstream<"), std::string::npos);
    EXPECT_NE(p.text.find(">secretmem-pmd-pool<"), std::string::npos);
    EXPECT_FALSE(p.log);
  }
}

TEST(StudyInBrowser, HostileNamesAreTextAndTheScriptStillFinishes) {
  const std::string chromium = chromium_or_fail();
  ASSERT_FALSE(chromium.empty());
  nlohmann::json study = two_axis_study("</script><b>bold</b>");
  const std::string evil = "\"><img src=x onerror=\"document.title='pwned'\">";
  study["axes"][0]["values"][1] = evil;
  for (auto& g : study["summary"]) {
    if (g["axes"]["scenario"] != "key-server") continue;
    g["axes"]["scenario"] = evil;
    // upstream has no slowdown in this scenario only: its chart says so.
    if (g["policy"] == "upstream") g["stats"]["kernel_slowdown_percent"] = nullptr;
  }
  TempDir dir;
  const Browsed b = browse_study(chromium, study, dir, false, "hostile");
  ASSERT_FALSE(b.dom.empty());
  ASSERT_EQ(b.attrs.at("data-drawn"), "ok") << (b.attrs.count("data-study-error") ? b.attrs.at("data-study-error") : "");
  EXPECT_EQ(b.attrs.at("data-plots"), "4");
  EXPECT_EQ(b.dom.find("<b>bold"), std::string::npos);
  EXPECT_EQ(b.dom.find("<img"), std::string::npos);
  EXPECT_EQ(b.dom.find("pwned</title>"), std::string::npos);
  // The facet of the hostile value is drawn with its lines, its title as text.
  std::size_t facets_with_lines = 0;
  for (const Plot& p : plots_in(b.dom)) {
    if (p.facet != "scenario = " + evil) continue;
    facets_with_lines += !p.line_policies.empty();
    if (p.metric == "kernel_slowdown_percent") {
      EXPECT_EQ(p.line_policies, std::vector<std::string>{"secretmem-pmd-pool"});
    }
  }
  EXPECT_EQ(facets_with_lines, 2u);
  EXPECT_EQ(count(b.dom, "\"no-values\">no values here: upstream<"), 1u) << "upstream has slowdown values in the other scenario";
  EXPECT_EQ(count(b.dom, "\"no-values\">no values here: unmap-none"), 0u) << "unmap-none has none anywhere: the legend says so";
}

// scripts/study-chart, which draws the charts of docs/results/: the page
// with one metric's section left, as wide as the docs' charts and as tall as
// that section; an unknown metric is an error that lists the page's metrics.
TEST(StudyInBrowser, StudyChartScriptDrawsOneMetricsSection) {
  const std::string chromium = chromium_or_fail();
  ASSERT_FALSE(chromium.empty());
  const std::filesystem::path script =
      std::filesystem::path(EXMEM_TEST_DATA_DIR).parent_path().parent_path() / "scripts" / "study-chart";
  ASSERT_TRUE(std::filesystem::exists(script)) << script;
  TempDir dir;
  {
    std::ofstream out(dir.path() / "index.html", std::ios::binary);
    out << study_html_page(two_axis_study());
  }
  const auto png = dir.path() / "splits.png";
  const Exit ok = run({script.string(), dir.path().string(), "direct_map_level2_splits", png.string()},
                      dir.path() / "chart.out", dir.path() / "chart.err", kBrowserTimeoutSeconds * 2);
  ASSERT_FALSE(ok.timed_out);
  ASSERT_TRUE(WIFEXITED(ok.status) && WEXITSTATUS(ok.status) == 0) << read_file(dir.path() / "chart.err");
  const Image image = read_png(png);
  EXPECT_EQ(image.width, 1380u);
  // One metric of two, its two facets side by side: far shorter than the page.
  EXPECT_GT(image.height, 200u);
  EXPECT_LT(image.height, 900u);
  EXPECT_NE(read_file(dir.path() / "chart.out").find("direct_map_level2_splits, 1380x"), std::string::npos);

  const Exit bad = run({script.string(), dir.path().string(), "no_such_metric", png.string()},
                       dir.path() / "bad.out", dir.path() / "bad.err", kBrowserTimeoutSeconds);
  ASSERT_TRUE(WIFEXITED(bad.status));
  EXPECT_EQ(WEXITSTATUS(bad.status), 2);
  const std::string err = read_file(dir.path() / "bad.err");
  EXPECT_NE(err.find("no chart of \"no_such_metric\""), std::string::npos) << err;
  EXPECT_NE(err.find("kernel_slowdown_percent"), std::string::npos) << err;
}

}  // namespace
}  // namespace exmem::report::testing
