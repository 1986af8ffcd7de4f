// tlb/: per-CPU TLBs (see tlb.hpp for what the folder owns).
// cost.cpp: the access streams, the cost estimate and the slowdown, and the
// probe's pattern through the model.
#include "model/tlb/cost.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <emmintrin.h>
#include <limits>
#include <numeric>

namespace exmem::model::tlb {

std::string_view kernel_page_kind_name(KernelPageKind k) {
  switch (k) {
    case KernelPageKind::PageCache: return "page_cache";
    case KernelPageKind::SlabReclaimable: return "slab_reclaimable";
    case KernelPageKind::Kernel: return "kernel";
    case KernelPageKind::PageTables: return "page_tables";
    case KernelPageKind::User: return "user";
  }
  return "?";
}

AccessStream::AccessStream(const directmap::DirectMap& dmap, const phys::PhysMem& phys,
                           const AccessConfig& config, std::uint64_t seed)
    : dmap_(dmap), phys_(phys), config_(config), rng_(seed) {
  for (const phys::PfnRange& r : phys.ram()) ram_pages_ += r.size();
  if (ram_pages_ == 0) return;
  const std::uint64_t want = std::min<std::uint64_t>(
      std::max<std::uint64_t>(config.hot_set_bytes / kPageSize, 1), ram_pages_);
  hot_.reserve(want);
  for (std::uint64_t i = 0; i < want; ++i) hot_.push_back(any_ram_page());
  if (config.locality == Locality::Zipf) {
    zipf_cdf_.resize(hot_.size());
    double sum = 0;
    for (std::size_t k = 0; k < hot_.size(); ++k) {
      sum += 1.0 / std::pow(static_cast<double>(k + 1), config.zipf_s);
      zipf_cdf_[k] = sum;
    }
    for (double& c : zipf_cdf_) c /= sum;
  }
}

Pfn AccessStream::any_ram_page() {
  std::uniform_int_distribution<std::uint64_t> d(0, ram_pages_ - 1);
  std::uint64_t i = d(rng_);
  for (const phys::PfnRange& r : phys_.ram()) {
    if (i < r.size()) return static_cast<Pfn>(r.start + i);
    i -= r.size();
  }
  return phys_.ram().front().start;
}

Pfn AccessStream::next() {
  if (ram_pages_ == 0) return 0;
  std::uniform_real_distribution<double> u(0.0, 1.0);
  Pfn p = 0;
  for (int attempt = 0; attempt < 8; ++attempt) {  // skip pages absent from the direct map
    if (u(rng_) < config_.hot_fraction) {
      if (config_.locality == Locality::Zipf) {
        const auto it = std::lower_bound(zipf_cdf_.begin(), zipf_cdf_.end(), u(rng_));
        p = hot_[std::min<std::size_t>(static_cast<std::size_t>(it - zipf_cdf_.begin()),
                                       hot_.size() - 1)];
      } else {
        std::uniform_int_distribution<std::size_t> d(0, hot_.size() - 1);
        p = hot_[d(rng_)];
      }
    } else {
      p = any_ram_page();
    }
    if (dmap_.is_present(p)) break;
  }
  return p;
}

namespace {

constexpr std::uint8_t kNoKind = 0xFF;

// The stream's kind of each frame byte (kNoKind: not drawn from).
std::array<std::uint8_t, 256> kind_table() {
  std::array<std::uint8_t, 256> t{};
  t.fill(kNoKind);
  auto set = [&](phys::FrameKind f, KernelPageKind k) {
    t[static_cast<std::uint8_t>(f)] = static_cast<std::uint8_t>(k);
  };
  set(phys::FrameKind::PageCache, KernelPageKind::PageCache);
  set(phys::FrameKind::Reclaimable, KernelPageKind::SlabReclaimable);
  set(phys::FrameKind::Kernel, KernelPageKind::Kernel);
  set(phys::FrameKind::PageTable, KernelPageKind::PageTables);
  set(phys::FrameKind::User, KernelPageKind::User);
  return t;
}

// Calls f(pfn, kind) for every frame of a kind whose weight is above 0, in
// pfn order; stops when f returns false. Sixteen frames at a time (SSE2, part
// of x86-64's baseline): one compare per wanted kind, and a stretch with none
// of those kinds' bytes is skipped whole (most of a large machine is user
// memory or free); a free block of 16 frames or more is stepped over without
// reading it. A 4 TiB machine's 1 G frames take about a second.
template <class F>
void for_each_kernel_page(const phys::PhysMem& phys, const KindWeights& weights, F f) {
  static const std::array<std::uint8_t, 256> table = kind_table();
  __m128i pattern[kKernelPageKinds];
  std::size_t patterns = 0;
  for (unsigned b = 0; b < 256; ++b) {
    if (table[b] != kNoKind && weights.w[table[b]] > 0) {
      pattern[patterns++] = _mm_set1_epi8(static_cast<char>(static_cast<std::uint8_t>(b)));
    }
  }
  if (patterns == 0) return;
  auto wanted = [&](std::uint8_t b) { return table[b] != kNoKind && weights.w[table[b]] > 0; };
  // Bit i: byte i of the 16 at q is of a wanted kind.
  auto wanted_mask = [&](const std::uint8_t* q) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q));
    __m128i m = _mm_cmpeq_epi8(v, pattern[0]);
    for (std::size_t i = 1; i < patterns; ++i) m = _mm_or_si128(m, _mm_cmpeq_epi8(v, pattern[i]));
    return static_cast<unsigned>(_mm_movemask_epi8(m));
  };
  const std::uint8_t* bytes = phys.frame_bytes();
  for (const phys::PfnRange& r : phys.ram()) {
    Pfn p = r.start;
    while (p < r.end) {
      if ((p & 15u) == 0 && p + 16 <= r.end) {
        const std::uint8_t head = bytes[p];
        if (phys::is_free_head(head) && phys::free_head_order(head) >= 4) {  // a free block, skipped whole
          p += Pfn{1} << phys::free_head_order(head);
          continue;
        }
        for (unsigned m = wanted_mask(bytes + p); m != 0; m &= m - 1) {
          const Pfn q = p + static_cast<Pfn>(__builtin_ctz(m));
          if (!f(q, table[bytes[q]])) return;
        }
        p += 16;
        continue;
      }
      const std::uint8_t b = bytes[p];
      if (wanted(b) && !f(p, table[b])) return;
      ++p;
    }
  }
}

