// html.cpp: index.html, one self-contained page: inline stylesheet and script,
// the run's figures embedded as JSON, maps drawn on <canvas> and time series
// as inline SVG by the script. The header and the comparison table are plain
// HTML, so they read without the script.
#include <algorithm>
#include <cmath>
#include <iterator>
#include <utility>
#include <vector>
#include <cstdint>
#include <string>

#include <fmt/format.h>

#include "report/assets.hpp"
#include "report/html_text.hpp"
#include "report/metrics.hpp"
#include "report/report.hpp"
#include "model/types.hpp"

namespace exmem::report {

namespace {

using detail::escape;
using detail::grouped;
using detail::kSeriesColours;
using detail::script_json;

// The value at a JSON pointer, or nullptr when the path is absent.
const nlohmann::json* find(const nlohmann::json& j, std::string_view pointer) {
  const nlohmann::json* at = &j;
  while (!pointer.empty()) {
    if (pointer.front() != '/') return nullptr;
    pointer.remove_prefix(1);
    const std::size_t slash = pointer.find('/');
    const std::string key(pointer.substr(0, slash));
    pointer = slash == std::string_view::npos ? std::string_view{} : pointer.substr(slash);
    if (!at->is_object()) return nullptr;
    const auto it = at->find(key);
    if (it == at->end()) return nullptr;
    at = &*it;
  }
  return at;
}

struct Swatch {
  std::string_view key;
  std::string_view colour;
  std::string_view label;
};

// The map's colours: the coverage, lighter where the region is mostly free;
// secret or unmapped pages and direct-map page tables drawn over it.
constexpr Swatch kSwatches[] = {
    {"1G", "#1f4e99", "1 GiB leaf, in use"},
    {"1G-free", "#9dbce8", "1 GiB leaf, mostly free"},
    {"2M", "#1e7a46", "2 MiB leaf, in use"},
    {"2M-free", "#a6dbb8", "2 MiB leaf, mostly free"},
    {"4K", "#e07b00", "split to 4 KiB, in use"},
    {"4K-free", "#f8cf98", "split to 4 KiB, mostly free"},
    {"secret-4K", "#d62728", "secret or unmapped pages (split to 4 KiB)"},
    {"secret-leaf", "#5c0a1a", "whole leaf unmapped (a pool's 2 MiB chunk)"},
    {"page-table", "#8e44ad", "direct-map page-table pages"},
    {"hole", "#cfcfcf", "no RAM (hole)"},
};

std::string grouped_real(double v) {
  if (!std::isfinite(v)) return fmt::format("{}", v);
  const double r = std::round(v);
  if (r < 0) return fmt::format("-{}", grouped(static_cast<std::uint64_t>(-r)));
  return grouped(static_cast<std::uint64_t>(r));
}

std::string display(const sim::Number& v, sim::Format f) {
  const double d = sim::as_double(v);
  switch (f) {
    case sim::Format::Integer:
      if (const auto* u = std::get_if<std::uint64_t>(&v)) return grouped(*u);
      return grouped_real(d);
    case sim::Format::Real:
    case sim::Format::Seconds:
      return fmt::format("{:.2f}", d);
    case sim::Format::PerThousand:
      return fmt::format("{:.1f}", 1000.0 * d);
    case sim::Format::Percent:
      return fmt::format("{:.3f}", d);
    case sim::Format::Whole:
      return grouped_real(d);
    case sim::Format::Size:
      return model::format_size(static_cast<std::uint64_t>(d));
  }
  return {};
}

std::string scalar_text(const nlohmann::json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "on" : "off";
  if (v.is_number_unsigned() && v.get<std::uint64_t>() >= 10000) return grouped(v.get<std::uint64_t>());
  return v.dump();
}

// "machine: 64 GiB RAM · 16 CPUs · ..." from whatever the object holds.
std::string meta_line(const nlohmann::json& out, std::string_view key) {
  const nlohmann::json* obj = find(out, fmt::format("/{}", key));
  if (obj == nullptr || !obj->is_object()) {
    return fmt::format("<p class=\"meta missing\"><b>{}</b> not recorded in this report</p>\n", key);
  }
  std::string items;
  auto add = [&](const std::string& text) {
    items += fmt::format("{}<span>{}</span>", items.empty() ? "" : " · ", escape(text));
  };
  // The keys a reader looks for first, then the rest in the object's order.
  static constexpr std::string_view kFirst[] = {"name", "ram", "cpus", "direct_gbpages", "events", "seed"};
  std::vector<std::pair<std::string, const nlohmann::json*>> entries;
  for (const std::string_view k : kFirst) {
    const auto it = obj->find(std::string(k));
    if (it != obj->end()) entries.emplace_back(std::string(k), &*it);
  }
  for (const auto& [k, v] : obj->items()) {
    if (std::find(std::begin(kFirst), std::end(kFirst), k) == std::end(kFirst)) entries.emplace_back(k, &v);
  }
  for (const auto& [k, vp] : entries) {
    const nlohmann::json& v = *vp;
    if (!v.is_primitive() || v.is_null()) continue;
    if (k == "ram_bytes" && obj->contains("ram")) continue;
    if (k == "ram") {
      add(fmt::format("{} RAM", scalar_text(v)));
    } else if (k == "cpus") {
      add(fmt::format("{} CPUs", scalar_text(v)));
    } else if (k == "name") {
      add(scalar_text(v));
    } else {
      add(fmt::format("{} {}", k, scalar_text(v)));
    }
  }
  return fmt::format("<p class=\"meta\"><b>{}</b> {}</p>\n", key, items);
}

std::string comparison_table(const std::vector<sim::RunResult>& runs) {
  if (runs.empty()) return "<p class=\"missing\">No runs in this report.</p>\n";
  std::string s = "<table class=\"cmp\">\n<thead><tr><th></th>";
  for (const sim::RunResult& run : runs) s += fmt::format("<th>{}</th>", escape(run.policy));
  s += "</tr></thead>\n<tbody>\n";
  for (const sim::Metric* m : detail::columns()) {
    s += fmt::format("<tr><th title=\"runs.csv: {}\">{}</th>", m->column, escape(m->label));
    for (const sim::RunResult& run : runs) {
      if (const auto v = m->get(run)) {
        s += fmt::format("<td>{}</td>", display(*v, m->format));
      } else {
        s += "<td class=\"missing\" title=\"not measured in this run\">&ndash;</td>";
      }
    }
    s += "</tr>\n";
  }
  s += "</tbody>\n</table>\n";
  return s;
}

// What the script needs: the policies, their samples and their region maps.
nlohmann::json page_data(const Document& doc) {
  nlohmann::json d;
  nlohmann::json palette = nlohmann::json::object();
  for (const Swatch& s : kSwatches) palette[std::string(s.key)] = s.colour;
  d["palette"] = palette;
  nlohmann::json series = nlohmann::json::array();
  for (const auto c : kSeriesColours) series.push_back(c);
  d["series_colours"] = series;
  const nlohmann::json* ram = find(doc.header, "/machine/ram");
  d["ram"] = ram != nullptr && ram->is_string() ? *ram : nlohmann::json();
  // The charts: the sample fields the catalogue marks, rates scaled as the tables show them.
  d["charts"] = nlohmann::json::array();
  for (const sim::SampleField& f : sim::sample_fields()) {
    if (!f.chart) continue;
    d["charts"].push_back({{"key", f.key}, {"title", f.label},
                           {"scale", f.format == sim::Format::PerThousand ? 1000 : 1}});
  }
  d["maps_only"] = doc.maps_only;
  d["runs"] = nlohmann::json::array();
  for (const sim::RunResult& run : doc.runs) {
    if (doc.maps_only) {
      nlohmann::json r;
      r["policy"] = run.policy;
      r["region_map"] = nlohmann::json::object();
      if (run.map_start) r["region_map"]["now"] = to_json(*run.map_start);
      d["runs"].push_back(r);
      continue;
    }
    const nlohmann::json j = to_json(run, true);
    nlohmann::json r;
    r["policy"] = run.policy;
    r["over_time"] = j["direct_map_over_time"];
    r["region_map"] = j.contains("region_map") ? j["region_map"] : nlohmann::json::object();
    d["runs"].push_back(r);
  }
  return d;
}

// Which figures priced the kernel slowdown, and (with a costs file) the
// model against the probe's sweep; the runs whose stream fell back.
std::string costs_lines(const nlohmann::json& out, const std::vector<sim::RunResult>& runs) {
  std::string s;
  const nlohmann::json* c = find(out, "/costs");
  if (c != nullptr && c->is_object()) {
    std::string items = fmt::format("<b>kernel cost figures</b> <span>{}</span>",
                                    escape(c->value("source", std::string("?"))));
    if (const nlohmann::json* f = find(*c, "/figures"); f != nullptr && f->is_object()) {
      for (const auto& [k, v] : f->items()) {
        const std::string ns = v.contains("ns") && v["ns"].is_number() ? fmt::format("{:.1f} ns", v["ns"].get<double>())
                                                                         : std::string("model");
        items += fmt::format(" · <span title=\"{}\">{} {}</span>", escape(v.value("from", std::string())), escape(k),
                             escape(ns));
      }
    }
    s += fmt::format("<p class=\"meta\" id=\"costs\">{}</p>\n", items);
    if (const nlohmann::json* m = find(*c, "/model_vs_probe"); m != nullptr && m->is_object()) {
      std::string points;
      for (const auto& p : (*m)["points"]) {
        points += fmt::format("{}<span>{} pages: model {:.1f} ns, probe {:.1f} ns, ratio {}</span>",
                              points.empty() ? "" : " · ", p["pages"].get<std::uint64_t>(),
                              p["model_extra_ns"].get<double>(), p["probe_extra_ns"].get<double>(),
                              p["ratio"].is_null() ? std::string("n/a") : fmt::format("{:.2f}", p["ratio"].get<double>()));
      }
      s += fmt::format("<p class=\"meta\" id=\"model-vs-probe\"><b>model vs probe</b> ({}, {}): {}</p>\n",
                       escape(m->value("tlb", std::string())), escape(m->value("how", std::string())),
                       points.empty() ? std::string("the costs file has no sweep") : points);
    }
  }
  for (const sim::RunResult& r : runs) {
    if (r.tlb_cost.stream_live || r.tlb_cost.stream_source.empty()) continue;
    s += fmt::format("<p class=\"meta\"><b>{}</b> kernel access stream over {}</p>\n", escape(r.policy),
                     escape(r.tlb_cost.stream_source));
  }
  return s;
}

}  // namespace

std::string html_page(const Document& doc) {
  const std::vector<sim::RunResult>& runs = doc.runs;
  const nlohmann::json& out = doc.header;
  const nlohmann::json* ram = find(out, "/machine/ram");

  std::string title = "exmem sim report";
  if (ram != nullptr && ram->is_string()) title += fmt::format(": {}", ram->get<std::string>());
  title += fmt::format(", {} {}", runs.size(), runs.size() == 1 ? "policy" : "policies");
  const bool maps_only = doc.maps_only;
  if (maps_only) title = doc.title;

  std::string s;
  s += "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  s += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n";
  s += fmt::format("<title>{}</title>\n", escape(title));
  s += fmt::format("<style>\n{}</style>\n</head>\n", assets::kPageCss);
  s += fmt::format("<body data-runs=\"{}\" data-maps-drawn=\"0\" data-charts-drawn=\"0\">\n", runs.size());
  s += fmt::format("<header>\n<h1>{}</h1>\n", escape(title));
  s += meta_line(out, "machine");
  s += meta_line(out, maps_only ? "direct_map" : "workload");
  if (!maps_only) s += costs_lines(out, runs);
  s += "</header>\n<main>\n";

  if (!maps_only) {
    s += "<section id=\"comparison\">\n<h2>Comparison</h2>\n";
    s += comparison_table(runs);
    s += "</section>\n";
  }

  s += maps_only ? "<section id=\"maps\">\n<h2>Physical memory and the direct map</h2>\n"
                 : "<section id=\"maps\">\n<h2>Physical memory and the direct map, start and end of each run</h2>\n";
  s += "<p class=\"explain\">Each cell is a 2 MiB region of the physical address space, from "
       "address 0 at the top left, row after row. Its colour says how the direct map covers it "
       "and, lighter, when most of it is free; secret or unmapped pages and the direct map's own "
       "page tables are drawn over the coverage. Point at a cell for its address and contents.</p>\n";
  s += "<div class=\"legend\" id=\"legend\">\n";
  for (const Swatch& sw : kSwatches) {
    s += fmt::format(
        "<span class=\"item\"><span class=\"swatch\" data-legend=\"{}\" data-colour=\"{}\" "
        "style=\"background:{}\"></span>{}</span>\n",
        sw.key, sw.colour, sw.colour, escape(sw.label));
  }
  s += "</div>\n<p class=\"explain\" id=\"map-scale\"></p>\n";
  s += "<div id=\"map-grid\"></div>\n";
  s += "<noscript><p class=\"missing\">The maps and charts are drawn by the page's script; "
       "allow scripts for this file to see them.</p></noscript>\n";
  s += "</section>\n";

  if (maps_only) {
    s += fmt::format("</main>\n<footer>{} The page needs no network.</footer>\n", escape(doc.footer));
  } else {
    s += "<section id=\"charts\">\n<h2>Over the run</h2>\n";
    s += "<p class=\"explain\">Samples taken along each run (<code>direct_map_over_time</code>); "
         "one line per policy.</p>\n";
    s += "<div id=\"chart-grid\"></div>\n</section>\n";
    s += "</main>\n<footer>Written by <code>exmem sim --out</code> with report.json, runs.csv and "
         "over_time.csv next to it. The page needs no network.</footer>\n";
  }

  s += fmt::format("<script type=\"application/json\" id=\"exmem-data\">{}</script>\n",
                   script_json(page_data(doc)));
  s += fmt::format("<script>\n{}</script>\n</body>\n</html>\n", assets::kPageJs);
  return s;
}

}  // namespace exmem::report
