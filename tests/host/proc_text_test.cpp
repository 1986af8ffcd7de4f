// host/'s parsing of /proc and /sys text, on fixture text: meminfo, vmstat,
// status, the kernel command line, pagemap entries and maps lines.
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include <gtest/gtest.h>

#include "host/host.hpp"

namespace {

namespace host = exmem::host;

constexpr std::string_view kMeminfo =
    "MemTotal:       24683620 kB\n"
    "MemAvailable:   23890668 kB\n"
    "HugePages_Total:       0\n"
    "DirectMap4k:      120832 kB\n"
    "DirectMap2M:    25044992 kB\n";

constexpr std::string_view kVmstat =
    "nr_free_pages 123\n"
    "direct_map_level2_splits 49\n"
    "direct_map_level3_splits 0\n"
    "direct_map_level2_collapses 2\n";

constexpr std::string_view kStatus =
    "Name:\tx\n"
    "VmLck:\t     128 kB\n"
    "CapInh:\t0000000000000000\n"
    "CapEff:\t000001fffeffffff\n"
    "Seccomp:\t2\n"
    "Seccomp_filters:\t1\n";

TEST(ProcText, ReadsKeyValueLinesOfMeminfoAndVmstat) {
  EXPECT_EQ(host::key_value(kMeminfo, "MemTotal"), 24683620U);
  EXPECT_EQ(host::key_value(kMeminfo, "DirectMap4k"), 120832U);
  EXPECT_EQ(host::key_value(kMeminfo, "HugePages_Total"), 0U);
  EXPECT_FALSE(host::key_value(kMeminfo, "DirectMap1G").has_value()) << "an absent field must stay absent, not 0";
  EXPECT_FALSE(host::key_value(kMeminfo, "DirectMap").has_value()) << "a prefix of a key is not the key";
  EXPECT_EQ(host::key_value(kVmstat, "direct_map_level2_splits"), 49U);
  EXPECT_EQ(host::key_value(kVmstat, "direct_map_level3_splits"), 0U);
  EXPECT_FALSE(host::key_value(kVmstat, "direct_map_level3_collapses").has_value());
  EXPECT_FALSE(host::key_value("", "MemTotal").has_value());
  EXPECT_FALSE(host::key_value("Name:\tbash\n", "Name").has_value()) << "not a number";
}

TEST(ProcText, ReadsStatusFields) {
  EXPECT_EQ(host::key_value(kStatus, "Seccomp"), 2U) << "not Seccomp_filters";
  EXPECT_EQ(host::key_value(kStatus, "VmLck"), 128U);
  const auto eff = host::status_hex(kStatus, "CapEff");
  ASSERT_TRUE(eff.has_value());
  EXPECT_EQ(*eff, 0x000001fffeffffffULL);
  EXPECT_TRUE(host::has_cap(*eff, host::kCapIpcLock));
  EXPECT_TRUE(host::has_cap(*eff, host::kCapSysAdmin));
  EXPECT_FALSE(host::has_cap(*eff, 24));
  EXPECT_FALSE(host::has_cap(*eff, 64));
  EXPECT_EQ(host::status_hex(kStatus, "CapInh"), 0U);
  EXPECT_FALSE(host::status_hex(kStatus, "CapAmb").has_value());
  EXPECT_FALSE(host::status_hex("CapEff:\tzz\n", "CapEff").has_value());
}

TEST(ProcText, FindsKernelParametersBeforeInitArguments) {
  EXPECT_EQ(host::cmdline_param("quiet secretmem.enable=0 ro", "secretmem.enable"),
            std::optional<std::string_view>("0"));
  EXPECT_EQ(host::cmdline_param("secretmem.enable=0 secretmem.enable=1", "secretmem.enable"),
            std::optional<std::string_view>("1"));
  EXPECT_FALSE(host::cmdline_param("quiet ro -- secretmem.enable=0", "secretmem.enable").has_value());
  EXPECT_FALSE(host::cmdline_param("xsecretmem.enable=0 secretmem.enabled=0", "secretmem.enable").has_value());
  EXPECT_EQ(host::cmdline_param("nohibernate\n", "nohibernate"), std::optional<std::string_view>(""));
  EXPECT_TRUE(host::kernel_bool_false("0"));
  EXPECT_TRUE(host::kernel_bool_false("n"));
  EXPECT_TRUE(host::kernel_bool_false("N"));
  EXPECT_TRUE(host::kernel_bool_false("off"));
  EXPECT_TRUE(host::kernel_bool_false("false"));
  EXPECT_FALSE(host::kernel_bool_false("1"));
  EXPECT_FALSE(host::kernel_bool_false("on"));
  EXPECT_FALSE(host::kernel_bool_false("Y"));
  EXPECT_FALSE(host::kernel_bool_false(""));
}

TEST(ProcText, ReadsWordListsAndKernelReleases) {
  EXPECT_TRUE(host::lists_word("freeze mem disk\n", "disk"));
  EXPECT_FALSE(host::lists_word("freeze mem\n", "disk"));
  EXPECT_FALSE(host::lists_word("diskette\n", "disk"));
  EXPECT_FALSE(host::lists_word("", "disk"));
  EXPECT_EQ(host::kernel_major_minor("6.18.44-foo"), std::make_pair(6U, 18U));
  EXPECT_EQ(host::kernel_major_minor("5.14"), std::make_pair(5U, 14U));
  EXPECT_EQ(host::kernel_major_minor("garbage"), std::make_pair(0U, 0U));
  EXPECT_EQ(host::kernel_major_minor("6"), std::make_pair(0U, 0U));
}

TEST(ProcText, NamesErrnoValuesAndSizes) {
  EXPECT_STREQ(host::errno_symbol(ENOSYS), "ENOSYS");
  EXPECT_EQ(host::errno_symbol(EXDEV), nullptr);
  EXPECT_EQ(host::errno_name(EAGAIN), "EAGAIN");
  EXPECT_EQ(host::errno_name(EXDEV), "errno " + std::to_string(EXDEV));
  EXPECT_EQ(host::errno_text(ENOMEM), std::string("ENOMEM (") + std::strerror(ENOMEM) + ")");
  EXPECT_EQ(host::bytes_text(8u << 20), "8 MiB");
  EXPECT_EQ(host::bytes_text(12288), "12 KiB");
  EXPECT_EQ(host::bytes_text(1000), "1000 B");
  EXPECT_EQ(host::bytes_text(0), "0 B");
}

// A file with the given contents, removed at the end of the test.
struct TempFile {
  std::string path;
  explicit TempFile(std::string_view text) {
    char name[] = "/tmp/exmem_host_testXXXXXX";
    const int fd = ::mkstemp(name);
    EXPECT_GE(fd, 0);
    path = name;
    EXPECT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
    ::close(fd);
  }
  ~TempFile() { ::unlink(path.c_str()); }
};

TEST(ProcText, ReadsFilesWholeOrIntoABuffer) {
  const TempFile f(kMeminfo);
  EXPECT_EQ(host::read_text(f.path.c_str()), std::optional<std::string>(std::string(kMeminfo)));
  char small[16];
  EXPECT_EQ(host::read_file(f.path.c_str(), small, sizeof small), 15) << "cut to fit, NUL-terminated";
  EXPECT_EQ(std::string(small), std::string(kMeminfo.substr(0, 15)));
  EXPECT_FALSE(host::read_text("/nonexistent/exmem").has_value());
  EXPECT_EQ(host::read_file("/nonexistent/exmem", small, sizeof small), -1);
  EXPECT_EQ(errno, ENOENT);
}

TEST(DirectMap, ParsesTheCountersAndKeepsAbsentFieldsAbsent) {
  const host::DirectMapCounters d = host::parse_direct_map(kMeminfo, kVmstat);
  EXPECT_EQ(d.dm4k_kb, 120832U);
  EXPECT_EQ(d.dm2m_kb, 25044992U);
  EXPECT_FALSE(d.dm1g_kb.has_value());
  EXPECT_EQ(d.total_kb(), 120832U + 25044992U);
  EXPECT_EQ(d.level2_splits, 49U);
  EXPECT_EQ(d.level3_splits, 0U);
  EXPECT_EQ(d.level2_collapses, 2U);
  EXPECT_FALSE(d.level3_collapses.has_value());

  const host::DirectMapCounters none = host::parse_direct_map("MemTotal: 1 kB\n", "nr_free_pages 1\n");
  EXPECT_FALSE(none.total_kb().has_value()) << "no DirectMap field (not x86): no total either";
  EXPECT_FALSE(none.level2_splits.has_value());

  EXPECT_EQ(host::counter_delta(49U, 52U), 3);
  EXPECT_EQ(host::counter_delta(52U, 49U), -3);
  EXPECT_FALSE(host::counter_delta(std::nullopt, 52U).has_value());
}

TEST(DirectMap, ReadsThisMachinesCounters) {
  const auto meminfo = host::read_text("/proc/meminfo");
  ASSERT_TRUE(meminfo.has_value());
  const host::DirectMapCounters d = host::read_direct_map();
  EXPECT_EQ(d.dm4k_kb.has_value(), host::key_value(*meminfo, "DirectMap4k").has_value());
  EXPECT_EQ(d.dm2m_kb.has_value(), host::key_value(*meminfo, "DirectMap2M").has_value());
}

TEST(Pagemap, DecodesEntriesAndCountsRegions) {
  const std::uint64_t entry = 0xa1000000001069e6ULL;  // present, exclusive, file page
  EXPECT_TRUE(host::pagemap_present(entry));
  EXPECT_EQ(host::pagemap_pfn(entry), 0x1069e6U);
  EXPECT_FALSE(host::pagemap_present(0x1069e6ULL));
  EXPECT_EQ(host::pagemap_pfn(0x8000000000000000ULL), 0U) << "present, pfn hidden (not root)";
  EXPECT_EQ(host::distinct_regions({0, 1, 511, 512, 1023, 1024, 5 * 512 + 7}, 9), 4U);
  EXPECT_EQ(host::distinct_regions({}, 9), 0U);
  EXPECT_EQ(host::frames_shift(std::size_t{2} << 20, 4096), 9U);
  EXPECT_EQ(host::frames_shift(std::size_t{2} << 20, 65536), 5U);
}

TEST(Pagemap, FindsSecretMappingsInMaps) {
  constexpr std::string_view kMaps =
      "55d0c0a00000-55d0c0a21000 r--p 00000000 00:1f 123 /usr/bin/cat\n"
      "7f1200000000-7f1200800000 rw-s 00000000 00:01 4567 /secretmem (deleted)\n"
      "7f1300000000-7f1300010000 rw-s 00000000 00:01 4568 /memfd:exmem (deleted)\n"
      "7f1400000000-7f1400001000 rw-s 00000000 00:01 4569 /secretmem (deleted)";
  const auto ranges = host::parse_secret_mappings(kMaps);
  ASSERT_EQ(ranges.size(), 2U);
  EXPECT_EQ(ranges[0], (host::Range{0x7f1200000000, 0x7f1200800000}));
  EXPECT_EQ(ranges[1], (host::Range{0x7f1400000000, 0x7f1400001000}));
  EXPECT_TRUE(host::parse_secret_mappings("").empty());
  EXPECT_TRUE(host::parse_secret_mappings("zz-yy rw-s 0 0 0 /secretmem\n").empty());
}

}  // namespace
