// exmem_calibrate: the model's `upstream` prediction against the real kernel.
//
// In rounds, faults in N MiB of real memfd_secret memory, reads the physical
// frame of every page from /proc/self/pagemap (root), and reads the real
// /proc/vmstat direct_map_level2/3_splits and /proc/meminfo DirectMap4k
// deltas. The same frames are then removed from the direct map of a model
// machine laid out like this one (RAM size from /proc/meminfo's DirectMap
// total, the PCI hole at 3-4 GiB, 1 GiB leaves only if this kernel has any),
// with set_direct_map_invalid_noflush() as secretmem_fault() does, and the
// model's split counters give its prediction. The model keeps its state
// across rounds, as the kernel does: a region split in an earlier round costs
// nothing the second time in both.
//
// What the model cannot know: which 2 MiB regions the real kernel had split
// before the first round (DirectMap4k at start says how many, not which).
// Pages landing there cost the real kernel nothing and the model one split,
// so the model's count is an upper bound, and the difference is the number of
// touched regions that were already split. The program prints both and checks
// that the difference is explained: it must not exceed the regions split at
// the start plus those split by other activity during the run.
//
// Exact, where the kernel lets the real direct map be read
// (host::read_kernel_map(): root, /proc/kcore, kallsyms addresses shown, no
// lockdown=confidentiality): the map is read before the first round and after
// the last (the pages still held), the model's map starts from the real
// before-map (every region split there split in the model first,
// workload::start_from_snapshot()), and its map after the rounds is compared
// with the real after-map region by region (workload::compare_with_snapshot():
// regions split in both, only in the model, only in the kernel). That
// comparison then decides the exit status; otherwise the program says why the
// map could not be read and the counters' comparison decides as before.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "host/host.hpp"
#include "model/machine.hpp"
#include "model/workload/trace_calibration.hpp"

namespace {

namespace md = exmem::model;

// The real kernel's counters, 0 for a field it does not show.
struct Counters {
  long long dm4k = 0, dm2m = 0, dm1g = 0, level2_splits = 0, level3_splits = 0;
  bool has_1g = false;
};

Counters read_counters() {
  const exmem::host::DirectMapCounters d = exmem::host::read_direct_map();
  const auto v = [](const std::optional<std::uint64_t>& x) { return static_cast<long long>(x.value_or(0)); };
  return {v(d.dm4k_kb), v(d.dm2m_kb), v(d.dm1g_kb), v(d.level2_splits), v(d.level3_splits), d.dm1g_kb.has_value()};
}

// The real direct map as the model's comparison takes it (host::MapCoverage
// and model::Coverage share their values).
exmem::model::workload::DirectMapSnapshot snapshot_of(const exmem::host::KernelDirectMap& m) {
  exmem::model::workload::DirectMapSnapshot s;
  for (const exmem::host::MapCoverage c : m.regions) s.regions.push_back(static_cast<std::uint8_t>(c));
  return s;
}

struct Mapping {
  void* addr;
  size_t len;
  int fd;
};

}  // namespace

