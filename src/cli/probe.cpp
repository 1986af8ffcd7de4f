// `exmem probe`: what this machine's kernel offers for exclusive memory, and what it
// costs, measured. The facts and their wording come from host/, which is meant for
// libexmem's messages too, so that both give one diagnosis; the reservation goes through
// libexmem itself (exmem_init with .reserve, in a child process), so it measures the
// route an application takes. This file holds the options; probe_report.hpp the
// Report, probe_facts.cpp, probe_measure.cpp and probe_render.cpp the rest.
//
// With --map, the direct map read through /proc/kcore instead (probe_map.hpp: its own JSON).
// Output: human-readable by default; with --json one JSON object. Its keys are stable:
//
// {                                    (keys in this order)
//   "system": {"kernel": "6.18.0", "machine": "x86_64", "page_size": 4096,
//              "mem_total_kb": n|null, "mem_available_kb": n|null,
//              "euid": n, "cap_sys_admin": bool},
//   "memfd_secret": {
//     "available": bool,                 // memfd_secret(O_CLOEXEC) returned a descriptor
//     "errno": n|null,                   // errno of the failed call, null when available
//     "errno_name": "ENOSYS"|null,
//     "reason": string,                  // why not (or "available")
//     "secretmem_enable_param": "Y"|"N"|null,   // /sys/module/secretmem/parameters/enable
//     "cmdline_secretmem_enable": string|null,  // secretmem.enable= on /proc/cmdline
//     "seccomp_mode": n|null},           // Seccomp: of /proc/self/status
//   "memlock": {
//     "soft_bytes": n|null,              // RLIMIT_MEMLOCK; null = unlimited
//     "hard_bytes": n|null,
//     "locked_bytes": n|null,            // VmLck of this process
//     "cap_ipc_lock": bool,              // CAP_IPC_LOCK (bit 14) in CapEff
//     "meaning": string},
//   "hibernation": {
//     "state_file": bool,                // /sys/power/state exists
//     "state": string|null,              // its contents
//     "disk_listed_now": bool|null,      // "disk" listed, no secret file held by us
//     "disk_listed_with_secret_open": bool|null,  // while we hold a memfd_secret file
//     "blocked_by_secretmem": bool|null, // observed: listed now, not listed with one open
//     "hibernation_supported": bool|null,// /sys/power/disk exists (CONFIG_HIBERNATION)
//     "disk_file": string|null,          // contents of /sys/power/disk
//     "note": string},
//   "direct_map": {                      // null for a field the kernel does not show
//     "DirectMap4k": kB|null, "DirectMap2M": kB|null, "DirectMap1G": kB|null,
//     "total_kb": kB|null,
//     "direct_map_level2_splits": n|null, "direct_map_level3_splits": n|null,
//     "direct_map_level2_collapses": n|null, "direct_map_level3_collapses": n|null},
//   "fault_cost": {                      // first touch of one page, ns per page
//     "measured": bool, "error": string|null, "pages": n,
//     "secret_ns_median": n|null, "secret_ns_p90": n|null,
//     "anon_ns_median": n|null, "anon_ns_p90": n|null,
//     "ratio": x|null,                   // secret median / anonymous median
//     "timer_ns_median": n|null},        // cost of one pair of clock readings (included)
//   "reserve": {                         // exmem_init(.reserve = mib MiB, EXMEM_REQUIRE_SECRET)
//     "measured": bool, "error": string|null, "mib": n, "pages": n,
//     "asked_bytes": n, "memlock_soft_bytes": n|null,
//     "level2_splits_delta": n|null, "level3_splits_delta": n|null,
//     "level2_collapses_delta": n|null,
//     "directmap4k_delta_kb": n|null, "directmap2m_delta_kb": n|null,
//     "directmap1g_delta_kb": n|null,
//     "touch_ns_per_page": n|null,       // exmem_init's time (it faults every page in) per page
//     "pages_present": n|null,           // present in /proc/self/pagemap
//     "distinct_2m_regions": n|null,     // distinct pfn >> 9 of those pages; null if unknown
//     "pagemap_status": "ok"|"needs root"|"unreadable"|"no pfns"|"not present"|"not measured",
//     "pagemap_note": string,
//     "interpretation": string}
// }
// With --no-measure, fault_cost and reserve have "measured": false and null figures.

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include <fmt/format.h>

#include "commands.hpp"
#include "probe_cost.hpp"
#include "probe_map.hpp"
#include "probe_report.hpp"
#include "probe_util.hpp"

