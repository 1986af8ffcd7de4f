// `exmem probe --map` run as a real process on this machine: either the direct
// map read through /proc/kcore, its totals reconciled with /proc/meminfo, or
// (as on this project's VM, whose kernel has no /proc/kcore) the refusal that
// host::read_kernel_map() gives here, with why and what would allow it, exit 3.
// The reading itself is tested in tests/host (synthetic page tables) and
// against Debian's kernel under QEMU (tests/qemu).
#include <cstdint>
#include <filesystem>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "command.hpp"
#include "host/host.hpp"

namespace {

namespace host = exmem::host;
using exmem::cli_test::run;

TEST(ProbeMap, JsonIsTheMapOrTheRefusalThisKernelGives) {
  const host::KernelMapResult here = host::read_kernel_map();
  const auto r = run("probe --map --json", false);
  const nlohmann::json j = nlohmann::json::parse(r.out).at("kernel_map");
  EXPECT_EQ(j.at("refusal"), std::string(host::refusal_name(here.refusal)));
  if (here.refusal != host::KernelMapRefusal::None) {
    EXPECT_EQ(r.status, 3) << r.out;
    EXPECT_FALSE(j.at("available").get<bool>());
    EXPECT_EQ(j.at("why"), here.why);
    EXPECT_EQ(j.at("would_allow"), here.would_allow);
    EXPECT_FALSE(j.contains("region_map"));
    return;
  }
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_TRUE(j.at("available").get<bool>());
  const nlohmann::json& rm = j.at("region_map");
  EXPECT_EQ(rm.at("regions").get<std::uint64_t>() * 2097152, j.at("phys_end").get<std::uint64_t>());
  EXPECT_EQ(j.at("agrees").at("DirectMap2M"), true);
  EXPECT_EQ(j.at("agrees").at("DirectMap4k"), true);
}

TEST(ProbeMap, TextSaysWhyAndWhatWouldAllowIt) {
  const host::KernelMapResult here = host::read_kernel_map();
  const auto r = run("probe --map", false);
  if (here.refusal != host::KernelMapRefusal::None) {
    EXPECT_EQ(r.status, 3);
    EXPECT_NE(r.out.find("why: " + here.why), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("would allow it: " + here.would_allow), std::string::npos) << r.out;
  } else {
    EXPECT_EQ(r.status, 0);
    EXPECT_NE(r.out.find("DirectMap2M"), std::string::npos) << r.out;
  }
}

TEST(ProbeMap, OutNeedsMapAndMapExcludesTheMeasurements) {
  auto r = run("probe --out /nonexistent/x", true);
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.out.find("--out requires --map"), std::string::npos) << r.out;
  r = run("probe --map --cost", true);
  EXPECT_NE(r.status, 0);
  r = run("probe --map --reserve-mib 4", true);
  EXPECT_NE(r.status, 0);
}

TEST(ProbeMap, OutWritesNothingWhenTheMapCannotBeRead) {
  if (host::read_kernel_map().refusal == host::KernelMapRefusal::None) {
    GTEST_SKIP() << "the map can be read here; the guest of tests/qemu checks --out's files";
  }
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("exmem-map-" + std::to_string(::getpid()));
  const auto r = run("probe --map --out " + dir.string(), true);
  EXPECT_EQ(r.status, 3);
  EXPECT_NE(r.out.find("nothing written"), std::string::npos) << r.out;
  EXPECT_FALSE(std::filesystem::exists(dir / "index.html"));
  std::filesystem::remove_all(dir);
}

}  // namespace
