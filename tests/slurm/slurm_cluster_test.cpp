// The Slurm test cluster itself (tests/slurm/cluster and cluster.hpp): a real
// munged, slurmctld and slurmd on this machine run a job array, and stop()
// leaves nothing of theirs running; the harness's refusals say why.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cluster.hpp"

namespace {

using exmem::slurm_test::CommandResult;
using exmem::slurm_test::run_shell;
using exmem::slurm_test::shell_quote;
using exmem::slurm_test::SlurmCluster;
namespace fs = std::filesystem;

std::string read_file(const fs::path& p) {
  std::ifstream in(p);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Whether `pid` runs (exists and is no zombie).
bool alive(pid_t pid) {
  std::string stat;
  std::getline(std::ifstream("/proc/" + std::to_string(pid) + "/stat"), stat);
  const auto paren = stat.rfind(") ");
  return !stat.empty() && paren != std::string::npos && stat.compare(paren + 2, 1, "Z") != 0;
}

// Sets an environment variable for this test's child commands, restored after.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old, had_ = true;
    setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (had_)
      setenv(name_, old_.c_str(), 1);
    else
      unsetenv(name_);
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::string old_;
  bool had_ = false;
};

// A cluster started for each test; skipped (with the reason) when not root.
class SlurmClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const std::string why = SlurmCluster::skip_reason(); !why.empty()) GTEST_SKIP() << why;
    const std::string why = cluster_.start();
    ASSERT_EQ(why, "") << "the test cluster did not start (a missing program is a failure, not a skip: "
                          "install the package named above, e.g. with scripts/deps test)";
  }

  SlurmCluster cluster_;
};

// sbatch --wait --array=0-3 runs all four tasks to the end, each with its own
// SLURM_ARRAY_TASK_ID, and returns 0: what `exmem study --slurm` relies on.
TEST_F(SlurmClusterTest, ArrayJobRunsEveryTaskWithItsIdAndWaitReturnsWhenAllEnded) {
  const fs::path out = cluster_.dir() / "out";
  fs::create_directories(out);
  const fs::path script = cluster_.dir() / "job.sh";
  std::ofstream(script) << "#!/bin/sh\n"
                        << "echo \"$SLURM_ARRAY_TASK_ID\" > " << shell_quote((out / "task-").string())
                        << "\"$SLURM_ARRAY_TASK_ID\"\n";
  const auto t0 = std::chrono::steady_clock::now();
  const CommandResult r = cluster_.run("timeout 120 sbatch --wait --array=0-3 --chdir=" + shell_quote(out.string()) +
                                       " --output=" + shell_quote((out / "slurm-%A_%a.out").string()) + " " +
                                       shell_quote(script.string()));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(r.status, 0) << r.out << read_file(cluster_.dir() / "slurmctld.log");
  EXPECT_NE(r.out.find("Submitted batch job"), std::string::npos) << r.out;
  for (int k = 0; k < 4; ++k) {
    const fs::path f = out / ("task-" + std::to_string(k));
    ASSERT_TRUE(fs::exists(f)) << f << " missing; sbatch said: " << r.out;
    EXPECT_EQ(read_file(f), std::to_string(k) + "\n") << f;
  }
  EXPECT_FALSE(fs::exists(out / "task-4"));
  EXPECT_FALSE(fs::exists(out / "task-"));  // no task ran without an array id
  std::printf("sbatch --wait --array=0-3 took %.1f s\n", seconds);
}

