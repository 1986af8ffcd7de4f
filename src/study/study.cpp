// study/: `exmem study` (see study.hpp for what the folder owns).
// study.cpp: reading a study file and resolving its points.
#include "study/study.hpp"

#include <fmt/format.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <system_error>

#include "model/policy/policy.hpp"
#include "model/types.hpp"
#include "model/workload/scenario_toml.hpp"
#include "sim/costs.hpp"
#include "sim/metrics.hpp"

namespace exmem::study {

namespace {

namespace wl = exmem::model::workload;

constexpr std::size_t kMaxAxisValues = 10'000;
constexpr std::size_t kMaxPoints = 1'000'000;
constexpr std::uint64_t kMaxSeeds = 10'000;

// Settings a study gives its own way, never through [set] or an axis.
const std::map<std::string, std::string, std::less<>>& reserved_settings() {
  static const std::map<std::string, std::string, std::less<>> r{
      {"run.policies", "the top-level `policies`"},
      {"workload.seed", "the top-level `seeds`"},
      {"description", "the study's own `description`"},
  };
  return r;
}

class Reader {
 public:
  explicit Reader(std::string file) : file_(std::move(file)) {}

  [[nodiscard]] StudyError at(const toml::source_region& where, const std::string& what) const {
    if (where.begin.line == 0) return StudyError(fmt::format("{}: {}", file_, what));
    return StudyError(fmt::format("{}:{}:{}: {}", file_, where.begin.line, where.begin.column, what));
  }
  [[nodiscard]] StudyError at(const toml::node& v, const std::string& what) const { return at(v.source(), what); }
  [[nodiscard]] const std::string& file() const { return file_; }

  // Refuses any key of `t` not in `known` ("unknown key ... (did you mean ...?)").
  void only(const toml::table& t, std::string_view where, const std::vector<std::string>& known) const {
    for (auto&& [key, value] : t) {
      if (std::find(known.begin(), known.end(), key.str()) != known.end()) continue;
      throw at(key.source(), fmt::format("unknown key \"{}\" in {}{}; expected one of: {}", key.str(), where,
                                         wl::suggestion(key.str(), known, "\"", "\""), fmt::join(known, ", ")));
    }
  }

