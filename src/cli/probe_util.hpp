// Pure helpers of `exmem probe`: option values and small statistics. No system
// calls here, so the tests can feed them values. Parsing of the kernel's text is
// host/'s (host/proc_text.hpp).
#pragma once

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <system_error>
#include <vector>

namespace exmem::cli::probe_util {

// A decimal whole number within [lo, hi], digits only (no sign, no spaces, no
// hexadecimal, no exponent). nullopt otherwise.
inline std::optional<std::uint64_t> parse_bounded(std::string_view s, std::uint64_t lo, std::uint64_t hi) {
  if (s.empty() || s.size() > 19) return std::nullopt;
  if (!std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) return std::nullopt;
  std::uint64_t v = 0;
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || ptr != s.data() + s.size()) return std::nullopt;
  if (v < lo || v > hi) return std::nullopt;
  return v;
}

// Nearest-rank percentile (p in [0, 1]) of an already sorted sample.
template <typename T>
T percentile_sorted(const std::vector<T>& sorted, double p) {
  if (sorted.empty()) return T{};
  const double rank = std::ceil(p * static_cast<double>(sorted.size()));
  std::size_t idx = rank <= 1.0 ? 0 : static_cast<std::size_t>(rank) - 1;
  if (idx >= sorted.size()) idx = sorted.size() - 1;
  return sorted[idx];
}

// The median of an unsorted sample (nearest rank); 0 for an empty one.
inline double median_of(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  return percentile_sorted(v, 0.5);
}

}  // namespace exmem::cli::probe_util
