// workload/: what drives the model (see synthetic.hpp for what the folder owns).
// trace_reader.cpp: the reader thread, its queue of batches, the pfn table's pages.
#include "model/workload/trace_reader.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <new>
#include <stdexcept>
#include <utility>

namespace exmem::model::workload {

double thread_cpu_seconds() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

bool BatchQueue::push(Batch&& b) {
  std::unique_lock<std::mutex> lock(mu_);
  not_full_.wait(lock, [&] { return full_.size() < kDepth || abandoned_; });
  if (abandoned_) return false;
  full_.push_back(std::move(b));
  not_empty_.notify_one();
  return true;
}

std::optional<Batch> BatchQueue::pop() {
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

void BatchQueue::close(std::exception_ptr error) {
  const std::lock_guard<std::mutex> lock(mu_);
  closed_ = true;
  error_ = std::move(error);
  not_empty_.notify_all();
}

void BatchQueue::abandon() {
  const std::lock_guard<std::mutex> lock(mu_);
  abandoned_ = true;
  not_full_.notify_all();
}

void BatchQueue::recycle(Batch&& b) {
  b.records.clear();
  const std::lock_guard<std::mutex> lock(mu_);
  if (spare_.size() < kDepth + 2) spare_.push_back(std::move(b));
}

Batch BatchQueue::take_spare() {
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

void TraceReader::run() {
  try {
    read_all();
    cpu_seconds = thread_cpu_seconds();
    queue_.close(nullptr);
  } catch (...) {
    queue_.close(std::current_exception());
  }
}

void TraceReader::count_unknown_gfp() {
  for (const auto& [text, c] : gfp_cache_) {
    if (c.uses == 0) continue;
    unknown_gfp_allocs += c.uses;
    for (const std::string& n : c.unknown) unknown_gfp_names[n] += c.uses;
  }
}

namespace {

// The slot of gfp_flags text in TraceReader's direct-mapped table: from the
// text's length and its first and last eight bytes, without hashing it all.
template <unsigned Bits>
std::size_t fast_slot(std::string_view t) {
  std::uint64_t a = 0;
  std::uint64_t b = 0;
  if (t.size() >= 8) {
    std::memcpy(&a, t.data(), 8);
    std::memcpy(&b, t.data() + t.size() - 8, 8);
  } else if (!t.empty()) {
    std::memcpy(&a, t.data(), t.size());
  }
  const std::uint64_t h = (a ^ (b * 0x9E3779B97F4A7C15ULL) ^ t.size()) * 0xBF58476D1CE4E5B9ULL;
  return static_cast<std::size_t>(h >> (64 - Bits));
}

}  // namespace

// gfp_flags text -> flags. A trace has few distinct texts, each parsed once
// (with phys/'s table of names) and kept in gfp_cache_; in front of it, a
// direct-mapped table answers almost every line with one compare.
TraceReader::CachedGfp& TraceReader::gfp(std::string_view text) {
  FastGfp& f = fast_[fast_slot<kFastBits>(text)];
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

void TraceReader::unknown_line(std::string_view line, std::string why) {
  ++unknown_lines;
  if (first_unknown.size() < kMaxUnknownLinesKept) {
    first_unknown.push_back({lines, std::string(line.substr(0, 160)), std::move(why)});
  }
}

void TraceReader::emit(const Record& r) {
  batch_.records.push_back(r);
  if (batch_.records.size() >= BatchQueue::kRecords) flush();
}

void TraceReader::flush() {
  batch_.bytes = bytes;
  if (!queue_.push(std::move(batch_))) throw std::runtime_error("the replay stopped");
  batch_ = queue_.take_spare();
}

// A '#' line: a secret page mark is handed on; the recorder's other notes and
// tracefs headers are not events.
void TraceReader::on_comment(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.substr(0, trace_line::kSecret.size()) != trace_line::kSecret) return;
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
}

// A line the grammar did not read as an event (why_ says why).
void TraceReader::on_other_line(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (const std::optional<std::uint64_t> n = parse_lost_events(line)) {
    lost_events += *n;
    return;
  }
  if (line.find_first_not_of(" \t\r") == std::string_view::npos) return;
  if (is_sched_line(line)) {  // recorded with --sched: for `exmem trace sched`, not the allocator
    ++sched_lines;
    return;
  }
  unknown_line(line, std::move(why_));
}

// A recognised event to the replay; `pid_at` as read_event_line() gives it
// (nullptr: the event's pid is already read).
void TraceReader::on_event(TraceEvent& ev, const char* line, const char* pid_at) {
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
      if (pid_at != nullptr && r.order == 0 &&
          (r.gfp & (phys::__GFP_MOVABLE | phys::__GFP_HIGHMEM)) == phys::__GFP_HIGHMEM) {
        read_event_pid(line, pid_at, ev);
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
const char* TraceReader::scan(const char* p, const char* const end, const char* phantom) {
  while (p < end) {
    const char* nl = nullptr;
    if (*p == '#') {
      nl = static_cast<const char*>(std::memchr(p, '\n', static_cast<std::size_t>(end - p)));
      if (nl == nullptr) break;
      ++lines;
      bytes += static_cast<std::uint64_t>(nl - p) + (nl == phantom ? 0 : 1);
      on_comment(std::string_view(p, static_cast<std::size_t>(nl - p)));
    } else {
      TraceEvent ev;
      const char* pid_at = nullptr;
      const EventLine l = read_event_line(p, end, ev, &why_, &pid_at);
      if (l.end == end) break;  // its newline is not read yet
      nl = l.end;
      ++lines;
      bytes += static_cast<std::uint64_t>(nl - p) + (nl == phantom ? 0 : 1);
      if (l.event) {
        on_event(ev, p, pid_at);
      } else {
        on_other_line(std::string_view(p, static_cast<std::size_t>(nl - p)));
      }
    }
    p = nl + 1;
  }
  return p;
}

// The file is read into a buffer, not mapped: on virtual machines whose
// hypervisor shadows guest page tables, the first touch of every page of a
// mapped file costs more than copying it (measured: the reader took twice
// as long on such a machine).
void TraceReader::read_all() {
  const TraceFile file(info_.path);
  batch_ = queue_.take_spare();
  read_stream(file.fd());
  flush();
}

void TraceReader::read_stream(int fd) {
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

}  // namespace exmem::model::workload
