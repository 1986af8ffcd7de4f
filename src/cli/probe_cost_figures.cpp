// `exmem probe --cost`, the pure half: statistics of a figure, the hypervisor's
// name, the five figures derived from the raw samples, and the costs file's JSON.
// No system calls but CPUID, so the tests can feed it values.
#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <stdexcept>
#include <utility>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include "probe_cost.hpp"
#include "probe_util.hpp"

namespace exmem::cli::probe {

namespace {

namespace pu = probe_util;
using pu::median_of;

std::string printf_string(const char* format, ...) __attribute__((format(printf, 1, 2)));
std::string printf_string(const char* format, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, format);
  const int n = std::vsnprintf(buf, sizeof buf, format, ap);
  va_end(ap);
  return n < 0 ? std::string() : std::string(buf, std::min<std::size_t>(static_cast<std::size_t>(n), sizeof buf - 1));
}

double round1(double v) { return std::round(v * 10.0) / 10.0; }

std::string spread_text(const Figure& f) {
  if (!f.low || !f.high) return printf_string("%.1f ns", f.ns);
  return printf_string("%.1f ns [%.1f, %.1f]", f.ns, *f.low, *f.high);
}

}  // namespace

Figure figure_from_samples(std::vector<double> samples, std::string how) {
  Figure f;
  f.how = std::move(how);
  f.runs = samples.size();
  f.measured = !samples.empty();
  if (samples.empty()) return f;
  std::sort(samples.begin(), samples.end());
  f.ns = round1(pu::percentile_sorted(samples, 0.5));
  if (samples.size() >= 2) {
    f.low = round1(pu::percentile_sorted(samples, 0.25));
    f.high = round1(pu::percentile_sorted(samples, 0.75));
  }
  return f;
}

Figure clamp_nonnegative(Figure f) {
  const bool negative = f.ns < 0.0 || (f.low && *f.low < 0.0) || (f.high && *f.high < 0.0);
  if (!negative) return f;
  const std::string was = spread_text(f);
  if (f.ns < 0.0) f.ns = 0.0;
  if (f.low && *f.low < 0.0) f.low = 0.0;
  if (f.high && *f.high < 0.0) f.high = 0.0;
  f.how += " The measured difference was " + was + " (median [p25, p75]); negatives are clamped to 0.";
  return f;
}

Figure single_page_flush_constant() {
  Figure f;
  f.ns = 100.0;
  f.runs = 0;
  f.measured = false;
  f.how =
      "Not measurable from user space: one INVLPG, the kernel's own estimate in arch/x86/mm/tlb.c "
      "(tlb_single_page_flush_ceiling's comment: 'Each single flush is about 100 ns').";
  return f;
}

std::string hypervisor_name(std::string_view vendor12) {
  std::string v(vendor12.substr(0, std::min<std::size_t>(vendor12.size(), 12)));
  while (!v.empty() && (v.back() == '\0' || v.back() == ' ')) v.pop_back();
  static constexpr std::pair<std::string_view, std::string_view> kKnown[] = {
      {"KVMKVMKVM", "KVM"},          {"Microsoft Hv", "Hyper-V"}, {"VMwareVMware", "VMware"},
      {"XenVMMXenVMM", "Xen"},       {"TCGTCGTCGTCG", "QEMU TCG"}, {"bhyve bhyve", "bhyve"},
      {" lrpepyh  vr", "Parallels"}, {"ACRNACRNACRN", "ACRN"},     {"QNXQVMBSQG", "QNX"},
      {"VBoxVBoxVBox", "VirtualBox"}, {"Jailhouse", "Jailhouse"},  {"SRESRESRESRE", "Intel SRE"},
  };
  for (const auto& [raw, name] : kKnown) {
    std::string r(raw);
    while (!r.empty() && r.back() == ' ') r.pop_back();
    if (v == r) return std::string(name);
  }
  std::string printable;
  for (const char c : v) printable += (c >= 0x20 && c < 0x7f) ? c : '?';
  return "unknown (\"" + printable + "\")";
}

