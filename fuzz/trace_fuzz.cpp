// exmem_fuzz_trace: the kmem trace reader (workload/trace_format.hpp, trace_reader.hpp) on
// arbitrary text, line by line and as a whole trace replayed on a small model
// machine. Any broken property, unexpected exception, crash or sanitizer report
// is a bug; a TraceError is the only acceptable failure.
//
// The input is a trace file as `exmem trace record` writes it (or anything
// else). Each line goes to parse_trace_line() and parse_gfp_flags(), which must
// agree with themselves:
//  - a recognised event has a pfn below 2^36 (the 256 TiB a replay can map),
//    an order from 0 to kMaxPageOrder (0 for mm_page_alloc_extfrag, which has
//    none), a cpu of at most 8 digits and a pid of -1 or more;
//  - an mm_page_alloc is `failed` exactly when its pfn is 0; any other event
//    has a page (pfn != 0) and no gfp text;
//  - the gfp text is a view into the line, without a space, and reads the same
//    as the flags of its '|'-separated names one by one;
//  - the result does not depend on whether the reason is asked for, and a
//    line that is not an event always says why;
//  - parse_gfp_flags() of any text counts exactly the unknown names it
//    returns, each non-empty, trimmed, without '|', and itself of no known
//    flag.
// Then the whole input is written to a memfd and replayed with TraceReplay
// (its reader thread, the pfn table, secret pages through memfd_secret,
// partial frees, frees of larger blocks, reallocation of live pfns...) on a
// fresh machine of 128 MiB and 2 CPUs: the outcome is ReplayStats, or a
// TraceError naming the file when no line is an event; the replay's reader
// (its own fast path first) finds exactly the events parse_trace_line() finds,
// the stats add up (every mm_page_alloc line is exactly one of: failed in the
// trace, replayed, failed in the model, a secret fault; the reader saw every
// byte), and Machine::check() finds every invariant of the model intact
// afterwards.
//
// A line "# fuzz policy=NAME collapse=MODE ram=MIB" (each part optional; the
// replay ignores it like any '#' line other than "# secret") picks the
// machine's policy (upstream by default), collapse mode (rox-only) and RAM
// (64 to 512 MiB, default 128), so that every policy's handling of secret
// pages and allocation failures is reached. Seeds: corpus/trace/.
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "check.hpp"
#include "model/machine.hpp"
#include "model/policy/policy.hpp"
#include "model/types.hpp"
#include "model/workload/trace_format.hpp"
#include "model/workload/trace_replay.hpp"

namespace {

namespace md = exmem::model;
namespace wl = exmem::model::workload;

using wl::kMaxRealPfn;
// EXMEM_FUZZ_VERBOSE=1: say what became of each input (to check new seeds).
const bool kVerbose = std::getenv("EXMEM_FUZZ_VERBOSE") != nullptr;

using exmem::fuzz::diverge;

std::string printable(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 200)) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f) {
      out += c;
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", u);
      out += buf;
    }
  }
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

const char* kind_name(wl::TraceEventKind k) {
  switch (k) {
    case wl::TraceEventKind::Alloc: return "mm_page_alloc";
    case wl::TraceEventKind::Free: return "mm_page_free";
    case wl::TraceEventKind::FreeBatched: return "mm_page_free_batched";
    case wl::TraceEventKind::PcpuDrain: return "mm_page_pcpu_drain";
    case wl::TraceEventKind::AllocZoneLocked: return "mm_page_alloc_zone_locked";
    case wl::TraceEventKind::AllocExtfrag: return "mm_page_alloc_extfrag";
  }
  return "?";
}

// The events parse_trace_line() finds in the lines the replay reads (split at
// '\n', without a trailing '\r', '#' lines and empty ones skipped): the
// replay's reader must find the same.
struct Expected {
  std::uint64_t events = 0;
  std::uint64_t allocs = 0;
  std::uint64_t frees = 0;
  std::uint64_t drains = 0;
  std::uint64_t zone_locked = 0;
  std::uint64_t extfrag = 0;
  std::uint64_t direct_map_lines = 0;  // "# direct_map ..." snapshot lines, which must be well formed
};

