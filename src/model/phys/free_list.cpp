// phys/: physical memory of the model (see physmem.hpp for what the folder owns).
// free_list.cpp: hashed, index-linked free lists (see free_list.hpp).
#include "model/phys/free_list.hpp"

#include <bit>
#include <stdexcept>

namespace exmem::model::phys {

FreeListStore::FreeListStore(std::size_t expected_blocks) {
  std::size_t cap = std::bit_ceil(expected_blocks * 2 + 64);
  slots_.assign(cap, Slot{kNoPfn, kNoPfn, kNoPfn});
  mask_ = cap - 1;
  shift_ = 64u - static_cast<unsigned>(std::countr_zero(cap));
}

void FreeListStore::not_on_a_list() { throw std::logic_error("free list: pfn is not on any list"); }

void FreeListStore::grow() {
  HugeVector<Slot> old = std::move(slots_);
  const std::size_t cap = old.size() * 2;
  slots_.assign(cap, Slot{kNoPfn, kNoPfn, kNoPfn});
  mask_ = cap - 1;
  shift_ = 64u - static_cast<unsigned>(std::countr_zero(cap));
  for (const Slot& s : old) {
    if (s.key == kNoPfn) continue;
    std::size_t i = home(s.key);
    while (slots_[i].key != kNoPfn) i = (i + 1) & mask_;
    slots_[i] = s;
  }
}

FreeListStore::Slot& FreeListStore::insert(Pfn pfn) {
  if ((used_ + 1) * 2 > slots_.size()) grow();
  std::size_t i = home(pfn);
  while (slots_[i].key != kNoPfn) {
    if (slots_[i].key == pfn) throw std::logic_error("free list: pfn is already on a list");
    i = (i + 1) & mask_;
  }
  ++used_;
  slots_[i] = Slot{pfn, kNoPfn, kNoPfn};
  return slots_[i];
}

// Backward-shift deletion keeps linear probing free of tombstones.
void FreeListStore::erase_at(std::size_t i) {
  std::size_t j = i;
  while (true) {
    j = (j + 1) & mask_;
    if (slots_[j].key == kNoPfn) break;
    const std::size_t k = home(slots_[j].key);
    const bool movable = (j > i) ? (k <= i || k > j) : (k <= i && k > j);
    if (movable) {
      slots_[i] = slots_[j];
      i = j;
    }
  }
  slots_[i].key = kNoPfn;
  --used_;
}

void FreeListStore::add_head(FreeList& list, Pfn pfn) {
  Slot& s = insert(pfn);
  s.next = list.head;
  s.prev = kNoPfn;
  if (list.head != kNoPfn) {
    slot(list.head).prev = pfn;
  } else {
    list.tail = pfn;
  }
  list.head = pfn;
  ++list.count;
}

void FreeListStore::add_tail(FreeList& list, Pfn pfn) {
  Slot& s = insert(pfn);
  s.next = kNoPfn;
  s.prev = list.tail;
  if (list.tail != kNoPfn) {
    slot(list.tail).next = pfn;
  } else {
    list.head = pfn;
  }
  list.tail = pfn;
  ++list.count;
}

void FreeListStore::remove(FreeList& list, Pfn pfn) {
  const std::size_t at = find_index(pfn);
  if (at == kNotFound) not_on_a_list();
  const Slot s = slots_[at];
  if ((s.prev == kNoPfn) != (list.head == pfn)) {
    throw std::logic_error("free list: pfn removed from a list it is not on");
  }
  if (s.prev != kNoPfn) {
    slot(s.prev).next = s.next;
  } else {
    list.head = s.next;
  }
  if (s.next != kNoPfn) {
    slot(s.next).prev = s.prev;
  } else {
    list.tail = s.prev;
  }
  erase_at(at);  // the neighbours' updates above move no slot
  --list.count;
}

Pfn FreeListStore::next(Pfn pfn) const {
  const std::size_t i = find_index(pfn);
  return i == kNotFound ? kNoPfn : slots_[i].next;
}

}  // namespace exmem::model::phys
