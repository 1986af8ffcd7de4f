// workload/: what drives the model (see synthetic.hpp for what the folder owns).
// settings.cpp: the table of scenario settings, options as overrides, and the
// one check of the rules between settings.
#include "model/workload/settings.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <limits>

#include "model/policy/policy.hpp"
#include "model/tlb/tlb.hpp"
#include "model/workload/scenario.hpp"

namespace exmem::model::workload {

namespace {

constexpr std::uint64_t kMaxEvents = 1'000'000'000'000;
constexpr std::uint64_t kMaxFilePages = std::uint64_t{1} << 28;  // 1 TiB of 4 KiB pages
constexpr std::uint64_t kOptionOrder = std::uint64_t{1} << 62;   // options come after any place in a file

// "[machine] ram" for "machine.ram", "[machine]" for "machine"; top-level keys as they are.
std::string name_of(std::string_view path) {
  const std::size_t dot = path.rfind('.');
  if (dot != std::string_view::npos) return fmt::format("[{}] {}", path.substr(0, dot), path.substr(dot + 1));
  const auto& tables = scenario_tables();
  if (std::find(tables.begin(), tables.end(), path) != tables.end()) return fmt::format("[{}]", path);
  return std::string(path);
}

// Edits from a to b, a swap of neighbours counting as one (optimal string alignment).
unsigned edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::vector<unsigned>> d(a.size() + 1, std::vector<unsigned>(b.size() + 1));
  for (std::size_t i = 0; i <= a.size(); ++i) d[i][0] = static_cast<unsigned>(i);
  for (std::size_t j = 0; j <= b.size(); ++j) d[0][j] = static_cast<unsigned>(j);
  for (std::size_t i = 1; i <= a.size(); ++i) {
    for (std::size_t j = 1; j <= b.size(); ++j) {
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] == b[j - 1] ? 0u : 1u)});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.size()][b.size()];
}

// The builders of the table's rows, by kind.
Setting size(std::string path, std::string flag, std::uint64_t min, std::uint64_t max, std::uint64_t align,
             std::string help, std::function<void(Scenario&, std::uint64_t)> set) {
  Setting s;
  s.path = std::move(path);
  s.flag = std::move(flag);
  s.kind = SettingKind::Size;
  s.min = min;
  s.max = max;
  s.align = align;
  s.help = std::move(help);
  s.set = [set = std::move(set)](Scenario& sc, const SettingValue& v) { set(sc, std::get<std::uint64_t>(v)); };
  return s;
}

Setting count(std::string path, std::string flag, std::uint64_t min, std::uint64_t max, std::string help,
              std::function<void(Scenario&, std::uint64_t)> set) {
  Setting s = size(std::move(path), std::move(flag), min, max, 1, std::move(help), std::move(set));
  s.kind = SettingKind::Count;
  return s;
}

Setting real(std::string path, double low, double high, std::function<void(Scenario&, double)> set) {
  Setting s;
  s.path = std::move(path);
  s.kind = SettingKind::Real;
  s.low = low;
  s.high = high;
  s.set = [set = std::move(set)](Scenario& sc, const SettingValue& v) { set(sc, std::get<double>(v)); };
  return s;
}

Setting boolean(std::string path, std::string flag, bool flag_value, std::string help,
                std::function<void(Scenario&, bool)> set) {
  Setting s;
  s.path = std::move(path);
  s.flag = std::move(flag);
  s.kind = SettingKind::Bool;
  s.flag_value = flag_value;
  s.help = std::move(help);
  s.set = [set = std::move(set)](Scenario& sc, const SettingValue& v) { set(sc, std::get<bool>(v)); };
  return s;
}

Setting choice(std::string path, std::string flag, std::string what, std::function<std::vector<std::string>()> names,
               std::string type_name, std::string help, std::function<void(Scenario&, const std::string&)> set) {
  Setting s;
  s.path = std::move(path);
  s.flag = std::move(flag);
  s.kind = SettingKind::Choice;
  s.what = std::move(what);
  s.choices = std::move(names);
  s.type_name = std::move(type_name);
  s.help = std::move(help);
  s.set = [set = std::move(set)](Scenario& sc, const SettingValue& v) { set(sc, std::get<std::string>(v)); };
  return s;
}

