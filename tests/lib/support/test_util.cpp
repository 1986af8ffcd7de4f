#include "test_util.hpp"

#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include <cctype>
#include <cerrno>
#include <cinttypes>
#include <climits>
#include <csignal>
#include <cstdarg>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace exmem_test {

std::string strf(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  va_list ap2;
  va_copy(ap2, ap);
  int n = std::vsnprintf(nullptr, 0, fmt, ap);
  va_end(ap);
  std::string out(n > 0 ? static_cast<size_t>(n) : 0, '\0');
  if (n > 0) std::vsnprintf(out.data(), out.size() + 1, fmt, ap2);
  va_end(ap2);
  return out;
}

void child_fail(const char* file, int line, const char* expr, const std::string& msg) {
  std::fflush(stdout);
  std::fprintf(stderr, "%s:%d: check failed: %s\n    %s\n", file, line, expr, msg.c_str());
  std::fflush(stderr);
  ::_exit(1);
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return strf("exited with status %d", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const char* name = sigabbrev_np(WTERMSIG(status));
    return strf("killed by SIG%s (%d)%s", name ? name : "?", WTERMSIG(status),
                WCOREDUMP(status) ? ", core dumped" : "");
  }
  return strf("wait status 0x%x", static_cast<unsigned>(status));
}

std::string ChildResult::describe() const {
  std::string s = timed_out ? std::string("timed out and was killed") : describe_status(status);
  s += "; its output:\n";
  s += output.empty() ? std::string("(none)") : output;
  if (!hang.empty()) s += "\nwhere its threads were when it timed out:\n" + hang;
  return s;
}

std::string drain(int fd, std::chrono::steady_clock::time_point deadline, bool* timed_out) {
  std::string out;
  char buf[4096];
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      if (timed_out) *timed_out = true;
      break;
    }
    pollfd p{fd, POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(std::min<long long>(left.count(), INT_MAX)));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) continue;
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

int wait_for(pid_t pid, std::chrono::milliseconds timeout, bool* timed_out) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  for (;;) {
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0 && errno != EINTR) return -1;
    if (std::chrono::steady_clock::now() >= deadline) {
      if (timed_out) *timed_out = true;
      ::kill(pid, SIGKILL);
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      return status;
    }
    std::this_thread::sleep_for(2ms);
  }
}

void exit_with(const std::function<int()>& body) {
  int rc = 99;
  try {
    rc = body();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "uncaught exception: %s\n", e.what());
  } catch (...) {
    std::fprintf(stderr, "uncaught exception of unknown type\n");
  }
  std::fflush(stdout);
  std::fflush(stderr);
  ::_exit(rc);
}

Spawned::Spawned(Spawned&& o) noexcept : pid(o.pid), out(o.out), error(std::move(o.error)) {
  o.pid = -1;
  o.out = -1;
}

Spawned::~Spawned() {
  if (pid > 0) {
    ::kill(pid, SIGKILL);
    while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
  }
  if (out >= 0) ::close(out);
}

Spawned spawn_child(const std::function<int()>& body) {
  Spawned c;
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    c.error = strf("pipe2 failed: %s", std::strerror(errno));
    return c;
  }
  std::fflush(stdout);
  std::fflush(stderr);
  pid_t pid = ::fork();
  if (pid < 0) {
    c.error = strf("fork failed: %s", std::strerror(errno));
    ::close(fds[0]);
    ::close(fds[1]);
    return c;
  }
  if (pid == 0) {
    ::close(fds[0]);
    ::dup2(fds[1], STDOUT_FILENO);
    ::dup2(fds[1], STDERR_FILENO);
    ::close(fds[1]);
    exit_with(body);
  }
  ::close(fds[1]);
  c.pid = pid;
  c.out = fds[0];
  return c;
}