Hypervisor read_hypervisor() {
  Hypervisor h;
#if defined(__x86_64__) || defined(__i386__)
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid(1, &a, &b, &c, &d) == 0) return h;
  h.present = ((c >> 31) & 1U) != 0;
  if (!h.present) return h;
  __cpuid(0x40000000U, a, b, c, d);
  char v[12];
  for (int i = 0; i < 4; ++i) {
    v[i] = static_cast<char>((b >> (8 * i)) & 0xff);
    v[4 + i] = static_cast<char>((c >> (8 * i)) & 0xff);
    v[8 + i] = static_cast<char>((d >> (8 * i)) & 0xff);
  }
  for (const char ch : v) {
    if (ch >= 0x20 && ch < 0x7f) h.vendor_raw += ch;
  }
  h.name = hypervisor_name(std::string_view(v, 12));
#endif
  return h;
}

nlohmann::json raw_to_json(const CostRaw& r) {
  nlohmann::json j;
  j["cpu"] = r.cpu;
  j["cpus"] = r.cpus;
  j["calls"] = r.calls;
  j["secret_files"] = r.secret_files;
  j["secret_pages"] = r.secret_pages;
  j["anchor_pages"] = r.anchor_pages;
  j["freed_pages"] = r.freed_pages;
  j["reused_pages"] = r.reused_pages;
  j["split_file_pages"] = r.split_file_pages;
  j["control_file_pages"] = r.control_file_pages;
  j["split_pages"] = r.split_pages;
  j["control_pages"] = r.control_pages;
  j["anchor_regions"] = r.anchor_regions;
  j["secret_regions"] = r.secret_regions;
  j["split_group_regions"] = r.split_group_regions;
  j["control_group_regions"] = r.control_group_regions;
  j["sweep"] = nlohmann::json::array();
  for (const auto& s : r.sweep) j["sweep"].push_back({{"pages", s.pages}, {"split", s.split}, {"control", s.control}});
  j["fault_pages_per_run"] = r.fault_pages_per_run;
  j["busy_one"] = r.busy_one;
  j["busy_all"] = r.busy_all;
  j["anon"] = r.anon;
  j["secret_idle"] = r.secret_idle;
  j["secret_one"] = r.secret_one;
  j["secret_all"] = r.secret_all;
  j["condition_faults_split"] = r.condition_faults_split;
  j["split_faults"] = r.split_faults;
  j["nonsplit_faults_runs"] = r.nonsplit_faults_runs;
  j["placement_faults"] = r.placement_faults;
  j["placement_split_faults"] = r.placement_split_faults;
  j["placement_multi_split_faults"] = r.placement_multi_split_faults;
  j["search_pages"] = r.search_pages;
  j["search_split_faults"] = r.search_split_faults;
  return j;
}

