// Tests of `exmem probe --cost`: its pure half (figure statistics, the hypervisor's
// CPUID vendor, the figures derived from raw samples, the costs file of
// COSTS_FORMAT.md "exmem-costs/1"), and the built command run as a real process:
// its refusals, and one real, small measurement on this machine's kernel.
#include <fcntl.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "probe_cost.hpp"

#ifndef EXMEM_BIN
#error "EXMEM_BIN (path of the built exmem command) must be defined"
#endif

namespace {

namespace probe = exmem::cli::probe;
using nlohmann::json;

// ---------------------------------------------------------------------------------
// Figures

TEST(ProbeCostFigure, MedianAndQuartilesByNearestRank) {
  const probe::Figure f = probe::figure_from_samples({5.0, 1.0, 3.0, 2.0, 4.0}, "how");
  EXPECT_DOUBLE_EQ(f.ns, 3.0);
  ASSERT_TRUE(f.low && f.high);
  EXPECT_DOUBLE_EQ(*f.low, 2.0);
  EXPECT_DOUBLE_EQ(*f.high, 4.0);
  EXPECT_EQ(f.runs, 5U);
  EXPECT_TRUE(f.measured);
  EXPECT_EQ(f.how, "how");
}

TEST(ProbeCostFigure, RoundsToATenthOfANanosecond) {
  const probe::Figure f = probe::figure_from_samples({12.345, 12.345, 12.345}, "");
  EXPECT_DOUBLE_EQ(f.ns, 12.3);
}

TEST(ProbeCostFigure, OneSampleHasNoSpreadAndNoneIsNotMeasured) {
  const probe::Figure one = probe::figure_from_samples({7.0}, "");
  EXPECT_DOUBLE_EQ(one.ns, 7.0);
  EXPECT_FALSE(one.low);
  EXPECT_FALSE(one.high);
  EXPECT_EQ(one.runs, 1U);
  const probe::Figure none = probe::figure_from_samples({}, "");
  EXPECT_FALSE(none.measured);
  EXPECT_EQ(none.runs, 0U);
}

TEST(ProbeCostFigure, NegativeDifferencesAreClampedToZeroWithANote) {
  const probe::Figure f = probe::clamp_nonnegative(probe::figure_from_samples({-3.0, -1.0, 2.0}, "diff."));
  EXPECT_DOUBLE_EQ(f.ns, 0.0);
  ASSERT_TRUE(f.low && f.high);
  EXPECT_DOUBLE_EQ(*f.low, 0.0);
  EXPECT_DOUBLE_EQ(*f.high, 2.0);
  EXPECT_NE(f.how.find("-1.0 ns [-3.0, 2.0]"), std::string::npos) << f.how;
  EXPECT_NE(f.how.find("clamped to 0"), std::string::npos) << f.how;
  const probe::Figure pos = probe::clamp_nonnegative(probe::figure_from_samples({1.0, 2.0}, "diff."));
  EXPECT_EQ(pos.how, "diff.");
}

// arch/x86/mm/tlb.c: tlb_single_page_flush_ceiling's comment, "Each single flush is about 100 ns".
TEST(ProbeCostFigure, SinglePageFlushIsTheKernelsConstantNotMeasured) {
  const probe::Figure f = probe::single_page_flush_constant();
  EXPECT_DOUBLE_EQ(f.ns, 100.0);
  EXPECT_FALSE(f.measured);
  EXPECT_EQ(f.runs, 0U);
  EXPECT_NE(f.how.find("arch/x86/mm/tlb.c"), std::string::npos);
}

TEST(ProbeCostFigure, WorkingSetsGrowByFourUpToTheSmallerGroup) {
  EXPECT_EQ(probe::working_sets(3026, 4096), (std::vector<std::uint64_t>{64, 256, 1024, 3026}));
  EXPECT_EQ(probe::working_sets(4096, 5000), (std::vector<std::uint64_t>{64, 256, 1024, 4096}));
  EXPECT_EQ(probe::working_sets(100, 5000), (std::vector<std::uint64_t>{64}));
  EXPECT_TRUE(probe::working_sets(63, 5000).empty());
  EXPECT_EQ(probe::working_sets(20000, 16384), (std::vector<std::uint64_t>{64, 256, 1024, 4096, 16384}));
}

// ---------------------------------------------------------------------------------
// Hypervisor: CPUID leaf 0x40000000's 12 bytes (EBX, ECX, EDX)

TEST(ProbeCostHypervisor, KnownVendorsAreNamed) {
  EXPECT_EQ(probe::hypervisor_name(std::string_view("KVMKVMKVM\0\0\0", 12)), "KVM");
  EXPECT_EQ(probe::hypervisor_name("Microsoft Hv"), "Hyper-V");
  EXPECT_EQ(probe::hypervisor_name("VMwareVMware"), "VMware");
  EXPECT_EQ(probe::hypervisor_name("XenVMMXenVMM"), "Xen");
  EXPECT_EQ(probe::hypervisor_name("bhyve bhyve "), "bhyve");
  EXPECT_EQ(probe::hypervisor_name("TCGTCGTCGTCG"), "QEMU TCG");
}

TEST(ProbeCostHypervisor, UnknownVendorsAreQuotedPrintably) {
  EXPECT_EQ(probe::hypervisor_name(std::string_view("ABC\x01\0\0\0\0\0\0\0\0", 12)), "unknown (\"ABC?\")");
  EXPECT_EQ(probe::hypervisor_name("KVMKVMKVMX"), "unknown (\"KVMKVMKVMX\")");
}

TEST(ProbeCostHypervisor, ThisMachineIsReadConsistently) {
  const probe::Hypervisor h = probe::read_hypervisor();
  EXPECT_EQ(h.present, h.name.has_value());
  if (h.present) {
    EXPECT_FALSE(h.vendor_raw.empty());
  }
}

// ---------------------------------------------------------------------------------
// Derivation

probe::CostRaw sample_raw() {
  probe::CostRaw r;
  r.cpus = 2;
  r.calls = 1000;
  r.busy_one = r.busy_all = 1;
  r.fault_pages_per_run = 128;
  // smallest: split - control = -10 in every run (the paths' own difference);
  // largest: split - control = 30, 40, 20 -> walk 40, 50, 30 -> median 40.
  r.sweep.push_back({64, {100, 100, 100}, {110, 110, 110}});
  r.sweep.push_back({4096, {330, 340, 320}, {300, 300, 300}});
  r.anon = {1000, 1000, 1000};
  r.secret_all = {5000, 6000, 4000};
  r.secret_one = {5000, 6000, 4000};
  r.secret_idle = {3000, 3000, 3000};
  r.placement_faults = 100;
  return r;
}

TEST(ProbeCostDerive, WalkIsTheLargestSetsDifferenceLessTheSmallestsPerRun) {
  const probe::Costs c = probe::derive_costs(sample_raw(), {});
  EXPECT_DOUBLE_EQ(c.walk.ns, 40.0);
  EXPECT_DOUBLE_EQ(*c.walk.low, 30.0);  // nearest rank of {30, 40, 50} at 0.25
  EXPECT_DOUBLE_EQ(*c.walk.high, 50.0);
  EXPECT_EQ(c.walk.runs, 3U);
  EXPECT_DOUBLE_EQ(c.kernel_access.ns, 110.0);  // control, smallest working set
  ASSERT_EQ(c.sweep.size(), 2U);
  EXPECT_DOUBLE_EQ(c.sweep[1].split.ns, 330.0);
}

TEST(ProbeCostDerive, IpiRoundTripIsSecretAllBusyOverAnonymousPerRun) {
  const probe::Costs c = probe::derive_costs(sample_raw(), {});
  EXPECT_DOUBLE_EQ(c.ipi_round_trip.ns, 4000.0);
  EXPECT_TRUE(c.ipi_round_trip.measured);
  ASSERT_TRUE(c.faults);
  EXPECT_DOUBLE_EQ(c.faults->secret_idle.ns, 3000.0);
}

TEST(ProbeCostDerive, FullFlushFromSplittingFaultsLessTheNonSplittingLessIpi) {
  probe::CostRaw r = sample_raw();
  r.split_faults = {20000, 22000, 24000};
  r.nonsplit_faults_runs = {5000, 5000};
  const probe::Costs c = probe::derive_costs(r, {});
  EXPECT_TRUE(c.full_flush.measured);
  EXPECT_DOUBLE_EQ(c.full_flush.ns, 22000.0 - 5000.0 - 4000.0);
  EXPECT_EQ(c.full_flush.runs, 3U);
  EXPECT_DOUBLE_EQ(c.faults->secret_split.ns, 22000.0);
}

TEST(ProbeCostDerive, FullFlushWithoutSplittingFaultsIsTheKernelsBreakEvenNotMeasured) {
  const probe::Costs c = probe::derive_costs(sample_raw(), {});
  EXPECT_FALSE(c.full_flush.measured);
  EXPECT_DOUBLE_EQ(c.full_flush.ns, 3300.0);
  EXPECT_NE(c.full_flush.how.find("tlb_single_page_flush_ceiling"), std::string::npos);
}

TEST(ProbeCostDerive, NegativeWalkIsClamped) {
  probe::CostRaw r = sample_raw();
  r.sweep[1].split = {290, 290, 290};  // (290 - 320) - (100 - 110) = -20
  r.sweep[1].control = {320, 320, 320};
  const probe::Costs c = probe::derive_costs(r, {});
  EXPECT_DOUBLE_EQ(c.walk.ns, 0.0);
  EXPECT_NE(c.walk.how.find("clamped"), std::string::npos);
}

TEST(ProbeCostDerive, RefusesRawSamplesWithoutASweep) {
  probe::CostRaw r = sample_raw();
  r.sweep.clear();
  EXPECT_THROW(probe::derive_costs(r, {}), std::runtime_error);
}

TEST(ProbeCostDerive, RawSamplesSurviveTheTripThroughJson) {
  probe::CostRaw r = sample_raw();
  r.split_faults = {1, 2};
  r.reused_pages = 77;
  r.control_group_regions = 8;
  const probe::CostRaw back = probe::raw_from_json(json::parse(probe::raw_to_json(r).dump()));
  EXPECT_EQ(probe::raw_to_json(back), probe::raw_to_json(r));
  EXPECT_EQ(back.reused_pages, 77U);
}

// ---------------------------------------------------------------------------------
// The costs file (COSTS_FORMAT.md)

std::vector<std::string> keys_of(const nlohmann::ordered_json& j) {
  std::vector<std::string> k;
  for (auto it = j.begin(); it != j.end(); ++it) k.push_back(it.key());
  return k;
}

const std::vector<std::string> kFigureKeys{"ns", "low", "high", "runs", "measured", "how"};
const std::vector<std::string> kFigureNames{"walk_ns", "ipi_round_trip_ns", "single_page_flush_ns", "full_flush_ns",
                                            "kernel_access_ns"};

// Checks one FIGURE as COSTS_FORMAT.md defines it; returns what is wrong, empty if nothing.
std::string figure_problem(const json& f) {
  for (const auto& k : kFigureKeys) {
    if (!f.contains(k)) return "missing key " + k + " in " + f.dump();
  }
  if (!f["ns"].is_number() || f["ns"].get<double>() < 0.0) return "ns must be a number >= 0: " + f.dump();
  if (!f["runs"].is_number_unsigned()) return "runs must be a whole number: " + f.dump();
  if (!f["measured"].is_boolean() || !f["how"].is_string() || f["how"].get<std::string>().empty()) {
    return "measured must be a boolean and how a sentence: " + f.dump();
  }
  for (const char* k : {"low", "high"}) {
    if (!f[k].is_null() && !f[k].is_number()) return std::string(k) + " must be a number or null: " + f.dump();
  }
  if (f["low"].is_number() && f["low"].get<double>() > f["ns"].get<double>()) return "low > ns: " + f.dump();
  if (f["high"].is_number() && f["high"].get<double>() < f["ns"].get<double>()) return "high < ns: " + f.dump();
  return {};
}

TEST(ProbeCostFile, KeysAndOrderFollowCostsFormat) {
  probe::CostSource src;
  src.exmem_version = "0.1.0";
  src.kernel = "6.18.0";
  src.hypervisor = "KVM";
  src.pti = true;
  probe::Costs c = probe::derive_costs(sample_raw(), src);
  c.counters = probe::CostCounters{1, 2, 3, 4};
  const nlohmann::ordered_json j = probe::costs_to_json(c);
  EXPECT_EQ(keys_of(j), (std::vector<std::string>{"format", "source", "figures", "sweep", "faults", "counters"}));
  EXPECT_EQ(j["format"], "exmem-costs/1");
  EXPECT_EQ(keys_of(j["source"]), (std::vector<std::string>{"tool", "exmem_version", "date", "kernel", "cpu_model",
                                                            "cpu_mhz", "cpus", "hypervisor", "pti"}));
  EXPECT_EQ(j["source"]["tool"], "exmem probe --cost");
  EXPECT_TRUE(j["source"]["date"].is_null());  // unknown values are null, never omitted
  EXPECT_TRUE(j["source"]["cpu_mhz"].is_null());
  EXPECT_EQ(j["source"]["hypervisor"], "KVM");
  EXPECT_EQ(keys_of(j["figures"]), kFigureNames);
  for (const auto& n : kFigureNames) {
    EXPECT_EQ(keys_of(j["figures"][n]), kFigureKeys) << n;
    EXPECT_EQ(figure_problem(json::parse(j["figures"][n].dump())), "") << n;
  }
  ASSERT_EQ(j["sweep"].size(), 2U);
  EXPECT_EQ(keys_of(j["sweep"][0]), (std::vector<std::string>{"pages", "split_ns", "control_ns"}));
  EXPECT_EQ(keys_of(j["faults"]), (std::vector<std::string>{"anon_ns", "secret_idle_ns", "secret_one_busy_ns",
                                                            "secret_all_busy_ns", "secret_split_ns"}));
  EXPECT_EQ(keys_of(j["counters"]),
            (std::vector<std::string>{"direct_map_level2_splits_before", "direct_map_level2_splits_after",
                                      "directmap4k_kb_before", "directmap4k_kb_after"}));
  EXPECT_TRUE(j["figures"]["single_page_flush_ns"]["low"].is_null());
}

TEST(ProbeCostFile, OptionalSectionsAreLeftOutWhenUnknown) {
  probe::Costs c = probe::derive_costs(sample_raw(), {});
  c.faults.reset();
  const nlohmann::ordered_json j = probe::costs_to_json(c);
  EXPECT_FALSE(j.contains("faults"));
  EXPECT_FALSE(j.contains("counters"));
}

// ---------------------------------------------------------------------------------
// The built command

struct CostRun {
  int exit_code = -1;
  std::string out, err;
  double seconds = 0.0;
};

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// EXMEM_BIN with args, stdin from /dev/null (not a terminal), stdout and stderr captured.
CostRun run_exmem(const std::vector<std::string>& args) {
  const std::string dir = std::filesystem::temp_directory_path().string();
  const std::string out = dir + "/exmem-cost-out-" + std::to_string(::getpid());
  const std::string err = dir + "/exmem-cost-err-" + std::to_string(::getpid());
  std::vector<std::string> argv_s{EXMEM_BIN};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  const auto t0 = std::chrono::steady_clock::now();
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int in = ::open("/dev/null", O_RDONLY);
    const int o = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    const int e = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (in < 0 || o < 0 || e < 0) ::_exit(126);
    ::dup2(in, STDIN_FILENO);
    ::dup2(o, STDOUT_FILENO);
    ::dup2(e, STDERR_FILENO);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  CostRun r;
  int status = 0;
  if (pid > 0) ::waitpid(pid, &status, 0);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
  r.out = slurp(out);
  r.err = slurp(err);
  std::filesystem::remove(out);
  std::filesystem::remove(err);
  return r;
}

std::string describe(const CostRun& r) {
  return "exit " + std::to_string(r.exit_code) + "\n--- stdout ---\n" + r.out + "\n--- stderr ---\n" + r.err;
}

TEST(ProbeCostCommand, RefusesWithoutYesWhenStdinIsNotATerminal) {
  const CostRun r = run_exmem({"probe", "--cost"});
  EXPECT_EQ(r.exit_code, 1) << describe(r);
  EXPECT_TRUE(r.out.empty()) << describe(r);
  // As root it gets past the root check to the question; otherwise the root check refuses.
  if (::geteuid() == 0) {
    EXPECT_NE(r.err.find("--yes"), std::string::npos) << describe(r);
    EXPECT_NE(r.err.find("not a terminal"), std::string::npos) << describe(r);
  } else {
    EXPECT_NE(r.err.find("needs root"), std::string::npos) << describe(r);
  }
}

// On a terminal, without --yes: it says what it will do (the MiB of secret memory, the
// 2 MiB regions left split until reboot, the private ramfs) and does nothing unless
// answered "yes".
TEST(ProbeCostCommand, OnATerminalItAsksAndAnythingButYesDoesNothing) {
  if (::geteuid() != 0) FAIL() << "exmem probe --cost needs root; run the tests as root";
  const int master = ::posix_openpt(O_RDWR | O_NOCTTY);
  ASSERT_GE(master, 0);
  ASSERT_EQ(::grantpt(master), 0);
  ASSERT_EQ(::unlockpt(master), 0);
  const std::string slave = ::ptsname(master);
  const std::string err = std::filesystem::temp_directory_path().string() + "/exmem-cost-tty-" +
                          std::to_string(::getpid());
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::setsid();
    const int s = ::open(slave.c_str(), O_RDWR);
    const int e = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (s < 0 || e < 0) ::_exit(126);
    ::dup2(s, STDIN_FILENO);
    ::dup2(e, STDOUT_FILENO);
    ::dup2(e, STDERR_FILENO);
    ::execl(EXMEM_BIN, EXMEM_BIN, "probe", "--cost", "--cost-mib", "32", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ASSERT_GT(pid, 0);
  ASSERT_EQ(::write(master, "no\n", 3), 3);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ::close(master);
  const std::string text = slurp(err);
  std::filesystem::remove(err);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << text;
  for (const char* s : {"32 MiB of secret memory", "regions of 2 MiB", "until reboot", "private ramfs",
                        "Type yes to continue", "not confirmed; nothing was done"}) {
    EXPECT_NE(text.find(s), std::string::npos) << s << "\n" << text;
  }
}

TEST(ProbeCostCommand, CostOptionsNeedCost) {
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"probe", "--yes"}, {"probe", "--runs", "5"}, {"probe", "--save", "/tmp/x"}, {"probe", "--cost-mib", "32"},
           {"probe", "--split-mib", "8"}}) {
    const CostRun r = run_exmem(args);
    EXPECT_NE(r.exit_code, 0) << describe(r);
    EXPECT_NE(r.err.find("requires --cost"), std::string::npos) << describe(r);
  }
}

