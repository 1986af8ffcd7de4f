// study/: `exmem study` (see study.hpp for what the folder owns).
// store.cpp: running a point and storing its result.
#include "study/store.hpp"

#include <fcntl.h>
#include <signal.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <chrono>
#include <cstring>
#include <system_error>

#include "report/report.hpp"
#include "sim/run.hpp"

namespace exmem::study {

namespace {

constexpr const char* kPointFormat = "exmem-study-point/1";

// This machine's name, as the point files and their temporaries record it.
std::string host_name() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) return {};
  return host;
}

// A point's temporary file, while store_point() writes it: .HASH.HOST.PID.tmp
// beside the points, so that remove_dead_temporaries() knows whose it is.
std::filesystem::path temporary_path(const std::filesystem::path& dir, const Point& p) {
  return dir / fmt::format(".{}.{}.{}.tmp", p.hash, host_name(), ::getpid());
}

// Why `doc` is not the stored result of `p` (empty when it is).
std::string mismatch(const nlohmann::json& doc, const Point& p) {
  if (!doc.is_object() || doc.value("format", "") != kPointFormat) return fmt::format("not an {} file", kPointFormat);
  if (doc.value("hash", "") != p.hash) return "it holds another point's hash";
  if (!doc.contains("config") || doc["config"] != p.config) return "it holds another configuration under the same hash";
  if (!doc.contains("run") || !doc["run"].is_object()) return "it has no run";
  return {};
}

}  // namespace

std::filesystem::path point_path(const std::filesystem::path& out, const Point& p) {
  return out / "points" / (p.hash + ".json");
}

Stored stored(const std::filesystem::path& out, const Point& p, std::string* why) {
  const std::filesystem::path path = point_path(out, p);
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return Stored::Missing;
  try {
    const std::string m = mismatch(nlohmann::json::parse(read_text(path)), p);
    if (m.empty()) return Stored::Done;
    if (why != nullptr) *why = m;
  } catch (const std::exception& e) {
    if (why != nullptr) *why = e.what();
  }
  return Stored::Other;
}

nlohmann::json run_point(const Study& study, const Point& p) {
  const auto start = std::chrono::steady_clock::now();
  sim::RunOptions options;
  options.tlb = model::tlb::TlbConfig::preset(p.scenario.tlb);
  options.costs = study.figures;
  const sim::RunResult run = sim::run_synthetic(p.scenario, p.policy, options);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return {{"format", kPointFormat},
          {"hash", p.hash},
          {"config", p.config},
          {"point", {{"index", p.index}, {"axes", axes_json(study, p)}, {"policy", p.policy}, {"seed", p.seed}}},
          {"run", report::to_json(run)},
          {"columns", report::columns_json(run)},
          {"seconds", seconds},
          {"host", host_name()}};
}

void store_point(const std::filesystem::path& out, const Point& p, const nlohmann::json& result) {
  const std::filesystem::path dir = out / "points";
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw std::system_error(ec, fmt::format("cannot create {}", dir.string()));
  const std::filesystem::path final_path = point_path(out, p);
  const std::filesystem::path tmp = temporary_path(dir, p);
  const std::string text = result.dump(1);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), fmt::format("cannot write {}", tmp.string()));
  // Nothing is left behind when a step fails: the temporary goes, with its descriptor if open.
  auto fail = [&](int open_fd, const std::string& what) {
    const int e = errno;
    if (open_fd >= 0) ::close(open_fd);
    ::unlink(tmp.c_str());
    throw std::system_error(e, std::generic_category(), what);
  };
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail(fd, fmt::format("cannot write {}", tmp.string()));
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) fail(fd, fmt::format("cannot write {}", tmp.string()));
  if (::close(fd) != 0) fail(-1, fmt::format("cannot write {}", tmp.string()));
  if (::rename(tmp.c_str(), final_path.c_str()) != 0) {
    fail(-1, fmt::format("cannot rename {} to {}", tmp.string(), final_path.string()));
  }
}

void remove_dead_temporaries(const std::filesystem::path& out) {
  const std::string host = host_name();
  if (host.empty()) return;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(out / "points", ec)) {
    const std::string n = e.path().filename().string();
    // .HASH.HOST.PID.tmp (temporary_path())
    if (n.size() < 6 || n.front() != '.' || n.substr(n.size() - 4) != ".tmp") continue;
    const std::string body = n.substr(1, n.size() - 5);
    const std::size_t first = body.find('.');
    const std::size_t last = body.rfind('.');
    if (first == std::string::npos || last <= first) continue;
    if (body.substr(first + 1, last - first - 1) != host) continue;
    const auto pid = static_cast<pid_t>(std::strtol(body.c_str() + last + 1, nullptr, 10));
    if (pid > 0 && ::kill(pid, 0) != 0 && errno == ESRCH) std::filesystem::remove(e.path(), ec);
  }
}

nlohmann::json load_point(const std::filesystem::path& out, const Point& p) {
  const std::filesystem::path path = point_path(out, p);
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(read_text(path));
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(fmt::format("{}: not JSON: {}", path.string(), e.what()));
  }
  if (const std::string m = mismatch(doc, p); !m.empty()) {
    throw std::runtime_error(fmt::format("{}: not point {}'s result: {}", path.string(), p.index, m));
  }
  return doc;
}

}  // namespace exmem::study