// The Zipf cumulative distribution over n ranks.
std::vector<double> zipf_cdf(std::size_t n, double s) {
  std::vector<double> cdf(n);
  double sum = 0;
  for (std::size_t k = 0; k < n; ++k) {
    sum += 1.0 / std::pow(static_cast<double>(k + 1), s);
    cdf[k] = sum;
  }
  for (double& c : cdf) c /= sum;
  return cdf;
}

}  // namespace

KernelStream kernel_stream(const directmap::DirectMap& dmap, const phys::PhysMem& phys, const AccessConfig& config,
                           std::uint64_t seed) {
  KernelStream out;
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  auto fallback = [&](std::string why) {
    AccessStream s(dmap, phys, config, seed);
    out.pfns.reserve(config.accesses);
    for (std::uint64_t i = 0; i < config.accesses; ++i) out.pfns.push_back(s.next());
    out.live = false;
    out.source = std::move(why);
    out.hot_set_pages = s.hot_set().size();
    return out;
  };
  if (phys.ram().empty()) return fallback("all of RAM (no RAM)");
  if (!config.live_kernel_pages) return fallback("all of RAM (asked)");

  // Pass 1: live pages of each kind: the kernel's four counted for the
  // report whatever their weights, user pages only when weighted (they are
  // most of a large machine, and the scan skips what it does not count).
  KindWeights all;
  all.w.fill(1.0);
  all.of(KernelPageKind::User) = config.weights.of(KernelPageKind::User);
  for_each_kernel_page(phys, all, [&](Pfn, std::uint8_t k) {
    ++out.live_pages[k];
    return true;
  });
  std::array<double, kKernelPageKinds> mass{};
  double total = 0;
  for (std::size_t k = 0; k < kKernelPageKinds; ++k) {
    mass[k] = config.weights.w[k] * static_cast<double>(out.live_pages[k]);
    total += mass[k];
  }
  const auto live = out.live_pages;
  if (total <= 0) {
    KernelStream f = fallback("all of RAM: the run has no live kernel pages of the weighted kinds");
    f.live_pages = live;
    return f;
  }
  std::uint64_t weighted_pages = 0;
  for (std::size_t k = 0; k < kKernelPageKinds; ++k) {
    if (config.weights.w[k] > 0) weighted_pages += out.live_pages[k];
  }

  // Which accesses are hot, and how many draws: the hot set, then one per cold access.
  const std::uint64_t hot_n = std::min<std::uint64_t>(
      std::max<std::uint64_t>(config.hot_set_bytes / kPageSize, 1), weighted_pages);
  std::vector<bool> is_hot(config.accesses);
  std::uint64_t cold_n = 0;
  for (std::uint64_t i = 0; i < config.accesses; ++i) {
    is_hot[i] = u(rng) < config.hot_fraction;
    cold_n += is_hot[i] ? 0 : 1;
  }
  const std::uint64_t draws = hot_n + cold_n;
  // Each draw: a kind by mass, then a rank among that kind's pages.
  struct Want {
    std::uint64_t rank;
    std::uint64_t slot;
  };
  std::array<std::vector<Want>, kKernelPageKinds> wants;
  std::discrete_distribution<std::size_t> pick_kind(mass.begin(), mass.end());
  for (std::uint64_t d = 0; d < draws; ++d) {
    const std::size_t k = pick_kind(rng);
    std::uniform_int_distribution<std::uint64_t> r(0, out.live_pages[k] - 1);
    wants[k].push_back({r(rng), d});
  }
  for (auto& w : wants) std::sort(w.begin(), w.end(), [](const Want& a, const Want& b) { return a.rank < b.rank; });
  // Pass 2: the drawn pages, up to the last one wanted.
  std::vector<Pfn> drawn(draws, kNoPfn);
  std::array<std::uint64_t, kKernelPageKinds> seen{};
  std::array<std::size_t, kKernelPageKinds> next{};
  std::uint64_t left = draws;
  for_each_kernel_page(phys, config.weights, [&](Pfn p, std::uint8_t k) {
    const std::uint64_t rank = seen[k]++;
    auto& w = wants[k];
    while (next[k] < w.size() && w[next[k]].rank == rank) {
      drawn[w[next[k]].slot] = p;
      ++next[k];
      --left;
    }
    return left != 0;
  });
  std::vector<Pfn> hot;
  std::vector<Pfn> cold;
  for (std::uint64_t d = 0; d < draws; ++d) {
    const Pfn p = drawn[d];
    if (p == kNoPfn || !dmap.is_present(p)) continue;  // not in the direct map (never, for these kinds)
    (d < hot_n ? hot : cold).push_back(p);
  }
  if (hot.empty()) {
    KernelStream f = fallback("all of RAM: no live kernel page of the weighted kinds is in the direct map");
    f.live_pages = live;
    return f;
  }
  const std::vector<double> cdf = config.locality == Locality::Zipf ? zipf_cdf(hot.size(), config.zipf_s)
                                                                     : std::vector<double>{};
  out.pfns.reserve(config.accesses);
  std::size_t c = 0;
  for (std::uint64_t i = 0; i < config.accesses; ++i) {
    if (!is_hot[i] && c < cold.size()) {
      out.pfns.push_back(cold[c++]);
      continue;
    }
    std::size_t h = 0;
    if (config.locality == Locality::Zipf) {
      h = static_cast<std::size_t>(std::lower_bound(cdf.begin(), cdf.end(), u(rng)) - cdf.begin());
      h = std::min(h, hot.size() - 1);
    } else {
      h = std::uniform_int_distribution<std::size_t>(0, hot.size() - 1)(rng);
    }
    out.pfns.push_back(hot[h]);
  }
  out.live = true;
  out.source = "live kernel pages";
  out.hot_set_pages = hot.size();
  return out;
}

