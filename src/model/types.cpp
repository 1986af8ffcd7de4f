// The kernel model, root folder: shared vocabulary (see types.hpp).
#include "model/types.hpp"

#include <fmt/format.h>

#include <array>
#include <cctype>
#include <limits>
#include <utility>

namespace exmem::model {

std::string errno_name(int err) {
  const int e = err < 0 ? -err : err;
  static constexpr std::array<std::pair<int, const char*>, 17> kNames{{
      {0, "OK"}, {EPERM, "EPERM"}, {ENOENT, "ENOENT"}, {EINTR, "EINTR"}, {EBADF, "EBADF"},
      {EAGAIN, "EAGAIN"}, {ENOMEM, "ENOMEM"}, {EFAULT, "EFAULT"}, {EBUSY, "EBUSY"},
      {EEXIST, "EEXIST"}, {EINVAL, "EINVAL"}, {ENFILE, "ENFILE"}, {EMFILE, "EMFILE"},
      {ENOSPC, "ENOSPC"}, {ESRCH, "ESRCH"}, {ENOSYS, "ENOSYS"}, {EFBIG, "EFBIG"},
  }};
  for (const auto& [num, name] : kNames) {
    if (num == e) return name;
  }
  return fmt::format("errno {}", e);
}

bool parse_size(std::string_view text, std::uint64_t& out) {
  std::size_t i = 0;
  std::uint64_t value = 0;
  if (text.empty() || !std::isdigit(static_cast<unsigned char>(text[0]))) return false;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
    const auto digit = static_cast<std::uint64_t>(text[i] - '0');
    if (value > (std::numeric_limits<std::uint64_t>::max() - digit) / 10) return false;
    value = value * 10 + digit;
    ++i;
  }
  const std::string_view unit = text.substr(i);
  std::uint64_t mult = 0;
  static constexpr std::array<std::pair<std::string_view, std::uint64_t>, 14> kUnits{{
      {"", 1}, {"B", 1}, {"K", KiB}, {"KiB", KiB}, {"M", MiB}, {"MiB", MiB}, {"G", GiB},
      {"GiB", GiB}, {"T", TiB}, {"TiB", TiB}, {"k", KiB}, {"m", MiB}, {"g", GiB}, {"t", TiB},
  }};
  for (const auto& [name, m] : kUnits) {
    if (unit == name) mult = m;
  }
  if (mult == 0) return false;
  if (value > std::numeric_limits<std::uint64_t>::max() / mult) return false;
  out = value * mult;
  return true;
}

std::string format_size(std::uint64_t bytes) {
  static constexpr std::array<std::pair<const char*, std::uint64_t>, 4> kUnits{{
      {"TiB", TiB}, {"GiB", GiB}, {"MiB", MiB}, {"KiB", KiB}}};
  for (const auto& [name, m] : kUnits) {
    if (bytes >= m) {
      if (bytes % m == 0) return fmt::format("{} {}", bytes / m, name);
      return fmt::format("{:.2f} {}", static_cast<double>(bytes) / static_cast<double>(m), name);
    }
  }
  return fmt::format("{} B", bytes);
}

}  // namespace exmem::model
