// libexmem-preload: what the three drop-ins (sodium.cpp, openssl.cpp,
// gcrypt.cpp) share: set-up of the heap on the first served call, ownership
// of a pointer, the real functions found with dlsym, messages said once, and
// the counters of the exit report (core.cpp). The library's own units
// (src/lib) are linked in unchanged; this folder only calls them.
#pragma once

#include <atomic>
#include <cstddef>

namespace exmem::dropin {

// Sets up the heap once (thread-safe): fork_mode share, canaries on, then
// EXMEM_POLICY / EXMEM_FORK. False when the environment is invalid (said once
// on stderr): every served allocation then fails.
bool ready();

// Whether p is an object of the exmem heap (or, in a forked child, one the
// parent left it). Cheap for foreign pointers.
bool owns(const void* p);

// The next definition of name after this library (dlsym RTLD_NEXT), cached by
// the caller; nullptr when no later object defines it.
void* next_symbol(const char* name);
// The same, as the function type F (the library's own definition of a
// function this one interposes).
template <typename F>
F real(const char* name) {
  return reinterpret_cast<F>(next_symbol(name));
}

// Writes "libexmem-preload: <message>\n" on stderr.
void say(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
// The same, the first time flag is seen false (then it is set).
#define EXMEM_DROPIN_SAY_ONCE(flag, ...)                                      \
  do {                                                                        \
    if (!(flag).exchange(true, std::memory_order_relaxed)) ::exmem::dropin::say(__VA_ARGS__); \
  } while (0)

// Served allocations, for the exit report and CRYPTO_secure_malloc_done.
struct Counter {
  std::atomic<size_t> allocs{0};
  std::atomic<long> live{0};
  void allocated() {
    allocs.fetch_add(1, std::memory_order_relaxed);
    live.fetch_add(1, std::memory_order_relaxed);
  }
  void freed() { live.fetch_sub(1, std::memory_order_relaxed); }
};
extern Counter g_sodium, g_openssl, g_gcrypt;

// Per drop-in (their units): whether it is in force in this process.
bool sodium_served();
bool openssl_served();
bool gcrypt_install(bool late);  // installs the handlers if possible; true when installed
// The sodium unit's pages-mode registry lock, held across fork (core.cpp's
// fork handlers call these).
void sodium_fork_prepare();
void sodium_fork_parent();
void sodium_fork_child();

}  // namespace exmem::dropin
