// Shared by the report's browser tests (browser_test.cpp, the sim page;
// study_browser_test.cpp, the study page): headless Chromium (Debian's
// chromium package) run on a page from disk with a timeout, the attributes of
// the <body> it ends with, and its screenshot decoded with libpng.
#pragma once

#include <gtest/gtest.h>
#include <png.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <fcntl.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <regex>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "fixture.hpp"

namespace exmem::report::testing {

inline constexpr int kBrowserTimeoutSeconds = 120;
inline constexpr int kWidth = 1400;
inline constexpr int kHeight = 3600;

// EXMEM_CHROMIUM (when executable), else chromium or chromium-browser on
// PATH; empty if none.
inline std::string find_chromium() {
  if (const char* env = std::getenv("EXMEM_CHROMIUM"); env != nullptr && *env != '\0') {
    return ::access(env, X_OK) == 0 ? std::string(env) : std::string();
  }
  const char* path = std::getenv("PATH");
  std::string dirs = path != nullptr ? path : "/usr/bin:/bin";
  std::size_t at = 0;
  while (at <= dirs.size()) {
    const std::size_t colon = std::min(dirs.find(':', at), dirs.size());
    const std::string dir = dirs.substr(at, colon - at);
    for (const char* name : {"chromium", "chromium-browser"}) {
      const std::string candidate = (dir.empty() ? std::string(".") : dir) + "/" + name;
      if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    }
    at = colon + 1;
  }
  return {};
}

struct Exit {
  bool timed_out = false;
  int status = 0;  // waitpid() status
};

// Runs argv in a process group of its own with stdout and stderr to files;
// on timeout, kills that group (the browser and the helpers it started).
inline Exit run(const std::vector<std::string>& argv, const std::filesystem::path& out,
         const std::filesystem::path& err, int timeout_seconds) {
  const pid_t pid = ::fork();
  if (pid < 0) throw std::system_error(errno, std::generic_category(), "fork");
  if (pid == 0) {
    ::setpgid(0, 0);
    const int o = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int e = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (o < 0 || e < 0) ::_exit(126);
    ::dup2(o, 1);
    ::dup2(e, 2);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::setpgid(pid, pid);
  Exit x;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_seconds);
  for (;;) {
    const pid_t r = ::waitpid(pid, &x.status, WNOHANG);
    if (r == pid) break;
    if (std::chrono::steady_clock::now() > deadline) {
      x.timed_out = true;
      ::kill(-pid, SIGKILL);
      ::waitpid(pid, &x.status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ::kill(-pid, SIGKILL);  // helpers the browser left behind, if any
  return x;
}

inline std::string tail(const std::filesystem::path& p, std::size_t n = 2000) {
  std::string s;
  try {
    s = read_file(p);
  } catch (const std::exception&) {
    return {};
  }
  return s.size() > n ? s.substr(s.size() - n) : s;
}

inline std::string unescape(std::string s) {
  static const std::pair<const char*, const char*> kEntities[] = {
      {"&quot;", "\""}, {"&#39;", "'"}, {"&lt;", "<"}, {"&gt;", ">"}, {"&nbsp;", "\xC2\xA0"}, {"&amp;", "&"}};
  for (const auto& [from, to] : kEntities) {
    for (std::size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + std::strlen(to))) {
      s.replace(at, std::strlen(from), to);
    }
  }
  return s;
}

inline std::map<std::string, std::string> body_attributes(const std::string& dom) {
  std::map<std::string, std::string> attrs;
  std::smatch m;
  if (!std::regex_search(dom, m, std::regex(R"(<body\b([^>]*)>)"))) return attrs;
  const std::string tag = m[1].str();
  const std::regex attr(R"re(([a-zA-Z0-9_-]+)="([^"]*)")re");
  for (auto it = std::sregex_iterator(tag.begin(), tag.end(), attr); it != std::sregex_iterator(); ++it) {
    attrs[(*it)[1].str()] = unescape((*it)[2].str());
  }
  return attrs;
}

struct Rgb {
  int r = 0, g = 0, b = 0;
};

inline Rgb parse_colour(const std::string& hex) {
  EXPECT_EQ(hex.size(), 7u) << hex;
  const unsigned long v = std::stoul(hex.substr(1), nullptr, 16);
  return {static_cast<int>((v >> 16) & 255), static_cast<int>((v >> 8) & 255), static_cast<int>(v & 255)};
}

struct Image {
  png_uint_32 width = 0;
  png_uint_32 height = 0;
  std::vector<png_byte> rgba;
};

// Decodes a PNG with libpng into 8-bit RGBA.
inline Image read_png(const std::filesystem::path& p) {
  png_image img{};
  img.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file(&img, p.c_str())) {
    throw std::runtime_error("libpng cannot read " + p.string() + ": " + img.message);
  }
  img.format = PNG_FORMAT_RGBA;
  Image out;
  out.width = img.width;
  out.height = img.height;
  out.rgba.resize(PNG_IMAGE_SIZE(img));
  if (!png_image_finish_read(&img, nullptr, out.rgba.data(), 0, nullptr)) {
    throw std::runtime_error("libpng cannot decode " + p.string() + ": " + img.message);
  }
  return out;
}

// Runs headless Chromium on a file: "--dump-dom" writes the DOM to `output`,
// "--screenshot" the PNG, of a window width x height. Returns an error text, empty on success.
inline std::string browse(const std::string& chromium, const std::filesystem::path& html,
                   const std::filesystem::path& work, const std::string& mode,
                   const std::filesystem::path& output, int width = kWidth, int height = kHeight) {
  std::vector<std::string> argv = {
      chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
      "--force-device-scale-factor=1", "--no-first-run", "--disable-extensions",
      fmt::format("--window-size={},{}", width, height),
      "--user-data-dir=" + (work / ("profile" + mode)).string()};
  const bool shot = mode == "--screenshot";
  argv.push_back(shot ? "--screenshot=" + output.string() : mode);
  argv.push_back("file://" + html.string());
  const auto log = work / ("chromium" + mode + ".log");
  const Exit x = run(argv, shot ? work / "chromium.out" : output, log, kBrowserTimeoutSeconds);
  if (x.timed_out) {
    return fmt::format("chromium {} took over {} s (killed)\n{}", mode, kBrowserTimeoutSeconds, tail(log));
  }
  if (!WIFEXITED(x.status) || WEXITSTATUS(x.status) != 0) {
    return fmt::format("chromium {} failed (wait status {})\n{}", mode, x.status, tail(log));
  }
  return {};
}

inline std::string chromium_or_fail() {
  const std::string chromium = find_chromium();
  if (chromium.empty()) {
    ADD_FAILURE() << "chromium not found on PATH (nor EXMEM_CHROMIUM): install Debian's chromium "
                     "package (scripts/deps installs it); the report's browser tests cannot run "
                     "without it";
  }
  return chromium;
}

}  // namespace exmem::report::testing
