// workload/: what drives the model (see synthetic.hpp for what the folder owns).
// settings.hpp: the schema of a scenario, declared once. Each setting has its
// scenario key (`machine.ram`), its option of `exmem sim` when it has one
// (--ram), its type, unit and range, its help, and where it lands in the
// Scenario. The scenario file reader (scenario.cpp) and the command's options
// (cli/sim.cpp) are both generated from this table; the parameters the
// policies declare (policy::ParamSpec) join it as [machine] keys.
//
// A value is checked against its own type and range where it is read (a file
// or an option); the rules between settings are checked once, by
// check_scenario(), after the file and the options, and each error names
// where the latest of the settings involved was given: FILE:LINE:COLUMN, or
// the option and its text.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace exmem::model::workload {

struct Scenario;

class ScenarioError : public std::runtime_error {
 public:
  // line and column count from 1; 0 when the error concerns the whole file (or
  // an option: then `file` is the option and its text, `--ram "3GiB"`).
  ScenarioError(std::string file, unsigned line, unsigned column, const std::string& what);
  [[nodiscard]] const std::string& file() const { return file_; }
  [[nodiscard]] unsigned line() const { return line_; }
  [[nodiscard]] unsigned column() const { return column_; }

 private:
  std::string file_;
  unsigned line_ = 0;
  unsigned column_ = 0;
};

// Where a setting got its value: a place in a scenario file, or an option.
struct Origin {
  std::string path;  // the setting: "machine.ram"
  std::string file;  // in a file: the file, line and column
  unsigned line = 0;
  unsigned column = 0;
  std::string flag;  // or an option and the text it was given: "--ram", "64GiB"
  std::string text;
  std::uint64_t order = 0;  // later givings have larger orders; options come after the file

  // An error at this place about the setting `subject` ("machine.secretmem",
  // or a table "guests"; empty: none): "FILE:LINE:COLUMN: [machine] secretmem:
  // WHAT" or "--ram \"4GiB\": [machine] secretmem: WHAT" (an option's own
  // setting is not named again).
  [[nodiscard]] ScenarioError error(std::string_view subject, const std::string& what) const;
};

enum class SettingKind : std::uint8_t {
  Size,      // bytes, written with a unit ("64GiB")
  Count,     // a whole number
  Real,      // a number
  Bool,      // true or false; its option is a flag that sets `flag_value`
  Choice,    // one name of `choices()`
  Policies,  // policy names, or "all"
  Text,      // any string
};

using SettingValue = std::variant<std::uint64_t, double, bool, std::string, std::vector<std::string>>;

struct Setting {
  std::string path;  // "machine.ram": the table, a dot and the key ("description" at the top level)
  std::string flag;  // "--ram", or empty when only a scenario file sets it
  SettingKind kind = SettingKind::Count;
  std::uint64_t min = 0;  // Size (bytes) and Count
  std::uint64_t max = 0;
  std::uint64_t align = 1;  // Size
  double low = 0;           // Real
  double high = 0;
  bool at_most_half_ram = false;                       // Size: a rule between settings
  std::function<std::vector<std::string>()> choices;  // Choice: the names
  std::string what;       // Choice: what a name names ("collapse mode"); Text: what is expected
  std::string type_name;  // the option's value in --help ("SIZE"); empty: from the kind
  std::string unit;       // Count: what is counted, when messages should say ("events")
  std::string help;       // the option's help, without range and unit
  std::string note;       // after the range in the help: the default
  bool flag_value = true;  // Bool: the value its flag sets
  std::function<void(Scenario&, const SettingValue&)> set;

  [[nodiscard]] std::string table() const;  // "machine" ("" at the top level)
  [[nodiscard]] std::string key() const;    // "ram"
  [[nodiscard]] std::string name() const;   // "[machine] ram", as messages name it
  // What a valid value is, for messages: "a whole number from 1 to 4096".
  // In a file sizes are strings ("64GiB"); on the command line they are not.
  [[nodiscard]] std::string expected(bool in_file) const;
  // The option's help: `help`, then the range and unit.
  [[nodiscard]] std::string option_help() const;
};

// The schema: every setting, grouped by table in the order a scenario file
// lists them. [machine] pci_hole, a table of two sizes, is the one key the
// file reader handles itself.
const std::vector<Setting>& scenario_settings();
// The tables of a scenario file, in order.
const std::vector<std::string>& scenario_tables();

// Gives the setting a value from its option's text (the texts, for a repeated
// option), checked against its type and range: an override of the
// scenario's value. ScenarioError naming the option otherwise. `order` ranks
// the option among the others given.
void apply_option(Scenario& s, const Setting& setting, const std::vector<std::string>& texts, std::uint64_t order);
// Gives the setting a value decided by the command itself (a trace sizes the
// machine like the one it was recorded on), naming `flag` and `text` in errors.
void apply_value(Scenario& s, const Setting& setting, const SettingValue& value, const std::string& flag,
                 const std::string& text);

// The one check of the rules between settings, after the file and the
// options: the duration (events, or seconds x events_per_second), the sizes
// bounded by half the RAM, the machine booting under each policy
// (boot_problem()), the secret file sizes, the fork and fd-pass
// probabilities, the guests fitting in the RAM, the shares of events adding
// up to at most 1. ScenarioError at the latest of the settings involved.
void check_scenario(Scenario& s);

// " (did you mean \"ram\"?)" when one known name is close to `got`.
std::string suggestion(std::string_view got, const std::vector<std::string>& known, const char* open,
                       const char* close);

}  // namespace exmem::model::workload