// A parameter a policy declares becomes a [machine] key (and its option).
Setting policy_param(const policy::ParamSpec& p) {
  const std::string key = p.key;
  Setting s;
  if (p.kind == policy::ParamSpec::Kind::Size) {
    s = size("machine." + key, p.flag, p.min, p.max, p.align, p.help,
             [key](Scenario& sc, std::uint64_t v) { sc.machine.policy_params.set(key, v); });
    s.at_most_half_ram = p.at_most_half_ram;
  } else {
    const std::vector<std::string> names = p.choices;
    s = choice("machine." + key, p.flag, p.what, [names] { return names; }, fmt::format("{}", fmt::join(names, "|")),
               p.help,
               [key](Scenario& sc, const std::string& v) { sc.machine.policy_params.set(key, v); });
  }
  s.note = p.note;
  return s;
}

std::vector<Setting> make_settings() {
  using U = std::uint64_t;
  std::vector<Setting> t;
  // [machine]
  t.push_back(size("machine.ram", "--ram", GiB, 4 * TiB, 2 * MiB, "RAM of the modelled machine",
                   [](Scenario& s, U v) { s.machine.ram_bytes = v; }));
  t.back().type_name = "SIZE";
  t.push_back(count("machine.cpus", "--cpus", 1, 4096, "CPUs of the modelled machine",
                    [](Scenario& s, U v) { s.machine.cpus = static_cast<unsigned>(v); }));
  t.push_back(boolean("machine.direct_gbpages", "--no-gbpages", false,
                      "Boot without direct_gbpages (no 1 GiB leaves)",
                      [](Scenario& s, bool v) { s.machine.direct_gbpages = v; }));
  t.push_back(size("machine.kernel_image", "", 2 * MiB, GiB, 2 * MiB, "",
                   [](Scenario& s, U v) { s.machine.kernel_image_bytes = v; }));
  t.push_back(size("machine.cma", "", 0, 2 * TiB, 2 * MiB, "", [](Scenario& s, U v) { s.machine.cma_bytes = v; }));
  t.back().at_most_half_ram = true;
  t.push_back(boolean("machine.thp", "", true, "", [](Scenario& s, bool v) { s.machine.thp = v; }));
  t.push_back(size("machine.llc_per_cpu", "", 0, GiB, kPageSize, "",
                   [](Scenario& s, U v) { s.machine.llc_bytes_per_cpu = v; }));
  t.push_back(count("machine.pcp_ops_per_vmstat_tick", "", 0, std::uint64_t{1} << 40, "",
                    [](Scenario& s, U v) { s.machine.pcp_ops_per_vmstat_tick = v; }));
  t.push_back(boolean("machine.secretmem_enable", "", true, "",
                      [](Scenario& s, bool v) { s.machine.secretmem_enable = v; }));
  t.push_back(size("machine.memlock", "", 0, 4 * TiB, kPageSize, "",
                   [](Scenario& s, U v) { s.machine.rlimit_memlock_bytes = v; }));
  for (const policy::ParamSpec* p : policy::Registry::builtin().params()) t.push_back(policy_param(*p));
  t.push_back(choice("machine.collapse", "--collapse", "collapse mode", collapse_mode_names, "MODE",
                     "How direct-map leaves come back: rox-only is upstream's since 6.15; on-restore and scanner "
                     "would need the kernel to call the collapse for restored ranges or from a scan, and are "
                     "refused where G or D differ (__set_pages_p() does not restore _PAGE_GLOBAL, set_memory_rw() "
                     "not _PAGE_DIRTY); the -gd modes assume a kernel that restores both; none never collapses",
                     [](Scenario& s, const std::string& v) { s.machine.collapse = parse_collapse_mode(v); }));
  t.push_back(count("machine.scan_rate", "--scan-rate", 1, 1 << 20,
                    "2 MiB regions the scanner collapse mode looks at per workload step",
                    [](Scenario& s, U v) { s.machine.scan_rate = static_cast<unsigned>(v); }));
  t.push_back(choice("machine.tlb", "--tlb", "TLB preset", tlb::TlbConfig::preset_names, "PRESET",
                     "TLB geometry for the cost columns, approximations described in docs/tlb.md",
                     [](Scenario& s, const std::string& v) { s.tlb = v; }));
  // [workload]
  t.push_back(count("workload.events", "--events", 0, kMaxEvents,
                    "Page alloc/free events to run",
                    [](Scenario& s, U v) { s.workload.events = v; }));
  t.back().type_name = "N";
  t.back().unit = "events";
  t.push_back(real("workload.seconds", 1e-6, 1e9, [](Scenario& s, double v) { s.seconds = v; }));
  t.push_back(real("workload.events_per_second", 1, 1e10, [](Scenario& s, double v) { s.events_per_second = v; }));
  t.push_back(count("workload.seed", "--seed", 0, std::numeric_limits<U>::max(),
                    "Seed of the workload's random stream",
                    [](Scenario& s, U v) { s.workload.seed = v; }));
  t.back().type_name = "S";
  t.push_back(real("workload.fill", 0, 0.95, [](Scenario& s, double v) { s.workload.fill = v; }));
  t.push_back(real("workload.kernel_share", 0, 1, [](Scenario& s, double v) { s.workload.kernel_share = v; }));
  t.push_back(count("workload.ordinary_processes", "", 1, 4096, "",
                    [](Scenario& s, U v) { s.workload.ordinary_processes = static_cast<unsigned>(v); }));
  t.push_back(
      real("workload.page_cache_share", 0, 1, [](Scenario& s, double v) { s.workload.page_cache_share = v; }));
  t.push_back(size("workload.working_set", "", 0, 4 * TiB, kPageSize, "",
                   [](Scenario& s, U v) { s.workload.working_set_pages = v / kPageSize; }));
  // [secrets]
  t.push_back(real("secrets.share", 0, 1, [](Scenario& s, double v) { s.workload.secret_share = v; }));
  t.push_back(count("secrets.processes", "", 1, 1'000'000, "",
                    [](Scenario& s, U v) { s.workload.secret_processes = static_cast<unsigned>(v); }));
  t.push_back(count("secrets.min_pages", "", 1, kMaxFilePages, "",
                    [](Scenario& s, U v) { s.workload.min_secret_file_pages = v; }));
  t.push_back(count("secrets.max_pages", "", 1, kMaxFilePages, "",
                    [](Scenario& s, U v) { s.workload.max_secret_file_pages = v; }));
  t.push_back(real("secrets.hold_turns", 0, 1e9, [](Scenario& s, double v) { s.workload.secret_hold_turns = v; }));
  t.push_back(real("secrets.fork_probability", 0, 1, [](Scenario& s, double v) { s.workload.fork_probability = v; }));
  t.push_back(
      real("secrets.fd_pass_probability", 0, 1, [](Scenario& s, double v) { s.workload.fd_pass_probability = v; }));
  // [map_exclusive], [execmem], [guests], [page_tables]
  t.push_back(real("map_exclusive.share", 0, 1, [](Scenario& s, double v) { s.workload.map_exclusive_share = v; }));
  t.push_back(count("map_exclusive.max_pages", "", 1, kMaxFilePages, "",
                    [](Scenario& s, U v) { s.workload.map_exclusive_max_pages = v; }));
  t.push_back(real("execmem.share", 0, 1, [](Scenario& s, double v) { s.workload.rox_share = v; }));
  t.push_back(count("execmem.max_pages", "", 1, 512 * 1024, "", [](Scenario& s, U v) { s.workload.rox_max_pages = v; }));
  t.push_back(real("guests.share", 0, 1, [](Scenario& s, double v) { s.workload.guest_share = v; }));
  t.push_back(count("guests.count", "", 1, 4096, "",
                    [](Scenario& s, U v) { s.workload.guests = static_cast<unsigned>(v); }));
  t.push_back(count("guests.pages", "", 1, std::uint64_t{1} << 30, "",
                    [](Scenario& s, U v) { s.workload.guest_pages = v; }));
  t.push_back(size("guests.size", "", kPageSize, 4 * TiB, kPageSize, "",
                   [](Scenario& s, U v) { s.workload.guest_pages = v / kPageSize; }));
  // The guest_memfd's folio size: 4KiB (upstream's order-0 folios) or 2MiB
  // (the huge-page guest_memfd series: order 9).
  t.push_back(choice("guests.folio", "", "guest_memfd folio size",
                     [] { return std::vector<std::string>{"4KiB", "2MiB"}; }, "4KiB|2MiB", "",
                     [](Scenario& s, const std::string& v) {
                       s.workload.guest_folio_order = v == "2MiB" ? kPageblockOrder : 0;
                     }));
  t.push_back(boolean("page_tables.write_protected", "--wp-page-tables", true,
                      "Write-protected page tables: user memory's page-table pages come from the policy, "
                      "read-only in the direct map",
                      [](Scenario& s, bool v) { s.workload.wp_page_tables = v; }));
  // [kernel_access]: the cost estimate's kernel access stream (model/tlb/cost.hpp)
  t.push_back(count("kernel_access.accesses", "", 1000, 50'000'000, "",
                    [](Scenario& s, U v) { s.kernel_access.accesses = v; }));
  t.push_back(size("kernel_access.hot_set", "", kPageSize, 4 * TiB, kPageSize, "",
                   [](Scenario& s, U v) { s.kernel_access.hot_set_bytes = v; }));
  t.push_back(real("kernel_access.hot_fraction", 0, 1,
                   [](Scenario& s, double v) { s.kernel_access.hot_fraction = v; }));
  t.push_back(choice("kernel_access.locality", "", "locality", [] { return std::vector<std::string>{"zipf", "uniform"}; },
                     "", "", [](Scenario& s, const std::string& v) {
                       s.kernel_access.locality = v == "uniform" ? tlb::Locality::Uniform : tlb::Locality::Zipf;
                     }));
  t.push_back(real("kernel_access.zipf_s", 0, 10, [](Scenario& s, double v) { s.kernel_access.zipf_s = v; }));
  for (std::size_t k = 0; k < tlb::kKernelPageKinds; ++k) {
    const auto kind = static_cast<tlb::KernelPageKind>(k);
    t.push_back(real(fmt::format("kernel_access.weight_{}", tlb::kernel_page_kind_name(kind)), 0, 1e6,
                     [kind](Scenario& s, double v) { s.kernel_access.weights.of(kind) = v; }));
  }
  t.push_back(count("kernel_access.accesses_per_event", "", 1, 1'000'000, "",
                    [](Scenario& s, U v) { s.kernel_access.accesses_per_event = v; }));
  // [run]
  Setting policies;
  policies.path = "run.policies";
  policies.flag = "--policy";
  policies.kind = SettingKind::Policies;
  policies.type_name = "NAME";
  policies.help = "Policy for unmapped pages; repeat to compare, or `all`";
  policies.note = "default: the scenario's, all for the default scenario";
  policies.set = [](Scenario& s, const SettingValue& v) {
    const std::vector<std::string> known = policy::Registry::builtin().names();
    s.policies.clear();
    // "all" is every policy; a policy named twice runs once, in the order first named.
    for (const std::string& n : std::get<std::vector<std::string>>(v)) {
      for (const std::string& p : n == "all" ? known : std::vector<std::string>{n}) {
        if (std::find(s.policies.begin(), s.policies.end(), p) == s.policies.end()) s.policies.push_back(p);
      }
    }
  };
  t.push_back(std::move(policies));
  // the top level
  Setting description;
  description.path = "description";
  description.kind = SettingKind::Text;
  description.what = "a string saying what the scenario represents";
  description.set = [](Scenario& s, const SettingValue& v) { s.description = std::get<std::string>(v); };
  t.push_back(std::move(description));
  return t;
}

