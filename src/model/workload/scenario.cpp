// workload/: what drives the model (see README.md for what the folder owns).
// scenario.cpp: reading scenario files with toml++, every key checked.
#include "model/workload/scenario.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>

#include "model/policy/policy.hpp"

// The model library does not link the toml++ shared library: its header-only
// form is compiled here, in the one file that reads TOML.
#ifndef TOML_HEADER_ONLY
#define TOML_HEADER_ONLY 1
#endif
#include <toml++/toml.h>

#include "model/workload/scenario_toml.hpp"

namespace exmem::model::workload {

namespace {

ScenarioError located(const std::string& file, const toml::source_region& at, const std::string& what) {
  return ScenarioError(file, at.begin.line, at.begin.column, what);
}

}  // namespace

// "a string \"64GB\"", "an integer -3", ... for "expected X, got Y".
std::string describe_toml(const toml::node& v) {
  switch (v.type()) {
    case toml::node_type::string:
      return fmt::format("a string \"{}\"", v.as_string()->get());
    case toml::node_type::integer:
      return fmt::format("an integer {}", v.as_integer()->get());
    case toml::node_type::floating_point:
      return fmt::format("a floating-point number {}", v.as_floating_point()->get());
    case toml::node_type::boolean:
      return fmt::format("a boolean {}", v.as_boolean()->get());
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::date:
    case toml::node_type::time:
    case toml::node_type::date_time:
      return "a date or time";
    case toml::node_type::none:
      break;
  }
  return "nothing";
}

namespace {

class Reader {
 public:
  explicit Reader(std::string file) : file_(std::move(file)) {}

  [[noreturn]] void fail(const toml::node& v, std::string_view where, std::string_view expected) const {
    throw located(file_, v.source(), fmt::format("{}: expected {}, got {}", where, expected, describe_toml(v)));
  }
  [[noreturn]] void fail_at(const toml::source_region& at, const std::string& what) const {
    throw located(file_, at, what);
  }

  // One value of `st` as written in the file, checked against its type and range.
  SettingValue value(const toml::node& v, const Setting& st) const {
    const std::string where = st.name();
    const std::string expected = st.expected(true);
    switch (st.kind) {
      case SettingKind::Size: {
        std::uint64_t bytes = 0;
        if (!v.is_string() || !parse_size(v.as_string()->get(), bytes) || bytes < st.min || bytes > st.max ||
            bytes % st.align != 0) {
          fail(v, where, expected);
        }
        return bytes;
      }
      case SettingKind::Count: {
        if (!v.is_integer()) fail(v, where, expected);
        const std::int64_t x = v.as_integer()->get();
        if (x < 0 || static_cast<std::uint64_t>(x) < st.min || static_cast<std::uint64_t>(x) > st.max) {
          fail(v, where, expected);
        }
        return static_cast<std::uint64_t>(x);
      }
      case SettingKind::Real: {
        double x = 0;
        if (v.is_integer()) {
          x = static_cast<double>(v.as_integer()->get());
        } else if (v.is_floating_point()) {
          x = v.as_floating_point()->get();
        } else {
          fail(v, where, expected);
        }
        if (!std::isfinite(x) || x < st.low || x > st.high) fail(v, where, expected);
        return x;
      }
      case SettingKind::Bool:
        if (!v.is_boolean()) fail(v, where, expected);
        return v.as_boolean()->get();
      case SettingKind::Choice:
        return choice(v, where, st.choices(), st.what.c_str());
      case SettingKind::Policies: {
        std::vector<std::string> known = policy::Registry::builtin().names();
        known.emplace_back("all");
        std::vector<std::string> names;
        if (v.is_array()) {
          if (v.as_array()->empty()) fail(v, where, "a list of policy names such as [\"upstream\"], or [\"all\"]");
          for (const toml::node& x : *v.as_array()) names.push_back(choice(x, where, known, "policy"));
        } else if (v.is_string()) {
          names.push_back(choice(v, where, known, "policy"));
        } else {
          fail(v, where, expected);
        }
        return names;
      }
      case SettingKind::Text:
        if (!v.is_string()) fail(v, where, expected);
        return v.as_string()->get();
    }
    fail(v, where, expected);
  }

