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
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <set>
#include <vector>

#include "host/host.hpp"
#include "model/machine.hpp"

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
  md::Machine machine(mc);
  const auto model_before = machine.dmap().counters();

  std::printf("exmem_calibrate: %d rounds of %zu MiB of memfd_secret; model: %s RAM, PCI hole 3-4 GiB, "
              "direct_gbpages %s\n",
              rounds, mib, md::format_size(mc.ram_bytes).c_str(), mc.direct_gbpages ? "on" : "off");
  std::printf("real kernel at start: DirectMap4k %lld kB (%lld regions of 2 MiB already split), level2_splits %lld\n\n",
              start.dm4k, start.dm4k / 2048, start.level2_splits);
  std::printf("%5s %8s %14s %14s %14s %14s %12s\n", "round", "pages", "new 2M regions", "model l2 splits",
              "real l2 splits", "real 4k kB", "difference");

  const exmem::host::Pagemap pm;
  std::vector<Mapping> held;
  std::set<std::uint64_t> regions_seen;
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
  for (const Mapping& m : held) {
    munmap(m.addr, m.len);
    close(m.fd);
  }
  return explained ? 0 : 1;
}