namespace exmem::cli {
namespace {

namespace pu = probe_util;
using probe::kMiB;

constexpr std::uint64_t kFaultPagesMax = 65536;
constexpr std::uint64_t kReserveMibMax = 65536;

struct Options {
  bool json_out = false;
  bool no_measure = false;
  std::uint64_t fault_pages = 256;
  std::uint64_t reserve_mib = 64;
  bool cost = false;
  probe::CostOptions cost_opt;
  bool map = false;
  std::string out_dir;
};

CLI::Validator bounded(std::uint64_t lo, std::uint64_t hi, std::string what) {
  return CLI::Validator(
      [lo, hi, what](std::string& s) -> std::string {
        if (pu::parse_bounded(s, lo, hi)) return {};
        return fmt::format("expected a whole number of {} from {} to {}, got '{}'", what, lo, hi, s);
      },
      "");
}

void run(Options opt) {
  if (opt.map) {
    const int rc = probe::run_map({opt.json_out, opt.out_dir});
    if (rc != 0) throw CLI::RuntimeError(rc);
    return;
  }
  if (opt.cost) {
    opt.cost_opt.json_out = opt.json_out;
    probe::run_cost(opt.cost_opt);
    return;
  }
  probe::Report r = probe::read_facts();
  r.fault.pages = opt.fault_pages;
  r.reserve.mib = opt.reserve_mib;
  r.reserve.asked_bytes = opt.reserve_mib * kMiB;
  r.reserve.pages = r.reserve.asked_bytes / r.sys.page_size;
  r.reserve.memlock_soft = r.memlock.facts.soft;
  if (!opt.no_measure) {
    r.fault = probe::measure_fault_cost(opt.fault_pages, r);
    r.reserve = probe::measure_reserve(opt.reserve_mib, r);
  } else {
    r.fault.error = "skipped: --no-measure";
    r.reserve.error = "skipped: --no-measure";
  }

  const std::string out = opt.json_out ? probe::to_json(r).dump(2) + "\n" : probe::to_text(r, !opt.no_measure);
  if (std::fwrite(out.data(), 1, out.size(), stdout) != out.size() || std::fflush(stdout) != 0) {
    std::fprintf(stderr, "exmem probe: writing the report failed: %s\n", std::strerror(errno));
    throw CLI::RuntimeError(1);
  }
}

}  // namespace

void add_probe(CLI::App& app) {
  auto opt = std::make_shared<Options>();
  CLI::App* sub = app.add_subcommand(
      "probe",
      "What this machine's kernel offers for exclusive memory, and what it costs, measured:\n"
      "memfd_secret availability (or why not), RLIMIT_MEMLOCK and CAP_IPC_LOCK, whether hibernation\n"
      "is blocked by secret memory, the direct map (DirectMap4k/2M/1G, split counters), the first-touch\n"
      "fault cost of a secret page against an anonymous page, and the direct-map splits caused by\n"
      "reserving exclusive memory (with, as root, the 2 MiB physical regions holding its pages);\n"
      "with --cost, what a split direct map costs this kernel, saved for `exmem sim --costs`.");
  sub->add_flag("--json", opt->json_out, "Print one JSON object instead of the human-readable report");
  CLI::Option* fault =
      sub->add_option("--fault-pages", opt->fault_pages,
                      fmt::format("Pages of each kind (secret, anonymous) whose first touch is timed, 1..{}",
                                  kFaultPagesMax))
          ->type_name("N")
          ->check(bounded(1, kFaultPagesMax, "pages"))
          ->capture_default_str();
  CLI::Option* reserve =
      sub->add_option("--reserve-mib", opt->reserve_mib,
                      fmt::format("MiB of exclusive memory to reserve through libexmem (exmem_init with "
                                  ".reserve, every page faulted in) when counting direct-map splits, 1..{}",
                                  kReserveMibMax))
          ->type_name("N")
          ->check(bounded(1, kReserveMibMax, "MiB"))
          ->capture_default_str();
  sub->add_flag("--no-measure", opt->no_measure,
                "Only read the kernel's state: no fault timing, no reservation")
      ->excludes(fault)
      ->excludes(reserve);
  CLI::Option* cost =
      sub->add_flag("--cost", opt->cost,
                    "Measure what a split direct map costs here (kernel access on split vs unsplit 2 MiB regions,\n"
                    "secret-page faults and the IPIs they send) and print the figures of the costs file.\n"
                    "Needs root; leaves part of the direct map split until reboot: asks first, or pass --yes")
          ->excludes(fault)
          ->excludes(reserve)
          ->excludes("--no-measure");
  CLI::Option* map =
      sub->add_flag("--map", opt->map,
                    "Read this kernel's direct-map page tables through /proc/kcore (root) and show every 2 MiB\n"
                    "region as a 1 GiB leaf, a 2 MiB leaf, split to 4 KiB or not mapped, with the totals against\n"
                    "DirectMap4k/2M/1G; or say why the kernel does not allow it (exit status 3)")
          ->excludes(fault)
          ->excludes(reserve)
          ->excludes("--no-measure")
          ->excludes(cost);
  sub->add_option("--out", opt->out_dir,
                  "With --map: write DIR/index.html (the map, drawn as exmem sim's report draws its maps) and\n"
                  "DIR/map.json")
      ->type_name("DIR")
      ->needs(map);
  sub->add_flag("--yes", opt->cost_opt.yes, "With --cost: do not ask (needed when stdin is not a terminal)")->needs(cost);
  sub->add_option("--save", opt->cost_opt.save,
                  "With --cost: write the costs file (format exmem-costs/1) to FILE, for `exmem sim --costs FILE`;\n"
                  "written to FILE.tmp and renamed, so FILE is never half-written")
      ->type_name("FILE")
      ->needs(cost);
  sub->add_option("--runs", opt->cost_opt.runs,
                  fmt::format("With --cost: repeated runs of every timing (median, p25, p75 over them), {}..{}",
                              probe::kCostRunsMin, probe::kCostRunsMax))
      ->type_name("N")
      ->check(bounded(probe::kCostRunsMin, probe::kCostRunsMax, "runs"))
      ->capture_default_str()
      ->needs(cost);
  sub->add_option("--cost-mib", opt->cost_opt.cost_mib,
                  fmt::format("With --cost: MiB of secret memory used to place the pages, {}..{} (half as much each\n"
                              "of ramfs page cache and anonymous memory; about one 2 MiB region stays split per 2 MiB)",
                              probe::kCostMibMin, probe::kCostMibMax))
      ->type_name("N")
      ->check(bounded(probe::kCostMibMin, probe::kCostMibMax, "MiB"))
      ->capture_default_str()
      ->needs(cost);
  sub->add_option("--split-mib", opt->cost_opt.split_mib,
                  fmt::format("With --cost: after the measurements, fault up to N MiB more secret memory looking for\n"
                              "faults that split a 2 MiB leaf, to time a split and its flush_tlb_all (full_flush_ns),\n"
                              "stopping after {} such faults; 0..{}, 0 = no search. A kernel that ran secret memory\n"
                              "before serves it from regions split earlier: it may take gigabytes, and each region\n"
                              "split stays split until reboot",
                              probe::kSplitFaultsWanted, probe::kSplitMibMax))
      ->type_name("N")
      ->check(bounded(0, probe::kSplitMibMax, "MiB"))
      ->capture_default_str()
      ->needs(cost);
  sub->footer(
      "Examples:\n"
      "  exmem probe                          report on this machine, measured\n"
      "  exmem probe --json                   the same report as one JSON object\n"
      "  exmem probe --no-measure             the kernel's state only, nothing allocated\n"
      "  exmem probe --fault-pages 1024 --reserve-mib 256\n"
      "  sudo exmem probe --map --out map     this kernel's direct map, page table by page table\n"
      "  sudo exmem probe --cost              measure the costs of a split direct map (asks first)\n"
      "  sudo exmem probe --cost --yes --save costs.json\n"
      "                                       the same without asking, written for exmem sim --costs\n"
      "  sudo exmem probe --cost --yes --runs 3 --cost-mib 32 --json\n"
      "                                       a quicker, smaller run, as JSON\n"
      "\n"
      "The reservation is made by libexmem in a child process, as an application's would be,\n"
      "and is charged to RLIMIT_MEMLOCK unless the process has CAP_IPC_LOCK.\n"
      "The 2 MiB regions are read from /proc/self/pagemap, which shows page frames only to root.");
  sub->footer(std::string(sub->get_footer()) +
              "\n\n--cost places ramfs page-cache pages in frames that memfd_secret pages gave back, in 2 MiB\n"
              "direct-map regions still holding a live secret page (so mapped by 4 KiB leaves), and times\n"
              "the kernel reading them (process_vm_readv) against anonymous pages in regions holding no\n"
              "secret page; it times secret-page faults against anonymous ones with 0, 1 and all other\n"
              "CPUs spinning. The file's format: docs/costs-format.md. Under a hypervisor the guest's\n"
              "2 MiB leaf may be backed by 4 KiB host pages: it says so.");
  sub->callback([opt] { run(*opt); });
}

}  // namespace exmem::cli
