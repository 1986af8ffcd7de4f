// workload/: what drives the model (see synthetic.hpp for what the folder owns).
// trace_replay.cpp: the kmem trace reader and its replay on the model.
#include "model/workload/trace_replay.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "model/mm/mm.hpp"

namespace exmem::model::workload {

namespace {

// Real pfns up to 2^36 (256 TiB of physical address space) can be mapped.
constexpr std::uint64_t kMaxRealPfn = std::uint64_t{1} << 36;

constexpr bool is_digit(char c) { return c >= '0' && c <= '9'; }

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// A number at the start of s: "0x1a2b" (hex) or "6699" (decimal), ending at a
// space or at the end. False when there is no such number.
bool parse_number(std::string_view s, std::uint64_t& out) {
  std::uint64_t v = 0;
  std::size_t i = 0;
  if (s.size() >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    i = 2;
    const std::size_t start = i;
    for (; i < s.size(); ++i) {
      const int h = hex_value(s[i]);
      if (h < 0) break;
      if (v >> 60) return false;
      v = v << 4 | static_cast<std::uint64_t>(h);
    }
    if (i == start) return false;
  } else {
    for (; i < s.size() && is_digit(s[i]); ++i) {
      if (v > (~std::uint64_t{0} - 9) / 10) return false;
      v = v * 10 + static_cast<std::uint64_t>(s[i] - '0');
    }
    if (i == 0) return false;
  }
  if (i < s.size() && s[i] != ' ' && s[i] != '\t' && s[i] != '\r') return false;
  out = v;
  return true;
}

// The value of "key=" in a line of space-separated fields (key includes the '=').
std::string_view field(std::string_view fields, std::string_view key) {
  std::size_t pos = 0;
  while (true) {
    const std::size_t at = fields.find(key, pos);
    if (at == std::string_view::npos) return {};
    if (at == 0 || fields[at - 1] == ' ') {
      std::string_view v = fields.substr(at + key.size());
      const std::size_t end = v.find(' ');
      return end == std::string_view::npos ? v : v.substr(0, end);
    }
    pos = at + 1;
  }
}

// The value of the first "key=" at or after pos; pos moves past the value.
std::string_view field_from(std::string_view fields, std::string_view key, std::size_t& pos) {
  while (pos < fields.size()) {
    const std::size_t at = fields.find(key, pos);
    if (at == std::string_view::npos) break;
    if (at == 0 || fields[at - 1] == ' ') {
      const std::size_t start = at + key.size();
      const std::size_t end = std::min(fields.find(' ', start), fields.size());
      pos = end;
      return fields.substr(start, end - start);
    }
    pos = at + 1;
  }
  pos = fields.size();
  return {};
}

bool field_number(std::string_view fields, std::string_view key, std::uint64_t& out, bool& present) {
  const std::string_view v = field(fields, key);
  present = v.data() != nullptr;
  return present && parse_number(v, out);
}

void set_why(std::string* why, std::string text) {
  if (why != nullptr) *why = std::move(text);
}

struct EventName {
  std::string_view name;
  TraceEventKind kind;
};
constexpr std::array<EventName, 6> kEvents{{
    {"mm_page_alloc", TraceEventKind::Alloc},
    {"mm_page_free", TraceEventKind::Free},
    {"mm_page_free_batched", TraceEventKind::FreeBatched},
    {"mm_page_pcpu_drain", TraceEventKind::PcpuDrain},
    {"mm_page_alloc_zone_locked", TraceEventKind::AllocZoneLocked},
    {"mm_page_alloc_extfrag", TraceEventKind::AllocExtfrag},
}};

// "comm-PID [CPU] flags timestamp" before the event name: pid and cpu.
// "comm-PID [CPU]" (or "comm-PID (TGID) [CPU]") ending at close, the ']':
// the task's pid and the cpu; left as they are when the prefix differs.
// The cpu of "[CPU]" ending at close, the ']'; the '[' (nullptr when the
// prefix differs).
inline const char* parse_cpu(const char* begin, const char* close, TraceEvent& ev) {
  const char* open = close;
  unsigned cpu = 0;
  unsigned scale = 1;
  while (open > begin && is_digit(open[-1])) {
    --open;
    cpu += static_cast<unsigned>(*open - '0') * scale;
    scale *= 10;
    if (scale > 10'000'000) return nullptr;
  }
  if (open == close) return nullptr;
  while (open > begin && open[-1] == ' ') --open;
  if (open == begin || open[-1] != '[') return nullptr;
  ev.cpu = cpu;
  return open - 1;
}

// The pid of "comm-PID [" (or "comm-PID (TGID) [") before open, the '['.
inline void parse_pid(const char* begin, const char* open, TraceEvent& ev) {
  const char* j = open;
  while (j > begin && j[-1] == ' ') --j;
  if (j > begin && j[-1] == ')') {  // the record-tgid option
    while (j > begin && j[-1] != '(') --j;
    if (j == begin) return;
    --j;
    while (j > begin && j[-1] == ' ') --j;
  }
  const char* k = j;
  while (k > begin && is_digit(k[-1])) --k;
  if (k == j || k == begin || k[-1] != '-' || j - k > 9) return;
  int pid = 0;
  for (const char* c = k; c < j; ++c) pid = pid * 10 + (*c - '0');
  ev.pid = pid;
}

// "comm-PID [CPU]" ending at close, the ']': the task's pid and the cpu;
// left as they are when the prefix differs.
inline void parse_prefix(const char* begin, const char* close, TraceEvent& ev) {
  const char* open = parse_cpu(begin, close, ev);
  if (open != nullptr) parse_pid(begin, open, ev);
}

void parse_prefix(std::string_view prefix, TraceEvent& ev) {
  const std::size_t close = prefix.rfind(']');
  if (close != std::string_view::npos) parse_prefix(prefix.data(), prefix.data() + close, ev);
}

struct GfpName {
  std::string_view name;
  phys::Gfp gfp;
};
// The names show_gfp_flags() prints (include/trace/events/mmflags.h).
constexpr std::array<GfpName, 40> kGfpNames{{
    {"GFP_TRANSHUGE", phys::GFP_TRANSHUGE},
    {"GFP_TRANSHUGE_LIGHT", phys::GFP_TRANSHUGE_LIGHT},
    {"GFP_HIGHUSER_MOVABLE", phys::GFP_HIGHUSER_MOVABLE},
    {"GFP_HIGHUSER", phys::GFP_HIGHUSER},
    {"GFP_USER", phys::GFP_USER},
    {"GFP_KERNEL_ACCOUNT", phys::GFP_KERNEL_ACCOUNT},
    {"GFP_KERNEL", phys::GFP_KERNEL},
    {"GFP_NOFS", phys::GFP_NOFS},
    {"GFP_ATOMIC", phys::GFP_ATOMIC},
    {"GFP_NOIO", phys::GFP_NOIO},
    {"GFP_NOWAIT", phys::GFP_NOWAIT},
    {"GFP_DMA", phys::__GFP_DMA},
    {"GFP_DMA32", phys::__GFP_DMA32},
    {"__GFP_RECLAIM", phys::__GFP_RECLAIM},
    {"__GFP_DMA", phys::__GFP_DMA},
    {"__GFP_HIGHMEM", phys::__GFP_HIGHMEM},
    {"__GFP_DMA32", phys::__GFP_DMA32},
    {"__GFP_MOVABLE", phys::__GFP_MOVABLE},
    {"__GFP_RECLAIMABLE", phys::__GFP_RECLAIMABLE},
    {"__GFP_HIGH", phys::__GFP_HIGH},
    {"__GFP_IO", phys::__GFP_IO},
    {"__GFP_FS", phys::__GFP_FS},
    {"__GFP_ZERO", phys::__GFP_ZERO},
    {"__GFP_DIRECT_RECLAIM", phys::__GFP_DIRECT_RECLAIM},
    {"__GFP_KSWAPD_RECLAIM", phys::__GFP_KSWAPD_RECLAIM},
    {"__GFP_WRITE", phys::__GFP_WRITE},
    {"__GFP_NOWARN", phys::__GFP_NOWARN},
    {"__GFP_RETRY_MAYFAIL", phys::__GFP_RETRY_MAYFAIL},
    {"__GFP_NOFAIL", phys::__GFP_NOFAIL},
    {"__GFP_NORETRY", phys::__GFP_NORETRY},
    {"__GFP_MEMALLOC", phys::__GFP_MEMALLOC},
    {"__GFP_COMP", phys::__GFP_COMP},
    {"__GFP_NOMEMALLOC", phys::__GFP_NOMEMALLOC},
    {"__GFP_HARDWALL", phys::__GFP_HARDWALL},
    {"__GFP_THISNODE", phys::__GFP_THISNODE},
    {"__GFP_ACCOUNT", phys::__GFP_ACCOUNT},
    {"GFP_KERNEL_RECLAIMABLE", phys::GFP_KERNEL_RECLAIMABLE},
    {"GFP_MOVABLE_MASK", phys::GFP_MOVABLE_MASK},
    {"__GFP_ATOMIC", phys::__GFP_HIGH},  // before 6.3: its meaning went to __GFP_HIGH and ALLOC_NON_BLOCK
    {"GFP_NOIO_NOFS", phys::GFP_NOIO},
}};

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

// "# secret pfn=0x1a2b pid=42": false when the line is not well formed.
bool parse_secret_line(std::string_view line, std::uint64_t& pfn, int& pid) {
  std::string_view rest = line.substr(std::string_view("# secret").size());
  std::uint64_t p = 0;
  std::uint64_t id = 0;
  bool has_pfn = false;
  bool has_pid = false;
  rest = trim(rest);
  if (!field_number(rest, "pfn=", p, has_pfn) || !field_number(rest, "pid=", id, has_pid)) return false;
  if (p == 0 || p >= kMaxRealPfn || id > 0x7fffffff) return false;
  pfn = p;
  pid = static_cast<int>(id);
  return true;
}

void parse_counters(std::string_view text, std::map<std::string, std::string>& out) {
  while (!text.empty()) {
    text = trim(text);
    const std::size_t end = std::min(text.find(' '), text.size());
    const std::string_view kv = text.substr(0, end);
    const std::size_t eq = kv.find('=');
    if (eq != std::string_view::npos) out[std::string(kv.substr(0, eq))] = std::string(kv.substr(eq + 1));
    text.remove_prefix(end);
  }
}

// One '#' line of the header or footer into info (secret lines apart).
void parse_info_line(std::string_view line, TraceInfo& info) {
  auto value = [&](std::string_view key, std::string_view& v) {
    if (!starts_with(line, key)) return false;
    v = trim(line.substr(key.size()));
    return true;
  };
  std::string_view v;
  std::uint64_t n = 0;
  if (value("# exmem-trace", v)) {
    if (parse_number(v, n) && n < 1000) info.format_version = static_cast<int>(n);
  } else if (value("# command:", v)) {
    info.command = std::string(v);
  } else if (value("# cpus:", v)) {
    if (parse_number(v, n) && n > 0 && n <= 65536) info.cpus = static_cast<unsigned>(n);
  } else if (value("# MemTotal_kB:", v)) {
    if (parse_number(v, n)) info.mem_total_kb = n;
  } else if (value("# start", v)) {
    parse_counters(v, info.start_counters);
  } else if (value("# end", v)) {
    parse_counters(v, info.end_counters);
  } else if (value("# exit_status:", v)) {
    const bool negative = !v.empty() && v[0] == '-';
    if (parse_number(negative ? v.substr(1) : v, n) && n < 100000) {
      info.exit_status = negative ? -static_cast<int>(n) : static_cast<int>(n);
    }
  } else if (value("# duration_seconds:", v)) {
    char* end = nullptr;
    const std::string s(v);
    const double d = std::strtod(s.c_str(), &end);
    if (end != s.c_str() && d >= 0) info.duration_seconds = d;
  } else if (value("# events:", v)) {
    if (parse_number(v, n)) info.recorded_events = n;
  } else if (value("# lost_events:", v)) {
    if (parse_number(v, n)) info.lost_events = n;
  } else if (value("# thread", v)) {
    std::uint64_t tid = 0;
    std::uint64_t tgid = 0;
    bool has_tid = false;
    bool has_pid = false;
    if (field_number(v, "tid=", tid, has_tid) && field_number(v, "pid=", tgid, has_pid) && tid <= 0x7fffffff &&
        tgid <= 0x7fffffff) {
      info.threads[static_cast<int>(tid)] = static_cast<int>(tgid);
    }
  }
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  [[nodiscard]] int get() const { return fd_; }

 private:
  int fd_;
};

double thread_cpu_seconds() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

int open_trace(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw TraceError(path, 0, fmt::format("cannot open the trace: {}", std::strerror(errno)));
  return fd;
}

}  // namespace

TraceError::TraceError(const std::string& file, std::uint64_t line, const std::string& what)
    : std::runtime_error(line == 0 ? fmt::format("{}: {}", file, what) : fmt::format("{}:{}: {}", file, line, what)) {}

namespace {

// Hex digit values, 0xFF for other characters.
constexpr std::array<std::uint8_t, 256> kHexDigit = [] {
  std::array<std::uint8_t, 256> t{};
  for (auto& v : t) v = 0xFF;
  for (int c = '0'; c <= '9'; ++c) t[static_cast<std::size_t>(c)] = static_cast<std::uint8_t>(c - '0');
  for (int c = 'a'; c <= 'f'; ++c) t[static_cast<std::size_t>(c)] = static_cast<std::uint8_t>(c - 'a' + 10);
  for (int c = 'A'; c <= 'F'; ++c) t[static_cast<std::size_t>(c)] = static_cast<std::uint8_t>(c - 'A' + 10);
  return t;
}();

// Digits at p (hex after "0x", else decimal) up to a space, a newline or the end.
inline bool scan_number(const char*& p, const char* end, std::uint64_t& out) {
  std::uint64_t v = 0;
  const char* q = p;
  if (end - q > 2 && q[0] == '0' && q[1] == 'x') {
    q += 2;
    const char* start = q;
    for (; q < end; ++q) {
      const std::uint8_t h = kHexDigit[static_cast<unsigned char>(*q)];
      if (h == 0xFF) break;
      v = v << 4 | h;
    }
    if (q == start || q - start > 15) return false;
  } else {
    const char* start = q;
    for (; q < end && is_digit(*q); ++q) v = v * 10 + static_cast<std::uint64_t>(*q - '0');
    if (q == start || q - start > 18) return false;
  }
  if (q < end && *q != ' ' && *q != '\n') return false;
  out = v;
  p = q;
  return true;
}

// A literal at p (its length known when compiled, so the compare is inlined).
template <std::size_t N>
inline bool skip_literal(const char*& p, const char* end, const char (&lit)[N]) {
  constexpr std::size_t n = N - 1;
  if (static_cast<std::size_t>(end - p) < n || std::memcmp(p, lit, n) != 0) return false;
  p += n;
  return true;
}

// The first byte at or after p that is a or b, or end. Eight bytes at a time
// (a zero byte of x ^ a marks an a; the lowest marked byte is exact, borrows
// only mark bytes above it), then byte by byte for the rest.
inline const char* find_either(const char* p, const char* const end, char a, char b) {
  if constexpr (std::endian::native == std::endian::little) {
    constexpr std::uint64_t kOnes = 0x0101010101010101ULL;
    constexpr std::uint64_t kHigh = 0x8080808080808080ULL;
    const std::uint64_t wa = kOnes * static_cast<unsigned char>(a);
    const std::uint64_t wb = kOnes * static_cast<unsigned char>(b);
    for (; end - p >= 8; p += 8) {
      std::uint64_t w = 0;
      std::memcpy(&w, p, 8);
      const std::uint64_t xa = w ^ wa;
      const std::uint64_t xb = w ^ wb;
      const std::uint64_t hit = (((xa - kOnes) & ~xa) | ((xb - kOnes) & ~xb)) & kHigh;
      if (hit != 0) return p + std::countr_zero(hit) / 8;
    }
  }
  for (; p < end; ++p) {
    if (*p == a || *p == b) return p;
  }
  return end;
}

// The first c at or after p, before a newline and before end; nullptr when none.
inline const char* find_in_line(const char* p, const char* end, char c) {
  p = find_either(p, end, c, '\n');
  return p < end && *p == c ? p : nullptr;
}

// The layout every kernel since 4.x prints, read in one pass:
//   "<comm>-<pid> [<cpu>] <flags> <ts>: mm_page_<event>: page=<ptr> pfn=<n> order=<n>[ migratetype=<n>
//   gfp_flags=<flags>]"
// The line starts at begin and ends at the first newline or at end, whichever
// comes first, so the reader can parse straight from its buffer without
// looking for the newline first. Returns where the line ends (its newline, or
// end), or nullptr when the line differs in any way: the general reader then
// takes it. With `open` given, only the cpu of the prefix is read and *open is
// its '[' (nullptr when the prefix differs), for parse_pid() when the pid matters.
const char* parse_usual(const char* const begin, const char* const end, TraceEvent& ev, const char** open = nullptr) {
  const char* const close = find_in_line(begin, end, ']');
  if (close == nullptr) return nullptr;
  const char* p = find_in_line(close, end, ':');
  if (p == nullptr) return nullptr;
  if (!skip_literal(p, end, ": mm_page_")) return nullptr;
  if (skip_literal(p, end, "alloc: ")) {
    ev.kind = TraceEventKind::Alloc;
  } else if (skip_literal(p, end, "free: ")) {
    ev.kind = TraceEventKind::Free;
  } else if (skip_literal(p, end, "free_batched: ")) {
    ev.kind = TraceEventKind::FreeBatched;
  } else if (skip_literal(p, end, "pcpu_drain: ")) {
    ev.kind = TraceEventKind::PcpuDrain;
  } else {
    return nullptr;
  }
  if (!skip_literal(p, end, "page=")) return nullptr;
  if (end - p > 16 && p[16] == ' ') {  // the hashed pointer, 16 hex digits on 64-bit kernels
    p += 17;
  } else {
    p = find_in_line(p, end, ' ');
    if (p == nullptr) return nullptr;
    ++p;
  }
  if (!skip_literal(p, end, "pfn=") || !scan_number(p, end, ev.pfn) || ev.pfn >= kMaxRealPfn) return nullptr;
  std::uint64_t order = 0;
  if (!skip_literal(p, end, " order=") || !scan_number(p, end, order) || order > kMaxPageOrder) return nullptr;
  ev.order = static_cast<unsigned>(order);
  if (ev.kind == TraceEventKind::Alloc) {
    if (!skip_literal(p, end, " migratetype=")) return nullptr;
    if (p < end && *p == '-') ++p;
    while (p < end && is_digit(*p)) ++p;
    if (!skip_literal(p, end, " gfp_flags=")) return nullptr;
    const char* const g = find_either(p, end, ' ', '\n');
    ev.gfp = std::string_view(p, static_cast<std::size_t>(g - p));
    ev.failed = ev.pfn == 0;
    p = g;
    if (p < end && *p == ' ') {  // fields a later kernel may add
      p = static_cast<const char*>(std::memchr(p, '\n', static_cast<std::size_t>(end - p)));
      if (p == nullptr) p = end;
    }
  } else if (ev.pfn == 0) {
    return nullptr;  // the general reader says why
  } else if (p < end && *p != '\n') {
    return nullptr;
  }
  if (open != nullptr) {
    *open = parse_cpu(begin, close, ev);
  } else {
    parse_prefix(begin, close, ev);
  }
  return p;
}

bool parse_usual(std::string_view line, TraceEvent& ev) {
  const char* const end = line.data() + line.size();
  return parse_usual(line.data(), end, ev) == end;
}

}  // namespace

std::optional<TraceEvent> parse_trace_line(std::string_view line, std::string* why) {
  {
    TraceEvent ev;
    if (parse_usual(line, ev)) return ev;
  }
  // The event name follows "timestamp: ". The usual line is
  //   "<comm>-<pid> [<cpu>] <flags> <timestamp>: mm_page_<event>: <fields>";
  // the first ']' and the ':' after it find the name at once. A task's comm
  // may hold anything, so otherwise the name is the first "mm_page_" that
  // follows ": " (or starts the line).
  std::size_t at = std::string_view::npos;
  const std::size_t close = line.find(']');
  if (close != std::string_view::npos) {
    const std::size_t colon = line.find(':', close);
    if (colon != std::string_view::npos && line.substr(colon, 10) == ": mm_page_") at = colon + 2;
  }
  if (at == std::string_view::npos) {
    for (std::size_t from = 0;; from = at + 1) {
      const void* hit = from < line.size() ? ::memmem(line.data() + from, line.size() - from, "mm_page_", 8) : nullptr;
      if (hit == nullptr) {
        set_why(why,
                "not a kmem page event (expected mm_page_alloc, mm_page_free, mm_page_free_batched, "
                "mm_page_pcpu_drain, mm_page_alloc_zone_locked or mm_page_alloc_extfrag)");
        return std::nullopt;
      }
      at = static_cast<std::size_t>(static_cast<const char*>(hit) - line.data());
      if (at == 0 || (at >= 2 && line[at - 1] == ' ' && line[at - 2] == ':')) break;
    }
  }
  const std::size_t colon = line.find(':', at);
  if (colon == std::string_view::npos) {
    set_why(why, "an event name without the ':' that ends it");
    return std::nullopt;
  }
  const std::string_view name = line.substr(at, colon - at);
  TraceEvent ev;
  bool known = false;
  for (const EventName& e : kEvents) {
    if (e.name.size() == name.size() && e.name == name) {
      ev.kind = e.kind;
      known = true;
      break;
    }
  }
  if (!known) {
    set_why(why, fmt::format("unknown event {}", name));
    return std::nullopt;
  }
  if (at >= 2) parse_prefix(line.substr(0, at - 2), ev);
  const std::string_view fields = line.substr(colon + 1);

  // The fields come in the order TP_printk prints them: pfn=, order=,
  // migratetype=, gfp_flags=; each is looked for after the one before.
  bool present = false;
  std::size_t pos = 0;
  std::string_view v = field_from(fields, "pfn=", pos);
  present = v.data() != nullptr;
  if (!present || !parse_number(v, ev.pfn)) {
    set_why(why, present ? fmt::format("{}: pfn= is not a number (expected pfn=0x1a2b or pfn=6699)", name)
                         : fmt::format("{} without pfn=", name));
    return std::nullopt;
  }
  if (ev.pfn >= kMaxRealPfn) {
    set_why(why, fmt::format("{}: pfn {:#x} is beyond the 256 TiB of physical memory a replay can map", name, ev.pfn));
    return std::nullopt;
  }
  if (ev.kind != TraceEventKind::AllocExtfrag) {
    std::uint64_t order = 0;
    std::size_t opos = pos;
    v = field_from(fields, "order=", opos);
    if (v.data() == nullptr) {
      opos = 0;
      v = field_from(fields, "order=", opos);
    }
    present = v.data() != nullptr;
    if (!present || !parse_number(v, order)) {
      if (present || ev.kind != TraceEventKind::FreeBatched) {
        set_why(why, fmt::format("{}: {} (expected order=0 .. order={})", name,
                                 present ? "order= is not a number" : "no order=", kMaxPageOrder));
        return std::nullopt;
      }
      order = 0;  // mm_page_free_batched frees order-0 pages
    } else {
      pos = opos;
    }
    if (order > kMaxPageOrder) {
      set_why(why, fmt::format("{}: order={} (expected 0 .. {})", name, order, kMaxPageOrder));
      return std::nullopt;
    }
    ev.order = static_cast<unsigned>(order);
  }
  if (ev.kind == TraceEventKind::Alloc) {
    std::size_t gpos = pos;
    ev.gfp = field_from(fields, "gfp_flags=", gpos);
    if (ev.gfp.data() == nullptr) {
      gpos = 0;
      ev.gfp = field_from(fields, "gfp_flags=", gpos);
    }
    if (ev.gfp.data() == nullptr) ev.gfp = line.substr(line.size());  // no gfp_flags: empty, inside the line
    // A failed allocation prints no page: "page=(null)" or a zero pointer, and pfn 0.
    ev.failed = ev.pfn == 0;
  } else if (ev.pfn == 0) {
    set_why(why, fmt::format("{}: pfn 0 (no page)", name));
    return std::nullopt;
  }
  return ev;
}

GfpFlags parse_gfp_flags(std::string_view text, std::vector<std::string>* unknown_names) {
  GfpFlags out;
  text = trim(text);
  if (text.empty() || text == "none" || text == "0") return out;
  while (!text.empty()) {
    const std::size_t bar = std::min(text.find('|'), text.size());
    const std::string_view token = trim(text.substr(0, bar));
    text.remove_prefix(std::min(bar + 1, text.size()));
    if (token.empty()) continue;
    bool found = false;
    for (const GfpName& g : kGfpNames) {
      if (g.name == token) {
        out.gfp |= g.gfp;
        found = true;
        break;
      }
    }
    if (!found) {
      // Bits show_gfp_flags() has no name for print as hex: they are unknown too.
      ++out.unknown;
      if (unknown_names != nullptr) unknown_names->emplace_back(token);
    }
  }
  return out;
}

TraceInfo read_trace_info(const std::string& path) {
  TraceInfo info;
  info.path = path;
  const Fd fd(open_trace(path));
  struct stat st {};
  const bool regular = ::fstat(fd.get(), &st) == 0 && S_ISREG(st.st_mode);
  if (regular) info.bytes = static_cast<std::uint64_t>(st.st_size);

  // Header: the leading '#' lines.
  {
    std::string head(64 * 1024, '\0');
    const ssize_t n = ::pread(fd.get(), head.data(), head.size(), 0);
    if (n < 0) throw TraceError(path, 0, fmt::format("cannot read the trace: {}", std::strerror(errno)));
    head.resize(static_cast<std::size_t>(n));
    std::string_view rest = head;
    while (!rest.empty()) {
      const std::size_t nl = rest.find('\n');
      if (nl == std::string_view::npos) break;
      const std::string_view line = trim(rest.substr(0, nl));
      rest.remove_prefix(nl + 1);
      if (line.empty()) continue;
      if (line[0] != '#') break;
      if (!starts_with(line, "# secret")) parse_info_line(line, info);
    }
  }
  if (!regular || info.bytes == 0) return info;

  // Footer: the trailing '#' lines, read backwards in blocks.
  std::vector<std::string> footer;  // last line first
  std::uint64_t pos = info.bytes;
  std::string carry;  // the start of a line whose end is in a later block
  bool done = false;
  constexpr std::uint64_t kBlock = 64 * 1024;
  while (pos > 0 && !done) {
    const std::uint64_t n = std::min(kBlock, pos);
    pos -= n;
    std::string block(n, '\0');
    if (::pread(fd.get(), block.data(), n, static_cast<off_t>(pos)) != static_cast<ssize_t>(n)) {
      throw TraceError(path, 0, fmt::format("cannot read the trace: {}", std::strerror(errno)));
    }
    block += carry;
    std::size_t end = block.size();
    while (!done) {
      const std::size_t nl = end == 0 ? std::string::npos : block.rfind('\n', end - 1);
      if (nl == std::string::npos && pos > 0) {
        carry = block.substr(0, end);
        break;
      }
      const std::size_t begin = nl == std::string::npos ? 0 : nl + 1;
      const std::string_view line = trim(std::string_view(block).substr(begin, end - begin));
      if (!line.empty()) {
        if (line[0] != '#') {
          done = true;
          break;
        }
        footer.emplace_back(line);
      }
      if (nl == std::string::npos) {
        done = true;
        break;
      }
      end = nl;
    }
  }
  for (auto it = footer.rbegin(); it != footer.rend(); ++it) {
    std::uint64_t pfn = 0;
    int pid = 0;
    if (starts_with(*it, "# secret")) {
      if (parse_secret_line(*it, pfn, pid)) info.secret_pages.emplace_back(pfn, pid);
    } else {
      parse_info_line(*it, info);
    }
  }
  return info;
}

// --- the replay ---

namespace {

// One line the reader recognised, as it hands it to the replay.
struct Record {
  enum Kind : std::uint8_t { kAlloc, kFree, kDrain, kZoneLocked, kExtfrag, kSecretMark };
  std::uint64_t pfn = 0;
  std::uint64_t line = 0;
  phys::Gfp gfp = 0;
  std::int32_t pid = -1;  // the task's pid (for kSecretMark: the process that held the page)
  std::uint32_t cpu = 0;
  Kind kind = kAlloc;
  std::uint8_t order = 0;
  bool failed = false;
};

struct Batch {
  std::vector<Record> records;
  std::uint64_t bytes = 0;  // of the file, read up to the end of this batch
};

// Batches from the reader's thread to the replay, a few in flight; emptied
// batches go back to the reader for reuse.
class BatchQueue {
 public:
  static constexpr std::size_t kDepth = 8;
  static constexpr std::size_t kRecords = 4096;

