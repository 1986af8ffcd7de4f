// `exmem sim`, run as a real process: the JSON report of every policy, the
// default scenario, scenario files and their overrides, trace replay, the
// progress bar, and clear errors for bad input.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "command.hpp"

namespace {

using exmem::cli_test::CommandResult;
using exmem::cli_test::read_all;
using exmem::cli_test::run;
using exmem::cli_test::TempFile;

TEST(SimCommand, PolicyAllReportsEveryPolicyOnTheSameWorkloadWithTlbCost) {
  CommandResult r = run("sim --ram 4GiB --events 20000 --seed 7 --policy all --json", false);
  ASSERT_EQ(r.status, 0) << r.out;
  auto j = nlohmann::json::parse(r.out);
  ASSERT_TRUE(j["runs"].is_array());
  std::set<std::string> names;
  for (const auto& run : j["runs"]) {
    names.insert(run["policy"].get<std::string>());
    // A workload step may finish a few events past the count asked.
    EXPECT_GE(run["events"].get<std::uint64_t>(), 20000u);
    EXPECT_LE(run["events"].get<std::uint64_t>(), 21000u);
    EXPECT_GT(run["events_per_second"].get<double>(), 0.0);
    EXPECT_GT(run["peak_rss_bytes"].get<std::uint64_t>(), 0u);
    const auto& dm = run["direct_map"];
    // The leaves cover the RAM the model mapped: 4 GiB less the PCI hole's share.
    std::uint64_t kb = dm["DirectMap4k"].get<std::uint64_t>() + dm["DirectMap2M"].get<std::uint64_t>() +
                       dm["DirectMap1G"].get<std::uint64_t>();
    EXPECT_GE(kb, 3u * 1024 * 1024) << run["policy"];
    EXPECT_LE(kb, 4u * 1024 * 1024) << run["policy"];
    for (const char* k : {"direct_map_level2_splits", "direct_map_level3_splits", "direct_map_level2_collapses",
                          "direct_map_level3_collapses"})
      EXPECT_TRUE(dm.contains(k)) << k;
    const auto& cost = run["tlb_cost"];
    double miss = cost["miss_rate"].get<double>();
    EXPECT_GE(miss, 0.0);
    EXPECT_LE(miss, 1.0);
    EXPECT_GT(cost["accesses"].get<std::uint64_t>(), 0u);
    EXPECT_LE(cost["misses"].get<std::uint64_t>(), cost["accesses"].get<std::uint64_t>());
    EXPECT_GE(cost["shootdown_us"].get<double>(), 0.0);
  }
  EXPECT_EQ(names.size(), 8u);
  EXPECT_TRUE(names.count("upstream"));
  EXPECT_TRUE(names.count("secretmem-pool-reserve"));
}

TEST(SimCommand, SameSeedGivesTheSameResult) {
  CommandResult a = run("sim --ram 2GiB --events 20000 --seed 3 --json", false);
  CommandResult b = run("sim --ram 2GiB --events 20000 --seed 3 --json", false);
  ASSERT_EQ(a.status, 0);
  ASSERT_EQ(b.status, 0);
  auto ja = nlohmann::json::parse(a.out), jb = nlohmann::json::parse(b.out);
  EXPECT_EQ(ja["runs"][0]["direct_map"], jb["runs"][0]["direct_map"]);
  EXPECT_EQ(ja["runs"][0]["tlb_cost"]["misses"], jb["runs"][0]["tlb_cost"]["misses"]);
}

TEST(SimCommand, UnknownPolicyIsAnErrorListingTheKnownOnes) {
  CommandResult r = run("sim --policy nope", true);
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.out.find("nope"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("upstream"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("freetype-unmapped"), std::string::npos) << r.out;
}

TEST(SimCommand, BadSizesModesAndPresetsAreErrorsNamingTheOption) {
  for (const char* bad : {"--ram 12XB", "--ram 0GiB", "--collapse sometimes", "--tlb pentium", "--events -5"}) {
    CommandResult r = run(std::string("sim ") + bad, true);
    EXPECT_NE(r.status, 0) << bad;
    std::string opt(bad, std::string(bad).find(' '));
    EXPECT_NE(r.out.find(opt), std::string::npos) << bad << ": " << r.out;
  }
}

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}


const std::string kSmallTrace = std::string(EXMEM_SOURCE_DIR) + "/tests/data/small.trace";

TEST(SimCommand, WithoutArgumentsRunsTheDefaultScenarioWithEveryPolicyAndPrintsTheTable) {
  CommandResult r = run("sim", false);
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(r.out.rfind("exmem sim: scenario default: 64 GiB RAM, 16 CPUs", 0), 0u) << r.out.substr(0, 300);
  // The policy row names every policy the model has.
  CommandResult all = run("sim --ram 1GiB --events 1 --policy all --json", false);
  ASSERT_EQ(all.status, 0);
  const auto j = nlohmann::json::parse(all.out);
  std::istringstream table(r.out);
  std::string policy_row;
  for (std::string line; std::getline(table, line);)
    if (line.rfind("  policy ", 0) == 0) policy_row = line;
  ASSERT_FALSE(policy_row.empty()) << r.out;
  for (const auto& run_json : j["runs"]) {
    EXPECT_NE(policy_row.find(std::string(" ").append(run_json["policy"].get<std::string>())), std::string::npos)
        << run_json["policy"] << " missing from: " << policy_row;
  }
  EXPECT_NE(r.out.find("direct_map_level2_splits"), std::string::npos);
  EXPECT_NE(r.out.find("events per second"), std::string::npos);
}

TEST(SimCommand, PrintScenarioShowsTheBuiltInDefaultScenarioWhichIsTheShippedFile) {
  CommandResult r = run("sim --print-scenario", false);
  ASSERT_EQ(r.status, 0);
  EXPECT_EQ(r.out, slurp(std::string(EXMEM_SOURCE_DIR) + "/scenarios/default.toml"));
}

TEST(SimCommand, AShippedScenarioIsFoundByItsName) {
  CommandResult r = run("sim --scenario key-server --print-scenario", false);
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(r.out, slurp(std::string(EXMEM_SOURCE_DIR) + "/scenarios/key-server.toml"));
}

TEST(SimCommand, AScenarioFileSetsTheRunAndOptionsGivenOverrideIt) {
  TempFile f("small.toml",
             "description = \"a small test machine\"\n[machine]\nram = \"2GiB\"\ncpus = 3\ncollapse = \"none\"\n"
             "[workload]\nevents = 5000\nseed = 9\n[secrets]\nmax_pages = 8\n"
             "[run]\npolicies = [\"upstream\", \"secretmem-pool-reserve\"]\n");
  CommandResult a = run("sim --scenario " + f.path() + " --json", false);
  ASSERT_EQ(a.status, 0) << a.out;
  auto ja = nlohmann::json::parse(a.out);
  EXPECT_EQ(ja["machine"]["ram"], "2 GiB");
  EXPECT_EQ(ja["machine"]["cpus"], 3);
  EXPECT_EQ(ja["machine"]["collapse"], "none");
  EXPECT_EQ(ja["workload"]["seed"], 9);
  EXPECT_EQ(ja["workload"]["max_secret_file_pages"], 8);
  EXPECT_EQ(ja["scenario"]["description"], "a small test machine");
  const std::string stem = std::filesystem::path(f.path()).stem().string();
  EXPECT_EQ(ja["scenario"]["name"], stem);
  ASSERT_EQ(ja["runs"].size(), 2u);
  EXPECT_EQ(ja["runs"][0]["policy"], "upstream");
  EXPECT_EQ(ja["runs"][1]["policy"], "secretmem-pool-reserve");
  for (const auto& run_json : ja["runs"]) {
    EXPECT_EQ(run_json["scenario"], stem);
    EXPECT_GE(run_json["events"].get<std::uint64_t>(), 5000u);
  }

  CommandResult b = run("sim --scenario " + f.path() + " --ram 4GiB --policy upstream --seed 3 --json", false);
  ASSERT_EQ(b.status, 0) << b.out;
  auto jb = nlohmann::json::parse(b.out);
  EXPECT_EQ(jb["machine"]["ram"], "4 GiB");  // overridden
  EXPECT_EQ(jb["machine"]["cpus"], 3);       // from the file
  EXPECT_EQ(jb["workload"]["seed"], 3);
  EXPECT_EQ(jb["workload"]["events"], 5000);
  ASSERT_EQ(jb["runs"].size(), 1u);
  EXPECT_EQ(jb["runs"][0]["policy"], "upstream");
}

TEST(SimCommand, AMalformedScenarioIsAnErrorWithFileLineAndColumn) {
  TempFile f("typo.toml", "[machine]\nrma = \"2GiB\"\n");
  CommandResult r = run("sim --scenario " + f.path(), true);
  EXPECT_EQ(r.status, 2) << r.out;
  EXPECT_NE(r.out.find(f.path() + ":2:1: unknown key \"rma\" in [machine]"), std::string::npos) << r.out;
  CommandResult missing = run("sim --scenario no-such-scenario", true);
  EXPECT_EQ(missing.status, 2);
  EXPECT_NE(missing.out.find("no-such-scenario"), std::string::npos) << missing.out;
  EXPECT_NE(missing.out.find("key-server"), std::string::npos) << missing.out;  // the shipped ones are listed
}

TEST(SimCommand, SamplesTheDirectMapFiftyTimesWithSplitsAndATlbMissRate) {
  CommandResult r = run("sim --ram 2GiB --events 20000 --policy upstream --json", false);
  ASSERT_EQ(r.status, 0);
  const auto j = nlohmann::json::parse(r.out);
  const auto& samples = j["runs"][0]["direct_map_over_time"];
  EXPECT_GE(samples.size(), 45u);
  EXPECT_LE(samples.size(), 55u);
  std::uint64_t last_events = 0;
  std::uint64_t last_splits = 0;
  for (const auto& s : samples) {
    EXPECT_GT(s["events"].get<std::uint64_t>(), last_events);
    last_events = s["events"].get<std::uint64_t>();
    // A counter, as in /proc/vmstat: it only grows.
    EXPECT_GE(s["direct_map_level2_splits"].get<std::uint64_t>(), last_splits);
    last_splits = s["direct_map_level2_splits"].get<std::uint64_t>();
    EXPECT_TRUE(s.contains("direct_map_level3_splits"));
    const double miss = s["tlb_miss_rate"].get<double>();
    EXPECT_GE(miss, 0.0);
    EXPECT_LE(miss, 1.0);
  }
  EXPECT_EQ(samples.back()["events"], j["runs"][0]["events"]);
  EXPECT_EQ(samples.back()["direct_map_level2_splits"], j["runs"][0]["direct_map"]["direct_map_level2_splits"]);
}

TEST(SimCommand, ReplaysATraceOnEveryPolicyWithItsSecretPages) {
  std::size_t events = 0;
  std::size_t secrets = 0;
  std::istringstream in(slurp(kSmallTrace));
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("# secret ", 0) == 0) ++secrets;
    if (!line.empty() && line[0] != '#') ++events;
  }
  ASSERT_GT(events, 0u);
  ASSERT_GT(secrets, 0u);
  CommandResult r = run("sim --trace " + kSmallTrace + " --policy all --json", false);
  ASSERT_EQ(r.status, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["workload"]["name"], "trace");
  EXPECT_EQ(j["workload"]["trace"]["secret_pages"], secrets);
  EXPECT_EQ(j["machine"]["cpus"], 2);  // the recorded machine's
  EXPECT_EQ(j["machine"]["ram"], "4 GiB");
  EXPECT_EQ(j["runs"].size(), 8u);
  EXPECT_EQ(j["scenario"]["name"], "small");  // the trace's, not the default scenario's
  EXPECT_EQ(j["scenario"]["description"], "a kmem trace of `secret_holder --hold 8`");
  for (const auto& run_json : j["runs"]) {
    EXPECT_EQ(run_json["scenario"], "small");
    const auto& t = run_json["trace"];
    EXPECT_EQ(t["events"], events) << run_json["policy"];
    EXPECT_EQ(t["secret_faults"], secrets) << run_json["policy"];
    EXPECT_EQ(t["unknown_lines"], 0);
    EXPECT_EQ(t["frees_unknown"], 1);           // the page from before the recording
    EXPECT_EQ(t["allocs_failed_in_trace"], 1);  // the THP the kernel could not find
    EXPECT_EQ(run_json["secretmem"]["faults"], secrets);
    EXPECT_FALSE(run_json["direct_map_over_time"].empty());
    EXPECT_TRUE(run_json["direct_map_over_time"].back().contains("tlb_miss_rate"));
  }
  CommandResult table = run("sim --trace " + kSmallTrace + " --policy upstream", false);
  ASSERT_EQ(table.status, 0);
  EXPECT_EQ(table.out.rfind("exmem sim: trace " + kSmallTrace + " replayed on 4 GiB RAM", 0), 0u) << table.out;
  EXPECT_NE(table.out.find("secret pages faulted"), std::string::npos);
}