namespace {

std::string read_text(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

std::string where_it_hangs(pid_t pid) {
  namespace fs = std::filesystem;
  std::string out;
  std::error_code ec;
  fs::path tasks = fs::path("/proc") / std::to_string(pid) / "task";
  for (const fs::directory_entry& t : fs::directory_iterator(tasks, ec)) {
    std::string stat = read_text(t.path() / "stat");
    // The state is the field after the command's closing parenthesis.
    size_t close = stat.rfind(')');
    char state = close != std::string::npos && close + 2 < stat.size() ? stat[close + 2] : '?';
    std::string comm = read_text(t.path() / "comm");
    if (!comm.empty() && comm.back() == '\n') comm.pop_back();
    out += strf("thread %s (%s): state %c, waiting in %s\n", t.path().filename().c_str(), comm.c_str(), state,
                read_text(t.path() / "wchan").c_str());
    std::string stack = read_text(t.path() / "stack");
    out += stack.empty() ? std::string("  (no kernel stack: /proc/PID/stack needs root)\n") : stack;
  }
  if (ec) out += strf("cannot list %s: %s\n", tasks.c_str(), ec.message().c_str());
  // User-space stacks, when gdb is installed (scripts/deps test installs it).
  std::string cmd = strf("gdb -nx -batch -p %d -ex 'thread apply all bt' 2>&1", static_cast<int>(pid));
  if (FILE* f = ::popen(cmd.c_str(), "r")) {
    char buf[4096];
    size_t n;
    std::string bt;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) bt.append(buf, n);
    int st = ::pclose(f);
    out += WIFEXITED(st) && WEXITSTATUS(st) == 127 ? std::string("(gdb is not installed: no user-space stacks)\n")
                                                   : "user-space stacks (gdb):\n" + bt;
  }
  return out;
}

ChildResult collect(Spawned& c, std::chrono::milliseconds timeout) {
  ChildResult res;
  if (c.pid < 0) {
    res.status = -1;
    res.output = c.error;
    return res;
  }
  res.pid = c.pid;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  bool to = false;
  res.output = drain(c.out, deadline, &to);
  ::close(c.out);
  c.out = -1;
  if (to) {
    res.hang = where_it_hangs(c.pid);
    ::kill(c.pid, SIGKILL);
  }
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  if (left.count() < 0) left = 0ms;
  res.status = wait_for(c.pid, left, &to);
  res.timed_out = to;
  c.pid = -1;
  return res;
}

ChildResult run_child(const std::function<int()>& body, std::chrono::milliseconds timeout) {
  Spawned c = spawn_child(body);
  return collect(c, timeout);
}

// ---- memfd_secret -----------------------------------------------------------------

int memfd_secret_errno() {
#ifdef SYS_memfd_secret
  long fd = ::syscall(SYS_memfd_secret, O_CLOEXEC);
  if (fd < 0) return errno;
  ::close(static_cast<int>(fd));
  return 0;
#else
  return ENOSYS;
#endif
}

std::string memfd_secret_missing_reason(int err) {
  return strf(
      "memfd_secret(2) is not usable on this machine (it failed with %s: %s). These tests exercise the "
      "memfd_secret backend and cannot stand in for it with locked memory: run them on Linux >= 5.14 built "
      "with CONFIG_SECRETMEM=y and not booted with secretmem.enable=0, outside any seccomp policy that "
      "blocks the call.",
      strerrorname_np(err) ? strerrorname_np(err) : "?", std::strerror(err));
}

bool block_memfd_secret(std::string* why) {
#if !defined(SYS_memfd_secret)
  *why = "this build's headers do not know memfd_secret's system call number";
  return false;
#else
#if defined(__x86_64__)
  const uint32_t arch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
  const uint32_t arch = AUDIT_ARCH_AARCH64;
#else
  *why = "no seccomp architecture constant for this machine in the tests";
  return false;
#endif
  auto stmt = [](uint16_t code, uint32_t k) { return sock_filter{code, 0, 0, k}; };
  auto jump = [](uint16_t code, uint32_t k, uint8_t jt, uint8_t jf) { return sock_filter{code, jt, jf, k}; };
  sock_filter prog[] = {
      stmt(BPF_LD | BPF_W | BPF_ABS, static_cast<uint32_t>(offsetof(seccomp_data, arch))),
      jump(BPF_JMP | BPF_JEQ | BPF_K, arch, 1, 0),
      stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      stmt(BPF_LD | BPF_W | BPF_ABS, static_cast<uint32_t>(offsetof(seccomp_data, nr))),
      jump(BPF_JMP | BPF_JEQ | BPF_K, static_cast<uint32_t>(SYS_memfd_secret), 0, 1),
      stmt(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)),
      stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog fprog{static_cast<unsigned short>(sizeof prog / sizeof prog[0]), prog};
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    *why = strf("prctl(PR_SET_NO_NEW_PRIVS): %s", std::strerror(errno));
    return false;
  }
  if (::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fprog, 0, 0) != 0) {
    *why = strf("prctl(PR_SET_SECCOMP): %s", std::strerror(errno));
    return false;
  }
  if (memfd_secret_errno() != ENOSYS) {
    *why = "the seccomp filter is installed but memfd_secret still does not fail with ENOSYS";
    return false;
  }
  return true;
#endif
}

// ---- Patterns ------------------------------------------------------------------