  // False when the replay stopped taking batches.
  bool push(Batch&& b) {
    std::unique_lock<std::mutex> lock(mu_);
    not_full_.wait(lock, [&] { return full_.size() < kDepth || abandoned_; });
    if (abandoned_) return false;
    full_.push_back(std::move(b));
    not_empty_.notify_one();
    return true;
  }
  // The next batch; nullopt at the end; the reader's exception, if it had one.
  std::optional<Batch> pop() {
    std::unique_lock<std::mutex> lock(mu_);
    not_empty_.wait(lock, [&] { return !full_.empty() || closed_; });
    if (full_.empty()) {
      if (error_) std::rethrow_exception(error_);
      return std::nullopt;
    }
    Batch b = std::move(full_.front());
    full_.pop_front();
    not_full_.notify_one();
    return b;
  }
  void close(std::exception_ptr error) {
    const std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    error_ = std::move(error);
    not_empty_.notify_all();
  }
  void abandon() {
    const std::lock_guard<std::mutex> lock(mu_);
    abandoned_ = true;
    not_full_.notify_all();
  }
  void recycle(Batch&& b) {
    b.records.clear();
    const std::lock_guard<std::mutex> lock(mu_);
    if (spare_.size() < kDepth + 2) spare_.push_back(std::move(b));
  }
  Batch take_spare() {
    {
      const std::lock_guard<std::mutex> lock(mu_);
      if (!spare_.empty()) {
        Batch b = std::move(spare_.back());
        spare_.pop_back();
        return b;
      }
    }
    Batch b;
    b.records.reserve(kRecords);
    return b;
  }

