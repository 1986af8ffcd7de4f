// Tests of the report writer: the files it writes read back to the runs'
// own counters; the page needs nothing from the network; runs without maps
// and unwritable places are handled.
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
#include "sim/metrics.hpp"

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
    write_report(x->dir.path() / "nested" / "report", shared_report().doc);
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
  EXPECT_EQ(written().report["runs"].size(), 2u);
  EXPECT_TRUE(written().report["runs"][0].contains("region_map"));
}

TEST(Report, RunsCsvHasOneRowPerPolicyWithTheMachinesCounters) {
  const auto& rows = written().runs;
  const Report& rep = shared_report();
  ASSERT_EQ(rows.size(), 1 + rep.doc.runs.size());
  const auto& h = rows[0];
  std::vector<std::string> want = {"policy"};
  for (const auto& c : runs_csv_columns()) want.push_back(c);
  ASSERT_EQ(h, want);
  for (std::size_t i = 0; i < rep.doc.runs.size(); ++i) {
    const auto& row = rows[1 + i];
    const sim::RunResult& r = rep.doc.runs[i];
    const auto& dm = r.direct_map;
    const auto& fl = r.flushes;
    ASSERT_EQ(row.size(), h.size());
    EXPECT_EQ(row[0], r.policy);
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
    EXPECT_EQ(std::stod(row[column(h, "tlb_miss_rate")]), r.tlb_cost.miss_rate);
    EXPECT_EQ(std::stod(row[column(h, "walk_cycles")]), r.tlb_cost.walk_cycles);
    EXPECT_EQ(std::stod(row[column(h, "shootdown_us")]), r.tlb_cost.shootdown_us);
    EXPECT_EQ(as_u64(row[column(h, "secret_faults")]), r.workload.secret_faults);
    EXPECT_EQ(as_u64(row[column(h, "failed_faults")]), r.workload.secret_ooms);
    EXPECT_EQ(as_u64(row[column(h, "oom_kills")]), r.oom.kills);
    EXPECT_EQ(as_u64(row[column(h, "reclaimed_page_cache")]), r.reclaim.cache_pages);
    EXPECT_EQ(as_u64(row[column(h, "pooled_pages")]), r.pooled_pages);
    EXPECT_EQ(as_u64(row[column(h, "events")]), r.workload.events);
    ASSERT_TRUE(r.map_end.has_value());
    EXPECT_EQ(as_u64(row[column(h, "split_regions_end")]), r.map_end->regions_of(md::Coverage::Split4K));
  }
  // The runs differ where the designs differ: upstream splits, the pool does not.
  EXPECT_GT(as_u64(rows[1][column(h, "direct_map_level2_splits")]),
            as_u64(rows[2][column(h, "direct_map_level2_splits")]));
}

TEST(Report, EveryMetricOfTheCatalogueIsInTheJsonWhereItSays) {
  const Report& rep = shared_report();
  for (std::size_t i = 0; i < rep.doc.runs.size(); ++i) {
    for (const sim::Metric& m : sim::metrics()) {
      if (m.json.empty() || m.get == nullptr) continue;
      const auto v = m.get(rep.doc.runs[i]);
      const nlohmann::json::json_pointer p{std::string(m.json)};
      if (!v) {
        EXPECT_FALSE(rep.out["runs"][i].contains(p)) << m.json;
        continue;
      }
      ASSERT_TRUE(rep.out["runs"][i].contains(p)) << m.json;
      EXPECT_EQ(rep.out["runs"][i][p].get<double>(), sim::as_double(*v)) << m.json;
    }
  }
  // Keys a user's scripts read are where they were.
  const auto& dm = rep.out["runs"][0]["direct_map"];
  EXPECT_EQ(dm["direct_map_level2_splits"].get<std::uint64_t>(), rep.doc.runs[0].direct_map.level2_splits);
  EXPECT_FALSE(rep.out["runs"][0].contains("trace")) << "a synthetic run has no trace block";
  EXPECT_TRUE(rep.out["runs"][0]["workload"].contains("hold_turns"));
}