// The policy names an option or a file may give.
std::vector<std::string> policy_choices() {
  std::vector<std::string> names = policy::Registry::builtin().names();
  names.emplace_back("all");
  return names;
}

// Reads an option's text as a value of the setting; empty `error` when it is one.
SettingValue parse_text(const Setting& st, const std::vector<std::string>& texts, std::string& bad,
                        std::string& error) {
  const std::string text = texts.empty() ? std::string() : texts.back();
  bad = text;
  const std::string expected = "expected " + st.expected(false);
  switch (st.kind) {
    case SettingKind::Size: {
      std::uint64_t v = 0;
      if (!parse_size(text, v) || v < st.min || v > st.max || v % st.align != 0) error = expected;
      return v;
    }
    case SettingKind::Count: {
      std::uint64_t v = 0;
      const char* end = text.data() + text.size();
      const auto [ptr, ec] = std::from_chars(text.data(), end, v);
      if (text.empty() || ec != std::errc{} || ptr != end || v < st.min || v > st.max) error = expected;
      return v;
    }
    case SettingKind::Real: {
      char* end = nullptr;
      const double v = std::strtod(text.c_str(), &end);
      if (text.empty() || end != text.c_str() + text.size() || !std::isfinite(v) || v < st.low || v > st.high) {
        error = expected;
      }
      return v;
    }
    case SettingKind::Bool:
      return st.flag_value;
    case SettingKind::Choice: {
      const std::vector<std::string> names = st.choices();
      if (std::find(names.begin(), names.end(), text) == names.end()) {
        error = fmt::format("unknown {}{}; expected one of {}", st.what, suggestion(text, names, "\"", "\""),
                            fmt::join(names, ", "));
      }
      return text;
    }
    case SettingKind::Policies: {
      const std::vector<std::string> names = policy_choices();
      for (const std::string& t : texts) {
        if (std::find(names.begin(), names.end(), t) == names.end()) {
          bad = t;
          error = fmt::format("unknown policy{}; expected one of {}", suggestion(t, names, "\"", "\""),
                              fmt::join(names, ", "));
          break;
        }
      }
      return texts;
    }
    case SettingKind::Text:
      return text;
  }
  return text;
}

