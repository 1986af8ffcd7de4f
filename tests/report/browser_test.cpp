// The report page in a real browser: headless Chromium (Debian's chromium
// package) opens index.html from disk, the DOM it ends with says the maps and
// charts were drawn, and its screenshot shows each map's cells in the legend's
// colours, as many pixels per cell for every colour; the difference views show
// exactly the cells each run changed, so two policies that split the direct
// map differently look different.
#include <gtest/gtest.h>
#include <png.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <fcntl.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <cstdlib>
#include <map>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "fixture.hpp"

namespace exmem::report::testing {
namespace {

constexpr int kBrowserTimeoutSeconds = 120;
constexpr int kWidth = 1400;
constexpr int kHeight = 3000;

// EXMEM_CHROMIUM (when executable), else chromium or chromium-browser on
// PATH; empty if none.
std::string find_chromium() {
  if (const char* env = std::getenv("EXMEM_CHROMIUM"); env != nullptr && *env != '\0') {
    return ::access(env, X_OK) == 0 ? std::string(env) : std::string();
  }
  const char* path = std::getenv("PATH");
  std::string dirs = path != nullptr ? path : "/usr/bin:/bin";
  std::size_t at = 0;
  while (at <= dirs.size()) {
    const std::size_t colon = std::min(dirs.find(':', at), dirs.size());
    const std::string dir = dirs.substr(at, colon - at);
    for (const char* name : {"chromium", "chromium-browser"}) {
      const std::string candidate = (dir.empty() ? std::string(".") : dir) + "/" + name;
      if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    }
    at = colon + 1;
  }
  return {};
}

struct Exit {
  bool timed_out = false;
  int status = 0;  // waitpid() status
};

// Runs argv in a process group of its own with stdout and stderr to files;
// on timeout, kills that group (the browser and the helpers it started).
Exit run(const std::vector<std::string>& argv, const std::filesystem::path& out,
         const std::filesystem::path& err, int timeout_seconds) {
  const pid_t pid = ::fork();
  if (pid < 0) throw std::system_error(errno, std::generic_category(), "fork");
  if (pid == 0) {
    ::setpgid(0, 0);
    const int o = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int e = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (o < 0 || e < 0) ::_exit(126);
    ::dup2(o, 1);
    ::dup2(e, 2);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::setpgid(pid, pid);
  Exit x;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_seconds);
  for (;;) {
    const pid_t r = ::waitpid(pid, &x.status, WNOHANG);
    if (r == pid) break;
    if (std::chrono::steady_clock::now() > deadline) {
      x.timed_out = true;
      ::kill(-pid, SIGKILL);
      ::waitpid(pid, &x.status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ::kill(-pid, SIGKILL);  // helpers the browser left behind, if any
  return x;
}

std::string tail(const std::filesystem::path& p, std::size_t n = 2000) {
  std::string s;
  try {
    s = read_file(p);
  } catch (const std::exception&) {
    return {};
  }
  return s.size() > n ? s.substr(s.size() - n) : s;
}

std::string unescape(std::string s) {
  static const std::pair<const char*, const char*> kEntities[] = {
      {"&quot;", "\""}, {"&#39;", "'"}, {"&lt;", "<"}, {"&gt;", ">"}, {"&nbsp;", "\xC2\xA0"}, {"&amp;", "&"}};
  for (const auto& [from, to] : kEntities) {
    for (std::size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + std::strlen(to))) {
      s.replace(at, std::strlen(from), to);
    }
  }
  return s;
}

std::map<std::string, std::string> body_attributes(const std::string& dom) {
  std::map<std::string, std::string> attrs;
  std::smatch m;
  if (!std::regex_search(dom, m, std::regex(R"(<body\b([^>]*)>)"))) return attrs;
  const std::string tag = m[1].str();
  const std::regex attr(R"re(([a-zA-Z0-9_-]+)="([^"]*)")re");
  for (auto it = std::sregex_iterator(tag.begin(), tag.end(), attr); it != std::sregex_iterator(); ++it) {
    attrs[(*it)[1].str()] = unescape((*it)[2].str());
  }
  return attrs;
}

struct Rgb {
  int r = 0, g = 0, b = 0;
};

Rgb parse_colour(const std::string& hex) {
  EXPECT_EQ(hex.size(), 7u) << hex;
  const unsigned long v = std::stoul(hex.substr(1), nullptr, 16);
  return {static_cast<int>((v >> 16) & 255), static_cast<int>((v >> 8) & 255), static_cast<int>(v & 255)};
}

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

struct Image {
  png_uint_32 width = 0;
  png_uint_32 height = 0;
  std::vector<png_byte> rgba;
};

// Decodes a PNG with libpng into 8-bit RGBA.
Image read_png(const std::filesystem::path& p) {
  png_image img{};
  img.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file(&img, p.c_str())) {
    throw std::runtime_error("libpng cannot read " + p.string() + ": " + img.message);
  }
  img.format = PNG_FORMAT_RGBA;
  Image out;
  out.width = img.width;
  out.height = img.height;
  out.rgba.resize(PNG_IMAGE_SIZE(img));
  if (!png_image_finish_read(&img, nullptr, out.rgba.data(), 0, nullptr)) {
    throw std::runtime_error("libpng cannot decode " + p.string() + ": " + img.message);
  }
  return out;
}

// Runs headless Chromium on a file: "--dump-dom" writes the DOM to `output`,
// "--screenshot" the PNG. Returns an error text, empty on success.
std::string browse(const std::string& chromium, const std::filesystem::path& html,
                   const std::filesystem::path& work, const std::string& mode,
                   const std::filesystem::path& output) {
  std::vector<std::string> argv = {
      chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
      "--force-device-scale-factor=1", "--no-first-run", "--disable-extensions",
      fmt::format("--window-size={},{}", kWidth, kHeight),
      "--user-data-dir=" + (work / ("profile" + mode)).string()};
  const bool shot = mode == "--screenshot";
  argv.push_back(shot ? "--screenshot=" + output.string() : mode);
  argv.push_back("file://" + html.string());
  const auto log = work / ("chromium" + mode + ".log");
  const Exit x = run(argv, shot ? work / "chromium.out" : output, log, kBrowserTimeoutSeconds);
  if (x.timed_out) {
    return fmt::format("chromium {} took over {} s (killed)\n{}", mode, kBrowserTimeoutSeconds, tail(log));
  }
  if (!WIFEXITED(x.status) || WEXITSTATUS(x.status) != 0) {
    return fmt::format("chromium {} failed (wait status {})\n{}", mode, x.status, tail(log));
  }
  return {};
}

std::string chromium_or_fail() {
  const std::string chromium = find_chromium();
  if (chromium.empty()) {
    ADD_FAILURE() << "chromium not found on PATH (nor EXMEM_CHROMIUM): install Debian's chromium "
                     "package (scripts/deps installs it); the report's browser tests cannot run "
                     "without it";
  }
  return chromium;
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
