#include "host/pagemap.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <system_error>

#include "host/proc_text.hpp"

namespace exmem::host {

namespace {

// "/proc/self/NAME" or "/proc/PID/NAME".
void proc_path(char* buf, std::size_t size, pid_t pid, const char* name) {
  if (pid == 0) {
    std::snprintf(buf, size, "/proc/self/%s", name);
  } else {
    std::snprintf(buf, size, "/proc/%d/%s", static_cast<int>(pid), name);
  }
}

}  // namespace

std::size_t page_size() {
  const long ps = ::sysconf(_SC_PAGESIZE);
  return ps > 0 ? static_cast<std::size_t>(ps) : 4096;
}

Pagemap::Pagemap(pid_t pid) {
  char path[64];
  proc_path(path, sizeof path, pid, "pagemap");
  fd_ = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) open_error_ = errno;
}

Pagemap::~Pagemap() {
  if (fd_ >= 0) ::close(fd_);
}

std::size_t Pagemap::read(std::uintptr_t addr, std::size_t count, std::uint64_t* out) const {
  if (fd_ < 0) {
    errno = open_error_;
    return 0;
  }
  const std::uint64_t first = addr / page_size();
  std::size_t done = 0;
  while (done < count) {
    const ssize_t got = ::pread(fd_, out + done, (count - done) * sizeof(std::uint64_t),
                                static_cast<off_t>((first + done) * sizeof(std::uint64_t)));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      if (got == 0) errno = 0;
      break;
    }
    done += static_cast<std::size_t>(got) / sizeof(std::uint64_t);
    if (static_cast<std::size_t>(got) % sizeof(std::uint64_t) != 0) {
      errno = 0;
      break;
    }
  }
  return done;
}

Frames frames_of(const Pagemap& pm, std::uintptr_t addr, std::size_t pages) {
  Frames f;
  if (pm.error() != 0) {
    f.error = pm.error();
    return f;
  }
  const std::size_t ps = page_size();
  constexpr std::size_t kChunk = 65536;
  std::vector<std::uint64_t> buf(std::min(kChunk, pages));
  for (std::size_t done = 0; done < pages;) {
    const std::size_t n = std::min(kChunk, pages - done);
    const std::size_t got = pm.read(addr + done * ps, n, buf.data());
    for (std::size_t i = 0; i < got; ++i) {
      if (!pagemap_present(buf[i])) continue;
      ++f.present;
      if (const std::uint64_t pfn = pagemap_pfn(buf[i]); pfn != 0) f.pfns.push_back(pfn);
    }
    if (got != n) {
      f.error = errno;
      return f;
    }
    done += n;
  }
  f.complete = true;
  return f;
}

std::size_t distinct_regions(std::vector<std::uint64_t> pfns, unsigned shift) {
  for (auto& p : pfns) p >>= shift;
  std::sort(pfns.begin(), pfns.end());
  return static_cast<std::size_t>(std::unique(pfns.begin(), pfns.end()) - pfns.begin());
}

unsigned frames_shift(std::size_t region_bytes, std::size_t page_bytes) {
  unsigned shift = 0;
  while ((page_bytes << shift) < region_bytes) ++shift;
  return shift;
}

std::vector<Range> parse_secret_mappings(std::string_view maps) {
  std::vector<Range> out;
  while (!maps.empty()) {
    const std::size_t eol = maps.find('\n');
    const std::string_view line = maps.substr(0, eol);
    maps = eol == std::string_view::npos ? std::string_view{} : maps.substr(eol + 1);
    if (line.find("/secretmem") == std::string_view::npos) continue;
    Range r;
    const char* e = line.data() + line.size();
    const auto a = std::from_chars(line.data(), e, r.begin, 16);
    if (a.ec != std::errc{} || a.ptr == e || *a.ptr != '-') continue;
    const auto b = std::from_chars(a.ptr + 1, e, r.end, 16);
    if (b.ec != std::errc{} || r.end <= r.begin) continue;
    out.push_back(r);
  }
  return out;
}

std::vector<Range> secret_mappings(pid_t pid) {
  char path[64];
  proc_path(path, sizeof path, pid, "maps");
  const auto maps = read_text(path);
  return maps ? parse_secret_mappings(*maps) : std::vector<Range>{};
}

}  // namespace exmem::host
