// Reading /proc and /sys text: whole files, "Key: value" lines, kernel
// parameters. The parsers are pure (text in, values out), so tests feed them
// fixture text; the readers are the only system calls here.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace exmem::host {

// ---- Reading files -----------------------------------------------------------------

// Reads up to size - 1 bytes of path into buf, NUL-terminated. Returns the
// length read, or -1 with errno set when the file cannot be opened or read.
ssize_t read_file(const char* path, char* buf, std::size_t size);
// The whole file, or nullopt when it cannot be opened or read.
std::optional<std::string> read_text(const char* path);

// ---- Parsing -----------------------------------------------------------------------

std::string_view trim(std::string_view s);

// The number after `key` on a line of the form "Key: 123 kB" (/proc/meminfo,
// /proc/self/status) or "key 123" (/proc/vmstat). nullopt when no line names
// the key or its value is not a number: an absent field stays absent, not 0.
std::optional<std::uint64_t> key_value(std::string_view text, std::string_view key);

// The hexadecimal value of a "Name:\t000001ffffffffff" line of /proc/self/status.
std::optional<std::uint64_t> status_hex(std::string_view status, std::string_view name);

inline constexpr unsigned kCapIpcLock = 14;
inline constexpr unsigned kCapSysAdmin = 21;
inline bool has_cap(std::uint64_t mask, unsigned bit) { return bit < 64 && ((mask >> bit) & 1U) != 0; }

// The value of `name=value` on a kernel command line (last occurrence wins, as
// for the kernel's own parameters), a view into cmdline. Arguments after a lone
// "--" belong to init and are ignored. A bare `name` yields an empty value.
std::optional<std::string_view> cmdline_param(std::string_view cmdline, std::string_view name);

// How the kernel reads a boolean parameter (kstrtobool): true for "0", "n",
// "off", "false"...
bool kernel_bool_false(std::string_view v);

// Whether a whitespace-separated list (e.g. /sys/power/state) holds `word`.
bool lists_word(std::string_view text, std::string_view word);

// Kernel release "6.18.44-foo" -> {6, 18}; {0, 0} when unreadable.
std::pair<unsigned, unsigned> kernel_major_minor(std::string_view release);

// ---- Names -------------------------------------------------------------------------

// "ENOSYS" for the errno values the kernel's memory calls return; nullptr for others.
const char* errno_symbol(int e);
// errno_symbol, or "errno N".
std::string errno_name(int e);
// "12 MiB", "4 KiB" or "123 B", into buf as snprintf does.
std::size_t format_bytes(std::uint64_t bytes, char* buf, std::size_t size);
std::string bytes_text(std::uint64_t bytes);

}  // namespace exmem::host