namespace {
inline uint64_t next(uint64_t& x) {
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  return x * 0x2545F4914F6CDD1Dull;
}
inline uint64_t start(uint64_t seed) { return seed ? seed : 0x9E3779B97F4A7C15ull; }
}  // namespace

void fill_pattern(void* dst, size_t n, uint64_t seed) {
  auto* d = static_cast<volatile unsigned char*>(dst);
  uint64_t x = start(seed);
  for (size_t i = 0; i < n; ++i) d[i] = static_cast<unsigned char>(next(x) >> 56);
}

bool has_pattern(const void* p, size_t n, uint64_t seed) {
  auto* d = static_cast<const volatile unsigned char*>(p);
  uint64_t x = start(seed);
  for (size_t i = 0; i < n; ++i)
    if (d[i] != static_cast<unsigned char>(next(x) >> 56)) return false;
  return true;
}

std::string make_pattern(size_t n, uint64_t seed) {
  std::string s(n, '\0');
  fill_pattern(s.data(), n, seed);
  return s;
}

bool all_zero(const void* p, size_t n) { return all_equal(p, n, 0); }

bool all_equal(const void* p, size_t n, unsigned char value) {
  auto* d = static_cast<const volatile unsigned char*>(p);
  for (size_t i = 0; i < n; ++i)
    if (d[i] != value) return false;
  return true;
}

std::string hex_bytes(const void* p, size_t n) {
  auto* d = static_cast<const volatile unsigned char*>(p);
  std::string s;
  for (size_t i = 0; i < n; ++i) s += strf("%02x", static_cast<unsigned>(d[i]));
  return s;
}

// ---- Files and /proc ----------------------------------------------------------

std::string read_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

bool file_contains(const std::string& path, const std::string& needle, size_t* apparent, size_t* data) {
  *apparent = *data = 0;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  off_t end_of_file = ::lseek(fd, 0, SEEK_END);
  *apparent = end_of_file > 0 ? static_cast<size_t>(end_of_file) : 0;
  bool found = false;
  std::string buf;
  const size_t chunk = 4 * MiB;
  off_t pos = 0;
  while (!found && pos < end_of_file) {
    off_t start = ::lseek(fd, pos, SEEK_DATA);
    if (start < 0) break;
    off_t stop = ::lseek(fd, start, SEEK_HOLE);
    if (stop < 0) stop = end_of_file;
    std::string carry;  // the tail of the previous chunk, for matches across chunks
    for (off_t at = start; at < stop && !found;) {
      size_t want = static_cast<size_t>(std::min<off_t>(stop - at, static_cast<off_t>(chunk)));
      buf.resize(want);
      ssize_t n = ::pread(fd, buf.data(), want, at);
      if (n <= 0) break;
      buf.resize(static_cast<size_t>(n));
      *data += buf.size();
      std::string window = carry + buf;
      found = window.find(needle) != std::string::npos;
      carry = window.substr(window.size() - std::min(window.size(), needle.size() - 1));
      at += n;
    }
    pos = stop;
  }
  ::close(fd);
  return found;
}

bool write_file(const std::string& path, const std::string& data, std::string* err) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC | O_TRUNC);
  if (fd < 0) {
    if (err) *err = strf("open(%s): %s", path.c_str(), std::strerror(errno));
    return false;
  }
  bool ok = write_all(fd, data.data(), data.size());
  if (!ok && err) *err = strf("write(%s): %s", path.c_str(), std::strerror(errno));
  ::close(fd);
  return ok;
}

bool contains(const std::string& hay, const std::string& needle) { return hay.find(needle) != std::string::npos; }

bool Vma::has_flag(const std::string& f) const {
  std::istringstream in(vmflags);
  std::string w;
  while (in >> w)
    if (w == f) return true;
  return false;
}

namespace {
bool parse_vma_line(const std::string& line, Vma* v) {
  unsigned long s = 0, e = 0;
  char perms[8] = {};
  int off = 0;
  if (std::sscanf(line.c_str(), "%lx-%lx %7s %*s %*s %*s %n", &s, &e, perms, &off) < 3) return false;
  v->start = s;
  v->end = e;
  v->perms = perms;
  v->path = off > 0 && static_cast<size_t>(off) <= line.size() ? line.substr(static_cast<size_t>(off)) : "";
  while (!v->path.empty() && (v->path.back() == ' ' || v->path.back() == '\n')) v->path.pop_back();
  return true;
}

std::string proc_path(pid_t pid, const char* file) {
  return pid ? strf("/proc/%d/%s", pid, file) : strf("/proc/self/%s", file);
}
}  // namespace