  std::string choice(const toml::node& v, std::string_view where, const std::vector<std::string>& names,
                     const char* what) const {
    const std::string expected = fmt::format("a {}: one of {}", what, fmt::join(names, ", "));
    if (!v.is_string()) fail(v, where, expected);
    const std::string s = v.as_string()->get();
    if (std::find(names.begin(), names.end(), s) == names.end()) {
      fail_at(v.source(), fmt::format("{}: unknown {} \"{}\"{}; expected one of {}", where, what, s,
                                      suggestion(s, names, "\"", "\""), fmt::join(names, ", ")));
    }
    return s;
  }

  const toml::table& table(const toml::node& v, std::string_view where) const {
    if (!v.is_table()) fail(v, where, "a table");
    return *v.as_table();
  }

  struct Key {
    std::string name;
    std::function<void(const toml::node&, const std::string&)> read;
  };

  // Calls each key's reader; any key not in `keys` is an error.
  void walk(const toml::table& t, const std::string& table_name, const std::vector<Key>& keys) const {
    std::vector<std::string> names;
    names.reserve(keys.size());
    for (const Key& k : keys) names.push_back(k.name);
    for (auto&& [key, value] : t) {
      const std::string_view key_name = key.str();
      const auto it = std::find_if(keys.begin(), keys.end(), [&](const Key& k) { return k.name == key_name; });
      if (it == keys.end()) {
        if (table_name.empty() && value.is_table()) {
          std::vector<std::string> tables;
          for (const Key& k : keys)
            if (k.name != "description") tables.push_back(k.name);
          fail_at(key.source(), fmt::format("unknown table [{}]{}; expected one of: [{}]", key.str(),
                                            suggestion(key.str(), tables, "[", "]"), fmt::join(tables, "], [")));
        }
        fail_at(key.source(), fmt::format("unknown key \"{}\" in {}{}; expected one of: {}", key.str(),
                                          table_name.empty() ? "the top level" : "[" + table_name + "]",
                                          suggestion(key.str(), names, "\"", "\""), fmt::join(names, ", ")));
      }
      it->read(value, table_name.empty() ? std::string(key.str()) : fmt::format("[{}] {}", table_name, key.str()));
    }
  }

  // Where a value was written, as a setting's Origin.
  [[nodiscard]] Origin origin(const toml::node& v) const {
    const toml::source_region& at = v.source();
    Origin o;
    o.file = file_;
    o.line = at.begin.line;
    o.column = at.begin.column;
    o.order = (std::uint64_t{at.begin.line} << 32) | at.begin.column;
    return o;
  }

  [[nodiscard]] const std::string& file() const { return file_; }

