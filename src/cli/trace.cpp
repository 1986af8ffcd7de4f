// `exmem trace record`: records what the real kernel's page allocator did while
// a command ran, through tracefs, for replay on the model and for calibrating
// it against the real direct map.
//
// The file's format, and the lines this writes around the events, are the
// model's: model/workload/trace_format.hpp.
//
// Secret pages are found by sampling the command's memfd_secret mappings
// ("/secretmem" in /proc/PID/maps) every --sample-ms and once more when it
// exits (the command runs under ptrace with PTRACE_O_TRACEEXIT, so its
// mappings still exist at that stop). Pages that a command both faults in and
// releases between two samples are not marked. Only the command's own process
// is sampled, not children it forks.
//
// With --sched the same instance also records the scheduler's events
// (trace_format::kSchedEvents) of every task, with the "mono" clock so that
// timestamps of different CPUs compare, the command's pid and the kernel
// threads (from /proc: PF_KTHREAD) at the start and the end, for
// `exmem trace sched` (trace_sched.cpp).
//
// When the running kernel lets it (host::read_kernel_map(): root, /proc/kcore,
// kallsyms addresses shown, no lockdown=confidentiality), the real direct map
// is read before the command starts and after tracing stops, and both go in
// the footer as "# direct_map start/end" lines, which `exmem sim --trace` uses
// for its exact region-by-region calibration; otherwise the recording goes on
// and "# direct_map unavailable" says why.
#include <fcntl.h>
#include <poll.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/core.h>

#include "commands.hpp"
#include "host/host.hpp"
#include "model/workload/trace_format.hpp"

