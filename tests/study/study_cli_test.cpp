// `exmem study` run as a real process: every point run and stored, the
// report written, an interrupted or changed study resumed with only what is
// missing, --point and --merge giving the local run's report, the Slurm
// array's script run task by task, and bad input refused with its line.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "command.hpp"
#include "study_files.hpp"

namespace exmem::cli_test {
namespace {

namespace fs = std::filesystem;

constexpr const char* kBase = R"([machine]
ram = "1GiB"
cpus = 2
[workload]
events = 3000
)";

constexpr const char* kStudy = R"(description = "test study"
scenario = "base.toml"
policies = ["upstream", "unmapped-alloc"]
seeds = 2
[[axis]]
setting = "machine.cpus"
values = [2, 4]
[report]
metrics = ["direct_map_level2_splits", "secret_faults"]
)";

using exmem::study_test::slurp;
using exmem::study_test::without_timing;

class StudyCommand : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("exmem-study-cli-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    write("base.toml", kBase);
    write("s.toml", kStudy);
  }
  void TearDown() override { fs::remove_all(dir_); }
  void write(const std::string& name, const std::string& text) { std::ofstream(dir_ / name) << text; }
  CommandResult study(const std::string& args) {
    return run("study " + (dir_ / "s.toml").string() + " --progress never " + args, true);
  }
  std::string out(const std::string& name) { return (dir_ / name).string(); }
  std::size_t stored_points(const std::string& name) {
    std::size_t n = 0;
    for (const auto& e : fs::directory_iterator(dir_ / name / "points")) n += e.path().extension() == ".json";
    return n;
  }
  fs::path dir_;
};

TEST_F(StudyCommand, RunsEveryPointWritesTheReportAndResumesOnlyWhatIsMissing) {
  CommandResult r = study("--out " + out("o") + " --jobs 2");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("8 points: 8 run in"), std::string::npos) << r.out;
  for (const char* f : {"index.html", "study.json", "results.csv", "summary.csv"}) {
    EXPECT_TRUE(fs::is_regular_file(dir_ / "o" / f)) << f;
  }
  const std::string results = slurp(dir_ / "o" / "results.csv");
  EXPECT_EQ(std::count(results.begin(), results.end(), '\n'), 9);
  const nlohmann::json doc = nlohmann::json::parse(slurp(dir_ / "o" / "study.json"));
  EXPECT_EQ(doc["points"].size(), 8u);
  for (const auto& p : doc["points"]) EXPECT_GT(p["metrics"]["secret_faults"].get<double>(), 0) << p.dump();
  // The same study again: nothing runs, the report is the same.
  r = study("--out " + out("o"));
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("8 points: 0 run in"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("8 stored before"), std::string::npos) << r.out;
  EXPECT_EQ(slurp(dir_ / "o" / "results.csv"), results);
  // A value added to an axis: only its points run.
  write("s.toml", std::string(kStudy).replace(std::string(kStudy).find("[2, 4]"), 6, "[2, 4, 8]"));
  r = study("--out " + out("o"));
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("12 points: 4 run in"), std::string::npos) << r.out;
  EXPECT_EQ(stored_points("o"), 12u);
  // --force runs them all.
  r = study("--out " + out("o") + " --force");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("12 points: 12 run in"), std::string::npos) << r.out;
}

TEST_F(StudyCommand, AResultThatIsNotThePointsIsRunAgainWithAMessage) {
  ASSERT_EQ(study("--out " + out("o")).status, 0);
  fs::path victim;
  for (const auto& e : fs::directory_iterator(dir_ / "o" / "points")) victim = e.path();
  std::ofstream(victim) << "{\"format\": \"exmem-study-point/1\"";  // cut short
  const CommandResult r = study("--out " + out("o"));
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find(victim.string() + " is not its result"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("8 points: 1 run in"), std::string::npos) << r.out;
}

