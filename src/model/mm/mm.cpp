// mm/: processes and memfd_secret (see mm.hpp for what the folder owns).
// mm.cpp: the syscalls, the faults (secretmem and MAP_EXCLUSIVE), and file
// release.
#include "model/mm/mm.hpp"
#include "model/mm/page_index.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace exmem::model::mm {

namespace {
constexpr std::uint64_t kMmapBase = 0x7f0000000000ull;
}  // namespace

const char* vm_fault_name(VmFault f) {
  switch (f) {
    case VmFault::Minor: return "minor";
    case VmFault::Major: return "major";
    case VmFault::Oom: return "VM_FAULT_OOM";
    case VmFault::SigBus: return "SIGBUS";
    case VmFault::SigSegv: return "SIGSEGV";
  }
  return "unknown";
}

// A secretmem inode with its single open file description, or the anonymous
// object that holds the pages of one MAP_EXCLUSIVE mapping (its pieces after
// munmap() or mprotect() splits share it; no fd ever refers to it).
struct Mm::File {
  bool live = false;
  bool exclusive = false;  // a MAP_EXCLUSIVE object, not a secretmem file
  std::uint64_t size = 0;  // i_size
  std::uint32_t refs = 0;  // fds + mappings
  PageIndex pages;

  [[nodiscard]] policy::Owner owner(std::uint32_t id) const {
    return {exclusive ? policy::OwnerKind::Exclusive : policy::OwnerKind::Secretmem, id};
  }
};

struct Mm::Process {
  struct Fd {
    std::uint32_t file = 0;
    bool cloexec = false;
  };
  Pid pid = 0;
  bool alive = true;
  bool unkillable = false;
  int oom_score_adj = 0;
  std::string name;
  CpuId cpu = 0;
  std::uint64_t rlimit_memlock = 0;  // bytes
  bool cap_ipc_lock = false;
  std::map<int, Fd> fds;
  std::map<std::uint64_t, Vma> vmas;  // by start address
  std::uint64_t locked_vm = 0;        // pages
  std::uint64_t next_addr = kMmapBase;
};

Mm::Mm(policy::Policy& policy, phys::PageSource& pages, const phys::PhysMem& phys,
       const directmap::DirectMap& dmap, const MmSettings& settings)
    : policy_(policy), memory_(pages), phys_(phys), dmap_(dmap), settings_(settings) {}
Mm::~Mm() = default;

Mm::Process* Mm::proc(Pid pid) {
  if (pid <= 0 || static_cast<std::size_t>(pid) > procs_.size()) return nullptr;
  Process* p = procs_[static_cast<std::size_t>(pid) - 1].get();
  return p != nullptr && p->alive ? p : nullptr;
}
const Mm::Process* Mm::proc(Pid pid) const {
  if (pid <= 0 || static_cast<std::size_t>(pid) > procs_.size()) return nullptr;
  const Process* p = procs_[static_cast<std::size_t>(pid) - 1].get();
  return p != nullptr && p->alive ? p : nullptr;
}

bool Mm::alive(Pid pid) const { return proc(pid) != nullptr; }

std::uint64_t Mm::locked_vm(Pid pid) const {
  const Process* p = proc(pid);
  return p == nullptr ? 0 : p->locked_vm;
}

std::uint64_t Mm::processes() const {
  return static_cast<std::uint64_t>(
      std::count_if(procs_.begin(), procs_.end(), [](const auto& p) { return p != nullptr && p->alive; }));
}

Pid Mm::spawn(std::uint64_t rlimit_memlock_bytes, bool cap_ipc_lock, int cpu) {
  auto p = std::make_unique<Process>();
  p->pid = static_cast<Pid>(procs_.size() + 1);
  p->rlimit_memlock = rlimit_memlock_bytes;
  p->cap_ipc_lock = cap_ipc_lock;
  const unsigned ncpus = phys_.cpus();
  if (cpu >= 0 && static_cast<unsigned>(cpu) < ncpus) {
    p->cpu = static_cast<CpuId>(cpu);
  } else {
    p->cpu = next_cpu_++ % ncpus;
  }
  procs_.push_back(std::move(p));
  memory_.add_process(procs_.back()->pid);
  return procs_.back()->pid;
}

Pid Mm::spawn() { return spawn(settings_.rlimit_memlock_bytes); }

int Mm::set_cpu(Pid pid, CpuId cpu) {
  Process* p = proc(pid);
  if (p == nullptr) return -ESRCH;
  if (cpu >= phys_.cpus()) return -EINVAL;
  p->cpu = cpu;
  return 0;
}

Mm::File* Mm::file_of(Process& p, int fd) {
  const auto it = p.fds.find(fd);
  return it == p.fds.end() ? nullptr : files_[it->second.file].get();
}

// mirrors get_unused_fd_flags() + fd_install(): the lowest free descriptor
int Mm::install_fd(Process& p, std::uint32_t file, bool cloexec) {
  if (p.fds.size() >= kRlimitNofile) return -EMFILE;
  int fd = 0;
  for (const auto& [num, entry] : p.fds) {
    (void)entry;
    if (num != fd) break;
    ++fd;
  }
  p.fds.emplace(fd, Process::Fd{file, cloexec});
  return fd;
}