 private:
  std::string file_;
};

// toml++ 3.3 asks is_non_ascii_horizontal_whitespace() about a non-ASCII
// character met outside a string or a comment (in a number or a date it reads
// on to the end of the value, quotes included), and about the one after a
// backslash (and after its line break and indentation) in a """ string. For
// the characters below, that function reaches TOML_UNREACHABLE: undefined
// behaviour (UBSan stops there; an optimised build may do anything). Such
// text is refused before toml++ reads it; in strings and comments these
// characters are fine.
bool toml_cannot_classify(char32_t c) {
  return (c >= 0xA1 && c <= 0x499) || (c >= 0x2C5E && c <= 0x3057 && c != 0x3000) || (c >= 0xFB26 && c <= 0xFEFE);
}

// The code point at text[i] (text is UTF-8; a malformed sequence reads as
// U+FFFD, which toml++ then refuses itself), and its length in bytes.
char32_t code_point(std::string_view text, std::size_t i, std::size_t& length) {
  const auto b = static_cast<unsigned char>(text[i]);
  length = b < 0x80 ? 1 : b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1;
  if (length == 1 || i + length > text.size()) {
    length = 1;
    return b < 0x80 ? char32_t{b} : char32_t{0xFFFD};
  }
  char32_t c = b & (0x7F >> length);
  for (std::size_t k = 1; k < length; ++k) c = c << 6 | (static_cast<unsigned char>(text[i + k]) & 0x3F);
  return c;
}

// A ScenarioError at the first character toml++ 3.3 cannot read (see above).
void refuse_unclassifiable(std::string_view text, const std::string& file) {
  enum class In : std::uint8_t { Toml, Number, Comment, Basic, Literal, MultiBasic, MultiLiteral };
  In in = In::Toml;
  bool after_separator = true;  // in Toml: a value or key may start here
  bool escaped = false;         // in a """ string: the character after a backslash
  bool skipping = false;        // ... and, after a line-ending backslash, the whitespace that follows
  unsigned line = 1;
  unsigned column = 1;
  auto triple = [&](std::size_t i, char q) { return text.substr(i, 3) == std::string(3, q); };
  for (std::size_t i = 0; i < text.size();) {
    std::size_t n = 1;
    const char32_t c = code_point(text, i, n);
    const bool space = c == ' ' || c == '\t' || c == '\r' || c == '\n';
    if ((in == In::Toml || in == In::Number || escaped || skipping) && toml_cannot_classify(c)) {
      throw ScenarioError(file, line, column,
                          fmt::format("TOML syntax error: the character U+{:04X} is not allowed {}",
                                      static_cast<std::uint32_t>(c),
                                      escaped || skipping ? "after a backslash" : "outside strings and comments"));
    }
    if (in == In::Number && (space || c == ']' || c == '}' || c == ',' || c == '#')) in = In::Toml;
    if (escaped) {
      escaped = false;
      skipping = space;
    } else if (skipping && space) {
      // still the indentation after a line-ending backslash
    } else if (in == In::Toml) {
      if (after_separator && ((c >= '0' && c <= '9') || c == '+' || c == '-')) in = In::Number;
      if (c == '#') in = In::Comment;
      if (c == '"') in = triple(i, '"') ? In::MultiBasic : In::Basic;
      if (c == '\'') in = triple(i, '\'') ? In::MultiLiteral : In::Literal;
      if (in == In::MultiBasic || in == In::MultiLiteral) n = 3;
      after_separator = space || c == '=' || c == '[' || c == '{' || c == ',';
    } else if (in == In::Comment || in == In::Basic || in == In::Literal) {
      if (c == '\n' || (in == In::Basic && c == '"') || (in == In::Literal && c == '\'')) in = In::Toml;
      if (in == In::Basic && c == '\\' && i + 1 < text.size() && text[i + 1] != '\n') n = 2;  // an escape
      after_separator = c == '\n';
    } else if (in == In::MultiBasic || in == In::MultiLiteral) {
      skipping = false;
      const char q = in == In::MultiBasic ? '"' : '\'';
      if (in == In::MultiBasic && c == '\\') {
        escaped = true;
      } else if (triple(i, q)) {
        // Up to two more quotes before the closing three belong to the string.
        while (n < 3 && i + n + 2 < text.size() && text[i + n + 2] == q) ++n;
        n += 2;
        in = In::Toml;
        after_separator = false;
      }
    }
    for (std::size_t k = i; k < i + n && k < text.size(); ++k) {
      if (text[k] == '\n') {
        ++line;
        column = 1;
      } else if ((static_cast<unsigned char>(text[k]) & 0xC0) != 0x80) {
        ++column;
      }
    }
    i += n;
  }
}

// What PhysMem::layout_ram() refuses at boot (std::invalid_argument), so that
// a scenario the model cannot boot is an error located in its file: the
// kernel image (at 16 MiB) must end in the first RAM range, the memmap (64
// bytes a page, at the top of RAM) must fit in the last one above the kernel
// image, and the CMA area (cma plus the secretmem area a pool policy adds)
// under the memmap, in the same range. "" when the machine boots.
// [machine] pci_hole = { start = "3GiB", end = "4GiB" }: both bounds, start < end.
void read_pci_hole(const Reader& rd, const toml::node& v, const std::string& w, Scenario& s) {
  MachineConfig& mc = s.machine;
  Setting start = scenario_settings().front();  // a size; its range and setter are replaced below
  start.path = "machine.pci_hole.start";
  start.min = 256 * MiB;
  start.max = 4 * GiB - 2 * MiB;
  start.align = 2 * MiB;
  Setting end = start;
  end.path = "machine.pci_hole.end";
  end.min = 256 * MiB + 2 * MiB;
  end.max = 4 * GiB;
  bool has_start = false;
  bool has_end = false;
  rd.walk(rd.table(v, w), "machine.pci_hole",
          {{"start",
            [&](const toml::node& x, const std::string&) {
              mc.pci_hole_start = std::get<std::uint64_t>(rd.value(x, start));
              has_start = true;
            }},
           {"end", [&](const toml::node& x, const std::string&) {
              mc.pci_hole_end = std::get<std::uint64_t>(rd.value(x, end));
              has_end = true;
            }}});
  Origin o = rd.origin(v);
  o.path = "machine.pci_hole";
  s.given[o.path] = std::move(o);
  if (!has_start || !has_end || mc.pci_hole_start >= mc.pci_hole_end) {
    rd.fail_at(v.source(), fmt::format("{}: expected {{ start = \"3GiB\", end = \"4GiB\" }}: both bounds, "
                                       "2 MiB aligned, 256 MiB <= start < end <= 4 GiB",
                                       w));
  }
}

std::string stem_of(std::string_view path) {
  const std::size_t slash = path.find_last_of('/');
  if (slash != std::string_view::npos) path.remove_prefix(slash + 1);
  if (path.size() > 5 && path.substr(path.size() - 5) == ".toml") path.remove_suffix(5);
  return std::string(path);
}

}  // namespace

Scenario default_scenario_values() {
  Scenario s;
  s.name = "default";
  s.machine.ram_bytes = 64 * GiB;
  s.machine.cpus = 16;
  s.policies = policy::Registry::builtin().names();
  return s;
}

Scenario read_scenario(std::string_view text, std::string_view name) {
  Scenario s = default_scenario_values();
  s.name = stem_of(name);
  s.source = std::string(name);
  const Reader rd{std::string(name)};

  refuse_unclassifiable(text, rd.file());
  toml::table doc;
  try {
    doc = toml::parse(text, name);
  } catch (const toml::parse_error& e) {
    throw located(rd.file(), e.source(), fmt::format("TOML syntax error: {}", e.description()));
  }

  // The keys of a table: its settings, and for [machine] the PCI hole.
  auto keys_of = [&](const std::string& table) {
    std::vector<Reader::Key> keys;
    for (const Setting& st : scenario_settings()) {
      if (st.table() != table) continue;
      keys.push_back({st.key(), [&rd, &s, &st](const toml::node& v, const std::string&) {
                        const SettingValue value = rd.value(v, st);
                        st.set(s, value);
                        Origin o = rd.origin(v);
                        o.path = st.path;
                        s.given[st.path] = std::move(o);
                      }});
      if (table == "machine" && st.key() == "direct_gbpages") {
        keys.push_back({"pci_hole", [&](const toml::node& v, const std::string& w) { read_pci_hole(rd, v, w, s); }});
      }
    }
    return keys;
  };
  std::vector<Reader::Key> top = keys_of("");
  for (const std::string& table : scenario_tables()) {
    top.push_back({table, [&, table](const toml::node& v, const std::string& w) {
                     rd.walk(rd.table(v, "[" + w + "]"), table, keys_of(table));
                   }});
  }
  rd.walk(doc, "", top);
  return s;
}

namespace {

// A value as the resolved configuration of a study states it: sizes in bytes,
// reals in their shortest exact form, names as written.
std::string canonical(const SettingValue& v) {
  struct Visit {
    std::string operator()(std::uint64_t x) const { return fmt::format("{}", x); }
    std::string operator()(double x) const { return fmt::format("{}", x); }
    std::string operator()(bool x) const { return x ? "true" : "false"; }
    std::string operator()(const std::string& x) const { return fmt::format("\"{}\"", x); }
    std::string operator()(const std::vector<std::string>& x) const {
      return fmt::format("[\"{}\"]", fmt::join(x, "\", \""));
    }
  };
  return std::visit(Visit{}, v);
}

}  // namespace

std::vector<std::string> setting_paths() {
  std::vector<std::string> paths;
  for (const Setting& st : scenario_settings()) {
    paths.push_back(st.path);
    if (st.path == "machine.direct_gbpages") paths.emplace_back("machine.pci_hole");
  }
  return paths;
}

std::string apply_toml_setting(Scenario& s, std::string_view path, const toml::node& v, const std::string& file,
                               const toml::source_region* at) {
  const Reader rd{file};
  if (at != nullptr && v.source().begin.line == 0) {
    // A value made elsewhere (a study's range): its errors and its origin are at `at`.
    std::string text;
    try {
      text = apply_toml_setting(s, path, v, file, nullptr);
    } catch (const ScenarioError& e) {
      const std::string what = e.what();
      const std::string prefix = e.file() + ": ";
      throw located(file, *at, what.rfind(prefix, 0) == 0 ? what.substr(prefix.size()) : what);
    }
    Origin& o = s.given[std::string(path)];
    o.file = file;
    o.line = at->begin.line;
    o.column = at->begin.column;
    o.order = kStudyOrder + ((std::uint64_t{at->begin.line} << 32) | at->begin.column);
    return text;
  }
  if (path == "machine.pci_hole") {
    read_pci_hole(rd, v, "[machine] pci_hole", s);
    s.given[std::string(path)].order = kStudyOrder;
    return fmt::format("{}-{}", s.machine.pci_hole_start, s.machine.pci_hole_end);
  }
  const std::vector<Setting>& all = scenario_settings();
  const auto it = std::find_if(all.begin(), all.end(), [&](const Setting& st) { return st.path == path; });
  if (it == all.end()) {
    const std::vector<std::string> known = setting_paths();
    rd.fail_at(v.source(), fmt::format("unknown scenario setting \"{}\"{}; expected one of: {}", path,
                                       suggestion(path, known, "\"", "\""), fmt::join(known, ", ")));
  }
  const SettingValue value = rd.value(v, *it);
  it->set(s, value);
  Origin o = rd.origin(v);
  o.path = it->path;
  o.order = kStudyOrder + o.order;
  s.given[it->path] = std::move(o);
  return canonical(value);
}

std::map<std::string, std::string> resolved_settings(std::string_view text, std::string_view name) {
  Scenario scratch = default_scenario_values();
  const std::string file(name);
  toml::table doc;
  try {
    doc = toml::parse(text, name);
  } catch (const toml::parse_error& e) {
    throw located(file, e.source(), fmt::format("TOML syntax error: {}", e.description()));
  }
  std::map<std::string, std::string> out;
  for (auto&& [key, value] : doc) {
    if (const toml::table* t = value.as_table(); t != nullptr) {
      for (auto&& [k, v] : *t) {
        const std::string path = fmt::format("{}.{}", key.str(), k.str());
        out[path] = apply_toml_setting(scratch, path, v, file);
      }
    } else if (key.str() != "description") {
      out[std::string(key.str())] = apply_toml_setting(scratch, key.str(), value, file);
    }
  }
  return out;
}

Scenario parse_scenario(std::string_view text, std::string_view name) {
  Scenario s = read_scenario(text, name);
  check_scenario(s);
  return s;
}

Scenario read_scenario_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ScenarioError(path, 0, 0, fmt::format("cannot read the scenario file: {}", std::strerror(errno)));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw ScenarioError(path, 0, 0, "cannot read the scenario file");
  return read_scenario(text.str(), path);
}

Scenario load_scenario(const std::string& path) {
  Scenario s = read_scenario_file(path);
  check_scenario(s);
  return s;
}

}  // namespace exmem::model::workload
