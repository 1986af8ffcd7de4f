// directmap/: the direct map (see directmap.hpp for what the folder owns).
// flush.hpp: TLB flush requests, recorded as events for the TLB model.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "model/types.hpp"

namespace exmem::model::directmap {

// arch/x86/mm/tlb.c: above this many pages a range flush becomes a full flush.
inline constexpr Pfn kTlbSinglePageFlushCeiling = 33;

enum class FlushReason : std::uint8_t {
  CpaFlush,        // cpa_flush() at the end of a set_memory_*() call
  Split,           // flush_tlb_all() after __split_large_page()
  Collapse,        // flush_tlb_all() after cpa_collapse_large_pages()
  KernelRange,     // flush_tlb_kernel_range() by a caller (secretmem fault, policies)
  Error,           // cpa_flush_all() after a failed CPA call
  VmUnmapAliases,  // flush_tlb_kernel_range() of lazily freed vmalloc areas (vm_unmap_aliases())
};
std::string_view flush_reason_name(FlushReason r);

struct FlushEvent {
  bool full = false;      // whole TLB (flush_tlb_all) rather than a range
  bool all_cpus = true;   // IPI to every online CPU, or the local CPU only
  CpuId cpu = 0;          // the CPU that asked
  Pfn start = kNoPfn;     // direct-map range, as pfns (ignored when full)
  Pfn pages = 0;
  FlushReason reason = FlushReason::CpaFlush;
};

struct FlushCounters {
  std::uint64_t range_flushes = 0;  // range flushes on all CPUs
  std::uint64_t range_pages = 0;    // pages named by those range flushes
  std::uint64_t full_flushes = 0;   // flush_tlb_all() and ranges above the ceiling
  std::uint64_t local_flushes = 0;  // flushes of the asking CPU only
};

// Told of every flush at the moment it is requested, in order (the TLB model
// listens here to apply flushes between the direct map's own steps).
class FlushObserver {
 public:
  virtual ~FlushObserver() = default;
  virtual void on_flush(const FlushEvent& e) = 0;
};

class FlushLog {
 public:
  // At most one observer; nullptr detaches it.
  void set_observer(FlushObserver* observer) { observer_ = observer; }
  // Keeps at most `limit` events (0: counters only).
  void set_recording(std::size_t limit) { limit_ = limit; }
  // mirrors flush_tlb_kernel_range(): a range, or everything above the ceiling
  void kernel_range(Pfn start, Pfn pages, CpuId cpu, FlushReason reason);
  // mirrors flush_tlb_all()
  void all(CpuId cpu, FlushReason reason);
  // A flush of the asking CPU only (__flush_tlb_one_kernel / __flush_tlb_all locally).
  void local(Pfn start, Pfn pages, CpuId cpu, FlushReason reason);

  [[nodiscard]] const FlushCounters& counters() const { return counters_; }
  [[nodiscard]] const std::vector<FlushEvent>& events() const { return events_; }
  [[nodiscard]] std::uint64_t dropped() const { return dropped_; }
  void clear_events() { events_.clear(); }

 private:
  void record(const FlushEvent& e);
  FlushCounters counters_;
  std::vector<FlushEvent> events_;
  std::size_t limit_ = 0;
  std::uint64_t dropped_ = 0;
  FlushObserver* observer_ = nullptr;
};

}  // namespace exmem::model::directmap