CostRaw raw_from_json(const nlohmann::json& j) {
  CostRaw r;
  j.at("cpu").get_to(r.cpu);
  j.at("cpus").get_to(r.cpus);
  j.at("calls").get_to(r.calls);
  j.at("secret_files").get_to(r.secret_files);
  j.at("secret_pages").get_to(r.secret_pages);
  j.at("anchor_pages").get_to(r.anchor_pages);
  j.at("freed_pages").get_to(r.freed_pages);
  j.at("reused_pages").get_to(r.reused_pages);
  j.at("split_file_pages").get_to(r.split_file_pages);
  j.at("control_file_pages").get_to(r.control_file_pages);
  j.at("split_pages").get_to(r.split_pages);
  j.at("control_pages").get_to(r.control_pages);
  j.at("anchor_regions").get_to(r.anchor_regions);
  j.at("secret_regions").get_to(r.secret_regions);
  j.at("split_group_regions").get_to(r.split_group_regions);
  j.at("control_group_regions").get_to(r.control_group_regions);
  for (const auto& s : j.at("sweep")) {
    CostSweepRaw w;
    s.at("pages").get_to(w.pages);
    s.at("split").get_to(w.split);
    s.at("control").get_to(w.control);
    r.sweep.push_back(std::move(w));
  }
  j.at("fault_pages_per_run").get_to(r.fault_pages_per_run);
  j.at("busy_one").get_to(r.busy_one);
  j.at("busy_all").get_to(r.busy_all);
  j.at("anon").get_to(r.anon);
  j.at("secret_idle").get_to(r.secret_idle);
  j.at("secret_one").get_to(r.secret_one);
  j.at("secret_all").get_to(r.secret_all);
  j.at("condition_faults_split").get_to(r.condition_faults_split);
  j.at("split_faults").get_to(r.split_faults);
  j.at("nonsplit_faults_runs").get_to(r.nonsplit_faults_runs);
  j.at("placement_faults").get_to(r.placement_faults);
  j.at("placement_split_faults").get_to(r.placement_split_faults);
  j.at("placement_multi_split_faults").get_to(r.placement_multi_split_faults);
  j.at("search_pages").get_to(r.search_pages);
  j.at("search_split_faults").get_to(r.search_split_faults);
  return r;
}

std::vector<std::uint64_t> working_sets(std::uint64_t split, std::uint64_t control) {
  const std::uint64_t limit = std::min(split, control);
  std::vector<std::uint64_t> ws;
  for (std::uint64_t n = 64; n <= limit; n *= 4) ws.push_back(n);
  if (!ws.empty() && limit > 2 * ws.back()) ws.push_back(limit);
  return ws;
}

