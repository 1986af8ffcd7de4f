// study_html.cpp: the page of `exmem study`, one self-contained file: inline
// stylesheet (page.css and study.css) and script (study.js), the study's JSON
// embedded as it came. The header, the summary and the table of every point
// are plain HTML, so they read without the script; the charts are inline SVG
// drawn by the script.
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "report/assets.hpp"
#include "report/html_text.hpp"
#include "report/study_report.hpp"

namespace exmem::report {

namespace {

using detail::escape;
using detail::grouped;
using detail::kSeriesColours;
using detail::script_json;
using nlohmann::json;

// j[key], or null when j is not an object or has no such member.
const json& member(const json& j, std::string_view key) {
  static const json kNull;
  if (!j.is_object()) return kNull;
  const auto it = j.find(key);
  return it == j.end() ? kNull : *it;
}

// j[key] when it is an array, else an empty array.
const json& array_of(const json& j, std::string_view key) {
  static const json kEmpty = json::array();
  const json& v = member(j, key);
  return v.is_array() ? v : kEmpty;
}

std::string signed_grouped(double v) {
  const double r = std::round(v);
  if (r < 0) return "-" + grouped(static_cast<std::uint64_t>(-r));
  return grouped(static_cast<std::uint64_t>(r));
}

// A figure as the tables show it: whole numbers grouped, large ones rounded,
// the rest to 4 significant digits; empty for anything that is not a number.
std::string number_text(const json& v) {
  if (v.is_number_unsigned()) return grouped(v.get<std::uint64_t>());
  if (v.is_number_integer()) {
    const std::int64_t i = v.get<std::int64_t>();
    return i < 0 ? "-" + grouped(static_cast<std::uint64_t>(-(i + 1)) + 1) : grouped(static_cast<std::uint64_t>(i));
  }
  if (!v.is_number()) return {};
  const double d = v.get<double>();
  if (!std::isfinite(d)) return fmt::format("{}", d);
  if (std::fabs(d) >= 1000 && std::fabs(d) < 1e18) return signed_grouped(d);
  return fmt::format("{:.4g}", d);
}

// A string member as it is, a number or a boolean as JSON text, else empty.
std::string text_of(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number() || v.is_boolean()) return v.dump();
  return {};
}

struct Axis {
  std::string name;
  std::vector<std::string> values;
};

std::vector<Axis> axes_of(const json& study) {
  std::vector<Axis> out;
  for (const json& a : array_of(study, "axes")) {
    Axis axis;
    axis.name = text_of(member(a, "name"));
    for (const json& v : array_of(a, "values")) axis.values.push_back(text_of(v));
    out.push_back(std::move(axis));
  }
  return out;
}

std::vector<std::string> strings_of(const json& study, std::string_view key) {
  std::vector<std::string> out;
  for (const json& v : array_of(study, key)) out.push_back(text_of(v));
  return out;
}

struct Metric {
  std::string key, json_pointer, label, unit;
};

std::vector<Metric> metrics_of(const json& study) {
  std::vector<Metric> out;
  for (const json& m : array_of(study, "metrics")) {
    Metric metric{text_of(member(m, "key")), text_of(member(m, "json")), text_of(member(m, "label")),
                  text_of(member(m, "unit"))};
    if (metric.label.empty()) metric.label = metric.key;
    out.push_back(std::move(metric));
  }
  return out;
}

// The colour of the policy at index i of `policies` (the script's rule too).
std::string_view colour_of(std::size_t i) { return kSeriesColours[i % std::size(kSeriesColours)]; }

std::string swatch(const std::vector<std::string>& policies, const std::string& policy) {
  for (std::size_t i = 0; i < policies.size(); ++i) {
    if (policies[i] == policy) return fmt::format("<span class=\"swatch\" style=\"background:{}\"></span>", colour_of(i));
  }
  return {};
}

std::string metric_heading(const Metric& m) {
  return m.unit.empty() ? escape(m.label) : fmt::format("{} <span class=\"unit\">[{}]</span>", escape(m.label), escape(m.unit));
}

std::string header(const json& study, const std::vector<Axis>& axes, const std::vector<std::string>& policies,
                   const std::string& x, const std::string& title) {
  const json& info = member(study, "study");
  std::string s = fmt::format("<header>\n<h1>{}</h1>\n", escape(title));
  const std::string description = text_of(member(info, "description"));
  if (!description.empty()) s += fmt::format("<p class=\"description\">{}</p>\n", escape(description));

  std::vector<std::string> items;
  if (const std::string file = text_of(member(info, "file")); !file.empty()) {
    items.push_back(fmt::format("<code>{}</code>", escape(file)));
  }
  if (const std::string v = text_of(member(info, "model_version")); !v.empty()) {
    items.push_back(fmt::format("model <code>{}</code>", escape(v)));
  }
  const json& points = member(info, "points");
  const std::size_t npoints = points.is_number_unsigned() ? points.get<std::size_t>() : array_of(study, "points").size();
  items.push_back(fmt::format("{} {}", grouped(npoints), npoints == 1 ? "point" : "points"));
  std::vector<std::string> seeds = strings_of(info, "seeds");
  if (!seeds.empty()) {
    items.push_back(fmt::format("{} {}", seeds.size() == 1 ? "seed" : "seeds", escape(fmt::format("{}", fmt::join(seeds, ", ")))));
  }
  s += fmt::format("<p class=\"meta\"><b>study</b> {}</p>\n", fmt::join(items, " · "));

  std::string axes_text;
  for (const Axis& a : axes) {
    if (!axes_text.empty()) axes_text += "; ";
    axes_text += fmt::format("<span class=\"axis\" data-axis=\"{}\"><code>{}</code>{} = {}</span>", escape(a.name),
                             escape(a.name), a.name == x ? " (x axis)" : "",
                             escape(fmt::format("{}", fmt::join(a.values, ", "))));
  }
  if (axes_text.empty()) axes_text = "none (one point per policy and seed)";
  s += fmt::format("<p class=\"meta\"><b>axes</b> {}</p>\n", axes_text);

  std::string keys;
  for (std::size_t i = 0; i < policies.size(); ++i) {
    keys += fmt::format("<span class=\"policy-key\" data-policy=\"{}\" data-colour=\"{}\">{}{}</span>",
                        escape(policies[i]), colour_of(i), swatch(policies, policies[i]), escape(policies[i]));
  }
  if (keys.empty()) keys = "<span class=\"missing\">none</span>";
  s += fmt::format("<p class=\"meta policies\"><b>policies</b> {}</p>\n</header>\n", keys);
  return s;
}

std::string charts(const std::vector<Metric>& metrics, const std::vector<Axis>& axes, const std::string& x) {
  std::string s = "<section id=\"charts\">\n<h2>Results</h2>\n";
  std::vector<std::string> others;
  for (const Axis& a : axes) {
    if (a.name != x) others.push_back(fmt::format("<code>{}</code>", escape(a.name)));
  }
  if (!x.empty()) {
    s += fmt::format(
        "<p class=\"explain\">Along <code>{}</code>: one line per policy through the median over seeds; "
        "the light band spans the smallest to the largest value, the darker one the middle half (q1 to q3, "
        "drawn when a group has 4 or more runs).{} Point at a dot for its numbers.</p>\n",
        escape(x),
        others.empty() ? std::string()
                       : fmt::format(" One chart per combination of {}, the same y scale in every chart of a figure.",
                                     fmt::join(others, ", ")));
  } else {
    s += fmt::format(
        "<p class=\"explain\">Per policy: the dot is the median over seeds, the whisker spans the smallest to "
        "the largest value, the box the middle half (q1 to q3, drawn when a group has 4 or more runs).{} Point "
        "at a dot for its numbers.</p>\n",
        others.empty() ? std::string()
                       : fmt::format(" One chart per combination of {}, the same y scale in every chart of a figure.",
                                     fmt::join(others, ", ")));
  }
  if (metrics.empty()) s += "<p class=\"missing\">The study names no metrics.</p>\n";
  for (std::size_t i = 0; i < metrics.size(); ++i) {
    const Metric& m = metrics[i];
    s += fmt::format("<section class=\"metric\" data-metric-index=\"{}\" data-metric=\"{}\">\n<h3>{}</h3>\n", i,
                     escape(m.key), metric_heading(m));
    if (!m.json_pointer.empty()) {
      s += fmt::format("<p class=\"explain source\"><code>{}</code> at <code>{}</code> of each run's JSON</p>\n",
                       escape(m.key), escape(m.json_pointer));
    }
    s += "<div class=\"facets\"></div>\n</section>\n";
  }
  s += "<noscript><p class=\"missing\">The charts are drawn by the page's script; allow scripts for this file "
       "to see them. The tables below read without it.</p></noscript>\n</section>\n";
  return s;
}

std::string summary_table(const json& study, const std::vector<Axis>& axes, const std::vector<std::string>& policies,
                          const std::vector<Metric>& metrics) {
  const json& groups = array_of(study, "summary");
  std::string s = "<section id=\"summary\">\n<h2>Summary over seeds</h2>\n";
  if (groups.empty()) return s + "<p class=\"missing\">The study has no summary.</p>\n</section>\n";
  s += "<p class=\"explain\">Each cell: the median over the group's runs [smallest &ndash; largest]; point at it "
       "for the quartiles.</p>\n";
  s += "<div class=\"table-wrap\"><table class=\"cmp study-table\" id=\"summary-table\">\n<thead><tr>";
  for (const Axis& a : axes) s += fmt::format("<th class=\"key\">{}</th>", escape(a.name));
  s += "<th class=\"key\">policy</th><th>runs</th>";
  for (const Metric& m : metrics) s += fmt::format("<th title=\"{}\">{}</th>", escape(m.key), metric_heading(m));
  s += "</tr></thead>\n<tbody>\n";
  for (const json& g : groups) {
    s += "<tr>";
    for (const Axis& a : axes) s += fmt::format("<td class=\"key\">{}</td>", escape(text_of(member(member(g, "axes"), a.name))));
    const std::string policy = text_of(member(g, "policy"));
    s += fmt::format("<td class=\"key\">{}{}</td><td>{}</td>", swatch(policies, policy), escape(policy),
                     escape(number_text(member(g, "n"))));
    for (const Metric& m : metrics) {
      const json& st = member(member(g, "stats"), m.key);
      if (!st.is_object() || !member(st, "median").is_number()) {
        s += "<td class=\"missing\" title=\"no value in these runs\">&ndash;</td>";
        continue;
      }
      std::string range;
      if (member(st, "min").is_number() && member(st, "max").is_number()) {
        range = fmt::format(" <span class=\"range\">[{} &ndash; {}]</span>", escape(number_text(st["min"])),
                            escape(number_text(st["max"])));
      }
      std::string quartiles;
      if (member(st, "q1").is_number() && member(st, "q3").is_number()) {
        quartiles = fmt::format(" title=\"q1 {}, q3 {}\"", escape(number_text(st["q1"])), escape(number_text(st["q3"])));
      }
      s += fmt::format("<td{}>{}{}</td>", quartiles, escape(number_text(st["median"])), range);
    }
    s += "</tr>\n";
  }
  s += "</tbody>\n</table></div>\n</section>\n";
  return s;
}

std::string points_table(const json& study, const std::vector<Axis>& axes, const std::vector<std::string>& policies,
                         const std::vector<Metric>& metrics) {
  const json& points = array_of(study, "points");
  std::string s = "<section id=\"points\">\n<h2>Every point</h2>\n";
  if (points.empty()) return s + "<p class=\"missing\">The study has no points.</p>\n</section>\n";
  s += fmt::format("<details>\n<summary>{} {}, one run each (click to open)</summary>\n", grouped(points.size()),
                   points.size() == 1 ? "point" : "points");
  s += "<div class=\"table-wrap\"><table class=\"cmp study-table\" id=\"points-table\">\n<thead><tr>"
       "<th>#</th><th class=\"key\">hash</th>";
  for (const Axis& a : axes) s += fmt::format("<th class=\"key\">{}</th>", escape(a.name));
  s += "<th class=\"key\">policy</th><th>seed</th><th>run s</th>";
  for (const Metric& m : metrics) s += fmt::format("<th title=\"{}\">{}</th>", escape(m.key), metric_heading(m));
  s += "</tr></thead>\n<tbody>\n";
  for (const json& p : points) {
    s += fmt::format("<tr><td>{}</td><td class=\"key\"><code>{}</code></td>", escape(number_text(member(p, "index"))),
                     escape(text_of(member(p, "hash"))));
    for (const Axis& a : axes) s += fmt::format("<td class=\"key\">{}</td>", escape(text_of(member(member(p, "axes"), a.name))));
    const std::string policy = text_of(member(p, "policy"));
    const json& secs = member(p, "run_seconds");
    s += fmt::format("<td class=\"key\">{}{}</td><td>{}</td><td>{}</td>", swatch(policies, policy), escape(policy),
                     escape(number_text(member(p, "seed"))),
                     secs.is_number() ? fmt::format("{:.2f}", secs.get<double>()) : std::string());
    for (const Metric& m : metrics) {
      const json& v = member(member(p, "metrics"), m.key);
      if (v.is_number()) {
        s += fmt::format("<td>{}</td>", escape(number_text(v)));
      } else {
        s += "<td class=\"missing\" title=\"no such figure in this run\">&ndash;</td>";
      }
    }
    s += "</tr>\n";
  }
  s += "</tbody>\n</table></div>\n</details>\n</section>\n";
  return s;
}

}  // namespace

