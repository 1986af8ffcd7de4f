// Tests of workload/scenario: every shipped scenario reads, every key lands in
// the machine and workload configs, and each kind of malformed file is an
// error naming the file, the line and column, and what was expected.
#include "model/workload/scenario.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "model/machine.hpp"
#include "model/policy/policy.hpp"
#include "model/tlb/tlb.hpp"
#include "model/workload/synthetic.hpp"

namespace exmem::model::workload {
namespace {

std::filesystem::path scenarios_dir() {
  return std::filesystem::path(EXMEM_SCENARIOS_DIR);
}

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

TEST(Scenario, EveryShippedScenarioReadsAndSaysWhatItRepresents) {
  const std::filesystem::path dir = scenarios_dir();
  ASSERT_TRUE(std::filesystem::is_directory(dir)) << dir;
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() != ".toml") continue;
    SCOPED_TRACE(e.path().string());
    const std::string text = slurp(e.path());
    // Each opens with a comment saying what it represents.
    ASSERT_EQ(text.rfind("# ", 0), 0u);
    Scenario s;
    ASSERT_NO_THROW(s = load_scenario(e.path().string()));
    EXPECT_EQ(s.name, e.path().stem().string());
    EXPECT_EQ(s.source, e.path().string());
    EXPECT_FALSE(s.description.empty());
    EXPECT_FALSE(s.policies.empty());
    for (const std::string& p : s.policies) EXPECT_NE(policy::Registry::builtin().find(p), nullptr) << p;
    EXPECT_GT(s.workload.events, 0u);
    EXPECT_NO_THROW(s.workload.validate());
    EXPECT_NO_THROW((void)tlb::TlbConfig::preset(s.tlb));
    names.push_back(s.name);
  }
  for (const char* want : {"default", "laptop-password-manager", "key-server", "pool-starvation", "vm-host-1tib",
                           "vm-host-4tib", "wp-page-tables-host"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), want), names.end()) << want;
  }
}

// The VM hosts fault in all of their guests' memory: 2 MiB folios (one event
// per folio faulted, one per folio freed at teardown), and events enough for
// every guest to be wholly faulted in. The shipped vm-host-1tib is run shrunk
// 64 times (RAM, guest size and events alike, the same number of guests).
TEST(Scenario, TheVmHostsFaultInAllOfTheirGuestsMemory) {
  for (const char* name : {"vm-host-1tib", "vm-host-4tib"}) {
    SCOPED_TRACE(name);
    const Scenario s = load_scenario((scenarios_dir() / (std::string(name) + ".toml")).string());
    const WorkloadConfig& w = s.workload;
    EXPECT_EQ(w.guest_folio_order, kPageblockOrder);
    const std::uint64_t folios = w.guests * (w.guest_pages >> w.guest_folio_order);
    EXPECT_GE(static_cast<double>(w.guests * w.guest_pages * kPageSize), 0.75 * static_cast<double>(s.machine.ram_bytes));
    // Faulting every folio and freeing it at teardown are two events each,
    // within the guests' share of events.
    EXPECT_GT(static_cast<double>(w.events) * w.guest_share, 2.0 * static_cast<double>(folios));
  }
  Scenario s = load_scenario((scenarios_dir() / "vm-host-1tib.toml").string());
  constexpr std::uint64_t kShrink = 64;
  s.machine.ram_bytes /= kShrink;
  s.machine.cpus = 4;
  s.machine.policy = "upstream";
  WorkloadConfig w = s.workload;
  w.guest_pages /= kShrink;
  w.events /= kShrink;
  Machine m(s.machine);
  SyntheticWorkload run(m, w);
  const WorkloadResult r = run.run();
  EXPECT_EQ(r.guest_failures, 0u);
  EXPECT_GE(r.guest_teardowns, w.guests);  // each torn down once wholly faulted in
  EXPECT_GE(r.guest_faults, w.guests * (w.guest_pages >> w.guest_folio_order));
  const std::vector<std::string> v = m.check();
  EXPECT_TRUE(v.empty()) << v.front();
}

