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
