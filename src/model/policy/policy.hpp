// policy/: how secret (unmapped) pages are obtained and given back: one file per
// policy (<name>_policy.cpp), registered by name. Only `upstream` (memfd_secret
// as merged) exists yet; the proposals of kernel.md section 4 plug in the same
// way, each as one file defining exmem_model_register_<stem>(Registry&).
// Owns: the policy interface, the registry and each policy's private state
// (pools, reservations). Must not touch: frame states, free lists or direct-map
// entries except through phys::PhysMem and directmap::DirectMap calls.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "model/types.hpp"

namespace exmem::model {
class Machine;
}

namespace exmem::model::policy {

class Policy {
 public:
  virtual ~Policy() = default;
  [[nodiscard]] virtual std::string_view name() const = 0;
  // The secretmem fault path: one zeroed order-0 page that is no longer in the
  // direct map and whose stale TLB entries are flushed. -ENOMEM makes the
  // fault VM_FAULT_OOM; other errors make it SIGBUS (vmf_error()).
  virtual Result<Pfn> alloc_secret_page(Machine& machine, CpuId cpu) = 0;
  // The page leaves its file: secretmem_free_folio() then folio_put().
  virtual void free_secret_page(Machine& machine, Pfn pfn, CpuId cpu) = 0;
  // mmap() of a secret region: a policy may reserve here so faults cannot fail.
  virtual int reserve(Machine& machine, std::uint64_t pages, CpuId cpu) {
    (void)machine, (void)pages, (void)cpu;
    return 0;
  }
  virtual void unreserve(Machine& machine, std::uint64_t pages, CpuId cpu) {
    (void)machine, (void)pages, (void)cpu;
  }
  // Pages the policy keeps out of the direct map that no file holds (pools).
  [[nodiscard]] virtual std::uint64_t pooled_pages() const { return 0; }
  // The policy's own invariants.
  [[nodiscard]] virtual std::vector<std::string> check(const Machine& machine) const {
    (void)machine;
    return {};
  }
};

struct PolicyInfo {
  std::string name;
  std::string summary;  // one line: what the policy does, where it comes from
  std::function<std::unique_ptr<Policy>()> make;
};

class Registry {
 public:
  void add(PolicyInfo info);
  [[nodiscard]] const PolicyInfo* find(std::string_view name) const;
  [[nodiscard]] std::vector<std::string> names() const;
  [[nodiscard]] const std::vector<PolicyInfo>& all() const { return policies_; }
  // The policies built into the model (every policy/*_policy.cpp).
  static const Registry& builtin();

 private:
  std::vector<PolicyInfo> policies_;
};

// Generated from the policy files by src/model/CMakeLists.txt.
void register_builtin_policies(Registry& registry);

// The named policy; std::invalid_argument naming the known ones otherwise.
std::unique_ptr<Policy> make_policy(std::string_view name);

}  // namespace exmem::model::policy