 private:
  std::string file_;
};

// The text a value is shown as on the report: strings as written, numbers in shortest form.
std::string label_of(const toml::node& v) {
  if (v.is_string()) return v.as_string()->get();
  if (v.is_integer()) return fmt::format("{}", v.as_integer()->get());
  if (v.is_floating_point()) return fmt::format("{}", v.as_floating_point()->get());
  if (v.is_boolean()) return v.as_boolean()->get() ? "true" : "false";
  if (const toml::table* t = v.as_table(); t != nullptr) {
    std::vector<std::string> parts;
    for (auto&& [k, x] : *t) parts.push_back(fmt::format("{}={}", k.str(), label_of(x)));
    return fmt::format("{{{}}}", fmt::join(parts, ", "));
  }
  return wl::describe_toml(v);
}

// A size as the scenario files write it, in its largest exact unit ("48GiB").
std::string size_text(std::uint64_t bytes) {
  using model::GiB;
  using model::KiB;
  using model::MiB;
  using model::TiB;
  for (const auto& [unit, m] : {std::pair{"TiB", TiB}, {"GiB", GiB}, {"MiB", MiB}, {"KiB", KiB}}) {
    if (bytes != 0 && bytes % m == 0) return fmt::format("{}{}", bytes / m, unit);
  }
  return fmt::format("{}", bytes);
}

// An axis as read: its setting, its values (owned) and where it was written.
struct AxisSpec {
  std::string name;                        // the setting, "scenario", or the axis' `name`
  std::vector<std::string> settings;       // the settings it sets: one, or several together
  std::vector<std::string> labels;         // as the report shows its values
  toml::array made;                        // the values a range made
  std::vector<const toml::node*> values;   // each value: in the study's document, or in `made`
  std::vector<toml::source_region> where;  // per value: where it (or its range) was written
};

// range = { from = A, to = B, step = S } or { from = A, to = B, times = F }:
// numbers, or sizes ("16GiB") with `times`.
toml::array expand_range(const Reader& rd, const toml::table& r, std::vector<toml::source_region>& where) {
  rd.only(r, "the axis' range", {"from", "to", "step", "times"});
  const toml::node* from = r.get("from");
  const toml::node* to = r.get("to");
  const toml::node* step = r.get("step");
  const toml::node* times = r.get("times");
  const std::string shape =
      "a range { from = A, to = B, step = S } (numbers) or { from = A, to = B, times = F } (numbers or sizes "
      "such as \"16GiB\")";
  if (from == nullptr || to == nullptr || (step == nullptr) == (times == nullptr)) {
    throw rd.at(r.source(), fmt::format("expected {}", shape));
  }
  toml::array out;
  auto push = [&](toml::array&& a) {
    if (a.size() > kMaxAxisValues) {
      throw rd.at(r.source(), fmt::format("the range gives {} values; at most {} are allowed", a.size(), kMaxAxisValues));
    }
    for (std::size_t i = 0; i < a.size(); ++i) where.push_back(r.source());
    out = std::move(a);
  };
  // Sizes.
  if (from->is_string() || to->is_string()) {
    std::uint64_t a = 0;
    std::uint64_t b = 0;
    if (!from->is_string() || !model::parse_size(from->as_string()->get(), a) || a == 0) {
      throw rd.at(*from, fmt::format("range from: expected a size such as \"16GiB\", got {}", wl::describe_toml(*from)));
    }
    if (!to->is_string() || !model::parse_size(to->as_string()->get(), b)) {
      throw rd.at(*to, fmt::format("range to: expected a size such as \"1TiB\", got {}", wl::describe_toml(*to)));
    }
    if (times == nullptr || !times->is_integer() || times->as_integer()->get() < 2) {
      throw rd.at(step != nullptr ? *step : *times,
                  "a range of sizes takes `times`, a whole factor of at least 2 (\"16GiB\" to \"1TiB\" times 2)");
    }
    if (a > b) throw rd.at(*to, fmt::format("range to: {} is below from ({})", to->as_string()->get(), from->as_string()->get()));
    const auto f = static_cast<std::uint64_t>(times->as_integer()->get());
    toml::array values;
    for (std::uint64_t x = a; x <= b && values.size() <= kMaxAxisValues; x = x > b / f ? b + 1 : x * f) {
      values.push_back(size_text(x));
    }
    push(std::move(values));
    return out;
  }
  auto number = [&](const toml::node* n, const char* what) {
    if (n->is_integer()) return static_cast<double>(n->as_integer()->get());
    if (n->is_floating_point() && std::isfinite(n->as_floating_point()->get())) return n->as_floating_point()->get();
    throw rd.at(*n, fmt::format("range {}: expected a number, got {}", what, wl::describe_toml(*n)));
  };
  const double a = number(from, "from");
  const double b = number(to, "to");
  if (a > b) throw rd.at(*to, fmt::format("range to: {} is below from ({})", b, a));
  const bool integers = from->is_integer() && to->is_integer() && (step == nullptr || step->is_integer());
  toml::array values;
  if (step != nullptr) {
    const double s = number(step, "step");
    if (!(s > 0)) throw rd.at(*step, fmt::format("range step: expected a number above 0, got {}", s));
    for (std::size_t i = 0;; ++i) {
      const double x = a + static_cast<double>(i) * s;
      if (x > b + std::abs(s) * 1e-9 || values.size() > kMaxAxisValues) break;
      if (integers) {
        values.push_back(static_cast<std::int64_t>(std::llround(x)));
      } else {
        values.push_back(std::stod(fmt::format("{:.12g}", x)));
      }
    }
  } else {
    const double f = number(times, "times");
    if (!(f > 1)) throw rd.at(*times, fmt::format("range times: expected a factor above 1, got {}", f));
    if (!(a > 0)) throw rd.at(*from, "range from: a range with `times` starts above 0");
    for (double x = a; x <= b * (1 + 1e-12) && values.size() <= kMaxAxisValues; x *= f) {
      if (integers) {
        values.push_back(static_cast<std::int64_t>(std::llround(x)));
      } else {
        values.push_back(std::stod(fmt::format("{:.12g}", x)));
      }
    }
  }
  push(std::move(values));
  return out;
}

std::vector<std::string> policy_names(const Reader& rd, const toml::node& v) {
  std::vector<std::string> known = model::policy::Registry::builtin().names();
  std::vector<std::string> choices = known;
  choices.emplace_back("all");
  const std::string expected = "a list of policy names such as [\"upstream\", \"secretmem-pmd-pool\"], or [\"all\"]";
  std::vector<const toml::node*> items;
  if (v.is_string()) {
    items.push_back(&v);
  } else if (const toml::array* a = v.as_array(); a != nullptr && !a->empty()) {
    for (const toml::node& x : *a) items.push_back(&x);
  } else {
    throw rd.at(v, fmt::format("policies: expected {}, got {}", expected, wl::describe_toml(v)));
  }
  std::vector<std::string> out;
  for (const toml::node* x : items) {
    if (!x->is_string()) throw rd.at(*x, fmt::format("policies: expected a policy name, got {}", wl::describe_toml(*x)));
    const std::string name = x->as_string()->get();
    if (std::find(choices.begin(), choices.end(), name) == choices.end()) {
      throw rd.at(*x, fmt::format("policies: unknown policy \"{}\"{}; expected one of {}", name,
                                  wl::suggestion(name, choices, "\"", "\""), fmt::join(choices, ", ")));
    }
    for (const std::string& p : name == "all" ? known : std::vector<std::string>{name}) {
      if (std::find(out.begin(), out.end(), p) == out.end()) out.push_back(p);
    }
  }
  return out;
}

std::vector<std::uint64_t> seed_list(const Reader& rd, const toml::node& v) {
  const std::string expected =
      fmt::format("a number of seeds from 1 to {} (seeds 1, 2, ...), or a list of distinct seeds such as [1, 7, 42]", kMaxSeeds);
  std::vector<std::uint64_t> out;
  if (v.is_integer()) {
    const std::int64_t n = v.as_integer()->get();
    if (n < 1 || static_cast<std::uint64_t>(n) > kMaxSeeds) throw rd.at(v, fmt::format("seeds: expected {}, got {}", expected, wl::describe_toml(v)));
    for (std::int64_t i = 1; i <= n; ++i) out.push_back(static_cast<std::uint64_t>(i));
    return out;
  }
  const toml::array* a = v.as_array();
  if (a == nullptr || a->empty() || a->size() > kMaxSeeds) {
    throw rd.at(v, fmt::format("seeds: expected {}, got {}", expected, wl::describe_toml(v)));
  }
  for (const toml::node& x : *a) {
    if (!x.is_integer() || x.as_integer()->get() < 0) {
      throw rd.at(x, fmt::format("seeds: expected a seed (a whole number from 0), got {}", wl::describe_toml(x)));
    }
    const auto s = static_cast<std::uint64_t>(x.as_integer()->get());
    if (std::find(out.begin(), out.end(), s) != out.end()) throw rd.at(x, fmt::format("seeds: seed {} is named twice", s));
    out.push_back(s);
  }
  return out;
}

// The settings of a table laid over scenarios ([set]): "table.key" -> value.
std::vector<std::pair<std::string, const toml::node*>> settings_of(const Reader& rd, const toml::table& set) {
  std::vector<std::pair<std::string, const toml::node*>> out;
  for (auto&& [table, inner] : set) {
    const toml::table* t = inner.as_table();
    if (t == nullptr) {
      throw rd.at(table.source(), fmt::format("[set] {}: expected a table of settings as in a scenario file "
                                              "(such as [set.machine] or machine.ram = \"64GiB\"), got {}",
                                              table.str(), wl::describe_toml(inner)));
    }
    for (auto&& [key, value] : *t) out.emplace_back(fmt::format("{}.{}", table.str(), key.str()), &value);
  }
  return out;
}

void refuse_reserved(const Reader& rd, const std::string& path, const toml::source_region& where) {
  const auto& r = reserved_settings();
  if (const auto it = r.find(path); it != r.end()) {
    throw rd.at(where, fmt::format("\"{}\" is set by {}, not here", path, it->second));
  }
}

// One [[axis]]: `setting` and its `values` or `range`; or `settings`, several
// set together, and `values`, a list of lists; `name` and `labels` optional.
AxisSpec read_axis(const Reader& rd, const toml::node& n, const std::vector<AxisSpec>& before,
                   const std::vector<std::pair<std::string, const toml::node*>>& fixed, bool top_level_scenario) {
  const toml::table& t = *n.as_table();
  AxisSpec spec;
  const toml::node* setting = t.get("setting");
  const toml::node* settings = t.get("settings");
  if ((setting == nullptr) == (settings == nullptr)) {
    throw rd.at(n, "[[axis]]: expected `setting` (a scenario setting such as \"machine.ram\", or \"scenario\") or "
                   "`settings` (several set together, such as [\"guests.count\", \"guests.size\"])");
  }
  std::vector<const toml::node*> names;
  if (setting != nullptr) {
    names.push_back(setting);
  } else if (const toml::array* sa = settings->as_array(); sa != nullptr && sa->size() >= 2) {
    for (const toml::node& x : *sa) names.push_back(&x);
  } else {
    throw rd.at(*settings, fmt::format("[[axis]] settings: expected a list of two or more settings, got {}", wl::describe_toml(*settings)));
  }
  std::vector<std::string> known = wl::setting_paths();
  known.insert(known.begin(), "scenario");
  for (const toml::node* x : names) {
    if (!x->is_string()) throw rd.at(*x, fmt::format("[[axis]] setting: expected a setting's name, got {}", wl::describe_toml(*x)));
    const std::string name = x->as_string()->get();
    refuse_reserved(rd, name, x->source());
    if (std::find(known.begin(), known.end(), name) == known.end()) {
      throw rd.at(*x, fmt::format("[[axis]] setting: unknown scenario setting \"{}\"{}; expected \"scenario\" or a "
                                  "setting as [table] key path: {}",
                                  name, wl::suggestion(name, known, "\"", "\""), fmt::join(known, ", ")));
    }
    if (name == "scenario" && top_level_scenario) {
      throw rd.at(*x, "[[axis]] \"scenario\" and the top-level `scenario` are both given; keep one");
    }
    for (const AxisSpec& o : before) {
      if (std::find(o.settings.begin(), o.settings.end(), name) != o.settings.end()) {
        throw rd.at(*x, fmt::format("[[axis]] \"{}\" is swept twice", name));
      }
    }
    for (const auto& [p, v] : fixed) {
      if (p == name) throw rd.at(*x, fmt::format("[[axis]] \"{}\" is also given in [set]", name));
    }
    if (std::find(spec.settings.begin(), spec.settings.end(), name) != spec.settings.end()) {
      throw rd.at(*x, fmt::format("[[axis]] settings: \"{}\" is named twice", name));
    }
    spec.settings.push_back(name);
  }
  spec.name = fmt::format("{}", fmt::join(spec.settings, "+"));
  if (const toml::node* nm = t.get("name"); nm != nullptr) {
    if (!nm->is_string() || nm->as_string()->get().empty()) {
      throw rd.at(*nm, fmt::format("[[axis]] name: expected a name for the axis, got {}", wl::describe_toml(*nm)));
    }
    spec.name = nm->as_string()->get();
  }
  for (const AxisSpec& o : before) {
    if (o.name == spec.name) throw rd.at(n, fmt::format("[[axis]] \"{}\": another axis has that name", spec.name));
  }
  const toml::node* values = t.get("values");
  const toml::node* range = t.get("range");
  if ((values == nullptr) == (range == nullptr)) {
    throw rd.at(n, fmt::format("[[axis]] \"{}\": expected either `values` (a list) or `range`", spec.name));
  }
  if (values != nullptr) {
    const toml::array* va = values->as_array();
    if (va == nullptr || va->empty() || va->size() > kMaxAxisValues) {
      throw rd.at(*values, fmt::format("[[axis]] \"{}\" values: expected a list of 1 to {} values, got {}", spec.name,
                                       kMaxAxisValues, wl::describe_toml(*values)));
    }
    for (const toml::node& x : *va) {
      if (spec.settings.size() > 1) {
        const toml::array* tuple = x.as_array();
        if (tuple == nullptr || tuple->size() != spec.settings.size()) {
          throw rd.at(x, fmt::format("[[axis]] \"{}\" values: expected lists of {} values, one for each of {}, got {}",
                                     spec.name, spec.settings.size(), fmt::join(spec.settings, ", "), wl::describe_toml(x)));
        }
      }
      spec.values.push_back(&x);
      spec.where.push_back(x.source());
    }
  } else {
    if (spec.settings.size() > 1) throw rd.at(*range, fmt::format("[[axis]] \"{}\": a range sets one setting; give `values`", spec.name));
    if (!range->is_table()) throw rd.at(*range, fmt::format("[[axis]] \"{}\" range: expected a table", spec.name));
    spec.made = expand_range(rd, *range->as_table(), spec.where);
    for (const toml::node& x : spec.made) spec.values.push_back(&x);
  }
  for (const toml::node* v : spec.values) {
    if (const toml::array* tuple = v->as_array(); tuple != nullptr) {
      std::vector<std::string> parts;
      for (const toml::node& x : *tuple) parts.push_back(label_of(x));
      spec.labels.push_back(fmt::format("{}", fmt::join(parts, ", ")));
    } else {
      spec.labels.push_back(label_of(*v));
    }
  }
  if (const toml::node* l = t.get("labels"); l != nullptr) {
    const toml::array* la = l->as_array();
    if (la == nullptr || la->size() != spec.values.size()) {
      throw rd.at(*l, fmt::format("[[axis]] \"{}\" labels: expected a list of {} names, one for each value", spec.name,
                                  spec.values.size()));
    }
    for (std::size_t i = 0; i < la->size(); ++i) {
      const toml::node& x = *la->get(i);
      if (!x.is_string() || x.as_string()->get().empty()) {
        throw rd.at(x, fmt::format("[[axis]] \"{}\" labels: expected a name, got {}", spec.name, wl::describe_toml(x)));
      }
      spec.labels[i] = x.as_string()->get();
    }
  }
  std::set<std::string> seen;
  for (std::size_t i = 0; i < spec.labels.size(); ++i) {
    if (!seen.insert(spec.labels[i]).second) {
      throw rd.at(spec.where[i], fmt::format("[[axis]] \"{}\": the value {} is given twice", spec.name, spec.labels[i]));
    }
  }
  return spec;
}

std::vector<MetricRef> metric_refs(const Reader& rd, const toml::node* v) {
  std::vector<std::string> names = default_metrics();
  std::vector<const toml::node*> nodes(names.size(), nullptr);
  if (v != nullptr) {
    const toml::array* a = v->as_array();
    if (a == nullptr || a->empty()) {
      throw rd.at(*v, fmt::format("[report] metrics: expected a list of metrics (runs.csv columns such as "
                                  "\"direct_map_level2_splits\", or JSON pointers such as \"/oom/kills\"), got {}",
                                  wl::describe_toml(*v)));
    }
    names.clear();
    nodes.clear();
    for (const toml::node& x : *a) {
      if (!x.is_string()) throw rd.at(x, fmt::format("[report] metrics: expected a metric's name, got {}", wl::describe_toml(x)));
      names.push_back(x.as_string()->get());
      nodes.push_back(&x);
    }
  }
  std::vector<std::string> columns;
  for (const sim::Metric& m : sim::metrics()) {
    if (!m.column.empty() && m.get != nullptr) columns.emplace_back(m.column);
  }
  std::vector<MetricRef> out;
  for (std::size_t i = 0; i < names.size(); ++i) {
    const std::string& n = names[i];
    const sim::Metric* found = nullptr;
    for (const sim::Metric& m : sim::metrics()) {
      if (m.get != nullptr && ((!m.column.empty() && m.column == n) || (!m.json.empty() && m.json == n))) found = &m;
    }
    if (found == nullptr) {
      const std::string what = fmt::format("[report] metrics: unknown metric \"{}\"{}; expected a runs.csv column ({}) "
                                           "or a run's JSON pointer (docs/study-format.md)",
                                           n, wl::suggestion(n, columns, "\"", "\""), fmt::join(columns, ", "));
      if (nodes[i] != nullptr) throw rd.at(*nodes[i], what);
      throw StudyError(what);
    }
    MetricRef r;
    r.key = found->column.empty() ? std::string(found->json) : std::string(found->column);
    r.json = found->json;
    r.label = found->label.empty() ? r.key : std::string(found->label);
    r.unit = found->unit;
    if (std::none_of(out.begin(), out.end(), [&](const MetricRef& o) { return o.key == r.key; })) out.push_back(r);
  }
  return out;
}

}  // namespace

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::system_error(errno, std::generic_category(), path.string());
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw std::system_error(errno != 0 ? errno : EIO, std::generic_category(), path.string());
  return text.str();
}

