// exmem_trace_calibrate: the model against the real kernel, through recorded traces.
//
// Records two real workloads that use exclusive memory with `exmem trace
// record`: one allocating through libexmem (secrets of 16 bytes to 4 KiB
// until N MiB are live), one through plain memfd_secret (one file of N MiB,
// every page touched). Each holds its memory until it exits, so the recorder
// marks every secret page. Then `exmem sim --trace FILE --policy upstream
// --json` replays each trace and compares (its "calibration" block):
//   - the real kernel's direct_map_level2_splits and DirectMap4k deltas over
//     the recording (the trace's start and end counters),
//   - the model's direct map with the same real pfns removed, on a machine
//     laid out like this one (an upper bound: the real kernel had split some
//     regions before; the check is that the difference stays within them),
//   - the upstream replay, where the model's own buddy allocator places the
//     secret pages on an empty machine;
//   - when the traces carry the real direct map ("# direct_map" lines, where
//     /proc/kcore can be read), the exact comparison: the model started from
//     the real start map, its end map against the real end map region by
//     region; that then decides the verdict instead of the upper bound.
// Needs root (tracefs, /proc/PID/pagemap). Exits 0 when every comparison is
// explained, 1 when one is not, 2 when it cannot run.
//
//   exmem_trace_calibrate [--mib N (512)] [--rounds N (2)] [--keep]
//   exmem_trace_calibrate --workload libexmem|memfd_secret MIB   (what is recorded)
#include <fmt/format.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "exmem/exmem.h"
#include "host/secret.hpp"
#include "model/workload/trace_calibration.hpp"
#include "model/workload/trace_replay.hpp"

