// policy/: policies for unmapped pages (see policy.hpp for what the folder owns).
// registry.cpp: policies by name.
#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>

#include "model/policy/policy.hpp"

namespace exmem::model::policy {

void Registry::add(PolicyInfo info) {
  if (find(info.name) != nullptr) {
    throw std::logic_error(fmt::format("policy '{}' registered twice", info.name));
  }
  policies_.push_back(std::move(info));
  std::sort(policies_.begin(), policies_.end(),
            [](const PolicyInfo& a, const PolicyInfo& b) { return a.name < b.name; });
}

const PolicyInfo* Registry::find(std::string_view name) const {
  for (const PolicyInfo& p : policies_) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

std::vector<std::string> Registry::names() const {
  std::vector<std::string> out;
  for (const PolicyInfo& p : policies_) out.push_back(p.name);
  return out;
}

const Registry& Registry::builtin() {
  static const Registry registry = [] {
    Registry r;
    register_builtin_policies(r);
    return r;
  }();
  return registry;
}

std::unique_ptr<Policy> make_policy(std::string_view name) {
  const Registry& r = Registry::builtin();
  const PolicyInfo* info = r.find(name);
  if (info == nullptr) {
    throw std::invalid_argument(fmt::format("unknown policy '{}': known policies are {}", name,
                                            fmt::join(r.names(), ", ")));
  }
  return info->make();
}

}  // namespace exmem::model::policy