void give(Scenario& s, const Setting& st, const SettingValue& v, Origin at) {
  st.set(s, v);
  at.path = st.path;
  s.given[st.path] = std::move(at);
}

}  // namespace

ScenarioError::ScenarioError(std::string file, unsigned line, unsigned column, const std::string& what)
    : std::runtime_error(line == 0 ? fmt::format("{}: {}", file, what)
                                   : fmt::format("{}:{}:{}: {}", file, line, column, what)),
      file_(std::move(file)),
      line_(line),
      column_(column) {}

ScenarioError Origin::error(std::string_view subject, const std::string& what) const {
  const bool named = !subject.empty() && (flag.empty() || subject != path);
  const std::string message = named ? fmt::format("{}: {}", name_of(subject), what) : what;
  if (flag.empty()) return {file, line, column, message};
  return {text.empty() ? flag : fmt::format("{} \"{}\"", flag, text), 0, 0, message};
}

std::string Setting::table() const {
  const std::size_t dot = path.rfind('.');
  return dot == std::string::npos ? std::string() : path.substr(0, dot);
}

std::string Setting::key() const {
  const std::size_t dot = path.rfind('.');
  return dot == std::string::npos ? path : path.substr(dot + 1);
}

std::string Setting::name() const { return name_of(path); }

