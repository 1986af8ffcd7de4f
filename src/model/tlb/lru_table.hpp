// tlb/: per-CPU TLBs (see tlb.hpp for what the folder owns).
// lru_table.hpp: one generic set-associative table with LRU replacement (after
// ChampSim's msl::lru_table), used for every TLB level and for the
// paging-structure caches. A fully associative table is one set.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <vector>

namespace exmem::model::tlb {

template <class T>
class LruTable {
 public:
  LruTable(std::size_t sets, std::size_t ways) : sets_(sets), ways_(ways), slots_(sets * ways) {
    if (sets == 0 || ways == 0) throw std::invalid_argument("LruTable: sets and ways must be > 0");
  }

  [[nodiscard]] std::size_t sets() const { return sets_; }
  [[nodiscard]] std::size_t ways() const { return ways_; }
  [[nodiscard]] std::size_t capacity() const { return sets_ * ways_; }
  [[nodiscard]] std::size_t size() const {
    std::size_t n = 0;
    for (const Slot& s : slots_) n += s.valid ? 1 : 0;
    return n;
  }

  // The value stored under tag (in the set chosen by index), made most recently used.
  T* find(std::uint64_t tag, std::uint64_t index) {
    Slot* s = slot_of(tag, index);
    if (s == nullptr) return nullptr;
    s->last_used = ++clock_;
    return &s->value;
  }
  // The same without touching the LRU order.
  [[nodiscard]] const T* peek(std::uint64_t tag, std::uint64_t index) const {
    const std::size_t base = (index % sets_) * ways_;
    for (std::size_t w = 0; w < ways_; ++w) {
      const Slot& s = slots_[base + w];
      if (s.valid && s.tag == tag) return &s.value;
    }
    return nullptr;
  }

  // Stores value under tag: replaces the same tag, else an invalid way, else
  // the least recently used way of the set, which is returned.
  std::optional<T> fill(std::uint64_t tag, std::uint64_t index, const T& value) {
    const std::size_t base = (index % sets_) * ways_;
    Slot* victim = nullptr;
    for (std::size_t w = 0; w < ways_; ++w) {
      Slot& s = slots_[base + w];
      if (s.valid && s.tag == tag) {
        victim = &s;
        break;
      }
      if (!s.valid) {
        if (victim == nullptr || victim->valid) victim = &s;
      } else if (victim == nullptr || (victim->valid && s.last_used < victim->last_used)) {
        victim = &s;
      }
    }
    std::optional<T> evicted;
    if (victim->valid && victim->tag != tag) evicted = victim->value;
    victim->valid = true;
    victim->tag = tag;
    victim->value = value;
    victim->last_used = ++clock_;
    return evicted;
  }

  // Drops every entry for which pred(value) is true; returns how many.
  template <class Pred>
  std::size_t invalidate_if(Pred pred) {
    std::size_t n = 0;
    for (Slot& s : slots_) {
      if (s.valid && pred(s.value)) {
        s.valid = false;
        ++n;
      }
    }
    return n;
  }
  std::size_t clear() {
    return invalidate_if([](const T&) { return true; });
  }
  template <class F>
  void for_each(F f) const {
    for (const Slot& s : slots_) {
      if (s.valid) f(s.value);
    }
  }

 private:
  struct Slot {
    bool valid = false;
    std::uint64_t tag = 0;
    std::uint64_t last_used = 0;
    T value{};
  };
  Slot* slot_of(std::uint64_t tag, std::uint64_t index) {
    const std::size_t base = (index % sets_) * ways_;
    for (std::size_t w = 0; w < ways_; ++w) {
      Slot& s = slots_[base + w];
      if (s.valid && s.tag == tag) return &s;
    }
    return nullptr;
  }

  std::size_t sets_;
  std::size_t ways_;
  std::vector<Slot> slots_;
  std::uint64_t clock_ = 0;
};

}  // namespace exmem::model::tlb
