// sim/: the run driver (see run.hpp for what the folder owns).
// costs.hpp: the costs file that `exmem probe --cost --save FILE` writes and
// `exmem sim --costs FILE` reads (format "exmem-costs/1", specified in
// COSTS_FORMAT.md at the project's coordination folder and summarised in
// docs/tlb.md): the measured figures behind the kernel slowdown, read with
// every required key checked.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "model/tlb/cost.hpp"

namespace exmem::sim {

// "FILE: key \"figures.walk_ns.ns\": expected a number >= 0, got -1".
class CostsError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

inline constexpr const char* kCostsFormat = "exmem-costs/1";

struct CostFigure {
  double ns = 0;
  std::optional<double> low;
  std::optional<double> high;
  std::uint64_t runs = 0;
  bool measured = false;
  std::string how;
};

struct CostsFile {
  std::string path;
  // source: every key present, values may be null.
  std::optional<std::string> tool;
  std::optional<std::string> exmem_version;
  std::optional<std::string> date;
  std::optional<std::string> kernel;
  std::optional<std::string> cpu_model;
  std::optional<double> cpu_mhz;
  std::optional<std::uint64_t> cpus;
  std::optional<std::string> hypervisor;  // null: bare metal
  std::optional<bool> pti;
  // figures
  CostFigure walk;
  CostFigure ipi_round_trip;
  CostFigure single_page_flush;
  CostFigure full_flush;
  CostFigure kernel_access;
  struct SweepRow {
    std::uint64_t pages = 0;
    CostFigure split;
    CostFigure control;
  };
  std::vector<SweepRow> sweep;
};

// Reads and checks a costs file; CostsError naming the file, the key and what
// was expected (missing key, wrong type, negative ns, wrong "format").
// Unknown keys are ignored, as the format says.
CostsFile load_costs(const std::string& path);
// The same from text (`path` names it in messages).
CostsFile parse_costs(const std::string& text, const std::string& path);

// The figures the model uses, each labelled with where it comes from.
model::tlb::KernelCostFigures figures_of(const CostsFile& f);
// One line for the report: "FILE (probe 2026-12-03T07:40:00Z, kernel 6.18.0,
// AMD EPYC, KVM)".
std::string source_text(const CostsFile& f);
// The probe's sweep as the model's check takes it.
std::vector<model::tlb::SweepPoint> sweep_points(const CostsFile& f);

}  // namespace exmem::sim
