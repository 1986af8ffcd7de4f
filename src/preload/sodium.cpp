// libsodium's guarded heap (sodium_malloc & co., libsodium 1.0.18's
// signatures) served by exmem. EXMEM_SODIUM=packed: objects in exmem's heap;
// =pages: one exclusive mapping per object (the heap's page objects: a
// page-granular mapping between guard pages, inherited in EXMEM_FORK_SHARE
// mode as libsodium's objects survive fork natively), the object at its end,
// so that sodium_mprotect_* work as natively.
#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>

#include <exmem/exmem.h>

#include "backend/backend.hpp"
#include "dropin.hpp"
#include "heap/arena.hpp"

namespace exmem::dropin {

namespace {

enum class Mode { packed, pages, invalid };

// libsodium fills new objects with this byte (sodium/utils.c, GARBAGE_VALUE).
constexpr unsigned char kGarbage = 0xdb;

pthread_once_t g_mode_once = PTHREAD_ONCE_INIT;
Mode g_mode = Mode::packed;

void read_mode() {
  const char* v = secure_getenv("EXMEM_SODIUM");
  if (!v || std::strcmp(v, "packed") == 0) {
    g_mode = Mode::packed;
  } else if (std::strcmp(v, "pages") == 0) {
    g_mode = Mode::pages;
  } else {
    g_mode = Mode::invalid;
    say("the environment variable EXMEM_SODIUM = '%.64s': expected packed (objects packed in exmem's heap, the "
        "default) or pages (one exclusive mapping per object, sodium_mprotect_* honoured); every sodium_malloc fails "
        "until it is fixed",
        v);
  }
}

Mode mode() {
  pthread_once(&g_mode_once, read_mode);
  return g_mode;
}

// Pages mode: the objects' regions, by start address. The lock is never held
// while calling the heap (whose own lock the fork handlers also take).
struct PagesObject {
  backend::Region region;
  pid_t owner;  // the process that created it; a forked child only drops its view
};
pthread_mutex_t g_pages_lock = PTHREAD_MUTEX_INITIALIZER;
std::map<uintptr_t, PagesObject>* g_pages = nullptr;  // created on first use, never destroyed
std::atomic<bool> g_any_pages{false};

size_t page_size() {
  static const size_t p = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return p;
}
uintptr_t page_floor(const void* p) { return reinterpret_cast<uintptr_t>(p) & ~(page_size() - 1); }

bool pages_find(const void* p, PagesObject* out, bool erase) {
  if (!g_any_pages.load(std::memory_order_acquire)) return false;
  pthread_mutex_lock(&g_pages_lock);
  bool found = false;
  if (g_pages) {
    auto it = g_pages->find(page_floor(p));
    if (it != g_pages->end()) {
      found = true;
      *out = it->second;
      if (erase) g_pages->erase(it);
    }
  }
  pthread_mutex_unlock(&g_pages_lock);
  return found;
}

void* pages_alloc(size_t size) {
  size_t len = (size + page_size() - 1) & ~(page_size() - 1);
  backend::Region r;
  backend::Kind kind;
  // No descriptor is kept (one per object would exhaust RLIMIT_NOFILE): the
  // mapping keeps the file alive.
  if (heap::arena_map_apart(heap::Use::pages, len, -1, backend::Kind::none, nullptr, &r, &kind) != EXMEM_OK) {
    errno = ENOMEM;
    return nullptr;
  }
  unsigned char* user = static_cast<unsigned char*>(r.addr) + r.len - size;
  pthread_mutex_lock(&g_pages_lock);
  bool ok = true;
  try {
    if (!g_pages) g_pages = new std::map<uintptr_t, PagesObject>();
    g_pages->emplace(reinterpret_cast<uintptr_t>(r.addr), PagesObject{r, getpid()});
  } catch (...) {
    ok = false;
  }
  pthread_mutex_unlock(&g_pages_lock);
  if (!ok) {
    heap::arena_unmap_apart(heap::Use::pages, r, "sodium_malloc");
    errno = ENOMEM;
    return nullptr;
  }
  g_any_pages.store(true, std::memory_order_release);
  return user;
}

void pages_free(const PagesObject& o) {
  if (o.owner != getpid()) {
    // The parent's object, inherited: the parent still uses the pages (they
    // are shared), so this process only drops its view, as exmem_free leaves
    // an inherited object alone.
    mmap(o.region.addr, o.region.len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
    return;
  }
  // sodium_free wipes whatever the protection was.
  mprotect(o.region.addr, o.region.len, PROT_READ | PROT_WRITE);
  explicit_bzero(o.region.addr, o.region.len);
  if (heap::arena_unmap_apart(heap::Use::pages, o.region, "sodium_free") != EXMEM_OK)
    say("sodium_free: %s", exmem_last_error_message());
}

std::atomic<bool> g_said_mprotect{false};

int mprotect_object(void* ptr, int prot, const char* which) {
  using Fn = int (*)(void*);
  PagesObject o;
  if (ptr && pages_find(ptr, &o, false)) return mprotect(o.region.addr, o.region.len, prot);
  if (ptr && owns(ptr)) {
    EXMEM_DROPIN_SAY_ONCE(g_said_mprotect,
                          "%s(%p): the object is packed with others in exmem's heap, where page protections cannot "
                          "apply to one object; it returns -1 (ENOTSUP) and the object stays readable and writable. "
                          "EXMEM_SODIUM=pages gives every object its own pages and honours sodium_mprotect_*",
                          which, ptr);
    errno = ENOTSUP;
    return -1;
  }
  static Fn fn_noaccess = real<Fn>("sodium_mprotect_noaccess");
  static Fn fn_readonly = real<Fn>("sodium_mprotect_readonly");
  static Fn fn_readwrite = real<Fn>("sodium_mprotect_readwrite");
  Fn fn = prot == PROT_NONE ? fn_noaccess : prot == PROT_READ ? fn_readonly : fn_readwrite;
  if (!fn) {
    errno = EINVAL;
    return -1;
  }
  return fn(ptr);
}

}  // namespace

bool sodium_served() {
  return next_symbol("sodium_malloc") != nullptr && mode() != Mode::invalid;
}

void sodium_fork_prepare() { pthread_mutex_lock(&g_pages_lock); }
void sodium_fork_parent() { pthread_mutex_unlock(&g_pages_lock); }
void sodium_fork_child() { pthread_mutex_unlock(&g_pages_lock); }

}  // namespace exmem::dropin

using namespace exmem::dropin;

extern "C" {

EXMEM_API void* sodium_malloc(size_t size) {
  Mode m = mode();
  if (m == Mode::invalid || !ready() || size >= SIZE_MAX - 4 * page_size()) {
    errno = ENOMEM;
    return nullptr;
  }
  void* p = m == Mode::pages ? pages_alloc(size ? size : 1) : exmem_alloc(size ? size : 1);
  if (!p) {
    errno = ENOMEM;
    return nullptr;
  }
  std::memset(p, kGarbage, size);
  g_sodium.allocated();
  return p;
}

EXMEM_API void* sodium_allocarray(size_t count, size_t size) {
  // As libsodium: count * size must not reach SIZE_MAX.
  if (count > 0 && size >= SIZE_MAX / count) {
    errno = ENOMEM;
    return nullptr;
  }
  return sodium_malloc(count * size);
}

EXMEM_API void sodium_free(void* ptr) {
  if (!ptr) return;
  PagesObject o;
  if (pages_find(ptr, &o, true)) {
    pages_free(o);
    g_sodium.freed();
    return;
  }
  if (owns(ptr)) {
    exmem_free(ptr);
    g_sodium.freed();
    return;
  }
  using Fn = void (*)(void*);
  static Fn fn = real<Fn>("sodium_free");
  if (!fn) {
    say("sodium_free(%p): not an object of exmem's heap, and no libsodium is loaded to free it", ptr);
    abort();
  }
  fn(ptr);
}

EXMEM_API int sodium_mprotect_noaccess(void* ptr) { return mprotect_object(ptr, PROT_NONE, "sodium_mprotect_noaccess"); }
EXMEM_API int sodium_mprotect_readonly(void* ptr) { return mprotect_object(ptr, PROT_READ, "sodium_mprotect_readonly"); }
EXMEM_API int sodium_mprotect_readwrite(void* ptr) {
  return mprotect_object(ptr, PROT_READ | PROT_WRITE, "sodium_mprotect_readwrite");
}

}  // extern "C"
