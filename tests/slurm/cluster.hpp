// A real single-node Slurm cluster for a test: munged, slurmctld and slurmd
// started on this machine by tests/slurm/cluster in a temporary folder of their
// own, and ended (jobs cancelled, daemons stopped) when the SlurmCluster goes.
//
//   if (auto why = SlurmCluster::skip_reason(); !why.empty()) GTEST_SKIP() << why;
//   SlurmCluster cluster;
//   ASSERT_EQ(cluster.start(), "");           // else the harness's message and logs
//   auto r = cluster.run("sbatch --wait --array=0-3 job.sh");
//
// Not root is a reason to skip; a program missing as root is a failure whose
// message names the Debian package to install (start() returns it). Should the
// test process die without stopping the cluster, the harness's watcher stops
// it within a second or two (the folder is kept then, logs and all).
#pragma once

#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>
#include <vector>

#ifndef EXMEM_SLURM_HARNESS
#error "EXMEM_SLURM_HARNESS must name tests/slurm/cluster (tests/slurm/CMakeLists.txt sets it)"
#endif

namespace exmem::slurm_test {

struct CommandResult {
  int status = -1;  // the exit status; 128 + the signal when killed by one
  std::string out;  // stdout and stderr, interleaved
};

// `cmd` through /bin/sh, its stdout and stderr captured together.
inline CommandResult run_shell(const std::string& cmd) {
  CommandResult r;
  const std::string full = "{ " + cmd + "\n} 2>&1";
  FILE* p = popen(full.c_str(), "r");
  if (p == nullptr) {
    r.out = "popen failed";
    return r;
  }
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) r.out.append(buf, n);
  const int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}

// `s` as one single-quoted shell word.
inline std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (const char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

class SlurmCluster {
 public:
  // Why the Slurm tests cannot run on this machine, empty when they can: slurmd
  // and munged need root.
  static std::string skip_reason() {
    if (geteuid() != 0) return "the Slurm tests start munged, slurmctld and slurmd, which needs root";
    return {};
  }

  // The harness script, tests/slurm/cluster.
  static std::string harness() { return EXMEM_SLURM_HARNESS; }

  // Makes the cluster's folder (under the temporary folder); starts nothing.
  SlurmCluster() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "exmem-slurm-XXXXXX").string();
    if (mkdtemp(tmpl.data()) != nullptr) dir_ = tmpl;
  }
  // stop(), then removes the folder (kept, and named on stderr, when a daemon
  // could not be ended).
  ~SlurmCluster() {
    if (dir_.empty()) return;
    const std::string why = stop();
    if (!why.empty()) {
      std::fprintf(stderr, "SlurmCluster: keeping %s: %s\n", dir_.c_str(), why.c_str());
      return;
    }
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  SlurmCluster(const SlurmCluster&) = delete;
  SlurmCluster& operator=(const SlurmCluster&) = delete;
  SlurmCluster(SlurmCluster&&) = delete;
  SlurmCluster& operator=(SlurmCluster&&) = delete;

  // Starts munged, slurmctld and slurmd and waits (60 s at most) until the node
  // is idle. Empty on success, else why: the harness's message (the package to
  // install when a program is missing, the port in use, the daemons' logs).
  [[nodiscard]] std::string start() {
    if (dir_.empty()) return "could not make a temporary folder for the cluster";
    started_ = true;  // so that stop() ends whatever a failed start left
    // The harness leaves a watcher that stops the cluster should this process
    // end without doing so (a crash, or ctest's timeout killing it).
    const CommandResult r = run_shell("EXMEM_SLURM_OWNER_PID=" + std::to_string(getpid()) + " " +
                                      shell_quote(harness()) + " start " + shell_quote(dir_.string()));
    if (r.status != 0) return "tests/slurm/cluster start exited " + std::to_string(r.status) + ":\n" + r.out;
    pids_.clear();
    for (const char* name : {"munged", "slurmctld", "slurmd"}) {
      pid_t pid = 0;
      std::ifstream(dir_ / (std::string(name) + ".pid")) >> pid;
      if (pid > 0) pids_.push_back(pid);
    }
    return {};
  }

  // Cancels the cluster's jobs and ends its daemons (TERM, then KILL); does
  // nothing when they are gone already. Empty on success, else the harness's
  // message.
  std::string stop() {
    if (!started_) return {};
    const CommandResult r = run_shell(shell_quote(harness()) + " stop " + shell_quote(dir_.string()));
    if (r.status != 0) return "tests/slurm/cluster stop exited " + std::to_string(r.status) + ":\n" + r.out;
    started_ = false;
    return {};
  }

  // The cluster's folder: its slurm.conf, logs, state; a job may write here too.
  [[nodiscard]] const std::filesystem::path& dir() const { return dir_; }
  [[nodiscard]] std::string conf() const { return (dir_ / "slurm.conf").string(); }
  // What a child command needs in its environment to reach this cluster:
  // "SLURM_CONF=<dir>/slurm.conf" (for putenv, env(1) or an envp).
  [[nodiscard]] std::string env() const { return "SLURM_CONF=" + conf(); }

  // `cmd` through the shell with env() exported (to it and to every command in
  // it: sbatch passes it on to the job), stdout and stderr captured together.
  [[nodiscard]] CommandResult run(const std::string& cmd) const {
    return run_shell("export " + shell_quote(env()) + "\n" + cmd);
  }

  // munged's, slurmctld's and slurmd's pids as start() found them.
  [[nodiscard]] const std::vector<pid_t>& daemon_pids() const { return pids_; }

  // Whether `pid` still runs (a zombie does not) with this cluster's folder on
  // its command line: one of the daemons start() began.
  [[nodiscard]] bool runs_here(pid_t pid) const { return runs_in(pid, dir_); }
  // The same for the cluster in folder `dir`.
  [[nodiscard]] static bool runs_in(pid_t pid, const std::filesystem::path& dir) {
    const std::string proc = "/proc/" + std::to_string(pid);
    std::string stat;
    std::getline(std::ifstream(proc + "/stat"), stat);
    const auto paren = stat.rfind(") ");
    if (stat.empty() || (paren != std::string::npos && stat.compare(paren + 2, 1, "Z") == 0)) return false;
    std::string cmdline;
    std::getline(std::ifstream(proc + "/cmdline"), cmdline, '\x01');
    return cmdline.find(dir.string() + "/") != std::string::npos;
  }

 private:
  std::filesystem::path dir_;
  bool started_ = false;
  std::vector<pid_t> pids_;
};

}  // namespace exmem::slurm_test
