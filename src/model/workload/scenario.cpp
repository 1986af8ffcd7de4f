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
#include <limits>
#include <optional>
#include <sstream>

#include "model/policy/policy.hpp"
#include "model/tlb/tlb.hpp"

// The model library does not link the toml++ shared library: its header-only
// form is compiled here, in the one file that reads TOML.
#ifndef TOML_HEADER_ONLY
#define TOML_HEADER_ONLY 1
#endif
#include <toml++/toml.h>

namespace exmem::model::workload {

namespace {

ScenarioError located(const std::string& file, const toml::source_region& at, const std::string& what) {
  return ScenarioError(file, at.begin.line, at.begin.column, what);
}

// "a string \"64GB\"", "an integer -3", ... for "expected X, got Y".
std::string describe(const toml::node& v) {
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

// " (did you mean \"ram\"?)" when one known name is close to `got`.
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

class Reader {
 public:
  explicit Reader(std::string file) : file_(std::move(file)) {}

  [[noreturn]] void fail(const toml::node& v, std::string_view where, std::string_view expected) const {
    throw located(file_, v.source(), fmt::format("{}: expected {}, got {}", where, expected, describe(v)));
  }
  [[noreturn]] void fail_at(const toml::source_region& at, const std::string& what) const {
    throw located(file_, at, what);
  }

  std::int64_t integer(const toml::node& v, std::string_view where, std::int64_t lo, std::int64_t hi) const {
    const std::string expected = fmt::format("a whole number from {} to {}", lo, hi);
    if (!v.is_integer()) fail(v, where, expected);
    const std::int64_t x = v.as_integer()->get();
    if (x < lo || x > hi) fail(v, where, expected);
    return x;
  }

  double real(const toml::node& v, std::string_view where, double lo, double hi) const {
    const std::string expected = fmt::format("a number from {} to {}", lo, hi);
    double x = 0;
    if (v.is_integer()) {
      x = static_cast<double>(v.as_integer()->get());
    } else if (v.is_floating_point()) {
      x = v.as_floating_point()->get();
    } else {
      fail(v, where, expected);
    }
    if (!std::isfinite(x) || x < lo || x > hi) fail(v, where, expected);
    return x;
  }

  bool boolean(const toml::node& v, std::string_view where) const {
    if (!v.is_boolean()) fail(v, where, "true or false");
    return v.as_boolean()->get();
  }

  std::string string(const toml::node& v, std::string_view where, std::string_view expected) const {
    if (!v.is_string()) fail(v, where, expected);
    return v.as_string()->get();
  }

  // A size written as a string with a unit ("64GiB"), from lo to hi, a multiple of align.
  std::uint64_t size(const toml::node& v, std::string_view where, std::uint64_t lo, std::uint64_t hi,
                     std::uint64_t align) const {
    const std::string expected = fmt::format(
        "a size from {} to {}{}, written as a string with a unit KiB, MiB, GiB or TiB such as \"64GiB\"",
        format_size(lo), format_size(hi), align > 1 ? fmt::format(", a multiple of {}", format_size(align)) : "");
    std::uint64_t bytes = 0;
    if (!v.is_string() || !parse_size(v.as_string()->get(), bytes) || bytes < lo || bytes > hi || bytes % align != 0) {
      fail(v, where, expected);
    }
    return bytes;
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

  [[nodiscard]] const std::string& file() const { return file_; }

 private:
  std::string file_;
};

// A share of the workload's events and where the file set it.
struct Share {
  const char* name;
  double* value;
  std::optional<toml::source_region> at;
};

constexpr std::int64_t kMaxEvents = 1'000'000'000'000;

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
std::string stem_of(std::string_view path) {
  const std::size_t slash = path.find_last_of('/');
  if (slash != std::string_view::npos) path.remove_prefix(slash + 1);
  if (path.size() > 5 && path.substr(path.size() - 5) == ".toml") path.remove_suffix(5);
  return std::string(path);
}

}  // namespace

ScenarioError::ScenarioError(std::string file, unsigned line, unsigned column, const std::string& what)
    : std::runtime_error(line == 0 ? fmt::format("{}: {}", file, what)
                                   : fmt::format("{}:{}:{}: {}", file, line, column, what)),
      file_(std::move(file)),
      line_(line),
      column_(column) {}

Scenario default_scenario_values() {
  Scenario s;
  s.name = "default";
  s.machine.ram_bytes = 64 * GiB;
  s.machine.cpus = 16;
  s.policies = policy::Registry::builtin().names();
  return s;
}

Scenario parse_scenario(std::string_view text, std::string_view name) {
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

  MachineConfig& mc = s.machine;
  WorkloadConfig& wc = s.workload;
  std::optional<toml::source_region> ram_at;
  std::optional<toml::source_region> secretmem_at;
  std::optional<toml::source_region> cma_at;
  std::optional<toml::source_region> pci_hole_at;
  std::optional<toml::source_region> kernel_image_at;
  std::optional<toml::source_region> policies_at;
  std::optional<toml::source_region> events_at;
  std::optional<toml::source_region> seconds_at;
  std::optional<toml::source_region> rate_at;
  std::optional<toml::source_region> guest_size_at;
  std::optional<toml::source_region> min_pages_at;
  std::optional<toml::source_region> fork_at;
  bool rate_given = false;
  std::vector<Share> shares = {{"[secrets] share", &wc.secret_share, {}},
                               {"[workload] kernel_share", &wc.kernel_share, {}},
                               {"[map_exclusive] share", &wc.map_exclusive_share, {}},
                               {"[execmem] share", &wc.rox_share, {}},
                               {"[guests] share", &wc.guest_share, {}}};
  auto share_key = [&](std::size_t i) {
    return Reader::Key{i == 1 ? "kernel_share" : "share", [&, i](const toml::node& v, const std::string& where) {
                         *shares[i].value = rd.real(v, where, 0.0, 1.0);
                         shares[i].at = v.source();
                       }};
  };
  auto pages_key = [&](const char* key, std::uint64_t* out, std::int64_t lo, std::int64_t hi) {
    return Reader::Key{key, [&rd, out, lo, hi](const toml::node& v, const std::string& where) {
                         *out = static_cast<std::uint64_t>(rd.integer(v, where, lo, hi));
                       }};
  };
  constexpr std::int64_t kMaxFilePages = std::int64_t{1} << 28;  // 1 TiB of 4 KiB pages

  const std::vector<Reader::Key> machine_keys = {
      {"ram",
       [&](const toml::node& v, const std::string& w) {
         mc.ram_bytes = rd.size(v, w, GiB, 4 * TiB, 2 * MiB);
         ram_at = v.source();
       }},
      {"cpus",
       [&](const toml::node& v, const std::string& w) { mc.cpus = static_cast<unsigned>(rd.integer(v, w, 1, 4096)); }},
      {"direct_gbpages", [&](const toml::node& v, const std::string& w) { mc.direct_gbpages = rd.boolean(v, w); }},
      {"pci_hole",
       [&](const toml::node& v, const std::string& w) {
         const toml::table& t = rd.table(v, w);
         bool has_start = false;
         bool has_end = false;
         rd.walk(t, "machine.pci_hole",
                 {{"start",
                   [&](const toml::node& x, const std::string& xw) {
                     mc.pci_hole_start = rd.size(x, xw, 256 * MiB, 4 * GiB - 2 * MiB, 2 * MiB);
                     has_start = true;
                   }},
                  {"end", [&](const toml::node& x, const std::string& xw) {
                     mc.pci_hole_end = rd.size(x, xw, 256 * MiB + 2 * MiB, 4 * GiB, 2 * MiB);
                     has_end = true;
                   }}});
         pci_hole_at = v.source();
         if (!has_start || !has_end || mc.pci_hole_start >= mc.pci_hole_end) {
           rd.fail_at(v.source(), fmt::format("{}: expected {{ start = \"3GiB\", end = \"4GiB\" }}: both bounds, "
                                              "2 MiB aligned, 256 MiB <= start < end <= 4 GiB",
                                              w));
         }
       }},
      {"kernel_image",
       [&](const toml::node& v, const std::string& w) {
         mc.kernel_image_bytes = rd.size(v, w, 2 * MiB, 1 * GiB, 2 * MiB);
         kernel_image_at = v.source();
       }},
      {"cma",
       [&](const toml::node& v, const std::string& w) {
         mc.cma_bytes = rd.size(v, w, 0, 2 * TiB, 2 * MiB);
         cma_at = v.source();
       }},
      {"thp", [&](const toml::node& v, const std::string& w) { mc.thp = rd.boolean(v, w); }},
      {"secretmem_enable", [&](const toml::node& v, const std::string& w) { mc.secretmem_enable = rd.boolean(v, w); }},
      {"memlock", [&](const toml::node& v,
                      const std::string& w) { mc.rlimit_memlock_bytes = rd.size(v, w, 0, 4 * TiB, kPageSize); }},
      {"secretmem",
       [&](const toml::node& v, const std::string& w) {
         mc.secretmem_bytes = rd.size(v, w, 2 * MiB, 2 * TiB, 2 * MiB);
         secretmem_at = v.source();
       }},
      {"pool_fail",
       [&](const toml::node& v, const std::string& w) {
         mc.pool_fail_sigbus = rd.choice(v, w, {"oom", "sigbus"}, "answer of a depleted pool") == "sigbus";
       }},
      {"collapse",
       [&](const toml::node& v, const std::string& w) {
         mc.collapse = parse_collapse_mode(rd.choice(v, w, collapse_mode_names(), "collapse mode"));
       }},
      {"scan_rate", [&](const toml::node& v,
                        const std::string& w) { mc.scan_rate = static_cast<unsigned>(rd.integer(v, w, 1, 1 << 20)); }},
      {"tlb", [&](const toml::node& v,
                  const std::string& w) { s.tlb = rd.choice(v, w, tlb::TlbConfig::preset_names(), "TLB preset"); }},
  };

  const std::vector<Reader::Key> workload_keys = {
      {"events",
       [&](const toml::node& v, const std::string& w) {
         wc.events = static_cast<std::uint64_t>(rd.integer(v, w, 0, kMaxEvents));
         events_at = v.source();
       }},
      {"seconds",
       [&](const toml::node& v, const std::string& w) {
         s.seconds = rd.real(v, w, 1e-6, 1e9);
         seconds_at = v.source();
       }},
      {"events_per_second",
       [&](const toml::node& v, const std::string& w) {
         s.events_per_second = rd.real(v, w, 1, 1e10);
         rate_at = v.source();
         rate_given = true;
       }},
      {"seed",
       [&](const toml::node& v, const std::string& w) {
         wc.seed = static_cast<std::uint64_t>(rd.integer(v, w, 0, std::numeric_limits<std::int64_t>::max()));
       }},
      {"fill", [&](const toml::node& v, const std::string& w) { wc.fill = rd.real(v, w, 0.0, 0.95); }},
      share_key(1),
      {"working_set",
       [&](const toml::node& v, const std::string& w) {
         wc.working_set_pages = rd.size(v, w, 0, 4 * TiB, kPageSize) / kPageSize;
       }},
  };

  const std::vector<Reader::Key> secrets_keys = {
      share_key(0),
      {"processes",
       [&](const toml::node& v, const std::string& w) {
         wc.secret_processes = static_cast<unsigned>(rd.integer(v, w, 1, 1'000'000));
       }},
      {"min_pages",
       [&](const toml::node& v, const std::string& w) {
         wc.min_secret_file_pages = static_cast<std::uint64_t>(rd.integer(v, w, 1, kMaxFilePages));
         min_pages_at = v.source();
       }},
      pages_key("max_pages", &wc.max_secret_file_pages, 1, kMaxFilePages),
      {"hold_turns", [&](const toml::node& v, const std::string& w) { wc.secret_hold_turns = rd.real(v, w, 0, 1e9); }},
      {"fork_probability",
       [&](const toml::node& v, const std::string& w) {
         wc.fork_probability = rd.real(v, w, 0, 1);
         fork_at = v.source();
       }},
      {"fd_pass_probability",
       [&](const toml::node& v, const std::string& w) {
         wc.fd_pass_probability = rd.real(v, w, 0, 1);
         if (!fork_at) fork_at = v.source();
       }},
  };
  const std::vector<Reader::Key> map_exclusive_keys = {
      share_key(2), pages_key("max_pages", &wc.map_exclusive_max_pages, 1, kMaxFilePages)};
  const std::vector<Reader::Key> execmem_keys = {share_key(3),
                                                 pages_key("max_pages", &wc.rox_max_pages, 1, 512 * 1024)};
  const std::vector<Reader::Key> guests_keys = {
      share_key(4),
      {"count", [&](const toml::node& v,
                    const std::string& w) { wc.guests = static_cast<unsigned>(rd.integer(v, w, 1, 4096)); }},
      {"pages",
       [&](const toml::node& v, const std::string& w) {
         if (guest_size_at) rd.fail_at(v.source(), fmt::format("{}: give either pages or size, not both", w));
         wc.guest_pages = static_cast<std::uint64_t>(rd.integer(v, w, 1, std::int64_t{1} << 30));
         guest_size_at = v.source();
       }},
      {"size",
       [&](const toml::node& v, const std::string& w) {
         if (guest_size_at) rd.fail_at(v.source(), fmt::format("{}: give either pages or size, not both", w));
         wc.guest_pages = rd.size(v, w, kPageSize, 4 * TiB, kPageSize) / kPageSize;
         guest_size_at = v.source();
       }},
  };
  const std::vector<Reader::Key> page_tables_keys = {
      {"write_protected", [&](const toml::node& v, const std::string& w) { wc.wp_page_tables = rd.boolean(v, w); }}};
  const std::vector<Reader::Key> run_keys = {
      {"policies", [&](const toml::node& v, const std::string& w) {
         const auto& registry = policy::Registry::builtin();
         const std::vector<std::string> known = registry.names();
         std::vector<std::string> all_names = known;
         all_names.emplace_back("all");
         std::vector<std::string> out;
         auto add = [&](const toml::node& x) {
           const std::string policy = rd.choice(x, w, all_names, "policy");
           if (policy == "all") {
             out.insert(out.end(), known.begin(), known.end());
           } else {
             out.push_back(policy);
           }
         };
         if (v.is_array()) {
           if (v.as_array()->empty()) rd.fail(v, w, "a list of policy names such as [\"upstream\"], or [\"all\"]");
           for (const toml::node& x : *v.as_array()) add(x);
         } else if (v.is_string()) {
           add(v);
         } else {
           rd.fail(v, w, "a list of policy names such as [\"upstream\", \"secretmem-pool-reserve\"], or [\"all\"]");
         }
         // A policy named twice runs once, in the order first named.
         std::vector<std::string> unique;
         for (const std::string& n : out)
           if (std::find(unique.begin(), unique.end(), n) == unique.end()) unique.push_back(n);
         s.policies = unique;
         policies_at = v.source();
       }}};

  auto section = [&](const std::vector<Reader::Key>* keys, const char* table) {
    return Reader::Key{table, [&rd, keys, table](const toml::node& v, const std::string& w) {
                         rd.walk(rd.table(v, "[" + w + "]"), table, *keys);
                       }};
  };
  rd.walk(doc, "",
          {{"description",
            [&](const toml::node& v, const std::string& w) {
              s.description = rd.string(v, w, "a string saying what the scenario represents");
            }},
           section(&machine_keys, "machine"),
           section(&workload_keys, "workload"),
           section(&secrets_keys, "secrets"),
           section(&map_exclusive_keys, "map_exclusive"),
           section(&execmem_keys, "execmem"),
           section(&guests_keys, "guests"),
           section(&page_tables_keys, "page_tables"),
           section(&run_keys, "run")});

  // Checks between keys, reported where the later of them was written.
  if (events_at && seconds_at) {
    const auto& at = events_at->begin.line > seconds_at->begin.line ? *events_at : *seconds_at;
    rd.fail_at(at, "[workload]: give the duration either as events or as seconds (x events_per_second), not both");
  }
  if (rate_given && !seconds_at) {
    rd.fail_at(*rate_at, "[workload] events_per_second: only meaningful with seconds; expected seconds = N next to it");
  }
  if (seconds_at) {
    if (!rate_given) s.events_per_second = 100'000;
    const double events = std::round(s.seconds * s.events_per_second);
    if (events > static_cast<double>(kMaxEvents)) {
      rd.fail_at(*seconds_at, fmt::format("[workload] seconds: {} s x {} events per second is more than {} events",
                                          s.seconds, s.events_per_second, kMaxEvents));
    }
    wc.events = static_cast<std::uint64_t>(events);
  }
  if (secretmem_at && mc.secretmem_bytes > mc.ram_bytes / 2) {
    rd.fail_at(*secretmem_at, fmt::format("[machine] secretmem: expected at most half the RAM ({}), got {}",
                                          format_size(mc.ram_bytes / 2), format_size(mc.secretmem_bytes)));
  }
  if (cma_at && mc.cma_bytes > mc.ram_bytes / 2) {
    rd.fail_at(*cma_at, fmt::format("[machine] cma: expected at most half the RAM ({}), got {}",
                                    format_size(mc.ram_bytes / 2), format_size(mc.cma_bytes)));
  }
  // The machine must boot, under each policy (a pool policy adds its secretmem
  // area to the CMA area); reported where the last of the settings involved
  // was written (a file that gives none of them has the defaults, which boot).
  for (const std::string& p : s.policies) {
    MachineConfig booted = mc;
    booted.policy = p;
    const std::string why = boot_problem(booted);
    if (why.empty()) continue;
    const toml::source_region* at = nullptr;
    for (const auto* r : {&ram_at, &pci_hole_at, &kernel_image_at, &cma_at, &secretmem_at, &policies_at}) {
      if (*r && (at == nullptr || (*r)->begin.line > at->begin.line)) at = &**r;
    }
    const std::string what = fmt::format("[machine]: the machine cannot boot: {}", why);
    if (at == nullptr) throw ScenarioError(rd.file(), 0, 0, what);
    rd.fail_at(*at, what);
  }
  if (min_pages_at && wc.min_secret_file_pages > wc.max_secret_file_pages) {
    rd.fail_at(*min_pages_at, fmt::format("[secrets] min_pages: expected at most max_pages ({}), got {}",
                                          wc.max_secret_file_pages, wc.min_secret_file_pages));
  }
  if (fork_at && wc.fork_probability + wc.fd_pass_probability > 1.0) {
    rd.fail_at(*fork_at, fmt::format("[secrets]: expected fork_probability + fd_pass_probability <= 1, got {} + {}",
                                     wc.fork_probability, wc.fd_pass_probability));
  }
  if (guest_size_at && wc.guest_share > 0 &&
      static_cast<double>(wc.guests) * static_cast<double>(wc.guest_pages) * static_cast<double>(kPageSize) >
          static_cast<double>(mc.ram_bytes)) {
    rd.fail_at(*guest_size_at,
               fmt::format("[guests]: expected count x size to fit in the RAM ({}), got {} x {}",
                           format_size(mc.ram_bytes), wc.guests, format_size(wc.guest_pages * kPageSize)));
  }
  double total = 0;
  const Share* last = nullptr;
  for (const Share& sh : shares) {
    total += *sh.value;
    if (sh.at && (last == nullptr || sh.at->begin.line > last->at->begin.line)) last = &sh;
  }
  if (total > 1.0 + 1e-9 && last != nullptr) {
    std::string parts;
    for (const Share& sh : shares) parts += fmt::format("{}{} {}", parts.empty() ? "" : ", ", sh.name, *sh.value);
    rd.fail_at(*last->at, fmt::format("{}: expected the shares of events to add up to at most 1 (the rest are "
                                      "user allocations), got {} ({})",
                                      last->name, total, parts));
  }
  try {
    wc.validate();  // the workload's own rules, should they be stricter than the checks above
  } catch (const std::invalid_argument& e) {
    throw ScenarioError(rd.file(), 0, 0, e.what());
  }
  return s;
}

Scenario load_scenario(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ScenarioError(path, 0, 0, fmt::format("cannot read the scenario file: {}", std::strerror(errno)));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw ScenarioError(path, 0, 0, "cannot read the scenario file");
  return parse_scenario(text.str(), path);
}

}  // namespace exmem::model::workload
