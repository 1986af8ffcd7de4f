// `exmem study --slurm` through a real Slurm cluster (tests/slurm/cluster.hpp):
// the job array the command writes is submitted with sbatch, its tasks store
// every point, and the report merged from them equals the local run's.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "cluster.hpp"
#include "study_files.hpp"

namespace {

using exmem::slurm_test::run_shell;
using exmem::slurm_test::shell_quote;
using exmem::slurm_test::SlurmCluster;
namespace fs = std::filesystem;

using exmem::study_test::slurp;
using exmem::study_test::without_timing;

TEST(StudyOnSlurm, TheJobArraysMergedReportEqualsTheLocalRuns) {
  if (const std::string why = SlurmCluster::skip_reason(); !why.empty()) GTEST_SKIP() << why;
  SlurmCluster cluster;
  ASSERT_EQ(cluster.start(), "");
  const fs::path d = cluster.dir() / "study";
  fs::create_directories(d);
  std::ofstream(d / "base.toml") << "[machine]\nram = \"1GiB\"\ncpus = 2\n[workload]\nevents = 3000\n";
  std::ofstream(d / "s.toml") << R"(description = "through Slurm"
scenario = "base.toml"
policies = ["upstream", "secretmem-pmd-pool"]
seeds = 2
[[axis]]
setting = "machine.cpus"
values = [2, 4, 8]
)";
  const std::string exmem = std::string(EXMEM_BIN) + " study " + shell_quote((d / "s.toml").string()) + " --progress never ";
  auto r = run_shell(exmem + "--out " + shell_quote((d / "local").string()));
  ASSERT_EQ(r.status, 0) << r.out;
  r = run_shell(exmem + "--slurm " + shell_quote((d / "job").string()) + " --batch 5 --out " +
                shell_quote((d / "shared").string()));
  ASSERT_EQ(r.status, 0) << r.out;
  ASSERT_NE(r.out.find("12 points in 3 array tasks of 5"), std::string::npos) << r.out;
  r = cluster.run("timeout 240 sbatch --wait " + shell_quote((d / "job" / "study.sbatch").string()));
  ASSERT_EQ(r.status, 0) << r.out << "\ntask logs:\n" << run_shell("cat " + shell_quote((d / "job" / "logs").string()) + "/*").out;
  std::size_t logs = 0;
  for (const auto& e : fs::directory_iterator(d / "job" / "logs")) logs += e.path().extension() == ".out";
  EXPECT_EQ(logs, 3u);
  r = run_shell(exmem + "--merge " + shell_quote((d / "shared").string()));
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(slurp(d / "shared" / "summary.csv"), slurp(d / "local" / "summary.csv"));
  EXPECT_EQ(without_timing(slurp(d / "shared" / "results.csv")), without_timing(slurp(d / "local" / "results.csv")));
  const auto shared = nlohmann::json::parse(slurp(d / "shared" / "study.json"));
  const auto local = nlohmann::json::parse(slurp(d / "local" / "study.json"));
  ASSERT_EQ(shared["points"].size(), 12u);
  for (std::size_t i = 0; i < 12; ++i) EXPECT_EQ(shared["points"][i]["metrics"], local["points"][i]["metrics"]) << i;
  EXPECT_EQ(shared["summary"], local["summary"]);
}

}  // namespace