 private:
  std::mutex mu_;
  std::condition_variable not_full_;
  std::condition_variable not_empty_;
  std::deque<Batch> full_;
  std::vector<Batch> spare_;
  bool closed_ = false;
  bool abandoned_ = false;
  std::exception_ptr error_;
};

// The reader: splits the file into lines, parses each, turns gfp_flags text
// into flags, and notes what it cannot read. It runs in a thread of its own
// so that reading the text and replaying on the model overlap.
class TraceReader {
 public:
  TraceReader(const TraceInfo& info, BatchQueue& queue) : info_(info), queue_(queue) {}

  void run() {
    try {
      read_all();
      cpu_seconds = thread_cpu_seconds();
      queue_.close(nullptr);
    } catch (...) {
      queue_.close(std::current_exception());
    }
  }

  // After run():
  double cpu_seconds = 0;
  std::uint64_t lines = 0;
  std::uint64_t bytes = 0;
  std::uint64_t unknown_lines = 0;
  std::uint64_t lost_events = 0;
  std::vector<UnknownLine> first_unknown;
  std::uint64_t unknown_gfp_allocs = 0;
  std::map<std::string, std::uint64_t> unknown_gfp_names;

  void count_unknown_gfp() {
    for (const auto& [text, c] : gfp_cache_) {
      if (c.uses == 0) continue;
      unknown_gfp_allocs += c.uses;
      for (const std::string& n : c.unknown) unknown_gfp_names[n] += c.uses;
    }
  }