TEST(ProbeCostCommand, BoundsOfRunsAndCostMib) {
  for (const auto& args : std::vector<std::vector<std::string>>{{"probe", "--cost", "--yes", "--runs", "2"},
                                                                 {"probe", "--cost", "--yes", "--runs", "102"},
                                                                 {"probe", "--cost", "--yes", "--cost-mib", "0"},
                                                                 {"probe", "--cost", "--yes", "--cost-mib", "1025"},
                                                                 {"probe", "--cost", "--yes", "--split-mib", "16385"},
                                                                 {"probe", "--cost", "--yes", "--split-mib", "-1"},
                                                                 {"probe", "--cost", "--no-measure"}}) {
    const CostRun r = run_exmem(args);
    EXPECT_NE(r.exit_code, 0) << describe(r);
    EXPECT_TRUE(r.out.empty()) << describe(r);
  }
}

TEST(ProbeCostCommand, HelpExplainsCostWithExamples) {
  const CostRun r = run_exmem({"probe", "--help"});
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  for (const char* s :
       {"--cost", "--yes", "--save", "--runs", "--cost-mib", "--split-mib", "exmem probe --cost --yes --save"}) {
    EXPECT_NE(r.out.find(s), std::string::npos) << s << "\n" << r.out;
  }
}

TEST(ProbeCostCommand, AnUnwritableFileIsNamedBeforeAnythingIsMeasured) {
  if (::geteuid() != 0) FAIL() << "exmem probe --cost needs root; run the tests as root";
  const std::string bad = "/nonexistent-exmem-dir/costs.json";
  const CostRun r = run_exmem({"probe", "--cost", "--yes", "--save", bad});
  EXPECT_EQ(r.exit_code, 1) << describe(r);
  EXPECT_NE(r.err.find(bad), std::string::npos) << describe(r);
  EXPECT_LT(r.seconds, 5.0) << "it should refuse before measuring";
}

