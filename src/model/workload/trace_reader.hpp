// workload/: what drives the model (see synthetic.hpp for what the folder owns).
// trace_reader.hpp: the threaded reading of a trace for its replay
// (trace_replay.cpp): a reader thread splits the file into lines, reads each
// with the grammar of trace_format.hpp and hands records to the replay in
// batches, so that reading the text and replaying on the model overlap. Also
// the replay's table of real pfns, in host pages mapped when first touched.
#pragma once

#include <array>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "model/huge_pages.hpp"
#include "model/phys/gfp.hpp"
#include "model/workload/trace_format.hpp"

namespace exmem::model::workload {

// CPU time of the calling thread, in seconds.
double thread_cpu_seconds();

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
  bool push(Batch&& b);
  // The next batch; nullopt at the end; the reader's exception, if it had one.
  std::optional<Batch> pop();
  void close(std::exception_ptr error);
  void abandon();
  void recycle(Batch&& b);
  Batch take_spare();

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
// into flags, and notes what it cannot read. run() is the body of its thread.
class TraceReader {
 public:
  TraceReader(const TraceInfo& info, BatchQueue& queue) : info_(info), queue_(queue) {}

  void run();
  // Adds the allocations whose gfp_flags had names the model does not know
  // to unknown_gfp_allocs and unknown_gfp_names (after run()).
  void count_unknown_gfp();

  // After run():
  double cpu_seconds = 0;
  std::uint64_t lines = 0;
  std::uint64_t bytes = 0;
  std::uint64_t unknown_lines = 0;
  std::uint64_t lost_events = 0;
  std::uint64_t sched_lines = 0;  // scheduler events (--sched), skipped
  std::vector<UnknownLine> first_unknown;
  std::uint64_t unknown_gfp_allocs = 0;
  std::map<std::string, std::uint64_t> unknown_gfp_names;

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

  CachedGfp& gfp(std::string_view text);
  void unknown_line(std::string_view line, std::string why);
  void emit(const Record& r);
  void flush();
  void on_comment(std::string_view line);
  void on_other_line(std::string_view line);
  void on_event(TraceEvent& ev, const char* line, const char* pid_at);
  const char* scan(const char* p, const char* end, const char* phantom);
  void read_all();
  void read_stream(int fd);

  const TraceInfo& info_;
  BatchQueue& queue_;
  Batch batch_;     // the records being gathered
  std::string why_;  // why the last line read is not an event
  std::unordered_map<std::string, CachedGfp, SvHash, std::equal_to<>> gfp_cache_;
  static constexpr unsigned kFastBits = 7;
  std::array<FastGfp, std::size_t{1} << kFastBits> fast_{};
};

// real pfn -> Entry, in pages of 2^18 entries mapped (map_huge()) when first touched (a
// replay touches them at random, and one TLB entry then covers 256 Ki pfns).
template <class Entry>
class PfnTable {
 public:
  static constexpr unsigned kBits = 18;
  static constexpr std::size_t kPageBytes = (std::size_t{1} << kBits) * sizeof(Entry);
  PfnTable() = default;
  PfnTable(const PfnTable&) = delete;
  PfnTable& operator=(const PfnTable&) = delete;
  ~PfnTable() {
    for (Entry* p : pages_)
      if (p != nullptr) unmap_huge(p, kPageBytes);
  }
  Entry& get(std::uint64_t pfn) {
    const std::size_t page = pfn >> kBits;
    if (page >= pages_.size()) pages_.resize(page + 1, nullptr);
    Entry*& p = pages_[page];
    if (p == nullptr) p = static_cast<Entry*>(map_huge(kPageBytes));
    return p[pfn & kMask];
  }
  // A hint that pfn's entry is wanted soon (the replay looks a few records ahead).
  void prefetch(std::uint64_t pfn) const {
    const std::size_t page = pfn >> kBits;
    if (page < pages_.size() && pages_[page] != nullptr) __builtin_prefetch(&pages_[page][pfn & kMask], 1);
  }
  Entry* find(std::uint64_t pfn) {
    const std::size_t page = pfn >> kBits;
    if (page >= pages_.size() || pages_[page] == nullptr) return nullptr;
    return &pages_[page][pfn & kMask];
  }

 private:
  static constexpr std::uint64_t kMask = (std::uint64_t{1} << kBits) - 1;
  std::vector<Entry*> pages_;
};

}  // namespace exmem::model::workload
