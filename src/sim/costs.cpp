// costs.cpp: reading the costs file (format "exmem-costs/1").
#include "sim/costs.hpp"

#include <fmt/format.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace exmem::sim {

namespace {

using json = nlohmann::json;

std::string type_of(const json& v) {
  if (v.is_null()) return "null";
  if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
  if (v.is_number()) return v.dump();
  if (v.is_string()) {
    const std::string s = v.dump();
    return s.size() > 40 ? "a string " + s.substr(0, 37) + "...\"" : "the string " + s;
  }
  if (v.is_array()) return "an array";
  return "an object";
}

class Reader {
 public:
  explicit Reader(std::string path) : path_(std::move(path)) {}
  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw CostsError(fmt::format("{}: key \"{}\": {}", path_, key, what));
  }
  const json& member(const json& obj, const std::string& parent, const char* key) const {
    if (!obj.contains(key)) fail(join(parent, key), "missing (required by format exmem-costs/1)");
    return obj.at(key);
  }
  const json& object(const json& obj, const std::string& parent, const char* key) const {
    const json& v = member(obj, parent, key);
    if (!v.is_object()) fail(join(parent, key), fmt::format("expected an object, got {}", type_of(v)));
    return v;
  }
  double nonneg(const json& v, const std::string& key) const {
    if (!v.is_number()) fail(key, fmt::format("expected a number >= 0, got {}", type_of(v)));
    const double d = v.get<double>();
    if (std::isnan(d) || d < 0 || std::isinf(d)) fail(key, fmt::format("expected a number >= 0, got {}", v.dump()));
    return d;
  }
  std::optional<std::string> text_or_null(const json& obj, const std::string& parent, const char* key) const {
    const json& v = member(obj, parent, key);
    if (v.is_null()) return std::nullopt;
    if (!v.is_string()) fail(join(parent, key), fmt::format("expected a string or null, got {}", type_of(v)));
    return v.get<std::string>();
  }
  CostFigure figure(const json& obj, const std::string& parent, const char* key) const {
    const json& f = object(obj, parent, key);
    const std::string at = join(parent, key);
    CostFigure c;
    c.ns = nonneg(member(f, at, "ns"), at + ".ns");
    for (const char* bound : {"low", "high"}) {
      const json& v = member(f, at, bound);
      if (v.is_null()) continue;
      const double d = nonneg(v, at + "." + bound);
      const bool low = std::strcmp(bound, "low") == 0;
      if (low ? d > c.ns : d < c.ns) {
        fail(at + "." + bound, fmt::format("expected {} ns ({}) or null, got {}", low ? "at most" : "at least", c.ns,
                                           v.dump()));
      }
      (low ? c.low : c.high) = d;
    }
    const json& runs = member(f, at, "runs");
    if (!runs.is_number_unsigned()) {
      fail(at + ".runs", fmt::format("expected a whole number >= 0, got {}", type_of(runs)));
    }
    c.runs = runs.get<std::uint64_t>();
    const json& measured = member(f, at, "measured");
    if (!measured.is_boolean()) fail(at + ".measured", fmt::format("expected true or false, got {}", type_of(measured)));
    c.measured = measured.get<bool>();
    const json& how = member(f, at, "how");
    if (!how.is_string()) fail(at + ".how", fmt::format("expected a string, got {}", type_of(how)));
    c.how = how.get<std::string>();
    return c;
  }
  static std::string join(const std::string& parent, const char* key) {
    return parent.empty() ? std::string(key) : parent + "." + key;
  }
  [[nodiscard]] const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace

CostsFile parse_costs(const std::string& text, const std::string& path) {
  const Reader rd(path);
  json doc;
  try {
    doc = json::parse(text);
  } catch (const json::parse_error& e) {
    throw CostsError(fmt::format("{}: not JSON ({}); expected a costs file of format {} (`exmem probe --cost "
                                 "--save FILE`)",
                                 path, e.what(), kCostsFormat));
  }
  if (!doc.is_object()) {
    throw CostsError(fmt::format("{}: expected a JSON object of format {}, got {}", path, kCostsFormat, type_of(doc)));
  }
  CostsFile f;
  f.path = path;
  const json& format = rd.member(doc, "", "format");
  if (!format.is_string() || format.get<std::string>() != kCostsFormat) {
    rd.fail("format", fmt::format("expected \"{}\", got {}", kCostsFormat, type_of(format)));
  }
  const json& src = rd.object(doc, "", "source");
  f.tool = rd.text_or_null(src, "source", "tool");
  f.exmem_version = rd.text_or_null(src, "source", "exmem_version");
  f.date = rd.text_or_null(src, "source", "date");
  f.kernel = rd.text_or_null(src, "source", "kernel");
  f.cpu_model = rd.text_or_null(src, "source", "cpu_model");
  if (const json& v = rd.member(src, "source", "cpu_mhz"); !v.is_null()) {
    f.cpu_mhz = rd.nonneg(v, "source.cpu_mhz");
    if (*f.cpu_mhz == 0) rd.fail("source.cpu_mhz", "expected a number > 0 or null, got 0");
  }
  if (const json& v = rd.member(src, "source", "cpus"); !v.is_null()) {
    if (!v.is_number_unsigned()) rd.fail("source.cpus", fmt::format("expected a whole number or null, got {}", type_of(v)));
    f.cpus = v.get<std::uint64_t>();
  }
  f.hypervisor = rd.text_or_null(src, "source", "hypervisor");
  if (const json& v = rd.member(src, "source", "pti"); !v.is_null()) {
    if (!v.is_boolean()) rd.fail("source.pti", fmt::format("expected true, false or null, got {}", type_of(v)));
    f.pti = v.get<bool>();
  }
  const json& figs = rd.object(doc, "", "figures");
  f.walk = rd.figure(figs, "figures", "walk_ns");
  f.ipi_round_trip = rd.figure(figs, "figures", "ipi_round_trip_ns");
  f.single_page_flush = rd.figure(figs, "figures", "single_page_flush_ns");
  f.full_flush = rd.figure(figs, "figures", "full_flush_ns");
  f.kernel_access = rd.figure(figs, "figures", "kernel_access_ns");
  const json& sweep = rd.member(doc, "", "sweep");
  if (!sweep.is_array()) rd.fail("sweep", fmt::format("expected an array (may be empty), got {}", type_of(sweep)));
  for (std::size_t i = 0; i < sweep.size(); ++i) {
    const std::string at = fmt::format("sweep[{}]", i);
    const json& row = sweep[i];
    if (!row.is_object()) rd.fail(at, fmt::format("expected an object, got {}", type_of(row)));
    const json& pages = rd.member(row, at, "pages");
    if (!pages.is_number_unsigned() || pages.get<std::uint64_t>() == 0) {
      rd.fail(at + ".pages", fmt::format("expected a whole number >= 1, got {}", type_of(pages)));
    }
    CostsFile::SweepRow r;
    r.pages = pages.get<std::uint64_t>();
    r.split = rd.figure(row, at, "split_ns");
    r.control = rd.figure(row, at, "control_ns");
    f.sweep.push_back(r);
  }
  return f;
}

CostsFile load_costs(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw CostsError(fmt::format("{}: cannot read: {}", path, std::strerror(errno)));
  std::ostringstream s;
  s << in.rdbuf();
  return parse_costs(s.str(), path);
}

std::string source_text(const CostsFile& f) {
  std::vector<std::string> parts;
  parts.push_back(fmt::format("probe {}", f.date.value_or("(no date)")));
  if (f.kernel) parts.push_back("kernel " + *f.kernel);
  if (f.cpu_model) parts.push_back(*f.cpu_model);
  parts.push_back(f.hypervisor ? "hypervisor " + *f.hypervisor : std::string("bare metal"));
  return fmt::format("{} ({})", f.path, fmt::join(parts, ", "));
}

model::tlb::KernelCostFigures figures_of(const CostsFile& f) {
  auto from = [&](const CostFigure& c) {
    return fmt::format("{} {} ({}{})", c.measured ? "measured" : "constant", f.path, c.how,
                       c.runs > 0 ? fmt::format(", median of {} runs", c.runs) : std::string());
  };
  model::tlb::KernelCostFigures k;
  k.source = source_text(f);
  k.walk_ns = f.walk.ns;
  k.walk_from = from(f.walk);
  k.kernel_access_ns = f.kernel_access.ns;
  k.kernel_access_from = from(f.kernel_access);
  k.shootdown.ipi_round_trip_ns = f.ipi_round_trip.ns;
  k.ipi_from = from(f.ipi_round_trip);
  k.shootdown.single_page_flush_ns = f.single_page_flush.ns;
  k.single_flush_from = from(f.single_page_flush);
  k.shootdown.full_flush_ns = f.full_flush.ns;
  k.full_flush_from = from(f.full_flush);
  k.cpu_mhz = f.cpu_mhz.value_or(0);
  return k;
}

std::vector<model::tlb::SweepPoint> sweep_points(const CostsFile& f) {
  std::vector<model::tlb::SweepPoint> out;
  for (const auto& r : f.sweep) out.push_back({r.pages, r.split.ns, r.control.ns});
  return out;
}

}  // namespace exmem::sim
