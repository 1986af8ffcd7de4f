// host/'s diagnoses, case by case, from facts written here: why memfd_secret is
// unavailable, and what RLIMIT_MEMLOCK means and says when it refuses.
#include <cerrno>
#include <cstring>
#include <string>
#include <string_view>

#include <gtest/gtest.h>

#include "host/host.hpp"

namespace {

namespace host = exmem::host;

template <std::size_t N>
void set(char (&field)[N], std::string_view v) {
  ASSERT_LT(v.size(), N);
  std::memcpy(field, v.data(), v.size());
  field[v.size()] = '\0';
}

host::SecretFacts facts(int err, std::string_view kernel) {
  host::SecretFacts f;
  f.err = err;
  set(f.kernel, kernel);
  return f;
}

void expect_has(const std::string& text, std::string_view part) {
  EXPECT_NE(text.find(part), std::string::npos) << "missing '" << part << "' in: " << text;
}

TEST(SecretDiagnosis, Available) {
  expect_has(host::secret_reason(facts(0, "6.18.0")), "available: memfd_secret(O_CLOEXEC) returned a file descriptor");
}

TEST(SecretDiagnosis, DisabledOnTheCommandLineComesFirst) {
  host::SecretFacts f = facts(ENOSYS, "5.10.0");
  f.has_cmdline_enable = true;
  set(f.cmdline_enable, "off");
  const std::string s = host::secret_reason(f);
  expect_has(s, "disabled on the kernel command line (secretmem.enable=off in /proc/cmdline)");
  expect_has(s, "set secretmem.enable=1, and reboot");
}

TEST(SecretDiagnosis, KernelOlderThan5_14) {
  expect_has(host::secret_reason(facts(ENOSYS, "5.10.201")),
             "not in this kernel: memfd_secret appeared in Linux 5.14, this is 5.10.201.");
}

TEST(SecretDiagnosis, OffByDefaultBefore6_5) {
  expect_has(host::secret_reason(facts(ENOSYS, "6.1.0-18-amd64")),
             "off by default before Linux 6.5 (this is 6.1.0-18-amd64): boot with secretmem.enable=1.");
  host::SecretFacts on = facts(ENOSYS, "6.1.0");
  on.has_cmdline_enable = true;
  set(on.cmdline_enable, "1");
  EXPECT_EQ(host::secret_reason(on).find("off by default"), std::string::npos)
      << "secretmem.enable=1 was given: " << host::secret_reason(on);
}

TEST(SecretDiagnosis, ModuleParameterReadsN) {
  host::SecretFacts f = facts(ENOSYS, "6.18.0");
  f.has_enable_param = true;
  set(f.enable_param, "N");
  expect_has(host::secret_reason(f), "disabled: /sys/module/secretmem/parameters/enable reads N");
}

TEST(SecretDiagnosis, EnabledButASeccompFilterAnswers) {
  host::SecretFacts f = facts(ENOSYS, "6.18.0");
  f.has_enable_param = true;
  set(f.enable_param, "Y");
  f.seccomp_mode = 2;
  const std::string s = host::secret_reason(f);
  expect_has(s, "built in and enabled (/sys/module/secretmem/parameters/enable reads Y)");
  expect_has(s, "most likely comes from the seccomp filter active on this process (Seccomp: 2)");
}

TEST(SecretDiagnosis, EnabledButTheArchitectureCannot) {
  host::SecretFacts f = facts(ENOSYS, "6.18.0");
  f.has_enable_param = true;
  set(f.enable_param, "Y");
  f.seccomp_mode = 0;
  expect_has(host::secret_reason(f), "can_set_direct_map() is false");
}

TEST(SecretDiagnosis, NotBuiltIn) {
  const std::string plain = host::secret_reason(facts(ENOSYS, "6.18.0"));
  expect_has(plain, "built without CONFIG_SECRETMEM (no /sys/module/secretmem)");
  EXPECT_EQ(plain.find("seccomp"), std::string::npos) << plain;
  host::SecretFacts filtered = facts(ENOSYS, "6.18.0");
  filtered.seccomp_mode = 2;
  expect_has(host::secret_reason(filtered), "A seccomp filter is active on this process (Seccomp: 2)");
}

TEST(SecretDiagnosis, RefusedByAPolicy) {
  host::SecretFacts f = facts(EPERM, "6.18.0");
  f.seccomp_mode = 2;
  expect_has(host::secret_reason(f), "refused by a security policy: a seccomp filter (Seccomp mode 2 in /proc/self/status)");
  expect_has(host::secret_reason(facts(EACCES, "6.18.0")), "Seccomp mode unknown");
}

TEST(SecretDiagnosis, ResourceShortages) {
  expect_has(host::secret_reason(facts(EMFILE, "6.18.0")), "out of file descriptors");
  expect_has(host::secret_reason(facts(ENFILE, "6.18.0")), "out of file descriptors");
  expect_has(host::secret_reason(facts(ENOMEM, "6.18.0")), "could not allocate the file (out of memory)");
  expect_has(host::secret_reason(facts(EINVAL, "6.18.0")),
             std::string("memfd_secret failed with EINVAL (") + std::strerror(EINVAL) + ").");
}

TEST(SecretDiagnosis, WritesLikeSnprintf) {
  host::SecretFacts f = facts(ENOSYS, "5.10.0");
  const std::string whole = host::secret_reason(f);
  char small[20];
  EXPECT_EQ(host::word_secret_unavailable(f, small, sizeof small), whole.size());
  EXPECT_EQ(std::string(small), whole.substr(0, sizeof small - 1)) << "cut to fit and NUL-terminated";
  EXPECT_EQ(host::word_secret_unavailable(f, nullptr, 0), whole.size());
}

// ---- RLIMIT_MEMLOCK --------------------------------------------------------------

constexpr std::string_view kStatusWithCap = "VmLck:\t     128 kB\nCapEff:\t000001ffffffffff\n";
constexpr std::string_view kStatusWithoutCap = "VmLck:\t       0 kB\nCapEff:\t0000000000000000\n";

TEST(MemlockDiagnosis, ReadsTheFacts) {
  const host::MemlockFacts m = host::memlock_facts(8u << 20, host::kNoLimit, kStatusWithCap);
  EXPECT_EQ(m.soft, 8U << 20);
  EXPECT_FALSE(m.hard.has_value()) << "RLIM_INFINITY is no limit";
  EXPECT_EQ(m.locked_bytes, 128U * 1024);
  EXPECT_TRUE(m.caps_known);
  EXPECT_TRUE(m.cap_ipc_lock);
  const host::MemlockFacts unknown = host::memlock_facts(1, 1, "");
  EXPECT_FALSE(unknown.caps_known);
  EXPECT_FALSE(unknown.locked_bytes.has_value());
}

TEST(MemlockDiagnosis, SaysWhatTheLimitMeans) {
  expect_has(host::memlock_limit_meaning(host::memlock_facts(8u << 20, 8u << 20, kStatusWithCap)),
             "limit ignored: CAP_IPC_LOCK is in the effective set");
  expect_has(host::memlock_limit_meaning(host::memlock_facts(host::kNoLimit, host::kNoLimit, kStatusWithoutCap)),
             "no limit: RLIMIT_MEMLOCK is unlimited");
  const std::string limited = host::memlock_limit_meaning(host::memlock_facts(8u << 20, 8u << 20, kStatusWithoutCap));
  expect_has(limited, "this process may map at most 8 MiB of memfd_secret memory");
  expect_has(limited, "refused with EAGAIN beyond it");
  EXPECT_EQ(limited.find("CapEff unreadable"), std::string::npos);
  expect_has(host::memlock_limit_meaning(host::memlock_facts(8u << 20, 8u << 20, "")),
             "(CapEff unreadable: capabilities unknown)");
}

TEST(MemlockDiagnosis, NamesTheLimitTheAmountAndTheRemedies) {
  const host::MemlockFacts m = host::memlock_facts(1u << 20, 2u << 20, kStatusWithoutCap);
  const std::string s = host::memlock_refusal(m, 8u << 20, EAGAIN);
  EXPECT_EQ(s,
            "RLIMIT_MEMLOCK refused the mapping (EAGAIN): asked 8388608 bytes (8 MiB), soft limit 1 MiB (1048576 "
            "bytes), already locked by this process 0 B. Raise the limit with `ulimit -l KIB` (up to the hard "
            "limit: 2 MiB (2097152 bytes)), a `memlock` line in /etc/security/limits.conf (LimitMEMLOCK= for a "
            "systemd service), or run with CAP_IPC_LOCK.");
  expect_has(host::memlock_refusal(m, 4096, ENOMEM), "(ENOMEM)");
  expect_has(host::memlock_refusal(host::memlock_facts(1, 1, ""), 4096, EAGAIN), "already locked by this process unknown");
  EXPECT_EQ(host::limit_text(std::nullopt), "unlimited");
  EXPECT_EQ(host::limit_text(65536), "64 KiB (65536 bytes)");
}

}  // namespace
