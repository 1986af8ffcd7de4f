#include "host/memlock.hpp"

#include <sys/resource.h>

#include <cinttypes>
#include <cstdio>

#include "host/buffer_writer.hpp"
#include "host/proc_text.hpp"

namespace exmem::host {

namespace {

std::optional<std::uint64_t> limit_of(std::uint64_t v) {
  if (v == kNoLimit) return std::nullopt;
  return v;
}

}  // namespace

MemlockFacts memlock_facts(std::uint64_t soft, std::uint64_t hard, std::string_view status) {
  MemlockFacts m;
  m.soft = limit_of(soft);
  m.hard = limit_of(hard);
  if (const auto kb = key_value(status, "VmLck")) m.locked_bytes = *kb * 1024;
  if (const auto eff = status_hex(status, "CapEff")) {
    m.caps_known = true;
    m.cap_ipc_lock = has_cap(*eff, kCapIpcLock);
  }
  return m;
}

MemlockFacts memlock_facts() {
  rlimit rl{RLIM_INFINITY, RLIM_INFINITY};
  (void)::getrlimit(RLIMIT_MEMLOCK, &rl);
  const auto as_bytes = [](rlim_t v) { return v == RLIM_INFINITY ? kNoLimit : static_cast<std::uint64_t>(v); };
  char status[4096];
  const ssize_t n = read_file("/proc/self/status", status, sizeof status);
  return memlock_facts(as_bytes(rl.rlim_cur), as_bytes(rl.rlim_max), n >= 0 ? std::string_view(status) : "");
}

std::size_t format_limit(const std::optional<std::uint64_t>& limit, char* buf, std::size_t size) {
  detail::BufferWriter w(buf, size);
  if (!limit) {
    w.add("unlimited");
  } else {
    char b[32];
    format_bytes(*limit, b, sizeof b);
    w.add("%s (%" PRIu64 " bytes)", b, *limit);
  }
  return w.length();
}

std::string limit_text(const std::optional<std::uint64_t>& limit) {
  return detail::worded([&](char* b, std::size_t n) { return format_limit(limit, b, n); });
}

std::size_t word_memlock_limit(const MemlockFacts& m, char* buf, std::size_t size) {
  detail::BufferWriter w(buf, size);
  if (m.cap_ipc_lock) {
    w.add("limit ignored: CAP_IPC_LOCK is in the effective set, so memfd_secret mappings (and mlock) are not "
          "limited by RLIMIT_MEMLOCK");
  } else if (!m.soft) {
    w.add("no limit: RLIMIT_MEMLOCK is unlimited");
  } else {
    char b[32];
    format_bytes(*m.soft, b, sizeof b);
    w.add("this process may map at most %s of memfd_secret memory (and mlock) in total: mappings are charged "
          "to RLIMIT_MEMLOCK at mmap time and refused with EAGAIN beyond it%s",
          b, m.caps_known ? "" : " (CapEff unreadable: capabilities unknown)");
  }
  return w.length();
}

std::size_t word_memlock_refusal(const MemlockFacts& m, std::uint64_t asked, int err, char* buf,
                                 std::size_t size) {
  char asked_text[32], soft[64], hard[64], locked[32];
  format_bytes(asked, asked_text, sizeof asked_text);
  format_limit(m.soft, soft, sizeof soft);
  format_limit(m.hard, hard, sizeof hard);
  if (m.locked_bytes) {
    format_bytes(*m.locked_bytes, locked, sizeof locked);
  } else {
    std::snprintf(locked, sizeof locked, "unknown");
  }
  const char* sym = errno_symbol(err);
  detail::BufferWriter w(buf, size);
  w.add("RLIMIT_MEMLOCK refused the mapping (%s): asked %" PRIu64
        " bytes (%s), soft limit %s, already locked by this process %s. Raise the limit with `ulimit -l KIB` "
        "(up to the hard limit: %s), a `memlock` line in /etc/security/limits.conf (LimitMEMLOCK= for a "
        "systemd service), or run with CAP_IPC_LOCK.",
        sym ? sym : "errno", asked, asked_text, soft, locked, hard);
  return w.length();
}

std::string memlock_limit_meaning(const MemlockFacts& facts) {
  return detail::worded([&](char* b, std::size_t n) { return word_memlock_limit(facts, b, n); });
}

std::string memlock_refusal(const MemlockFacts& facts, std::uint64_t asked, int err) {
  return detail::worded([&](char* b, std::size_t n) { return word_memlock_refusal(facts, asked, err, b, n); });
}

}  // namespace exmem::host