 private:
  struct CachedGfp {
    GfpFlags flags;
    std::vector<std::string> unknown;  // the names the model does not know
    std::uint64_t uses = 0;            // allocations with them
  };
  struct SvHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  struct FastGfp {
    std::string_view text;  // the key stored in gfp_cache_
    CachedGfp* gfp = nullptr;
  };

  // gfp_flags text -> flags. A trace has few distinct texts, each parsed once
  // and kept in gfp_cache_; in front of it, a direct-mapped table indexed by
  // the text's length and its first and last eight bytes answers almost every
  // line with one compare, without hashing the whole text.
  static std::size_t fast_slot(std::string_view t) {
    std::uint64_t a = 0;
    std::uint64_t b = 0;
    if (t.size() >= 8) {
      std::memcpy(&a, t.data(), 8);
      std::memcpy(&b, t.data() + t.size() - 8, 8);
    } else if (!t.empty()) {
      std::memcpy(&a, t.data(), t.size());
    }
    const std::uint64_t h = (a ^ (b * 0x9E3779B97F4A7C15ULL) ^ t.size()) * 0xBF58476D1CE4E5B9ULL;
    return static_cast<std::size_t>(h >> (64 - kFastBits));
  }

  CachedGfp& gfp(std::string_view text) {
    FastGfp& f = fast_[fast_slot(text)];
    if (f.gfp != nullptr && f.text.size() == text.size() && std::memcmp(f.text.data(), text.data(), text.size()) == 0) {
      return *f.gfp;
    }
    auto it = gfp_cache_.find(text);
    if (it == gfp_cache_.end()) {
      CachedGfp c;
      c.flags = parse_gfp_flags(text, &c.unknown);
      it = gfp_cache_.emplace(std::string(text), std::move(c)).first;
    }
    f = FastGfp{it->first, &it->second};
    return it->second;
  }