std::string Setting::expected(bool in_file) const {
  switch (kind) {
    case SettingKind::Size:
      return fmt::format("a size from {} to {}{}{}", format_size(min), format_size(max),
                         align > 1 ? fmt::format(", a multiple of {}", format_size(align)) : "",
                         in_file ? ", written as a string with a unit KiB, MiB, GiB or TiB such as \"64GiB\""
                                 : ", with a unit KiB, MiB, GiB or TiB such as 64GiB");
    case SettingKind::Count:
      return fmt::format("a whole number{} from {} to {}", unit.empty() ? "" : " of " + unit, min, max);
    case SettingKind::Real:
      return fmt::format("a number from {} to {}", low, high);
    case SettingKind::Bool:
      return "true or false";
    case SettingKind::Choice:
      return fmt::format("a {}: one of {}", what, fmt::join(choices(), ", "));
    case SettingKind::Policies:
      return "a list of policy names such as [\"upstream\", \"secretmem-pool-reserve\"], or [\"all\"]";
    case SettingKind::Text:
      return what;
  }
  return what;
}

std::string Setting::option_help() const {
  std::string range;
  switch (kind) {
    case SettingKind::Size:
      range = fmt::format("{} to {}{}{}; units KiB, MiB, GiB, TiB", format_size(min), format_size(max),
                          align > 1 ? fmt::format(", a multiple of {}", format_size(align)) : "",
                          at_most_half_ram ? ", at most half the RAM" : "");
      break;
    case SettingKind::Count:
      range = fmt::format("{} to {}", min, max);
      break;
    case SettingKind::Real:
      range = fmt::format("{} to {}", low, high);
      break;
    case SettingKind::Choice:
      range = fmt::format("{}", fmt::join(choices(), ", "));
      break;
    case SettingKind::Policies:
      range = fmt::format("{}", fmt::join(policy_choices(), ", "));
      break;
    case SettingKind::Bool:
    case SettingKind::Text:
      break;
  }
  if (!note.empty()) range += (range.empty() ? "" : "; ") + note;
  return range.empty() ? help : fmt::format("{} ({})", help, range);
}

const std::vector<Setting>& scenario_settings() {
  static const std::vector<Setting> settings = make_settings();
  return settings;
}

const std::vector<std::string>& scenario_tables() {
  static const std::vector<std::string> tables = {"machine", "workload", "secrets",     "map_exclusive",
                                                  "execmem", "guests",   "page_tables", "kernel_access",
                                                  "run"};
  return tables;
}

