// Run inside the QEMU guest (tests/qemu/run.sh): faults secret pages through
// libexmem (exmem_init with a reservation, every page faulted in) and through a
// plain memfd_secret file, reads their frames from /proc/self/pagemap, prints
// one "FRAME <route> <pfn>" line per page, then, with the pages still held,
// runs the command after "--" (the guest's `exmem probe --map --json`) between
// "===AFTER" and "===END rc=N" lines. Exit status 0 when every page had a frame.
//
// usage: exmem_qemu_guest PAGES -- COMMAND...
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <exmem/exmem.h>

#include "host/host.hpp"

namespace {

namespace host = exmem::host;

// Frames of [r.begin, r.end), printed; false when some page has none.
bool print_frames(const host::Pagemap& pm, const char* route, host::Range r, std::size_t* count) {
  const std::size_t pages = (r.end - r.begin) / host::page_size();
  const host::Frames f = host::frames_of(pm, r.begin, pages);
  for (const std::uint64_t pfn : f.pfns) std::printf("FRAME %s %llu\n", route, static_cast<unsigned long long>(pfn));
  *count += f.pfns.size();
  if (f.pfns.size() != pages) {
    std::printf("ERROR %s: %zu of %zu pages have a frame (pagemap error %d)\n", route, f.pfns.size(), pages, f.error);
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4 || std::strcmp(argv[2], "--") != 0) {
    std::fprintf(stderr, "usage: %s PAGES -- COMMAND...\n", argv[0]);
    return 2;
  }
  const std::size_t pages = std::strtoull(argv[1], nullptr, 10);
  const std::size_t ps = host::page_size();
  bool ok = true;
  std::size_t frames = 0;
  host::Pagemap pm;

  // libexmem: a reservation of `pages` pages, faulted in by exmem_init.
  exmem_config cfg{};
  cfg.reserve = pages * ps;
  cfg.policy = EXMEM_REQUIRE_SECRET;
  if (exmem_init(&cfg) != EXMEM_OK) {
    std::printf("ERROR libexmem: %s\n", exmem_last_error_message());
    return 1;
  }
  void* obj = exmem_alloc(64);
  if (obj == nullptr) {
    std::printf("ERROR libexmem: exmem_alloc: %s\n", exmem_last_error_message());
    return 1;
  }
  std::memset(obj, 0x5a, 64);
  const std::vector<host::Range> lib_ranges = host::secret_mappings();
  if (lib_ranges.empty()) {
    std::printf("ERROR libexmem: no memfd_secret mapping in /proc/self/maps\n");
    return 1;
  }
  for (const host::Range& r : lib_ranges) ok = print_frames(pm, "libexmem", r, &frames) && ok;

  // A plain memfd_secret file of `pages` pages, each page touched.
  const int fd = host::memfd_secret(0);
  if (fd < 0) {
    std::printf("ERROR memfd_secret: %s\n", std::strerror(errno));
    return 1;
  }
  if (::ftruncate(fd, static_cast<off_t>(pages * ps)) != 0) {
    std::printf("ERROR ftruncate: %s\n", std::strerror(errno));
    return 1;
  }
  void* p = ::mmap(nullptr, pages * ps, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    std::printf("ERROR mmap: %s\n", std::strerror(errno));
    return 1;
  }
  auto* bytes = static_cast<volatile unsigned char*>(p);
  for (std::size_t i = 0; i < pages; ++i) bytes[i * ps] = 1;
  const auto begin = reinterpret_cast<std::uintptr_t>(p);
  ok = print_frames(pm, "memfd", {begin, begin + pages * ps}, &frames) && ok;
  std::printf("FRAMES %zu\n", frames);
  std::fflush(stdout);

  // The map while the pages are held.
  std::printf("===AFTER\n");
  std::fflush(stdout);
  const pid_t child = ::fork();
  if (child == 0) {
    ::execv(argv[3], argv + 3);
    std::printf("ERROR exec %s: %s\n", argv[3], std::strerror(errno));
    std::fflush(stdout);
    _exit(127);
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  std::printf("===END rc=%d\n", WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
  std::fflush(stdout);
  exmem_free(obj);
  return ok ? 0 : 1;
}
