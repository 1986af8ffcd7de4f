// `exmem sim --jobs N`, run as a real process: the policies run at once give
// the report of a run one after another, in the same order (the JSON, the
// table, the files of --out), apart from the figures of the host's clock and
// memory; bad values of --jobs are refused naming the option; a run that
// fails is named by its policy, as one after another; the progress line is
// one line over all the runs, and nothing with --progress never.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "command.hpp"

namespace {

using exmem::cli_test::CommandResult;
using exmem::cli_test::read_all;
using exmem::cli_test::run;
using exmem::cli_test::TempDir;
using exmem::cli_test::TempFile;

const std::string kSmall = "sim --policy all --ram 1GiB --events 20000 --seed 1";
const std::string kSmallTrace = std::string(EXMEM_SOURCE_DIR) + "/tests/data/small.trace";

// The figures of a run that measure the host, not the model: its wall times
// and the process's peak RSS (with runs at once, that of them all).
const std::vector<std::string> kHostFigures = {"events_per_second", "boot_seconds", "fill_seconds",
                                               "run_seconds",       "peak_rss_bytes"};

nlohmann::json without_host_figures(nlohmann::json j) {
  for (auto& r : j["runs"]) {
    for (const std::string& k : kHostFigures) {
      EXPECT_TRUE(r.contains(k)) << k;
      r.erase(k);
    }
    EXPECT_TRUE(r["tlb_cost"].contains("seconds"));
    r["tlb_cost"].erase("seconds");
    if (r.contains("trace")) r["trace"].erase("replay_seconds");
  }
  return j;
}

std::vector<std::string> policies_of(const nlohmann::json& j) {
  std::vector<std::string> out;
  for (const auto& r : j["runs"]) out.push_back(r["policy"].get<std::string>());
  return out;
}

// The table's lines, less those of the host's figures.
std::string without_host_lines(const std::string& table) {
  std::istringstream in(table);
  std::string out;
  for (std::string line; std::getline(in, line);) {
    if (line.find("events per second") != std::string::npos || line.find("seconds") != std::string::npos ||
        line.find("peak RSS") != std::string::npos)
      continue;
    out += line + "\n";
  }
  return out;
}

// runs.csv less its events_per_second column (the one host figure it has).
std::string without_rate_column(const std::string& csv) {
  std::istringstream in(csv);
  std::string out;
  std::size_t column = std::string::npos;
  for (std::string line; std::getline(in, line);) {
    std::vector<std::string> cells;
    std::stringstream ls(line);
    for (std::string c; std::getline(ls, c, ',');) cells.push_back(c);
    if (column == std::string::npos) {
      for (std::size_t i = 0; i < cells.size(); ++i) {
        if (cells[i] == "events_per_second") column = i;
      }
      EXPECT_NE(column, std::string::npos) << line;
    }
    if (column < cells.size()) cells.erase(cells.begin() + static_cast<std::ptrdiff_t>(column));
    for (const std::string& c : cells) out += c + ",";
    out += "\n";
  }
  return out;
}


TEST(SimJobs, ManyAtOnceGiveTheJsonOfOneAfterAnotherInTheSameOrder) {
  const CommandResult serial = run(kSmall + " --jobs 1 --json", false);
  const CommandResult parallel = run(kSmall + " --jobs 4 --json", false);
  ASSERT_EQ(serial.status, 0) << serial.out;
  ASSERT_EQ(parallel.status, 0) << parallel.out;
  const auto a = nlohmann::json::parse(serial.out);
  const auto b = nlohmann::json::parse(parallel.out);
  ASSERT_EQ(a["runs"].size(), 8u);
  EXPECT_EQ(policies_of(a), policies_of(b));
  EXPECT_EQ(without_host_figures(a), without_host_figures(b));
  // More runs at once than policies, and the default (one per CPU), too.
  for (const char* jobs : {" --jobs 64", ""}) {
    const CommandResult c = run(kSmall + jobs + " --json", false);
    ASSERT_EQ(c.status, 0) << jobs << ": " << c.out;
    EXPECT_EQ(without_host_figures(a), without_host_figures(nlohmann::json::parse(c.out))) << jobs;
  }
}

TEST(SimJobs, ManyAtOnceGiveTheTableOfOneAfterAnother) {
  const CommandResult serial = run(kSmall + " --jobs 1", false);
  const CommandResult parallel = run(kSmall + " --jobs 3", false);
  ASSERT_EQ(serial.status, 0) << serial.out;
  ASSERT_EQ(parallel.status, 0) << parallel.out;
  ASSERT_NE(serial.out.find("peak RSS"), std::string::npos) << serial.out;
  EXPECT_EQ(without_host_lines(serial.out), without_host_lines(parallel.out));
}

TEST(SimJobs, ATraceReplayedByManyAtOnceGivesTheJsonOfOneAfterAnother) {
  const std::string args = "sim --trace " + kSmallTrace + " --policy all --json";
  const CommandResult serial = run(args + " --jobs 1", false);
  const CommandResult parallel = run(args + " --jobs 4", false);
  ASSERT_EQ(serial.status, 0) << serial.out;
  ASSERT_EQ(parallel.status, 0) << parallel.out;
  const auto a = nlohmann::json::parse(serial.out);
  const auto b = nlohmann::json::parse(parallel.out);
  ASSERT_GT(a["runs"].size(), 1u);
  ASSERT_TRUE(a["runs"][0].contains("trace"));
  EXPECT_EQ(without_host_figures(a), without_host_figures(b));
}

TEST(SimJobs, ManyAtOnceWriteTheReportFilesOfOneAfterAnother) {
  TempDir one("one");
  TempDir four("four");
  ASSERT_EQ(run(kSmall + " --jobs 1 --out " + one.path.string(), false).status, 0);
  ASSERT_EQ(run(kSmall + " --jobs 4 --out " + four.path.string(), false).status, 0);
  // The samples along each run: no host figure, byte for byte.
  const std::string over_time = read_all(one.path / "over_time.csv");
  ASSERT_FALSE(over_time.empty());
  EXPECT_EQ(over_time, read_all(four.path / "over_time.csv"));
  const std::string runs = read_all(one.path / "runs.csv");
  ASSERT_FALSE(runs.empty());
  EXPECT_EQ(without_rate_column(runs), without_rate_column(read_all(four.path / "runs.csv")));
  // The report with its region maps.
  const auto a = nlohmann::json::parse(read_all(one.path / "report.json"));
  const auto b = nlohmann::json::parse(read_all(four.path / "report.json"));
  ASSERT_EQ(a["runs"].size(), 8u);
  ASSERT_TRUE(a["runs"][0].contains("region_map"));
  EXPECT_EQ(policies_of(a), policies_of(b));
  EXPECT_EQ(without_host_figures(a), without_host_figures(b));
  EXPECT_FALSE(read_all(four.path / "index.html").empty());
}

TEST(SimJobs, JobsThatAreNotAWholeNumberFrom1To1024AreRefusedNamingTheOption) {
  for (const char* bad : {"0", "-3", "abc", "2x", "1025", "1.5", "\"\""}) {
    const CommandResult r = run(std::string("sim --ram 1GiB --events 10 --policy upstream --jobs ") + bad, true);
    EXPECT_EQ(r.status, 2) << bad << ": " << r.out;
    EXPECT_EQ(r.out.rfind("exmem sim: --jobs \"", 0), 0u) << bad << ": " << r.out;
    EXPECT_NE(r.out.find("expected the number of policies to run at once, a whole number from 1 to 1024"),
              std::string::npos)
        << bad << ": " << r.out;
  }
  const CommandResult help = run("sim --help", true);
  EXPECT_NE(help.out.find("--jobs N"), std::string::npos) << help.out;
}

// A trace without a kmem page event fails in its replay, under every policy:
// the error is the first policy's, as one after another, and names it.
TEST(SimJobs, AFailedRunIsNamedByItsPolicyAsOneAfterAnother) {
  TempFile f("jobs-empty.trace", "# exmem-trace 1\nnothing here\n");
  const std::string args = "sim --trace " + f.path() + " --ram 1GiB --policy all";
  const auto first = nlohmann::json::parse(run(kSmall + " --events 10 --jobs 1 --json", false).out)["runs"][0]["policy"]
                         .get<std::string>();
  const CommandResult serial = run(args + " --jobs 1", true);
  const CommandResult parallel = run(args + " --jobs 4", true);
  EXPECT_EQ(serial.status, 2) << serial.out;
  EXPECT_EQ(parallel.status, 2) << parallel.out;
  EXPECT_EQ(serial.out.rfind("exmem sim: the run of policy \"" + first + "\" failed: --trace: " + f.path() +
                                 ": no kmem page event",
                             0),
            0u)
      << serial.out;
  EXPECT_EQ(parallel.out, serial.out);
}

TEST(SimJobs, TheProgressLineIsOneOverAllTheRunsAndNeverPrintsNothing) {
  const std::string args = "sim --policy all --ram 1GiB --events 50000 --jobs 3";
  const CommandResult always = run(args + " --progress always", true);
  ASSERT_EQ(always.status, 0) << always.out;
  const std::size_t line = always.out.find("\r\033[Kexmem sim: ");
  ASSERT_NE(line, std::string::npos) << always.out.substr(0, 400);
  EXPECT_NE(always.out.find(" policies done, ", line), std::string::npos) << always.out.substr(0, 400);
  EXPECT_NE(always.out.find("(3 at once)", line), std::string::npos);
  EXPECT_NE(always.out.find("events/s", line), std::string::npos);
  // Cleared before the table is printed.
  EXPECT_LT(always.out.rfind("\r\033[K"), always.out.find("exmem sim: scenario"));
  const CommandResult never = run(args + " --progress never", true);
  ASSERT_EQ(never.status, 0) << never.out;
  EXPECT_EQ(never.out.find('\r'), std::string::npos);
  EXPECT_EQ(never.out.find("\033"), std::string::npos);
  EXPECT_EQ(never.out.find("policies done"), std::string::npos);
}

}  // namespace
