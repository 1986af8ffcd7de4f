// exmem: one command for both halves of the project: the library's view of this
// machine (probe) and the kernel model (sim, study, trace).
#include <cstdio>
#include <exception>

#include "commands.hpp"

int main(int argc, char** argv) {
  CLI::App app{
      "exmem: exclusive memory (pages removed from the kernel direct map) and a model of its cost.\n"
      "Run `exmem SUBCOMMAND --help` for the options and examples of each subcommand."};
  app.require_subcommand(1);
  app.set_version_flag("--version", "exmem 0.1.0");
  exmem::cli::add_probe(app);
  exmem::cli::add_sim(app);
  exmem::cli::add_trace(app);
  exmem::cli::add_study(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "exmem: %s\n", e.what());
    return 1;
  }
  return 0;
}
