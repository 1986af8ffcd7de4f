// Tests of sim/costs: the costs file of `exmem probe --cost --save FILE`
// (format "exmem-costs/1") read with every required key checked, its figures
// labelled with where they come from, and the model run through the probe's
// sweep against it.
#include "sim/costs.hpp"

#include <gtest/gtest.h>

#include <cctype>
#include <cmath>
#include <iostream>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

namespace exmem::sim {
namespace {

const std::string kFixture = std::string(EXMEM_TEST_DATA_DIR) + "/sample.costs.json";

std::string fixture_text() {
  std::ifstream in(kFixture);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(CostsFile, TheSampleReadsWithEveryFigureAndItsSource) {
  const CostsFile f = load_costs(kFixture);
  EXPECT_EQ(f.path, kFixture);
  EXPECT_EQ(f.date, "2026-12-03T07:40:00Z");
  EXPECT_EQ(f.kernel, "6.18.0-test");
  EXPECT_EQ(f.hypervisor, "KVM");
  ASSERT_TRUE(f.cpu_mhz.has_value());
  EXPECT_DOUBLE_EQ(*f.cpu_mhz, 2450.0);
  EXPECT_EQ(f.pti, false);
  EXPECT_DOUBLE_EQ(f.walk.ns, 18.5);
  EXPECT_DOUBLE_EQ(f.ipi_round_trip.ns, 1800.0);
  EXPECT_FALSE(f.single_page_flush.measured);
  EXPECT_FALSE(f.single_page_flush.low.has_value());
  EXPECT_DOUBLE_EQ(f.full_flush.ns, 900.0);
  EXPECT_DOUBLE_EQ(f.kernel_access.ns, 310.0);
  ASSERT_EQ(f.sweep.size(), 3u);
  EXPECT_EQ(f.sweep[2].pages, 65536u);

  const model::tlb::KernelCostFigures k = figures_of(f);
  EXPECT_DOUBLE_EQ(k.walk_ns, 18.5);
  EXPECT_DOUBLE_EQ(k.kernel_access_ns, 310.0);
  EXPECT_DOUBLE_EQ(k.shootdown.ipi_round_trip_ns, 1800.0);
  EXPECT_DOUBLE_EQ(k.shootdown.single_page_flush_ns, 100.0);
  EXPECT_DOUBLE_EQ(k.shootdown.full_flush_ns, 900.0);
  EXPECT_NE(k.source.find(kFixture), std::string::npos) << k.source;
  EXPECT_NE(k.source.find("probe 2026-12-03T07:40:00Z"), std::string::npos) << k.source;
  EXPECT_NE(k.source.find("kernel 6.18.0-test"), std::string::npos) << k.source;
  EXPECT_NE(k.source.find("hypervisor KVM"), std::string::npos) << k.source;
  EXPECT_EQ(k.walk_from.rfind("measured ", 0), 0u) << k.walk_from;
  EXPECT_EQ(k.single_flush_from.rfind("constant ", 0), 0u) << k.single_flush_from;
}

TEST(CostsFile, WithoutAFileTheBuiltInConstantsAreLabelledWithTheirSources) {
  const model::tlb::KernelCostFigures k;
  EXPECT_EQ(k.source, "built-in constants");
  EXPECT_NE(k.single_flush_from.find("arch/x86/mm/tlb.c"), std::string::npos);
  EXPECT_NE(k.ipi_from.find("order of magnitude"), std::string::npos);
  EXPECT_NE(k.walk_from.find("assumed"), std::string::npos);
  EXPECT_DOUBLE_EQ(k.walk_ns, 0.0);  // from the preset's walk cycles
}

TEST(CostsFile, UnknownKeysAreIgnored) {
  nlohmann::json j = nlohmann::json::parse(fixture_text());
  j["later"] = {{"a", 1}};
  j["figures"]["walk_ns"]["p99"] = 40;
  EXPECT_NO_THROW((void)parse_costs(j.dump(), "x.json"));
}

struct BadCosts {
  const char* what;
  std::string (*edit)(nlohmann::json&);  // returns the text to parse
  std::vector<const char*> says;
};

std::string dump(nlohmann::json& j) { return j.dump(); }

class MalformedCosts : public ::testing::TestWithParam<BadCosts> {};

TEST_P(MalformedCosts, IsAnErrorNamingTheFileTheKeyAndWhatWasExpected) {
  const BadCosts& b = GetParam();
  nlohmann::json j = nlohmann::json::parse(fixture_text());
  const std::string text = b.edit(j);
  try {
    (void)parse_costs(text, "bad.costs");
    FAIL() << b.what << ": no error";
  } catch (const CostsError& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind("bad.costs: ", 0), 0u) << msg;
    for (const char* s : b.says) EXPECT_NE(msg.find(s), std::string::npos) << "missing \"" << s << "\" in: " << msg;
  }
}

INSTANTIATE_TEST_SUITE_P(
    CostsFile, MalformedCosts,
    ::testing::Values(
        BadCosts{"not JSON", [](nlohmann::json&) { return std::string("{\"format\": "); }, {"not JSON"}},
        BadCosts{"not an object", [](nlohmann::json&) { return std::string("[1, 2]"); }, {"expected a JSON object"}},
        BadCosts{"wrong format",
                 [](nlohmann::json& j) {
                   j["format"] = "exmem-costs/2";
                   return dump(j);
                 },
                 {"key \"format\"", "expected \"exmem-costs/1\"", "exmem-costs/2"}},
        BadCosts{"missing format",
                 [](nlohmann::json& j) {
                   j.erase("format");
                   return dump(j);
                 },
                 {"key \"format\"", "missing"}},
        BadCosts{"missing figure",
                 [](nlohmann::json& j) {
                   j["figures"].erase("walk_ns");
                   return dump(j);
                 },
                 {"key \"figures.walk_ns\"", "missing"}},
        BadCosts{"missing source key",
                 [](nlohmann::json& j) {
                   j["source"].erase("pti");
                   return dump(j);
                 },
                 {"key \"source.pti\"", "missing"}},
        BadCosts{"missing how",
                 [](nlohmann::json& j) {
                   j["figures"]["kernel_access_ns"].erase("how");
                   return dump(j);
                 },
                 {"key \"figures.kernel_access_ns.how\"", "missing"}},
        BadCosts{"negative ns",
                 [](nlohmann::json& j) {
                   j["figures"]["ipi_round_trip_ns"]["ns"] = -5;
                   j["figures"]["ipi_round_trip_ns"]["low"] = nullptr;
                   return dump(j);
                 },
                 {"key \"figures.ipi_round_trip_ns.ns\"", "expected a number >= 0", "-5"}},
        BadCosts{"NaN as a string",
                 [](nlohmann::json& j) {
                   j["figures"]["walk_ns"]["ns"] = "NaN";
                   return dump(j);
                 },
                 {"key \"figures.walk_ns.ns\"", "expected a number >= 0", "the string \"NaN\""}},
        BadCosts{"NaN literal", [](nlohmann::json&) { return std::string("{\"format\": NaN}"); }, {"not JSON"}},
        BadCosts{"wrong type",
                 [](nlohmann::json& j) {
                   j["source"]["cpu_mhz"] = "fast";
                   return dump(j);
                 },
                 {"key \"source.cpu_mhz\"", "the string \"fast\""}},
        BadCosts{"low above the median",
                 [](nlohmann::json& j) {
                   j["figures"]["walk_ns"]["low"] = 30;
                   return dump(j);
                 },
                 {"key \"figures.walk_ns.low\"", "at most ns"}},
        BadCosts{"runs not whole",
                 [](nlohmann::json& j) {
                   j["figures"]["full_flush_ns"]["runs"] = 2.5;
                   return dump(j);
                 },
                 {"key \"figures.full_flush_ns.runs\"", "whole number"}},
        BadCosts{"sweep not an array",
                 [](nlohmann::json& j) {
                   j["sweep"] = nlohmann::json::object();
                   return dump(j);
                 },
                 {"key \"sweep\"", "expected an array"}},
        BadCosts{"sweep row without pages",
                 [](nlohmann::json& j) {
                   j["sweep"][1].erase("pages");
                   return dump(j);
                 },
                 {"key \"sweep[1].pages\"", "missing"}},
        BadCosts{"sweep figure negative",
                 [](nlohmann::json& j) {
                   j["sweep"][0]["split_ns"]["ns"] = -1.0;
                   j["sweep"][0]["split_ns"]["low"] = nullptr;
                   return dump(j);
                 },
                 {"key \"sweep[0].split_ns.ns\"", ">= 0"}}),
    [](const ::testing::TestParamInfo<BadCosts>& p) {
      std::string n;
      for (const char c : std::string(p.param.what)) n += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
      return n;
    });

TEST(CostsFile, AnUnreadableFileIsAnErrorNamingIt) {
  try {
    (void)load_costs("/nonexistent/x.costs");
    FAIL();
  } catch (const CostsError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/x.costs: cannot read"), std::string::npos) << e.what();
  }
}

// The probe's pattern through the model (COSTS_FORMAT.md "sweep"): the
// split pages cost the model more at the largest working set (more 4K
// entries than the second level holds), and the ratio is model / probe.
TEST(ModelVsProbe, RunsTheProbesSweepThroughTheModelAndGivesTheRatio) {
  const CostsFile f = load_costs(kFixture);
  const std::vector<model::tlb::SweepPoint> sweep = sweep_points(f);
  const model::tlb::TlbConfig tlb = model::tlb::TlbConfig::haswell_like();
  const model::tlb::ProbeCheckResult r = model::tlb::check_against_probe(tlb, sweep, *f.cpu_mhz, f.walk.ns, 1);
  ASSERT_EQ(r.points.size(), 3u);
  EXPECT_NE(r.how.find("2450 MHz"), std::string::npos) << r.how;
  for (const model::tlb::ProbeCheck& p : r.points) {
    std::cout << "  " << p.pages << " pages: model " << p.model_extra_ns << " ns, probe " << p.probe_extra_ns
              << " ns, ratio " << p.ratio << "; walks/access split " << p.walks_split << " control "
              << p.walks_control << "\n";
    EXPECT_DOUBLE_EQ(p.ratio, p.model_extra_ns / p.probe_extra_ns);
  }
  const model::tlb::ProbeCheck& large = r.points.back();
  EXPECT_EQ(large.pages, 65536u);
  EXPECT_DOUBLE_EQ(large.probe_extra_ns, 345.0 - 326.5);
  EXPECT_GT(large.walks_split, large.walks_control);
  EXPECT_GT(large.model_extra_ns, 0.0);
  // Without cpu_mhz the model's walks are priced at walk_ns.
  const model::tlb::ProbeCheckResult w = model::tlb::check_against_probe(tlb, sweep, 0, 20.0, 1);
  EXPECT_NE(w.how.find("walk_ns"), std::string::npos);
  const model::tlb::ProbeCheck& lw = w.points.back();
  EXPECT_DOUBLE_EQ(lw.model_extra_ns, (lw.walks_split - lw.walks_control) * 20.0);
  // A probe that saw no extra time has no ratio.
  const model::tlb::SweepPoint flat[] = {{64, 300.0, 300.0}};
  EXPECT_TRUE(std::isnan(model::tlb::check_against_probe(tlb, flat, 2450, 20, 1).points[0].ratio));
}

}  // namespace
}  // namespace exmem::sim