namespace {
// Cycles the page walks of a stretch of accesses cost: their memory references
// at the preset's walk_ref_cycles, plus the lower-level TLB hits' cycles.
double walk_cycles_of(std::uint64_t walk_refs, std::uint64_t lower_hit_cycles, const TlbConfig& tlb) {
  return static_cast<double>(walk_refs) * tlb.walk_ref_cycles + static_cast<double>(lower_hit_cycles);
}
}  // namespace

WalkCount run_stream(const directmap::DirectMap& dmap, const phys::PhysMem& phys, const TlbConfig& tlb,
                     std::span<const Pfn> stream, const SpecConfig& spec, std::uint64_t seed) {
  TlbSystem sys(dmap, phys, tlb, spec, seed);
  sys.set_history(0);
  const unsigned cpus = sys.cpus();
  for (std::size_t i = 0; i < stream.size(); ++i) sys.access(static_cast<CpuId>(i % cpus), stream[i]);
  const TlbStats& s = sys.stats();
  WalkCount w;
  w.accesses = s.accesses;
  w.l1_hits = s.l1_hits;
  w.lower_hits = s.lower_hits;
  w.walks = s.walks;
  w.walk_refs = s.walk_refs;
  w.faults = s.faults;
  w.walk_cycles = walk_cycles_of(s.walk_refs, s.lower_hit_cycles, tlb);
  return w;
}