namespace exmem::cli {

namespace {

namespace trace_format = exmem::model::workload;

[[noreturn]] void fail(int code, const std::string& message) {
  std::fprintf(stderr, "exmem trace record: %s\n", message.c_str());
  throw CLI::RuntimeError(code);
}

bool exists(const std::string& path) {
  struct stat st{};
  return ::stat(path.c_str(), &st) == 0;
}

// Finds tracefs, mounting it at /sys/kernel/tracing when it is not mounted.
std::string tracefs_root() {
  for (const char* p : {"/sys/kernel/tracing", "/sys/kernel/debug/tracing"})
    if (exists(std::string(p) + "/trace")) return p;
  if (::mount("nodev", "/sys/kernel/tracing", "tracefs", 0, nullptr) == 0 && exists("/sys/kernel/tracing/trace"))
    return "/sys/kernel/tracing";
  fail(3, fmt::format("tracefs is not mounted and mounting it at /sys/kernel/tracing failed: {} "
                      "(try: mount -t tracefs nodev /sys/kernel/tracing)",
                      std::strerror(errno)));
}

void write_file(const std::string& path, const std::string& value) {
  int fd = ::open(path.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
  if (fd < 0) fail(3, fmt::format("cannot open {}: {}", path, std::strerror(errno)));
  ssize_t n = ::write(fd, value.data(), value.size());
  int e = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(value.size())) fail(3, fmt::format("cannot write '{}' to {}: {}", value, path, std::strerror(e)));
}

// Values from /proc/meminfo and /proc/vmstat for the calibration lines.
// The real direct map as the trace carries it; its values are host::MapCoverage's.
trace_format::DirectMapSnapshot snapshot_of(const host::KernelDirectMap& m) {
  trace_format::DirectMapSnapshot s;
  s.regions.reserve(m.regions.size());
  for (const host::MapCoverage c : m.regions) s.regions.push_back(static_cast<std::uint8_t>(c));
  return s;
}

// The direct map now, or why not ("<refusal>: <why>" in *why).
std::optional<trace_format::DirectMapSnapshot> read_snapshot(std::string* why) {
  const host::KernelMapResult r = host::read_kernel_map();
  if (r.map) return snapshot_of(*r.map);
  *why = fmt::format("{}: {}", host::refusal_name(r.refusal), r.why);
  return std::nullopt;
}

std::string counters_line() {
  const host::DirectMapCounters d = host::read_direct_map();
  namespace key = trace_format::trace_counter;
  const std::pair<std::string_view, const std::optional<std::uint64_t>&> fields[] = {
      {key::kDirectMap4k, d.dm4k_kb},         {key::kDirectMap2M, d.dm2m_kb},
      {key::kDirectMap1G, d.dm1g_kb},         {key::kLevel2Splits, d.level2_splits},
      {key::kLevel3Splits, d.level3_splits},  {key::kLevel2Collapses, d.level2_collapses},
      {key::kLevel3Collapses, d.level3_collapses}};
  std::string line;
  for (const auto& [k, v] : fields) {
    line += v ? fmt::format(" {}={}", k, *v) : fmt::format(" {}={}", k, key::kAbsent);
  }
  return line;
}

// The threads of pid other than itself, from /proc/PID/task.
void sample_threads(pid_t pid, std::set<int>* tids) {
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(fmt::format("/proc/{}/task", pid), ec)) {
    const std::string name = e.path().filename().string();
    char* end = nullptr;
    const long tid = std::strtol(name.c_str(), &end, 10);
    if (end != name.c_str() && *end == '\0' && tid != pid) tids->insert(static_cast<int>(tid));
  }
}

// The physical frames behind pid's memfd_secret mappings (needs root).
void sample_secret_pfns(pid_t pid, std::set<uint64_t>* pfns) {
  const host::Pagemap pm(pid);
  if (pm.error() != 0) return;
  for (const host::Range& r : host::secret_mappings(pid)) {
    const host::Frames f = host::frames_of(pm, r.begin, (r.end - r.begin) / host::page_size());
    pfns->insert(f.pfns.begin(), f.pfns.end());
  }
}

// The kernel threads running now: PF_KTHREAD in the flags of /proc/PID/stat.
void sample_kthreads(std::set<int>* pids) {
  constexpr unsigned long kPfKthread = 0x00200000;  // include/linux/sched.h
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = e.path().filename().string();
    char* end = nullptr;
    const long pid = std::strtol(name.c_str(), &end, 10);
    if (end == name.c_str() || *end != '\0') continue;
    std::ifstream f(e.path() / "stat");
    std::string stat;
    std::getline(f, stat);
    const std::size_t close = stat.rfind(')');  // the comm may hold anything
    if (close == std::string::npos) continue;
    std::istringstream rest(stat.substr(close + 1));
    std::string field;
    unsigned long flags = 0;
    // state ppid pgrp session tty_nr tpgid flags
    for (int i = 0; i < 6 && rest >> field; ++i) {
    }
    if (rest >> flags && (flags & kPfKthread) != 0) pids->insert(static_cast<int>(pid));
  }
}

struct Instance {
  std::string dir;
  ~Instance() {
    if (dir.empty()) return;
    int fd = ::open((dir + "/tracing_on").c_str(), O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
      ssize_t n = ::write(fd, "0", 1);
      (void)n;
      ::close(fd);
    }
    ::rmdir(dir.c_str());
  }
};

