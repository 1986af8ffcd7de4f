// `exmem sim`'s options, run as a real process: each is an override of the
// scenario's setting of the same name, checked against the setting's range,
// and the scenario is checked as a whole after the overrides, so a
// combination the file alone did not have (a smaller --ram, another
// --policy) is an error naming the option, not a failure of the run.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "command.hpp"

namespace {

using exmem::cli_test::CommandResult;
using exmem::cli_test::run;
using exmem::cli_test::TempFile;

// The command fails with status 2 and one line "exmem sim: <message>".
std::string error_of(const std::string& args) {
  const CommandResult r = run("sim " + args, true);
  EXPECT_EQ(r.status, 2) << args << ": " << r.out;
  EXPECT_EQ(r.out.rfind("exmem sim: ", 0), 0u) << args << ": " << r.out;
  return r.out;
}

void expect_contains(const std::string& text, const std::vector<std::string>& parts) {
  for (const std::string& p : parts) EXPECT_NE(text.find(p), std::string::npos) << "missing \"" << p << "\" in: " << text;
}

TEST(SimOptions, ASmallerRamThanTheScenarioGuestsNeedIsAnErrorNamingTheOption) {
  TempFile f("options-guests.toml", "[machine]\nram = \"8GiB\"\n[workload]\nevents = 100\n[guests]\nshare = 0.1\ncount = 4\n"
                           "size = \"1GiB\"\n");
  ASSERT_EQ(run("sim --scenario " + f.path() + " --policy upstream --json", false).status, 0);
  expect_contains(error_of("--scenario " + f.path() + " --ram 3GiB"),
                  {"--ram \"3GiB\": [guests]: expected count x size to fit in the RAM (3 GiB), got 4 x 1 GiB"});
}

TEST(SimOptions, ARamTheMachineCannotBootWithIsAnErrorNamingTheOption) {
  expect_contains(error_of("--ram 3074MiB --policy upstream --events 10"),
                  {"--ram \"3074MiB\": the machine cannot boot", "above the PCI hole"});
}

TEST(SimOptions, ARamBelowTwiceTheScenarioCmaIsAnErrorNamingTheOptionAndTheKey) {
  TempFile f("options-cma.toml", "[machine]\nram = \"8GiB\"\ncma = \"1GiB\"\n[run]\npolicies = [\"secretmem-pool-reserve\"]\n");
  expect_contains(error_of("--scenario " + f.path() + " --ram 1100MiB --events 10"),
                  {"--ram \"1100MiB\": [machine] cma: expected at most half the RAM (550 MiB), got 1 GiB"});
}

TEST(SimOptions, APolicyWhoseAreaDoesNotFitIsAnErrorNamingTheOption) {
  // Half of 4 GiB as the secretmem= area is allowed, and boots under a policy
  // that takes no area, but a pool policy's area does not fit above the PCI hole.
  ASSERT_EQ(run("sim --ram 4GiB --secretmem 2GiB --policy upstream --events 10 --json", false).status, 0);
  expect_contains(error_of("--ram 4GiB --secretmem 2GiB --policy secretmem-pool-reserve --events 10"),
                  {"--policy \"secretmem-pool-reserve\": the machine cannot boot: the CMA area (2 GiB: the "
                   "secretmem area of secretmem-pool-reserve)"});
}

TEST(SimOptions, TheScenarioSecretmemAreaIsCheckedAgainstTheRamGiven) {
  TempFile f("options-smem.toml", "[machine]\nram = \"8GiB\"\nsecretmem = \"3GiB\"\n[workload]\nevents = 100\n");
  expect_contains(error_of("--scenario " + f.path() + " --ram 4GiB"),
                  {"--ram \"4GiB\": [machine] secretmem: expected at most half the RAM (2 GiB), got 3 GiB"});
  expect_contains(error_of("--ram 4GiB --secretmem 3GiB"),
                  {"--secretmem \"3GiB\": expected at most half the RAM (2 GiB), got 3 GiB"});
}

TEST(SimOptions, EachOptionIsCheckedAgainstItsSettingsRange) {
  struct Bad {
    std::string args;
    std::string says;
  };
  for (const Bad& b : std::vector<Bad>{
           {"--ram 12XB", "--ram \"12XB\": expected a size from 1 GiB to 4 TiB, a multiple of 2 MiB"},
           {"--cpus 0", "--cpus \"0\": expected a whole number from 1 to 4096"},
           {"--cpus x", "--cpus \"x\": expected a whole number from 1 to 4096"},
           {"--scan-rate 0", "--scan-rate \"0\": expected a whole number from 1 to 1048576"},
           {"--events -5", "--events \"-5\": expected a whole number of events from 0 to 1000000000000"},
           {"--seed 1x", "--seed \"1x\": expected a whole number from 0 to 18446744073709551615"},
           {"--secretmem 3MiB", "--secretmem \"3MiB\": expected a size from 2 MiB to 2 TiB, a multiple of 2 MiB"},
           {"--pool-fail maybe", "--pool-fail \"maybe\": unknown answer of a depleted pool; expected one of oom, sigbus"},
           {"--collapse sometimes", "--collapse \"sometimes\": unknown collapse mode; expected one of none, rox-only"},
           {"--collapse on-restor", "did you mean \"on-restore\""},
           {"--tlb pentium", "--tlb \"pentium\": unknown TLB preset; expected one of haswell, zen2, recent-intel"},
           {"--policy upstream --policy nope", "--policy \"nope\": unknown policy; expected one of freetype-unmapped"},
       }) {
    SCOPED_TRACE(b.args);
    // (every case fails before a run; --events 10 keeps a regression short)
    const bool events = b.args.find("--events") != std::string::npos;
    expect_contains(error_of(events ? b.args : b.args + " --events 10"), {b.says});
  }
}

TEST(SimOptions, OptionsSetTheSettingsOfTheSameName) {
  const CommandResult r = run(
      "sim --ram 2GiB --cpus 3 --no-gbpages --collapse scanner --scan-rate 7 --tlb zen2 --secretmem 64MiB "
      "--pool-fail sigbus --events 50 --seed 18446744073709551615 --wp-page-tables --policy secretmem-pmd-pool --json",
      false);
  ASSERT_EQ(r.status, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["machine"]["ram"], "2 GiB");
  EXPECT_EQ(j["machine"]["cpus"], 3);
  EXPECT_EQ(j["machine"]["direct_gbpages"], false);
  EXPECT_EQ(j["machine"]["collapse"], "scanner");
  EXPECT_EQ(j["machine"]["scan_rate"], 7);
  EXPECT_EQ(j["machine"]["tlb"], "zen2");
  EXPECT_EQ(j["machine"]["secretmem_bytes"], 64ull << 20);
  EXPECT_EQ(j["machine"]["pool_fail"], "sigbus");
  EXPECT_EQ(j["workload"]["events"], 50);
  EXPECT_EQ(j["workload"]["seed"], 18446744073709551615ull);
  EXPECT_EQ(j["workload"]["wp_page_tables"], true);
  ASSERT_EQ(j["runs"].size(), 1u);
  EXPECT_EQ(j["runs"][0]["policy"], "secretmem-pmd-pool");
}

TEST(SimOptions, EventsReplaceAScenarioDurationInSeconds) {
  TempFile f("options-seconds.toml", "[workload]\nseconds = 2\nevents_per_second = 50\n[run]\npolicies = [\"upstream\"]\n");
  const CommandResult file = run("sim --scenario " + f.path() + " --ram 1GiB --json", false);
  ASSERT_EQ(file.status, 0) << file.out;
  EXPECT_EQ(nlohmann::json::parse(file.out)["workload"]["events"], 100);
  const CommandResult option = run("sim --scenario " + f.path() + " --ram 1GiB --events 30 --json", false);
  ASSERT_EQ(option.status, 0) << option.out;
  const auto j = nlohmann::json::parse(option.out);
  EXPECT_EQ(j["workload"]["events"], 30);
  EXPECT_EQ(j["workload"]["seconds"], 0.0);
}

TEST(SimOptions, HelpShowsEveryOptionWithItsRangeAndUnit) {
  const CommandResult r = run("sim --help", false);
  ASSERT_EQ(r.status, 0);
  expect_contains(r.out, {"--ram SIZE", "1 GiB to 4 TiB, a multiple of 2 MiB; units KiB, MiB, GiB, TiB",
                          "--cpus N", "1 to 4096", "--no-gbpages", "--collapse MODE", "none, rox-only, on-restore, scanner",
                          "--scan-rate N", "1 to 1048576", "--tlb PRESET", "haswell, zen2, recent-intel",
                          "--secretmem SIZE", "at most half the RAM", "default: RAM / 256", "--pool-fail oom|sigbus",
                          "--events N", "0 to 1000000000000", "--seed S", "--wp-page-tables", "--policy NAME",
                          "secretmem-pool-reserve, unmapped-alloc, upstream, all"});
}

}  // namespace

