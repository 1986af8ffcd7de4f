// workload/: what drives the model (see synthetic.hpp for what the folder owns).
// trace_format.cpp: reading and writing the trace format (trace_format.hpp):
// the header and footer, the event line grammar, gfp flag names.
#include "model/workload/trace_format.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "model/phys/gfp_names.hpp"
#include "model/types.hpp"

namespace exmem::model::workload {

namespace {

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

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

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
  if (value(trace_line::kVersion, v)) {
    if (parse_number(v, n) && n < 1000) info.format_version = static_cast<int>(n);
  } else if (value(trace_line::kCommand, v)) {
    info.command = std::string(v);
  } else if (value(trace_line::kCpus, v)) {
    if (parse_number(v, n) && n > 0 && n <= 65536) info.cpus = static_cast<unsigned>(n);
  } else if (value(trace_line::kMemTotal, v)) {
    if (parse_number(v, n)) info.mem_total_kb = n;
  } else if (value(trace_line::kStart, v)) {
    parse_counters(v, info.start_counters);
  } else if (value(trace_line::kEnd, v)) {
    parse_counters(v, info.end_counters);
  } else if (value(trace_line::kExitStatus, v)) {
    const bool negative = !v.empty() && v[0] == '-';
    if (parse_number(negative ? v.substr(1) : v, n) && n < 100000) {
      info.exit_status = negative ? -static_cast<int>(n) : static_cast<int>(n);
    }
  } else if (value(trace_line::kDuration, v)) {
    char* end = nullptr;
    const std::string s(v);
    const double d = std::strtod(s.c_str(), &end);
    if (end != s.c_str() && d >= 0) info.duration_seconds = d;
  } else if (value(trace_line::kEvents, v)) {
    if (parse_number(v, n)) info.recorded_events = n;
  } else if (value(trace_line::kLostEvents, v)) {
    if (parse_number(v, n)) info.lost_events = n;
  } else if (value(trace_line::kSched, v)) {
    info.sched = v == "on";
  } else if (value(trace_line::kTraceClock, v)) {
    info.trace_clock = std::string(v);
  } else if (value(trace_line::kCommandPid, v)) {
    if (parse_number(v, n) && n > 0 && n <= 0x7fffffff) info.command_pid = static_cast<int>(n);
  } else if (value(trace_line::kKthread, v)) {
    std::uint64_t pid = 0;
    bool has_pid = false;
    if (field_number(v, "pid=", pid, has_pid) && pid <= 0x7fffffff) info.kthreads.push_back(static_cast<int>(pid));
  } else if (value(trace_line::kThread, v)) {
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

// The first byte at or after p that is a or b, or end. Sixteen bytes at a
// time with SSE2 (every x86-64 has it), else eight at a time (a zero byte of
// x ^ a marks an a; the lowest marked byte is exact, borrows only mark bytes
// above it), then byte by byte for the rest.
inline const char* find_either(const char* p, const char* const end, char a, char b) {
#if defined(__SSE2__)
  const __m128i va = _mm_set1_epi8(a);
  const __m128i vb = _mm_set1_epi8(b);
  for (; end - p >= 16; p += 16) {
    const __m128i w = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const auto hit = static_cast<unsigned>(_mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(w, va), _mm_cmpeq_epi8(w, vb))));
    if (hit != 0) return p + std::countr_zero(hit);
  }
#endif
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

// Whether the 16 bytes at p hold a newline: the skip over a hashed pointer
// must not run into the next line of the reader's buffer.
inline bool newline_in_16(const char* p) {
#if defined(__SSE2__)
  const __m128i w = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm_movemask_epi8(_mm_cmpeq_epi8(w, _mm_set1_epi8('\n'))) != 0;
#else
  constexpr std::uint64_t kOnes = 0x0101010101010101ULL;
  constexpr std::uint64_t kHigh = 0x8080808080808080ULL;
  constexpr std::uint64_t kNewlines = kOnes * static_cast<unsigned char>('\n');
  std::uint64_t a = 0;
  std::uint64_t b = 0;
  std::memcpy(&a, p, 8);
  std::memcpy(&b, p + 8, 8);
  a ^= kNewlines;
  b ^= kNewlines;
  return ((((a - kOnes) & ~a) | ((b - kOnes) & ~b)) & kHigh) != 0;
#endif
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
// its '[' (nullptr when the prefix differs), for read_event_pid() when the pid matters.
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
  if (end - p > 16 && p[16] == ' ' && !newline_in_16(p)) {  // the hashed pointer, 16 hex digits on 64-bit kernels
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

// Any other layout: the general reader, field by field.
bool parse_general(std::string_view line, TraceEvent& ev, std::string* why) {
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
        return false;
      }
      at = static_cast<std::size_t>(static_cast<const char*>(hit) - line.data());
      if (at == 0 || (at >= 2 && line[at - 1] == ' ' && line[at - 2] == ':')) break;
    }
  }
  const std::size_t colon = line.find(':', at);
  if (colon == std::string_view::npos) {
    set_why(why, "an event name without the ':' that ends it");
    return false;
  }
  const std::string_view name = line.substr(at, colon - at);
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
    return false;
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
    return false;
  }
  if (ev.pfn >= kMaxRealPfn) {
    set_why(why, fmt::format("{}: pfn {:#x} is beyond the 256 TiB of physical memory a replay can map", name, ev.pfn));
    return false;
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
        return false;
      }
      order = 0;  // mm_page_free_batched frees order-0 pages
    } else {
      pos = opos;
    }
    if (order > kMaxPageOrder) {
      set_why(why, fmt::format("{}: order={} (expected 0 .. {})", name, order, kMaxPageOrder));
      return false;
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
    return false;
  }
  return true;
}

