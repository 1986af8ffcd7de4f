// exmem_fuzz_scenario: scenario files (workload/scenario.hpp) from arbitrary
// text, and the machine and synthetic workload each accepted one describes.
// Any broken property, unexpected exception, crash or sanitizer report is a
// bug; a ScenarioError is the only acceptable failure.
//
// The input is the text of a scenario file (TOML; seeds in corpus/scenario/),
// given to parse_scenario(text, "fuzz"). Checked:
//  - the outcome is a Scenario or a ScenarioError; the error names the file
//    ("fuzz:LINE:COLUMN: what" or "fuzz: what"), and its line and column are 0
//    (the whole file) or a position inside the text: line 1 to the number of
//    lines, column 1 to one past the end of that line (its newline included,
//    where toml++ places an unexpected end of file);
//  - an accepted scenario is named after the file, has at least one policy,
//    each known to the registry and named once, a TLB preset that exists, a
//    workload that passes WorkloadConfig::validate(), and the machine
//    settings within the ranges the parser documents;
//  - its machine boots with the policy policies[seed % count], and runs the
//    synthetic workload; then Machine::check() finds every invariant of the
//    model intact.
// So that each run stays cheap, the run is clamped, never rejected: a machine
// of 1 GiB (the parser's minimum) boots exactly as written, a larger one gets
// 256 MiB with its cma and secretmem areas scaled alike (or, if that layout
// does not fit, the default PCI hole, kernel image and areas); events are
// clamped to 20,000, CPUs to 64, secret processes and guests to 1,024, the
// collapse scanner's rate to 4 regions a step, and a run to 100,000 steps:
// steps that only hold memory count no event, and a run whose secret steps
// all fail (memfd_secret disabled, no RLIMIT_MEMLOCK) with no other kind of
// step makes no progress at all.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "check.hpp"
#include "model/machine.hpp"
#include "model/policy/policy.hpp"
#include "model/tlb/tlb.hpp"
#include "model/types.hpp"
#include "model/workload/scenario.hpp"
#include "model/workload/synthetic.hpp"

