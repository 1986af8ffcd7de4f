// tlb/: per-CPU TLBs (see tlb.hpp for what the folder owns).
// system.hpp: every CPU's TLB on one machine. Kernel accesses to the direct
// map look up the CPU's TLB, walk the direct map on a miss and fill;
// speculative fills load translations no instruction touched; flushes arrive
// from the direct map's FlushLog as the kernel requests them (IPIs to every
// online CPU, or the local CPU only). The hazard checker watches every entry.
//
// Inside a CPA operation (attach_steps()): at every page-table write the
// direct map reports (directmap::CpaStep) every CPU speculates, without first
// probing its TLB for entries of another page size (the Intel SDM lets a TLB
// hold translations of both sizes for an address once software changed the
// page size), the accesses registered with concurrent_access() run, and the
// checker looks at that instant for
//  - two entries of different page sizes for one address whose frame or
//    attributes differ (MixedSizeAttributes: AMD erratum 383, see
//    arch/x86/kvm/svm/svm.c is_erratum_383() and the collapse commit
//    41d88484c71c; Intel SDM Vol. 3A 4.10.4.2 "Recommended Invalidation");
//  - a write that changes both the page size and the attributes of an address
//    while some CPU still holds an entry of the other size for it
//    (SizeAndAttributeChange: the SDM's "software should not write to a
//    paging-structure entry in a way that would change, for any linear
//    address, both the page size and either the page frame, access rights, or
//    other attributes", which __split_large_page() honours by splitting with
//    the leaf's attributes and changing the PTE only after flush_tlb_all());
//  - a kernel access faulting on a direct-map page inside a break-before-make
//    window (DirectMapNotPresent: the direct map has no fault handler for its
//    own addresses, so the access oopses; the SDM's own remedy, clear P /
//    flush / set the new size, is therefore unusable for the direct map).
// Stale entries (check_hazards() (a)) are judged at operation boundaries only:
// inside an operation they are expected until its flush. The SDM text is
// section 4.10.4.2 "Recommended Invalidation" of current editions of Vol. 3A
// (4.10.3.2 in older ones, e.g. order number 253668-032); the kernel quotes the
// same rule above kernel_physical_mapping_init() in arch/x86/mm/init_32.c and,
// as "the TLB application note", in __split_large_page().
#pragma once

#include <cstdint>
#include <deque>
#include <random>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "model/directmap/directmap.hpp"
#include "model/directmap/flush.hpp"
#include "model/phys/physmem.hpp"
#include "model/tlb/tlb.hpp"
#include "model/types.hpp"

namespace exmem::model::tlb {

// Prefetch and speculation can load a translation for an address no
// instruction architecturally touched.
struct SpecConfig {
  double rate = 0.0;        // speculative fills per trigger per CPU (fraction: a probability)
  std::uint64_t reach = 0;  // pages either side of the target
  bool any_recent = false;  // target: any recently touched address (else the CPU's last one)
  std::size_t recent = 64;  // how many recently touched addresses are remembered
};

enum class EventKind : std::uint8_t { Note, Access, SpecFill, Flush, FlushSkipped, Hazard, Leak };
std::string_view event_kind_name(EventKind k);

struct Event {
  std::uint64_t seq = 0;
  EventKind kind = EventKind::Note;
  CpuId cpu = 0;
  Asid asid = kKernelAsid;
  std::uint64_t vpn = 0;
  std::uint64_t pages = 0;  // 0: not about an address range (or a full flush)
  std::string text;
};

struct Hazard {
  enum class Kind : std::uint8_t {
    StaleEntry,
    StaleWalkCache,
    MixedSizeAttributes,     // AMD erratum 383 / SDM 4.10.4.2: sizes and frame/attributes differ
    SizeAndAttributeChange,  // SDM 4.10.4.2: one write changed size and attributes, old size live
    DirectMapNotPresent,     // a kernel access in a break-before-make window faults
  };
  Kind kind = Kind::StaleEntry;
  CpuId cpu = 0;
  Translation entry{};
  std::string what;
  std::string step;  // the CPA step it was found at (empty: at an operation boundary)
  [[nodiscard]] std::string describe() const;
};

struct Leak {
  CpuId cpu = 0;
  Asid asid = kKernelAsid;
  std::uint64_t vpn = 0;
  Pfn frame = kNoPfn;
  std::string what;
  std::vector<Event> history;  // the events that produced it, oldest first
  [[nodiscard]] std::string report() const;
};

struct TlbStats {
  std::uint64_t accesses = 0;
  std::uint64_t l1_hits = 0;
  std::uint64_t lower_hits = 0;  // hits below L1 (STLB / L2 DTLB)
  std::uint64_t lower_hit_cycles = 0;
  std::uint64_t walks = 0;      // architectural misses that walked the tables
  std::uint64_t walk_refs = 0;  // memory references of those walks
  std::uint64_t faults = 0;     // walks that found no present leaf
  std::uint64_t spec_fills = 0;
  std::uint64_t flushes_range = 0;  // flush requests delivered, by kind
  std::uint64_t flushes_full = 0;
  std::uint64_t flushes_local = 0;
  std::uint64_t flushes_skipped = 0;  // requests the modelled kernel left out
  std::uint64_t range_pages = 0;      // pages named by delivered range flushes
  std::uint64_t ipis = 0;             // IPIs sent to other CPUs
  std::uint64_t entries_invalidated = 0;
  std::uint64_t cpa_steps = 0;             // CPA steps seen (attach_steps())
  std::uint64_t mixed_same_attributes = 0;  // mixed-size pairs that agree, summed over steps
};

struct AccessOutcome {
  int level = -1;  // TLB level that hit, -1: walked
  bool fault = false;
  bool leak = false;
};

class TlbSystem final : public directmap::FlushObserver, public directmap::CpaStepObserver {
 public:
  // One TLB per CPU of phys; walks read dmap, leak reports name phys's frames.
  TlbSystem(const directmap::DirectMap& dmap, const phys::PhysMem& phys, const TlbConfig& config,
            const SpecConfig& spec, std::uint64_t seed);
  ~TlbSystem() override;
  TlbSystem(const TlbSystem&) = delete;
  TlbSystem& operator=(const TlbSystem&) = delete;