void Mm::get_file(std::uint32_t file) { ++files_[file]->refs; }

void Mm::put_file(std::uint32_t file, CpuId cpu) {
  File& f = *files_[file];
  if (--f.refs == 0) release_file(file, cpu);
}

// The last reference is gone: the inode is evicted, truncate_inode_pages_final()
// frees every page in index order through secretmem_free_folio() (a
// MAP_EXCLUSIVE object has none left: munmap() freed them), then the policy
// hears that the owner is gone.
void Mm::release_file(std::uint32_t file, CpuId cpu) {
  File& f = *files_[file];
  const policy::Owner owner = f.owner(file);
  auto free_one = [&](Pfn pfn) {
    policy_.free_secret_page(pfn, cpu, owner);
    if (f.exclusive) {
      --exclusive_pages_;
      ++stats_.exclusive_pages_freed;
    } else {
      --secret_pages_;
      ++stats_.secret_pages_freed;
    }
  };
  for (const auto& [index, pfn] : f.pages.all()) {
    (void)index;
    free_one(pfn);
  }
  const bool exclusive = f.exclusive;
  files_[file] = std::make_unique<File>();
  policy_.release_file(owner, cpu);
  free_file_ids_.push_back(file);
  if (exclusive) return;
  --secretmem_users_;  // secretmem_release()
  ++stats_.secret_files_released;
}

std::uint32_t Mm::new_file_id() {
  if (!free_file_ids_.empty()) {
    const std::uint32_t id = free_file_ids_.back();
    free_file_ids_.pop_back();
    return id;
  }
  files_.push_back(std::make_unique<File>());
  return static_cast<std::uint32_t>(files_.size() - 1);
}

// mirrors SYSCALL_DEFINE1(memfd_secret)
int Mm::memfd_secret(Pid pid, unsigned flags) {
  Process* p = proc(pid);
  if (p == nullptr) return -ESRCH;
  if (!settings_.secretmem_enable) return -ENOSYS;
  if (flags & ~kO_CLOEXEC) return -EINVAL;  // SECRETMEM_FLAGS_MASK is empty
  if (p->fds.size() >= kRlimitNofile) return -EMFILE;
  const std::uint32_t id = new_file_id();
  File& f = *files_[id];
  f.live = true;
  f.refs = 1;
  ++secretmem_users_;
  ++stats_.secret_files_created;
  return install_fd(*p, id, (flags & kO_CLOEXEC) != 0);
}

// mirrors do_sys_ftruncate() + secretmem_setattr()
int Mm::ftruncate(Pid pid, int fd, std::int64_t length) {
  Process* p = proc(pid);
  if (p == nullptr) return -ESRCH;
  if (length < 0) return -EINVAL;
  File* f = file_of(*p, fd);
  if (f == nullptr) return -EBADF;
  // Changing the size of a file that has one is refused.
  if (f->size != 0) return -EINVAL;
  f->size = static_cast<std::uint64_t>(length);
  return 0;
}