TEST(Report, OverTimeCsvHasEverySample) {
  const auto& rows = written().over_time;
  const Report& rep = shared_report();
  ASSERT_FALSE(rows.empty());
  const std::vector<std::string> header = {"policy", "events", "DirectMap4k", "DirectMap2M",
                                           "DirectMap1G", "direct_map_level2_splits",
                                           "direct_map_level3_splits", "tlb_miss_rate"};
  ASSERT_EQ(rows[0], header);
  std::size_t at = 1;
  for (const sim::RunResult& run : rep.doc.runs) {
    ASSERT_GE(run.over_time.size(), 4u);
    for (const sim::Sample& s : run.over_time) {
      ASSERT_LT(at, rows.size());
      const auto& row = rows[at++];
      ASSERT_EQ(row.size(), header.size());
      EXPECT_EQ(row[0], run.policy);
      EXPECT_EQ(as_u64(row[1]), s.events);
      EXPECT_EQ(as_u64(row[2]), s.direct_map_4k_kb);
      EXPECT_EQ(as_u64(row[5]), s.level2_splits);
      EXPECT_EQ(std::stod(row[7]), s.tlb_miss_rate);
    }
    // The last sample is the machine's state at the end of the run.
    EXPECT_EQ(as_u64(rows[at - 1][1]), run.workload.events);
    EXPECT_EQ(as_u64(rows[at - 1][2]), run.direct_map.direct_map_4k_kb());
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
  EXPECT_NE(html.find(to_json(*shared_report().doc.runs[0].map_end)["data"].get<std::string>()),
            std::string::npos);
}

TEST(Report, TextInThePageIsEscaped) {
  Document doc = shared_report().doc;
  doc.runs[0].policy = "</script><script>alert(1)</script> & \"x\"";
  const std::string html = html_page(doc);
  EXPECT_EQ(html.find("<script>alert(1)"), std::string::npos);
  EXPECT_NE(html.find("&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;x&quot;"),
            std::string::npos);
  // One closing tag for each of the two script blocks, none from the data.
  std::size_t closes = 0;
  for (std::size_t at = html.find("</script>"); at != std::string::npos; at = html.find("</script>", at + 1)) {
    ++closes;
  }
  EXPECT_EQ(closes, 2u);
  const std::string csv = runs_csv(doc);
  EXPECT_NE(csv.find("\"</script><script>alert(1)</script> & \"\"x\"\"\","), std::string::npos) << csv;
}

TEST(Report, WhatARunLacksGivesEmptyCellsAndAPageThatSaysSo) {
  Document doc;  // no header: nothing of the machine or the workload
  sim::RunResult bare;
  bare.policy = "bare";
  bare.direct_map.leaves_4k = 2;
  doc.runs.push_back(bare);  // no region maps, no samples
  TempDir dir;
  write_report(dir.path(), doc);
  const auto rows = parse_csv(read_file(dir.path() / "runs.csv"));
  ASSERT_EQ(rows.size(), 2u);
  const auto& h = rows[0];
  EXPECT_EQ(rows[1][0], "bare");
  EXPECT_EQ(rows[1][column(h, "DirectMap4k_kB")], "8");
  EXPECT_EQ(rows[1][column(h, "split_regions_end")], "") << "no region map, no count";
  const auto ot = parse_csv(read_file(dir.path() / "over_time.csv"));
  EXPECT_EQ(ot.size(), 1u) << "a header and no samples";
  const std::string html = read_file(dir.path() / "index.html");
  EXPECT_NE(html.find("<b>machine</b> not recorded"), std::string::npos);
  EXPECT_NE(html.find("<b>workload</b> not recorded"), std::string::npos);
  EXPECT_NE(html.find("not measured in this run"), std::string::npos);
  // No runs at all: still a page and a header-only CSV.
  TempDir empty;
  write_report(empty.path(), Document{});
  EXPECT_EQ(parse_csv(read_file(empty.path() / "runs.csv")).size(), 1u);
  EXPECT_NE(read_file(empty.path() / "index.html").find("No runs in this report."), std::string::npos);
}

TEST(Report, ADirectoryThatCannotBeMadeIsAnErrorNamingItAndWhy) {
  TempDir dir;
  const auto file = dir.path() / "a-file";
  { std::ofstream(file) << "x"; }
  try {
    write_report(file / "sub", shared_report().doc);
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
    write_report(dir.path(), shared_report().doc);
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
