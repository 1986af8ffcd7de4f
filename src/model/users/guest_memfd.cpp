// users/: other users of unmapped pages (see README.md for what the folder owns).
// guest_memfd.cpp: guest_memfd files and their folios.
#include "model/users/guest_memfd.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <unordered_map>

#include "model/mm/page_index.hpp"

namespace exmem::model::users {

namespace {
constexpr std::uint64_t kValidFlags =
    kGUEST_MEMFD_FLAG_MMAP | kGUEST_MEMFD_FLAG_INIT_SHARED | kGUEST_MEMFD_FLAG_NO_DIRECT_MAP;
}  // namespace

struct GuestMemfd::File {
  bool live = false;
  std::uint64_t flags = 0;
  std::uint64_t pages = 0;  // i_size in pages
  unsigned order = 0;       // the folio order (mapping_min_folio_order())
  mm::PageIndex folios;     // folio number (index >> order) -> the folio's first pfn

  [[nodiscard]] bool no_direct_map() const { return (flags & kGUEST_MEMFD_FLAG_NO_DIRECT_MAP) != 0; }
};

GuestMemfd::GuestMemfd(policy::Policy& policy, phys::PageSource& pages, const phys::PhysMem& phys,
                       const directmap::DirectMap& dmap)
    : policy_(policy), pages_(pages), phys_(phys), dmap_(dmap) {}
GuestMemfd::~GuestMemfd() = default;

GuestMemfd::File* GuestMemfd::file_of(std::uint32_t file) {
  if (file >= files_.size() || !files_[file]->live) return nullptr;
  return files_[file].get();
}
const GuestMemfd::File* GuestMemfd::file_of(std::uint32_t file) const {
  if (file >= files_.size() || !files_[file]->live) return nullptr;
  return files_[file].get();
}

// mirrors kvm_gmem_create() -> __kvm_gmem_create()
Result<std::uint32_t> GuestMemfd::create(std::uint64_t size, std::uint64_t flags, unsigned folio_order) {
  using R = Result<std::uint32_t>;
  if (flags & ~kValidFlags) return R::error(-EINVAL);
  if (folio_order > kPageblockOrder) return R::error(-EINVAL);
  if (size == 0 || size % (kPageSize << folio_order) != 0) return R::error(-EINVAL);
  std::uint32_t id = 0;
  if (!free_ids_.empty()) {
    id = free_ids_.back();
    free_ids_.pop_back();
  } else {
    id = static_cast<std::uint32_t>(files_.size());
    files_.push_back(std::make_unique<File>());
  }
  File& f = *files_[id];
  f.live = true;
  f.flags = flags;  // with NO_DIRECT_MAP: mapping_set_no_direct_map()
  f.pages = size / kPageSize;
  f.order = folio_order;
  ++live_files_;
  ++stats_.files_created;
  return R{id, 0};
}

// mirrors kvm_gmem_get_pfn(): kvm_gmem_get_folio() (__filemap_get_folio_mpol()
// with FGP_CREAT: the index aligned down to the folio, one folio of the
// mapping's order), then kvm_gmem_folio_zap_direct_map() for a NO_DIRECT_MAP file
mm::VmFault GuestMemfd::fault(std::uint32_t file, std::uint64_t index, CpuId cpu) {
  File* f = file_of(file);
  if (f == nullptr) return mm::VmFault::SigSegv;
  if (index >= f->pages) {
    ++stats_.faults_sigbus;
    return mm::VmFault::SigBus;
  }
  const std::uint64_t folio = index >> f->order;
  if (f->folios.find(folio) != kNoPfn) {
    ++stats_.faults_minor;
    return mm::VmFault::Minor;
  }
  Result<Pfn> page;
  if (f->no_direct_map()) {
    page = policy_.alloc_unmapped_folio(f->order, cpu, {policy::OwnerKind::GuestMemfd, file});
  } else {
    // filemap_alloc_folio() with the mapping's GFP_HIGHUSER (guest_memfd is unmovable)
    page = pages_.alloc_pages(phys::GFP_HIGHUSER | phys::__GFP_ZERO, f->order, cpu, phys::FrameKind::User);
  }
  if (!page.ok()) {
    if (page.err == -ENOMEM) {
      ++stats_.faults_oom;
      return mm::VmFault::Oom;
    }
    ++stats_.faults_sigbus;
    return mm::VmFault::SigBus;
  }
  f->folios.insert(folio, page.value);
  (f->no_direct_map() ? unmapped_pages_ : mapped_pages_) += std::uint64_t{1} << f->order;
  ++stats_.faults;
  return mm::VmFault::Major;
}

// kvm_gmem_release() and the eviction of the inode: truncate_inode_pages_final()
// calls kvm_gmem_free_folio() for every folio, in index order.
int GuestMemfd::release(std::uint32_t file, CpuId cpu) {
  File* f = file_of(file);
  if (f == nullptr) return -EBADF;
  const policy::Owner owner{policy::OwnerKind::GuestMemfd, file};
  const std::uint64_t n = std::uint64_t{1} << f->order;
  for (const auto& [folio, pfn] : f->folios.all()) {
    (void)folio;
    if (f->no_direct_map()) {
      // folio_restore_direct_map(), then the folio is freed: the policy does both.
      policy_.free_unmapped_folio(pfn, f->order, cpu, owner);
      unmapped_pages_ -= n;
    } else {
      pages_.free_pages(pfn, f->order, cpu);
      mapped_pages_ -= n;
    }
    ++stats_.folios_freed;
  }
  const bool no_direct_map = f->no_direct_map();
  files_[file] = std::make_unique<File>();
  if (no_direct_map) policy_.release_file(owner, cpu);
  free_ids_.push_back(file);
  --live_files_;
  ++stats_.files_released;
  return 0;
}

// folio_file_pfn(): the folio's pfn plus the index's offset in it
Pfn GuestMemfd::pfn(std::uint32_t file, std::uint64_t index) const {
  const File* f = file_of(file);
  if (f == nullptr) return kNoPfn;
  const Pfn head = f->folios.find(index >> f->order);
  return head == kNoPfn ? kNoPfn : head + static_cast<Pfn>(index & ((std::uint64_t{1} << f->order) - 1));
}
unsigned GuestMemfd::folio_order(std::uint32_t file) const {
  const File* f = file_of(file);
  return f == nullptr ? 0 : f->order;
}
bool GuestMemfd::live(std::uint32_t file) const { return file_of(file) != nullptr; }
std::uint64_t GuestMemfd::size_pages(std::uint32_t file) const {
  const File* f = file_of(file);
  return f == nullptr ? 0 : f->pages;
}
std::uint64_t GuestMemfd::folios(std::uint32_t file) const {
  const File* f = file_of(file);
  return f == nullptr ? 0 : f->folios.size();
}

std::size_t GuestMemfd::model_bytes() const {
  std::size_t n = sizeof(*this) + files_.capacity() * sizeof(void*);
  for (const auto& f : files_) n += sizeof(File) + f->folios.model_bytes();
  return n;
}

std::vector<std::string> GuestMemfd::check() const {
  std::vector<std::string> v;
  auto bad = [&](std::string s) {
    if (v.size() < 32) v.push_back("guest_memfd: " + std::move(s));
  };
  const phys::PhysMem& ph = phys_;
  const directmap::DirectMap& dm = dmap_;
  std::uint64_t live = 0;
  std::uint64_t unmapped = 0;
  std::uint64_t mapped = 0;
  for (std::size_t i = 0; i < files_.size(); ++i) {
    const File& f = *files_[i];
    if (!f.live) {
      if (f.folios.size() != 0) bad(fmt::format("released file {} holds {} folios", i, f.folios.size()));
      continue;
    }
    ++live;
    std::uint64_t n = 0;
    const Pfn nr = Pfn{1} << f.order;
    for (const auto& [folio, head] : f.folios.all()) {
      ++n;
      const std::uint64_t index = folio << f.order;
      if (index >= f.pages) bad(fmt::format("file {} folio {} lies past its size", i, index));
      if (head % nr != 0) bad(fmt::format("file {} folio {}: pfn {:#x} is not aligned to its order {}", i, index, head, f.order));
      if (head + nr > ph.nr_frames()) {
        bad(fmt::format("file {} folio {}: pfn {:#x} is not a frame", i, index, head));
        continue;
      }
      // Every page of the folio: one kind, in or out of the direct map as a unit.
      const phys::FrameKind want = f.no_direct_map() ? phys::FrameKind::Secret : phys::FrameKind::User;
      for (Pfn pfn = head; pfn < head + nr; ++pfn) {
        if (ph.kind(pfn) != want) {
          bad(fmt::format("file {} folio {}: pfn {:#x} is a {} frame", i, index, pfn,
                          phys::frame_kind_name(ph.frame_byte(pfn))));
        }
        if (dm.is_present(pfn) == f.no_direct_map()) {
          bad(fmt::format("file {} folio {}: pfn {:#x} is {} the direct map", i, index, pfn,
                          f.no_direct_map() ? "present in" : "missing from"));
        }
      }
    }
    if (n != f.folios.size()) bad(fmt::format("file {}: {} folios counted, {} held", i, f.folios.size(), n));
    (f.no_direct_map() ? unmapped : mapped) += n * nr;
  }
  if (live != live_files_) bad(fmt::format("{} live files, {} counted", live, live_files_));
  if (unmapped != unmapped_pages_) bad(fmt::format("{} unmapped pages, {} counted", unmapped, unmapped_pages_));
  if (mapped != mapped_pages_) bad(fmt::format("{} mapped pages, {} counted", mapped, mapped_pages_));
  return v;
}

}  // namespace exmem::model::users
