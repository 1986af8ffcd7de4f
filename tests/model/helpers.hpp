// Helpers shared by the model's tests: small machines and invariant checks.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "model/machine.hpp"

namespace exmem::model::testing {

inline MachineConfig small_config(std::uint64_t ram = 256 * MiB, bool gbpages = true,
                                  unsigned cpus = 2) {
  MachineConfig c;
  c.ram_bytes = ram;
  c.cpus = cpus;
  c.direct_gbpages = gbpages;
  c.kernel_image_bytes = 8 * MiB;
  return c;
}

inline std::unique_ptr<Machine> small_machine(std::uint64_t ram = 256 * MiB, bool gbpages = true,
                                              unsigned cpus = 2) {
  return std::make_unique<Machine>(small_config(ram, gbpages, cpus));
}

inline std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += x + "\n";
  return s;
}

#define EXPECT_SOUND(machine) EXPECT_TRUE((machine).check().empty()) << join((machine).check())

}  // namespace exmem::model::testing