void expect_line(std::string_view line, Expected& x) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  // The header and footer reader trims a line before it looks (" # direct_map ..." is one).
  if (wl::trace_line::is_direct_map_line(trim(line))) ++x.direct_map_lines;
  if (line.empty() || line[0] == '#') return;
  const std::optional<wl::TraceEvent> ev = wl::parse_trace_line(line);
  if (!ev) return;
  ++x.events;
  switch (ev->kind) {
    case wl::TraceEventKind::Alloc: ++x.allocs; break;
    case wl::TraceEventKind::Free:
    case wl::TraceEventKind::FreeBatched: ++x.frees; break;
    case wl::TraceEventKind::PcpuDrain: ++x.drains; break;
    case wl::TraceEventKind::AllocZoneLocked: ++x.zone_locked; break;
    case wl::TraceEventKind::AllocExtfrag: ++x.extfrag; break;
  }
}

// parse_gfp_flags() on any text: the unknown names it returns are the ones it
// counts, and the flags are those of its names one by one.
void check_gfp(std::string_view text) {
  std::vector<std::string> unknown;
  const wl::GfpFlags g = wl::parse_gfp_flags(text, &unknown);
  CHECK(g.unknown == unknown.size(), "parse_gfp_flags(\"%s\"): %u unknown names counted, %zu returned",
        printable(text).c_str(), g.unknown, unknown.size());
  CHECK(wl::parse_gfp_flags(text).gfp == g.gfp && wl::parse_gfp_flags(text).unknown == g.unknown,
        "parse_gfp_flags(\"%s\") depends on whether the unknown names are asked for", printable(text).c_str());
  for (const std::string& n : unknown) {
    CHECK(!n.empty() && n.find('|') == std::string::npos && trim(n) == n,
          "parse_gfp_flags(\"%s\"): unknown name \"%s\" is empty, untrimmed or holds a '|'",
          printable(text).c_str(), printable(n).c_str());
    CHECK(wl::parse_gfp_flags(n).gfp == 0, "parse_gfp_flags(\"%s\"): \"%s\" is unknown there but has flags alone",
          printable(text).c_str(), printable(n).c_str());
  }
  md::phys::Gfp each = 0;
  std::string_view rest = text;
  while (true) {
    const std::size_t bar = rest.find('|');
    each |= wl::parse_gfp_flags(rest.substr(0, bar)).gfp;
    if (bar == std::string_view::npos) break;
    rest.remove_prefix(bar + 1);
  }
  CHECK(each == g.gfp, "parse_gfp_flags(\"%s\") = %#llx, but its names one by one give %#llx",
        printable(text).c_str(), static_cast<unsigned long long>(g.gfp), static_cast<unsigned long long>(each));
}