nlohmann::json axes_json(const Study& study, const Point& p) {
  nlohmann::json a = nlohmann::json::object();
  for (std::size_t i = 0; i < study.axes.size(); ++i) a[study.axes[i].name] = study.axes[i].labels[p.at[i]];
  return a;
}

std::vector<std::string> default_metrics() {
  return {"direct_map_level2_splits", "DirectMap4k_kB", "full_flushes", "oom_kills", "kernel_slowdown_percent"};
}

std::string sha256_hex(std::string_view bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), digest, &n, EVP_sha256(), nullptr) != 1) {
    throw std::runtime_error("SHA-256 failed (OpenSSL EVP_Digest)");
  }
  std::string out;
  for (unsigned int i = 0; i < n; ++i) out += fmt::format("{:02x}", digest[i]);
  return out;
}

std::vector<std::size_t> parse_point_list(std::string_view text, std::size_t points) {
  const std::string expected =
      fmt::format("point indices from 0 to {}: \"K\", a range \"A-B\" or a comma-separated list of them", points == 0 ? 0 : points - 1);
  auto number = [&](std::string_view s) {
    std::size_t v = 0;
    if (s.empty() || s.size() > 18) throw std::invalid_argument(fmt::format("\"{}\": expected {}", text, expected));
    for (char c : s) {
      if (c < '0' || c > '9') throw std::invalid_argument(fmt::format("\"{}\": expected {}", text, expected));
      v = v * 10 + static_cast<std::size_t>(c - '0');
    }
    if (v >= points) {
      throw std::invalid_argument(fmt::format("\"{}\": point {} is past the study's last ({})", text, v, points == 0 ? 0 : points - 1));
    }
    return v;
  };
  std::vector<std::size_t> out;
  std::set<std::size_t> seen;
  for (std::size_t start = 0; start <= text.size();) {
    const std::size_t comma = std::min(text.find(',', start), text.size());
    const std::string_view part = text.substr(start, comma - start);
    const std::size_t dash = part.find('-');
    const std::size_t a = number(dash == std::string_view::npos ? part : part.substr(0, dash));
    const std::size_t b = dash == std::string_view::npos ? a : number(part.substr(dash + 1));
    if (b < a) throw std::invalid_argument(fmt::format("\"{}\": the range {} ends before it starts", text, part));
    for (std::size_t i = a; i <= b; ++i) {
      if (seen.insert(i).second) out.push_back(i);
    }
    start = comma + 1;
  }
  std::sort(out.begin(), out.end());
  return out;
}