  void unknown_line(std::string_view line, std::string why) {
    ++unknown_lines;
    if (first_unknown.size() < ReplayStats::kMaxUnknownReported) {
      first_unknown.push_back({lines, std::string(line.substr(0, 160)), std::move(why)});
    }
  }

  void emit(const Record& r) {
    batch_.records.push_back(r);
    if (batch_.records.size() >= BatchQueue::kRecords) flush();
  }
  void flush() {
    batch_.bytes = bytes;
    if (!queue_.push(std::move(batch_))) throw std::runtime_error("the replay stopped");
    batch_ = queue_.take_spare();
  }
  void on_line(std::string_view line) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) return;
    if (line[0] == '#') {
      if (!starts_with(line, "# secret")) return;  // the recorder's other notes, tracefs headers
      Record r;
      int pid = 0;
      if (!parse_secret_line(line, r.pfn, pid)) {
        unknown_line(line, "a secret page line that is not \"# secret pfn=0x<hex> pid=<pid>\"");
        return;
      }
      r.kind = Record::kSecretMark;
      r.pid = pid;
      r.line = lines;
      emit(r);
      return;
    }
    // scan() has tried the usual layout on the buffer already; what comes
    // here is a line with a carriage return, or a layout only the general
    // reader knows, or no event at all.
    std::string why;
    std::optional<TraceEvent> ev = parse_trace_line(line, &why);
    if (!ev) {
      // trace_pipe's note of events the ring buffer dropped: "CPU:1 [LOST 42 EVENTS]".
      const std::size_t lost = line.find("[LOST ");
      std::uint64_t n = 0;
      if (lost != std::string_view::npos && parse_number(line.substr(lost + 6), n)) {
        lost_events += n;
        return;
      }
      if (trim(line).empty()) return;
      unknown_line(line, std::move(why));
      return;
    }
    on_event(*ev, line.data(), nullptr);
  }