  // Listen to the machine's flush requests (detached again by the destructor,
  // so the TlbSystem must not outlive the log).
  void attach(directmap::FlushLog& log);
  void detach();
  // Listen to the CPA steps of dmap, which must be the direct map this system
  // walks (detached by detach() and the destructor).
  void attach_steps(directmap::DirectMap& dmap);
  // cpu accesses pfn (a kernel load) at every CPA step and after every flush:
  // another CPU's kernel code running alongside the operation.
  void concurrent_access(CpuId cpu, Pfn pfn) { concurrent_.push_back(Concurrent{cpu, pfn}); }
  // Model a kernel that leaves out the flushes of this reason.
  void skip_flushes(directmap::FlushReason reason) { skipped_.insert(reason); }
  // Keep at most `limit` events for leak reports (0: none).
  void set_history(std::size_t limit) { history_limit_ = limit; }
  void set_speculation(const SpecConfig& spec) { spec_ = spec; }

  // A kernel load or store on the direct-map address of pfn.
  AccessOutcome access(CpuId cpu, Pfn pfn);
  // A user access by the mm running on cpu (see run()).
  AccessOutcome user_access(CpuId cpu, Asid asid, std::uint64_t vpn);
  // Speculative fills on one CPU, or on all. Blind fills walk even when the
  // TLB holds an entry (of another size) for the target, as at CPA steps.
  void speculate(CpuId cpu, bool blind = false);
  void speculate_all(bool blind = false);

  // One kernel operation: noted, run, then every CPU speculates and the
  // hazard checker scans every TLB (hazards at operation boundaries count).
  template <class F>
  void op(std::string_view name, F&& fn) {
    note(name);
    fn();
    speculate_all();
    scan();
  }
  void note(std::string_view text);

  // User address spaces (for VM_LOCAL_CPU): their page tables, and the CPUs
  // each mm ever ran on (mm_cpumask).
  Asid new_user_space();
  void run(CpuId cpu, Asid asid);  // switch_mm(): cpu now runs asid
  void map_user(Asid asid, std::uint64_t vpn, Pfn pfn, std::uint8_t flags);
  void unmap_user(Asid asid, std::uint64_t vpn);
  // flush_tlb_mm_range(): the local CPU and IPIs to the other CPUs in mm_cpumask.
  void flush_user_shootdown(CpuId cpu, Asid asid, std::uint64_t vpn, std::uint64_t pages);
  // VM_LOCAL_CPU (2018 proposal): invalidate on the local CPU only.
  void flush_user_local(CpuId cpu, Asid asid, std::uint64_t vpn, std::uint64_t pages);
  [[nodiscard]] bool ran_only_on(Asid asid, CpuId cpu) const;

