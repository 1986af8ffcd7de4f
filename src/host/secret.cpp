#include "host/secret.hpp"

#include <fcntl.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstring>
#include <string_view>

#include "host/buffer_writer.hpp"
#include "host/proc_text.hpp"

namespace exmem::host {

namespace {

// Copies v into a fixed field, cut to fit.
template <std::size_t N>
void copy_field(char (&field)[N], std::string_view v) {
  const std::size_t n = v.size() < N - 1 ? v.size() : N - 1;
  std::memcpy(field, v.data(), n);
  field[n] = '\0';
}

}  // namespace

int memfd_secret(unsigned flags) { return static_cast<int>(::syscall(kSysMemfdSecret, flags)); }

SecretFacts secret_facts(int err) {
  SecretFacts f;
  f.err = err;
  utsname u{};
  if (::uname(&u) == 0) copy_field(f.kernel, u.release);
  char buf[4096];
  if (read_file("/sys/module/secretmem/parameters/enable", buf, sizeof buf) >= 0) {
    f.has_enable_param = true;
    copy_field(f.enable_param, trim(buf));
  }
  if (read_file("/proc/cmdline", buf, sizeof buf) >= 0) {
    if (const auto v = cmdline_param(buf, "secretmem.enable")) {
      f.has_cmdline_enable = true;
      copy_field(f.cmdline_enable, *v);
    }
  }
  if (read_file("/proc/self/status", buf, sizeof buf) >= 0) f.seccomp_mode = key_value(buf, "Seccomp");
  return f;
}

SecretFacts check_secret() {
  const int fd = memfd_secret(O_CLOEXEC);
  const int err = fd < 0 ? errno : 0;
  if (fd >= 0) ::close(fd);
  return secret_facts(err);
}

std::size_t format_errno(int err, char* buf, std::size_t size) {
  char tmp[128];
  const char* desc = ::strerror_r(err, tmp, sizeof tmp);
  detail::BufferWriter w(buf, size);
  if (const char* sym = errno_symbol(err)) {
    w.add("%s (%s)", sym, desc);
  } else {
    w.add("errno %d (%s)", err, desc);
  }
  return w.length();
}

std::string errno_text(int err) {
  return detail::worded([&](char* b, std::size_t n) { return format_errno(err, b, n); });
}

std::size_t word_secret_unavailable(const SecretFacts& f, char* buf, std::size_t size) {
  detail::BufferWriter w(buf, size);
  const bool seccomp_filter = f.seccomp_mode && *f.seccomp_mode == 2;
  switch (f.err) {
    case 0:
      w.add("available: memfd_secret(O_CLOEXEC) returned a file descriptor");
      break;
    case ENOSYS: {
      const auto [major, minor] = kernel_major_minor(f.kernel);
      const bool known = major != 0;
      const bool before_5_14 = known && (major < 5 || (major == 5 && minor < 14));
      const bool before_6_5 = known && (major < 6 || (major == 6 && minor < 5));
      if (f.has_cmdline_enable && kernel_bool_false(f.cmdline_enable)) {
        w.add("disabled on the kernel command line (secretmem.enable=%s in /proc/cmdline); remove it, or set "
              "secretmem.enable=1, and reboot.",
              f.cmdline_enable);
      } else if (before_5_14) {
        w.add("not in this kernel: memfd_secret appeared in Linux 5.14, this is %s.", f.kernel);
      } else if (before_6_5 && !f.has_cmdline_enable) {
        w.add("off by default before Linux 6.5 (this is %s): boot with secretmem.enable=1.", f.kernel);
      } else if (f.has_enable_param && kernel_bool_false(f.enable_param)) {
        w.add("disabled: /sys/module/secretmem/parameters/enable reads N (secretmem.enable=0 at boot).");
      } else if (f.has_enable_param && seccomp_filter) {
        w.add("secretmem is built in and enabled (/sys/module/secretmem/parameters/enable reads %s), so the "
              "ENOSYS most likely comes from the seccomp filter active on this process (Seccomp: 2), as "
              "container runtimes answer for system calls their profile does not know.",
              f.enable_param);
      } else if (f.has_enable_param) {
        w.add("secretmem is built in and enabled (/sys/module/secretmem/parameters/enable reads %s), but the "
              "architecture cannot change the direct map one page at a time (can_set_direct_map() is false; "
              "on arm64 that needs rodata=full or a similar setting).",
              f.enable_param);
      } else {
        w.add("not supported by this kernel: built without CONFIG_SECRETMEM (no /sys/module/secretmem), or the "
              "architecture cannot change the direct map one page at a time; secretmem.enable is not set to 0 "
              "on /proc/cmdline.%s",
              seccomp_filter ? " A seccomp filter is active on this process (Seccomp: 2), and filters may also "
                               "answer ENOSYS."
                             : "");
      }
      break;
    }
    case EPERM:
    case EACCES:
      if (f.seccomp_mode) {
        w.add("refused by a security policy: a seccomp filter (Seccomp mode %" PRIu64
              " in /proc/self/status) or a Linux security module denies the system call.",
              *f.seccomp_mode);
      } else {
        w.add("refused by a security policy: a seccomp filter (Seccomp mode unknown in /proc/self/status) or a "
              "Linux security module denies the system call.");
      }
      break;
    case EMFILE:
    case ENFILE:
      w.add("out of file descriptors (per-process or system-wide limit).");
      break;
    case ENOMEM:
      w.add("the kernel could not allocate the file (out of memory).");
      break;
    default: {
      char e[192];
      format_errno(f.err, e, sizeof e);
      w.add("memfd_secret failed with %s.", e);
      break;
    }
  }
  return w.length();
}

std::size_t why_secret_unavailable(int err, char* buf, std::size_t size) {
  return word_secret_unavailable(secret_facts(err), buf, size);
}

std::string secret_reason(const SecretFacts& facts) {
  return detail::worded([&](char* b, std::size_t n) { return word_secret_unavailable(facts, b, n); });
}

}  // namespace exmem::host
