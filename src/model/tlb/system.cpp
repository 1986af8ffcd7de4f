// tlb/: per-CPU TLBs (see tlb.hpp for what the folder owns).
// system.cpp: accesses, walks, speculative fills, flushes and the hazard checker.
#include "model/tlb/system.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>


namespace exmem::model::tlb {

using directmap::_PAGE_NX;
using directmap::_PAGE_PRESENT;
using directmap::_PAGE_RW;
using directmap::Level;
using TableRef = directmap::DirectMap::TableRef;

namespace {

// An entry with flags e grants more than page tables saying t: it is present
// where they are not, writable where they are read-only, or executable where
// they say NX. (Granting less only causes a spurious fault.)
bool grants_more(std::uint8_t e, std::uint8_t t) {
  if ((e & _PAGE_PRESENT) == 0) return false;
  if ((t & _PAGE_PRESENT) == 0) return true;
  if ((e & _PAGE_RW) != 0 && (t & _PAGE_RW) == 0) return true;
  return (e & _PAGE_NX) == 0 && (t & _PAGE_NX) != 0;
}

std::string flags_text(std::uint8_t f) {
  if ((f & _PAGE_PRESENT) == 0) return "not-present";
  std::string s = "P";
  s += (f & _PAGE_RW) != 0 ? "|RW" : "|RO";
  s += (f & _PAGE_NX) != 0 ? "|NX" : "|X";
  return s;
}

std::string space_text(Asid asid, std::uint64_t vpn) {
  if (asid == kKernelAsid) return fmt::format("direct map pfn {:#x}", vpn);
  return fmt::format("asid {} vpn {:#x}", asid, vpn);
}

std::string entry_text(const Translation& t) {
  return fmt::format("{} {} entry for {} -> pfn {:#x} ({}, {} fill #{})", page_size_name(t.size),
                     t.asid == kKernelAsid ? "global" : "user", space_text(t.asid, t.vpn), t.pfn,
                     flags_text(t.flags), t.speculative ? "speculative" : "architectural",
                     t.fill_seq);
}

}  // namespace

std::string_view event_kind_name(EventKind k) {
  switch (k) {
    case EventKind::Note: return "op";
    case EventKind::Access: return "access";
    case EventKind::SpecFill: return "spec-fill";
    case EventKind::Flush: return "flush";
    case EventKind::FlushSkipped: return "flush-skipped";
    case EventKind::Hazard: return "hazard";
    case EventKind::Leak: return "leak";
  }
  return "?";
}

std::string Hazard::describe() const {
  const char* k = "?";
  switch (kind) {
    case Kind::StaleEntry: k = "stale entry"; break;
    case Kind::StaleWalkCache: k = "stale walk-cache entry"; break;
    case Kind::MixedSizeAttributes: k = "mixed sizes, different frame or attributes"; break;
    case Kind::SizeAndAttributeChange: k = "page size and attributes changed in one write"; break;
    case Kind::DirectMapNotPresent: k = "access in the break-before-make window faults"; break;
  }
  if (step.empty()) return fmt::format("hazard ({}) on cpu{}: {}", k, cpu, what);
  return fmt::format("hazard ({}) on cpu{} at CPA step [{}]: {}", k, cpu, step, what);
}

std::string Leak::report() const {
  std::string s = fmt::format("LEAK on cpu{}: {} reached pfn {:#x}: {}\n", cpu,
                              space_text(asid, vpn), frame, what);
  s += "  events that produced it:\n";
  for (const Event& e : history) {
    s += fmt::format("    #{:<5} {:<13} cpu{} {}\n", e.seq, event_kind_name(e.kind), e.cpu, e.text);
  }
  return s;
}

TlbSystem::TlbSystem(const directmap::DirectMap& dmap, const phys::PhysMem& phys,
                     const TlbConfig& config, const SpecConfig& spec, std::uint64_t seed)
    : dmap_(dmap), phys_(phys), config_(config), spec_(spec), rng_(seed) {
  const unsigned n = phys.cpus() == 0 ? 1 : phys.cpus();
  tlbs_.reserve(n);
  for (unsigned c = 0; c < n; ++c) tlbs_.emplace_back(config_);
  running_.assign(n, 0);
  last_.assign(n, Target{kKernelAsid, kNoPfn});
}

TlbSystem::~TlbSystem() { detach(); }

void TlbSystem::attach(directmap::FlushLog& log) {
  detach();
  log_ = &log;
  log.set_observer(this);
}

void TlbSystem::detach() {
  if (log_ != nullptr) log_->set_observer(nullptr);
  log_ = nullptr;
  if (steps_ != nullptr) steps_->set_cpa_step_observer(nullptr);
  steps_ = nullptr;
}

void TlbSystem::attach_steps(directmap::DirectMap& dmap) {
  if (&dmap != &dmap_) {
    throw std::invalid_argument("attach_steps: not the direct map this TLB walks");
  }
  if (steps_ != nullptr) steps_->set_cpa_step_observer(nullptr);
  steps_ = &dmap;
  dmap.set_cpa_step_observer(this);
}

void TlbSystem::record(EventKind kind, CpuId cpu, Asid asid, std::uint64_t vpn, std::uint64_t pages,
                       std::string text) {
  ++seq_;
  if (history_limit_ == 0) return;
  history_.push_back(Event{seq_, kind, cpu, asid, vpn, pages, std::move(text)});
  while (history_.size() > history_limit_) history_.pop_front();
}

void TlbSystem::note(std::string_view text) {
  record(EventKind::Note, 0, kKernelAsid, 0, 0, std::string(text));
}

std::string TlbSystem::frame_text(Pfn pfn) const {
  if (pfn >= phys_.nr_frames()) return "beyond RAM";
  return std::string(phys::frame_kind_name(phys_.frame_byte(pfn)));
}

std::pair<Pfn, std::uint8_t> TlbSystem::truth(Asid asid, std::uint64_t vpn) const {
  if (asid == kKernelAsid) {
    if (vpn >= phys_.nr_frames()) return {kNoPfn, 0};
    return {static_cast<Pfn>(vpn), dmap_.lookup(static_cast<Pfn>(vpn)).flags};
  }
  if (asid - 1 >= users_.size()) return {kNoPfn, 0};
  const auto& ptes = users_[asid - 1].ptes;
  const auto it = ptes.find(vpn);
  if (it == ptes.end()) return {kNoPfn, 0};
  return it->second;
}

void TlbSystem::touch(CpuId cpu, Asid asid, std::uint64_t vpn) {
  last_[cpu] = Target{asid, vpn};
  if (spec_.recent == 0) return;
  recent_.push_back(Target{asid, vpn});
  while (recent_.size() > spec_.recent) recent_.pop_front();
}

void TlbSystem::report_leak(CpuId cpu, Asid asid, std::uint64_t vpn, Pfn frame, std::string what,
                            std::uint64_t since) {
  Leak leak{cpu, asid, vpn, frame, std::move(what), {}};
  record(EventKind::Leak, cpu, asid, vpn, 1, leak.what);
  const std::uint64_t lo = vpn & ~std::uint64_t{kPagesPer1G - 1};
  for (const Event& e : history_) {
    if (e.seq + 8 < since && e.kind != EventKind::Note) continue;  // a little context
    if (e.seq + 64 < since) continue;
    const bool global = e.pages == 0;
    const bool near = e.asid == asid && e.vpn < lo + kPagesPer1G && lo < e.vpn + e.pages;
    if (global || near) leak.history.push_back(e);
  }
  leaks_.push_back(std::move(leak));
}

AccessOutcome TlbSystem::walk(CpuId cpu, Asid asid, std::uint64_t vpn, bool speculative) {
  AccessOutcome out;
  CpuTlb& tlb = tlbs_[cpu];
  std::uint64_t refs = 4;
  Translation t;
  t.asid = asid;
  t.speculative = speculative;
  if (asid == kKernelAsid) {
    const directmap::DirectMap& dmap = dmap_;
    if (vpn >= phys_.nr_frames()) {
      out.fault = true;
      return out;
    }
    const auto pfn = static_cast<Pfn>(vpn);
    const directmap::Lookup lk = dmap.lookup(pfn);
    const std::uint64_t r2 = pfn / kPagesPer2M;
    const std::uint64_t r1 = pfn / kPagesPer1G;
    const TableRef pte_table = dmap.table_ref(pfn, Level::Pte4K);
    const TableRef pmd_table = dmap.table_ref(pfn, Level::Pmd2M);
    // The paging-structure caches: a walk starts from the deepest one that hits.
    const PscEntry* pde = tlb.pde_cache().find(r2, r2);
    const PscEntry* pdpte = pde == nullptr ? tlb.pdpte_cache().find(r1, r1) : nullptr;
    const PscEntry* used = pde != nullptr ? pde : pdpte;
    const TableRef current = pde != nullptr ? pte_table : pmd_table;
    if (used != nullptr && !(used->table == current)) {
      const Pfn page = used->table.page;
      bool harmful = page != kNoPfn && phys_.kind(page) != phys::FrameKind::PageTable;
      if (!harmful && page != kNoPfn) {
        const std::vector<Pfn> live = dmap.table_pages();
        harmful = std::find(live.begin(), live.end(), page) != live.end();  // reused elsewhere
      }
      if (harmful) {
        const std::string what = fmt::format(
            "{} walk of {} through a stale {} cache entry (fill #{}): it reads page {:#x} as a "
            "page table, but that page was freed and is now a {} frame",
            speculative ? "speculative" : "architectural", space_text(asid, vpn),
            pde != nullptr ? "PDE" : "PDPTE", used->fill_seq, page, frame_text(page));
        Translation shown;
        shown.vpn = vpn;
        shown.pfn = page;
        shown.fill_seq = used->fill_seq;
        const std::string key = fmt::format("w{}:{}:{}", cpu, page, used->fill_seq);
        if (hazard_keys_.insert(key).second) {
          hazards_.push_back(Hazard{Hazard::Kind::StaleWalkCache, cpu, shown, what, {}});
        }
        if (!speculative) {
          report_leak(cpu, asid, vpn, page, what, used->fill_seq);
          out.leak = true;
        }
        return out;
      }
      // Detached but not yet freed: it still holds what the walk would have found.
    }
    if (used == nullptr || !(used->table == current)) {
      refs = lk.level == Level::Pte4K ? 4 : lk.level == Level::Pmd2M ? 3 : 2;
    } else {
      refs = pde != nullptr ? 1 : (lk.level == Level::Pte4K ? 2 : 1);
    }
    if (!lk.present()) {
      out.fault = true;
      return out;
    }
    if (lk.level == Level::Pte4K) {
      if (!(pte_table.slot == TableRef{}.slot)) {
        tlb.pde_cache().fill(r2, r2, PscEntry{r2, pte_table, seq_ + 1});
      }
    }
    if (lk.level != Level::Pud1G && !(pmd_table.slot == TableRef{}.slot)) {
      tlb.pdpte_cache().fill(r1, r1, PscEntry{r1, pmd_table, seq_ + 1});
    }
    t.size = page_size_of(lk.level);
    t.vpn = vpn & ~(pages_of(t.size) - 1);
    t.pfn = static_cast<Pfn>(t.vpn);
    t.flags = lk.flags;
  } else {
    const auto [pfn, flags] = truth(asid, vpn);
    if ((flags & _PAGE_PRESENT) == 0) {
      out.fault = true;
      return out;
    }
    t.size = PageSize::k4K;
    t.vpn = vpn;
    t.pfn = pfn;
    t.flags = flags;
  }
  if (!speculative) {
    ++stats_.walks;
    stats_.walk_refs += refs;
  } else {
    ++stats_.spec_fills;
  }
  const Pfn frame = static_cast<Pfn>(t.pfn + (vpn - t.vpn));
  t.frame_byte = frame < phys_.nr_frames() ? phys_.frame_byte(frame) : 0;
  if (history_limit_ != 0) {
    record(
        speculative ? EventKind::SpecFill : EventKind::Access, cpu, asid, vpn, 1,
        fmt::format("{} miss, walk fills {} {} -> pfn {:#x} ({}, frame {})", space_text(asid, vpn),
                    page_size_name(t.size), asid == kKernelAsid ? "global" : "user", t.pfn,
                    flags_text(t.flags), frame_text(frame)));
  } else {
    ++seq_;
  }
  t.fill_seq = seq_;
  tlb.fill(t, vpn);
  return out;
}

AccessOutcome TlbSystem::access(CpuId cpu, Pfn pfn) { return user_access(cpu, kKernelAsid, pfn); }

AccessOutcome TlbSystem::user_access(CpuId cpu, Asid asid, std::uint64_t vpn) {
  ++stats_.accesses;
  if (asid != kKernelAsid) run(cpu, asid);
  AccessOutcome out;
  const CpuTlb::Hit hit = tlbs_[cpu].lookup(asid, vpn);
  if (hit.level >= 0) {
    out.level = hit.level;
    if (hit.level == 0) {
      ++stats_.l1_hits;
    } else {
      ++stats_.lower_hits;
      stats_.lower_hit_cycles += config_.levels[static_cast<std::size_t>(hit.level)].hit_cycles;
    }
    const Pfn frame = static_cast<Pfn>(hit.t.pfn + (vpn - hit.t.vpn));
    const auto [tpfn, tflags] = truth(asid, vpn);
    const bool stale = asid == kKernelAsid ? grants_more(hit.t.flags, tflags)
                                           : ((tflags & _PAGE_PRESENT) == 0 || tpfn != frame);
    if (history_limit_ != 0) {
      record(EventKind::Access, cpu, asid, vpn, 1,
             fmt::format("{} hits {}", space_text(asid, vpn), entry_text(hit.t)));
    }
    if (stale) {
      const std::string was = std::string(phys::frame_kind_name(hit.t.frame_byte));
      const std::string now = frame_text(frame);
      const std::string what = fmt::format(
          "hit the {}; the page tables now say {}{}; the frame was a {} frame at fill and is "
          "a {} frame now{}",
          entry_text(hit.t), (tflags & _PAGE_PRESENT) == 0 ? "not present" : flags_text(tflags),
          asid != kKernelAsid && tpfn != kNoPfn && tpfn != frame ? fmt::format(" (pfn {:#x})", tpfn)
                                                                 : std::string(),
          was, now, was != now ? " (freed and reused)" : "");
      report_leak(cpu, asid, vpn, frame, what, hit.t.fill_seq);
      out.leak = true;
    }
  } else {
    out = walk(cpu, asid, vpn, false);
    if (out.fault) {
      ++stats_.faults;
      if (asid == kKernelAsid && !windows_.empty()) window_fault(cpu, static_cast<Pfn>(vpn));
    }
  }
  touch(cpu, asid, vpn);
  if (spec_.rate > 0) speculate(cpu);
  return out;
}

void TlbSystem::speculate_near(CpuId cpu, const Target& target, bool blind) {
  std::uint64_t vpn = target.vpn;
  if (spec_.reach != 0) {
    std::uniform_int_distribution<std::int64_t> off(-static_cast<std::int64_t>(spec_.reach),
                                                    static_cast<std::int64_t>(spec_.reach));
    const std::int64_t o = off(rng_);
    if (o < 0 && static_cast<std::uint64_t>(-o) > vpn) return;
    vpn = static_cast<std::uint64_t>(static_cast<std::int64_t>(vpn) + o);
  }
  if (!blind && tlbs_[cpu].lookup(target.asid, vpn).level >= 0) return;
  walk(cpu, target.asid, vpn, true);
}

void TlbSystem::speculate(CpuId cpu, bool blind) {
  if (spec_.rate <= 0) return;
  const double whole = std::floor(spec_.rate);
  auto n = static_cast<unsigned>(whole);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  if (u(rng_) < spec_.rate - whole) ++n;
  for (unsigned i = 0; i < n; ++i) {
    Target t = last_[cpu];
    if (spec_.any_recent && !recent_.empty()) {
      std::uniform_int_distribution<std::size_t> pick(0, recent_.size() - 1);
      t = recent_[pick(rng_)];
    }
    if (t.vpn == kNoPfn && t.asid == kKernelAsid) continue;          // nothing touched yet
    if (t.asid != kKernelAsid && t.asid != running_[cpu]) continue;  // not this CPU's mm
    speculate_near(cpu, t, blind);
  }
}

void TlbSystem::speculate_all(bool blind) {
  for (CpuId c = 0; c < tlbs_.size(); ++c) speculate(c, blind);
}

void TlbSystem::on_flush(const directmap::FlushEvent& e) {
  if (skipped_.count(e.reason) != 0) {
    ++stats_.flushes_skipped;
    record(EventKind::FlushSkipped, e.cpu, kKernelAsid, e.full ? 0 : e.start, e.full ? 0 : e.pages,
           fmt::format("{} flush ({}) left out", e.full ? "full" : "range",
                       directmap::flush_reason_name(e.reason)));
    return;
  }
  speculate_all();  // other CPUs keep running while the change is made
  apply_flush(e);
  speculate_all();  // and right after the flush lands
  run_concurrent();
}

namespace {
constexpr std::string_view kSdmRule =
    "Intel SDM Vol. 3A 4.10.4.2: software should not write to a paging-structure entry in a way "
    "that would change, for any linear address, both the page size and either the page frame, "
    "access rights, or other attributes";
constexpr std::string_view kErratum383 =
    "the AMD erratum 383 condition (Family 10h; kernel: is_erratum_383() in "
    "arch/x86/kvm/svm/svm.c, and the 6.15 collapse commit: CPUs tolerate TLB entries of different "
    "sizes for the same memory only with matching attributes)";

// One key per kind and entry, shared by scan() and the step checks.
std::string entry_key(const Hazard& h) {
  return fmt::format("{}:{}:{}:{}:{}:{}", static_cast<int>(h.kind), h.cpu, h.entry.asid,
                     h.entry.vpn, h.entry.fill_seq, static_cast<int>(h.entry.size));
}

std::string level_text(Level l) {
  switch (l) {
    case Level::None: return "not present";
    case Level::Pte4K: return "4K";
    case Level::Pmd2M: return "2M";
    case Level::Pud1G: return "1G";
  }
  return "?";
}
}  // namespace

void TlbSystem::add_hazard(Hazard h, const std::string& key) {
  if (!hazard_keys_.insert(key).second) return;
  record(EventKind::Hazard, h.cpu, h.entry.asid, h.entry.vpn, pages_of(h.entry.size), h.describe());
  hazards_.push_back(std::move(h));
}

void TlbSystem::run_concurrent() {
  if (concurrent_.empty() || in_concurrent_) return;
  in_concurrent_ = true;
  for (const Concurrent& c : concurrent_) access(c.cpu, c.pfn);
  in_concurrent_ = false;
}

void TlbSystem::window_fault(CpuId cpu, Pfn pfn) {
  for (const Window& w : windows_) {
    if (pfn < w.start || pfn >= w.start + w.pages) continue;
    Translation shown;
    shown.vpn = pfn;
    shown.pfn = pfn;
    shown.fill_seq = seq_;
    Hazard h{Hazard::Kind::DirectMapNotPresent, cpu, shown,
             fmt::format("cpu{}'s kernel access to direct map pfn {:#x} faults: the collapse "
                         "cleared the PMD of pfn {:#x}..{:#x} and flushes before setting the 2 MiB "
                         "leaf, and the direct map has no fault handler for its own addresses (an "
                         "oops). Break-before-make is the SDM's way to change a page size "
                         "(4.10.4.2), which is why 6.15's collapse_pmd_page() instead sets the "
                         "leaf over the table with identical attributes and flushes afterwards",
                         cpu, pfn, w.start, w.start + w.pages - 1),
             step_text_.empty() ? w.step : step_text_};
    add_hazard(std::move(h), fmt::format("np:{}:{}:{}", cpu, w.start, pfn));
    return;
  }
}

void TlbSystem::on_cpa_step(const directmap::CpaStep& s) {
  ++stats_.cpa_steps;
  step_text_ = fmt::format("#{} {}: pfn {:#x}..{:#x}, {} -> {}, on cpu{}", stats_.cpa_steps,
                           directmap::cpa_step_kind_name(s.kind), s.start, s.start + s.pages - 1,
                           level_text(s.old_level), level_text(s.new_level), s.cpu);
  record(EventKind::Note, s.cpu, kKernelAsid, s.start, s.pages, "CPA step " + step_text_);
  // The SDM's write rule: size and attributes changed at once while an entry
  // of another size may still be used for the changed addresses.
  if (s.old_level != s.new_level && s.old_level != Level::None && s.new_level != Level::None &&
      s.changed_pages != 0 && s.old_flags != s.new_flags) {
    const PageSize now = page_size_of(s.new_level);
    for (CpuId c = 0; c < tlbs_.size(); ++c) {
      tlbs_[c].for_each([&](const Translation& t) {
        if (t.size == now || !t.overlaps(kKernelAsid, s.changed, s.changed_pages)) return;
        Hazard h{Hazard::Kind::SizeAndAttributeChange, c, t,
                 fmt::format("the write makes pfn {:#x}..{:#x} {} pages with {} (was {} with {}) "
                             "while cpu{} still holds the {}: {}",
                             s.changed, s.changed + s.changed_pages - 1, level_text(s.new_level),
                             flags_text(s.new_flags), level_text(s.old_level),
                             flags_text(s.old_flags), c, entry_text(t), kSdmRule),
                 step_text_};
        add_hazard(std::move(h), fmt::format("sa:{}:{}:{}", c, t.vpn, stats_.cpa_steps));
      });
    }
  }
  if (s.kind == directmap::CpaStepKind::CollapseBreak) {
    windows_.push_back(Window{s.start, s.pages, step_text_});
  } else if (s.kind == directmap::CpaStepKind::CollapseMake) {
    std::erase_if(windows_, [&](const Window& w) { return w.start == s.start; });
  }
  // Every CPU may speculate at this instant, and other CPUs' kernel code runs.
  speculate_all(true);
  run_concurrent();
  std::vector<Hazard> found;
  for (CpuId c = 0; c < tlbs_.size(); ++c) {
    mixed_sizes(c, s.start, s.pages, found, &stats_.mixed_same_attributes);
  }
  for (Hazard& h : found) {
    h.step = step_text_;
    const std::string key = entry_key(h);  // as scan() keys it: reported once
    add_hazard(std::move(h), key);
  }
  step_text_.clear();
}

void TlbSystem::mixed_sizes(CpuId c, Pfn start, Pfn pages, std::vector<Hazard>& out,
                            std::uint64_t* same) const {
  std::vector<Translation> kernel;
  tlbs_[c].for_each([&](const Translation& t) {
    if (t.overlaps(kKernelAsid, start, pages)) kernel.push_back(t);
  });
  for (const Translation& big : kernel) {
    if (big.size == PageSize::k4K) continue;
    for (const Translation& small : kernel) {
      if (small.size >= big.size) continue;
      if (!big.overlaps(kKernelAsid, small.vpn, pages_of(small.size))) continue;
      const Pfn big_frame = static_cast<Pfn>(big.pfn + (small.vpn - big.vpn));
      if (small.flags == big.flags && small.pfn == big_frame) {
        if (same != nullptr) ++*same;
        continue;
      }
      out.push_back(Hazard{Hazard::Kind::MixedSizeAttributes, c, big,
                           fmt::format("{} and {} are live together with {}: {}; {}",
                                       entry_text(big), entry_text(small),
                                       small.pfn != big_frame ? "different frames"
                                                              : "different attributes",
                                       kErratum383, kSdmRule),
                           {}});
    }
  }
}

void TlbSystem::apply_flush(const directmap::FlushEvent& e) {
  const std::string what =
      e.full ? fmt::format("flush_tlb_all ({})", directmap::flush_reason_name(e.reason))
             : fmt::format("flush_tlb_kernel_range(pfn {:#x}, {} pages) ({})", e.start, e.pages,
                           directmap::flush_reason_name(e.reason));
  if (e.all_cpus) {
    stats_.ipis += tlbs_.size() - 1;
    if (e.full) {
      ++stats_.flushes_full;
    } else {
      ++stats_.flushes_range;
      stats_.range_pages += e.pages;
    }
    for (CpuTlb& t : tlbs_) {
      stats_.entries_invalidated +=
          e.full ? t.flush_all() : t.invalidate_range(kKernelAsid, e.start, e.pages);
    }
    record(EventKind::Flush, e.cpu, kKernelAsid, e.full ? 0 : e.start, e.full ? 0 : e.pages,
           what + ", IPIs to every online CPU");
  } else {
    ++stats_.flushes_local;
    CpuTlb& t = tlbs_.at(e.cpu);
    stats_.entries_invalidated +=
        e.full ? t.flush_all() : t.invalidate_range(kKernelAsid, e.start, e.pages);
    record(EventKind::Flush, e.cpu, kKernelAsid, e.full ? 0 : e.start, e.full ? 0 : e.pages,
           what + ", local CPU only");
  }
}

Asid TlbSystem::new_user_space() {
  users_.emplace_back();
  return static_cast<Asid>(users_.size());
}

void TlbSystem::run(CpuId cpu, Asid asid) {
  running_.at(cpu) = asid;
  if (asid != kKernelAsid) users_.at(asid - 1).cpumask.insert(cpu);
}

void TlbSystem::map_user(Asid asid, std::uint64_t vpn, Pfn pfn, std::uint8_t flags) {
  users_.at(asid - 1).ptes[vpn] = {pfn, flags};
  record(EventKind::Note, 0, asid, vpn, 1,
         fmt::format("map asid {} vpn {:#x} -> pfn {:#x} ({})", asid, vpn, pfn, flags_text(flags)));
}

void TlbSystem::unmap_user(Asid asid, std::uint64_t vpn) {
  users_.at(asid - 1).ptes.erase(vpn);
  record(EventKind::Note, 0, asid, vpn, 1, fmt::format("unmap asid {} vpn {:#x}", asid, vpn));
}

void TlbSystem::flush_user_shootdown(CpuId cpu, Asid asid, std::uint64_t vpn, std::uint64_t pages) {
  std::set<CpuId> targets = users_.at(asid - 1).cpumask;
  targets.insert(cpu);
  const bool full = pages > directmap::kTlbSinglePageFlushCeiling;
  for (const CpuId c : targets) {
    stats_.entries_invalidated +=
        full ? tlbs_.at(c).flush_asid(asid) : tlbs_.at(c).invalidate_range(asid, vpn, pages);
  }
  stats_.ipis += targets.size() - 1;
  if (full) {
    ++stats_.flushes_full;
  } else {
    ++stats_.flushes_range;
    stats_.range_pages += pages;
  }
  record(EventKind::Flush, cpu, asid, vpn, pages,
         fmt::format("flush_tlb_mm_range(asid {}, vpn {:#x}, {} pages): local + IPIs to {} CPUs "
                     "in mm_cpumask",
                     asid, vpn, pages, targets.size() - 1));
}

void TlbSystem::flush_user_local(CpuId cpu, Asid asid, std::uint64_t vpn, std::uint64_t pages) {
  stats_.entries_invalidated += tlbs_.at(cpu).invalidate_range(asid, vpn, pages);
  ++stats_.flushes_local;
  record(EventKind::Flush, cpu, asid, vpn, pages,
         fmt::format("VM_LOCAL_CPU flush (asid {}, vpn {:#x}, {} pages): local CPU only", asid, vpn,
                     pages));
}

bool TlbSystem::ran_only_on(Asid asid, CpuId cpu) const {
  const std::set<CpuId>& m = users_.at(asid - 1).cpumask;
  return m.empty() || (m.size() == 1 && *m.begin() == cpu);
}

std::vector<Hazard> TlbSystem::check_hazards() const {
  std::vector<Hazard> out;
  const directmap::DirectMap& dmap = dmap_;
  const Pfn nr = phys_.nr_frames();
  // the first page under [base, base + pages) where an entry with flags f grants more
  auto first_granting = [&](std::uint8_t f, Pfn base, std::uint64_t pages) -> Pfn {
    std::uint64_t p = base;
    const std::uint64_t end = std::uint64_t{base} + pages;
    while (p < end) {
      if (p >= nr) return static_cast<Pfn>(p);
      const directmap::Lookup lk = dmap.lookup(static_cast<Pfn>(p));
      const std::uint64_t span = lk.level == Level::Pud1G   ? kPagesPer1G
                                 : lk.level == Level::Pmd2M ? kPagesPer2M
                                                            : 1;
      if (grants_more(f, lk.flags)) return static_cast<Pfn>(p);
      p = (p & ~(span - 1)) + span;
    }
    return kNoPfn;
  };
  for (CpuId c = 0; c < tlbs_.size(); ++c) {
    tlbs_[c].for_each([&](const Translation& t) {
      if (t.asid == kKernelAsid) {
        const Pfn bad = first_granting(t.flags, t.pfn, pages_of(t.size));
        if (bad != kNoPfn) {
          const std::uint8_t now = bad < nr ? dmap.lookup(bad).flags : 0;
          out.push_back(Hazard{Hazard::Kind::StaleEntry, c, t,
                               fmt::format("{} still translates pfn {:#x}, which the direct map "
                                           "now has {} (a {} frame)",
                                           entry_text(t), bad, flags_text(now), frame_text(bad)),
                               {}});
        }
        return;
      }
      const auto [tpfn, tflags] = truth(t.asid, t.vpn);
      if ((t.flags & _PAGE_PRESENT) != 0 && ((tflags & _PAGE_PRESENT) == 0 || tpfn != t.pfn)) {
        out.push_back(Hazard{Hazard::Kind::StaleEntry, c, t,
                             fmt::format("{} survives its unmap; pfn {:#x} is now a {} frame",
                                         entry_text(t), t.pfn, frame_text(t.pfn)),
                             {}});
      }
    });
    // (b) AMD erratum 383: different sizes for one address with different
    // frames or attributes.
    mixed_sizes(c, 0, static_cast<Pfn>(~Pfn{0}), out, nullptr);
    // Walk caches pointing at page-table pages that were freed or reused.
    auto check_psc = [&](const LruTable<PscEntry>& psc, Level level, std::uint64_t region_pages) {
      psc.for_each([&](const PscEntry& e) {
        const auto base = static_cast<Pfn>(e.region * region_pages);
        if (dmap.table_ref(base, level) == e.table || e.table.page == kNoPfn) return;
        const bool freed = phys_.kind(e.table.page) != phys::FrameKind::PageTable;
        const std::vector<Pfn> live = dmap.table_pages();
        const bool reused = std::find(live.begin(), live.end(), e.table.page) != live.end();
        if (!freed && !reused) return;  // detached, not yet freed: still the old contents
        Translation shown;
        shown.vpn = base;
        shown.pfn = e.table.page;
        shown.fill_seq = e.fill_seq;
        out.push_back(Hazard{Hazard::Kind::StaleWalkCache, c, shown,
                             fmt::format("{} cache entry for pfn {:#x} points to page-table page "
                                         "{:#x}, which is now a {} frame",
                                         level == Level::Pte4K ? "PDE" : "PDPTE", base,
                                         e.table.page, frame_text(e.table.page)),
                             {}});
      });
    };
    check_psc(tlbs_[c].pde_cache(), Level::Pte4K, kPagesPer2M);
    check_psc(tlbs_[c].pdpte_cache(), Level::Pmd2M, kPagesPer1G);
  }
  return out;
}

void TlbSystem::scan() {
  for (Hazard& h : check_hazards()) {
    if (!hazard_keys_.insert(entry_key(h)).second) continue;
    record(EventKind::Hazard, h.cpu, h.entry.asid, h.entry.vpn, pages_of(h.entry.size), h.what);
    hazards_.push_back(std::move(h));
  }
}

}  // namespace exmem::model::tlb