TEST(SimCommand, ATraceIsComparedWithTheRealKernelsDeltasDuringItsRecording) {
  CommandResult r = run("sim --trace " + kSmallTrace + " --policy upstream --json", false);
  ASSERT_EQ(r.status, 0) << r.out;
  const auto c = nlohmann::json::parse(r.out)["calibration"];
  ASSERT_TRUE(c.is_object()) << r.out.substr(0, 400);
  EXPECT_EQ(c["secret_pages"], 8);
  EXPECT_EQ(c["secret_regions_2m"], 1);  // eight neighbouring pfns
  // The trace's start and end lines: one level-2 split, DirectMap4k +2048 kB.
  EXPECT_EQ(c["real"]["direct_map_level2_splits"], 1);
  EXPECT_EQ(c["real"]["DirectMap4k_delta_kb"], 2048);
  EXPECT_EQ(c["real"]["regions_split_before"], 104400 / 2048);
  EXPECT_EQ(c["model_at_real_pfns"]["direct_map_level2_splits"], 1);
  EXPECT_EQ(c["model_at_real_pfns"]["pfns_outside_ram"], 0);
  EXPECT_EQ(c["explained"], true);
  EXPECT_EQ(c["upstream_replay"]["secret_faults"], 8);
  CommandResult table = run("sim --trace " + kSmallTrace + " --policy upstream", false);
  ASSERT_EQ(table.status, 0);
  EXPECT_NE(table.out.find("against the real kernel (the command's secret pages: 8, the 2 MiB regions they lie in: 1)"),
            std::string::npos)
      << table.out;
  EXPECT_NE(table.out.find("(consistent)"), std::string::npos) << table.out;
  // A synthetic run has no such block.
  CommandResult synthetic = run("sim --ram 1GiB --events 100 --policy upstream --json", false);
  ASSERT_EQ(synthetic.status, 0);
  EXPECT_FALSE(nlohmann::json::parse(synthetic.out).contains("calibration"));
}

