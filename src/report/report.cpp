// report.cpp: write_report(): the report's files on disk.
#include "report/report.hpp"

#include "report/files.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <memory>
#include <string>
#include <system_error>

namespace exmem::report {

namespace {

[[noreturn]] void fail(int err, const std::string& what, const std::filesystem::path& path) {
  throw std::system_error(err, std::generic_category(), what + " " + path.string());
}

}  // namespace

void make_directories(const std::filesystem::path& dir) {
  std::filesystem::path at;
  for (const auto& part : dir) {
    at /= part;
    if (::mkdir(at.c_str(), 0777) == 0) continue;
    const int err = errno;
    struct stat st {};
    if (err == EEXIST && ::stat(at.c_str(), &st) == 0) {
      if (S_ISDIR(st.st_mode)) continue;
      fail(ENOTDIR, "cannot create report directory", at);
    }
    fail(err, "cannot create report directory", at);
  }
}

void write_file(const std::filesystem::path& path, const std::string& text) {
  struct Closer {
    void operator()(std::FILE* f) const { std::fclose(f); }
  };
  std::unique_ptr<std::FILE, Closer> f(std::fopen(path.c_str(), "w"));
  if (!f) fail(errno, "cannot write", path);
  if (!text.empty() && std::fwrite(text.data(), 1, text.size(), f.get()) != text.size()) {
    fail(errno, "cannot write", path);
  }
  if (std::fflush(f.get()) != 0) fail(errno, "cannot write", path);
  std::FILE* raw = f.release();
  if (std::fclose(raw) != 0) fail(errno, "cannot write", path);
}

void write_report(const std::filesystem::path& dir, const Document& doc) {
  if (dir.empty()) fail(ENOENT, "cannot create report directory", "\"\"");
  make_directories(dir);
  // Strings that are not UTF-8 are written with U+FFFD rather than refused.
  write_file(dir / "report.json",
             to_json(doc, true).dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
  write_file(dir / "runs.csv", runs_csv(doc));
  write_file(dir / "over_time.csv", over_time_csv(doc));
  write_file(dir / "index.html", html_page(doc));
}

}  // namespace exmem::report
