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
  mm::PageIndex folios;

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
Result<std::uint32_t> GuestMemfd::create(std::uint64_t size, std::uint64_t flags) {
  using R = Result<std::uint32_t>;
  if (flags & ~kValidFlags) return R::error(-EINVAL);
  if (size == 0 || size % kPageSize != 0) return R::error(-EINVAL);
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
  ++live_files_;
  ++stats_.files_created;
  return R{id, 0};
}

// mirrors kvm_gmem_get_pfn(): __kvm_gmem_get_folio(), then
// kvm_gmem_folio_zap_direct_map() for a NO_DIRECT_MAP file
mm::VmFault GuestMemfd::fault(std::uint32_t file, std::uint64_t index, CpuId cpu) {
  File* f = file_of(file);
  if (f == nullptr) return mm::VmFault::SigSegv;
  if (index >= f->pages) {
    ++stats_.faults_sigbus;
    return mm::VmFault::SigBus;
  }
  if (f->folios.find(index) != kNoPfn) {
    ++stats_.faults_minor;
    return mm::VmFault::Minor;
  }
  Result<Pfn> page;
  if (f->no_direct_map()) {
    page = policy_.alloc_secret_page(cpu, {policy::OwnerKind::GuestMemfd, file});
  } else {
    // filemap_alloc_folio() with the mapping's GFP_HIGHUSER (guest_memfd is unmovable)
    page = pages_.alloc_pages(phys::GFP_HIGHUSER | phys::__GFP_ZERO, 0, cpu, phys::FrameKind::User);
  }
  if (!page.ok()) {
    if (page.err == -ENOMEM) {
      ++stats_.faults_oom;
      return mm::VmFault::Oom;
    }
    ++stats_.faults_sigbus;
    return mm::VmFault::SigBus;
  }
  f->folios.insert(index, page.value);
  ++(f->no_direct_map() ? unmapped_pages_ : mapped_pages_);
  ++stats_.faults;
  return mm::VmFault::Major;
}

// kvm_gmem_release() and the eviction of the inode: truncate_inode_pages_final()
// calls kvm_gmem_free_folio() for every folio, in index order.
int GuestMemfd::release(std::uint32_t file, CpuId cpu) {
  File* f = file_of(file);
  if (f == nullptr) return -EBADF;
  const policy::Owner owner{policy::OwnerKind::GuestMemfd, file};
  for (const auto& [index, pfn] : f->folios.all()) {
    (void)index;
    if (f->no_direct_map()) {
      // folio_restore_direct_map(), then the folio is freed: the policy does both.
      policy_.free_secret_page(pfn, cpu, owner);
      --unmapped_pages_;
    } else {
      pages_.free_pages(pfn, 0, cpu);
      --mapped_pages_;
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

Pfn GuestMemfd::pfn(std::uint32_t file, std::uint64_t index) const {
  const File* f = file_of(file);
  return f == nullptr ? kNoPfn : f->folios.find(index);
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
    for (const auto& [index, pfn] : f.folios.all()) {
      ++n;
      if (index >= f.pages) bad(fmt::format("file {} folio {} lies past its size", i, index));
      if (pfn >= ph.nr_frames()) {
        bad(fmt::format("file {} folio {}: pfn {:#x} is not a frame", i, index, pfn));
        continue;
      }
      const phys::FrameKind want = f.no_direct_map() ? phys::FrameKind::Secret : phys::FrameKind::User;
      if (ph.kind(pfn) != want) {
        bad(fmt::format("file {} folio {}: pfn {:#x} is a {} frame", i, index, pfn,
                        phys::frame_kind_name(ph.frame_byte(pfn))));
      }
      if (dm.is_present(pfn) == f.no_direct_map()) {
        bad(fmt::format("file {} folio {}: pfn {:#x} is {} the direct map", i, index, pfn,
                        f.no_direct_map() ? "present in" : "missing from"));
      }
    }
    if (n != f.folios.size()) bad(fmt::format("file {}: {} folios counted, {} held", i, f.folios.size(), n));
    (f.no_direct_map() ? unmapped : mapped) += n;
  }
  if (live != live_files_) bad(fmt::format("{} live files, {} counted", live, live_files_));
  if (unmapped != unmapped_pages_) bad(fmt::format("{} unmapped folios, {} counted", unmapped, unmapped_pages_));
  if (mapped != mapped_pages_) bad(fmt::format("{} mapped folios, {} counted", mapped, mapped_pages_));
  return v;
}

}  // namespace exmem::model::users