  // The hazard checker: (a) entries (or walk-cache entries) that translate to
  // something the page tables no longer say, granting more than they do;
  // (b) live entries of different sizes for one address with different
  // frames or attributes (AMD erratum 383). Returns the current ones. (The
  // step-time checks are in on_cpa_step().)
  [[nodiscard]] std::vector<Hazard> check_hazards() const;
  // check_hazards() now, adding new ones to hazards().
  void scan();
  [[nodiscard]] const std::vector<Hazard>& hazards() const { return hazards_; }
  [[nodiscard]] const std::vector<Leak>& leaks() const { return leaks_; }
  [[nodiscard]] bool clean() const { return hazards_.empty() && leaks_.empty(); }

  [[nodiscard]] const TlbStats& stats() const { return stats_; }
  [[nodiscard]] const TlbConfig& config() const { return config_; }
  [[nodiscard]] unsigned cpus() const { return static_cast<unsigned>(tlbs_.size()); }
  CpuTlb& cpu_tlb(CpuId cpu) { return tlbs_.at(cpu); }
  [[nodiscard]] const CpuTlb& cpu_tlb(CpuId cpu) const { return tlbs_.at(cpu); }

  void on_flush(const directmap::FlushEvent& e) override;
  void on_cpa_step(const directmap::CpaStep& s) override;

 private:
  struct UserSpace {
    std::unordered_map<std::uint64_t, std::pair<Pfn, std::uint8_t>> ptes;  // vpn -> pfn, flags
    std::set<CpuId> cpumask;                                               // CPUs it ever ran on
  };
  struct Target {
    Asid asid = kKernelAsid;
    std::uint64_t vpn = 0;
  };

  // A page walk on cpu for (asid, vpn); fills the TLB when a present leaf is found.
  AccessOutcome walk(CpuId cpu, Asid asid, std::uint64_t vpn, bool speculative);
  void speculate_near(CpuId cpu, const Target& t, bool blind);
  // (b) of check_hazards() on cpu's entries overlapping [start, start + pages).
  void mixed_sizes(CpuId cpu, Pfn start, Pfn pages, std::vector<Hazard>& out,
                   std::uint64_t* same) const;
  void add_hazard(Hazard h, const std::string& key);
  void run_concurrent();
  void window_fault(CpuId cpu, Pfn pfn);
  void apply_flush(const directmap::FlushEvent& e);
  void record(EventKind kind, CpuId cpu, Asid asid, std::uint64_t vpn, std::uint64_t pages,
              std::string text);
  void report_leak(CpuId cpu, Asid asid, std::uint64_t vpn, Pfn frame, std::string what,
                   std::uint64_t since);
  void touch(CpuId cpu, Asid asid, std::uint64_t vpn);
  // The truth for an address: present leaf pfn and flags (flags 0 when none).
  [[nodiscard]] std::pair<Pfn, std::uint8_t> truth(Asid asid, std::uint64_t vpn) const;
  [[nodiscard]] std::string frame_text(Pfn pfn) const;

  const directmap::DirectMap& dmap_;
  const phys::PhysMem& phys_;
  TlbConfig config_;
  SpecConfig spec_;
  std::mt19937_64 rng_;
  std::vector<CpuTlb> tlbs_;
  std::vector<Asid> running_;     // per CPU: the user mm it runs (0: none)
  std::vector<Target> last_;      // per CPU: its last access
  std::deque<Target> recent_;     // recently touched addresses, all CPUs
  std::vector<UserSpace> users_;  // index = asid - 1
  directmap::FlushLog* log_ = nullptr;
  directmap::DirectMap* steps_ = nullptr;
  struct Window {  // a break-before-make window: not present until the leaf is set
    Pfn start = 0;
    Pfn pages = 0;
    std::string step;
  };
  std::vector<Window> windows_;
  struct Concurrent {
    CpuId cpu = 0;
    Pfn pfn = 0;
  };
  std::vector<Concurrent> concurrent_;
  std::string step_text_;           // the step being handled (empty: none)
  bool in_concurrent_ = false;
  std::set<directmap::FlushReason> skipped_;
  std::deque<Event> history_;
  std::size_t history_limit_ = 4096;
  std::uint64_t seq_ = 0;
  std::vector<Hazard> hazards_;
  std::set<std::string> hazard_keys_;
  std::vector<Leak> leaks_;
  TlbStats stats_;
};

}  // namespace exmem::model::tlb