// A decimal int at the start of s (a '-' allowed), up to a space or the end.
bool parse_int(std::string_view s, int& out) {
  const bool negative = !s.empty() && s[0] == '-';
  if (negative) s.remove_prefix(1);
  std::uint64_t v = 0;
  if (s.empty() || !is_digit(s[0]) || !parse_number(s, v) || v > 0x7fffffff) return false;
  out = negative ? -static_cast<int>(v) : static_cast<int>(v);
  return true;
}

// The int after the last " key" (key with its '=') in s before `before`; false when absent.
bool last_int(std::string_view s, std::string_view key, int& out, std::size_t before = std::string_view::npos) {
  const std::size_t at = s.rfind(key, before);
  if (at == std::string_view::npos) return false;
  return parse_int(s.substr(at + key.size()), out);
}

// "<sec>.<usec>" (any number of fraction digits) as ns; false when not a timestamp.
bool parse_timestamp(std::string_view t, std::uint64_t& ns) {
  const std::size_t dot = t.find('.');
  if (dot == std::string_view::npos || dot == 0 || dot > 12) return false;
  std::uint64_t sec = 0;
  for (std::size_t i = 0; i < dot; ++i) {
    if (!is_digit(t[i])) return false;
    sec = sec * 10 + static_cast<std::uint64_t>(t[i] - '0');
  }
  std::uint64_t frac = 0;
  std::size_t digits = 0;
  for (std::size_t i = dot + 1; i < t.size(); ++i) {
    if (!is_digit(t[i])) return false;
    if (digits < 9) {
      frac = frac * 10 + static_cast<std::uint64_t>(t[i] - '0');
      ++digits;
    }
  }
  if (digits == 0) return false;
  for (; digits < 9; ++digits) frac *= 10;
  ns = sec * 1'000'000'000ULL + frac;
  return true;
}

struct SchedName {
  std::string_view name;
  SchedEventKind kind;
};
constexpr std::array<SchedName, 4> kSchedNames{{
    {"sched_switch", SchedEventKind::Switch},
    {"task_newtask", SchedEventKind::NewTask},
    {"sched_process_exec", SchedEventKind::Exec},
    {"sched_process_exit", SchedEventKind::Exit},
}};

