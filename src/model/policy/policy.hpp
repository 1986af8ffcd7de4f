// policy/: how secret (unmapped) pages are obtained and given back: one file per
// policy (<name>_policy.cpp), registered by name. Only `upstream` (memfd_secret
// as merged) and the designs proposed for the kernel (each file's opening
// comment names its patch or thread), each as one file defining
// exmem_model_register_<stem>(Registry&). pool.hpp holds the pieces several
// policies share (2 MiB chunk pools, an unmapped buddy cache).
// Owns: the policy interface, the registry and each policy's private state
// (pools, reservations). Must not touch: frame states, free lists or direct-map
// entries except through the PolicyContext it is bound to at boot (phys::PhysMem,
// directmap::DirectMap, the flush log and the page source); its settings come
// through configure(), never from the Machine.
#pragma once

#include <compare>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "model/directmap/directmap.hpp"
#include "model/directmap/flush.hpp"
#include "model/phys/page_source.hpp"
#include "model/phys/physmem.hpp"
#include "model/types.hpp"

namespace exmem::model::policy {

// Who an unmapped page is for: the file (or file-like object) whose pages it
// holds. memfd_secret files and the anonymous objects behind MAP_EXCLUSIVE
// mappings are mm/'s; guest_memfd files are users/'s. Ids are unique within a
// kind while the owner lives and may be reused after Policy::release_file().
enum class OwnerKind : std::uint8_t {
  Secretmem,   // a memfd_secret file (mm/)
  Exclusive,   // the pages of one MAP_EXCLUSIVE mapping (mm/)
  GuestMemfd,  // a guest_memfd file created with GUEST_MEMFD_FLAG_NO_DIRECT_MAP (users/)
};
std::string_view owner_kind_name(OwnerKind kind);

// A parameter of a policy, declared by the policy in its registration (as a
// kernel boot parameter lives beside its owner): its scenario key under
// [machine], its option of `exmem sim`, its values and its help. The scenario
// schema (workload/settings.hpp) reads and checks it; the policy gets the
// values through Policy::configure().
struct ParamSpec {
  enum class Kind : std::uint8_t { Size, Choice };
  std::string key;   // "secretmem"
  std::string flag;  // "--secretmem"
  Kind kind = Kind::Size;
  std::uint64_t min = 0;    // Size: bytes
  std::uint64_t max = 0;    // Size: bytes
  std::uint64_t align = 1;  // Size: bytes
  bool at_most_half_ram = false;     // Size
  std::vector<std::string> choices;  // Choice: the names; the first is the default
  std::string what;  // Choice: what a name names, for messages ("answer of a depleted pool")
  std::string help;  // one line for --help, without range and unit
  std::string note;  // after the range in --help: the default, when not obvious
};

// The values given to the policies' parameters, by key; a parameter left out
// has its default (a size's is 0, which the policy reads as "its own
// default"; a choice's is its first name).
class Params {
 public:
  void set(const std::string& key, std::uint64_t bytes) { values_[key] = bytes; }
  void set(const std::string& key, std::string choice) { values_[key] = std::move(choice); }
  [[nodiscard]] bool has(std::string_view key) const { return values_.find(key) != values_.end(); }
  [[nodiscard]] std::uint64_t size(const ParamSpec& p) const { return size(p.key, 0); }
  [[nodiscard]] std::string choice(const ParamSpec& p) const {
    return choice(p.key, p.choices.empty() ? std::string() : p.choices.front());
  }
  // By key, for reports: the value given, else `fallback`.
  [[nodiscard]] std::uint64_t size(std::string_view key, std::uint64_t fallback) const;
  [[nodiscard]] std::string choice(std::string_view key, std::string_view fallback) const;

