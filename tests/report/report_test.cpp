// Tests of the report writer: the files it writes read back to the machines'
// own counters; the page needs nothing from the network; missing keys and
// unwritable places are handled.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <regex>
#include <string>
#include <system_error>
#include <vector>

#include "fixture.hpp"

namespace exmem::report::testing {
namespace {

struct Written {
  TempDir dir;
  nlohmann::json report;
  std::vector<std::vector<std::string>> runs;
  std::vector<std::vector<std::string>> over_time;
  std::string html;
};

const Written& written() {
  static const Written* w = [] {
    auto* x = new Written;
    write_report(x->dir.path() / "nested" / "report", shared_report().out);
    const auto d = x->dir.path() / "nested" / "report";
    x->report = nlohmann::json::parse(read_file(d / "report.json"));
    x->runs = parse_csv(read_file(d / "runs.csv"));
    x->over_time = parse_csv(read_file(d / "over_time.csv"));
    x->html = read_file(d / "index.html");
    return x;
  }();
  return *w;
}

std::size_t column(const std::vector<std::string>& header, const std::string& name) {
  for (std::size_t i = 0; i < header.size(); ++i) {
    if (header[i] == name) return i;
  }
  ADD_FAILURE() << "no column " << name;
  return 0;
}

std::uint64_t as_u64(const std::string& s) { return std::stoull(s); }

TEST(Report, JsonIsTheWholeObject) {
  EXPECT_EQ(written().report, shared_report().out);
}

TEST(Report, RunsCsvHasOneRowPerPolicyWithTheMachinesCounters) {
  const auto& rows = written().runs;
  const Report& rep = shared_report();
  ASSERT_EQ(rows.size(), 1 + rep.runs.size());
  const auto& h = rows[0];
  std::vector<std::string> want = {"policy"};
  for (const auto& c : runs_csv_columns()) want.push_back(c);
  ASSERT_EQ(h, want);
  for (std::size_t i = 0; i < rep.runs.size(); ++i) {
    const auto& row = rows[1 + i];
    const md::Machine& m = *rep.runs[i].machine;
    const auto& dm = m.dmap().counters();
    const auto& fl = m.flushes().counters();
    ASSERT_EQ(row.size(), h.size());
    EXPECT_EQ(row[0], std::string(m.policy().name()));
    EXPECT_EQ(as_u64(row[column(h, "DirectMap4k_kB")]), dm.direct_map_4k_kb());
    EXPECT_EQ(as_u64(row[column(h, "DirectMap2M_kB")]), dm.direct_map_2m_kb());
    EXPECT_EQ(as_u64(row[column(h, "DirectMap1G_kB")]), dm.direct_map_1g_kb());
    EXPECT_EQ(as_u64(row[column(h, "direct_map_level2_splits")]), dm.level2_splits);
    EXPECT_EQ(as_u64(row[column(h, "direct_map_level3_splits")]), dm.level3_splits);
    EXPECT_EQ(as_u64(row[column(h, "direct_map_level2_collapses")]), dm.level2_collapses);
    EXPECT_EQ(as_u64(row[column(h, "page_table_pages")]), dm.table_pages_allocated - dm.table_pages_freed);
    EXPECT_EQ(as_u64(row[column(h, "tlb_flush_events")]),
              fl.range_flushes + fl.full_flushes + fl.local_flushes);
    EXPECT_EQ(as_u64(row[column(h, "full_flushes")]), fl.full_flushes);
    EXPECT_EQ(std::stod(row[column(h, "tlb_miss_rate")]), rep.runs[i].cost.miss_rate);
    EXPECT_EQ(std::stod(row[column(h, "walk_cycles")]), rep.runs[i].cost.walk_cycles);
    EXPECT_EQ(std::stod(row[column(h, "shootdown_us")]), rep.runs[i].cost.shootdown_us);
    EXPECT_EQ(as_u64(row[column(h, "secret_faults")]), rep.runs[i].result.secret_faults);
    EXPECT_EQ(as_u64(row[column(h, "oom_at_fault")]), rep.runs[i].result.secret_ooms);
    EXPECT_EQ(as_u64(row[column(h, "pooled_pages")]), m.policy().pooled_pages());
    EXPECT_EQ(as_u64(row[column(h, "events")]), rep.runs[i].result.events);
    EXPECT_EQ(as_u64(row[column(h, "split_regions_end")]),
              rep.runs[i].end.regions_of(md::Coverage::Split4K));
  }
  // The runs differ where the designs differ: upstream splits, the pool does not.
  EXPECT_GT(as_u64(rows[1][column(h, "direct_map_level2_splits")]),
            as_u64(rows[2][column(h, "direct_map_level2_splits")]));
}

TEST(Report, OverTimeCsvHasEverySampleAndEmptyCellsForWhatASampleLacks) {
  const auto& rows = written().over_time;
  const Report& rep = shared_report();
  ASSERT_FALSE(rows.empty());
  const std::vector<std::string> header = {"policy", "events", "DirectMap4k", "DirectMap2M",
                                           "DirectMap1G", "direct_map_level2_splits",
                                           "direct_map_level3_splits", "tlb_miss_rate"};
  ASSERT_EQ(rows[0], header);
  std::size_t at = 1;
  for (const PolicyRun& run : rep.runs) {
    const auto& samples = run.json["direct_map_over_time"];
    ASSERT_GE(samples.size(), 4u);
    for (const auto& s : samples) {
      ASSERT_LT(at, rows.size());
      const auto& row = rows[at++];
      ASSERT_EQ(row.size(), header.size());
      EXPECT_EQ(row[0], run.json["policy"].get<std::string>());
      EXPECT_EQ(as_u64(row[1]), s["events"].get<std::uint64_t>());
      EXPECT_EQ(as_u64(row[2]), s["DirectMap4k"].get<std::uint64_t>());
      EXPECT_EQ(as_u64(row[5]), s["direct_map_level2_splits"].get<std::uint64_t>());
      if (s.contains("tlb_miss_rate")) {
        EXPECT_EQ(std::stod(row[7]), s["tlb_miss_rate"].get<double>());
      } else {
        EXPECT_EQ(row[7], "");
      }
    }
    // The last sample is the machine's state at the end of the run.
    EXPECT_EQ(as_u64(rows[at - 1][2]), run.machine->dmap().counters().direct_map_4k_kb());
  }
  EXPECT_EQ(at, rows.size());
}

TEST(Report, PageIsSelfContained) {
  const std::string& html = written().html;
  ASSERT_NE(html.find("id=\"map-grid\""), std::string::npos);
  const std::regex remote(R"((src|href|action|poster|srcset)\s*=\s*["']?\s*(https?:)?//)",
                          std::regex::icase);
  EXPECT_FALSE(std::regex_search(html, remote)) << "a resource from the network";
  const std::regex external_script(R"(<script[^>]*\bsrc\s*=)", std::regex::icase);
  EXPECT_FALSE(std::regex_search(html, external_script));
  const std::regex link(R"(<link\b|@import|url\s*\()", std::regex::icase);
  EXPECT_FALSE(std::regex_search(html, link));
  EXPECT_EQ(html.find("https://"), std::string::npos);
  // Header, table and the data the script draws from are in the page.
  EXPECT_NE(html.find("4 GiB RAM"), std::string::npos);
  EXPECT_NE(html.find("seed 3"), std::string::npos);
  EXPECT_NE(html.find("<th>secretmem-pmd-pool</th>"), std::string::npos);
  EXPECT_NE(html.find("id=\"exmem-data\""), std::string::npos);
  EXPECT_NE(html.find(shared_report().out["runs"][0]["region_map"]["end"]["data"].get<std::string>()),
            std::string::npos);
}

TEST(Report, TextInThePageIsEscaped) {
  nlohmann::json out = shared_report().out;
  out["runs"][0]["policy"] = "</script><script>alert(1)</script> & \"x\"";
  const std::string html = html_page(out);
  EXPECT_EQ(html.find("<script>alert(1)"), std::string::npos);
  EXPECT_NE(html.find("&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;x&quot;"),
            std::string::npos);
  // One closing tag for each of the two script blocks, none from the data.
  std::size_t closes = 0;
  for (std::size_t at = html.find("</script>"); at != std::string::npos; at = html.find("</script>", at + 1)) {
    ++closes;
  }
  EXPECT_EQ(closes, 2u);
  const std::string csv = runs_csv(out);
  EXPECT_NE(csv.find("\"</script><script>alert(1)</script> & \"\"x\"\"\","), std::string::npos) << csv;
}

TEST(Report, MissingKeysGiveEmptyCellsAndAPageThatSaysSo) {
  nlohmann::json out;
  out["runs"] = nlohmann::json::array();
  out["runs"].push_back({{"policy", "bare"}, {"direct_map", {{"DirectMap4k", 8}}}});
  out["runs"].push_back(nlohmann::json::object());
  TempDir dir;
  write_report(dir.path(), out);
  const auto rows = parse_csv(read_file(dir.path() / "runs.csv"));
  ASSERT_EQ(rows.size(), 3u);
  const auto& h = rows[0];
  EXPECT_EQ(rows[1][0], "bare");
  EXPECT_EQ(rows[1][column(h, "DirectMap4k_kB")], "8");
  EXPECT_EQ(rows[1][column(h, "tlb_miss_rate")], "");
  EXPECT_EQ(rows[1][column(h, "tlb_flush_events")], "");
  EXPECT_EQ(rows[2][0], "run 2");
  for (std::size_t c = 1; c < h.size(); ++c) EXPECT_EQ(rows[2][c], "") << h[c];
  const auto ot = parse_csv(read_file(dir.path() / "over_time.csv"));
  EXPECT_EQ(ot.size(), 1u) << "a header and no samples";
  const std::string html = read_file(dir.path() / "index.html");
  EXPECT_NE(html.find("<b>machine</b> not recorded"), std::string::npos);
  EXPECT_NE(html.find("<b>workload</b> not recorded"), std::string::npos);
  EXPECT_NE(html.find("not in this run's JSON"), std::string::npos);
  // Not even `runs`: still a page and a header-only CSV.
  TempDir empty;
  write_report(empty.path(), nlohmann::json::object());
  EXPECT_EQ(parse_csv(read_file(empty.path() / "runs.csv")).size(), 1u);
  EXPECT_NE(read_file(empty.path() / "index.html").find("No runs in this report."), std::string::npos);
}

TEST(Report, ADirectoryThatCannotBeMadeIsAnErrorNamingItAndWhy) {
  TempDir dir;
  const auto file = dir.path() / "a-file";
  { std::ofstream(file) << "x"; }
  try {
    write_report(file / "sub", shared_report().out);
    FAIL() << "expected std::system_error";
  } catch (const std::system_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(file.string()), std::string::npos) << what;
    EXPECT_NE(what.find(std::strerror(ENOTDIR)), std::string::npos) << what;
    EXPECT_EQ(e.code().value(), ENOTDIR);
  }
}

TEST(Report, AFileThatCannotBeWrittenIsAnErrorNamingItAndWhy) {
  TempDir dir;
  std::filesystem::create_directories(dir.path() / "runs.csv");  // a directory where the file goes
  try {
    write_report(dir.path(), shared_report().out);
    FAIL() << "expected std::system_error";
  } catch (const std::system_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find((dir.path() / "runs.csv").string()), std::string::npos) << what;
    EXPECT_NE(what.find(std::strerror(EISDIR)), std::string::npos) << what;
  }
}

TEST(Report, Base64RoundTripsAndRejectsWhatIsNotBase64) {
  std::vector<std::uint8_t> bytes;
  for (unsigned n = 0; n < 300; ++n) {
    bytes.push_back(static_cast<std::uint8_t>(n * 37 + 11));
    const std::string s = base64_encode(bytes);
    ASSERT_EQ(s.size() % 4, 0u);
    ASSERT_EQ(base64_decode(s), bytes) << n;
  }
  EXPECT_EQ(base64_encode(std::vector<std::uint8_t>{'f', 'o', 'o', 'b'}), "Zm9vYg==");
  EXPECT_THROW((void)base64_decode("Zm9"), std::invalid_argument);
  EXPECT_THROW((void)base64_decode("Zm9v!g=="), std::invalid_argument);
  EXPECT_THROW((void)base64_decode("Z=9v"), std::invalid_argument);
  EXPECT_THROW((void)base64_decode("Zm==Zm9v"), std::invalid_argument);
}

}  // namespace
}  // namespace exmem::report::testing