// Where the event's name starts ("<ts>: NAME: ") after the prefix's ']', and
// which scheduler event it is; npos when the line is not one.
std::size_t sched_name_at(std::string_view line, SchedEventKind& kind) {
  const std::size_t close = line.find(']');
  if (close == std::string_view::npos) return std::string_view::npos;
  const std::size_t colon = line.find(": ", close);
  if (colon == std::string_view::npos) return std::string_view::npos;
  const std::string_view rest = line.substr(colon + 2);
  for (const SchedName& n : kSchedNames) {
    if (rest.size() > n.name.size() && rest.substr(0, n.name.size()) == n.name && rest[n.name.size()] == ':') {
      kind = n.kind;
      return colon + 2;
    }
  }
  return std::string_view::npos;
}

}  // namespace

bool is_sched_line(std::string_view line) {
  SchedEventKind kind{};
  return sched_name_at(line, kind) != std::string_view::npos;
}

std::optional<SchedEvent> parse_sched_line(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  SchedEvent e;
  const std::size_t at = sched_name_at(line, e.kind);
  if (at == std::string_view::npos) return std::nullopt;
  // The prefix: "comm-PID [CPU] flags TIMESTAMP: ".
  TraceEvent pre;
  parse_prefix(line.substr(0, at - 2), pre);
  e.pid = pre.pid;
  e.cpu = pre.cpu;
  const std::string_view head = trim(line.substr(0, at - 2));
  const std::size_t sp = head.find_last_of(' ');
  if (sp == std::string_view::npos || !parse_timestamp(head.substr(sp + 1), e.ns)) return std::nullopt;
  const std::size_t fields_at = line.find(": ", at);
  if (fields_at == std::string_view::npos) return std::nullopt;
  const std::string_view f = line.substr(fields_at + 1);  // starts with ' ', so every key is " key="
  // comms and file names may hold spaces: each number is the last of its key
  // (before the next part), as the fields after a name are fixed.
  switch (e.kind) {
    case SchedEventKind::Switch: {
      const std::size_t next_pid = f.rfind(" next_pid=");
      if (next_pid == std::string_view::npos) return std::nullopt;
      const std::size_t arrow = f.rfind(" ==> next_comm=", next_pid);
      if (arrow == std::string_view::npos) return std::nullopt;
      if (!parse_int(f.substr(next_pid + 10), e.next_pid)) return std::nullopt;
      if (!last_int(f.substr(0, arrow), " prev_pid=", e.prev_pid)) return std::nullopt;
      const std::size_t state = f.rfind(" prev_state=", arrow);
      if (state == std::string_view::npos) return std::nullopt;
      const std::string_view st = f.substr(state + 12, arrow - state - 12);
      e.prev_dead = st.find_first_of("XZ") != std::string_view::npos;
      e.name = f.substr(arrow + 15, next_pid - arrow - 15);
      return e;
    }
    case SchedEventKind::NewTask: {
      const std::size_t flags = f.rfind(" clone_flags=");
      const std::size_t comm = f.find(" comm=");
      if (flags == std::string_view::npos || comm == std::string_view::npos || comm > flags) return std::nullopt;
      if (!last_int(f.substr(0, comm), " pid=", e.child)) return std::nullopt;
      std::uint64_t v = 0;
      std::size_t i = flags + 13;
      const std::size_t start = i;
      for (; i < f.size() && kHexDigit[static_cast<unsigned char>(f[i])] != 0xFF && i - start < 16; ++i)
        v = v << 4 | kHexDigit[static_cast<unsigned char>(f[i])];
      if (i == start || (i < f.size() && f[i] != ' ')) return std::nullopt;
      e.clone_flags = v;
      e.name = f.substr(comm + 6, flags - comm - 6);
      return e;
    }
    case SchedEventKind::Exec: {
      const std::size_t old = f.rfind(" old_pid=");
      if (old == std::string_view::npos || !parse_int(f.substr(old + 9), e.old_pid)) return std::nullopt;
      const std::size_t pid = f.rfind(" pid=", old);
      if (pid == std::string_view::npos || !parse_int(f.substr(pid + 5), e.child)) return std::nullopt;
      const std::size_t file = f.find(" filename=");
      if (file != std::string_view::npos && file < pid) e.name = f.substr(file + 10, pid - file - 10);
      return e;
    }
    case SchedEventKind::Exit: {
      const std::size_t prio = f.rfind(" prio=");
      if (prio == std::string_view::npos || !last_int(f.substr(0, prio), " pid=", e.child)) return std::nullopt;
      const std::size_t comm = f.find(" comm=");
      const std::size_t pid = f.rfind(" pid=", prio);
      if (comm != std::string_view::npos && comm < pid) e.name = f.substr(comm + 6, pid - comm - 6);
      return e;
    }
  }
  return std::nullopt;
}

