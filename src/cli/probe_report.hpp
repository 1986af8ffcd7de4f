// `exmem probe`'s one Report: facts read from the kernel (through host/), the
// measurements, and the two renderers of it (JSON and human). probe.cpp holds
// the options; probe_facts.cpp, probe_measure.cpp and probe_render.cpp the rest.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "host/host.hpp"

namespace exmem::cli::probe {

inline constexpr std::uint64_t kMiB = std::uint64_t{1} << 20;

struct System {
  std::string kernel;
  std::string machine;
  std::size_t page_size = 4096;
  std::optional<std::uint64_t> mem_total_kb;
  std::optional<std::uint64_t> mem_available_kb;
  unsigned euid = 0;
  std::optional<std::uint64_t> cap_eff;
  bool cap(unsigned bit) const { return cap_eff && host::has_cap(*cap_eff, bit); }
};

struct Secret {
  host::SecretFacts facts;
  std::string reason;  // host's sentence for the facts
  bool available() const { return facts.err == 0; }
};

struct Memlock {
  host::MemlockFacts facts;
  std::string meaning;  // host's sentence for the facts
};

struct Hibernation {
  bool state_file = false;
  std::optional<std::string> state;
  std::optional<bool> disk_now;
  std::optional<bool> disk_with_secret;
  std::optional<bool> blocked;
  std::optional<bool> supported;
  std::optional<std::string> disk_file;
  std::string note;
};

struct FaultCost {
  bool measured = false;
  std::optional<std::string> error;
  std::uint64_t pages = 0;
  std::optional<std::int64_t> secret_median, secret_p90, anon_median, anon_p90, timer_median;
  std::optional<double> ratio;
};

struct Reserve {
  bool measured = false;
  std::optional<std::string> error;
  std::uint64_t mib = 0;
  std::uint64_t pages = 0;
  std::uint64_t asked_bytes = 0;
  std::optional<std::uint64_t> memlock_soft;
  std::optional<std::int64_t> l2_delta, l3_delta, l2_collapse_delta, dm4k_delta, dm2m_delta, dm1g_delta;
  std::optional<std::int64_t> touch_ns_per_page;
  std::optional<std::uint64_t> pages_present;
  std::optional<std::uint64_t> regions;
  std::string pagemap_status = "not measured";
  std::string pagemap_note;
  std::string interpretation;
};

struct Report {
  System sys;
  Secret secret;
  Memlock memlock;
  Hibernation hib;
  host::DirectMapCounters dm;
  FaultCost fault;
  Reserve reserve;
};

// Facts (probe_facts.cpp): the kernel's state, nothing allocated but one
// memfd_secret file opened and closed (twice: availability, hibernation).
System read_system();
Hibernation probe_hibernation(const Secret& secret);
// sys, secret, memlock, hib and dm of a Report; fault and reserve not measured.
Report read_facts();

// Measurements (probe_measure.cpp).
// First touch of `pages` memfd_secret pages against anonymous ones, from user space.
FaultCost measure_fault_cost(std::uint64_t pages, const Report& facts);
// `mib` MiB reserved through libexmem (exmem_init with .reserve, in a child
// process): the direct map's counters before and after, and the pages' frames.
Reserve measure_reserve(std::uint64_t mib, const Report& facts);

// Renderers (probe_render.cpp). Keys and their order are the command's interface.
nlohmann::ordered_json to_json(const Report& r);
std::string to_text(const Report& r, bool measured);

}  // namespace exmem::cli::probe