int record(const std::string& out_path, unsigned buffer_kb, unsigned sample_ms, bool sched,
           const std::vector<std::string>& cmd) {
  if (cmd.empty()) fail(2, "no command given: expected `exmem trace record -o FILE -- COMMAND [ARGS...]`");
  if (::geteuid() != 0)
    fail(3, "needs root: it enables kmem tracepoints in tracefs and reads /proc/PID/pagemap (run it with sudo)");
  FILE* out = std::fopen(out_path.c_str(), "w");
  if (!out) fail(2, fmt::format("cannot create the output file {}: {}", out_path, std::strerror(errno)));

  std::string root = tracefs_root();
  Instance inst;
  inst.dir = fmt::format("{}/instances/exmem-{}", root, ::getpid());
  if (::mkdir(inst.dir.c_str(), 0700) != 0) {
    std::string d = inst.dir;
    inst.dir.clear();
    fail(3, fmt::format("cannot create the tracefs instance {}: {}", d, std::strerror(errno)));
  }
  write_file(inst.dir + "/buffer_size_kb", std::to_string(buffer_kb));
  for (const char* ev : trace_format::kRecordedEvents) {
    std::string p = fmt::format("{}/events/kmem/{}/enable", inst.dir, ev);
    if (exists(p)) write_file(p, "1");
  }
  std::string clock;
  std::set<int> kthreads;
  if (sched) {
    for (const char* ev : trace_format::kSchedEvents) {
      const std::string p = fmt::format("{}/events/{}/enable", inst.dir, ev);
      if (!exists(p)) fail(3, fmt::format("--sched: this kernel has no tracepoint {} ({} is missing)", ev, p));
      write_file(p, "1");
    }
    // Timestamps that compare across CPUs; "local" (the default) may drift between them.
    std::ifstream clocks(inst.dir + "/trace_clock");
    std::string all((std::istreambuf_iterator<char>(clocks)), std::istreambuf_iterator<char>());
    clock = "local";
    for (const char* c : {"mono", "global"}) {
      if (all.find(c) != std::string::npos) {
        write_file(inst.dir + "/trace_clock", c);
        clock = c;
        break;
      }
    }
    sample_kthreads(&kthreads);
  }

  std::string joined;
  for (const auto& a : cmd) joined += (joined.empty() ? "" : " ") + a;
  long mem_total = 0;
  {
    std::ifstream mi("/proc/meminfo");
    std::string k;
    mi >> k >> mem_total;
  }
  const std::string header = trace_format::trace_header(joined, ::sysconf(_SC_NPROCESSORS_ONLN),
                                                        static_cast<std::uint64_t>(mem_total), counters_line());
  std::fputs(header.c_str(), out);
  if (sched) std::fputs(trace_format::trace_sched_lines(clock).c_str(), out);

  // The real direct map before the command (read before tracing starts, so
  // the walk's own allocations are not in the trace).
  std::string map_why;
  const std::optional<trace_format::DirectMapSnapshot> map_start = read_snapshot(&map_why);
  if (!map_start) std::fprintf(stderr, "exmem trace record: no direct-map snapshot (%s)\n", map_why.c_str());

  int pipe_fd = ::open((inst.dir + "/trace_pipe").c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (pipe_fd < 0) fail(3, fmt::format("cannot open {}/trace_pipe: {}", inst.dir, std::strerror(errno)));
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> lines{0};
  std::thread reader([&] {
    // With --sched the reader is itself a task the recording sees: woken at
    // every event, it would preempt the command thousands of times a second
    // (measured: 4861 of a 2-thread program's 4893 switches away went to it).
    // So it drains the buffer in large reads, then sleeps.
    std::vector<char> buf(sched ? 1 << 20 : 1 << 16);
    for (;;) {
      pollfd p{pipe_fd, POLLIN, 0};
      ::poll(&p, 1, 50);
      ssize_t n = ::read(pipe_fd, buf.data(), buf.size());
      if (n > 0) {
        std::fwrite(buf.data(), 1, static_cast<size_t>(n), out);
        uint64_t c = 0;
        for (ssize_t i = 0; i < n; ++i) c += buf[static_cast<size_t>(i)] == '\n';
        lines += c;
        if (sched && static_cast<size_t>(n) < buf.size() && !stop.load())
          std::this_thread::sleep_for(std::chrono::milliseconds(200));
        continue;
      }
      if (stop.load()) break;  // drained after tracing stopped
    }
  });
  write_file(inst.dir + "/tracing_on", "1");

  auto t0 = std::chrono::steady_clock::now();
  pid_t child = ::fork();
  if (child < 0) fail(3, fmt::format("fork failed: {}", std::strerror(errno)));
  if (child == 0) {
    ::ptrace(PTRACE_TRACEME, 0, nullptr, nullptr);
    std::vector<char*> argv;
    for (const auto& a : cmd) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execvp(argv[0], argv.data());
    std::fprintf(stderr, "exmem trace record: cannot run %s: %s\n", argv[0], std::strerror(errno));
    _exit(127);
  }
  std::set<uint64_t> pfns;
  std::set<int> tids;
  int status = 0, exit_status = -1;
  bool started = false;
  for (;;) {
    pid_t r = ::waitpid(child, &status, started ? WNOHANG : 0);
    if (r == 0) {
      sample_secret_pfns(child, &pfns);
      sample_threads(child, &tids);
      std::this_thread::sleep_for(std::chrono::milliseconds(sample_ms));
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) break;
    if (WIFEXITED(status)) {
      exit_status = WEXITSTATUS(status);
      break;
    }
    if (WIFSIGNALED(status)) {
      exit_status = 128 + WTERMSIG(status);
      break;
    }
    if (!WIFSTOPPED(status)) continue;
    int sig = WSTOPSIG(status);
    if (!started) {  // the stop at exec
      started = true;
      // TRACEEXEC: a later exec (`nice CMD`, `sh -c 'exec CMD'`) stops with an
      // event instead of the SIGTRAP a traced process otherwise gets, which
      // passed on would kill it.
      ::ptrace(PTRACE_SETOPTIONS, child, nullptr, PTRACE_O_TRACEEXIT | PTRACE_O_TRACEEXEC | PTRACE_O_EXITKILL);
      ::ptrace(PTRACE_CONT, child, nullptr, nullptr);
      continue;
    }
    if (sig == SIGTRAP && (status >> 16) == PTRACE_EVENT_EXIT) {
      sample_secret_pfns(child, &pfns);  // the mappings still exist here
      sample_threads(child, &tids);
      ::ptrace(PTRACE_CONT, child, nullptr, nullptr);
      continue;
    }
    if (sig == SIGTRAP && (status >> 16) == PTRACE_EVENT_EXEC) {
      ::ptrace(PTRACE_CONT, child, nullptr, nullptr);
      continue;
    }
    ::ptrace(PTRACE_CONT, child, nullptr, reinterpret_cast<void*>(static_cast<long>(sig)));  // pass signals on
  }
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  write_file(inst.dir + "/tracing_on", "0");
  stop = true;
  reader.join();
  ::close(pipe_fd);

  // Events the ring buffer dropped, per CPU stats "overrun".
  uint64_t lost = 0;
  for (long cpu = 0; cpu < ::sysconf(_SC_NPROCESSORS_CONF); ++cpu) {
    std::ifstream st(fmt::format("{}/per_cpu/cpu{}/stats", inst.dir, cpu));
    for (std::string k; st >> k;)
      if (k == "overrun:") {
        uint64_t v = 0;
        st >> v;
        lost += v;
      }
  }
  if (sched) sample_kthreads(&kthreads);
  std::optional<trace_format::DirectMapSnapshot> map_end;
  if (map_start) {
    map_end = read_snapshot(&map_why);
    if (!map_end) std::fprintf(stderr, "exmem trace record: no direct-map snapshot at the end (%s)\n", map_why.c_str());
  }
  std::fputs(trace_format::trace_end_line(counters_line()).c_str(), out);
  if (map_start && map_end) {
    std::fputs(trace_format::trace_direct_map_lines("start", *map_start).c_str(), out);
    std::fputs(trace_format::trace_direct_map_lines("end", *map_end).c_str(), out);
  } else {
    const std::size_t colon = map_why.find(": ");
    std::fputs(trace_format::trace_direct_map_unavailable_line(map_why.substr(0, colon), map_why.substr(colon + 2)).c_str(),
               out);
  }
  for (uint64_t pfn : pfns) std::fputs(trace_format::trace_secret_line(pfn, child).c_str(), out);
  for (int tid : tids) std::fputs(trace_format::trace_thread_line(tid, child).c_str(), out);
  std::fputs(trace_format::trace_command_pid_line(child).c_str(), out);
  for (int pid : kthreads) std::fputs(trace_format::trace_kthread_line(pid).c_str(), out);
  std::fputs(trace_format::trace_footer(exit_status, seconds, lines.load(), lost).c_str(), out);
  std::fclose(out);
  std::printf("recorded %llu %s events in %.3f s to %s; %zu secret pages marked; %llu events lost%s; command exit status %d\n",
              static_cast<unsigned long long>(lines.load()), sched ? "kmem and scheduler" : "kmem", seconds, out_path.c_str(), pfns.size(),
              static_cast<unsigned long long>(lost), lost ? " (raise --buffer-kb)" : "", exit_status);
  return exit_status;
}

}  // namespace