// One real run on this machine's kernel: the file parses as COSTS_FORMAT.md says, every
// figure is there, the split group is not empty (ramfs pages did land in regions holding
// live secret pages), and direct_map_level2_splits never decreases (secretmem's splits do
// not heal: set_direct_map_default_noflush restores the entry, not the 2 MiB leaf).
TEST(ProbeCostCommand, ARealSmallRunWritesACompleteCostsFile) {
  if (::geteuid() != 0) FAIL() << "exmem probe --cost needs root; run the tests as root";
  const std::string file =
      std::filesystem::temp_directory_path().string() + "/exmem-costs-" + std::to_string(::getpid()) + ".json";
  const CostRun r = run_exmem(
      {"probe", "--cost", "--yes", "--runs", "3", "--cost-mib", "32", "--split-mib", "16", "--save", file, "--json"});
  ASSERT_EQ(r.exit_code, 0) << "memfd_secret missing or the probe failed:\n" << describe(r);
  EXPECT_LT(r.seconds, 60.0);
  EXPECT_FALSE(std::filesystem::exists(file + ".tmp"));
  json f;
  ASSERT_NO_THROW(f = json::parse(slurp(file))) << slurp(file);
  std::filesystem::remove(file);
  EXPECT_EQ(f["format"], "exmem-costs/1");
  for (const char* k : {"tool", "exmem_version", "date", "kernel", "cpu_model", "cpu_mhz", "cpus", "hypervisor", "pti"}) {
    EXPECT_TRUE(f["source"].contains(k)) << k;
  }
  for (const auto& n : kFigureNames) {
    ASSERT_TRUE(f["figures"].contains(n)) << n;
    EXPECT_EQ(figure_problem(f["figures"][n]), "") << n;
  }
  EXPECT_TRUE(f["figures"]["walk_ns"]["measured"].get<bool>());
  EXPECT_TRUE(f["figures"]["kernel_access_ns"]["measured"].get<bool>());
  EXPECT_GT(f["figures"]["kernel_access_ns"]["ns"].get<double>(), 0.0);
  EXPECT_EQ(f["figures"]["kernel_access_ns"]["runs"], 3);
  EXPECT_FALSE(f["figures"]["single_page_flush_ns"]["measured"].get<bool>());
  ASSERT_FALSE(f["sweep"].empty());
  EXPECT_EQ(f["sweep"][0]["pages"], 64);
  for (const auto& w : f["sweep"]) {
    EXPECT_EQ(figure_problem(w["split_ns"]), "");
    EXPECT_EQ(figure_problem(w["control_ns"]), "");
  }
  ASSERT_TRUE(f.contains("counters"));
  EXPECT_GE(f["counters"]["direct_map_level2_splits_after"].get<std::uint64_t>(),
            f["counters"]["direct_map_level2_splits_before"].get<std::uint64_t>());

  json report;
  ASSERT_NO_THROW(report = json::parse(r.out)) << describe(r);
  EXPECT_EQ(report["costs"], f) << "--json's costs and the saved file differ";
  EXPECT_GT(report["placement"]["split_group_pages"].get<std::uint64_t>(), 0U) << report["placement"];
  EXPECT_GT(report["placement"]["control_group_pages"].get<std::uint64_t>(), 0U) << report["placement"];
  EXPECT_GT(report["placement"]["reused_pages"].get<std::uint64_t>(), 0U) << report["placement"];
  EXPECT_EQ(report["saved"], file);
  // The search for unsplit regions ran, and stopped at its budget (16 MiB = 4096
  // pages) or after the split faults it wanted.
  const auto searched = report["faults"]["search_pages"].get<std::uint64_t>();
  const auto found = report["faults"]["search_split_faults"].get<std::uint64_t>();
  EXPECT_GT(searched, 0U) << report["faults"];
  EXPECT_LE(searched, 4096U) << report["faults"];
  EXPECT_TRUE(searched + 512 > 4096 || found >= 32) << report["faults"];
}

}  // namespace