// With the trace's "# direct_map" snapshots the comparison is exact: the
// model starts from the real start map and its end map is compared region by
// region (trace_calibration.hpp's RegionComparison). small.trace's machine:
// [0, 3) and [4, 5) GiB, 1 GiB leaves; its secret pages lie in region 0x9f6.
TEST(SimCommand, ATraceWithDirectMapSnapshotsIsComparedRegionByRegion) {
  std::string text = slurp(kSmallTrace);
  // Written as `exmem trace record` writes them (trace_format.hpp): region 0 (the ISA range) and
  // 600 split, GiBs 1 and 4 of 2 MiB leaves, GiB 2 a 1 GiB leaf, the PCI hole not mapped; at the
  // end also 0x9f6 (the secret pages) and 100 (the kernel's own) split.
  const std::string snapshots =
      "# direct_map start regions=2560 from=0 map=1K599M1K423M512G512.512M\n"
      "# direct_map end regions=2560 from=0 map=1K99M1K499M1K423M512G512.502M1K9M\n";
  const std::size_t footer = text.find("# exit_status:");
  ASSERT_NE(footer, std::string::npos);
  TempFile f("snap.trace", text.substr(0, footer) + snapshots + text.substr(footer));
  CommandResult r = run("sim --trace " + f.path() + " --policy upstream --json", false);
  ASSERT_EQ(r.status, 0) << r.out;
  const auto c = nlohmann::json::parse(r.out)["calibration"];
  const auto& x = c["direct_map_regions"];
  ASSERT_TRUE(x.is_object()) << c.dump();
  EXPECT_EQ(x["split_in_model_to_match_start"], 1);      // region 600
  EXPECT_EQ(x["gib_split_in_model_to_match_start"], 2);  // GiBs 1 and 4 were 2 MiB leaves
  EXPECT_EQ(x["regions_compared"], 2048);
  EXPECT_EQ(x["split_both"], 3);  // 0, 600, 0x9f6
  EXPECT_EQ(x["split_model_only"], 0);
  EXPECT_EQ(x["split_kernel_only"], 1);
  EXPECT_EQ(x["first_kernel_only"], nlohmann::json::array({100}));
  EXPECT_EQ(x["leaf1g_both"], 512);
  EXPECT_EQ(x["leaf1g_model_only"], 0);
  EXPECT_EQ(x["kernel_new_splits"], 2);
  EXPECT_EQ(x["kernel_new_splits_with_secret"], 1);
  EXPECT_EQ(x["explained"], true);
  EXPECT_EQ(c["model_at_real_pfns"]["direct_map_level2_splits"], 1);
  EXPECT_EQ(c["model_at_real_pfns"]["direct_map_level3_splits"], 0);  // GiB 4 was split before
  EXPECT_FALSE(c.contains("direct_map_snapshot"));
  CommandResult table = run("sim --trace " + f.path() + " --policy upstream", false);
  ASSERT_EQ(table.status, 0);
  EXPECT_NE(table.out.find("exact, region by region"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("split only in the kernel, 0 of them holding a secret page"), std::string::npos)
      << table.out;
  EXPECT_NE(table.out.find("(exact)"), std::string::npos) << table.out;
  EXPECT_EQ(table.out.find("(consistent)"), std::string::npos) << table.out;  // no upper-bound wording

  // A recording that could not read the map says why, and keeps the counters' comparison.
  TempFile g("refused.trace", text.substr(0, footer) +
                                  "# direct_map unavailable no_kcore: /proc/kcore does not exist\n" +
                                  text.substr(footer));
  CommandResult refused = run("sim --trace " + g.path() + " --policy upstream", false);
  ASSERT_EQ(refused.status, 0);
  EXPECT_NE(refused.out.find("no direct-map snapshot in the trace (no_kcore: /proc/kcore does not exist)"),
            std::string::npos)
      << refused.out;
  EXPECT_NE(refused.out.find("(consistent)"), std::string::npos) << refused.out;
  CommandResult old = run("sim --trace " + kSmallTrace + " --policy upstream --json", false);
  EXPECT_EQ(nlohmann::json::parse(old.out)["calibration"]["direct_map_snapshot"], "not recorded");
}

TEST(SimCommand, ATraceWithUnknownLinesIsReplayedAndTheLinesAreReportedWithTheirNumbers) {
  std::string text = slurp(kSmallTrace);
  const std::size_t first_event = text.find("\n ") + 1;  // after the header
  text.insert(first_event, "this line is not an event\n");
  TempFile f("unknown.trace", text);
  std::size_t line_no = 1;
  for (std::size_t i = 0; i < first_event; ++i) line_no += text[i] == '\n';
  CommandResult r = run("sim --trace " + f.path() + " --policy upstream", true);
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("1 lines not understood"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(std::string("line ").append(std::to_string(line_no)).append(": ")), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("this line is not an event"), std::string::npos) << r.out;
  // The warning on stderr starts a line of its own, never inside one of stdout's.
  const std::size_t warning = r.out.find("exmem sim: " + f.path());
  ASSERT_NE(warning, std::string::npos) << r.out;
  EXPECT_TRUE(warning == 0 || r.out[warning - 1] == '\n') << r.out.substr(0, warning + 80);
}

// The lines of `text` longer than `columns`.
std::vector<std::string> lines_longer_than(const std::string& text, std::size_t columns) {
  std::vector<std::string> long_lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.size() > columns) long_lines.push_back(line);
  }
  return long_lines;
}

