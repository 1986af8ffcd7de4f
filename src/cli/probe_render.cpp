// `exmem probe`'s two renderers of one Report: JSON (stable keys, in the order
// of the layout in probe.cpp) and the human-readable report.
#include <string_view>

#include <fmt/format.h>

#include "probe_report.hpp"

namespace exmem::cli::probe {

namespace {

using json = nlohmann::ordered_json;

template <typename T>
json opt_json(const std::optional<T>& v) {
  return v ? json(*v) : json(nullptr);
}

json opt_field(bool present, const char* value) { return present ? json(value) : json(nullptr); }

template <typename T>
std::string opt_str(const std::optional<T>& v, std::string_view absent = "absent") {
  return v ? fmt::format("{}", *v) : std::string(absent);
}

std::string kb(const std::optional<std::uint64_t>& v) {
  return v ? fmt::format("{} kB", *v) : std::string("absent");
}

std::string signed_str(const std::optional<std::int64_t>& v, std::string_view unit = "") {
  if (!v) return "absent";
  return fmt::format("{:+}{}", *v, unit);
}

std::string yes_no(const std::optional<bool>& v, std::string_view unknown = "unknown") {
  return v ? std::string(*v ? "yes" : "no") : std::string(unknown);
}

}  // namespace

json to_json(const Report& r) {
  const host::SecretFacts& sf = r.secret.facts;
  const host::MemlockFacts& ml = r.memlock.facts;
  json j;
  j["system"] = {{"kernel", r.sys.kernel},
                 {"machine", r.sys.machine},
                 {"page_size", r.sys.page_size},
                 {"mem_total_kb", opt_json(r.sys.mem_total_kb)},
                 {"mem_available_kb", opt_json(r.sys.mem_available_kb)},
                 {"euid", r.sys.euid},
                 {"cap_sys_admin", r.sys.cap(host::kCapSysAdmin)}};
  j["memfd_secret"] = {{"available", r.secret.available()},
                       {"errno", r.secret.available() ? json(nullptr) : json(sf.err)},
                       {"errno_name", r.secret.available() ? json(nullptr) : json(host::errno_name(sf.err))},
                       {"reason", r.secret.reason},
                       {"secretmem_enable_param", opt_field(sf.has_enable_param, sf.enable_param)},
                       {"cmdline_secretmem_enable", opt_field(sf.has_cmdline_enable, sf.cmdline_enable)},
                       {"seccomp_mode", opt_json(sf.seccomp_mode)}};
  j["memlock"] = {{"soft_bytes", opt_json(ml.soft)},
                  {"hard_bytes", opt_json(ml.hard)},
                  {"locked_bytes", opt_json(ml.locked_bytes)},
                  {"cap_ipc_lock", ml.cap_ipc_lock},
                  {"meaning", r.memlock.meaning}};
  j["hibernation"] = {{"state_file", r.hib.state_file},
                      {"state", opt_json(r.hib.state)},
                      {"disk_listed_now", opt_json(r.hib.disk_now)},
                      {"disk_listed_with_secret_open", opt_json(r.hib.disk_with_secret)},
                      {"blocked_by_secretmem", opt_json(r.hib.blocked)},
                      {"hibernation_supported", opt_json(r.hib.supported)},
                      {"disk_file", opt_json(r.hib.disk_file)},
                      {"note", r.hib.note}};
  j["direct_map"] = {{"DirectMap4k", opt_json(r.dm.dm4k_kb)},
                     {"DirectMap2M", opt_json(r.dm.dm2m_kb)},
                     {"DirectMap1G", opt_json(r.dm.dm1g_kb)},
                     {"total_kb", opt_json(r.dm.total_kb())},
                     {"direct_map_level2_splits", opt_json(r.dm.level2_splits)},
                     {"direct_map_level3_splits", opt_json(r.dm.level3_splits)},
                     {"direct_map_level2_collapses", opt_json(r.dm.level2_collapses)},
                     {"direct_map_level3_collapses", opt_json(r.dm.level3_collapses)}};
  j["fault_cost"] = {{"measured", r.fault.measured},
                     {"error", opt_json(r.fault.error)},
                     {"pages", r.fault.pages},
                     {"secret_ns_median", opt_json(r.fault.secret_median)},
                     {"secret_ns_p90", opt_json(r.fault.secret_p90)},
                     {"anon_ns_median", opt_json(r.fault.anon_median)},
                     {"anon_ns_p90", opt_json(r.fault.anon_p90)},
                     {"ratio", opt_json(r.fault.ratio)},
                     {"timer_ns_median", opt_json(r.fault.timer_median)}};
  j["reserve"] = {{"measured", r.reserve.measured},
                  {"error", opt_json(r.reserve.error)},
                  {"mib", r.reserve.mib},
                  {"pages", r.reserve.pages},
                  {"asked_bytes", r.reserve.asked_bytes},
                  {"memlock_soft_bytes", opt_json(r.reserve.memlock_soft)},
                  {"level2_splits_delta", opt_json(r.reserve.l2_delta)},
                  {"level3_splits_delta", opt_json(r.reserve.l3_delta)},
                  {"level2_collapses_delta", opt_json(r.reserve.l2_collapse_delta)},
                  {"directmap4k_delta_kb", opt_json(r.reserve.dm4k_delta)},
                  {"directmap2m_delta_kb", opt_json(r.reserve.dm2m_delta)},
                  {"directmap1g_delta_kb", opt_json(r.reserve.dm1g_delta)},
                  {"touch_ns_per_page", opt_json(r.reserve.touch_ns_per_page)},
                  {"pages_present", opt_json(r.reserve.pages_present)},
                  {"distinct_2m_regions", opt_json(r.reserve.regions)},
                  {"pagemap_status", r.reserve.pagemap_status},
                  {"pagemap_note", r.reserve.pagemap_note},
                  {"interpretation", r.reserve.interpretation}};
  return j;
}

std::string to_text(const Report& r, bool measured) {
  const host::SecretFacts& sf = r.secret.facts;
  const host::MemlockFacts& ml = r.memlock.facts;
  std::string o;
  auto line = [&o](std::string_view label, std::string_view value) {
    o += fmt::format("  {:<28}{}\n", label, value);
  };
  o += fmt::format("exmem probe: Linux {} {}, page size {} B\n\n", r.sys.kernel, r.sys.machine, r.sys.page_size);

  o += "memfd_secret\n";
  if (r.secret.available()) {
    line("available", "yes");
  } else {
    line("available", fmt::format("no: {}", host::errno_text(sf.err)));
    line("why", r.secret.reason);
  }
  line("secretmem.enable (sysfs)", sf.has_enable_param ? sf.enable_param : "absent");
  line("secretmem.enable (cmdline)", sf.has_cmdline_enable ? sf.cmdline_enable : "not set");

  o += "\nRLIMIT_MEMLOCK\n";
  line("soft", host::limit_text(ml.soft));
  line("hard", host::limit_text(ml.hard));
  line("locked now (VmLck)", ml.locked_bytes ? host::bytes_text(*ml.locked_bytes) : "unknown");
  line("CAP_IPC_LOCK (effective)", ml.caps_known ? (ml.cap_ipc_lock ? "yes" : "no") : "unknown");
  line("meaning", r.memlock.meaning);

  o += "\nHibernation\n";
  if (!r.hib.state_file) {
    line("/sys/power/state", "absent");
  } else {
    line("/sys/power/state", r.hib.state->empty() ? "(empty)" : *r.hib.state);
    line("\"disk\" listed now", yes_no(r.hib.disk_now));
    line("... with a secret file open", yes_no(r.hib.disk_with_secret, "not checked"));
  }
  line("/sys/power/disk", r.hib.disk_file ? *r.hib.disk_file : std::string("absent"));
  line("blocked by secret memory", yes_no(r.hib.blocked, "not observable"));
  line("note", r.hib.note);

  o += "\nDirect map\n";
  line("DirectMap4k", kb(r.dm.dm4k_kb));
  line("DirectMap2M", kb(r.dm.dm2m_kb));
  line("DirectMap1G", kb(r.dm.dm1g_kb));
  line("direct_map_level2_splits", opt_str(r.dm.level2_splits));
  line("direct_map_level3_splits", opt_str(r.dm.level3_splits));
  line("direct_map_level2_collapses", opt_str(r.dm.level2_collapses));
  line("direct_map_level3_collapses", opt_str(r.dm.level3_collapses));

  if (!measured) {
    o += "\n(measurements skipped: --no-measure)\n";
    return o;
  }

  o += fmt::format("\nFirst-touch fault cost ({} pages of each kind, ns per page)\n", r.fault.pages);
  if (!r.fault.measured) {
    line("not measured", r.fault.error.value_or(""));
  } else {
    line("memfd_secret (MAP_SHARED)",
         fmt::format("median {} ns, p90 {} ns", *r.fault.secret_median, *r.fault.secret_p90));
    line("anonymous (MAP_PRIVATE)", fmt::format("median {} ns, p90 {} ns", *r.fault.anon_median, *r.fault.anon_p90));
    line("ratio (medians)", r.fault.ratio ? fmt::format("{:.2f}x", *r.fault.ratio) : std::string("n/a"));
    line("timer overhead (included)", fmt::format("{} ns per pair of clock readings", *r.fault.timer_median));
  }

  const Reserve& v = r.reserve;
  o += fmt::format("\nReserve {} MiB of exclusive memory through libexmem ({} pages, all faulted in by exmem_init)\n",
                   v.mib, v.pages);
  if (!v.measured) {
    line("not measured", v.error.value_or(""));
  } else {
    line("level2 splits (2M->4K)", signed_str(v.l2_delta));
    line("level3 splits (1G->2M)", signed_str(v.l3_delta));
    line("level2 collapses", signed_str(v.l2_collapse_delta));
    line("DirectMap4k", signed_str(v.dm4k_delta, " kB"));
    line("DirectMap2M", signed_str(v.dm2m_delta, " kB"));
    if (v.dm1g_delta) line("DirectMap1G", signed_str(v.dm1g_delta, " kB"));
    line("exmem_init cost", v.touch_ns_per_page ? fmt::format("{} ns per page", *v.touch_ns_per_page) : "n/a");
    line("distinct 2 MiB regions",
         v.regions ? fmt::format("{}", *v.regions) : fmt::format("unknown ({})", v.pagemap_status));
    line("pagemap", v.pagemap_note);
    line("comparison", v.interpretation);
  }
  return o;
}

}  // namespace exmem::cli::probe