  // A recognised event to the replay; `open` as parse_usual() gives it
  // (nullptr: the event's pid is already read).
  void on_event(TraceEvent& ev, const char* line, const char* open) {
    Record r;
    r.pfn = ev.pfn;
    r.line = lines;
    r.pid = ev.pid;
    r.cpu = ev.cpu;
    r.order = static_cast<std::uint8_t>(ev.order);
    r.failed = ev.failed;
    switch (ev.kind) {
      case TraceEventKind::Alloc: {
        r.kind = Record::kAlloc;
        CachedGfp& g = gfp(ev.gfp);
        r.gfp = g.flags.gfp;
        if (g.flags.unknown != 0) ++g.uses;
        // The task matters only for what could be a secretmem fault (see State::on_alloc).
        if (open != nullptr && r.order == 0 &&
            (r.gfp & (phys::__GFP_MOVABLE | phys::__GFP_HIGHMEM)) == phys::__GFP_HIGHMEM) {
          parse_pid(line, open, ev);
          r.pid = ev.pid;
        }
        break;
      }
      case TraceEventKind::Free:
      case TraceEventKind::FreeBatched:
        r.kind = Record::kFree;
        break;
      case TraceEventKind::PcpuDrain:
        r.kind = Record::kDrain;
        break;
      case TraceEventKind::AllocZoneLocked:
        r.kind = Record::kZoneLocked;
        break;
      case TraceEventKind::AllocExtfrag:
        r.kind = Record::kExtfrag;
        break;
    }
    emit(r);
  }

  // Splits [p, end) into lines and reads each; returns where the first
  // incomplete line starts. `phantom`: a newline the file does not have.
  const char* scan(const char* p, const char* const end, const char* phantom) {
    while (p < end) {
      if (*p != '#') {  // the usual event line, parsed without looking for its newline first
        TraceEvent ev;
        const char* open = nullptr;
        const char* nl = parse_usual(p, end, ev, &open);
        if (nl != nullptr && nl < end && nl[-1] != '\r') {
          ++lines;
          bytes += static_cast<std::uint64_t>(nl - p) + (nl == phantom ? 0 : 1);
          on_event(ev, p, open);
          p = nl + 1;
          continue;
        }
      }
      const char* nl = static_cast<const char*>(std::memchr(p, '\n', static_cast<std::size_t>(end - p)));
      if (nl == nullptr) break;
      ++lines;
      bytes += static_cast<std::uint64_t>(nl - p) + (nl == phantom ? 0 : 1);
      on_line(std::string_view(p, static_cast<std::size_t>(nl - p)));
      p = nl + 1;
    }
    return p;
  }

  // The file is read into a buffer, not mapped: on virtual machines whose
  // hypervisor shadows guest page tables, the first touch of every page of a
  // mapped file costs more than copying it (measured: the reader took twice
  // as long on such a machine).
  void read_all() {
    const Fd fd(open_trace(info_.path));
    batch_ = queue_.take_spare();
    read_stream(fd.get());
    flush();
  }

  void read_stream(int fd) {
    (void)::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    std::vector<char> buf(std::size_t{1} << 20);
    std::size_t have = 0;
    for (bool eof = false; !eof;) {
      const ssize_t n = ::read(fd, buf.data() + have, buf.size() - have);
      if (n < 0) {
        if (errno == EINTR) continue;
        throw TraceError(info_.path, lines, fmt::format("cannot read the trace: {}", std::strerror(errno)));
      }
      const char* phantom = nullptr;
      if (n == 0) {
        eof = true;
        if (have == 0) break;
        if (have == buf.size()) buf.resize(buf.size() + 1);
        phantom = buf.data() + have;
        buf[have++] = '\n';  // the last line had no newline
      } else {
        have += static_cast<std::size_t>(n);
      }
      const char* const end = buf.data() + have;
      const char* const p = scan(buf.data(), end, phantom);
      const auto rest = static_cast<std::size_t>(end - p);
      if (rest == buf.size()) buf.resize(buf.size() * 2);  // one line longer than the buffer
      std::memmove(buf.data(), p, rest);
      have = rest;
    }
  }

  const TraceInfo& info_;
  BatchQueue& queue_;
  Batch batch_;  // the records being gathered
  std::unordered_map<std::string, CachedGfp, SvHash, std::equal_to<>> gfp_cache_;
  static constexpr unsigned kFastBits = 7;
  std::array<FastGfp, std::size_t{1} << kFastBits> fast_{};
};

}  // namespace

struct TraceReplay::State {
  enum : std::uint8_t { kEmpty = 0, kLive = 1, kSecret = 2, kModelFailed = 3 };
  // What the replay knows of one real pfn: the model block allocated for it
  // (or, for a secret page, its file), its order, and the secret page mark.
  struct Entry {
    Pfn model;
    std::uint8_t order;
    std::uint8_t state;
    std::uint16_t secret;  // 0: not marked; else 1 + index in owners
  };
  static_assert(sizeof(Entry) == 8);

  // real pfn -> Entry, in 2 MiB pages of entries mapped when first touched
  // (as transparent huge pages where the host allows: a replay touches them
  // at random, and one TLB entry then covers 256 Ki pfns).
  class PfnTable {
   public:
    static constexpr unsigned kBits = 18;
    static constexpr std::size_t kPageBytes = (std::size_t{1} << kBits) * sizeof(Entry);
    PfnTable() = default;
    PfnTable(const PfnTable&) = delete;
    PfnTable& operator=(const PfnTable&) = delete;
    ~PfnTable() {
      for (Entry* p : pages_)
        if (p != nullptr) ::munmap(p, kPageBytes);
    }
    Entry& get(std::uint64_t pfn) {
      const std::size_t page = pfn >> kBits;
      if (page >= pages_.size()) pages_.resize(page + 1, nullptr);
      Entry*& p = pages_[page];
      if (p == nullptr) p = map_page();
      return p[pfn & ((std::uint64_t{1} << kBits) - 1)];
    }
    // A hint that pfn's entry is wanted soon (the replay looks a few records ahead).
    void prefetch(std::uint64_t pfn) const {
      const std::size_t page = pfn >> kBits;
      if (page < pages_.size() && pages_[page] != nullptr) {
        __builtin_prefetch(&pages_[page][pfn & ((std::uint64_t{1} << kBits) - 1)], 1);
      }
    }
    Entry* find(std::uint64_t pfn) {
      const std::size_t page = pfn >> kBits;
      if (page >= pages_.size() || pages_[page] == nullptr) return nullptr;
      return &pages_[page][pfn & ((std::uint64_t{1} << kBits) - 1)];
    }

   private:
    // A zeroed, 2 MiB aligned mapping (over-map, then trim the ends).
    static Entry* map_page() {
      const std::size_t len = 2 * kPageBytes;
      void* raw = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (raw == MAP_FAILED) throw std::bad_alloc();
      const auto start = reinterpret_cast<std::uintptr_t>(raw);
      const std::uintptr_t aligned = (start + kPageBytes - 1) & ~(std::uintptr_t{kPageBytes} - 1);
      if (aligned > start) ::munmap(raw, aligned - start);
      const std::uintptr_t tail = aligned + kPageBytes;
      if (start + len > tail) ::munmap(reinterpret_cast<void*>(tail), start + len - tail);
      void* page = reinterpret_cast<void*>(aligned);
      (void)::madvise(page, kPageBytes, MADV_HUGEPAGE);
      return static_cast<Entry*>(page);
    }
    std::vector<Entry*> pages_;
  };