TEST(SimCommand, TheTableFitsANarrowTerminalAndIsWholeOnAWideOne) {
  const std::string args = "sim --ram 2GiB --events 20000 --seed 5 --policy all";
  ::unsetenv("COLUMNS");
  CommandResult piped = run(args, false);  // no terminal, no COLUMNS: the whole table
  ASSERT_EQ(piped.status, 0) << piped.out;
  EXPECT_FALSE(lines_longer_than(piped.out, 200).empty()) << "the eight policies side by side";
  ::setenv("COLUMNS", "400", 1);
  CommandResult wide = run(args, false);
  ::setenv("COLUMNS", "100", 1);
  CommandResult narrow = run(args, false);
  ::unsetenv("COLUMNS");
  ASSERT_EQ(wide.status, 0);
  ASSERT_EQ(narrow.status, 0);
  const auto too_long = lines_longer_than(narrow.out, 100);
  EXPECT_TRUE(too_long.empty()) << too_long.front();
  // Every policy and every figure is still there: the rows repeat once per group of policies.
  std::size_t policy_rows = 0;
  std::istringstream in(narrow.out);
  for (std::string line; std::getline(in, line);) policy_rows += line.rfind("  policy ", 0) == 0;
  EXPECT_GE(policy_rows, 3u) << narrow.out;
  for (const char* name : {"upstream", "secretmem-pool-fallback", "freetype-unmapped", "unmapped-alloc"}) {
    EXPECT_NE(narrow.out.find(name), std::string::npos) << name;
  }
  EXPECT_NE(narrow.out.find("  TLB misses per 1000 kernel accesses"), std::string::npos);
  // Wide enough, it is the table a pipe gets (but for the timings, which differ run to run).
  std::istringstream a(piped.out), b(wide.out);
  std::string la, lb;
  std::size_t lines = 0;
  while (std::getline(a, la) && std::getline(b, lb)) {
    ++lines;
    if (la.find("per second") != std::string::npos || la.find("seconds") != std::string::npos ||
        la.find("peak RSS") != std::string::npos) {
      continue;
    }
    EXPECT_EQ(la, lb);
  }
  EXPECT_GT(lines, 30u);
}

