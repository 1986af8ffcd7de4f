// The kernel model, root folder (see machine.hpp for what the folder owns).
// snapshot.hpp: a picture of a machine at one moment, one entry per 2 MiB
// region of the physical address space: how the direct map covers the region
// (no RAM, a 1 GiB leaf, a 2 MiB leaf, or split to 4 KiB pages) and what the
// region holds (secret or otherwise unmapped pages, direct-map page tables,
// free pages, kernel, user or reserved memory). It only reads the machine.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "model/types.hpp"

namespace exmem::model {

class Machine;

inline constexpr Pfn kRegionPages = kPagesPer2M;  // one region: 2 MiB

// How the direct map covers a region. Ordered from best to worst, so the worst
// coverage of several regions is the largest value.
enum class Coverage : std::uint8_t {
  Hole = 0,     // no direct-map entry: no RAM (e820 hole, PCI hole)
  Leaf1G = 1,   // inside a 1 GiB leaf
  Leaf2M = 2,   // one 2 MiB leaf
  Split4K = 3,  // a PTE table of 4 KiB entries
};
inline constexpr unsigned kNumCoverages = 4;

// What a region holds.
enum class Content : std::uint8_t {
  Free = 0,       // FreeHead, FreeTail, Pcp
  Secret = 1,     // Secret and Unmapped frames, and any allocated page not present in the direct map
  PageTable = 2,  // page-table pages of the direct map
  Kernel = 3,     // Kernel, Reclaimable
  User = 4,       // User
  Reserved = 5,   // memblock reservations
  Other = 6,      // any other allocated kind (CMA allocations, kinds this file does not know)
  NoRam = 7,      // Hole frames
};
inline constexpr unsigned kNumContents = 8;

// One byte per region:
//   bits 0-1  Coverage
//   bits 2-4  Content: Secret when the region holds any secret or unmapped page,
//             else PageTable when it holds any direct-map page table, else the
//             class with the most pages (NoRam only when it holds no RAM)
//   bit 5     some page of the region is not present in the direct map
inline constexpr std::uint8_t kRegionNotPresent = 0x20;

constexpr std::uint8_t region_code(Coverage c, Content k, bool not_present) {
  return static_cast<std::uint8_t>(static_cast<unsigned>(c) | (static_cast<unsigned>(k) << 2) |
                                   (not_present ? kRegionNotPresent : 0u));
}
constexpr Coverage region_coverage(std::uint8_t code) { return static_cast<Coverage>(code & 3u); }
constexpr Content region_content(std::uint8_t code) { return static_cast<Content>((code >> 2) & 7u); }
constexpr bool region_not_present(std::uint8_t code) { return (code & kRegionNotPresent) != 0; }

// "hole", "1G", "2M", "4K"
std::string_view coverage_name(Coverage c);
// "free", "secret", "page_table", "kernel", "user", "reserved", "other", "no_ram"
std::string_view content_name(Content k);
// The content class of one frame byte (PhysMem::frame_byte()), by kind alone.
Content content_of_frame(std::uint8_t frame_byte);

struct RegionMap {
  Pfn nr_frames = 0;                     // frames of the physical address space
  std::vector<std::uint8_t> regions;     // one code per 2 MiB region (the last may be partial)
  std::vector<std::uint16_t> not_present;  // per region: 4 KiB pages not present in the direct map
  // Over the whole machine:
  std::array<std::uint64_t, kNumContents> pages{};           // pages per Content
  std::array<std::uint64_t, kNumCoverages> regions_by_coverage{};  // regions per Coverage
  std::uint64_t not_present_pages = 0;   // RAM pages not present in the direct map

  [[nodiscard]] std::size_t size() const { return regions.size(); }
  [[nodiscard]] std::uint64_t pages_of(Content k) const { return pages[static_cast<unsigned>(k)]; }
  [[nodiscard]] std::uint64_t regions_of(Coverage c) const {
    return regions_by_coverage[static_cast<unsigned>(c)];
  }
};

// Snapshots the machine: one lookup_address() per leaf, and per page only in
// regions split to 4 KiB; the frame bytes are read once each.
RegionMap region_map(const Machine& machine);

// Merges `per_cell` consecutive region codes into one (the last cell may take
// fewer): the worst coverage; content Secret if any region has it, else
// PageTable if any has it, else the most frequent content among the regions
// that hold RAM (ties to the lower class); the not-present bit if any has it.
std::vector<std::uint8_t> merge_regions(std::span<const std::uint8_t> codes, std::size_t per_cell);

}  // namespace exmem::model