std::string study_html_page(const json& study) {
  const std::vector<Axis> axes = axes_of(study);
  const std::vector<std::string> policies = strings_of(study, "policies");
  const std::vector<Metric> metrics = metrics_of(study);
  const std::string x = text_of(member(study, "x"));
  const std::string name = text_of(member(member(study, "study"), "name"));
  const std::string title = name.empty() ? std::string("exmem study") : "exmem study: " + name;

  // What the script draws from: the study as it came, and each policy's colour.
  json data;
  data["colours"] = json::array();
  for (std::size_t i = 0; i < policies.size(); ++i) data["colours"].push_back(colour_of(i));
  data["study"] = study;

  std::string s;
  s += "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  s += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n";
  s += fmt::format("<title>{}</title>\n", escape(title));
  s += fmt::format("<style>\n{}{}</style>\n</head>\n", assets::kPageCss, assets::kStudyCss);
  s += "<body class=\"study\" data-drawn=\"no\" data-plots=\"0\">\n";
  s += header(study, axes, policies, x, title);
  s += "<main>\n";
  s += charts(metrics, axes, x);
  s += summary_table(study, axes, policies, metrics);
  s += points_table(study, axes, policies, metrics);
  s += "</main>\n<footer>Written by <code>exmem study</code> from the study's JSON, which this page embeds. "
       "The page needs no network.</footer>\n";
  s += fmt::format("<script type=\"application/json\" id=\"exmem-study\">{}</script>\n", script_json(data));
  s += fmt::format("<script>\n{}</script>\n</body>\n</html>\n", assets::kStudyJs);
  return s;
}

}  // namespace exmem::report
