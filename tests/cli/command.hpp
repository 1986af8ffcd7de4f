// What the tests of `exmem sim` share: the built command run as a real
// process, and a file in the temporary folder that goes when the test ends.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

namespace exmem::cli_test {

struct CommandResult {
  int status = -1;
  std::string out;
};

// EXMEM_BIN with `args` through the shell; stdout, and stderr too when asked.
inline CommandResult run(const std::string& args, bool with_stderr) {
  CommandResult r;
  const std::string cmd = std::string(EXMEM_BIN) + " " + args + (with_stderr ? " 2>&1" : " 2>/dev/null");
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) r.out.append(buf, n);
  const int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}

// A file in the test's temporary folder, removed at the end.
class TempFile {
 public:
  TempFile(const std::string& name, const std::string& text)
      : path_((std::filesystem::temp_directory_path() / ("exmem-sim-" + std::to_string(getpid()) + "-" + name))
                  .string()) {
    std::ofstream(path_, std::ios::binary) << text;
  }
  ~TempFile() { std::filesystem::remove(path_); }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  [[nodiscard]] const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace exmem::cli_test