// MAP_EXCLUSIVE ("mm: add MAP_EXCLUSIVE to create exclusive user mappings",
// RFC, Mike Rapoport, October 2019). What the RFC did, and what the model
// decided where the thread left a question open:
//
// - mmap: only private anonymous memory not backed by hugetlbfs; anything else
//   (a file, MAP_SHARED, MAP_HUGETLB) is -EINVAL, as the RFC's
//   ksys_mmap_pgoff() had it. The flag implies MAP_LOCKED and MAP_POPULATE:
//   the mapping is charged to RLIMIT_MEMLOCK at mmap (-EAGAIN over the limit,
//   unless CAP_IPC_LOCK), and every page is faulted in at mmap by
//   populate_vma_page_range() with FOLL_EXCLUSIVE, each one taken from the
//   machine's policy (the RFC: __set_page_user_exclusive(), one page made not
//   present plus a one-page flush, which is what the upstream policy does).
//   Population stops at the first page that cannot be had and mmap still
//   succeeds, as mm_populate() ignores errors; a later touch of such a page
//   faults it in the same way, or ends in VM_FAULT_OOM. The RFC would have
//   populated a PROT_READ-only mapping with the shared zero page (and removed
//   that from the direct map); the model gives every page a frame of its own.
//   The pages are unmovable, as secretmem's are (the RFC left them on the LRU,
//   where compaction could have tried to move them).
// - munmap / exit / exec: the pages of the unmapped range go back to the
//   policy (the RFC: zap_pte_range() -> __clear_page_user_exclusive(), the
//   direct-map entry restored, then the page freed).
// - fork: the mapping is not copied into the child, like VM_DONTCOPY (the
//   RFC's dup_mmap()); the child has nothing at that address (SIGSEGV).
// - mprotect: allowed, with any protection; the pages stay in place and out
//   of the direct map (PROT_NONE makes a user access SIGSEGV, nothing else).
// - get_user_pages(): refused with -EFAULT, as for memfd_secret. The RFC did
//   not refuse it: a remote GUP (/proc/pid/mem, process_vm_readv) would
//   get the page and the kernel's access through the removed direct-map entry
//   would oops into the RFC's "FIXME: warn and handle gracefully" SIGSEGV.
// - file-backed mappings: refused (-EINVAL), see mmap; the fd-based
//   interface the thread asked for instead is memfd_secret.
// - madvise: MADV_WIPEONFORK is accepted (private anonymous memory), and
//   moot, since fork does not copy the mapping.
// - hibernation is not blocked (the RFC did not touch it).
//
// mirrors the MAP_EXCLUSIVE half of ksys_mmap_pgoff() + do_mmap() + mm_populate()
Result<std::uint64_t> Mm::mmap_exclusive(Process& p, std::uint64_t pages, unsigned prot) {
  using R = Result<std::uint64_t>;
  // VM_LOCKED: mlock_future_ok()
  if (!p.cap_ipc_lock && p.locked_vm + pages > p.rlimit_memlock / kPageSize) {
    ++stats_.exclusive_mmap_refused;
    return R::error(-EAGAIN);
  }
  const int err = policy_.reserve(pages, p.cpu);
  if (err != 0) {
    ++stats_.exclusive_mmap_refused;
    return R::error(err);
  }
  if (!p.alive) {  // the reservation ran the OOM killer, which chose this process
    policy_.unreserve(pages, p.cpu);
    ++stats_.exclusive_mmap_refused;
    return R::error(-ENOMEM);
  }
  const std::uint32_t id = new_file_id();
  File& f = *files_[id];
  f.live = true;
  f.exclusive = true;
  f.size = pages * kPageSize;
  f.refs = 1;  // the mapping
  Vma vma;
  vma.start = p.next_addr;
  vma.end = vma.start + pages * kPageSize;
  vma.file = id;
  vma.prot = prot;
  vma.locked = true;
  vma.exclusive = true;
  p.next_addr = vma.end + kPageSize;
  p.locked_vm += pages;
  p.vmas.emplace(vma.start, vma);
  ++stats_.exclusive_mmaps;
  // MAP_POPULATE: populate_vma_page_range() with FOLL_EXCLUSIVE, page by page.
  // A fault may run the OOM killer and kill this very process: then the
  // mapping is gone and population stops.
  for (std::uint64_t i = 0; i < pages; ++i) {
    if (exclusive_fault(p.pid, id, i, p.cpu) != VmFault::Major || !p.alive) break;
  }
  return R{vma.start, 0};
}

// mirrors do_mmap() with secretmem_mmap_prepare()
Result<std::uint64_t> Mm::mmap(Pid pid, std::uint64_t len, unsigned prot, unsigned flags, int fd,
                               std::uint64_t offset) {
  using R = Result<std::uint64_t>;
  Process* p = proc(pid);
  if (p == nullptr) return R::error(-ESRCH);
  if (len == 0) return R::error(-EINVAL);
  if (offset % kPageSize != 0) return R::error(-EINVAL);
  const std::uint64_t pages = (len + kPageSize - 1) / kPageSize;
  if (pages > (std::uint64_t{1} << 35)) return R::error(-ENOMEM);
  const unsigned type = flags & kMAP_TYPE;
  if (type != kMAP_SHARED && type != kMAP_PRIVATE && type != kMAP_SHARED_VALIDATE) {
    return R::error(-EINVAL);
  }
  if (flags & kMAP_EXCLUSIVE) {
    // The RFC's ksys_mmap_pgoff(): private anonymous memory only, no hugetlbfs.
    if (!(flags & kMAP_ANONYMOUS) || type != kMAP_PRIVATE || (flags & kMAP_HUGETLB)) {
      ++stats_.exclusive_mmap_refused;
      return R::error(-EINVAL);
    }
    return mmap_exclusive(*p, pages, prot);
  }
  if (flags & kMAP_ANONYMOUS) return R::error(-EOPNOTSUPP);  // not modelled (see mm.hpp)
  const auto fit = p->fds.find(fd);
  if (fit == p->fds.end()) return R::error(-EBADF);
  // The secretmem mount is noexec: VM_EXEC is refused.
  if (prot & kPROT_EXEC) return R::error(-EPERM);
  // secretmem_mmap_prepare(): shared mappings only, charged to RLIMIT_MEMLOCK.
  if (type == kMAP_PRIVATE) return R::error(-EINVAL);
  if (!p->cap_ipc_lock && p->locked_vm + pages > p->rlimit_memlock / kPageSize) {
    return R::error(-EAGAIN);  // mlock_future_ok() failed
  }
  const int err = policy_.reserve(pages, p->cpu);
  if (err != 0) return R::error(err);
  if (!p->alive) {  // the reservation ran the OOM killer, which chose this process
    policy_.unreserve(pages, p->cpu);
    return R::error(-ENOMEM);
  }
  Vma vma;
  vma.start = p->next_addr;
  vma.end = vma.start + pages * kPageSize;
  vma.file = fit->second.file;
  vma.pgoff = offset / kPageSize;
  vma.prot = prot;
  vma.locked = true;  // VM_LOCKED | VM_DONTDUMP
  p->next_addr = vma.end + kPageSize;  // a guard gap between mappings
  p->locked_vm += pages;
  get_file(vma.file);
  p->vmas.emplace(vma.start, vma);
  // MAP_POPULATE / MAP_LOCKED populate through GUP, which secretmem refuses:
  // nothing is faulted in here.
  if (flags & (kMAP_POPULATE | kMAP_LOCKED)) ++stats_.populate_skipped;
  return R{vma.start, 0};
}