TraceError::TraceError(const std::string& file, std::uint64_t line, const std::string& what)
    : std::runtime_error(line == 0 ? fmt::format("{}: {}", file, what) : fmt::format("{}:{}: {}", file, line, what)) {}

TraceFile::TraceFile(const std::string& path) : fd_(::open(path.c_str(), O_RDONLY | O_CLOEXEC)) {
  if (fd_ < 0) throw TraceError(path, 0, fmt::format("cannot open the trace: {}", std::strerror(errno)));
}

TraceFile::~TraceFile() { ::close(fd_); }

EventLine read_event_line(const char* const begin, const char* const end, TraceEvent& ev, std::string* why,
                          const char** pid_at) {
  const char* const usual = parse_usual(begin, end, ev, pid_at);
  if (usual != nullptr && (usual == begin || usual[-1] != '\r')) return {usual, true};
  const char* nl = static_cast<const char*>(std::memchr(begin, '\n', static_cast<std::size_t>(end - begin)));
  if (nl == nullptr) nl = end;
  std::string_view line(begin, static_cast<std::size_t>(nl - begin));
  ev = TraceEvent{};
  if (pid_at != nullptr) *pid_at = nullptr;
  if (!line.empty() && line.back() == '\r') {
    line.remove_suffix(1);
    if (parse_usual(line, ev)) return {nl, true};
    ev = TraceEvent{};
  }
  return {nl, parse_general(line, ev, why)};
}

void read_event_pid(const char* line_begin, const char* pid_at, TraceEvent& ev) { parse_pid(line_begin, pid_at, ev); }

std::optional<TraceEvent> parse_trace_line(std::string_view line, std::string* why) {
  TraceEvent ev;
  if (!read_event_line(line.data(), line.data() + line.size(), ev, why).event) return std::nullopt;
  return ev;
}

std::optional<std::uint64_t> parse_lost_events(std::string_view line) {
  const std::size_t lost = line.find("[LOST ");
  std::uint64_t n = 0;
  if (lost == std::string_view::npos || !parse_number(line.substr(lost + 6), n)) return std::nullopt;
  return n;
}

std::string trace_header(std::string_view command, long cpus, std::uint64_t mem_total_kb, std::string_view counters) {
  return fmt::format("{} {}\n{} {}\n{} {}\n{} {}\n{}{}\n", trace_line::kVersion, kTraceFormatVersion,
                     trace_line::kCommand, command, trace_line::kCpus, cpus, trace_line::kMemTotal, mem_total_kb,
                     trace_line::kStart, counters);
}

std::string trace_end_line(std::string_view counters) { return fmt::format("{}{}\n", trace_line::kEnd, counters); }

std::string trace_secret_line(std::uint64_t pfn, int pid) {
  return fmt::format("{} pfn={:#x} pid={}\n", trace_line::kSecret, pfn, pid);
}

std::string trace_thread_line(int tid, int pid) {
  return fmt::format("{} tid={} pid={}\n", trace_line::kThread, tid, pid);
}

std::string trace_sched_lines(std::string_view trace_clock) {
  return fmt::format("{} on\n{} {}\n", trace_line::kSched, trace_line::kTraceClock, trace_clock);
}

std::string trace_command_pid_line(int pid) { return fmt::format("{} {}\n", trace_line::kCommandPid, pid); }

std::string trace_kthread_line(int pid) { return fmt::format("{} pid={}\n", trace_line::kKthread, pid); }