void check_line(std::string_view line) {
  std::string why;
  const std::optional<wl::TraceEvent> ev = wl::parse_trace_line(line, &why);
  const std::optional<wl::TraceEvent> again = wl::parse_trace_line(line);
  CHECK(ev.has_value() == again.has_value(), "parse_trace_line(\"%s\") depends on whether `why` is asked for",
        printable(line).c_str());
  check_gfp(line);
  if (!ev) {
    CHECK(!why.empty(), "parse_trace_line(\"%s\"): nullopt without a reason", printable(line).c_str());
    return;
  }
  const char* name = kind_name(ev->kind);
  CHECK(ev->kind == again->kind && ev->pfn == again->pfn && ev->order == again->order && ev->pid == again->pid &&
            ev->cpu == again->cpu && ev->failed == again->failed && ev->gfp == again->gfp,
        "parse_trace_line(\"%s\") reads differently when `why` is asked for", printable(line).c_str());
  CHECK(ev->pfn < kMaxRealPfn, "parse_trace_line(\"%s\"): %s pfn %#llx beyond 2^36", printable(line).c_str(), name,
        static_cast<unsigned long long>(ev->pfn));
  CHECK(ev->order <= md::kMaxPageOrder, "parse_trace_line(\"%s\"): %s order %u", printable(line).c_str(), name,
        ev->order);
  CHECK(ev->kind != wl::TraceEventKind::AllocExtfrag || ev->order == 0,
        "parse_trace_line(\"%s\"): mm_page_alloc_extfrag with order %u", printable(line).c_str(), ev->order);
  CHECK(ev->pid >= -1, "parse_trace_line(\"%s\"): pid %d", printable(line).c_str(), ev->pid);
  CHECK(ev->cpu < 100'000'000u, "parse_trace_line(\"%s\"): cpu %u", printable(line).c_str(), ev->cpu);
  if (ev->kind == wl::TraceEventKind::Alloc) {
    CHECK(ev->failed == (ev->pfn == 0), "parse_trace_line(\"%s\"): mm_page_alloc pfn %#llx but failed=%d",
          printable(line).c_str(), static_cast<unsigned long long>(ev->pfn), ev->failed ? 1 : 0);
    if (ev->gfp.data() != nullptr) {
      CHECK(ev->gfp.data() >= line.data() && ev->gfp.data() + ev->gfp.size() <= line.data() + line.size(),
            "parse_trace_line(\"%s\"): the gfp text is not a view into the line", printable(line).c_str());
      CHECK(ev->gfp.find(' ') == std::string_view::npos, "parse_trace_line(\"%s\"): gfp text \"%s\" holds a space",
            printable(line).c_str(), printable(ev->gfp).c_str());
      check_gfp(ev->gfp);
    }
  } else {
    CHECK(!ev->failed && ev->pfn != 0, "parse_trace_line(\"%s\"): %s with pfn %#llx, failed=%d",
          printable(line).c_str(), name, static_cast<unsigned long long>(ev->pfn), ev->failed ? 1 : 0);
    CHECK(ev->gfp.empty(), "parse_trace_line(\"%s\"): %s with gfp text \"%s\"", printable(line).c_str(), name,
          printable(ev->gfp).c_str());
  }
}

// The machine a "# fuzz ..." line asks for.
md::MachineConfig machine_config(std::string_view text) {
  md::MachineConfig c;
  c.ram_bytes = 128 * md::MiB;
  c.cpus = 2;
  c.kernel_image_bytes = 8 * md::MiB;
  const std::size_t at = text.find("# fuzz ");
  if (at == std::string_view::npos || (at != 0 && text[at - 1] != '\n')) return c;
  std::string_view line = text.substr(at + 7);
  line = line.substr(0, line.find('\n'));
  while (!line.empty()) {
    const std::size_t sp = line.find(' ');
    const std::string_view kv = line.substr(0, sp);
    line.remove_prefix(sp == std::string_view::npos ? line.size() : sp + 1);
    const std::size_t eq = kv.find('=');
    if (eq == std::string_view::npos) continue;
    const std::string_view key = kv.substr(0, eq);
    const std::string value(kv.substr(eq + 1));
    if (key == "policy" && md::policy::Registry::builtin().find(value) != nullptr) {
      c.policy = value;
    } else if (key == "collapse") {
      try {
        c.collapse = md::parse_collapse_mode(value);
      } catch (const std::invalid_argument&) {
      }
    } else if (key == "ram") {
      const unsigned long mib = std::strtoul(value.c_str(), nullptr, 10);
      if (mib >= 64 && mib <= 512) c.ram_bytes = (mib & ~1ul) * md::MiB;
    }
  }
  return c;
}

// A memfd holding the input: a regular file to TraceReplay, by /proc/self/fd/N.
class MemFile {
 public:
  MemFile(const std::uint8_t* data, std::size_t size) {
    fd_ = memfd_create("exmem-fuzz-trace", MFD_CLOEXEC);
    CHECK(fd_ >= 0, "memfd_create: %s", std::strerror(errno));
    std::size_t done = 0;
    while (done < size) {
      const ssize_t n = ::write(fd_, data + done, size - done);
      CHECK(n > 0, "write to the memfd: %s", std::strerror(errno));
      done += static_cast<std::size_t>(n);
    }
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }
  ~MemFile() { ::close(fd_); }
  MemFile(const MemFile&) = delete;
  MemFile& operator=(const MemFile&) = delete;
  [[nodiscard]] const std::string& path() const { return path_; }