Costs derive_costs(const CostRaw& raw, CostSource source) {
  if (raw.sweep.empty()) {
    throw std::runtime_error(printf_string(
        "no working set could be timed: the split group has %llu pages and the control group %llu, and both need "
        "64 (%llu of %llu freed secret pages were reused by ramfs). Try a larger --cost-mib.",
        static_cast<unsigned long long>(raw.split_pages), static_cast<unsigned long long>(raw.control_pages),
        static_cast<unsigned long long>(raw.reused_pages), static_cast<unsigned long long>(raw.freed_pages)));
  }
  for (const auto& s : raw.sweep) {
    if (s.split.empty() || s.split.size() != s.control.size()) {
      throw std::runtime_error("the sweep's split and control runs do not pair up");
    }
  }
  if (raw.anon.empty() || raw.secret_all.empty() || raw.anon.size() != raw.secret_all.size()) {
    throw std::runtime_error("the fault runs are missing or do not pair up");
  }
  Costs c;
  c.source = std::move(source);
  const std::uint64_t calls = raw.calls;

  for (const auto& s : raw.sweep) {
    SweepFigure f;
    f.pages = s.pages;
    f.split = figure_from_samples(
        s.split, printf_string("Median call, ns per access: process_vm_readv of 64 bytes at a random offset of one of "
                               "%llu ramfs pages whose 2 MiB region holds a live memfd_secret page (4 KiB "
                               "direct-map leaf), 1024 accesses per call, %llu per run.",
                               static_cast<unsigned long long>(s.pages), static_cast<unsigned long long>(calls)));
    f.control = figure_from_samples(
        s.control, printf_string("The same sequence, calls interleaved, on %llu anonymous pages (transparent huge pages "
                                 "mapped by 4 KiB entries: few regions) in regions holding none of the probe's secret pages (2 MiB leaf unless split before the run), %llu "
                                 "accesses per run.",
                                 static_cast<unsigned long long>(s.pages), static_cast<unsigned long long>(calls)));
    c.sweep.push_back(std::move(f));
  }

  // walk: split minus control at the largest working set, less the same difference at
  // the smallest (TLB-hot) one, which is the two paths' own difference (ramfs page
  // against anonymous page), not the leaf's.
  const CostSweepRaw& largest = raw.sweep.back();
  const CostSweepRaw& smallest = raw.sweep.front();
  const bool two = raw.sweep.size() >= 2;
  std::vector<double> walk_diffs;
  for (std::size_t i = 0; i < largest.split.size(); ++i) {
    double d = largest.split[i] - largest.control[i];
    if (two) d -= smallest.split[i] - smallest.control[i];
    walk_diffs.push_back(d);
  }
  c.walk = clamp_nonnegative(figure_from_samples(
      walk_diffs,
      two ? printf_string("Per run, ns per access (64 bytes copied through the direct map, 1024 per process_vm_readv) "
                          "on %llu ramfs pages in split 2 MiB regions (4 KiB leaf) minus the same on as many "
                          "anonymous pages in regions without secret pages, less that difference at %llu pages "
                          "(TLB-hot: the paths' own difference); median over runs.",
                          static_cast<unsigned long long>(largest.pages),
                          static_cast<unsigned long long>(smallest.pages))
          : printf_string("Per run, ns per access on %llu ramfs pages in split 2 MiB regions minus the same on as "
                          "many anonymous pages in regions without secret pages; median over runs.",
                          static_cast<unsigned long long>(largest.pages))));

  c.kernel_access = figure_from_samples(
      smallest.control,
      printf_string("ns per access: 64 bytes of one of %llu anonymous pages in unsplit regions (smallest working "
                    "set) read by process_vm_readv, 1024 per call: pinning the page, a copy through its direct-map "
                    "address, unpinning, and 1/1024 of the system call.",
                    static_cast<unsigned long long>(smallest.pages)));

  std::vector<double> ipi_diffs;
  for (std::size_t i = 0; i < raw.anon.size(); ++i) ipi_diffs.push_back(raw.secret_all[i] - raw.anon[i]);
  c.ipi_round_trip = clamp_nonnegative(figure_from_samples(
      ipi_diffs,
      printf_string("Per run, median first touch of a memfd_secret page that did not split a 2 MiB leaf minus that "
                    "of an anonymous page, with %u other CPU(s) spinning: set_direct_map_invalid_noflush and "
                    "flush_tlb_kernel_range's IPI round trip.",
                    raw.busy_all)));

  c.single_page_flush = single_page_flush_constant();

  const double ipi = c.ipi_round_trip.ns;
  const double nonsplit = median_of(raw.nonsplit_faults_runs);
  std::vector<double> split_extra;
  for (const double s : raw.split_faults) split_extra.push_back(s - nonsplit - ipi);
  if (split_extra.empty()) {
    // Nothing to measure: the kernel's own break-even instead (tlb_single_page_flush_ceiling).
    c.full_flush.ns = 3300.0;
    c.full_flush.measured = false;
    c.full_flush.how =
        "Not measured: no first touch of a memfd_secret page split a 2 MiB leaf during the probe (every region its "
        "pages came from was split already). The kernel's own break-even instead: arch/x86/mm/tlb.c flushes the "
        "whole TLB rather than more than tlb_single_page_flush_ceiling = 33 single flushes of about 100 ns.";
  } else {
    c.full_flush = clamp_nonnegative(figure_from_samples(
        split_extra,
        printf_string("Per fault that raised direct_map_level2_splits by 1 (%zu of %llu placement faults, every "
                      "other CPU spinning): its first-touch time minus the median non-splitting one (%.1f ns) "
                      "minus ipi_round_trip_ns; runs counts those faults.",
                      raw.split_faults.size(), static_cast<unsigned long long>(raw.placement_faults), nonsplit)));
  }

  FaultFigures ff;
  const auto per_run = [&](const std::vector<double>& v, const char* what, unsigned busy) {
    return figure_from_samples(
        v, printf_string("Per run, median first-touch time of %llu %s pages (fault, allocation, zeroing) with %u "
                         "other CPU(s) spinning; faults that split a 2 MiB leaf left out.",
                         static_cast<unsigned long long>(raw.fault_pages_per_run), what, busy));
  };
  ff.anon = per_run(raw.anon, "anonymous (MADV_NOHUGEPAGE)", raw.busy_all);
  ff.secret_idle = per_run(raw.secret_idle, "memfd_secret", 0);
  ff.secret_one_busy = per_run(raw.secret_one, "memfd_secret", raw.busy_one);
  ff.secret_all_busy = per_run(raw.secret_all, "memfd_secret", raw.busy_all);
  ff.secret_split = figure_from_samples(
      raw.split_faults,
      raw.split_faults.empty()
          ? "Not measured: no first touch of a memfd_secret page raised direct_map_level2_splits (every region its "
            "pages came from was split already)."
          : "First-touch time of each memfd_secret page whose fault raised direct_map_level2_splits by 1 (every "
            "other CPU spinning); runs counts those faults.");
  c.faults = std::move(ff);
  return c;
}