 private:
  std::map<std::string, std::variant<std::uint64_t, std::string>, std::less<>> values_;
};

struct Owner {
  OwnerKind kind = OwnerKind::Secretmem;
  std::uint32_t id = 0;
  auto operator<=>(const Owner&) const = default;
};

// What a policy works with, handed to it once at boot (Policy::bind()): the
// page allocator and frames, the direct map, the TLB flush log, and the
// source that kernel users free through (a page given back there may come
// back to the policy's own on_free()).
struct PolicyContext {
  phys::PhysMem& phys;
  directmap::DirectMap& dmap;
  directmap::FlushLog& flushes;
  phys::PageSource& pages;
};

class Policy {
 public:
  virtual ~Policy() = default;
  // Before any other call.
  void bind(const PolicyContext& context) { context_.emplace(context); }
  // The name the policy is registered under (PolicyInfo::name), given by the
  // registry to every policy it makes: each policy spells its name once.
  [[nodiscard]] std::string_view name() const { return name_; }
  // The fault path of every user of unmapped pages (secretmem_fault(), the
  // MAP_EXCLUSIVE populate, kvm_gmem_get_pfn() with NO_DIRECT_MAP): one zeroed
  // order-0 page for `owner` that is no longer in the direct map and whose
  // stale TLB entries are flushed, as a FrameKind::Secret frame. -ENOMEM makes
  // the fault VM_FAULT_OOM; other errors make it SIGBUS (vmf_error()).
  virtual Result<Pfn> alloc_secret_page(CpuId cpu, Owner owner) = 0;
  // The page leaves its owner: secretmem_free_folio() (or the user's own free
  // hook) then folio_put().
  virtual void free_secret_page(Pfn pfn, CpuId cpu, Owner owner) = 0;
  // A folio of 2^order pages for `owner`, out of the direct map as one unit:
  // the fault path of a user whose file has large folios (a guest_memfd with
  // a folio order, kvm_gmem_get_pfn() with NO_DIRECT_MAP, where
  // folio_zap_direct_map() makes the whole folio not present with one
  // set_direct_map_valid_noflush() and flushes it with one
  // flush_tlb_kernel_range()). The folio's frames are FrameKind::Secret;
  // order <= kPageblockOrder. Order 0 is alloc_secret_page() in every policy.
  // Default (policy.cpp): order 0 -> alloc_secret_page(); a larger order from
  // the page allocator (GFP_HIGHUSER | __GFP_ZERO), removed as one range with
  // one flush. Pool policies serve a folio from their pools where they can.
  virtual Result<Pfn> alloc_unmapped_folio(unsigned order, CpuId cpu, Owner owner);
  // The folio leaves its owner as a unit (the user's free_folio hook:
  // folio_restore_direct_map(), then the folio is freed). Default: order 0 ->
  // free_secret_page(); a larger order back into the direct map as one range
  // (no flush: a not-present entry is never cached), then to the page allocator.
  virtual void free_unmapped_folio(Pfn pfn, unsigned order, CpuId cpu, Owner owner);
  // The owner is gone (the secretmem inode evicted, the MAP_EXCLUSIVE object's
  // last mapping unmapped, the guest_memfd file released), after every page
  // of it went through free_secret_page(): a policy that keeps state per file
  // (secretmem-pmd-pool) lets go of it.
  virtual void release_file(Owner owner, CpuId cpu) {
    (void)owner, (void)cpu;
  }
  // mmap() of a secret region: a policy may reserve here so faults cannot fail.
  virtual int reserve(std::uint64_t pages, CpuId cpu) {
    (void)pages, (void)cpu;
    return 0;
  }
  virtual void unreserve(std::uint64_t pages, CpuId cpu) {
    (void)pages, (void)cpu;
  }
  // Write-protected page tables: a page-table page for a process, read-only in
  // the direct map (set_memory_ro(), which splits down to the page and flushes
  // as cpa_flush() does); freeing makes it writable again. Default: from the
  // buddy allocator (policy.cpp); a policy with 4K-mapped pages at hand
  // (pte-mapped-cache) serves them from there.
  virtual Result<Pfn> alloc_wp_table(CpuId cpu);
  virtual void free_wp_table(Pfn pfn, CpuId cpu);
  // Before boot: the values of the parameters the policy declares (PolicyInfo::params).
  virtual void configure(const Params& params) { (void)params; }
  // __free_pages() of a block by any kernel user: a policy that marked the
  // block's pageblock (pte-mapped, MIGRATE_UNMAPPED, unmapped freetype) takes
  // the pages into its own lists and returns true; false: the buddy gets them.
  virtual bool on_free(Pfn pfn, unsigned order, CpuId cpu) {
    (void)pfn, (void)order, (void)cpu;
    return false;
  }
  // A shrinker's scan_objects(): give back up to `nr` pages to the buddy
  // allocator under memory pressure; returns the pages given back.
  virtual std::uint64_t shrink(std::uint64_t nr, CpuId cpu) {
    (void)nr, (void)cpu;
    return 0;
  }
  // Pages the policy keeps out of the buddy allocator that no file holds
  // (pools and caches; unmapped unless the policy's summary says otherwise).
  [[nodiscard]] virtual std::uint64_t pooled_pages() const { return 0; }
  // The policy's own event counters, by name, for reports.
  struct Counter {
    std::string name;
    std::uint64_t value = 0;
  };
  [[nodiscard]] virtual std::vector<Counter> counters() const { return {}; }
  // The policy's own invariants.
  [[nodiscard]] virtual std::vector<std::string> check() const { return {}; }

 protected:
  [[nodiscard]] const PolicyContext& context() const { return *context_; }
  [[nodiscard]] phys::PhysMem& phys() const { return context_->phys; }
  [[nodiscard]] directmap::DirectMap& dmap() const { return context_->dmap; }
  [[nodiscard]] directmap::FlushLog& flushes() const { return context_->flushes; }
  [[nodiscard]] phys::PageSource& pages() const { return context_->pages; }

 private:
  friend class Registry;
  std::string name_;
  std::optional<PolicyContext> context_;
};

struct PolicyInfo {
  std::string name;
  std::string summary;  // one line: what the policy does, where it comes from
  std::function<std::unique_ptr<Policy>()> make;
  std::vector<ParamSpec> params{};  // the policy's own parameters
  // Boot: bytes the policy wants in the CMA area (the secretmem= parameter of
  // the pool designs), from its parameters and the RAM; added to the
  // machine's cma= before memory is laid out. Empty: none.
  std::function<std::uint64_t(const Params& params, std::uint64_t ram_bytes)> boot_cma_bytes{};
};

class Registry {
 public:
  void add(PolicyInfo info);
  [[nodiscard]] const PolicyInfo* find(std::string_view name) const;
  // The named policy; std::invalid_argument naming the known ones otherwise.
  [[nodiscard]] const PolicyInfo& resolve(std::string_view name) const;
  // Every parameter some policy declares, once per key, in registry order
  // (policies sharing a parameter declare the same ParamSpec).
  [[nodiscard]] std::vector<const ParamSpec*> params() const;
  [[nodiscard]] std::vector<std::string> names() const;
  [[nodiscard]] const std::vector<PolicyInfo>& all() const { return policies_; }
  // The policies built into the model (every policy/*_policy.cpp).
  static const Registry& builtin();

 private:
  std::vector<PolicyInfo> policies_;
};

// Generated from the policy files by src/model/CMakeLists.txt.
void register_builtin_policies(Registry& registry);

// The named policy configured with `params`; std::invalid_argument naming the
// known ones for an unknown name.
std::unique_ptr<Policy> make_policy(std::string_view name, const Params& params = {});

}  // namespace exmem::model::policy