namespace {

const std::string kCostsFixture = std::string(EXMEM_SOURCE_DIR) + "/tests/data/sample.costs.json";

// --costs: a bad file is an error naming the option, the file, the key and what was expected.
TEST(SimOptions, ABadCostsFileIsAnErrorNamingTheFileTheKeyAndWhatWasExpected) {
  std::ifstream in(kCostsFixture);
  nlohmann::json j = nlohmann::json::parse(in);
  j["figures"]["walk_ns"]["ns"] = -3;
  j["figures"]["walk_ns"]["low"] = nullptr;
  TempFile negative("negative.costs", j.dump());
  expect_contains(error_of("--ram 4GiB --policy upstream --events 100 --costs " + negative.path()),
                  {"--costs: " + negative.path() + ": key \"figures.walk_ns.ns\": expected a number >= 0, got -3"});
  j["figures"]["walk_ns"]["ns"] = 18.5;
  j["figures"].erase("kernel_access_ns");
  TempFile missing("missing.costs", j.dump());
  expect_contains(error_of("--ram 4GiB --policy upstream --events 100 --costs " + missing.path()),
                  {missing.path() + ": key \"figures.kernel_access_ns\": missing"});
  TempFile format("format.costs", "{\"format\": \"exmem-costs/9\"}");
  expect_contains(error_of("--ram 4GiB --policy upstream --events 100 --costs " + format.path()),
                  {"key \"format\": expected \"exmem-costs/1\", got the string \"exmem-costs/9\""});
  expect_contains(error_of("--ram 4GiB --policy upstream --events 100 --costs /nonexistent.costs"),
                  {"--costs: /nonexistent.costs: cannot read"});
}

// The report says which figures priced the kernel slowdown and where from,
// and with a costs file checks the model against the probe's sweep.
TEST(SimOptions, TheReportSaysWhichCostFiguresItUsedAndTheSlowdownWithItsInputs) {
  const CommandResult builtin = run("sim --ram 4GiB --policy upstream --events 20000 --json", false);
  ASSERT_EQ(builtin.status, 0) << builtin.out;
  const auto b = nlohmann::json::parse(builtin.out);
  EXPECT_EQ(b["costs"]["source"], "built-in constants");
  EXPECT_TRUE(b["costs"]["file"].is_null());
  EXPECT_FALSE(b["costs"].contains("model_vs_probe"));
  const auto& slow = b["runs"][0]["tlb_cost"]["slowdown"];
  for (const char* k : {"percent", "walks_split", "walks_unsplit", "stream_accesses", "run_accesses", "walk_ns",
                        "kernel_access_ns", "extra_walk_ns", "shootdown_ns", "kernel_ns", "figures_source"}) {
    EXPECT_TRUE(slow.contains(k)) << k;
  }
  EXPECT_EQ(slow["figures_source"], "built-in constants");
  EXPECT_DOUBLE_EQ(slow["kernel_access_ns"].get<double>(), 250.0);
  EXPECT_GE(slow["percent"].get<double>(), 0.0);
  EXPECT_TRUE(b["runs"][0]["tlb_cost"]["stream"].contains("source"));

  const CommandResult file = run("sim --ram 4GiB --policy upstream --events 20000 --json --costs " + kCostsFixture, false);
  ASSERT_EQ(file.status, 0) << file.out;
  const auto f = nlohmann::json::parse(file.out);
  EXPECT_EQ(f["costs"]["file"], kCostsFixture);
  EXPECT_EQ(f["costs"]["kernel"], "6.18.0-test");
  EXPECT_EQ(f["costs"]["hypervisor"], "KVM");
  EXPECT_EQ(f["costs"]["model_vs_probe"]["points"].size(), 3u);
  EXPECT_DOUBLE_EQ(f["runs"][0]["tlb_cost"]["slowdown"]["walk_ns"].get<double>(), 18.5);
  EXPECT_DOUBLE_EQ(f["runs"][0]["tlb_cost"]["slowdown"]["kernel_access_ns"].get<double>(), 310.0);

  const CommandResult table = run("sim --ram 4GiB --policy upstream --events 20000 --costs " + kCostsFixture, false);
  ASSERT_EQ(table.status, 0) << table.out;
  expect_contains(table.out, {"kernel cost figures: " + kCostsFixture + " (probe 2026-12-03T07:40:00Z, kernel 6.18.0-test",
                              "model vs probe (haswell-like", "65536 pages", "kernel slowdown % (estimate)"});
  const CommandResult plain = run("sim --ram 4GiB --policy upstream --events 20000", false);
  expect_contains(plain.out, {"kernel cost figures: built-in constants", "kernel slowdown % (estimate)"});
}

// [kernel_access] settings reach the stream; a run with no live page of the
// weighted kinds says its stream fell back to all of RAM.
TEST(SimOptions, KernelAccessSettingsReachTheStreamAndAFallbackIsReported) {
  TempFile f("kernel-access.toml",
             "[workload]\nevents = 2000\n[kernel_access]\naccesses = 3000\naccesses_per_event = 10\n"
             "weight_page_cache = 0\nweight_slab_reclaimable = 0\nweight_kernel = 0\nweight_page_tables = 0\n"
             "weight_user = 0.001\n[run]\npolicies = [\"upstream\"]\n");
  const CommandResult r = run("sim --ram 4GiB --scenario " + f.path() + " --json", false);
  ASSERT_EQ(r.status, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  const auto& cost = j["runs"][0]["tlb_cost"];
  EXPECT_EQ(cost["accesses"], 3000);
  EXPECT_EQ(cost["slowdown"]["accesses_per_event"], 10);
  EXPECT_EQ(j["costs"]["kernel_access"]["weights"]["user"], 0.001);
  // A machine with no page cache and only page cache weighted falls back.
  TempFile g("kernel-access-empty.toml",
             "[workload]\nevents = 10\nfill = 0\npage_cache_share = 0\n[kernel_access]\nweight_page_cache = 1\n"
             "weight_slab_reclaimable = 0\nweight_kernel = 0\nweight_page_tables = 0\n[run]\npolicies = [\"upstream\"]\n");
  const CommandResult e = run("sim --ram 4GiB --scenario " + g.path(), false);
  ASSERT_EQ(e.status, 0) << e.out;
  expect_contains(e.out, {"upstream: kernel access stream over all of RAM: the run has no live kernel pages"});
}

}  // namespace
