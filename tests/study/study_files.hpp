// What the tests of `exmem study` run as a command share (tests/study and
// tests/slurm): reading the files a study writes, and comparing two runs'
// results without what differs between any two runs.
#pragma once

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace exmem::study_test {

// A file's whole text ("" when it cannot be read).
inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// results.csv without its last column (run_seconds: how long each run took).
inline std::string without_timing(const std::string& csv) {
  std::string out;
  std::istringstream in(csv);
  for (std::string line; std::getline(in, line);) out += line.substr(0, line.rfind(',')) + "\n";
  return out;
}

}  // namespace exmem::study_test
