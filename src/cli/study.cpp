// `exmem study FILE`: every point of a study (study/study.hpp) run as its own
// process, N at a time, each result stored as it finishes, then the report.
// Also: the points listed (--list), some points only (--point, what a Slurm
// task runs), a Slurm job array written (--slurm) and the report built from
// the points others stored (--merge).
#include <fmt/format.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "commands.hpp"
#include "sim.hpp"
#include "study/store.hpp"
#include "study/study.hpp"
#include "study/summary.hpp"
#include "study/version.hpp"

namespace exmem::cli {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

struct StudyOptions {
  std::string file;
  std::string out;
  unsigned jobs = 0;
  bool force = false;
  bool list = false;
  std::string point;
  std::string merge;
  std::string slurm;
  std::size_t batch = 1;
  std::vector<std::string> sbatch_options;
  std::string progress = "auto";
};

[[noreturn]] void fail(const std::string& message, int code = 2) {
  std::fflush(stdout);
  std::fprintf(stderr, "exmem study: %s\n", message.c_str());
  throw CLI::RuntimeError(code);
}

std::string duration_text(double seconds) {
  if (!(seconds >= 0)) return "?";
  const auto s = static_cast<std::uint64_t>(seconds + 0.5);
  if (s < 60) return fmt::format("{}s", s);
  if (s < 3600) return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}h{:02}m", s / 3600, (s / 60) % 60);
}

study::Study load(const std::string& file) {
  study::ScenarioResolver resolver;
  resolver.find = [](const std::string& name, const fs::path& dir) -> std::optional<study::ScenarioText> {
    std::optional<cli::sim::ScenarioFile> f = cli::sim::find_scenario(name, dir);
    if (!f) return std::nullopt;
    return study::ScenarioText{std::move(f->text), std::move(f->source)};
  };
  resolver.known = [] { return cli::sim::known_scenarios(); };
  try {
    return study::load_study(file, resolver, study::model_version());
  } catch (const study::StudyError& e) {
    fail(e.what());
  }
}

// The progress line over the whole study, on stderr.
class StudyProgress {
 public:
  StudyProgress(bool enabled, std::string name, std::size_t total, std::size_t before)
      : enabled_(enabled), name_(std::move(name)), total_(total), before_(before), start_(Clock::now()) {}
  void update(std::size_t done_now, std::size_t running, std::size_t failed, bool force = false) {
    if (!enabled_) return;
    const auto now = Clock::now();
    if (!force && now - last_ < std::chrono::milliseconds(200)) return;
    last_ = now;
    const double elapsed = std::chrono::duration<double>(now - start_).count();
    const std::size_t todo = total_ - before_;
    const std::size_t left = todo - done_now - failed;
    std::string eta = "estimating";
    if (done_now > 0) eta = fmt::format("~{} left", duration_text(elapsed / static_cast<double>(done_now) * static_cast<double>(left)));
    std::string line = fmt::format("exmem study {}: {}/{} points{}, {} running{} · {} · {}", name_, before_ + done_now, total_,
                                   before_ != 0 ? fmt::format(" ({} stored before)", before_) : "", running,
                                   failed != 0 ? fmt::format(", {} failed", failed) : "", duration_text(elapsed), eta);
    std::fprintf(stderr, "\r%s\033[K", line.c_str());
    std::fflush(stderr);
    drawn_ = true;
  }
  void clear() {
    if (drawn_) std::fprintf(stderr, "\r\033[K");
    drawn_ = false;
  }

 private:
  bool enabled_;
  std::string name_;
  std::size_t total_;
  std::size_t before_;
  Clock::time_point start_;
  Clock::time_point last_{};
  bool drawn_ = false;
};

struct RunOutcome {
  std::size_t ran = 0;
  std::size_t before = 0;
  std::vector<std::pair<std::size_t, std::string>> failed;  // point, why
  double seconds = 0;
};