namespace {
std::vector<directmap::MappedRange> ram_of(const phys::PhysMem& phys) {
  std::vector<directmap::MappedRange> ram;
  for (const phys::PfnRange& r : phys.ram()) ram.push_back({r.start, r.end});
  return ram;
}
}  // namespace

BootDirectMap::BootDirectMap(const directmap::DirectMap& dmap)
    : map(dmap.ram(), dmap.direct_gbpages(), tables, flushes) {}

double shootdown_cost_us(const directmap::FlushCounters& f, unsigned cpus,
                         const ShootdownCosts& c) {
  const double ipi = cpus > 1 ? c.ipi_round_trip_ns : 0.0;
  const double ns = static_cast<double>(f.range_flushes) * ipi +
                    static_cast<double>(f.range_pages) * c.single_page_flush_ns +
                    static_cast<double>(f.full_flushes) * (ipi + c.full_flush_ns) +
                    static_cast<double>(f.local_flushes) * c.single_page_flush_ns;
  return ns / 1000.0;
}

CostReport estimate_cost(const directmap::DirectMap& dmap, const phys::PhysMem& phys,
                         const directmap::FlushCounters& flushes, const TlbConfig& tlb,
                         const AccessConfig& access, std::uint64_t seed,
                         const KernelCostFigures& figures, std::uint64_t events) {
  const KernelStream stream = kernel_stream(dmap, phys, access, seed ^ 0x9E3779B97F4A7C15ull);
  const WalkCount s = run_stream(dmap, phys, tlb, stream.pfns, access.spec, seed);
  const BootDirectMap boot(dmap);
  const WalkCount b = run_stream(boot.map, phys, tlb, stream.pfns, access.spec, seed);
  const unsigned cpus = std::max(1u, phys.cpus());
  CostReport r;
  r.tlb = tlb.name;
  r.accesses = s.accesses;
  r.l1_hits = s.l1_hits;
  r.lower_hits = s.lower_hits;
  r.misses = s.walks;
  r.walk_refs = s.walk_refs;
  r.faults = s.faults;
  r.miss_rate = s.accesses == 0 ? 0.0 : static_cast<double>(s.walks) / static_cast<double>(s.accesses);
  r.walk_cycles = s.walk_cycles;
  const directmap::FlushCounters& f = flushes;
  r.range_flushes = f.range_flushes;
  r.range_pages = f.range_pages;
  r.full_flushes = f.full_flushes;
  r.local_flushes = f.local_flushes;
  r.ipis = (f.range_flushes + f.full_flushes) * (cpus - 1);
  r.shootdown_us = shootdown_cost_us(f, cpus, figures.shootdown);
  const directmap::DirectMapCounters& d = dmap.counters();
  r.leaves_4k = d.leaves_4k;
  r.leaves_2m = d.leaves_2m;
  r.leaves_1g = d.leaves_1g;
  r.stream_live = stream.live;
  r.stream_source = stream.source;
  r.live_pages = stream.live_pages;
  r.hot_set_pages = stream.hot_set_pages;
  r.walks_unsplit = b.walks;
  r.walk_refs_unsplit = b.walk_refs;
  r.walk_cycles_unsplit = b.walk_cycles;
  // The slowdown.
  r.events = events;
  r.accesses_per_event = access.accesses_per_event;
  r.run_accesses = events != 0 ? static_cast<double>(events) * static_cast<double>(access.accesses_per_event)
                               : static_cast<double>(s.accesses);
  r.scale = s.accesses == 0 ? 0.0 : r.run_accesses / static_cast<double>(s.accesses);
  if (figures.walk_ns > 0) {
    r.walk_ns = figures.walk_ns;
  } else {
    // The preset's mean walk on the run's map (a full 4-reference walk when it never walked).
    const double refs_per_walk =
        s.walks != 0 ? static_cast<double>(s.walk_refs) / static_cast<double>(s.walks) : 4.0;
    r.walk_ns = refs_per_walk * tlb.walk_ref_cycles / figures.mhz() * 1000.0;
  }
  r.kernel_access_ns = figures.kernel_access_ns;
  r.extra_walk_ns = (static_cast<double>(s.walks) - static_cast<double>(b.walks)) * r.scale * r.walk_ns;
  r.shootdown_ns = r.shootdown_us * 1000.0;
  r.kernel_ns = r.run_accesses * r.kernel_access_ns + static_cast<double>(b.walks) * r.scale * r.walk_ns;
  r.slowdown_percent = r.kernel_ns > 0 ? (r.extra_walk_ns + r.shootdown_ns) / r.kernel_ns * 100.0 : 0.0;
  r.figures_source = figures.source;
  r.walk_from = figures.walk_from;
  r.kernel_access_from = figures.kernel_access_from;
  return r;
}

