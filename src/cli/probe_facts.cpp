// `exmem probe`: the kernel's state, read through host/.
#include <fcntl.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <fmt/format.h>

#include "probe_report.hpp"

namespace exmem::cli::probe {

System read_system() {
  System s;
  utsname u{};
  if (::uname(&u) == 0) {
    s.kernel = u.release;
    s.machine = u.machine;
  }
  s.page_size = host::page_size();
  if (const auto mi = host::read_text("/proc/meminfo")) {
    s.mem_total_kb = host::key_value(*mi, "MemTotal");
    s.mem_available_kb = host::key_value(*mi, "MemAvailable");
  }
  s.euid = static_cast<unsigned>(::geteuid());
  if (const auto st = host::read_text("/proc/self/status")) s.cap_eff = host::status_hex(*st, "CapEff");
  return s;
}

Hibernation probe_hibernation(const Secret& secret) {
  Hibernation h;
  const auto st = host::read_text("/sys/power/state");
  h.state_file = st.has_value();
  if (const auto d = host::read_text("/sys/power/disk")) {
    h.disk_file = std::string(host::trim(*d));
    h.supported = true;
  } else if (::access("/sys/power", F_OK) == 0) {
    h.supported = false;
  }
  if (!st) {
    h.note = "/sys/power/state is absent (no sysfs here, or a kernel without power management): "
             "hibernation cannot be read.";
    return h;
  }
  h.state = std::string(host::trim(*st));
  h.disk_now = host::lists_word(*st, "disk");

  if (secret.available()) {
    const int fd = host::memfd_secret(O_CLOEXEC);
    if (fd >= 0) {
      // The kernel counts secretmem users from file creation, not from mmap.
      if (const auto st2 = host::read_text("/sys/power/state")) h.disk_with_secret = host::lists_word(*st2, "disk");
      ::close(fd);
    }
  }

  if (*h.disk_now) {
    if (!h.disk_with_secret) {
      h.note = "hibernation is available now; the effect of a memfd_secret file could not be observed "
               "(memfd_secret unavailable).";
    } else if (!*h.disk_with_secret) {
      h.blocked = true;
      h.note = "hibernation is available now and blocked while any memfd_secret file exists: the kernel's "
               "hibernation_available() is false while secretmem is active. A process holding exclusive "
               "memory blocks hibernation for the whole system.";
    } else {
      h.blocked = false;
      h.note = "unexpected: /sys/power/state still lists \"disk\" while a memfd_secret file is open.";
    }
  } else if (h.supported && !*h.supported) {
    h.note = "this kernel offers no hibernation (no /sys/power/disk: built without CONFIG_HIBERNATION), so "
             "secret memory blocks nothing here. On kernels with hibernation, any open memfd_secret file "
             "disables it system-wide.";
  } else {
    h.note = fmt::format(
        "hibernation is unavailable already (/sys/power/disk reads \"{}\"): nohibernate on the command line, "
        "kernel lockdown, or another process holding a memfd_secret file; the effect of secret memory "
        "cannot be observed now.",
        h.disk_file.value_or("?"));
  }
  return h;
}

Report read_facts() {
  Report r;
  r.sys = read_system();
  r.secret.facts = host::check_secret();
  r.secret.reason = host::secret_reason(r.secret.facts);
  r.memlock.facts = host::memlock_facts();
  r.memlock.meaning = host::memlock_limit_meaning(r.memlock.facts);
  r.hib = probe_hibernation(r.secret);
  r.dm = host::read_direct_map();
  return r;
}

}  // namespace exmem::cli::probe