// stop() cancels a running job and ends munged, slurmctld and slurmd: none of
// the processes the cluster started still runs, and a second stop() is a no-op.
TEST_F(SlurmClusterTest, StopEndsTheDaemonsAndTheRunningJobs) {
  const std::vector<pid_t> daemons = cluster_.daemon_pids();
  ASSERT_EQ(daemons.size(), 3U) << "munged, slurmctld and slurmd pid files";
  for (const pid_t pid : daemons) EXPECT_TRUE(cluster_.runs_here(pid)) << pid;

  const fs::path job_pid = cluster_.dir() / "job.pid";
  const CommandResult r = cluster_.run("sbatch --output=/dev/null --chdir=" + shell_quote(cluster_.dir().string()) +
                                       " --wrap=" + shell_quote("echo $$ > " + job_pid.string() + "; exec sleep 300"));
  ASSERT_EQ(r.status, 0) << r.out;
  pid_t sleeper = 0;
  for (int i = 0; i < 300 && sleeper == 0; ++i) {  // 30 s
    std::ifstream(job_pid) >> sleeper;
    if (sleeper == 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_GT(sleeper, 0) << "the job never started: " << cluster_.run("squeue").out;
  EXPECT_TRUE(alive(sleeper));

  ASSERT_EQ(cluster_.stop(), "");
  for (const pid_t pid : daemons) EXPECT_FALSE(cluster_.runs_here(pid)) << "daemon " << pid << " still runs";
  EXPECT_FALSE(alive(sleeper)) << "the job's process " << sleeper << " outlived the cluster";
  EXPECT_EQ(run_shell("pgrep -x slurmstepd | while read -r p; do readlink /proc/$p/cwd; done | grep -F " +
                      shell_quote(cluster_.dir().string()))
                .out,
            "")
      << "a slurmstepd of this cluster still runs";
  EXPECT_EQ(cluster_.stop(), "") << "a second stop is a no-op";
}

// The harness refuses to start without root, saying so (the fixture skips then).
TEST(SlurmHarnessTest, RefusesWithoutRootAndSaysWhy) {
  char tmpl[] = "/tmp/exmem-slurm-test-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string as_nobody = geteuid() == 0 ? "setpriv --reuid=65534 --regid=65534 --clear-groups " : "";
  const CommandResult r = run_shell(as_nobody + shell_quote(SlurmCluster::harness()) + " start " + tmpl);
  fs::remove_all(tmpl);
  EXPECT_EQ(r.status, 2) << r.out;
  EXPECT_NE(r.out.find("needs root"), std::string::npos) << r.out;
}

// As root, a missing program fails the start with the Debian package to install
// named (the fixture turns that into a test failure, not a skip), and nothing
// is started.
TEST(SlurmHarnessTest, MissingProgramNamesThePackageToInstall) {
  if (const std::string why = SlurmCluster::skip_reason(); !why.empty()) GTEST_SKIP() << why;
  SlurmCluster cluster;
  std::string why;
  {
    const ScopedEnv path("PATH", "/usr/bin:/bin");  // no /usr/sbin: no munged, slurmctld nor slurmd
    why = cluster.start();
  }
  EXPECT_NE(why, "");
  EXPECT_NE(why.find("exited 3"), std::string::npos) << why;
  EXPECT_NE(why.find("install the Debian package(s) munge slurmctld slurmd"), std::string::npos) << why;
  EXPECT_FALSE(fs::exists(cluster.dir() / "munged.pid")) << "nothing is started when a program is missing";
}

// A port in use is named, and nothing is left running.
TEST(SlurmHarnessTest, PortInUseIsNamed) {
  if (const std::string why = SlurmCluster::skip_reason(); !why.empty()) GTEST_SKIP() << why;
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(listen(fd, 1), 0);
  socklen_t len = sizeof a;
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len), 0);
  const int port = ntohs(a.sin_port);

  SlurmCluster cluster;
  std::string why;
  {
    const ScopedEnv ports("EXMEM_SLURM_PORTS", std::to_string(port) + " " + std::to_string(port == 65535 ? 1024 : port + 1));
    why = cluster.start();
  }
  close(fd);
  EXPECT_NE(why.find("port " + std::to_string(port) + " is in use"), std::string::npos) << why;
  EXPECT_FALSE(fs::exists(cluster.dir() / "munged.pid")) << "nothing is started when a port is in use";
}

// A test process that dies without stopping its cluster (a crash, ctest's
// timeout) leaves nothing running: the harness's watcher sees the owner gone
// and stops munged, slurmctld and slurmd.
TEST(SlurmHarnessTest, ClusterOfAKilledOwnerIsStoppedByTheWatcher) {
  if (const std::string why = SlurmCluster::skip_reason(); !why.empty()) GTEST_SKIP() << why;
  char tmpl[] = "/tmp/exmem-slurm-test-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const fs::path report = fs::path(tmpl) / "report";
  std::fflush(nullptr);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // The owner: starts a cluster, says where, and is killed before it stops it.
    auto* cluster = new SlurmCluster;  // never deleted: as in a crash
    std::ofstream out(report);
    out << cluster->start() << "\n" << cluster->dir().string() << "\n";
    for (const pid_t pid : cluster->daemon_pids()) out << pid << "\n";
    out.close();
    pause();
    _exit(0);
  }
  std::vector<pid_t> daemons;
  fs::path dir;
  for (int i = 0; i < 600; ++i) {  // 60 s
    std::ifstream in(report);
    std::string why, path;
    if (std::getline(in, why) && std::getline(in, path)) {
      ASSERT_EQ(why, "");
      dir = path;
      for (pid_t pid; in >> pid;) daemons.push_back(pid);
      if (daemons.size() == 3) break;
      daemons.clear();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_EQ(daemons.size(), 3U) << "the owner's cluster did not start";
  for (const pid_t pid : daemons) EXPECT_TRUE(SlurmCluster::runs_in(pid, dir)) << pid;
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  bool any = true;
  for (int i = 0; i < 200 && any; ++i) {  // 20 s
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    any = false;
    for (const pid_t pid : daemons) any = any || SlurmCluster::runs_in(pid, dir);
  }
  for (const pid_t pid : daemons) EXPECT_FALSE(SlurmCluster::runs_in(pid, dir)) << "daemon " << pid << " outlived its owner";
  EXPECT_NE(read_file(dir / "watch.log").find("stopping it"), std::string::npos);
  run_shell(shell_quote(SlurmCluster::harness()) + " stop " + shell_quote(dir.string()));  // should anything be left
  fs::remove_all(dir);
  fs::remove_all(tmpl);
}

}  // namespace