TEST(SimCommand, DecimalPfnsReplayToo) {
  TempFile f("decimal.trace",
             "  a-1 [000] .... 1.0: mm_page_alloc: page=ffffea0000068ac0 pfn=6699 order=0 migratetype=0 "
             "gfp_flags=GFP_KERNEL\n  a-1 [001] .... 1.1: mm_page_free: page=ffffea0000068ac0 pfn=6699 order=0\n");
  CommandResult r = run("sim --trace " + f.path() + " --ram 1GiB --cpus 2 --policy upstream --json", false);
  ASSERT_EQ(r.status, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["runs"][0]["trace"]["allocs_replayed"], 1);
  EXPECT_EQ(j["runs"][0]["trace"]["frees_replayed"], 1);
}

TEST(SimCommand, TraceErrorsNameTheFile) {
  CommandResult missing = run("sim --trace /nonexistent/x.trace", true);
  EXPECT_EQ(missing.status, 2);
  EXPECT_NE(missing.out.find("/nonexistent/x.trace: cannot open"), std::string::npos) << missing.out;
  TempFile f("empty.trace", "# exmem-trace 1\nnothing here\n");
  CommandResult empty = run("sim --trace " + f.path() + " --ram 1GiB --policy upstream", true);
  EXPECT_EQ(empty.status, 2);
  EXPECT_NE(empty.out.find(f.path() + ": no kmem page event"), std::string::npos) << empty.out;
  EXPECT_NE(empty.out.find("line 2"), std::string::npos) << empty.out;
}

