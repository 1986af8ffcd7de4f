// The secure allocators of libsodium, OpenSSL and libgcrypt as an unchanged
// program calls them, for bench/dropin_bench.sh to run natively and with
// LD_PRELOAD=libexmem-preload.so. This program knows nothing of exmem: it links
// the three libraries only, and the same binary is measured both ways.
//
//   exmem_dropin_bench cost LIB...   ns per allocate(32) + write 32 bytes + free,
//                                    one line per library: "cost LIB NS ITERATIONS"
//   exmem_dropin_bench live LIB      live 32-byte secrets under RLIMIT_MEMLOCK =
//                                    8 MiB without CAP_IPC_LOCK (needs root):
//                                    "live LIB COUNT ..." (see below)
//   LIB: sodium | openssl | gcrypt | gcrypt64k (libgcrypt with a 64 KiB pool)
//
// live forks; the child drops CAP_IPC_LOCK from its bounding, effective,
// permitted, inheritable and ambient sets, sets RLIMIT_MEMLOCK (soft and hard)
// to 8 MiB and executes this program again ("live-child"), so that everything
// the libraries (and a preloaded library) do from their first instruction on
// happens under the limit; root's capabilities after execve are its bounding
// set, so CAP_IPC_LOCK stays dropped. The child allocates 32-byte secrets,
// writes each, keeps them all live until an allocation fails or 2,000,000 are
// live, and prints how many, why it stopped, VmLck and its VMA count.
//
// Library set-up, the same in both modes (the preloaded library may intercept it):
//   - libsodium: sodium_init();
//   - OpenSSL: CRYPTO_secure_malloc_init(kOpensslArena, 32) with the arena the
//     largest power of two that RLIMIT_MEMLOCK = 8 MiB lets OpenSSL mlock,
//     i.e. 8 MiB itself (the arena is mlock'ed alone, its guard pages are not
//     locked), minsize 32 so that one secret takes one 32-byte block;
//   - libgcrypt: GCRYCTL_INIT_SECMEM of kGcryptPool = 8 MiB, the whole limit
//     (libgcrypt mlocks its pool; its block headers live inside it);
//     gcrypt64k: the same with a 64 KiB pool, an application-sized one.
//     libgcrypt mlocks the pool it is asked for even when allocation handlers
//     (the preload's) serve every secure allocation, so under the preload the
//     pool's size is taken from the memlock budget the handlers need.
// The child prints whether the native pool got locked (VmLck after set-up).
#include <gcrypt.h>
#include <openssl/crypto.h>
#include <sodium.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