TEST(Scenario, TheGuestFolioIs4KiBOr2MiBAndTheSizeWholeFolios) {
  const Scenario s = parse_scenario("[guests]\nshare = 0.1\nsize = \"4MiB\"\nfolio = \"2MiB\"\n", "t");
  EXPECT_EQ(s.workload.guest_folio_order, kPageblockOrder);
  EXPECT_EQ(parse_scenario("[guests]\nshare = 0.1\n", "t").workload.guest_folio_order, 0u);
  EXPECT_THROW((void)parse_scenario("[guests]\nshare = 0.1\nsize = \"3MiB\"\nfolio = \"2MiB\"\n", "t"),
               ScenarioError);
  EXPECT_THROW((void)parse_scenario("[guests]\nfolio = \"1GiB\"\n", "t"), ScenarioError);
}

TEST(Scenario, TheDefaultScenarioIsTheSyntheticWorkloadsDefaultsOnEveryPolicy) {
  const Scenario s = load_scenario((scenarios_dir() / "default.toml").string());
  const WorkloadConfig d;
  EXPECT_EQ(s.machine.ram_bytes, 64 * GiB);
  EXPECT_EQ(s.machine.cpus, 16u);
  EXPECT_TRUE(s.machine.direct_gbpages);
  EXPECT_EQ(s.machine.collapse, CollapseMode::RoxOnly);
  EXPECT_EQ(s.tlb, "haswell");
  EXPECT_EQ(s.workload.events, d.events);
  EXPECT_EQ(s.workload.seed, d.seed);
  EXPECT_DOUBLE_EQ(s.workload.fill, d.fill);
  EXPECT_DOUBLE_EQ(s.workload.secret_share, d.secret_share);
  EXPECT_DOUBLE_EQ(s.workload.kernel_share, d.kernel_share);
  EXPECT_EQ(s.workload.secret_processes, d.secret_processes);
  EXPECT_EQ(s.workload.min_secret_file_pages, d.min_secret_file_pages);
  EXPECT_EQ(s.workload.max_secret_file_pages, d.max_secret_file_pages);
  EXPECT_DOUBLE_EQ(s.workload.secret_hold_turns, d.secret_hold_turns);
  EXPECT_DOUBLE_EQ(s.workload.fork_probability, d.fork_probability);
  EXPECT_DOUBLE_EQ(s.workload.fd_pass_probability, d.fd_pass_probability);
  EXPECT_EQ(s.policies, policy::Registry::builtin().names());
}

