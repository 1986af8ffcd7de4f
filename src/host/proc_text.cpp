#include "host/proc_text.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cinttypes>
#include <cstdio>
#include <system_error>

namespace exmem::host {

namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// Calls f(line) for every line of text; stops when f returns true.
template <typename F>
void for_each_line(std::string_view text, F&& f) {
  while (!text.empty()) {
    const std::size_t eol = text.find('\n');
    const std::string_view line = text.substr(0, eol);
    text = eol == std::string_view::npos ? std::string_view{} : text.substr(eol + 1);
    if (f(line)) return;
  }
}

// Calls f(word) for every whitespace-separated word of text; stops when f returns true.
template <typename F>
void for_each_word(std::string_view text, F&& f) {
  std::size_t pos = 0;
  while (pos < text.size()) {
    while (pos < text.size() && is_space(text[pos])) ++pos;
    std::size_t end = pos;
    while (end < text.size() && !is_space(text[end])) ++end;
    if (end > pos && f(text.substr(pos, end - pos))) return;
    pos = end;
  }
}

}  // namespace

ssize_t read_file(const char* path, char* buf, std::size_t size) {
  if (size == 0) return -1;
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  std::size_t len = 0;
  while (len + 1 < size) {
    const ssize_t n = ::read(fd, buf + len, size - 1 - len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int e = errno;
      ::close(fd);
      errno = e;
      return -1;
    }
    if (n == 0) break;
    len += static_cast<std::size_t>(n);
  }
  ::close(fd);
  buf[len] = '\0';
  return static_cast<ssize_t>(len);
}

std::optional<std::string> read_text(const char* path) {
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::string out;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      ::close(fd);
      return std::nullopt;
    }
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

std::optional<std::uint64_t> key_value(std::string_view text, std::string_view key) {
  std::optional<std::uint64_t> found;
  for_each_line(text, [&](std::string_view line) {
    line = trim(line);
    if (line.size() <= key.size() || line.substr(0, key.size()) != key) return false;
    std::string_view rest = line.substr(key.size());
    if (rest.front() == ':') {
      rest.remove_prefix(1);
    } else if (!is_space(rest.front())) {
      return false;  // a longer key that starts with this one
    }
    rest = trim(rest);
    std::uint64_t value = 0;
    const auto [ptr, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), value);
    if (ec != std::errc{} || ptr == rest.data()) return false;
    found = value;
    return true;
  });
  return found;
}

std::optional<std::uint64_t> status_hex(std::string_view status, std::string_view name) {
  std::optional<std::uint64_t> found;
  for_each_line(status, [&](std::string_view line) {
    if (line.size() <= name.size() || line.substr(0, name.size()) != name || line[name.size()] != ':') return false;
    const std::string_view v = trim(line.substr(name.size() + 1));
    std::uint64_t value = 0;
    const auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), value, 16);
    if (ec == std::errc{} && ptr == v.data() + v.size() && !v.empty()) found = value;
    return true;
  });
  return found;
}

std::optional<std::string_view> cmdline_param(std::string_view cmdline, std::string_view name) {
  std::optional<std::string_view> found;
  for_each_word(cmdline, [&](std::string_view tok) {
    if (tok == "--") return true;
    if (tok == name) {
      found = tok.substr(tok.size());
    } else if (tok.size() > name.size() && tok.substr(0, name.size()) == name && tok[name.size()] == '=') {
      found = tok.substr(name.size() + 1);
    }
    return false;
  });
  return found;
}

bool kernel_bool_false(std::string_view v) {
  if (v.empty()) return false;
  const char c = v.front();
  if (c == '0' || c == 'n' || c == 'N' || c == 'f' || c == 'F') return true;
  return v.size() >= 2 && (c == 'o' || c == 'O') && (v[1] == 'f' || v[1] == 'F');
}

bool lists_word(std::string_view text, std::string_view word) {
  bool found = false;
  for_each_word(text, [&](std::string_view w) { return found = (w == word); });
  return found;
}

std::pair<unsigned, unsigned> kernel_major_minor(std::string_view release) {
  unsigned major = 0;
  unsigned minor = 0;
  const char* b = release.data();
  const char* e = release.data() + release.size();
  const auto r1 = std::from_chars(b, e, major);
  if (r1.ec != std::errc{} || r1.ptr == e || *r1.ptr != '.') return {0, 0};
  const auto r2 = std::from_chars(r1.ptr + 1, e, minor);
  if (r2.ec != std::errc{}) return {0, 0};
  return {major, minor};
}

const char* errno_symbol(int e) {
  switch (e) {
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case EINTR: return "EINTR";
    case EBADF: return "EBADF";
    case EAGAIN: return "EAGAIN";
    case ENOMEM: return "ENOMEM";
    case EACCES: return "EACCES";
    case EFAULT: return "EFAULT";
    case EBUSY: return "EBUSY";
    case ENODEV: return "ENODEV";
    case EINVAL: return "EINVAL";
    case ENFILE: return "ENFILE";
    case EMFILE: return "EMFILE";
    case EFBIG: return "EFBIG";
    case ENOSPC: return "ENOSPC";
    case ENOSYS: return "ENOSYS";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    default: return nullptr;
  }
}

std::string errno_name(int e) {
  if (const char* s = errno_symbol(e)) return s;
  return "errno " + std::to_string(e);
}

std::size_t format_bytes(std::uint64_t b, char* buf, std::size_t size) {
  constexpr std::uint64_t kMiB = std::uint64_t{1} << 20;
  int n = 0;
  if (b >= kMiB && b % kMiB == 0) {
    n = std::snprintf(buf, size, "%" PRIu64 " MiB", b / kMiB);
  } else if (b >= 1024 && b % 1024 == 0) {
    n = std::snprintf(buf, size, "%" PRIu64 " KiB", b / 1024);
  } else {
    n = std::snprintf(buf, size, "%" PRIu64 " B", b);
  }
  return n < 0 ? 0 : static_cast<std::size_t>(n);
}

std::string bytes_text(std::uint64_t bytes) {
  char buf[32];
  format_bytes(bytes, buf, sizeof buf);
  return buf;
}

}  // namespace exmem::host
