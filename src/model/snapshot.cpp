// snapshot.cpp: region maps of a machine (see snapshot.hpp).
#include "model/snapshot.hpp"

#include <algorithm>

#include "model/machine.hpp"
#include "model/phys/frame.hpp"

namespace exmem::model {

namespace {

using phys::FrameKind;

constexpr std::array<Content, 256> make_content_table() {
  std::array<Content, 256> t{};
  for (unsigned b = 0; b < 256; ++b) {
    const auto byte = static_cast<std::uint8_t>(b);
    if (phys::is_free_head(byte)) {
      t[b] = Content::Free;
      continue;
    }
    switch (static_cast<FrameKind>(byte)) {
      case FrameKind::FreeTail:
      case FrameKind::Pcp:
        t[b] = Content::Free;
        break;
      case FrameKind::Reserved:
        t[b] = Content::Reserved;
        break;
      case FrameKind::Hole:
        t[b] = Content::NoRam;
        break;
      case FrameKind::Kernel:
      case FrameKind::Reclaimable:
        t[b] = Content::Kernel;
        break;
      case FrameKind::User:
      case FrameKind::PageCache:  // user memory too: the page cache processes read
        t[b] = Content::User;
        break;
      case FrameKind::PageTable:
        t[b] = Content::PageTable;
        break;
      case FrameKind::Secret:
      case FrameKind::Unmapped:
        t[b] = Content::Secret;
        break;
      default:
        t[b] = Content::Other;
        break;
    }
  }
  return t;
}

constexpr std::array<Content, 256> kContentOf = make_content_table();

using Counts = std::array<std::uint32_t, kNumContents>;

constexpr unsigned idx(Content k) { return static_cast<unsigned>(k); }

// Frame bytes of [start, end) into counts per class. Most regions hold one
// kind throughout (a THP, the tail of a free block): those are recognised by
// one branch-free pass that the compiler vectorises.
void count_frames(const phys::PhysMem& pm, Pfn start, Pfn end, Counts& counts) {
  const std::uint8_t first = pm.frame_byte(start);
  unsigned diff = 0;
  for (Pfn p = start; p < end; ++p) diff |= static_cast<unsigned>(pm.frame_byte(p) ^ first);
  if (diff == 0) {
    counts[idx(kContentOf[first])] += end - start;
    return;
  }
  for (Pfn p = start; p < end; ++p) ++counts[idx(kContentOf[pm.frame_byte(p)])];
}

// The class a region shows: Secret, then PageTable, then the largest.
Content dominant(const Counts& c) {
  if (c[idx(Content::Secret)] != 0) return Content::Secret;
  if (c[idx(Content::PageTable)] != 0) return Content::PageTable;
  Content best = Content::NoRam;
  std::uint32_t most = 0;
  for (const Content k : {Content::Free, Content::Kernel, Content::User, Content::Reserved,
                          Content::Other}) {
    if (c[idx(k)] > most) {
      most = c[idx(k)];
      best = k;
    }
  }
  return best;
}

}  // namespace

std::string_view coverage_name(Coverage c) {
  switch (c) {
    case Coverage::Hole: return "hole";
    case Coverage::Leaf1G: return "1G";
    case Coverage::Leaf2M: return "2M";
    case Coverage::Split4K: return "4K";
  }
  return "?";
}

std::string_view content_name(Content k) {
  switch (k) {
    case Content::Free: return "free";
    case Content::Secret: return "secret";
    case Content::PageTable: return "page_table";
    case Content::Kernel: return "kernel";
    case Content::User: return "user";
    case Content::Reserved: return "reserved";
    case Content::Other: return "other";
    case Content::NoRam: return "no_ram";
  }
  return "?";
}

Content content_of_frame(std::uint8_t frame_byte) { return kContentOf[frame_byte]; }

RegionMap region_map(const Machine& machine) {
  using directmap::Level;
  const phys::PhysMem& pm = machine.phys();
  const directmap::DirectMap& dm = machine.dmap();
  RegionMap out;
  out.nr_frames = pm.nr_frames();
  const std::size_t nregions = (std::size_t{out.nr_frames} + kRegionPages - 1) / kRegionPages;
  out.regions.resize(nregions);
  out.not_present.assign(nregions, 0);

  for (std::size_t r = 0; r < nregions; ++r) {
    const auto start = static_cast<Pfn>(r * kRegionPages);
    const Pfn end = std::min<Pfn>(start + kRegionPages, out.nr_frames);
    Counts counts{};
    Coverage coverage = Coverage::Hole;
    std::uint32_t not_present = 0;
    const directmap::Lookup leaf = dm.lookup(start);
    if (leaf.level == Level::Pud1G || leaf.level == Level::Pmd2M) {
      // One leaf covers the whole region: one presence for every page.
      coverage = leaf.level == Level::Pud1G ? Coverage::Leaf1G : Coverage::Leaf2M;
      count_frames(pm, start, end, counts);
      if (!leaf.present()) {
        not_present = end - start - counts[idx(Content::NoRam)];
        // Allocated pages the direct map does not show are unmapped pages,
        // whatever their kind (a pool's 2 MiB chunk handed out whole).
        for (const Content k : {Content::Kernel, Content::User, Content::Reserved,
                                Content::Other, Content::PageTable}) {
          counts[idx(Content::Secret)] += counts[idx(k)];
          counts[idx(k)] = 0;
        }
      }
    } else {
      // Split to 4 KiB, or no entry: look at every page.
      bool any_pte = false;
      for (Pfn p = start; p < end; ++p) {
        const directmap::Lookup l = p == start ? leaf : dm.lookup(p);
        Content k = kContentOf[pm.frame_byte(p)];
        if (l.level != Level::None) {
          any_pte = true;
          if (!l.present()) {
            ++not_present;
            if (k != Content::Free && k != Content::NoRam) k = Content::Secret;
          }
        }
        ++counts[idx(k)];
      }
      coverage = any_pte ? Coverage::Split4K : Coverage::Hole;
    }
    out.regions[r] = region_code(coverage, dominant(counts), not_present != 0);
    out.not_present[r] = static_cast<std::uint16_t>(not_present);
    out.not_present_pages += not_present;
    ++out.regions_by_coverage[static_cast<unsigned>(coverage)];
    for (unsigned k = 0; k < kNumContents; ++k) out.pages[k] += counts[k];
  }
  return out;
}

std::vector<std::uint8_t> merge_regions(std::span<const std::uint8_t> codes, std::size_t per_cell) {
  if (per_cell <= 1) return {codes.begin(), codes.end()};
  std::vector<std::uint8_t> out;
  out.reserve((codes.size() + per_cell - 1) / per_cell);
  for (std::size_t i = 0; i < codes.size(); i += per_cell) {
    const std::size_t end = std::min(codes.size(), i + per_cell);
    unsigned coverage = 0;
    bool not_present = false;
    Counts votes{};
    for (std::size_t j = i; j < end; ++j) {
      coverage = std::max(coverage, static_cast<unsigned>(region_coverage(codes[j])));
      not_present = not_present || region_not_present(codes[j]);
      ++votes[idx(region_content(codes[j]))];
    }
    out.push_back(region_code(static_cast<Coverage>(coverage), dominant(votes), not_present));
  }
  return out;
}

}  // namespace exmem::model