TEST(Scenario, EveryKeyLandsInTheMachineAndWorkloadConfigs) {
  const Scenario s = parse_scenario(R"(
description = "all keys"
[machine]
ram = "8GiB"
cpus = 6
direct_gbpages = false
pci_hole = { start = "2GiB", end = "3GiB" }
kernel_image = "32MiB"
cma = "64MiB"
thp = false
llc_per_cpu = "4MiB"
pcp_ops_per_vmstat_tick = 5000
secretmem_enable = true
memlock = "16MiB"
secretmem = "128MiB"
pool_fail = "sigbus"
collapse = "scanner"
scan_rate = 9
tlb = "zen2"
[workload]
events = 12_345
seed = 77
fill = 0.25
kernel_share = 0.2
working_set = "64MiB"
[secrets]
share = 0.3
processes = 5
min_pages = 2
max_pages = 7
hold_turns = 3.5
fork_probability = 0.1
fd_pass_probability = 0.2
[map_exclusive]
share = 0.05
max_pages = 9
[execmem]
share = 0.04
max_pages = 11
[guests]
share = 0.03
count = 2
size = "1GiB"
[page_tables]
write_protected = true
[kernel_access]
accesses = 5000
hot_set = "16MiB"
hot_fraction = 0.8
locality = "uniform"
zipf_s = 1.2
weight_page_cache = 2
weight_slab_reclaimable = 0.5
weight_kernel = 3
weight_page_tables = 0
weight_user = 0.25
accesses_per_event = 100
[run]
policies = ["upstream", "secretmem-pool-reserve", "upstream"]
)",
                                    "dir/all.toml");
  EXPECT_EQ(s.name, "all");
  EXPECT_EQ(s.source, "dir/all.toml");
  EXPECT_EQ(s.description, "all keys");
  const MachineConfig& m = s.machine;
  EXPECT_EQ(m.ram_bytes, 8 * GiB);
  EXPECT_EQ(m.cpus, 6u);
  EXPECT_FALSE(m.direct_gbpages);
  EXPECT_EQ(m.pci_hole_start, 2 * GiB);
  EXPECT_EQ(m.pci_hole_end, 3 * GiB);
  EXPECT_EQ(m.kernel_image_bytes, 32 * MiB);
  EXPECT_EQ(m.cma_bytes, 64 * MiB);
  EXPECT_FALSE(m.thp);
  EXPECT_EQ(m.llc_bytes_per_cpu, 4 * MiB);
  EXPECT_EQ(m.pcp_ops_per_vmstat_tick, 5000u);
  // They reach the allocator's configuration.
  EXPECT_EQ(m.phys_config().llc_bytes_per_cpu, 4 * MiB);
  EXPECT_EQ(m.phys_config().pcp_ops_per_vmstat_tick, 5000u);
  EXPECT_TRUE(m.secretmem_enable);
  EXPECT_EQ(m.rlimit_memlock_bytes, 16 * MiB);
  EXPECT_EQ(m.policy_params.size("secretmem", 0), 128 * MiB);
  EXPECT_EQ(m.policy_params.choice("pool_fail", "oom"), "sigbus");
  EXPECT_EQ(m.collapse, CollapseMode::Scanner);
  EXPECT_EQ(m.scan_rate, 9u);
  EXPECT_EQ(s.tlb, "zen2");
  const WorkloadConfig& w = s.workload;
  EXPECT_EQ(w.events, 12345u);
  EXPECT_EQ(w.seed, 77u);
  EXPECT_DOUBLE_EQ(w.fill, 0.25);
  EXPECT_DOUBLE_EQ(w.kernel_share, 0.2);
  EXPECT_EQ(w.working_set_pages, 64 * MiB / kPageSize);
  EXPECT_DOUBLE_EQ(w.secret_share, 0.3);
  EXPECT_EQ(w.secret_processes, 5u);
  EXPECT_EQ(w.min_secret_file_pages, 2u);
  EXPECT_EQ(w.max_secret_file_pages, 7u);
  EXPECT_DOUBLE_EQ(w.secret_hold_turns, 3.5);
  EXPECT_DOUBLE_EQ(w.fork_probability, 0.1);
  EXPECT_DOUBLE_EQ(w.fd_pass_probability, 0.2);
  EXPECT_DOUBLE_EQ(w.map_exclusive_share, 0.05);
  EXPECT_EQ(w.map_exclusive_max_pages, 9u);
  EXPECT_DOUBLE_EQ(w.rox_share, 0.04);
  EXPECT_EQ(w.rox_max_pages, 11u);
  EXPECT_DOUBLE_EQ(w.guest_share, 0.03);
  EXPECT_EQ(w.guests, 2u);
  EXPECT_EQ(w.guest_pages, GiB / kPageSize);
  EXPECT_TRUE(w.wp_page_tables);
  const tlb::AccessConfig& k = s.kernel_access;
  EXPECT_EQ(k.accesses, 5000u);
  EXPECT_EQ(k.hot_set_bytes, 16 * MiB);
  EXPECT_DOUBLE_EQ(k.hot_fraction, 0.8);
  EXPECT_EQ(k.locality, tlb::Locality::Uniform);
  EXPECT_DOUBLE_EQ(k.zipf_s, 1.2);
  EXPECT_DOUBLE_EQ(k.weights.of(tlb::KernelPageKind::PageCache), 2.0);
  EXPECT_DOUBLE_EQ(k.weights.of(tlb::KernelPageKind::SlabReclaimable), 0.5);
  EXPECT_DOUBLE_EQ(k.weights.of(tlb::KernelPageKind::Kernel), 3.0);
  EXPECT_DOUBLE_EQ(k.weights.of(tlb::KernelPageKind::PageTables), 0.0);
  EXPECT_DOUBLE_EQ(k.weights.of(tlb::KernelPageKind::User), 0.25);
  EXPECT_EQ(k.accesses_per_event, 100u);
  // A policy named twice runs once.
  EXPECT_EQ(s.policies, (std::vector<std::string>{"upstream", "secretmem-pool-reserve"}));
}