  struct Owner {  // a traced pid with secret pages
    int trace_pid = 0;
    std::uint64_t marked = 0;
    mm::Pid pid = 0;  // its model process (0: not yet spawned)
    int file = -1;    // its current file
  };
  struct SecretFile {
    std::uint32_t owner = 0;
    int fd = -1;
    std::uint64_t addr = 0;
    std::uint64_t pages = 0;
    std::uint64_t touched = 0;
    bool live = false;
  };
  State(Machine& m, const TraceInfo& i) : machine(m), info(i), ncpus(m.phys().cpus()) {
    for (const auto& [tid, pid] : i.threads) thread_group[tid] = pid;
  }

  Machine& machine;
  const TraceInfo& info;
  unsigned ncpus;
  PfnTable table;
  std::vector<Owner> owners;
  std::unordered_map<int, std::uint16_t> owner_of_pid;
  std::vector<SecretFile> files;
  std::unordered_map<std::uint64_t, std::uint64_t> partial;  // block head -> pages freed so far
  std::unordered_map<int, int> thread_group;                 // tid -> pid, from "# thread" lines
  ReplayStats stats;
  bool ran = false;

  // Marks a real pfn as a page of pid's memfd_secret mappings.
  bool mark_secret(std::uint64_t pfn, int pid) {
    auto [it, added] = owner_of_pid.try_emplace(pid, static_cast<std::uint16_t>(owners.size()));
    if (added) {
      if (owners.size() >= 0xFFFF) {
        owner_of_pid.erase(it);
        return false;
      }
      owners.push_back(Owner{pid, 0, 0, -1});
    }
    Entry& e = table.get(pfn);
    if (e.secret != 0) return true;
    e.secret = static_cast<std::uint16_t>(it->second + 1);
    ++owners[it->second].marked;
    ++stats.secret_marked;
    return true;
  }

  // The block (or secret page) the trace allocated at real pfn goes.
  void release(Entry& e, std::uint64_t real_pfn, CpuId cpu) {
    switch (e.state) {
      case kLive:
        if (machine.phys().kind(e.model) == phys::FrameKind::User) {
          ++stats.user_frees;
        } else {
          ++stats.kernel_frees;
        }
        machine.free_pages(e.model, e.order, cpu);
        ++stats.frees_replayed;
        machine.scan_tick(cpu);
        break;
      case kSecret: {
        ++stats.secret_frees;
        SecretFile& f = files[e.model];
        if (f.live) release_file(f);
        break;
      }
      case kModelFailed:
        ++stats.frees_of_model_failures;
        break;
      default:
        break;
    }
    e.state = kEmpty;
    if (!partial.empty()) partial.erase(real_pfn);
  }

  // mirrors the last close of a memfd_secret file: munmap + close, after
  // which secretmem_free_folio() restores and frees every page of it.
  void release_file(SecretFile& f) {
    mm::Mm& m = machine.mm();
    const Owner& o = owners[f.owner];
    m.munmap(o.pid, f.addr, f.pages * kPageSize);
    m.close(o.pid, f.fd);
    f.live = false;
    ++stats.secret_releases;
  }

  // A page of a traced pid's secret mapping is faulted in: the pid's current
  // file (a new one when it has none or it is full) gets its next page.
  void secret_fault(Entry& e, CpuId cpu) {
    mm::Mm& m = machine.mm();
    Owner& o = owners[e.secret - 1u];
    if (o.pid == 0) o.pid = m.spawn(~std::uint64_t{0}, /*cap_ipc_lock=*/true, static_cast<int>(cpu));
    m.set_cpu(o.pid, cpu);
    if (o.file < 0 || !files[static_cast<std::size_t>(o.file)].live ||
        files[static_cast<std::size_t>(o.file)].touched >= files[static_cast<std::size_t>(o.file)].pages) {
      SecretFile f;
      f.owner = static_cast<std::uint32_t>(e.secret - 1u);
      f.pages = std::max<std::uint64_t>(1, o.marked);
      f.fd = m.memfd_secret(o.pid, mm::kO_CLOEXEC);
      if (f.fd < 0 || m.ftruncate(o.pid, f.fd, static_cast<std::int64_t>(f.pages * kPageSize)) != 0) {
        if (f.fd >= 0) m.close(o.pid, f.fd);
        e.state = kModelFailed;
        ++stats.model_alloc_failures;
        return;
      }
      const Result<std::uint64_t> addr =
          m.mmap(o.pid, f.pages * kPageSize, mm::kPROT_READ | mm::kPROT_WRITE, mm::kMAP_SHARED, f.fd, 0);
      if (!addr.ok()) {
        m.close(o.pid, f.fd);
        e.state = kModelFailed;
        ++stats.model_alloc_failures;
        return;
      }
      f.addr = addr.value;
      f.live = true;
      files.push_back(f);
      o.file = static_cast<int>(files.size() - 1);
      ++stats.secret_files;
    }
    SecretFile& f = files[static_cast<std::size_t>(o.file)];
    const mm::VmFault fault = m.touch(o.pid, f.addr + f.touched * kPageSize, true);
    ++f.touched;
    if (fault == mm::VmFault::Major) {
      ++stats.secret_faults;
      e.model = static_cast<Pfn>(o.file);
      e.order = 0;
      e.state = kSecret;
      return;
    }
    if (fault == mm::VmFault::Oom) ++stats.secret_ooms;
    ++stats.model_alloc_failures;
    e.state = kModelFailed;
  }

  void on_alloc(const Record& ev) {
    ++stats.allocs;
    if (ev.failed) {
      ++stats.allocs_failed_in_trace;
      return;
    }
    const CpuId cpu = ev.cpu % ncpus;
    Entry& e = table.get(ev.pfn);
    if (e.state != kEmpty) {
      ++stats.realloc_while_live;
      release(e, ev.pfn, cpu);
    }
    // secretmem_fault() allocates order-0 folios with the mapping's gfp,
    // GFP_HIGHUSER (| __GFP_ZERO): highmem-capable but not movable, in the
    // context of the faulting task. The same pfn may have been another page
    // of that task before (a page table: GFP_KERNEL_ACCOUNT), which is not.
    if (e.secret != 0 && ev.order == 0 &&
        (ev.gfp & (phys::__GFP_MOVABLE | phys::__GFP_HIGHMEM)) == phys::__GFP_HIGHMEM && same_process(e, ev.pid)) {
      secret_fault(e, cpu);
      return;
    }
    const phys::FrameKind kind = (ev.gfp & phys::__GFP_MOVABLE) != 0       ? phys::FrameKind::User
                                 : (ev.gfp & phys::__GFP_RECLAIMABLE) != 0 ? phys::FrameKind::Reclaimable
                                                                           : phys::FrameKind::Kernel;
    const Result<Pfn> r = machine.alloc_pages(ev.gfp, ev.order, cpu, kind);
    e.order = static_cast<std::uint8_t>(ev.order);
    if (!r.ok()) {
      ++stats.model_alloc_failures;
      e.state = kModelFailed;
      return;
    }
    e.model = r.value;
    e.state = kLive;
    ++stats.allocs_replayed;
    if (kind == phys::FrameKind::User) {
      ++stats.user_allocs;
    } else if (kind == phys::FrameKind::Reclaimable) {
      ++stats.reclaimable_allocs;
    } else {
      ++stats.kernel_allocs;
    }
    machine.scan_tick(cpu);
  }