TEST_F(StudyCommand, AnInterruptedStudyResumesWhereItStopped) {
  // Longer points, so that the study is stopped part-way.
  write("base.toml", std::string(kBase).replace(std::string(kBase).find("3000"), 4, "400000"));
  const std::string cmd = std::string(EXMEM_BIN) + " study " + (dir_ / "s.toml").string() + " --progress never --jobs 1 --out " + out("o");
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::setpgid(0, 0);
    ::execl("/bin/sh", "sh", "-c", ("exec " + cmd + " 2>/dev/null").c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  // Stop it (the whole process group, as Ctrl-C would) once two points are stored.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (std::chrono::steady_clock::now() < deadline) {
    std::error_code ec;
    if (fs::exists(dir_ / "o" / "points", ec) && stored_points("o") >= 2) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ::kill(-pid, SIGINT);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the study finished before it was interrupted; make its points longer";
  const std::size_t before = stored_points("o");
  ASSERT_GE(before, 2u);
  ASSERT_LT(before, 8u);
  const CommandResult r = study("--out " + out("o") + " --jobs 2");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find(std::to_string(8 - before) + " run in"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(std::to_string(before) + " stored before"), std::string::npos) << r.out;
  EXPECT_EQ(stored_points("o"), 8u);
  for (const auto& e : fs::directory_iterator(dir_ / "o" / "points")) EXPECT_EQ(e.path().extension(), ".json") << e.path();
}

TEST_F(StudyCommand, PointsRunApartAndMergedGiveTheLocalRunsReport) {
  ASSERT_EQ(study("--out " + out("local")).status, 0);
  ASSERT_EQ(study("--point 0-2,7 --out " + out("shared")).status, 0);
  // Missing points: the merge names them and writes nothing.
  CommandResult r = study("--merge " + out("shared"));
  EXPECT_EQ(r.status, 2) << r.out;
  EXPECT_NE(r.out.find("4 of the study's 8 points have no stored result"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("(points 3, 4, 5, 6;"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(dir_ / "shared" / "index.html"));
  ASSERT_EQ(study("--point 3-6 --out " + out("shared")).status, 0);
  r = study("--merge " + out("shared"));
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(slurp(dir_ / "shared" / "summary.csv"), slurp(dir_ / "local" / "summary.csv"));
  EXPECT_EQ(without_timing(slurp(dir_ / "shared" / "results.csv")), without_timing(slurp(dir_ / "local" / "results.csv")));
}

TEST_F(StudyCommand, TheSlurmArraysTasksStoreEveryPoint) {
  const CommandResult r = study("--slurm " + out("job") + " --batch 3 --out " + out("shared") + " --sbatch-option=--mem=1G");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("8 points in 3 array tasks of 3"), std::string::npos) << r.out;
  const std::string script = slurp(dir_ / "job" / "study.sbatch");
  EXPECT_NE(script.find("#SBATCH --array=0-2\n"), std::string::npos) << script;
  EXPECT_NE(script.find("#SBATCH --mem=1G\n"), std::string::npos) << script;
  // Each task as Slurm would run it.
  for (int task = 0; task < 3; ++task) {
    const std::string cmd = "SLURM_ARRAY_TASK_ID=" + std::to_string(task) + " bash " + (dir_ / "job" / "study.sbatch").string() + " 2>&1";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    EXPECT_EQ(stored_points("shared"), std::min<std::size_t>(8, 3 * (task + 1)));
  }
  ASSERT_EQ(study("--merge " + out("shared")).status, 0);
  EXPECT_TRUE(fs::is_regular_file(dir_ / "shared" / "index.html"));
}

TEST_F(StudyCommand, BadInputIsRefusedNamingItAndNothingRuns) {
  write("s.toml", std::string(kStudy) + "[[axis]]\nsetting = \"secrets.share\"\nvalues = [0.1, 2]\n");
  CommandResult r = study("--out " + out("o"));
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.out.find("s.toml:12:16: [secrets] share: expected a number from 0 to 1, got an integer 2"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(dir_ / "o"));
  write("s.toml", kStudy);
  r = study("--point 9 --out " + out("o"));
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.out.find("--point \"9\": point 9 is past the study's last (7)"), std::string::npos) << r.out;
  r = study("--merge " + out("o") + " --point 1");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.out.find("separate ways to run"), std::string::npos) << r.out;
  // An option with a line break would add a line of its own to the script.
  r = study("--slurm " + out("job") + " --sbatch-option=\"$(printf '%s\\n%s' --mem=1G 'echo hi')\"");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.out.find("--sbatch-option \"--mem=1G\necho hi\": expected one sbatch option"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(dir_ / "job" / "study.sbatch"));
  r = run("study " + out("missing.toml"), true);
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.out.find("exmem study: " + out("missing.toml") + ": cannot read the study file: No such file or directory"),
            std::string::npos)
      << r.out;
}

}  // namespace
}  // namespace exmem::cli_test
