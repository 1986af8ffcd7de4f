// `exmem sim` and `exmem study`: finding a scenario by the word a user gave
// for it: a file, or the name of a shipped one (the installed data folder's,
// then the source tree's); "default" is built in.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "sim.hpp"

#ifndef EXMEM_SCENARIO_DIRS
#define EXMEM_SCENARIO_DIRS ""
#endif

namespace exmem::cli::sim {

namespace {

// Folders holding the shipped scenarios: the installed data folder, then the source tree's.
std::vector<std::string> scenario_dirs() {
  std::vector<std::string> dirs;
  std::string all = EXMEM_SCENARIO_DIRS;
  for (std::size_t start = 0; start <= all.size();) {
    const std::size_t end = std::min(all.find(':', start), all.size());
    if (end > start) dirs.push_back(all.substr(start, end - start));
    start = end + 1;
  }
  return dirs;
}

std::optional<ScenarioFile> read(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream s;
  s << in.rdbuf();
  return ScenarioFile{s.str(), path.string()};
}

}  // namespace

std::vector<std::string> known_scenarios() {
  std::vector<std::string> names{"default"};
  for (const std::string& d : scenario_dirs()) {
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(d, ec)) {
      if (e.path().extension() != ".toml") continue;
      const std::string stem = e.path().stem().string();
      if (std::find(names.begin(), names.end(), stem) == names.end()) names.push_back(stem);
    }
  }
  return names;
}

std::optional<ScenarioFile> find_scenario(const std::string& arg, const std::filesystem::path& relative_to) {
  if (arg == "default") return ScenarioFile{std::string(default_scenario_text()), "<built-in>/default.toml"};
  std::error_code ec;
  std::filesystem::path as_file = arg;
  if (as_file.is_relative() && !relative_to.empty()) as_file = relative_to / as_file;
  if (std::filesystem::is_regular_file(as_file, ec)) return read(as_file);
  if (arg.find('/') == std::string::npos) {
    const std::string file = arg.size() > 5 && arg.substr(arg.size() - 5) == ".toml" ? arg : arg + ".toml";
    for (const std::string& d : scenario_dirs()) {
      const std::filesystem::path path = std::filesystem::path(d) / file;
      if (std::filesystem::is_regular_file(path, ec)) return read(path);
    }
  }
  return std::nullopt;
}

}  // namespace exmem::cli::sim
