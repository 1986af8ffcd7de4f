// directmap/: the direct map (see directmap.hpp for what the folder owns).
// flush.cpp: the flush log.
#include "model/directmap/flush.hpp"

namespace exmem::model::directmap {

std::string_view flush_reason_name(FlushReason r) {
  switch (r) {
    case FlushReason::CpaFlush: return "cpa_flush";
    case FlushReason::Split: return "split";
    case FlushReason::Collapse: return "collapse";
    case FlushReason::KernelRange: return "kernel_range";
    case FlushReason::Error: return "error";
    case FlushReason::VmUnmapAliases: return "vm_unmap_aliases";
  }
  return "unknown";
}

void FlushLog::record(const FlushEvent& e) {
  if (observer_ != nullptr) observer_->on_flush(e);
  if (events_.size() < limit_) {
    events_.push_back(e);
  } else if (limit_ != 0) {
    ++dropped_;
  }
}

void FlushLog::kernel_range(Pfn start, Pfn pages, CpuId cpu, FlushReason reason) {
  if (pages > kTlbSinglePageFlushCeiling) {
    ++counters_.full_flushes;
    record(FlushEvent{true, true, cpu, start, pages, reason});
    return;
  }
  ++counters_.range_flushes;
  counters_.range_pages += pages;
  record(FlushEvent{false, true, cpu, start, pages, reason});
}

void FlushLog::all(CpuId cpu, FlushReason reason) {
  ++counters_.full_flushes;
  record(FlushEvent{true, true, cpu, kNoPfn, 0, reason});
}

void FlushLog::local(Pfn start, Pfn pages, CpuId cpu, FlushReason reason) {
  ++counters_.local_flushes;
  record(FlushEvent{pages > kTlbSinglePageFlushCeiling, false, cpu, start, pages, reason});
}

}  // namespace exmem::model::directmap