namespace {

namespace md = exmem::model;
namespace wl = exmem::model::workload;

constexpr std::uint64_t kMaxRam = md::GiB;         // booted as written up to this
constexpr std::uint64_t kClampedRam = 256 * md::MiB;  // what a larger machine gets
constexpr std::uint64_t kMaxEvents = 20'000;
constexpr unsigned kMaxCpus = 64;
constexpr unsigned kMaxProcesses = 1024;
constexpr unsigned kMaxScanRate = 4;
constexpr std::uint64_t kMaxSteps = 100'000;
// EXMEM_FUZZ_VERBOSE=1: say what became of each input (to check new seeds).
const bool kVerbose = std::getenv("EXMEM_FUZZ_VERBOSE") != nullptr;

using exmem::fuzz::diverge;

// Where a ScenarioError points must be in the text (or be 0: the whole file).
void check_error(const wl::ScenarioError& e, std::string_view text) {
  const std::string msg = e.what();
  CHECK(e.file() == "fuzz", "a ScenarioError names the file \"%s\": %s", e.file().c_str(), msg.c_str());
  if (e.line() == 0) {
    CHECK(e.column() == 0, "a ScenarioError at line 0, column %u: %s", e.column(), msg.c_str());
    CHECK(msg.rfind("fuzz: ", 0) == 0 && msg.size() > 6, "a ScenarioError of the whole file reads: %s", msg.c_str());
    return;
  }
  const std::string where = "fuzz:" + std::to_string(e.line()) + ":" + std::to_string(e.column()) + ": ";
  CHECK(msg.rfind(where, 0) == 0 && msg.size() > where.size(), "a ScenarioError at %u:%u reads: %s", e.line(),
        e.column(), msg.c_str());
  // The line's bytes (lines end at '\n'; the last one at the end of the text).
  std::string_view rest = text;
  for (unsigned l = 1; l < e.line(); ++l) {
    const std::size_t nl = rest.find('\n');
    CHECK(nl != std::string_view::npos, "a ScenarioError at line %u of a text of %u lines: %s", e.line(), l,
          msg.c_str());
    rest.remove_prefix(nl + 1);
  }
  // toml++ places an unexpected end of file just past the last character,
  // the final newline included: one column past the end of its line.
  const std::size_t nl = rest.find('\n');
  const std::size_t length = nl == std::string_view::npos ? rest.size() : nl + 1;
  CHECK(e.column() >= 1 && e.column() <= length + 1,
        "a ScenarioError at column %u of line %u, %zu bytes long with its newline: %s", e.column(), e.line(), length,
        msg.c_str());
}

void check_accepted(const wl::Scenario& s) {
  CHECK(s.name == "fuzz" && s.source == "fuzz", "the scenario is named \"%s\" from \"%s\"", s.name.c_str(),
        s.source.c_str());
  CHECK(!s.policies.empty(), "a scenario without policies");
  const auto& registry = md::policy::Registry::builtin();
  for (std::size_t i = 0; i < s.policies.size(); ++i) {
    CHECK(registry.find(s.policies[i]) != nullptr, "unknown policy \"%s\" accepted", s.policies[i].c_str());
    for (std::size_t j = 0; j < i; ++j)
      CHECK(s.policies[j] != s.policies[i], "policy \"%s\" listed twice", s.policies[i].c_str());
  }
  try {
    (void)md::tlb::TlbConfig::preset(s.tlb);
  } catch (const std::exception& e) {
    diverge("TLB preset \"%s\" accepted, but: %s", s.tlb.c_str(), e.what());
  }
  try {
    s.workload.validate();
  } catch (const std::exception& e) {
    diverge("an accepted workload fails validate(): %s", e.what());
  }
  const md::MachineConfig& m = s.machine;
  CHECK(m.ram_bytes >= md::GiB && m.ram_bytes <= 4 * md::TiB && m.ram_bytes % (2 * md::MiB) == 0,
        "ram %llu bytes accepted", static_cast<unsigned long long>(m.ram_bytes));
  CHECK(m.cpus >= 1 && m.cpus <= 4096, "cpus %u accepted", m.cpus);
  CHECK(m.pci_hole_start >= 256 * md::MiB && m.pci_hole_start < m.pci_hole_end && m.pci_hole_end <= 4 * md::GiB &&
            m.pci_hole_start % (2 * md::MiB) == 0 && m.pci_hole_end % (2 * md::MiB) == 0,
        "PCI hole [%#llx, %#llx) accepted", static_cast<unsigned long long>(m.pci_hole_start),
        static_cast<unsigned long long>(m.pci_hole_end));
  const std::uint64_t secretmem = m.policy_params.size("secretmem", 0);
  CHECK(secretmem <= m.ram_bytes / 2 && m.cma_bytes <= m.ram_bytes / 2,
        "secretmem %llu and cma %llu bytes accepted with %llu of RAM", static_cast<unsigned long long>(secretmem),
        static_cast<unsigned long long>(m.cma_bytes),
        static_cast<unsigned long long>(m.ram_bytes));
  CHECK(s.workload.events <= 1'000'000'000'000ull, "%llu events accepted",
        static_cast<unsigned long long>(s.workload.events));
}

std::uint64_t round_down_2m(std::uint64_t v) { return v / (2 * md::MiB) * (2 * md::MiB); }

// Ends a run that has taken its share of steps (see the top of the file).
struct OutOfSteps {};

void run(const wl::Scenario& s) {
  md::MachineConfig mc = s.machine;
  wl::WorkloadConfig wc = s.workload;
  mc.policy = s.policies[wc.seed % s.policies.size()];
  const bool exact = mc.ram_bytes <= kMaxRam;
  if (!exact) {
    // The areas that scale with the RAM keep their share of it.
    const double scale = static_cast<double>(kClampedRam) / static_cast<double>(mc.ram_bytes);
    mc.cma_bytes = round_down_2m(static_cast<std::uint64_t>(static_cast<double>(mc.cma_bytes) * scale));
    if (const std::uint64_t secretmem = mc.policy_params.size("secretmem", 0); secretmem != 0) {
      mc.policy_params.set("secretmem",
                           std::max<std::uint64_t>(2 * md::MiB, round_down_2m(static_cast<std::uint64_t>(
                                                                    static_cast<double>(secretmem) * scale))));
    }
    mc.ram_bytes = kClampedRam;
  }
  mc.cpus = std::min(mc.cpus, kMaxCpus);
  mc.scan_rate = std::min(mc.scan_rate, kMaxScanRate);
  wc.events = std::min(wc.events, kMaxEvents);
  wc.secret_processes = std::min(wc.secret_processes, kMaxProcesses);
  wc.guests = std::min(wc.guests, kMaxProcesses);

  std::unique_ptr<md::Machine> machine;
  try {
    machine = std::make_unique<md::Machine>(mc);
  } catch (const std::invalid_argument& e) {
    if (exact) {
      diverge("an accepted scenario of %llu MiB does not boot (policy %s): %s",
              static_cast<unsigned long long>(mc.ram_bytes / md::MiB), mc.policy.c_str(), e.what());
    }
    // Clamped: the layout may no longer fit in the smaller RAM.
    const md::MachineConfig d;
    mc.pci_hole_start = d.pci_hole_start;
    mc.pci_hole_end = d.pci_hole_end;
    mc.kernel_image_bytes = d.kernel_image_bytes;
    mc.cma_bytes = d.cma_bytes;
    mc.policy_params = d.policy_params;
    try {
      machine = std::make_unique<md::Machine>(mc);
    } catch (const std::invalid_argument& e2) {
      diverge("a clamped scenario does not boot (policy %s, cma %llu MiB, secretmem %llu MiB): %s", mc.policy.c_str(),
              static_cast<unsigned long long>(mc.cma_bytes / md::MiB),
              static_cast<unsigned long long>(mc.policy_params.size("secretmem", 0) / md::MiB), e2.what());
    }
  }

  wl::WorkloadResult r;  // of a run stopped for its steps: only the events
  bool stopped = false;
  std::uint64_t steps = 0;
  std::uint64_t last = 0;
  try {
    wl::SyntheticWorkload w(*machine, wc);
    r = w.run([&](std::uint64_t events) {
      CHECK(events >= last, "the event count went back from %llu to %llu", static_cast<unsigned long long>(last),
            static_cast<unsigned long long>(events));
      last = events;
      if (++steps >= kMaxSteps) throw OutOfSteps{};
    });
  } catch (const OutOfSteps&) {
    stopped = true;
    r.events = last;
  } catch (const std::exception& e) {
    diverge("the synthetic workload threw (policy %s): %s", mc.policy.c_str(), e.what());
  }
  if (!stopped) {
    CHECK(r.events >= wc.events, "the run ended after %llu of %llu events", static_cast<unsigned long long>(r.events),
          static_cast<unsigned long long>(wc.events));
  }
  if (kVerbose) {
    std::fprintf(stderr,
                 "exmem_fuzz_scenario: policy %s, %llu MiB%s, %llu of %llu events%s: %llu secret faults, %llu mmap "
                 "failures, %llu hold turns, %llu alloc failures\n",
                 mc.policy.c_str(), static_cast<unsigned long long>(mc.ram_bytes / md::MiB), exact ? "" : " (clamped)",
                 static_cast<unsigned long long>(r.events), static_cast<unsigned long long>(wc.events),
                 stopped ? " (out of steps)" : "", static_cast<unsigned long long>(r.secret_faults),
                 static_cast<unsigned long long>(r.mmap_failures), static_cast<unsigned long long>(r.hold_turns),
                 static_cast<unsigned long long>(r.alloc_failures));
  }
  const std::vector<std::string> broken = machine->check();
  if (!broken.empty()) {
    std::string all;
    for (const std::string& b : broken) all += "\n  " + b;
    diverge("Machine::check() after the run (policy %s, %llu events):%s", mc.policy.c_str(),
            static_cast<unsigned long long>(r.events), all.c_str());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  wl::Scenario s;
  try {
    s = wl::parse_scenario(text, "fuzz");
  } catch (const wl::ScenarioError& e) {
    if (kVerbose) std::fprintf(stderr, "exmem_fuzz_scenario: %s\n", e.what());
    check_error(e, text);
    return 0;
  } catch (const std::exception& e) {
    diverge("parse_scenario threw something other than a ScenarioError: %s", e.what());
  }
  check_accepted(s);
  run(s);
  return 0;
}