void add_trace(CLI::App& app) {
  auto* trace = app.add_subcommand(
      "trace", "Record the real kernel's page allocations (kmem tracepoints), and optionally its scheduler, while a command runs");
  trace->require_subcommand(1);
  trace->footer(
      "Subcommands:\n"
      "  record   run a command while recording kmem page events, the direct map's counters (and the\n"
      "           map itself, region by region, where /proc/kcore allows) and the\n"
      "           command's memfd_secret pages to a file (`exmem trace record --help`); with --sched\n"
      "           also the scheduler's switches, forks, execs and exits\n"
      "  sched    how long each mm of the recorded command ran on one CPU only, with and without lazy\n"
      "           TLB, i.e. when a local-only TLB flush would have been enough (`exmem trace sched --help`)\n\n"
      "Examples:\n"
      "  sudo exmem trace record -o app.trace -- ./app --serve\n"
      "  exmem sim --trace app.trace                      replay it on the model, every policy\n"
      "  exmem sim --trace app.trace --policy upstream --json\n"
      "  sudo exmem trace record --sched -o srv.trace -- ./server\n"
      "  exmem trace sched srv.trace                      its mms on the CPUs");
  auto* rec = trace->add_subcommand("record", "Run COMMAND while recording kmem:mm_page_alloc/free events to FILE");
  struct Opts {
    std::string out;
    unsigned buffer_kb = 65536;
    unsigned sample_ms = 10;
    bool sched = false;
    std::vector<std::string> cmd;
  };
  auto opts = std::make_shared<Opts>();
  rec->add_option("-o,--output", opts->out, "File to write the trace to")->required();
  rec->add_option("--buffer-kb", opts->buffer_kb, "tracefs ring buffer per CPU, in KiB")
      ->check(CLI::Range(1024u, 4u << 20))
      ->capture_default_str();
  rec->add_option("--sample-ms", opts->sample_ms, "How often to read the command's secret pages from pagemap")
      ->check(CLI::Range(1u, 10000u))
      ->capture_default_str();
  rec->add_flag("--sched", opts->sched,
                "Also record sched:sched_switch, task:task_newtask, sched:sched_process_exec and "
                "sched:sched_process_exit (every task's), the kernel threads and the command's pid, for "
                "`exmem trace sched`. The recorder then wakes less often (--sample-ms 500 unless given) so "
                "that it preempts the command less");
  rec->add_option("command", opts->cmd, "The command to run, after --")->required();
  rec->footer(
      "Needs root (tracefs, /proc/PID/pagemap). Mounts tracefs if needed and records in a tracefs\n"
      "instance of its own, so other tracing on the machine is left alone. Where the kernel allows\n"
      "(`exmem probe --map` says), the real direct map is read at the start and the end for\n"
      "`exmem sim --trace`'s exact calibration; if not, the trace says why and the recording goes on.\n\n"
      "Examples:\n"
      "  exmem trace record -o secrets.trace -- build/release/bench/exmem_density_bench\n"
      "  exmem trace record -o make.trace --buffer-kb 262144 -- make -j2\n"
      "  exmem trace record --sched -o srv.trace -- ./server   then: exmem trace sched srv.trace\n"
      "  exmem sim --trace secrets.trace          replay the recording on the model");
  rec->callback([opts, rec] {
    // Each sample wakes the recorder, which the scheduler events then show
    // preempting the command: with --sched, sample rarely unless told.
    if (opts->sched && rec->count("--sample-ms") == 0) opts->sample_ms = 500;
    int rc = record(opts->out, opts->buffer_kb, opts->sample_ms, opts->sched, opts->cmd);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
  add_trace_sched(*trace);
}

}  // namespace exmem::cli
