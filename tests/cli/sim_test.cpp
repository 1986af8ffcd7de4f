// `exmem sim`, run as a real process: the JSON report of every policy, and
// clear errors for bad input.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cstdio>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

namespace {

struct CommandResult {
  int status = -1;
  std::string out;
};

CommandResult run(const std::string& args, bool with_stderr) {
  CommandResult r;
  std::string cmd = std::string(EXMEM_BIN) + " " + args + (with_stderr ? " 2>&1" : " 2>/dev/null");
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) r.out.append(buf, n);
  int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}

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

}  // namespace