std::string suggestion(std::string_view got, const std::vector<std::string>& known, const char* open,
                       const char* close) {
  std::string best;
  unsigned best_d = 3;
  for (const std::string& k : known) {
    const unsigned d = edit_distance(got, k);
    if (d < best_d && d <= std::max<std::size_t>(1, k.size() / 3)) {
      best_d = d;
      best = k;
    }
  }
  return best.empty() ? std::string() : fmt::format(" (did you mean {}{}{}?)", open, best, close);
}

void apply_option(Scenario& s, const Setting& setting, const std::vector<std::string>& texts, std::uint64_t order) {
  std::string bad;
  std::string error;
  const SettingValue v = parse_text(setting, texts, bad, error);
  Origin at;
  at.path = setting.path;
  at.flag = setting.flag;
  at.text = setting.kind == SettingKind::Policies ? fmt::format("{}", fmt::join(texts, ",")) : bad;
  at.order = kOptionOrder + order;
  if (!error.empty()) {
    at.text = bad;
    throw at.error(setting.path, error);
  }
  give(s, setting, v, std::move(at));
}

void apply_value(Scenario& s, const Setting& setting, const SettingValue& value, const std::string& flag,
                 const std::string& text) {
  Origin at;
  at.flag = flag;
  at.text = text;
  at.order = kOptionOrder;
  give(s, setting, value, std::move(at));
}

