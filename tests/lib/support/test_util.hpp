// Shared helpers of the libexmem tests: child processes with captured output,
// fresh processes for per-process configurations, byte patterns, and readers of
// /proc. Every test program links this (see tests/lib/CMakeLists.txt).
#pragma once

#include <exmem/exmem.h>
#include <gtest/gtest.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace exmem_test {

using namespace std::chrono_literals;

// AddressSanitizer and ThreadSanitizer (the asan and tsan presets) turn mlock()
// into a no-op and map memory of their own as the program runs: the tests skip
// what they falsify.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool kSanitizer = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
inline constexpr bool kSanitizer = true;
#else
inline constexpr bool kSanitizer = false;
#endif
#else
inline constexpr bool kSanitizer = false;
#endif

inline size_t page_size() { return static_cast<size_t>(::sysconf(_SC_PAGESIZE)); }
inline size_t round_up(size_t n, size_t a) { return (n + a - 1) / a * a; }
inline constexpr size_t KiB = 1024;
inline constexpr size_t MiB = 1024 * 1024;

std::string strf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// ---- Child processes -------------------------------------------------------

// Prints where and why a check failed (to stderr) and ends the process with 1.
[[noreturn]] void child_fail(const char* file, int line, const char* expr, const std::string& msg);

// An assertion for code running in a child process (no gtest machinery there).
// The second argument is a printf format: CHILD_CHECK(x == 1, "x is %d", x).
#define CHILD_CHECK(cond, ...)                                                           \
  do {                                                                                   \
    if (!(cond)) ::exmem_test::child_fail(__FILE__, __LINE__, #cond, ::exmem_test::strf(__VA_ARGS__)); \
  } while (0)

struct ChildResult {
  pid_t pid = -1;
  int status = 0;
  bool timed_out = false;
  std::string output;  // stdout and stderr, interleaved
  std::string hang;    // when it timed out: its threads' states and stacks (where_it_hangs)

  bool exited_with(int code) const { return !timed_out && WIFEXITED(status) && WEXITSTATUS(status) == code; }
  bool succeeded() const { return exited_with(0); }
  bool killed_by(int sig) const { return !timed_out && WIFSIGNALED(status) && WTERMSIG(status) == sig; }
  // "exited with status 1" / "killed by SIGSEGV" / "timed out", then the output.
  std::string describe() const;
};

// Forks; the child runs body with stdout and stderr sent to a pipe, and exits
// with body's return value (an escaping exception exits with 99). The parent
// collects the output and the wait status, killing the child after timeout.
ChildResult run_child(const std::function<int()>& body, std::chrono::milliseconds timeout = 60s);

// The same in two steps, for a parent that talks to the child meanwhile. A
// child that was never collected (a failed assertion returned early) is killed
// and reaped when its Spawned goes away.
struct Spawned {
  pid_t pid = -1;
  int out = -1;       // read end of the child's stdout/stderr
  std::string error;  // why the child could not be started

  Spawned() = default;
  Spawned(Spawned&& o) noexcept;
  Spawned& operator=(Spawned&& o) = delete;
  Spawned(const Spawned&) = delete;
  Spawned& operator=(const Spawned&) = delete;
  ~Spawned();
};
Spawned spawn_child(const std::function<int()>& body);
// What a live process's threads are doing: state, wait channel and kernel
// stack of each, and their user-space stacks from gdb when it is installed.
// collect() records it for a child that timed out, before it kills it.
std::string where_it_hangs(pid_t pid);
ChildResult collect(Spawned& child, std::chrono::milliseconds timeout = 60s);

// Reads everything from fd until EOF or until the deadline passes.
std::string drain(int fd, std::chrono::steady_clock::time_point deadline, bool* timed_out);

// Waits for pid; kills it (SIGKILL) and reaps it when the timeout passes.
int wait_for(pid_t pid, std::chrono::milliseconds timeout, bool* timed_out);
std::string describe_status(int status);

// Runs body, flushes stdio and ends the process with its return value.
[[noreturn]] void exit_with(const std::function<int()>& body);

// Runs body in a fresh process: a "threadsafe" death test re-executes this test
// program, so exmem_init() there configures a heap nobody has set up yet. body
// reports with CHILD_CHECK and returns 0; its stderr is shown on failure.
#define EXPECT_IN_FRESH_PROCESS(body) \
  EXPECT_EXIT(::exmem_test::exit_with(body), ::testing::ExitedWithCode(0), "")

// ---- memfd_secret -----------------------------------------------------------

// 0 when memfd_secret(2) works here, else the errno it failed with. Calls the
// system call directly, without the library.
int memfd_secret_errno();
std::string memfd_secret_missing_reason(int err);

// The tests of the memfd_secret backend fail loudly (never skip) without it.
#define REQUIRE_MEMFD_SECRET()                                                                   \
  do {                                                                                           \
    int exmem_test_err_ = ::exmem_test::memfd_secret_errno();                                    \
    ASSERT_EQ(exmem_test_err_, 0) << ::exmem_test::memfd_secret_missing_reason(exmem_test_err_); \
  } while (0)

// Makes memfd_secret(2) fail with ENOSYS in this process and its children
// (seccomp), as on a kernel without it. Returns false (with a reason) if the
// filter cannot be installed.
bool block_memfd_secret(std::string* why);

// ---- Patterns -------------------------------------------------------------

// A byte sequence determined by seed, written one byte at a time through a
// volatile pointer from a serial generator: the whole sequence never exists
// anywhere but at the destination (no stack copy, no vector register).
void fill_pattern(void* dst, size_t n, uint64_t seed);
bool has_pattern(const void* p, size_t n, uint64_t seed);
std::string make_pattern(size_t n, uint64_t seed);
// Reads through a volatile pointer (the bytes may belong to a freed object).
bool all_zero(const void* p, size_t n);
bool all_equal(const void* p, size_t n, unsigned char value);
std::string hex_bytes(const void* p, size_t n);

// ---- Files and /proc ---------------------------------------------------------

std::string read_file(const std::string& path);
// Whether the file holds needle, reading only its data extents (a core dump is
// mostly holes); *apparent receives the file's size, *data its bytes of data.
bool file_contains(const std::string& path, const std::string& needle, size_t* apparent, size_t* data);
bool write_file(const std::string& path, const std::string& data, std::string* err);
bool contains(const std::string& hay, const std::string& needle);

struct Vma {
  uintptr_t start = 0;
  uintptr_t end = 0;
  std::string perms;
  std::string path;
  std::string vmflags;  // from smaps only
  size_t rss_kb = 0;    // from smaps only
  size_t size_kb = 0;   // from smaps only
  bool has_flag(const std::string& f) const;
};
std::vector<Vma> read_maps(pid_t pid = 0);
std::vector<Vma> read_smaps(pid_t pid = 0);
std::optional<Vma> vma_of(const void* p, bool smaps = false);
size_t count_vmas(pid_t pid = 0);
bool is_secretmem(const Vma& v);
// A field of /proc/self/status in kB (VmLck, VmRSS...), or -1.
long status_kb(const char* field);

// The hex numbers (0x...) in text; true when one equals p.
std::vector<uintptr_t> hex_numbers(const std::string& text);
bool names_pointer(const std::string& text, const void* p);

std::string make_temp_dir();
void remove_tree(const std::string& dir);

// ---- Pipes ---------------------------------------------------------------------

bool write_all(int fd, const void* p, size_t n);
bool read_all(int fd, void* p, size_t n);

// "EXMEM_E_MEMLOCK (3): <message>" for the calling thread's last error.
std::string last_error_text();

// Path of the helper program (core dump victim, share peer).
const char* helper_path();

}  // namespace exmem_test
