// policy/: policies for unmapped pages (see policy.hpp for what the folder owns).
// registry.cpp: policies by name.
#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>

#include "model/policy/policy.hpp"

namespace exmem::model::policy {

std::uint64_t Params::size(std::string_view key, std::uint64_t fallback) const {
  const auto it = values_.find(key);
  if (it == values_.end()) return fallback;
  const auto* v = std::get_if<std::uint64_t>(&it->second);
  return v != nullptr ? *v : fallback;
}

std::string Params::choice(std::string_view key, std::string_view fallback) const {
  const auto it = values_.find(key);
  if (it == values_.end()) return std::string(fallback);
  const auto* v = std::get_if<std::string>(&it->second);
  return v != nullptr ? *v : std::string(fallback);
}

void Registry::add(PolicyInfo info) {
  if (find(info.name) != nullptr) {
    throw std::logic_error(fmt::format("policy '{}' registered twice", info.name));
  }
  for (const ParamSpec& p : info.params) {
    for (const ParamSpec* q : params()) {
      if (q->key == p.key && (q->flag != p.flag || q->kind != p.kind || q->min != p.min || q->max != p.max ||
                              q->align != p.align || q->choices != p.choices)) {
        throw std::logic_error(fmt::format("parameter '{}' of policy '{}' declared otherwise by another policy",
                                           p.key, info.name));
      }
    }
  }
  // Every policy made knows the name it was registered under.
  info.make = [make = std::move(info.make), name = info.name] {
    std::unique_ptr<Policy> p = make();
    p->name_ = name;
    return p;
  };
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

const PolicyInfo& Registry::resolve(std::string_view name) const {
  const PolicyInfo* info = find(name);
  if (info == nullptr) {
    throw std::invalid_argument(fmt::format("unknown policy '{}': known policies are {}", name,
                                            fmt::join(names(), ", ")));
  }
  return *info;
}

std::vector<const ParamSpec*> Registry::params() const {
  std::vector<const ParamSpec*> out;
  for (const PolicyInfo& info : policies_) {
    for (const ParamSpec& p : info.params) {
      if (std::none_of(out.begin(), out.end(), [&](const ParamSpec* q) { return q->key == p.key; })) out.push_back(&p);
    }
  }
  return out;
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

std::unique_ptr<Policy> make_policy(std::string_view name, const Params& params) {
  std::unique_ptr<Policy> p = Registry::builtin().resolve(name).make();
  p->configure(params);
  return p;
}

}  // namespace exmem::model::policy