 private:
  int fd_ = -1;
  std::string path_;
};

void check_stats(const wl::ReplayStats& s, std::size_t size, const Expected& x) {
  CHECK(s.bytes == size, "the replay read %llu bytes of %zu", static_cast<unsigned long long>(s.bytes), size);
  CHECK(s.events == x.events && s.allocs == x.allocs && s.frees == x.frees && s.pcpu_drains == x.drains &&
            s.zone_locked == x.zone_locked && s.extfrag == x.extfrag,
        "the replay's reader found %llu events (%llu allocs, %llu frees, %llu drains, %llu zone_locked, %llu "
        "extfrag), parse_trace_line() %llu (%llu, %llu, %llu, %llu, %llu)",
        static_cast<unsigned long long>(s.events), static_cast<unsigned long long>(s.allocs),
        static_cast<unsigned long long>(s.frees), static_cast<unsigned long long>(s.pcpu_drains),
        static_cast<unsigned long long>(s.zone_locked), static_cast<unsigned long long>(s.extfrag),
        static_cast<unsigned long long>(x.events), static_cast<unsigned long long>(x.allocs),
        static_cast<unsigned long long>(x.frees), static_cast<unsigned long long>(x.drains),
        static_cast<unsigned long long>(x.zone_locked), static_cast<unsigned long long>(x.extfrag));
  CHECK(s.events == s.allocs + s.frees + s.pcpu_drains + s.zone_locked + s.extfrag,
        "%llu events but %llu allocs + %llu frees + %llu drains + %llu zone_locked + %llu extfrag",
        static_cast<unsigned long long>(s.events), static_cast<unsigned long long>(s.allocs),
        static_cast<unsigned long long>(s.frees), static_cast<unsigned long long>(s.pcpu_drains),
        static_cast<unsigned long long>(s.zone_locked), static_cast<unsigned long long>(s.extfrag));
  CHECK(s.allocs == s.allocs_failed_in_trace + s.allocs_replayed + s.model_alloc_failures + s.secret_faults,
        "%llu allocs but %llu failed in the trace + %llu replayed + %llu failed in the model + %llu secret faults",
        static_cast<unsigned long long>(s.allocs), static_cast<unsigned long long>(s.allocs_failed_in_trace),
        static_cast<unsigned long long>(s.allocs_replayed), static_cast<unsigned long long>(s.model_alloc_failures),
        static_cast<unsigned long long>(s.secret_faults));
  CHECK(s.allocs_replayed == s.kernel_allocs + s.reclaimable_allocs + s.user_allocs,
        "%llu allocations replayed but %llu kernel + %llu reclaimable + %llu user",
        static_cast<unsigned long long>(s.allocs_replayed), static_cast<unsigned long long>(s.kernel_allocs),
        static_cast<unsigned long long>(s.reclaimable_allocs), static_cast<unsigned long long>(s.user_allocs));
  CHECK(s.frees_replayed == s.kernel_frees + s.user_frees, "%llu frees replayed but %llu kernel + %llu user",
        static_cast<unsigned long long>(s.frees_replayed), static_cast<unsigned long long>(s.kernel_frees),
        static_cast<unsigned long long>(s.user_frees));
  CHECK(s.secret_ooms <= s.model_alloc_failures && s.secret_releases <= s.secret_files,
        "secret page counts do not add up: %llu ooms, %llu failures, %llu releases of %llu files",
        static_cast<unsigned long long>(s.secret_ooms), static_cast<unsigned long long>(s.model_alloc_failures),
        static_cast<unsigned long long>(s.secret_releases), static_cast<unsigned long long>(s.secret_files));
  CHECK(s.events + s.unknown_lines <= s.lines, "%llu events and %llu unknown lines in %llu lines",
        static_cast<unsigned long long>(s.events), static_cast<unsigned long long>(s.unknown_lines),
        static_cast<unsigned long long>(s.lines));
  CHECK(s.first_unknown.size() <= wl::ReplayStats::kMaxUnknownReported && s.first_unknown.size() <= s.unknown_lines,
        "%zu unknown lines reported of %llu", s.first_unknown.size(), static_cast<unsigned long long>(s.unknown_lines));
  std::uint64_t prev = 0;
  for (const wl::UnknownLine& u : s.first_unknown) {
    CHECK(u.line > prev && u.line <= s.lines, "unknown line number %llu (after %llu, of %llu lines)",
          static_cast<unsigned long long>(u.line), static_cast<unsigned long long>(prev),
          static_cast<unsigned long long>(s.lines));
    CHECK(!u.why.empty() && u.text.size() <= 160, "unknown line %llu: no reason, or its text is not cut",
          static_cast<unsigned long long>(u.line));
    prev = u.line;
  }
}

