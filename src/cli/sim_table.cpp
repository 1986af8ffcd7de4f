// `exmem sim`: the comparison table, one column per policy, its rows the
// catalogue's (sim/metrics.hpp). Narrower than the table, the policies come
// in groups, each a table of its own, and long lines are wrapped.
#include <fmt/format.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "model/types.hpp"
#include "sim.hpp"
#include "sim/metrics.hpp"

namespace exmem::cli::sim {

namespace {

namespace md = exmem::model;
namespace run = exmem::sim;

constexpr std::size_t kLabelWidth = 34;
constexpr std::size_t kMinCellWidth = 12;

std::string cell_text(const run::Number& v, run::Format f) {
  switch (f) {
    case run::Format::Integer:
    case run::Format::Real:
      return std::visit([](auto x) { return fmt::format("{}", x); }, v);
    case run::Format::PerThousand:
      return fmt::format("{:.1f}", 1000.0 * run::as_double(v));
    case run::Format::Whole:
      return fmt::format("{:.0f}", run::as_double(v));
    case run::Format::Seconds:
      return fmt::format("{:.2f}", run::as_double(v));
    case run::Format::Percent:
      return fmt::format("{:.3f}", run::as_double(v));
    case run::Format::Size:
      return md::format_size(static_cast<std::uint64_t>(run::as_double(v)));
  }
  return {};
}

struct Row {
  std::string label;
  std::vector<std::string> cells;  // one per run
};

// The rows of the table, the policies' names first.
std::vector<Row> table_rows(const std::vector<run::RunResult>& runs) {
  std::vector<Row> rows;
  Row names{"policy", {}};
  for (const auto& r : runs) names.cells.push_back(r.policy);
  rows.push_back(std::move(names));
  constexpr unsigned kRow = run::kTable | run::kTableIfAny | run::kTableIfNonzero;
  for (const run::Metric& m : run::metrics()) {
    if ((m.show & kRow) == 0) continue;
    Row row{std::string((m.show & run::kSubRow) != 0 ? "  " : "") + std::string(m.label), {}};
    bool any = false;
    bool nonzero = false;
    for (const auto& r : runs) {
      if (!m.parts.empty()) {
        std::string text;
        for (const std::string_view p : m.parts) {
          const run::Metric* part = run::find_metric(p);
          const auto v = part != nullptr ? part->get(r) : std::nullopt;
          text += fmt::format("{}{}", text.empty() ? "" : m.separator, v ? cell_text(*v, part->format) : "-");
        }
        row.cells.push_back(text);
        any = true;
        continue;
      }
      const auto v = m.get(r);
      any = any || v.has_value();
      nonzero = nonzero || (v && run::as_double(*v) != 0);
      row.cells.push_back(v ? cell_text(*v, m.format) : std::string("-"));
    }
    const bool shown = (m.show & run::kTable) != 0 || ((m.show & run::kTableIfAny) != 0 && any) ||
                       ((m.show & run::kTableIfNonzero) != 0 && nonzero);
    if (shown) rows.push_back(std::move(row));
  }
  return rows;
}

// Breaks `line` at spaces so that no piece is longer than `columns` (a word
// longer than that stays whole); the pieces after the first start with `indent`.
std::string wrap(std::string_view line, std::size_t columns, std::string_view indent) {
  if (line.size() <= columns) return std::string(line) + '\n';
  std::string out;
  std::size_t width = 0;
  bool first_word = true;
  while (!line.empty()) {
    const std::size_t lead = line.find_first_not_of(' ');
    if (lead == std::string_view::npos) break;
    const std::size_t end = std::min(line.find(' ', lead), line.size());
    const std::string_view word = line.substr(lead, end - lead);
    const std::string_view space = line.substr(0, lead);
    if (!first_word && width + space.size() + word.size() > columns) {
      out += '\n';
      out += indent;
      width = indent.size();
    } else {
      out += space;
      width += space.size();
    }
    out += word;
    width += word.size();
    first_word = false;
    line.remove_prefix(end);
  }
  return out + '\n';
}

// The rows for runs [first, last), each cell `width` wide.
std::string table_block(const std::vector<Row>& rows, std::size_t first, std::size_t last, std::size_t width) {
  std::string out;
  for (const Row& row : rows) {
    out += fmt::format("  {:<{}}", row.label, kLabelWidth);
    for (std::size_t i = first; i < last; ++i) out += fmt::format(" {:>{}}", row.cells[i], width);
    out += '\n';
  }
  return out;
}

std::string header_text(const nlohmann::json& out) {
  const auto& m = out["machine"];
  const auto& w = out["workload"];
  const auto& sc = out["scenario"];
  const std::string machine_text = fmt::format(
      "{} RAM, {} CPUs, direct_gbpages {}, collapse {}, TLB {}", m["ram"].get<std::string>(), m["cpus"].get<unsigned>(),
      m["direct_gbpages"].get<bool>() ? "on" : "off", m["collapse"].get<std::string>(), m["tlb"].get<std::string>());
  std::string text;
  if (w["name"] == "trace") {
    const auto& t = w["trace"];
    text += fmt::format("exmem sim: trace {} replayed on {}\n", t["path"].get<std::string>(), machine_text);
    std::string recorded;
    if (!t["command"].get<std::string>().empty()) recorded += fmt::format("`{}`", t["command"].get<std::string>());
    if (t["duration_seconds"].get<double>() > 0) {
      recorded +=
          fmt::format("{}recorded in {:.2f} s", recorded.empty() ? "" : ", ", t["duration_seconds"].get<double>());
    }
    if (t["cpus"].get<unsigned>() > 0) recorded += fmt::format(" on {} CPUs", t["cpus"].get<unsigned>());
    if (t["lost_events"].get<std::uint64_t>() > 0) {
      recorded += fmt::format(", {} events lost by tracefs", t["lost_events"].get<std::uint64_t>());
    }
    if (!recorded.empty()) text += fmt::format("  {}\n", recorded);
  } else {
    text += fmt::format("exmem sim: scenario {}: {}, {} events, seed {}\n", sc["name"].get<std::string>(),
                        machine_text, w["events"].get<std::uint64_t>(), w["seed"].get<std::uint64_t>());
    if (!sc["description"].get<std::string>().empty()) {
      text += fmt::format("  {}\n", sc["description"].get<std::string>());
    }
  }
  return text;
}

}  // namespace

std::size_t output_columns() {
  if (const char* env = std::getenv("COLUMNS"); env != nullptr && *env != '\0') {
    std::size_t n = 0;
    const char* end = env + std::string_view(env).size();
    const auto [ptr, ec] = std::from_chars(env, end, n);
    if (ec == std::errc{} && ptr == end && n > 0) return n;
  }
  winsize ws{};
  if (::isatty(STDOUT_FILENO) == 1 && ::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) {
    return ws.ws_col;
  }
  return std::numeric_limits<std::size_t>::max();
}

std::string costs_text(const nlohmann::json& header) {
  if (!header.contains("costs")) return {};
  const auto& c = header["costs"];
  std::string text = fmt::format("  kernel cost figures: {}", c["source"].get<std::string>());
  const auto& walk = c["figures"]["walk_ns"];
  text += walk["ns"].is_null() ? "; walk ns from the model's walk cycles"
                               : fmt::format("; walk {:.1f} ns", walk["ns"].get<double>());
  text += fmt::format(", kernel access {:.1f} ns\n", c["figures"]["kernel_access_ns"]["ns"].get<double>());
  if (c.contains("model_vs_probe")) {
    const auto& m = c["model_vs_probe"];
    std::string points;
    for (const auto& p : m["points"]) {
      points += fmt::format("{}{} pages {:.1f}/{:.1f} ns = {}", points.empty() ? "" : "; ", p["pages"].get<std::uint64_t>(),
                            p["model_extra_ns"].get<double>(), p["probe_extra_ns"].get<double>(),
                            p["ratio"].is_null() ? std::string("n/a") : fmt::format("{:.2f}", p["ratio"].get<double>()));
    }
    text += fmt::format("  model vs probe ({}, {}): model/probe extra ns per access: {}\n", m["tlb"].get<std::string>(),
                        m["how"].get<std::string>(), points.empty() ? "the file has no sweep" : points);
  }
  return text;
}

std::string table_text(const report::Document& doc, std::size_t columns) {
  const auto& runs = doc.runs;
  std::string out;
  // Header lines longer than the terminal are wrapped; a pipe gets them whole.
  const std::string header = header_text(doc.header) + costs_text(doc.header);
  for (std::size_t at = 0; at < header.size();) {
    const std::size_t nl = header.find('\n', at);
    out += wrap(std::string_view(header).substr(at, nl - at), columns, "    ");
    at = nl + 1;
  }
  if (runs.empty()) return out;
  const std::vector<Row> rows = table_rows(runs);
  std::size_t width = kMinCellWidth;
  for (const auto& r : runs) width = std::max(width, r.policy.size());
  out += '\n';
  const std::size_t label = 2 + kLabelWidth;
  if (label + runs.size() * (1 + width) <= columns) {
    out += table_block(rows, 0, runs.size(), width);
  } else {
    // Groups of policies, each as many as fit, each cell as wide as its group needs.
    std::size_t first = 0;
    while (first < runs.size()) {
      std::size_t last = first;
      std::size_t group_width = 0;
      while (last < runs.size()) {
        std::size_t w = std::max(group_width, kMinCellWidth);
        for (const Row& row : rows) w = std::max(w, row.cells[last].size());
        if (last > first && label + (last + 1 - first) * (1 + w) > columns) break;
        group_width = w;
        ++last;
      }
      if (first != 0) out += '\n';
      out += table_block(rows, first, last, group_width);
      first = last;
    }
  }
  // Runs whose kernel stream had no live kernel page to draw from.
  for (const auto& r : runs) {
    if (r.tlb_cost.stream_live || r.tlb_cost.stream_source.empty()) continue;
    out += wrap(fmt::format("  {}: kernel access stream over {}", r.policy, r.tlb_cost.stream_source), columns, "    ");
  }
  bool any = false;
  for (const auto& r : runs) any = any || !r.policy_counters.empty();
  if (!any) return out;
  out += "\npolicy counters\n";
  const std::size_t hang = 2 + width + 2;
  const std::string indent(hang + 30 <= columns ? hang : 4, ' ');
  for (const auto& r : runs) {
    if (r.policy_counters.empty()) continue;
    auto counters = r.policy_counters;  // by name, as the JSON has them
    std::sort(counters.begin(), counters.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
    std::string line;
    // A counter's name and value stay on one line: joined by \x01 while wrapping.
    for (const auto& c : counters) line += fmt::format("{}{}\x01{}", line.empty() ? "" : ", ", c.name, c.value);
    std::string wrapped = wrap(fmt::format("  {:<{}}  {}", r.policy, width, line), columns, indent);
    std::replace(wrapped.begin(), wrapped.end(), '\x01', ' ');
    out += wrapped;
  }
  return out;
}

}  // namespace exmem::cli::sim