TEST(Scenario, KeysLeftOutKeepTheDefaults) {
  const Scenario s = parse_scenario("[machine]\nram = \"2GiB\"\n", "small.toml");
  const Scenario d = default_scenario_values();
  EXPECT_EQ(s.machine.ram_bytes, 2 * GiB);
  EXPECT_EQ(s.machine.cpus, d.machine.cpus);
  EXPECT_EQ(s.workload.events, d.workload.events);
  EXPECT_EQ(s.policies, d.policies);
  EXPECT_EQ(s.tlb, d.tlb);
  EXPECT_TRUE(s.description.empty());
  EXPECT_EQ(s.machine.llc_bytes_per_cpu, 2 * MiB);
  EXPECT_EQ(s.machine.pcp_ops_per_vmstat_tick, 100000u);
  // [kernel_access] left out: the stream the cost estimate always had.
  EXPECT_EQ(s.kernel_access.accesses, 200'000u);
  EXPECT_EQ(s.kernel_access.hot_set_bytes, 64 * MiB);
  EXPECT_DOUBLE_EQ(s.kernel_access.hot_fraction, 0.95);
  EXPECT_EQ(s.kernel_access.locality, tlb::Locality::Zipf);
  EXPECT_DOUBLE_EQ(s.kernel_access.zipf_s, 0.99);
  EXPECT_EQ(s.kernel_access.accesses_per_event, tlb::kDefaultAccessesPerEvent);
}

TEST(Scenario, ADurationInSimulatedSecondsBecomesEvents) {
  Scenario s = parse_scenario("[workload]\nseconds = 10\nevents_per_second = 5000\n", "t.toml");
  EXPECT_EQ(s.workload.events, 50000u);
  EXPECT_DOUBLE_EQ(s.seconds, 10.0);
  EXPECT_DOUBLE_EQ(s.events_per_second, 5000.0);
  s = parse_scenario("[workload]\nseconds = 2.5\n", "t.toml");  // the default rate
  EXPECT_EQ(s.workload.events, static_cast<std::uint64_t>(2.5 * s.events_per_second));
  EXPECT_GT(s.events_per_second, 0.0);
}

TEST(Scenario, PolicyAllExpandsToEveryPolicy) {
  const Scenario s = parse_scenario("[run]\npolicies = \"all\"\n", "t.toml");
  EXPECT_EQ(s.policies, policy::Registry::builtin().names());
}

struct Bad {
  const char* what;
  const char* text;
  unsigned line;
  unsigned column;
  std::vector<const char*> says;  // substrings of the message
};

class MalformedScenario : public ::testing::TestWithParam<Bad> {};

TEST_P(MalformedScenario, IsAnErrorWithFileLineColumnAndTheExpectation) {
  const Bad& b = GetParam();
  try {
    (void)parse_scenario(b.text, "bad.toml");
    FAIL() << b.what << ": no error";
  } catch (const ScenarioError& e) {
    const std::string msg = e.what();
    EXPECT_EQ(e.file(), "bad.toml");
    EXPECT_EQ(e.line(), b.line) << msg;
    EXPECT_EQ(e.column(), b.column) << msg;
    EXPECT_EQ(msg.rfind(fmt::format("bad.toml:{}:{}: ", b.line, b.column), 0), 0u) << msg;
    for (const char* s : b.says) EXPECT_NE(msg.find(s), std::string::npos) << "missing \"" << s << "\" in: " << msg;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Scenario, MalformedScenario,
    ::testing::Values(
        Bad{"syntax", "[machine]\nram = \"64GiB\ncpus = 4\n", 2, 13, {"TOML syntax error"}},
        Bad{"unterminated table", "[machine\nram = \"1GiB\"\n", 1, 9, {"TOML syntax error"}},
        Bad{"unknown key",
            "[machine]\nrma = \"64GiB\"\n",
            2,
            1,
            {"unknown key \"rma\" in [machine]", "did you mean \"ram\"", "expected one of: ram, cpus"}},
        Bad{"unknown table", "[machin]\nram = \"64GiB\"\n", 1, 2, {"unknown table [machin]", "did you mean [machine]"}},
        Bad{"unknown top-level key", "seed = 3\n", 1, 1, {"unknown key \"seed\" in the top level"}},
        Bad{"wrong type",
            "[machine]\ncpus = \"16\"\n",
            2,
            8,
            {"[machine] cpus: expected a whole number from 1 to 4096, got a string \"16\""}},
        Bad{"negative", "[machine]\ncpus = -4\n", 2, 8, {"[machine] cpus", "from 1 to 4096", "got an integer -4"}},
        Bad{"negative share", "[secrets]\nshare = -0.1\n", 2, 9, {"[secrets] share: expected a number from 0 to 1"}},
        Bad{"share above one", "[workload]\nkernel_share = 1.5\n", 2, 16, {"kernel_share", "from 0 to 1"}},
        Bad{"shares over one",
            "[workload]\nkernel_share = 0.7\n[secrets]\nshare = 0.5\n",
            4,
            9,
            {"add up to at most 1", "[secrets] share 0.5", "[workload] kernel_share 0.7"}},
        Bad{"size without unit",
            "[machine]\nram = 64\n",
            2,
            7,
            {"[machine] ram", "such as \"64GiB\"", "got an integer 64"}},
        Bad{"size with a wrong unit", "[machine]\nram = \"64GB\"\n", 2, 7, {"got a string \"64GB\""}},
        Bad{"size not aligned", "[machine]\nram = \"1025MiB\"\n", 2, 7, {"a multiple of 2 MiB"}},
        Bad{"size too large", "[machine]\nram = \"8TiB\"\n", 2, 7, {"from 1 GiB to 4 TiB"}},
        Bad{"boolean as string", "[machine]\ndirect_gbpages = \"yes\"\n", 2, 18, {"expected true or false"}},
        Bad{"unknown kernel access locality",
            "[kernel_access]\nlocality = \"zipfian\"\n",
            2,
            12,
            {"[kernel_access] locality", "zipf, uniform"}},
        Bad{"hot fraction above one", "[kernel_access]\nhot_fraction = 1.5\n", 2, 16, {"hot_fraction", "from 0 to 1"}},
        Bad{"negative kernel access weight", "[kernel_access]\nweight_kernel = -1\n", 2, 17, {"weight_kernel"}},
        Bad{"no kernel access weight",
            "[kernel_access]\nweight_page_cache = 0\nweight_slab_reclaimable = 0\nweight_kernel = 0\n"
            "weight_page_tables = 0\n",
            5,
            22,
            {"[kernel_access] weight_page_tables", "at least one weight above 0"}},
        Bad{"unknown policy",
            "[run]\npolicies = [\"upstream\", \"upstrem\"]\n",
            2,
            25,
            {"unknown policy \"upstrem\"", "did you mean \"upstream\"", "secretmem-pmd-pool"}},
        Bad{"empty policy list", "[run]\npolicies = []\n", 2, 12, {"a list of policy names"}},
        Bad{"unknown collapse mode",
            "[machine]\ncollapse = \"sometimes\"\n",
            2,
            12,
            {"unknown collapse mode \"sometimes\"", "rox-only"}},
        Bad{"unknown TLB preset", "[machine]\ntlb = \"pentium\"\n", 2, 7, {"unknown TLB preset \"pentium\"", "zen2"}},
        Bad{"unknown pool_fail", "[machine]\npool_fail = \"panic\"\n", 2, 13, {"oom, sigbus"}},
        Bad{"events and seconds", "[workload]\nevents = 5\nseconds = 3\n", 3, 11, {"either as events or as seconds"}},
        Bad{"rate without seconds", "[workload]\nevents_per_second = 5\n", 2, 21, {"only meaningful with seconds"}},
        Bad{"min above max",
            "[secrets]\nmax_pages = 4\nmin_pages = 8\n",
            3,
            13,
            {"min_pages: expected at most max_pages (4)"}},
        Bad{"fork and fd pass above one",
            "[secrets]\nfork_probability = 0.7\nfd_pass_probability = 0.6\n",
            2,
            20,
            {"fork_probability + fd_pass_probability <= 1"}},
        Bad{"guest pages and size", "[guests]\npages = 10\nsize = \"1GiB\"\n", 3, 8, {"either pages or size"}},
        Bad{"guests larger than RAM",
            "[machine]\nram = \"4GiB\"\n[guests]\nshare = 0.1\ncount = 8\nsize = \"1GiB\"\n",
            6,
            8,
            {"to fit in the RAM"}},
        Bad{"pci hole without end", "[machine]\npci_hole = { start = \"3GiB\" }\n", 2, 12, {"both bounds"}},
        Bad{"pci hole unknown key",
            "[machine]\npci_hole = { start = \"3GiB\", stop = \"4GiB\" }\n",
            2,
            30,
            {"unknown key \"stop\" in [machine.pci_hole]"}},
        Bad{"secretmem over half the RAM",
            "[machine]\nram = \"4GiB\"\nsecretmem = \"3GiB\"\n",
            3,
            13,
            {"at most half the RAM"}},
        Bad{"llc_per_cpu not a multiple of the page",
            "[machine]\nllc_per_cpu = \"1000\"\n",
            2,
            15,
            {"llc_per_cpu"}},
        Bad{"a table where a value belongs", "machine = 3\n", 1, 11, {"[machine]: expected a table, got an integer 3"}},
        Bad{"description not a string", "description = 5\n", 1, 15, {"description: expected a string"}},
        Bad{"float events", "[workload]\nevents = 1e6\n", 2, 10, {"[workload] events: expected a whole number"}},
        // Characters toml++ 3.3 cannot classify as whitespace or not (its
        // lookup reaches TOML_UNREACHABLE) are refused where it would ask.
        Bad{"non-ASCII character after a value",
            "[machine]\nram = \"1GiB\" \xc2\xa7\n",
            2,
            14,
            {"TOML syntax error", "U+00A7", "outside strings and comments"}},
        Bad{"non-ASCII character in a number", "[workload]\nevents = 1\"\xc4\xb2\"\n", 2, 12, {"U+0132"}},
        Bad{"non-ASCII key", "\xd0\xb9 = 1\n", 1, 1, {"U+0439", "outside strings and comments"}},
        Bad{"non-ASCII character after a line-ending backslash",
            "description = \"\"\"\\\n  \xc2\xa7\"\"\"\n",
            2,
            3,
            {"U+00A7", "after a backslash"}},
        // Machines the model cannot boot (the layout of PhysMem).
        Bad{"kernel image beyond the first RAM range",
            "[machine]\nram = \"1GiB\"\nkernel_image = \"1GiB\"\n",
            3,
            16,
            {"[machine]: the machine cannot boot", "the kernel image (1 GiB from 16 MiB)"}},
        Bad{"memmap in too little RAM above the PCI hole",
            "[machine]\nram = \"3074MiB\"\n",
            2,
            7,
            {"cannot boot", "the memmap (50 MiB", "in the 2 MiB of RAM above the PCI hole"}},
        Bad{"CMA area with a pool's secretmem area beyond the RAM",
            "[machine]\nram = \"1GiB\"\ncma = \"512MiB\"\nsecretmem = \"512MiB\"\n[run]\n"
            "policies = [\"secretmem-pool-reserve\"]\n",
            6,
            12,
            {"cannot boot", "the CMA area (1 GiB: cma 512 MiB and the secretmem area of secretmem-pool-reserve"}}),
    [](const ::testing::TestParamInfo<Bad>& tpi) {
      std::string name;
      for (const char* c = tpi.param.what; *c != 0; ++c)
        name += std::isalnum(static_cast<unsigned char>(*c)) ? *c : '_';
      return name;
    });

TEST(Scenario, NonAsciiTextInStringsAndCommentsReads) {
  const Scenario s = parse_scenario(
      "# caf\xc3\xa9 \xc2\xa7 \xe3\x80\x81 \xef\xbb\xbe\n"
      "description = \"caf\xc3\xa9 \xc2\xa7 \\\" \xc4\xb2\"  # \xc2\xa7\n"
      "[machine]\n"
      "tlb = 'zen2'  # '\xc2\xa7'\n"
      "[run]\n"
      "policies = [\"upstream\", '''secretmem-pmd-pool''']\n",
      "t.toml");
  EXPECT_EQ(s.description, "caf\xc3\xa9 \xc2\xa7 \" \xc4\xb2");
  EXPECT_EQ(s.tlb, "zen2");
  EXPECT_EQ(s.policies, (std::vector<std::string>{"upstream", "secretmem-pmd-pool"}));
  const Scenario m = parse_scenario("description = \"\"\"\n\xc2\xa7 \\\"\"\" \xc2\xa7\n\"\"\"\n", "t.toml");
  EXPECT_EQ(m.description, "\xc2\xa7 \"\"\" \xc2\xa7\n");
}

const Setting& setting(std::string_view path) {
  for (const Setting& st : scenario_settings()) {
    if (st.path == path) return st;
  }
  throw std::logic_error("no setting " + std::string(path));
}

TEST(Settings, EachSettingIsDeclaredOnceWithItsOwnKeyAndOption) {
  std::set<std::string> paths;
  std::set<std::string> flags;
  const auto& tables = scenario_tables();
  for (const Setting& st : scenario_settings()) {
    SCOPED_TRACE(st.path);
    EXPECT_TRUE(paths.insert(st.path).second);
    if (!st.flag.empty()) {
      EXPECT_TRUE(flags.insert(st.flag).second);
      EXPECT_FALSE(st.option_help().empty());
    }
    EXPECT_TRUE(st.table().empty() || std::find(tables.begin(), tables.end(), st.table()) != tables.end());
    EXPECT_TRUE(static_cast<bool>(st.set));
  }
  for (const char* flag : {"--ram", "--cpus", "--no-gbpages", "--collapse", "--scan-rate", "--tlb", "--secretmem",
                           "--pool-fail", "--events", "--seed", "--wp-page-tables", "--policy"}) {
    EXPECT_EQ(flags.count(flag), 1u) << flag;
  }
}

TEST(Settings, ThePoolPoliciesDeclareTheirOwnParametersWhichAreMachineKeys) {
  const policy::Registry& r = policy::Registry::builtin();
  auto keys_of = [&](const char* name) {
    std::vector<std::string> keys;
    for (const policy::ParamSpec& p : r.find(name)->params) keys.push_back(p.key);
    return keys;
  };
  EXPECT_EQ(keys_of("secretmem-pmd-pool"), (std::vector<std::string>{"secretmem", "pool_fail"}));
  EXPECT_EQ(keys_of("secretmem-pool-reserve"), (std::vector<std::string>{"secretmem"}));
  EXPECT_TRUE(keys_of("upstream").empty());
  EXPECT_TRUE(static_cast<bool>(r.find("secretmem-pool-reserve")->boot_cma_bytes));
  EXPECT_FALSE(static_cast<bool>(r.find("upstream")->boot_cma_bytes));
  EXPECT_EQ(setting("machine.secretmem").flag, "--secretmem");
  EXPECT_EQ(setting("machine.pool_fail").flag, "--pool-fail");
  // Left out, a parameter has its default: pool_fail oom, secretmem RAM / 256.
  const Scenario d = parse_scenario("", "d.toml");
  EXPECT_FALSE(d.machine.policy_params.has("secretmem"));
  const policy::ParamSpec& pool_fail = r.find("secretmem-pmd-pool")->params.at(1);
  EXPECT_EQ(d.machine.policy_params.choice(pool_fail), "oom");
}

TEST(Settings, APolicyNameIsResolvedToItsRegistryEntryWhichNamesThePolicy) {
  const policy::Registry& r = policy::Registry::builtin();
  for (const policy::PolicyInfo& info : r.all()) {
    EXPECT_EQ(&r.resolve(info.name), &info);
    EXPECT_EQ(info.make()->name(), info.name);
    EXPECT_EQ(policy::make_policy(info.name)->name(), info.name);
  }
  EXPECT_THROW((void)r.resolve("upstrem"), std::invalid_argument);
}

TEST(Settings, AnOptionOutOfItsRangeIsAnErrorNamingIt) {
  Scenario s = read_scenario("", "t.toml");
  try {
    apply_option(s, setting("machine.cpus"), {"0"}, 1);
    FAIL() << "no error";
  } catch (const ScenarioError& e) {
    EXPECT_EQ(std::string(e.what()), "--cpus \"0\": expected a whole number from 1 to 4096");
    EXPECT_EQ(e.line(), 0u);
  }
  EXPECT_THROW(apply_option(s, setting("machine.ram"), {"64GB"}, 1), ScenarioError);
  EXPECT_THROW(apply_option(s, setting("run.policies"), {"upstream", "nope"}, 1), ScenarioError);
  EXPECT_EQ(s.machine.cpus, 16u);  // unchanged by the refused values
}

TEST(Settings, OverridesAreCheckedWithTheFileAsOneScenario) {
  const char* text = "[machine]\nram = \"8GiB\"\n[guests]\nshare = 0.1\ncount = 4\nsize = \"1GiB\"\n";
  ASSERT_NO_THROW((void)parse_scenario(text, "g.toml"));
  Scenario s = read_scenario(text, "g.toml");
  apply_option(s, setting("machine.ram"), {"3GiB"}, 1);
  try {
    check_scenario(s);
    FAIL() << "no error";
  } catch (const ScenarioError& e) {
    EXPECT_EQ(e.file(), "--ram \"3GiB\"");
    EXPECT_EQ(std::string(e.what()),
              "--ram \"3GiB\": [guests]: expected count x size to fit in the RAM (3 GiB), got 4 x 1 GiB");
  }
  // An override may also make a file's values fit: the check comes after it.
  const char* big = "[machine]\nram = \"4GiB\"\nsecretmem = \"3GiB\"\n";
  EXPECT_THROW((void)parse_scenario(big, "b.toml"), ScenarioError);
  Scenario b = read_scenario(big, "b.toml");
  apply_option(b, setting("machine.ram"), {"8GiB"}, 1);
  EXPECT_NO_THROW(check_scenario(b));
  EXPECT_EQ(b.machine.policy_params.size("secretmem", 0), 3 * GiB);
}

TEST(Settings, AMachineThatCannotBootUnderTheOptionsIsAnErrorNamingTheOption) {
  Scenario s = read_scenario("", "t.toml");
  apply_option(s, setting("machine.ram"), {"3074MiB"}, 1);
  apply_option(s, setting("run.policies"), {"upstream"}, 2);
  try {
    check_scenario(s);
    FAIL() << "no error";
  } catch (const ScenarioError& e) {
    // upstream adds no area of its own: the RAM is what does not boot.
    EXPECT_EQ(std::string(e.what()).rfind("--ram \"3074MiB\": the machine cannot boot: the memmap", 0), 0u)
        << e.what();
  }
  MachineConfig c;
  c.policy = "nope";
  EXPECT_NE(boot_problem(c).find("unknown policy 'nope'"), std::string::npos);
}

TEST(Settings, EventsGivenAsAnOptionReplaceADurationInSeconds) {
  Scenario s = read_scenario("[workload]\nseconds = 2\nevents_per_second = 50\n", "t.toml");
  apply_option(s, setting("workload.events"), {"30"}, 1);
  check_scenario(s);
  EXPECT_EQ(s.workload.events, 30u);
  EXPECT_EQ(s.seconds, 0.0);
  EXPECT_EQ(s.events_per_second, 0.0);
}

TEST(Scenario, AMissingFileIsAnErrorNamingIt) {
  try {
    (void)load_scenario("/nonexistent/x.toml");
    FAIL() << "no error";
  } catch (const ScenarioError& e) {
    EXPECT_EQ(std::string(e.what()).rfind("/nonexistent/x.toml: cannot read", 0), 0u) << e.what();
    EXPECT_EQ(e.line(), 0u);
  }
}

TEST(Scenario, ErrorsAreRuntimeErrors) {
  EXPECT_THROW((void)parse_scenario("[run]\npolicies = [1]\n", "x.toml"), std::runtime_error);
}

}  // namespace
}  // namespace exmem::model::workload
