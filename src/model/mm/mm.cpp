// mm/: processes and memfd_secret (see mm.hpp for what the folder owns).
// mm.cpp: the syscalls, the fault, and file release.
#include "model/mm/mm.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "model/machine.hpp"

namespace exmem::model::mm {

namespace {
constexpr std::uint64_t kDenseLimit = std::uint64_t{1} << 22;  // page-cache indexes kept densely
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

// A secretmem inode with its single open file description.
struct Mm::File {
  bool live = false;
  std::uint64_t size = 0;  // i_size
  std::uint32_t refs = 0;  // fds + mappings
  std::vector<Pfn> dense;
  std::unordered_map<std::uint64_t, Pfn> sparse;
  std::uint64_t nr_pages = 0;

  [[nodiscard]] Pfn find(std::uint64_t index) const {
    if (index < kDenseLimit) return index < dense.size() ? dense[index] : kNoPfn;
    const auto it = sparse.find(index);
    return it == sparse.end() ? kNoPfn : it->second;
  }
  void insert(std::uint64_t index, Pfn pfn) {
    if (index < kDenseLimit) {
      if (index >= dense.size()) {
        dense.resize(std::max<std::size_t>(index + 1, std::min<std::size_t>(dense.size() * 2, kDenseLimit)), kNoPfn);
      }
      dense[index] = pfn;
    } else {
      sparse[index] = pfn;
    }
    ++nr_pages;
  }
};

struct Mm::Process {
  struct Fd {
    std::uint32_t file = 0;
    bool cloexec = false;
  };
  Pid pid = 0;
  bool alive = true;
  CpuId cpu = 0;
  std::uint64_t rlimit_memlock = 0;  // bytes
  bool cap_ipc_lock = false;
  std::map<int, Fd> fds;
  std::map<std::uint64_t, Vma> vmas;  // by start address
  std::uint64_t locked_vm = 0;        // pages
  std::uint64_t next_addr = kMmapBase;
};

Mm::Mm(Machine& machine) : machine_(machine) {}
Mm::~Mm() = default;

Mm::Process* Mm::proc(Pid pid) {
  if (pid <= 0 || static_cast<std::size_t>(pid) > procs_.size()) return nullptr;
  Process* p = procs_[static_cast<std::size_t>(pid) - 1].get();
  return p->alive ? p : nullptr;
}
const Mm::Process* Mm::proc(Pid pid) const {
  if (pid <= 0 || static_cast<std::size_t>(pid) > procs_.size()) return nullptr;
  const Process* p = procs_[static_cast<std::size_t>(pid) - 1].get();
  return p->alive ? p : nullptr;
}

bool Mm::alive(Pid pid) const { return proc(pid) != nullptr; }

std::uint64_t Mm::locked_vm(Pid pid) const {
  const Process* p = proc(pid);
  return p == nullptr ? 0 : p->locked_vm;
}

std::uint64_t Mm::processes() const {
  return static_cast<std::uint64_t>(
      std::count_if(procs_.begin(), procs_.end(), [](const auto& p) { return p->alive; }));
}

Pid Mm::spawn(std::uint64_t rlimit_memlock_bytes, bool cap_ipc_lock, int cpu) {
  auto p = std::make_unique<Process>();
  p->pid = static_cast<Pid>(procs_.size() + 1);
  p->rlimit_memlock = rlimit_memlock_bytes;
  p->cap_ipc_lock = cap_ipc_lock;
  const unsigned ncpus = machine_.phys().cpus();
  if (cpu >= 0 && static_cast<unsigned>(cpu) < ncpus) {
    p->cpu = static_cast<CpuId>(cpu);
  } else {
    p->cpu = next_cpu_++ % ncpus;
  }
  procs_.push_back(std::move(p));
  return procs_.back()->pid;
}

Pid Mm::spawn() { return spawn(machine_.config().rlimit_memlock_bytes); }

int Mm::set_cpu(Pid pid, CpuId cpu) {
  Process* p = proc(pid);
  if (p == nullptr) return -ESRCH;
  if (cpu >= machine_.phys().cpus()) return -EINVAL;
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
// frees every page in index order through secretmem_free_folio().
void Mm::release_file(std::uint32_t file, CpuId cpu) {
  File& f = *files_[file];
  auto free_one = [&](Pfn pfn) {
    machine_.policy().free_secret_page(machine_, pfn, cpu);
    --secret_pages_;
    ++stats_.secret_pages_freed;
  };
  for (const Pfn pfn : f.dense) {
    if (pfn != kNoPfn) free_one(pfn);
  }
  std::vector<std::pair<std::uint64_t, Pfn>> rest(f.sparse.begin(), f.sparse.end());
  std::sort(rest.begin(), rest.end());
  for (const auto& [index, pfn] : rest) {
    (void)index;
    free_one(pfn);
  }
  files_[file] = std::make_unique<File>();
  free_file_ids_.push_back(file);
  --secretmem_users_;  // secretmem_release()
  ++stats_.secret_files_released;
}

// mirrors SYSCALL_DEFINE1(memfd_secret)
int Mm::memfd_secret(Pid pid, unsigned flags) {
  Process* p = proc(pid);
  if (p == nullptr) return -ESRCH;
  if (!machine_.config().secretmem_enable) return -ENOSYS;
  if (flags & ~kO_CLOEXEC) return -EINVAL;  // SECRETMEM_FLAGS_MASK is empty
  if (p->fds.size() >= kRlimitNofile) return -EMFILE;
  std::uint32_t id = 0;
  if (!free_file_ids_.empty()) {
    id = free_file_ids_.back();
    free_file_ids_.pop_back();
  } else {
    id = static_cast<std::uint32_t>(files_.size());
    files_.push_back(std::make_unique<File>());
  }
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
  const auto fit = p->fds.find(fd);
  if (fit == p->fds.end()) return R::error(-EBADF);
  // The secretmem mount is noexec: VM_EXEC is refused.
  if (prot & kPROT_EXEC) return R::error(-EPERM);
  // secretmem_mmap_prepare(): shared mappings only, charged to RLIMIT_MEMLOCK.
  if (type == kMAP_PRIVATE) return R::error(-EINVAL);
  if (!p->cap_ipc_lock && p->locked_vm + pages > p->rlimit_memlock / kPageSize) {
    return R::error(-EAGAIN);  // mlock_future_ok() failed
  }
  const int err = machine_.policy().reserve(machine_, pages, p->cpu);
  if (err != 0) return R::error(err);
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
  machine_.policy().unreserve(machine_, pages, p.cpu);
  put_file(vma.file, p.cpu);
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
      if (left.locked) p->locked_vm += (left.end - left.start) / kPageSize;
      p->vmas.emplace(left.start, left);
    }
    if (vma.end > end) {  // the part after it stays
      Vma right = vma;
      right.start = end;
      right.pgoff = vma.pgoff + (end - vma.start) / kPageSize;
      get_file(right.file);
      if (right.locked) p->locked_vm += (right.end - right.start) / kPageSize;
      p->vmas.emplace(right.start, right);
    }
    drop_vma(*p, vma);
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
    if (advice == kMADV_WIPEONFORK) return -EINVAL;
  }
  if (!any) return -ENOMEM;
  for (auto& [start, vma] : p->vmas) {
    if (vma.start >= end || vma.end <= addr) continue;
    if (advice == kMADV_DONTFORK) vma.dontcopy = true;
    if (advice == kMADV_DOFORK) vma.dontcopy = false;
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
  for (const auto& [fd, entry] : p->fds) {
    c.fds.emplace(fd, entry);
    get_file(entry.file);
  }
  std::vector<Vma> copies;
  for (const auto& [start, vma] : p->vmas) {
    if (vma.dontcopy) continue;  // VM_DONTCOPY
    copies.push_back(vma);
  }
  const CpuId cpu = p->cpu;
  c.next_addr = p->next_addr;
  for (Vma copy : copies) {
    // Each mapping holds its own reservation (a policy that reserves at mmap
    // gives one back per mapping dropped), so the copy reserves too; when it
    // cannot, fork fails as dup_mmap() does, with -ENOMEM.
    const std::uint64_t pages = (copy.end - copy.start) / kPageSize;
    if (machine_.policy().reserve(machine_, pages, cpu) != 0) {
      exit(child);
      return Result<Pid>::error(-ENOMEM);
    }
    copy.locked = false;  // VM_LOCKED is not inherited
    get_file(copy.file);
    proc(child)->vmas.emplace(copy.start, copy);
  }
  return Result<Pid>{child, 0};
}

int Mm::exec(Pid pid) {
  Process* p = proc(pid);
  if (p == nullptr) return -ESRCH;
  std::vector<Vma> vmas;
  for (const auto& [start, vma] : p->vmas) vmas.push_back(vma);
  p->vmas.clear();
  for (const Vma& vma : vmas) drop_vma(*p, vma);
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
  std::vector<Vma> vmas;
  for (const auto& [start, vma] : p->vmas) vmas.push_back(vma);
  p->vmas.clear();
  for (const Vma& vma : vmas) drop_vma(*p, vma);
  std::vector<int> fds;
  for (const auto& [fd, entry] : p->fds) fds.push_back(fd);
  for (const int fd : fds) close(pid, fd);
  p->alive = false;
  return 0;
}

// mirrors secretmem_fault()
VmFault Mm::secretmem_fault(File& f, std::uint64_t pgoff, CpuId cpu) {
  if (pgoff >= (f.size + kPageSize - 1) / kPageSize) {
    ++stats_.faults_sigbus;
    return VmFault::SigBus;  // vmf_error(-EINVAL)
  }
  if (f.find(pgoff) != kNoPfn) {
    ++stats_.faults_minor;
    return VmFault::Minor;
  }
  const Result<Pfn> page = machine_.policy().alloc_secret_page(machine_, cpu);
  if (!page.ok()) {
    if (page.err == -ENOMEM) {
      ++stats_.faults_oom;
      return VmFault::Oom;
    }
    ++stats_.faults_sigbus;
    return VmFault::SigBus;
  }
  f.insert(pgoff, page.value);  // filemap_add_folio()
  ++secret_pages_;
  ++stats_.faults_major;
  return VmFault::Major;
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
  return secretmem_fault(*files_[vma.file], pgoff, p->cpu);
}

Pfn Mm::pagemap(Pid pid, std::uint64_t addr) const {
  const Process* p = proc(pid);
  if (p == nullptr) return kNoPfn;
  auto it = p->vmas.upper_bound(addr);
  if (it == p->vmas.begin()) return kNoPfn;
  --it;
  const Vma& vma = it->second;
  if (addr >= vma.end) return kNoPfn;
  return files_[vma.file]->find(vma.pgoff + (addr - vma.start) / kPageSize);
}

// mirrors the vma_is_secretmem() refusal in get_user_pages()
int Mm::gup(Pid pid, std::uint64_t addr) {
  Process* p = proc(pid);
  if (p == nullptr) return -ESRCH;
  auto it = p->vmas.upper_bound(addr);
  if (it == p->vmas.begin() || addr >= std::prev(it)->second.end) return -EFAULT;
  ++stats_.gup_refused;
  return -EFAULT;  // every mapping in the model is secretmem
}

std::size_t Mm::model_bytes() const {
  std::size_t n = sizeof(*this) + procs_.capacity() * sizeof(void*) +
                  files_.capacity() * sizeof(void*);
  for (const auto& p : procs_) n += sizeof(Process) + p->fds.size() * 48 + p->vmas.size() * 96;
  for (const auto& f : files_) n += sizeof(File) + f->dense.capacity() * sizeof(Pfn) + f->sparse.size() * 32;
  return n;
}

std::vector<std::string> Mm::check() const {
  std::vector<std::string> v;
  std::vector<std::uint64_t> refs(files_.size(), 0);
  for (const auto& p : procs_) {
    if (!p->alive) {
      if (!p->fds.empty() || !p->vmas.empty()) v.push_back(fmt::format("dead pid {} holds files", p->pid));
      continue;
    }
    std::uint64_t locked = 0;
    for (const auto& [fd, entry] : p->fds) ++refs[entry.file];
    for (const auto& [start, vma] : p->vmas) {
      ++refs[vma.file];
      if (vma.locked) locked += (vma.end - vma.start) / kPageSize;
    }
    if (locked != p->locked_vm) {
      v.push_back(fmt::format("pid {}: locked_vm {} but VM_LOCKED mappings cover {} pages",
                              p->pid, p->locked_vm, locked));
    }
  }
  std::uint64_t pages = 0;
  std::uint64_t live = 0;
  const phys::PhysMem& ph = machine_.phys();
  const directmap::DirectMap& dm = machine_.dmap();
  for (std::size_t i = 0; i < files_.size(); ++i) {
    const File& f = *files_[i];
    if (!f.live) continue;
    ++live;
    if (refs[i] != f.refs) {
      v.push_back(fmt::format("secretmem file {}: {} references but {} held", i, f.refs, refs[i]));
    }
    auto check_page = [&](std::uint64_t index, Pfn pfn) {
      ++pages;
      if (pfn >= ph.nr_frames() || ph.kind(pfn) != phys::FrameKind::Secret) {
        v.push_back(fmt::format("file {} page {}: pfn {:#x} is not a secret frame", i, index, pfn));
      } else if (dm.is_present(pfn)) {
        v.push_back(fmt::format("file {} page {}: pfn {:#x} is present in the direct map", i,
                                index, pfn));
      }
      if (index * kPageSize >= f.size) {
        v.push_back(fmt::format("file {} page {}: beyond the file size", i, index));
      }
    };
    std::uint64_t n = 0;
    for (std::size_t idx = 0; idx < f.dense.size(); ++idx) {
      if (f.dense[idx] != kNoPfn) {
        check_page(idx, f.dense[idx]);
        ++n;
      }
    }
    for (const auto& [idx, pfn] : f.sparse) {
      check_page(idx, pfn);
      ++n;
    }
    if (n != f.nr_pages) v.push_back(fmt::format("file {}: {} pages counted, {} held", i, f.nr_pages, n));
  }
  if (pages != secret_pages_) {
    v.push_back(fmt::format("secretmem files hold {} pages but {} are counted", pages, secret_pages_));
  }
  if (live != secretmem_users_) {
    v.push_back(fmt::format("{} live secretmem files but secretmem_users is {}", live, secretmem_users_));
  }
  return v;
}

}  // namespace exmem::model::mm