Study load_study(const std::string& path, const ScenarioResolver& resolver, std::string_view model_version) {
  std::string text;
  try {
    text = read_text(path);
  } catch (const std::system_error& e) {
    throw StudyError(fmt::format("{}: cannot read the study file: {}", path, e.code().message()));
  }
  const Reader rd{path};
  toml::table doc;
  try {
    doc = toml::parse(text, path);
  } catch (const toml::parse_error& e) {
    throw rd.at(e.source(), fmt::format("TOML syntax error: {}", e.description()));
  }
  rd.only(doc, "the study file", {"description", "scenario", "policies", "seeds", "costs", "set", "axis", "report"});

  Study st;
  st.file = path;
  st.name = std::filesystem::path(path).stem().string();
  st.model_version = std::string(model_version);
  const std::filesystem::path dir = std::filesystem::path(path).parent_path();

  if (const toml::node* d = doc.get("description"); d != nullptr) {
    if (!d->is_string()) throw rd.at(*d, fmt::format("description: expected a string, got {}", wl::describe_toml(*d)));
    st.description = d->as_string()->get();
  }
  st.policies = doc.get("policies") != nullptr ? policy_names(rd, *doc.get("policies"))
                                               : model::policy::Registry::builtin().names();
  st.seeds = doc.get("seeds") != nullptr ? seed_list(rd, *doc.get("seeds")) : std::vector<std::uint64_t>{1};

  // The costs file prices the slowdown of every point.
  nlohmann::json costs_config = "built-in";
  if (const toml::node* c = doc.get("costs"); c != nullptr) {
    if (!c->is_string()) throw rd.at(*c, fmt::format("costs: expected a costs file's path, got {}", wl::describe_toml(*c)));
    std::filesystem::path p = c->as_string()->get();
    if (p.is_relative()) p = dir / p;
    try {
      const sim::CostsFile f = sim::load_costs(p.string());
      st.figures = sim::figures_of(f);
      st.costs = p.string();
      costs_config = {{"walk_ns", st.figures.walk_ns},
                      {"kernel_access_ns", st.figures.kernel_access_ns},
                      {"ipi_round_trip_ns", st.figures.shootdown.ipi_round_trip_ns},
                      {"single_page_flush_ns", st.figures.shootdown.single_page_flush_ns},
                      {"full_flush_ns", st.figures.shootdown.full_flush_ns}};
    } catch (const std::exception& e) {
      throw rd.at(*c, fmt::format("costs: {}", e.what()));
    }
  }

  // [set]: settings of every point.
  std::vector<std::pair<std::string, const toml::node*>> fixed;
  if (const toml::node* s = doc.get("set"); s != nullptr) {
    if (!s->is_table()) throw rd.at(*s, fmt::format("set: expected a table of settings ([set.machine] ...), got {}", wl::describe_toml(*s)));
    fixed = settings_of(rd, *s->as_table());
    for (const auto& [p, v] : fixed) refuse_reserved(rd, p, v->source());
  }

  // [[axis]]: each a setting (or "scenario") and its values.
  const toml::node* scenario_node = doc.get("scenario");
  std::vector<AxisSpec> specs;
  if (const toml::node* axes = doc.get("axis"); axes != nullptr) {
    const toml::array* a = axes->as_array();
    if (a == nullptr || !a->is_array_of_tables()) {
      throw rd.at(*axes, "axis: expected [[axis]] tables, each with `setting` and `values` or `range`");
    }
    for (const toml::node& n : *a) {
      const toml::table& t = *n.as_table();
      rd.only(t, "[[axis]]", {"setting", "settings", "name", "values", "range", "labels"});
      specs.push_back(read_axis(rd, n, specs, fixed, scenario_node != nullptr));
    }
  }
  for (const AxisSpec& s : specs) st.axes.push_back(Axis{s.name, s.labels});

  // [report]
  const toml::node* metrics = nullptr;
  if (const toml::node* r = doc.get("report"); r != nullptr) {
    if (!r->is_table()) throw rd.at(*r, fmt::format("report: expected a table, got {}", wl::describe_toml(*r)));
    rd.only(*r->as_table(), "[report]", {"x", "metrics"});
    if (const toml::node* x = r->as_table()->get("x"); x != nullptr) {
      std::vector<std::string> names;
      for (const Axis& a : st.axes) names.push_back(a.name);
      if (!x->is_string() || std::find(names.begin(), names.end(), x->as_string()->get()) == names.end()) {
        throw rd.at(*x, fmt::format("[report] x: expected one of the study's axes ({}), got {}",
                                    names.empty() ? std::string("it has none") : fmt::format("{}", fmt::join(names, ", ")),
                                    wl::describe_toml(*x)));
      }
      st.x = x->as_string()->get();
    }
    metrics = r->as_table()->get("metrics");
  }
  if (st.x.empty() && !st.axes.empty()) st.x = st.axes.front().name;
  st.metrics = metric_refs(rd, metrics);

  // The scenarios: the top-level one, or the scenario axis' values.
  struct Base {
    wl::Scenario scenario;
    std::map<std::string, std::string> settings;
  };
  std::map<std::string, Base> bases;
  auto base = [&](const std::string& name, const toml::source_region& where) -> const Base& {
    if (const auto it = bases.find(name); it != bases.end()) return it->second;
    const std::optional<ScenarioText> found = resolver.find(name, dir);
    if (!found) {
      throw rd.at(where, fmt::format("scenario \"{}\": expected a scenario file (relative to the study file) or "
                                     "the name of a shipped scenario ({})",
                                     name, fmt::join(resolver.known(), ", ")));
    }
    Base b;
    try {
      b.scenario = wl::read_scenario(found->text, found->source);
      b.settings = wl::resolved_settings(found->text, found->source);
    } catch (const wl::ScenarioError& e) {
      throw StudyError(fmt::format("{} (the scenario \"{}\" the study names at {}:{})", e.what(), name, path,
                                   where.begin.line));
    }
    return bases.emplace(name, std::move(b)).first->second;
  };
  std::string fixed_scenario = "default";
  toml::source_region fixed_scenario_at;
  if (scenario_node != nullptr) {
    if (!scenario_node->is_string()) {
      throw rd.at(*scenario_node, fmt::format("scenario: expected a scenario file or a shipped scenario's name, got {}",
                                              wl::describe_toml(*scenario_node)));
    }
    fixed_scenario = scenario_node->as_string()->get();
    fixed_scenario_at = scenario_node->source();
  }

  // Every combination of the axes' values, the first axis slowest.
  std::size_t combos = 1;
  for (const AxisSpec& s : specs) {
    combos *= s.values.size();
    if (combos > kMaxPoints) break;
  }
  const std::size_t total = combos * st.policies.size() * st.seeds.size();
  if (combos > kMaxPoints || total > kMaxPoints) {
    throw StudyError(fmt::format("{}: the study has more than {} points; split it", path, kMaxPoints));
  }
  std::vector<std::size_t> at(specs.size(), 0);
  for (std::size_t c = 0; c < combos; ++c) {
    std::size_t rest = c;
    for (std::size_t i = specs.size(); i-- > 0;) {
      at[i] = rest % specs[i].values.size();
      rest /= specs[i].values.size();
    }
    std::string scenario_name = fixed_scenario;
    toml::source_region scenario_at = fixed_scenario_at;
    for (std::size_t i = 0; i < specs.size(); ++i) {
      const auto k = std::find(specs[i].settings.begin(), specs[i].settings.end(), "scenario");
      if (k == specs[i].settings.end()) continue;
      const toml::node* tuple = specs[i].values[at[i]];
      const toml::node& v = specs[i].settings.size() > 1
                                ? *tuple->as_array()->get(static_cast<std::size_t>(k - specs[i].settings.begin()))
                                : *tuple;
      if (!v.is_string()) {
        throw rd.at(specs[i].where[at[i]], fmt::format("[[axis]] \"scenario\": expected scenario names or files, got {}", wl::describe_toml(v)));
      }
      scenario_name = v.as_string()->get();
      scenario_at = specs[i].where[at[i]];
    }
    const Base& b = base(scenario_name, scenario_at);
    wl::Scenario s = b.scenario;
    std::map<std::string, std::string> settings = b.settings;
    std::vector<std::string> axis_labels;
    try {
      for (const auto& [p, v] : fixed) settings[p] = wl::apply_toml_setting(s, p, *v, path);
      for (std::size_t i = 0; i < specs.size(); ++i) {
        const AxisSpec& ax = specs[i];
        axis_labels.push_back(fmt::format("{} = {}", ax.name, ax.labels[at[i]]));
        for (std::size_t k = 0; k < ax.settings.size(); ++k) {
          if (ax.settings[k] == "scenario") continue;
          const toml::node& v = ax.settings.size() > 1 ? *ax.values[at[i]]->as_array()->get(k) : *ax.values[at[i]];
          // A value a range made has no place of its own: its errors name the range.
          settings[ax.settings[k]] = wl::apply_toml_setting(s, ax.settings[k], v, path, &ax.where[at[i]]);
        }
      }
      s.policies = st.policies;
      wl::check_scenario(s);
    } catch (const wl::ScenarioError& e) {
      throw StudyError(axis_labels.empty() ? std::string(e.what())
                                           : fmt::format("{} (at {})", e.what(), fmt::join(axis_labels, ", ")));
    }
    for (const auto& r : reserved_settings()) settings.erase(r.first);
    for (const std::string& policy : st.policies) {
      for (const std::uint64_t seed : st.seeds) {
        Point p;
        p.index = st.points.size();
        p.at = at;
        p.policy = policy;
        p.seed = seed;
        p.scenario = s;
        p.scenario.workload.seed = seed;
        p.scenario.policies = {policy};
        p.config = {{"settings", settings},
                    {"policy", policy},
                    {"seed", seed},
                    {"costs", costs_config},
                    {"model_version", st.model_version}};
        p.hash = sha256_hex(p.config.dump()).substr(0, 16);
        st.points.push_back(std::move(p));
      }
    }
  }
  return st;
}

}  // namespace exmem::study