namespace {

constexpr std::size_t kSize = 32;                       // bytes per secret
constexpr std::size_t kMemlockLimit = 8u << 20;         // RLIMIT_MEMLOCK of the live child
constexpr std::size_t kOpensslArena = 8u << 20;         // CRYPTO_secure_malloc_init size
constexpr std::size_t kOpensslMinsize = 32;             // ... and minsize
constexpr unsigned kGcryptPool = 8u << 20;              // GCRYCTL_INIT_SECMEM size
constexpr unsigned kGcryptSmallPool = 64u << 10;        // ... of gcrypt64k
constexpr std::uint64_t kLiveBound = 2000000;           // live secrets: stop here
constexpr double kMinSeconds = 0.2;                     // cost: time per library at least

enum class Lib { sodium, openssl, gcrypt, gcrypt64k };

bool parse_lib(const char* s, Lib& lib) {
  if (std::strcmp(s, "sodium") == 0) lib = Lib::sodium;
  else if (std::strcmp(s, "openssl") == 0) lib = Lib::openssl;
  else if (std::strcmp(s, "gcrypt") == 0) lib = Lib::gcrypt;
  else if (std::strcmp(s, "gcrypt64k") == 0) lib = Lib::gcrypt64k;
  else return false;
  return true;
}

std::string init_note;  // what the set-up returned, printed by the live child

void init_lib(Lib lib) {
  switch (lib) {
    case Lib::sodium:
      if (sodium_init() < 0) {
        std::fprintf(stderr, "sodium_init failed\n");
        std::exit(2);
      }
      init_note = std::string("libsodium ") + sodium_version_string();
      break;
    case Lib::openssl: {
      const int rc = CRYPTO_secure_malloc_init(kOpensslArena, kOpensslMinsize);
      init_note = "CRYPTO_secure_malloc_init(" + std::to_string(kOpensslArena) + ", " +
                  std::to_string(kOpensslMinsize) + ") = " + std::to_string(rc) +
                  (rc == 1 ? " (locked)" : rc == 2 ? " (not locked)" : " (failed)");
      break;
    }
    case Lib::gcrypt:
    case Lib::gcrypt64k: {
      if (!gcry_check_version(GCRYPT_VERSION)) {
        std::fprintf(stderr, "gcry_check_version failed\n");
        std::exit(2);
      }
      const unsigned pool = lib == Lib::gcrypt ? kGcryptPool : kGcryptSmallPool;
      gcry_control(GCRYCTL_DISABLE_SECMEM_WARN);
      gcry_control(GCRYCTL_INIT_SECMEM, pool, 0);
      gcry_control(GCRYCTL_INITIALIZATION_FINISHED, 0);
      init_note = std::string("libgcrypt ") + gcry_check_version(nullptr) + ", GCRYCTL_INIT_SECMEM " + std::to_string(pool);
      break;
    }
  }
}

// The calls under test; the indirection is resolved per library outside the loops.
inline void* lib_alloc(Lib lib) {
  switch (lib) {
    case Lib::sodium: return sodium_malloc(kSize);
    case Lib::openssl: return CRYPTO_secure_malloc(kSize, __FILE__, __LINE__);
    case Lib::gcrypt:
    case Lib::gcrypt64k: return gcry_malloc_secure(kSize);
  }
  return nullptr;
}
inline void lib_free(Lib lib, void* p) {
  switch (lib) {
    case Lib::sodium: sodium_free(p); break;
    case Lib::openssl: CRYPTO_secure_free(p, __FILE__, __LINE__); break;
    case Lib::gcrypt:
    case Lib::gcrypt64k: gcry_free(p); break;
  }
}

const char* name_of(Lib lib) {
  switch (lib) {
    case Lib::sodium: return "sodium";
    case Lib::openssl: return "openssl";
    case Lib::gcrypt: return "gcrypt";
    case Lib::gcrypt64k: return "gcrypt64k";
  }
  return "?";
}

// Keeps the compiler from dropping the stores and the allocation.
inline void write_secret(void* p, std::uint64_t i) {
  std::memset(p, static_cast<int>(i & 0xff) | 1, kSize);
  asm volatile("" : : "r"(p) : "memory");
}

// ---- cost --------------------------------------------------------------------------

// One timed loop of n pairs; seconds, or a negative value when an allocation failed.
double pairs(Lib lib, std::uint64_t n) {
  const auto t0 = std::chrono::steady_clock::now();
  for (std::uint64_t i = 0; i < n; ++i) {
    void* p = lib_alloc(lib);
    if (!p) return -1;
    write_secret(p, i);
    lib_free(lib, p);
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int cost(const std::vector<Lib>& libs) {
  for (Lib lib : libs) init_lib(lib);
  for (Lib lib : libs) {
    // One object stays live, as an application keeps its keys.
    void* keep = lib_alloc(lib);
    if (!keep || pairs(lib, 1000) < 0) {
      std::printf("cost %s error allocation-failed\n", name_of(lib));
      continue;
    }
    std::uint64_t n = 1000;
    double s = 0;
    for (;;) {  // grow n until one loop takes kMinSeconds, then time that loop
      s = pairs(lib, n);
      if (s < 0 || s >= kMinSeconds) break;
      n = s < kMinSeconds / 16 ? n * 8 : static_cast<std::uint64_t>(static_cast<double>(n) * 1.2 * kMinSeconds / s);
    }
    if (s < 0) std::printf("cost %s error allocation-failed\n", name_of(lib));
    else std::printf("cost %s %.2f %llu\n", name_of(lib), s * 1e9 / static_cast<double>(n),
                     static_cast<unsigned long long>(n));
    std::fflush(stdout);
    lib_free(lib, keep);
  }
  return 0;
}

// ---- live --------------------------------------------------------------------------

long status_kib(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const std::size_t n = std::strlen(field);
  while (std::getline(in, line))
    if (line.compare(0, n, field) == 0 && line.size() > n && line[n] == ':') return std::atol(line.c_str() + n + 1);
  return -1;
}

long vma_count() {
  std::ifstream in("/proc/self/maps");
  std::string line;
  long n = 0;
  while (std::getline(in, line)) ++n;
  return n;
}

// Drops CAP_IPC_LOCK everywhere and lowers RLIMIT_MEMLOCK; "" or what failed.
std::string restrict_memlock() {
  if (cap_drop_bound(CAP_IPC_LOCK) != 0) return std::string("cap_drop_bound(CAP_IPC_LOCK): ") + std::strerror(errno);
  if (cap_reset_ambient() != 0 && errno != EINVAL) return std::string("cap_reset_ambient: ") + std::strerror(errno);
  cap_t caps = cap_get_proc();
  if (!caps) return std::string("cap_get_proc: ") + std::strerror(errno);
  cap_value_t ipc_lock[] = {CAP_IPC_LOCK};
  const bool ok = cap_set_flag(caps, CAP_EFFECTIVE, 1, ipc_lock, CAP_CLEAR) == 0 &&
                  cap_set_flag(caps, CAP_PERMITTED, 1, ipc_lock, CAP_CLEAR) == 0 &&
                  cap_set_flag(caps, CAP_INHERITABLE, 1, ipc_lock, CAP_CLEAR) == 0 && cap_set_proc(caps) == 0;
  cap_free(caps);
  if (!ok) return std::string("dropping CAP_IPC_LOCK: ") + std::strerror(errno);
  const rlimit lim{kMemlockLimit, kMemlockLimit};
  if (setrlimit(RLIMIT_MEMLOCK, &lim) != 0) return std::string("setrlimit(RLIMIT_MEMLOCK): ") + std::strerror(errno);
  return "";
}

// In the executed child: checks the restriction held across execve.
std::string check_restricted() {
  cap_t caps = cap_get_proc();
  cap_flag_value_t eff = CAP_SET, perm = CAP_SET;
  if (caps) {
    cap_get_flag(caps, CAP_IPC_LOCK, CAP_EFFECTIVE, &eff);
    cap_get_flag(caps, CAP_IPC_LOCK, CAP_PERMITTED, &perm);
    cap_free(caps);
  }
  if (eff != CAP_CLEAR || perm != CAP_CLEAR) return "CAP_IPC_LOCK is still effective or permitted after execve";
  if (CAP_IS_SUPPORTED(CAP_IPC_LOCK) && cap_get_bound(CAP_IPC_LOCK) != 0) return "CAP_IPC_LOCK is still in the bounding set";
  rlimit lim{};
  getrlimit(RLIMIT_MEMLOCK, &lim);
  if (lim.rlim_cur != kMemlockLimit || lim.rlim_max != kMemlockLimit) return "RLIMIT_MEMLOCK is not 8 MiB after execve";
  return "";
}

int live_child(Lib lib) {
  const std::string bad = check_restricted();
  if (!bad.empty()) {
    std::printf("live %s error setup: %s\n", name_of(lib), bad.c_str());
    return 3;
  }
  init_lib(lib);
  const long vmlck_init = status_kib("VmLck");
  std::vector<void*> ptrs;
  ptrs.reserve(kLiveBound);  // before the count: the vector's own memory is not the library's
  const auto t0 = std::chrono::steady_clock::now();
  std::uint64_t n = 0;
  int err = 0;
  for (; n < kLiveBound; ++n) {
    errno = 0;
    void* p = lib_alloc(lib);
    if (!p) {
      err = errno;
      break;
    }
    write_secret(p, n);
    ptrs.push_back(p);
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  // Each secret still holds what was written (an overlap would show).
  std::uint64_t bad_contents = 0;
  for (std::uint64_t i = 0; i < n; ++i) {
    const auto* b = static_cast<const unsigned char*>(ptrs[i]);
    if (b[0] != ((i & 0xff) | 1) || b[kSize - 1] != ((i & 0xff) | 1)) ++bad_contents;
  }
  std::printf("live %s %llu stop=%s seconds=%.3f vmlck_kib_after_init=%ld vmlck_kib=%ld vmas=%ld bad_contents=%llu init=\"%s\"\n",
              name_of(lib), static_cast<unsigned long long>(n),
              n == kLiveBound ? "bound" : (std::string("NULL:") + (err ? strerrorname_np(err) : "errno-0")).c_str(), s,
              vmlck_init, status_kib("VmLck"), vma_count(), static_cast<unsigned long long>(bad_contents),
              init_note.c_str());
  std::fflush(stdout);
  return bad_contents ? 4 : 0;
}

int live(Lib lib) {
  std::fflush(stdout);
  const pid_t pid = fork();
  if (pid < 0) {
    std::printf("live %s error fork: %s\n", name_of(lib), std::strerror(errno));
    return 3;
  }
  if (pid == 0) {
    const std::string bad = restrict_memlock();
    if (!bad.empty()) {
      std::printf("live %s error setup (root needed): %s\n", name_of(lib), bad.c_str());
      std::fflush(stdout);
      _exit(3);
    }
    execl("/proc/self/exe", "exmem_dropin_bench", "live-child", name_of(lib), static_cast<char*>(nullptr));
    std::printf("live %s error execl: %s\n", name_of(lib), std::strerror(errno));
    std::fflush(stdout);
    _exit(3);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFSIGNALED(status)) {
    std::printf("live %s error killed-by-signal-%d (%s)\n", name_of(lib), WTERMSIG(status), strsignal(WTERMSIG(status)));
    return 4;
  }
  return WEXITSTATUS(status);
}

int usage() {
  std::fprintf(stderr, "usage: exmem_dropin_bench cost LIB... | live LIB   (LIB: sodium openssl gcrypt gcrypt64k)\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return usage();
  const std::string mode = argv[1];
  std::vector<Lib> libs;
  for (int i = 2; i < argc; ++i) {
    Lib lib;
    if (!parse_lib(argv[i], lib)) return usage();
    libs.push_back(lib);
  }
  if (mode == "cost") {
    // One libgcrypt initialisation per process.
    if (std::count(libs.begin(), libs.end(), Lib::gcrypt) + std::count(libs.begin(), libs.end(), Lib::gcrypt64k) > 1)
      return usage();
    return cost(libs);
  }
  if (libs.size() != 1) return usage();
  if (mode == "live") return live(libs[0]);
  if (mode == "live-child") return live_child(libs[0]);
  return usage();
}