std::vector<std::pair<std::string, std::string>> cost_columns(const CostReport& r) {
  return {
      {"TLB miss %", fmt::format("{:.2f}", r.miss_rate * 100.0)},
      {"walks", fmt::format("{}", r.misses)},
      {"walk Mcycles", fmt::format("{:.2f}", r.walk_cycles / 1e6)},
      {"shootdowns", fmt::format("{}", r.range_flushes + r.full_flushes)},
      {"IPIs", fmt::format("{}", r.ipis)},
      {"shootdown us", fmt::format("{:.1f}", r.shootdown_us)},
      {"kernel slowdown %", fmt::format("{:.3f}", r.slowdown_percent)},
  };
}

std::string format_cost(const CostReport& r) {
  return fmt::format(
      "{}: {:.2f}% TLB misses ({} walks, {} walk refs, ~{:.0f} cycles; {} walks unsplit) over {} accesses of {}; "
      "{} range + {} full flushes, {} IPIs, ~{:.1f} us of shootdowns; leaves 4K/2M/1G {}/{}/{}; "
      "kernel slowdown {:.3f}%",
      r.tlb, r.miss_rate * 100.0, r.misses, r.walk_refs, r.walk_cycles, r.walks_unsplit, r.accesses,
      r.stream_source, r.range_flushes, r.full_flushes, r.ipis, r.shootdown_us, r.leaves_4k, r.leaves_2m,
      r.leaves_1g, r.slowdown_percent);
}

namespace {

// Split-table pages for the probe pattern's direct map: frames counted down
// from the top of RAM (the TLB model reads them only as table identities).
class CountingTables final : public directmap::PageTableAllocator {
 public:
  explicit CountingTables(Pfn top) : next_(top) {}
  Result<Pfn> alloc_table_page(CpuId) override { return Result<Pfn>{--next_, 0}; }
  void free_table_page(Pfn, CpuId) override {}

 private:
  Pfn next_;
};

}  // namespace