// Runs the points of `which` that are not stored yet (all with `force`), each
// in a child process, `jobs` at a time.
RunOutcome run_points(const study::Study& st, const std::vector<std::size_t>& which, const fs::path& out, unsigned jobs,
                      bool force, bool progress_on) {
  RunOutcome r;
  std::vector<std::size_t> pending;
  for (std::size_t i : which) {
    std::string why;
    const study::Stored s = study::stored(out, st.points[i], &why);
    if (s == study::Stored::Done && !force) {
      ++r.before;
      continue;
    }
    if (s == study::Stored::Other) {
      std::fprintf(stderr, "exmem study: point %zu: %s is not its result (%s); running it again\n", i,
                   study::point_path(out, st.points[i]).c_str(), why.c_str());
    }
    pending.push_back(i);
  }
  std::error_code ec;
  fs::create_directories(out / "points", ec);
  if (ec) fail(fmt::format("--out \"{}\": cannot create {}: {}", out.string(), (out / "points").string(), ec.message()));
  study::remove_dead_temporaries(out);

  const auto start = Clock::now();
  StudyProgress progress(progress_on, st.name, r.before + pending.size(), r.before);
  std::map<pid_t, std::size_t> running;
  std::size_t next = 0;
  progress.update(0, 0, 0, true);
  while (next < pending.size() || !running.empty()) {
    while (next < pending.size() && running.size() < jobs) {
      const std::size_t i = pending[next++];
      std::fflush(stdout);
      std::fflush(stderr);
      const pid_t pid = ::fork();
      if (pid < 0) fail(fmt::format("cannot start a process for point {}: {}", i, std::strerror(errno)), 1);
      if (pid == 0) {
        int code = 0;
        try {
          const study::Point& p = st.points[i];
          study::store_point(out, p, study::run_point(st, p));
        } catch (const std::exception& e) {
          std::fprintf(stderr, "\nexmem study: point %zu (%s): %s\n", i, st.points[i].hash.c_str(), e.what());
          code = 1;
        }
        std::fflush(stderr);
        ::_exit(code);
      }
      running.emplace(pid, i);
    }
    int status = 0;
    const pid_t done = ::waitpid(-1, &status, WNOHANG);
    if (done < 0 && errno != EINTR) fail(fmt::format("waitpid: {}", std::strerror(errno)), 1);
    if (done <= 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      progress.update(r.ran, running.size(), r.failed.size());
      continue;
    }
    const auto it = running.find(done);
    if (it == running.end()) continue;
    const std::size_t i = it->second;
    running.erase(it);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
      ++r.ran;
    } else if (WIFSIGNALED(status)) {
      r.failed.emplace_back(i, fmt::format("killed by signal {} ({})", WTERMSIG(status), strsignal(WTERMSIG(status))));
    } else {
      r.failed.emplace_back(i, "failed (its error is above)");
    }
    progress.update(r.ran, running.size(), r.failed.size(), true);
  }
  progress.clear();
  r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return r;
}

// Every point's stored result, or the error naming those missing.
std::vector<nlohmann::json> gather(const study::Study& st, const fs::path& out, const std::string& what) {
  std::vector<nlohmann::json> stored;
  std::vector<std::size_t> missing;
  std::string first_why;
  for (const study::Point& p : st.points) {
    try {
      stored.push_back(study::load_point(out, p));
    } catch (const std::exception& e) {
      if (missing.empty()) first_why = e.what();
      missing.push_back(p.index);
      stored.emplace_back();
    }
  }
  if (!missing.empty()) {
    std::vector<std::string> shown;
    for (std::size_t k = 0; k < missing.size() && k < 10; ++k) shown.push_back(fmt::format("{}", missing[k]));
    fail(fmt::format("{} \"{}\": {} of the study's {} points have no stored result for model {} (points {}{}; the "
                     "first: {}). Run them (exmem study {} --point LIST --out {}) and merge again.",
                     what, out.string(), missing.size(), st.points.size(), st.model_version, fmt::join(shown, ", "),
                     missing.size() > shown.size() ? ", ..." : "", first_why, st.file, out.string()));
  }
  return stored;
}

void write_report(const study::Study& st, const fs::path& from, const fs::path& to, const std::string& what) {
  const std::vector<nlohmann::json> stored = gather(st, from, what);
  try {
    study::write_study_report(to, study::study_json(st, stored));
  } catch (const std::system_error& e) {
    fail(fmt::format("--out \"{}\": {}", to.string(), e.what()));
  }
}

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

fs::path self_exe() {
  std::error_code ec;
  fs::path p = fs::read_symlink("/proc/self/exe", ec);
  if (ec) fail(fmt::format("cannot find this program's path (/proc/self/exe): {}", ec.message()), 1);
  return p;
}