void Mm::drop_vma(Process& p, const Vma& vma) {
  const std::uint64_t pages = (vma.end - vma.start) / kPageSize;
  if (vma.locked) p.locked_vm -= pages;
  policy_.unreserve(pages, p.cpu);
  if (vma.exclusive) free_exclusive_range(vma.file, vma.pgoff, pages, p.cpu);
  put_file(vma.file, p.cpu);
}

// mirrors zap_pte_range() on a MAP_EXCLUSIVE range: each page present goes back
// to the policy (the RFC's __clear_page_user_exclusive(), then the free).
void Mm::free_exclusive_range(std::uint32_t file, std::uint64_t first, std::uint64_t count,
                              CpuId cpu) {
  File& f = *files_[file];
  const policy::Owner owner = f.owner(file);
  auto free_one = [&](std::uint64_t index) {
    const Pfn pfn = f.pages.erase(index);
    if (pfn == kNoPfn) return;
    policy_.free_secret_page(pfn, cpu, owner);
    --exclusive_pages_;
    ++stats_.exclusive_pages_freed;
  };
  if (count <= 4 * f.pages.size() + 64) {
    for (std::uint64_t i = first; i < first + count; ++i) free_one(i);
    return;
  }
  // A large range over few pages: visit the pages, not the range.
  for (const auto& [index, pfn] : f.pages.all()) {
    (void)pfn;
    if (index >= first && index < first + count) free_one(index);
  }
}

// mirrors __split_vma(): the mapping that holds addr strictly inside becomes
// two; the new piece holds its own reference on the file.
void Mm::split_vma(Process& p, std::uint64_t addr) {
  auto it = p.vmas.upper_bound(addr);
  if (it == p.vmas.begin()) return;
  --it;
  Vma& vma = it->second;
  if (addr <= vma.start || addr >= vma.end) return;
  Vma right = vma;
  right.start = addr;
  right.pgoff = vma.pgoff + (addr - vma.start) / kPageSize;
  vma.end = addr;
  get_file(right.file);
  p.vmas.emplace(right.start, right);
}

// mirrors do_vmi_munmap(): mappings partly covered are split
int Mm::munmap(Pid pid, std::uint64_t addr, std::uint64_t len) {
  Process* p = proc(pid);
  if (p == nullptr) return -ESRCH;
  if (addr % kPageSize != 0 || len == 0) return -EINVAL;
  const std::uint64_t end = addr + (len + kPageSize - 1) / kPageSize * kPageSize;
  std::vector<Vma> hit;
  for (const auto& [start, vma] : p->vmas) {
    if (vma.start < end && vma.end > addr) hit.push_back(vma);
  }
  for (const Vma& vma : hit) {
    p->vmas.erase(vma.start);
    if (vma.start < addr) {  // the part before the hole stays
      Vma left = vma;
      left.end = addr;
      get_file(left.file);
      p->vmas.emplace(left.start, left);
    }
    if (vma.end > end) {  // the part after it stays
      Vma right = vma;
      right.start = end;
      right.pgoff = vma.pgoff + (end - vma.start) / kPageSize;
      get_file(right.file);
      p->vmas.emplace(right.start, right);
    }
    // The hole itself goes: its pages (MAP_EXCLUSIVE), locked_vm, reservation.
    Vma hole = vma;
    hole.start = std::max(vma.start, addr);
    hole.end = std::min(vma.end, end);
    hole.pgoff = vma.pgoff + (hole.start - vma.start) / kPageSize;
    drop_vma(*p, hole);
  }
  return 0;
}

// mirrors do_mprotect_pkey() -> mprotect_fixup()
int Mm::mprotect(Pid pid, std::uint64_t addr, std::uint64_t len, unsigned prot) {
  Process* p = proc(pid);
  if (p == nullptr) return -ESRCH;
  if (addr % kPageSize != 0) return -EINVAL;
  if (prot & ~(kPROT_READ | kPROT_WRITE | kPROT_EXEC)) return -EINVAL;
  if (len == 0) return 0;
  const std::uint64_t end = addr + (len + kPageSize - 1) / kPageSize * kPageSize;
  // Every page must be mapped; a secretmem mapping may not become executable.
  for (std::uint64_t cur = addr; cur < end;) {
    auto it = p->vmas.upper_bound(cur);
    if (it == p->vmas.begin()) return -ENOMEM;
    --it;
    const Vma& vma = it->second;
    if (cur >= vma.end) return -ENOMEM;
    if ((prot & kPROT_EXEC) && !vma.exclusive) return -EACCES;  // noexec mount: no VM_MAYEXEC
    cur = vma.end;
  }
  split_vma(*p, addr);
  split_vma(*p, end);
  for (auto it = p->vmas.lower_bound(addr); it != p->vmas.end() && it->second.start < end; ++it) {
    it->second.prot = prot;
  }
  return 0;
}