int main(int argc, char** argv) {
  size_t mib = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 64;
  int rounds = argc > 2 ? std::atoi(argv[2]) : 3;
  if (mib == 0 || mib > 4096 || rounds < 1 || rounds > 20) {
    std::fprintf(stderr, "usage: exmem_calibrate [MiB per round, 1..4096 (64)] [rounds, 1..20 (3)]\n");
    return 2;
  }
  if (geteuid() != 0) {
    std::fprintf(stderr, "exmem_calibrate: needs root, to read physical frame numbers from /proc/self/pagemap\n");
    return 2;
  }
  auto start = read_counters();
  long long total_kb = start.dm4k + start.dm2m + start.dm1g;
  md::MachineConfig mc;
  mc.ram_bytes = static_cast<std::uint64_t>(total_kb) * 1024 / (2 * md::MiB) * (2 * md::MiB);
  mc.direct_gbpages = start.has_1g && start.dm1g > 0;
  mc.cpus = static_cast<unsigned>(sysconf(_SC_NPROCESSORS_ONLN));
  namespace wl = md::workload;
  const exmem::host::KernelMapResult real_before = exmem::host::read_kernel_map();
  std::optional<wl::DirectMapSnapshot> map_before;
  if (real_before.map) {
    // Laid out from the map itself: its mapped regions, 1 GiB leaves if it has any.
    map_before = snapshot_of(*real_before.map);
    const auto hole = static_cast<std::uint8_t>(exmem::host::MapCoverage::NotMapped);
    const auto leaf1g = static_cast<std::uint8_t>(exmem::host::MapCoverage::Leaf1G);
    mc.ram_bytes = std::max<std::uint64_t>(md::GiB, (map_before->regions.size() - map_before->regions_of(hole)) * 2 * md::MiB);
    mc.direct_gbpages = map_before->regions_of(leaf1g) > 0;
  }
  md::Machine machine(mc);
  wl::RegionComparison exact;
  if (map_before) wl::start_from_snapshot(machine.dmap(), *map_before, exact);
  const auto model_before = machine.dmap().counters();

  std::printf("exmem_calibrate: %d rounds of %zu MiB of memfd_secret; model: %s RAM, PCI hole 3-4 GiB, "
              "direct_gbpages %s\n",
              rounds, mib, md::format_size(mc.ram_bytes).c_str(), mc.direct_gbpages ? "on" : "off");
  std::printf("real kernel at start: DirectMap4k %lld kB (%lld regions of 2 MiB already split), level2_splits %lld\n\n",
              start.dm4k, start.dm4k / 2048, start.level2_splits);
  if (map_before) {
    std::printf("real direct map read through /proc/kcore: the model starts from it (%llu regions split to 4 KiB "
                "and %llu GiBs to 2 MiB leaves to match it)\n\n",
                static_cast<unsigned long long>(exact.presplit_2m), static_cast<unsigned long long>(exact.presplit_1g));
  } else {
    std::printf("the real direct map cannot be read (%s: %s; %s): the counters only\n\n",
                std::string(exmem::host::refusal_name(real_before.refusal)).c_str(), real_before.why.c_str(),
                real_before.would_allow.c_str());
  }
  std::printf("%5s %8s %14s %14s %14s %14s %12s\n", "round", "pages", "new 2M regions", "model l2 splits",
              "real l2 splits", "real 4k kB", "difference");

  const exmem::host::Pagemap pm;
  std::vector<Mapping> held;
  std::set<std::uint64_t> regions_seen;
  std::vector<std::uint64_t> all_pfns;
  long long sum_model = 0, sum_real = 0, outside = 0;
  for (int r = 1; r <= rounds; ++r) {
    size_t len = mib << 20;
    auto before = read_counters();
    int fd = exmem::host::memfd_secret(0);
    if (fd < 0 || ftruncate(fd, static_cast<off_t>(len)) != 0) {
      std::fprintf(stderr, "memfd_secret: %s\n", std::strerror(errno));
      return 1;
    }
    auto* p = static_cast<char*>(mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
    if (p == MAP_FAILED) {
      std::fprintf(stderr, "mmap of %zu bytes: %s (RLIMIT_MEMLOCK?)\n", len, std::strerror(errno));
      return 1;
    }
    for (size_t off = 0; off < len; off += 4096) p[off] = 1;  // secretmem_fault() for every page
    auto after = read_counters();
    held.push_back({p, len, fd});

    const std::vector<std::uint64_t> pfns = exmem::host::frames_of(pm, reinterpret_cast<uintptr_t>(p), len / 4096).pfns;
    const auto m0 = machine.dmap().counters();
    size_t new_regions = 0;
    all_pfns.insert(all_pfns.end(), pfns.begin(), pfns.end());
    for (std::uint64_t pfn : pfns) {
      if (regions_seen.insert(pfn >> 9).second) ++new_regions;
      if (machine.dmap().set_direct_map_invalid_noflush(static_cast<md::Pfn>(pfn), 0) != 0) ++outside;
    }
    const auto m1 = machine.dmap().counters();
    long long model_l2 = static_cast<long long>(m1.level2_splits - m0.level2_splits);
    long long real_l2 = after.level2_splits - before.level2_splits;
    sum_model += model_l2;
    sum_real += real_l2;
    std::printf("%5d %8zu %14zu %14lld %14lld %14lld %12lld\n", r, pfns.size(), new_regions, model_l2, real_l2,
                after.dm4k - before.dm4k, model_l2 - real_l2);
  }
  auto end = read_counters();
  long long other = (end.level2_splits - start.level2_splits) - sum_real;
  std::printf("\ntotal: model %lld level-2 splits, real %lld; level-3: model %llu, real %lld\n", sum_model, sum_real,
              static_cast<unsigned long long>(machine.dmap().counters().level3_splits - model_before.level3_splits),
              end.level3_splits - start.level3_splits);
  if (outside) std::printf("%lld pages fell outside the model's RAM and were skipped\n", outside);
  long long pre_split = start.dm4k / 2048;
  bool explained = sum_model >= sum_real && sum_model - sum_real <= pre_split + other;
  std::printf("the model predicts %lld more; the real kernel had %lld regions split before the first round "
              "(%lld more split by other activity meanwhile): %s\n",
              sum_model - sum_real, pre_split, other,
              explained ? "the difference is within the regions already split (consistent)"
                        : "NOT explained by regions split earlier");
  bool exact_ok = false;
  if (map_before) {
    // The real map while the pages are still held, against the model's.
    const exmem::host::KernelMapResult real_after = exmem::host::read_kernel_map();
    if (real_after.map) {
      wl::compare_with_snapshot(machine, *map_before, snapshot_of(*real_after.map), all_pfns, exact);
      std::printf("\nexact, region by region, of %llu regions mapped in both (the model started from the real map):\n",
                  static_cast<unsigned long long>(exact.regions));
      std::printf("  %-34s %8s %12s %13s\n", "", "both", "model only", "kernel only");
      std::printf("  %-34s %8llu %12llu %13llu\n", "regions split to 4 KiB",
                  static_cast<unsigned long long>(exact.split_both), static_cast<unsigned long long>(exact.split_model_only),
                  static_cast<unsigned long long>(exact.split_kernel_only));
      std::printf("  %-34s %8llu %12llu %13llu\n", "regions inside a 1 GiB leaf",
                  static_cast<unsigned long long>(exact.leaf1g_both), static_cast<unsigned long long>(exact.leaf1g_model_only),
                  static_cast<unsigned long long>(exact.leaf1g_kernel_only));
      std::printf("  the real kernel split %llu regions during the run, %llu of them holding one of these pages; "
                  "%llu regions split only in the kernel hold one (0 expected)\n",
                  static_cast<unsigned long long>(exact.kernel_new_splits),
                  static_cast<unsigned long long>(exact.kernel_new_with_secret),
                  static_cast<unsigned long long>(exact.kernel_only_with_secret));
      if (exact.mapped_model_only + exact.mapped_kernel_only > 0) {
        std::printf("  layout: %llu regions mapped only in the model, %llu only in the kernel (not compared)\n",
                    static_cast<unsigned long long>(exact.mapped_model_only),
                    static_cast<unsigned long long>(exact.mapped_kernel_only));
      }
      for (const std::uint64_t r : exact.first_model_only) {
        std::printf("  split only in the model: region %llu (%#llx)\n", static_cast<unsigned long long>(r),
                    static_cast<unsigned long long>(r << 21));
      }
      exact_ok = exact.explained;
      std::printf("%s\n", exact.explained ? "the model's map agrees with the kernel's wherever these pages decide (exact)"
                                          : "NOT explained: the maps disagree where these pages decide");
    } else {
      std::printf("\nthe real direct map could not be read after the rounds (%s): the counters only\n",
                  real_after.why.c_str());
      map_before.reset();
    }
  }
  for (const Mapping& m : held) {
    munmap(m.addr, m.len);
    close(m.fd);
  }
  return (map_before ? exact_ok : explained) ? 0 : 1;
}
