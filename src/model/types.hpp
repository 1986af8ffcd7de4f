// The kernel model, root folder (see machine.hpp for what the folder owns).
// types.hpp: the vocabulary every part shares (pfn, order, sizes,
// negative-errno results).
#pragma once

#include <cerrno>
#include <cstdint>
#include <string>
#include <string_view>

namespace exmem::model {

// A page frame number. 32 bits cover 16 TiB of physical address space.
using Pfn = std::uint32_t;
inline constexpr Pfn kNoPfn = 0xFFFFFFFFu;
using CpuId = std::uint32_t;

inline constexpr unsigned kPageShift = 12;
inline constexpr std::uint64_t kPageSize = std::uint64_t{1} << kPageShift;
inline constexpr unsigned kMaxPageOrder = 10;  // MAX_PAGE_ORDER
inline constexpr unsigned kNrPageOrders = kMaxPageOrder + 1;  // NR_PAGE_ORDERS
inline constexpr unsigned kPageblockOrder = 9;  // pageblock_order on x86-64
inline constexpr Pfn kPageblockNrPages = Pfn{1} << kPageblockOrder;
inline constexpr unsigned kPageAllocCostlyOrder = 3;  // PAGE_ALLOC_COSTLY_ORDER
inline constexpr unsigned kHpagePmdOrder = 9;  // HPAGE_PMD_ORDER
inline constexpr unsigned kPtrsPerTable = 512;  // PTRS_PER_PTE / PTRS_PER_PMD
inline constexpr Pfn kPagesPer2M = 512;
inline constexpr Pfn kPagesPer1G = 512 * 512;

inline constexpr std::uint64_t KiB = 1024;
inline constexpr std::uint64_t MiB = 1024 * KiB;
inline constexpr std::uint64_t GiB = 1024 * MiB;
inline constexpr std::uint64_t TiB = 1024 * GiB;

inline constexpr Pfn bytes_to_pfn(std::uint64_t bytes) {
  return static_cast<Pfn>(bytes >> kPageShift);
}
inline constexpr std::uint64_t pfn_to_bytes(std::uint64_t pfn) { return pfn << kPageShift; }

// A value or a negative errno, as the kernel returns them (0 = success).
template <class T>
struct Result {
  T value{};
  int err = 0;
  [[nodiscard]] bool ok() const { return err == 0; }
  static Result error(int e) { return Result{T{}, e}; }
};

// "ENOMEM" for -ENOMEM or ENOMEM; "OK" for 0.
std::string errno_name(int err);

// Parses a size such as "64GiB", "1TiB", "512MiB", "4096" (bytes) or "2G".
// Returns false (and leaves out untouched) when the text is not such a size.
bool parse_size(std::string_view text, std::uint64_t& out);
// "64 GiB", "1.5 TiB", "4 KiB" ...
std::string format_size(std::uint64_t bytes);

}  // namespace exmem::model