// mirrors madvise_vma_behavior() for the fork-related advice
int Mm::madvise(Pid pid, std::uint64_t addr, std::uint64_t len, int advice) {
  Process* p = proc(pid);
  if (p == nullptr) return -ESRCH;
  if (addr % kPageSize != 0) return -EINVAL;
  if (advice != kMADV_DONTFORK && advice != kMADV_DOFORK && advice != kMADV_WIPEONFORK &&
      advice != kMADV_KEEPONFORK) {
    return -EINVAL;
  }
  const std::uint64_t end = addr + len;
  bool any = false;
  for (auto& [start, vma] : p->vmas) {
    if (vma.start >= end || vma.end <= addr) continue;
    any = true;
    // Wiping on fork is only for private anonymous memory.
    if (advice == kMADV_WIPEONFORK && !vma.exclusive) return -EINVAL;
  }
  if (!any) return -ENOMEM;
  for (auto& [start, vma] : p->vmas) {
    if (vma.start >= end || vma.end <= addr) continue;
    if (advice == kMADV_DONTFORK) vma.dontcopy = true;
    if (advice == kMADV_DOFORK) vma.dontcopy = false;
    if (advice == kMADV_WIPEONFORK) vma.wipeonfork = true;
    if (advice == kMADV_KEEPONFORK) vma.wipeonfork = false;
  }
  return 0;
}

int Mm::close(Pid pid, int fd) {
  Process* p = proc(pid);
  if (p == nullptr) return -ESRCH;
  const auto it = p->fds.find(fd);
  if (it == p->fds.end()) return -EBADF;
  const std::uint32_t file = it->second.file;
  p->fds.erase(it);
  put_file(file, p->cpu);
  return 0;
}

int Mm::read(Pid pid, int fd) {
  Process* p = proc(pid);
  if (p == nullptr) return -ESRCH;
  if (file_of(*p, fd) == nullptr) return -EBADF;
  return -EINVAL;  // no ->read / ->write: !FMODE_CAN_READ
}

Result<int> Mm::send_fd(Pid from, int fd, Pid to, bool cloexec) {
  Process* src = proc(from);
  Process* dst = proc(to);
  if (src == nullptr || dst == nullptr) return Result<int>::error(-ESRCH);
  const auto it = src->fds.find(fd);
  if (it == src->fds.end()) return Result<int>::error(-EBADF);
  const std::uint32_t file = it->second.file;
  const int nfd = install_fd(*dst, file, cloexec);
  if (nfd < 0) return Result<int>::error(nfd);
  get_file(file);
  return Result<int>{nfd, 0};
}

// mirrors copy_process() -> dup_fd() + dup_mmap()
Result<Pid> Mm::fork(Pid parent) {
  Process* p = proc(parent);
  if (p == nullptr) return Result<Pid>::error(-ESRCH);
  const Pid child = spawn(p->rlimit_memlock, p->cap_ipc_lock);
  p = proc(parent);  // procs_ may have grown
  Process& c = *proc(child);
  c.oom_score_adj = p->oom_score_adj;  // signal->oom_score_adj is copied
  c.unkillable = p->unkillable;
  c.name = p->name;
  for (const auto& [fd, entry] : p->fds) {
    c.fds.emplace(fd, entry);
    get_file(entry.file);
  }
  std::vector<Vma> copies;
  for (const auto& [start, vma] : p->vmas) {
    if (vma.dontcopy) continue;  // VM_DONTCOPY
    if (vma.exclusive) {         // the RFC's dup_mmap(): VM_EXCLUSIVE is not copied
      ++stats_.exclusive_not_copied;
      continue;
    }
    copies.push_back(vma);
  }
  const CpuId cpu = p->cpu;
  c.next_addr = p->next_addr;
  for (Vma copy : copies) {
    // Each mapping holds its own reservation (a policy that reserves at mmap
    // gives one back per mapping dropped), so the copy reserves too; when it
    // cannot, fork fails as dup_mmap() does, with -ENOMEM.
    const std::uint64_t pages = (copy.end - copy.start) / kPageSize;
    if (policy_.reserve(pages, cpu) != 0) {
      exit(child);
      return Result<Pid>::error(-ENOMEM);
    }
    // The reservation may have run the OOM killer, whose victim may be either.
    if (!alive(child) || !alive(parent)) {
      policy_.unreserve(pages, cpu);
      exit(child);
      return Result<Pid>::error(-ENOMEM);
    }
    copy.locked = false;  // VM_LOCKED is not inherited
    get_file(copy.file);
    proc(child)->vmas.emplace(copy.start, copy);
  }
  return Result<Pid>{child, 0};
}

// exit_mmap() / exec_mmap(): every mapping of the process goes.
void Mm::drop_all_vmas(Process& p) {
  std::vector<Vma> vmas;
  for (const auto& [start, vma] : p.vmas) vmas.push_back(vma);
  p.vmas.clear();
  for (const Vma& vma : vmas) drop_vma(p, vma);
}