// The job array: ceil(points / batch) tasks, task T running points T*batch .. T*batch+batch-1.
void write_slurm(const study::Study& st, const StudyOptions& o) {
  constexpr std::size_t kMaxArray = 1000;  // Slurm's default MaxArraySize is 1001: indices 0..1000
  const std::size_t n = st.points.size();
  const std::size_t tasks = (n + o.batch - 1) / o.batch;
  if (tasks > kMaxArray) {
    fail(fmt::format("--slurm: {} points in batches of {} make {} array tasks, more than Slurm's default limit of {}; "
                     "give --batch {} or more",
                     n, o.batch, tasks, kMaxArray, (n + kMaxArray - 1) / kMaxArray));
  }
  for (const std::string& opt : o.sbatch_options) {
    if (opt.empty() || opt.find_first_of("\r\n") != std::string::npos) {
      fail(fmt::format("--sbatch-option \"{}\": expected one sbatch option for one #SBATCH line, such as --mem=4G "
                       "(no line break)",
                       opt));
    }
  }
  const fs::path dir = fs::absolute(o.slurm);
  const fs::path shared = o.out.empty() ? dir / "results" : fs::absolute(o.out);
  std::error_code ec;
  for (const fs::path& d : {dir, dir / "logs", shared / "points"}) {
    fs::create_directories(d, ec);
    if (ec) fail(fmt::format("--slurm \"{}\": cannot create {}: {}", o.slurm, d.string(), ec.message()));
  }
  const fs::path script = dir / "study.sbatch";
  std::string text = "#!/bin/bash\n";
  text += fmt::format("# exmem study {}: {} points in {} array tasks of {} (model {}).\n", st.name, n, tasks, o.batch,
                      st.model_version);
  text += fmt::format("# Submit: sbatch {}\n", shell_quote(script.string()));
  text += fmt::format("# Then:   exmem study {} --merge {}\n", shell_quote(fs::absolute(st.file).string()),
                      shell_quote(shared.string()));
  text += fmt::format("#SBATCH --job-name=exmem-study-{}\n", st.name);
  text += fmt::format("#SBATCH --array=0-{}\n", tasks - 1);
  text += "#SBATCH --ntasks=1\n#SBATCH --cpus-per-task=1\n";
  text += fmt::format("#SBATCH --output={}/task-%A_%a.out\n", (dir / "logs").string());
  for (const std::string& opt : o.sbatch_options) text += fmt::format("#SBATCH {}\n", opt);
  text += "set -euo pipefail\n";
  text += fmt::format("first=$(( SLURM_ARRAY_TASK_ID * {} ))\n", o.batch);
  text += fmt::format("last=$(( first + {} ))\n", o.batch - 1);
  text += fmt::format("if (( last > {} )); then last={}; fi\n", n - 1, n - 1);
  text += fmt::format("exec {} study {} --point \"$first-$last\" --out {} --jobs 1 --progress never\n",
                      shell_quote(self_exe().string()), shell_quote(fs::absolute(st.file).string()),
                      shell_quote(shared.string()));
  {
    std::ofstream f(script, std::ios::trunc);
    f << text;
    f.flush();
    if (!f) fail(fmt::format("--slurm \"{}\": cannot write {}", o.slurm, script.string()));
  }
  fs::permissions(script, fs::perms::owner_exec | fs::perms::group_exec | fs::perms::others_exec, fs::perm_options::add,
                  ec);
  fmt::print("wrote {}: {} points in {} array tasks of {}\n", script.string(), n, tasks, o.batch);
  fmt::print("submit it:  sbatch {}\n", script.string());
  fmt::print("then merge: exmem study {} --merge {}\n", st.file, shared.string());
}

void list_points(const study::Study& st, const fs::path& out) {
  fmt::print("study {} ({} points, model {}), results in {}\n", st.name, st.points.size(), st.model_version, out.string());
  for (const study::Point& p : st.points) {
    std::vector<std::string> axes;
    for (std::size_t i = 0; i < st.axes.size(); ++i) axes.push_back(fmt::format("{}={}", st.axes[i].name, st.axes[i].labels[p.at[i]]));
    const study::Stored s = study::stored(out, p);
    fmt::print("{:>6}  {}  {:<7}  {:<24} seed={:<4} {}\n", p.index, p.hash,
               s == study::Stored::Done ? "stored" : s == study::Stored::Other ? "stale" : "-", p.policy, p.seed,
               fmt::join(axes, " "));
  }
}

}  // namespace