std::vector<Vma> read_maps(pid_t pid) {
  std::vector<Vma> out;
  std::istringstream in(read_file(proc_path(pid, "maps")));
  std::string line;
  while (std::getline(in, line)) {
    Vma v;
    if (parse_vma_line(line, &v)) out.push_back(v);
  }
  return out;
}

std::vector<Vma> read_smaps(pid_t pid) {
  std::vector<Vma> out;
  std::istringstream in(read_file(proc_path(pid, "smaps")));
  std::string line;
  while (std::getline(in, line)) {
    std::string first = line.substr(0, line.find(' '));
    if (!first.empty() && first.back() == ':') {
      if (out.empty()) continue;
      Vma& v = out.back();
      std::string value = line.substr(first.size());
      if (first == "VmFlags:") v.vmflags = value;
      else if (first == "Rss:") v.rss_kb = std::strtoul(value.c_str(), nullptr, 10);
      else if (first == "Size:") v.size_kb = std::strtoul(value.c_str(), nullptr, 10);
      continue;
    }
    Vma v;
    if (parse_vma_line(line, &v)) out.push_back(v);
  }
  return out;
}

std::optional<Vma> vma_of(const void* p, bool smaps) {
  auto a = reinterpret_cast<uintptr_t>(p);
  for (const Vma& v : smaps ? read_smaps() : read_maps())
    if (a >= v.start && a < v.end) return v;
  return std::nullopt;
}

size_t count_vmas(pid_t pid) { return read_maps(pid).size(); }

bool is_secretmem(const Vma& v) { return v.path.rfind("/secretmem", 0) == 0; }

long status_kb(const char* field) {
  std::istringstream in(read_file("/proc/self/status"));
  std::string line;
  std::string key = std::string(field) + ":";
  while (std::getline(in, line))
    if (line.rfind(key, 0) == 0) return std::strtol(line.c_str() + key.size(), nullptr, 10);
  return -1;
}

std::vector<uintptr_t> hex_numbers(const std::string& text) {
  std::vector<uintptr_t> out;
  for (size_t i = 0; i + 2 < text.size(); ++i) {
    if (text[i] == '0' && (text[i + 1] == 'x' || text[i + 1] == 'X') && std::isxdigit(static_cast<unsigned char>(text[i + 2]))) {
      out.push_back(static_cast<uintptr_t>(std::strtoull(text.c_str() + i + 2, nullptr, 16)));
      i += 2;
      while (i < text.size() && std::isxdigit(static_cast<unsigned char>(text[i]))) ++i;
    }
  }
  return out;
}

bool names_pointer(const std::string& text, const void* p) {
  for (uintptr_t v : hex_numbers(text))
    if (v == reinterpret_cast<uintptr_t>(p)) return true;
  return false;
}

std::string make_temp_dir() {
  std::string base = std::filesystem::temp_directory_path().string() + "/exmem-test-XXXXXX";
  std::vector<char> buf(base.begin(), base.end());
  buf.push_back('\0');
  if (!::mkdtemp(buf.data())) return {};
  return std::string(buf.data());
}

void remove_tree(const std::string& dir) {
  std::error_code ec;
  if (!dir.empty()) std::filesystem::remove_all(dir, ec);
}

// ---- Pipes -------------------------------------------------------------------------

bool write_all(int fd, const void* p, size_t n) {
  auto* b = static_cast<const char*>(p);
  while (n) {
    ssize_t w = ::write(fd, b, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    b += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

bool read_all(int fd, void* p, size_t n) {
  auto* b = static_cast<char*>(p);
  while (n) {
    ssize_t r = ::read(fd, b, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    b += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

std::string last_error_text() {
  static const char* const names[] = {"EXMEM_OK",        "EXMEM_E_INVALID", "EXMEM_E_NO_SECRET",
                                      "EXMEM_E_MEMLOCK", "EXMEM_E_MAXIMUM", "EXMEM_E_NO_MEMORY",
                                      "EXMEM_E_SYSTEM",  "EXMEM_E_ALREADY", "EXMEM_E_PROTOCOL"};
  int code = exmem_last_error();
  const char* name = code >= 0 && code <= 8 ? names[code] : "unknown code";
  const char* msg = exmem_last_error_message();
  return strf("last error %s (%d): %s", name, code, msg ? msg : "(null message)");
}

const char* helper_path() {
  static const std::string path = [] {
    std::error_code ec;
    auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
    return (exe.parent_path() / "exmem_test_helper").string();
  }();
  return path.c_str();
}

}  // namespace exmem_test
