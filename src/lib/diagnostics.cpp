#include "diagnostics.hpp"

#include <cerrno>
#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>

#include <exmem/exmem.h>

#include "error.hpp"
#include "pal/pal.hpp"
#include "host/secret.hpp"

namespace exmem::diagnostics {

namespace {

using backend::Step;

void format_limit(char* buf, size_t n, uint64_t v) {
  if (v == pal::kUnlimited)
    std::snprintf(buf, n, "unlimited");
  else
    std::snprintf(buf, n, "%" PRIu64 " bytes", v);
}

int memlock_refused(size_t asked, size_t charged) {
  pal::Limit limit = pal::memlock_limit();
  char soft[48], hard[48];
  format_limit(soft, sizeof soft, limit.soft);
  format_limit(hard, sizeof hard, limit.hard);
  return detail::set_error(
      EXMEM_E_MEMLOCK,
      "RLIMIT_MEMLOCK refused %zu bytes of exclusive memory (limit %s, hard limit %s; this heap already holds "
      "%zu bytes locked). Raise it with `ulimit -l <KiB>` or `memlock` in /etc/security/limits.conf, "
      "LimitMEMLOCK= for a systemd service, or grant CAP_IPC_LOCK",
      asked, soft, hard, charged);
}

int system_failed(const char* what, size_t len, int e) {
  int code = (e == ENOMEM) ? EXMEM_E_NO_MEMORY : EXMEM_E_SYSTEM;
  return detail::set_error(code, "%s of %zu bytes failed: %s", what, len, std::strerror(e));
}

}  // namespace

int mapping_failed(const backend::Failure& f, size_t len, size_t charged) {
  int e = f.err;
  switch (f.step) {
    case Step::none:
      return EXMEM_OK;
    case Step::reserve:
      return system_failed("reserving address space", len, e);
    case Step::memfd_secret:
      if (e == EMFILE || e == ENFILE || e == ENOMEM) return system_failed("memfd_secret", len, e);
      return detail::set_error(EXMEM_E_NO_SECRET, "memfd_secret failed: %s (%s)", std::strerror(e),
                               why_unavailable(e));
    case Step::size_secret:
      return system_failed("sizing a memfd_secret file", len, e);
    case Step::memfd_create:
      return system_failed("memfd_create", len, e);
    case Step::size_memfd:
      return system_failed("sizing a memfd file", len, e);
    case Step::map:
      if (e == EAGAIN || e == EPERM) return memlock_refused(len, charged);
      return system_failed("mapping an exclusive region", len, e);
    case Step::map_received:
      if (e == EAGAIN || e == EPERM) return memlock_refused(len, 0);
      return system_failed("mapping a received exclusive region", len, e);
    case Step::mlock:
      if (e == ENOMEM || e == EAGAIN || e == EPERM) return memlock_refused(len, charged);
      return system_failed("mlock", len, e);
    case Step::mlock_received:
      return memlock_refused(len, 0);
    case Step::dontdump:
      return system_failed("madvise(MADV_DONTDUMP)", len, e);
    case Step::wipeonfork:
      return system_failed("madvise(MADV_WIPEONFORK)", len, e);
    case Step::dontfork:
      return system_failed("madvise(MADV_DONTFORK)", len, e);
    case Step::protect:
      return system_failed("mprotect of a vault", len, e);
    case Step::open_zero:
      return detail::set_error(EXMEM_E_SYSTEM,
                               "cannot open /dev/zero to fault in a %zu-byte region: %s (exmem needs /dev/zero)", len,
                               std::strerror(e));
    case Step::fault_in:
      return detail::set_error(EXMEM_E_NO_MEMORY,
                               "the kernel could not provide page %zu of a %zu-byte exclusive region (%s): out of "
                               "memory",
                               f.page, len, std::strerror(e));
  }
  return detail::set_error(EXMEM_E_SYSTEM, "a system call failed: %s", std::strerror(e));
}

// The same sentence `exmem probe` gives (src/host): the kernel's release,
// secretmem.enable on the command line and in /sys/module, seccomp.
const char* why_unavailable(int e) {
  if (e == 0) return "available";
  thread_local char why[768];
  host::why_secret_unavailable(e, why, sizeof why);
  return why;
}

int secret_required(int e) {
  return detail::set_error(EXMEM_E_NO_SECRET,
                           "memfd_secret is unavailable (%s: %s) and the policy is EXMEM_REQUIRE_SECRET",
                           std::strerror(e), why_unavailable(e));
}

void announce_fallback(int e) {
  // why_unavailable() words up to 767 bytes: room for it and the sentence.
  char line[1280];
  int n = std::snprintf(line, sizeof line,
                        "exmem: memfd_secret is unavailable (%s: %s); falling back to locked memory (mlock + "
                        "MADV_DONTDUMP + guard pages), which the kernel can still read; exmem_stats() counts it "
                        "in fallback_bytes\n",
                        std::strerror(e), why_unavailable(e));
  if (n > 0) pal::write_stderr(line, std::min(static_cast<size_t>(n), sizeof line - 1));
}

}  // namespace exmem::diagnostics
