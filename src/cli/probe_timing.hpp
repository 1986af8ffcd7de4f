// Timing helpers of `exmem probe`'s measurements (probe_measure.cpp, probe_cost.cpp).
#pragma once

#include <time.h>

#include <cstdint>

namespace exmem::cli::probe_timing {

// CLOCK_MONOTONIC in ns.
inline std::int64_t now_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000000000 + static_cast<std::int64_t>(ts.tv_nsec);
}

// Keeps the compiler from moving memory accesses across the clock readings.
inline void compiler_barrier() { asm volatile("" ::: "memory"); }

// The time of one write to page: its first touch, when it is not yet mapped.
inline std::int64_t timed_touch(char* page) {
  volatile char* p = page;
  compiler_barrier();
  const std::int64_t t0 = now_ns();
  compiler_barrier();
  *p = 1;
  compiler_barrier();
  const std::int64_t t1 = now_ns();
  compiler_barrier();
  return t1 - t0;
}

}  // namespace exmem::cli::probe_timing
