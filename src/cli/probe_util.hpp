// Pure helpers of `exmem probe`: parsing of /proc and /sys text, option values
// and small statistics. No system calls here, so the tests can feed them text.
#pragma once

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace exmem::cli::probe_util {

using KeyValues = std::map<std::string, std::uint64_t, std::less<>>;

inline bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

inline std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

// Lines of the form "Key: 123 kB" (/proc/meminfo, /proc/self/status) or
// "key 123" (/proc/vmstat) into key -> number. Lines without a number are left out.
inline KeyValues parse_key_values(std::string_view text) {
  KeyValues out;
  while (!text.empty()) {
    const std::size_t eol = text.find('\n');
    std::string_view line = text.substr(0, eol);
    text = eol == std::string_view::npos ? std::string_view{} : text.substr(eol + 1);
    line = trim(line);
    std::size_t k = 0;
    while (k < line.size() && line[k] != ':' && !is_space(line[k])) ++k;
    if (k == 0 || k == line.size()) continue;
    const std::string_view key = line.substr(0, k);
    std::string_view rest = line.substr(k);
    if (!rest.empty() && rest.front() == ':') rest.remove_prefix(1);
    rest = trim(rest);
    std::uint64_t value = 0;
    const auto [ptr, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), value);
    if (ec != std::errc{} || ptr == rest.data()) continue;
    out.insert_or_assign(std::string(key), value);
  }
  return out;
}

inline std::optional<std::uint64_t> lookup(const KeyValues& kv, std::string_view key) {
  const auto it = kv.find(key);
  if (it == kv.end()) return std::nullopt;
  return it->second;
}

// The hexadecimal value of a "Name:\t000001ffffffffff" line of /proc/self/status.
inline std::optional<std::uint64_t> parse_status_hex(std::string_view status, std::string_view name) {
  std::size_t pos = 0;
  while (pos < status.size()) {
    const std::size_t eol = status.find('\n', pos);
    const std::string_view line =
        status.substr(pos, eol == std::string_view::npos ? std::string_view::npos : eol - pos);
    pos = eol == std::string_view::npos ? status.size() : eol + 1;
    if (line.size() > name.size() && line.substr(0, name.size()) == name && line[name.size()] == ':') {
      const std::string_view v = trim(line.substr(name.size() + 1));
      std::uint64_t value = 0;
      const auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), value, 16);
      if (ec != std::errc{} || ptr != v.data() + v.size() || v.empty()) return std::nullopt;
      return value;
    }
  }
  return std::nullopt;
}

inline bool has_cap(std::uint64_t mask, unsigned bit) { return bit < 64 && ((mask >> bit) & 1U) != 0; }

// The value of `name=value` on a kernel command line (last occurrence wins, as for
// the kernel's own parameters). Arguments after a lone "--" belong to init and are
// ignored. A bare `name` yields an empty string.
inline std::optional<std::string> cmdline_param(std::string_view cmdline, std::string_view name) {
  std::optional<std::string> found;
  std::size_t pos = 0;
  while (pos < cmdline.size()) {
    while (pos < cmdline.size() && is_space(cmdline[pos])) ++pos;
    std::size_t end = pos;
    while (end < cmdline.size() && !is_space(cmdline[end])) ++end;
    const std::string_view tok = cmdline.substr(pos, end - pos);
    pos = end;
    if (tok.empty()) continue;
    if (tok == "--") break;
    if (tok == name) {
      found = std::string{};
    } else if (tok.size() > name.size() && tok.substr(0, name.size()) == name && tok[name.size()] == '=') {
      found = std::string(tok.substr(name.size() + 1));
    }
  }
  return found;
}

// How the kernel reads a boolean module parameter (kstrtobool): false for these.
inline bool kernel_bool_false(std::string_view v) {
  if (v.empty()) return false;
  const char c = v.front();
  if (c == '0' || c == 'n' || c == 'N' || c == 'f' || c == 'F') return true;
  if (v.size() >= 2 && (c == 'o' || c == 'O') && (v[1] == 'f' || v[1] == 'F')) return true;
  return false;
}

// Whether a whitespace-separated list (e.g. /sys/power/state) holds `word`.
inline bool lists_word(std::string_view text, std::string_view word) {
  std::size_t pos = 0;
  while (pos < text.size()) {
    while (pos < text.size() && is_space(text[pos])) ++pos;
    std::size_t end = pos;
    while (end < text.size() && !is_space(text[end])) ++end;
    if (end > pos && text.substr(pos, end - pos) == word) return true;
    pos = end;
  }
  return false;
}

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

// /proc/PID/pagemap entries: bits 0-54 the page frame number, bit 63 present.
inline constexpr std::uint64_t kPagemapPfnMask = (std::uint64_t{1} << 55) - 1;
inline bool pagemap_present(std::uint64_t entry) { return (entry >> 63) != 0; }
inline std::uint64_t pagemap_pfn(std::uint64_t entry) { return entry & kPagemapPfnMask; }

// Number of distinct naturally aligned regions of 2^shift frames holding the frames.
inline std::size_t distinct_regions(std::vector<std::uint64_t> pfns, unsigned shift) {
  for (auto& p : pfns) p >>= shift;
  std::sort(pfns.begin(), pfns.end());
  return static_cast<std::size_t>(std::unique(pfns.begin(), pfns.end()) - pfns.begin());
}

// Kernel release "6.18.44-foo" -> {6, 18}; {0, 0} when unreadable.
inline std::pair<unsigned, unsigned> kernel_major_minor(std::string_view release) {
  unsigned major = 0;
  unsigned minor = 0;
  const char* b = release.data();
  const char* e = release.data() + release.size();
  auto r1 = std::from_chars(b, e, major);
  if (r1.ec != std::errc{} || r1.ptr == e || *r1.ptr != '.') return {0, 0};
  auto r2 = std::from_chars(r1.ptr + 1, e, minor);
  if (r2.ec != std::errc{}) return {0, 0};
  return {major, minor};
}

}  // namespace exmem::cli::probe_util
