// What the drop-ins share: set-up on the first served call, ownership, the
// exit report, exmem_dropin(), and the fork handlers of this library.
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <exmem/dropin.h>
#include <exmem/exmem.h>

#include "dropin.hpp"
#include "heap/arena.hpp"
#include "heap/arena_state.hpp"
#include "heap/heap.hpp"
#include "heap/settings.hpp"

namespace exmem::dropin {

Counter g_sodium, g_openssl, g_gcrypt;

namespace {

pthread_once_t g_setup_once = PTHREAD_ONCE_INIT;
bool g_setup_ok = false;             // written once, under g_setup_once
std::atomic<bool> g_forked{false};   // this process is a forked child: inherited objects may exist

void setup() {
  exmem_config c{};
  c.fork_mode = EXMEM_FORK_SHARE;
  c.canaries = 1;
  if (heap::apply_environment(&c) != EXMEM_OK) {
    say("%s; secure allocations fail until it is fixed", exmem_last_error_message());
    return;
  }
  int rc = exmem_init(&c);
  // EXMEM_E_ALREADY: the program set the heap up itself; use its heap.
  if (rc != EXMEM_OK && rc != EXMEM_E_ALREADY)
    // Not fatal: every allocation asks the heap again (a memlock limit may be
    // raised meanwhile), with these settings, which stay in force.
    say("setting up the exmem heap failed: %s", exmem_last_error_message());
  g_setup_ok = true;
}

void on_fork_prepare() { sodium_fork_prepare(); }
void on_fork_parent() { sodium_fork_parent(); }
void on_fork_child() {
  g_forked.store(true, std::memory_order_relaxed);
  sodium_fork_child();
}

const char* protection_name(int p) {
  switch (p) {
    case EXMEM_PROT_SECRET:
      return "secret";
    case EXMEM_PROT_LOCKED:
      return "locked";
    default:
      return "none";
  }
}

__attribute__((constructor)) void dropin_constructor() {
  pthread_atfork(on_fork_prepare, on_fork_parent, on_fork_child);
  gcrypt_install(false);
}

// The exit report (EXMEM_DROPIN_REPORT): one line, one write(2), O_APPEND.
__attribute__((destructor)) void dropin_destructor() {
  const char* where = secure_getenv("EXMEM_DROPIN_REPORT");
  if (!where || !*where) return;
  struct exmem_stats st;
  exmem_stats(&st);  // does not set the heap up
  char line[320];
  int n = std::snprintf(line, sizeof line,
                        "exmem-dropin pid=%ld protection=%s sodium_allocs=%zu sodium_live=%ld openssl_allocs=%zu "
                        "openssl_live=%ld gcrypt_allocs=%zu gcrypt_live=%ld\n",
                        static_cast<long>(getpid()), protection_name(st.protection), g_sodium.allocs.load(),
                        g_sodium.live.load(), g_openssl.allocs.load(), g_openssl.live.load(), g_gcrypt.allocs.load(),
                        g_gcrypt.live.load());
  if (n <= 0 || static_cast<size_t>(n) >= sizeof line) return;
  int saved = errno;
  if (std::strcmp(where, "stderr") == 0) {
    (void)!write(2, line, static_cast<size_t>(n));
  } else {
    int fd = open(where, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
      say("EXMEM_DROPIN_REPORT=%s: cannot open it: %s", where, std::strerror(errno));
    } else {
      (void)!write(fd, line, static_cast<size_t>(n));
      close(fd);
    }
  }
  errno = saved;
}

}  // namespace

void say(const char* fmt, ...) {
  char buf[512] = "libexmem-preload: ";
  size_t head = std::strlen(buf);
  va_list ap;
  va_start(ap, fmt);
  int n = std::vsnprintf(buf + head, sizeof buf - head - 1, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  size_t len = std::strlen(buf);
  buf[len++] = '\n';
  int saved = errno;
  (void)!write(2, buf, len);
  errno = saved;
}

bool ready() {
  pthread_once(&g_setup_once, setup);
  return g_setup_ok;
}

bool owns(const void* p) {
  if (!p) return false;
  uintptr_t off = reinterpret_cast<uintptr_t>(p) - reinterpret_cast<uintptr_t>(heap::g_layout.base);
  if (off < heap::g_layout.span) return heap::arena_usable_size(p) != 0;
  // Outside the heap: only a forked child may hold objects elsewhere (its
  // parent's, in EXMEM_FORK_SHARE mode mapped, else a no-op to free).
  if (!g_forked.load(std::memory_order_relaxed)) return false;
  return heap::arena_usable_size(p) != 0 || heap::arena_inherited(p);
}

bool heap_fork_share() {
  heap::ArenaLock l;
  return heap::arena().settings.fork_share;
}

void* next_symbol(const char* name) { return dlsym(RTLD_NEXT, name); }

}  // namespace exmem::dropin

using namespace exmem::dropin;

extern "C" EXMEM_API unsigned exmem_dropin(unsigned which) {
  unsigned served = 0;
  if ((which & EXMEM_DROPIN_SODIUM) && sodium_served()) served |= EXMEM_DROPIN_SODIUM;
  if ((which & EXMEM_DROPIN_OPENSSL) && openssl_served()) served |= EXMEM_DROPIN_OPENSSL;
  if ((which & EXMEM_DROPIN_GCRYPT) && gcrypt_install(true)) served |= EXMEM_DROPIN_GCRYPT;
  return served;
}