nlohmann::ordered_json figure_to_json(const Figure& f) {
  nlohmann::ordered_json j;
  j["ns"] = f.ns;
  j["low"] = f.low ? nlohmann::ordered_json(*f.low) : nlohmann::ordered_json(nullptr);
  j["high"] = f.high ? nlohmann::ordered_json(*f.high) : nlohmann::ordered_json(nullptr);
  j["runs"] = f.runs;
  j["measured"] = f.measured;
  j["how"] = f.how;
  return j;
}

nlohmann::ordered_json costs_to_json(const Costs& c) {
  using oj = nlohmann::ordered_json;
  const auto opt = [](const auto& v) { return v ? oj(*v) : oj(nullptr); };
  oj j;
  j["format"] = kCostsFormat;
  const CostSource& s = c.source;
  j["source"] = {{"tool", s.tool},       {"exmem_version", opt(s.exmem_version)},
                 {"date", opt(s.date)},   {"kernel", opt(s.kernel)},
                 {"cpu_model", opt(s.cpu_model)}, {"cpu_mhz", opt(s.cpu_mhz)},
                 {"cpus", opt(s.cpus)},   {"hypervisor", opt(s.hypervisor)},
                 {"pti", opt(s.pti)}};
  j["figures"] = {{"walk_ns", figure_to_json(c.walk)},
                  {"ipi_round_trip_ns", figure_to_json(c.ipi_round_trip)},
                  {"single_page_flush_ns", figure_to_json(c.single_page_flush)},
                  {"full_flush_ns", figure_to_json(c.full_flush)},
                  {"kernel_access_ns", figure_to_json(c.kernel_access)}};
  j["sweep"] = oj::array();
  for (const auto& w : c.sweep) {
    j["sweep"].push_back({{"pages", w.pages}, {"split_ns", figure_to_json(w.split)},
                          {"control_ns", figure_to_json(w.control)}});
  }
  if (c.faults) {
    const FaultFigures& f = *c.faults;
    j["faults"] = {{"anon_ns", figure_to_json(f.anon)},
                   {"secret_idle_ns", figure_to_json(f.secret_idle)},
                   {"secret_one_busy_ns", figure_to_json(f.secret_one_busy)},
                   {"secret_all_busy_ns", figure_to_json(f.secret_all_busy)},
                   {"secret_split_ns", figure_to_json(f.secret_split)}};
  }
  if (c.counters) {
    const CostCounters& k = *c.counters;
    j["counters"] = {{"direct_map_level2_splits_before", k.l2_before},
                     {"direct_map_level2_splits_after", k.l2_after},
                     {"directmap4k_kb_before", k.dm4k_before},
                     {"directmap4k_kb_after", k.dm4k_after}};
  }
  return j;
}

}  // namespace exmem::cli::probe