TEST(SimCommand, TheProgressBarShowsPolicyPercentAndRateAndIsClearedAtTheEnd) {
  CommandResult r = run("sim --ram 2GiB --events 50000 --policy upstream --progress always", true);
  ASSERT_EQ(r.status, 0) << r.out;
  const std::size_t bar = r.out.find("\r\033[Kexmem sim: upstream");
  ASSERT_NE(bar, std::string::npos) << r.out.substr(0, 400);
  EXPECT_NE(r.out.find("%  ", bar), std::string::npos);
  EXPECT_NE(r.out.find("events/s", bar), std::string::npos);
  // Cleared before the table is printed.
  EXPECT_LT(r.out.rfind("\r\033[K"), r.out.find("exmem sim: scenario"));
  // Not on a pipe unless asked.
  CommandResult quiet = run("sim --ram 2GiB --events 50000 --policy upstream", true);
  ASSERT_EQ(quiet.status, 0);
  EXPECT_EQ(quiet.out.find('\r'), std::string::npos);
  CommandResult bad = run("sim --progress sometimes", true);
  EXPECT_EQ(bad.status, 2);
  EXPECT_NE(bad.out.find("--progress \"sometimes\""), std::string::npos) << bad.out;
}

TEST(SimCommand, HelpShowsExamplesForSimAndTrace) {
  for (const char* cmd : {"sim --help", "trace --help", "trace record --help"}) {
    CommandResult r = run(cmd, true);
    EXPECT_EQ(r.status, 0) << cmd;
    EXPECT_NE(r.out.find("Examples:"), std::string::npos) << cmd << ": " << r.out;
  }
  CommandResult sim = run("sim --help", true);
  EXPECT_NE(sim.out.find("--scenario"), std::string::npos);
  EXPECT_NE(sim.out.find("--trace"), std::string::npos);
}

}  // namespace