std::string trace_footer(int exit_status, double duration_seconds, std::uint64_t events, std::uint64_t lost_events) {
  return fmt::format("{} {}\n{} {:.6f}\n{} {}\n{} {}\n", trace_line::kExitStatus, exit_status, trace_line::kDuration,
                     duration_seconds, trace_line::kEvents, events, trace_line::kLostEvents, lost_events);
}

bool parse_secret_line(std::string_view line, std::uint64_t& pfn, int& pid) {
  std::string_view rest = line.substr(trace_line::kSecret.size());
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

GfpFlags parse_gfp_flags(std::string_view text, std::vector<std::string>* unknown_names) {
  GfpFlags out;
  text = trim(text);
  if (text.empty() || text == "none" || text == "0") return out;
  while (!text.empty()) {
    const std::size_t bar = std::min(text.find('|'), text.size());
    const std::string_view token = trim(text.substr(0, bar));
    text.remove_prefix(std::min(bar + 1, text.size()));
    if (token.empty()) continue;
    if (const std::optional<phys::Gfp> gfp = phys::gfp_from_name(token)) {
      out.gfp |= *gfp;
    } else {
      // Bits show_gfp_flags() has no name for print as hex: they are unknown too.
      ++out.unknown;
      if (unknown_names != nullptr) unknown_names->emplace_back(token);
    }
  }
  return out;
}

namespace {

// The codes of "# direct_map" runs, by model::Coverage value.
constexpr std::array<char, 4> kCoverageCode{'.', 'G', 'M', 'K'};

int coverage_of_code(char c) {
  for (std::size_t i = 0; i < kCoverageCode.size(); ++i) {
    if (kCoverageCode[i] == c) return static_cast<int>(i);
  }
  return -1;
}

// The line as an error names it: its first words, without the runs.
std::string line_head(std::string_view line) {
  const std::size_t map = line.find(" map=");
  return std::string(map == std::string_view::npos ? line.substr(0, 80) : line.substr(0, map));
}

// One "# direct_map ..." line of the footer into info; `declared` keeps each
// map's regions= from its first line.
void read_direct_map_line(const std::string& path, std::string_view line, TraceInfo& info,
                          std::map<std::string, std::uint64_t>& declared) {
  auto fail = [&](const std::string& what) {
    throw TraceError(path, 0, fmt::format("the line \"{}\": {}", line_head(line), what));
  };
  std::string_view rest = trim(line.substr(trace_line::kDirectMap.size()));
  if (starts_with(rest, "unavailable")) {
    info.map_unavailable = std::string(trim(rest.substr(11)));
    return;
  }
  const std::size_t sp = std::min(rest.find(' '), rest.size());
  const std::string when(rest.substr(0, sp));
  if (when != "start" && when != "end") fail(fmt::format("\"{}\" is neither start, end nor unavailable", when));
  const std::string_view fields = rest.substr(sp);
  std::uint64_t regions = 0;
  std::uint64_t from = 0;
  bool present = false;
  if (!field_number(fields, "regions=", regions, present)) {
    fail(present ? "field regions=: not a number" : "field regions= is missing");
  }
  if (regions > kMaxRealPfn / 512) fail(fmt::format("field regions=: {} regions is more than the format allows", regions));
  if (!field_number(fields, "from=", from, present)) {
    fail(present ? "field from=: not a number" : "field from= is missing");
  }
  const std::string_view runs = field(fields, "map=");
  if (runs.data() == nullptr) fail("field map= is missing");
  std::optional<DirectMapSnapshot>& snap = when == "start" ? info.map_start : info.map_end;
  if (!snap) {
    snap.emplace();
    snap->regions.reserve(regions);
    declared[when] = regions;
  } else if (declared[when] != regions) {
    fail(fmt::format("field regions=: {}, but the map's first line said {}", regions, declared[when]));
  }
  if (from != snap->regions.size()) {
    fail(fmt::format("field from=: {}, but the map's earlier lines end at region {}", from, snap->regions.size()));
  }
  std::size_t i = 0;
  for (std::uint64_t run = 1; i < runs.size(); ++run) {
    const std::size_t start = i;
    std::uint64_t count = 0;
    while (i < runs.size() && is_digit(runs[i]) && count <= regions) {
      count = count * 10 + static_cast<std::uint64_t>(runs[i] - '0');
      ++i;
    }
    if (i == start || count == 0) fail(fmt::format("field map=: run {} (at character {}) has no count", run, start));
    if (i >= runs.size()) fail(fmt::format("field map=: run {} (\"{}\") has no code", run, runs.substr(start)));
    const int code = coverage_of_code(runs[i]);
    if (code < 0) {
      fail(fmt::format("field map=: run {} (\"{}\"): code '{}' is not G, M, K or .", run,
                       runs.substr(start, i + 1 - start), runs[i]));
    }
    ++i;
    if (snap->regions.size() + count > regions) {
      fail(fmt::format("field map=: run {} reaches region {}, past regions={}", run, snap->regions.size() + count,
                       regions));
    }
    snap->regions.insert(snap->regions.end(), count, static_cast<std::uint8_t>(code));
  }
}

}  // namespace

std::uint64_t DirectMapSnapshot::regions_of(std::uint8_t coverage) const {
  return static_cast<std::uint64_t>(std::count(regions.begin(), regions.end(), coverage));
}

std::string trace_direct_map_lines(std::string_view when, const DirectMapSnapshot& map) {
  std::string out;
  std::string runs;
  std::size_t nruns = 0;
  std::size_t from = 0;
  auto line = [&](std::size_t end) {
    out += fmt::format("{} {} regions={} from={} map={}\n", trace_line::kDirectMap, when, map.regions.size(), from,
                       runs);
    runs.clear();
    nruns = 0;
    from = end;
  };
  std::size_t i = 0;
  while (i < map.regions.size()) {
    std::size_t j = i;
    while (j < map.regions.size() && map.regions[j] == map.regions[i]) ++j;
    runs += fmt::format("{}{}", j - i, kCoverageCode[map.regions[i] & 3u]);
    i = j;
    if (++nruns == kDirectMapRunsPerLine && i < map.regions.size()) line(i);
  }
  line(i);
  return out;
}

std::string trace_direct_map_unavailable_line(std::string_view refusal, std::string_view why) {
  std::string w(why);
  std::replace(w.begin(), w.end(), '\n', ' ');
  return fmt::format("{} unavailable {}: {}\n", trace_line::kDirectMap, refusal, w);
}

TraceInfo read_trace_info(const std::string& path) {
  TraceInfo info;
  info.path = path;
  const TraceFile fd(path);
  struct stat st {};
  const bool regular = ::fstat(fd.fd(), &st) == 0 && S_ISREG(st.st_mode);
  if (regular) info.bytes = static_cast<std::uint64_t>(st.st_size);

  // Header: the leading '#' lines.
  {
    std::string head(64 * 1024, '\0');
    const ssize_t n = ::pread(fd.fd(), head.data(), head.size(), 0);
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
      if (!starts_with(line, trace_line::kSecret)) parse_info_line(line, info);
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
    if (::pread(fd.fd(), block.data(), n, static_cast<off_t>(pos)) != static_cast<ssize_t>(n)) {
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
  std::map<std::string, std::uint64_t> declared;  // regions= of each "# direct_map" map
  for (auto it = footer.rbegin(); it != footer.rend(); ++it) {
    std::uint64_t pfn = 0;
    int pid = 0;
    if (trace_line::is_direct_map_line(*it)) {
      read_direct_map_line(path, *it, info, declared);
    } else if (starts_with(*it, trace_line::kSecret)) {
      if (parse_secret_line(*it, pfn, pid)) info.secret_pages.emplace_back(pfn, pid);
    } else {
      parse_info_line(*it, info);
    }
  }
  for (const auto& [when, regions] : declared) {
    const std::optional<DirectMapSnapshot>& snap = when == "start" ? info.map_start : info.map_end;
    if (snap->regions.size() != regions) {
      throw TraceError(path, 0,
                       fmt::format("the \"# direct_map {}\" lines: field map=: the runs cover {} regions, regions={}",
                                   when, snap->regions.size(), regions));
    }
  }
  return info;
}

}  // namespace exmem::model::workload