int Mm::exec(Pid pid) {
  Process* p = proc(pid);
  if (p == nullptr) return -ESRCH;
  drop_all_vmas(*p);
  std::vector<int> cloexec;
  for (const auto& [fd, entry] : p->fds) {
    if (entry.cloexec) cloexec.push_back(fd);
  }
  for (const int fd : cloexec) close(pid, fd);
  p->next_addr = kMmapBase;
  return 0;
}

int Mm::exit(Pid pid) {
  Process* p = proc(pid);
  if (p == nullptr) return -ESRCH;
  memory_.exit_process(pid, p->cpu);  // exit_mmap(): the anonymous pages
  drop_all_vmas(*p);
  std::vector<int> fds;
  for (const auto& [fd, entry] : p->fds) fds.push_back(fd);
  for (const int fd : fds) close(pid, fd);
  p->alive = false;
  // A dead process keeps only its pid (pids are never reused, so that
  // for_each_process() keeps creation order): its record goes, or a long run
  // would keep every process it ever ran (about 200 bytes each, 1.5 M of them
  // per 50 M events of the default workload).
  procs_[static_cast<std::size_t>(pid) - 1].reset();
  return 0;
}

// mirrors secretmem_fault()
//
// The allocation may run reclaim and the OOM killer, whose victim may be the
// faulting process itself, or another holder of this file: the fault holds a
// reference on the file across it (the mapping's vm_file reference, which
// the kernel's fault keeps while it runs), so the file outlives the kill.
// When the faulting process was the victim, the kernel's allocation succeeds
// from the reserves (ALLOC_OOM) and the page is added to the file, and the
// task dies on its way back to user space: the model adds the page, drops the
// reference (the file goes if that was the last one) and returns VM_FAULT_OOM.
VmFault Mm::secretmem_fault(Pid pid, std::uint32_t file, std::uint64_t pgoff, CpuId cpu) {
  File* f = files_[file].get();
  if (pgoff >= (f->size + kPageSize - 1) / kPageSize) {
    ++stats_.faults_sigbus;
    return VmFault::SigBus;  // vmf_error(-EINVAL)
  }
  if (f->pages.find(pgoff) != kNoPfn) {
    ++stats_.faults_minor;
    return VmFault::Minor;
  }
  const CpuId put_cpu = cpu;
  get_file(file);
  const Result<Pfn> page = policy_.alloc_secret_page(cpu, f->owner(file));
  f = files_[file].get();  // the reference kept it; the vector may have grown
  VmFault result = VmFault::Major;
  if (!page.ok()) {
    if (page.err == -ENOMEM) {
      ++stats_.faults_oom;
      if (!alive(pid)) ++stats_.faults_oom_victim;
      result = VmFault::Oom;
    } else {
      ++stats_.faults_sigbus;
      result = VmFault::SigBus;
    }
  } else if (f->pages.find(pgoff) != kNoPfn) {
    // Another fault added this index meanwhile (filemap_add_folio() -EEXIST):
    // the page goes back and the fault retries, finding it.
    policy_.free_secret_page(page.value, cpu, f->owner(file));
    ++stats_.faults_minor;
    result = VmFault::Minor;
  } else {
    f->pages.insert(pgoff, page.value);  // filemap_add_folio()
    ++secret_pages_;
    if (alive(pid)) {
      ++stats_.faults_major;
    } else {
      ++stats_.faults_oom;
      ++stats_.faults_oom_victim;
      result = VmFault::Oom;
    }
  }
  put_file(file, put_cpu);
  return result;
}

// The populate or fault of one MAP_EXCLUSIVE page: the RFC's
// __get_user_pages() -> __set_page_user_exclusive() on a page from the policy.
// As secretmem_fault(), the object is held across the allocation, which may
// kill the faulting process (then its mapping, the object's only user, goes
// when the reference is dropped, with the page just added).
VmFault Mm::exclusive_fault(Pid pid, std::uint32_t file, std::uint64_t pgoff, CpuId cpu) {
  File* f = files_[file].get();
  if (f->pages.find(pgoff) != kNoPfn) return VmFault::Minor;
  get_file(file);
  const Result<Pfn> page = policy_.alloc_secret_page(cpu, f->owner(file));
  f = files_[file].get();
  VmFault result = VmFault::Major;
  if (!page.ok()) {
    ++stats_.exclusive_faults_oom;
    result = page.err == -ENOMEM ? VmFault::Oom : VmFault::SigBus;
  } else if (f->pages.find(pgoff) != kNoPfn) {
    policy_.free_secret_page(page.value, cpu, f->owner(file));
    result = VmFault::Minor;
  } else {
    f->pages.insert(pgoff, page.value);
    ++exclusive_pages_;
    ++stats_.exclusive_faults;
    if (!alive(pid)) {
      ++stats_.exclusive_faults_oom;
      result = VmFault::Oom;
    }
  }
  put_file(file, cpu);
  return result;
}

