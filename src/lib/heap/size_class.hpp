// Size classes of the small-object heap: 16-byte steps up to 128 bytes, then
// four classes per doubling up to 4 KiB. Each class is carved from 64 KiB slabs;
// the worst internal waste is 25% (e.g. 129 -> 160) and a slab wastes at most
// one object's worth at its end. Owns only the size <-> class mapping.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace exmem::heap {

inline constexpr size_t kSlabShift = 16;
inline constexpr size_t kSlabSize = size_t{1} << kSlabShift;  // 64 KiB: one table entry
inline constexpr size_t kMaxSmall = 4096;
inline constexpr size_t kPage = 4096;

inline constexpr std::array<uint32_t, 28> kClassSize = {
    16,  32,  48,  64,  80,   96,   112,  128,  160,  192,  224,  256,  320,  384,
    448, 512, 640, 768, 896, 1024, 1280, 1536, 1792, 2048, 2560, 3072, 3584, 4096};
inline constexpr size_t kClasses = kClassSize.size();

// class_of[(size + 15) / 16] for size in [1, 4096].
inline constexpr std::array<uint8_t, kMaxSmall / 16 + 1> kClassOf = [] {
  std::array<uint8_t, kMaxSmall / 16 + 1> t{};
  size_t c = 0;
  for (size_t i = 0; i < t.size(); ++i) {
    size_t size = i * 16;
    while (kClassSize[c] < size) ++c;
    t[i] = static_cast<uint8_t>(c);
  }
  return t;
}();

// pre: 1 <= size <= kMaxSmall.
inline size_t class_of(size_t size) { return kClassOf[(size + 15) >> 4]; }

}  // namespace exmem::heap