void check_scenario(Scenario& s) {
  MachineConfig& mc = s.machine;
  WorkloadConfig& wc = s.workload;
  auto at = [&](std::string_view path) -> const Origin* {
    const auto it = s.given.find(std::string(path));
    return it == s.given.end() ? nullptr : &it->second;
  };
  auto latest = [&](const std::vector<std::string>& paths) -> const Origin* {
    const Origin* best = nullptr;
    for (const std::string& p : paths) {
      const Origin* o = at(p);
      if (o != nullptr && (best == nullptr || o->order > best->order)) best = o;
    }
    return best;
  };
  // An error at `where` (nullptr: the whole file, when none of the settings was given).
  auto fail = [&](const Origin* where, std::string_view subject, const std::string& what) {
    if (where == nullptr) {
      throw ScenarioError(s.source, 0, 0, subject.empty() ? what : fmt::format("{}: {}", name_of(subject), what));
    }
    throw where->error(subject, what);
  };

  // The duration: events, or seconds x events_per_second; an option's --events replaces either.
  const Origin* events_at = at("workload.events");
  const Origin* seconds_at = at("workload.seconds");
  const Origin* rate_at = at("workload.events_per_second");
  if (events_at != nullptr && !events_at->flag.empty()) {
    s.seconds = 0;
    s.events_per_second = 0;
  } else {
    if (events_at != nullptr && seconds_at != nullptr) {
      fail(latest({"workload.events", "workload.seconds"}), "workload",
           "give the duration either as events or as seconds (x events_per_second), not both");
    }
    if (rate_at != nullptr && seconds_at == nullptr) {
      fail(rate_at, "workload.events_per_second", "only meaningful with seconds; expected seconds = N next to it");
    }
    if (seconds_at != nullptr) {
      if (rate_at == nullptr) s.events_per_second = 100'000;
      const double events = std::round(s.seconds * s.events_per_second);
      if (events > static_cast<double>(kMaxEvents)) {
        fail(seconds_at, "workload.seconds",
             fmt::format("{} s x {} events per second is more than {} events", s.seconds, s.events_per_second,
                         kMaxEvents));
      }
      wc.events = static_cast<std::uint64_t>(events);
    }
  }

  // Areas of at most half the RAM, and the machine booting under each policy
  // (a pool policy adds its secretmem area to the CMA area).
  std::vector<std::string> layout = {"machine.ram", "machine.pci_hole", "machine.kernel_image", "machine.cma"};
  for (const Setting& st : scenario_settings()) {
    if (st.kind != SettingKind::Size || !st.at_most_half_ram) continue;
    const std::string key = st.key();
    const std::uint64_t bytes = key == "cma" ? mc.cma_bytes : mc.policy_params.size(key, 0);
    if (key != "cma") layout.push_back(st.path);
    if (bytes > mc.ram_bytes / 2) {
      fail(latest({st.path, "machine.ram"}), st.path,
           fmt::format("expected at most half the RAM ({}), got {}", format_size(mc.ram_bytes / 2),
                       format_size(bytes)));
    }
  }
  for (const std::string& p : s.policies) {
    MachineConfig booted = mc;
    booted.policy = p;
    const std::string why = boot_problem(booted);
    if (why.empty()) continue;
    // The policy and its parameters count when it adds an area of its own.
    std::vector<std::string> involved(layout.begin(), layout.begin() + 4);
    const policy::PolicyInfo* info = policy::Registry::builtin().find(p);
    if (info == nullptr || info->boot_cma_bytes) {
      involved.insert(involved.end(), layout.begin() + 4, layout.end());
      involved.emplace_back("run.policies");
    }
    const Origin* where = latest(involved);
    fail(where, where != nullptr && !where->flag.empty() ? "" : "machine",
         fmt::format("the machine cannot boot: {}", why));
  }

  // The workload's rules between settings.
  if (wc.min_secret_file_pages > wc.max_secret_file_pages) {
    fail(latest({"secrets.min_pages", "secrets.max_pages"}), "secrets.min_pages",
         fmt::format("expected at most max_pages ({}), got {}", wc.max_secret_file_pages, wc.min_secret_file_pages));
  }
  if (wc.fork_probability + wc.fd_pass_probability > 1.0) {
    const Origin* fork_at = at("secrets.fork_probability");
    fail(fork_at != nullptr ? fork_at : at("secrets.fd_pass_probability"), "secrets",
         fmt::format("expected fork_probability + fd_pass_probability <= 1, got {} + {}", wc.fork_probability,
                     wc.fd_pass_probability));
  }
  if (at("guests.pages") != nullptr && at("guests.size") != nullptr) {
    const Origin* second = latest({"guests.pages", "guests.size"});
    fail(second, second->path, "give either pages or size, not both");
  }
  if (wc.guest_pages % (std::uint64_t{1} << wc.guest_folio_order) != 0) {
    fail(latest({"guests.pages", "guests.size", "guests.folio"}), "guests",
         fmt::format("expected the size to be a whole number of folios ({}), got {}",
                     format_size(kPageSize << wc.guest_folio_order), format_size(wc.guest_pages * kPageSize)));
  }
  if (wc.guest_share > 0 && static_cast<double>(wc.guests) * static_cast<double>(wc.guest_pages) *
                                    static_cast<double>(kPageSize) >
                                static_cast<double>(mc.ram_bytes)) {
    fail(latest({"guests.share", "guests.count", "guests.pages", "guests.size", "machine.ram"}), "guests",
         fmt::format("expected count x size to fit in the RAM ({}), got {} x {}", format_size(mc.ram_bytes),
                     wc.guests, format_size(wc.guest_pages * kPageSize)));
  }
  // The kernel stream draws from the kinds with a weight: at least one.
  {
    double weights = 0;
    std::vector<std::string> paths;
    for (std::size_t k = 0; k < tlb::kKernelPageKinds; ++k) {
      weights += s.kernel_access.weights.w[k];
      paths.push_back(fmt::format("kernel_access.weight_{}", tlb::kernel_page_kind_name(static_cast<tlb::KernelPageKind>(k))));
    }
    if (weights <= 0) {
      const Origin* last = latest(paths);
      fail(last, last != nullptr ? std::string_view(last->path) : "kernel_access",
           "expected at least one weight above 0 (the stream's pages are drawn by these weights)");
    }
  }
  struct Share {
    const char* path;
    double value;
  };
  const std::vector<Share> shares = {{"secrets.share", wc.secret_share},
                                     {"workload.kernel_share", wc.kernel_share},
                                     {"map_exclusive.share", wc.map_exclusive_share},
                                     {"execmem.share", wc.rox_share},
                                     {"guests.share", wc.guest_share}};
  double total = 0;
  std::string parts;
  std::vector<std::string> paths;
  for (const Share& sh : shares) {
    total += sh.value;
    parts += fmt::format("{}{} {}", parts.empty() ? "" : ", ", name_of(sh.path), sh.value);
    paths.emplace_back(sh.path);
  }
  if (total > 1.0 + 1e-9) {
    const Origin* last = latest(paths);
    fail(last, last != nullptr ? std::string_view(last->path) : "workload",
         fmt::format("expected the shares of events to add up to at most 1 (the rest are user allocations), got "
                     "{} ({})",
                     total, parts));
  }
}

}  // namespace exmem::model::workload
