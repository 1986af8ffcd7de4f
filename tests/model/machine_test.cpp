// Tests of the model root: boot layout, sizes, and the shared vocabulary.
#include <gtest/gtest.h>

#include "helpers.hpp"
#include "model/machine.hpp"

namespace exmem::model {
namespace {

using testing::join;

TEST(Machine, BootsWithNoInvariantViolations) {
  MachineConfig c;
  c.ram_bytes = 1 * GiB;
  Machine m(c);
  EXPECT_SOUND(m);
}

TEST(Machine, PutsRamAboveThePciHoleWhenItDoesNotFitBelow) {
  MachineConfig c;
  c.ram_bytes = 8 * GiB;
  Machine m(c);
  ASSERT_EQ(m.phys().ram().size(), 2u);
  EXPECT_EQ(pfn_to_bytes(m.phys().ram()[0].end), 3 * GiB);
  EXPECT_EQ(pfn_to_bytes(m.phys().ram()[1].start), 4 * GiB);
  EXPECT_EQ(pfn_to_bytes(m.phys().ram()[1].end), 9 * GiB);
  EXPECT_EQ(m.phys().zone(phys::ZONE_DMA32).present_pages, bytes_to_pfn(3 * GiB));
  EXPECT_EQ(m.phys().zone(phys::ZONE_NORMAL).present_pages, bytes_to_pfn(5 * GiB));
  EXPECT_SOUND(m);
}

TEST(Machine, RejectsASizeThatIsNotAWholeNumberOf2MiB) {
  MachineConfig c;
  c.ram_bytes = 1 * GiB + 4096;
  EXPECT_THROW(Machine m(c), std::invalid_argument);
}

TEST(Machine, RejectsAnUnknownPolicyNamingTheKnownOnes) {
  MachineConfig c = testing::small_config();
  c.policy = "no-such-policy";
  try {
    Machine m(c);
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("no-such-policy"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("upstream"), std::string::npos);
  }
}

TEST(Machine, KeepsTheModelUnderTwoBytesPerFrame) {
  MachineConfig c;
  c.ram_bytes = 16 * GiB;
  Machine m(c);
  const double per_frame =
      static_cast<double>(m.model_bytes()) / static_cast<double>(m.phys().total_ram_pages());
  EXPECT_LT(per_frame, 2.0);
}

TEST(Units, ParsesBinarySizes) {
  std::uint64_t v = 0;
  EXPECT_TRUE(parse_size("64GiB", v));
  EXPECT_EQ(v, 64 * GiB);
  EXPECT_TRUE(parse_size("1TiB", v));
  EXPECT_EQ(v, TiB);
  EXPECT_TRUE(parse_size("512M", v));
  EXPECT_EQ(v, 512 * MiB);
  EXPECT_TRUE(parse_size("4096", v));
  EXPECT_EQ(v, 4096u);
}

TEST(Units, RejectsMalformedSizes) {
  std::uint64_t v = 7;
  EXPECT_FALSE(parse_size("", v));
  EXPECT_FALSE(parse_size("GiB", v));
  EXPECT_FALSE(parse_size("64GB", v));
  EXPECT_FALSE(parse_size("1.5TiB", v));
  EXPECT_FALSE(parse_size("99999999999999999999TiB", v));
  EXPECT_EQ(v, 7u);
}

TEST(Units, NamesErrnos) {
  EXPECT_EQ(errno_name(-ENOMEM), "ENOMEM");
  EXPECT_EQ(errno_name(EINVAL), "EINVAL");
  EXPECT_EQ(errno_name(0), "OK");
}

}  // namespace
}  // namespace exmem::model
