// workload/: what drives the model (see README.md for what the folder owns).
// scenario_toml.hpp: scenario settings given as TOML values from elsewhere
// than a scenario file, for `exmem study`, whose study file lays settings over
// a scenario: each value is checked exactly as a scenario file's would be, and
// errors name the study file's line and column.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#ifndef TOML_HEADER_ONLY
#define TOML_HEADER_ONLY 1
#endif
#include <toml++/toml.h>

#include "model/workload/scenario.hpp"

namespace exmem::model::workload {

// Settings laid over a scenario rank after every place in its file, so the
// rules between settings (check_scenario()) name the study's value when it is
// the latest of those involved.
inline constexpr std::uint64_t kStudyOrder = std::uint64_t{1} << 61;

// Gives the setting at `path` ("machine.ram", "secrets.share", a policy's
// parameter "machine.secretmem", or "machine.pci_hole") the value `v`, written
// in `file`: checked against its type and range, applied, and recorded as
// given there. Returns the value's canonical text (sizes in bytes, reals in
// shortest form, names quoted), which identifies the resolved configuration.
// ScenarioError at v's place when the path is unknown or the value wrong.
// A value made by the caller rather than read from `file` has no place of
// its own: `at` then stands for it, in errors and as where it was given.
std::string apply_toml_setting(Scenario& s, std::string_view path, const toml::node& v, const std::string& file,
                               const toml::source_region* at = nullptr);

// A TOML value as messages name it, for "expected X, got Y": "a string
// \"64GB\"", "an integer -3", "a floating-point number 1.5", "a table"...
std::string describe_toml(const toml::node& v);

// The paths apply_toml_setting() takes, in the order of a scenario file.
std::vector<std::string> setting_paths();

// Every setting a scenario's text gives, path -> canonical text; `name` stands
// for the file in messages. ScenarioError as the scenario reader's.
std::map<std::string, std::string> resolved_settings(std::string_view text, std::string_view name);

}  // namespace exmem::model::workload