VmFault Mm::touch(Pid pid, std::uint64_t addr, bool write) {
  Process* p = proc(pid);
  if (p == nullptr) return VmFault::SigSegv;
  auto it = p->vmas.upper_bound(addr);
  if (it == p->vmas.begin()) {
    ++stats_.faults_sigsegv;
    return VmFault::SigSegv;
  }
  --it;
  const Vma& vma = it->second;
  if (addr >= vma.end || (write && !(vma.prot & kPROT_WRITE)) ||
      (!write && !(vma.prot & (kPROT_READ | kPROT_WRITE)))) {
    ++stats_.faults_sigsegv;
    return VmFault::SigSegv;
  }
  const std::uint64_t pgoff = vma.pgoff + (addr - vma.start) / kPageSize;
  if (vma.exclusive) return exclusive_fault(pid, vma.file, pgoff, p->cpu);
  return secretmem_fault(pid, vma.file, pgoff, p->cpu);
}

int Mm::set_oom_score_adj(Pid pid, int adj) {
  Process* p = proc(pid);
  if (p == nullptr) return -ESRCH;
  if (adj < kOomScoreAdjMin || adj > kOomScoreAdjMax) return -EINVAL;
  p->oom_score_adj = adj;
  return 0;
}

int Mm::oom_score_adj(Pid pid) const {
  const Process* p = proc(pid);
  return p == nullptr ? 0 : p->oom_score_adj;
}

int Mm::set_unkillable(Pid pid, bool unkillable) {
  Process* p = proc(pid);
  if (p == nullptr) return -ESRCH;
  p->unkillable = unkillable;
  return 0;
}

bool Mm::unkillable(Pid pid) const {
  const Process* p = proc(pid);
  return p != nullptr && p->unkillable;
}

int Mm::set_name(Pid pid, std::string name) {
  Process* p = proc(pid);
  if (p == nullptr) return -ESRCH;
  p->name = std::move(name);
  return 0;
}

std::string Mm::name(Pid pid) const {
  if (pid <= 0 || static_cast<std::size_t>(pid) > procs_.size()) return {};
  const Process* p = procs_[static_cast<std::size_t>(pid) - 1].get();
  return p == nullptr ? std::string{} : p->name;
}

// The pages present in the part of its file (or MAP_EXCLUSIVE object) a mapping covers.
std::uint64_t Mm::pages_in(const Vma& vma) const {
  const File& f = *files_[vma.file];
  const std::uint64_t n = (vma.end - vma.start) / kPageSize;
  std::uint64_t count = 0;
  if (n <= 2 * f.pages.size() + 64) {
    for (std::uint64_t i = vma.pgoff; i < vma.pgoff + n; ++i) count += f.pages.find(i) != kNoPfn ? 1 : 0;
    return count;
  }
  for (const auto& [index, pfn] : f.pages.all()) {
    (void)pfn;
    count += index >= vma.pgoff && index < vma.pgoff + n ? 1 : 0;
  }
  return count;
}

// The model does not track which of a file's pages a process has touched:
// every page present in the part of a file it maps counts, as if it had.
std::uint64_t Mm::secret_rss(Pid pid) const {
  const Process* p = proc(pid);
  if (p == nullptr) return 0;
  std::uint64_t n = 0;
  for (const auto& [start, vma] : p->vmas) n += pages_in(vma);
  return n;
}

std::uint64_t Mm::rss(Pid pid) const {
  if (proc(pid) == nullptr) return 0;
  return memory_.anon_pages(pid) + memory_.file_pages(pid) + secret_rss(pid);
}

std::uint64_t Mm::pgtables_pages(Pid pid) const {
  return (rss(pid) + kPtrsPerTable - 1) / kPtrsPerTable;
}

// mirrors __oom_kill_process() with the OOM reaper's __oom_reap_task_mm()
// done at once: SIGKILL, the anonymous memory reaped, then do_exit(): the
// files closed and the mappings dropped (a shared mapping the reaper skips is
// released by exit_mmap(); a secretmem file goes with its last reference).
std::uint64_t Mm::oom_kill(Pid pid, CpuId cpu) {
  Process* p = proc(pid);
  if (p == nullptr) return 0;
  const std::uint64_t secret0 = stats_.secret_pages_freed + stats_.exclusive_pages_freed;
  std::uint64_t freed = memory_.reap(pid, cpu);
  exit(pid);
  freed += stats_.secret_pages_freed + stats_.exclusive_pages_freed - secret0;
  return freed;
}

bool Mm::is_exclusive(Pid pid, std::uint64_t addr) const {
  const Process* p = proc(pid);
  if (p == nullptr) return false;
  auto it = p->vmas.upper_bound(addr);
  if (it == p->vmas.begin()) return false;
  --it;
  return addr < it->second.end && it->second.exclusive;
}

Pfn Mm::pagemap(Pid pid, std::uint64_t addr) const {
  const Process* p = proc(pid);
  if (p == nullptr) return kNoPfn;
  auto it = p->vmas.upper_bound(addr);
  if (it == p->vmas.begin()) return kNoPfn;
  --it;
  const Vma& vma = it->second;
  if (addr >= vma.end) return kNoPfn;
  return files_[vma.file]->pages.find(vma.pgoff + (addr - vma.start) / kPageSize);
}