ProbeCheckResult check_against_probe(const TlbConfig& tlb, std::span<const SweepPoint> sweep, double cpu_mhz,
                                     double walk_ns, std::uint64_t seed) {
  ProbeCheckResult out;
  out.how = cpu_mhz > 0 ? fmt::format("model walk cycles (walk refs x {} cycles + lower-level hits) at {:.0f} MHz",
                                      tlb.walk_ref_cycles, cpu_mhz)
                        : fmt::format("model walks x walk_ns {:.1f} ns (cpu_mhz unknown)", walk_ns);
  if (sweep.empty()) return out;
  // One CPU, 16 GiB, no 1 GiB leaves: the control's pages sit in 2 MiB leaves.
  phys::PhysConfig pc;
  pc.ram_bytes = 16 * GiB;
  pc.cpus = 1;
  pc.reserve_memmap = false;
  const phys::PhysMem phys(pc);
  const std::vector<directmap::MappedRange> ram = ram_of(phys);
  std::mt19937_64 rng(seed);
  std::uint64_t ram_pages = 0;
  for (const auto& r : ram) ram_pages += r.end - r.start;
  auto page_at = [&](std::uint64_t i) {
    for (const auto& r : ram) {
      if (i < r.end - r.start) return static_cast<Pfn>(r.start + i);
      i -= r.end - r.start;
    }
    return ram.front().start;
  };
  for (const SweepPoint& pt : sweep) {
    // N random pages, in distinct 2 MiB regions while there are enough of them.
    std::vector<Pfn> pages;
    std::vector<std::uint64_t> regions;
    std::uniform_int_distribution<std::uint64_t> any(0, ram_pages - 1);
    const bool distinct = pt.pages * 2 <= ram_pages / kPagesPer2M;
    while (pages.size() < pt.pages) {
      const Pfn p = page_at(any(rng));
      if (p < static_cast<Pfn>(MiB >> kPageShift)) continue;  // the ISA range is 4 KiB at boot
      if (distinct) {
        const std::uint64_t reg = p / kPagesPer2M;
        if (std::find(regions.begin(), regions.end(), reg) != regions.end()) continue;
        regions.push_back(reg);
      }
      pages.push_back(p);
    }
    // The pattern: a warm-up pass, then passes in random order, one access per call.
    const std::uint64_t passes = std::max<std::uint64_t>(4, 200'000 / std::max<std::uint64_t>(pt.pages, 1));
    std::vector<Pfn> stream;
    stream.reserve(pages.size() * (passes + 1));
    std::vector<Pfn> order = pages;
    for (std::uint64_t k = 0; k <= passes; ++k) {
      std::shuffle(order.begin(), order.end(), rng);
      stream.insert(stream.end(), order.begin(), order.end());
    }
    auto measure = [&](bool split) {
      CountingTables tables(static_cast<Pfn>(phys.nr_frames()));
      directmap::FlushLog log;
      directmap::DirectMap map(ram, false, tables, log);
      if (split) {
        for (const Pfn p : pages) (void)map.set_memory_4k(p, 1, 0);
      }
      TlbSystem sys(map, phys, tlb, SpecConfig{}, seed);
      sys.set_history(0);
      const std::size_t warm = pages.size();
      for (std::size_t i = 0; i < warm; ++i) sys.access(0, stream[i]);
      const TlbStats before = sys.stats();
      for (std::size_t i = warm; i < stream.size(); ++i) sys.access(0, stream[i]);
      const TlbStats& s = sys.stats();
      const double n = static_cast<double>(s.accesses - before.accesses);
      const double walks = static_cast<double>(s.walks - before.walks) / n;
      const double cycles =
          walk_cycles_of(s.walk_refs - before.walk_refs, s.lower_hit_cycles - before.lower_hit_cycles, tlb) / n;
      return std::pair{walks, cycles};
    };
    const auto [ws, cs] = measure(true);
    const auto [wc, cc] = measure(false);
    ProbeCheck c;
    c.pages = pt.pages;
    c.probe_extra_ns = pt.split_ns - pt.control_ns;
    c.walks_split = ws;
    c.walks_control = wc;
    c.model_extra_ns = cpu_mhz > 0 ? (cs - cc) / cpu_mhz * 1000.0 : (ws - wc) * walk_ns;
    c.ratio = c.probe_extra_ns > 0 ? c.model_extra_ns / c.probe_extra_ns : std::numeric_limits<double>::quiet_NaN();
    out.points.push_back(c);
  }
  return out;
}

}  // namespace exmem::model::tlb