void replay(const std::uint8_t* data, std::size_t size, const Expected& expected) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const md::MachineConfig mc = machine_config(text);
  md::Machine machine(mc);
  const MemFile file(data, size);
  try {
    wl::TraceReplay r(machine, file.path());
    const wl::TraceInfo& info = r.info();
    CHECK(info.bytes == size, "read_trace_info: %llu bytes, the file has %zu",
          static_cast<unsigned long long>(info.bytes), size);
    for (const auto& [pfn, pid] : info.secret_pages) {
      CHECK(pfn != 0 && pfn < kMaxRealPfn && pid >= 0, "read_trace_info: secret page pfn %#llx pid %d",
            static_cast<unsigned long long>(pfn), pid);
    }
    std::uint64_t last_events = 0;
    const wl::ReplayStats s = r.run(
        [&](const wl::ReplayProgress& p) {
          CHECK(p.events >= last_events && p.bytes <= size, "progress went back: %llu events, %llu bytes",
                static_cast<unsigned long long>(p.events), static_cast<unsigned long long>(p.bytes));
          last_events = p.events;
        },
        7);
    check_stats(s, size, expected);
    if (kVerbose) {
      std::fprintf(stderr,
                   "exmem_fuzz_trace: policy %s: %llu lines, %llu events, %llu allocs replayed, %llu model failures, "
                   "%llu frees replayed, %llu unknown frees, %llu secret faults, %llu unknown lines\n",
                   mc.policy.c_str(), static_cast<unsigned long long>(s.lines),
                   static_cast<unsigned long long>(s.events), static_cast<unsigned long long>(s.allocs_replayed),
                   static_cast<unsigned long long>(s.model_alloc_failures),
                   static_cast<unsigned long long>(s.frees_replayed), static_cast<unsigned long long>(s.frees_unknown),
                   static_cast<unsigned long long>(s.secret_faults), static_cast<unsigned long long>(s.unknown_lines));
    }
  } catch (const wl::TraceError& e) {
    const std::string msg = e.what();
    if (kVerbose) std::fprintf(stderr, "exmem_fuzz_trace: %s\n", msg.c_str());
    CHECK(msg.rfind(file.path() + ":", 0) == 0, "a TraceError that does not name the file: %s", msg.c_str());
    // A readable file fails only for holding no event, or for a direct-map
    // snapshot line the reader cannot take (the error names it).
    CHECK(expected.events == 0 || (expected.direct_map_lines != 0 && msg.find("direct_map") != std::string::npos),
          "a TraceError for a file of %llu events: %s", static_cast<unsigned long long>(expected.events), msg.c_str());
  } catch (const std::exception& e) {
    diverge("the replay threw something other than a TraceError: %s", e.what());
  }
  const std::vector<std::string> broken = machine.check();
  if (!broken.empty()) {
    std::string all;
    for (const std::string& b : broken) all += "\n  " + b;
    diverge("Machine::check() after the replay (policy %s):%s", mc.policy.c_str(), all.c_str());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  std::string_view rest = text;
  Expected expected;
  while (!rest.empty()) {
    const std::size_t nl = rest.find('\n');
    check_line(rest.substr(0, nl));
    expect_line(rest.substr(0, nl), expected);
    if (nl == std::string_view::npos) break;
    rest.remove_prefix(nl + 1);
  }
  replay(data, size, expected);
  return 0;
}
