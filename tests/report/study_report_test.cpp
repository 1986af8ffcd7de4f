// The study page (report/study_report.hpp) as text: self-contained, the study
// embedded as it came and every string from it escaped, the header, summary
// and points tables in plain HTML, and documents without axes, with null
// figures or with members missing still give a page.
#include <gtest/gtest.h>

#include <regex>
#include <string>

#include <nlohmann/json.hpp>

#include "report/study_report.hpp"
#include "study_fixture.hpp"

namespace exmem::report::testing {
namespace {

std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (std::size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + what.size())) ++n;
  return n;
}

// The JSON the page embeds for its script.
nlohmann::json embedded(const std::string& html) {
  const std::string open = "<script type=\"application/json\" id=\"exmem-study\">";
  const std::size_t from = html.find(open);
  if (from == std::string::npos) throw std::runtime_error("no embedded study");
  const std::size_t start = from + open.size();
  const std::size_t end = html.find("</script>", start);
  return nlohmann::json::parse(html.substr(start, end - start));
}

TEST(StudyPage, IsSelfContained) {
  const std::string html = study_html_page(two_axis_study());
  const std::regex remote(R"((src|href|action|poster|srcset)\s*=\s*["']?\s*(https?:)?//)", std::regex::icase);
  EXPECT_FALSE(std::regex_search(html, remote)) << "a resource from the network";
  EXPECT_FALSE(std::regex_search(html, std::regex(R"(<script[^>]*\bsrc\s*=)", std::regex::icase)));
  EXPECT_FALSE(std::regex_search(html, std::regex(R"(<link\b|@import|url\s*\()", std::regex::icase)));
  EXPECT_EQ(html.find("https://"), std::string::npos);
  // The only "http://" is the SVG namespace's name in the script, which loads nothing.
  for (std::size_t at = html.find("http://"); at != std::string::npos; at = html.find("http://", at + 1)) {
    const std::string svg_namespace = "http://www.w3.org/2000/svg'";
    EXPECT_EQ(html.compare(at, svg_namespace.size(), svg_namespace), 0) << html.substr(at, 60);
  }
  // Stylesheet and script inline: page.css's rules, study.css's and study.js's.
  EXPECT_NE(html.find("table.cmp {"), std::string::npos);
  EXPECT_NE(html.find(".facets {"), std::string::npos);
  EXPECT_NE(html.find("section.metric[data-metric-index="), std::string::npos);
  EXPECT_NE(html.find("data-drawn=\"no\""), std::string::npos) << "the script changes it to ok";
}

TEST(StudyPage, HeaderSaysWhatWasRun) {
  const std::string html = study_html_page(two_axis_study());
  EXPECT_NE(html.find("<title>exmem study: pooling</title>"), std::string::npos);
  EXPECT_NE(html.find("<p class=\"description\">Is pooling needed?</p>"), std::string::npos);
  EXPECT_NE(html.find("model <code>0.1.0+model.3f2a9c01b7de</code>"), std::string::npos);
  EXPECT_NE(html.find("54 points"), std::string::npos) << "2 x 3 axis values x 3 policies x 3 seeds";
  EXPECT_NE(html.find("seeds 1, 2, 3"), std::string::npos);
  EXPECT_NE(html.find("<code>scenario</code> = default, key-server"), std::string::npos);
  EXPECT_NE(html.find("<code>machine.ram</code> (x axis) = 16GiB, 64GiB, 256GiB"), std::string::npos);
  // Each policy with its chart colour, in the study's order.
  EXPECT_NE(html.find("data-policy=\"upstream\" data-colour=\"#1f77b4\""), std::string::npos);
  EXPECT_NE(html.find("data-policy=\"secretmem-pmd-pool\" data-colour=\"#ff7f0e\""), std::string::npos);
  EXPECT_NE(html.find("data-policy=\"unmap-none\" data-colour=\"#2ca02c\""), std::string::npos);
  // One section per metric for the script to draw in, with the unit.
  EXPECT_EQ(count(html, "<section class=\"metric\""), 2u);
  EXPECT_NE(html.find("kernel slowdown % (estimate) <span class=\"unit\">[%]</span>"), std::string::npos);
}

TEST(StudyPage, EmbedsTheStudyAsItCameAndEscapesEveryString) {
  nlohmann::json study = two_axis_study("</script><b>bold</b> & \"quoted\" 'x'");
  study["policies"][0] = "</script><script>alert(1)</script>";
  for (auto& g : study["summary"]) {
    if (g["policy"] == "upstream") g["policy"] = study["policies"][0];
  }
  for (auto& p : study["points"]) {
    if (p["policy"] == "upstream") p["policy"] = study["policies"][0];
  }
  study["axes"][0]["values"][1] = "<img src=x onerror=alert(2)>";
  study["metrics"][1]["unit"] = "<i>%</i>";
  const std::string html = study_html_page(study);
  EXPECT_EQ(html.find("<b>bold"), std::string::npos);
  EXPECT_EQ(html.find("<script>alert(1)"), std::string::npos);
  EXPECT_EQ(html.find("<img"), std::string::npos);
  EXPECT_EQ(html.find("<i>%"), std::string::npos);
  EXPECT_NE(html.find("&lt;/script&gt;&lt;b&gt;bold&lt;/b&gt; &amp; &quot;quoted&quot; &#39;x&#39;"),
            std::string::npos);
  EXPECT_NE(html.find("&lt;img src=x onerror=alert(2)&gt;"), std::string::npos);
  // One closing tag for each of the two script blocks, none from the data.
  EXPECT_EQ(count(html, "</script>"), 2u);
  // The script reads back exactly the study, with each policy's colour.
  const nlohmann::json data = embedded(html);
  EXPECT_EQ(data["study"], study);
  ASSERT_EQ(data["colours"].size(), 3u);
  EXPECT_EQ(data["colours"][0], "#1f77b4");
  EXPECT_NE(html.find("\\u003c/script\\u003e\\u003cb\\u003ebold"), std::string::npos) << "'<' as \\u003c in the data";
}

TEST(StudyPage, SummaryGivesMedianAndRangePerGroupAndSaysWhereThereIsNone) {
  const nlohmann::json study = two_axis_study();
  const std::string html = study_html_page(study);
  const std::size_t table = html.find("id=\"summary-table\"");
  ASSERT_NE(table, std::string::npos);
  const std::string summary = html.substr(table, html.find("</table>", table) - table);
  EXPECT_EQ(count(summary, "<tr>"), 1u + study["summary"].size()) << "a header row and one row per group";
  // upstream, default, 16GiB: splits 40*16*(1.08, 1.16, 1.24) = 691, 742, 794.
  EXPECT_NE(summary.find("<td class=\"key\">default</td><td class=\"key\">16GiB</td><td class=\"key\">"
                         "<span class=\"swatch\" style=\"background:#1f77b4\"></span>upstream</td><td>3</td>"
                         "<td title=\"q1 716.5, q3 768\">742 <span class=\"range\">[691 &ndash; 794]</span></td>"),
            std::string::npos)
      << summary.substr(0, 3000);
  // unmap-none has no slowdown figure: its stats are null, the cell says so.
  EXPECT_EQ(count(summary, "title=\"no value in these runs\""), 6u) << "2 x 3 unmap-none groups";
  const std::size_t points = html.find("id=\"points-table\"");
  ASSERT_NE(points, std::string::npos);
  const std::string rows = html.substr(points, html.find("</table>", points) - points);
  EXPECT_EQ(count(rows, "<tr>"), 1u + study["points"].size());
  EXPECT_EQ(count(rows, "title=\"no such figure in this run\""), 18u) << "2 x 3 x 3 unmap-none points";
  EXPECT_NE(html.find("<details>\n<summary>54 points, one run each"), std::string::npos);
}

TEST(StudyPage, NoAxesGivesOnePointPerPolicyAndSeed) {
  const nlohmann::json study = no_axis_study();
  ASSERT_TRUE(study["axes"].empty());
  ASSERT_TRUE(study["x"].is_null());
  const std::string html = study_html_page(study);
  EXPECT_NE(html.find("<b>axes</b> none (one point per policy and seed)"), std::string::npos);
  EXPECT_NE(html.find("Per policy: the dot is the median over seeds"), std::string::npos);
  const std::size_t table = html.find("id=\"summary-table\"");
  ASSERT_NE(table, std::string::npos);
  EXPECT_EQ(html.compare(table, 71, "id=\"summary-table\">\n<thead><tr><th class=\"key\">policy</th><th>runs</th>"), 0)
      << "no axis columns";
  EXPECT_EQ(count(html, "title=\"no such figure in this run\""), 1u) << "upstream's seed 3 has no slowdown";
  EXPECT_EQ(embedded(html)["study"]["x"], nullptr);
}

TEST(StudyPage, MissingOrMistypedMembersStillGiveAPage) {
  for (const nlohmann::json& j : {nlohmann::json(), nlohmann::json::array(), nlohmann::json::object(),
                                  nlohmann::json{{"axes", 3}, {"policies", "x"}, {"summary", {{{"stats", 1}}}},
                                                 {"points", {1, nullptr}}, {"metrics", {{{"key", 5}}}}}}) {
    SCOPED_TRACE(j.dump());
    std::string html;
    ASSERT_NO_THROW(html = study_html_page(j));
    EXPECT_NE(html.find("<title>exmem study</title>"), std::string::npos);
    EXPECT_EQ(count(html, "</script>"), 2u);
    EXPECT_NE(html.find("</html>"), std::string::npos);
  }
}

}  // namespace
}  // namespace exmem::report::testing
