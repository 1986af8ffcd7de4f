// Tests of `exmem probe`: its option and statistics helpers, and the built command run
// as a real process on this machine's kernel, its JSON checked against the kernel's
// rules and against what this test process sees itself (read through host/, whose own
// parsing is tested in tests/host).
#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "host/host.hpp"
#include "probe_util.hpp"
#include "support/test_util.hpp"

#ifndef EXMEM_BIN
#error "EXMEM_BIN (path of the built exmem command) must be defined"
#endif

namespace {

namespace pu = exmem::cli::probe_util;
namespace host = exmem::host;
using host::kCapIpcLock;
using host::kCapSysAdmin;
using nlohmann::json;

// ---------------------------------------------------------------------------------
// Running the command

struct ProcResult {
  int exit_code = -1;  // negative: killed by that signal
  std::string out;
  std::string err;
};

std::string describe(const ProcResult& r) {
  return "exit " + std::to_string(r.exit_code) + "\n--- stdout ---\n" + r.out + "\n--- stderr ---\n" + r.err;
}

ProcResult run_exmem(const std::vector<std::string>& args, const std::function<void()>& in_child = {}) {
  int out_pipe[2];
  int err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0 || ::pipe2(err_pipe, O_CLOEXEC) != 0) {
    ADD_FAILURE() << "pipe2: " << std::strerror(errno);
    return {};
  }
  std::vector<std::string> argv_s{EXMEM_BIN};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);

  const pid_t pid = ::fork();
  if (pid < 0) {
    ADD_FAILURE() << "fork: " << std::strerror(errno);
    return {};
  }
  if (pid == 0) {
    ::dup2(out_pipe[1], STDOUT_FILENO);
    ::dup2(err_pipe[1], STDERR_FILENO);
    if (in_child) in_child();
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  ProcResult r;
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::string* sinks[2] = {&r.out, &r.err};
  int open_fds = 2;
  while (open_fds > 0) {
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buf[4096];
      const ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        sinks[i]->append(buf, static_cast<std::size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
  return r;
}

std::optional<json> parse_json(const ProcResult& r) {
  try {
    return json::parse(r.out);
  } catch (const json::exception& e) {
    ADD_FAILURE() << "output is not JSON: " << e.what() << "\n" << describe(r);
    return std::nullopt;
  }
}

const std::vector<std::string> kProbeArgs{"probe", "--json", "--fault-pages", "16", "--reserve-mib", "8"};

// One run of the JSON probe, shared by the tests that only read it.
const ProcResult& probe_run() {
  static const ProcResult r = run_exmem(kProbeArgs);
  return r;
}

json probe_json() {
  const ProcResult& r = probe_run();
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  auto j = parse_json(r);
  return j ? *j : json::object();
}

std::string read_file(const char* path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::uint64_t my_cap_eff() {
  const auto v = host::status_hex(read_file("/proc/self/status"), "CapEff");
  return v.value_or(0);
}

std::string machine() {
  utsname u{};
  return ::uname(&u) == 0 ? std::string(u.machine) : std::string();
}

// ---------------------------------------------------------------------------------
// Pure helpers

TEST(ProbeUtil, AcceptsOnlyBoundedDecimalNumbers) {
  EXPECT_EQ(pu::parse_bounded("1", 1, 65536), 1U);
  EXPECT_EQ(pu::parse_bounded("65536", 1, 65536), 65536U);
  for (const char* bad : {"0", "65537", "", "abc", "-1", "+5", " 5", "5 ", "0x10", "1e3", "1.5",
                          "99999999999999999999999"}) {
    EXPECT_FALSE(pu::parse_bounded(bad, 1, 65536).has_value()) << "'" << bad << "'";
  }
}

TEST(ProbeUtil, NearestRankPercentiles) {
  const std::vector<std::int64_t> v{1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  EXPECT_EQ(pu::percentile_sorted(v, 0.5), 5);
  EXPECT_EQ(pu::percentile_sorted(v, 0.9), 9);
  EXPECT_EQ(pu::percentile_sorted(v, 1.0), 10);
  EXPECT_EQ(pu::percentile_sorted(v, 0.0), 1);
  EXPECT_EQ(pu::percentile_sorted(std::vector<std::int64_t>{7}, 0.9), 7);
  EXPECT_EQ(pu::percentile_sorted(std::vector<std::int64_t>{}, 0.5), 0);
}

// ---------------------------------------------------------------------------------
// The command on this machine

TEST(ProbeCommand, MemfdSecretIsAvailableOnThisKernel) {
  json j = probe_json();
  ASSERT_TRUE(j.contains("memfd_secret")) << describe(probe_run());
  json& m = j["memfd_secret"];
  ASSERT_TRUE(m["available"].is_boolean());
  EXPECT_TRUE(m["available"].get<bool>())
      << "memfd_secret is NOT available on this machine: " << m["errno_name"] << " - "
      << m["reason"].get<std::string>() << "\n(secretmem.enable in sysfs: " << m["secretmem_enable_param"]
      << ", on the command line: " << m["cmdline_secretmem_enable"] << ")";
  EXPECT_TRUE(m["errno"].is_null());
}

TEST(ProbeCommand, MemlockMatchesWhatThisProcessSees) {
  json j = probe_json();
  json& m = j["memlock"];
  rlimit rl{};
  ASSERT_EQ(::getrlimit(RLIMIT_MEMLOCK, &rl), 0);
  if (rl.rlim_cur == RLIM_INFINITY) {
    EXPECT_TRUE(m["soft_bytes"].is_null());
  } else {
    EXPECT_EQ(m["soft_bytes"], static_cast<std::uint64_t>(rl.rlim_cur));
  }
  if (rl.rlim_max == RLIM_INFINITY) {
    EXPECT_TRUE(m["hard_bytes"].is_null());
  } else {
    EXPECT_EQ(m["hard_bytes"], static_cast<std::uint64_t>(rl.rlim_max));
  }
  const bool ipc_lock = host::has_cap(my_cap_eff(), kCapIpcLock);
  EXPECT_EQ(m["cap_ipc_lock"], ipc_lock);
  if (ipc_lock) {
    EXPECT_NE(m["meaning"].get<std::string>().find("limit ignored: CAP_IPC_LOCK"), std::string::npos);
  }
}

TEST(ProbeCommand, HibernationFollowsTheKernelRule) {
  json j = probe_json();
  json& h = j["hibernation"];
  ASSERT_TRUE(h.is_object());
  EXPECT_EQ(h["state_file"].get<bool>(), ::access("/sys/power/state", F_OK) == 0);
  EXPECT_FALSE(h["note"].get<std::string>().empty());
  if (h["disk_listed_now"] == true && j["memfd_secret"]["available"] == true) {
    // hibernation_available() is false while any secretmem file exists.
    EXPECT_EQ(h["disk_listed_with_secret_open"], false) << h.dump(2);
    EXPECT_EQ(h["blocked_by_secretmem"], true) << h.dump(2);
  }
  if (h["disk_listed_now"] == false) {
    EXPECT_TRUE(h["blocked_by_secretmem"].is_null()) << h.dump(2);
  }
}

TEST(ProbeCommand, DirectMapIsPlausible) {
  json j = probe_json();
  json& d = j["direct_map"];
  ASSERT_TRUE(d.is_object());
  for (const char* k : {"DirectMap4k", "DirectMap2M", "DirectMap1G", "total_kb", "direct_map_level2_splits",
                        "direct_map_level3_splits", "direct_map_level2_collapses", "direct_map_level3_collapses"}) {
    EXPECT_TRUE(d.contains(k)) << k;
  }
  if (machine() != "x86_64") GTEST_SKIP() << "DirectMap fields are x86 only; this is " << machine();
  ASSERT_TRUE(d["DirectMap4k"].is_number_unsigned()) << d.dump(2);
  ASSERT_TRUE(d["DirectMap2M"].is_number_unsigned()) << d.dump(2);
  std::uint64_t sum = d["DirectMap4k"].get<std::uint64_t>() + d["DirectMap2M"].get<std::uint64_t>();
  if (!d["DirectMap1G"].is_null()) sum += d["DirectMap1G"].get<std::uint64_t>();
  EXPECT_EQ(d["total_kb"], sum);
  const auto mem_total = host::key_value(read_file("/proc/meminfo"), "MemTotal");
  ASSERT_TRUE(mem_total.has_value());
  // The direct map covers all RAM, including what the kernel reserved and MemTotal leaves out.
  EXPECT_GE(sum, *mem_total * 9 / 10) << "DirectMap sum " << sum << " kB, MemTotal " << *mem_total << " kB";
  EXPECT_LE(sum, *mem_total * 4) << "DirectMap sum " << sum << " kB, MemTotal " << *mem_total << " kB";
}

TEST(ProbeCommand, AbsentFieldsAreNullNotZero) {
  json j = probe_json();
  json& d = j["direct_map"];
  // What this process reads from the kernel decides which fields are present.
  const std::string mi = read_file("/proc/meminfo");
  for (const char* k : {"DirectMap4k", "DirectMap2M", "DirectMap1G"}) {
    if (host::key_value(mi, k)) {
      EXPECT_TRUE(d[k].is_number_unsigned()) << k << " is in /proc/meminfo: " << d.dump(2);
    } else {
      EXPECT_TRUE(d[k].is_null()) << k << " is not in /proc/meminfo: " << d.dump(2);
    }
  }
  const std::string vm = read_file("/proc/vmstat");
  for (const char* k : {"direct_map_level2_splits", "direct_map_level3_splits", "direct_map_level2_collapses",
                        "direct_map_level3_collapses"}) {
    const auto now = host::key_value(vm, k);
    if (now) {
      ASSERT_TRUE(d[k].is_number_unsigned()) << k << " is in /proc/vmstat: " << d.dump(2);
      EXPECT_LE(d[k].get<std::uint64_t>(), *now) << k << " never goes backwards";
    } else {
      EXPECT_TRUE(d[k].is_null()) << k << " is not in /proc/vmstat: " << d.dump(2);
    }
  }
}

TEST(ProbeCommand, FaultCostIsMeasuredAndPositive) {
  json j = probe_json();
  json& f = j["fault_cost"];
  ASSERT_EQ(f["measured"], true) << f.dump(2);
  EXPECT_TRUE(f["error"].is_null());
  EXPECT_EQ(f["pages"], 16);
  for (const char* k : {"secret_ns_median", "secret_ns_p90", "anon_ns_median", "anon_ns_p90", "timer_ns_median"}) {
    ASSERT_TRUE(f[k].is_number_integer()) << k << ": " << f.dump(2);
    EXPECT_GT(f[k].get<std::int64_t>(), 0) << k;
  }
  EXPECT_GE(f["secret_ns_p90"].get<std::int64_t>(), f["secret_ns_median"].get<std::int64_t>());
  EXPECT_GE(f["anon_ns_p90"].get<std::int64_t>(), f["anon_ns_median"].get<std::int64_t>());
  ASSERT_TRUE(f["ratio"].is_number());
  EXPECT_GT(f["ratio"].get<double>(), 0.0);
  const double expected = static_cast<double>(f["secret_ns_median"].get<std::int64_t>()) /
                          static_cast<double>(f["anon_ns_median"].get<std::int64_t>());
  EXPECT_NEAR(f["ratio"].get<double>(), expected, 0.001);
}

// Checks one reserve section; returns a description of what broke, empty when sound.
// The splits invariant holds only when nothing else splits the direct map meanwhile.
std::string check_reserve(json r, bool cap_sys_admin, bool* noise) {
  *noise = false;
  std::ostringstream why;
  if (r["measured"] != true) return "reserve not measured: " + r.dump(2);
  if (r["mib"] != 8 || r["pages"] != 8 * 256) why << "mib/pages wrong; ";
  if (!r["level2_splits_delta"].is_number_integer()) return "no level2_splits_delta: " + r.dump(2);
  const auto d2 = r["level2_splits_delta"].get<std::int64_t>();
  if (d2 < 0) why << "level2 splits delta negative; ";
  if (r["pages_present"] != 8 * 256) why << "not every touched page is present in pagemap; ";
  if (cap_sys_admin && r["pagemap_status"] == "needs root") why << "pagemap says needs root although root; ";
  if (!r["distinct_2m_regions"].is_null()) {
    const auto regions = r["distinct_2m_regions"].get<std::int64_t>();
    // 8 MiB of 4 KiB pages spans at least 4 regions of 2 MiB and at most one per page.
    if (regions < 4 || regions > 8 * 256) why << "distinct_2m_regions out of range; ";
    if (d2 > regions) {
      *noise = true;
      why << "more level2 splits (" << d2 << ") than 2 MiB regions (" << regions << "); ";
    }
  } else if (cap_sys_admin && r["pagemap_status"] == "ok") {
    why << "pagemap ok but no regions; ";
  }
  if (machine() == "x86_64" && r["directmap4k_delta_kb"].is_number_integer() &&
      r["level2_collapses_delta"].is_number_integer()) {
    // Each 2M -> 4K split moves 2048 kB into DirectMap4k; a collapse moves it back.
    const auto dm4k = r["directmap4k_delta_kb"].get<std::int64_t>();
    const auto c2 = r["level2_collapses_delta"].get<std::int64_t>();
    if (dm4k != (d2 - c2) * 2048) {
      *noise = true;
      why << "DirectMap4k delta " << dm4k << " kB is not 2048 kB per split; ";
    }
  }
  const std::string s = why.str();
  return s.empty() ? s : s + "\n" + r.dump(2);
}

TEST(ProbeCommand, ReserveSplitsAtMostOnePer2MiBRegion) {
  const bool cap_sys_admin = host::has_cap(my_cap_eff(), kCapSysAdmin);
  // Another process splitting the direct map during the measurement (anything using
  // memfd_secret) adds to the delta. Such noise gets up to three runs; a broken report
  // does not.
  std::string failures;
  for (int attempt = 0; attempt < 3; ++attempt) {
    const ProcResult run = attempt == 0 ? probe_run() : run_exmem(kProbeArgs);
    ASSERT_EQ(run.exit_code, 0) << describe(run);
    auto j = parse_json(run);
    ASSERT_TRUE(j.has_value());
    bool noise = false;
    const std::string why = check_reserve((*j)["reserve"], cap_sys_admin, &noise);
    if (why.empty()) {
      if (cap_sys_admin) {
        EXPECT_EQ((*j)["reserve"]["pagemap_status"], "ok")
            << "as root, pagemap should show the pfns of memfd_secret pages: " << (*j)["reserve"].dump(2);
      }
      return;
    }
    failures += "attempt " + std::to_string(attempt + 1) + ": " + why + "\n";
    if (!noise) break;
  }
  FAIL() << failures;
}

TEST(ProbeCommand, HumanReportNamesEverySection) {
  const ProcResult r = run_exmem({"probe", "--fault-pages", "16", "--reserve-mib", "8"});
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  for (const char* s : {"memfd_secret", "RLIMIT_MEMLOCK", "CAP_IPC_LOCK", "Hibernation", "DirectMap4k",
                        "direct_map_level2_splits", "First-touch fault cost", "median", "p90", "ratio",
                        "Reserve 8 MiB", "distinct 2 MiB regions"}) {
    EXPECT_NE(r.out.find(s), std::string::npos) << "missing '" << s << "'\n" << describe(r);
  }
  EXPECT_TRUE(r.err.empty()) << describe(r);
}

TEST(ProbeCommand, NoMeasureSkipsMeasurementsWithStableKeys) {
  const ProcResult r = run_exmem({"probe", "--json", "--no-measure"});
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  auto j = parse_json(r);
  ASSERT_TRUE(j.has_value());
  const std::vector<std::string> sections{"system",     "memfd_secret", "memlock", "hibernation",
                                          "direct_map", "fault_cost",   "reserve"};
  std::vector<std::string> keys;
  const auto ordered = nlohmann::ordered_json::parse(r.out);
  for (const auto& item : ordered.items()) keys.push_back(item.key());
  EXPECT_EQ(keys, sections) << "top-level keys and their order are part of the interface";
  EXPECT_EQ((*j)["fault_cost"]["measured"], false);
  EXPECT_TRUE((*j)["fault_cost"]["secret_ns_median"].is_null());
  EXPECT_EQ((*j)["reserve"]["measured"], false);
  EXPECT_TRUE((*j)["reserve"]["level2_splits_delta"].is_null());
  EXPECT_TRUE((*j)["reserve"]["distinct_2m_regions"].is_null());
  EXPECT_EQ((*j)["reserve"]["mib"], 64) << "the default --reserve-mib is 64";
  EXPECT_EQ((*j)["fault_cost"]["pages"], 256) << "the default --fault-pages is 256";
}

// Bad input: a non-zero exit, a message on stderr naming the option, nothing on stdout.
void expect_rejected(const std::vector<std::string>& extra, const std::string& option) {
  std::vector<std::string> args{"probe", "--json"};
  args.insert(args.end(), extra.begin(), extra.end());
  const ProcResult r = run_exmem(args);
  EXPECT_NE(r.exit_code, 0) << describe(r);
  EXPECT_GT(r.exit_code, 0) << "must exit, not crash: " << describe(r);
  EXPECT_NE(r.err.find(option), std::string::npos) << describe(r);
  EXPECT_TRUE(r.out.empty()) << "nothing measured or printed on bad input: " << describe(r);
}

TEST(ProbeRejects, ReserveMibZero) { expect_rejected({"--reserve-mib", "0"}, "--reserve-mib"); }
TEST(ProbeRejects, ReserveMibNotANumber) { expect_rejected({"--reserve-mib", "abc"}, "--reserve-mib"); }
TEST(ProbeRejects, ReserveMibTooLarge) { expect_rejected({"--reserve-mib", "65537"}, "--reserve-mib"); }
TEST(ProbeRejects, ReserveMibNegative) { expect_rejected({"--reserve-mib", "-4"}, "--reserve-mib"); }
TEST(ProbeRejects, FaultPagesZero) { expect_rejected({"--fault-pages", "0"}, "--fault-pages"); }
TEST(ProbeRejects, FaultPagesExponent) { expect_rejected({"--fault-pages", "1e3"}, "--fault-pages"); }
TEST(ProbeRejects, NoMeasureWithReserveMib) {
  expect_rejected({"--no-measure", "--reserve-mib", "8"}, "--no-measure");
}

TEST(ProbeCommand, ExpectedFormIsInTheError) {
  const ProcResult r = run_exmem({"probe", "--reserve-mib", "abc"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--reserve-mib: expected a whole number of MiB from 1 to 65536, got 'abc'"),
            std::string::npos)
      << describe(r);
}

TEST(ProbeCommand, HelpHasExamples) {
  const ProcResult r = run_exmem({"probe", "--help"});
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  for (const char* s : {"--json", "--fault-pages", "--reserve-mib", "--no-measure", "Examples:", "exmem probe --json"}) {
    EXPECT_NE(r.out.find(s), std::string::npos) << "missing '" << s << "'\n" << describe(r);
  }
}

// Under a seccomp filter that answers ENOSYS for memfd_secret, the probe says so with
// the same sentence host gives the library, and the measurements say why they were skipped.
TEST(ProbeCommand, ASeccompFilterIsDiagnosedAsHostDiagnosesIt) {
  const ProcResult r = run_exmem({"probe", "--json", "--fault-pages", "16", "--reserve-mib", "8"}, [] {
    std::string why;
    if (!exmem_test::block_memfd_secret(&why)) {
      std::fprintf(stderr, "cannot block memfd_secret: %s\n", why.c_str());
      ::_exit(90);
    }
  });
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  auto j = parse_json(r);
  ASSERT_TRUE(j.has_value());
  json& m = (*j)["memfd_secret"];
  EXPECT_EQ(m["available"], false) << m.dump(2);
  EXPECT_EQ(m["errno"], ENOSYS);
  EXPECT_EQ(m["errno_name"], "ENOSYS");
  EXPECT_EQ(m["seccomp_mode"], 2);
  // What the library's message says for the same errno under the same filter.
  host::SecretFacts f = host::secret_facts(ENOSYS);
  f.seccomp_mode = 2;
  EXPECT_EQ(m["reason"], host::secret_reason(f));
  EXPECT_NE(m["reason"].get<std::string>().find("seccomp filter"), std::string::npos) << m.dump(2);
  for (const char* section : {"fault_cost", "reserve"}) {
    json& s = (*j)[section];
    EXPECT_EQ(s["measured"], false) << s.dump(2);
    EXPECT_EQ(s["error"], "memfd_secret is not available: " + m["reason"].get<std::string>()) << s.dump(2);
  }
}

// Without CAP_IPC_LOCK and under a 1 MiB RLIMIT_MEMLOCK, the 8 MiB reservation is refused
// with EAGAIN: the report says so, with the limit, the amount and the remedies, and the
// run goes on (the 16-page fault measurement fits under the limit).
TEST(ProbeCommand, MemlockRefusalIsReportedAndTheRunContinues) {
  constexpr rlim_t kLimit = 1 << 20;
  const ProcResult r = run_exmem({"probe", "--json", "--fault-pages", "16", "--reserve-mib", "8"}, [] {
    // Dropping from the bounding set keeps the capability out of the exec'd command even
    // for root; without CAP_SETPCAP this fails, and the test checks what it got.
    (void)::prctl(PR_CAPBSET_DROP, kCapIpcLock, 0, 0, 0);
    const rlimit rl{kLimit, kLimit};
    (void)::setrlimit(RLIMIT_MEMLOCK, &rl);
  });
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  auto j = parse_json(r);
  ASSERT_TRUE(j.has_value());
  if ((*j)["memlock"]["cap_ipc_lock"] == true) {
    GTEST_SKIP() << "could not drop CAP_IPC_LOCK for the child (needs CAP_SETPCAP)";
  }
  if ((*j)["memfd_secret"]["available"] != true) FAIL() << "memfd_secret unavailable: " << (*j)["memfd_secret"];
  EXPECT_EQ((*j)["memlock"]["soft_bytes"], kLimit);
  json& res = (*j)["reserve"];
  EXPECT_EQ(res["measured"], false) << res.dump(2);
  ASSERT_TRUE(res["error"].is_string()) << res.dump(2);
  const std::string err = res["error"].get<std::string>();
  for (const char* s : {"RLIMIT_MEMLOCK", "EAGAIN", "8388608", "1048576", "ulimit -l", "limits.conf", "CAP_IPC_LOCK"}) {
    EXPECT_NE(err.find(s), std::string::npos) << "missing '" << s << "' in: " << err;
  }
  EXPECT_EQ(res["asked_bytes"], 8U << 20);
  EXPECT_EQ(res["memlock_soft_bytes"], kLimit);
  EXPECT_EQ((*j)["fault_cost"]["measured"], true) << "the other sections go on: " << (*j)["fault_cost"].dump(2);
}

}  // namespace