namespace {

int workload(const std::string& api, std::size_t mib) {
  const std::size_t bytes = mib << 20;
  if (api == "libexmem") {
    std::mt19937_64 rng(1);
    std::uniform_int_distribution<std::size_t> size(16, 4096);
    std::size_t live = 0;
    std::vector<void*> held;
    while (live < bytes) {
      const std::size_t n = size(rng);
      void* p = exmem_alloc(n);
      if (p == nullptr) {
        std::fprintf(stderr, "exmem_alloc(%zu) after %zu bytes: %s\n", n, live, exmem_last_error_message());
        return 1;
      }
      std::memset(p, 0x5a, n);
      held.push_back(p);
      live += n;
    }
    std::printf("libexmem: %zu secrets, %zu bytes live\n", held.size(), live);
    return 0;  // exit with the secrets live: the recorder reads their pages at the exit stop
  }
  if (api == "memfd_secret") {
    const int fd = exmem::host::memfd_secret(0);
    if (fd < 0 || ::ftruncate(fd, static_cast<off_t>(bytes)) != 0) {
      std::fprintf(stderr, "memfd_secret: %s\n", std::strerror(errno));
      return 1;
    }
    auto* p = static_cast<char*>(::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
    if (p == MAP_FAILED) {
      std::fprintf(stderr, "mmap of %zu bytes of memfd_secret: %s\n", bytes, std::strerror(errno));
      return 1;
    }
    for (std::size_t off = 0; off < bytes; off += 4096) p[off] = 1;  // secretmem_fault() for every page
    std::printf("memfd_secret: %zu pages faulted\n", bytes / 4096);
    return 0;
  }
  std::fprintf(stderr, "exmem_trace_calibrate --workload: \"%s\": expected libexmem or memfd_secret\n", api.c_str());
  return 2;
}

std::string run(const std::string& cmd) {
  std::string out;
  FILE* f = ::popen(cmd.c_str(), "r");
  if (f == nullptr) return out;
  char buf[65536];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) out.append(buf, n);
  if (::pclose(f) != 0) out.clear();
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t mib = 512;
  bool keep = false;
  int rounds = 2;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--workload" && i + 2 < argc) return workload(argv[i + 1], std::strtoul(argv[i + 2], nullptr, 10));
    if (a == "--mib" && i + 1 < argc) {
      mib = std::strtoul(argv[++i], nullptr, 10);
      if (mib == 0 || mib > 8192) {
        fmt::print(stderr, "exmem_trace_calibrate: --mib \"{}\": expected 1..8192\n", argv[i]);
        return 2;
      }
    } else if (a == "--rounds" && i + 1 < argc) {
      rounds = std::atoi(argv[++i]);
      if (rounds < 1 || rounds > 10) {
        fmt::print(stderr, "exmem_trace_calibrate: --rounds \"{}\": expected 1..10\n", argv[i]);
        return 2;
      }
    } else if (a == "--keep") {
      keep = true;
    } else {
      fmt::print(stderr, "exmem_trace_calibrate: unknown argument \"{}\"; expected [--mib N] [--rounds N] [--keep]\n", a);
      return 2;
    }
  }
#ifndef EXMEM_BIN
  fmt::print(stderr, "exmem_trace_calibrate: built without the exmem command (EXMEM_BUILD_CLI=OFF)\n");
  return 2;
#else
  if (::geteuid() != 0) {
    fmt::print(stderr, "exmem_trace_calibrate: needs root (tracefs and /proc/PID/pagemap); run it with sudo\n");
    return 2;
  }
  namespace wl = exmem::model::workload;
  const std::string dir = std::filesystem::temp_directory_path().string();
  fmt::print("exmem_trace_calibrate: {} MiB of exclusive memory per workload, recorded with `exmem trace record`,\n"
             "{} round(s) of both workloads; the model's direct map keeps what earlier recordings split\n\n",
             mib, rounds);
  fmt::print("{:<5} {:<13} {:>7} {:>7} {:>8} {:>11} {:>8} {:>9} {:>9} {:>6}  {}\n", "round", "workload", "pages",
             "regions", "real l2", "real 4k kB", "model l2", "replay l2", "pre-split", "diff", "verdict");
  bool all_explained = true;
  std::unique_ptr<wl::TraceCalibrator> calibrator;
  std::int64_t pre_split = -1;  // regions split before the first recording: the model cannot know which
  for (int round = 1; round <= rounds; ++round) {
    for (const char* api : {"libexmem", "memfd_secret"}) {
      const std::string trace = fmt::format("{}/exmem-calibrate-{}-{}-{}.trace", dir, round, api, ::getpid());
      const std::string rec = fmt::format("{} trace record -o {} -- {} --workload {} {} > /dev/null", EXMEM_BIN, trace,
                                          argv[0], api, mib);
      if (std::system(rec.c_str()) != 0) {
        fmt::print("{:<5} {:<13} FAILED: `{}`\n", round, api, rec);
        return 2;
      }
      const std::string out =
          run(fmt::format("{} sim --trace {} --policy upstream --json --progress never", EXMEM_BIN, trace));
      const nlohmann::json j = nlohmann::json::parse(out, nullptr, false);
      if (j.is_discarded() || !j.contains("calibration") || !j["calibration"].contains("upstream_replay")) {
        fmt::print("{:<5} {:<13} FAILED: `exmem sim --trace {}` gave no calibration\n", round, api, trace);
        return 2;
      }
      const wl::TraceInfo info = wl::read_trace_info(trace);
      if (!calibrator) calibrator = std::make_unique<wl::TraceCalibrator>(info);
      const wl::TraceCalibration c = calibrator->add(info);
      if (!c.have_counters) {
        fmt::print("{:<5} {:<13} FAILED: the trace has no direct-map counters\n", round, api);
        return 2;
      }
      if (pre_split < 0) pre_split = static_cast<std::int64_t>(c.regions_split_before);
      const auto model = static_cast<std::int64_t>(c.model_level2_splits);
      const std::int64_t diff = model - c.real_level2_splits;
      const bool exact = c.exact.exact;
      const bool explained = exact ? c.exact.explained : diff >= 0 && diff <= pre_split;
      all_explained = all_explained && explained;
      fmt::print("{:<5} {:<13} {:>7} {:>7} {:>8} {:>11} {:>8} {:>9} {:>9} {:>6}  {}\n", round, api, c.secret_pages,
                 c.secret_regions, c.real_level2_splits, c.real_directmap4k_kb, model,
                 j["calibration"]["upstream_replay"]["direct_map_level2_splits"].get<std::uint64_t>(), pre_split, diff,
                 explained ? (exact ? "exact" : "explained") : "NOT explained");
      if (exact) {
        fmt::print("      exact, region by region: split in both {}, only in the model {}, only in the kernel {} "
                   "({} of them holding a secret page)\n",
                   c.exact.split_both, c.exact.split_model_only, c.exact.split_kernel_only,
                   c.exact.kernel_only_with_secret);
      } else if (!info.map_unavailable.empty()) {
        fmt::print("      no direct-map snapshot: {}\n", info.map_unavailable);
      }
      if (keep) {
        fmt::print("      kept {}\n", trace);
      } else {
        std::filesystem::remove(trace);
      }
    }
  }
  fmt::print(
      "\npages, regions: the command's secret pages and the 2 MiB regions they lie in; real l2, real 4k kB: the\n"
      "real kernel's direct_map_level2_splits and DirectMap4k deltas during the recording; model l2: the model's\n"
      "direct map with the same pfns removed, after those of the earlier recordings; replay l2: `exmem sim --trace\n"
      "FILE --policy upstream` on its own, the model's allocator placing the pages on an empty machine; pre-split:\n"
      "regions the real kernel had split before the first recording (DirectMap4k / 2 MiB), which the model cannot\n"
      "know; diff = model l2 - real l2, explained when 0 <= diff <= pre-split. With the real direct map in the\n"
      "traces the model starts from the real start map, and the verdict is exact: no region split only in the\n"
      "model, none split only in the kernel holding a secret page.\n");
  return all_explained ? 0 : 1;
#endif
}