  void partial_free(Entry& head, std::uint64_t head_pfn, unsigned order, CpuId cpu) {
    ++stats.frees_partial;
    std::uint64_t& freed = partial[head_pfn];
    freed += std::uint64_t{1} << order;
    if (freed >= (std::uint64_t{1} << head.order)) {
      partial.erase(head_pfn);
      release(head, head_pfn, cpu);
    }
  }

  void on_free(const Record& ev) {
    ++stats.frees;
    const CpuId cpu = ev.cpu % ncpus;
    Entry* e = table.find(ev.pfn);
    if (e != nullptr && e->state != kEmpty) {
      if (e->order > ev.order) {
        partial_free(*e, ev.pfn, ev.order, cpu);
        return;
      }
      const unsigned order = e->order;
      release(*e, ev.pfn, cpu);
      // A free of a larger block than was allocated here: the other blocks it covers go too.
      for (std::uint64_t p = ev.pfn + (std::uint64_t{1} << order); p < ev.pfn + (std::uint64_t{1} << ev.order);) {
        Entry* x = table.find(p);
        if (x != nullptr && x->state != kEmpty) {
          const unsigned o = x->order;
          release(*x, p, cpu);
          p += std::uint64_t{1} << o;
        } else {
          ++p;
        }
      }
      return;
    }
    // A page inside a larger block still live (split_page(), alloc_pages_exact()).
    for (unsigned k = ev.order + 1; k <= kMaxPageOrder; ++k) {
      const std::uint64_t head_pfn = ev.pfn & ~((std::uint64_t{1} << k) - 1);
      Entry* h = table.find(head_pfn);
      if (h != nullptr && h->state != kEmpty && h->order >= k) {
        partial_free(*h, head_pfn, ev.order, cpu);
        return;
      }
    }
    ++stats.frees_unknown;
  }

  // Whether the task that allocated (its tid, -1 when the line had none) is
  // the process that held the secret page.
  bool same_process(const Entry& e, int tid) const {
    if (tid < 0) return true;
    const int owner = owners[e.secret - 1u].trace_pid;
    if (tid == owner) return true;
    const auto it = thread_group.find(tid);
    return it != thread_group.end() && it->second == owner;
  }

  void on_record(const Record& r) {
    switch (r.kind) {
      case Record::kAlloc:
        ++stats.events;
        on_alloc(r);
        break;
      case Record::kFree:
        ++stats.events;
        on_free(r);
        break;
      case Record::kDrain:
        ++stats.events;
        ++stats.pcpu_drains;
        break;
      case Record::kZoneLocked:
        ++stats.events;
        ++stats.zone_locked;
        break;
      case Record::kExtfrag:
        ++stats.events;
        ++stats.extfrag;
        break;
      case Record::kSecretMark:
        if (!mark_secret(r.pfn, r.pid)) {
          ++stats.unknown_lines;
          stats.first_unknown.push_back({r.line, fmt::format("# secret pfn={:#x} pid={}", r.pfn, r.pid),
                                         "more than 65535 pids with secret pages"});
        }
        break;
    }
  }
};

TraceReplay::TraceReplay(Machine& machine, const std::string& path)
    : machine_(machine), info_(read_trace_info(path)), st_(std::make_unique<State>(machine, info_)) {
  for (const auto& [pfn, pid] : info_.secret_pages) st_->mark_secret(pfn, pid);
}

TraceReplay::~TraceReplay() = default;

ReplayStats TraceReplay::run(const std::function<void(const ReplayProgress&)>& progress, std::uint64_t every_lines) {
  State& st = *st_;
  if (st.ran) throw std::logic_error("TraceReplay::run() called twice");
  st.ran = true;
  const auto t0 = std::chrono::steady_clock::now();
  const double cpu0 = thread_cpu_seconds();
  BatchQueue queue;
  TraceReader reader(info_, queue);
  std::thread thread([&reader] { reader.run(); });
  // Whatever happens here, the reader is stopped and joined.
  struct Join {
    BatchQueue& q;
    std::thread& t;
    ~Join() {
      q.abandon();
      if (t.joinable()) t.join();
    }
  } join{queue, thread};

  std::uint64_t next_report = every_lines == 0 ? ~std::uint64_t{0} : every_lines;
  std::uint64_t bytes = 0;
  while (std::optional<Batch> b = queue.pop()) {
    const std::vector<Record>& recs = b->records;
    constexpr std::size_t kAhead = 8;
    for (std::size_t i = 0; i < recs.size(); ++i) {
      if (i + kAhead < recs.size()) st.table.prefetch(recs[i + kAhead].pfn);
      const Record& r = recs[i];
      st.on_record(r);
      if (r.line >= next_report) {
        while (next_report <= r.line) next_report += every_lines;
        if (progress) progress(ReplayProgress{st.stats.events, bytes, info_.bytes});
      }
    }
    bytes = b->bytes;
    queue.recycle(std::move(*b));
  }
  const double cpu1 = thread_cpu_seconds();
  queue.abandon();
  thread.join();
  reader.count_unknown_gfp();

  ReplayStats& s = st.stats;
  s.lines = reader.lines;
  s.bytes = reader.bytes;
  s.lost_events = reader.lost_events;
  s.unknown_lines += reader.unknown_lines;
  s.first_unknown.insert(s.first_unknown.end(), reader.first_unknown.begin(), reader.first_unknown.end());
  std::sort(s.first_unknown.begin(), s.first_unknown.end(),
            [](const UnknownLine& a, const UnknownLine& b) { return a.line < b.line; });
  if (s.first_unknown.size() > ReplayStats::kMaxUnknownReported)
    s.first_unknown.resize(ReplayStats::kMaxUnknownReported);
  s.unknown_gfp_allocs = reader.unknown_gfp_allocs;
  s.unknown_gfp_names = reader.unknown_gfp_names;
  s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  s.reader_cpu_seconds = reader.cpu_seconds;
  s.model_cpu_seconds = cpu1 - cpu0;
  if (s.events == 0) {
    std::string first;
    for (const UnknownLine& u : s.first_unknown) first += fmt::format("\n  line {}: {}: {}", u.line, u.why, u.text);
    throw TraceError(info_.path, 0,
                     fmt::format("no kmem page event (mm_page_alloc, mm_page_free, ...) in its {} lines; expected "
                                 "the output of `exmem trace record` or tracefs's trace_pipe{}",
                                 s.lines, first.empty() ? "" : "; lines not understood:" + first));
  }
  if (progress) progress(ReplayProgress{s.events, s.bytes, info_.bytes});
  return s;
}

}  // namespace exmem::model::workload