// mirrors the vma_is_secretmem() refusal in get_user_pages(); MAP_EXCLUSIVE
// mappings are refused the same way (see the block above Mm::mmap_exclusive())
int Mm::gup(Pid pid, std::uint64_t addr) {
  Process* p = proc(pid);
  if (p == nullptr) return -ESRCH;
  auto it = p->vmas.upper_bound(addr);
  if (it == p->vmas.begin() || addr >= std::prev(it)->second.end) return -EFAULT;
  ++stats_.gup_refused;
  return -EFAULT;  // every mapping in the model is secretmem or MAP_EXCLUSIVE
}

std::size_t Mm::model_bytes() const {
  std::size_t n = sizeof(*this) + procs_.capacity() * sizeof(void*) +
                  files_.capacity() * sizeof(void*);
  for (const auto& p : procs_) {
    if (p != nullptr) n += sizeof(Process) + p->fds.size() * 48 + p->vmas.size() * 96;
  }
  n += memory_.model_bytes();
  for (const auto& f : files_) n += sizeof(File) + f->pages.model_bytes();
  return n;
}

std::vector<std::string> Mm::check() const {
  std::vector<std::string> v;
  std::vector<std::uint64_t> refs(files_.size(), 0);
  std::vector<Pid> exclusive_owner(files_.size(), 0);  // the one process of a MAP_EXCLUSIVE object
  for (const auto& p : procs_) {
    if (p == nullptr) continue;  // exited
    if (!p->alive) {
      if (!p->fds.empty() || !p->vmas.empty()) v.push_back(fmt::format("dead pid {} holds files", p->pid));
      continue;
    }
    std::uint64_t locked = 0;
    for (const auto& [fd, entry] : p->fds) {
      ++refs[entry.file];
      if (files_[entry.file]->exclusive) {
        v.push_back(fmt::format("pid {}: fd {} refers to MAP_EXCLUSIVE object {}", p->pid, fd, entry.file));
      }
    }
    for (const auto& [start, vma] : p->vmas) {
      ++refs[vma.file];
      if (vma.locked) locked += (vma.end - vma.start) / kPageSize;
      if (vma.exclusive != files_[vma.file]->exclusive) {
        v.push_back(fmt::format("pid {}: mapping {:#x} and its object {} disagree on MAP_EXCLUSIVE",
                                p->pid, start, vma.file));
      }
      if (vma.exclusive) {
        Pid& owner = exclusive_owner[vma.file];
        if (owner != 0 && owner != p->pid) {
          v.push_back(fmt::format("MAP_EXCLUSIVE object {} is mapped by pids {} and {}", vma.file,
                                  owner, p->pid));
        }
        owner = p->pid;
      }
    }
    if (locked != p->locked_vm) {
      v.push_back(fmt::format("pid {}: locked_vm {} but VM_LOCKED mappings cover {} pages",
                              p->pid, p->locked_vm, locked));
    }
  }
  std::uint64_t pages = 0;
  std::uint64_t exclusive_pages = 0;
  std::uint64_t live = 0;
  const phys::PhysMem& ph = phys_;
  const directmap::DirectMap& dm = dmap_;
  for (std::size_t i = 0; i < files_.size(); ++i) {
    const File& f = *files_[i];
    if (!f.live) continue;
    const char* what = f.exclusive ? "MAP_EXCLUSIVE object" : "secretmem file";
    if (!f.exclusive) ++live;
    if (refs[i] != f.refs) {
      v.push_back(fmt::format("{} {}: {} references but {} held", what, i, f.refs, refs[i]));
    }
    auto check_page = [&](std::uint64_t index, Pfn pfn) {
      ++(f.exclusive ? exclusive_pages : pages);
      if (pfn >= ph.nr_frames() || ph.kind(pfn) != phys::FrameKind::Secret) {
        v.push_back(fmt::format("{} {} page {}: pfn {:#x} is not a secret frame", what, i, index, pfn));
      } else if (dm.is_present(pfn)) {
        v.push_back(fmt::format("{} {} page {}: pfn {:#x} is present in the direct map", what, i,
                                index, pfn));
      }
      if (index * kPageSize >= f.size) {
        v.push_back(fmt::format("{} {} page {}: beyond its size", what, i, index));
      }
    };
    std::uint64_t n = 0;
    for (const auto& [idx, pfn] : f.pages.all()) {
      check_page(idx, pfn);
      ++n;
    }
    if (n != f.pages.size()) v.push_back(fmt::format("{} {}: {} pages counted, {} held", what, i, f.pages.size(), n));
  }
  if (exclusive_pages != exclusive_pages_) {
    v.push_back(fmt::format("MAP_EXCLUSIVE objects hold {} pages but {} are counted", exclusive_pages,
                            exclusive_pages_));
  }
  if (pages != secret_pages_) {
    v.push_back(fmt::format("secretmem files hold {} pages but {} are counted", pages, secret_pages_));
  }
  if (live != secretmem_users_) {
    v.push_back(fmt::format("{} live secretmem files but secretmem_users is {}", live, secretmem_users_));
  }
  for (std::string& s : memory_.check(ph)) v.push_back(std::move(s));
  return v;
}

}  // namespace exmem::model::mm
