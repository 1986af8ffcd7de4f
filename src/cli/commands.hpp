// The exmem command's subcommands. Each file that implements one registers it
// on the application here; main.cpp only wires them together.
#pragma once

#include <CLI/CLI.hpp>

namespace exmem::cli {

// `exmem probe`: what this machine's kernel offers for exclusive memory, measured.
void add_probe(CLI::App& app);
// `exmem sim`: the kernel model on a workload, with a report.
void add_sim(CLI::App& app);
// `exmem trace record`: the real kernel's page allocations while a command runs.
void add_trace(CLI::App& app);
// `exmem trace sched` (trace_sched.cpp), a subcommand of `exmem trace`.
void add_trace_sched(CLI::App& trace);
// `exmem study`: the kernel model over a sweep of points, locally or on Slurm.
void add_study(CLI::App& app);

}  // namespace exmem::cli
