// exmem_test_helper: processes the tests start with exec, so that they are fresh
// (nothing inherited from the test program but what is passed on purpose).
//
//   exmem_test_helper core <secret|locked|malloc> <seed> <control-seed>
//       Puts the 32-byte pattern of <seed> in exmem memory (secret: memfd_secret
//       backend; locked: the fallback) or in malloc memory, the pattern of
//       <control-seed> in malloc memory (unless it is 0), and aborts with core
//       dumps enabled and every kind of mapping selected for the dump.
//   exmem_test_helper share-peer <fd> <size> <seed-a> <seed-b> <seed-c>
//       Receives a shared region on socket <fd>; checks that it holds the pattern
//       of <seed-a>; writes the pattern of <seed-b> and says so (one byte); waits
//       for one byte, then checks for the pattern of <seed-c>; releases the region.
#include <exmem/exmem.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "support/test_util.hpp"

using namespace exmem_test;

namespace {

uint64_t arg_u64(const char* s) { return std::strtoull(s, nullptr, 0); }

int core(const std::string& where, uint64_t seed, uint64_t control_seed) {
  rlimit unlimited{RLIM_INFINITY, RLIM_INFINITY};
  CHILD_CHECK(setrlimit(RLIMIT_CORE, &unlimited) == 0, "setrlimit(RLIMIT_CORE): %s", std::strerror(errno));
  CHILD_CHECK(prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) == 0, "PR_SET_DUMPABLE: %s", std::strerror(errno));
  // Select every kind of mapping (anonymous, file-backed, private, shared): only
  // what the library excluded itself can be missing from the dump.
  std::string err;
  CHILD_CHECK(write_file("/proc/self/coredump_filter", "0x1ff", &err), "%s", err.c_str());

  void* p = nullptr;
  if (where == "malloc") {
    p = std::malloc(32);
  } else {
    exmem_config cfg{};
    cfg.policy = where == "secret" ? EXMEM_REQUIRE_SECRET : EXMEM_LOCKED_ONLY;
    cfg.quiet = 1;
    CHILD_CHECK(exmem_init(&cfg) == EXMEM_OK, "exmem_init: %s", last_error_text().c_str());
    int want = where == "secret" ? EXMEM_PROT_SECRET : EXMEM_PROT_LOCKED;
    CHILD_CHECK(exmem_protection() == want, "protection %d, expected %d", exmem_protection(), want);
    p = exmem_alloc(32);
    CHILD_CHECK(p != nullptr, "exmem_alloc(32): %s", last_error_text().c_str());
  }
  CHILD_CHECK(p != nullptr, "no memory for the pattern");
  fill_pattern(p, 32, seed);
  if (control_seed) {
    void* q = std::malloc(32);
    CHILD_CHECK(q != nullptr, "malloc(32) failed");
    fill_pattern(q, 32, control_seed);
  }
  std::printf("pattern at %p in %s memory; aborting\n", p, where.c_str());
  std::fflush(stdout);
  std::abort();
}

int share_peer(int fd, size_t size, uint64_t a, uint64_t b, uint64_t c) {
  exmem_shared s{};
  int rc = exmem_share_recv(fd, &s);
  CHILD_CHECK(rc == EXMEM_OK, "exmem_share_recv returned %d: %s", rc, last_error_text().c_str());
  CHILD_CHECK(s.addr != nullptr && s.size >= size, "received addr %p size %zu, expected >= %zu", s.addr, s.size,
              size);
  CHILD_CHECK(s.protection == EXMEM_PROT_SECRET, "received protection %d", s.protection);
  CHILD_CHECK(has_pattern(s.addr, size, a), "the peer does not see the sender's bytes; first bytes: %s",
              hex_bytes(s.addr, 16).c_str());
  fill_pattern(s.addr, size, b);
  char byte = 'b';
  CHILD_CHECK(write_all(fd, &byte, 1), "write to the sender: %s", std::strerror(errno));
  CHILD_CHECK(read_all(fd, &byte, 1) && byte == 'c', "no 'c' from the sender");
  CHILD_CHECK(has_pattern(s.addr, size, c), "the peer does not see the sender's second write; first bytes: %s",
              hex_bytes(s.addr, 16).c_str());
  std::printf("peer: received %zu bytes at %p\n", s.size, s.addr);
  CHILD_CHECK(exmem_share_release(&s) == EXMEM_OK, "exmem_share_release: %s", last_error_text().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string cmd = argc > 1 ? argv[1] : "";
  if (cmd == "core" && argc == 5) exit_with([&] { return core(argv[2], arg_u64(argv[3]), arg_u64(argv[4])); });
  if (cmd == "share-peer" && argc == 7)
    exit_with([&] {
      return share_peer(static_cast<int>(arg_u64(argv[2])), static_cast<size_t>(arg_u64(argv[3])), arg_u64(argv[4]),
                        arg_u64(argv[5]), arg_u64(argv[6]));
    });
  std::fprintf(stderr, "usage: %s core <secret|locked|malloc> <seed> <control-seed>\n"
                       "       %s share-peer <fd> <size> <seed-a> <seed-b> <seed-c>\n", argv[0], argv[0]);
  return 2;
}
