// tlb/: per-CPU TLBs (see tlb.hpp for what the folder owns).
// tlb.cpp: presets and one CPU's TLB.
#include "model/tlb/tlb.hpp"

#include <stdexcept>

namespace exmem::model::tlb {

std::string_view page_size_name(PageSize s) {
  switch (s) {
    case PageSize::k4K: return "4K";
    case PageSize::k2M: return "2M";
    case PageSize::k1G: return "1G";
  }
  return "?";
}

PageSize page_size_of(directmap::Level level) {
  switch (level) {
    case directmap::Level::Pud1G: return PageSize::k1G;
    case directmap::Level::Pmd2M: return PageSize::k2M;
    default: return PageSize::k4K;
  }
}

namespace {
constexpr std::uint8_t k4K = size_bit(PageSize::k4K);
constexpr std::uint8_t k2M = size_bit(PageSize::k2M);
constexpr std::uint8_t k1G = size_bit(PageSize::k1G);
}  // namespace

// Haswell: L1 DTLB 64 x 4K (4-way), 32 x 2M (4-way), 4 x 1G (4-way); STLB
// 1024 entries, 8-way, shared by 4K and 2M, no 1G; STLB hit ~7 cycles.
TlbConfig TlbConfig::haswell_like() {
  TlbConfig c;
  c.name = "haswell-like";
  c.source =
      "approximation of Intel Haswell (Intel 64 and IA-32 Architectures Optimization "
      "Reference Manual, Haswell microarchitecture: L1 DTLB 64x4K/32x2M/4x1G, STLB 1024 "
      "4K+2M, 8-way)";
  c.levels.push_back(
      LevelConfig{"L1 DTLB",
                  {ArrayConfig{"4K", 16, 4, k4K, false}, ArrayConfig{"2M", 8, 4, k2M, false},
                   ArrayConfig{"1G", 1, 4, k1G, false}},
                  0});
  c.levels.push_back(LevelConfig{"STLB", {ArrayConfig{"4K+2M", 128, 8, k4K | k2M, false}}, 7});
  return c;
}

// Zen 2: L1 DTLB 64 entries, fully associative, all sizes; L2 DTLB 2048
// entries for 4K and 2M, 1G pages held as 2M pieces (associativity assumed 16).
TlbConfig TlbConfig::zen2_like() {
  TlbConfig c;
  c.name = "zen2-like";
  c.source =
      "approximation of AMD Zen 2 (Software Optimization Guide for AMD Family 17h Models "
      "30h and greater: L1 DTLB 64 entries all sizes, L2 DTLB 2048 entries, 1G stored as "
      "2M; L2 associativity assumed 16-way)";
  c.levels.push_back(
      LevelConfig{"L1 DTLB", {ArrayConfig{"all", 1, 64, k4K | k2M | k1G, false}}, 0});
  c.levels.push_back(LevelConfig{"L2 DTLB", {ArrayConfig{"4K+2M", 128, 16, k4K | k2M, true}}, 7});
  return c;
}

// A recent Intel P-core (Golden Cove class): larger L1 arrays and an STLB with
// its own 1G array. Figures rounded; treat as a plausible modern geometry.
TlbConfig TlbConfig::recent_intel_like() {
  TlbConfig c;
  c.name = "recent-intel-like";
  c.source =
      "approximation of a recent Intel P-core, Golden Cove class (Intel Optimization "
      "Reference Manual: L1 DTLB 96x4K/32x2M/8x1G, STLB 2048 4K+2M 16-way plus 1024 1G); "
      "associativities partly assumed";
  c.levels.push_back(
      LevelConfig{"L1 DTLB",
                  {ArrayConfig{"4K", 16, 6, k4K, false}, ArrayConfig{"2M", 8, 4, k2M, false},
                   ArrayConfig{"1G", 1, 8, k1G, false}},
                  0});
  c.levels.push_back(LevelConfig{
      "STLB",
      {ArrayConfig{"4K+2M", 128, 16, k4K | k2M, false}, ArrayConfig{"1G", 128, 8, k1G, false}},
      8});
  return c;
}

std::vector<std::string> TlbConfig::preset_names() { return {"haswell", "zen2", "recent-intel"}; }

TlbConfig TlbConfig::preset(std::string_view name) {
  if (name == "haswell" || name == "haswell-like") return haswell_like();
  if (name == "zen2" || name == "zen2-like") return zen2_like();
  if (name == "recent-intel" || name == "recent-intel-like") return recent_intel_like();
  throw std::invalid_argument("unknown TLB preset '" + std::string(name) +
                              "': expected haswell, zen2 or recent-intel");
}

CpuTlb::CpuTlb(const TlbConfig& config)
    : pde_(1, config.pde_cache_entries == 0 ? 1 : config.pde_cache_entries),
      pdpte_(1, config.pdpte_cache_entries == 0 ? 1 : config.pdpte_cache_entries) {
  for (const LevelConfig& l : config.levels) {
    std::vector<Array> level;
    for (const ArrayConfig& a : l.arrays)
      level.push_back(Array{a, LruTable<Translation>(a.sets, a.ways)});
    arrays_.push_back(std::move(level));
  }
}

std::uint64_t CpuTlb::tag_of(Asid asid, std::uint64_t vpn, PageSize s) {
  return (std::uint64_t{asid} << 42) | (std::uint64_t{static_cast<std::uint8_t>(s)} << 40) |
         (vpn >> shift_of(s));
}

CpuTlb::Hit CpuTlb::lookup(Asid asid, std::uint64_t vpn) {
  for (std::size_t l = 0; l < arrays_.size(); ++l) {
    for (Array& a : arrays_[l]) {
      for (const PageSize s : {PageSize::k4K, PageSize::k2M, PageSize::k1G}) {
        if ((a.config.sizes & size_bit(s)) == 0) continue;
        Translation* t = a.table.find(tag_of(asid, vpn, s), vpn >> shift_of(s));
        if (t == nullptr) continue;
        Hit hit{static_cast<int>(l), *t};
        for (std::size_t up = 0; up < l; ++up) {  // refill the faster levels
          for (Array& ua : arrays_[up]) {
            if ((ua.config.sizes & size_bit(hit.t.size)) != 0) {
              fill_array(ua, hit.t);
              break;
            }
          }
        }
        return hit;
      }
    }
  }
  return {};
}

void CpuTlb::fill_array(Array& a, const Translation& t) {
  a.table.fill(tag_of(t.asid, t.vpn, t.size), t.vpn >> shift_of(t.size), t);
}

void CpuTlb::fill(const Translation& t, std::uint64_t accessed_vpn) {
  for (auto& level : arrays_) {
    for (Array& a : level) {
      if ((a.config.sizes & size_bit(t.size)) != 0) {
        fill_array(a, t);
        break;
      }
      if (t.size == PageSize::k1G && a.config.gb_as_2m &&
          (a.config.sizes & size_bit(PageSize::k2M)) != 0) {
        Translation piece = t;  // the 2M piece of the 1G page that was used
        piece.size = PageSize::k2M;
        piece.vpn = accessed_vpn & ~std::uint64_t{kPagesPer2M - 1};
        piece.pfn = static_cast<Pfn>(t.pfn + (piece.vpn - t.vpn));
        fill_array(a, piece);
        break;
      }
    }
  }
}

std::size_t CpuTlb::invalidate_range(Asid asid, std::uint64_t vpn, std::uint64_t pages) {
  std::size_t n = 0;
  for (auto& level : arrays_) {
    for (Array& a : level) {
      n +=
          a.table.invalidate_if([&](const Translation& t) { return t.overlaps(asid, vpn, pages); });
    }
  }
  pde_.clear();
  pdpte_.clear();
  return n;
}

std::size_t CpuTlb::flush_all() {
  std::size_t n = 0;
  for (auto& level : arrays_) {
    for (Array& a : level) n += a.table.clear();
  }
  pde_.clear();
  pdpte_.clear();
  return n;
}

std::size_t CpuTlb::flush_asid(Asid asid) {
  std::size_t n = 0;
  for (auto& level : arrays_) {
    for (Array& a : level) {
      n += a.table.invalidate_if([&](const Translation& t) { return t.asid == asid; });
    }
  }
  return n;
}

std::size_t CpuTlb::entries() const {
  std::size_t n = 0;
  for (const auto& level : arrays_) {
    for (const Array& a : level) n += a.table.size();
  }
  return n;
}

}  // namespace exmem::model::tlb
