// workload/: what drives the model (see README.md for what the folder owns).
// scenario.hpp: scenario files. A scenario is one situation to model, written
// in TOML (scenarios/*.toml): the machine (RAM, PCI hole, CPUs, direct_gbpages,
// TLB preset, collapse mode, secretmem= area), the workload mix built from the
// synthetic workload's blocks (secret churn, kernel and user allocations,
// MAP_EXCLUSIVE, execmem ROX loads, guest_memfd guests, write-protected page
// tables), its duration in events or simulated seconds, its seed, the
// kernel access stream of the cost estimate ([kernel_access]: hot set,
// locality, weights by kind of live kernel page, accesses per event; see
// docs/tlb.md) and the policies to compare.
//
// Every key is checked (settings.hpp holds the schema): a typo, a wrong type,
// a value out of range or an unknown policy, collapse mode or TLB preset is a
// ScenarioError whose message is "FILE:LINE:COLUMN: what was expected".
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "model/machine.hpp"
#include "model/tlb/cost.hpp"
#include "model/workload/settings.hpp"
#include "model/workload/synthetic.hpp"

namespace exmem::model::workload {

struct Scenario {
  std::string name;         // the file's stem ("key-server"), or the name given to parse_scenario()
  std::string source;       // where it came from, as error messages name it
  std::string description;  // top-level `description`, may be empty
  MachineConfig machine;    // machine.policy is set per run
  WorkloadConfig workload;
  std::string tlb = "haswell";        // TLB preset of the cost estimate
  tlb::AccessConfig kernel_access;    // [kernel_access]: the cost estimate's kernel access stream
  std::vector<std::string> policies;  // registry names, in registry order for "all"
  // The duration as written: `events`, or `seconds` x `events_per_second`
  // (seconds is 0 when the file gave events).
  double seconds = 0;
  double events_per_second = 0;
  // Where each setting given was given (by Setting::path), for the messages
  // of check_scenario(); a setting left out keeps its default.
  std::map<std::string, Origin> given;
};

// The defaults a scenario starts from before its file is applied: a 64 GiB
// machine with 16 CPUs, direct_gbpages, collapse rox-only, TLB haswell, the
// synthetic workload's defaults (1,000,000 events, seed 1) and every policy.
Scenario default_scenario_values();

// Reads and checks a scenario file (ScenarioError when unreadable or wrong).
Scenario load_scenario(const std::string& path);
// Parses scenario text; `name` stands for the file in messages and gives the
// scenario its name (its stem, without folders and ".toml").
Scenario parse_scenario(std::string_view text, std::string_view name);
// The same without the rules between settings (each value is still checked
// against its type and range): for a caller that overrides settings first
// (settings.hpp: apply_option()) and then calls check_scenario() once.
Scenario read_scenario(std::string_view text, std::string_view name);
Scenario read_scenario_file(const std::string& path);

}  // namespace exmem::model::workload
