// json.cpp: a run's JSON, walked from the metric catalogue (sim/metrics.hpp)
// plus what is not a single figure.
#include <string>

#include "model/machine.hpp"
#include "report/report.hpp"
#include "sim/metrics.hpp"

namespace exmem::report {

namespace {

nlohmann::json value_of(const sim::Number& n) {
  return std::visit([](auto v) { return nlohmann::json(v); }, n);
}

}  // namespace

nlohmann::json columns_json(const sim::RunResult& r) {
  nlohmann::json j = nlohmann::json::object();
  for (const sim::Metric& m : sim::metrics()) {
    if (m.column.empty() || m.get == nullptr) continue;
    const auto v = m.get(r);
    j[std::string(m.column)] = v ? value_of(*v) : nlohmann::json(nullptr);
  }
  return j;
}

nlohmann::json to_json(const sim::RunResult& r, bool region_maps) {
  nlohmann::json j = nlohmann::json::object();
  for (const sim::Metric& m : sim::metrics()) {
    if (m.json.empty() || m.get == nullptr) continue;
    if (const auto v = m.get(r)) j[nlohmann::json::json_pointer(std::string(m.json))] = value_of(*v);
  }
  j["policy"] = r.policy;
  j["scenario"] = r.scenario;
  j["collapse"]["mode"] = std::string(model::collapse_mode_name(r.collapse_mode));
  j["tlb_cost"]["tlb"] = r.tlb_cost.tlb;
  j["tlb_cost"]["stream"]["source"] = r.tlb_cost.stream_source;
  j["tlb_cost"]["slowdown"]["figures_source"] = r.tlb_cost.figures_source;
  j["tlb_cost"]["slowdown"]["walk_ns_from"] = r.tlb_cost.walk_from;
  j["tlb_cost"]["slowdown"]["kernel_access_ns_from"] = r.tlb_cost.kernel_access_from;
  nlohmann::json frag = nlohmann::json::object();
  for (const sim::ZoneFragmentation& z : r.fragmentation) {
    frag[z.zone] = {{"unusable_free_index", z.unusable_free_index}, {"extfrag_index", z.extfrag_index}};
  }
  j["fragmentation"] = frag;
  nlohmann::json pc = nlohmann::json::object();
  for (const auto& c : r.policy_counters) pc[c.name] = c.value;
  j["policy_counters"] = pc;
  nlohmann::json over_time = nlohmann::json::array();
  for (const sim::Sample& s : r.over_time) {
    nlohmann::json sample = nlohmann::json::object();
    for (const sim::SampleField& f : sim::sample_fields()) sample[std::string(f.key)] = value_of(f.get(s));
    over_time.push_back(sample);
  }
  j["direct_map_over_time"] = over_time;
  nlohmann::json victims = nlohmann::json::array();
  for (const model::mm::OomVictim& v : r.oom.victims) {
    victims.push_back({{"pid", v.pid},
                       {"role", v.role},
                       {"badness", v.badness},
                       {"rss", v.rss},
                       {"secret_pages", v.secret_pages},
                       {"freed", v.freed}});
  }
  j["oom"]["victims"] = victims;
  if (r.trace) {
    nlohmann::json unknown = nlohmann::json::array();
    for (const auto& u : r.trace->first_unknown) {
      unknown.push_back({{"line", u.line}, {"text", u.text}, {"why", u.why}});
    }
    j["trace"]["first_unknown_lines"] = unknown;
    j["trace"]["unknown_gfp_names"] = r.trace->unknown_gfp_names;
  }
  if (region_maps && r.map_start && r.map_end) {
    j["region_map"] = {{"start", to_json(*r.map_start)}, {"end", to_json(*r.map_end)}};
  }
  return j;
}

nlohmann::json to_json(const Document& doc, bool region_maps) {
  nlohmann::json j = doc.header.is_object() ? doc.header : nlohmann::json::object();
  j["runs"] = nlohmann::json::array();
  for (const sim::RunResult& r : doc.runs) j["runs"].push_back(to_json(r, region_maps));
  return j;
}

}  // namespace exmem::report