TEST(SimCommand, OutWritesTheReportWithMapsOfEveryRunAndLeavesThePrintedJsonAlone) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("exmem-sim-out-" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  CommandResult r = run("sim --ram 4GiB --events 20000 --policy upstream --policy unmapped-alloc --json --out " +
                            dir.string(),
                        false);
  ASSERT_EQ(r.status, 0) << r.out;
  const auto printed = nlohmann::json::parse(r.out);
  for (const auto& run_json : printed["runs"]) EXPECT_FALSE(run_json.contains("region_map"));

  const auto written = nlohmann::json::parse(read_all(dir / "report.json"));
  ASSERT_EQ(written["runs"].size(), 2u);
  for (std::size_t i = 0; i < written["runs"].size(); ++i) {
    const auto& run_json = written["runs"][i];
    ASSERT_TRUE(run_json.contains("region_map")) << run_json["policy"];
    EXPECT_GT(run_json["region_map"]["start"]["cells"].get<std::uint64_t>(), 0u);
    EXPECT_GT(run_json["region_map"]["end"]["cells"].get<std::uint64_t>(), 0u);
    EXPECT_EQ(run_json["direct_map"], printed["runs"][i]["direct_map"]);
  }
  const std::string csv = read_all(dir / "runs.csv");
  EXPECT_NE(csv.find("upstream"), std::string::npos);
  EXPECT_NE(csv.find("unmapped-alloc"), std::string::npos);
  EXPECT_FALSE(read_all(dir / "over_time.csv").empty());
  const std::string html = read_all(dir / "index.html");
  EXPECT_NE(html.find("<canvas"), std::string::npos);
  std::filesystem::remove_all(dir);
}

TEST(SimCommand, OutIntoAPathThatCannotBeADirectoryIsAnErrorNamingIt) {
  CommandResult r = run("sim --ram 4GiB --events 100 --policy upstream --out /proc/version/report", true);
  EXPECT_EQ(r.status, 2) << r.out;
  EXPECT_NE(r.out.find("--out \"/proc/version/report\""), std::string::npos) << r.out;
}
