// study/: `exmem study` (see study.hpp for what the folder owns).
// store.cpp: running a point and storing its result.
#include "study/store.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <system_error>

#include "report/report.hpp"
#include "sim/metrics.hpp"
#include "sim/run.hpp"

namespace exmem::study {

namespace {

constexpr const char* kPointFormat = "exmem-study-point/1";

std::string read_whole(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(fmt::format("{}: cannot read: {}", path.string(), std::strerror(errno)));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
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
    const std::string m = mismatch(nlohmann::json::parse(read_whole(path)), p);
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
  nlohmann::json axes = nlohmann::json::object();
  for (std::size_t i = 0; i < study.axes.size(); ++i) axes[study.axes[i].name] = study.axes[i].labels[p.at[i]];
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
  // Every figure with a runs.csv column, some of which the run's JSON lacks.
  nlohmann::json columns = nlohmann::json::object();
  for (const sim::Metric& m : sim::metrics()) {
    if (m.column.empty() || m.get == nullptr) continue;
    const std::optional<sim::Number> v = m.get(run);
    if (!v) {
      columns[std::string(m.column)] = nullptr;
    } else if (const auto* u = std::get_if<std::uint64_t>(&*v)) {
      columns[std::string(m.column)] = *u;
    } else if (const auto* i = std::get_if<std::int64_t>(&*v)) {
      columns[std::string(m.column)] = *i;
    } else {
      columns[std::string(m.column)] = std::get<double>(*v);
    }
  }
  return {{"format", kPointFormat},
          {"hash", p.hash},
          {"config", p.config},
          {"point", {{"index", p.index}, {"axes", axes}, {"policy", p.policy}, {"seed", p.seed}}},
          {"run", report::to_json(run)},
          {"columns", columns},
          {"seconds", seconds},
          {"host", host}};
}

void store_point(const std::filesystem::path& out, const Point& p, const nlohmann::json& result) {
  const std::filesystem::path dir = out / "points";
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw std::system_error(ec, fmt::format("cannot create {}", dir.string()));
  char host[64] = {};
  if (::gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
  const std::filesystem::path final_path = point_path(out, p);
  const std::filesystem::path tmp = dir / fmt::format(".{}.{}.{}.tmp", p.hash, host, ::getpid());
  const std::string text = result.dump(1);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), fmt::format("cannot write {}", tmp.string()));
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int e = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      throw std::system_error(e, std::generic_category(), fmt::format("cannot write {}", tmp.string()));
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    const int e = errno;
    ::unlink(tmp.c_str());
    throw std::system_error(e, std::generic_category(), fmt::format("cannot write {}", tmp.string()));
  }
  if (::rename(tmp.c_str(), final_path.c_str()) != 0) {
    const int e = errno;
    ::unlink(tmp.c_str());
    throw std::system_error(e, std::generic_category(), fmt::format("cannot rename {} to {}", tmp.string(), final_path.string()));
  }
}

nlohmann::json load_point(const std::filesystem::path& out, const Point& p) {
  const std::filesystem::path path = point_path(out, p);
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(read_whole(path));
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(fmt::format("{}: not JSON: {}", path.string(), e.what()));
  }
  if (const std::string m = mismatch(doc, p); !m.empty()) {
    throw std::runtime_error(fmt::format("{}: not point {}'s result: {}", path.string(), p.index, m));
  }
  return doc;
}

}  // namespace exmem::study