void add_study(CLI::App& app) {
  auto opts = std::make_shared<StudyOptions>();
  CLI::App* cmd = app.add_subcommand(
      "study",
      "Run a study: the kernel model at every point of a sweep (axes of scenario settings x policies x seeds), each "
      "point its own process, its result stored as it finishes (an interrupted study resumes), and a report of every "
      "metric against an axis with the spread over seeds; locally or as a Slurm job array");
  cmd->add_option("file", opts->file, "The study file (TOML; docs/study-format.md)")->required()->type_name("FILE");
  cmd->add_option("--out", opts->out,
                  "Folder of the stored points (points/) and the report (index.html, study.json, results.csv, "
                  "summary.csv); default: study-NAME in the current folder, NAME the study file's stem")
      ->type_name("DIR");
  cmd->add_option("--jobs,-j", opts->jobs, "Points run at once, 1 to 1024 (default: the CPUs this process may use)")
      ->check(CLI::Range(1u, 1024u))
      ->type_name("N");
  cmd->add_flag("--force", opts->force, "Run the points again even when their results are stored");
  cmd->add_flag("--list", opts->list, "List the points (index, hash, stored or not, policy, seed, axes) and exit");
  cmd->add_option("--point", opts->point,
                  "Run only these points (\"K\", \"A-B\", or a comma-separated list), store them and write no "
                  "report: what each task of a --slurm job array runs")
      ->type_name("LIST");
  cmd->add_option("--merge", opts->merge,
                  "Build the report from the points stored in DIR (by --point runs, a Slurm array), into --out when "
                  "given, else into DIR; fails naming the points missing")
      ->type_name("DIR");
  cmd->add_option("--slurm", opts->slurm,
                  "Write DIR/study.sbatch, a Slurm job array whose tasks run --point over the study's points into "
                  "--out (default DIR/results, which every node must reach), and exit")
      ->type_name("DIR");
  cmd->add_option("--batch", opts->batch, "With --slurm: points per array task (default 1)")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 20))
      ->type_name("N");
  cmd->add_option("--sbatch-option", opts->sbatch_options,
                  "With --slurm: a line added as #SBATCH OPTION (repeat), e.g. --sbatch-option=--mem=4G "
                  "--sbatch-option=--partition=batch")
      ->type_name("OPTION");
  cmd->add_option("--progress", opts->progress,
                  "Progress line on stderr (points done, running, time left): auto (when stderr is a terminal), "
                  "always or never")
      ->check(CLI::IsMember({"auto", "always", "never"}))
      ->type_name("WHEN");
  cmd->footer(R"(Examples:
  exmem study studies/pooling.toml                      every point, 2 at a time on 2 CPUs, report in study-pooling/
  exmem study studies/pooling.toml --list               the points and which are stored
  exmem study studies/collapse.toml --slurm /shared/job --out /shared/collapse
  sbatch /shared/job/study.sbatch && exmem study studies/collapse.toml --merge /shared/collapse)");
  cmd->callback([opts] {
    const StudyOptions& o = *opts;
    const int modes = int(o.list) + int(!o.point.empty()) + int(!o.merge.empty()) + int(!o.slurm.empty());
    if (modes > 1) fail("--list, --point, --merge and --slurm are separate ways to run; give one of them");
    if (o.batch != 1 && o.slurm.empty()) fail("--batch goes with --slurm");
    if (!o.sbatch_options.empty() && o.slurm.empty()) fail("--sbatch-option goes with --slurm");
    if (o.force && (o.list || !o.merge.empty() || !o.slurm.empty())) fail("--force goes with a run (or --point)");
    const study::Study st = load(o.file);
    const fs::path out = !o.out.empty() ? fs::path(o.out) : !o.merge.empty() ? fs::path(o.merge) : fs::path("study-" + st.name);
    if (o.list) {
      list_points(st, out);
      return;
    }
    if (!o.slurm.empty()) {
      write_slurm(st, o);
      return;
    }
    if (!o.merge.empty()) {
      write_report(st, o.merge, out, "--merge");
      fmt::print(stderr, "exmem study: report of {} points written to {}\n", st.points.size(), (out / "index.html").string());
      return;
    }
    std::vector<std::size_t> which;
    if (!o.point.empty()) {
      try {
        which = study::parse_point_list(o.point, st.points.size());
      } catch (const std::invalid_argument& e) {
        fail(fmt::format("--point {}", e.what()));
      }
    } else {
      for (std::size_t i = 0; i < st.points.size(); ++i) which.push_back(i);
    }
    const unsigned jobs = o.jobs != 0 ? o.jobs : cli::sim::online_cpus();
    const bool progress_on = o.progress == "always" || (o.progress == "auto" && ::isatty(STDERR_FILENO) == 1);
    const RunOutcome r = run_points(st, which, out, jobs, o.force, progress_on);
    fmt::print(stderr, "exmem study {}: {} points: {} run in {} ({} at a time), {} stored before{}\n", st.name,
               which.size(), r.ran, duration_text(r.seconds), jobs, r.before,
               r.failed.empty() ? std::string() : fmt::format(", {} failed", r.failed.size()));
    if (!r.failed.empty()) {
      for (const auto& [i, why] : r.failed) {
        fmt::print(stderr, "exmem study: point {} ({}, seed {}): {}\n", i, st.points[i].policy, st.points[i].seed, why);
      }
      fail(fmt::format("{} points failed; the others are stored in {}: run the same command again to retry only "
                       "the failed ones",
                       r.failed.size(), (out / "points").string()),
           1);
    }
    if (!o.point.empty()) return;
    write_report(st, out, out, "--out");
    fmt::print(stderr, "exmem study {}: report written to {}\n", st.name, (out / "index.html").string());
  });
}

}  // namespace exmem::cli
